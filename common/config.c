/* The JSON configuration: SPEC section 3 plus the team's keys. Every key,
 * its default and its range is documented in README.md and shown with its
 * default in conf/edgeproxy.json. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json_guard.h"

/* Durations above a day are typos, and keeping them there means ms * 1000
 * never overflows an int64 of microseconds anywhere downstream. */
#define MS_MAX 86400000
#define CONFIG_FILE_MAX (1 << 20)
#define KEY_PREFIX_MAX 128
#define PATH_MAX_LEN 128

/* Defaults for the string fields live here, not on the heap, so that
 * config_defaults() owns nothing; config_free() knows not to free them. */
static char def_admin_address[] = "127.0.0.1:9090";
static char def_redis_host[] = "127.0.0.1";
static char def_key_prefix[] = "sandbox:";

static void free_owned(char *p)
{
    if (p != def_admin_address && p != def_redis_host && p != def_key_prefix)
        free(p);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Key paths for messages. Truncating one is harmless (it only shortens a
 * message), so this wraps vsnprintf where GCC does not second-guess it. */
static void pathf(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pathf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* "client" + "max_headers" -> "client.max_headers"; top level has no dot. */
static void join(char *buf, size_t n, const char *path, const char *key)
{
    if (path[0] == '\0')
        pathf(buf, n, "%s", key);
    else
        pathf(buf, n, "%s.%s", path, key);
}

/* ---- addresses and networks ------------------------------------------ */

int config_parse_address(const char *s, struct sockaddr_storage *ss,
                         socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s, *h;
    size_t hlen;
    uint16_t port;

    if (s == NULL)
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        port_s = close + 2;
    } else {
        const char *colon = strchr(s, ':');

        /* One colon only: a bare IPv6 address is ambiguous without [ ]. */
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        h = s;
        hlen = (size_t)(colon - s);
        port_s = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (host_parse_port(port_s, strlen(port_s), &port) == -1)
        return -1;

    memset(ss, 0, sizeof(*ss));
    if (s[0] != '[') {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
    }
    return 0;
}

/* "10.0.0.0/8", "fd00::/8", "::1" (bare = one host). Host bits past the
 * prefix are cleared rather than refused, as nginx's set_real_ip_from does:
 * "10.1.2.3/8" can only mean 10.0.0.0/8. */
static int parse_cidr(const char *s, struct config_cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max, prefix;

    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = strlen(p);

        if (n == 0 || n > 3)
            return -1;
        prefix = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -1;
            prefix = prefix * 10 + (unsigned)(p[i] - '0');
        }
        if (prefix > max)
            return -1;
    }
    out->prefix = prefix;
    for (unsigned bit = prefix; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[bytes] ^ b[bytes]) & (uint8_t)(0xff00u >> rest)) == 0;
}

