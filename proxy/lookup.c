/* The route cache: sandbox id -> route_rec, one per worker, in front of
 * Redis (one GET per sandbox per TTL, shared by concurrent misses).
 *
 * Each entry is in one state, and on the list of lk that goes with it (one
 * intrusive link per entry: every move is O(1)):
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
 * `purged` (PUBLISH invalidated it while its GET was out: ask again when the
 * reply comes), and refresh-ahead: a hit in the last quarter of the TTL sends
 * a GET in the background, so the entry is "in flight" while it still
 * answers hits.
 *
 * The bound (SPEC section 11): at most cache.max_entries entries per worker,
 * GETs in flight included, so those are bounded too. Before a new id is
 * added, the least recently used negative entry goes, else the least
 * recently used found one (edgeproxy_route_cache_evictions_total). An entry
 * with its GET in flight is never evicted: hiredis holds it as the GET's
 * privdata and its waiters are owed an answer. Detaching it for get_cb to
 * free would not free anything now, so it could not make room; instead, when
 * every entry is in flight (Redis stalled under max_entries outstanding
 * GETs), a new id is answered at once with 503 + Retry-After and no GET
 * (edgeproxy_route_cache_full_total). A sweep every 10 s frees idle entries
 * past any use: negative ones after their TTL, found ones after TTL + stale
 * grace.
 *
 * Memory (bench/random_ids.sh, README "Route cache memory"): about 180 bytes
 * of RSS per negative entry, measured as RSS growth / entries with a 20-byte
 * id: the entry (120 bytes + the id, one allocation) and its share of the
 * bucket array. "Not found" answers share one route_rec per worker, and GET
 * deadlines one timer per worker. A found entry adds its route_rec and
 * record (about 800 bytes more). */
#include "lookup.h"

#include <ctype.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "strmap.h"
#include "worker.h"

#define CACHE_BUCKETS_MIN 1024
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
#define SWEEP_INTERVAL_MS 10000
/* Consecutive GET timeouts after which the connection is presumed dead
 * (a network cut without RST never errors by itself). */
#define TIMEOUTS_BEFORE_RECONNECT 3
#define HEARTBEAT_MS 500

/* A circular doubly-linked list; a detached link points at itself. */
struct entry_link {
    struct entry_link *prev, *next;
};

struct cache_entry {
    struct strmap_node node;        /* keyed by id */
    struct entry_link link;         /* on the list of its state (see top) */
    struct lookup *lk;
    struct route_rec *rr;           /* last answer; NULL before the first */
    uint64_t expires_ms;            /* fresh until */
    uint64_t refresh_ms;            /* from here a hit also re-reads Redis */
    uint64_t stale_until_ms;        /* usable while Redis is down */
    uint64_t deadline_ms;           /* on lk->waiting: waiters answered then */
    struct lookup_waiter waiters;   /* sentinel of a circular list */
    bool pending;                   /* a GET is in flight */
    bool purged;                    /* invalidated while the GET was out */
    bool waiters_timed_out;         /* current waiters already answered */
    char id[];                      /* lower-case, at most HOST_ID_MAX */
};

struct redis_link {
    struct lookup *lk;
    redisAsyncContext *ac;
    bool connected;                 /* written atomically: /readyz reads it */
    bool subscriber;
    int backoff_ms;
    int failures;                   /* connect failures in a row */
    struct event *reconnect_ev;
};

