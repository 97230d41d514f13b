/* Sandbox id -> routing record: a per-worker cache in front of Redis.
 *
 * One GET per sandbox per TTL; concurrent misses for one sandbox share that
 * GET; PUBLISH <prefix>invalidate <id> purges an entry (a subscriber
 * connection per worker); expired records keep serving for a grace period
 * while Redis is unreachable. */
#ifndef EDGEPROXY_LOOKUP_H
#define EDGEPROXY_LOOKUP_H

#include <stdbool.h>

#include "record.h"

struct worker;
struct lookup;
struct cache_entry;
struct conn_limit;

enum lookup_status {
    LOOKUP_FOUND = 0,
    LOOKUP_NOT_FOUND = 1,   /* 502: no such key */
    LOOKUP_BROKEN = 2,      /* 502: not JSON, no address, ... */
    LOOKUP_UNAVAILABLE = 3, /* 503: Redis down and nothing usable cached */
};

/* A parsed answer, shared by the cache and the requests using it. Immutable
 * once built; reference-counted within one worker. */
struct route_rec {
    int refs;
    int status;                /* LOOKUP_FOUND / NOT_FOUND / BROKEN */
    struct record *rec;        /* FOUND only */
    struct conn_limit *limit;  /* FOUND with maxConnections > 0 */
    char message[200];         /* BROKEN: what is wrong */
    /* maskRequestHost expanded for the last port asked (a memo: most
     * requests to a sandbox go to one port). */
    char mask[256];
    int mask_len;              /* -1: none computed */
    uint16_t mask_port;
};

/* The Host to send upstream per maskRequestHost for this port, or NULL when
 * the record has no mask (or it does not fit). */
const char *route_rec_masked_host(struct route_rec *rr, uint16_t port, int *len);

struct lookup_waiter;
/* Called once with the answer; `rr` is a new reference the callee owns (NULL
 * for LOOKUP_UNAVAILABLE). */
typedef void (*lookup_cb)(struct lookup_waiter *wt, int status,
                          struct route_rec *rr);

struct lookup_waiter {
    struct lookup_waiter *next, *prev; /* NULL when not waiting */
    lookup_cb cb;
};

struct lookup *lookup_new(struct worker *w);
void lookup_free(struct lookup *lk);

/* Answers now (returns 0, *status and *rr set, *rr a new reference or NULL)
 * or later through wt->cb (returns 1; wt must stay valid until then or until
 * lookup_cancel). `id` is the lower-case sandbox id. */
int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt,
               int *status, struct route_rec **rr);

/* Stops waiting; safe to call when not waiting. */
void lookup_cancel(struct lookup_waiter *wt);

void route_rec_unref(struct route_rec *rr);

/* After a reload: reconnects when the Redis settings changed (and treats the
 * cache as stale, since the new Redis may disagree with the old one). */
struct config;
void lookup_config_changed(struct lookup *lk, const struct config *old);

/* Is the Redis data connection up? (for /readyz) */
bool lookup_connected(const struct lookup *lk);

#endif
