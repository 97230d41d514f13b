/* redis/cache.c on its own, with a record type that is not a route: a
 * "toy" record is the string "ok:<n>" (anything else is broken), its value
 * a reference-counted struct toy. Two instances share one redis_link, as
 * sandbox routes and egress policies will: "toy" under the namespace
 * "toy:" (keys sandbox:toy:<id>, purged by PUBLISH sandbox:invalidate
 * toy:<id>) and "bare" under "" (keys sandbox:<id>, purged by a bare id, as
 * sandbox routes are). A real event_base and a real redis-server per test
 * (test/redis_test.h); what a test checks is what a caller would get
 * (status, value, now or later), what Redis was asked (INFO commandstats)
 * and what the instance counted.
 *
 * Covered: TTL; negative TTL for "not found" and broken records; one GET for concurrent misses; purges reaching only their own
 * namespace; the bound (negative entries first, least recently used first,
 * a lowered bound); refresh-ahead turned off; freeing an instance whose
 * GETs are still in flight; revalidation after a resubscription; lookups
 * counted by outcome; every value released at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <event2/event.h>

#include "../redis_test.h"
#include "cache.h"
#include "config.h"
#include "errf.h"
#include "redis_link.h"
#include "log.h"
#include "worker.h"

/* ---- the toy record type ---- */

struct toy {
    int refs;
    long n;
};

static int toys_live; /* allocated and not yet released */

/* "ok:<1 to 9 digits>" -> a toy holding n. */
static int toy_parse(const char *id, const char *bytes, size_t len, void **value, char *err,
                     size_t errlen)
{
    long n = 0;
    if (len < 4 || len > 12 || memcmp(bytes, "ok:", 3) != 0)
        return errf(err, errlen, "not ok:<n>"), CACHE_BROKEN;
    for (size_t i = 3; i < len; i++) {
        if (!isdigit((unsigned char)bytes[i]))
            return errf(err, errlen, "not a number at byte %zu", i), CACHE_BROKEN;
        n = n * 10 + (bytes[i] - '0');
    }
    struct toy *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    t->refs = 1;
    t->n = n;
    toys_live++;
    *value = t;
    return CACHE_FOUND;
}

static void *toy_ref(void *value)
{
    ((struct toy *)value)->refs++;
    return value;
}

static void toy_unref(void *value)
{
    struct toy *t = value;
    if (t && --t->refs == 0) {
        free(t);
        toys_live--;
    }
}

static const struct cache_desc toy_desc = {
    .name = "toy",
    .ns = "toy:",
    .id_max = 32,
    .parse = toy_parse,
    .ref = toy_ref,
    .unref = toy_unref,
};

/* The same type under the bare namespace (as sandbox routes). */
static const struct cache_desc bare_desc = {
    .name = "bare",
    .ns = "",
    .id_max = 32,
    .parse = toy_parse,
    .ref = toy_ref,
    .unref = toy_unref,
};

/* ---- the fixture ---- */

struct fixture {
    struct redis_server redis;
    struct config cfg;          /* redis.* for the link */
    struct worker w;            /* what the link runs in */
    struct event *tick;         /* keeps EVLOOP_ONCE from blocking */
    struct cache_params params; /* as the test sets them before start() */
    /* The toy instance's counters (the bare one counts nothing). */
    uint64_t hits, misses, evictions, full;
    uint64_t lookups[CACHE_OUTCOMES];
    int64_t entries;
    struct cache *toy, *bare;
};

/* A caller waiting for its answer. */
struct answer {
    struct cache_waiter wt;
    int calls;
    int status;
    struct toy *t;
};

static void run_for(struct fixture *f, int ms)
{
    loop_run_for(f->w.base, ms);
}

static void answer_cb(struct cache_waiter *wt, int status, void *value)
{
    struct answer *a = container_of(wt, struct answer, wt);
    a->calls++;
    a->status = status;
    toy_unref(a->t);
    a->t = value;
}

static void answer_clear(struct answer *a)
{
    toy_unref(a->t);
    memset(a, 0, sizeof(*a));
    a->wt.cb = answer_cb;
}

/* cache_get: true when answered now (a->calls 1). */
static bool ask(struct cache *c, const char *id, struct answer *a)
{
    int status;
    void *value;
    answer_clear(a);
    if (cache_get(c, id, &a->wt, &status, &value) == 1)
        return false;
    answer_cb(&a->wt, status, value);
    return true;
}

