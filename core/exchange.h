/* The exchange: one request and its response, whatever protocol carried it.
 *
 * core/ is the part every front end shares: the worker and its listeners,
 * the stream layer (plain or TLS sockets), the exchange, the upstream
 * HTTP/1.1 side (proxy.c: connect, retry, head rewrite, bodies, response
 * parsing), its pool of keep-alive connections, and the byte tunnel. core/
 * may call common/, admin/ (metrics, log), ingress/ (routing verdicts, the
 * access log) and redis/ (the cache) but never a front end (http1/): it
 * reaches the client only through the operations below.
 *
 * A front end (http1/ today; http2/ next) parses its protocol into a
 * normalised request (method, scheme, authority, path, header views, body
 * framing), fills an exchange, and hands it to the route its connection's
 * listener chose (struct route_ops: ingress/ for the public listeners,
 * egress/ for the egress HTTP listener), which answers through ops->reply
 * or starts the proxy. The proxy writes the
 * request upstream in HTTP/1.1 and gives the response back through the ops:
 * a head, body bytes (payload only: framing is each side's own business),
 * an end with optional trailers, or a reset. The split follows h2o
 * (h2o_req_t + generators/ostreams, lib/core/proxy.c) rather than HAProxy's
 * HTX: see the README's architecture section for why.
 *
 * Ownership: the front end owns the exchange's memory (embedded in its
 * connection or stream object) and its request head arena; the exchange owns
 * its route record reference, connection-limit slot, response head arena and
 * upstream connection, all released by exchange_finish. */
#ifndef EDGEPROXY_EXCHANGE_H
#define EDGEPROXY_EXCHANGE_H

#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "host.h"
#include "lookup.h"
#include "metrics.h"

struct worker;
struct head;
struct upconn;
struct reply;
struct evbuffer;
struct event;
struct exchange;

/* How a message body is delimited, independent of the protocol. */
enum ex_body {
    EX_BODY_NONE = 0, /* no body (or one that must not be sent: HEAD, 204, 304) */
    EX_BODY_LENGTH,   /* exactly `length` bytes */
    EX_BODY_STREAM,   /* unknown length, ends with an explicit end (chunked, DATA) */
    EX_BODY_EOF,      /* response only: ends when the upstream closes */
};

/* Where the exchange is. The front end has its own states around this. */
enum ex_state {
    EX_ROUTING = 0, /* waiting for the route verdict (maybe a Redis GET) */
    EX_CONNECTING,  /* waiting for an upstream connection or a retry */
    EX_FORWARDING,  /* head sent upstream; bodies flowing */
    EX_TUNNEL,      /* after a 101: the front end moves the bytes */
    EX_DONE,        /* answered (by the proxy or the upstream) */
};

/* What routes a front end's exchanges: ingress (Host -> sandbox -> its
 * address) or egress (Host -> the sandbox's egress policy -> the original
 * destination). The listener kind picks it at accept (core/listener.c); a
 * front end calls route(), core calls the rest. */
struct route_ops {
    /* The request head is in (authority, path, rh): route it. */
    void (*route)(struct exchange *ex);
    /* exchange_finish: release what the route keeps in ex->route_state.
     * NULL: nothing there. */
    void (*finish)(struct exchange *ex);
    /* exchange_count: the request's log line. NULL: the access log's own
     * line (ingress/access_log.c). */
    void (*log)(struct exchange *ex, uint64_t duration_us);
};

/* An egress connection is on none of cfg->listeners. */
#define CLIENT_NO_LISTENER ((size_t)-1)

/* The client connection the exchange arrived on (shared by every exchange
 * of that connection). */
struct client_info {
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    bool tls;
    size_t listener; /* index in cfg->listeners, or CLIENT_NO_LISTENER */
    const struct route_ops *route;
    /* A transparent (egress) listener's connection: the address the client
     * dialled, from SO_ORIGINAL_DST; dst_len 0 elsewhere. */
    struct sockaddr_storage dst;
    socklen_t dst_len;
};

