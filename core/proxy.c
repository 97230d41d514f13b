/* Upstream side of an exchange: connect (pool or new, with retries), the
 * request head rewrite, bodies with backpressure, the response head and body
 * handed to the front end.
 *
 * llhttp (strict) validates every upstream byte. A body whose length is
 * known is moved between evbuffers, not copied; a chunked one is de-chunked
 * (its payload copied once into ex->body_buf) so the front end gets payload
 * bytes and frames them its own way. */
#include "proxy.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backoff.h"
#include "chunked.h"
#include "config.h"
#include "exchange.h"
#include "head.h"
#include "log.h"
#include "pool.h"
#include "record.h"
#include "reply.h"
#include "rewrite.h"
#include "route_rec.h"
#include "stream.h"
#include "timeutil.h"
#include "websocket.h"
#include "worker.h"

static void up_read_cb(struct stream *st, void *arg);
static void up_write_cb(struct stream *st, void *arg);
static void up_event_cb(struct stream *st, short what, void *arg);
static void pump_response(struct exchange *ex);
static void upstream_eof(struct exchange *ex, bool error);
static void connect_upstream(struct exchange *ex);

/* ---- llhttp response callbacks (the head spans: head_parser_callbacks) ---- */

static int resp_on_message_begin(llhttp_t *p)
{
    struct exchange *ex = p->data;
    if (!ex->ph)
        ex->ph = head_get(&ex->w->heads);
    else
        head_reset(ex->ph);
    return ex->ph ? 0 : HPE_USER;
}
static int resp_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}
static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct exchange *ex = p->data;
    if (ex->resp_body == EX_BODY_STREAM && (p->flags & F_CHUNKED))
        evbuffer_add(ex->body_buf, at, len);
    return 0;
}
/* Interim 1xx responses go to the front end and parsing goes on to the
 * final one; the final one pauses the parser so the exchange can end
 * cleanly. */
static int resp_on_message_complete(llhttp_t *p)
{
    struct exchange *ex = p->data;
    if (p->status_code < 200 && p->status_code != 101)
        return 0;
    ex->resp_done = true;
    return HPE_PAUSED;
}

static struct head_parser_settings resp_settings;

static void init_resp_settings(void)
{
    llhttp_settings_init(&resp_settings.st);
    head_parser_callbacks(&resp_settings, offsetof(struct exchange, ph));
    resp_settings.st.on_url = NULL; /* responses have a status, not a target */
    resp_settings.st.on_message_begin = resp_on_message_begin;
    resp_settings.st.on_headers_complete = resp_on_headers_complete;
    resp_settings.st.on_body = resp_on_body;
    resp_settings.st.on_message_complete = resp_on_message_complete;
}

/* ---- failures ---- */

void proxy_abort(struct exchange *ex)
{
    if (ex->up) {
        upconn_close(ex->up);
        ex->up = NULL;
    }
    if (ex->retry_armed) { /* event_del takes the base lock: not per request */
        evtimer_del(ex->retry_timer);
        ex->retry_armed = false;
    }
    ex->up_paused = false;
}

/* The upstream failed: a precise 502/504 if the client has not seen a
 * response head yet, else a reset (never present a truncated body as
 * complete). */
static void upstream_failed(struct exchange *ex, int status, const char *why)
{
    log_info("sandbox %s port %u: %s", ex->target.sandbox_id, ex->target.port, why);
    proxy_abort(ex);
    if (!ex->resp_head_done)
        exchange_error_sandbox(ex, status, why, true);
    else
        ex->ops->reset(ex);
}

/* ---- connecting ---- */

static void forward_start(struct exchange *ex, struct upconn *c);

