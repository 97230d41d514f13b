#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errf.h"
#include "ev.h"
#include "listener.h"
#include "log.h"
#include "redis_link.h"
#include "metrics.h"
#include "timeutil.h"
#include "worker.h"

struct admin {
    struct evhttp *http;
    struct event *accept_resume; /* ends an accept pause */
    struct worker *workers;
    int nworkers;
    bool draining;
};

/* evhttp owns the listener and hands its error callback the evhttp, not
 * us: the one admin's resume timer is found here. */
static struct event *accept_resume_ev;

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    evconnlistener_enable(arg);
}

/* accept() failed with more than a retriable error (libevent retries
 * EAGAIN, EINTR, ECONNABORTED itself): out of descriptors, most likely.
 * Left enabled, the listener would spin the main thread with a log line per
 * turn; it pauses like the workers' (listener.c). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    log_error("admin accept: %s; not accepting for %d ms", strerror(errno), LISTENER_PAUSE_MS);
    struct timeval tv = tv_from_ms(LISTENER_PAUSE_MS);
    evconnlistener_disable(l);
    evtimer_add(accept_resume_ev, &tv);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void healthz(struct evhttp_request *req, void *arg)
{
    reply_text(req, 200, "OK", "ok\n");
}

/* Ready = not draining and at least one worker can reach Redis (cached
 * records would still serve, but new sandboxes would get 503). */
static void readyz(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    if (__atomic_load_n(&a->draining, __ATOMIC_ACQUIRE)) {
        reply_text(req, 503, "Service Unavailable", "draining\n");
        return;
    }
    for (int i = 0; i < a->nworkers; i++) {
        struct redis_link *rl = __atomic_load_n(&a->workers[i].redis, __ATOMIC_ACQUIRE);
        if (rl && redis_link_connected(rl)) {
            reply_text(req, 200, "OK", "ready\n");
            return;
        }
    }
    reply_text(req, 503, "Service Unavailable", "redis unreachable\n");
}

static void metrics(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    struct metrics *all[1024];
    int n = a->nworkers < 1024 ? a->nworkers : 1024;
    for (int i = 0; i < n; i++)
        all[i] = &a->workers[i].metrics;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    metrics_render(b, all, n);
    evbuffer_add_printf(b,
                        "# HELP edgeproxy_draining 1 while draining.\n"
                        "# TYPE edgeproxy_draining gauge\nedgeproxy_draining %d\n",
                        a->draining ? 1 : 0);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

struct admin *admin_start(struct event_base *base, const struct config *cfg, struct worker *workers,
                          int nworkers, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->workers = workers;
    a->nworkers = nworkers;
    a->http = evhttp_new(base);
    if (!a->http)
        goto fail;
    int fd = listener_bind((const struct sockaddr *)&cfg->admin_addr, cfg->admin_addr_len,
                           cfg->admin_address, err, errlen);
    if (fd == -1)
        goto fail;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(a->http, fd);
    if (!bound) {
        errf(err, errlen, "admin %s: cannot accept", cfg->admin_address);
        goto fail;
    }
    struct evconnlistener *l = evhttp_bound_socket_get_listener(bound);
    a->accept_resume = evtimer_new(base, accept_resume_cb, l);
    if (!a->accept_resume) {
        errf(err, errlen, "admin %s: out of memory", cfg->admin_address);
        goto fail;
    }
    accept_resume_ev = a->accept_resume;
    evconnlistener_set_error_cb(l, accept_error_cb);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(a->http, "/healthz", healthz, a);
    evhttp_set_cb(a->http, "/readyz", readyz, a);
    evhttp_set_cb(a->http, "/metrics", metrics, a);
    return a;
fail:
    admin_free(a);
    return NULL;
}

void admin_set_draining(struct admin *a)
{
    if (a)
        __atomic_store_n(&a->draining, true, __ATOMIC_RELEASE);
}

void admin_set_config(struct admin *a, const struct config *cfg)
{
    (void)a;
    (void)cfg; /* nothing in the admin depends on reloadable keys yet */
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    ev_free(a->accept_resume);
    accept_resume_ev = NULL;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
