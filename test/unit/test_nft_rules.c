/* common/nft_rules.c: the ruleset text for sample policies and
 * configurations. (test/integration/test_egress_rules.py has the kernel load
 * it.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "egress_policy.h"
#include "nft_rules.h"

#define LISTENER "\"listeners\":[{\"address\":\"127.0.0.1:8080\"}]"
#define ALL_EGRESS                                                                              \
    "\"egress\":{\"listeners\":{\"http\":\"[::]:15080\",\"tls\":\"[::]:15443\",\"tcp\":\"[::]:" \
    "15000\"},"                                                                                 \
    "\"nameservers\":[\"192.0.2.53\",\"2001:db8::53\"]}"

/* The ruleset for config `cj` and policy `pj`; caller frees. */
static char *rules(const char *cj, const char *pj, const char *ifname)
{
    struct config cfg;
    struct egress_policy *p;
    char err[256] = "", *out;
    size_t len = 0;

    if (config_parse(cj, strlen(cj), &cfg, err, sizeof(err)) != 0)
        fail_msg("config %s: %s", cj, err);
    if (egress_policy_parse(pj, strlen(pj), &p, err, sizeof(err)) != 0)
        fail_msg("policy %s: %s", pj, err);
    out = nft_rules_build(ifname, p, &cfg, &len, err, sizeof(err));
    if (out == NULL)
        fail_msg("nft_rules_build: %s", err);
    assert_int_equal(strlen(out), len);
    egress_policy_free(p);
    config_free(&cfg);
    return out;
}

/* The body of `chain NAME { ... }` in text, as a new string. */
static char *chain(const char *text, const char *name)
{
    char head[64], *start, *end, *out;

    snprintf(head, sizeof(head), "\tchain %s {\n", name);
    start = strstr(text, head);
    if (start == NULL)
        fail_msg("no chain %s in:\n%s", name, text);
    end = strstr(start, "\n\t}\n");
    assert_non_null(end);
    out = strndup(start, (size_t)(end - start) + 1);
    assert_non_null(out);
    return out;
}

static void has(const char *text, const char *want)
{
    if (strstr(text, want) == NULL)
        fail_msg("missing \"%s\" in:\n%s", want, text);
}

static void lacks(const char *text, const char *unwanted)
{
    if (strstr(text, unwanted) != NULL)
        fail_msg("unexpected \"%s\" in:\n%s", unwanted, text);
}

/* `a` comes before `b` in text (both present). */
static void before(const char *text, const char *a, const char *b)
{
    const char *x = strstr(text, a), *y = strstr(text, b);

    if (x == NULL || y == NULL || x >= y)
        fail_msg("want \"%s\" before \"%s\" in:\n%s", a, b, text);
}

