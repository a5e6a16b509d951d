#!/usr/bin/env bash
# Soak test with faults (ctest/soak/soak.py): bounded mixed load against a
# local stack while workers are killed, the database goes away for 10 s and
# nginx is reloaded; prints the figures and "N passed, M failed".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

usage() {
  cat <<EOF2
usage: scripts/soak.sh [--duration SECONDS] [--workers N] [--threads N] [--rate R] [--help]

Starts a local stack (scripts/run-local.sh on free loopback ports) and runs
mixed load for SECONDS [300] from N threads [8] at R requests/s in all [300],
each request on its own connection, with unique write payloads. Meanwhile it
kills a worker with SIGKILL every 10 s, stops the database for 10 s
(run-local.sh --db stop/start) and reloads nginx (SIGHUP) twice. Every
response is recorded in a JSON-lines file (SOAK_LOG_DIR).

Pass criteria, printed with their figures: no 500/504 ever; a 502 only for
a write in flight at a kill (at most one per kill); 503 only during the
outage (+2 s); every acknowledged write readable at the end with the exact
content; no item twice; the pool back to --workers [4] workers; worker RSS
growth <= 10 %. The last line is "N passed, M failed".

Environment: ITEMS_FCGI (worker binary, else run-local.sh builds one),
SOAK_LOG_DIR [\${TMPDIR:-/tmp}/items-soak-\$UID], KEEP_TMP=1 keeps the stack.
EOF2
}

for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
  esac
done

ensure_stack_packages
ensure_packages python3:python3
# Bounded: the load, the faults' own waits and the stack's start and stop.
duration=300
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ ${args[i]} == --duration ]]; then duration=${args[i + 1]:-300}; fi
  if [[ ${args[i]} == --duration=* ]]; then duration=${args[i]#--duration=}; fi
done
[[ $duration =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration needs a number of seconds"
exec timeout --kill-after=30 "$(awk -v d="$duration" 'BEGIN { printf "%d", d + 300 }')" \
  python3 "$REPO/ctest/soak/soak.py" "$@"
