/* libFuzzer: clienthello_parse (common/clienthello.c).
 *
 * Input: byte 0 mode, bytes 1-2 a split point, byte 3 a record size (0 =
 * 16384), then the payload, which by mode % 4 is:
 *   0 the client's bytes, as they are;
 *   1 a ClientHello body: the harness adds the handshake header and cuts it
 *     into records of that size, so mutations reach the extensions without
 *     breaking the outer lengths;
 *   2 a host_name: put in a server_name extension of a fixed hello, every
 *     length right, so the name checks see any bytes;
 *   3 extensions as (type16, len8, data) tuples, serialised with right
 *     16-bit lengths into a fixed hello.
 * Bit 2 of the mode picks the size the message is re-cut into (below).
 *
 * Invariants, besides memory safety (every parse runs on an exact-size heap
 * copy):
 * - split: the answer on bytes [0, k) is NEED_MORE, or the answer on the
 *   whole input (BAD with the same message, or the same byte count and
 *   info), whatever k;
 * - a success is at most the input, at most CLIENTHELLO_MAX_INPUT, with a
 *   message within CLIENTHELLO_MAX_MSG;
 * - a returned SNI is 1..253 bytes of [a-z0-9_-] labels of 1..63 bytes
 *   joined by dots, NUL-terminated at sni_len, not ending in a number, and
 *   egress_name_normalize gives it back unchanged;
 * - the same message re-cut into records of another size (the record size
 *   byte) parses to the same info but the record count;
 * - NULL out and err change nothing; BAD always carries a message.
 *
 * Seeds (corpus/clienthello/): the unit tests' openssl captures and crafted
 * hellos (test/unit/fixtures/clienthello_fixtures.h), each raw with a few
 * split points and record sizes, and as a wrapped body; names and extension
 * lists for modes 2 and 3; an HTTP request, an SSH banner, an SSLv2 hello. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clienthello.h"
#include "egress_policy.h"

static int parse_copy(const uint8_t *data, size_t len, struct clienthello_info *info, char *err,
                      size_t errlen)
{
    unsigned char *copy = malloc(len ? len : 1);
    int rc;

    memcpy(copy, data, len);
    memset(info, 0x5a, sizeof(*info));
    memset(err, 'x', errlen);
    rc = clienthello_parse(copy, len, info, err, errlen);
    free(copy);
    assert(memchr(err, '\0', errlen) != NULL);
    assert(rc == CLIENTHELLO_NEED_MORE || rc == CLIENTHELLO_BAD || (rc > 0 && (size_t)rc <= len));
    if (rc == CLIENTHELLO_BAD)
        assert(err[0] != '\0');
    if (len >= CLIENTHELLO_MAX_INPUT)
        assert(rc != CLIENTHELLO_NEED_MORE);
    return rc;
}

static void check_info(const struct clienthello_info *in, int rc)
{
    size_t i, label = 0, last = 0;

    assert(rc <= CLIENTHELLO_MAX_INPUT);
    assert(in->msg_len >= 4 && in->msg_len <= CLIENTHELLO_MAX_MSG);
    assert(in->records >= 1 && in->records <= in->msg_len);
    assert((size_t)rc == in->msg_len + 5 * in->records);
    assert(in->legacy_version >> 8 == 3 && in->record_version >> 8 == 3);
    assert(in->max_version >= in->legacy_version);
    if (in->tls13)
        assert(in->max_version >= 0x0304);
    if (!in->has_sni) {
        assert(in->sni_len == 0 && in->sni[0] == '\0');
        return;
    }
    assert(in->sni_len >= 1 && in->sni_len <= EGRESS_NAME_MAX);
    assert(strlen(in->sni) == in->sni_len);
    for (i = 0; i < in->sni_len; i++) {
        char c = in->sni[i];
        if (c == '.') {
            assert(label > 0);
            label = 0;
            last = i + 1;
            continue;
        }
        assert((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
        assert(++label <= 63);
    }
    assert(label > 0); /* no trailing dot left */
    /* the last label is not a number (no IPv4 literal) */
    assert(strspn(in->sni + last, "0123456789") < in->sni_len - last);
    /* already in the policy's normal form */
    {
        char again[EGRESS_NAME_MAX + 1];
        assert(egress_name_normalize(in->sni, in->sni_len, false, again, sizeof(again)) ==
               (int)in->sni_len);
        assert(strcmp(again, in->sni) == 0);
    }
}

/* msg (a handshake message) in records of `frag` bytes into out; returns
 * the length. */
static size_t wrap(uint8_t *out, const uint8_t *msg, size_t n, size_t frag)
{
    size_t o = 0;

    for (size_t off = 0; off < n; off += frag) {
        size_t k = n - off < frag ? n - off : frag;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, msg + off, k);
        o += k;
    }
    return o;
}

