/* core/rewrite.c: the exact bytes of the heads the proxy writes. A session's
 * exchange gets a request head parsed the way http1/session.c parses it
 * (llhttp with session_head_callbacks into a common/head.c arena, paused at
 * the end of the head) and http1/target.c's views (Host, origin-form
 * target); rewrite_request_head
 * must then say Host or its mask, drop hop-by-hop headers (and the ones a
 * Connection header names), the traffic token and the client's
 * X-Forwarded-* (kept or appended to for a trusted peer), drop Forwarded and
 * X-Real-IP from an untrusted peer, spell chunked one way, and carry an
 * upgrade. The response head is checked through the HTTP/1 front end's
 * send_head operation (http1/h1_exchange.c), which decides the client's
 * framing and connection fate and renders with rewrite_response_head: an
 * HTTP/1.0 keep-alive client, close_after, de-chunking for HTTP/1.0, 101. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "head.h"
#include "rewrite.h"
#include "route_rec.h"
#include "h1.h"
#include "session.h"
#include "stream.h"
#include "worker.h"

#define HOST "3000-abc.sandbox.test"

struct fixture {
    struct config cfg;
    struct worker w;
    struct session s;
    struct event_base *base;
    int sv[2];
};

static int on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static struct head_parser_settings settings;      /* the request */
static struct head_parser_settings resp_settings; /* the response, into resp_head */
static struct head *resp_head;

/* A config from JSON (defaults for the rest), one session from 127.0.0.1
 * whose client stream is one end of a socketpair: the response head is
 * read back from its output buffer, never written (no loop runs). */
static int setup_json(void **state, const char *json)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    if (!f || config_parse(json, strlen(json), &f->cfg, err, sizeof(err)) == -1)
        return -1;
    f->w.cfg = &f->cfg;
    worker_apply_head_limits(&f->w);
    f->base = event_base_new();
    if (!f->base || socketpair(AF_UNIX, SOCK_STREAM, 0, f->sv) == -1)
        return -1;
    llhttp_settings_init(&settings.st);
    session_head_callbacks(&settings);
    settings.st.on_headers_complete = on_headers_complete;
    llhttp_settings_init(&resp_settings.st);
    head_parser_callbacks(&resp_settings, 0); /* the parser's data is &resp_head */
    resp_settings.st.on_headers_complete = on_headers_complete;
    struct session *s = &f->s;
    s->w = &f->w;
    s->io = stream_new_socket(f->base, f->sv[0]);
    struct sockaddr_in *sin = (struct sockaddr_in *)&s->client.peer;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(40000);
    inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
    strcpy(s->client.peer_ip, "127.0.0.1");
    exchange_init(&s->ex, &f->w, &s->client, &h1_exchange_ops);
    s->ex.start_us = 0;
    s->ex.target.port = 3000;
    *state = f;
    return s->io ? 0 : -1;
}

#define LISTENER "\"listeners\":[{\"address\":\"127.0.0.1:8080\"}]"

static int setup(void **state)
{
    return setup_json(state, "{" LISTENER "}");
}

static int setup_trusted(void **state)
{
    return setup_json(state, "{" LISTENER ",\"policy\":{\"trusted_proxies\":"
                             "[\"127.0.0.0/8\"]}}");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct session *s = &f->s;
    head_put(&f->w.heads, s->ex.rh);
    head_put(&f->w.heads, resp_head);
    resp_head = NULL;
    head_free_all(&f->w.heads);
    route_rec_unref(s->ex.rr);
    stream_free(s->io); /* closes sv[0] */
    close(f->sv[1]);
    event_base_free(f->base);
    config_free(&f->cfg);
    free(f);
    return 0;
}

static struct session *S(void **state)
{
    return &((struct fixture *)*state)->s;
}

/* Parses a request head as session.c does, sets the views route.c would
 * (origin-form target, the Host header) and the sandbox's record. */
static void parse_request(struct session *s, const char *raw, const char *record)
{
    struct exchange *ex = &s->ex;
    llhttp_init(&s->req, HTTP_REQUEST, &settings.st);
    s->req.data = s;
    ex->rh = head_get(&s->w->heads);
    assert_non_null(ex->rh);
    assert_int_equal(llhttp_execute(&s->req, raw, strlen(raw)), HPE_PAUSED);
    const struct head *h = ex->rh;
    ex->path = head_str(h, h->url_off);
    ex->path_len = h->url_len;
    const struct hdr *x = head_find(h, HDR_HOST, NULL);
    assert_non_null(x);
    ex->authority = head_str(h, x->val_off);
    ex->authority_len = x->val_len;
    ex->method = s->req.method;
    ex->upgrade = s->req.upgrade;
    ex->req_body = (s->req.flags & F_CHUNKED)  ? EX_BODY_STREAM
                   : s->req.content_length > 0 ? EX_BODY_LENGTH
                                               : EX_BODY_NONE;
    s->client_keepalive = llhttp_should_keep_alive(&s->req);
    ex->rr = route_rec_parse("abc", record, strlen(record));
    assert_non_null(ex->rr);
    assert_int_equal(ex->rr->status, LOOKUP_FOUND);
}

