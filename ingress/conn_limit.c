#include "conn_limit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "list.h"
#include "strmap.h"

struct conn_limit {
    struct strmap_node node; /* keyed by id; guarded by table_lock */
    int refs;                /* guarded by table_lock */
    uint32_t active;         /* atomic */
    char id[HOST_ID_MAX + 1];
};

#define LIMIT_BUCKETS 1024

/* sandbox id -> conn_limit, shared by every worker: the lock guards the
 * map and the refs. Sandbox ids come from clients (the Host header): the
 * map's keyed hash keeps them from choosing ids that share a chain. Made
 * by the first limits_ref. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct strmap table;

static struct conn_limit *limit_find_or_add(const char *sandbox_id)
{
    if (!table.buckets && strmap_init(&table, LIMIT_BUCKETS) == -1)
        return NULL;
    struct strmap_node *n = strmap_get(&table, sandbox_id);
    if (n)
        return container_of(n, struct conn_limit, node);
    struct conn_limit *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    strncpy(l->id, sandbox_id, HOST_ID_MAX);
    strmap_put(&table, &l->node, l->id);
    return l;
}

struct conn_limit *limits_ref(const char *sandbox_id)
{
    pthread_mutex_lock(&table_lock);
    struct conn_limit *l = limit_find_or_add(sandbox_id);
    if (l)
        l->refs++;
    pthread_mutex_unlock(&table_lock);
    return l;
}

void limits_unref(struct conn_limit *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&table_lock);
    if (--l->refs == 0) {
        strmap_remove(&table, &l->node);
        free(l);
    }
    pthread_mutex_unlock(&table_lock);
}

bool limits_take(uint32_t *active, uint32_t max)
{
    uint32_t cur = __atomic_load_n(active, __ATOMIC_RELAXED);
    do {
        if (cur >= max)
            return false;
    } while (!__atomic_compare_exchange_n(active, &cur, cur + 1, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

void limits_give(uint32_t *active)
{
    __atomic_fetch_sub(active, 1, __ATOMIC_ACQ_REL);
}

bool limits_acquire(struct conn_limit *l, uint32_t max)
{
    return limits_take(&l->active, max);
}

void limits_release(struct conn_limit *l)
{
    limits_give(&l->active);
}
