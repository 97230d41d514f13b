/* Per-worker counters. Each worker is the only writer of its own struct, so
 * increments are plain relaxed load+store (no lock prefix on the hot path);
 * /metrics sums all workers with relaxed loads. */
#ifndef EDGEPROXY_METRICS_H
#define EDGEPROXY_METRICS_H

#include <stdint.h>

#include "egress_policy.h"

#define METRICS_DURATION_BUCKETS 12
/* Egress listener kinds: http, tls, tcp (egress/flow.h's enum egress_kind). */
#define METRICS_EGRESS_KINDS 3

/* How an exchange ended. */
enum outcome {
    OUTCOME_ABORTED = 0,  /* no complete response: client left, upstream cut */
    OUTCOME_UPSTREAM = 1, /* the sandbox answered */
    OUTCOME_PROXY = 2,    /* the proxy answered itself (SPEC section 6) */
    OUTCOME_COUNT = 3,
};

struct metrics {
    uint64_t requests_by_class[6]; /* [1]..[5] = 1xx..5xx, [0] other */
    uint64_t requests_by_outcome[OUTCOME_COUNT];
    uint64_t duration_buckets[METRICS_DURATION_BUCKETS];
    uint64_t duration_count;
    uint64_t duration_sum_us;
    int64_t client_connections;   /* gauge */
    int64_t upstream_connections; /* gauge */
    uint64_t cache_hits;
    uint64_t cache_misses;
    int64_t cache_entries; /* gauge */
    uint64_t cache_evictions;
    uint64_t cache_full;       /* new ids refused: all entries in flight */
    uint64_t route_lookups[6]; /* by enum cache_outcome (redis/cache.h) */
    uint64_t redis_errors;
    uint64_t redis_reconnects;
    uint64_t redis_replica_reads; /* GETs sent to a replica (master away) */
    int64_t redis_circuit;        /* the data connection's enum redis_circuit */
    uint64_t upstream_connect_errors;
    uint64_t upstream_pool_reuses;
    uint64_t upstream_retries;
    uint64_t rejected_by_proxy; /* proxy-made error responses */
    uint64_t tls_handshake_failures;
    uint64_t accept_pauses[2];        /* [0] out of descriptors, [1] at
                                         client.max_connections */
    uint64_t requests_by_protocol[2]; /* [0] HTTP/1.x, [1] HTTP/2 */
    int64_t http2_connections;        /* gauge: client connections on HTTP/2 */
    uint64_t http2_resets[2];         /* RST_STREAM [0] from clients, [1] by the proxy */
    uint64_t http2_abuse_closes;      /* connections closed by an abuse limit */
    int64_t tunnels[2];               /* gauge: [0] HTTP/1.x connections after a 101, [1] HTTP/2
                           streams after an extended CONNECT's 200 (RFC 8441) */
    /* egress (SPEC section 9) */
    uint64_t egress_decisions[METRICS_EGRESS_KINDS][EGRESS_BY_COUNT]; /* [kind][rule kind] */
    int64_t egress_connections; /* gauge: open egress TLS/TCP connections */
    uint64_t egress_revoked;    /* open flows a new policy closed */
    uint64_t egress_cache_hits;
    uint64_t egress_cache_misses;
    int64_t egress_cache_entries; /* gauge */
    uint64_t egress_ech;          /* ClientHellos offering ECH */
    uint64_t egress_dns[3];       /* names answered from the resolver cache, asked, failed */
};

extern const double metrics_duration_bounds[METRICS_DURATION_BUCKETS];

/* What belongs to the process rather than to a worker (written with
 * atomics by whoever owns it, read by /metrics). */
struct process_metrics {
    uint64_t redis_master_switches; /* the Sentinel watcher adopted another master */
    int64_t limit_instances;        /* live instances at the last global sync */
    uint64_t limit_syncs;           /* global maxConnections syncs that succeeded */
};
extern struct process_metrics process_metrics;

/* Adds n to the counter at p: one writer (its worker), so a relaxed load
 * and store; /metrics reads it with a relaxed load. */
#define METRIC_ADD_AT(p, n) \
    __atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define METRIC_ADD(m, field, n) METRIC_ADD_AT(&(m)->field, n)
#define METRIC_INC(m, field) METRIC_ADD(m, field, 1)
#define METRIC_DEC(m, field) METRIC_ADD(m, field, -1)

void metrics_observe_request(struct metrics *m, int status, uint64_t dur_us);
void metrics_observe_outcome(struct metrics *m, enum outcome outcome);

struct evbuffer;
/* Appends the Prometheus text exposition of the sum of `n` workers. */
void metrics_render(struct evbuffer *out, struct metrics *const *all, int n);

#endif
