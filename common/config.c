/* The JSON configuration: SPEC section 3 plus the team's keys. Every key is
 * one row of the table below (path, type, range, default, restart-only, one
 * line of doc); parsing, defaults, unknown-key detection, the reload check
 * and `edgeproxy --print-config` (the Configuration table of README.md) all
 * walk it. conf/edgeproxy.json shows every key with its default. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "errf.h"
#include "json_guard.h"

/* Durations above a day are typos, and keeping them there means ms * 1000
 * never overflows an int64 of microseconds anywhere downstream. */
#define MS_MAX 86400000
#define CONFIG_FILE_MAX (1 << 20)
#define PATH_MAX_LEN 128

/* The default Redis host lives here, not on the heap, so that
 * config_defaults() owns nothing (string keys' defaults are the table's
 * literals, for the same reason); config_free() knows not to free it. */
static char def_redis_host[] = "127.0.0.1";

/* Key paths for messages. Truncating one is harmless (it only shortens a
 * message), so this wraps vsnprintf where GCC does not second-guess it. */
static void pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

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

int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len)
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

bool config_cidr_match(const struct cidr *nets, size_t count, const struct sockaddr *sa)
{
    struct cidr_addr a, mapped;

    /* Each client address in both forms where one exists: a dual-stack
     * socket reports IPv4 peers as ::ffff:a.b.c.d (canonical: IPv4), and an
     * IPv4 peer must match an IPv6 network holding its mapped form ("::/0"). */
    if (cidr_addr_from_sockaddr(sa, &a) == -1)
        return false;
    if (cidr_find(nets, count, &a) >= 0)
        return true;
    if (a.family != AF_INET)
        return false;
    cidr_addr_mapped(&a, &mapped);
    return cidr_find(nets, count, &mapped) >= 0;
}

/* ---- JSON helpers -------------------------------------------------------- */

static int json_error(const char *json, size_t len, size_t off, char *err, size_t errlen)
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
    return errf(err, errlen, "not valid JSON near line %zu, column %zu", line, col);
}

