/* The egress resolver: a name's IPv4 and IPv6 addresses from the
 * configured egress.nameservers (libevent's evdns on the worker's loop, A
 * and AAAA asked at once, never the system resolver), cached per worker by
 * the answers' TTL. Asked after a domain rule matched a Host or SNI: the
 * name is only a claim until our own answer says where it lives (SPEC
 * section 9). */
#ifndef EDGEPROXY_EGRESS_RESOLVE_H
#define EDGEPROXY_EGRESS_RESOLVE_H

#include <stddef.h>

#include "cidr.h"
#include "list.h"

struct event_base;
struct resolver;

/* Addresses kept per name (A and AAAA together); more are dropped. */
#define RESOLVE_MAX_ADDRS 16
/* Names cached per worker; the least recently used idle one makes room. */
#define RESOLVE_MAX_ENTRIES 4096
/* Answer TTLs are held to this range (seconds): a TTL of 0 still serves
 * the connections of the next second from one query. Failures are cached
 * for the minimum. */
#define RESOLVE_MIN_TTL_S 1
#define RESOLVE_MAX_TTL_S 3600
/* evdns: seconds per try, and tries per nameserver round. */
#define RESOLVE_TIMEOUT_S "2"
#define RESOLVE_ATTEMPTS "2"

enum resolve_status {
    RESOLVE_OK = 0,     /* at least one address */
    RESOLVE_FAILED = 1, /* no address: NXDOMAIN, no data, timeout, ... */
};

struct resolve_answer {
    size_t count;
    struct cidr_addr addr[RESOLVE_MAX_ADDRS]; /* IPv4 first, then IPv6 */
    int error; /* RESOLVE_FAILED: the evdns error of the A query (DNS_ERR_*) */
};

struct resolve_waiter;
/* Called once; `a` is borrowed for the call. */
typedef void (*resolve_cb)(struct resolve_waiter *wt, int status, const struct resolve_answer *a);

/* A flow waiting for a name, embedded in it. */
struct resolve_waiter {
    struct list_node link; /* on no list when not waiting */
    resolve_cb cb;
};

/* A resolver on base asking `nameservers` (one-host networks, port 53).
 * NULL when out of memory or none can be used. */
struct resolver *resolver_new(struct event_base *base, const struct cidr *nameservers, size_t n);
/* Call once the loop has stopped: waiters are dropped uncalled. */
void resolver_free(struct resolver *r);

/* Answers now (0: *status and *a set, *a borrowed until the loop runs on)
 * or later through wt->cb (1; wt must stay valid until then or until
 * resolver_cancel). `name` is normalised (egress_name_normalize). */
int resolver_get(struct resolver *r, const char *name, struct resolve_waiter *wt, int *status,
                 const struct resolve_answer **a);

static inline void resolver_cancel(struct resolve_waiter *wt)
{
    list_unlink(&wt->link);
}

/* Counters (the worker's metrics): answered from the cache, asked the
 * nameservers, answered with no address. */
void resolver_set_counters(struct resolver *r, uint64_t *hits, uint64_t *misses,
                           uint64_t *failures);

#endif
