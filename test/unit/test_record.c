/* record_parse / record_mask_host: SPEC section 4, broken records included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "record.h"

/* Parses from an exact-size heap copy (no NUL after it) so ASan catches any
 * read past len. */
static int parse_n(const char *s, size_t len, struct record **r, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, len);
    rc = record_parse(copy, len, r, err, errlen);
    free(copy);
    return rc;
}

static struct record *ok(const char *json)
{
    struct record *r = (struct record *)1;
    char err[256] = "";

    if (parse_n(json, strlen(json), &r, err, sizeof(err)) != 0)
        fail_msg("unexpected error for %s: %s", json, err);
    assert_non_null(r);
    return r;
}

static void bad(const char *json, const char *want)
{
    struct record *r = (struct record *)1;
    char err[256] = "";

    assert_int_equal(parse_n(json, strlen(json), &r, err, sizeof(err)), -1);
    assert_null(r);
    assert_string_equal(err, want);
}

static void test_minimal_ipv4(void **state)
{
    struct record *r = ok("{\"address\":\"10.11.0.5\"}");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->addr;

    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(r->addr_len, sizeof(struct sockaddr_in));
    assert_int_equal(sin->sin_port, 0);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a0b0005);
    assert_string_equal(r->address, "10.11.0.5");
    assert_true(r->allow_public);
    assert_null(r->token);
    assert_int_equal(r->token_len, 0);
    assert_null(r->mask_host);
    assert_null(r->execution_id);
    assert_int_equal(r->max_connections, 0);
    record_free(r);
}

static void test_full_ipv6(void **state)
{
    struct record *r = ok(" {\n\t\"address\": \"fd00::a:5\", \"allowPublicTraffic\": false,"
                          " \"trafficAccessToken\": \"6f1c\\u00e9x\","
                          " \"maskRequestHost\": \"localhost:${PORT}\","
                          " \"executionId\": \"7d3e-1\", \"maxConnections\": 100,"
                          " \"futureField\": {\"x\": [1, 2]}, \"address2\": 5 }\r\n");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&r->addr;
    struct in6_addr want;

    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(r->addr_len, sizeof(struct sockaddr_in6));
    assert_int_equal(sin6->sin6_port, 0);
    assert_int_equal(inet_pton(AF_INET6, "fd00::a:5", &want), 1);
    assert_memory_equal(&sin6->sin6_addr, &want, 16);
    assert_string_equal(r->address, "fd00::a:5");
    assert_false(r->allow_public);
    assert_string_equal(r->token, "6f1c\xc3\xa9x");
    assert_int_equal(r->token_len, 7);
    assert_string_equal(r->mask_host, "localhost:${PORT}");
    assert_string_equal(r->execution_id, "7d3e-1");
    assert_int_equal(r->max_connections, 100);
    record_free(r);
}

static void test_nulls_are_absent(void **state)
{
    struct record *r = ok("{\"address\":\"::ffff:10.0.0.1\","
                          "\"allowPublicTraffic\":null,"
                          "\"trafficAccessToken\":null,"
                          "\"maskRequestHost\":null,\"executionId\":null,"
                          "\"maxConnections\":null}");

    assert_int_equal(r->addr.ss_family, AF_INET6);
    assert_true(r->allow_public);
    assert_null(r->token);
    assert_null(r->mask_host);
    assert_null(r->execution_id);
    assert_int_equal(r->max_connections, 0);
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":true,"
           "\"trafficAccessToken\":\"\",\"maxConnections\":0}");
    assert_true(r->allow_public);
    assert_null(r->token);
    assert_int_equal(r->max_connections, 0);
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\",\"maxConnections\":4294967295,"
           "\"executionId\":\"\"}");
    assert_int_equal(r->max_connections, 4294967295u);
    assert_string_equal(r->execution_id, "");
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\",\"maxConnections\":1e2}");
    assert_int_equal(r->max_connections, 100);
    record_free(r);
}

static void test_not_json(void **state)
{
    bad("", "not valid JSON");
    bad(" ", "not valid JSON");
    bad("{", "not valid JSON");
    bad("{\"address\":\"1.2.3.4\"", "not valid JSON");
    bad("{\"address\":\"1.2.3.4\",}", "not valid JSON");
    bad("{'address':'1.2.3.4'}", "not valid JSON");
    bad("address=1.2.3.4", "not valid JSON");
    bad("{\"address\":\"1.2.3.4\"} {}", "not valid JSON (data after the object)");
    bad("{\"address\":\"1.2.3.4\"}x", "not valid JSON (data after the object)");
    bad("[\"address\",\"1.2.3.4\"]", "not a JSON object");
    bad("\"1.2.3.4\"", "not a JSON object");
    bad("null", "not a JSON object");
    bad("42", "not a JSON object");
    bad("\xff\xfe", "not valid JSON");
}