static const cJSON *item(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static bool int_in(const cJSON *it, int lo, int hi, int *out)
{
    double v = it->valuedouble;

    if (!cJSON_IsNumber(it) || !isfinite(v) || v < lo || v > hi || (double)(int)v != v)
        return false;
    *out = (int)v;
    return true;
}

/* ---- the key table ------------------------------------------------------- */

/* What a row's offset points at, and how its value is read when the row has
 * no parser of its own. */
enum key_type {
    KEY_INT,    /* int: an integer in .min..max */
    KEY_BOOL,   /* bool: true or false */
    KEY_ENUM,   /* int: the index of one of .names */
    KEY_TOKEN,  /* char *: visible ASCII, at most .max bytes */
    KEY_TEXT,   /* char *: a non-empty string (a file, an address) */
    KEY_CUSTOM, /* nothing of its own: .parse does it all */
};

struct config_key;

/* Reads `it` into base. `it` is NULL when the key is absent: a parser still
 * runs then, it may have something to check. `path` names the key in
 * messages ("listeners[1].address"). */
typedef int key_parse_fn(const struct config_key *k, const cJSON *it, void *base, const char *path,
                         char *err, size_t errlen);

struct config_key {
    /* "client.max_headers". A row "a.b" with no row "a" is member b of the
     * section "a": an object of such rows, absent, or null when every one of
     * them takes null (then each of them is null). Sections nest:
     * "egress.listeners.http" is member http of section listeners of section
     * egress. "listeners[].tls" is member tls of each element of the array
     * "listeners", read by that row's parser. */
    const char *path;
    enum key_type type;
    /* Into struct config; for a member of an array element, into the
     * element's struct (config_listener, config_cert), where every member
     * defaults to zero: elements start zeroed. */
    size_t offset;
    int min, max;             /* KEY_INT range; KEY_TOKEN max bytes */
    int def;                  /* KEY_INT, KEY_BOOL, KEY_ENUM default */
    const char *def_text;     /* KEY_TOKEN, KEY_TEXT default: static,
                                       never freed; NULL = none */
    const char *const *names; /* KEY_ENUM, NULL-terminated */
    bool nullable;            /* null is accepted: off */
    bool required;            /* no default: absent is an error */
    /* NULL: a SIGHUP applies a change. Otherwise a change needs a restart,
     * and the refusal says this after the key path. */
    const char *restart;
    const char *doc; /* one line of Markdown */
    /* --print-config, where the type's own rendering does not fit */
    const char *shown_default, *values;
    key_parse_fn *parse;                     /* instead of the type's reader */
    void (*set_default)(struct config *cfg); /* after the type's default */
    /* Restart-only keys the type cannot compare: the same in a and b (the
     * bases offset is into)? */
    bool (*same)(const void *a, const void *b);
    /* Restart-only keys with more to compare (an array's elements) */
    int (*reload)(const struct config_key *k, const struct config *a, const struct config *b,
                  char *err, size_t errlen);
};

static key_parse_fn parse_domains, parse_listeners, parse_listener_address, parse_tls,
    parse_certificates, parse_admin_address, parse_redis, parse_exempt_ports, parse_trusted_proxies,
    parse_egress_listener, parse_nameservers, parse_always_deny, parse_sentinels, parse_master_name;
static bool same_sentinels(const void *a, const void *b);
static void default_admin(struct config *cfg);
static void default_nameservers(struct config *cfg);
static void default_always_deny(struct config *cfg);
static bool same_nameservers(const void *a, const void *b);
static void default_redis(struct config *cfg);
static void default_exempt_ports(struct config *cfg);
static bool same_listener_address(const void *a, const void *b);
static bool same_admin(const void *a, const void *b);
static int reload_listeners(const struct config_key *k, const struct config *a,
                            const struct config *b, char *err, size_t errlen);

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const limits_scopes[] = {"process", "global", NULL};
static const char *const egress_interceptions[] = {"redirect", "tproxy", NULL};

#define STR(x) #x
#define XSTR(x) STR(x)
#define OFF(field) offsetof(struct config, field)
#define INT(p, field, lo, hi, d) \
    .path = p, .type = KEY_INT, .offset = OFF(field), .min = lo, .max = hi, .def = d
/* A duration in milliseconds: at most a day. */
#define MS(p, field, lo, d) INT(p, field, lo, MS_MAX, d)
#define CUSTOM(p, fn) .path = p, .type = KEY_CUSTOM, .parse = fn
#define LISTENER(p, t, field)                                                               \
    .path = "listeners[]." p, .type = t, .offset = offsetof(struct config_listener, field), \
    .restart = "address, tls on/off and proxy_protocol need a restart"
#define EGRESS_LISTENER(p, field, doc_)                                            \
    .path = "egress.listeners." p, .type = KEY_TEXT, .offset = OFF(field.address), \
    .nullable = true, .parse = parse_egress_listener,                              \
    .restart = "egress listeners need a restart",                                  \
    .values = "`IPv4:port`, `[IPv6]:port` or `null`", .doc = doc_

/* egress.always_deny's default, and the same as --print-config shows it
 * (test_config checks that the two agree). */
static const char *const always_deny_default[] = {
    "0.0.0.0/8",     "10.0.0.0/8",   "100.64.0.0/10",  "127.0.0.0/8",   "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4",   "::/128",       "::1/128",        "64:ff9b::/96",  "64:ff9b:1::/48",
    "2001::/32",     "2002::/16",    "fc00::/7",       "fe80::/10",     "fec0::/10",
    "ff00::/8",
};
#define ALWAYS_DENY_SHOWN                                                                \
    "[\"0.0.0.0/8\", \"10.0.0.0/8\", \"100.64.0.0/10\", \"127.0.0.0/8\", "               \
    "\"169.254.0.0/16\", \"172.16.0.0/12\", \"192.0.0.0/24\", \"192.168.0.0/16\", "      \
    "\"198.18.0.0/15\", \"224.0.0.0/4\", \"240.0.0.0/4\", \"::/128\", \"::1/128\", "     \
    "\"64:ff9b::/96\", \"64:ff9b:1::/48\", \"2001::/32\", \"2002::/16\", \"fc00::/7\", " \
    "\"fe80::/10\", \"fec0::/10\", \"ff00::/8\"]"

#define CERT(p, field, doc_)                                                                \
    .path = "listeners[].tls.certificates[]." p, .type = KEY_TEXT,                          \
    .offset = offsetof(struct config_cert, field), .required = true, .values = "file path", \
    .doc = doc_

/* Every key, in the order they are read (which decides the error reported
 * when there are several) and shown. */
static const struct config_key keys[] = {
    {INT("workers", workers, 0, 1024, 0), .restart = "changing the worker count needs a restart",
     .doc = "event loops (threads); 0 = one per online core"},
    {CUSTOM("domains", parse_domains), .shown_default = "`[]`", .values = "array of domain names",
     .doc = "accepted Host suffixes (case-insensitive, dots trimmed). A Host "
            "under none of them gets 400. Empty = any suffix"},
    {CUSTOM("listeners", parse_listeners), .required = true,
     .values = "array of 1 to " XSTR(CONFIG_MAX_LISTENERS) " objects",
     .restart = "adding or removing listeners needs a restart", .reload = reload_listeners,
     .doc = "the listening sockets, each bound once per worker with "
            "`SO_REUSEPORT`"},
    {LISTENER("address", KEY_TEXT, address), .required = true, .parse = parse_listener_address,
     .same = same_listener_address, .values = "`IPv4:port` or `[IPv6]:port`",
     .doc = "two listeners on one address are an error"},
    {LISTENER("proxy_protocol", KEY_BOOL, proxy_protocol),
     .doc = "require a PROXY protocol v1 or v2 header on every connection, "
            "within `client.header_timeout_ms`; a missing or invalid one "
            "closes the connection without a response. The address it "
            "carries becomes the client address everywhere "
            "(`X-Forwarded-For`, `trusted_proxies`, access log); "
            "`LOCAL`/`UNKNOWN` keep the socket's"},
    {.path = "listeners[].http2",
     .type = KEY_BOOL,
     .offset = offsetof(struct config_listener, http2),
     .def = 1,
     .doc = "offer HTTP/2 (SPEC section 8): ALPN `h2` before `http/1.1` on a "
            "TLS listener, the connection preface (prior knowledge) beside "
            "HTTP/1.1 on a plain one. A SIGHUP applies it to new connections"},
    {LISTENER("tls", KEY_BOOL, tls), .parse = parse_tls, .shown_default = "absent: plain HTTP",
     .values = "object",
     .doc = "turns on TLS termination: TLS 1.2 and 1.3, ALPN `h2` (unless "
            "`http2` is false) then `http/1.1`, "
            "session tickets. On or off needs a restart; the certificate "
            "files reload on SIGHUP"},
    {CUSTOM("listeners[].tls.certificates", parse_certificates), .required = true,
     .values = "array of 1 to " XSTR(CONFIG_MAX_CERTS) " objects",
     .doc = "chosen by SNI against each certificate's DNS subjectAltNames "
            "(or its CN) — exact names first, then `*.` wildcards covering "
            "one label — the first one when there is no SNI or no match"},
    {CERT("cert", cert, "PEM certificate chain")},
    {CERT("key", key, "PEM private key")},
    {.path = "admin.address",
     .type = KEY_TEXT,
     .offset = OFF(admin_address),
     .def_text = "127.0.0.1:9090",
     .nullable = true,
     .parse = parse_admin_address,
     .set_default = default_admin,
     .same = same_admin,
     .restart = "changing it needs a restart",
     .values = "`IPv4:port`, `[IPv6]:port` or `null`",
     .doc = "address of `/healthz`, `/readyz`, `/metrics`; `\"admin\": null` "
            "or `\"address\": null` turns it off. Must differ from every "
            "listener"},
    {CUSTOM("redis.url", parse_redis), .set_default = default_redis,
     .shown_default = "`\"redis://127.0.0.1:6379/0\"`",
     .values = "`redis://[:password@]host[:port][/db]`",
     .doc = "host is a name, IPv4 or `[IPv6]`; the password is %-decoded. No "
            "`rediss://`, no user names. A name is resolved without blocking "
            "(libevent's evdns: `/etc/hosts`, then the nameservers, `search` "
            "and `options` of `/etc/resolv.conf`, read when a worker starts), "
            "again at every reconnect, its addresses tried in turn. With "
            "`redis.sentinels` only its password and db are used"},
    /* It becomes part of every key and of the invalidation channel name:
     * spaces or controls there are always a mistake. */
    {.path = "redis.key_prefix",
     .type = KEY_TOKEN,
     .offset = OFF(key_prefix),
     .max = 128,
     .def_text = "sandbox:",
     .doc = "sandbox keys are `<prefix><id>`, the invalidation channel "
            "`<prefix>invalidate`"},
    {MS("redis.timeout_ms", redis_timeout_ms, 1, 250),
     .doc = "how long a request waits for one `GET`; then it gets the stale "
            "record (see `cache.stale_grace_ms`) or 503, and that connection's "
            "circuit opens: lookups are answered at once (stale record, "
            "replica, or 503) until a `PING` is answered within this time, "
            "else the connection is dropped and made again. Also bounds the "
            "heartbeat and `ROLE` checks"},
    {MS("redis.connect_timeout_ms", redis_connect_timeout_ms, 1, 1000),
     .doc = "a connection to Redis or a Sentinel must be connected and set up "
            "(`AUTH`, `SELECT`, `ROLE`, the first `PUBLISH` or `SUBSCRIBE`) "
            "within this (to Redis: or `redis.timeout_ms` when longer, the "
            "time a request waits for a setup), else the try failed: retried "
            "after a backoff of 100 ms doubling to 2 s, each wait drawn "
            "between half and all of it (jitter)"},
    {CUSTOM("redis.sentinels", parse_sentinels), .shown_default = "`[]`",
     .values = "array of at most " XSTR(CONFIG_MAX_SENTINELS) " `host:port` (a name, IPv4 "
                                                              "or `[IPv6]`)",
     .same = same_sentinels, .restart = "changing the Sentinels needs a restart",
     .doc = "Sentinel mode (see Redis high availability): the master of "
            "`redis.master_name` is asked of these Sentinels, checked with "
            "`ROLE` on every connection and every heartbeat, and followed on "
            "`+switch-master`; `redis.url`'s host and port are then not used. "
            "Names are resolved as `redis.url`'s. `[]` = the one Redis at "
            "`redis.url`"},
    {.path = "redis.master_name",
     .type = KEY_TEXT,
     .offset = OFF(redis_master_name),
     .nullable = true,
     .parse = parse_master_name,
     .restart = "changing the master name needs a restart",
     .values = "visible ASCII, at most 128 bytes, or `null`",
     .doc = "the name the Sentinels monitor the master by (`sentinel monitor "
            "<name> ...`); required with `redis.sentinels`"},
    {.path = "redis.sentinel_password",
     .type = KEY_TEXT,
     .offset = OFF(redis_sentinel_password),
     .nullable = true,
     .restart = "changing the Sentinel password needs a restart",
     .values = "non-empty string or `null`",
     .doc = "`AUTH` to the Sentinels (their `requirepass`); `null` = none"},
    {.path = "redis.read_replicas",
     .type = KEY_BOOL,
     .offset = OFF(redis_read_replicas),
     .def = true,
     .doc = "in Sentinel mode, while the master is away (its connection down or "
            "its circuit open), `GET`s go to a replica from `SENTINEL replicas` "
            "that answers `ROLE` with `slave`, so sandboxes not cached are still "
            "found during a failover (as of the replica's last replicated "
            "write). `false` = 503 for them meanwhile"},
    {MS("cache.ttl_ms", cache_ttl_ms, 0, 1000),
     .doc = "how long a found record is served from the worker cache without "
            "asking Redis. A record still in use in the last quarter of its "
            "TTL is re-read in the background. 0 = ask every time"},
    {MS("cache.negative_ttl_ms", cache_negative_ttl_ms, 0, 250),
     .doc = "the same for \"not found\" and broken records"},
    {MS("cache.stale_grace_ms", cache_stale_grace_ms, 0, 30000),
     .doc = "after its TTL, how long a found record keeps serving while "
            "Redis is unreachable"},
    /* A sandbox id the internet makes up costs ~180 bytes (README, "Route
     * cache memory"): 32768 of them are ~6 MiB a worker. */
    {INT("cache.max_entries", cache_max_entries, 16, 10000000, 32768),
     .doc = "sandbox ids each worker's cache holds, lookups in flight "
            "included. When full, a new id first evicts the least recently "
            "used \"not found\"/broken entry, else the least recently used "
            "found one; if every entry is waiting on Redis, the new id gets "
            "503 at once. About 180 bytes per unknown id (see Route cache "
            "memory). Lowered by SIGHUP, it takes effect as new ids come"},
    {.path = "limits.max_connections_scope",
     .type = KEY_ENUM,
     .offset = OFF(limits_scope),
     .names = limits_scopes,
     .def = CONFIG_LIMITS_PROCESS,
     .restart = "changing the scope of maxConnections needs a restart",
     .doc = "what a record's `maxConnections` bounds: `process`, the concurrent "
            "requests of this process (all workers); `global`, those of every "
            "instance sharing the Redis, approximately (see Many instances: "
            "counts published every second, the overshoot bound, a local share "
            "while Redis is away)"},
    {CUSTOM("policy.token_exempt_ports", parse_exempt_ports), .set_default = default_exempt_ports,
     .shown_default = "`[49983]`",
     .values = "array of at most " XSTR(CONFIG_MAX_EXEMPT_PORTS) " ports",
     .doc = "sandbox ports that skip the traffic token check"},
    {CUSTOM("policy.trusted_proxies", parse_trusted_proxies), .shown_default = "`[]`",
     .values = "array of at most " XSTR(CONFIG_MAX_TRUSTED) " networks",
     .doc = "networks (`\"10.0.0.0/8\"`, `\"::1\"`) whose `X-Forwarded-For` "
            "is appended to, whose `X-Forwarded-Proto` is kept and whose "
            "`Forwarded` (RFC 7239) and `X-Real-IP` pass as sent; from anyone "
            "else the first two are replaced and the last two removed"},
    {MS("client.header_timeout_ms", client_header_timeout_ms, 1, 10000),
     .doc = "time to receive a whole request head; then 408 and close"},
    {MS("client.keepalive_timeout_ms", client_keepalive_timeout_ms, 1, 75000),
     .doc = "idle time between requests on a client connection"},
    {MS("client.body_timeout_ms", client_body_timeout_ms, 1, 60000),
     .doc = "idle time while reading a request body; then the connection is "
            "closed"},
    {INT("client.max_head_bytes", client_max_head_bytes, 1024, 1048576, 16384),
     .doc = "request head size limit; over it: 431"},
    {INT("client.max_headers", client_max_headers, 1, 10000, 100),
     .doc = "header count limit; over it: 431"},
    {INT("client.max_request_line", client_max_request_line, 256, 1048576, 8192),
     .doc = "request target length limit; over it: 414"},
    {MS("client.websocket_idle_timeout_ms", websocket_idle_timeout_ms, 1, 3600000),
     .doc = "a tunnel (after `101`) with no byte either way for this long is "
            "closed"},
    {INT("client.max_connections", client_max_connections, 0, CONFIG_MAX_CONNECTIONS, 0),
     .doc = "open client connections of the whole process (all workers). "
            "When reached, workers stop accepting until some close: new "
            "connections wait in the kernel's listen backlog (4096 per "
            "listener per worker, or net.core.somaxconn if lower), they are "
            "not refused (HAProxy's `maxconn`). 0 = derived from the "
            "open-files limit (at start the proxy raises its soft limit to "
            "the hard one, as HAProxy does): (RLIMIT_NOFILE − 64 − workers × "
            "(listeners + 8)) / 2, since a proxied connection may hold two "
            "descriptors (client and upstream) and the process keeps some of "
            "its own; 471 with 1024, 2 workers and one listener; logged at "
            "start"},
    {MS("upstream.connect_timeout_ms", upstream_connect_timeout_ms, 1, 5000),
     .doc = "upstream connect timeout; then 504"},
    {INT("upstream.connect_retries", upstream_connect_retries, 0, 100, 3),
     .doc = "retries after *connection refused* (the app may still be "
            "binding); then 502"},
    {INT("upstream.retry_backoff_ms", upstream_retry_backoff_ms, 0, 60000, 100),
     .doc = "wait before the first retry, doubled for each next one (100, "
            "200, 400 ms); a single wait never exceeds 60000 ms (with the "
            "default, from the 11th retry on)"},
    {MS("upstream.response_timeout_ms", upstream_response_timeout_ms, 0, 0),
     .doc = "time from sending the request to the response head; 0 = off "
            "(the idle timeout below still applies). Over it: 504"},
    {MS("upstream.idle_timeout_ms", upstream_idle_timeout_ms, 1, 60000),
     .doc = "read/write idle timeout on upstream connections: no response "
            "head in time is 504, a stall mid-response closes the client "
            "connection"},
    {MS("upstream.pool_idle_timeout_ms", upstream_pool_idle_timeout_ms, 1, 30000),
     .doc = "how long an idle keep-alive upstream connection stays pooled"},
    {INT("upstream.pool_max_idle", upstream_pool_max_idle, 0, 100000, 64),
     .doc = "idle connections kept per pool key per worker (0 = no reuse)"},
    {INT("http2.max_concurrent_streams", http2_max_concurrent_streams, 1, 1000, 100),
     .doc = "streams one HTTP/2 connection may have open (SETTINGS); more are "
            "refused with `REFUSED_STREAM`, and more than twice this many new "
            "streams in one read are refused too (nginx's rapid-reset guard)"},
    {INT("http2.stream_window_bytes", http2_stream_window, 65535, 16777216, 65535),
     .doc = "flow-control window of each request body (SETTINGS_INITIAL_WINDOW_SIZE): "
            "what a stream may send before its bytes reached the sandbox. "
            "Request-body memory per stream is at most this plus 256 KiB"},
    {INT("http2.connection_window_bytes", http2_connection_window, 65535, 1073741824, 1048576),
     .doc = "flow-control window of a whole connection: request bytes buffered "
            "for all its streams together are at most this"},
    {INT("http2.max_requests", http2_max_requests, 1, 100000000, 10000),
     .doc = "streams one HTTP/2 connection may open; then a graceful `GOAWAY` "
            "(open streams finish, the client reconnects)"},
    {MS("http2.send_timeout_ms", http2_send_timeout_ms, 1, 60000),
     .doc = "a stream with response bytes waiting that does not get 16 KiB (or "
            "all it has) out to the client in this time is reset: a window "
            "that stays shut, or opens by a trickle, holds nothing for long"},
    {MS("drain.delay_ms", drain_delay_ms, 0, 0),
     .doc = "on SIGTERM/SIGINT, time between `/readyz` turning 503 and the "
            "listeners closing"},
    {MS("drain.timeout_ms", drain_timeout_ms, 0, 30000),
     .doc = "upper bound on the drain; when reached the process exits 0 with "
            "a warning"},
    {.path = "log.level",
     .type = KEY_ENUM,
     .offset = OFF(log_level),
     .names = log_levels,
     .def = 2,
     .doc = "the error log (stderr) gets lines of this level and the more "
            "severe ones"},
    {.path = "access_log.path",
     .type = KEY_TEXT,
     .offset = OFF(access_log_path),
     .nullable = true,
     .values = "file path or `null`",
     .doc = "access log file, opened for appending (reopened on SIGHUP, for "
            "rotation); `null` = off. See below"},
    {EGRESS_LISTENER("http", egress_http,
                     "transparent listener for sandbox TCP to port 80 (SPEC section 9): "
                     "HTTP/1.1, each request decided by its Host. `null` = none. The rules "
                     "of `edgeproxy egress-rules` `redirect` to this port on the sandbox "
                     "interface's own address, so bind a wildcard: `[::]` takes IPv4 and "
                     "IPv6, `0.0.0.0` IPv4 only. Must differ from every other listener")},
    {EGRESS_LISTENER("tls", egress_tls,
                     "the same for port 443: TLS, decided by the ClientHello's SNI, then "
                     "spliced")},
    {EGRESS_LISTENER("tcp", egress_tcp,
                     "the same for every other TCP port, decided by address. With `http` "
                     "or `tls` `null`, their ports come here too; with this one `null` "
                     "as well, the kernel filters that TCP by address, like UDP")},
    {.path = "egress.interception",
     .type = KEY_ENUM,
     .offset = OFF(egress_interception),
     .names = egress_interceptions,
     .def = CONFIG_EGRESS_REDIRECT,
     .restart = "changing the interception needs a restart",
     .doc = "how the kernel hands sandbox TCP to the egress listeners, and which ruleset "
            "`edgeproxy egress-rules` prints: `redirect`, nft `redirect` (NAT), the original "
            "destination from `SO_ORIGINAL_DST`; `tproxy`, nft `tproxy` (no NAT: the "
            "listeners bind with `IP_TRANSPARENT`/`IPV6_TRANSPARENT`, which needs "
            "`CAP_NET_ADMIN`, and the original destination is the accepted socket's own "
            "address), plus a policy route for `egress.tproxy_mark` that the operator adds "
            "once per host (see Kernel rules). Either way the proxy connects upstream from "
            "its own address"},
    {INT("egress.tproxy_mark", egress_tproxy_mark, 1, INT_MAX, 1),
     .doc = "with `egress.interception` `tproxy`: the packet mark (fwmark) the generated "
            "rules set on sandbox TCP they hand to a listener, and that the host's "
            "`ip rule add fwmark ... lookup 100` routes to this host. Pick one no other "
            "rule uses"},
    {CUSTOM("egress.nameservers", parse_nameservers), .set_default = default_nameservers,
     .same = same_nameservers, .restart = "changing the nameservers needs a restart",
     .shown_default = "`[\"8.8.8.8\"]`",
     .values = "array of 1 to " XSTR(CONFIG_MAX_NAMESERVERS) " IPv4 or IPv6 addresses",
     .doc = "the resolvers (port 53) the proxy asks for a name's addresses after a domain "
            "rule matched. While a sandbox's `allowOut` holds a domain they are also open "
            "to it on port 53, UDP and TCP, even inside `always_deny`"},
    {MS("egress.peek_timeout_ms", egress_peek_timeout_ms, 1, 3000),
     .doc = "how long the TLS listener waits for a connection's ClientHello; a client that "
            "sends nothing (a server-speaks-first protocol on port 443) is then decided by "
            "address"},
    {MS("egress.idle_timeout_ms", egress_idle_timeout_ms, 1, 3600000),
     .doc = "an egress TLS or TCP connection with no byte either way for this long is "
            "closed"},
    {CUSTOM("egress.always_deny", parse_always_deny), .set_default = default_always_deny,
     .shown_default = "`" ALWAYS_DENY_SHOWN "`",
     .values = "array of at most " XSTR(CONFIG_MAX_ALWAYS_DENY) " networks",
     .doc = "destinations refused whatever a policy allows, by the proxy and by the "
            "generated nft rules; IPv4-mapped IPv6 is checked as IPv4 (so "
            "`::ffff:0:0/96` needs no entry). The default: this network, RFC 1918, "
            "CGNAT, loopback, link-local (cloud metadata), IETF protocol "
            "assignments, benchmarking, multicast, reserved and broadcast; IPv6 "
            "unspecified, loopback, NAT64, Teredo and 6to4 (they embed IPv4 "
            "addresses the IPv4 rules would not see), unique-local, link-local, "
            "site-local and multicast. The documentation ranges (`192.0.2.0/24`, "
            "`198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`) are not denied: "
            "the tests use them as the internet. `[]` = none"},
};

#define KEYS_END (keys + sizeof(keys) / sizeof(keys[0]))

/* ---- walking the table --------------------------------------------------- */

/* Stands for each key of a section that is null. */
static const cJSON json_null = {.type = cJSON_NULL};

static void *field(const void *base, const struct config_key *k)
{
    return (char *)base + k->offset;
}

/* Array members ("listeners[].tls") are their array's business. */
static bool in_array(const struct config_key *k)
{
    return strchr(k->path, '[') != NULL;
}

/* k's path after `section` and a dot ("client" and "client.max_headers":
 * "max_headers"); the whole path for the top level (""); NULL when k is not
 * under section. */
static const char *member_rest(const struct config_key *k, const char *section)
{
    size_t n = strlen(section);

    if (n == 0)
        return k->path;
    if (strncmp(k->path, section, n) != 0 || k->path[n] != '.')
        return NULL;
    return k->path + n + 1;
}

/* The member's own name at the start of rest: up to a "." or "[". */
static size_t name_len(const char *rest)
{
    return strcspn(rest, ".[");
}

/* The row for exactly section's member `name` (n bytes), if any. */
static const struct config_key *find_row(const char *section, const char *name, size_t n)
{
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        const char *rest = member_rest(k, section);

        if (rest != NULL && strlen(rest) == n && memcmp(rest, name, n) == 0)
            return k;
    }
    return NULL;
}

