/* The pure rules of the HTTP/2 front end: see h2_rules.h. */
#include "h2_rules.h"

#include <llhttp.h>
#include <string.h>
#include <strings.h>

int h2_preface_match(const char *buf, size_t len)
{
    size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;

    if (memcmp(buf, H2_PREFACE, n) != 0)
        return 0;
    return n == H2_PREFACE_LEN ? 1 : -2;
}

/* llhttp's own table of HTTP methods (not RTSP's, not PRI): exactly the
 * names the upstream request line can be written with. */
static const struct {
    const char *name;
    int method;
} methods[] = {
#define XX(num, name, string) {#string, num},
    HTTP_METHOD_MAP(XX)
#undef XX
};

int h2_method(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, s, len) == 0)
            return methods[i].method;
    return -1;
}

/* Where the port starts in an authority ("host:port", "[v6]:port"), or
 * len when there is none. */
static size_t port_at(const char *a, size_t len)
{
    size_t i = len;

    while (i > 0 && a[i - 1] >= '0' && a[i - 1] <= '9')
        i--;
    if (i > 0 && i < len + 1 && a[i - 1] == ':' && (i < 2 || a[0] != '[' || a[i - 2] == ']'))
        return i - 1;
    return len;
}

bool h2_authority_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t ah = port_at(a, alen), bh = port_at(b, blen);

    return ah == bh && alen - ah == blen - bh && strncasecmp(a, b, ah) == 0 &&
           memcmp(a + ah, b + bh, alen - ah) == 0;
}

int h2_authority_host(const char *a, size_t len, char *out, size_t cap)
{
    size_t end = port_at(a, len), start = 0;

    if (end >= 2 && a[0] == '[' && a[end - 1] == ']') {
        start = 1;
        end--;
    } else if (memchr(a, '[', end) != NULL || memchr(a, ']', end) != NULL) {
        return -1;
    }
    if (end > start && a[end - 1] == '.' && start == 0)
        end--;
    if (end <= start || end - start >= cap)
        return -1;
    for (size_t i = start; i < end; i++) {
        char c = a[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '\0' || (c == ':' && start == 0))
            return -1;
        out[i - start] = c;
    }
    out[end - start] = '\0';
    return (int)(end - start);
}

void h2_budget_init(struct h2_budget *b, int cap)
{
    b->left = b->cap = cap;
}

bool h2_budget_spend(struct h2_budget *b)
{
    if (b->left >= 0)
        b->left--;
    return b->left >= 0;
}

void h2_budget_earn(struct h2_budget *b)
{
    if (b->left >= 0 && b->left < b->cap)
        b->left++;
}

bool h2_flooded(uint64_t bytes_in, uint64_t payload_in)
{
    return bytes_in / H2_FLOOD_RATIO > payload_in + H2_FLOOD_ALLOWANCE;
}

bool h2_send_progress(size_t sent_since_mark, size_t still_queued)
{
    return sent_since_mark >= H2_PROGRESS_BYTES || still_queued == 0;
}
