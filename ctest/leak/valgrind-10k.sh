#!/usr/bin/env bash
# Leak check of one worker under valgrind: a stack whose single worker runs
# under memcheck serves 10,000 mixed requests (every route, every refusal, a
# database outage), then the pool is stopped with SIGTERM (multiwatch sends
# the worker SIGUSR1; it finishes, closes its database connection and exits 0)
# and valgrind's report must show no definite leak and no memory error.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../.. source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

usage() {
  cat <<EOF
usage: ctest/leak/valgrind-10k.sh [--requests N] [--no-outage] [--help]

Builds items-fcgi with -O1 -g (or takes ITEMS_FCGI), starts a local stack
(scripts/run-local.sh, free loopback ports, FCGI_WORKERS=1) whose worker runs
under valgrind --leak-check=full, sends N mixed requests [10000] through
nginx (with the database stopped half-way until 1000 requests were refused,
then back, unless --no-outage), stops the pool with SIGTERM and reads
valgrind's report.

Passes when: every response is one the contract allows (GET /status is 200
again within 2 s of the database's return); the one worker served every
request and exited cleanly (never replaced); valgrind reports 0 bytes
definitely lost and 0 errors. Prints the figures, then "N passed, M failed".

Environment:
  ITEMS_FCGI       worker binary to check [built into LEAK_BUILD_DIR]; a copy
                   of it runs, so that user nobody can reach it from any checkout
  LEAK_BUILD_DIR   meson build directory [\${TMPDIR:-/tmp}/items-leak-build-\$UID]
  LEAK_DEADLINE    seconds allowed for the traffic [900]
  KEEP_TMP=1       keep the stack's directory and valgrind's logs
EOF
}

REQUESTS=10000 OUTAGE=1
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --requests)
      [[ ${2:-} =~ ^[0-9]+$ ]] || die "--requests needs a number"
      REQUESTS=$2
      shift 2
      ;;
    --no-outage) OUTAGE=0; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

PASSED=0 FAILED=0
check() { # usage: check DESCRIPTION command...
  local what=$1
  shift
  if "$@"; then
    printf 'ok      %s\n' "$what"
    PASSED=$((PASSED + 1))
  else
    printf 'FAILED  %s\n' "$what"
    FAILED=$((FAILED + 1))
  fi
}

ensure_stack_packages
ensure_packages valgrind:valgrind python3:python3

BINARY=${ITEMS_FCGI:-}
if [[ -z $BINARY ]]; then
  BUILD=${LEAK_BUILD_DIR:-${TMPDIR:-/tmp}/items-leak-build-$(id -u)}
  if [[ ! -f $BUILD/build.ninja ]]; then
    meson setup "$BUILD" "$REPO" -Doptimization=1 -Ddebug=true -Dintegration=false >/dev/null ||
      die "meson setup $BUILD failed"
  fi
  meson compile -C "$BUILD" fcgi-app/items-fcgi >/dev/null || die "building items-fcgi failed"
  BINARY=$BUILD/fcgi-app/items-fcgi
fi
[[ -x $BINARY ]] || die "ITEMS_FCGI=$BINARY is not an executable"
BINARY=$(realpath "$BINARY")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/items-leak.XXXXXX")
chmod 755 "$TMP"
RUN_DIR=$TMP/run
VG_DIR=$TMP/valgrind
mkdir -p "$VG_DIR"
# The workers drop to user nobody when started as root.
chmod 1777 "$VG_DIR"
# A copy in TMP (0755): the build may sit in a checkout nobody cannot enter
# (a clone under /root, mode 0700).
install -m 755 "$BINARY" "$TMP/items-fcgi"
BINARY=$TMP/items-fcgi

# The pool runs this in place of the worker: --check-config (run by
# run-local.sh and items-pool before anything starts) directly, the worker
# itself under memcheck, one log per process.
cat >"$TMP/items-fcgi-valgrind" <<EOF
#!/bin/sh
if [ "\${1:-}" = --check-config ]; then exec "$BINARY" "\$@"; fi
exec valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \\
  --errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=30 \\
  --log-file="$VG_DIR/worker.%p.log" "$BINARY" "\$@"
EOF
chmod 755 "$TMP/items-fcgi-valgrind"

