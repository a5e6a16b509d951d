#!/usr/bin/env bash
# A multi-node Docker Swarm simulated on this one machine: one network namespace, containerd and
# dockerd per node, joined by a bridge, a registry the nodes pull from, and an outer load balancer
# (nginx on the host's loopback) in front of the nodes' host-mode front ports. What it maps to on a
# real cluster: docs/scaling.md "Simulated cluster".
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/cluster-sim.sh up | down | status | kill-node N | revive-node N | balancer | push IMAGE...

Simulates a Docker Swarm of NODES machines on this host (as root, Debian 12), so that
`scripts/deploy.sh --swarm` can be run against several nodes with only DOCKER_HOST and REGISTRY set.

  up             creates the bridge itemsclbr0 (172.31.210.1/24 on the host) and, per node N, the
                 network namespace items-nodeN (address 172.31.210.(10+N), no default route: only
                 the /24), a containerd and a dockerd of its own (data root /var/lib/items-cluster/nodeN,
                 socket /run/items-cluster/nodeN.sock); starts the registry (Debian's docker-registry)
                 on 172.31.210.1:5000 (plain HTTP, trusted by the node engines only) and the nodes'
                 way to the Debian mirror (dnsmasq on 172.31.210.1 answers the mirror's names, and
                 nothing else; the balancer's nginx passes GET on to it, so that deploy.sh can
                 build on the manager); forms the swarm (node1 the manager, or nodes 1..MANAGERS;
                 the others workers), labels the nodes, loads the base image into the manager,
                 starts the balancer; prints what to export.
                 A failed up tears down what it made (KEEP_FAILED=1 keeps it, to look at).
                 What a cluster left when nothing of it runs any more (its session ended, or a
                 boot kept /run) is removed first; a cluster with a live process stops up.
  down           stops everything up started (by PID: engines, containerd, shims, containers,
                 registry, dnsmasq, balancer), unmounts what they left under the data roots, removes the
                 namespaces, veths, bridge, the iptables rules, data roots and run directories.
                 Idempotent: down twice, or without up, is fine. Exit 1 if something is left.
  status         the manager's DOCKER_HOST, each node's address, engine and swarm state (role,
                 status, availability, labels), the registry, the mirror and the balancer, whether
                 they answer.
                 Exit 0 when everything runs, 1 when something does not, 3 when the cluster is down
                 (also when its files are left but nothing of it runs).
  kill-node N    a lost machine: its network cut first (as with a power loss, its peers get no
                 reset, only silence), then SIGKILL to every process of node N at once (dockerd,
                 containerd, shims, docker-proxy, containers: its namespace and cgroups), then what
                 a power loss leaves: its mounts, run directory and network namespace gone (its
                 address no longer answers). Its data root (images, volumes, swarm state) stays.
                 Waits until a manager reports it down (bounded), and prints how long that took.
  revive-node N  boots node N again: namespace, veth, containerd, dockerd on the same data root;
                 waits until the swarm reports it Ready, and prints how long that took.
  balancer       rewrites the balancer's configuration (FRONT_NODES, ports) and starts or reloads it.
  push IMAGE...  copies images from this host's engine into the registry (saved here, loaded into
                 the manager, pushed from there as 172.31.210.1:5000/IMAGE), for tests.
  --help         this text

Settings (environment):
  NODES        number of nodes, 1-9 (3)
  MANAGERS     how many of them are managers, nodes 1..MANAGERS (1; 3 gives a Raft quorum that
               survives the loss of one)
  DB_NODE      the node labelled items.db=true, where the db and its volume belong (2, a worker;
               1 with NODES=1): not the only manager, which must survive the db node's loss to
               reschedule that node's api tasks.
  FRONT_NODES  the nodes labelled items.front=true and put behind the balancer ("all", or e.g. "1 2")
  BALANCER_PORT, BALANCER_TLS_PORT   the balancer on 127.0.0.1 (18720, 18721)
  HTTP_PORT, HTTPS_PORT   the fronts' host-mode ports on the nodes, which the balancer passes to,
               as deploy.sh reads them (the environment, else .env; 80, 443)
  MIRROR_HOSTS the Debian mirror's host names the nodes may reach (those of this host's plain-HTTP
               apt sources: deb.debian.org)
  SEED_IMAGES  images loaded from this host's engine into the manager at up, when present there
               (debian:bookworm-slim: deploy.sh builds on the manager; "" for none)

Then:  export DOCKER_HOST=unix:///run/items-cluster/node1.sock REGISTRY=172.31.210.1:5000
       scripts/deploy.sh --swarm      # places the stack by the node labels
       curl http://127.0.0.1:18720/items
The node engines trust the registry's address only; this host's engine is not touched (it does not
push there: push from the manager, as deploy.sh does with DOCKER_HOST set).
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
. "$here/lib/docker.sh"
# shellcheck source=scripts/lib/cluster.sh
. "$here/lib/cluster.sh"

# `balancer` applies these from the environment over what up saved.
ENV_FRONT_NODES=${FRONT_NODES:-}
ENV_HTTP_PORT=${HTTP_PORT:-}
ENV_HTTPS_PORT=${HTTPS_PORT:-}
NODES=${NODES:-3}
MANAGERS=${MANAGERS:-1}
DB_NODE=${DB_NODE:-$((NODES >= 2 ? 2 : 1))}
FRONT_NODES=${FRONT_NODES:-all}
BALANCER_PORT=${BALANCER_PORT:-18720}
BALANCER_TLS_PORT=${BALANCER_TLS_PORT:-18721}
SEED_IMAGES=${SEED_IMAGES-debian:bookworm-slim}
MIRROR_HOSTS=${MIRROR_HOSTS:-}
KEEP_FAILED=${KEEP_FAILED:-0}

STATE=$CL_RUN/cluster.env
BAL_DIR=$CL_RUN/balancer
REG_DIR=$CL_LIB/registry
LOG_DIR=$CL_LIB/logs

# ---- helpers --------------------------------------------------------------------------------------

# The cluster of the state loaded has no process left: no node process, registry, name server or
# balancer (an ended session or a boot that kept /run). Only then may up clean up after it.
nothing_runs() {
    local n
    for n in $(seq 1 "$CL_MAX_NODES"); do
        [[ -z $(node_pids "$n") ]] || return 1
    done
    [[ -z $(registry_pids)$(mirror_dns_pids)$(balancer_pids) ]]
}

