/* clienthello_parse: real ClientHellos from openssl s_client (and two
 * crafted from one: a post-quantum key share, an ECH extension; see
 * fixtures/make_clienthello.py), cut at every point, re-fragmented into
 * records of every small size, and the ugly inputs: broken lengths at each
 * level, duplicate and odd server names, not TLS at all, the 16 KiB cap.
 * Every parse runs on an exact-size heap copy so ASan catches any read past
 * len, and every input is checked against the incremental contract on all
 * its prefixes (NEED_MORE until complete; BAD stays BAD, same message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clienthello.h"

#include "fixtures/clienthello_fixtures.h"

static char err[256];

static int parse_n(const void *data, size_t len, struct clienthello_info *info)
{
    unsigned char *copy = malloc(len ? len : 1);
    struct clienthello_info scratch;
    int rc;

    assert_non_null(copy);
    memcpy(copy, data, len);
    if (info == NULL)
        info = &scratch;
    memset(info, 0x5a, sizeof(*info));
    memset(err, 'x', sizeof(err));
    rc = clienthello_parse(copy, len, info, err, sizeof(err));
    free(copy);
    assert_non_null(memchr(err, '\0', sizeof(err)));
    if (rc == CLIENTHELLO_BAD)
        assert_true(err[0] != '\0');
    else
        assert_true(rc == CLIENTHELLO_NEED_MORE || (rc > 0 && (size_t)rc <= len));
    return rc;
}

/* The result on the whole input, after checking it against every prefix:
 * NEED_MORE, then BAD with one message for good, or n at length n and the
 * same n and info for every longer prefix. `step` thins the prefixes of big
 * inputs. */
static int parse_all_prefixes(const unsigned char *d, size_t len, size_t step,
                              struct clienthello_info *out, char *msg, size_t msglen)
{
    struct clienthello_info info, first;
    char bad[sizeof(err)] = "";
    int state = CLIENTHELLO_NEED_MORE;

    memset(&first, 0, sizeof(first));
    for (size_t k = 0;; k = k + step > len ? len : k + step) {
        int rc = parse_n(d, k, &info);
        if (state == CLIENTHELLO_NEED_MORE) {
            if (rc > 0) {
                /* a prefix one byte shorter was NEED_MORE (step 1) */
                if (step == 1)
                    assert_int_equal(rc, k);
                first = info;
            } else if (rc == CLIENTHELLO_BAD) {
                snprintf(bad, sizeof(bad), "%s", err);
            }
            state = rc;
        } else if (state == CLIENTHELLO_BAD) {
            assert_int_equal(rc, CLIENTHELLO_BAD);
            assert_string_equal(err, bad);
        } else {
            assert_int_equal(rc, state);
            assert_memory_equal(&info, &first, sizeof(info));
        }
        if (k == len)
            break;
    }
    if (state > 0 && out != NULL)
        *out = first;
    if (msg != NULL)
        snprintf(msg, msglen, "%s", bad);
    return state;
}

/* ---- building hellos ---- */

struct bb {
    unsigned char b[120000];
    size_t n;
};

