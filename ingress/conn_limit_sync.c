/* The sync of global maxConnections (conn_limit.h): once a second, through
 * worker 0's Redis link (the master's data connection), this instance
 * publishes its count of every limited sandbox it knows and reads the other
 * live instances'. The keys (all under redis.key_prefix, each with a ':'
 * that no sandbox id has):
 *
 *   limits:instance:<instance>  "1", PX 3000: this instance is alive
 *   limits:instances            a set of the instances seen
 *   limits:conn:<sandbox>       a hash instance -> count, PX 3000 from its
 *                               last write (HDEL when the count is 0)
 *
 * One round is two pipelines: SET our liveness, SADD ourselves, SMEMBERS;
 * then MGET every member's liveness key (members without one are dead:
 * SREM'd, their counts ignored, so a crashed instance's counts vanish
 * within 3 s), and per sandbox HSET or HDEL + PEXPIRE + HGETALL. When every
 * reply is in, each sandbox's view (own count, the live others' total) and
 * the number of live instances are stored. A failed round stores nothing:
 * views older than LIMITS_STALE_MS fall back to a share of the limit. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_limit.h"
#include "ev.h"
#include "log.h"
#include "metrics.h"
#include "redis_link.h"
#include "timeutil.h"
#include "worker.h"

enum cmd_kind { CMD_IGNORE, CMD_MEMBERS, CMD_ALIVE, CMD_HASH };

struct sync_round;

/* One command's callback argument. */
struct cmd_ctx {
    struct sync_round *r;
    enum cmd_kind kind;
    size_t index; /* CMD_HASH: which sandbox */
};

struct sync_round {
    struct limits_sync *s; /* NULL once the sync is freed: replies drain */
    int pending;           /* commands sent and not yet answered */
    bool failed;
    struct limits_count *counts; /* this instance's, at the start */
    size_t n;
    uint32_t *others; /* per sandbox, the live others' total */
    char **members;   /* SMEMBERS, in MGET order */
    bool *alive;
    size_t nmembers;
    uint32_t live;
};

struct limits_sync {
    struct worker *w;
    struct event *ev;
    char instance[128];
    struct sync_round *round; /* in flight, or NULL */
};

static void round_free(struct sync_round *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nmembers; i++)
        free(r->members[i]);
    free(r->members);
    free(r->alive);
    free(r->counts);
    free(r->others);
    free(r);
}

/* Every reply is in: store the views (a failed round stores nothing). */
static void round_done(struct sync_round *r)
{
    struct limits_sync *s = r->s;
    if (s) {
        s->round = NULL;
        if (!r->failed) {
            uint64_t now = time_now_ms();
            for (size_t i = 0; i < r->n; i++)
                limits_store_view(r->counts[i].id, r->counts[i].active, r->others[i], now);
            limits_store_instances(r->live);
            __atomic_store_n(&process_metrics.limit_instances, (int64_t)r->live, __ATOMIC_RELAXED);
            __atomic_fetch_add(&process_metrics.limit_syncs, 1, __ATOMIC_RELAXED);
        }
    }
    round_free(r);
}

/* Freed by its callback, which hiredis calls exactly once (with NULL when
 * the connection goes first). */
static struct cmd_ctx *ctx_new(struct sync_round *r, enum cmd_kind kind, size_t index)
{
    struct cmd_ctx *c = malloc(sizeof(*c));
    if (c) {
        c->r = r;
        c->kind = kind;
        c->index = index;
    }
    return c;
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends one command of the round (argv of NUL-terminated strings). */
static void send_cmd(struct sync_round *r, enum cmd_kind kind, size_t index, int argc,
                     const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct cmd_ctx *c = ctx_new(r, kind, index);
    if (!c || !r->s ||
        redis_link_command_argv(r->s->w->redis, reply_cb, c, argc, argv, lens) == -1) {
        free(c);
        r->failed = true;
        return;
    }
    r->pending++;
}

/* The second pipeline: who is alive, and each sandbox's counts. */
static void send_phase2(struct sync_round *r)
{
    const char *prefix = r->s->w->cfg->key_prefix;
    char key[512], count[16];
    /* MGET <prefix>limits:instance:<m> ...: argv built on the heap. */
    size_t argc = r->nmembers + 1;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    char **keys = calloc(argc, sizeof(*keys));
    bool ok = argv && lens && keys;
    if (ok) {
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < r->nmembers && ok; i++) {
            int len = asprintf(&keys[i + 1], "%slimits:instance:%s", prefix, r->members[i]);
            ok = len >= 0;
            if (ok) {
                argv[i + 1] = keys[i + 1];
                lens[i + 1] = (size_t)len;
            } else {
                keys[i + 1] = NULL;
            }
        }
    }
    if (ok) {
        struct cmd_ctx *c = ctx_new(r, CMD_ALIVE, 0);
        ok = c && redis_link_command_argv(r->s->w->redis, reply_cb, c, (int)argc, argv, lens) == 0;
        if (ok)
            r->pending++;
        else
            free(c);
    }
    for (size_t i = 1; keys && i < argc; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    free(lens);
    if (!ok) {
        r->failed = true;
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        snprintf(key, sizeof(key), "%slimits:conn:%s", prefix, r->counts[i].id);
        if (r->counts[i].active > 0) {
            snprintf(count, sizeof(count), "%u", r->counts[i].active);
            send_cmd(r, CMD_IGNORE, i, 4, (const char *[]){"HSET", key, r->s->instance, count});
            snprintf(count, sizeof(count), "%d", LIMITS_EXPIRE_MS);
            send_cmd(r, CMD_IGNORE, i, 3, (const char *[]){"PEXPIRE", key, count});
        } else {
            send_cmd(r, CMD_IGNORE, i, 3, (const char *[]){"HDEL", key, r->s->instance});
        }
        send_cmd(r, CMD_HASH, i, 2, (const char *[]){"HGETALL", key});
    }
}

static void on_members(struct sync_round *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY) {
        r->failed = true;
        return;
    }
    r->members = calloc(reply->elements ? reply->elements : 1, sizeof(char *));
    r->alive = calloc(reply->elements ? reply->elements : 1, sizeof(bool));
    if (!r->members || !r->alive) {
        r->failed = true;
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        if (m->type != REDIS_REPLY_STRING || !(r->members[r->nmembers] = strdup(m->str)))
            continue;
        r->nmembers++;
    }
    send_phase2(r);
}

