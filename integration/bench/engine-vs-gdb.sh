#!/usr/bin/env bash
# Benchmark: close 1,000 and 10,000 CLOSE_WAIT fds inside a live C process with fdclose's ptrace
# engine and with gdb (one batch session, one `call (int)close(N)` per fd), measuring wall time
# and the longest pause the target itself saw (a thread ticking every 100 us on CLOCK_MONOTONIC
# records its longest gap; integration/fixtures/rt_leaker.c -k).
#
#   integration/bench/engine-vs-gdb.sh [SIZES...]        (default: 1000 10000; run as root)
#
# The journal goes to the run's temp dir (same disk as /tmp; JOURNAL=path for lib elsewhere).
# VIA=lib (default) drives the engine through examples/engine_bench.rs; VIA=cli through the
# release binary (`fdclose --pid P --state close-wait --yes`); VIA=none skips the engine. GDB=0
# skips gdb. MODES="range per-fd" runs fdclose twice per size: as it is (runs of consecutive fds
# closed with one close_range) and with FDCLOSE_NO_CLOSE_RANGE=1 (one close per fd: the figure for
# leaks interleaved with live fds); default MODES=range. FDCLOSE_NO_CLOSE_RANGE=1 in the
# environment also reaches fdclose (it is inherited). INTERLEAVE=K puts a live fd after every K
# leaked ones (rt_leaker -i K), as in a real server: no long runs of consecutive leaked fds
# (K=1 fits up to ~9,990 leaked fds under the 20,000 fd limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SIZES=("${@:-1000}")
[ $# -eq 0 ] && SIZES=(1000 10000)
VIA=${VIA:-lib}
GDB=${GDB:-1}
MODES=(${MODES:-range})
WORK=$(mktemp -d /tmp/engine-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ulimit -n 20000
gcc -O2 -pthread -o "$WORK/rt_leaker" integration/fixtures/rt_leaker.c
if [ "$VIA" = none ]; then
    ENGINE=(true)
elif [ "$VIA" = cli ]; then
    cargo build --release --quiet --bin fdclose 2>"$WORK/build.log" || { cat "$WORK/build.log"; exit 1; }
    ENGINE=(target/release/fdclose --state close-wait --yes --journal "$WORK/journal.jsonl" --pid)
else
    cargo build --release --quiet --example engine_bench 2>"$WORK/build.log" || { cat "$WORK/build.log"; exit 1; }
    export JOURNAL=${JOURNAL:-$WORK/journal.jsonl}
    ENGINE=(target/release/examples/engine_bench)
fi

now() { date +%s.%N; }
# Wait (up to 120 s) until the fixture's log has at least $2 lines matching $3.
wait_lines() {
    local log=$1 n=$2 pat=$3 i
    for ((i = 0; i < 12000; i++)); do
        [ "$(grep -c "$pat" "$log" || true)" -ge "$n" ] && return 0
        sleep 0.01
    done
    echo "timed out waiting for $pat in $log" >&2
    return 1
}
close_wait_count() {
    local pid=$1
    # Count this process's fds whose socket is in CLOSE_WAIT.
    local inodes
    inodes=$(awk '$4 == "08" {print $10}' /proc/"$pid"/net/tcp /proc/"$pid"/net/tcp6 | sort -u)
    { ls -l /proc/"$pid"/fd 2>/dev/null || true; } | { grep -o 'socket:\[[0-9]*\]' || true; } | tr -dc '0-9\n' |
        sort | comm -12 - <(echo "$inodes") | wc -l || true
}

# start_target N TAG: leak N CLOSE_WAIT fds in a fresh fixture; sets TPID, TIN (fd to write
# commands), TLOG.
start_target() {
    local n=$1 tag=$2
    TLOG=$WORK/$tag.log
    mkfifo "$WORK/$tag.in"
    "$WORK/rt_leaker" -n "$n" -k ${INTERLEAVE:+-i "$INTERLEAVE"} <"$WORK/$tag.in" >"$TLOG" &
    TPID=$!
    PIDS+=("$TPID")
    exec {TIN}>"$WORK/$tag.in"
    wait_lines "$TLOG" 1 '^READY'
    [ "$(close_wait_count "$TPID")" -eq "$n" ] || { echo "fixture did not leak $n" >&2; exit 1; }
    echo reset >&"$TIN"
    wait_lines "$TLOG" 1 '^RESET'
}
# gap_of: ask the target for its longest pause and its total paused time since reset (us).
gap_of() {
    echo gap >&"$TIN"
    wait_lines "$TLOG" 1 '^GAP'
    grep '^GAP' "$TLOG" | tail -1 | sed 's/.*max_us=\([0-9]*\).*stalled_us=\([0-9]*\).*/\1 \2/'
}
stop_target() {
    kill -9 "$TPID" 2>/dev/null || true
    wait "$TPID" 2>/dev/null || true
    exec {TIN}>&-
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus, load average: $(cut -d' ' -f1-3 /proc/loadavg), VIA=$VIA${INTERLEAVE:+, INTERLEAVE=$INTERLEAVE}, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)${FDCLOSE_NO_CLOSE_RANGE:+, FDCLOSE_NO_CLOSE_RANGE=$FDCLOSE_NO_CLOSE_RANGE}"
# sock_diag (fdclose's resolver) walks the kernel's whole TCP hash, every namespace's sockets and
# the TIME-WAIT ones earlier runs left for 60 s included: say how full it is.
echo "# kernel $(ss -s | grep '^TCP:')"
printf '%-15s %-7s %10s %14s %14s %6s\n' method fds wall_s max_pause_ms paused_ms left
declare -A WALL
for n in "${SIZES[@]}"; do
    # --- fdclose engine, in each mode ---
    for mode in "${MODES[@]}"; do
        start_target "$n" "engine-$mode-$n"
        t0=$(now)
        if [ "$mode" = per-fd ]; then
            FDCLOSE_NO_CLOSE_RANGE=1 "${ENGINE[@]}" "$TPID" >"$WORK/engine-$n.out" 2>&1 ||
                { cat "$WORK/engine-$n.out"; exit 1; }
        else
            "${ENGINE[@]}" "$TPID" >"$WORK/engine-$n.out" 2>&1 || { cat "$WORK/engine-$n.out"; exit 1; }
        fi
        t1=$(now)
        wall=$(echo "$t1 - $t0" | bc -l)
        left=$(close_wait_count "$TPID")
        WALL[$mode-$n]=$wall
        read -r gap stalled <<<"$(gap_of)"
        printf '%-15s %-7s %10.3f %14.1f %14.1f %6s\n' "fdclose/$mode" "$n" "$wall" \
            "$(echo "$gap/1000" | bc -l)" "$(echo "$stalled/1000" | bc -l)" "$left"
        tail -2 "$WORK/engine-$n.out" | sed 's/^/    /'
        stop_target
    done

    # --- gdb, one batch session ---
    [ "$GDB" = 1 ] || continue
    start_target "$n" "gdb-$n"
    cmds=$WORK/gdb-$n.cmds
    {
        echo "set confirm off"
        echo "set pagination off"
        # fds whose socket inode is in CLOSE_WAIT, found the same way the engine run finds them.
        awk 'FNR == NR { if ($4 == "08") cw[$10] = 1; next }
             { if (match($2, /socket:\[[0-9]+\]/)) {
                   ino = substr($2, RSTART + 8, RLENGTH - 9)
                   if (ino in cw) print "call (int)close(" $1 ")" } }' \
            <(cat /proc/"$TPID"/net/tcp /proc/"$TPID"/net/tcp6) \
            <(find /proc/"$TPID"/fd -mindepth 1 -printf '%f %l\n')
        echo "detach"
    } >"$cmds"
    t0=$(now)
    gdb -nx -batch -p "$TPID" -x "$cmds" >"$WORK/gdb-$n.out" 2>&1
    t1=$(now)
    wall=$(echo "$t1 - $t0" | bc -l)
    left=$(close_wait_count "$TPID")
    WALL[gdb-$n]=$wall
    read -r gap stalled <<<"$(gap_of)"
    printf '%-15s %-7s %10.3f %14.1f %14.1f %6s\n' gdb "$n" "$wall" "$(echo "$gap/1000" | bc -l)" \
        "$(echo "$stalled/1000" | bc -l)" "$left"
    stop_target
done
for n in "${SIZES[@]}"; do
    [ -n "${WALL[gdb-$n]:-}" ] || continue
    for mode in "${MODES[@]}"; do
        printf 'speedup at %s fds (%s): %.0fx\n' "$n" "$mode" \
            "$(echo "${WALL[gdb-$n]} / ${WALL[$mode-$n]}" | bc -l)"
    done
done
