/* A worker's Redis link: the data connection (GETs for every cache, the
 * heartbeat PUBLISH) and the subscriber connection (<prefix>invalidate and
 * this worker's heartbeat channel), with the caches attached to it as
 * clients (see redis_link.h).
 *
 * Each connection goes round: resolve redis.url's host, connect to one of
 * its addresses, set the connection up (AUTH; then SELECT and a first
 * heartbeat PUBLISH on the data connection, SUBSCRIBE on the subscriber),
 * serve (`connected`) until it fails, reconnect. The host is resolved with
 * evdns on the worker's loop, never with getaddrinfo (which blocks the
 * worker while a nameserver does not answer), and again on every reconnect
 * (a failover may move the name). A failed try goes on to the resolution's
 * next address at once, and after the last one waits the backoff.
 *
 * Liveness: the data connection PUBLISHes to a channel only this worker's
 * subscriber listens to. An unanswered PUBLISH means the data connection is
 * dead; an unreceived heartbeat means the subscription is. Either can die
 * silently (partition, failover) without a FIN or RST. GETs that time out
 * several times in a row (the caches report them) also drop the data
 * connection. */
#include "redis_link.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ev.h"
#include "log.h"
#include "redis_reply.h"
#include "timeutil.h"
#include "worker.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
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

