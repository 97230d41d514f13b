#include "strmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "siphash.h"

/* Keys come from clients (sandbox ids in the Host header): with a hash they
 * can compute, they could send ids that all land in one chain and turn
 * every lookup into a walk of the whole table. SipHash with a key drawn at
 * start and never shown makes the bucket of an id unpredictable. One key per
 * process, set once by the first strmap_init (pthread_once: the main thread
 * and the workers both make maps); every later read of it happens after
 * that pthread_once or after a pthread_create that follows it. */
static struct siphash_key process_key;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_init(void)
{
    uint8_t bytes[SIPHASH_KEY_BYTES];
    size_t got = 0;
    while (got < sizeof(bytes)) {
        ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* No kernel randomness (Linux < 3.17, or a seccomp filter): an
             * unkeyed table would be a denial of service waiting to happen. */
            fprintf(stderr, "strmap: getrandom: %s\n", strerror(errno));
            abort();
        }
        got += (size_t)n;
    }
    process_key = siphash_key_from_bytes(bytes);
}

static size_t hash_str(const char *s)
{
    return (size_t)siphash24(s, strlen(s), &process_key);
}

int strmap_init(struct strmap *m, size_t nbuckets)
{
    pthread_once(&process_key_once, process_key_init);
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

void strmap_each(struct strmap *m, void (*fn)(struct strmap_node *n, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_node *n = m->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            fn(n, arg);
        }
    }
}