static void put(struct bb *x, const void *p, size_t n)
{
    assert_true(x->n + n <= sizeof(x->b));
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void put8(struct bb *x, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(x, &c, 1);
}

static void put16(struct bb *x, unsigned v)
{
    put8(x, v >> 8);
    put8(x, v);
}

static void put24(struct bb *x, unsigned v)
{
    put8(x, v >> 16);
    put16(x, v & 0xffff);
}

/* An extension: type, 16-bit length, data. */
static void ext(struct bb *e, unsigned type, const void *data, size_t n)
{
    put16(e, type);
    put16(e, (unsigned)n);
    put(e, data, n);
}

/* server_name extension data with one host_name. */
static void ext_sni(struct bb *e, const char *name, size_t n)
{
    struct bb *d = calloc(1, sizeof(*d));
    put16(d, (unsigned)(n + 3));
    put8(d, 0);
    put16(d, (unsigned)n);
    put(d, name, n);
    ext(e, 0x0000, d->b, d->n);
    free(d);
}

static void ext_sni_s(struct bb *e, const char *name)
{
    ext_sni(e, name, strlen(name));
}

/* A TLS 1.3-style handshake message: header, version 0x0303, random,
 * 32-byte session id, two suites, null compression, then `exts` as the
 * extensions block (none at all when exts is NULL). */
static void hello_msg(struct bb *m, const struct bb *exts)
{
    static const unsigned char random[32] = {1, 2, 3};
    size_t start;

    m->n = 0;
    put8(m, 1);
    put24(m, 0); /* patched below */
    start = m->n;
    put16(m, 0x0303);
    put(m, random, 32);
    put8(m, 32);
    put(m, random, 32);
    put16(m, 4);
    put16(m, 0x1301);
    put16(m, 0x1302);
    put8(m, 1);
    put8(m, 0);
    if (exts != NULL) {
        put16(m, (unsigned)exts->n);
        put(m, exts->b, exts->n);
    }
    size_t body = m->n - start;
    m->b[1] = (unsigned char)(body >> 16);
    m->b[2] = (unsigned char)(body >> 8);
    m->b[3] = (unsigned char)body;
}

/* The message wrapped in records carrying `frag` bytes each. */
static void wrap(struct bb *out, const unsigned char *msg, size_t n, size_t frag)
{
    out->n = 0;
    for (size_t off = 0; off < n; off += frag) {
        size_t k = n - off < frag ? n - off : frag;
        put8(out, 22);
        put16(out, 0x0301);
        put16(out, (unsigned)k);
        put(out, msg + off, k);
    }
}

/* A one-record hello with these extensions. */
static void hello(struct bb *out, const struct bb *exts)
{
    struct bb *m = calloc(1, sizeof(*m));
    hello_msg(m, exts);
    wrap(out, m->b, m->n, 16384);
    free(m);
}

/* The handshake message inside a one-record fixture. */
static const unsigned char *fixture_msg(const unsigned char *rec, size_t len, size_t *n)
{
    assert_int_equal(rec[0], 22);
    assert_int_equal((size_t)(rec[3] << 8 | rec[4]), len - 5);
    *n = len - 5;
    return rec + 5;
}

static struct bb *bb_new(void)
{
    struct bb *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    return x;
}

/* Expects BAD on the whole input, and err to contain `want`. */
static void expect_bad(const struct bb *x, const char *want)
{
    char msg[sizeof(err)];
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, NULL, msg, sizeof(msg)), CLIENTHELLO_BAD);
    if (strstr(msg, want) == NULL)
        fail_msg("error '%s' does not mention '%s'", msg, want);
}

static void expect_bad_raw(const void *d, size_t n, const char *want)
{
    char msg[sizeof(err)];
    assert_int_equal(parse_all_prefixes(d, n, 1, NULL, msg, sizeof(msg)), CLIENTHELLO_BAD);
    if (strstr(msg, want) == NULL)
        fail_msg("error '%s' does not mention '%s'", msg, want);
}

/* ---- real hellos ---- */

#define FIX(a) a, sizeof(a)

static void test_openssl_tls13(void **state)
{
    struct clienthello_info in;

    assert_int_equal(parse_all_prefixes(FIX(ch_tls13), 1, &in, NULL, 0), sizeof(ch_tls13));
    assert_true(in.has_sni);
    assert_string_equal(in.sni, "www.example.com");
    assert_int_equal(in.sni_len, 15);
    assert_true(in.tls13);
    assert_int_equal(in.legacy_version, 0x0303);
    assert_int_equal(in.max_version, 0x0304);
    assert_int_equal(in.record_version, 0x0301);
    assert_false(in.ech);
    assert_false(in.has_alpn);
    assert_int_equal(in.records, 1);
    assert_int_equal(in.msg_len, sizeof(ch_tls13) - 5);
    assert_true(in.ext_count >= 5);
}

static void test_openssl_tls12_normalised(void **state)
{
    struct clienthello_info in;

    /* s_client sent "Api.Example.COM." as it was given */
    assert_int_equal(parse_all_prefixes(FIX(ch_tls12), 1, &in, NULL, 0), sizeof(ch_tls12));
    assert_true(in.has_sni);
    assert_string_equal(in.sni, "api.example.com");
    assert_false(in.tls13);
    assert_int_equal(in.legacy_version, 0x0303);
    assert_int_equal(in.max_version, 0x0303);
}