static void on_connected(struct upconn *c, int err, void *arg)
{
    struct exchange *ex = arg;
    const struct config *cfg = ex->w->cfg;
    ex->ops->hold(ex);
    ex->up = NULL;
    if (c) {
        forward_start(ex, c);
    } else if (err == ECONNREFUSED && !ex->transparent &&
               ex->connect_attempts <= cfg->upstream_connect_retries) {
        /* The app may still be binding its port: back off and try again. */
        METRIC_INC(&ex->w->metrics, upstream_retries);
        struct timeval tv =
            tv_from_ms(backoff_ms(cfg->upstream_retry_backoff_ms, ex->connect_attempts));
        evtimer_add(ex->retry_timer, &tv);
        ex->retry_armed = true;
    } else if (err == ETIMEDOUT) {
        upstream_failed(ex, 504, "upstream connect timed out");
    } else if (err == ECONNREFUSED) {
        upstream_failed(ex, 502, "upstream refused the connection");
    } else {
        char why[128];
        snprintf(why, sizeof(why), "cannot connect to upstream: %s", strerror(err));
        upstream_failed(ex, 502, why);
    }
    ex->ops->release(ex);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *ex = arg;
    ex->retry_armed = false;
    ex->ops->hold(ex);
    if (ex->state == EX_CONNECTING && !ex->up)
        connect_upstream(ex);
    ex->ops->release(ex);
}

static void connect_new(struct exchange *ex, const char *key)
{
    if (!ex->retry_timer)
        ex->retry_timer = evtimer_new(ex->w->base, retry_cb, ex);
    ex->connect_attempts++;
    ex->upstream_used = true;
    ex->up =
        ex->retry_timer
            ? upconn_connect(ex->w->pool, key, (struct sockaddr *)&ex->up_addr, ex->up_addr_len,
                             ex->w->cfg->upstream_connect_timeout_ms, on_connected, ex)
            : NULL;
    if (!ex->up)
        upstream_failed(ex, 502, "cannot create an upstream socket");
}

static void connect_upstream(struct exchange *ex)
{
    char key[512];
    const struct sockaddr *sa = (const struct sockaddr *)&ex->up_addr;
    unsigned port = ntohs(sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                                    : ((const struct sockaddr_in *)sa)->sin_port);
    ex->state = EX_CONNECTING;
    pool_key(key, sizeof(key), ex->up_pool_name, ex->up_addr_text, port, ex->up_pool_tag);
    if (ex->connect_attempts == 0 && !ex->stale_retry_done) {
        struct upconn *c = pool_acquire(ex->w->pool, key);
        if (c) {
            ex->upstream_used = true;
            METRIC_INC(&ex->w->metrics, upstream_pool_reuses);
            forward_start(ex, c);
            return;
        }
    }
    connect_new(ex, key);
}

void proxy_start(struct exchange *ex)
{
    connect_upstream(ex);
}

/* ---- the request ---- */

/* The request's last byte is on its way: the response timeout (upstream)
 * starts, as with nginx's proxy_read_timeout; a slow upload must not count
 * against the app's time to answer. */
static void request_complete(struct exchange *ex)
{
    const struct config *cfg = ex->w->cfg;
    if (ex->up && ex->up->io && !ex->resp_head_done)
        stream_set_timeouts(ex->up->io,
                            cfg->upstream_response_timeout_ms > 0
                                ? cfg->upstream_response_timeout_ms
                                : cfg->upstream_idle_timeout_ms,
                            cfg->upstream_idle_timeout_ms);
}

static void forward_start(struct exchange *ex, struct upconn *c)
{
    const struct config *cfg = ex->w->cfg;
    ex->up = c;
    ex->up_closed = false;
    ex->state = EX_FORWARDING;
    ex->resp_head_done = ex->resp_done = false;
    /* pthread_once: a second worker must not see the settings half-filled
     * (and its fast path is a plain load, not a locked exchange per request). */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_resp_settings);
    llhttp_init(&ex->resp, HTTP_RESPONSE, &resp_settings.st);
    ex->resp.data = ex;
    stream_setcb(c->io, up_read_cb, up_write_cb, up_event_cb, ex);
    stream_set_write_low(c->io, EX_LOW_WATER);
    /* No read timeout while the request is still going up: the app is
     * allowed to be silent while it receives a body (request_complete arms
     * it). The write timeout catches an app that stops taking the body. */
    stream_set_timeouts(c->io, 0, cfg->upstream_idle_timeout_ms);
    if (rewrite_request_head(ex, stream_output(c->io)) == -1) {
        upstream_failed(ex, 502, "request head too large to forward");
        return;
    }
    stream_flush(c->io);
    stream_enable_read(c->io);
    if (ex->req_done)
        request_complete(ex); /* a retry of a complete request */
    else
        ex->ops->body_consumed(ex); /* the front end sends the body (or ends it) */
}

