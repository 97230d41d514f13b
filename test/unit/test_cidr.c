/* common/cidr.c: networks, canonical addresses (IPv4-mapped IPv6 is IPv4),
 * containment at the boundaries, formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "cidr.h"

/* From an exact-size heap copy (no NUL after it): ASan sees any read past
 * len. */
static int parse(const char *s, struct cidr *c)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, n);
    rc = cidr_parse(copy, n, c);
    free(copy);
    return rc;
}

static struct cidr net(const char *s)
{
    struct cidr c;

    if (parse(s, &c) != 0)
        fail_msg("cidr_parse(%s) failed", s);
    return c;
}

static struct cidr_addr addr(const char *s)
{
    struct cidr_addr a;

    if (cidr_addr_parse(s, strlen(s), &a) != 0)
        fail_msg("cidr_addr_parse(%s) failed", s);
    return a;
}

static bool in(const char *network, const char *address)
{
    struct cidr c = net(network);
    struct cidr_addr a = addr(address);

    return cidr_contains(&c, &a);
}

static const char *fmt(const char *s)
{
    static char buf[CIDR_STRLEN];
    struct cidr c = net(s);

    assert_true(cidr_format(&c, buf, sizeof(buf)) > 0);
    return buf;
}

static void test_parse_forms(void **state)
{
    struct cidr c = net("10.0.0.0/8");

    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    c = net("1.1.1.1");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 32);
    assert_true(cidr_is_host(&c));
    c = net("2001:db8::/32");
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 32);
    c = net("::1");
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    assert_true(cidr_is_host(&c));
    c = net("0.0.0.0/0");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 0);
    c = net("::/0");
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 0);
    c = net("10.0.0.0/008");
    assert_int_equal(c.prefix, 8);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/-8",
        "10.0.0.0/0008",
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.0.0/8",
        "010.0.0.1",
        "10.0.0.256",
        "localhost",
        "example.com",
        "1.2.3.4/8/8",
        "[::1]",
        "fe80::1%eth0",
        "10.0.0.0/+8",
        "10.0.0.0/8a",
        "::1/1e2",
        "1.2.3.4:80",
        "0x7f.0.0.1",
        "*.example.com",
        "*",
    };
    struct cidr c;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &c) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    /* An embedded NUL is not the end of the string. */
    assert_int_equal(cidr_parse("1.2.3.4\0/8", 10, &c), -1);
    assert_int_equal(cidr_parse(NULL, 0, &c), -1);
}

static void test_host_bits_cleared(void **state)
{
    struct cidr c = net("10.1.2.3/8");

    assert_int_equal(c.addr[0], 10);
    assert_int_equal(c.addr[1], 0);
    assert_int_equal(c.addr[3], 0);
    c = net("100.64.1.2/23");
    assert_int_equal(c.addr[2], 0);
    c = net("1.2.3.4/0");
    assert_int_equal(c.addr[0], 0);
    assert_string_equal(fmt("2001:db8:ffff::1/32"), "2001:db8::/32");
    assert_string_equal(fmt("192.168.1.255/25"), "192.168.1.128/25");
}

static void test_mapped_networks_become_ipv4(void **state)
{
    struct cidr c = net("::ffff:10.0.0.0/104");

    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    c = net("::ffff:1.2.3.4");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 32);
    assert_string_equal(fmt("::ffff:1.2.3.4"), "1.2.3.4");
    /* ::ffff:0:0/96 is every IPv4 address. */
    c = net("::ffff:0:0/96");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 0);
    /* Shorter than 96 bits it is an IPv6 network that happens to hold the
     * mapped range: left alone. */
    c = net("::ffff:0:0/95");
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 95);
    /* Not mapped: IPv4-compatible, NAT64 stay IPv6. */
    c = net("::10.0.0.1");
    assert_int_equal(c.family, AF_INET6);
    c = net("64:ff9b::10.0.0.1");
    assert_int_equal(c.family, AF_INET6);
}

