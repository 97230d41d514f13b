# Shared by bench/run.sh, random_ids.sh, egress.sh and failover.sh (sourced).
# Set NAME (the prefix of messages) first. Processes are started with
# `start`, their pids kept, and only those are stopped (by pid) at exit; a
# script that defines bench_cleanup has it run after that (egress.sh deletes
# its network namespaces there).

# port_open PORT [NETNS [HOST]]: something listens on HOST (127.0.0.1) PORT,
# seen from network namespace NETNS ("" = this one).
port_open() {
    local probe="exec 3<>/dev/tcp/${3:-127.0.0.1}/$1"
    if [ -n "${2:-}" ]; then
        ip netns exec "$2" bash -c "$probe" 2>/dev/null
    else
        (eval "$probe") 2>/dev/null
    fi
}

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

# wait_gone PID: up to 5 s for it to exit, then SIGKILL.
wait_gone() {
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
    local i p
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        p=${STARTED[i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${STARTED[@]}"; do wait_gone "$p"; done
    if [ "$(type -t bench_cleanup)" = function ]; then bench_cleanup || true; fi
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

wait_port() {  # NAME PORT [NETNS [HOST]]
    for _ in $(seq 100); do
        port_open "$2" "${3:-}" "${4:-}" && return 0
        kill -0 "${PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$NAME: $1 did not come up on port $2; its output:" >&2
    tail -n 30 "$TMP/$1.out" >&2
    exit 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# pids whose parent is $1 (nginx workers)
children() {
    local f="/proc/$1/task/$1/children" st c
    if [ -r "$f" ]; then
        tr -s ' ' '\n' <"$f" | grep -v '^$' || true
        return
    fi
    for c in /proc/[0-9]*; do
        st=$(cat "$c/stat" 2>/dev/null) || continue
        st=${st##*) }
        set -- "$1" $st
        [ "$3" = "$1" ] && echo "${c#/proc/}"
    done
}

# NGINX_TARGETS: the names (of `start`) that are nginx masters, whose
# workers do the work.
NGINX_TARGETS=${NGINX_TARGETS:-}
is_nginx() { case " $NGINX_TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
# HELPER_TARGETS: names whose forked helpers' CPU counts with them (h2o 2.2
# signs handshakes in a child process).
HELPER_TARGETS=${HELPER_TARGETS:-}
has_helpers() { case " $HELPER_TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

# all pids of a target: nginx master + workers (or a process + its helpers),
# or the one process
pids_of() {
    local p=${PID[$1]}
    if is_nginx "$1" || has_helpers "$1"; then echo "$p" $(children "$p"); else echo "$p"; fi
}

# the process that serves traffic (for RSS): the nginx worker, or the process
serving_pid() {
    if is_nginx "$1"; then children "${PID[$1]}" | head -n 1; else echo "${PID[$1]}"; fi
}

cpu_ticks() {  # PIDS... -> utime+stime summed, in clock ticks
    local t=0 p s
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        # after "comm) ": state ppid ... utime is the 12th, stime the 13th
        t=$((t + $(echo "$s" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}
