#!/usr/bin/env bash
# Restore a dump made by scripts/backup.sh into the running stack, in a way that cannot make things
# worse: the current data is backed up first, the dump is loaded and checked beside the live
# database, and only a verified copy replaces the live tables, in one atomic RENAME, while the api
# is stopped.
# shellcheck disable=SC2016 # in this file, backquotes in single quotes quote SQL identifiers
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/restore.sh [--yes] [--swarm] FILE

Replaces the tables of the application database (MYSQL_DATABASE of the db service) of the running
stack with the content of FILE (a dump made by scripts/backup.sh, .sql or .sql.gz), so that the
data is exactly what it was at backup time. In order:

  1. FILE must end with "-- Dump completed"; then the current data is backed up with
     scripts/backup.sh into BACKUP_DIR (items-<time>-pre-restore.sql.gz). If either fails,
     nothing is changed.
  2. FILE is loaded into a side database, <database>_restore (made afresh); the live database is
     not touched and the api keeps serving. A dump that names a database (CREATE DATABASE, USE)
     is loaded into the side database all the same.
  3. The side database is checked: the items table exists and holds as many rows as FILE does;
     its schema is brought to the db image's migrations with the image's own runner (a dump from
     before a migration: the workers need the current schema), and refused when it is newer than
     the image knows (or its recorded migrations were edited); no view, routine or event (they
     would not move). A load or check that fails stops here: the live database and the api are
     untouched, and the script says so.
  4. The api is stopped (no write may land during the swap; the front answers 502 or 504 for API
     calls meanwhile), the triggers are taken off both sides (MariaDB moves no table with a
     trigger to another database), one RENAME TABLE moves every live table to
     <database>_pre_restore_<time> and every restored one into the live database, the restored
     triggers are created again there, and the result is checked (rows, triggers, schema version).
  5. The api starts again; once it is healthy, the tables from before are dropped (the
     pre-restore backup keeps them). The script returns once the api is healthy.

If anything fails after the api was stopped, the api is left STOPPED (it never serves a database
that may be partial), and the script says what failed, where the pre-restore backup is, and the
commands to put it back or to start the api anyway; it exits 1.

  --yes    do not ask for confirmation (needed without a terminal)
  --swarm  restore into the Swarm stack STACK_NAME (items): its db task must run on this node (the
           one holding its volume), and this engine must be a manager; the api service is scaled
           to 0 during the swap and back to its replicas after
  --help   this text

Environment: COMPOSE_PROJECT_NAME (items), COMPOSE_IMPL, STACK_NAME (items, with --swarm),
BACKUP_DIR (see scripts/backup.sh --help).
For tests only: RESTORE_FAIL_AFTER_STOP=1 simulates a fault after the api stopped, right after
the RENAME and before the triggers are created again (the failure path above).
EOF
}

yes=0 swarm=0 file=
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --yes | -y) yes=1 ;;
        --swarm) swarm=1 ;;
        -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
        *) [[ -z $file ]] || { usage >&2; exit 2; }; file=$1 ;;
    esac
    shift
done
[[ -n $file ]] || { usage >&2; exit 2; }
[[ -r $file ]] || { echo "cannot read $file" >&2; exit 1; }

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"

log() { printf '[restore] %s\n' "$*" >&2; }

dk_engine_running || dk_die "no Docker engine answers"
stack=${STACK_NAME:-items}
if ((swarm)); then
    [[ $(dk_swarm_state) == manager ]] ||
        dk_die "--swarm: this engine is no swarm manager (the api service is scaled from one)"
    api_service=${stack}_api
    docker service inspect "$api_service" >/dev/null 2>&1 || dk_die "no service $api_service"
else
    dk_detect_compose 2>/dev/null
fi
db=$(dk_db_container "$swarm" "$stack")
if [[ -z $db ]]; then
    ((swarm)) && dk_die "no task of ${stack}_db runs on this node (restore on the node that holds its volume)"
    dk_die "the db service is not running (scripts/deploy.sh starts it)"
fi

cat_dump() {
    case $file in
        *.gz) gzip -dc "$file" ;;
        *) cat "$file" ;;
    esac
}
cat_dump | tail -n 1 | grep -q '^-- Dump completed' ||
    dk_die "$file is not a complete dump: refusing to restore (nothing changed)"