static bool key_allowed(const char *section, const char *name)
{
    size_t n = strlen(name);

    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        const char *rest = member_rest(k, section);

        if (rest != NULL && name_len(rest) == n && memcmp(rest, name, n) == 0)
            return true;
    }
    return false;
}

/* Every member of obj, the object at `section` (named `path` in messages),
 * must have a row and appear once. cJSON keeps duplicates and GetObjectItem
 * returns the first: the second would be silently ignored. */
static int check_keys(const cJSON *obj, const char *path, const char *section, char *err,
                      size_t errlen)
{
    char kp[PATH_MAX_LEN + 64];
    const cJSON *it, *prev;

    cJSON_ArrayForEach(it, obj)
    {
        join(kp, sizeof(kp), path, it->string);
        if (!key_allowed(section, it->string))
            return errf(err, errlen, "unknown key \"%s\"", kp);
        for (prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0)
                return errf(err, errlen, "duplicate key \"%s\"", kp);
    }
    return 0;
}

/* A section may be null when each of its keys may. */
static bool section_nullable(const char *section)
{
    for (const struct config_key *k = keys; k < KEYS_END; k++)
        if (member_rest(k, section) != NULL && !k->nullable)
            return false;
    return true;
}

/* Replaces k's string with a copy of s (NULL: none). */
static int set_string(const struct config_key *k, void *base, const char *s, const char *path,
                      char *err, size_t errlen)
{
    char **dst = field(base, k);
    char *copy = NULL;

    if (s != NULL && (copy = strdup(s)) == NULL)
        return errf(err, errlen, "%s: out of memory", path);
    if (*dst != k->def_text)
        free(*dst);
    *dst = copy;
    return 0;
}

