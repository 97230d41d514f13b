/* The Sentinel watcher (sentinel.h): a command connection and a
 * +switch-master subscription to each configured Sentinel, polls, and the
 * process's view of the master and its replicas. */
#include "sentinel.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "ev.h"
#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "timeutil.h"

#define TICK_MS 50
#define POLL_MS 1000 /* one Sentinel asked, while all is well */
/* All Sentinels asked every so often (jittered), while in doubt or while no
 * master is known. */
#define FAST_MIN_MS 100
#define FAST_MAX_MS 300
/* How long a doubt keeps the polls fast. */
#define DOUBT_MS 10000
/* An address given up is not taken back from a Sentinel for this long
 * (a Sentinel that has not heard of the failover yet still names it). */
#define ABANDONED_MS 10000
#define ABANDONED_MAX 4

struct snode {
    struct sentinel_watch *sw;
    int index;
    char host[REDIS_CONN_HOST_MAX];
    int port;
    struct redis_conn cmd, sub;
    uint64_t poll_sent_ms; /* a poll outstanding on cmd, else 0 */
    bool has_master;       /* this poll's first answer */
    struct redis_addr master;
};

struct sentinel_watch {
    struct event_base *base;
    struct evdns_base *dns;
    sentinel_changed_fn *changed;
    void *arg;
    char *master_name, *password;
    int timeout_ms, connect_timeout_ms;
    struct snode *nodes;
    int n;
    int order[CONFIG_MAX_SENTINELS]; /* node indexes, the one asked first first */
    struct event *tick_ev, *wake_ev;
    int wake_fd; /* eventfd: a worker's doubt */

    /* The view, read by every worker: under lock. */
    pthread_mutex_t lock;
    bool master_known;
    struct redis_addr master;
    struct redis_addr replicas[SENTINEL_MAX_REPLICAS];
    int nreplicas;
    bool doubt_pending;
    uint64_t switches;

    /* The loop's own. */
    uint64_t fast_until_ms;
    uint64_t next_poll_ms;
    struct {
        struct redis_addr a;
        uint64_t at;
    } abandoned[ABANDONED_MAX];
    int next_abandoned;
    bool freeing;
};

