/* The exchange operations in HTTP/1.1: the response head, body (chunked to
 * an HTTP/1.1 client when the length is unknown, close-delimited to an
 * HTTP/1.0 one), trailers, resets, the proxy's own replies, the request
 * body pumped from the client to the proxy, and the switch to a tunnel. */
#include <event2/buffer.h>
#include <string.h>

#include "chunked.h"
#include "config.h"
#include "h1.h"
#include "head.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "reply.h"
#include "rewrite.h"
#include "stream.h"
#include "tunnel.h"
#include "worker.h"

static struct session *session_of(const struct exchange *ex)
{
    return container_of(ex, struct session, ex);
}

static bool client_is_http10(const struct session *s)
{
    return s->req.http_major == 1 && s->req.http_minor == 0;
}

/* ---- the response ---- */

static int h1_send_head(struct exchange *ex, int status, const struct head *h)
{
    struct session *s = session_of(ex);
    struct evbuffer *out = stream_output(s->io);
    if (status < 200) {
        /* Interim: HTTP/1.0 clients cannot take 1xx (RFC 9110 15.2). */
        if (client_is_http10(s))
            return 0;
        int n = rewrite_response_head(out, status, h, false, RESP_CONN_NONE);
        if (n < 0)
            return -1;
        ex->bytes_out += (uint64_t)n;
        stream_flush(s->io);
        return 0;
    }
    /* Unknown length: chunked to an HTTP/1.1 client; an HTTP/1.0 one reads
     * to the close (RFC 9112 section 6.3). */
    s->resp_chunked = ex->resp_body == EX_BODY_STREAM && !client_is_http10(s);
    if (!s->client_keepalive || s->w->draining || ex->resp_body == EX_BODY_EOF ||
        (ex->resp_body == EX_BODY_STREAM && !s->resp_chunked) || (ex->upgrade && status != 101))
        s->close_after = true;
    enum resp_conn conn = s->close_after        ? RESP_CONN_CLOSE
                          : client_is_http10(s) ? RESP_CONN_KEEP_ALIVE
                                                : RESP_CONN_NONE;
    int n = rewrite_response_head(out, status, h, s->resp_chunked, conn);
    if (n < 0)
        return -1;
    ex->bytes_out += (uint64_t)n;
    stream_flush(s->io);
    return 0;
}

static void h1_send_body(struct exchange *ex, struct evbuffer *src, size_t len)
{
    struct session *s = session_of(ex);
    struct evbuffer *out = stream_output(s->io);
    if (s->resp_chunked) {
        ex->bytes_out += chunked_write(out, src, len);
    } else {
        evbuffer_remove_buffer(src, out, len);
        ex->bytes_out += len;
    }
    stream_flush(s->io);
}

static void h1_end(struct exchange *ex, const struct head *h, uint32_t from)
{
    struct session *s = session_of(ex);
    if (s->resp_chunked) {
        ex->bytes_out += chunked_write_end(stream_output(s->io), h, from);
        stream_flush(s->io);
    }
    if (!ex->req_done) {
        /* Answered before the request body ended (e.g. 413): the rest of
         * the body can't be framed away safely, so the client goes. */
        s->close_after = true;
        s->linger = true;
    }
    session_exchange_done(s);
}

/* After the head went out nothing can say "error" in HTTP/1.1 but the
 * connection itself: what is written goes, then the close (a chunked body
 * without its last chunk, or fewer bytes than Content-Length). */
static void h1_reset(struct exchange *ex)
{
    session_close(session_of(ex), true);
}

static size_t h1_pending(const struct exchange *ex)
{
    return evbuffer_get_length(stream_output(session_of(ex)->io));
}

/* ---- the proxy's own replies ---- */

/* The parser is paused at the end of the head. A request without a body is
 * complete already: run the parser over nothing so it reaches
 * message-complete, then the connection can carry the next request. */
static void complete_bodyless_request(struct session *s)
{
    if (s->ex.req_done || s->ex.req_body != EX_BODY_NONE)
        return;
    llhttp_resume(&s->req);
    llhttp_execute(&s->req, "", 0);
}

static void h1_reply(struct exchange *ex, struct reply *r)
{
    struct session *s = session_of(ex);
    char buf[4096];
    struct reply_negotiation n;
    memset(&n, 0, sizeof(n));
    if (s->state == SS_HEAD)
        ex->method = s->req.method; /* for the access log */
    if (ex->rh) {
        const struct hdr *x;
#define VIEW(field, kind)                           \
    if ((x = head_find(ex->rh, kind, NULL))) {      \
        n.field.ptr = head_str(ex->rh, x->val_off); \
        n.field.len = x->val_len;                   \
    }
        VIEW(user_agent, HDR_USER_AGENT);
        VIEW(accept, HDR_ACCEPT);
        VIEW(sec_fetch_mode, HDR_SEC_FETCH_MODE);
        VIEW(x_requested_with, HDR_X_REQUESTED_WITH);
#undef VIEW
    }
    if (ex->rh && s->state != SS_HEAD)
        complete_bodyless_request(s);
    r->html = reply_wants_html(&n);
    r->head_only = ex->head_method;
    if (!ex->req_done || !s->client_keepalive || s->w->draining)
        r->close = true;
    int len = reply_render(r, buf, sizeof(buf));
    if (len > 0) {
        evbuffer_add(stream_output(s->io), buf, (size_t)len);
        stream_flush(s->io);
        ex->bytes_out += (uint64_t)len;
    }
    ex->status = r->status;
    ex->outcome = OUTCOME_PROXY;
    METRIC_INC(&s->w->metrics, rejected_by_proxy);
    if (r->close) {
        /* Request bytes we will never read: linger so they do not turn into
         * a RST that kills this reply. */
        s->linger = !ex->req_done || evbuffer_get_length(stream_input(s->io)) > 0;
        s->close_after = true;
    }
    proxy_abort(ex);
    session_exchange_done(s);
}

