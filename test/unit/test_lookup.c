/* ingress/lookup.c, the route cache (redis/cache.c over redis/link.c with
 * route records), driven the way a worker drives it: a real event_base, a
 * minimal struct worker around a config and its Redis link, and a real
 * redis-server started per test on a free port (killed by pid at the end).
 * No mocks: what a test checks is what a request would get (status, record,
 * answered now or later), what Redis was asked (INFO commandstats) and what
 * /metrics would say (the worker's counters).
 *
 * Covered: miss then hit; the negative TTL; one GET for concurrent misses;
 * purge by PUBLISH; stale grace while Redis is stopped (SIGSTOP) or gone;
 * refresh-ahead in the last quarter of the TTL; eviction order (negative
 * entries first, then found ones, least recently used first); the bound
 * under random ids; new ids when every entry waits on Redis; deadlines of
 * many GETs in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/event.h>

#include "../redis_test.h"
#include "config.h"
#include "redis_link.h"
#include "log.h"
#include "lookup.h"
#include "route_rec.h"
#include "worker.h"

#define PUBLIC_RECORD "{\"address\":\"127.0.0.1\"}"

struct fixture {
    struct redis_server redis;
    struct config cfg;
    struct worker w;
    struct event *tick; /* keeps EVLOOP_ONCE from blocking */
    struct lookup *lk;
};

/* A request waiting for its answer. */
struct answer {
    struct lookup_waiter wt;
    int calls;
    int status;
    struct route_rec *rr;
};

static void set_record(struct fixture *f, const char *id, const char *json)
{
    redis_cmd(&f->redis, "SET sandbox:%s %s", id, json);
}

/* ---- the worker ---- */

static void run_for(struct fixture *f, int ms)
{
    loop_run_for(f->w.base, ms);
}

static void answer_cb(struct lookup_waiter *wt, int status, struct route_rec *rr)
{
    struct answer *a = (struct answer *)((char *)wt - offsetof(struct answer, wt));
    a->calls++;
    a->status = status;
    route_rec_unref(a->rr);
    a->rr = rr;
}

static void answer_clear(struct answer *a)
{
    route_rec_unref(a->rr);
    memset(a, 0, sizeof(*a));
    a->wt.cb = answer_cb;
}

/* lookup_get as route.c calls it: true when answered now (a->calls 1). */
static bool ask(struct fixture *f, const char *id, struct answer *a)
{
    answer_clear(a);
    int status;
    struct route_rec *rr;
    if (lookup_get(f->lk, id, &a->wt, &status, &rr) == 1)
        return false;
    answer_cb(&a->wt, status, rr);
    return true;
}

/* Runs the loop until `a` has its answer. */
static void await(struct fixture *f, struct answer *a, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (a->calls == 0) {
        if (now_ms() > end)
            fail_msg("no answer within %d ms", ms);
        event_base_loop(f->w.base, EVLOOP_ONCE);
    }
    assert_int_equal(a->calls, 1);
}

/* The answer to `id`, now or after waiting. */
static int lookup_status(struct fixture *f, const char *id, struct answer *a)
{
    if (!ask(f, id, a))
        await(f, a, 3000);
    return a->status;
}

/* A public record for id, in Redis and (one miss) in the cache. */
static void cache_found(struct fixture *f, const char *id)
{
    struct answer a = {0};
    set_record(f, id, PUBLIC_RECORD);
    assert_int_equal(lookup_status(f, id, &a), LOOKUP_FOUND);
    answer_clear(&a);
}

/* id is answered at once (from the cache) with this status. */
static void expect_now(struct fixture *f, const char *id, int status)
{
    struct answer a = {0};
    if (!ask(f, id, &a))
        fail_msg("%s: not answered at once", id);
    assert_int_equal(a.status, status);
    answer_clear(&a);
}

/* id is not in the cache: answered after a GET, with this status. */
static void expect_miss(struct fixture *f, const char *id, int status)
{
    struct answer a = {0};
    if (ask(f, id, &a))
        fail_msg("%s: answered at once, from the cache", id);
    await(f, &a, 3000);
    assert_int_equal(a.status, status);
    answer_clear(&a);
}

/* prefix<from> .. prefix<to - 1>: each looked up, a miss, with this status
 * (found ones get a public record first). */
static void cache_range(struct fixture *f, const char *prefix, int from, int to, int status)
{
    char id[32];
    for (int i = from; i < to; i++) {
        snprintf(id, sizeof(id), "%s%d", prefix, i);
        if (status == LOOKUP_FOUND)
            set_record(f, id, PUBLIC_RECORD);
        expect_miss(f, id, status);
    }
}

