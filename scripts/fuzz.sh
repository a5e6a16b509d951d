#!/usr/bin/env bash
# Builds the libFuzzer harnesses of ctest/fuzz/ against fcgi-app/src with
# clang (-fsanitize=fuzzer,address,undefined), replays the committed
# regression inputs, then fuzzes each harness for a bounded time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

ALL_HARNESSES=(page id json auth config media_type encode log)
FUZZ_DIR=$REPO/ctest/fuzz
# The product sources each harness links (the parsers, the log line builder
# and what they call).
LIB_SOURCES=(auth.c buf.c config.c http.c item.c json.c log.c params.c utf8.c)

usage() {
  cat <<EOF
usage: scripts/fuzz.sh [--seconds N] [--save] [--help] [HARNESS ...]

Builds the libFuzzer harnesses of ctest/fuzz/ (clang, ASan+UBSan) in a
build directory outside the source tree, replays every input under
ctest/fuzz/regressions/HARNESS/ (each must pass), then runs each harness
for N seconds (-max_total_time) from its seed corpus ctest/fuzz/corpus/HARNESS/
and prints its execution count. Exits non-zero on any crash, leak,
sanitizer report, broken oracle or failed regression input.

  --seconds N   fuzzing time per harness [20]; 0 replays the regressions
                and the seed corpus only
  --save        copy new crashing inputs into ctest/fuzz/regressions/HARNESS/
                (else they stay in the build directory; the path is printed)
  --help        this text

Harnesses (default: all): ${ALL_HARNESSES[*]}

Environment:
  FUZZ_BUILD_DIR  build and working directory [\${TMPDIR:-/tmp}/items-fuzz-\$UID]
  FUZZ_SRC        product sources to build against [REPO/fcgi-app/src]
  CC              a clang with libFuzzer [clang]

The last line is "N passed, M failed" (one per harness).
EOF
}

SECONDS_EACH=20
SAVE=0
HARNESSES=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --seconds)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { usage >&2; die "--seconds needs a whole number"; }
      SECONDS_EACH=$2
      shift 2
      ;;
    --seconds=*)
      SECONDS_EACH=${1#--seconds=}
      [[ $SECONDS_EACH =~ ^[0-9]+$ ]] || { usage >&2; die "--seconds needs a whole number"; }
      shift
      ;;
    --save) SAVE=1; shift ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *)
      [[ " ${ALL_HARNESSES[*]} " == *" $1 "* ]] || { usage >&2; die "unknown harness: $1"; }
      HARNESSES+=("$1")
      shift
      ;;
  esac
