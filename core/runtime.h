/* One generation of configuration: the parsed config plus what is built
 * from it (TLS contexts). Workers point at one generation; SIGHUP builds the
 * next, hands it to every worker, and frees the old one once no worker and
 * no handshake in progress can still use it. */
#ifndef EDGEPROXY_RUNTIME_H
#define EDGEPROXY_RUNTIME_H

#include <stddef.h>

#include "config.h"

struct tls_ctx;

struct runtime {
    struct config cfg;
    struct tls_ctx *tls[CONFIG_MAX_LISTENERS]; /* NULL for plain listeners */
    int access_log_fd;                         /* -1 when off */
    unsigned generation;
};

/* Loads and validates the file, certificates included. NULL with err naming
 * the key or file on failure. */
struct runtime *runtime_load(const char *path, unsigned generation, char *err, size_t errlen);
void runtime_free(struct runtime *rt);

/* What a reload cannot change without a restart: the keys config.c marks
 * restart-only (the worker count, the listeners' addresses, TLS on/off and
 * PROXY protocol, the admin address). 0 ok, -1 with err. */
int runtime_compatible(const struct runtime *cur, const struct runtime *next, char *err,
                       size_t errlen);

#endif
