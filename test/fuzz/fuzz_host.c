/* libFuzzer: host_parse (common/host.c) against three domain lists, plus the
 * port and sandbox-id helpers on the same bytes. Invariants: a HOST_OK result
 * has a port in 1..65535 and a [a-z0-9]{1,63} id; every negative status has a
 * message. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "host.h"

static char *one_domain[] = {"sandbox.example"};
static char *multi_domain[] = {"e2b.app", "sandbox.example.com", "a.b"};
static const struct domain_list lists[] = {{NULL, 0}, {one_domain, 1}, {multi_domain, 3}};

static void check(int rc, const struct host_target *t)
{
    if (rc == HOST_OK) {
        assert(t->port >= 1);
        assert(t->id_len >= 1 && t->id_len <= HOST_ID_MAX);
        assert(strlen(t->sandbox_id) == t->id_len);
        for (size_t i = 0; i < t->id_len; i++) {
            char c = t->sandbox_id[i];
            assert((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
        }
    } else if (rc < 0) {
        const char *m = host_status_message(rc);
        assert(m != NULL && m[0] != '\0');
    } else {
        assert(rc == HOST_NEEDS_HEADERS);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct host_target t;
    uint16_t port;

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        memset(&t, 0x5a, sizeof(t));
        check(host_parse(s, size, &lists[i], &t), &t);
    }
    if (host_parse_port(s, size, &port) == 0)
        assert(port >= 1);
    memset(&t, 0x5a, sizeof(t));
    if (host_parse_sandbox_id(s, size, &t) == 0) {
        assert(t.id_len == size && strlen(t.sandbox_id) == size);
    }
    return 0;
}
