#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conn_limit.h"
#include "egress.h"
#include "errf.h"
#include "ev.h"
#include "log.h"
#include "session.h"
#include "timeutil.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096

size_t listener_specs(const struct config *cfg, struct listener_spec *out)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->listener_count; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        out[n++] = (struct listener_spec){.kind = LISTENER_INGRESS,
                                          .index = i,
                                          .address = l->address,
                                          .sa = (const struct sockaddr *)&l->addr,
                                          .len = l->addr_len};
    }
    const struct config_egress_listener *eg[] = {&cfg->egress_http, &cfg->egress_tls,
                                                 &cfg->egress_tcp};
    for (size_t k = 0; k < 3; k++)
        if (eg[k]->address)
            out[n++] = (struct listener_spec){
                .kind = LISTENER_EGRESS_HTTP + k,
                .address = eg[k]->address,
                .sa = (const struct sockaddr *)&eg[k]->addr,
                .len = eg[k]->addr_len,
                .transparent = cfg->egress_interception == CONFIG_EGRESS_TPROXY,
            };
    return n;
}

/* IP_TRANSPARENT before bind: nft `tproxy` only hands a connection to a
 * socket that has it (nf_tproxy_sk_is_transparent), and the accepted
 * socket, whose local address is the one the sandbox dialled, inherits it.
 * On an IPv6 socket IPV6_TRANSPARENT sets the same flag; both are set, so
 * that a dual-stack [::] socket takes IPv4 and IPv6 alike. 0, or -1 (errno:
 * EPERM without CAP_NET_ADMIN). */
static int set_transparent(int fd, int family)
{
    int one = 1;
    if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == -1)
        return -1;
    if (family == AF_INET6 && setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == -1)
        return -1;
    return 0;
}

static int bind_socket(const struct sockaddr *sa, socklen_t len, const char *name, int v6only,
                       bool transparent, char *err, size_t errlen)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return errf(err, errlen, "listener %s: socket: %s", name, strerror(errno));
    if (transparent && set_transparent(fd, sa->sa_family) == -1) {
        errf(err, errlen, "listener %s: IP_TRANSPARENT (egress.interception \"tproxy\"): %s%s",
             name, strerror(errno), errno == EPERM ? " (needs CAP_NET_ADMIN)" : "");
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same address: the kernel spreads new
     * connections across workers without a shared accept lock. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    if (bind(fd, sa, len) == -1) {
        errf(err, errlen, "listener %s: cannot bind: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, LISTEN_BACKLOG) == -1) {
        errf(err, errlen, "listener %s: cannot listen: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listener_bind(const struct sockaddr *sa, socklen_t len, const char *name, char *err,
                  size_t errlen)
{
    return bind_socket(sa, len, name, 1, false, err, errlen);
}

int listener_bind_spec(const struct listener_spec *spec, char *err, size_t errlen)
{
    return bind_socket(spec->sa, spec->len, spec->address, spec->kind == LISTENER_INGRESS,
                       spec->transparent, err, errlen);
}

/* ---- accepting ---- */

/* Client connections open in the whole process, every worker's: what
 * client.max_connections bounds. A slot is taken before accept(), so not
 * even two workers at once can pass the bound (HAProxy's maxconn). */
static uint32_t open_conns;
/* client.max_connections 0: the value derived from RLIMIT_NOFILE at start. */
static uint32_t derived_max;

enum accept_pause {
    ACCEPTING = 0,
    PAUSED_FDS,  /* accept() failed for want of descriptors or memory */
    PAUSED_FULL, /* client.max_connections are open */
};

/* Full: a paused worker looks for a free slot this often. The worker where
 * a connection closes resumes at once; another one learns it from here. */
#define ACCEPT_RECHECK_MS 100
/* Connections taken per wake-up: the event fires again for the rest, after
 * the other ready events had their turn. */
#define ACCEPT_BATCH 64

static uint32_t max_connections(const struct config *cfg)
{
    return cfg->client_max_connections > 0 ? (uint32_t)cfg->client_max_connections
                                           : __atomic_load_n(&derived_max, __ATOMIC_RELAXED);
}

static void accept_enable(struct worker *w, bool on)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        if (!w->accept_evs[i])
            continue;
        if (on)
            event_add(w->accept_evs[i], NULL);
        else
            event_del(w->accept_evs[i]);
    }
}

static void accept_pause(struct worker *w, enum accept_pause why, int ms)
{
    struct timeval tv = tv_from_ms(ms);
    w->accept_paused = why;
    accept_enable(w, false);
    evtimer_add(w->accept_timer, &tv);
    METRIC_INC(&w->metrics, accept_pauses[why == PAUSED_FULL]);
}

static void accept_resume(struct worker *w)
{
    w->accept_paused = ACCEPTING;
    evtimer_del(w->accept_timer);
    accept_enable(w, true);
}

static void accept_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->accept_paused == PAUSED_FULL &&
        __atomic_load_n(&open_conns, __ATOMIC_RELAXED) >= max_connections(w->cfg)) {
        struct timeval tv = tv_from_ms(ACCEPT_RECHECK_MS);
        evtimer_add(w->accept_timer, &tv);
        return;
    }
    accept_resume(w);
}

