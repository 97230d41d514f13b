/* The nftables ruleset for one sandbox interface: see nft_rules.h. */
#include "nft_rules.h"
#include "errf.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* IFNAMSIZ - 1 (linux/if.h). */
#define IFNAME_MAX 15

int nft_rules_check_interface(const char *ifname, char *err, size_t errlen)
{
    size_t n = ifname != NULL ? strlen(ifname) : 0;

    if (n == 0 || n > IFNAME_MAX)
        return errf(err, errlen, "interface: a name of 1 to %d bytes is required", IFNAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = ifname[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return errf(err, errlen, "interface: \"%s\" holds a byte other than [A-Za-z0-9_.-]",
                        ifname);
    }
    return 0;
}

/* The writer and what every line needs. */
struct gen {
    struct outbuf *ob;
    const char *ifname;
    const struct egress_policy *p;
    const struct config *cfg;
};

static void put(struct gen *g, const char *s)
{
    outbuf_str(g->ob, s);
}

static void put_net(struct gen *g, const struct cidr *c)
{
    char buf[CIDR_STRLEN];

    if (cidr_format(c, buf, sizeof(buf)) > 0)
        outbuf_str(g->ob, buf);
}

/* How many of nets[0..n) are of `family`. */
static size_t count_family(const struct cidr *nets, size_t n, int family)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += nets[i].family == family;
    return k;
}

/* `set NAME { type ...; flags interval; auto-merge; elements = { ... } }`
 * with the members of `family`; nothing when there are none (nft refuses
 * an empty element list). auto-merge: overlapping entries ("10.0.0.0/8",
 * "10.1.0.0/16") would otherwise be an error. Returns whether it wrote. */
static bool put_set(struct gen *g, const char *name, int family, const struct cidr *nets, size_t n)
{
    bool first = true;

    if (count_family(nets, n, family) == 0)
        return false;
    put(g, "\tset ");
    put(g, name);
    put(g, family == AF_INET ? " {\n\t\ttype ipv4_addr\n" : " {\n\t\ttype ipv6_addr\n");
    put(g, "\t\tflags interval\n\t\tauto-merge\n\t\telements = {");
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family != family)
            continue;
        put(g, first ? "\n\t\t\t" : ",\n\t\t\t");
        put_net(g, &nets[i]);
        first = false;
    }
    put(g, "\n\t\t}\n\t}\n");
    return true;
}

/* The policy's address rules of one list, as networks (ALL rules are not
 * networks: they become rules of their own). */
static size_t policy_nets(const struct egress_rule *rules, size_t count, struct cidr *out)
{
    size_t n = 0;

    for (size_t i = 0; i < count; i++)
        if (rules[i].type == EGRESS_RULE_NET)
            out[n++] = rules[i].net;
    return n;
}

static bool has_all(const struct egress_rule *rules, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (rules[i].type == EGRESS_RULE_ALL)
            return true;
    return false;
}

static void put_iif_guard(struct gen *g)
{
    put(g, "\t\tiifname != \"");
    put(g, g->ifname);
    put(g, "\" return\n");
}

static void put_port(struct gen *g, const struct config_egress_listener *l)
{
    outbuf_uint(g->ob, cidr_sockaddr_port((const struct sockaddr *)&l->addr), 1);
}

/* The families a listener takes: "[::]" both (SPEC 9: one dual-stack
 * socket), an IPv4 address IPv4 only, another IPv6 address IPv6 only. The
 * qualifier for its redirect rule, "" for both. */
static const char *listener_families(const struct config_egress_listener *l)
{
    static const uint8_t any6[16];

    if (l->addr.ss_family == AF_INET)
        return "meta nfproto ipv4 ";
    if (memcmp(&((const struct sockaddr_in6 *)&l->addr)->sin6_addr, any6, 16) == 0)
        return "";
    return "meta nfproto ipv6 ";
}

/* Port 53, UDP and TCP, to the nameservers: accepted while names are in
 * use (SPEC 9). */
static void put_dns_accept(struct gen *g, bool v4, bool v6)
{
    if (!g->p->has_names)
        return;
    if (v4)
        put(g, "\t\tmeta l4proto { tcp, udp } th dport 53 ip daddr @nameservers_v4 accept\n");
    if (v6)
        put(g, "\t\tmeta l4proto { tcp, udp } th dport 53 ip6 daddr @nameservers_v6 accept\n");
}

static const char nd_accept[] =
    "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept\n";

