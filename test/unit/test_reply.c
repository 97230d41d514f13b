/* reply_render / reply_wants_html / reply_reason: SPEC section 6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "reply.h"

#define H(s)               \
    {                      \
        (s), sizeof(s) - 1 \
    }
#define NONE    \
    {           \
        NULL, 0 \
    }

static const char chrome_ua[] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36";

static struct reply base(int status, const char *msg)
{
    struct reply r = {0};

    r.status = status;
    r.message = msg;
    r.connection_limit = -1;
    return r;
}

/* Splits a rendered response: checks the head ends, Content-Length matches
 * the body, returns the body (NUL-terminated in buf). */
static const char *body_of(const char *buf, int n, size_t *blen)
{
    const char *sep = strstr(buf, "\r\n\r\n");
    const char *cl = strstr(buf, "\r\nContent-Length: ");
    long want;

    assert_non_null(sep);
    assert_non_null(cl);
    assert_true(cl < sep);
    want = strtol(cl + 18, NULL, 10);
    *blen = (size_t)n - (size_t)(sep + 4 - buf);
    assert_int_equal(*blen, want);
    return sep + 4;
}

static void test_json_exact(void **state)
{
    struct reply r = base(502, "The sandbox was not found");
    char buf[4096];
    int n;
    static const char want[] = "HTTP/1.1 502 Bad Gateway\r\n"
                               "Content-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 69\r\n"
                               "Access-Control-Allow-Origin: *\r\n"
                               "Cache-Control: no-store\r\n"
                               "\r\n"
                               "{\"code\":502,\"message\":\"The sandbox was not found\","
                               "\"sandboxId\":\"abc\"}\n";

    r.sandbox_id = "abc";
    n = reply_render(&r, buf, sizeof(buf));
    assert_int_equal(n, sizeof(want) - 1);
    assert_string_equal(buf, want);
}

static void test_json_all_fields(void **state)
{
    struct reply r = base(429, "Too many connections");
    char buf[4096];
    size_t blen;
    const char *body;
    int n;
    cJSON *j;

    r.sandbox_id = "i62mff4";
    r.port = 3000;
    r.connection_limit = 100;
    r.retry_after = 5;
    r.close = true;
    n = reply_render(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 429 Too Many Requests\r\n"));
    assert_non_null(strstr(buf, "\r\nRetry-After: 5\r\n"));
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    body = body_of(buf, n, &blen);
    assert_string_equal(body, "{\"code\":429,\"message\":\"Too many connections\","
                              "\"sandboxId\":\"i62mff4\",\"port\":3000,"
                              "\"connectionLimit\":100}\n");
    j = cJSON_Parse(body);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "connectionLimit")->valueint, 100);
    cJSON_Delete(j);

    /* connectionLimit 0 is a value, not absence. */
    r.connection_limit = 0;
    n = reply_render(&r, buf, sizeof(buf));
    assert_non_null(strstr(buf, ",\"connectionLimit\":0}"));
}

static void test_json_escaping(void **state)
{
    struct reply r = base(400, "a\"b\\c\x01\n\t\x1f\x7f/<\xc3\xa9\xe2\x82\xac"
                               "\xf0\x9f\x98\x80|\xff|\xc0\xaf|\xed\xa0\x80|"
                               "\xe2\x82");
    char buf[4096];
    size_t blen;
    const char *body;
    int n;
    cJSON *j;

    r.sandbox_id = "x\"y";
    n = reply_render(&r, buf, sizeof(buf));
    assert_true(n > 0);
    body = body_of(buf, n, &blen);
    assert_string_equal(body, "{\"code\":400,\"message\":\"a\\\"b\\\\c\\u0001\\u000a\\u0009"
                              "\\u001f\\u007f/<\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\ufffd|"
                              "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\","
                              "\"sandboxId\":\"x\\\"y\"}\n");
    j = cJSON_Parse(body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "sandboxId")->valuestring, "x\"y");
    cJSON_Delete(j);
}

