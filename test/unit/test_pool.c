/* core/pool.c: upstream connects and the per-worker keep-alive pool,
 * on a real event_base against a real loopback listener (the test accepts).
 * Connect then release to the pool, acquire by key (newest first), keys
 * never mix, upstream.pool_max_idle, a pooled connection the peer closed is
 * dropped, the idle-timeout sweep closes old ones only, and a failed
 * connect (refused, or failing inside connect() itself) is reported through
 * the callback, never from inside upconn_connect. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "config.h"
#include "stream.h"
#include "pool.h"
#include "worker.h"

struct fixture {
    struct config cfg;
    struct worker w;
    struct pool *pool;
    int lfd; /* the upstream's listening socket */
    struct sockaddr_in addr;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->cfg.upstream_pool_max_idle = 64;
    f->cfg.upstream_pool_idle_timeout_ms = 30000;
    f->w.cfg = &f->cfg;
    f->w.base = event_base_new();
    f->pool = f->w.base ? pool_new(&f->w) : NULL;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    f->addr.sin_family = AF_INET;
    f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(f->addr);
    if (!f->pool || f->lfd == -1 ||
        bind(f->lfd, (struct sockaddr *)&f->addr, sizeof(f->addr)) == -1 ||
        listen(f->lfd, 64) == -1 || getsockname(f->lfd, (struct sockaddr *)&f->addr, &len) == -1)
        return -1;
    f->w.pool = f->pool;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pool_free(f->pool); /* closes what is still pooled */
    assert_int_equal(f->w.metrics.upstream_connections, 0);
    event_base_free(f->w.base);
    close(f->lfd);
    stream_thread_cleanup();
    free(f);
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until pred(arg) holds or timeout_ms passes. */
static bool run_until(struct fixture *f, bool (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg)) {
        if (now_ms() > deadline)
            return false;
        struct timeval slice = {0, 5000};
        event_base_loopexit(f->w.base, &slice);
        event_base_dispatch(f->w.base);
    }
    return true;
}

struct connect_result {
    bool called;
    struct upconn *c;
    int err;
};

static void on_connect(struct upconn *c, int err, void *arg)
{
    struct connect_result *r = arg;
    r->called = true;
    r->c = c;
    r->err = err;
}

static bool connect_done(void *arg)
{
    return ((struct connect_result *)arg)->called;
}

/* A connected upconn for key; *peer gets the upstream side (accepted). */
static struct upconn *connect_one(struct fixture *f, const char *key, int *peer)
{
    struct connect_result r = {0};
    struct upconn *c = upconn_connect(f->pool, key, (struct sockaddr *)&f->addr, sizeof(f->addr),
                                      2000, on_connect, &r);
    assert_non_null(c);
    assert_false(r.called); /* never from inside upconn_connect */
    assert_true(run_until(f, connect_done, &r, 3000));
    assert_ptr_equal(r.c, c);
    assert_int_equal(r.err, 0);
    assert_false(c->reused);
    *peer = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*peer != -1);
    return c;
}

/* Has the pool closed its side? (EOF on the upstream's socket.) */
static bool peer_sees_eof(int peer)
{
    char b;
    struct pollfd p = {.fd = peer, .events = POLLIN};
    if (poll(&p, 1, 0) != 1)
        return false;
    return recv(peer, &b, 1, MSG_DONTWAIT) == 0;
}

static bool peer_eof_pred(void *arg)
{
    return peer_sees_eof(*(int *)arg);
}

static void close_peers(const int *peer, int n)
{
    for (int i = 0; i < n; i++)
        close(peer[i]);
}

