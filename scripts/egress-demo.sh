#!/usr/bin/env bash
# `sudo make egress-demo`: the egress filter (SPEC section 9) on this
# machine's kernel, in three network namespaces that the script makes and
# deletes again:
#
#   epdemo-sb (the sandbox)     epdemo-host (the host)          epdemo-net (a fake internet)
#   eth0 198.18.0.2 ---veth--- veth-sb0 198.18.0.1
#                              up0 198.18.1.1 ------veth------- in0 198.18.1.2
#                              edgeproxy (egress listeners      allowed.demo.test  192.0.2.10
#                                [::]:15080 15443 15000)        other.demo.test    192.0.2.20
#                              redis-server 127.0.0.1:6379      *.cdn.demo.test    203.0.113.10
#                              the nft table of                 dnsmasq            198.51.100.53
#                                `edgeproxy egress-rules`       (HTTP on 80, TLS on 443,
#                                                                a banner on 2222)
#
# The host is a namespace too, so the demo leaves the machine as it found it:
# no forwarding sysctl, route or nft table in the machine's own namespace, and
# nothing routed to a real interface (links in 198.18.0.0/15, the internet on
# documentation addresses only). The fake internet is
# test/integration/egress_internet.py, the same one test_egress.py uses.
#
# Then, as the control plane would: the sandbox's record in Redis (allowOut:
# one name and a wildcard, denyOut: ALL_TRAFFIC), the purge, the kernel rules
# (`edgeproxy egress-rules ... | nft -f -`). Then from inside the sandbox it
# runs curl and a raw TCP connect, printing each command and what it printed,
# shows the access-log lines (decision and rule), tightens the policy and
# shows the same request refused.
#
#   scripts/egress-demo.sh [--wait | --no-wait | --clean]
#
# --wait (the default when stdin is a terminal) keeps the namespaces up at
# the end, to try more from `sudo ip netns exec epdemo-sb bash`, until Enter
# or Ctrl-C. Exit 0 when every outcome was the expected one, 1 otherwise or
# on a setup error. Whatever happens, the EXIT trap stops what the script
# started (by pid), deletes the nft table and the namespaces (by name) and
# removes its temporary directory; a previous run killed before its trap
# could run is cleaned up the same way at the start (--clean does only that).
#
# Environment: EDGEPROXY_BIN (a binary to use instead of building
# build/edgeproxy with make), EGRESS_DEMO_LOGS (a directory to copy the logs
# to before the temporary directory goes: edgeproxy.log, access.log,
# redis.log, dnsmasq.log, internet.log), EGRESS_DEMO_NS (the names' prefix,
# default epdemo: namespaces <prefix>-sb, -host, -net, temporary directory
# $TMPDIR/<prefix>.XXXXXX; the test suite runs it under a name of its own).
#
# Needs root, ip, nft, dnsmasq, redis-server, redis-cli, curl, openssl and
# python3 (make deps).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
P=${EGRESS_DEMO_NS:-epdemo}
SB=$P-sb HOST=$P-host NET=$P-net
NAMESPACES="$SB $HOST $NET"
IFACE=veth-sb0                  # the sandbox's interface, host side
TABLE=edgeproxy_$IFACE          # the table `edgeproxy egress-rules` writes
SBX=198.18.0.2
ALLOWED=192.0.2.10 OTHER=192.0.2.20 CDN=203.0.113.10 NAMESERVER=198.51.100.53
PREFIX=sandbox:
KEY=${PREFIX}egress:$SBX
POLICY='{"sandboxId":"epdemo","allowOut":["allowed.demo.test","*.cdn.demo.test"],"denyOut":["0.0.0.0/0"]}'
TIGHTER='{"sandboxId":"epdemo","allowOut":["*.cdn.demo.test"],"denyOut":["0.0.0.0/0"]}'
MARK=.egress-demo               # names this script's temporary directories

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

say() { printf '%s\n' "$*"; }
die() {
    printf 'egress-demo: %s\n' "$*" >&2
    exit 1
}

WAIT="" CLEAN=0
case "${1:-}" in
--clean) CLEAN=1 ;;
--wait) WAIT=1 ;;
--no-wait) WAIT=0 ;;
"") [ -t 0 ] && WAIT=1 || WAIT=0 ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument $1 (try --help)" ;;
esac

