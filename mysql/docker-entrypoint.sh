#!/usr/bin/env bash
# Entrypoint of the db image: MariaDB (Debian packages) with the official mysql/mariadb images' contract.
#
#   MYSQL_ROOT_PASSWORD | MYSQL_ROOT_PASSWORD_FILE   password of root@localhost (or MYSQL_RANDOM_ROOT_PASSWORD=yes,
#                                                    or MYSQL_ALLOW_EMPTY_PASSWORD=yes), first start only
#   MYSQL_ROOT_HOST                                  opt-in remote root: host part of a second root account
#                                                    with the same password (default: none, root is local
#                                                    only; without it, remote root accounts left by older
#                                                    images are dropped at start)
#   MYSQL_DATABASE                                   database created at the first start
#   MYSQL_USER, MYSQL_PASSWORD | MYSQL_PASSWORD_FILE application account, created at the first start with
#                                                    only MYSQL_USER_PRIVILEGES on MYSQL_DATABASE
#   MYSQL_USER_PRIVILEGES                            default "SELECT, INSERT, UPDATE, DELETE"
#   MYSQL_EXPORTER_PASSWORD | MYSQL_EXPORTER_PASSWORD_FILE
#                                                    the monitoring account exporter@'%' (read-only server
#                                                    status), created or re-keyed at every start
#   /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sql.xz|*.sh
#                                                    run once, in name order, inside MYSQL_DATABASE
#   MARIADB_AUTO_UPGRADE                             default 1; 0 = never run mariadb-upgrade (see below)
#   INNODB_BUFFER_POOL_SIZE                          e.g. 256M; default: derived from the memory limit
# Every MYSQL_* variable may also be spelled MARIADB_* (as in the official mariadb image).
#
# The passwords are read at the first start only (initialisation of an empty datadir): on an
# initialised datadir the secret files may be missing, empty or hold another password (a rotation
# changes the account with ALTER USER, then the file), the entrypoint never reads them.
#
# MariaDB version change (image rebuilt with another pin, mysql/Dockerfile ARG MARIADB_VERSION): at a
# start on an initialised datadir whose mysql_upgrade_info (written by mariadb-install-db and
# mariadb-upgrade) names another version than the server's, or is missing, the entrypoint dumps the
# `mysql` system schema to $DATADIR/mysql-system-backup-FROM-to-TO-TIME.sql (a file, never a directory:
# a directory in the datadir is a database), runs mariadb-upgrade against the temporary server and
# checks that mysql_upgrade_info names the server's version; a failure stops the container (exit 1).
# MARIADB_AUTO_UPGRADE=0 only logs the mismatch (then run mariadb-upgrade yourself). A datadir that a
# newer server upgraded (the image rolled back) is left as it is, with a warning: no downgrade.
#
# Memory: innodb_buffer_pool_size is half the container's memory limit (cgroup v2 memory.max or v1
# memory.limit_in_bytes), rounded down to 8 MiB, at least 32 MiB, given on mariadbd's command line;
# without a limit my.cnf's 128M stands. INNODB_BUFFER_POOL_SIZE, or --innodb-buffer-pool-size in the
# command, overrides it.
#
# Schema migrations (/usr/share/items/migrations, applied by /usr/local/bin/migrate.sh into
# MYSQL_DATABASE): at the first start before the init scripts, and at every later start before the
# server serves, on a temporary server without networking (about 0.3 s), so that no client ever
# sees a schema half-way. The runner judges what is pending from the database's own
# schema_migrations table, never from a file beside it: a restored dump is migrated again. A
# failed or refused migration stops the container (exit 1) with the file and statement in the
# log; the data stays as the migrations before it left it.
#
# The datadir is initialised only when it is empty. Initialisation writes `.docker-init-in-progress`
# first and replaces it with `.docker-init-complete` only once everything (system tables, accounts,
# init scripts) succeeded and the temporary server has shut down cleanly. A datadir that holds data but
# no completion marker (crash, kill or failed script during the first start) is refused with an
# explanation instead of being silently accepted or re-initialised.
#
# Runs as the unprivileged user `mysql` (uid 10003): it never needs root, so the container can run with
# no capabilities, no-new-privileges and a read-only root filesystem (tmpfs on /run/mysqld and /tmp).
# mariadbd is exec'ed as PID 1 and shuts down cleanly on SIGTERM.
set -euo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
# A temporary server still running (a failed upgrade or migration) is shut down cleanly first: the
# next start then needs no crash recovery.
die() {
    log "ERROR: $*"
    if [[ -n ${TEMP_PID:-} ]]; then
        stop_temp_server
    fi
    exit 1
}