struct lookup {
    struct worker *w;
    struct strmap table;            /* sandbox id -> cache_entry */
    struct entry_link negative;     /* idle, nothing usable; MRU first */
    struct entry_link positive;     /* idle, a found record; MRU first */
    struct entry_link waiting;      /* GET in flight, by deadline */
    struct event *timeout_ev;       /* fires at the first deadline */
    struct route_rec *not_found;    /* shared by every "not found" entry */
    struct redis_link data, sub;
    int consecutive_timeouts;
    /* Liveness: the data link PUBLISHes to a channel only this worker's
     * subscriber listens to. An unanswered PUBLISH means the data link is
     * dead; an unreceived heartbeat means the subscription is. Either can
     * die silently (partition, failover) without a FIN or RST. */
    char heartbeat_channel[96];
    struct event *heartbeat_ev;
    uint64_t publish_sent_ms;       /* 0 when no PUBLISH is outstanding */
    uint64_t publish_answered_ms;
    uint64_t heartbeat_seen_ms;
    struct event *sweep_ev;
    bool closing;
};

static void link_connect(struct redis_link *l);
static void link_drop(struct redis_link *l, const char *why);
static void entry_fetch(struct cache_entry *e);

/* ---- the lists ---- */

static void list_init(struct entry_link *head)
{
    head->prev = head->next = head;
}

