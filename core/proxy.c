/* Upstream side of an exchange: connect (pool or new, with retries), the
 * request head rewrite, bodies streamed both ways with backpressure, the
 * response head rewrite, and the WebSocket tunnel.
 *
 * Bodies keep their original framing: llhttp (strict) validates every byte
 * and the bytes it accepted are moved, not copied, between the evbuffers.
 * The only exception is a chunked response to an HTTP/1.0 client, which is
 * de-chunked (copied) and close-delimited. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "backoff.h"
#include "config.h"
#include "head.h"
#include "log.h"
#include "record.h"
#include "reply.h"
#include "rewrite.h"
#include "session.h"
#include "stream.h"
#include "timeutil.h"
#include "pool.h"
#include "worker.h"

static void up_read_cb(struct stream *bev, void *arg);
static void up_write_cb(struct stream *bev, void *arg);
static void up_event_cb(struct stream *bev, short what, void *arg);
static void pump_response(struct session *s);
static void upstream_eof(struct session *s, bool error);

/* ---- llhttp response callbacks ---- */

static int resp_on_message_begin(llhttp_t *p)
{
    struct session *s = p->data;
    if (!s->ph)
        s->ph = head_get(&s->w->heads);
    else
        head_reset(s->ph);
    return s->ph ? 0 : HPE_USER;
}
static int resp_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}
static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (s->dechunk) {
        evbuffer_add(stream_output(s->cbev), at, len);
        stream_flush(s->cbev);
        s->bytes_out += len;
    }
    return 0;
}
/* Interim 1xx responses are relayed and parsing goes on to the final one;
 * the final one pauses the parser so the exchange can end cleanly. */
