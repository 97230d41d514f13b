#include "outbuf.h"

#include <string.h>

void outbuf_init(struct outbuf *ob, char *buf, size_t cap)
{
    ob->buf = buf;
    ob->cap = cap;
    ob->len = 0;
    ob->truncated = false;
}

/* The one place that stores: len <= cap holds before and after. */
bool outbuf_put(struct outbuf *ob, const void *s, size_t n)
{
    if (ob->truncated)
        return false;
    if (n > ob->cap - ob->len) {
        ob->truncated = true;
        return false;
    }
    if (ob->buf != NULL && n > 0)
        memcpy(ob->buf + ob->len, s, n);
    ob->len += n;
    return true;
}

bool outbuf_str(struct outbuf *ob, const char *s)
{
    return outbuf_put(ob, s, strlen(s));
}

#define DEC_MAX 21 /* '-' and the 20 digits of UINT64_MAX */

/* Formats into the end of tmp[DEC_MAX]; returns where it starts. */
static char *dec(char *tmp, uint64_t v, unsigned min_digits, bool neg)
{
    char *p = tmp + DEC_MAX;
    unsigned digits = 0;

    if (min_digits > DEC_MAX - 1)
        min_digits = DEC_MAX - 1;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
        digits++;
    } while (v != 0 || digits < min_digits);
    if (neg)
        *--p = '-';
    return p;
}

bool outbuf_uint(struct outbuf *ob, uint64_t v, unsigned min_digits)
{
    char tmp[DEC_MAX];
    char *p = dec(tmp, v, min_digits, false);

    return outbuf_put(ob, p, (size_t)(tmp + DEC_MAX - p));
}

bool outbuf_int(struct outbuf *ob, int64_t v)
{
    char tmp[DEC_MAX];
    /* The magnitude in unsigned arithmetic: -INT64_MIN does not fit. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = dec(tmp, mag, 1, v < 0);

    return outbuf_put(ob, p, (size_t)(tmp + DEC_MAX - p));
}

size_t outbuf_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0; /* continuation byte, C0/C1 (overlong), F5-FF */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp > 0x10ffff)
        return 0;
    return len;
}

/* Bytes that go out as they are, one output byte each. */
static bool json_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

bool outbuf_json_body(struct outbuf *ob, const char *str, size_t n, size_t budget)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t room = ob->truncated ? 0 : ob->cap - ob->len;
    size_t limit = budget < room ? budget : room, used = 0, i = 0;

    while (i < n) {
        const char *unit;
        size_t in, out;
        char esc[6] = {'\\', 'u', '0', '0', 0, 0};

        if (json_plain(s[i])) {
            /* A run of plain bytes can be cut anywhere. */
            for (in = 1; i + in < n && json_plain(s[i + in]); in++)
                ;
            out = in <= limit - used ? in : limit - used;
            if (out > 0) {
                outbuf_put(ob, str + i, out);
                used += out;
                i += out;
            }
            if (out == in)
                continue;
            unit = str + i; /* the first byte left out */
            in = out = 1;
        } else if (s[i] == '"' || s[i] == '\\') {
            esc[1] = (char)s[i];
            unit = esc;
            in = 1;
            out = 2;
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            esc[4] = hex[s[i] >> 4];
            esc[5] = hex[s[i] & 15];
            unit = esc;
            in = 1;
            out = 6;
        } else if ((in = outbuf_utf8_len(s + i, n - i)) > 0) {
            unit = str + i;
            out = in;
        } else {
            unit = "\\ufffd";
            in = 1;
            out = 6;
        }
        if (out > limit - used) {
            /* Within the budget but not the capacity: the writer's own
             * bound cut it. */
            if (out <= budget - used)
                ob->truncated = true;
            return false;
        }
        outbuf_put(ob, unit, out);
        used += out;
        i += in;
    }
    return true;
}

bool outbuf_json_str(struct outbuf *ob, const char *s, size_t n, size_t budget)
{
    bool whole = outbuf_lit(ob, "\"") && outbuf_json_body(ob, s, n, budget);

    /* The closing quote even after a cut: the string stays valid. */
    return outbuf_lit(ob, "\"") && whole;
}
