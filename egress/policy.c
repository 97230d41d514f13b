/* The egress policy record type (policy.h). */
#include "policy.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#include "conn_limit.h"
#include "errf.h"

/* Process-wide, so that no two parses share a serial whatever the worker. */
static uint64_t next_serial;

struct egress_rec *egress_rec_ref(struct egress_rec *r)
{
    if (r)
        r->refs++;
    return r;
}

void egress_rec_unref(struct egress_rec *r)
{
    if (!r || --r->refs > 0)
        return;
    egress_policy_free(r->p);
    limits_unref(r->limit);
    free(r);
}

static int desc_parse(const char *id, const char *bytes, size_t len, void **value, char *err,
                      size_t errlen)
{
    struct egress_policy *p;
    if (egress_policy_parse(bytes, len, &p, err, errlen) == -1)
        return CACHE_BROKEN;
    struct egress_rec *r = calloc(1, sizeof(*r));
    if (!r) {
        egress_policy_free(p);
        return -1;
    }
    r->refs = 1;
    r->serial = __atomic_add_fetch(&next_serial, 1, __ATOMIC_RELAXED);
    r->p = p;
    if (p->max_connections > 0) {
        char key[sizeof("egress:") + INET6_ADDRSTRLEN];
        snprintf(key, sizeof(key), "egress:%s", id);
        if (!(r->limit = limits_ref(key))) {
            egress_rec_unref(r);
            return -1;
        }
    }
    *value = r;
    return CACHE_FOUND;
}

static void *desc_ref(void *value)
{
    return egress_rec_ref(value);
}

static void desc_unref(void *value)
{
    egress_rec_unref(value);
}

const struct cache_desc egress_rec_desc = {
    .name = "egress policy of",
    .ns = "egress:",
    .id_max = INET6_ADDRSTRLEN - 1,
    .parse = desc_parse,
    .ref = desc_ref,
    .unref = desc_unref,
};