bool config_cidr_match(const struct config_cidr *nets, size_t count,
                       const struct sockaddr *sa)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t v4[4], v6[16];
    bool has_v4 = false, has_v6 = false;

    if (sa == NULL)
        return false;
    /* Each client address in both forms where one exists: a dual-stack
     * socket reports IPv4 peers as ::ffff:a.b.c.d, and those must match
     * "10.0.0.0/8" just as a plain IPv4 peer does (and the reverse). */
    if (sa->sa_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        memcpy(v6, mapped, 12);
        memcpy(v6 + 12, v4, 4);
        has_v4 = has_v6 = true;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(v6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        has_v6 = true;
        if (memcmp(v6, mapped, 12) == 0) {
            memcpy(v4, v6 + 12, 4);
            has_v4 = true;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        if (nets[i].family == AF_INET && has_v4 &&
            prefix_equal(nets[i].addr, v4, nets[i].prefix))
            return true;
        if (nets[i].family == AF_INET6 && has_v6 &&
            prefix_equal(nets[i].addr, v6, nets[i].prefix))
            return true;
    }
    return false;
}

/* ---- JSON helpers -------------------------------------------------------- */

static int json_error(const char *json, size_t len, size_t off, char *err,
                      size_t errlen)
{
    size_t line = 1, col = 1;

    for (size_t i = 0; i < off && i < len; i++) {
        if (json[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return fail(err, errlen, "not valid JSON near line %zu, column %zu", line,
                col);
}

/* Every member of obj must be in `allowed` and appear once. cJSON keeps
 * duplicates and GetObjectItem returns the first: the second would be
 * silently ignored. */
static int check_keys(const cJSON *obj, const char *path,
                      const char *const *allowed, char *err, size_t errlen)
{
    char kp[PATH_MAX_LEN + 64];
    const cJSON *it, *prev;

    cJSON_ArrayForEach(it, obj) {
        bool known = false;

        for (size_t i = 0; allowed[i] != NULL; i++)
            if (strcmp(it->string, allowed[i]) == 0)
                known = true;
        join(kp, sizeof(kp), path, it->string);
        if (!known)
            return fail(err, errlen, "unknown key \"%s\"", kp);
        for (prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0)
                return fail(err, errlen, "duplicate key \"%s\"", kp);
    }
    return 0;
}

static const cJSON *item(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static bool int_in(const cJSON *it, int lo, int hi, int *out)
{
    double v = it->valuedouble;

    if (!cJSON_IsNumber(it) || !isfinite(v) || v < lo || v > hi ||
        (double)(int)v != v)
        return false;
    *out = (int)v;
    return true;
}

static int get_int(const cJSON *obj, const char *path, const char *key,
                   int lo, int hi, int *out, char *err, size_t errlen)
{
    const cJSON *it = item(obj, key);
    char kp[PATH_MAX_LEN];

    if (it == NULL)
        return 0;
    if (!int_in(it, lo, hi, out)) {
        join(kp, sizeof(kp), path, key);
        return fail(err, errlen, "%s: must be an integer in %d..%d", kp, lo,
                    hi);
    }
    return 0;
}

static int get_bool(const cJSON *obj, const char *path, const char *key,
                    bool *out, char *err, size_t errlen)
{
    const cJSON *it = item(obj, key);
    char kp[PATH_MAX_LEN];

    if (it == NULL)
        return 0;
    if (!cJSON_IsBool(it)) {
        join(kp, sizeof(kp), path, key);
        return fail(err, errlen, "%s: must be true or false", kp);
    }
    *out = cJSON_IsTrue(it);
    return 0;
}

/* A section object: NULL when absent; -1 when present but not an object
 * (null included, except where the caller handles it first). */
static int get_object(const cJSON *obj, const char *key, const cJSON **out,
                      char *err, size_t errlen)
{
    const cJSON *it = item(obj, key);

    *out = NULL;
    if (it == NULL)
        return 0;
    if (!cJSON_IsObject(it))
        return fail(err, errlen, "%s: must be an object", key);
    *out = it;
    return 0;
}

/* Replaces *dst with a copy of a non-empty string. */
static int get_path_string(const cJSON *it, const char *kp, char **dst,
                           char *err, size_t errlen)
{
    char *copy;

    if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
        return fail(err, errlen, "%s: must be a non-empty string", kp);
    copy = strdup(it->valuestring);
    if (copy == NULL)
        return fail(err, errlen, "%s: out of memory", kp);
    free_owned(*dst);
    *dst = copy;
    return 0;
}

/* ---- sections ------------------------------------------------------------ */

/* Lower-cased, dots trimmed, [a-z0-9-] labels: the form host_parse
 * compares against. */
static int parse_domains(const cJSON *arr, struct config *cfg, char *err,
                         size_t errlen)
{
    const cJSON *it;
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;

    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "domains: must be an array of strings");
    if (n == 0)
        return 0;
    cfg->domains.names = calloc(n, sizeof(char *));
    if (cfg->domains.names == NULL)
        return fail(err, errlen, "domains: out of memory");
    cJSON_ArrayForEach(it, arr) {
        const char *s, *e;
        char *d;
        size_t len;

        if (!cJSON_IsString(it))
            return fail(err, errlen, "domains[%zu]: must be a string", i);
        s = it->valuestring;
        e = s + strlen(s);
        while (s < e && *s == '.')
            s++;
        while (e > s && e[-1] == '.')
            e--;
        len = (size_t)(e - s);
        if (len == 0 || len > 253)
            return fail(err, errlen, "domains[%zu]: \"%.64s\" is not a domain "
                        "name", i, it->valuestring);
        d = malloc(len + 1);
        if (d == NULL)
            return fail(err, errlen, "domains: out of memory");
        cfg->domains.names[cfg->domains.count++] = d;
        for (size_t k = 0; k < len; k++) {
            char c = s[k];

            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.') ||
                (c == '.' && s[k - 1] == '.'))
                return fail(err, errlen, "domains[%zu]: \"%.64s\" is not a "
                            "domain name", i, it->valuestring);
            d[k] = c;
        }
        d[len] = '\0';
        i++;
    }
    return 0;
}

static int parse_listener(const cJSON *obj, size_t idx,
                          struct config_listener *l, char *err, size_t errlen)
{
    static const char *const keys[] = {"address", "tls", "proxy_protocol",
                                       NULL};
    static const char *const tls_keys[] = {"certificates", NULL};
    static const char *const cert_keys[] = {"cert", "key", NULL};
    char path[PATH_MAX_LEN], kp[PATH_MAX_LEN + 32];
    const cJSON *it, *tls, *certs, *c;
    size_t ci = 0;

    pathf(path, sizeof(path), "listeners[%zu]", idx);
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "%s: must be an object", path);
    if (check_keys(obj, path, keys, err, errlen) == -1)
        return -1;

    it = item(obj, "address");
    pathf(kp, sizeof(kp), "%s.address", path);
    if (it == NULL)
        return fail(err, errlen, "%s: required", kp);
    if (get_path_string(it, kp, &l->address, err, errlen) == -1)
        return -1;
    if (config_parse_address(l->address, &l->addr, &l->addr_len) == -1)
        return fail(err, errlen, "%s: not IPv4:port or [IPv6]:port", kp);

    if (get_bool(obj, path, "proxy_protocol", &l->proxy_protocol, err,
                 errlen) == -1)
        return -1;

    tls = item(obj, "tls");
    if (tls == NULL)
        return 0;
    pathf(kp, sizeof(kp), "%s.tls", path);
    if (!cJSON_IsObject(tls))
        return fail(err, errlen, "%s: must be an object", kp);
    if (check_keys(tls, kp, tls_keys, err, errlen) == -1)
        return -1;
    l->tls = true;
    certs = item(tls, "certificates");
    pathf(kp, sizeof(kp), "%s.tls.certificates", path);
    if (certs == NULL || !cJSON_IsArray(certs) ||
        cJSON_GetArraySize(certs) == 0)
        return fail(err, errlen, "%s: must be a non-empty array", kp);
    if (cJSON_GetArraySize(certs) > CONFIG_MAX_CERTS)
        return fail(err, errlen, "%s: at most %d certificates", kp,
                    CONFIG_MAX_CERTS);
    cJSON_ArrayForEach(c, certs) {
        struct config_cert *cert = &l->certs[ci];
        char cp[PATH_MAX_LEN + 64];

        pathf(cp, sizeof(cp), "%s.tls.certificates[%zu]", path, ci);
        if (!cJSON_IsObject(c))
            return fail(err, errlen, "%s: must be an object", cp);
        if (check_keys(c, cp, cert_keys, err, errlen) == -1)
            return -1;
        /* Count it before filling, so config_free sees what to free. */
        l->cert_count = ci + 1;
        pathf(kp, sizeof(kp), "%s.cert", cp);
        if (item(c, "cert") == NULL)
            return fail(err, errlen, "%s: required", kp);
        if (get_path_string(item(c, "cert"), kp, &cert->cert, err,
                            errlen) == -1)
            return -1;
        pathf(kp, sizeof(kp), "%s.key", cp);
        if (item(c, "key") == NULL)
            return fail(err, errlen, "%s: required", kp);
        if (get_path_string(item(c, "key"), kp, &cert->key, err, errlen) == -1)
            return -1;
        ci++;
    }
    return 0;
}

static int parse_listeners(const cJSON *arr, struct config *cfg, char *err,
                           size_t errlen)
{
    const cJSON *it;
    size_t i = 0;

    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "listeners: must be an array");
    if (cJSON_GetArraySize(arr) > CONFIG_MAX_LISTENERS)
        return fail(err, errlen, "listeners: at most %d listeners",
                    CONFIG_MAX_LISTENERS);
    cJSON_ArrayForEach(it, arr) {
        struct config_listener *l = &cfg->listeners[i];

        cfg->listener_count = i + 1;
        if (parse_listener(it, i, l, err, errlen) == -1)
            return -1;
        /* Two listeners on one address: the second bind would fail at
         * start-up with a vaguer message. */
        for (size_t j = 0; j < i; j++)
            if (cfg->listeners[j].addr_len == l->addr_len &&
                memcmp(&cfg->listeners[j].addr, &l->addr, l->addr_len) == 0)
                return fail(err, errlen, "listeners[%zu].address: same as "
                            "listeners[%zu]", i, j);
        i++;
    }
    return 0;
}

static int parse_admin(const cJSON *root, struct config *cfg, char *err,
                       size_t errlen)
{
    static const char *const keys[] = {"address", NULL};
    const cJSON *obj = item(root, "admin"), *addr;

    if (obj == NULL)
        return 0;
    if (cJSON_IsNull(obj)) {
        cfg->admin_enabled = false;
        return 0;
    }
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "admin: must be an object or null");
    if (check_keys(obj, "admin", keys, err, errlen) == -1)
        return -1;
    addr = item(obj, "address");
    if (addr == NULL)
        return 0;
    if (cJSON_IsNull(addr)) {
        cfg->admin_enabled = false;
        return 0;
    }
    if (!cJSON_IsString(addr))
        return fail(err, errlen, "admin.address: must be a string or null");
    if (get_path_string(addr, "admin.address", &cfg->admin_address, err,
                        errlen) == -1)
        return -1;
    if (config_parse_address(cfg->admin_address, &cfg->admin_addr,
                             &cfg->admin_addr_len) == -1)
        return fail(err, errlen, "admin.address: not IPv4:port or "
                    "[IPv6]:port");
    cfg->admin_enabled = true;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* redis://[:password@]host[:port][/db]. The password is percent-decoded
 * (RFC 3986 2.1) so it may hold '@', '/' or ':'. */
static int parse_redis_url(const char *url, struct config *cfg, char *err,
                           size_t errlen)
{
    const char *rest, *at, *hp, *slash, *hend, *port_s = NULL;
    char *host = NULL, *pass = NULL;
    size_t hlen;
    uint16_t port = 6379;
    int db = 0;

    if (strncmp(url, "rediss://", 9) == 0)
        return fail(err, errlen, "redis.url: rediss:// (TLS) is not "
                    "supported");
    if (strncmp(url, "redis://", 8) != 0)
        return fail(err, errlen, "redis.url: must start with redis://");
    rest = url + 8;
    if (strpbrk(rest, "?#") != NULL)
        return fail(err, errlen, "redis.url: query and fragment are not "
                    "supported");

    /* Host, port and db hold no '@', so the last one ends the userinfo. */
    at = strrchr(rest, '@');
    hp = rest;
    if (at != NULL) {
        size_t plen, k = 0;

        if (rest[0] != ':')
            return fail(err, errlen, "redis.url: user names are not "
                        "supported, use redis://:password@host");
        plen = (size_t)(at - rest - 1);
        if (plen == 0)
            return fail(err, errlen, "redis.url: empty password");
        pass = malloc(plen + 1);
        if (pass == NULL)
            return fail(err, errlen, "redis.url: out of memory");
        for (size_t i = 0; i < plen; i++) {
            char c = rest[1 + i];

            if (c == '%') {
                int hi = i + 2 < plen ? hexval(rest[2 + i]) : -1;
                int lo = i + 2 < plen ? hexval(rest[3 + i]) : -1;

                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                    free(pass);
                    return fail(err, errlen, "redis.url: bad %%-escape in "
                                "the password");
                }
                c = (char)(hi * 16 + lo);
                i += 2;
            }
            pass[k++] = c;
        }
        pass[k] = '\0';
        hp = at + 1;
    }

    slash = strchr(hp, '/');
    hend = slash ? slash : hp + strlen(hp);
    if (hp[0] == '[') {
        const char *close = memchr(hp, ']', (size_t)(hend - hp));
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;

        if (close == NULL || (close + 1 != hend && close[1] != ':'))
            goto bad_host;
        hlen = (size_t)(close - hp - 1);
        if (hlen == 0 || hlen >= sizeof(tmp))
            goto bad_host;
        memcpy(tmp, hp + 1, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            goto bad_host;
        host = strdup(tmp);
        if (close[1] == ':')
            port_s = close + 2;
    } else {
        const char *colon = memchr(hp, ':', (size_t)(hend - hp));
        const char *e = colon ? colon : hend;

        hlen = (size_t)(e - hp);
        if (hlen == 0 || hlen > 255)
            goto bad_host;
        for (size_t i = 0; i < hlen; i++) {
            char c = hp[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '.'))
                goto bad_host;
        }
        host = strndup(hp, hlen);
        if (colon != NULL)
            port_s = colon + 1;
    }
    if (host == NULL) {
        free(pass);
        return fail(err, errlen, "redis.url: out of memory");
    }
    if (port_s != NULL &&
        host_parse_port(port_s, (size_t)(hend - port_s), &port) == -1) {
        free(host);
        free(pass);
        return fail(err, errlen, "redis.url: port must be 1..65535");
    }
    if (slash != NULL && slash[1] != '\0') {
        const char *d = slash + 1;
        size_t n = strlen(d);
        long v = 0;

        for (size_t i = 0; i < n; i++) {
            if (d[i] < '0' || d[i] > '9' || n > 9) {
                free(host);
                free(pass);
                return fail(err, errlen, "redis.url: database must be a "
                            "number in 0..999999999");
            }
            v = v * 10 + (d[i] - '0');
        }
        db = (int)v;
    }

    free_owned(cfg->redis_host);
    free(cfg->redis_password);
    cfg->redis_host = host;
    cfg->redis_password = pass;
    cfg->redis_port = port;
    cfg->redis_db = db;
    return 0;

bad_host:
    free(pass);
    return fail(err, errlen, "redis.url: host must be a name, an IPv4 "
                "address or [IPv6]");
}