case $P in
'' | *[!a-z0-9]*) die "EGRESS_DEMO_NS=$P: letters and digits only" ;;
esac
[ "${#P}" -le 20 ] || die "EGRESS_DEMO_NS=$P: 20 characters at most"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and nftables): run 'sudo make egress-demo'"
missing=""
for t in ip nft dnsmasq redis-server redis-cli curl openssl "$PY"; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -z "$missing" ] || die "missing:$missing (run 'make deps')"

# ---- leftovers of an interrupted run, by their names ------------------------

TMPROOT=${TMPDIR:-/tmp}
for d in "$TMPROOT/$P".*; do
    [ -f "$d/$MARK" ] || continue
    owner=$(cat "$d/$MARK" 2>/dev/null || true)
    if [ -n "$owner" ] && [ "$owner" != $$ ] && kill -0 "$owner" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q egress-demo; then
        die "another egress demo is running (pid $owner); stop it first"
    fi
done

ns_exists() { ip netns list | awk '{ print $1 }' | grep -qxF "$1"; }

# Stops the processes left in namespace $1 (by pid), deletes its nft table
# and the namespace itself.
remove_ns() {
    local ns=$1 pids p i
    ns_exists "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 50); do
        [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ] || break
        sleep 0.1
    done
    for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns exec "$ns" nft delete table inet "$TABLE" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}

leftover=""
for ns in $NAMESPACES; do
    ns_exists "$ns" && leftover="$leftover $ns"
done
if [ -n "$leftover" ]; then
    say "egress-demo: removing what an interrupted run left:$leftover"
    for ns in $NAMESPACES; do remove_ns "$ns"; done
fi
rm -rf "/etc/netns/$SB"
for d in "$TMPROOT/$P".*; do
    [ -f "$d/$MARK" ] && rm -rf "$d"
done
[ "$CLEAN" = 0 ] || exit 0

# ---- the binary ---------------------------------------------------------------

if [ -n "${EDGEPROXY_BIN:-}" ]; then
    BIN=$(cd "$ROOT" && realpath "$EDGEPROXY_BIN")
else
    # Built as the user who ran sudo, so build/ stays theirs.
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        sudo -u "$SUDO_USER" make -C "$ROOT" -s --no-print-directory all
    else
        make -C "$ROOT" -s --no-print-directory all
    fi
    BIN=$ROOT/build/edgeproxy
fi
[ -x "$BIN" ] || die "$BIN: not an executable"

# ---- state and cleanup ----------------------------------------------------------

WORK=$(mktemp -d "$TMPROOT/$P.XXXXXX")
echo $$ >"$WORK/$MARK"
mkdir "$WORK/bin"
ln -s "$BIN" "$WORK/bin/edgeproxy"
PROXY_PID="" PROC_PIDS="" PROC_NAMES="" LAST_PID=""