static void test_nul_and_control_bytes(void **state)
{
    struct record *r = (struct record *)1;
    char err[128];
    static const char after[] = "{\"address\":\"1.2.3.4\"}\0garbage";
    static const char inside[] = "{\"address\":\"1.2.3.4\0junk\"}";
    static const char tok[] = "{\"address\":\"1.2.3.4\",\"allowPublicTraffic\""
                              ":false,\"trafficAccessToken\":\"ab\0cd\"}";

    assert_int_equal(parse_n(after, sizeof(after) - 1, &r, err, sizeof(err)), -1);
    assert_string_equal(err, "not valid JSON");
    assert_int_equal(parse_n(inside, sizeof(inside) - 1, &r, err, sizeof(err)), -1);
    assert_string_equal(err, "not valid JSON");
    assert_int_equal(parse_n(tok, sizeof(tok) - 1, &r, err, sizeof(err)), -1);
    assert_null(r);
    /* Escaped NUL would silently shorten the token. */
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":false,"
        "\"trafficAccessToken\":\"ab\\u0000cd\"}",
        "not valid JSON");
    /* An escaped backslash before "u0000" is just text. */
    r = ok("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":false,"
           "\"trafficAccessToken\":\"ab\\\\u0000cd\"}");
    assert_string_equal(r->token, "ab\\u0000cd");
    assert_int_equal(r->token_len, 10);
    record_free(r);
    /* Raw tab inside a string: not JSON. */
    bad("{\"address\":\"1.2.3.4\",\"executionId\":\"a\tb\"}", "not valid JSON");
    /* The prefix of a valid record, cut one byte short. */
    {
        const char *full = "{\"address\":\"1.2.3.4\"}";

        for (size_t n = 0; n < strlen(full); n++) {
            assert_int_equal(parse_n(full, n, &r, err, sizeof(err)), -1);
            assert_null(r);
        }
    }
}

static void test_address(void **state)
{
    bad("{}", "address missing");
    bad("{\"address\":null}", "address missing");
    bad("{\"Address\":\"1.2.3.4\"}", "address missing");
    bad("{\"address\":167772165}", "address is not a string");
    bad("{\"address\":[\"1.2.3.4\"]}", "address is not a string");
    bad("{\"address\":\"\"}", "address is not an IP literal");
    bad("{\"address\":\"1.2.3.4:80\"}", "address is not an IP literal");
    bad("{\"address\":\"[::1]\"}", "address is not an IP literal");
    bad("{\"address\":\"localhost\"}", "address is not an IP literal");
    bad("{\"address\":\"1.2.3\"}", "address is not an IP literal");
    bad("{\"address\":\"256.1.1.1\"}", "address is not an IP literal");
    bad("{\"address\":\" 1.2.3.4\"}", "address is not an IP literal");
    bad("{\"address\":\"fe80::1%eth0\"}", "address is not an IP literal");
    bad("{\"address\":\"1.2.3.4\",\"address\":\"5.6.7.8\"}", "address appears more than once");
    {
        char buf[400];

        strcpy(buf, "{\"address\":\"");
        memset(buf + 12, '1', 200);
        strcpy(buf + 212, "\"}");
        bad(buf, "address is not an IP literal");
    }
    {
        /* The longest IPv6 text form fits address[]. */
        struct record *r = ok("{\"address\":\"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255\"}");

        assert_string_equal(r->address, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
        record_free(r);
    }
}

static void test_fields(void **state)
{
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":\"false\"}",
        "allowPublicTraffic is not a boolean");
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":0}",
        "allowPublicTraffic is not a boolean");
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":false}",
        "trafficAccessToken missing while allowPublicTraffic is false");
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":false,"
        "\"trafficAccessToken\":null}",
        "trafficAccessToken missing while allowPublicTraffic is false");
    bad("{\"address\":\"1.2.3.4\",\"allowPublicTraffic\":false,"
        "\"trafficAccessToken\":\"\"}",
        "trafficAccessToken empty while allowPublicTraffic is false");
    bad("{\"address\":\"1.2.3.4\",\"trafficAccessToken\":123}",
        "trafficAccessToken is not a string");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":5}", "maskRequestHost is not a string");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"\"}",
        "maskRequestHost is not a non-empty string of visible ASCII");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"a b\"}",
        "maskRequestHost is not a non-empty string of visible ASCII");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"a\\r\\nX-Evil: 1\"}",
        "maskRequestHost is not a non-empty string of visible ASCII");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"h\\u00e9\"}",
        "maskRequestHost is not a non-empty string of visible ASCII");
    bad("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"h\\u007f\"}",
        "maskRequestHost is not a non-empty string of visible ASCII");
    bad("{\"address\":\"1.2.3.4\",\"executionId\":7}", "executionId is not a string");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":-1}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":1.5}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":\"10\"}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":4294967296}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":1e999}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":true}",
        "maxConnections is not a non-negative integer");
    bad("{\"address\":\"1.2.3.4\",\"maxConnections\":1,\"maxConnections\":2}",
        "maxConnections appears more than once");
}

