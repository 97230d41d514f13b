/* A worker's Redis link: the data connection (GETs for every cache, the
 * heartbeat PUBLISH), the subscriber connection (<prefix>invalidate and
 * this worker's heartbeat channel) and, in Sentinel mode with
 * redis.read_replicas, a replica connection for GETs while the master is
 * away; the caches attach to it as clients (see redis_link.h). Each
 * connection is a redis_conn (resolution, timeouts, backoff); this file
 * says where each goes, what it sends once connected and when it is no
 * longer to be trusted.
 *
 * Setup: AUTH (with a password), CLIENT SETNAME edgeproxy:<pid>:<worker>:
 * <kind> (so an operator, and the tests, can tell our connections in CLIENT
 * LIST; an error is ignored), then SELECT and a first heartbeat PUBLISH on
 * the data connection, SUBSCRIBE on the subscriber. In Sentinel mode
 * every connection also asks ROLE: the data and subscriber connections
 * must find `master`, the replica connection `slave`; a node that says
 * otherwise is left at once, the watcher is told (a doubt), and the
 * connection is made again 100-300 ms later with whatever the watcher then
 * knows. Without Sentinel the host of redis.url is resolved again on every
 * reconnect (a failover may move the name).
 *
 * Liveness: every 500 ms the data connection PUBLISHes to a channel only
 * this worker's subscriber listens to. An unanswered PUBLISH means the data
 * connection is dead; an unreceived heartbeat means the subscription is.
 * Either can die silently (partition, failover) without a FIN or RST. In
 * Sentinel mode each beat also asks ROLE on the data and replica
 * connections: a master demoted under us (Sentinel reconfigured it) is
 * left within a beat.
 *
 * The circuit (of the data connection, and of the replica connection): a
 * GET that times out (redis.timeout_ms) opens it: GETs stop going there and
 * lookups are answered at once from the cache, by a replica, or with 503,
 * instead of each waiting out its own timeout on a socket that may be dead.
 * One PING probes the connection (half-open); answered within the timeout,
 * the circuit closes; not, the connection is dropped and made again, and
 * that new connection's setup is the next probe. While a connection is
 * known down (its last try failed) nothing waits for it. */
#include "redis_link.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "ev.h"
#include "log.h"
#include "redis_conn.h"
#include "redis_reply.h"
#include "sentinel.h"
#include "timeutil.h"
#include "worker.h"

/* The link's timer: setup deadlines, probes and answers are judged at this
 * granularity; the heartbeat goes out every HEARTBEAT_TICKS of it. */
#define TICK_MS 50
#define HEARTBEAT_TICKS 10 /* 500 ms */
/* A node that says it has the wrong role is asked again after a wait in
 * this range (the Sentinel client protocol). */
#define WRONG_ROLE_MIN_MS 100
#define WRONG_ROLE_MAX_MS 300

/* A connection GETs go out on, with its circuit. */
struct reader {
    struct redis_conn c;
    bool suspect;           /* circuit open: a command timed out */
    uint64_t probe_sent_ms; /* a PING probe outstanding (half-open) */
    uint64_t role_sent_ms;  /* a heartbeat ROLE outstanding (Sentinel mode) */
};

struct redis_link {
    struct worker *w;
    struct reader data, replica;
    struct redis_conn sub;
    struct list_node clients; /* redis_client.link */
    struct evdns_base *dns;
    struct sentinel_watch *sentinel; /* Sentinel mode, else NULL */
    bool replica_on;                 /* the replica connection runs */
    int replica_pick;                /* which replica is tried next */
    char heartbeat_channel[96];
    char client_name[64];
    struct event *tick_ev;
    unsigned ticks;
    uint64_t publish_sent_ms; /* 0 when no PUBLISH is outstanding */
    uint64_t publish_answered_ms;
    uint64_t heartbeat_seen_ms;
    bool closing;
};

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata);

