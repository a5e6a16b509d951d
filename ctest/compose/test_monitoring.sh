#!/usr/bin/env bash
# The monitoring tier's test (test_monitoring.py): deploy.sh --monitoring on a stack of its own, the
# targets, the hardening, replicas, the console, and the three fault drills (database, workers,
# errors) timed to the webhook receiver. One line per check, then "N passed, M failed". Exit 0 when
# all pass, 1 on a failure, 77 (skipped, after a line "SKIP: reason") when no Docker engine can run.
set -euo pipefail

case ${1:-} in
    --help | -h)
        cat <<'USAGE'
Usage: ctest/compose/test_monitoring.sh [--keep]

Deploys this working tree with scripts/deploy.sh --monitoring as compose project "items-mon"
(images items-mon-*, front and Prometheus on free loopback ports of 18660-18699, its own subnets),
starts a webhook receiver on the stack's internal monitoring network, checks the monitoring tier
and runs the fault drills (stop the db; kill workers faster than they restart; stop the api under a
burst of requests), printing each drill's time to fire and to resolve, then removes everything
(--keep leaves it running). See `python3 ctest/compose/test_monitoring.py --help`.

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
exec python3 "$here/test_monitoring.py" "$@"
