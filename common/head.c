#include "head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "toklist.h"

struct head *head_get(struct head_pool *p)
{
    struct head *h = p->free;
    if (h) {
        p->free = h->next_free;
        p->count--;
    } else {
        uint32_t cap = p->limits.max_bytes;
        uint32_t max_hdrs = p->limits.max_headers;
        h = malloc(sizeof(*h) + max_hdrs * sizeof(struct hdr) + cap);
        if (!h)
            return NULL;
        h->hdrs = (struct hdr *)(h + 1);
        h->buf = (char *)(h->hdrs + max_hdrs);
        h->cap = cap;
        h->max_hdrs = max_hdrs;
        h->max_url = p->limits.max_url;
    }
    h->next_free = NULL;
    h->used = h->nhdrs = h->url_off = h->url_len = 0;
    h->in_field = h->in_value = false;
    h->conn_lists_others = false;
    h->err = HEAD_OK;
    return h;
}

/* Was the arena sized by the limits now in force? One allocated before a
 * reload keeps the old limits and must not serve a new request. */
static bool head_fits_limits(const struct head *h, const struct head_limits *l)
{
    return h->cap == l->max_bytes && h->max_hdrs == l->max_headers && h->max_url == l->max_url;
}

void head_put(struct head_pool *p, struct head *h)
{
    if (!h)
        return;
    if (p->count >= HEAD_FREE_MAX || !head_fits_limits(h, &p->limits)) {
        free(h);
        return;
    }
    h->next_free = p->free;
    p->free = h;
    p->count++;
}

void head_free_all(struct head_pool *p)
{
    while (p->free) {
        struct head *h = p->free;
        p->free = h->next_free;
        free(h);
    }
    p->count = 0;
}

void head_pool_set_limits(struct head_pool *p, uint32_t max_bytes, uint32_t max_headers,
                          uint32_t max_url)
{
    struct head_limits l = {max_bytes, max_headers, max_url};
    if (p->limits.max_bytes != l.max_bytes || p->limits.max_headers != l.max_headers ||
        p->limits.max_url != l.max_url)
        head_free_all(p);
    p->limits = l;
}

/* ---- llhttp span callbacks ---- */

static struct head *head_of(llhttp_t *p)
{
    const struct head_parser_settings *hs = (const struct head_parser_settings *)p->settings;
    return *(struct head **)((char *)p->data + hs->head_off);
}
static int span_url(llhttp_t *p, const char *at, size_t len)
{
    return head_on_url(head_of(p), at, len) ? HPE_USER : 0;
}
static int span_field(llhttp_t *p, const char *at, size_t len)
{
    return head_on_field(head_of(p), at, len) ? HPE_USER : 0;
}
static int span_field_done(llhttp_t *p)
{
    return head_on_field_done(head_of(p));
}
static int span_value(llhttp_t *p, const char *at, size_t len)
{
    return head_on_value(head_of(p), at, len) ? HPE_USER : 0;
}
static int span_value_done(llhttp_t *p)
{
    return head_on_value_done(head_of(p));
}

void head_parser_callbacks(struct head_parser_settings *hs, size_t head_off)
{
    hs->head_off = head_off;
    hs->st.on_url = span_url;
    hs->st.on_status = span_url;
    hs->st.on_header_field = span_field;
    hs->st.on_header_field_complete = span_field_done;
    hs->st.on_header_value = span_value;
    hs->st.on_header_value_complete = span_value_done;
}

static int append(struct head *h, const char *at, size_t len)
{
    if (len > h->cap - h->used) {
        h->err = HEAD_TOO_LARGE;
        return -1;
    }
    memcpy(h->buf + h->used, at, len);
    h->used += (uint32_t)len;
    return 0;
}

int head_on_url(struct head *h, const char *at, size_t len)
{
    if (h->url_len == 0)
        h->url_off = h->used;
    if (h->url_len + len > h->max_url) {
        h->err = HEAD_URL_TOO_LONG;
        return -1;
    }
    h->url_len += (uint32_t)len;
    return append(h, at, len);
}

