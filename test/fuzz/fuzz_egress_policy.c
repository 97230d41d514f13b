/* libFuzzer: egress_policy_parse + egress_decide + egress_name_normalize +
 * nft_rules_build in both interception modes (common/egress_policy.c,
 * common/nft_rules.c).
 * Invariants: failure means a NUL-terminated message naming something and
 * nothing to free; success means lists within their bound and rules of a
 * known kind; every decision has a non-empty rule string, a verdict that
 * matches the kind of rule, and is the same when asked twice; a name the
 * policy allows is allowed (unless always-denied); name normalisation is
 * idempotent; the ruleset builds, names its table once per declaration and
 * holds none of the record's text but addresses. */
#include <assert.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "egress_policy.h"
#include "nft_rules.h"

static struct config cfg;
static struct egress_env env;

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
        inet_pton(AF_INET6, ip, &sin6->sin6_addr);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
    }
    return ss;
}

static bool allow_kind(enum egress_decided_by by)
{
    return by == EGRESS_BY_NAMESERVER || by == EGRESS_BY_ALLOW_NAME || by == EGRESS_BY_ALLOW_ADDR ||
           by == EGRESS_BY_DEFAULT;
}

static void decide(const struct egress_policy *p, const struct sockaddr *sa, const char *name)
{
    struct egress_decision a, b;
    enum egress_verdict v;

    memset(&a, 'x', sizeof(a));
    v = egress_decide(p, &env, sa, name, &a);
    assert(v == a.verdict);
    assert(v == EGRESS_ALLOW || v == EGRESS_DENY);
    assert(memchr(a.rule, '\0', sizeof(a.rule)) != NULL && a.rule[0] != '\0');
    assert((v == EGRESS_ALLOW) == allow_kind(a.by));
    assert(strcmp(egress_decided_by_name(a.by), "unknown") != 0);
    if (a.by == EGRESS_BY_ALLOW_NAME || a.by == EGRESS_BY_ALLOW_ADDR)
        assert(a.index >= 0 && (size_t)a.index < p->allow_count);
    if (a.by == EGRESS_BY_DENY_ADDR)
        assert(a.index >= 0 && (size_t)a.index < p->deny_count);
    if (a.by == EGRESS_BY_ALLOW_NAME)
        assert(name != NULL);
    memset(&b, 'y', sizeof(b));
    assert(egress_decide(p, &env, sa, name, &b) == v);
    assert(b.by == a.by && b.index == a.index && strcmp(a.rule, b.rule) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char json[] = "{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],"
                               "\"egress\":{\"listeners\":{\"http\":\"[::]:15080\","
                               "\"tls\":\"[::]:15443\",\"tcp\":\"0.0.0.0:15000\"},"
                               "\"nameservers\":[\"8.8.8.8\",\"2001:4860:4860::8888\"]}}";
    char err[256];

    if (config_parse(json, sizeof(json) - 1, &cfg, err, sizeof(err)) != 0)
        abort();
    env.always_deny = cfg.egress_always_deny;
    env.always_deny_count = cfg.egress_always_deny_count;
    env.nameservers = cfg.egress_nameservers;
    env.nameserver_count = cfg.egress_nameserver_count;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ips[] = {"192.0.2.1",   "8.8.8.8",          "10.1.2.3",
                                      "2001:db8::1", "::ffff:192.0.2.1", "::ffff:127.0.0.1",
                                      "fe80::1",     "1.1.1.1"};
    static const uint16_t ports[] = {53, 80, 443};
    static const char *const names[] = {"example.com", "a.github.com", "github.com", NULL};
    struct egress_policy *p = NULL;
    char err[256], norm[EGRESS_NAME_MAX + 1], again[EGRESS_NAME_MAX + 1];
    char *rules;
    size_t len;
    int n;

    /* The bytes as a Host value: normalising twice changes nothing. */
    n = egress_name_normalize((const char *)data, size, true, norm, sizeof(norm));
    if (n >= 0) {
        assert((size_t)n == strlen(norm) && n <= EGRESS_NAME_MAX);
        assert(egress_name_normalize(norm, (size_t)n, false, again, sizeof(again)) == n);
        assert(strcmp(norm, again) == 0);
    }

    memset(err, 'x', sizeof(err));
    if (egress_policy_parse((const char *)data, size, &p, err, sizeof(err)) != 0) {
        assert(p == NULL);
        assert(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        return 0;
    }
    assert(p != NULL);
    assert(p->allow_count <= EGRESS_POLICY_MAX_RULES && p->deny_count <= EGRESS_POLICY_MAX_RULES);
    for (size_t i = 0; i < p->deny_count; i++)
        assert(p->deny[i].type == EGRESS_RULE_NET || p->deny[i].type == EGRESS_RULE_ALL);

    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        for (size_t j = 0; j < sizeof(ports) / sizeof(ports[0]); j++) {
            struct sockaddr_storage ss = dst(ips[i], ports[j]);

            for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
                decide(p, (struct sockaddr *)&ss, names[k]);
        }
    }
    /* Each name rule lets its own name through (a wildcard a name under
     * it) to an address outside always_deny. */
    for (size_t i = 0; i < p->allow_count && i < 64; i++) {
        const struct egress_rule *r = &p->allow[i];
        struct sockaddr_storage ss = dst("192.0.2.1", 443);
        struct egress_decision d;
        char name[EGRESS_NAME_MAX + 3];

        if (r->type == EGRESS_RULE_NAME)
            snprintf(name, sizeof(name), "%s", r->name);
        else if (r->type == EGRESS_RULE_WILDCARD)
            snprintf(name, sizeof(name), "a%s", r->name);
        else
            continue;
        if (egress_name_normalize(name, strlen(name), false, norm, sizeof(norm)) < 0)
            continue; /* "a" + a 253-byte suffix is too long a name */
        assert(egress_decide(p, &env, (struct sockaddr *)&ss, norm, &d) == EGRESS_ALLOW);
        assert(d.by == EGRESS_BY_ALLOW_NAME && (size_t)d.index <= i);
        decide(p, (struct sockaddr *)&ss, norm);
    }

    rules = nft_rules_build("veth-fuzz", p, &cfg, &len, err, sizeof(err));
    assert(rules != NULL && strlen(rules) == len);
    assert(strstr(rules, "table inet edgeproxy_veth-fuzz {}\ndelete table") != NULL);
    /* Names never reach the kernel's rules: the proxy checks them. */
    for (size_t i = 0; i < p->allow_count; i++)
        if (p->allow[i].type == EGRESS_RULE_NAME && p->allow[i].name_len > 24)
            assert(strstr(rules, p->allow[i].name) == NULL);
    free(rules);
    /* egress.interception "tproxy": the divert chain instead of NAT. */
    cfg.egress_interception = CONFIG_EGRESS_TPROXY;
    rules = nft_rules_build("veth-fuzz", p, &cfg, &len, err, sizeof(err));
    cfg.egress_interception = CONFIG_EGRESS_REDIRECT;
    assert(rules != NULL && strlen(rules) == len);
    assert(strstr(rules, "\tchain divert {") != NULL && strstr(rules, "redirect to") == NULL);
    free(rules);
    egress_policy_free(p);
    return 0;
}
