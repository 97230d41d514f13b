/* Comma-separated header lists (RFC 9110 section 5.6.1): Connection,
 * Transfer-Encoding, TE, Upgrade and the like. Elements are separated by
 * commas, with optional whitespace (OWS: SP and HTAB) around each; empty
 * elements ("a,,b", a leading or trailing comma, a blank value) are
 * skipped, as the RFC asks of recipients. Pure, header only; nothing is
 * read past `len` (header values are not NUL-terminated). */
#ifndef EDGEPROXY_TOKLIST_H
#define EDGEPROXY_TOKLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

static inline bool ows_char(char c)
{
    return c == ' ' || c == '\t';
}

/* Takes the OWS off both ends of the view (*p, *len). */
static inline void ows_trim(const char **p, size_t *len)
{
    while (*len > 0 && ows_char(**p)) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ows_char((*p)[*len - 1]))
        (*len)--;
}

/* A walk over the elements of one header value. */
struct toklist {
    const char *p, *end;
};

static inline struct toklist toklist_of(const char *val, size_t len)
{
    struct toklist t = {val, val + len};
    return t;
}

/* The next non-empty element, OWS trimmed, in (*tok, *len); false when
 * there is none left. */
static inline bool toklist_next(struct toklist *t, const char **tok, size_t *len)
{
    while (t->p < t->end) {
        const char *start = t->p;
        const char *comma = memchr(start, ',', (size_t)(t->end - start));
        const char *stop = comma ? comma : t->end;
        t->p = comma ? comma + 1 : t->end;
        *tok = start;
        *len = (size_t)(stop - start);
        ows_trim(tok, len);
        if (*len > 0)
            return true;
    }
    return false;
}

/* Is (tok, toklen) one of the value's elements? Case-insensitive, as
 * tokens are (RFC 9110 section 7.6.1: connection options). */
static inline bool toklist_has(const char *val, size_t len, const char *tok, size_t toklen)
{
    struct toklist t = toklist_of(val, len);
    const char *e;
    size_t n;
    while (toklist_next(&t, &e, &n))
        if (n == toklen && strncasecmp(e, tok, toklen) == 0)
            return true;
    return false;
}

#endif