static void test_spec_example(void **state)
{
    char *r = rules("{" LISTENER "," ALL_EGRESS "}",
                    "{\"sandboxId\": \"i62mff4ahtrdfdkyn2esc\", \"allowInternetAccess\": true,"
                    " \"allowOut\": [\"api.example.com\", \"*.github.com\", \"1.1.1.1\","
                    " \"8.8.8.0/24\"], \"denyOut\": [\"0.0.0.0/0\"], \"maxConnections\": 256}",
                    "veth-sb1");
    char *guard = chain(r, "guard"), *nat = chain(r, "nat_redirect"), *host = chain(r, "to_host"),
         *world = chain(r, "to_world");

    /* The table is declared, deleted and defined: one transaction that
     * works whether or not it existed. */
    before(r, "table inet edgeproxy_veth-sb1 {}\n", "delete table inet edgeproxy_veth-sb1\n");
    before(r, "delete table inet edgeproxy_veth-sb1\n", "table inet edgeproxy_veth-sb1 {\n");
    has(r, "sandbox i62mff4ahtrdfdkyn2esc");
    /* Sets: the addresses of allowOut, names left to the proxy. */
    has(r, "\tset allow_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n"
           "\t\telements = {\n\t\t\t1.1.1.1,\n\t\t\t8.8.8.0/24\n\t\t}\n\t}\n");
    lacks(r, "set allow_v6");
    lacks(r, "set deny_v4");
    lacks(r, "api.example.com");
    lacks(r, "github");
    has(r, "set always_deny_v4 {");
    has(r, "\t\t\t169.254.0.0/16,\n");
    has(r, "set always_deny_v6 {");
    has(r, "\t\t\tfc00::/7,\n");
    has(r, "set nameservers_v4 {");
    has(r, "\t\t\t192.0.2.53\n");
    has(r, "set nameservers_v6 {");

    /* Every chain looks at this interface only. */
    has(guard, "\t\tiifname != \"veth-sb1\" return\n");
    has(nat, "\t\tiifname != \"veth-sb1\" return\n");
    has(host, "\t\tiifname != \"veth-sb1\" return\n");
    has(world, "\t\tiifname != \"veth-sb1\" return\n");
    has(guard, "type filter hook prerouting priority mangle; policy accept;");
    has(nat, "type nat hook prerouting priority dstnat; policy accept;");
    has(host, "type filter hook input priority filter; policy accept;");
    has(world, "type filter hook forward priority filter; policy accept;");

    /* guard: answers and DNS first, then always_deny, mapped, local. */
    before(guard, "ct direction reply accept", "jump refuse");
    before(guard, "th dport 53 ip daddr @nameservers_v4 accept", "ip daddr @always_deny_v4");
    has(guard, "ip6 daddr @always_deny_v6 jump refuse\n");
    has(guard, "ip6 daddr ::ffff:0.0.0.0/96 jump refuse\n");
    has(guard, "fib daddr type local jump refuse\n");
    has(guard, "ip daddr 127.0.0.1 tcp dport 6379 jump refuse\n");
    has(guard, "nd-neighbor-solicit");

    /* TCP: 80, 443, the rest, in that order, to dual-stack listeners. */
    before(nat, "\t\ttcp dport 80 redirect to :15080\n", "\t\ttcp dport 443 redirect to :15443\n");
    before(nat, "\t\ttcp dport 443 redirect to :15443\n",
           "\t\tmeta l4proto tcp redirect to :15000\n");
    lacks(nat, "nfproto");

    has(host, "ct status dnat meta l4proto tcp th dport { 15080, 15443, 15000 } accept\n");
    has(host, "th dport 53 ip6 daddr @nameservers_v6 accept\n");
    has(host, "\t\tjump refuse\n");

    /* forward: DNS, allow, QUIC, then deny-all covering IPv6 too. */
    before(world, "th dport 53 ip daddr @nameservers_v4 accept", "ip daddr @allow_v4 accept");
    before(world, "ip daddr @allow_v4 accept", "udp dport 443 jump refuse");
    before(world, "udp dport 443 jump refuse", "\t\tjump refuse\n");
    lacks(world, "0.0.0.0/0 ");
    lacks(world, "@deny");
    has(r, "\tchain refuse {\n\t\tmeta l4proto tcp counter reject with tcp reset\n"
           "\t\tcounter reject with icmpx admin-prohibited\n\t}\n");
    free(guard);
    free(nat);
    free(host);
    free(world);
    free(r);
}

static void test_no_names_no_dns_no_quic(void **state)
{
    char *r = rules("{" LISTENER "," ALL_EGRESS "}",
                    "{\"allowOut\":[\"198.51.100.0/24\",\"2001:db8:1::/48\"],"
                    "\"denyOut\":[\"203.0.113.0/24\",\"2001:db8::/32\"]}",
                    "eth0");
    char *world = chain(r, "to_world");

    lacks(r, "nameservers");
    lacks(r, "dport 53");
    lacks(r, "udp dport 443");
    /* allow beats deny: every accept before any refuse. */
    before(world, "ip6 daddr @allow_v6 accept", "ip daddr @deny_v4 jump refuse");
    before(world, "ip daddr @allow_v4 accept", "ip6 daddr @deny_v6 jump refuse");
    has(r, "\t\t\t2001:db8::/32\n");
    has(r, "\t\t\t203.0.113.0/24\n");
    /* Nothing unconditional: the default is allow. */
    lacks(world, "\t\tjump refuse\n");
    lacks(world, "\t\taccept\n");
    free(world);
    free(r);
}