static void list_unlink(struct entry_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

/* Moves l (from whatever list it is on) to the front of `head`. */
static void list_push_front(struct entry_link *head, struct entry_link *l)
{
    list_unlink(l);
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

static void list_push_back(struct entry_link *head, struct entry_link *l)
{
    list_push_front(head->prev, l);
}

#define ENTRY_OF_LINK(l) ((struct cache_entry *)((char *)(l) - offsetof(struct cache_entry, link)))

static struct cache_entry *list_first(struct entry_link *head)
{
    return head->next == head ? NULL : ENTRY_OF_LINK(head->next);
}

static struct cache_entry *list_last(struct entry_link *head)
{
    return head->prev == head ? NULL : ENTRY_OF_LINK(head->prev);
}

/* An idle entry (no GET in flight) goes to the front of its list. */
static void entry_touch(struct cache_entry *e)
{
    bool found = e->rr && e->rr->status == LOOKUP_FOUND;
    list_push_front(found ? &e->lk->positive : &e->lk->negative, &e->link);
}

/* ---- the table ---- */

#define ENTRY_OF(n) ((struct cache_entry *)((char *)(n) - offsetof(struct cache_entry, node)))

static struct cache_entry *table_find(struct lookup *lk, const char *id)
{
    struct strmap_node *n = strmap_get(&lk->table, id);
    return n ? ENTRY_OF(n) : NULL;
}

/* Unlinks e from the table and its list and frees it. Never for an entry
 * with a GET in flight (hiredis holds it). */
static void table_remove(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    strmap_remove(&lk->table, &e->node);
    list_unlink(&e->link);
    route_rec_unref(e->rr);
    free(e);
    METRIC_DEC(&lk->w->metrics, cache_entries);
}

/* Room for one more entry under cache.max_entries (a reload may have lowered
 * it: then several go). Idle negative entries go first (a made-up id is
 * worth nothing), then idle found ones, least recently used first. false
 * when every entry has a GET in flight. */
static bool table_make_room(struct lookup *lk)
{
    while (lk->table.count >= (size_t)lk->w->cfg->cache_max_entries) {
        struct cache_entry *victim = list_last(&lk->negative);
        if (!victim)
            victim = list_last(&lk->positive);
        if (!victim)
            return false;
        log_debug("cache: evict %s", victim->id);
        table_remove(victim);
        METRIC_INC(&lk->w->metrics, cache_evictions);
    }
    return true;
}

static struct cache_entry *table_add(struct lookup *lk, const char *id)
{
    if (!table_make_room(lk)) {
        METRIC_INC(&lk->w->metrics, cache_full);
        return NULL;
    }
    size_t len = strnlen(id, HOST_ID_MAX);
    struct cache_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    e->lk = lk;
    memcpy(e->id, id, len);
    e->waiters.next = e->waiters.prev = &e->waiters;
    list_init(&e->link);
    list_push_front(&lk->negative, &e->link);
    strmap_put(&lk->table, &e->node, e->id);
    METRIC_INC(&lk->w->metrics, cache_entries);
    return e;
}

/* ---- answering waiters ---- */

static bool waiters_empty(const struct cache_entry *e)
{
    return e->waiters.next == &e->waiters;
}

/* Detaches the whole list first: a callback may start a new lookup on the
 * same entry (a pipelined request) or cancel another waiter. A callback may
 * also look up new ids and so evict e (it is idle by now): e is not touched
 * after the detach, and rr (e's) is held until the last waiter has it. */
static void answer_waiters(struct cache_entry *e, int status,
                           struct route_rec *rr)
{
    struct lookup_waiter list;
    if (waiters_empty(e))
        return;
    list.next = e->waiters.next;
    list.prev = e->waiters.prev;
    list.next->prev = &list;
    list.prev->next = &list;
    e->waiters.next = e->waiters.prev = &e->waiters;
    route_rec_ref(rr);
    while (list.next != &list) {
        struct lookup_waiter *wt = list.next;
        lookup_cancel(wt);
        wt->cb(wt, status, route_rec_ref(rr));
    }
    route_rec_unref(rr);
}

/* Redis could not answer: the last record if still within its grace, else
 * 503 for everyone waiting. */
/* What to answer when Redis cannot: the last record while within its
 * grace, else 503. *rr is borrowed from the entry (or NULL). */
static int fallback(const struct cache_entry *e, struct route_rec **rr)
{
    if (e->rr && e->rr->status == LOOKUP_FOUND && worker_now_ms() < e->stale_until_ms) {
        *rr = e->rr;
        return LOOKUP_FOUND;
    }
    *rr = NULL;
    return LOOKUP_UNAVAILABLE;
}

static void answer_unavailable(struct cache_entry *e)
{
    struct route_rec *rr;
    int status = fallback(e, &rr);
    answer_waiters(e, status, rr);
}

/* ---- GET deadlines: one timer per worker ---- */

static void timer_arm(struct lookup *lk, uint64_t in_ms)
{
    struct timeval tv = {(time_t)(in_ms / 1000), (suseconds_t)(in_ms % 1000) * 1000};
    evtimer_add(lk->timeout_ev, &tv);
}

/* Puts e, whose GET was just sent, at the back of the waiting list. Every
 * GET gets the same redis.timeout_ms, so the list stays in deadline order
 * and the timer only ever needs the first one. (After a reload that
 * shortens the timeout, GETs sent later may wait until an earlier one's
 * deadline: once, at most the old timeout.) */
static void waiting_add(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    uint64_t timeout = (uint64_t)lk->w->cfg->redis_timeout_ms;
    e->deadline_ms = worker_now_ms() + timeout;
    list_push_back(&lk->waiting, &e->link);
    if (!evtimer_pending(lk->timeout_ev, NULL))
        timer_arm(lk, timeout);
}

/* e's GET is late: its waiters get the stale record or 503 now; e stays in
 * flight (on no list) until the reply or the disconnect comes. */
static void entry_timed_out(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    list_unlink(&e->link);
    log_warn("redis: GET for sandbox %s timed out after %d ms", e->id,
             lk->w->cfg->redis_timeout_ms);
    METRIC_INC(&lk->w->metrics, redis_errors);
    e->waiters_timed_out = true;
    answer_unavailable(e);
    if (++lk->consecutive_timeouts >= TIMEOUTS_BEFORE_RECONNECT &&
        lk->data.ac && lk->data.connected) {
        log_warn("redis: %d GETs timed out in a row, reconnecting",
                 lk->consecutive_timeouts);
        lk->consecutive_timeouts = 0;
        /* Not redisAsyncDisconnect: it waits for the pending replies, which
         * a silent network cut never delivers. (Freeing the context answers
         * every GET in flight: entries leave the waiting list.) */
        link_drop(&lk->data, "stopped answering");
    }
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *lk = arg;
    uint64_t now = worker_now_ms();
    struct cache_entry *e;
    /* Re-read the front every time: answering runs callbacks, and dropping
     * the link answers (and moves) every entry in flight. */
    while ((e = list_first(&lk->waiting)) && e->deadline_ms <= now)
        entry_timed_out(e);
    if (e)
        timer_arm(lk, e->deadline_ms - now);
}

static struct route_rec *parse_reply(struct cache_entry *e, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_NIL)
        return route_rec_new(LOOKUP_NOT_FOUND);
    struct route_rec *rr;
    if (reply->type != REDIS_REPLY_STRING) {
        rr = route_rec_new(LOOKUP_BROKEN);
        if (rr)
            snprintf(rr->message, sizeof(rr->message),
                     "the sandbox key does not hold a string");
    } else {
        rr = route_rec_parse(e->id, reply->str, reply->len);
    }
    if (rr && rr->status == LOOKUP_BROKEN)
        log_error("redis: broken record for sandbox %s: %s", e->id,
                  rr->message);
    return rr;
}

static void get_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cache_entry *e = privdata;
    struct lookup *lk = e->lk;
    redisReply *reply = r;
    e->pending = false;
    if (lk->closing)
        return;
    entry_touch(e); /* idle again, and just used */
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis: GET for sandbox %s failed: %s", e->id,
                 reply ? reply->str : (ac->errstr[0] ? ac->errstr : "disconnected"));
        METRIC_INC(&lk->w->metrics, redis_errors);
        answer_unavailable(e);
        return;
    }
    lk->consecutive_timeouts = 0;
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
    struct route_rec *rr = parse_reply(e, reply);
    if (!rr) {
        answer_unavailable(e);
        return;
    }
    if (rr->status == LOOKUP_NOT_FOUND) {
        /* Every "not found" is alike: made-up ids share one answer. */
        route_rec_unref(rr);
        rr = route_rec_ref(lk->not_found);
    }
    uint64_t now = worker_now_ms();
    const struct config *cfg = lk->w->cfg;
    int ttl = rr->status == LOOKUP_FOUND ? cfg->cache_ttl_ms
                                          : cfg->cache_negative_ttl_ms;
    e->expires_ms = now + (uint64_t)ttl;
    e->refresh_ms = now + (uint64_t)(ttl - ttl / 4);
    e->stale_until_ms = now + (uint64_t)ttl + (uint64_t)cfg->cache_stale_grace_ms;
    route_rec_unref(e->rr);
    e->rr = rr;
    entry_touch(e); /* to the list of its new answer */
    if (e->waiters_timed_out) {
        e->waiters_timed_out = false;
        if (waiters_empty(e))
            return;
    }
    answer_waiters(e, rr->status, rr);
}

