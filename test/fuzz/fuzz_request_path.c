/* libFuzzer: the whole request path, in process, through the event loop.
 *
 * Every proxy source but core/main.c and the Redis cache (redis/redis_link.c,
 * redis/cache.c, ingress/lookup.c) is linked in; test/fuzz/proxy_harness.c
 * (shared with fuzz_h2) provides the lookup.h API (a static table of real
 * records built with route_rec_parse, answered synchronously or on the next
 * loop turn), the few redis_link.h calls the worker and /readyz make, and an
 * upstream stub: a listening socket on 127.0.0.1:STUB_PORT served by the
 * worker's own event_base, which parses what the proxy forwards with llhttp
 * (strict) and answers each request with a response chosen by the input
 * (fixed length, chunked, close-delimited, 204, 100 then 200, truncated,
 * no answer at all, or raw bytes from the input; 101 and echo for upgrades).
 *
 * Per input: a socketpair is handed to session_accept() as if accepted on
 * listener 0 (plain), 1 (PROXY protocol), 2 (TLS) or 3 (PROXY protocol,
 * then TLS); the client bytes go in, in 1-3 writes (through a TLS client
 * on listeners 2-3, after the PROXY header sent as is), with loop turns in
 * between; then the client half-closes, the loop
 * runs until nothing moves, the client closes, and whatever is left
 * (sessions, pooled connections, stub connections) is torn down, so no state
 * but the head free list and the route table survives an input.
 *
 * Input layout (6 control bytes, then the client's bytes):
 *   c0  pieces = 1 + c0 % 3
 *   c1  first split point, as a fraction (c1/256) of the client bytes
 *   c2  second split point, fraction of what is left
 *   c3  upstream behaviour: bits 0-2 response kind (see respond()),
 *       bit 3 answer at the end of the head (before the body),
 *       bit 4 refuse upgrades (a 200 instead of 101),
 *       bit 5 vary the kind per request on a connection,
 *       bit 6 close after every response (stale pooled connections),
 *       bit 7 close with RST (SO_LINGER 0) instead of FIN
 *   c4  client: bit 0 + bit 7 short timeouts (timers fire; slower),
 *       bit 1 never half-close, bit 2 close right after the first piece,
 *       bit 3 drain the worker after the first piece, bit 4 the PROXY
 *       protocol listener, bits 5-6 the peer (127.0.0.1 trusted proxy,
 *       10.1.2.3, ::1, ::ffff:127.0.0.1)
 *   c5  R: when kind is 7, the last R bytes of the input are the raw
 *       response the upstream sends (to every request); otherwise
 *       bit 0 TLS (listener 2, or 3 with c4 bit 4), bits 1-2 the client's
 *       SNI (none, x.sandbox.test, x.e2b.local, other.example: the two
 *       certificates are *.sandbox.test and *.e2b.local), bit 3 TLS 1.2
 *       at most (else 1.3)
 *
 * Sandboxes (Host "<port>-<id>.sandbox.test"; port 39481 is the stub):
 *   pub      public                      priv    token "tok", maskRequestHost
 *   lim      maxConnections 1            exec    executionId, token-exempt
 *   broken   LOOKUP_BROKEN               down    LOOKUP_UNAVAILABLE
 *   v6       address ::1 (refused)       slow*   answered on the next turn
 *   anything else: LOOKUP_NOT_FOUND      (slow, slowpriv, slowdown)
 *
 * Invariants checked (abort() with a message):
 *   - the upstream's llhttp accepts every byte the proxy forwards (before an
 *     upgrade): anything else is request smuggling or a broken rewrite;
 *   - the upstream never sees more requests than the client completed;
 *   - the client's llhttp accepts the proxy's response stream, with at most
 *     one final response per request (+1 for a reply to a broken request);
 *   - after teardown: no session, no upstream connection, no pending
 *     lookup, and the maxConnections slot of "lim" is free again;
 *   - the access log is on (a memfd): every line written for the input is
 *     at most ACCESS_LOG_LINE_CAP bytes with its newline and one strict
 *     JSON object (test/json_strict.h: RFC 8259 and well-formed UTF-8;
 *     cJSON lets raw control bytes and bad UTF-8 through). Before each
 *     input, filler lines leave the worker's 64 KiB log buffer with 0-8 KiB
 *     free (by a hash of the input), so the input's own lines land at the
 *     buffer's end, where the overrun of issue 10 was.
 *
 * HTTP/2 is off on these listeners (a preface is an HTTP/1.1 request
 * here): fuzz_h2 drives that front end.
 *
 * Limits: the normal runtime allows a request line of 3600 bytes (so a
 * path can outgrow the access log's 3000-byte budget once escaped); the
 * short-timeout one keeps 512 (and 2048 for the head) so the 414/431
 * replies stay in reach of short inputs.
 *
 * Found and fixed (regressions/request_path/te-*, pass since 3c17bcd): a
 * request whose Transfer-Encoding does not end in "chunked" ("gzip",
 * "\xa0 chunked") was rejected by llhttp only after on_headers_complete;
 * the proxy took it for bodyless and relay_start() (now forward_start()
 * in core/proxy.c with the front end's body_consumed) forwarded its head
 * upstream, ignoring the error llhttp_execute(&s->req, "", 0) returned.
 *
 * Found and fixed (regressions/request_path/proxy-header-*): a PROXY
 * protocol header that arrived in pieces (or a prefix, then EOF) made
 * proxy_header_cb() spin on its level-triggered read event (it MSG_PEEKs
 * and waits for more); it now sets SO_RCVLOWAT past what it has seen.
 *
 * The busy-loop check is wall-clock: the loop must go idle within 300 ms.
 * On a loaded machine legitimate work can take that long, so a miss is
 * retried with longer windows before it counts, and a real spin prints the
 * sessions and libevent's event list (which event keeps firing).
 *
 * Environment: REQUEST_PATH_TRACE=1 copies what the client receives to
 * stderr; REQUEST_PATH_LOG=0..3 turns the proxy's log on at that level. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>
#include <openssl/err.h>

#include "proxy_harness.h"
#include "proxy_proto.h"
#include "session.h"

#define STUB_PORT 39481
#define CTRL 6
#define MAX_METHODS 512
#define die harness_die

/* the client's view */
static unsigned client_requests; /* complete requests in the client bytes */
static uint8_t methods[MAX_METHODS];
static unsigned nmethods; /* heads completed, in order */
static llhttp_t cresp;
static bool cresp_stop;
static unsigned final_responses;

