/* The egress policy record the control plane writes to Redis, and the
 * decision for one egress connection or request: SPEC section 9.
 *
 * Parsed once per cache fill (cJSON), never per connection; the decision is
 * a walk over the parsed rules, no allocation. Pure: the listeners, the HTTP
 * front end and the nft rule generator all decide through here, so that the
 * proxy and the kernel never disagree. */
#ifndef EDGEPROXY_EGRESS_POLICY_H
#define EDGEPROXY_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cidr.h"

/* RFC 1035 section 2.3.4: 255 octets on the wire, 253 characters written
 * out without the trailing dot. */
#define EGRESS_NAME_MAX 253
/* Entries per list: a record is a control-plane string, but a bound keeps a
 * broken one from costing a worker a long parse and the kernel a huge set. */
#define EGRESS_POLICY_MAX_RULES 4096
/* "allowOut[4095] " + a name, or "always_deny " + a network, and a NUL. */
#define EGRESS_RULE_STRLEN (16 + EGRESS_NAME_MAX + 1)

enum egress_rule_type {
    EGRESS_RULE_NET,      /* an address or network ("1.1.1.1", "8.8.8.0/24") */
    EGRESS_RULE_ALL,      /* "0.0.0.0/0": ALL_TRAFFIC, IPv4 and IPv6 */
    EGRESS_RULE_NAME,     /* "api.example.com", exactly */
    EGRESS_RULE_WILDCARD, /* "*.example.com": any name below, not the apex */
    EGRESS_RULE_ANY_NAME, /* "*": any name at all */
};

struct egress_rule {
    enum egress_rule_type type;
    struct cidr net; /* NET */
    /* NAME: the name; WILDCARD: the suffix with its leading dot
     * (".example.com"). Normalised (egress_name_normalize). NULL otherwise. */
    char *name;
    size_t name_len;
};

struct egress_policy {
    char *sandbox_id;                 /* "sandboxId", NULL when absent */
    bool allow_internet;              /* "allowInternetAccess", default true */
    struct egress_rule *allow, *deny; /* "allowOut", "denyOut", in order */
    size_t allow_count, deny_count;
    uint32_t max_connections; /* "maxConnections"; 0 = unlimited */
    /* allowOut holds a name rule (NAME, WILDCARD, ANY_NAME): the
     * nameservers are reachable on port 53 and QUIC is refused (SPEC 9). */
    bool has_names;
};

/* Parses `json` (len bytes, need not be NUL-terminated). On success returns
 * 0 and *out owns a new policy (caller frees with egress_policy_free). On a
 * broken record returns -1, *out NULL, with a message in err naming the field
 * at fault ("denyOut[0]: \"example.com\" is a domain; denyOut takes
 * addresses and networks only", "allowInternetAccess is not a boolean",
 * "not valid JSON", ...).
 * Rules: sandboxId a string (optional: it only names the sandbox in logs);
 * allowInternetAccess a boolean (default true; false is denyOut
 * ["0.0.0.0/0"]); allowOut an array of strings, each an IPv4/IPv6 address, a
 * network ("a.b.c.d/n", "v6/n"), a domain name, "*.domain" or "*"; denyOut
 * an array of addresses and networks; maxConnections a non-negative integer
 * (0, absent or null = unlimited). At most EGRESS_POLICY_MAX_RULES entries
 * per list. Unknown fields are ignored (the control plane may add some);
 * null counts as absent; a field given twice is broken. */
int egress_policy_parse(const char *json, size_t len, struct egress_policy **out, char *err,
                        size_t errlen);

void egress_policy_free(struct egress_policy *p);

/* Normalises a name once, for matching and for resolving: lower case, one
 * trailing dot dropped, and with strip_port (a Host header value, RFC 9110
 * section 7.2) a ":port" dropped. The result must be a DNS name: labels of
 * [a-z0-9_-], 1 to 63 bytes each, at most EGRESS_NAME_MAX in all, the last
 * label not all digits. IDNs stay in their ASCII (punycode) form: nothing is
 * decoded, and any byte outside those classes (UTF-8 included) is refused.
 * An IP literal ("1.2.3.4", "[::1]:80") is not a name. Writes out
 * (NUL-terminated, cap >= EGRESS_NAME_MAX + 1 always fits) and returns the
 * length, or -1 when s[0..len) is not a name. */
