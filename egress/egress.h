/* egress/: what a sandbox may reach on the internet (SPEC section 9).
 *
 * The egress listeners (core/listener.c, one kind each) hand their
 * connections here. Port 80 is the HTTP/1.1 front end with the egress
 * route (http.c): each request decided by its Host. TLS and other TCP are a
 * peek, a decision and a splice (conn.c): the ClientHello's SNI for TLS
 * (common/clienthello.c), the address alone for the rest. Both decide
 * through one flow (flow.c): the sandbox is the connection's source address,
 * its policy the record <key_prefix>egress:<address> from the worker's
 * policy cache (policy.c, an instance of redis/cache.c: TTL, purge by
 * PUBLISH <key_prefix>invalidate egress:<address>, stale grace while Redis
 * is away), the verdict common/egress_policy.c's; a name rule that is what
 * allows a connection sends the name to the worker's resolver (resolve.c,
 * evdns on egress.nameservers) and the answers say where it may go. The
 * original destination comes from the kernel (origin.c). Open flows stay
 * on their source's list and are closed when a new policy refuses them;
 * each flow ends with one JSON line in the access log and its decision in
 * /metrics (log.c).
 *
 * egress/ may call common/, core/ (stream, tunnel, pool, exchange, proxy),
 * http1/ (session_accept_routed: the front end for port 80), redis/ (the
 * cache), ingress/ (conn_limit's shared counters, the access log's writer)
 * and admin/. Only core/ calls in: listener.c (accept), worker.c (life,
 * drain, reload). */
#ifndef EDGEPROXY_EGRESS_H
#define EDGEPROXY_EGRESS_H

#include <stddef.h>
#include <sys/socket.h>

struct worker;
struct egress;
struct config_egress_listener;
struct list_node;

/* The worker's egress state, when the config has an egress listener
 * (w->egress stays NULL otherwise): the policy cache on w->redis, the
 * resolver, the re-check timer. 0 ok, -1 out of memory. */
int egress_init(struct worker *w);
/* After the loop stopped, before w->redis goes. NULL: nothing. */
void egress_free(struct egress *eg);
/* Draining: connections still peeking or deciding are closed; spliced
 * ones run on until they end (or the drain timeout). NULL: nothing. */
void egress_drain(struct egress *eg);
/* After a reload (w->cfg is new): cache settings; always_deny and the
 * timeouts are read from w->cfg each time. NULL: nothing. */
void egress_config_changed(struct egress *eg);

/* The egress listeners' accept handlers (core/listener.c's table): own fd
 * from here on; -1 when no connection was made (fd closed). */
int egress_accept_http(struct worker *w, size_t index, int fd, const struct sockaddr *sa,
                       int salen);
int egress_accept_tls(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen);
int egress_accept_tcp(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen);

/* Internal to egress/: the original destination of socket fd accepted on
 * listener l (a member of w->cfg), as egress.interception finds it (origin.h),
 * or -1 after a log line and a RST (fd closed). */
int egress_original_dst_or_refuse(struct worker *w, const struct config_egress_listener *l, int fd,
                                  const struct sockaddr *sa, struct sockaddr_storage *dst,
                                  socklen_t *dst_len);
/* Internal: drain one TLS/TCP connection (on eg->conns). */
void egress_conn_drain(struct list_node *n);

#endif