bool redis_addr_equal(const struct redis_addr *a, const struct redis_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* ---- the view ---- */

bool sentinel_watch_master(struct sentinel_watch *sw, struct redis_addr *out)
{
    pthread_mutex_lock(&sw->lock);
    bool known = sw->master_known;
    if (known)
        *out = sw->master;
    pthread_mutex_unlock(&sw->lock);
    return known;
}

int sentinel_watch_replicas(struct sentinel_watch *sw, struct redis_addr *out, int max)
{
    pthread_mutex_lock(&sw->lock);
    int n = sw->nreplicas < max ? sw->nreplicas : max;
    memcpy(out, sw->replicas, (size_t)n * sizeof(*out));
    pthread_mutex_unlock(&sw->lock);
    return n;
}

uint64_t sentinel_watch_switches(struct sentinel_watch *sw)
{
    pthread_mutex_lock(&sw->lock);
    uint64_t n = sw->switches;
    pthread_mutex_unlock(&sw->lock);
    return n;
}

void sentinel_watch_doubt(struct sentinel_watch *sw, const struct redis_addr *bad)
{
    pthread_mutex_lock(&sw->lock);
    bool tell =
        !sw->doubt_pending && (!bad || !sw->master_known || redis_addr_equal(bad, &sw->master));
    if (tell)
        sw->doubt_pending = true;
    pthread_mutex_unlock(&sw->lock);
    uint64_t one = 1;
    if (tell && write(sw->wake_fd, &one, sizeof(one)) == -1)
        log_warn("redis: cannot wake the Sentinel watcher");
}

static bool abandoned_recently(const struct sentinel_watch *sw, const struct redis_addr *a,
                               uint64_t now)
{
    for (int i = 0; i < ABANDONED_MAX; i++)
        if (sw->abandoned[i].at && now - sw->abandoned[i].at < ABANDONED_MS &&
            redis_addr_equal(&sw->abandoned[i].a, a))
            return true;
    return false;
}

/* The master is m from now on (replicas: its replica list, when known). */
static void adopt(struct sentinel_watch *sw, const struct redis_addr *m,
                  const struct redis_addr *reps, int nreps, const char *source)
{
    uint64_t now = time_now_ms();
    pthread_mutex_lock(&sw->lock);
    bool was_known = sw->master_known;
    struct redis_addr old = sw->master;
    sw->master = *m;
    sw->master_known = true;
    if (reps) {
        memcpy(sw->replicas, reps, (size_t)nreps * sizeof(*reps));
        sw->nreplicas = nreps;
    }
    if (was_known)
        sw->switches++;
    pthread_mutex_unlock(&sw->lock);
    if (was_known) {
        sw->abandoned[sw->next_abandoned].a = old;
        sw->abandoned[sw->next_abandoned].at = now;
        sw->next_abandoned = (sw->next_abandoned + 1) % ABANDONED_MAX;
        __atomic_fetch_add(&process_metrics.redis_master_switches, 1, __ATOMIC_RELAXED);
        log_warn("redis: master of \"%s\" is now %s:%d, was %s:%d (%s)", sw->master_name, m->host,
                 m->port, old.host, old.port, source);
    } else {
        log_info("redis: master of \"%s\" is %s:%d (%s)", sw->master_name, m->host, m->port,
                 source);
    }
    sw->changed(sw->arg);
}

/* A Sentinel that agrees on the master: its replica list is the one to
 * read from. */
static void take_replicas(struct sentinel_watch *sw, const struct redis_addr *reps, int nreps)
{
    pthread_mutex_lock(&sw->lock);
    bool same = nreps == sw->nreplicas;
    for (int i = 0; same && i < nreps; i++)
        same = redis_addr_equal(&reps[i], &sw->replicas[i]);
    if (!same) {
        memcpy(sw->replicas, reps, (size_t)nreps * sizeof(*reps));
        sw->nreplicas = nreps;
    }
    pthread_mutex_unlock(&sw->lock);
    if (!same) {
        log_info("redis: %d replica(s) of \"%s\" to read from", nreps, sw->master_name);
        sw->changed(sw->arg);
    }
}

/* ---- the order Sentinels are asked in ---- */

static void order_move(struct sentinel_watch *sw, int index, bool front)
{
    int pos = 0;
    while (pos < sw->n && sw->order[pos] != index)
        pos++;
    if (pos == sw->n)
        return;
    if (front) {
        memmove(&sw->order[1], &sw->order[0], (size_t)pos * sizeof(int));
        sw->order[0] = index;
    } else {
        memmove(&sw->order[pos], &sw->order[pos + 1], (size_t)(sw->n - pos - 1) * sizeof(int));
        sw->order[sw->n - 1] = index;
    }
}

/* ---- replies ---- */

static const redisReply *field_of(const redisReply *flat, const char *name)
{
    if (flat->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < flat->elements; i += 2)
        if (flat->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(flat->element[i]->str, name) == 0 &&
            flat->element[i + 1]->type == REDIS_REPLY_STRING)
            return flat->element[i + 1];
    return NULL;
}

static bool parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* SENTINEL get-master-addr-by-name: [ip, port] or nil. */
static void master_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct snode *nd = privdata;
    redisReply *reply = r;
    nd->has_master = false;
    if (!reply || nd->sw->freeing || ac != nd->cmd.ac)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING &&
        reply->element[0]->len < sizeof(nd->master.host) &&
        parse_port(reply->element[1]->str, &nd->master.port)) {
        snprintf(nd->master.host, sizeof(nd->master.host), "%s", reply->element[0]->str);
        nd->has_master = true;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis: Sentinel %s: SENTINEL get-master-addr-by-name %s: %s", nd->cmd.peer,
                 nd->sw->master_name, reply->str);
    }
}

