#include "conn_limit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

struct conn_limit {
    struct conn_limit *next;
    int refs;                   /* guarded by table_lock */
    uint32_t active;            /* atomic */
    char id[HOST_ID_MAX + 1];
};

#define LIMIT_BUCKETS 1024

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn_limit *table[LIMIT_BUCKETS];

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h & (LIMIT_BUCKETS - 1);
}

struct conn_limit *limits_ref(const char *sandbox_id)
{
    unsigned b = bucket_of(sandbox_id);
    pthread_mutex_lock(&table_lock);
    struct conn_limit *l = table[b];
    while (l && strcmp(l->id, sandbox_id) != 0)
        l = l->next;
    if (!l) {
        l = calloc(1, sizeof(*l));
        if (l) {
            strncpy(l->id, sandbox_id, HOST_ID_MAX);
            l->next = table[b];
            table[b] = l;
        }
    }
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
        struct conn_limit **pp = &table[bucket_of(l->id)];
        while (*pp != l)
            pp = &(*pp)->next;
        *pp = l->next;
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
    } while (!__atomic_compare_exchange_n(active, &cur, cur + 1, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
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
