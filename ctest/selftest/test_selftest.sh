#!/usr/bin/env bash
# scripts/test.sh's own test: its counting against fake runners (fake-runner.sh, and run.py running
# the case_*.py files), then `scripts/test.sh compose` on a machine without a Docker engine, with and
# without CI. One line per check, then "N passed, M failed". Exit 0 when all pass, 1 on a failure.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ctest/selftest/test_selftest.sh

Checks that scripts/test.sh counts honestly: a suite's counts come from its runner's closing line
only, a non-zero exit or a run of no test is a failure whatever the counts say, node's cancelled
tests are failures, and a suite that could not run is a skip with its reason (a failure under CI).
The fakes run through test.sh's own functions (the script sourced) or test.sh itself. The machine
without a Docker engine is faked with DOCKER_HOST on a socket that does not exist and the commands
in no-engine/ first in PATH (not root, so nothing is installed or started; apt-get, dockerd and
systemctl refuse). Takes a few seconds; needs what scripts/test.sh needs installed.
USAGE
}

case ${1:-} in
  -h | --help) usage; exit 0 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/items-selftest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CHECKS_PASSED=0 CHECKS_FAILED=0

# usage: check NAME EXPECTED ACTUAL [LOG shown on a failure]
check() {
  local name=$1 want=$2 got=$3 log=${4:-}
  if [[ $got == "$want" ]]; then
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
    echo "ok - $name"
  else
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
    echo "FAIL - $name: expected [$want], got [$got]"
    if [[ -n $log && -f $log ]]; then sed 's/^/    | /' "$log"; fi
  fi
}

# Runs a runner through scripts/test.sh's own functions, sourced by a new bash (test.sh's set -e
# applies, as when it runs: a subshell here would run it with errexit off), and prints what they
# recorded: "PASSED FAILED SKIPPED" on one line, the suite's summary line on the next.
# CI_VALUE '' runs it without CI.
# usage: judged CI_VALUE run_counted SUITE command... | judged CI_VALUE run_judged SUITE PARSER command...
judged() {
  local ci_env=(-u CI)
  [[ -z $1 ]] || ci_env=("CI=$1")
  shift
  # shellcheck disable=SC2016 # expanded by that bash
  env "${ci_env[@]}" TEST_BUILD_ROOT="$TMP/build" JUDGED_OUT="$TMP/judged.out" bash -c '
    source "$1"
    shift
    mkdir -p "$LOG_DIR"
    "$@" >>"$JUDGED_OUT" 2>&1
    printf "%s %s %s\n%s\n" "$PASSED" "$FAILED" "$SKIPPED" "${SUMMARY[-1]}"
  ' judged "$ROOT/scripts/test.sh" "$@" || printf 'test.sh itself failed (exit %d)\n\n' "$?"
}

# usage: counts OUTPUT_OF_JUDGED (the first line), note OUTPUT_OF_JUDGED (the summary's note)
counts() { head -n 1 <<<"$1"; }
note() { sed -n '2s/^.* -- //p' <<<"$1"; }

FAKE=(bash "$HERE/fake-runner.sh")

check_fake_runners() {
  local r log=$TMP/build/logs/fake.log
  r=$(judged '' run_counted fake "${FAKE[@]}" pass)
  check "a closing line after per-file lines and before a cleanup message counts" "3 0 1" "$(counts "$r")" "$log"
  r=$(judged '' run_counted fake "${FAKE[@]}" exit-after-pass)
  check "a runner that exits 3 after '3 passed, 0 failed' fails" "3 1 0" "$(counts "$r")" "$log"
  check "... and the summary says why" "exit 3 although it counted no failure" "$(note "$r")"
  r=$(judged '' run_counted fake "${FAKE[@]}" die-midway)
  check "a runner killed after its per-file lines fails, with none of their counts" "0 1 0" "$(counts "$r")" "$log"
  check "... and the summary says why" "its output has no counts (exit 137)" "$(note "$r")"
  r=$(judged '' run_counted fake "${FAKE[@]}" no-test)
  check "a runner that ran no test fails" "0 1 0" "$(counts "$r")" "$log"
  check "... and the summary says why" "ran no test" "$(note "$r")"
  r=$(judged '' run_counted fake "${FAKE[@]}" no-count)
  check "a runner that prints no closing line fails" "0 1 0" "$(counts "$r")" "$log"
  r=$(judged '' run_counted fake "${FAKE[@]}" exit-77-unexplained)
  check "exit 77 without a line 'SKIP: reason' fails" "0 1 0" "$(counts "$r")" "$log"
  r=$(judged '' run_counted fake "${FAKE[@]}" skip)
  check "exit 77 after 'SKIP: reason', without CI: skipped" "0 0 1" "$(counts "$r")" "$log"
  check "... with its reason in the summary" "skipped: the fake engine is missing" "$(note "$r")"
  r=$(judged true run_counted fake "${FAKE[@]}" skip)
  check "exit 77 after 'SKIP: reason', under CI=true: failed" "0 1 0" "$(counts "$r")" "$log"
  check "... with its reason in the summary" "skipped, which fails under CI=true: the fake engine is missing" "$(note "$r")"
}

