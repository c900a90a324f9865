#!/usr/bin/env bash
# resolve-bench.sh: how fast fdclose finds CLOSE_WAIT sockets, against `ss -tanp state close-wait`.
#
# Not a test: a rerunnable measurement (issue 2, "resolver"). It starts fixture processes holding
# loopback connections (a target with TARGET_PAIRS CLOSE_WAIT/FIN_WAIT2 pairs = 2*TARGET_PAIRS
# socket fds, and OTHERS more with OTHER_PAIRS pairs each, each fixture on its own 127.0.0.x so the
# ephemeral ports never run out), then times in the same run:
#   single process: fdclose --pid P --state close-wait --dry-run   (and --json)   vs ss
#   all processes:  fdclose --state close-wait --dry-run           (and --json)   vs ss
# Goals: single ≤ 0.5 × ss, all ≤ 1.0 × ss. Results are appended to RESULTS-resolve.md.
#
# Needs root (ss -p and fdclose read every /proc/PID/fd), gcc, hyperfine. Every process it starts
# is killed on exit.
#
# Environment: TARGET_PAIRS (7500), OTHER_PAIRS (6000), OTHERS (3), RUNS (10), NO_RECORD=1 to only
# print, PROBE=1 to time examples/resolve_probe (resolve() alone) instead of the fdclose binary.
set -euo pipefail

TARGET_PAIRS=${TARGET_PAIRS:-7500}
OTHER_PAIRS=${OTHER_PAIRS:-6000}
OTHERS=${OTHERS:-3}
RUNS=${RUNS:-10}

cd "$(dirname "$0")/../.."
ROOT=$PWD
RESULTS=$ROOT/integration/bench/RESULTS-resolve.md
WORK=$(mktemp -d /tmp/fdclose-resolve-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v hyperfine >/dev/null || { echo "hyperfine is not installed" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: ss -p and fdclose must read every /proc/PID/fd" >&2; exit 2; }

echo "== building"
cargo build --release --bin fdclose --example resolve_probe 2>&1 | tail -1
gcc -O2 -Wall -o "$WORK/cw_fixture" integration/bench/cw_fixture.c
FDCLOSE=$ROOT/target/release/fdclose
PROBE_BIN=$ROOT/target/release/examples/resolve_probe

# start ADDR PAIRS: run a fixture in the background, remember its pid.
start() {
    "$WORK/cw_fixture" "$1" "$2" >"$WORK/$1.out" &
    PIDS+=($!)
}

# wait_ready ADDR: until the fixture printed READY (deadline 120 s); prints its pid.
wait_ready() {
    local end=$((SECONDS + 120))
    until grep -q '^READY' "$WORK/$1.out" 2>/dev/null; do
        if [ $SECONDS -ge $end ]; then
            echo "fixture on $1 not ready after 120 s" >&2
            exit 1
        fi
        sleep 0.05
    done
    awk '/^READY/ {print $2}' "$WORK/$1.out"
}

echo "== starting fixtures: 1 x $TARGET_PAIRS pairs + $OTHERS x $OTHER_PAIRS pairs"
start 127.0.0.2 "$TARGET_PAIRS"
for i in $(seq 1 "$OTHERS"); do
    start "127.0.0.$((10 + i))" "$OTHER_PAIRS"
done
TARGET=$(wait_ready 127.0.0.2)
for i in $(seq 1 "$OTHERS"); do
    wait_ready "127.0.0.$((10 + i))" >/dev/null
done

TARGET_FDS=$(ls /proc/"$TARGET"/fd | wc -l)
CW_ALL=$(ss -Htn state close-wait | wc -l)
TCP_ALL=$(ss -Htan | wc -l)
echo "target pid $TARGET holds $TARGET_FDS fds; host: $TCP_ALL TCP sockets, $CW_ALL in CLOSE_WAIT"

# The real binary once the CLI is wired (exit 0 = found); otherwise resolve() alone.
if [ "${PROBE:-0}" != 1 ] && "$FDCLOSE" --pid "$TARGET" --state close-wait --dry-run >"$WORK/probe.txt" 2>&1 &&
    grep -q "$TARGET" "$WORK/probe.txt"; then
    MODE="fdclose binary"
    SINGLE=("$FDCLOSE --pid $TARGET --state close-wait --dry-run"
            "$FDCLOSE --pid $TARGET --state close-wait --dry-run --json")
    ALL=("$FDCLOSE --state close-wait --dry-run"
         "$FDCLOSE --state close-wait --dry-run --json")
    FOUND_SINGLE=$(grep -c "close-wait" "$WORK/probe.txt" || true)
else
    MODE="examples/resolve_probe (resolve() only; the CLI was not usable: $(head -c 200 "$WORK/probe.txt" 2>/dev/null | tr '\n' ' '))"
    SINGLE=("$PROBE_BIN --pid $TARGET --state close-wait")
    ALL=("$PROBE_BIN --state close-wait")
    FOUND_SINGLE=$("$PROBE_BIN" --pid "$TARGET" --state close-wait | awk '{print $1}')
fi
SS="ss -tanp state close-wait"
echo "timing: $MODE; single-process selection found: $FOUND_SINGLE"

hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$WORK/single.json" \
    --export-markdown "$WORK/single.md" "${SINGLE[@]}" "$SS"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$WORK/all.json" \
    --export-markdown "$WORK/all.md" "${ALL[@]}" "$SS"

# ratio FILE: "command: mean / ss mean" for every non-ss command.
ratios() {
    python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ss = [x for x in r if x["command"].startswith("ss ")][0]["mean"]
for x in r:
    if not x["command"].startswith("ss "):
        print(f"- `{x['command']}`: {x['mean']*1e3:.1f} ms = **{x['mean']/ss:.2f} x ss** ({ss*1e3:.1f} ms)")
EOF
}

REPORT=$(cat <<EOF

## $(date -u '+%Y-%m-%d %H:%M UTC') — $(git rev-parse --short HEAD 2>/dev/null || echo '?')

Kernel $(uname -r), $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg).
Timed: $MODE. Fixtures: target pid with $TARGET_FDS fds ($TARGET_PAIRS CLOSE_WAIT + $TARGET_PAIRS FIN_WAIT2
sockets), $OTHERS more processes with $OTHER_PAIRS pairs each; host-wide $TCP_ALL TCP sockets, $CW_ALL in
CLOSE_WAIT. hyperfine -N, $RUNS runs after 2 warmups, output discarded.

### Single process (goal: ≤ 0.5 × ss)
$(cat "$WORK/single.md")

$(ratios "$WORK/single.json")

### All processes (goal: ≤ 1.0 × ss)
$(cat "$WORK/all.md")

$(ratios "$WORK/all.json")
EOF
)
echo "$REPORT"
if [ "${NO_RECORD:-0}" != 1 ]; then
    [ -f "$RESULTS" ] || printf '# Resolver benchmark results\n\nProduced by `integration/bench/resolve-bench.sh` (newest last).\n' >"$RESULTS"
    echo "$REPORT" >>"$RESULTS"
    echo "appended to $RESULTS"
fi
