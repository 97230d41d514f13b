/* TLS ClientHello parser (clienthello.h).
 *
 * Two passes over the bytes, both re-run from the first byte on every call
 * (picohttpparser style; a hello is parsed once or twice per connection):
 *
 * 1. records_scan walks the record layer (RFC 8446 section 5.1) in byte
 *    order, checking each field as soon as its bytes are in: content type
 *    22, version 0x03xx, length 1..2^14, the handshake header (type 1,
 *    24-bit length under the cap) even when it is itself split over records,
 *    and that the last record ends exactly where the message does. Because
 *    every check depends only on bytes before it, a prefix that is BAD stays
 *    BAD with the same message, and NEED_MORE is answered only for prefixes.
 * 2. Once the whole message is in, hello_parse reads it through a cursor
 *    that steps over the record headers (no copy, no 16 KiB buffer), strict
 *    about every length (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2).
 *
 * Nothing is allocated; `buf` is borrowed for the call only. */
#include "clienthello.h"

#include <stdio.h>
#include <string.h>

#include "egress_policy.h"
#include "errf.h"

_Static_assert(CLIENTHELLO_BAD == -1, "errf's -1 is CLIENTHELLO_BAD");
_Static_assert(CLIENTHELLO_SNI_MAX >= EGRESS_NAME_MAX, "sni holds any normalised name");

#define REC_HDR 5
#define HS_HDR 4
/* RFC 8446 section 5.1: "The length MUST NOT exceed 2^14 bytes." */
#define REC_MAX 16384
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1

#define EXT_SERVER_NAME 0x0000    /* RFC 6066 section 3 */
#define EXT_ALPN 0x0010           /* RFC 7301 section 3.1 */
#define EXT_PRE_SHARED_KEY 0x0029 /* RFC 8446 section 4.2.11 */
#define EXT_SUPPORTED_VERS 0x002b /* RFC 8446 section 4.2.1 */
#define EXT_ECH 0xfe0d            /* draft-ietf-tls-esni section 5 */

/* What records_scan learnt: where the message lies. */
struct scan {
    size_t consumed;   /* end of the last record of the message */
    size_t msg_len;    /* handshake header + body */
    size_t first_len;  /* payload length of the first record */
    size_t records;    /* records the message took */
    uint16_t rec_vers; /* legacy_record_version of the first record */
};

static int too_many(size_t nrec, size_t pos, char *err, size_t errlen)
{
    return errf(err, errlen, "record %zu at byte %zu: ClientHello spread over more than %d bytes",
                nrec, pos, CLIENTHELLO_MAX_INPUT);
}

/* Pass 1. Returns 0 with *s filled when the whole message is in, else
 * NEED_MORE or BAD. */
