#include "worker.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "access_log.h"
#include "egress.h"
#include "conn_limit.h"
#include "ev.h"
#include "h2.h"
#include "head.h"
#include "listener.h"
#include "redis_link.h"
#include "log.h"
#include "lookup.h"
#include "runtime.h"
#include "session.h"
#include "stream.h"
#include "pool.h"

static void drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    listener_stop(w);
    pool_close_idle(w->pool);
    struct list_node *n, *next;
    list_for_each_safe(n, next, &w->sessions) session_drain(container_of(n, struct session, link));
    list_for_each_safe(n, next, &w->h2_conns) h2_conn_drain(n);
    egress_drain(w->egress);
    if (w->session_count == 0)
        event_base_loopbreak(w->base);
}

void worker_apply_head_limits(struct worker *w)
{
    head_pool_set_limits(&w->heads, (uint32_t)w->cfg->client_max_head_bytes,
                         (uint32_t)w->cfg->client_max_headers,
                         (uint32_t)w->cfg->client_max_request_line);
}

static void apply_runtime(struct worker *w, struct runtime *rt)
{
    const struct config *old = w->cfg;
    access_log_flush(w); /* what is buffered belongs to the old file */
    w->rt = rt;
    w->cfg = &rt->cfg;
    /* Recycled head arenas have the old client limits. */
    worker_apply_head_limits(w);
    if (w->lookup)
        lookup_config_changed(w->lookup, old);
    egress_config_changed(w->egress);
    if (w->redis)
        redis_link_config_changed(w->redis, old);
    /* Pooled connections were made under the old policy; let new ones be
     * made under the new. */
    pool_close_idle(w->pool);
    __atomic_store_n(&w->applied_generation, rt->generation, __ATOMIC_RELEASE);
}

/* Woken by main: a new configuration generation, a drain, or both. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) == -1)
        return;
    struct runtime *rt = __atomic_exchange_n(&w->pending_rt, NULL, __ATOMIC_ACQ_REL);
    if (rt)
        apply_runtime(w, rt);
    if (__atomic_exchange_n(&w->topology_changed, false, __ATOMIC_ACQ_REL) && w->redis)
        redis_link_topology_changed(w->redis);
    if (__atomic_load_n(&w->drain_requested, __ATOMIC_ACQUIRE))
        drain(w);
}

void worker_session_gone(struct worker *w)
{
    if (w->draining && w->session_count == 0)
        event_base_loopbreak(w->base);
}

int worker_init(struct worker *w, int id, struct runtime *rt, const int *fds)
{
    memset(w, 0, sizeof(*w));
    list_init(&w->sessions);
    list_init(&w->h2_conns);
    w->id = id;
    w->rt = rt;
    w->cfg = &rt->cfg;
    w->applied_generation = rt->generation;
    worker_apply_head_limits(w);
    struct listener_spec specs[LISTENER_MAX];
    w->listener_count = listener_specs(&rt->cfg, specs);
    for (size_t i = 0; i < w->listener_count; i++) {
        w->listen_fds[i] = fds[i];
        w->slots[i] = (struct listener_slot){w, specs[i].kind, specs[i].index, specs[i].address};
    }
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    /* One thread per base and no evthread locking: the main thread talks
     * to a worker only through its eventfd. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!w->base || w->wake_fd == -1)
        return -1;
    w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w);
    if (w->wake_ev)
        event_add(w->wake_ev, NULL);
    w->pool = pool_new(w);
    if (!w->wake_ev || !w->pool)
        return -1;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct redis_link *rl = redis_link_new(w);
    __atomic_store_n(&w->redis, rl, __ATOMIC_RELEASE); /* /readyz reads it */
    w->lookup = rl ? lookup_new(w) : NULL;
    /* One instance's counts go to Redis once: from worker 0. */
    bool sync = w->id == 0 && w->cfg->limits_scope == CONFIG_LIMITS_GLOBAL;
    if (sync && rl)
        w->limit_sync = limits_sync_new(w);
    if (!w->lookup || (sync && !w->limit_sync) || egress_init(w) == -1 ||
        listener_start(w) == -1 ||
        access_log_worker_init(w) == -1) {
        log_error("worker %d: cannot start", w->id);
        exit(1);
    }
    event_base_dispatch(w->base);
    /* Drained: every session is gone. The caches and the sync go before
     * their link. */
    limits_sync_free(w->limit_sync);
    w->limit_sync = NULL;
    lookup_free(w->lookup);
    w->lookup = NULL;
    egress_free(w->egress);
    w->egress = NULL;
    __atomic_store_n(&w->redis, NULL, __ATOMIC_RELEASE);
    redis_link_free(rl);
    access_log_worker_free(w);
    pool_free(w->pool); /* its connections hold read buffers */
    w->pool = NULL;
    stream_thread_cleanup();
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

static void wake(struct worker *w)
{
    uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof(one)) == -1)
        log_error("worker %d: cannot wake it", w->id);
}

void worker_request_drain(struct worker *w)
{
    __atomic_store_n(&w->drain_requested, true, __ATOMIC_RELEASE);
    wake(w);
}

void worker_request_reload(struct worker *w, struct runtime *rt)
{
    __atomic_store_n(&w->pending_rt, rt, __ATOMIC_RELEASE);
    wake(w);
}

void worker_request_redis_topology(struct worker *w)
{
    __atomic_store_n(&w->topology_changed, true, __ATOMIC_RELEASE);
    wake(w);
}

void worker_free(struct worker *w)
{
    listener_stop(w);
    pool_free(w->pool);
    head_free_all(&w->heads);
    ev_free(w->wake_ev);
    if (w->wake_fd > 0)
        close(w->wake_fd);
    if (w->base)
        event_base_free(w->base);
}
