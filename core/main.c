/* edgeproxy: loads the config, binds the listeners, starts the workers, and
 * handles signals and the admin endpoints on the main thread. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "conn_limit.h"
#include "egress_policy.h"
#include "listener.h"
#include "log.h"
#include "nft_rules.h"
#include "runtime.h"
#include "sentinel.h"
#include "timeutil.h"
#include "worker.h"

#define EDGEPROXY_VERSION "0.1.0"
#define DRAIN_POLL_MS 20

#define MAX_RETIRING 16
#define RETIRE_POLL_MS 100

struct main_ctx {
    struct event_base *base;
    const char *path;
    struct runtime *rt;                     /* current generation */
    struct runtime *retiring[MAX_RETIRING]; /* older ones, until unused */
    size_t nretiring;
    struct event *retire_ev;
    struct worker *workers;
    int nworkers;
    struct admin *admin;
    struct sentinel_watch *sentinel; /* Sentinel mode, else NULL */
    struct event *drain_delay_ev, *drain_poll_ev, *drain_deadline_ev;
    bool draining;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: edgeproxy --config FILE [--check]\n"
               "       edgeproxy egress-rules --config FILE --interface IF --policy FILE\n"
               "       edgeproxy --print-config\n"
               "       edgeproxy --version\n");
}

/* Every client connection costs a descriptor (two while proxied), and the
 * usual soft limit (1024) is far below what the hard limit allows: take the
 * hard limit, as HAProxy does, before client.max_connections is derived from
 * it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        log_warn("cannot raise the open-files limit from %llu to %llu: %s", (unsigned long long)was,
                 (unsigned long long)rl.rlim_max, strerror(errno));
}

static void drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct main_ctx *m = arg;
    for (int i = 0; i < m->nworkers; i++)
        if (!__atomic_load_n(&m->workers[i].done, __ATOMIC_ACQUIRE))
            return;
    log_info("drained, exiting");
    event_base_loopbreak(m->base);
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct main_ctx *m = arg;
    size_t open = 0;
    for (int i = 0; i < m->nworkers; i++) {
        open += __atomic_load_n(&m->workers[i].session_count, __ATOMIC_RELAXED);
        /* Reap the workers that are done: only the stuck ones are left
         * behind by _exit (ThreadSanitizer reports unjoined threads). */
        if (__atomic_load_n(&m->workers[i].done, __ATOMIC_ACQUIRE))
            pthread_join(m->workers[i].thread, NULL);
    }
    log_warn("drain timeout (%d ms) reached with %zu connections open, exiting",
             m->rt->cfg.drain_timeout_ms, open);
    fflush(stderr);
    _exit(0);
}

/* After the configured delay (time for the load balancer to see /readyz
 * fail): close the listeners and let in-flight requests finish. */
static void drain_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct main_ctx *m = arg;
    for (int i = 0; i < m->nworkers; i++)
        worker_request_drain(&m->workers[i]);
    struct timeval poll = tv_from_ms(DRAIN_POLL_MS),
                   deadline = tv_from_ms(m->rt->cfg.drain_timeout_ms);
    event_add(m->drain_poll_ev, &poll);
    event_add(m->drain_deadline_ev, &deadline);
}

/* Old generations are freed once every worker has switched to the current
 * one. A TLS handshake that started under an old generation holds its own
 * reference on that generation's contexts (tls.c), so how long handshakes
 * take does not matter here. */
static void retire_cb(evutil_socket_t fd, short what, void *arg)
{
    struct main_ctx *m = arg;
    for (int i = 0; i < m->nworkers; i++)
        if (__atomic_load_n(&m->workers[i].applied_generation, __ATOMIC_ACQUIRE) !=
            m->rt->generation) {
            struct timeval again = tv_from_ms(RETIRE_POLL_MS);
            event_add(m->retire_ev, &again);
            return;
        }
    for (size_t i = 0; i < m->nretiring; i++)
        runtime_free(m->retiring[i]);
    m->nretiring = 0;
}

static void reload(struct main_ctx *m)
{
    char err[512];
    if (m->nretiring == MAX_RETIRING) {
        log_error("SIGHUP: %d reloads are still settling; try again in a few seconds",
                  MAX_RETIRING);
        return;
    }
    struct runtime *next = runtime_load(m->path, m->rt->generation + 1, err, sizeof(err));
    if (!next) {
        log_error("SIGHUP: %s: %s; keeping the running configuration", m->path, err);
        return;
    }
    if (runtime_compatible(m->rt, next, err, sizeof(err)) == -1) {
        log_error("SIGHUP: %s: %s; keeping the running configuration", m->path, err);
        runtime_free(next);
        return;
    }
    m->retiring[m->nretiring++] = m->rt;
    m->rt = next;
    log_set_level(next->cfg.log_level); /* workers only read it */
    for (int i = 0; i < m->nworkers; i++)
        worker_request_reload(&m->workers[i], next);
    admin_set_config(m->admin, &next->cfg);
    log_info("SIGHUP: configuration reloaded from %s (generation %u)", m->path, next->generation);
    struct timeval now = tv_from_ms(DRAIN_POLL_MS);
    event_add(m->retire_ev, &now);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct main_ctx *m = arg;
    if (sig == SIGHUP) {
        reload(m);
        return;
    }
    if (m->draining) {
        log_info("%s again while draining: still draining", strsignal((int)sig));
        return;
    }
    m->draining = true;
    log_info("%s: draining (readiness off, listeners close in %d ms)", strsignal((int)sig),
             m->rt->cfg.drain_delay_ms);
    admin_set_draining(m->admin);
    struct timeval delay = tv_from_ms(m->rt->cfg.drain_delay_ms);
    event_add(m->drain_delay_ev, &delay);
}

