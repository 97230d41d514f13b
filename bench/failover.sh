#!/usr/bin/env bash
# Failover bench (issue 14): wrk through edgeproxy in Sentinel mode while the
# Redis master is killed with SIGKILL. See bench/README.md, "Failover".
#
#   bash bench/failover.sh                           # tuned Sentinels, replica reads on
#   SENTINEL=default bash bench/failover.sh          # Redis's defaults: 30 s down-after
#   READ_REPLICAS=0 bash bench/failover.sh           # uncached lookups get 503 meanwhile
#   INSTANCES=2 bash bench/failover.sh               # two proxies behind HAProxy (L4)
#   OUT=bench/results/2026-12-03-failover-tuned.txt bash bench/failover.sh
#
# Starts, all on 127.0.0.1: the failover lab of
# test/integration/sentinel_lab.py (one master, two replicas, three
# Sentinels; driven by bench/failover.py), the origin (nginx,
# bench/conf/origin.nginx.conf), INSTANCES edgeproxy processes (the release
# build) in Sentinel mode and, with INSTANCES > 1, HAProxy in TCP mode in front
# of them (bench/conf/haproxy-l4.cfg, the shape of docker/haproxy.cfg). Two
# wrk runs with bench/failover.lua go through the front: "warm" on WARM_IDS
# sandboxes (cached after their first second) and "uncached" on a new
# sandbox every request (records written in Redis beforehand, never asked
# for). KILL_AT seconds in, the master is killed; the run lasts DURATION
# seconds. The report (bench/failover.py report) goes to stdout and OUT.
# Only the processes started here are stopped (by pid).
set -euo pipefail

SENTINEL=${SENTINEL:-tuned}          # tuned: down-after 1000, failover-timeout 10000
                                     # default: Redis's, 30000 and 180000
READ_REPLICAS=${READ_REPLICAS:-1}    # redis.read_replicas
INSTANCES=${INSTANCES:-1}            # edgeproxy processes (> 1: HAProxy in front)
WORKERS=${WORKERS:-1}                # "workers" of each
KILL_AT=${KILL_AT:-10}               # seconds of load before the kill
AFTER=${AFTER:-20}                   # seconds of load after the expected promotion
WARM_CONNS=${WARM_CONNS:-4}          # wrk threads = connections, warm sandboxes
WARM_DELAY_MS=${WARM_DELAY_MS:-0}    # pause between requests on a connection
WARM_IDS=${WARM_IDS:-50}
UNCACHED_CONNS=${UNCACHED_CONNS:-2}
UNCACHED_DELAY_MS=${UNCACHED_DELAY_MS:-2}
ORIGIN_DELAY_MS=${ORIGIN_DELAY_MS:-5}  # the control connection to the origin
BASE_PORT=${BASE_PORT:-27080}          # below the ephemeral range, where the lab's ports are
PIN=${PIN:-1}                        # 1: servers and the lab on CPU 0, load on CPU 1

case $SENTINEL in
    tuned) DOWN_AFTER=${DOWN_AFTER:-1000}; FAILOVER_TIMEOUT=${FAILOVER_TIMEOUT:-10000} ;;
    default) DOWN_AFTER=${DOWN_AFTER:-30000}; FAILOVER_TIMEOUT=${FAILOVER_TIMEOUT:-180000} ;;
    *) echo "failover: SENTINEL is tuned or default" >&2; exit 2 ;;
esac
DURATION=${DURATION:-$((KILL_AT + DOWN_AFTER / 1000 + AFTER))}

cd "$(dirname "$0")/.."
ROOT=$PWD
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$ROOT/build/edgeproxy}
OUT=${OUT:-$ROOT/bench/results/failover-latest.txt}
PY=/usr/bin/python3
need=(wrk redis-server redis-cli nginx curl)
[ "$INSTANCES" -gt 1 ] && need+=(haproxy)
for exe in "${need[@]}"; do
    command -v "$exe" >/dev/null || { echo "failover: needs $exe" >&2; exit 1; }
done
[ -x "$EDGEPROXY_BIN" ] || { echo "failover: no $EDGEPROXY_BIN (make)" >&2; exit 1; }

ORIGIN_PORT=$((BASE_PORT + 1))
LB_PORT=$((BASE_PORT + 2))
PROXY_PORTS=()
ADMIN_PORTS=()
for ((i = 0; i < INSTANCES; i++)); do
    PROXY_PORTS+=($((BASE_PORT + 10 + 2 * i)))
    ADMIN_PORTS+=($((BASE_PORT + 11 + 2 * i)))
done
DOMAIN=bench.local
NAME=failover
. bench/lib.sh
ports_free "$ORIGIN_PORT" "$LB_PORT" "${PROXY_PORTS[@]}" "${ADMIN_PORTS[@]}"

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SRV=(taskset -c 0)
    CLI=(taskset -c 1)
