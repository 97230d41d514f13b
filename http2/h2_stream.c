/* An HTTP/2 stream as an exchange: the request head assembled from HPACK
 * fields into a head arena (pseudo-headers, cookie crumbs joined, Host
 * against :authority, the certificate against :authority), the request
 * body handed upstream as the upstream takes it (and only then given back
 * to the client's window), and the exchange operations that answer in
 * HTTP/2: HEADERS (1xx, final), DATA taken from the stream's queue without
 * a copy, trailers, RST_STREAM, the proxy's own replies. An extended
 * CONNECT for a WebSocket (RFC 8441) is assembled here too; its tunnel,
 * after the sandbox's 101, is h2_tunnel.c's. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "h2_int.h"
#include "head.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "route.h"
#include "stream.h"
#include "timeutil.h"
#include "tls.h"
#include "worker.h"

static const struct exchange_ops h2_exchange_ops;

static struct h2_stream *stream_of(const struct exchange *ex)
{
    return container_of((struct exchange *)ex, struct h2_stream, ex);
}

static struct h2_stream *stream_by_id(struct h2_conn *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ngh, id);
}

#define NV(n, nlen, v, vlen)               \
    ((nghttp2_nv){.name = (uint8_t *)(n),  \
                  .namelen = (nlen),       \
                  .value = (uint8_t *)(v), \
                  .valuelen = (vlen),      \
                  .flags = NGHTTP2_NV_FLAG_NONE})

/* ---- ending ---- */

/* The exchange is over (counted, its route record, limit slot and response
 * head arena released); the stream object stays until nghttp2 closes the
 * stream, since DATA may still be queued. The request head arena goes now. */
static void finish_exchange(struct h2_stream *st)
{
    if (st->ex_done)
        return;
    st->ex_done = true;
    if (st->paused_full) {
        st->paused_full = false;
        st->c->npaused--;
    }
    exchange_finish(&st->ex);
    head_put(&st->c->w->heads, st->ex.rh);
    st->ex.rh = NULL;
    st->ex.authority = st->ex.path = NULL;
}

/* Request bytes this stream will never forward: back to the client's
 * window (the connection's, and the stream's while it is open), so the
 * connection window never leaks. */
static void drop_body(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    size_t n = evbuffer_get_length(st->body_in);
    st->dropping_body = true;
    if (!n)
        return;
    evbuffer_drain(st->body_in, n);
    if (st->closed)
        nghttp2_session_consume_connection(c->ngh, n);
    else
        nghttp2_session_consume(c->ngh, st->id, n);
}

static void drop_output(struct h2_stream *st)
{
    size_t n = evbuffer_get_length(st->out);
    evbuffer_drain(st->out, n);
    st->c->queued -= n;
}

void h2s_release(struct h2_conn *c, struct h2_stream *st)
{
    if (!st->ex_done) {
        proxy_abort(&st->ex); /* never pooled: the response did not finish */
        finish_exchange(st);
    }
    if (!st->closed) {
        st->closed = true;
        /* nghttp2 may still know the stream (the connection is going):
         * its callbacks find no object from now on. */
        nghttp2_session_set_stream_user_data(c->ngh, st->id, NULL);
    }
    drop_body(st);
    drop_output(st);
    list_unlink(&st->ready_link);
    list_move_back(&c->dead, &st->link);
    if (--c->nstreams == 0) {
        c->idle_ms = time_now_ms();
        conn_arm(c, c->idle_ms + (uint64_t)c->w->cfg->client_keepalive_timeout_ms);
    }
}

void h2s_free(struct h2_stream *st)
{
    list_unlink(&st->link);
    for (unsigned i = 0; i < st->ncookies; i++)
        nghttp2_rcbuf_decref(st->cookies[i]);
    free(st->cookies);
    head_put(&st->c->w->heads, st->ex.rh);
    exchange_free_buffers(&st->ex);
    if (st->body_in)
        evbuffer_free(st->body_in);
    if (st->out)
        evbuffer_free(st->out);
    free(st->trailers);
    free(st);
}

void h2s_on_close(struct h2_conn *c, struct h2_stream *st, uint32_t code)
{
    if (!st->ex_done && !st->tunnel)
        log_debug("client %s: HTTP/2 stream %d closed before its response ended (%s)",
                  c->client.peer_ip, st->id, nghttp2_http2_strerror(code));
    st->closed = true; /* nghttp2 forgets it as this returns */
    h2s_release(c, st);
}

/* Resets a stream for the client's fault (a limit, a malformed body):
 * the RST_STREAM counts against the reset budget when it is sent. */