/* Sends the GET (if Redis is up); leaves e->pending false when it could not. */
static void entry_fetch(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    if (!lk->data.ac || !lk->data.connected)
        return;
    if (redisAsyncCommand(lk->data.ac, get_cb, e, "GET %s%s", lk->w->cfg->key_prefix,
                          e->id) != REDIS_OK) {
        METRIC_INC(&lk->w->metrics, redis_errors);
        return;
    }
    e->pending = true;
    e->waiters_timed_out = false;
    waiting_add(e);
}

int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt,
               int *status, struct route_rec **rr)
{
    struct cache_entry *e = table_find(lk, id);
    uint64_t now = worker_now_ms();
    if (e && e->rr && now < e->expires_ms) {
        METRIC_INC(&lk->w->metrics, cache_hits);
        /* In the last quarter of its TTL a record in use is re-read in the
         * background, so traffic to a busy sandbox never stops to wait for
         * Redis at expiry; the TTL bound on changes still holds (a record
         * whose refresh has not come back by expiry waits as before). */
        if (!e->pending) {
            entry_touch(e);
            if (now >= e->refresh_ms)
                entry_fetch(e);
        }
        *status = e->rr->status;
        *rr = route_rec_ref(e->rr);
        return 0;
    }
    METRIC_INC(&lk->w->metrics, cache_misses);
    if (!e && !(e = table_add(lk, id))) {
        *status = LOOKUP_UNAVAILABLE;
        *rr = NULL;
        return 0;
    }
    if (!e->pending) {
        entry_touch(e); /* used now, even if Redis cannot be asked */
        entry_fetch(e);
    }
    if (!e->pending || e->waiters_timed_out) {
        /* Redis is down (or already too slow for this entry): answer now
         * from what is left instead of waiting. */
        *status = fallback(e, rr);
        route_rec_ref(*rr);
        return 0;
    }
    wt->next = &e->waiters;
    wt->prev = e->waiters.prev;
    e->waiters.prev->next = wt;
    e->waiters.prev = wt;
    return 1;
}

