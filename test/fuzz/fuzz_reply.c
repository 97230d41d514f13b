/* libFuzzer: reply_wants_html on fuzzed header values and reply_render with a
 * fuzzed message and sandbox id (common/reply.c).
 *
 * Input: 6 control bytes, then NUL-separated segments: User-Agent, Accept,
 * Sec-Fetch-Mode, X-Requested-With, message, sandbox id. Invariants: the
 * response fits the buffer or is refused (-1), never written past cap; its
 * Content-Length is the body's real length (0 bytes of body for HEAD); the
 * JSON body is valid JSON carrying the status code; header lines never hold
 * a bare CR or LF. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "reply.h"

#define NSEG 6

static void check_response(const struct reply *r, const char *out, int n)
{
    const char *end, *cl, *body;
    size_t body_len;
    long clv;

    assert(n > 0);
    end = memmem(out, (size_t)n, "\r\n\r\n", 4);
    assert(end != NULL);
    /* Every CR and LF in the head is part of a CRLF pair. */
    for (const char *p = out; p < end + 4; p++) {
        if (*p == '\r')
            assert(p[1] == '\n');
        if (*p == '\n')
            assert(p > out && p[-1] == '\r');
    }
    cl = memmem(out, (size_t)(end - out), "\r\nContent-Length: ", 18);
    assert(cl != NULL);
    clv = strtol(cl + 18, NULL, 10);
    body = end + 4;
    body_len = (size_t)(out + n - body);
    if (r->head_only) {
        assert(body_len == 0);
    } else {
        assert((size_t)clv == body_len);
        if (!r->html) {
            cJSON *j = cJSON_ParseWithLength(body, body_len);
            assert(j != NULL);
            cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
            assert(cJSON_IsNumber(code) && code->valueint == r->status);
            assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")));
            if (r->sandbox_id != NULL)
                assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "sandboxId")));
            cJSON_Delete(j);
        } else {
            assert(memmem(body, body_len, "<script", 7) == NULL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *seg[NSEG] = {0};
    size_t seglen[NSEG] = {0};
    struct reply_negotiation neg;
    struct reply r;
    const uint8_t *p;
    size_t left, i;
    uint8_t flags;

    if (size < 6)
        return 0;
    flags = data[0];
    p = data + 6;
    left = size - 6;
    for (i = 0; i < NSEG; i++) {
        const uint8_t *z = memchr(p, 0, left);
        size_t l = z ? (size_t)(z - p) : left;
        /* Exact-size heap copy, NUL-terminated for the C-string fields. */
        seg[i] = malloc(l + 1);
        memcpy(seg[i], p, l);
        seg[i][l] = '\0';
        seglen[i] = l;
        p += z ? l + 1 : l;
        left -= z ? l + 1 : l;
    }

    /* Header views: bit i clear means header i absent. The view excludes the
     * NUL, so a read past len is a read past what the header holds. */
    struct reply_hdr *h[4] = {&neg.user_agent, &neg.accept, &neg.sec_fetch_mode,
                              &neg.x_requested_with};
    for (i = 0; i < 4; i++) {
        h[i]->ptr = (flags & (1u << i)) ? seg[i] : NULL;
        h[i]->len = (flags & (1u << i)) ? seglen[i] : 0;
    }
    bool html = reply_wants_html(&neg);
    if (html)
        assert(neg.user_agent.ptr != NULL);

    memset(&r, 0, sizeof(r));
    r.status = 100 + (int)(((unsigned)data[1] << 8 | data[2]) % 520);
    r.message = (flags & 0x10) ? seg[4] : NULL;
    r.sandbox_id = (flags & 0x20) ? seg[5] : NULL;
    r.port = (data[3] & 1) ? (int)(data[3] * 257u) : 0;
    r.connection_limit = (data[4] & 1) ? (long)data[4] * 1000 : -1;
    r.retry_after = data[4] >> 5;
    r.close = flags & 0x40;
    r.head_only = flags & 0x80;
    r.html = html || (data[5] & 1);

    static const size_t caps[] = {4096, 65536};
    for (i = 0; i < 2; i++) {
        char *out = malloc(caps[i]);
        int n = reply_render(&r, out, caps[i]);
        assert(n >= -1 && n <= (int)caps[i]);
        if (n > 0)
            check_response(&r, out, n);
        if (n > 0 && i == 1) {
            /* Exactly-sized and one-short buffers: fits, then refused. */
            char *exact = malloc((size_t)n);
            assert(reply_render(&r, exact, (size_t)n) == n);
            assert(memcmp(exact, out, (size_t)n) == 0);
            assert(reply_render(&r, exact, (size_t)n - 1) == -1);
            free(exact);
        }
        free(out);
    }
    assert(reply_reason(r.status) != NULL);

    for (i = 0; i < NSEG; i++)
        free(seg[i]);
    return 0;
}
