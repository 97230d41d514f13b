/* common/head.c: the head arena the llhttp span callbacks fill. The limits
 * (431 too large / too many, 414 target too long), the views into the arena,
 * head_find, head_list_has, and the hop-by-hop rule (RFC 9110 section 7.6.1)
 * with its exception: a Connection header can never strip the framing or
 * routing headers (Content-Length, Transfer-Encoding, Host).
 *
 * The arena pool is the worker's, but pure: a head_pool with three limits
 * and a free list, no event loop. */
#include "head.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct fixture {
    struct head_pool pool;
};

static int setup_limits(void **state, int head_bytes, int headers, int url)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    head_pool_set_limits(&f->pool, (uint32_t)head_bytes, (uint32_t)headers, (uint32_t)url);
    *state = f;
    return 0;
}

/* Roomy defaults (the config's). */
static int setup(void **state)
{
    return setup_limits(state, 16384, 100, 8192);
}

/* Small limits so the boundaries are easy to hit exactly. */
static int setup_small(void **state)
{
    return setup_limits(state, 64, 3, 16);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct head *h = f->pool.free, *next;
    size_t n = 0;
    for (; h; h = next, n++) {
        next = h->next_free;
        free(h);
    }
    assert_int_equal(n, f->pool.count);
    free(f);
    return 0;
}

static struct head_pool *W(void **state)
{
    return &((struct fixture *)*state)->pool;
}

/* Feeds a header through the callbacks the way llhttp does: the name and the
 * value may arrive in several spans. Returns the first non-zero rc. */
static int add_hdr(struct head *h, const char *name, const char *val)
{
    int rc;
    if ((rc = head_on_field(h, name, strlen(name))) != 0)
        return rc;
    if ((rc = head_on_field_done(h)) != 0)
        return rc;
    if (*val && (rc = head_on_value(h, val, strlen(val))) != 0)
        return rc;
    return head_on_value_done(h);
}

static int hdr_equal(const struct head *h, const struct hdr *x, const char *name, const char *val)
{
    return x->name_len == strlen(name) &&
           memcmp(head_str(h, x->name_off), name, x->name_len) == 0 && x->val_len == strlen(val) &&
           memcmp(head_str(h, x->val_off), val, x->val_len) == 0;
}

/* ---- head_get / head_put ---- */

static void test_get_sizes_from_config(void **state)
{
    struct head *h = head_get(W(state));
    assert_non_null(h);
    assert_int_equal(h->cap, 16384);
    assert_int_equal(h->max_hdrs, 100);
    assert_int_equal(h->max_url, 8192);
    assert_int_equal(h->used, 0);
    assert_int_equal(h->nhdrs, 0);
    assert_int_equal(h->url_len, 0);
    assert_int_equal(h->err, HEAD_OK);
    assert_false(h->in_field);
    assert_false(h->in_value);
    /* The whole arena is usable (ASan catches a short allocation). */
    memset(h->buf, 'x', h->cap);
    memset(h->hdrs, 0, h->max_hdrs * sizeof(struct hdr));
    head_put(W(state), h);
}

static void test_put_recycles_and_get_resets(void **state)
{
    struct head_pool *w = W(state);
    struct head *h = head_get(w);
    assert_int_equal(head_on_url(h, "/abc", 4), 0);
    assert_int_equal(add_hdr(h, "Host", "x"), 0);
    assert_int_equal(head_on_field(h, "Half", 4), 0); /* left mid-field */
    h->err = HEAD_TOO_LARGE;
    head_put(w, h);
    assert_int_equal(w->count, 1);
    assert_ptr_equal(w->free, h);

    struct head *again = head_get(w);
    assert_ptr_equal(again, h);
    assert_int_equal(w->count, 0);
    assert_null(w->free);
    assert_null(again->next_free);
    assert_int_equal(again->used, 0);
    assert_int_equal(again->nhdrs, 0);
    assert_int_equal(again->url_off, 0);
    assert_int_equal(again->url_len, 0);
    assert_int_equal(again->err, HEAD_OK);
    assert_false(again->in_field);
    assert_false(again->in_value);
    head_put(w, again);
}

static void test_put_null_is_noop(void **state)
{
    head_put(W(state), NULL);
    assert_int_equal(W(state)->count, 0);
}

static void test_free_list_is_bounded(void **state)
{
    struct head_pool *w = W(state);
    enum { N = HEAD_FREE_MAX + 10 };
    struct head *hs[N];
    for (int i = 0; i < N; i++) {
        hs[i] = head_get(w);
        assert_non_null(hs[i]);
    }
    for (int i = 0; i < N; i++)
        head_put(w, hs[i]); /* the ones past the cap are freed (LSan checks) */
    assert_int_equal(w->count, HEAD_FREE_MAX);
}