static int resp_on_message_complete(llhttp_t *p)
{
    struct session *s = p->data;
    if (p->status_code < 200 && p->status_code != 101)
        return 0;
    s->resp_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t resp_settings;

static void init_resp_settings(void)
{
    llhttp_settings_init(&resp_settings);
    session_head_callbacks(&resp_settings);
    resp_settings.on_message_begin = resp_on_message_begin;
    resp_settings.on_headers_complete = resp_on_headers_complete;
    resp_settings.on_body = resp_on_body;
    resp_settings.on_message_complete = resp_on_message_complete;
}

/* ---- failures ---- */

void relay_abort_upstream(struct session *s)
{
    if (s->up) {
        upconn_close(s->up);
        s->up = NULL;
    }
    s->up_paused = false;
}

/* The upstream failed: a precise 502/504 if the client has not seen a
 * response head yet, else cut the client connection (never present a
 * truncated body as complete). */
static void upstream_failed(struct session *s, int status, const char *why)
{
    log_info("sandbox %s port %u: %s", s->target.sandbox_id, s->target.port, why);
    relay_abort_upstream(s);
    if (!s->resp_head_done) {
        s->close_after = s->close_after || !s->req_done;
        session_error_sandbox(s, status, why, true);
    } else {
        session_close(s, true);
    }
}

/* ---- connecting ---- */

static void relay_start(struct session *s, struct upconn *c);

static void on_connected(struct upconn *c, int err, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    s->up = NULL;
    if (c) {
        relay_start(s, c);
    } else if (err == ECONNREFUSED && s->connect_attempts <= s->w->cfg->upstream_connect_retries) {
        /* The app may still be binding its port: back off and try again. */
        METRIC_INC(&s->w->metrics, upstream_retries);
        session_set_timer(s, backoff_ms(s->w->cfg->upstream_retry_backoff_ms, s->connect_attempts));
    } else if (err == ETIMEDOUT) {
        upstream_failed(s, 504, "upstream connect timed out");
    } else if (err == ECONNREFUSED) {
        upstream_failed(s, 502, "upstream refused the connection");
    } else {
        char why[128];
        snprintf(why, sizeof(why), "cannot connect to upstream: %s", strerror(err));
        upstream_failed(s, 502, why);
    }
    session_leave(s);
}

static void connect_new(struct session *s, const char *key)
{
    const struct record *rec = s->rr->rec;
    struct sockaddr_storage ss = rec->addr;
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(s->target.port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons(s->target.port);
    s->connect_attempts++;
    s->upstream_used = true;
    s->up = upconn_connect(s->w->pool, key, (struct sockaddr *)&ss, rec->addr_len,
                           s->w->cfg->upstream_connect_timeout_ms, on_connected, s);
    if (!s->up)
        upstream_failed(s, 502, "cannot create an upstream socket");
}

static void pool_key_of(struct session *s, char *key, size_t cap)
{
    const struct record *rec = s->rr->rec;
    pool_key(key, cap, s->target.sandbox_id, rec->address, s->target.port, rec->execution_id);
}

void relay_connect(struct session *s)
{
    char key[512];
    s->state = SS_CONNECTING;
    pool_key_of(s, key, sizeof(key));
    if (s->connect_attempts == 0 && !s->stale_retry_done) {
        struct upconn *c = pool_acquire(s->w->pool, key);
        if (c) {
            s->upstream_used = true;
            METRIC_INC(&s->w->metrics, upstream_pool_reuses);
            relay_start(s, c);
            return;
        }
    }
    connect_new(s, key);
}

/* ---- the exchange ---- */

/* The request's last byte is on its way: the body timeout (client) ends and
 * the response timeout (upstream) starts, as with nginx's proxy_read_timeout;
 * a slow upload must not count against the app's time to answer. */
static void request_complete(struct session *s)
{
    const struct config *cfg = s->w->cfg;
    if (s->req_has_body) {
        stream_set_timeouts(s->cbev, 0, cfg->upstream_idle_timeout_ms);
    }
    if (s->up && s->up->bev && !s->resp_head_done)
        stream_set_timeouts(s->up->bev,
                            cfg->upstream_response_timeout_ms > 0
                                ? cfg->upstream_response_timeout_ms
                                : cfg->upstream_idle_timeout_ms,
                            cfg->upstream_idle_timeout_ms);
}

static void relay_start(struct session *s, struct upconn *c)
{
    const struct config *cfg = s->w->cfg;
    s->up = c;
    s->up_closed = false;
    s->state = SS_FORWARDING;
    s->resp_head_done = s->resp_done = false;
    /* pthread_once: a second worker must not see the settings half-filled
     * (and its fast path is a plain load, not a locked exchange per request). */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_resp_settings);
    llhttp_init(&s->resp, HTTP_RESPONSE, &resp_settings);
    s->resp.data = s;
    stream_setcb(c->bev, up_read_cb, up_write_cb, up_event_cb, s);
    stream_set_write_low(c->bev, SESSION_LOW_WATER);
    /* No read timeout while the request is still going up: the app is
     * allowed to be silent while it receives a body (request_complete arms
     * it). The write timeout catches an app that stops taking the body. */
    stream_set_timeouts(c->bev, 0, cfg->upstream_idle_timeout_ms);
    if (rewrite_request_head(s, stream_output(c->bev)) == -1) {
        upstream_failed(s, 502, "request head too large to forward");
        return;
    }
    stream_flush(c->bev);
    stream_enable_read(c->bev);
    if (!s->req_done) {
        llhttp_resume(&s->req);
        if (!s->req_has_body) {
            llhttp_execute(&s->req, "", 0); /* reaches message-complete */
            if (!s->req_done) {             /* the head passed, its framing did not */
                relay_abort_upstream(s);
                s->client_keepalive = false;
                session_error(s, 400, "malformed request framing");
                return;
            }
        } else {
            stream_set_timeouts(s->cbev, cfg->client_body_timeout_ms,
                                cfg->upstream_idle_timeout_ms);
            stream_enable_read(s->cbev);
            relay_pump_request(s); /* calls request_complete at the end */
            return;
        }
    }
    request_complete(s); /* bodyless, or a retry of a complete request */
}

void relay_pump_request(struct session *s)
{
    if (!s->up || !s->up->bev)
        return;
    struct evbuffer *in = stream_input(s->cbev);
    struct evbuffer *out = stream_output(s->up->bev);
    while (!s->req_done) {
        if (evbuffer_get_length(out) >= SESSION_HIGH_WATER) {
            stream_disable_read(s->cbev);
            s->client_paused = true;
            return;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        llhttp_errno_t err = llhttp_execute(&s->req, v.iov_base, v.iov_len);
        size_t used = err == HPE_OK
                          ? v.iov_len
                          : (size_t)(llhttp_get_error_pos(&s->req) - (const char *)v.iov_base);
        if (err != HPE_OK && err != HPE_PAUSED) {
            log_info("client %s: bad request body: %s", s->peer_ip,
                     llhttp_get_error_reason(&s->req));
            relay_abort_upstream(s);
            s->client_keepalive = false;
            if (!s->resp_head_done)
                session_error(s, 400, "malformed request body");
            else
                session_close(s, false);
            return;
        }
        if (used) {
            evbuffer_remove_buffer(in, out, used);
            stream_flush(s->up->bev);
            s->req_body_started = true;
        }
        if (s->req_done)
            request_complete(s);
    }
}

/* The final response head is parsed: decide the client's framing and
 * connection fate, then write the rewritten head. */
static int on_response_head(struct session *s)
{
    llhttp_t *p = &s->resp;
    int status = p->status_code;
    /* llhttp takes any digits for a status and any version: a proxy must not
     * relay what its client cannot frame (found by the request-path fuzzer:
     * "HTTP/2.0 20 ..." was taken for an interim response). */
    if (p->http_major != 1 || status < 100 || status > 599) {
        upstream_failed(s, 502, "invalid response from upstream: bad status line");
        return -1;
    }
    if (head_has_empty_name(s->ph)) {
        /* llhttp (strict) accepts ": value"; RFC 9110 section 5.1 does not. */
        upstream_failed(s, 502, "invalid response from upstream: empty header name");
        return -1;
    }
    if (status < 200 && status != 101) {
        /* Interim: HTTP/1.0 clients cannot take 1xx (RFC 9110 15.2). */
        if (s->req.http_minor > 0 || s->req.http_major > 1)
            return rewrite_response_head(s);
        return 0;
    }
    if (status == 101 && !s->upgrade) {
        upstream_failed(s, 502, "upstream switched protocols without an upgrade request");
        return -1;
    }
    /* RFC 9112 section 6.3 rule 1: responses to HEAD, and 204 and 304, end
     * with their head whatever Content-Length says (llhttp only knows it
     * when no length is given). */
    if (s->is_head_method || status == 204 || status == 304)
        p->flags |= F_SKIPBODY;
    s->dechunk = (p->flags & F_CHUNKED) && s->req.http_major == 1 && s->req.http_minor == 0 &&
                 !s->is_head_method;
    if (!s->client_keepalive || s->w->draining || s->dechunk || llhttp_message_needs_eof(p) ||
        (s->upgrade && status != 101))
        s->close_after = true;
    s->resp_head_done = true;
    stream_set_timeouts(s->up->bev, s->w->cfg->upstream_idle_timeout_ms,
                        s->w->cfg->upstream_idle_timeout_ms);
    return rewrite_response_head(s);
}

static void tunnel_start(struct session *s);

static void response_complete(struct session *s)
{
    struct upconn *c = s->up;
    s->status = s->resp.status_code;
    s->outcome = OUTCOME_UPSTREAM;
    if (s->status == 101) {
        tunnel_start(s);
        return;
    }
    bool reuse = s->req_done && !s->up_closed && llhttp_should_keep_alive(&s->resp) &&
                 evbuffer_get_length(stream_input(c->bev)) == 0 &&
                 evbuffer_get_length(stream_output(c->bev)) == 0;
    if (!s->req_done) {
        /* Answered before the request body ended (e.g. 413): the rest of
         * the body can't be framed away safely, so the client goes. */
        s->close_after = true;
        s->linger = true;
    }
    s->up = NULL;
    if (reuse)
        pool_release(c);
    else
        upconn_close(c);
    session_exchange_done(s);
}

/* RFC 9110 section 9.2.2: methods whose repetition has the effect of one
 * request. Only these may be sent again after the connection closed under
 * them: the app may have acted on the request before it closed. */
static bool method_is_idempotent(int method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
        return true;
    default:
        return false;
    }
}

static void upstream_eof(struct session *s, bool error)
{
    if (s->resp_head_done && llhttp_message_needs_eof(&s->resp) && !error) {
        /* A close-delimited body ends here (RFC 9112 section 6.3 item 8). */
        llhttp_finish(&s->resp);
        if (s->resp_done) {
            response_complete(s);
            return;
        }
    }
    if (!s->resp_head_done && s->up && s->up->reused && !s->req_body_started &&
        !s->stale_retry_done && evbuffer_get_length(stream_input(s->up->bev)) == 0 && !s->ph &&
        method_is_idempotent(s->req.method)) {
        /* A pooled connection the upstream closed as the request arrived:
         * most likely its keep-alive timeout won the race and the app never
         * saw the request, but it may have. An idempotent request whose body
         * has not started going up is sent again on a fresh connection
         * (RFC 9110 section 9.2.2); anything else gets the 502 below. */
        s->stale_retry_done = true;
        METRIC_INC(&s->w->metrics, upstream_retries);
        relay_abort_upstream(s);
        relay_connect(s);
        return;
    }
    upstream_failed(s, 502,
                    error ? "upstream connection reset before a complete response"
                          : "upstream closed the connection before a complete response");
}

static void pump_response(struct session *s)
{
    struct evbuffer *in = stream_input(s->up->bev);
    struct evbuffer *out = stream_output(s->cbev);
    while (!s->resp_done) {
        if (evbuffer_get_length(out) >= SESSION_HIGH_WATER) {
            stream_disable_read(s->up->bev);
            s->up_paused = true;
            return;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            if (s->up_eof_pending) {
                s->up_eof_pending = false;
                upstream_eof(s, false);
            }
            return;
        }
        bool in_head = !s->resp_head_done;
        llhttp_errno_t err = llhttp_execute(&s->resp, v.iov_base, v.iov_len);
        size_t used = err == HPE_OK
                          ? v.iov_len
                          : (size_t)(llhttp_get_error_pos(&s->resp) - (const char *)v.iov_base);
        if (err != HPE_OK && err != HPE_PAUSED) {
            char why[160];
            snprintf(why, sizeof(why), "invalid response from upstream: %s",
                     s->ph && s->ph->err ? "head too large" : llhttp_get_error_reason(&s->resp));
            upstream_failed(s, 502, why);
            return;
        }
        if (in_head || s->dechunk) {
            evbuffer_drain(in, used);
        } else {
            evbuffer_remove_buffer(in, out, used);
            stream_flush(s->cbev);
            s->bytes_out += used;
        }
        if (err == HPE_PAUSED) {
            if (s->resp_done) {
                response_complete(s);
                return;
            }
            if (on_response_head(s) == -1)
                return;
            llhttp_resume(&s->resp);
            /* A response without a body (204, 304, HEAD, Content-Length: 0)
             * completes without another byte: run the parser over nothing
             * to reach message-complete now. */
            llhttp_execute(&s->resp, "", 0);
            if (s->resp_done) {
                response_complete(s);
                return;
            }
        }
    }
}

/* ---- the WebSocket (any Upgrade) tunnel ---- */

static void tunnel_move(struct session *s, struct stream *from, struct stream *to)
{
    struct evbuffer *dst = stream_output(to);
    evbuffer_add_buffer(dst, stream_input(from));
    stream_flush(to);
    s->last_activity_ms = time_now_ms();
    if (evbuffer_get_length(dst) >= SESSION_HIGH_WATER) {
        stream_disable_read(from);
        if (from == s->cbev)
            s->client_paused = true;
        else
            s->up_paused = true;
    }
}

static void tunnel_start(struct session *s)
{
    const struct config *cfg = s->w->cfg;
    s->state = SS_TUNNEL;
    metrics_observe_request(&s->w->metrics, 101, time_now_us() - s->start_us);
    metrics_observe_outcome(&s->w->metrics, OUTCOME_UPSTREAM);
    access_log_request(s, time_now_us() - s->start_us);
    s->start_us = 0; /* counted now; the tunnel's life is not a request */
    stream_set_timeouts(s->cbev, cfg->websocket_idle_timeout_ms, cfg->upstream_idle_timeout_ms);
    stream_set_timeouts(s->up->bev, cfg->websocket_idle_timeout_ms, cfg->upstream_idle_timeout_ms);
    session_clear_timer(s);
    tunnel_move(s, s->up->bev, s->cbev);
    tunnel_move(s, s->cbev, s->up->bev);
    if (!s->client_paused)
        stream_enable_read(s->cbev);
    if (!s->up_paused)
        stream_enable_read(s->up->bev);
}

void relay_tunnel_client_read(struct session *s)
{
    if (s->up)
        tunnel_move(s, s->cbev, s->up->bev);
}

/* A read timeout on either side of the tunnel: idle only if neither side
 * moved a byte for the whole idle timeout. */
void relay_tunnel_idle(struct session *s, struct stream *side)
{
    int idle_ms = s->w->cfg->websocket_idle_timeout_ms;
    uint64_t quiet = time_now_ms() - s->last_activity_ms;
    if (quiet >= (uint64_t)idle_ms) {
        log_debug("tunnel for sandbox %s idle for %llu ms, closing", s->target.sandbox_id,
                  (unsigned long long)quiet);
        session_close(s, false);
        return;
    }
    if (!((side == s->cbev) ? s->client_paused : s->up_paused))
        stream_enable_read(side);
}

/* ---- upstream callbacks ---- */

static void up_read_cb(struct stream *bev, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    if (s->state == SS_TUNNEL)
        tunnel_move(s, bev, s->cbev);
    else if (s->state == SS_FORWARDING)
        pump_response(s);
    session_leave(s);
}

/* Upstream output drained below the low-water mark: resume the client. */
void relay_tunnel_client_gone(struct session *s)
{
    if (!s->up) {
        session_close(s, false);
        return;
    }
    tunnel_move(s, s->cbev, s->up->bev);
    stream_disable_read(s->cbev);
    if (evbuffer_get_length(stream_output(s->up->bev)) == 0) {
        session_close(s, false);
        return;
    }
    s->tunnel_flushing_up = true;
    stream_set_write_low(s->up->bev, 0); /* call back at empty */
}

static void up_write_cb(struct stream *bev, void *arg)
{
    struct session *s = arg;
    if (s->tunnel_flushing_up) {
        if (evbuffer_get_length(stream_output(bev)) == 0) {
            session_enter(s);
            session_close(s, false);
            session_leave(s);
        }
        return;
    }
    if (!s->client_paused)
        return;
    session_enter(s);
    s->client_paused = false;
    stream_enable_read(s->cbev);
    if (s->state == SS_TUNNEL)
        tunnel_move(s, s->cbev, bev);
    else if (s->state == SS_FORWARDING)
        relay_pump_request(s);
    session_leave(s);
}

void relay_on_client_writable(struct session *s)
{
    if (!s->up_paused || !s->up)
        return;
    s->up_paused = false;
    stream_enable_read(s->up->bev);
    if (s->state == SS_TUNNEL)
        tunnel_move(s, s->up->bev, s->cbev);
    else if (s->state == SS_FORWARDING)
        pump_response(s);
}

static void up_event_cb(struct stream *bev, short what, void *arg)
{
    struct session *s = arg;
    session_enter(s);
    if (s->state == SS_TUNNEL) {
        if (what & STREAM_TIMEOUT) {
            relay_tunnel_idle(s, bev);
        } else {
            /* One side went away: flush what it said, then close. */
            tunnel_move(s, bev, s->cbev);
            session_close(s, true);
        }
    } else if (what & STREAM_TIMEOUT) {
        if (!s->resp_head_done)
            upstream_failed(s, 504, "upstream did not respond in time");
        else
            upstream_failed(s, 502, "upstream stalled mid-response");
    } else {
        /* Parse what arrived before the close first; the connection itself
         * must not go back to the pool. */
        s->up_closed = true;
        if (!s->up_paused)
            pump_response(s);
        if (!s->closing && s->state == SS_FORWARDING && s->up && !s->resp_done) {
            if (s->up_paused)
                s->up_eof_pending = true;
            else
                upstream_eof(s, (what & STREAM_ERROR) != 0);
        }
    }
    session_leave(s);
}