#define LINK_OF(conn) ((struct redis_link *)(conn)->owner)

/* ---- the clients ---- */

#define CLIENT_OF(n) container_of(n, struct redis_client, link)

enum client_event { DATA_READY, DATA_ABANDONED, EXPIRE_ALL, REVALIDATE_ALL };

/* Tells every client. (An op never detaches a client: redis_link.h.) */
static void clients_tell(struct redis_link *rl, enum client_event ev)
{
    struct list_node *n, *next;
    list_for_each_safe(n, next, &rl->clients)
    {
        struct redis_client *cl = CLIENT_OF(n);
        if (ev == DATA_READY)
            cl->ops->data_ready(cl);
        else if (ev == DATA_ABANDONED)
            cl->ops->data_abandoned(cl);
        else if (ev == EXPIRE_ALL)
            cl->ops->expire_all(cl);
        else
            cl->ops->revalidate_all(cl);
    }
}

/* A purge message goes to the client whose ns is the longest prefix of it
 * (redis_link.h); the rest of the message is the id. */
static void clients_purge(struct redis_link *rl, const char *msg, size_t len)
{
    struct redis_client *best = NULL;
    size_t best_len = 0;
    struct list_node *node;
    for (node = rl->clients.next; node != &rl->clients; node = node->next) {
        struct redis_client *cl = CLIENT_OF(node);
        size_t n = strlen(cl->ns);
        if (n <= len && memcmp(msg, cl->ns, n) == 0 && (!best || n > best_len)) {
            best = cl;
            best_len = n;
        }
    }
    if (best)
        best->ops->purge(best, msg + best_len, len - best_len);
}

void redis_link_attach(struct redis_link *rl, struct redis_client *c)
{
    list_insert_back(&rl->clients, &c->link);
}

void redis_link_detach(struct redis_client *c)
{
    list_unlink(&c->link);
}

/* ---- the circuit ---- */

static bool reader_usable(const struct reader *r)
{
    return r->c.ac && redis_conn_up(&r->c) && !r->suspect;
}

static enum redis_circuit reader_circuit(const struct reader *r)
{
    if (reader_usable(r))
        return REDIS_CIRCUIT_CLOSED;
    if ((r->c.ac && r->suspect && r->probe_sent_ms) || redis_conn_setting_up(&r->c))
        return REDIS_CIRCUIT_HALF_OPEN;
    return REDIS_CIRCUIT_OPEN;
}

static void circuit_publish(struct redis_link *rl)
{
    __atomic_store_n(&rl->w->metrics.redis_circuit, (int64_t)reader_circuit(&rl->data),
                     __ATOMIC_RELAXED);
}

static void probe_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct reader *rd = privdata;
    redisReply *reply = r;
    if (!reply || LINK_OF(&rd->c)->closing || ac != rd->c.ac)
        return;
    rd->probe_sent_ms = 0;
    if (reply->type == REDIS_REPLY_ERROR)
        return; /* the tick drops it: a probe must be answered */
    if (rd->suspect)
        log_info("redis: %s connection answers again, circuit closed", rd->c.kind);
    rd->suspect = false;
    circuit_publish(LINK_OF(&rd->c));
}

/* A command on rd timed out: stop sending there and probe it. */
static void reader_suspect(struct redis_link *rl, struct reader *rd)
{
    if (!rd->c.ac || !redis_conn_up(&rd->c) || rd->suspect)
        return;
    rd->suspect = true;
    log_warn("redis: %s connection did not answer within %d ms: circuit open, probing", rd->c.kind,
             rl->w->cfg->redis_timeout_ms);
    if (redisAsyncCommand(rd->c.ac, probe_cb, rd, "PING") == REDIS_OK)
        rd->probe_sent_ms = time_now_ms();
    circuit_publish(rl);
}

/* A connection's connect + setup bound: redis.connect_timeout_ms, or
 * redis.timeout_ms when longer (a request waits that long for a setup:
 * giving the setup up sooner would fail it for nothing). */