/* The Sentinel watcher learnt another master or replica list: each worker
 * looks at it between two of its callbacks (as with a reload). */
static void topology_changed(void *arg)
{
    struct main_ctx *m = arg;
    for (int i = 0; i < m->nworkers; i++)
        worker_request_redis_topology(&m->workers[i]);
}

/* One bound socket per listener per worker. Exits on the first failure with
 * the address in the message. */
static int bind_all(struct main_ctx *m, int *fds)
{
    char err[256];
    struct listener_spec specs[LISTENER_MAX];
    size_t n = listener_specs(&m->rt->cfg, specs);
    for (int w = 0; w < m->nworkers; w++)
        for (size_t l = 0; l < n; l++) {
            int fd = listener_bind_spec(&specs[l], err, sizeof(err));
            if (fd == -1) {
                fprintf(stderr, "edgeproxy: %s\n", err);
                return -1;
            }
            fds[w * LISTENER_MAX + l] = fd;
        }
    return 0;
}

/* The whole of a file ("-": standard input), at most `max` bytes; caller
 * frees. NULL with errno set (EFBIG when larger). */
static char *read_all(const char *path, size_t max, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = f ? malloc(max + 1) : NULL;
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = !f ? errno : !buf ? ENOMEM : ferror(f) ? EIO : n > max ? EFBIG : 0;

    if (f && f != stdin)
        fclose(f);
    if (bad) {
        free(buf);
        errno = bad;
        return NULL;
    }
    *len = n;
    return buf;
}

/* `edgeproxy egress-rules`: prints the nft ruleset of one sandbox interface
 * (common/nft_rules.h). 2 on a usage error, 1 on a bad file, 0 printed. */
