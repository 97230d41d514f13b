#!/usr/bin/env bash
# edgeproxy side-by-side benchmark (issues 5 and 13). See bench/README.md.
#
#   make bench                       full run (3 rounds x 10 s, 64 connections)
#   ROUNDS=1 DURATION=2 make bench   smoke run
#   make bench-tls                   HTTPS/1.1, h2, h2c and TLS handshakes
#   TOOLS="wrk h2load https h2 h2c handshake" bash bench/run.sh   everything
#
# Everything runs on loopback from a temp dir with the configs in bench/conf;
# no system service or /etc config is used, and only the processes started
# here are stopped (by pid).
set -euo pipefail

ROUNDS=${ROUNDS:-3}              # interleaved rounds per tool and body size
DURATION=${DURATION:-10}         # seconds per measured run
CONNS=${CONNS:-64}               # client connections (wrk -c, h2load -c)
WARMUP=${WARMUP:-2}              # seconds of warm-up per target and phase
# Load phases, in this order (empty: memory tests only):
#   wrk, h2load  plain HTTP/1.1 (wrk; h2load --h1), with the origin hit directly too
#   https        wrk over TLS (HTTP/1.1)
#   h2           h2load -m $H2_STREAMS over TLS, ALPN h2
#   h2c          h2load -m $H2_STREAMS, HTTP/2 with prior knowledge on a plain port
#   handshake    hsload: a new TLS connection (full handshake) per request
TOOLS=${TOOLS-"wrk h2load"}
BODIES=${BODIES:-"small 16k"}    # response bodies per phase (handshake: small only)
H2_STREAMS=${H2_STREAMS:-10}     # h2load -m: concurrent streams per connection
HS_CONNS=${HS_CONNS:-$CONNS}     # connections in flight in the handshake phase
TLS_KEY=${TLS_KEY:-rsa2048}      # certificate key: rsa2048 or ec256
H2O=${H2O:-1}                    # 0: leave h2o out
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
need_pkgs nginx haproxy wrk nghttp2-client redis-server redis-tools curl python3 util-linux \
    openssl gcc libc6-dev libssl-dev
[ "$H2O" = 1 ] && need_pkgs h2o
case $TLS_KEY in
    rsa2048 | ec256) ;;
    *) echo "bench: TLS_KEY is rsa2048 or ec256" >&2; exit 1 ;;
esac

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
H2O_PORT=$((BASE_PORT + 8))             # h2o's plain port: HTTP/1.1 and h2c
NGINX_H2C_PORT=$((BASE_PORT + 9))
HAPROXY_H2C_PORT=$((BASE_PORT + 10))
NGINX_TLS_PORT=$((BASE_PORT + 11))
HAPROXY_TLS_PORT=$((BASE_PORT + 12))
H2O_TLS_PORT=$((BASE_PORT + 13))
EDGEPROXY_TLS_PORT=$((BASE_PORT + 14))
EDGEPROXY_BASE_TLS_PORT=$((BASE_PORT + 15))
SANDBOX=bench1
DOMAIN=bench.local
HOST_HDR="$ORIGIN_PORT-$SANDBOX.$DOMAIN"        # edgeproxy -> origin
DISCARD_HOST="$DISCARD_PORT-$SANDBOX.$DOMAIN"   # edgeproxy -> discard server

NAME=bench
NGINX_TARGETS="origin nginx"
HELPER_TARGETS="h2o"
. "$BENCH/lib.sh"
ports_free $ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $EDGEPROXY_PORT $REDIS_PORT $DISCARD_PORT \
    $NGINX_H2C_PORT $HAPROXY_H2C_PORT $NGINX_TLS_PORT $HAPROXY_TLS_PORT $EDGEPROXY_TLS_PORT
[ "$H2O" = 1 ] && ports_free $H2O_PORT $H2O_TLS_PORT
[ -n "$EDGEPROXY_BASE_BIN" ] && ports_free $EDGEPROXY_BASE_PORT $EDGEPROXY_BASE_TLS_PORT

# ---------------------------------------------------------------- processes
make_tmp epbench

