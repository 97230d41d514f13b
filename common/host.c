/* Host header -> (port, sandbox id): SPEC section 5.
 *
 * Everything works on (ptr, len): the input is a view into the request
 * buffer and is not NUL-terminated. No allocation. */
#include "host.h"

#include <stdbool.h>
#include <string.h>

/* RFC 1035 caps a name at 255 octets on the wire; we apply the same bound to
 * the text form (after the ":port" and the trailing dot are gone). */
#define HOST_NAME_MAX_LEN 255

/* A port has at most 5 digits; more is not a port (RFC 3986 3.2.3 allows an
 * empty one, which we accept and ignore like any other). */
#define HOST_PORT_SUFFIX_MAX 5

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Case-insensitive equality of s[0..len) with the lower-case domain d. */
static bool name_equals(const char *s, size_t len, const char *d)
{
    size_t dlen = strlen(d);

    if (dlen != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (lower(s[i]) != d[i])
            return false;
    return true;
}

static bool domain_allowed(const char *s, size_t len, const struct domain_list *domains)
{
    if (domains == NULL || domains->count == 0)
        return true;
    for (size_t i = 0; i < domains->count; i++)
        if (domains->names[i] != NULL && name_equals(s, len, domains->names[i]))
            return true;
    return false;
}

int host_parse_port(const char *s, size_t len, uint16_t *out)
{
    uint32_t v = 0;

    if (s == NULL || len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (uint32_t)(s[i] - '0');
        /* Stop before overflow: leading zeros never grow v, so "0003000"
         * passes while "99999999999" fails at its sixth digit. */
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int host_parse_sandbox_id(const char *s, size_t len, struct host_target *out)
{
    if (s == NULL || len == 0 || len > HOST_ID_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]))
            return -1;
    for (size_t i = 0; i < len; i++)
        out->sandbox_id[i] = lower(s[i]);
    out->sandbox_id[len] = '\0';
    out->id_len = len;
    return 0;
}

/* Parses the first label "<port>-<sandboxId>[-<anything>]". The label's
 * bytes are already known to be [A-Za-z0-9-]. */
static int parse_first_label(const char *s, size_t len, struct host_target *out)
{
    const char *dash = memchr(s, '-', len);
    const char *id, *id_end, *end = s + len;
    uint16_t port;

    if (dash == NULL)
        return HOST_MALFORMED;
    /* Anything before the first '-' that is not 1..65535 (empty, letters,
     * zero, too big) is a bad port: the label has the right shape, only the
     * number is wrong. */
    if (host_parse_port(s, (size_t)(dash - s), &port) == -1)
        return HOST_BAD_PORT;
    id = dash + 1;
    id_end = memchr(id, '-', (size_t)(end - id));
    if (id_end == NULL)
        id_end = end;
    if (host_parse_sandbox_id(id, (size_t)(id_end - id), out) == -1)
        return HOST_BAD_SANDBOX_ID;
    out->port = port;
    return HOST_OK;
}

int host_parse(const char *host, size_t len, const struct domain_list *domains,
               struct host_target *out)
{
    const char *colon, *dot;
    size_t label_len, i;

    if (host == NULL || len == 0)
        return HOST_MALFORMED;

    /* ":port" suffix. An IPv6 literal "[::1]" starts with '[', which the
     * byte check below rejects, so the first ':' is the only candidate. */
    colon = memchr(host, ':', len);
    if (colon != NULL) {
        size_t plen = len - (size_t)(colon - host) - 1;

        if (plen > HOST_PORT_SUFFIX_MAX)
            return HOST_MALFORMED;
        for (i = 0; i < plen; i++)
            if (!is_digit(colon[1 + i]))
                return HOST_MALFORMED;
        len = (size_t)(colon - host);
    }
    /* One trailing dot: the absolute form of the same name. */
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0 || len > HOST_NAME_MAX_LEN)
        return HOST_MALFORMED;

    /* Bytes and labels: [A-Za-z0-9-] separated by single dots. */
    for (i = 0; i < len; i++) {
        char c = host[i];

        if (c == '.') {
            if (i == 0 || host[i - 1] == '.')
                return HOST_MALFORMED;
        } else if (!is_alnum(c) && c != '-') {
            return HOST_MALFORMED;
        }
    }
    /* i == len here, and host[len - 1] != '.' unless "a.." which the loop
     * already refused, so the last label is non-empty. */
    if (host[len - 1] == '.')
        return HOST_MALFORMED;

    dot = memchr(host, '.', len);
    label_len = dot ? (size_t)(dot - host) : len;

    if (dot != NULL) {
        const char *rest = dot + 1;
        size_t rest_len = len - label_len - 1;

        /* The domain decides first: a name under someone else's domain is
         * foreign whatever its first label looks like. */
        if (!domain_allowed(rest, rest_len, domains))
            return HOST_FOREIGN_DOMAIN;
        if (name_equals(host, label_len, "sandbox"))
            return HOST_NEEDS_HEADERS;
    } else if (domains != NULL && domains->count > 0) {
        /* A bare label is under no configured domain. */
        return HOST_FOREIGN_DOMAIN;
    }
    return parse_first_label(host, label_len, out);
}

const char *host_status_message(int status)
{
    switch (status) {
    case HOST_OK:
        return "ok";
    case HOST_NEEDS_HEADERS:
        return "sandbox id and port come from the e2b-sandbox-id and "
               "e2b-sandbox-port headers";
    case HOST_MALFORMED:
        return "Invalid host: expected <port>-<sandboxId>.<domain>";
    case HOST_FOREIGN_DOMAIN:
        return "Invalid host: not under a domain served here";
    case HOST_BAD_SANDBOX_ID:
        return "Invalid host: the sandbox id is not [a-z0-9]+ (at most 63)";
    case HOST_BAD_PORT:
        return "Invalid host: the port is not a number in 1..65535";
    default:
        return "Invalid host";
    }
}