/* prefix<from> .. prefix<to - 1>: each answered at once with this status. */
static void expect_range_now(struct fixture *f, const char *prefix, int from, int to, int status)
{
    char id[32];
    for (int i = from; i < to; i++) {
        snprintf(id, sizeof(id), "%s%d", prefix, i);
        expect_now(f, id, status);
    }
}

static uint64_t metric(struct fixture *f, size_t offset)
{
    return *(const uint64_t *)((const char *)&f->w.metrics + offset);
}
#define METRIC(f, field) metric(f, offsetof(struct metrics, field))

static bool lookup_connected(struct fixture *f)
{
    return redis_link_connected(f->w.redis);
}

/* The lookup with the config as the test set it, both links up. */
static void start_lookup(struct fixture *f)
{
    f->w.redis = redis_link_new(&f->w);
    assert_non_null(f->w.redis);
    f->lk = lookup_new(&f->w);
    assert_non_null(f->lk);
    wait_link_up(&f->redis, &f->w);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    log_level_current = LOG_ERROR; /* timeouts and outages are the point */
    redis_start(&f->redis);
    f->tick = worker_shell_init(&f->w, &f->cfg, f->redis.port);
    f->cfg.cache_ttl_ms = 60000;
    f->cfg.cache_negative_ttl_ms = 60000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    lookup_free(f->lk);
    redis_link_free(f->w.redis);
    worker_shell_free(&f->w, &f->cfg, f->tick);
    redis_kill(&f->redis);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_miss_then_hit(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    start_lookup(f);
    set_record(f, "sb1", PUBLIC_RECORD);
    assert_false(ask(f, "sb1", &a)); /* a miss waits for Redis */
    await(f, &a, 3000);
    assert_int_equal(a.status, LOOKUP_FOUND);
    assert_non_null(a.rr);
    assert_string_equal(a.rr->rec->address, "127.0.0.1");
    assert_true(ask(f, "sb1", &a)); /* a hit answers at once */
    assert_int_equal(a.status, LOOKUP_FOUND);
    assert_string_equal(a.rr->rec->address, "127.0.0.1");
    assert_int_equal(gets_served(&f->redis), 1);
    assert_int_equal(METRIC(f, cache_misses), 1);
    assert_int_equal(METRIC(f, cache_hits), 1);
    assert_int_equal(METRIC(f, cache_entries), 1);
    answer_clear(&a);
}

static void test_negative_ttl(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0}, b = {0};
    f->cfg.cache_negative_ttl_ms = 300;
    start_lookup(f);
    assert_int_equal(lookup_status(f, "ghost", &a), LOOKUP_NOT_FOUND);
    /* Created now, but the "not found" is cached for negative_ttl_ms. */
    set_record(f, "ghost", PUBLIC_RECORD);
    expect_now(f, "ghost", LOOKUP_NOT_FOUND);
    assert_int_equal(gets_served(&f->redis), 1);
    /* Every "not found" is the same shared answer (memory per entry). */
    assert_int_equal(lookup_status(f, "ghost2", &b), LOOKUP_NOT_FOUND);
    assert_ptr_equal(a.rr, b.rr);
    run_for(f, 350);
    assert_false(ask(f, "ghost", &a));
    await(f, &a, 3000);
    assert_int_equal(a.status, LOOKUP_FOUND);
    assert_int_equal(gets_served(&f->redis), 3);
    answer_clear(&a);
    answer_clear(&b);
}

/* Concurrent misses for one id share one GET; every waiter is answered. */
static void test_single_flight(void **state)
{
    struct fixture *f = *state;
    struct answer a[3];
    memset(a, 0, sizeof(a));
    start_lookup(f);
    set_record(f, "busy", PUBLIC_RECORD);
    for (int i = 0; i < 3; i++)
        assert_false(ask(f, "busy", &a[i]));
    for (int i = 0; i < 3; i++) {
        await(f, &a[i], 3000);
        assert_int_equal(a[i].status, LOOKUP_FOUND);
    }
    assert_ptr_equal(a[0].rr, a[2].rr);
    assert_int_equal(gets_served(&f->redis), 1);
    assert_int_equal(METRIC(f, cache_entries), 1);
    /* A waiter that leaves (its client closed) is not called. */
    redis_cmd(&f->redis, "DEL sandbox:other");
    assert_false(ask(f, "other", &a[0]));
    assert_false(ask(f, "other", &a[1]));
    lookup_cancel(&a[0].wt);
    await(f, &a[1], 3000);
    run_for(f, 20);
    assert_int_equal(a[0].calls, 0);
    assert_int_equal(a[1].status, LOOKUP_NOT_FOUND);
    for (int i = 0; i < 3; i++)
        answer_clear(&a[i]);
}

