#!/usr/bin/env bash
# edgeproxy side-by-side benchmark (issue 5). See bench/README.md.
#
#   make bench                       full run (3 rounds x 10 s, 64 connections)
#   ROUNDS=1 DURATION=2 make bench   smoke run
#
# Everything runs on loopback from a temp dir with the configs in bench/conf;
# no system service or /etc config is used, and only the processes started
# here are stopped (by pid).
set -euo pipefail

ROUNDS=${ROUNDS:-3}              # interleaved rounds per tool and body size
DURATION=${DURATION:-10}         # seconds per measured run
CONNS=${CONNS:-64}               # client connections (wrk -c, h2load -c)
WARMUP=${WARMUP:-2}              # seconds of warm-up per target and phase
TOOLS=${TOOLS-"wrk h2load"}  # empty: memory tests only
IDLE_CONNS=${IDLE_CONNS:-10000}  # idle keep-alive connections for the RSS test
STREAM_MIB=${STREAM_MIB:-1024}   # streamed body size, MiB
STREAM_RATE_MIB=${STREAM_RATE_MIB:-256}  # receiver speed in the stream test, MiB/s
MEMORY=${MEMORY:-1}              # 0 skips the memory tests
BASE_PORT=${BASE_PORT:-18080}
PIN=${PIN:-1}                    # 0: no taskset
SERVER_CPU=${SERVER_CPU:-0}      # origin, proxies, redis
CLIENT_CPU=${CLIENT_CPU:-1}      # wrk, h2load, curl, the idle client, this script

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$ROOT/build/edgeproxy}
# A second edgeproxy binary (e.g. the commit before a change) measured in the
# same rounds as target "edgeproxy_base": before/after ratios from one run.
EDGEPROXY_BASE_BIN=${EDGEPROXY_BASE_BIN:-}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# ---------------------------------------------------------------- packages
need_pkgs() {
    local missing="" p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "bench: installing$missing"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
need_pkgs nginx haproxy wrk nghttp2-client redis-server redis-tools curl python3 util-linux

if [ ! -x "$EDGEPROXY_BIN" ]; then
    echo "bench: $EDGEPROXY_BIN not built (run make)" >&2
    exit 1
fi

# ---------------------------------------------------------------- limits
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
# The idle-connection test needs one fd per connection in the client and in
# nginx or edgeproxy, but HAProxy refuses to start unless 2*maxconn (+ a few)
# fds are available: where the fd limit is short, only HAProxy's count is
# scaled down (and the report says so).
IDLE_NOTE=""
declare -A IDLE_N   # target -> idle connections opened through it
IDLE_N[nginx]=$IDLE_CONNS
IDLE_N[edgeproxy]=$IDLE_CONNS
IDLE_N[haproxy]=$IDLE_CONNS
max_idle=$(( NOFILE - 500 ))
if [ "$IDLE_CONNS" -gt "$max_idle" ]; then
    IDLE_NOTE="idle connections lowered from $IDLE_CONNS to $max_idle: open-files limit is $NOFILE"
    IDLE_N[nginx]=$max_idle
    IDLE_N[edgeproxy]=$max_idle
fi
max_idle_haproxy=$(( ((NOFILE - 400) / 2 - 100) / 100 * 100 ))
if [ "$IDLE_CONNS" -gt "$max_idle_haproxy" ]; then
    IDLE_N[haproxy]=$max_idle_haproxy
    IDLE_NOTE="${IDLE_NOTE:+$IDLE_NOTE; }HAProxy's idle connections lowered from $IDLE_CONNS to $max_idle_haproxy: open-files limit is $NOFILE and HAProxy needs 2 fds per maxconn"
fi
HAPROXY_MAXCONN=$(( IDLE_N[haproxy] + 100 ))
WORKER_CONNS=$(( NOFILE - 100 ))

if [ "$PIN" = 1 ]; then
    SRV=(taskset -c "$SERVER_CPU")
    CLI=(taskset -c "$CLIENT_CPU")
    taskset -cp "$CLIENT_CPU" $$ >/dev/null   # this script and its helpers
else
    SRV=()
    CLI=()
fi

# ---------------------------------------------------------------- ports
ORIGIN_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
HAPROXY_PORT=$((BASE_PORT + 3))
EDGEPROXY_PORT=$((BASE_PORT + 4))
REDIS_PORT=$((BASE_PORT + 5))
DISCARD_PORT=$((BASE_PORT + 6))
EDGEPROXY_BASE_PORT=$((BASE_PORT + 7))
SANDBOX=bench1
DOMAIN=bench.local
HOST_HDR="$ORIGIN_PORT-$SANDBOX.$DOMAIN"        # edgeproxy -> origin
DISCARD_HOST="$DISCARD_PORT-$SANDBOX.$DOMAIN"   # edgeproxy -> discard server

NAME=bench
NGINX_TARGETS="origin nginx"
. "$BENCH/lib.sh"
ports_free $ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $EDGEPROXY_PORT $REDIS_PORT $DISCARD_PORT

# ---------------------------------------------------------------- processes
make_tmp epbench

render() {  # TEMPLATE OUT
    sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        -e "s|@NGINX_PORT@|$NGINX_PORT|g" -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" \
        -e "s|@EDGEPROXY_PORT@|$EDGEPROXY_PORT|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
        -e "s|@DISCARD_PORT@|$DISCARD_PORT|g" -e "s|@NOFILE@|$NOFILE|g" \
        -e "s|@WORKER_CONNS@|$WORKER_CONNS|g" -e "s|@HAPROXY_MAXCONN@|$HAPROXY_MAXCONN|g" \
        "$1" >"$2"
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

mkdir -p "$TMP/www" "$TMP/origin" "$TMP/nginx" "$TMP/runs"
printf 'hello\n' >"$TMP/www/index"
head -c 16384 /dev/urandom >"$TMP/www/16k"
truncate -s "$((STREAM_MIB * 1024 * 1024))" "$TMP/www/1g"   # sparse
chmod -R a+rX "$TMP/www"

render "$BENCH/conf/origin.nginx.conf" "$TMP/origin.conf"
render "$BENCH/conf/proxy.nginx.conf" "$TMP/nginx.conf"
render "$BENCH/conf/haproxy.cfg" "$TMP/haproxy.cfg"
render "$BENCH/conf/edgeproxy.json" "$TMP/edgeproxy.json"
sed "s|127.0.0.1:$EDGEPROXY_PORT|127.0.0.1:$EDGEPROXY_BASE_PORT|" "$TMP/edgeproxy.json" >"$TMP/edgeproxy_base.json"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: starting servers in $TMP (ulimit -n $NOFILE)"
start redis "${SRV[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$TMP" --daemonize no --logfile ""
wait_port redis "$REDIS_PORT"
redis-cli -p "$REDIS_PORT" SET "sandbox:$SANDBOX" \
    '{"address": "127.0.0.1", "maskRequestHost": "localhost:${PORT}", "executionId": "bench"}' >/dev/null

start origin "${SRV[@]}" nginx -e "$TMP/origin/startup.log" -p "$TMP/origin/" -c "$TMP/origin.conf" -g 'daemon off;'
start discard "${CLI[@]}" "$PY" "$BENCH/discard.py" "$DISCARD_PORT" --rate "$((STREAM_RATE_MIB * 1024 * 1024))"
start nginx "${SRV[@]}" nginx -e "$TMP/nginx/startup.log" -p "$TMP/nginx/" -c "$TMP/nginx.conf" -g 'daemon off;'
start haproxy "${SRV[@]}" haproxy -db -f "$TMP/haproxy.cfg"
start edgeproxy "${SRV[@]}" "$EDGEPROXY_BIN" --config "$TMP/edgeproxy.json"
wait_port origin "$ORIGIN_PORT"
wait_port discard "$DISCARD_PORT"
wait_port nginx "$NGINX_PORT"
wait_port haproxy "$HAPROXY_PORT"
wait_port edgeproxy "$EDGEPROXY_PORT"

TARGETS=(origin nginx haproxy edgeproxy)
declare -A PORT=([origin]=$ORIGIN_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [edgeproxy]=$EDGEPROXY_PORT)
if [ -n "$EDGEPROXY_BASE_BIN" ]; then
    start edgeproxy_base "${SRV[@]}" "$EDGEPROXY_BASE_BIN" --config "$TMP/edgeproxy_base.json"
    wait_port edgeproxy_base "$EDGEPROXY_BASE_PORT"
    TARGETS+=(edgeproxy_base)
    PORT[edgeproxy_base]=$EDGEPROXY_BASE_PORT
fi
declare -A FAILED   # target -> reason; a failed target is not measured again

fail_target() {  # TARGET REASON
    FAILED[$1]=$2
    echo "bench: $1 FAILED: $2" >&2
    printf '%s\t%s\n' "$1" "$2" >>"$TMP/failures.tsv"
    if [ "$1" = edgeproxy ] && [ -s "$TMP/edgeproxy.out" ]; then
        echo "bench: edgeproxy stderr (last 20 lines):" >&2
        tail -n 20 "$TMP/edgeproxy.out" >&2
    fi
}

check_alive() {
    local t
    for t in "${TARGETS[@]}"; do
        [ -n "${FAILED[$t]:-}" ] && continue
        if ! alive "$t"; then
            local rc=0
            wait "${PID[$t]}" 2>/dev/null || rc=$?
            fail_target "$t" "process ${PID[$t]} exited (status $rc)"
        fi
    done
}

# ---------------------------------------------------------------- sanity
expect() {  # TARGET DESCRIPTION EXPECTED ACTUAL
    if [ "$3" != "$4" ]; then
        fail_target "$1" "sanity: $2: expected '$3', got '$4'"
        return 1
    fi
}
for t in "${TARGETS[@]}"; do
    url="http://127.0.0.1:${PORT[$t]}"
    r=$(curl -s -o "$TMP/sanity.body" -w '%{http_code} %{size_download}' -H "Host: $HOST_HDR" "$url/" || true)
    expect "$t" "GET / (status, bytes)" "200 6" "$r" || continue
    r=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $HOST_HDR" "$url/16k" || true)
    expect "$t" "GET /16k (status, bytes)" "200 16384" "$r" || continue
    if [ "$t" != origin ]; then
        r=$(curl -s -H "Host: $HOST_HDR" "$url/host" || true)
        expect "$t" "Host sent to the origin" "localhost:$ORIGIN_PORT" "$r" || continue
    fi
done
check_alive

# ---------------------------------------------------------------- load runs
HZ=$(getconf CLK_TCK)
printf 'tool\tbody\tround\ttarget\tfile\tticks\torigin_ticks\tstatus\n' >"$TMP/runs.tsv"

# run_one TOOL BODY ROUND TARGET SECONDS -> appends a row to runs.tsv (ROUND "w" = warm-up)
run_one() {
    local tool=$1 body=$2 round=$3 t=$4 secs=$5
    local path=/ out="$TMP/runs/$tool-$body-$round-$t.txt"
    [ "$body" = 16k ] && path=/16k
    [ -n "${FAILED[$t]:-}" ] && return 0
    local pids opids c0 o0 c1 o1 status=ok
    pids=$(pids_of "$t")
    opids=$(pids_of origin)
    c0=$(cpu_ticks $pids)
    o0=$(cpu_ticks $opids)
    case $tool in
        wrk)
            "${CLI[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "Host: $HOST_HDR" \
                "http://127.0.0.1:${PORT[$t]}$path" >"$out" 2>&1 || status="wrk-exit-$?"
            ;;
        h2load)
            # h2load takes the Host from ":authority"; "-H Host:" would add a
            # second Host header (a 400 everywhere)
            rm -f "$out.log"
            "${CLI[@]}" h2load --h1 -t1 -c"$CONNS" -D "$secs" --log-file="$out.log" \
                -H ":authority: $HOST_HDR" "http://127.0.0.1:${PORT[$t]}$path" >"$out" 2>&1 ||
                status="h2load-exit-$?"
            ;;
    esac
    c1=$(cpu_ticks $pids)
    o1=$(cpu_ticks $opids)
    alive "$t" || status=dead
    if [ "$round" != w ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$body" "$round" "$t" "$out" \
            "$((c1 - c0))" "$((o1 - o0))" "$status" >>"$TMP/runs.tsv"
    fi
    # a crashed or refusing proxy is reported, not restarted
    case $tool in
        wrk)
            local rps errs
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            errs=$(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';' || true)
            echo "  $tool $body round $round $t: ${rps:-?} req/s ${errs:+ [$errs]}"
            ;;
        h2load)
            local fin st
            fin=$(grep -E '^finished in' "$out" | cut -d, -f2 || true)
            st=$(grep -E '^status codes:' "$out" || true)
            echo "  $tool $body round $round $t:${fin:- ?} ${st:+ [$st]}"
            ;;
    esac
    check_alive
}