# render TEMPLATE OUT: every @NAME@ in TEMPLATE becomes $NAME (these names only)
render() {
    local v args=()
    for v in TMP HOST_HDR ORIGIN_PORT REDIS_PORT DISCARD_PORT NOFILE WORKER_CONNS HAPROXY_MAXCONN \
        NGINX_PORT NGINX_TLS_PORT NGINX_H2C_PORT HAPROXY_PORT HAPROXY_TLS_PORT HAPROXY_H2C_PORT \
        H2O_PORT H2O_TLS_PORT EDGEPROXY_PORT EDGEPROXY_TLS_PORT; do
        args+=(-e "s|@$v@|${!v}|g")
    done
    sed "${args[@]}" "$1" >"$2"
    if grep -q '@[A-Z_]*@' "$2"; then
        echo "$NAME: $1: left unrendered: $(grep -o '@[A-Z_]*@' "$2" | sort -u | tr '\n' ' ')" >&2
        exit 1
    fi
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

cpu_stat() {  # CPU -> "busy total" jiffies of that CPU from /proc/stat
    awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat
}
busy_pct() {  # BUSY0 TOTAL0 BUSY1 TOTAL1 (two cpu_stat) -> % busy in between
    [ "$4" -gt "$2" ] && echo $((100 * ($3 - $1) / ($4 - $2)))
}

# tls_material DIR: a test CA and a wildcard certificate for *.$DOMAIN signed
# by it (key: $TLS_KEY), as PEM cert + key, and cert+key in one file (HAProxy)
tls_material() {
    local d=$1 newkey
    case $TLS_KEY in
        rsa2048) newkey=(-newkey rsa:2048) ;;
        ec256) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    esac
    mkdir -p "$d"
    openssl req -x509 "${newkey[@]}" -nodes -days 30 -subj "/CN=edgeproxy bench CA" \
        -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req "${newkey[@]}" -nodes -subj "/CN=*.$DOMAIN" -keyout "$d/wild.key" \
        -out "$d/wild.csr" 2>/dev/null
    printf 'subjectAltName=DNS:*.%s,DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        "$DOMAIN" "$DOMAIN" >"$d/ext.cnf"
    openssl x509 -req -in "$d/wild.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 30 -extfile "$d/ext.cnf" -out "$d/wild.pem" 2>/dev/null
    cat "$d/wild.pem" "$d/wild.key" >"$d/wild.haproxy.pem"
    chmod -R a+rX "$d"
}

mkdir -p "$TMP/www" "$TMP/origin" "$TMP/nginx" "$TMP/h2o" "$TMP/runs"
printf 'hello\n' >"$TMP/www/index"
head -c 16384 /dev/urandom >"$TMP/www/16k"
truncate -s "$((STREAM_MIB * 1024 * 1024))" "$TMP/www/1g"   # sparse
chmod -R a+rX "$TMP/www"

tls_material "$TMP/tls"
render "$BENCH/conf/origin.nginx.conf" "$TMP/origin.conf"
render "$BENCH/conf/proxy.nginx.conf" "$TMP/nginx.conf"
render "$BENCH/conf/haproxy.cfg" "$TMP/haproxy.cfg"
render "$BENCH/conf/h2o.conf" "$TMP/h2o.conf"
render "$BENCH/conf/edgeproxy.json" "$TMP/edgeproxy.json"
(EDGEPROXY_PORT=$EDGEPROXY_BASE_PORT EDGEPROXY_TLS_PORT=$EDGEPROXY_BASE_TLS_PORT
    render "$BENCH/conf/edgeproxy.json" "$TMP/edgeproxy_base.json")
# the handshake load generator (bench/hsload.c: why not h2load or wrk)
cc -O2 -Wall -o "$TMP/hsload" "$BENCH/hsload.c" -lssl -lcrypto

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

# Per target: PORT plain HTTP/1.1, TLS_PORT TLS (ALPN h2, http/1.1), H2C_PORT
# HTTP/2 with prior knowledge (edgeproxy and h2o take it on the plain port).
TARGETS=(origin nginx haproxy)
declare -A PORT=([origin]=$ORIGIN_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT
    [edgeproxy]=$EDGEPROXY_PORT)
declare -A TLS_PORT=([nginx]=$NGINX_TLS_PORT [haproxy]=$HAPROXY_TLS_PORT
    [edgeproxy]=$EDGEPROXY_TLS_PORT)
declare -A H2C_PORT=([nginx]=$NGINX_H2C_PORT [haproxy]=$HAPROXY_H2C_PORT
    [edgeproxy]=$EDGEPROXY_PORT)
