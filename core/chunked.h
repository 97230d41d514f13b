/* HTTP/1.1 chunked framing (RFC 9112 section 7.1) for bodies the proxy
 * re-frames: a request body with no length going upstream, a response body
 * with no length going to an HTTP/1.1 client. Payload bytes are moved, only
 * the framing is written. */
#ifndef EDGEPROXY_CHUNKED_H
#define EDGEPROXY_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct head;

/* Moves `len` (> 0) bytes from the front of src to dst as one chunk.
 * Returns the bytes added to dst (framing included). */
size_t chunked_write(struct evbuffer *dst, struct evbuffer *src, size_t len);

/* The last chunk and the trailer section: fields h->hdrs[from..] that may
 * travel in trailers (RFC 9110 section 6.5.1: not framing, routing,
 * hop-by-hop or the traffic token), none when h is NULL. Returns the bytes
 * added. */
size_t chunked_write_end(struct evbuffer *dst, const struct head *h, uint32_t from);

#endif
