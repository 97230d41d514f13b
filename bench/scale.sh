#!/usr/bin/env bash
# Does edgeproxy's throughput scale with workers? Same origin and route as
# bench/run.sh, edgeproxy with "workers": 1 then 2, interleaved, unpinned
# (the machine has 2 cores: the origin and wrk share them, so this shows the
# trend, not a clean 2x). Prints median req/s per worker count.
#
#   bash bench/scale.sh            3 rounds x 10 s
#   ROUNDS=1 DURATION=3 bash bench/scale.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-128}
BASE_PORT=${BASE_PORT:-18180}
cd "$(dirname "$0")/.."
BIN=${EDGEPROXY_BIN:-$PWD/build/edgeproxy}
[ -x "$BIN" ] || { echo "scale: build edgeproxy first (make)" >&2; exit 1; }
ORIGIN=$((BASE_PORT + 1)); PROXY=$((BASE_PORT + 2)); REDIS=$((BASE_PORT + 3))
TMP=$(mktemp -d /tmp/epscale.XXXXXX); chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3; rm -rf "$TMP"
}
trap cleanup EXIT
cat >"$TMP/origin.conf" <<CONF
worker_processes 2;
pid $TMP/origin.pid;
error_log $TMP/origin.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN backlog=4096; location / { return 200 "hello\n"; } } }
CONF
nginx -c "$TMP/origin.conf" -p "$TMP" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS" set sandbox:scale '{"address":"127.0.0.1","maskRequestHost":"localhost:${PORT}"}' >/dev/null
HOST="$ORIGIN-scale.bench.local"
run() {  # workers -> req/s
    sed "s/@W@/$1/" >"$TMP/ep.json" <<CONF
{"workers": @W@, "domains": ["bench.local"], "listeners": [{"address": "127.0.0.1:$PROXY"}],
 "admin": null, "redis": {"url": "redis://127.0.0.1:$REDIS/0"}, "log": {"level": "warn"}}
CONF
    "$BIN" --config "$TMP/ep.json" 2>>"$TMP/ep.err" & local pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY") 2>/dev/null && break; sleep 0.1; done
    wrk -t2 -c"$CONNS" -d2s -H "Host: $HOST" "http://127.0.0.1:$PROXY/" >/dev/null
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Host: $HOST" "http://127.0.0.1:$PROXY/" |
        awk '/Requests\/sec/ {print int($2)} /Non-2xx|Socket errors/ {print "errors: " $0 > "/dev/stderr"}'
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
declare -A R
for _ in $(seq "$ROUNDS"); do
    for w in 1 2; do R[$w]="${R[$w]:-} $(run $w)"; done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(echo "${R[1]}" | median); m2=$(echo "${R[2]}" | median)
echo "edgeproxy worker scaling, wrk -t2 -c$CONNS -d${DURATION}s, $ROUNDS rounds, $(nproc) CPUs"
echo "workers  req/s (median)  runs"
echo "1        $m1         ${R[1]}"
echo "2        $m2         ${R[2]}"
awk -v a="$m1" -v b="$m2" 'BEGIN {printf "2 workers / 1 worker: %.2f\n", b / a}'