static bool visible_ascii(const char *s, size_t max)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return n <= max;
}

static int fail_enum(const struct config_key *k, const char *path, char *err, size_t errlen)
{
    char list[128] = "";
    size_t n = 0;

    for (size_t i = 0; k->names[i] != NULL && n < sizeof(list); i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", k->names[i]);
    return errf(err, errlen, "%s: must be one of %s", path, list);
}

/* The type's reader. */
static int parse_value(const struct config_key *k, const cJSON *it, void *base, const char *path,
                       char *err, size_t errlen)
{
    if (it == NULL) {
        if (k->required)
            return errf(err, errlen, "%s: required", path);
        /* Array elements start zeroed: a member whose default is not zero
         * gets it here. */
        if (in_array(k) && k->type == KEY_BOOL)
            *(bool *)field(base, k) = k->def;
        else if (in_array(k) && (k->type == KEY_INT || k->type == KEY_ENUM))
            *(int *)field(base, k) = k->def;
        return 0;
    }
    switch (k->type) {
    case KEY_INT:
        if (!int_in(it, k->min, k->max, field(base, k)))
            return errf(err, errlen, "%s: must be an integer in %d..%d", path, k->min, k->max);
        return 0;
    case KEY_BOOL:
        if (!cJSON_IsBool(it))
            return errf(err, errlen, "%s: must be true or false", path);
        *(bool *)field(base, k) = cJSON_IsTrue(it);
        return 0;
    case KEY_ENUM:
        for (int i = 0; k->names[i] != NULL; i++) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, k->names[i]) == 0) {
                *(int *)field(base, k) = i;
                return 0;
            }
        }
        return fail_enum(k, path, err, errlen);
    case KEY_TOKEN:
        if (!cJSON_IsString(it) || !visible_ascii(it->valuestring, (size_t)k->max))
            return errf(err, errlen,
                        "%s: must be a string of visible ASCII, "
                        "at most %d bytes",
                        path, k->max);
        return set_string(k, base, it->valuestring, path, err, errlen);
    case KEY_TEXT:
        if (k->nullable && cJSON_IsNull(it))
            return set_string(k, base, NULL, path, err, errlen);
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
            return errf(err, errlen, "%s: must be a non-empty string%s", path,
                        k->nullable ? " or null" : "");
        return set_string(k, base, it->valuestring, path, err, errlen);
    case KEY_CUSTOM:
        break;
    }
    return 0;
}

