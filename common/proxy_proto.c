/* PROXY protocol v1 and v2 header parser (proxy_proto.h), per
 * https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
 *
 * The header arrives in pieces: every call re-parses from the first byte and
 * answers NEED_MORE for a prefix that can still become a valid header, BAD as
 * soon as it cannot (section 2.1: "the receiver must wait for the whole
 * header", and a broken header means the connection is dropped). Nothing is
 * allocated; `buf` is borrowed for the call only. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "errf.h"

/* Section 2.1: "a 108-byte buffer is always enough to store all the line and
 * a trailing zero": 107 bytes including the CRLF. */
#define V1_MAX 107
#define V2_FIXED 16

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A broken header fails with `return errf(...)`: errf returns -1. */
_Static_assert(PROXY_PROTO_BAD == -1, "errf's -1 is PROXY_PROTO_BAD");

/* ---- v1 ---- */

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Could the characters s[0..n) (no terminator seen yet) still be the start of
 * an address of family af? inet_pton is the judge of complete addresses; for
 * a prefix we try the few completions that any viable prefix accepts: nothing,
 * one more digit, a group separator or "::" (IPv6), and the missing dotted
 * quads of an IPv4 literal (alone or as the tail of an IPv6 one). Soundness
 * matters more than speed here: a false "no" would drop a valid header that
 * happened to arrive split. */
static int addr_prefix_viable(int af, const unsigned char *s, size_t n)
{
    static const char *const v6_tails[] = {"", "0", ":", "::", ":0"};
    char tmp[96];
    unsigned char bin[16];
    size_t dots = 0, i;

    if (n > (af == AF_INET ? 15 : 45))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        int ok = is_digit(c) || c == '.' ||
                 (af == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok)
            return 0;
    }
    /* Dotted-quad tail: the dots after the last ':' (all of them for v4). */
    for (i = n; i > 0 && s[i - 1] != ':'; i--)
        if (s[i - 1] == '.')
            dots++;
    if (dots <= 3) {
        size_t k = n;
        memcpy(tmp, s, n);
        if (n > 0 && s[n - 1] == '.')
            tmp[k++] = '0';
        else if (n == 0 || s[n - 1] == ':')
            tmp[k++] = '0';
        for (size_t d = dots; d < 3; d++) {
            tmp[k++] = '.';
            tmp[k++] = '0';
        }
        tmp[k] = '\0';
        if (inet_pton(af, tmp, bin) == 1)
            return 1;
    }
    if (af == AF_INET)
        return 0;
    for (i = 0; i < sizeof(v6_tails) / sizeof(v6_tails[0]); i++) {
        size_t tl = strlen(v6_tails[i]);
        memcpy(tmp, s, n);
        memcpy(tmp + n, v6_tails[i], tl + 1);
        if (inet_pton(af, tmp, bin) == 1)
            return 1;
    }
    return 0;
}

/* Reads an address token starting at *pos up to the next space. 1 complete
 * (ip filled, *pos past the space), 0 need more, -1 bad. */
static int v1_addr(const unsigned char *buf, size_t n, size_t *pos, int af, void *ip)
{
    size_t start = *pos, i = start;
    char tmp[64];

    while (i < n && buf[i] != ' ')
        i++;
    if (i == n)
        return addr_prefix_viable(af, buf + start, i - start) ? 0 : -1;
    /* A NUL would cut the C string short and let inet_pton judge only the
     * part before it ("::\0junk" is not "::"). */
    if (i == start || i - start >= sizeof(tmp) || memchr(buf + start, '\0', i - start) != NULL)
        return -1;
    memcpy(tmp, buf + start, i - start);
    tmp[i - start] = '\0';
    if (inet_pton(af, tmp, ip) != 1)
        return -1;
    *pos = i + 1;
    return 1;
}

/* Reads a decimal port 0..65535 ending with `term`. Leading zeros are
 * tolerated within five digits; no sign, no spaces. 1/0/-1 as v1_addr. */
static int v1_port(const unsigned char *buf, size_t n, size_t *pos, unsigned char term,
                   uint16_t *port)
{
    size_t i = *pos;
    uint32_t v = 0;

    for (; i < n && buf[i] != term; i++) {
        if (!is_digit(buf[i]) || i - *pos >= 5)
            return -1;
        v = v * 10 + (uint32_t)(buf[i] - '0');
        if (v > 65535)
            return -1;
    }
    if (i == n)
        return 0;
    if (i == *pos)
        return -1;
    *port = (uint16_t)v;
    *pos = i + 1;
    return 1;
}

/* Lower bounds on what must still follow, so an overlong line is refused as
 * soon as it can no longer fit in V1_MAX: " <dst> 0 0\r\n" and so on. */
#define V1_TAIL_AFTER_SRC(af) (((af) == AF_INET ? 7u : 2u) + 7u)
#define V1_TAIL_AFTER_DST 6u
#define V1_TAIL_AFTER_SPORT 4u
#define V1_TAIL_AFTER_DPORT 2u