/* One connection: data or subscriber. */
struct redis_conn {
    struct redis_link *rl;
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

struct redis_link {
    struct worker *w;
    struct redis_conn data, sub;
    struct list_node clients; /* redis_client.link */
    struct evdns_base *dns;   /* resolves redis.url's host */
    int consecutive_timeouts;
    char heartbeat_channel[96];
    struct event *heartbeat_ev;
    uint64_t publish_sent_ms; /* 0 when no PUBLISH is outstanding */
    uint64_t publish_answered_ms;
    uint64_t heartbeat_seen_ms;
    bool closing;
};

static void conn_connect(struct redis_conn *c);
static void setup_cb(redisAsyncContext *ac, void *r, void *privdata);
static void sub_cb(redisAsyncContext *ac, void *r, void *privdata);

/* ---- the clients ---- */

#define CLIENT_OF(n) container_of(n, struct redis_client, link)

enum client_event { DATA_READY, DATA_ABANDONED, EXPIRE_ALL };

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
        else
            cl->ops->expire_all(cl);
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

/* ---- one connection ---- */

static void conn_forget_addrs(struct redis_conn *c)
{
    if (c->addrs)
        evutil_freeaddrinfo(c->addrs);
    c->addrs = c->next_addr = NULL;
}

static void conn_set_connected(struct redis_conn *c, bool up)
{
    __atomic_store_n(&c->connected, up, __ATOMIC_RELAXED); /* /readyz reads it */
}

static const char *conn_kind(const struct redis_conn *c)
{
    return c->subscriber ? "subscriber" : "data";
}

/* Where the connection is: what a failure now would have failed at. */
static const char *conn_stage(const struct redis_conn *c)
{
    if (c->steps == 0)
        return "connect to"; /* setup commands go out once connected */
    return c->steps_done < c->steps ? c->step[c->steps_done] : "connection to";
}

/* The data connection leaves its setup unfinished: the clients answer what
 * waited for it (from their own timers: not from inside this call). */
static void conn_abandon_setup(struct redis_conn *c)
{
    if (c->subscriber || c->steps == 0 || c->connected || c->rl->closing)
        return;
    clients_tell(c->rl, DATA_ABANDONED);
}

/* Counts a failed try, logged the first time, then once per
 * FAILURES_PER_LOG tries unless the cause changes: not a line per try. */
static void conn_failure(struct redis_conn *c, const char *stage, const char *subject,
                         const char *why)
{
    bool new_cause = strcmp(c->failed_at, stage) != 0;
    conn_abandon_setup(c);
    if (c->failures++ % FAILURES_PER_LOG == 0 || new_cause)
        log_warn("redis: %s %s failed: %s (%s connection, try %d)", stage, subject, why,
                 conn_kind(c), c->failures);
    snprintf(c->failed_at, sizeof(c->failed_at), "%s", stage);
    c->failed = true;
    METRIC_INC(&c->rl->w->metrics, redis_errors);
}

/* Redis accepted the setup: the connection serves from now on. */
static void conn_ready(struct redis_conn *c)
{
    struct redis_link *rl = c->rl;
    conn_set_connected(c, true);
    c->backoff_ms = RECONNECT_MIN_MS;
    if (c->failures)
        log_info("redis: %s connection to %s restored after %d failed tries", conn_kind(c), c->peer,
                 c->failures);
    c->failures = 0;
    c->failed_at[0] = '\0';
    conn_forget_addrs(c); /* the next reconnect resolves again */
    if (c->subscriber) {
        rl->heartbeat_seen_ms = time_now_ms(); /* judged from now on */
    } else {
        clients_tell(rl, DATA_READY);
    }
    METRIC_INC(&rl->w->metrics, redis_reconnects);
    log_debug("redis: %s connection to %s up", conn_kind(c), c->peer);
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_connect(arg);
}

static void schedule_reconnect(struct redis_conn *c)
{
    c->ac = NULL;
    conn_set_connected(c, false);
    if (!c->subscriber)
        c->rl->publish_sent_ms = 0;
    if (c->rl->closing)
        return;
    /* The resolution's next address at once; after the last, the backoff. */
    int ms = c->next_addr ? 0 : c->backoff_ms;
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(c->reconnect_ev, &tv);
    if (!c->next_addr)
        c->backoff_ms = c->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : c->backoff_ms * 2;
}

/* Frees the connection now; pending GETs are answered as failures (their
 * callbacks get a NULL reply). */
static void conn_close(struct redis_conn *c)
{
    redisAsyncContext *ac = c->ac;
    conn_abandon_setup(c);
    if (c->resolving) {
        /* It still calls back, with EVUTIL_EAI_CANCEL: see resolved_cb. */
        evdns_getaddrinfo_cancel(c->resolving);
        c->resolving = NULL;
    }
    c->ac = NULL;
    conn_set_connected(c, false);
    if (!c->subscriber)
        c->rl->publish_sent_ms = 0;
    if (ac) {
        ac->data = NULL; /* its disconnect callback must not reschedule */
        redisAsyncFree(ac);
    }
}

/* Closes at once (pending GETs are answered as failures) and reconnects
 * with backoff. Never called from inside a hiredis callback. */
static void conn_drop(struct redis_conn *c, const char *why)
{
    log_warn("redis: %s connection %s, reconnecting", conn_kind(c), why);
    METRIC_INC(&c->rl->w->metrics, redis_errors);
    conn_close(c);
    schedule_reconnect(c);
}

/* Redis refused what this connection needs. Called from one of its reply
 * callbacks, where it cannot be freed: no longer usable now, closed by
 * hiredis once the replies in flight are in, and then on_disconnect
 * reconnects with backoff. */
static void conn_fail(struct redis_conn *c, const char *stage, const char *why)
{
    conn_failure(c, stage, c->peer, why);
    conn_set_connected(c, false);
    c->setup_ms = time_now_ms(); /* conn_check_setup bounds that wait */
    redisAsyncDisconnect(c->ac);
}

/* A connection Redis does not set up in time (a SYN into a black hole, a
 * server that stopped answering) is given up like a refused one. */
static void conn_check_setup(struct redis_conn *c, uint64_t now)
{
    int limit = c->rl->w->cfg->redis_timeout_ms;
    if (limit < SETUP_TIMEOUT_MIN_MS)
        limit = SETUP_TIMEOUT_MIN_MS;
    if (!c->ac || c->connected || now - c->setup_ms <= (uint64_t)limit)
        return;
    if (!c->failed) {
        char why[48];
        snprintf(why, sizeof(why), "no answer within %d ms", limit);
        conn_failure(c, conn_stage(c), c->peer, why);
    }
    conn_close(c);
    schedule_reconnect(c);
}

/* ---- the heartbeat ---- */

static void publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *rl = privdata;
    redisReply *reply = r;
    if (!reply || rl->closing || ac != rl->data.ac)
        return;
    rl->publish_sent_ms = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* An answer, but no beat: the subscriber cannot be judged by it,
         * and a connection Redis refuses the heartbeat is not one we can
         * trust. */
        conn_fail(&rl->data, "PUBLISH on", reply->str);
        return;
    }
    rl->publish_answered_ms = time_now_ms();
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_link *rl = arg;
    uint64_t now = time_now_ms();
    uint64_t limit = (uint64_t)rl->w->cfg->redis_timeout_ms;
    conn_check_setup(&rl->data, now);
    conn_check_setup(&rl->sub, now);
    if (rl->data.connected && rl->publish_sent_ms && now - rl->publish_sent_ms > limit) {
        rl->publish_sent_ms = 0;
        conn_drop(&rl->data, "stopped answering");
        return;
    }
    /* The subscriber is judged only while the data connection demonstrably
     * works: a heartbeat published and answered, yet not received. */
    if (rl->sub.connected && rl->publish_answered_ms > rl->heartbeat_seen_ms &&
        rl->publish_answered_ms - rl->heartbeat_seen_ms > limit + HEARTBEAT_MS) {
        rl->heartbeat_seen_ms = now;
        conn_drop(&rl->sub, "stopped delivering messages");
        return;
    }
    if (rl->data.connected && !rl->publish_sent_ms && rl->sub.connected &&
        redisAsyncCommand(rl->data.ac, publish_cb, rl, "PUBLISH %s 1", rl->heartbeat_channel) ==
            REDIS_OK)
        rl->publish_sent_ms = now;
}

