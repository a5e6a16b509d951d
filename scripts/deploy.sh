#!/usr/bin/env bash
# Deploy the items stack with Docker compose: from a fresh Debian 12 machine (root, no Docker, no
# registry) to front/api/db healthy and serving on ${HTTP_PORT:-80}.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/deploy.sh [--no-build] [--timeout SECONDS]
       scripts/deploy.sh --down [--purge]

Deploys the three-tier stack (compose.yaml) and returns once every service is healthy and the
smoke test through the public port passed:
  1. checks prerequisites; as root on Debian, installs the Docker engine and compose from Debian's
     packages (docker.io, docker-compose) and starts the daemon when none runs;
  2. makes sure the base image debian:bookworm-slim exists (docker pull; when no registry answers,
     scripts/build-base-image.sh builds it from the Debian mirror with debootstrap);
  3. creates .env from .env.example when missing, and the missing secrets (scripts/secrets.sh);
  4. validates the compose file, builds the images;
  5. with REGISTRY set, tags the images with the version and the git commit and pushes them;
  6. starts the stack, waits (bounded) until every service is healthy, smoke-tests /status and
     /items through the public port, prints the URLs and how long it took.
On failure it prints the failing service's logs and exits non-zero.

  --down          stop and remove the stack's containers and networks (the data volume stays)
  --purge         with --down: also remove the data volume (every item is lost)
  --no-build      start with the images already built
  --timeout SECS  how long to wait for the services to be healthy (default 300)
  --help          this text

Environment (also read from .env): HTTP_PORT (80), HTTP_BIND (0.0.0.0), REGISTRY (unset: no push),
IMAGE_PREFIX (items), IMAGE_TAG (latest), SECRETS_DIR (./secrets), COMPOSE_PROJECT_NAME (items),
COMPOSE_IMPL (docker-compose or docker-compose-plugin: force one compose implementation).
Works with `docker compose` (v2) and `docker-compose` (1.29).
EOF
}

action=up
purge=0
build=1
timeout=300
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --down) action=down ;;
        --purge) purge=1 ;;
        --no-build) build=0 ;;
        --timeout) timeout=${2:?--timeout needs a value}; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $timeout =~ ^[0-9]+$ ]] || { echo "--timeout takes a number of seconds" >&2; exit 2; }
if ((purge)) && [[ $action != down ]]; then
    echo "--purge goes with --down" >&2
    exit 2
fi

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
cd "$DK_ROOT"
start=$SECONDS

log() { printf '[deploy] %s\n' "$*" >&2; }

# VALUE of NAME: the environment first, then .env (KEY=VALUE lines, never evaluated), then DEFAULT.
setting() {
    local name=$1 default=${2:-} line value=
    if [[ -n ${!name:-} ]]; then
        printf '%s' "${!name}"
        return
    fi
    if [[ -f .env ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line == "$name="* ]] || continue
            value=${line#"$name="}
            value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
        done <.env
    fi
    printf '%s' "${value:-$default}"
}

if [[ $action == down ]]; then
    dk_engine_running || dk_die "no Docker engine answers: nothing to stop"
    dk_detect_compose
    if ((purge)); then
        log "stopping the stack and removing its data volume"
        dk_compose down --remove-orphans --volumes
    else
        log "stopping the stack (the data volume is kept; --purge removes it)"
        dk_compose down --remove-orphans
    fi
    exit 0
fi

# 1. Prerequisites.
if ! command -v curl >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && dk_is_debian; then
        dk_apt_install curl ca-certificates
    else
        dk_die "curl is needed for the smoke test (Debian: apt-get install curl)"
    fi
fi
dk_ensure_engine
dk_detect_compose

# 2. Base image.
dk_ensure_base_image

# 3. Configuration and secrets.
if [[ ! -f .env ]]; then
    cp .env.example .env
    log "created .env from .env.example"
fi
"$DK_ROOT/scripts/secrets.sh" >&2

# 4. Validate, build.
dk_compose config -q || dk_die "compose.yaml does not validate"
if ((build)); then
    log "building the images"
    build_start=$SECONDS
    if [[ ${COMPOSE[*]} == docker-compose ]]; then
        dk_compose build --parallel >&2
    else
        dk_compose build >&2
    fi
    log "images built in $((SECONDS - build_start)) s"
fi

# 5. Push.
registry=$(setting REGISTRY)
if [[ -n $registry ]]; then
    version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -n1)
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo nocommit)
    prefix=$(setting IMAGE_PREFIX items)
    tag=$(setting IMAGE_TAG latest)
    for tier in front api db; do
        for t in "${version:-0}" "$commit"; do
            docker tag "$prefix-$tier:$tag" "${registry%/}/items-$tier:$t"
            log "pushing ${registry%/}/items-$tier:$t"
            docker push "${registry%/}/items-$tier:$t" >&2 || dk_die "push of ${registry%/}/items-$tier:$t failed"
        done
    done
fi

# 6. Start, wait, smoke test.
failed() {
    local svc=${1:-}
    log "FAILED: $2"
    dk_compose ps >&2 || true
    for s in ${svc:-db api front}; do
        log "---- logs of $s (last 80 lines) ----"
        dk_compose logs --no-color --tail=80 "$s" >&2 || true
    done
    exit 1
}

log "starting the stack"
dk_compose up -d --remove-orphans >&2 || failed "" "compose up failed"
if ! dk_wait_healthy "$timeout" db api front; then
    failed "$DK_FAILED" "service ${DK_FAILED:-?} is not healthy"
fi
healthy_after=$((SECONDS - start))

port=$(setting HTTP_PORT 80)
base=http://127.0.0.1:$port
smoke() {
    local path=$1 expect=$2 body code
    body=$(mktemp)
    code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 5 "$base$path" || echo 000)
    if [[ $code != 200 ]] || ! grep -q -- "$expect" "$body"; then
        log "smoke test GET $path: HTTP $code: $(head -c 300 "$body")"
        rm -f "$body"
        return 1
    fi
    rm -f "$body"
    log "smoke test GET $path: 200"
}
smoke /status '"database_connection":"OK"' || failed "api" "/status through the public port"
smoke /items '^\[' || failed "api" "/items through the public port"

bind=$(setting HTTP_BIND 0.0.0.0)
host=$bind
[[ $host == 0.0.0.0 ]] && host=$(hostname -I 2>/dev/null | awk '{print $1}')
cat >&2 <<EOF
[deploy] the stack is up: healthy after ${healthy_after} s, deployed in $((SECONDS - start)) s
[deploy]   page    http://${host:-127.0.0.1}:$port/   (also $base/)
[deploy]   API     $base/status   $base/items
[deploy]   token   $(cd "$DK_ROOT" && dirname "$(setting SECRETS_DIR ./secrets)/x")/api_token (for POST/PUT/DELETE)
[deploy]   stop    scripts/deploy.sh --down   (--purge also deletes the data)
EOF
