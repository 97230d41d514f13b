#include "conn_limit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "host.h"
#include "list.h"
#include "strmap.h"
#include "timeutil.h"

struct conn_limit {
    struct strmap_node node; /* keyed by id; guarded by table_lock */
    int refs;                /* guarded by table_lock */
    uint32_t active;         /* atomic */
    /* Global scope: the last view the sync stored (atomic each). */
    uint32_t own_at_sync, others;
    uint64_t synced_ms; /* 0: none yet */
    char id[HOST_ID_MAX + 1];
};

static bool global_scope;           /* set before the workers start */
static uint32_t live_instances = 1; /* atomic: the sync's last count */

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

void limits_set_scope(int scope)
{
    __atomic_store_n(&global_scope, scope == CONFIG_LIMITS_GLOBAL, __ATOMIC_RELAXED);
}

uint32_t limits_global_cap(uint32_t max, bool fresh, uint32_t own_at_sync, uint32_t others,
                           uint32_t instances)
{
    uint64_t n = instances ? instances : 1;
    if (!fresh)
        return (uint32_t)(((uint64_t)max + n - 1) / n);
    uint64_t taken = (uint64_t)own_at_sync + others;
    uint64_t free_room = max > taken ? max - taken : 0;
    uint64_t cap = own_at_sync + (free_room + n - 1) / n;
    return cap < max ? (uint32_t)cap : max;
}

bool limits_acquire(struct conn_limit *l, uint32_t max)
{
    if (!__atomic_load_n(&global_scope, __ATOMIC_RELAXED))
        return limits_take(&l->active, max);
    uint64_t synced = __atomic_load_n(&l->synced_ms, __ATOMIC_ACQUIRE);
    bool fresh = synced && time_now_ms() - synced <= LIMITS_STALE_MS;
    uint32_t cap = limits_global_cap(max, fresh, __atomic_load_n(&l->own_at_sync, __ATOMIC_RELAXED),
                                     __atomic_load_n(&l->others, __ATOMIC_RELAXED),
                                     __atomic_load_n(&live_instances, __ATOMIC_RELAXED));
    return limits_take(&l->active, cap);
}

/* Copies under the lock: the sync then talks to Redis without it. */
static void snapshot_one(struct strmap_node *n, void *arg)
{
    struct limits_count **at = arg;
    struct conn_limit *l = container_of(n, struct conn_limit, node);
    memcpy((*at)->id, l->id, sizeof(l->id));
    (*at)->active = __atomic_load_n(&l->active, __ATOMIC_RELAXED);
    (*at)++;
}

size_t limits_snapshot(struct limits_count **out)
{
    pthread_mutex_lock(&table_lock);
    size_t n = table.buckets ? table.count : 0;
    *out = n ? calloc(n, sizeof(**out)) : NULL;
    struct limits_count *at = *out;
    if (at)
        strmap_each(&table, snapshot_one, &at);
    pthread_mutex_unlock(&table_lock);
    return *out ? n : 0;
}

void limits_store_view(const char *sandbox_id, uint32_t own, uint32_t others, uint64_t now_ms)
{
    pthread_mutex_lock(&table_lock);
    struct strmap_node *n = table.buckets ? strmap_get(&table, sandbox_id) : NULL;
    if (n) {
        struct conn_limit *l = container_of(n, struct conn_limit, node);
        __atomic_store_n(&l->own_at_sync, own, __ATOMIC_RELAXED);
        __atomic_store_n(&l->others, others, __ATOMIC_RELAXED);
        __atomic_store_n(&l->synced_ms, now_ms, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&table_lock);
}

void limits_store_instances(uint32_t n)
{
    __atomic_store_n(&live_instances, n ? n : 1, __ATOMIC_RELAXED);
}

void limits_release(struct conn_limit *l)
{
    limits_give(&l->active);
}
