/* egress_policy_parse / egress_decide / egress_name_normalize: SPEC section
 * 9, its examples, and broken records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "egress_policy.h"

/* From an exact-size heap copy (no NUL after it): ASan sees any read past
 * len. */
static int parse_n(const char *s, size_t len, struct egress_policy **p, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, len);
    rc = egress_policy_parse(copy, len, p, err, errlen);
    free(copy);
    return rc;
}

static struct egress_policy *ok(const char *json)
{
    struct egress_policy *p = (struct egress_policy *)1;
    char err[256] = "";

    if (parse_n(json, strlen(json), &p, err, sizeof(err)) != 0)
        fail_msg("unexpected error for %s: %s", json, err);
    assert_non_null(p);
    return p;
}

static void bad(const char *json, const char *want)
{
    struct egress_policy *p = (struct egress_policy *)1;
    char err[256] = "";

    if (parse_n(json, strlen(json), &p, err, sizeof(err)) != -1)
        fail_msg("accepted %s", json);
    assert_null(p);
    assert_string_equal(err, want);
}

/* The destination "ip" port `port`, IPv4 or IPv6 by its spelling. */
static struct sockaddr_storage dst(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
    }
    return ss;
}

/* The default always_deny, abridged, and one nameserver. */
static struct cidr always[4], ns[1];
static struct egress_env env = {always, 4, ns, 1};

static int setup_env(void **state)
{
    static const char *const a[] = {"10.0.0.0/8", "127.0.0.0/8", "fc00::/7", "169.254.0.0/16"};

    for (size_t i = 0; i < 4; i++)
        assert_int_equal(cidr_parse(a[i], strlen(a[i]), &always[i]), 0);
    assert_int_equal(cidr_parse("8.8.8.8", 7, &ns[0]), 0);
    return 0;
}

/* Decides and checks the verdict and the rule string. */
static void expect(const struct egress_policy *p, const char *ip, uint16_t port, const char *name,
                   enum egress_verdict want, const char *rule)
{
    struct sockaddr_storage ss = dst(ip, port);
    struct egress_decision d;
    enum egress_verdict v;

    memset(&d, 'x', sizeof(d));
    v = egress_decide(p, &env, (const struct sockaddr *)&ss, name, &d);
    if (v != want || d.verdict != want || strcmp(d.rule, rule) != 0)
        fail_msg("%s:%u name %s: got %s \"%s\", want %s \"%s\"", ip, port, name ? name : "-",
                 v == EGRESS_ALLOW ? "allow" : "deny", d.rule,
                 want == EGRESS_ALLOW ? "allow" : "deny", rule);
}

#define ALLOW EGRESS_ALLOW
#define DENY EGRESS_DENY

