/* A flow's way to a verdict (flow.h), and the open flows of each source
 * address, re-decided when their policy changes.
 *
 *   lookup   the source's policy from the cache (started at accept, so a
 *            TLS connection's lookup overlaps its ClientHello); no usable
 *            policy, or maxConnections reached: refused at once
 *   decide   common/egress_decide with the Host or SNI; a name rule that
 *            is what allows it (the address alone would not be) sends the
 *            name to our resolver: the original destination is dialled
 *            only when it is among the answers, else the first answer
 *            outside always_deny (the destination's family first)
 *   open     allowed flows sit on their source's list until they end; a
 *            new policy for the source (seen by the 1 s re-check or at once
 *            after a purge) that refuses one closes it (ops->revoke) */
#include "flow.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn_limit.h"
#include "log.h"
#include "policy.h"
#include "timeutil.h"
#include "worker.h"

void egress_format_endpoint(const struct sockaddr *sa, char *buf, size_t cap)
{
    struct cidr_addr a;
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (cidr_addr_from_sockaddr(sa, &a) == -1) {
        snprintf(buf, cap, "?");
        return;
    }
    port = cidr_sockaddr_port(sa);
    inet_ntop(a.family, a.addr, ip, sizeof(ip));
    snprintf(buf, cap, a.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

/* An address with the destination's port, as a sockaddr. */
static socklen_t sockaddr_of(const struct cidr_addr *a, uint16_t port_be,
                             struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (a->family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = port_be;
        memcpy(&s4->sin_addr, a->addr, 4);
        return sizeof(*s4);
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = port_be;
    memcpy(&s6->sin6_addr, a->addr, 16);
    return sizeof(*s6);
}

static uint16_t port_be_of(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                     : ((const struct sockaddr_in *)sa)->sin_port;
}

void egress_flow_init(struct egress_flow *f, struct egress *eg, enum egress_kind kind,
                      const struct egress_flow_ops *ops, const struct sockaddr *peer,
                      const struct sockaddr *dst, socklen_t dst_len)
{
    struct cidr_addr a;
    memset(f, 0, sizeof(*f));
    f->ops = ops;
    f->eg = eg;
    f->kind = kind;
    if ((size_t)dst_len > sizeof(f->dst))
        dst_len = sizeof(f->dst);
    memcpy(&f->dst, dst, dst_len);
    f->dst_len = dst_len;
    /* The policy's id: the canonical text (a v4-mapped peer on a [::]
     * listener is its IPv4 address), as the control plane writes it. */
    if (cidr_addr_from_sockaddr(peer, &a) == 0)
        inet_ntop(a.family, a.addr, f->src, sizeof(f->src));
    egress_format_endpoint(dst, f->dst_text, sizeof(f->dst_text));
    f->start_us = time_now_us();
}

const char *egress_flow_sandbox(const struct egress_flow *f)
{
    return f->rec && f->rec->p ? f->rec->p->sandbox_id : NULL;
}

static struct egress_env env_of(const struct config *cfg)
{
    return (struct egress_env){
        .always_deny = cfg->egress_always_deny,
        .always_deny_count = cfg->egress_always_deny_count,
        .nameservers = cfg->egress_nameservers,
        .nameserver_count = cfg->egress_nameserver_count,
    };
}

/* ---- the open flows of a source ---- */

static void source_maybe_free(struct egress_source *s)
{
    if (s->busy || !list_empty(&s->flows))
        return;
    cache_cancel(&s->cw);
    strmap_remove(&s->eg->sources, &s->node);
    free(s);
}

static void flow_register(struct egress_flow *f)
{
    struct egress *eg = f->eg;
    struct strmap_node *n = strmap_get(&eg->sources, f->src);
    struct egress_source *s;
    if (n) {
        s = container_of(n, struct egress_source, node);
    } else {
        size_t len = strlen(f->src);
        s = calloc(1, sizeof(*s) + len + 1);
        if (!s) {
            log_warn("egress: out of memory: the flow %s -> %s will not see policy changes", f->src,
                     f->dst_text);
            return;
        }
        s->eg = eg;
        memcpy(s->addr, f->src, len);
        list_init(&s->flows);
        strmap_put(&eg->sources, &s->node, s->addr);
    }
    list_insert_back(&s->flows, &f->link);
    f->source = s;
}

static void flow_unregister(struct egress_flow *f)
{
    struct egress_source *s = f->source;
    if (!s)
        return;
    list_unlink(&f->link);
    f->source = NULL;
    source_maybe_free(s);
}

/* ---- the verdict ---- */

static void finish(struct egress_flow *f, bool allow)
{
    f->decided = true;
    f->allowed = allow;
    if (!allow && f->limit_held) {
        limits_release(f->rec->limit);
        f->limit_held = false;
    }
    if (allow) {
        egress_format_endpoint((struct sockaddr *)&f->dial, f->dial_text, sizeof(f->dial_text));
        flow_register(f);
    }
    egress_count_decision(f->eg, f);
    f->ops->decided(f);
}

static void deny(struct egress_flow *f, enum egress_decided_by by, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void deny(struct egress_flow *f, enum egress_decided_by by, const char *fmt, ...)
{
    va_list ap;
    f->d.verdict = EGRESS_DENY;
    f->d.by = by;
    f->d.index = -1;
    va_start(ap, fmt);
    vsnprintf(f->d.rule, sizeof(f->d.rule), fmt, ap);
    va_end(ap);
    finish(f, false);
}

static void allow_dst(struct egress_flow *f)
{
    memcpy(&f->dial, &f->dst, f->dst_len);
    f->dial_len = f->dst_len;
    finish(f, true);
}

/* The name's answers: the destination if it is one of them, else an
 * answer outside always_deny, the destination's family first. */
static void pick(struct egress_flow *f, int status, const struct resolve_answer *a)
{
    const struct config *cfg = f->eg->w->cfg;
    struct cidr_addr d;
    if (status != RESOLVE_OK || cidr_addr_from_sockaddr((struct sockaddr *)&f->dst, &d) == -1) {
        deny(f, EGRESS_BY_UNRESOLVED, "%s has no address", f->name);
        return;
    }
    for (size_t i = 0; i < a->count; i++)
        if (a->addr[i].family == d.family &&
            memcmp(a->addr[i].addr, d.addr, d.family == AF_INET ? 4 : 16) == 0) {
            allow_dst(f);
            return;
        }
    long denied = -1;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < a->count; i++) {
            if ((a->addr[i].family == d.family) != (pass == 0))
                continue;
            long k = cidr_find(cfg->egress_always_deny, cfg->egress_always_deny_count, &a->addr[i]);
            if (k >= 0) {
                if (denied < 0)
                    denied = k;
                continue;
            }
            f->dial_len =
                sockaddr_of(&a->addr[i], port_be_of((struct sockaddr *)&f->dst), &f->dial);
            finish(f, true);
            return;
        }
    char net[CIDR_STRLEN];
    cidr_format(&cfg->egress_always_deny[denied], net, sizeof(net));
    deny(f, EGRESS_BY_ALWAYS_DENY, "always_deny %s (%s resolves there)", net, f->name);
}

static void on_resolved(struct resolve_waiter *wt, int status, const struct resolve_answer *a)
{
    struct egress_flow *f = container_of(wt, struct egress_flow, rw);
    f->ops->hold(f);
    f->resolving = false;
    pick(f, status, a);
    f->ops->release(f);
}

/* The policy is known and the owner asked: decide. */
static void run(struct egress_flow *f)
{
    if (f->decided || f->resolving)
        return;
    const struct egress_policy *p = f->rec->p;
    const char *name = f->name[0] ? f->name : NULL;
    struct egress_env env = env_of(f->eg->w->cfg);
    struct egress_decision bare;
    f->checked = f->rec->serial;
    if (egress_decide(p, &env, (struct sockaddr *)&f->dst, name, &f->d) == EGRESS_DENY) {
        finish(f, false);
        return;
    }
    /* A name is only a claim. When the address alone is allowed anyway,
     * nothing rests on it; otherwise the name's own answers say where to
     * go (SPEC section 9: no Host/SNI spoofing, no DNS rebinding). */
    if (f->d.by != EGRESS_BY_ALLOW_NAME ||
        egress_decide(p, &env, (struct sockaddr *)&f->dst, NULL, &bare) == EGRESS_ALLOW) {
        allow_dst(f);
        return;
    }
    if (!f->eg->dns) {
        deny(f, EGRESS_BY_UNRESOLVED, "%s: no nameserver to ask", f->name);
        return;
    }
    int status;
    const struct resolve_answer *a;
    f->rw.cb = on_resolved;
    if (resolver_get(f->eg->dns, f->name, &f->rw, &status, &a) == 0)
        pick(f, status, a);
    else
        f->resolving = true;
}

static void on_policy(struct egress_flow *f, int status, void *value)
{
    f->policy_known = true;
    f->status = status;
    f->rec = value;
    switch (status) {
    case CACHE_FOUND:
        break;
    case CACHE_NOT_FOUND:
        egress_decide(NULL, NULL, (struct sockaddr *)&f->dst, NULL, &f->d);
        finish(f, false);
        return;
    case CACHE_BROKEN:
        deny(f, EGRESS_BY_BROKEN, "broken policy");
        return;
    default:
        deny(f, EGRESS_BY_UNAVAILABLE, "policy unavailable (Redis)");
        return;
    }
    if (f->rec->limit) {
        if (!limits_acquire(f->rec->limit, f->rec->p->max_connections)) {
            deny(f, EGRESS_BY_MAX_CONNECTIONS, "maxConnections %u", f->rec->p->max_connections);
            return;
        }
        f->limit_held = true;
    }
    if (f->want)
        run(f);
}

static void policy_answered(struct cache_waiter *cw, int status, void *value)
{
    struct egress_flow *f = container_of(cw, struct egress_flow, cw);
    f->ops->hold(f);
    on_policy(f, status, value);
    f->ops->release(f);
}

static void lookup(struct egress_flow *f)
{
    int status;
    void *value;
    if (f->policy_known || list_linked(&f->cw.link))
        return;
    f->cw.cb = policy_answered;
    if (cache_get(f->eg->policies, f->src, &f->cw, &status, &value) == 0)
        on_policy(f, status, value);
}

void egress_flow_lookup(struct egress_flow *f)
{
    f->ops->hold(f);
    lookup(f);
    f->ops->release(f);
}

void egress_flow_decide(struct egress_flow *f, const char *name)
{
    f->ops->hold(f);
    if (name)
        snprintf(f->name, sizeof(f->name), "%s", name);
    f->want = true;
    if (!f->policy_known)
        lookup(f);
    else if (f->status == CACHE_FOUND && !f->decided)
        run(f);
    f->ops->release(f);
}

void egress_flow_end(struct egress_flow *f)
{
    cache_cancel(&f->cw);
    resolver_cancel(&f->rw);
    f->resolving = false;
    flow_unregister(f);
    if (f->limit_held) {
        limits_release(f->rec->limit);
        f->limit_held = false;
    }
    egress_rec_unref(f->rec);
    f->rec = NULL;
}

/* ---- re-deciding open flows ---- */

/* The source's policy as the cache answers now: an open flow it refuses is
 * closed. Redis unreachable changes nothing (what was decided stands, as
 * cached routes keep serving). */
static void recheck_flow(struct egress_flow *f, int status, const struct egress_rec *rec)
{
    struct egress_decision d;
    if (!f->allowed || f->revoked[0] || status == CACHE_UNAVAILABLE)
        return;
    if (status == CACHE_FOUND) {
        if (rec->serial == f->checked)
            return;
        f->checked = rec->serial;
        struct egress_env env = env_of(f->eg->w->cfg);
        if (egress_decide(rec->p, &env, (struct sockaddr *)&f->dst, f->name[0] ? f->name : NULL,
                          &d) == EGRESS_ALLOW)
            return;
    } else if (status == CACHE_NOT_FOUND) {
        egress_decide(NULL, NULL, (struct sockaddr *)&f->dst, NULL, &d);
    } else {
        snprintf(d.rule, sizeof(d.rule), "broken policy");
    }
    snprintf(f->revoked, sizeof(f->revoked), "%s", d.rule);
    METRIC_INC(&f->eg->w->metrics, egress_revoked);
    log_info("egress: %s -> %s%s%s closed: the new policy refuses it (%s)", f->src, f->dst_text,
             f->name[0] ? " " : "", f->name, f->revoked);
    f->ops->hold(f);
    f->ops->revoke(f);
    f->ops->release(f);
}

/* Every open flow of s against (status, rec); rec is a reference it
 * releases. */
static void source_apply(struct egress_source *s, int status, void *rec)
{
    struct list_node *n, *next;
    s->busy++;
    list_for_each_safe(n, next, &s->flows)
        recheck_flow(container_of(n, struct egress_flow, link), status, rec);
    s->busy--;
    egress_rec_unref(rec);
}

static void source_answered(struct cache_waiter *cw, int status, void *value)
{
    struct egress_source *s = container_of(cw, struct egress_source, cw);
    source_apply(s, status, value);
    source_maybe_free(s);
}

/* Asks the cache for s's policy (a hit, mostly; a GET after a purge). */
static void source_check(struct egress_source *s)
{
    int status;
    void *value;
    if (list_linked(&s->cw.link))
        return; /* asked already */
    s->dirty = false;
    s->cw.cb = source_answered;
    s->busy++;
    if (cache_get(s->eg->policies, s->addr, &s->cw, &status, &value) == 0)
        source_apply(s, status, value);
    s->busy--;
    source_maybe_free(s);
}

static void check_node(struct strmap_node *n, void *arg)
{
    struct egress_source *s = container_of(n, struct egress_source, node);
    bool all = *(const bool *)arg;
    if (all || s->dirty)
        source_check(s);
}

void egress_recheck_cb(int fd, short what, void *arg)
{
    struct egress *eg = arg;
    bool all = true;
    strmap_each(&eg->sources, check_node, &all);
}

void egress_purge_cb(int fd, short what, void *arg)
{
    struct egress *eg = arg;
    bool all = eg->purge_all;
    eg->purge_all = false;
    strmap_each(&eg->sources, check_node, &all);
}

/* From the cache, inside the link's callback: note it, act from purge_ev. */
void egress_purge_hook(void *arg, const char *id)
{
    struct egress *eg = arg;
    if (!id) {
        eg->purge_all = true;
    } else {
        struct strmap_node *n = strmap_get(&eg->sources, id);
        if (!n)
            return;
        container_of(n, struct egress_source, node)->dirty = true;
    }
    event_active(eg->purge_ev, EV_TIMEOUT, 0);
}