static void purge(struct lookup *lk, const char *id, size_t len)
{
    char lc[HOST_ID_MAX + 1];
    if (len == 0 || len > HOST_ID_MAX)
        return;
    for (size_t i = 0; i < len; i++)
        lc[i] = (char)tolower((unsigned char)id[i]);
    lc[len] = '\0';
    struct cache_entry *e = table_find(lk, lc);
    if (!e)
        return;
    log_debug("cache: purge %s", lc);
    e->expires_ms = 0;
    if (e->pending)
        e->purged = true;
}

static void expire_entry(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    e->expires_ms = 0;
    if (e->pending)
        e->purged = true;
}

static void purge_all(struct lookup *lk)
{
    strmap_each(&lk->table, expire_entry, NULL);
}

/* Frees idle entries past any use: found records after their stale grace,
 * anything else after its TTL (only found records are ever served stale). */
static void sweep_entry(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    uint64_t now = *(const uint64_t *)arg;
    uint64_t until = e->expires_ms;
    if (e->rr && e->rr->status == LOOKUP_FOUND && e->stale_until_ms > until)
        until = e->stale_until_ms;
    if (!e->pending && now >= until)
        table_remove(e);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *lk = arg;
    uint64_t now = worker_now_ms();
    strmap_each(&lk->table, sweep_entry, &now);
}

/* ---- Redis connections ---- */

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct lookup *lk = privdata;
    redisReply *reply = r;
    if (!reply || lk->closing || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3)
        return;
    redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "message") == 0 && reply->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[1]->str, lk->heartbeat_channel) == 0) {
        lk->heartbeat_seen_ms = worker_now_ms();
    } else if (strcmp(kind->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING) {
        purge(lk, reply->element[2]->str, reply->element[2]->len);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        /* Invalidations published while we were not subscribed are lost:
         * after every (re)subscription, treat the whole cache as stale. */
        lk->heartbeat_seen_ms = worker_now_ms();
        if (reply->element[1]->type == REDIS_REPLY_STRING &&
            strcmp(reply->element[1]->str, lk->heartbeat_channel) == 0)
            return;
        purge_all(lk);
        log_info("redis: worker %d subscribed to %sinvalidate", lk->w->id,
                 lk->w->cfg->key_prefix);
    }
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    link_connect(arg);
}

static void schedule_reconnect(struct redis_link *l)
{
    l->ac = NULL;
    __atomic_store_n(&l->connected, false, __ATOMIC_RELAXED); /* /readyz reads it */
    if (!l->subscriber)
        l->lk->publish_sent_ms = 0;
    if (l->lk->closing)
        return;
    struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
    evtimer_add(l->reconnect_ev, &tv);
    l->backoff_ms = l->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                                                         : l->backoff_ms * 2;
}

/* Frees the connection now; pending GETs are answered as failures (their
 * callbacks see l->ac == NULL and answer from the stale cache or 503). */
static void link_close(struct redis_link *l)
{
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    __atomic_store_n(&l->connected, false, __ATOMIC_RELAXED); /* /readyz reads it */
    if (!l->subscriber)
        l->lk->publish_sent_ms = 0;
    if (ac) {
        ac->data = NULL; /* its disconnect callback must not reschedule */
        redisAsyncFree(ac);
    }
}