static void test_openssl_alpn(void **state)
{
    struct clienthello_info in;

    assert_int_equal(parse_all_prefixes(FIX(ch_alpn), 1, &in, NULL, 0), sizeof(ch_alpn));
    assert_string_equal(in.sni, "alpn.example.com");
    assert_true(in.has_alpn);
    assert_int_equal(in.alpn_count, 2);
}

static void test_openssl_no_sni(void **state)
{
    struct clienthello_info in;

    /* valid, just nameless: decided by address later */
    assert_int_equal(parse_all_prefixes(FIX(ch_nosni), 1, &in, NULL, 0), sizeof(ch_nosni));
    assert_false(in.has_sni);
    assert_int_equal(in.sni_len, 0);
    assert_string_equal(in.sni, "");
    assert_true(in.tls13);
}

static void test_post_quantum_size(void **state)
{
    struct clienthello_info in;

    assert_true(sizeof(ch_pq) > 1460); /* more than one Ethernet segment */
    assert_int_equal(parse_all_prefixes(FIX(ch_pq), 1, &in, NULL, 0), sizeof(ch_pq));
    assert_string_equal(in.sni, "www.example.com");
    assert_true(in.tls13);
    assert_int_equal(in.records, 1);
}

static void test_ech_flagged(void **state)
{
    struct clienthello_info in;

    assert_int_equal(parse_all_prefixes(FIX(ch_ech), 1, &in, NULL, 0), sizeof(ch_ech));
    assert_true(in.ech);
    assert_true(in.has_sni); /* the outer, public name */
    assert_string_equal(in.sni, "www.example.com");
}

/* Each fixture in records of 1, 2, 3 (the handshake header split over
 * records), 7, 100, 1000 bytes and two halves: the same answer. */
static void test_split_across_records(void **state)
{
    static const struct {
        const unsigned char *d;
        size_t n;
    } fx[] = {{FIX(ch_tls13)}, {FIX(ch_tls12)}, {FIX(ch_alpn)},
              {FIX(ch_nosni)}, {FIX(ch_pq)},    {FIX(ch_ech)}};
    static const size_t frags[] = {1, 2, 3, 7, 100, 1000, 0};
    struct bb *x = bb_new();

    for (size_t i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
        struct clienthello_info whole, in;
        size_t mlen;
        const unsigned char *m = fixture_msg(fx[i].d, fx[i].n, &mlen);

        assert_int_equal(parse_n(fx[i].d, fx[i].n, &whole), (int)fx[i].n);
        for (size_t f = 0; f < sizeof(frags) / sizeof(frags[0]); f++) {
            size_t frag = frags[f] ? frags[f] : (mlen + 1) / 2;
            wrap(x, m, mlen, frag);
            /* every prefix for the small fragments of the small hellos */
            size_t step = (frag < 7 && mlen > 400) ? 37 : 1;
            assert_int_equal(parse_all_prefixes(x->b, x->n, step, &in, NULL, 0), (int)x->n);
            assert_int_equal(in.records, (mlen + frag - 1) / frag);
            in.records = whole.records;
            assert_memory_equal(&in, &whole, sizeof(in));
        }
    }
    free(x);
}

/* What follows the hello (ChangeCipherSpec, early data, garbage) is not
 * the parser's: the result stays the hello's record bytes. */
static void test_trailing_bytes(void **state)
{
    struct bb *x = bb_new();
    struct clienthello_info in;

    put(x, FIX(ch_pq));
    put(x, "\x14\x03\x03\x00\x01\x01", 6);
    put(x, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, &in, NULL, 0), sizeof(ch_pq));
    free(x);
}

/* ---- lengths ---- */

/* Offsets in a hello() record: 5 record header, 4 handshake header. */
#define O_MSG 5
#define O_BODY 9
#define O_SID (O_BODY + 2 + 32)
#define O_CS (O_SID + 1 + 32)
#define O_COMP (O_CS + 2 + 4)
#define O_EXTS (O_COMP + 2)

static void base_hello(struct bb *x)
{
    struct bb *e = bb_new();
    ext_sni_s(e, "example.com");
    ext(e, 0x002b, "\x04\x03\x04\x03\x03", 5);
    hello(x, e);
    free(e);
}

