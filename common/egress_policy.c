/* The egress policy record and the egress decision: SPEC section 9. */
#include "egress_policy.h"
#include "errf.h"
#include "host.h"
#include "json_guard.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names --------------------------------------------------------------- */

static bool label_byte(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int egress_name_normalize(const char *s, size_t len, bool strip_port, char *out, size_t cap)
{
    size_t label = 0;
    bool digits_only = true;

    if (s == NULL || out == NULL || len == 0)
        return -1;
    if (strip_port) {
        /* "[v6]" or "[v6]:port" is an IP literal (RFC 3986 section 3.2.2),
         * never a name. */
        const char *colon = memchr(s, ':', len);
        uint16_t port;

        if (s[0] == '[')
            return -1;
        if (colon != NULL) {
            size_t hlen = (size_t)(colon - s);

            if (host_parse_port(colon + 1, len - hlen - 1, &port) == -1)
                return -1;
            len = hlen;
        }
    }
    /* One trailing dot: "example.com." is the same name, fully qualified
     * (RFC 1034 section 3.1). Two are an empty label. */
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > EGRESS_NAME_MAX || len >= cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
            digits_only = true;
        } else {
            /* RFC 1035 section 2.3.4: 63 octets a label. */
            if (!label_byte(c) || ++label > 63)
                return -1;
            if (c < '0' || c > '9')
                digits_only = false;
        }
        out[i] = c;
    }
    /* An all-numeric last label: an IPv4 literal ("10.0.0.1") or a typo of
     * one ("10.0.0.256"), never a name that resolves (RFC 3696 section 2:
     * top-level domains are not all-numeric). */
    if (label == 0 || digits_only)
        return -1;
    out[len] = '\0';
    return (int)len;
}

/* ---- parsing --------------------------------------------------------------- */

/* The entry as written, for messages: at most 64 bytes, visible ASCII only
 * (cJSON decodes \u escapes into any byte). */
static const char *shown(const char *s, char *buf, size_t cap)
{
    size_t n = 0;

    for (; *s && n + 1 < cap && n < 64; s++)
        buf[n++] = (*s >= 0x20 && *s < 0x7f && *s != '"') ? *s : '?';
    buf[n] = '\0';
    return buf;
}

enum entry_kind { ENTRY_BAD, ENTRY_NET, ENTRY_NAME };

/* One allowOut/denyOut string into r (r->name allocated for names).
 * Returns what it was; ENTRY_NAME with r->name NULL is out of memory. */
static enum entry_kind parse_entry(const char *s, size_t len, struct egress_rule *r)
{
    char name[EGRESS_NAME_MAX + 2];
    int n;

    memset(r, 0, sizeof(*r));
    if (cidr_parse(s, len, &r->net) == 0) {
        /* ALL_TRAFFIC: the SDK's "all IP addresses", IPv6 included. Any
         * IPv4 /0 is that network whatever its host bits. */
        r->type =
            r->net.family == AF_INET && r->net.prefix == 0 ? EGRESS_RULE_ALL : EGRESS_RULE_NET;
        return ENTRY_NET;
    }
    if (len == 1 && s[0] == '*') {
        r->type = EGRESS_RULE_ANY_NAME;
        return ENTRY_NAME;
    }
    if (len > 2 && s[0] == '*' && s[1] == '.') {
        /* Kept with its dot: the match is then a plain suffix compare that
         * can only end at a label boundary. */
        n = egress_name_normalize(s + 2, len - 2, false, name + 1, sizeof(name) - 1);
        if (n < 0)
            return ENTRY_BAD;
        name[0] = '.';
        r->type = EGRESS_RULE_WILDCARD;
        r->name_len = (size_t)n + 1;
    } else {
        n = egress_name_normalize(s, len, false, name, sizeof(name));
        if (n < 0)
            return ENTRY_BAD;
        r->type = EGRESS_RULE_NAME;
        r->name_len = (size_t)n;
    }
    r->name = malloc(r->name_len + 1);
    if (r->name != NULL)
        memcpy(r->name, name, r->name_len + 1);
    return ENTRY_NAME;
}

static void free_rules(struct egress_rule *rules, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(rules[i].name);
    free(rules);
}