static void test_mapped_addresses_become_ipv4(void **state)
{
    struct cidr_addr a = addr("::ffff:192.0.2.1");
    struct sockaddr_in6 sin6;
    struct sockaddr_in sin;

    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.addr[0], 192);
    assert_int_equal(a.addr[3], 1);

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.9.8.7", &sin6.sin6_addr), 1);
    assert_int_equal(cidr_addr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.addr[0], 10);
    assert_int_equal(a.addr[3], 7);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr), 1);
    assert_int_equal(cidr_addr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_int_equal(a.addr[15], 5);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(443);
    sin.sin_addr.s_addr = htonl(0x7f000001);
    assert_int_equal(cidr_addr_from_sockaddr((struct sockaddr *)&sin, &a), 0);
    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.addr[0], 127);

    assert_int_equal(cidr_sockaddr_port((struct sockaddr *)&sin), 443);
    sin6.sin6_port = htons(15443);
    assert_int_equal(cidr_sockaddr_port((struct sockaddr *)&sin6), 15443);

    sin.sin_family = AF_UNIX;
    assert_int_equal(cidr_sockaddr_port((struct sockaddr *)&sin), 0);
    assert_int_equal(cidr_addr_from_sockaddr((struct sockaddr *)&sin, &a), -1);
    assert_int_equal(cidr_addr_from_sockaddr(NULL, &a), -1);
    assert_int_equal(cidr_addr_parse("10.0.0.0/8", 10, &a), -1);
    assert_int_equal(cidr_addr_parse("", 0, &a), -1);

    /* And back, for rules written as IPv6. */
    {
        struct cidr_addr v4 = addr("1.2.3.4"), m;

        cidr_addr_mapped(&v4, &m);
        assert_int_equal(m.family, AF_INET6);
        assert_int_equal(m.addr[10], 0xff);
        assert_int_equal(m.addr[11], 0xff);
        assert_int_equal(m.addr[12], 1);
        assert_int_equal(m.addr[15], 4);
    }
}

static void test_contains_boundaries(void **state)
{
    assert_true(in("10.0.0.0/8", "10.0.0.0"));
    assert_true(in("10.0.0.0/8", "10.255.255.255"));
    assert_false(in("10.0.0.0/8", "11.0.0.0"));
    assert_false(in("10.0.0.0/8", "9.255.255.255"));
    assert_true(in("100.64.0.0/10", "100.127.255.255"));
    assert_false(in("100.64.0.0/10", "100.128.0.0"));
    assert_false(in("100.64.0.0/10", "100.63.255.255"));
    assert_true(in("1.1.1.1", "1.1.1.1"));
    assert_false(in("1.1.1.1", "1.1.1.2"));
    assert_true(in("0.0.0.0/0", "255.255.255.255"));
    assert_true(in("fe80::/10", "febf:ffff::1"));
    assert_false(in("fe80::/10", "fec0::1"));
    assert_true(in("fc00::/7", "fdff::1"));
    assert_false(in("fc00::/7", "fe00::1"));
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_true(in("2001:db8::/127", "2001:db8::1"));
    assert_false(in("2001:db8::/127", "2001:db8::2"));
    /* A mapped destination is decided as IPv4, by IPv4 networks only. */
    assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert_true(in("::ffff:10.0.0.0/104", "10.1.2.3"));
    /* Families never cross: ::/0 is all IPv6, not IPv4 too, and IPv4
     * networks hold no IPv6 address (ALL_TRAFFIC is the policy's job). */
    assert_false(in("::/0", "1.2.3.4"));
    assert_false(in("::/0", "::ffff:1.2.3.4"));
    assert_true(in("::/0", "2001:db8::1"));
    assert_false(in("0.0.0.0/0", "2001:db8::1"));
    assert_false(in("0.0.0.0/0", "::"));
}

static void test_find(void **state)
{
    struct cidr nets[3] = {net("10.0.0.0/8"), net("fc00::/7"), net("10.1.0.0/16")};
    struct cidr_addr a = addr("10.1.2.3");

    assert_int_equal(cidr_find(nets, 3, &a), 0);
    a = addr("fd00::1");
    assert_int_equal(cidr_find(nets, 3, &a), 1);
    a = addr("8.8.8.8");
    assert_int_equal(cidr_find(nets, 3, &a), -1);
    assert_int_equal(cidr_find(nets, 0, &a), -1);
}

static void test_format(void **state)
{
    char small[4];
    struct cidr c = net("10.0.0.0/8");

    assert_string_equal(fmt("10.0.0.0/8"), "10.0.0.0/8");
    assert_string_equal(fmt("1.1.1.1/32"), "1.1.1.1");
    assert_string_equal(fmt("::1"), "::1");
    assert_string_equal(fmt("::/0"), "::/0");
    assert_string_equal(fmt("0.0.0.0/0"), "0.0.0.0/0");
    assert_string_equal(fmt("FE80::/10"), "fe80::/10");
    assert_string_equal(fmt("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/127"),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
    assert_int_equal(cidr_format(&c, small, sizeof(small)), 0);
    assert_string_equal(small, "");
    assert_int_equal(cidr_format(&c, NULL, 0), 0);
    /* Whatever it prints parses back to itself. */
    {
        static const char *const all[] = {"10.0.0.0/8",   "2001:db8::/32", "::ffff:0:0/95",
                                          "64:ff9b::/96", "::/128",        "255.255.255.255"};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            struct cidr a = net(all[i]), b = net(fmt(all[i]));
            assert_memory_equal(&a, &b, sizeof(a));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_host_bits_cleared),
        cmocka_unit_test(test_mapped_networks_become_ipv4),
        cmocka_unit_test(test_mapped_addresses_become_ipv4),
        cmocka_unit_test(test_contains_boundaries),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