/* ---- appenders ---- */

static void test_request_line_and_headers(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(head_on_url(h, "/pa", 3), 0);
    assert_int_equal(head_on_url(h, "th?q=1", 6), 0); /* split span */
    assert_int_equal(h->url_len, 9);
    assert_memory_equal(head_str(h, h->url_off), "/path?q=1", 9);

    /* A name and a value each in several spans. */
    assert_int_equal(head_on_field(h, "X-Sp", 4), 0);
    assert_int_equal(head_on_field(h, "lit", 3), 0);
    assert_int_equal(head_on_field_done(h), 0);
    assert_int_equal(head_on_value(h, "one ", 4), 0);
    assert_int_equal(head_on_value(h, "two", 3), 0);
    assert_int_equal(head_on_value_done(h), 0);
    assert_int_equal(add_hdr(h, "Host", "3000-abc.sandbox.example"), 0);
    assert_int_equal(h->nhdrs, 2);
    assert_true(hdr_equal(h, &h->hdrs[0], "X-Split", "one two"));
    assert_true(hdr_equal(h, &h->hdrs[1], "Host", "3000-abc.sandbox.example"));
    assert_int_equal(h->err, HEAD_OK);
    head_put(W(state), h);
}

static void test_empty_value(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(add_hdr(h, "X-Empty", ""), 0);
    assert_int_equal(add_hdr(h, "X-Next", "v"), 0);
    assert_int_equal(h->nhdrs, 2);
    assert_true(hdr_equal(h, &h->hdrs[0], "X-Empty", ""));
    assert_true(hdr_equal(h, &h->hdrs[1], "X-Next", "v"));
    const struct hdr *x = &h->hdrs[0];
    assert_int_equal(x->val_len, 0);
    head_put(W(state), h);
}

static void test_head_reset(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(head_on_url(h, "Continue", 8), 0); /* a 100's reason */
    assert_int_equal(add_hdr(h, "X-A", "1"), 0);
    head_reset(h);
    assert_int_equal(h->used, 0);
    assert_int_equal(h->nhdrs, 0);
    assert_int_equal(h->url_len, 0);
    assert_int_equal(h->err, HEAD_OK);
    assert_int_equal(head_on_url(h, "OK", 2), 0);
    assert_int_equal(add_hdr(h, "X-B", "2"), 0);
    assert_int_equal(h->nhdrs, 1);
    assert_true(hdr_equal(h, &h->hdrs[0], "X-B", "2"));
    assert_memory_equal(head_str(h, h->url_off), "OK", 2);
    assert_int_equal(h->hdrs[0].kind, HDR_OTHER);
    head_put(W(state), h);
}

/* Limits (small fixture: 64 bytes, 3 headers, 16-byte target). */

static void test_url_limit_414(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(head_on_url(h, "/0123456", 8), 0);
    assert_int_equal(head_on_url(h, "789abcde", 8), 0); /* exactly 16 */
    assert_int_equal(h->err, HEAD_OK);
    assert_int_equal(head_on_url(h, "f", 1), -1);
    assert_int_equal(h->err, HEAD_URL_TOO_LONG);
    assert_int_equal(h->url_len, 16);
    head_put(W(state), h);

    h = head_get(W(state));
    assert_int_equal(head_on_url(h, "/0123456789abcdef", 17), -1); /* one span */
    assert_int_equal(h->err, HEAD_URL_TOO_LONG);
    head_put(W(state), h);
}

static void test_head_bytes_limit_431(void **state)
{
    struct head *h = head_get(W(state));
    char v[64];
    memset(v, 'v', sizeof(v));
    /* 6 ("X-Fill") + 58 = 64 bytes: exactly the arena. */
    assert_int_equal(head_on_field(h, "X-Fill", 6), 0);
    assert_int_equal(head_on_field_done(h), 0);
    assert_int_equal(head_on_value(h, v, 58), 0);
    assert_int_equal(head_on_value_done(h), 0);
    assert_int_equal(h->used, 64);
    assert_int_equal(h->err, HEAD_OK);
    /* One more byte anywhere is too much. */
    assert_int_equal(head_on_field(h, "X", 1), -1);
    assert_int_equal(h->err, HEAD_TOO_LARGE);
    assert_int_equal(h->used, 64);
    head_put(W(state), h);

    h = head_get(W(state));
    assert_int_equal(head_on_field(h, "X-Fill", 6), 0);
    assert_int_equal(head_on_field_done(h), 0);
    assert_int_equal(head_on_value(h, v, 59), -1);
    assert_int_equal(h->err, HEAD_TOO_LARGE);
    head_put(W(state), h);

    /* The target counts against the arena too. */
    h = head_get(W(state));
    assert_int_equal(head_on_url(h, v, 16), 0);
    assert_int_equal(head_on_field(h, "X-Fill", 6), 0);
    assert_int_equal(head_on_field_done(h), 0);
    assert_int_equal(head_on_value(h, v, 43), -1);
    assert_int_equal(h->err, HEAD_TOO_LARGE);
    head_put(W(state), h);
}

