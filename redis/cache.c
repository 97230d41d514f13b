/* The generic cache of parsed records (cache.h): id -> the last answer
 * Redis gave for <key_prefix><ns><id>, one instance per record type per
 * worker, in front of the worker's redis_link (one GET per id per TTL,
 * shared by concurrent misses).
 *
 * Each entry is in one state, and on the list of its cache that goes with
 * it (one intrusive link per entry: every move is O(1)):
 *
 *   idle, nothing usable        negative  "not found", broken, or no answer
 *                                         yet (Redis down when asked)
 *   idle, a found record        positive  fresh, expired, or in stale grace
 *   GET in flight               waiting   its waiters wait; FIFO, which is
 *                                         deadline order
 *   GET in flight, past its     (none)    waiters already answered (stale
 *   deadline (redis.timeout_ms)           record or 503); the late reply
 *                                         still refreshes the entry
 *
 * Idle lists run from most to least recently used. On top of the state:
 * `deferred` (the GET waits for the data connection's setup, see
 * redis_link_data_state), `purged` (PUBLISH invalidated it while its GET
 * was out: ask again when the reply comes), `revalidate` (purges may have
 * been missed while the link was not subscribed: the next hit re-reads the
 * record, cleared by a successful GET) and refresh-ahead: a hit in the last
 * quarter of the TTL, or on an entry to revalidate, sends a GET in the
 * background, so the entry is "in flight" while it still answers hits.
 * `via` says which connection the GET went on (the master's, or a
 * replica's while the master is away), for the link's bookkeeping.
 *
 * The bound (SPEC section 11): at most max_entries entries, GETs in flight
 * included, so those are bounded too. Before a new id is added, the least
 * recently used negative entry goes, else the least recently used found one
 * (counters.evictions). An entry with its GET in flight is never evicted:
 * hiredis holds it as the GET's privdata and its waiters are owed an
 * answer. Detaching it for get_cb to free would not free anything now, so
 * it could not make room; instead, when every entry is in flight (Redis
 * stalled under max_entries outstanding GETs), a new id is answered at once
 * with CACHE_UNAVAILABLE and no GET (counters.full). A sweep every 10 s
 * frees idle entries past any use: negative ones after their TTL, found
 * ones after TTL + stale grace.
 *
 * Memory (bench/random_ids.sh, README "Route cache memory"): an entry is
 * one allocation, 112 bytes + the id, plus its share of the bucket array.
 * Negative entries hold no value (status only); GET deadlines share one
 * timer per instance. A found entry adds its value (a route record: about
 * 800 bytes). */
#include "cache.h"

#include <ctype.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "ev.h"
#include "redis_link.h"
#include "log.h"
#include "metrics.h"
#include "redis_reply.h"
#include "strmap.h"
#include "timeutil.h"

#define CACHE_BUCKETS_MIN 1024
#define SWEEP_INTERVAL_MS 10000
/* The reason a broken record gives, for its log line. */
#define BROKEN_REASON_MAX 200

struct cache_entry {
    struct strmap_node node;  /* keyed by id */
    struct list_node link;    /* on the list of its state (see top) */
    struct cache *c;          /* NULL: orphaned by cache_free; get_cb frees it */
    void *value;              /* the last answer's value (CACHE_FOUND only) */
    uint64_t expires_ms;      /* fresh until */
    uint64_t refresh_ms;      /* from here a hit also re-reads Redis */
    uint64_t stale_until_ms;  /* usable while Redis is down */
    uint64_t deadline_ms;     /* on c->waiting: waiters answered then */
    struct list_node waiters; /* cache_waiter.link, in arrival order */
    uint8_t status;           /* the last answer; CACHE_UNAVAILABLE: none yet */
    bool pending;             /* a GET is in flight */
    bool deferred;            /* ...or waits for the data connection's setup */
    bool purged;              /* invalidated while the GET was out */
    bool waiters_timed_out;   /* current waiters already answered */
    bool revalidate;          /* re-read on the next hit (missed purges) */
    uint8_t via;              /* enum redis_via of the GET in flight */
    char id[];                /* lower-case, at most d->id_max */
};