/* Egress refusals name the host asked for (SPEC section 9). */
static void test_json_host(void **state)
{
    struct reply r = base(403, "egress refused: denyOut[0] 0.0.0.0/0");
    char buf[4096];
    size_t blen;
    int n;

    r.host = "denied.test\"x";
    n = reply_render(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_string_equal(body_of(buf, n, &blen),
                        "{\"code\":403,\"message\":\"egress refused: denyOut[0] 0.0.0.0/0\","
                        "\"host\":\"denied.test\\\"x\"}\n");
    r.html = true;
    n = reply_render(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "<p>Host: <code>denied.test&quot;x</code></p>"));
}

static void test_null_message_uses_reason(void **state)
{
    struct reply r = base(431, NULL);
    char buf[4096];
    size_t blen;
    int n = reply_render(&r, buf, sizeof(buf));

    assert_string_equal(body_of(buf, n, &blen), "{\"code\":431,\"message\":"
                                                "\"Request Header Fields Too Large\"}\n");
}

static void test_html(void **state)
{
    struct reply r = base(403, "Token <b>missing</b> & 'wrong'");
    char buf[4096];
    size_t blen;
    const char *body;
    int n;

    r.html = true;
    r.sandbox_id = "abc<script>";
    r.port = 3000;
    n = reply_render(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 403 Forbidden\r\n"
                                "Content-Type: text/html; charset=utf-8\r\n"));
    assert_non_null(strstr(buf, "\r\nAccess-Control-Allow-Origin: *\r\n"));
    assert_non_null(strstr(buf, "\r\nCache-Control: no-store\r\n"));
    assert_null(strstr(buf, "Retry-After"));
    assert_null(strstr(buf, "Connection:"));
    body = body_of(buf, n, &blen);
    assert_true(strncmp(body, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(body, "<title>403 Forbidden</title>"));
    assert_non_null(strstr(body, "<h1>403 Forbidden</h1>"));
    assert_non_null(strstr(body, "<p>Token &lt;b&gt;missing&lt;/b&gt; &amp; "
                                 "&#39;wrong&#39;</p>"));
    assert_non_null(strstr(body, "<code>abc&lt;script&gt;</code>"));
    assert_non_null(strstr(body, "<code>3000</code>"));
    assert_null(strstr(body, "<script"));
    assert_null(strstr(body, "Connection limit"));
    /* Self-contained: nothing fetched from elsewhere. */
    assert_null(strstr(body, "http://"));
    assert_null(strstr(body, "https://"));
    assert_null(strstr(body, "src="));
    assert_null(strstr(body, "href="));
    assert_true(strlen(body) < 1024);

    r.message = "ctl\x01\xff\"q\"";
    r.sandbox_id = NULL;
    r.port = 0;
    r.connection_limit = 7;
    n = reply_render(&r, buf, sizeof(buf));
    body = body_of(buf, n, &blen);
    assert_non_null(strstr(body, "<p>ctl&#xfffd;&#xfffd;&quot;q&quot;</p>"));
    assert_null(strstr(body, "Sandbox:"));
    assert_null(strstr(body, "Port:"));
    assert_non_null(strstr(body, "Connection limit: <code>7</code>"));
}

static void test_head_only(void **state)
{
    struct reply r = base(502, "gone");
    char full[4096], head[4096];
    int nf, nh;
    size_t blen;

    r.sandbox_id = "abc";
    nf = reply_render(&r, full, sizeof(full));
    r.head_only = true;
    nh = reply_render(&r, head, sizeof(head));
    body_of(full, nf, &blen);
    assert_int_equal((size_t)nh, (size_t)nf - blen);
    assert_memory_equal(full, head, (size_t)nh);
    assert_string_equal(head + nh - 4, "\r\n\r\n");
    r.html = true;
    nh = reply_render(&r, head, sizeof(head));
    assert_string_equal(head + nh - 4, "\r\n\r\n");
    assert_null(strstr(head, "<html"));
    assert_non_null(strstr(head, "Content-Length: "));
    assert_null(strstr(head, "Content-Length: 0\r\n"));
}