static int parse_redis(const cJSON *obj, struct config *cfg, char *err,
                       size_t errlen)
{
    static const char *const keys[] = {"url", "key_prefix", "timeout_ms",
                                       NULL};
    const cJSON *it;

    if (check_keys(obj, "redis", keys, err, errlen) == -1)
        return -1;
    it = item(obj, "url");
    if (it != NULL) {
        if (!cJSON_IsString(it))
            return fail(err, errlen, "redis.url: must be a string");
        if (parse_redis_url(it->valuestring, cfg, err, errlen) == -1)
            return -1;
    }
    it = item(obj, "key_prefix");
    if (it != NULL) {
        const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
        char *copy;
        size_t n = s ? strlen(s) : 0;

        /* It becomes part of every key and of the invalidation channel
         * name: spaces or controls there are always a mistake. */
        for (size_t i = 0; s != NULL && i < n; i++)
            if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
                s = NULL;
        if (s == NULL || n > KEY_PREFIX_MAX)
            return fail(err, errlen, "redis.key_prefix: must be a string of "
                        "visible ASCII, at most %d bytes", KEY_PREFIX_MAX);
        copy = strdup(s);
        if (copy == NULL)
            return fail(err, errlen, "redis.key_prefix: out of memory");
        free_owned(cfg->key_prefix);
        cfg->key_prefix = copy;
    }
    return get_int(obj, "redis", "timeout_ms", 1, MS_MAX,
                   &cfg->redis_timeout_ms, err, errlen);
}

