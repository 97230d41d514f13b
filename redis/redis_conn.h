/* One hiredis connection that looks after itself (see redis_link.h for what
 * lives in redis/): the worker's data, subscriber and replica connections
 * (redis_link.c) and the Sentinel watcher's (sentinel.c) are each one of
 * these, with a small table of operations saying where to connect and what
 * to send once connected.
 *
 * It goes round: ask the owner for the target (a name or an address, and a
 * port), resolve it with evdns on the loop (never getaddrinfo, which blocks
 * while a nameserver does not answer), connect to one of the addresses,
 * send the owner's setup commands (AUTH, SELECT, ROLE, ...), serve (`up`)
 * until it fails, reconnect. A failed try goes on to the resolution's next
 * address at once; after the last one it waits the backoff: 100 ms doubling
 * to 2 s, each wait drawn between half and all of it (backoff.h), so the
 * instances that lost a server together do not come back in the same
 * millisecond (the draw is per process: its workers come back together). Connecting and the setup are bounded by
 * connect_timeout_ms (hiredis 0.14 has no async timeouts: the owner's timer
 * calls redis_conn_check, and a connection given up is freed with
 * redisAsyncFree, since redisAsyncDisconnect waits for replies a hung server
 * never sends).
 *
 * Failed tries are logged the first time, then once per 30 unless the cause
 * changes: "redis: AUTH to 127.0.0.1:6379 failed: WRONGPASS ... (data
 * connection, try 1)". */
#ifndef EDGEPROXY_REDIS_CONN_H
#define EDGEPROXY_REDIS_CONN_H

#include <event2/util.h> /* struct evutil_addrinfo is a macro for struct addrinfo */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;
struct redis_conn;

#define REDIS_CONN_HOST_MAX 256
#define REDIS_CONN_STEPS 6

/* A setup reply's check beyond "not an error": 0 fine, -1 refused with the
 * reason in why (ROLE: "slave, not the master"). It may set
 * c->retry_in_ms to reconnect after that wait instead of the backoff. */
typedef int redis_conn_check_fn(struct redis_conn *c, const redisReply *reply, char *why,
                                size_t whylen);

/* What the owner says and hears. Each is called from the connection's own
 * event callbacks or from within a redis_conn_* call; none may free the
 * connection. */
struct redis_conn_ops {
    /* Where to connect now: host (a name or an address; an IPv6 address
     * without brackets) and port. -1 when there is nowhere to go yet, with
     * the reason in why: the try fails and is retried after the backoff. */
    int (*target)(struct redis_conn *c, char *host, size_t hostlen, int *port, char *why,
                  size_t whylen);
    /* Connected: send the setup (redis_conn_step for each command). With
     * no step the connection is up at once. */
    void (*setup)(struct redis_conn *c);
    /* The setup is done: the connection serves. */
    void (*up)(struct redis_conn *c);
    /* A try that connected (up, or with its setup under way) ended: lost,
     * refused, timed out or closed by the owner. Once per try. */
    void (*down)(struct redis_conn *c, bool was_up);
};