static void test_connect_release_acquire(void **state)
{
    struct fixture *f = *state;
    int peer;
    struct upconn *c = connect_one(f, "sb1|127.0.0.1|80|", &peer);
    assert_int_equal(f->w.metrics.upstream_connections, 1);
    pool_release(c);
    assert_null(pool_acquire(f->pool, "sb1|127.0.0.1|81|"));
    struct upconn *again = pool_acquire(f->pool, "sb1|127.0.0.1|80|");
    assert_ptr_equal(again, c);
    assert_true(again->reused);
    assert_null(pool_acquire(f->pool, "sb1|127.0.0.1|80|")); /* taken out */
    /* Still the same TCP connection, usable both ways. */
    assert_int_equal(send(stream_fd(again->io), "ping", 4, 0), 4);
    char buf[8];
    assert_int_equal(recv(peer, buf, sizeof(buf), 0), 4);
    assert_false(peer_sees_eof(peer));
    upconn_close(again);
    assert_int_equal(f->w.metrics.upstream_connections, 0);
    assert_true(run_until(f, peer_eof_pred, &peer, 2000));
    close(peer);
}

static void test_acquire_newest_first(void **state)
{
    struct fixture *f = *state;
    const char *key = "sb2|127.0.0.1|80|";
    int p[3];
    struct upconn *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = connect_one(f, key, &p[i]);
    pool_release(c[0]);
    pool_release(c[2]);
    pool_release(c[1]);
    /* The most recently used is the warmest. */
    assert_ptr_equal(pool_acquire(f->pool, key), c[1]);
    assert_ptr_equal(pool_acquire(f->pool, key), c[2]);
    pool_release(c[1]);
    assert_ptr_equal(pool_acquire(f->pool, key), c[1]);
    assert_ptr_equal(pool_acquire(f->pool, key), c[0]);
    assert_null(pool_acquire(f->pool, key));
    for (int i = 0; i < 3; i++)
        upconn_close(c[i]);
    close_peers(p, 3);
}

/* Keys differ by sandbox, address, port or executionId; one that is a
 * prefix of another must not match it either. */
static void test_keys_never_mix(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {
        "sbA|127.0.0.1|80|",   "sbB|127.0.0.1|80|",     "sbA|127.0.0.2|80|",
        "sbA|127.0.0.1|8080|", "sbA|127.0.0.1|80|exec", "sbA|127.0.0.1|80|exec2",
    };
    enum { N = sizeof(keys) / sizeof(keys[0]) };
    struct upconn *c[N];
    int peer[N];
    for (int i = 0; i < N; i++) {
        c[i] = connect_one(f, keys[i], &peer[i]);
        pool_release(c[i]);
    }
    assert_null(pool_acquire(f->pool, "sbA|127.0.0.1|8|"));
    assert_null(pool_acquire(f->pool, "sbA|127.0.0.1|80|exe"));
    for (int i = N - 1; i >= 0; i--) {
        assert_ptr_equal(pool_acquire(f->pool, keys[i]), c[i]);
        assert_null(pool_acquire(f->pool, keys[i]));
    }
    for (int i = 0; i < N; i++)
        upconn_close(c[i]);
    close_peers(peer, N);
}

/* pool_key builds the keys above from their parts. */
static void test_pool_key(void **state)
{
    char buf[256];
    pool_key(buf, sizeof(buf), "sbA", "127.0.0.1", 8080, NULL);
    assert_string_equal(buf, "sbA|127.0.0.1|8080|");
    pool_key(buf, sizeof(buf), "sbA", "::1", 80, "ex|ec");
    assert_string_equal(buf, "sbA|::1|80|ex|ec");
    pool_key(buf, sizeof(buf), "s", "a", 0, "");
    assert_string_equal(buf, "s|a|0|");
}

static void test_max_idle_respected(void **state)
{
    struct fixture *f = *state;
    f->cfg.upstream_pool_max_idle = 2;
    const char *key = "sb3|127.0.0.1|80|";
    int p[4];
    struct upconn *c[4];
    for (int i = 0; i < 4; i++)
        c[i] = connect_one(f, key, &p[i]);
    int po;
    struct upconn *other = connect_one(f, "sb3b|127.0.0.1|80|", &po);
    for (int i = 0; i < 4; i++)
        pool_release(c[i]); /* the 3rd and 4th find the bucket full */
    pool_release(other);    /* another key has its own room */
    assert_int_equal(f->w.metrics.upstream_connections, 3);
    assert_true(run_until(f, peer_eof_pred, &p[2], 2000));
    assert_true(run_until(f, peer_eof_pred, &p[3], 2000));
    assert_false(peer_sees_eof(p[0]));
    assert_false(peer_sees_eof(p[1]));
    assert_ptr_equal(pool_acquire(f->pool, key), c[1]);
    assert_ptr_equal(pool_acquire(f->pool, key), c[0]);
    assert_null(pool_acquire(f->pool, key));
    assert_ptr_equal(pool_acquire(f->pool, "sb3b|127.0.0.1|80|"), other);
    /* A bucket emptied by acquires has room again. */
    pool_release(c[0]);
    pool_release(c[1]);
    assert_int_equal(f->w.metrics.upstream_connections, 3);
    upconn_close(other);
    close_peers(p, 4);
    close(po);
}