static int parse_cache(const cJSON *obj, struct config *cfg, char *err,
                       size_t errlen)
{
    static const char *const keys[] = {"ttl_ms", "negative_ttl_ms",
                                       "stale_grace_ms", "max_entries", NULL};

    if (check_keys(obj, "cache", keys, err, errlen) == -1 ||
        get_int(obj, "cache", "ttl_ms", 0, MS_MAX, &cfg->cache_ttl_ms, err,
                errlen) == -1 ||
        get_int(obj, "cache", "negative_ttl_ms", 0, MS_MAX,
                &cfg->cache_negative_ttl_ms, err, errlen) == -1 ||
        get_int(obj, "cache", "stale_grace_ms", 0, MS_MAX,
                &cfg->cache_stale_grace_ms, err, errlen) == -1 ||
        get_int(obj, "cache", "max_entries", 16, 10000000,
                &cfg->cache_max_entries, err, errlen) == -1)
        return -1;
    return 0;
}

static int parse_policy(const cJSON *obj, struct config *cfg, char *err,
                        size_t errlen)
{
    static const char *const keys[] = {"token_exempt_ports",
                                       "trusted_proxies", NULL};
    const cJSON *arr, *it;
    size_t i;

    if (check_keys(obj, "policy", keys, err, errlen) == -1)
        return -1;

    arr = item(obj, "token_exempt_ports");
    if (arr != NULL) {
        if (!cJSON_IsArray(arr))
            return fail(err, errlen, "policy.token_exempt_ports: must be an "
                        "array of ports");
        if (cJSON_GetArraySize(arr) > CONFIG_MAX_EXEMPT_PORTS)
            return fail(err, errlen, "policy.token_exempt_ports: at most %d "
                        "ports", CONFIG_MAX_EXEMPT_PORTS);
        i = 0;
        cJSON_ArrayForEach(it, arr) {
            int v;

            if (!int_in(it, 1, 65535, &v))
                return fail(err, errlen, "policy.token_exempt_ports[%zu]: "
                            "must be an integer in 1..65535", i);
            cfg->token_exempt_ports[i++] = (uint16_t)v;
        }
        cfg->token_exempt_count = i;
    }

    arr = item(obj, "trusted_proxies");
    if (arr != NULL) {
        if (!cJSON_IsArray(arr))
            return fail(err, errlen, "policy.trusted_proxies: must be an "
                        "array of networks");
        if (cJSON_GetArraySize(arr) > CONFIG_MAX_TRUSTED)
            return fail(err, errlen, "policy.trusted_proxies: at most %d "
                        "networks", CONFIG_MAX_TRUSTED);
        i = 0;
        cJSON_ArrayForEach(it, arr) {
            if (!cJSON_IsString(it) ||
                parse_cidr(it->valuestring, &cfg->trusted_proxies[i]) == -1)
                return fail(err, errlen, "policy.trusted_proxies[%zu]: not "
                            "an IPv4 or IPv6 address or network", i);
            i++;
        }
        cfg->trusted_count = i;
    }
    return 0;
}

