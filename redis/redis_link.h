/* redis/: everything that talks to Redis, one set per worker.
 *
 *   redis_link.c   the worker's two connections to Redis (data: GETs and the
 *                  heartbeat PUBLISH; subscriber: <prefix>invalidate and the
 *                  heartbeat channel): name resolution (evdns), setup (AUTH,
 *                  SELECT), readiness, liveness, reconnect with backoff
 *   cache.c        a generic cache of parsed records in front of a link: TTL,
 *                  negative TTL, stale grace, single flight, refresh-ahead,
 *                  pub/sub purge, the cache.max_entries bound; one instance
 *                  per record type (a descriptor says how keys are named and
 *                  values parsed)
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
    /* Purges may have been missed (a (re)subscription, new Redis
     * settings): treat everything cached as expired. */
    void (*expire_all)(struct redis_client *c);
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
    REDIS_DATA_DOWN = 0,   /* a GET now would fail */
    REDIS_DATA_SETTING_UP, /* connected, Redis is answering the setup:
                             * hold GETs back until data_ready (or
                             * data_abandoned) */
    REDIS_DATA_UP,         /* GETs go out */
};
enum redis_data_state redis_link_data_state(const struct redis_link *l);

/* Sends GET <redis.key_prefix><ns><id> on the data connection (which must
 * be UP). fn(ac, reply, privdata) is then called exactly once: with the
 * reply, or with reply NULL when the connection goes first (ac->errstr may
 * say why); privdata is borrowed until then. -1 when it cannot be sent
 * (counted as a Redis error): fn is never called. */
int redis_link_get(struct redis_link *l, const char *ns, const char *id, redisCallbackFn *fn,
                   void *privdata);

/* How GETs ended, for the connection's health and the error counter: a
 * reply that is not an error (the connection works); a failure (an error
 * reply, the connection lost, no connection in time: counted); no reply
 * within redis_link_timeout_ms (counted; several in a row drop and
 * reconnect the data connection, whose GETs in flight are then called back
 * with NULL before this returns). */
void redis_link_get_answered(struct redis_link *l);
void redis_link_get_failed(struct redis_link *l);
void redis_link_get_timed_out(struct redis_link *l);

/* How long a GET may take (redis.timeout_ms, read at every call). */
int redis_link_timeout_ms(const struct redis_link *l);

/* After a reload (w->cfg is the new config): when the Redis settings
 * changed, expires every client's cache (the new Redis may disagree with
 * the old one) and reconnects both connections. */
void redis_link_config_changed(struct redis_link *l, const struct config *old);

/* Is the data connection set up? Any thread may ask (/readyz). */
bool redis_link_connected(const struct redis_link *l);

#endif
