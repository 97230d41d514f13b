/* The egress resolver (resolve.h). One entry per name: the last answer
 * and its expiry, the A and AAAA queries in flight, and the flows waiting
 * for them (single flight: a burst of connections to one name sends one
 * pair of queries). Entries live in a SipHash map (names come from
 * sandboxes) and on an LRU list; the bound evicts the least recently used
 * idle one. */
#include "resolve.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress_policy.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"
#include "timeutil.h"

struct resolve_entry {
    struct strmap_node node;
    struct list_node lru; /* r->lru, most recently used first */
    struct resolver *r;
    struct list_node waiters;
    struct resolve_answer answer; /* the last one */
    struct resolve_answer next;   /* being gathered from the two queries */
    int status;
    uint64_t expires_ms; /* 0: never answered */
    int pending;         /* queries in flight (0..2) */
    int ttl_s;           /* smallest TTL seen in this round */
    char name[];
};

struct resolver {
    struct evdns_base *dns;
    struct event_base *base;
    struct strmap names;
    struct list_node lru;
    uint64_t *hits, *misses, *failures;
    bool closing; /* resolver_free: answers still queued are dropped */
};

#define ENTRY_OF(n) container_of(n, struct resolve_entry, node)

static void count(uint64_t *c)
{
    if (c)
        METRIC_ADD_AT(c, 1);
}

struct resolver *resolver_new(struct event_base *base, const struct cidr *ns, size_t n)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base = base;
    list_init(&r->lru);
    if (strmap_init(&r->names, 256) == -1)
        goto fail;
    r->dns = evdns_base_new(base, 0);
    if (!r->dns)
        goto fail;
    evdns_base_set_option(r->dns, "timeout:", RESOLVE_TIMEOUT_S);
    evdns_base_set_option(r->dns, "attempts:", RESOLVE_ATTEMPTS);
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        memset(&ss, 0, sizeof(ss));
        if (ns[i].family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons(53);
            memcpy(&a->sin_addr, ns[i].addr, 4);
            len = sizeof(*a);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(53);
            memcpy(&a->sin6_addr, ns[i].addr, 16);
            len = sizeof(*a);
        }
        if (evdns_base_nameserver_sockaddr_add(r->dns, (struct sockaddr *)&ss, len, 0) == 0)
            added++;
    }
    if (added == 0)
        goto fail;
    return r;
fail:
    resolver_free(r);
    return NULL;
}

void resolver_set_counters(struct resolver *r, uint64_t *hits, uint64_t *misses, uint64_t *failures)
{
    r->hits = hits;
    r->misses = misses;
    r->failures = failures;
}

static void entry_free(struct resolve_entry *e)
{
    strmap_remove(&e->r->names, &e->node);
    list_unlink(&e->lru);
    while (!list_empty(&e->waiters))
        list_unlink(list_first(&e->waiters));
    free(e);
}

/* An entry with queries in flight goes too: evdns_base_free dropped them
 * without calling back (fail_requests 0). */
static void free_node(struct strmap_node *n, void *arg)
{
    entry_free(ENTRY_OF(n));
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    r->closing = true;
    if (r->dns) {
        /* Answers already received wait in deferred callbacks, which read
         * their entry: let them run (and find r closing) before anything
         * goes. */
        event_base_loop(r->base, EVLOOP_NONBLOCK);
        evdns_base_free(r->dns, 0);
    }
    if (r->names.buckets)
        strmap_each(&r->names, free_node, NULL);
    strmap_destroy(&r->names);
    free(r);
}

/* Room for one more name: drop the least recently used idle entries. */
static bool make_room(struct resolver *r)
{
    struct list_node *n = list_last(&r->lru);
    while (r->names.count >= RESOLVE_MAX_ENTRIES && n) {
        struct resolve_entry *e = container_of(n, struct resolve_entry, lru);
        n = n->prev == &r->lru ? NULL : n->prev;
        if (!e->pending)
            entry_free(e);
    }
    return r->names.count < RESOLVE_MAX_ENTRIES;
}

static void answer_waiters(struct resolve_entry *e)
{
    struct list_node list;
    list_init(&list);
    list_splice_back(&list, &e->waiters);
    /* A callback may ask again (answered from e) or end another flow. e
     * stays: only make_room frees, and never an entry being answered here
     * (pending is 0 but e is the most recently used). */
    while (!list_empty(&list)) {
        struct resolve_waiter *wt = container_of(list_first(&list), struct resolve_waiter, link);
        list_unlink(&wt->link);
        wt->cb(wt, e->status, &e->answer);
    }
}

