#!/usr/bin/env bash
# Drives a server with the libmemcached command-line tools (Debian's libmemcached-tools:
# memcping, memcflush, memccp, memccat, memcexist, memctouch, memcrm, memcstat, memcslap) and
# checks their exit statuses and outputs against what memcached 1.6 gives.
#
# usage: tests/clients/libmemcached_tools.sh HOST PORT [--binary]
#   --binary   talk libmemcached's binary protocol instead of the text protocol
#
# The server is flushed several times: do not point this at a cache whose contents matter.
# Exits non-zero if any check fails.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 || ( $# -eq 3 && $3 != --binary ) ]]; then
    echo "usage: $0 HOST PORT [--binary]" >&2
    exit 2
fi
HOST=$1
PORT=$2
SERVER=(--servers="$HOST:$PORT")
# memcping only has the server list; it pings with a version request either way.
PING=("${SERVER[@]}")
[[ ${3:-} == --binary ]] && SERVER+=(--binary)

for tool in memcping memcflush memccp memccat memcexist memctouch memcrm memcstat memcslap; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install libmemcached-tools" >&2; exit 2; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

PASSED=0
FAILED=0

# expect DESCRIPTION STATUS EXPECTED_STDOUT COMMAND...: runs COMMAND and checks that it exits
# with STATUS and prints exactly EXPECTED_STDOUT (use '*' to accept any output).
expect() {
    local description=$1 status=$2 expected=$3
    shift 3
    local actual=0
    "$@" >stdout 2>stderr || actual=$?
    if [[ $actual != "$status" ]]; then
        FAILED=$((FAILED + 1))
        echo "FAIL $description: exit status $actual, expected $status ($*)"
        sed 's/^/    stderr: /' stderr
        return
    fi
    if [[ $expected != '*' ]] && ! cmp -s stdout <(printf '%s' "$expected"); then
        FAILED=$((FAILED + 1))
        echo "FAIL $description: unexpected output ($*)"
        diff <(printf '%s' "$expected") stdout | sed 's/^/    /' || true
        return
    fi
    PASSED=$((PASSED + 1))
    echo "ok   $description"
}

# same DESCRIPTION FILE_A FILE_B: checks that two files are byte for byte equal.
same() {
    if cmp -s "$2" "$3"; then
        PASSED=$((PASSED + 1))
        echo "ok   $1"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $1: $2 and $3 differ"
    fi
}

# stat_value NAME: one statistic as memcstat prints it.
stat_value() {
    memcstat "${SERVER[@]}" 2>/dev/null | awk -v name="$1" '$1 == name ":" { print $2 }'
}

expect "memcping reaches the server" 0 "" memcping "${PING[@]}"
expect "memcflush empties the cache" 0 "" memcflush "${SERVER[@]}"

# --- memccp and memccat -------------------------------------------------------------------

printf 'hello world\n' >greeting
expect "memccp stores a file under its name" 0 "" memccp "${SERVER[@]}" greeting
expect "memccat prints the value and a newline" 0 $'hello world\n\n' memccat "${SERVER[@]}" greeting
expect "memccat of a missing key fails" 1 "" memccat "${SERVER[@]}" no-such-key

printf 'one' >first
printf 'two' >second
expect "memccp stores several files" 0 "" memccp "${SERVER[@]}" first second
expect "memccat fetches several keys" 0 $'one\ntwo\n' memccat "${SERVER[@]}" first second

head -c 300000 /dev/urandom >random-bytes
expect "memccp stores 300 kB of binary data" 0 "" memccp "${SERVER[@]}" random-bytes
expect "memccat -f writes the value to a file" 0 "" memccat "${SERVER[@]}" --file=copy random-bytes
same "binary data comes back unchanged" random-bytes copy

head -c $((1024 * 1024 - 4096)) /dev/urandom >near-limit
expect "memccp stores a value just under 1 MB" 0 "" memccp "${SERVER[@]}" near-limit
rm -f copy
expect "memccat fetches the value just under 1 MB" 0 "" memccat "${SERVER[@]}" --file=copy near-limit
same "the value just under 1 MB comes back unchanged" near-limit copy