static int parse_client(const cJSON *obj, struct config *cfg, char *err,
                        size_t errlen)
{
    static const char *const keys[] = {
        "header_timeout_ms", "keepalive_timeout_ms", "body_timeout_ms",
        "max_head_bytes", "max_headers", "max_request_line",
        "websocket_idle_timeout_ms", "max_connections", NULL};
    const char *p = "client";

    if (check_keys(obj, p, keys, err, errlen) == -1 ||
        get_int(obj, p, "header_timeout_ms", 1, MS_MAX,
                &cfg->client_header_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "keepalive_timeout_ms", 1, MS_MAX,
                &cfg->client_keepalive_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "body_timeout_ms", 1, MS_MAX,
                &cfg->client_body_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "max_head_bytes", 1024, 1048576,
                &cfg->client_max_head_bytes, err, errlen) == -1 ||
        get_int(obj, p, "max_headers", 1, 10000, &cfg->client_max_headers,
                err, errlen) == -1 ||
        get_int(obj, p, "max_request_line", 256, 1048576,
                &cfg->client_max_request_line, err, errlen) == -1 ||
        get_int(obj, p, "websocket_idle_timeout_ms", 1, MS_MAX,
                &cfg->websocket_idle_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "max_connections", 0, CONFIG_MAX_CONNECTIONS,
                &cfg->client_max_connections, err, errlen) == -1)
        return -1;
    return 0;
}

