/* common/: the pure pieces. Parsers (config, Host, routing record, PROXY
 * header, request/response heads), renderers (the proxy's replies, the
 * bounded writer) and small tools (SipHash map, lists, comma lists, backoff,
 * time). Nothing here owns a socket, an event or a thread: every function
 * takes bytes and lengths and returns, so each is unit-tested and fuzzed
 * alone. common/ calls only libc and cJSON, never another folder.
 *
 * The JSON configuration: SPEC section 3 plus the team's own keys, each one
 * row of the table in config.c, which README.md's Configuration table is the
 * printout of (config_print_reference) and conf/edgeproxy.json shows with
 * its default. Pure but for that printout. */
#ifndef EDGEPROXY_CONFIG_H
#define EDGEPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "cidr.h"
#include "host.h"

#define CONFIG_MAX_LISTENERS 16
#define CONFIG_MAX_CERTS 16
#define CONFIG_MAX_EXEMPT_PORTS 64
#define CONFIG_MAX_TRUSTED 32
#define CONFIG_MAX_NAMESERVERS 8
#define CONFIG_MAX_ALWAYS_DENY 128
#define CONFIG_MAX_SENTINELS 16

/* A host (a name, an IPv4 or an IPv6 address, without brackets) and a
 * port: one of redis.sentinels. */
struct config_hostport {
    char *host;
    int port;
};

/* limits.max_connections_scope */
enum config_limits_scope {
    CONFIG_LIMITS_PROCESS = 0, /* per process (SPEC section 4) */
    CONFIG_LIMITS_GLOBAL = 1,  /* across instances, through Redis (section 10) */
};

/* egress.interception: how sandbox TCP reaches the egress listeners */
enum config_egress_interception {
    CONFIG_EGRESS_REDIRECT = 0, /* nft `redirect` (DNAT): SO_ORIGINAL_DST */
    CONFIG_EGRESS_TPROXY = 1,   /* nft `tproxy`: IP_TRANSPARENT, getsockname */
};

struct config_cert {
    char *cert; /* PEM chain path */
    char *key;  /* PEM key path */
};

struct config_listener {
    char *address;                /* as written, for messages */
    struct sockaddr_storage addr; /* parsed IPv4:port / [IPv6]:port */
    socklen_t addr_len;
    bool tls; /* "tls" object present */
    struct config_cert certs[CONFIG_MAX_CERTS];
    size_t cert_count;
    bool proxy_protocol;
    bool http2; /* offer HTTP/2: ALPN h2, or the preface on plain */
};

/* An egress listener (SPEC section 9): address NULL = none. */
struct config_egress_listener {
    char *address;                /* as written, for messages */
    struct sockaddr_storage addr; /* parsed IPv4:port / [IPv6]:port */
    socklen_t addr_len;
};

struct config {
    int workers;                /* "workers": 0 = one per core */
    struct domain_list domains; /* "domains" lower-cased, dots trimmed */

    struct config_listener listeners[CONFIG_MAX_LISTENERS];
    size_t listener_count; /* at least 1 */

    bool admin_enabled; /* "admin": null or address null = off */
    char *admin_address;
    struct sockaddr_storage admin_addr;
    socklen_t admin_addr_len;

    /* "redis" */
    char *redis_host; /* from "url" */
    int redis_port;
    char *redis_password; /* NULL = none */
    int redis_db;
    char *key_prefix;             /* "key_prefix", default "sandbox:" */
    int redis_timeout_ms;         /* "timeout_ms", default 250 */
    int redis_connect_timeout_ms; /* "connect_timeout_ms", default 1000 */
    /* Sentinel mode (SPEC section 10) when redis_sentinel_count > 0: the
     * master is asked of the sentinels; url's host and port are not used,
     * its password and db are. */
    struct config_hostport redis_sentinels[CONFIG_MAX_SENTINELS];
    size_t redis_sentinel_count;   /* default 0: redis.url's host */
    char *redis_master_name;       /* required with sentinels */
    char *redis_sentinel_password; /* NULL = none */
    bool redis_read_replicas;      /* default true */

    /* "cache" */
    int cache_ttl_ms;          /* "ttl_ms", default 1000 */
    int cache_negative_ttl_ms; /* "negative_ttl_ms", default 250 */
    int cache_stale_grace_ms;  /* "stale_grace_ms", default 30000:
                                           how long an expired record keeps
                                           serving while Redis is down */
    int cache_max_entries;     /* "max_entries", default 32768 per
                                           worker, 16..10000000 */

    /* "limits" */
    int limits_scope; /* enum config_limits_scope, default process */

    /* "policy" */
    uint16_t token_exempt_ports[CONFIG_MAX_EXEMPT_PORTS];
    size_t token_exempt_count; /* default [49983] */
    struct cidr trusted_proxies[CONFIG_MAX_TRUSTED];
    size_t trusted_count; /* default [] */

