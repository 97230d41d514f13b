/* Sandbox id -> routing record: the route cache, one per worker. It is one
 * instance of redis/cache.c (one GET per sandbox per TTL; concurrent misses
 * share it; PUBLISH <prefix>invalidate <id> purges an entry; expired records
 * keep serving for a grace period while Redis is unreachable; at most
 * cache.max_entries ids per worker, "not found" ones evicted first) for the
 * record type of route_rec.h. It lives here in ingress/, not in redis/,
 * because everything it adds to the generic cache is the route's: the
 * record type, the cache.* config keys, the edgeproxy_route_cache_* counters
 * and the waiter route.c embeds in its session. */
#ifndef EDGEPROXY_LOOKUP_H
#define EDGEPROXY_LOOKUP_H

#include "cache.h"
#include "list.h"
#include "route_rec.h"

struct worker;
struct lookup;
struct config;

struct lookup_waiter;
/* Called once with the answer; `rr` is a new reference the callee owns
 * (NULL unless status is LOOKUP_FOUND). */
typedef void (*lookup_cb)(struct lookup_waiter *wt, int status, struct route_rec *rr);

struct lookup_waiter {
    struct cache_waiter cw; /* the cache's (cw.link on no list when not waiting) */
    lookup_cb cb;
};

/* The worker's route cache, a client of w->redis (which must outlive it);
 * settings from w->cfg. NULL when out of memory. */
struct lookup *lookup_new(struct worker *w);
void lookup_free(struct lookup *lk);

/* Answers now (returns 0, *status and *rr set, *rr a new reference or NULL)
 * or later through wt->cb (returns 1; wt must stay valid until then or until
 * lookup_cancel). `id` is the lower-case sandbox id. */
int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt, int *status,
               struct route_rec **rr);

/* Stops waiting; safe to call when not waiting. (Inline: the list is the
 * waiter's own, and the request-path fuzzer's lookup stub shares it.) */
static inline void lookup_cancel(struct lookup_waiter *wt)
{
    cache_cancel(&wt->cw);
}

/* After a reload (w->cfg is the new config): the cache.* settings apply
 * from now on. (Changed Redis settings are the link's business:
 * redis_link_config_changed expires the cache.) */
void lookup_config_changed(struct lookup *lk, const struct config *old);

#endif
