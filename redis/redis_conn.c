/* One self-reconnecting hiredis connection (redis_conn.h). */
#include "redis_conn.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backoff.h"
#include "ev.h"
#include "log.h"
#include "metrics.h"
#include "timeutil.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
/* Failed tries are logged once per this many (about a minute at the 2 s
 * backoff), and whenever the cause changes. */
#define FAILURES_PER_LOG 30

static void conn_connect(struct redis_conn *c);

static void count(uint64_t *counter)
{
    if (counter)
        METRIC_ADD_AT(counter, 1);
}

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

/* Where the try is: what a failure now would have failed at. */
static const char *conn_stage(const struct redis_conn *c)
{
    if (c->steps == 0)
        return "connect to"; /* setup commands go out once connected */
    return c->steps_done < c->steps ? c->step[c->steps_done] : "connection to";
}

/* The owner hears once per try that got a hiredis context. */
static void conn_tell_down(struct redis_conn *c)
{
    if (!c->tried || c->told_down || c->closing)
        return;
    c->told_down = true;
    c->ops->down(c, c->connected);
}

/* Counts a failed try, logged the first time, then once per
 * FAILURES_PER_LOG tries unless the cause changes: not a line per try. */
static void conn_failure(struct redis_conn *c, const char *stage, const char *subject,
                         const char *why)
{
    bool new_cause = strcmp(c->failed_at, stage) != 0;
    conn_tell_down(c);
    if (c->failures++ % FAILURES_PER_LOG == 0 || new_cause)
        log_warn("redis: %s %s failed: %s (%s connection, try %d)", stage, subject, why, c->kind,
                 c->failures);
    snprintf(c->failed_at, sizeof(c->failed_at), "%s", stage);
    c->failed = true;
    c->known_down = true;
    count(c->errors);
}

void redis_conn_ready(struct redis_conn *c)
{
    if (c->connected)
        return;
    c->steps_done = c->steps;
    c->known_down = false;
    conn_set_connected(c, true);
    c->attempt = 0;
    if (c->failures)
        log_info("redis: %s connection to %s restored after %d failed tries", c->kind, c->peer,
                 c->failures);
    c->failures = 0;
    c->failed_at[0] = '\0';
    conn_forget_addrs(c); /* the next reconnect resolves again */
    count(c->reconnects);
    log_debug("redis: %s connection to %s up", c->kind, c->peer);
    c->ops->up(c);
}

/* The random bits of try `attempt`'s wait: drawn once per process and
 * mixed with the attempt (a murmur3 finaliser), so the workers of one
 * process that lost Redis together come back together (a /readyz that says
 * ready finds every worker ready), while other instances draw other
 * waits. */
static uint32_t jitter_seed;

static void jitter_seed_draw(void)
{
    jitter_seed = arc4random();
}

static uint32_t process_jitter(int attempt)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, jitter_seed_draw);
    uint32_t h = jitter_seed ^ (uint32_t)attempt * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_connect(arg);
}

static void schedule_reconnect(struct redis_conn *c)
{
    c->ac = NULL;
    conn_set_connected(c, false);
    if (c->closing)
        return;
    /* The resolution's next address at once; after the last, the backoff
     * (or the wait the owner asked for). */
    int ms;
    if (c->retry_in_ms > 0) {
        ms = c->retry_in_ms;
        c->retry_in_ms = 0;
        conn_forget_addrs(c); /* the target may have moved meanwhile */
    } else if (c->next_addr) {
        ms = 0;
    } else {
        ms = backoff_jitter_ms(RECONNECT_MIN_MS, c->attempt + 1, RECONNECT_MAX_MS,
                               process_jitter(c->attempt + 1));
        c->attempt++;
    }
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(c->reconnect_ev, &tv);
}

/* Frees the try now; replies in flight are answered as failures (their
 * callbacks get a NULL reply). */