int head_on_field(struct head *h, const char *at, size_t len)
{
    if (!h->in_field) {
        if (h->nhdrs >= h->max_hdrs) {
            h->err = HEAD_TOO_MANY;
            return -1;
        }
        h->in_field = true;
        h->hdrs[h->nhdrs].name_off = h->used;
        h->hdrs[h->nhdrs].name_len = 0;
    }
    h->hdrs[h->nhdrs].name_len += (uint32_t)len;
    return append(h, at, len);
}

/* By length first: most names are rejected by one switch, a candidate costs
 * one strncasecmp. */
static enum hdr_kind classify(const char *n, uint32_t len)
{
#define IS(lit) (strncasecmp(n, lit, sizeof(lit) - 1) == 0)
    switch (len) {
    case 2:
        return IS("te") ? HDR_TE : HDR_OTHER;
    case 4:
        return IS("host") ? HDR_HOST : HDR_OTHER;
    case 6:
        return IS("accept") ? HDR_ACCEPT : HDR_OTHER;
    case 7:
        return IS("upgrade") ? HDR_UPGRADE : IS("trailer") ? HDR_TRAILER : HDR_OTHER;
    case 9:
        return IS("forwarded") ? HDR_FORWARDED : IS("x-real-ip") ? HDR_X_REAL_IP : HDR_OTHER;
    case 10:
        return IS("connection")   ? HDR_CONNECTION
               : IS("user-agent") ? HDR_USER_AGENT
               : IS("keep-alive") ? HDR_KEEP_ALIVE
                                  : HDR_OTHER;
    case 14:
        return IS("content-length")   ? HDR_CONTENT_LENGTH
               : IS("e2b-sandbox-id") ? HDR_SANDBOX_ID
               : IS("sec-fetch-mode") ? HDR_SEC_FETCH_MODE
                                      : HDR_OTHER;
    case 15:
        return IS("x-forwarded-for") ? HDR_X_FORWARDED_FOR : HDR_OTHER;
    case 16:
        return IS("x-forwarded-host")   ? HDR_X_FORWARDED_HOST
               : IS("proxy-connection") ? HDR_PROXY_CONNECTION
               : IS("e2b-sandbox-port") ? HDR_SANDBOX_PORT
               : IS("x-requested-with") ? HDR_X_REQUESTED_WITH
                                        : HDR_OTHER;
    case 17:
        return IS("transfer-encoding")   ? HDR_TRANSFER_ENCODING
               : IS("x-forwarded-proto") ? HDR_X_FORWARDED_PROTO
               : IS("sec-websocket-key") ? HDR_SEC_WEBSOCKET_KEY
                                         : HDR_OTHER;
    case 20:
        return IS("sec-websocket-accept") ? HDR_SEC_WEBSOCKET_ACCEPT : HDR_OTHER;
    case 24:
        return IS("e2b-traffic-access-token") ? HDR_TRAFFIC_TOKEN : HDR_OTHER;
    default:
        return HDR_OTHER;
    }
#undef IS
}

int head_on_field_done(struct head *h)
{
    struct hdr *x = &h->hdrs[h->nhdrs];
    h->in_field = false;
    x->kind = classify(h->buf + x->name_off, x->name_len);
    return 0;
}

/* Does a Connection value name anything besides close, keep-alive and
 * upgrade (the usual ones, each either hop-by-hop already or no header)? */
static bool lists_others(const char *v, size_t len)
{
    struct toklist t = toklist_of(v, len);
    const char *tok;
    size_t n;
    while (toklist_next(&t, &tok, &n))
        if (!(n == 5 && strncasecmp(tok, "close", 5) == 0) &&
            !(n == 10 && strncasecmp(tok, "keep-alive", 10) == 0) &&
            !(n == 7 && strncasecmp(tok, "upgrade", 7) == 0))
            return true;
    return false;
}