need_root() { ((EUID == 0)) || die "cluster-sim.sh needs root (namespaces, bridge, iptables, dockerd)"; }

# One invocation at a time (an up racing a down would leave a mess). The lock is the script file
# itself: nothing to clean up after. The daemons started here must not inherit it (9<&-).
take_lock() {
    exec 9<"$0"
    flock -n 9 || die "another scripts/cluster-sim.sh is running"
}

ensure_tools() {
    ensure_packages ip:iproute2 ss:iproute2 iptables:iptables nsenter:util-linux unshare:util-linux \
        setpriv:util-linux flock:util-linux curl:curl hostname:hostname \
        dockerd:docker.io docker:docker.io containerd:containerd containerd-shim-runc-v2:containerd \
        runc:runc docker-registry:docker-registry nginx:nginx dnsmasq:dnsmasq-base \
        /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream
}

# The settings up saved (NODES, MANAGERS, ...), so that status, kill-node and down agree with it.
load_state() {
    [[ -r $STATE ]] || return 1
    local line
    while IFS= read -r line; do
        [[ $line =~ ^(NODES|MANAGERS|DB_NODE|FRONT_NODES|HTTP_PORT_NODES|HTTPS_PORT_NODES|BALANCER_PORT|BALANCER_TLS_PORT|MIRROR_HOSTS|CREATED_DIRS|RUN_NETNS_MOUNTED)=(.*)$ ]] &&
            printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
    done <"$STATE"
    return 0
}

# in_range VALUE MAX: VALUE is a node number from 1 to MAX.
in_range() { [[ $1 =~ ^[1-9]$ ]] && (($1 <= $2)); }

check_settings() {
    [[ $NODES =~ ^[1-9]$ ]] || die "NODES=$NODES: 1 to $CL_MAX_NODES"
    in_range "$MANAGERS" "$NODES" || die "MANAGERS=$MANAGERS: 1 to NODES ($NODES)"
    ((MANAGERS % 2 == 1)) || log "warning: MANAGERS=$MANAGERS is even: Raft tolerates no more failures than with $((MANAGERS - 1))"
    in_range "$DB_NODE" "$NODES" || die "DB_NODE=$DB_NODE: 1 to NODES ($NODES)"
    local n
    if [[ $FRONT_NODES != all ]]; then
        for n in $FRONT_NODES; do
            in_range "$n" "$NODES" || die "FRONT_NODES=$FRONT_NODES: 'all' or node numbers 1 to $NODES"
        done
    fi
    mirror_hosts >/dev/null
    for n in "$BALANCER_PORT" "$BALANCER_TLS_PORT" "$HTTP_PORT_NODES" "$HTTPS_PORT_NODES"; do
        if ! [[ $n =~ ^[1-9][0-9]{0,4}$ ]] || ((n > 65535)); then die "not a port number: $n"; fi
    done
}

front_nodes() {
    # shellcheck disable=SC2086 # a list of numbers, checked by check_settings
    if [[ $FRONT_NODES == all ]]; then seq 1 "$NODES"; else printf '%s\n' $FRONT_NODES; fi
}

ip2int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# True when PREFIX/LEN overlaps 172.31.210.0/24.
overlaps_cluster_net() {
    local p=${1%/*} len=24 m
    [[ $1 == */* ]] && len=${1#*/}
    m=$((len < 24 ? len : 24))
    ((m == 0)) && return 0
    (($(ip2int "$p") >> (32 - m) == $(ip2int "$CL_NET.0") >> (32 - m)))
}