for tool in $TOOLS; do
    for body in small 16k; do
        echo "bench: $tool $body: warm-up ${WARMUP}s per target"
        for t in "${TARGETS[@]}"; do run_one "$tool" "$body" w "$t" "$WARMUP"; done
        for ((r = 1; r <= ROUNDS; r++)); do
            for t in "${TARGETS[@]}"; do run_one "$tool" "$body" "$r" "$t" "$DURATION"; done
        done
    done
done

# ---------------------------------------------------------------- memory
printf 'target\tmetric\tvalue\n' >"$TMP/mem.tsv"
mem() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TMP/mem.tsv"; }

# stream TARGET KIND(upload|download): peak and final RSS around one transfer
stream() {
    local t=$1 kind=$2 p url r flag="$TMP/sampling" peak
    p=$(serving_pid "$t")
    url="http://127.0.0.1:${PORT[$t]}"
    mem "$t" "${kind}_before_kib" "$(rss_kib "$p")"
    : >"$flag"
    (
        peak=0
        while [ -e "$flag" ]; do
            v=$(rss_kib "$p")
            [ "${v:-0}" -gt "$peak" ] && peak=$v
            sleep 0.05
        done
        echo "$peak" >"$TMP/peak"
    ) &
    local sampler=$!
    if [ "$kind" = upload ]; then
        r=$("${CLI[@]}" curl -sS -o "$TMP/upload.body" -w '%{http_code} %{size_upload}' \
            -H 'Expect:' -H "Host: $DISCARD_HOST" -T "$TMP/www/1g" "$url/discard" 2>"$TMP/curl.err" || true)
    else
        r=$("${CLI[@]}" curl -sS -o /dev/null -w '%{http_code} %{size_download}' \
            --limit-rate "${STREAM_RATE_MIB}M" -H "Host: $HOST_HDR" "$url/1g" 2>"$TMP/curl.err" || true)
    fi
    rm -f "$flag"
    wait "$sampler" || true
    peak=$(cat "$TMP/peak")
    mem "$t" "${kind}_peak_kib" "$peak"
    sleep 0.5
    mem "$t" "${kind}_after_kib" "$(rss_kib "$p")"
    mem "$t" "${kind}_result" "$(echo "$r" $(head -c 200 "$TMP/curl.err") | tr '\t' ' ')"
    echo "  $kind $STREAM_MIB MiB via $t: curl '$r' $(head -c 200 "$TMP/curl.err"), RSS peak $((peak / 1024)) MiB"
    check_alive
}