static void test_spec_example_record(void **state)
{
    struct egress_policy *p =
        ok("{\"sandboxId\": \"i62mff4ahtrdfdkyn2esc\", \"allowInternetAccess\": true,"
           " \"allowOut\": [\"api.example.com\", \"*.github.com\", \"1.1.1.1\", \"8.8.8.0/24\"],"
           " \"denyOut\": [\"0.0.0.0/0\"], \"maxConnections\": 256}");

    assert_string_equal(p->sandbox_id, "i62mff4ahtrdfdkyn2esc");
    assert_true(p->allow_internet);
    assert_int_equal(p->allow_count, 4);
    assert_int_equal(p->allow[0].type, EGRESS_RULE_NAME);
    assert_string_equal(p->allow[0].name, "api.example.com");
    assert_int_equal(p->allow[1].type, EGRESS_RULE_WILDCARD);
    assert_string_equal(p->allow[1].name, ".github.com");
    assert_int_equal(p->allow[2].type, EGRESS_RULE_NET);
    assert_int_equal(p->allow[3].type, EGRESS_RULE_NET);
    assert_int_equal(p->deny_count, 1);
    assert_int_equal(p->deny[0].type, EGRESS_RULE_ALL);
    assert_int_equal(p->max_connections, 256);
    assert_true(p->has_names);

    expect(p, "192.0.2.10", 443, "api.example.com", ALLOW, "allowOut[0] api.example.com");
    expect(p, "192.0.2.10", 443, "x.github.com", ALLOW, "allowOut[1] *.github.com");
    expect(p, "192.0.2.10", 443, "other.example.com", DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "1.1.1.1", 22, NULL, ALLOW, "allowOut[2] 1.1.1.1");
    expect(p, "8.8.8.200", 853, NULL, ALLOW, "allowOut[3] 8.8.8.0/24");
    expect(p, "8.8.9.1", 853, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    /* ALL_TRAFFIC covers IPv6 too. */
    expect(p, "2001:db8::1", 443, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "2001:db8::1", 443, "api.example.com", ALLOW, "allowOut[0] api.example.com");
    egress_policy_free(p);
}

static void test_defaults_and_empty(void **state)
{
    struct egress_policy *p = ok("{}");

    assert_null(p->sandbox_id);
    assert_true(p->allow_internet);
    assert_int_equal(p->allow_count, 0);
    assert_int_equal(p->deny_count, 0);
    assert_int_equal(p->max_connections, 0);
    assert_false(p->has_names);
    expect(p, "192.0.2.1", 80, "example.com", ALLOW, "default allow");
    expect(p, "2001:db8::1", 80, NULL, ALLOW, "default allow");
    egress_policy_free(p);

    /* null is absent, unknown fields ignored. */
    p = ok("{\"sandboxId\":null,\"allowInternetAccess\":null,\"allowOut\":null,"
           "\"denyOut\":null,\"maxConnections\":null,\"future\":{\"x\":1}}");
    assert_true(p->allow_internet);
    assert_int_equal(p->allow_count + p->deny_count, 0);
    egress_policy_free(p);
}

static void test_no_internet_is_deny_all(void **state)
{
    struct egress_policy *p = ok("{\"allowInternetAccess\": false}");

    expect(p, "192.0.2.1", 80, "example.com", DENY, "allowInternetAccess false");
    expect(p, "2001:db8::1", 443, NULL, DENY, "allowInternetAccess false");
    expect(p, "::ffff:192.0.2.1", 443, NULL, DENY, "allowInternetAccess false");
    egress_policy_free(p);

    /* ... and allow still beats it. */
    p = ok("{\"allowInternetAccess\": false, \"allowOut\": [\"192.0.2.0/24\", \"example.com\"]}");
    expect(p, "192.0.2.7", 80, NULL, ALLOW, "allowOut[0] 192.0.2.0/24");
    expect(p, "198.51.100.7", 80, "example.com", ALLOW, "allowOut[1] example.com");
    expect(p, "198.51.100.7", 80, "www.example.com", DENY, "allowInternetAccess false");
    egress_policy_free(p);
}

static void test_allow_beats_deny(void **state)
{
    struct egress_policy *p = ok("{\"allowOut\":[\"203.0.113.5\"],"
                                 "\"denyOut\":[\"203.0.113.0/24\",\"203.0.113.5\"]}");

    expect(p, "203.0.113.5", 80, NULL, ALLOW, "allowOut[0] 203.0.113.5");
    expect(p, "203.0.113.6", 80, NULL, DENY, "denyOut[0] 203.0.113.0/24");
    expect(p, "203.0.114.6", 80, NULL, ALLOW, "default allow");
    egress_policy_free(p);

    /* Deny one address only (SPEC example "a denied IP only"). */
    p = ok("{\"denyOut\":[\"198.51.100.9\"]}");
    expect(p, "198.51.100.9", 443, NULL, DENY, "denyOut[0] 198.51.100.9");
    expect(p, "198.51.100.9", 443, "example.com", DENY, "denyOut[0] 198.51.100.9");
    expect(p, "198.51.100.10", 443, NULL, ALLOW, "default allow");
    egress_policy_free(p);

    /* ALL_TRAFFIC allowed, but always_deny still wins. */
    p = ok("{\"allowOut\":[\"0.0.0.0/0\"],\"denyOut\":[\"0.0.0.0/0\"]}");
    expect(p, "192.0.2.1", 80, NULL, ALLOW, "allowOut[0] 0.0.0.0/0");
    expect(p, "2001:db8::1", 80, NULL, ALLOW, "allowOut[0] 0.0.0.0/0");
    expect(p, "10.1.2.3", 80, NULL, DENY, "always_deny 10.0.0.0/8");
    egress_policy_free(p);
}

static void test_ipv6_rules(void **state)
{
    struct egress_policy *p =
        ok("{\"allowOut\":[\"2001:db8:1::/48\"],\"denyOut\":[\"::/0\",\"192.0.2.0/24\"]}");

    expect(p, "2001:db8:1::5", 443, NULL, ALLOW, "allowOut[0] 2001:db8:1::/48");
    expect(p, "2001:db8:2::5", 443, NULL, DENY, "denyOut[0] ::/0");
    /* ::/0 is IPv6 only: IPv4 destinations pass it. */
    expect(p, "198.51.100.1", 443, NULL, ALLOW, "default allow");
    expect(p, "192.0.2.1", 443, NULL, DENY, "denyOut[1] 192.0.2.0/24");
    egress_policy_free(p);
}

static void test_mapped_destinations_are_ipv4(void **state)
{
    struct egress_policy *p = ok("{\"allowOut\":[\"192.0.2.5\"],\"denyOut\":[\"192.0.2.0/24\"]}");

    expect(p, "::ffff:192.0.2.5", 80, NULL, ALLOW, "allowOut[0] 192.0.2.5");
    expect(p, "::ffff:192.0.2.6", 80, NULL, DENY, "denyOut[0] 192.0.2.0/24");
    /* always_deny is IPv4: a mapped private address is refused. */
    expect(p, "::ffff:10.0.0.1", 80, NULL, DENY, "always_deny 10.0.0.0/8");
    expect(p, "::ffff:127.0.0.1", 80, NULL, DENY, "always_deny 127.0.0.0/8");
    egress_policy_free(p);

    /* Rules written mapped are IPv4 rules. */
    p = ok("{\"denyOut\":[\"::ffff:198.51.100.0/120\"]}");
    assert_int_equal(p->deny[0].net.family, AF_INET);
    expect(p, "198.51.100.1", 80, NULL, DENY, "denyOut[0] 198.51.100.0/24");
    egress_policy_free(p);
}

static void test_wildcards(void **state)
{
    struct egress_policy *p = ok("{\"allowOut\":[\"*.example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}");

    expect(p, "192.0.2.1", 443, "a.example.com", ALLOW, "allowOut[0] *.example.com");
    expect(p, "192.0.2.1", 443, "a.b.c.example.com", ALLOW, "allowOut[0] *.example.com");
    /* Not the apex, not a name that merely ends the same way. */
    expect(p, "192.0.2.1", 443, "example.com", DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "192.0.2.1", 443, "badexample.com", DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "192.0.2.1", 443, "example.com.evil.test", DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "192.0.2.1", 443, "com", DENY, "denyOut[0] 0.0.0.0/0");
    /* No name (other ports, no SNI): by address. */
    expect(p, "192.0.2.1", 443, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    egress_policy_free(p);

    /* Apex and wildcard together; "*" is any name. */
    p = ok("{\"allowOut\":[\"example.com\",\"*.example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}");
    expect(p, "192.0.2.1", 443, "example.com", ALLOW, "allowOut[0] example.com");
    expect(p, "192.0.2.1", 443, "www.example.com", ALLOW, "allowOut[1] *.example.com");
    egress_policy_free(p);
    p = ok("{\"allowOut\":[\"*\"],\"denyOut\":[\"0.0.0.0/0\"]}");
    assert_int_equal(p->allow[0].type, EGRESS_RULE_ANY_NAME);
    expect(p, "192.0.2.1", 443, "anything.test", ALLOW, "allowOut[0] *");
    expect(p, "192.0.2.1", 22, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    egress_policy_free(p);
}

static void test_names_normalised_in_the_record(void **state)
{
    struct egress_policy *p =
        ok("{\"allowOut\":[\"API.Example.COM.\",\"*.GitHub.com.\",\"xn--bcher-kva.example\"]}");

    assert_string_equal(p->allow[0].name, "api.example.com");
    assert_string_equal(p->allow[1].name, ".github.com");
    assert_string_equal(p->allow[2].name, "xn--bcher-kva.example");
    expect(p, "192.0.2.1", 80, "api.example.com", ALLOW, "allowOut[0] api.example.com");
    egress_policy_free(p);
}

static void test_order_first_match_and_always_deny_first(void **state)
{
    struct egress_policy *p =
        ok("{\"allowOut\":[\"10.0.0.0/8\",\"internal.example\",\"192.0.2.0/24\",\"192.0.2.1\"],"
           "\"denyOut\":[\"0.0.0.0/0\"]}");

    /* always_deny wins over any allow, name or address. */
    expect(p, "10.1.1.1", 80, NULL, DENY, "always_deny 10.0.0.0/8");
    expect(p, "10.1.1.1", 80, "internal.example", DENY, "always_deny 10.0.0.0/8");
    expect(p, "fd00::1", 80, "internal.example", DENY, "always_deny fc00::/7");
    /* The first matching allowOut entry is the one named. */
    expect(p, "192.0.2.1", 80, NULL, ALLOW, "allowOut[2] 192.0.2.0/24");
    /* A name match is reported before an address match. */
    expect(p, "192.0.2.1", 80, "internal.example", ALLOW, "allowOut[1] internal.example");
    egress_policy_free(p);
}

static void test_nameservers(void **state)
{
    struct egress_policy *p = ok("{\"allowOut\":[\"example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}");
    struct egress_policy *q = ok("{\"allowOut\":[\"192.0.2.1\"],\"denyOut\":[\"0.0.0.0/0\"]}");
    struct cidr private_ns;
    struct egress_env e2;

    expect(p, "8.8.8.8", 53, NULL, ALLOW, "nameserver 8.8.8.8");
    expect(p, "8.8.8.8", 853, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "8.8.4.4", 53, NULL, DENY, "denyOut[0] 0.0.0.0/0");
    expect(p, "::ffff:8.8.8.8", 53, NULL, ALLOW, "nameserver 8.8.8.8");
    /* Without names in allowOut the nameserver is just an address. */
    expect(q, "8.8.8.8", 53, NULL, DENY, "denyOut[0] 0.0.0.0/0");

    /* A resolver the operator put in a private range passes always_deny,
     * on port 53 only. */
    assert_int_equal(cidr_parse("10.0.0.2", 8, &private_ns), 0);
    e2 = env;
    e2.nameservers = &private_ns;
    {
        struct sockaddr_storage ss = dst("10.0.0.2", 53);
        struct egress_decision d;

        assert_int_equal(egress_decide(p, &e2, (struct sockaddr *)&ss, NULL, &d), ALLOW);
        assert_int_equal(d.by, EGRESS_BY_NAMESERVER);
        assert_string_equal(d.rule, "nameserver 10.0.0.2");
        ss = dst("10.0.0.2", 22);
        assert_int_equal(egress_decide(p, &e2, (struct sockaddr *)&ss, NULL, &d), DENY);
        assert_int_equal(d.by, EGRESS_BY_ALWAYS_DENY);
    }
    egress_policy_free(p);
    egress_policy_free(q);
}

static void test_decision_details(void **state)
{
    struct egress_policy *p = ok("{\"allowOut\":[\"a.test\",\"192.0.2.1\"],\"denyOut\":[\"::/0\"],"
                                 "\"allowInternetAccess\":false}");
    struct sockaddr_storage ss;
    struct egress_decision d;

    ss = dst("192.0.2.1", 80);
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, NULL, &d), ALLOW);
    assert_int_equal(d.by, EGRESS_BY_ALLOW_ADDR);
    assert_int_equal(d.index, 1);
    assert_string_equal(egress_decided_by_name(d.by), "allow_address");
    ss = dst("192.0.2.2", 80);
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, "a.test", &d), ALLOW);
    assert_int_equal(d.by, EGRESS_BY_ALLOW_NAME);
    assert_int_equal(d.index, 0);
    ss = dst("2001:db8::2", 80);
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, NULL, &d), DENY);
    assert_int_equal(d.by, EGRESS_BY_DENY_ADDR);
    assert_int_equal(d.index, 0);
    ss = dst("192.0.2.2", 80);
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, NULL, &d), DENY);
    assert_int_equal(d.by, EGRESS_BY_NO_INTERNET);
    assert_int_equal(d.index, -1);
    ss = dst("127.0.0.1", 80);
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, NULL, &d), DENY);
    assert_int_equal(d.by, EGRESS_BY_ALWAYS_DENY);
    assert_int_equal(d.index, 1);

    /* No policy: not a sandbox. No address: nothing to decide on. */
    ss = dst("192.0.2.1", 80);
    assert_int_equal(egress_decide(NULL, &env, (struct sockaddr *)&ss, "a.test", &d), DENY);
    assert_int_equal(d.by, EGRESS_BY_NO_POLICY);
    assert_string_equal(d.rule, "no policy");
    ss.ss_family = AF_UNIX;
    assert_int_equal(egress_decide(p, &env, (struct sockaddr *)&ss, NULL, &d), DENY);
    assert_int_equal(d.by, EGRESS_BY_NO_ADDRESS);
    assert_int_equal(egress_decide(p, &env, NULL, NULL, &d), DENY);
    assert_true(d.rule[0] != '\0');
    /* No environment: no always_deny, no nameservers. */
    ss = dst("127.0.0.1", 80);
    assert_int_equal(egress_decide(p, NULL, (struct sockaddr *)&ss, "a.test", &d), ALLOW);
    for (int by = EGRESS_BY_NO_POLICY; by <= EGRESS_BY_DEFAULT; by++)
        assert_string_not_equal(egress_decided_by_name((enum egress_decided_by)by), "unknown");
    assert_string_equal(egress_decided_by_name((enum egress_decided_by)99), "unknown");
    /* The kinds the proxy decides around egress_decide: named, all deny;
     * the verdict of every kind is the one egress_decide gives with it. */
    assert_string_equal(egress_decided_by_name(EGRESS_BY_BROKEN), "broken_policy");
    assert_string_equal(egress_decided_by_name(EGRESS_BY_UNAVAILABLE), "unavailable");
    assert_string_equal(egress_decided_by_name(EGRESS_BY_UNRESOLVED), "unresolved");
    assert_string_equal(egress_decided_by_name(EGRESS_BY_MAX_CONNECTIONS), "max_connections");
    assert_string_equal(egress_decided_by_name(EGRESS_BY_COUNT), "unknown");
    for (int by = 0; by < EGRESS_BY_COUNT; by++) {
        bool allows = by == EGRESS_BY_NAMESERVER || by == EGRESS_BY_ALLOW_NAME ||
                      by == EGRESS_BY_ALLOW_ADDR || by == EGRESS_BY_DEFAULT;
        assert_int_equal(egress_decided_by_verdict((enum egress_decided_by)by),
                         allows ? ALLOW : DENY);
    }
    egress_policy_free(p);
}

