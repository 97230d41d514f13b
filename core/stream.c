#include "stream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "ev.h"
#include "timeutil.h"

/* One read takes at most this much: a 16 KiB response is one readv. */
#define STREAM_READ_MAX (64 * 1024)
/* The most plaintext one TLS record carries (RFC 8446 section 5.1, RFC
 * 5246 section 6.2.1): each SSL_write is one full record when there is that
 * much to say. */
#define TLS_RECORD_MAX 16384
/* What one write event encrypts before other connections get a turn. */
#define TLS_WRITE_BUDGET (16 * TLS_RECORD_MAX)

struct stream {
    struct event_base *base;
    stream_data_cb read_cb, write_cb;
    stream_event_cb event_cb;
    void *arg;
    int busy;   /* nesting of our own handlers */
    bool freed; /* stream_free was called while busy */

    int fd;
    struct evbuffer *in, *out;
    struct event *rev, *wev, *tev;
    bool reading;      /* the user wants input */
    bool read_on;      /* ... and gets it: no EOF, below the high-water mark */
    bool rev_added;    /* epoll has our fd for EPOLLIN */
    bool wev_added;    /* ... and for EPOLLOUT (after a short write) */
    bool write_queued; /* wev is active or added, or a TLS write waits */
    bool closed;       /* EOF or error seen: no more reading */
    size_t read_high, write_low;
    int read_timeout_ms, write_timeout_ms;
    uint64_t last_read_ms, last_write_ms;
    uint64_t armed_until_ms;         /* when the timer fires; 0 = not armed */
    struct evbuffer_cb_entry *in_cb; /* only while reading is held back */

    /* TLS (ssl is NULL on a plain socket) */
    SSL *ssl;
    bool handshaking;      /* until SSL_do_handshake says 1 */
    bool hs_want_write;    /* ... and it waits for EPOLLOUT, not EPOLLIN */
    bool read_wants_write; /* SSL_read must write first (an alert, a KeyUpdate) */
    bool read_retry;       /* ... could write, but reading had paused */
    bool write_wants_read; /* SSL_write must read first */
    bool write_blocked;    /* SSL_write said WANT_WRITE */
    bool tls_dead;         /* a fatal error: no more SSL calls, no close_notify */
    bool eof_pending;      /* close_notify read behind data not taken yet */
    int wlen;              /* the SSL_write to repeat (same bytes), 0 = none */
    unsigned long tls_err; /* the OpenSSL error that ended it */
};