check_node_counts() {
  local r log=$TMP/build/logs/browser.log
  r=$(judged '' run_judged browser node_counts "${FAKE[@]}" node-cancelled)
  check "node --test: a cancelled test fails, skipped and todo ones are skipped" "12 1 2" "$(counts "$r")" "$log"
  r=$(judged '' run_judged browser node_counts "${FAKE[@]}" node-exit)
  check "node --test: npm test exiting 1 fails however many passed" "13 1 0" "$(counts "$r")" "$log"
}

# run.py itself, with the case_*.py files: its closing line, and its death midway.
check_run_py() {
  local r log=$TMP/build/logs/runpy.log run_py=$ROOT/ctest/integration/run.py
  r=$(judged '' run_counted runpy python3 "$run_py" "$HERE/case_pass.py")
  check "run.py: its closing line counts its skipped tests" "2 0 1" "$(counts "$r")" "$log"
  export SELFTEST_LOG=$log
  r=$(SELFTEST_WAIT_FOR="==== case_pass.py: 2 passed" judged '' run_counted runpy \
    python3 "$run_py" -j 1 "$HERE/case_pass.py" "$HERE/case_kill_runner.py")
  check "run.py killed after a file's line '==== case_pass.py: 2 passed, ...': no count of it" "0 1 0" "$(counts "$r")" "$log"
  check "... the log has that line (the case did run)" 1 "$(grep -c '^==== case_pass.py: 2 passed' "$log")"
  r=$(SELFTEST_WAIT_FOR="==== case_fail_summary.py" judged '' run_counted runpy \
    python3 "$run_py" -j 1 "$HERE/case_fail_summary.py" "$HERE/case_kill_runner.py")
  check "run.py killed after showing a failed file's own closing line: not its count" "0 1 0" "$(counts "$r")" "$log"
  check "... the log has that file's output (the case did run)" 1 "$(grep -c '9 passed, 0 failed' "$log")"
  unset SELFTEST_LOG
}

# A background lane (start_lane, finish_lane) of two fake suites, through test.sh's own functions:
# prints "PASSED FAILED SKIPPED", then the summary's lines, then the times. Its stderr goes to
# TMP/lane.err: bash may report the killed lane ("line 12: ... Killed") at any point after it.
# usage: lane_totals MODE_A MODE_B [kill]   (kill: the lane dies before it writes its state)
lane_totals() {
  # shellcheck disable=SC2016 # expanded by that bash
  env -u CI TEST_BUILD_ROOT="$TMP/lane" bash -c '
    source "$1"
    fake=$2 a=$3 b=$4 kill=${5:-}
    mkdir -p "$LOG_DIR"
    suite_fakea() { run_counted fakea bash "$fake" "$a"; }
    suite_fakeb() { run_counted fakeb bash "$fake" "$b"; }
    TIMES=()
    if [[ -n $kill ]]; then
      run_lane() { kill -KILL "$BASHPID"; }
    fi
    start_lane test 19 fakea fakeb >/dev/null 2>&1
    finish_lane test "$LANE_PID" >/dev/null 2>&1
    printf "%s %s %s\n" "$PASSED" "$FAILED" "$SKIPPED"
    printf "%s\n" "${SUMMARY[@]}"
    printf "time %s\n" "${TIMES[@]}"
  ' lane "$ROOT/scripts/test.sh" "$HERE/fake-runner.sh" "$@" 2>>"$TMP/lane.err" ||
    echo "test.sh itself failed (exit $?): $(tail -n 5 "$TMP/lane.err")"
}

