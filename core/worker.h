/* One worker = one thread = one event_base, with its own listening sockets
 * (SO_REUSEPORT), Redis connections, route cache and upstream pools. Workers
 * share nothing mutable on the request path (maxConnections counters and the
 * client.max_connections count aside, see conn_limit.h and listener.c). */
#ifndef EDGEPROXY_WORKER_H
#define EDGEPROXY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "head.h"
#include "list.h"
#include "listener.h"
#include "metrics.h"

struct event_base;
struct event;
struct lookup;
struct redis_link;
struct sentinel_watch;
struct limits_sync;
struct pool;
struct session;
struct head;
struct runtime;
struct access_log_buf;
struct egress;

/* The accept callback's argument: which worker, which listener. */
struct listener_slot {
    struct worker *w;
    enum listener_kind kind;
    size_t index;        /* LISTENER_INGRESS: into cfg->listeners */
    const char *address; /* for log lines (the config's; restart-only) */
};

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    const struct config *cfg;    /* == &rt->cfg */
    struct runtime *rt;          /* current generation */
    struct runtime *pending_rt;  /* set by main, taken on wake */
    unsigned applied_generation; /* read by main */
    bool drain_requested;        /* set by main */

    int listen_fds[LISTENER_MAX];
    struct event *accept_evs[LISTENER_MAX];
    struct listener_slot slots[LISTENER_MAX];
    size_t listener_count;
    struct event *accept_timer; /* ends an accept pause (listener.c) */
    int accept_paused;          /* why accepting is paused, 0 = it is not */

    struct redis_link *redis;        /* read by /readyz from the main thread */
    struct sentinel_watch *sentinel; /* Sentinel mode: main's watcher, else NULL */
    bool topology_changed;           /* set by main: the watcher learnt something */
    struct lookup *lookup;           /* the route cache, a client of redis */
    struct limits_sync *limit_sync;  /* worker 0, global maxConnections */
    struct egress *egress;           /* egress listeners' state (egress/), NULL without them */
    struct pool *pool;
    struct metrics metrics;

    int wake_fd; /* eventfd: main thread -> worker */
    struct event *wake_ev;
    bool draining;
    bool done; /* loop exited; read by main */

    struct list_node sessions; /* session.link: all open client sessions
                                  * (for drain), newest first */
    struct list_node h2_conns; /* h2_conn.link: the HTTP/2 connections */
    size_t session_count;      /* both kinds; stored atomically: main reads it */

    struct access_log_buf *access_log;

    struct head_pool heads; /* recycled request/response head arenas */
};

/* Sets the head pool's limits from w->cfg (after w->cfg changed). */
void worker_apply_head_limits(struct worker *w);

/* Creates the worker's event base and structures; the listening fds are
 * borrowed from `fds` (already bound, one per listener_specs entry). 0 ok,
 * -1 error. */
int worker_init(struct worker *w, int id, struct runtime *rt, const int *fds);
int worker_start(struct worker *w);
/* Thread-safe: asks the worker to stop accepting and finish its sessions. */
void worker_request_drain(struct worker *w);
/* Thread-safe: the worker switches to rt between two callbacks and then
 * sets applied_generation. */
void worker_request_reload(struct worker *w, struct runtime *rt);
/* Thread-safe: the Sentinel watcher learnt another master or replica list;
 * the worker's link looks at it between two callbacks. */
void worker_request_redis_topology(struct worker *w);
void worker_free(struct worker *w);

/* Called by session code when a session ends, so a draining worker can exit
 * once the last one is gone. */
void worker_session_gone(struct worker *w);

#endif
