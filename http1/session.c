/* The HTTP/1.1 client connection: accept, the PROXY header, plain or TLS,
 * request heads, pipelining, keep-alive, timeouts, lingering close, and the
 * session's lifetime. The exchange operations (responses, request bodies,
 * the proxy's own replies) are in h1_exchange.c. */
#include "session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conn_limit.h"
#include "ev.h"
#include "h1.h"
#include "h2.h"
#include "h2_rules.h"
#include "head.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "proxy_proto.h"
#include "route.h"
#include "runtime.h"
#include "stream.h"
#include "target.h"
#include "toklist.h"
#include "timeutil.h"
#include "tls.h"
#include "worker.h"

static void client_read_cb(struct stream *st, void *arg);
static void client_write_cb(struct stream *st, void *arg);
static void client_event_cb(struct stream *st, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void parse_head(struct session *s);

/* ---- llhttp request callbacks ---- */

void session_head_callbacks(struct head_parser_settings *hs)
{
    head_parser_callbacks(hs, offsetof(struct session, ex.rh));
}

/* Pauses so routing (maybe a Redis round trip) can run before any body byte
 * is consumed; the parser resumes exactly here. */
static int req_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}
/* A chunked body's payload, for h1_pump_request_body to hand on (a body
 * with a length is moved as it is, without this copy). */
static int req_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (s->ex.req_body == EX_BODY_STREAM)
        evbuffer_add(s->body_buf, at, len);
    return 0;
}
/* Pauses at the end of each request: pipelined requests wait in the input
 * buffer until this exchange is over (RFC 9112 section 9.3.2). */
static int req_on_message_complete(llhttp_t *p)
{
    struct session *s = p->data;
    s->ex.req_done = true;
    return HPE_PAUSED;
}

static struct head_parser_settings req_settings;

static void init_req_settings(void)
{
    llhttp_settings_init(&req_settings.st);
    session_head_callbacks(&req_settings);
    req_settings.st.on_headers_complete = req_on_headers_complete;
    req_settings.st.on_body = req_on_body;
    req_settings.st.on_message_complete = req_on_message_complete;
}

/* ---- lifetime ---- */

/* The session's one timer is lazy: a new deadline later than the armed one
 * is only recorded (the timer fires early and re-arms for the rest), so a
 * busy keep-alive connection does not touch the timer heap per request. */
void session_set_timer(struct session *s, int ms)
{
    s->deadline_ms = time_now_ms() + (uint64_t)ms;
    if (s->timer_armed_ms && s->timer_armed_ms <= s->deadline_ms)
        return;
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(s->timer, &tv);
    s->timer_armed_ms = s->deadline_ms;
}

/* No deadline: a pending timer fires and finds nothing to do. */
void session_clear_timer(struct session *s)
{
    s->deadline_ms = 0;
}

/* Ends what the current request holds (exchange_finish: metrics, access
 * log, route record, limit slot, upstream) and gives back its head arena. */
static void finish_request(struct session *s)
{
    if (!s->head_bytes)
        s->ex.start_us = 0; /* no request byte parsed: nothing to count */
    exchange_finish(&s->ex);
    head_put(&s->w->heads, s->ex.rh);
    s->ex.rh = NULL;
    s->ex.authority = s->ex.path = NULL;
}

static void session_free(struct session *s)
{
    struct worker *w = s->w;
    finish_request(s);
    exchange_free_buffers(&s->ex);
    if (s->body_buf)
        evbuffer_free(s->body_buf);
    ev_free(s->timer);
    ev_free(s->pp_ev);
    if (s->io)
        stream_free(s->io);
    else if (s->fd != -1)
        close(s->fd);
    list_unlink(&s->link);
    if (s->handed_off) { /* the HTTP/2 connection counts it now */
        free(s);
        return;
    }
    __atomic_store_n(&w->session_count, w->session_count - 1, __ATOMIC_RELAXED); /* main reads it */
    METRIC_DEC(&w->metrics, client_connections);
    free(s);
    listener_conn_closed(w);
    worker_session_gone(w);
}

void session_enter(struct session *s)
{
    s->busy++;
}

