/* host_parse and friends: the shapes SPEC section 5 accepts, and the ugly
 * inputs it must refuse without reading past `len`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host.h"

static char *one_domain[] = {"sandbox.example"};
static const struct domain_list doms = {one_domain, 1};
static char *multi_domain[] = {"e2b.app", "sandbox.example.com"};
static const struct domain_list multi = {multi_domain, 2};
static const struct domain_list any = {NULL, 0};

/* Parses from an exact-size heap copy, so ASan catches any read past len. */
static int parse(const char *s, const struct domain_list *d, struct host_target *t)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, len);
    memset(t, 0x5a, sizeof(*t));
    rc = host_parse(copy, len, d, t);
    free(copy);
    return rc;
}

static void expect_ok(const char *s, const struct domain_list *d, uint16_t port, const char *id)
{
    struct host_target t;

    assert_int_equal(parse(s, d, &t), HOST_OK);
    assert_int_equal(t.port, port);
    assert_string_equal(t.sandbox_id, id);
    assert_int_equal(t.id_len, strlen(id));
}

static void expect_rc(const char *s, const struct domain_list *d, int rc)
{
    struct host_target t;

    assert_int_equal(parse(s, d, &t), rc);
}

static void test_basic(void **state)
{
    expect_ok("3000-abc.sandbox.example", &doms, 3000, "abc");
    expect_ok("1-a.sandbox.example", &doms, 1, "a");
    expect_ok("65535-i62mff4ahtrdfdkyn2esc.sandbox.example", &doms, 65535, "i62mff4ahtrdfdkyn2esc");
    expect_ok("49983-abc-anything-goes.sandbox.example", &doms, 49983, "abc");
    expect_ok("3000-abc-.sandbox.example", &doms, 3000, "abc");
    expect_ok("3000-abc--x.sandbox.example", &doms, 3000, "abc");
}

