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
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ev.h"
#include "host.h"
#include "log.h"
#include "redis_reply.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

#define CACHE_BUCKETS_MIN 1024
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
#define SWEEP_INTERVAL_MS 10000
/* Consecutive GET timeouts after which the connection is presumed dead
 * (a network cut without RST never errors by itself). */
#define TIMEOUTS_BEFORE_RECONNECT 3
#define HEARTBEAT_MS 500
/* A connection's setup (connect, AUTH, SELECT, first PUBLISH) gets
 * redis.timeout_ms, and at least this: requests waiting on it have their own
 * timers, and a loaded machine must not fail it forever. */
#define SETUP_TIMEOUT_MIN_MS 1000
/* Failed tries are logged once per this many (about a minute at the 2 s
 * backoff), and whenever the cause changes. */
#define FAILURES_PER_LOG 30

struct cache_entry {
    struct strmap_node node; /* keyed by id */
    struct list_node link;   /* on the list of its state (see top) */
    struct lookup *lk;
    struct route_rec *rr;     /* last answer; NULL before the first */
    uint64_t expires_ms;      /* fresh until */
    uint64_t refresh_ms;      /* from here a hit also re-reads Redis */
    uint64_t stale_until_ms;  /* usable while Redis is down */
    uint64_t deadline_ms;     /* on lk->waiting: waiters answered then */
    struct list_node waiters; /* lookup_waiter.link, in arrival order */
    bool pending;             /* a GET is in flight */
    bool deferred;            /* ...or waits for the data link's setup */
    bool purged;              /* invalidated while the GET was out */
    bool waiters_timed_out;   /* current waiters already answered */
    char id[];                /* lower-case, at most HOST_ID_MAX */
};

struct redis_link {
    struct lookup *lk;
    redisAsyncContext *ac;
    struct evdns_getaddrinfo_request *resolving;
    struct evutil_addrinfo *addrs;     /* the last resolution's answers */
    struct evutil_addrinfo *next_addr; /* tried next; NULL: resolve again */
    bool connected;                    /* usable: Redis accepted the setup
                                     * (written atomically: /readyz reads it) */
    bool subscriber;
    bool failed; /* this connection's failure is counted */
    int backoff_ms;
    int failures;          /* failed tries in a row */
    char failed_at[24];    /* the stage the last one failed at */
    uint64_t setup_ms;     /* when this connection's setup began */
    int steps, steps_done; /* setup commands sent, answered */
    char step[3][24];      /* their log labels: "AUTH to", ... */
    char peer[340];        /* "name:port (address)" for the log */
    struct event *reconnect_ev;
};

struct lookup {
    struct worker *w;
    struct strmap table;         /* sandbox id -> cache_entry */
    struct list_node negative;   /* idle, nothing usable; MRU first */
    struct list_node positive;   /* idle, a found record; MRU first */
    struct list_node waiting;    /* GET in flight, by deadline */
    struct event *timeout_ev;    /* fires at the first deadline */
    struct route_rec *not_found; /* shared by every "not found" entry */
    struct redis_link data, sub;
    struct evdns_base *dns; /* resolves redis.url's host */
    int consecutive_timeouts;
    /* Liveness: the data link PUBLISHes to a channel only this worker's
     * subscriber listens to. An unanswered PUBLISH means the data link is
     * dead; an unreceived heartbeat means the subscription is. Either can
     * die silently (partition, failover) without a FIN or RST. */
    char heartbeat_channel[96];
    struct event *heartbeat_ev;
    uint64_t publish_sent_ms; /* 0 when no PUBLISH is outstanding */
    uint64_t publish_answered_ms;
    uint64_t heartbeat_seen_ms;
    struct event *sweep_ev;
    bool closing;
};

static void link_connect(struct redis_link *l);
static void link_drop(struct redis_link *l, const char *why);
static void entry_fetch(struct cache_entry *e);

/* ---- the lists ---- */

/* The entry on a state list's node, or NULL for none. */
static struct cache_entry *entry_of_link(struct list_node *l)
{
    return l ? container_of(l, struct cache_entry, link) : NULL;
}

