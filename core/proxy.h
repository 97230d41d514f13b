/* The upstream HTTP/1.1 side of an exchange: connect (pooled or new, with
 * retries), the request head rewrite, the request body (moved when its
 * length is known, chunked otherwise), the response parsed with llhttp and
 * handed to the front end through the exchange's operations, backpressure
 * both ways. Never touches a client socket or a client parser. */
#ifndef EDGEPROXY_PROXY_H
#define EDGEPROXY_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct exchange;
struct evbuffer;
struct head;

/* The route allowed the exchange: connect and send the head. Answers
 * through the exchange's operations (never from inside this call for an
 * upstream response; a reply for a failed socket may come at once). */
void proxy_start(struct exchange *ex);

/* Request body: moves `len` payload bytes from the front of src to the
 * upstream. Returns 1 when the upstream's output is above the high-water
 * mark (give no more until ops->body_consumed), 0 otherwise. Only between
 * ops->body_consumed and proxy_request_end. */
int proxy_request_body(struct exchange *ex, struct evbuffer *src, size_t len);

/* The request body is complete; trailer fields h->hdrs[from..] (h may be
 * NULL) go with it when it is chunked upstream. */
void proxy_request_end(struct exchange *ex, const struct head *h, uint32_t from);

/* The client's output drained below the low-water mark: read the upstream
 * again if it was paused. */
void proxy_response_resume(struct exchange *ex);

/* Closes the upstream connection (never pooled) and stops any retry. */
void proxy_abort(struct exchange *ex);

#endif
