#include "route_rec.h"

#include <stdlib.h>

#include "conn_limit.h"
#include "errf.h"
#include "host.h"

struct route_rec *route_rec_new(int status)
{
    struct route_rec *rr = calloc(1, sizeof(*rr));
    if (rr) {
        rr->refs = 1;
        rr->status = status;
        rr->mask_len = -1;
    }
    return rr;
}

struct route_rec *route_rec_parse(const char *id, const char *json, size_t len)
{
    struct route_rec *rr = route_rec_new(LOOKUP_FOUND);
    if (!rr)
        return NULL;
    if (record_parse(json, len, &rr->rec, rr->message, sizeof(rr->message)) == -1)
        rr->status = LOOKUP_BROKEN;
    else if (rr->rec->max_connections > 0)
        rr->limit = limits_ref(id);
    return rr;
}

struct route_rec *route_rec_ref(struct route_rec *rr)
{
    if (rr)
        rr->refs++;
    return rr;
}

void route_rec_unref(struct route_rec *rr)
{
    if (!rr || --rr->refs > 0)
        return;
    record_free(rr->rec);
    limits_unref(rr->limit);
    free(rr);
}

const char *route_rec_masked_host(struct route_rec *rr, uint16_t port, int *len)
{
    if (!rr->rec || !rr->rec->mask_host)
        return NULL;
    if (rr->mask_len < 0 || rr->mask_port != port) {
        rr->mask_len = record_mask_host(rr->rec, port, rr->mask, sizeof(rr->mask));
        rr->mask_port = port;
    }
    *len = rr->mask_len;
    return rr->mask_len > 0 ? rr->mask : NULL;
}

/* ---- the cache's view (route_rec_desc) ---- */

static int desc_parse(const char *id, const char *bytes, size_t len, void **value, char *err,
                      size_t errlen)
{
    struct route_rec *rr = route_rec_parse(id, bytes, len);
    if (!rr)
        return -1;
    if (rr->status == LOOKUP_BROKEN) {
        errf(err, errlen, "%s", rr->message);
        route_rec_unref(rr);
        return CACHE_BROKEN;
    }
    *value = rr;
    return CACHE_FOUND;
}

static void *desc_ref(void *value)
{
    return route_rec_ref(value);
}

static void desc_unref(void *value)
{
    route_rec_unref(value);
}

const struct cache_desc route_rec_desc = {
    .name = "sandbox",
    .ns = "",
    .id_max = HOST_ID_MAX,
    .parse = desc_parse,
    .ref = desc_ref,
    .unref = desc_unref,
};