cleanup() {
    local rc=$? p
    # A second Ctrl-C does not cut the cleanup short (it is bounded: the
    # proxy's drain by drain.timeout_ms, each namespace by 5 s), nor does a
    # reader of our output that went away (| head).
    trap - EXIT
    trap '' INT TERM HUP PIPE
    set +e
    if [ -n "$PROXY_PID" ]; then
        # (a Ctrl-C in the terminal may have drained it already)
        kill -TERM "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID"
        say "egress-demo: stopped edgeproxy (pid $PROXY_PID, exit $?)"
    fi
    set -- $PROC_NAMES
    for p in $PROC_PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $PROC_PIDS; do
        wait "$p" 2>/dev/null
        say "egress-demo: stopped $1 (pid $p)"
        shift
    done
    for ns in $NAMESPACES; do remove_ns "$ns"; done
    rm -rf "/etc/netns/$SB"
    if [ -n "${EGRESS_DEMO_LOGS:-}" ]; then
        mkdir -p "$EGRESS_DEMO_LOGS"
        cp "$WORK"/*.log "$EGRESS_DEMO_LOGS"/ 2>/dev/null
    fi
    rm -rf "$WORK"
    say "egress-demo: deleted namespaces $NAMESPACES, table inet $TABLE and $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# start NAME NS LOG ARGV...: runs ARGV in namespace NS in the background,
# output to $WORK/LOG; remembered by pid (also in $LAST_PID) for the cleanup.
start() {
    local name=$1 ns=$2 log=$3
    shift 3
    ip netns exec "$ns" "$@" </dev/null >"$WORK/$log" 2>&1 &
    LAST_PID=$!
    PROC_PIDS="$PROC_PIDS $!" PROC_NAMES="$PROC_NAMES $name"
}

# until_ok NAME PID LOG CMD...: waits up to 10 s for CMD to succeed while
# process PID (NAME, writing $WORK/LOG) runs; else stops with the log's end
# (the directory goes with the cleanup).
until_ok() {
    local name=$1 pid=$2 log=$3 i
    shift 3
    for i in $(seq 100); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$WORK/$log" >&2
            die "$name exited at start (the lines above end $log)"
        fi
        sleep 0.1
    done
    tail -n 20 "$WORK/$log" >&2
    die "$name not ready after 10 s (the lines above end $log)"
}

# ---- the namespaces -----------------------------------------------------------

say "egress-demo: building namespaces $NAMESPACES"
for ns in $NAMESPACES; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add eth0 netns "$SB" type veth peer name "$IFACE" netns "$HOST"
ip link add in0 netns "$NET" type veth peer name up0 netns "$HOST"
ip -n "$SB" addr add "$SBX/30" dev eth0
ip -n "$SB" link set eth0 up
ip -n "$SB" route add default via 198.18.0.1
ip -n "$HOST" addr add 198.18.0.1/30 dev "$IFACE"
ip -n "$HOST" addr add 198.18.1.1/30 dev up0
ip -n "$HOST" link set "$IFACE" up
ip -n "$HOST" link set up0 up
for net in 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24; do
    ip -n "$HOST" route add "$net" via 198.18.1.2
done
# Forwarding in the host namespace: the sandbox's DNS (UDP) goes through.
ip netns exec "$HOST" sysctl -qw net.ipv4.ip_forward=1
ip -n "$NET" addr add 198.18.1.2/30 dev in0
ip -n "$NET" link set in0 up
ip -n "$NET" route add 198.18.0.0/15 via 198.18.1.1
for a in $ALLOWED $OTHER $CDN $NAMESERVER; do
    ip -n "$NET" addr add "$a/32" dev lo
done
# The sandbox's resolver (ip netns exec mounts these over /etc): dnsmasq
# only, not whatever the machine's nsswitch.conf would ask besides.
mkdir -p "/etc/netns/$SB"
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$NAMESERVER" >"/etc/netns/$SB/resolv.conf"
if [ -f /etc/nsswitch.conf ]; then
    sed 's/^hosts:.*/hosts: files dns/' /etc/nsswitch.conf >"/etc/netns/$SB/nsswitch.conf"
fi

# ---- the fake internet ----------------------------------------------------------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/demo-ca.key" -out "$WORK/demo-ca.pem" -days 2 \
    -subj "/CN=edgeproxy egress demo" \
    -addext "subjectAltName=DNS:allowed.demo.test,DNS:other.demo.test,DNS:*.cdn.demo.test" \
    >/dev/null 2>&1
start egress_internet.py "$NET" internet.log \
    "$PY" "$ROOT/test/integration/egress_internet.py" "$WORK/demo-ca.pem" "$WORK/demo-ca.key" \
    "$ALLOWED,$OTHER,$CDN"
until_ok egress_internet.py "$LAST_PID" internet.log grep -qx ready "$WORK/internet.log"
start dnsmasq "$NET" dnsmasq.log \
    dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="$NAMESERVER" --pid-file= --user=root \
    --log-facility=- \
    --host-record="allowed.demo.test,$ALLOWED" --host-record="other.demo.test,$OTHER" \
    --address="/cdn.demo.test/$CDN"
until_ok dnsmasq "$LAST_PID" dnsmasq.log sh -c "ip netns exec $NET ss -Hlun 'sport = :53' | grep -q ."

# ---- Redis and the proxy, in the host namespace ------------------------------

start redis-server "$HOST" redis.log \
    redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$WORK"
until_ok redis-server "$LAST_PID" redis.log ip netns exec "$HOST" redis-cli ping

cat >"$WORK/edgeproxy.json" <<EOF
{
  "workers": 2,
  "listeners": [{"address": "127.0.0.1:8080"}],
  "admin": {"address": "127.0.0.1:9090"},
  "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": "$PREFIX"},
  "access_log": {"path": "$WORK/access.log"},
  "drain": {"timeout_ms": 3000},
  "egress": {
    "listeners": {"http": "[::]:15080", "tls": "[::]:15443", "tcp": "[::]:15000"},
    "nameservers": ["$NAMESERVER"]
  }
}
EOF
ip netns exec "$HOST" "$BIN" --config "$WORK/edgeproxy.json" </dev/null >"$WORK/edgeproxy.log" 2>&1 &
PROXY_PID=$!
until_ok edgeproxy "$PROXY_PID" edgeproxy.log ip netns exec "$HOST" curl -fsS --max-time 1 http://127.0.0.1:9090/readyz
say "egress-demo: started edgeproxy (pid $PROXY_PID)$(set -- $PROC_NAMES; for p in $PROC_PIDS; do
    printf ' %s (pid %s)' "$1" "$p"
    shift