if [ "$H2O" = 1 ]; then
    # TLS 1.3 and its cipher suite through OPENSSL_CONF (conf/h2o.conf says why)
    start h2o "${SRV[@]}" env OPENSSL_CONF="$BENCH/conf/openssl-tls13.cnf" h2o -c "$TMP/h2o.conf"
    wait_port h2o "$H2O_PORT"
    TARGETS+=(h2o)
    PORT[h2o]=$H2O_PORT
    TLS_PORT[h2o]=$H2O_TLS_PORT
    H2C_PORT[h2o]=$H2O_PORT
fi
TARGETS+=(edgeproxy)
if [ -n "$EDGEPROXY_BASE_BIN" ]; then
    start edgeproxy_base "${SRV[@]}" "$EDGEPROXY_BASE_BIN" --config "$TMP/edgeproxy_base.json"
    wait_port edgeproxy_base "$EDGEPROXY_BASE_PORT"
    TARGETS+=(edgeproxy_base)
    PORT[edgeproxy_base]=$EDGEPROXY_BASE_PORT
    TLS_PORT[edgeproxy_base]=$EDGEPROXY_BASE_TLS_PORT
    H2C_PORT[edgeproxy_base]=$EDGEPROXY_BASE_PORT
fi

# tool_targets TOOL: the targets a phase measures (the origin speaks plain HTTP/1.1 only)
tool_targets() {
    local t
    for t in "${TARGETS[@]}"; do
        case $1 in wrk | h2load) ;; *) [ "$t" = origin ] && continue ;; esac
        echo "$t"
    done
}
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
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
# sane TARGET MODE: GET /, /16k and /host through TARGET as the load tools of
# MODE will send them (h1: plain HTTP/1.1; https: HTTP/1.1 over TLS; h2: h2
# over TLS; h2c: HTTP/2 with prior knowledge). curl is told the protocol
# and checks it got it.
sane() {
    local t=$1 mode=$2 url opts=() want_ver r
    case $mode in
        h1) url="http://127.0.0.1:${PORT[$t]}"; opts=(--http1.1 -H "Host: $HOST_HDR"); want_ver=1.1 ;;
        https | h2)
            url="https://$HOST_HDR:${TLS_PORT[$t]}"
            opts=(--cacert "$TMP/tls/ca.pem" --resolve "$HOST_HDR:${TLS_PORT[$t]}:127.0.0.1"
                --tlsv1.3 -H "Host: $HOST_HDR")
            if [ "$mode" = h2 ]; then opts+=(--http2); want_ver=2; else opts+=(--http1.1); want_ver=1.1; fi
            ;;
        h2c)
            url="http://127.0.0.1:${H2C_PORT[$t]}"
            opts=(--http2-prior-knowledge -H "Host: $HOST_HDR"); want_ver=2
            ;;
    esac
    r=$(curl -s "${opts[@]}" -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$url/" || true)
    expect "$t" "$mode GET / (status, bytes, HTTP version)" "200 6 $want_ver" "$r" || return 1
    r=$(curl -s "${opts[@]}" -o /dev/null -w '%{http_code} %{size_download}' "$url/16k" || true)
    expect "$t" "$mode GET /16k (status, bytes)" "200 16384" "$r" || return 1
    if [ "$t" != origin ]; then
        r=$(curl -s "${opts[@]}" "$url/host" || true)
        expect "$t" "$mode: Host sent to the origin" "localhost:$ORIGIN_PORT" "$r" || return 1
    fi
}

# tls_negotiated TARGET [ALPN]: what a TLS client offering only what
# conf/openssl-tls13.cnf allows (wrk's settings; wrk sends no ALPN)
# negotiates with TARGET: "protocol cipher group alpn" ("-" for none)
tls_negotiated() {
    local out alpn=()
    [ -n "${2:-}" ] && alpn=(-alpn "$2")
    out=$(OPENSSL_CONF="$BENCH/conf/openssl-tls13.cnf" timeout 5 openssl s_client \
        -connect "127.0.0.1:${TLS_PORT[$1]}" -servername "$HOST_HDR" "${alpn[@]}" </dev/null 2>/dev/null || true)
    local p c g a
    # "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"
    p=$(sed -n 's/^New, \([^,]*\), Cipher is .*/\1/p' <<<"$out" | head -n 1)
    c=$(sed -n 's/^New, [^,]*, Cipher is //p' <<<"$out" | head -n 1)
    g=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -n 1)
    a=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -n 1)
    echo "${p:--} ${c:--} ${g:--} ${a:--}"
}