int proxy_request_body(struct exchange *ex, struct evbuffer *src, size_t len)
{
    if (!ex->up || !ex->up->io) {
        evbuffer_drain(src, len);
        return 1;
    }
    struct evbuffer *out = stream_output(ex->up->io);
    if (len) {
        if (ex->req_body == EX_BODY_STREAM)
            chunked_write(out, src, len);
        else
            evbuffer_remove_buffer(src, out, len);
        stream_flush(ex->up->io);
        ex->req_body_started = true;
    }
    return evbuffer_get_length(out) >= EX_HIGH_WATER;
}

void proxy_request_end(struct exchange *ex, const struct head *h, uint32_t from)
{
    ex->req_done = true;
    if (ex->req_body == EX_BODY_STREAM && ex->up && ex->up->io) {
        chunked_write_end(stream_output(ex->up->io), h, from);
        stream_flush(ex->up->io);
    }
    request_complete(ex);
}

/* ---- the response ---- */

/* How the response body is delimited (RFC 9112 section 6.3). */
static enum ex_body response_framing(const struct exchange *ex)
{
    const llhttp_t *p = &ex->resp;
    if (p->flags & F_SKIPBODY)
        return EX_BODY_NONE;
    if (p->flags & F_CHUNKED)
        return EX_BODY_STREAM;
    if (p->flags & F_CONTENT_LENGTH)
        return p->content_length ? EX_BODY_LENGTH : EX_BODY_NONE;
    return llhttp_message_needs_eof(p) ? EX_BODY_EOF : EX_BODY_NONE;
}

/* The 101 to an extended CONNECT (RFC 8441): its client never sent a key
 * and cannot check the answer, so the proxy does what RFC 6455 section 4.1
 * asks of a client: the Upgrade is "websocket" and the Sec-WebSocket-Accept
 * is the key's (a 101 from something that did not read the request, or a
 * cache, is no WebSocket). NULL when it holds, else why not. The
 * subprotocol and extensions go back to the client, which checks them
 * against what it offered. */
static const char *ws_handshake_error(const struct exchange *ex)
{
    const struct head *h = ex->ph;
    const struct hdr *up = head_find(h, HDR_UPGRADE, NULL);
    if (!up || !head_list_has(head_str(h, up->val_off), up->val_len, "websocket", 9))
        return "upstream switched to a protocol other than websocket";
    bool dup;
    const struct hdr *acc = head_find_one(h, HDR_SEC_WEBSOCKET_ACCEPT, &dup);
    if (!acc || dup ||
        !ws_accept_matches(ex->ws_key, strlen(ex->ws_key), head_str(h, acc->val_off), acc->val_len))
        return "upstream's Sec-WebSocket-Accept does not match the key";
    return NULL;
}

/* A response head is parsed: check what llhttp lets through and a client
 * could not frame, then hand it to the front end. */
