#!/usr/bin/env bash
# edgeproxy soak (issue 6): the ASan+UBSan build under mixed load for N
# seconds, with Redis restarted once in the middle and a record rewritten and
# invalidated (PUBLISH) every second. A short warm-up run of the same mix
# comes first; then the load stops and the proxy idles, which gives the
# baselines (RSS, open fds). At the end: requests and unexpected errors per
# stream, RSS growth, open fds back to baseline once the load is gone, exit
# code after SIGTERM, and the proxy's stderr checked for sanitizer reports; a
# summary is printed. Not part of `make test` (it is long and its RSS bound
# is a heuristic).
#
#   bash bench/soak.sh            180 s (plus ~20 s warm-up and settling)
#   bash bench/soak.sh 20         20 s  (the first argument, or DURATION=20)
#   EDGEPROXY_BIN=build/edgeproxy MAX_RSS_GROWTH_MB=32 bash bench/soak.sh
#
# Load:
#   healthy   public sandbox, keep-alive          wrk -c8   only 2xx
#   private   allowPublicTraffic false, token     wrk -c4   only 2xx
#   unknown   sandbox not in Redis                wrk -c4   502 (503 while
#                                                           Redis is down)
#   close     healthy, "Connection: close"        wrk -c4   only 2xx
#             (a new connection per request)
#   bench/soak_mix.py (Python, against the test suite's EchoUpstream):
#   upload-cl / upload-chunked   POST 64 KiB..1 MiB, Content-Length / chunked
#   websocket      Upgrade, a few frames echoed, close frame, close; looped
#   err-unknown 502 (503 while Redis is down), err-403 private without token,
#   err-400 malformed head, err-refused 502 (upstream port refuses)
# The proxy's keep-alive and upstream pool idle timeouts are set to 2 s so
# that idle connections are gone within seconds of the load stopping.
# Everything binds to 127.0.0.1, lives in a temp dir, and only the processes
# started here are stopped (by pid). Exit 0 when every check passed.
set -euo pipefail

DURATION=${1:-${DURATION:-180}}
OUTAGE_S=${OUTAGE_S:-2}                  # how long Redis stays down
MAX_RSS_GROWTH_MB=${MAX_RSS_GROWTH_MB:-16}  # end vs after warm-up
WARMUP_S=${WARMUP_S:-10}                 # the warm-up run before the baselines
FD_SLACK=${FD_SLACK:-3}                  # open fds at the end: baseline +- this
FD_WAIT_S=${FD_WAIT_S:-5}                # how long idle connections may take to go
KEEPALIVE_MS=${KEEPALIVE_MS:-2000}       # client keep-alive and upstream pool idle
WORKERS=${WORKERS:-2}
KEEP_TMP=${KEEP_TMP:-0}                  # 1: keep the temp dir (logs)

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$ROOT/build/san/edgeproxy}

if [ "$DURATION" -lt 10 ] 2>/dev/null; then
    echo "soak: duration must be at least 10 s" >&2
    exit 2
fi
for tool in wrk redis-server redis-cli curl; do
    command -v "$tool" >/dev/null || { echo "soak: $tool not installed (sh scripts/deps.sh)" >&2; exit 2; }
done
if [ ! -x "$EDGEPROXY_BIN" ]; then
    echo "soak: building $EDGEPROXY_BIN"
    make -s build/san/edgeproxy
fi

TMP=$(mktemp -d /tmp/edgeproxy-soak.XXXXXX)
PIDS=()            # everything started here, stopped by pid at exit
REDIS_PID=""
PROXY_PID=""

