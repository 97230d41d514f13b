/* common/h2_rules.c: the pure rules of the HTTP/2 front end. The preface
 * (RFC 9113 section 3.4) and its prefixes, :method against llhttp's table,
 * :authority against Host (section 8.3.1) and the host a certificate must
 * cover (section 9.1.1), the reset budget, the flood ratio and what counts
 * as progress for a slow reader. */
#include "h2_rules.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

static void test_preface(void **state)
{
    assert_int_equal(h2_preface_match(H2_PREFACE, H2_PREFACE_LEN), 1);
    /* with frames after it */
    assert_int_equal(h2_preface_match(H2_PREFACE "\x00\x00\x00\x04", H2_PREFACE_LEN + 4), 1);
    /* every proper prefix waits for more */
    for (size_t n = 0; n < H2_PREFACE_LEN; n++)
        assert_int_equal(h2_preface_match(H2_PREFACE, n), -2);
    /* HTTP/1.x requests, and the preface with one byte wrong anywhere */
    assert_int_equal(h2_preface_match("GET / HTTP/1.1\r\n", 16), 0);
    assert_int_equal(h2_preface_match("P", 1), -2);
    assert_int_equal(h2_preface_match("POST", 4), 0);
    for (size_t i = 0; i < H2_PREFACE_LEN; i++) {
        char buf[H2_PREFACE_LEN];
        memcpy(buf, H2_PREFACE, sizeof(buf));
        buf[i] ^= 0x20;
        assert_int_equal(h2_preface_match(buf, sizeof(buf)), 0);
        assert_int_equal(h2_preface_match(buf, i + 1), 0);
    }
}

static void test_method(void **state)
{
    assert_int_equal(h2_method("GET", 3), HTTP_GET);
    assert_int_equal(h2_method("HEAD", 4), HTTP_HEAD);
    assert_int_equal(h2_method("POST", 4), HTTP_POST);
    assert_int_equal(h2_method("CONNECT", 7), HTTP_CONNECT);
    assert_int_equal(h2_method("M-SEARCH", 8), HTTP_MSEARCH);
    assert_int_equal(h2_method("PATCH", 5), HTTP_PATCH);
    /* case-sensitive (RFC 9110 section 9.1), whole names only */
    assert_int_equal(h2_method("get", 3), -1);
    assert_int_equal(h2_method("GE", 2), -1);
    assert_int_equal(h2_method("GETS", 4), -1);
    assert_int_equal(h2_method("", 0), -1);
    assert_int_equal(h2_method("FOO", 3), -1);
    /* not HTTP methods for an upstream request line */
    assert_int_equal(h2_method("PRI", 3), -1);
    assert_int_equal(h2_method("DESCRIBE", 8), -1);
    assert_int_equal(h2_method("GET\0", 4), -1);
}

#define EQ(a, b) h2_authority_equal(a, strlen(a), b, strlen(b))

static void test_authority_equal(void **state)
{
    assert_true(EQ("a.example", "a.example"));
    assert_true(EQ("A.Example:8080", "a.example:8080"));
    assert_true(EQ("[::1]:443", "[::1]:443"));
    assert_false(EQ("a.example", "b.example"));
    assert_false(EQ("a.example:80", "a.example"));
    assert_false(EQ("a.example:80", "a.example:8080"));
    assert_false(EQ("a.example", "a.example."));
    assert_false(EQ("a.example", ""));
    assert_true(EQ("", ""));
}

static int host_of(const char *a, char *out, size_t cap)
{
    return h2_authority_host(a, strlen(a), out, cap);
}