static void conn_close(struct redis_conn *c)
{
    redisAsyncContext *ac = c->ac;
    conn_tell_down(c);
    if (c->resolving) {
        /* It still calls back, with EVUTIL_EAI_CANCEL: see resolved_cb. */
        evdns_getaddrinfo_cancel(c->resolving);
        c->resolving = NULL;
    }
    c->ac = NULL;
    conn_set_connected(c, false);
    if (ac) {
        ac->data = NULL; /* its disconnect callback must not reschedule */
        redisAsyncFree(ac);
    }
}

void redis_conn_drop(struct redis_conn *c, const char *why)
{
    log_warn("redis: %s connection %s, reconnecting", c->kind, why);
    count(c->errors);
    c->known_down = true;
    evtimer_del(c->reconnect_ev);
    conn_close(c);
    schedule_reconnect(c);
}

void redis_conn_fail(struct redis_conn *c, const char *stage, const char *why)
{
    conn_failure(c, stage, c->peer, why);
    conn_set_connected(c, false);
    c->setup_ms = time_now_ms(); /* redis_conn_check bounds that wait */
    redisAsyncDisconnect(c->ac);
}

void redis_conn_check(struct redis_conn *c, uint64_t now)
{
    int limit = c->connect_timeout_ms;
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

/* ---- setup ---- */

static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_conn *c = privdata;
    redisReply *reply = r;
    if (!reply || ac != c->ac || c->failed || c->closing || c->steps_done == c->steps)
        return;
    int i = c->steps_done++;
    char why[128];
    if (reply->type == REDIS_REPLY_ERROR && !c->optional[i]) {
        redis_conn_fail(c, c->step[i], reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ERROR && c->check[i] &&
        c->check[i](c, reply, why, sizeof(why)) == -1) {
        redis_conn_fail(c, c->step[i], why);
        return;
    }
    if (c->steps_done == c->steps)
        redis_conn_ready(c);
}

static int step_add(struct redis_conn *c, const char *label)
{
    if (c->steps == REDIS_CONN_STEPS)
        return -1; /* a bug: REDIS_CONN_STEPS is the most any owner sends */
    snprintf(c->step[c->steps], sizeof(c->step[0]), "%s", label);
    return c->steps++;
}

void redis_conn_step(struct redis_conn *c, redis_conn_check_fn *check, bool optional,
                     const char *label, const char *fmt, ...)
{
    int i = step_add(c, label);
    if (i == -1)
        return;
    c->check[i] = check;
    c->optional[i] = optional;
    va_list ap;
    va_start(ap, fmt);
    redisvAsyncCommand(c->ac, setup_cb, c, fmt, ap);
    va_end(ap);
}

void redis_conn_step_label(struct redis_conn *c, const char *label)
{
    int i = step_add(c, label);
    if (i != -1) {
        c->check[i] = NULL;
        c->optional[i] = false;
    }
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
    c->ops->setup(c);
    if (c->steps == 0)
        redis_conn_ready(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (!c || c->closing || ac != c->ac)
        return;
    const char *why = status == REDIS_OK ? "closed" : ac->errstr;
    if (c->connected) {
        log_warn("redis: %s connection lost: %s", c->kind, why);
        count(c->errors);
        c->known_down = true;
        conn_tell_down(c);
    } else if (!c->failed) {
        conn_failure(c, conn_stage(c), c->peer, why); /* e.g. a refused SUBSCRIBE */
    }
    schedule_reconnect(c);
}

/* "127.0.0.1:6379", or "redis:6379 (10.0.0.5)": log lines keep the name. */
static void conn_set_peer(struct redis_conn *c, const char *addr)
{
    const char *fmt = strchr(c->host, ':') ? "[%s]:%d" : "%s:%d";
    int n = snprintf(c->peer, sizeof(c->peer), fmt, c->host, c->port);
    if (strcmp(addr, c->host) != 0 && n > 0 && (size_t)n < sizeof(c->peer))
        snprintf(c->peer + n, sizeof(c->peer) - (size_t)n, " (%s)", addr);
}

/* Connects to the numeric address (hiredis resolves what it is given with
 * a blocking getaddrinfo; an address needs no lookup). */
static void conn_connect_next(struct redis_conn *c)
{
    const struct evutil_addrinfo *ai = c->next_addr;
    char addr[64]; /* an IPv6 address with a %scope fits */
    c->next_addr = ai->ai_next;
    c->failed = false;
    c->told_down = false;
    c->tried = false;
    c->steps = c->steps_done = 0;
    int rc = getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                         NI_NUMERICHOST);
    conn_set_peer(c, rc == 0 ? addr : "?");
    redisAsyncContext *ac = rc == 0 ? redisAsyncConnect(addr, c->port) : NULL;
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
    c->tried = true;
    c->setup_ms = time_now_ms();
    redisLibeventAttach(ac, c->base);
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
        conn_failure(c, "resolving", c->host, err ? evutil_gai_strerror(err) : "no address");
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
    struct evutil_addrinfo hints;
    char port[8], why[128] = "";
    conn_forget_addrs(c);
    c->tried = false;
    if (c->ops->target(c, c->host, sizeof(c->host), &c->port, why, sizeof(why)) == -1) {
        snprintf(c->peer, sizeof(c->peer), "(none)");
        conn_failure(c, "finding", "a server", why);
        schedule_reconnect(c);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", c->port);
    c->resolving = evdns_getaddrinfo(c->dns, c->host, port, &hints, resolved_cb, c);
}

static void conn_connect(struct redis_conn *c)
{
    if (c->next_addr)
        conn_connect_next(c);
    else
        conn_resolve(c);
}

void redis_conn_stop(struct redis_conn *c)
{
    evtimer_del(c->reconnect_ev);
    conn_close(c);
    conn_forget_addrs(c);
    c->attempt = 0;
    c->retry_in_ms = 0;
}

void redis_conn_restart(struct redis_conn *c)
{
    evtimer_del(c->reconnect_ev);
    conn_close(c);
    conn_forget_addrs(c); /* the host may have changed */
    c->attempt = 0;
    c->retry_in_ms = 0;
    c->known_down = false;
    conn_connect(c);
}

int redis_conn_init(struct redis_conn *c, const struct redis_conn_ops *ops, void *owner,
                    struct event_base *base, struct evdns_base *dns, const char *kind)
{
    c->ops = ops;
    c->owner = owner;
    c->base = base;
    c->dns = dns;
    c->kind = kind;
    c->connect_timeout_ms = 1000;
    c->reconnect_ev = evtimer_new(base, reconnect_cb, c);
    return c->reconnect_ev ? 0 : -1;
}

void redis_conn_free(struct redis_conn *c)
{
    if (!c->ops)
        return; /* never initialised */
    c->closing = true;
    conn_close(c);
    conn_forget_addrs(c);
    ev_free(c->reconnect_ev);
    c->reconnect_ev = NULL;
}

bool redis_conn_up(const struct redis_conn *c)
{
    return __atomic_load_n(&c->connected, __ATOMIC_RELAXED);
}

bool redis_conn_known_down(const struct redis_conn *c)
{
    return c->known_down;
}

bool redis_conn_setting_up(const struct redis_conn *c)
{
    return c->ac && !c->connected && !c->failed && c->steps > 0;
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
 * Read once per loop. */
struct evdns_base *redis_dns_new(struct event_base *base)
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
 * those run before the base goes. Called once the loop has stopped and the
 * connections' own events are gone. */
void redis_dns_free(struct event_base *base, struct evdns_base *dns, bool pending)
{
    if (!dns)
        return;
    if (pending)
        event_base_loop(base, EVLOOP_NONBLOCK);
    evdns_base_free(dns, 0);
}