check_lanes() {
  local r log=$TMP/lane/logs/lane-test.out
  r=$(lane_totals pass no-test)
  check "a background lane: both suites' counts join the totals" "3 1 1" "$(head -n 1 <<<"$r")" "$log"
  check "... each suite has its summary line, the failed one with its reason" 1 \
    "$(grep -c '^fakeb  *0 passed, 1 failed, 0 skipped -- ran no test' <<<"$r")"
  check "... and its time, marked as run in the background" 2 \
    "$(grep -c '^time fake[ab] [0-9]*s (in the background at nice 19)$' <<<"$r")"
  r=$(lane_totals pass pass kill)
  check "a background lane that dies before reporting fails" "0 1 0" "$(head -n 1 <<<"$r")"
  check "... and the summary says so" 1 "$(grep -c '^lane-test  *0 passed, 1 failed, 0 skipped -- the background lane left no counts' <<<"$r")"
}

# The summary's lines on what failed (print_failures): a failed suite's FAIL lines, nothing of
# a passed one.
check_failure_lines() {
  local r
  # shellcheck disable=SC2016 # expanded by that bash
  r=$(env -u CI TEST_BUILD_ROOT="$TMP/failures" bash -c '
    source "$1"
    mkdir -p "$LOG_DIR"
    run_counted fakec bash "$2" fail-check >/dev/null 2>&1
    run_counted faked bash "$2" pass >/dev/null 2>&1
    print_failures
  ' failures "$ROOT/scripts/test.sh" "$HERE/fake-runner.sh" 2>&1) || r="test.sh itself failed (exit $?): $r"
  check "the summary names a failed suite's failed checks, and nothing of a passed suite" \
    "  fakec: FAIL - the second check: why it failed
  fakec: FAILED the third check, as the soak runner words it" "$r"
}

# scripts/test.sh compose on this machine without its Docker engine.
# usage: run_compose_without_engine CI_VALUE OUTPUT (prints test.sh's exit status)
run_compose_without_engine() {
  local ci=$1 out=$2 rc=0 ci_env=(-u CI)
  [[ -z $ci ]] || ci_env=("CI=$ci")
  timeout 60 env -u DOCKER_CONTEXT "${ci_env[@]}" \
    PATH="$TMP/bin:$PATH" DOCKER_HOST="unix://$TMP/no-engine.sock" DK_DOCKERD_LOG="$TMP/dockerd.log" \
    SELFTEST_CALLS="$TMP/calls" TEST_BUILD_ROOT="$TMP/e2e-${ci:-local}" \
    bash "$ROOT/scripts/test.sh" compose >"$out" 2>&1 || rc=$?
  echo "$rc"
}

check_compose_without_engine() {
  local out=$TMP/compose-ci.out rc started=$SECONDS
  mkdir -p "$TMP/bin"
  cp "$HERE"/no-engine/* "$TMP/bin/"
  chmod 755 "$TMP"/bin/*
  rc=$(run_compose_without_engine true "$out")
  check "CI=true test.sh compose without an engine: exit 1" 1 "$rc" "$out"
  check "... compose's reason is shown" 1 "$(grep -c '^SKIP: no Docker engine answers' "$out")"
  check "... the summary fails compose with it" 1 \
    "$(grep -c '^compose  *0 passed, 1 failed, 0 skipped -- skipped, which fails under CI=true: no Docker engine answers' "$out")"
  check "... the last line" "0 passed, 1 failed" "$(tail -n 1 "$out")"

  out=$TMP/compose-local.out
  rc=$(run_compose_without_engine '' "$out")
  check "test.sh compose without an engine, without CI: exit 0" 0 "$rc" "$out"
  check "... the summary lists compose as skipped, with its reason" 1 \
    "$(grep -c '^compose  *0 passed, 0 failed, 1 skipped -- skipped: no Docker engine answers' "$out")"
  check "... the last line" "0 passed, 0 failed, 1 skipped" "$(tail -n 1 "$out")"
  check "nothing was installed or started (no call of apt-get, dockerd, systemctl)" "" \
    "$(cat "$TMP/calls" 2>/dev/null)"
  check "both runs took less than 20 s" 1 "$(((SECONDS - started) < 20 ? 1 : 0))"
}

check_fake_runners
check_node_counts
check_run_py
check_lanes
check_failure_lines
check_compose_without_engine
echo "$CHECKS_PASSED passed, $CHECKS_FAILED failed"
((CHECKS_FAILED == 0))