static int setup_timeout_ms(const struct config *cfg)
{
    return cfg->redis_connect_timeout_ms > cfg->redis_timeout_ms ? cfg->redis_connect_timeout_ms
                                                                 : cfg->redis_timeout_ms;
}

/* ---- where each connection goes ---- */

static void addr_to_target(const struct redis_addr *a, char *host, size_t hostlen, int *port)
{
    snprintf(host, hostlen, "%s", a->host);
    *port = a->port;
}

static int master_target(struct redis_conn *c, char *host, size_t hostlen, int *port, char *why,
                         size_t whylen)
{
    struct redis_link *rl = LINK_OF(c);
    const struct config *cfg = rl->w->cfg;
    c->connect_timeout_ms = setup_timeout_ms(cfg);
    if (!rl->sentinel) {
        snprintf(host, hostlen, "%s", cfg->redis_host);
        *port = cfg->redis_port;
        return 0;
    }
    struct redis_addr m;
    if (!sentinel_watch_master(rl->sentinel, &m)) {
        snprintf(why, whylen, "no master of \"%s\" known yet (asking the Sentinels)",
                 cfg->redis_master_name);
        return -1;
    }
    addr_to_target(&m, host, hostlen, port);
    return 0;
}

static int replica_target(struct redis_conn *c, char *host, size_t hostlen, int *port, char *why,
                          size_t whylen)
{
    struct redis_link *rl = LINK_OF(c);
    struct redis_addr reps[SENTINEL_MAX_REPLICAS];
    c->connect_timeout_ms = setup_timeout_ms(rl->w->cfg);
    int n = sentinel_watch_replicas(rl->sentinel, reps, SENTINEL_MAX_REPLICAS);
    if (n == 0) {
        snprintf(why, whylen, "no replica of \"%s\" known", rl->w->cfg->redis_master_name);
        return -1;
    }
    addr_to_target(&reps[(unsigned)rl->replica_pick % (unsigned)n], host, hostlen, port);
    return 0;
}

/* The node c is connected to, as the watcher names nodes. */
static void conn_addr(const struct redis_conn *c, struct redis_addr *a)
{
    snprintf(a->host, sizeof(a->host), "%s", c->host);
    a->port = c->port;
}

/* ---- ROLE (Sentinel mode) ---- */

/* "master", "slave" or "sentinel": the first element of a ROLE reply. */
static bool role_is(const redisReply *reply, const char *want)
{
    return reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
           reply->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(reply->element[0]->str, want) == 0;
}

static void role_name(const redisReply *reply, char *out, size_t n)
{
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_STRING)
        snprintf(out, n, "%.32s", reply->element[0]->str);
    else
        snprintf(out, n, "an unexpected reply");
}

static int check_role(struct redis_conn *c, const redisReply *reply, const char *want, char *why,
                      size_t whylen)
{
    char got[40];
    if (role_is(reply, want))
        return 0;
    role_name(reply, got, sizeof(got));
    snprintf(why, whylen, "it says %s, not %s", got, want);
    c->retry_in_ms = backoff_between_ms(WRONG_ROLE_MIN_MS, WRONG_ROLE_MAX_MS, arc4random());
    return -1;
}

static int check_master(struct redis_conn *c, const redisReply *reply, char *why, size_t whylen)
{
    return check_role(c, reply, "master", why, whylen);
}

static int check_replica(struct redis_conn *c, const redisReply *reply, char *why, size_t whylen)
{
    return check_role(c, reply, "slave", why, whylen);
}

