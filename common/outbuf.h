/* A bounded writer: every append goes through one capacity check, so no
 * sequence of calls can write past buf[cap]. An append that does not fit
 * stores nothing and marks the writer truncated; once truncated it stores
 * nothing more, so what it holds is always the intended output cut at a
 * boundary between appends, never a fragment of one (an escape, a UTF-8
 * sequence, a number).
 *
 * With buf NULL it only counts (len grows, nothing stored): with cap
 * SIZE_MAX that sizes an output in a first pass. Pure, no allocation. */
#ifndef EDGEPROXY_OUTBUF_H
#define EDGEPROXY_OUTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct outbuf {
    char *buf; /* NULL: count only */
    size_t cap;
    size_t len;     /* bytes appended, always <= cap */
    bool truncated; /* an append did not fit; nothing stored since */
};

void outbuf_init(struct outbuf *ob, char *buf, size_t cap);

/* Appends s[0..n) whole, or nothing (then truncated). false if not stored. */
bool outbuf_put(struct outbuf *ob, const void *s, size_t n);

/* A string literal or a C string. */
#define outbuf_lit(ob, lit) outbuf_put((ob), "" lit, sizeof(lit) - 1)
bool outbuf_str(struct outbuf *ob, const char *s);

/* Decimal, zero-padded to at least min_digits (at most 20). */
bool outbuf_uint(struct outbuf *ob, uint64_t v, unsigned min_digits);
bool outbuf_int(struct outbuf *ob, int64_t v);

/* The body of a JSON string (RFC 8259 section 7), without the quotes:
 * '"' and '\\' backslash-escaped, C0 controls and DEL as \u00XX, well-formed
 * UTF-8 kept as is, and each byte that is not part of a well-formed
 * sequence written as \ufffd (so the output is always valid UTF-8 and valid
 * JSON). Writes at most `budget` bytes: input that does not fit is left out,
 * cut between two escapes or sequences, never inside one. Returns whether
 * all of s[0..n) was written. Cut by the budget, the writer stays usable;
 * cut by its capacity instead, it is marked truncated. */
bool outbuf_json_body(struct outbuf *ob, const char *s, size_t n, size_t budget);

/* '"' body '"', the body cut at `budget` bytes as above. */
bool outbuf_json_str(struct outbuf *ob, const char *s, size_t n, size_t budget);

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 section 4:
 * no overlongs, no surrogates, nothing above U+10FFFF), 0 if ill-formed or
 * cut short. n > 0. */
size_t outbuf_utf8_len(const unsigned char *s, size_t n);

#endif
