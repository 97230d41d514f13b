/* common/backoff.c: the retry wait is base << (attempt - 1) until it reaches
 * BACKOFF_MAX_MS, and stays there for every attempt the config allows
 * (upstream.connect_retries up to 100). The plain shift was undefined
 * behaviour from the 32nd attempt on (a shift past the width of int) and
 * overflowed long before that; under UBSan this test aborted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

/* The doubling done in 64 bits with the cap applied: what backoff_ms must
 * return. */
static int expected(int base, int attempt)
{
    int64_t ms = base;
    for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? (int)ms : BACKOFF_MAX_MS;
}

static void test_every_attempt_the_config_allows(void **state)
{
    static const int bases[] = {1, 7, 100, 30000, 59999, 60000};
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        int prev = 0;
        for (int attempt = 1; attempt <= 100; attempt++) {
            int ms = backoff_ms(bases[b], attempt);
            assert_int_equal(ms, expected(bases[b], attempt));
            assert_true(ms >= prev); /* never shorter than the one before */
            assert_true(ms <= BACKOFF_MAX_MS);
            prev = ms;
        }
    }
}

static void test_default_sequence(void **state)
{
    /* upstream.retry_backoff_ms 100, connect_retries 3: the README's row. */
    assert_int_equal(backoff_ms(100, 1), 100);
    assert_int_equal(backoff_ms(100, 2), 200);
    assert_int_equal(backoff_ms(100, 3), 400);
    assert_int_equal(backoff_ms(100, 10), 51200);
    assert_int_equal(backoff_ms(100, 11), BACKOFF_MAX_MS);
    assert_int_equal(backoff_ms(100, 100), BACKOFF_MAX_MS);
}

static void test_zero_base_never_waits(void **state)
{
    for (int attempt = 1; attempt <= 100; attempt++)
        assert_int_equal(backoff_ms(0, attempt), 0);
}

/* The jittered wait of the Redis and Sentinel reconnects: within [half,
 * all] of the capped doubling for every random input, both ends reached,
 * and spread (not one value for everyone). */
static void test_jitter_bounds(void **state)
{
    static const uint32_t rnds[] = {
        0, 1, 2, 49, 50, 51, 99, 100, 12345, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu};
    for (int attempt = 1; attempt <= 100; attempt++) {
        int plain = backoff_ms(100, attempt);
        int full = plain > 2000 ? 2000 : plain;
        for (size_t i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
            int ms = backoff_jitter_ms(100, attempt, 2000, rnds[i]);
            assert_true(ms >= full - full / 2);
            assert_true(ms <= full);
        }
        assert_int_equal(backoff_jitter_ms(100, attempt, 2000, 0), full - full / 2);
        assert_int_equal(backoff_jitter_ms(100, attempt, 2000, (uint32_t)(full / 2)), full);
    }
    /* The first wait is 50..100 ms, the capped one 1000..2000 ms. */
    assert_int_equal(backoff_jitter_ms(100, 1, 2000, 0), 50);
    assert_int_equal(backoff_jitter_ms(100, 1, 2000, 50), 100);
    assert_int_equal(backoff_jitter_ms(100, 1, 2000, 51), 50);
    assert_int_equal(backoff_jitter_ms(100, 30, 2000, 0), 1000);
    assert_int_equal(backoff_jitter_ms(100, 30, 2000, 1000), 2000);
    /* No cap: backoff_ms's own. */
    assert_int_equal(backoff_jitter_ms(100, 100, 0, 30000), BACKOFF_MAX_MS);
    assert_int_equal(backoff_jitter_ms(0, 5, 2000, 77), 0);
    /* Spread: 1000 draws of the first wait take many values. */
    int seen[101] = {0}, distinct = 0;
    uint32_t x = 2463534242u;
    for (int i = 0; i < 1000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        int ms = backoff_jitter_ms(100, 1, 2000, x);
        if (!seen[ms]++)
            distinct++;
    }
    assert_true(distinct > 40);
}

static void test_between(void **state)
{
    assert_int_equal(backoff_between_ms(100, 300, 0), 100);
    assert_int_equal(backoff_between_ms(100, 300, 200), 300);
    assert_int_equal(backoff_between_ms(100, 300, 201), 100);
    assert_int_equal(backoff_between_ms(100, 300, 0xffffffffu), 100 + (int)(0xffffffffu % 201));
    assert_int_equal(backoff_between_ms(5, 5, 1234), 5);
    assert_int_equal(backoff_between_ms(9, 3, 1234), 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_attempt_the_config_allows),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_between),
        cmocka_unit_test(test_default_sequence),
        cmocka_unit_test(test_zero_base_never_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