/* The heartbeat's ROLE on a reader: still the role it was set up for? */
static void role_beat_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct reader *rd = privdata;
    struct redis_link *rl = LINK_OF(&rd->c);
    redisReply *reply = r;
    char why[96];
    if (!reply || rl->closing || ac != rd->c.ac)
        return;
    rd->role_sent_ms = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        redis_conn_fail(&rd->c, "ROLE on", reply->str);
        return;
    }
    int bad = rd == &rl->data ? check_master(&rd->c, reply, why, sizeof(why))
                              : check_replica(&rd->c, reply, why, sizeof(why));
    if (!bad)
        return;
    if (rd == &rl->replica)
        rl->replica_pick++; /* the next try goes to another replica */
    redis_conn_fail(&rd->c, "ROLE on", why);
}

/* ---- setup ---- */

static void name_step(struct redis_conn *c)
{
    struct redis_link *rl = LINK_OF(c);
    redis_conn_step(c, NULL, true, "CLIENT SETNAME on", "CLIENT SETNAME %s:%s", rl->client_name,
                    c == &rl->sub      ? "sub"
                    : c == &rl->data.c ? "data"
                                       : "replica");
}

static void auth_step(struct redis_conn *c)
{
    const struct config *cfg = LINK_OF(c)->w->cfg;
    if (cfg->redis_password)
        redis_conn_step(c, NULL, false, "AUTH to", "AUTH %s", cfg->redis_password);
}

/* SELECT even db 0: it is also how a Redis that wants a password says we
 * have none. The PUBLISH is the first heartbeat. */
static void data_setup(struct redis_conn *c)
{
    struct redis_link *rl = LINK_OF(c);
    const struct config *cfg = rl->w->cfg;
    char label[24];
    auth_step(c);
    name_step(c);
    snprintf(label, sizeof(label), "SELECT %d on", cfg->redis_db);
    redis_conn_step(c, NULL, false, label, "SELECT %d", cfg->redis_db);
    if (rl->sentinel)
        redis_conn_step(c, check_master, false, "ROLE on", "ROLE");
    redis_conn_step(c, NULL, false, "PUBLISH on", "PUBLISH %s 1", rl->heartbeat_channel);
}

/* Completed by the confirmation (subscribed); a refusal makes hiredis
 * close the connection (its disconnect callback). */
static void sub_setup(struct redis_conn *c)
{
    struct redis_link *rl = LINK_OF(c);
    auth_step(c);
    name_step(c);
    if (rl->sentinel)
        redis_conn_step(c, check_master, false, "ROLE on", "ROLE");
    redis_conn_step_label(c, "SUBSCRIBE to");
    redisAsyncCommand(c->ac, sub_cb, rl, "SUBSCRIBE %sinvalidate %s", rl->w->cfg->key_prefix,
                      rl->heartbeat_channel);
}

static void replica_setup(struct redis_conn *c)
{
    const struct config *cfg = LINK_OF(c)->w->cfg;
    char label[24];
    auth_step(c);
    name_step(c);
    snprintf(label, sizeof(label), "SELECT %d on", cfg->redis_db);
    redis_conn_step(c, NULL, false, label, "SELECT %d", cfg->redis_db);
    redis_conn_step(c, check_replica, false, "ROLE on", "ROLE");
}

/* ---- up and down ---- */

static void reader_reset(struct reader *rd)
{
    rd->suspect = false;
    rd->probe_sent_ms = 0;
    rd->role_sent_ms = 0;
}

static void data_up(struct redis_conn *c)
{
    struct redis_link *rl = LINK_OF(c);
    reader_reset(&rl->data);
    circuit_publish(rl);
    clients_tell(rl, DATA_READY);
}

/* The master's connection ended: what waited for its setup is answered
 * (from the caches' own timers), and in Sentinel mode the watcher is told
 * the master may have moved. */
static void data_down(struct redis_conn *c, bool was_up)
{
    struct redis_link *rl = LINK_OF(c);
    rl->publish_sent_ms = 0;
    reader_reset(&rl->data);
    circuit_publish(rl);
    if (!was_up && c->steps > 0 && !rl->closing)
        clients_tell(rl, DATA_ABANDONED);
    if (rl->sentinel && !rl->closing) {
        struct redis_addr a;
        conn_addr(c, &a);
        sentinel_watch_doubt(rl->sentinel, &a);
    }
}