/* The handshake message inside the records of a successful parse. */
static size_t unwrap(uint8_t *msg, const uint8_t *buf, size_t consumed)
{
    size_t pos = 0, n = 0;

    while (pos < consumed) {
        size_t rl = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        memcpy(msg + n, buf + pos + 5, rl);
        n += rl;
        pos += 5 + rl;
    }
    assert(pos == consumed);
    return n;
}

static size_t put16(uint8_t *o, size_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
    return 2;
}

/* A ClientHello body into out (room for 2 * n + 60 bytes) from the payload
 * p[0..n), by mode (see the top). */
static size_t build_body(uint8_t *out, int mode, const uint8_t *p, size_t n)
{
    size_t o = 0, ext_at;

    if (mode == 1) {
        memcpy(out, p, n);
        return n;
    }
    o += put16(out + o, 0x0303);
    memset(out + o, 0x11, 32); /* random */
    o += 32;
    out[o++] = 0; /* session id */
    o += put16(out + o, 2);
    o += put16(out + o, 0x1301);
    out[o++] = 1;
    out[o++] = 0;
    ext_at = o;
    o += 2; /* extensions length, below */
    if (mode == 2) {
        o += put16(out + o, 0x0000);
        o += put16(out + o, n + 5);
        o += put16(out + o, n + 3);
        out[o++] = 0;
        o += put16(out + o, n);
        memcpy(out + o, p, n);
        o += n;
    } else {
        size_t i = 0;
        while (i + 3 <= n) {
            size_t l = p[i + 2], take = l < n - i - 3 ? l : n - i - 3;
            out[o++] = p[i];
            out[o++] = p[i + 1];
            o += put16(out + o, take);
            memcpy(out + o, p + i + 3, take);
            o += take;
            i += 3 + take;
        }
    }
    put16(out + ext_at, o - ext_at - 2);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct clienthello_info full, part, again;
    char err[192], err_full[192];
    uint8_t *buf, *msg;
    size_t n, split, frag;
    int rc, rc2;

    if (size < 4)
        return 0;
    split = (size_t)data[1] << 8 | data[2];
    frag = data[3] ? data[3] : 16384;
    if (data[0] % 4 != 0) {
        size_t body;
        msg = malloc(2 * size + 64);
        body = build_body(msg + 4, data[0] % 4, data + 4, size - 4);
        msg[0] = 1;
        msg[1] = (uint8_t)(body >> 16);
        msg[2] = (uint8_t)(body >> 8);
        msg[3] = (uint8_t)body;
        buf = malloc((body + 4) * 6 + 5);
        n = wrap(buf, msg, body + 4, frag);
        free(msg);
    } else {
        n = size - 4;
        buf = malloc(n ? n : 1);
        memcpy(buf, data + 4, n);
    }
    split %= n + 1;

    rc = parse_copy(buf, n, &full, err_full, sizeof(err_full));
    if (rc > 0)
        check_info(&full, rc);

    /* Split in two: the first part alone. */
    rc2 = parse_copy(buf, split, &part, err, sizeof(err));
    if (rc2 == CLIENTHELLO_BAD) {
        assert(rc == CLIENTHELLO_BAD);
        assert(strcmp(err, err_full) == 0);
    } else if (rc2 > 0) {
        assert(rc2 == rc);
        assert(memcmp(&part, &full, sizeof(part)) == 0);
    }
    if (split == n)
        assert(rc2 == rc);

    /* NULL out and err. */
    assert(clienthello_parse(buf, n, NULL, NULL, 0) == rc);

    /* The same message in records of another size. */
    if (rc > 0) {
        size_t mlen, frag2 = (data[3] % 7) + 1, n2;
        uint8_t *rebuf;
        msg = malloc(full.msg_len);
        mlen = unwrap(msg, buf, (size_t)rc);
        assert(mlen == full.msg_len);
        if (data[0] & 4)
            frag2 = 16384;
        rebuf = malloc(mlen * 6 + 5);
        n2 = wrap(rebuf, msg, mlen, frag2);
        rc2 = parse_copy(rebuf, n2, &again, err, sizeof(err));
        if (n2 > CLIENTHELLO_MAX_INPUT) {
            assert(rc2 == CLIENTHELLO_BAD);
        } else {
            assert(rc2 == (int)n2);
            assert(again.records == (mlen + frag2 - 1) / frag2);
            again.records = full.records;
            /* the first record's version is the harness's, not the input's */
            again.record_version = full.record_version;
            assert(memcmp(&again, &full, sizeof(again)) == 0);
        }
        free(rebuf);
        free(msg);
    }
    free(buf);
    return 0;
}