static void test_purge_on_publish(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    start_lookup(f);
    cache_found(f, "moving");
    set_record(f, "moving", "{\"address\":\"127.0.0.2\"}");
    assert_true(ask(f, "moving", &a)); /* cached for 60 s */
    assert_string_equal(a.rr->rec->address, "127.0.0.1");
    assert_int_equal(redis_int(&f->redis, "PUBLISH sandbox:invalidate MOVING"), 1);
    run_for(f, 50); /* ids are lower-cased: MOVING purges "moving" */
    assert_false(ask(f, "moving", &a));
    await(f, &a, 3000);
    assert_string_equal(a.rr->rec->address, "127.0.0.2");
    assert_int_equal(gets_served(&f->redis), 2);
    answer_clear(&a);
}

/* Redis stopped (SIGSTOP: connections up, no answers): an expired found
 * record is served stale after redis.timeout_ms, an unknown id gets 503;
 * a stale one keeps being served at once while its GET is late. (Asked
 * right after the stop: the heartbeat, which also drops a link after
 * redis.timeout_ms without an answer, cannot act before the GETs' own
 * deadline.) */
static void test_stale_grace_redis_stopped(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0}, b = {0};
    f->cfg.cache_ttl_ms = 200;
    f->cfg.cache_stale_grace_ms = 60000;
    f->cfg.redis_timeout_ms = 300;
    start_lookup(f);
    cache_found(f, "kept");
    run_for(f, 250); /* expired */
    kill(f->redis.pid, SIGSTOP);
    uint64_t t0 = now_ms();
    assert_false(ask(f, "kept", &a));
    assert_false(ask(f, "unknown", &b));
    await(f, &a, 2000);
    await(f, &b, 2000);
    uint64_t waited = now_ms() - t0;
    assert_true(waited >= 280 && waited < 1000);
    assert_int_equal(a.status, LOOKUP_FOUND);
    assert_string_equal(a.rr->rec->address, "127.0.0.1");
    assert_int_equal(b.status, LOOKUP_UNAVAILABLE);
    assert_null(b.rr);
    /* Its GET is late: the next request does not wait again. */
    expect_now(f, "kept", LOOKUP_FOUND);
    kill(f->redis.pid, SIGCONT);
    run_for(f, 100);
    assert_int_equal(lookup_status(f, "kept", &a), LOOKUP_FOUND);
    answer_clear(&a);
    answer_clear(&b);
}

/* Redis gone: stale found records answer at once within the grace, then
 * 503; unknown ids get 503 at once. */
static void test_stale_grace_redis_gone(void **state)
{
    struct fixture *f = *state;
    f->cfg.cache_ttl_ms = 100;
    f->cfg.cache_stale_grace_ms = 600;
    start_lookup(f);
    cache_found(f, "kept");
    redis_kill(&f->redis);
    run_for(f, 150); /* expired, and the loss seen */
    assert_false(lookup_connected(f));
    expect_now(f, "kept", LOOKUP_FOUND);
    expect_now(f, "unknown", LOOKUP_UNAVAILABLE);
    run_for(f, 600); /* past TTL + grace */
    expect_now(f, "kept", LOOKUP_UNAVAILABLE);
}

/* In the last quarter of the TTL a hit answers at once and re-reads the
 * record in the background: no request ever waits at expiry. */
static void test_refresh_ahead(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    f->cfg.cache_ttl_ms = 400;
    start_lookup(f);
    cache_found(f, "hot");
    set_record(f, "hot", "{\"address\":\"127.0.0.2\"}");
    run_for(f, 200); /* before the last quarter: plain hits */
    assert_true(ask(f, "hot", &a));
    assert_int_equal(gets_served(&f->redis), 1);
    run_for(f, 120); /* 320 ms: in the last quarter */
    assert_true(ask(f, "hot", &a));
    assert_string_equal(a.rr->rec->address, "127.0.0.1");
    run_for(f, 50);
    assert_int_equal(gets_served(&f->redis), 2);
    assert_true(ask(f, "hot", &a)); /* the refreshed record, still a hit */
    assert_string_equal(a.rr->rec->address, "127.0.0.2");
    assert_int_equal(METRIC(f, cache_misses), 1);
    answer_clear(&a);
}