struct cache {
    struct redis_client client; /* on the link's clients */
    const struct cache_desc *d;
    struct cache_params p;
    struct cache_counters counters;
    struct redis_link *rl;
    struct strmap table;       /* id -> cache_entry */
    struct list_node negative; /* idle, nothing usable; MRU first */
    struct list_node positive; /* idle, a found record; MRU first */
    struct list_node waiting;  /* GET in flight, by deadline */
    struct event *timeout_ev;  /* fires at the first deadline */
    struct event *sweep_ev;
    void (*purge_hook)(void *arg, const char *id); /* cache_set_purge_hook */
    void *purge_arg;
};

static void entry_fetch(struct cache_entry *e);

/* ---- values and counters ---- */

static void *val_ref(const struct cache *c, void *v)
{
    return v ? c->d->ref(v) : NULL;
}

static void val_unref(const struct cache *c, void *v)
{
    if (v)
        c->d->unref(v);
}

static void count(uint64_t *counter)
{
    if (counter)
        METRIC_ADD_AT(counter, 1);
}

static void count_outcome(const struct cache *c, enum cache_outcome o, uint64_t n)
{
    if (c->counters.lookups)
        METRIC_ADD_AT(&c->counters.lookups[o], n);
}

/* The outcome of an answer: `fresh` when it comes from the cache within its
 * TTL or from Redis just now, else it is what Redis could not replace. */
static enum cache_outcome outcome_of(int status, bool from_redis)
{
    switch (status) {
    case CACHE_FOUND:
        return from_redis ? CACHE_OUT_MISS : CACHE_OUT_HIT;
    case CACHE_NOT_FOUND:
        return CACHE_OUT_NOT_FOUND;
    case CACHE_BROKEN:
        return CACHE_OUT_BROKEN;
    default:
        return CACHE_OUT_ERROR;
    }
}

static void count_entries(const struct cache *c, int64_t n)
{
    if (c->counters.entries)
        METRIC_ADD_AT(c->counters.entries, n);
}

/* ---- the lists ---- */

/* The entry on a state list's node, or NULL for none. */
static struct cache_entry *entry_of_link(struct list_node *l)
{
    return l ? container_of(l, struct cache_entry, link) : NULL;
}

/* An idle entry (no GET in flight) goes to the front of its list. */
static void entry_touch(struct cache_entry *e)
{
    bool found = e->status == CACHE_FOUND;
    list_move_front(found ? &e->c->positive : &e->c->negative, &e->link);
}

/* ---- the table ---- */

#define ENTRY_OF(n) container_of(n, struct cache_entry, node)

static struct cache_entry *table_find(struct cache *c, const char *id)
{
    struct strmap_node *n = strmap_get(&c->table, id);
    return n ? ENTRY_OF(n) : NULL;
}

/* Unlinks e from the table and its list and frees it. Never for an entry
 * with a GET in flight (hiredis holds it). */
static void table_remove(struct cache_entry *e)
{
    struct cache *c = e->c;
    strmap_remove(&c->table, &e->node);
    list_unlink(&e->link);
    val_unref(c, e->value);
    free(e);
    count_entries(c, -1);
}

/* Room for one more entry under max_entries (a reload may have lowered it:
 * then several go). Idle negative entries go first (a made-up id is worth
 * nothing), then idle found ones, least recently used first. false when
 * every entry has a GET in flight. */
static bool table_make_room(struct cache *c)
{
    while (c->table.count >= c->p.max_entries) {
        struct cache_entry *victim = entry_of_link(list_last(&c->negative));
        if (!victim)
            victim = entry_of_link(list_last(&c->positive));
        if (!victim)
            return false;
        log_debug("cache: evict %s %s", c->d->name, victim->id);
        table_remove(victim);
        count(c->counters.evictions);
    }
    return true;
}

