/* Sentinel mode (SPEC section 10, README "Redis high availability"): one
 * watcher per process that knows which Redis is the master of
 * redis.master_name and which are its replicas, and tells the workers when
 * that changes. The workers' links connect where it says and check each
 * connection with ROLE themselves; when a check fails (the node says it is
 * a replica, or cannot be reached) they report a doubt, and the watcher
 * asks again at once.
 *
 * How it learns (the Sentinel client protocol, redis.io "Sentinel client
 * spec"):
 *   - a command connection to each Sentinel, asked
 *     `SENTINEL get-master-addr-by-name <name>` and `SENTINEL replicas
 *     <name>`: every second the first Sentinel that answers (moved to the
 *     front), every 100-300 ms (jittered) all of them while in doubt or
 *     while no master is known. During a failover only the leader knows the
 *     new master at first, so in doubt the first answer that names another
 *     node than the doubted one wins; an address given up in the last
 *     10 s is not taken back from a Sentinel that has not caught up;
 *   - a subscription to `+switch-master` on each Sentinel, taken at once;
 *   - replicas flagged s_down, o_down or disconnected are left out.
 * Connections are redis_conn.c's: names resolved with evdns, timeouts, the
 * jittered backoff, and AUTH with redis.sentinel_password.
 *
 * Threads: the watcher runs on one loop (the main thread's); the address
 * getters and sentinel_watch_doubt may be called from any thread, and the
 * `changed` callback runs on the watcher's loop (main then wakes each
 * worker, as it does for a reload). */
#ifndef EDGEPROXY_REDIS_SENTINEL_H
#define EDGEPROXY_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stdint.h>

#include "redis_conn.h"

struct event_base;
struct config;
struct sentinel_watch;

#define SENTINEL_MAX_REPLICAS 16

/* A Redis node as the Sentinels name it. */
struct redis_addr {
    char host[REDIS_CONN_HOST_MAX];
    int port;
};

bool redis_addr_equal(const struct redis_addr *a, const struct redis_addr *b);

/* Called on the watcher's loop after the master or the replica list
 * changed. */
typedef void sentinel_changed_fn(void *arg);

/* Starts watching on base with cfg's redis.sentinels, master_name,
 * sentinel_password, timeout_ms and connect_timeout_ms (copied: these need
 * a restart to change). NULL when out of memory. */
struct sentinel_watch *sentinel_watch_new(struct event_base *base, const struct config *cfg,
                                          sentinel_changed_fn *changed, void *arg);
/* On the watcher's loop, once no worker reads it any more. */
void sentinel_watch_free(struct sentinel_watch *sw);

/* Any thread: the master as last learnt; false while none is known. */
bool sentinel_watch_master(struct sentinel_watch *sw, struct redis_addr *out);
/* Any thread: up to max replicas into out; returns how many. */
int sentinel_watch_replicas(struct sentinel_watch *sw, struct redis_addr *out, int max);
/* Any thread: a connection to the master (as `bad`, when not NULL, named
 * it) failed its check or could not be made: ask the Sentinels again now,
 * and all of them every 100-300 ms for a while. */
void sentinel_watch_doubt(struct sentinel_watch *sw, const struct redis_addr *bad);

/* Master changes the watcher adopted since it started. */
uint64_t sentinel_watch_switches(struct sentinel_watch *sw);

#endif
