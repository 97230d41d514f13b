/* A sandbox's egress policy as the worker holds it: the parsed record
 * (common/egress_policy.c) of key <key_prefix>egress:<source address>,
 * shared by the policy cache and the flows decided with it. The record type
 * of the egress policy cache: egress_rec_desc tells redis/cache.c how to
 * parse and share it (the route cache's twin, ingress/route_rec.c). */
#ifndef EDGEPROXY_EGRESS_POLICY_REC_H
#define EDGEPROXY_EGRESS_POLICY_REC_H

#include <stdint.h>

#include "cache.h"
#include "egress_policy.h"

struct conn_limit;

/* Immutable once built; reference-counted within one worker. */
struct egress_rec {
    int refs;
    /* Unique per parse in the process: a flow decided under serial s needs
     * no new decision while the cache still answers s (flow.c). */
    uint64_t serial;
    struct egress_policy *p;
    /* maxConnections > 0: the process-wide counter of this source's open
     * egress flows (ingress/conn_limit.c, keyed "egress:<address>"). */
    struct conn_limit *limit;
};

struct egress_rec *egress_rec_ref(struct egress_rec *r);
void egress_rec_unref(struct egress_rec *r);

/* Egress policies for redis/cache.c: keys <key_prefix>egress:<address>,
 * purged by PUBLISH <key_prefix>invalidate egress:<address>; ids are
 * source addresses as inet_ntop writes them (an IPv4-mapped IPv6 source as
 * IPv4), at most INET6_ADDRSTRLEN - 1 bytes. A FOUND value is a struct
 * egress_rec; a broken record is logged with the field at fault. */
extern const struct cache_desc egress_rec_desc;

#endif