static void sub_up(struct redis_conn *c)
{
    LINK_OF(c)->heartbeat_seen_ms = time_now_ms(); /* judged from now on */
}

static void sub_down(struct redis_conn *c, bool was_up)
{
    struct redis_link *rl = LINK_OF(c);
    if (rl->sentinel && !rl->closing) {
        struct redis_addr a;
        conn_addr(c, &a);
        sentinel_watch_doubt(rl->sentinel, &a);
    }
}

static void replica_up(struct redis_conn *c)
{
    reader_reset(&LINK_OF(c)->replica);
}

static void replica_down(struct redis_conn *c, bool was_up)
{
    struct redis_link *rl = LINK_OF(c);
    reader_reset(&rl->replica);
    if (!was_up)
        rl->replica_pick++; /* the next try goes to another replica */
}

static const struct redis_conn_ops data_ops = {
    .target = master_target, .setup = data_setup, .up = data_up, .down = data_down};
static const struct redis_conn_ops sub_ops = {
    .target = master_target, .setup = sub_setup, .up = sub_up, .down = sub_down};
static const struct redis_conn_ops replica_ops = {
    .target = replica_target, .setup = replica_setup, .up = replica_up, .down = replica_down};

/* ---- the subscriber ---- */

/* Invalidations published while we were not subscribed are lost: after
 * every (re)subscription, every cache revalidates what it holds on its next
 * use. The confirmation for <prefix>invalidate completes the subscriber's
 * setup. */
static void subscribed(struct redis_link *rl, const struct redis_push *push)
{
    rl->heartbeat_seen_ms = time_now_ms();
    if (redis_push_channel_is(push, rl->heartbeat_channel))
        return;
    clients_tell(rl, REVALIDATE_ALL);
    redis_conn_ready(&rl->sub);
    log_info("redis: worker %d subscribed to %sinvalidate on %s", rl->w->id, rl->w->cfg->key_prefix,
             rl->sub.peer);
}

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *rl = privdata;
    struct redis_push push;
    if (!r || rl->closing || ac != rl->sub.ac)
        return;
    redis_reply_push(r, &push);
    if (push.kind == REDIS_PUSH_SUBSCRIBED)
        subscribed(rl, &push);
    else if (push.kind == REDIS_PUSH_MESSAGE && redis_push_channel_is(&push, rl->heartbeat_channel))
        rl->heartbeat_seen_ms = time_now_ms();
    else if (push.kind == REDIS_PUSH_MESSAGE)
        clients_purge(rl, push.payload, push.payload_len);
}

/* ---- the timer: deadlines, probes, the heartbeat ---- */

static void publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *rl = privdata;
    redisReply *reply = r;
    if (!reply || rl->closing || ac != rl->data.c.ac)
        return;
    rl->publish_sent_ms = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* An answer, but no beat: the subscriber cannot be judged by it,
         * and a connection Redis refuses the heartbeat is not one we can
         * trust. */
        redis_conn_fail(&rl->data.c, "PUBLISH on", reply->str);
        return;
    }
    rl->publish_answered_ms = time_now_ms();
}

/* A reader's outstanding probe or ROLE past the timeout: dropped. Returns
 * true when it was. */
static bool reader_check(struct redis_link *rl, struct reader *rd, uint64_t now, uint64_t limit)
{
    const char *why = NULL;
    if (rd->probe_sent_ms && now - rd->probe_sent_ms > limit)
        why = "did not answer its probe";
    else if (rd->role_sent_ms && now - rd->role_sent_ms > limit)
        why = "did not answer ROLE";
    if (!why)
        return false;
    reader_reset(rd);
    redis_conn_drop(&rd->c, why);
    return true;
}

