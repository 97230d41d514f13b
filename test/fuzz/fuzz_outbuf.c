/* libFuzzer: common/outbuf.c, the bounded writer.
 *
 * Input: c0 mode, c1-c2 capacity, c3-c4 budget, then data.
 *   mode bit 0 clear: the data is one JSON string, written with
 *     outbuf_json_str under the budget into a heap buffer of exactly the
 *     capacity (ASan sees any byte past it), after a prefix of c0 >> 1
 *     bytes. Invariants: len <= cap; not truncated means the output is
 *     '"' body '"' with the body within budget, strict JSON
 *     (test/json_strict.h: RFC 8259 + well-formed UTF-8), and its decoding
 *     is the input (each U+FFFD standing for one input byte, or for itself),
 *     all of it when the call says whole; the counting writer (buf NULL)
 *     gives the same length.
 *   mode bit 0 set: the data is a program of appends (bytes, numbers, JSON
 *     strings) run on a buffer of the capacity and on a large one: the small
 *     one holds a prefix of the large one's output, all of it when not
 *     truncated, and never changes after it is truncated. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../json_strict.h"
#include "outbuf.h"

#define BIG (64 * 1024)

/* Decodes the body the writer made (only the escapes it makes) and matches
 * it against the input; returns the input bytes it accounts for. */
static size_t match_body(const char *b, size_t blen, const uint8_t *in, size_t n)
{
    size_t i = 0, k = 0;

    while (k < blen) {
        uint8_t c = (uint8_t)b[k];
        if (c == '\\') {
            assert(k + 1 < blen);
            char e = b[k + 1];
            if (e == '"' || e == '\\') {
                assert(i < n && in[i] == (uint8_t)e);
                i++;
                k += 2;
                continue;
            }
            assert(e == 'u' && k + 6 <= blen);
            if (memcmp(b + k, "\\ufffd", 6) == 0) {
                /* one ill-formed input byte */
                assert(i < n && in[i] >= 0x80);
                i++;
            } else {
                assert(memcmp(b + k, "\\u00", 4) == 0);
                unsigned v = (unsigned)strtoul((char[3]){b[k + 4], b[k + 5], 0}, NULL, 16);
                assert(v < 0x20 || v == 0x7f);
                assert(i < n && in[i] == v);
                i++;
            }
            k += 6;
            continue;
        }
        assert(c >= 0x20 && c != '"');
        assert(i < n && in[i] == c);
        i++;
        k++;
    }
    return i;
}

static void one_string(const uint8_t *data, size_t size, size_t cap, size_t budget, size_t pre)
{
    char *buf = malloc(cap ? cap : 1);
    struct outbuf ob, count;

    outbuf_init(&ob, buf, cap);
    for (size_t i = 0; i < pre; i++)
        outbuf_lit(&ob, "p");
    size_t start = ob.len;
    bool whole = outbuf_json_str(&ob, (const char *)data, size, budget);
    assert(ob.len <= cap);
    if (!ob.truncated) {
        size_t len = ob.len - start;
        const char *s = buf + start;
        assert(len >= 2 && len <= budget + 2);
        assert(s[0] == '"' && s[len - 1] == '"');
        assert(json_strict_valid(s, len));
        size_t used = match_body(s + 1, len - 2, data, size);
        assert(used <= size);
        if (whole)
            assert(used == size);
        else
            assert(used < size);

        outbuf_init(&count, NULL, SIZE_MAX);
        assert(outbuf_json_str(&count, (const char *)data, size, budget) == whole);
        assert(count.len == len);
    }
    free(buf);
}

/* Runs the program on ob; returns nothing, the state is in ob. */
static void run_program(struct outbuf *ob, const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t op = p[i++];
        size_t k = (size_t)(op >> 2) + 1;
        if (k > n - i)
            k = n - i;
        switch (op & 3) {
        case 0:
            outbuf_put(ob, p + i, k);
            break;
        case 1: {
            uint64_t v = 0;
            memcpy(&v, p + i, k < 8 ? k : 8);
            outbuf_uint(ob, v, (unsigned)(op >> 3));
            break;
        }
        case 2: {
            int64_t v = 0;
            memcpy(&v, p + i, k < 8 ? k : 8);
            outbuf_int(ob, v);
            break;
        }
        default:
            outbuf_json_str(ob, (const char *)p + i, k, (size_t)op * 3);
            break;
        }
        i += k;
    }
}

static void program(const uint8_t *data, size_t size, size_t cap)
{
    char *small = malloc(cap ? cap : 1), *big = malloc(BIG);
    struct outbuf a, b;

    outbuf_init(&a, small, cap);
    outbuf_init(&b, big, BIG);
    run_program(&a, data, size);
    run_program(&b, data, size);
    assert(!b.truncated);
    assert(a.len <= cap && a.len <= b.len);
    assert(memcmp(small, big, a.len) == 0);
    if (!a.truncated)
        assert(a.len == b.len);
    free(small);
    free(big);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint8_t mode = data[0];
    size_t cap = (size_t)(data[1] << 8 | data[2]) % 8192;
    size_t budget = (size_t)(data[3] << 8 | data[4]);
    data += 5;
    size -= 5;
    if (mode & 1)
        program(data, size, cap);
    else
        one_string(data, size, cap, budget, mode >> 1);
    return 0;
}