/* The array `arr` of the field `field` into *rules. Names only in allowOut. */
static int parse_list(const cJSON *arr, const char *field, bool names_ok,
                      struct egress_rule **rules, size_t *count, bool *has_names, char *err,
                      size_t errlen)
{
    const cJSON *it;
    size_t n, i = 0;
    char buf[72];

    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr))
        return errf(err, errlen, "%s is not an array", field);
    n = (size_t)cJSON_GetArraySize(arr);
    if (n > EGRESS_POLICY_MAX_RULES)
        return errf(err, errlen, "%s has more than %d entries", field, EGRESS_POLICY_MAX_RULES);
    if (n == 0)
        return 0;
    *rules = calloc(n, sizeof(**rules));
    if (*rules == NULL)
        return errf(err, errlen, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        struct egress_rule *r = &(*rules)[i];
        enum entry_kind kind;

        if (!cJSON_IsString(it))
            return errf(err, errlen, "%s[%zu] is not a string", field, i);
        kind = parse_entry(it->valuestring, strlen(it->valuestring), r);
        /* Counted before any failure below, so that the caller frees the
         * name just allocated. */
        *count = ++i;
        if (kind == ENTRY_BAD)
            return errf(err, errlen,
                        names_ok ? "%s[%zu]: \"%s\" is not an address, network, domain or *.domain"
                                 : "%s[%zu]: \"%s\" is not an address or network",
                        field, i - 1, shown(it->valuestring, buf, sizeof(buf)));
        if (kind == ENTRY_NAME && !names_ok)
            /* SPEC 9: deny-domains are bypassable (QUIC, DoH, a name
             * sharing an address) so the platform refuses them outright. */
            return errf(err, errlen,
                        "%s[%zu]: \"%s\" is a domain; %s takes addresses and networks only", field,
                        i - 1, shown(it->valuestring, buf, sizeof(buf)), field);
        if (kind == ENTRY_NAME) {
            if (r->type != EGRESS_RULE_ANY_NAME && r->name == NULL)
                return errf(err, errlen, "out of memory");
            *has_names = true;
        }
    }
    return 0;
}

#define FIELD(name, var)                                          \
    do {                                                          \
        if (json_guard_member(root, name, &var) == -1) {          \
            errf(err, errlen, "%s appears more than once", name); \
            goto fail;                                            \
        }                                                         \
    } while (0)

