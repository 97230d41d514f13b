/* libFuzzer: the HTTP/2 front end, frames in, the whole proxy in process
 * (proxy_harness.c: one worker, the lookup table, the llhttp-checked
 * upstream stub on 127.0.0.1:39483 (odd: Linux gives even ports to
 * connect()), TLS listeners, the access log).
 *
 * Per input, a socketpair goes to session_accept() on a listener with
 * HTTP/2 on: plain (the preface picks HTTP/2), PROXY protocol (the harness
 * sends a v1 header first), TLS with ALPN h2, or PROXY then TLS. The client
 * sends the preface and a SETTINGS frame (unless told not to), then the
 * frames the input describes, in writes separated by loop turns; then it
 * half-closes, the loop settles, and the harness tears everything down.
 * Every optional feature is on: both nghttp2 backports (when the library
 * has them), the access log, trusted proxies, and a second runtime with
 * small limits (4 streams, 64 KiB windows, 6 requests a connection, 2 ms
 * timeouts: the send timeout, idle and head deadlines fire).
 *
 * Input: 4 control bytes, then ops.
 *   c0  the upstream stub's behaviour (proxy_harness.c respond(): bits 0-2
 *       kind, 3 answer before the body, 5 vary per request, 6 close after
 *       each response, 7 RST instead of FIN)
 *   c1  bit 0 TLS (ALPN h2), bit 1 the PROXY protocol listener, bit 2 the
 *       small runtime, bit 3 drain after the first write, bit 4 close the
 *       client after the first write, bit 5 no automatic preface+SETTINGS,
 *       bits 6-7 the peer address
 *   c2  TLS: SNI and version (start_tls_client)
 *   c3  how many ops go in the first write (the rest in a second one)
 * Ops (a byte t, then its fields; stream ids are 1 + 2 * s, s one byte):
 *   0 HEADERS      s, f, n, n bytes of fields: f bit 0 END_STREAM, bit 1 no
 *                  END_HEADERS, bit 2 the template (:method by bits 3-4: GET,
 *                  POST, HEAD, PUT; :scheme, :path, :authority for the
 *                  sandbox chosen by bits 5-7: pub, priv with its token,
 *                  priv without, slow, lim, broken, unknown, down), then
 *                  fields as [len][name][len][value] pairs, HPACK literals;
 *                  a template whose first field is :protocol has :method
 *                  CONNECT (an extended CONNECT, RFC 8441: a WebSocket with
 *                  :protocol websocket, the stub's 101 and an echo tunnel)
 *   1 CONTINUATION s, f (bit 0 END_HEADERS), n, fields as above
 *   2 DATA         s, f (bit 0 END_STREAM), 2-byte length (bytes from the
 *                  input, or a pattern when it runs out)
 *   3 RST_STREAM   s, code
 *   4 WINDOW_UPDATE s (255: the connection), 4-byte increment
 *   5 SETTINGS     n entries of [id][4-byte value], or an ACK when n is 0
 *   6 PING         (ACK when the next byte is odd)
 *   7 PRIORITY     s, dependency byte
 *   8 GOAWAY
 *   9 raw          n, n bytes as they are
 *   10 PUSH_PROMISE s (a client must not)
 *   11 write what is built so far, turn the loop
 *
 * Invariants (abort() with a message): everything the proxy sends parses as
 * HTTP/2 frames within the client's frame size, its header blocks decode
 * (HPACK state kept across the connection), a response starts with a
 * :status, carries no connection-specific field and no upper-case name, at
 * most one final response per stream and only on streams the client opened,
 * no frame on a stream after the proxy ended or reset it (but its
 * RST_STREAM(NO_ERROR) after an early response), no PUSH_PROMISE; the
 * upstream's llhttp accepts every forwarded byte, and sees no more requests
 * than the client opened streams; plus the harness's teardown invariants.
 *
 * Environment: FUZZ_H2_TRACE=1 copies what the client receives to stderr,
 * FUZZ_H2_LOG=0..3 turns the proxy's log on. */
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "h2_int.h"
#include "proxy_harness.h"
#include "session.h"