static void put_guard(struct gen *g, bool ad4, bool ad6, bool ns4, bool ns6)
{
    const struct config *cfg = g->cfg;
    struct cidr_addr redis;

    put(g, "\n\t# Before NAT, whatever the protocol: what the sandbox may never reach.\n"
           "\tchain guard {\n"
           "\t\ttype filter hook prerouting priority mangle; policy accept;\n");
    put_iif_guard(g);
    put(g, "\t\t# answers in connections the other side opened (ingress to the sandbox)\n"
           "\t\tct direction reply accept\n");
    put(g, nd_accept);
    put_dns_accept(g, ns4, ns6);
    put(g, "\t\t# IPv4-mapped IPv6 is never a real destination\n"
           "\t\tip6 daddr ::ffff:0.0.0.0/96 jump refuse\n");
    if (ad4)
        put(g, "\t\tip daddr @always_deny_v4 jump refuse\n");
    if (ad6)
        put(g, "\t\tip6 daddr @always_deny_v6 jump refuse\n");
    put(g, "\t\t# this host itself: the proxy's listeners, its admin port, a local Redis\n"
           "\t\tfib daddr type local jump refuse\n");
    if (cidr_addr_parse(cfg->redis_host, strlen(cfg->redis_host), &redis) == 0) {
        struct cidr c = {.family = redis.family, .prefix = redis.family == AF_INET ? 32 : 128};

        memcpy(c.addr, redis.addr, sizeof(c.addr));
        put(g, "\t\t# redis.url\n");
        put(g, redis.family == AF_INET ? "\t\tip daddr " : "\t\tip6 daddr ");
        put_net(g, &c);
        put(g, " tcp dport ");
        outbuf_uint(g->ob, (uint64_t)cfg->redis_port, 1);
        put(g, " jump refuse\n");
    } else {
        put(g, "\t\t# redis.url names a host (");
        put(g, cfg->redis_host);
        put(g, "): keep its addresses inside egress.always_deny\n");
    }
    put(g, "\t}\n");
}

/* egress.tproxy_mark as nft and ip(8) write it. */
static void put_mark(struct gen *g)
{
    char buf[16];

    snprintf(buf, sizeof(buf), "0x%x", (unsigned)g->cfg->egress_tproxy_mark);
    put(g, buf);
}

/* The listeners as each intercepted TCP port range reaches them: 80, 443,
 * the rest (a missing listener's ports fall to the next ones). */
struct intercept {
    const struct config_egress_listener *l;
    const char *match;
};

static size_t intercepts(const struct config *cfg, struct intercept out[3])
{
    const struct intercept all[] = {
        {&cfg->egress_http, "tcp dport 80 "},
        {&cfg->egress_tls, "tcp dport 443 "},
        {&cfg->egress_tcp, "meta l4proto tcp "},
    };
    size_t n = 0;

    for (size_t i = 0; i < 3; i++)
        if (all[i].l->address != NULL)
            out[n++] = all[i];
    return n;
}

/* The once-per-host policy route that tproxy needs, as comments: nft
 * cannot say it, and it is not per interface. */
static void put_tproxy_routes(struct gen *g)
{
    put(g, "# egress.interception \"tproxy\": the divert chain hands the sandbox's TCP\n"
           "# to the listeners with its destination unchanged (no NAT) and marks it\n"
           "# ");
    put_mark(g);
    put(g, "; the proxy still connects from its own address. Once per host (not per\n"
           "# interface) the marked packets need a route to this host (100: any\n"
           "# free routing table):\n"
           "#   ip rule add fwmark ");
    put_mark(g);
    put(g, " lookup 100\n"
           "#   ip route add local 0.0.0.0/0 dev lo table 100\n"
           "#   ip -6 rule add fwmark ");
    put_mark(g);
    put(g, " lookup 100\n"
           "#   ip -6 route add local ::/0 dev lo table 100\n");
}

/* egress.interception "tproxy": instead of nat_redirect, after guard. The
 * tproxy statement assigns the packet to the listener's socket (an
 * established connection's own socket first, so every packet of the flow
 * gets there); the mark makes the policy route deliver it locally. The
 * socket rule takes the packets of connections already held without the
 * listener lookup. */
