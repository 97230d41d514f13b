/* Sandbox id -> routing record: a per-worker cache in front of Redis.
 *
 * One GET per sandbox per TTL; concurrent misses for one sandbox share that
 * GET; PUBLISH <prefix>invalidate <id> purges an entry (a subscriber
 * connection per worker); expired records keep serving for a grace period
 * while Redis is unreachable. At most cache.max_entries ids per worker,
 * "not found" ones evicted first (states and memory: lookup.c). */
#ifndef EDGEPROXY_LOOKUP_H
#define EDGEPROXY_LOOKUP_H

#include <stdbool.h>

#include "list.h"
#include "route_rec.h"

struct worker;
struct lookup;
struct cache_entry;
struct conn_limit;

struct lookup_waiter;
/* Called once with the answer; `rr` is a new reference the callee owns (NULL
 * for LOOKUP_UNAVAILABLE). */
typedef void (*lookup_cb)(struct lookup_waiter *wt, int status, struct route_rec *rr);

struct lookup_waiter {
    struct list_node link; /* on no list when not waiting */
    lookup_cb cb;
};

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
    list_unlink(&wt->link);
}

void route_rec_unref(struct route_rec *rr);

/* After a reload: reconnects when the Redis settings changed (and treats the
 * cache as stale, since the new Redis may disagree with the old one). */
struct config;
void lookup_config_changed(struct lookup *lk, const struct config *old);

/* Is the Redis data connection up? (for /readyz) */
bool lookup_connected(const struct lookup *lk);

#endif