static int records_scan(const unsigned char *buf, size_t len, struct scan *s, char *err,
                        size_t errlen)
{
    size_t pos = 0, got = 0, need = 0, nrec = 0;
    unsigned char hs[HS_HDR];

    for (;;) {
        size_t rlen, avail, i;

        /* Decided on pos alone, so that with CLIENTHELLO_MAX_INPUT bytes
         * in, the answer is never NEED_MORE. */
        if (pos + REC_HDR + 1 > CLIENTHELLO_MAX_INPUT)
            return too_many(nrec, pos, err, errlen);
        if (len - pos < 1)
            return CLIENTHELLO_NEED_MORE;
        if (buf[pos] != CT_HANDSHAKE) {
            /* RFC 5246 appendix E.2: an SSL 2.0 CLIENT-HELLO starts with a
             * 2-byte length whose top bit is set. RFC 6176 forbids SSL 2.0
             * and RFC 8446 appendix D.5 the compatible hello. */
            if (pos == 0 && (buf[0] & 0x80))
                return errf(err, errlen, "SSLv2-compatible ClientHello refused (byte 0 is 0x%02x)",
                            buf[0]);
            return errf(err, errlen, "record %zu at byte %zu: content type %u, not handshake (22)",
                        nrec, pos, buf[pos]);
        }
        if (len - pos < 2)
            return CLIENTHELLO_NEED_MORE;
        if (buf[pos + 1] != 3)
            return errf(err, errlen, "record %zu at byte %zu: version 0x%02x.., not 0x03xx", nrec,
                        pos, buf[pos + 1]);
        if (len - pos < REC_HDR)
            return CLIENTHELLO_NEED_MORE;
        rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        /* RFC 8446 section 5.1: "Implementations MUST NOT send zero-length
         * fragments of Handshake types". */
        if (rlen == 0)
            return errf(err, errlen, "record %zu at byte %zu: empty handshake record", nrec, pos);
        if (rlen > REC_MAX)
            return errf(err, errlen, "record %zu at byte %zu: length %zu over 2^14", nrec, pos,
                        rlen);
        if (pos + REC_HDR + rlen > CLIENTHELLO_MAX_INPUT)
            return too_many(nrec, pos, err, errlen);
        /* The record that ends the hello must end with it: the client's
         * next handshake message only follows the server's flight, and
         * what comes after the hello (ChangeCipherSpec, early data) is in
         * records of its own. */
        if (need != 0 && got + rlen > need)
            return errf(err, errlen, "record %zu at byte %zu: %zu bytes past the ClientHello", nrec,
                        pos, got + rlen - need);
        if (nrec == 0)
            s->rec_vers = (uint16_t)(buf[pos + 1] << 8 | buf[pos + 2]);
        if (nrec == 0)
            s->first_len = rlen;

        /* The handshake header may itself be split over records. */
        avail = len - pos - REC_HDR < rlen ? len - pos - REC_HDR : rlen;
        for (i = 0; got + i < HS_HDR && i < avail; i++) {
            size_t k = got + i;
            hs[k] = buf[pos + REC_HDR + i];
            if (k == 0 && hs[0] != HS_CLIENT_HELLO)
                return errf(err, errlen, "handshake type %u, not client_hello (1)", hs[0]);
            if (k == HS_HDR - 1) {
                size_t body = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
                if (HS_HDR + body > CLIENTHELLO_MAX_MSG)
                    return errf(err, errlen, "handshake length %zu over the %d-byte cap", body,
                                CLIENTHELLO_MAX_MSG);
                need = HS_HDR + body;
                if (got + rlen > need)
                    return errf(err, errlen,
                                "record %zu at byte %zu: %zu bytes past the ClientHello", nrec, pos,
                                got + rlen - need);
            }
        }
        if (avail < rlen)
            return CLIENTHELLO_NEED_MORE;
        got += rlen;
        pos += REC_HDR + rlen;
        nrec++;
        if (need != 0 && got == need) {
            s->consumed = pos;
            s->msg_len = need;
            s->records = nrec;
            return 0;
        }
    }
}

/* Pass 2's reader: a window of `left` message bytes starting at buf[pos],
 * where rec_left bytes remain in the current record; the next record's
 * header follows. Only used on a message records_scan found complete, so
 * every header it steps over is there and valid, and no window is larger
 * than what is left of the message. */
struct cur {
    const unsigned char *buf;
    size_t pos;      /* input offset of the next byte */
    size_t rec_left; /* payload bytes left in the current record */
    size_t left;     /* bytes left in this window */
    size_t off;      /* message offset of the next byte, for errors */
};

/* Moves n bytes (n <= c->left) into dst, or past them when dst is NULL. */
static void cur_take(struct cur *c, unsigned char *dst, size_t n)
{
    c->left -= n;
    c->off += n;
    while (n > 0) {
        size_t k;
        if (c->rec_left == 0) {
            c->rec_left = (size_t)c->buf[c->pos + 3] << 8 | c->buf[c->pos + 4];
            c->pos += REC_HDR;
        }
        k = n < c->rec_left ? n : c->rec_left;
        if (dst != NULL) {
            memcpy(dst, c->buf + c->pos, k);
            dst += k;
        }
        c->pos += k;
        c->rec_left -= k;
        n -= k;
    }
}

