/* config_parse and helpers: SPEC section 3, every default, every error
 * naming its key. Run from the repository root (make unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "config.h"

#define MIN_LISTENER "\"listeners\":[{\"address\":\"0.0.0.0:8080\"}]"

/* Parses from an exact-size heap copy so ASan sees any over-read. */
static int parse_n(const char *s, size_t len, struct config *cfg, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, len);
    rc = config_parse(copy, len, cfg, err, errlen);
    free(copy);
    return rc;
}

static void ok(const char *json, struct config *cfg)
{
    char err[256] = "";

    if (parse_n(json, strlen(json), cfg, err, sizeof(err)) != 0)
        fail_msg("unexpected error for %s: %s", json, err);
}

/* After a failure cfg must own nothing and look like the defaults. */
static void assert_freed(const struct config *c)
{
    assert_int_equal(c->listener_count, 0);
    assert_int_equal(c->domains.count, 0);
    assert_null(c->domains.names);
    assert_null(c->redis_password);
    assert_null(c->access_log_path);
    assert_string_equal(c->redis_host, "127.0.0.1");
    assert_string_equal(c->key_prefix, "sandbox:");
    assert_string_equal(c->admin_address, "127.0.0.1:9090");
}

static void bad(const char *json, const char *want)
{
    struct config cfg;
    char err[256] = "";

    if (parse_n(json, strlen(json), &cfg, err, sizeof(err)) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(err, want) != 0)
        fail_msg("for %s\n  got  %s\n  want %s", json, err, want);
    assert_freed(&cfg);
    config_free(&cfg); /* harmless after a failure */
}