static void test_all_traffic_rules(void **state)
{
    char *r, *world;

    /* allowOut 0.0.0.0/0 accepts everything, IPv6 included. */
    r = rules("{" LISTENER "}",
              "{\"allowOut\":[\"0.0.0.0/0\",\"1.1.1.1\"],\"denyOut\":[\"0.0.0.0/0\"]}", "eth0");
    world = chain(r, "to_world");
    has(world, "\t\taccept\n");
    before(world, "\t\taccept\n", "\t\tjump refuse\n");
    lacks(r, "0.0.0.0/0,");
    free(world);
    free(r);

    /* allowInternetAccess false is denyOut 0.0.0.0/0. */
    r = rules("{" LISTENER "}", "{\"allowInternetAccess\":false,\"allowOut\":[\"2001:db8::1\"]}",
              "eth0");
    world = chain(r, "to_world");
    before(world, "ip6 daddr @allow_v6 accept", "\t\tjump refuse\n");
    has(world, "# allowInternetAccess false");
    free(world);
    free(r);

    /* ::/0 is IPv6 only. */
    r = rules("{" LISTENER "}", "{\"denyOut\":[\"::/0\"]}", "eth0");
    world = chain(r, "to_world");
    has(world, "ip6 daddr @deny_v6 jump refuse\n");
    lacks(world, "\t\tjump refuse\n");
    lacks(world, "ip daddr");
    has(r, "\t\t\t::/0\n");
    free(world);
    free(r);
}

static void test_listeners(void **state)
{
    char *r, *nat, *host;

    /* None: no redirect, and nothing reaches the host. */
    r = rules("{" LISTENER "}", "{}", "eth0");
    nat = chain(r, "nat_redirect");
    host = chain(r, "to_host");
    lacks(nat, "redirect to");
    lacks(host, "ct status dnat");
    has(host, "\t\tjump refuse\n");
    free(nat);
    free(host);
    free(r);

    /* tcp only, IPv4 only; an IPv6-only http listener. */
    r = rules("{" LISTENER ",\"egress\":{\"listeners\":{\"tcp\":\"0.0.0.0:15000\","
              "\"http\":\"[::1]:15080\"}}}",
              "{}", "eth0");
    nat = chain(r, "nat_redirect");
    host = chain(r, "to_host");
    has(nat, "\t\tmeta nfproto ipv6 tcp dport 80 redirect to :15080\n");
    has(nat, "\t\tmeta nfproto ipv4 meta l4proto tcp redirect to :15000\n");
    lacks(nat, "443");
    has(host, "th dport { 15080, 15000 } accept\n");
    free(nat);
    free(host);
    free(r);
}