static void test_err_buffer(void **state)
{
    struct record *r;
    char err[8];

    /* Truncated, still terminated; NULL err is fine too. */
    assert_int_equal(record_parse("{}", 2, &r, err, sizeof(err)), -1);
    assert_string_equal(err, "address");
    assert_int_equal(record_parse("{}", 2, &r, NULL, 0), -1);
    assert_int_equal(record_parse(NULL, 0, &r, NULL, 0), -1);
    assert_null(r);
}

static void test_huge_and_deep(void **state)
{
    size_t n = 4 << 20, i;
    char *buf = malloc(n + 64);
    struct record *r = (struct record *)1;
    char err[128];

    assert_non_null(buf);
    /* A 4 MiB token: legal, kept whole. */
    strcpy(buf, "{\"address\":\"1.2.3.4\",\"trafficAccessToken\":\"");
    i = strlen(buf);
    memset(buf + i, 'a', n);
    strcpy(buf + i + n, "\"}");
    assert_int_equal(parse_n(buf, strlen(buf), &r, err, sizeof(err)), 0);
    assert_int_equal(r->token_len, n);
    record_free(r);
    /* Deep nesting: cJSON's limit, not the stack, stops it. */
    for (i = 0; i < 100000; i++)
        buf[i] = '[';
    assert_int_equal(parse_n(buf, 100000, &r, err, sizeof(err)), -1);
    assert_string_equal(err, "not valid JSON");
    free(buf);
}

static void test_mask_host(void **state)
{
    struct record *r = ok("{\"address\":\"1.2.3.4\","
                          "\"maskRequestHost\":\"${PORT}-x.local:${PORT}x${POR}"
                          "$${PORT}\"}");
    char buf[64];

    assert_int_equal(record_mask_host(r, 3000, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "3000-x.local:3000x${POR}$3000");
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"localhost:${PORT}\"}");
    assert_int_equal(record_mask_host(r, 65535, buf, sizeof(buf)), 15);
    assert_string_equal(buf, "localhost:65535");
    /* Exactly fits (15 + NUL), one byte short. */
    assert_int_equal(record_mask_host(r, 65535, buf, 16), 15);
    assert_string_equal(buf, "localhost:65535");
    assert_int_equal(record_mask_host(r, 65535, buf, 15), -1);
    assert_int_equal(record_mask_host(r, 1, buf, 12), 11);
    assert_string_equal(buf, "localhost:1");
    assert_int_equal(record_mask_host(r, 1, buf, 11), -1);
    assert_int_equal(record_mask_host(r, 1, buf, 0), -1);
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\",\"maskRequestHost\":\"fixed.host\"}");
    assert_int_equal(record_mask_host(r, 80, buf, sizeof(buf)), 10);
    assert_string_equal(buf, "fixed.host");
    record_free(r);

    r = ok("{\"address\":\"1.2.3.4\"}");
    assert_int_equal(record_mask_host(r, 80, buf, sizeof(buf)), -1);
    record_free(r);
    assert_int_equal(record_mask_host(NULL, 80, buf, sizeof(buf)), -1);
    record_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_ipv4),
        cmocka_unit_test(test_full_ipv6),
        cmocka_unit_test(test_nulls_are_absent),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_nul_and_control_bytes),
        cmocka_unit_test(test_address),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_huge_and_deep),
        cmocka_unit_test(test_mask_host),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