/* Every default, as documented in config.h and the README. */
static void assert_defaults_except_listeners(const struct config *c)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)&c->admin_addr;

    assert_int_equal(c->workers, 0);
    assert_int_equal(c->domains.count, 0);
    assert_true(c->admin_enabled);
    assert_string_equal(c->admin_address, "127.0.0.1:9090");
    assert_int_equal(a->sin_family, AF_INET);
    assert_int_equal(ntohs(a->sin_port), 9090);
    assert_int_equal(ntohl(a->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(c->admin_addr_len, sizeof(struct sockaddr_in));
    assert_string_equal(c->redis_host, "127.0.0.1");
    assert_int_equal(c->redis_port, 6379);
    assert_null(c->redis_password);
    assert_int_equal(c->redis_db, 0);
    assert_string_equal(c->key_prefix, "sandbox:");
    assert_int_equal(c->redis_timeout_ms, 250);
    assert_int_equal(c->redis_connect_timeout_ms, 1000);
    assert_int_equal(c->redis_sentinel_count, 0);
    assert_null(c->redis_master_name);
    assert_null(c->redis_sentinel_password);
    assert_true(c->redis_read_replicas);
    assert_int_equal(c->limits_scope, CONFIG_LIMITS_PROCESS);
    assert_int_equal(c->cache_ttl_ms, 1000);
    assert_int_equal(c->cache_negative_ttl_ms, 250);
    assert_int_equal(c->cache_stale_grace_ms, 30000);
    assert_int_equal(c->cache_max_entries, 32768);
    assert_int_equal(c->token_exempt_count, 1);
    assert_int_equal(c->token_exempt_ports[0], 49983);
    assert_int_equal(c->trusted_count, 0);
    assert_int_equal(c->client_header_timeout_ms, 10000);
    assert_int_equal(c->client_keepalive_timeout_ms, 75000);
    assert_int_equal(c->client_body_timeout_ms, 60000);
    assert_int_equal(c->client_max_head_bytes, 16384);
    assert_int_equal(c->client_max_headers, 100);
    assert_int_equal(c->client_max_request_line, 8192);
    assert_int_equal(c->websocket_idle_timeout_ms, 3600000);
    assert_int_equal(c->client_max_connections, 0);
    assert_int_equal(c->upstream_connect_timeout_ms, 5000);
    assert_int_equal(c->upstream_connect_retries, 3);
    assert_int_equal(c->upstream_retry_backoff_ms, 100);
    assert_int_equal(c->upstream_response_timeout_ms, 0);
    assert_int_equal(c->upstream_idle_timeout_ms, 60000);
    assert_int_equal(c->upstream_pool_idle_timeout_ms, 30000);
    assert_int_equal(c->upstream_pool_max_idle, 64);
    assert_int_equal(c->http2_max_concurrent_streams, 100);
    assert_int_equal(c->http2_stream_window, 65535);
    assert_int_equal(c->http2_connection_window, 1048576);
    assert_int_equal(c->http2_max_requests, 10000);
    assert_int_equal(c->http2_send_timeout_ms, 60000);
    assert_int_equal(c->drain_delay_ms, 0);
    assert_int_equal(c->drain_timeout_ms, 30000);
    assert_null(c->access_log_path);
    assert_int_equal(c->log_level, 2);
    assert_null(c->egress_http.address);
    assert_null(c->egress_tls.address);
    assert_null(c->egress_tcp.address);
    assert_int_equal(c->egress_nameserver_count, 1);
    assert_int_equal(c->egress_nameservers[0].family, AF_INET);
    assert_int_equal(c->egress_nameservers[0].prefix, 32);
    assert_int_equal(c->egress_nameservers[0].addr[0], 8);
    assert_int_equal(c->egress_nameservers[0].addr[3], 8);
    assert_int_equal(c->egress_always_deny_count, 21);
    assert_int_equal(c->egress_interception, CONFIG_EGRESS_REDIRECT);
    assert_int_equal(c->egress_tproxy_mark, 1);
}

static void test_defaults(void **state)
{
    struct config cfg;

    config_defaults(&cfg);
    assert_defaults_except_listeners(&cfg);
    assert_int_equal(cfg.listener_count, 0);
    /* Owns nothing: freeing it (twice) is fine. */
    config_free(&cfg);
    config_free(&cfg);
    assert_defaults_except_listeners(&cfg);
}

static void test_minimal(void **state)
{
    struct config cfg;
    const struct sockaddr_in *sin;

    ok("{" MIN_LISTENER "}", &cfg);
    assert_defaults_except_listeners(&cfg);
    assert_int_equal(cfg.listener_count, 1);
    assert_string_equal(cfg.listeners[0].address, "0.0.0.0:8080");
    sin = (const struct sockaddr_in *)&cfg.listeners[0].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(sin->sin_addr.s_addr, 0);
    assert_false(cfg.listeners[0].tls);
    assert_int_equal(cfg.listeners[0].cert_count, 0);
    assert_false(cfg.listeners[0].proxy_protocol);
    assert_true(cfg.listeners[0].http2); /* a member default that is not zero */
    config_free(&cfg);
    assert_int_equal(cfg.listener_count, 0);
    config_free(&cfg);
}

/* The shipped example: every key, each at its default. */
static void test_example_file(void **state)
{
    struct config cfg;
    char err[256] = "";

    if (config_load_file("conf/edgeproxy.json", &cfg, err, sizeof(err)) != 0)
        fail_msg("conf/edgeproxy.json: %s", err);
    assert_defaults_except_listeners(&cfg);
    assert_int_equal(cfg.listener_count, 1);
    assert_string_equal(cfg.listeners[0].address, "0.0.0.0:8080");
    assert_false(cfg.listeners[0].proxy_protocol);
    assert_false(cfg.listeners[0].tls);
    config_free(&cfg);
}

static void test_everything_set(void **state)
{
    struct config cfg;
    const struct sockaddr_in6 *s6;
    struct in6_addr want6;

    ok("{\"workers\":8,"
       "\"domains\":[\"Sandbox.Example\",\".e2b.app.\",\"a-b.c\"],"
       "\"listeners\":["
       " {\"address\":\"0.0.0.0:8080\"},"
       " {\"address\":\"[::]:8443\",\"tls\":{\"certificates\":["
       "   {\"cert\":\"conf/tls/a.pem\",\"key\":\"conf/tls/a.key\"},"
       "   {\"cert\":\"b.pem\",\"key\":\"b.key\"}]}},"
       " {\"address\":\"127.0.0.1:8081\",\"proxy_protocol\":true,\"http2\":false}],"
       "\"admin\":{\"address\":\"[::1]:9191\"},"
       "\"redis\":{\"url\":\"redis://:p%40ss:w/rd@redis.internal:6380/3\","
       "  \"key_prefix\":\"sb:\",\"timeout_ms\":250},"
       "\"cache\":{\"ttl_ms\":0,\"negative_ttl_ms\":0,\"stale_grace_ms\":0,"
       "  \"max_entries\":16},"
       "\"policy\":{\"token_exempt_ports\":[1,65535,49983],"
       "  \"trusted_proxies\":[\"10.0.0.0/8\",\"::1\",\"fd00::/8\"]},"
       "\"client\":{\"header_timeout_ms\":1,\"keepalive_timeout_ms\":2,"
       "  \"body_timeout_ms\":3,\"max_head_bytes\":1024,\"max_headers\":1,"
       "  \"max_request_line\":256,\"websocket_idle_timeout_ms\":4,"
       "  \"max_connections\":16777216},"
       "\"upstream\":{\"connect_timeout_ms\":5,\"connect_retries\":0,"
       "  \"retry_backoff_ms\":0,\"response_timeout_ms\":86400000,"
       "  \"idle_timeout_ms\":6,\"pool_idle_timeout_ms\":7,"
       "  \"pool_max_idle\":0},"
       "\"http2\":{\"max_concurrent_streams\":1000,\"stream_window_bytes\":16777216,"
       "  \"connection_window_bytes\":65535,\"max_requests\":1,\"send_timeout_ms\":8},"
       "\"drain\":{\"delay_ms\":5000,\"timeout_ms\":0},"
       "\"access_log\":{\"path\":\"/var/log/edgeproxy/access.log\"},"
       "\"log\":{\"level\":\"debug\"}}",
       &cfg);
    assert_int_equal(cfg.workers, 8);
    assert_int_equal(cfg.domains.count, 3);
    assert_string_equal(cfg.domains.names[0], "sandbox.example");
    assert_string_equal(cfg.domains.names[1], "e2b.app");
    assert_string_equal(cfg.domains.names[2], "a-b.c");
    assert_int_equal(cfg.listener_count, 3);
    assert_false(cfg.listeners[0].tls);
    assert_true(cfg.listeners[1].tls);
    assert_int_equal(cfg.listeners[1].addr.ss_family, AF_INET6);
    assert_int_equal(cfg.listeners[1].addr_len, sizeof(struct sockaddr_in6));
    assert_int_equal(cfg.listeners[1].cert_count, 2);
    assert_string_equal(cfg.listeners[1].certs[0].cert, "conf/tls/a.pem");
    assert_string_equal(cfg.listeners[1].certs[0].key, "conf/tls/a.key");
    assert_string_equal(cfg.listeners[1].certs[1].cert, "b.pem");
    assert_string_equal(cfg.listeners[1].certs[1].key, "b.key");
    assert_false(cfg.listeners[1].proxy_protocol);
    assert_true(cfg.listeners[2].proxy_protocol);
    assert_true(cfg.listeners[0].http2 && cfg.listeners[1].http2);
    assert_false(cfg.listeners[2].http2);
    assert_true(cfg.admin_enabled);
    assert_string_equal(cfg.admin_address, "[::1]:9191");
    s6 = (const struct sockaddr_in6 *)&cfg.admin_addr;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 9191);
    inet_pton(AF_INET6, "::1", &want6);
    assert_memory_equal(&s6->sin6_addr, &want6, 16);
    assert_string_equal(cfg.redis_host, "redis.internal");
    assert_int_equal(cfg.redis_port, 6380);
    assert_string_equal(cfg.redis_password, "p@ss:w/rd");
    assert_int_equal(cfg.redis_db, 3);
    assert_string_equal(cfg.key_prefix, "sb:");
    assert_int_equal(cfg.redis_timeout_ms, 250);
    assert_int_equal(cfg.cache_ttl_ms, 0);
    assert_int_equal(cfg.cache_negative_ttl_ms, 0);
    assert_int_equal(cfg.cache_stale_grace_ms, 0);
    assert_int_equal(cfg.cache_max_entries, 16);
    assert_int_equal(cfg.token_exempt_count, 3);
    assert_int_equal(cfg.token_exempt_ports[0], 1);
    assert_int_equal(cfg.token_exempt_ports[1], 65535);
    assert_int_equal(cfg.token_exempt_ports[2], 49983);
    assert_int_equal(cfg.trusted_count, 3);
    assert_int_equal(cfg.trusted_proxies[0].family, AF_INET);
    assert_int_equal(cfg.trusted_proxies[0].prefix, 8);
    assert_int_equal(cfg.trusted_proxies[1].family, AF_INET6);
    assert_int_equal(cfg.trusted_proxies[1].prefix, 128);
    assert_int_equal(cfg.trusted_proxies[2].prefix, 8);
    assert_int_equal(cfg.client_header_timeout_ms, 1);
    assert_int_equal(cfg.client_keepalive_timeout_ms, 2);
    assert_int_equal(cfg.client_body_timeout_ms, 3);
    assert_int_equal(cfg.client_max_head_bytes, 1024);
    assert_int_equal(cfg.client_max_headers, 1);
    assert_int_equal(cfg.client_max_request_line, 256);
    assert_int_equal(cfg.websocket_idle_timeout_ms, 4);
    assert_int_equal(cfg.client_max_connections, 16777216);
    assert_int_equal(cfg.upstream_connect_timeout_ms, 5);
    assert_int_equal(cfg.upstream_connect_retries, 0);
    assert_int_equal(cfg.upstream_retry_backoff_ms, 0);
    assert_int_equal(cfg.upstream_response_timeout_ms, 86400000);
    assert_int_equal(cfg.upstream_idle_timeout_ms, 6);
    assert_int_equal(cfg.upstream_pool_idle_timeout_ms, 7);
    assert_int_equal(cfg.upstream_pool_max_idle, 0);
    assert_int_equal(cfg.http2_max_concurrent_streams, 1000);
    assert_int_equal(cfg.http2_stream_window, 16777216);
    assert_int_equal(cfg.http2_connection_window, 65535);
    assert_int_equal(cfg.http2_max_requests, 1);
    assert_int_equal(cfg.http2_send_timeout_ms, 8);
    assert_int_equal(cfg.drain_delay_ms, 5000);
    assert_int_equal(cfg.drain_timeout_ms, 0);
    assert_string_equal(cfg.access_log_path, "/var/log/edgeproxy/access.log");
    assert_int_equal(cfg.log_level, 3);
    config_free(&cfg);
    assert_freed(&cfg);
}

static void test_admin_off_and_nulls(void **state)
{
    struct config cfg;

    ok("{" MIN_LISTENER ",\"admin\":null,\"access_log\":null}", &cfg);
    assert_false(cfg.admin_enabled);
    assert_null(cfg.access_log_path);
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"admin\":{\"address\":null}}", &cfg);
    assert_false(cfg.admin_enabled);
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"admin\":{}}", &cfg);
    assert_true(cfg.admin_enabled);
    assert_string_equal(cfg.admin_address, "127.0.0.1:9090");
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"policy\":{\"token_exempt_ports\":[],"
       "\"trusted_proxies\":[]},\"domains\":[]}",
       &cfg);
    assert_int_equal(cfg.token_exempt_count, 0);
    assert_int_equal(cfg.trusted_count, 0);
    assert_int_equal(cfg.domains.count, 0);
    config_free(&cfg);
    /* Whitespace around the document is fine. */
    ok(" \r\n\t{" MIN_LISTENER "} \n", &cfg);
    config_free(&cfg);
}