static void test_too_many_headers_431(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(add_hdr(h, "A", "1"), 0);
    assert_int_equal(add_hdr(h, "B", "2"), 0);
    assert_int_equal(add_hdr(h, "C", "3"), 0);
    assert_int_equal(h->nhdrs, 3);
    assert_int_equal(h->err, HEAD_OK);
    assert_int_equal(head_on_field(h, "D", 1), -1);
    assert_int_equal(h->err, HEAD_TOO_MANY);
    assert_int_equal(h->nhdrs, 3);
    /* What was stored is intact. */
    assert_true(hdr_equal(h, &h->hdrs[2], "C", "3"));
    head_put(W(state), h);
}

static void test_recycled_head_keeps_its_limits(void **state)
{
    struct head_pool *w = W(state);
    struct head *h = head_get(w);
    assert_int_equal(add_hdr(h, "A", "1"), 0);
    assert_int_equal(add_hdr(h, "B", "2"), 0);
    assert_int_equal(add_hdr(h, "C", "3"), 0);
    assert_int_equal(head_on_field(h, "D", 1), -1);
    head_put(w, h);
    h = head_get(w);
    assert_int_equal(add_hdr(h, "A", "1"), 0);
    assert_int_equal(add_hdr(h, "B", "2"), 0);
    assert_int_equal(add_hdr(h, "C", "3"), 0);
    assert_int_equal(head_on_field(h, "D", 1), -1);
    assert_int_equal(h->err, HEAD_TOO_MANY);
    head_put(w, h);
}

/* After a reload (new limits on the pool) an arena sized by the old limits
 * is not recycled: the next head_get has the new ones. */
static void test_arena_of_old_config_not_recycled(void **state)
{
    struct head_pool *w = W(state);
    struct head *old = head_get(w), *spare = head_get(w);
    head_put(w, spare);
    assert_int_equal(w->count, 1);
    head_pool_set_limits(w, 128, 5, 32); /* what apply_runtime does */
    assert_int_equal(w->count, 0);
    assert_null(w->free);
    head_put(w, old); /* in flight across the reload: freed, not kept */
    assert_int_equal(w->count, 0);
    struct head *h = head_get(w);
    assert_int_equal(h->max_hdrs, 5);
    assert_int_equal(h->cap, 128);
    assert_int_equal(h->max_url, 32);
    for (int i = 0; i < 5; i++)
        assert_int_equal(add_hdr(h, "A", "1"), 0);
    assert_int_equal(head_on_field(h, "F", 1), -1);
    head_put(w, h);
    assert_int_equal(w->count, 1);
    head_pool_set_limits(w, 128, 5, 32); /* unchanged limits keep the arenas */
    assert_int_equal(w->count, 1);
    head_free_all(w);
}

/* ---- lookups ---- */

static void test_find_case_insensitive_first(void **state)
{
    struct head *h = head_get(W(state));
    assert_int_equal(add_hdr(h, "Accept", "first"), 0);
    assert_int_equal(add_hdr(h, "CONTENT-length", "5"), 0);
    assert_int_equal(add_hdr(h, "aCCept", "second"), 0);
    assert_int_equal(add_hdr(h, "X-Accept", "not it"), 0);
    unsigned n = 0;
    const struct hdr *x = head_find(h, HDR_ACCEPT, &n);
    assert_ptr_equal(x, &h->hdrs[0]);
    assert_int_equal(n, 2);
    assert_int_equal(h->hdrs[3].kind, HDR_OTHER);
    x = head_find(h, HDR_CONTENT_LENGTH, NULL);
    assert_ptr_equal(x, &h->hdrs[1]);
    assert_null(head_find(h, HDR_HOST, NULL));
    assert_true(HEAD_NAME_IS(h, x, "content-length"));
    assert_false(HEAD_NAME_IS(h, x, "content-lengt"));
    assert_false(HEAD_NAME_IS(h, x, "content-length2"));
    head_put(W(state), h);
}