/* The section `name` (n bytes) of obj, the object at `section`: *sub is
 * NULL when absent, &json_null when null. */
static int open_section(const cJSON *obj, const char *section, const char *path, const char *name,
                        size_t n, const cJSON **sub, char *err, size_t errlen)
{
    char key[64], sp[PATH_MAX_LEN], pattern[PATH_MAX_LEN];
    const cJSON *it;
    bool nullable;

    pathf(key, sizeof(key), "%.*s", (int)n, name);
    join(sp, sizeof(sp), path, key);
    join(pattern, sizeof(pattern), section, key);
    nullable = section_nullable(pattern);
    it = item(obj, key);
    *sub = NULL;
    if (it == NULL)
        return 0;
    if (nullable && cJSON_IsNull(it)) {
        *sub = &json_null;
        return 0;
    }
    if (!cJSON_IsObject(it))
        return errf(err, errlen, "%s: must be an object%s", sp, nullable ? " or null" : "");
    *sub = it;
    return check_keys(it, sp, pattern, err, errlen);
}

/* How rest (a row's path below `section`) is reached: the length of its
 * sections' part, up to its last dot ("egress.listeners.http":
 * "egress.listeners"), 0 when it is a member of section itself, SIZE_MAX
 * when a row of its own reads it (the row of an array, "listeners[].tls",
 * or of an object, "tls.certificates" below "listeners[]"). */
static size_t sections_len(const char *section, const char *rest)
{
    size_t last = 0;

    for (size_t i = 0; rest[i] != '\0'; i++) {
        if (rest[i] == '[')
            return SIZE_MAX;
        if (rest[i] == '.') {
            if (find_row(section, rest, i) != NULL)
                return SIZE_MAX;
            last = i;
        }
    }
    return last;
}

/* The object at the dotted path names[0..n) below obj (the object at
 * `section`, named `path` in messages), each level checked for unknown and
 * duplicate keys: *sub is NULL when a level is absent, &json_null when one
 * is null (then each key below is null). */
static int open_sections(const cJSON *obj, const char *section, const char *path, const char *names,
                         size_t n, const cJSON **sub, char *err, size_t errlen)
{
    char sec[PATH_MAX_LEN], p[PATH_MAX_LEN], next[PATH_MAX_LEN];
    size_t i = 0;

    pathf(sec, sizeof(sec), "%s", section);
    pathf(p, sizeof(p), "%s", path);
    *sub = obj;
    while (i < n && *sub != NULL && *sub != &json_null) {
        size_t e = i;

        while (e < n && names[e] != '.')
            e++;
        if (open_section(*sub, sec, p, names + i, e - i, sub, err, errlen) == -1)
            return -1;
        pathf(next, sizeof(next), "%s%s%.*s", sec, sec[0] ? "." : "", (int)(e - i), names + i);
        memcpy(sec, next, sizeof(sec));
        pathf(next, sizeof(next), "%s%s%.*s", p, p[0] ? "." : "", (int)(e - i), names + i);
        memcpy(p, next, sizeof(p));
        i = e + 1;
    }
    return 0;
}

/* Reads obj, the object at `section` ("" for the document, "listeners[]"
 * for one listener), into base, key by key in table order; path names obj
 * in messages ("listeners[2]"). */
static int parse_members(const cJSON *obj, const char *section, void *base, const char *path,
                         char *err, size_t errlen)
{
    const cJSON *sub = NULL;
    const char *open = NULL; /* the open sections' names, in a row's path */
    size_t open_len = 0;
    char kp[PATH_MAX_LEN];

    if (check_keys(obj, path, section, err, errlen) == -1)
        return -1;
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        const char *rest = member_rest(k, section);
        const cJSON *it;
        size_t n;

        if (rest == NULL)
            continue;
        n = sections_len(section, rest);
        if (n == SIZE_MAX)
            continue; /* read by the row of its array or object */
        if (n == 0) {
            it = item(obj, rest);
        } else {
            if (open == NULL || open_len != n || memcmp(open, rest, n) != 0) {
                open = rest;
                open_len = n;
                if (open_sections(obj, section, path, rest, n, &sub, err, errlen) == -1)
                    return -1;
            }
            it = sub == &json_null ? sub : sub != NULL ? item(sub, rest + n + 1) : NULL;
        }
        join(kp, sizeof(kp), path, rest);
        if ((k->parse ? k->parse : parse_value)(k, it, base, kp, err, errlen) == -1)
            return -1;
    }
    return 0;
}

/* Does a restart-only key hold the same value in a and b? */
static bool same_value(const struct config_key *k, const void *a, const void *b)
{
    if (k->same != NULL)
        return k->same(a, b);
    switch (k->type) {
    case KEY_INT:
    case KEY_ENUM:
        return *(const int *)field(a, k) == *(const int *)field(b, k);
    case KEY_BOOL:
        return *(const bool *)field(a, k) == *(const bool *)field(b, k);
    case KEY_TOKEN:
    case KEY_TEXT: {
        const char *x = *(char *const *)field(a, k);
        const char *y = *(char *const *)field(b, k);

        return x == y || (x != NULL && y != NULL && strcmp(x, y) == 0);
    }
    case KEY_CUSTOM:
        break;
    }
    return false; /* no way to compare: never applied by a reload */
}

/* The first restart-only member of `section` that differs between a and
 * b (bases of that section's struct), or NULL. */
static const struct config_key *changed_member(const char *section, const void *a, const void *b)
{
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        const char *rest = member_rest(k, section);

        if (rest != NULL && rest[name_len(rest)] == '\0' && k->restart != NULL &&
            !same_value(k, a, b))
            return k;
    }
    return NULL;
}

/* ---- keys with a parser of their own ------------------------------------ */

/* Lower-cased, dots trimmed, [a-z0-9-] labels: the form host_parse
 * compares against. */
static int parse_domains(const struct config_key *k, const cJSON *arr, void *base, const char *path,
                         char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;

    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr))
        return errf(err, errlen, "domains: must be an array of strings");
    if (n == 0)
        return 0;
    cfg->domains.names = calloc(n, sizeof(char *));
    if (cfg->domains.names == NULL)
        return errf(err, errlen, "domains: out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        const char *s, *e;
        char *d;
        size_t len;

        if (!cJSON_IsString(it))
            return errf(err, errlen, "domains[%zu]: must be a string", i);
        s = it->valuestring;
        e = s + strlen(s);
        while (s < e && *s == '.')
            s++;
        while (e > s && e[-1] == '.')
            e--;
        len = (size_t)(e - s);
        if (len == 0 || len > 253)
            return errf(err, errlen,
                        "domains[%zu]: \"%.64s\" is not a domain "
                        "name",
                        i, it->valuestring);
        d = malloc(len + 1);
        if (d == NULL)
            return errf(err, errlen, "domains: out of memory");
        cfg->domains.names[cfg->domains.count++] = d;
        for (size_t j = 0; j < len; j++) {
            char c = s[j];

            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.') ||
                (c == '.' && s[j - 1] == '.'))
                return errf(err, errlen,
                            "domains[%zu]: \"%.64s\" is not a "
                            "domain name",
                            i, it->valuestring);
            d[j] = c;
        }
        d[len] = '\0';
        i++;
    }
    return 0;
}
static bool same_address(const struct sockaddr_storage *a, socklen_t alen,
                         const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int parse_listener(const cJSON *obj, size_t idx, struct config_listener *l, char *err,
                          size_t errlen)
{
    char path[PATH_MAX_LEN];

    pathf(path, sizeof(path), "listeners[%zu]", idx);
    if (!cJSON_IsObject(obj))
        return errf(err, errlen, "%s: must be an object", path);
    return parse_members(obj, "listeners[]", l, path, err, errlen);
}

static int parse_listeners(const struct config_key *k, const cJSON *arr, void *base,
                           const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr != NULL && !cJSON_IsArray(arr))
        return errf(err, errlen, "listeners: must be an array");
    if (cJSON_GetArraySize(arr) > CONFIG_MAX_LISTENERS)
        return errf(err, errlen, "listeners: at most %d listeners", CONFIG_MAX_LISTENERS);
    cJSON_ArrayForEach(it, arr)
    {
        struct config_listener *l = &cfg->listeners[i];

        cfg->listener_count = i + 1;
        if (parse_listener(it, i, l, err, errlen) == -1)
            return -1;
        /* Two listeners on one address: the second bind would fail at
         * start-up with a vaguer message. */
        for (size_t j = 0; j < i; j++)
            if (same_address(&cfg->listeners[j].addr, cfg->listeners[j].addr_len, &l->addr,
                             l->addr_len))
                return errf(err, errlen,
                            "listeners[%zu].address: same as "
                            "listeners[%zu]",
                            i, j);
        i++;
    }
    if (cfg->listener_count == 0)
        return errf(err, errlen,
                    "listeners: at least one listener is "
                    "required");
    return 0;
}