static void dns_cb(int result, char type, int n, int ttl, void *addresses, void *arg)
{
    struct resolve_entry *e = arg;
    struct resolver *r = e->r;
    if (r->closing)
        return;
    if (result == DNS_ERR_NONE) {
        for (int i = 0; i < n && e->next.count < RESOLVE_MAX_ADDRS; i++) {
            struct cidr_addr *a = &e->next.addr[e->next.count];
            if (type == DNS_IPv4_A) {
                a->family = AF_INET;
                memset(a->addr, 0, sizeof(a->addr));
                memcpy(a->addr, (const char *)addresses + 4 * i, 4);
            } else if (type == DNS_IPv6_AAAA) {
                /* An IPv4-mapped answer is the IPv4 address (cidr.h). */
                struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
                memcpy(&s6.sin6_addr, (const char *)addresses + 16 * i, 16);
                if (cidr_addr_from_sockaddr((struct sockaddr *)&s6, a) == -1)
                    continue;
            } else {
                continue;
            }
            e->next.count++;
        }
        if (n > 0 && (e->ttl_s < 0 || ttl < e->ttl_s))
            e->ttl_s = ttl;
    } else if (type == DNS_IPv4_A || e->next.error == 0) {
        e->next.error = result;
    }
    if (--e->pending > 0)
        return;
    /* Both answered: IPv4 first (the A answer may have come second). */
    struct resolve_answer *na = &e->next;
    size_t v4 = 0;
    for (size_t i = 0; i < na->count; i++)
        if (na->addr[i].family == AF_INET) {
            struct cidr_addr t = na->addr[v4];
            na->addr[v4++] = na->addr[i];
            na->addr[i] = t;
        }
    int ttl_s = e->ttl_s < RESOLVE_MIN_TTL_S   ? RESOLVE_MIN_TTL_S
                : e->ttl_s > RESOLVE_MAX_TTL_S ? RESOLVE_MAX_TTL_S
                                               : e->ttl_s;
    e->answer = *na;
    e->status = na->count ? RESOLVE_OK : RESOLVE_FAILED;
    e->expires_ms = time_now_ms() + (uint64_t)ttl_s * 1000;
    if (e->status == RESOLVE_FAILED) {
        count(r->failures);
        log_info("egress: %s did not resolve: %s", e->name,
                 na->error ? evdns_err_to_string(na->error) : "no address");
    }
    answer_waiters(e);
}

/* Sends the A and AAAA queries (a query that cannot be sent is answered
 * as failed at once). */
static void entry_ask(struct resolve_entry *e)
{
    struct resolver *r = e->r;
    memset(&e->next, 0, sizeof(e->next));
    e->ttl_s = -1;
    e->pending = 2;
    /* Either query may fail (and call back) at once: pending counts down
     * from 2 whatever the order. */
    if (!evdns_base_resolve_ipv4(r->dns, e->name, DNS_QUERY_NO_SEARCH, dns_cb, e))
        dns_cb(DNS_ERR_UNKNOWN, DNS_IPv4_A, 0, 0, NULL, e);
    if (!evdns_base_resolve_ipv6(r->dns, e->name, DNS_QUERY_NO_SEARCH, dns_cb, e))
        dns_cb(DNS_ERR_UNKNOWN, DNS_IPv6_AAAA, 0, 0, NULL, e);
}

int resolver_get(struct resolver *r, const char *name, struct resolve_waiter *wt, int *status,
                 const struct resolve_answer **a)
{
    struct strmap_node *n = strmap_get(&r->names, name);
    struct resolve_entry *e = n ? ENTRY_OF(n) : NULL;
    if (e) {
        list_move_front(&r->lru, &e->lru);
        if (!e->pending && time_now_ms() < e->expires_ms) {
            count(r->hits);
            *status = e->status;
            *a = &e->answer;
            return 0;
        }
    } else {
        size_t len = strnlen(name, EGRESS_NAME_MAX);
        if (!make_room(r) || !(e = calloc(1, sizeof(*e) + len + 1))) {
            static const struct resolve_answer none = {.error = DNS_ERR_UNKNOWN};
            *status = RESOLVE_FAILED;
            *a = &none;
            return 0;
        }
        e->r = r;
        memcpy(e->name, name, len);
        list_init(&e->waiters);
        strmap_put(&r->names, &e->node, e->name);
        list_insert_front(&r->lru, &e->lru);
    }
    if (!e->pending) {
        count(r->misses);
        entry_ask(e);
        if (!e->pending) { /* answered inside: no query could be sent */
            *status = e->status;
            *a = &e->answer;
            return 0;
        }
    }
    list_insert_back(&e->waiters, &wt->link);
    return 1;
}