/* Every capacity from 0 up: -1 until it fits, never a byte past cap. */
static void test_capacity(void **state)
{
    struct reply r = base(503, "Redis is unreachable");
    char want[4096];
    int n, m;

    r.sandbox_id = "abc";
    r.retry_after = 1;
    r.html = false;
    for (int html = 0; html < 2; html++) {
        r.html = html;
        n = reply_render(&r, want, sizeof(want));
        assert_true(n > 0);
        for (size_t cap = 0; cap <= (size_t)n + 1; cap++) {
            char *b = malloc(cap ? cap : 1);

            m = reply_render(&r, b, cap);
            if (cap < (size_t)n) {
                assert_int_equal(m, -1);
            } else {
                assert_int_equal(m, n);
                assert_memory_equal(b, want, (size_t)n);
            }
            free(b);
        }
    }
}

/* The header's promise: 4096 is enough for messages under 1 KiB. */
static void test_4096_enough(void **state)
{
    char msg[1024], id[64];
    char buf[4096];
    struct reply r = base(429, msg);

    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    memset(id, 'z', 63);
    id[63] = '\0';
    r.sandbox_id = id;
    r.port = 65535;
    r.connection_limit = 2147483647;
    r.retry_after = 3600;
    r.close = true;
    r.html = false;
    assert_true(reply_render(&r, buf, sizeof(buf)) > 0);
    r.html = true;
    assert_true(reply_render(&r, buf, sizeof(buf)) > 0);
}

static void test_bad_status(void **state)
{
    struct reply r = base(99, "x");
    char buf[512];

    assert_int_equal(reply_render(&r, buf, sizeof(buf)), -1);
    r.status = 600;
    assert_int_equal(reply_render(&r, buf, sizeof(buf)), -1);
    r.status = -502;
    assert_int_equal(reply_render(&r, buf, sizeof(buf)), -1);
    assert_int_equal(reply_render(NULL, buf, sizeof(buf)), -1);
    r.status = 599;
    assert_true(reply_render(&r, buf, sizeof(buf)) > 0);
    assert_true(strncmp(buf, "HTTP/1.1 599 Unknown\r\n", 22) == 0);
}

/* Every status the proxy can produce: valid head, valid JSON body. */
static void test_every_status(void **state)
{
    static const struct {
        int code;
        const char *reason;
    } st[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };

    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        struct reply r = base(st[i].code, "m");
        char buf[4096], line[128];
        size_t blen;
        const char *body;
        cJSON *j;
        int n;

        assert_string_equal(reply_reason(st[i].code), st[i].reason);
        n = reply_render(&r, buf, sizeof(buf));
        assert_true(n > 0);
        snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", st[i].code, st[i].reason);
        assert_true(strncmp(buf, line, strlen(line)) == 0);
        body = body_of(buf, n, &blen);
        j = cJSON_Parse(body);
        assert_non_null(j);
        assert_int_equal(cJSON_GetObjectItem(j, "code")->valueint, st[i].code);
        cJSON_Delete(j);
    }
    assert_string_equal(reply_reason(0), "Unknown");
    assert_string_equal(reply_reason(418), "Unknown");
    assert_string_equal(reply_reason(-1), "Unknown");
}

