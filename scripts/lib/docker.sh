# shellcheck shell=bash
# Shared helpers for the Docker tier: sourced by scripts/deploy.sh, scripts/build-base-image.sh,
# scripts/backup.sh, scripts/restore.sh and ctest/compose/test_compose.sh. Not executable on its own.
#
#   dk_engine_running              true when a Docker engine answers
#   dk_ensure_engine               install docker.io (+ docker-compose) from Debian and start dockerd when none runs
#   dk_detect_compose              sets the array COMPOSE to `docker compose` (v2) or `docker-compose` (1.29)
#   dk_compose ARGS...             runs compose with the project's file and name
#   dk_ensure_base_image           makes sure debian:bookworm-slim exists: pull, else build it offline
#   dk_wait_healthy TIMEOUT SVC... waits (bounded, polling) until every service's container is healthy
#
# Conventions: every function prints its progress on stderr with the `[docker]` prefix; nothing here
# sleeps a fixed time except between polls of a condition that has a deadline.

DK_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DK_ROOT=$(cd "$DK_LIB_DIR/../.." && pwd)
DK_BASE_IMAGE=${DK_BASE_IMAGE:-debian:bookworm-slim}
DK_DOCKERD_LOG=${DK_DOCKERD_LOG:-/var/log/dockerd.log}
COMPOSE_FILE_PATH=${COMPOSE_FILE_PATH:-$DK_ROOT/compose.yaml}
COMPOSE_PROJECT=${COMPOSE_PROJECT_NAME:-items}
COMPOSE=()

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

dk_ensure_base_image() {
    if docker image inspect "$DK_BASE_IMAGE" >/dev/null 2>&1; then
        dk_log "base image $DK_BASE_IMAGE present"
        return 0
    fi
    dk_log "pulling $DK_BASE_IMAGE"
    if timeout 120 docker pull "$DK_BASE_IMAGE" >&2; then
        return 0
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
