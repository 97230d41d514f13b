/* The route cache (lookup.h): redis/cache.c with route_rec_desc, the
 * cache.* settings of the worker's config, the worker's route cache
 * counters, and a waiter that hands route.c a struct route_rec. */
#include "lookup.h"

#include <stdlib.h>

#include "cache.h"
#include "worker.h"

struct lookup {
    struct worker *w;
    struct cache *cache;
};

static struct cache_params params_of(const struct config *cfg)
{
    return (struct cache_params){
        .ttl_ms = cfg->cache_ttl_ms,
        .negative_ttl_ms = cfg->cache_negative_ttl_ms,
        .stale_grace_ms = cfg->cache_stale_grace_ms,
        .refresh_ahead = true,
        .max_entries = (size_t)cfg->cache_max_entries,
    };
}

struct lookup *lookup_new(struct worker *w)
{
    struct lookup *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return NULL;
    struct cache_params p = params_of(w->cfg);
    struct cache_counters counters = {
        .hits = &w->metrics.cache_hits,
        .misses = &w->metrics.cache_misses,
        .entries = &w->metrics.cache_entries,
        .evictions = &w->metrics.cache_evictions,
        .full = &w->metrics.cache_full,
        .lookups = w->metrics.route_lookups,
    };
    lk->w = w;
    lk->cache = cache_new(w->base, w->redis, &route_rec_desc, &p, &counters);
    if (!lk->cache) {
        free(lk);
        return NULL;
    }
    return lk;
}

void lookup_free(struct lookup *lk)
{
    if (!lk)
        return;
    cache_free(lk->cache);
    free(lk);
}

/* The cache's answer, as route.c takes it. */
static void answered(struct cache_waiter *cw, int status, void *value)
{
    struct lookup_waiter *wt = container_of(cw, struct lookup_waiter, cw);
    wt->cb(wt, status, value);
}

int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt, int *status,
               struct route_rec **rr)
{
    void *value;
    wt->cw.cb = answered;
    int r = cache_get(lk->cache, id, &wt->cw, status, &value);
    if (r == 0)
        *rr = value;
    return r;
}

void lookup_config_changed(struct lookup *lk, const struct config *old)
{
    struct cache_params p = params_of(lk->w->cfg);
    cache_set_params(lk->cache, &p);
}
