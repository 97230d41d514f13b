#!/usr/bin/env bash
# HTTPS/1.1 smoke run: two edgeproxy binaries side by side (before/after a
# change), one worker each with a TLS listener, the bench origin (nginx)
# behind them, wrk over HTTPS alternating between the two. Not the
# benchmark (bench/run.sh has no TLS section yet): short runs, no nginx or
# HAProxy beside them.
#
#   bash bench/tls_smoke.sh OLD_BIN NEW_BIN
#   DUR=5 ROUNDS=2 PATHS="/ /16k" CLOSE=1 bash bench/tls_smoke.sh ...
#
# Per run: requests/s, proxy CPU (utime+stime) per request in µs, wrk's
# latency line. "close" runs send Connection: close, so every request is a
# new connection and a new TLS handshake (about 0.5 ms of proxy CPU each
# here: OpenSSL's cost, the same for both). Processes started here are
# stopped by pid at exit (bench/lib.sh).
set -euo pipefail
OLD=$1
NEW=$2
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-2}
PATHS=${PATHS:-"/ /16k"}
CLOSE=${CLOSE:-1}
BASE_PORT=${BASE_PORT:-28080}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."
BENCH=$PWD/bench
ORIGIN_PORT=$((BASE_PORT + 1))
REDIS_PORT=$((BASE_PORT + 5))
declare -A PORTS=([old]=$((BASE_PORT + 10)) [new]=$((BASE_PORT + 11)))
NAME=tls_smoke
. "$BENCH/lib.sh"
ports_free $ORIGIN_PORT $REDIS_PORT ${PORTS[old]} ${PORTS[new]}
make_tmp tls_smoke
ulimit -n 65536 2>/dev/null || true

mkdir -p "$TMP/www" "$TMP/origin"
printf 'hello\n' >"$TMP/www/index"
head -c 16384 /dev/urandom >"$TMP/www/16k"
chmod -R a+rX "$TMP/www"
sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@NOFILE@|$(ulimit -n)|g" \
    -e "s|@WORKER_CONNS@|4096|g" "$BENCH/conf/origin.nginx.conf" >"$TMP/origin.conf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/key.pem" \
    -out "$TMP/cert.pem" -days 2 -subj /CN=bench.local -addext "subjectAltName=DNS:*.bench.local" 2>/dev/null
for t in old new; do
    cat >"$TMP/$t.json" <<JSON
{"workers": 1, "domains": ["bench.local"],
 "listeners": [{"address": "127.0.0.1:${PORTS[$t]}",
                "tls": {"certificates": [{"cert": "$TMP/cert.pem", "key": "$TMP/key.pem"}]}}],
 "admin": {"address": null},
 "redis": {"url": "redis://127.0.0.1:$REDIS_PORT/0", "key_prefix": "sandbox:"},
 "client": {"max_connections": 16000}, "access_log": {"path": null}, "log": {"level": "warn"}}
JSON
done

SRV=(taskset -c "$SERVER_CPU")
CLI=(taskset -c "$CLIENT_CPU")
start redis "${SRV[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$TMP" --daemonize no --logfile ""
wait_port redis "$REDIS_PORT"
redis-cli -p "$REDIS_PORT" SET sandbox:bench1 \
    '{"address": "127.0.0.1", "maskRequestHost": "localhost:${PORT}", "executionId": "bench"}' >/dev/null
start origin "${SRV[@]}" nginx -e "$TMP/origin/startup.log" -p "$TMP/origin/" -c "$TMP/origin.conf" -g 'daemon off;'
start old "${SRV[@]}" "$OLD" --config "$TMP/old.json"
start new "${SRV[@]}" "$NEW" --config "$TMP/new.json"
wait_port origin "$ORIGIN_PORT"
wait_port old "${PORTS[old]}"
wait_port new "${PORTS[new]}"

ticks() { local s; s=$(cat "/proc/$1/stat"); s=${s##*) }; echo "$s" | awk '{ print $12 + $13 }'; }
HOST="$ORIGIN_PORT-bench1.bench.local"
HZ=$(getconf CLK_TCK)

run() {  # TARGET PATH [wrk args...]
    local t=$1 path=$2 pid=${PID[$1]} t0 t1 out n
    shift 2
    "${CLI[@]}" wrk -t1 -c 64 -d 1s -H "Host: $HOST" "$@" "https://127.0.0.1:${PORTS[$t]}$path" >/dev/null 2>&1 || true
    t0=$(ticks "$pid")
    out=$("${CLI[@]}" wrk -t1 -c 64 -d "${DUR}s" -H "Host: $HOST" "$@" "https://127.0.0.1:${PORTS[$t]}$path" 2>&1)
    t1=$(ticks "$pid")
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    printf '%-4s %-5s %-6s rps=%-9s cpu_us_per_req=%-6s %s %s\n' "$t" "$path" "${1:+close}" \
        "$(echo "$out" | awk '/Requests\/sec/ { print $2 }')" \
        "$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')" \
        "$(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr '\n' ' ' || true)" \
        "$(echo "$out" | grep Latency | tr -s ' ')"
}

for _ in $(seq "$ROUNDS"); do
    for path in $PATHS; do
        run old "$path"
        run new "$path"
    done
    if [ "$CLOSE" = 1 ]; then
        run old / -H "Connection: close"
        run new / -H "Connection: close"
    fi
done