static void test_base_hello(void **state)
{
    struct bb *x = bb_new();
    struct clienthello_info in;

    base_hello(x);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, &in, NULL, 0), (int)x->n);
    assert_string_equal(in.sni, "example.com");
    assert_true(in.tls13);
    assert_int_equal(in.ext_count, 2);
    free(x);
}

static void test_record_lengths(void **state)
{
    struct bb *x = bb_new();

    /* record one byte short: the hello's last byte is read as the next
     * record's content type */
    base_hello(x);
    x->b[4]--;
    expect_bad(x, "content type");
    /* record one byte long: past the hello, known from the handshake
     * header on */
    base_hello(x);
    x->b[4]++;
    put8(x, 0);
    expect_bad(x, "1 bytes past the ClientHello");
    assert_int_equal(parse_n(x->b, 9, NULL), CLIENTHELLO_BAD);
    /* the last of several records runs past the hello (known from its
     * header: the handshake length came in an earlier record) */
    {
        struct bb *m = bb_new(), *e = bb_new();
        ext_sni_s(e, "example.com");
        hello_msg(m, e);
        wrap(x, m->b, m->n, 10);
        x->b[x->n - (m->n % 10 ? m->n % 10 : 10) - 1]++;
        put8(x, 0);
        expect_bad(x, "1 bytes past the ClientHello");
        /* a record after the handshake header, one byte short */
        wrap(x, m->b, m->n, 10);
        x->b[5 + 10 + 4]--;
        expect_bad(x, "content type");
        free(m);
        free(e);
    }
    /* over 2^14 */
    expect_bad_raw("\x16\x03\x01\x40\x01\x01", 6, "over 2^14");
    /* zero-length record, first or later */
    expect_bad_raw("\x16\x03\x01\x00\x00", 5, "empty handshake record");
    expect_bad_raw("\x16\x03\x01\x00\x02\x01\x00\x16\x03\x01\x00\x00", 12,
                   "empty handshake record");
    /* a later record that is not handshake */
    expect_bad_raw("\x16\x03\x01\x00\x02\x01\x00\x17\x03\x03\x00\x10", 12, "content type 23");
    /* record version */
    expect_bad_raw("\x16\x02\x00\x00\x10", 5, "not 0x03xx");
    expect_bad_raw("\x16\x03\x01\x00\x02\x01\x00\x16\x04\x01\x00\x10", 12, "not 0x03xx");
    free(x);
}

static void test_handshake_lengths(void **state)
{
    struct bb *x = bb_new();

    /* handshake length one short: one record byte past the message */
    base_hello(x);
    x->b[O_MSG + 3]--;
    expect_bad(x, "1 bytes past the ClientHello");
    /* one long: the record ends first; more records expected */
    base_hello(x);
    x->b[O_MSG + 3]++;
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, NULL, NULL, 0), CLIENTHELLO_NEED_MORE);
    /* not client_hello */
    base_hello(x);
    x->b[O_MSG] = 2;
    expect_bad(x, "handshake type 2");
    /* a message with an empty body */
    expect_bad_raw("\x16\x03\x01\x00\x04\x01\x00\x00\x00", 9, "legacy_version");
    /* legacy_version not 3.x */
    base_hello(x);
    x->b[O_BODY] = 2;
    expect_bad(x, "legacy_version 0x0203");
    free(x);
}

static void test_body_lengths(void **state)
{
    struct bb *x = bb_new();

    base_hello(x);
    x->b[O_SID] = 33;
    expect_bad(x, "legacy_session_id: length 33");
    base_hello(x);
    x->b[O_CS + 1] = 3;
    expect_bad(x, "cipher_suites: odd length 3");
    base_hello(x);
    x->b[O_CS + 1] = 0;
    expect_bad(x, "cipher_suites: length 0");
    base_hello(x);
    x->b[O_COMP] = 0;
    expect_bad(x, "legacy_compression_methods: length 0");
    /* extensions block one short: a byte left over; one long: runs past */
    base_hello(x);
    x->b[O_EXTS + 1]--;
    expect_bad(x, "leaves 1 bytes over");
    base_hello(x);
    x->b[O_EXTS + 1]++;
    expect_bad(x, "runs past its block");
    /* the first extension's length (server_name) one long / one short */
    base_hello(x);
    x->b[O_EXTS + 2 + 3]++;
    expect_bad(x, "server_name: 1 bytes after the list");
    base_hello(x);
    x->b[O_EXTS + 2 + 3]--;
    expect_bad(x, "server_name list: length 14 at message byte");
    expect_bad(x, "runs past its block (13 left)");
    /* a lone byte where an extension header should be */
    {
        struct bb *e = bb_new();
        ext_sni_s(e, "example.com");
        put8(e, 0);
        hello(x, e);
        expect_bad(x, "extensions: cut short");
        free(e);
    }
    free(x);
}

