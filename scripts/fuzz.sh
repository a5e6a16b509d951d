#!/usr/bin/env bash
# Builds the libFuzzer harnesses of ctest/fuzz/ with meson and clang (one
# instrumented static library of the parsers, ASan+UBSan, that every harness
# links: ctest/fuzz/meson.build), replays the committed regression inputs and
# seeds, then fuzzes the harnesses two at a time for a bounded time each and
# merges what they found into a working corpus.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

ALL_HARNESSES=(page id json auth config media_type encode log etag netaddr)
FUZZ_DIR=$REPO/ctest/fuzz
# Longest input per harness: past the limits its parser enforces, so that
# the fuzzer can reach them (libFuzzer would otherwise derive it from the
# corpus). json: a body of 128 KiB (HTTP_BODY_MAX) and a bit more; encode:
# a description of 65535 bytes and more; log: fields far past their bounds.
# --save-corpus: the longest input added to the repository.
SAVE_MAX_LEN=4096
declare -A MAX_LEN=(
  [page]=4096 [id]=4096 [json]=135000 [auth]=4096 [config]=4096
  [media_type]=4096 [encode]=70000 [log]=70000 [etag]=4096 [netaddr]=256
)
# The harnesses that also fuzz from their inputs at the limits (see
# write_limit_inputs; the others only replay them): libFuzzer then mutates
# inputs up to that size from the start. json: the 65535-byte and 128 KiB
# limits are its parser's, worth a third of its executions (measured).
# Not encode (25 times fewer executions) nor log (a quarter fewer, no new
# features): their limits are far below 64 KiB.
FUZZ_FROM_LIMITS=" json "

usage() {
  cat <<EOF
usage: scripts/fuzz.sh [--seconds N] [--jobs N] [--save] [--save-corpus]
                       [--help] [HARNESS ...]

Builds the libFuzzer harnesses of ctest/fuzz/ (meson, clang, ASan+UBSan:
one instrumented library of the parsers that each harness links) in a build
directory outside the source tree, replays every input under
ctest/fuzz/regressions/HARNESS/ and ctest/fuzz/corpus/HARNESS/ and inputs at
the limits of the parsers (a 65535-byte description, a 128 KiB body: written
in the build directory), each must pass, then runs the harnesses, --jobs at
a time, each for N seconds (-max_total_time, -max_len past those limits)
from the seeds, the regressions and the working corpus of earlier runs (json:
the inputs at the limits too), and merges what they found into that
working corpus (-merge=1). Prints each harness's execution count, in order.
Exits non-zero on any crash, leak, sanitizer report, broken oracle or failed
regression input.

  --seconds N    fuzzing time per harness [20]; 0 replays the regressions,
                 the seeds and the inputs at the limits only
  --jobs N       harnesses fuzzed at the same time [2]
  --save         copy new crashing inputs into ctest/fuzz/regressions/HARNESS/
                 (else they stay in the build directory; the path is printed)
  --save-corpus  merge the working corpus into ctest/fuzz/corpus/HARNESS/:
                 only the inputs that reach edges the seeds already there
                 do not (-merge=1 -use_counters=0), each cut to
                 $SAVE_MAX_LEN bytes, for a developer to review and commit
  --help         this text

Harnesses (default: all): ${ALL_HARNESSES[*]}

Environment:
  FUZZ_BUILD_DIR  build and working directory [\${TMPDIR:-/tmp}/items-fuzz-\$UID]
                  (meson build in meson/, logs in logs/, working corpus in
                  corpus/HARNESS/, crashes in crashes/HARNESS/)
  CC              a clang with libFuzzer [clang]

The last line is "N passed, M failed" (one per harness).
EOF
}

whole_number() { [[ ${2:-} =~ ^[0-9]+$ ]] || { usage >&2; die "$1 needs a whole number"; }; }

SECONDS_EACH=20
JOBS=2
SAVE=0
SAVE_CORPUS=0
HARNESSES=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --seconds | --jobs)
      whole_number "$1" "${2:-}"
      if [[ $1 == --seconds ]]; then SECONDS_EACH=$2; else JOBS=$2; fi
      shift 2
      ;;
    --seconds=*) whole_number --seconds "${1#*=}"; SECONDS_EACH=${1#*=}; shift ;;
    --jobs=*) whole_number --jobs "${1#*=}"; JOBS=${1#*=}; shift ;;
    --save) SAVE=1; shift ;;
    --save-corpus) SAVE_CORPUS=1; shift ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *)
      [[ " ${ALL_HARNESSES[*]} " == *" $1 "* ]] || { usage >&2; die "unknown harness: $1"; }
      HARNESSES+=("$1")
      shift
      ;;
  esac
