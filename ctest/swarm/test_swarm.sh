#!/usr/bin/env bash
# The Docker Swarm end-to-end test: deploys the stack with `scripts/deploy.sh --swarm` (3 api
# replicas), checks the services, proves requests spread over the replicas, rolls the api image
# under load, kills a replica, scales 5 then 1 under load, measures throughput with 1 and 3
# replicas, and removes everything it created. One line per check, then "N passed, M failed".
# Exit 0 when all pass, 1 on a failure, 77 (skipped, after a line "SKIP: reason") when this engine
# cannot run a swarm.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ctest/swarm/test_swarm.sh [--keep]

Deploys the stack "items-swarm-e2e" (its own secrets in a temporary directory) with its front
published in host mode on SWARM_HTTP_PORT (default: the first free port from 18480), runs the
checks, then removes the stack, its secrets and volumes (scripts/deploy.sh --swarm --down --purge).
If this engine is in no swarm, the test creates a single-node one (advertised on 127.0.0.1) and
leaves it at the end; a swarm that already existed is left as it was (only the test's stack goes).

  --keep   leave the stack (and a swarm the test created) running at the end, for debugging;
           remove them with STACK_NAME=items-swarm-e2e scripts/deploy.sh --swarm --down --purge
  --help   this text

Skipped (a line "SKIP: reason", exit 77; scripts/test.sh fails the suite under CI) when no Docker
engine answers, or when it cannot run a swarm (a worker node, a locked swarm, `docker swarm init`
refused). Traffic goes to 127.0.0.1 and the stack's containers only.
Environment: SWARM_HTTP_PORT, SWARM_STACK (items-swarm-e2e), COMPOSE_IMPL (see scripts/deploy.sh).
USAGE
}

case ${1:-} in
    --help | -h) usage; exit 0 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/docker.sh
. "$here/../../scripts/lib/docker.sh"

dk_engine_or_skip
exec python3 "$here/test_swarm.py" "$@"