/* Is the next pipelined request to be parsed now? Not while the client has
 * not taken what was already answered: a client that pipelines requests the
 * proxy answers itself (400, 403, 429, 502...) and reads nothing would
 * otherwise grow the output without bound. Parsing resumes from
 * client_write_cb once the output drained to the low-water mark, as the
 * relay does for bodies. */
static bool next_request_ready(struct session *s)
{
    return evbuffer_get_length(stream_input(s->io)) > 0 &&
           evbuffer_get_length(stream_output(s->io)) < EX_HIGH_WATER;
}

void session_leave(struct session *s)
{
    /* Pipelined requests are parsed here, at the outermost level, rather
     * than from deep inside the end of the previous exchange: the stack
     * stays flat however many requests a client packs into one read. */
    while (s->busy == 1 && !s->closing && s->state == SS_IDLE && !s->proto_waiting &&
           next_request_ready(s))
        parse_head(s);
    if (--s->busy == 0 && s->closing)
        session_free(s);
}

/* After the last response byte left: either close, or half-close and keep
 * reading (and discarding) what the client is still sending. */
static void closing_flushed(struct session *s)
{
    /* Half-closing under TLS would skip close_notify: no lingering there. */
    if (!s->linger || s->client.tls) {
        s->closing = true;
        return;
    }
    s->linger = false;
    s->lingering = true;
    shutdown(stream_fd(s->io), SHUT_WR);
    session_set_timer(s, LINGER_MS);
    stream_set_timeouts(s->io, 0, s->w->cfg->upstream_idle_timeout_ms);
    stream_enable_read(s->io);
}

void session_close(struct session *s, bool flush)
{
    if (!flush) {
        s->closing = true;
        return;
    }
    if (s->state == SS_CLOSING)
        return;
    proxy_abort(&s->ex);
    s->state = SS_CLOSING;
    session_clear_timer(s);
    stream_setcb(s->io, client_read_cb, client_write_cb, client_event_cb, s);
    stream_set_write_low(s->io, 0);
    if (evbuffer_get_length(stream_output(s->io)) == 0) {
        closing_flushed(s);
        return;
    }
    session_set_timer(s, s->w->cfg->upstream_idle_timeout_ms); /* bounds the flush */
    if (s->linger)
        stream_enable_read(s->io);
    else
        stream_disable_read(s->io);
}

void session_drain(struct session *s)
{
    if (s->state == SS_PROXY_HEADER) {
        s->closing = true;
        session_enter(s);
        session_leave(s);
    } else if (s->state == SS_IDLE) {
        session_enter(s);
        session_close(s, true);
        session_leave(s);
    }
    /* otherwise: exchange_done sees w->draining and closes after */
}

/* ---- starting and ending exchanges ---- */

static void begin_request(struct session *s)
{
    exchange_init(&s->ex, s->w, &s->client, &h1_exchange_ops);
    s->ex.http_version = 11;
    s->ex.rh = head_get(&s->w->heads);
    s->state = SS_HEAD;
    s->head_bytes = 0;
    s->close_after = s->resp_chunked = s->body_paused = false;
    session_set_timer(s, s->w->cfg->client_header_timeout_ms);
}

static void enter_idle(struct session *s)
{
    s->state = SS_IDLE;
    stream_set_timeouts(s->io, 0, s->w->cfg->upstream_idle_timeout_ms);
    stream_enable_read(s->io);
    session_set_timer(s, s->w->cfg->client_keepalive_timeout_ms);
}

void session_exchange_done(struct session *s)
{
    bool keep = s->ex.req_done && s->client_keepalive && !s->close_after && !s->w->draining;
    finish_request(s);
    if (!keep) {
        session_close(s, true);
        return;
    }
    llhttp_resume(&s->req);
    enter_idle(s);
}

/* ---- the request head ---- */

static void head_failed(struct session *s, llhttp_errno_t err)
{
    int herr = s->ex.rh ? s->ex.rh->err : HEAD_OK;
    s->client_keepalive = false;
    s->ex.req_done = false;
    if (herr == HEAD_TOO_LARGE || herr == HEAD_TOO_MANY) {
        exchange_error(&s->ex, 431, "request header fields too large");
    } else if (herr == HEAD_URL_TOO_LONG) {
        exchange_error(&s->ex, 414, "request target too long");
    } else {
        char msg[160];
        snprintf(msg, sizeof(msg), "malformed request: %s",
                 llhttp_get_error_reason(&s->req) ? llhttp_get_error_reason(&s->req)
                                                  : llhttp_errno_name(err));
        log_debug("client %s: %s", s->client.peer_ip, msg);
        exchange_error(&s->ex, 400, msg);
    }
}

