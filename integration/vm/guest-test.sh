#!/bin/sh
# Runs inside the aarch64/riscv64 guest (busybox sh): for each blocking mode, leak a CLOSE_WAIT
# socket in guest-fixture, close it with fdclose while the fixture is blocked, and check that the
# call ended as if untouched and the fd is gone. Prints "N passed, N failed" and exits non-zero on
# any failure.
pass=0
fail=0
# Long enough that fdclose (slow under emulation) finishes well inside the call, so a call that
# started over after the surgery (CALL_MS + the time before it) shows above the upper bound.
CALL_MS=3000
SLACK_MS=400
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

wait_line() { # wait_line FILE PATTERN: up to 20 s
  n=0
  while ! grep -q "$2" "$1" 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 400 ] && return 1; sleep 0.05
  done
}

wait_state() { # wait_state PID STATE-LETTER: up to 20 s
  n=0
  while [ "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" != "$2" ]; do
    n=$((n + 1)); [ $n -gt 400 ] && return 1; sleep 0.05
  done
}

run_mode() {
  mode=$1 want_state=$2
  out=/tmp/$mode.out
  rm -f /tmp/fifo; mkfifo /tmp/fifo
  guest-fixture "$mode" $CALL_MS /tmp/fifo >"$out" &
  fpid=$!
  if ! wait_line "$out" READY; then bad "$mode: fixture never got ready"; kill $fpid; return; fi
  set -- $(grep READY "$out"); pid=$2 fd=$3
  wait_state "$pid" "$want_state" || { bad "$mode: fixture never blocked"; kill $fpid; return; }
  fdclose --pid "$pid" --fd "$fd" --yes --journal /tmp/journal.jsonl >/tmp/$mode.fdclose 2>&1
  rc=$?
  tracer=$(sed -n 's/^TracerPid:[[:space:]]*//p' /proc/$pid/status)
  [ "$tracer" = 0 ] && ok "$mode: detached" || bad "$mode: still traced by $tracer"
  [ "$mode" = read ] && echo hello >/tmp/fifo
  wait $fpid
  cat /tmp/$mode.fdclose "$out"
  [ $rc -eq 0 ] && ok "$mode: fdclose exit 0" || bad "$mode: fdclose exit $rc"
  grep -q "^FD $fd gone" "$out" && ok "$mode: leaked fd closed" || bad "$mode: leaked fd still open"
  set -- $(grep '^RESULT' "$out" | tr '=' ' ')
  ret=$4 err=$6 ms=$8
  case $mode in
    nanosleep) [ "$ret" = 0 ] && [ "$err" = 0 ] && [ "$ms" -ge $CALL_MS ] && [ "$ms" -le $((CALL_MS + SLACK_MS)) ] \
      && ok "nanosleep slept exactly its time (${ms} ms)" || bad "nanosleep ret=$ret errno=$err ${ms} ms (want $CALL_MS)" ;;
    futex) [ "$err" = 110 ] && [ "$ms" -ge $CALL_MS ] && [ "$ms" -le $((CALL_MS + SLACK_MS)) ] \
      && ok "futex timed out after exactly its timeout (${ms} ms)" || bad "futex ret=$ret errno=$err ${ms} ms (want $CALL_MS)" ;;
    read) [ "$ret" = 6 ] && [ "$err" = 0 ] \
      && ok "read returned the data" || bad "read ret=$ret errno=$err" ;;
    busy) [ "$ms" -ge $CALL_MS ] && ok "busy loop ran on" || bad "busy loop ${ms} ms" ;;
  esac
}

uname -m
run_mode nanosleep S
run_mode futex S
run_mode read S
run_mode busy R
grep -c '"fd"' /tmp/journal.jsonl >/dev/null && ok "journal written" || bad "no journal"
echo "$(uname -m): $pass passed, $fail failed"
[ $fail -eq 0 ]
