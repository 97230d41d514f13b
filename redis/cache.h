/* A generic per-worker cache of parsed Redis records, in front of a
 * redis_link (see redis_link.h for what lives in redis/). One instance per record
 * type per worker, described by a struct cache_desc: how its keys are named,
 * how a value is parsed, referenced and released, what it is called in the
 * log. The instance does the rest once for every type: one GET per id per
 * TTL shared by concurrent misses (single flight), a negative TTL for "not
 * found" and broken records, stale grace while Redis cannot answer,
 * refresh-ahead, purges by PUBLISH, revalidation of everything after a
 * resubscription (purges may have been missed), at most max_entries ids
 * with negative entries evicted first, one deadline timer. States and
 * memory: cache.c. */
#ifndef EDGEPROXY_REDIS_CACHE_H
#define EDGEPROXY_REDIS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"

struct event_base;
struct redis_link;
struct cache;

/* What an answer says about an id. */
enum cache_status {
    CACHE_FOUND = 0,
    CACHE_NOT_FOUND = 1,   /* no such key */
    CACHE_BROKEN = 2,      /* the key holds something parse refused */
    CACHE_UNAVAILABLE = 3, /* Redis cannot answer and nothing usable is cached */
};

/* The longest id any record type may have (a purge message is copied into
 * a buffer of this size). */
#define CACHE_ID_MAX 255

/* One record type. Static and shared by every worker's instance. */
struct cache_desc {
    /* In log lines: "redis: GET for <name> <id> timed out ...". */
    const char *name;
    /* Keys are <redis.key_prefix><ns><id>; PUBLISH <redis.key_prefix>
     * invalidate <ns><id> purges id. Sandbox routes: "" (a bare id, as
     * always); egress policies: "egress:" (SPEC section 9). Each message
     * goes to the instance with the longest ns that starts it, so the two
     * never see each other's. */
    const char *ns;
    /* Ids are at most this long (<= CACHE_ID_MAX) and lower-case: purge
     * messages are lower-cased before they are looked up. */
    size_t id_max;
    /* The string a key holds -> a value. Returns CACHE_FOUND with *value a
     * new reference, CACHE_BROKEN with the reason in err (and nothing in
     * *value), or -1 when out of memory. bytes: len bytes (a NUL inside is
     * part of the value); borrowed for the call. */
    int (*parse)(const char *id, const char *bytes, size_t len, void **value, char *err,
                 size_t errlen);
    /* A new reference to value (never NULL); release one (NULL: nothing). */
    void *(*ref)(void *value);
    void (*unref)(void *value);
};

/* An instance's settings; a reload changes them (cache_set_params). */
struct cache_params {
    int ttl_ms;          /* a found record answers without asking Redis */
    int negative_ttl_ms; /* the same for "not found" and broken */
    int stale_grace_ms;  /* after its TTL, a found record keeps answering
                          * while Redis cannot */
    bool refresh_ahead;  /* a hit in the last quarter of the TTL re-reads
                          * the record in the background */
    size_t max_entries;  /* ids held, GETs in flight included (>= 1). A
                          * lower value takes effect as new ids come */
};

/* How a lookup was answered, as its caller sees it. */
enum cache_outcome {
    CACHE_OUT_HIT = 0,       /* a found record, fresh from the cache */
    CACHE_OUT_MISS = 1,      /* a found record, read from Redis for it */
    CACHE_OUT_STALE = 2,     /* a found record past its TTL: Redis could
                              * not answer (stale grace) */
    CACHE_OUT_NOT_FOUND = 3, /* no such key (cached or read) */
    CACHE_OUT_BROKEN = 4,    /* a record parse refused (cached or read) */
    CACHE_OUT_ERROR = 5,     /* CACHE_UNAVAILABLE: Redis could not answer and
                              * nothing usable was cached */
    CACHE_OUTCOMES = 6,
};

/* Where an instance counts: fields of the worker's struct metrics (written
 * with relaxed atomics, /metrics reads them); NULL: not counted. Redis
 * errors are the link's. */
struct cache_counters {
    uint64_t *lookups;   /* [CACHE_OUTCOMES]: each answer a caller got */
    uint64_t *hits;      /* answered from the cache */
    uint64_t *misses;    /* needed Redis */
    int64_t *entries;    /* gauge: ids held */
    uint64_t *evictions; /* entries dropped to make room for a new id */
    uint64_t *full;      /* new ids answered CACHE_UNAVAILABLE at once:
                          * every entry was waiting on Redis */
};

struct cache_waiter;
/* Called once with the answer: `value` is a new reference the callee owns
 * (NULL unless status is CACHE_FOUND). */
typedef void (*cache_cb)(struct cache_waiter *wt, int status, void *value);

/* A request waiting for an answer, embedded in it. */
struct cache_waiter {
    struct list_node link; /* on no list when not waiting */
    cache_cb cb;
};

/* A new instance on `base`, a client of `link` (which must outlive it).
 * d is borrowed for the instance's life; p and counters (NULL: count
 * nothing) are copied, the counters they point at must outlive it. NULL
 * when out of memory. */
struct cache *cache_new(struct event_base *base, struct redis_link *link,
                        const struct cache_desc *d, const struct cache_params *p,
                        const struct cache_counters *counters);
/* Frees it (before its link). Waiters still waiting are dropped without a
 * call; entries whose GET hiredis holds are freed by the GET's callback. */
void cache_free(struct cache *c);
void cache_set_params(struct cache *c, const struct cache_params *p);

/* Answers now (returns 0, *status and *value set, *value a new reference
 * or NULL) or later through wt->cb (returns 1; wt must stay valid until
 * then or until cache_cancel). `id`: lower-case, NUL-terminated, at most
 * d->id_max bytes (longer ones are cut there). */
int cache_get(struct cache *c, const char *id, struct cache_waiter *wt, int *status, void **value);

/* Told after a purge expired `id` (PUBLISH ...invalidate <ns><id>, id
 * lower-case, NUL-terminated, whether cached or not), or with id NULL
 * after everything was expired (new Redis settings; a resubscription only
 * revalidates, and egress/ re-checks its open flows every second anyway):
 * what the user keeps open under a record may need a new look. Called from
 * the link's callbacks: it must not free the cache, and should defer real
 * work (egress/ activates an event). fn NULL: nobody is told. */
void cache_set_purge_hook(struct cache *c, void (*fn)(void *arg, const char *id), void *arg);

/* Purges may have been missed (the link resubscribed, after a restart or a
 * failover): every found record is checked again on its next use, while
 * it keeps answering (one GET in the background, shared by every request:
 * no GET storm, no request waiting on Redis for a record it holds); every
 * "not found" or broken answer is asked again on its next use. Nothing is
 * dropped and nothing is fetched now. The link calls this on every
 * (re)subscription. */
void cache_revalidate_all(struct cache *c);

/* Stops waiting; safe to call when not waiting. */
static inline void cache_cancel(struct cache_waiter *wt)
{
    list_unlink(&wt->link);
}

#endif