    /* "client" */
    int client_header_timeout_ms;    /* default 10000 */
    int client_keepalive_timeout_ms; /* default 75000 */
    int client_body_timeout_ms;      /* default 60000: idle while reading
                                           a request body */
    int client_max_head_bytes;       /* default 16384 -> 431 */
    int client_max_headers;          /* default 100 -> 431 */
    int client_max_request_line;     /* default 8192 -> 414 */
    int websocket_idle_timeout_ms;   /* default 3600000 */
    int client_max_connections;      /* default 0 = derived from the
                                           open-files limit, see
                                           config_derived_max_connections */

    /* "upstream" */
    int upstream_connect_timeout_ms;   /* default 5000 */
    int upstream_connect_retries;      /* default 3 (refused only) */
    int upstream_retry_backoff_ms;     /* default 100, doubled per retry,
                                           each wait at most 60 s (backoff.h) */
    int upstream_response_timeout_ms;  /* default 0 = off, else 504 */
    int upstream_idle_timeout_ms;      /* default 60000, read/write idle */
    int upstream_pool_idle_timeout_ms; /* default 30000, pooled conns */
    int upstream_pool_max_idle;        /* default 64 per pool key */

    /* "http2" */
    int http2_max_concurrent_streams; /* default 100 (SPEC section 8) */
    int http2_stream_window;          /* "stream_window_bytes", default 65535 */
    int http2_connection_window;      /* "connection_window_bytes", default 1 MiB */
    int http2_max_requests;           /* streams per connection, then GOAWAY */
    int http2_send_timeout_ms;        /* default 60000: a stream's slow reader */

    /* "drain" */
    int drain_delay_ms;   /* default 0 */
    int drain_timeout_ms; /* default 30000 */

    /* "egress" (SPEC section 9) */
    struct config_egress_listener egress_http; /* "listeners.http": port 80 */
    struct config_egress_listener egress_tls;  /* "listeners.tls": port 443 */
    struct config_egress_listener egress_tcp;  /* "listeners.tcp": the rest */
    int egress_interception;                   /* enum config_egress_interception */
    int egress_tproxy_mark;                    /* default 1: the fwmark of the tproxy ruleset */
    struct cidr egress_nameservers[CONFIG_MAX_NAMESERVERS]; /* one-host networks */
    size_t egress_nameserver_count;                         /* default ["8.8.8.8"] */
    struct cidr egress_always_deny[CONFIG_MAX_ALWAYS_DENY];
    size_t egress_always_deny_count; /* default: the list in config.c */
    int egress_peek_timeout_ms;      /* default 3000: the TLS listener's wait for a ClientHello */
    int egress_idle_timeout_ms;      /* default 3600000: spliced connections */

    /* "access_log" */
    char *access_log_path; /* NULL = off */

    /* "log" */
    int log_level; /* "level": "error" 0, "warn" 1,
                                           "info" 2 (default), "debug" 3 */
};

/* Fills cfg with every default. Owns nothing yet. */
void config_defaults(struct config *cfg);

/* Parses JSON text into cfg (defaults first, then the keys given). Unknown
 * keys, wrong types and out-of-range values are errors: returns -1 with err
 * naming the key path ("listeners[1].address: not IPv4:port or
 * [IPv6]:port", "redis.url: ...", "unknown key \"wrokers\""). On error cfg is
 * left freed (config_free not needed). 0 ok. */
int config_parse(const char *json, size_t len, struct config *cfg, char *err, size_t errlen);

/* Reads the file and calls config_parse; the path goes into err on I/O
 * errors. */
int config_load_file(const char *path, struct config *cfg, char *err, size_t errlen);

/* Frees what config_parse allocated; cfg may be reused after. */
void config_free(struct config *cfg);

/* May a SIGHUP go from a to b? -1 naming the first restart-only key that
 * differs ("workers: changing the worker count needs a restart",
 * "listeners[1]: address, tls on/off and proxy_protocol need a restart"),
 * 0 when none does. */
int config_reload_check(const struct config *a, const struct config *b, char *err, size_t errlen);

/* The key reference, a Markdown table (key, default, values, whether a
 * SIGHUP applies it, meaning): `edgeproxy --print-config`, and README.md's
 * Configuration table. */
void config_print_reference(FILE *out);

/* "IPv4:port" or "[IPv6]:port" -> sockaddr. 0 ok, -1 bad. */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* The number of workers the process runs: `workers`, or one per online core
 * when it is 0 (at least 1). */
int config_worker_count(const struct config *cfg);

/* client.max_connections 0: the open client connections a process with
 * `nofile` descriptors (RLIMIT_NOFILE) can carry. Each proxied connection
 * may hold two (the client's and the upstream's), after a reserve for what
 * the process itself keeps open: 64, plus per worker its listening sockets
 * and 8 more (event loop, wake-up, Redis links, access log). At least 1,
 * at most CONFIG_MAX_CONNECTIONS. */
#define CONFIG_MAX_CONNECTIONS 16777216
int config_derived_max_connections(unsigned long long nofile, int workers, size_t listeners);

/* Is `sa` inside one of the networks? An IPv4 address is also tried in its
 * IPv4-mapped form, so that "::/0" holds every client (policy.trusted_proxies
 * has always matched that way; egress rules do not, see cidr.h). */
bool config_cidr_match(const struct cidr *nets, size_t count, const struct sockaddr *sa);

#endif
