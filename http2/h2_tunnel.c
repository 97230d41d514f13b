/* An RFC 8441 WebSocket on an HTTP/2 stream, after the sandbox's 101
 * (which went to the client as a 200): the stream's DATA frames are the
 * upstream connection's bytes, both ways, with the flow control of bodies.
 *
 * - Client to sandbox: DATA waits in the stream's body_in and moves to the
 *   upstream's output while that is under the high-water mark; only then
 *   is it given back to the client's windows (nghttp2_session_consume),
 *   so a sandbox that reads slowly holds the client back, as a request
 *   body does. DATA sent before the 101 waits within the stream's window.
 * - Sandbox to client: the upstream is read while the stream's queue (and
 *   the connection's) is under its bound (ops->pending), then paused until
 *   the client takes DATA (h2s_resume_paused after a flush).
 * - Closing (RFC 8441 section 5: END_STREAM is the TCP FIN, RST_STREAM the
 *   TCP RST, with CANCEL): the client's END_STREAM, once what it said is
 *   written, shuts the upstream for writing (a half-close: the sandbox
 *   may still answer, e.g. its Close frame, until its own EOF). The
 *   upstream's EOF is an END_STREAM after the last DATA, and ends the
 *   tunnel, as over HTTP/1.1: a WebSocket server closes its connection
 *   last (RFC 6455 section 7.1.1), so a client that has not ended its side
 *   gets RST_STREAM(NO_ERROR) after it (h2s_on_end_stream_sent, RFC 9113
 *   section 8.1). nghttp2 closing the stream closes the upstream
 *   (h2s_release). The client's RST_STREAM closes the upstream at once;
 *   an upstream reset, a sandbox that takes no byte for
 *   upstream.idle_timeout_ms or both directions quiet for
 *   client.websocket_idle_timeout_ms are a RST_STREAM(CANCEL) to the
 *   client.
 *
 * The exchange lives as long as the tunnel: it holds the upstream
 * connection (never pooled) and its sandbox's maxConnections slot; it was
 * counted (access log, metrics) at the 101, as an HTTP/1.1 WebSocket is. */
#include <event2/buffer.h>
#include <sys/socket.h>

#include "config.h"
#include "h2_int.h"
#include "log.h"
#include "pool.h"
#include "stream.h"
#include "timeutil.h"
#include "worker.h"

/* The tunnel still has its upstream. */
static bool live(const struct h2_stream *st)
{
    return st->tunnel && !st->ex_done && st->ex.up && st->ex.up->io;
}

/* The client said END_STREAM and all it said is written: the sandbox reads
 * EOF (the direction sandbox to client goes on). */
static void shut_up(struct h2_stream *st)
{
    st->tun_up_shut = true;
    shutdown(stream_fd(st->ex.up->io), SHUT_WR);
}

/* Client to sandbox: what waits goes to the upstream's output while it is
 * under the high-water mark, and back to the client's windows then. */
static void pump_up(struct h2_stream *st)
{
    struct stream *io = st->ex.up->io;
    struct evbuffer *out = stream_output(io);
    size_t n = evbuffer_get_length(st->body_in);
    if (n && evbuffer_get_length(out) < EX_HIGH_WATER) {
        evbuffer_add_buffer(out, st->body_in);
        stream_flush(io);
        nghttp2_session_consume(st->c->ngh, st->id, n);
        st->tun_active_ms = time_now_ms();
        n = 0;
    }
    if (n || !st->req_end_seen || st->tun_up_shut)
        return;
    if (evbuffer_get_length(out) == 0)
        shut_up(st);
    else
        stream_set_write_low(io, 0); /* called back once all of it is written */
}

/* Sandbox to client: what the upstream said becomes DATA; above the
 * stream's (or the connection's) bound the upstream is not read until
 * the client takes some. */
