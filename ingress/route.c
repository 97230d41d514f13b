/* ingress/: the way in. Host -> (port, sandbox id) -> record -> verdict
 * (SPEC sections 4 and 5): the token, the connection limit, then the proxy;
 * the sandbox route record (route_rec.c), the route cache (lookup.c, an
 * instance of redis/cache.c), the per-sandbox connection counts
 * (conn_limit.c) and the access log (access_log.c). ingress/ works on an
 * exchange whatever front end made it, and may call common/, redis/ (the
 * cache), admin/ (log, metrics) and core/ (the exchange, the proxy); never a
 * front end. The pure parts live in common/host.c and common/record.c. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "head.h"
#include "conn_limit.h"
#include "list.h"
#include "log.h"
#include "reply.h"
#include "exchange.h"
#include "proxy.h"
#include "route.h"
#include "route_rec.h"
#include "worker.h"

static bool port_exempt(const struct config *cfg, uint16_t port)
{
    for (size_t i = 0; i < cfg->token_exempt_count; i++)
        if (cfg->token_exempt_ports[i] == port)
            return true;
    return false;
}

static void verdict(struct exchange *s, int status, struct route_rec *rr)
{
    const struct config *cfg = s->w->cfg;
    s->rr = rr;
    switch (status) {
    case LOOKUP_NOT_FOUND:
        exchange_error_sandbox(s, 502, "sandbox not found", false);
        return;
    case LOOKUP_BROKEN:
        exchange_error_sandbox(s, 502, "the sandbox's routing record is broken", false);
        return;
    case LOOKUP_UNAVAILABLE:
        exchange_error_sandbox(s, 503, "routing data is unavailable, try again", false);
        return;
    default:
        break;
    }
    const struct record *rec = rr->rec;
    if (!rec->allow_public && !port_exempt(cfg, s->target.port)) {
        bool dup;
        const struct hdr *t = head_find_one(s->rh, HDR_TRAFFIC_TOKEN, &dup);
        if (!t) {
            exchange_error_sandbox(
                s, 403,
                "this sandbox requires a traffic access token (e2b-traffic-access-token header)",
                false);
            return;
        }
        /* Constant time over the secret's length; a length mismatch is a
         * mismatch (and only the length leaks). */
        if (dup || t->val_len != rec->token_len ||
            CRYPTO_memcmp(head_str(s->rh, t->val_off), rec->token, rec->token_len) != 0) {
            exchange_error_sandbox(s, 403, "invalid traffic access token", false);
            return;
        }
    }
    if (rr->limit) {
        if (!limits_acquire(rr->limit, rec->max_connections)) {
            struct reply r = {.status = 429,
                              .message = "too many concurrent requests to this sandbox",
                              .sandbox_id = s->target.sandbox_id,
                              .connection_limit = (long)rec->max_connections};
            s->ops->reply(s, &r);
            return;
        }
        s->limit_held = true;
    }
    /* The sandbox's address at the requested port; pooled connections are
     * this sandbox's (and this execution's) only. */
    memcpy(&s->up_addr, &rec->addr, rec->addr_len);
    s->up_addr_len = rec->addr_len;
    if (rec->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&s->up_addr)->sin6_port = htons(s->target.port);
    else
        ((struct sockaddr_in *)&s->up_addr)->sin_port = htons(s->target.port);
    s->up_pool_name = s->target.sandbox_id;
    s->up_addr_text = rec->address;
    s->up_pool_tag = rec->execution_id;
    proxy_start(s);
}

static void on_lookup(struct lookup_waiter *wt, int status, struct route_rec *rr)
{
    struct exchange *s = container_of(wt, struct exchange, waiter);
    s->ops->hold(s);
    verdict(s, status, rr);
    s->ops->release(s);
}

/* "sandbox.<domain>": the target comes from e2b-sandbox-id/-port. */
static int target_from_headers(struct exchange *s)
{
    bool dup_id, dup_port;
    const struct hdr *id = head_find_one(s->rh, HDR_SANDBOX_ID, &dup_id);
    const struct hdr *port = head_find_one(s->rh, HDR_SANDBOX_PORT, &dup_port);
    if (!id || !port || dup_id || dup_port) {
        exchange_error(s, 400,
                       "Host sandbox.<domain> needs exactly one e2b-sandbox-id and one "
                       "e2b-sandbox-port header");
        return -1;
    }
    if (host_parse_sandbox_id(head_str(s->rh, id->val_off), id->val_len, &s->target) == -1) {
        exchange_error(s, 400, "invalid e2b-sandbox-id");
        return -1;
    }
    if (host_parse_port(head_str(s->rh, port->val_off), port->val_len, &s->target.port) == -1) {
        exchange_error(s, 400, "invalid e2b-sandbox-port: must be 1..65535");
        return -1;
    }
    return 0;
}

void route_request(struct exchange *s)
{
    int r = host_parse(s->authority, s->authority_len, &s->w->cfg->domains, &s->target);
    if (r == HOST_NEEDS_HEADERS) {
        if (target_from_headers(s) == -1)
            return;
    } else if (r != HOST_OK) {
        exchange_error(s, 400, host_status_message(r));
        return;
    }
    int status;
    struct route_rec *rr;
    s->waiter.cb = on_lookup;
    if (lookup_get(s->w->lookup, s->target.sandbox_id, &s->waiter, &status, &rr) == 0)
        verdict(s, status, rr);
}

const struct route_ops ingress_route_ops = {.route = route_request};
