/* What cJSON lets through but we must not: raw control bytes inside
 * strings (RFC 8259 section 7 forbids them) and "\u0000", which cJSON turns
 * into a C string that silently ends early (a token "abc\u0000xyz" would
 * compare equal to "abc"). Pure. */
#ifndef EDGEPROXY_JSON_GUARD_H
#define EDGEPROXY_JSON_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Offset of the first such byte in s[0..len), or -1 when there is none. */
long json_guard_scan(const char *s, size_t len);

/* A record from Redis (routing, egress policy) as one JSON object: the
 * guard above, then cJSON, then nothing but whitespace after the value
 * (cJSON stops after the first one). Returns the object (caller frees with
 * cJSON_Delete), or NULL with "not valid JSON", "not valid JSON (data after
 * the object)" or "not a JSON object" in err. */
cJSON *json_guard_parse_object(const char *json, size_t len, char *err, size_t errlen);

/* The one member of obj named `name`, in *out (NULL when absent or null:
 * null counts as absent for every optional field); -1 when the name appears
 * twice (which value would the writer have meant? cJSON would silently take
 * the first). */
int json_guard_member(const cJSON *obj, const char *name, const cJSON **out);

/* A JSON number that is an integer in 0..UINT32_MAX (maxConnections in the
 * routing and egress records): 0 and *out set, -1 for anything else. */
int json_guard_uint32(const cJSON *v, uint32_t *out);

#endif