/* What llhttp 8.1 (strict) still lets through and a proxy must not forward
 * (found by the http_head fuzzer): a Transfer-Encoding that is not a final
 * "chunked" (checked only after the pause, so never by llhttp here), an empty
 * Transfer-Encoding beside Content-Length (RFC 9112 section 6.1), an empty
 * header name, and versions other than HTTP/1.x. NULL when the head is fine. */
static const char *head_framing_error(struct session *s)
{
    llhttp_t *p = &s->req;
    if (p->http_major != 1)
        return p->http_major == 0 ? "HTTP/0.9 requests are not supported"
                                  : "HTTP version not supported on this connection";
    const struct head *h = s->ex.rh;
    if (head_has_empty_name(h))
        return "empty header name";
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (x->kind == HDR_TRANSFER_ENCODING &&
            (!(p->flags & F_CHUNKED) || (p->flags & F_CONTENT_LENGTH)))
            return "Transfer-Encoding must end with chunked and come without Content-Length";
        /* RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding
         * has faulty framing. */
        if (x->kind == HDR_TRANSFER_ENCODING && p->http_minor == 0)
            return "Transfer-Encoding in an HTTP/1.0 request";
    }
    return NULL;
}

/* Does the request ask only for "h2c" (RFC 7540 section 3.2: HTTP/2 by
 * Upgrade, what curl --http2 sends on http:// URLs)? That asks the proxy
 * itself, which does not offer it (RFC 9113 dropped it; prior knowledge
 * works): the request is served in HTTP/1.1, as RFC 9110 section 7.8 lets
 * a server ignore Upgrade, and never tunnelled to a sandbox. */
static bool upgrade_is_h2c_only(const struct head *h)
{
    bool any = false;
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (x->kind != HDR_UPGRADE)
            continue;
        struct toklist t = toklist_of(head_str(h, x->val_off), x->val_len);
        const char *tok;
        size_t n;
        while (toklist_next(&t, &tok, &n)) {
            if (n != 3 || strncasecmp(tok, "h2c", 3) != 0)
                return false;
            any = true;
        }
    }
    return any;
}

static void on_request_head(struct session *s)
{
    llhttp_t *p = &s->req;
    const char *bad = head_framing_error(s);
    if (bad) {
        /* Still SS_HEAD: answered like any malformed head (the parser is
         * not run on, the connection closes after the reply). */
        session_clear_timer(s);
        s->client_keepalive = false;
        log_debug("client %s: malformed request: %s", s->client.peer_ip, bad);
        exchange_error(&s->ex, 400, bad);
        return;
    }
    struct exchange *ex = &s->ex;
    ex->http_version = p->http_minor == 0 ? 10 : 11;
    ex->method = p->method;
    ex->head_method = p->method == HTTP_HEAD;
    ex->upgrade = p->upgrade;
    if (p->flags & F_CHUNKED) {
        ex->req_body = EX_BODY_STREAM;
        ex->req_trailer_from = ex->rh->nhdrs; /* trailers append after */
        if (!s->body_buf && !(s->body_buf = evbuffer_new())) {
            session_close(s, false);
            return;
        }
    } else if (p->content_length > 0) {
        ex->req_body = EX_BODY_LENGTH;
        ex->req_length = p->content_length;
    }
    s->client_keepalive = llhttp_should_keep_alive(p);
    if (ex->upgrade && upgrade_is_h2c_only(ex->rh)) {
        ex->upgrade = false;
        s->client_keepalive = false; /* llhttp parses nothing after an upgrade */
    }
    session_clear_timer(s);
    s->state = SS_EXCHANGE;
    if (p->method == HTTP_CONNECT) {
        s->client_keepalive = false;
        exchange_error(ex, 405, "CONNECT is not supported");
        return;
    }
    const char *bad_target = h1_target_normalise(ex);
    if (bad_target) {
        exchange_error(ex, 400, bad_target);
        return;
    }
    s->client.route->route(ex);
}