static int parse_upstream(const cJSON *obj, struct config *cfg, char *err,
                          size_t errlen)
{
    static const char *const keys[] = {
        "connect_timeout_ms", "connect_retries", "retry_backoff_ms",
        "response_timeout_ms", "idle_timeout_ms", "pool_idle_timeout_ms",
        "pool_max_idle", NULL};
    const char *p = "upstream";

    if (check_keys(obj, p, keys, err, errlen) == -1 ||
        get_int(obj, p, "connect_timeout_ms", 1, MS_MAX,
                &cfg->upstream_connect_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "connect_retries", 0, 100,
                &cfg->upstream_connect_retries, err, errlen) == -1 ||
        get_int(obj, p, "retry_backoff_ms", 0, 60000,
                &cfg->upstream_retry_backoff_ms, err, errlen) == -1 ||
        get_int(obj, p, "response_timeout_ms", 0, MS_MAX,
                &cfg->upstream_response_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "idle_timeout_ms", 1, MS_MAX,
                &cfg->upstream_idle_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "pool_idle_timeout_ms", 1, MS_MAX,
                &cfg->upstream_pool_idle_timeout_ms, err, errlen) == -1 ||
        get_int(obj, p, "pool_max_idle", 0, 100000,
                &cfg->upstream_pool_max_idle, err, errlen) == -1)
        return -1;
    return 0;
}

static int parse_drain(const cJSON *obj, struct config *cfg, char *err,
                       size_t errlen)
{
    static const char *const keys[] = {"delay_ms", "timeout_ms", NULL};

    if (check_keys(obj, "drain", keys, err, errlen) == -1 ||
        get_int(obj, "drain", "delay_ms", 0, MS_MAX, &cfg->drain_delay_ms,
                err, errlen) == -1 ||
        get_int(obj, "drain", "timeout_ms", 0, MS_MAX,
                &cfg->drain_timeout_ms, err, errlen) == -1)
        return -1;
    return 0;
}

