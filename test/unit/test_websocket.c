/* common/websocket.c: the key a proxy draws for an RFC 8441 WebSocket and
 * the Sec-WebSocket-Accept it checks (RFC 6455 sections 1.3 and 4.1). */
#include "websocket.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* RFC 6455 section 1.3's example. */
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void test_accept_for(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    ws_accept_for(SAMPLE_KEY, strlen(SAMPLE_KEY), out);
    assert_string_equal(out, SAMPLE_ACCEPT);
    ws_accept_for("", 0, out);
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);
}

static void test_accept_matches(void **state)
{
    const size_t kl = strlen(SAMPLE_KEY);
    assert_true(ws_accept_matches(SAMPLE_KEY, kl, SAMPLE_ACCEPT, strlen(SAMPLE_ACCEPT)));
    assert_true(
        ws_accept_matches(SAMPLE_KEY, kl, " " SAMPLE_ACCEPT "\t", strlen(SAMPLE_ACCEPT) + 2));
    /* one character off, cut short, longer, another key's, empty */
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, "s3pPLMBiTxaQ9kYGzzhZRbK+xOO=", 28));
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, SAMPLE_ACCEPT, 27));
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, SAMPLE_ACCEPT "=", 29));
    assert_false(ws_accept_matches("x" SAMPLE_KEY, kl + 1, SAMPLE_ACCEPT, 28));
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, "", 0));
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, "   ", 3));
    /* the key itself is no answer (a server echoing it) */
    assert_false(ws_accept_matches(SAMPLE_KEY, kl, SAMPLE_KEY, kl));
}

static bool is_base64(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= n - 2)))
            return false;
    }
    return true;
}

static void test_key_new(void **state)
{
    char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1];
    assert_int_equal(ws_key_new(a), 0);
    assert_int_equal(ws_key_new(b), 0);
    /* 16 bytes in base64: 22 characters and "==" */
    assert_int_equal(strlen(a), WS_KEY_LEN);
    assert_true(is_base64(a, WS_KEY_LEN));
    assert_memory_equal(a + 22, "==", 2);
    assert_string_not_equal(a, b); /* a nonce, not a constant */
    char acc[WS_ACCEPT_LEN + 1];
    ws_accept_for(a, WS_KEY_LEN, acc);
    assert_true(ws_accept_matches(a, WS_KEY_LEN, acc, strlen(acc)));
    assert_false(ws_accept_matches(b, WS_KEY_LEN, acc, strlen(acc)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_for),
        cmocka_unit_test(test_accept_matches),
        cmocka_unit_test(test_key_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
