/* admin/: operating the daemon. The admin listener on the main thread
 * (/healthz, /readyz, /metrics), the per-worker counters and their
 * Prometheus rendering (metrics.c: a table of families, summed over workers
 * when read), and the stderr log (log.c, level switchable at runtime).
 * admin/ reads the workers' state (core/worker.h, the Redis link's
 * readiness) but is called by every layer for logging and counting, so it
 * calls back into no request path. */
#ifndef EDGEPROXY_ADMIN_H
#define EDGEPROXY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct worker;
struct config;

struct admin;

/* Borrows workers for the process's life. NULL with err on bind failure. */
struct admin *admin_start(struct event_base *base, const struct config *cfg, struct worker *workers,
                          int nworkers, char *err, size_t errlen);
void admin_set_draining(struct admin *a);
/* After a reload (the admin address itself cannot change). */
void admin_set_config(struct admin *a, const struct config *cfg);
void admin_free(struct admin *a);

#endif