# SQL through the db container's client, as its OS user over the socket (unix_socket: no password).
sql() { docker exec -i "$db" mariadb --batch --skip-column-names --default-character-set=utf8mb4; }

# shellcheck disable=SC2016 # expanded inside the container
database=$(docker exec "$db" sh -c 'printf %s "$MYSQL_DATABASE"')
[[ -n $database ]] || dk_die "the db service has no MYSQL_DATABASE"
# Plain names only: they are spliced into SQL and into a sed expression below.
[[ $database =~ ^[A-Za-z0-9_]+$ ]] || dk_die "database name '$database': only letters, digits and _ are handled"
side=${database}_restore
old=${database}_pre_restore_$(date -u +%Y%m%dT%H%M%SZ)

if ((!yes)); then
    [[ -t 0 ]] || dk_die "no terminal to confirm: pass --yes"
    read -r -p "Replace every table of database '$database' with $file? [y/N] " answer
    [[ $answer == [yY]* ]] || { echo "cancelled" >&2; exit 1; }
fi
start=$SECONDS

# ---- 1. the current data, backed up first --------------------------------------------------------
# A name of its own, never an existing file: backup.sh's default name has a one-second resolution,
# and a backup taken in the same second as FILE would replace the very dump being restored.
default_dir=/var/backups/items
((EUID == 0)) || default_dir=${XDG_STATE_HOME:-$HOME/.local/state}/items/backups
backup_dir=$(dk_setting BACKUP_DIR "$default_dir")
pre_backup=$backup_dir/items-$(date -u +%Y%m%dT%H%M%SZ)-pre-restore.sql.gz
n=1
while [[ -e $pre_backup ]]; do
    pre_backup=$backup_dir/items-$(date -u +%Y%m%dT%H%M%SZ)-pre-restore-$n.sql.gz
    n=$((n + 1))
done
backup_args=()
((swarm)) && backup_args=(--swarm)
log "backing up the current data first: $pre_backup"
STACK_NAME=$stack "$DK_ROOT/scripts/backup.sh" "${backup_args[@]}" "$pre_backup" ||
    dk_die "the backup of the current data failed: nothing was changed, the api still serves"

# ---- 2. the dump loaded beside the live database -------------------------------------------------
drop_side() { printf 'DROP DATABASE IF EXISTS `%s`;\n' "$side" | sql || true; }
# Until the api stops, any failure leaves only the side database to clean up.
trap drop_side EXIT
refuse() {
    drop_side
    trap - EXIT
    dk_die "$*: nothing was changed (the live database $database is untouched, the api still serves)"
}

