/* The in-process proxy harness shared by fuzz_request_path (HTTP/1.1) and
 * fuzz_h2 (HTTP/2); see proxy_harness.c. A fuzzer calls harness_init once
 * (from LLVMFuzzerInitialize), sets its hooks, and per input:
 * harness_begin_input, a socketpair handed to session_accept, its client
 * bytes through write_client (settling the loop after each write), then
 * harness_end_input (teardown and the invariants every input must keep:
 * nothing left open, gauges at 0, no lookup waiter, the maxConnections slot
 * free, every access-log line strict JSON within the cap). */
#ifndef EDGEPROXY_FUZZ_PROXY_HARNESS_H
#define EDGEPROXY_FUZZ_PROXY_HARNESS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "runtime.h"
#include "worker.h"

#define ACCESS_LOG_LINE_CAP 4096 /* README, "Access log" */

/* Sandboxes (Host "<port>-<id>.sandbox.test", port = harness_stub_port):
 *   pub      public                      priv    token "tok", maskRequestHost
 *   lim      maxConnections 1            exec    executionId, token-exempt
 *   broken   LOOKUP_BROKEN               down    LOOKUP_UNAVAILABLE
 *   v6       address ::1 (refused)       slow*   answered on the next turn
 *   anything else: LOOKUP_NOT_FOUND      (slow, slowpriv, slowdown) */

struct harness_hooks {
    /* Bytes the client received (after TLS). */
    void (*client_bytes)(const char *d, size_t n);
    /* Is an exchange waiting out a connect retry (worth a short sleep)?
     * The HTTP/1.1 sessions are looked at already. */
    bool (*backing_off)(void);
};
extern struct harness_hooks harness_hooks;

extern struct worker W;
extern struct runtime *rt_normal, *rt_short;
extern struct runtime *harness_rt_extra; /* one more, the fuzzer's (freed at exit) */
extern int harness_stub_port;
extern uint8_t up_mode;         /* the upstream stub's behaviour: see respond() */
extern const uint8_t *raw_resp; /* kind 7: these bytes as the response */
extern size_t raw_resp_len;
extern unsigned up_requests; /* complete requests the stub parsed this input */
extern unsigned activity;    /* bumped whenever bytes move */
extern int client_fd;
extern SSL *client_ssl;
extern bool trace; /* <PREFIX>_TRACE=1 */

/* Prints "<name>: what" and aborts: a finding. */
void harness_die(const char *what) __attribute__((noreturn));

/* Certificates, the normal and short-timeout runtimes (listeners 0 plain,
 * 1 PROXY protocol, 2 TLS, 3 PROXY then TLS; HTTP/2 on them when `http2`),
 * the worker, the stub on 127.0.0.1:stub_port. <env_prefix>_LOG (level) and
 * <env_prefix>_TRACE (client bytes to stderr) are read. */
void harness_init(const char *name, const char *env_prefix, int stub_port, bool http2);
/* Another runtime of the same shape, `extra` adding top-level members
 * (",\"http2\":{...}"). */
struct runtime *harness_runtime(bool short_timeouts, const char *extra, unsigned gen);

void harness_begin_input(struct runtime *rt);
void harness_end_input(void);

/* The access log's worker buffer filled to leave `leave` bytes free (the
 * input's lines land at its end); fill_leave picks it from the input. */
void fill_access_log(size_t leave);
size_t fill_leave(const uint8_t *d, size_t n);

/* The client's end, the loop. */
ssize_t client_io(bool wr, void *buf, size_t n, bool *again);
void close_client(void);
/* The client is done sending: close_notify on TLS, then a TCP half-close
 * (reading goes on). No-op once the client is closed. */
void end_client_output(void);
void read_client(void);
void turn(void);
void settle(int max, bool short_timeouts);
void write_client(const uint8_t *d, size_t n, bool short_timeouts);
/* TLS on client_fd: SNI by c5 bits 1-2 (none, x.sandbox.test,
 * x.e2b.local, other.example), TLS 1.2 at most with bit 3; ALPN if given
 * (wire format). */
void start_tls_client(uint8_t c5, const unsigned char *alpn, unsigned alpn_len);
/* The peer address: 127.0.0.1 (a trusted proxy), 10.1.2.3, ::1,
 * ::ffff:127.0.0.1. */
void make_peer(uint8_t kind, struct sockaddr_storage *ss, int *len);

#endif
