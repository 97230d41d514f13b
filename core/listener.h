/* Listening sockets: bound by the main thread (so a bind failure is a clear
 * startup error), one per listener per worker with SO_REUSEPORT, then
 * accepted on by each worker's own event loop. */
#ifndef EDGEPROXY_LISTENER_H
#define EDGEPROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

struct worker;

/* What a listening socket is for; each kind hands its connections to its
 * own front end (listener.c's table): the public ingress to the HTTP/1.1
 * session, egress port 80 to the same session with the egress route, egress
 * TLS and other TCP to egress/conn.c (peek, decide, splice). */
enum listener_kind {
    LISTENER_INGRESS = 0, /* cfg->listeners[index] */
    LISTENER_EGRESS_HTTP, /* egress.listeners.http */
    LISTENER_EGRESS_TLS,  /* egress.listeners.tls */
    LISTENER_EGRESS_TCP,  /* egress.listeners.tcp */
};

/* Sockets per worker: the ingress listeners, then the egress ones. */
#define LISTENER_MAX (CONFIG_MAX_LISTENERS + 3)

/* One socket to bind, as the config asks. */
struct listener_spec {
    enum listener_kind kind;
    size_t index; /* LISTENER_INGRESS: into cfg->listeners */
    const char *address;
    const struct sockaddr *sa;
    socklen_t len;
    /* egress.interception "tproxy": IP_TRANSPARENT, so that the socket
     * takes connections nft `tproxy` hands it for addresses not its own */
    bool transparent;
};

/* The config's listening sockets in the order workers hold them: every
 * cfg->listeners[i], then the egress listeners that are not null. Returns
 * how many (at most LISTENER_MAX); `out` borrows from cfg. */
size_t listener_specs(const struct config *cfg, struct listener_spec *out);

/* Out of descriptors, a pending connection cannot be taken and its
 * level-triggered event fires again at once: a spinning loop and a log line
 * per turn. Accepting pauses this long instead (nginx: accept_mutex_delay,
 * 500 ms); the connections wait in the backlog meanwhile. */
#define LISTENER_PAUSE_MS 250

/* A bound, listening, non-blocking socket; -1 with err filled. An IPv6
 * one is IPv6 only. */
int listener_bind(const struct sockaddr *sa, socklen_t len, const char *name, char *err,
                  size_t errlen);
/* The same for one of listener_specs: an egress socket on [::] takes IPv4
 * too (SPEC section 9: the kernel redirects both families to one port), and
 * is transparent when spec->transparent (setting that needs
 * CAP_NET_ADMIN: without it, an error naming the listener). */
int listener_bind_spec(const struct listener_spec *spec, char *err, size_t errlen);

/* Starts accepting on the worker's fds. 0 ok, -1 error. Accepting pauses
 * for a moment when accept() runs out of descriptors, and while
 * client.max_connections are open in the process. */
int listener_start(struct worker *w);
/* Stops accepting and closes the worker's listening sockets. */
void listener_stop(struct worker *w);

/* A client connection accepted by this worker closed: its slot of
 * client.max_connections is free again. */
void listener_conn_closed(struct worker *w);

#endif