/* SENTINEL replicas: an array of flat field lists; those down or
 * disconnected are left out. */
static int parse_replicas(const redisReply *reply, struct redis_addr *out)
{
    int n = 0;
    if (reply->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < reply->elements && n < SENTINEL_MAX_REPLICAS; i++) {
        const redisReply *ip = field_of(reply->element[i], "ip");
        const redisReply *port = field_of(reply->element[i], "port");
        const redisReply *flags = field_of(reply->element[i], "flags");
        if (!ip || !port || !flags || ip->len >= sizeof(out[n].host) ||
            strstr(flags->str, "s_down") || strstr(flags->str, "o_down") ||
            strstr(flags->str, "disconnected") || !parse_port(port->str, &out[n].port))
            continue;
        snprintf(out[n].host, sizeof(out[n].host), "%s", ip->str);
        n++;
    }
    return n;
}

/* The poll's second reply: decide with both. */
static void replicas_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct snode *nd = privdata;
    struct sentinel_watch *sw = nd->sw;
    redisReply *reply = r;
    if (!reply || sw->freeing || ac != nd->cmd.ac)
        return;
    nd->poll_sent_ms = 0;
    order_move(sw, nd->index, true); /* it answers: ask it first */
    if (!nd->has_master)
        return; /* this Sentinel does not know the master (yet) */
    struct redis_addr reps[SENTINEL_MAX_REPLICAS];
    int nreps = parse_replicas(reply, reps);
    struct redis_addr cur;
    bool known = sentinel_watch_master(sw, &cur);
    if (known && redis_addr_equal(&cur, &nd->master)) {
        take_replicas(sw, reps, nreps);
        return;
    }
    if (abandoned_recently(sw, &nd->master, time_now_ms()))
        return; /* a Sentinel that has not caught up with the failover */
    char source[400];
    snprintf(source, sizeof(source), "Sentinel %s", nd->cmd.peer);
    adopt(sw, &nd->master, reps, nreps, source);
}

/* +switch-master: "<name> <old ip> <old port> <new ip> <new port>". */
static void switch_message(struct snode *nd, const char *msg, size_t len)
{
    struct sentinel_watch *sw = nd->sw;
    char buf[600], name[256], oip[REDIS_CONN_HOST_MAX], nip[REDIS_CONN_HOST_MAX];
    int oport, nport;
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (sscanf(buf, "%255s %255s %d %255s %d", name, oip, &oport, nip, &nport) != 5 ||
        strcmp(name, sw->master_name) != 0 || nport < 1 || nport > 65535)
        return;
    struct redis_addr old = {.port = oport}, m = {.port = nport}, cur;
    snprintf(old.host, sizeof(old.host), "%s", oip);
    snprintf(m.host, sizeof(m.host), "%s", nip);
    bool known = sentinel_watch_master(sw, &cur);
    if (known && redis_addr_equal(&cur, &m))
        return;
    /* A late message about an older switch names an address given up
     * since: only a switch away from the master we know is news then. */
    if (known && !redis_addr_equal(&cur, &old) && abandoned_recently(sw, &m, time_now_ms()))
        return;
    char source[400];
    snprintf(source, sizeof(source), "+switch-master from Sentinel %s", nd->sub.peer);
    adopt(sw, &m, NULL, 0, source);
    /* Its replica list: asked of everyone soon. */
    sw->fast_until_ms = time_now_ms() + 2 * FAST_MAX_MS;
    sw->next_poll_ms = 0;
}

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct snode *nd = privdata;
    redisReply *reply = r;
    if (!reply || nd->sw->freeing || ac != nd->sub.ac || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "subscribe") == 0)
        redis_conn_ready(&nd->sub);
    else if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
        switch_message(nd, reply->element[2]->str, reply->element[2]->len);
}

