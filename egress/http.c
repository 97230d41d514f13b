/* Egress port 80: the HTTP/1.1 front end (http1/session.c) with this
 * route. Every request is decided on its own Host (a keep-alive connection
 * may switch hosts), through the same flow as a TLS connection's SNI; an
 * allowed one goes to the original destination (or where the Host's own
 * answers say, flow.c) through core/proxy.c, pooled per sandbox under the
 * tag "egress", as the client wrote it (ex->transparent: no X-Forwarded-*,
 * nothing taken out but hop-by-hop fields). Refused: 403 JSON with the
 * host; maxConnections: 429; no policy answer from Redis: 503.
 * Absolute-form targets are refused (the sandbox did not ask a proxy, and
 * their authority would win over Host); CONNECT and the HTTP/2 preface
 * never get here (the session answers 405 and 400). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "exchange.h"
#include "flow.h"
#include "head.h"
#include "policy.h"
#include "proxy.h"
#include "reply.h"
#include "session.h"
#include "worker.h"

/* A request's egress state (ex->route_state). Freed by the exchange's end
 * (route_finish), or later when that comes inside one of its own
 * callbacks (busy). */
struct egress_req {
    struct egress_flow flow;
    struct exchange *ex;
    int busy;
    bool finished;
    char host[256]; /* the Host as sent (cut), for the refusal */
    char pool_tag[sizeof("egress ") + INET6_ADDRSTRLEN];
};

#define REQ_OF(f) container_of(f, struct egress_req, flow)

static void req_hold(struct egress_flow *f)
{
    struct egress_req *r = REQ_OF(f);
    r->busy++;
    r->ex->ops->hold(r->ex);
}

static void req_release(struct egress_flow *f)
{
    struct egress_req *r = REQ_OF(f);
    struct exchange *ex = r->ex; /* the session outlives this release */
    if (--r->busy == 0 && r->finished)
        free(r);
    ex->ops->release(ex);
}

static void refused(struct egress_req *r)
{
    struct exchange *ex = r->ex;
    struct egress_flow *f = &r->flow;
    char msg[EGRESS_RULE_STRLEN + 64];
    struct reply rep = {.status = 403, .message = msg, .connection_limit = -1, .host = r->host};
    switch (f->d.by) {
    case EGRESS_BY_MAX_CONNECTIONS:
        rep.status = 429;
        rep.connection_limit = f->rec ? (long)f->rec->p->max_connections : -1;
        snprintf(msg, sizeof(msg), "too many open egress connections for this sandbox");
        break;
    case EGRESS_BY_UNAVAILABLE:
        rep.status = 503;
        rep.retry_after = 1;
        snprintf(msg, sizeof(msg), "egress policy unavailable, try again");
        break;
    default:
        snprintf(msg, sizeof(msg), "egress refused: %s", f->d.rule);
        break;
    }
    ex->ops->reply(ex, &rep);
}

static void req_decided(struct egress_flow *f)
{
    struct egress_req *r = REQ_OF(f);
    struct exchange *ex = r->ex;
    if (!f->allowed) {
        refused(r);
        return;
    }
    const char *sid = egress_flow_sandbox(f);
    const struct sockaddr *dst = (const struct sockaddr *)&f->dst;
    snprintf(ex->target.sandbox_id, sizeof(ex->target.sandbox_id), "%s", sid ? sid : f->src);
    ex->target.id_len = strlen(ex->target.sandbox_id);
    ex->target.port =
        ntohs(dst->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)dst)->sin6_port
                                         : ((const struct sockaddr_in *)dst)->sin_port);
    memcpy(&ex->up_addr, &f->dial, f->dial_len);
    ex->up_addr_len = f->dial_len;
    /* Pooled per sandbox (its id, else its address) and per source address
     * (a recycled address is another sandbox), under a tag no ingress pool
     * key has. */
    snprintf(r->pool_tag, sizeof(r->pool_tag), "egress %s", f->src);
    ex->up_pool_name = sid ? sid : f->src;
    ex->up_addr_text = f->dial_text;
    ex->up_pool_tag = r->pool_tag;
    proxy_start(ex);
}

/* A new policy refuses the request in flight: a 403 when nothing of the
 * response went out yet, else the connection is cut. */
static void req_revoke(struct egress_flow *f)
{
    struct exchange *ex = REQ_OF(f)->ex;
    if (ex->state == EX_ROUTING || ex->state == EX_DONE)
        return;
    if (!ex->resp_head_done && ex->state != EX_TUNNEL) {
        proxy_abort(ex);
        snprintf(f->d.rule, sizeof(f->d.rule), "%s", f->revoked);
        refused(REQ_OF(f));
        return;
    }
    ex->ops->reset(ex);
}

static const struct egress_flow_ops req_flow_ops = {
    .decided = req_decided,
    .revoke = req_revoke,
    .hold = req_hold,
    .release = req_release,
};

static void route(struct exchange *ex)
{
    struct egress *eg = ex->w->egress;
    const struct client_info *ci = ex->client;
    const struct head *h = ex->rh;
    struct egress_req *r = calloc(1, sizeof(*r));
    if (!r) {
        exchange_error(ex, 503, "out of memory");
        return;
    }
    ex->transparent = true;
    ex->route_state = r;
    r->ex = ex;
    size_t n = ex->authority_len < sizeof(r->host) ? ex->authority_len : sizeof(r->host) - 1;
    memcpy(r->host, ex->authority, n);
    egress_flow_init(&r->flow, eg, EGRESS_KIND_HTTP, &req_flow_ops,
                     (const struct sockaddr *)&ci->peer, (const struct sockaddr *)&ci->dst,
                     ci->dst_len);
    const char *url = head_str(h, h->url_off);
    if (h->url_len == 0 || (url[0] != '/' && !(h->url_len == 1 && url[0] == '*'))) {
        /* A client that takes this for a forward proxy: nothing more it
         * sends on the connection will be what it means. */
        struct reply rep = {.status = 400,
                            .message = "absolute-form request targets are refused on egress "
                                       "(this is not a forward proxy)",
                            .connection_limit = -1,
                            .close = true};
        ex->ops->reply(ex, &rep);
        return;
    }
    char name[EGRESS_NAME_MAX + 1];
    int len = egress_name_normalize(ex->authority, ex->authority_len, true, name, sizeof(name));
    egress_flow_decide(&r->flow, len > 0 ? name : NULL);
}

static void route_finish(struct exchange *ex)
{
    struct egress_req *r = ex->route_state;
    egress_flow_end(&r->flow);
    r->finished = true;
    if (r->busy == 0)
        free(r);
}

static void route_log(struct exchange *ex, uint64_t duration_us)
{
    struct egress_req *r = ex->route_state;
    egress_log_request(r ? &r->flow : NULL, ex, duration_us);
}

static const struct route_ops egress_route_ops = {
    .route = route,
    .finish = route_finish,
    .log = route_log,
};

int egress_accept_http(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    struct sockaddr_storage dst;
    socklen_t dst_len;
    if (egress_original_dst_or_refuse(w, &w->cfg->egress_http, fd, sa, &dst, &dst_len) == -1)
        return -1;
    return session_accept_routed(w, fd, sa, salen, (struct sockaddr *)&dst, dst_len,
                                 &egress_route_ops);
}