static void pump_down(struct h2_stream *st)
{
    struct stream *io = st->ex.up->io;
    struct evbuffer *in = stream_input(io);
    size_t n = evbuffer_get_length(in);
    if (n) {
        h2s_send_out(st, in, n);
        st->tun_active_ms = time_now_ms();
    }
    if (!st->tun_up_eof && h2s_pending(st) >= EX_HIGH_WATER) {
        stream_disable_read(io);
        st->tun_paused = true;
    }
}

/* The upstream said something: to the client as DATA. */
static void up_read_cb(struct stream *io, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_conn *c = st->c;
    conn_enter(c);
    if (live(st) && !st->tun_paused)
        pump_down(st);
    conn_leave(c);
}

/* The upstream's output drained below its low-water mark (or to empty,
 * after the client's END_STREAM): more of the client's DATA, or the
 * half-close. */
static void up_write_cb(struct stream *io, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_conn *c = st->c;
    conn_enter(c);
    if (live(st))
        pump_up(st);
    conn_leave(c);
}

/* The upstream's FIN (END_STREAM after its last bytes), or its reset or
 * write timeout (RST_STREAM(CANCEL)). */
static void up_event_cb(struct stream *io, short what, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_conn *c = st->c;
    conn_enter(c);
    if (!live(st)) {
        /* nothing: the stream is over */
    } else if ((what & STREAM_EOF) && !(what & (STREAM_ERROR | STREAM_TIMEOUT))) {
        /* The sandbox's FIN: its last bytes, then END_STREAM. */
        pump_down(st);
        st->tun_up_eof = true;
        st->resp_ended = true;
        h2s_resume_data(st);
    } else {
        if (what & STREAM_TIMEOUT)
            log_info("client %s: HTTP/2 stream %d: sandbox %s took no WebSocket byte for %d ms",
                     c->client.peer_ip, st->id, st->ex.target.sandbox_id,
                     c->w->cfg->upstream_idle_timeout_ms);
        h2s_abort(st, NGHTTP2_CANCEL); /* the sandbox's RST, or it stopped reading */
    }
    conn_leave(c);
}

void h2t_start(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    const struct config *cfg = c->w->cfg;
    struct stream *io = st->ex.up->io;
    st->tunnel = true;
    st->tun_active_ms = time_now_ms();
    stream_setcb(io, up_read_cb, up_write_cb, up_event_cb, st);
    /* No read timeout: idle is both directions quiet, which the
     * connection's timer checks (h2t_idle_deadline); a sandbox that takes
     * no byte is the write timeout. */
    stream_set_timeouts(io, 0, cfg->upstream_idle_timeout_ms);
    stream_set_write_low(io, EX_LOW_WATER);
    conn_arm(c, st->tun_active_ms + (uint64_t)cfg->websocket_idle_timeout_ms);
    pump_down(st); /* what the sandbox sent right after its 101 */
    pump_up(st);   /* DATA (and END_STREAM) the client sent before it */
    if (!st->tun_paused)
        stream_enable_read(io);
}

void h2t_on_data(struct h2_stream *st, const uint8_t *data, size_t len)
{
    evbuffer_add(st->body_in, data, len);
    if (live(st))
        pump_up(st);
}

void h2t_on_client_end(struct h2_stream *st)
{
    if (live(st))
        pump_up(st);
}

void h2t_resume(struct h2_stream *st)
{
    if (!live(st) || !st->tun_paused)
        return;
    st->tun_paused = false;
    stream_enable_read(st->ex.up->io);
    pump_down(st);
}

uint64_t h2t_idle_deadline(struct h2_stream *st, uint64_t now)
{
    struct h2_conn *c = st->c;
    int idle = c->w->cfg->websocket_idle_timeout_ms;
    uint64_t d = st->tun_active_ms + (uint64_t)idle;
    if (now < d)
        return d;
    log_debug("client %s: HTTP/2 stream %d: WebSocket idle for %d ms, closing", c->client.peer_ip,
              st->id, idle);
    h2s_abort(st, NGHTTP2_CANCEL);
    return 0;
}