static void test_case_port_dot(void **state)
{
    expect_ok("3000-AbC.SANDBOX.Example", &doms, 3000, "abc");
    expect_ok("3000-abc.sandbox.example:8080", &doms, 3000, "abc");
    expect_ok("3000-abc.sandbox.example:", &doms, 3000, "abc");
    expect_ok("3000-abc.sandbox.example.", &doms, 3000, "abc");
    expect_ok("3000-abc.sandbox.example.:443", &doms, 3000, "abc");
    expect_ok("03000-abc.sandbox.example", &doms, 3000, "abc");
    expect_ok("0000000000000001-abc.sandbox.example", &doms, 1, "abc");
    /* Only one trailing dot. */
    expect_rc("3000-abc.sandbox.example..", &doms, HOST_MALFORMED);
    /* Port suffix: digits only, at most 5. */
    expect_rc("3000-abc.sandbox.example:80a", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example:123456", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example:80:80", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example: 80", &doms, HOST_MALFORMED);
}

static void test_domains(void **state)
{
    expect_rc("3000-abc.evilsandbox.example", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("3000-abc.x.sandbox.example", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("3000-abc.sandbox.example.evil", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("3000-abc.example", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("3000-abc", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("www.google.com", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("sandbox.example", &doms, HOST_FOREIGN_DOMAIN);
    expect_ok("3000-abc.e2b.app", &multi, 3000, "abc");
    expect_ok("3000-abc.sandbox.example.com", &multi, 3000, "abc");
    expect_rc("3000-abc.sandbox.example", &multi, HOST_FOREIGN_DOMAIN);
    expect_rc("3000-abc.example.com", &multi, HOST_FOREIGN_DOMAIN);
    /* Empty list: any suffix, and a bare label. */
    expect_ok("3000-abc.whatever.test", &any, 3000, "abc");
    expect_ok("3000-abc", &any, 3000, "abc");
    expect_ok("3000-abc:80", &any, 3000, "abc");
    expect_ok("3000-abc.", &any, 3000, "abc");
    expect_ok("3000-abc.a.b.c.d", NULL, 3000, "abc");
    expect_rc("www.google.com", &any, HOST_MALFORMED);
}

static void test_needs_headers(void **state)
{
    expect_rc("sandbox.sandbox.example", &doms, HOST_NEEDS_HEADERS);
    expect_rc("SANDBOX.Sandbox.Example.:443", &doms, HOST_NEEDS_HEADERS);
    expect_rc("sandbox.e2b.app", &multi, HOST_NEEDS_HEADERS);
    expect_rc("sandbox.anything", &any, HOST_NEEDS_HEADERS);
    expect_rc("sandbox.other.example", &doms, HOST_FOREIGN_DOMAIN);
    expect_rc("sandboxx.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("sandbo.sandbox.example", &doms, HOST_MALFORMED);
    /* Bare "sandbox" has no domain: not the header form. */
    expect_rc("sandbox", &any, HOST_MALFORMED);
    expect_rc("sandbox", &doms, HOST_FOREIGN_DOMAIN);
}

static void test_bad_port(void **state)
{
    expect_rc("0-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("00000-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("65536-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("99999999999-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("184467440737095516163000-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("abc-def.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("30a0-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("-abc.sandbox.example", &doms, HOST_BAD_PORT);
    expect_rc("--.sandbox.example", &doms, HOST_BAD_PORT);
}

static void test_bad_id(void **state)
{
    char buf[256];

    expect_rc("3000-.sandbox.example", &doms, HOST_BAD_SANDBOX_ID);
    expect_rc("3000--abc.sandbox.example", &doms, HOST_BAD_SANDBOX_ID);
    expect_rc("3000-", &any, HOST_BAD_SANDBOX_ID);

    /* 63 is the limit, 64 is one too many. */
    strcpy(buf, "3000-");
    memset(buf + 5, 'a', 63);
    strcpy(buf + 5 + 63, ".sandbox.example");
    {
        char id[64];

        memset(id, 'a', 63);
        id[63] = '\0';
        expect_ok(buf, &doms, 3000, id);
    }
    strcpy(buf, "3000-");
    memset(buf + 5, 'B', 64);
    strcpy(buf + 5 + 64, ".sandbox.example");
    expect_rc(buf, &doms, HOST_BAD_SANDBOX_ID);
}

static void test_malformed(void **state)
{
    struct host_target t;

    expect_rc("", &doms, HOST_MALFORMED);
    expect_rc(".", &doms, HOST_MALFORMED);
    expect_rc(":80", &doms, HOST_MALFORMED);
    expect_rc("..", &any, HOST_MALFORMED);
    expect_rc(".3000-abc.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000-abc..sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox..example", &doms, HOST_MALFORMED);
    expect_rc("[::1]", &any, HOST_MALFORMED);
    expect_rc("[::1]:80", &any, HOST_MALFORMED);
    expect_rc("3000abc.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000_abc.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example/", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example ", &doms, HOST_MALFORMED);
    expect_rc(" 3000-abc.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("user@3000-abc.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000-ab%63.sandbox.example", &doms, HOST_MALFORMED);
    expect_rc("3000-abc.sandbox.example\r\n", &doms, HOST_MALFORMED);
    expect_rc("3000-\xc3\xa9.sandbox.example", &doms, HOST_MALFORMED);

    /* NUL bytes inside the view. */
    assert_int_equal(host_parse("3000-abc\0.sandbox.example", 25, &doms, &t), HOST_MALFORMED);
    assert_int_equal(host_parse("3000-abc.sandbox.example\0", 25, &doms, &t), HOST_MALFORMED);
    assert_int_equal(host_parse("\0", 1, &any, &t), HOST_MALFORMED);
    assert_int_equal(host_parse(NULL, 0, &any, &t), HOST_MALFORMED);
    assert_int_equal(host_parse("x", 0, &any, &t), HOST_MALFORMED);
}

/* The length is honoured exactly: bytes after it are never looked at. */
static void test_len_is_exact(void **state)
{
    const char *s = "3000-abc.sandbox.exampleZZZ";
    struct host_target t;

    assert_int_equal(host_parse(s, 24, &doms, &t), HOST_OK);
    assert_string_equal(t.sandbox_id, "abc");
    assert_int_equal(host_parse(s, 23, &doms, &t), HOST_FOREIGN_DOMAIN);
    assert_int_equal(host_parse(s, 25, &doms, &t), HOST_FOREIGN_DOMAIN);
    assert_int_equal(host_parse(s, 6, &any, &t), HOST_OK);
    assert_string_equal(t.sandbox_id, "a");
    assert_int_equal(host_parse(s, 5, &any, &t), HOST_BAD_SANDBOX_ID);
    assert_int_equal(host_parse(s, 4, &any, &t), HOST_MALFORMED);
}

static void test_long_names(void **state)
{
    /* 255 bytes is the most a name may have; the ":port" and trailing dot
     * do not count. */
    size_t n;
    char *buf = malloc(100000);

    assert_non_null(buf);
    strcpy(buf, "3000-abc.");
    n = strlen(buf);
    while (n < 255 - 2) {
        buf[n++] = 'x';
        buf[n++] = '.';
    }
    buf[n++] = 'x';
    buf[n] = '\0';
    assert_int_equal(strlen(buf), 254);
    expect_ok(buf, &any, 3000, "abc");
    strcat(buf, "y");
    expect_ok(buf, &any, 3000, "abc");
    strcat(buf, ".:65535");
    expect_ok(buf, &any, 3000, "abc");
    buf[255] = '\0';
    strcat(buf, "z");
    expect_rc(buf, &any, HOST_MALFORMED);

    /* Huge: refused, and nothing read past the end (exact-size copy). */
    memset(buf, 'a', 99999);
    buf[99999] = '\0';
    memcpy(buf, "3000-abc.", 9);
    expect_rc(buf, &any, HOST_MALFORMED);
    memset(buf, ':', 99999);
    expect_rc(buf, &any, HOST_MALFORMED);
    free(buf);
}

static void test_parse_port(void **state)
{
    uint16_t p = 7;

    assert_int_equal(host_parse_port("1", 1, &p), 0);
    assert_int_equal(p, 1);
    assert_int_equal(host_parse_port("65535", 5, &p), 0);
    assert_int_equal(p, 65535);
    assert_int_equal(host_parse_port("03000", 5, &p), 0);
    assert_int_equal(p, 3000);
    assert_int_equal(host_parse_port("80xyz", 2, &p), 0);
    assert_int_equal(p, 80);
    p = 7;
    assert_int_equal(host_parse_port("0", 1, &p), -1);
    assert_int_equal(host_parse_port("65536", 5, &p), -1);
    assert_int_equal(host_parse_port("99999999999", 11, &p), -1);
    assert_int_equal(host_parse_port("", 0, &p), -1);
    assert_int_equal(host_parse_port(NULL, 0, &p), -1);
    assert_int_equal(host_parse_port("+80", 3, &p), -1);
    assert_int_equal(host_parse_port("-80", 3, &p), -1);
    assert_int_equal(host_parse_port(" 80", 3, &p), -1);
    assert_int_equal(host_parse_port("80 ", 3, &p), -1);
    assert_int_equal(host_parse_port("8\0", 2, &p), -1);
    assert_int_equal(host_parse_port("0x50", 4, &p), -1);
    assert_int_equal(p, 7); /* untouched on failure */
}

static void test_parse_sandbox_id(void **state)
{
    struct host_target t;
    char id[70];

    assert_int_equal(host_parse_sandbox_id("AbZ09", 5, &t), 0);
    assert_string_equal(t.sandbox_id, "abz09");
    assert_int_equal(t.id_len, 5);
    assert_int_equal(host_parse_sandbox_id("abc", 2, &t), 0);
    assert_string_equal(t.sandbox_id, "ab");
    assert_int_equal(host_parse_sandbox_id("", 0, &t), -1);
    assert_int_equal(host_parse_sandbox_id("a-b", 3, &t), -1);
    assert_int_equal(host_parse_sandbox_id("a.b", 3, &t), -1);
    assert_int_equal(host_parse_sandbox_id("a\0b", 3, &t), -1);
    assert_int_equal(host_parse_sandbox_id("a_b", 3, &t), -1);
    assert_int_equal(host_parse_sandbox_id("\xff", 1, &t), -1);
    memset(id, 'Q', sizeof(id));
    assert_int_equal(host_parse_sandbox_id(id, 63, &t), 0);
    assert_int_equal(t.id_len, 63);
    assert_int_equal(strlen(t.sandbox_id), 63);
    assert_int_equal(t.sandbox_id[0], 'q');
    assert_int_equal(host_parse_sandbox_id(id, 64, &t), -1);
}

static void test_status_message(void **state)
{
    int codes[] = {HOST_MALFORMED, HOST_FOREIGN_DOMAIN, HOST_BAD_SANDBOX_ID, HOST_BAD_PORT};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *m = host_status_message(codes[i]);

        assert_non_null(m);
        assert_true(strlen(m) > 10);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m, host_status_message(codes[j]));
    }
    assert_string_equal(host_status_message(HOST_BAD_PORT),
                        "Invalid host: the port is not a number in 1..65535");
    assert_string_equal(host_status_message(-99), "Invalid host");
    assert_non_null(host_status_message(HOST_OK));
    assert_non_null(host_status_message(HOST_NEEDS_HEADERS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_case_port_dot),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_needs_headers),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_id),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_len_is_exact),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_parse_port),
        cmocka_unit_test(test_parse_sandbox_id),
        cmocka_unit_test(test_status_message),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