static void test_find_empty_head(void **state)
{
    struct head *h = head_get(W(state));
    assert_null(head_find(h, HDR_HOST, NULL));
    head_put(W(state), h);
}

#define HAS(val, tok) head_list_has(val, strlen(val), tok, strlen(tok))

static void test_list_has(void **state)
{
    assert_true(HAS("close", "close"));
    assert_true(HAS("Close", "close"));
    assert_true(HAS("keep-alive, Upgrade", "upgrade"));
    assert_true(HAS("keep-alive,upgrade", "upgrade"));
    assert_true(HAS("  upgrade  ", "upgrade"));
    assert_true(HAS("\tupgrade\t,x", "upgrade"));
    assert_true(HAS(",,upgrade,,", "upgrade"));
    assert_true(HAS("a, b, c", "c"));
    assert_false(HAS("upgraded", "upgrade"));
    assert_false(HAS("upgrad", "upgrade"));
    assert_false(HAS("keep-alive upgrade", "upgrade"));
    assert_false(HAS("x-upgrade", "upgrade"));
    assert_false(HAS("", "close"));
    assert_false(HAS(",,, ,", "close"));
    assert_false(HAS("close", ""));
}

static void test_list_has_len_is_exact(void **state)
{
    /* Only len bytes are the value: "close" after them does not count. */
    const char *v = "keep-alive, close";
    assert_false(head_list_has(v, 10, "close", 5));
    assert_true(head_list_has(v, 10, "keep-alive", 10));
    /* Heap copy without a NUL: ASan catches a read past len. */
    char *copy = malloc(7);
    assert_non_null(copy);
    memcpy(copy, "a, clos", 7);
    assert_false(head_list_has(copy, 7, "close", 5));
    assert_true(head_list_has(copy, 7, "clos", 4));
    free(copy);
}

/* ---- hop-by-hop ---- */

static struct head *hop_head(void **state, const char *connection)
{
    struct head *h = head_get(W(state));
    add_hdr(h, "Host", "3000-abc.sandbox.example");
    add_hdr(h, "Content-Length", "5");
    add_hdr(h, "Transfer-Encoding", "chunked");
    add_hdr(h, "Connection", connection);
    add_hdr(h, "Keep-Alive", "timeout=5");
    add_hdr(h, "Proxy-Connection", "keep-alive");
    add_hdr(h, "TE", "trailers");
    add_hdr(h, "Trailer", "X-Sum");
    add_hdr(h, "Upgrade", "websocket");
    add_hdr(h, "X-Custom", "1");
    add_hdr(h, "X-Other", "2");
    add_hdr(h, "Cookie", "a=b");
    assert_int_equal(h->err, HEAD_OK);
    return h;
}

static bool hop(const struct head *h, const char *lc)
{
    const struct hdr *x = NULL;
    for (uint32_t i = 0; i < h->nhdrs && !x; i++)
        if (head_name_is(h, &h->hdrs[i], lc, strlen(lc)))
            x = &h->hdrs[i];
    assert_non_null(x);
    return head_is_hop_by_hop(h, x);
}

static void test_hop_by_hop_fixed_set(void **state)
{
    struct head *h = hop_head(state, "keep-alive");
    assert_true(hop(h, "connection"));
    assert_true(hop(h, "keep-alive"));
    assert_true(hop(h, "proxy-connection"));
    assert_true(hop(h, "te"));
    assert_true(hop(h, "trailer"));
    assert_true(hop(h, "upgrade"));
    assert_false(hop(h, "host"));
    assert_false(hop(h, "content-length"));
    assert_false(hop(h, "transfer-encoding"));
    assert_false(hop(h, "x-custom"));
    assert_false(hop(h, "cookie"));
    head_put(W(state), h);
}

static void test_hop_by_hop_named_in_connection(void **state)
{
    struct head *h = hop_head(state, "close, X-Custom");
    assert_true(hop(h, "x-custom"));
    assert_false(hop(h, "x-other"));
    head_put(W(state), h);

    /* Case-insensitive, and from any of several Connection headers. */
    h = hop_head(state, "keep-alive");
    add_hdr(h, "connection", "x-OTHER ,cookie");
    assert_true(hop(h, "x-other"));
    assert_true(hop(h, "cookie"));
    assert_false(hop(h, "x-custom"));
    head_put(W(state), h);
}

/* A client must never be able to strip the framing or routing headers by
 * naming them in Connection: the body would be relayed with other framing
 * than the one the proxy parsed (request smuggling). */