static void reset_stream(struct h2_stream *st, uint32_t code)
{
    nghttp2_submit_rst_stream(st->c->ngh, NGHTTP2_FLAG_NONE, st->id, code);
    drop_output(st);
    if (!st->ex_done) {
        proxy_abort(&st->ex);
        finish_exchange(st);
    }
    drop_body(st);
}

/* ---- the request head ---- */

static void refuse(struct h2_stream *st, int status, const char *why)
{
    if (!st->refuse) {
        st->refuse = status;
        st->refuse_why = why;
    }
}

int h2s_on_begin_headers(struct h2_conn *c, const nghttp2_frame *frame)
{
    const struct config *cfg = c->w->cfg;
    int32_t id = frame->hd.stream_id;
    /* Rapid reset: however many streams a client may open at once, it may
     * not open more than twice that in one read (nginx). */
    if (++c->new_in_read > 2 * (unsigned)cfg->http2_max_concurrent_streams) {
        nghttp2_submit_rst_stream(c->ngh, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        conn_spend(c, "too many new streams in one read");
        return 0;
    }
    struct h2_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->c = c;
    st->id = id;
    st->body_in = evbuffer_new();
    st->out = evbuffer_new();
    exchange_init(&st->ex, c->w, &c->client, &h2_exchange_ops);
    st->ex.http_version = 20;
    st->ex.rh = head_get(&c->w->heads);
    if (!st->body_in || !st->out || !st->ex.rh) {
        h2s_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(c->ngh, id, st);
    list_insert_back(&c->streams, &st->link);
    c->nstreams++;
    /* Enough requests on one connection: a graceful GOAWAY names this the
     * last stream; the client opens a new connection for more. */
    if (++c->requests >= (uint64_t)cfg->http2_max_requests && !c->goaway) {
        nghttp2_submit_goaway(c->ngh, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway = true;
    }
    st->head_deadline_ms = time_now_ms() + (uint64_t)cfg->client_header_timeout_ms;
    conn_arm(c, st->head_deadline_ms);
    return 0;
}

static bool name_is(nghttp2_vec n, const char *lit)
{
    size_t len = strlen(lit);
    return n.len == len && memcmp(n.base, lit, len) == 0;
}

/* A pseudo-header of the request (RFC 9113 section 8.3.1; nghttp2 already
 * checked that each comes once, before the fields, with valid syntax, and
 * that the required ones are there). */
static void on_pseudo(struct h2_stream *st, nghttp2_vec n, nghttp2_vec v)
{
    struct exchange *ex = &st->ex;
    struct head *h = ex->rh;
    if (name_is(n, ":method")) {
        int m = h2_method((const char *)v.base, v.len);
        if (m < 0) {
            refuse(st, 501, "request method not supported");
        } else {
            ex->method = m;
            ex->head_method = m == HTTP_HEAD;
            st->connect = m == HTTP_CONNECT; /* decided with :protocol (check_connect) */
        }
    } else if (name_is(n, ":path")) {
        if (head_on_url(h, (const char *)v.base, v.len) == -1)
            refuse(st, h->err == HEAD_URL_TOO_LONG ? 414 : 431,
                   h->err == HEAD_URL_TOO_LONG ? "request target too long"
                                               : "request header fields too large");
    } else if (name_is(n, ":authority")) {
        uint32_t off;
        if (head_add_bytes(h, (const char *)v.base, v.len, &off) == -1) {
            refuse(st, 431, "request header fields too large");
        } else {
            ex->authority = head_str(h, off);
            ex->authority_len = v.len;
        }
    } else if (name_is(n, ":protocol")) {
        /* RFC 8441 section 4: nghttp2 takes it because our SETTINGS said
         * ENABLE_CONNECT_PROTOCOL, and only with CONNECT, :scheme, :path
         * and :authority. "websocket" compares case-insensitively, as the
         * Upgrade field does (RFC 6455 section 4.2.1). */
        st->protocol = true;
        st->ws = v.len == 9 && strncasecmp((const char *)v.base, "websocket", 9) == 0;
    }
    /* :scheme: any (RFC 9113 section 8.3.1); X-Forwarded-Proto says what
     * the connection was. */
}

int h2s_on_header(struct h2_conn *c, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                  nghttp2_rcbuf *value)
{
    struct h2_stream *st = stream_by_id(c, frame->hd.stream_id);
    if (!st || st->ex_done)
        return 0;
    const struct config *cfg = c->w->cfg;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);
    st->decoded += (uint32_t)(n.len + v.len);
    c->payload_in += n.len + v.len;
    /* An HPACK bomb (or a header-count flood) decodes to far more than any
     * request: stop decoding it for us, reset the stream (it counts
     * against the reset budget). */
    if (st->decoded > H2_HEADER_BOMB_FACTOR * (uint32_t)cfg->client_max_head_bytes)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (st->head_done) {
        /* Trailers: appended after the head, forwarded with a chunked
         * body (proxy_request_end). Too many: the stream is reset. */
        if (n.len && n.base[0] == ':')
            return 0;
        if (head_add(st->ex.rh, (const char *)n.base, n.len, (const char *)v.base, v.len) == -1)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (n.len && n.base[0] == ':') {
        on_pseudo(st, n, v); /* even once refused: the access log names the method */
        return 0;
    }
    if (st->refuse)
        return 0; /* the answer is decided; the rest is not needed */
    if (name_is(n, "cookie")) {
        /* RFC 9113 section 8.2.3: crumbs, joined with "; " at the end of
         * the head for the HTTP/1.1 upstream. The decoded buffers are kept
         * (referenced, not copied) until then. */
        if (st->ncookies >= (unsigned)cfg->client_max_headers) {
            refuse(st, 431, "request header fields too large");
            return 0;
        }
        if (st->ncookies == st->cookies_cap) {
            unsigned cap = st->cookies_cap ? 2 * st->cookies_cap : 4;
            nghttp2_rcbuf **p = realloc(st->cookies, cap * sizeof(*p));
            if (!p)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            st->cookies = p;
            st->cookies_cap = cap;
        }
        nghttp2_rcbuf_incref(value);
        st->cookies[st->ncookies++] = value;
        return 0;
    }
    /* RFC 8441 section 5: an extended CONNECT has no Sec-WebSocket-Key;
     * the sandbox gets one the proxy drew, whose answer it checks. */
    if (st->protocol && name_is(n, "sec-websocket-key"))
        return 0;
    /* Connection-specific fields and a `te` other than "trailers" never
     * get here: nghttp2 treats them as malformed (RFC 9113 section 8.2.2)
     * and resets the stream. */
    if (head_add(st->ex.rh, (const char *)n.base, n.len, (const char *)v.base, v.len) == -1)
        refuse(st, 431, "request header fields too large");
    return 0;
}

/* One "cookie" field from the crumbs (RFC 9113 section 8.2.3). */
static void join_cookies(struct h2_stream *st)
{
    struct head *h = st->ex.rh;
    bool ok = head_on_field(h, "cookie", 6) == 0;
    if (ok)
        head_on_field_done(h);
    for (unsigned i = 0; ok && i < st->ncookies; i++) {
        nghttp2_vec v = nghttp2_rcbuf_get_buf(st->cookies[i]);
        if (i && head_on_value(h, "; ", 2) == -1)
            ok = false;
        else if (v.len && head_on_value(h, (const char *)v.base, v.len) == -1)
            ok = false;
    }
    if (ok)
        head_on_value_done(h);
    else
        refuse(st, 431, "request header fields too large");
    for (unsigned i = 0; i < st->ncookies; i++)
        nghttp2_rcbuf_decref(st->cookies[i]);
    st->ncookies = 0;
}

/* :authority, or Host when a client sent none (RFC 9113 section 8.3.1);
 * a Host that names another authority is malformed (SPEC section 8). */
static void check_authority(struct h2_stream *st)
{
    struct exchange *ex = &st->ex;
    const struct head *h = ex->rh;
    if (!ex->authority) {
        bool dup;
        const struct hdr *x = head_find_one(h, HDR_HOST, &dup);
        if (!x || dup) {
            refuse(st, 400, dup ? "more than one Host header" : "missing :authority and Host");
            return;
        }
        ex->authority = head_str(h, x->val_off);
        ex->authority_len = x->val_len;
        return;
    }
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (x->kind == HDR_HOST && !h2_authority_equal(ex->authority, ex->authority_len,
                                                       head_str(h, x->val_off), x->val_len)) {
            refuse(st, 400, "Host header differs from :authority");
            return;
        }
    }
}

/* A coalesced connection (RFC 9113 section 9.1.1) carries requests for any
 * host its certificate covers, and no other: 421 tells the client to use
 * another connection. The last covered host is remembered: most streams
 * of a connection name the same one. */
static void check_certificate(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    SSL *ssl = stream_tls_ssl(c->io);
    char host[sizeof(c->covered)];
    if (!ssl || h2_authority_host(st->ex.authority, st->ex.authority_len, host, sizeof(host)) < 0)
        return; /* a malformed authority gets its 400 from the route */
    if (strcmp(host, c->covered) == 0)
        return;
    if (!tls_cert_covers(ssl, host)) {
        refuse(st, 421, "this connection's certificate does not cover the requested host");
        return;
    }
    memcpy(c->covered, host, strlen(host) + 1);
}

/* The body's framing toward the upstream: none, the length the client
 * declared (nghttp2 checks the DATA against it), or chunked. */
static void request_framing(struct h2_stream *st, bool end_stream)
{
    struct exchange *ex = &st->ex;
    ex->req_trailer_from = ex->rh->nhdrs;
    if (end_stream) {
        ex->req_body = EX_BODY_NONE;
        return;
    }
    const struct hdr *x = head_find(ex->rh, HDR_CONTENT_LENGTH, NULL);
    if (!x) {
        ex->req_body = EX_BODY_STREAM;
        return;
    }
    uint64_t len = 0;
    const char *p = head_str(ex->rh, x->val_off);
    for (uint32_t i = 0; i < x->val_len; i++) {
        if (p[i] < '0' || p[i] > '9' || len > UINT64_MAX / 10 - 9) {
            refuse(st, 400, "invalid content-length");
            return;
        }
        len = len * 10 + (uint64_t)(p[i] - '0');
    }
    ex->req_body = len ? EX_BODY_LENGTH : EX_BODY_NONE;
    ex->req_length = len;
}

/* CONNECT. A plain one (RFC 9113 section 8.5) asks for a tunnel to
 * :authority, which is not what a sandbox URL is for: 405, as over
 * HTTP/1.1. An extended one (RFC 8441) for a WebSocket goes on as a
 * request; for another protocol (connect-udp, webtransport...) 501: the
 * request is well-formed and names something the proxy does not
 * implement (RFC 9110 section 15.6.2, as for an unknown method; nghttpx
 * answers 400, which would blame the client). */
static void check_connect(struct h2_stream *st)
{
    if (!st->protocol)
        refuse(st, 405, "CONNECT is not supported");
    else if (!st->ws)
        refuse(st, 501, "extended CONNECT is supported for the websocket protocol only");
    else if (head_find(st->ex.rh, HDR_CONTENT_LENGTH, NULL))
        /* RFC 9110 section 9.3.6: a CONNECT request has no content; its
         * DATA is the tunnel's bytes, which a length would bound. */
        refuse(st, 400, "content-length on a WebSocket (extended CONNECT) request");
}

/* The WebSocket's request toward the sandbox: an HTTP/1.1 GET with
 * Upgrade: websocket and a Sec-WebSocket-Key of the proxy's own
 * (exchange_ext_connect, rewrite.c; RFC 6455 section 4.1), the client's
 * Sec-WebSocket-Version, -Protocol and -Extensions as sent. No body: the
 * DATA frames are the tunnel's, after the 101. */
static void ws_request(struct h2_stream *st)
{
    struct exchange *ex = &st->ex;
    if (ws_key_new(st->ws_key) == -1) {
        refuse(st, 500, "cannot draw a WebSocket key");
        return;
    }
    if (head_add(ex->rh, "upgrade", 7, "websocket", 9) == -1 ||
        head_add(ex->rh, "sec-websocket-key", 17, st->ws_key, WS_KEY_LEN) == -1) {
        refuse(st, 431, "request header fields too large");
        return;
    }
    ex->upgrade = true;
    ex->ws_key = st->ws_key;
    ex->req_body = EX_BODY_NONE;
    ex->req_trailer_from = ex->rh->nhdrs;
}

static void head_complete(struct h2_conn *c, struct h2_stream *st, bool end_stream)
{
    struct exchange *ex = &st->ex;
    st->head_done = true;
    st->head_deadline_ms = 0;
    if (st->ncookies)
        join_cookies(st);
    if (st->connect && !st->refuse)
        check_connect(st);
    if (!st->refuse && ex->rh->url_len == 0)
        refuse(st, 400, "missing :path");
    if (!st->refuse) {
        ex->path = head_str(ex->rh, ex->rh->url_off);
        ex->path_len = ex->rh->url_len;
        check_authority(st);
    }
    if (!st->refuse)
        check_certificate(st);
    if (!st->refuse && st->ws)
        ws_request(st);
    else if (!st->refuse)
        request_framing(st, end_stream);
    /* Routed after this read (h2s_route_ready), replies included. */
    list_insert_back(&c->ready, &st->ready_link);
}

void h2s_route_ready(struct h2_conn *c)
{
    struct list_node *n;
    while ((n = list_first(&c->ready))) {
        struct h2_stream *st = container_of(n, struct h2_stream, ready_link);
        list_unlink(n);
        if (st->ex_done)
            continue;
        st->routed = true;
        if (st->refuse) {
            log_debug("client %s: HTTP/2 stream %d: %d %s", c->client.peer_ip, st->id, st->refuse,
                      st->refuse_why);
            exchange_error(&st->ex, st->refuse, st->refuse_why);
        } else {
            route_request(&st->ex);
        }
    }
}

/* ---- the request body ---- */

/* Hands what the client sent to the upstream while it takes it, and gives
 * the bytes back to the client's window only then: a slow sandbox holds
 * at most a window of request bytes here. */
static void pump_body(struct h2_stream *st)
{
    struct exchange *ex = &st->ex;
    if (!st->up_ready || st->ex_done || ex->req_done)
        return;
    size_t n = evbuffer_get_length(st->body_in);
    if (n && !st->up_full) {
        st->up_full = proxy_request_body(ex, st->body_in, n) != 0;
        nghttp2_session_consume(st->c->ngh, st->id, n);
        n = 0;
    }
    if (n == 0 && st->req_end_seen) {
        st->body_deadline_ms = 0;
        proxy_request_end(ex, ex->req_body == EX_BODY_STREAM ? ex->rh : NULL, ex->req_trailer_from);
    }
}

int h2s_on_data(struct h2_conn *c, int32_t id, const uint8_t *data, size_t len)
{
    struct h2_stream *st = stream_by_id(c, id);
    if (st && st->ws && !st->ex_done && !st->dropping_body && !st->refuse) {
        h2t_on_data(st, data, len);
        return 0;
    }
    if (!st || st->ex_done || st->dropping_body || st->refuse || st->ex.req_done) {
        nghttp2_session_consume(c->ngh, id, len);
        return 0;
    }
    struct exchange *ex = &st->ex;
    st->body_received += len;
    /* nghttp2 checks DATA against content-length too; never let a byte
     * past the declared length reach the upstream (it would be the start
     * of another request there). */
    if (ex->req_body == EX_BODY_NONE ||
        (ex->req_body == EX_BODY_LENGTH && st->body_received > ex->req_length)) {
        nghttp2_session_consume(c->ngh, id, len);
        reset_stream(st, NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }
    evbuffer_add(st->body_in, data, len);
    if (st->up_ready && !st->req_end_seen) {
        st->body_deadline_ms = time_now_ms() + (uint64_t)c->w->cfg->client_body_timeout_ms;
        conn_arm(c, st->body_deadline_ms);
    }
    pump_body(st);
    return 0;
}

int h2s_on_frame_recv(struct h2_conn *c, const nghttp2_frame *frame)
{
    struct h2_stream *st = stream_by_id(c, frame->hd.stream_id);
    if (!st)
        return 0;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        head_complete(c, st, end_stream);
    } else if (frame->hd.type == NGHTTP2_HEADERS && st->ws && !st->ex_done) {
        /* RFC 9113 section 8.5: only DATA and stream management frames on
         * a CONNECT stream; trailers are a stream error. */
        reset_stream(st, NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }
    if (!end_stream || st->ex_done)
        return 0;
    st->req_end_seen = true;
    if (st->ws) {
        h2t_on_client_end(st);
        return 0;
    }
    if (st->ex.req_body == EX_BODY_LENGTH && st->body_received != st->ex.req_length) {
        reset_stream(st, NGHTTP2_PROTOCOL_ERROR); /* shorter than declared */
        return 0;
    }
    pump_body(st);
    return 0;
}

/* ---- the response ---- */

/* The next DATA frame's length (its bytes are moved by h2s_send_data, not
 * copied here); DEFERRED while the upstream has given nothing new. */
static ssize_t data_read_cb(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = stream_by_id(c, id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t have = evbuffer_get_length(st->out);
    size_t n = have < length ? have : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == have && st->resp_ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->ntrailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ngh, id, st->trailers, st->ntrailers) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    } else if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

int h2s_send_data(struct h2_conn *c, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                  nghttp2_data_source *source)
{
    struct h2_stream *st = stream_by_id(c, frame->hd.stream_id);
    if (!st || evbuffer_get_length(st->out) < length)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    struct evbuffer *out = stream_output(c->io);
    evbuffer_add(out, framehd, H2_FRAME_HEADER); /* no padding: never asked for */
    if (length) {
        evbuffer_remove_buffer(st->out, out, length);
        c->queued -= length;
        st->sent_since_mark += length;
    }
    if (h2_send_progress(st->sent_since_mark, evbuffer_get_length(st->out))) {
        st->sent_since_mark = 0;
        st->send_mark_ms = time_now_ms();
    }
    return 0;
}

static void resume_data(struct h2_stream *st)
{
    if (st->deferred && !st->closed) {
        st->deferred = false;
        nghttp2_session_resume_data(st->c->ngh, st->id);
    }
}

/* The response head's fields for HTTP/2: lower-case names (nghttp2 lowers
 * them as it copies), without the connection-specific ones (RFC 9113
 * section 8.2.2) and Transfer-Encoding. For a WebSocket's 200 (`tunnel`)
 * neither Sec-WebSocket-Accept (RFC 8441 section 5: not used) nor a
 * Content-Length (RFC 9110 section 9.3.6: none in a 2xx to CONNECT).
 * Returns the count after `n` already placed, adding the bytes to *bytes. */
static size_t response_fields(nghttp2_nv *nva, size_t n, const struct head *h, bool tunnel,
                              uint64_t *bytes)
{
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (head_is_hop_by_hop(h, x) || x->kind == HDR_TRANSFER_ENCODING)
            continue;
        if (tunnel && (x->kind == HDR_SEC_WEBSOCKET_ACCEPT || x->kind == HDR_CONTENT_LENGTH))
            continue;
        nva[n++] = NV(head_str(h, x->name_off), x->name_len, head_str(h, x->val_off), x->val_len);
        *bytes += x->name_len + x->val_len + 4;
    }
    return n;
}

static int h2_send_head(struct exchange *ex, int status, const struct head *h)
{
    struct h2_stream *st = stream_of(ex);
    struct h2_conn *c = st->c;
    nghttp2_nv *nva = conn_nva(c, (size_t)h->nhdrs + 1);
    /* RFC 8441 section 5: the sandbox's 101 is the WebSocket's 200, and
     * the stream then carries the tunnel's bytes as DATA. */
    bool tunnel = st->ws && status == 101;
    if (tunnel)
        status = 200;
    char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), 0};
    if (!nva || status < 100 || status > 599)
        return -1;
    uint64_t bytes = 12;
    nva[0] = NV(":status", 7, code, 3);
    size_t n = response_fields(nva, 1, h, tunnel, &bytes);
    int rv;
    if (status < 200) {
        rv = nghttp2_submit_headers(c->ngh, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL);
    } else {
        nghttp2_data_provider prd = {.read_callback = data_read_cb};
        rv = nghttp2_submit_response(c->ngh, st->id, nva, n,
                                     ex->resp_body == EX_BODY_NONE && !tunnel ? NULL : &prd);
        st->resp_submitted = rv == 0;
    }
    if (rv != 0) {
        log_debug("client %s: HTTP/2 stream %d: response head refused: %s", c->client.peer_ip,
                  st->id, nghttp2_strerror(rv));
        return -1;
    }
    ex->bytes_out += bytes;
    return 0;
}