static void really_free(struct stream *st)
{
    ev_free(st->rev);
    ev_free(st->wev);
    ev_free(st->tev);
    if (st->ssl) {
        /* close_notify (RFC 8446 section 6.1), offered once to the socket
         * and never waited for; the peer's is not awaited either (allowed
         * when the connection closes, ibid.). Not after a fatal error, when
         * OpenSSL must not be called again, nor mid-handshake. */
        if (!st->handshaking && !st->tls_dead) {
            ERR_clear_error();
            SSL_shutdown(st->ssl);
            ERR_clear_error();
        }
        SSL_free(st->ssl);
    }
    if (st->in)
        evbuffer_free(st->in);
    if (st->out)
        evbuffer_free(st->out);
    if (st->fd != -1)
        close(st->fd);
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

/* ---- timeouts ---- */

/* The nearest deadline (ms, coarse monotonic) among the running timeouts,
 * or 0 when none runs. */
static uint64_t next_deadline(const struct stream *st)
{
    uint64_t d = 0;
    if (st->read_on && st->read_timeout_ms)
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

/* Does a TLS stream need EPOLLIN? `want` says whether the user's reading
 * is in force. While OpenSSL waits to write (a handshake flight, an alert
 * SSL_read must send), a readable socket is no news: level-triggered, it
 * would only spin. */
static bool tls_wants_rev(const struct stream *st, bool want)
{
    if (st->tls_dead)
        return false;
    if (st->handshaking)
        return !st->hs_want_write;
    return st->write_wants_read || (want && !st->read_wants_write);
}

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
    bool need = st->ssl ? tls_wants_rev(st, want) : want;
    if (need && !st->rev_added) {
        event_add(st->rev, NULL);
        st->rev_added = true;
    } else if (!need && st->rev_added) {
        event_del(st->rev);
        st->rev_added = false;
    }
    if (want && !st->read_on) {
        st->read_on = true;
        st->last_read_ms = time_now_ms(); /* a paused read was not an idle one */
        arm_timer(st);
        /* TLS: records OpenSSL already holds, or a close_notify behind data
         * the user had not taken, wake no epoll: go and get them. */
        if (st->ssl && !st->handshaking && !st->tls_dead &&
            (st->eof_pending || st->read_retry || SSL_has_pending(st->ssl)))
            event_active(st->rev, EV_READ, 1);
    } else if (!want) {
        st->read_on = false;
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
    if (st->read_on && st->read_timeout_ms &&
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

/* ---- reading ---- */

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

/* The first n bytes of `block` join the input (the block is taken either
 * way: by reference, or back to the free list). */
static void input_add(struct stream *st, char *block, size_t n)
{
    if (n >= REF_MIN && evbuffer_add_reference(st->in, block, n, block_put, NULL) == 0)
        return;
    if (n)
        evbuffer_add(st->in, block, n);
    block_put(block, 0, NULL);
}

/* How much one read may take: 0 when the input is at its high-water mark. */
static size_t read_room(const struct stream *st)
{
    size_t have = evbuffer_get_length(st->in);
    if (!st->read_high)
        return STREAM_READ_MAX;
    if (have >= st->read_high)
        return 0;
    return st->read_high - have < STREAM_READ_MAX ? st->read_high - have : STREAM_READ_MAX;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    size_t want = read_room(st);
    if (!want) {
        rev_update(st);
        return;
    }
    char *block = block_get();
    if (!block)
        return;
    ssize_t n = read(fd, block, want);
    input_add(st, block, n > 0 ? (size_t)n : 0);
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
    if (info->n_deleted && st->read_high && !st->read_on)
        rev_update(st);
}

/* ---- writing ---- */

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
    /* TLS: the output waits for the handshake (then it flushes), and goes
     * nowhere after a fatal error (the user has been told). */
    if (st->write_queued || st->handshaking || st->tls_dead || evbuffer_get_length(st->out) == 0)
        return;
    st->write_queued = true;
    st->last_write_ms = time_now_ms(); /* the write timeout counts from now */
    event_active(st->wev, EV_WRITE, 1);
}

/* A stream over fd with its events (rcb/wcb: the plain or TLS handlers);
 * NULL on failure, fd closed. */
static struct stream *stream_alloc(struct event_base *base, int fd, event_callback_fn rcb,
                                   event_callback_fn wcb)
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
    st->rev = event_new(base, fd, EV_READ | EV_PERSIST, rcb, st);
    st->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, wcb, st);
    st->tev = evtimer_new(base, timer_cb, st);
    if (!st->in || !st->out || !st->rev || !st->wev || !st->tev) {
        really_free(st);
        return NULL;
    }
    st->last_read_ms = st->last_write_ms = time_now_ms();
    return st;
}

struct stream *stream_new_socket(struct event_base *base, int fd)
{
    return stream_alloc(base, fd, read_cb, write_cb);
}

/* ---- TLS ----
 *
 * OpenSSL works on the socket itself (SSL_set_fd), driven by the same two
 * events as a plain stream. Memory BIOs were the other way: they would add
 * a copy of every ciphertext byte each way (socket -> our buffer -> the
 * BIO -> OpenSSL's record buffer, and back) and a second pair of buffers per
 * connection, to gain several records per writev, which only bulk
 * transfers would notice. With the socket BIO, read-ahead lets one recv
 * take a whole record and what follows it (not the 5-byte header first, then
 * the body), SSL_read decrypts into our 64 KiB read block, and each
 * SSL_write is one full record sent straight from OpenSSL's buffer. Since
 * OpenSSL may then hold records the socket no longer shows, SSL_has_pending
 * decides whether to come back without waiting for EPOLLIN.
 *
 * Modes: a partial write reports each record as it goes (no all-or-nothing
 * SSL_write to restart); a moving buffer lets a repeated SSL_write take its
 * bytes from a fresh copy (the output's first bytes are copied to a staging
 * record when they are not contiguous). A repeat is always the same length
 * over the same first bytes: nothing else drains the output. */

static __thread char tls_stage[TLS_RECORD_MAX];

/* A fatal TLS or socket error: keeps OpenSSL's reason for stream_tls_error
 * and empties the thread's error queue (every connection of the worker
 * shares it). Returns the event to report. */
static short tls_fail(struct stream *st, int err)
{
    int e = errno;
    unsigned long code = ERR_peek_error();
    if (code && !st->tls_err)
        st->tls_err = code;
    ERR_clear_error();
    st->tls_dead = true;
    errno = e;
    /* The peer gone mid-record without a socket error: its EOF. */
    return err == SSL_ERROR_SYSCALL && !code && !e ? STREAM_EOF : STREAM_ERROR;
}

static void tls_wev_update(struct stream *st)
{
    bool need = !st->tls_dead &&
                (st->handshaking ? st->hs_want_write : st->read_wants_write || st->write_blocked);
    if (need && !st->wev_added) {
        event_add(st->wev, NULL);
        st->wev_added = true;
        arm_timer(st);
    } else if (!need && st->wev_added) {
        /* event_del also takes the event off the active queue: a write
         * queued (by stream_flush, or the budget) and not blocked is put
         * back there. */
        event_del(st->wev);
        st->wev_added = false;
        if (st->write_queued && !st->write_blocked && !st->write_wants_read)
            event_active(st->wev, EV_WRITE, 1);
    }
}

/* The first len bytes of out, contiguous. */
static const void *tls_chunk(struct evbuffer *out, size_t len)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(out, (ev_ssize_t)len, NULL, &v, 1) >= 1 && v.iov_len >= len)
        return v.iov_base;
    evbuffer_copyout(out, tls_stage, len);
    return tls_stage;
}