/* An idle entry (no GET in flight) goes to the front of its list. */
static void entry_touch(struct cache_entry *e)
{
    bool found = e->rr && e->rr->status == LOOKUP_FOUND;
    list_move_front(found ? &e->lk->positive : &e->lk->negative, &e->link);
}

/* ---- the table ---- */

#define ENTRY_OF(n) container_of(n, struct cache_entry, node)

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
        struct cache_entry *victim = entry_of_link(list_last(&lk->negative));
        if (!victim)
            victim = entry_of_link(list_last(&lk->positive));
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
    list_init(&e->waiters);
    list_insert_front(&lk->negative, &e->link);
    strmap_put(&lk->table, &e->node, e->id);
    METRIC_INC(&lk->w->metrics, cache_entries);
    return e;
}

/* ---- answering waiters ---- */

/* Detaches the whole list first: a callback may start a new lookup on the
 * same entry (a pipelined request) or cancel another waiter. A callback may
 * also look up new ids and so evict e (it is idle by now): e is not touched
 * after the detach, and rr (e's) is held until the last waiter has it. */
static void answer_waiters(struct cache_entry *e, int status, struct route_rec *rr)
{
    struct list_node list;
    if (list_empty(&e->waiters))
        return;
    list_init(&list);
    list_splice_back(&list, &e->waiters);
    route_rec_ref(rr);
    while (!list_empty(&list)) {
        struct lookup_waiter *wt = container_of(list_first(&list), struct lookup_waiter, link);
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
    if (e->rr && e->rr->status == LOOKUP_FOUND && time_now_ms() < e->stale_until_ms) {
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
    struct timeval tv = tv_from_ms(in_ms);
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
    e->deadline_ms = time_now_ms() + timeout;
    list_move_back(&lk->waiting, &e->link);
    if (!evtimer_pending(lk->timeout_ev, NULL))
        timer_arm(lk, timeout);
}

/* e's GET is late: its waiters get the stale record or 503 now; e stays in
 * flight (on no list) until the reply or the disconnect comes. */
static void entry_timed_out(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    list_unlink(&e->link);
    if (e->deferred) {
        /* The GET never went out (see link_abandon_deferred): nothing will
         * answer it. e is idle again; its waiters may evict it, so nothing
         * touches e after answering. */
        e->deferred = e->pending = false;
        entry_touch(e);
        log_warn("redis: no data connection for the GET for sandbox %s", e->id);
        METRIC_INC(&lk->w->metrics, redis_errors);
        answer_unavailable(e);
        return;
    }
    log_warn("redis: GET for sandbox %s timed out after %d ms", e->id,
             lk->w->cfg->redis_timeout_ms);
    METRIC_INC(&lk->w->metrics, redis_errors);
    e->waiters_timed_out = true;
    answer_unavailable(e);
    if (++lk->consecutive_timeouts >= TIMEOUTS_BEFORE_RECONNECT && lk->data.ac &&
        lk->data.connected) {
        log_warn("redis: %d GETs timed out in a row, reconnecting", lk->consecutive_timeouts);
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
    uint64_t now = time_now_ms();
    struct cache_entry *e;
    /* Re-read the front every time: answering runs callbacks, and dropping
     * the link answers (and moves) every entry in flight. */
    while ((e = entry_of_link(list_first(&lk->waiting))) && e->deadline_ms <= now)
        entry_timed_out(e);
    if (e)
        timer_arm(lk, e->deadline_ms - now);
}

static struct route_rec *parse_reply(struct cache_entry *e, redisReply *reply)
{
    struct route_rec *rr = redis_reply_record(e->id, reply);
    if (rr && rr->status == LOOKUP_BROKEN)
        log_error("redis: broken record for sandbox %s: %s", e->id, rr->message);
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
    uint64_t now = time_now_ms();
    const struct config *cfg = lk->w->cfg;
    int ttl = rr->status == LOOKUP_FOUND ? cfg->cache_ttl_ms : cfg->cache_negative_ttl_ms;
    e->expires_ms = now + (uint64_t)ttl;
    e->refresh_ms = now + (uint64_t)(ttl - ttl / 4);
    e->stale_until_ms = now + (uint64_t)ttl + (uint64_t)cfg->cache_stale_grace_ms;
    route_rec_unref(e->rr);
    e->rr = rr;
    entry_touch(e); /* to the list of its new answer */
    if (e->waiters_timed_out) {
        e->waiters_timed_out = false;
        if (list_empty(&e->waiters))
            return;
    }
    answer_waiters(e, rr->status, rr);
}

/* Sends the GET (if Redis is up); leaves e->pending false when it could not. */
static int entry_send_get(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    if (redisAsyncCommand(lk->data.ac, get_cb, e, "GET %s%s", lk->w->cfg->key_prefix, e->id) !=
        REDIS_OK) {
        METRIC_INC(&lk->w->metrics, redis_errors);
        return -1;
    }
    return 0;
}

/* The data link is connected and Redis is answering its setup: a GET now
 * waits for that (send_deferred) rather than failing at once. Not sent
 * behind the setup commands: after a refused SELECT it would read db 0. */
static bool data_link_setting_up(const struct lookup *lk)
{
    const struct redis_link *l = &lk->data;
    return l->ac && !l->connected && !l->failed && l->steps > 0;
}

static void entry_fetch(struct cache_entry *e)
{
    struct lookup *lk = e->lk;
    e->deferred = data_link_setting_up(lk);
    if (!e->deferred && (!lk->data.ac || !lk->data.connected || entry_send_get(e) == -1))
        return;
    e->pending = true;
    e->waiters_timed_out = false;
    waiting_add(e);
}

int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt, int *status,
               struct route_rec **rr)
{
    struct cache_entry *e = table_find(lk, id);
    uint64_t now = time_now_ms();
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
    list_insert_back(&e->waiters, &wt->link);
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
    uint64_t now = time_now_ms();
    strmap_each(&lk->table, sweep_entry, &now);
}

/* ---- Redis connections ----
 *
 * Each link (data, subscriber) goes round: resolve redis.url's host, connect
 * to one of its addresses, set the connection up (AUTH; then SELECT and a
 * first heartbeat PUBLISH on the data link, SUBSCRIBE on the subscriber),
 * serve (`connected`) until it fails, reconnect. The host is resolved with
 * evdns on the worker's loop, never with getaddrinfo (which blocks the
 * worker while a nameserver does not answer), and again on every reconnect
 * (a failover may move the name). A failed try goes on to the resolution's
 * next address at once, and after the last one waits the backoff. */

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata);

static void link_forget_addrs(struct redis_link *l)
{
    if (l->addrs)
        evutil_freeaddrinfo(l->addrs);
    l->addrs = l->next_addr = NULL;
}

static void link_set_connected(struct redis_link *l, bool up)
{
    __atomic_store_n(&l->connected, up, __ATOMIC_RELAXED); /* /readyz reads it */
}

static const char *link_kind(const struct redis_link *l)
{
    return l->subscriber ? "subscriber" : "data";
}

/* Where the connection is: what a failure now would have failed at. */
static const char *link_stage(const struct redis_link *l)
{
    if (l->steps == 0)
        return "connect to"; /* setup commands go out once connected */
    return l->steps_done < l->steps ? l->step[l->steps_done] : "connection to";
}

/* Sends the GETs that waited for the data link's setup. A walk of the
 * table runs no request callbacks (they may add entries): a GET that cannot
 * be sent stays deferred, and its timer answers it. */
static void send_deferred(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    if (!e->deferred || entry_send_get(e) == -1)
        return;
    e->deferred = false;
    e->purged = false; /* this GET goes out after any purge */
}

/* Moves a deferred entry to the front of the waiting list, due now (the
 * list stays in deadline order). */
static void fail_deferred(struct strmap_node *n, void *arg)
{
    struct cache_entry *e = ENTRY_OF(n);
    if (!e->deferred)
        return;
    e->deadline_ms = 0;
    list_move_front(&e->lk->waiting, &e->link);
}

/* The data link leaves its setup unfinished: what waited for it is
 * answered now, from the deadline timer (entry_timed_out), not from inside
 * this walk of the table. */
static void link_abandon_deferred(struct redis_link *l)
{
    if (l->subscriber || l->steps == 0 || l->connected || l->lk->closing)
        return;
    strmap_each(&l->lk->table, fail_deferred, NULL);
    struct cache_entry *first = entry_of_link(list_first(&l->lk->waiting));
    if (first && first->deadline_ms == 0)
        timer_arm(l->lk, 0);
}

/* Counts a failed try, logged the first time, then once per
 * FAILURES_PER_LOG tries unless the cause changes: not a line per try. */
static void link_failure(struct redis_link *l, const char *stage, const char *subject,
                         const char *why)
{
    bool new_cause = strcmp(l->failed_at, stage) != 0;
    link_abandon_deferred(l);
    if (l->failures++ % FAILURES_PER_LOG == 0 || new_cause)
        log_warn("redis: %s %s failed: %s (%s connection, try %d)", stage, subject, why,
                 link_kind(l), l->failures);
    snprintf(l->failed_at, sizeof(l->failed_at), "%s", stage);
    l->failed = true;
    METRIC_INC(&l->lk->w->metrics, redis_errors);
}

/* Redis accepted the setup: the link serves from now on. */
static void link_ready(struct redis_link *l)
{
    link_set_connected(l, true);
    l->backoff_ms = RECONNECT_MIN_MS;
    if (l->failures)
        log_info("redis: %s connection to %s restored after %d failed tries", link_kind(l), l->peer,
                 l->failures);
    l->failures = 0;
    l->failed_at[0] = '\0';
    link_forget_addrs(l); /* the next reconnect resolves again */
    if (l->subscriber)
        l->lk->heartbeat_seen_ms = time_now_ms(); /* judged from now on */
    else
        strmap_each(&l->lk->table, send_deferred, NULL);
    METRIC_INC(&l->lk->w->metrics, redis_reconnects);
    log_debug("redis: %s connection to %s up", link_kind(l), l->peer);
}

/* Invalidations published while we were not subscribed are lost: after
 * every (re)subscription, treat the whole cache as stale. The confirmation
 * for <prefix>invalidate completes the subscriber's setup. */
static void subscribed(struct lookup *lk, const struct redis_push *push)
{
    lk->heartbeat_seen_ms = time_now_ms();
    if (redis_push_channel_is(push, lk->heartbeat_channel))
        return;
    purge_all(lk);
    if (!lk->sub.connected) {
        lk->sub.steps_done = lk->sub.steps;
        link_ready(&lk->sub);
    }
    log_info("redis: worker %d subscribed to %sinvalidate", lk->w->id, lk->w->cfg->key_prefix);
}

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct lookup *lk = privdata;
    struct redis_push push;
    if (!r || lk->closing || ac != lk->sub.ac)
        return;
    redis_reply_push(r, &push);
    if (push.kind == REDIS_PUSH_SUBSCRIBED)
        subscribed(lk, &push);
    else if (push.kind == REDIS_PUSH_MESSAGE && redis_push_channel_is(&push, lk->heartbeat_channel))
        lk->heartbeat_seen_ms = time_now_ms();
    else if (push.kind == REDIS_PUSH_MESSAGE)
        purge(lk, push.payload, push.payload_len);
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    link_connect(arg);
}

