#!/usr/bin/env bash
# The upgrade test (test_upgrade.py): the release before schema migrations (fd03663), deployed from
# a temporary clone, upgraded in place to this repository's HEAD commit. One line per check, then
# "N passed, M failed". Exit 0 when all pass, 1 on a failure, 77 (skipped, after a line
# "SKIP: reason") when no Docker engine can run here.
set -euo pipefail

case ${1:-} in
    --help | -h)
        cat <<'USAGE'
Usage: ctest/compose/test_upgrade.sh [test_upgrade.py options: --keep, --worktree]

Deploys commit fd03663 (UPGRADE_FROM) from a temporary clone as compose project "items-upgrade" on
a free loopback port of 18580-18599, writes items, checks this repository's HEAD commit out in the
same clone (uncommitted changes are not part of it; --worktree tests the working tree instead) and
deploys it on the same volume while a client polls GET /items, then checks the data, the schema
version, a second deploy, a tampered migration and two concurrent migration runners, and removes
everything. See `python3 ctest/compose/test_upgrade.py --help` for the environment it reads.

As root on Debian, a missing Docker engine is installed and started (scripts/lib/docker.sh);
otherwise the test is skipped when no engine answers: a line "SKIP: reason", exit 77.
USAGE
        exit 0
        ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/docker.sh
. "$here/../../scripts/lib/docker.sh"

dk_engine_or_skip
exec python3 "$here/test_upgrade.py" "$@"
