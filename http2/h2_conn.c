/* An HTTP/2 client connection on nghttp2: the socket (plain or TLS, handed
 * over by http1/), the session and its callbacks, sending with zero-copy
 * DATA, timers (the first request, idle, per-stream deadlines), GOAWAY on
 * drain and after http2.max_requests, and the connection-wide abuse limits
 * (the reset budget, new streams per read, the flood ratio, nghttp2's own
 * caps). What concerns one stream is in h2_stream.c. Follows nghttp2's
 * examples/libevent-server.c, with mem_recv over the stream's evbuffer. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "ev.h"
#include "h2_int.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "stream.h"
#include "timeutil.h"
#include "worker.h"

static void conn_read_cb(struct stream *io, void *arg);
static void conn_write_cb(struct stream *io, void *arg);
static void conn_event_cb(struct stream *io, short what, void *arg);
static void read_input(struct h2_conn *c);

/* ---- nghttp2 callbacks ---- */

/* Frames other than DATA, serialised by nghttp2: copied into the output
 * (they are small); DATA goes through send_data_cb without a copy. */
static ssize_t send_cb(nghttp2_session *ngh, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct h2_conn *c = ud;
    struct evbuffer *out = stream_output(c->io);
    if (evbuffer_get_length(out) >= H2_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, data, len) == -1)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int send_data_cb(nghttp2_session *ngh, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *ud)
{
    struct h2_conn *c = ud;
    if (evbuffer_get_length(stream_output(c->io)) >= H2_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    return h2s_send_data(c, frame, framehd, length, source);
}

static int on_begin_headers_cb(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    return h2s_on_begin_headers(ud, frame);
}

static int on_header_cb(nghttp2_session *ngh, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                        nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
    return h2s_on_header(ud, frame, name, value);
}

static int on_frame_recv_cb(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *c = ud;
    switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
        METRIC_INC(&c->w->metrics, http2_resets[0]);
        conn_spend(c, "client reset");
        return 0;
    case NGHTTP2_WINDOW_UPDATE:
        /* A window a reader opens to read on is payload; a flood of tiny
         * increments is not (h2_flooded). */
        if (frame->window_update.window_size_increment >= 1024)
            c->payload_in += H2_FRAME_HEADER + 4;
        return 0;
    case NGHTTP2_DATA:
        if (frame->hd.length > 0)
            c->payload_in += H2_FRAME_HEADER;
        return h2s_on_frame_recv(c, frame);
    case NGHTTP2_HEADERS:
        return h2s_on_frame_recv(c, frame);
    default:
        return 0;
    }
}

static int on_data_chunk_cb(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data,
                            size_t len, void *ud)
{
    struct h2_conn *c = ud;
    c->payload_in += len;
    return h2s_on_data(c, id, data, len);
}

static int on_stream_close_cb(nghttp2_session *ngh, int32_t id, uint32_t code, void *ud)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ngh, id);
    if (st)
        h2s_on_close(ud, st, code);
    return 0;
}

static int on_frame_send_cb(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        METRIC_INC(&c->w->metrics, http2_resets[1]);
        /* A stream error nghttp2 found (malformed request, WINDOW_UPDATE
         * 0 or overflow, DATA on a closed stream...) or a slow reader: the
         * client caused it (CVE-2025-8671). Resets for an upstream failure
         * or after an early response are not its fault. */
        if (st && !st->our_reset)
            conn_spend(c, "stream error");
        return 0;
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && st)
        h2s_on_end_stream_sent(c, st);
    return 0;
}

static int on_invalid_frame_cb(nghttp2_session *ngh, const nghttp2_frame *frame, int err, void *ud)
{
    struct h2_conn *c = ud;
    log_debug("client %s: HTTP/2 invalid frame (type %u, stream %d): %s", c->client.peer_ip,
              frame->hd.type, frame->hd.stream_id, nghttp2_strerror(err));
    return 0;
}

