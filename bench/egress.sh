#!/usr/bin/env bash
# Egress benchmark (issue 12, Performance): edgeproxy's egress TLS listener
# next to HAProxy (TCP mode, SNI inspection) and nginx (`stream` +
# `ssl_preread`), each fed by nftables `redirect` from a sandbox network
# namespace. See bench/README.md, "Egress".
#
#   bash bench/egress.sh                                   full run (~2 min)
#   ROUNDS=1 BODY_MIB=256 NEWCONNS=300 IDLE_N=500 bash bench/egress.sh   sanity
#
# Needs root (network namespaces, nft). Builds three namespaces named
# epb<pid>-sbx/-hst/-net and deletes them at exit; only the processes it
# started are stopped (by pid).
set -euo pipefail

ROUNDS=${ROUNDS:-3}            # interleaved rounds of every measurement
BODY_MIB=${BODY_MIB:-1024}     # one download per throughput run
NEWCONNS=${NEWCONNS:-1000}     # short TLS connections per new-connection run
PARALLEL=${PARALLEL:-16}       # of those, at once
TTFB_N=${TTFB_N:-20}           # requests per TTFB run (hit, then miss)
IDLE_N=${IDLE_N:-2000}         # connections of each memory test
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}    # proxies, origin, Redis, dnsmasq
CLIENT_CPU=${CLIENT_CPU:-1}    # curl, the idle clients, this script

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$ROOT/build/edgeproxy}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
NAME=egress-bench
NGINX_TARGETS="origin nginx"
. "$BENCH/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "$NAME: needs root (network namespaces, nft)" >&2
    exit 1
fi
for tool in ip nft nginx haproxy dnsmasq redis-server redis-cli curl openssl taskset; do
    command -v "$tool" >/dev/null || { echo "$NAME: $tool is missing" >&2; exit 1; }