/* MGET of the liveness keys: nil = dead (removed from the set). */
static void on_alive(struct sync_round *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != r->nmembers) {
        r->failed = true;
        return;
    }
    r->live = 0;
    for (size_t i = 0; i < r->nmembers; i++) {
        r->alive[i] = reply->element[i]->type != REDIS_REPLY_NIL;
        if (r->alive[i])
            r->live++;
        else if (r->s) {
            char key[256];
            snprintf(key, sizeof(key), "%slimits:instances", r->s->w->cfg->key_prefix);
            send_cmd(r, CMD_IGNORE, 0, 3, (const char *[]){"SREM", key, r->members[i]});
        }
    }
}

static bool member_alive(const struct sync_round *r, const char *id, size_t len)
{
    for (size_t i = 0; i < r->nmembers; i++)
        if (strlen(r->members[i]) == len && memcmp(r->members[i], id, len) == 0)
            return r->alive[i];
    return false;
}

/* HGETALL limits:conn:<sandbox>: the live others' counts, summed. */
static void on_hash(struct sync_round *r, size_t i, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || !r->s) {
        r->failed = true;
        return;
    }
    uint64_t sum = 0;
    size_t self_len = strlen(r->s->instance);
    for (size_t k = 0; k + 1 < reply->elements; k += 2) {
        const redisReply *f = reply->element[k], *v = reply->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if ((f->len == self_len && memcmp(f->str, r->s->instance, self_len) == 0) ||
            !member_alive(r, f->str, f->len))
            continue;
        sum += strtoul(v->str, NULL, 10);
    }
    r->others[i] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd_ctx c = *(struct cmd_ctx *)privdata;
    struct sync_round *r = c.r;
    const redisReply *rep = reply;
    free(privdata);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        r->failed = true;
    } else if (!r->failed && r->s) {
        if (c.kind == CMD_MEMBERS)
            on_members(r, rep);
        else if (c.kind == CMD_ALIVE)
            on_alive(r, rep);
        else if (c.kind == CMD_HASH)
            on_hash(r, c.index, rep);
    }
    if (--r->pending == 0)
        round_done(r);
}

static void sync_cb(evutil_socket_t fd, short what, void *arg)
{
    struct limits_sync *s = arg;
    if (s->round || !s->w->redis)
        return; /* the last round is still out: Redis is slow */
    struct sync_round *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->s = s;
    r->n = limits_snapshot(&r->counts);
    r->others = calloc(r->n ? r->n : 1, sizeof(uint32_t));
    if (!r->others) {
        round_free(r);
        return;
    }
    const char *prefix = s->w->cfg->key_prefix;
    char alive_key[256], set_key[256], px[16];
    snprintf(alive_key, sizeof(alive_key), "%slimits:instance:%s", prefix, s->instance);
    snprintf(set_key, sizeof(set_key), "%slimits:instances", prefix);
    snprintf(px, sizeof(px), "%d", LIMITS_EXPIRE_MS);
    s->round = r;
    r->pending = 1; /* held until everything is sent */
    send_cmd(r, CMD_IGNORE, 0, 5, (const char *[]){"SET", alive_key, "1", "PX", px});
    send_cmd(r, CMD_IGNORE, 0, 3, (const char *[]){"SADD", set_key, s->instance});
    send_cmd(r, CMD_MEMBERS, 0, 2, (const char *[]){"SMEMBERS", set_key});
    if (--r->pending == 0)
        round_done(r);
}

struct limits_sync *limits_sync_new(struct worker *w)
{
    struct limits_sync *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == ' ' || *p == ':')
            *p = '-';
    snprintf(s->instance, sizeof(s->instance), "%s:%d:%08x", host, (int)getpid(), arc4random());
    s->w = w;
    s->ev = event_new(w->base, -1, EV_PERSIST, sync_cb, s);
    if (!s->ev) {
        free(s);
        return NULL;
    }
    struct timeval tv = tv_from_ms(LIMITS_SYNC_MS);
    evtimer_add(s->ev, &tv);
    log_info("limits: maxConnections counted across instances, this one is %s", s->instance);
    return s;
}

void limits_sync_free(struct limits_sync *s)
{
    if (!s)
        return;
    if (s->round)
        s->round->s = NULL; /* its replies drain when the link goes */
    ev_free(s->ev);
    free(s);
}
