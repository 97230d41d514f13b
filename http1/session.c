/* Client side of a connection: accept, the request head, keep-alive,
 * timeouts, the proxy's own replies, and the session's lifetime. */
#include "session.h"

#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "ev.h"
#include "head.h"
#include "listener.h"
#include "proxy_proto.h"
#include "runtime.h"
#include "tls.h"
#include "conn_limit.h"
#include "log.h"
#include "reply.h"
#include "timeutil.h"
#include "pool.h"
#include "worker.h"

/* How long a closing connection with unread request bytes keeps reading and
 * discarding them, so the kernel does not answer them with a RST that could
 * destroy the response still in flight (nginx's lingering close). */
#define LINGER_MS 2000

static void client_read_cb(struct stream *bev, void *arg);
static void client_write_cb(struct stream *bev, void *arg);
static void client_event_cb(struct stream *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void parse_head(struct session *s);

/* ---- llhttp request callbacks ---- */

/* The head being collected by parser p: the request's or the response's.
 * One set of span callbacks serves both parsers. */
static struct head *head_of(llhttp_t *p)
{
    struct session *s = p->data;
    return p == &s->req ? s->rh : s->ph;
}
static int on_url_or_status(llhttp_t *p, const char *at, size_t len)
{
    return head_on_url(head_of(p), at, len) ? HPE_USER : 0;
}
static int on_field(llhttp_t *p, const char *at, size_t len)
{
    return head_on_field(head_of(p), at, len) ? HPE_USER : 0;
}
static int on_field_done(llhttp_t *p)
{
    return head_on_field_done(head_of(p));
}
static int on_value(llhttp_t *p, const char *at, size_t len)
{
    return head_on_value(head_of(p), at, len) ? HPE_USER : 0;
}
static int on_value_done(llhttp_t *p)
{
    return head_on_value_done(head_of(p));
}

void session_head_callbacks(llhttp_settings_t *st)
{
    st->on_url = on_url_or_status;
    st->on_status = on_url_or_status;
    st->on_header_field = on_field;
    st->on_header_field_complete = on_field_done;
    st->on_header_value = on_value;
    st->on_header_value_complete = on_value_done;
}

/* Pauses so routing (maybe a Redis round trip) can run before any body byte
 * is consumed; the parser resumes exactly here. */
static int req_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}
/* Pauses at the end of each request: pipelined requests wait in the input
 * buffer until this exchange is over (RFC 9112 section 9.3.2). */
