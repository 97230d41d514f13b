#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull; /* FNV-1a, 64 bit */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int strmap_init(struct strmap *m, size_t nbuckets)
{
    size_t n = 16;
    while (n < nbuckets)
        n *= 2;
    m->buckets = calloc(n, sizeof(*m->buckets));
    m->nbuckets = m->buckets ? n : 0;
    m->count = 0;
    return m->buckets ? 0 : -1;
}

void strmap_destroy(struct strmap *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

struct strmap_node *strmap_get(const struct strmap *m, const char *key)
{
    size_t h = hash_str(key);
    struct strmap_node *n = m->buckets[h & (m->nbuckets - 1)];
    while (n && (n->hash != h || strcmp(n->key, key) != 0))
        n = n->next;
    return n;
}

static void grow(struct strmap *m)
{
    size_t n = m->nbuckets * 2;
    struct strmap_node **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return; /* keep working with longer chains */
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_node *x = m->buckets[i], *next;
        for (; x; x = next) {
            next = x->next;
            x->next = nb[x->hash & (n - 1)];
            nb[x->hash & (n - 1)] = x;
        }
    }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = n;
}

void strmap_put(struct strmap *m, struct strmap_node *n, const char *key)
{
    if (m->count >= m->nbuckets)
        grow(m);
    n->key = key;
    n->hash = hash_str(key);
    size_t b = n->hash & (m->nbuckets - 1);
    n->next = m->buckets[b];
    m->buckets[b] = n;
    m->count++;
}

void strmap_remove(struct strmap *m, struct strmap_node *n)
{
    struct strmap_node **pp = &m->buckets[n->hash & (m->nbuckets - 1)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = n->next;
        m->count--;
    }
}

void strmap_each(struct strmap *m, void (*fn)(struct strmap_node *n, void *arg),
                 void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_node *n = m->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            fn(n, arg);
        }
    }
}