static struct cache_entry *table_add(struct cache *c, const char *id)
{
    if (!table_make_room(c)) {
        count(c->counters.full);
        return NULL;
    }
    size_t len = strnlen(id, c->d->id_max);
    struct cache_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    e->c = c;
    e->status = CACHE_UNAVAILABLE;
    memcpy(e->id, id, len);
    list_init(&e->waiters);
    list_insert_front(&c->negative, &e->link);
    strmap_put(&c->table, &e->node, e->id);
    count_entries(c, 1);
    return e;
}

/* ---- answering waiters ---- */

/* Detaches the whole list first: a callback may start a new lookup on the
 * same entry (a pipelined request) or cancel another waiter. A callback may
 * also look up new ids and so evict e (it is idle by now): e is not touched
 * after the detach, and value (e's) is held until the last waiter has it. */
static void answer_waiters(struct cache_entry *e, int status, void *value,
                           enum cache_outcome outcome)
{
    struct cache *c = e->c;
    struct list_node list;
    if (list_empty(&e->waiters))
        return;
    list_init(&list);
    list_splice_back(&list, &e->waiters);
    val_ref(c, value);
    while (!list_empty(&list)) {
        struct cache_waiter *wt = container_of(list_first(&list), struct cache_waiter, link);
        cache_cancel(wt);
        count_outcome(c, outcome, 1);
        wt->cb(wt, status, val_ref(c, value));
    }
    val_unref(c, value);
}

/* What to answer when Redis cannot: the last record while within its
 * grace, else CACHE_UNAVAILABLE. *value is borrowed from the entry (or
 * NULL). */
static int fallback(const struct cache_entry *e, void **value)
{
    if (e->status == CACHE_FOUND && time_now_ms() < e->stale_until_ms) {
        *value = e->value;
        return CACHE_FOUND;
    }
    *value = NULL;
    return CACHE_UNAVAILABLE;
}

static void answer_unavailable(struct cache_entry *e)
{
    void *value;
    int status = fallback(e, &value);
    answer_waiters(e, status, value, status == CACHE_FOUND ? CACHE_OUT_STALE : CACHE_OUT_ERROR);
}

/* ---- GET deadlines: one timer per instance ---- */

static void timer_arm(struct cache *c, uint64_t in_ms)
{
    struct timeval tv = tv_from_ms(in_ms);
    evtimer_add(c->timeout_ev, &tv);
}

/* Puts e, whose GET was just sent, at the back of the waiting list. Every
 * GET gets the same redis.timeout_ms, so the list stays in deadline order
 * and the timer only ever needs the first one. (After a reload that
 * shortens the timeout, GETs sent later may wait until an earlier one's
 * deadline: once, at most the old timeout.) */
static void waiting_add(struct cache_entry *e)
{
    struct cache *c = e->c;
    uint64_t timeout = (uint64_t)redis_link_timeout_ms(c->rl);
    e->deadline_ms = time_now_ms() + timeout;
    list_move_back(&c->waiting, &e->link);
    if (!evtimer_pending(c->timeout_ev, NULL))
        timer_arm(c, timeout);
}

/* e's GET is late: its waiters get the stale record or 503 now; e stays in
 * flight (on no list) until the reply or the disconnect comes. */