static void test_redis_urls(void **state)
{
    static const struct {
        const char *url, *host, *pass;
        int port, db;
    } good[] = {
        {"redis://127.0.0.1:6379/0", "127.0.0.1", NULL, 6379, 0},
        {"redis://localhost", "localhost", NULL, 6379, 0},
        {"redis://localhost/", "localhost", NULL, 6379, 0},
        {"redis://r.example:7000/15", "r.example", NULL, 7000, 15},
        {"redis://[::1]:6380/2", "::1", NULL, 6380, 2},
        {"redis://[fd00::5]", "fd00::5", NULL, 6379, 0},
        {"redis://[fd00::5]/4", "fd00::5", NULL, 6379, 4},
        {"redis://:secret@h:1", "h", "secret", 1, 0},
        {"redis://:a%3Ab%2f@h", "h", "a:b/", 6379, 0},
        {"redis://:x@y@h", "h", "x@y", 6379, 0},
        {"redis://h/999999999", "h", NULL, 6379, 999999999},
    };
    static const struct {
        const char *url, *err;
    } nope[] = {
        {"http://h", "redis.url: must start with redis://"},
        {"", "redis.url: must start with redis://"},
        {"REDIS://h", "redis.url: must start with redis://"},
        {"rediss://h", "redis.url: rediss:// (TLS) is not supported"},
        {"redis://", "redis.url: host must be a name, an IPv4 address or "
                     "[IPv6]"},
        {"redis://:6379", "redis.url: host must be a name, an IPv4 address "
                          "or [IPv6]"},
        {"redis://h_x", "redis.url: host must be a name, an IPv4 address or "
                        "[IPv6]"},
        {"redis://::1:6379", "redis.url: host must be a name, an IPv4 "
                             "address or [IPv6]"},
        {"redis://[::1", "redis.url: host must be a name, an IPv4 address "
                         "or [IPv6]"},
        {"redis://[]:1", "redis.url: host must be a name, an IPv4 address "
                         "or [IPv6]"},
        {"redis://[::1]x", "redis.url: host must be a name, an IPv4 address "
                           "or [IPv6]"},
        {"redis://[zz]", "redis.url: host must be a name, an IPv4 address "
                         "or [IPv6]"},
        {"redis://h:", "redis.url: port must be 1..65535"},
        {"redis://h:0", "redis.url: port must be 1..65535"},
        {"redis://h:65536", "redis.url: port must be 1..65535"},
        {"redis://h:6379x", "redis.url: port must be 1..65535"},
        {"redis://[::1]:", "redis.url: port must be 1..65535"},
        {"redis://h/x", "redis.url: database must be a number in "
                        "0..999999999"},
        {"redis://h/-1", "redis.url: database must be a number in "
                         "0..999999999"},
        {"redis://h/1/2", "redis.url: database must be a number in "
                          "0..999999999"},
        {"redis://h/1000000000", "redis.url: database must be a number in "
                                 "0..999999999"},
        {"redis://h?db=1", "redis.url: query and fragment are not supported"},
        {"redis://h#x", "redis.url: query and fragment are not supported"},
        {"redis://user:pw@h", "redis.url: user names are not supported, use "
                              "redis://:password@host"},
        {"redis://pw@h", "redis.url: user names are not supported, use "
                         "redis://:password@host"},
        {"redis://:@h", "redis.url: empty password"},
        {"redis://:a%4@h", "redis.url: bad %-escape in the password"},
        {"redis://:a%@h", "redis.url: bad %-escape in the password"},
        {"redis://:a%zz@h", "redis.url: bad %-escape in the password"},
        {"redis://:a%00b@h", "redis.url: bad %-escape in the password"},
    };
    char json[512];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct config cfg;

        snprintf(json, sizeof(json),
                 "{" MIN_LISTENER ",\"redis\":{\"url\":"
                 "\"%s\"}}",
                 good[i].url);
        ok(json, &cfg);
        assert_string_equal(cfg.redis_host, good[i].host);
        if (good[i].pass == NULL)
            assert_null(cfg.redis_password);
        else
            assert_string_equal(cfg.redis_password, good[i].pass);
        assert_int_equal(cfg.redis_port, good[i].port);
        assert_int_equal(cfg.redis_db, good[i].db);
        config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof(nope) / sizeof(nope[0]); i++) {
        snprintf(json, sizeof(json),
                 "{" MIN_LISTENER ",\"redis\":{\"url\":"
                 "\"%s\"}}",
                 nope[i].url);
        bad(json, nope[i].err);
    }
    bad("{" MIN_LISTENER ",\"redis\":{\"url\":6379}}", "redis.url: must be a string");
}

/* Sentinel mode (SPEC section 10): redis.sentinels, master_name and
 * sentinel_password go together and need a restart to change. */