static void test_tproxy(void **state)
{
    char *r, *guard, *divert, *host;

    /* egress.interception "tproxy": a divert chain after guard instead of
     * the NAT one, the same ports to the same listeners, the mark set on
     * every packet handed over, and the policy route as comments. */
    r = rules("{" LISTENER ",\"egress\":{\"interception\":\"tproxy\",\"tproxy_mark\":16,"
              "\"listeners\":{\"http\":\"[::]:15080\",\"tls\":\"[::]:15443\","
              "\"tcp\":\"[::]:15000\"}}}",
              "{\"allowOut\":[\"example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}", "veth-sb0");
    guard = chain(r, "guard");
    divert = chain(r, "divert");
    host = chain(r, "to_host");
    lacks(r, "nat_redirect");
    lacks(r, "redirect to");
    lacks(r, "ct status dnat");
    has(divert, "\t\ttype filter hook prerouting priority mangle + 10; policy accept;\n"
                "\t\tiifname != \"veth-sb0\" return\n");
    before(divert, "\t\tct direction reply return\n",
           "\t\tmeta l4proto tcp socket transparent 1 meta mark set 0x10 accept\n");
    before(divert, "\t\tmeta l4proto tcp socket transparent 1 meta mark set 0x10 accept\n",
           "\t\ttcp dport 80 tproxy to :15080 meta mark set 0x10 accept\n");
    before(divert, "\t\ttcp dport 80 tproxy to :15080 meta mark set 0x10 accept\n",
           "\t\ttcp dport 443 tproxy to :15443 meta mark set 0x10 accept\n");
    before(divert, "\t\ttcp dport 443 tproxy to :15443 meta mark set 0x10 accept\n",
           "\t\tmeta l4proto tcp tproxy to :15000 meta mark set 0x10 accept\n");
    /* No transparent socket (the proxy down): refused, not forwarded. */
    before(divert, "\t\tmeta l4proto tcp tproxy to :15000 meta mark set 0x10 accept\n",
           "\t\ttcp dport 80 jump refuse\n\t\ttcp dport 443 jump refuse\n"
           "\t\tmeta l4proto tcp jump refuse\n");
    /* guard (priority mangle) still refuses first, unchanged. */
    before(r, "\tchain guard {", "\tchain divert {");
    has(guard, "fib daddr type local jump refuse\n");
    /* input: what the divert chain marked, not a NAT'd port. */
    has(host, "\t\tmeta l4proto tcp meta mark 0x10 accept\n");
    before(host, "meta mark 0x10 accept", "\t\tjump refuse\n");
    /* The policy route, once per host: comments, before the table. */
    before(r,
           "#   ip rule add fwmark 0x10 lookup 100\n"
           "#   ip route add local 0.0.0.0/0 dev lo table 100\n"
           "#   ip -6 rule add fwmark 0x10 lookup 100\n"
           "#   ip -6 route add local ::/0 dev lo table 100\n",
           "table inet edgeproxy_veth-sb0 {}\n");
    free(guard);
    free(divert);
    free(host);
    free(r);

    /* One family per listener: `tproxy ip` / `tproxy ip6`; the default
     * mark is 0x1; no tls listener, so 443 falls to tcp. */
    r = rules("{" LISTENER ",\"egress\":{\"interception\":\"tproxy\","
              "\"listeners\":{\"http\":\"[::1]:15080\",\"tcp\":\"0.0.0.0:15000\"}}}",
              "{}", "eth0");
    divert = chain(r, "divert");
    has(divert, "\t\tmeta nfproto ipv6 tcp dport 80 tproxy ip6 to :15080 meta mark set 0x1 "
                "accept\n");
    has(divert, "\t\tmeta nfproto ipv4 meta l4proto tcp tproxy ip to :15000 meta mark set 0x1 "
                "accept\n");
    lacks(divert, "443");
    has(divert, "\t\tmeta nfproto ipv6 tcp dport 80 jump refuse\n"
                "\t\tmeta nfproto ipv4 meta l4proto tcp jump refuse\n");
    has(r, "#   ip rule add fwmark 0x1 lookup 100\n");
    free(divert);
    free(r);

    /* No listener: nothing diverted, nothing marked reaches the host. */
    r = rules("{" LISTENER ",\"egress\":{\"interception\":\"tproxy\"}}", "{}", "eth0");
    divert = chain(r, "divert");
    host = chain(r, "to_host");
    lacks(divert, "tproxy");
    lacks(divert, "socket");
    lacks(divert, "jump refuse");
    lacks(host, "meta mark");
    free(divert);
    free(host);
    free(r);

    /* redirect, the default: no word of tproxy. */
    r = rules("{" LISTENER "," ALL_EGRESS "}", "{}", "eth0");
    lacks(r, "tproxy");
    lacks(r, "mark");
    lacks(r, "chain divert");
    free(r);
}

