#!/usr/bin/env bash
# Compares memcached, rat_memcached and rat_canned over a fixed set of workloads: the
# throughput and latency of each under the same load (W1-W6), the memory each needs per
# stored item (W7) and per idle connection (W8). See bench/README.md for the workloads and
# how to read the output.
#
# usage: bench/compare.sh [options]
#   --workloads "..."    which of W1 W2 W3 W4 W5 W6 W7 W8 to run [all]
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
#   --protocols "..."    wire protocols of W1 (text) and W6 (meta, binary) to run
#                        [text meta binary]
#   --rss-items N        W7: items stored for the memory measurement, 0 to skip it [1000000]
#   --idle-conns N       W8: idle connections to hold, 0 to skip it [50000]
#   --hold S             W8: how long the generator holds them [10]
#   --l2-args "..."      extra flags for rat_memcached_l2, e.g. "--l2-flush-ms=1000" [none]
#   --restart-items N    persistence: store N items in rat_memcached_l2, stop it, start it
#                        again, and time the stop, the first reply and the warm-up, then
#                        read every item back verified; 0 to skip it [0]
#   --no-build           use the binaries already built
#   --out DIR            keep the raw JSON results in DIR [a temporary directory]
# environment:
#   RAT_MEMCACHED        path of the rat_memcached binary [<target>/release/rat_memcached]
#   RAT_LOADGEN          path of the rat_loadgen binary [<target>/release/rat_loadgen]
#   CARGO_TARGET_DIR     cargo's target directory [<repo>/target]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac

ALL_WORKLOADS="W1 W2 W3 W4 W5 W6 W7 W8"
WORKLOADS=$ALL_WORKLOADS
ROUNDS=3
ROUND_SECONDS=10
THREAD_COUNTS="1 2"
GEN_THREADS=1
SERVERS="memcached rat_memcached rat_canned"
PROTOCOLS="text meta binary"
RSS_ITEMS=1000000
IDLE_CONNS=50000
HOLD_SECONDS=10
RESTART_ITEMS=0
L2_ARGS=""
BUILD=1
OUT=""
MEMORY_MB=1024

# What every workload shares: the key space, and the value size unless it says otherwise.
KEYS=100000
VALUE_SIZE=100
# Connections used to store every key before a workload's rounds.
FILL_CONNS=50
# Server threads in the memory parts (W7, W8).
MEMORY_THREADS=2

while [[ $# -gt 0 ]]; do
    case $1 in
        --workloads) WORKLOADS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --seconds) ROUND_SECONDS=$2; shift 2 ;;
        --threads) THREAD_COUNTS=$2; shift 2 ;;
        --gen-threads) GEN_THREADS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --memory-mb) MEMORY_MB=$2; shift 2 ;;
        --protocols) PROTOCOLS=$2; shift 2 ;;
        --rss-items) RSS_ITEMS=$2; shift 2 ;;
        --idle-conns) IDLE_CONNS=$2; shift 2 ;;
        --hold) HOLD_SECONDS=$2; shift 2 ;;
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
for workload in $WORKLOADS; do
    [[ " $ALL_WORKLOADS " == *" $workload "* ]] ||
        { echo "compare.sh: unknown workload $workload ($ALL_WORKLOADS)" >&2; exit 1; }
done
selected() { [[ " $WORKLOADS " == *" $1 "* ]]; }

if [[ -z $OUT ]]; then
    OUT=$(mktemp -d /tmp/rat-compare.XXXXXX)
fi
mkdir -p "$OUT"

if [[ " $SERVERS " == *" memcached "* ]] && ! command -v memcached >/dev/null; then
    if [[ $EUID == 0 ]] && command -v apt-get >/dev/null; then
        echo "memcached is not installed: installing Debian's package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q memcached >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q memcached >/dev/null; }
    else
        echo "compare.sh: memcached is not installed (apt-get install memcached, or leave it out of --servers)" >&2
        exit 1
    fi