static int v1_too_long(char *err, size_t errlen)
{
    return errf(err, errlen, "v1: header longer than %d bytes", V1_MAX);
}

static int v1_parse(const unsigned char *buf, size_t len, struct proxy_proto_info *out, char *err,
                    size_t errlen)
{
    static const char lit[] = "PROXY ";
    size_t n = len < V1_MAX ? len : V1_MAX, pos;
    int af, rc;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } src, dst;
    uint16_t sport = 0, dport = 0;

    for (pos = 0; pos < sizeof(lit) - 1; pos++) {
        if (pos == n)
            return PROXY_PROTO_NEED_MORE;
        if (buf[pos] != (unsigned char)lit[pos])
            return errf(err, errlen, "not a PROXY protocol header");
    }

    /* Protocol: "TCP4", "TCP6" or "UNKNOWN", case-sensitive. */
    {
        static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
        size_t start = pos, i = pos, k;
        int which = -1;
        while (i < n && buf[i] != ' ' && buf[i] != '\r')
            i++;
        for (k = 0; k < 3; k++) {
            size_t pl = strlen(protos[k]);
            if (i - start <= pl && memcmp(buf + start, protos[k], i - start) == 0 &&
                (i == n || i - start == pl)) {
                which = (int)k;
                break;
            }
        }
        if (which < 0 || (i < n && buf[i] == '\r' && which != 2))
            return errf(err, errlen,
                        "v1: bad protocol at byte %zu (want TCP4, "
                        "TCP6 or UNKNOWN)",
                        start);
        if (i == n)
            return len >= V1_MAX ? v1_too_long(err, errlen) : PROXY_PROTO_NEED_MORE;
        pos = i;
        if (which == 2) {
            /* Section 2.1: after UNKNOWN the receiver ignores everything up
             * to the CRLF. We still insist on printable ASCII there. */
            for (; pos < n && buf[pos] != '\r'; pos++)
                if (buf[pos] < 0x20 || buf[pos] > 0x7e)
                    return errf(err, errlen, "v1: bad byte 0x%02x at byte %zu", buf[pos], pos);
            if (pos == n) /* still needs at least the CRLF */
                return n + 2 > V1_MAX ? v1_too_long(err, errlen) : PROXY_PROTO_NEED_MORE;
            if (pos + 1 == n)
                return n + 1 > V1_MAX ? v1_too_long(err, errlen) : PROXY_PROTO_NEED_MORE;
            if (buf[pos + 1] != '\n')
                return errf(err, errlen, "v1: CR not followed by LF at byte %zu", pos + 1);
            if (out != NULL) {
                memset(out, 0, sizeof(*out));
                out->version = 1;
                out->local = true;
            }
            return (int)(pos + 2);
        }
        af = which == 0 ? AF_INET : AF_INET6;
        pos++; /* the space */
    }

#define STEP(call, what, tail)                                                       \
    do {                                                                             \
        size_t at_ = pos;                                                            \
        rc = (call);                                                                 \
        if (rc < 0)                                                                  \
            return errf(err, errlen, "v1: bad %s at byte %zu", what, at_);           \
        if (rc == 0)                                                                 \
            return (n + (tail) > V1_MAX || len >= V1_MAX) ? v1_too_long(err, errlen) \
                                                          : PROXY_PROTO_NEED_MORE;   \
        if (pos - 1 + (tail) > V1_MAX)                                               \
            return v1_too_long(err, errlen);                                         \
    } while (0)

    STEP(v1_addr(buf, n, &pos, af, &src), "source address", V1_TAIL_AFTER_SRC(af));
    STEP(v1_addr(buf, n, &pos, af, &dst), "destination address", V1_TAIL_AFTER_DST);
    STEP(v1_port(buf, n, &pos, ' ', &sport), "source port", V1_TAIL_AFTER_SPORT);
    STEP(v1_port(buf, n, &pos, '\r', &dport), "destination port", V1_TAIL_AFTER_DPORT);
#undef STEP

    /* pos is just past the CR. */
    if (pos == n)
        return len >= V1_MAX ? v1_too_long(err, errlen) : PROXY_PROTO_NEED_MORE;
    if (buf[pos] != '\n')
        return errf(err, errlen, "v1: CR not followed by LF at byte %zu", pos);
    pos++;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
        out->version = 1;
        out->local = false;
        if (af == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
            struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
            s->sin_family = d->sin_family = AF_INET;
            s->sin_addr = src.v4;
            d->sin_addr = dst.v4;
            s->sin_port = htons(sport);
            d->sin_port = htons(dport);
            out->src_len = out->dst_len = sizeof(struct sockaddr_in);
        } else {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
            struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
            s->sin6_family = d->sin6_family = AF_INET6;
            s->sin6_addr = src.v6;
            d->sin6_addr = dst.v6;
            s->sin6_port = htons(sport);
            d->sin6_port = htons(dport);
            out->src_len = out->dst_len = sizeof(struct sockaddr_in6);
        }
    }
    return (int)pos;
}

/* ---- v2 ---- */