# `docker run IMAGE --some-option` means mariadbd options.
if [[ ${1:-} == -* ]]; then
    set -- mariadbd "$@"
fi
# Anything else than the server (a shell, the client, a dump) runs as is.
if [[ ${1:-} != mariadbd && ${1:-} != mysqld ]]; then
    exec "$@"
fi

if [[ $(id -u) -eq 0 ]]; then
    die "refusing to run as root: run the container as the mysql user (the image's default USER 10003)"
fi

# MARIADB_X overrides MYSQL_X; X_FILE reads the value from a file (compose/swarm secrets).
env_value() {
    local name=$1 default=${2:-} v
    for v in "MARIADB_$name" "MYSQL_$name"; do
        local file_var="${v}_FILE"
        if [[ -n ${!v:-} && -n ${!file_var:-} ]]; then
            die "both $v and $file_var are set: use only one"
        fi
        if [[ -n ${!file_var:-} ]]; then
            [[ -f ${!file_var} && -r ${!file_var} ]] || die "$file_var=${!file_var}: not a file readable by uid $(id -u)"
            printf '%s' "$(<"${!file_var}")"
            return 0
        fi
        if [[ -n ${!v:-} ]]; then
            printf '%s' "${!v}"
            return 0
        fi
    done
    printf '%s' "$default"
}

# Options as mariadbd will see them (its configuration files plus the command line).
server_option() {
    local name=$1 value arg
    value=$(my_print_defaults --mysqld | sed -n "s/^--$name=//p" | tail -n1)
    for arg in "${@:2}"; do
        case $arg in --"$name"=*) value=${arg#--"$name"=} ;; esac
    done
    printf '%s' "$value"
}

# The buffer pool from the memory limit (see the header): a pool sized for the host, not for the
# container, gets the server killed by the OOM killer under load instead of just evicting pages.
memory_limit() {
    local limit='' total
    if [[ -r /sys/fs/cgroup/memory.max ]]; then
        limit=$(</sys/fs/cgroup/memory.max)
    elif [[ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]]; then
        limit=$(</sys/fs/cgroup/memory/memory.limit_in_bytes)
    fi
    [[ $limit =~ ^[0-9]+$ ]] || return 0
    # cgroup v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages): anything at or above
    # the machine's memory is no limit.
    total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    if [[ $total =~ ^[0-9]+$ ]] && ((limit >= total * 1024)); then
        return 0
    fi
    printf '%s' "$limit"
}

buffer_pool_option() {
    local arg explicit limit size mib=$((1024 * 1024))
    for arg in "${@:2}"; do
        case $arg in --innodb-buffer-pool-size=* | --innodb_buffer_pool_size=*)
            log "innodb_buffer_pool_size ${arg#*=} (command line)"
            return 0
            ;;
        esac
    done
    explicit=${INNODB_BUFFER_POOL_SIZE:-}
    if [[ -n $explicit ]]; then
        [[ $explicit =~ ^[0-9]+[KkMmGg]?$ ]] || die "INNODB_BUFFER_POOL_SIZE=$explicit: give a size such as 256M or 1G"
        log "innodb_buffer_pool_size $explicit (INNODB_BUFFER_POOL_SIZE)"
        printf '%s' "--innodb-buffer-pool-size=$explicit"
        return 0
    fi
    limit=$(memory_limit)
    if [[ -z $limit ]]; then
        log "innodb_buffer_pool_size $(server_option innodb_buffer_pool_size) (my.cnf: no container memory limit)"
        return 0
    fi
    size=$((limit / 2 / (8 * mib) * (8 * mib)))
    ((size >= 32 * mib)) || size=$((32 * mib))
    log "innodb_buffer_pool_size $((size / mib))M (half the memory limit of $((limit / mib)) MiB, rounded down to 8M, at least 32M)"
    printf '%s' "--innodb-buffer-pool-size=$((size / mib))M"
}