/* ---- HTTP/2 ---- */

enum proto { PROTO_HTTP1, PROTO_HTTP2, PROTO_UNDECIDED };

/* Which protocol the connection speaks, decided once, before its first
 * request: HTTP/2 when TLS chose ALPN h2, or on a plain listener that
 * offers it when the bytes are the connection preface (RFC 9113 section
 * 3.4, prior knowledge); HTTP/1.1 otherwise. Undecided while the bytes so
 * far are a prefix of the preface. */
static enum proto choose_protocol(struct session *s)
{
    if (s->client.tls)
        return tls_alpn_is_h2(stream_tls_ssl(s->io)) ? PROTO_HTTP2 : PROTO_HTTP1;
    /* Egress port 80 has no ingress listener: HTTP/1.1 only (SPEC 9: the
     * HTTP/2 preface is refused there). */
    if (s->client.listener == CLIENT_NO_LISTENER ||
        !s->w->cfg->listeners[s->client.listener].http2)
        return PROTO_HTTP1;
    char buf[H2_PREFACE_LEN];
    ev_ssize_t n = evbuffer_copyout(stream_input(s->io), buf, sizeof(buf));
    int r = h2_preface_match(buf, n > 0 ? (size_t)n : 0);
    return r == 1 ? PROTO_HTTP2 : r == 0 ? PROTO_HTTP1 : PROTO_UNDECIDED;
}

/* The stream, with what it buffered (the preface and the frames after
 * it), goes to a new HTTP/2 connection; the session ends without counting
 * the connection as closed. */
static void hand_to_http2(struct session *s)
{
    session_clear_timer(s);
    if (h2_conn_start(s->w, s->io, &s->client) == -1) {
        session_close(s, false);
        return;
    }
    s->io = NULL;
    s->handed_off = true;
    s->closing = true;
}

static void parse_head(struct session *s)
{
    struct evbuffer *in = stream_input(s->io);
    const uint32_t max = (uint32_t)s->w->cfg->client_max_head_bytes;
    while (s->state == SS_IDLE || s->state == SS_HEAD) {
        struct evbuffer_iovec v;
        if (s->state == SS_IDLE && !next_request_ready(s))
            return; /* the input waits; reading stops at its high-water mark */
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        if (!s->proto_chosen) {
            enum proto p = choose_protocol(s);
            if (p == PROTO_UNDECIDED) {
                s->proto_waiting = true; /* until more bytes come */
                return;                  /* the header timer bounds the wait */
            }
            s->proto_chosen = true;
            if (p == PROTO_HTTP2) {
                hand_to_http2(s);
                return;
            }
        }
        if (s->state == SS_IDLE)
            begin_request(s);
        if (!s->ex.rh) {
            session_close(s, false);
            return;
        }
        const char *base = v.iov_base;
        size_t len = v.iov_len;
        if (len > max - s->head_bytes + 1)
            len = max - s->head_bytes + 1; /* never parse past the limit */
        llhttp_errno_t err = llhttp_execute(&s->req, base, len);
        size_t used = err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&s->req) - base);
        s->head_bytes += (uint32_t)used;
        if (err != HPE_OK && err != HPE_PAUSED) {
            head_failed(s, err);
            return;
        }
        evbuffer_drain(in, used);
        if (s->head_bytes > max) {
            s->ex.rh->err = HEAD_TOO_LARGE;
            head_failed(s, HPE_USER);
            return;
        }
        if (err == HPE_PAUSED) {
            on_request_head(s);
            return;
        }
    }
}

/* ---- libevent callbacks ---- */

static void client_read_cb(struct stream *st, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    switch (s->state) {
    case SS_IDLE:
    case SS_HEAD:
        s->proto_waiting = false;
        parse_head(s);
        break;
    case SS_EXCHANGE:
        /* Body bytes go up once the upstream is ready for them; while
         * routing or connecting they wait in the buffer. */
        if (s->ex.state == EX_FORWARDING && !s->ex.req_done && !s->body_paused)
            h1_pump_request_body(s);
        break;
    case SS_CLOSING:
        evbuffer_drain(stream_input(st), evbuffer_get_length(stream_input(st)));
        break;
    default:
        break;
    }
    session_leave(s);
}