static void schedule_reconnect(struct redis_link *l)
{
    l->ac = NULL;
    link_set_connected(l, false);
    if (!l->subscriber)
        l->lk->publish_sent_ms = 0;
    if (l->lk->closing)
        return;
    /* The resolution's next address at once; after the last, the backoff. */
    int ms = l->next_addr ? 0 : l->backoff_ms;
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(l->reconnect_ev, &tv);
    if (!l->next_addr)
        l->backoff_ms = l->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : l->backoff_ms * 2;
}

/* Frees the connection now; pending GETs are answered as failures (their
 * callbacks see l->ac == NULL and answer from the stale cache or 503). */
static void link_close(struct redis_link *l)
{
    redisAsyncContext *ac = l->ac;
    link_abandon_deferred(l);
    if (l->resolving) {
        /* It still calls back, with EVUTIL_EAI_CANCEL: see resolved_cb. */
        evdns_getaddrinfo_cancel(l->resolving);
        l->resolving = NULL;
    }
    l->ac = NULL;
    link_set_connected(l, false);
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
    log_warn("redis: %s connection %s, reconnecting", link_kind(l), why);
    METRIC_INC(&l->lk->w->metrics, redis_errors);
    link_close(l);
    schedule_reconnect(l);
}

/* Redis refused what this connection needs. Called from one of its reply
 * callbacks, where it cannot be freed: no longer usable now, closed by
 * hiredis once the replies in flight are in, and then on_disconnect
 * reconnects with backoff. */