int egress_policy_parse(const char *json, size_t len, struct egress_policy **out, char *err,
                        size_t errlen)
{
    const cJSON *id, *internet, *allow, *deny, *maxc;
    cJSON *root = NULL;
    struct egress_policy *p = NULL;

    *out = NULL;
    root = json_guard_parse_object(json, len, err, errlen);
    if (root == NULL)
        goto fail;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    p->allow_internet = true;

    FIELD("sandboxId", id);
    FIELD("allowInternetAccess", internet);
    FIELD("allowOut", allow);
    FIELD("denyOut", deny);
    FIELD("maxConnections", maxc);

    if (id != NULL) {
        if (!cJSON_IsString(id)) {
            errf(err, errlen, "sandboxId is not a string");
            goto fail;
        }
        p->sandbox_id = strdup(id->valuestring);
        if (p->sandbox_id == NULL) {
            errf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (internet != NULL) {
        if (!cJSON_IsBool(internet)) {
            errf(err, errlen, "allowInternetAccess is not a boolean");
            goto fail;
        }
        p->allow_internet = cJSON_IsTrue(internet);
    }
    if (parse_list(allow, "allowOut", true, &p->allow, &p->allow_count, &p->has_names, err,
                   errlen) == -1)
        goto fail;
    if (parse_list(deny, "denyOut", false, &p->deny, &p->deny_count, &p->has_names, err, errlen) ==
        -1)
        goto fail;
    if (maxc != NULL && json_guard_uint32(maxc, &p->max_connections) == -1) {
        errf(err, errlen, "maxConnections is not a non-negative integer");
        goto fail;
    }
    cJSON_Delete(root);
    *out = p;
    return 0;

fail:
    egress_policy_free(p);
    cJSON_Delete(root);
    return -1;
}

#undef FIELD

void egress_policy_free(struct egress_policy *p)
{
    if (p == NULL)
        return;
    free(p->sandbox_id);
    free_rules(p->allow, p->allow_count);
    free_rules(p->deny, p->deny_count);
    free(p);
}

/* ---- deciding -------------------------------------------------------------- */

static bool rule_matches_name(const struct egress_rule *r, const char *name, size_t len)
{
    switch (r->type) {
    case EGRESS_RULE_ANY_NAME:
        return true;
    case EGRESS_RULE_NAME:
        return len == r->name_len && memcmp(name, r->name, len) == 0;
    case EGRESS_RULE_WILDCARD:
        /* ".example.com" ends "a.b.example.com" and not "example.com"
         * (shorter) nor "badexample.com" (no dot there). */
        return len > r->name_len && memcmp(name + len - r->name_len, r->name, r->name_len) == 0;
    default:
        return false;
    }
}

static bool rule_matches_addr(const struct egress_rule *r, const struct cidr_addr *a)
{
    if (r->type == EGRESS_RULE_ALL)
        return true;
    return r->type == EGRESS_RULE_NET && cidr_contains(&r->net, a);
}

/* "allowOut[1] *.github.com" into out->rule. */
static void describe_rule(struct egress_decision *out, const char *list, long i,
                          const struct egress_rule *r)
{
    char net[CIDR_STRLEN];

    switch (r->type) {
    case EGRESS_RULE_NET:
        cidr_format(&r->net, net, sizeof(net));
        snprintf(out->rule, sizeof(out->rule), "%s[%ld] %s", list, i, net);
        break;
    case EGRESS_RULE_ALL:
        snprintf(out->rule, sizeof(out->rule), "%s[%ld] 0.0.0.0/0", list, i);
        break;
    case EGRESS_RULE_NAME:
        snprintf(out->rule, sizeof(out->rule), "%s[%ld] %s", list, i, r->name);
        break;
    case EGRESS_RULE_WILDCARD:
        snprintf(out->rule, sizeof(out->rule), "%s[%ld] *%s", list, i, r->name);
        break;
    case EGRESS_RULE_ANY_NAME:
        snprintf(out->rule, sizeof(out->rule), "%s[%ld] *", list, i);
        break;
    }
}

static enum egress_verdict decided(struct egress_decision *out, enum egress_verdict v,
                                   enum egress_decided_by by, long index, const char *rule)
{
    out->verdict = v;
    out->by = by;
    out->index = index;
    if (rule != NULL)
        snprintf(out->rule, sizeof(out->rule), "%s", rule);
    return v;
}

enum egress_verdict egress_decide(const struct egress_policy *p, const struct egress_env *env,
                                  const struct sockaddr *dst, const char *name,
                                  struct egress_decision *out)
{
    struct cidr_addr a;
    char net[CIDR_STRLEN];
    long i;

    out->rule[0] = '\0';
    if (p == NULL)
        return decided(out, EGRESS_DENY, EGRESS_BY_NO_POLICY, -1, "no policy");
    if (cidr_addr_from_sockaddr(dst, &a) == -1)
        return decided(out, EGRESS_DENY, EGRESS_BY_NO_ADDRESS, -1, "no destination address");

    if (env != NULL && p->has_names && cidr_sockaddr_port(dst) == 53 &&
        (i = cidr_find(env->nameservers, env->nameserver_count, &a)) >= 0) {
        decided(out, EGRESS_ALLOW, EGRESS_BY_NAMESERVER, i, NULL);
        cidr_format(&env->nameservers[i], net, sizeof(net));
        snprintf(out->rule, sizeof(out->rule), "nameserver %s", net);
        return EGRESS_ALLOW;
    }
    if (env != NULL && (i = cidr_find(env->always_deny, env->always_deny_count, &a)) >= 0) {
        decided(out, EGRESS_DENY, EGRESS_BY_ALWAYS_DENY, i, NULL);
        cidr_format(&env->always_deny[i], net, sizeof(net));
        snprintf(out->rule, sizeof(out->rule), "always_deny %s", net);
        return EGRESS_DENY;
    }
    if (name != NULL && p->has_names) {
        size_t len = strlen(name);

        for (size_t k = 0; k < p->allow_count; k++) {
            if (rule_matches_name(&p->allow[k], name, len)) {
                describe_rule(out, "allowOut", (long)k, &p->allow[k]);
                return decided(out, EGRESS_ALLOW, EGRESS_BY_ALLOW_NAME, (long)k, NULL);
            }
        }
    }
    for (size_t k = 0; k < p->allow_count; k++) {
        if (rule_matches_addr(&p->allow[k], &a)) {
            describe_rule(out, "allowOut", (long)k, &p->allow[k]);
            return decided(out, EGRESS_ALLOW, EGRESS_BY_ALLOW_ADDR, (long)k, NULL);
        }
    }
    for (size_t k = 0; k < p->deny_count; k++) {
        if (rule_matches_addr(&p->deny[k], &a)) {
            describe_rule(out, "denyOut", (long)k, &p->deny[k]);
            return decided(out, EGRESS_DENY, EGRESS_BY_DENY_ADDR, (long)k, NULL);
        }
    }
    if (!p->allow_internet)
        return decided(out, EGRESS_DENY, EGRESS_BY_NO_INTERNET, -1, "allowInternetAccess false");
    return decided(out, EGRESS_ALLOW, EGRESS_BY_DEFAULT, -1, "default allow");
}

const char *egress_decided_by_name(enum egress_decided_by by)
{
    static const char *const names[] = {
        [EGRESS_BY_NO_POLICY] = "no_policy",
        [EGRESS_BY_NO_ADDRESS] = "no_address",
        [EGRESS_BY_NAMESERVER] = "nameserver",
        [EGRESS_BY_ALWAYS_DENY] = "always_deny",
        [EGRESS_BY_ALLOW_NAME] = "allow_name",
        [EGRESS_BY_ALLOW_ADDR] = "allow_address",
        [EGRESS_BY_DENY_ADDR] = "deny_address",
        [EGRESS_BY_NO_INTERNET] = "no_internet",
        [EGRESS_BY_DEFAULT] = "default",
        [EGRESS_BY_BROKEN] = "broken_policy",
        [EGRESS_BY_UNAVAILABLE] = "unavailable",
        [EGRESS_BY_UNRESOLVED] = "unresolved",
        [EGRESS_BY_MAX_CONNECTIONS] = "max_connections",
    };

    if ((unsigned)by >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[by];
}

enum egress_verdict egress_decided_by_verdict(enum egress_decided_by by)
{
    return by == EGRESS_BY_NAMESERVER || by == EGRESS_BY_ALLOW_NAME || by == EGRESS_BY_ALLOW_ADDR ||
                   by == EGRESS_BY_DEFAULT
               ? EGRESS_ALLOW
               : EGRESS_DENY;
}