# The pids of the live processes running EXE with TEXT in their command line: our registry and
# balancer, found by their own configuration file even when a pidfile is gone. (nginx rewrites its
# arguments into one string, "nginx: master process nginx -p ... -c FILE ...": a substring, then.)
pids_running() {
    local exe=$1 text=$2 d pid cmd
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        [[ $(readlink "$d/exe" 2>/dev/null) == "$exe" ]] || continue
        cmd=$( { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
        [[ $cmd == *"$text"* ]] && pid_alive "$pid" && echo "$pid"
    done
    return 0
}

# A pid read from FILE, if that process still runs and is EXE (a recycled pid is not ours).
pid_from_file() {
    local file=$1 exe=$2 pid
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
    echo "$pid"
}

# Unmounts every mount at or below DIR, deepest first (a busy one lazily).
umount_under() {
    local dir=$1 mp round
    local -a mps
    for round in 1 2 3 4 5; do
        mapfile -t mps < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
        ((${#mps[@]})) || return 0
        for mp in "${mps[@]}"; do
            mp=$(printf '%b' "$mp") # mountinfo escapes spaces as \040
            umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
        done
    done
    log "warning: mounts left under $dir: $(awk -v d="$dir" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | tr '\n' ' ')"
}

# The node's cgroups (--cgroup-parent /items-cluster-nodeN) in every hierarchy, v1 or v2.
node_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/items-cluster-node"$1" /sys/fs/cgroup/items-cluster-node"$1"; do
        [[ -d $d ]] && echo "$d"
    done
}

# Every live process of node N: those in its network namespace (dockerd, containerd, the shims,
# docker-proxy, host-network containers) and those in its cgroups (the containers).
node_pids() {
    local n=$1 ns ino link f pid cg
    ns=/run/netns/$(cl_netns "$1")
    local -A seen=()
    if [[ -e $ns ]]; then
        ino=$(stat -L -c %i "$ns")
        for f in /proc/[0-9]*/ns/net; do
            link=$(readlink "$f" 2>/dev/null) || continue
            [[ $link == "net:[$ino]" ]] || continue
            pid=${f#/proc/}
            seen[${pid%%/*}]=1
        done
    fi
    while read -r cg; do
        while read -r pid; do
            [[ -n $pid ]] && seen[$pid]=1
        done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done < <(node_cgroups "$n")
    unset "seen[$$]" "seen[$BASHPID]"
    for pid in "${!seen[@]}"; do
        pid_alive "$pid" && echo "$pid"
    done
    return 0
}

# The unix sockets node N listens on outside its own directories: containerd's shims put theirs in
# /run/containerd/s/ and dockerd one in /run/docker/libnetwork/, whatever their root. A killed
# process leaves its socket file; these are removed with the node. (/proc/net/unix lists only the
# sockets of the namespace it is read from: these are all the node's.)
node_foreign_sockets() {
    local ns
    ns=/run/netns/$(cl_netns "$1")
    [[ -e $ns ]] || return 0
    nsenter --net="$ns" ss -xlH 2>/dev/null | awk '{ print $5 }' |
        grep -E '^/run/(containerd/s|docker/libnetwork)/[^/]+$' || true
}

# Kept per node (another node's sockets are alive), beside the node's run directory, which a kill wipes.
remember_sockets() {
    [[ -d $CL_RUN ]] || return 0
    node_foreign_sockets "$1" >>"$CL_RUN/node$1.sockets" 2>/dev/null || true
}

remove_remembered_sockets() {
    local path list=$CL_RUN/node$1.sockets
    [[ -r $list ]] || return 0
    sort -u "$list" | while read -r path; do
        if [[ -S $path ]]; then rm -f "$path"; fi
    done
    rm -f "$list"
}

# Timing, in seconds with a tenth.
now_ms() { date +%s%3N; }
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

# ---- the network ----------------------------------------------------------------------------------

iptables_rule() { # ACTION CHAIN RULE...: with our comment
    local action=$1 chain=$2
    shift 2
    iptables -w "$action" "$chain" "$@" -m comment --comment "$CL_RULE_COMMENT"
}

make_bridge() {
    local dst
    ip link show "$CL_BRIDGE" >/dev/null 2>&1 &&
        die "the interface $CL_BRIDGE exists already: a cluster is up, or a failed one was left (scripts/cluster-sim.sh down)"
    # A route into 172.31.210.0/24 (a Docker network that took 172.31.0.0/16, a VPN) would make the
    # cluster's addresses ambiguous.
    while read -r dst _; do
        [[ $dst == default ]] && continue
        [[ $dst =~ ^[0-9.]+(/[0-9]+)?$ ]] || continue
        if overlaps_cluster_net "$dst"; then
            die "this host already routes $dst (ip route: $(ip -4 route show "$dst" | head -1)), which overlaps the cluster's $CL_NET.0/24"
        fi
    done < <(ip -4 route show table main)
    ip link add "$CL_BRIDGE" type bridge
    ip addr add "$CL_BRIDGE_ADDR/24" dev "$CL_BRIDGE"
    ip link set "$CL_BRIDGE" up
    # With br_netfilter, frames bridged between the node veths cross iptables' FORWARD chain, whose
    # policy Docker sets to DROP: without this the nodes could not reach each other.
    iptables_rule -C FORWARD -i "$CL_BRIDGE" -o "$CL_BRIDGE" -j ACCEPT 2>/dev/null ||
        iptables_rule -I FORWARD -i "$CL_BRIDGE" -o "$CL_BRIDGE" -j ACCEPT
    # The registry and the balancer's upstreams are on the host's side of the bridge: INPUT needs a
    # rule only where its policy is not ACCEPT.
    if [[ $(iptables -w -S INPUT | head -1) != "-P INPUT ACCEPT" ]]; then
        iptables_rule -C INPUT -i "$CL_BRIDGE" -j ACCEPT 2>/dev/null || iptables_rule -I INPUT -i "$CL_BRIDGE" -j ACCEPT
    fi
}

# The node's "machine": a namespace with loopback and one interface on the bridge, no default route.
make_node_net() {
    local n=$1 ns veth=itemscl-n$1
    ns=$(cl_netns "$n")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$CL_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(cl_node_addr "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
    # The package mirror (below): what the node's containers send to port 80 of the bridge address
    # goes to the mirror's port there. In the node's own namespace: it goes with the node.
    nsenter --net="/run/netns/$ns" iptables -w -t nat -A PREROUTING -d "$CL_BRIDGE_ADDR" -p tcp --dport 80 \
        -j DNAT --to-destination "$CL_BRIDGE_ADDR:$CL_MIRROR_PORT"
}

remove_node_net() {
    local ns
    ns=$(cl_netns "$1")
    if [[ -e /run/netns/$ns ]]; then
        ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null || true; rm -f "/run/netns/$ns"; }
    fi
    # The veth goes with the namespace; in case its peer was moved elsewhere:
    ip link del "itemscl-n$1" 2>/dev/null || true
}

# ---- the engines ----------------------------------------------------------------------------------

write_engine_config() {
    local n=$1 run=$CL_RUN/node$1 data=$CL_LIB/node$1
    mkdir -p "$run" "$data/containerd" "$LOG_DIR"
    chmod 700 "$run" "$data"
    # containerd of its own, not the host's: a dockerd given no --containerd uses the system's
    # /run/containerd/containerd.sock when it exists (Debian's docker.service does), and the shims
    # it starts would then live in the host's network namespace.
    cat >"$run/containerd.toml" <<EOF
version = 2
root = "$data/containerd/daemon"
state = "$run/containerd/daemon"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd/containerd.sock"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$data/containerd/opt"
EOF
    # Everything in a file of its own: /etc/docker/daemon.json (the host engine's) must not apply.
    cat >"$run/daemon.json" <<EOF
{
  "data-root": "$data",
  "exec-root": "$run/exec",
  "hosts": ["$(cl_node_host "$n")"],
  "pidfile": "$run/dockerd.pid",
  "containerd": "$run/containerd/containerd.sock",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/items-cluster-node$n",
  "insecure-registries": ["$CL_REGISTRY"],
  "dns": ["$CL_BRIDGE_ADDR"],
  "bip": "$CL_LOCAL_POOL.$((16 * n)).1/24",
  "default-address-pools": [{"base": "$CL_LOCAL_POOL.$((16 * n + 8)).0/21", "size": 24}],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"},
  "live-restore": false
}
EOF
}

# Runs COMMAND... detached inside node N's network namespace, with the node's hostname (a UTS
# namespace of its own: `docker node ls` then names the nodes). nsenter, not `ip netns exec`: that
# one also makes a mount namespace with its own /sys, which hides the cgroup hierarchies from
# dockerd. setsid, nsenter, unshare and sh all exec: $! is COMMAND's pid.
start_in_node() {
    local n=$1 logfile=$2
    shift 2
    # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
    setsid env -u DOCKER_HOST -u DOCKER_CONTEXT nsenter --net="/run/netns/$(cl_netns "$n")" -- \
        unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$(cl_netns "$n")" "$@" \
        >>"$logfile" 2>&1 </dev/null 9<&- &
    echo $!
}

start_containerd() {
    local n=$1 run=$CL_RUN/node$1 pid
    pid=$(start_in_node "$n" "$LOG_DIR/node$n-containerd.log" /usr/bin/containerd --config "$run/containerd.toml")
    echo "$pid" >"$run/containerd.pid"
}

start_dockerd() {
    local n=$1 run=$CL_RUN/node$1
    start_in_node "$n" "$LOG_DIR/node$n-dockerd.log" /usr/sbin/dockerd --config-file "$run/daemon.json" >/dev/null
}

wait_containerd() {
    local n=$1 run=$CL_RUN/node$1
    wait_until 30 "node$n's containerd" test -S "$run/containerd/containerd.sock" ||
        die "node$n: containerd did not start (see $LOG_DIR/node$n-containerd.log)"
}

wait_dockerd() {
    local n=$1
    wait_until 60 "node$n's dockerd" cl_docker "$n" version ||
        die "node$n: dockerd did not answer within 60 s (see $LOG_DIR/node$n-dockerd.log)"
    remember_sockets "$n"
}

boot_node() { # the namespace must exist
    write_engine_config "$1"
    start_containerd "$1"
}

# ---- killing a node -------------------------------------------------------------------------------

kill_node_processes() {
    local n=$1 round pids
    remember_sockets "$n"
    for ((round = 0; round < 50; round++)); do
        mapfile -t pids < <(node_pids "$n")
        ((${#pids[@]})) || return 0
        # All at once: nothing gets to stop cleanly, as with a power loss.
        kill -KILL "${pids[@]}" 2>/dev/null || true
        sleep 0.1
    done
    log "warning: node$n still has processes after 5 s: $(node_pids "$n" | tr '\n' ' ')"
    return 1
}

# What a power loss takes besides the processes: mounts, /run (the exec root, sockets), cgroups, the
# network. The data root stays, as a disk would.
wipe_node_runtime() {
    local n=$1 cg
    umount_under "$CL_LIB/node$n"
    umount_under "$CL_RUN/node$n"
    remove_remembered_sockets "$n"
    rm -rf "${CL_RUN:?}/node$n" "$(cl_node_sock "$n")"
    while read -r cg; do
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done < <(node_cgroups "$n")
    remove_node_net "$n"
}

# ---- the swarm ------------------------------------------------------------------------------------

# The first manager whose engine answers (empty if none).
live_manager() {
    local n
    for n in $(seq 1 "$MANAGERS"); do
        [[ $(cl_docker "$n" info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null) == true ]] && { echo "$n"; return 0; }
    done
    return 1
}

node_id() { cat "$CL_RUN/node$1.id" 2>/dev/null; }

# STATUS of node N as the manager M sees it: ready | down | unknown | disconnected...
node_status() {
    cl_docker "$1" node inspect -f '{{.Status.State}}' "$(node_id "$2")" 2>/dev/null || echo unknown
}

form_swarm() {
    local n token_worker token_manager role labels
    cl_docker 1 swarm init --advertise-addr "$(cl_node_addr 1)" --listen-addr "$(cl_node_addr 1):2377" \
        --default-addr-pool "$CL_SWARM_POOL" --default-addr-pool-mask-length 24 >/dev/null
    token_worker=$(cl_docker 1 swarm join-token -q worker)
    token_manager=$(cl_docker 1 swarm join-token -q manager)
    cl_docker 1 info --format '{{.Swarm.NodeID}}' >"$CL_RUN/node1.id"
    for n in $(seq 2 "$NODES"); do
        role=worker
        ((n <= MANAGERS)) && role=manager
        local token=$token_worker
        [[ $role == manager ]] && token=$token_manager
        cl_docker "$n" swarm join --token "$token" --advertise-addr "$(cl_node_addr "$n")" \
            --listen-addr "$(cl_node_addr "$n"):2377" "$(cl_node_addr 1):2377" >/dev/null ||
            die "node$n could not join the swarm as a $role (see $LOG_DIR/node$n-dockerd.log)"
        cl_docker "$n" info --format '{{.Swarm.NodeID}}' >"$CL_RUN/node$n.id"
    done
    wait_until 60 "every node Ready" all_ready || die "the swarm did not report all $NODES nodes Ready within 60 s"
    # Labels for placement (docs/scaling.md): the db on the node that holds its volume, a front on
    # every node behind the balancer.
    for n in $(seq 1 "$NODES"); do
        labels=()
        ((n == DB_NODE)) && labels+=(--label-add items.db=true)
        grep -qx "$n" <<<"$(front_nodes)" && labels+=(--label-add items.front=true)
        ((${#labels[@]})) && cl_docker 1 node update "${labels[@]}" "$(node_id "$n")" >/dev/null
    done
    return 0
}

all_ready() {
    local ready
    ready=$(cl_docker 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$') || return 1
    ((ready == NODES))
}

# ---- the registry ---------------------------------------------------------------------------------

start_registry() {
    local user=docker-registry pid
    getent passwd "$user" >/dev/null || user=nobody
    mkdir -p "$REG_DIR/data"
    cat >"$REG_DIR/config.yml" <<EOF
# The simulated cluster's registry (scripts/cluster-sim.sh): plain HTTP on the cluster bridge only.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $CL_REGISTRY
  secret: $(random_secret)
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    chown -R "$user:" "$REG_DIR/data"
    chmod 640 "$REG_DIR/config.yml"
    chgrp "$(id -gn "$user")" "$REG_DIR/config.yml"
    setsid setpriv --reuid "$user" --regid "$(id -g "$user")" --init-groups -- \
        /usr/bin/docker-registry serve "$REG_DIR/config.yml" >>"$LOG_DIR/registry.log" 2>&1 </dev/null 9<&- &
    pid=$!
    echo "$pid" >"$CL_RUN/registry.pid"
    wait_until 20 "the registry" registry_answers ||
        die "the registry did not answer on http://$CL_REGISTRY/v2/ (see $LOG_DIR/registry.log)"
}

registry_pids() { pids_running /usr/bin/docker-registry " $REG_DIR/config.yml"; }

registry_answers() { curl -fsS --max-time 2 -o /dev/null "http://$CL_REGISTRY/v2/"; }

stop_registry() {
    local pid
    for pid in $(registry_pids); do
        stop_pid "$pid" registry 5
    done
    rm -f "$CL_RUN/registry.pid"
}

# ---- the package mirror ---------------------------------------------------------------------------
# The nodes have no route out, as on a private cluster, yet deploy.sh builds the images on the
# manager, and the Dockerfiles install Debian packages. Such a cluster uses a local mirror or proxy;
# here the host is it: dnsmasq on the bridge answers the mirror's host names (those of this host's
# apt sources, plain HTTP) with the bridge address, and refuses every other name; each node sends
# what its containers address to port 80 there on to CL_MIRROR_PORT, where the balancer's nginx
# passes GET and HEAD for those host names, and nothing else, on to the mirror.

# The mirror's host names, one a line, checked: MIRROR_HOSTS (saved by up), else those of the base
# image's apt sources (scripts/base-image.lock's mirror and security_mirror) and of this host's
# plain-HTTP apt sources, from which scripts/build-base-image.sh makes the image's. (HTTPS sources
# cannot pass: the nginx here passes plain HTTP only.)
mirror_hosts() {
    local host list
    if [[ -n $MIRROR_HOSTS ]]; then
        list=$(tr ' ' '\n' <<<"$MIRROR_HOSTS")
    else
        list=$( {
            sed -n 's/^\(security_\)\{0,1\}mirror=//p' "$here/base-image.lock" 2>/dev/null
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
                grep -v '^[[:space:]]*#'
        } | grep -oE 'http://[A-Za-z0-9.-]+' | sed 's|^http://||') || true # (a missing file, no match)
    fi
    local -a hosts=()
    for host in $list; do
        # (dies in the caller's shell when called plainly, as check_settings does)
        [[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "not a host name: $host (MIRROR_HOSTS)"
        hosts+=("$host")
    done
    ((${#hosts[@]})) || return 0
    printf '%s\n' "${hosts[@]}" | sort -u
}

start_mirror_dns() {
    local host args=()
    while read -r host; do
        args+=("--address=/$host/$CL_BRIDGE_ADDR")
    done < <(mirror_hosts)
    ((${#args[@]})) || log "warning: no plain-HTTP apt source on this host (MIRROR_HOSTS): builds on the nodes cannot install packages"
    # No upstream server: a name that is not the mirror's gets no answer (REFUSED).
    setsid dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
        --bind-interfaces --listen-address="$CL_BRIDGE_ADDR" --port=53 --user=nobody \
        --pid-file="$CL_RUN/dnsmasq.pid" --log-facility=- "${args[@]}" \
        >>"$LOG_DIR/dnsmasq.log" 2>&1 </dev/null 9<&- &
    wait_until 10 "the mirror's name server" mirror_dns_pid >/dev/null ||
        die "dnsmasq did not start on $CL_BRIDGE_ADDR:53 (see $LOG_DIR/dnsmasq.log)"
}

mirror_dns_pid() { pid_from_file "$CL_RUN/dnsmasq.pid" /usr/sbin/dnsmasq; }
mirror_dns_pids() { pids_running /usr/sbin/dnsmasq "--pid-file=$CL_RUN/dnsmasq.pid"; }

stop_mirror_dns() {
    local pid
    for pid in $(mirror_dns_pids); do
        stop_pid "$pid" dnsmasq 5
    done
}

# ---- the balancer ---------------------------------------------------------------------------------

write_balancer_conf() {
    local n servers='' tls_servers='' tries host mirror_map='' resolver
    tries=$(front_nodes | wc -l)
    while read -r host; do
        mirror_map+="        $host 1;"$'\n'
    done < <(mirror_hosts)
    resolver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
    [[ $resolver == *:* ]] && resolver="[$resolver]"

    for n in $(front_nodes); do
        # Passive health checks: a node that refused or timed out a connection, or stayed silent
        # (below), is left out for fail_timeout, then tried again with live traffic.
        servers+="        server $(cl_node_addr "$n"):$HTTP_PORT_NODES max_fails=1 fail_timeout=10s;"$'\n'
        tls_servers+="        server $(cl_node_addr "$n"):$HTTPS_PORT_NODES max_fails=1 fail_timeout=10s;"$'\n'
    done
    mkdir -p "$BAL_DIR/tmp"
    chown www-data: "$BAL_DIR/tmp" 2>/dev/null || chown nobody: "$BAL_DIR/tmp"
    cat >"$BAL_DIR/nginx.conf" <<EOF
# The simulated cluster's outer load balancer (scripts/cluster-sim.sh), standing in for a cloud one:
# on this host's loopback, in front of the front tasks' host-mode ports on the nodes.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes 1;
pid $BAL_DIR/nginx.pid;
error_log $BAL_DIR/error.log warn;
user $(getent passwd www-data >/dev/null && echo www-data || echo nobody);
events { worker_connections 1024; }

http {
    access_log $BAL_DIR/access.log combined;
    client_body_temp_path $BAL_DIR/tmp/body;
    proxy_temp_path $BAL_DIR/tmp/proxy;
    fastcgi_temp_path $BAL_DIR/tmp/fastcgi;
    uwsgi_temp_path $BAL_DIR/tmp/uwsgi;
    scgi_temp_path $BAL_DIR/tmp/scgi;
    log_format balancer '\$remote_addr [\$time_local] "\$request" \$status upstream=\$upstream_addr (\$upstream_status) \$request_time';

    upstream items_fronts {
$servers    }
    server {
        listen 127.0.0.1:$BALANCER_PORT;
        access_log $BAL_DIR/access.log balancer;
        location / {
            # A connection per request, none kept idle: an idle connection to a node that was lost
            # would take the next request into silence, where a new one fails in the connect
            # timeout (and marks the node failed).
            proxy_pass http://items_fronts;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            # A lost node does not refuse, it stays silent: give up on it quickly.
            proxy_connect_timeout 1s;
            # The balancer deals with lost fronts, the fronts with lost api tasks (their own
            # retry). A live front answers within 21 s at worst (a 504): its fastcgi_read_timeout,
            # 10 s, and once more on the next api address, which it may still try up to 11 s in
            # (fastcgi_next_upstream_timeout). Silence for longer is a lost front: a GET is then
            # passed to another one. (A shorter wait would count a live front whose api task was
            # lost with the request as a failed front, and with max_fails=1 soon every front:
            # "no live upstreams".)
            proxy_read_timeout 25s;
            # The next front on a failed connection or that silence, never on an answer: a 502,
            # 503 or 504 is the front's or the API's own ("database unavailable"), for the client
            # to see. nginx passes only idempotent requests on once one was sent: a POST in flight
            # on a lost front gets a 504, its outcome unknown (never a 503, "not applied").
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries $tries;
            proxy_next_upstream_timeout 60s;
        }
    }

    # The nodes' package mirror (see "the package mirror" in scripts/cluster-sim.sh): GET and HEAD,
    # for the mirror's host names only, passed on to the mirror this host uses.
    map \$host \$items_mirror_host {
        default 0;
$mirror_map    }
    server {
        listen $CL_BRIDGE_ADDR:$CL_MIRROR_PORT;
        access_log $BAL_DIR/mirror.log balancer;
        resolver ${resolver:-127.0.0.1} valid=60s ipv6=off;
        resolver_timeout 5s;
        location / {
            limit_except GET { deny all; }
            if (\$items_mirror_host = 0) { return 403; }
            proxy_pass http://\$host\$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_connect_timeout 10s;
        }
    }
}

# HTTPS passes through untouched (TLS ends at the fronts, which hold the certificate).
stream {
    upstream items_fronts_tls {
$tls_servers    }
    server {
        listen 127.0.0.1:$BALANCER_TLS_PORT;
        proxy_pass items_fronts_tls;
        proxy_connect_timeout 1s;
        proxy_next_upstream on;
        proxy_next_upstream_tries $tries;
    }
}
EOF
    nginx -t -q -p "$BAL_DIR/" -c "$BAL_DIR/nginx.conf" -e "$BAL_DIR/error.log" ||
        die "the balancer's configuration is invalid ($BAL_DIR/nginx.conf)"
}

balancer_ports_free() {
    port_free "$BALANCER_PORT" || die "127.0.0.1:$BALANCER_PORT is taken: set BALANCER_PORT"
    port_free "$BALANCER_TLS_PORT" || die "127.0.0.1:$BALANCER_TLS_PORT is taken: set BALANCER_TLS_PORT"
}

balancer_pid() { pid_from_file "$BAL_DIR/nginx.pid" /usr/sbin/nginx; }
balancer_pids() { pids_running /usr/sbin/nginx " -c $BAL_DIR/nginx.conf"; }

start_balancer() {
    local pid
    write_balancer_conf
    if pid=$(balancer_pid); then
        kill -HUP "$pid"
        log "balancer reloaded (pid $pid)"
        return 0
    fi
    balancer_ports_free
    setsid nginx -p "$BAL_DIR/" -c "$BAL_DIR/nginx.conf" -e "$BAL_DIR/error.log" >>"$BAL_DIR/stderr.log" 2>&1 </dev/null 9<&- &
    wait_until 10 "the balancer" balancer_pid || die "the balancer did not start (see $BAL_DIR/error.log)"
}

stop_balancer() {
    local pid
    # The master; its workers follow it.
    for pid in $(balancer_pids); do
        stop_pid "$pid" balancer 5
    done
}

# ---- commands -------------------------------------------------------------------------------------

cmd_up() {
    local t0 t_engines t_swarm n d img created=()
    t0=$(now_ms)
    check_settings
    if [[ -e $STATE ]]; then
        # A subshell: the state's settings must not replace the ones this up was given.
        (load_state && nothing_runs) ||
            die "the cluster is up already (scripts/cluster-sim.sh status; down first to change it)"
        log "a cluster left by an ended session or boot, nothing of it running: removing what is left first"
        (cmd_down) || die "what is left of the earlier cluster could not be removed (above)"
    fi
    # Before anything is made: a taken port would otherwise fail the up at its last step.
    balancer_ports_free
    ensure_tools
    # What exists before we start, so that down removes only what we made.
    for d in /run/netns /run/containerd /run/containerd/s /run/docker /run/docker/libnetwork; do
        [[ -e $d ]] || created+=("$d")
    done
    trap 'up_failed $?' EXIT
    mkdir -p "$CL_RUN" "$CL_LIB" "$LOG_DIR"
    # 711: the registry and the balancer's workers run unprivileged and must reach their directories.
    chmod 711 "$CL_RUN" "$CL_LIB"
    {
        echo "# scripts/cluster-sim.sh up, $(date -u +%FT%TZ)"
        echo "NODES=$NODES"
        echo "MANAGERS=$MANAGERS"
        echo "DB_NODE=$DB_NODE"
        echo "FRONT_NODES=$FRONT_NODES"
        echo "HTTP_PORT_NODES=$HTTP_PORT_NODES"
        echo "HTTPS_PORT_NODES=$HTTPS_PORT_NODES"
        echo "BALANCER_PORT=$BALANCER_PORT"
        echo "BALANCER_TLS_PORT=$BALANCER_TLS_PORT"
        echo "MIRROR_HOSTS=$(mirror_hosts | tr '\n' ' ')"
        echo "CREATED_DIRS=${created[*]}"
        # iproute2 makes /run/netns a mount point the first time; down undoes that too.
        echo "RUN_NETNS_MOUNTED=$(awk '$5 == "/run/netns" { f = 1 } END { print f + 0 }' /proc/self/mountinfo)"
    } >"$STATE"

    log "network: bridge $CL_BRIDGE $CL_BRIDGE_ADDR/24, nodes $(cl_node_addr 1)..$(cl_node_addr "$NODES")"
    make_bridge
    for n in $(seq 1 "$NODES"); do
        make_node_net "$n"
    done
    log "registry on http://$CL_REGISTRY/"
    start_registry
    log "package mirror for the nodes: $(mirror_hosts | tr '\n' ' ')-> $CL_BRIDGE_ADDR (names), port 80 -> :$CL_MIRROR_PORT (nginx)"
    start_mirror_dns
    log "engines: containerd and dockerd in each of $NODES namespaces"
    for n in $(seq 1 "$NODES"); do boot_node "$n"; done
    for n in $(seq 1 "$NODES"); do wait_containerd "$n"; start_dockerd "$n"; done
    for n in $(seq 1 "$NODES"); do wait_dockerd "$n"; done
    t_engines=$(secs_since "$t0")
    log "engines answer ($t_engines s); forming the swarm ($MANAGERS manager(s))"
    form_swarm
    t_swarm=$(secs_since "$t0")
    log "swarm formed: $NODES nodes Ready ($t_swarm s)"
    for img in $SEED_IMAGES; do
        if env -u DOCKER_HOST -u DOCKER_CONTEXT docker image inspect "$img" >/dev/null 2>&1; then
            log "loading $img from this host's engine into the manager (deploy.sh builds there)"
            env -u DOCKER_HOST -u DOCKER_CONTEXT docker save "$img" | cl_docker 1 load -q >/dev/null
        else
            log "$img: not in this host's engine (or none answers): not loaded into the manager"
        fi
    done
    log "balancer on http://127.0.0.1:$BALANCER_PORT/ and 127.0.0.1:$BALANCER_TLS_PORT (TLS) -> front nodes $(front_nodes | tr '\n' ' ')"
    start_balancer
    trap - EXIT
    echo "UP_SECONDS=$(secs_since "$t0") ENGINES_SECONDS=$t_engines SWARM_SECONDS=$t_swarm" >>"$STATE"
    log "cluster up in $(secs_since "$t0") s"
    cat <<EOF

export DOCKER_HOST=$(cl_node_host 1)
export REGISTRY=$CL_REGISTRY
# then scripts/deploy.sh --swarm: the db on node$DB_NODE (items.db=true), a front on every node
# labelled items.front=true, behind http://127.0.0.1:$BALANCER_PORT/ (TLS: 127.0.0.1:$BALANCER_TLS_PORT)
EOF
}

up_failed() {
    local rc=$1
    trap - EXIT
    ((rc == 0)) && return 0
    if [[ $KEEP_FAILED == 1 ]]; then
        log "up failed; KEEP_FAILED=1: left as it is (scripts/cluster-sim.sh down removes it)"
    else
        log "up failed: tearing down what it made (KEEP_FAILED=1 keeps it)"
        cmd_down || true
    fi
    exit "$rc"
}

cmd_down() {
    local n d chain rule pid left=()
    load_state || true
    stop_balancer
    # Every node slot, not only NODES: a down must also clean a cluster whose state file is gone.
    for n in $(seq 1 "$CL_MAX_NODES"); do
        if [[ -e /run/netns/$(cl_netns "$n") || -d $CL_RUN/node$n || -d $CL_LIB/node$n ]] || [[ -n $(node_cgroups "$n") ]]; then
            kill_node_processes "$n" || true
            wipe_node_runtime "$n"
        fi
        ip link del "itemscl-n$n" 2>/dev/null || true
    done
    stop_registry
    stop_mirror_dns
    ip link del "$CL_BRIDGE" 2>/dev/null || true
    for chain in FORWARD INPUT; do
        while read -r rule; do
            # shellcheck disable=SC2086 # the rule as iptables -S printed it, word by word
            iptables -w -D ${rule#-A } || break
        done < <(iptables -w -S "$chain" 2>/dev/null | grep -F -- "--comment $CL_RULE_COMMENT")
    done
    umount_under "$CL_LIB"
    umount_under "$CL_RUN"
    rm -rf "${CL_LIB:?}" "${CL_RUN:?}"
    # iproute2 made /run/netns a mount point for our namespaces: undone when it was not one before
    # and no other namespace is there now.
    if [[ ${RUN_NETNS_MOUNTED:-1} == 0 ]] && [[ -d /run/netns ]] && [[ -z $(ls -A /run/netns) ]]; then
        umount_under /run/netns
    fi
    # The directories up found missing, deepest first, if nothing else uses them now.
    # shellcheck disable=SC2086 # a list of paths without spaces, written by up
    for d in $(printf '%s\n' ${CREATED_DIRS:-} | sort -r); do
        rmdir "$d" 2>/dev/null || true
    done
    # What is left, said plainly.
    [[ -n $(cl_nodes_up) ]] && left+=("namespaces: $(cl_nodes_up | tr '\n' ' ')")
    ip link show "$CL_BRIDGE" >/dev/null 2>&1 && left+=("bridge $CL_BRIDGE")
    iptables -w -S 2>/dev/null | grep -qF -- "$CL_RULE_COMMENT" && left+=("iptables rules")
    grep -qE " ($CL_LIB|$CL_RUN)[ /]" /proc/self/mountinfo && left+=("mounts")
    for n in $(seq 1 "$CL_MAX_NODES"); do
        [[ -n $(node_cgroups "$n") ]] && left+=("cgroups of node$n")
    done
    for pid in $(registry_pids) $(balancer_pids) $(mirror_dns_pids); do
        left+=("process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))")
    done
    if ((${#left[@]})); then
        log "down: left behind: ${left[*]}"
        return 1
    fi
    log "down: nothing of the cluster is left"
}

cmd_status() {
    local n mgr addr engine swarm pid ver rc=0 code line id
    if ! load_state; then
        echo "cluster: down (no $STATE)"
        [[ -n $(cl_nodes_up) ]] && echo "  but namespaces are left: $(cl_nodes_up | tr '\n' ' ') (scripts/cluster-sim.sh down)"
        return 3
    fi
    if nothing_runs; then
        echo "cluster: down (left by an ended session or boot: nothing of it runs; scripts/cluster-sim.sh down"
        echo "  removes what is left, up does so first)"
        return 3
    fi
    mgr=$(live_manager) || mgr=
    echo "cluster: $NODES nodes, $MANAGERS manager(s), up since $(sed -n 's/^# scripts\/cluster-sim.sh up, //p' "$STATE")$(sed -n 's/^UP_SECONDS=\([^ ]*\).*/ (up took \1 s)/p' "$STATE")"
    if [[ -n $mgr ]]; then
        echo "DOCKER_HOST=$(cl_node_host "$mgr")   (node$mgr, a manager that answers)"
    else
        echo "DOCKER_HOST: no manager answers"
        rc=1
    fi
    printf '%-6s %-14s %-30s %s\n' node address engine swarm
    for n in $(seq 1 "$NODES"); do
        addr=$(cl_node_addr "$n")
        if [[ ! -e /run/netns/$(cl_netns "$n") ]]; then
            engine="off (killed)"
            rc=1
        elif pid=$(pid_from_file "$CL_RUN/node$n/dockerd.pid" /usr/sbin/dockerd); then
            if ver=$(cl_docker "$n" version -f '{{.Server.Version}}' 2>/dev/null); then
                engine="up $ver (pid $pid)"
            else
                engine="not answering (pid $pid)"
                rc=1
            fi
        else
            engine="dockerd not running"
            rc=1
        fi
        swarm="(no manager answers to say)"
        id=$(node_id "$n")
        if [[ -n $mgr && -n $id ]]; then
            # shellcheck disable=SC2016 # a Go template
            line=$(cl_docker "$mgr" node inspect -f \
                '{{.Spec.Role}} {{.Status.State}} {{.Spec.Availability}}{{with .ManagerStatus}} {{if .Leader}}leader{{else}}{{.Reachability}}{{end}}{{end}} labels:{{range $k, $v := .Spec.Labels}} {{$k}}={{$v}}{{end}}' \
                "$id" 2>/dev/null) || line="not in the swarm"
            swarm=$line
            [[ $line == *" ready "* ]] || rc=1
        fi
        printf '%-6s %-14s %-30s %s\n' "node$n" "$addr" "$engine" "$swarm"
    done
    code=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "http://$CL_REGISTRY/v2/" 2>/dev/null) || code=000
    if [[ $code == 200 ]]; then
        echo "REGISTRY=$CL_REGISTRY   answers (GET /v2/: 200)"
    else
        echo "REGISTRY=$CL_REGISTRY   does not answer (GET /v2/: $code)"
        rc=1
    fi
    if pid=$(mirror_dns_pid); then
        echo "mirror: $(mirror_hosts | tr '\n' ' ')for the nodes' builds, through $CL_BRIDGE_ADDR (dnsmasq pid $pid, nginx :$CL_MIRROR_PORT)"
    else
        echo "mirror: its name server (dnsmasq) is not running"
        rc=1
    fi
    if pid=$(balancer_pid); then
        echo "balancer: http://127.0.0.1:$BALANCER_PORT/ and 127.0.0.1:$BALANCER_TLS_PORT (TLS) -> $(front_nodes | while read -r n; do printf '%s ' "$(cl_node_addr "$n"):$HTTP_PORT_NODES"; done)(pid $pid)"
    else
        echo "balancer: not running (scripts/cluster-sim.sh balancer)"
        rc=1
    fi
    return "$rc"
}

node_arg() {
    in_range "${1:-}" "$NODES" || die "a node number from 1 to $NODES is needed"
}

cmd_kill_node() {
    local n=$1 t0 mgr
    node_arg "$n"
    [[ -e /run/netns/$(cl_netns "$n") ]] || die "node$n is not running (revive-node $n)"
    t0=$(now_ms)
    # Silence first: killed processes would otherwise reset their peers' connections on the way out,
    # which no lost machine does.
    ip link set "itemscl-n$n" down 2>/dev/null || true
    kill_node_processes "$n" || die "node$n: some processes survived SIGKILL"
    wipe_node_runtime "$n"
    log "node$n killed: its processes, mounts, run directory and network are gone ($(secs_since "$t0") s); data root kept"
    if mgr=$(live_manager); then
        if wait_until 60 "a manager to report node$n down" node_is_down "$mgr" "$n"; then
            log "node$n reported down by the swarm $(secs_since "$t0") s after the kill (manager node$mgr)"
        else
            log "node$n: no manager reported it down within 60 s"
        fi
    else
        log "no manager answers any more: the swarm has no quorum until the manager(s) come back"
    fi
}

node_is_down() { [[ $(node_status "$1" "$2") == down ]]; }

cmd_revive_node() {
    local n=$1 t0 mgr
    node_arg "$n"
    if [[ -e /run/netns/$(cl_netns "$n") ]]; then
        pid_from_file "$CL_RUN/node$n/dockerd.pid" /usr/sbin/dockerd >/dev/null &&
            { log "node$n runs already"; return 0; }
        # Half-dead (dockerd crashed on its own): kill what is left, as a reboot would.
        kill_node_processes "$n" || true
        wipe_node_runtime "$n"
    fi
    t0=$(now_ms)
    make_node_net "$n"
    boot_node "$n"
    wait_containerd "$n"
    start_dockerd "$n"
    wait_dockerd "$n"
    log "node$n: engine answers ($(secs_since "$t0") s)"
    wait_until 90 "node$n to rejoin the swarm" node_rejoined "$n" ||
        die "node$n did not come back Ready within 90 s (see $LOG_DIR/node$n-dockerd.log)"
    mgr=$(live_manager)
    log "node$n back in the swarm, Ready (manager node$mgr) $(secs_since "$t0") s after boot"
}

node_rejoined() {
    local mgr
    [[ $(cl_docker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) == active ]] || return 1
    mgr=$(live_manager) || return 1
    [[ $(node_status "$mgr" "$1") == ready ]]
}

cmd_push() {
    local img ref
    (($#)) || die "push: name the images (as this host's engine knows them)"
    for img in "$@"; do
        ref=$CL_REGISTRY/${img#*/}
        [[ $ref == *:* ]] || ref+=:latest
        env -u DOCKER_HOST -u DOCKER_CONTEXT docker image inspect "$img" >/dev/null 2>&1 ||
            die "push: $img is not in this host's engine"
        env -u DOCKER_HOST -u DOCKER_CONTEXT docker save "$img" | cl_docker 1 load -q >/dev/null
        cl_docker 1 tag "$img" "$ref"
        cl_docker 1 push -q "$ref" >/dev/null
        echo "$ref"
    done
}

# ---- main -----------------------------------------------------------------------------------------

cmd=${1:-}
case $cmd in
    --help | -h | help) usage; exit 0 ;;
    '') usage >&2; exit 2 ;;
esac
shift
need_root
# The fronts' ports as deploy.sh reads HTTP_PORT/HTTPS_PORT (environment, else .env).
HTTP_PORT_NODES=$(dk_setting HTTP_PORT 80)
HTTPS_PORT_NODES=$(dk_setting HTTPS_PORT 443)
case $cmd in
    up)
        (($# == 0)) || die "up takes no argument (settings come from the environment: --help)"
        take_lock
        cmd_up
        ;;
    down)
        take_lock
        cmd_down
        ;;
    status)
        cmd_status
        ;;
    kill-node)
        take_lock
        load_state || die "the cluster is not up"
        cmd_kill_node "${1:-}"
        ;;
    revive-node)
        take_lock
        load_state || die "the cluster is not up"
        cmd_revive_node "${1:-}"
        ;;
    balancer)
        take_lock
        load_state || die "the cluster is not up"
        FRONT_NODES=${ENV_FRONT_NODES:-$FRONT_NODES}
        HTTP_PORT_NODES=${ENV_HTTP_PORT:-$HTTP_PORT_NODES}
        HTTPS_PORT_NODES=${ENV_HTTPS_PORT:-$HTTPS_PORT_NODES}
        check_settings
        sed -i -e "s/^FRONT_NODES=.*/FRONT_NODES=$FRONT_NODES/" -e "s/^HTTP_PORT_NODES=.*/HTTP_PORT_NODES=$HTTP_PORT_NODES/" \
            -e "s/^HTTPS_PORT_NODES=.*/HTTPS_PORT_NODES=$HTTPS_PORT_NODES/" "$STATE"
        start_balancer
        ;;
    push)
        take_lock
        load_state || die "the cluster is not up"
        cmd_push "$@"
        ;;
    *) die "unknown command: $cmd (see --help)" ;;
esac
