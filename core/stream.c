#include "stream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "ev.h"
#include "timeutil.h"

/* One read takes at most this much: a 16 KiB response is one readv. */
#define STREAM_READ_MAX (64 * 1024)

struct stream {
    struct event_base *base;
    stream_data_cb read_cb, write_cb;
    stream_event_cb event_cb;
    void *arg;
    int busy;   /* nesting of our own handlers */
    bool freed; /* stream_free was called while busy */

    /* TLS: libevent's OpenSSL bufferevent does all the work. */
    struct bufferevent *bev;

    /* plain sockets */
    int fd;
    struct evbuffer *in, *out;
    struct event *rev, *wev, *tev;
    bool reading;      /* the user wants input */
    bool rev_added;    /* epoll has our fd for EPOLLIN */
    bool wev_added;    /* ... and for EPOLLOUT (after a short write) */
    bool write_queued; /* wev is active or added */
    bool closed;       /* EOF or error seen: no more reading */
    size_t read_high, write_low;
    int read_timeout_ms, write_timeout_ms;
    uint64_t last_read_ms, last_write_ms;
    uint64_t armed_until_ms;         /* when the timer fires; 0 = not armed */
    struct evbuffer_cb_entry *in_cb; /* only while reading is held back */
};

static void really_free(struct stream *st)
{
    if (st->bev) {
        bufferevent_free(st->bev);
    } else {
        ev_free(st->rev);
        ev_free(st->wev);
        ev_free(st->tev);
        if (st->in)
            evbuffer_free(st->in);
        if (st->out)
            evbuffer_free(st->out);
        if (st->fd != -1)
            close(st->fd);
    }
    free(st);
}

void stream_free(struct stream *st)
{
    if (!st)
        return;
    if (st->busy) {
        st->freed = true;
        st->read_cb = st->write_cb = NULL;
        st->event_cb = NULL;
        return;
    }
    really_free(st);
}

/* Our handlers bracket user callbacks with these. leave() returns false when
 * the stream is gone and must not be touched. */
static void enter(struct stream *st)
{
    st->busy++;
}

static bool leave(struct stream *st)
{
    if (--st->busy == 0 && st->freed) {
        really_free(st);
        return false;
    }
    return !st->freed;
}

/* ---- timeouts (plain) ---- */

/* The nearest deadline (ms, coarse monotonic) among the running timeouts,
 * or 0 when none runs. */
static uint64_t next_deadline(const struct stream *st)
{
    uint64_t d = 0;
    if (st->rev_added && st->read_timeout_ms)
        d = st->last_read_ms + (uint64_t)st->read_timeout_ms;
    if (st->write_timeout_ms && evbuffer_get_length(st->out)) {
        uint64_t w = st->last_write_ms + (uint64_t)st->write_timeout_ms;
        if (!d || w < d)
            d = w;
    }
    return d;
}

/* Makes sure the timer fires no later than the nearest deadline. A timer
 * already set to fire earlier is left alone: when it fires it finds the
 * deadline moved (activity only moves deadlines later) and re-arms, so the
 * hot path never touches the timer heap. */
static void arm_timer(struct stream *st)
{
    uint64_t d = next_deadline(st);
    if (!d || (st->armed_until_ms && st->armed_until_ms <= d))
        return;
    uint64_t now = time_now_ms();
    uint64_t ms = d > now ? d - now : 1;
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(st->tev, &tv);
    st->armed_until_ms = d;
}

static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

static void rev_update(struct stream *st)
{
    bool full = st->read_high && evbuffer_get_length(st->in) >= st->read_high;
    bool want = st->reading && !st->closed && !full;
    /* The input's drain callback is only needed while the high-water mark
     * holds reading back: evbuffer callbacks cost on every add and drain. */
    if (full && !st->in_cb) {
        st->in_cb = evbuffer_add_cb(st->in, input_cb, st);
    } else if (!full && st->in_cb) {
        evbuffer_remove_cb_entry(st->in, st->in_cb);
        st->in_cb = NULL;
    }
    if (want && !st->rev_added) {
        event_add(st->rev, NULL);
        st->rev_added = true;
        st->last_read_ms = time_now_ms(); /* a paused read was not an idle one */
        arm_timer(st);
    } else if (!want && st->rev_added) {
        event_del(st->rev);
        st->rev_added = false;
    }
}