static void entry_timed_out(struct cache_entry *e)
{
    struct cache *c = e->c;
    list_unlink(&e->link);
    if (e->deferred) {
        /* The GET never went out (see data_abandoned): nothing will answer
         * it. e is idle again; its waiters may evict it, so nothing touches
         * e after answering. */
        e->deferred = e->pending = false;
        entry_touch(e);
        log_warn("redis: no data connection for the GET for %s %s", c->d->name, e->id);
        redis_link_get_failed(c->rl, REDIS_VIA_MASTER);
        answer_unavailable(e);
        return;
    }
    log_warn("redis: GET for %s %s timed out after %d ms", c->d->name, e->id,
             redis_link_timeout_ms(c->rl));
    e->waiters_timed_out = true;
    answer_unavailable(e);
    /* Opens that connection's circuit: GETs stop going there. */
    redis_link_get_timed_out(c->rl, e->via);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache *c = arg;
    uint64_t now = time_now_ms();
    struct cache_entry *e;
    /* Re-read the front every time: answering runs callbacks, and dropping
     * the connection answers (and moves) every entry in flight. */
    while ((e = entry_of_link(list_first(&c->waiting))) && e->deadline_ms <= now)
        entry_timed_out(e);
    if (e)
        timer_arm(c, e->deadline_ms - now);
}

/* ---- GETs ---- */

static void get_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cache_entry *e = privdata;
    struct cache *c = e->c;
    redisReply *reply = r;
    e->pending = false;
    if (!c) {
        free(e); /* its cache is gone (cache_free) */
        return;
    }
    entry_touch(e); /* idle again, and just used */
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis: GET for %s %s failed: %s", c->d->name, e->id,
                 reply ? reply->str : (ac->errstr[0] ? ac->errstr : "disconnected"));
        redis_link_get_failed(c->rl, e->via);
        answer_unavailable(e);
        return;
    }
    redis_link_get_answered(c->rl, e->via);
    if (e->purged) {
        /* The record changed while this GET was out: its answer may predate
         * the change. Ask again; the waiters wait one more round trip. */
        e->purged = false;
        entry_fetch(e);
        if (e->pending)
            return;
        answer_unavailable(e);
        return;
    }
    char why[BROKEN_REASON_MAX];
    void *value = NULL;
    int status = redis_reply_value(c->d, e->id, reply, &value, why, sizeof(why));
    if (status == -1) {
        answer_unavailable(e); /* out of memory */
        return;
    }
    if (status == CACHE_BROKEN)
        log_error("redis: broken record for %s %s: %s", c->d->name, e->id, why);
    log_debug("redis: GET for %s %s (via %s): %s", c->d->name, e->id,
              e->via == REDIS_VIA_REPLICA ? "a replica" : "the master",
              status == CACHE_FOUND       ? "found"
              : status == CACHE_NOT_FOUND ? "not found"
                                          : "broken");
    uint64_t now = time_now_ms();
    int ttl = status == CACHE_FOUND ? c->p.ttl_ms : c->p.negative_ttl_ms;
    e->expires_ms = now + (uint64_t)ttl;
    e->refresh_ms = now + (uint64_t)(ttl - ttl / 4);
    e->stale_until_ms = now + (uint64_t)ttl + (uint64_t)c->p.stale_grace_ms;
    val_unref(c, e->value);
    e->value = value;
    e->status = (uint8_t)status;
    e->revalidate = false;
    entry_touch(e); /* to the list of its new answer */
    if (e->waiters_timed_out) {
        e->waiters_timed_out = false;
        if (list_empty(&e->waiters))
            return;
    }
    answer_waiters(e, status, value, outcome_of(status, true));
}

/* Sends e's GET, or holds it back while the data connection is being set
 * up; leaves e->pending false when neither is possible (Redis down). */
static void entry_fetch(struct cache_entry *e)
{
    struct cache *c = e->c;
    enum redis_data_state st = redis_link_data_state(c->rl);
    e->deferred = st == REDIS_DATA_SETTING_UP;
    if (!e->deferred) {
        int via = st == REDIS_DATA_UP ? redis_link_get(c->rl, c->d->ns, e->id, get_cb, e) : -1;
        if (via == -1)
            return;
        e->via = (uint8_t)via;
    }
    e->pending = true;
    e->waiters_timed_out = false;
    waiting_add(e);
}