static void await(struct fixture *f, struct answer *a)
{
    uint64_t end = now_ms() + 3000;
    while (a->calls == 0) {
        if (now_ms() > end)
            fail_msg("no answer within 3 s");
        event_base_loop(f->w.base, EVLOOP_ONCE);
    }
    assert_int_equal(a->calls, 1);
}

/* The toy's n, or -1 without one. */
static long n_of(const struct answer *a)
{
    return a->t ? a->t->n : -1;
}

/* id is answered at once (from the cache): status, and n when found. */
static void expect_now(struct cache *c, const char *id, int status, long n)
{
    struct answer a = {0};
    if (!ask(c, id, &a))
        fail_msg("%s: not answered at once", id);
    assert_int_equal(a.status, status);
    assert_int_equal(n_of(&a), n);
    answer_clear(&a);
}

/* id is not in the cache: answered after a GET. */
static void expect_miss(struct fixture *f, struct cache *c, const char *id, int status, long n)
{
    struct answer a = {0};
    if (ask(c, id, &a))
        fail_msg("%s: answered at once, from the cache", id);
    await(f, &a);
    assert_int_equal(a.status, status);
    assert_int_equal(n_of(&a), n);
    answer_clear(&a);
}

/* Both instances on one link, the link set up and subscribed. */
static void start(struct fixture *f)
{
    struct cache_counters counters = {
        .hits = &f->hits,
        .misses = &f->misses,
        .entries = &f->entries,
        .evictions = &f->evictions,
        .full = &f->full,
        .lookups = f->lookups,
    };
    f->w.redis = redis_link_new(&f->w);
    assert_non_null(f->w.redis);
    /* The bare one first, as a worker attaches its route cache before any
     * other: a message for "toy:" must still find "toy". */
    f->bare = cache_new(f->w.base, f->w.redis, &bare_desc, &f->params, NULL);
    f->toy = cache_new(f->w.base, f->w.redis, &toy_desc, &f->params, &counters);
    assert_non_null(f->toy);
    assert_non_null(f->bare);
    wait_link_up(&f->redis, &f->w);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    log_level_current = LOG_ERROR; /* broken records and outages are the point */
    redis_start(&f->redis);
    f->tick = worker_shell_init(&f->w, &f->cfg, f->redis.port);
    f->params = (struct cache_params){
        .ttl_ms = 60000,
        .negative_ttl_ms = 60000,
        .stale_grace_ms = 0,
        .refresh_ahead = true,
        .max_entries = 1000,
    };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cache_free(f->toy);
    assert_int_equal(f->entries, 0); /* the gauge follows the entries out */
    cache_free(f->bare);
    redis_link_free(f->w.redis);
    assert_int_equal(toys_live, 0); /* every reference given back */
    worker_shell_free(&f->w, &f->cfg, f->tick);
    redis_kill(&f->redis);
    free(f);
    return 0;
}

/* ---- tests ---- */

/* A found record answers from the cache for ttl_ms, then Redis is asked
 * again; the key is <key_prefix><ns><id>. */
static void test_ttl(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    f->params.ttl_ms = 300;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:a ok:1");
    assert_false(ask(f->toy, "a", &a)); /* a miss waits for Redis */
    await(f, &a);
    assert_int_equal(a.status, CACHE_FOUND);
    assert_int_equal(n_of(&a), 1);
    redis_cmd(&f->redis, "SET sandbox:toy:a ok:2");
    expect_now(f->toy, "a", CACHE_FOUND, 1); /* cached */
    assert_int_equal(gets_served(&f->redis), 1);
    assert_int_equal(f->misses, 1);
    assert_int_equal(f->hits, 1);
    assert_int_equal(f->entries, 1);
    run_for(f, 350); /* expired */
    expect_miss(f, f->toy, "a", CACHE_FOUND, 2);
    assert_int_equal(gets_served(&f->redis), 2);
    /* sandbox:a is another key: the bare instance finds nothing there. */
    expect_miss(f, f->bare, "a", CACHE_NOT_FOUND, -1);
    answer_clear(&a);
}

/* "Not found" and broken records carry no value and are cached for
 * negative_ttl_ms, whatever ttl_ms says. */