/* Decrypts what OpenSSL and the socket hold into one read block (up to the
 * room the high-water mark leaves), hands it to the user, then reports a
 * close_notify or an error. Called inside enter()/leave(). */
static void tls_read(struct stream *st)
{
    if (st->eof_pending) {
        st->eof_pending = false;
        stream_end(st, STREAM_EOF | STREAM_READING);
        return;
    }
    st->read_retry = false;
    size_t want = read_room(st);
    char *block = want ? block_get() : NULL;
    if (!block)
        return;
    size_t got = 0;
    int err = SSL_ERROR_NONE;
    while (got < want) {
        ERR_clear_error();
        int n = SSL_read(st->ssl, block + got, (int)(want - got));
        if (n <= 0) {
            err = SSL_get_error(st->ssl, n);
            break;
        }
        got += (size_t)n;
        /* Nothing buffered: the socket is drained as far as OpenSSL knows
         * (read-ahead took what it held), and asking again would cost a
         * recv that says EAGAIN. The level-triggered event calls back when
         * more comes. */
        if (!SSL_has_pending(st->ssl))
            break;
    }
    short end = 0;
    if (err == SSL_ERROR_WANT_WRITE)
        st->read_wants_write = true;
    else if (err == SSL_ERROR_ZERO_RETURN) /* close_notify, or a TCP EOF: see stream_new_tls */
        end = STREAM_EOF;
    else if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ)
        end = tls_fail(st, err);
    input_add(st, block, got);
    if (got) {
        st->last_read_ms = time_now_ms();
        if (st->read_cb)
            st->read_cb(st, st->arg);
        if (st->freed)
            return;
        rev_update(st); /* the input may have hit the high-water mark */
        if (end == STREAM_EOF && !st->read_on) {
            /* As on a plain socket, the EOF waits behind the data. */
            st->eof_pending = true;
            return;
        }
    }
    if (end) {
        stream_end(st, end | STREAM_READING);
        return;
    }
    if (err == SSL_ERROR_NONE && st->read_on && SSL_has_pending(st->ssl))
        event_active(st->rev, EV_READ, 1); /* the block filled: the rest next turn */
}

/* Encrypts the output a record at a time until it is written, the socket
 * is full, or the budget is spent (then again later in this loop
 * iteration). Called inside enter()/leave(). */
static void tls_write(struct stream *st)
{
    size_t budget = TLS_WRITE_BUDGET;
    int err = SSL_ERROR_NONE;
    bool wrote = false;
    st->write_blocked = st->write_wants_read = false;
    while (budget && evbuffer_get_length(st->out)) {
        size_t len = evbuffer_get_length(st->out);
        if (st->wlen)
            len = (size_t)st->wlen;
        else if (len > TLS_RECORD_MAX)
            len = TLS_RECORD_MAX;
        const void *p = tls_chunk(st->out, len);
        ERR_clear_error();
        int n = SSL_write(st->ssl, p, (int)len);
        if (n <= 0) {
            err = SSL_get_error(st->ssl, n);
            st->wlen = (int)len;
            break;
        }
        st->wlen = 0;
        evbuffer_drain(st->out, (size_t)n);
        wrote = true;
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
    }
    if (wrote)
        st->last_write_ms = time_now_ms();
    if (err == SSL_ERROR_WANT_WRITE) {
        st->write_blocked = true;
    } else if (err == SSL_ERROR_WANT_READ) {
        st->write_wants_read = true;
    } else if (err != SSL_ERROR_NONE) {
        tls_fail(st, err);
        st->write_queued = false;
        tls_wev_update(st);
        stream_end(st, STREAM_ERROR | STREAM_WRITING);
        return;
    }
    size_t left = evbuffer_get_length(st->out);
    if (left == 0)
        st->write_queued = false;
    tls_wev_update(st);
    if (left && err == SSL_ERROR_NONE)
        event_active(st->wev, EV_WRITE, 1); /* the budget is spent: the rest next turn */
    rev_update(st);
    if (left <= st->write_low && st->write_cb)
        st->write_cb(st, st->arg);
}