static void norm(const char *in, bool port, const char *want)
{
    char out[EGRESS_NAME_MAX + 1];
    size_t n = strlen(in);
    char *copy = malloc(n ? n : 1);
    int rc;

    memcpy(copy, in, n);
    memset(out, 'x', sizeof(out));
    rc = egress_name_normalize(copy, n, port, out, sizeof(out));
    free(copy);
    if (want == NULL) {
        if (rc != -1)
            fail_msg("\"%s\" normalised to \"%s\", want refusal", in, out);
        return;
    }
    if (rc < 0)
        fail_msg("\"%s\" refused, want \"%s\"", in, want);
    assert_int_equal(rc, strlen(want));
    assert_string_equal(out, want);
}

static void test_name_normalize(void **state)
{
    char label63[64], long_name[260], out[EGRESS_NAME_MAX + 1];

    norm("Example.COM", false, "example.com");
    norm("example.com.", false, "example.com");
    norm("example.com..", false, NULL);
    norm("example.com:443", true, "example.com");
    norm("Example.com.:8080", true, "example.com");
    norm("example.com:443", false, NULL); /* SNI carries no port */
    norm("example.com:", true, NULL);
    norm("example.com:0", true, NULL);
    norm("example.com:65536", true, NULL);
    norm("example.com:80:80", true, NULL);
    norm("[::1]:443", true, NULL);
    norm("[::1]", true, NULL);
    norm("192.0.2.1", false, NULL);
    norm("192.0.2.1:80", true, NULL);
    norm("10.0.0.256", false, NULL);
    norm("1.2.3.4.nip.io", false, "1.2.3.4.nip.io");
    norm("xn--bcher-kva.example", false, "xn--bcher-kva.example");
    norm("b\xc3\xbc"
         "cher.example",
         false, NULL); /* IDNA is not decoded */
    norm("_dmarc.example.com", false, "_dmarc.example.com");
    norm("a", false, "a");
    norm("localhost", false, "localhost");
    norm(".example.com", false, NULL);
    norm("a..b", false, NULL);
    norm(".", false, NULL);
    norm("", false, NULL);
    norm("exa mple.com", false, NULL);
    norm("exa/mple.com", false, NULL);
    norm("*.example.com", false, NULL);
    norm("example.com\r", false, NULL);

    memset(label63, 'a', 63);
    label63[63] = '\0';
    snprintf(long_name, sizeof(long_name), "%s.com", label63);
    norm(long_name, false, long_name);
    snprintf(long_name, sizeof(long_name), "a%s.com", label63);
    norm(long_name, false, NULL);
    /* 253 bytes is the most a name has; the trailing dot does not count. */
    memset(long_name, 'a', 253);
    for (int i = 50; i < 253; i += 50)
        long_name[i] = '.';
    long_name[253] = '\0';
    norm(long_name, false, long_name);
    long_name[253] = '.';
    long_name[254] = '\0';
    long_name[253] = '.';
    {
        char want[254];
        memcpy(want, long_name, 253);
        want[253] = '\0';
        norm(long_name, false, want);
    }
    long_name[253] = 'a';
    norm(long_name, false, NULL);
    /* Too small a buffer: refused, never overrun. */
    assert_int_equal(egress_name_normalize("example.com", 11, false, out, 11), -1);
    assert_int_equal(egress_name_normalize("example.com", 11, false, out, 12), 11);
    assert_int_equal(egress_name_normalize(NULL, 0, false, out, sizeof(out)), -1);
}