done
((${#HARNESSES[@]})) || HARNESSES=("${ALL_HARNESSES[@]}")

BUILD=${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/items-fuzz-$(id -u)}
SRC=${FUZZ_SRC:-$REPO/fcgi-app/src}
CC=${CC:-clang}
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
  ensure_packages clang:clang pkg-config:pkg-config /usr/include/jansson.h:libjansson-dev
  mkdir -p "$BUILD"
  if ! have_libfuzzer; then
    # Debian ships libFuzzer and the sanitizer runtimes apart from clang.
    ensure_packages "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev"
    have_libfuzzer || die "$CC cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"
  fi
}

# Rebuilds a harness when it or a source it depends on changed.
build_harness() {
  local h=$1 out=$BUILD/bin/fuzz_$1 src dep stale=0
  local sources=("$FUZZ_DIR/fuzz_$h.c")
  for src in "${LIB_SOURCES[@]}"; do sources+=("$SRC/$src"); done
  mkdir -p "$BUILD/bin"
  if [[ ! -x $out ]]; then
    stale=1
  else
    for dep in "${sources[@]}" "$FUZZ_DIR/fuzz.h" "$SRC"/*.h "${BASH_SOURCE[0]}"; do
      [[ $dep -nt $out ]] && { stale=1; break; }
    done
  fi
  ((stale)) || return 0
  rm -f "$out"
  local jansson
  read -r -a jansson <<<"$(pkg-config --cflags --libs jansson)"
  "$CC" -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -g -O1 \
    -fno-omit-frame-pointer -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$SRC" -I "$FUZZ_DIR" "${sources[@]}" "${jansson[@]}" -o "$out.tmp" &&
    mv "$out.tmp" "$out"
}

# libFuzzer's closing statistics: "stat::number_of_executed_units: N".
stat_of() { sed -nE "s/^stat::$1: *([0-9]+).*/\\1/p" "$2" | tail -n 1; }

PASSED=0 FAILED=0
RESULTS=()

# usage: run_harness NAME
run_harness() {
  local h=$1 bin=$BUILD/bin/fuzz_$1 log=$BUILD/logs/$1.log
  local corpus=$BUILD/corpus/$1 crashes=$BUILD/crashes/$1
  local regress=$FUZZ_DIR/regressions/$1 seeds=$FUZZ_DIR/corpus/$1
  local dict=() inputs=() rc=0 execs crash f
  mkdir -p "$corpus" "$crashes" "$BUILD/logs"
  [[ -f $FUZZ_DIR/dict/$h.dict ]] && dict=(-dict="$FUZZ_DIR/dict/$h.dict")

  # 1. Every committed regression input, then every seed, once.
  if [[ -d $regress ]]; then
    mapfile -t inputs < <(find "$regress" -type f ! -name '*.md' | sort)
  fi
  mapfile -t -O "${#inputs[@]}" inputs < <(find "$seeds" -type f | sort)
  if ((${#inputs[@]})); then
    if ! timeout 300 "$bin" -runs=1 "${inputs[@]}" >"$BUILD/logs/$h-replay.log" 2>&1; then
      tail -n 40 "$BUILD/logs/$h-replay.log" >&2
      RESULTS+=("$(printf '%-11s FAILED replaying regressions/seeds (log: %s)' "$h" "$BUILD/logs/$h-replay.log")")
      FAILED=$((FAILED + 1))
      return
    fi
  fi
  if ((SECONDS_EACH == 0)); then
    RESULTS+=("$(printf '%-11s ok: %d regression and seed inputs replayed' "$h" "${#inputs[@]}")")
    PASSED=$((PASSED + 1))
    return
  fi

  # 2. Fuzz for the time asked; new inputs go to the build directory's
  # corpus (first directory), the seeds are only read.
  local before
  before=$(find "$crashes" -type f | wc -l)
  timeout $((SECONDS_EACH + 120)) "$bin" -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -artifact_prefix="$crashes/" "${dict[@]}" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(stat_of number_of_executed_units "$log")
  if ((rc != 0)) || (($(find "$crashes" -type f | wc -l) > before)); then
    tail -n 60 "$log" >&2
    crash=$(find "$crashes" -type f -newer "$bin" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
    if [[ -n $crash ]] && ((SAVE)); then
      mkdir -p "$regress"
      cp "$crash" "$regress/"
      f="$regress/$(basename "$crash")"
    else
      f=$crash
    fi
    RESULTS+=("$(printf '%-11s CRASH after %s execs (exit %d): %s' "$h" "${execs:-?}" "$rc" "${f:-see $log}")")
    if [[ -n $crash ]] && ((!SAVE)); then
      RESULTS+=("            keep it as a regression: mkdir -p $regress && cp $crash $regress/")
    fi
    FAILED=$((FAILED + 1))
    return
  fi
  RESULTS+=("$(printf '%-11s ok: %s execs in %d s (%s/s), corpus %s inputs, coverage %s edges' "$h" \
    "${execs:-?}" "$SECONDS_EACH" "$(stat_of average_exec_per_sec "$log")" \
    "$(find "$corpus" -type f | wc -l)" \
    "$(sed -nE 's/.*(DONE|INITED) +cov: ([0-9]+).*/\2/p' "$log" | tail -n 1)")")
  PASSED=$((PASSED + 1))
}

main() {
  ensure_toolchain
  local h
  for h in "${HARNESSES[@]}"; do
    log "building fuzz_$h"
    build_harness "$h" || { RESULTS+=("$(printf '%-11s FAILED to build' "$h")"); FAILED=$((FAILED + 1)); continue; }
  done
  for h in "${HARNESSES[@]}"; do
    [[ -x $BUILD/bin/fuzz_$h ]] || continue
    log "fuzzing $h for ${SECONDS_EACH}s"
    run_harness "$h"
  done
  printf '\n=== fuzz results (build and logs in %s) ===\n' "$BUILD"
  printf '%s\n' "${RESULTS[@]}"
  printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
  ((FAILED == 0))
}

main
