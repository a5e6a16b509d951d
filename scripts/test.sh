#!/usr/bin/env bash
# The one test command: builds the worker and runs every suite against real
# components (MariaDB, spawn-fcgi + multiwatch, nginx, Chromium, Docker),
# then prints one line "N passed, M failed". Exits non-zero on any failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

ALL_SUITES=(unit clang static integration sanitizers fuzz hostile soak leak bench browser compose swarm)

usage() {
  cat <<EOF
usage: scripts/test.sh [--help] [SUITE ...]

Runs the test suites (default: all, in this order):
  unit         gcc build with -Werror, C unit tests (meson test --suite unit)
  clang        the same build and unit tests with clang
  static       cppcheck, clang-tidy (.clang-tidy) and shellcheck: zero findings
  integration  the API contract through nginx against a real local stack
  sanitizers   unit and integration suites with the worker built with ASan+UBSan
  fuzz         libFuzzer harnesses (scripts/fuzz.sh): regression inputs, then
               FUZZ_SECONDS [20] per harness
  hostile      hostile HTTP through nginx: slow clients, sizes, path tricks,
               methods, request smuggling, write rate limit (ctest/hostile/)
  soak         scripts/soak.sh for SOAK_SECONDS [60]: load with worker kills,
               a database outage and nginx reloads
  leak         one worker under valgrind serves 10,000 requests: no definite
               leak, no error (ctest/leak/valgrind-10k.sh)
  bench        scripts/bench.sh --smoke: every benchmark step runs and every body
               is right (it asserts no speed: figures come from a full run)
  browser      the page in headless Chromium (playwright-core)
  compose      the Docker compose deployment, end to end (needs a Docker engine;
               as root it installs and starts one)
  swarm        the Docker Swarm stack, end to end: 3 api replicas, rolling update,
               killed replica, token rotation, scaling, all under load (skipped
               when the engine cannot run a swarm; ctest/swarm/test_swarm.sh)

As root on Debian it installs the packages it needs. Build directories go
under TEST_BUILD_ROOT [REPO/build-test]; KEEP_TMP=1 keeps the stacks' files.
The last line is "N passed, M failed" (with ", K skipped" when a suite
could not run here).
EOF
}

PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()
BUILD_ROOT=${TEST_BUILD_ROOT:-$REPO/build-test}
LOG_DIR=$BUILD_ROOT/logs

# Adds a suite's counts to the totals.
# usage: record SUITE PASSED FAILED [SKIPPED]
record() {
  local suite=$1 p=$2 f=$3 s=${4:-0}
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  SUMMARY+=("$(printf '%-12s %4d passed, %d failed, %d skipped' "$suite" "$p" "$f" "$s")")
}

# Runs a command with its output shown and kept in LOG_DIR/NAME.log.
# usage: run_logged NAME command...
run_logged() {
  local name=$1
  shift
  local rc=0
  "$@" 2>&1 | tee "$LOG_DIR/$name.log" || rc=$?
  return "$rc"
}