static void client_write_cb(struct stream *st, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    if (s->state == SS_CLOSING) {
        if (!s->lingering && evbuffer_get_length(stream_output(st)) == 0)
            closing_flushed(s);
    } else {
        proxy_response_resume(&s->ex);
    }
    session_leave(s);
}

/* One log line per failed handshake (a scanner costs a line, not more). */
static void tls_failed(struct session *s)
{
    char buf[160];
    unsigned long e = stream_tls_error(s->io);
    log_info("client %s: TLS handshake failed: %s", s->client.peer_ip,
             e ? tls_error_string(e, buf, sizeof(buf)) : "connection closed");
    METRIC_INC(&s->w->metrics, tls_handshake_failures);
    while (stream_tls_error(s->io))
        ; /* drain the per-connection error queue */
}

static void client_event_cb(struct stream *st, short what, void *arg)
{
    struct session *s = arg;
    if (what & STREAM_CONNECTED) {
        s->tls_up = true;
        return;
    }
    session_enter(s);
    if (s->client.tls && !s->tls_up && (what & (STREAM_ERROR | STREAM_EOF))) {
        tls_failed(s);
        session_close(s, false);
    } else if (what & STREAM_TIMEOUT) {
        log_debug("client %s: %s timeout in state %d", s->client.peer_ip,
                  (what & STREAM_READING) ? "read" : "write", s->state);
        session_close(s, false);
    } else if (s->state == SS_EXCHANGE && s->ex.state == EX_FORWARDING && s->ex.req_done &&
               (what & STREAM_EOF) && !(what & STREAM_ERROR)) {
        /* Half-close after a complete request: finish the response, then
         * close. */
        s->close_after = true;
        s->client_keepalive = false;
        stream_disable_read(st);
    } else {
        session_close(s, false);
    }
    session_leave(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    s->timer_armed_ms = 0;
    if (!s->deadline_ms)
        return;
    uint64_t now = time_now_ms();
    if (now < s->deadline_ms) { /* moved later since armed: wait the rest */
        session_set_timer(s, (int)(s->deadline_ms - now));
        return;
    }
    s->deadline_ms = 0;
    session_enter(s);
    switch (s->state) {
    case SS_HEAD:
        log_debug("client %s: request head not complete in %d ms", s->client.peer_ip,
                  s->w->cfg->client_header_timeout_ms);
        s->client_keepalive = false;
        exchange_error(&s->ex, 408, "request head not received in time");
        break;
    default: /* idle keep-alive, closing flush or linger */
        session_close(s, false);
        break;
    }
    session_leave(s);
}

static void format_peer(struct session *s)
{
    const struct sockaddr *sa = (const struct sockaddr *)&s->client.peer;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
            inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], s->client.peer_ip,
                      sizeof(s->client.peer_ip));
        else
            inet_ntop(AF_INET6, &a6->sin6_addr, s->client.peer_ip, sizeof(s->client.peer_ip));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->client.peer_ip,
                  sizeof(s->client.peer_ip));
    }
}

/* The client connection proper: plain or TLS, chosen once, here. */
static void start_io(struct session *s)
{
    struct worker *w = s->w;
    struct tls_ctx *tls =
        s->client.listener < w->cfg->listener_count ? w->rt->tls[s->client.listener] : NULL;
    if (tls) {
        SSL *ssl = tls_ssl_new(tls);
        if (ssl) {
            s->io = stream_new_tls(w->base, s->fd, ssl);
        } else {
            close(s->fd);
        }
        s->client.tls = true;
    } else {
        s->io = stream_new_socket(w->base, s->fd);
    }
    if (!s->io) {
        s->fd = -1; /* the stream constructors close it on failure */
        s->closing = true;
        return;
    }
    s->fd = -1; /* owned by the stream */
    stream_setcb(s->io, client_read_cb, client_write_cb, client_event_cb, s);
    stream_set_read_high(s->io, EX_HIGH_WATER);
    stream_set_write_low(s->io, EX_LOW_WATER);
    enter_idle(s);
    /* A new connection gets the header timeout for its first request (and
     * TLS handshake), not the longer keep-alive one. */
    session_set_timer(s, w->cfg->client_header_timeout_ms);
}