DATADIR=$(server_option datadir "${@:2}")
DATADIR=${DATADIR:-/var/lib/mysql}
DATADIR=${DATADIR%/}
SOCKET=$(server_option socket "${@:2}")
SOCKET=${SOCKET:-/run/mysqld/mysqld.sock}
INIT_SOCKET=$(dirname "$SOCKET")/mysqld-init.sock
MARK_DONE=$DATADIR/.docker-init-complete
MARK_BUSY=$DATADIR/.docker-init-in-progress

[[ -d $DATADIR ]] || die "datadir $DATADIR does not exist"
[[ -w $DATADIR ]] || die "datadir $DATADIR is not writable by uid $(id -u) (a bind mount owned by another user?)"
[[ -w $(dirname "$SOCKET") ]] || die "$(dirname "$SOCKET") is not writable: mount a tmpfs there (read-only root filesystem)"

BUFFER_POOL=$(buffer_pool_option "$@")
if [[ -n $BUFFER_POOL ]]; then
    set -- "$@" "$BUFFER_POOL"
fi

# SQL string literal: escape backslashes and single quotes.
sql_str() {
    local s=${1//\\/\\\\}
    s=${s//\'/\\\'}
    printf "'%s'" "$s"
}
# shellcheck disable=SC2016 # literal backquotes
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }
random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

TEMP_PID=
stop_temp_server() {
    if [[ -n $TEMP_PID ]] && kill -0 "$TEMP_PID" 2>/dev/null; then
        kill -TERM "$TEMP_PID"
        wait "$TEMP_PID" || true
    fi
    TEMP_PID=
}
on_signal() {
    log "signal received during initialisation or migration: stopping (a first initialisation stays marked as incomplete)"
    stop_temp_server
    exit 143
}

client() { mariadb --protocol=socket --socket="$INIT_SOCKET" --user=mysql --batch --skip-column-names "$@"; }

MIGRATIONS_DIR=${MIGRATIONS_DIR:-/usr/share/items/migrations}

# Starts mariadbd without networking on INIT_SOCKET and waits until it answers. The first argument
# is an extra option or '' (--skip-log-bin on a new datadir, which has no log to keep).
# On an initialised datadir the binary log stays on: after a crash (a node lost, SIGKILL, power),
# InnoDB may hold transactions that are only prepared, whose commit the binary log records (with
# the log on, an acknowledged write is durable there, not yet in InnoDB). Crash recovery commits them
# from the log; without it the server refuses to start ("Found 1 prepared transactions! ...
# --tc-heuristic-recover"), and the db never came back after its node was lost. The entrypoint's own
# account statements set sql_log_bin = 0; migrations are logged, as a point-in-time replay needs.
start_temp_server() {
    local binlog_opt=$1
    shift
    log "starting a temporary server (no networking, socket $INIT_SOCKET)"
    "$@" --skip-networking --socket="$INIT_SOCKET" ${binlog_opt:+"$binlog_opt"} \
        --loose-innodb_buffer_pool_load_at_startup=0 --loose-innodb_buffer_pool_dump_at_shutdown=0 &
    TEMP_PID=$!
    local deadline=$((SECONDS + ${MARIADB_INIT_TIMEOUT:-120}))
    until client -e 'SELECT 1' >/dev/null 2>&1; do
        kill -0 "$TEMP_PID" 2>/dev/null || { TEMP_PID=; die "the temporary server exited during start-up"; }
        ((SECONDS < deadline)) || die "the temporary server did not answer within ${MARIADB_INIT_TIMEOUT:-120}s"
        sleep 0.2
    done
}

# Applies the pending migrations to MYSQL_DATABASE through the temporary server.
run_migrations() {
    local database
    database=$(env_value DATABASE)
    if [[ -z $database || ! -d $MIGRATIONS_DIR ]]; then
        log "no MYSQL_DATABASE or no $MIGRATIONS_DIR: no schema migrations"
        return 0
    fi
    migrate.sh --dir "$MIGRATIONS_DIR" "$database" -- \
        mariadb --protocol=socket --socket="$INIT_SOCKET" --user=mysql ||
        die "the schema migrations of $database failed (see above): the server is not started"
}

# The first line of mysql_upgrade_info, reduced to the characters a version string has.
datadir_version() {
    [[ -f $DATADIR/mysql_upgrade_info ]] || return 0
    head -n 1 "$DATADIR/mysql_upgrade_info" | tr -cd 'A-Za-z0-9.+_-'
}

# mariadb-upgrade when the server's version (X.Y.Z) is not the one that last upgraded the datadir.
# Through the temporary server, before the migrations: they may rely on the upgraded system tables.
upgrade_if_needed() {
    local server from auto backup upgraded stamp
    server=$(client -e 'SELECT VERSION()') || die "cannot read the server's version from the temporary server"
    from=$(datadir_version)
    if [[ -n $from && ${from%%-*} == "${server%%-*}" ]]; then
        return 0
    fi
    # An older server on a datadir that a newer one upgraded (an image rolled back): mariadb-upgrade
    # is not a downgrade tool. Within a release series the server reads the datadir as it is.
    if [[ -n $from && $(printf '%s\n' "${from%%-*}" "${server%%-*}" | sort -V | tail -n 1) == "${from%%-*}" ]]; then
        log "WARNING: the datadir was last upgraded by MariaDB $from, newer than this server ($server): not running mariadb-upgrade (no downgrade). If the server fails to start, go back to the newer image or restore a dump."
        return 0
    fi
    from=${from:-unknown}
    auto=$(env_value AUTO_UPGRADE 1)
    case ${auto,,} in
        0 | no | false | off)
            log "WARNING: the datadir was last upgraded by MariaDB $from (mysql_upgrade_info), the server is $server; MARIADB_AUTO_UPGRADE=$auto: NOT upgrading. Run mariadb-upgrade yourself (docker exec into the container: mariadb-upgrade), after a backup."
            return 0
            ;;
    esac
    log "MariaDB version change: the datadir was last upgraded by $from (mysql_upgrade_info), the server is $server: backing up the system tables, then running mariadb-upgrade (MARIADB_AUTO_UPGRADE=0 disables this)"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    # In the volume beside the databases, as a file: a directory there would be a database.
    backup=$DATADIR/mysql-system-backup-$from-to-${server%%-*}-$stamp.sql
    (
        umask 077
        mariadb-dump --protocol=socket --socket="$INIT_SOCKET" --user=mysql --skip-lock-tables \
            --databases mysql >"$backup.partial"
    ) || die "the backup of the system tables failed (see above): not upgrading, the server is not started"
    # mariadb-dump writes this last line only when it dumped everything.
    tail -n 1 "$backup.partial" | grep -q '^-- Dump completed' ||
        die "the backup of the system tables in $backup.partial is incomplete: not upgrading, the server is not started"
    mv "$backup.partial" "$backup"
    log "system tables backed up to $backup ($(stat -c %s "$backup") bytes)"
    # --force: run every step even where mariadb-upgrade judges the datadir recent enough (a missing
    # or hand-edited mysql_upgrade_info); the steps are idempotent.
    mariadb-upgrade --protocol=socket --socket="$INIT_SOCKET" --user=mysql --force >&2 ||
        die "mariadb-upgrade from $from to $server failed (see above): the server is not started. The system tables as they were before are in $backup"
    upgraded=$(datadir_version)
    [[ ${upgraded%%-*} == "${server%%-*}" ]] ||
        die "mariadb-upgrade exited 0 but mysql_upgrade_info holds '${upgraded}', not $server: the server is not started"
    log "upgrade complete: mysql_upgrade_info holds $upgraded (was $from); backup of the system tables: $backup"
}