/* Closes at once (pending GETs are answered as failures) and reconnects
 * with backoff. Never called from inside a hiredis callback. */
static void link_drop(struct redis_link *l, const char *why)
{
    log_warn("redis: %s connection %s, reconnecting", l->subscriber ? "subscriber" : "data",
             why);
    METRIC_INC(&l->lk->w->metrics, redis_errors);
    link_close(l);
    schedule_reconnect(l);
}

static void publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct lookup *lk = privdata;
    if (!r || lk->closing)
        return;
    lk->publish_sent_ms = 0;
    lk->publish_answered_ms = worker_now_ms();
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *lk = arg;
    uint64_t now = worker_now_ms();
    uint64_t limit = (uint64_t)lk->w->cfg->redis_timeout_ms;
    if (lk->data.connected && lk->publish_sent_ms && now - lk->publish_sent_ms > limit) {
        lk->publish_sent_ms = 0;
        link_drop(&lk->data, "stopped answering");
        return;
    }
    /* The subscriber is judged only while the data link demonstrably works:
     * a heartbeat published and answered, yet not received. */
    if (lk->sub.connected && lk->publish_answered_ms > lk->heartbeat_seen_ms &&
        lk->publish_answered_ms - lk->heartbeat_seen_ms > limit + HEARTBEAT_MS) {
        lk->heartbeat_seen_ms = now;
        link_drop(&lk->sub, "stopped delivering messages");
        return;
    }
    if (lk->data.connected && !lk->publish_sent_ms && lk->sub.connected &&
        redisAsyncCommand(lk->data.ac, publish_cb, lk, "PUBLISH %s 1",
                          lk->heartbeat_channel) == REDIS_OK)
        lk->publish_sent_ms = now;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (!l)
        return;
    if (status != REDIS_OK) {
        /* First failure and then one line every ~minute, not one per try. */
        if (l->failures++ % 30 == 0)
            log_warn("redis: connect to %s:%d failed (%d tries so far): %s",
                     l->lk->w->cfg->redis_host, l->lk->w->cfg->redis_port, l->failures,
                     ac->errstr);
        METRIC_INC(&l->lk->w->metrics, redis_errors);
        schedule_reconnect(l);
        return;
    }
    __atomic_store_n(&l->connected, true, __ATOMIC_RELAXED);
    l->backoff_ms = RECONNECT_MIN_MS;
    if (l->subscriber)
        l->lk->heartbeat_seen_ms = worker_now_ms(); /* judged from now on */
    if (l->failures)
        log_info("redis: %s connection restored after %d failed tries",
                 l->subscriber ? "subscriber" : "data", l->failures);
    l->failures = 0;
    METRIC_INC(&l->lk->w->metrics, redis_reconnects);
    log_debug("redis: %s connection up", l->subscriber ? "subscriber" : "data");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (!l || l->lk->closing)
        return;
    log_warn("redis: %s connection lost: %s", l->subscriber ? "subscriber" : "data",
             status == REDIS_OK ? "closed" : ac->errstr);
    METRIC_INC(&l->lk->w->metrics, redis_errors);
    schedule_reconnect(l);
}

