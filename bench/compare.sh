#!/usr/bin/env bash
# Compares memcached, rat_memcached and rat_canned under the same get-heavy load, and the
# memory each server needs per stored item. See bench/README.md for how to read the output.
#
# usage: bench/compare.sh [options]
#   --rounds N           measured rounds per server, alternating between servers [3]
#   --seconds S          length of one round [10]
#   --threads "1 2"      server thread counts to compare, each a separate table ["1 2"]
#   --gen-threads N      load generator threads [1]
#   --servers "..."      which of memcached rat_memcached rat_memcached_l2 rat_canned to run
#                        [memcached rat_memcached rat_canned]; rat_memcached_l2 is
#                        rat_memcached with its persistent tier on (--data-dir in --out);
#                        rat_memcached_lru, _lfu, _fifo and _hybrid run it with that
#                        --eviction policy
#   --memory-mb N        -m for every server; below the data set's size (about 21 MB
#                        for rat_memcached) the load keeps evicting [1024]
#   --protocols "..."    wire protocols to load each server with: text meta binary [text]
#   --rss-items N        items stored for the memory measurement, 0 to skip it [1000000]
#   --l2-args "..."      extra flags for rat_memcached_l2, e.g. "--l2-flush-ms=1000" [none]
#   --restart-items N    persistence: store N items in rat_memcached_l2, stop it, start it
#                        again, and time the stop, the first reply and the warm-up, then
#                        read every item back verified; 0 to skip it [0]
#   --no-build           use the binaries already built
#   --out DIR            keep the raw JSON results in DIR [a temporary directory]
# environment:
#   RAT_MEMCACHED        path of the rat_memcached binary [<target>/release/rat_memcached]
#   CARGO_TARGET_DIR     cargo's target directory [<repo>/target]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac

ROUNDS=3
ROUND_SECONDS=10
THREAD_COUNTS="1 2"
GEN_THREADS=1
SERVERS="memcached rat_memcached rat_canned"
PROTOCOLS="text"
RSS_ITEMS=1000000
RESTART_ITEMS=0
L2_ARGS=""
BUILD=1
OUT=""

# The workload every server gets.
KEYS=100000
VALUE_SIZE=100
SET_RATIO=1:10
CONNS=50
PIPELINE=1
MEMORY_MB=1024

while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --seconds) ROUND_SECONDS=$2; shift 2 ;;
        --threads) THREAD_COUNTS=$2; shift 2 ;;
        --gen-threads) GEN_THREADS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --memory-mb) MEMORY_MB=$2; shift 2 ;;
        --protocols) PROTOCOLS=$2; shift 2 ;;
        --rss-items) RSS_ITEMS=$2; shift 2 ;;
        --restart-items) RESTART_ITEMS=$2; shift 2 ;;
        --l2-args) L2_ARGS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done

for protocol in $PROTOCOLS; do
    case $protocol in
        text|meta|binary) ;;
        *) echo "compare.sh: unknown protocol $protocol (text, meta or binary)" >&2; exit 1 ;;
    esac
done

if [[ -z $OUT ]]; then
    OUT=$(mktemp -d /tmp/rat-compare.XXXXXX)
fi
mkdir -p "$OUT"

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p rat_memcache_bench)
    if [[ -z ${RAT_MEMCACHED:-} && " $SERVERS " == *" rat_memcached"* ]]; then
        (cd "$ROOT" && cargo build --release --quiet --bin rat_memcached)
    fi
fi
LOADGEN=$TARGET/release/rat_loadgen
CANNED=$TARGET/release/rat_canned
RAT_MEMCACHED=${RAT_MEMCACHED:-$TARGET/release/rat_memcached}
for binary in "$LOADGEN" "$CANNED"; do
    [[ -x $binary ]] || { echo "compare.sh: $binary is missing (drop --no-build)" >&2; exit 1; }
done

# --- processes --------------------------------------------------------------------------

STARTED_PIDS=()
stop_all() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}
trap stop_all EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports below Linux's ephemeral range (32768 and up), so no client connection's local
# port can be holding the one a server is about to bind.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        port_open "$port" || { echo "$port"; return; }
    done
}