int egress_name_normalize(const char *s, size_t len, bool strip_port, char *out, size_t cap);

/* What the proxy knows besides the policy: egress.always_deny and
 * egress.nameservers from the configuration (borrowed). */
struct egress_env {
    const struct cidr *always_deny;
    size_t always_deny_count;
    const struct cidr *nameservers;
    size_t nameserver_count;
};

enum egress_verdict {
    EGRESS_DENY = 0,
    EGRESS_ALLOW = 1,
};

/* Which rule decided: for /metrics labels (a bounded set) and for code. */
enum egress_decided_by {
    EGRESS_BY_NO_POLICY,   /* no policy: not a known sandbox (deny) */
    EGRESS_BY_NO_ADDRESS,  /* the destination is not IPv4 or IPv6 (deny) */
    EGRESS_BY_NAMESERVER,  /* port 53 to a nameserver, names in use (allow) */
    EGRESS_BY_ALWAYS_DENY, /* egress.always_deny (deny) */
    EGRESS_BY_ALLOW_NAME,  /* an allowOut name rule (allow) */
    EGRESS_BY_ALLOW_ADDR,  /* an allowOut address rule (allow) */
    EGRESS_BY_DENY_ADDR,   /* a denyOut rule (deny) */
    EGRESS_BY_NO_INTERNET, /* allowInternetAccess false (deny) */
    EGRESS_BY_DEFAULT,     /* nothing matched (allow) */
    /* Decided around egress_decide by the proxy (egress/flow.c), all deny: */
    EGRESS_BY_BROKEN,          /* the record is broken */
    EGRESS_BY_UNAVAILABLE,     /* Redis cannot answer, nothing usable cached */
    EGRESS_BY_UNRESOLVED,      /* a name rule matched; the name gave no usable address */
    EGRESS_BY_MAX_CONNECTIONS, /* the sandbox's maxConnections are open */
    EGRESS_BY_COUNT,
};

struct egress_decision {
    enum egress_verdict verdict;
    enum egress_decided_by by;
    long index; /* into allowOut, denyOut, always_deny or nameservers; -1 */
    /* For the log line, always filled: "allowOut[1] *.github.com",
     * "denyOut[0] 0.0.0.0/0", "always_deny 10.0.0.0/8", "nameserver
     * 8.8.8.8", "allowInternetAccess false", "default allow", "no policy". */
    char rule[EGRESS_RULE_STRLEN];
};

/* Decides one connection (or one request on port 80) to `dst` (its port
 * matters only for the nameserver rule). `name` is the Host or SNI as
 * egress_name_normalize returned it, or NULL when there is none (other
 * ports, no SNI, an IP literal). p NULL means no policy record: deny.
 * Order (SPEC section 9): port 53 to a nameserver while allowOut holds a
 * name, allow (the operator's own resolvers, so they pass always_deny);
 * else an always-denied address, deny; else a name matching an allowOut
 * name rule, allow; else the address in allowOut, allow; else in denyOut or
 * allowInternetAccess false, deny; else allow. IPv4-mapped IPv6
 * destinations are decided as IPv4; "0.0.0.0/0" covers IPv6 too. Borrows
 * everything for the call; fills *out whatever the verdict. */
enum egress_verdict egress_decide(const struct egress_policy *p, const struct egress_env *env,
                                  const struct sockaddr *dst, const char *name,
                                  struct egress_decision *out);

/* Short names of enum egress_decided_by, for metrics: "no_policy",
 * "always_deny", "allow_name", ... ("unknown" out of range) */
const char *egress_decided_by_name(enum egress_decided_by by);

/* The verdict a rule kind always gives: allow for the nameserver, allowOut
 * and default rules, deny for the rest. */
enum egress_verdict egress_decided_by_verdict(enum egress_decided_by by);

#endif
