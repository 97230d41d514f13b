#include "pool.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev.h"
#include "log.h"
#include "stream.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

struct pool_bucket {
    struct strmap_node node;
    struct list_node idle; /* upconn.link, newest first */
    int count;
    char key[];
};

struct pool {
    struct worker *w;
    struct strmap buckets;
    struct event *sweep_ev; /* closes connections idle too long */
};

#define POOL_SWEEP_MS 1000

#define BUCKET_OF(n) container_of(n, struct pool_bucket, node)

/* Idle connections, newest first in each bucket: close from the tail those
 * unused for longer than upstream.pool_idle_timeout_ms. */
/* Closes a bucket's idle connections idle since before `older_than`, oldest
 * first. upconn_close frees the bucket with its last connection, so the
 * loop stops there without touching it again. */
static void close_idle(struct pool_bucket *b, uint64_t older_than)
{
    for (;;) {
        struct upconn *c = container_of(list_last(&b->idle), struct upconn, link);
        bool last = b->count == 1;
        if (c->idle_since_ms >= older_than)
            return;
        upconn_close(c);
        if (last)
            return;
    }
}

static void sweep_bucket(struct strmap_node *n, void *arg)
{
    close_idle(BUCKET_OF(n), *(const uint64_t *)arg);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    uint64_t now = time_now_ms(), idle = (uint64_t)p->w->cfg->upstream_pool_idle_timeout_ms;
    uint64_t limit = now > idle ? now - idle : 0;
    strmap_each(&p->buckets, sweep_bucket, &limit);
}

struct pool *pool_new(struct worker *w)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->w = w;
    if (strmap_init(&p->buckets, 256) == -1) {
        free(p);
        return NULL;
    }
    p->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, p);
    if (!p->sweep_ev) {
        strmap_destroy(&p->buckets);
        free(p);
        return NULL;
    }
    struct timeval tv = tv_from_ms(POOL_SWEEP_MS);
    event_add(p->sweep_ev, &tv);
    return p;
}

void pool_key(char *buf, size_t cap, const char *sandbox_id, const char *address, unsigned port,
              const char *execution_id)
{
    /* executionId last: it is the only part that may contain '|'. Built by
     * hand: this runs per request and printf is the slow way. */
    char digits[6];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + port % 10);
        port /= 10;
    } while (port && nd < sizeof(digits));
    size_t o = 0;
    const char *parts[3] = {sandbox_id, address, execution_id ? execution_id : ""};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(parts[i]);
        if (o + n + 8 >= cap)
            n = cap > o + 8 ? cap - o - 8 : 0;
        memcpy(buf + o, parts[i], n);
        o += n;
        if (i == 1) { /* "|<port>" after the address */
            buf[o++] = '|';
            while (nd)
                buf[o++] = digits[--nd];
        }
        if (i < 2)
            buf[o++] = '|';
    }
    buf[o] = '\0';
}

static void bucket_unlink(struct upconn *c)
{
    struct pool_bucket *b = c->bucket;
    if (!b)
        return;
    list_unlink(&c->link);
    c->bucket = NULL;
    if (--b->count == 0) {
        strmap_remove(&c->pool->buckets, &b->node);
        free(b);
    }
}

void upconn_close(struct upconn *c)
{
    if (!c)
        return;
    bucket_unlink(c);
    ev_free(c->connect_ev);
    if (c->io) {
        stream_free(c->io);
        METRIC_DEC(&c->pool->w->metrics, upstream_connections);
    } else if (c->fd != -1) {
        close(c->fd);
    }
    free(c->key);
    free(c);
}

struct upconn *pool_acquire(struct pool *p, const char *key)
{
    struct strmap_node *n = strmap_get(&p->buckets, key);
    if (!n)
        return NULL;
    struct pool_bucket *b = BUCKET_OF(n);
    /* most recently used: warmest */
    struct upconn *c = container_of(list_first(&b->idle), struct upconn, link);
    bucket_unlink(c);
    c->reused = true;
    stream_setcb(c->io, NULL, NULL, NULL, NULL);
    return c;
}

/* An idle pooled connection that becomes readable has either closed or sent
 * bytes nobody asked for: both make it unusable. */
