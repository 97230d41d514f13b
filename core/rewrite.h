/* The heads the proxy writes: the request going upstream (Host or its mask,
 * hop-by-hop and client X-Forwarded-* removed, Forwarded and X-Real-IP
 * removed unless the peer is a trusted proxy, the proxy's X-Forwarded-*
 * added, framing in one canonical spelling) and the response going back to
 * the client (hop-by-hop removed, connection fate said). An egress exchange
 * (ex->transparent) keeps the client's fields but hop-by-hop ones and gets
 * no X-Forwarded-*. Written straight
 * into reserved evbuffer space: one copy, no per-header allocation. */
#ifndef EDGEPROXY_REWRITE_H
#define EDGEPROXY_REWRITE_H

#include <stdbool.h>

struct exchange;
struct evbuffer;
struct head;

/* Appends the upstream request head for the exchange to dst. 0 ok, -1 when
 * it does not fit (or a maskRequestHost cannot be expanded). */
int rewrite_request_head(const struct exchange *ex, struct evbuffer *dst);

/* What the Connection header of a response to an HTTP/1.x client says. */
enum resp_conn {
    RESP_CONN_NONE = 0,   /* HTTP/1.1 keep-alive: nothing to say */
    RESP_CONN_CLOSE,      /* the connection closes after this response */
    RESP_CONN_KEEP_ALIVE, /* an HTTP/1.0 client's connection stays open */
};

/* Appends an HTTP/1.1 response head (status, the upstream's fields minus
 * hop-by-hop and Transfer-Encoding, then the client framing and connection
 * fate) to dst. Returns the bytes written, -1 when it does not fit. */
int rewrite_response_head(struct evbuffer *dst, int status, const struct head *h, bool chunked,
                          enum resp_conn conn);

#endif