/* PROXY protocol: peek, parse, then take exactly the header's bytes off the
 * socket, so what follows (TLS ClientHello or HTTP) is untouched. */
static void proxy_header_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    unsigned char buf[PROXY_PROTO_MAX_HEADER];
    char err[128];
    session_enter(s);
    if (what & EV_TIMEOUT) {
        log_info("client %s: no PROXY protocol header within %d ms, closing", s->client.peer_ip,
                 s->w->cfg->client_header_timeout_ms);
        s->closing = true;
        goto out;
    }
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        goto out;
    if (n <= 0) {
        s->closing = true;
        goto out;
    }
    struct proxy_proto_info info;
    int r = proxy_proto_parse(buf, (size_t)n, &info, err, sizeof(err));
    if (r == PROXY_PROTO_NEED_MORE && (size_t)n < sizeof(buf)) {
        /* Peeked bytes stay readable: without more care the level-triggered
         * event would fire again at once, forever (found by the request-path
         * fuzzer). Ask the kernel to wake us only when more than what we saw
         * has arrived (SO_RCVLOWAT); a wake-up without more is the peer's
         * FIN, i.e. a header cut short. */
        if ((size_t)n <= s->pp_seen) {
            log_info("client %s: connection closed inside the PROXY protocol header",
                     s->client.peer_ip);
            s->closing = true;
            goto out;
        }
        s->pp_seen = (size_t)n;
        int low = (int)n + 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof(low));
        goto out;
    }
    if (s->pp_seen) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    }
    if (r < 0) {
        log_info("client %s: invalid PROXY protocol header (%s), closing", s->client.peer_ip,
                 r == PROXY_PROTO_NEED_MORE ? "too long" : err);
        s->closing = true;
        goto out;
    }
    if (recv(fd, buf, (size_t)r, 0) != r) {
        s->closing = true;
        goto out;
    }
    if (!info.local) {
        memcpy(&s->client.peer, &info.src, info.src_len);
        format_peer(s);
    }
    event_free(s->pp_ev);
    s->pp_ev = NULL;
    start_io(s);
out:
    session_leave(s);
}

/* A new session on an accepted socket (owns fd), not started yet. NULL
 * when out of memory (fd closed). */
static struct session *session_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                                   size_t listener, const struct route_ops *route)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return NULL;
    }
    s->w = w;
    s->fd = fd;
    s->client.listener = listener;
    s->client.route = route;
    memcpy(&s->client.peer, sa,
           (size_t)salen < sizeof(s->client.peer) ? (size_t)salen : sizeof(s->client.peer));
    format_peer(s);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->timer = evtimer_new(w->base, timer_cb, s);
    if (!s->timer) {
        close(fd);
        free(s);
        return NULL;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* see forward_start() in core/proxy.c */
    pthread_once(&once, init_req_settings);
    llhttp_init(&s->req, HTTP_REQUEST, &req_settings.st);
    s->req.data = s;
    list_insert_front(&w->sessions, &s->link);
    __atomic_store_n(&w->session_count, w->session_count + 1, __ATOMIC_RELAXED); /* main reads it */
    METRIC_INC(&w->metrics, client_connections);
    return s;
}

int session_accept(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    struct session *s = session_new(w, fd, sa, salen, index, &ingress_route_ops);
    if (!s)
        return -1;
    session_enter(s);
    if (w->cfg->listeners[index].proxy_protocol) {
        s->state = SS_PROXY_HEADER;
        s->pp_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, proxy_header_cb, s);
        struct timeval tv = tv_from_ms(w->cfg->client_header_timeout_ms);
        if (!s->pp_ev || event_add(s->pp_ev, &tv) == -1)
            s->closing = true;
    } else {
        start_io(s);
    }
    session_leave(s);
    return 0;
}

int session_accept_routed(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                          const struct sockaddr *dst, socklen_t dst_len,
                          const struct route_ops *route)
{
    struct session *s = session_new(w, fd, sa, salen, CLIENT_NO_LISTENER, route);
    if (!s)
        return -1;
    memcpy(&s->client.dst, dst, dst_len);
    s->client.dst_len = dst_len;
    session_enter(s);
    start_io(s);
    session_leave(s);
    return 0;
}