/* What a front end implements. Every operation is called from the worker's
 * loop, never re-entrantly from inside another operation of the same
 * exchange, and must not free the exchange (DESIGN habit 5: mark, free as the
 * stack unwinds). */
struct exchange_ops {
    /* A response head from the upstream: interim (1xx, may come several
     * times) or final. `h` holds the upstream's fields as received (the
     * front end drops what its protocol does not carry); ex->resp_body says
     * how the body is delimited. 0 ok, -1 could not (the proxy then fails
     * the exchange with a 502). */
    int (*send_head)(struct exchange *ex, int status, const struct head *h);
    /* `len` payload bytes at the front of `src`: take them all (move). */
    void (*send_body)(struct exchange *ex, struct evbuffer *src, size_t len);
    /* The response is complete. Trailer fields are h->hdrs[from..nhdrs) when
     * `h` is not NULL. The upstream side has already let go. */
    void (*end)(struct exchange *ex, const struct head *h, uint32_t from);
    /* The response cannot complete (upstream cut or stalled after the head
     * went out): the client must see an error, never a clean end. */
    void (*reset)(struct exchange *ex);
    /* The proxy's own response (SPEC section 6) instead of an upstream one. */
    void (*reply)(struct exchange *ex, struct reply *r);
    /* The upstream is ready for (more) request body: the front end gives it
     * with proxy_request_body / proxy_request_end. Called when the head is
     * written and whenever the upstream's output drained below its
     * low-water mark after proxy_request_body said "full". */
    void (*body_consumed)(struct exchange *ex);
    /* The upstream switched protocols (101, head already sent): the front
     * end moves bytes both ways with ex->up from now on. */
    void (*start_tunnel)(struct exchange *ex);
    /* Callback nesting: every entry point from the loop into the exchange
     * (upstream events, the retry timer, a Redis answer) brackets its work
     * with these, so a close deep inside frees the front end's object only
     * as the stack unwinds. */
    void (*hold)(struct exchange *ex);
    void (*release)(struct exchange *ex);
    /* Response bytes queued toward the client and not yet written: above
     * EX_HIGH_WATER the proxy stops reading the upstream until the front
     * end calls proxy_response_resume. */
    size_t (*pending)(const struct exchange *ex);
};

/* Output above this stops reading the other side; below the low mark it
 * resumes. Memory per exchange stays bounded (le-proxy). */
#define EX_HIGH_WATER (256 * 1024)
#define EX_LOW_WATER (64 * 1024)

struct exchange {
    const struct exchange_ops *ops;
    struct worker *w;
    const struct client_info *client;
    enum ex_state state;

    /* the normalised request (views into rh unless said otherwise) */
    uint8_t http_version; /* what the client spoke: 10, 11 or 20 (metrics, access log) */
    struct head *rh;      /* request head arena (the front end's) */
    int method;           /* llhttp_method_t */
    bool head_method;     /* HEAD: the response has no body whatever it says */
    bool upgrade;         /* an Upgrade request (WebSocket), or an extended CONNECT */
    /* An extended CONNECT (RFC 8441): the Sec-WebSocket-Key the front end
     * drew (common/websocket.h) for the upstream's Upgrade; the proxy
     * checks the 101's Sec-WebSocket-Accept against it. NULL otherwise
     * (an HTTP/1.1 client's own key goes up, and it checks the answer). */
    const char *ws_key;
    const char *authority; /* Host or :authority */
    size_t authority_len;
    const char *path; /* origin-form */
    size_t path_len;
    bool path_needs_slash; /* absolute-form "http://h?q": write "/?q" */
    enum ex_body req_body;
    uint64_t req_length;       /* EX_BODY_LENGTH */
    uint32_t req_trailer_from; /* rh->hdrs index where trailers start */
    bool req_done;             /* the front end gave the whole body */
    bool req_body_started;     /* some body bytes went upstream */