# start_server NAME PORT CPUS COMMAND...: starts COMMAND (pinned to CPUS unless empty),
# waits until PORT accepts connections, and sets SERVER_PID. Fails with the server's own
# output if it exits first.
start_server() {
    local name=$1 port=$2 cpus=$3
    shift 3
    local log=$OUT/$name-$port.log
    if [[ -n $cpus ]]; then
        taskset -c "$cpus" "$@" >"$log" 2>&1 &
    else
        "$@" >"$log" 2>&1 &
    fi
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    local tries
    for tries in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "compare.sh: $name exited before accepting connections; its output:" >&2
            sed 's/^/    /' "$log" >&2
            return 1
        fi
        port_open "$port" && return 0
        sleep 0.1
    done
    echo "compare.sh: $name did not open port $port within 10 s" >&2
    return 1
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${STARTED_PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    STARTED_PIDS=("${kept[@]}")
}

# server_command NAME PORT THREADS: sets COMMAND to the command line that starts NAME.
server_command() {
    local name=$1 port=$2 threads=$3
    case $name in
        memcached)
            COMMAND=(memcached)
            [[ $EUID == 0 ]] && COMMAND+=(-u root)
            COMMAND+=(-p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$MEMORY_MB" -c 4096)
            ;;
        rat_memcached)
            COMMAND=("$RAT_MEMCACHED" -p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$MEMORY_MB" -c 4096)
            ;;
        rat_memcached_lru|rat_memcached_lfu|rat_memcached_fifo|rat_memcached_hybrid)
            COMMAND=("$RAT_MEMCACHED" -p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$MEMORY_MB" -c 4096
                --eviction "${name#rat_memcached_}")
            ;;
        rat_memcached_l2)
            # A fresh data directory per start unless L2_DIR names one to reuse.
            local dir=${L2_DIR:-$OUT/l2-$port}
            COMMAND=("$RAT_MEMCACHED" -p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$MEMORY_MB" -c 4096
                --data-dir "$dir")
            # Word splitting wanted: several flags in one option.
            # shellcheck disable=SC2206
            COMMAND+=($L2_ARGS)
            ;;
        rat_canned)
            COMMAND=("$CANNED" -p "$port" -t "$threads" --value-size "$VALUE_SIZE")
            ;;
    esac
}

# --- results ----------------------------------------------------------------------------

# json_field FILE NAME: a number from the flat JSON object rat_loadgen prints.
json_field() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "nan") printf "%.2f", a / b; else printf "-" }'; }