static void test_wants_html(void **state)
{
    struct reply_negotiation n = {H(chrome_ua), NONE, NONE, NONE};

    /* Plain browser navigation. */
    assert_true(reply_wants_html(&n));
    n.accept =
        (struct reply_hdr)H("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
    assert_true(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("navigate");
    assert_true(reply_wants_html(&n));

    /* Accept: JSON without HTML. */
    n.accept = (struct reply_hdr)H("application/json");
    assert_false(reply_wants_html(&n));
    n.accept = (struct reply_hdr)H("Application/JSON, text/plain");
    assert_false(reply_wants_html(&n));
    n.accept = (struct reply_hdr)H("application/json, TEXT/HTML");
    assert_true(reply_wants_html(&n));
    n.accept = (struct reply_hdr)H("application/jso");
    assert_true(reply_wants_html(&n));

    /* Sec-Fetch-Mode. */
    n.accept = (struct reply_hdr)NONE;
    n.sec_fetch_mode = (struct reply_hdr)H("cors");
    assert_false(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("No-Cors");
    assert_false(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H(" same-origin\t");
    assert_false(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("websocket");
    assert_false(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("corsx");
    assert_true(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("cor");
    assert_true(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)H("");
    assert_true(reply_wants_html(&n));

    /* X-Requested-With: JSON unless Sec-Fetch-Mode is there. */
    n.x_requested_with = (struct reply_hdr)H("XMLHttpRequest");
    assert_true(reply_wants_html(&n)); /* Sec-Fetch-Mode "" present */
    n.sec_fetch_mode = (struct reply_hdr)H("navigate");
    assert_true(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr)NONE;
    assert_false(reply_wants_html(&n));
    n.x_requested_with = (struct reply_hdr)H("");
    assert_false(reply_wants_html(&n));
    n.x_requested_with = (struct reply_hdr)NONE;
    assert_true(reply_wants_html(&n));

    /* Not a browser. */
    n.user_agent = (struct reply_hdr)H("curl/8.5.0");
    assert_false(reply_wants_html(&n));
    n.user_agent = (struct reply_hdr)NONE;
    assert_false(reply_wants_html(&n));
    n.user_agent = (struct reply_hdr)H("mozilla/");
    assert_true(reply_wants_html(&n));
    n.user_agent = (struct reply_hdr)H("Mozilla");
    assert_false(reply_wants_html(&n));
    n.user_agent = (struct reply_hdr)H("");
    assert_false(reply_wants_html(&n));

    /* Views are exact: bytes after len do not count. */
    n.user_agent = (struct reply_hdr){"Mozilla/5.0", 7};
    assert_false(reply_wants_html(&n));
    n.user_agent = (struct reply_hdr){"xxMozilla/", 10};
    assert_true(reply_wants_html(&n));
    n.accept = (struct reply_hdr){"application/json", 15};
    assert_true(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr){"corsage", 4};
    assert_false(reply_wants_html(&n));
    n.sec_fetch_mode = (struct reply_hdr){"c\0rs", 4};
    assert_true(reply_wants_html(&n));
}

/* The parts (HTTP/2's HEADERS and DATA) are the same reply as the HTTP/1.1
 * rendering: its fields in order, then its body, byte for byte. */
static void parts_match(struct reply r)
{
    char full[4096], body[4096], head[4096];
    struct reply_parts p;
    int n = reply_render(&r, full, sizeof(full));
    int blen = reply_render_parts(&r, body, sizeof(body), &p);
    size_t hl = 0;

    assert_true(n > 0 && blen >= 0);
    hl += (size_t)snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n", r.status,
                           reply_reason(r.status));
    for (size_t i = 0; i < p.nfields; i++)
        hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "%s: %s\r\n", p.fields[i].name,
                               p.fields[i].value);
    if (r.close)
        hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "Connection: close\r\n");
    hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "\r\n");
    assert_int_equal((size_t)n, hl + (size_t)blen);
    assert_memory_equal(full, head, hl);
    assert_memory_equal(full + hl, body, (size_t)blen);
}

static void test_parts(void **state)
{
    struct reply r = base(503, "try again");
    struct reply_parts p;
    char buf[4096];

    r.sandbox_id = "abc";
    r.retry_after = 1;
    parts_match(r);
    r.html = true;
    parts_match(r);
    r.close = true;
    parts_match(r);
    r = base(429, "busy");
    r.connection_limit = 7;
    r.port = 3000;
    parts_match(r);
    /* head only: no body, but the real length */
    r.head_only = true;
    assert_int_equal(reply_render_parts(&r, buf, sizeof(buf), &p), 0);
    assert_string_equal(p.fields[1].name, "Content-Length");
    assert_true(atoi(p.fields[1].value) > 0);
    parts_match(r);
    /* too small, bad status */
    r.head_only = false;
    assert_int_equal(reply_render_parts(&r, buf, 10, &p), -1);
    r.status = 99;
    assert_int_equal(reply_render_parts(&r, buf, sizeof(buf), &p), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_exact),    cmocka_unit_test(test_json_all_fields),
        cmocka_unit_test(test_json_escaping), cmocka_unit_test(test_null_message_uses_reason),
        cmocka_unit_test(test_html),          cmocka_unit_test(test_head_only),
        cmocka_unit_test(test_capacity),      cmocka_unit_test(test_4096_enough),
        cmocka_unit_test(test_bad_status),    cmocka_unit_test(test_every_status),
        cmocka_unit_test(test_wants_html),    cmocka_unit_test(test_parts),
        cmocka_unit_test(test_json_host),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
