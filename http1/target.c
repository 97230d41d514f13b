/* The request target and authority of an HTTP/1.1 request, normalised for
 * the exchange (RFC 9112 section 3.2): origin-form with Host, absolute-form
 * whose authority wins over Host, and "*" (OPTIONS). */
#include "target.h"

#include <string.h>
#include <strings.h>

#include "head.h"

/* Splits an absolute-form target (RFC 9112 section 3.2.2) into authority and
 * origin-form path; the authority then wins over Host (section 3.2.2 too). */
static bool split_absolute(const char *url, size_t len, struct exchange *ex)
{
    ex->path_needs_slash = false;
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
    ex->authority = a;
    ex->authority_len = i;
    if (i == rest) {
        ex->path = "/";
        ex->path_len = 1;
    } else if (a[i] == '?') {
        /* "http://h?q": the origin-form is "/?q" (RFC 9112 section 3.2.1);
         * the head rewrite writes the missing "/". */
        ex->path = a + i;
        ex->path_len = rest - i;
        ex->path_needs_slash = true;
    } else {
        ex->path = a + i;
        ex->path_len = rest - i;
    }
    return true;
}

const char *h1_target_normalise(struct exchange *ex)
{
    const struct head *h = ex->rh;
    const char *url = head_str(h, h->url_off);
    if (split_absolute(url, h->url_len, ex))
        return NULL;
    if (h->url_len >= 1 && url[0] != '/' && !(h->url_len == 1 && url[0] == '*'))
        return "request target must be origin-form or absolute-form";
    ex->path = url;
    ex->path_len = h->url_len;
    ex->path_needs_slash = false;
    bool dup;
    const struct hdr *x = head_find_one(h, HDR_HOST, &dup);
    if (!x || dup)
        return dup ? "more than one Host header" : "missing Host header";
    ex->authority = head_str(h, x->val_off);
    ex->authority_len = x->val_len;
    return NULL;
}
