# shellcheck shell=bash
# Shared helpers for the Docker tier: sourced by scripts/deploy.sh, scripts/build-base-image.sh,
# scripts/backup.sh, scripts/restore.sh, ctest/compose/test_compose.sh and ctest/swarm/test_swarm.sh.
# Not executable on its own.
#
#   dk_engine_running              true when a Docker engine answers
#   dk_ensure_engine               install docker.io (+ docker-compose) from Debian and start dockerd when none runs
#   dk_engine_or_skip              for the end-to-end tests: an engine (and python3), or "SKIP: reason"
#                                  and exit 77 (skipped)
#   dk_detect_compose              sets the array COMPOSE to `docker compose` (v2) or `docker-compose` (1.29)
#   dk_compose ARGS...             runs compose with the project's file and name
#   dk_ensure_base_image           makes sure debian:bookworm-slim exists: pull (by the digest in
#                                  scripts/base-image.lock when it has one), else build it offline
#   dk_wait_healthy TIMEOUT SVC... waits (bounded, polling) until every service's container is healthy
#   dk_swarm_state                 inactive | manager | worker | pending | error (this engine's swarm role)
#   dk_swarm_init                  creates a single-node swarm (SWARM_ADVERTISE_ADDR, default 127.0.0.1)
#   dk_swarm_placement             exports the placement settings (DB_PLACEMENT, FRONT_MODE, ...) that
#                                  are unset, from the swarm's node labels and size; says what it chose
#   dk_front_addrs STACK           the addresses of the nodes that run the stack's front tasks
#   dk_stack_file STACK [OPT...]   prints the stack file: compose.yaml + compose.swarm.yaml, translated
#   dk_stack_exists STACK          true when the swarm has services of stack STACK
#   dk_wait_stack TIMEOUT STACK    waits (bounded, polling) until every service of STACK runs all its
#                                  replicas, healthy, with no update in progress
#   dk_wait_stack_gone TIMEOUT STACK  waits until no container or network of STACK is left
#
# Conventions: every function prints its progress on stderr with the `[docker]` prefix; nothing here
# sleeps a fixed time except between polls of a condition that has a deadline.

DK_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DK_ROOT=$(cd "$DK_LIB_DIR/../.." && pwd)
DK_BASE_IMAGE=${DK_BASE_IMAGE:-debian:bookworm-slim}
DK_DOCKERD_LOG=${DK_DOCKERD_LOG:-/var/log/dockerd.log}
COMPOSE_FILE_PATH=${COMPOSE_FILE_PATH:-$DK_ROOT/compose.yaml}
SWARM_FILE_PATH=${SWARM_FILE_PATH:-$DK_ROOT/compose.swarm.yaml}
COMPOSE=()