/* accept(2): errors of the pending connection itself, to be retried. */
static bool accept_error_transient(int err)
{
    switch (err) {
    case EAGAIN:
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

/* Each kind's front end takes the accepted socket (and owns it from then
 * on); -1: no connection made, its client.max_connections slot goes back.
 * The connection's end calls listener_conn_closed. */
typedef int accept_fn(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen);
static accept_fn *const accept_handlers[] = {
    [LISTENER_INGRESS] = session_accept,
    [LISTENER_EGRESS_HTTP] = egress_accept_http,
    [LISTENER_EGRESS_TLS] = egress_accept_tls,
    [LISTENER_EGRESS_TCP] = egress_accept_tcp,
};

static void accept_ready(evutil_socket_t lfd, short what, void *arg)
{
    struct listener_slot *slot = arg;
    struct worker *w = slot->w;
    for (int i = 0; i < ACCEPT_BATCH && w->accept_paused == ACCEPTING; i++) {
        if (!limits_take(&open_conns, max_connections(w->cfg))) {
            accept_pause(w, PAUSED_FULL, ACCEPT_RECHECK_MS);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int err = errno;
            limits_give(&open_conns);
            if (accept_error_transient(err))
                return;
            /* One line per pause, not per turn of the loop. */
            log_error("accept on %s: %s; not accepting for %d ms", slot->address, strerror(err),
                      LISTENER_PAUSE_MS);
            accept_pause(w, PAUSED_FDS, LISTENER_PAUSE_MS);
            return;
        }
        if (accept_handlers[slot->kind](w, slot->index, fd, (struct sockaddr *)&ss, (int)len) == -1)
            limits_give(&open_conns);
    }
}

void listener_conn_closed(struct worker *w)
{
    limits_give(&open_conns);
    if (w->accept_paused == PAUSED_FULL)
        accept_resume(w);
}

/* client.max_connections 0: derived once, by whichever worker starts first
 * (they all compute the same), before any worker accepts. */
static void derive_max_connections(const struct config *cfg)
{
    if (__atomic_load_n(&derived_max, __ATOMIC_ACQUIRE))
        return;
    struct rlimit rl;
    unsigned long long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : RLIM_INFINITY;
    int workers = config_worker_count(cfg);
    uint32_t expect = 0;
    struct listener_spec specs[LISTENER_MAX];
    uint32_t n =
        (uint32_t)config_derived_max_connections(nofile, workers, listener_specs(cfg, specs));
    if (__atomic_compare_exchange_n(&derived_max, &expect, n, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE) &&
        cfg->client_max_connections == 0)
        log_info("client.max_connections: %u, from the open-files limit %llu", n, nofile);
}

int listener_start(struct worker *w)
{
    derive_max_connections(w->cfg);
    w->accept_timer = evtimer_new(w->base, accept_timer_cb, w);
    if (!w->accept_timer)
        return -1;
    for (size_t i = 0; i < w->listener_count; i++) {
        w->accept_evs[i] =
            event_new(w->base, w->listen_fds[i], EV_READ | EV_PERSIST, accept_ready, &w->slots[i]);
        if (!w->accept_evs[i] || event_add(w->accept_evs[i], NULL) == -1)
            return -1;
    }
    return 0;
}

void listener_stop(struct worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        ev_free(w->accept_evs[i]);
        w->accept_evs[i] = NULL;
        if (w->listen_fds[i] != -1)
            close(w->listen_fds[i]);
        w->listen_fds[i] = -1;
    }
    ev_free(w->accept_timer);
    w->accept_timer = NULL;
    w->accept_paused = ACCEPTING; /* nothing left to resume */
}