struct redis_conn {
    /* Set by the owner (redis_conn_init), then read-only for it. */
    const struct redis_conn_ops *ops;
    void *owner;
    struct event_base *base;
    struct evdns_base *dns;
    const char *kind;              /* in log lines: "data" ("data connection") */
    uint64_t *errors, *reconnects; /* the owner's counters, or NULL */
    int connect_timeout_ms;        /* the owner keeps it current */
    int retry_in_ms;               /* > 0: the next reconnect waits this
                                     * instead of the backoff (once) */
    /* The connection's own. */
    redisAsyncContext *ac;
    struct evdns_getaddrinfo_request *resolving;
    struct evutil_addrinfo *addrs;     /* the last resolution's answers */
    struct evutil_addrinfo *next_addr; /* tried next; NULL: resolve again */
    char host[REDIS_CONN_HOST_MAX];    /* this round's target */
    int port;
    bool connected;  /* up: written atomically (/readyz reads it) */
    bool failed;     /* this try's failure is counted */
    bool closing;    /* being freed: no more callbacks, no reconnect */
    bool told_down;  /* this try's `down` was called */
    bool tried;      /* this try got as far as a hiredis context */
    bool known_down; /* the last try failed, was dropped or was lost:
                      * nothing should wait for the next one's setup */
    int attempt;     /* rounds through the addresses that failed, for the
                     * backoff */
    int failures;    /* failed tries in a row */
    char failed_at[24];
    uint64_t setup_ms; /* when this try began (connect + setup bound) */
    int steps, steps_done;
    char step[REDIS_CONN_STEPS][24];
    redis_conn_check_fn *check[REDIS_CONN_STEPS];
    bool optional[REDIS_CONN_STEPS]; /* an error reply is ignored */
    char peer[340];                  /* "name:port (address)" for the log */
    struct event *reconnect_ev;
};

/* Prepares c (zeroed by the caller) on base; does not connect. -1 when out
 * of memory. dns is borrowed for c's life. */
int redis_conn_init(struct redis_conn *c, const struct redis_conn_ops *ops, void *owner,
                    struct event_base *base, struct evdns_base *dns, const char *kind);
/* Closes (replies in flight are called back with NULL first), tells
 * nothing. Safe on a c never initialised (zeroed). */
void redis_conn_free(struct redis_conn *c);

/* Connects now with a fresh target and resolution, the backoff reset
 * (after a reload, or when the owner learns the target moved). Closes the
 * current try first. */
void redis_conn_restart(struct redis_conn *c);
/* Closes and stays closed until redis_conn_restart. */
void redis_conn_stop(struct redis_conn *c);
/* Closes at once (replies in flight are called back with NULL) and
 * reconnects after the backoff (or retry_in_ms). Never from inside one of
 * this connection's hiredis callbacks. */
void redis_conn_drop(struct redis_conn *c, const char *why);
/* From one of its reply callbacks, where it cannot be freed: counts and
 * logs the failure (stage: "PUBLISH on"), no longer usable now; hiredis
 * closes it once the replies in flight are in, then it reconnects. */
void redis_conn_fail(struct redis_conn *c, const char *stage, const char *why);
/* The owner's timer, every 100 ms or so: a try not set up within
 * connect_timeout_ms is given up like a refused one. */
void redis_conn_check(struct redis_conn *c, uint64_t now_ms);

/* In ops->setup: sends one setup command, labelled for the log ("AUTH to",
 * "SELECT 3 on"); its reply must not be an error (unless optional) and
 * must pass check (NULL: anything goes). The connection is up once every
 * step is answered. A command that cannot be queued leaves its step
 * unanswered, for the timeout. */
void redis_conn_step(struct redis_conn *c, redis_conn_check_fn *check, bool optional,
                     const char *label, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A step the owner completes itself (SUBSCRIBE, by its confirmation):
 * labelled, nothing sent; the owner then calls redis_conn_ready. */
void redis_conn_step_label(struct redis_conn *c, const char *label);
/* The owner saw its own last step done. */
void redis_conn_ready(struct redis_conn *c);

/* Up: set up and serving. Any thread may ask. */
bool redis_conn_up(const struct redis_conn *c);
/* Connected and the setup under way (not failed). */
bool redis_conn_setting_up(const struct redis_conn *c);
/* The last try failed, was dropped or was lost, and none has been set up
 * since (a restart clears it too: a new target). */
bool redis_conn_known_down(const struct redis_conn *c);

/* The system resolver's settings (/etc/hosts, /etc/resolv.conf), for the
 * connections of one loop. NULL when out of memory. */
struct evdns_base *redis_dns_new(struct event_base *base);
/* After every connection using it is freed; `pending` when some of them
 * had a resolution under way (cancelled resolutions still call back from
 * the loop, which this runs once). */
void redis_dns_free(struct event_base *base, struct evdns_base *dns, bool pending);

#endif
