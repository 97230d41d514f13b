/* ingress/conn_limit.c: the maxConnections counters every worker shares.
 * acquire/release up to max, one counter per sandbox id shared by all its
 * references, the last unref frees it (a later ref starts from zero), and
 * acquire from several threads at once never lets more than max in. Real
 * threads, no stubs. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "conn_limit.h"
#include "host.h"
#include "timeutil.h"

/* How many of `tries` acquires succeed (none released). */
static unsigned take(struct conn_limit *l, uint32_t max, unsigned tries)
{
    unsigned got = 0;
    for (unsigned i = 0; i < tries; i++)
        got += limits_acquire(l, max);
    return got;
}

static void give_back(struct conn_limit *l, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        limits_release(l);
}

static void test_acquire_up_to_max_then_release(void **state)
{
    struct conn_limit *l = limits_ref("cl-max");
    assert_non_null(l);
    assert_true(limits_acquire(l, 3));
    assert_true(limits_acquire(l, 3));
    assert_true(limits_acquire(l, 3));
    assert_false(limits_acquire(l, 3)); /* the 4th is refused */
    assert_false(limits_acquire(l, 3));
    limits_release(l);
    assert_true(limits_acquire(l, 3)); /* a released slot is free again */
    assert_false(limits_acquire(l, 3));
    /* A raised limit (record reloaded) lets more in at once; a lowered one
   * refuses until enough are released. */
    assert_true(limits_acquire(l, 4));
    assert_false(limits_acquire(l, 2));
    give_back(l, 3);
    assert_false(limits_acquire(l, 1)); /* one still held */
    give_back(l, 1);
    assert_true(limits_acquire(l, 1));
    give_back(l, 1);
    limits_unref(l);
}

static void test_max_zero_refuses_everything(void **state)
{
    struct conn_limit *l = limits_ref("cl-zero");
    assert_non_null(l);
    assert_false(limits_acquire(l, 0));
    limits_unref(l);
}

static void test_refs_share_one_counter_per_sandbox(void **state)
{
    struct conn_limit *a1 = limits_ref("cl-shared-a");
    struct conn_limit *a2 = limits_ref("cl-shared-a");
    struct conn_limit *b = limits_ref("cl-shared-b");
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    assert_int_equal(take(a1, 2, 2), 2);
    assert_false(limits_acquire(a2, 2)); /* the same sandbox: full */
    assert_int_equal(take(b, 2, 2), 2);  /* another sandbox: its own */
    give_back(a2, 1);
    assert_true(limits_acquire(a1, 2));
    /* Ids that collide in no way but share a prefix stay apart. */
    struct conn_limit *longer = limits_ref("cl-shared-ab");
    assert_ptr_not_equal(longer, a1);
    assert_true(limits_acquire(longer, 1));
    give_back(longer, 1);
    give_back(a1, 2);
    give_back(b, 2);
    limits_unref(longer);
    limits_unref(b);
    limits_unref(a2);
    limits_unref(a1);
    limits_unref(NULL); /* no-op */
}

static void test_longest_id(void **state)
{
    char id[HOST_ID_MAX + 1];
    for (int i = 0; i < HOST_ID_MAX; i++)
        id[i] = (char)('a' + i % 26);
    id[HOST_ID_MAX] = '\0';
    struct conn_limit *l1 = limits_ref(id), *l2 = limits_ref(id);
    assert_non_null(l1);
    assert_ptr_equal(l1, l2);
    limits_unref(l2);
    limits_unref(l1);
}

/* The entry lives while any reference does; after the last unref a new
 * reference gets a fresh counter (an entry kept by mistake would still count
 * the two slots taken here). */
static void test_last_unref_frees(void **state)
{
    struct conn_limit *l = limits_ref("cl-free");
    struct conn_limit *keep = limits_ref("cl-free");
    assert_int_equal(take(l, 2, 2), 2);
    limits_unref(l);
    assert_false(limits_acquire(keep, 2)); /* still the same, still full */
    limits_unref(keep);                    /* the last one: freed */
    struct conn_limit *fresh = limits_ref("cl-free");
    assert_non_null(fresh);
    assert_int_equal(take(fresh, 2, 3), 2);
    give_back(fresh, 2);
    limits_unref(fresh);
}

/* ---- threads ---- */

#define THREADS 8
#define ROUNDS 20000
#define MAX_IN 3

struct race {
    struct conn_limit *l;
    pthread_barrier_t start;
    unsigned in_use;  /* atomic: holders right now */
    unsigned peak;    /* atomic: the most seen at once */
    unsigned granted; /* atomic */
    unsigned wrong;   /* atomic: cmocka asserts only on the test's thread */
};

static void note_peak(struct race *r, unsigned now)
{
    unsigned seen = __atomic_load_n(&r->peak, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&r->peak, &seen, now, true, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED))
        ;
}

static void *acquire_release_loop(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < ROUNDS; i++) {
        if (!limits_acquire(r->l, MAX_IN))
            continue;
        unsigned now = __atomic_add_fetch(&r->in_use, 1, __ATOMIC_ACQ_REL);
        note_peak(r, now);
        __atomic_add_fetch(&r->granted, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&r->in_use, 1, __ATOMIC_ACQ_REL);
        limits_release(r->l);
    }
    return NULL;
}

static void run_threads(void *(*fn)(void *), struct race *r)
{
    pthread_t t[THREADS];
    pthread_barrier_init(&r->start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fn, r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&r->start);
}