/* ---- setup ---- */

static void setup_step(struct redis_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Names the next setup command for the log (replies come in order). */
static void setup_step(struct redis_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->step[c->steps++], sizeof(c->step[0]), fmt, ap);
    va_end(ap);
}

/* Connected: what must succeed before the connection serves. A command that
 * cannot be queued leaves its step unanswered, for conn_check_setup. */
static void conn_setup(struct redis_conn *c)
{
    const struct config *cfg = c->rl->w->cfg;
    if (cfg->redis_password) {
        setup_step(c, "AUTH to");
        redisAsyncCommand(c->ac, setup_cb, c, "AUTH %s", cfg->redis_password);
    }
    if (c->subscriber) {
        /* Completed by its confirmation (subscribed); a refusal makes
         * hiredis close the connection (on_disconnect). */
        setup_step(c, "SUBSCRIBE to");
        redisAsyncCommand(c->ac, sub_cb, c->rl, "SUBSCRIBE %sinvalidate %s", cfg->key_prefix,
                          c->rl->heartbeat_channel);
        return;
    }
    /* SELECT even db 0: it is also how a Redis that wants a password says
     * we have none. The PUBLISH is the first heartbeat. */
    setup_step(c, "SELECT %d on", cfg->redis_db);
    redisAsyncCommand(c->ac, setup_cb, c, "SELECT %d", cfg->redis_db);
    setup_step(c, "PUBLISH on");
    redisAsyncCommand(c->ac, setup_cb, c, "PUBLISH %s 1", c->rl->heartbeat_channel);
}

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_conn *c = privdata;
    redisReply *reply = r;
    if (!reply || ac != c->ac || c->failed || c->steps_done == c->steps)
        return;
    const char *step = c->step[c->steps_done++];
    if (reply->type == REDIS_REPLY_ERROR)
        conn_fail(c, step, reply->str);
    else if (c->steps_done == c->steps && !c->subscriber)
        conn_ready(c);
}

/* ---- the subscriber ---- */

/* Invalidations published while we were not subscribed are lost: after
 * every (re)subscription, every cache treats everything as stale. The
 * confirmation for <prefix>invalidate completes the subscriber's setup. */
static void subscribed(struct redis_link *rl, const struct redis_push *push)
{
    rl->heartbeat_seen_ms = time_now_ms();
    if (redis_push_channel_is(push, rl->heartbeat_channel))
        return;
    clients_tell(rl, EXPIRE_ALL);
    if (!rl->sub.connected) {
        rl->sub.steps_done = rl->sub.steps;
        conn_ready(&rl->sub);
    }
    log_info("redis: worker %d subscribed to %sinvalidate", rl->w->id, rl->w->cfg->key_prefix);
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

/* ---- connecting ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (!c || ac != c->ac)
        return;
    if (status != REDIS_OK) {
        conn_failure(c, "connect to", c->peer, ac->errstr);
        schedule_reconnect(c); /* hiredis frees ac */
        return;
    }
    conn_setup(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (!c || c->rl->closing || ac != c->ac)
        return;
    const char *why = status == REDIS_OK ? "closed" : ac->errstr;
    if (c->connected) {
        log_warn("redis: %s connection lost: %s", conn_kind(c), why);
        METRIC_INC(&c->rl->w->metrics, redis_errors);
    } else if (!c->failed) {
        conn_failure(c, conn_stage(c), c->peer, why); /* e.g. a refused SUBSCRIBE */
    }
    schedule_reconnect(c);
}