# run-local.sh chooses the ports (again if one is taken meanwhile).
export RUN_DIR HTTP_PORT=auto METRICS_PORT=auto DB_PORT=auto FCGI_PORT=auto
export FCGI_WORKERS=1 ITEMS_FCGI=$TMP/items-fcgi-valgrind API_TOKEN
API_TOKEN=leak-$(random_secret)
# Writes are not what is limited here: keep nginx's write limit out of the way.
export WRITE_RATE=100000r/s WRITE_BURST=100000
unset NO_TOKEN

cleanup() {
  "$REPO/scripts/run-local.sh" --stop >/dev/null 2>&1 || true
  if [[ ${KEEP_TMP:-} == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT

log "starting a stack with one worker under valgrind (RUN_DIR=$RUN_DIR)"
"$REPO/scripts/run-local.sh" --detach >"$TMP/start.log" 2>&1 ||
  { cat "$TMP/start.log" >&2; die "the stack did not start"; }
HTTP_PORT=$(saved_setting "$RUN_DIR" HTTP_PORT)
POOL=$(cat "$RUN_DIR/pids/pool.pid")
worker_pids() { ps --ppid "$POOL" -o pid= | tr -d ' '; }
WORKER=$(worker_pids)
log "pool $POOL, worker $WORKER; sending $REQUESTS requests"

traffic_args=(--port "$HTTP_PORT" --token "$API_TOKEN" --requests "$REQUESTS"
  --deadline "${LEAK_DEADLINE:-900}")
((OUTAGE)) && traffic_args+=(--outage-run-dir "$RUN_DIR")
rc=0
FIGURES=$(python3 "$REPO/ctest/leak/traffic.py" "${traffic_args[@]}") || rc=$?
check "traffic: $REQUESTS requests, only responses the contract allows" test "$rc" -eq 0
STILL=$(worker_pids)
check "the worker was never replaced (pid $WORKER, now ${STILL:-none})" test "$STILL" = "$WORKER"

log "stopping the pool with SIGTERM"
kill -TERM "$POOL"
wait_until 120 "the pool to exit" pid_gone "$POOL" || true
check "the pool and its worker exited after SIGTERM" pid_gone "$POOL"

SERVED=$(grep -o 'worker stopped after [0-9]* requests' "$RUN_DIR/logs/pool.log" | tail -n 1 | grep -o '[0-9]*' || true)
check "the worker stopped cleanly after serving the traffic (${SERVED:-no} requests logged)" \
  test "${SERVED:-0}" -ge "$((REQUESTS * 9 / 10))"

shopt -s nullglob
LOGS=("$VG_DIR"/worker.*.log)
check "one valgrind report (${#LOGS[@]})" test "${#LOGS[@]}" -eq 1
report=${LOGS[0]:-/dev/null}
figure() { # bytes of a "LOSS lost:" line; 0 when valgrind says all was freed
  sed -nE "s/.*$1: *([0-9,]+) bytes in ([0-9,]+) blocks.*/\\1 bytes in \\2 blocks/p" "$report" | tail -n 1
}
DEF=$(figure 'definitely lost') IND=$(figure 'indirectly lost')
POS=$(figure 'possibly lost') REACH=$(figure 'still reachable')
ERRS=$(sed -nE 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/p' "$report" | tail -n 1)
if grep -q 'All heap blocks were freed' "$report"; then
  DEF=${DEF:-0 bytes in 0 blocks}
fi
if [[ ${KEEP_TMP:-} == 1 ]] || [[ ${DEF:-x} != "0 bytes in 0 blocks" && -n $DEF ]]; then
  cat "$report"
fi

printf '\n=== leak check figures ===\n'
printf 'traffic            %s\n' "$FIGURES"
printf 'worker served      %s requests\n' "${SERVED:-?}"
printf 'definitely lost    %s\n' "${DEF:-0 bytes in 0 blocks (no leak summary line)}"
printf 'indirectly lost    %s\n' "${IND:-0}"
printf 'possibly lost      %s\n' "${POS:-0}"
printf 'still reachable    %s\n' "${REACH:-0}"
printf 'valgrind errors    %s\n' "${ERRS:-?}"
check "valgrind: 0 bytes definitely lost" test "${DEF:-0 bytes in 0 blocks}" = "0 bytes in 0 blocks"
check "valgrind: 0 errors" test "${ERRS:-x}" = 0
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