static void put_divert(struct gen *g)
{
    struct intercept is[3];
    size_t n = intercepts(g->cfg, is);

    put(g, "\n\t# TCP goes to the egress listeners (TPROXY), which decide with the same\n"
           "\t# policy.\n"
           "\tchain divert {\n"
           "\t\ttype filter hook prerouting priority mangle + 10; policy accept;\n");
    put_iif_guard(g);
    /* A filter chain sees every packet, not only a connection's first as
     * NAT does: the sandbox's answers in connections opened to it must not
     * be taken for new ones. */
    put(g, "\t\t# answers in connections the other side opened (ingress to the sandbox)\n"
           "\t\tct direction reply return\n");
    if (n > 0) {
        put(g, "\t\tmeta l4proto tcp socket transparent 1 meta mark set ");
        put_mark(g);
        put(g, " accept\n");
    }
    for (size_t i = 0; i < n; i++) {
        const char *fam = listener_families(is[i].l);

        put(g, "\t\t");
        put(g, fam);
        put(g, is[i].match);
        put(g, *fam == '\0'          ? "tproxy to :"
               : strstr(fam, "ipv4") ? "tproxy ip to :"
                                     : "tproxy ip6 to :");
        put_port(g, is[i].l);
        put(g, " meta mark set ");
        put_mark(g);
        put(g, " accept\n");
    }
    /* tproxy finds no transparent socket (the proxy is not running): the
     * rule does not match and the packet would be forwarded as it is. */
    if (n > 0)
        put(g, "\t\t# no listener took it (the proxy is not running): refused, as with "
               "redirect\n");
    for (size_t i = 0; i < n; i++) {
        put(g, "\t\t");
        put(g, listener_families(is[i].l));
        put(g, is[i].match);
        put(g, "jump refuse\n");
    }
    put(g, "\t}\n");
}

static void put_redirect(struct gen *g)
{
    struct intercept is[3];
    size_t n = intercepts(g->cfg, is);

    put(g, "\n\t# TCP goes to the egress listeners, which decide with the same policy.\n"
           "\tchain nat_redirect {\n"
           "\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    put_iif_guard(g);
    for (size_t i = 0; i < n; i++) {
        put(g, "\t\t");
        put(g, listener_families(is[i].l));
        put(g, is[i].match);
        put(g, "redirect to :");
        put_port(g, is[i].l);
        put(g, "\n");
    }
    put(g, "\t}\n");
}

static void put_to_host(struct gen *g, bool ns4, bool ns6)
{
    const struct config *cfg = g->cfg;
    const struct config_egress_listener *ls[] = {&cfg->egress_http, &cfg->egress_tls,
                                                 &cfg->egress_tcp};
    bool first = true;

    put(g, "\n\t# To this host: only what was sent to the egress listeners.\n"
           "\tchain to_host {\n"
           "\t\ttype filter hook input priority filter; policy accept;\n");
    put_iif_guard(g);
    put(g, "\t\tct direction reply accept\n");
    if (cfg->egress_interception == CONFIG_EGRESS_TPROXY) {
        /* Diverted TCP keeps its destination port: the mark says it was. */
        if (ls[0]->address != NULL || ls[1]->address != NULL || ls[2]->address != NULL) {
            put(g, "\t\tmeta l4proto tcp meta mark ");
            put_mark(g);
            put(g, " accept\n");
        }
    } else {
        for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++) {
            if (ls[i]->address == NULL)
                continue;
            put(g, first ? "\t\tct status dnat meta l4proto tcp th dport { " : ", ");
            put_port(g, ls[i]);
            first = false;
        }
        if (!first)
            put(g, " } accept\n");
    }
    put(g, nd_accept);
    put_dns_accept(g, ns4, ns6);
    put(g, "\t\tjump refuse\n\t}\n");
}

static void put_to_world(struct gen *g, bool al4, bool al6, bool dn4, bool dn6, bool ns4, bool ns6)
{
    const struct egress_policy *p = g->p;

    put(g, "\n\t# Forwarded (UDP, ICMP, TCP no listener took): the policy by address,\n"
           "\t# allow beating deny.\n"
           "\tchain to_world {\n"
           "\t\ttype filter hook forward priority filter; policy accept;\n");
    put_iif_guard(g);
    put(g, "\t\tct direction reply accept\n");
    put_dns_accept(g, ns4, ns6);
    if (has_all(p->allow, p->allow_count)) {
        put(g, "\t\t# allowOut 0.0.0.0/0: all traffic, IPv4 and IPv6\n\t\taccept\n");
    } else {
        if (al4)
            put(g, "\t\tip daddr @allow_v4 accept\n");
        if (al6)
            put(g, "\t\tip6 daddr @allow_v6 accept\n");
    }
    if (p->has_names)
        put(g, "\t\t# QUIC: names are checked on TCP only\n"
               "\t\tudp dport 443 jump refuse\n");
    if (!p->allow_internet)
        put(g, "\t\t# allowInternetAccess false\n\t\tjump refuse\n");
    else if (has_all(p->deny, p->deny_count))
        put(g, "\t\t# denyOut 0.0.0.0/0: all traffic, IPv4 and IPv6\n\t\tjump refuse\n");
    else {
        if (dn4)
            put(g, "\t\tip daddr @deny_v4 jump refuse\n");
        if (dn6)
            put(g, "\t\tip6 daddr @deny_v6 jump refuse\n");
    }
    put(g, "\t}\n");
}

