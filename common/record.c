/* The routing record from Redis: SPEC section 4. */
#include "record.h"
#include "errf.h"
#include "json_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static bool visible_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static int parse_address(const char *lit, struct record *r)
{
    size_t n = strlen(lit);

    if (n == 0 || n >= sizeof(r->address))
        return -1;
    memset(&r->addr, 0, sizeof(r->addr));
    {
        struct sockaddr_in *sin = (struct sockaddr_in *)&r->addr;

        if (inet_pton(AF_INET, lit, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            r->addr_len = sizeof(*sin);
            goto done;
        }
    }
    {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->addr;

        if (inet_pton(AF_INET6, lit, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            r->addr_len = sizeof(*sin6);
            goto done;
        }
    }
    return -1;
done:
    memcpy(r->address, lit, n + 1);
    return 0;
}

#define FIELD(name, var)                                          \
    do {                                                          \
        if (json_guard_member(root, name, &var) == -1) {          \
            errf(err, errlen, "%s appears more than once", name); \
            goto fail;                                            \
        }                                                         \
    } while (0)

int record_parse(const char *json, size_t len, struct record **out, char *err, size_t errlen)
{
    const cJSON *address, *allow, *token, *mask, *exec, *maxc;
    cJSON *root = NULL;
    struct record *r = NULL;

    *out = NULL;
    root = json_guard_parse_object(json, len, err, errlen);
    if (root == NULL)
        goto fail;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    r->allow_public = true;

    FIELD("address", address);
    FIELD("allowPublicTraffic", allow);
    FIELD("trafficAccessToken", token);
    FIELD("maskRequestHost", mask);
    FIELD("executionId", exec);
    FIELD("maxConnections", maxc);

    if (address == NULL) {
        errf(err, errlen, "address missing");
        goto fail;
    }
    if (!cJSON_IsString(address)) {
        errf(err, errlen, "address is not a string");
        goto fail;
    }
    if (parse_address(address->valuestring, r) == -1) {
        errf(err, errlen, "address is not an IP literal");
        goto fail;
    }

    if (allow != NULL) {
        if (!cJSON_IsBool(allow)) {
            errf(err, errlen, "allowPublicTraffic is not a boolean");
            goto fail;
        }
        r->allow_public = cJSON_IsTrue(allow);
    }

    if (token != NULL) {
        if (!cJSON_IsString(token)) {
            errf(err, errlen, "trafficAccessToken is not a string");
            goto fail;
        }
        if (token->valuestring[0] != '\0') {
            r->token_len = strlen(token->valuestring);
            r->token = strdup(token->valuestring);
            if (r->token == NULL) {
                errf(err, errlen, "out of memory");
                goto fail;
            }
        }
    }
    if (!r->allow_public && r->token == NULL) {
        errf(err, errlen,
             token == NULL ? "trafficAccessToken missing while allowPublicTraffic is false"
                           : "trafficAccessToken empty while allowPublicTraffic is false");
        goto fail;
    }

    if (mask != NULL) {
        /* It becomes a Host header: CR, LF or spaces would split or bend
         * the request we send upstream. */
        if (!cJSON_IsString(mask)) {
            errf(err, errlen, "maskRequestHost is not a string");
            goto fail;
        }
        if (mask->valuestring[0] == '\0' || !visible_ascii(mask->valuestring)) {
            errf(err, errlen, "maskRequestHost is not a non-empty string of visible ASCII");
            goto fail;
        }
        r->mask_host = strdup(mask->valuestring);
        if (r->mask_host == NULL) {
            errf(err, errlen, "out of memory");
            goto fail;
        }
    }

    if (exec != NULL) {
        if (!cJSON_IsString(exec)) {
            errf(err, errlen, "executionId is not a string");
            goto fail;
        }
        r->execution_id = strdup(exec->valuestring);
        if (r->execution_id == NULL) {
            errf(err, errlen, "out of memory");
            goto fail;
        }
    }

    if (maxc != NULL && json_guard_uint32(maxc, &r->max_connections) == -1) {
        errf(err, errlen, "maxConnections is not a non-negative integer");
        goto fail;
    }

    cJSON_Delete(root);
    *out = r;
    return 0;

fail:
    record_free(r);
    cJSON_Delete(root);
    return -1;
}

#undef FIELD

void record_free(struct record *r)
{
    if (r == NULL)
        return;
    free(r->token);
    free(r->mask_host);
    free(r->execution_id);
    free(r);
}

int record_mask_host(const struct record *r, uint16_t port, char *buf, size_t cap)
{
    static const char var[] = "${PORT}";
    const size_t var_len = sizeof(var) - 1;
    char digits[6];
    int dlen;
    size_t n = 0;

    if (r == NULL || r->mask_host == NULL || buf == NULL || cap == 0)
        return -1;
    dlen = snprintf(digits, sizeof(digits), "%u", (unsigned)port);
    for (const char *p = r->mask_host; *p;) {
        const char *piece = p;
        size_t plen = 1;

        if (strncmp(p, var, var_len) == 0) {
            piece = digits;
            plen = (size_t)dlen;
            p += var_len;
        } else {
            p++;
        }
        /* Keep one byte for the NUL. */
        if (plen >= cap - n)
            return -1;
        memcpy(buf + n, piece, plen);
        n += plen;
    }
    buf[n] = '\0';
    return n > INT32_MAX ? -1 : (int)n;
}