static void idle_read_cb(struct stream *st, void *arg)
{
    upconn_close(arg);
}

static void idle_event_cb(struct stream *st, short what, void *arg)
{
    upconn_close(arg);
}

void pool_release(struct upconn *c)
{
    struct pool *p = c->pool;
    const struct config *cfg = p->w->cfg;
    /* pool_max_idle 0 means no reuse: checked before a bucket is made, or
     * a new key would always get its first connection pooled. */
    if (p->w->draining || cfg->upstream_pool_max_idle == 0) {
        upconn_close(c);
        return;
    }
    struct strmap_node *n = strmap_get(&p->buckets, c->key);
    struct pool_bucket *b;
    if (n) {
        b = BUCKET_OF(n);
        if (b->count >= cfg->upstream_pool_max_idle) {
            upconn_close(c);
            return;
        }
    } else {
        size_t klen = strlen(c->key);
        b = malloc(sizeof(*b) + klen + 1);
        if (!b) {
            upconn_close(c);
            return;
        }
        memcpy(b->key, c->key, klen + 1);
        list_init(&b->idle);
        b->count = 0;
        strmap_put(&p->buckets, &b->node, b->key);
    }
    c->bucket = b;
    list_insert_front(&b->idle, &c->link);
    b->count++;
    stream_setcb(c->io, idle_read_cb, NULL, idle_event_cb, c);
    /* The pool's sweep enforces the idle timeout; the stream keeps none. */
    stream_set_timeouts(c->io, 0, 0);
    c->idle_since_ms = time_now_ms();
    stream_enable_read(c->io);
}

static void connect_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    int err = c->err ? c->err : ETIMEDOUT;
    if (!c->err && (what & EV_WRITE)) {
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
    }
    event_free(c->connect_ev);
    c->connect_ev = NULL;
    if (err == 0) {
        c->io = stream_new_socket(c->pool->w->base, fd);
        if (!c->io) {
            c->fd = -1; /* closed by stream_new_socket */
            err = ENOMEM;
        } else
            METRIC_INC(&c->pool->w->metrics, upstream_connections);
    }
    if (err) {
        METRIC_INC(&c->pool->w->metrics, upstream_connect_errors);
        upconn_connect_cb cb = c->cb;
        void *cb_arg = c->cb_arg;
        upconn_close(c);
        cb(NULL, err, cb_arg);
        return;
    }
    c->fd = -1; /* owned by the stream now */
    c->cb(c, 0, c->cb_arg);
}

struct upconn *upconn_connect(struct pool *p, const char *key, const struct sockaddr *sa,
                              socklen_t salen, int timeout_ms, upconn_connect_cb cb, void *arg)
{
    struct upconn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = -1;
    c->pool = p;
    c->cb = cb;
    c->cb_arg = arg;
    c->key = strdup(key);
    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!c->key || c->fd == -1)
        goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A refusal on loopback can come back from connect() itself; either way
     * the answer goes through the event loop so the caller's stack has
     * unwound before its callback runs. */
    if (connect(c->fd, sa, salen) == -1 && errno != EINPROGRESS) {
        c->err = errno;
        close(c->fd);
        c->fd = -1;
        c->connect_ev = event_new(p->w->base, -1, 0, connect_done_cb, c);
        if (!c->connect_ev)
            goto fail;
        event_active(c->connect_ev, EV_TIMEOUT, 0);
        return c;
    }
    c->connect_ev = event_new(p->w->base, c->fd, EV_WRITE, connect_done_cb, c);
    if (!c->connect_ev)
        goto fail;
    struct timeval tv = tv_from_ms(timeout_ms);
    event_add(c->connect_ev, &tv);
    return c;
fail:
    upconn_close(c);
    return NULL;
}

static void close_bucket(struct strmap_node *n, void *arg)
{
    close_idle(BUCKET_OF(n), UINT64_MAX);
}

void pool_close_idle(struct pool *p)
{
    strmap_each(&p->buckets, close_bucket, NULL);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_close_idle(p);
    ev_free(p->sweep_ev);
    strmap_destroy(&p->buckets);
    free(p);
}