static int parse_listener_address(const struct config_key *k, const cJSON *it, void *base,
                                  const char *path, char *err, size_t errlen)
{
    struct config_listener *l = base;

    if (parse_value(k, it, base, path, err, errlen) == -1)
        return -1;
    if (config_parse_address(l->address, &l->addr, &l->addr_len) == -1)
        return errf(err, errlen, "%s: not IPv4:port or [IPv6]:port", path);
    return 0;
}

static int parse_tls(const struct config_key *k, const cJSON *it, void *base, const char *path,
                     char *err, size_t errlen)
{
    struct config_listener *l = base;

    if (it == NULL)
        return 0;
    if (!cJSON_IsObject(it))
        return errf(err, errlen, "%s: must be an object", path);
    l->tls = true;
    return parse_members(it, "listeners[].tls", l, path, err, errlen);
}

static int parse_certificates(const struct config_key *k, const cJSON *certs, void *base,
                              const char *path, char *err, size_t errlen)
{
    struct config_listener *l = base;
    const cJSON *c;
    size_t ci = 0;

    if (certs == NULL || !cJSON_IsArray(certs) || cJSON_GetArraySize(certs) == 0)
        return errf(err, errlen, "%s: must be a non-empty array", path);
    if (cJSON_GetArraySize(certs) > CONFIG_MAX_CERTS)
        return errf(err, errlen, "%s: at most %d certificates", path, CONFIG_MAX_CERTS);
    cJSON_ArrayForEach(c, certs)
    {
        char cp[PATH_MAX_LEN + 64];

        pathf(cp, sizeof(cp), "%s[%zu]", path, ci);
        if (!cJSON_IsObject(c))
            return errf(err, errlen, "%s: must be an object", cp);
        /* Count it before filling, so config_free sees what to free. */
        l->cert_count = ci + 1;
        if (parse_members(c, "listeners[].tls.certificates[]", &l->certs[ci], cp, err, errlen) ==
            -1)
            return -1;
        ci++;
    }
    return 0;
}

static bool same_listener_address(const void *a, const void *b)
{
    const struct config_listener *x = a, *y = b;

    return same_address(&x->addr, x->addr_len, &y->addr, y->addr_len);
}

/* Listener count, then each listener: the first that differs is named. */
static int reload_listeners(const struct config_key *k, const struct config *a,
                            const struct config *b, char *err, size_t errlen)
{
    if (a->listener_count != b->listener_count)
        return errf(err, errlen, "%s: %s", k->path, k->restart);
    for (size_t i = 0; i < a->listener_count; i++) {
        const struct config_key *d =
            changed_member("listeners[]", &a->listeners[i], &b->listeners[i]);

        if (d != NULL)
            return errf(err, errlen, "listeners[%zu]: %s", i, d->restart);
    }
    return 0;
}

/* Read after the listeners: the two cannot share an address. */
static int parse_admin_address(const struct config_key *k, const cJSON *it, void *base,
                               const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;

    if (it != NULL && cJSON_IsNull(it)) {
        cfg->admin_enabled = false;
        return 0;
    }
    if (it != NULL) {
        if (!cJSON_IsString(it))
            return errf(err, errlen, "%s: must be a string or null", path);
        if (it->valuestring[0] == '\0')
            return errf(err, errlen, "%s: must be a non-empty string", path);
        if (set_string(k, cfg, it->valuestring, path, err, errlen) == -1)
            return -1;
        if (config_parse_address(cfg->admin_address, &cfg->admin_addr, &cfg->admin_addr_len) == -1)
            return errf(err, errlen, "%s: not IPv4:port or [IPv6]:port", path);
        cfg->admin_enabled = true;
    }
    for (size_t i = 0; cfg->admin_enabled && i < cfg->listener_count; i++)
        if (same_address(&cfg->listeners[i].addr, cfg->listeners[i].addr_len, &cfg->admin_addr,
                         cfg->admin_addr_len))
            return errf(err, errlen, "%s: same as listeners[%zu]", path, i);
    return 0;
}

static void default_admin(struct config *cfg)
{
    cfg->admin_enabled = true;
    /* The table's literal: cannot fail. */
    (void)config_parse_address(cfg->admin_address, &cfg->admin_addr, &cfg->admin_addr_len);
}