static void test_no_extensions(void **state)
{
    struct bb *m = bb_new(), *x = bb_new(), *e = bb_new();
    struct clienthello_info in;

    /* TLS 1.2 allows a hello that ends after compression_methods */
    hello_msg(m, NULL);
    wrap(x, m->b, m->n, 16384);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, &in, NULL, 0), (int)x->n);
    assert_false(in.has_sni);
    assert_int_equal(in.ext_count, 0);
    /* and an empty extensions block */
    hello(x, e);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, &in, NULL, 0), (int)x->n);
    free(m);
    free(x);
    free(e);
}

/* ---- extensions ---- */

static void test_duplicate_extensions(void **state)
{
    struct bb *x = bb_new(), *e = bb_new();

    ext_sni_s(e, "a.example");
    ext_sni_s(e, "b.example");
    hello(x, e);
    expect_bad(x, "extension 0x0000");
    expect_bad(x, "appears twice");
    e->n = 0;
    ext(e, 0x0017, "", 0);
    ext_sni_s(e, "a.example");
    ext(e, 0x0017, "", 0);
    hello(x, e);
    expect_bad(x, "extension 0x0017");
    /* GREASE values differ, so two of them are fine (RFC 8701) */
    e->n = 0;
    ext(e, 0x0a0a, "", 0);
    ext_sni_s(e, "a.example");
    ext(e, 0x1a1a, "\x00", 1);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, NULL), (int)x->n);
    free(x);
    free(e);
}

static void test_pre_shared_key_last(void **state)
{
    struct bb *x = bb_new(), *e = bb_new();

    ext_sni_s(e, "a.example");
    ext(e, 0x0029, "\x00", 1);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, NULL), (int)x->n);
    ext(e, 0x0015, "", 0);
    hello(x, e);
    expect_bad(x, "after pre_shared_key");
    free(x);
    free(e);
}

static void test_two_host_names(void **state)
{
    struct bb *x = bb_new(), *e = bb_new(), *d = bb_new();

    /* a ServerNameList of two host_name entries */
    put16(d, 2 * (3 + 9));
    put8(d, 0);
    put16(d, 9);
    put(d, "a.example", 9);
    put8(d, 0);
    put16(d, 9);
    put(d, "b.example", 9);
    ext(e, 0x0000, d->b, d->n);
    hello(x, e);
    expect_bad(x, "more than one ServerName");
    /* an unknown name_type */
    d->n = 0;
    e->n = 0;
    put16(d, 3 + 9);
    put8(d, 1);
    put16(d, 9);
    put(d, "a.example", 9);
    ext(e, 0x0000, d->b, d->n);
    hello(x, e);
    expect_bad(x, "name_type 1");
    /* an empty list, an empty extension */
    e->n = 0;
    ext(e, 0x0000, "\x00\x00", 2);
    hello(x, e);
    expect_bad(x, "server_name list: length 0");
    e->n = 0;
    ext(e, 0x0000, "", 0);
    hello(x, e);
    expect_bad(x, "server_name list: length field cut short");
    /* the list shorter than the extension */
    d->n = 0;
    e->n = 0;
    put16(d, 3 + 9);
    put8(d, 0);
    put16(d, 9);
    put(d, "a.example", 9);
    put8(d, 0);
    ext(e, 0x0000, d->b, d->n);
    hello(x, e);
    expect_bad(x, "1 bytes after the list");
    free(x);
    free(e);
    free(d);
}

