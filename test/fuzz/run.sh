#!/usr/bin/env bash
# Builds every libFuzzer harness in test/fuzz/ into build/fuzz/ and runs each
# for SECONDS (default 60). Seeds are copied, not fuzzed in place; crash
# inputs go to build/fuzz/artifacts/<name>/. Exits non-zero if any harness
# crashed (or failed to build).
#
#   bash test/fuzz/run.sh [SECONDS]
#   FUZZ_ONLY="proxy_proto http_head" FUZZ_JOBS=2 bash test/fuzz/run.sh 600
#
# Environment: CLANG (default clang), FUZZ_ONLY (harness names), FUZZ_JOBS
# (harnesses run at once, default 1), FUZZ_NICE (default 10), FUZZ_BUILD_ONLY=1.
set -u -o pipefail

SECONDS_EACH=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

CLANG=${CLANG:-clang}
OUT=${FUZZ_OUT:-build/fuzz}
LLHTTP_SRC=/usr/share/llhttp
LLHTTP_INC=/usr/share/include/llhttp
JOBS=${FUZZ_JOBS:-1}
NICE=${FUZZ_NICE:-10}

if ! command -v "$CLANG" >/dev/null; then
    echo "run.sh: $CLANG not found (apt-get install clang)" >&2
    exit 2
fi

CFLAGS=(-std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -DLLHTTP_STRICT_MODE=1 -Icommon -Icore -Ihttp1 -Ihttp2 -Iingress -Iredis -Iadmin -Iegress -I"$LLHTTP_INC")

# nghttp2's backported limits, detected by symbol as the Makefile does: the
# HTTP/2 harnesses run with every optional feature the library has.
nghttp2_has() {
    printf '#include <nghttp2/nghttp2.h>\nint main(void) { return (int)(long)&%s; }\n' "$1" |
        "$CLANG" -x c - -o /dev/null -lnghttp2 >/dev/null 2>&1 && echo "-DHAVE_$2"
}
CFLAGS+=($(nghttp2_has nghttp2_option_set_stream_reset_rate_limit NGHTTP2_STREAM_RESET_RATE_LIMIT)
         $(nghttp2_has nghttp2_option_set_max_continuations NGHTTP2_MAX_CONTINUATIONS))

# Every harness links all of common/ (pure code, no main(): a module that
# starts depending on another, like config.c on json_guard.c, keeps linking);
# the HTTP one adds llhttp.
COMMON_LIBS="$(ls common/*.c | tr '\n' ' ') -lcjson -lm"
PROXY_LIBS="$COMMON_LIBS test/fuzz/proxy_harness.c $(ls core/*.c http1/*.c http2/*.c ingress/*.c redis/*.c admin/*.c | grep -v -e '^core/main\.c$' -e '^redis/redis_link\.c$' -e '^redis/redis_conn\.c$' -e '^redis/sentinel\.c$' -e '^redis/cache\.c$' -e '^ingress/lookup\.c$' -e '^ingress/conn_limit_sync\.c$' | tr '\n' ' ') $LLHTTP_SRC/llhttp.c $LLHTTP_SRC/api.c $LLHTTP_SRC/http.c -levent_core -levent_extra -lssl -lcrypto -lnghttp2 -lpthread"
declare -A EXTRA=(
    [host]="$COMMON_LIBS"
    [record]="$COMMON_LIBS"
    [config]="$COMMON_LIBS"
    [reply]="$COMMON_LIBS"
    [outbuf]="$COMMON_LIBS"
    [proxy_proto]="$COMMON_LIBS"
    # The egress policy record, its decisions and the nft rules built from it.
    [egress_policy]="$COMMON_LIBS"
    # The egress TLS listener's ClientHello parser.
    [clienthello]="$COMMON_LIBS"
    [http_head]="$COMMON_LIBS $LLHTTP_SRC/llhttp.c $LLHTTP_SRC/api.c $LLHTTP_SRC/http.c"
    # Redis replies: hiredis's reader, then redis/redis_reply.c (GET records
    # through ingress/route_rec.c, whose maxConnections counters are
    # ingress/conn_limit.c).
    [redis_reply]="$COMMON_LIBS redis/redis_reply.c ingress/route_rec.c ingress/conn_limit.c -lhiredis -lpthread"
    # The whole request path: every daemon source but core/main.c and the
    # Redis side (redis/redis_link.c, redis_conn.c, sentinel.c, cache.c and its
    # route instance ingress/lookup.c, the limits sync ingress/conn_limit_sync.c:
    # test/fuzz/proxy_harness.c stands in for them);
    # upstream stub on 127.0.0.1:39481.
    [request_path]="$PROXY_LIBS"
    # The HTTP/2 front end, frames in: the same harness, stub on 39483 (odd:
    # Linux hands even ports to connect(), a bind could find one taken).
    [h2]="$PROXY_LIBS"
)
ALL="host record config reply outbuf proxy_proto egress_policy clienthello http_head redis_reply request_path h2"
NAMES=${FUZZ_ONLY:-$ALL}

mkdir -p "$OUT/artifacts"
status=0

build() {
    local name=$1
    # shellcheck disable=SC2086
    "$CLANG" "${CFLAGS[@]}" -o "$OUT/fuzz_$name" "test/fuzz/fuzz_$name.c" \
        ${EXTRA[$name]} 2>"$OUT/build-$name.log"
}

for name in $NAMES; do
    if [ -z "${EXTRA[$name]+x}" ]; then
        echo "run.sh: unknown harness '$name' (have: $ALL)" >&2
        exit 2
    fi
    echo "== build fuzz_$name"
    if ! build "$name"; then
        cat "$OUT/build-$name.log" >&2
        echo "run.sh: fuzz_$name failed to build" >&2
        status=1
    fi
done
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit $status
[ $status -ne 0 ] && exit $status

run_one() {
    local name=$1 corpus="$OUT/corpus-$1" art="$OUT/artifacts/$1/" rc
    mkdir -p "$corpus" "$art"
    [ -d "test/fuzz/corpus/$name" ] && cp -n test/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
    local failed=0
    # Known crash inputs (found earlier, not fixed yet?) replay first, once.
    if [ -d "test/fuzz/regressions/$name" ] &&
        [ -n "$(ls -A "test/fuzz/regressions/$name")" ]; then
        if ! "$OUT/fuzz_$name" -runs=1 test/fuzz/regressions/"$name"/* \
            >"$OUT/regressions-$name.log" 2>&1; then
            echo "fuzz_$name: a regression input still fails, see $OUT/regressions-$name.log" >&2
            failed=1
        fi
    fi
    local dict=()
    [ -f "test/fuzz/$name.dict" ] && dict=(-dict="test/fuzz/$name.dict")
    nice -n "$NICE" "$OUT/fuzz_$name" "${dict[@]}" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 -artifact_prefix="$art" \
        "$corpus" >"$OUT/run-$name.log" 2>&1
    rc=$?
    grep -E '^stat::number_of_executed_units|^stat::peak_rss' "$OUT/run-$name.log" |
        sed "s/^/fuzz_$name: /"
    if [ $rc -ne 0 ]; then
        echo "fuzz_$name: FAILED (exit $rc), see $OUT/run-$name.log; inputs in $art" >&2
        tail -n 40 "$OUT/run-$name.log" >&2
        return 1
    fi
    echo "fuzz_$name: ok (${SECONDS_EACH}s)"
    return $failed
}

# Up to $JOBS harnesses at once; each failure counts.
pids=()
for name in $NAMES; do
    echo "== run fuzz_$name for ${SECONDS_EACH}s"
    run_one "$name" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
