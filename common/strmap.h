/* An intrusive string-keyed hash table: the entry embeds a strmap_node and
 * owns its key; the map allocates only its bucket array. Used for the route
 * cache and the upstream pools. Keys are hashed with SipHash-2-4 under a
 * random per-process key (see strmap.c), so clients cannot choose keys that
 * collide. A map is single-threaded; maps in different threads are fine. */
#ifndef EDGEPROXY_STRMAP_H
#define EDGEPROXY_STRMAP_H

#include <stddef.h>

struct strmap_node {
    struct strmap_node *next;
    size_t hash;
    const char *key; /* borrowed from the containing entry */
};

struct strmap {
    struct strmap_node **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

/* 0 ok, -1 out of memory. */
int strmap_init(struct strmap *m, size_t nbuckets);
/* Frees the buckets only; entries belong to the caller. */
void strmap_destroy(struct strmap *m);

struct strmap_node *strmap_get(const struct strmap *m, const char *key);
/* Inserts n (key must stay valid while n is in the map). The caller checks
 * that the key is not there yet. Grows the table at load factor 1. */
void strmap_put(struct strmap *m, struct strmap_node *n, const char *key);
void strmap_remove(struct strmap *m, struct strmap_node *n);

/* Calls fn on every node; fn may remove the node it is given. */
void strmap_each(struct strmap *m, void (*fn)(struct strmap_node *n, void *arg), void *arg);

#endif