static void link_fail(struct redis_link *l, const char *stage, const char *why)
{
    link_failure(l, stage, l->peer, why);
    link_set_connected(l, false);
    l->setup_ms = time_now_ms(); /* link_check_setup bounds that wait */
    redisAsyncDisconnect(l->ac);
}

/* A connection Redis does not set up in time (a SYN into a black hole, a
 * server that stopped answering) is given up like a refused one. */
static void link_check_setup(struct redis_link *l, uint64_t now)
{
    int limit = l->lk->w->cfg->redis_timeout_ms;
    if (limit < SETUP_TIMEOUT_MIN_MS)
        limit = SETUP_TIMEOUT_MIN_MS;
    if (!l->ac || l->connected || now - l->setup_ms <= (uint64_t)limit)
        return;
    if (!l->failed) {
        char why[48];
        snprintf(why, sizeof(why), "no answer within %d ms", limit);
        link_failure(l, link_stage(l), l->peer, why);
    }
    link_close(l);
    schedule_reconnect(l);
}

static void publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct lookup *lk = privdata;
    redisReply *reply = r;
    if (!reply || lk->closing || ac != lk->data.ac)
        return;
    lk->publish_sent_ms = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* An answer, but no beat: the subscriber cannot be judged by it,
         * and a link Redis refuses the heartbeat is not one we can trust. */
        link_fail(&lk->data, "PUBLISH on", reply->str);
        return;
    }
    lk->publish_answered_ms = time_now_ms();
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *lk = arg;
    uint64_t now = time_now_ms();
    uint64_t limit = (uint64_t)lk->w->cfg->redis_timeout_ms;
    link_check_setup(&lk->data, now);
    link_check_setup(&lk->sub, now);
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
        redisAsyncCommand(lk->data.ac, publish_cb, lk, "PUBLISH %s 1", lk->heartbeat_channel) ==
            REDIS_OK)
        lk->publish_sent_ms = now;
}