/* Big-endian integer of n (1..3) bytes; -1 if the window is shorter. */
static int cur_uint(struct cur *c, size_t n, uint32_t *v)
{
    unsigned char b[3];

    *v = 0;
    if (n > c->left)
        return -1;
    cur_take(c, b, n);
    for (size_t i = 0; i < n; i++)
        *v = *v << 8 | b[i];
    return 0;
}

/* A vector: an n-byte length, then that many bytes, which become the window
 * *sub while c moves past them. Lengths outside [min, max] or running past
 * c's window are BAD, naming `what`. */
static int cur_vec(struct cur *c, size_t n, size_t min, size_t max, const char *what,
                   struct cur *sub, char *err, size_t errlen)
{
    size_t at = c->off;
    uint32_t l;

    if (cur_uint(c, n, &l) == -1)
        return errf(err, errlen, "%s: length field cut short at message byte %zu", what, at);
    if (l > c->left)
        return errf(err, errlen, "%s: length %u at message byte %zu runs past its block (%zu left)",
                    what, l, at, c->left);
    if (l < min || l > max)
        return errf(err, errlen, "%s: length %u at message byte %zu outside %zu..%zu", what, l, at,
                    min, max);
    *sub = *c;
    sub->left = l;
    cur_take(c, NULL, l);
    return 0;
}

static int is_grease(uint32_t v)
{
    /* RFC 8701 section 2: 0x0a0a, 0x1a1a, ..., 0xfafa. */
    return (v >> 8) == (v & 0xff) && (v & 0x0f) == 0x0a;
}

/* RFC 6066 section 3: "HostName contains the fully qualified DNS hostname
 * of the server, as understood by the client ... ASCII encoding without a
 * trailing dot ... Literal IPv4 and IPv6 addresses are not permitted".
 * The name is normalised by the one rule the policy matches with
 * (egress_name_normalize: lower case, one trailing dot dropped, [a-z0-9_-]
 * labels of 1..63 bytes, at most 253, the last label not all digits), so
 * what the SNI says and what allowOut names compare byte for byte. Any
 * other byte (NUL, UTF-8: IDNs come as punycode) makes the hello BAD, as an
 * IP literal does. */
static int sni_check(const unsigned char *name, size_t n, size_t at, struct clienthello_info *out,
                     char *err, size_t errlen)
{
    char shown[4 * 64 + 4];
    size_t i, k = 0;
    int len = egress_name_normalize((const char *)name, n, false, out->sni, sizeof(out->sni));

    if (len >= 0) {
        out->sni_len = (size_t)len;
        out->has_sni = true;
        return 0;
    }
    /* The name as sent, for the message: visible ASCII, else \xNN. */
    for (i = 0; i < n && i < 64; i++) {
        unsigned char c = name[i];
        if (c > 0x20 && c < 0x7f && c != '"' && c != '\\')
            shown[k++] = (char)c;
        else
            k += (size_t)snprintf(shown + k, sizeof(shown) - k, "\\x%02x", c);
    }
    shown[k] = '\0';
    out->sni[0] = '\0';
    return errf(err, errlen,
                "server_name \"%s\"%s (%zu bytes at message byte %zu) is not a DNS host name",
                shown, n > 64 ? "..." : "", n, at);
}

/* server_name extension data: a ServerNameList of exactly one host_name
 * (RFC 6066 section 3: "MUST NOT contain more than one name of the same
 * name_type"; host_name is the only type, and its successors cannot be
 * parsed, so like OpenSSL we take no other). */