head -c $((1024 * 1024 + 1)) /dev/urandom >too-large
expect "memccp of a value over 1 MB fails" 1 "" memccp "${SERVER[@]}" too-large
expect "a value over 1 MB is not stored" 1 "" memccat "${SERVER[@]}" too-large

printf 'flagged' >flagged
expect "memccp --flag stores flags" 0 "" memccp "${SERVER[@]}" --flag=42 flagged
expect "memccat --flag prints the flags first" 0 $'42\nflagged\n' memccat "${SERVER[@]}" --flag flagged

# --- add and replace ------------------------------------------------------------------------

printf 'changed' >greeting
expect "memccp --add of an existing key fails" 1 "" memccp "${SERVER[@]}" --add greeting
expect "a failed add leaves the value alone" 0 $'hello world\n\n' memccat "${SERVER[@]}" greeting
expect "memccp --replace of an existing key succeeds" 0 "" memccp "${SERVER[@]}" --replace greeting
expect "a replace stores the new value" 0 $'changed\n' memccat "${SERVER[@]}" greeting
printf 'new' >newcomer
expect "memccp --replace of a missing key fails" 1 "" memccp "${SERVER[@]}" --replace newcomer
expect "a failed replace stores nothing" 1 "" memccat "${SERVER[@]}" newcomer
expect "memccp --add of a missing key succeeds" 0 "" memccp "${SERVER[@]}" --add newcomer
expect "an add stores the value" 0 $'new\n' memccat "${SERVER[@]}" newcomer

# --- memcexist, memcrm -----------------------------------------------------------------------

expect "memcexist finds a stored key" 0 "" memcexist "${SERVER[@]}" newcomer
expect "memcexist misses an absent key" 1 "" memcexist "${SERVER[@]}" no-such-key
expect "memcrm removes a stored key" 0 "" memcrm "${SERVER[@]}" newcomer
expect "a removed key is gone" 1 "" memcexist "${SERVER[@]}" newcomer
expect "memcrm of a missing key fails" 1 "" memcrm "${SERVER[@]}" newcomer

# --- expiry and memctouch --------------------------------------------------------------------

# A TTL of 1 s may end at the server clock's next tick, a few ms away; 4 s
# leaves room for the next three commands on a loaded machine.
printf 'brief' >brief
printf 'extended' >extended
expect "memccp --expire stores with a TTL" 0 "" memccp "${SERVER[@]}" --expire=4 brief extended
expect "memctouch extends a TTL" 0 "" memctouch "${SERVER[@]}" --expire=3600 extended
expect "memctouch of a missing key fails" 1 "" memctouch "${SERVER[@]}" --expire=10 no-such-key
expect "an item with a TTL is there at first" 0 "" memcexist "${SERVER[@]}" brief
sleep 6
expect "an item past its TTL is gone" 1 "" memccat "${SERVER[@]}" brief
expect "a touched item outlives its first TTL" 0 $'extended\n' memccat "${SERVER[@]}" extended

# --- memcstat ---------------------------------------------------------------------------------

expect "memcstat lists the server" 0 '*' memcstat "${SERVER[@]}"
if grep -qx "Server: $HOST ($PORT)" stdout; then
    PASSED=$((PASSED + 1))
    echo "ok   memcstat names the server"
else
    FAILED=$((FAILED + 1))
    echo "FAIL memcstat output has no 'Server: $HOST ($PORT)' line"
fi
for name in pid uptime time version curr_connections curr_items cmd_get cmd_set get_hits get_misses bytes; do
    if grep -Eq "^[[:space:]]+$name: [^[:space:]]+$" stdout; then
        PASSED=$((PASSED + 1))
        echo "ok   memcstat reports $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL memcstat reports no $name"
    fi
done
# libmemcached reads the version as three numbers and prints just those.
version=$(awk '$1 == "version:" { print $2 }' stdout | grep -Eo '^[0-9]+\.[0-9]+\.[0-9]+' || true)
# memcstat prints the server versions on standard error.
server_version() { memcstat "${SERVER[@]}" --server-version 2>&1; }
expect "memcstat --server-version matches stats" 0 "$HOST:$PORT $version"$'\n' server_version