static void setup_step(struct redis_link *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Names the next setup command for the log (replies come in order). */
static void setup_step(struct redis_link *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->step[l->steps++], sizeof(l->step[0]), fmt, ap);
    va_end(ap);
}

/* Connected: what must succeed before the link serves. A command that
 * cannot be queued leaves its step unanswered, for link_check_setup. */
static void link_setup(struct redis_link *l)
{
    const struct config *cfg = l->lk->w->cfg;
    if (cfg->redis_password) {
        setup_step(l, "AUTH to");
        redisAsyncCommand(l->ac, setup_cb, l, "AUTH %s", cfg->redis_password);
    }
    if (l->subscriber) {
        /* Completed by its confirmation (subscribed); a refusal makes
         * hiredis close the connection (on_disconnect). */
        setup_step(l, "SUBSCRIBE to");
        redisAsyncCommand(l->ac, sub_cb, l->lk, "SUBSCRIBE %sinvalidate %s", cfg->key_prefix,
                          l->lk->heartbeat_channel);
        return;
    }
    /* SELECT even db 0: it is also how a Redis that wants a password says
     * we have none. The PUBLISH is the first heartbeat. */
    setup_step(l, "SELECT %d on", cfg->redis_db);
    redisAsyncCommand(l->ac, setup_cb, l, "SELECT %d", cfg->redis_db);
    setup_step(l, "PUBLISH on");
    redisAsyncCommand(l->ac, setup_cb, l, "PUBLISH %s 1", l->lk->heartbeat_channel);
}

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *l = privdata;
    redisReply *reply = r;
    if (!reply || ac != l->ac || l->failed || l->steps_done == l->steps)
        return;
    const char *step = l->step[l->steps_done++];
    if (reply->type == REDIS_REPLY_ERROR)
        link_fail(l, step, reply->str);
    else if (l->steps_done == l->steps && !l->subscriber)
        link_ready(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (!l || ac != l->ac)
        return;
    if (status != REDIS_OK) {
        link_failure(l, "connect to", l->peer, ac->errstr);
        schedule_reconnect(l); /* hiredis frees ac */
        return;
    }
    link_setup(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (!l || l->lk->closing || ac != l->ac)
        return;
    const char *why = status == REDIS_OK ? "closed" : ac->errstr;
    if (l->connected) {
        log_warn("redis: %s connection lost: %s", link_kind(l), why);
        METRIC_INC(&l->lk->w->metrics, redis_errors);
    } else if (!l->failed) {
        link_failure(l, link_stage(l), l->peer, why); /* e.g. a refused SUBSCRIBE */
    }
    schedule_reconnect(l);
}

/* "127.0.0.1:6379", or "redis:6379 (10.0.0.5)": log lines keep the name. */
static void link_set_peer(struct redis_link *l, const char *addr)
{
    const struct config *cfg = l->lk->w->cfg;
    const char *fmt = strchr(cfg->redis_host, ':') ? "[%s]:%d" : "%s:%d";
    int n = snprintf(l->peer, sizeof(l->peer), fmt, cfg->redis_host, cfg->redis_port);
    if (strcmp(addr, cfg->redis_host) != 0 && n > 0 && (size_t)n < sizeof(l->peer))
        snprintf(l->peer + n, sizeof(l->peer) - (size_t)n, " (%s)", addr);
}

/* Connects to the numeric address (hiredis resolves what it is given with
 * a blocking getaddrinfo; an address needs no lookup). */
static void link_connect_next(struct redis_link *l)
{
    const struct config *cfg = l->lk->w->cfg;
    const struct evutil_addrinfo *ai = l->next_addr;
    char addr[64]; /* an IPv6 address with a %scope fits */
    l->next_addr = ai->ai_next;
    l->failed = false;
    l->steps = l->steps_done = 0;
    int rc = getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                         NI_NUMERICHOST);
    link_set_peer(l, rc == 0 ? addr : "?");
    redisAsyncContext *ac = rc == 0 ? redisAsyncConnect(addr, cfg->redis_port) : NULL;
    if (!ac || ac->err) {
        link_failure(l, "connect to", l->peer,
                     ac   ? ac->errstr
                     : rc ? gai_strerror(rc)
                          : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    l->setup_ms = time_now_ms();
    redisLibeventAttach(ac, l->lk->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void resolved_cb(int err, struct evutil_addrinfo *res, void *arg)
{
    struct redis_link *l = arg;
    if (err == EVUTIL_EAI_CANCEL)
        return; /* link_close gave it up: nothing here is its business */
    l->resolving = NULL;
    if (err || !res) {
        link_failure(l, "resolving", l->lk->w->cfg->redis_host,
                     err ? evutil_gai_strerror(err) : "no address");
        schedule_reconnect(l);
        return;
    }
    l->addrs = l->next_addr = res;
    link_connect_next(l);
}

/* IPv4 answers come first (evdns orders them so); an address or a name in
 * /etc/hosts is answered before evdns_getaddrinfo returns (NULL then). */
static void link_resolve(struct redis_link *l)
{
    const struct config *cfg = l->lk->w->cfg;
    struct evutil_addrinfo hints;
    char port[8];
    link_forget_addrs(l);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", cfg->redis_port);
    l->resolving = evdns_getaddrinfo(l->lk->dns, cfg->redis_host, port, &hints, resolved_cb, l);
}

static void link_connect(struct redis_link *l)
{
    if (l->next_addr)
        link_connect_next(l);
    else
        link_resolve(l);
}

static void dns_log(int is_warn, const char *msg)
{
    if (is_warn)
        log_warn("dns: %s", msg);
    else
        log_debug("dns: %s", msg);
}

static void dns_log_init(void)
{
    evdns_set_log_fn(dns_log); /* process-wide */
}

/* The system resolver's settings, read as glibc reads them: /etc/hosts,
 * then nameserver, search, domain and options (ndots, timeout, attempts)
 * from /etc/resolv.conf; no file, or no nameserver in it, means 127.0.0.1.
 * Read once per worker start. */
static struct evdns_base *dns_new(struct event_base *base)
{
    static pthread_once_t log_once = PTHREAD_ONCE_INIT;
    pthread_once(&log_once, dns_log_init);
    struct evdns_base *dns = evdns_base_new(base, 0);
    if (!dns)
        return NULL;
    int rc = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
    if (rc != 0 && rc != 1 && rc != 6) /* 1: no file; 6: no nameserver */
        log_warn("redis: cannot read /etc/resolv.conf (evdns error %d), names resolve from "
                 "/etc/hosts only",
                 rc);
    return dns;
}

/* A cancelled resolution still calls back (EVUTIL_EAI_CANCEL), from a
 * deferred callback that frees evdns's request and reads the evdns_base:
 * those run before the base goes. lookup_free calls this once the worker's
 * loop has stopped and the lookup's own events are gone. */
static void dns_free(struct lookup *lk, bool cancelled)
{
    if (!lk->dns)
        return;
    if (cancelled)
        event_base_loop(lk->w->base, EVLOOP_NONBLOCK);
    evdns_base_free(lk->dns, 0);
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
    if (strmap_init(&lk->table, CACHE_BUCKETS_MIN) == -1 || !lk->sweep_ev || !lk->timeout_ev ||
        !lk->not_found)
        goto fail;
    struct timeval tv = tv_from_ms(SWEEP_INTERVAL_MS);
    evtimer_add(lk->sweep_ev, &tv);
    static unsigned instance;
    snprintf(lk->heartbeat_channel, sizeof(lk->heartbeat_channel), "%sheartbeat:%d:%d:%u",
             w->cfg->key_prefix, (int)getpid(), w->id,
             __atomic_fetch_add(&instance, 1, __ATOMIC_RELAXED));
    lk->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, lk);
    if (!lk->heartbeat_ev)
        goto fail;
    struct timeval hb = tv_from_ms(HEARTBEAT_MS);
    evtimer_add(lk->heartbeat_ev, &hb);
    lk->dns = dns_new(w->base);
    if (!lk->dns || link_init(lk, &lk->data, false) == -1 || link_init(lk, &lk->sub, true) == -1)
        goto fail;
    return lk;
fail:
    lookup_free(lk);
    return NULL;
}

static void link_free(struct redis_link *l)
{
    if (!l->lk)
        return; /* never initialised */
    link_close(l);
    link_forget_addrs(l);
    ev_free(l->reconnect_ev);
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
    bool resolving = lk->data.resolving || lk->sub.resolving;
    link_free(&lk->data);
    link_free(&lk->sub);
    ev_free(lk->sweep_ev);
    ev_free(lk->heartbeat_ev);
    ev_free(lk->timeout_ev);
    if (lk->table.buckets)
        strmap_each(&lk->table, free_entry_node, NULL);
    strmap_destroy(&lk->table);
    dns_free(lk, resolving);
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
    link_forget_addrs(l); /* the host may have changed */
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
    log_info("redis: settings changed, reconnecting worker %d to %s:%d", lk->w->id, cfg->redis_host,
             cfg->redis_port);
    purge_all(lk);
    link_restart(&lk->data);
    link_restart(&lk->sub);
}

bool lookup_connected(const struct lookup *lk)
{
    return __atomic_load_n(&lk->data.connected, __ATOMIC_RELAXED);
}