fi

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p rat_memcache_bench)
    if [[ -z ${RAT_MEMCACHED:-} && " $SERVERS " == *" rat_memcached"* ]]; then
        (cd "$ROOT" && cargo build --release --quiet --bin rat_memcached)
    fi
fi
LOADGEN=${RAT_LOADGEN:-$TARGET/release/rat_loadgen}
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

# forget_pid PID: PID has been waited for; it is no longer stop_all's to end.
forget_pid() {
    local kept=() pid
    for pid in "${STARTED_PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    STARTED_PIDS=("${kept[@]}")
}

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
    forget_pid "$1"
}

# server_command NAME PORT THREADS [MAXCONNS]: sets COMMAND to the command line that
# starts NAME with VALUE_SIZE as rat_canned's value.
server_command() {
    local name=$1 port=$2 threads=$3 conns=${4:-4096}
    local common=(-p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$MEMORY_MB" -c "$conns")
    case $name in
        memcached)
            COMMAND=(memcached)
            [[ $EUID == 0 ]] && COMMAND+=(-u root)
            COMMAND+=("${common[@]}")
            ;;
        rat_memcached)
            COMMAND=("$RAT_MEMCACHED" "${common[@]}")
            ;;
        rat_memcached_lru|rat_memcached_lfu|rat_memcached_fifo|rat_memcached_hybrid)
            COMMAND=("$RAT_MEMCACHED" "${common[@]}" --eviction "${name#rat_memcached_}")
            ;;
        rat_memcached_l2)
            # A fresh data directory per start unless L2_DIR names one to reuse.
            local dir=${L2_DIR:-$OUT/l2-$port}
            COMMAND=("$RAT_MEMCACHED" "${common[@]}" --data-dir "$dir")
            # Word splitting wanted: several flags in one option.
            # shellcheck disable=SC2206
            COMMAND+=($L2_ARGS)
            ;;
        rat_canned)
            # It takes no -m or -c: it stores nothing and accepts every connection.
            COMMAND=("$CANNED" -p "$port" -t "$threads" --value-size "$VALUE_SIZE")
            ;;
        *)
            echo "compare.sh: unknown server $name" >&2
            return 1
            ;;
    esac
}

# server_available NAME: false, saying so, when NAME's binary is missing.
server_available() {
    if [[ $1 == rat_memcached* && ! -x $RAT_MEMCACHED ]]; then
        echo "$1: $RAT_MEMCACHED not found, skipped"
        return 1
    fi
}

# --- results ----------------------------------------------------------------------------

# json_field FILE NAME: a number from the flat JSON object rat_loadgen prints.
json_field() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratio A B: A / B to two decimals, "-" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "" && a != "nan") printf "%.2f", a / b; else printf "-" }'; }

# number FORMAT VALUE: VALUE printed with FORMAT, "-" when missing.
number() { if [[ -n $2 && $2 != nan ]]; then printf "$1" "$2"; else printf -- -; fi; }

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

open_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Medians of every measured row, keyed "ROW/THREADS/SERVER", where ROW names the workload
# and, for W6, the protocol ("W1", "W6 meta", "W2", ...); SUMMARY_ROWS lists "ROW/THREADS"
# in the order run.
declare -A RPS=() P50=() P99=() KPS=() GEN=()
SUMMARY_ROWS=()
# W7 and W8, keyed by server.
declare -A BYTES_PER_ITEM=() BYTES_PER_CONN=() KEPT=()

# --- throughput and latency: W1-W6 ------------------------------------------------------

