/* runtime_compatible: what a SIGHUP may change and the message naming what
 * it may not (README, Signals). Each case parses two configs and compares
 * their generations the way reload() in main.c does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime.h"

#define L1 "{\"address\":\"127.0.0.1:8080\"}"
#define L2 "{\"address\":\"127.0.0.1:8081\"}"

static void parse(const char *json, struct runtime *rt)
{
    char err[256] = "";

    memset(rt, 0, sizeof(*rt));
    if (config_parse(json, strlen(json), &rt->cfg, err, sizeof(err)) != 0)
        fail_msg("%s: %s", json, err);
}

/* want NULL: the reload is allowed. */
static void reload(const char *from, const char *to, const char *want)
{
    struct runtime a, b;
    char err[256] = "";
    int rc;

    parse(from, &a);
    parse(to, &b);
    rc = runtime_compatible(&a, &b, err, sizeof(err));
    if (want == NULL && rc != 0)
        fail_msg("%s -> %s refused: %s", from, to, err);
    if (want != NULL && (rc != -1 || strcmp(err, want) != 0))
        fail_msg("%s -> %s\n  got  %d %s\n  want %s", from, to, rc, err, want);
    config_free(&a.cfg);
    config_free(&b.cfg);
}

static void test_restart_keys(void **state)
{
    reload("{\"listeners\":[" L1 "]}", "{\"listeners\":[" L1 "],\"workers\":2}",
           "workers: changing the worker count needs a restart");
    reload("{\"listeners\":[" L1 "]}", "{\"listeners\":[" L1 "," L2 "]}",
           "listeners: adding or removing listeners needs a restart");
    reload("{\"listeners\":[" L1 "," L2 "]}",
           "{\"listeners\":[" L1 ",{\"address\":\"127.0.0.1:8082\"}]}",
           "listeners[1]: address, tls on/off and proxy_protocol need a "
           "restart");
    reload("{\"listeners\":[" L1 "," L2 "]}",
           "{\"listeners\":[" L1 ",{\"address\":\"127.0.0.1:8081\","
           "\"proxy_protocol\":true}]}",
           "listeners[1]: address, tls on/off and proxy_protocol need a "
           "restart");
    reload("{\"listeners\":[" L1 "]}",
           "{\"listeners\":[{\"address\":\"127.0.0.1:8080\",\"tls\":"
           "{\"certificates\":[{\"cert\":\"c\",\"key\":\"k\"}]}}]}",
           "listeners[0]: address, tls on/off and proxy_protocol need a "
           "restart");
    /* The first listener that differs is named, whatever differs in it. */
    reload("{\"listeners\":[" L1 "," L2 "]}",
           "{\"listeners\":[{\"address\":\"127.0.0.1:8080\","
           "\"proxy_protocol\":true},{\"address\":\"127.0.0.1:8083\"}]}",
           "listeners[0]: address, tls on/off and proxy_protocol need a "
           "restart");
    reload("{\"listeners\":[" L1 "]}",
           "{\"listeners\":[" L1 "],\"admin\":{\"address\":\"127.0.0.1:9091\"}}",
           "admin.address: changing it needs a restart");
    reload("{\"listeners\":[" L1 "]}", "{\"listeners\":[" L1 "],\"admin\":null}",
           "admin.address: changing it needs a restart");
    reload("{\"listeners\":[" L1 "],\"admin\":null}",
           "{\"listeners\":[" L1 "],\"admin\":{\"address\":null}}", NULL);
    /* workers is checked first. */
    reload("{\"listeners\":[" L1 "]}", "{\"workers\":3,\"listeners\":[" L2 "],\"admin\":null}",
           "workers: changing the worker count needs a restart");
}

static void test_reloadable(void **state)
{
    /* The same address spelled differently is the same socket. */
    reload("{\"listeners\":[" L1 "]}",
           "{\"listeners\":[{\"address\":\"127.0.0.1:08080\"}],"
           "\"admin\":{\"address\":\"127.0.0.1:09090\"}}",
           NULL);
    reload("{\"listeners\":[" L1 "]}",
           "{\"listeners\":[" L1 "],\"domains\":[\"a.b\"],"
           "\"redis\":{\"url\":\"redis://h:1/2\",\"key_prefix\":\"x:\"},"
           "\"cache\":{\"ttl_ms\":5,\"max_entries\":16},"
           "\"client\":{\"max_headers\":5},\"upstream\":{\"pool_max_idle\":0},"
           "\"drain\":{\"delay_ms\":7},\"log\":{\"level\":\"debug\"},"
           "\"access_log\":{\"path\":\"/tmp/x\"},"
           "\"policy\":{\"token_exempt_ports\":[],"
           "\"trusted_proxies\":[\"::1\"]}}",
           NULL);
    /* Certificate files reload; only TLS on/off needs a restart. */
    reload("{\"listeners\":[{\"address\":\"127.0.0.1:8080\",\"tls\":"
           "{\"certificates\":[{\"cert\":\"c\",\"key\":\"k\"}]}}]}",
           "{\"listeners\":[{\"address\":\"127.0.0.1:8080\",\"tls\":"
           "{\"certificates\":[{\"cert\":\"c2\",\"key\":\"k2\"},"
           "{\"cert\":\"c3\",\"key\":\"k3\"}]}}]}",
           NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_keys),
        cmocka_unit_test(test_reloadable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