#define STUB_PORT 39483
#define CTRL 4
#define MAX_STREAMS 256 /* stream ids 1..511 */
#define OUT_MAX (1 << 20)
#define die harness_die

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- building the client's bytes ---- */

static uint8_t out[OUT_MAX];
static size_t out_len;

static void put(const void *p, size_t n)
{
    if (n > OUT_MAX - out_len)
        n = OUT_MAX - out_len;
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void frame_header(size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    uint8_t h[9] = {
        (uint8_t)(len >> 16),        (uint8_t)(len >> 8),  (uint8_t)len,        type,        flags,
        (uint8_t)(sid >> 24 & 0x7f), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    put(h, 9);
}

/* An HPACK integer with an n-bit prefix (RFC 7541 section 5.1). */
static size_t hpack_int(uint8_t *b, uint8_t first, unsigned bits, size_t v)
{
    size_t max = (1u << bits) - 1, n = 0;
    if (v < max) {
        b[n++] = (uint8_t)(first | v);
        return n;
    }
    b[n++] = (uint8_t)(first | max);
    v -= max;
    while (v >= 128) {
        b[n++] = (uint8_t)(v % 128 + 128);
        v /= 128;
    }
    b[n++] = (uint8_t)v;
    return n;
}

/* A literal field without indexing, new name (RFC 7541 section 6.2.2). */
static size_t hpack_field(uint8_t *b, size_t cap, const char *name, size_t nl, const char *val,
                          size_t vl)
{
    if (nl + vl + 24 > cap)
        return 0;
    size_t n = hpack_int(b, 0x00, 4, 0);
    n += hpack_int(b + n, 0x00, 7, nl);
    memcpy(b + n, name, nl);
    n += nl;
    n += hpack_int(b + n, 0x00, 7, vl);
    memcpy(b + n, val, vl);
    return n + vl;
}

struct reader {
    const uint8_t *p;
    size_t n;
};

static unsigned byte(struct reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static const uint8_t *take(struct reader *r, size_t *len)
{
    if (*len > r->n)
        *len = r->n;
    const uint8_t *p = r->p;
    r->p += *len;
    r->n -= *len;
    return p;
}

static const char *const sandboxes[8] = {"pub", "priv",   "priv",   "slowpub",
                                         "lim", "broken", "nosuch", "down"};
static const char *const methods[4] = {"GET", "POST", "HEAD", "PUT"};

/* One [len][name][len][value] field of the input as an HPACK literal; 0
 * when it does not fit. */
static size_t next_field(uint8_t *b, size_t cap, struct reader *fields)
{
    size_t nl = byte(fields);
    const uint8_t *name = take(fields, &nl);
    size_t vl = byte(fields);
    const uint8_t *val = take(fields, &vl);
    return hpack_field(b, cap, (const char *)name, nl, (const char *)val, vl);
}

/* A header block: the template (if asked) and the input's fields. */
static size_t header_block(uint8_t *b, size_t cap, unsigned f, struct reader *fields)
{
    size_t n = 0;
    if (f & 4) {
        char auth[64];
        const char *m = methods[(f >> 3) & 3], *sb = sandboxes[(f >> 5) & 7];
        bool ext =
            fields->n >= 10 && fields->p[0] == 9 && memcmp(fields->p + 1, ":protocol", 9) == 0;
        if (ext)
            m = "CONNECT";
        int al = snprintf(auth, sizeof(auth), "%d-%s.sandbox.test", STUB_PORT, sb);
        n += hpack_field(b + n, cap - n, ":method", 7, m, strlen(m));
        n += hpack_field(b + n, cap - n, ":scheme", 7, "http", 4);
        n += hpack_field(b + n, cap - n, ":path", 5, "/f", 2);
        n += hpack_field(b + n, cap - n, ":authority", 10, auth, (size_t)al);
        if (ext) /* a pseudo-header: before the token */
            n += next_field(b + n, cap - n, fields);
        if (((f >> 5) & 7) == 1)
            n += hpack_field(b + n, cap - n, "e2b-traffic-access-token", 24, "tok", 3);
    }
    while (fields->n) {
        size_t k = next_field(b + n, cap - n, fields);
        if (!k)
            break;
        n += k;
    }
    return n;
}

static uint32_t max_frame = 16384; /* what the client told the proxy it takes */

/* One op into out; false when the ops say "write now". */
static bool op(struct reader *r)
{
    uint8_t blk[4096];
    unsigned t = byte(r);
    switch (t % 12) {
    case 0:
    case 1: {
        uint32_t sid = 1 + 2 * byte(r);
        unsigned f = byte(r);
        size_t n = byte(r);
        struct reader fields = {take(r, &n), n};
        size_t len = header_block(blk, sizeof(blk), t % 12 == 0 ? f : 0, &fields);
        uint8_t flags = t % 12 == 0 ? (uint8_t)((f & 1 ? 0x1 : 0) | (f & 2 ? 0 : 0x4))
                                    : (uint8_t)(f & 1 ? 0x4 : 0);
        frame_header(len, t % 12 == 0 ? 0x1 : 0x9, flags, sid);
        put(blk, len);
        break;
    }
    case 2: {
        uint32_t sid = 1 + 2 * byte(r);
        unsigned f = byte(r);
        size_t len = byte(r) << 8;
        len |= byte(r);
        len %= 20000;
        size_t have = len;
        const uint8_t *p = take(r, &have);
        frame_header(len, 0x0, f & 1 ? 0x1 : 0, sid);
        put(p, have);
        for (size_t i = have; i < len; i += sizeof(blk)) {
            memset(blk, 'd', sizeof(blk));
            put(blk, len - i < sizeof(blk) ? len - i : sizeof(blk));
        }
        break;
    }
    case 3: {
        uint32_t sid = 1 + 2 * byte(r);
        uint8_t code[4] = {0, 0, 0, (uint8_t)byte(r)};
        frame_header(4, 0x3, 0, sid);
        put(code, 4);
        break;
    }
    case 4: {
        unsigned s = byte(r);
        uint8_t inc[4] = {(uint8_t)byte(r), (uint8_t)byte(r), (uint8_t)byte(r), (uint8_t)byte(r)};
        frame_header(4, 0x8, 0, s == 255 ? 0 : 1 + 2 * s);
        put(inc, 4);
        break;
    }
    case 5: {
        unsigned n = byte(r) % 8;
        if (!n) {
            frame_header(0, 0x4, 0x1, 0);
            break;
        }
        frame_header(6 * n, 0x4, 0, 0);
        for (unsigned i = 0; i < n; i++) {
            uint8_t e[6] = {0,
                            (uint8_t)byte(r),
                            (uint8_t)byte(r),
                            (uint8_t)byte(r),
                            (uint8_t)byte(r),
                            (uint8_t)byte(r)};
            uint32_t v = (uint32_t)e[2] << 24 | (uint32_t)e[3] << 16 | (uint32_t)e[4] << 8 | e[5];
            if (e[1] == 5 && v >= 16384 && v <= 16777215 && v > max_frame)
                max_frame = v; /* the proxy may send frames this big once it applies it */
            put(e, 6);
        }
        break;
    }
    case 6: {
        uint8_t data[8] = "pingpong";
        frame_header(8, 0x6, byte(r) & 1, 0);
        put(data, 8);
        break;
    }
    case 7: {
        uint32_t sid = 1 + 2 * byte(r);
        uint8_t p[5] = {0, 0, 0, (uint8_t)byte(r), 16};
        frame_header(5, 0x2, 0, sid);
        put(p, 5);
        break;
    }
    case 8: {
        uint8_t g[8] = {0, 0, 0, 1, 0, 0, 0, 0};
        frame_header(8, 0x7, 0, 0);
        put(g, 8);
        break;
    }
    case 9: {
        size_t n = byte(r);
        put(take(r, &n), n);
        break;
    }
    case 10: {
        uint32_t sid = 1 + 2 * byte(r);
        uint8_t p[4] = {0, 0, 0, 2};
        frame_header(4, 0x5, 0x4, sid);
        put(p, 4);
        break;
    }
    default:
        return false;
    }
    return true;
}

/* ---- the client's view: what the client sent, what the proxy answers ---- */

/* The client's frames, parsed as the proxy parses them: which streams it
 * opened (the ids of its HEADERS frames). */
static bool opened[MAX_STREAMS];
static bool opened_untracked; /* a HEADERS frame on an id past MAX_STREAMS */
static unsigned nopened;
static size_t client_parse_at; /* offset of the next client frame header */

static void note_client_frames(const uint8_t *d, size_t n)
{
    while (client_parse_at + 9 <= n) {
        const uint8_t *h = d + client_parse_at;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint32_t sid =
            ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffff;
        if (h[3] == 0x1 && sid % 2 == 1 && sid / 2 < MAX_STREAMS && !opened[sid / 2]) {
            opened[sid / 2] = true;
            nopened++;
        } else if (h[3] == 0x1 && sid % 2 == 1 && sid / 2 >= MAX_STREAMS) {
            nopened++; /* a stream we do not track: counts for the bound */
            opened_untracked = true;
        }
        client_parse_at += 9 + len;
    }
}

struct sstate {
    bool final, ended, reset, answered_nothing_yet;
    unsigned interim;
};
static struct sstate sst[MAX_STREAMS];
static unsigned final_responses;

static uint8_t in_buf[OUT_MAX];
static size_t in_len;
static bool in_stop;     /* stop checking (the proxy's stream ended, or a trace) */
static bool got_preface; /* the proxy's first frame was SETTINGS */
static nghttp2_hd_inflater *inflater;
static uint8_t hblock[1 << 17];
static size_t hblock_len;
static uint32_t hblock_sid;
static uint8_t hblock_flags;
static bool in_block;

static void fail(const char *what, uint32_t sid)
{
    fprintf(stderr, "fuzz_h2: stream %u: %s\n", sid, what);
    die("the proxy sent the client an invalid HTTP/2 stream");
}

static bool forbidden_field(const uint8_t *n, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && memcmp(names[i], n, len) == 0)
            return true;
    for (size_t i = 0; i < len; i++)
        if (n[i] >= 'A' && n[i] <= 'Z')
            return true;
    return false;
}

/* A complete header block from the proxy on stream sid. */
static void check_block(uint32_t sid, uint8_t flags)
{
    const uint8_t *p = hblock;
    size_t left = hblock_len;
    int status = 0, nfields = 0;
    bool pseudo_after = false;
    for (;;) {
        nghttp2_nv nv;
        int iflags = 0;
        ssize_t k = nghttp2_hd_inflate_hd2(inflater, &nv, &iflags, p, left, 1);
        if (k < 0)
            fail("its header block does not decode (HPACK)", sid);
        p += k;
        left -= (size_t)k;
        if (iflags & NGHTTP2_HD_INFLATE_EMIT) {
            bool pseudo = nv.namelen && nv.name[0] == ':';
            if (pseudo && nfields)
                pseudo_after = true;
            if (pseudo && nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0 && nv.valuelen == 3)
                status = (nv.value[0] - '0') * 100 + (nv.value[1] - '0') * 10 + (nv.value[2] - '0');
            else if (pseudo)
                fail("a pseudo-header other than :status", sid);
            else if (forbidden_field(nv.name, nv.namelen))
                fail("a connection-specific field or an upper-case name", sid);
            nfields++;
        }
        if (iflags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inflater);
            break;
        }
        if (k == 0 && !(iflags & NGHTTP2_HD_INFLATE_EMIT))
            fail("a header block that ends inside a field", sid);
    }
    if (pseudo_after)
        fail(":status after a field", sid);
    if (sid % 2 == 1 && sid / 2 >= MAX_STREAMS && opened_untracked)
        return; /* one of the raw op's streams: decoded, not tracked */
    if (sid % 2 == 0 || sid / 2 >= MAX_STREAMS || !opened[sid / 2])
        fail("HEADERS on a stream the client did not open", sid);
    struct sstate *s = &sst[sid / 2];
    if (s->ended || s->reset)
        fail("HEADERS after the proxy ended or reset the stream", sid);
    if (s->final) { /* trailers */
        if (status || !(flags & 0x1))
            fail("a second final response, or trailers without END_STREAM", sid);
    } else if (status >= 100 && status < 200) {
        if (flags & 0x1)
            fail("an interim response with END_STREAM", sid);
        s->interim++;
    } else if (status >= 200 && status <= 599) {
        s->final = true;
        final_responses++;
    } else {
        fail("a response without a valid :status", sid);
    }
    if (flags & 0x1)
        s->ended = true;
}

static void check_frame(const uint8_t *h, const uint8_t *payload, size_t len)
{
    uint8_t type = h[3], flags = h[4];
    uint32_t sid =
        ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffff;
    if (!got_preface) {
        if (type != 0x4 || (flags & 0x1))
            fail("the server preface is not a SETTINGS frame", sid);
        got_preface = true;
    }
    if (len > max_frame)
        fail("a frame larger than the client allows", sid);
    if (in_block && type != 0x9)
        fail("another frame inside a header block", sid);
    struct sstate *s = sid && sid % 2 == 1 && sid / 2 < MAX_STREAMS ? &sst[sid / 2] : NULL;
    switch (type) {
    case 0x0: /* DATA */
        if (!s && sid % 2 == 1 && opened_untracked)
            break;
        if (!s || !s->final || s->ended || s->reset)
            fail("DATA outside a response body", sid);
        if (flags & 0x1)
            s->ended = true;
        break;
    case 0x1: /* HEADERS */
    case 0x9: /* CONTINUATION */
        if (type == 0x1) {
            if (in_block)
                fail("HEADERS inside a header block", sid);
            size_t skip = 0, pad = 0;
            if (flags & 0x8)
                pad = len ? payload[0] : 0, skip = 1;
            if (flags & 0x20)
                skip += 5;
            if (skip + pad > len)
                fail("a HEADERS frame too short for its padding", sid);
            hblock_len = 0;
            hblock_sid = sid;
            hblock_flags = flags;
            payload += skip;
            len -= skip + pad;
        } else if (!in_block || sid != hblock_sid) {
            fail("CONTINUATION out of place", sid);
        }
        if (hblock_len + len > sizeof(hblock))
            fail("a header block over 128 KiB", sid);
        memcpy(hblock + hblock_len, payload, len);
        hblock_len += len;
        in_block = !(flags & 0x4);
        if (!in_block)
            check_block(hblock_sid, hblock_flags);
        break;
    case 0x3: /* RST_STREAM */
        if (!sid)
            fail("RST_STREAM on stream 0", sid);
        if (s) {
            if (s->reset)
                fail("a second RST_STREAM", sid);
            s->reset = true;
        }
        break;
    case 0x5:
        fail("PUSH_PROMISE from a proxy that never pushes", sid);
        break;
    default:
        break;
    }
}

static void check_client_output(const char *d, size_t n)
{
    if (in_stop)
        return;
    if (n > sizeof(in_buf) - in_len) {
        in_stop = true; /* too much to keep: bodies, and checked up to here */
        return;
    }
    memcpy(in_buf + in_len, d, n);
    in_len += n;
    size_t at = 0;
    while (in_len - at >= 9) {
        const uint8_t *h = in_buf + at;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        if (in_len - at - 9 < len)
            break;
        check_frame(h, h + 9, len);
        at += 9 + len;
    }
    memmove(in_buf, in_buf + at, in_len - at);
    in_len -= at;
}

/* A stream waiting out a connect retry (1 ms, 2 ms backoff). */
static bool h2_backing_off(void)
{
    struct list_node *n, *nt, *m, *mt;
    list_for_each_safe(n, nt, &W.h2_conns)
    {
        struct h2_conn *c = container_of(n, struct h2_conn, link);
        list_for_each_safe(m, mt, &c->streams)
        {
            struct h2_stream *st = container_of(m, struct h2_stream, link);
            if (!st->ex_done && st->ex.state == EX_CONNECTING && !st->ex.up)
                return true;
        }
    }
    return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init("fuzz_h2", "FUZZ_H2", STUB_PORT, true);
    harness_hooks.client_bytes = check_client_output;
    harness_hooks.backing_off = h2_backing_off;
    harness_rt_extra = harness_runtime(
        true,
        ",\"http2\":{\"max_concurrent_streams\":4,\"stream_window_bytes\":65535,"
        "\"connection_window_bytes\":65535,\"max_requests\":6,\"send_timeout_ms\":2}",
        3);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < CTRL)
        return 0;
    const uint8_t c1 = data[1], c2 = data[2], c3 = data[3];
    up_mode = data[0];
    raw_resp = NULL;
    raw_resp_len = 0;
    const bool small = c1 & 4;
    harness_begin_input(small ? harness_rt_extra : rt_normal);
    fill_access_log(fill_leave(data, size));

    /* the client's bytes */
    out_len = 0;
    max_frame = 16384;
    size_t pp = 0;
    if (c1 & 2) {
        static const char v1[] = "PROXY TCP4 198.51.100.1 127.0.0.1 40000 80\r\n";
        put(v1, sizeof(v1) - 1);
        pp = out_len;
    }
    if (!(c1 & 0x20)) {
        put(preface, sizeof(preface) - 1);
        frame_header(0, 0x4, 0, 0);
    }
    struct reader r = {data + CTRL, size - CTRL};
    size_t first = 0;
    for (unsigned i = 0; r.n && out_len < OUT_MAX; i++) {
        if (!op(&r) && !first)
            first = out_len;
        if (i + 1 == c3 && !first)
            first = out_len;
    }
    if (!first || first < pp)
        first = out_len;

    memset(opened, 0, sizeof(opened));
    opened_untracked = false;
    memset(sst, 0, sizeof(sst));
    nopened = final_responses = 0;
    client_parse_at = pp + ((c1 & 0x20) ? 0 : sizeof(preface) - 1);
    note_client_frames(out, out_len);
    in_len = 0;
    in_stop = got_preface = in_block = false;
    nghttp2_hd_inflate_new(&inflater);
    if (!inflater)
        die("nghttp2_hd_inflate_new");

    const bool tls = c1 & 1;
    const size_t listener = (c1 & 2 ? 1 : 0) + (tls ? 2 : 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
        die("socketpair");
    client_fd = sv[1];
    struct sockaddr_storage peer;
    int peer_len;
    make_peer((c1 >> 6) & 3, &peer, &peer_len);
    session_accept(&W, listener, sv[0], (struct sockaddr *)&peer, peer_len);
    const uint8_t *body = out;
    size_t n = out_len;
    if (pp) {
        write_client(body, pp, small);
        body += pp;
        n -= pp;
        first -= pp;
    }
    if (tls && client_fd != -1)
        start_tls_client(c2, (const unsigned char *)"\x02h2", 3);
    write_client(body, first, small);
    if (c1 & 0x08)
        worker_request_drain(&W);
    if (c1 & 0x10)
        close_client();
    write_client(body + first, n - first, small);
    end_client_output();
    settle(200, small);

    harness_end_input();
    nghttp2_hd_inflate_del(inflater);
    inflater = NULL;
    if (trace)
        fprintf(stderr, "\n-- streams opened %u, upstream requests %u, final responses %u\n",
                nopened, up_requests, final_responses);
    if (up_requests > nopened) {
        fprintf(stderr, "upstream saw %u requests, the client opened %u streams\n", up_requests,
                nopened);
        die("more requests upstream than streams (request smuggling)");
    }
    if (final_responses > nopened)
        die("more final responses than streams");
    return 0;
}
