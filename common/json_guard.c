#include "json_guard.h"
#include "errf.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

long json_guard_scan(const char *s, size_t len)
{
    bool in_string = false, escape = false;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20) {
            if (in_string || (c != '\t' && c != '\n' && c != '\r'))
                return (long)i;
            continue;
        }
        if (!in_string) {
            if (c == '"')
                in_string = true;
        } else if (escape) {
            escape = false;
            if (c == 'u' && len - i > 4 && memcmp(s + i + 1, "0000", 4) == 0)
                return (long)i;
        } else if (c == '\\') {
            escape = true;
        } else if (c == '"') {
            in_string = false;
        }
    }
    return -1;
}

cJSON *json_guard_parse_object(const char *json, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root;

    if (json == NULL || json_guard_scan(json, len) != -1) {
        errf(err, errlen, "not valid JSON");
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) {
        errf(err, errlen, "not valid JSON");
        return NULL;
    }
    for (; end < json + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            errf(err, errlen, "not valid JSON (data after the object)");
            cJSON_Delete(root);
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        errf(err, errlen, "not a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int json_guard_member(const cJSON *obj, const char *name, const cJSON **out)
{
    const cJSON *found = NULL, *it;

    cJSON_ArrayForEach(it, obj)
    {
        if (it->string != NULL && strcmp(it->string, name) == 0) {
            if (found != NULL)
                return -1;
            found = it;
        }
    }
    *out = (found != NULL && !cJSON_IsNull(found)) ? found : NULL;
    return 0;
}

int json_guard_uint32(const cJSON *v, uint32_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    /* Range first: the cast back is only defined inside it. No floor():
     * the build does not link libm. */
    if (!isfinite(d) || d < 0 || d > (double)UINT32_MAX || (double)(uint32_t)d != d)
        return -1;
    *out = (uint32_t)d;
    return 0;
}
