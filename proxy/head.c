#include "head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker.h"

/* Recycled arenas kept per worker: enough for the requests in flight on a
 * busy worker without holding memory for idle keep-alive connections. */
#define HEAD_FREE_MAX 256

struct head *head_get(struct worker *w)
{
    struct head *h = w->free_heads;
    if (h) {
        w->free_heads = h->next_free;
        w->free_head_count--;
    } else {
        uint32_t cap = (uint32_t)w->cfg->client_max_head_bytes;
        uint32_t max_hdrs = (uint32_t)w->cfg->client_max_headers;
        h = malloc(sizeof(*h) + max_hdrs * sizeof(struct hdr) + cap);
        if (!h)
            return NULL;
        h->hdrs = (struct hdr *)(h + 1);
        h->buf = (char *)(h->hdrs + max_hdrs);
        h->cap = cap;
        h->max_hdrs = max_hdrs;
        h->max_url = (uint32_t)w->cfg->client_max_request_line;
    }
    h->next_free = NULL;
    h->used = h->nhdrs = h->url_off = h->url_len = 0;
    h->in_field = h->in_value = false;
    h->has_connection = false;
    h->err = HEAD_OK;
    return h;
}

void head_put(struct worker *w, struct head *h)
{
    if (!h)
        return;
    if (w->free_head_count >= HEAD_FREE_MAX) {
        free(h);
        return;
    }
    h->next_free = w->free_heads;
    w->free_heads = h;
    w->free_head_count++;
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

int head_on_field_done(struct head *h)
{
    h->in_field = false;
    if (HEAD_NAME_IS(h, &h->hdrs[h->nhdrs], "connection"))
        h->has_connection = true;
    return 0;
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
    h->nhdrs++;
    return 0;
}

bool head_name_is(const struct head *h, const struct hdr *x, const char *lc,
                  size_t lclen)
{
    return x->name_len == lclen &&
           strncasecmp(h->buf + x->name_off, lc, lclen) == 0;
}

const struct hdr *head_find(const struct head *h, const char *lc, size_t lclen)
{
    for (uint32_t i = 0; i < h->nhdrs; i++)
        if (head_name_is(h, &h->hdrs[i], lc, lclen))
            return &h->hdrs[i];
    return NULL;
}

bool head_list_has(const char *val, size_t len, const char *tok, size_t toklen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (val[i] == ' ' || val[i] == '\t' || val[i] == ','))
            i++;
        size_t start = i;
        while (i < len && val[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (val[end - 1] == ' ' || val[end - 1] == '\t'))
            end--;
        if (end - start == toklen && strncasecmp(val + start, tok, toklen) == 0)
            return true;
    }
    return false;
}

void head_reset(struct head *h)
{
    h->used = h->nhdrs = h->url_off = h->url_len = 0;
    h->in_field = h->in_value = false;
    h->has_connection = false;
    h->err = HEAD_OK;
}

bool head_is_hop_by_hop(const struct head *h, const struct hdr *x)
{
    if (HEAD_NAME_IS(h, x, "connection") || HEAD_NAME_IS(h, x, "keep-alive") ||
        HEAD_NAME_IS(h, x, "proxy-connection") || HEAD_NAME_IS(h, x, "te") ||
        HEAD_NAME_IS(h, x, "trailer") || HEAD_NAME_IS(h, x, "upgrade"))
        return true;
    if (!h->has_connection)
        return false;
    if (HEAD_NAME_IS(h, x, "content-length") ||
        HEAD_NAME_IS(h, x, "transfer-encoding") || HEAD_NAME_IS(h, x, "host"))
        return false;
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *c = &h->hdrs[i];
        if (HEAD_NAME_IS(h, c, "connection") &&
            head_list_has(h->buf + c->val_off, c->val_len, h->buf + x->name_off,
                          x->name_len))
            return true;
    }
    return false;
}