    /* the route verdict */
    struct host_target target;
    void *route_state; /* the route's own (egress/: a flow), released by route->finish */
    /* Egress: the proxy is not there for the app. The head goes up as the
     * client wrote it but for hop-by-hop fields: no X-Forwarded-*,
     * Forwarded, X-Real-IP and the traffic token kept (rewrite.c); a
     * refused connect is the destination's answer, not retried (proxy.c). */
    bool transparent;
    struct route_rec *rr;
    bool limit_held;
    struct lookup_waiter waiter;

    /* where the proxy connects, set by the route before proxy_start: the
     * address (port included), and the pool partition it may reuse
     * connections from: name (the sandbox id), the address as text, and a
     * tag (executionId, or NULL), so a recycled address never reuses
     * another sandbox's connection. The strings outlive the exchange's use
     * of them (the route record's or the target's). */
    struct sockaddr_storage up_addr;
    socklen_t up_addr_len;
    const char *up_pool_name;
    const char *up_addr_text;
    const char *up_pool_tag;

    /* the upstream side (core/proxy.c) */
    struct upconn *up;
    llhttp_t resp;
    struct head *ph; /* response head arena while parsing */
    enum ex_body resp_body;
    uint32_t resp_trailer_from;
    struct evbuffer *body_buf; /* de-chunked response bytes (lazily made) */
    int connect_attempts;
    struct event *retry_timer; /* connect retry backoff (lazily made) */
    bool retry_armed;          /* retry_timer is pending */
    bool upstream_used;        /* an upstream was tried (access log) */
    bool stale_retry_done;
    bool resp_head_done; /* final response head given to the front end */
    bool resp_done;
    bool up_paused;      /* upstream reading stopped: client output full */
    bool up_eof_pending; /* upstream closed while paused */
    bool up_closed;      /* upstream EOF/error seen */
    bool tunneled;       /* after a 101: counted in the open tunnels gauge */

    /* accounting */
    uint64_t start_us;  /* 0: not a request to count */
    int status;         /* what the client got */
    uint64_t bytes_out; /* response bytes to the client (the front end's count) */
    enum outcome outcome;
};

/* RFC 8441: an HTTP/2 client asks for a WebSocket with an extended CONNECT
 * (:method CONNECT, :protocol websocket); the sandbox gets an HTTP/1.1 GET
 * with Upgrade, and its 101 is the client's 200 (h2o's mapping, in the
 * core as in its lib/core/proxy.c). A plain CONNECT never gets this far,
 * nor does an HTTP/1.1 one (405). */
static inline bool exchange_ext_connect(const struct exchange *ex)
{
    return ex->upgrade && ex->method == HTTP_CONNECT && ex->http_version == 20;
}

/* The method of the upstream request line. */
static inline int exchange_upstream_method(const struct exchange *ex)
{
    return exchange_ext_connect(ex) ? HTTP_GET : ex->method;
}

/* Starts a new exchange on `client` for front end `ops`. */
void exchange_init(struct exchange *ex, struct worker *w, const struct client_info *client,
                   const struct exchange_ops *ops);

/* Ends it: counts it (metrics, access log) when it was a request, releases
 * the route record, the connection-limit slot, the upstream connection and
 * the response head arena. The request head arena stays the front end's.
 * Safe to call twice. */
void exchange_finish(struct exchange *ex);

/* Counts it now (metrics, access log) and not again: exchange_finish calls
 * it; a 101 calls it early, since a tunnel's life is not a request. */
void exchange_count(struct exchange *ex);

/* Frees the buffers an exchange keeps for the next one on its connection
 * (exchange_init reuses them); when the connection goes. */
void exchange_free_buffers(struct exchange *ex);

/* The route verdict is in and the proxy failed or the route refused:
 * shorthands building the SPEC section 6 replies, through ops->reply. */
void exchange_error(struct exchange *ex, int status, const char *message);
void exchange_error_sandbox(struct exchange *ex, int status, const char *message, bool with_port);

#endif