# Counts from a runner's closing line "N passed, M failed[, K skipped]".
counts_from_log() {
  local line
  line=$(grep -E '(^|: )[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 || true)
  [[ -n $line ]] || return 1
  line=${line#*: }
  COUNT_PASSED=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
  COUNT_FAILED=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
  COUNT_SKIPPED=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
  COUNT_SKIPPED=${COUNT_SKIPPED:-0}
}

# meson test's summary: "Ok: N", "Fail: N", ...
meson_counts() {
  local log=$1 ok fail skip
  ok=$(sed -nE 's/^Ok: +([0-9]+).*/\1/p' "$log" | tail -n 1)
  fail=$(awk '/^(Fail|Timeout|Unexpected Pass): +[0-9]+/ { n += $NF } END { print n + 0 }' "$log")
  skip=$(sed -nE 's/^Skipped: +([0-9]+).*/\1/p' "$log" | tail -n 1)
  COUNT_PASSED=${ok:-0} COUNT_FAILED=${fail:-0} COUNT_SKIPPED=${skip:-0}
}

install_test_packages() {
  ensure_stack_packages
  ensure_packages python3:python3 clang:clang cppcheck:cppcheck clang-tidy:clang-tidy \
    shellcheck:shellcheck valgrind:valgrind
}

# usage: build_and_unit SUITE BUILD_DIR [meson setup options...]
build_and_unit() {
  local suite=$1 dir=$2
  shift 2
  if [[ ! -f $dir/build.ninja ]]; then
    if ! run_logged "$suite-setup" meson setup "$dir" "$REPO" -Dwerror=true "$@"; then
      record "$suite" 0 1
      return 1
    fi
  fi
  if ! run_logged "$suite-build" meson compile -C "$dir"; then
    record "$suite" 0 1
    return 1
  fi
  run_logged "$suite" meson test -C "$dir" --suite unit --print-errorlogs || true
  meson_counts "$LOG_DIR/$suite.log"
  if ((COUNT_PASSED + COUNT_FAILED == 0)); then COUNT_FAILED=1; fi
  record "$suite" "$COUNT_PASSED" "$COUNT_FAILED" "$COUNT_SKIPPED"
}

suite_unit() { build_and_unit unit "$BUILD_ROOT/gcc"; }

suite_clang() { CC=clang build_and_unit clang "$BUILD_ROOT/clang"; }

suite_static() {
  local p=0 f=0
  [[ -f $BUILD_ROOT/gcc/compile_commands.json ]] || suite_unit
  if run_logged cppcheck cppcheck --quiet --error-exitcode=1 --inline-suppr \
    --enable=warning,style,performance,portability --std=c11 \
    --suppressions-list="$REPO/.cppcheck-suppressions" \
    -I "$REPO/fcgi-app/src" "$REPO/fcgi-app/src" "$REPO/ctest/unit" "$REPO/ctest/fuzz"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  local sources
  mapfile -t sources < <(find "$REPO/fcgi-app/src" "$REPO/ctest/unit" -name '*.c' | sort)
  if run_logged clang-tidy clang-tidy --quiet -p "$BUILD_ROOT/gcc" --warnings-as-errors='*' "${sources[@]}"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  # The fuzz harnesses are built by clang only: not in the gcc build's database.
  local fuzz_sources
  mapfile -t fuzz_sources < <(find "$REPO/ctest/fuzz" -name '*.c' | sort)
  if run_logged clang-tidy-fuzz clang-tidy --quiet --warnings-as-errors='*' "${fuzz_sources[@]}" -- \
    -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -I"$REPO/fcgi-app/src" -I"$REPO/ctest/fuzz"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  local scripts
  mapfile -t scripts < <(find "$REPO/scripts" "$REPO/ctest" "$REPO/.ci" -name node_modules -prune -o \
    \( -name '*.sh' -o -path "$REPO/.ci/run" \) -type f -print | sort)
  if run_logged shellcheck shellcheck -x "${scripts[@]}" && shellcheck -s sh "$REPO/fcgi-app/items-pool"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  record static "$p" "$f"
}

# usage: run_integration SUITE [ITEMS_FCGI]
run_integration() {
  local suite=$1 binary=${2:-}
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  binary=${binary:-$BUILD_ROOT/gcc/fcgi-app/items-fcgi}
  ITEMS_FCGI=$binary run_logged "$suite" python3 "$REPO/ctest/integration/run.py" || true
  if counts_from_log "$LOG_DIR/$suite.log"; then
    record "$suite" "$COUNT_PASSED" "$COUNT_FAILED" "$COUNT_SKIPPED"
  else
    record "$suite" 0 1
  fi
}

suite_integration() { run_integration integration; }

suite_sanitizers() {
  local dir=$BUILD_ROOT/asan
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  build_and_unit sanitizers-unit "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || return 0
  run_integration sanitizers-integration "$dir/fcgi-app/items-fcgi"
}

# Runs a command whose last line is "N passed, M failed[, K skipped]";
# exit status 77 means the whole suite was skipped (automake's convention).
# usage: run_counted SUITE command...
run_counted() {
  local suite=$1 rc=0
  shift
  run_logged "$suite" "$@" || rc=$?
  if ((rc == 77)); then
    record "$suite" 0 0 1
  elif counts_from_log "$LOG_DIR/$suite.log"; then
    ((rc == 0 || COUNT_FAILED > 0)) || COUNT_FAILED=1
    record "$suite" "$COUNT_PASSED" "$COUNT_FAILED" "$COUNT_SKIPPED"
  else
    record "$suite" 0 1
  fi
}

suite_fuzz() {
  FUZZ_BUILD_DIR=$BUILD_ROOT/fuzz run_counted fuzz "$REPO/scripts/fuzz.sh" --seconds "${FUZZ_SECONDS:-20}"
}

# One file at a time: the slow-client tests measure latencies.
suite_hostile() {
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi run_counted hostile \
    python3 "$REPO/ctest/integration/run.py" -j 1 "$REPO"/ctest/hostile/test_*.py
}

suite_soak() {
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi SOAK_LOG_DIR=$LOG_DIR/soak run_counted soak \
    "$REPO/scripts/soak.sh" --duration "${SOAK_SECONDS:-60}"
}

suite_leak() { LEAK_BUILD_DIR=$BUILD_ROOT/leak run_counted leak "$REPO/ctest/leak/valgrind-10k.sh"; }

suite_bench() {
  local rc=0
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi run_logged bench "$REPO/scripts/bench.sh" --smoke || rc=$?
  if ((rc == 0)); then record bench 1 0; else record bench 0 1; fi
}

suite_browser() {
  if [[ ! -f $REPO/ctest/browser/package.json ]]; then
    record browser 0 0 1
    return
  fi
  ensure_packages node:nodejs npm:npm chromium:chromium
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  (cd "$REPO/ctest/browser" && npm ci --no-audit --no-fund >"$LOG_DIR/browser-npm.log" 2>&1) ||
    { cat "$LOG_DIR/browser-npm.log"; record browser 0 1; return; }
  # The stacks the tests start run the worker built above (no build of their own).
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi run_logged browser bash -c "cd '$REPO/ctest/browser' && npm test" || true
  local pass fail
  pass=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$LOG_DIR/browser.log" | tail -n 1)
  fail=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$LOG_DIR/browser.log" | tail -n 1)
  if [[ -z $pass ]]; then
    record browser 0 1
  else
    record browser "$pass" "${fail:-0}"
  fi
}

# The Docker suites skip (exit 77) where no engine can run them.
suite_compose() { run_counted compose "$REPO/ctest/compose/test_compose.sh"; }

suite_swarm() { run_counted swarm "$REPO/ctest/swarm/test_swarm.sh"; }

main() {
  local suites=() s
  for s in "$@"; do
    case $s in
      -h | --help) usage; exit 0 ;;
      *)
        [[ " ${ALL_SUITES[*]} " == *" $s "* ]] || { usage >&2; die "unknown suite: $s"; }
        suites+=("$s")
        ;;
    esac
  done
  ((${#suites[@]})) || suites=("${ALL_SUITES[@]}")
  mkdir -p "$LOG_DIR"
  install_test_packages
  local started=$SECONDS
  for s in "${suites[@]}"; do
    printf '\n=== suite %s ===\n' "$s"
    "suite_$s"
  done
  printf '\n=== summary (%ds, logs in %s) ===\n' "$((SECONDS - started))" "$LOG_DIR"
  printf '%s\n' "${SUMMARY[@]}"
  if ((SKIPPED > 0)); then
    printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
  else
    printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
  fi
  ((FAILED == 0))
}

main "$@"