printf 'target\tclient\tnegotiated\n' >"$TMP/tls_check.tsv"
for t in "${TARGETS[@]}"; do
    has_tool wrk || has_tool h2load || [ "$t" != origin ] || continue
    { has_tool wrk || has_tool h2load || [ "$MEMORY" = 1 ]; } && { sane "$t" h1 || continue; }
    [ "$t" = origin ] && continue
    has_tool https && { sane "$t" https || continue; }
    { has_tool h2 || has_tool handshake; } && { sane "$t" h2 || continue; }
    has_tool h2c && { sane "$t" h2c || continue; }
    if has_tool https || has_tool h2 || has_tool handshake; then
        printf '%s\t%s\t%s\n' "$t" "no ALPN (as wrk)" "$(tls_negotiated "$t")" >>"$TMP/tls_check.tsv"
        printf '%s\t%s\t%s\n' "$t" "ALPN h2,http/1.1" "$(tls_negotiated "$t" h2,http/1.1)" \
            >>"$TMP/tls_check.tsv"
    fi
done
check_alive

# ---------------------------------------------------------------- load runs
HZ=$(getconf CLK_TCK)
printf 'tool\tbody\tround\ttarget\tfile\tticks\torigin_ticks\tstatus\tsrv_busy\tcli_busy\n' >"$TMP/runs.tsv"

# the TLS 1.3 settings every client offers (and nothing else): h2load and
# hsload take them as options, wrk through OPENSSL_CONF
TLS13_SUITE=TLS_AES_128_GCM_SHA256
TLS13_GROUP=X25519

# load TOOL TARGET PATH SECONDS OUT: one run of the load generator
load() {
    local tool=$1 t=$2 path=$3 secs=$4 out=$5
    local h2opts=(-t1 -c"$CONNS" -m"$H2_STREAMS" -D "$secs" --log-file="$out.log")
    rm -f "$out.log"
    case $tool in
        wrk)
            "${CLI[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "Host: $HOST_HDR" \
                "http://127.0.0.1:${PORT[$t]}$path" ;;
        h2load)
            # h2load takes the Host from ":authority"; "-H Host:" would add a
            # second Host header (a 400 everywhere)
            "${CLI[@]}" h2load --h1 -t1 -c"$CONNS" -D "$secs" --log-file="$out.log" \
                -H ":authority: $HOST_HDR" "http://127.0.0.1:${PORT[$t]}$path" ;;
        https)
            # the URL's host is the SNI; sni.lua connects to 127.0.0.1
            OPENSSL_CONF="$BENCH/conf/openssl-tls13.cnf" "${CLI[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" \
                --latency -s "$BENCH/sni.lua" -H "Host: $HOST_HDR" \
                "https://$HOST_HDR:${TLS_PORT[$t]}$path" ;;
        h2)
            # the URL's host is the SNI and :authority; --connect-to the port
            "${CLI[@]}" h2load "${h2opts[@]}" --tls13-ciphers="$TLS13_SUITE" --groups="$TLS13_GROUP" \
                --connect-to="127.0.0.1:${TLS_PORT[$t]}" "https://$HOST_HDR$path" ;;
        h2c)
            "${CLI[@]}" h2load "${h2opts[@]}" --connect-to="127.0.0.1:${H2C_PORT[$t]}" "http://$HOST_HDR$path" ;;
        handshake)
            "${CLI[@]}" "$TMP/hsload" -c "$HS_CONNS" -d "$secs" -s "$HOST_HDR" -H "$HOST_HDR" -p "$path" \
                -C "$TLS13_SUITE" -G "$TLS13_GROUP" "127.0.0.1:${TLS_PORT[$t]}" ;;
    esac
}