static void test_connection_cannot_strip_framing(void **state)
{
    struct head *h = hop_head(state, "content-length, transfer-encoding, host");
    assert_false(hop(h, "content-length"));
    assert_false(hop(h, "transfer-encoding"));
    assert_false(hop(h, "host"));
    head_put(W(state), h);

    h = hop_head(state, "Content-Length");
    assert_false(hop(h, "content-length"));
    head_put(W(state), h);
}

static void test_connection_substring_is_not_a_token(void **state)
{
    struct head *h = hop_head(state, "x-custom-2, x-othe");
    assert_false(hop(h, "x-custom"));
    assert_false(hop(h, "x-other"));
    head_put(W(state), h);
}

/* ---- whole fields (HTTP/2) ---- */

static void test_add_whole_fields(void **state)
{
    struct head *h = head_get(W(state));
    uint32_t off;
    assert_int_equal(head_add_bytes(h, "a.example", 9, &off), 0);
    assert_int_equal(head_add(h, "host", 4, "a.example", 9), 0);
    assert_int_equal(head_add(h, "x-empty", 7, "", 0), 0);
    assert_int_equal(head_add(h, "e2b-traffic-access-token", 24, "t", 1), 0);
    assert_memory_equal(head_str(h, off), "a.example", 9);
    assert_int_equal(h->nhdrs, 3);
    assert_true(hdr_equal(h, &h->hdrs[0], "host", "a.example"));
    assert_int_equal(h->hdrs[0].kind, HDR_HOST); /* classified as the spans are */
    assert_true(hdr_equal(h, &h->hdrs[1], "x-empty", ""));
    assert_int_equal(h->hdrs[2].kind, HDR_TRAFFIC_TOKEN);
    /* the WebSocket handshake's fields, any case; a longer name is not one */
    assert_int_equal(head_add(h, "Sec-WebSocket-Key", 17, "k", 1), 0);
    assert_int_equal(head_add(h, "sec-websocket-accept", 20, "a", 1), 0);
    assert_int_equal(head_add(h, "sec-websocket-keys", 18, "k", 1), 0);
    assert_int_equal(h->hdrs[3].kind, HDR_SEC_WEBSOCKET_KEY);
    assert_int_equal(h->hdrs[4].kind, HDR_SEC_WEBSOCKET_ACCEPT);
    assert_int_equal(h->hdrs[5].kind, HDR_OTHER);
    head_put(W(state), h);
}

static void test_add_whole_fields_limits(void **state)
{
    struct head *h = head_get(W(state)); /* 64 bytes, 3 fields */
    uint32_t off;
    char big[80];
    memset(big, 'b', sizeof(big));
    assert_int_equal(head_add_bytes(h, big, 65, &off), -1);
    assert_int_equal(h->err, HEAD_TOO_LARGE);
    head_put(W(state), h);
    h = head_get(W(state));
    assert_int_equal(head_add(h, "a", 1, "1", 1), 0);
    assert_int_equal(head_add(h, "b", 1, "2", 1), 0);
    assert_int_equal(head_add(h, "c", 1, "3", 1), 0);
    assert_int_equal(head_add(h, "d", 1, "4", 1), -1);
    assert_int_equal(h->err, HEAD_TOO_MANY);
    head_put(W(state), h);
    h = head_get(W(state));
    assert_int_equal(head_add(h, "a", 1, big, 63), 0);
    assert_int_equal(head_add(h, "b", 1, "", 0), -1);
    assert_int_equal(h->err, HEAD_TOO_LARGE);
    head_put(W(state), h);
}

static void test_trailer_allowed(void **state)
{
    struct head *h = hop_head(state, "x-custom");
    add_hdr(h, "Host", "a");
    add_hdr(h, "e2b-traffic-access-token", "t");
    add_hdr(h, "X-Checksum", "1");
    for (uint32_t i = 0; i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        bool want = HEAD_NAME_IS(h, x, "x-other") || HEAD_NAME_IS(h, x, "cookie") ||
                    HEAD_NAME_IS(h, x, "x-checksum");
        assert_int_equal(head_trailer_allowed(h, x), want);
    }
    head_put(W(state), h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_sizes_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_recycles_and_get_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_null_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_list_is_bounded, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_request_line_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_limit_414, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_head_bytes_limit_431, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_headers_431, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_recycled_head_keeps_its_limits, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_arena_of_old_config_not_recycled, setup_small,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_find_case_insensitive_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_empty_head, setup, teardown),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_list_has_len_is_exact),
        cmocka_unit_test_setup_teardown(test_hop_by_hop_fixed_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hop_by_hop_named_in_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cannot_strip_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_substring_is_not_a_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_whole_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_whole_fields_limits, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_trailer_allowed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