/* With the cache full, a new id pushes out the least recently used
 * negative entry even when found ones are older; without negative entries,
 * the least recently used found one. */
static void test_eviction_order(void **state)
{
    struct fixture *f = *state;
    f->cfg.cache_max_entries = 16;
    start_lookup(f);
    cache_range(f, "found", 0, 8, LOOKUP_FOUND);
    cache_range(f, "neg", 0, 8, LOOKUP_NOT_FOUND);
    assert_int_equal(METRIC(f, cache_entries), 16);
    assert_int_equal(METRIC(f, cache_evictions), 0);
    /* neg0 used again: neg1 is now the least recently used negative. */
    expect_now(f, "neg0", LOOKUP_NOT_FOUND);
    cache_range(f, "new", 0, 1, LOOKUP_NOT_FOUND);
    assert_int_equal(METRIC(f, cache_evictions), 1);
    assert_int_equal(METRIC(f, cache_entries), 16);
    expect_now(f, "neg0", LOOKUP_NOT_FOUND);
    expect_range_now(f, "found", 0, 8, LOOKUP_FOUND); /* older, but found */
    expect_range_now(f, "neg", 2, 8, LOOKUP_NOT_FOUND);
    expect_miss(f, "neg1", LOOKUP_NOT_FOUND); /* it went */
    /* That re-added neg1 and pushed out the least recently used negative,
     * new0. Now 16 new found ids: every negative goes first, then the
     * found ones from before. */
    cache_range(f, "pos", 0, 16, LOOKUP_FOUND);
    assert_int_equal(METRIC(f, cache_entries), 16);
    expect_range_now(f, "pos", 0, 16, LOOKUP_FOUND);
    expect_now(f, "pos0", LOOKUP_FOUND); /* pos1 is the LRU now */
    cache_found(f, "pos16");
    expect_now(f, "pos0", LOOKUP_FOUND);
    expect_range_now(f, "pos", 2, 17, LOOKUP_FOUND);
    expect_miss(f, "pos1", LOOKUP_FOUND);
}

/* Random ids never grow the cache past the cap. */
static void test_cap_under_random_ids(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    char id[32];
    enum { CAP = 64, N = 2000 };
    f->cfg.cache_max_entries = CAP;
    start_lookup(f);
    cache_found(f, "known");
    srandom(1);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "r%08lx%08lx", random(), random());
        assert_int_equal(lookup_status(f, id, &a), LOOKUP_NOT_FOUND);
        assert_true(METRIC(f, cache_entries) <= CAP);
    }
    assert_int_equal(METRIC(f, cache_entries), CAP);
    assert_int_equal(METRIC(f, cache_evictions), N + 1 - CAP);
    assert_true(ask(f, "known", &a)); /* found entries go last */
    assert_int_equal(a.status, LOOKUP_FOUND);
    answer_clear(&a);
}

/* Every entry waiting on a stopped Redis: they are not evicted (their
 * waiters are owed an answer), and a new id gets 503 at once. */
static void test_full_of_lookups_in_flight(void **state)
{
    struct fixture *f = *state;
    struct answer a[16], x = {0};
    memset(a, 0, sizeof(a));
    char id[32];
    f->cfg.cache_max_entries = 16;
    f->cfg.redis_timeout_ms = 5000;
    start_lookup(f);
    kill(f->redis.pid, SIGSTOP);
    for (int i = 0; i < 16; i++) {
        snprintf(id, sizeof(id), "wait%d", i);
        assert_false(ask(f, id, &a[i]));
    }
    assert_true(ask(f, "onetoomany", &x));
    assert_int_equal(x.status, LOOKUP_UNAVAILABLE);
    assert_int_equal(METRIC(f, cache_full), 1);
    assert_int_equal(METRIC(f, cache_evictions), 0);
    assert_int_equal(METRIC(f, cache_entries), 16);
    kill(f->redis.pid, SIGCONT);
    for (int i = 0; i < 16; i++) {
        await(f, &a[i], 3000);
        assert_int_equal(a[i].status, LOOKUP_NOT_FOUND);
    }
    /* Answered, so idle: now a new id evicts one. */
    assert_int_equal(lookup_status(f, "onetoomany", &x), LOOKUP_NOT_FOUND);
    assert_int_equal(METRIC(f, cache_evictions), 1);
    for (int i = 0; i < 16; i++)
        answer_clear(&a[i]);
    answer_clear(&x);
}