done
if [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
    echo "$NAME: nginx's stream module is missing (apt-get install libnginx-mod-stream)" >&2
    exit 1
fi
[ -x "$EDGEPROXY_BIN" ] || { echo "$NAME: $EDGEPROXY_BIN not built (run make)" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
HAPROXY_MAXCONN=$(( (NOFILE - 400) / 2 - 100 ))
[ "$HAPROXY_MAXCONN" -gt $((IDLE_N + 100)) ] && HAPROXY_MAXCONN=$((IDLE_N + 100))
WORKER_CONNS=$((NOFILE - 100))

# ---------------------------------------------------------------- the world
SBX=epb$$-sbx HST=epb$$-hst NET=epb$$-net
ORIGIN=192.0.2.10
NAMESERVER=198.51.100.53
EDGEPROXY_PORT=15443 HAPROXY_PORT=16443 NGINX_PORT=17443
REDIS_PORT=6379 ADMIN_PORT=9090 INGRESS_PORT=18080
# The sandbox's source address says which proxy its TCP is redirected to;
# "direct" is forwarded by the host untouched (no proxy: the reference).
TARGETS=(direct edgeproxy haproxy nginx)
declare -A SRC=([edgeproxy]=198.18.0.2 [haproxy]=198.18.0.3 [nginx]=198.18.0.4 [direct]=198.18.0.5)
declare -A LPORT=([edgeproxy]=$EDGEPROXY_PORT [haproxy]=$HAPROXY_PORT [nginx]=$NGINX_PORT)

bench_cleanup() {
    local ns
    for ns in "$SBX" "$HST" "$NET"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

make_tmp epegress

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in "$SBX" "$HST" "$NET"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
done
ip link add sb0 netns "$SBX" type veth peer name veth-sb0 netns "$HST"
ip link add in0 netns "$NET" type veth peer name up0 netns "$HST"
for a in "${SRC[@]}"; do in_ns "$SBX" ip addr add "$a/29" dev sb0; done
in_ns "$SBX" ip link set sb0 up
in_ns "$SBX" ip route add default via 198.18.0.1
in_ns "$HST" ip addr add 198.18.0.1/29 dev veth-sb0
in_ns "$HST" ip addr add 198.18.1.1/30 dev up0
in_ns "$HST" ip link set veth-sb0 up
in_ns "$HST" ip link set up0 up
for net in 192.0.2.0/24 198.51.100.0/24; do in_ns "$HST" ip route add "$net" via 198.18.1.2; done
in_ns "$HST" sysctl -qw net.ipv4.ip_forward=1
in_ns "$NET" ip addr add 198.18.1.2/30 dev in0
in_ns "$NET" ip link set in0 up
in_ns "$NET" ip addr add "$ORIGIN/32" dev lo
in_ns "$NET" ip addr add "$NAMESERVER/32" dev lo
in_ns "$NET" ip route add default via 198.18.1.1
# The same redirect for every proxy, by the sandbox's source address.
{
    echo "table inet epbench {"
    echo "  chain to_proxies {"
    echo "    type nat hook prerouting priority dstnat; policy accept;"
    for t in edgeproxy haproxy nginx; do
        echo "    iifname \"veth-sb0\" ip saddr ${SRC[$t]} tcp dport 443 redirect to :${LPORT[$t]}"
    done
    echo "  }"
    echo "}"
} | in_ns "$HST" nft -f -

if [ "$PIN" = 1 ]; then
    taskset -cp "$CLIENT_CPU" $$ >/dev/null
    PIN_SRV=(taskset -c "$SERVER_CPU")
    PIN_CLI=(taskset -c "$CLIENT_CPU")
else
    PIN_SRV=()
    PIN_CLI=()
fi
CLI=(ip netns exec "$SBX" "${PIN_CLI[@]}")

render() {  # TEMPLATE OUT
    sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN@|$ORIGIN|g" -e "s|@NAMESERVER@|$NAMESERVER|g" \
        -e "s|@EDGEPROXY_PORT@|$EDGEPROXY_PORT|g" -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" \
        -e "s|@NGINX_PORT@|$NGINX_PORT|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
        -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" -e "s|@INGRESS_PORT@|$INGRESS_PORT|g" \
        -e "s|@NOFILE@|$NOFILE|g" -e "s|@WORKER_CONNS@|$WORKER_CONNS|g" \
        -e "s|@HAPROXY_MAXCONN@|$HAPROXY_MAXCONN|g" "$1" >"$2"
}

mkdir -p "$TMP/www" "$TMP/origin" "$TMP/nginx"
truncate -s "$((BODY_MIB * 1024 * 1024))" "$TMP/www/big"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=bench.test \
    -addext "subjectAltName=DNS:bench.test,DNS:*.bench.test" 2>/dev/null
chmod -R a+rX "$TMP"
render "$BENCH/conf/egress.origin.nginx.conf" "$TMP/origin.conf"
render "$BENCH/conf/egress.nginx.conf" "$TMP/nginx.conf"
render "$BENCH/conf/egress.haproxy.cfg" "$TMP/haproxy.cfg"
render "$BENCH/conf/egress.edgeproxy.json" "$TMP/edgeproxy.json"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$NAME: namespaces $SBX $HST $NET, files in $TMP"
start dnsmasq ip netns exec "$NET" "${PIN_SRV[@]}" dnsmasq --keep-in-foreground \
    --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
    --listen-address="$NAMESERVER" --pid-file= --user=root --local-ttl=300 \
    --address=/bench.test/"$ORIGIN"
start origin ip netns exec "$NET" "${PIN_SRV[@]}" nginx -e "$TMP/origin/startup.log" \
    -p "$TMP/origin/" -c "$TMP/origin.conf" -g 'daemon off;'
start redis ip netns exec "$HST" "${PIN_SRV[@]}" redis-server --bind 127.0.0.1 \
    --port "$REDIS_PORT" --save "" --appendonly no --dir "$TMP" --daemonize no --logfile ""
wait_port redis "$REDIS_PORT" "$HST"
# edgeproxy's policy for its sandbox address: names under bench.test only.
in_ns "$HST" redis-cli -p "$REDIS_PORT" SET "sandbox:egress:${SRC[edgeproxy]}" \
    '{"sandboxId":"bench","allowOut":["bench.test","*.bench.test"],"denyOut":["0.0.0.0/0"]}' \
    >/dev/null
# The proxies, in the host namespace: start_proxy TARGET (and again for a
# fresh process before the memory tests).
start_proxy() {
    case $1 in
        edgeproxy) start edgeproxy ip netns exec "$HST" "${PIN_SRV[@]}" "$EDGEPROXY_BIN" \
            --config "$TMP/edgeproxy.json" ;;
        haproxy) start haproxy ip netns exec "$HST" "${PIN_SRV[@]}" haproxy -db \
            -f "$TMP/haproxy.cfg" ;;
        nginx) start nginx ip netns exec "$HST" "${PIN_SRV[@]}" nginx \
            -e "$TMP/nginx/startup.log" -p "$TMP/nginx/" -c "$TMP/nginx.conf" -g 'daemon off;' ;;
    esac
    wait_port "$1" "${LPORT[$1]}" "$HST"
}
for t in edgeproxy haproxy nginx; do start_proxy "$t"; done
wait_port origin 443 "$NET" "$ORIGIN"