# run_one TOOL BODY ROUND TARGET SECONDS -> appends a row to runs.tsv (ROUND "w" = warm-up)
run_one() {
    local tool=$1 body=$2 round=$3 t=$4 secs=$5
    local path=/ out="$TMP/runs/$tool-$body-$round-$t.txt"
    [ "$body" = 16k ] && path=/16k
    [ -n "${FAILED[$t]:-}" ] && return 0
    local pids opids c0 o0 c1 o1 s0 s1 k0 k1 status=ok
    pids=$(pids_of "$t")
    opids=$(pids_of origin)
    s0=$(cpu_stat "$SERVER_CPU")
    k0=$(cpu_stat "$CLIENT_CPU")
    c0=$(cpu_ticks $pids)
    o0=$(cpu_ticks $opids)
    load "$tool" "$t" "$path" "$secs" "$out" >"$out" 2>&1 || status="$tool-exit-$?"
    c1=$(cpu_ticks $pids)
    o1=$(cpu_ticks $opids)
    s1=$(cpu_stat "$SERVER_CPU")
    k1=$(cpu_stat "$CLIENT_CPU")
    alive "$t" || status=dead
    if [ "$round" != w ]; then
        # busy %: of the server CPU and the client CPU over the run (with PIN=1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$body" "$round" "$t" "$out" \
            "$((c1 - c0))" "$((o1 - o0))" "$status" \
            "$(busy_pct $s0 $s1)" "$(busy_pct $k0 $k1)" \
            >>"$TMP/runs.tsv"
    fi
    # a crashed or refusing proxy is reported, not restarted
    local res
    case $tool in
        wrk | https)
            res="$(awk '/^Requests\/sec:/ { print $2 }' "$out") req/s"
            res="$res $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';' || true)" ;;
        h2load | h2 | h2c)
            res="$(grep -E '^finished in' "$out" | cut -d, -f2 || true)"
            res="$res $(grep -E '^status codes:' "$out" || true)" ;;
        handshake)
            res="$(sed -n 's/^connections\/s: //p' "$out") connections/s"
            res="$res $(grep -E '^(connections|handshakes):' "$out" | paste -sd';' || true)" ;;
    esac
    echo "  $tool $body round $round $t: $res"
    check_alive
}

for tool in $TOOLS; do
    case $tool in
        wrk | h2load | https | h2 | h2c | handshake) ;;
        *) echo "bench: unknown tool '$tool' in TOOLS" >&2; exit 1 ;;
    esac
    bodies=$BODIES
    [ "$tool" = handshake ] && bodies=small   # the handshake is the point, not the body
    mapfile -t tts < <(tool_targets "$tool")
    for body in $bodies; do
        echo "bench: $tool $body: warm-up ${WARMUP}s per target"
        for t in "${tts[@]}"; do run_one "$tool" "$body" w "$t" "$WARMUP"; done
        for ((r = 1; r <= ROUNDS; r++)); do
            for t in "${tts[@]}"; do run_one "$tool" "$body" "$r" "$t" "$DURATION"; done
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
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (+ local changes outside bench/)'), $(getconf _NPROCESSORS_ONLN) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "edgeproxy: $EDGEPROXY_BIN${EDGEPROXY_BASE_BIN:+; edgeproxy_base: $EDGEPROXY_BASE_BIN}"
    echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(haproxy -v | head -n 1 | awk '{ print "haproxy", $3 }')$( [ "$H2O" = 1 ] && h2o --version | head -n 1 | awk '{ print ", h2o", $3 }'), $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk", $2 }'), $(h2load --version | head -n 1), $(openssl version | awk '{ print "OpenSSL", $2 }')"
    echo "load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ROUNDS=$ROUNDS DURATION=${DURATION}s CONNS=$CONNS WARMUP=${WARMUP}s, $( [ "$PIN" = 1 ] && echo "servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU" || echo "no CPU pinning")"
    if has_tool https || has_tool h2 || has_tool h2c || has_tool handshake; then
        echo "TLS: 1.3 only, $TLS13_SUITE, $TLS13_GROUP; certificate *.$DOMAIN, $TLS_KEY key, signed by a test CA; HTTP/2: $H2_STREAMS streams per connection from h2load (-m), servers allow 100; handshake phase: $HS_CONNS connections in flight"
    fi
    [ -n "$IDLE_NOTE" ] && echo "note: $IDLE_NOTE"
    echo
    "$PY" "$BENCH/report.py" "$TMP/runs.tsv" "$TMP/mem.tsv" "$HZ" "$IDLE_CONNS" "$STREAM_MIB" \
        "$TMP/failures.tsv" "$TMP/tls_check.tsv"
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
