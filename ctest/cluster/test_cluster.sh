#!/usr/bin/env bash
# The multi-node test: the Swarm stack on a simulated three-node cluster (scripts/cluster-sim.sh),
# deployed by scripts/deploy.sh --swarm with only DOCKER_HOST and REGISTRY pointing at it, then
# placement, the balancer, a rolling update under load, a worker node lost and revived, the db node
# lost and revived, network isolation and encryption. One line per check, then "N passed, M failed".
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ctest/cluster/test_cluster.sh [--keep]

Brings up the simulated cluster (scripts/cluster-sim.sh up: 3 nodes, 1 manager, the db label on
node2, a front label on every node, the registry, the balancer on 127.0.0.1:18720), deploys the
stack "items" to it with
    DOCKER_HOST=unix:///run/items-cluster/node1.sock REGISTRY=172.31.210.1:5000 scripts/deploy.sh --swarm
(the images built on the manager, pushed to the registry, pulled by the nodes; its own secrets in a
temporary directory), runs the checks and drills, then scripts/cluster-sim.sh down, and checks that
nothing of the cluster is left. Bounded: about 4 minutes, up to 11 when Docker's gossip is slow to
take the db's node back (docs/scaling.md); every load loop stops within 150 s.

  --keep   leave the cluster up at the end, for debugging (scripts/cluster-sim.sh down removes it)
  --help   this text

Needs root (network namespaces, a bridge, iptables, one dockerd per node). deploy.sh pushes images
under the commit they were built from and refuses a tree with changes: from such a checkout the
test deploys a clean clone of its HEAD, and says so (the commit is tested, not the changes). Fails
when a simulated cluster is up already (what one left with nothing running is cleaned up by up).
The test's own traffic goes to 127.0.0.1 and the simulation's addresses (172.31.210.0/24 and the
overlays inside the nodes) only; the build on the manager fetches Debian packages from this host's
Debian mirror, through the simulation's mirror proxy (scripts/cluster-sim.sh --help), as any image
build here does: without a mirror the deploy, and so the suite, fails.
USAGE
}

case ${1:-} in
    --help | -h) usage; exit 0 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
if ((EUID != 0)); then
    echo "SKIP: the simulated cluster needs root (network namespaces, bridge, iptables, dockerd)"
    exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is missing"; exit 77; }
exec python3 "$here/test_cluster.py" "$@"
