#!/usr/bin/env bash
# Rotate one secret of the running stack without a failed request: change it where it is checked
# (MariaDB, for the passwords), replace the file atomically, and roll the api onto it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/rotate-secret.sh [--swarm] db_password|api_token|db_root_password

Replaces one secret of the running stack with a new random one (32 bytes, hex, as
scripts/secrets.sh makes them) and applies it:

  db_password       ALTER USER of the application account in MariaDB (connections already open
                    stay logged in), then the file, then the api is rolled: new api containers start
                    with the new password, and only once each answers /status 200 with the database
                    connected are the old ones stopped (gracefully: requests in flight finish).
  api_token         the file, then the api is rolled the same way: the old token is refused (401)
                    once the old containers are gone; clients need the new one (writes only).
  db_root_password  ALTER USER of root@localhost (root exists on the db's unix socket only), then
                    the file. Nothing to roll: the db reads it only when initialising a volume.

The db itself reads neither password after its first start, so it is not restarted. The file is
replaced by a rename (never half-written); a failure before the roll changes nothing, a failure
during it puts the old secret back (MariaDB and file) and keeps the old api containers serving.
Rolling doubles the api containers for a moment (compose: `up --scale`; no fixed addresses, the
front re-resolves `api` every second), so zero requests fail (tested in the compose suite under load).
With API_TRANSPORT=unix (compose's default) the new api, finding the old one on fcgi.sock, listens
on the front's backup socket fcgi-next.sock; once it is ready, its socket is renamed over fcgi.sock
(one atomic step: every new connection goes to the new api), and the old api finishes the
connections it already has before it stops.

  --swarm   the Swarm stack STACK_NAME (items): the file becomes a new Swarm secret version, and
            scripts/deploy.sh --swarm --no-build rolls the api onto it (start-first). For
            db_root_password the new version reaches the db at the next deploy, which restarts it.
  --help    this text

Environment (also read from .env): COMPOSE_PROJECT_NAME (items), SECRETS_DIR (./secrets),
MYSQL_USER (items), STACK_NAME (items), ROTATE_TIMEOUT (seconds to wait for the new api, 120).
EOF
}

swarm=0
name=""
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --swarm) swarm=1 ;;
        db_password | api_token | db_root_password)
            [[ -z $name ]] || { echo "one secret at a time (see --help)" >&2; exit 2; }
            name=$1
            ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n $name ]] || { usage >&2; exit 2; }

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
cd "$DK_ROOT"
log() { printf '[rotate] %s\n' "$*" >&2; }
die() { printf '[rotate] error: %s\n' "$*" >&2; exit 1; }

dk_engine_running || die "no Docker engine answers"
secrets_dir=$(dk_secrets_dir)
file=$secrets_dir/$name
[[ -s $file ]] || die "$file is missing or empty: nothing to rotate (scripts/secrets.sh creates the secrets)"
timeout=$(dk_setting ROTATE_TIMEOUT 120)
[[ $timeout =~ ^[0-9]+$ ]] || die "ROTATE_TIMEOUT must be a number of seconds"
user=$(dk_setting MYSQL_USER items)
[[ $user =~ ^[A-Za-z0-9_]+$ ]] || die "MYSQL_USER=$user: letters, digits and _ only"
stack=$(dk_setting STACK_NAME items)
project=$(dk_setting COMPOSE_PROJECT_NAME items)
if ((!swarm)); then dk_detect_compose; fi

old_secret=$(<"$file")
new_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# SQL as the db's administrator, through its unix socket (the container's mysql user is root
# there): on stdin, so that no password is on a command line.
db_admin() {
    docker exec -i "$db" mariadb --protocol=socket --user=mysql --batch --skip-column-names
}

# The statement that sets a password (hex: nothing to escape).
set_password_sql() {
    case $name in
        db_password) printf "ALTER USER '%s'@'%%' IDENTIFIED BY '%s';\n" "$user" "$1" ;;
        db_root_password)
            printf "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('%s');\n" "$1"
            ;;
    esac
}

# The file, replaced by a rename: a reader sees the old content or the new, never a part. Same
# owner, group and mode as before (the containers' users read it through the bind mount).
write_secret() {
    local tmp
    tmp=$(mktemp "$secrets_dir/.$name.XXXXXX")
    printf '%s' "$1" >"$tmp"
    chmod --reference="$file" "$tmp"
    chown --reference="$file" "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$file"
}

in_db=0
restore_old() {
    if ((in_db)); then
        if set_password_sql "$old_secret" | db_admin >/dev/null; then
            log "the old $name is set in MariaDB again"
        else
            log "COULD NOT set the old $name in MariaDB again: the new one is in $file; run this script again"
            return
        fi
    fi
    write_secret "$old_secret"
    log "the old $name is back in $file"
}

