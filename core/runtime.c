#include "runtime.h"

#include <stdlib.h>

#include "access_log.h"
#include "errf.h"
#include "tls.h"
#include <unistd.h>

struct runtime *runtime_load(const char *path, unsigned generation, char *err, size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    rt->generation = generation;
    rt->access_log_fd = -1;
    if (config_load_file(path, &rt->cfg, err, errlen) == -1) {
        free(rt);
        return NULL;
    }
    if (rt->cfg.access_log_path) {
        rt->access_log_fd = access_log_open(rt->cfg.access_log_path, err, errlen);
        if (rt->access_log_fd == -1) {
            runtime_free(rt);
            return NULL;
        }
    }
    for (size_t i = 0; i < rt->cfg.listener_count; i++) {
        if (!rt->cfg.listeners[i].tls)
            continue;
        rt->tls[i] = tls_ctx_new(&rt->cfg.listeners[i], i, err, errlen);
        if (!rt->tls[i]) {
            runtime_free(rt);
            return NULL;
        }
    }
    return rt;
}

void runtime_free(struct runtime *rt)
{
    if (!rt)
        return;
    for (size_t i = 0; i < CONFIG_MAX_LISTENERS; i++)
        tls_ctx_unref(rt->tls[i]);
    if (rt->access_log_fd != -1)
        close(rt->access_log_fd);
    config_free(&rt->cfg);
    free(rt);
}

int runtime_compatible(const struct runtime *cur, const struct runtime *next, char *err,
                       size_t errlen)
{
    return config_reload_check(&cur->cfg, &next->cfg, err, errlen);
}