static int req_on_message_complete(llhttp_t *p)
{
    struct session *s = p->data;
    s->req_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t req_settings;

static void init_req_settings(void)
{
    llhttp_settings_init(&req_settings);
    session_head_callbacks(&req_settings);
    req_settings.on_headers_complete = req_on_headers_complete;
    req_settings.on_message_complete = req_on_message_complete;
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

/* Releases what the current request holds: route record, connection-limit
 * slot, head arenas, and records the metrics for it. */
static void finish_request(struct session *s)
{
    struct worker *w = s->w;
    if (s->start_us && s->head_bytes) {
        uint64_t dur = time_now_us() - s->start_us;
        if (s->status)
            metrics_observe_request(&w->metrics, s->status, dur);
        metrics_observe_outcome(&w->metrics, s->outcome);
        access_log_request(s, dur);
    }
    s->start_us = 0;
    lookup_cancel(&s->waiter);
    if (s->limit_held) {
        limits_release(s->rr->limit);
        s->limit_held = false;
    }
    route_rec_unref(s->rr);
    s->rr = NULL;
    head_put(&w->heads, s->rh);
    head_put(&w->heads, s->ph);
    s->rh = s->ph = NULL;
    s->host = s->path = NULL;
}

static void session_free(struct session *s)
{
    struct worker *w = s->w;
    finish_request(s);
    upconn_close(s->up);
    ev_free(s->timer);
    ev_free(s->pp_ev);
    if (s->cbev)
        stream_free(s->cbev);
    else if (s->fd != -1)
        close(s->fd);
    list_unlink(&s->link);
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
    return evbuffer_get_length(stream_input(s->cbev)) > 0 &&
           evbuffer_get_length(stream_output(s->cbev)) < SESSION_HIGH_WATER;
}

void session_leave(struct session *s)
{
    /* Pipelined requests are parsed here, at the outermost level, rather
     * than from deep inside the end of the previous exchange: the stack
     * stays flat however many requests a client packs into one read. */
    while (s->busy == 1 && !s->closing && s->state == SS_IDLE && next_request_ready(s))
        parse_head(s);
    if (--s->busy == 0 && s->closing)
        session_free(s);
}

/* After the last response byte left: either close, or half-close and keep
 * reading (and discarding) what the client is still sending. */
static void closing_flushed(struct session *s)
{
    /* Half-closing under TLS would skip close_notify: no lingering there. */
    if (!s->linger || s->tls) {
        s->closing = true;
        return;
    }
    s->linger = false;
    s->lingering = true;
    shutdown(stream_fd(s->cbev), SHUT_WR);
    session_set_timer(s, LINGER_MS);
    stream_set_timeouts(s->cbev, 0, s->w->cfg->upstream_idle_timeout_ms);
    stream_enable_read(s->cbev);
}

void session_close(struct session *s, bool flush)
{
    if (!flush) {
        s->closing = true;
        return;
    }
    if (s->state == SS_CLOSING)
        return;
    relay_abort_upstream(s);
    s->state = SS_CLOSING;
    session_clear_timer(s);
    stream_setcb(s->cbev, client_read_cb, client_write_cb, client_event_cb, s);
    stream_set_write_low(s->cbev, 0);
    if (evbuffer_get_length(stream_output(s->cbev)) == 0) {
        closing_flushed(s);
        return;
    }
    session_set_timer(s, s->w->cfg->upstream_idle_timeout_ms); /* bounds the flush */
    if (s->linger)
        stream_enable_read(s->cbev);
    else
        stream_disable_read(s->cbev);
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
    s->rh = head_get(&s->w->heads);
    s->state = SS_HEAD;
    s->head_bytes = 0;
    s->start_us = time_now_us();
    s->status = 0;
    s->bytes_out = 0;
    s->outcome = OUTCOME_ABORTED;
    s->upstream_used = false;
    s->req_done = s->req_has_body = s->req_body_started = false;
    s->resp_head_done = s->resp_done = s->close_after = s->dechunk = false;
    s->upgrade = s->is_head_method = false;
    s->up_eof_pending = s->client_paused = s->up_paused = false;
    s->connect_attempts = 0;
    s->stale_retry_done = false;
    session_set_timer(s, s->w->cfg->client_header_timeout_ms);
}

static void enter_idle(struct session *s)
{
    s->state = SS_IDLE;
    stream_set_timeouts(s->cbev, 0, s->w->cfg->upstream_idle_timeout_ms);
    stream_enable_read(s->cbev);
    session_set_timer(s, s->w->cfg->client_keepalive_timeout_ms);
}

void session_exchange_done(struct session *s)
{
    bool keep = s->req_done && s->client_keepalive && !s->close_after && !s->w->draining;
    finish_request(s);
    if (!keep) {
        session_close(s, true);
        return;
    }
    llhttp_resume(&s->req);
    enter_idle(s);
}

/* The parser is paused at the end of the head. A request without a body is
 * complete already: run the parser over nothing so it reaches
 * message-complete, then the connection can carry the next request. */
static void complete_bodyless_request(struct session *s)
{
    if (s->req_done || s->req_has_body)
        return;
    llhttp_resume(&s->req);
    llhttp_execute(&s->req, "", 0);
}

void session_reply(struct session *s, struct reply *r)
{
    char buf[4096];
    struct reply_negotiation n;
    memset(&n, 0, sizeof(n));
    if (s->rh) {
        const struct hdr *x;
#define VIEW(field, kind)                          \
    if ((x = head_find(s->rh, kind, NULL))) {      \
        n.field.ptr = head_str(s->rh, x->val_off); \
        n.field.len = x->val_len;                  \
    }
        VIEW(user_agent, HDR_USER_AGENT);
        VIEW(accept, HDR_ACCEPT);
        VIEW(sec_fetch_mode, HDR_SEC_FETCH_MODE);
        VIEW(x_requested_with, HDR_X_REQUESTED_WITH);
#undef VIEW
    }
    if (s->rh && s->state != SS_HEAD)
        complete_bodyless_request(s);
    r->html = reply_wants_html(&n);
    r->head_only = s->is_head_method;
    if (!s->req_done || !s->client_keepalive || s->w->draining)
        r->close = true;
    int len = reply_render(r, buf, sizeof(buf));
    if (len > 0) {
        evbuffer_add(stream_output(s->cbev), buf, (size_t)len);
        stream_flush(s->cbev);
        s->bytes_out += (uint64_t)len;
    }
    s->status = r->status;
    s->outcome = OUTCOME_PROXY;
    METRIC_INC(&s->w->metrics, rejected_by_proxy);
    if (r->close) {
        /* Request bytes we will never read: linger so they do not turn into
         * a RST that kills this reply. */
        s->linger = !s->req_done || evbuffer_get_length(stream_input(s->cbev)) > 0;
        s->close_after = true;
    }
    relay_abort_upstream(s);
    session_exchange_done(s);
}

void session_error(struct session *s, int status, const char *message)
{
    struct reply r = {.status = status, .message = message, .connection_limit = -1};
    if (status == 503)
        r.retry_after = 1;
    session_reply(s, &r);
}

void session_error_sandbox(struct session *s, int status, const char *message, bool with_port)
{
    struct reply r = {.status = status,
                      .message = message,
                      .sandbox_id = s->target.sandbox_id,
                      .port = with_port ? s->target.port : 0,
                      .connection_limit = -1};
    if (status == 503)
        r.retry_after = 1;
    session_reply(s, &r);
}

/* ---- the request head ---- */

static void head_failed(struct session *s, llhttp_errno_t err)
{
    int herr = s->rh ? s->rh->err : HEAD_OK;
    s->client_keepalive = false;
    s->req_done = false;
    if (herr == HEAD_TOO_LARGE || herr == HEAD_TOO_MANY) {
        session_error(s, 431, "request header fields too large");
    } else if (herr == HEAD_URL_TOO_LONG) {
        session_error(s, 414, "request target too long");
    } else {
        char msg[160];
        snprintf(msg, sizeof(msg), "malformed request: %s",
                 llhttp_get_error_reason(&s->req) ? llhttp_get_error_reason(&s->req)
                                                  : llhttp_errno_name(err));
        log_debug("client %s: %s", s->peer_ip, msg);
        session_error(s, 400, msg);
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
    const struct head *h = s->rh;
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

static void on_request_head(struct session *s)
{
    llhttp_t *p = &s->req;
    const char *bad = head_framing_error(s);
    if (bad) {
        /* Still SS_HEAD: answered like any malformed head (the parser is
         * not run on, the connection closes after the reply). */
        session_clear_timer(s);
        s->client_keepalive = false;
        log_debug("client %s: malformed request: %s", s->peer_ip, bad);
        session_error(s, 400, bad);
        return;
    }
    s->is_head_method = p->method == HTTP_HEAD;
    s->upgrade = p->upgrade;
    s->client_keepalive = llhttp_should_keep_alive(p);
    s->req_has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    session_clear_timer(s);
    s->state = SS_ROUTING;
    if (p->method == HTTP_CONNECT) {
        s->client_keepalive = false;
        session_error(s, 405, "CONNECT is not supported");
        return;
    }
    route_request(s);
}

static void parse_head(struct session *s)
{
    struct evbuffer *in = stream_input(s->cbev);
    const uint32_t max = (uint32_t)s->w->cfg->client_max_head_bytes;
    while (s->state == SS_IDLE || s->state == SS_HEAD) {
        struct evbuffer_iovec v;
        if (s->state == SS_IDLE && !next_request_ready(s))
            return; /* the input waits; reading stops at its high-water mark */
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        if (s->state == SS_IDLE)
            begin_request(s);
        if (!s->rh) {
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
            s->rh->err = HEAD_TOO_LARGE;
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

static void client_read_cb(struct stream *bev, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    switch (s->state) {
    case SS_IDLE:
    case SS_HEAD:
        parse_head(s);
        break;
    case SS_FORWARDING:
        if (!s->req_done)
            relay_pump_request(s);
        break;
    case SS_TUNNEL:
        relay_tunnel_client_read(s);
        break;
    case SS_CLOSING:
        evbuffer_drain(stream_input(bev), evbuffer_get_length(stream_input(bev)));
        break;
    default:
        break; /* routing/connecting: bytes wait in the buffer */
    }
    session_leave(s);
}

static void client_write_cb(struct stream *bev, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    if (s->state == SS_CLOSING) {
        if (!s->lingering && evbuffer_get_length(stream_output(bev)) == 0)
            closing_flushed(s);
    } else {
        relay_on_client_writable(s);
    }
    session_leave(s);
}

/* One log line per failed handshake (a scanner costs a line, not more). */
static void tls_failed(struct session *s)
{
    char buf[160];
    unsigned long e = stream_tls_error(s->cbev);
    log_info("client %s: TLS handshake failed: %s", s->peer_ip,
             e ? tls_error_string(e, buf, sizeof(buf)) : "connection closed");
    METRIC_INC(&s->w->metrics, tls_handshake_failures);
    while (stream_tls_error(s->cbev))
        ; /* drain the per-connection error queue */
}

static void client_event_cb(struct stream *bev, short what, void *arg)
{
    struct session *s = arg;
    if (what & STREAM_CONNECTED) {
        s->tls_up = true;
        return;
    }
    session_enter(s);
    if (s->tls && !s->tls_up && (what & (STREAM_ERROR | STREAM_EOF))) {
        tls_failed(s);
        session_close(s, false);
    } else if (what & STREAM_TIMEOUT) {
        log_debug("client %s: %s timeout in state %d", s->peer_ip,
                  (what & STREAM_READING) ? "read" : "write", s->state);
        if (s->state == SS_TUNNEL && (what & STREAM_READING)) {
            relay_tunnel_idle(s, bev);
        } else {
            session_close(s, false);
        }
    } else if (s->state == SS_FORWARDING && s->req_done && (what & STREAM_EOF) &&
               !(what & STREAM_ERROR)) {
        /* Half-close after a complete request: finish the response, then
         * close. */
        s->close_after = true;
        s->client_keepalive = false;
        stream_disable_read(bev);
    } else if (s->state == SS_TUNNEL && (what & STREAM_EOF)) {
        relay_tunnel_client_gone(s);
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
        log_debug("client %s: request head not complete in %d ms", s->peer_ip,
                  s->w->cfg->client_header_timeout_ms);
        s->client_keepalive = false;
        session_error(s, 408, "request head not received in time");
        break;
    case SS_CONNECTING:
        relay_connect(s); /* retry backoff elapsed */
        break;
    default: /* idle keep-alive, closing flush or linger */
        session_close(s, false);
        break;
    }
    session_leave(s);
}

static void format_peer(struct session *s)
{
    const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
            inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], s->peer_ip, sizeof(s->peer_ip));
        else
            inet_ntop(AF_INET6, &a6->sin6_addr, s->peer_ip, sizeof(s->peer_ip));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->peer_ip,
                  sizeof(s->peer_ip));
    }
}

/* The client connection proper: plain or TLS, chosen once, here. */
static void start_io(struct session *s)
{
    struct worker *w = s->w;
    struct tls_ctx *tls = w->rt->tls[s->listener];
    if (tls) {
        SSL *ssl = tls_ssl_new(tls);
        if (ssl) {
            s->cbev = stream_new_tls(w->base, s->fd, ssl);
        } else {
            close(s->fd);
        }
        s->tls = true;
    } else {
        s->cbev = stream_new_socket(w->base, s->fd);
    }
    if (!s->cbev) {
        s->fd = -1; /* the stream constructors close it on failure */
        s->closing = true;
        return;
    }
    s->fd = -1; /* owned by the stream */
    stream_setcb(s->cbev, client_read_cb, client_write_cb, client_event_cb, s);
    stream_set_read_high(s->cbev, SESSION_HIGH_WATER);
    stream_set_write_low(s->cbev, SESSION_LOW_WATER);
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
        log_info("client %s: no PROXY protocol header within %d ms, closing", s->peer_ip,
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
            log_info("client %s: connection closed inside the PROXY protocol header", s->peer_ip);
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
        log_info("client %s: invalid PROXY protocol header (%s), closing", s->peer_ip,
                 r == PROXY_PROTO_NEED_MORE ? "too long" : err);
        s->closing = true;
        goto out;
    }
    if (recv(fd, buf, (size_t)r, 0) != r) {
        s->closing = true;
        goto out;
    }
    if (!info.local) {
        memcpy(&s->peer, &info.src, info.src_len);
        format_peer(s);
    }
    event_free(s->pp_ev);
    s->pp_ev = NULL;
    start_io(s);
out:
    session_leave(s);
}

int session_accept(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return -1;
    }
    s->w = w;
    s->fd = fd;
    s->listener = index;
    memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
    format_peer(s);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->timer = evtimer_new(w->base, timer_cb, s);
    if (!s->timer) {
        close(fd);
        free(s);
        return -1;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* see relay_start() */
    pthread_once(&once, init_req_settings);
    llhttp_init(&s->req, HTTP_REQUEST, &req_settings);
    s->req.data = s;
    list_insert_front(&w->sessions, &s->link);
    __atomic_store_n(&w->session_count, w->session_count + 1, __ATOMIC_RELAXED); /* main reads it */
    METRIC_INC(&w->metrics, client_connections);
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