cleanup() {
    local p
    for p in "${PIDS[@]}" $REDIS_PID $PROXY_PID; do
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$KEEP_TMP" = 1 ]; then
        echo "soak: logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

REDIS_PORT=$(free_port)
UP_PORT=$(free_port)
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
REFUSED_PORT=$(free_port)                # nothing listens there
DOMAIN=sandbox.test
HEALTHY=soakhealthy
PRIVATE=soakprivate
UNKNOWN=soakunknown
TOKEN=soak-token-$RANDOM$RANDOM

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# ---------------------------------------------------------------- Redis
start_redis() {
    # RDB in the temp dir: a restart keeps the records, as a real one would.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$TMP" --dbfilename soak.rdb --protected-mode no --daemonize no \
        >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    local i
    for i in $(seq 1 200); do
        [ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    echo "soak: redis-server did not start" >&2
    exit 1
}

stop_redis() {
    rcli SAVE >/dev/null
    kill -TERM "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}

healthy_record() {
    printf '{"address":"127.0.0.1","allowPublicTraffic":true,"executionId":"e%d"}' "$1"
}

start_redis
rcli SET "sandbox:$HEALTHY" "$(healthy_record 0)" >/dev/null
rcli SET "sandbox:$PRIVATE" "{\"address\":\"127.0.0.1\",\"allowPublicTraffic\":false,\"trafficAccessToken\":\"$TOKEN\"}" >/dev/null
rcli DEL "sandbox:$UNKNOWN" >/dev/null

# ---------------------------------------------------------------- upstream
# A keep-alive HTTP/1.1 server that keeps no per-request state (the test
# suite's EchoUpstream records every request: not for a long run).
"$PY" - "$UP_PORT" >"$TMP/upstream.log" 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"soak ok\n" * 32

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go in separate writes

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PIDS+=($!)
for i in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$UP_PORT/" && break
    sleep 0.05
done

# ---------------------------------------------------------------- proxy
# The test suite's base config (every key explicit), on our ports.
# Short client keep-alive and upstream pool idle timeouts: the fd check at the
# end waits for idle connections to be closed.
"$PY" - "$TMP/edgeproxy.json" "$PROXY_PORT" "$ADMIN_PORT" "$REDIS_PORT" "$WORKERS" "$KEEPALIVE_MS" <<'EOF'
import json, sys
sys.path.insert(0, "test/integration")
import harness
path, port, admin, redis, workers, keepalive = sys.argv[1], *map(int, sys.argv[2:])
cfg = harness.merge(harness.base_config(port, admin, "redis://127.0.0.1:%d/0" % redis),
                    {"workers": workers, "log": {"level": "info"},
                     "client": {"keepalive_timeout_ms": keepalive},
                     "upstream": {"pool_idle_timeout_ms": keepalive}})
open(path, "w").write(json.dumps(cfg, indent=2))
EOF
# A small quarantine so RSS reflects live memory, not ASan's recycling bin.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
"$EDGEPROXY_BIN" --config "$TMP/edgeproxy.json" >"$TMP/proxy.stderr" 2>&1 &
PROXY_PID=$!
for i in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$TMP/proxy.stderr" >&2; echo "soak: proxy exited" >&2; exit 1; }
    sleep 0.05
done

host() { echo "$UP_PORT-$1.$DOMAIN"; }
status() { curl -s -o /dev/null -w '%{http_code}' -H "Host: $(host "$1")" "${@:2}" "http://127.0.0.1:$PROXY_PORT/" || true; }

for i in $(seq 1 100); do
    [ "$(status $HEALTHY)" = 200 ] && break
    sleep 0.05
done
pre_h=$(status $HEALTHY)
pre_p=$(status $PRIVATE -H "e2b-traffic-access-token: $TOKEN")
pre_u=$(status $UNKNOWN)
if [ "$pre_h" != 200 ] || [ "$pre_p" != 200 ] || [ "$pre_u" != 502 ]; then
    echo "soak: setup check failed: healthy $pre_h, private $pre_p, unknown $pre_u (want 200 200 502)" >&2
    cat "$TMP/proxy.stderr" >&2
    exit 1
fi

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PROXY_PID/status" 2>/dev/null || echo 0; }
fd_count() { ls "/proc/$PROXY_PID/fd" 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- load
URL="http://127.0.0.1:$PROXY_PORT"
LOAD_PIDS=()
start_load() { # seconds tag: every stream, in the background
    local secs=$1 tag=$2
    LOAD_PIDS=()
    wrk -t1 -c8 -d"${secs}s" --timeout 5s -H "Host: $(host $HEALTHY)" "$URL/healthy" \
        >"$TMP/$tag-healthy.txt" 2>&1 &
    LOAD_PIDS+=($!)
    wrk -t1 -c4 -d"${secs}s" --timeout 5s -H "Host: $(host $PRIVATE)" \
        -H "e2b-traffic-access-token: $TOKEN" "$URL/private" >"$TMP/$tag-private.txt" 2>&1 &
    LOAD_PIDS+=($!)
    wrk -t1 -c4 -d"${secs}s" --timeout 5s -H "Host: $(host $UNKNOWN)" "$URL/unknown" \
        >"$TMP/$tag-unknown.txt" 2>&1 &
    LOAD_PIDS+=($!)
    wrk -t1 -c4 -d"${secs}s" --timeout 5s -H "Host: $(host $HEALTHY)" -H "Connection: close" \
        "$URL/close" >"$TMP/$tag-close.txt" 2>&1 &
    LOAD_PIDS+=($!)
    "$PY" bench/soak_mix.py --proxy-port "$PROXY_PORT" --domain "$DOMAIN" --sid "$HEALTHY" \
        --private-sid "$PRIVATE" --private-port "$UP_PORT" --unknown-sid "$UNKNOWN" \
        --refused-port "$REFUSED_PORT" --duration "$secs" --out "$TMP/$tag-mix.json" \
        >"$TMP/$tag-mix.log" 2>&1 &
    LOAD_PIDS+=($!)
    PIDS+=("${LOAD_PIDS[@]}")
}
wait_load() {
    local p
    for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; done
}
# Open fds once idle: wait until the count is at most $1 (or, with no target,
# until it has not changed for 1 s), for at most $2 seconds. Prints the count.
settle_fds() {
    local target=$1 limit=$2 n prev=-1 same=0 i
    for i in $(seq 1 $(( limit * 10 ))); do
        n=$(fd_count)
        if [ -n "$target" ]; then
            [ "$n" -le "$target" ] && break
        else
            if [ "$n" = "$prev" ]; then same=$(( same + 1 )); else same=0; fi
            [ "$same" -ge 10 ] && break
            prev=$n
        fi
        sleep 0.1
    done
    echo "$n"
}

echo "soak: ${WARMUP_S}s warm-up + ${DURATION}s, proxy pid $PROXY_PID ($EDGEPROXY_BIN), redis :$REDIS_PORT, upstream :$UP_PORT"
rss_start=$(rss_kb)
fds_start=$(fd_count)
start_load "$WARMUP_S" warm
sleep "$WARMUP_S"
wait_load
# Baseline: load stopped, clients gone, idle keep-alive and pool connections
# timed out (KEEPALIVE_MS), the count steady.
sleep $(( KEEPALIVE_MS / 1000 + 1 ))
fds_base=$(settle_fds "" 10)
rss_base=$(rss_kb)
echo "soak: baseline after warm-up: RSS $(( rss_base / 1024 )) MiB, $fds_base open fds"

start_load "$DURATION" main
RESTART_AT=$(( DURATION / 2 ))
rss_max=$rss_base
invalidations=0
invalidation_failures=0
restart_note="not done"
readyz_down="not seen"
t0=$(date +%s)
for t in $(seq 1 "$DURATION"); do
    # One tick a second, against the wall clock (the work below takes time).
    while [ $(( $(date +%s) - t0 )) -lt "$t" ]; do sleep 0.1; done
    if [ -n "$REDIS_PID" ] &&
       rcli SET "sandbox:$HEALTHY" "$(healthy_record $(( t % 3 )))" >/dev/null 2>&1 &&
       rcli PUBLISH sandbox:invalidate "$HEALTHY" >/dev/null 2>&1; then
        invalidations=$(( invalidations + 1 ))
    else
        invalidation_failures=$(( invalidation_failures + 1 ))
    fi
    r=$(rss_kb)
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    if [ "$t" -eq "$RESTART_AT" ]; then
        echo "soak: t=${t}s restarting Redis (down ${OUTAGE_S}s)"
        stop_redis
        for i in $(seq 1 $(( OUTAGE_S * 10 ))); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" || true)
            [ "$code" = 503 ] && readyz_down="503 while down"
            sleep 0.1
        done
        start_redis
        back_t0=$(date +%s.%N)
        # Lookups work again: a sandbox the proxy has not cached resolves.
        probe=soakprobe$t
        rcli SET "sandbox:$probe" '{"address":"127.0.0.1"}' >/dev/null
        back=""
        for i in $(seq 1 200); do
            if [ "$(status $probe)" = 200 ]; then
                back=$(awk -v a="$(date +%s.%N)" -v b="$back_t0" 'BEGIN {printf "%.2f", a - b}')
                break
            fi
            sleep 0.05
        done
        subs=$(rcli PUBSUB NUMSUB sandbox:invalidate | tail -1)
        restart_note="lookups back after ${back:-never}s, subscribers now $subs"
        [ -z "$back" ] && restart_note="$restart_note (FAILED)"
        echo "soak: $restart_note"
    fi
done
wait_load
load_stop=$(date +%s.%N)
# Idle connections go (keep-alive / pool timeouts): back to the baseline.
fds_end=$(settle_fds $(( fds_base + FD_SLACK )) "$FD_WAIT_S")
fd_secs=$(awk -v a="$(date +%s.%N)" -v b="$load_stop" 'BEGIN {printf "%.1f", a - b}')
rss_end=$(rss_kb)

# ---------------------------------------------------------------- checks
fails=()
post_health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz" || true)
post_ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" || true)
post_h=$(status $HEALTHY)
[ "$post_health" = 200 ] || fails+=("healthz $post_health after the run")
[ "$post_ready" = 200 ] || fails+=("readyz $post_ready after the run")
[ "$post_h" = 200 ] || fails+=("healthy sandbox $post_h after the run")
subs=$(rcli PUBSUB NUMSUB sandbox:invalidate | tail -1)
[ "$subs" -ge "$WORKERS" ] || fails+=("only $subs of $WORKERS workers subscribed after the restart")
[[ "$restart_note" == *FAILED* ]] && fails+=("lookups did not come back after the Redis restart")

# wrk: requests, non-2xx, socket errors
wrk_field() { # file -> "requests non2xx socketerrors"
    local f=$1 req non sock
    req=$(awk '/ requests in / {print $1}' "$f")
    non=$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "$f")
    sock=$(awk '/Socket errors/ {s=0; for (i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$f")
    echo "${req:-0} ${non:-0} ${sock:-0}"
}
# One line per stream: "name requests expected-errors unexpected-errors".
# wrk: healthy/private/close must be all 2xx; unknown all non-2xx (502/503 -
# wrk does not say which); socket errors are unexpected everywhere.
stream_lines() { # tag
    local tag=$1 s req non sock
    for s in healthy private close; do
        read -r req non sock < <(wrk_field "$TMP/$tag-$s.txt")
        echo "$s $req 0 $(( non + sock ))"
        [ "$req" -gt 0 ] || echo "$s-none 0 0 1"
    done
    read -r req non sock < <(wrk_field "$TMP/$tag-unknown.txt")
    echo "unknown $req $non $(( req - non + sock ))"
    "$PY" - "$TMP/$tag-mix.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print("mix-output 0 0 1")
    sys.exit(0)
for name, st in d["streams"].items():
    expected = st["ok"] if name.startswith("err-") else 0
    unexpected = st["errors"] + (0 if st["requests"] else 1)
    print(name, st["requests"], expected, unexpected)
for t in d["stuck_threads"]:
    print("stuck-%s 0 0 1" % t)
EOF
}
warm_bad=$(stream_lines warm | awk '$4 > 0 {printf "%s%s=%d", sep, $1, $4; sep=", "}')
[ -z "$warm_bad" ] || fails+=("unexpected errors during the warm-up: $warm_bad")
stream_lines main >"$TMP/streams.txt"
while read -r name req exp bad; do
    [ "$bad" -eq 0 ] || fails+=("$name: $bad unexpected error(s) of $req")
done <"$TMP/streams.txt"
total_req=$(awk '{s += $2} END {print s}' "$TMP/streams.txt")
total_exp=$(awk '{s += $3} END {print s}' "$TMP/streams.txt")
total_bad=$(awk '{s += $4} END {print s}' "$TMP/streams.txt")
ws_msgs=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["streams"]["websocket"].get("messages", 0))' "$TMP/main-mix.json" 2>/dev/null || echo 0)
up_mib=$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["streams"]; print((s["upload-cl"].get("bytes",0)+s["upload-chunked"].get("bytes",0))>>20)' "$TMP/main-mix.json" 2>/dev/null || echo 0)

growth_kb=$(( rss_end - rss_base ))
[ "$growth_kb" -le $(( MAX_RSS_GROWTH_MB * 1024 )) ] ||
    fails+=("RSS grew $(( growth_kb / 1024 )) MiB after warm-up (limit $MAX_RSS_GROWTH_MB)")
fd_diff=$(( fds_end - fds_base ))
[ "${fd_diff#-}" -le "$FD_SLACK" ] ||
    fails+=("open fds $fds_end ${FD_WAIT_S}s after the load stopped, baseline $fds_base (slack $FD_SLACK)")

# SIGTERM: a clean drain, exit 0, and (LeakSanitizer runs at exit) no report.
kill -TERM "$PROXY_PID"
exit_code=""
for i in $(seq 1 400); do
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        wait "$PROXY_PID" && exit_code=0 || exit_code=$?
        break
    fi
    sleep 0.1
done
if [ -z "$exit_code" ]; then
    fails+=("proxy did not exit within 40 s of SIGTERM")
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    exit_code=killed
fi
PROXY_PID=""
[ "$exit_code" = 0 ] || fails+=("proxy exit code $exit_code after SIGTERM")
san=$(grep -cE 'ERROR: AddressSanitizer|LeakSanitizer|runtime error:' "$TMP/proxy.stderr" || true)
[ "$san" -eq 0 ] || fails+=("$san sanitizer report line(s) in the proxy's stderr")
warn_lines=$(grep -c '\[warn\]' "$TMP/proxy.stderr" || true)
error_lines=$(grep -c '\[error\]' "$TMP/proxy.stderr" || true)

# ---------------------------------------------------------------- summary
echo
echo "== edgeproxy soak summary (${DURATION}s after ${WARMUP_S}s warm-up, $WORKERS workers, $(basename "$(dirname "$EDGEPROXY_BIN")")/$(basename "$EDGEPROXY_BIN"))"
printf '  %-15s %10s %10s %11s\n' stream requests expected unexpected
while read -r name req exp bad; do
    printf '  %-15s %10s %10s %11s\n' "$name" "$req" "$exp" "$bad"
done <"$TMP/streams.txt"
printf '  %-15s %10s %10s %11s\n' total "$total_req" "$total_exp" "$total_bad"
echo "  (expected = the deliberate 4xx/5xx; websocket requests = sessions, $ws_msgs messages echoed; uploads: $up_mib MiB)"
echo "  invalidations published: $invalidations (skipped while Redis was down: $invalidation_failures)"
echo "  Redis restart at t=${RESTART_AT}s: $restart_note; /readyz during the outage: $readyz_down"
echo "  RSS: start $(( rss_start / 1024 )) MiB, after warm-up $(( rss_base / 1024 )) MiB," \
     "max $(( rss_max / 1024 )) MiB, end $(( rss_end / 1024 )) MiB, growth $(( growth_kb / 1024 )) MiB (limit $MAX_RSS_GROWTH_MB)"
echo "  open fds: start $fds_start, baseline after warm-up $fds_base, end $fds_end (${fd_secs}s after the load stopped; slack $FD_SLACK)"
echo "  exit after SIGTERM: $exit_code; sanitizer report lines: $san; log lines: $warn_lines warn, $error_lines error"
if [ "$san" -gt 0 ]; then
    echo "  --- sanitizer reports ---"
    grep -E -A30 'ERROR: AddressSanitizer|LeakSanitizer|runtime error:' "$TMP/proxy.stderr" | head -80 | sed 's/^/  /'
fi
if [ ${#fails[@]} -eq 0 ]; then
    echo "  RESULT: PASS"
    exit 0
fi
echo "  RESULT: FAIL"
for f in "${fails[@]}"; do echo "    - $f"; done
KEEP_TMP=1
exit 1