else
    SRV=()
    CLI=()
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# On tmpfs when there is one: the logs written during the run (wrk's, one
# line per request, and the proxies') never wait on the disk's writeback,
# which would show up as latency.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then make_tmp epfailover /dev/shm; else make_tmp epfailover; fi
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)

# Records for every uncached request the run can make (each connection at
# most one request per max(UNCACHED_DELAY_MS, 0.5) ms), and some spare.
UNCACHED_IDS=$((UNCACHED_CONNS * 2000 * DURATION * 11 / 10))
if [ "$UNCACHED_DELAY_MS" -gt 0 ]; then
    UNCACHED_IDS=$((UNCACHED_CONNS * (1000 / UNCACHED_DELAY_MS + 1) * DURATION * 11 / 10))
fi

# ---- the lab (its own processes, stopped by bench/failover.py on SIGTERM)
start lab "${SRV[@]}" "$PY" bench/failover.py lab "$TMP/state.json" "$TMP/lab" \
    --down-after "$DOWN_AFTER" --failover-timeout "$FAILOVER_TIMEOUT" \
    --warm "$WARM_IDS" --uncached "$UNCACHED_IDS"
state() {  # KEY: its value in the lab's state file (strings bare, the rest as JSON)
    "$PY" -c 'import json,sys; v = json.load(open(sys.argv[1])).get(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))' "$TMP/state.json" "$1"
}
for _ in $(seq 900); do
    [ -s "$TMP/state.json" ] && [ "$(state phase)" != starting ] && break
    kill -0 "${PID[lab]}" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$TMP/state.json" ] || [ "$(state phase)" != ready ]; then
    echo "failover: the lab did not come up; its output:" >&2
    tail -n 30 "$TMP/lab.out" >&2
    exit 1
fi
SENTINELS=$(state sentinels)

# ---- the origin
mkdir -p "$TMP/origin" "$TMP/www"
sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@NOFILE@|16384|g" \
    -e "s|@WORKER_CONNS@|8192|g" bench/conf/origin.nginx.conf >"$TMP/origin.conf"
if grep -q '@[A-Z_]*@' "$TMP/origin.conf"; then
    echo "failover: origin.nginx.conf: left unrendered: $(grep -o '@[A-Z_]*@' "$TMP/origin.conf" | sort -u | tr '
' ' ')" >&2
    exit 1
fi
start origin "${SRV[@]}" nginx -e "$TMP/origin/startup.log" -p "$TMP/origin/" \
    -c "$TMP/origin.conf" -g 'daemon off;'
wait_port origin "$ORIGIN_PORT"

# ---- the proxies
if [ "$READ_REPLICAS" = 1 ]; then rr=true; else rr=false; fi
scope=process
[ "$INSTANCES" -gt 1 ] && scope=global   # as docker/edgeproxy-sentinel.json
PROXY_LOGS=()
for ((i = 0; i < INSTANCES; i++)); do
    cat >"$TMP/edgeproxy-$i.json" <<EOF
{
  "workers": $WORKERS,
  "domains": ["$DOMAIN"],
  "listeners": [{"address": "127.0.0.1:${PROXY_PORTS[i]}"}],
  "admin": {"address": "127.0.0.1:${ADMIN_PORTS[i]}"},
  "redis": {"sentinels": $SENTINELS, "master_name": "edge", "read_replicas": $rr},
  "limits": {"max_connections_scope": "$scope"},
  "upstream": {"pool_idle_timeout_ms": 1000},
  "log": {"level": "info"}
}
EOF
    start "edgeproxy-$i" "${SRV[@]}" "$EDGEPROXY_BIN" --config "$TMP/edgeproxy-$i.json"
    PROXY_LOGS+=("$TMP/edgeproxy-$i.out")
done
for ((i = 0; i < INSTANCES; i++)); do
    wait_port "edgeproxy-$i" "${PROXY_PORTS[i]}"
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ADMIN_PORTS[i]}/readyz")" = 200 ] && break
        sleep 0.1
    done
done
# (Each uncached sandbox is its own upstream pool key: idle upstream
# connections go after 1 s, not 30, or thousands would stay open.)

FRONT=${PROXY_PORTS[0]}
if [ "$INSTANCES" -gt 1 ]; then
    servers=""
    for ((i = 0; i < INSTANCES; i++)); do
        servers+="    server edgeproxy-$((i + 1)) 127.0.0.1:${PROXY_PORTS[i]} check port ${ADMIN_PORTS[i]}"$'\n'
    done
    awk -v lb="$LB_PORT" -v servers="$servers" \
        '{ gsub("@LB_PORT@", lb) } $0 == "@SERVERS@" { printf "%s", servers; next } { print }' \
        bench/conf/haproxy-l4.cfg >"$TMP/haproxy.cfg"
    start haproxy "${SRV[@]}" haproxy -db -f "$TMP/haproxy.cfg"
    wait_port haproxy "$LB_PORT"
    sleep 3   # rise 2 x inter 1s: every instance in the rotation
    FRONT=$LB_PORT