# Root is local only unless MYSQL_ROOT_HOST asks for a remote root: a root@'%' (or any remote root)
# that an older image created is dropped. The local administrators stay: mysql@localhost through
# the unix socket (what `docker exec` gets) and root@localhost.
drop_remote_root() {
    local hosts h
    [[ -z $(env_value ROOT_HOST) ]] || return 0
    hosts=$(client -e "SELECT Host FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost'") ||
        die "cannot list the root accounts"
    while IFS= read -r h; do
        [[ -n $h ]] || continue
        log "dropping the remote root account root@'$h': root is local only (set MYSQL_ROOT_HOST to have a remote root)"
        client -e "SET SESSION sql_log_bin = 0; DROP USER 'root'@$(sql_str "$h")" || die "DROP USER 'root'@'$h' failed"
    done <<<"$hosts"
}

# The monitoring account (prometheus-mysqld-exporter), when MYSQL_EXPORTER_PASSWORD(_FILE) is set:
# `exporter`@'%' with only what the exporter reads (server status and variables, the process list,
# replication state, performance_schema) and at most 3 connections. Unlike the other accounts, its
# password is (re)set from the secret at every start: rotating it is replacing the file and
# restarting db and mysqld-exporter, and a stack deployed before the monitoring tier gets the
# account at its next start. No secret: nothing is done (an existing account is left as it is).
ensure_exporter_account() {
    local password
    password=$(env_value EXPORTER_PASSWORD)
    [[ -n $password ]] || return 0
    {
        echo "SET SESSION sql_log_bin = 0;"
        echo "CREATE USER IF NOT EXISTS 'exporter'@'%' IDENTIFIED BY $(sql_str "$password") WITH MAX_USER_CONNECTIONS 3;"
        echo "ALTER USER 'exporter'@'%' IDENTIFIED BY $(sql_str "$password") WITH MAX_USER_CONNECTIONS 3;"
        echo "GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'exporter'@'%';"
        echo "GRANT SELECT ON performance_schema.* TO 'exporter'@'%';"
    } | client || die "creating the monitoring account exporter@'%' failed"
    log "monitoring account exporter@'%' ready (PROCESS, REPLICATION CLIENT, SELECT on performance_schema)"
}