static int error_cb(nghttp2_session *ngh, int code, const char *msg, size_t len, void *ud)
{
    struct h2_conn *c = ud;
    log_debug("client %s: HTTP/2: %.*s", c->client.peer_ip, (int)len, msg);
    return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

/* Built once, read-only after: sessions copy what they need. */
static void init_nghttp2(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return;
    nghttp2_session_callbacks_set_send_callback(callbacks, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback2(callbacks, on_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send_cb);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame_cb);
    nghttp2_session_callbacks_set_error_callback2(callbacks, error_cb);
    /* Flow control is ours: a request body's window opens only as its bytes
     * reach the upstream (h2_stream.c, nghttp2_session_consume). */
    nghttp2_option_set_no_auto_window_update(options, 1);
    /* nghttp2's own flood caps, at their defaults, said out loud: queued
     * SETTINGS/PING ACKs (CVE-2019-9512, -9515) and SETTINGS entries. */
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_settings(options, 32);
#ifdef HAVE_NGHTTP2_STREAM_RESET_RATE_LIMIT
    /* Rapid reset (CVE-2023-44487): Debian backports this to 1.52; the
     * reset budget below works without it. */
    nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);
#endif
#ifdef HAVE_NGHTTP2_MAX_CONTINUATIONS
    /* CONTINUATION flood (CVE-2024-28182). */
    nghttp2_option_set_max_continuations(options, 8);
#endif
}

/* ---- lifetime ---- */

void conn_enter(struct h2_conn *c)
{
    c->busy++;
}

static bool congested(struct h2_conn *c)
{
    return evbuffer_get_length(stream_output(c->io)) >= H2_OUT_HIGH;
}

/* Everything the streams hold goes: upstreams closed (never pooled), the
 * exchanges counted as aborted. */
static void release_all(struct h2_conn *c)
{
    struct list_node *n, *next;
    list_for_each_safe(n, next, &c->streams)
        h2s_release(c, container_of(n, struct h2_stream, link));
}

static void conn_free(struct h2_conn *c)
{
    struct worker *w = c->w;
    struct list_node *n, *next;
    release_all(c);
    list_for_each_safe(n, next, &c->dead) h2s_free(container_of(n, struct h2_stream, link));
    if (c->ngh)
        nghttp2_session_del(c->ngh);
    ev_free(c->timer);
    stream_free(c->io);
    free(c->nva);
    list_unlink(&c->link);
    __atomic_store_n(&w->session_count, w->session_count - 1, __ATOMIC_RELAXED); /* main reads it */
    METRIC_DEC(&w->metrics, client_connections);
    METRIC_DEC(&w->metrics, http2_connections);
    free(c);
    listener_conn_closed(w);
    worker_session_gone(w);
}

/* The last bytes (a GOAWAY) are written. Closing now, with the client's
 * frames still arriving, would make the kernel answer them with a RST that
 * destroys the GOAWAY before the client reads it: half-close and read (and
 * discard) for a moment first, as http1/ does (not under TLS, where a
 * half-close would skip close_notify). */
static void output_flushed(struct h2_conn *c)
{
    if (c->lingering || stream_is_tls(c->io)) {
        c->closing = true;
        return;
    }
    c->lingering = true;
    shutdown(stream_fd(c->io), SHUT_WR);
    stream_set_timeouts(c->io, 0, 0);
    stream_enable_read(c->io);
    c->linger_until_ms = time_now_ms() + H2_LINGER_MS;
    conn_arm(c, c->linger_until_ms);
}

/* nghttp2 has nothing more to say or hear: write out what is queued (a
 * GOAWAY), then close. */
static void finish_output(struct h2_conn *c)
{
    if (c->flushing_out)
        return;
    c->flushing_out = true;
    release_all(c);
    stream_disable_read(c->io);
    stream_set_write_low(c->io, 0);
    stream_set_timeouts(c->io, 0, c->w->cfg->http2_send_timeout_ms);
    if (evbuffer_get_length(stream_output(c->io)) == 0)
        output_flushed(c);
    else
        stream_flush(c->io);
}

/* Sends what nghttp2 has while the socket takes it, lets paused upstreams
 * go on as room frees up, and closes once the session is over. */
static void conn_flush(struct h2_conn *c)
{
    if (c->closing || c->flushing_out || !c->ngh)
        return;
    for (int round = 0; round < 16; round++) {
        c->in_ngh = true;
        int rv = nghttp2_session_send(c->ngh);
        c->in_ngh = false;
        if (rv != 0) {
            log_info("client %s: HTTP/2 send failed: %s", c->client.peer_ip, nghttp2_strerror(rv));
            c->closing = true;
            return;
        }
        if (!c->npaused || congested(c) || c->queued >= H2_CONN_QUEUE_LOW)
            break;
        h2s_resume_paused(c);
        if (!nghttp2_session_want_write(c->ngh))
            break;
    }
    stream_flush(c->io);
    if (!nghttp2_session_want_read(c->ngh) && !nghttp2_session_want_write(c->ngh))
        finish_output(c);
}

