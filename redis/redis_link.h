/* redis/: everything that talks to Redis, one set per worker (and one
 * watcher per process in Sentinel mode).
 *
 *   redis_conn.c   one hiredis connection that looks after itself: evdns
 *                  resolution, connect and setup timeouts, jittered
 *                  reconnect backoff, failure logging
 *   redis_link.c   the worker's connections to Redis (data: GETs and the
 *                  heartbeat PUBLISH; subscriber: <prefix>invalidate and the
 *                  heartbeat channel; in Sentinel mode a replica for reads
 *                  while the master is away): setup (AUTH, SELECT, ROLE),
 *                  readiness, liveness, the circuit
 *   sentinel.c     Sentinel mode: the process's watcher that finds the
 *                  master and the replicas and follows +switch-master
 *   cache.c        a generic cache of parsed records in front of a link: TTL,
 *                  negative TTL, stale grace, single flight, refresh-ahead,
 *                  pub/sub purge, revalidation after a resubscribe, the
 *                  cache.max_entries bound; one instance per record type (a
 *                  descriptor says how keys are named and values parsed)
 *   redis_reply.c  what a reply means (pure, fuzzed)
 *
 * What lives here may call common/, admin/ (log, metrics counters) and the
 * worker (its event_base, its config, its counters); never ingress/, http1/
 * or the request path. Record types live with their users and plug into
 * cache.c through a struct cache_desc: sandbox routes are ingress/lookup.c
 * over ingress/route_rec.c.
 *
 * This file: the link. A cache attaches to it as a redis_client, sends GETs
 * through it, and hears from it when the data connection becomes usable,
 * when purges may have been missed and when one arrives. */
#ifndef EDGEPROXY_REDIS_LINK_H
#define EDGEPROXY_REDIS_LINK_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <stddef.h>

#include "list.h"

struct worker;
struct config;
struct redis_link;
struct redis_client;

/* What a client (a cache) hears. Each is called from the link's own event
 * callbacks, or from within redis_link_get_timed_out and
 * redis_link_config_changed; none may free the link or detach another
 * client. */
struct redis_client_ops {
    /* The data connection is set up: GETs held back for it may go now. */
    void (*data_ready)(struct redis_client *c);
    /* The data connection's setup failed: GETs held back for it will never
     * go out. Must not run request callbacks (the link is in the middle of
     * closing): answer them later, from a timer. */
    void (*data_abandoned)(struct redis_client *c);
    /* New Redis settings (a reload): the new Redis may disagree with the
     * old one, treat everything cached as expired. */
    void (*expire_all)(struct redis_client *c);
    /* Purges may have been missed (a (re)subscription, after a restart or
     * a failover): everything cached is to be checked again on its next
     * use, once (not dropped: no GET storm). */
    void (*revalidate_all)(struct redis_client *c);
    /* PUBLISH <prefix>invalidate <ns><id>: the record of `id` (the
     * message after the client's ns; binary, len bytes) changed. */
    void (*purge)(struct redis_client *c, const char *id, size_t len);
};

/* A client of the link, embedded in it (the cache). */
struct redis_client {
    struct list_node link; /* on the link's clients; on none when detached */
    const struct redis_client_ops *ops;
    /* Its purge messages start with this. A message goes to the client
     * with the longest ns that starts it, so "" (sandbox ids, as published
     * since the start) and "egress:" (SPEC section 9) live side by side. */
    const char *ns;
};

/* Starts connecting both connections on w->base with w->cfg's redis.*
 * settings; w->cfg is read again at every (re)connect. NULL on failure. */
struct redis_link *redis_link_new(struct worker *w);
/* Closes both connections: every GET still in flight is called back with
 * a NULL reply first. Detaches the clients still attached. */
void redis_link_free(struct redis_link *l);

/* c (ops and ns set) hears from l until redis_link_detach(c). */
void redis_link_attach(struct redis_link *l, struct redis_client *c);
/* Safe when not attached, and after the link was freed. */
void redis_link_detach(struct redis_client *c);

enum redis_data_state {
    REDIS_DATA_DOWN = 0,   /* a GET now would fail: answer at once */
    REDIS_DATA_SETTING_UP, /* the master's connection is being set up (not
                            * after a failed try): hold GETs back until
                            * data_ready (or data_abandoned) */
    REDIS_DATA_UP,         /* GETs go out: to the master, or to a replica
                            * while the master is away */
};
enum redis_data_state redis_link_data_state(const struct redis_link *l);

/* Where a GET went: the link's health bookkeeping is per connection. */
enum redis_via {
    REDIS_VIA_MASTER = 0,  /* the data connection */
    REDIS_VIA_REPLICA = 1, /* the replica connection (Sentinel mode) */
};

/* Sends GET <redis.key_prefix><ns><id> to the master's data connection
 * when it is usable (set up, circuit closed), else to the replica
 * connection when redis.read_replicas allows and it is usable (counted as
 * a replica read). fn(ac, reply, privdata) is then called exactly once:
 * with the reply, or with reply NULL when the connection goes first
 * (ac->errstr may say why); privdata is borrowed until then. Returns where
 * it went (enum redis_via), or -1 when it cannot be sent (counted as a
 * Redis error): fn is never called. */
int redis_link_get(struct redis_link *l, const char *ns, const char *id, redisCallbackFn *fn,
                   void *privdata);

/* How GETs ended, for the health of the connection `via`: a reply that is
 * not an error (the connection works); a failure (an error reply, the
 * connection lost, no connection in time: counted); no reply within
 * redis_link_timeout_ms (counted): the connection's circuit opens, GETs
 * stop going there and a PING probes it; unanswered within the timeout,
 * the connection is dropped (its GETs in flight are then called back with
 * NULL, from the link's timer) and made again. */
void redis_link_get_answered(struct redis_link *l, int via);
void redis_link_get_failed(struct redis_link *l, int via);
void redis_link_get_timed_out(struct redis_link *l, int via);

/* Any other command for the master (argv, binary-safe), on the data
 * connection when it is usable: fn is then called once (reply NULL when
 * the connection goes first). -1 when it cannot be sent. */
int redis_link_command_argv(struct redis_link *l, redisCallbackFn *fn, void *privdata, int argc,
                            const char **argv, const size_t *argvlen);

/* How long a GET may take (redis.timeout_ms, read at every call). */
int redis_link_timeout_ms(const struct redis_link *l);

/* After a reload (w->cfg is the new config): when the Redis settings
 * changed, expires every client's cache (the new Redis may disagree with
 * the old one) and reconnects. */
void redis_link_config_changed(struct redis_link *l, const struct config *old);

/* Sentinel mode: the watcher learnt another master or replica list;
 * connections to a node that no longer has that role are made again at
 * once (also those waiting out a backoff). */
void redis_link_topology_changed(struct redis_link *l);

/* Can lookups be answered: the master's data connection set up, or (in
 * Sentinel mode with redis.read_replicas) a replica's? Any thread may ask
 * (/readyz). */
bool redis_link_connected(const struct redis_link *l);

/* The data connection's circuit, for /metrics: closed (GETs go out), open
 * (known down or not answering: lookups answered at once), half-open (a
 * probe, or a new connection's setup, under way). */
enum redis_circuit {
    REDIS_CIRCUIT_CLOSED = 0,
    REDIS_CIRCUIT_OPEN = 1,
    REDIS_CIRCUIT_HALF_OPEN = 2,
};

#endif
