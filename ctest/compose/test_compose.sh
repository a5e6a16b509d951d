#!/usr/bin/env bash
# The compose end-to-end test: builds and deploys the stack with scripts/deploy.sh under its own
# compose project, checks every security and reliability claim of the deployment against the real
# Docker engine, and removes everything it created. One line per check, then "N passed, M failed".
# Exit 0 when all pass, 1 on a failure, 77 (skipped, after a line "SKIP: reason") when no Docker
# engine can run here.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ctest/compose/test_compose.sh [--keep]

Deploys the stack as compose project "items-e2e" (its own secrets in a temporary directory, its own
edge subnet) on ports E2E_HTTP_PORT and E2E_HTTPS_PORT (default 80 and 443, which must be free),
runs the checks, then removes
the project's containers, networks and volume (scripts/deploy.sh --down --purge).

  --keep   leave the stack running at the end (for debugging; remove it with
           COMPOSE_PROJECT_NAME=items-e2e scripts/deploy.sh --down --purge)
  --help   this text

As root on Debian, a missing Docker engine is installed and started (scripts/lib/docker.sh);
otherwise the test is skipped when no engine answers: a line "SKIP: reason", exit 77
(scripts/test.sh shows the reason, and fails the suite under CI).
Environment: E2E_HTTP_PORT (80), E2E_HTTPS_PORT (443), E2E_PROJECT (items-e2e), E2E_EDGE_SUBNET
(172.31.254.0/24), E2E_FRONT_EDGE_IP (172.31.254.20, inside E2E_EDGE_SUBNET), E2E_PUBLIC_SUBNET
(172.31.251.0/24),
E2E_DATA_SUBNET (172.31.252.0/24), E2E_BIG_ITEMS (400: items of 64 KiB of control characters, ~390 KB
of JSON each, for the big-page check) and E2E_BIG_CLIENTS (4 concurrent GET /items?limit=1000),
COMPOSE_IMPL (docker-compose | docker-compose-plugin).
USAGE
}

case ${1:-} in
    --help | -h) usage; exit 0 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/docker.sh
. "$here/../../scripts/lib/docker.sh"

dk_engine_or_skip
exec python3 "$here/test_compose.py" "$@"