void h2s_send_out(struct h2_stream *st, struct evbuffer *src, size_t len)
{
    struct h2_conn *c = st->c;
    struct exchange *ex = &st->ex;
    if (!evbuffer_get_length(st->out)) {
        st->send_mark_ms = time_now_ms();
        st->sent_since_mark = 0;
        conn_arm(c, st->send_mark_ms + (uint64_t)c->w->cfg->http2_send_timeout_ms);
    }
    evbuffer_remove_buffer(src, st->out, len);
    c->queued += len;
    ex->bytes_out += len;
    resume_data(st);
}

static void h2_send_body(struct exchange *ex, struct evbuffer *src, size_t len)
{
    h2s_send_out(stream_of(ex), src, len);
}

void h2s_resume_data(struct h2_stream *st)
{
    resume_data(st);
}

/* Trailer fields (RFC 9110 section 6.5.1 rules) copied into one block the
 * stream owns: the response head arena goes with the exchange before the
 * last DATA frame is sent. */
static void keep_trailers(struct h2_stream *st, const struct head *h, uint32_t from)
{
    size_t n = 0, bytes = 0;
    for (uint32_t i = from; i < h->nhdrs; i++)
        if (head_trailer_allowed(h, &h->hdrs[i])) {
            n++;
            bytes += h->hdrs[i].name_len + h->hdrs[i].val_len;
        }
    if (!n || !(st->trailers = malloc(n * sizeof(nghttp2_nv) + bytes)))
        return;
    char *p = (char *)(st->trailers + n);
    for (uint32_t i = from; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (!head_trailer_allowed(h, x))
            continue;
        memcpy(p, head_str(h, x->name_off), x->name_len);
        memcpy(p + x->name_len, head_str(h, x->val_off), x->val_len);
        st->trailers[st->ntrailers++] = NV(p, x->name_len, p + x->name_len, x->val_len);
        p += x->name_len + x->val_len;
        st->ex.bytes_out += x->name_len + x->val_len + 4;
    }
}