static void test_negative_ttl(void **state)
{
    struct fixture *f = *state;
    f->params.negative_ttl_ms = 300;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:bad nope");
    expect_miss(f, f->toy, "none", CACHE_NOT_FOUND, -1);
    expect_miss(f, f->toy, "bad", CACHE_BROKEN, -1);
    redis_cmd(&f->redis, "SET sandbox:toy:none ok:5");
    redis_cmd(&f->redis, "SET sandbox:toy:bad ok:6");
    expect_now(f->toy, "none", CACHE_NOT_FOUND, -1);
    expect_now(f->toy, "bad", CACHE_BROKEN, -1);
    assert_int_equal(gets_served(&f->redis), 2);
    run_for(f, 350);
    expect_miss(f, f->toy, "none", CACHE_FOUND, 5);
    expect_miss(f, f->toy, "bad", CACHE_FOUND, 6);
    assert_int_equal(gets_served(&f->redis), 4);
    /* Found records keep ttl_ms (60 s here). */
    run_for(f, 350);
    expect_now(f->toy, "none", CACHE_FOUND, 5);
}

/* Concurrent misses for one id share one GET, and one value. */
static void test_single_flight(void **state)
{
    struct fixture *f = *state;
    struct answer a[3];
    memset(a, 0, sizeof(a));
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:busy ok:7");
    for (int i = 0; i < 3; i++)
        assert_false(ask(f->toy, "busy", &a[i]));
    for (int i = 0; i < 3; i++) {
        await(f, &a[i]);
        assert_int_equal(a[i].status, CACHE_FOUND);
        assert_ptr_equal(a[i].t, a[0].t);
    }
    assert_int_equal(a[0].t->n, 7);
    assert_int_equal(a[0].t->refs, 4); /* the cache's and one per answer */
    assert_int_equal(gets_served(&f->redis), 1);
    assert_int_equal(f->entries, 1);
    assert_int_equal(toys_live, 1);
    for (int i = 0; i < 3; i++)
        answer_clear(&a[i]);
}

/* PUBLISH <prefix>invalidate <ns><id> purges id in the instance of that
 * namespace only; a bare id purges in the "" instance (today's messages);
 * a namespace nobody has purges nothing. */
static void test_purge_namespaces(void **state)
{
    struct fixture *f = *state;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:abc ok:1");
    redis_cmd(&f->redis, "SET sandbox:abc ok:1");
    expect_miss(f, f->toy, "abc", CACHE_FOUND, 1);
    expect_miss(f, f->bare, "abc", CACHE_FOUND, 1);
    redis_cmd(&f->redis, "SET sandbox:toy:abc ok:2");
    redis_cmd(&f->redis, "SET sandbox:abc ok:2");

    assert_int_equal(redis_int(&f->redis, "PUBLISH sandbox:invalidate egress:abc"), 1);
    run_for(f, 50);
    expect_now(f->toy, "abc", CACHE_FOUND, 1);
    expect_now(f->bare, "abc", CACHE_FOUND, 1);

    assert_int_equal(redis_int(&f->redis, "PUBLISH sandbox:invalidate toy:ABC"), 1);
    run_for(f, 50); /* ids are lower-cased: ABC purges "abc" */
    expect_miss(f, f->toy, "abc", CACHE_FOUND, 2);
    expect_now(f->bare, "abc", CACHE_FOUND, 1);

    assert_int_equal(redis_int(&f->redis, "PUBLISH sandbox:invalidate abc"), 1);
    run_for(f, 50);
    expect_miss(f, f->bare, "abc", CACHE_FOUND, 2);
    expect_now(f->toy, "abc", CACHE_FOUND, 2);
    assert_int_equal(gets_served(&f->redis), 4);
}

/* At most max_entries ids: a new one pushes out the least recently used
 * negative entry even when found ones are older, then found ones, least
 * recently used first; a lowered bound applies as new ids come. */
