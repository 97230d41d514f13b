#include "rewrite.h"

#include <event2/buffer.h>
#include <string.h>

#include "config.h"
#include "head.h"
#include "reply.h"
#include "exchange.h"
#include "route_rec.h"
#include "worker.h"

/* ---- a small writer into reserved evbuffer space ---- */

struct out {
    char *p, *end;
    bool overflow;
};

static void out_put(struct out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}
#define OUT_LIT(o, lit) out_put(o, lit, sizeof(lit) - 1)

static void out_uint(struct out *o, unsigned v)
{
    char tmp[12];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_put(o, tmp + n, sizeof(tmp) - n);
}

static void out_header(struct out *o, const struct head *h, const struct hdr *x)
{
    out_put(o, h->buf + x->name_off, x->name_len);
    OUT_LIT(o, ": ");
    out_put(o, h->buf + x->val_off, x->val_len);
    OUT_LIT(o, "\r\n");
}

/* ---- the request head sent upstream ---- */

static bool is_forwarded_header(const struct head *h, const struct hdr *x)
{
    return x->kind == HDR_X_FORWARDED_FOR || x->kind == HDR_X_FORWARDED_PROTO ||
           x->kind == HDR_X_FORWARDED_HOST;
}

/* Forwarded (RFC 7239) and X-Real-IP say who the client is, like
 * X-Forwarded-For: only a trusted proxy may say it (RFC 7239 section 8.1),
 * anyone else could claim any address to the app. They pass as sent or not
 * at all; the proxy's own account is X-Forwarded-*. */
static bool is_address_claim(const struct hdr *x)
{
    return x->kind == HDR_FORWARDED || x->kind == HDR_X_REAL_IP;
}

/* Appends every value of a header, comma-joined (RFC 9110 section 5.3). */
static bool out_joined(struct out *o, const struct head *h, enum hdr_kind kind)
{
    bool any = false;
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (x->kind != kind)
            continue;
        if (any)
            OUT_LIT(o, ", ");
        out_put(o, h->buf + x->val_off, x->val_len);
        any = true;
    }
    return any;
}

int rewrite_request_head(const struct exchange *s, struct evbuffer *dst)
{
    const struct head *h = s->rh;
    const struct config *cfg = s->w->cfg;
    const struct client_info *ci = s->client;
    int mask_len = -1;
    const char *mask = s->rr ? route_rec_masked_host(s->rr, s->target.port, &mask_len) : NULL;
    if (!mask && s->rr && s->rr->rec->mask_host)
        return -1; /* a mask too long to expand: never send the wrong Host */
    bool trusted =
        cfg->trusted_count > 0 && config_cidr_match(cfg->trusted_proxies, cfg->trusted_count,
                                                    (const struct sockaddr *)&ci->peer);
    size_t need =
        h->used + 4 * (size_t)h->nhdrs + 2 * s->authority_len + (mask ? (size_t)mask_len : 0) + 512;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(dst, (ev_ssize_t)need, &v, 1) < 1)
        return -1;
    struct out o = {v.iov_base, (char *)v.iov_base + v.iov_len, false};

    const char *method = llhttp_method_name(exchange_upstream_method(s));
    out_put(&o, method, strlen(method));
    OUT_LIT(&o, " ");
    if (s->path_needs_slash)
        OUT_LIT(&o, "/");
    out_put(&o, s->path, s->path_len);
    OUT_LIT(&o, " HTTP/1.1\r\nHost: ");
    if (mask)
        out_put(&o, mask, (size_t)mask_len);
    else
        out_put(&o, s->authority, s->authority_len);
    OUT_LIT(&o, "\r\n");
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (x->kind == HDR_HOST || x->kind == HDR_TRANSFER_ENCODING || head_is_hop_by_hop(h, x))
            continue;
        /* What the ingress claims or takes for the sandbox: not on egress,
         * where the header is the sandbox's own, for a server it chose. */
        if (!s->transparent && (x->kind == HDR_TRAFFIC_TOKEN || is_forwarded_header(h, x) ||
                                (!trusted && is_address_claim(x))))
            continue;
        out_header(&o, h, x);
    }
    /* A body without a length goes up chunked (core/chunked.c writes it),
     * in the one spelling every parser agrees on, whatever bytes the client
     * used (the request-path fuzzer sent "Transfer-Encoding:\xa0 chunked"). */
    if (s->req_body == EX_BODY_STREAM)
        OUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    if (!s->transparent) {
        OUT_LIT(&o, "X-Forwarded-For: ");
        if (trusted && out_joined(&o, h, HDR_X_FORWARDED_FOR))
            OUT_LIT(&o, ", ");
        out_put(&o, ci->peer_ip, strlen(ci->peer_ip));
        OUT_LIT(&o, "\r\nX-Forwarded-Proto: ");
        if (!trusted || !out_joined(&o, h, HDR_X_FORWARDED_PROTO)) {
            if (ci->tls)
                OUT_LIT(&o, "https");
            else
                OUT_LIT(&o, "http");
        }
        OUT_LIT(&o, "\r\nX-Forwarded-Host: ");
        out_put(&o, s->authority, s->authority_len);
        OUT_LIT(&o, "\r\n");
    }
    if (s->upgrade) {
        const struct hdr *up = head_find(h, HDR_UPGRADE, NULL);
        OUT_LIT(&o, "Connection: upgrade\r\n");
        if (up)
            out_header(&o, h, up);
    }
    OUT_LIT(&o, "\r\n");
    if (o.overflow)
        return -1;
    v.iov_len = (size_t)(o.p - (char *)v.iov_base);
    return evbuffer_commit_space(dst, &v, 1);
}

/* ---- the response head sent to an HTTP/1.1 client ---- */

int rewrite_response_head(struct evbuffer *dst, int status, const struct head *h, bool chunked,
                          enum resp_conn conn)
{
    size_t need = h->used + 4 * (size_t)h->nhdrs + 256;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(dst, (ev_ssize_t)need, &v, 1) < 1)
        return -1;
    struct out o = {v.iov_base, (char *)v.iov_base + v.iov_len, false};
    OUT_LIT(&o, "HTTP/1.1 ");
    out_uint(&o, (unsigned)status);
    OUT_LIT(&o, " ");
    if (h->url_len)
        out_put(&o, h->buf + h->url_off, h->url_len);
    else
        out_put(&o, reply_reason(status), strlen(reply_reason(status)));
    OUT_LIT(&o, "\r\n");
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (head_is_hop_by_hop(h, x))
            continue;
        if (x->kind == HDR_TRANSFER_ENCODING)
            continue; /* the client's framing is ours: written below */
        out_header(&o, h, x);
    }
    if (chunked)
        OUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    if (status == 101) {
        const struct hdr *up = head_find(h, HDR_UPGRADE, NULL);
        OUT_LIT(&o, "Connection: upgrade\r\n");
        if (up)
            out_header(&o, h, up);
    } else if (conn == RESP_CONN_CLOSE) {
        OUT_LIT(&o, "Connection: close\r\n");
    } else if (conn == RESP_CONN_KEEP_ALIVE) {
        OUT_LIT(&o, "Connection: keep-alive\r\n");
    }
    OUT_LIT(&o, "\r\n");
    if (o.overflow)
        return -1;
    v.iov_len = (size_t)(o.p - (char *)v.iov_base);
    if (evbuffer_commit_space(dst, &v, 1) == -1)
        return -1;
    return (int)v.iov_len;
}
