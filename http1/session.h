/* A client connection and the request exchanges on it.
 *
 * The way through (h2o style, one file a room):
 *   session.c  accept, llhttp request head, keep-alive, timeouts, own replies
 *   route.c    Host -> (port, sandbox) -> record -> verdict (token, limit)
 *   relay.c    upstream connect/retry, head rewrite, body streaming with
 *              backpressure, response parsing, WebSocket tunnel
 * A session is never freed inside one of its own callbacks: code marks it
 * closing and the outermost callback frees it as the stack unwinds. */
#ifndef EDGEPROXY_SESSION_H
#define EDGEPROXY_SESSION_H

#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "host.h"
#include "list.h"
#include "lookup.h"

struct worker;
struct stream;
struct event;
struct upconn;
struct head;

enum session_state {
    SS_PROXY_HEADER, /* reading the PROXY protocol header (raw socket) */
    SS_IDLE,         /* between requests: keep-alive timer */
    SS_HEAD,         /* reading a request head: header deadline */
    SS_ROUTING,      /* waiting for the route lookup */
    SS_CONNECTING,   /* waiting for an upstream connection (or retry) */
    SS_FORWARDING,   /* head sent upstream; bodies streaming both ways */
    SS_TUNNEL,       /* after 101: bytes both ways */
    SS_CLOSING,      /* flushing the last bytes, then lingering, then free */
};

/* Output above this stops reading the other side; the writer's low-water
 * callback resumes it. Memory per connection stays bounded (le-proxy). */
#define SESSION_HIGH_WATER (256 * 1024)
#define SESSION_LOW_WATER (64 * 1024)

struct session {
    struct list_node link; /* on the worker's session list */
    struct worker *w;
    struct stream *cbev; /* NULL until the PROXY header is read */
    int fd;
    size_t listener; /* index in cfg->listeners */
    bool tls;
    bool tls_up;         /* handshake done */
    struct event *pp_ev; /* PROXY header read event */
    size_t pp_seen;      /* PROXY header bytes peeked so far */
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    int state;
    int busy;     /* callback nesting depth */
    bool closing; /* free when busy drops to 0 */

    llhttp_t req;
    llhttp_t resp;
    struct head *rh;     /* request head, kept until the
                                           exchange ends (retries) */
    struct head *ph;     /* response head while parsing */
    uint32_t head_bytes; /* raw bytes of this request head */

    /* the current request */
    uint64_t start_us;
    int status;         /* what the client got */
    uint64_t bytes_out; /* response bytes to the client */
    int outcome;        /* enum outcome */
    bool upstream_used; /* an upstream was tried */
    bool req_done;      /* request message complete */
    bool req_has_body;
    bool req_body_started; /* some body bytes went upstream */
    bool client_keepalive;
    bool is_head_method;
    bool upgrade;
    bool resp_head_done; /* final response head sent */
    bool resp_done;
    bool close_after;        /* close the client after this
                                           response */
    bool dechunk;            /* HTTP/1.0 client, chunked resp */
    bool client_paused;      /* client reading stopped for
                                           backpressure */
    bool up_paused;          /* upstream reading stopped */
    bool up_eof_pending;     /* upstream closed while paused */
    bool up_closed;          /* upstream EOF/error seen */
    bool tunnel_flushing_up; /* client gone, upstream draining */
    bool linger;             /* unread input when closing */
    bool lingering;          /* half-closed, discarding input */
    const char *host;        /* view into rh: the Host the
                                           client sent (or authority) */
    size_t host_len;
    const char *path; /* origin-form target, view */
    size_t path_len;
    bool path_needs_slash; /* "http://h?q" -> "/?q" */
    struct host_target target;
    struct route_rec *rr;
    bool limit_held;
    struct lookup_waiter waiter;

    /* upstream */
    struct upconn *up; /* connected or connecting */
    int connect_attempts;
    bool stale_retry_done;
    uint64_t last_activity_ms; /* tunnel idle accounting */

    struct event *timer;     /* header deadline, keep-alive,
                                           retry backoff, linger */
    uint64_t deadline_ms;    /* when the timer means it; 0 = none */
    uint64_t timer_armed_ms; /* when it is set to fire; 0 = not */
};

/* Accepted socket on listener `index` -> new session (owns fd), whose end
 * calls listener_conn_closed. -1: no session, fd closed already. */
int session_accept(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen);

/* Replies with the proxy's own response (SPEC section 6) and ends the
 * exchange; closes the connection when `close` or when the request body was
 * not consumed. */
struct reply;
void session_reply(struct session *s, struct reply *r);
/* Shorthand for the common rows. */
void session_error(struct session *s, int status, const char *message);
void session_error_sandbox(struct session *s, int status, const char *message, bool with_port);

/* Ends the current exchange after the response's last byte went to the
 * client output. */
void session_exchange_done(struct session *s);

/* Marks the session for closing: flush the client output first if `flush`. */
void session_close(struct session *s, bool flush);

/* The session timer (see session.c): deadline in ms from now, or none. */
void session_set_timer(struct session *s, int ms);
void session_clear_timer(struct session *s);

/* Callback nesting: every entry point from libevent brackets its work with
 * these, so a close deep inside frees the session only when it is safe. */
void session_enter(struct session *s);
void session_leave(struct session *s);

/* Drain: close if idle, otherwise close after the current response. */
void session_drain(struct session *s);

/* Sets the span callbacks that collect a head into s->rh (request parser)
 * or s->ph (response parser). */
void session_head_callbacks(llhttp_settings_t *st);

/* route.c */
void route_request(struct session *s);

/* relay.c */
void relay_connect(struct session *s);
void relay_pump_request(struct session *s);
void relay_abort_upstream(struct session *s);
void relay_on_client_writable(struct session *s);
void relay_tunnel_client_read(struct session *s);
void relay_tunnel_idle(struct session *s, struct stream *side);
/* The client closed its side of a tunnel: deliver what it said, then close. */
void relay_tunnel_client_gone(struct session *s);

#endif