static void test_bound_eviction(void **state)
{
    struct fixture *f = *state;
    f->params.max_entries = 4;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:f0 ok:0");
    redis_cmd(&f->redis, "SET sandbox:toy:f1 ok:1");
    redis_cmd(&f->redis, "SET sandbox:toy:f2 ok:2");
    redis_cmd(&f->redis, "SET sandbox:toy:f3 ok:3");
    expect_miss(f, f->toy, "f0", CACHE_FOUND, 0);
    expect_miss(f, f->toy, "f1", CACHE_FOUND, 1);
    expect_miss(f, f->toy, "n0", CACHE_NOT_FOUND, -1);
    expect_miss(f, f->toy, "n1", CACHE_NOT_FOUND, -1);
    assert_int_equal(f->entries, 4);
    expect_now(f->toy, "n0", CACHE_NOT_FOUND, -1); /* n1 is the LRU negative */
    expect_miss(f, f->toy, "x0", CACHE_NOT_FOUND, -1);
    assert_int_equal(f->evictions, 1);
    assert_int_equal(f->entries, 4);
    expect_now(f->toy, "f0", CACHE_FOUND, 0); /* older, but found */
    expect_now(f->toy, "f1", CACHE_FOUND, 1);
    expect_now(f->toy, "n0", CACHE_NOT_FOUND, -1);
    expect_now(f->toy, "x0", CACHE_NOT_FOUND, -1);
    expect_miss(f, f->toy, "n1", CACHE_NOT_FOUND, -1); /* it went; n0 goes now */
    assert_int_equal(f->evictions, 2);

    /* A reload lowers the bound to 3: the next new id makes room for
     * itself under it, negative entries first (x0, n1). */
    struct cache_params p = f->params;
    p.max_entries = 3;
    cache_set_params(f->toy, &p);
    expect_miss(f, f->toy, "f2", CACHE_FOUND, 2);
    assert_int_equal(f->evictions, 4);
    assert_int_equal(f->entries, 3);
    /* Only found entries left: the least recently used goes (f1). */
    expect_now(f->toy, "f0", CACHE_FOUND, 0);
    expect_miss(f, f->toy, "f3", CACHE_FOUND, 3);
    assert_int_equal(f->evictions, 5);
    expect_now(f->toy, "f0", CACHE_FOUND, 0);
    expect_now(f->toy, "f2", CACHE_FOUND, 2);
    expect_now(f->toy, "f3", CACHE_FOUND, 3);
    expect_miss(f, f->toy, "f1", CACHE_FOUND, 1);
    assert_int_equal(f->full, 0);
}

/* refresh_ahead off: a hit in the last quarter of the TTL does not re-read
 * the record; the first request after expiry waits for Redis. */
static void test_no_refresh_ahead(void **state)
{
    struct fixture *f = *state;
    f->params.ttl_ms = 400;
    f->params.refresh_ahead = false;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:hot ok:1");
    expect_miss(f, f->toy, "hot", CACHE_FOUND, 1);
    run_for(f, 320); /* in the last quarter */
    expect_now(f->toy, "hot", CACHE_FOUND, 1);
    run_for(f, 50);
    assert_int_equal(gets_served(&f->redis), 1);
    run_for(f, 80); /* expired */
    expect_miss(f, f->toy, "hot", CACHE_FOUND, 1);
    assert_int_equal(gets_served(&f->redis), 2);
}

/* An instance freed while hiredis holds its GETs: the entries are freed
 * when the reply comes, or when the link goes first; their waiters are
 * never called. (ASan's leak check and use-after-free checks are the
 * judges here.) */
static void test_free_with_gets_in_flight(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0}, b = {0};
    f->cfg.redis_timeout_ms = 5000;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:x ok:1");
    kill(f->redis.pid, SIGSTOP);
    assert_false(ask(f->toy, "x", &a));
    cache_free(f->toy);
    f->toy = NULL;
    assert_int_equal(f->entries, 0);
    kill(f->redis.pid, SIGCONT);
    run_for(f, 100); /* the reply comes to an entry without a cache */
    assert_int_equal(a.calls, 0);
    assert_int_equal(gets_served(&f->redis), 1);

    kill(f->redis.pid, SIGSTOP);
    assert_false(ask(f->bare, "y", &b));
    cache_free(f->bare);
    f->bare = NULL;
    redis_link_free(f->w.redis); /* calls the GET back without a reply */
    f->w.redis = NULL;
    kill(f->redis.pid, SIGCONT);
    assert_int_equal(b.calls, 0);
}

/* The link's subscriber connection is cut and comes back: purges published
 * meanwhile are lost, so everything cached is revalidated, the way SPEC 10
 * wants a failover handled: nothing is fetched by the resubscription
 * itself (no GET storm across the whole cache), a found record keeps
 * answering at once while one GET re-reads it in the background (single
 * flight: every hit until the answer shares it), and the next hits see the
 * new value; a "not found" is asked again on its next use. */