# idle TARGET: RSS with IDLE_N[TARGET] idle keep-alive client connections
idle() {
    local t=$1 p ready="$TMP/idle.ready" before with client n=${IDLE_N[$1]}
    p=$(serving_pid "$t")
    rm -f "$ready"
    sleep 1
    before=$(rss_kib "$p")
    "${CLI[@]}" "$PY" "$BENCH/idleconns.py" 127.0.0.1 "${PORT[$t]}" "$HOST_HDR" "$n" "$ready" \
        >"$TMP/idle.out" 2>&1 &
    client=$!
    for _ in $(seq 1200); do
        [ -e "$ready" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -e "$ready" ]; then
        mem "$t" idle_result "client gave up: $(tail -n 3 "$TMP/idle.out" | tr '\n\t' '  ')"
        kill "$client" 2>/dev/null || true
        wait "$client" 2>/dev/null || true
        check_alive
        return
    fi
    sleep 2
    with=$(rss_kib "$p")
    kill -USR1 "$client"
    wait "$client" || true
    mem "$t" idle_conns "$n"
    mem "$t" idle_before_kib "$before"
    mem "$t" idle_with_kib "$with"
    mem "$t" idle_result "$(tr '\n' ' ' <"$ready")"
    echo "  idle via $t: $(tr '\n' ' ' <"$ready"), RSS $((before / 1024)) -> $((with / 1024)) MiB"
    sleep 2   # let the proxy reap the closed connections
    check_alive
}