static void expect_name(const char *name, size_t n, const char *want)
{
    struct bb *x = bb_new(), *e = bb_new();
    struct clienthello_info in;

    ext_sni(e, name, n);
    hello(x, e);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 1, &in, NULL, 0), (int)x->n);
    assert_true(in.has_sni);
    assert_string_equal(in.sni, want);
    assert_int_equal(in.sni_len, strlen(want));
    free(x);
    free(e);
}

static void expect_name_bad(const char *name, size_t n, const char *want)
{
    struct bb *x = bb_new(), *e = bb_new();

    ext_sni(e, name, n);
    hello(x, e);
    expect_bad(x, want);
    free(x);
    free(e);
}

#define NAME_OK(s, want) expect_name(s, sizeof(s) - 1, want)
#define NAME_BAD(s, want) expect_name_bad(s, sizeof(s) - 1, want)

/* Names go through egress_name_normalize, the rule allowOut names are
 * normalised by; a refused one is named in the message as sent. */
static void test_server_names(void **state)
{
    char longname[300], want[300];

    NAME_OK("Example.COM", "example.com");
    NAME_OK("www.example.com.", "www.example.com");
    NAME_OK("a", "a");
    NAME_OK("_dmarc.x-y.example", "_dmarc.x-y.example");
    NAME_OK("123.example.com", "123.example.com");
    NAME_OK("xn--bcher-kva.example", "xn--bcher-kva.example");
    NAME_OK("1.2.3.4x", "1.2.3.4x");

    NAME_BAD("", "host_name: length 0");
    NAME_BAD("exa\0mple.com", "server_name \"exa\\x00mple.com\" (12 bytes");
    NAME_BAD("example.com\0", "\"example.com\\x00\"");
    NAME_BAD("exa mple.com", "\"exa\\x20mple.com\"");
    NAME_BAD("b\xc3\xbc"
             "cher.example",
             "\"b\\xc3\\xbccher.example\" (15 bytes at message byte ");
    NAME_BAD("example.com:443", "\"example.com:443\"");
    NAME_BAD("[::1]", "\"[::1]\" (5 bytes");
    NAME_BAD("ex\"am\\ple", "\"ex\\x22am\\x5cple\"");
    NAME_BAD(".", "is not a DNS host name");
    NAME_BAD("example.com..", "is not a DNS host name");
    NAME_BAD(".example.com", "is not a DNS host name");
    NAME_BAD("a..b", "is not a DNS host name");
    /* IPv4 literals: RFC 6066 forbids them; the last label is a number */
    NAME_BAD("1.2.3.4", "\"1.2.3.4\" (7 bytes");
    NAME_BAD("1.2.3.4.", "is not a DNS host name");
    NAME_BAD("127.1", "is not a DNS host name");
    NAME_BAD("2130706433", "is not a DNS host name");

    /* labels of 63; 253 bytes in all, 254 with the trailing dot */
    memset(longname, 'a', sizeof(longname));
    longname[63] = '.';
    longname[127] = '.';
    longname[191] = '.';
    longname[253] = '\0';
    expect_name(longname, 253, longname);
    memcpy(want, longname, 254);
    longname[253] = '.';
    expect_name(longname, 254, want);
    longname[253] = 'a';
    expect_name_bad(longname, 254, "(254 bytes");
    /* long names are shown cut */
    expect_name_bad(longname, 255, "aaa.\"... (255 bytes");
    expect_name_bad(longname, 256, "host_name: length 256");
    memset(longname, 'a', 64);
    expect_name_bad(longname, 64, "is not a DNS host name");
    expect_name(longname, 63, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
}

static void test_alpn_versions_ech(void **state)
{
    struct bb *x = bb_new(), *e = bb_new();
    struct clienthello_info in;

    ext(e, 0x0010, "\x00\x03\x02h2", 5);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, &in), (int)x->n);
    assert_true(in.has_alpn);
    assert_int_equal(in.alpn_count, 1);
    e->n = 0;
    ext(e, 0x0010, "\x00\x04\x02h2\x00", 6);
    hello(x, e);
    expect_bad(x, "ALPN protocol name: length 0");
    e->n = 0;
    ext(e, 0x0010, "\x00\x03\x02h2\x00", 6);
    hello(x, e);
    expect_bad(x, "ALPN: 1 bytes after the list");
    e->n = 0;
    ext(e, 0x0010, "\x00\x00", 2);
    hello(x, e);
    expect_bad(x, "ALPN list: length 0");

    /* supported_versions: GREASE ignored for max_version */
    e->n = 0;
    ext(e, 0x002b, "\x06\x7a\x7a\x03\x04\x03\x03", 7);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, &in), (int)x->n);
    assert_true(in.tls13);
    assert_int_equal(in.max_version, 0x0304);
    e->n = 0;
    ext(e, 0x002b, "\x03\x03\x04\x03", 4);
    hello(x, e);
    expect_bad(x, "supported_versions: odd length");
    e->n = 0;
    ext(e, 0x002b, "\x02\x03\x04\x03", 4);
    hello(x, e);
    expect_bad(x, "supported_versions: odd length or bytes after");
    e->n = 0;
    ext(e, 0x002b, "\x04\x03\x04", 3);
    hello(x, e);
    expect_bad(x, "runs past its block");

    /* ECH: outer well-formed, inner empty, other types and bad lengths */
    e->n = 0;
    ext(e, 0xfe0d, "\x01", 1);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, &in), (int)x->n);
    assert_true(in.ech);
    assert_false(in.has_sni);
    e->n = 0;
    ext(e, 0xfe0d, "\x00\x00\x01\x00\x01\x07\x00\x00\x00\x01\xff", 11);
    hello(x, e);
    assert_int_equal(parse_n(x->b, x->n, &in), (int)x->n);
    assert_true(in.ech);
    e->n = 0;
    ext(e, 0xfe0d, "\x00\x00\x01\x00\x01\x07\x00\x00\x00\x00", 10);
    hello(x, e);
    expect_bad(x, "encrypted_client_hello payload: length 0");
    e->n = 0;
    ext(e, 0xfe0d, "\x02", 1);
    hello(x, e);
    expect_bad(x, "encrypted_client_hello: type 2");
    e->n = 0;
    ext(e, 0xfe0d, "", 0);
    hello(x, e);
    expect_bad(x, "encrypted_client_hello: empty");
    e->n = 0;
    ext(e, 0xfe0d, "\x01\x00", 2);
    hello(x, e);
    expect_bad(x, "1 bytes after its fields");
    free(x);
    free(e);
}