# VALUE of a setting as compose reads it: the environment first, then the repository's .env
# (KEY=VALUE lines, never evaluated), then DEFAULT.
# usage: dk_setting NAME [DEFAULT]
dk_setting() {
    local name=$1 default=${2:-} line value=
    if [[ -n ${!name:-} ]]; then
        printf '%s' "${!name}"
        return
    fi
    if [[ -f $DK_ROOT/.env ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line == "$name="* ]] || continue
            value=${line#"$name="}
            value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
        done <"$DK_ROOT/.env"
    fi
    printf '%s' "${value:-$default}"
}

# The secrets directory as compose reads SECRETS_DIR (default ./secrets), absolute: a relative one
# is relative to the checkout, as compose.yaml's `file:` paths are.
dk_secrets_dir() {
    local dir
    dir=$(dk_setting SECRETS_DIR ./secrets)
    [[ $dir == /* ]] || dir=$DK_ROOT/${dir#./}
    printf '%s' "$dir"
}

# The compose project: what a plain `docker compose` in the repository uses too (.env).
COMPOSE_PROJECT=$(dk_setting COMPOSE_PROJECT_NAME items)

dk_log() { printf '[docker] %s\n' "$*" >&2; }
dk_die() { printf '[docker] error: %s\n' "$*" >&2; exit 1; }

dk_engine_running() { docker info >/dev/null 2>&1; }

# Poll until `docker info` answers or the deadline (seconds) passes.
dk_wait_engine() {
    local deadline=$((SECONDS + ${1:-60}))
    until dk_engine_running; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

dk_is_debian() { [[ -r /etc/debian_version ]]; }

# The end-to-end tests' start: python3 and a Docker engine (as root on Debian, one is installed
# and started), or a line "SKIP: reason" and exit 77, the test runners' "skipped" (scripts/test.sh
# shows the reason, and fails the suite under CI).
dk_engine_or_skip() {
    local why=
    command -v python3 >/dev/null 2>&1 || dk_skip "python3 is not installed"
    dk_engine_running && return 0
    if [[ $(id -u) -ne 0 ]] || ! dk_is_debian; then
        dk_skip "no Docker engine answers ($(dk_engine_error)), and only root on Debian can install and start one"
    fi
    # Its progress stays in the output; its last error is the reason.
    why=$( (dk_ensure_engine) 2>&1 | {
        while IFS= read -r line || [[ -n $line ]]; do
            printf '%s\n' "$line" >&2
            [[ $line != '[docker] error: '* ]] || why=${line#'[docker] error: '}
        done
        printf '%s' "$why"
    }) || true
    dk_engine_running ||
        dk_skip "no Docker engine answers, and none could be installed and started here: ${why:-$(dk_engine_error)}"
}

dk_skip() {
    echo "SKIP: $*"
    exit 77
}

# Why `docker info` fails, in one line.
dk_engine_error() {
    if ! command -v docker >/dev/null 2>&1; then
        echo "the docker command is not installed"
        return
    fi
    docker info 2>&1 >/dev/null | sed '/^[[:space:]]*$/d' | tail -n 1 || true
}

# Debian packages needed for the Docker tier; only those missing are installed.
dk_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    dk_log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

dk_ensure_engine() {
    if dk_engine_running; then
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 && [[ ! -x /usr/sbin/dockerd ]]; then
        if [[ $(id -u) -eq 0 ]] && dk_is_debian; then
            dk_apt_install docker.io
        else
            dk_die "no Docker engine: install Docker (Debian: apt-get install docker.io docker-compose) or run this script as root on Debian"
        fi
    fi
    if ! command -v docker >/dev/null 2>&1; then
        dk_die "the docker CLI is missing (Debian package docker.io)"
    fi
    if [[ $(id -u) -ne 0 ]]; then
        dk_die "the Docker engine is not running and only root can start it (or your user cannot reach /var/run/docker.sock)"
    fi
    if [[ "$(ps -o comm= -p 1 2>/dev/null)" == systemd ]]; then
        dk_log "starting docker.service (systemd)"
        systemctl start docker.service
    else
        # No systemd as PID 1 (container, CI sandbox): start the daemon directly, detached, logging to a file.
        local dockerd_bin
        dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
        dk_log "starting $dockerd_bin in the background (log: $DK_DOCKERD_LOG)"
        setsid nohup "$dockerd_bin" >>"$DK_DOCKERD_LOG" 2>&1 </dev/null &
        dk_log "dockerd pid $!"
    fi
    dk_wait_engine 60 || dk_die "the Docker engine did not answer within 60 s; see $DK_DOCKERD_LOG"
    dk_log "Docker engine ready: $(docker version -f '{{.Server.Version}}' 2>/dev/null)"
}

# COMPOSE=(docker compose) when the v2 plugin works, else COMPOSE=(docker-compose) (Debian's 1.29).
# COMPOSE_IMPL=docker-compose|docker-compose-plugin, overrides detection (for tests of both paths).
dk_detect_compose() {
    local want=${COMPOSE_IMPL:-}
    if [[ $want != docker-compose ]] && docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif [[ $want != docker-compose-plugin ]] && command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    elif [[ $(id -u) -eq 0 ]] && dk_is_debian && [[ -z $want ]]; then
        dk_apt_install docker-compose
        COMPOSE=(docker-compose)
    else
        dk_die "neither 'docker compose' (v2) nor 'docker-compose' (1.29) is available"
    fi
    dk_log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"
}

dk_compose() {
    ((${#COMPOSE[@]})) || dk_detect_compose
    "${COMPOSE[@]}" --project-directory "$DK_ROOT" -f "$COMPOSE_FILE_PATH" -p "$COMPOSE_PROJECT" "$@"
}

# The container id of a compose service ('' when it has none).
dk_cid() { dk_compose ps -q "$1" 2>/dev/null | head -n1; }

# dk_db_container SWARM STACK: the running db container, this node's task of STACK's db service
# (SWARM 1) or the compose project's (SWARM 0; dk_detect_compose first). Empty when none runs.
dk_db_container() {
    if (($1)); then
        docker ps -q --filter "label=com.docker.swarm.service.name=${2}_db" | head -n1
    else
        dk_cid db
    fi
}

# The base image, pinned by scripts/base-image.lock (BASE_IMAGE_LOCK): its image= is the ID of the
# reproducible offline build (scripts/build-base-image.sh), its pull= (when filled in) the official
# image by digest. Present: said whether it is the pinned one (a mismatch is logged, not fatal: an
# image pulled by tag is legitimate, only not pinned). Missing: pull= by digest, else by tag, else
# the offline build, which fails on drift from the lock.
dk_ensure_base_image() {
    local lock=${BASE_IMAGE_LOCK:-$DK_ROOT/scripts/base-image.lock} pull='' want='' have
    if [[ -r $lock && $DK_BASE_IMAGE == debian:bookworm-slim ]]; then
        pull=$(sed -n 's/^pull=//p' "$lock" | head -n1)
        want=$(sed -n 's/^image=//p' "$lock" | head -n1)
    fi
    if have=$(docker image inspect -f '{{.Id}}' "$DK_BASE_IMAGE" 2>/dev/null); then
        if [[ -n $want && $have == "$want" ]]; then
            dk_log "base image $DK_BASE_IMAGE present: the build $lock pins"
        elif [[ -n $pull ]] && docker image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "$DK_BASE_IMAGE" | grep -qF "${pull#*@}"; then
            dk_log "base image $DK_BASE_IMAGE present: the pull $lock pins"
        else
            dk_log "base image $DK_BASE_IMAGE present (${have:7:12}), not the one ${lock##*/} pins${want:+ (${want:7:12})}: pulled by tag or built from another mirror state (scripts/build-base-image.sh --check; --force rebuilds it)"
        fi
        return 0
    fi
    if [[ -n $pull ]]; then
        dk_log "pulling $pull (pinned by $lock)"
        if timeout 120 docker pull "$pull" >&2 && docker tag "$pull" "$DK_BASE_IMAGE"; then
            return 0
        fi
    else
        dk_log "pulling $DK_BASE_IMAGE (by tag: ${lock##*/} pins no pull digest)"
        if timeout 120 docker pull "$DK_BASE_IMAGE" >&2; then
            return 0
        fi
    fi
    dk_log "pull failed (no registry reachable?): building $DK_BASE_IMAGE from the Debian mirror"
    "$DK_ROOT/scripts/build-base-image.sh"
}

# dk_health CID -> healthy|unhealthy|starting|none|exited...
dk_health() {
    docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo missing
}

# dk_wait_healthy TIMEOUT SERVICE... : returns 0 once each service's container reports healthy; 1 on
# timeout or as soon as a container has exited or turned unhealthy (the first failing service is left in DK_FAILED).
DK_FAILED=
# shellcheck disable=SC2034 # DK_FAILED is read by the scripts that source this file
dk_wait_healthy() {
    local timeout=$1 svc cid state pending pending_state
    shift
    local deadline=$((SECONDS + timeout))
    DK_FAILED=
    while :; do
        pending=
        for svc in "$@"; do
            cid=$(dk_cid "$svc")
            state=missing
            [[ -n $cid ]] && state=$(dk_health "$cid")
            case $state in
                healthy) ;;
                exited | dead | unhealthy | restarting)
                    # unhealthy: its healthcheck failed `retries` times after the start period
                    DK_FAILED=$svc
                    dk_log "service $svc: $state"
                    return 1
                    ;;
                *) [[ -n $pending ]] || { pending=$svc; pending_state=$state; } ;;
            esac
        done
        [[ -z $pending ]] && return 0
        if ((SECONDS >= deadline)); then
            DK_FAILED=$pending
            dk_log "timeout after ${timeout}s: service $pending is $pending_state"
            return 1
        fi
        sleep 1
    done
}

