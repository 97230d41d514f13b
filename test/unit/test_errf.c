/* common/errf.c: the one error-message helper. It formats into the
 * caller's buffer, truncates to errlen (always NUL-terminated), writes
 * nothing when there is no buffer (err NULL or errlen 0: callers that do
 * not want the message), and returns -1 so `return errf(...)` fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errf.h"

static void test_formats_and_returns_minus_one(void **state)
{
    char err[64];
    assert_int_equal(errf(err, sizeof(err), "%s: %d ms", "redis.timeout_ms", 0), -1);
    assert_string_equal(err, "redis.timeout_ms: 0 ms");
    assert_int_equal(errf(err, sizeof(err), "plain"), -1);
    assert_string_equal(err, "plain");
}

static void test_no_buffer_no_write(void **state)
{
    char err[4] = "old";
    assert_int_equal(errf(NULL, 16, "%s", "ignored"), -1);
    assert_int_equal(errf(err, 0, "%s", "ignored"), -1);
    assert_string_equal(err, "old");
}

static void test_truncates_within_errlen(void **state)
{
    char err[8];
    memset(err, 'x', sizeof(err));
    errf(err, 5, "%s", "0123456789");
    assert_string_equal(err, "0123");
    assert_int_equal(err[5], 'x'); /* nothing past errlen */
    errf(err, 1, "%s", "abc");
    assert_string_equal(err, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_and_returns_minus_one),
        cmocka_unit_test(test_no_buffer_no_write),
        cmocka_unit_test(test_truncates_within_errlen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