static int parse_access_log(const cJSON *root, struct config *cfg, char *err,
                            size_t errlen)
{
    static const char *const keys[] = {"path", NULL};
    const cJSON *obj = item(root, "access_log"), *path;

    if (obj == NULL || cJSON_IsNull(obj))
        return 0;
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "access_log: must be an object or null");
    if (check_keys(obj, "access_log", keys, err, errlen) == -1)
        return -1;
    path = item(obj, "path");
    if (path == NULL || cJSON_IsNull(path))
        return 0;
    if (!cJSON_IsString(path) || path->valuestring[0] == '\0')
        return fail(err, errlen, "access_log.path: must be a non-empty "
                    "string or null");
    return get_path_string(path, "access_log.path", &cfg->access_log_path,
                           err, errlen);
}

static int parse_log(const cJSON *obj, struct config *cfg, char *err,
                     size_t errlen)
{
    static const char *const keys[] = {"level", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    const cJSON *it;

    if (check_keys(obj, "log", keys, err, errlen) == -1)
        return -1;
    it = item(obj, "level");
    if (it == NULL)
        return 0;
    for (int i = 0; i < 4; i++) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, levels[i]) == 0) {
            cfg->log_level = i;
            return 0;
        }
    }
    return fail(err, errlen, "log.level: must be one of error, warn, info, "
                "debug");
}

/* ---- public -------------------------------------------------------------- */

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 0;
    /* domains: empty = any suffix, the reference platform's behaviour. */

    cfg->admin_enabled = true;
    cfg->admin_address = def_admin_address;
    /* A literal we control: cannot fail. */
    (void)config_parse_address(def_admin_address, &cfg->admin_addr,
                               &cfg->admin_addr_len);

    cfg->redis_host = def_redis_host;
    cfg->redis_port = 6379;
    cfg->redis_password = NULL;
    cfg->redis_db = 0;
    cfg->key_prefix = def_key_prefix;
    cfg->redis_timeout_ms = 1000;

    cfg->cache_ttl_ms = 1000;
    cfg->cache_negative_ttl_ms = 250;
    cfg->cache_stale_grace_ms = 30000;
    /* Per worker. A sandbox id the internet makes up costs ~180 bytes
     * (README, "Route cache memory"): 32768 of them are ~6 MiB a worker. */
    cfg->cache_max_entries = 32768;

    cfg->token_exempt_ports[0] = 49983;
    cfg->token_exempt_count = 1;
    cfg->trusted_count = 0;

    cfg->client_header_timeout_ms = 10000;
    cfg->client_keepalive_timeout_ms = 75000;
    cfg->client_body_timeout_ms = 60000;
    cfg->client_max_head_bytes = 16384;
    cfg->client_max_headers = 100;
    cfg->client_max_request_line = 8192;
    cfg->websocket_idle_timeout_ms = 3600000;
    cfg->client_max_connections = 0;

    cfg->upstream_connect_timeout_ms = 5000;
    cfg->upstream_connect_retries = 3;
    cfg->upstream_retry_backoff_ms = 100;
    cfg->upstream_response_timeout_ms = 0;
    cfg->upstream_idle_timeout_ms = 60000;
    cfg->upstream_pool_idle_timeout_ms = 30000;
    cfg->upstream_pool_max_idle = 64;

    cfg->drain_delay_ms = 0;
    cfg->drain_timeout_ms = 30000;

    cfg->access_log_path = NULL;
    cfg->log_level = 2;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->domains.count; i++)
        free(cfg->domains.names[i]);
    free(cfg->domains.names);
    for (size_t i = 0; i < cfg->listener_count && i < CONFIG_MAX_LISTENERS;
         i++) {
        struct config_listener *l = &cfg->listeners[i];

        free(l->address);
        for (size_t j = 0; j < l->cert_count && j < CONFIG_MAX_CERTS; j++) {
            free(l->certs[j].cert);
            free(l->certs[j].key);
        }
    }
    free_owned(cfg->admin_address);
    free_owned(cfg->redis_host);
    free(cfg->redis_password);
    free_owned(cfg->key_prefix);
    free(cfg->access_log_path);
    /* Back to a state that owns nothing: a second config_free, or reuse,
     * is safe. */
    config_defaults(cfg);
}

