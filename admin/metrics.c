#include "metrics.h"

#include <event2/buffer.h>
#include <string.h>

struct process_metrics process_metrics;

const double metrics_duration_bounds[METRICS_DURATION_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

void metrics_observe_request(struct metrics *m, int status, uint64_t dur_us)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 0;
    METRIC_INC(m, requests_by_class[cls]);
    double secs = (double)dur_us / 1e6;
    for (int i = 0; i < METRICS_DURATION_BUCKETS; i++)
        if (secs <= metrics_duration_bounds[i]) {
            METRIC_INC(m, duration_buckets[i]);
            break;
        }
    METRIC_INC(m, duration_count);
    METRIC_ADD(m, duration_sum_us, dur_us);
}

void metrics_observe_outcome(struct metrics *m, enum outcome outcome)
{
    METRIC_INC(m, requests_by_outcome[outcome]);
}

static uint64_t sum_u64(struct metrics *const *all, int n, size_t offset)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const uint64_t *f = (const uint64_t *)((const char *)all[i] + offset);
        total += __atomic_load_n(f, __ATOMIC_RELAXED);
    }
    return total;
}

#define SUM(field) sum_u64(all, n, offsetof(struct metrics, field))

static void counter(struct evbuffer *out, const char *name, const char *help, const char *type,
                    uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                        (unsigned long long)v);
}

/* The single-sample families, in the order /metrics prints them. */
static const struct metric_family {
    const char *name, *help, *type;
    size_t offset; /* of the per-worker field summed */
} families[] = {
    {"edgeproxy_client_connections", "Open client connections.", "gauge",
     offsetof(struct metrics, client_connections)},
    {"edgeproxy_upstream_connections", "Open upstream connections, pooled ones included.", "gauge",
     offsetof(struct metrics, upstream_connections)},
    {"edgeproxy_route_cache_hits_total", "Route lookups answered from the worker cache.", "counter",
     offsetof(struct metrics, cache_hits)},
    {"edgeproxy_route_cache_misses_total", "Route lookups that needed Redis.", "counter",
     offsetof(struct metrics, cache_misses)},
    {"edgeproxy_route_cache_entries",
     "Sandbox ids in the route caches (cache.max_entries per worker).", "gauge",
     offsetof(struct metrics, cache_entries)},
    {"edgeproxy_route_cache_evictions_total",
     "Route cache entries dropped to make room for a new sandbox id.", "counter",
     offsetof(struct metrics, cache_evictions)},
    {"edgeproxy_route_cache_full_total",
     "New sandbox ids answered 503 because every cache entry was waiting on Redis.", "counter",
     offsetof(struct metrics, cache_full)},
    {"edgeproxy_redis_errors_total", "Redis errors, timeouts and disconnects.", "counter",
     offsetof(struct metrics, redis_errors)},
    {"edgeproxy_redis_reconnects_total", "Redis (re)connections established.", "counter",
     offsetof(struct metrics, redis_reconnects)},
    {"edgeproxy_redis_replica_reads_total",
     "GETs sent to a replica while the master was away (Sentinel mode).", "counter",
     offsetof(struct metrics, redis_replica_reads)},
    {"edgeproxy_upstream_connect_errors_total",
     "Upstream connects that failed (each retry counts).", "counter",
     offsetof(struct metrics, upstream_connect_errors)},
    {"edgeproxy_upstream_pool_reuses_total", "Requests sent on a pooled upstream connection.",
     "counter", offsetof(struct metrics, upstream_pool_reuses)},
    {"edgeproxy_upstream_retries_total",
     "Upstream connects retried after a refusal or a stale pooled connection.", "counter",
     offsetof(struct metrics, upstream_retries)},
    {"edgeproxy_tls_handshake_failures_total", "TLS handshakes that failed.", "counter",
     offsetof(struct metrics, tls_handshake_failures)},
    {"edgeproxy_proxy_replies_total", "Responses made by the proxy itself (errors).", "counter",
     offsetof(struct metrics, rejected_by_proxy)},
    {"edgeproxy_http2_connections",
     "Open client connections speaking HTTP/2 (part of edgeproxy_client_connections).", "gauge",
     offsetof(struct metrics, http2_connections)},
    {"edgeproxy_http2_abuse_closes_total",
     "HTTP/2 connections closed by an abuse limit (reset budget, flood, header bomb).", "counter",
     offsetof(struct metrics, http2_abuse_closes)},
    {"edgeproxy_egress_connections", "Open egress TLS and TCP connections.", "gauge",
     offsetof(struct metrics, egress_connections)},
    {"edgeproxy_egress_revoked_total",
     "Open egress connections or requests closed because a new policy refuses them.", "counter",
     offsetof(struct metrics, egress_revoked)},
    {"edgeproxy_egress_policy_cache_hits_total",
     "Egress policy lookups answered from the worker cache.", "counter",
     offsetof(struct metrics, egress_cache_hits)},
    {"edgeproxy_egress_policy_cache_misses_total", "Egress policy lookups that needed Redis.",
     "counter", offsetof(struct metrics, egress_cache_misses)},
    {"edgeproxy_egress_policy_cache_entries", "Source addresses in the egress policy caches.",
     "gauge", offsetof(struct metrics, egress_cache_entries)},
    {"edgeproxy_egress_ech_total", "Egress ClientHellos offering ECH (decided by the outer SNI).",
     "counter", offsetof(struct metrics, egress_ech)},
    {"edgeproxy_egress_dns_cache_hits_total",
     "Names a domain rule matched, answered from the egress resolver cache.", "counter",
     offsetof(struct metrics, egress_dns[0])},
    {"edgeproxy_egress_dns_queries_total",
     "Names sent to egress.nameservers (A and AAAA together).", "counter",
     offsetof(struct metrics, egress_dns[1])},
    {"edgeproxy_egress_dns_failures_total", "Names that resolved to no address.", "counter",
     offsetof(struct metrics, egress_dns[2])},
};