# stats_field PORT NAME: one value of the server's `stats`.
stats_field() {
    local line value=""
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'stats\r\n' >&3
    while IFS= read -r -t 5 line <&3; do
        line=${line%$'\r'}
        [[ $line == END ]] && break
        [[ $line == "STAT $2 "* ]] && value=${line#"STAT $2 "}
    done
    exec 3<&- 3>&-
    echo "$value"
}

# cpu_range FIRST COUNT: a CPU list for taskset.
cpu_range() { if (( $2 == 1 )); then echo "$1"; else echo "$1-$(($1 + $2 - 1))"; fi; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# --- throughput -------------------------------------------------------------------------

CORES=$(nproc)
echo "results and server logs: $OUT"
echo "workload: $KEYS keys, $VALUE_SIZE-byte values, -m $MEMORY_MB, set:get $SET_RATIO, $CONNS connections," \
    "pipeline $PIPELINE, uniform keys; $ROUNDS rounds of $ROUND_SECONDS s per server and protocol," \
    "alternating; protocols: $PROTOCOLS"

for threads in $THREAD_COUNTS; do
    server_cpus="" generator_cpus=""
    if (( threads + GEN_THREADS <= CORES )); then
        server_cpus=$(cpu_range 0 "$threads")
        generator_cpus=$(cpu_range "$threads" "$GEN_THREADS")
        placement="server on CPUs $server_cpus, generator on CPUs $generator_cpus"
    else
        placement="not pinned: $threads server + $GEN_THREADS generator threads > $CORES cores"
    fi
    echo
    echo "== server threads: $threads ($placement)"

    declare -A PORT=() PID=()
    running=()
    for name in $SERVERS; do
        if [[ $name == rat_memcached* && ! -x $RAT_MEMCACHED ]]; then
            echo "$name: $RAT_MEMCACHED not found, skipped"
            continue
        fi
        port=$(free_port)
        server_command "$name" "$port" "$threads"
        if ! start_server "$name" "$port" "$server_cpus" "${COMMAND[@]}"; then
            echo "$name: could not be started, skipped"
            continue
        fi
        PORT[$name]=$port
        PID[$name]=$SERVER_PID
        # Store every key once so the measured gets hit.
        if ! "$LOADGEN" --server "127.0.0.1:$port" --fill --keys "$KEYS" --value-size "$VALUE_SIZE" \
            --conns "$CONNS" --pipeline 16 --json >"$OUT/fill-$name-t$threads.json" 2>"$OUT/fill-$name-t$threads.err"; then
            echo "$name: fill failed: $(cat "$OUT/fill-$name-t$threads.err")"
            stop_server "$SERVER_PID"
            continue
        fi
        running+=("$name")
    done

    generator=("$LOADGEN")
    [[ -n $generator_cpus ]] && generator=(taskset -c "$generator_cpus" "$LOADGEN")
    # Every (server, protocol) pair is one run; FAILED, RPS, P99 and GEN are keyed "server/protocol".
    declare -A FAILED=()
    for round in $(seq "$ROUNDS"); do
        # Rotate the order so that no server always runs first or last.
        count=${#running[@]}
        for ((i = 0; i < count; i++)); do
            name=${running[$(((i + round - 1) % count))]}
            for protocol in $PROTOCOLS; do
                [[ -n ${FAILED[$name/$protocol]:-} ]] && continue
                result=$OUT/$name-$protocol-t$threads-round$round.json
                if ! "${generator[@]}" --server "127.0.0.1:${PORT[$name]}" --protocol "$protocol" \
                    --threads "$GEN_THREADS" --conns "$CONNS" --pipeline "$PIPELINE" --keys "$KEYS" \
                    --value-size "$VALUE_SIZE" --set-ratio "$SET_RATIO" --duration "$ROUND_SECONDS" \
                    --json >"$result" 2>"$result.err"; then
                    echo "$name ($protocol): round $round failed: $(cat "$result.err")"
                    FAILED[$name/$protocol]=1
                    rm -f "$result"
                fi
            done
        done
    done
    for name in "${running[@]}"; do stop_server "${PID[$name]}"; done

    declare -A RPS=() P99=() GEN=()
    for name in "${running[@]}"; do
        for protocol in $PROTOCOLS; do
            [[ -n ${FAILED[$name/$protocol]:-} ]] && continue
            files=("$OUT/$name-$protocol-t$threads-round"*.json)
            RPS[$name/$protocol]=$(for f in "${files[@]}"; do json_field "$f" requests_per_s; done | median)
            P99[$name/$protocol]=$(for f in "${files[@]}"; do json_field "$f" p99_us; done | median)
            GEN[$name/$protocol]=$(for f in "${files[@]}"; do json_field "$f" cpu_per_thread; done | median)
        done
    done

    # Requests/s and p99 of every protocol side by side, one row per server.
    printf '%-17s' server
    for protocol in $PROTOCOLS; do printf ' %12s %10s' "$protocol req/s" "p99 us"; done
    echo
    for name in "${running[@]}"; do
        printf '%-17s' "$name"
        for protocol in $PROTOCOLS; do
            if [[ -n ${RPS[$name/$protocol]:-} ]]; then
                printf ' %12.0f %10.1f' "${RPS[$name/$protocol]}" "${P99[$name/$protocol]}"
            else
                printf ' %12s %10s' failed -
            fi
        done
        echo
    done

    # Ratios of requests/s: against memcached and rat_canned over the same protocol, and
    # against the same server over the text protocol.
    echo
    printf '%-17s %-8s %13s %10s %9s %14s\n' server protocol "vs memcached" "vs canned" "vs text" "generator CPU"
    for name in "${running[@]}"; do
        for protocol in $PROTOCOLS; do
            [[ -n ${RPS[$name/$protocol]:-} ]] || continue
            printf '%-17s %-8s %13s %10s %9s %13.0f%%\n' "$name" "$protocol" \
                "$(ratio "${RPS[$name/$protocol]}" "${RPS[memcached/$protocol]:-0}")" \
                "$(ratio "${RPS[$name/$protocol]}" "${RPS[rat_canned/$protocol]:-0}")" \
                "$(ratio "${RPS[$name/$protocol]}" "${RPS[$name/text]:-0}")" \
                "$(awk -v g="${GEN[$name/$protocol]}" 'BEGIN { print g * 100 }')"
        done
    done
    echo "(medians over rounds; generator CPU near 100% means the generator set the pace)"
    unset PORT PID FAILED RPS P99 GEN
done

# --- memory per item --------------------------------------------------------------------

if (( RSS_ITEMS > 0 )); then
    echo
    echo "== memory: RSS idle and after storing $RSS_ITEMS items of $VALUE_SIZE bytes (-m $MEMORY_MB)"
    printf '%-17s %12s %12s %10s %15s\n' server "idle KiB" "full KiB" items "bytes/item"
    for name in $SERVERS; do
        [[ $name == rat_canned ]] && continue
        if [[ $name == rat_memcached* && ! -x $RAT_MEMCACHED ]]; then
            continue
        fi
        port=$(free_port)
        server_command "$name" "$port" 2
        if ! start_server "$name-rss" "$port" "" "${COMMAND[@]}"; then
            echo "$name: could not be started, skipped"
            continue
        fi
        sleep 1
        idle=$(rss_kib "$SERVER_PID")
        if ! "$LOADGEN" --server "127.0.0.1:$port" --fill --keys "$RSS_ITEMS" --value-size "$VALUE_SIZE" \
            --conns "$CONNS" --pipeline 16 --json >"$OUT/rss-$name.json" 2>"$OUT/rss-$name.err"; then
            echo "$name: fill failed: $(cat "$OUT/rss-$name.err")"
            stop_server "$SERVER_PID"
            continue
        fi
        sleep 1
        full=$(rss_kib "$SERVER_PID")
        items=$(stats_field "$port" curr_items)
        [[ -n $items ]] || items=$RSS_ITEMS
        printf '%-17s %12d %12d %10d %15s\n' "$name" "$idle" "$full" "$items" \
            "$(awk -v a="$full" -v b="$idle" -v n="$items" 'BEGIN { if (n > 0) printf "%.1f", (a - b) * 1024 / n; else print "-" }')"
        stop_server "$SERVER_PID"
    done
fi

# --- persistence: stop, restart, warm-up ----------------------------------------------

# now_ms: the clock in milliseconds.
now_ms() { date +%s%3N; }

if (( RESTART_ITEMS > 0 )); then
    echo
    echo "== persistence: $RESTART_ITEMS items of $VALUE_SIZE bytes through a clean restart (-m $MEMORY_MB)"
    L2_DIR=$OUT/l2-restart
    rm -rf "$L2_DIR"
    port=$(free_port)
    server_command rat_memcached_l2 "$port" 2
    start_server rat_memcached_l2-restart "$port" "" "${COMMAND[@]}"
    "$LOADGEN" --server "127.0.0.1:$port" --fill --keys "$RESTART_ITEMS" --value-size "$VALUE_SIZE" \
        --conns "$CONNS" --pipeline 16 --json >"$OUT/restart-fill.json"
    echo "fill:          $(json_field "$OUT/restart-fill.json" requests_per_s | awk '{ printf "%.0f", $1 }') sets/s"
    full=$(rss_kib "$SERVER_PID")
    stopping=$(now_ms)
    stop_server "$SERVER_PID"
    echo "clean stop:    $(($(now_ms) - stopping)) ms (queue drained and fsynced), RSS before it $full KiB"
    echo "on disk:       $(du -sk "$L2_DIR" | cut -f1) KiB"
    starting=$(now_ms)
    start_server rat_memcached_l2-restart "$port" "" "${COMMAND[@]}"
    first_reply=$(( $(now_ms) - starting ))
    stats_field "$port" curr_items >/dev/null
    echo "first reply:   $first_reply ms after the start (port open, stats answered)"
    last=-1
    while :; do
        warmed=$(stats_field "$port" l2_warmed)
        [[ $warmed == "$last" ]] && break
        last=$warmed
        sleep 0.5
    done
    echo "warm-up:       $warmed items in memory after $(( $(now_ms) - starting - 500 )) ms; RSS $(rss_kib "$SERVER_PID") KiB"
    # Every value is derived from its key: --verify checks each byte.
    if "$LOADGEN" --server "127.0.0.1:$port" --set-ratio 0:1 --keys "$RESTART_ITEMS" --value-size "$VALUE_SIZE" \
        --requests "$RESTART_ITEMS" --verify --conns "$CONNS" --json >"$OUT/restart-read.json" 2>"$OUT/restart-read.err"; then
        echo "read back:     $(json_field "$OUT/restart-read.json" hits) hits, $(json_field "$OUT/restart-read.json" misses) misses of $RESTART_ITEMS random gets, values verified"
    else
        echo "read back:     FAILED: $(cat "$OUT/restart-read.err")"
    fi
    stop_server "$SERVER_PID"
    unset L2_DIR
fi