int config_parse(const char *json, size_t len, struct config *cfg, char *err,
                 size_t errlen)
{
    static const char *const keys[] = {
        "workers", "domains", "listeners", "admin", "redis", "cache",
        "policy", "client", "upstream", "drain", "access_log", "log", NULL};
    const char *end = NULL;
    cJSON *root = NULL;
    const cJSON *it;
    long bad;

    config_defaults(cfg);
    if (json == NULL)
        return fail(err, errlen, "not valid JSON near line 1, column 1");
    bad = json_guard_scan(json, len);
    if (bad >= 0)
        return json_error(json, len, (size_t)bad, err, errlen);
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL)
        return json_error(json, len, end ? (size_t)(end - json) : 0, err,
                          errlen);
    for (; end < json + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            json_error(json, len, (size_t)(end - json), err, errlen);
            goto fail;
        }
    }
    if (!cJSON_IsObject(root)) {
        fail(err, errlen, "the configuration must be a JSON object");
        goto fail;
    }
    if (check_keys(root, "", keys, err, errlen) == -1)
        goto fail;

    if (get_int(root, "", "workers", 0, 1024, &cfg->workers, err,
                errlen) == -1)
        goto fail;
    if ((it = item(root, "domains")) != NULL &&
        parse_domains(it, cfg, err, errlen) == -1)
        goto fail;
    if ((it = item(root, "listeners")) != NULL &&
        parse_listeners(it, cfg, err, errlen) == -1)
        goto fail;
    if (cfg->listener_count == 0) {
        fail(err, errlen, "listeners: at least one listener is required");
        goto fail;
    }
    if (parse_admin(root, cfg, err, errlen) == -1)
        goto fail;
    if (cfg->admin_enabled) {
        for (size_t i = 0; i < cfg->listener_count; i++) {
            const struct config_listener *l = &cfg->listeners[i];

            if (l->addr_len == cfg->admin_addr_len &&
                memcmp(&l->addr, &cfg->admin_addr, l->addr_len) == 0) {
                fail(err, errlen, "admin.address: same as listeners[%zu]", i);
                goto fail;
            }
        }
    }

#define SECTION(name, fn)                                                      \
    do {                                                                       \
        if (get_object(root, name, &it, err, errlen) == -1)                    \
            goto fail;                                                         \
        if (it != NULL && fn(it, cfg, err, errlen) == -1)                      \
            goto fail;                                                         \
    } while (0)

    SECTION("redis", parse_redis);
    SECTION("cache", parse_cache);
    SECTION("policy", parse_policy);
    SECTION("client", parse_client);
    SECTION("upstream", parse_upstream);
    SECTION("drain", parse_drain);
    SECTION("log", parse_log);
#undef SECTION
    if (parse_access_log(root, cfg, err, errlen) == -1)
        goto fail;

    cJSON_Delete(root);
    return 0;

fail:
    cJSON_Delete(root);
    config_free(cfg);
    return -1;
}

int config_load_file(const char *path, struct config *cfg, char *err,
                     size_t errlen)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t n = 0;
    int rc;

    config_defaults(cfg);
    f = fopen(path, "rb");
    if (f == NULL)
        goto io_fail;
    /* One byte more than the limit tells "too big" from "exactly the
     * limit". */
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return fail(err, errlen, "%s: out of memory", path);
    }
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f))
        goto io_fail;
    fclose(f);
    f = NULL;
    if (n > CONFIG_FILE_MAX) {
        free(buf);
        return fail(err, errlen, "%s: larger than %d bytes", path,
                    CONFIG_FILE_MAX);
    }
    rc = config_parse(buf, n, cfg, err, errlen);
    free(buf);
    return rc;

io_fail:
    rc = errno;
    if (f != NULL)
        fclose(f);
    free(buf);
    return fail(err, errlen, "%s: %s", path, strerror(rc ? rc : EIO));
}

int config_derived_max_connections(unsigned long long nofile, int workers,
                                   size_t listeners)
{
    unsigned long long reserve =
        64 + (unsigned long long)(workers > 0 ? workers : 1) * (listeners + 8);
    unsigned long long n = nofile > reserve ? (nofile - reserve) / 2 : 0;
    if (n < 1)
        return 1;
    return n < CONFIG_MAX_CONNECTIONS ? (int)n : CONFIG_MAX_CONNECTIONS;
}
