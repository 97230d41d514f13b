/* The pure rules of the HTTP/2 front end (http2/), kept apart from the
 * event loop so they are unit-tested and fuzzed alone: the connection
 * preface, the request method, :authority against Host and against the
 * certificate's names, and the arithmetic of the abuse limits (the reset
 * budget, the flood ratio, what counts as progress for a slow reader). */
#ifndef EDGEPROXY_H2_RULES_H
#define EDGEPROXY_H2_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 9113 section 3.4: what a client with prior knowledge sends first. */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* Do the first `len` bytes of a connection start the preface? 1: all 24
 * are there, 0: they are not the preface (HTTP/1.x), -2: a prefix of it,
 * need more. */
int h2_preface_match(const char *buf, size_t len);

/* :method (RFC 9113 section 8.3.1) -> llhttp's method number (the upstream
 * request line is written from it); -1 for a method llhttp has no name
 * for. Case-sensitive (RFC 9110 section 9.1). */
int h2_method(const char *s, size_t len);

/* Does a Host header name the same authority as :authority (RFC 9113
 * section 8.3.1)? Hosts compare case-insensitively, ports exactly. */
bool h2_authority_equal(const char *a, size_t alen, const char *b, size_t blen);

/* The host of an authority, for comparing with a certificate's names:
 * lower-cased, without the port, the trailing dot or an IPv6 literal's
 * brackets, NUL-terminated into out. Returns its length, -1 when it is
 * empty, malformed or does not fit. */
int h2_authority_host(const char *a, size_t len, char *out, size_t cap);

/* The reset budget of a connection (h2o's habit): every stream reset the
 * client causes (its own RST_STREAM, or a stream error the proxy had to
 * send) spends one, every response completed earns one back, up to the
 * cap. Rapid reset (CVE-2023-44487) and provoked resets (CVE-2025-8671)
 * empty it; a browser cancelling now and then never does. */
struct h2_budget {
    int left, cap;
};
void h2_budget_init(struct h2_budget *b, int cap);
/* Spends one; false once the budget is overdrawn (close the connection). */
bool h2_budget_spend(struct h2_budget *b);
void h2_budget_earn(struct h2_budget *b);

/* nginx's flood check: the frames a client sends must mostly carry
 * something. True when the bytes read are more than 8 times the payload
 * (DATA, decoded header fields, meaningful WINDOW_UPDATEs) plus a 1 MiB
 * allowance: floods of PING, SETTINGS, PRIORITY, empty DATA or tiny window
 * updates (CVE-2019-9512..9518) trip it, any real use does not. */
#define H2_FLOOD_RATIO 8
#define H2_FLOOD_ALLOWANCE (1024 * 1024)
bool h2_flooded(uint64_t bytes_in, uint64_t payload_in);

/* A stream's response is making progress toward a slow reader when a full
 * frame's worth went out since the last mark, or all it had: a trickle of
 * one-byte window updates is not progress, so the send timeout is not
 * reset by it. */
#define H2_PROGRESS_BYTES 16384
bool h2_send_progress(size_t sent_since_mark, size_t still_queued);

#endif