/* The heartbeat's ROLE on a reader that is up (Sentinel mode). */
static void reader_role_beat(struct reader *rd, uint64_t now)
{
    if (!rd->c.ac || !redis_conn_up(&rd->c) || rd->role_sent_ms)
        return;
    if (redisAsyncCommand(rd->c.ac, role_beat_cb, rd, "ROLE") == REDIS_OK)
        rd->role_sent_ms = now;
}

static void heartbeat(struct redis_link *rl, uint64_t now)
{
    uint64_t limit = (uint64_t)rl->w->cfg->redis_timeout_ms;
    if (rl->data.c.connected && rl->publish_sent_ms && now - rl->publish_sent_ms > limit) {
        rl->publish_sent_ms = 0;
        redis_conn_drop(&rl->data.c, "stopped answering");
        return;
    }
    /* The subscriber is judged only while the data connection demonstrably
     * works: a heartbeat published and answered, yet not received. */
    if (rl->sub.connected && rl->publish_answered_ms > rl->heartbeat_seen_ms &&
        rl->publish_answered_ms - rl->heartbeat_seen_ms > limit + TICK_MS * HEARTBEAT_TICKS) {
        rl->heartbeat_seen_ms = now;
        redis_conn_drop(&rl->sub, "stopped delivering messages");
        return;
    }
    if (rl->data.c.connected && !rl->publish_sent_ms && rl->sub.connected &&
        redisAsyncCommand(rl->data.c.ac, publish_cb, rl, "PUBLISH %s 1", rl->heartbeat_channel) ==
            REDIS_OK)
        rl->publish_sent_ms = now;
    if (rl->sentinel) {
        reader_role_beat(&rl->data, now);
        if (rl->replica_on)
            reader_role_beat(&rl->replica, now);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_link *rl = arg;
    const struct config *cfg = rl->w->cfg;
    uint64_t now = time_now_ms();
    uint64_t limit = (uint64_t)cfg->redis_timeout_ms;
    rl->data.c.connect_timeout_ms = rl->sub.connect_timeout_ms = rl->replica.c.connect_timeout_ms =
        setup_timeout_ms(cfg);
    redis_conn_check(&rl->data.c, now);
    redis_conn_check(&rl->sub, now);
    if (rl->replica_on) {
        redis_conn_check(&rl->replica.c, now);
        reader_check(rl, &rl->replica, now, limit);
    }
    reader_check(rl, &rl->data, now, limit);
    if (++rl->ticks % HEARTBEAT_TICKS == 0)
        heartbeat(rl, now);
    circuit_publish(rl);
}

/* ---- the link ---- */

/* The replica connection runs in Sentinel mode with redis.read_replicas
 * (a reload may turn that on or off); it connects once a replica is known
 * (redis_link_topology_changed). */
static void replica_start(struct redis_link *rl)
{
    bool want = rl->sentinel && rl->w->cfg->redis_read_replicas;
    struct redis_addr one;
    if (want && !rl->replica_on && sentinel_watch_replicas(rl->sentinel, &one, 1) > 0)
        redis_conn_restart(&rl->replica.c);
    else if (!want && rl->replica_on)
        redis_conn_stop(&rl->replica.c);
    __atomic_store_n(&rl->replica_on, want, __ATOMIC_RELAXED); /* /readyz reads it */
}

struct redis_link *redis_link_new(struct worker *w)
{
    struct redis_link *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->w = w;
    rl->sentinel = w->sentinel;
    list_init(&rl->clients);
    static unsigned instance;
    unsigned n = __atomic_fetch_add(&instance, 1, __ATOMIC_RELAXED);
    snprintf(rl->heartbeat_channel, sizeof(rl->heartbeat_channel), "%sheartbeat:%d:%d:%u",
             w->cfg->key_prefix, (int)getpid(), w->id, n);
    snprintf(rl->client_name, sizeof(rl->client_name), "edgeproxy:%d:%d:%u", (int)getpid(), w->id,
             n);
    rl->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, rl);
    rl->dns = redis_dns_new(w->base);
    if (!rl->tick_ev || !rl->dns ||
        redis_conn_init(&rl->data.c, &data_ops, rl, w->base, rl->dns, "data") == -1 ||
        redis_conn_init(&rl->sub, &sub_ops, rl, w->base, rl->dns, "subscriber") == -1 ||
        redis_conn_init(&rl->replica.c, &replica_ops, rl, w->base, rl->dns, "replica") == -1)
        goto fail;
    struct redis_conn *conns[] = {&rl->data.c, &rl->sub, &rl->replica.c};
    for (size_t i = 0; i < 3; i++) {
        conns[i]->errors = &w->metrics.redis_errors;
        conns[i]->reconnects = &w->metrics.redis_reconnects;
        conns[i]->connect_timeout_ms = setup_timeout_ms(w->cfg);
    }
    struct timeval tick = tv_from_ms(TICK_MS);
    evtimer_add(rl->tick_ev, &tick);
    circuit_publish(rl);
    /* In Sentinel mode the connections wait for a master to be known
     * (redis_link_topology_changed starts them). */
    struct redis_addr m;
    if (!rl->sentinel || sentinel_watch_master(rl->sentinel, &m)) {
        redis_conn_restart(&rl->data.c);
        redis_conn_restart(&rl->sub);
    }
    replica_start(rl);
    return rl;
fail:
    redis_link_free(rl);
    return NULL;
}