static void test_revalidate_after_resubscribe(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:a ok:1");
    redis_cmd(&f->redis, "SET sandbox:toy:b ok:2");
    expect_miss(f, f->toy, "a", CACHE_FOUND, 1);
    expect_miss(f, f->toy, "b", CACHE_FOUND, 2);
    expect_miss(f, f->toy, "none", CACHE_NOT_FOUND, -1);
    /* Changed while the subscriber is away: the PUBLISH reaches nobody. */
    redis_cmd(&f->redis, "CLIENT KILL TYPE pubsub");
    redis_cmd(&f->redis, "SET sandbox:toy:a ok:11");
    redis_cmd(&f->redis, "SET sandbox:toy:none ok:12");
    assert_int_equal(redis_int(&f->redis, "PUBLISH sandbox:invalidate toy:a"), 0);
    uint64_t end = now_ms() + 3000;
    while (redis_int(&f->redis, "PUBSUB NUMSUB sandbox:invalidate") < 1) {
        if (now_ms() > end)
            fail_msg("the subscriber did not come back");
        run_for(f, 5);
    }
    run_for(f, 50); /* its confirmation read */
    redis_cmd(&f->redis, "CONFIG RESETSTAT");
    run_for(f, 100);
    assert_int_equal(gets_served(&f->redis), 0); /* nothing fetched by itself */

    /* Hits: answered at once with what is cached, one GET between them. */
    expect_now(f->toy, "a", CACHE_FOUND, 1);
    expect_now(f->toy, "a", CACHE_FOUND, 1);
    expect_now(f->toy, "a", CACHE_FOUND, 1);
    run_for(f, 50);
    assert_int_equal(gets_served(&f->redis), 1);
    expect_now(f->toy, "a", CACHE_FOUND, 11); /* re-read */
    expect_now(f->toy, "b", CACHE_FOUND, 2);  /* same value, re-read once */
    run_for(f, 50);
    expect_now(f->toy, "b", CACHE_FOUND, 2);
    expect_now(f->toy, "a", CACHE_FOUND, 11);
    run_for(f, 50);
    assert_int_equal(gets_served(&f->redis), 2);
    /* A negative answer is asked again: it waits for the GET. */
    assert_false(ask(f->toy, "none", &a));
    await(f, &a);
    assert_int_equal(a.status, CACHE_FOUND);
    assert_int_equal(n_of(&a), 12);
    assert_int_equal(gets_served(&f->redis), 3);
    answer_clear(&a);
}

/* What each caller got, by outcome (edgeproxy_route_lookups_total). */
static void test_lookup_outcomes(void **state)
{
    struct fixture *f = *state;
    f->params.ttl_ms = 200;
    f->params.stale_grace_ms = 60000;
    start(f);
    redis_cmd(&f->redis, "SET sandbox:toy:a ok:1");
    redis_cmd(&f->redis, "SET sandbox:toy:bad nope");
    expect_miss(f, f->toy, "a", CACHE_FOUND, 1);         /* miss */
    expect_now(f->toy, "a", CACHE_FOUND, 1);             /* hit */
    expect_miss(f, f->toy, "none", CACHE_NOT_FOUND, -1); /* not found */
    expect_now(f->toy, "none", CACHE_NOT_FOUND, -1);     /* not found */
    expect_miss(f, f->toy, "bad", CACHE_BROKEN, -1);     /* broken */
    run_for(f, 250);
    redis_kill(&f->redis);
    run_for(f, 50);
    expect_now(f->toy, "a", CACHE_FOUND, 1);            /* stale */
    expect_now(f->toy, "other", CACHE_UNAVAILABLE, -1); /* error */
    assert_int_equal(f->lookups[CACHE_OUT_MISS], 1);
    assert_int_equal(f->lookups[CACHE_OUT_HIT], 1);
    assert_int_equal(f->lookups[CACHE_OUT_NOT_FOUND], 2);
    assert_int_equal(f->lookups[CACHE_OUT_BROKEN], 1);
    assert_int_equal(f->lookups[CACHE_OUT_STALE], 1);
    assert_int_equal(f->lookups[CACHE_OUT_ERROR], 1);
}

#define WITH_REDIS(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        WITH_REDIS(test_ttl),
        WITH_REDIS(test_negative_ttl),
        WITH_REDIS(test_single_flight),
        WITH_REDIS(test_purge_namespaces),
        WITH_REDIS(test_bound_eviction),
        WITH_REDIS(test_no_refresh_ahead),
        WITH_REDIS(test_free_with_gets_in_flight),
        WITH_REDIS(test_revalidate_after_resubscribe),
        WITH_REDIS(test_lookup_outcomes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