# expect_delta DESCRIPTION BEFORE AFTER DIFFERENCE: checks a counter moved by DIFFERENCE.
expect_delta() {
    if [[ $2 =~ ^[0-9]+$ && $3 =~ ^[0-9]+$ && $(($3 - $2)) -eq $4 ]]; then
        PASSED=$((PASSED + 1))
        echo "ok   $1"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $1: went from '$2' to '$3', expected a change of $4"
    fi
}

sets_before=$(stat_value cmd_set || true)
hits_before=$(stat_value get_hits || true)
printf 'counted' >counted
expect "memccp stores a counted value" 0 "" memccp "${SERVER[@]}" counted
expect "memccat fetches it" 0 $'counted\n' memccat "${SERVER[@]}" counted
expect "memccat fetches it again" 0 $'counted\n' memccat "${SERVER[@]}" counted
sets_after=$(stat_value cmd_set || true)
hits_after=$(stat_value get_hits || true)
expect_delta "cmd_set counts one memccp" "$sets_before" "$sets_after" 1
expect_delta "get_hits counts two memccats" "$hits_before" "$hits_after" 2

expect "memcstat --args=settings reports settings" 0 '*' memcstat "${SERVER[@]}" --args=settings
cp stdout settings
for name in maxbytes maxconns tcpport item_size_max; do
    if grep -Eq "^[[:space:]]+$name: [0-9]+$" settings; then
        PASSED=$((PASSED + 1))
        echo "ok   memcstat settings report $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL memcstat settings report no $name"
    fi
done
expect "settings name the port" 0 "" grep -Eq "^[[:space:]]+tcpport: $PORT$" settings

# --- memcslap ---------------------------------------------------------------------------------

# memcslap exits 0 even when every request failed: it prints `Fatal error for key ...` on
# standard error and counts only the keys that succeeded. So a run passes when it prints
# nothing on standard error and its `Time to <test> N keys` lines count every key.
SLAP_KEYS=200
SLAP_THREADS=2

# slap DESCRIPTION TEST EXPECTED_COUNTS [--binary]: runs memcslap's TEST and checks that its
# `Time to ...` lines report EXPECTED_COUNTS (the key count of each line, space-separated).
slap() {
    local description=$1 test=$2 expected=$3
    shift 3
    local status=0
    memcslap --servers="$HOST:$PORT" "$@" --test="$test" --concurrency="$SLAP_THREADS" \
        --execute-number="$SLAP_KEYS" >stdout 2>stderr || status=$?
    local counts
    counts=$(sed -n 's/^Time to \(set\|get\|mget\) *\([0-9]*\) .*/\2/p' stdout | paste -sd ' ')
    if [[ $status != 0 || -s stderr || $counts != "$expected" ]]; then
        FAILED=$((FAILED + 1))
        echo "FAIL $description: exit status $status, key counts '$counts', expected '$expected'"
        head -5 stderr | sed 's/^/    stderr: /'
        return
    fi
    PASSED=$((PASSED + 1))
    echo "ok   $description"
}

# Both protocols whatever the mode of the other checks: memcslap is quick, and its load
# goes through libmemcached's pipelined paths (quiet sets, multi-gets) the other tools skip.
ALL_KEYS=$((SLAP_KEYS * SLAP_THREADS))
for protocol in text binary; do
    flags=()
    [[ $protocol == binary ]] && flags=(--binary)
    slap "memcslap sets over $protocol" set "$ALL_KEYS" "${flags[@]}"
    slap "memcslap loads and gets over $protocol" get "$SLAP_KEYS $ALL_KEYS" "${flags[@]}"
    slap "memcslap loads and multi-gets over $protocol" mget "$SLAP_KEYS $ALL_KEYS" "${flags[@]}"
done

# --- memcflush --------------------------------------------------------------------------------

expect "memcflush succeeds" 0 "" memcflush "${SERVER[@]}"
expect "memcflush removed every key" 1 "" memccat "${SERVER[@]}" greeting first extended
expect "memccp works after a flush" 0 "" memccp "${SERVER[@]}" greeting
expect "the new value is served" 0 $'changed\n' memccat "${SERVER[@]}" greeting
expect "memcflush leaves the cache empty" 0 "" memcflush "${SERVER[@]}"

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