if [[ $name != api_token ]]; then
    db=$(dk_db_container "$swarm" "$stack")
    [[ -n $db ]] || die "no running db container (is the stack up on this machine?)"
    # The account must exist as expected before anything changes.
    check_sql="SELECT COUNT(*) FROM mysql.user WHERE User='$user' AND Host='%'"
    [[ $name == db_root_password ]] && check_sql="SELECT COUNT(*) FROM mysql.user WHERE User='root' AND Host='localhost'"
    [[ $(printf '%s;\n' "$check_sql" | db_admin) == 1 ]] || die "the account to change is not in the database"
fi

# The api containers the rotation replaces (compose).
api_containers() {
    docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=api"
}
if ((!swarm)) && [[ $name != db_root_password ]]; then
    mapfile -t old_api < <(api_containers)
    ((${#old_api[@]})) || die "no running api container in compose project $project"
fi

start=$SECONDS
if [[ $name != api_token ]]; then
    set_password_sql "$new_secret" | db_admin >/dev/null || die "ALTER USER failed: nothing changed"
    in_db=1
    log "MariaDB: the new $name is set (open connections stay logged in)"
fi
if ! write_secret "$new_secret"; then
    restore_old
    die "could not replace $file"
fi
log "$file replaced"

if [[ $name == db_root_password ]]; then
    # Checked with the password itself: a uid with no account in the container is not the socket's
    # mysql user, so only the password can let it in.
    if ! printf '[client]\npassword="%s"\n' "$new_secret" | docker exec -i -u 10002:10000 "$db" \
        mariadb --defaults-extra-file=/dev/stdin --protocol=socket --user=root -e 'SELECT 1' >/dev/null 2>&1; then
        restore_old
        die "root does not log in with the new password: rotation undone"
    fi
    log "root logs in with the new password (socket)"
    if ((swarm)); then
        log "Swarm: the new file becomes the db's secret at the next scripts/deploy.sh --swarm (it restarts the db)"
    fi
    log "done in $((SECONDS - start)) s"
    exit 0
fi

if ((swarm)); then
    if ! STACK_NAME=$stack "$DK_ROOT/scripts/deploy.sh" --swarm --no-build --no-backup; then
        log "the deploy that rolls the api onto the new $name failed: putting the old one back"
        restore_old
        STACK_NAME=$stack "$DK_ROOT/scripts/deploy.sh" --swarm --no-build --no-backup ||
            log "the deploy with the old $name failed too: see docker stack ps $stack"
        exit 1
    fi
    log "done in $((SECONDS - start)) s"
    exit 0
fi

# Compose: as many new api containers as there are old ones, beside them.
n=${#old_api[@]}
dk_compose up -d --no-deps --no-recreate --scale "api=$((2 * n))" api >&2 ||
    { restore_old; die "could not start new api containers: the old ones serve on, with the old $name"; }
mapfile -t all_api < <(api_containers)
new_api=()
for c in "${all_api[@]}"; do
    [[ " ${old_api[*]} " == *" $c "* ]] || new_api+=("$c")
done
ready() {
    local c
    for c in "${new_api[@]}"; do
        [[ $(dk_health "$c") == healthy ]] || return 1
        docker exec "$c" items-healthcheck --ready >/dev/null 2>&1 || return 1
    done
}
# The rotation undone: the new api containers removed, with (API_TRANSPORT=unix) the backup socket
# that nothing answers on any more, the old secret back; exits 1.
abandon_new_api() {
    ((${#new_api[@]})) && docker rm -f "${new_api[@]}" >/dev/null
    docker exec "${old_api[0]}" rm -f /run/items-api/fcgi-next.sock 2>/dev/null || true
    restore_old
    exit 1
}
deadline=$((SECONDS + timeout))
until ((${#new_api[@]} == n)) && ready; do
    if ((SECONDS >= deadline)); then
        log "the new api containers are not ready after $timeout s: removing them, putting the old $name back"
        for c in "${new_api[@]}"; do docker logs --tail 20 "$c" >&2 || true; done
        abandon_new_api
    fi
    sleep 1
done
log "${#new_api[@]} new api container(s) serve with the new $name"
# API_TRANSPORT=unix: the new api waits on the front's backup socket (items-pool); moved over
# fcgi.sock, it takes every new connection at once, and the old pool only finishes its own.
if [[ $(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "${new_api[0]}" | sed -n 's/^API_TRANSPORT=//p') == unix ]]; then
    if ! docker exec "${new_api[0]}" items-pool --take-over; then
        log "the new api could not take over /run/items-api/fcgi.sock: removing it, putting the old $name back"
        abandon_new_api
    fi
    log "the new api serves on /run/items-api/fcgi.sock"
fi
# The front re-resolves `api` every second: it knows the new containers before the old leave, and a
# request that finds an old one gone is passed to the next address.
sleep 2
docker stop -t 20 "${old_api[@]}" >/dev/null
docker rm "${old_api[@]}" >/dev/null
log "the old api container(s) stopped gracefully and removed; done in $((SECONDS - start)) s"