int cache_get(struct cache *c, const char *id, struct cache_waiter *wt, int *status, void **value)
{
    struct cache_entry *e = table_find(c, id);
    uint64_t now = time_now_ms();
    if (e && now < e->expires_ms) {
        count(c->counters.hits);
        /* In the last quarter of its TTL a record in use is re-read in the
         * background, so traffic to a busy id never stops to wait for Redis
         * at expiry; the TTL bound on changes still holds (a record whose
         * refresh has not come back by expiry waits as before). A record to
         * revalidate is re-read the same way on its first hit. */
        if (!e->pending) {
            entry_touch(e);
            if (e->revalidate || (c->p.refresh_ahead && now >= e->refresh_ms))
                entry_fetch(e);
        }
        *status = e->status;
        *value = val_ref(c, e->value);
        count_outcome(c, outcome_of(e->status, false), 1);
        return 0;
    }
    count(c->counters.misses);
    if (!e && !(e = table_add(c, id))) {
        *status = CACHE_UNAVAILABLE;
        *value = NULL;
        count_outcome(c, CACHE_OUT_ERROR, 1);
        return 0;
    }
    if (!e->pending) {
        entry_touch(e); /* used now, even if Redis cannot be asked */
        entry_fetch(e);
    }
    if (!e->pending || e->waiters_timed_out) {
        /* Redis is down (or already too slow for this entry): answer now
         * from what is left instead of waiting. */
        *status = fallback(e, value);
        *value = val_ref(c, *value);
        count_outcome(c, *status == CACHE_FOUND ? CACHE_OUT_STALE : CACHE_OUT_ERROR, 1);
        return 0;
    }
    list_insert_back(&e->waiters, &wt->link);
    return 1;
}

/* ---- what the link tells ---- */

#define CACHE_OF(cl) container_of(cl, struct cache, client)

/* Sends the GETs that waited for the data connection's setup. A walk of
 * the table runs no request callbacks (they may add entries): a GET that
 * cannot be sent stays deferred, and its timer answers it. */
static void send_deferred(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    if (!e->deferred)
        return;
    int via = redis_link_get(e->c->rl, e->c->d->ns, e->id, get_cb, e);
    if (via == -1)
        return;
    e->via = (uint8_t)via;
    e->deferred = false;
    e->purged = false; /* this GET goes out after any purge */
}

static void on_data_ready(struct redis_client *cl)
{
    strmap_each(&CACHE_OF(cl)->table, send_deferred, NULL);
}

/* Moves a deferred entry to the front of the waiting list, due now (the
 * list stays in deadline order). */
static void fail_deferred(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    if (!e->deferred)
        return;
    e->deadline_ms = 0;
    list_move_front(&e->c->waiting, &e->link);
}

/* What waited for the data connection's setup is answered from the
 * deadline timer (entry_timed_out), not from inside the link's call. */
static void on_data_abandoned(struct redis_client *cl)
{
    struct cache *c = CACHE_OF(cl);
    strmap_each(&c->table, fail_deferred, NULL);
    struct cache_entry *first = entry_of_link(list_first(&c->waiting));
    if (first && first->deadline_ms == 0)
        timer_arm(c, 0);
}

static void expire_entry(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    e->expires_ms = 0;
    if (e->pending)
        e->purged = true;
}

static void on_expire_all(struct redis_client *cl)
{
    struct cache *c = CACHE_OF(cl);
    strmap_each(&c->table, expire_entry, NULL);
    if (c->purge_hook)
        c->purge_hook(c->purge_arg, NULL);
}

/* A found record keeps answering and is re-read on its next hit; anything
 * else is asked again on its next use. A GET in flight may have been
 * answered before what was missed: asked again when it comes back. */
static void revalidate_entry(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    if (e->pending)
        e->purged = true;
    if (e->status == CACHE_FOUND)
        e->revalidate = true;
    else
        e->expires_ms = 0;
}

void cache_revalidate_all(struct cache *c)
{
    strmap_each(&c->table, revalidate_entry, NULL);
}

