#!/usr/bin/env bash
# Deploy the items stack with Docker compose: from a fresh Debian 12 machine (root, no Docker, no
# registry) to front/api/db healthy and serving on ${HTTP_PORT:-80}. With --swarm: the same images as
# a Docker Swarm stack (compose.yaml + compose.swarm.yaml), api replicated.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/deploy.sh [--monitoring] [--no-build] [--no-rollback] [--timeout SECONDS]
       scripts/deploy.sh --rollback TAG [--timeout SECONDS]
       scripts/deploy.sh --build-only
       scripts/deploy.sh --down [--purge]
       scripts/deploy.sh --reload-tls
       scripts/deploy.sh --swarm [--init-swarm] [--monitoring] [--no-build] [--rollback TAG] [--timeout SECONDS]
       scripts/deploy.sh --swarm --down [--purge]
       scripts/deploy.sh --swarm --print-stack

Deploys the three-tier stack (compose.yaml) and returns once every service is healthy and the
smoke test through the public port passed:
  1. checks prerequisites; as root on Debian, installs the Docker engine and compose from Debian's
     packages (docker.io, docker-compose) and starts the daemon when none runs;
  2. makes sure the base image debian:bookworm-slim exists (docker pull, by the digest that
     scripts/base-image.lock records when it has one; when no registry answers,
     scripts/build-base-image.sh builds it from the Debian mirror with debootstrap, reproducibly,
     and checks it against that lock: the same package versions, the same layer digest);
  3. creates .env from .env.example when missing, and the missing secrets (scripts/secrets.sh);
  4. validates the compose file, builds the images and tags each one also with the commit it was
     built from, IMAGE_PREFIX-<tier>:<12-hex commit> (from a dirty tree, <commit>-dirty: see
     "Versions" below);
  5. with REGISTRY set, tags the images with the version and the git commit and pushes them
     (refused from a dirty tree: commit first);
  6. when the stack already runs (its db on this machine) and the new db image brings schema
     migrations its database has not applied (mysql/migrations/), backs the database up first
     (scripts/backup.sh, into BACKUP_DIR; the deploy stops if the backup fails): the db applies
     them as it restarts (compose and --swarm alike);
  7. starts the stack (on an existing data volume the db first, and stops with the fix named if
     the database refuses the db_password in SECRETS_DIR: secrets generated again for a volume
     made with others), waits (bounded) until every service is healthy, smoke-tests /status and
     /items and / through the public port, prints the URLs and how long it took, and records the
     deployed tag (DEPLOY_STATE_DIR).