static void h2_end(struct exchange *ex, const struct head *h, uint32_t from)
{
    struct h2_stream *st = stream_of(ex);
    if (h)
        keep_trailers(st, h, from);
    st->resp_ended = true;
    resume_data(st);
    if (!ex->req_done || st->ws)
        drop_body(st); /* answered early, or a WebSocket refused: the rest is not wanted */
    finish_exchange(st);
}

/* A RST_STREAM that is not the client's fault (our_reset: the reset
 * budget is not spent): an upstream that failed after the head went out
 * (h2_reset, INTERNAL_ERROR: never an END_STREAM that would make a cut
 * body look complete), or a WebSocket's tunnel that ended badly (CANCEL,
 * h2_tunnel.c). Ends the exchange: its upstream connection is closed. */
void h2s_abort(struct h2_stream *st, uint32_t code)
{
    st->our_reset = true;
    nghttp2_submit_rst_stream(st->c->ngh, NGHTTP2_FLAG_NONE, st->id, code);
    drop_output(st);
    drop_body(st);
    finish_exchange(st);
}

static void h2_reset(struct exchange *ex)
{
    h2s_abort(stream_of(ex), NGHTTP2_INTERNAL_ERROR);
}

static void h2_reply(struct exchange *ex, struct reply *r)
{
    struct h2_stream *st = stream_of(ex);
    struct h2_conn *c = st->c;
    struct reply_negotiation neg;
    memset(&neg, 0, sizeof(neg));
    if (ex->rh) {
        const struct hdr *x;
#define VIEW(field, kind)                             \
    if ((x = head_find(ex->rh, kind, NULL))) {        \
        neg.field.ptr = head_str(ex->rh, x->val_off); \
        neg.field.len = x->val_len;                   \
    }
        VIEW(user_agent, HDR_USER_AGENT);
        VIEW(accept, HDR_ACCEPT);
        VIEW(sec_fetch_mode, HDR_SEC_FETCH_MODE);
        VIEW(x_requested_with, HDR_X_REQUESTED_WITH);
#undef VIEW
    }
    r->html = reply_wants_html(&neg);
    r->head_only = ex->head_method;
    r->close = false;
    proxy_abort(ex);
    ex->status = r->status;
    ex->outcome = OUTCOME_PROXY;
    METRIC_INC(&c->w->metrics, rejected_by_proxy);
    char buf[4096], code[4];
    struct reply_parts p;
    int len = reply_render_parts(r, buf, sizeof(buf), &p);
    nghttp2_nv nva[1 + sizeof(p.fields) / sizeof(p.fields[0])];
    if (len < 0) {
        h2_reset(ex);
        return;
    }
    snprintf(code, sizeof(code), "%03d", r->status);
    nva[0] = NV(":status", 7, code, 3);
    size_t n = 1;
    for (size_t i = 0; i < p.nfields; i++) {
        nva[n++] = NV(p.fields[i].name, strlen(p.fields[i].name), p.fields[i].value,
                      strlen(p.fields[i].value));
        ex->bytes_out += strlen(p.fields[i].name) + strlen(p.fields[i].value) + 4;
    }
    drop_output(st);
    evbuffer_add(st->out, buf, (size_t)len);
    c->queued += (size_t)len;
    ex->bytes_out += 12 + (uint64_t)len;
    st->resp_ended = true;
    nghttp2_data_provider prd = {.read_callback = data_read_cb};
    int rv = nghttp2_submit_response(c->ngh, st->id, nva, n, len ? &prd : NULL);
    if (rv != 0)
        log_debug("client %s: HTTP/2 stream %d: reply not sent: %s", c->client.peer_ip, st->id,
                  nghttp2_strerror(rv));
    st->resp_submitted = true;
    if (!ex->req_done || st->ws)
        drop_body(st);
    finish_exchange(st);
}