# A start on an initialised datadir, on one temporary server: the MariaDB version check (and upgrade),
# the remote root accounts, the monitoring account, then the pending migrations (none, most of the time).
start_initialised() {
    trap on_signal TERM INT
    start_temp_server '' "$@"
    upgrade_if_needed
    drop_remote_root
    ensure_exporter_account
    run_migrations
    log "stopping the temporary server"
    stop_temp_server
    trap - TERM INT
}

initialise() {
    local root_password root_host database user password privileges healthcheck_password f
    root_password=$(env_value ROOT_PASSWORD)
    root_host=$(env_value ROOT_HOST)
    database=$(env_value DATABASE)
    user=$(env_value USER)
    password=$(env_value PASSWORD)
    privileges=$(env_value USER_PRIVILEGES "SELECT, INSERT, UPDATE, DELETE")

    if [[ -z $root_password ]]; then
        if [[ -n $(env_value RANDOM_ROOT_PASSWORD) ]]; then
            root_password=$(random_secret)
            log "MYSQL_RANDOM_ROOT_PASSWORD set: root gets a random password that is not shown (use the local socket account)"
        elif [[ -z $(env_value ALLOW_EMPTY_PASSWORD) ]]; then
            die "the database is uninitialised and no root password is given: set MYSQL_ROOT_PASSWORD_FILE (or MYSQL_ROOT_PASSWORD, MYSQL_RANDOM_ROOT_PASSWORD=yes, MYSQL_ALLOW_EMPTY_PASSWORD=yes)"
        fi
    fi
    if [[ -n $user && -z $password ]]; then
        die "MYSQL_USER=$user is set but MYSQL_PASSWORD(_FILE) is not"
    fi
    if [[ -n $user && -z $database ]]; then
        die "MYSQL_USER=$user is set but MYSQL_DATABASE is not: the account would have no schema to work on"
    fi
    if [[ $user == root ]]; then
        die "MYSQL_USER must not be root (MYSQL_ROOT_PASSWORD configures root)"
    fi
    local privileges_re='^[A-Za-z][A-Za-z ,]*$'
    [[ $privileges =~ $privileges_re ]] || die "MYSQL_USER_PRIVILEGES must be a comma-separated list of privilege names"

    trap on_signal TERM INT
    umask 077
    printf 'initialisation started %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$MARK_BUSY"

    log "initialising an empty datadir $DATADIR"
    mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=socket \
        --auth-root-socket-user=mysql --skip-test-db --skip-name-resolve --skip-log-bin \
        --default-time-zone=SYSTEM --loose-innodb_buffer_pool_load_at_startup=0 \
        --loose-innodb_buffer_pool_dump_at_shutdown=0 >/tmp/install-db.log 2>&1 || {
        cat /tmp/install-db.log >&2
        die "mariadb-install-db failed"
    }

    start_temp_server --skip-log-bin "$@"

    healthcheck_password=$(random_secret)
    {
        echo "SET SESSION sql_log_bin = 0;"
        # mariadb-install-db adds a proxy grant for the container's host name, which changes at every
        # container creation and only yields a warning under skip-name-resolve.
        echo "DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '%');"
        echo "FLUSH PRIVILEGES;"
        # root@localhost: the password (if any), or the unix socket for the OS root. No remote root
        # unless MYSQL_ROOT_HOST asks for one: whoever can `docker exec` administers through the socket
        # (as mysql@localhost, which mariadb-install-db made for the OS user running it).
        if [[ -n $root_password ]]; then
            echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($(sql_str "$root_password"));"
        else
            echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');"
        fi
        if [[ -n $root_host && $root_host != localhost ]]; then
            echo "CREATE USER 'root'@$(sql_str "$root_host") IDENTIFIED BY $(sql_str "$root_password");"
            echo "GRANT ALL ON *.* TO 'root'@$(sql_str "$root_host") WITH GRANT OPTION;"
            echo "GRANT PROXY ON ''@'%' TO 'root'@$(sql_str "$root_host") WITH GRANT OPTION;"
        fi
        # healthcheck: no privileges at all, local only; its password lives in a 0600 option file.
        for h in localhost 127.0.0.1 ::1; do
            echo "CREATE USER 'healthcheck'@'$h' IDENTIFIED BY $(sql_str "$healthcheck_password");"
        done
        if [[ -n $database ]]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$database") CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        fi
        if [[ -n $user ]]; then
            echo "CREATE USER $(sql_str "$user")@'%' IDENTIFIED BY $(sql_str "$password");"
            echo "GRANT $privileges ON $(sql_ident "$database").* TO $(sql_str "$user")@'%';"
        fi
    } | client || die "creating the accounts failed"
    ensure_exporter_account
    printf '[mariadb-client]\nuser=healthcheck\npassword=%s\nport=3306\nsocket=%s\n' \
        "$healthcheck_password" "$SOCKET" >"$DATADIR/.my-healthcheck.cnf"

    # The schema, by the path every later upgrade takes; the init scripts (the seed) come after.
    run_migrations

    local dbargs=()
    [[ -n $database ]] && dbargs=("$database")
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sh)
                log "running $f"
                if [[ -x $f ]]; then "$f"; else
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql) log "running $f"; client "${dbargs[@]}" <"$f" || die "$f failed" ;;
            *.sql.gz) log "running $f"; gzip -dc "$f" | client "${dbargs[@]}" || die "$f failed" ;;
            *.sql.xz) log "running $f"; xz -dc "$f" | client "${dbargs[@]}" || die "$f failed" ;;
            *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob

    log "stopping the temporary server"
    stop_temp_server
    sync
    mv "$MARK_BUSY" "$MARK_DONE"
    sync
    trap - TERM INT
    log "initialisation complete"
}

is_empty_dir() { [[ -z $(find "$1" -mindepth 1 -maxdepth 1 ! -name lost+found -print -quit) ]]; }

if [[ -f $MARK_DONE ]]; then
    log "datadir $DATADIR already initialised"
    start_initialised "$@"
elif [[ -f $MARK_BUSY ]]; then
    die "the datadir $DATADIR holds a half-finished initialisation ($(<"$MARK_BUSY"); the first start crashed, was killed or an init script failed; see the logs of that start). Refusing to start on it. If it holds nothing you need, remove the volume (scripts/deploy.sh --down --purge, or docker volume rm) and start again."
elif is_empty_dir "$DATADIR"; then
    initialise "$@"
else
    die "the datadir $DATADIR is not empty but was not initialised by this entrypoint (no $(basename "$MARK_DONE")). Refusing to start on it. If it is a complete datadir created elsewhere, adopt it with: touch $MARK_DONE (and create the healthcheck account, see docs/deployment.md)."
fi

log "starting $*"
exec "$@"
