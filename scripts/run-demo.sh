#!/bin/sh
# `make run`: a local Redis, a demo sandbox and edgeproxy, all on loopback.
#
#   redis-server   127.0.0.1:$DEMO_REDIS_PORT   (default 6390, no persistence,
#                                                files in build/demo/)
#   demo sandbox   127.0.0.1:$DEMO_SANDBOX_PORT (default 8000, python3
#                                                http.server on build/demo/www)
#   edgeproxy      127.0.0.1:$DEMO_PORT         (default 8080, conf/demo.json)
#   admin          127.0.0.1:$DEMO_ADMIN_PORT   (default 9090)
#
# Two routing records are written: "demo1" (public) and "demo2" (private:
# needs the e2b-traffic-access-token header, Host rewritten to
# localhost:<port>). The proxy runs in the foreground; Ctrl-C or SIGTERM
# drains it, then Redis and the demo sandbox are stopped by their pids.
#
# Ports are checked before anything starts: a busy one is an error naming the
# port and the variable that moves it. With non-default ports the config is
# generated from conf/demo.json into build/demo/demo.json.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO="$ROOT/build/demo"
BIN="$ROOT/build/edgeproxy"
CONF="$ROOT/conf/demo.json"

PORT=${DEMO_PORT:-8080}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9090}
REDIS_PORT=${DEMO_REDIS_PORT:-6390}
SANDBOX_PORT=${DEMO_SANDBOX_PORT:-8000}
DOMAIN=sandbox.localhost
PREFIX=sandbox:
TOKEN=demo2-secret-token

# The Debian interpreter when there is one (the one scripts/deps.sh installs).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

say() { printf '%s\n' "$*"; }
die() { printf 'run-demo: %s\n' "$*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN is missing: run 'make' first (or 'make run')"
for tool in redis-server redis-cli curl "$PY"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run 'make deps'"
done

# ---- ports ---------------------------------------------------------------

# Free = a plain bind+listen (SO_REUSEADDR, no SO_REUSEPORT) succeeds. Without
# SO_REUSEPORT this also fails against another edgeproxy, whose listeners set
# SO_REUSEPORT and would otherwise silently share the port with this one;
# SO_REUSEADDR keeps TIME_WAIT leftovers of a previous run from counting.
port_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(1)
except OSError:
    sys.exit(1)
EOF
}

