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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_attempt_the_config_allows),
        cmocka_unit_test(test_default_sequence),
        cmocka_unit_test(test_zero_base_never_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
