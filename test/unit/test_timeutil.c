/* common/timeutil.h: milliseconds as the struct timeval libevent's timers
 * take (whole seconds, the rest in microseconds: tv_usec stays below one
 * second, or evtimer_add refuses it), and the two monotonic clocks every
 * module reads: time_now_ms (coarse) and time_now_us (precise), both
 * time_read in their units. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "timeutil.h"

static void assert_tv(uint64_t ms, long sec, long usec)
{
    struct timeval tv = tv_from_ms(ms);
    assert_int_equal(tv.tv_sec, sec);
    assert_int_equal(tv.tv_usec, usec);
}

static void test_tv_from_ms(void **state)
{
    assert_tv(0, 0, 0);
    assert_tv(1, 0, 1000);
    assert_tv(100, 0, 100000); /* listener.c's accept recheck */
    assert_tv(999, 0, 999000);
    assert_tv(1000, 1, 0);
    assert_tv(1001, 1, 1000);
    assert_tv(10000, 10, 0);       /* the route cache's sweep */
    assert_tv(86400000, 86400, 0); /* the longest duration config allows */
    /* A uint64_t difference of two deadlines (stream.c, lookup.c). */
    assert_tv(UINT64_C(4294967296123), 4294967296, 123000);
}

static void test_tv_usec_below_one_second(void **state)
{
    for (uint64_t ms = 0; ms < 5000; ms++) {
        struct timeval tv = tv_from_ms(ms);
        assert_true(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
        assert_int_equal((uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000, ms);
    }
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Both read the monotonic clock: never backwards, and the same clock as
 * CLOCK_MONOTONIC (the coarse one lags it by at most a tick). */
static void test_clocks_are_monotonic(void **state)
{
    uint64_t ms = time_now_ms(), us = time_now_us();
    for (int i = 0; i < 100000; i++) {
        uint64_t ms2 = time_now_ms(), us2 = time_now_us();
        assert_true(ms2 >= ms);
        assert_true(us2 >= us);
        ms = ms2;
        us = us2;
    }
    uint64_t before = clock_ms(CLOCK_MONOTONIC_COARSE);
    uint64_t now = time_now_ms();
    uint64_t precise = clock_ms(CLOCK_MONOTONIC);
    assert_true(now >= before && now <= precise);
    uint64_t a = clock_ms(CLOCK_MONOTONIC), b = time_now_us() / 1000, c = clock_ms(CLOCK_MONOTONIC);
    assert_true(a <= b && b <= c);
    /* time_read in other units: whole seconds. */
    uint64_t sec = time_read(CLOCK_MONOTONIC, 1);
    assert_true(c / 1000 <= sec && sec <= time_now_us() / 1000000);
}

/* A sleep of 20 ms shows on both clocks, in their own units. */
static void test_clocks_advance(void **state)
{
    uint64_t ms = time_now_ms(), us = time_now_us();
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    assert_true(time_now_us() - us >= 20000);
    assert_true(time_now_ms() - ms >= 10); /* coarse: a tick may be missing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tv_from_ms),
        cmocka_unit_test(test_tv_usec_below_one_second),
        cmocka_unit_test(test_clocks_are_monotonic),
        cmocka_unit_test(test_clocks_advance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
