/* libFuzzer: the request path of http1/session.c and core/proxy.c without
 * the event loop: llhttp in strict mode (-DLLHTTP_STRICT_MODE=1) with the
 * proxy's callbacks, the head collector of common/head.c (its appenders and
 * lookups; its arena pool is not used), the proxy's
 * limits (16 KiB head, 100 headers, 8 KiB request line), and the input
 * delivered in three reads at fuzzer-chosen points, so every callback can be
 * cut anywhere and resumed.
 *
 * Input: 2 bytes of split points, then the bytes the client sends.
 * Invariants, for every head llhttp accepts: no CR, LF or NUL in any header
 * value or the target, header names are tokens, never both Content-Length and
 * Transfer-Encoding, at most one Content-Length (the relay forwards the
 * original framing, so any of these would be request smuggling), and every
 * view lies inside the arena. */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "head.h"

#define MAX_HEAD 16384
#define MAX_HDRS 100
#define MAX_URL 8192

struct sess {
    struct head *rh;
    bool req_done;
    int heads;
};

static int on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}
static int on_message_complete(llhttp_t *p)
{
    struct sess *s = p->data;
    s->req_done = true;
    return HPE_PAUSED;
}

static struct head *head_new(void)
{
    /* The layout head_get() uses, exact size so ASan sees overruns. */
    struct head *h = malloc(sizeof(*h) + MAX_HDRS * sizeof(struct hdr) + MAX_HEAD);
    memset(h, 0, sizeof(*h));
    h->hdrs = (struct hdr *)(h + 1);
    h->buf = (char *)(h->hdrs + MAX_HDRS);
    h->cap = MAX_HEAD;
    h->max_hdrs = MAX_HDRS;
    h->max_url = MAX_URL;
    head_reset(h);
    return h;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* What route/relay would do with an accepted head, plus the invariants. */
static void check_head(const llhttp_t *p, const struct head *h)
{
    int cl = 0, te = 0;

    assert(h->err == HEAD_OK);
    assert(h->used <= h->cap && h->nhdrs <= h->max_hdrs);
    assert(h->url_len <= h->max_url && h->url_off + h->url_len <= h->used);
    assert(h->url_len > 0);
    for (uint32_t i = 0; i < h->url_len; i++) {
        unsigned char c = (unsigned char)h->buf[h->url_off + i];
        assert(c > 0x20 && c != 0x7f);
    }
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        assert(x->name_off + x->name_len <= h->used);
        assert(x->val_off + x->val_len <= h->used);
        assert(x->name_len > 0);
        for (uint32_t j = 0; j < x->name_len; j++)
            assert(is_tchar((unsigned char)h->buf[x->name_off + j]));
        for (uint32_t j = 0; j < x->val_len; j++) {
            unsigned char c = (unsigned char)h->buf[x->val_off + j];
            assert(c != '\r' && c != '\n' && c != '\0');
        }
        if (HEAD_NAME_IS(h, x, "content-length"))
            cl++;
        if (HEAD_NAME_IS(h, x, "transfer-encoding"))
            te++;
        /* Framing and Host survive hop-by-hop removal whatever Connection
         * lists. */
        if (head_is_hop_by_hop(h, x))
            assert(!HEAD_NAME_IS(h, x, "content-length") &&
                   !HEAD_NAME_IS(h, x, "transfer-encoding") && !HEAD_NAME_IS(h, x, "host"));
    }
    assert(cl <= 1);
    assert(!(cl && te));
    if (te)
        assert(p->flags & F_CHUNKED);
    (void)head_find(h, HDR_HOST, NULL);
    const struct hdr *c = head_find(h, HDR_CONNECTION, NULL);
    if (c)
        (void)head_list_has(h->buf + c->val_off, c->val_len, "close", 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct head_parser_settings settings;
    static bool init;
    llhttp_t parser;
    struct sess s = {0};
    size_t cut[3], off = 0, arrived, head_bytes = 0;
    int reads = 0, loops = 0;
    enum { HEAD, BODY } state = HEAD;

    if (!init) {
        llhttp_settings_init(&settings.st);
        head_parser_callbacks(&settings, offsetof(struct sess, rh));
        settings.st.on_headers_complete = on_headers_complete;
        settings.st.on_message_complete = on_message_complete;
        init = true;
    }
    if (size < 2)
        return 0;
    {
        size_t n = size - 2, a = data[0] * n / 255, b = data[1] * n / 255;
        cut[0] = a < b ? a : b;
        cut[1] = a < b ? b : a;
        cut[2] = n;
    }
    /* The client's bytes, in an exact-size buffer per read. */
    const uint8_t *in = data + 2;
    uint8_t *bytes = malloc(size - 2 ? size - 2 : 1);
    memcpy(bytes, in, size - 2);

    llhttp_init(&parser, HTTP_REQUEST, &settings.st);
    parser.data = &s;
    s.rh = head_new();
    arrived = cut[0];

    while (loops++ < 1000) {
        if (off == arrived) {
            if (reads == 2)
                break;
            arrived = cut[++reads];
            continue;
        }
        const char *base = (const char *)bytes + off;
        size_t len = arrived - off;
        if (state == HEAD && len > MAX_HEAD - head_bytes + 1)
            len = MAX_HEAD - head_bytes + 1; /* never parse past the limit */
        llhttp_errno_t err = llhttp_execute(&parser, base, len);
        size_t used = err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&parser) - base);
        assert(used <= len);
        if (err != HPE_OK && err != HPE_PAUSED)
            break; /* 400 (or 431/414 when s.rh->err says so) */
        off += used;
        if (state == HEAD) {
            head_bytes += used;
            if (head_bytes > MAX_HEAD)
                break; /* 431 */
            if (err != HPE_PAUSED)
                continue;
            /* on_request_head. llhttp checks some framing only after
             * on_headers_complete returns (llhttp__after_headers_complete):
             * a request Transfer-Encoding whose last coding is not chunked
             * (RFC 9112 section 6.3) passes the pause and fails on resume.
             * An empty "Transfer-Encoding:" does not even set the flag, so
             * "Content-Length: 4" + "Transfer-Encoding:" passes llhttp
             * entirely and would be forwarded with both (RFC 9112 section
             * 6.1: a sender MUST NOT). The proxy must refuse both here,
             * before routing, by header name: mirrored. */
            if (((parser.flags & F_TRANSFER_ENCODING) ||
                 head_find(s.rh, HDR_TRANSFER_ENCODING, NULL) != NULL) &&
                !(parser.flags & F_CHUNKED))
                break; /* 400 */
            /* llhttp 8.1 accepts an empty field name (":Transfer-Encoding:
             * chunked" is a header named "" with that value); RFC 9110
             * section 5.1 says a name is a token, 1+ chars, and forwarding
             * it invites a desync. The proxy must refuse it: mirrored. */
            /* llhttp 8.1 also takes an HTTP/0.9 request line ("GET /\n",
             * even "CONNECT \n" with an empty target) followed by headers;
             * the relay would forward it as HTTP/1.1. Only 1.x is served
             * (RFC 9112 section 2.3): mirrored. */
            if (parser.http_major != 1)
                break; /* 400 or 505 */
            bool empty_name = false;
            for (uint32_t i = 0; i < s.rh->nhdrs; i++)
                if (s.rh->hdrs[i].name_len == 0)
                    empty_name = true;
            if (empty_name)
                break; /* 400 */
            check_head(&parser, s.rh);
            s.heads++;
            if (parser.upgrade || parser.method == HTTP_CONNECT)
                break; /* tunnel or 405: llhttp is done with this stream */
            bool has_body = (parser.flags & F_CHUNKED) || parser.content_length > 0;
            llhttp_resume(&parser);
            /* Whatever llhttp still checks after the pause must pass now:
             * the head has been routed and forwarded by this point. */
            err = llhttp_execute(&parser, "", 0);
            assert(err == HPE_OK || err == HPE_PAUSED);
            if (!has_body)
                assert(s.req_done); /* bodyless: message-complete reached */
            state = BODY;
        }
        if (state == BODY && s.req_done) {
            /* session_exchange_done with keep-alive: next request */
            if (!llhttp_should_keep_alive(&parser))
                break;
            llhttp_resume(&parser);
            s.req_done = false;
            head_reset(s.rh);
            head_bytes = 0;
            state = HEAD;
        }
    }
    free(s.rh);
    free(bytes);
    return 0;
}