/* A sandbox id printed into a comment only when it cannot end the comment
 * (a newline there would inject rules). */
static bool plain_id(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

int nft_rules_write(struct outbuf *ob, const char *ifname, const struct egress_policy *p,
                    const struct config *cfg, char *err, size_t errlen)
{
    struct gen g = {ob, ifname, p, cfg};
    struct cidr *allow = NULL, *deny = NULL;
    size_t na, nd;
    bool ad4, ad6, ns4 = false, ns6 = false, al4, al6, dn4, dn6;

    if (nft_rules_check_interface(ifname, err, errlen) == -1)
        return -1;
    if (p == NULL || cfg == NULL)
        return errf(err, errlen, "no policy");
    allow = malloc((p->allow_count + 1) * sizeof(*allow));
    deny = malloc((p->deny_count + 1) * sizeof(*deny));
    if (allow == NULL || deny == NULL) {
        free(allow);
        free(deny);
        return errf(err, errlen, "out of memory");
    }
    na = policy_nets(p->allow, p->allow_count, allow);
    nd = policy_nets(p->deny, p->deny_count, deny);

    put(&g, "#!/usr/sbin/nft -f\n# edgeproxy egress rules for interface ");
    put(&g, ifname);
    if (plain_id(p->sandbox_id)) {
        put(&g, ", sandbox ");
        put(&g, p->sandbox_id);
    }
    put(&g, ", from `edgeproxy egress-rules`.\n"
            "# Applied with `nft -f`, it replaces this interface's table in one\n"
            "# transaction (declared first so that the delete cannot fail) and leaves\n"
            "# every other table alone.\n");
    if (cfg->egress_interception == CONFIG_EGRESS_TPROXY)
        put_tproxy_routes(&g);
    put(&g, "table inet edgeproxy_");
    put(&g, ifname);
    put(&g, " {}\ndelete table inet edgeproxy_");
    put(&g, ifname);
    put(&g, "\ntable inet edgeproxy_");
    put(&g, ifname);
    put(&g, " {\n");

    ad4 = put_set(&g, "always_deny_v4", AF_INET, cfg->egress_always_deny,
                  cfg->egress_always_deny_count);
    ad6 = put_set(&g, "always_deny_v6", AF_INET6, cfg->egress_always_deny,
                  cfg->egress_always_deny_count);
    if (p->has_names) {
        ns4 = put_set(&g, "nameservers_v4", AF_INET, cfg->egress_nameservers,
                      cfg->egress_nameserver_count);
        ns6 = put_set(&g, "nameservers_v6", AF_INET6, cfg->egress_nameservers,
                      cfg->egress_nameserver_count);
    }
    al4 = put_set(&g, "allow_v4", AF_INET, allow, na);
    al6 = put_set(&g, "allow_v6", AF_INET6, allow, na);
    dn4 = put_set(&g, "deny_v4", AF_INET, deny, nd);
    dn6 = put_set(&g, "deny_v6", AF_INET6, deny, nd);

    put(&g, "\n\tchain refuse {\n"
            "\t\tmeta l4proto tcp counter reject with tcp reset\n"
            "\t\tcounter reject with icmpx admin-prohibited\n"
            "\t}\n");
    put_guard(&g, ad4, ad6, ns4, ns6);
    if (cfg->egress_interception == CONFIG_EGRESS_TPROXY)
        put_divert(&g);
    else
        put_redirect(&g);
    put_to_host(&g, ns4, ns6);
    put_to_world(&g, al4, al6, dn4, dn6, ns4, ns6);
    put(&g, "}\n");
    free(allow);
    free(deny);
    return 0;
}

char *nft_rules_build(const char *ifname, const struct egress_policy *p, const struct config *cfg,
                      size_t *len, char *err, size_t errlen)
{
    struct outbuf ob;
    char *buf;

    outbuf_init(&ob, NULL, SIZE_MAX);
    if (nft_rules_write(&ob, ifname, p, cfg, err, errlen) == -1)
        return NULL;
    buf = malloc(ob.len + 1);
    if (buf == NULL) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    outbuf_init(&ob, buf, ob.len);
    if (nft_rules_write(&ob, ifname, p, cfg, err, errlen) == -1 || ob.truncated) {
        free(buf);
        if (!ob.truncated)
            return NULL;
        errf(err, errlen, "the ruleset changed size between passes");
        return NULL;
    }
    buf[ob.len] = '\0';
    if (len != NULL)
        *len = ob.len;
    return buf;
}