# ---- Docker Swarm ---------------------------------------------------------------------------------

# inactive | manager | worker | pending | locked | error
dk_swarm_state() {
    local state control
    state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) || { echo error; return; }
    control=$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)
    case $state in
        active) [[ $control == true ]] && echo manager || echo worker ;;
        '') echo error ;;
        *) echo "$state" ;;
    esac
}

# The bridge a swarm gives its containers for traffic out of the overlays. Left to `docker swarm
# init`, it takes the next /16 of Docker's local pool, which may be 172.31.0.0/16: the address space
# of the compose deployment's default subnets (EDGE_SUBNET, DATA_SUBNET), whose networks then fail
# with "Pool overlaps". Made here first (as Docker's documentation describes for a custom subnet) on
# the first free of a few other /16s; when none is free, swarm init chooses.
dk_ensure_gwbridge() {
    local subnet
    docker network inspect docker_gwbridge >/dev/null 2>&1 && return 0
    for subnet in 172.30.0.0/16 172.29.0.0/16 172.28.0.0/16; do
        if docker network create --subnet "$subnet" \
            --opt com.docker.network.bridge.name=docker_gwbridge \
            --opt com.docker.network.bridge.enable_icc=false \
            --opt com.docker.network.bridge.enable_ip_masquerade=true \
            docker_gwbridge >/dev/null 2>&1; then
            dk_log "docker_gwbridge made on $subnet"
            return 0
        fi
    done
    dk_log "no free subnet of 172.28-30.0.0/16 for docker_gwbridge: swarm init chooses one"
}