static int ext_server_name(struct cur *e, struct clienthello_info *out, char *err, size_t errlen)
{
    unsigned char name[CLIENTHELLO_SNI_MAX];
    struct cur list, hn;
    uint32_t type;
    size_t at, n;

    if (cur_vec(e, 2, 1, 0xffff, "server_name list", &list, err, errlen) == -1)
        return -1;
    if (e->left != 0)
        return errf(err, errlen, "server_name: %zu bytes after the list", e->left);
    at = list.off;
    cur_uint(&list, 1, &type); /* the list holds at least one byte */
    if (type != 0)
        return errf(err, errlen, "server_name: name_type %u at message byte %zu, not host_name (0)",
                    type, at);
    if (cur_vec(&list, 2, 1, CLIENTHELLO_SNI_MAX, "host_name", &hn, err, errlen) == -1)
        return -1;
    if (list.left != 0)
        return errf(err, errlen, "server_name: more than one ServerName at message byte %zu",
                    list.off);
    at = hn.off;
    n = hn.left;
    cur_take(&hn, name, n);
    return sni_check(name, n, at, out, err, errlen);
}

/* RFC 7301 section 3.1: ProtocolNameList protocol_name_list<2..2^16-1>,
 * each ProtocolName<1..2^8-1>. */
static int ext_alpn(struct cur *e, struct clienthello_info *out, char *err, size_t errlen)
{
    struct cur list, name;

    if (cur_vec(e, 2, 2, 0xffff, "ALPN list", &list, err, errlen) == -1)
        return -1;
    if (e->left != 0)
        return errf(err, errlen, "ALPN: %zu bytes after the list", e->left);
    while (list.left > 0) {
        if (cur_vec(&list, 1, 1, 0xff, "ALPN protocol name", &name, err, errlen) == -1)
            return -1;
        out->alpn_count++;
    }
    out->has_alpn = true;
    return 0;
}

/* RFC 8446 section 4.2.1: ProtocolVersion versions<2..254> in a hello. */
static int ext_supported_versions(struct cur *e, struct clienthello_info *out, char *err,
                                  size_t errlen)
{
    struct cur list;
    uint32_t v;

    if (cur_vec(e, 1, 2, 254, "supported_versions", &list, err, errlen) == -1)
        return -1;
    if (e->left != 0 || list.left % 2 != 0)
        return errf(err, errlen, "supported_versions: odd length or bytes after the list");
    while (cur_uint(&list, 2, &v) == 0) {
        if (v == 0x0304)
            out->tls13 = true;
        if (!is_grease(v) && v > out->max_version)
            out->max_version = (uint16_t)v;
    }
    return 0;
}

/* draft-ietf-tls-esni section 5: ECHClientHello is either outer(0)
 * {HpkeSymmetricCipherSuite cipher_suite; uint8 config_id; opaque
 * enc<0..2^16-1>; opaque payload<1..2^16-1>} or inner(1) with nothing. */
static int ext_ech(struct cur *e, struct clienthello_info *out, char *err, size_t errlen)
{
    struct cur v;
    uint32_t type, x;
    size_t at = e->off;

    if (cur_uint(e, 1, &type) == -1)
        return errf(err, errlen, "encrypted_client_hello: empty at message byte %zu", at);
    if (type == 0) {
        if (cur_uint(e, 2, &x) == -1 || cur_uint(e, 2, &x) == -1 || cur_uint(e, 1, &x) == -1)
            return errf(err, errlen, "encrypted_client_hello: cut short at message byte %zu",
                        e->off);
        if (cur_vec(e, 2, 0, 0xffff, "encrypted_client_hello enc", &v, err, errlen) == -1 ||
            cur_vec(e, 2, 1, 0xffff, "encrypted_client_hello payload", &v, err, errlen) == -1)
            return -1;
    } else if (type != 1) {
        return errf(err, errlen, "encrypted_client_hello: type %u at message byte %zu", type, at);
    }
    if (e->left != 0)
        return errf(err, errlen, "encrypted_client_hello: %zu bytes after its fields", e->left);
    out->ech = true;
    return 0;
}

/* Pass 2: the body of a complete message (RFC 8446 section 4.1.2):
 *   legacy_version, random[32], legacy_session_id<0..32>,
 *   cipher_suites<2..2^16-2>, legacy_compression_methods<1..2^8-1>,
 *   extensions<8..2^16-1> (RFC 5246 section 7.4.1.2: absent or <0..>).
 */