/* ---- polls ---- */

static void poll_node(struct snode *nd, uint64_t now)
{
    if (!redis_conn_up(&nd->cmd) || nd->poll_sent_ms)
        return;
    redisAsyncCommand(nd->cmd.ac, master_cb, nd, "SENTINEL get-master-addr-by-name %s",
                      nd->sw->master_name);
    if (redisAsyncCommand(nd->cmd.ac, replicas_cb, nd, "SENTINEL replicas %s",
                          nd->sw->master_name) == REDIS_OK)
        nd->poll_sent_ms = now;
}

static void poll_round(struct sentinel_watch *sw, uint64_t now)
{
    bool fast = !sw->master_known || now < sw->fast_until_ms;
    if (fast) {
        for (int i = 0; i < sw->n; i++)
            poll_node(&sw->nodes[i], now);
        sw->next_poll_ms =
            now + (uint64_t)backoff_between_ms(FAST_MIN_MS, FAST_MAX_MS, arc4random());
        return;
    }
    for (int i = 0; i < sw->n; i++) {
        struct snode *nd = &sw->nodes[sw->order[i]];
        if (redis_conn_up(&nd->cmd)) {
            poll_node(nd, now);
            break;
        }
    }
    sw->next_poll_ms = now + POLL_MS;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sentinel_watch *sw = arg;
    uint64_t now = time_now_ms();
    for (int i = 0; i < sw->n; i++) {
        struct snode *nd = &sw->nodes[i];
        redis_conn_check(&nd->cmd, now);
        redis_conn_check(&nd->sub, now);
        if (nd->poll_sent_ms && now - nd->poll_sent_ms > (uint64_t)sw->timeout_ms) {
            nd->poll_sent_ms = 0;
            order_move(sw, i, false);
            redis_conn_drop(&nd->cmd, "did not answer SENTINEL get-master-addr-by-name");
        }
    }
    if (now >= sw->next_poll_ms)
        poll_round(sw, now);
}

/* A worker doubts the master: everyone is asked now, and often for a
 * while. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sentinel_watch *sw = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) == -1)
        return;
    pthread_mutex_lock(&sw->lock);
    bool doubt = sw->doubt_pending;
    sw->doubt_pending = false;
    pthread_mutex_unlock(&sw->lock);
    if (!doubt)
        return;
    uint64_t now = time_now_ms();
    bool was_fast = now < sw->fast_until_ms;
    sw->fast_until_ms = now + DOUBT_MS;
    if (!was_fast)
        poll_round(sw, now);
}

/* ---- the connections ---- */

#define NODE_OF(c) ((struct snode *)(c)->owner)

static int node_target(struct redis_conn *c, char *host, size_t hostlen, int *port, char *why,
                       size_t whylen)
{
    struct snode *nd = NODE_OF(c);
    snprintf(host, hostlen, "%s", nd->host);
    *port = nd->port;
    c->connect_timeout_ms = nd->sw->connect_timeout_ms;
    return 0;
}

static void auth_step(struct redis_conn *c)
{
    struct sentinel_watch *sw = NODE_OF(c)->sw;
    if (sw->password)
        redis_conn_step(c, NULL, false, "AUTH to", "AUTH %s", sw->password);
}

static void cmd_setup(struct redis_conn *c)
{
    auth_step(c);
}

static void sub_setup(struct redis_conn *c)
{
    auth_step(c);
    redis_conn_step_label(c, "SUBSCRIBE to");
    redisAsyncCommand(c->ac, sub_cb, NODE_OF(c), "SUBSCRIBE +switch-master");
}

static void cmd_up(struct redis_conn *c)
{
    struct snode *nd = NODE_OF(c);
    nd->poll_sent_ms = 0;
    /* A Sentinel back: ask it at once when nothing is known. */
    if (!nd->sw->master_known)
        poll_node(nd, time_now_ms());
}