void redis_link_free(struct redis_link *rl)
{
    if (!rl)
        return;
    rl->closing = true;
    bool resolving = rl->data.c.resolving || rl->sub.resolving || rl->replica.c.resolving;
    redis_conn_free(&rl->data.c); /* GETs in flight are called back (NULL reply) */
    redis_conn_free(&rl->sub);
    redis_conn_free(&rl->replica.c);
    ev_free(rl->tick_ev);
    while (!list_empty(&rl->clients))
        list_unlink(list_first(&rl->clients));
    redis_dns_free(rl->w->base, rl->dns, resolving);
    free(rl);
}

enum redis_data_state redis_link_data_state(const struct redis_link *rl)
{
    if (reader_usable(&rl->data))
        return REDIS_DATA_UP;
    if (rl->replica_on && rl->w->cfg->redis_read_replicas && reader_usable(&rl->replica))
        return REDIS_DATA_UP;
    /* Connected, and Redis is answering the setup of a try that follows no
     * failed, dropped or lost one: a GET waits for that rather than failing
     * at once (not sent behind the setup commands: after a refused SELECT
     * it would read db 0). Otherwise the connection is known down: nothing
     * waits for it. */
    if (redis_conn_setting_up(&rl->data.c) && !redis_conn_known_down(&rl->data.c))
        return REDIS_DATA_SETTING_UP;
    return REDIS_DATA_DOWN;
}

static int reader_get(struct reader *rd, const struct config *cfg, const char *ns, const char *id,
                      redisCallbackFn *fn, void *privdata)
{
    if (!reader_usable(rd))
        return -1;
    return redisAsyncCommand(rd->c.ac, fn, privdata, "GET %s%s%s", cfg->key_prefix, ns, id) ==
                   REDIS_OK
               ? 0
               : -1;
}

int redis_link_get(struct redis_link *rl, const char *ns, const char *id, redisCallbackFn *fn,
                   void *privdata)
{
    const struct config *cfg = rl->w->cfg;
    if (reader_get(&rl->data, cfg, ns, id, fn, privdata) == 0)
        return REDIS_VIA_MASTER;
    if (rl->replica_on && cfg->redis_read_replicas &&
        reader_get(&rl->replica, cfg, ns, id, fn, privdata) == 0) {
        METRIC_INC(&rl->w->metrics, redis_replica_reads);
        return REDIS_VIA_REPLICA;
    }
    METRIC_INC(&rl->w->metrics, redis_errors);
    return -1;
}

