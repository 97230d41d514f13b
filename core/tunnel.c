#include "tunnel.h"

#include <event2/buffer.h>
#include <sys/socket.h>

#include "exchange.h"
#include "log.h"
#include "stream.h"
#include "timeutil.h"

static void move(struct tunnel *t, struct stream *from, struct stream *to)
{
    struct evbuffer *dst = stream_output(to);
    struct evbuffer *src = stream_input(from);
    size_t n = evbuffer_get_length(src);
    if (from == t->a)
        t->a_bytes += n;
    else
        t->b_bytes += n;
    evbuffer_add_buffer(dst, src);
    stream_flush(to);
    t->last_activity_ms = time_now_ms();
    if (evbuffer_get_length(dst) >= EX_HIGH_WATER) {
        stream_disable_read(from);
        if (from == t->a)
            t->a_paused = true;
        else
            t->b_paused = true;
    }
}

static struct stream *other(struct tunnel *t, struct stream *st)
{
    return st == t->a ? t->b : t->a;
}

static void read_cb(struct stream *st, void *arg)
{
    struct tunnel *t = arg;
    t->owner->hold(t->arg);
    move(t, st, other(t, st));
    t->owner->release(t->arg);
}

/* Half-close: `to`'s writer said EOF and `to` has written all of it: shut
 * it for writing (the far end reads its EOF), and end the tunnel when the
 * other direction is done too. */
static void shut(struct tunnel *t, struct stream *to)
{
    bool *shut_flag = to == t->a ? &t->a_shut : &t->b_shut;
    if (*shut_flag)
        return;
    *shut_flag = true;
    shutdown(stream_fd(to), SHUT_WR);
    if (t->a_shut && t->b_shut)
        t->owner->closed(t->arg, false);
}

/* Half-close: `from` said EOF; deliver the rest of what it said, then shut
 * the other side once that is written. */
static void side_eof(struct tunnel *t, struct stream *from)
{
    struct stream *to = other(t, from);
    if (from == t->a)
        t->a_eof = true;
    else
        t->b_eof = true;
    move(t, from, to);
    if (evbuffer_get_length(stream_output(to)) == 0)
        shut(t, to);
    else
        stream_set_write_low(to, 0); /* call back at empty */
}

/* `st`'s output drained below its low-water mark: resume the side that
 * writes into it, or finish the flush of a half-closed tunnel. */
static void write_cb(struct stream *st, void *arg)
{
    struct tunnel *t = arg;
    if (t->half_close && (st == t->a ? t->b_eof : t->a_eof)) {
        if (evbuffer_get_length(stream_output(st)) == 0) {
            t->owner->hold(t->arg);
            shut(t, st);
            t->owner->release(t->arg);
        }
        return;
    }
    if (st == t->b && t->flushing_b) {
        if (evbuffer_get_length(stream_output(st)) == 0) {
            t->owner->hold(t->arg);
            t->owner->closed(t->arg, false);
            t->owner->release(t->arg);
        }
        return;
    }
    struct stream *from = other(t, st);
    bool *paused = from == t->a ? &t->a_paused : &t->b_paused;
    if (!*paused)
        return;
    t->owner->hold(t->arg);
    *paused = false;
    stream_enable_read(from);
    move(t, from, st);
    t->owner->release(t->arg);
}

/* A read timeout on either side: idle only if neither side moved a byte
 * for the whole idle timeout. */
static void idle(struct tunnel *t, struct stream *side)
{
    uint64_t quiet = time_now_ms() - t->last_activity_ms;
    if (quiet >= (uint64_t)t->idle_ms) {
        log_debug("tunnel idle for %llu ms, closing", (unsigned long long)quiet);
        t->owner->closed(t->arg, false);
        return;
    }
    if (!((side == t->a) ? t->a_paused : t->b_paused))
        stream_enable_read(side);
}

/* Side a (the client) closed its sending half: deliver what it said, then
 * close once b took it. */
static void a_gone(struct tunnel *t)
{
    move(t, t->a, t->b);
    stream_disable_read(t->a);
    if (evbuffer_get_length(stream_output(t->b)) == 0) {
        t->owner->closed(t->arg, false);
        return;
    }
    t->flushing_b = true;
    stream_set_write_low(t->b, 0); /* call back at empty */
}

static void event_cb(struct stream *st, short what, void *arg)
{
    struct tunnel *t = arg;
    t->owner->hold(t->arg);
    if ((what & STREAM_TIMEOUT) && (what & STREAM_READING)) {
        idle(t, st);
    } else if (what & STREAM_TIMEOUT) {
        t->owner->closed(t->arg, false); /* a side stopped taking bytes */
    } else if (t->half_close && (what & STREAM_ERROR)) {
        t->reset = true;
        t->owner->closed(t->arg, false);
    } else if (t->half_close && (what & STREAM_EOF)) {
        side_eof(t, st);
    } else if (st == t->a && (what & STREAM_EOF)) {
        a_gone(t);
    } else if (st == t->b) {
        /* The upstream went away: flush what it said, then close. */
        move(t, t->b, t->a);
        t->owner->closed(t->arg, true);
    } else {
        t->owner->closed(t->arg, false);
    }
    t->owner->release(t->arg);
}

void tunnel_start(struct tunnel *t, struct stream *a, struct stream *b, int idle_ms, int write_ms,
                  const struct tunnel_owner *owner, void *arg)
{
    *t = (struct tunnel){.a = a,
                         .b = b,
                         .owner = owner,
                         .arg = arg,
                         .idle_ms = idle_ms,
                         .half_close = t->half_close};
    stream_setcb(a, read_cb, write_cb, event_cb, t);
    stream_setcb(b, read_cb, write_cb, event_cb, t);
    stream_set_timeouts(a, idle_ms, write_ms);
    stream_set_timeouts(b, idle_ms, write_ms);
    move(t, b, a);
    move(t, a, b);
    if (!t->a_paused)
        stream_enable_read(a);
    if (!t->b_paused)
        stream_enable_read(b);
}
