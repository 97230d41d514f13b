/* proxy_proto_parse: every form the spec allows, every prefix of them (the
 * header arrives in pieces), and the ugly inputs a hostile peer or a broken
 * balancer sends. Each parse runs on an exact-size heap copy so ASan catches
 * any read past len. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy_proto.h"

static char err[128];

static int parse_n(const void *data, size_t len, struct proxy_proto_info *info)
{
    unsigned char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, data, len);
    memset(info, 0x5a, sizeof(*info));
    memset(err, 'x', sizeof(err));
    rc = proxy_proto_parse(copy, len, info, err, sizeof(err));
    free(copy);
    assert_non_null(memchr(err, '\0', sizeof(err)));
    if (rc == PROXY_PROTO_BAD)
        assert_true(err[0] != '\0');
    return rc;
}

static int parse_s(const char *s, struct proxy_proto_info *info)
{
    return parse_n(s, strlen(s), info);
}

/* Every strict prefix of a valid header is NEED_MORE. */
static void expect_prefixes_need_more(const void *data, size_t hdr_len)
{
    struct proxy_proto_info info;

    for (size_t k = 0; k < hdr_len; k++)
        assert_int_equal(parse_n(data, k, &info), PROXY_PROTO_NEED_MORE);
}

static void expect_bad(const char *s)
{
    struct proxy_proto_info info;

    assert_int_equal(parse_s(s, &info), PROXY_PROTO_BAD);
}

static void expect_bad_n(const void *d, size_t n)
{
    struct proxy_proto_info info;

    assert_int_equal(parse_n(d, n, &info), PROXY_PROTO_BAD);
}

static void expect_need_more(const char *s)
{
    struct proxy_proto_info info;

    assert_int_equal(parse_s(s, &info), PROXY_PROTO_NEED_MORE);
}

static void check_v4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                     uint16_t port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    struct in_addr want;

    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_memory_equal(&sin->sin_addr, &want, 4);
    assert_int_equal(sin->sin_port, htons(port));
}

static void check_v6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                     uint16_t port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    struct in6_addr want;

    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_memory_equal(&sin6->sin6_addr, &want, 16);
    assert_int_equal(sin6->sin6_port, htons(port));
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
    const char *h = "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n";
    struct proxy_proto_info info;

    assert_int_equal(parse_s(h, &info), (int)strlen(h));
    assert_int_equal(info.version, 1);
    assert_false(info.local);
    check_v4(&info.src, info.src_len, "1.2.3.4", 1111);
    check_v4(&info.dst, info.dst_len, "5.6.7.8", 2222);
    expect_prefixes_need_more(h, strlen(h));
}

static void test_v1_tcp6(void **state)
{
    const char *h = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 65535 0\r\n";
    struct proxy_proto_info info;

    assert_int_equal(parse_s(h, &info), (int)strlen(h));
    assert_int_equal(info.version, 1);
    assert_false(info.local);
    check_v6(&info.src, info.src_len, "2001:db8::1", 65535);
    check_v6(&info.dst, info.dst_len, "::ffff:10.0.0.1", 0);
    expect_prefixes_need_more(h, strlen(h));

    h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n";
    assert_int_equal(parse_s(h, &info), (int)strlen(h));
    assert_int_equal(strlen(h), 104); /* the longest TCP6 line */
    check_v6(&info.dst, info.dst_len, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    expect_prefixes_need_more(h, strlen(h));

    h = "PROXY TCP6 :: 1:2:3:4:5:6:7:: 1 2\r\n";
    assert_int_equal(parse_s(h, &info), (int)strlen(h));
    expect_prefixes_need_more(h, strlen(h));
}

static void test_v1_unknown(void **state)
{
    const char *forms[] = {
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
    };
    struct proxy_proto_info info;

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        assert_int_equal(parse_s(forms[i], &info), (int)strlen(forms[i]));
        assert_int_equal(info.version, 1);
        assert_true(info.local);
        assert_int_equal(info.src_len, 0);
        assert_int_equal(info.dst_len, 0);
        expect_prefixes_need_more(forms[i], strlen(forms[i]));
    }
}

