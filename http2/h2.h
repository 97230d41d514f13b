/* http2/: the HTTP/2 front end (RFC 9113) on nghttp2. A connection comes
 * from http1/ once it is known to speak HTTP/2 (ALPN h2 after the TLS
 * handshake, or the connection preface on a plain listener); each stream
 * becomes an exchange on the shared core: routed by ingress/ per stream,
 * carried upstream in HTTP/1.1 by core/proxy.c, answered through the
 * exchange's operations. http2/ may call core/ (stream, exchange, proxy,
 * tls), ingress/ (route_request), admin/ and common/; nothing calls into
 * it but http1/ (the hand-over) and core/worker.c (drain).
 *
 * Memory per connection (nghttp2 1.52, x86-64): about 25 KiB in the library
 * (session, HPACK tables, a 16 KiB frame buffer), the connection object,
 * and per open stream its object (~1.3 KiB with the exchange), a head arena
 * (client.max_head_bytes) and what its bodies hold: request bytes at most
 * http2.stream_window_bytes waiting here plus the upstream's 256 KiB
 * high-water mark, all streams together at most
 * http2.connection_window_bytes waiting; response bytes at most 256 KiB
 * per stream and 1 MiB per connection before the upstreams stop being
 * read (README, HTTP/2). */
#ifndef EDGEPROXY_H2_H
#define EDGEPROXY_H2_H

struct worker;
struct stream;
struct client_info;
struct list_node;

/* Takes over `io` (and what its input holds: the preface, frames) for a
 * new HTTP/2 connection on w, which from now on counts the client
 * connection (closing it calls listener_conn_closed). 0 ok; -1 and `io`
 * is still the caller's. */
int h2_conn_start(struct worker *w, struct stream *io, const struct client_info *client);

/* Drain (SIGTERM, SPEC section 8): GOAWAY, the open streams finish, then
 * the connection closes. `link` is its node on w->h2_conns. */
void h2_conn_drain(struct list_node *link);

#endif