void metrics_render(struct evbuffer *out, struct metrics *const *all, int n)
{
    static const char *const classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    evbuffer_add_printf(out, "# HELP edgeproxy_requests_total Requests "
                             "answered, by status class.\n"
                             "# TYPE edgeproxy_requests_total counter\n");
    for (int c = 1; c <= 6; c++) {
        int idx = c % 6;
        evbuffer_add_printf(out, "edgeproxy_requests_total{class=\"%s\"} %llu\n", classes[idx],
                            (unsigned long long)SUM(requests_by_class[idx]));
    }
    static const char *const outcomes[OUTCOME_COUNT] = {"aborted", "upstream", "proxy"};
    evbuffer_add_printf(out, "# HELP edgeproxy_requests_by_outcome_total Requests by who "
                             "answered: the sandbox, the proxy itself, or nobody (aborted).\n"
                             "# TYPE edgeproxy_requests_by_outcome_total counter\n");
    for (int o = 0; o < OUTCOME_COUNT; o++)
        evbuffer_add_printf(out, "edgeproxy_requests_by_outcome_total{outcome=\"%s\"} %llu\n",
                            outcomes[o], (unsigned long long)SUM(requests_by_outcome[o]));
    evbuffer_add_printf(out, "# HELP edgeproxy_request_duration_seconds Time from "
                             "request head to end of response.\n"
                             "# TYPE edgeproxy_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_DURATION_BUCKETS; b++) {
        cumulative += SUM(duration_buckets[b]);
        evbuffer_add_printf(out, "edgeproxy_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            metrics_duration_bounds[b], (unsigned long long)cumulative);
    }
    uint64_t count = SUM(duration_count);
    evbuffer_add_printf(out,
                        "edgeproxy_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "edgeproxy_request_duration_seconds_sum %.6f\n"
                        "edgeproxy_request_duration_seconds_count %llu\n",
                        (unsigned long long)count, (double)SUM(duration_sum_us) / 1e6,
                        (unsigned long long)count);
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        counter(out, families[i].name, families[i].help, families[i].type,
                sum_u64(all, n, families[i].offset));
    static const char *const lookup_outcomes[6] = {"hit",       "miss",   "stale",
                                                   "not_found", "broken", "error"};
    evbuffer_add_printf(out, "# HELP edgeproxy_route_lookups_total Route lookups by what the "
                             "request got: a fresh cached record (hit), one read from Redis "
                             "(miss), a stale one (Redis could not answer), not found, broken, "
                             "or nothing (error, 503).\n"
                             "# TYPE edgeproxy_route_lookups_total counter\n");
    for (int o = 0; o < 6; o++)
        evbuffer_add_printf(out, "edgeproxy_route_lookups_total{outcome=\"%s\"} %llu\n",
                            lookup_outcomes[o], (unsigned long long)SUM(route_lookups[o]));
    static const char *const circuit_states[3] = {"closed", "open", "half_open"};
    int64_t in_state[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        int64_t st = __atomic_load_n(&all[i]->redis_circuit, __ATOMIC_RELAXED);
        if (st >= 0 && st < 3)
            in_state[st]++;
    }
    evbuffer_add_printf(out, "# HELP edgeproxy_redis_circuit Workers whose Redis data connection's "
                             "circuit is in each state: closed (GETs go out), open (known down "
                             "or not answering: lookups answered at once), half_open (a probe "
                             "under way).\n"
                             "# TYPE edgeproxy_redis_circuit gauge\n");
    for (int st = 0; st < 3; st++)
        evbuffer_add_printf(out, "edgeproxy_redis_circuit{state=\"%s\"} %lld\n", circuit_states[st],
                            (long long)in_state[st]);
    evbuffer_add_printf(
        out,
        "# HELP edgeproxy_redis_master_switches_total Times the Sentinel watcher moved to "
        "another master.\n"
        "# TYPE edgeproxy_redis_master_switches_total counter\n"
        "edgeproxy_redis_master_switches_total %llu\n"
        "# HELP edgeproxy_global_limit_instances Live instances at the last global "
        "maxConnections sync (limits.max_connections_scope global).\n"
        "# TYPE edgeproxy_global_limit_instances gauge\n"
        "edgeproxy_global_limit_instances %lld\n"
        "# HELP edgeproxy_global_limit_syncs_total Global maxConnections syncs with Redis that "
        "succeeded.\n"
        "# TYPE edgeproxy_global_limit_syncs_total counter\n"
        "edgeproxy_global_limit_syncs_total %llu\n",
        (unsigned long long)__atomic_load_n(&process_metrics.redis_master_switches,
                                            __ATOMIC_RELAXED),
        (long long)__atomic_load_n(&process_metrics.limit_instances, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&process_metrics.limit_syncs, __ATOMIC_RELAXED));
    evbuffer_add_printf(out,
                        "# HELP edgeproxy_accept_pauses_total Times a worker stopped accepting: "
                        "out of file descriptors (for a moment), or at client.max_connections "
                        "(until one closes).\n"
                        "# TYPE edgeproxy_accept_pauses_total counter\n"
                        "edgeproxy_accept_pauses_total{reason=\"fds\"} %llu\n"
                        "edgeproxy_accept_pauses_total{reason=\"max_connections\"} %llu\n",
                        (unsigned long long)SUM(accept_pauses[0]),
                        (unsigned long long)SUM(accept_pauses[1]));
    evbuffer_add_printf(out,
                        "# HELP edgeproxy_requests_by_protocol_total Requests by the protocol "
                        "the client spoke.\n"
                        "# TYPE edgeproxy_requests_by_protocol_total counter\n"
                        "edgeproxy_requests_by_protocol_total{protocol=\"http1\"} %llu\n"
                        "edgeproxy_requests_by_protocol_total{protocol=\"http2\"} %llu\n",
                        (unsigned long long)SUM(requests_by_protocol[0]),
                        (unsigned long long)SUM(requests_by_protocol[1]));
    evbuffer_add_printf(out,
                        "# HELP edgeproxy_tunnels Open byte tunnels to sandboxes: HTTP/1.1 "
                        "connections after a 101 (WebSocket or another Upgrade), HTTP/2 "
                        "streams after an extended CONNECT (RFC 8441 WebSockets).\n"
                        "# TYPE edgeproxy_tunnels gauge\n"
                        "edgeproxy_tunnels{protocol=\"http1\"} %lld\n"
                        "edgeproxy_tunnels{protocol=\"http2\"} %lld\n",
                        (long long)SUM(tunnels[0]), (long long)SUM(tunnels[1]));
    evbuffer_add_printf(out,
                        "# HELP edgeproxy_http2_resets_total HTTP/2 streams reset (RST_STREAM), "
                        "by the client or by the proxy.\n"
                        "# TYPE edgeproxy_http2_resets_total counter\n"
                        "edgeproxy_http2_resets_total{by=\"client\"} %llu\n"
                        "edgeproxy_http2_resets_total{by=\"proxy\"} %llu\n",
                        (unsigned long long)SUM(http2_resets[0]),
                        (unsigned long long)SUM(http2_resets[1]));
    static const char *const kinds[METRICS_EGRESS_KINDS] = {"http", "tls", "tcp"};
    evbuffer_add_printf(out, "# HELP edgeproxy_egress_decisions_total Egress decisions (a "
                             "connection, or a request on port 80) by result, listener kind "
                             "and the kind of rule that decided.\n"
                             "# TYPE edgeproxy_egress_decisions_total counter\n");
    for (int k = 0; k < METRICS_EGRESS_KINDS; k++)
        for (int by = 0; by < EGRESS_BY_COUNT; by++)
            evbuffer_add_printf(
                out,
                "edgeproxy_egress_decisions_total{result=\"%s\",kind=\"%s\",rule=\"%s\"} %llu\n",
                egress_decided_by_verdict(by) == EGRESS_ALLOW ? "allow" : "deny", kinds[k],
                egress_decided_by_name(by), (unsigned long long)SUM(egress_decisions[k][by]));
}