static void fire_event(struct stream *st, short what)
{
    if (st->event_cb)
        st->event_cb(st, what, st->arg);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    uint64_t now = time_now_ms();
    st->armed_until_ms = 0;
    enter(st);
    if (st->rev_added && st->read_timeout_ms &&
        now - st->last_read_ms >= (uint64_t)st->read_timeout_ms) {
        st->reading = false; /* as bufferevents do: the user re-enables */
        rev_update(st);
        fire_event(st, STREAM_TIMEOUT | STREAM_READING);
    } else if (st->write_timeout_ms && evbuffer_get_length(st->out) &&
               now - st->last_write_ms >= (uint64_t)st->write_timeout_ms) {
        fire_event(st, STREAM_TIMEOUT | STREAM_WRITING);
    }
    if (leave(st))
        arm_timer(st); /* fired early, or another deadline still runs */
}

/* EOF or an error: no more reading, tell the user (errno kept for it). */
static void stream_end(struct stream *st, short what)
{
    int e = errno;
    st->closed = true;
    rev_update(st);
    enter(st);
    errno = e;
    fire_event(st, what);
    leave(st);
}

/* ---- reading (plain) ---- */

/* Read buffers: one 64 KiB block per read, from a per-thread free list.
 * A read that filled little of it is copied into the evbuffer (small
 * requests, small responses) and the block is kept for the next read; a
 * large one is handed to the evbuffer by reference, zero-copy, and comes back
 * to the list when its bytes have been written out. Past REF_MIN a block is
 * at least a quarter full, which bounds what backpressure can pin. */
#define REF_MIN (STREAM_READ_MAX / 4)
#define FREE_BLOCKS_MAX 64

static __thread void *free_blocks[FREE_BLOCKS_MAX];
static __thread int nfree_blocks;

static void *block_get(void)
{
    if (nfree_blocks)
        return free_blocks[--nfree_blocks];
    return malloc(STREAM_READ_MAX);
}

static void block_put(const void *data, size_t len, void *extra)
{
    void *b = (void *)(uintptr_t)data;
    if (nfree_blocks < FREE_BLOCKS_MAX)
        free_blocks[nfree_blocks++] = b;
    else
        free(b);
}

void stream_thread_cleanup(void)
{
    while (nfree_blocks)
        free(free_blocks[--nfree_blocks]);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    size_t have = evbuffer_get_length(st->in);
    size_t want = STREAM_READ_MAX;
    if (st->read_high) {
        if (have >= st->read_high) {
            rev_update(st);
            return;
        }
        if (st->read_high - have < want)
            want = st->read_high - have;
    }
    char *block = block_get();
    if (!block)
        return;
    ssize_t n = read(fd, block, want);
    if (n > 0) {
        if ((size_t)n < REF_MIN ||
            evbuffer_add_reference(st->in, block, (size_t)n, block_put, NULL) == -1) {
            evbuffer_add(st->in, block, (size_t)n);
            block_put(block, 0, NULL);
        }
    } else {
        block_put(block, 0, NULL);
    }
    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR)
            stream_end(st, STREAM_ERROR | STREAM_READING);
        return;
    }
    if (n == 0) {
        stream_end(st, STREAM_EOF | STREAM_READING);
        return;
    }
    st->last_read_ms = time_now_ms();
    enter(st);
    if (st->read_cb)
        st->read_cb(st, st->arg);
    if (leave(st))
        rev_update(st); /* the input may have hit the high-water mark */
}

/* The user drained input below the high-water mark: read again. */
static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct stream *st = arg;
    if (info->n_deleted && st->read_high && !st->rev_added)
        rev_update(st);
}

/* ---- writing (plain) ---- */

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    int n = evbuffer_write(st->out, fd);
    if (n == -1 && errno != EAGAIN && errno != EINTR) {
        int e = errno;
        st->write_queued = false;
        if (st->wev_added) {
            event_del(st->wev);
            st->wev_added = false;
        }
        errno = e;
        stream_end(st, STREAM_ERROR | STREAM_WRITING);
        return;
    }
    if (n > 0)
        st->last_write_ms = time_now_ms();
    size_t left = evbuffer_get_length(st->out);
    if (left == 0) {
        st->write_queued = false;
        if (st->wev_added) {
            event_del(st->wev);
            st->wev_added = false;
        }
    } else if (!st->wev_added) {
        /* A short write: now (and only now) ask epoll for EPOLLOUT. */
        event_add(st->wev, NULL);
        st->wev_added = true;
        arm_timer(st);
    }
    if (left <= st->write_low && st->write_cb) {
        enter(st);
        st->write_cb(st, st->arg);
        leave(st);
    }
}