static void test_sentinels(void **state)
{
    struct config cfg, other;
    char err[256];

    ok("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"127.0.0.1:26379\","
       "\"sentinel-b.internal:26380\",\"[::1]:26381\"],\"master_name\":\"edge\","
       "\"sentinel_password\":\"s p\",\"read_replicas\":false,\"connect_timeout_ms\":300},"
       "\"limits\":{\"max_connections_scope\":\"global\"}}",
       &cfg);
    assert_int_equal(cfg.redis_sentinel_count, 3);
    assert_string_equal(cfg.redis_sentinels[0].host, "127.0.0.1");
    assert_int_equal(cfg.redis_sentinels[0].port, 26379);
    assert_string_equal(cfg.redis_sentinels[1].host, "sentinel-b.internal");
    assert_int_equal(cfg.redis_sentinels[1].port, 26380);
    assert_string_equal(cfg.redis_sentinels[2].host, "::1");
    assert_int_equal(cfg.redis_sentinels[2].port, 26381);
    assert_string_equal(cfg.redis_master_name, "edge");
    assert_string_equal(cfg.redis_sentinel_password, "s p");
    assert_false(cfg.redis_read_replicas);
    assert_int_equal(cfg.redis_connect_timeout_ms, 300);
    assert_int_equal(cfg.limits_scope, CONFIG_LIMITS_GLOBAL);

    /* A reload may not switch Sentinels, the master name or the scope. */
    ok("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"127.0.0.1:26379\","
       "\"sentinel-b.internal:26380\",\"[::1]:26382\"],\"master_name\":\"edge\","
       "\"sentinel_password\":\"s p\"},\"limits\":{\"max_connections_scope\":\"global\"}}",
       &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    assert_string_equal(err, "redis.sentinels: changing the Sentinels needs a restart");
    config_free(&other);
    ok("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"127.0.0.1:26379\","
       "\"sentinel-b.internal:26380\",\"[::1]:26381\"],\"master_name\":\"edge2\","
       "\"sentinel_password\":\"s p\"},\"limits\":{\"max_connections_scope\":\"global\"}}",
       &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    assert_string_equal(err, "redis.master_name: changing the master name needs a restart");
    config_free(&other);
    ok("{" MIN_LISTENER "}", &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    config_free(&other);
    config_free(&cfg);

    bad("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"127.0.0.1:26379\"]}}",
        "redis.master_name: required with redis.sentinels");
    bad("{" MIN_LISTENER ",\"redis\":{\"master_name\":\"edge\"}}",
        "redis.master_name: only with redis.sentinels");
    bad("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"a:1\"],\"master_name\":\"a b\"}}",
        "redis.master_name: must be visible ASCII, at most 128 bytes");
    bad("{" MIN_LISTENER ",\"redis\":{\"sentinels\":\"a:1\",\"master_name\":\"m\"}}",
        "redis.sentinels: must be an array of addresses");
    static const char *const nope[] = {"a",     "a:",    "a:0",   "a:65536", ":1",    "a_b:1",
                                       "::1:1", "[::1]", "[x]:1", "[]:1",    "a:1:2", "a:1x"};
    for (size_t i = 0; i < sizeof(nope) / sizeof(nope[0]); i++) {
        char json[256], want[160];
        snprintf(json, sizeof(json),
                 "{" MIN_LISTENER ",\"redis\":{\"sentinels\":[\"h:1\",\"%s\"],"
                 "\"master_name\":\"m\"}}",
                 nope[i]);
        snprintf(want, sizeof(want),
                 "redis.sentinels[1]: not host:port (a name, an IPv4 address or [IPv6], and a "
                 "port 1..65535)");
        bad(json, want);
    }
    bad("{" MIN_LISTENER ",\"redis\":{\"sentinels\":[1],\"master_name\":\"m\"}}",
        "redis.sentinels[0]: not host:port (a name, an IPv4 address or [IPv6], and a port "
        "1..65535)");
    bad("{" MIN_LISTENER ",\"limits\":{\"max_connections_scope\":\"cluster\"}}",
        "limits.max_connections_scope: must be one of process, global");
}

static void test_errors(void **state)
{
    static const struct {
        const char *json, *err;
    } cases[] = {
        /* Not JSON, or not an object. */
        {"", "not valid JSON near line 1, column 1"},
        {"{", "not valid JSON near line 1, column 1"},
        {"{\n  \"workers\": 1,\n  oops\n}", "not valid JSON near line 3, column 4"},
        {"{" MIN_LISTENER "} {}", "not valid JSON near line 1, column 44"},
        {"{" MIN_LISTENER "}x", "not valid JSON near line 1, column 43"},
        {"[]", "the configuration must be a JSON object"},
        /* HTTP/2 (SPEC section 8) */
        {"{" MIN_LISTENER ",\"http2\":{\"max_concurrent_streams\":0}}",
         "http2.max_concurrent_streams: must be an integer in 1..1000"},
        {"{" MIN_LISTENER ",\"http2\":{\"stream_window_bytes\":65534}}",
         "http2.stream_window_bytes: must be an integer in 65535..16777216"},
        {"{" MIN_LISTENER ",\"http2\":{\"max_concurrent\":5}}",
         "unknown key \"http2.max_concurrent\""},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:8080\",\"http2\":1}]}",
         "listeners[0].http2: must be true or false"},
        {"null", "the configuration must be a JSON object"},
        {"{\"a\":\"b\\u0000c\"}", "not valid JSON near line 1, column 9"},
        {"{\"a\":\"b\tc\"}", "not valid JSON near line 1, column 8"},
        /* Listeners. */
        {"{}", "listeners: at least one listener is required"},
        {"{\"listeners\":[]}", "listeners: at least one listener is required"},
        {"{\"listeners\":{}}", "listeners: must be an array"},
        {"{\"listeners\":[5]}", "listeners[0]: must be an object"},
        {"{\"listeners\":[{}]}", "listeners[0].address: required"},
        {"{\"listeners\":[{\"address\":null}]}",
         "listeners[0].address: must be a non-empty string"},
        {"{\"listeners\":[{\"address\":\"\"}]}",
         "listeners[0].address: must be a non-empty string"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:8080\"},"
         "{\"address\":\"localhost:80\"}]}",
         "listeners[1].address: not IPv4:port or [IPv6]:port"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:8080\"},"
         "{\"address\":\"0.0.0.0:8080\"}]}",
         "listeners[1].address: same as listeners[0]"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"proxy_protocol\":1}]}",
         "listeners[0].proxy_protocol: must be true or false"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":true}]}",
         "listeners[0].tls: must be an object"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":{}}]}",
         "listeners[0].tls.certificates: must be a non-empty array"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificates\":[]}}]}",
         "listeners[0].tls.certificates: must be a non-empty array"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificates\":[{\"cert\":\"a\"}]}}]}",
         "listeners[0].tls.certificates[0].key: required"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificates\":[{\"key\":\"a\"}]}}]}",
         "listeners[0].tls.certificates[0].cert: required"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificates\":[{\"cert\":\"a\",\"key\":\"\"}]}}]}",
         "listeners[0].tls.certificates[0].key: must be a non-empty string"},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificates\":[{\"cert\":\"a\",\"key\":\"b\"},"
         "{\"cert\":\"c\",\"key\":\"d\",\"chain\":\"e\"}]}}]}",
         "unknown key \"listeners[0].tls.certificates[1].chain\""},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"tls\":"
         "{\"certificate\":[]}}]}",
         "unknown key \"listeners[0].tls.certificate\""},
        {"{\"listeners\":[{\"address\":\"0.0.0.0:1\",\"proxyprotocol\":true}]}",
         "unknown key \"listeners[0].proxyprotocol\""},
        /* Unknown and duplicate keys at every level. */
        {"{\"wrokers\":1}", "unknown key \"wrokers\""},
        {"{\"_comment\":\"x\"}", "unknown key \"_comment\""},
        {"{\"Workers\":1}", "unknown key \"Workers\""},
        {"{\"workers\":1,\"workers\":2}", "duplicate key \"workers\""},
        {"{" MIN_LISTENER ",\"client\":{\"header_timout_ms\":1}}",
         "unknown key \"client.header_timout_ms\""},
        {"{" MIN_LISTENER ",\"client\":{\"max_headers\":5,\"max_headers\":6}}",
         "duplicate key \"client.max_headers\""},
        {"{" MIN_LISTENER ",\"redis\":{\"host\":\"x\"}}", "unknown key \"redis.host\""},
        {"{" MIN_LISTENER ",\"cache\":{\"ttl\":1}}", "unknown key \"cache.ttl\""},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted\":[]}}", "unknown key \"policy.trusted\""},
        {"{" MIN_LISTENER ",\"upstream\":{\"retries\":1}}", "unknown key \"upstream.retries\""},
        {"{" MIN_LISTENER ",\"drain\":{\"delay\":1}}", "unknown key \"drain.delay\""},
        {"{" MIN_LISTENER ",\"access_log\":{\"file\":\"x\"}}", "unknown key \"access_log.file\""},
        {"{" MIN_LISTENER ",\"log\":{\"format\":\"json\"}}", "unknown key \"log.format\""},
        {"{" MIN_LISTENER ",\"admin\":{\"addr\":\"x\"}}", "unknown key \"admin.addr\""},
        /* Types and ranges. */
        {"{\"workers\":-1}", "workers: must be an integer in 0..1024"},
        {"{\"workers\":1025}", "workers: must be an integer in 0..1024"},
        {"{\"workers\":1.5}", "workers: must be an integer in 0..1024"},
        {"{\"workers\":\"4\"}", "workers: must be an integer in 0..1024"},
        {"{\"workers\":null}", "workers: must be an integer in 0..1024"},
        {"{\"workers\":1e300}", "workers: must be an integer in 0..1024"},
        {"{" MIN_LISTENER ",\"client\":{\"max_head_bytes\":1023}}",
         "client.max_head_bytes: must be an integer in 1024..1048576"},
        {"{" MIN_LISTENER ",\"client\":{\"max_headers\":0}}",
         "client.max_headers: must be an integer in 1..10000"},
        {"{" MIN_LISTENER ",\"client\":{\"max_request_line\":255}}",
         "client.max_request_line: must be an integer in 256..1048576"},
        {"{" MIN_LISTENER ",\"client\":{\"header_timeout_ms\":0}}",
         "client.header_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"client\":{\"keepalive_timeout_ms\":86400001}}",
         "client.keepalive_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"client\":{\"body_timeout_ms\":-5}}",
         "client.body_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"client\":{\"max_connections\":-1}}",
         "client.max_connections: must be an integer in 0..16777216"},
        {"{" MIN_LISTENER ",\"client\":{\"max_connections\":16777217}}",
         "client.max_connections: must be an integer in 0..16777216"},
        {"{" MIN_LISTENER ",\"client\":{\"websocket_idle_timeout_ms\":0}}",
         "client.websocket_idle_timeout_ms: must be an integer in "
         "1..86400000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"connect_timeout_ms\":0}}",
         "upstream.connect_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"connect_retries\":101}}",
         "upstream.connect_retries: must be an integer in 0..100"},
        {"{" MIN_LISTENER ",\"upstream\":{\"retry_backoff_ms\":60001}}",
         "upstream.retry_backoff_ms: must be an integer in 0..60000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"response_timeout_ms\":-1}}",
         "upstream.response_timeout_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"idle_timeout_ms\":0}}",
         "upstream.idle_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"pool_idle_timeout_ms\":0}}",
         "upstream.pool_idle_timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"upstream\":{\"pool_max_idle\":-1}}",
         "upstream.pool_max_idle: must be an integer in 0..100000"},
        {"{" MIN_LISTENER ",\"cache\":{\"ttl_ms\":-1}}",
         "cache.ttl_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"cache\":{\"negative_ttl_ms\":true}}",
         "cache.negative_ttl_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"cache\":{\"stale_grace_ms\":0.5}}",
         "cache.stale_grace_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"cache\":{\"max_entries\":15}}",
         "cache.max_entries: must be an integer in 16..10000000"},
        {"{" MIN_LISTENER ",\"cache\":{\"max_entries\":10000001}}",
         "cache.max_entries: must be an integer in 16..10000000"},
        {"{" MIN_LISTENER ",\"cache\":{\"max_entries\":null}}",
         "cache.max_entries: must be an integer in 16..10000000"},
        {"{" MIN_LISTENER ",\"drain\":{\"delay_ms\":-1}}",
         "drain.delay_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"drain\":{\"timeout_ms\":\"30s\"}}",
         "drain.timeout_ms: must be an integer in 0..86400000"},
        {"{" MIN_LISTENER ",\"redis\":{\"timeout_ms\":0}}",
         "redis.timeout_ms: must be an integer in 1..86400000"},
        {"{" MIN_LISTENER ",\"redis\":{\"key_prefix\":\"a b\"}}",
         "redis.key_prefix: must be a string of visible ASCII, at most 128 "
         "bytes"},
        {"{" MIN_LISTENER ",\"redis\":{\"key_prefix\":7}}",
         "redis.key_prefix: must be a string of visible ASCII, at most 128 "
         "bytes"},
        {"{" MIN_LISTENER ",\"redis\":null}", "redis: must be an object"},
        {"{" MIN_LISTENER ",\"client\":[]}", "client: must be an object"},
        {"{" MIN_LISTENER ",\"log\":\"info\"}", "log: must be an object"},
        {"{" MIN_LISTENER ",\"log\":{\"level\":\"INFO\"}}",
         "log.level: must be one of error, warn, info, debug"},
        {"{" MIN_LISTENER ",\"log\":{\"level\":\"trace\"}}",
         "log.level: must be one of error, warn, info, debug"},
        {"{" MIN_LISTENER ",\"log\":{\"level\":null}}",
         "log.level: must be one of error, warn, info, debug"},
        {"{" MIN_LISTENER ",\"access_log\":{\"path\":\"\"}}",
         "access_log.path: must be a non-empty string or null"},
        {"{" MIN_LISTENER ",\"access_log\":{\"path\":1}}",
         "access_log.path: must be a non-empty string or null"},
        {"{" MIN_LISTENER ",\"access_log\":\"/tmp/x\"}", "access_log: must be an object or null"},
        {"{" MIN_LISTENER ",\"admin\":\"127.0.0.1:9090\"}", "admin: must be an object or null"},
        {"{" MIN_LISTENER ",\"admin\":{\"address\":9090}}",
         "admin.address: must be a string or null"},
        {"{" MIN_LISTENER ",\"admin\":{\"address\":\"127.0.0.1\"}}",
         "admin.address: not IPv4:port or [IPv6]:port"},
        {"{" MIN_LISTENER ",\"admin\":{\"address\":\"0.0.0.0:8080\"}}",
         "admin.address: same as listeners[0]"},
        /* Domains. */
        {"{\"domains\":\"sandbox.example\"}", "domains: must be an array of strings"},
        {"{\"domains\":[1]}", "domains[0]: must be a string"},
        {"{\"domains\":[\"a\",\"\"]}", "domains[1]: \"\" is not a domain name"},
        {"{\"domains\":[\"...\"]}", "domains[0]: \"...\" is not a domain name"},
        {"{\"domains\":[\"a..b\"]}", "domains[0]: \"a..b\" is not a domain name"},
        {"{\"domains\":[\"*.e2b.app\"]}", "domains[0]: \"*.e2b.app\" is not a domain name"},
        {"{\"domains\":[\"e2b.app:443\"]}", "domains[0]: \"e2b.app:443\" is not a domain name"},
        {"{\"domains\":[\"e2b app\"]}", "domains[0]: \"e2b app\" is not a domain name"},
        /* Policy. */
        {"{" MIN_LISTENER ",\"policy\":{\"token_exempt_ports\":49983}}",
         "policy.token_exempt_ports: must be an array of ports"},
        {"{" MIN_LISTENER ",\"policy\":{\"token_exempt_ports\":[80,0]}}",
         "policy.token_exempt_ports[1]: must be an integer in 1..65535"},
        {"{" MIN_LISTENER ",\"policy\":{\"token_exempt_ports\":[65536]}}",
         "policy.token_exempt_ports[0]: must be an integer in 1..65535"},
        {"{" MIN_LISTENER ",\"policy\":{\"token_exempt_ports\":[\"80\"]}}",
         "policy.token_exempt_ports[0]: must be an integer in 1..65535"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":\"10.0.0.0/8\"}}",
         "policy.trusted_proxies: must be an array of networks"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"10.0.0.0/33\"]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"::/129\"]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"::1\","
         "\"10.0.0.0/\"]}}",
         "policy.trusted_proxies[1]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"10.0.0.0/-8\"]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"10.0.0.0/0008\"]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"localhost\"]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
        {"{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[null]}}",
         "policy.trusted_proxies[0]: not an IPv4 or IPv6 address or network"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        bad(cases[i].json, cases[i].err);
}

/* CONFIG_MAX_* are hard limits, and errors past them name the key. */
static void test_array_limits(void **state)
{
    char *json = malloc(1 << 16);
    size_t n;
    struct config cfg;

    assert_non_null(json);

    /* 16 listeners ok, 17 not. */
    for (int count = 16; count <= 17; count++) {
        n = (size_t)sprintf(json, "{\"listeners\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(json + n, "%s{\"address\":\"127.0.0.1:%d\"}", i ? "," : "",
                                 1000 + i);
        strcpy(json + n, "]}");
        if (count == 16) {
            ok(json, &cfg);
            assert_int_equal(cfg.listener_count, 16);
            config_free(&cfg);
        } else {
            bad(json, "listeners: at most 16 listeners");
        }
    }
    /* 16 certificates ok, 17 not. */
    for (int count = 16; count <= 17; count++) {
        n = (size_t)sprintf(json, "{\"listeners\":[{\"address\":\"0.0.0.0:1\","
                                  "\"tls\":{\"certificates\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(json + n, "%s{\"cert\":\"c%d\",\"key\":\"k%d\"}", i ? "," : "", i,
                                 i);
        strcpy(json + n, "]}}]}");
        if (count == 16) {
            ok(json, &cfg);
            assert_int_equal(cfg.listeners[0].cert_count, 16);
            assert_string_equal(cfg.listeners[0].certs[15].key, "k15");
            config_free(&cfg);
        } else {
            bad(json, "listeners[0].tls.certificates: at most 16 certificates");
        }
    }
    /* 64 exempt ports ok, 65 not. */
    for (int count = 64; count <= 65; count++) {
        n = (size_t)sprintf(json, "{" MIN_LISTENER ",\"policy\":"
                                  "{\"token_exempt_ports\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(json + n, "%s%d", i ? "," : "", i + 1);
        strcpy(json + n, "]}}");
        if (count == 64) {
            ok(json, &cfg);
            assert_int_equal(cfg.token_exempt_count, 64);
            assert_int_equal(cfg.token_exempt_ports[63], 64);
            config_free(&cfg);
        } else {
            bad(json, "policy.token_exempt_ports: at most 64 ports");
        }
    }
    /* 32 networks ok, 33 not. */
    for (int count = 32; count <= 33; count++) {
        n = (size_t)sprintf(json, "{" MIN_LISTENER ",\"policy\":"
                                  "{\"trusted_proxies\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(json + n, "%s\"10.%d.0.0/16\"", i ? "," : "", i);
        strcpy(json + n, "]}}");
        if (count == 32) {
            ok(json, &cfg);
            assert_int_equal(cfg.trusted_count, 32);
            config_free(&cfg);
        } else {
            bad(json, "policy.trusted_proxies: at most 32 networks");
        }
    }
    /* A failure after some strings were allocated frees them (ASan/LSan
     * would report otherwise). */
    bad("{\"domains\":[\"a.b\",\"c.d\"],\"listeners\":[{\"address\":"
        "\"0.0.0.0:1\",\"tls\":{\"certificates\":[{\"cert\":\"x\",\"key\":"
        "\"y\"}]}}],\"redis\":{\"url\":\"redis://:pw@h\",\"key_prefix\":"
        "\"k:\"},\"access_log\":{\"path\":\"/x\"},\"log\":{\"level\":\"x\"}}",
        "log.level: must be one of error, warn, info, debug");
    free(json);
}

static void test_hostile(void **state)
{
    static const char good[] = "{\"listeners\":[{\"address\":\"[::1]:8080\"}],"
                               "\"domains\":[\"sandbox.example\"]}";
    static const char nul_in_key[] = "{\"listeners\":[{\"address\":\"0.0.0.0"
                                     ":1\"}],\"x\0y\":1}";
    static const char nul_after[] = "{\"listeners\":[{\"address\":\"0.0.0.0:1"
                                    "\"}]}\0{\"workers\":5}";
    struct config cfg;
    char err[128];
    char small[8];

    /* Every prefix of a good document is an error, never a crash. */
    for (size_t n = 0; n < sizeof(good) - 1; n++) {
        assert_int_equal(parse_n(good, n, &cfg, err, sizeof(err)), -1);
        assert_freed(&cfg);
    }
    assert_int_equal(parse_n(good, sizeof(good) - 1, &cfg, err, sizeof(err)), 0);
    config_free(&cfg);

    assert_int_equal(parse_n(nul_in_key, sizeof(nul_in_key) - 1, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "not valid JSON near line 1, column 42");
    assert_int_equal(parse_n(nul_after, sizeof(nul_after) - 1, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "not valid JSON near line 1, column 40");

    /* Tiny and absent error buffers. */
    assert_int_equal(config_parse("{}", 2, &cfg, small, sizeof(small)), -1);
    assert_string_equal(small, "listene");
    assert_int_equal(config_parse("{}", 2, &cfg, NULL, 0), -1);
    assert_int_equal(config_parse(NULL, 0, &cfg, err, sizeof(err)), -1);

    /* Deep nesting and a huge string. */
    {
        size_t big = 2 << 20;
        char *buf = malloc(big + 128);

        assert_non_null(buf);
        memset(buf, '[', big);
        assert_int_equal(parse_n(buf, big, &cfg, err, sizeof(err)), -1);
        strcpy(buf, "{" MIN_LISTENER ",\"access_log\":{\"path\":\"");
        memset(buf + strlen(buf), 'p', big);
        strcpy(buf + strlen(MIN_LISTENER) + 24 + big, "\"}}");
        ok(buf, &cfg);
        assert_int_equal(strlen(cfg.access_log_path), big);
        config_free(&cfg);
        free(buf);
    }

    /* A very long unknown key is named, truncated, without overflow. */
    {
        char *buf = malloc(10000);

        assert_non_null(buf);
        strcpy(buf, "{" MIN_LISTENER ",\"client\":{\"");
        memset(buf + strlen(buf), 'k', 5000);
        strcpy(buf + strlen(MIN_LISTENER) + 13 + 5000, "\":1}}");
        assert_int_equal(parse_n(buf, strlen(buf), &cfg, err, sizeof(err)), -1);
        assert_true(strncmp(err, "unknown key \"client.kkkk", 24) == 0);
        assert_int_equal(strlen(err), sizeof(err) - 1);
        free(buf);
    }
}

static void test_parse_address(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    static const char *const nope[] = {
        "",
        ":80",
        "0.0.0.0",
        "0.0.0.0:",
        "0.0.0.0:0",
        "0.0.0.0:65536",
        "0.0.0.0:+80",
        "0.0.0.0:80 ",
        " 0.0.0.0:80",
        "localhost:80",
        "1.2.3:80",
        "::1:80",
        "[::1]",
        "[::1]80",
        "[::1]:",
        "[::1]:0",
        "[1.2.3.4]:80",
        "[]:80",
        "[::1:80",
        "::1]:80",
        "[fe80::1%lo]:80",
        "1.2.3.4:80:90",
        "[::1]:80]",
        "1.2.3.4:0x50",
    };

    assert_int_equal(config_parse_address("10.1.2.3:8080", &ss, &len), 0);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a010203);
    assert_int_equal(config_parse_address("[::ffff:10.0.0.1]:65535", &ss, &len), 0);
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(sin6->sin6_port), 65535);
    assert_int_equal(sin6->sin6_addr.s6_addr[15], 1);
    assert_int_equal(config_parse_address("[::]:1", &ss, &len), 0);
    assert_int_equal(config_parse_address("0.0.0.0:08080", &ss, &len), 0);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    for (size_t i = 0; i < sizeof(nope) / sizeof(nope[0]); i++)
        if (config_parse_address(nope[i], &ss, &len) != -1)
            fail_msg("accepted address %s", nope[i]);
    assert_int_equal(config_parse_address(NULL, &ss, &len), -1);
}

static struct sockaddr_storage sa4(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage sa6(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

#define MATCH(cfg, ss) \
    config_cidr_match((cfg).trusted_proxies, (cfg).trusted_count, (const struct sockaddr *)&(ss))

static void test_cidr_match(void **state)
{
    struct config cfg;
    struct sockaddr_storage ss;

    ok("{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":["
       "\"10.0.0.0/8\",\"192.168.1.7\",\"172.16.0.0/12\",\"fd00::/8\","
       "\"::1\",\"2001:db8::/33\",\"100.64.1.2/23\"]}}",
       &cfg);
    assert_int_equal(cfg.trusted_count, 7);
    /* Host bits cleared: 100.64.1.2/23 is 100.64.0.0/23. */
    assert_int_equal(cfg.trusted_proxies[6].addr[2], 0);
    assert_int_equal(cfg.trusted_proxies[6].addr[3], 0);

    ss = sa4("10.0.0.0");
    assert_true(MATCH(cfg, ss));
    ss = sa4("10.255.255.255");
    assert_true(MATCH(cfg, ss));
    ss = sa4("11.0.0.0");
    assert_false(MATCH(cfg, ss));
    ss = sa4("9.255.255.255");
    assert_false(MATCH(cfg, ss));
    ss = sa4("192.168.1.7");
    assert_true(MATCH(cfg, ss));
    ss = sa4("192.168.1.8");
    assert_false(MATCH(cfg, ss));
    ss = sa4("172.31.255.255");
    assert_true(MATCH(cfg, ss));
    ss = sa4("172.32.0.0");
    assert_false(MATCH(cfg, ss));
    ss = sa4("100.64.1.255");
    assert_true(MATCH(cfg, ss));
    ss = sa4("100.64.2.0");
    assert_false(MATCH(cfg, ss));
    ss = sa4("127.0.0.1");
    assert_false(MATCH(cfg, ss));
    /* IPv4-mapped IPv6 matches IPv4 networks. */
    ss = sa6("::ffff:10.1.2.3");
    assert_true(MATCH(cfg, ss));
    ss = sa6("::ffff:11.1.2.3");
    assert_false(MATCH(cfg, ss));
    ss = sa6("::ffff:192.168.1.7");
    assert_true(MATCH(cfg, ss));
    /* Not mapped: the v4 bits in other positions mean nothing. */
    ss = sa6("::10.1.2.3");
    assert_false(MATCH(cfg, ss));
    ss = sa6("64:ff9b::10.1.2.3");
    assert_false(MATCH(cfg, ss));
    ss = sa6("::1");
    assert_true(MATCH(cfg, ss));
    ss = sa6("::2");
    assert_false(MATCH(cfg, ss));
    ss = sa6("fdff:ffff::1");
    assert_true(MATCH(cfg, ss));
    ss = sa6("fe00::1");
    assert_false(MATCH(cfg, ss));
    ss = sa6("2001:db8:7fff::1");
    assert_true(MATCH(cfg, ss));
    ss = sa6("2001:db8:8000::1");
    assert_false(MATCH(cfg, ss));
    config_free(&cfg);

    /* /0 networks, an IPv4 client against a mapped IPv6 network, empty
     * list, odd families. */
    ok("{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":["
       "\"::ffff:10.0.0.0/104\"]}}",
       &cfg);
    ss = sa4("10.9.9.9");
    assert_true(MATCH(cfg, ss));
    ss = sa4("11.9.9.9");
    assert_false(MATCH(cfg, ss));
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"0.0.0.0/0\"]}}", &cfg);
    ss = sa4("203.0.113.9");
    assert_true(MATCH(cfg, ss));
    ss = sa6("::ffff:1.1.1.1");
    assert_true(MATCH(cfg, ss));
    ss = sa6("2001:db8::1");
    assert_false(MATCH(cfg, ss));
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"::/0\"]}}", &cfg);
    ss = sa6("2001:db8::1");
    assert_true(MATCH(cfg, ss));
    ss = sa4("1.2.3.4");
    assert_true(MATCH(cfg, ss));
    config_free(&cfg);
    ok("{" MIN_LISTENER "}", &cfg);
    ss = sa4("10.0.0.1");
    assert_false(MATCH(cfg, ss));
    config_free(&cfg);
    {
        struct sockaddr_storage un;

        memset(&un, 0, sizeof(un));
        un.ss_family = AF_UNIX;
        ok("{" MIN_LISTENER ",\"policy\":{\"trusted_proxies\":[\"::/0\","
           "\"0.0.0.0/0\"]}}",
           &cfg);
        assert_false(MATCH(cfg, un));
        assert_false(config_cidr_match(cfg.trusted_proxies, cfg.trusted_count, NULL));
        config_free(&cfg);
    }
}

/* An address in egress.always_deny? */
static bool always_denied(const struct config *cfg, const char *ip)
{
    struct cidr_addr a;

    assert_int_equal(cidr_addr_parse(ip, strlen(ip), &a), 0);
    return cidr_find(cfg->egress_always_deny, cfg->egress_always_deny_count, &a) >= 0;
}

/* The default cell of `key` in --print-config, backticks stripped. */
static char *shown_default(const char *key)
{
    char *text = NULL, *row, *cell, *end, want[128];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    config_print_reference(f);
    fclose(f);
    snprintf(want, sizeof(want), "| `%s` | `", key);
    row = strstr(text, want);
    assert_non_null(row);
    cell = row + strlen(want);
    end = strstr(cell, "` |");
    assert_non_null(end);
    *end = '\0';
    memmove(text, cell, strlen(cell) + 1);
    return text;
}

static void test_egress(void **state)
{
    struct config cfg, other;
    char err[256];
    char *shown;
    cJSON *arr, *it;
    size_t i = 0;

    /* The default always_deny: what --print-config (and so README and
     * conf/edgeproxy.json) shows is what the proxy holds. */
    config_defaults(&cfg);
    shown = shown_default("egress.always_deny");
    arr = cJSON_Parse(shown);
    assert_non_null(arr);
    assert_int_equal(cJSON_GetArraySize(arr), cfg.egress_always_deny_count);
    cJSON_ArrayForEach(it, arr)
    {
        struct cidr c;

        assert_int_equal(cidr_parse(it->valuestring, strlen(it->valuestring), &c), 0);
        assert_memory_equal(&c, &cfg.egress_always_deny[i], sizeof(c));
        i++;
    }
    cJSON_Delete(arr);
    free(shown);
    shown = shown_default("egress.nameservers");
    assert_string_equal(shown, "[\"8.8.8.8\"]");
    free(shown);

    /* What it covers, and what it leaves to the tests' fake internet. */
    assert_true(always_denied(&cfg, "0.0.0.0"));
    assert_true(always_denied(&cfg, "127.0.0.1"));
    assert_true(always_denied(&cfg, "10.200.0.1"));
    assert_true(always_denied(&cfg, "172.31.255.255"));
    assert_true(always_denied(&cfg, "192.168.1.1"));
    assert_true(always_denied(&cfg, "100.100.100.100"));
    assert_true(always_denied(&cfg, "169.254.169.254"));
    assert_true(always_denied(&cfg, "224.0.0.1"));
    assert_true(always_denied(&cfg, "255.255.255.255"));
    assert_true(always_denied(&cfg, "198.19.0.1"));
    assert_true(always_denied(&cfg, "::"));
    assert_true(always_denied(&cfg, "::1"));
    assert_true(always_denied(&cfg, "fd12::1"));
    assert_true(always_denied(&cfg, "fe80::1"));
    assert_true(always_denied(&cfg, "ff02::1"));
    assert_true(always_denied(&cfg, "64:ff9b::a00:1"));
    assert_true(always_denied(&cfg, "2002:a00:1::1"));
    assert_true(always_denied(&cfg, "::ffff:10.0.0.1"));
    assert_true(always_denied(&cfg, "::ffff:169.254.169.254"));
    assert_false(always_denied(&cfg, "192.0.2.1"));
    assert_false(always_denied(&cfg, "198.51.100.1"));
    assert_false(always_denied(&cfg, "203.0.113.1"));
    assert_false(always_denied(&cfg, "2001:db8::1"));
    assert_false(always_denied(&cfg, "8.8.8.8"));
    assert_false(always_denied(&cfg, "2606:4700::1111"));
    assert_false(always_denied(&cfg, "::ffff:1.1.1.1"));

    /* Everything set; sections nest two deep. */
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"[::]:15080\","
       "\"tls\":\"[::]:15443\",\"tcp\":\"0.0.0.0:15000\"},"
       "\"nameservers\":[\"192.0.2.53\",\"2001:db8::53\",\"::ffff:198.51.100.53\"],"
       "\"always_deny\":[\"10.0.0.0/8\",\"::ffff:172.16.0.0/108\"]}}",
       &cfg);
    assert_string_equal(cfg.egress_http.address, "[::]:15080");
    assert_int_equal(cfg.egress_http.addr.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg.egress_http.addr)->sin6_port), 15080);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg.egress_tls.addr)->sin6_port), 15443);
    assert_int_equal(cfg.egress_tcp.addr.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.egress_tcp.addr)->sin_port), 15000);
    assert_int_equal(cfg.egress_nameserver_count, 3);
    assert_int_equal(cfg.egress_nameservers[1].family, AF_INET6);
    assert_int_equal(cfg.egress_nameservers[1].prefix, 128);
    assert_int_equal(cfg.egress_nameservers[2].family, AF_INET);
    assert_int_equal(cfg.egress_always_deny_count, 2);
    assert_int_equal(cfg.egress_always_deny[1].family, AF_INET);
    assert_int_equal(cfg.egress_always_deny[1].prefix, 12);
    assert_false(always_denied(&cfg, "127.0.0.1"));

    /* SIGHUP: listeners and nameservers need a restart, always_deny not. */
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"[::]:15080\","
       "\"tls\":\"[::]:15443\",\"tcp\":\"0.0.0.0:15000\"},"
       "\"nameservers\":[\"192.0.2.53\",\"2001:db8::53\",\"198.51.100.53\"],"
       "\"always_deny\":[]}}",
       &other);
    assert_int_equal(other.egress_always_deny_count, 0);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), 0);
    config_free(&other);
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"[::]:15080\","
       "\"tls\":\"[::]:15443\",\"tcp\":\"0.0.0.0:15001\"},"
       "\"nameservers\":[\"192.0.2.53\",\"2001:db8::53\",\"198.51.100.53\"]}}",
       &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    assert_string_equal(err, "egress.listeners.tcp: egress listeners need a restart");
    config_free(&other);
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"[::]:15080\","
       "\"tls\":\"[::]:15443\",\"tcp\":\"0.0.0.0:15000\"},"
       "\"nameservers\":[\"192.0.2.53\"]}}",
       &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    assert_string_equal(err, "egress.nameservers: changing the nameservers needs a restart");
    config_free(&other);
    config_free(&cfg);

    /* egress.interception: redirect or tproxy, a restart to change; the
     * mark only shapes the generated rules, a SIGHUP takes it. */
    ok("{" MIN_LISTENER ",\"egress\":{\"interception\":\"tproxy\",\"tproxy_mark\":4096}}", &cfg);
    assert_int_equal(cfg.egress_interception, CONFIG_EGRESS_TPROXY);
    assert_int_equal(cfg.egress_tproxy_mark, 4096);
    ok("{" MIN_LISTENER ",\"egress\":{\"interception\":\"tproxy\"}}", &other);
    assert_int_equal(other.egress_tproxy_mark, 1);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), 0);
    config_free(&other);
    ok("{" MIN_LISTENER ",\"egress\":{\"tproxy_mark\":4096}}", &other);
    assert_int_equal(config_reload_check(&cfg, &other, err, sizeof(err)), -1);
    assert_string_equal(err, "egress.interception: changing the interception needs a restart");
    config_free(&other);
    config_free(&cfg);
    bad("{" MIN_LISTENER ",\"egress\":{\"interception\":\"nat\"}}",
        "egress.interception: must be one of redirect, tproxy");
    bad("{" MIN_LISTENER ",\"egress\":{\"tproxy_mark\":0}}",
        "egress.tproxy_mark: must be an integer in 1..2147483647");

    /* null listeners: none, one by one or the whole object. */
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":null}}", &cfg);
    assert_null(cfg.egress_http.address);
    assert_null(cfg.egress_tcp.address);
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"tls\":\"[::]:15443\",\"http\":null}}}",
       &cfg);
    assert_null(cfg.egress_http.address);
    assert_non_null(cfg.egress_tls.address);
    assert_null(cfg.egress_tcp.address);
    assert_int_equal(cfg.egress_nameserver_count, 1);
    assert_int_equal(cfg.egress_always_deny_count, 21);
    config_free(&cfg);
    ok("{" MIN_LISTENER ",\"egress\":{}}", &cfg);
    config_free(&cfg);

    /* Errors name the key. */
    bad("{" MIN_LISTENER ",\"egress\":null}", "egress: must be an object");
    bad("{" MIN_LISTENER ",\"egress\":{\"listener\":{}}}", "unknown key \"egress.listener\"");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"htp\":\"[::]:1\"}}}",
        "unknown key \"egress.listeners.htp\"");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"tls\":\"[::]:1\",\"tls\":\"[::]:2\"}}}",
        "duplicate key \"egress.listeners.tls\"");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":[]}}",
        "egress.listeners: must be an object or null");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":15080}}}",
        "egress.listeners.http: must be a non-empty string or null");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"tcp\":\"15000\"}}}",
        "egress.listeners.tcp: not IPv4:port or [IPv6]:port");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"tcp\":\"[::]:0\"}}}",
        "egress.listeners.tcp: not IPv4:port or [IPv6]:port");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"0.0.0.0:8080\"}}}",
        "egress.listeners.http: same as listeners[0]");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"tls\":\"127.0.0.1:9090\"}}}",
        "egress.listeners.tls: same as admin.address");
    bad("{" MIN_LISTENER ",\"egress\":{\"listeners\":{\"http\":\"[::]:15000\","
        "\"tcp\":\"[::]:15000\"}}}",
        "egress.listeners.tcp: same as egress.listeners.http");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":\"8.8.8.8\"}}",
        "egress.nameservers: must be an array of addresses");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":[]}}",
        "egress.nameservers: at least one address is required");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":[\"8.8.8.8\",\"dns.google\"]}}",
        "egress.nameservers[1]: not an IPv4 or IPv6 address");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":[\"8.8.8.0/24\"]}}",
        "egress.nameservers[0]: not an IPv4 or IPv6 address");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":[\"8.8.8.8:53\"]}}",
        "egress.nameservers[0]: not an IPv4 or IPv6 address");
    bad("{" MIN_LISTENER ",\"egress\":{\"nameservers\":[\"1.1.1.1\",\"1.1.1.2\",\"1.1.1.3\","
        "\"1.1.1.4\",\"1.1.1.5\",\"1.1.1.6\",\"1.1.1.7\",\"1.1.1.8\",\"1.1.1.9\"]}}",
        "egress.nameservers: at most 8 addresses");
    bad("{" MIN_LISTENER ",\"egress\":{\"always_deny\":\"10.0.0.0/8\"}}",
        "egress.always_deny: must be an array of networks");
    bad("{" MIN_LISTENER ",\"egress\":{\"always_deny\":[\"10.0.0.0/8\",\"metadata.google\"]}}",
        "egress.always_deny[1]: not an IPv4 or IPv6 address or network");
    bad("{" MIN_LISTENER ",\"egress\":{\"always_deny\":[null]}}",
        "egress.always_deny[0]: not an IPv4 or IPv6 address or network");
}