static llhttp_t creq;
static llhttp_settings_t creq_settings, cresp_settings;

static int creq_on_headers_complete(llhttp_t *p)
{
    if (nmethods < MAX_METHODS)
        methods[nmethods++] = p->method;
    return 0;
}
static int creq_on_message_complete(llhttp_t *p)
{
    client_requests++;
    return 0;
}

/* Counts the requests a strict parser completes in what the client sends,
 * up to an upgrade (what follows is tunnel bytes) or an error. */
static void count_client_requests(const uint8_t *d, size_t n)
{
    client_requests = 0;
    nmethods = 0;
    llhttp_init(&creq, HTTP_REQUEST, &creq_settings);
    llhttp_execute(&creq, (const char *)d, n);
}

static int cresp_on_headers_complete(llhttp_t *p)
{
    if (p->status_code < 200 && p->status_code != 101)
        return 0; /* interim */
    unsigned idx = final_responses++;
    if (final_responses > client_requests + 1) {
        fprintf(stderr, "client got %u final responses for %u complete requests\n", final_responses,
                client_requests);
        die("more responses than requests (response splitting?)");
    }
    return idx < nmethods && methods[idx] == HTTP_HEAD ? 1 : 0;
}
static int cresp_on_message_complete(llhttp_t *p)
{
    /* After Connection: close nothing should follow but this body; and a
     * reply the proxy made for a head it rejected (431) may carry a body
     * the HEAD bookkeeping above skipped. Stop checking here. */
    if (!llhttp_should_keep_alive(p))
        return HPE_PAUSED;
    return 0;
}

static void check_client_output(const char *d, size_t n)
{
    if (cresp_stop || n == 0)
        return;
    llhttp_errno_t err = llhttp_execute(&cresp, d, n);
    if (err == HPE_OK)
        return;
    cresp_stop = true;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE)
        return;
    fprintf(stderr, "client got a response stream llhttp rejects: %s (%s); chunk:\n",
            llhttp_errno_name(err), llhttp_get_error_reason(&cresp));
    fwrite(d, 1, n, stderr);
    fputc('\n', stderr);
    die("the proxy sent the client an invalid response stream");
}

