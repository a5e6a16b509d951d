# shellcheck shell=bash
# shellcheck disable=SC2034 # the CL_ variables are read by the scripts that source this file
# The simulated cluster's names, addresses and paths (scripts/cluster-sim.sh, docs/scaling.md
# "Simulated cluster"), in one place so that the script and the tests that drive it agree.
# Source it; it defines variables and functions only.
#
#   cl_node_addr N      the node's address on the cluster bridge (172.31.210.1N)
#   cl_node_host N      its engine, as DOCKER_HOST (unix:///run/items-cluster/nodeN.sock)
#   cl_docker N ARGS... the docker CLI against node N's engine
#   cl_nodes_up         the node numbers whose network namespace exists, one a line

# One private /24 of the project's own: the compose deployment's subnets and the tests' are
# 172.31.225-254.x, docker_gwbridge 172.28-30.0.0/16 (scripts/lib/docker.sh).
CL_NET=172.31.210
CL_BRIDGE=itemsclbr0
CL_BRIDGE_ADDR=$CL_NET.1
CL_REGISTRY=$CL_BRIDGE_ADDR:5000
# The nodes' way to the Debian mirror (scripts/cluster-sim.sh "the package mirror"), on the bridge.
CL_MIRROR_PORT=18722
CL_NETNS_PREFIX=items-node
# Every iptables rule the simulation adds carries this comment: `down` deletes exactly those.
CL_RULE_COMMENT=items-cluster-sim
CL_RUN=/run/items-cluster
CL_LIB=/var/lib/items-cluster
# Inside the node namespaces: node N's docker0 is 10.213.(16N).0/24 and its local networks
# (docker_gwbridge first) come from 10.213.(16N+8).0/21; the swarm's overlays (ingress included) from
# 10.214.0.0/16. None of them is routed on the host, and none overlaps what the host engine uses
# (172.17-31.x local pools, 10.0.x overlays of the single-node swarm of the tests).
CL_LOCAL_POOL=10.213
CL_SWARM_POOL=10.214.0.0/16
CL_MAX_NODES=9

cl_node_addr() { printf '%s.%d' "$CL_NET" $((10 + $1)); }
cl_node_sock() { printf '%s/node%d.sock' "$CL_RUN" "$1"; }
cl_node_host() { printf 'unix://%s' "$(cl_node_sock "$1")"; }
cl_netns() { printf '%s%d' "$CL_NETNS_PREFIX" "$1"; }

# -H names the engine; a DOCKER_CONTEXT in the caller's environment must not redirect it.
cl_docker() {
    local n=$1
    shift
    env -u DOCKER_CONTEXT -u DOCKER_HOST docker -H "$(cl_node_host "$n")" "$@"
}

cl_nodes_up() {
    local ns
    while read -r ns _; do
        [[ $ns =~ ^${CL_NETNS_PREFIX}([1-9])$ ]] && echo "${BASH_REMATCH[1]}"
    done < <(ip netns list 2>/dev/null) | sort -n
}