/* ---- not TLS ---- */

static void test_not_tls(void **state)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    static const char ssh[] = "SSH-2.0-OpenSSH_9.2p1\r\n";
    /* SSL 2.0 CLIENT-HELLO (RFC 5246 appendix E.2): length 0x802e, type 1 */
    static const unsigned char v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00};
    /* an alert record */
    static const unsigned char alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28};
    struct clienthello_info in;

    /* decided at the first byte */
    assert_int_equal(parse_n(http, 1, &in), CLIENTHELLO_BAD);
    expect_bad_raw(http, sizeof(http) - 1, "content type 71");
    expect_bad_raw(ssh, sizeof(ssh) - 1, "content type 83");
    expect_bad_raw(v2, sizeof(v2), "SSLv2");
    assert_int_equal(parse_n(v2, 1, &in), CLIENTHELLO_BAD);
    expect_bad_raw(alert, sizeof(alert), "content type 21");
    /* HTTP/2 preface */
    expect_bad_raw("PRI * HTTP/2.0\r\n", 16, "content type 80");
    /* nothing yet */
    assert_int_equal(parse_n("", 0, &in), CLIENTHELLO_NEED_MORE);
}

/* ---- caps ---- */

/* A hello whose message is exactly `msg_len` bytes, padded with a padding
 * extension (RFC 7685). */
static void padded_msg(struct bb *m, size_t msg_len)
{
    struct bb *e = bb_new();
    static unsigned char zeros[70000];
    size_t base;

    ext_sni_s(e, "big.example");
    hello_msg(m, e);
    base = m->n + 4;
    assert_true(msg_len >= base);
    ext(e, 0x0015, zeros, msg_len - base);
    hello_msg(m, e);
    assert_int_equal(m->n, msg_len);
    free(e);
}

