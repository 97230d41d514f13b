/* The worker's egress state (egress.h): the policy cache, the resolver,
 * the open flows' re-check, the connections to drain. */
#include "egress.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cidr.h"
#include "ev.h"
#include "flow.h"
#include "log.h"
#include "origin.h"
#include "policy.h"
#include "timeutil.h"
#include "worker.h"

static struct cache_params params_of(const struct config *cfg)
{
    /* The route cache's settings: one TTL, one outage rule for both record
     * types (SPEC section 9: "changes take effect like routing records"). */
    return (struct cache_params){
        .ttl_ms = cfg->cache_ttl_ms,
        .negative_ttl_ms = cfg->cache_negative_ttl_ms,
        .stale_grace_ms = cfg->cache_stale_grace_ms,
        .refresh_ahead = true,
        .max_entries = (size_t)cfg->cache_max_entries,
    };
}

int egress_init(struct worker *w)
{
    const struct config *cfg = w->cfg;
    if (!cfg->egress_http.address && !cfg->egress_tls.address && !cfg->egress_tcp.address)
        return 0;
    struct egress *eg = calloc(1, sizeof(*eg));
    if (!eg)
        return -1;
    eg->w = w;
    w->egress = eg;
    list_init(&eg->conns);
    struct cache_params p = params_of(cfg);
    struct cache_counters counters = {
        .hits = &w->metrics.egress_cache_hits,
        .misses = &w->metrics.egress_cache_misses,
        .entries = &w->metrics.egress_cache_entries,
    };
    if (strmap_init(&eg->sources, 64) == -1)
        return -1;
    eg->policies = cache_new(w->base, w->redis, &egress_rec_desc, &p, &counters);
    eg->recheck_ev = event_new(w->base, -1, EV_PERSIST, egress_recheck_cb, eg);
    eg->purge_ev = event_new(w->base, -1, 0, egress_purge_cb, eg);
    if (!eg->policies || !eg->recheck_ev || !eg->purge_ev)
        return -1;
    cache_set_purge_hook(eg->policies, egress_purge_hook, eg);
    struct timeval tv = tv_from_ms(EGRESS_RECHECK_MS);
    event_add(eg->recheck_ev, &tv);
    eg->dns = resolver_new(w->base, cfg->egress_nameservers, cfg->egress_nameserver_count);
    if (!eg->dns)
        log_error("egress: no usable nameserver in egress.nameservers: name rules cannot "
                  "allow anything");
    else
        resolver_set_counters(eg->dns, &w->metrics.egress_dns[0], &w->metrics.egress_dns[1],
                              &w->metrics.egress_dns[2]);
    return 0;
}

void egress_free(struct egress *eg)
{
    if (!eg)
        return;
    /* Every flow is gone (the loop ran until the last connection closed),
     * so no source is left but ones a failed start left behind. */
    ev_free(eg->recheck_ev);
    ev_free(eg->purge_ev);
    resolver_free(eg->dns);
    cache_free(eg->policies);
    strmap_destroy(&eg->sources);
    eg->w->egress = NULL;
    free(eg);
}

void egress_drain(struct egress *eg)
{
    if (!eg)
        return;
    struct list_node *n, *next;
    list_for_each_safe(n, next, &eg->conns) egress_conn_drain(n);
}

void egress_config_changed(struct egress *eg)
{
    if (!eg)
        return;
    struct cache_params p = params_of(eg->w->cfg);
    cache_set_params(eg->policies, &p);
}

int egress_original_dst_or_refuse(struct worker *w, const struct config_egress_listener *l, int fd,
                                  const struct sockaddr *sa, struct sockaddr_storage *dst,
                                  socklen_t *dst_len)
{
    int rc = w->cfg->egress_interception == CONFIG_EGRESS_TPROXY
                 ? egress_tproxy_dst(fd, cidr_sockaddr_port((const struct sockaddr *)&l->addr), dst,
                                     dst_len)
                 : egress_original_dst(fd, sa, dst, dst_len);
    if (rc == 0)
        return 0;
    char peer[INET6_ADDRSTRLEN + 8];
    egress_format_endpoint(sa, peer, sizeof(peer));
    log_info("egress: connection from %s has no original destination (%s): refused", peer,
             errno == ELOOP ? "made to the listener itself, not intercepted" : strerror(errno));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    return -1;
}