done)"
say "egress-demo: files in $WORK"

# ---- showing ----------------------------------------------------------------------

BAD=0
# check OUTPUT WANT...: each WANT, an extended regular expression, must
# match OUTPUT, else it is printed and counted.
check() {
    local out=$1 w
    shift
    for w in "$@"; do
        if ! grep -Eq -- "$w" <<<"$out"; then
            printf '!! expected: %s\n' "$w"
            BAD=$((BAD + 1))
        fi
    done
}

# show WHERE COMMAND [WANT...]: prints "WHERE$ COMMAND", runs COMMAND with
# bash in that namespace (sandbox or host; in $WORK, edgeproxy on the PATH),
# prints what it wrote (stdout and stderr) and checks it against the WANTs.
show() {
    local where=$1 cmd=$2 ns out
    shift 2
    case $where in
    sandbox) ns=$SB ;;
    host) ns=$HOST ;;
    esac
    printf '%s$ %s\n' "$where" "$cmd"
    out=$(cd "$WORK" && ip netns exec "$ns" env PATH="$WORK/bin:$PATH" \
        bash -o pipefail -c "$cmd" 2>&1) || true
    [ -z "$out" ] || printf '%s\n' "$out"
    check "$out" "$@"
}

section() { printf '\n== %s\n' "$*"; }
note() { printf '# %s\n' "$*"; }

# show_log N [WANT...]: the access log's egress lines since the last call,
# with the keys that say what was decided, checked against the WANTs. The
# log is written out once a second: waits (5 s at most) for N new lines.
LOGGED=0
show_log() {
    local want=$1 i n=0 out
    shift
    for i in $(seq 50); do
        n=$(grep -c '"egress"' "$WORK/access.log" 2>/dev/null || true)
        [ "${n:-0}" -ge $((LOGGED + want)) ] && break
        sleep 0.1
    done
    say "access log, the new egress lines (some of their keys):"
    out=$("$PY" - "$WORK/access.log" "$LOGGED" <<'EOF'
import json, sys
keys = ("egress", "destination", "name", "decision", "rule", "connected", "status")
lines = [json.loads(l) for l in open(sys.argv[1]) if '"egress"' in l]
for l in lines[int(sys.argv[2]):]:
    print(json.dumps({k: l[k] for k in keys if k in l}, separators=(",", ":")))
EOF
    )
    [ -z "$out" ] || printf '%s\n' "$out"
    LOGGED=$(grep -c '"egress"' "$WORK/access.log" 2>/dev/null || true)
    check "$out" "$@"
}

CURL="curl -sS --max-time 8 -w '\nHTTP %{http_code}\n'"

section "the control plane: the sandbox's record, the purge, the kernel rules"
show host "redis-cli SET $KEY '$POLICY'" '^OK$'
show host "redis-cli PUBLISH ${PREFIX}invalidate egress:$SBX" '^[0-9]+$'
show host "redis-cli GET $KEY | edgeproxy egress-rules --config edgeproxy.json --interface $IFACE --policy - | nft -f -"
show host "nft list tables" "table inet $TABLE"

