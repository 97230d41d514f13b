# Shared by bench/run.sh, bench/random_ids.sh and bench/failover.sh (sourced).
# Set NAME (the prefix of messages) first. Processes are started with `start`, their pids
# kept, and only those are stopped (by pid) at exit.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ports_free PORT...: exits if one is taken.
ports_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            echo "$NAME: 127.0.0.1:$p is in use (set BASE_PORT)" >&2
            exit 1
        fi
    done
}

STARTED=()             # pids, in start order
declare -A PID         # name -> pid

cleanup() {
    local i p
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        p=${STARTED[i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${STARTED[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP_TMP:-}" ]; then echo "$NAME: kept $TMP"; else rm -rf "$TMP"; fi
}

# make_tmp PREFIX [DIR]: $TMP under DIR (/tmp), removed (with every started
# process stopped) at exit.
make_tmp() {
    TMP=$(mktemp -d "${2:-/tmp}/$1.XXXXXX")
    chmod 755 "$TMP"       # nginx workers run as nobody when started as root
    trap cleanup EXIT
    trap 'echo "$NAME: interrupted" >&2; exit 130' INT TERM
}

# start NAME CMD...: background process whose pid is the server itself.
start() {
    local name=$1; shift
    "$@" >"$TMP/$name.out" 2>&1 &
    PID[$name]=$!
    STARTED+=($!)
}

wait_port() {  # NAME PORT
    for _ in $(seq 100); do
        port_open "$2" && return 0
        kill -0 "${PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$NAME: $1 did not come up on port $2; its output:" >&2
    tail -n 30 "$TMP/$1.out" >&2
    exit 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