static void test_max_idle_one(void **state)
{
    struct fixture *f = *state;
    f->cfg.upstream_pool_max_idle = 1;
    const char *key = "sb4|127.0.0.1|80|";
    int p1, p2;
    struct upconn *c1 = connect_one(f, key, &p1);
    struct upconn *c2 = connect_one(f, key, &p2);
    pool_release(c1);
    pool_release(c2); /* closed: one idle per key */
    assert_true(run_until(f, peer_eof_pred, &p2, 2000));
    assert_ptr_equal(pool_acquire(f->pool, key), c1);
    assert_null(pool_acquire(f->pool, key));
    upconn_close(c1);
    close(p1);
    close(p2);
}

struct gauge {
    struct fixture *f;
    int64_t want;
};

static bool gauge_is(void *arg)
{
    struct gauge *g = arg;
    return g->f->w.metrics.upstream_connections == g->want;
}

static void test_peer_close_drops_pooled(void **state)
{
    struct fixture *f = *state;
    const char *key = "sb5|127.0.0.1|80|";
    int p1, p2;
    struct upconn *c1 = connect_one(f, key, &p1);
    struct upconn *c2 = connect_one(f, key, &p2);
    pool_release(c1);
    pool_release(c2);
    close(p2); /* the upstream closes the newest idle one */
    struct gauge g = {f, 1};
    assert_true(run_until(f, gauge_is, &g, 3000));
    /* Only the live one is handed out; the closed one is gone for good. */
    assert_ptr_equal(pool_acquire(f->pool, key), c1);
    assert_null(pool_acquire(f->pool, key));
    pool_release(c1);
    /* Unasked-for bytes make an idle connection unusable too. */
    assert_int_equal(send(p1, "HTTP/1.1 200 OK\r\n", 17, 0), 17);
    g.want = 0;
    assert_true(run_until(f, gauge_is, &g, 3000));
    assert_null(pool_acquire(f->pool, key));
    assert_true(run_until(f, peer_eof_pred, &p1, 2000));
    close(p1);
}

/* The sweep (once a second) closes connections idle longer than
 * upstream.pool_idle_timeout_ms and keeps younger ones. Ages are set
 * back rather than waited for, so which one goes does not depend on when
 * the sweep happens to run. */
static void test_idle_timeout_sweep(void **state)
{
    struct fixture *f = *state;
    f->cfg.upstream_pool_idle_timeout_ms = 5000;
    const char *key = "sb6|127.0.0.1|80|", *alone = "sb6b|127.0.0.1|80|";
    int p[3];
    struct upconn *c[3] = {connect_one(f, key, &p[0]), connect_one(f, key, &p[1]),
                           connect_one(f, alone, &p[2])};
    for (int i = 0; i < 3; i++)
        pool_release(c[i]);
    c[0]->idle_since_ms -= 6000;
    c[2]->idle_since_ms -= 6000; /* its bucket empties: freed with it */
    assert_true(run_until(f, peer_eof_pred, &p[0], 3000));
    assert_true(run_until(f, peer_eof_pred, &p[2], 3000));
    assert_false(peer_sees_eof(p[1]));
    assert_ptr_equal(pool_acquire(f->pool, key), c[1]);
    assert_null(pool_acquire(f->pool, key));
    assert_null(pool_acquire(f->pool, alone));
    assert_int_equal(f->w.metrics.upstream_connections, 1);
    upconn_close(c[1]);
    close_peers(p, 3);
}

