/* maxConnections: concurrent requests per sandbox, counted across all
 * workers of the process (SPEC section 4), or across every instance that
 * shares the Redis (limits.max_connections_scope "global", SPEC section
 * 10). The one piece of state workers share: a mutex-guarded table touched
 * only when a record is (re)loaded or once a second by the sync, and an
 * atomic counter per sandbox touched per request.
 *
 * Global scope (README "Many instances"): once a second the sync
 * (conn_limit_sync.c, on worker 0) publishes this instance's count of each
 * sandbox to Redis with an expiry, and reads the other live instances'.
 * From such a view (own count O and the others' total T, among N live
 * instances) this instance admits while its count is under
 *     O + ceil((max - O - T) / N),
 * its share of what was free, at most max; so instances that all see the
 * same free room take it in N shares instead of each taking all of it.
 * Without a view younger than 3 s (a new sandbox, Redis away) it admits
 * while under ceil(max / N), N as last seen (1 before any sync). */
#ifndef EDGEPROXY_CONN_LIMIT_H
#define EDGEPROXY_CONN_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host.h"

/* A view older than this is no view (three missed syncs). */
#define LIMITS_STALE_MS 3000
/* How often the sync runs, and the expiry of what it publishes. */
#define LIMITS_SYNC_MS 1000
#define LIMITS_EXPIRE_MS 3000

struct conn_limit;
struct worker;
struct limits_sync;

/* Before any worker starts: enum config_limits_scope. */
void limits_set_scope(int scope);

/* The cap of a global limit (pure): with a fresh view, own_at_sync plus
 * this instance's share (ceil over `instances`) of max - own_at_sync -
 * others, at most max; without one, ceil(max / instances). instances 0
 * counts as 1. */
uint32_t limits_global_cap(uint32_t max, bool fresh, uint32_t own_at_sync, uint32_t others,
                           uint32_t instances);

/* For the sync: every counter's sandbox id and current count (the caller
 * frees *out); the view it read back for one sandbox; the live instances
 * it saw. */
struct limits_count {
    char id[HOST_ID_MAX + 1];
    uint32_t active;
};
size_t limits_snapshot(struct limits_count **out);
void limits_store_view(const char *sandbox_id, uint32_t own, uint32_t others, uint64_t now_ms);
void limits_store_instances(uint32_t n);

/* The sync of global limits on w (worker 0), every LIMITS_SYNC_MS through
 * w's Redis link (conn_limit_sync.c). NULL when out of memory. */
struct limits_sync *limits_sync_new(struct worker *w);
void limits_sync_free(struct limits_sync *s);

/* A counter shared by every worker for this sandbox id; caller releases it
 * with limits_unref. NULL on allocation failure. */
struct conn_limit *limits_ref(const char *sandbox_id);
void limits_unref(struct conn_limit *l);

/* Takes one slot if fewer than max are taken (in global scope: fewer than
 * the cap above). */
bool limits_acquire(struct conn_limit *l, uint32_t max);
void limits_release(struct conn_limit *l);

/* The same on any counter shared by the workers (client.max_connections):
 * increments *active unless it is at max already. */
bool limits_take(uint32_t *active, uint32_t max);
void limits_give(uint32_t *active);

#endif