/* One step of the server handshake; once done, STREAM_CONNECTED, then
 * whatever came with the client's Finished and whatever the user queued.
 * Called inside enter()/leave(). */
static void tls_handshake(struct stream *st)
{
    ERR_clear_error();
    int r = SSL_do_handshake(st->ssl);
    if (r != 1) {
        int err = SSL_get_error(st->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            st->hs_want_write = err == SSL_ERROR_WANT_WRITE;
            return;
        }
        short what = err == SSL_ERROR_ZERO_RETURN ? STREAM_EOF : tls_fail(st, err);
        st->tls_dead = true;
        stream_end(st, what | STREAM_READING);
        return;
    }
    st->handshaking = st->hs_want_write = false;
    fire_event(st, STREAM_CONNECTED);
    if (st->freed)
        return;
    rev_update(st);
    stream_flush(st);
    if (st->read_on)
        tls_read(st);
}

static void tls_rev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    enter(st);
    if (st->handshaking) {
        tls_handshake(st);
    } else {
        if (st->write_wants_read && !st->tls_dead)
            tls_write(st);
        if (!st->freed && st->read_on)
            tls_read(st);
    }
    if (leave(st)) {
        rev_update(st);
        tls_wev_update(st);
    }
}

static void tls_wev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    enter(st);
    if (st->handshaking) {
        tls_handshake(st);
    } else {
        if (st->read_wants_write) {
            st->read_wants_write = false;
            if (st->read_on)
                tls_read(st);
            else
                st->read_retry = true; /* when reading resumes */
        }
        if (!st->freed && !st->tls_dead && st->write_queued && !st->write_wants_read)
            tls_write(st);
    }
    if (leave(st)) {
        rev_update(st);
        tls_wev_update(st);
    }
}

struct stream *stream_new_tls(struct event_base *base, int fd, SSL *ssl)
{
    struct stream *st = stream_alloc(base, fd, tls_rev_cb, tls_wev_cb);
    if (!st) {
        SSL_free(ssl);
        return NULL;
    }
    st->ssl = ssl;
    st->handshaking = true;
    if (SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        really_free(st);
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_read_ahead(ssl, 1);
    /* A TCP EOF without close_notify reads as an EOF (dirty shutdowns are
     * allowed, as they were on libevent's OpenSSL bufferevent): HTTP frames
     * its own messages, so a truncated one is caught there, and the stream
     * can still write, so a client that half-closes once its request is
     * upstream gets the response (without the option OpenSSL 3 sends a
     * fatal decode_error alert and refuses to write: test_tls). */
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF /* OpenSSL 3; 1.1.1 says SSL_ERROR_SYSCALL, see tls_fail */
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_set_accept_state(ssl);
    rev_update(st); /* the ClientHello */
    return st;
}

SSL *stream_tls_ssl(struct stream *st)
{
    return st->ssl;
}

unsigned long stream_tls_error(struct stream *st)
{
    unsigned long e = st->tls_err;
    st->tls_err = 0;
    return e;
}

/* ---- the common calls ---- */

struct evbuffer *stream_input(struct stream *st)
{
    return st->in;
}

struct evbuffer *stream_output(struct stream *st)
{
    return st->out;
}

int stream_fd(struct stream *st)
{
    return st->fd;
}

bool stream_is_tls(const struct stream *st)
{
    return st->ssl != NULL;
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
    st->reading = true;
    rev_update(st);
}

void stream_disable_read(struct stream *st)
{
    st->reading = false;
    rev_update(st);
}

void stream_set_read_high(struct stream *st, size_t high)
{
    st->read_high = high;
    rev_update(st);
}

void stream_set_write_low(struct stream *st, size_t low)
{
    st->write_low = low;
}

void stream_set_timeouts(struct stream *st, int read_ms, int write_ms)
{
    st->read_timeout_ms = read_ms;
    st->write_timeout_ms = write_ms;
    arm_timer(st);
}