void conn_leave(struct h2_conn *c)
{
    if (c->busy == 1 && !c->in_flush) {
        c->in_flush = true;
        conn_flush(c);
        c->in_flush = false;
    }
    if (--c->busy > 0)
        return;
    struct list_node *n, *next;
    list_for_each_safe(n, next, &c->dead) h2s_free(container_of(n, struct h2_stream, link));
    if (c->closing)
        conn_free(c);
}

void conn_abuse(struct h2_conn *c, uint32_t code, const char *why)
{
    if (c->aborted || c->flushing_out)
        return;
    log_info("client %s: HTTP/2 %s; closing the connection", c->client.peer_ip, why);
    METRIC_INC(&c->w->metrics, http2_abuse_closes);
    nghttp2_session_terminate_session(c->ngh, code);
    c->goaway = true;
    c->aborted = true;
    release_all(c);
}

void conn_spend(struct h2_conn *c, const char *why)
{
    if (!h2_budget_spend(&c->budget))
        conn_abuse(c, NGHTTP2_ENHANCE_YOUR_CALM, "too many stream resets");
    else
        log_debug("client %s: HTTP/2 %s (budget %d)", c->client.peer_ip, why, c->budget.left);
}

nghttp2_nv *conn_nva(struct h2_conn *c, size_t n)
{
    if (n > c->nva_cap) {
        nghttp2_nv *p = realloc(c->nva, n * sizeof(*p));
        if (!p)
            return NULL;
        c->nva = p;
        c->nva_cap = n;
    }
    return c->nva;
}

/* ---- timers ---- */

void conn_arm(struct h2_conn *c, uint64_t when_ms)
{
    if (c->armed_ms && c->armed_ms <= when_ms)
        return; /* fires earlier, finds the deadline and re-arms */
    uint64_t now = time_now_ms();
    struct timeval tv = tv_from_ms(when_ms > now ? when_ms - now : 1);
    evtimer_add(c->timer, &tv);
    c->armed_ms = when_ms;
}

/* One timer for the connection (lazy, like the session's): the idle or
 * first-request deadline and every stream's (head, body, send). */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *c = arg;
    const struct config *cfg = c->w->cfg;
    uint64_t now = time_now_ms(), next = 0;
    c->armed_ms = 0;
    conn_enter(c);
    if (c->lingering) {
        if (now >= c->linger_until_ms)
            c->closing = true;
        else
            next = c->linger_until_ms;
    } else if (c->nstreams == 0 && !c->goaway && !c->flushing_out) {
        uint64_t d = c->idle_ms + (uint64_t)(c->requests ? cfg->client_keepalive_timeout_ms
                                                         : cfg->client_header_timeout_ms);
        if (now >= d) {
            log_debug("client %s: HTTP/2 connection idle, closing", c->client.peer_ip);
            nghttp2_session_terminate_session(c->ngh, NGHTTP2_NO_ERROR);
            c->goaway = true;
        } else {
            next = d;
        }
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &c->streams)
    {
        uint64_t d = h2s_check_deadlines(c, container_of(n, struct h2_stream, link), now);
        if (c->aborted)
            break; /* every stream was released: the list changed under us */
        if (d && (!next || d < next))
            next = d;
    }
    if (next)
        conn_arm(c, next);
    conn_leave(c);
}

/* ---- the socket ---- */

static void read_input(struct h2_conn *c)
{
    struct evbuffer *in = stream_input(c->io);
    c->new_in_read = 0;
    while (!c->closing && !c->flushing_out && !c->read_paused) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        c->in_ngh = true;
        ssize_t rv = nghttp2_session_mem_recv(c->ngh, v.iov_base, v.iov_len);
        c->in_ngh = false;
        if (rv < 0) {
            /* Protocol errors were answered with a GOAWAY by nghttp2; these
             * are the ones after which nothing more is said. */
            if (rv == NGHTTP2_ERR_FLOODED) {
                METRIC_INC(&c->w->metrics, http2_abuse_closes);
                log_info("client %s: HTTP/2 flood (nghttp2's caps); closing", c->client.peer_ip);
            } else {
                log_debug("client %s: HTTP/2: %s", c->client.peer_ip, nghttp2_strerror((int)rv));
            }
            c->closing = true;
            return;
        }
        evbuffer_drain(in, (size_t)rv);
        c->bytes_in += (uint64_t)rv;
        if (h2_flooded(c->bytes_in, c->payload_in)) {
            conn_abuse(c, NGHTTP2_ENHANCE_YOUR_CALM, "flood: frames without payload");
            break;
        }
        /* Writing is blocked and nghttp2 has more to say (ACKs, resets):
         * stop reading until the client reads (a PING or SETTINGS flood
         * then waits in the kernel, not here). */
        if (congested(c) && nghttp2_session_want_write(c->ngh)) {
            c->read_paused = true;
            stream_disable_read(c->io);
        }
    }
    /* Streams whose head completed in this read are routed only now: one
     * opened and reset in the same read never reaches an upstream. */
    h2s_route_ready(c);
}

