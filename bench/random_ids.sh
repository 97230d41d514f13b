#!/usr/bin/env bash
# Route cache memory under random sandbox ids (issue 10): N requests, each for
# a sandbox id never seen before, against the normal build and a real
# redis-server that knows none of them (every answer is 502 "not found").
# Prints the proxy's VmRSS before, right after, and AFTER_WAIT seconds later,
# and the route cache metrics. See bench/README.md.
#
#   bash bench/random_ids.sh                      # 1M ids, default workers
#   N=562000 WORKERS=1 bash bench/random_ids.sh   # the issue's reproduction
#   MAX_ENTRIES=64 N=5000 bash bench/random_ids.sh
#   CACHED_SECONDS=10 bash bench/random_ids.sh    # + wrk on one known sandbox
#   # memory per entry: entries that stay (no eviction, no sweep)
#   N=200000 WORKERS=1 MAX_ENTRIES=200000 NEGATIVE_TTL_MS=600000 bash bench/random_ids.sh
#
# With CACHED_SECONDS > 0 (needs nginx as the origin) it first measures the
# cached path: wrk on one known sandbox, before the flood and again after it.
# Only the processes started here are stopped (by pid).
set -euo pipefail

N=${N:-1000000}                  # random-id requests in total
WORKERS=${WORKERS:-0}            # edgeproxy "workers" (0 = one per core)
MAX_ENTRIES=${MAX_ENTRIES:-}     # cache.max_entries; empty = the default
NEGATIVE_TTL_MS=${NEGATIVE_TTL_MS:-}  # cache.negative_ttl_ms; empty = the default
CONNS=${CONNS:-32}               # wrk connections
THREADS=${THREADS:-2}            # wrk threads
AFTER_WAIT=${AFTER_WAIT:-20}     # seconds between "after" and "later"
CACHED_SECONDS=${CACHED_SECONDS:-0}
BASE_PORT=${BASE_PORT:-28080}
PIN=${PIN:-1}                    # 1: server on CPU 0, wrk on CPU 1

cd "$(dirname "$0")/.."
ROOT=$PWD
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$ROOT/build/edgeproxy}
for exe in "$EDGEPROXY_BIN" "$(command -v wrk || true)" "$(command -v redis-server || true)"; do
    if [ -z "$exe" ] || [ ! -x "$exe" ]; then
        echo "random_ids: needs wrk, redis-server and $EDGEPROXY_BIN (make)" >&2
        exit 1
    fi
done
if [ "$CACHED_SECONDS" -gt 0 ] && ! command -v nginx >/dev/null; then
    echo "random_ids: CACHED_SECONDS needs nginx (the origin)" >&2
    exit 1
fi

PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))
REDIS_PORT=$((BASE_PORT + 3))
ORIGIN_PORT=$((BASE_PORT + 4))
DOMAIN=bench.local
NAME=random_ids
. bench/lib.sh
ports_free $PROXY_PORT $ADMIN_PORT $REDIS_PORT $ORIGIN_PORT

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SRV=(taskset -c 0)
    CLI=(taskset -c 1)
else
    SRV=()
    CLI=()
fi

make_tmp eprandom
rss_mib() { awk -v k="$(rss_kib "${PID[edgeproxy]}")" 'BEGIN { printf "%.1f", k / 1024 }'; }
metric() {  # NAME -> value summed over the lines of that metric ("-" if absent)
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v m="$1" '$1 == m { v += $2; found = 1 } END { print found ? v : "-" }'
}
cached_run() {  # LABEL: req/s and the proxy's CPU time per request
    local t0 t1
    t0=$(cpu_ticks "${PID[edgeproxy]}")
    "${CLI[@]}" wrk -t1 -c32 -d"${CACHED_SECONDS}s" -H "Host: $ORIGIN_PORT-known1.$DOMAIN" \
        "http://127.0.0.1:$PROXY_PORT/" >"$TMP/cached-$1.txt"
    t1=$(cpu_ticks "${PID[edgeproxy]}")
    awk -v l="$1" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
        '/requests in/ { n = $1 } /Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
        END { printf "cached path (%s): %s req/s, proxy CPU %.1f us/req, non-2xx %d\n",
                     l, rps, ticks * 1e6 / hz / n, bad }' "$TMP/cached-$1.txt"
}