On failure it prints the failing service's logs and exits non-zero. Compose only: when the
failure comes after the new containers were started (compose up, the health wait or the smoke
test), it first rolls back by itself to the tag that was deployed before (as --rollback does; once:
a failed rollback is reported, never retried) and exits non-zero saying "rolled back to TAG"; with
no earlier deployment carrying a commit tag, or one that ran the same images, it stops there.
(--swarm: Swarm's own update rollback, failure_action: rollback, undoes a failing api update.)

  --monitoring    also the monitoring tier (the compose profile "monitoring", as
                  COMPOSE_PROFILES=monitoring in .env does): Prometheus, Alertmanager, the nginx,
                  MariaDB and volume exporters (docs/monitoring.md). The deploy then also waits for
                  them and for every Prometheus target to be up, and prints the Prometheus URL
                  (127.0.0.1:PROMETHEUS_PORT, 9090). A deploy without it (and without the profile in
                  .env) removes the monitoring containers; their data volume stays
  --down          stop and remove the stack's containers and networks (the data volume stays)
  --reload-tls    take a renewed certificate (SECRETS_DIR/tls_cert, tls_key, written over the old
                  files, e.g. by scripts/secrets.sh --renew-tls) without a failed request: checks
                  that the key matches the certificate, then `nginx -s reload` in the front (old
                  connections finish on the old certificate) and checks that HTTPS serves the new
                  one. A file replaced by a rename does not reach the running container (compose
                  mounts the file): the front is then recreated instead (a short gap), and said so.
                  With --swarm: a new Swarm secret version, the front service rolls onto it.
  --purge         with --down: also remove the data volume (every item is lost)
  --no-build      start with the images already built
  --rollback TAG  redeploy the images IMAGE_PREFIX-{front,api,db}:TAG built earlier (no build, no
                  backup): they must all three exist (else the tags that do are listed); IMAGE_TAG
                  (latest) is moved to them, so that a later plain `docker compose up -d` here
                  keeps them; replaces only the tiers whose image differs (the others, the db
                  above all, keep running); then the health wait and smoke test as above, and how
                  long it took. Schema: migrations only expand, and an older db image leaves a newer schema
                  as it is (mysql/migrate.sh): the older workers run on it. To undo a migration the
                  older release cannot run on, restore the dump the deploy took before migrating
                  (BACKUP_DIR; scripts/restore.sh) once the rollback is up.
  --no-rollback   on a failed deploy, leave the failed containers in place (to inspect them)
  --build-only    steps 1-5 only: build the images as IMAGE_PREFIX-<tier>:<commit tag> (IMAGE_TAG,
                  what runs, is left alone), push them with REGISTRY set, and deploy nothing
  --no-backup     skip step 6 (the backup before migrations)
  --timeout SECS  how long to wait for the services to be healthy (default 300)
  --help          this text

Docker Swarm (docs/scaling.md):
  --swarm         deploy as the Swarm stack STACK_NAME (default items): steps 1-5 as above, then
                  `docker stack deploy` of compose.yaml + compose.swarm.yaml (merged by compose,
                  translated by scripts/lib/stackfile.py), waits (bounded) until every service runs
                  all its replicas healthy, smoke-tests through each node that runs a front (its
                  address, HTTP_PORT and HTTPS_PORT). Placement comes from the node labels unless
                  set: the db on the node labelled items.db=true, a front on every node labelled
                  items.front=true, at most API_MAX_PER_NODE api replicas a node (room left for a
                  lost node); the overlays edge and data encrypted (OVERLAY_ENCRYPTION: auto, on,
                  off); what was chosen is printed (docs/scaling.md "Placement"). This engine
                  (DOCKER_HOST: any manager, e.g. scripts/cluster-sim.sh's) must be a swarm
                  manager; it is never made one unless --init-swarm is given.
  --init-swarm    with --swarm: when this engine is in no swarm, create a single-node swarm first
                  (advertised on 127.0.0.1 unless SWARM_ADVERTISE_ADDR is set). Leaving it is yours
                  to do: docker swarm leave --force. Beware: with Docker 20.10 (Debian 12's), leaving
                  a swarm disconnects every container of this engine from its networks, compose
                  stacks included; recreate them after (scripts/deploy.sh, docker compose up -d
                  --force-recreate).
  --swarm --down  remove the stack (services, networks, its Swarm secrets; --purge: the data volume);
                  the swarm itself stays.
  --print-stack   print the stack file that --swarm deploys, and exit
  The compose deployment and the stack use the same data volume name (<name>_db-data) when
  COMPOSE_PROJECT_NAME and STACK_NAME are equal: each refuses to start while the other runs.

Versions: a build is tagged with HEAD's commit (12 hex digits) when `git status --porcelain` is
empty, else <commit>-dirty: modified, staged or deleted tracked files and untracked files that
.gitignore does not exclude all count (an untracked file can enter an image through a COPY), so a
bare commit tag always means "built from exactly that commit". A later dirty build replaces the
-dirty tag. The deployed tag of each compose project is appended to
DEPLOY_STATE_DIR/<COMPOSE_PROJECT_NAME>.log (default /var/lib/items/deploy as root, else
~/.local/state/items/deploy): "UTC-time tag event front-id api-id db-id". The tag to roll back to
is read from the running containers' images (the commit tags they carry), or that log when the
stack is down.

HTTPS: the front serves HTTPS (TLS 1.2/1.3, HTTP/2) on HTTPS_PORT with the secrets tls_cert and
tls_key (scripts/secrets.sh makes them from a local CA when missing; its CA is printed at the end);
HTTPS_ONLY=1 turns plain HTTP into a redirect (308) that refuses writes, and adds HSTS. The smoke
test goes through both (HTTP/2 over HTTPS). Published on a non-loopback HTTP_BIND without
HTTPS_ONLY=1, the deploy warns: tokens would cross the network in clear.

Environment (also read from .env): HTTP_PORT (80), HTTPS_PORT (443), HTTP_BIND (0.0.0.0, both
ports), HTTPS_ONLY (0), HSTS_MAX_AGE (31536000), TLS_HOSTNAMES, REGISTRY (unset: no push),
IMAGE_PREFIX (items), IMAGE_TAG (latest), SECRETS_DIR (./secrets), COMPOSE_PROJECT_NAME (items),
COMPOSE_IMPL (docker-compose or docker-compose-plugin: force one compose implementation),
DEPLOY_STATE_DIR (see above), BACKUP_DIR (see scripts/backup.sh).
Swarm: STACK_NAME (items), API_REPLICAS (3), ENDPOINT_MODE (dnsrr), PUBLISH_MODE (host) and the
other knobs listed at the top of compose.swarm.yaml; SWARM_ADVERTISE_ADDR (for --init-swarm).
With REGISTRY set, the stack runs the pushed images REGISTRY/items-<tier>:<git commit>; a tier
whose pushed image has the digest its service runs keeps that service as it is (not restarted).
--swarm --rollback TAG deploys the stack with IMAGE_TAG=TAG (REGISTRY/items-<tier>:TAG with REGISTRY
set, which is not checked from here: the nodes pull it), a rolling update like any other.
Works with `docker compose` (v2) and `docker-compose` (1.29).
EOF
}

action=up
purge=0
build=1
backup=1
timeout=300
swarm=0
init_swarm=0
rollback_tag=
auto_rollback=1
build_only=0
monitoring=0
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --down) action=down ;;
        --monitoring) monitoring=1 ;;
        --reload-tls) action=reload-tls ;;
        --purge) purge=1 ;;
        --swarm) swarm=1 ;;
        --init-swarm) init_swarm=1 ;;
        --print-stack) action=print-stack; swarm=1 ;;
        --no-build) build=0 ;;
        --no-backup) backup=0 ;;
        --rollback) rollback_tag=${2:?--rollback needs a tag}; shift ;;
        --no-rollback) auto_rollback=0 ;;
        --build-only) build_only=1 ;;
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
if [[ -n $rollback_tag ]]; then
    [[ $action == up ]] || { echo "--rollback goes with a deploy (not --down or --print-stack)" >&2; exit 2; }
    # Docker's tag grammar: what `docker tag` would take.
    [[ $rollback_tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "--rollback: not an image tag: $rollback_tag" >&2; exit 2; }
    build=0
    backup=0 # the older db image applies no migration: there is nothing to back up before
fi
if ((build_only)) && { [[ $action != up || -n $rollback_tag ]] || ((!build)); }; then
    echo "--build-only goes alone (not with --down, --rollback or --no-build)" >&2
    exit 2
fi
if ((init_swarm)) && { ((!swarm)) || [[ $action != up ]]; }; then
    echo "--init-swarm goes with --swarm (to deploy)" >&2
    exit 2
fi

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
# shellcheck source=scripts/lib/tls.sh
. "$(dirname "$0")/lib/tls.sh"
cd "$DK_ROOT"
start=$SECONDS
secrets_dir=$(dk_secrets_dir)

# The monitoring profile: --monitoring, or COMPOSE_PROFILES (environment or .env) naming it. Compose
# reads COMPOSE_PROFILES itself; --down takes every profile, or it would leave those containers.
profiles=$(dk_setting COMPOSE_PROFILES)
if [[ ,$profiles, == *,monitoring,* ]]; then
    monitoring=1
fi
if ((monitoring)) || [[ $action == down ]]; then
    export COMPOSE_PROFILES=${profiles:+$profiles,}monitoring
fi
MONITORING_SERVICES=(prometheus alertmanager nginx-exporter mysqld-exporter volume-exporter)

log() { printf '[deploy] %s\n' "$*" >&2; }

# ---- Versions: commit tags and the record of what is deployed ------------------------------------

# git in this checkout, also when another user owns it (root deploying a user's clone): git
# refuses such a repository ("dubious ownership"), which made the build nameless. Whoever runs
# this script runs that checkout's scripts already; trusting its git configuration adds nothing.
checkout_git() { git -c safe.directory="$DK_ROOT" -C "$DK_ROOT" "$@"; }

# The tag a build of this checkout gets: HEAD's commit, 12 hex digits, or <commit>-dirty when
# anything differs from it (untracked files that .gitignore does not exclude included: a COPY can
# take them into an image). Empty outside a git checkout.
commit_tag() {
    local head
    head=$(checkout_git rev-parse --verify -q HEAD 2>/dev/null) || return 0
    if [[ -n $(checkout_git status --porcelain 2>/dev/null) ]]; then
        printf '%s-dirty' "${head:0:12}"
    else
        printf '%s' "${head:0:12}"
    fi
}
is_commit_tag() { [[ $1 =~ ^[0-9a-f]{12}(-dirty)?$ ]]; }

# Arguments for stackfile.py, one a line: "--keep-image TIER=REF" for each tier whose service in
# STACK runs PREFIX-<tier> at the digest that PREFIX-<tier>:TAG has (pushed just now), REF being
# the commit tag it runs (an immutable name: deploy.sh pushes no tree with changes). Named by the
# new commit, an identical image would still be a new spec: Swarm restarted every tier on every
# deploy, the db (stop-first) answering 503 meanwhile.
# usage: kept_images STACK PREFIX TAG
kept_images() {
    local stack=$1 prefix=$2 tag=$3 tier running digest line
    for tier in front api db; do
        # shellcheck disable=SC2016 # a Go template
        running=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "${stack}_$tier" 2>/dev/null) || continue
        [[ $running == "$prefix-$tier:"*@sha256:* ]] || continue
        digest=
        while read -r line; do
            [[ $line == "$prefix-$tier@"* ]] && { digest=${line#*@}; break; }
        done < <(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$prefix-$tier:$tag" 2>/dev/null)
        [[ -n $digest && $digest == "${running##*@}" ]] || continue
        log "$tier: the image of $tag is the one it runs (${digest:0:19}...): the service keeps ${running%@*}, its tasks are left alone"
        # By its tag, as the stack named it: the stack's own label of the image then stays as it is.
        printf '%s\n' --keep-image "$tier=${running%@*}"
    done
}

# The image ID of IMAGE ('' when there is none).
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# The tags under which all three tiers' images exist, one a line, newest first.
complete_tags() {
    local prefix=$1 tag
    while read -r tag; do
        [[ -n $tag && $tag != '<none>' ]] || continue
        [[ -n $(image_id "$prefix-api:$tag") && -n $(image_id "$prefix-db:$tag") ]] && printf '%s\n' "$tag"
    done < <(docker images --format '{{.Tag}}' "$prefix-front")
    return 0 # (the loop's status is its last test's: under set -e a caller would stop silently)
}

# The commit tags whose three images are the images FRONT_ID API_ID DB_ID, one a line.
tags_of_images() {
    local prefix=$1 front=$2 api=$3 db=$4 tag
    while read -r tag; do
        is_commit_tag "$tag" || continue
        [[ $(image_id "$prefix-front:$tag") == "$front" && $(image_id "$prefix-api:$tag") == "$api" &&
            $(image_id "$prefix-db:$tag") == "$db" ]] && printf '%s\n' "$tag"
    done < <(docker images --format '{{.Tag}}' "$prefix-front")
    return 0 # (as above)
}

state_dir() {
    local dir
    dir=$(dk_setting DEPLOY_STATE_DIR)
    if [[ -z $dir ]]; then
        if [[ $(id -u) -eq 0 ]]; then dir=/var/lib/items/deploy; else dir=${XDG_STATE_HOME:-$HOME/.local/state}/items/deploy; fi
    fi
    printf '%s' "$dir"
}
state_file() { printf '%s/%s.log' "$(state_dir)" "$project"; }

# record_deploy TAG EVENT: one line "UTC-time TAG EVENT front-id api-id db-id" for the running
# containers (the history of the project's deployments; its last line is what runs).
record_deploy() {
    local tag=$1 event=$2 file ids=() svc c
    file=$(state_file)
    for svc in front api db; do
        c=$(dk_cid "$svc")
        ids+=("$(docker inspect -f '{{.Image}}' "$c" 2>/dev/null || echo none)")
    done
    if mkdir -p "$(dirname "$file")"; then chmod 0700 "$(dirname "$file")" 2>/dev/null || true; fi
    printf '%s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$tag" "$event" "${ids[*]}" >>"$file" ||
        log "could not record the deployment in $file"
}

# The tag of what is deployed now (before this run changes anything): the commit tag the running
# containers' images carry (the one last recorded when several do: same images, built twice); when
# the stack is not running, the last tag recorded in the state file whose images still exist.
deployed_tag() {
    local prefix=$1 ids=() svc c tags last
    for svc in front api db; do
        c=$(dk_cid "$svc")
        [[ -n $c ]] || { ids=(); break; }
        ids+=("$(docker inspect -f '{{.Image}}' "$c" 2>/dev/null)")
    done
    last=$(awk '{ t = $2 } END { print t }' "$(state_file)" 2>/dev/null || true)
    if ((${#ids[@]} == 3)); then
        tags=$(tags_of_images "$prefix" "${ids[@]}")
        if [[ -n $last ]] && grep -qxF -- "$last" <<<"$tags"; then
            printf '%s' "$last"
        else
            head -n1 <<<"$tags"
        fi
        return 0
    fi
    if [[ -n $last && -n $(image_id "$prefix-front:$last") && -n $(image_id "$prefix-api:$last") &&
        -n $(image_id "$prefix-db:$last") ]]; then
        printf '%s' "$last"
    fi
}

# point_image_tag TAG: IMAGE_PREFIX-<tier>:IMAGE_TAG (what compose.yaml names, so what a plain
# `docker compose up -d` here runs) becomes the images of TAG.
point_image_tag() {
    local tag=$1 tier
    [[ $tag == "$image_tag" ]] && return 0
    for tier in front api db; do
        docker tag "$prefix-$tier:$tag" "$prefix-$tier:$image_tag" || return 1
    done
    log "$prefix-{front,api,db}:$image_tag now name the images of $tag"
}


stack=$(dk_setting STACK_NAME items)
[[ $stack =~ ^[A-Za-z0-9][A-Za-z0-9_-]*$ ]] || dk_die "STACK_NAME must be letters, digits, - and _: $stack"

if [[ $action == print-stack ]]; then
    dk_engine_running || dk_die "no Docker engine answers (compose needs one to read the files)"
    dk_swarm_placement
    DK_STACK_EXPLAIN=1 dk_stack_file "$stack"
    exit 0
fi

if [[ $action == down ]] && ((swarm)); then
    dk_engine_running || dk_die "no Docker engine answers: nothing to stop"
    if dk_stack_exists "$stack"; then
        log "removing the stack $stack (services, networks, secrets)"
        docker stack rm "$stack" >&2
        dk_wait_stack_gone 120 "$stack" || dk_die "the stack's containers or networks are still there after 120 s"
    else
        log "no stack $stack in this swarm"
    fi
    # The stack's volumes on this node: the run-time tmpfs ones (db-run, front-run) hold nothing;
    # the data volumes (db-data, prometheus-data) go only with --purge. (Other nodes keep theirs: docker volume rm there.)
    while read -r volume; do
        [[ -n $volume ]] || continue
        if [[ $volume == "${stack}_db-data" || $volume == "${stack}_prometheus-data" ]] && ((!purge)); then
            log "the data volume $volume is kept (--purge removes it)"
            continue
        fi
        log "removing the volume $volume"
        docker volume rm "$volume" >/dev/null
    done < <(docker volume ls -q --filter "label=com.docker.stack.namespace=$stack")
    # The data volume may have been created by the compose deployment (same name, its labels).
    if ((purge)) && docker volume inspect "${stack}_db-data" >/dev/null 2>&1; then
        log "removing the data volume ${stack}_db-data"
        docker volume rm "${stack}_db-data" >/dev/null
    fi
    exit 0
fi

# --reload-tls: the renewed certificate into the running front, without a failed request.
if [[ $action == reload-tls && $swarm == 1 ]]; then
    # A Swarm secret cannot change: the deploy makes the new files a new version and rolls the front.
    exec "$0" --swarm --no-build --no-backup --timeout "$timeout"
fi
if [[ $action == reload-tls ]]; then
    dk_engine_running || dk_die "no Docker engine answers"
    dk_detect_compose
    front=$(dk_cid front)
    [[ -n $front ]] || dk_die "the front is not running (scripts/deploy.sh starts the stack)"
    tls_key_matches "$secrets_dir/tls_cert" "$secrets_dir/tls_key" ||
        dk_die "$secrets_dir/tls_cert and tls_key are not a certificate and its key: nothing reloaded"
    same=1
    for f in tls_cert tls_key; do
        inside=$(docker exec "$front" /usr/bin/busybox sha256sum "/run/secrets/$f" 2>/dev/null | cut -d' ' -f1)
        [[ $inside == "$(sha256sum <"$secrets_dir/$f" | cut -d' ' -f1)" ]] || same=0
    done
    if ((same)); then
        docker exec "$front" /usr/sbin/nginx -c /run/nginx/conf/nginx.conf -s reload ||
            dk_die "nginx refused the reload (the old certificate is still served): docker logs $front"
        log "nginx reloaded: new connections get the new certificate, open ones finish on the old"
    else
        log "the front sees other files than $secrets_dir holds (replaced by a rename, not written over):" \
            "recreating the front container (a short gap)"
        dk_compose up -d --no-deps --force-recreate front >&2 || dk_die "could not recreate the front"
        dk_wait_healthy "$timeout" front || dk_die "the recreated front is not healthy: docker logs $(dk_cid front)"
    fi
    want=$(openssl x509 -in "$secrets_dir/tls_cert" -noout -fingerprint -sha256)
    for _ in $(seq 50); do
        served=$(openssl s_client -connect "127.0.0.1:$(dk_setting HTTPS_PORT 443)" -servername localhost </dev/null 2>/dev/null |
            openssl x509 -noout -fingerprint -sha256 2>/dev/null || true)
        [[ $served == "$want" ]] && break
        sleep 0.2
    done
    [[ $served == "$want" ]] || dk_die "HTTPS still serves another certificate (${served:-none}) than $secrets_dir/tls_cert"
    log "HTTPS serves the new certificate (valid until $(openssl x509 -in "$secrets_dir/tls_cert" -noout -enddate | cut -d= -f2))"
    exit 0
fi

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
project=$(dk_setting COMPOSE_PROJECT_NAME items)
# The containers refuse another value too, but only after the build and a wait for health.
case $(dk_setting API_TRANSPORT unix) in
    unix | tcp) ;;
    *) dk_die "API_TRANSPORT=$(dk_setting API_TRANSPORT): expected unix (front -> api over a shared socket, one api container; the default) or tcp (api replicas: docker compose up --scale api=N)" ;;
esac
if ((swarm)); then
    case $(dk_swarm_state) in
        manager) ;;
        inactive)
            ((init_swarm)) || dk_die "this Docker engine is in no swarm: add --init-swarm to create a single-node swarm here, or join one (docker swarm join) and run this on a manager"
            dk_swarm_init
            [[ $(dk_swarm_state) == manager ]] || dk_die "docker swarm init did not make this engine a manager"
            ;;
        worker) dk_die "this engine is a swarm worker: run scripts/deploy.sh --swarm on a manager" ;;
        *) dk_die "this engine's swarm is in state $(docker info --format '{{.Swarm.LocalNodeState}}' 2>&1): fix it first (docker info)" ;;
    esac
    dk_swarm_placement
    if [[ -n $(docker ps -q --filter "label=com.docker.compose.project=$project") ]]; then
        dk_die "the compose deployment '$project' is running (same port and data volume): stop it first with scripts/deploy.sh --down"
    fi