static void test_config_inputs(void **state)
{
    char *r, *guard;

    /* always_deny off: no sets, no rules on them; the rest stays. */
    r = rules("{" LISTENER ",\"egress\":{\"always_deny\":[]},"
              "\"redis\":{\"url\":\"redis://[2001:db8::6]:6380/0\"}}",
              "{}", "eth0");
    guard = chain(r, "guard");
    lacks(r, "always_deny");
    has(guard, "fib daddr type local jump refuse\n");
    has(guard, "ip6 daddr ::ffff:0.0.0.0/96 jump refuse\n");
    has(guard, "ip6 daddr 2001:db8::6 tcp dport 6380 jump refuse\n");
    free(guard);
    free(r);

    /* Redis by name: a note, no rule; only IPv4 always_deny: one set. */
    r = rules("{" LISTENER ",\"egress\":{\"always_deny\":[\"10.0.0.0/8\",\"10.1.0.0/16\"]},"
              "\"redis\":{\"url\":\"redis://redis.internal:6379\"}}",
              "{\"allowOut\":[\"example.com\"]}", "eth0");
    guard = chain(r, "guard");
    has(guard, "# redis.url names a host (redis.internal)");
    lacks(guard, "dport 6379");
    has(r, "set always_deny_v4");
    lacks(r, "set always_deny_v6");
    lacks(guard, "@always_deny_v6");
    /* The default nameserver is IPv4 only. */
    has(r, "set nameservers_v4 {");
    lacks(r, "nameservers_v6");
    free(guard);
    free(r);
}

static void test_untrusted_text_stays_out(void **state)
{
    /* The sandbox id comes from Redis: a newline there would end the
     * comment and inject rules. Only a plain id is printed. */
    char *r = rules("{" LISTENER "}",
                    "{\"sandboxId\":\"x\\nflush ruleset\",\"denyOut\":[\"0.0.0.0/0\"]}", "eth0");

    lacks(r, "flush ruleset");
    lacks(r, "sandbox x");
    free(r);
}

static void test_errors_and_bounds(void **state)
{
    struct config cfg;
    struct egress_policy *p;
    char err[256], small[64];
    struct outbuf ob;
    char name16[17];

    config_defaults(&cfg);
    assert_int_equal(egress_policy_parse("{}", 2, &p, err, sizeof(err)), 0);
    assert_null(nft_rules_build("", p, &cfg, NULL, err, sizeof(err)));
    assert_string_equal(err, "interface: a name of 1 to 15 bytes is required");
    memset(name16, 'a', 16);
    name16[16] = '\0';
    assert_null(nft_rules_build(name16, p, &cfg, NULL, err, sizeof(err)));
    name16[15] = '\0';
    free(nft_rules_build(name16, p, &cfg, NULL, err, sizeof(err)));
    assert_null(nft_rules_build("eth0\" accept", p, &cfg, NULL, err, sizeof(err)));
    assert_string_equal(err, "interface: \"eth0\" accept\" holds a byte other than [A-Za-z0-9_.-]");
    assert_null(nft_rules_build("a b", p, &cfg, NULL, err, sizeof(err)));
    assert_null(nft_rules_build(NULL, p, &cfg, NULL, err, sizeof(err)));
    assert_null(nft_rules_build("eth0", NULL, &cfg, NULL, err, sizeof(err)));
    assert_int_equal(nft_rules_check_interface("veth-1.a_B", err, sizeof(err)), 0);

    /* A writer too small: truncated, never overrun. */
    outbuf_init(&ob, small, sizeof(small));
    assert_int_equal(nft_rules_write(&ob, "eth0", p, &cfg, err, sizeof(err)), 0);
    assert_true(ob.truncated);
    assert_true(ob.len <= sizeof(small));
    egress_policy_free(p);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),      cmocka_unit_test(test_no_names_no_dns_no_quic),
        cmocka_unit_test(test_all_traffic_rules), cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_config_inputs),     cmocka_unit_test(test_untrusted_text_stays_out),
        cmocka_unit_test(test_errors_and_bounds), cmocka_unit_test(test_tproxy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