static void test_concurrent_acquire_never_exceeds_max(void **state)
{
    struct race r = {.l = limits_ref("cl-race")};
    assert_non_null(r.l);
    run_threads(acquire_release_loop, &r);
    assert_true(r.peak <= MAX_IN);
    assert_true(r.granted > 0);
    assert_int_equal(r.in_use, 0);
    /* Every slot came back: all MAX_IN are free again. */
    assert_int_equal(take(r.l, MAX_IN, MAX_IN + 1), MAX_IN);
    give_back(r.l, MAX_IN);
    limits_unref(r.l);
}

/* All threads grab and never give back: exactly max succeed in total. */
static void *grab_loop(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < 1000; i++)
        if (limits_acquire(r->l, MAX_IN))
            __atomic_add_fetch(&r->granted, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void test_concurrent_grab_gets_exactly_max(void **state)
{
    struct race r = {.l = limits_ref("cl-grab")};
    run_threads(grab_loop, &r);
    assert_int_equal(r.granted, MAX_IN);
    give_back(r.l, MAX_IN);
    limits_unref(r.l);
}

/* Workers ref and unref the same sandbox while others use it (records
 * loaded and expired on several workers): the table stays consistent and
 * the counter is never lost while referenced. */
static void *ref_churn(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < 2000; i++) {
        struct conn_limit *l = limits_ref("cl-churn");
        if (l != r->l) /* r->l holds a reference all along */
            __atomic_add_fetch(&r->wrong, 1, __ATOMIC_RELAXED);
        if (limits_acquire(l, MAX_IN))
            limits_release(l);
        limits_unref(l);
    }
    return NULL;
}

static void test_concurrent_ref_unref(void **state)
{
    struct race r = {.l = limits_ref("cl-churn")};
    run_threads(ref_churn, &r);
    assert_int_equal(r.wrong, 0);
    assert_int_equal(take(r.l, MAX_IN, MAX_IN + 1), MAX_IN);
    give_back(r.l, MAX_IN);
    limits_unref(r.l);
}

/* Global scope's cap (README "Many instances"): with a view, the own
 * count plus a share of the free room per live instance, never over max;
 * without one, a share of max. */
static void test_global_cap(void **state)
{
    /* One instance: exactly "own + others < max". */
    assert_int_equal(limits_global_cap(10, true, 0, 0, 1), 10);
    assert_int_equal(limits_global_cap(10, true, 3, 4, 1), 6);
    assert_int_equal(limits_global_cap(10, true, 3, 7, 1), 3);  /* full: keep what it has */
    assert_int_equal(limits_global_cap(10, true, 3, 20, 1), 3); /* over: admits nothing more */
    /* Two instances that both see 10 free take 5 each: 10 in all. */
    assert_int_equal(limits_global_cap(10, true, 0, 0, 2), 5);
    /* Traffic on one only: it grows by half the free room per sync. */
    assert_int_equal(limits_global_cap(10, true, 5, 0, 2), 8);
    assert_int_equal(limits_global_cap(10, true, 8, 0, 2), 9);
    assert_int_equal(limits_global_cap(10, true, 9, 0, 2), 10);
    assert_int_equal(limits_global_cap(10, true, 10, 0, 2), 10);
    /* Rounding up: three instances, 10 free: 4 + 4 + 4 at most (N - 1 over). */
    assert_int_equal(limits_global_cap(10, true, 0, 0, 3), 4);
    /* No view (a new sandbox, Redis away): a share of the limit. */
    assert_int_equal(limits_global_cap(10, false, 7, 9, 2), 5);
    assert_int_equal(limits_global_cap(10, false, 0, 0, 3), 4);
    assert_int_equal(limits_global_cap(10, false, 0, 0, 0), 10); /* 0 instances = 1 */
    assert_int_equal(limits_global_cap(0, true, 0, 0, 2), 0);
    assert_int_equal(limits_global_cap(UINT32_MAX, true, UINT32_MAX - 1, 0, 1), UINT32_MAX);
    assert_int_equal(limits_global_cap(UINT32_MAX, false, 0, 0, 1), UINT32_MAX);
}

/* Global scope on the counters: without a sync the share of max, with a
 * stored view the cap from it; a view for a sandbox nobody holds is
 * dropped. */
static void test_global_scope_counters(void **state)
{
    struct conn_limit *l = limits_ref("cl-global");
    assert_non_null(l);
    limits_set_scope(CONFIG_LIMITS_GLOBAL);
    limits_store_instances(2);
    assert_int_equal(take(l, 10, 20), 5); /* no view: ceil(10 / 2) */
    give_back(l, 5);
    limits_store_view("cl-global", 2, 4, time_now_ms()); /* own 2, others 4: 2 + ceil(4/2) */
    assert_int_equal(take(l, 10, 20), 4);
    give_back(l, 4);
    limits_store_view("cl-nobody", 0, 0, time_now_ms()); /* no counter: ignored */
    struct limits_count *counts;
    size_t n = limits_snapshot(&counts);
    bool seen = false;
    for (size_t i = 0; i < n; i++)
        seen |= strcmp(counts[i].id, "cl-global") == 0;
    assert_true(seen);
    free(counts);
    limits_store_instances(1);
    limits_set_scope(CONFIG_LIMITS_PROCESS);
    limits_unref(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_cap),
        cmocka_unit_test(test_global_scope_counters),
        cmocka_unit_test(test_acquire_up_to_max_then_release),
        cmocka_unit_test(test_max_zero_refuses_everything),
        cmocka_unit_test(test_refs_share_one_counter_per_sandbox),
        cmocka_unit_test(test_longest_id),
        cmocka_unit_test(test_last_unref_frees),
        cmocka_unit_test(test_concurrent_acquire_never_exceeds_max),
        cmocka_unit_test(test_concurrent_grab_gets_exactly_max),
        cmocka_unit_test(test_concurrent_ref_unref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