static bool same_admin(const void *a, const void *b)
{
    const struct config *x = a, *y = b;

    return x->admin_enabled == y->admin_enabled &&
           (!x->admin_enabled ||
            same_address(&x->admin_addr, x->admin_addr_len, &y->admin_addr, y->admin_addr_len));
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
static int parse_redis_url(const char *url, struct config *cfg, char *err, size_t errlen)
{
    const char *rest, *at, *hp, *slash, *hend, *port_s = NULL;
    char *host = NULL, *pass = NULL;
    size_t hlen;
    uint16_t port = 6379;
    int db = 0;

    if (strncmp(url, "rediss://", 9) == 0)
        return errf(err, errlen,
                    "redis.url: rediss:// (TLS) is not "
                    "supported");
    if (strncmp(url, "redis://", 8) != 0)
        return errf(err, errlen, "redis.url: must start with redis://");
    rest = url + 8;
    if (strpbrk(rest, "?#") != NULL)
        return errf(err, errlen,
                    "redis.url: query and fragment are not "
                    "supported");

    /* Host, port and db hold no '@', so the last one ends the userinfo. */
    at = strrchr(rest, '@');
    hp = rest;
    if (at != NULL) {
        size_t plen, k = 0;

        if (rest[0] != ':')
            return errf(err, errlen,
                        "redis.url: user names are not "
                        "supported, use redis://:password@host");
        plen = (size_t)(at - rest - 1);
        if (plen == 0)
            return errf(err, errlen, "redis.url: empty password");
        pass = malloc(plen + 1);
        if (pass == NULL)
            return errf(err, errlen, "redis.url: out of memory");
        for (size_t i = 0; i < plen; i++) {
            char c = rest[1 + i];

            if (c == '%') {
                int hi = i + 2 < plen ? hexval(rest[2 + i]) : -1;
                int lo = i + 2 < plen ? hexval(rest[3 + i]) : -1;

                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                    free(pass);
                    return errf(err, errlen,
                                "redis.url: bad %%-escape in "
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

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.'))
                goto bad_host;
        }
        host = strndup(hp, hlen);
        if (colon != NULL)
            port_s = colon + 1;
    }
    if (host == NULL) {
        free(pass);
        return errf(err, errlen, "redis.url: out of memory");
    }
    if (port_s != NULL && host_parse_port(port_s, (size_t)(hend - port_s), &port) == -1) {
        free(host);
        free(pass);
        return errf(err, errlen, "redis.url: port must be 1..65535");
    }
    if (slash != NULL && slash[1] != '\0') {
        const char *d = slash + 1;
        size_t n = strlen(d);
        long v = 0;

        for (size_t i = 0; i < n; i++) {
            if (d[i] < '0' || d[i] > '9' || n > 9) {
                free(host);
                free(pass);
                return errf(err, errlen,
                            "redis.url: database must be a "
                            "number in 0..999999999");
            }
            v = v * 10 + (d[i] - '0');
        }
        db = (int)v;
    }

    if (cfg->redis_host != def_redis_host)
        free(cfg->redis_host);
    free(cfg->redis_password);
    cfg->redis_host = host;
    cfg->redis_password = pass;
    cfg->redis_port = port;
    cfg->redis_db = db;
    return 0;

bad_host:
    free(pass);
    return errf(err, errlen,
                "redis.url: host must be a name, an IPv4 "
                "address or [IPv6]");
}
static int parse_redis(const struct config_key *k, const cJSON *it, void *base, const char *path,
                       char *err, size_t errlen)
{
    if (it == NULL)
        return 0;
    if (!cJSON_IsString(it))
        return errf(err, errlen, "%s: must be a string", path);
    return parse_redis_url(it->valuestring, base, err, errlen);
}

static void default_redis(struct config *cfg)
{
    cfg->redis_host = def_redis_host;
    cfg->redis_port = 6379;
}

static int check_array(const cJSON *arr, const char *path, int max, const char *what, char *err,
                       size_t errlen);

/* "host:port": a name (letters, digits, '-', '.'), an IPv4 address or an
 * [IPv6] address, and a port (required). *host is a new string without the
 * brackets. 0 ok, -1 bad. */
static int parse_hostport(const char *s, char **host, int *port)
{
    const char *colon, *h = s;
    size_t hlen;
    uint16_t p;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;

        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        if (hlen == 0 || hlen >= sizeof(tmp))
            return -1;
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -1;
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen > 255)
            return -1;
        for (size_t i = 0; i < hlen; i++) {
            char c = s[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.'))
                return -1;
        }
    }
    if (host_parse_port(colon + 1, strlen(colon + 1), &p) == -1)
        return -1;
    *host = strndup(h, hlen);
    if (*host == NULL)
        return -1;
    *port = p;
    return 0;
}

static int parse_sentinels(const struct config_key *k, const cJSON *arr, void *base,
                           const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return 0;
    if (check_array(arr, path, CONFIG_MAX_SENTINELS, "addresses", err, errlen) == -1)
        return -1;
    cJSON_ArrayForEach(it, arr)
    {
        struct config_hostport *hp = &cfg->redis_sentinels[i];

        if (!cJSON_IsString(it) || parse_hostport(it->valuestring, &hp->host, &hp->port) == -1)
            return errf(err, errlen,
                        "%s[%zu]: not host:port (a name, an IPv4 address or [IPv6], and a "
                        "port 1..65535)",
                        path, i);
        cfg->redis_sentinel_count = ++i;
    }
    return 0;
}

static bool same_sentinels(const void *a, const void *b)
{
    const struct config *x = a, *y = b;

    if (x->redis_sentinel_count != y->redis_sentinel_count)
        return false;
    for (size_t i = 0; i < x->redis_sentinel_count; i++)
        if (x->redis_sentinels[i].port != y->redis_sentinels[i].port ||
            strcmp(x->redis_sentinels[i].host, y->redis_sentinels[i].host) != 0)
            return false;
    return true;
}

/* Read after redis.sentinels: the two go together. */
static int parse_master_name(const struct config_key *k, const cJSON *it, void *base,
                             const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;

    if (parse_value(k, it, base, path, err, errlen) == -1)
        return -1;
    if (cfg->redis_master_name != NULL && !visible_ascii(cfg->redis_master_name, 128))
        return errf(err, errlen, "%s: must be visible ASCII, at most 128 bytes", path);
    if (cfg->redis_sentinel_count > 0 && cfg->redis_master_name == NULL)
        return errf(err, errlen, "%s: required with redis.sentinels", path);
    if (cfg->redis_sentinel_count == 0 && cfg->redis_master_name != NULL)
        return errf(err, errlen, "%s: only with redis.sentinels", path);
    return 0;
}

/* An array of at most max things. */
static int check_array(const cJSON *arr, const char *path, int max, const char *what, char *err,
                       size_t errlen)
{
    if (!cJSON_IsArray(arr))
        return errf(err, errlen, "%s: must be an array of %s", path, what);
    if (cJSON_GetArraySize(arr) > max)
        return errf(err, errlen, "%s: at most %d %s", path, max, what);
    return 0;
}

static int parse_exempt_ports(const struct config_key *k, const cJSON *arr, void *base,
                              const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return 0;
    if (check_array(arr, path, CONFIG_MAX_EXEMPT_PORTS, "ports", err, errlen) == -1)
        return -1;
    cJSON_ArrayForEach(it, arr)
    {
        int v;

        if (!int_in(it, 1, 65535, &v))
            return errf(err, errlen,
                        "%s[%zu]: must be an integer in "
                        "1..65535",
                        path, i);
        cfg->token_exempt_ports[i++] = (uint16_t)v;
    }
    cfg->token_exempt_count = i;
    return 0;
}

static void default_exempt_ports(struct config *cfg)
{
    cfg->token_exempt_ports[0] = 49983;
    cfg->token_exempt_count = 1;
}

static int parse_trusted_proxies(const struct config_key *k, const cJSON *arr, void *base,
                                 const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return 0;
    if (check_array(arr, path, CONFIG_MAX_TRUSTED, "networks", err, errlen) == -1)
        return -1;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) ||
            cidr_parse(it->valuestring, strlen(it->valuestring), &cfg->trusted_proxies[i]) == -1)
            return errf(err, errlen,
                        "%s[%zu]: not an IPv4 or IPv6 address "
                        "or network",
                        path, i);
        i++;
    }
    cfg->trusted_count = i;
    return 0;
}

/* ---- egress (SPEC section 9) --------------------------------------------- */

static const struct {
    const char *path;
    size_t offset;
} egress_listeners[] = {
    {"egress.listeners.http", OFF(egress_http)},
    {"egress.listeners.tls", OFF(egress_tls)},
    {"egress.listeners.tcp", OFF(egress_tcp)},
};

/* Read after the listeners and admin.address: no two sockets may share an
 * address. */
static int parse_egress_listener(const struct config_key *k, const cJSON *it, void *base,
                                 const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    struct config_egress_listener *l = field(base, k);

    if (parse_value(k, it, base, path, err, errlen) == -1)
        return -1;
    memset(&l->addr, 0, sizeof(l->addr));
    l->addr_len = 0;
    if (l->address == NULL)
        return 0;
    if (config_parse_address(l->address, &l->addr, &l->addr_len) == -1)
        return errf(err, errlen, "%s: not IPv4:port or [IPv6]:port", path);
    for (size_t i = 0; i < cfg->listener_count; i++)
        if (same_address(&cfg->listeners[i].addr, cfg->listeners[i].addr_len, &l->addr,
                         l->addr_len))
            return errf(err, errlen, "%s: same as listeners[%zu]", path, i);
    if (cfg->admin_enabled &&
        same_address(&cfg->admin_addr, cfg->admin_addr_len, &l->addr, l->addr_len))
        return errf(err, errlen, "%s: same as admin.address", path);
    for (size_t i = 0; i < sizeof(egress_listeners) / sizeof(egress_listeners[0]); i++) {
        const struct config_egress_listener *o =
            (const struct config_egress_listener *)((char *)cfg + egress_listeners[i].offset);

        if (o == l)
            break;
        if (o->address != NULL && same_address(&o->addr, o->addr_len, &l->addr, l->addr_len))
            return errf(err, errlen, "%s: same as %s", path, egress_listeners[i].path);
    }
    return 0;
}