/* "127.0.0.1:6379", or "redis:6379 (10.0.0.5)": log lines keep the name. */
static void conn_set_peer(struct redis_conn *c, const char *addr)
{
    const struct config *cfg = c->rl->w->cfg;
    const char *fmt = strchr(cfg->redis_host, ':') ? "[%s]:%d" : "%s:%d";
    int n = snprintf(c->peer, sizeof(c->peer), fmt, cfg->redis_host, cfg->redis_port);
    if (strcmp(addr, cfg->redis_host) != 0 && n > 0 && (size_t)n < sizeof(c->peer))
        snprintf(c->peer + n, sizeof(c->peer) - (size_t)n, " (%s)", addr);
}

/* Connects to the numeric address (hiredis resolves what it is given with
 * a blocking getaddrinfo; an address needs no lookup). */
static void conn_connect_next(struct redis_conn *c)
{
    const struct config *cfg = c->rl->w->cfg;
    const struct evutil_addrinfo *ai = c->next_addr;
    char addr[64]; /* an IPv6 address with a %scope fits */
    c->next_addr = ai->ai_next;
    c->failed = false;
    c->steps = c->steps_done = 0;
    int rc = getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                         NI_NUMERICHOST);
    conn_set_peer(c, rc == 0 ? addr : "?");
    redisAsyncContext *ac = rc == 0 ? redisAsyncConnect(addr, cfg->redis_port) : NULL;
    if (!ac || ac->err) {
        conn_failure(c, "connect to", c->peer,
                     ac   ? ac->errstr
                     : rc ? gai_strerror(rc)
                          : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->setup_ms = time_now_ms();
    redisLibeventAttach(ac, c->rl->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void resolved_cb(int err, struct evutil_addrinfo *res, void *arg)
{
    struct redis_conn *c = arg;
    if (err == EVUTIL_EAI_CANCEL)
        return; /* conn_close gave it up: nothing here is its business */
    c->resolving = NULL;
    if (err || !res) {
        conn_failure(c, "resolving", c->rl->w->cfg->redis_host,
                     err ? evutil_gai_strerror(err) : "no address");
        schedule_reconnect(c);
        return;
    }
    c->addrs = c->next_addr = res;
    conn_connect_next(c);
}

/* IPv4 answers come first (evdns orders them so); an address or a name in
 * /etc/hosts is answered before evdns_getaddrinfo returns (NULL then). */
static void conn_resolve(struct redis_conn *c)
{
    const struct config *cfg = c->rl->w->cfg;
    struct evutil_addrinfo hints;
    char port[8];
    conn_forget_addrs(c);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", cfg->redis_port);
    c->resolving = evdns_getaddrinfo(c->rl->dns, cfg->redis_host, port, &hints, resolved_cb, c);
}

static void conn_connect(struct redis_conn *c)
{
    if (c->next_addr)
        conn_connect_next(c);
    else
        conn_resolve(c);
}

static void conn_restart(struct redis_conn *c)
{
    evtimer_del(c->reconnect_ev);
    conn_close(c);
    conn_forget_addrs(c); /* the host may have changed */
    c->backoff_ms = RECONNECT_MIN_MS;
    conn_connect(c);
}

static int conn_init(struct redis_link *rl, struct redis_conn *c, bool subscriber)
{
    c->rl = rl;
    c->subscriber = subscriber;
    c->backoff_ms = RECONNECT_MIN_MS;
    c->reconnect_ev = evtimer_new(rl->w->base, reconnect_cb, c);
    if (!c->reconnect_ev)
        return -1;
    conn_connect(c);
    return 0;
}

static void conn_free(struct redis_conn *c)
{
    if (!c->rl)
        return; /* never initialised */
    conn_close(c);
    conn_forget_addrs(c);
    ev_free(c->reconnect_ev);
}

/* ---- the resolver ---- */

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
 * those run before the base goes. redis_link_free calls this once the
 * worker's loop has stopped and the link's own events are gone. */
static void dns_free(struct redis_link *rl, bool cancelled)
{
    if (!rl->dns)
        return;
    if (cancelled)
        event_base_loop(rl->w->base, EVLOOP_NONBLOCK);
    evdns_base_free(rl->dns, 0);
}

/* ---- the link ---- */

struct redis_link *redis_link_new(struct worker *w)
{
    struct redis_link *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->w = w;
    list_init(&rl->clients);
    static unsigned instance;
    snprintf(rl->heartbeat_channel, sizeof(rl->heartbeat_channel), "%sheartbeat:%d:%d:%u",
             w->cfg->key_prefix, (int)getpid(), w->id,
             __atomic_fetch_add(&instance, 1, __ATOMIC_RELAXED));
    rl->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, rl);
    if (!rl->heartbeat_ev)
        goto fail;
    struct timeval hb = tv_from_ms(HEARTBEAT_MS);
    evtimer_add(rl->heartbeat_ev, &hb);
    rl->dns = dns_new(w->base);
    if (!rl->dns || conn_init(rl, &rl->data, false) == -1 || conn_init(rl, &rl->sub, true) == -1)
        goto fail;
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
    bool resolving = rl->data.resolving || rl->sub.resolving;
    conn_free(&rl->data); /* GETs in flight are called back (NULL reply) */
    conn_free(&rl->sub);
    ev_free(rl->heartbeat_ev);
    while (!list_empty(&rl->clients))
        list_unlink(list_first(&rl->clients));
    dns_free(rl, resolving);
    free(rl);
}

enum redis_data_state redis_link_data_state(const struct redis_link *rl)
{
    const struct redis_conn *c = &rl->data;
    if (c->ac && c->connected)
        return REDIS_DATA_UP;
    /* Connected, and Redis is answering the setup: a GET waits for that
     * rather than failing at once. Not sent behind the setup commands:
     * after a refused SELECT it would read db 0. */
    if (c->ac && !c->failed && c->steps > 0)
        return REDIS_DATA_SETTING_UP;
    return REDIS_DATA_DOWN;
}

int redis_link_get(struct redis_link *rl, const char *ns, const char *id, redisCallbackFn *fn,
                   void *privdata)
{
    if (!rl->data.ac || !rl->data.connected ||
        redisAsyncCommand(rl->data.ac, fn, privdata, "GET %s%s%s", rl->w->cfg->key_prefix, ns,
                          id) != REDIS_OK) {
        METRIC_INC(&rl->w->metrics, redis_errors);
        return -1;
    }
    return 0;
}

void redis_link_get_answered(struct redis_link *rl)
{
    rl->consecutive_timeouts = 0;
}

void redis_link_get_failed(struct redis_link *rl)
{
    METRIC_INC(&rl->w->metrics, redis_errors);
}

void redis_link_get_timed_out(struct redis_link *rl)
{
    METRIC_INC(&rl->w->metrics, redis_errors);
    if (++rl->consecutive_timeouts >= TIMEOUTS_BEFORE_RECONNECT && rl->data.ac &&
        rl->data.connected) {
        log_warn("redis: %d GETs timed out in a row, reconnecting", rl->consecutive_timeouts);
        rl->consecutive_timeouts = 0;
        /* Not redisAsyncDisconnect: it waits for the pending replies, which
         * a silent network cut never delivers. (Freeing the context calls
         * back every GET in flight.) */
        conn_drop(&rl->data, "stopped answering");
    }
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
    if (same_str(old->redis_host, cfg->redis_host) && old->redis_port == cfg->redis_port &&
        same_str(old->redis_password, cfg->redis_password) && old->redis_db == cfg->redis_db &&
        same_str(old->key_prefix, cfg->key_prefix))
        return;
    log_info("redis: settings changed, reconnecting worker %d to %s:%d", rl->w->id, cfg->redis_host,
             cfg->redis_port);
    clients_tell(rl, EXPIRE_ALL);
    conn_restart(&rl->data);
    conn_restart(&rl->sub);
}

bool redis_link_connected(const struct redis_link *rl)
{
    return __atomic_load_n(&rl->data.connected, __ATOMIC_RELAXED);
}