/* The upstream took the head (first call) or drained below its low-water
 * mark: hand over what waits, and give that much window back. */
static void h2_body_consumed(struct exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    if (ex->req_done || st->ex_done)
        return;
    if (ex->req_body == EX_BODY_NONE) {
        proxy_request_end(ex, NULL, 0);
        return;
    }
    if (!st->up_ready && !st->req_end_seen) {
        st->body_deadline_ms = time_now_ms() + (uint64_t)st->c->w->cfg->client_body_timeout_ms;
        conn_arm(st->c, st->body_deadline_ms);
    }
    st->up_ready = true;
    st->up_full = false;
    pump_body(st);
}

/* The sandbox accepted a WebSocket (its 101 went out as a 200): the
 * stream becomes its tunnel. Only a WebSocket's exchange is an upgrade
 * (the proxy refuses a 101 to anything else). */
static void h2_start_tunnel(struct exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    if (!st->ws) {
        proxy_abort(ex);
        h2_reset(ex);
        return;
    }
    h2t_start(st);
}

static void h2_hold(struct exchange *ex)
{
    conn_enter(stream_of(ex)->c);
}

static void h2_release(struct exchange *ex)
{
    conn_leave(stream_of(ex)->c);
}

/* The stream's queued response bytes; the connection's when they are over
 * its bound (every stream then reads as full). A stream reported full is
 * remembered, so the flush knows whose upstream to read again. */
