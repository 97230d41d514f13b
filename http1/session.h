/* http1/: the HTTP/1.1 front end. A session is one client connection: the
 * PROXY header, plain or TLS (chosen once, at accept), llhttp request heads,
 * pipelining, keep-alive, timeouts, lingering close, and the exchange
 * operations that write responses in HTTP/1.1. One exchange at a time per
 * connection (RFC 9112 section 9.3.2: responses in request order), embedded
 * in the session. http1/ may call core/ (stream, exchange, proxy, tunnel,
 * rewrite), ingress/ (its route_ops, the default), admin/ and common/; a
 * connection's requests go to the route its listener chose (client.route),
 * and a connection that speaks HTTP/2 (ALPN h2, or the preface) goes to
 * http2/.
 *
 * A session is never freed inside one of its own callbacks: code marks it
 * closing and the outermost callback frees it as the stack unwinds. */
#ifndef EDGEPROXY_SESSION_H
#define EDGEPROXY_SESSION_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "exchange.h"
#include "list.h"
#include "tunnel.h"

struct worker;
struct stream;
struct event;
struct evbuffer;

enum session_state {
    SS_PROXY_HEADER, /* reading the PROXY protocol header (raw socket) */
    SS_IDLE,         /* between requests: keep-alive timer */
    SS_HEAD,         /* reading a request head: header deadline */
    SS_EXCHANGE,     /* the head is in: routing, connecting, forwarding (ex.state) */
    SS_TUNNEL,       /* after 101: the tunnel moves the bytes */
    SS_CLOSING,      /* flushing the last bytes, then lingering, then free */
};

struct session {
    struct list_node link; /* on the worker's session list */
    struct worker *w;
    struct stream *io; /* the client connection; NULL until the PROXY header is read */
    int fd;            /* the socket until `io` owns it */
    struct client_info client;
    bool tls_up;         /* handshake done */
    bool proto_chosen;   /* HTTP/1.1 or HTTP/2 decided (before the first request) */
    bool proto_waiting;  /* the bytes so far are a prefix of the HTTP/2 preface */
    bool handed_off;     /* the connection went to the HTTP/2 front end */
    struct event *pp_ev; /* PROXY header read event */
    size_t pp_seen;      /* PROXY header bytes peeked so far */
    enum session_state state;
    int busy;     /* callback nesting depth */
    bool closing; /* free when busy drops to 0 */

    llhttp_t req;
    uint32_t head_bytes;       /* raw bytes of this request head */
    struct exchange ex;        /* the current request */
    struct evbuffer *body_buf; /* de-chunked request bytes (lazily made) */
    struct tunnel tun;         /* SS_TUNNEL */

    bool client_keepalive; /* the client's request allows another */
    bool body_paused;      /* client reading stopped: upstream output full */
    bool resp_chunked;     /* the response body goes to the client chunked */
    bool close_after;      /* close the client after this response */
    bool linger;           /* unread input when closing */
    bool lingering;        /* half-closed, discarding input */

    struct event *timer;     /* header deadline, keep-alive, linger */
    uint64_t deadline_ms;    /* when the timer means it; 0 = none */
    uint64_t timer_armed_ms; /* when it is set to fire; 0 = not */
};

/* Accepted socket on listener `index` -> new session (owns fd), whose end
 * calls listener_conn_closed. -1: no session, fd closed already. */
int session_accept(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen);

/* The same for a connection whose requests `route` routes (egress port 80:
 * egress/http.c), on no configured listener: plain HTTP/1.1, no PROXY
 * header; `dst` is the address the client dialled (copied). */
int session_accept_routed(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                          const struct sockaddr *dst, socklen_t dst_len,
                          const struct route_ops *route);

/* Marks the session for closing: flush the client output first if `flush`. */
void session_close(struct session *s, bool flush);

/* Callback nesting: every entry point from libevent brackets its work with
 * these, so a close deep inside frees the session only when it is safe. */
void session_enter(struct session *s);
void session_leave(struct session *s);

/* Drain: close if idle, otherwise close after the current response. */
void session_drain(struct session *s);

/* Sets the span callbacks that collect a request head into s->ex.rh. */
struct head_parser_settings;
void session_head_callbacks(struct head_parser_settings *hs);

#endif