# workload_setup RUN: the load of one throughput run. W1 and W6 are one run: the same load
# over the text protocol (W1) and over meta and binary (W6).
workload_setup() {
    W_CONNS=50 W_PIPELINE=1 W_SET_RATIO=1:10 W_VALUE_SIZE=$VALUE_SIZE W_MULTIGET=1
    W_PROTOCOLS=text
    case $1 in
        W1)
            W_PROTOCOLS=""
            for protocol in $PROTOCOLS; do
                if { [[ $protocol == text ]] && selected W1; } ||
                    { [[ $protocol != text ]] && selected W6; }; then
                    W_PROTOCOLS+=" $protocol"
                fi
            done
            W_PROTOCOLS=${W_PROTOCOLS# }
            ;;
        W2) W_PIPELINE=16 ;;
        W3) W_MULTIGET=10 ;;
        W4) W_SET_RATIO=1:0 W_VALUE_SIZE=1024 ;;
        W5) W_CONNS=4 ;;
    esac
    W_TITLE="set:get $W_SET_RATIO, $W_CONNS connections, pipeline $W_PIPELINE, $W_VALUE_SIZE-byte values"
    (( W_MULTIGET > 1 )) && W_TITLE+=", $W_MULTIGET keys per get"
    W_TITLE+=", protocols: $W_PROTOCOLS"
    return 0
}

# row_name RUN PROTOCOL: the workload a row of RUN belongs to.
row_name() {
    if [[ $1 == W1 && $2 != text ]]; then echo "W6 $2"; else echo "$1"; fi
}