static void test_load_file(void **state)
{
    struct config cfg;
    char err[512], path[] = "/tmp/edgeproxy-test-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;

    assert_true(fd != -1);
    close(fd);

    assert_int_equal(config_load_file("/nonexistent/edgeproxy.json", &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/edgeproxy.json: No such file or directory");
    assert_freed(&cfg);
    assert_int_equal(config_load_file("/tmp", &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: Is a directory");

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\"workers\":2}\n", f);
    fclose(f);
    assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.workers, 2);
    config_free(&cfg);

    /* Exactly the 1 MiB limit parses (whitespace padding); one more byte
     * does not. */
    f = fopen(path, "w");
    assert_non_null(f);
    {
        const char *doc = "{\"listeners\":[{\"address\":\"127.0.0.1:1\"}]}";

        fputs(doc, f);
        for (size_t i = strlen(doc); i < (1u << 20); i++)
            fputc(' ', f);
    }
    fclose(f);
    assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), 0);
    config_free(&cfg);
    f = fopen(path, "a");
    fputc(' ', f);
    fclose(f);
    assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), -1);
    assert_true(strstr(err, ": larger than 1048576 bytes") != NULL);

    /* Parse errors come through unchanged. */
    f = fopen(path, "w");
    fputs("{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\"wrokers\":2}", f);
    fclose(f);
    assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown key \"wrokers\"");
    unlink(path);
}

/* client.max_connections 0: half of what the reserve leaves, 1 at least,
 * the key's maximum at most (RLIM_INFINITY is all ones). */
static void test_derived_max_connections(void **state)
{
    /* 64 + 2 * (1 + 8) = 82 reserved: (1024 - 82) / 2 = 471 (README);
     * 64 + 16 * (2 + 8) = 224: (1048576 - 224) / 2 = 524176. */
    assert_int_equal(config_derived_max_connections(1024, 2, 1), 471);
    assert_int_equal(config_derived_max_connections(1048576, 16, 2), 524176);
    assert_int_equal(config_derived_max_connections(84, 2, 1), 1);
    assert_int_equal(config_derived_max_connections(64, 2, 1), 1);
    assert_int_equal(config_derived_max_connections(0, 1, 1), 1);
    assert_int_equal(config_derived_max_connections(~0ULL, 1024, 16), CONFIG_MAX_CONNECTIONS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_everything_set),
        cmocka_unit_test(test_admin_off_and_nulls),
        cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_sentinels),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_array_limits),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_egress),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_derived_max_connections),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