/* ---- setup ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init("fuzz_request_path", "REQUEST_PATH", STUB_PORT, false);
    harness_hooks.client_bytes = check_client_output;
    llhttp_settings_init(&creq_settings);
    creq_settings.on_headers_complete = creq_on_headers_complete;
    creq_settings.on_message_complete = creq_on_message_complete;
    llhttp_settings_init(&cresp_settings);
    cresp_settings.on_headers_complete = cresp_on_headers_complete;
    cresp_settings.on_message_complete = cresp_on_message_complete;
    return 0;
}

/* ---- one input ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < CTRL)
        return 0;
    const uint8_t c0 = data[0], c1 = data[1], c2 = data[2], c4 = data[4];
    up_mode = data[3];
    const uint8_t *body = data + CTRL;
    size_t n = size - CTRL;
    raw_resp = NULL;
    raw_resp_len = 0;
    if ((up_mode & 7) == 7 && data[5] && data[5] <= n) {
        raw_resp_len = data[5];
        raw_resp = body + n - raw_resp_len;
        n -= raw_resp_len;
    }
    const bool short_timeouts = (c4 & 0x81) == 0x81;
    harness_begin_input(short_timeouts ? rt_short : rt_normal);
    final_responses = 0;
    cresp_stop = false;
    int pp_len = 0;
    if (c4 & 0x10) {
        /* what the proxy parses comes after the PROXY header */
        struct proxy_proto_info info;
        char err[128];
        size_t peek = n < PROXY_PROTO_MAX_HEADER ? n : PROXY_PROTO_MAX_HEADER;
        int r = proxy_proto_parse(body, peek, &info, err, sizeof(err));
        pp_len = r;
        if (r > 0)
            count_client_requests(body + r, n - (size_t)r);
        else
            count_client_requests(body, 0);
    } else {
        count_client_requests(body, n);
    }
    llhttp_init(&cresp, HTTP_RESPONSE, &cresp_settings);
    fill_access_log(fill_leave(data, size));
    const bool tls = (up_mode & 7) != 7 && (data[5] & 1);
    const size_t listener = (c4 & 0x10 ? 1 : 0) + (tls ? 2 : 0);
    /* PROXY then TLS: the header goes as it is (all of the input when it is
     * not a valid one: the proxy closes). */
    size_t raw = 0;
    if (tls && (c4 & 0x10))
        raw = pp_len > 0 ? (size_t)pp_len : n;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
        die("socketpair");
    client_fd = sv[1];
    struct sockaddr_storage peer;
    int peer_len;
    make_peer((c4 >> 5) & 3, &peer, &peer_len);
    session_accept(&W, listener, sv[0], (struct sockaddr *)&peer, peer_len);
    if (raw > 0)
        write_client(body, raw, short_timeouts);
    if (tls && client_fd != -1)
        start_tls_client(data[5], NULL, 0);
    body += raw;
    n -= raw;

    /* the client's bytes in 1-3 writes */
    int pieces = 1 + c0 % 3;
    size_t cut1 = pieces > 1 ? n * c1 / 256 : n;
    size_t cut2 = pieces > 2 ? cut1 + (n - cut1) * c2 / 256 : n;
    write_client(body, cut1, short_timeouts);
    if (c4 & 0x08)
        worker_request_drain(&W);
    if (c4 & 0x04)
        close_client();
    write_client(body + cut1, cut2 - cut1, short_timeouts);
    write_client(body + cut2, n - cut2, short_timeouts);
    if (!(c4 & 0x02))
        end_client_output();
    settle(200, short_timeouts);

    harness_end_input();
    if (trace)
        fprintf(stderr, "\n-- client requests %u, upstream requests %u, final responses %u\n",
                client_requests, up_requests, final_responses);
    if (up_requests > client_requests) {
        fprintf(stderr, "upstream saw %u requests, the client completed %u\n", up_requests,
                client_requests);
        die("more requests upstream than the client sent (request smuggling)");
    }
    return 0;
}