# run_workload RUN THREADS: starts every server, stores every key in it, runs the rounds
# alternating servers, stops the servers and prints the table.
run_workload() {
    local run=$1 threads=$2 name protocol round i count result port
    workload_setup "$run"
    [[ -n $W_PROTOCOLS ]] || return 0
    local label=$run
    [[ $run == W1 ]] && label="W1/W6"
    echo
    echo "== $label, server threads $threads: $W_TITLE"
    echo "   ($PLACEMENT)"

    local VALUE_SIZE=$W_VALUE_SIZE
    declare -A port_of=() pid_of=() failed=()
    local running=()
    for name in $SERVERS; do
        server_available "$name" || continue
        port=$(free_port)
        server_command "$name" "$port" "$threads"
        if ! start_server "$name" "$port" "$SERVER_CPUS" "${COMMAND[@]}"; then
            echo "$name: could not be started, skipped"
            continue
        fi
        port_of[$name]=$port
        pid_of[$name]=$SERVER_PID
        # Store every key once so the measured gets hit and the sets replace.
        result=$OUT/$run-fill-$name-t$threads.json
        if ! "$LOADGEN" --server "127.0.0.1:$port" --fill --keys "$KEYS" --value-size "$W_VALUE_SIZE" \
            --conns "$FILL_CONNS" --pipeline 16 --json >"$result" 2>"$result.err"; then
            echo "$name: fill failed: $(cat "$result.err")"
            stop_server "$SERVER_PID"
            continue
        fi
        running+=("$name")
    done

    local gen_threads=$(( GEN_THREADS < W_CONNS ? GEN_THREADS : W_CONNS ))
    local generator=("$LOADGEN")
    [[ -n $GENERATOR_CPUS ]] && generator=(taskset -c "$GENERATOR_CPUS" "$LOADGEN")
    for round in $(seq "$ROUNDS"); do
        # Rotate the order so that no server always runs first or last.
        count=${#running[@]}
        for ((i = 0; i < count; i++)); do
            name=${running[$(((i + round - 1) % count))]}
            for protocol in $W_PROTOCOLS; do
                [[ -n ${failed[$name/$protocol]:-} ]] && continue
                result=$OUT/$(row_name "$run" "$protocol" | tr ' ' -)-$name-$protocol-t$threads-round$round.json
                if ! "${generator[@]}" --server "127.0.0.1:${port_of[$name]}" --protocol "$protocol" \
                    --threads "$gen_threads" --conns "$W_CONNS" --pipeline "$W_PIPELINE" --keys "$KEYS" \
                    --value-size "$W_VALUE_SIZE" --set-ratio "$W_SET_RATIO" --multiget "$W_MULTIGET" \
                    --duration "$ROUND_SECONDS" --json >"$result" 2>"$result.err"; then
                    echo "$name ($protocol): round $round failed: $(cat "$result.err")"
                    failed[$name/$protocol]=1
                    rm -f "$result"
                fi
            done
        done
    done
    for name in "${running[@]}"; do stop_server "${pid_of[$name]}"; done

    local row key files
    for protocol in $W_PROTOCOLS; do
        row=$(row_name "$run" "$protocol")
        SUMMARY_ROWS+=("$row/$threads")
        for name in "${running[@]}"; do
            [[ -n ${failed[$name/$protocol]:-} ]] && continue
            key=$row/$threads/$name
            files=("$OUT/$(tr ' ' - <<<"$row")-$name-$protocol-t$threads-round"*.json)
            RPS[$key]=$(for f in "${files[@]}"; do json_field "$f" requests_per_s; done | median)
            KPS[$key]=$(for f in "${files[@]}"; do json_field "$f" keys_per_s; done | median)
            P50[$key]=$(for f in "${files[@]}"; do json_field "$f" p50_us; done | median)
            P99[$key]=$(for f in "${files[@]}"; do json_field "$f" p99_us; done | median)
            GEN[$key]=$(for f in "${files[@]}"; do json_field "$f" cpu_per_thread; done | median)
        done
    done

    # One row per server and protocol. Extra columns where the workload calls for them:
    # keys/s for multiget, p50 and p99 ratios for the latency load, each protocol against
    # the same server's text protocol when W1 and W6 ran together.
    local multi_protocol=0
    [[ $run == W1 && $W_PROTOCOLS == *text* && $W_PROTOCOLS == *" "* ]] && multi_protocol=1
    local format='%-17s %-8s %10s %9s' header=(server protocol "req/s" "p99 us")
    [[ $run == W5 ]] && { format+=' %9s'; header+=("p50 us"); }
    [[ $run == W3 ]] && { format+=' %10s'; header+=("keys/s"); }
    format+=' %12s %9s'
    header+=("vs memcached" "vs canned")
    (( multi_protocol )) && { format+=' %7s'; header+=("vs text"); }
    [[ $run == W5 ]] && { format+=' %16s %13s'; header+=("p99 vs memcached" "p99 vs canned"); }
    format+=' %13s\n'
    header+=("generator CPU")
    # Format strings are built above from fixed pieces.
    # shellcheck disable=SC2059
    printf "$format" "${header[@]}"
    local cells
    for name in "${running[@]}"; do
        for protocol in $W_PROTOCOLS; do
            row=$(row_name "$run" "$protocol")
            key=$row/$threads/$name
            cells=("$name" "$protocol")
            if [[ -z ${RPS[$key]:-} ]]; then
                cells+=(failed -)
                [[ $run == W5 ]] && cells+=(-)
                [[ $run == W3 ]] && cells+=(-)
                cells+=(- -)
                (( multi_protocol )) && cells+=(-)
                [[ $run == W5 ]] && cells+=(- -)
                cells+=(-)
            else
                cells+=("$(number %.0f "${RPS[$key]}")" "$(number %.1f "${P99[$key]}")")
                [[ $run == W5 ]] && cells+=("$(number %.1f "${P50[$key]}")")
                [[ $run == W3 ]] && cells+=("$(number %.0f "${KPS[$key]}")")
                cells+=("$(ratio "${RPS[$key]}" "${RPS[$row/$threads/memcached]:-}")"
                    "$(ratio "${RPS[$key]}" "${RPS[$row/$threads/rat_canned]:-}")")
                (( multi_protocol )) && cells+=("$(ratio "${RPS[$key]}" "${RPS[W1/$threads/$name]:-}")")
                [[ $run == W5 ]] && cells+=("$(ratio "${P99[$key]}" "${P99[$row/$threads/memcached]:-}")"
                    "$(ratio "${P99[$key]}" "${P99[$row/$threads/rat_canned]:-}")")
                cells+=("$(awk -v g="${GEN[$key]}" 'BEGIN { printf "%.0f%%", g * 100 }')")
            fi
            # shellcheck disable=SC2059
            printf "$format" "${cells[@]}"
        done
    done
    return 0
}

CORES=$(nproc)
echo "results and server logs: $OUT"
echo "workloads: $WORKLOADS; $KEYS keys, uniform, -m $MEMORY_MB; $ROUNDS rounds of $ROUND_SECONDS s" \
    "per server and protocol, alternating; medians over the rounds"

RUNS=()
{ selected W1 || selected W6; } && RUNS+=(W1)
for run in W2 W3 W4 W5; do selected "$run" && RUNS+=("$run"); done
if (( ${#RUNS[@]} > 0 )); then
    for threads in $THREAD_COUNTS; do
        SERVER_CPUS="" GENERATOR_CPUS=""
        if (( threads + GEN_THREADS <= CORES )); then
            SERVER_CPUS=$(cpu_range 0 "$threads")
            GENERATOR_CPUS=$(cpu_range "$threads" "$GEN_THREADS")
            PLACEMENT="server on CPUs $SERVER_CPUS, generator on CPUs $GENERATOR_CPUS"
        else
            PLACEMENT="not pinned: $threads server + $GEN_THREADS generator threads > $CORES cores"
        fi
        for run in "${RUNS[@]}"; do run_workload "$run" "$threads"; done
    done
    echo "(generator CPU near 100% means the generator, not the server, set the pace)"
fi

# --- W7: memory per item ----------------------------------------------------------------

if selected W7 && (( RSS_ITEMS > 0 )); then
    echo
    echo "== W7 memory: RSS idle (fresh start, no connections) and after storing $RSS_ITEMS items" \
        "of $VALUE_SIZE bytes (-t $MEMORY_THREADS -m $MEMORY_MB)"
    printf '%-17s %12s %12s %10s %15s\n' server "idle KiB" "full KiB" items "bytes/item"
    for name in $SERVERS; do
        server_available "$name" || continue
        port=$(free_port)
        server_command "$name" "$port" "$MEMORY_THREADS"
        if ! start_server "$name-rss" "$port" "" "${COMMAND[@]}"; then
            echo "$name: could not be started, skipped"
            continue
        fi
        sleep 1
        idle=$(rss_kib "$SERVER_PID")
        if [[ $name == rat_canned ]]; then
            # It stores nothing: only its idle size says something.
            printf '%-17s %12d %12s %10s %15s\n' "$name" "$idle" - - -
            stop_server "$SERVER_PID"
            continue
        fi
        if ! "$LOADGEN" --server "127.0.0.1:$port" --fill --keys "$RSS_ITEMS" --value-size "$VALUE_SIZE" \
            --conns "$FILL_CONNS" --pipeline 16 --json >"$OUT/rss-$name.json" 2>"$OUT/rss-$name.err"; then
            echo "$name: fill failed: $(cat "$OUT/rss-$name.err")"
            stop_server "$SERVER_PID"
            continue
        fi
        sleep 1
        full=$(rss_kib "$SERVER_PID")
        items=$(stats_field "$port" curr_items)
        [[ -n $items ]] || items=$RSS_ITEMS
        BYTES_PER_ITEM[$name]=$(awk -v a="$full" -v b="$idle" -v n="$items" \
            'BEGIN { if (n > 0) printf "%.1f", (a - b) * 1024 / n; else print "nan" }')
        printf '%-17s %12d %12d %10d %15s\n' "$name" "$idle" "$full" "$items" "$(number %s "${BYTES_PER_ITEM[$name]}")"
        stop_server "$SERVER_PID"
    done
fi

# --- W8: memory per idle connection -----------------------------------------------------

# raise_fd_limit NEEDED: raises this shell's open-files limit, which every server and
# generator started afterwards inherits, to NEEDED; past the hard limit only when allowed
# to raise that too (root); else to the hard limit.
raise_fd_limit() {
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]] && (( hard < $1 )); then
        ulimit -Hn "$1" 2>/dev/null || true
        hard=$(ulimit -Hn)
    fi
    if [[ $hard == unlimited ]] || (( hard >= $1 )); then
        ulimit -Sn "$1"
    else
        ulimit -Sn "$hard"
    fi
}

# wait_for_file PATH PID SECONDS: true once PATH exists; false when PID exits first or
# SECONDS pass.
wait_for_file() {
    local deadline=$((SECONDS + $3))
    while [[ ! -s $1 ]]; do
        kill -0 "$2" 2>/dev/null || [[ -s $1 ]] || return 1
        (( SECONDS < deadline )) || return 1
        sleep 0.2
    done
}

# wait_for_settled_fds PID SECONDS: waits until PID's open descriptors stop changing (the
# server has accepted everything the kernel queued), at most SECONDS.
wait_for_settled_fds() {
    local deadline=$((SECONDS + $2)) last=-1 now
    while (( SECONDS < deadline )); do
        now=$(open_fds "$1")
        (( now == last )) && return 0
        last=$now
        sleep 0.5
    done
}

if selected W8 && (( IDLE_CONNS > 0 )); then
    echo
    if ! "$LOADGEN" --help 2>&1 | grep -q -- --idle-conns; then
        echo "W8 skipped: rat_loadgen has no --idle-conns"
    else
        # Each process holds one descriptor per connection, plus a margin for its own; the
        # servers' -c is the limit, as memcached will not take a -c above it.
        raise_fd_limit $((IDLE_CONNS + 10000))
        max_conns=$(ulimit -Sn)
        idle_conns=$IDLE_CONNS
        if (( max_conns < IDLE_CONNS + 1000 )); then
            idle_conns=$((max_conns - 1000))
            echo "W8: the open-files limit is $max_conns; holding $idle_conns connections instead of $IDLE_CONNS"
        fi
        echo "== W8 memory: RSS idle and while $idle_conns connections are held idle" \
            "(-t $MEMORY_THREADS -c $max_conns, held $HOLD_SECONDS s)"
        printf '%-17s %12s %12s %8s %8s %10s %15s\n' server "idle KiB" "holding KiB" opened kept "server fds" "bytes/conn"
        for name in $SERVERS; do
            server_available "$name" || continue
            port=$(free_port)
            server_command "$name" "$port" "$MEMORY_THREADS" "$max_conns"
            if ! start_server "$name-idle" "$port" "" "${COMMAND[@]}"; then
                echo "$name: could not be started, skipped"
                continue
            fi
            server_pid=$SERVER_PID
            sleep 1
            idle=$(rss_kib "$server_pid")
            idle_fds=$(open_fds "$server_pid")
            signal=$OUT/idle-$name.opened
            result=$OUT/idle-$name.json
            rm -f "$signal"
            "$LOADGEN" --server "127.0.0.1:$port" --idle-conns "$idle_conns" --hold "$HOLD_SECONDS" \
                --hold-signal-file "$signal" --json >"$result" 2>"$result.err" &
            generator_pid=$!
            STARTED_PIDS+=("$generator_pid")
            holding="" server_fds=""
            if wait_for_file "$signal" "$generator_pid" 300; then
                wait_for_settled_fds "$server_pid" "$HOLD_SECONDS"
                holding=$(rss_kib "$server_pid")
                server_fds=$(( $(open_fds "$server_pid") - idle_fds ))
            fi
            status=0
            wait "$generator_pid" || status=$?
            forget_pid "$generator_pid"
            stop_server "$server_pid"
            if (( status != 0 )) || [[ -z $holding ]]; then
                echo "$name: the idle connections failed: $(cat "$result.err")"
                continue
            fi
            opened=$(json_field "$result" opened)
            KEPT[$name]=$(json_field "$result" kept)
            BYTES_PER_CONN[$name]=$(awk -v a="$holding" -v b="$idle" -v n="${KEPT[$name]}" \
                'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "nan" }')
            printf '%-17s %12d %12d %8d %8d %10d %15s\n' "$name" "$idle" "$holding" "$opened" "${KEPT[$name]}" \
                "$server_fds" "$(number %s "${BYTES_PER_CONN[$name]}")"
        done
        echo "(opened: connects that completed; kept: still answered after the hold; server fds:"
        echo " descriptors the server gained, i.e. connections it accepted)"
    fi
fi

# --- summary ----------------------------------------------------------------------------

# memory_detail WHAT TABLE-NAME: "WHAT: memcached X, rat Y (rat/memcached R)" from an
# associative array of per-server figures.
memory_detail() {
    local -n figures=$2
    local text="$1:" separator="" name shown
    for name in memcached rat_memcached rat_canned; do
        [[ -n ${figures[$name]:-} ]] || continue
        shown=${name/rat_memcached/rat}
        shown=${shown/rat_canned/canned}
        text+="$separator $shown ${figures[$name]}"
        separator=","
        [[ $3 == kept && -n ${KEPT[$name]:-} ]] && text+=" (kept ${KEPT[$name]})"
    done
    text+="; rat/memcached $(ratio "${figures[rat_memcached]:-}" "${figures[memcached]:-}")"
    echo "$text"
}

if (( ${#SUMMARY_ROWS[@]} > 0 || ${#BYTES_PER_ITEM[@]} > 0 || ${#BYTES_PER_CONN[@]} > 0 )); then
    echo
    echo "== summary: req/s ratios (rat = rat_memcached, canned = rat_canned), medians over rounds"
    printf '%-10s %7s %13s %10s %16s  %s\n' workload threads "rat/memcached" "rat/canned" "memcached/canned" detail
    for entry in "${SUMMARY_ROWS[@]}"; do
        row=${entry%/*} threads=${entry##*/}
        mc=${RPS[$row/$threads/memcached]:-} rat=${RPS[$row/$threads/rat_memcached]:-}
        canned=${RPS[$row/$threads/rat_canned]:-}
        detail=""
        if [[ $row == W5 ]]; then
            detail="p99 us: memcached $(number %.1f "${P99[$row/$threads/memcached]:-}")"
            detail+=", rat $(number %.1f "${P99[$row/$threads/rat_memcached]:-}")"
            detail+=", canned $(number %.1f "${P99[$row/$threads/rat_canned]:-}")"
            detail+="; rat/memcached $(ratio "${P99[$row/$threads/rat_memcached]:-}" "${P99[$row/$threads/memcached]:-}")"
        fi
        printf '%-10s %7s %13s %10s %16s  %s\n' "$row" "$threads" "$(ratio "$rat" "$mc")" \
            "$(ratio "$rat" "$canned")" "$(ratio "$mc" "$canned")" "$detail"
    done
    if (( ${#BYTES_PER_ITEM[@]} > 0 )); then
        printf '%-10s %7s %13s %10s %16s  %s\n' W7 "$MEMORY_THREADS" - - - \
            "$(memory_detail "bytes/item" BYTES_PER_ITEM items)"
    fi
    if (( ${#BYTES_PER_CONN[@]} > 0 )); then
        printf '%-10s %7s %13s %10s %16s  %s\n' W8 "$MEMORY_THREADS" - - - \
            "$(memory_detail "bytes/conn" BYTES_PER_CONN kept)"
    fi
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
        --conns "$FILL_CONNS" --pipeline 16 --json >"$OUT/restart-fill.json"
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
        --requests "$RESTART_ITEMS" --verify --conns "$FILL_CONNS" --json >"$OUT/restart-read.json" 2>"$OUT/restart-read.err"; then
        echo "read back:     $(json_field "$OUT/restart-read.json" hits) hits, $(json_field "$OUT/restart-read.json" misses) misses of $RESTART_ITEMS random gets, values verified"
    else
        echo "read back:     FAILED: $(cat "$OUT/restart-read.err")"
    fi
    stop_server "$SERVER_PID"
    unset L2_DIR
fi