# The rows FILE holds for table $1. mariadb-dump writes them as INSERT INTO `t` VALUES followed by
# the tuples (one line, or one a line), every string quoted with its quotes escaped (\' or ''): with
# the strings removed, what remains of the values has no parenthesis but the tuples' own.
dump_rows() {
    sed -E "s/'([^'\\\\]|\\\\.)*'//g" | awk -v head="INSERT INTO \`$1\` " '
        index($0, head) == 1 { ins = 1; sub(/^.* VALUES/, "") }
        ins { n += gsub(/\(/, ""); if ($0 ~ /;[[:space:]]*$/) ins = 0 }
        END { print n + 0 }'
}
expected=$(cat_dump | dump_rows items)

log "loading $file into the side database $side (the live database and the api are not touched)"
# A dump made with --databases names its database: its CREATE/DROP DATABASE go, its USE points to
# the side database, so nothing of it can land in the live one.
if ! {
    printf 'DROP DATABASE IF EXISTS `%s`;\n' "$side"
    printf 'CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n' "$side"
    printf 'USE `%s`;\n' "$side"
    cat_dump | sed -E -e '/^(CREATE|DROP) DATABASE /d' -e "s/^USE \`[^\`]*\`;/USE \`$side\`;/"
} | sql; then
    refuse "loading $file failed (see the error above)"
fi

# ---- 3. the side database checked ----------------------------------------------------------------
# One query, its rows tab-separated (no -i: the client must not read the script's own input).
q() { docker exec "$db" mariadb --batch --skip-column-names --default-character-set=utf8mb4 -e "$1"; }
# The base tables, and the triggers, of schema $1, one name a line.
tables_of() {
    q "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$1' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
}
triggers_of() { q "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$1' ORDER BY 1"; }
tables=$(tables_of "$side")
grep -qx items <<<"$tables" || refuse "$file holds no items table"
extra=$(q "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$side' AND TABLE_TYPE <> 'BASE TABLE')
    + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$side')
    + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$side')")
[[ $extra == 0 ]] || refuse "$file holds views, routines or events, which RENAME TABLE would not move"
rows=$(q "SELECT COUNT(*) FROM \`$side\`.items")
[[ $rows == "$expected" ]] || refuse "the side database holds $rows items where $file has $expected"

# The schema: the image's migrations (none in an image from before them) are the reference.
known=$(docker exec "$db" sh -c 'ls /usr/share/items/migrations 2>/dev/null' |
    sed -n 's/^\([0-9]\{4\}\)_.*\.sql$/\1/p' | sort | tail -n 1)
known=$((10#${known:-0}))
version() {
    if grep -qx schema_migrations <<<"$(tables_of "$side")"; then
        q "SELECT COALESCE(MAX(version), 0) FROM \`$side\`.schema_migrations"
    else
        echo 0
    fi
}
dumped=$(version)
((dumped <= known)) || refuse "$file is at schema version $dumped, newer than the $known migrations this db image knows"
if ((dumped < known)); then
    # The running workers need the current schema; the db itself would apply these at its next start.
    log "bringing the side database from schema version $dumped to $known (the image's migrations)"
    docker exec "$db" migrate.sh --dir /usr/share/items/migrations "$side" -- \
        mariadb --protocol=socket --user=mysql ||
        refuse "the migrations of the side database failed (see above)"
    [[ $(version) == "$known" ]] || refuse "the side database is not at schema version $known after its migrations"
    [[ $(q "SELECT COUNT(*) FROM \`$side\`.items") == "$expected" ]] || refuse "the migrations changed the number of items"
    # They add tables (schema_migrations to a dump from before migrations): all of them move.
    tables=$(tables_of "$side")
fi

# Its triggers, as SQL that re-creates them (with their sql_mode and character set) in the current
# database; then off the side tables, which could not be moved with them.
trigger_sql=$(docker exec "$db" mariadb-dump --no-create-info --no-data --triggers --skip-routines \
    --skip-events --skip-lock-tables --default-character-set=utf8mb4 "$side") ||
    refuse "reading the triggers of the side database failed"
mapfile -t side_triggers < <(triggers_of "$side")
for t in "${side_triggers[@]}"; do
    q "DROP TRIGGER \`$side\`.\`$t\`" || refuse "dropping trigger $t of the side database failed"
done
log "checked: $rows items, schema version $known, ${#side_triggers[@]} trigger(s)"

# ---- 4. the swap, with the api stopped ----------------------------------------------------------
if ((swarm)); then
    replicas=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "$api_service")
    start_api_cmd="docker service scale $api_service=$replicas"
else
    start_api_cmd="${COMPOSE[*]} --project-directory $DK_ROOT -f $COMPOSE_FILE_PATH -p $COMPOSE_PROJECT start api"
fi
if ((swarm)); then
    restore_cmd="STACK_NAME=$stack $DK_ROOT/scripts/restore.sh --yes --swarm $pre_backup"
else
    restore_cmd="COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT $DK_ROOT/scripts/restore.sh --yes $pre_backup"
fi
state="the live database $database is unchanged"

# After the stop, a failure leaves the api stopped: starting it on a database in an unknown state is
# what this script exists to avoid. What to do is printed instead.
stopped_failure() {
    local what=$1
    trap - EXIT
    {
        printf '[restore] FAILED after the api was stopped: %s\n' "$what"
        printf '[restore] The api is left STOPPED; %s.\n' "$state"
        printf '[restore] The data from before this restore: %s\n' "$pre_backup"
        if [[ $(q "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$old'" 2>/dev/null) == 1 ]]; then
            printf '[restore] (its tables are also kept in database %s; drop it once the data is back)\n' "$old"
        fi
        printf '[restore] To put that data back (the api starts again at the end):\n'
        printf '[restore]     %s\n' "$restore_cmd"
        printf '[restore] To start the api anyway on the database as it is:\n'
        printf '[restore]     %s\n' "$start_api_cmd"
    } >&2
    exit 1
}
trap 'stopped_failure "unexpected error (exit status $?)"' EXIT

stopped_at=$SECONDS
log "stopping the api for the swap"
if ((swarm)); then
    docker service scale "$api_service=0" >&2 || stopped_failure "scaling $api_service to 0 failed"
else
    dk_compose stop api >&2 || stopped_failure "stopping the api failed"
fi

mapfile -t live_tables < <(tables_of "$database")
mapfile -t live_triggers < <(triggers_of "$database")
renames=()
for t in "${live_tables[@]}"; do renames+=("\`$database\`.\`$t\` TO \`$old\`.\`$t\`"); done
while IFS= read -r t; do renames+=("\`$side\`.\`$t\` TO \`$database\`.\`$t\`"); done <<<"$tables"
swap_sql=$(
    printf 'CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n' "$old"
    for t in "${live_triggers[@]}"; do printf 'DROP TRIGGER `%s`.`%s`;\n' "$database" "$t"; done
    # One statement: every table moves, or none does.
    printf 'RENAME TABLE %s;\n' "$(IFS=,; printf '%s' "${renames[*]}")"
)
state="the live database $database may have lost its triggers (${live_triggers[*]:-none}) or tables:"
state+=" do not serve it as it is"
sql <<<"$swap_sql" || stopped_failure "the swap (RENAME TABLE) failed"
state="the live database $database holds the restored tables but not their triggers (${side_triggers[*]:-none}) yet"
if [[ ${RESTORE_FAIL_AFTER_STOP:-} == 1 ]]; then
    stopped_failure "RESTORE_FAIL_AFTER_STOP=1 (a simulated fault, for tests only)"
fi
{ printf 'USE `%s`;\n' "$database"; printf '%s\n' "$trigger_sql"; } | sql ||
    stopped_failure "creating the triggers again in $database failed"
state="the live database $database holds the restored data, which failed its check"
[[ $(q "SELECT COUNT(*) FROM \`$database\`.items") == "$expected" ]] ||
    stopped_failure "the live items table does not hold the $expected items of $file after the swap"
[[ $(q "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$database'") == "${#side_triggers[@]}" ]] ||
    stopped_failure "the live database does not have the ${#side_triggers[@]} trigger(s) of the restored one"
if ((known > 0)); then
    [[ $(q "SELECT COALESCE(MAX(version), 0) FROM \`$database\`.schema_migrations") == "$known" ]] ||
        stopped_failure "the live database is not at schema version $known after the swap"
fi
printf 'DROP DATABASE `%s`;\n' "$side" | sql || log "could not drop the (empty) side database $side"

# ---- 5. the api back -----------------------------------------------------------------------------
state="the live database $database holds the restored, checked data, but the api did not come up healthy on it"
log "starting the api again"
if ((swarm)); then
    docker service scale "$api_service=$replicas" >&2 || stopped_failure "scaling $api_service back to $replicas failed"
    if ! dk_wait_stack 180 "$stack"; then
        docker service scale "$api_service=0" >&2 || true
        stopped_failure "the stack did not become healthy after the restore (see: docker service logs $api_service)"
    fi
else
    dk_compose start api >&2 || stopped_failure "starting the api failed"
    if ! dk_wait_healthy 120 api; then
        api_logs="docker logs $(dk_cid api)"
        # Stopped again: what the message below says, and no 503s served from it meanwhile.
        dk_compose stop api >&2 || true
        stopped_failure "the api did not become healthy after the restore (see: $api_logs)"
    fi
fi
trap - EXIT
printf 'DROP DATABASE `%s`;\n' "$old" | sql ||
    log "could not drop $old (the tables from before the restore): drop it by hand"
printf '[restore] %s restored into %s: %s items, in %s s (api stopped %s s); the data from before: %s\n' \
    "$file" "$database" "$expected" "$((SECONDS - start))" "$((SECONDS - stopped_at))" "$pre_backup" >&2
