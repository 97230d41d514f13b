/* common/json_guard.c: what cJSON lets through but record and config
 * parsing must refuse (raw control bytes in strings, "\u0000"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "json_guard.h"

static long scan(const char *s)
{
    return json_guard_scan(s, strlen(s));
}

static void test_clean_documents_pass(void **state)
{
    assert_int_equal(scan(""), -1);
    assert_int_equal(scan("{\"address\": \"10.0.0.1\", \"n\": 1}"), -1);
    /* JSON whitespace between tokens is fine (RFC 8259 section 2). */
    assert_int_equal(scan("{\n\t\"a\":\r\n \"b\"\n}"), -1);
    /* Escaped forms of control characters are fine, \u0001 included. */
    assert_int_equal(scan("{\"a\": \"x\\n\\t\\u0001\\u00e9\"}"), -1);
    /* "\\u0000" is an escaped backslash, then plain text. */
    assert_int_equal(scan("{\"a\": \"\\\\u0000\"}"), -1);
    /* An escaped quote does not end the string. */
    assert_int_equal(scan("{\"a\": \"say \\\"hi\\\"\"}"), -1);
}

static void test_raw_control_bytes_in_strings_refused(void **state)
{
    /* RFC 8259 section 7: control characters must be escaped in strings,
     * tab and newline included. */
    assert_int_equal(scan("{\"a\": \"x\ty\"}"), 8);
    assert_int_equal(scan("{\"a\": \"x\ny\"}"), 8);
    assert_int_equal(scan("{\"a\": \"\x01\"}"), 7);
    assert_int_equal(scan("{\"a\x1f\": 1}"), 3);
}

static void test_control_bytes_outside_strings(void **state)
{
    /* Outside strings only the JSON whitespace controls are allowed. */
    assert_int_equal(scan("{\x01}"), 1);
    assert_int_equal(scan("{}\x0b"), 2);
    const char nul[] = {'{', '}', '\0'};
    assert_int_equal(json_guard_scan(nul, sizeof(nul)), 2);
}

static void test_escaped_nul_refused(void **state)
{
    /* cJSON would end the C string there: "abc\u0000xyz" == "abc". */
    assert_int_equal(scan("{\"t\": \"abc\\u0000xyz\"}"), 11);
    assert_int_equal(scan("{\"t\": \"\\u0000\"}"), 8);
    /* Too short to be \u0000: cJSON refuses it itself. */
    assert_int_equal(scan("{\"t\": \"\\u000"), -1);
    /* Upper-case U is not an escape cJSON knows; not ours to judge. */
    assert_int_equal(scan("{\"t\": \"\\U0000\"}"), -1);
}

static void test_scan_stops_at_len(void **state)
{
    const char *s = "{\"a\": \"ok\"}\x01";
    assert_int_equal(json_guard_scan(s, strlen(s) - 1), -1);
    assert_int_equal(json_guard_scan(s, strlen(s)), (long)strlen(s) - 1);
    /* \u0000 cut by len is not seen past it. */
    const char *t = "\"\\u0000\"";
    assert_int_equal(json_guard_scan(t, 5), -1);
    assert_int_equal(json_guard_scan(t, 7), 2);
}

/* maxConnections: an integer in 0..UINT32_MAX, nothing else. */
static void test_uint32(void **state)
{
    static const struct {
        const char *json;
        int rc;
        uint32_t want;
    } cases[] = {
        {"0", 0, 0},           {"7", 0, 7},      {"4294967295", 0, 4294967295u},
        {"4294967296", -1, 0}, {"-1", -1, 0},    {"1.5", -1, 0},
        {"1e300", -1, 0},      {"\"5\"", -1, 0}, {"true", -1, 0},
        {"null", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *v = cJSON_Parse(cases[i].json);
        assert_non_null(v);
        uint32_t got = 12345;
        assert_int_equal(json_guard_uint32(v, &got), cases[i].rc);
        assert_int_equal(got, cases[i].rc == 0 ? cases[i].want : 12345);
        cJSON_Delete(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_documents_pass),
        cmocka_unit_test(test_raw_control_bytes_in_strings_refused),
        cmocka_unit_test(test_control_bytes_outside_strings),
        cmocka_unit_test(test_escaped_nul_refused),
        cmocka_unit_test(test_scan_stops_at_len),
        cmocka_unit_test(test_uint32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