#define PUBLIC "{\"address\":\"10.0.0.5\"}"

/* The head rewrite_request_head writes for this request. */
static void expect_request(void **state, const char *raw, const char *record, const char *want)
{
    struct session *s = S(state);
    parse_request(s, raw, record);
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(rewrite_request_head(&s->ex, out), 0);
    size_t n = evbuffer_get_length(out);
    char *got = calloc(1, n + 1);
    evbuffer_copyout(out, got, n);
    assert_string_equal(got, want);
    free(got);
    evbuffer_free(out);
}

/* ---- the request head sent upstream ---- */

static void test_plain_request(void **state)
{
    expect_request(state,
                   "GET /a?b=1 HTTP/1.1\r\nHost: " HOST "\r\nAccept: */*\r\n"
                   "X-Multi: 1\r\nX-Multi: 2\r\n\r\n",
                   PUBLIC,
                   "GET /a?b=1 HTTP/1.1\r\nHost: " HOST "\r\nAccept: */*\r\n"
                   "X-Multi: 1\r\nX-Multi: 2\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_mask_host(void **state)
{
    /* The upstream sees the mask; X-Forwarded-Host stays the client's. */
    expect_request(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\nX-A: a\r\n\r\n",
                   "{\"address\":\"10.0.0.5\","
                   "\"maskRequestHost\":\"localhost:${PORT}\"}",
                   "GET / HTTP/1.1\r\nHost: localhost:3000\r\nX-A: a\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_hop_by_hop_removed(void **state)
{
    /* RFC 9110 section 7.6.1, and the names Connection lists, except the
   * framing header a client must never strip. */
    expect_request(state,
                   "POST /up HTTP/1.1\r\nHost: " HOST "\r\n"
                   "Connection: keep-alive, X-Secret, Content-Length\r\n"
                   "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                   "TE: trailers\r\nTrailer: X-T\r\nX-Secret: s\r\n"
                   "x-secret: s2\r\nX-Kept: k\r\nContent-Length: 3\r\n\r\n",
                   PUBLIC,
                   "POST /up HTTP/1.1\r\nHost: " HOST "\r\n"
                   "X-Kept: k\r\nContent-Length: 3\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_token_removed(void **state)
{
    expect_request(state,
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\n"
                   "E2B-Traffic-Access-Token: secret\r\nX-A: a\r\n\r\n",
                   "{\"address\":\"10.0.0.5\",\"allowPublicTraffic\":false,"
                   "\"trafficAccessToken\":\"secret\"}",
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\nX-A: a\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

#define CLAIMS                                                             \
    "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2\r\n"    \
    "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"       \
    "Forwarded: for=203.0.113.7;proto=https\r\nX-Real-IP: 203.0.113.7\r\n" \
    "X-A: a\r\n"

static void test_untrusted_claims_replaced_or_removed(void **state)
{
    expect_request(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n" CLAIMS "\r\n", PUBLIC,
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\nX-A: a\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_trusted_claims_kept_or_appended(void **state)
{
    /* The chain plus the peer (nginx's $proxy_add_x_forwarded_for), the
   * balancer's proto, Forwarded and X-Real-IP as sent; X-Forwarded-Host is
   * still the Host the proxy received. */
    expect_request(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n" CLAIMS "\r\n", PUBLIC,
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\n"
                   "Forwarded: for=203.0.113.7;proto=https\r\n"
                   "X-Real-IP: 203.0.113.7\r\nX-A: a\r\n"
                   "X-Forwarded-For: 203.0.113.7, 198.51.100.2, 127.0.0.1\r\n"
                   "X-Forwarded-Proto: https\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_tls_proto(void **state)
{
    S(state)->client.tls = true;
    expect_request(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n", PUBLIC,
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_chunked_canonical(void **state)
{
    /* Whatever the client's spelling, the one every parser reads. */
    expect_request(state,
                   "POST / HTTP/1.1\r\nHost: " HOST "\r\n"
                   "Transfer-Encoding: CHUNKED\r\nX-A: a\r\n\r\n",
                   PUBLIC,
                   "POST / HTTP/1.1\r\nHost: " HOST "\r\nX-A: a\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

static void test_upgrade_carried(void **state)
{
    /* Connection and Upgrade are hop-by-hop, so the proxy says them again
   * for the hop it makes. */
    expect_request(state,
                   "GET /ws HTTP/1.1\r\nHost: " HOST "\r\n"
                   "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Key: k\r\n\r\n",
                   PUBLIC,
                   "GET /ws HTTP/1.1\r\nHost: " HOST "\r\n"
                   "Sec-WebSocket-Key: k\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n"
                   "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}

static void test_http10_request_goes_up_as_11(void **state)
{
    expect_request(state, "GET / HTTP/1.0\r\nHost: " HOST "\r\n\r\n", PUBLIC,
                   "GET / HTTP/1.1\r\nHost: " HOST "\r\n"
                   "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: " HOST "\r\n\r\n");
}

/* ---- the response head sent to the client ---- */

/* Parses the request (for its version) and the response head, as
 * core/proxy.c does, hands it to the HTTP/1 front end's send_head, then
 * checks what it put in the client output. */
static void expect_response(void **state, const char *request, const char *raw, const char *want)
{
    struct session *s = S(state);
    parse_request(s, request, PUBLIC);
    llhttp_t resp;
    llhttp_init(&resp, HTTP_RESPONSE, &resp_settings.st);
    resp.data = &resp_head;
    resp_head = head_get(&s->w->heads);
    assert_non_null(resp_head);
    assert_int_equal(llhttp_execute(&resp, raw, strlen(raw)), HPE_PAUSED);
    s->ex.resp_body = (resp.flags & F_CHUNKED)          ? EX_BODY_STREAM
                      : (resp.flags & F_CONTENT_LENGTH) ? EX_BODY_LENGTH
                                                        : EX_BODY_NONE;
    assert_int_equal(h1_exchange_ops.send_head(&s->ex, resp.status_code, resp_head), 0);
    struct evbuffer *out = stream_output(s->io);
    size_t n = evbuffer_get_length(out);
    char *got = calloc(1, n + 1);
    evbuffer_copyout(out, got, n);
    assert_string_equal(got, want);
    assert_int_equal(s->ex.bytes_out, n);
    free(got);
}

static void test_response_http10_keepalive(void **state)
{
    /* An HTTP/1.0 client keeps the connection only when told so; the app's
   * own hop-by-hop headers do not pass. */
    expect_response(state,
                    "GET / HTTP/1.0\r\nHost: " HOST "\r\n"
                    "Connection: keep-alive\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                    "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                    "X-App: 1\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-App: 1\r\n"
                    "Connection: keep-alive\r\n\r\n");
}

static void test_response_http11_says_nothing(void **state)
{
    expect_response(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
                    "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n");
}

static void test_response_close_after(void **state)
{
    S(state)->close_after = true;
    expect_response(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    "Connection: keep-alive\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    "Connection: close\r\n\r\n");
}

static void test_response_dechunked_for_http10(void **state)
{
    /* A body of unknown length goes to an HTTP/1.0 client de-chunked and
     * close-delimited. */
    expect_response(state, "GET / HTTP/1.0\r\nHost: " HOST "\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
}

static void test_response_101(void **state)
{
    expect_response(state,
                    "GET /ws HTTP/1.1\r\nHost: " HOST "\r\n"
                    "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
                    "HTTP/1.1 101 Switching Protocols\r\n"
                    "Sec-WebSocket-Accept: x\r\n"
                    "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}

static void test_response_reason_filled_in(void **state)
{
    /* A status line without a reason gets the standard one. */
    expect_response(state, "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n", "HTTP/1.1 204 \r\n\r\n",
                    "HTTP/1.1 204 No Content\r\n\r\n");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_plain_request),
        T(test_mask_host),
        T(test_hop_by_hop_removed),
        T(test_token_removed),
        T(test_untrusted_claims_replaced_or_removed),
        cmocka_unit_test_setup_teardown(test_trusted_claims_kept_or_appended, setup_trusted,
                                        teardown),
        T(test_tls_proto),
        T(test_chunked_canonical),
        T(test_upgrade_carried),
        T(test_http10_request_goes_up_as_11),
        T(test_response_http10_keepalive),
        T(test_response_http11_says_nothing),
        T(test_response_close_after),
        T(test_response_dechunked_for_http10),
        T(test_response_101),
        T(test_response_reason_filled_in),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
