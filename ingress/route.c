/* Host -> (port, sandbox id) -> record -> verdict: SPEC sections 4 and 5.
 * The pure parts live in common/host.c and common/record.c. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "head.h"
#include "conn_limit.h"
#include "list.h"
#include "log.h"
#include "reply.h"
#include "session.h"
#include "worker.h"

/* Splits an absolute-form target (RFC 9112 section 3.2.2) into authority and
 * origin-form path; the authority then wins over Host (section 3.2.2 too). */
static bool split_absolute(const char *url, size_t len, const char **auth, size_t *auth_len,
                           const char **path, size_t *path_len, bool *needs_slash)
{
    *needs_slash = false;
    size_t skip;
    if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    const char *a = url + skip;
    size_t rest = len - skip, i = 0;
    while (i < rest && a[i] != '/' && a[i] != '?')
        i++;
    *auth = a;
    *auth_len = i;
    if (i == rest) {
        *path = "/";
        *path_len = 1;
    } else if (a[i] == '?') {
        /* "http://h?q": the origin-form is "/?q" (RFC 9112 section 3.2.1);
         * the relay writes the missing "/". */
        *path = a + i;
        *path_len = rest - i;
        *needs_slash = true;
    } else {
        *path = a + i;
        *path_len = rest - i;
    }
    return true;
}

static bool port_exempt(const struct config *cfg, uint16_t port)
{
    for (size_t i = 0; i < cfg->token_exempt_count; i++)
        if (cfg->token_exempt_ports[i] == port)
            return true;
    return false;
}

/* Only one header of this kind may appear; returns NULL when absent, sets
 * *dup when there are several. */
static const struct hdr *single_header(const struct head *h, int kind, bool *dup)
{
    unsigned n;
    const struct hdr *x = head_find(h, kind, &n);
    *dup = n > 1;
    return x;
}

static void verdict(struct session *s, int status, struct route_rec *rr)
{
    const struct config *cfg = s->w->cfg;
    s->rr = rr;
    switch (status) {
    case LOOKUP_NOT_FOUND:
        session_error_sandbox(s, 502, "sandbox not found", false);
        return;
    case LOOKUP_BROKEN:
        session_error_sandbox(s, 502, "the sandbox's routing record is broken", false);
        return;
    case LOOKUP_UNAVAILABLE:
        session_error_sandbox(s, 503, "routing data is unavailable, try again", false);
        return;
    default:
        break;
    }
    const struct record *rec = rr->rec;
    if (!rec->allow_public && !port_exempt(cfg, s->target.port)) {
        bool dup;
        const struct hdr *t = single_header(s->rh, HDR_TRAFFIC_TOKEN, &dup);
        if (!t) {
            session_error_sandbox(
                s, 403,
                "this sandbox requires a traffic access token (e2b-traffic-access-token header)",
                false);
            return;
        }
        /* Constant time over the secret's length; a length mismatch is a
         * mismatch (and only the length leaks). */
        if (dup || t->val_len != rec->token_len ||
            CRYPTO_memcmp(head_str(s->rh, t->val_off), rec->token, rec->token_len) != 0) {
            session_error_sandbox(s, 403, "invalid traffic access token", false);
            return;
        }
    }
    if (rr->limit) {
        if (!limits_acquire(rr->limit, rec->max_connections)) {
            struct reply r = {.status = 429,
                              .message = "too many concurrent requests to this sandbox",
                              .sandbox_id = s->target.sandbox_id,
                              .connection_limit = (long)rec->max_connections};
            session_reply(s, &r);
            return;
        }
        s->limit_held = true;
    }
    relay_connect(s);
}

static void on_lookup(struct lookup_waiter *wt, int status, struct route_rec *rr)
{
    struct session *s = container_of(wt, struct session, waiter);
    session_enter(s);
    verdict(s, status, rr);
    session_leave(s);
}

/* The Host for routing: the absolute-form authority if any, else the one
 * Host header. Sets s->host and s->path. -1 after replying 400. */
static int pick_host(struct session *s)
{
    struct head *h = s->rh;
    const char *url = head_str(h, h->url_off);
    if (split_absolute(url, h->url_len, &s->host, &s->host_len, &s->path, &s->path_len,
                       &s->path_needs_slash))
        return 0;
    if (h->url_len >= 1 && url[0] != '/' && !(h->url_len == 1 && url[0] == '*')) {
        session_error(s, 400, "request target must be origin-form or absolute-form");
        return -1;
    }
    s->path = url;
    s->path_len = h->url_len;
    s->path_needs_slash = false;
    bool dup;
    const struct hdr *x = single_header(h, HDR_HOST, &dup);
    if (!x || dup) {
        session_error(s, 400, dup ? "more than one Host header" : "missing Host header");
        return -1;
    }
    s->host = head_str(h, x->val_off);
    s->host_len = x->val_len;
    return 0;
}

/* "sandbox.<domain>": the target comes from e2b-sandbox-id/-port. */
static int target_from_headers(struct session *s)
{
    bool dup_id, dup_port;
    const struct hdr *id = single_header(s->rh, HDR_SANDBOX_ID, &dup_id);
    const struct hdr *port = single_header(s->rh, HDR_SANDBOX_PORT, &dup_port);
    if (!id || !port || dup_id || dup_port) {
        session_error(s, 400,
                      "Host sandbox.<domain> needs exactly one e2b-sandbox-id and one "
                      "e2b-sandbox-port header");
        return -1;
    }
    if (host_parse_sandbox_id(head_str(s->rh, id->val_off), id->val_len, &s->target) == -1) {
        session_error(s, 400, "invalid e2b-sandbox-id");
        return -1;
    }
    if (host_parse_port(head_str(s->rh, port->val_off), port->val_len, &s->target.port) == -1) {
        session_error(s, 400, "invalid e2b-sandbox-port: must be 1..65535");
        return -1;
    }
    return 0;
}

void route_request(struct session *s)
{
    if (pick_host(s) == -1)
        return;
    int r = host_parse(s->host, s->host_len, &s->w->cfg->domains, &s->target);
    if (r == HOST_NEEDS_HEADERS) {
        if (target_from_headers(s) == -1)
            return;
    } else if (r != HOST_OK) {
        session_error(s, 400, host_status_message(r));
        return;
    }
    int status;
    struct route_rec *rr;
    s->waiter.cb = on_lookup;
    if (lookup_get(s->w->lookup, s->target.sandbox_id, &s->waiter, &status, &rr) == 0)
        verdict(s, status, rr);
}