if [ "$MEMORY" = 1 ]; then
    echo "bench: memory: ${STREAM_MIB} MiB streamed at ${STREAM_RATE_MIB} MiB/s, then idle connections (nginx ${IDLE_N[nginx]}, HAProxy ${IDLE_N[haproxy]}, edgeproxy ${IDLE_N[edgeproxy]})"
    for t in nginx haproxy edgeproxy; do
        for kind in upload download; do
            [ -n "${FAILED[$t]:-}" ] || stream "$t" "$kind"
        done
    done
    for t in nginx haproxy edgeproxy; do
        [ -n "${FAILED[$t]:-}" ] || idle "$t"
    done
fi

# ---------------------------------------------------------------- report
mkdir -p "$BENCH/results"
{
    echo "edgeproxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- proxy common 2>/dev/null || echo ' (+ local changes in proxy/ common/)'), $(getconf _NPROCESSORS_ONLN) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(haproxy -v | head -n 1 | awk '{ print "haproxy", $3 }'), $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk", $2 }'), $(h2load --version | head -n 1)"
    echo "load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ROUNDS=$ROUNDS DURATION=${DURATION}s CONNS=$CONNS WARMUP=${WARMUP}s, $( [ "$PIN" = 1 ] && echo "servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU" || echo "no CPU pinning")"
    [ -n "$IDLE_NOTE" ] && echo "note: $IDLE_NOTE"
    echo
    "$PY" "$BENCH/report.py" "$TMP/runs.tsv" "$TMP/mem.tsv" "$HZ" "$IDLE_CONNS" "$STREAM_MIB" "$TMP/failures.tsv"
    if [ -n "${FAILED[edgeproxy]:-}" ] || grep -qiE 'error|fatal|abort|sanitizer' "$TMP/edgeproxy.out" 2>/dev/null; then
        echo
        echo "edgeproxy stderr (last 30 lines):"
        tail -n 30 "$TMP/edgeproxy.out" | sed 's/^/  /'
    fi
} >"$TMP/report.txt"
echo
cat "$TMP/report.txt"
cp "$TMP/report.txt" "$BENCH/results/latest.txt"
echo
echo "bench: written to bench/results/latest.txt"