# A single-node swarm. SWARM_ADVERTISE_ADDR unset: advertised and listening on 127.0.0.1 only (no
# other node can join, port 2377 stays closed to the network); set it to the address other nodes
# will reach to build a cluster from this node later.
dk_swarm_init() {
    local addr=${SWARM_ADVERTISE_ADDR:-}
    dk_ensure_gwbridge
    if [[ -z $addr ]]; then
        dk_log "initialising a single-node swarm (advertised on 127.0.0.1: no other node can join)"
        docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >&2
    else
        dk_log "initialising a swarm advertised on $addr"
        docker swarm init --advertise-addr "$addr" >&2
    fi
}

# An interpreter for scripts/lib/stackfile.py: compose 1.29 prints YAML, which needs python3-yaml (a
# dependency of Debian's docker-compose, so present with it); compose v2 prints JSON (stdlib).
dk_stack_python() {
    local py
    if [[ ${COMPOSE[*]} == "docker compose" ]]; then
        command -v python3 && return 0
    fi
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    if [[ $(id -u) -eq 0 ]] && dk_is_debian; then
        dk_apt_install python3 python3-yaml
        echo /usr/bin/python3
        return 0
    fi
    dk_die "python3 with the yaml module is needed to write the stack file (Debian: apt-get install python3-yaml)"
}

# True when this kernel can do what an encrypted overlay needs (IPsec ESP with AES-GCM): tried on a
# throwaway network namespace. True too when it cannot be tried (not root): nothing is turned off then.
dk_kernel_has_esp() {
    local out
    out=$(unshare -n ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode transport \
        aead 'rfc4106(gcm(aes))' 0x0000000000000000000000000000000000000000 128 2>&1) && return 0
    # unshare refused (not root) or no ip command: cannot tell. Anything else is the kernel's no
    # ("Requested AEAD algorithm not found", "Protocol not supported", ...).
    [[ $out == *"unshare"* || $out == *"ip: not found"* || $out == *"No such file"* ]]
}