static int on_response_head(struct exchange *ex)
{
    llhttp_t *p = &ex->resp;
    int status = p->status_code;
    /* llhttp takes any digits for a status and any version: a proxy must not
     * relay what its client cannot frame (found by the request-path fuzzer:
     * "HTTP/2.0 20 ..." was taken for an interim response). */
    if (p->http_major != 1 || status < 100 || status > 599) {
        upstream_failed(ex, 502, "invalid response from upstream: bad status line");
        return -1;
    }
    if (head_has_empty_name(ex->ph)) {
        /* llhttp (strict) accepts ": value"; RFC 9110 section 5.1 does not. */
        upstream_failed(ex, 502, "invalid response from upstream: empty header name");
        return -1;
    }
    if (status < 200 && status != 101) {
        ex->resp_body = EX_BODY_NONE;
        return ex->ops->send_head(ex, status, ex->ph);
    }
    if (status == 101 && !ex->upgrade) {
        upstream_failed(ex, 502, "upstream switched protocols without an upgrade request");
        return -1;
    }
    if (exchange_ext_connect(ex) && status >= 200 && status < 300) {
        /* A 2xx to an extended CONNECT tells the client its tunnel is open
         * (RFC 8441 section 5, RFC 9113 section 8.5): a sandbox that
         * ignored the Upgrade and answered 200 must not look like one.
         * Other statuses (403, 404, ...) go to the client as they are. */
        upstream_failed(ex, 502,
                        "upstream answered a WebSocket request without switching protocols");
        return -1;
    }
    if (status == 101 && ex->ws_key) {
        const char *why = ws_handshake_error(ex);
        if (why) {
            upstream_failed(ex, 502, why);
            return -1;
        }
    }
    /* RFC 9112 section 6.3 rule 1: responses to HEAD, and 204 and 304, end
     * with their head whatever Content-Length says (llhttp only knows it
     * when no length is given). */
    if (ex->head_method || status == 204 || status == 304)
        p->flags |= F_SKIPBODY;
    ex->resp_body = status == 101 ? EX_BODY_NONE : response_framing(ex);
    ex->resp_trailer_from = ex->ph->nhdrs;
    if (ex->resp_body == EX_BODY_STREAM && !ex->body_buf && !(ex->body_buf = evbuffer_new())) {
        upstream_failed(ex, 502, "out of memory");
        return -1;
    }
    ex->resp_head_done = true;
    stream_set_timeouts(ex->up->io, ex->w->cfg->upstream_idle_timeout_ms,
                        ex->w->cfg->upstream_idle_timeout_ms);
    if (ex->ops->send_head(ex, status, ex->ph) == -1) {
        ex->resp_head_done = false;
        upstream_failed(ex, 502, "response head too large to relay");
        return -1;
    }
    return 0;
}