cache_keys=()
[ -n "$MAX_ENTRIES" ] && cache_keys+=("\"max_entries\": $MAX_ENTRIES")
[ -n "$NEGATIVE_TTL_MS" ] && cache_keys+=("\"negative_ttl_ms\": $NEGATIVE_TTL_MS")
cache_json="{$(IFS=,; echo "${cache_keys[*]}")}"
cat >"$TMP/edgeproxy.json" <<EOF
{
  "workers": $WORKERS,
  "domains": ["$DOMAIN"],
  "listeners": [{"address": "127.0.0.1:$PROXY_PORT"}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "redis": {"url": "redis://127.0.0.1:$REDIS_PORT/0"},
  "cache": $cache_json,
  "log": {"level": "warn"}
}
EOF

start redis "${SRV[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$TMP" --daemonize no --logfile ""
wait_port redis "$REDIS_PORT"
redis-cli -p "$REDIS_PORT" SET sandbox:known1 '{"address": "127.0.0.1"}' >/dev/null
if [ "$CACHED_SECONDS" -gt 0 ]; then
    mkdir -p "$TMP/origin"
    cat >"$TMP/origin.conf" <<EOF
worker_processes 1;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/origin/client_body;
    server { listen 127.0.0.1:$ORIGIN_PORT; location / { return 200 "hello\n"; } }
}
EOF
    start origin "${SRV[@]}" nginx -e "$TMP/origin/startup.log" -p "$TMP/origin/" \
        -c "$TMP/origin.conf" -g 'daemon off;'
    wait_port origin "$ORIGIN_PORT"
fi
start edgeproxy "${SRV[@]}" "$EDGEPROXY_BIN" --config "$TMP/edgeproxy.json"
wait_port edgeproxy "$PROXY_PORT"

echo "random_ids: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $EDGEPROXY_BIN," \
    "workers $WORKERS, cache $cache_json, N=$N, wrk -t$THREADS -c$CONNS"
[ "$CACHED_SECONDS" -gt 0 ] && cached_run before
sleep 1
before=$(rss_mib)
per_thread=$(((N + THREADS - 1) / THREADS))
t0=$(date +%s.%N)
: >"$TMP/wrk.done"
"${CLI[@]}" wrk -t"$THREADS" -c"$CONNS" -d3600s --timeout 10s -s bench/random_ids.lua \
    "http://127.0.0.1:$PROXY_PORT/" -- "$ORIGIN_PORT" "$DOMAIN" "$per_thread" "$TMP/wrk.done" \
    >"$TMP/wrk.txt" &
wrk_pid=$!
# The Lua script marks each thread's end; wrk itself sleeps out -d unless
# interrupted.
while [ "$(wc -l <"$TMP/wrk.done")" -lt "$THREADS" ] && kill -0 "$wrk_pid" 2>/dev/null; do
    sleep 0.2
done
t1=$(date +%s.%N)
kill -INT "$wrk_pid" 2>/dev/null || true
wait "$wrk_pid" || true
after=$(rss_mib)
entries_after=$(metric edgeproxy_route_cache_entries)
sleep "$AFTER_WAIT"
later=$(rss_mib)
awk '/requests in/ { print "wrk: " $1 " requests" } /Socket errors/ { print "wrk: " $0 } /^statuses:/' "$TMP/wrk.txt"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "flood took %.1f s\n", b - a }'
echo "VmRSS MiB: before $before, right after $after, ${AFTER_WAIT} s later $later"
if [ "$entries_after" != - ] && [ "$entries_after" -gt 0 ]; then
    awk -v a="$after" -v b="$before" -v n="$entries_after" \
        'BEGIN { printf "RSS growth / entries right after: %.0f bytes\n", (a - b) * 1048576 / n }'
fi
echo "metrics: misses $(metric edgeproxy_route_cache_misses_total)," \
    "evictions $(metric edgeproxy_route_cache_evictions_total)," \
    "entries right after $entries_after, entries later $(metric edgeproxy_route_cache_entries)"
[ "$CACHED_SECONDS" -gt 0 ] && cached_run after
kill -0 "${PID[edgeproxy]}" || { echo "random_ids: edgeproxy died" >&2; exit 1; }