static void link_connect(struct redis_link *l)
{
    const struct config *cfg = l->lk->w->cfg;
    redisAsyncContext *ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
    if (!ac || ac->err) {
        log_warn("redis: cannot connect to %s:%d: %s", cfg->redis_host,
                 cfg->redis_port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisLibeventAttach(ac, l->lk->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Commands queue until the connection is up. */
    if (cfg->redis_password)
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", cfg->redis_password);
    if (l->subscriber)
        redisAsyncCommand(ac, sub_cb, l->lk, "SUBSCRIBE %sinvalidate %s",
                          cfg->key_prefix, l->lk->heartbeat_channel);
    else if (cfg->redis_db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", cfg->redis_db);
}

static int link_init(struct lookup *lk, struct redis_link *l, bool subscriber)
{
    l->lk = lk;
    l->subscriber = subscriber;
    l->backoff_ms = RECONNECT_MIN_MS;
    l->reconnect_ev = evtimer_new(lk->w->base, reconnect_cb, l);
    if (!l->reconnect_ev)
        return -1;
    link_connect(l);
    return 0;
}

struct lookup *lookup_new(struct worker *w)
{
    struct lookup *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return NULL;
    lk->w = w;
    list_init(&lk->negative);
    list_init(&lk->positive);
    list_init(&lk->waiting);
    lk->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, lk);
    lk->timeout_ev = evtimer_new(w->base, timeout_cb, lk);
    lk->not_found = route_rec_new(LOOKUP_NOT_FOUND);
    if (strmap_init(&lk->table, CACHE_BUCKETS_MIN) == -1 || !lk->sweep_ev ||
        !lk->timeout_ev || !lk->not_found)
        goto fail;
    struct timeval tv = {SWEEP_INTERVAL_MS / 1000, 0};
    evtimer_add(lk->sweep_ev, &tv);
    static unsigned instance;
    snprintf(lk->heartbeat_channel, sizeof(lk->heartbeat_channel), "%sheartbeat:%d:%d:%u",
             w->cfg->key_prefix, (int)getpid(), w->id,
             __atomic_fetch_add(&instance, 1, __ATOMIC_RELAXED));
    lk->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, lk);
    if (!lk->heartbeat_ev)
        goto fail;
    struct timeval hb = {HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000};
    evtimer_add(lk->heartbeat_ev, &hb);
    if (link_init(lk, &lk->data, false) == -1 || link_init(lk, &lk->sub, true) == -1)
        goto fail;
    return lk;
fail:
    lookup_free(lk);
    return NULL;
}

static void link_free(struct redis_link *l)
{
    if (l->ac)
        redisAsyncFree(l->ac);
    l->ac = NULL;
    if (l->reconnect_ev)
        event_free(l->reconnect_ev);
}

static void free_entry_node(struct strmap_node *n, void *arg)
{
    table_remove(ENTRY_OF(n));
}

void lookup_free(struct lookup *lk)
{
    if (!lk)
        return;
    lk->closing = true;
    link_free(&lk->data);
    link_free(&lk->sub);
    if (lk->sweep_ev)
        event_free(lk->sweep_ev);
    if (lk->heartbeat_ev)
        event_free(lk->heartbeat_ev);
    if (lk->timeout_ev)
        event_free(lk->timeout_ev);
    if (lk->table.buckets)
        strmap_each(&lk->table, free_entry_node, NULL);
    strmap_destroy(&lk->table);
    route_rec_unref(lk->not_found);
    free(lk);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void link_restart(struct redis_link *l)
{
    evtimer_del(l->reconnect_ev);
    link_close(l);
    l->backoff_ms = RECONNECT_MIN_MS;
    link_connect(l);
}

void lookup_config_changed(struct lookup *lk, const struct config *old)
{
    const struct config *cfg = lk->w->cfg;
    if (same_str(old->redis_host, cfg->redis_host) && old->redis_port == cfg->redis_port &&
        same_str(old->redis_password, cfg->redis_password) && old->redis_db == cfg->redis_db &&
        same_str(old->key_prefix, cfg->key_prefix))
        return;
    log_info("redis: settings changed, reconnecting worker %d to %s:%d", lk->w->id,
             cfg->redis_host, cfg->redis_port);
    purge_all(lk);
    link_restart(&lk->data);
    link_restart(&lk->sub);
}

bool lookup_connected(const struct lookup *lk)
{
    return __atomic_load_n(&lk->data.connected, __ATOMIC_RELAXED);
}
