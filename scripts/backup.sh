#!/usr/bin/env bash
# Consistent logical dump of the application database from the running compose stack (or, with
# --swarm, from the Swarm stack's db task on this node).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/backup.sh [--swarm] [--keep N] [FILE]

Dumps the application database (MYSQL_DATABASE of the db service) from the running stack with
mariadb-dump --single-transaction (a consistent snapshot of the InnoDB tables, taken without
blocking the api's reads and writes), compressed with gzip.

  FILE      where to write the dump (default: BACKUP_DIR/items-YYYYMMDDTHHMMSSZ.sql.gz);
            written 0600, and only once the dump completed ("-- Dump completed").
  --keep N  then delete all but the N newest items-*.sql.gz of that directory (retention; a
            scheduled run uses it: scripts/systemd/items-backup.timer)
  --swarm   dump from the db task of the Swarm stack STACK_NAME (items), which must run on this
            node (the one holding its volume)
  --help    this text

BACKUP_DIR (environment, else .env): [/var/backups/items as root, else ~/.local/state/items/backups]:
outside the checkout, so that a `git clean -xfd` or a new clone does not take the backups with it;
made 0700.

The dump runs inside the db container as its unprivileged OS user, authenticated by the local
unix socket (no password anywhere). With the binary log on (the db image), it records its
position in it, for point-in-time recovery (docs/deployment.md). It holds the schema and the rows
of the application database, not the accounts: those come from the secrets at the first start of
a volume.
Restore with scripts/restore.sh FILE. Environment: COMPOSE_PROJECT_NAME (items), COMPOSE_IMPL,
STACK_NAME (items, with --swarm).
EOF
}

swarm=0 keep=""
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --swarm) swarm=1 ;;
        --keep)
            keep=${2:-}
            [[ $keep =~ ^[1-9][0-9]*$ ]] || { echo "--keep needs a number of dumps (1 or more)" >&2; exit 2; }
            shift
            ;;
        -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
(($# <= 1)) || { usage >&2; exit 2; }

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
dk_engine_running || dk_die "no Docker engine answers"
stack=${STACK_NAME:-items}
((swarm)) || dk_detect_compose 2>/dev/null
db=$(dk_db_container "$swarm" "$stack")
if [[ -z $db ]]; then
    ((swarm)) && dk_die "no task of ${stack}_db runs on this node (back up on the node that holds its volume)"
    dk_die "the db service is not running (scripts/deploy.sh starts it)"
fi

default_dir=/var/backups/items
((EUID == 0)) || default_dir=${XDG_STATE_HOME:-$HOME/.local/state}/items/backups
dir=$(dk_setting BACKUP_DIR "$default_dir")
out=${1:-$dir/items-$(date -u +%Y%m%dT%H%M%SZ).sql.gz}
(umask 077 && mkdir -p "$(dirname "$out")")
umask 077
tmp=$(mktemp "$(dirname "$out")/.backup.XXXXXX")
trap 'rm -f "$tmp"' EXIT

start=$SECONDS
# With the binary log on (the db image), the dump records its position in it as a comment
# ("-- CHANGE MASTER TO MASTER_LOG_FILE=..."): where a point-in-time recovery replays from.
# shellcheck disable=SC2016 # $MYSQL_DATABASE and $@ are expanded inside the container
docker exec "$db" sh -c 'if [ "$(mariadb --batch --skip-column-names -e "SELECT @@log_bin")" = 1 ]; then
        set -- --master-data=2; fi
    exec mariadb-dump --single-transaction --quick --routines --triggers \
    --events --hex-blob --default-character-set=utf8mb4 --add-drop-table "$@" "$MYSQL_DATABASE"' |
    gzip -c >"$tmp"
if ! gzip -dc "$tmp" | tail -n 1 | grep -q '^-- Dump completed'; then
    dk_die "the dump is incomplete: nothing written"
fi
mv "$tmp" "$out"
trap - EXIT
printf '[backup] %s (%s bytes) in %s s\n' "$out" "$(stat -c %s "$out")" "$((SECONDS - start))" >&2

# Retention: the N newest dumps of this one's directory stay (by name: the names sort by time).
if [[ -n $keep ]]; then
    mapfile -t old < <(find "$(dirname "$out")" -maxdepth 1 -type f -name 'items-*.sql.gz' -printf '%f\n' |
        sort -r | tail -n +$((keep + 1)))
    for f in "${old[@]}"; do
        rm -f -- "$(dirname "$out")/$f"
    done
    printf '[backup] kept the %d newest dumps in %s (%d deleted)\n' "$keep" "$(dirname "$out")" "${#old[@]}" >&2
fi