static void response_complete(struct exchange *ex)
{
    struct upconn *c = ex->up;
    ex->status = ex->resp.status_code;
    ex->outcome = OUTCOME_UPSTREAM;
    ex->state = EX_DONE;
    if (ex->status == 101) {
        if (exchange_ext_connect(ex))
            ex->status = 200; /* what its client got (RFC 8441 section 5) */
        ex->state = EX_TUNNEL;
        ex->tunneled = true;
        METRIC_INC(&ex->w->metrics, tunnels[ex->http_version == 20]);
        exchange_count(ex); /* the tunnel's life is not a request */
        ex->ops->start_tunnel(ex);
        return;
    }
    bool reuse = ex->req_done && !ex->up_closed && llhttp_should_keep_alive(&ex->resp) &&
                 evbuffer_get_length(stream_input(c->io)) == 0 &&
                 evbuffer_get_length(stream_output(c->io)) == 0;
    ex->up = NULL;
    if (reuse)
        pool_release(c);
    else
        upconn_close(c);
    bool trailers = ex->resp_body == EX_BODY_STREAM && ex->ph->nhdrs > ex->resp_trailer_from;
    ex->ops->end(ex, trailers ? ex->ph : NULL, ex->resp_trailer_from);
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

static void upstream_eof(struct exchange *ex, bool error)
{
    if (ex->resp_head_done && llhttp_message_needs_eof(&ex->resp) && !error) {
        /* A close-delimited body ends here (RFC 9112 section 6.3 item 8). */
        llhttp_finish(&ex->resp);
        if (ex->resp_done) {
            response_complete(ex);
            return;
        }
    }
    if (!ex->resp_head_done && ex->up && ex->up->reused && !ex->req_body_started &&
        !ex->stale_retry_done && evbuffer_get_length(stream_input(ex->up->io)) == 0 && !ex->ph &&
        method_is_idempotent(exchange_upstream_method(ex))) {
        /* A pooled connection the upstream closed as the request arrived:
         * most likely its keep-alive timeout won the race and the app never
         * saw the request, but it may have. An idempotent request whose body
         * has not started going up is sent again on a fresh connection
         * (RFC 9110 section 9.2.2); anything else gets the 502 below. */
        ex->stale_retry_done = true;
        METRIC_INC(&ex->w->metrics, upstream_retries);
        proxy_abort(ex);
        connect_upstream(ex);
        return;
    }
    upstream_failed(ex, 502,
                    error ? "upstream connection reset before a complete response"
                          : "upstream closed the connection before a complete response");
}

/* Gives the front end the payload bytes the parser just accepted: `used`
 * bytes at the front of `in` (moved when the body has a length or is
 * close-delimited, dropped after their payload was copied when chunked). */
static void deliver_body(struct exchange *ex, struct evbuffer *in, size_t used)
{
    if (ex->resp_body == EX_BODY_STREAM) {
        evbuffer_drain(in, used);
        size_t n = evbuffer_get_length(ex->body_buf);
        if (n)
            ex->ops->send_body(ex, ex->body_buf, n);
    } else if (used) {
        ex->ops->send_body(ex, in, used);
    }
}

static void pump_response(struct exchange *ex)
{
    struct evbuffer *in = stream_input(ex->up->io);
    while (!ex->resp_done) {
        if (ex->ops->pending(ex) >= EX_HIGH_WATER) {
            stream_disable_read(ex->up->io);
            ex->up_paused = true;
            return;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            if (ex->up_eof_pending) {
                ex->up_eof_pending = false;
                upstream_eof(ex, false);
            }
            return;
        }
        bool in_head = !ex->resp_head_done;
        llhttp_errno_t err = llhttp_execute(&ex->resp, v.iov_base, v.iov_len);
        size_t used = err == HPE_OK
                          ? v.iov_len
                          : (size_t)(llhttp_get_error_pos(&ex->resp) - (const char *)v.iov_base);
        if (err != HPE_OK && err != HPE_PAUSED) {
            char why[160];
            snprintf(why, sizeof(why), "invalid response from upstream: %s",
                     ex->ph && ex->ph->err ? "head too large" : llhttp_get_error_reason(&ex->resp));
            upstream_failed(ex, 502, why);
            return;
        }
        if (in_head)
            evbuffer_drain(in, used);
        else
            deliver_body(ex, in, used);
        if (err == HPE_PAUSED) {
            if (ex->resp_done) {
                response_complete(ex);
                return;
            }
            if (on_response_head(ex) == -1)
                return;
            llhttp_resume(&ex->resp);
            /* A response without a body (204, 304, HEAD, Content-Length: 0)
             * completes without another byte: run the parser over nothing
             * to reach message-complete now. */
            llhttp_execute(&ex->resp, "", 0);
            if (ex->resp_done) {
                response_complete(ex);
                return;
            }
        }
    }
}

void proxy_response_resume(struct exchange *ex)
{
    if (!ex->up_paused || !ex->up || ex->state != EX_FORWARDING)
        return;
    ex->up_paused = false;
    stream_enable_read(ex->up->io);
    pump_response(ex);
}

/* ---- upstream callbacks ---- */

static void up_read_cb(struct stream *st, void *arg)
{
    struct exchange *ex = arg;
    ex->ops->hold(ex);
    if (ex->state == EX_FORWARDING)
        pump_response(ex);
    ex->ops->release(ex);
}

/* Upstream output drained below the low-water mark: the front end may give
 * more request body. */
static void up_write_cb(struct stream *st, void *arg)
{
    struct exchange *ex = arg;
    if (ex->req_done || ex->state != EX_FORWARDING)
        return;
    ex->ops->hold(ex);
    ex->ops->body_consumed(ex);
    ex->ops->release(ex);
}

static void up_event_cb(struct stream *st, short what, void *arg)
{
    struct exchange *ex = arg;
    ex->ops->hold(ex);
    if (what & STREAM_TIMEOUT) {
        if (!ex->resp_head_done)
            upstream_failed(ex, 504, "upstream did not respond in time");
        else
            upstream_failed(ex, 502, "upstream stalled mid-response");
    } else {
        /* Parse what arrived before the close first; the connection itself
         * must not go back to the pool. */
        ex->up_closed = true;
        if (!ex->up_paused)
            pump_response(ex);
        if (ex->state == EX_FORWARDING && ex->up && !ex->resp_done) {
            if (ex->up_paused)
                ex->up_eof_pending = true;
            else
                upstream_eof(ex, (what & STREAM_ERROR) != 0);
        }
    }
    ex->ops->release(ex);
}
