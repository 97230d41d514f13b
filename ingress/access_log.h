/* The access log: one JSON object per line (SPEC section 7), off by default.
 * Each worker formats into its own buffer and writes it out when it is full
 * or once a second, so the hot path costs formatting, not a syscall. The
 * file is opened per configuration generation, so SIGHUP reopens it (log
 * rotation). */
#ifndef EDGEPROXY_ACCESS_LOG_H
#define EDGEPROXY_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct exchange;

/* Opens path for appending; -1 with err. */
int access_log_open(const char *path, char *err, size_t errlen);

/* Per-worker buffer and flush timer; 0 ok. */
int access_log_worker_init(struct worker *w);
void access_log_worker_free(struct worker *w);

/* Appends the line for the exchange that just ended. */
void access_log_request(struct exchange *ex, uint64_t duration_us);

/* The longest line, newline included (README: "Access log"). */
#define ACCESS_LOG_LINE_MAX 4096

/* Appends one line that `format` writes through the bounded writer, at
 * most ACCESS_LOG_LINE_MAX bytes with its newline (one cut short is
 * dropped, with an error line): another kind of line in the same file,
 * buffer and flush (the egress log, egress/log.c). Nothing when the access
 * log is off. */
struct outbuf;
void access_log_append(struct worker *w, void (*format)(struct outbuf *ob, const void *arg),
                       const void *arg);

/* Writes the current time as every line's "time" value has it
 * (2026-01-01T12:00:00.123Z, UTC), without quotes. */
void access_log_put_time(struct outbuf *ob);

/* Writes out what the worker has buffered (before a switch of file). */
void access_log_flush(struct worker *w);

#endif
