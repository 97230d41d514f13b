/* Error messages for the caller's buffer: the (err, errlen) pair that the
 * configuration, record and PROXY header parsers and the proxy's setup
 * functions (listeners, TLS contexts, the access log) fill in on failure. */
#ifndef EDGEPROXY_ERRF_H
#define EDGEPROXY_ERRF_H

#include <stddef.h>

/* Formats the message into err (truncated to errlen, NUL-terminated), or
 * nothing when err is NULL or errlen is 0. Returns -1, so that a function
 * failing with a message can `return errf(err, errlen, ...)`. */
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