/* ---- the request body ---- */

/* The request is complete on the client side: its body timeout (client)
 * ends; the proxy starts the response timeout. */
static void request_sent(struct session *s)
{
    if (s->ex.req_body != EX_BODY_NONE)
        stream_set_timeouts(s->io, 0, s->w->cfg->upstream_idle_timeout_ms);
    bool chunked = s->ex.req_body == EX_BODY_STREAM;
    proxy_request_end(&s->ex, chunked ? s->ex.rh : NULL, s->ex.req_trailer_from);
}

void h1_pump_request_body(struct session *s)
{
    struct exchange *ex = &s->ex;
    struct evbuffer *in = stream_input(s->io);
    while (!ex->req_done) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        llhttp_errno_t err = llhttp_execute(&s->req, v.iov_base, v.iov_len);
        size_t used = err == HPE_OK
                          ? v.iov_len
                          : (size_t)(llhttp_get_error_pos(&s->req) - (const char *)v.iov_base);
        if (err != HPE_OK && err != HPE_PAUSED) {
            log_info("client %s: bad request body: %s", s->client.peer_ip,
                     llhttp_get_error_reason(&s->req));
            proxy_abort(ex);
            s->client_keepalive = false;
            if (!ex->resp_head_done)
                exchange_error(ex, 400, "malformed request body");
            else
                session_close(s, false);
            return;
        }
        int full;
        if (ex->req_body == EX_BODY_STREAM) {
            evbuffer_drain(in, used);
            full = proxy_request_body(ex, s->body_buf, evbuffer_get_length(s->body_buf));
        } else {
            full = proxy_request_body(ex, in, used);
        }
        if (ex->req_done) {
            request_sent(s);
            return;
        }
        if (full) {
            stream_disable_read(s->io);
            s->body_paused = true;
            return;
        }
    }
}

/* The upstream took the head (first call) or drained the body below its
 * low-water mark: go on reading the client. */
static void h1_body_consumed(struct exchange *ex)
{
    struct session *s = session_of(ex);
    if (ex->req_done)
        return;
    if (llhttp_get_errno(&s->req) == HPE_PAUSED) {
        /* First call: the parser still sits at the end of the head. */
        llhttp_resume(&s->req);
        if (ex->req_body == EX_BODY_NONE) {
            llhttp_execute(&s->req, "", 0); /* reaches message-complete */
            if (!ex->req_done) {            /* the head passed, its framing did not */
                proxy_abort(ex);
                s->client_keepalive = false;
                exchange_error(ex, 400, "malformed request framing");
                return;
            }
            request_sent(s);
            return;
        }
        stream_set_timeouts(s->io, s->w->cfg->client_body_timeout_ms,
                            s->w->cfg->upstream_idle_timeout_ms);
    }
    if (s->body_paused) {
        s->body_paused = false;
        stream_enable_read(s->io);
    }
    h1_pump_request_body(s);
}

/* ---- the tunnel ---- */

static void tunnel_hold(void *arg)
{
    session_enter(arg);
}
static void tunnel_release(void *arg)
{
    session_leave(arg);
}
static void tunnel_closed(void *arg, bool flush_client)
{
    session_close(arg, flush_client);
}

static const struct tunnel_owner h1_tunnel_owner = {
    .hold = tunnel_hold, .release = tunnel_release, .closed = tunnel_closed};

static void h1_start_tunnel(struct exchange *ex)
{
    struct session *s = session_of(ex);
    const struct config *cfg = s->w->cfg;
    s->state = SS_TUNNEL;
    session_clear_timer(s);
    tunnel_start(&s->tun, s->io, ex->up->io, cfg->websocket_idle_timeout_ms,
                 cfg->upstream_idle_timeout_ms, &h1_tunnel_owner, s);
}

/* ---- nesting ---- */

static void h1_hold(struct exchange *ex)
{
    session_enter(session_of(ex));
}
static void h1_release(struct exchange *ex)
{
    session_leave(session_of(ex));
}

const struct exchange_ops h1_exchange_ops = {
    .send_head = h1_send_head,
    .send_body = h1_send_body,
    .end = h1_end,
    .reset = h1_reset,
    .reply = h1_reply,
    .body_consumed = h1_body_consumed,
    .start_tunnel = h1_start_tunnel,
    .hold = h1_hold,
    .release = h1_release,
    .pending = h1_pending,
};