fi
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $ORIGIN_PORT-w0.$DOMAIN" "http://127.0.0.1:$FRONT/")
if [ "$code" != 200 ]; then
    echo "failover: a warm sandbox answered $code, not 200, before the run" >&2
    tail -n 20 "${PROXY_LOGS[@]}" >&2
    exit 1
fi

# ---- the run
start sampler "${CLI[@]}" "$PY" bench/failover.py sample "$TMP/samples.jsonl" "${ADMIN_PORTS[@]}"
mkdir -p "$TMP/wrk"
start wrk_warm "${CLI[@]}" wrk -t"$WARM_CONNS" -c"$WARM_CONNS" -d"${DURATION}s" --timeout 10s \
    -s bench/failover.lua "http://127.0.0.1:$FRONT/" -- \
    warm "$ORIGIN_PORT" "$DOMAIN" "$WARM_IDS" "$WARM_DELAY_MS" "$TMP/wrk" "$WARM_CONNS"
# A control: the origin directly (nginx, on the proxies' CPU), one
# connection, a request every ORIGIN_DELAY_MS. When it is slow too, the
# host or that CPU was, not the proxy.
start wrk_origin "${CLI[@]}" wrk -t1 -c1 -d"${DURATION}s" --timeout 10s \
    -s bench/failover.lua "http://127.0.0.1:$ORIGIN_PORT/" -- \
    origin "$ORIGIN_PORT" "$DOMAIN" 1 "$ORIGIN_DELAY_MS" "$TMP/wrk" 1
start wrk_uncached "${CLI[@]}" wrk -t"$UNCACHED_CONNS" -c"$UNCACHED_CONNS" -d"${DURATION}s" --timeout 10s \
    -s bench/failover.lua "http://127.0.0.1:$FRONT/" -- \
    uncached "$ORIGIN_PORT" "$DOMAIN" "$UNCACHED_IDS" "$UNCACHED_DELAY_MS" "$TMP/wrk" "$UNCACHED_CONNS"
echo "failover: $SENTINEL Sentinels (down-after $DOWN_AFTER ms), read_replicas $rr," \
    "$INSTANCES instance(s); kill at $KILL_AT s of $DURATION s" >&2
sleep "$KILL_AT"
kill -USR1 "${PID[lab]}"
wait "${PID[wrk_warm]}" || true
wait "${PID[wrk_uncached]}" || true
wait "${PID[wrk_origin]}" || true
sleep 1.2   # one more sample
kill -TERM "${PID[sampler]}"
wait "${PID[sampler]}" || true
for ((i = 0; i < INSTANCES; i++)); do
    kill -0 "${PID[edgeproxy-$i]}" 2>/dev/null || echo "failover: edgeproxy-$i died" >&2
done

# ---- the report
{
    echo "failover bench: $(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$EDGEPROXY_BIN ($("$EDGEPROXY_BIN" --version 2>&1 | head -n1))"
    echo "Sentinels: $SENTINEL (down-after-milliseconds $DOWN_AFTER, failover-timeout $FAILOVER_TIMEOUT," \
        "quorum 2 of 3); master + 2 replicas, redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "edgeproxy: $INSTANCES instance(s)$([ "$INSTANCES" -gt 1 ] && echo ' behind HAProxy (TCP, leastconn, /readyz checks)')," \
        "workers $WORKERS, redis.read_replicas $rr, redis.timeout_ms 250, cache.ttl_ms 1000, stale_grace_ms 30000 (defaults)," \
        "limits scope $scope"
    echo "load: wrk warm $WARM_CONNS connections on $WARM_IDS sandboxes (pause ${WARM_DELAY_MS} ms)," \
        "uncached $UNCACHED_CONNS connections, a new sandbox each request (pause ${UNCACHED_DELAY_MS} ms);" \
        "origin (control) 1 connection straight to nginx (pause ${ORIGIN_DELAY_MS} ms);" \
        "kill -9 of the master at $KILL_AT s of $DURATION s; pinned: $PIN"
    echo "load average: start $LOAD_START, end $(loadavg)"
    for role in warm uncached origin; do grep -h "^$role:" "$TMP/wrk_$role.out" || true; done
    echo
    "$PY" bench/failover.py report "$TMP/wrk" "$TMP/state.json" "$TMP/samples.jsonl" "${PROXY_LOGS[@]}"
} >"$TMP/report.txt" 2>&1 || true
cat "$TMP/report.txt"
cp "$TMP/report.txt" "$OUT"
echo "failover: written to ${OUT#$ROOT/}" >&2