static void test_broken_records_name_the_field(void **state)
{
    char big[64 + 6 * (EGRESS_POLICY_MAX_RULES + 1)];
    size_t n;

    bad("", "not valid JSON");
    bad("{", "not valid JSON");
    bad("[]", "not a JSON object");
    bad("{} {}", "not valid JSON (data after the object)");
    bad("{\"allowOut\":[\"a\\u0000b\"]}", "not valid JSON");
    bad("{\"sandboxId\":5}", "sandboxId is not a string");
    bad("{\"allowInternetAccess\":\"false\"}", "allowInternetAccess is not a boolean");
    bad("{\"allowInternetAccess\":0}", "allowInternetAccess is not a boolean");
    bad("{\"allowOut\":\"1.1.1.1\"}", "allowOut is not an array");
    bad("{\"denyOut\":{}}", "denyOut is not an array");
    bad("{\"allowOut\":[\"1.1.1.1\",7]}", "allowOut[1] is not a string");
    bad("{\"allowOut\":[\"1.1.1.1\",null]}", "allowOut[1] is not a string");
    bad("{\"allowOut\":[\"example.com\",\"10.0.0.0/33\"]}",
        "allowOut[1]: \"10.0.0.0/33\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"\"]}",
        "allowOut[0]: \"\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"*example.com\"]}",
        "allowOut[0]: \"*example.com\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"a.*.example.com\"]}",
        "allowOut[0]: \"a.*.example.com\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"*.*.example.com\"]}",
        "allowOut[0]: \"*.*.example.com\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"*.\"]}", "allowOut[0]: \"*.\" is not an address, network, domain or "
                                   "*.domain");
    bad("{\"allowOut\":[\"https://example.com\"]}",
        "allowOut[0]: \"https://example.com\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"example.com:443\"]}",
        "allowOut[0]: \"example.com:443\" is not an address, network, domain or *.domain");
    bad("{\"allowOut\":[\"b\\u00fccher.example\"]}",
        "allowOut[0]: \"b??cher.example\" is not an address, network, domain or *.domain");
    bad("{\"denyOut\":[\"example.com\"]}",
        "denyOut[0]: \"example.com\" is a domain; denyOut takes addresses and networks only");
    bad("{\"denyOut\":[\"0.0.0.0/0\",\"*.example.com\"]}",
        "denyOut[1]: \"*.example.com\" is a domain; denyOut takes addresses and networks only");
    bad("{\"denyOut\":[\"*\"]}",
        "denyOut[0]: \"*\" is a domain; denyOut takes addresses and networks only");
    bad("{\"denyOut\":[\"1.2.3.4/40\"]}",
        "denyOut[0]: \"1.2.3.4/40\" is not an address or network");
    bad("{\"maxConnections\":-1}", "maxConnections is not a non-negative integer");
    bad("{\"maxConnections\":1.5}", "maxConnections is not a non-negative integer");
    bad("{\"maxConnections\":\"5\"}", "maxConnections is not a non-negative integer");
    bad("{\"maxConnections\":4294967296}", "maxConnections is not a non-negative integer");
    bad("{\"denyOut\":[],\"denyOut\":[\"0.0.0.0/0\"]}", "denyOut appears more than once");
    bad("{\"allowInternetAccess\":true,\"allowInternetAccess\":false}",
        "allowInternetAccess appears more than once");

    /* The entry bound. */
    n = (size_t)snprintf(big, sizeof(big), "{\"denyOut\":[");
    for (int i = 0; i <= EGRESS_POLICY_MAX_RULES; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"::1\"", i ? "," : "");
    snprintf(big + n, sizeof(big) - n, "]}");
    bad(big, "denyOut has more than 4096 entries");
    /* One fewer is fine. */
    memcpy(strrchr(big, ','), "]}", 3);
    egress_policy_free(ok(big));
}

static void test_free_null(void **state)
{
    egress_policy_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example_record),
        cmocka_unit_test(test_defaults_and_empty),
        cmocka_unit_test(test_no_internet_is_deny_all),
        cmocka_unit_test(test_allow_beats_deny),
        cmocka_unit_test(test_ipv6_rules),
        cmocka_unit_test(test_mapped_destinations_are_ipv4),
        cmocka_unit_test(test_wildcards),
        cmocka_unit_test(test_names_normalised_in_the_record),
        cmocka_unit_test(test_order_first_match_and_always_deny_first),
        cmocka_unit_test(test_nameservers),
        cmocka_unit_test(test_decision_details),
        cmocka_unit_test(test_name_normalize),
        cmocka_unit_test(test_broken_records_name_the_field),
        cmocka_unit_test(test_free_null),
    };

    return cmocka_run_group_tests(tests, setup_env, NULL);
}