int head_on_value(struct head *h, const char *at, size_t len)
{
    if (!h->in_value) {
        h->in_value = true;
        h->hdrs[h->nhdrs].val_off = h->used;
        h->hdrs[h->nhdrs].val_len = 0;
    }
    h->hdrs[h->nhdrs].val_len += (uint32_t)len;
    return append(h, at, len);
}

int head_on_value_done(struct head *h)
{
    if (!h->in_value) { /* empty value: llhttp gave no span */
        h->hdrs[h->nhdrs].val_off = h->used;
        h->hdrs[h->nhdrs].val_len = 0;
    }
    h->in_value = false;
    struct hdr *x = &h->hdrs[h->nhdrs];
    if (x->kind == HDR_CONNECTION && lists_others(h->buf + x->val_off, x->val_len))
        h->conn_lists_others = true;
    h->nhdrs++;
    return 0;
}

int head_add(struct head *h, const char *name, size_t nlen, const char *val, size_t vlen)
{
    if (head_on_field(h, name, nlen) == -1)
        return -1;
    head_on_field_done(h);
    if (vlen && head_on_value(h, val, vlen) == -1)
        return -1;
    return head_on_value_done(h);
}

int head_add_bytes(struct head *h, const char *at, size_t len, uint32_t *off)
{
    *off = h->used;
    return append(h, at, len);
}

bool head_trailer_allowed(const struct head *h, const struct hdr *x)
{
    switch (x->kind) {
    case HDR_HOST:
    case HDR_CONTENT_LENGTH:
    case HDR_TRANSFER_ENCODING:
    case HDR_TRAFFIC_TOKEN:
        return false;
    default:
        return !head_is_hop_by_hop(h, x);
    }
}

bool head_name_is(const struct head *h, const struct hdr *x, const char *lc, size_t lclen)
{
    return x->name_len == lclen && strncasecmp(h->buf + x->name_off, lc, lclen) == 0;
}

const struct hdr *head_find(const struct head *h, enum hdr_kind kind, unsigned *count)
{
    const struct hdr *first = NULL;
    unsigned n = 0;
    for (uint32_t i = 0; i < h->nhdrs; i++)
        if (h->hdrs[i].kind == kind) {
            if (!first)
                first = &h->hdrs[i];
            n++;
            if (!count)
                break;
        }
    if (count)
        *count = n;
    return first;
}

bool head_list_has(const char *val, size_t len, const char *tok, size_t toklen)
{
    return toklist_has(val, len, tok, toklen);
}

void head_reset(struct head *h)
{
    h->used = h->nhdrs = h->url_off = h->url_len = 0;
    h->in_field = h->in_value = false;
    h->conn_lists_others = false;
    h->err = HEAD_OK;
}

bool head_is_hop_by_hop(const struct head *h, const struct hdr *x)
{
    switch (x->kind) {
    case HDR_CONNECTION:
    case HDR_KEEP_ALIVE:
    case HDR_PROXY_CONNECTION:
    case HDR_TE:
    case HDR_TRAILER:
    case HDR_UPGRADE:
        return true;
    case HDR_CONTENT_LENGTH:
    case HDR_TRANSFER_ENCODING:
    case HDR_HOST:
        return false; /* framing and routing: never strippable */
    default:
        break;
    }
    if (!h->conn_lists_others)
        return false;
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *c = &h->hdrs[i];
        if (c->kind == HDR_CONNECTION &&
            head_list_has(h->buf + c->val_off, c->val_len, h->buf + x->name_off, x->name_len))
            return true;
    }
    return false;
}

bool head_has_empty_name(const struct head *h)
{
    for (uint32_t i = 0; i < h->nhdrs; i++)
        if (h->hdrs[i].name_len == 0)
            return true;
    return false;
}