static void test_authority_host(void **state)
{
    char out[64];
    assert_int_equal(host_of("3000-abc.Sandbox.Test:443", out, sizeof(out)), 21);
    assert_string_equal(out, "3000-abc.sandbox.test");
    assert_int_equal(host_of("a.example.", out, sizeof(out)), 9);
    assert_string_equal(out, "a.example");
    assert_int_equal(host_of("a.example.:8443", out, sizeof(out)), 9);
    assert_string_equal(out, "a.example");
    assert_int_equal(host_of("[2001:DB8::1]:443", out, sizeof(out)), 11);
    assert_string_equal(out, "2001:db8::1");
    assert_int_equal(host_of("[::1]", out, sizeof(out)), 3);
    assert_string_equal(out, "::1");
    assert_int_equal(host_of("127.0.0.1:80", out, sizeof(out)), 9);
    assert_string_equal(out, "127.0.0.1");
    assert_int_equal(host_of("a.example:", out, sizeof(out)), 9);
    /* malformed: empty, brackets out of place, a bare IPv6 address, NUL */
    assert_int_equal(host_of("", out, sizeof(out)), -1);
    assert_int_equal(host_of(":443", out, sizeof(out)), -1);
    assert_int_equal(host_of("[]:443", out, sizeof(out)), -1);
    assert_int_equal(host_of("a[b]", out, sizeof(out)), -1);
    assert_int_equal(host_of("[::1", out, sizeof(out)), -1);
    assert_int_equal(host_of("::1", out, sizeof(out)), -1);
    assert_int_equal(h2_authority_host("a\0b", 3, out, sizeof(out)), -1);
    /* bounded by the output */
    assert_int_equal(host_of("abcd", out, 5), 4);
    assert_int_equal(host_of("abcde", out, 5), -1);
}

static void test_budget(void **state)
{
    struct h2_budget b;
    h2_budget_init(&b, 3);
    h2_budget_earn(&b); /* capped */
    assert_true(h2_budget_spend(&b));
    assert_true(h2_budget_spend(&b));
    h2_budget_earn(&b);
    assert_true(h2_budget_spend(&b));
    assert_true(h2_budget_spend(&b));
    assert_false(h2_budget_spend(&b)); /* overdrawn */
    h2_budget_earn(&b);                /* stays overdrawn: the connection goes */
    assert_false(h2_budget_spend(&b));
    assert_false(h2_budget_spend(&b));
    /* a browser: one cancel per completed response never runs out */
    h2_budget_init(&b, 100);
    for (int i = 0; i < 100000; i++) {
        assert_true(h2_budget_spend(&b));
        h2_budget_earn(&b);
    }
}

static void test_flood_ratio(void **state)
{
    assert_false(h2_flooded(0, 0));
    assert_false(h2_flooded(8ull * H2_FLOOD_ALLOWANCE, 0));
    assert_true(h2_flooded(8ull * H2_FLOOD_ALLOWANCE + 8, 0));
    /* payload buys room, one byte per eight */
    assert_false(h2_flooded(8ull * (H2_FLOOD_ALLOWANCE + 1000), 1000));
    assert_true(h2_flooded(8ull * (H2_FLOOD_ALLOWANCE + 1001), 1000));
    /* a 1 GiB upload with its frame headers is nowhere near */
    assert_false(h2_flooded((1ull << 30) * 16393 / 16384, 1ull << 30));
    assert_false(h2_flooded(UINT64_MAX, UINT64_MAX - H2_FLOOD_ALLOWANCE));
}

static void test_send_progress(void **state)
{
    assert_true(h2_send_progress(0, 0));     /* all out */
    assert_true(h2_send_progress(10, 0));    /* all out */
    assert_false(h2_send_progress(1, 1000)); /* a trickle */
    assert_false(h2_send_progress(H2_PROGRESS_BYTES - 1, 1));
    assert_true(h2_send_progress(H2_PROGRESS_BYTES, 1 << 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preface),         cmocka_unit_test(test_method),
        cmocka_unit_test(test_authority_equal), cmocka_unit_test(test_authority_host),
        cmocka_unit_test(test_budget),          cmocka_unit_test(test_flood_ratio),
        cmocka_unit_test(test_send_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