static void test_v1_ports(void **state)
{
    struct proxy_proto_info info;

    assert_true(parse_s("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n", &info) > 0);
    check_v4(&info.src, info.src_len, "1.2.3.4", 0);
    check_v4(&info.dst, info.dst_len, "5.6.7.8", 65535);
    /* Leading zeros: decimal, within five digits. */
    assert_true(parse_s("PROXY TCP4 1.2.3.4 5.6.7.8 00080 08080\r\n", &info) > 0);
    check_v4(&info.src, info.src_len, "1.2.3.4", 80);
    check_v4(&info.dst, info.dst_len, "5.6.7.8", 8080);

    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 000001 1\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");
    /* BAD at the digit that overflows, not at the CRLF. */
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 65536");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456");
    expect_need_more("PROXY TCP4 1.2.3.4 5.6.7.8 6553");
}

static void test_v1_bad_addresses(void **state)
{
    expect_bad("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"); /* octal confusion */
    expect_bad("PROXY TCP4 1.2.3.4 ::1 1 2\r\n");      /* v6 under TCP4 */
    expect_bad("PROXY TCP6 1.2.3.4 ::1 1 2\r\n");      /* v4 under TCP6 */
    expect_bad("PROXY TCP6 ::1%eth0 ::1 1 2\r\n");     /* no zone ids */
    expect_bad("PROXY TCP6 1::2::3 ::1 1 2\r\n");
    expect_bad("PROXY TCP6 12345:: ::1 1 2\r\n");
    expect_bad("PROXY TCP4 localhost 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n");
    /* Early: the byte that can no longer be part of an address. */
    expect_bad("PROXY TCP4 1.2.3.4.");
    expect_bad("PROXY TCP4 300");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8x");
    expect_bad("PROXY TCP6 ::g");
    expect_bad("PROXY TCP6 1:2:3:4:5:6:7:8:");
    expect_need_more("PROXY TCP4 1.2.");
    expect_need_more("PROXY TCP6 1:2:3:4:5:6:1.2");
    expect_need_more("PROXY TCP6 ::ffff:1.2.3.");
}

/* Found by fuzz_proxy_proto: a NUL inside an address token cut the C string
 * handed to inet_pton, so "::\0junk" passed as "::". */
