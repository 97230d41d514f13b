/* A routing answer (found record, not found, broken), shared by a worker's
 * route cache and the requests using it: immutable once built, reference-
 * counted within one worker. The record type of the route cache
 * (ingress/lookup.c): route_rec_desc tells redis/cache.c how to parse and
 * share it. */
#ifndef EDGEPROXY_ROUTE_REC_H
#define EDGEPROXY_ROUTE_REC_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "record.h"

struct conn_limit;

/* The cache's answers, as the route reads them. */
enum lookup_status {
    LOOKUP_FOUND = CACHE_FOUND,
    LOOKUP_NOT_FOUND = CACHE_NOT_FOUND,     /* 502: no such key */
    LOOKUP_BROKEN = CACHE_BROKEN,           /* 502: not JSON, no address, ... */
    LOOKUP_UNAVAILABLE = CACHE_UNAVAILABLE, /* 503: Redis down and nothing usable cached */
};

/* A parsed answer, shared by the cache and the requests using it. Immutable
 * once built; reference-counted within one worker. */
struct route_rec {
    int refs;
    int status;               /* LOOKUP_FOUND / NOT_FOUND / BROKEN */
    struct record *rec;       /* FOUND only */
    struct conn_limit *limit; /* FOUND with maxConnections > 0 */
    char message[200];        /* BROKEN: what is wrong */
    /* maskRequestHost expanded for the last port asked (a memo: most
     * requests to a sandbox go to one port). */
    char mask[256];
    int mask_len; /* -1: none computed */
    uint16_t mask_port;
};

/* The Host to send upstream per maskRequestHost for this port, or NULL when
 * the record has no mask (or it does not fit). */
const char *route_rec_masked_host(struct route_rec *rr, uint16_t port, int *len);

/* A new answer of that status, one reference. NULL when out of memory. */
struct route_rec *route_rec_new(int status);

/* The answer for a record's JSON text: FOUND, or BROKEN with the reason in
 * rr->message; a FOUND record with maxConnections holds the process-wide
 * counter for sandbox `id`. NULL when out of memory. */
struct route_rec *route_rec_parse(const char *id, const char *json, size_t len);

struct route_rec *route_rec_ref(struct route_rec *rr);
void route_rec_unref(struct route_rec *rr);

/* Sandbox routes for redis/cache.c: keys <key_prefix><id>, purged by a bare
 * id (PUBLISH <key_prefix>invalidate <id>), ids as host_parse makes them
 * (lower-case, at most HOST_ID_MAX); a FOUND value is a route_rec whose
 * status is LOOKUP_FOUND, a broken record is logged with its reason. */
extern const struct cache_desc route_rec_desc;

#endif