HZ=$(getconf CLK_TCK)
OUT=$TMP/egress.tsv
printf 'test\tround\ttarget\tmetric\tvalue\n' >"$OUT"
put() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$OUT"; }
declare -A FAILED

# curl in the sandbox from TARGET's address, the name resolved to the origin
# by --resolve (the sandbox's own DNS answer), TLS checked against the
# bench's certificate.
sbx_curl() {  # TARGET NAME ARGS...
    local t=$1 name=$2
    shift 2
    "${CLI[@]}" curl -sS --cacert "$TMP/cert.pem" --interface "${SRC[$t]}" \
        --resolve "$name:443:$ORIGIN" "$@"
}

proxy_ticks() {  # TARGET -> CPU ticks of the proxy (0 for direct)
    [ "$1" = direct ] && { echo 0; return; }
    cpu_ticks $(pids_of "$1")
}

alive_or_fail() {  # TARGET
    [ "$1" = direct ] && return 0
    if ! kill -0 "${PID[$1]}" 2>/dev/null; then
        FAILED[$1]="process exited"
        echo "$NAME: $1 exited; its output:" >&2
        tail -n 20 "$TMP/$1.out" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- sanity
# Each target answers through its redirect, and each proxy refuses a name
# outside bench.test (so its SNI rule is really in force).
for t in "${TARGETS[@]}"; do
    r=$(sbx_curl "$t" bench.test -o "$TMP/sanity.body" -w '%{http_code} %{size_download}' \
        https://bench.test/ 2>"$TMP/sanity.err" || true)
    if [ "$r" != "200 6" ]; then
        FAILED[$t]="sanity: GET https://bench.test/: expected '200 6', got '$r' $(head -c 200 "$TMP/sanity.err")"
        echo "$NAME: $t FAILED: ${FAILED[$t]}" >&2
        continue
    fi
    [ "$t" = direct ] && continue
    r=$(sbx_curl "$t" evil.test -o /dev/null -w '%{http_code}' https://evil.test/ 2>/dev/null || true)
    if [ "$r" = 200 ]; then
        FAILED[$t]="sanity: evil.test was not refused"
        echo "$NAME: $t FAILED: ${FAILED[$t]}" >&2
    fi
done

# ---------------------------------------------------------------- runs
throughput() {  # ROUND TARGET
    local t=$2 c0 c1 r
    c0=$(proxy_ticks "$t")
    r=$(sbx_curl "$t" bench.test -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
        https://bench.test/big 2>"$TMP/curl.err" || true)
    c1=$(proxy_ticks "$t")
    set -- "$1" "$t" $r
    if [ "${3:-}" != 200 ] || [ "${4:-0}" != $((BODY_MIB * 1024 * 1024)) ]; then
        put throughput "$1" "$t" error "${r:-no answer} $(head -c 100 "$TMP/curl.err")"
        return
    fi
    put throughput "$1" "$t" mib_s "$(awk -v b="$5" 'BEGIN { printf "%.1f", b / 1048576 }')"
    put throughput "$1" "$t" cpu_s_gib \
        "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v m="$BODY_MIB" 'BEGIN { printf "%.3f", c / hz / (m / 1024) }')"
    echo "  throughput round $1 $t: $(awk -v b="$5" 'BEGIN { printf "%.0f", b / 1048576 }') MiB/s, proxy CPU $(((c1 - c0) * 1000 / HZ)) ms"
}

newconns() {  # ROUND TARGET: NEWCONNS short TLS connections, PARALLEL at once
    local t=$2 c0 c1 t0 t1 ok cfg="$TMP/newconns.cfg"
    c0=$(proxy_ticks "$t")
    t0=$(date +%s%N)
    sbx_curl "$t" bench.test --parallel --parallel-max "$PARALLEL" --no-sessionid \
        -H 'Connection: close' -w '%{http_code}\n' -K "$cfg" >"$TMP/newconns.out" \
        2>"$TMP/curl.err" || true
    t1=$(date +%s%N)
    c1=$(proxy_ticks "$t")
    ok=$(grep -c '^200$' "$TMP/newconns.out" || true)
    put newconns "$1" "$t" conn_s "$(awk -v n="$ok" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')"
    put newconns "$1" "$t" cpu_us_conn \
        "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$ok" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')"
    [ "$ok" = "$NEWCONNS" ] || put newconns "$1" "$t" error "$ok of $NEWCONNS answered 200 $(head -c 100 "$TMP/curl.err")"
    echo "  new connections round $1 $t: $ok in $(((t1 - t0) / 1000000)) ms, proxy CPU $(((c1 - c0) * 1000 / HZ)) ms"
}

ttfb() {  # ROUND TARGET: time to first byte, the name cached by the proxy's resolver, then not
    local t=$2 kind name i
    sbx_curl "$t" hit.bench.test -o /dev/null https://hit.bench.test/ 2>/dev/null || true
    for kind in hit miss; do
        : >"$TMP/ttfb.out"
        for ((i = 0; i < TTFB_N; i++)); do
            name=hit.bench.test
            [ "$kind" = miss ] && name="m$1x$i-$t.bench.test"
            sbx_curl "$t" "$name" -o /dev/null -w '%{time_starttransfer}\n' \
                "https://$name/" >>"$TMP/ttfb.out" 2>/dev/null || echo fail >>"$TMP/ttfb.out"
        done
        put ttfb "$1" "$t" "${kind}_ms" "$(grep -v fail "$TMP/ttfb.out" | sort -n |
            awk '{ a[NR] = $1 } END { printf "%.2f", NR ? a[int((NR + 1) / 2)] * 1000 : -1 }')"
        if grep -q fail "$TMP/ttfb.out"; then
            put ttfb "$1" "$t" error "$(grep -c fail "$TMP/ttfb.out") $kind requests failed"
        fi
    done
}

# memory TARGET KIND(idle|silent): the proxy's RSS growth per connection
# with IDLE_N connections open through it: idle = TLS done, one request
# answered, then quiet (spliced); silent = connected, nothing sent (peeking).
memory() {
    local t=$1 kind=$2 p before with client ready="$TMP/mem.ready" flag=--tls
    [ "$kind" = silent ] && flag=--silent
    p=$(serving_pid "$t")
    rm -f "$ready"
    sleep 1
    before=$(rss_kib "$p")
    "${CLI[@]}" "$PY" "$BENCH/idleconns.py" --src "${SRC[$t]}" "$flag" "$ORIGIN" 443 bench.test \
        "$IDLE_N" "$ready" >"$TMP/mem.out" 2>&1 &
    client=$!
    for _ in $(seq 1200); do
        [ -e "$ready" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -e "$ready" ]; then
        put "mem_$kind" 1 "$t" error "client gave up: $(tail -n 2 "$TMP/mem.out" | tr '\n\t' '  ')"
        kill "$client" 2>/dev/null || true
        wait "$client" 2>/dev/null || true
        return
    fi
    sleep 2
    with=$(rss_kib "$p")
    kill -USR1 "$client"
    wait "$client" || true
    put "mem_$kind" 1 "$t" kib_conn "$(awk -v a="$before" -v b="$with" -v n="$IDLE_N" 'BEGIN { printf "%.2f", (b - a) / n }')"
    put "mem_$kind" 1 "$t" result "$(tr '\n' ' ' <"$ready")"
    echo "  $kind connections via $t: $(tr '\n' ' ' <"$ready"), RSS $((before / 1024)) -> $((with / 1024)) MiB"
    sleep 2   # the proxy reaps the closed connections
}

for ((i = 0; i < NEWCONNS; i++)); do
    echo 'url = "https://bench.test/"'
    echo 'output = "/dev/null"'
done >"$TMP/newconns.cfg"

run_all() {  # FN: ROUNDS interleaved rounds over the targets still standing
    local r t
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in "${TARGETS[@]}"; do
            [ -n "${FAILED[$t]:-}" ] && continue
            "$1" "$r" "$t"
            alive_or_fail "$t" || true
        done
    done
}
echo "$NAME: throughput, $BODY_MIB MiB per run"
run_all throughput
echo "$NAME: new connections, $NEWCONNS per run, $PARALLEL at once"
run_all newconns
echo "$NAME: time to first byte, $TTFB_N requests per case"
run_all ttfb
# edgeproxy's resolver counters (misses are queries), before its restart
dns=$(in_ns "$HST" curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^edgeproxy_egress_dns_(cache_hits|queries)_total/ { printf "%s=%s ", $1, $2 }')
echo "$NAME: memory, $IDLE_N connections per test, each on a freshly started proxy"
for kind in idle silent; do
    for t in edgeproxy haproxy nginx; do
        [ -n "${FAILED[$t]:-}" ] && continue
        # Memory freed by earlier runs stays in the RSS and would be
        # reused: growth is measured from a new process.
        kill -TERM "${PID[$t]}"
        wait_gone "${PID[$t]}"
        start_proxy "$t"
        memory "$t" "$kind"
        alive_or_fail "$t" || true
    done
done

# ---------------------------------------------------------------- report
for t in "${!FAILED[@]}"; do put failed - "$t" reason "${FAILED[$t]}"; done
mkdir -p "$BENCH/results"
{
    echo "edgeproxy egress benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(getconf _NPROCESSORS_ONLN) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "nginx $(nginx -v 2>&1 | sed 's|.*/||') (stream, ssl_preread), $(haproxy -v | head -n 1 | awk '{ print "haproxy", $3 }') (mode tcp, splice-auto), $(curl --version | head -n 1 | cut -d' ' -f1-2)"
    echo "load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ROUNDS=$ROUNDS BODY_MIB=$BODY_MIB NEWCONNS=$NEWCONNS PARALLEL=$PARALLEL TTFB_N=$TTFB_N IDLE_N=$IDLE_N, $( [ "$PIN" = 1 ] && echo "servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU" || echo "no CPU pinning")"
    echo "edgeproxy resolver: $dns"
    echo
    "$PY" "$BENCH/egress_report.py" "$OUT"
} >"$TMP/report.txt"
echo
cat "$TMP/report.txt"
cp "$TMP/report.txt" "$BENCH/results/egress-latest.txt"
echo
echo "$NAME: written to bench/results/egress-latest.txt"