int redis_link_command_argv(struct redis_link *rl, redisCallbackFn *fn, void *privdata, int argc,
                            const char **argv, const size_t *argvlen)
{
    if (!reader_usable(&rl->data) ||
        redisAsyncCommandArgv(rl->data.c.ac, fn, privdata, argc, argv, argvlen) != REDIS_OK)
        return -1;
    return 0;
}

static struct reader *reader_of(struct redis_link *rl, int via)
{
    return via == REDIS_VIA_REPLICA ? &rl->replica : &rl->data;
}

/* A reply, even a late one, shows the connection answers again. */
void redis_link_get_answered(struct redis_link *rl, int via)
{
    struct reader *rd = reader_of(rl, via);
    if (rd->suspect) {
        log_info("redis: %s connection answers again, circuit closed", rd->c.kind);
        rd->suspect = false;
        rd->probe_sent_ms = 0; /* its PING is answered in turn, harmlessly */
        circuit_publish(rl);
    }
}

void redis_link_get_failed(struct redis_link *rl, int via)
{
    METRIC_INC(&rl->w->metrics, redis_errors);
}

void redis_link_get_timed_out(struct redis_link *rl, int via)
{
    METRIC_INC(&rl->w->metrics, redis_errors);
    reader_suspect(rl, reader_of(rl, via));
}

int redis_link_timeout_ms(const struct redis_link *rl)
{
    return rl->w->cfg->redis_timeout_ms;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void redis_link_config_changed(struct redis_link *rl, const struct config *old)
{
    const struct config *cfg = rl->w->cfg;
    replica_start(rl);
    if (same_str(old->redis_host, cfg->redis_host) && old->redis_port == cfg->redis_port &&
        same_str(old->redis_password, cfg->redis_password) && old->redis_db == cfg->redis_db &&
        same_str(old->key_prefix, cfg->key_prefix))
        return;
    log_info("redis: settings changed, reconnecting worker %d to %s:%d", rl->w->id, cfg->redis_host,
             cfg->redis_port);
    clients_tell(rl, EXPIRE_ALL);
    redis_conn_restart(&rl->data.c);
    redis_conn_restart(&rl->sub);
    if (rl->replica_on)
        redis_conn_restart(&rl->replica.c);
}

/* Is c connected (or connecting, or about to) to `want`? */
static bool conn_at(const struct redis_conn *c, const struct redis_addr *want)
{
    struct redis_addr a;
    if (!c->ac && !c->resolving)
        return false; /* waiting out a backoff: go now */
    conn_addr(c, &a);
    return redis_addr_equal(&a, want);
}

void redis_link_topology_changed(struct redis_link *rl)
{
    struct redis_addr m, reps[SENTINEL_MAX_REPLICAS];
    if (!rl->sentinel || rl->closing)
        return;
    if (sentinel_watch_master(rl->sentinel, &m)) {
        if (!conn_at(&rl->data.c, &m)) {
            log_info("redis: worker %d: master of \"%s\" is %s:%d", rl->w->id,
                     rl->w->cfg->redis_master_name, m.host, m.port);
            redis_conn_restart(&rl->data.c);
        }
        if (!conn_at(&rl->sub, &m))
            redis_conn_restart(&rl->sub);
    }
    if (!rl->replica_on)
        return;
    int n = sentinel_watch_replicas(rl->sentinel, reps, SENTINEL_MAX_REPLICAS);
    for (int i = 0; i < n; i++)
        if (conn_at(&rl->replica.c, &reps[i]))
            return;
    redis_conn_restart(&rl->replica.c);
}

bool redis_link_connected(const struct redis_link *rl)
{
    if (redis_conn_up(&rl->data.c))
        return true;
    return __atomic_load_n(&rl->replica_on, __ATOMIC_RELAXED) && redis_conn_up(&rl->replica.c);
}