static void test_16k_cap(void **state)
{
    struct bb *m = bb_new(), *x = bb_new();
    struct clienthello_info in;

    /* exactly 16 KiB: one full record */
    padded_msg(m, CLIENTHELLO_MAX_MSG);
    wrap(x, m->b, m->n, 16384);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 97, &in, NULL, 0), (int)x->n);
    assert_string_equal(in.sni, "big.example");
    assert_int_equal(in.msg_len, CLIENTHELLO_MAX_MSG);
    /* and in 1000-byte records */
    wrap(x, m->b, m->n, 1000);
    assert_int_equal(parse_all_prefixes(x->b, x->n, 97, &in, NULL, 0), (int)x->n);
    assert_int_equal(in.records, 17);

    /* one byte more: refused as soon as the handshake header is in */
    padded_msg(m, CLIENTHELLO_MAX_MSG + 1);
    wrap(x, m->b, m->n, 16384);
    assert_int_equal(parse_n(x->b, 8, &in), CLIENTHELLO_NEED_MORE);
    assert_int_equal(parse_n(x->b, 9, &in), CLIENTHELLO_BAD);
    assert_non_null(strstr(err, "over the 16384-byte cap"));
    expect_bad(x, "over the 16384-byte cap");
    /* a length far over it, in 1-byte records (the header split too) */
    wrap(x, (const unsigned char *)"\x01\xff\xff\xff", 4, 1);
    expect_bad(x, "handshake length 16777215");

    /* 16 KiB in 1-byte records would take 96 KiB of input: refused once
     * past CLIENTHELLO_MAX_INPUT, never NEED_MORE beyond it */
    padded_msg(m, CLIENTHELLO_MAX_MSG);
    wrap(x, m->b, m->n, 1);
    assert_int_equal(parse_n(x->b, 32760, &in), CLIENTHELLO_NEED_MORE);
    assert_int_equal(parse_n(x->b, CLIENTHELLO_MAX_INPUT, &in), CLIENTHELLO_BAD);
    assert_non_null(strstr(err, "spread over more than 32768 bytes"));
    assert_int_equal(parse_n(x->b, x->n, &in), CLIENTHELLO_BAD);
    /* while the post-quantum hello in 1-byte records still fits */
    {
        size_t mlen;
        const unsigned char *pm = fixture_msg(FIX(ch_pq), &mlen);
        wrap(x, pm, mlen, 1);
        assert_true(x->n <= CLIENTHELLO_MAX_INPUT);
        assert_int_equal(parse_n(x->b, x->n, &in), (int)x->n);
        assert_int_equal(in.records, mlen);
    }
    free(m);
    free(x);
}

static void test_null_out_and_err(void **state)
{
    char small[8];

    assert_int_equal(clienthello_parse(FIX(ch_tls13), NULL, NULL, 0), sizeof(ch_tls13));
    assert_int_equal(clienthello_parse((const unsigned char *)"G", 1, NULL, NULL, 0),
                     CLIENTHELLO_BAD);
    assert_int_equal(clienthello_parse((const unsigned char *)"G", 1, NULL, small, sizeof(small)),
                     CLIENTHELLO_BAD);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    /* err is emptied on success */
    assert_int_equal(clienthello_parse(FIX(ch_tls13), NULL, small, sizeof(small)),
                     sizeof(ch_tls13));
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_tls13),
        cmocka_unit_test(test_openssl_tls12_normalised),
        cmocka_unit_test(test_openssl_alpn),
        cmocka_unit_test(test_openssl_no_sni),
        cmocka_unit_test(test_post_quantum_size),
        cmocka_unit_test(test_ech_flagged),
        cmocka_unit_test(test_split_across_records),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_base_hello),
        cmocka_unit_test(test_record_lengths),
        cmocka_unit_test(test_handshake_lengths),
        cmocka_unit_test(test_body_lengths),
        cmocka_unit_test(test_no_extensions),
        cmocka_unit_test(test_duplicate_extensions),
        cmocka_unit_test(test_pre_shared_key_last),
        cmocka_unit_test(test_two_host_names),
        cmocka_unit_test(test_server_names),
        cmocka_unit_test(test_alpn_versions_ech),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_16k_cap),
        cmocka_unit_test(test_null_out_and_err),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
