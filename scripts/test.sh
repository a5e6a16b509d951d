#!/usr/bin/env bash
# The one test command: builds the worker and runs every suite against real
# components (MariaDB, spawn-fcgi + multiwatch, nginx, Chromium, Docker),
# then prints one line "N passed, M failed". Exits non-zero on any failure (under
# CI, a suite that could not run is one).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

ALL_SUITES=(selftest unit clang static promtool sanitizers integration fuzz hostile soak leak bench compose browser upgrade monitoring swarm cluster)
# A run of every suite takes three lanes (vmstat showed the CPUs 85 % idle
# during integration and hostile, 50 % during soak, 70 % during the Docker
# suites):
#  - BACKGROUND_SUITES need only CPU and time nothing: they run at nice 19,
#    from the first suite that starts stacks on, and take what the others
#    leave (a nice 0 process preempts them as it wakes);
#  - upgrade, then monitoring, run beside compose, in a lane of their own
#    (they mostly wait on the engine; their projects, ports, subnets, images
#    and secrets are apart; one after the other, not three stacks at once on
#    two CPUs: the monitoring drills time alerts), once the engine and the
#    base image are ready; browser follows compose in the main lane, beside
#    them too;
#  - swarm runs after them, alone: Docker 20.10's `docker swarm leave`, at its
#    end, disconnects every container of the engine from its networks,
#    compose stacks included (measured: a compose stack beside it lost its
#    published port and its api its edge address);
#  - cluster runs last, alone too: its three engines (scripts/cluster-sim.sh)
#    are apart from this host's, but its drills count failed requests and
#    time reschedules on two CPUs;
#  - everything else runs one suite at a time.
# A lane's output is shown whole when it ends.
BACKGROUND_SUITES=(clang static promtool fuzz)
BESIDE_COMPOSE_SUITES=(upgrade monitoring)
# Suites that must run with no Docker lane beside them (see above).
ALONE_SUITES=(swarm cluster)
BUILD_SUITES=(selftest unit sanitizers)

usage() {
  cat <<EOF
usage: scripts/test.sh [--help] [SUITE ...]

Runs the test suites (default: all, in this order, except that when other
suites run too, clang, static, promtool and fuzz run at nice 19 from the
integration suite on, and upgrade then monitoring run beside compose (swarm,
then cluster, wait until they have ended);
their output is shown when they end):
  selftest     this script's own counting, against fake runners (ctest/selftest/)
  unit         gcc build with -Werror, C unit tests (meson test --suite unit)
  clang        the same build and unit tests with clang
  static       cppcheck, clang-tidy (.clang-tidy) and shellcheck: zero findings
  promtool     the monitoring rules and configuration: promtool check config,
               check rules, test rules (ctest/monitoring/test_rules.sh)
  sanitizers   the unit suite built with ASan+UBSan
  integration  the API contract through nginx against real local stacks, with
               the worker built with ASan+UBSan (a report fails the test)
  fuzz         libFuzzer harnesses (scripts/fuzz.sh): regression inputs, then
               FUZZ_SECONDS [20] per harness
  hostile      hostile HTTP through nginx: slow clients, sizes, path tricks,
               methods, request smuggling, write rate limit (ctest/hostile/)
  soak         scripts/soak.sh for SOAK_SECONDS [40]: load with every fault it
               has (4 worker kills, a 10 s database outage, 2 nginx reloads);
               scripts/soak.sh alone soaks for 300 s
  leak         one worker under valgrind serves 10,000 requests: no definite
               leak, no error (ctest/leak/valgrind-10k.sh)
  bench        scripts/bench.sh --smoke --tls: every benchmark step runs, over
               HTTPS too, and every body is right (it asserts no speed:
               figures come from a full run)
  compose      the Docker compose deployment, end to end (needs a Docker engine:
               as root on Debian it installs and starts one; skipped, a
               failure under CI, when there is none)
  browser      the page in headless Chromium (playwright-core)
  upgrade      the release before schema migrations (fd03663), deployed from a
               clone and upgraded in place to this commit: data, schema
               version, a second deploy, a tampered migration, concurrent
               runners (ctest/compose/test_upgrade.sh; Docker, as compose)
  monitoring   scripts/deploy.sh --monitoring on a stack of its own: every
               Prometheus target up, the tier hardened, api replicas scraped,
               the dashboard, and the fault drills (db stopped, workers killed,
               api stopped under load) timed to a webhook receiver
               (ctest/compose/test_monitoring.sh; Docker, as compose)
  swarm        the Docker Swarm stack, end to end: 3 api replicas, rolling update,
               killed replica, token rotation, scaling, all under load (skipped,
               a failure under CI, when the engine cannot run a swarm;
               ctest/swarm/test_swarm.sh)
  cluster      the Swarm stack on a simulated three-node cluster
               (scripts/cluster-sim.sh: one dockerd per network namespace, a
               registry, a balancer): deploy.sh --swarm with DOCKER_HOST and
               REGISTRY, placement, a rolling update under load, a worker node
               and the db node lost and revived, isolation; then down leaves
               nothing (needs root; ctest/cluster/test_cluster.sh)

As root on Debian it installs the packages it needs. Build directories go
under TEST_BUILD_ROOT [REPO/build-test], with db-template, the MariaDB datadir
every stack starts from a copy of (DB_TEMPLATE, scripts/run-local.sh --help);
KEEP_TMP=1 keeps the stacks' files.

A suite's counts come from its runner's closing line, a line that is exactly
"N passed, M failed[, K skipped]"; the suite fails whatever that line says
when the runner exits non-zero, prints no such line, or ran no test. A runner
that exits 77 after a line "SKIP: reason" could not run here: the suite is
skipped, and under CI (CI set, as CI services set it, to anything but 0 or
false) that is a failure. The summary gives each suite's counts, and the
reason for each skip or unexpected failure; the last line is
"N passed, M failed" (with ", K skipped" when something was skipped).
EOF
}

PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()
BUILD_ROOT=${TEST_BUILD_ROOT:-$REPO/build-test}
LOG_DIR=$BUILD_ROOT/logs

# Under CI a suite that could not run fails: a skip there would pass a run that
# tested nothing of it. CI services set CI=true.
under_ci() { [[ -n ${CI:-} && $CI != 0 && $CI != false ]]; }

# Adds a suite's counts to the totals; NOTE (why it failed or was skipped,
# when its counts do not say) is shown now and in the summary.
# usage: record SUITE PASSED FAILED [SKIPPED [NOTE]]
record() {
  local suite=$1 p=$2 f=$3 s=${4:-0} note=${5:-}
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  SUMMARY+=("$(printf '%-12s %4d passed, %d failed, %d skipped%s' "$suite" "$p" "$f" "$s" "${note:+ -- $note}")")
  if [[ -n $note ]]; then log "$suite: $note"; fi
  return 0
}

# A suite that could not run here: skipped with its reason, or failed under CI.
# usage: skip_suite SUITE REASON
skip_suite() {
  if under_ci; then
    record "$1" 0 1 0 "skipped, which fails under CI=$CI: $2"
  else
    record "$1" 0 0 1 "skipped: $2"
  fi
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

# A runner's closing line: a whole line "N passed, M failed[, K skipped]".
# Anchored at both ends, so run.py's per-file lines ("==== test_x.py: N
# passed, ...") never count: a runner that dies after them has no closing line.
CLOSING_LINE='^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$'

# Counts from the last closing line of a log; 1 when it has none.
# usage: counts_from_log LOG (sets COUNT_PASSED, COUNT_FAILED, COUNT_SKIPPED)
counts_from_log() {
  local line
  line=$(grep -E "$CLOSING_LINE" "$1" | tail -n 1) || return 1
  [[ $line =~ $CLOSING_LINE ]] || return 1
  COUNT_PASSED=$((10#${BASH_REMATCH[1]})) COUNT_FAILED=$((10#${BASH_REMATCH[2]}))
  COUNT_SKIPPED=$((10#${BASH_REMATCH[4]:-0}))
}

# meson test's summary: "Ok: N", "Fail: N", ...
meson_counts() {
  local log=$1 ok fail skip
  ok=$(sed -nE 's/^Ok: +([0-9]+).*/\1/p' "$log" | tail -n 1)
  fail=$(awk '/^(Fail|Timeout|Unexpected Pass): +[0-9]+/ { n += $NF } END { print n + 0 }' "$log")
  skip=$(sed -nE 's/^Skipped: +([0-9]+).*/\1/p' "$log" | tail -n 1)
  COUNT_PASSED=${ok:-0} COUNT_FAILED=${fail:-0} COUNT_SKIPPED=${skip:-0}
}

# One total of node --test's TAP summary ("# pass 13"); empty when absent.
# usage: tap_total LOG NAME
tap_total() { sed -nE "s/^# $2 ([0-9]+)\$/\\1/p" "$1" | tail -n 1; }

# node --test's summary: a cancelled test (stopped by a timeout, or by its
# suite's) failed; a skipped or todo one did not run as a check. 1 when the
# log has no summary.
# usage: node_counts LOG (sets COUNT_PASSED, COUNT_FAILED, COUNT_SKIPPED)
node_counts() {
  local log=$1 pass fail cancelled skipped todo
  pass=$(tap_total "$log" pass)
  [[ -n $pass ]] || return 1
  fail=$(tap_total "$log" fail)
  cancelled=$(tap_total "$log" cancelled)
  skipped=$(tap_total "$log" skipped)
  todo=$(tap_total "$log" todo)
  COUNT_PASSED=$pass COUNT_FAILED=$((${fail:-0} + ${cancelled:-0}))
  COUNT_SKIPPED=$((${skipped:-0} + ${todo:-0}))
}

# The reason of the last line "SKIP: reason" of a log; 1 when it has none.
skip_reason() {
  local reason
  reason=$(sed -nE 's/^SKIP: *//p' "$1" | tail -n 1)
  [[ -n $reason ]] || return 1
  printf '%s\n' "$reason"
}

# Runs a suite's runner and records its counts, as PARSER reads them from its
# output. Whatever they say, the suite fails when the runner exits non-zero,
# prints no counts, or ran no test. Exit 77 after a line "SKIP: reason" is a
# suite that could not run here (automake's convention, with a reason).
# usage: run_judged SUITE PARSER command...
run_judged() {
  local suite=$1 parser=$2 rc=0 log reason note=
  shift 2
  log=$LOG_DIR/$suite.log
  run_logged "$suite" "$@" || rc=$?
  if ((rc == 77)) && reason=$(skip_reason "$log"); then
    skip_suite "$suite" "$reason"
    return 0
  fi
  if ! "$parser" "$log"; then
    record "$suite" 0 1 0 "its output has no counts (exit $rc)"
    return 0
  fi
  if ((rc == 77)); then
    note='exit 77 without a line "SKIP: reason"'
  elif ((rc != 0 && COUNT_FAILED == 0)); then
    note="exit $rc although it counted no failure"
  fi
  if ((COUNT_PASSED + COUNT_FAILED == 0)); then note="ran no test${note:+; $note}"; fi
  if [[ -n $note ]] && ((COUNT_FAILED == 0)); then COUNT_FAILED=1; fi
  record "$suite" "$COUNT_PASSED" "$COUNT_FAILED" "$COUNT_SKIPPED" "$note"
}

# A runner whose closing line is "N passed, M failed[, K skipped]".
# usage: run_counted SUITE command...
run_counted() {
  local suite=$1
  shift
  run_judged "$suite" counts_from_log "$@"
}

install_test_packages() {
  ensure_stack_packages
  ensure_packages python3:python3 clang:clang cppcheck:cppcheck clang-tidy:clang-tidy \
    shellcheck:shellcheck valgrind:valgrind nft:nftables
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
  run_judged "$suite" meson_counts meson test -C "$dir" --suite unit --print-errorlogs
}

suite_unit() { build_and_unit unit "$BUILD_ROOT/gcc"; }

suite_clang() { CC=clang build_and_unit clang "$BUILD_ROOT/clang"; }

suite_static() {
  local p=0 f=0
  [[ -f $BUILD_ROOT/gcc/compile_commands.json ]] || suite_unit
  if run_logged cppcheck cppcheck --quiet --error-exitcode=1 --inline-suppr \
    --enable=warning,style,performance,portability --std=c11 \
    --suppressions-list="$REPO/.cppcheck-suppressions" \
    -I "$REPO/fcgi-app/src" "$REPO/fcgi-app/src" "$REPO/ctest/unit" "$REPO/ctest/fuzz" "$REPO/ctest/bench"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  # clang-tidy, the slow step: one process per file, as many at once as there
  # are CPUs (xargs -P). Each file's report goes to a file of its own, then
  # into the log whole and in file order (never interleaved). xargs exits
  # non-zero (123) when any clang-tidy did: a finding (--warnings-as-errors).
  local jobs tidy_dir group file rc
  local -a files tidy_args
  jobs=$(nproc 2>/dev/null || echo 2)
  tidy_dir=$(mktemp -d "${TMPDIR:-/tmp}/items-tidy.XXXXXX")
  for group in clang-tidy clang-tidy-fuzz; do
    if [[ $group == clang-tidy ]]; then
      mapfile -t files < <(find "$REPO/fcgi-app/src" "$REPO/ctest/unit" -name '*.c' | sort)
      tidy_args=(--quiet -p "$BUILD_ROOT/gcc" --warnings-as-errors='*' '{}')
    else
      # The fuzz harnesses are built by clang only: not in the gcc build's database.
      mapfile -t files < <(find "$REPO/ctest/fuzz" -name '*.c' | sort)
      tidy_args=(--quiet --warnings-as-errors='*' '{}' -- -std=c11 -D_DEFAULT_SOURCE
        -D_POSIX_C_SOURCE=200809L -I"$REPO/fcgi-app/src" -I"$REPO/ctest/fuzz")
    fi
    rc=0
    # shellcheck disable=SC2016 # $1 and $@ belong to the sh -c script
    printf '%s\0' "${files[@]}" | xargs -0 -P "$jobs" -I '{}' \
      sh -c 'out=$1; shift; mkdir -p "${out%/*}" && exec clang-tidy "$@" >"$out" 2>&1' \
      sh "$tidy_dir{}.log" "${tidy_args[@]}" || rc=$?
    for file in "${files[@]}"; do
      if [[ -f $tidy_dir$file.log ]]; then cat "$tidy_dir$file.log"; fi
    done | tee "$LOG_DIR/$group.log"
    if ((rc == 0 && ${#files[@]} > 0)); then
      p=$((p + 1))
    else
      log "static: $group failed (xargs exit $rc, ${#files[@]} files)"
      f=$((f + 1))
    fi
  done
  rm -rf "$tidy_dir"
  local scripts
  mapfile -t scripts < <(find "$REPO/scripts" "$REPO/ctest" "$REPO/.ci" "$REPO/mysql" "$REPO/nginx" -name node_modules -prune -o \
    \( -name '*.sh' -o -path "$REPO/.ci/run" \) -type f -print | sort)
  if run_logged shellcheck shellcheck -x "${scripts[@]}" && shellcheck -s sh "$REPO/fcgi-app/items-pool" "$REPO/fcgi-app/items-healthcheck" "$REPO/nginx/front-entrypoint"; then
    p=$((p + 1))
  else
    f=$((f + 1))
  fi
  record static "$p" "$f"
}

# The sanitizers' options, for the commands of the suites that run the
# ASan+UBSan build only: exported, they would reach every later suite
# (scripts/fuzz.sh has its own defaults).
asan_env() {
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} "$@"
}

ASAN_DIR=$BUILD_ROOT/asan

suite_sanitizers() {
  asan_env build_and_unit sanitizers "$ASAN_DIR" \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || return 0
}

# Once, against the ASan+UBSan worker: a plain pass as well would find
# nothing this one does not (stack.py fails a test class on any report).
suite_integration() {
  [[ -f $ASAN_DIR/fcgi-app/items-fcgi ]] || suite_sanitizers
  [[ -f $ASAN_DIR/fcgi-app/items-fcgi ]] || { record integration 0 1 0 "no ASan+UBSan build"; return; }
  ITEMS_FCGI=$ASAN_DIR/fcgi-app/items-fcgi asan_env run_counted integration \
    python3 "$REPO/ctest/integration/run.py"
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
    "$REPO/scripts/soak.sh" --duration "${SOAK_SECONDS:-40}"
}

# The worker the unit suite built (debugoptimized: -O2 -g) when valgrind can
# read it: debug symbols (the report's stacks), no sanitizer runtime (ASan
# and memcheck cannot share a process). Otherwise valgrind-10k.sh builds its
# own (-O1 -g) in LEAK_BUILD_DIR.
suite_leak() {
  local binary=$BUILD_ROOT/gcc/fcgi-app/items-fcgi why=
  [[ -f $binary ]] || suite_unit
  if [[ ! -x $binary ]]; then
    why="no $binary"
  elif ! readelf -S -W "$binary" | grep '[.]debug_info' >/dev/null; then
    why="$binary has no debug symbols"
  elif readelf -s -W "$binary" | grep -E '__(asan|ubsan|tsan|msan)_' >/dev/null; then
    why="$binary is built with a sanitizer"
  fi
  if [[ -z $why ]]; then
    ITEMS_FCGI=$binary run_counted leak "$REPO/ctest/leak/valgrind-10k.sh"
  else
    log "leak: $why: valgrind-10k.sh builds its own worker"
    LEAK_BUILD_DIR=$BUILD_ROOT/leak run_counted leak "$REPO/ctest/leak/valgrind-10k.sh"
  fi
}

suite_bench() {
  local rc=0
  # The insert loop (POST's reference) comes from the same build as the worker.
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi && -f $BUILD_ROOT/gcc/ctest/bench/insert-loop ]] || suite_unit
  # --tls: the HTTPS steps too (run-local.sh TLS=1, s_time handshakes), ~20 s more.
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi INSERT_LOOP=$BUILD_ROOT/gcc/ctest/bench/insert-loop \
    run_logged bench "$REPO/scripts/bench.sh" --smoke --tls || rc=$?
  if ((rc == 0)); then record bench 1 0; else record bench 0 1; fi
}

# Chromium and playwright-core (ctest/browser/node_modules), once, before the suites that use them
# start: the browser suite, and the monitoring suite's dashboard test in another lane (npm ci
# replaces node_modules: never while the other lane reads it). BROWSER_READY: ok or failed.
BROWSER_READY=""
prepare_browser() {
  # certutil: the HTTPS test's Chromium trusts the stack's local CA through an NSS database.
  ensure_packages node:nodejs npm:npm chromium:chromium certutil:libnss3-tools
  if (cd "$REPO/ctest/browser" && npm ci --no-audit --no-fund >"$LOG_DIR/browser-npm.log" 2>&1); then
    BROWSER_READY=ok
  else
    BROWSER_READY=failed
  fi
}

suite_browser() {
  if [[ ! -f $REPO/ctest/browser/package.json ]]; then
    skip_suite browser "ctest/browser/package.json is missing"
    return
  fi
  [[ -n $BROWSER_READY ]] || prepare_browser
  [[ -f $BUILD_ROOT/gcc/fcgi-app/items-fcgi ]] || suite_unit
  [[ $BROWSER_READY == ok ]] ||
    { cat "$LOG_DIR/browser-npm.log"; record browser 0 1 0 "npm ci failed"; return; }
  # The stacks the tests start run the worker built above (no build of their own).
  ITEMS_FCGI=$BUILD_ROOT/gcc/fcgi-app/items-fcgi run_judged browser node_counts \
    bash -c "cd '$REPO/ctest/browser' && npm test"
}

suite_selftest() { run_counted selftest "$REPO/ctest/selftest/test_selftest.sh"; }

# The suites that start stacks (scripts/run-local.sh). Their datadirs are
# copies of one template made here, once, instead of a mariadb-install-db each.
STACK_SUITES=(integration sanitizers hostile soak leak bench browser)

# Makes BUILD_ROOT/db-template (idempotent: kept while mysql/ and MariaDB are
# unchanged) and exports DB_TEMPLATE, when one of SUITES starts stacks.
# usage: prepare_db_template SUITE...
prepare_db_template() {
  local s
  for s in "$@"; do
    [[ " ${STACK_SUITES[*]} " == *" $s "* ]] || continue
    if run_logged db-template "$REPO/scripts/run-local.sh" --make-db-template "$BUILD_ROOT/db-template"; then
      export DB_TEMPLATE=$BUILD_ROOT/db-template
    else
      unset DB_TEMPLATE
      record db-template 0 1 0 "run-local.sh --make-db-template failed: each stack initialises its own datadir"
    fi
    return 0
  done
}

# The Docker suites skip (exit 77, "SKIP: reason") where no engine can run them.
# compose: testssl.sh (Debian package testssl.sh, command testssl) scans the HTTPS front
# (ctest/compose/tls_checks.py).
suite_compose() {
  ensure_packages testssl:testssl.sh
  run_counted compose "$REPO/ctest/compose/test_compose.sh"
}

suite_upgrade() { run_counted upgrade "$REPO/ctest/compose/test_upgrade.sh"; }

suite_monitoring() { run_counted monitoring "$REPO/ctest/compose/test_monitoring.sh"; }

suite_promtool() { run_counted promtool "$REPO/ctest/monitoring/test_rules.sh"; }

suite_swarm() { run_counted swarm "$REPO/ctest/swarm/test_swarm.sh"; }

suite_cluster() { run_counted cluster "$REPO/ctest/cluster/test_cluster.sh"; }

# True when one of the words before -- is among those after it.
# usage: in_list WORD... -- WORD...
in_list() {
  local -a wanted=()
  while (($#)) && [[ $1 != -- ]]; do wanted+=("$1"); shift; done
  shift
  local w x
  for w in "${wanted[@]}"; do
    for x in "$@"; do [[ $w == "$x" ]] && return 0; done
  done
  return 1
}

# usage: run_suite SUITE [TIME_NOTE]
run_suite() {
  local begun=$SECONDS
  printf '\n=== suite %s ===\n' "$1"
  "suite_$1"
  TIMES+=("$1 $((SECONDS - begun))s${2:-}")
}

# Runs SUITEs in the background at niceness NICE (NAME's lane): output to
# LOG_DIR/lane-NAME.out; counts, summary lines and times to
# LOG_DIR/lane-NAME.state for finish_lane. Sets LANE_PID.
# usage: start_lane NAME NICE SUITE...
start_lane() {
  local name=$1 nice=$2
  shift 2
  log "running $* in the background (nice $nice; output shown when they end)"
  rm -f "$LOG_DIR/lane-$name.out" "$LOG_DIR/lane-$name.state"
  run_lane "$name" "$nice" "$@" &
  LANE_PID=$!
}

# The first failure lines of each suite that failed, from its log: the summary is
# what a CI page shows of a long run, and the counts alone do not say what broke.
print_failures() {
  local line suite log
  for line in "${SUMMARY[@]}"; do
    [[ $line =~ \ [1-9][0-9]*\ failed ]] || continue
    suite=${line%% *}
    log=$LOG_DIR/$suite.log
    [[ -f $log ]] || continue
    grep -E '^(FAIL|FAILED|ERROR)[: -]|^not ok |^==== .*, [1-9][0-9]* failed' "$log" | head -n 5 | cut -c 1-300 |
      sed "s/^/  $suite: /" || true
  done
  return 0
}

# The body of start_lane's background process.
run_lane() {
  local name=$1 nice=$2 s
  shift 2
  renice -n "$nice" -p "$BASHPID" >/dev/null
  PASSED=0 FAILED=0 SKIPPED=0 SUMMARY=() TIMES=()
  for s in "$@"; do run_suite "$s" " (in the background at nice $nice)"; done >"$LOG_DIR/lane-$name.out" 2>&1
  {
    printf '%s\n' "$PASSED $FAILED $SKIPPED"
    printf 'summary %s\n' "${SUMMARY[@]}"
    printf 'time %s\n' "${TIMES[@]}"
  } >"$LOG_DIR/lane-$name.state"
}

# Waits for NAME's lane, shows its output and adds what it recorded.
# usage: finish_lane NAME PID
finish_lane() {
  local name=$1 pid=$2 line p f k rc=0
  wait "$pid" || rc=$?
  printf '\n=== output of the background lane: %s ===\n' "$name"
  cat "$LOG_DIR/lane-$name.out" 2>/dev/null || true
  p="" f="" k=""
  if [[ -f $LOG_DIR/lane-$name.state ]]; then read -r p f k <"$LOG_DIR/lane-$name.state" || true; fi
  if ! [[ "$p $f $k" =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
    record "lane-$name" 0 1 0 "the background lane left no counts (exit $rc)"
    return 0
  fi
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + k))
  while IFS= read -r line; do
    case $line in
      "summary "*) SUMMARY+=("${line#summary }") ;;
      "time "*) TIMES+=("${line#time }") ;;
    esac
  done < <(tail -n +2 "$LOG_DIR/lane-$name.state")
}

# The engine, the base image and this checkout's images, once, before the
# Docker suites start together (each would otherwise install, start or build
# them at the same time; compose and swarm build the same images). Its
# failures are left to the suites, which report them.
prepare_docker() {
  log "preparing the Docker engine, the base image and the images for the Docker suites"
  # shellcheck source=scripts/lib/docker.sh
  (source "$REPO/scripts/lib/docker.sh" && dk_ensure_engine && dk_ensure_base_image &&
    cd "$REPO" && dk_detect_compose && dk_compose build) \
    >"$LOG_DIR/docker-prepare.log" 2>&1 || log "not ready (see $LOG_DIR/docker-prepare.log): the Docker suites will say why"
}

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
  prepare_db_template "${suites[@]}"
  if in_list browser monitoring -- "${suites[@]}" && [[ -f $REPO/ctest/browser/package.json ]]; then
    prepare_browser
  fi
  # In the background only beside other suites (alone, they run as listed).
  local background=() others=0 background_pid="" ran=" " lane_pids=() lane_names=() beside=() b
  for s in "${suites[@]}"; do
    if in_list "$s" -- "${BACKGROUND_SUITES[@]}"; then background+=("$s"); else others=1; fi
  done
  ((others)) || background=()
  TIMES=()
  for s in "${suites[@]}"; do
    if ((${#background[@]})) && in_list "$s" -- "${background[@]}"; then continue; fi
    if [[ $ran == *" $s "* ]]; then continue; fi
    if ((${#background[@]})) && [[ -z $background_pid ]] && ! in_list "$s" -- "${BUILD_SUITES[@]}"; then
      # static reads the gcc build's compile database: built here, not in two lanes at once.
      if in_list static -- "${background[@]}" && [[ ! -f $BUILD_ROOT/gcc/compile_commands.json ]]; then
        run_suite unit
        ran+="unit "
      fi
      start_lane background 19 "${background[@]}"
      background_pid=$LANE_PID
    fi
    if [[ $s == compose ]]; then
      beside=()
      for b in "${BESIDE_COMPOSE_SUITES[@]}"; do
        if [[ $ran != *" $b "* ]] && in_list "$b" -- "${suites[@]}"; then
          beside+=("$b")
          ran+="$b "
        fi
      done
      if ((${#beside[@]})); then
        ((${#lane_pids[@]})) || prepare_docker
        start_lane beside-compose 0 "${beside[@]}"
        lane_pids+=("$LANE_PID") lane_names+=(beside-compose)
      fi
    fi
    if in_list "$s" -- "${ALONE_SUITES[@]}"; then
      for b in "${!lane_pids[@]}"; do finish_lane "${lane_names[b]}" "${lane_pids[b]}"; done
      lane_pids=() lane_names=()
    fi
    run_suite "$s"
    ran+="$s "
  done
  for b in "${!lane_pids[@]}"; do finish_lane "${lane_names[b]}" "${lane_pids[b]}"; done
  if [[ -n $background_pid ]]; then
    finish_lane background "$background_pid"
  else
    # Only build suites beside them (`test.sh unit static`): no lane was started; run them here.
    for s in "${background[@]}"; do run_suite "$s"; done
  fi
  printf '\n=== summary (%ds, logs in %s) ===\n' "$((SECONDS - started))" "$LOG_DIR"
  printf '%s\n' "${SUMMARY[@]}"
  print_failures
  local joined
  joined=$(IFS=,; echo "${TIMES[*]}")
  printf 'time per suite: %s\n' "${joined//,/, }"
  if ((SKIPPED > 0)); then
    printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
  else
    printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
  fi
  ((FAILED == 0))
}

# Sourced (by ctest/selftest/test_selftest.sh), it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