static int egress_rules_main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"interface", required_argument, NULL, 'i'},
                                         {"policy", required_argument, NULL, 'P'},
                                         {NULL, 0, NULL, 0}};
    const char *cpath = NULL, *ifname = NULL, *ppath = NULL;
    struct config cfg;
    struct egress_policy *p = NULL;
    char err[512], *json, *rules;
    size_t len;
    int c;

    while ((c = getopt_long(argc, argv, "c:i:P:", opts, NULL)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'i')
            ifname = optarg;
        else if (c == 'P')
            ppath = optarg;
        else
            return usage(stderr), 2;
    }
    if (!cpath || !ifname || !ppath || optind != argc)
        return usage(stderr), 2;
    if (nft_rules_check_interface(ifname, err, sizeof(err)) == -1) {
        fprintf(stderr, "edgeproxy: --%s\n", err);
        return 2;
    }
    if (config_load_file(cpath, &cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "edgeproxy: %s: %s\n", cpath, err);
        return 1;
    }
    json = read_all(ppath, 1 << 20, &len);
    if (!json) {
        fprintf(stderr, "edgeproxy: %s: %s\n", ppath,
                errno == EFBIG ? "larger than 1048576 bytes" : strerror(errno));
        config_free(&cfg);
        return 1;
    }
    if (egress_policy_parse(json, len, &p, err, sizeof(err)) == -1) {
        fprintf(stderr, "edgeproxy: %s: %s\n", ppath, err);
        free(json);
        config_free(&cfg);
        return 1;
    }
    rules = nft_rules_build(ifname, p, &cfg, &len, err, sizeof(err));
    c = rules && fwrite(rules, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
    if (!rules)
        fprintf(stderr, "edgeproxy: %s\n", err);
    free(rules);
    free(json);
    egress_policy_free(p);
    config_free(&cfg);
    return c;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "egress-rules") == 0)
        return egress_rules_main(argc - 1, argv + 1);

    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
        {"print-config", no_argument, NULL, 'p'}, {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:kpvh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'p':
            config_print_reference(stdout);
            return 0;
        case 'v':
            printf("edgeproxy %s\n", EDGEPROXY_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }
    static struct main_ctx m;
    char err[512];
    m.path = path;
    m.rt = runtime_load(path, 1, err, sizeof(err));
    if (!m.rt) {
        fprintf(stderr, "edgeproxy: %s: %s\n", path, err);
        return 1;
    }
    if (check) {
        printf("edgeproxy: %s: configuration ok\n", path);
        runtime_free(m.rt);
        return 0;
    }
    log_set_level(m.rt->cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Read buffers are 64 KiB evbuffer chains, freed once their bytes are
     * written. glibc would hand that memory back to the kernel after each
     * free (madvise) and fault it in again on the next read: a page fault
     * per 4 KiB of every body. Keep it: trim only past 64 MiB of slack. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    raise_fd_limit();

    m.nworkers = config_worker_count(&m.rt->cfg);
    limits_set_scope(m.rt->cfg.limits_scope); /* before any worker counts */
    int *fds = calloc((size_t)m.nworkers * LISTENER_MAX, sizeof(int));
    m.workers = calloc((size_t)m.nworkers, sizeof(*m.workers));
    m.base = event_base_new();
    if (!fds || !m.workers || !m.base) {
        fprintf(stderr, "edgeproxy: out of memory\n");
        return 1;
    }
    if (bind_all(&m, fds) == -1)
        return 1;
    if (m.rt->cfg.admin_enabled) {
        m.admin = admin_start(m.base, &m.rt->cfg, m.workers, m.nworkers, err, sizeof(err));
        if (!m.admin) {
            fprintf(stderr, "edgeproxy: %s\n", err);
            return 1;
        }
    }
    for (int i = 0; i < m.nworkers; i++) {
        if (worker_init(&m.workers[i], i, m.rt, &fds[i * LISTENER_MAX]) == -1) {
            fprintf(stderr, "edgeproxy: cannot create worker %d\n", i);
            return 1;
        }
    }
    if (m.rt->cfg.redis_sentinel_count > 0) {
        /* One watcher for the process, on this thread's loop; the workers
         * read what it learns (sentinel.h). */
        m.sentinel = sentinel_watch_new(m.base, &m.rt->cfg, topology_changed, &m);
        if (!m.sentinel) {
            fprintf(stderr, "edgeproxy: cannot start the Sentinel watcher: out of memory\n");
            return 1;
        }
        for (int i = 0; i < m.nworkers; i++)
            m.workers[i].sentinel = m.sentinel;
    }
    for (int i = 0; i < m.nworkers; i++) {
        if (worker_start(&m.workers[i]) == -1) {
            fprintf(stderr, "edgeproxy: cannot start worker %d: %s\n", i, strerror(errno));
            return 1;
        }
    }
    free(fds);
    struct event *sigs[4];
    int signums[4] = {SIGTERM, SIGINT, SIGHUP, 0};
    for (int i = 0; signums[i]; i++) {
        sigs[i] = evsignal_new(m.base, signums[i], signal_cb, &m);
        event_add(sigs[i], NULL);
    }
    m.drain_delay_ev = evtimer_new(m.base, drain_delay_cb, &m);
    m.drain_poll_ev = event_new(m.base, -1, EV_PERSIST, drain_poll_cb, &m);
    m.drain_deadline_ev = evtimer_new(m.base, drain_deadline_cb, &m);
    m.retire_ev = evtimer_new(m.base, retire_cb, &m);
    struct listener_spec specs[LISTENER_MAX];
    static const char *const kinds[] = {"", " (egress http)", " (egress tls)", " (egress tcp)"};
    for (size_t l = 0, n = listener_specs(&m.rt->cfg, specs); l < n; l++)
        log_info("listening on %s%s", specs[l].address, kinds[specs[l].kind]);
    if (m.sentinel)
        log_info("edgeproxy %s: %d workers, redis master \"%s\" through %zu Sentinels, admin %s",
                 EDGEPROXY_VERSION, m.nworkers, m.rt->cfg.redis_master_name,
                 m.rt->cfg.redis_sentinel_count,
                 m.rt->cfg.admin_enabled ? m.rt->cfg.admin_address : "off");
    else
        log_info("edgeproxy %s: %d workers, redis %s:%d, admin %s", EDGEPROXY_VERSION, m.nworkers,
                 m.rt->cfg.redis_host, m.rt->cfg.redis_port,
                 m.rt->cfg.admin_enabled ? m.rt->cfg.admin_address : "off");

    event_base_dispatch(m.base);

    for (int i = 0; i < m.nworkers; i++) {
        pthread_join(m.workers[i].thread, NULL);
        worker_free(&m.workers[i]);
    }
    for (int i = 0; signums[i]; i++)
        event_free(sigs[i]);
    event_free(m.drain_delay_ev);
    event_free(m.drain_poll_ev);
    event_free(m.drain_deadline_ev);
    event_free(m.retire_ev);
    admin_free(m.admin);
    sentinel_watch_free(m.sentinel); /* the workers are gone */
    event_base_free(m.base);
    free(m.workers);
    for (size_t i = 0; i < m.nretiring; i++)
        runtime_free(m.retiring[i]);
    runtime_free(m.rt);
    return 0;
}