done
((${#HARNESSES[@]})) || HARNESSES=("${ALL_HARNESSES[@]}")
((JOBS >= 1)) || JOBS=1

BUILD=${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/items-fuzz-$(id -u)}
MESON_BUILD=$BUILD/meson
CC=${CC:-clang}
export CC
# A broken oracle, UB or a leak must stop the run, and leave a stack trace.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

have_libfuzzer() {
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
    'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    >"$BUILD/probe.c"
  "$CC" -fsanitize=fuzzer,address,undefined "$BUILD/probe.c" -o "$BUILD/probe" >/dev/null 2>&1
}

ensure_toolchain() {
  # The meson project needs the worker's libraries to configure, though the
  # harnesses link only jansson.
  ensure_packages clang:clang meson:meson ninja:ninja-build pkg-config:pkg-config \
    /usr/include/jansson.h:libjansson-dev /usr/include/fcgiapp.h:libfcgi-dev \
    /usr/include/mariadb/mysql.h:libmariadb-dev
  mkdir -p "$BUILD"
  if ! have_libfuzzer; then
    # Debian ships libFuzzer and the sanitizer runtimes apart from clang.
    ensure_packages "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev"
    have_libfuzzer || die "$CC cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"
  fi
}

# Configures the clang build once (b_sanitize: the whole build runs under
# ASan+UBSan, and meson leaves _FORTIFY_SOURCE out), then lets ninja rebuild
# what changed: the library once, then each harness.
build_harnesses() {
  local targets=() h
  mkdir -p "$BUILD/logs"
  for h in "${HARNESSES[@]}"; do targets+=("fuzz_$h"); done
  if [[ ! -f $MESON_BUILD/build.ninja ]]; then
    log "configuring $MESON_BUILD (CC=$CC)"
    rm -rf "$MESON_BUILD" # what a failed set-up left
    meson setup "$MESON_BUILD" "$REPO" -Dwerror=true -Db_sanitize=address,undefined \
      -Dintegration=false >"$BUILD/logs/meson-setup.log" 2>&1 ||
      { tail -n 30 "$BUILD/logs/meson-setup.log" >&2; return 1; }
  fi
  log "building ${targets[*]}"
  meson compile -C "$MESON_BUILD" "${targets[@]}" >"$BUILD/logs/meson-compile.log" 2>&1 ||
    { tail -n 40 "$BUILD/logs/meson-compile.log" >&2; return 1; }
}

bin_of() { printf '%s/ctest/fuzz/fuzz_%s' "$MESON_BUILD" "$1"; }

# n copies of a character.
repeat() { head -c "$2" /dev/zero | tr '\0' "$1"; }

# Inputs at and past the limits the parsers enforce, written here rather
# than kept in the repository (they are large and say nothing a name cannot).
write_limit_inputs() {
  local h=$1 dir=$2
  rm -rf "$dir"
  mkdir -p "$dir"
  case $h in
    json)
      local n
      for n in 65535 65536; do
        { printf '{"name":"n","description":"'; repeat a "$n"; printf '"}'; } >"$dir/description-$n"
      done
      # 65536 bytes with a 2-byte character across the limit.
      { printf '{"name":"n","description":"'; repeat a 65534; printf '\303\251"}'; } \
        >"$dir/description-utf8-65536"
      # A body of exactly HTTP_BODY_MAX (128 KiB), padded with white space.
      { printf '{"name":"n"}'; repeat ' ' $((131072 - 12)); } >"$dir/body-131072"
      ;;
    encode)
      { printf 'n\0'; repeat a 65535; } >"$dir/description-65535"
      { printf 'n\0'; repeat '"' 65536; } >"$dir/description-quotes-65536"
      ;;
    log)
      # 15 header bytes (access line, full-size buffer), then request id,
      # method and path, each far past its bound.
      { repeat '\0' 15; repeat r 100; printf '\0'; repeat G 100; printf '\0/'; repeat p 65535; } \
        >"$dir/access-long-fields"
      { printf '\1'; repeat '\0' 14; repeat m 65535; } >"$dir/message-long"
      ;;
  esac
}