size_t h2s_pending(struct h2_stream *st)
{
    return st->ex.ops->pending(&st->ex);
}

static size_t h2_pending(const struct exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    struct h2_conn *c = st->c;
    size_t q = evbuffer_get_length(st->out);
    if (q < EX_HIGH_WATER && c->queued >= H2_CONN_QUEUE_HIGH)
        q = EX_HIGH_WATER;
    if (q >= EX_HIGH_WATER && !st->paused_full) {
        st->paused_full = true;
        c->npaused++;
    }
    return q;
}

void h2s_resume_paused(struct h2_conn *c)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &c->streams)
    {
        struct h2_stream *st = container_of(n, struct h2_stream, link);
        if (!st->paused_full || evbuffer_get_length(st->out) >= EX_LOW_WATER ||
            c->queued >= H2_CONN_QUEUE_LOW)
            continue;
        st->paused_full = false;
        c->npaused--;
        if (st->tunnel)
            h2t_resume(st);
        else
            proxy_response_resume(&st->ex);
    }
}

void h2s_on_end_stream_sent(struct h2_conn *c, struct h2_stream *st)
{
    h2_budget_earn(&c->budget);
    /* RFC 9113 section 8.1: the response is complete before the request;
     * ask the client to stop sending it, without an error. A WebSocket's
     * too: its sandbox closed the connection (a WebSocket server closes
     * first, RFC 6455 section 7.1.1), nothing the client says could still
     * reach it, and the stream must not hold its upstream and slot until
     * the idle timeout. */
    if (!st->req_end_seen) {
        st->our_reset = true;
        nghttp2_submit_rst_stream(c->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
}

uint64_t h2s_check_deadlines(struct h2_conn *c, struct h2_stream *st, uint64_t now)
{
    const struct config *cfg = c->w->cfg;
    uint64_t next = 0;
    if (st->head_deadline_ms) {
        if (now >= st->head_deadline_ms) {
            /* A header block never finished holds the whole connection
             * (nothing else may come between its frames). */
            conn_abuse(c, NGHTTP2_PROTOCOL_ERROR, "request head not complete in time");
            return 0;
        }
        next = st->head_deadline_ms;
    }
    if (st->body_deadline_ms && !st->ex_done && !st->req_end_seen && !st->up_full) {
        if (now >= st->body_deadline_ms) {
            log_debug("client %s: HTTP/2 stream %d: no request body for %d ms", c->client.peer_ip,
                      st->id, cfg->client_body_timeout_ms);
            st->our_reset = true; /* an idle client is no abuser */
            reset_stream(st, NGHTTP2_CANCEL);
            return 0;
        }
        next = !next || st->body_deadline_ms < next ? st->body_deadline_ms : next;
    }
    if (st->tunnel && !st->ex_done) {
        uint64_t d = h2t_idle_deadline(st, now);
        if (!d)
            return 0;
        next = !next || d < next ? d : next;
    }
    if (evbuffer_get_length(st->out) && !st->closed) {
        uint64_t d = st->send_mark_ms + (uint64_t)cfg->http2_send_timeout_ms;
        if (now >= d) {
            log_info("client %s: HTTP/2 stream %d: response not read for %d ms, reset",
                     c->client.peer_ip, st->id, cfg->http2_send_timeout_ms);
            reset_stream(st, NGHTTP2_CANCEL); /* counts: a slow reader */
            return 0;
        }
        next = !next || d < next ? d : next;
    }
    return next;
}

static const struct exchange_ops h2_exchange_ops = {
    .send_head = h2_send_head,
    .send_body = h2_send_body,
    .end = h2_end,
    .reset = h2_reset,
    .reply = h2_reply,
    .body_consumed = h2_body_consumed,
    .start_tunnel = h2_start_tunnel,
    .hold = h2_hold,
    .release = h2_release,
    .pending = h2_pending,
};