static void on_revalidate_all(struct redis_client *cl)
{
    cache_revalidate_all(CACHE_OF(cl));
}

static void on_purge(struct redis_client *cl, const char *id, size_t len)
{
    struct cache *c = CACHE_OF(cl);
    char lc[CACHE_ID_MAX + 1];
    if (len == 0 || len > c->d->id_max || len > CACHE_ID_MAX)
        return;
    for (size_t i = 0; i < len; i++)
        lc[i] = (char)tolower((unsigned char)id[i]);
    lc[len] = '\0';
    struct cache_entry *e = table_find(c, lc);
    if (e) {
        log_debug("cache: purge %s %s", c->d->name, lc);
        expire_entry(&e->node, NULL);
    }
    if (c->purge_hook)
        c->purge_hook(c->purge_arg, lc);
}

static const struct redis_client_ops client_ops = {
    .data_ready = on_data_ready,
    .data_abandoned = on_data_abandoned,
    .expire_all = on_expire_all,
    .revalidate_all = on_revalidate_all,
    .purge = on_purge,
};

/* ---- the sweep ---- */

/* Frees idle entries past any use: found records after their stale grace,
 * anything else after its TTL (only found records are ever served stale). */
static void sweep_entry(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    uint64_t now = *(const uint64_t *)arg;
    uint64_t until = e->expires_ms;
    if (e->status == CACHE_FOUND && e->stale_until_ms > until)
        until = e->stale_until_ms;
    if (!e->pending && now >= until)
        table_remove(e);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache *c = arg;
    uint64_t now = time_now_ms();
    strmap_each(&c->table, sweep_entry, &now);
}

/* ---- the instance ---- */

struct cache *cache_new(struct event_base *base, struct redis_link *rl, const struct cache_desc *d,
                        const struct cache_params *p, const struct cache_counters *counters)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->d = d;
    c->p = *p;
    if (counters)
        c->counters = *counters;
    c->rl = rl;
    list_init(&c->negative);
    list_init(&c->positive);
    list_init(&c->waiting);
    c->sweep_ev = event_new(base, -1, EV_PERSIST, sweep_cb, c);
    c->timeout_ev = evtimer_new(base, timeout_cb, c);
    if (strmap_init(&c->table, CACHE_BUCKETS_MIN) == -1 || !c->sweep_ev || !c->timeout_ev)
        goto fail;
    struct timeval tv = tv_from_ms(SWEEP_INTERVAL_MS);
    evtimer_add(c->sweep_ev, &tv);
    c->client.ops = &client_ops;
    c->client.ns = d->ns;
    redis_link_attach(rl, &c->client);
    return c;
fail:
    cache_free(c);
    return NULL;
}

void cache_set_params(struct cache *c, const struct cache_params *p)
{
    c->p = *p;
}

void cache_set_purge_hook(struct cache *c, void (*fn)(void *arg, const char *id), void *arg)
{
    c->purge_hook = fn;
    c->purge_arg = arg;
}

/* Waiters are dropped uncalled. An entry whose GET hiredis holds cannot be
 * freed now: it leaves the table, gives up its value and is freed by
 * get_cb (which the link's end calls at the latest). */
static void free_entry_node(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    while (!list_empty(&e->waiters))
        list_unlink(list_first(&e->waiters));
    if (!e->pending || e->deferred) {
        table_remove(e);
        return;
    }
    struct cache *c = e->c;
    strmap_remove(&c->table, &e->node);
    list_unlink(&e->link);
    val_unref(c, e->value);
    e->value = NULL;
    e->c = NULL;
    count_entries(c, -1);
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    redis_link_detach(&c->client);
    ev_free(c->sweep_ev);
    ev_free(c->timeout_ev);
    if (c->table.buckets)
        strmap_each(&c->table, free_entry_node, NULL);
    strmap_destroy(&c->table);
    free(c);
}
