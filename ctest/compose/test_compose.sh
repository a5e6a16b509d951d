#!/usr/bin/env bash
# The compose end-to-end test: builds and deploys the stack with scripts/deploy.sh under its own
# compose project, checks every security and reliability claim of the deployment against the real
# Docker engine, and removes everything it created; then the upgrade test (test_upgrade.py: the
# release before schema migrations upgraded in place to this commit). One line per check, then one
# closing line "N passed, M failed" for both. Exit 0 when all pass, 1 on a failure, 77 (skipped,
# after a line "SKIP: reason") when no Docker engine can run here.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ctest/compose/test_compose.sh [--keep]

1. test_compose.py: deploys the stack as compose project "items-e2e" (its own secrets in a
   temporary directory, its own edge subnet) on port E2E_HTTP_PORT (default 80, which must be
   free), runs the checks, then removes the project's containers, networks and volume
   (scripts/deploy.sh --down --purge).
2. test_upgrade.py: in a temporary clone, deploys the release before schema migrations (fd03663)
   as project "items-upgrade" on a free loopback port of 18580-18599, writes items, upgrades the
   same volume to this repository's HEAD commit (uncommitted changes are not part of it), checks
   the data, the schema version, a second deploy, a tampered migration and two concurrent
   runners, then removes everything (test_upgrade.py --help).
Each file's closing line is shown as "# FILE: N passed, M failed"; the last line adds them up
(a file that exits non-zero without a failure, or prints no closing line, counts one failure).

  --keep   leave both stacks running at the end (for debugging; remove them with
           COMPOSE_PROJECT_NAME=items-e2e scripts/deploy.sh --down --purge, and as
           test_upgrade.py says)
  --help   this text

As root on Debian, a missing Docker engine is installed and started (scripts/lib/docker.sh);
otherwise the test is skipped when no engine answers: a line "SKIP: reason", exit 77
(scripts/test.sh shows the reason, and fails the suite under CI).
Environment: E2E_HTTP_PORT (80), E2E_PROJECT (items-e2e), E2E_EDGE_SUBNET (172.31.254.0/24),
E2E_API_EDGE_IP (172.31.254.10) and E2E_FRONT_EDGE_IP (172.31.254.20), both inside E2E_EDGE_SUBNET,
E2E_DATA_SUBNET (172.31.252.0/24), E2E_BIG_ITEMS (400: items of 64 KiB of control characters, ~390 KB
of JSON each, for the big-page check) and E2E_BIG_CLIENTS (4 concurrent GET /items?limit=1000),
COMPOSE_IMPL (docker-compose | docker-compose-plugin); for the upgrade test: UPGRADE_FROM,
UPGRADE_PROJECT, UPGRADE_HTTP_PORT, UPGRADE_IMAGE_PREFIX, UPGRADE_*_SUBNET, UPGRADE_*_EDGE_IP.
USAGE
}

case ${1:-} in
    --help | -h) usage; exit 0 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/docker.sh
. "$here/../../scripts/lib/docker.sh"

dk_engine_or_skip

# Runs one test file; its closing line is relabelled "# FILE: ..." (so that only the combined line
# below is a closing line for scripts/test.sh) and its counts are added to the totals.
CLOSING='^([0-9]+) passed, ([0-9]+) failed$'
passed=0 failed=0
run_file() {
    local file=$1 counts rc=0 p f
    shift
    counts=$(mktemp "${TMPDIR:-/tmp}/items-compose-counts.XXXXXX")
    python3 "$here/$file" "$@" 2>&1 | while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ $CLOSING ]]; then
            printf '%s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" >"$counts"
            line="# $file: $line"
        fi
        printf '%s\n' "$line"
    done || rc=$?
    p="" f=""
    read -r p f <"$counts" || true
    rm -f "$counts"
    if [[ -z $p ]]; then
        echo "FAIL - $file: no closing line (exit $rc)"
        p=0 f=1
    elif ((rc != 0 && f == 0)); then
        echo "FAIL - $file: exit $rc although it counted no failure"
        f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
}

run_file test_compose.py "$@"
run_file test_upgrade.py "$@"
echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