/* A waiter's callback may look up new ids (route.c: the next pipelined
 * request) and so evict the very entry being answered: the waiters after
 * it still get its record. */
struct evicting_answer {
    struct answer a;
    struct fixture *f;
    struct answer more[16];
};

static void evicting_cb(struct lookup_waiter *wt, int status, struct route_rec *rr)
{
    struct evicting_answer *ea =
        (struct evicting_answer *)((char *)wt - offsetof(struct evicting_answer, a.wt));
    char id[32];
    ea->a.calls++;
    ea->a.status = status;
    route_rec_unref(rr); /* replied and done, like a session that closed */
    for (int i = 0; i < 16; i++) {
        snprintf(id, sizeof(id), "evict%d", i);
        assert_false(ask(ea->f, id, &ea->more[i]));
    }
}

static void test_answer_outlives_eviction(void **state)
{
    struct fixture *f = *state;
    struct evicting_answer ea;
    struct answer b = {0};
    char id[32];
    memset(&ea, 0, sizeof(ea));
    ea.f = f;
    f->cfg.cache_max_entries = 16;
    start_lookup(f);
    for (int i = 0; i < 15; i++) {
        snprintf(id, sizeof(id), "filler%d", i);
        cache_found(f, id);
    }
    set_record(f, "target", PUBLIC_RECORD);
    int status;
    struct route_rec *rr;
    ea.a.wt.cb = evicting_cb;
    assert_int_equal(lookup_get(f->lk, "target", &ea.a.wt, &status, &rr), 1);
    assert_false(ask(f, "target", &b)); /* the second waiter of one GET */
    await(f, &b, 3000);
    assert_int_equal(ea.a.calls, 1);
    assert_int_equal(b.status, LOOKUP_FOUND);
    assert_string_equal(b.rr->rec->address, "127.0.0.1");
    /* The 16 new ids pushed out the 15 fillers and then "target". */
    assert_int_equal(METRIC(f, cache_evictions), 16);
    for (int i = 0; i < 16; i++) {
        await(f, &ea.more[i], 3000);
        assert_int_equal(ea.more[i].status, LOOKUP_NOT_FOUND);
        answer_clear(&ea.more[i]);
    }
    answer_clear(&b);
    assert_false(ask(f, "target", &b));
    await(f, &b, 3000);
    answer_clear(&b);
}

/* One timer serves every GET in flight: two GETs sent together are both
 * answered at their deadline, a third sent 100 ms later at its own. (Three
 * timeouts in a row then drop the link, which would answer everything left:
 * hence three.) */
static void test_deadlines_share_one_timer(void **state)
{
    struct fixture *f = *state;
    struct answer a[3];
    memset(a, 0, sizeof(a));
    uint64_t at[3];
    f->cfg.redis_timeout_ms = 300;
    start_lookup(f);
    kill(f->redis.pid, SIGSTOP);
    uint64_t t0 = now_ms();
    assert_false(ask(f, "late0", &a[0]));
    assert_false(ask(f, "late1", &a[1]));
    run_for(f, 100);
    assert_false(ask(f, "late2", &a[2]));
    for (int i = 0; i < 3; i++) {
        await(f, &a[i], 2000);
        at[i] = now_ms() - t0;
        assert_int_equal(a[i].status, LOOKUP_UNAVAILABLE);
    }
    /* 300 ms after each GET (coarse clocks: a few ms either way). Without
     * the timer re-armed for the third, only the heartbeat would answer it,
     * 500 to 1000 ms after the stop. */
    assert_true(at[0] >= 280 && at[1] < at[2]);
    assert_true(at[2] >= 380 && at[2] < 490);
    assert_true(METRIC(f, redis_errors) >= 3);
    kill(f->redis.pid, SIGCONT);
    for (int i = 0; i < 3; i++)
        answer_clear(&a[i]);
}

/* Each test gets its own redis-server and lookup. */
#define WITH_REDIS(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        WITH_REDIS(test_miss_then_hit),
        WITH_REDIS(test_negative_ttl),
        WITH_REDIS(test_single_flight),
        WITH_REDIS(test_purge_on_publish),
        WITH_REDIS(test_stale_grace_redis_stopped),
        WITH_REDIS(test_stale_grace_redis_gone),
        WITH_REDIS(test_refresh_ahead),
        WITH_REDIS(test_eviction_order),
        WITH_REDIS(test_cap_under_random_ids),
        WITH_REDIS(test_full_of_lookups_in_flight),
        WITH_REDIS(test_answer_outlives_eviction),
        WITH_REDIS(test_deadlines_share_one_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