elif dk_stack_exists "$stack"; then
    dk_die "the swarm stack '$stack' is running (same port and data volume): remove it first with scripts/deploy.sh --swarm --down"
fi

prefix=$(dk_setting IMAGE_PREFIX items)
image_tag=$(dk_setting IMAGE_TAG latest)
registry=$(dk_setting REGISTRY)
commit=$(commit_tag)
if [[ -n $rollback_tag ]]; then
    # Nothing to build or push: the images of the tag must be here (or, with REGISTRY under
    # --swarm, in the registry, where the nodes pull them).
    if [[ -z $registry ]] || ((!swarm)); then
        missing=()
        for tier in front api db; do
            [[ -n $(image_id "$prefix-$tier:$rollback_tag") ]] || missing+=("$prefix-$tier:$rollback_tag")
        done
        if ((${#missing[@]})); then
            tags=$(complete_tags "$prefix" | tr '\n' ' ')
            dk_die "no image ${missing[*]}: nothing changed. Tags with all three images ($prefix-{front,api,db}): ${tags:-none}"
        fi
    fi
else
    if [[ -n $registry && $commit == *-dirty ]]; then
        dk_die "REGISTRY is set and the checkout has uncommitted changes (git status): images pushed under a commit tag must be built from that commit exactly. Commit first (or unset REGISTRY to deploy the local build only)."
    fi
    if ((build && !build_only)) && is_commit_tag "$image_tag" && [[ $image_tag != "$commit" ]]; then
        dk_die "IMAGE_TAG=$image_tag names another commit than this checkout's ($commit): a build would give its name to other images. To run that commit's images: scripts/deploy.sh --rollback $image_tag"
    fi
fi
if ((build_only)); then
    [[ -n $commit ]] || dk_die "--build-only names the images by their commit: this is not a git checkout"
    # compose builds what compose.yaml names: that name, for this run, is the commit's.
    image_tag=$commit
    export IMAGE_TAG=$commit
fi
# What runs before this deploy: the automatic rollback goes back to it.
previous=
if ((!swarm && !build_only)); then
    previous=$(deployed_tag "$prefix")
    log "deployed now: ${previous:-nothing with a commit tag}"
fi

# 2. Base image (only what builds needs it).
if [[ -z $rollback_tag ]]; then
    dk_ensure_base_image
fi

# 3. Configuration and secrets.
if [[ ! -f .env ]]; then
    cp .env.example .env
    log "created .env from .env.example"
fi
# Plain `docker compose ps|logs|exec|up` in this directory find the stack by the project name in
# .env; an .env from before it had one gets it (unless this run names another in the environment).
if [[ -z ${COMPOSE_PROJECT_NAME:-} ]] && ! grep -q '^COMPOSE_PROJECT_NAME=' .env; then
    printf '\n# The compose project: plain "docker compose" commands here find the stack by it.\nCOMPOSE_PROJECT_NAME=%s\n' \
        "$project" >>.env
    log "added COMPOSE_PROJECT_NAME=$project to .env"
fi
"$DK_ROOT/scripts/secrets.sh" >&2

# 4. Validate, build.
dk_compose config -q || dk_die "compose.yaml does not validate"
if ((swarm)); then
    dk_stack_file "$stack" >/dev/null || dk_die "compose.yaml + compose.swarm.yaml do not give a stack file"
fi
if ((build)); then
    log "building the images"
    build_start=$SECONDS
    if [[ ${COMPOSE[*]} == docker-compose ]]; then
        dk_compose build --parallel >&2
    else
        dk_compose build >&2
    fi
    log "images built in $((SECONDS - build_start)) s"
    # Each build also under the commit it was built from: the name --rollback finds it by later.
    if [[ -z $commit ]]; then
        log "not a git checkout: the images get no commit tag (no --rollback to them later)"
    elif [[ $image_tag != "$commit" ]]; then # (--build-only built them under it already)
        for tier in front api db; do
            docker tag "$prefix-$tier:$image_tag" "$prefix-$tier:$commit" || dk_die "could not tag $prefix-$tier:$commit"
        done
        log "tagged $prefix-{front,api,db}:$commit"
    fi
fi
# The tag this run deploys: the build's, else a commit tag the IMAGE_TAG images carry.
if [[ -n $rollback_tag ]]; then
    deploying=$rollback_tag
elif ((build)) && [[ -n $commit ]]; then
    deploying=$commit
else
    # (not `| head -n1`: under pipefail, the SIGPIPE of the lines after the first fails the script)
    deploying=$(tags_of_images "$prefix" "$(image_id "$prefix-front:$image_tag")" \
        "$(image_id "$prefix-api:$image_tag")" "$(image_id "$prefix-db:$image_tag")")
    deploying=${deploying%%$'\n'*}
    deploying=${deploying:-$image_tag}
fi

# 5. Push.
if [[ -n $registry && -z $rollback_tag ]]; then
    [[ -n $commit ]] || dk_die "REGISTRY is set but this is not a git checkout: no commit to tag the pushed images with"
    version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -n1)
    for tier in front api db; do
        # --no-build: only images built from this commit go out under its name.
        [[ $(image_id "$prefix-$tier:$image_tag") == "$(image_id "$prefix-$tier:$commit")" ]] ||
            dk_die "$prefix-$tier:$image_tag was not built from this checkout ($commit): deploy without --no-build to build and push it"
        for t in "${version:-0}" "$commit"; do
            docker tag "$prefix-$tier:$image_tag" "${registry%/}/items-$tier:$t"
            log "pushing ${registry%/}/items-$tier:$t"
            docker push "${registry%/}/items-$tier:$t" >&2 || dk_die "push of ${registry%/}/items-$tier:$t failed"
        done
    done
fi

if ((build_only)); then
    log "built $prefix-{front,api,db}:$commit in $((SECONDS - start)) s; nothing deployed (IMAGE_TAG untouched)"
    exit 0
fi

port=$(dk_setting HTTP_PORT 80)
base=http://127.0.0.1:$port
https_port=$(dk_setting HTTPS_PORT 443)
https_only=$(dk_setting HTTPS_ONLY 0)
# The smoke test trusts the local CA that scripts/secrets.sh made; a certificate of your own may
# not name 127.0.0.1, so it is then checked for the HTTP/2 answer, not its chain (-k).
tls_trust=(--insecure)
[[ -s $secrets_dir/tls_ca.pem ]] && tls_trust=(--cacert "$secrets_dir/tls_ca.pem")
# smoke PATH EXPECT: GET PATH over HTTPS (HTTP/2) and, unless HTTPS_ONLY=1, over plain HTTP: 200 and
# a body matching EXPECT; with HTTPS_ONLY=1 plain HTTP must answer 308 instead. To 127.0.0.1, or with
# SMOKE_ADDR set to that address (a swarm node's), the URLs still naming 127.0.0.1 (the certificate's).
SMOKE_ADDR=127.0.0.1
smoke() {
    local path=$1 expect=$2 body code via=()
    [[ $SMOKE_ADDR == 127.0.0.1 ]] || via=(--connect-to "127.0.0.1:$https_port:$SMOKE_ADDR:$https_port"
        --connect-to "127.0.0.1:$port:$SMOKE_ADDR:$port")
    body=$(mktemp)
    code=$(curl -sS -o "$body" -w '%{http_code} HTTP/%{http_version}' --max-time 5 --http2 "${tls_trust[@]}" "${via[@]}" \
        "https://127.0.0.1:$https_port$path" || echo 000)
    if [[ $code != "200 HTTP/2" ]] || ! grep -q -- "$expect" "$body"; then
        log "smoke test GET https://$SMOKE_ADDR:$https_port$path: $code: $(head -c 300 "$body")"
        rm -f "$body"
        return 1
    fi
    code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 5 "${via[@]}" "$base$path" || echo 000)
    local ok=1
    if [[ $https_only == 1 ]]; then
        [[ $code == 308 ]] || ok=0
    elif [[ $code != 200 ]] || ! grep -q -- "$expect" "$body"; then
        ok=0
    fi
    if ((!ok)); then
        log "smoke test GET http://$SMOKE_ADDR:$port$path: HTTP $code (HTTPS_ONLY=$https_only): $(head -c 300 "$body")"
        rm -f "$body"
        return 1
    fi
    rm -f "$body"
    log "smoke test GET $path on $SMOKE_ADDR: 200 over HTTPS (HTTP/2), $code over plain HTTP"
}

# 6. A backup before the db applies migrations to a database that holds data.
# The migrations mysql/migrations/ has (what the db image was built with) that the running db has
# not recorded; all of them for a database from before migrations. Nothing when no db runs here.
# The migrations the running db has not applied, judged by the runner the db itself uses
# (mysql/migrate.sh --pending: read only), speaking to it through docker exec. Fails when the db
# does not answer (a crash loop, e.g. after a refused migration): there is then nothing to back up
# from, and the deploy goes on (it is how such a db is mended).
pending_migrations() {
    "$DK_ROOT/mysql/migrate.sh" --pending "$(dk_setting MYSQL_DATABASE items)" -- \
        docker exec "$1" mariadb --protocol=socket --user=mysql
}
if ((backup)); then
    db=$(dk_db_container "$swarm" "$stack")
    pending=""
    if [[ -n $db ]] && ! pending=$(pending_migrations "$db"); then
        log "could not read the running db's migrations (restarting?): no backup before the deploy; take one with scripts/backup.sh once it serves"
        pending=""
    fi
    if [[ -n $pending ]]; then
        log "the db will apply $(wc -l <<<"$pending") schema migration(s) as it restarts ($(tr '\n' ' ' <<<"$pending")): backing the database up first"
        backup_args=()
        if ((swarm)); then backup_args=(--swarm); fi
        STACK_NAME=$stack "$DK_ROOT/scripts/backup.sh" "${backup_args[@]}" ||
            dk_die "the backup before the migrations failed: nothing deployed (scripts/deploy.sh --no-backup skips it)"
    fi
fi

# prometheus_get PATH: Prometheus' answer, through its loopback port (compose) or from inside its
# task on this node (Swarm publishes no loopback-only port).
prometheus_get() {
    local c
    if ((swarm)); then
        c=$(docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_prometheus" | head -n 1)
        [[ -n $c ]] || return 1
        timeout 15 docker exec "$c" busybox wget -q -O - "http://127.0.0.1:9090$1" 2>/dev/null
    else
        curl -fsS --max-time 5 "http://127.0.0.1:$(dk_setting PROMETHEUS_PORT 9090)$1" 2>/dev/null
    fi
}
prometheus_where() {
    if ((swarm)); then
        echo "docker exec \$(docker ps -q --filter label=com.docker.swarm.service.name=${stack}_prometheus) busybox wget -qO- http://127.0.0.1:9090/api/v1/targets"
    else
        echo "http://127.0.0.1:$(dk_setting PROMETHEUS_PORT 9090)/targets"
    fi
}

# targets_not_up JSON: from Prometheus' /api/v1/targets answer, each target not up ("job instance:
# health") and each job with no target; nothing when all is well. (grep: no jq on a fresh machine.)
targets_not_up() {
    local json=$1 job
    if [[ $json != *'"activeTargets"'* ]]; then
        echo "the targets API does not answer"
        return
    fi
    # One target a line: split before each target's discovered labels.
    printf '%s' "$json" | sed 's/{"discoveredLabels"/\n&/g' | grep -v '"health":"up"' |
        sed -n 's/.*"instance":"\([^"]*\)".*"job":"\([^"]*\)".*"health":"\([^"]*\)".*/\2 \1: \3/p' | paste -sd';' -
    # The jobs of Prometheus' configuration, each with a target.
    while read -r job; do
        [[ $json == *"\"job\":\"$job\""* ]] || echo "$job: no target"
    done < <(sed -n 's/^  - job_name: //p' "$DK_ROOT/monitoring/prometheus.yml.in")
}

# targets_up: every target Prometheus knows reports up (bounded wait: a target is up after its first
# scrape, 5 s). TARGETS_DOWN lists the others (job instance: error) when it gives up.
TARGETS_DOWN=
targets_up() {
    local deadline json
    deadline=$((SECONDS + 60))
    while :; do
        json=$(prometheus_get "/api/v1/targets?state=active") || json=
        TARGETS_DOWN=$(targets_not_up "$json")
        if [[ -z $TARGETS_DOWN ]]; then
            log "Prometheus: every target up ($(prometheus_where))"
            return 0
        fi
        ((SECONDS < deadline)) || return 1
        sleep 2
    done
}

# 7 (swarm). Deploy the stack, wait, smoke test.
if ((swarm)); then
    swarm_failed() {
        local svc=${1:-}
        log "FAILED: $2"
        docker stack ps --no-trunc --format 'table {{.Name}}\t{{.CurrentState}}\t{{.Error}}' "$stack" >&2 || true
        for s in ${svc:-${stack}_db ${stack}_api ${stack}_front}; do
            # The newest containers of the service on this node (`docker service logs` can hang on
            # tasks whose containers are gone: it is only the fallback, bounded, for other nodes).
            local c n=0
            for c in $(docker ps -aq --filter "label=com.docker.swarm.service.name=$s" | head -n 2); do
                log "---- logs of $s, container ${c:0:12} (last 60 lines) ----"
                docker logs --tail 60 "$c" >&2 || true
                n=$((n + 1))
            done
            if ((n == 0)); then
                log "---- logs of $s (last 60 lines) ----"
                timeout 20 docker service logs --no-task-ids --tail 60 "$s" >&2 || true
            fi
        done
        exit 1
    }
    stack_file=$(mktemp "${TMPDIR:-/tmp}/items-stack.XXXXXX")
    trap 'rm -f "$stack_file"' EXIT
    deploy_opts=(--prune)
    keep_images=()
    if [[ -n $registry ]]; then
        # The images just pushed (or the earlier ones rolled back to), by their immutable tag:
        # every node pulls the same ones.
        export IMAGE_PREFIX="${registry%/}/items" IMAGE_TAG="${rollback_tag:-$commit}"
        deploy_opts+=(--with-registry-auth --resolve-image always)
        mapfile -t keep_images < <(kept_images "$stack" "$IMAGE_PREFIX" "$IMAGE_TAG")
    elif [[ -n $rollback_tag ]]; then
        # The service specs must name another image for Swarm to roll the tasks (the same name
        # moved to other images is no change to it); IMAGE_TAG moves too, for later --no-build.
        point_image_tag "$rollback_tag" || dk_die "could not tag the images of $rollback_tag as $image_tag"
        export IMAGE_TAG="$rollback_tag"
        deploy_opts+=(--resolve-image never)
    else
        # Local images: nothing to resolve (a multi-node swarm needs REGISTRY: docs/scaling.md).
        deploy_opts+=(--resolve-image never)
    fi
    # Later CLIs wait for convergence unless told not to; the wait below is ours, bounded.
    docker stack deploy --help 2>/dev/null | grep -q -- '--detach' && deploy_opts+=(--detach=true)
    dk_stack_file "$stack" "${keep_images[@]}" >"$stack_file" || dk_die "could not write the stack file"
    # What a stack deploy cannot change in place. A service's mode: a front made replicated before
    # nodes carried the front label (or the other way) is removed first; no front answers until
    # the new ones run. An existing network: it keeps the options it was made with.
    want_mode=$(dk_setting FRONT_MODE replicated)
    # shellcheck disable=SC2016 # a Go template
    have_mode=$(docker service inspect -f '{{if .Spec.Mode.Global}}global{{else}}replicated{{end}}' "${stack}_front" 2>/dev/null) || have_mode=
    if [[ -n $have_mode && $have_mode != "$want_mode" ]]; then
        log "the front goes from $have_mode to $want_mode (the node labels): Swarm cannot change a service's mode, so ${stack}_front is removed first (the page is down until the new front tasks run)"
        docker service rm "${stack}_front" >/dev/null || swarm_failed "${stack}_front" "could not remove the front service to change its mode"
        # Its host-mode ports must be free on this node before the new task takes them (bounded).
        for _ in $(seq 60); do
            [[ -z $(docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_front") ]] && break
            sleep 1
        done
    fi
    for net in edge data; do
        # shellcheck disable=SC2016 # a Go template
        opts=$(docker network inspect -f '{{range $k, $v := .Options}}{{$k}} {{end}}' "${stack}_$net" 2>/dev/null) || continue
        have=off
        [[ " $opts " == *" encrypted "* ]] && have=on
        if [[ $have != "${OVERLAY_ENCRYPTION:-on}" ]]; then
            log "warning: the network ${stack}_$net exists with encryption $have, not ${OVERLAY_ENCRYPTION:-on}: a stack deploy does not change an existing network (scripts/deploy.sh --swarm --down, then --swarm, makes it anew; the data volume stays)"
        fi
    done
    log "deploying the stack $stack (api replicas: $(dk_setting API_REPLICAS 3))"
    deploy_started=$(date +%s)
    if ! out=$(docker stack deploy "${deploy_opts[@]}" -c "$stack_file" "$stack" 2>&1); then
        printf '%s\n' "$out" >&2
        if [[ $out == *"only updates to Labels are allowed"* ]]; then
            log "a Swarm secret cannot change in place: was it created by another tool under this name?"
        fi
        swarm_failed "" "docker stack deploy failed"
    fi
    printf '%s\n' "$out" >&2
    if ! dk_wait_stack "$timeout" "$stack" "$deploy_started"; then
        swarm_failed "$DK_FAILED" "service ${DK_FAILED:-?} did not converge"
    fi
    healthy_after=$((SECONDS - start))
    dk_prune_stack_secrets "$stack" "$stack_file"
    # Through every node that runs a front (its host-mode port), as a load balancer in front of
    # them would reach it.
    # Converged is not yet settled across nodes: the api tasks on other nodes learn the db's
    # address through Docker's gossip, seconds after the db is healthy (a 503 "database
    # unavailable" meanwhile, seen on the simulated cluster). So each smoke test is retried, quietly,
    # for up to 60 s; only the last failure is reported.
    smoke_settled() {
        local deadline=$((SECONDS + 60)) said
        until said=$(smoke "$@" 2>&1); do
            ((SECONDS < deadline)) || { printf '%s\n' "$said" >&2; return 1; }
            sleep 2
        done
        printf '%s\n' "$said" >&2
    }
    mapfile -t front_addrs < <(dk_front_addrs "$stack")
    ((${#front_addrs[@]})) || swarm_failed "${stack}_front" "no node runs a front task"
    for SMOKE_ADDR in "${front_addrs[@]}"; do
        smoke_settled /status '"database_connection":"OK"' || swarm_failed "${stack}_api" "/status through $SMOKE_ADDR:$port"
        smoke_settled /items '^\[' || swarm_failed "${stack}_api" "/items through $SMOKE_ADDR:$port"
    done
    if ((monitoring)); then
        targets_up || swarm_failed "${stack}_prometheus" "Prometheus targets down: $TARGETS_DOWN"
    fi
    front_urls() {
        local a
        for a in "${front_addrs[@]}"; do printf '%s://%s:%s/ ' "$1" "$a" "$2"; done
    }
    cat >&2 <<EOF
[deploy] the stack $stack is up${rollback_tag:+, rolled back to $rollback_tag}: all replicas healthy after ${healthy_after} s, deployed in $((SECONDS - start)) s
[deploy]   page    $(front_urls http "$port")  (each node that runs a front; port published in $(dk_setting PUBLISH_MODE host) mode)
[deploy]   HTTPS   $(front_urls https "$https_port")
[deploy]   API     http://${front_addrs[0]}:$port/status   http://${front_addrs[0]}:$port/items
[deploy]   tasks   docker stack ps $stack        scale   docker service scale ${stack}_api=5
[deploy]   stop    scripts/deploy.sh --swarm --down   (--purge also deletes the data)
EOF
    if ((monitoring)); then
        log "  metrics $(prometheus_where)"
    fi
    exit 0
fi

# 7. Start, wait, smoke test.
# The failure's evidence: compose ps and the failing service's (or every service's) last logs.
show_failure() {
    local svc=${1:-} s
    log "FAILED: $2"
    dk_compose ps >&2 || true
    for s in ${svc:-db api front}; do
        log "---- logs of $s (last 80 lines) ----"
        dk_compose logs --no-color --tail=80 "$s" >&2 || true
    done
}
failed() {
    show_failure "$@"
    exit 1
}

# A data volume keeps the passwords of its first start: with other secrets (a new checkout, a
# deleted ./secrets that secrets.sh generated again) the api would loop on "Access denied". So on
# an existing volume the db starts first, and the application's password is tried on it before
# anything else starts. 1 only for a refused password; a check that cannot run is not a verdict.
db_accepts_secret() {
    local file pw out
    file=$secrets_dir/db_password
    pw=$(<"$file")
    if [[ $pw == *[\\\"]* ]]; then
        log "not checking the database password against $file (it holds a quote or a backslash)"
        return 0
    fi
    # The password travels on stdin as an option file: on no command line, in no environment.
    # shellcheck disable=SC2016 # $MYSQL_USER is expanded inside the container
    out=$(printf '[client]\npassword="%s"\n' "$pw" | dk_compose exec -T db sh -c \
        'exec mariadb --defaults-extra-file=/dev/stdin --protocol=tcp --host=127.0.0.1 --user="$MYSQL_USER" -e "SELECT 1"' 2>&1) &&
        return 0
    [[ $out != *"Access denied"* ]] || return 1
    log "could not check the database password: ${out##*$'\n'}"
}

# start_stack [TIER...]: up (of the tiers named only, when db is not among them; `none`: no tier),
# the health wait, the smoke test. 0 when all passed; 1 with FAIL_SVC and FAIL_WHY
# set when a step after the containers were replaced failed (what a rollback can mend). A database
# refusing the secrets stops the deploy at once: other images would not change that.
# compose up ARGS; when compose refuses because a network of the stack was made with other options
# than the compose file now gives it (edge turned internal, say: compose cannot change a network in
# place; 1.29 says "needs to be recreated"), the stack's containers and networks are removed (the
# data volume stays) and up runs again, which makes the networks anew.
compose_up() {
    local out rc=0
    out=$(dk_compose up "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" >&2
    if ((rc)) && [[ $out == *"needs to be recreated"* ]]; then
        log "a network of the stack changed its options: removing the stack's containers and networks" \
            "(the data volume stays) and starting again"
        dk_compose down --remove-orphans >&2 || return 1
        dk_compose up "$@" >&2
        return
    fi
    return "$rc"
}

FAIL_SVC=
FAIL_WHY=
start_stack() {
    local svc cid only=("$@")
    FAIL_SVC=''
    FAIL_WHY=''
    if (($#)) && [[ " $* " != *" db "* ]]; then
        # Only the tiers named (a rollback's, whose image changes), the others left running: the
        # db keeps serving (compose would recreate all three when the checkout's directory is
        # another than the one that deployed them: the build contexts are in their config).
        if [[ ${only[*]} != none ]]; then
            log "replacing ${only[*]} only (the other tiers already run the images of the tag)"
            compose_up -d --no-deps "${only[@]}" || { FAIL_WHY="compose up ${only[*]} failed"; return 1; }
        fi
        wait_and_smoke
        return
    fi
    # A container in a restart loop (a db that refused a migration, say) cannot be replaced while
    # the engine is restarting it ("container is restarting"): stop it, so that up recreates it.
    for svc in db api front; do
        cid=$(dk_cid "$svc")
        if [[ -n $cid && $(docker inspect -f '{{.State.Restarting}}' "$cid" 2>/dev/null) == true ]]; then
            log "$svc is restarting in a loop: stopping it before the deploy replaces it"
            docker stop -t 10 "$cid" >/dev/null 2>&1 || true
        fi
    done
    if docker volume inspect "${project}_db-data" >/dev/null 2>&1; then
        log "starting the db on its existing volume ${project}_db-data"
        compose_up -d db || { FAIL_SVC=db FAIL_WHY="compose up db failed"; return 1; }
        dk_wait_healthy "$timeout" db || { FAIL_SVC=db FAIL_WHY="service db is not healthy"; return 1; }
        db_accepts_secret ||
            dk_die "the database in volume ${project}_db-data was initialised with other secrets than those in $secrets_dir (a new checkout, or secrets generated again): it refuses their db_password, and the api could not log in. Put the original secrets back in $secrets_dir, or start empty with scripts/deploy.sh --down --purge (deletes every item)."
    fi
    log "starting the stack"
    compose_up -d --remove-orphans || { FAIL_WHY="compose up failed"; return 1; }
    wait_and_smoke
}
wait_and_smoke() {
    if ! dk_wait_healthy "$timeout" db api front; then
        FAIL_SVC=$DK_FAILED FAIL_WHY="service ${DK_FAILED:-?} is not healthy"
        return 1
    fi
    healthy_after=$((SECONDS - start))
    smoke /status '"database_connection":"OK"' || { FAIL_SVC=api FAIL_WHY="/status through the public port"; return 1; }
    smoke /items '^\[' || { FAIL_SVC=api FAIL_WHY="/items through the public port"; return 1; }
    smoke / '<html' || { FAIL_SVC=front FAIL_WHY="the page / through the public port"; return 1; }
    if ((monitoring)); then
        if ! dk_wait_healthy "$timeout" "${MONITORING_SERVICES[@]}"; then
            FAIL_SVC=$DK_FAILED FAIL_WHY="service ${DK_FAILED:-?} is not healthy"
            return 1
        fi
        targets_up || { FAIL_SVC=prometheus FAIL_WHY="Prometheus targets down: $TARGETS_DOWN"; return 1; }
    fi
}


# The tiers whose container is missing or runs another image than TAG's, one a line.
changed_tiers() {
    local tag=$1 tier c
    for tier in db api front; do
        c=$(dk_cid "$tier")
        if [[ -z $c || $(docker inspect -f '{{.Image}}' "$c" 2>/dev/null) != "$(image_id "$prefix-$tier:$tag")" ]]; then
            printf '%s\n' "$tier"
        fi
    done
}
only=()
if [[ -n $rollback_tag ]]; then
    log "rolling back to $rollback_tag (deployed now: ${previous:-unknown})"
    point_image_tag "$rollback_tag" || dk_die "could not tag the images of $rollback_tag as $image_tag"
    mapfile -t only < <(changed_tiers "$rollback_tag")
    if ((${#only[@]} == 0)); then
        log "every tier already runs the images of $rollback_tag"
        only=(none)
    fi
fi
if ! start_stack "${only[@]}"; then
    show_failure "$FAIL_SVC" "$FAIL_WHY"
    # One automatic rollback, to what ran before, never from a rollback (no loop): a failed
    # --rollback is reported as it is.
    if [[ -n $rollback_tag ]]; then
        dk_die "the rollback to $rollback_tag failed ($FAIL_WHY) after $((SECONDS - start)) s"
    fi
    if ((!auto_rollback)); then
        dk_die "deploy of ${deploying:-?} failed ($FAIL_WHY); left as it is (--no-rollback)"
    fi
    if [[ -z $previous ]]; then
        dk_die "deploy of ${deploying:-?} failed ($FAIL_WHY); no earlier deployment with a commit tag to roll back to"
    fi
    if [[ $previous == "$deploying" ]]; then
        dk_die "deploy of ${deploying:-?} failed ($FAIL_WHY); the deployment before ran the same images: nothing to roll back to"
    fi
    failed_at=$SECONDS
    why=$FAIL_WHY
    log "deploy of $deploying failed ($why): rolling back to $previous"
    point_image_tag "$previous" || dk_die "deploy of $deploying failed ($why); could not tag $previous as $image_tag to roll back"
    if start_stack; then
        record_deploy "$previous" auto-rollback
        dk_die "deploy of $deploying failed ($why); rolled back to $previous: serving again, healthy and smoke-tested, $((SECONDS - failed_at)) s after the failure"
    fi
    show_failure "$FAIL_SVC" "$FAIL_WHY"
    dk_die "deploy of $deploying failed ($why), and the rollback to $previous failed too ($FAIL_WHY): see the logs above"
fi
record_deploy "$deploying" "$([[ -n $rollback_tag ]] && echo rollback || echo deploy)"

# The tag to name for going back: what ran before, or, when that was this same tag (a redeploy),
# the last other one the history records whose images are still here.
back=$previous
if [[ -z $back || $back == "$deploying" ]]; then
    back=$(awk -v cur="$deploying" '$2 != cur { t = $2 } END { print t }' "$(state_file)" 2>/dev/null || true)
    if [[ -n $back && -z $(image_id "$prefix-front:$back") ]]; then back=''; fi
fi
bind=$(dk_setting HTTP_BIND 0.0.0.0)
host=$bind
[[ $host == 0.0.0.0 ]] && host=$(hostname -I 2>/dev/null | awk '{print $1}')
tls_line="https://${host:-127.0.0.1}:$https_port/"
[[ -s $secrets_dir/tls_ca.pem ]] && tls_line+="   (curl --cacert $secrets_dir/tls_ca.pem https://localhost:$https_port/items)"
if [[ -n $rollback_tag ]]; then
    log "rolled back to $rollback_tag in $((SECONDS - start)) s (healthy after ${healthy_after} s; was: ${previous:-unknown})"
fi
cat >&2 <<EOF
[deploy] the stack is up: $deploying, healthy after ${healthy_after} s, deployed in $((SECONDS - start)) s
[deploy]   page    http://${host:-127.0.0.1}:$port/   (also $base/)$([[ $https_only == 1 ]] && echo "   (HTTPS_ONLY=1: a redirect)")
[deploy]   HTTPS   $tls_line
[deploy]   API     $base/status   $base/items
[deploy]   token   $secrets_dir/api_token (for POST/PUT/DELETE)
[deploy]   back    scripts/deploy.sh --rollback ${back:-TAG}   (${back:+the deployment before; }history: $(state_file))
[deploy]   stop    scripts/deploy.sh --down   (--purge also deletes the data)
EOF
if ((monitoring)); then
    log "  metrics http://127.0.0.1:$(dk_setting PROMETHEUS_PORT 9090)/consoles/items.html   (Prometheus, this host only; alerts: http://127.0.0.1:$(dk_setting PROMETHEUS_PORT 9090)/alerts)"
fi
if [[ $https_only != 1 && ! $bind =~ ^(127\.|::1$|localhost$) ]]; then
    log "WARNING: published on $bind with plain HTTP serving the API (HTTPS_ONLY is not 1): the API token"
    log "         of every write crosses the network in clear. On any network you do not own, set"
    log "         HTTPS_ONLY=1 in .env and run scripts/deploy.sh again (docs/deployment.md, \"HTTPS\")."
fi
