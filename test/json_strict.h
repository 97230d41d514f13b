/* A strict JSON (RFC 8259) validator for tests and fuzzers: one value with
 * optional whitespace around it, nothing else; strings hold no raw control
 * bytes, only the escapes of section 7 (a \u high surrogate must be
 * followed by a \u low one, a lone low surrogate is refused), and are
 * well-formed UTF-8 by the table of RFC 3629 section 4 (written out here
 * independently of common/outbuf.c, which it checks). cJSON is more
 * lenient on all of these, so it cannot be the judge.
 *
 * Header-only: static functions, included by a single test file. */
#ifndef EDGEPROXY_TEST_JSON_STRICT_H
#define EDGEPROXY_TEST_JSON_STRICT_H

#include <stdbool.h>
#include <stddef.h>

struct js {
    const unsigned char *p, *end;
    int depth;
};

static bool js_value(struct js *j);

static void js_ws(struct js *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool js_lit(struct js *j, const char *w)
{
    for (; *w; w++, j->p++)
        if (j->p >= j->end || *j->p != (unsigned char)*w)
            return false;
    return true;
}

static bool js_in(const struct js *j, size_t k, unsigned char lo, unsigned char hi)
{
    return j->end - j->p > (long)k && j->p[k] >= lo && j->p[k] <= hi;
}

/* RFC 3629 section 4, UTF8-2 / UTF8-3 / UTF8-4, byte by byte. */
static bool js_utf8(struct js *j)
{
    unsigned char c = *j->p;
    size_t n;

    if (c >= 0xc2 && c <= 0xdf)
        n = js_in(j, 1, 0x80, 0xbf) ? 2 : 0;
    else if (c == 0xe0)
        n = js_in(j, 1, 0xa0, 0xbf) && js_in(j, 2, 0x80, 0xbf) ? 3 : 0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        n = js_in(j, 1, 0x80, 0xbf) && js_in(j, 2, 0x80, 0xbf) ? 3 : 0;
    else if (c == 0xed)
        n = js_in(j, 1, 0x80, 0x9f) && js_in(j, 2, 0x80, 0xbf) ? 3 : 0;
    else if (c == 0xf0)
        n = js_in(j, 1, 0x90, 0xbf) && js_in(j, 2, 0x80, 0xbf) && js_in(j, 3, 0x80, 0xbf) ? 4 : 0;
    else if (c >= 0xf1 && c <= 0xf3)
        n = js_in(j, 1, 0x80, 0xbf) && js_in(j, 2, 0x80, 0xbf) && js_in(j, 3, 0x80, 0xbf) ? 4 : 0;
    else if (c == 0xf4)
        n = js_in(j, 1, 0x80, 0x8f) && js_in(j, 2, 0x80, 0xbf) && js_in(j, 3, 0x80, 0xbf) ? 4 : 0;
    else
        n = 0;
    j->p += n;
    return n > 0;
}

/* After "\u": 4 hex digits; -1 if not. */
static long js_hex4(struct js *j)
{
    long v = 0;

    if (j->end - j->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static bool js_string(struct js *j)
{
    if (!js_lit(j, "\""))
        return false;
    while (j->p < j->end) {
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            if (!js_utf8(j))
                return false;
            continue;
        }
        j->p++;
        if (c != '\\')
            continue;
        if (j->p >= j->end)
            return false;
        c = *j->p++;
        if (c == 'u') {
            long u = js_hex4(j);
            if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
                return false;
            if (u >= 0xd800 && u <= 0xdbff) {
                long lo;
                if (!js_lit(j, "\\u") || (lo = js_hex4(j)) < 0xdc00 || lo > 0xdfff)
                    return false;
            }
        } else if (!(c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                     c == 'r' || c == 't')) {
            return false;
        }
    }
    return false;
}

static bool js_digits(struct js *j)
{
    const unsigned char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static bool js_number(struct js *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!js_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!js_digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!js_digits(j))
            return false;
    }
    return true;
}

/* Object or array: open, members separated by ',', close. */
static bool js_container(struct js *j, unsigned char close, bool keyed)
{
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    for (;;) {
        if (keyed) {
            js_ws(j);
            if (!js_string(j))
                return false;
            js_ws(j);
            if (!js_lit(j, ":"))
                return false;
        }
        if (!js_value(j))
            return false;
        if (j->p >= j->end)
            return false;
        if (*j->p == close) {
            j->p++;
            return true;
        }
        if (*j->p++ != ',')
            return false;
    }
}

static bool js_value(struct js *j)
{
    bool ok;

    js_ws(j);
    if (j->p >= j->end || ++j->depth > 64)
        return false;
    switch (*j->p) {
    case '{':
        ok = js_container(j, '}', true);
        break;
    case '[':
        ok = js_container(j, ']', false);
        break;
    case '"':
        ok = js_string(j);
        break;
    case 't':
        ok = js_lit(j, "true");
        break;
    case 'f':
        ok = js_lit(j, "false");
        break;
    case 'n':
        ok = js_lit(j, "null");
        break;
    default:
        ok = js_number(j);
        break;
    }
    j->depth--;
    js_ws(j);
    return ok;
}

/* s[0..n) is exactly one JSON text. */
static inline bool json_strict_valid(const char *s, size_t n)
{
    struct js j = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
    return js_value(&j) && j.p == j.end;
}

#endif