/* Section 2.2: byte 13 is family (high nibble) and transport (low nibble). */
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_TRANS_UNSPEC 0x0
#define V2_TRANS_STREAM 0x1
#define V2_TRANS_DGRAM 0x2

static int v2_parse(const unsigned char *buf, size_t len, struct proxy_proto_info *out, char *err,
                    size_t errlen)
{
    size_t i, total, addr_need = 0, off;
    unsigned cmd, fam, trans;
    bool local;

    for (i = 0; i < sizeof(v2_sig); i++) {
        if (i == len)
            return PROXY_PROTO_NEED_MORE;
        if (buf[i] != v2_sig[i])
            return errf(err, errlen, "v2: bad signature at byte %zu", i);
    }
    if (len < 13)
        return PROXY_PROTO_NEED_MORE;
    if ((buf[12] >> 4) != 2)
        return errf(err, errlen, "v2: version %u, want 2", buf[12] >> 4);
    cmd = buf[12] & 0x0f;
    if (cmd > 1)
        return errf(err, errlen, "v2: unknown command 0x%x", cmd);
    if (len < 14)
        return PROXY_PROTO_NEED_MORE;
    fam = buf[13] >> 4;
    trans = buf[13] & 0x0f;
    /* LOCAL (health checks from the balancer itself): section 2.2 says the
     * receiver keeps the real endpoints and ignores the address block and
     * the family byte. UNSPEC and UNIX sources carry nothing we can use as a
     * client address either. */
    local = cmd == 0 || fam == V2_FAM_UNSPEC || fam == V2_FAM_UNIX;
    if (cmd == 1) {
        if (fam > V2_FAM_UNIX || trans > V2_TRANS_DGRAM)
            return errf(err, errlen, "v2: unknown address family 0x%02x", buf[13]);
        if ((fam == V2_FAM_INET || fam == V2_FAM_INET6) && trans != V2_TRANS_STREAM)
            return errf(err, errlen, "v2: family 0x%02x is not TCP", buf[13]);
        addr_need = fam == V2_FAM_INET    ? 12
                    : fam == V2_FAM_INET6 ? 36
                    : fam == V2_FAM_UNIX  ? 216
                                          : 0;
    }
    if (len < V2_FIXED)
        return PROXY_PROTO_NEED_MORE;
    total = V2_FIXED + (((size_t)buf[14] << 8) | buf[15]);
    if (total > PROXY_PROTO_MAX_HEADER)
        return errf(err, errlen, "v2: header of %zu bytes, limit %d", total,
                    PROXY_PROTO_MAX_HEADER);
    if (total - V2_FIXED < addr_need)
        return errf(err, errlen,
                    "v2: length %zu too short for family 0x%02x "
                    "(needs %zu)",
                    total - V2_FIXED, buf[13], addr_need);
    if (len < total)
        return PROXY_PROTO_NEED_MORE;

    /* TLVs (section 2.2.7) follow the address block: type, 16-bit length,
     * value. We use none, but a chain that overruns the header is a lie. */
    if (!local) {
        for (off = V2_FIXED + addr_need; off < total;) {
            size_t tl;
            if (total - off < 3)
                return errf(err, errlen, "v2: truncated TLV at byte %zu", off);
            tl = ((size_t)buf[off + 1] << 8) | buf[off + 2];
            if (tl > total - off - 3)
                return errf(err, errlen,
                            "v2: TLV at byte %zu overruns the "
                            "header",
                            off);
            off += 3 + tl;
        }
    }

    if (out != NULL) {
        const unsigned char *a = buf + V2_FIXED;
        memset(out, 0, sizeof(*out));
        out->version = 2;
        out->local = local;
        if (!local && fam == V2_FAM_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
            struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
            s->sin_family = d->sin_family = AF_INET;
            memcpy(&s->sin_addr, a, 4);
            memcpy(&d->sin_addr, a + 4, 4);
            memcpy(&s->sin_port, a + 8, 2); /* already network order */
            memcpy(&d->sin_port, a + 10, 2);
            out->src_len = out->dst_len = sizeof(struct sockaddr_in);
        } else if (!local) {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
            struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
            s->sin6_family = d->sin6_family = AF_INET6;
            memcpy(&s->sin6_addr, a, 16);
            memcpy(&d->sin6_addr, a + 16, 16);
            memcpy(&s->sin6_port, a + 32, 2);
            memcpy(&d->sin6_port, a + 34, 2);
            out->src_len = out->dst_len = sizeof(struct sockaddr_in6);
        }
    }
    return (int)total;
}

int proxy_proto_parse(const unsigned char *buf, size_t len, struct proxy_proto_info *out, char *err,
                      size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len == 0)
        return PROXY_PROTO_NEED_MORE;
    if (buf == NULL)
        return errf(err, errlen, "no buffer");
    if (buf[0] == 'P')
        return v1_parse(buf, len, out, err, errlen);
    if (buf[0] == v2_sig[0])
        return v2_parse(buf, len, out, err, errlen);
    return errf(err, errlen, "not a PROXY protocol header");
}