static void test_v1_nul_in_address(void **state)
{
    static const char a[] = "PROXY TCP6 ::\0fff:1.2.\0\0\0\0\0\0\0\0\0\0\0\0"
                            "\0\0\0\0\0\0\0\0\0\0\0\0\0003.4 ::1 1 2\r\n";
    static const char b[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    static const char c[] = "PROXY TCP4 1.2.3.4 5.6.7.8\0 1 2\r\n";

    expect_bad_n(a, sizeof(a) - 1);
    expect_bad_n(b, sizeof(b) - 1);
    expect_bad_n(c, sizeof(c) - 1);
    expect_bad_n(a, 15); /* as soon as the NUL arrives */
}

static void test_v1_syntax(void **state)
{
    expect_bad("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");
    expect_bad(" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    expect_bad("PROXY TCP4\r\n");
    expect_bad("PROXY TCP4 \r\n");
    expect_bad("PROXY \r\n");
    expect_bad("PROXY\r\n");
    expect_bad("PROXY UNKNOWNX\r\n");
    expect_bad("PROXY UNKNOWN\n");
    expect_bad("PROXY UNKNOWN \x01\r\n");
    expect_bad("PROXY UNKNOWN \n\r\n");
    /* LF only, CR without LF, nothing after CR yet. */
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");
    expect_bad("PROXY UNKNOWN\rX");
    expect_need_more("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r");
    expect_need_more("PROXY TCP4 1.2.3.4 5.6.7.8 1 2");
    /* Missing CRLF is NEED_MORE until the line can no longer fit. */
    expect_need_more("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2");
    /* Early: not a prefix of "PROXY " or of a protocol name. */
    expect_bad("PROXX");
    expect_bad("PROXY X");
    expect_bad("PROXY TCP4X");
    expect_bad("PROXY U ");
    expect_need_more("P");
    expect_need_more("PRO");
    expect_need_more("PROXY");
    expect_need_more("PROXY ");
    expect_need_more("PROXY TC");
    expect_need_more("PROXY UNKN");
    expect_need_more("");
    /* Not PROXY at all: an HTTP request on a proxy_protocol listener. */
    expect_bad("GET / HTTP/1.1\r\n\r\n");
    expect_bad("\x16\x03\x01"); /* TLS ClientHello */
}

static void test_v1_length_limit(void **state)
{
    char line[256];
    struct proxy_proto_info info;
    size_t n;

    /* UNKNOWN padded to exactly 107 bytes with CRLF: accepted. */
    memset(line, 0, sizeof(line));
    strcpy(line, "PROXY UNKNOWN ");
    n = strlen(line);
    memset(line + n, 'a', 107 - 2 - n);
    memcpy(line + 105, "\r\n", 2);
    assert_int_equal(parse_n(line, 107, &info), 107);
    assert_true(info.local);
    expect_prefixes_need_more(line, 107);

    /* 108 bytes: refused, and already at 106 bytes without the CR. */
    memset(line + n, 'a', 108 - 2 - n);
    memcpy(line + 106, "\r\n", 2);
    expect_bad_n(line, 108);
    expect_bad_n(line, 106);
    assert_int_equal(parse_n(line, 105, &info), PROXY_PROTO_NEED_MORE);

    /* Oversized garbage never completes. */
    memset(line, 'a', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    expect_bad_n(line, sizeof(line));

    /* IPv4-mapped long forms: valid addresses, but 116 bytes in all. */
    expect_bad("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
               "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 1 2\r\n");
    /* ...refused before the line is 107 bytes long: after the second
     * address, " 0 0\r\n" cannot fit any more. */
    expect_bad("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
               "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
}

static void test_v1_trailing_payload(void **state)
{
    const char *h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    char buf[256];
    struct proxy_proto_info info;

    snprintf(buf, sizeof(buf), "%sGET / HTTP/1.1\r\nHost: a\r\n\r\n", h);
    assert_int_equal(parse_s(buf, &info), (int)strlen(h));
    check_v4(&info.src, info.src_len, "192.168.0.1", 56324);
    /* Trailing bytes that look like another header are the client's. */
    snprintf(buf, sizeof(buf), "%s%s", h, h);
    assert_int_equal(parse_s(buf, &info), (int)strlen(h));
    snprintf(buf, sizeof(buf), "PROXY UNKNOWN\r\n\x16\x03\x01");
    assert_int_equal(parse_s(buf, &info), 15);
}

/* ---- v2 ---- */

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Builds a v2 header: signature, ver_cmd, fam, length = body_len (or
 * len_field when >= 0), body. Returns the total size. */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam, const void *body,
                 size_t body_len, long len_field)
{
    size_t l = len_field >= 0 ? (size_t)len_field : body_len;

    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (unsigned char)(l >> 8);
    out[15] = (unsigned char)l;
    if (body_len)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

static size_t v4_block(unsigned char *b)
{
    inet_pton(AF_INET, "1.2.3.4", b);
    inet_pton(AF_INET, "5.6.7.8", b + 4);
    b[8] = 0x04;
    b[9] = 0x57; /* 1111 */
    b[10] = 0x01;
    b[11] = 0xbb; /* 443 */
    return 12;
}

static size_t v6_block(unsigned char *b)
{
    inet_pton(AF_INET6, "2001:db8::1", b);
    inet_pton(AF_INET6, "::1", b + 16);
    b[32] = 0x9c;
    b[33] = 0x40; /* 40000 */
    b[34] = 0x1f;
    b[35] = 0x90; /* 8080 */
    return 36;
}

static void test_v2_tcp4(void **state)
{
    unsigned char body[64], h[128];
    struct proxy_proto_info info;
    size_t n = v2(h, 0x21, 0x11, body, v4_block(body), -1);

    assert_int_equal(n, 28);
    assert_int_equal(parse_n(h, n, &info), 28);
    assert_int_equal(info.version, 2);
    assert_false(info.local);
    check_v4(&info.src, info.src_len, "1.2.3.4", 1111);
    check_v4(&info.dst, info.dst_len, "5.6.7.8", 443);
    expect_prefixes_need_more(h, n);

    /* Trailing payload is not consumed. */
    memcpy(h + n, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(parse_n(h, n + 16, &info), 28);
}

static void test_v2_tcp6(void **state)
{
    unsigned char body[64], h[128];
    struct proxy_proto_info info;
    size_t n = v2(h, 0x21, 0x21, body, v6_block(body), -1);

    assert_int_equal(parse_n(h, n, &info), 52);
    assert_int_equal(info.version, 2);
    assert_false(info.local);
    check_v6(&info.src, info.src_len, "2001:db8::1", 40000);
    check_v6(&info.dst, info.dst_len, "::1", 8080);
    expect_prefixes_need_more(h, n);
}

static void test_v2_tlvs(void **state)
{
    unsigned char body[256], h[512];
    struct proxy_proto_info info;
    size_t b = v4_block(body), n;
    static const unsigned char tlvs[] = {
        0x01, 0x00, 0x02, 'h',  '2',              /* ALPN */
        0x04, 0x00, 0x03, 0x00, 0x00, 0x00,       /* NOOP */
        0x20, 0x00, 0x05, 0x01, 0,    0,    0, 0, /* SSL */
        0x05, 0x00, 0x00,                         /* UNIQUE_ID, empty */
    };

    memcpy(body + b, tlvs, sizeof(tlvs));
    n = v2(h, 0x21, 0x11, body, b + sizeof(tlvs), -1);
    assert_int_equal(parse_n(h, n, &info), (int)n);
    check_v4(&info.src, info.src_len, "1.2.3.4", 1111);
    expect_prefixes_need_more(h, n);

    /* A TLV whose length runs past the header. */
    body[b + 2] = 0x03;
    n = v2(h, 0x21, 0x11, body, b + sizeof(tlvs), -1);
    expect_bad_n(h, n);
    /* Two stray bytes after the last TLV. */
    memcpy(body + b, tlvs, sizeof(tlvs));
    body[b + sizeof(tlvs)] = 0x04;
    body[b + sizeof(tlvs) + 1] = 0x00;
    n = v2(h, 0x21, 0x11, body, b + sizeof(tlvs) + 2, -1);
    expect_bad_n(h, n);
}

static void test_v2_local(void **state)
{
    unsigned char body[300], h[400];
    struct proxy_proto_info info;
    size_t n;

    /* LOCAL, UNSPEC, no address: the balancer's own health check. */
    n = v2(h, 0x20, 0x00, NULL, 0, -1);
    assert_int_equal(parse_n(h, n, &info), 16);
    assert_int_equal(info.version, 2);
    assert_true(info.local);
    assert_int_equal(info.src_len, 0);
    expect_prefixes_need_more(h, n);

    /* LOCAL ignores the family and the block (section 2.2). */
    n = v2(h, 0x20, 0x11, body, v4_block(body), -1);
    assert_int_equal(parse_n(h, n, &info), 28);
    assert_true(info.local);
    n = v2(h, 0x20, 0xff, body, 3, -1);
    assert_int_equal(parse_n(h, n, &info), 19);
    assert_true(info.local);

    /* PROXY over UNSPEC or UNIX: nothing usable, treated as local. */
    n = v2(h, 0x21, 0x00, NULL, 0, -1);
    assert_int_equal(parse_n(h, n, &info), 16);
    assert_true(info.local);
    memset(body, 0, 216);
    strcpy((char *)body, "/run/lb.sock");
    n = v2(h, 0x21, 0x31, body, 216, -1);
    assert_int_equal(parse_n(h, n, &info), 232);
    assert_true(info.local);
    n = v2(h, 0x21, 0x32, body, 216, -1);
    assert_int_equal(parse_n(h, n, &info), 232);
    assert_true(info.local);
    /* UNIX block too short for two sun_path. */
    n = v2(h, 0x21, 0x31, body, 100, -1);
    expect_bad_n(h, n);
}

static void test_v2_hostile(void **state)
{
    unsigned char body[2048], h[4096];
    size_t b = v4_block(body), n;
    struct proxy_proto_info info;

    /* Bad signature at each byte. */
    for (size_t i = 0; i < 12; i++) {
        n = v2(h, 0x21, 0x11, body, b, -1);
        h[i] ^= 0x20;
        if (i == 0)
            h[i] = 'X';
        expect_bad_n(h, n);
        expect_bad_n(h, i + 1); /* as soon as the wrong byte arrives */
    }
    /* Versions other than 2, commands other than LOCAL/PROXY. */
    n = v2(h, 0x11, 0x11, body, b, -1);
    expect_bad_n(h, n);
    expect_bad_n(h, 13);
    n = v2(h, 0x31, 0x11, body, b, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x01, 0x11, body, b, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x22, 0x11, body, b, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x2f, 0x11, body, b, -1);
    expect_bad_n(h, n);
    /* UDP, unknown families and transports under PROXY. */
    n = v2(h, 0x21, 0x12, body, b, -1);
    expect_bad_n(h, n);
    expect_bad_n(h, 14);
    n = v2(h, 0x21, 0x22, body, 36, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x21, 0x10, body, b, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x21, 0x41, body, b, -1);
    expect_bad_n(h, n);
    n = v2(h, 0x21, 0x13, body, b, -1);
    expect_bad_n(h, n);
    /* Length lies: block shorter than the family needs. */
    n = v2(h, 0x21, 0x11, body, 11, -1);
    expect_bad_n(h, n);
    expect_bad_n(h, 16); /* known at the length field */
    n = v2(h, 0x21, 0x21, body, b, -1);
    expect_bad_n(h, n);
    /* Length says more than was sent: NEED_MORE, truncated. */
    n = v2(h, 0x21, 0x11, body, b, 20);
    assert_int_equal(parse_n(h, n, &info), PROXY_PROTO_NEED_MORE);
    /* Oversized: refused at the length field, not after 64 KiB. */
    n = v2(h, 0x21, 0x11, body, b, 0xffff);
    expect_bad_n(h, n);
    expect_bad_n(h, 16);
    n = v2(h, 0x21, 0x11, body, b, PROXY_PROTO_MAX_HEADER - 16 + 1);
    expect_bad_n(h, 16);
    /* Exactly the limit is fine (NOOP TLV padding). */
    memset(body + b, 0, sizeof(body) - b);
    body[b] = 0x04;
    body[b + 1] = (unsigned char)((PROXY_PROTO_MAX_HEADER - 16 - b - 3) >> 8);
    body[b + 2] = (unsigned char)(PROXY_PROTO_MAX_HEADER - 16 - b - 3);
    n = v2(h, 0x21, 0x11, body, PROXY_PROTO_MAX_HEADER - 16, -1);
    assert_int_equal(n, PROXY_PROTO_MAX_HEADER);
    assert_int_equal(parse_n(h, n, &info), PROXY_PROTO_MAX_HEADER);
}

static void test_null_out_and_err(void **state)
{
    const char *h = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";

    assert_int_equal(proxy_proto_parse((const unsigned char *)h, strlen(h), NULL, NULL, 0),
                     (int)strlen(h));
    assert_int_equal(proxy_proto_parse((const unsigned char *)"x", 1, NULL, NULL, 0),
                     PROXY_PROTO_BAD);
    char small[8];
    assert_int_equal(
        proxy_proto_parse((const unsigned char *)"PROXY TCP9", 10, NULL, small, sizeof(small)),
        PROXY_PROTO_BAD);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_ports),
        cmocka_unit_test(test_v1_bad_addresses),
        cmocka_unit_test(test_v1_nul_in_address),
        cmocka_unit_test(test_v1_syntax),
        cmocka_unit_test(test_v1_length_limit),
        cmocka_unit_test(test_v1_trailing_payload),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_hostile),
        cmocka_unit_test(test_null_out_and_err),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
