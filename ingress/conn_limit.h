/* maxConnections: concurrent requests per sandbox, counted across all
 * workers of the process (SPEC section 4). The one piece of state workers
 * share: a mutex-guarded table touched only when a record is (re)loaded, and
 * an atomic counter per sandbox touched per request. */
#ifndef EDGEPROXY_CONN_LIMIT_H
#define EDGEPROXY_CONN_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct conn_limit;

/* A counter shared by every worker for this sandbox id; caller releases it
 * with limits_unref. NULL on allocation failure. */
struct conn_limit *limits_ref(const char *sandbox_id);
void limits_unref(struct conn_limit *l);

/* Takes one slot if fewer than max are taken. */
bool limits_acquire(struct conn_limit *l, uint32_t max);
void limits_release(struct conn_limit *l);

/* The same on any counter shared by the workers (client.max_connections):
 * increments *active unless it is at max already. */
bool limits_take(uint32_t *active, uint32_t max);
void limits_give(uint32_t *active);

#endif