static int hello_parse(const unsigned char *buf, const struct scan *s, struct clienthello_info *out,
                       char *err, size_t errlen)
{
    struct cur c = {buf, REC_HDR, s->first_len, s->msg_len, 0}, v, exts;
    uint64_t seen[65536 / 64];
    uint32_t ver, type;
    size_t at;
    int psk_seen = 0;

    cur_take(&c, NULL, HS_HDR);
    if (cur_uint(&c, 2, &ver) == -1)
        return errf(err, errlen, "ClientHello: cut short at legacy_version");
    if (ver >> 8 != 3)
        return errf(err, errlen, "ClientHello: legacy_version 0x%04x, not 0x03xx", ver);
    out->legacy_version = out->max_version = (uint16_t)ver;
    if (c.left < 32)
        return errf(err, errlen, "ClientHello: cut short in random");
    cur_take(&c, NULL, 32);
    if (cur_vec(&c, 1, 0, 32, "legacy_session_id", &v, err, errlen) == -1)
        return -1;
    at = c.off;
    if (cur_vec(&c, 2, 2, 0xfffe, "cipher_suites", &v, err, errlen) == -1)
        return -1;
    if (v.left % 2 != 0)
        return errf(err, errlen, "cipher_suites: odd length %zu at message byte %zu", v.left, at);
    if (cur_vec(&c, 1, 1, 0xff, "legacy_compression_methods", &v, err, errlen) == -1)
        return -1;
    if (c.left == 0)
        return 0; /* a TLS 1.0-1.2 hello may end here: no extensions */
    at = c.off;
    if (cur_vec(&c, 2, 0, 0xffff, "extensions", &exts, err, errlen) == -1)
        return -1;
    if (c.left != 0)
        return errf(err, errlen, "extensions: block at message byte %zu leaves %zu bytes over", at,
                    c.left);

    memset(seen, 0, sizeof(seen));
    while (exts.left > 0) {
        struct cur e;
        int rc = 0;

        at = exts.off;
        if (cur_uint(&exts, 2, &type) == -1)
            return errf(err, errlen, "extensions: cut short at message byte %zu", at);
        /* RFC 8446 section 4.2.11: pre_shared_key "MUST be the last extension
         * in the ClientHello". */
        if (psk_seen)
            return errf(err, errlen, "extension 0x%04x at message byte %zu after pre_shared_key",
                        type, at);
        /* RFC 8446 section 4.2: "There MUST NOT be more than one extension
         * of the same type in a given extension block." */
        if (seen[type / 64] & (UINT64_C(1) << (type % 64)))
            return errf(err, errlen, "extension 0x%04x at message byte %zu appears twice", type,
                        at);
        seen[type / 64] |= UINT64_C(1) << (type % 64);
        if (cur_vec(&exts, 2, 0, 0xffff, "extension", &e, err, errlen) == -1)
            return -1;
        out->ext_count++;
        switch (type) {
        case EXT_SERVER_NAME:
            rc = ext_server_name(&e, out, err, errlen);
            break;
        case EXT_ALPN:
            rc = ext_alpn(&e, out, err, errlen);
            break;
        case EXT_SUPPORTED_VERS:
            rc = ext_supported_versions(&e, out, err, errlen);
            break;
        case EXT_ECH:
            rc = ext_ech(&e, out, err, errlen);
            break;
        case EXT_PRE_SHARED_KEY:
            psk_seen = 1;
            break;
        default:
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int clienthello_parse(const unsigned char *buf, size_t len, struct clienthello_info *out, char *err,
                      size_t errlen)
{
    struct clienthello_info info;
    struct scan s = {0};
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    rc = records_scan(buf, len, &s, err, errlen);
    if (rc != 0)
        return rc;
    memset(&info, 0, sizeof(info));
    if (hello_parse(buf, &s, &info, err, errlen) == -1)
        return CLIENTHELLO_BAD;
    info.record_version = s.rec_vers;
    info.msg_len = s.msg_len;
    info.records = s.records;
    if (out != NULL)
        *out = info;
    return (int)s.consumed;
}