static int parse_nameservers(const struct config_key *k, const cJSON *arr, void *base,
                             const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return 0;
    if (check_array(arr, path, CONFIG_MAX_NAMESERVERS, "addresses", err, errlen) == -1)
        return -1;
    if (cJSON_GetArraySize(arr) == 0)
        return errf(err, errlen, "%s: at least one address is required", path);
    cJSON_ArrayForEach(it, arr)
    {
        struct cidr_addr a;
        struct cidr *ns = &cfg->egress_nameservers[i];

        if (!cJSON_IsString(it) ||
            cidr_addr_parse(it->valuestring, strlen(it->valuestring), &a) == -1)
            return errf(err, errlen, "%s[%zu]: not an IPv4 or IPv6 address", path, i);
        memset(ns, 0, sizeof(*ns));
        ns->family = a.family;
        memcpy(ns->addr, a.addr, sizeof(ns->addr));
        ns->prefix = a.family == AF_INET ? 32 : 128;
        i++;
    }
    cfg->egress_nameserver_count = i;
    return 0;
}

static void default_nameservers(struct config *cfg)
{
    /* The table's literal: cannot fail. */
    (void)cidr_parse("8.8.8.8", 7, &cfg->egress_nameservers[0]);
    cfg->egress_nameserver_count = 1;
}

static bool same_nameservers(const void *a, const void *b)
{
    const struct config *x = a, *y = b;

    return x->egress_nameserver_count == y->egress_nameserver_count &&
           memcmp(x->egress_nameservers, y->egress_nameservers,
                  x->egress_nameserver_count * sizeof(x->egress_nameservers[0])) == 0;
}

static int parse_always_deny(const struct config_key *k, const cJSON *arr, void *base,
                             const char *path, char *err, size_t errlen)
{
    struct config *cfg = base;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return 0;
    if (check_array(arr, path, CONFIG_MAX_ALWAYS_DENY, "networks", err, errlen) == -1)
        return -1;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) ||
            cidr_parse(it->valuestring, strlen(it->valuestring), &cfg->egress_always_deny[i]) == -1)
            return errf(err, errlen, "%s[%zu]: not an IPv4 or IPv6 address or network", path, i);
        i++;
    }
    cfg->egress_always_deny_count = i;
    return 0;
}

static void default_always_deny(struct config *cfg)
{
    size_t n = sizeof(always_deny_default) / sizeof(always_deny_default[0]);

    /* The table's literals: cannot fail (test_config checks each). */
    for (size_t i = 0; i < n; i++)
        (void)cidr_parse(always_deny_default[i], strlen(always_deny_default[i]),
                         &cfg->egress_always_deny[i]);
    cfg->egress_always_deny_count = n;
}

/* ---- public -------------------------------------------------------------- */

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        if (in_array(k))
            continue;
        switch (k->type) {
        case KEY_INT:
        case KEY_ENUM:
            *(int *)field(cfg, k) = k->def;
            break;
        case KEY_BOOL:
            *(bool *)field(cfg, k) = k->def;
            break;
        case KEY_TOKEN:
        case KEY_TEXT:
            *(char **)field(cfg, k) = (char *)k->def_text;
            break;
        case KEY_CUSTOM:
            break;
        }
        if (k->set_default != NULL)
            k->set_default(cfg);
    }
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        char **s = field(cfg, k);

        if (!in_array(k) && (k->type == KEY_TOKEN || k->type == KEY_TEXT) && *s != k->def_text)
            free(*s);
    }
    for (size_t i = 0; i < cfg->domains.count; i++)
        free(cfg->domains.names[i]);
    free(cfg->domains.names);
    for (size_t i = 0; i < cfg->listener_count && i < CONFIG_MAX_LISTENERS; i++) {
        struct config_listener *l = &cfg->listeners[i];

        free(l->address);
        for (size_t j = 0; j < l->cert_count && j < CONFIG_MAX_CERTS; j++) {
            free(l->certs[j].cert);
            free(l->certs[j].key);
        }
    }
    if (cfg->redis_host != def_redis_host)
        free(cfg->redis_host);
    free(cfg->redis_password);
    for (size_t i = 0; i < cfg->redis_sentinel_count && i < CONFIG_MAX_SENTINELS; i++)
        free(cfg->redis_sentinels[i].host);
    /* Back to a state that owns nothing: a second config_free, or reuse,
     * is safe. */
    config_defaults(cfg);
}

int config_parse(const char *json, size_t len, struct config *cfg, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root = NULL;
    long bad;

    config_defaults(cfg);
    if (json == NULL)
        return errf(err, errlen, "not valid JSON near line 1, column 1");
    bad = json_guard_scan(json, len);
    if (bad >= 0)
        return json_error(json, len, (size_t)bad, err, errlen);
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL)
        return json_error(json, len, end ? (size_t)(end - json) : 0, err, errlen);
    for (; end < json + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            json_error(json, len, (size_t)(end - json), err, errlen);
            goto fail;
        }
    }
    if (!cJSON_IsObject(root)) {
        errf(err, errlen, "the configuration must be a JSON object");
        goto fail;
    }
    if (parse_members(root, "", cfg, "", err, errlen) == -1)
        goto fail;
    cJSON_Delete(root);
    return 0;

fail:
    cJSON_Delete(root);
    config_free(cfg);
    return -1;
}

int config_load_file(const char *path, struct config *cfg, char *err, size_t errlen)
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
        return errf(err, errlen, "%s: out of memory", path);
    }
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f))
        goto io_fail;
    fclose(f);
    f = NULL;
    if (n > CONFIG_FILE_MAX) {
        free(buf);
        return errf(err, errlen, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
    }
    rc = config_parse(buf, n, cfg, err, errlen);
    free(buf);
    return rc;

io_fail:
    rc = errno;
    if (f != NULL)
        fclose(f);
    free(buf);
    return errf(err, errlen, "%s: %s", path, strerror(rc ? rc : EIO));
}

int config_reload_check(const struct config *a, const struct config *b, char *err, size_t errlen)
{
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        if (k->restart == NULL || in_array(k))
            continue;
        if (k->reload != NULL) {
            if (k->reload(k, a, b, err, errlen) == -1)
                return -1;
        } else if (!same_value(k, a, b)) {
            return errf(err, errlen, "%s: %s", k->path, k->restart);
        }
    }
    return 0;
}

static void print_default(FILE *out, const struct config_key *k)
{
    if (k->shown_default != NULL)
        fputs(k->shown_default, out);
    else if (k->required)
        fputs("required", out);
    else if (k->type == KEY_INT)
        fprintf(out, "`%d`", k->def);
    else if (k->type == KEY_BOOL)
        fprintf(out, "`%s`", k->def ? "true" : "false");
    else if (k->type == KEY_ENUM)
        fprintf(out, "`\"%s\"`", k->names[k->def]);
    else if (k->def_text != NULL)
        fprintf(out, "`\"%s\"`", k->def_text);
    else
        fputs("`null`", out);
}

static void print_values(FILE *out, const struct config_key *k)
{
    if (k->values != NULL)
        fputs(k->values, out);
    else if (k->type == KEY_INT)
        fprintf(out, "%d..%d", k->min, k->max);
    else if (k->type == KEY_BOOL)
        fputs("`true` or `false`", out);
    else if (k->type == KEY_ENUM)
        for (size_t i = 0; k->names[i] != NULL; i++)
            fprintf(out, "%s`%s`", i ? ", " : "", k->names[i]);
    else if (k->type == KEY_TOKEN)
        fprintf(out, "visible ASCII, at most %d bytes", k->max);
    else
        fprintf(out, "non-empty string%s", k->nullable ? " or `null`" : "");
}

void config_print_reference(FILE *out)
{
    fputs("| key | default | values | SIGHUP | meaning |\n"
          "|---|---|---|---|---|\n",
          out);
    for (const struct config_key *k = keys; k < KEYS_END; k++) {
        fprintf(out, "| `%s` | ", k->path);
        print_default(out, k);
        fputs(" | ", out);
        print_values(out, k);
        fprintf(out, " | %s | %s |\n", k->restart ? "restart" : "applies", k->doc);
    }
}

int config_worker_count(const struct config *cfg)
{
    long n = cfg->workers > 0 ? cfg->workers : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int config_derived_max_connections(unsigned long long nofile, int workers, size_t listeners)
{
    unsigned long long reserve =
        64 + (unsigned long long)(workers > 0 ? workers : 1) * (listeners + 8);
    unsigned long long n = nofile > reserve ? (nofile - reserve) / 2 : 0;
    if (n < 1)
        return 1;
    return n < CONFIG_MAX_CONNECTIONS ? (int)n : CONFIG_MAX_CONNECTIONS;
}