static void cmd_down(struct redis_conn *c, bool was_up)
{
    struct snode *nd = NODE_OF(c);
    nd->poll_sent_ms = 0;
    order_move(nd->sw, nd->index, false);
}

static void sub_up(struct redis_conn *c)
{
}

static void sub_down(struct redis_conn *c, bool was_up)
{
}

static const struct redis_conn_ops cmd_ops = {
    .target = node_target, .setup = cmd_setup, .up = cmd_up, .down = cmd_down};
static const struct redis_conn_ops sub_ops = {
    .target = node_target, .setup = sub_setup, .up = sub_up, .down = sub_down};

/* ---- the watcher ---- */

struct sentinel_watch *sentinel_watch_new(struct event_base *base, const struct config *cfg,
                                          sentinel_changed_fn *changed, void *arg)
{
    struct sentinel_watch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return NULL;
    pthread_mutex_init(&sw->lock, NULL);
    sw->base = base;
    sw->changed = changed;
    sw->arg = arg;
    sw->wake_fd = -1;
    sw->timeout_ms = cfg->redis_timeout_ms;
    sw->connect_timeout_ms = cfg->redis_connect_timeout_ms;
    sw->n = (int)cfg->redis_sentinel_count;
    sw->master_name = strdup(cfg->redis_master_name ? cfg->redis_master_name : "");
    sw->password = cfg->redis_sentinel_password ? strdup(cfg->redis_sentinel_password) : NULL;
    sw->nodes = calloc((size_t)(sw->n > 0 ? sw->n : 1), sizeof(*sw->nodes));
    sw->dns = redis_dns_new(base);
    sw->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!sw->master_name || (cfg->redis_sentinel_password && !sw->password) || !sw->nodes ||
        !sw->dns || sw->wake_fd == -1)
        goto fail;
    sw->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, sw);
    sw->wake_ev = event_new(base, sw->wake_fd, EV_READ | EV_PERSIST, wake_cb, sw);
    if (!sw->tick_ev || !sw->wake_ev)
        goto fail;
    for (int i = 0; i < sw->n; i++) {
        struct snode *nd = &sw->nodes[i];
        nd->sw = sw;
        nd->index = i;
        sw->order[i] = i;
        snprintf(nd->host, sizeof(nd->host), "%s", cfg->redis_sentinels[i].host);
        nd->port = cfg->redis_sentinels[i].port;
        if (redis_conn_init(&nd->cmd, &cmd_ops, nd, base, sw->dns, "sentinel") == -1 ||
            redis_conn_init(&nd->sub, &sub_ops, nd, base, sw->dns, "sentinel subscriber") == -1)
            goto fail;
    }
    struct timeval tick = tv_from_ms(TICK_MS);
    evtimer_add(sw->tick_ev, &tick);
    event_add(sw->wake_ev, NULL);
    for (int i = 0; i < sw->n; i++) {
        redis_conn_restart(&sw->nodes[i].cmd);
        redis_conn_restart(&sw->nodes[i].sub);
    }
    return sw;
fail:
    sentinel_watch_free(sw);
    return NULL;
}

void sentinel_watch_free(struct sentinel_watch *sw)
{
    if (!sw)
        return;
    sw->freeing = true;
    bool resolving = false;
    for (int i = 0; sw->nodes && i < sw->n; i++) {
        resolving |= sw->nodes[i].cmd.resolving || sw->nodes[i].sub.resolving;
        redis_conn_free(&sw->nodes[i].cmd);
        redis_conn_free(&sw->nodes[i].sub);
    }
    ev_free(sw->tick_ev);
    ev_free(sw->wake_ev);
    if (sw->wake_fd != -1)
        close(sw->wake_fd);
    redis_dns_free(sw->base, sw->dns, resolving);
    free(sw->nodes);
    free(sw->master_name);
    free(sw->password);
    pthread_mutex_destroy(&sw->lock);
    free(sw);
}
