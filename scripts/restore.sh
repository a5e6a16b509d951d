#!/usr/bin/env bash
# Restore a dump made by scripts/backup.sh into the running compose stack.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/restore.sh [--yes] FILE

Replaces the application database of the running stack with the content of FILE (a dump made by
scripts/backup.sh, .sql or .sql.gz): the database is dropped and re-created, then the dump is
loaded, so the data is exactly what it was at backup time. The api service is stopped during the
restore (no write can interleave; the front answers 502 for API calls meanwhile) and started
again afterwards; the script returns once it is healthy.

  --yes   do not ask for confirmation (needed without a terminal)
  --help  this text

The dump is checked first (it must end with "-- Dump completed"): an incomplete file is refused
before anything is touched. Environment: COMPOSE_PROJECT_NAME (items), COMPOSE_IMPL.
EOF
}

yes=0
file=
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --yes | -y) yes=1 ;;
        -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
        *) [[ -z $file ]] || { usage >&2; exit 2; }; file=$1 ;;
    esac
    shift
done
[[ -n $file ]] || { usage >&2; exit 2; }
[[ -r $file ]] || { echo "cannot read $file" >&2; exit 1; }

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
dk_engine_running || dk_die "no Docker engine answers"
dk_detect_compose 2>/dev/null
[[ -n $(dk_cid db) ]] || dk_die "the db service is not running (scripts/deploy.sh starts it)"

cat_dump() {
    case $file in
        *.gz) gzip -dc "$file" ;;
        *) cat "$file" ;;
    esac
}
cat_dump | tail -n 1 | grep -q '^-- Dump completed' || dk_die "$file is not a complete dump: refusing to restore"

# shellcheck disable=SC2016 # expanded inside the container
database=$(dk_compose exec -T db sh -c 'printf %s "$MYSQL_DATABASE"')
[[ -n $database ]] || dk_die "the db service has no MYSQL_DATABASE"
if ((!yes)); then
    [[ -t 0 ]] || dk_die "no terminal to confirm: pass --yes"
    read -r -p "Replace every table of database '$database' with $file? [y/N] " answer
    [[ $answer == [yY]* ]] || { echo "cancelled" >&2; exit 1; }
fi

start=$SECONDS
restart_api() {
    dk_log "starting the api again"
    dk_compose start api >&2
}
dk_log "stopping the api during the restore"
dk_compose stop api >&2
trap restart_api EXIT

ident=${database//\`/\`\`}
# shellcheck disable=SC2016 # backquotes quote the SQL identifier
{
    printf 'DROP DATABASE IF EXISTS `%s`;\n' "$ident"
    printf 'CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n' "$ident"
    printf 'USE `%s`;\n' "$ident"
    cat_dump
} | dk_compose exec -T db mariadb --batch --default-character-set=utf8mb4 ||
    dk_die "loading $file failed: the database may be partial; restore again from a good dump"

trap - EXIT
restart_api
dk_wait_healthy 120 api || dk_die "the api did not become healthy after the restore"
printf '[restore] %s restored into %s in %s s\n' "$file" "$database" "$((SECONDS - start))" >&2