check_port() { # port variable what
    case $1 in
    '' | *[!0-9]*) die "$2=$1: not a port number" ;;
    esac
    { [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; } || die "$2=$1: not a port number"
    if ! port_free "$1"; then
        hint=""
        for f in "$DEMO"/edgeproxy.pid "$DEMO"/redis.pid "$DEMO"/sandbox.pid; do
            [ -f "$f" ] || continue
            p=$(cat "$f" 2>/dev/null || true)
            [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
                hint="$hint${hint:+, }$(basename "$f" .pid) pid $p"
        done
        [ -n "$hint" ] && hint=" (a previous 'make run' may still be running: $hint)"
        die "127.0.0.1:$1 ($3) is already in use$hint; stop what uses it or pick another port with $2=<port> make run"
    fi
}

check_port "$PORT" DEMO_PORT "edgeproxy listener"
check_port "$ADMIN_PORT" DEMO_ADMIN_PORT "edgeproxy admin"
check_port "$REDIS_PORT" DEMO_REDIS_PORT "demo redis-server"
check_port "$SANDBOX_PORT" DEMO_SANDBOX_PORT "demo sandbox"
for a in "$PORT" "$ADMIN_PORT" "$REDIS_PORT" "$SANDBOX_PORT"; do
    n=0
    for b in "$PORT" "$ADMIN_PORT" "$REDIS_PORT" "$SANDBOX_PORT"; do
        [ "$a" = "$b" ] && n=$((n + 1))
    done
    [ "$n" -eq 1 ] || die "port $a is given to two demo services; set DEMO_PORT, DEMO_ADMIN_PORT, DEMO_REDIS_PORT, DEMO_SANDBOX_PORT to four different ports"
done

# ---- state and cleanup ---------------------------------------------------

mkdir -p "$DEMO/www"
rm -f "$DEMO"/*.pid
REDIS_PID=""
SANDBOX_PID=""
PROXY_PID=""

cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    for p in "$SANDBOX_PID" "$REDIS_PID"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
    done
    for p in "$SANDBOX_PID" "$REDIS_PID"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    rm -f "$DEMO"/*.pid
    say "run-demo: stopped edgeproxy, the demo sandbox and redis-server"
}
# Ctrl-C / SIGTERM / SIGHUP: drain the proxy and exit with its status (0
# after a clean drain); the EXIT trap then stops Redis and the sandbox.
on_signal() {
    rc=$1
    if [ -n "$PROXY_PID" ]; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        rc=0
        wait "$PROXY_PID" || rc=$?
        PROXY_PID=""
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# ---- redis ---------------------------------------------------------------

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$DEMO" --daemonize no --logfile "$DEMO/redis.log" </dev/null &
REDIS_PID=$!
echo "$REDIS_PID" >"$DEMO/redis.pid"

RCLI="redis-cli -h 127.0.0.1 -p $REDIS_PORT"
i=0
until $RCLI ping >/dev/null 2>&1; do
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start; see $DEMO/redis.log"
    i=$((i + 1))
    [ "$i" -le 100 ] || die "redis-server not answering on 127.0.0.1:$REDIS_PORT after 5 s; see $DEMO/redis.log"
    sleep 0.05
done

# ---- demo sandbox --------------------------------------------------------

cat >"$DEMO/www/index.html" <<'EOF'
<!doctype html>
<html>
<head><meta charset="utf-8"><title>edgeproxy demo sandbox</title></head>
<body>
<h1>Hello from the demo sandbox!</h1>
<p>This page is served by python3 -m http.server on loopback, reached through edgeproxy.</p>
</body>
</html>
EOF

# HTTP/1.1 with keep-alive (--protocol needs Python 3.11; older ones speak
# HTTP/1.0, which the proxy relays just as well).
PROTO=""
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' && PROTO="--protocol HTTP/1.1"
# shellcheck disable=SC2086
"$PY" -m http.server "$SANDBOX_PORT" --bind 127.0.0.1 --directory "$DEMO/www" $PROTO \
    </dev/null >"$DEMO/sandbox.log" 2>&1 &
SANDBOX_PID=$!
echo "$SANDBOX_PID" >"$DEMO/sandbox.pid"

i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$SANDBOX_PORT/" 2>/dev/null; do
    kill -0 "$SANDBOX_PID" 2>/dev/null || die "the demo sandbox exited at start; see $DEMO/sandbox.log"
    i=$((i + 1))
    [ "$i" -le 100 ] || die "the demo sandbox is not answering on 127.0.0.1:$SANDBOX_PORT after 5 s; see $DEMO/sandbox.log"
    sleep 0.05
done

# ---- routing records (SPEC section 4) -------------------------------------

$RCLI SET "${PREFIX}demo1" '{"address":"127.0.0.1"}' >/dev/null
$RCLI SET "${PREFIX}demo2" "{\"address\":\"127.0.0.1\",\"allowPublicTraffic\":false,\"trafficAccessToken\":\"$TOKEN\",\"maskRequestHost\":\"localhost:\${PORT}\"}" >/dev/null

# ---- config --------------------------------------------------------------

if [ "$PORT" != 8080 ] || [ "$ADMIN_PORT" != 9090 ] || [ "$REDIS_PORT" != 6390 ]; then
    "$PY" - "$CONF" "$DEMO/demo.json" "$PORT" "$ADMIN_PORT" "$REDIS_PORT" <<'EOF'
import json, sys
src, dst, port, admin, redis = sys.argv[1:]
c = json.load(open(src))
c["listeners"] = [{"address": "127.0.0.1:" + port}]
c["admin"] = {"address": "127.0.0.1:" + admin}
c["redis"]["url"] = "redis://127.0.0.1:%s/0" % redis
json.dump(c, open(dst, "w"), indent=2)
EOF
    CONF="$DEMO/demo.json"
fi
"$BIN" --config "$CONF" --check >/dev/null

# ---- go ------------------------------------------------------------------

P=$SANDBOX_PORT
cat <<EOF

edgeproxy demo: proxy 127.0.0.1:$PORT, admin 127.0.0.1:$ADMIN_PORT, redis 127.0.0.1:$REDIS_PORT, demo sandbox 127.0.0.1:$P
config: ${CONF#"$ROOT"/}   logs: build/demo/{redis,sandbox}.log

Try, from another terminal:

  # public sandbox demo1: 200, the demo page
  curl -i -H 'Host: $P-demo1.$DOMAIN' http://127.0.0.1:$PORT/

  # private sandbox demo2 without its token: 403
  curl -i -H 'Host: $P-demo2.$DOMAIN' http://127.0.0.1:$PORT/

  # ... and with it: 200 (the sandbox sees Host: localhost:$P)
  curl -i -H 'Host: $P-demo2.$DOMAIN' -H 'e2b-traffic-access-token: $TOKEN' http://127.0.0.1:$PORT/

  # unknown sandbox: 502
  curl -i -H 'Host: $P-nosuch.$DOMAIN' http://127.0.0.1:$PORT/

  # metrics, health
  curl http://127.0.0.1:$ADMIN_PORT/metrics
  curl http://127.0.0.1:$ADMIN_PORT/readyz

  # in a browser (*.localhost resolves to loopback): http://$P-demo1.$DOMAIN:$PORT/

  # change a record and tell the proxy at once:
  $RCLI SET ${PREFIX}demo1 '{"address":"127.0.0.1","allowPublicTraffic":false,"trafficAccessToken":"t"}'
  $RCLI PUBLISH ${PREFIX}invalidate demo1

Ctrl-C stops the proxy (graceful drain), then Redis and the demo sandbox.

EOF

"$BIN" --config "$CONF" </dev/null &
PROXY_PID=$!
echo "$PROXY_PID" >"$DEMO/edgeproxy.pid"
# `wait` returns early when a trapped signal arrives; the EXIT trap then
# drains the proxy and stops the rest.
rc=0
wait "$PROXY_PID" || rc=$?
PROXY_PID=""
exit "$rc"