section "from inside the sandbox ($SB, $SBX)"
note "port 80, a name allowOut lists: the real host answers"
show sandbox "$CURL http://allowed.demo.test/" 'HTTP 200' "\"server\": \"$ALLOWED\""
note "port 443, decided by the ClientHello's SNI, spliced (the demo CA signed the host's certificate)"
show sandbox "$CURL --cacert demo-ca.pem https://allowed.demo.test/" 'HTTP 200' '"tls": true'
note "the wildcard *.cdn.demo.test"
show sandbox "$CURL --cacert demo-ca.pem https://img.cdn.demo.test/" 'HTTP 200' "\"server\": \"$CDN\""
note "a name allowOut does not list: 403 from the proxy"
show sandbox "$CURL http://other.demo.test/" 'HTTP 403' '"code":403' 'denyOut\[0\] 0\.0\.0\.0/0'
note "the same over TLS: a fatal access_denied alert"
show sandbox "$CURL --cacert demo-ca.pem https://other.demo.test/" 'HTTP 000' 'alert access denied'
note "SNI spoofing: the allowed name, another host's address; the proxy resolves the name itself"
show sandbox "$CURL --cacert demo-ca.pem --resolve allowed.demo.test:443:$OTHER https://allowed.demo.test/" \
    'HTTP 200' "\"server\": \"$ALLOWED\""
note "any other TCP is decided by address: ALL_TRAFFIC is denied, the connection reset (bash's /dev/tcp)"
show sandbox "cat </dev/tcp/$OTHER/2222" 'Connection reset by peer'
note "the host's own addresses (Redis, the proxy's ports) are refused by the kernel rules"
show sandbox "redis-cli -h 198.18.0.1 -p 6379 ping" 'Connection refused'
echo
show_log 7 \
    '"egress":"http","destination":"192.0.2.10:80","name":"allowed.demo.test","decision":"allow","rule":"allowOut\[0\] allowed.demo.test"' \
    '"name":"img.cdn.demo.test","decision":"allow","rule":"allowOut\[1\] \*.cdn.demo.test"' \
    '"egress":"http","destination":"192.0.2.20:80","name":"other.demo.test","decision":"deny","rule":"denyOut\[0\] 0.0.0.0/0"' \
    '"egress":"tls","destination":"192.0.2.20:443","name":"other.demo.test","decision":"deny"' \
    '"destination":"192.0.2.20:443","name":"allowed.demo.test","decision":"allow","rule":"allowOut\[0\] allowed.demo.test","connected":"192.0.2.10:443"' \
    '"egress":"tcp","destination":"192.0.2.20:2222","name":null,"decision":"deny","rule":"denyOut\[0\] 0.0.0.0/0"'

section "tightening the policy: allowed.demo.test no longer allowed"
show host "redis-cli SET $KEY '$TIGHTER'" '^OK$'
show host "redis-cli PUBLISH ${PREFIX}invalidate egress:$SBX" '^[0-9]+$'
show host "redis-cli GET $KEY | edgeproxy egress-rules --config edgeproxy.json --interface $IFACE --policy - | nft -f -"
show sandbox "$CURL http://allowed.demo.test/" 'HTTP 403' '"host":"allowed.demo.test"'
show sandbox "$CURL --cacert demo-ca.pem https://allowed.demo.test/" 'alert access denied'
show sandbox "$CURL --cacert demo-ca.pem https://img.cdn.demo.test/" 'HTTP 200'
echo
show_log 3 \
    '"egress":"http","destination":"192.0.2.10:80","name":"allowed.demo.test","decision":"deny","rule":"denyOut\[0\] 0.0.0.0/0"'

echo
if [ "$BAD" -ne 0 ]; then
    say "egress-demo: $BAD outcome(s) not as expected (the lines with !!; EGRESS_DEMO_LOGS=DIR keeps the logs)"
    [ "$WAIT" = 1 ] || exit 1
else
    say "egress-demo: every outcome as expected"
fi

if [ "$WAIT" = 1 ]; then
    cat <<EOF

The namespaces are still up. From another terminal, for instance:
  sudo ip netns exec $SB curl -sS http://allowed.demo.test/
  sudo ip netns exec $HOST redis-cli SET $KEY '$POLICY'
  sudo ip netns exec $HOST redis-cli PUBLISH ${PREFIX}invalidate egress:$SBX
  sudo ip netns exec $HOST curl -s http://127.0.0.1:9090/metrics | grep egress
  sudo tail -f $WORK/access.log
Press Enter (or Ctrl-C) to stop everything and delete the namespaces.
EOF
    read -r _ || true
fi
[ "$BAD" -eq 0 ]