void stream_flush(struct stream *st)
{
    if (st->bev || st->write_queued || evbuffer_get_length(st->out) == 0)
        return;
    st->write_queued = true;
    st->last_write_ms = time_now_ms(); /* the write timeout counts from now */
    event_active(st->wev, EV_WRITE, 1);
}

struct stream *stream_new_socket(struct event_base *base, int fd)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (!st) {
        close(fd);
        return NULL;
    }
    st->base = base;
    st->fd = fd;
    st->in = evbuffer_new();
    st->out = evbuffer_new();
    st->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, st);
    st->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, st);
    st->tev = evtimer_new(base, timer_cb, st);
    if (!st->in || !st->out || !st->rev || !st->wev || !st->tev) {
        really_free(st);
        return NULL;
    }
    st->last_read_ms = st->last_write_ms = time_now_ms();
    return st;
}

/* ---- TLS: adapters over the OpenSSL bufferevent ---- */

static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct stream *st = arg;
    enter(st);
    if (st->read_cb)
        st->read_cb(st, st->arg);
    leave(st);
}

static void bev_write_cb(struct bufferevent *bev, void *arg)
{
    struct stream *st = arg;
    enter(st);
    if (st->write_cb)
        st->write_cb(st, st->arg);
    leave(st);
}

static void bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct stream *st = arg;
    enter(st);
    fire_event(st, what);
    leave(st);
}

struct stream *stream_new_tls(struct event_base *base, int fd, SSL *ssl)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (!st) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    st->base = base;
    st->fd = -1;
    st->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    if (!st->bev) {
        SSL_free(ssl);
        close(fd);
        free(st);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(st->bev, 1);
    bufferevent_setcb(st->bev, bev_read_cb, bev_write_cb, bev_event_cb, st);
    return st;
}

SSL *stream_tls_ssl(struct stream *st)
{
    return st->bev ? bufferevent_openssl_get_ssl(st->bev) : NULL;
}

unsigned long stream_tls_error(struct stream *st)
{
    return st->bev ? bufferevent_get_openssl_error(st->bev) : 0;
}

/* ---- the common calls ---- */

struct evbuffer *stream_input(struct stream *st)
{
    return st->bev ? bufferevent_get_input(st->bev) : st->in;
}

struct evbuffer *stream_output(struct stream *st)
{
    return st->bev ? bufferevent_get_output(st->bev) : st->out;
}

int stream_fd(struct stream *st)
{
    return st->bev ? bufferevent_getfd(st->bev) : st->fd;
}

bool stream_is_tls(const struct stream *st)
{
    return st->bev != NULL;
}

void stream_setcb(struct stream *st, stream_data_cb rcb, stream_data_cb wcb, stream_event_cb ecb,
                  void *arg)
{
    st->read_cb = rcb;
    st->write_cb = wcb;
    st->event_cb = ecb;
    st->arg = arg;
}

void stream_enable_read(struct stream *st)
{
    if (st->bev) {
        bufferevent_enable(st->bev, EV_READ | EV_WRITE);
        return;
    }
    st->reading = true;
    rev_update(st);
}

void stream_disable_read(struct stream *st)
{
    if (st->bev) {
        bufferevent_disable(st->bev, EV_READ);
        return;
    }
    st->reading = false;
    rev_update(st);
}

void stream_set_read_high(struct stream *st, size_t high)
{
    if (st->bev) {
        bufferevent_setwatermark(st->bev, EV_READ, 0, high);
        return;
    }
    st->read_high = high;
    rev_update(st);
}

void stream_set_write_low(struct stream *st, size_t low)
{
    if (st->bev) {
        bufferevent_setwatermark(st->bev, EV_WRITE, low, 0);
        return;
    }
    st->write_low = low;
}

void stream_set_timeouts(struct stream *st, int read_ms, int write_ms)
{
    if (st->bev) {
        struct timeval rt = tv_from_ms(read_ms), wt = tv_from_ms(write_ms);
        bufferevent_set_timeouts(st->bev, read_ms ? &rt : NULL, write_ms ? &wt : NULL);
        return;
    }
    st->read_timeout_ms = read_ms;
    st->write_timeout_ms = write_ms;
    arm_timer(st);
}