static void conn_read_cb(struct stream *io, void *arg)
{
    struct h2_conn *c = arg;
    conn_enter(c);
    if (c->flushing_out)
        evbuffer_drain(stream_input(io), evbuffer_get_length(stream_input(io)));
    else
        read_input(c);
    conn_leave(c);
}

static void conn_write_cb(struct stream *io, void *arg)
{
    struct h2_conn *c = arg;
    conn_enter(c);
    if (c->flushing_out) {
        if (evbuffer_get_length(stream_output(io)) == 0 && !c->lingering)
            output_flushed(c);
    } else if (c->read_paused && !congested(c)) {
        c->read_paused = false;
        stream_enable_read(io);
        read_input(c); /* what waited in the input */
    }
    conn_leave(c); /* flushes: more frames */
}

static void conn_event_cb(struct stream *io, short what, void *arg)
{
    struct h2_conn *c = arg;
    conn_enter(c);
    if (what & STREAM_TIMEOUT)
        log_debug("client %s: HTTP/2 %s timeout", c->client.peer_ip,
                  (what & STREAM_READING) ? "read" : "write");
    c->closing = true; /* EOF, error, timeout: nothing more can be said */
    conn_leave(c);
}

int h2_conn_start(struct worker *w, struct stream *io, const struct client_info *client)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_nghttp2);
    const struct config *cfg = w->cfg;
    if (!callbacks || !options)
        return -1;
    struct h2_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->w = w;
    c->io = io;
    c->client = *client;
    list_init(&c->streams);
    list_init(&c->ready);
    list_init(&c->dead);
    h2_budget_init(&c->budget, H2_RESET_BUDGET);
    c->timer = evtimer_new(w->base, timer_cb, c);
    if (!c->timer || nghttp2_session_server_new2(&c->ngh, callbacks, c, options) != 0) {
        ev_free(c->timer);
        free(c);
        return -1;
    }
    /* ENABLE_CONNECT_PROTOCOL (RFC 8441 section 3): WebSockets over HTTP/2
     * (h2_tunnel.c). nghttp2 accepts :protocol from the moment it is
     * submitted, before the client's ACK. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)cfg->http2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)cfg->http2_stream_window},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    if (nghttp2_submit_settings(c->ngh, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        (cfg->http2_connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
         nghttp2_session_set_local_window_size(c->ngh, NGHTTP2_FLAG_NONE, 0,
                                               cfg->http2_connection_window) != 0)) {
        nghttp2_session_del(c->ngh);
        ev_free(c->timer);
        free(c);
        return -1;
    }
    /* From here the connection is ours: it counts as the session did. */
    list_insert_front(&w->h2_conns, &c->link);
    METRIC_INC(&w->metrics, http2_connections);
    c->started_ms = c->idle_ms = time_now_ms();
    stream_setcb(io, conn_read_cb, conn_write_cb, conn_event_cb, c);
    stream_set_read_high(io, 256 * 1024);
    stream_set_write_low(io, H2_OUT_LOW);
    /* The socket itself: no read timeout (the timer says when an idle
     * connection goes), a write that makes no progress at all ends it. */
    stream_set_timeouts(io, 0, cfg->http2_send_timeout_ms);
    stream_enable_read(io);
    conn_arm(c, c->idle_ms + (uint64_t)cfg->client_header_timeout_ms);
    conn_enter(c);
    if (w->draining)
        h2_conn_drain(&c->link);
    else
        read_input(c); /* the preface and what came with it */
    conn_leave(c);
    return 0;
}

void h2_conn_drain(struct list_node *link)
{
    struct h2_conn *c = container_of(link, struct h2_conn, link);
    conn_enter(c);
    if (!c->goaway && !c->closing && !c->flushing_out) {
        /* Streams the client opened before it sees this still finish. */
        nghttp2_submit_goaway(c->ngh, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ngh), NGHTTP2_NO_ERROR,
                              NULL, 0);
        c->goaway = true;
    }
    conn_leave(c);
}