# The placement of the Swarm stack (compose.swarm.yaml's knobs), for each one neither the
# environment nor .env sets, from what the swarm looks like (docs/scaling.md "Placement"):
#   DB_PLACEMENT        node.labels.items.db == true when a node carries that label (the one holding
#                       the db's volume), else node.role == manager
#   FRONT_MODE, FRONT_PLACEMENT  global on node.labels.items.front == true when a node carries that
#                       label (a front on each, behind the outer load balancer), else replicated
#                       (FRONT_REPLICAS) on any node
#   API_MAX_PER_NODE    0 (no limit) on a single node; else ceil(API_REPLICAS / (active nodes - 1)),
#                       so that every replica still has a place when one node is lost
#   OVERLAY_ENCRYPTION  on (edge and data are encrypted overlays, IPsec between nodes); auto, the
#                       default, turns it off, saying so, only where it is known not to work: a swarm
#                       of several nodes, one of which is this machine (DOCKER_HOST a unix socket:
#                       the engine runs on this kernel, as the simulated cluster's all do), and
#                       this kernel without ESP, whose tasks then could not talk to other nodes'
dk_swarm_placement() {
    local nodes labels active replicas encryption chose=()
    # One listing of the nodes: "ID availability" a line (none outside a swarm: one node then).
    nodes=$(docker node ls --format '{{.ID}} {{.Availability}}' 2>/dev/null) || nodes=
    active=$(grep -c ' Active$' <<<"$nodes") || active=1
    # Every label of every node, one a line (not one line a node: a label first on its line would
    # have no space before it).
    # shellcheck disable=SC2016 # a Go template
    labels=$(awk '{ print $1 }' <<<"$nodes" |
        xargs -r docker node inspect -f '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' 2>/dev/null) || labels=
    if [[ -z $(dk_setting DB_PLACEMENT) ]]; then
        if grep -qx 'items.db=true' <<<"$labels"; then
            export DB_PLACEMENT='node.labels.items.db == true'
        else
            export DB_PLACEMENT='node.role == manager'
        fi
        chose+=("db on $DB_PLACEMENT")
    fi
    if [[ -z $(dk_setting FRONT_MODE) && -z $(dk_setting FRONT_PLACEMENT) ]]; then
        if grep -qx 'items.front=true' <<<"$labels"; then
            export FRONT_MODE=global FRONT_PLACEMENT='node.labels.items.front == true'
            chose+=("a front on every node with items.front=true")
        else
            export FRONT_MODE=replicated
        fi
    fi
    if [[ -z $(dk_setting API_MAX_PER_NODE) ]]; then
        replicas=$(dk_setting API_REPLICAS 3)
        if ((active <= 1)); then
            export API_MAX_PER_NODE=0
        else
            export API_MAX_PER_NODE=$(((replicas + active - 2) / (active - 1)))
            chose+=("at most $API_MAX_PER_NODE api replica(s) a node")
        fi
    fi
    encryption=$(dk_setting OVERLAY_ENCRYPTION auto)
    case $encryption in
        on | off) export OVERLAY_ENCRYPTION=$encryption ;;
        auto)
            export OVERLAY_ENCRYPTION=on
            if ((active > 1)) && [[ ${DOCKER_HOST:-unix://} == unix://* ]] && ! dk_kernel_has_esp; then
                export OVERLAY_ENCRYPTION=off
                dk_log "warning: this machine runs a node of the swarm (DOCKER_HOST is a unix socket) and its kernel has no IPsec ESP (CONFIG_INET_ESP, gcm(aes)): an encrypted overlay would carry no traffic between its tasks and other nodes'. The overlays edge and data are NOT encrypted (OVERLAY_ENCRYPTION=auto; on forces encryption, off says it is meant)"
            fi
            ;;
        *) dk_die "OVERLAY_ENCRYPTION=$encryption: expected auto (the default), on or off" ;;
    esac
    chose+=("overlay encryption $OVERLAY_ENCRYPTION")
    dk_log "placement ($active active node(s)): $(printf '%s; ' "${chose[@]}")"
}

# dk_front_addrs STACK: the address of each Ready node that runs a front task of STACK, one a line
# (a node advertised on no routable address, as a single-node swarm on 127.0.0.1: 127.0.0.1). A
# node that is down keeps its global task "meant to run": it is left out, not smoke-tested.
dk_front_addrs() {
    local task node state addr
    while read -r task; do
        [[ -n $task ]] || continue
        node=$(docker inspect --type task -f '{{.NodeID}}' "$task" 2>/dev/null) || continue
        read -r state addr < <(docker node inspect -f '{{.Status.State}} {{.Status.Addr}}' "$node" 2>/dev/null) || continue
        [[ $state == ready ]] || continue
        [[ -z $addr || $addr == 0.0.0.0 ]] && addr=127.0.0.1
        printf '%s\n' "$addr"
    done < <(docker service ps -q --no-trunc --filter desired-state=running "${1}_front" 2>/dev/null) | sort -u
}

# dk_stack_file STACK [OPT...]: the stack file on stdout: compose merges and interpolates compose.yaml +
# compose.swarm.yaml (the same variables and .env as the compose deployment), scripts/lib/stackfile.py
# translates what `docker stack deploy` does not take and names the secrets STACK_<name>-<hash of the
# file>; OPTs go to stackfile.py (--keep-image). DK_STACK_EXPLAIN=1: the translations on stderr.
dk_stack_file() {
    local stack=$1 py format=() explain=()
    shift
    ((${#COMPOSE[@]})) || dk_detect_compose
    py=$(dk_stack_python)
    [[ ${COMPOSE[*]} == "docker compose" ]] && format=(--format json)
    [[ ${DK_STACK_EXPLAIN:-0} == 1 ]] && explain=(--explain)
    "${COMPOSE[@]}" --project-directory "$DK_ROOT" -f "$COMPOSE_FILE_PATH" -f "$SWARM_FILE_PATH" \
        -p "$COMPOSE_PROJECT" config "${format[@]}" |
        "$py" "$DK_LIB_DIR/stackfile.py" --stack "$stack" --profiles "${COMPOSE_PROFILES:-}" "${explain[@]}" "$@"
}

# dk_prune_stack_secrets STACK STACK_FILE: removes the stack's secrets that the stack file no longer
# names (versions left by a rotation). One still used by a task is kept (docker refuses).
dk_prune_stack_secrets() {
    local stack=$1 file=$2 secret
    while read -r secret; do
        [[ -n $secret ]] || continue
        grep -qF "\"$secret\"" "$file" && continue
        if docker secret rm "$secret" >/dev/null 2>&1; then
            dk_log "removed the secret $secret (replaced by a newer version)"
        fi
    done < <(docker secret ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}}')
}

dk_stack_services() {
    docker service ls -q --filter "label=com.docker.stack.namespace=$1" 2>/dev/null
}

dk_stack_exists() {
    [[ $(dk_swarm_state) == manager ]] && [[ -n $(dk_stack_services "$1") ]]
}

# The IDs and service names of the stack's failed tasks, one "ID SERVICE" a line.
dk_stack_failed_tasks() {
    docker stack ps --format '{{.ID}} {{.Name}} {{.CurrentState}}' "$1" 2>/dev/null |
        awk '$3 == "Failed" { sub(/\.[^.]*$/, "", $2); print $1, $2 }'
}

# dk_wait_stack TIMEOUT STACK [SINCE]: 0 once every service of the stack has all its replicas running
# (a task with a healthcheck counts as running only once healthy) and no update or rollback in
# progress; 1 on timeout, or at once when a task was rejected, 3 tasks of a service failed since the
# wait began (a crash loop), or a service's update that started after SINCE (epoch seconds; default:
# now) paused or rolled back. The first failing service is left in DK_FAILED.
# shellcheck disable=SC2034 # DK_FAILED is read by the scripts that source this file
dk_wait_stack() {
    local timeout=$1 stack=$2 since=${3:-} deadline name replicas running desired update pending rejected
    local failed_before crashing started
    [[ -n $since ]] || since=$(date +%s)
    deadline=$((SECONDS + timeout))
    DK_FAILED=
    failed_before=$(dk_stack_failed_tasks "$stack" | awk '{ print $1 }')
    while :; do
        crashing=$(dk_stack_failed_tasks "$stack" | grep -vwF -e "${failed_before:-none}" |
            awk '{ n[$2]++ } END { for (s in n) if (n[s] >= 3) { print s; exit } }')
        if [[ -n $crashing ]]; then
            DK_FAILED=$crashing
            dk_log "service $crashing: 3 tasks failed since the deploy (crash loop?)"
            return 1
        fi
        pending=
        while read -r name replicas; do
            [[ -n $name ]] || continue
            replicas=${replicas%% *}
            running=${replicas%%/*}
            desired=${replicas#*/}
            read -r update started < <(docker service inspect -f \
                '{{with .UpdateStatus}}{{.State}} {{with .StartedAt}}{{.Unix}}{{end}}{{end}}' "$name" 2>/dev/null || true)
            case $update in
                paused | rollback_paused | rollback_completed)
                    # the outcome of an earlier update (a rollback last week) is no failure of this deploy
                    if ((${started:-0} >= since)); then
                        DK_FAILED=$name
                        dk_log "service $name: update $update: $(docker service inspect -f '{{.UpdateStatus.Message}}' "$name" 2>/dev/null)"
                        return 1
                    fi
                    update=
                    ;;
            esac
            rejected=$(docker service ps --filter desired-state=running --format '{{.CurrentState}} {{.Error}}' "$name" 2>/dev/null | grep -m1 '^Rejected' || true)
            if [[ -n $rejected ]]; then
                DK_FAILED=$name
                dk_log "service $name: task $rejected"
                return 1
            fi
            if [[ $running != "$desired" ]] || [[ $update == updating || $update == rollback_started ]]; then
                [[ -n $pending ]] || pending="$name ($replicas${update:+, $update})"
            fi
        done < <(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}')
        if [[ -z $pending ]]; then
            [[ -n $(dk_stack_services "$stack") ]] && return 0
            pending="$stack (no service yet)"
        fi
        if ((SECONDS >= deadline)); then
            DK_FAILED=${pending%% *}
            dk_log "timeout after ${timeout}s: service $pending"
            return 1
        fi
        sleep 1
    done
}

# dk_wait_stack_gone TIMEOUT STACK: `docker stack rm` returns before the tasks have stopped.
dk_wait_stack_gone() {
    local deadline=$((SECONDS + $1)) stack=$2
    while [[ -n $(docker ps -aq --filter "label=com.docker.stack.namespace=$stack") ]] ||
        [[ -n $(docker network ls -q --filter "label=com.docker.stack.namespace=$stack") ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}