/* The same in real time: a short timeout, nothing set back. */
static void test_idle_timeout_real_time(void **state)
{
    struct fixture *f = *state;
    f->cfg.upstream_pool_idle_timeout_ms = 100;
    int p;
    struct upconn *c = connect_one(f, "sb7|127.0.0.1|80|", &p);
    uint64_t t0 = now_ms();
    pool_release(c);
    assert_true(run_until(f, peer_eof_pred, &p, 5000));
    assert_true(now_ms() - t0 >= 100);
    assert_null(pool_acquire(f->pool, "sb7|127.0.0.1|80|"));
    close(p);
}

static void test_release_while_draining_closes(void **state)
{
    struct fixture *f = *state;
    int p;
    struct upconn *c = connect_one(f, "sb8|127.0.0.1|80|", &p);
    f->w.draining = true;
    pool_release(c);
    f->w.draining = false;
    assert_int_equal(f->w.metrics.upstream_connections, 0);
    assert_null(pool_acquire(f->pool, "sb8|127.0.0.1|80|"));
    assert_true(run_until(f, peer_eof_pred, &p, 2000));
    close(p);
}

/* A connect to sa fails with err, reported through the callback only after
 * upconn_connect returned. */
static void expect_connect_error(struct fixture *f, struct sockaddr_in *sa, int err)
{
    struct connect_result r = {0};
    struct upconn *c = upconn_connect(f->pool, "sb9|x|1|", (struct sockaddr *)sa, sizeof(*sa), 2000,
                                      on_connect, &r);
    assert_non_null(c);
    assert_false(r.called);
    assert_true(run_until(f, connect_done, &r, 3000));
    assert_null(r.c);
    assert_int_equal(r.err, err);
    assert_int_equal(f->w.metrics.upstream_connect_errors, 1);
    assert_int_equal(f->w.metrics.upstream_connections, 0);
}

/* A port nobody listens on: the refusal (on loopback connect() says
 * EINPROGRESS, then the socket has the error) arrives through the
 * callback. */
static void test_connect_refused_through_callback(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in dead = f->addr;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dead.sin_port = 0;
    socklen_t len = sizeof(dead);
    assert_int_equal(bind(s, (struct sockaddr *)&dead, sizeof(dead)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&dead, &len), 0);
    close(s); /* bound once, never listening: refused */
    expect_connect_error(f, &dead, ECONNREFUSED);
}

/* connect() itself failing (Linux refuses TCP to a broadcast address with
 * ENETUNREACH at once): still reported through the callback, later. */
static void test_connect_immediate_error_through_callback(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in bcast = f->addr;
    bcast.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    expect_connect_error(f, &bcast, ENETUNREACH);
}

/* Cancelled before it completes: no callback, nothing left behind. */
static void test_connect_cancelled(void **state)
{
    struct fixture *f = *state;
    struct connect_result r = {0};
    struct upconn *c = upconn_connect(f->pool, "sb10|127.0.0.1|80|", (struct sockaddr *)&f->addr,
                                      sizeof(f->addr), 2000, on_connect, &r);
    assert_non_null(c);
    upconn_close(c);
    struct timeval t = {0, 50000};
    event_base_loopexit(f->w.base, &t);
    event_base_dispatch(f->w.base);
    assert_false(r.called);
    int peer = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (peer != -1) { /* the kernel completed it: the client side is closed */
        struct pollfd p = {.fd = peer, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 2000), 1);
        assert_true(peer_sees_eof(peer));
        close(peer);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_connect_release_acquire),
        T(test_acquire_newest_first),
        T(test_keys_never_mix),
        cmocka_unit_test(test_pool_key),
        T(test_max_idle_respected),
        T(test_max_idle_one),
        T(test_peer_close_drops_pooled),
        T(test_idle_timeout_sweep),
        T(test_idle_timeout_real_time),
        T(test_release_while_draining_closes),
        T(test_connect_refused_through_callback),
        T(test_connect_immediate_error_through_callback),
        T(test_connect_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
