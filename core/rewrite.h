/* The heads the proxy writes: the request going upstream (Host or its mask,
 * hop-by-hop and client X-Forwarded-* removed, Forwarded and X-Real-IP
 * removed unless the peer is a trusted proxy, the proxy's X-Forwarded-*
 * added, framing in one canonical spelling) and the response going back to
 * the client (hop-by-hop removed, connection fate said). Written straight
 * into reserved evbuffer space: one copy, no per-header allocation. */
#ifndef EDGEPROXY_REWRITE_H
#define EDGEPROXY_REWRITE_H

struct session;
struct evbuffer;

/* Appends the upstream request head for s->rh to dst. 0 ok, -1 when it does
 * not fit (or a maskRequestHost cannot be expanded). */
int rewrite_request_head(struct session *s, struct evbuffer *dst);

/* Appends the client response head for s->ph to the client output and
 * flushes. 0 ok, -1 on failure. */
int rewrite_response_head(struct session *s);

#endif
