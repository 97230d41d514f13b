/* What cJSON lets through but we must not: raw control bytes inside
 * strings (RFC 8259 section 7 forbids them) and "\u0000", which cJSON turns
 * into a C string that silently ends early (a token "abc\u0000xyz" would
 * compare equal to "abc"). Pure. */
#ifndef EDGEPROXY_JSON_GUARD_H
#define EDGEPROXY_JSON_GUARD_H

#include <stddef.h>

/* Offset of the first such byte in s[0..len), or -1 when there is none. */
long json_guard_scan(const char *s, size_t len);

#endif