# libFuzzer's closing statistics: "stat::number_of_executed_units: N".
stat_of() { sed -nE "s/^stat::$1: *([0-9]+).*/\\1/p" "$2" | tail -n 1; }

# Writes the harness's outcome to $BUILD/results/NAME: "ok", or "FAILED"
# and the log to show, on the first line, then the lines to print. Runs in
# the background, beside other harnesses: it prints nothing itself.
# usage: run_harness NAME
run_harness() {
  local h=$1 bin result=$BUILD/results/$1 log=$BUILD/logs/$1.log
  local corpus=$BUILD/corpus/$1 new=$BUILD/new/$1 limits=$BUILD/limits/$1
  local crashes=$BUILD/crashes/$1
  local regress=$FUZZ_DIR/regressions/$1 seeds=$FUZZ_DIR/corpus/$1
  local dict=() inputs=() dirs=() rc=0 execs crash f before
  bin=$(bin_of "$h")
  mkdir -p "$corpus" "$crashes"
  rm -rf "$new" && mkdir -p "$new"
  [[ -f $FUZZ_DIR/dict/$h.dict ]] && dict=(-dict="$FUZZ_DIR/dict/$h.dict")
  write_limit_inputs "$h" "$limits"

  # 1. Every committed regression input, every seed and every input at the
  # limits, once.
  if [[ -d $regress ]]; then
    mapfile -t inputs < <(find "$regress" -type f ! -name '*.md' | sort)
  fi
  mapfile -t -O "${#inputs[@]}" inputs < <(find "$seeds" "$limits" -type f | sort)
  if ((${#inputs[@]})); then
    if ! timeout 300 "$bin" -runs=1 "${inputs[@]}" >"$BUILD/logs/$h-replay.log" 2>&1; then
      printf 'FAILED %s\n%-11s FAILED replaying regressions/seeds/limits (log: %s)\n' \
        "$BUILD/logs/$h-replay.log" "$h" "$BUILD/logs/$h-replay.log" >"$result"
      return
    fi
  fi
  if ((SECONDS_EACH == 0)); then
    printf 'ok\n%-11s ok: %d regression, seed and limit inputs replayed\n' "$h" "${#inputs[@]}" >"$result"
    return
  fi

  # 2. Fuzz for the time asked. New inputs go to an empty directory (the
  # first); the working corpus, the seeds, the regressions and the inputs
  # at the limits are only read.
  dirs=("$new" "$corpus" "$seeds")
  [[ -d $regress ]] && dirs+=("$regress")
  [[ $FUZZ_FROM_LIMITS == *" $h "* ]] && dirs+=("$limits")
  before=$(find "$crashes" -type f | wc -l)
  timeout $((SECONDS_EACH + 120)) "$bin" -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len="${MAX_LEN[$h]}" \
    -artifact_prefix="$crashes/" "${dict[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  execs=$(stat_of number_of_executed_units "$log")
  if ((rc != 0)) || (($(find "$crashes" -type f | wc -l) > before)); then
    crash=$(find "$crashes" -type f -newer "$bin" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
    if [[ -n $crash ]] && ((SAVE)); then
      mkdir -p "$regress"
      cp "$crash" "$regress/"
      f="$regress/$(basename "$crash")"
    else
      f=$crash
    fi
    {
      echo "FAILED $log"
      printf '%-11s CRASH after %s execs (exit %d): %s\n' "$h" "${execs:-?}" "$rc" "${f:-see $log}"
      if [[ -n $crash ]] && ((!SAVE)); then
        printf '            keep it as a regression: mkdir -p %s && cp %s %s/\n' "$regress" "$crash" "$regress"
      fi
    } >"$result"
    return
  fi

  # 3. Merge what was found into the working corpus (-merge=1 into an empty
  # directory: a minimal set of both that keeps every feature, so it does not
  # grow with each run). It holds only what fuzzing found: the seeds stay in
  # the repository, and the inputs at the limits are written for each run.
  local merged=$BUILD/merged/$h
  rm -rf "$merged" && mkdir -p "$merged"
  if ! timeout 300 "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len="${MAX_LEN[$h]}" \
    "$merged" "$corpus" "$new" >"$BUILD/logs/$h-merge.log" 2>&1; then
    printf 'FAILED %s\n%-11s FAILED merging the new inputs (log: %s)\n' \
      "$BUILD/logs/$h-merge.log" "$h" "$BUILD/logs/$h-merge.log" >"$result"
    return
  fi
  rm -rf "$corpus" && mv "$merged" "$corpus"
  # 4. --save-corpus: add to the seeds the inputs of the working corpus that
  # reach edges they do not (-use_counters=0: new edges, not new hit
  # counts), each cut to SAVE_MAX_LEN bytes (libFuzzer merges the inputs as
  # read, -max_len cut): the repository stays small.
  local saved=
  if ((SAVE_CORPUS)); then
    if ! timeout 300 "$bin" -merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 \
      -max_len="$SAVE_MAX_LEN" \
      "$seeds" "$corpus" >"$BUILD/logs/$h-save.log" 2>&1; then
      printf 'FAILED %s\n%-11s FAILED merging into %s (log: %s)\n' "$BUILD/logs/$h-save.log" \
        "$h" "$seeds" "$BUILD/logs/$h-save.log" >"$result"
      return
    fi
    saved=$(printf ', %s now %s inputs' "${seeds#"$REPO"/}" "$(find "$seeds" -type f | wc -l)")
  fi
  printf 'ok\n%-11s ok: %s execs in %d s (%s/s), coverage %s edges, working corpus %s inputs%s\n' \
    "$h" "${execs:-?}" "$SECONDS_EACH" "$(stat_of average_exec_per_sec "$log")" \
    "$(sed -nE 's/.*(DONE|INITED) +cov: ([0-9]+).*/\2/p' "$log" | tail -n 1)" \
    "$(find "$corpus" -type f | wc -l)" "$saved" >"$result"
}

# Starts the harnesses, at most JOBS at a time; each writes its own logs and
# result file, printed in order once all are done.
run_harnesses() {
  local h running=0
  for h in "${HARNESSES[@]}"; do
    rm -f "$BUILD/results/$h"
    if ((running >= JOBS)); then
      wait -n || true
      running=$((running - 1))
    fi
    log "fuzzing $h for ${SECONDS_EACH}s (max_len ${MAX_LEN[$h]})"
    run_harness "$h" &
    running=$((running + 1))
  done
  wait || true
}

# On an interrupt: timeout runs in a process group of its own (no Ctrl-C
# reaches the fuzzers), so stop each harness's timeout (it passes the TERM
# on), then the harness's shell.
stop_harnesses() {
  local pid
  for pid in $(jobs -pr); do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
}

main() {
  local h status passed=0 failed=0 lines=() start=$SECONDS
  ensure_toolchain
  mkdir -p "$BUILD/results" "$BUILD/logs"
  if ! build_harnesses; then
    printf '\n=== fuzz results (build and logs in %s) ===\n' "$BUILD"
    for h in "${HARNESSES[@]}"; do printf '%-11s FAILED to build (logs/meson-*.log)\n' "$h"; done
    printf '%d passed, %d failed\n' 0 "${#HARNESSES[@]}"
    return 1
  fi
  trap 'stop_harnesses; exit 130' INT TERM
  run_harnesses
  trap - INT TERM
  for h in "${HARNESSES[@]}"; do
    status="FAILED $BUILD/logs/$h.log"
    lines=()
    if [[ -f $BUILD/results/$h ]]; then
      mapfile -t lines <"$BUILD/results/$h"
      status=${lines[0]}
      lines=("${lines[@]:1}")
    else
      lines=("$(printf '%-11s FAILED: no result (log: %s)' "$h" "$BUILD/logs/$h.log")")
    fi
    if [[ $status == ok ]]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      if [[ -f ${status#FAILED } ]]; then
        printf '\n--- %s: the end of %s ---\n' "$h" "${status#FAILED }" >&2
        tail -n 60 "${status#FAILED }" >&2
      fi
    fi
    RESULTS+=("${lines[@]}")
  done
  printf '\n=== fuzz results in %d s (build and logs in %s) ===\n' $((SECONDS - start)) "$BUILD"
  printf '%s\n' "${RESULTS[@]}"
  printf '%d passed, %d failed\n' "$passed" "$failed"
  ((failed == 0))
}

RESULTS=()
main
