#!/usr/bin/env bash
# Runs the whole stack on loopback without Docker: mariadbd, the worker pool
# (spawn-fcgi + multiwatch + items-fcgi) and nginx, each from Debian's packages.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"
# shellcheck source=scripts/lib/tls.sh
source "$REPO/scripts/lib/tls.sh"

usage() {
  cat <<EOF
usage: scripts/run-local.sh [--detach | --stop | --db stop|start |
                             --make-db-template DIR | --help]

Builds items-fcgi, initialises a throwaway MariaDB datadir, and starts
mariadbd, the FastCGI worker pool and nginx on 127.0.0.1. Waits until
GET /status answers 200, prints the URLs, and stops everything on Ctrl-C.
As root it installs the Debian packages it needs.

  (no option)    run in the foreground until Ctrl-C
  --detach       start in the background; return once /status is OK
  --stop         stop everything started under RUN_DIR
  --db stop      stop only mariadbd (outage drills); --db start brings it back
  --make-db-template DIR
                 initialise a MariaDB datadir once, as a start would, into
                 DIR (for DB_TEMPLATE); nothing to do when DIR is up to date
  --help         this text

Environment (defaults in brackets):
  HTTP_PORT      public port of nginx [8080]
                 (any port may be "auto": a free one is chosen, and chosen
                 again if it is taken before the daemon binds it; the ports
                 used are printed and saved in RUN_DIR/env)
  AUTO_PORT_RANGE where "auto" ports come from, LOW-HIGH [20000-32767:
                 below the kernel's ephemeral range, so that no outgoing
                 connection takes one meanwhile]
  METRICS_PORT   internal port of nginx serving /metrics [8081]
  TLS=1          also serve HTTPS on 127.0.0.1:TLS_PORT, as the front container
                 does (nginx/render-conf.sh TLS_LISTEN: TLS 1.2/1.3, HTTP/2,
                 the shared session cache), beside plain HTTP on HTTP_PORT
                 [0: plain HTTP only]. The certificate (localhost, 127.0.0.1,
                 ::1) comes from a local CA made once under RUN_DIR/tls and
                 reused: trust RUN_DIR/tls/ca.pem, e.g.
                 curl --cacert RUN_DIR/tls/ca.pem https://127.0.0.1:TLS_PORT/
                 (a certificate with less than a day left is issued again)
  TLS_PORT       HTTPS port with TLS=1 [8443]
  DB_PORT        mariadbd TCP port [3307]
  WORKER_DB_PORT the port the workers connect to [DB_PORT]: for fault drills
                 that put a proxy of their own between the workers and mariadbd
  FCGI_TRANSPORT how nginx reaches the worker pool: unix (a socket in
                 RUN_DIR/api) or tcp (127.0.0.1:FCGI_PORT) [unix]
  FCGI_PORT      worker pool TCP port, with FCGI_TRANSPORT=tcp [9000]
  FCGI_WORKERS   number of workers [number of CPUs]
  API_TOKEN      token for writes [generated into RUN_DIR/api-token]
  NO_TOKEN=1     start without a token: writes answer 403
  RUN_DIR        state, logs and pid files [/tmp/items-local-\$UID]
  BUILD_DIR      meson build directory [REPO/build]
  ITEMS_FCGI     worker binary to run instead of building one (the
                 workers run a copy of it, RUN_DIR/bin/items-fcgi)
  WRITE_RATE     writes allowed per client address [1000r/s here; 10r/s in the image]
  WRITE_BURST    writes beyond the rate served at once before 429 [1000; 20 in the image]
  DB_TEMPLATE    a DIR made by --make-db-template: a new datadir is a copy of
                 it (with RUN_DIR's own password) instead of a fresh
                 initialisation; refused when DIR was made from other mysql/
                 files or another MariaDB [unset: initialise]

Ports and settings are remembered in RUN_DIR/env for --stop and --db.

Exit status: 0 once the stack is up; 75 when a port is already in use on
127.0.0.1 (a start with only fixed ports is not retried); 1 on any other
failure. A failed start leaves nothing running.
EOF
}

# Settings: from the environment, else from a previous start under RUN_DIR.
load_settings() {
  RUN_DIR=${RUN_DIR:-/tmp/items-local-$(id -u)}
  if [[ -f $RUN_DIR/env ]]; then
    # shellcheck source=/dev/null
    source "$RUN_DIR/env"
  fi
  HTTP_PORT=${HTTP_PORT:-${SAVED_HTTP_PORT:-8080}}
  METRICS_PORT=${METRICS_PORT:-${SAVED_METRICS_PORT:-8081}}
  DB_PORT=${DB_PORT:-${SAVED_DB_PORT:-3307}}
  # Empty: DB_PORT's, once an "auto" DB_PORT is chosen.
  WORKER_DB_PORT=${WORKER_DB_PORT:-${SAVED_WORKER_DB_PORT:-}}
  FCGI_PORT=${FCGI_PORT:-${SAVED_FCGI_PORT:-9000}}
  FCGI_WORKERS=${FCGI_WORKERS:-${SAVED_FCGI_WORKERS:-$(nproc)}}
  FCGI_TRANSPORT=${FCGI_TRANSPORT:-${SAVED_FCGI_TRANSPORT:-unix}}
  case $FCGI_TRANSPORT in
    # A unix socket spares nginx and the workers a TCP handshake and
    # teardown per request (docs/performance.md).
    unix | tcp) ;;
    *) die "FCGI_TRANSPORT must be unix or tcp, not $FCGI_TRANSPORT" ;;
  esac
  BUILD_DIR=${BUILD_DIR:-$REPO/build}
  ITEMS_FCGI=${ITEMS_FCGI:-${SAVED_ITEMS_FCGI:-}}
  # A development stack: loose write limits unless asked (the image's are 10r/s, burst 20).
  WRITE_RATE=${WRITE_RATE:-${SAVED_WRITE_RATE:-1000r/s}}
  WRITE_BURST=${WRITE_BURST:-${SAVED_WRITE_BURST:-1000}}
  TLS=${TLS:-${SAVED_TLS:-0}}
  case $TLS in
    0 | 1) ;;
    *) die "TLS must be 0 or 1, not $TLS" ;;
  esac
  TLS_PORT=${TLS_PORT:-${SAVED_TLS_PORT:-8443}}
  TLS_DIR=$RUN_DIR/tls
  DB_DIR=$RUN_DIR/db
  WORKER_BIN=$RUN_DIR/bin/items-fcgi
  DB_TEMPLATE=${DB_TEMPLATE:-}
  set_users
}

# As root, the daemons drop to their own unprivileged users.
set_users() {
  if ((EUID == 0)); then
    DB_USER=mysql WORKER_USER=nobody
  else
    DB_USER=$(id -un) WORKER_USER=$(id -un)
  fi
}

save_settings() {
  # Saved only when it is not DB_PORT's: an "auto" DB_PORT changes per start.
  local worker_db_port=$WORKER_DB_PORT
  if [[ $worker_db_port == "$DB_PORT" ]]; then worker_db_port=""; fi
  cat >"$RUN_DIR/env" <<EOF
SAVED_HTTP_PORT=$HTTP_PORT
SAVED_METRICS_PORT=$METRICS_PORT
SAVED_DB_PORT=$DB_PORT
SAVED_WORKER_DB_PORT=$worker_db_port
SAVED_FCGI_PORT=$FCGI_PORT
SAVED_FCGI_WORKERS=$FCGI_WORKERS
SAVED_FCGI_TRANSPORT=$FCGI_TRANSPORT
SAVED_ITEMS_FCGI=$ITEMS_FCGI
SAVED_WRITE_RATE=$WRITE_RATE
SAVED_WRITE_BURST=$WRITE_BURST
SAVED_TLS=$TLS
SAVED_TLS_PORT=$TLS_PORT
EOF
}

# Exit status of a start that failed because a port is taken: the caller
# (or the retry below, for "auto" ports) may try other ports.
readonly EXIT_PORT_IN_USE=75
readonly PORT_IN_USE_LOG='Address already in use'

# The listening ports of this start: every one when FCGI_TRANSPORT=tcp.
listen_port_names() {
  printf '%s\n' HTTP_PORT METRICS_PORT DB_PORT
  if [[ $FCGI_TRANSPORT == tcp ]]; then echo FCGI_PORT; fi
  if ((TLS)); then echo TLS_PORT; fi
}

# Ports given as "auto", chosen afresh by pick_auto_ports before each try.
AUTO_PORTS=() WORKER_DB_PORT_FOLLOWS=0
find_auto_ports() {
  local name
  AUTO_PORTS=()
  if [[ -z $WORKER_DB_PORT ]]; then WORKER_DB_PORT_FOLLOWS=1; fi
  while read -r name; do
    if [[ ${!name} == auto ]]; then AUTO_PORTS+=("$name"); fi
  done < <(listen_port_names)
}

# Random free ports in AUTO_PORT_RANGE, distinct from each other and from
# the fixed ports of this start.
pick_auto_ports() {
  local name port taken=" " tries low high
  local range=${AUTO_PORT_RANGE:-20000-32767}
  [[ $range =~ ^([0-9]+)-([0-9]+)$ ]] || die "AUTO_PORT_RANGE=$range is not LOW-HIGH"
  low=${BASH_REMATCH[1]} high=${BASH_REMATCH[2]}
  ((low >= 1 && low <= high && high <= 65535)) || die "AUTO_PORT_RANGE=$range is not a range of ports"
  while read -r name; do
    [[ " ${AUTO_PORTS[*]} " == *" $name "* ]] || taken+="${!name} "
  done < <(listen_port_names)
  for name in "${AUTO_PORTS[@]}"; do
    for ((tries = 0; ; tries++)); do
      ((tries < 1000)) || die "no free port for $name in AUTO_PORT_RANGE=$range on 127.0.0.1"
      port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
      [[ $taken == *" $port "* ]] && continue
      port_free "$port" && break
    done
    printf -v "$name" '%s' "$port"
    taken+="$port "
  done
  if ((WORKER_DB_PORT_FOLLOWS)); then WORKER_DB_PORT=$DB_PORT; fi
  FCGI_ADDRESS=unix:$RUN_DIR/api/fcgi.sock
  if [[ $FCGI_TRANSPORT == tcp ]]; then FCGI_ADDRESS=127.0.0.1:$FCGI_PORT; fi
}

# Ports still "auto" (not yet picked) are skipped.
check_ports_free() {
  local name port
  while read -r name; do
    port=${!name}
    [[ $port == auto ]] && continue
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
      die "$name=$port is not a port number (nor auto)"
    fi
    if ! port_free "$port"; then
      printf 'error: port %s (%s) is already in use on 127.0.0.1: choose another with %s=... (or %s=auto)\n' \
        "$port" "$name" "$name" "$name" >&2
      exit "$EXIT_PORT_IN_USE"
    fi
  done < <(listen_port_names)
  # Not checked for being free: a drill's proxy may already listen there.
  # Empty until pick_auto_ports: DB_PORT's.
  [[ -n $WORKER_DB_PORT ]] || return 0
  if ! [[ $WORKER_DB_PORT =~ ^[0-9]+$ ]] || ((WORKER_DB_PORT < 1 || WORKER_DB_PORT > 65535)); then
    die "WORKER_DB_PORT=$WORKER_DB_PORT is not a port number"
  fi
}

build_worker() {
  if [[ -n $ITEMS_FCGI ]]; then
    [[ -x $ITEMS_FCGI ]] || die "ITEMS_FCGI=$ITEMS_FCGI is not an executable"
    return
  fi
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    meson setup "$BUILD_DIR" "$REPO" >"$RUN_DIR/logs/build.log" 2>&1 ||
      { cat "$RUN_DIR/logs/build.log" >&2; die "meson setup failed"; }
  fi
  meson compile -C "$BUILD_DIR" >>"$RUN_DIR/logs/build.log" 2>&1 ||
    { cat "$RUN_DIR/logs/build.log" >&2; die "build failed"; }
  ITEMS_FCGI=$BUILD_DIR/fcgi-app/items-fcgi
}

# As root: the first directory on the way to PATH that USER cannot search.
# usage: blocking_dir USER PATH
blocking_dir() {
  local user=$1 path=$2 dir="" part parts
  [[ $path == /* ]] || path=$PWD/$path
  IFS=/ read -ra parts <<<"$path"
  for part in "${parts[@]}"; do
    [[ -n $part ]] || continue
    dir+=/$part
    if ! runuser -u "$user" -- test -x "$dir"; then
      printf '%s\n' "$dir"
      return
    fi
  done
}

# As root, the daemons drop to unprivileged users before they open their
# files: fail here, naming the directory in the way, rather than let them
# fail one by one (multiwatch only says "Exec failed: Permission denied").
# usage: require_reachable USER PATH WHAT ADVICE
require_reachable() {
  local user=$1 path=$2 what=$3 advice=$4 blocked
  ((EUID == 0)) || return 0
  runuser -u "$user" -- test -x "$path" && return 0
  blocked=$(blocking_dir "$user" "$path")
  die "$what $path is not reachable by user $user${blocked:+ (it cannot search $blocked)}: $advice"
}

# The workers exec their binary after spawn-fcgi has dropped to WORKER_USER,
# so they run a copy under RUN_DIR: the build directory may sit in a checkout
# that user cannot enter (a clone in /root, mode 0700). The copy also keeps a
# rebuild from changing what multiwatch runs when it replaces a worker.
install_worker() {
  local tmp
  tmp=$(mktemp "$RUN_DIR/bin/.items-fcgi.XXXXXX")
  cp "$ITEMS_FCGI" "$tmp" || { rm -f "$tmp"; die "cannot copy ITEMS_FCGI=$ITEMS_FCGI to $RUN_DIR/bin"; }
  chmod 755 "$tmp"
  # A rename: a worker still running the old copy keeps its file.
  mv -f "$tmp" "$WORKER_BIN"
  require_reachable "$WORKER_USER" "$WORKER_BIN" "the worker binary" \
    "it is mode 0755 under a reachable RUN_DIR, so its file system is probably mounted noexec: choose a RUN_DIR on another one"
}

prepare_run_dir() {
  mkdir -p "$RUN_DIR"/{logs,pids,nginx,api,html,bin}
  # The daemons' unprivileged users must reach their files. Everything they
  # open after dropping privileges is under RUN_DIR (the checkout may be
  # private): the page, the binary, the secrets, the sockets, the datadir.
  chmod 755 "$RUN_DIR"
  local user
  for user in "$WORKER_USER" "$DB_USER"; do
    require_reachable "$user" "$RUN_DIR" "RUN_DIR" \
      "choose a RUN_DIR whose parent directories are all searchable by others (chmod o+x), e.g. the default /tmp/items-local-$EUID"
  done
  if [[ ! -s $RUN_DIR/db-password ]]; then
    (umask 077 && random_secret >"$RUN_DIR/db-password")
  fi
  if [[ -n ${NO_TOKEN:-} ]]; then
    rm -f "$RUN_DIR/api-token"
  elif [[ -n ${API_TOKEN:-} ]]; then
    (umask 077 && printf '%s\n' "$API_TOKEN" >"$RUN_DIR/api-token")
  elif [[ ! -s $RUN_DIR/api-token ]]; then
    (umask 077 && random_secret >"$RUN_DIR/api-token")
    log "generated an API token in $RUN_DIR/api-token"
  fi
  touch "$RUN_DIR/logs/mariadb.log" "$RUN_DIR/logs/pool.log"
  if ((EUID == 0)); then
    chown "$WORKER_USER" "$RUN_DIR/db-password" "$RUN_DIR/api" "$RUN_DIR/logs/pool.log"
    [[ -f $RUN_DIR/api-token ]] && chown "$WORKER_USER" "$RUN_DIR/api-token"
    chown "$DB_USER" "$RUN_DIR/logs/mariadb.log"
  fi
  rm -rf "$RUN_DIR/html"
  cp -R "$REPO/nginx/html" "$RUN_DIR/html"
  chmod -R a+rX "$RUN_DIR/html"
}

# mariadbd reads --defaults-file while still root, before it switches to
# --user, so my.cnf may stay in a private checkout (as may the migrations
# and seed.sql, which this script feeds to the client).
mariadbd_args() {
  printf '%s\n' --defaults-file="$REPO/mysql/my.cnf" \
    --datadir="$DB_DIR/data" --tmpdir="$DB_DIR/tmp" --socket="$DB_DIR/mysql.sock" \
    --pid-file="$DB_DIR/mariadbd.pid" --log-error="$RUN_DIR/logs/mariadb.log" --user="$DB_USER"
  if [[ -n $DB_PORT ]]; then
    printf '%s\n' --bind-address=127.0.0.1 --port="$DB_PORT"
  else
    # A template's build (--make-db-template): the socket only, no port to pick.
    printf '%s\n' --skip-networking
  fi
}

db_admin() { mariadb --no-defaults --socket="$DB_DIR/mysql.sock" -uroot "$@"; }

# The schema migrations not yet applied (mysql/migrate.sh, the runner the db
# image uses too), as the admin account over the socket.
migrate_db() {
  "$REPO/mysql/migrate.sh" items -- mariadb --no-defaults --socket="$DB_DIR/mysql.sock" -uroot 2>&1 |
    sed 's/^/  /' >&2
  return "${PIPESTATUS[0]}"
}

start_db() {
  local args pid
  if [[ ! -d $DB_DIR/tmp ]]; then
    mkdir -p "$DB_DIR/tmp"
    ((EUID == 0)) && chown "$DB_USER" "$DB_DIR/tmp"
  fi
  mapfile -t args < <(mariadbd_args)
  setsid mariadbd "${args[@]}" </dev/null >>"$RUN_DIR/logs/mariadb.log" 2>&1 &
  pid=$!
  echo "$pid" >"$RUN_DIR/pids/mariadb.pid"
  if ! wait_until 60 "mariadbd to accept connections" db_ready_or_gone "$pid" || ! pid_alive "$pid"; then
    tail -n 30 "$RUN_DIR/logs/mariadb.log" >&2
    die "mariadbd did not start"
  fi
}

# True once mariadbd answers, or once it has exited (no use waiting longer).
db_ready_or_gone() { ! pid_alive "$1" || db_admin -e 'SELECT 1'; }

# The application's database and an account limited to what the API does
# (as in the db image); the schema and the seed follow.
# usage: app_account_sql PASSWORD
app_account_sql() {
  cat <<EOF
CREATE DATABASE items CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER 'items'@'127.0.0.1' IDENTIFIED BY '$1';
CREATE USER 'items'@'localhost' IDENTIFIED BY '$1';
GRANT SELECT, INSERT, UPDATE, DELETE ON items.* TO 'items'@'127.0.0.1', 'items'@'localhost';
EOF
}

# A new datadir in DB_DIR: MariaDB's system tables, then the application's
# database, account (with PASSWORD), schema and seed. Leaves mariadbd running.
# usage: create_datadir PASSWORD
create_datadir() {
  rm -rf "$DB_DIR"
  # A private tmpdir: concurrent stacks must not share MariaDB's temp files.
  mkdir -p "$DB_DIR/data" "$DB_DIR/tmp"
  if ((EUID == 0)); then chown -R "$DB_USER" "$DB_DIR"; fi
  mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --tmpdir="$DB_DIR/tmp" --user="$DB_USER" \
    --auth-root-authentication-method=socket --skip-test-db \
    >"$RUN_DIR/logs/mariadb-install.log" 2>&1 ||
    { cat "$RUN_DIR/logs/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  start_db
  app_account_sql "$1" | db_admin
  migrate_db || die "the schema migrations failed (see above)"
  db_admin items <"$REPO/mysql/seed.sql"
}

# What a template's datadir depends on: this MariaDB, the user mariadbd runs
# as (install-db gives it an admin account), the code that fills a datadir
# and the files it reads. A template made from anything else is refused.
db_template_fingerprint() {
  {
    echo "items db template 1"
    mariadbd --version
    printf 'DB_USER=%s\n' "$DB_USER"
    declare -f create_datadir app_account_sql migrate_db
    cat "$REPO/mysql/my.cnf" "$REPO/mysql/migrate.sh" "$REPO/mysql/seed.sql" "$REPO"/mysql/migrations/*.sql
  } | sha256sum | cut -d ' ' -f 1
}

# DB_TEMPLATE/data becomes DB_DIR/data: a copy, owned by DB_USER, so that no
# stack ever writes to the template. Under a shared lock: --make-db-template
# replaces an outdated template under the exclusive one.
copy_db_template() {
  local want
  [[ -f $DB_TEMPLATE/.lock ]] ||
    die "DB_TEMPLATE=$DB_TEMPLATE is not a directory made by scripts/run-local.sh --make-db-template"
  want=$(db_template_fingerprint)
  rm -rf "$DB_DIR"
  mkdir -p "$DB_DIR/tmp"
  (
    flock -s 9
    [[ $(cat "$DB_TEMPLATE/fingerprint" 2>/dev/null) == "$want" ]] ||
      die "DB_TEMPLATE=$DB_TEMPLATE was not made by --make-db-template from this checkout's mysql/ files and this MariaDB: remake it (scripts/run-local.sh --make-db-template $DB_TEMPLATE) or unset DB_TEMPLATE"
    cp -a "$DB_TEMPLATE/data" "$DB_DIR/data" || die "cannot copy $DB_TEMPLATE/data to $DB_DIR"
  ) 9<"$DB_TEMPLATE/.lock" || exit 1
  if ((EUID == 0)); then chown -R "$DB_USER" "$DB_DIR"; fi
}

# Starts mariadbd on RUN_DIR's datadir. A fresh one gets the schema, the seed
# and the application account with RUN_DIR's password: from DB_TEMPLATE when
# set (the template's password is replaced: one statement), else initialised
# here; one from an earlier start gets the migrations it lacks.
init_db() {
  if [[ -f $DB_DIR/initialised ]]; then
    # A datadir from an earlier start may lack the newest migrations (a new
    # one has them all, and a template is refused unless it does).
    start_db
    migrate_db || die "the schema migrations failed (see above)"
    return 0
  fi
  local password
  password=$(cat "$RUN_DIR/db-password")
  if [[ -n $DB_TEMPLATE ]]; then
    log "copying the MariaDB datadir of DB_TEMPLATE=$DB_TEMPLATE to $DB_DIR"
    copy_db_template
    start_db
    db_admin <<<"ALTER USER 'items'@'127.0.0.1' IDENTIFIED BY '$password', 'items'@'localhost' IDENTIFIED BY '$password';"
  else
    log "initialising a MariaDB datadir in $DB_DIR"
    create_datadir "$password"
  fi
  touch "$DB_DIR/initialised"
}

# Builds the template in a scratch RUN_DIR under /tmp (mariadbd's user may
# not reach DIR, e.g. in a checkout under /root), stops mariadbd cleanly (a
# copy then starts without crash recovery) and copies the datadir to DIR;
# DIR/fingerprint, written last, marks it complete.
# usage: build_db_template DIR FINGERPRINT
build_db_template() {
  local dir=$1 fingerprint=$2
  rm -f "$dir/fingerprint"
  rm -rf "$dir/data"
  RUN_DIR=$(mktemp -d /tmp/items-db-template.XXXXXX)
  DB_DIR=$RUN_DIR/db DB_PORT=""
  trap 'stop_db; rm -rf "$RUN_DIR"' EXIT
  chmod 755 "$RUN_DIR"
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"
  touch "$RUN_DIR/logs/mariadb.log"
  if ((EUID == 0)); then chown "$DB_USER" "$RUN_DIR/logs/mariadb.log"; fi
  log "initialising a MariaDB datadir template in $dir"
  # Without the lock's descriptor: mariadbd must not hold the lock.
  create_datadir "$(random_secret)" 9>&-
  stop_db
  grep -q 'Shutdown complete' "$RUN_DIR/logs/mariadb.log" ||
    { tail -n 30 "$RUN_DIR/logs/mariadb.log" >&2; die "mariadbd did not shut down cleanly"; }
  cp -a "$DB_DIR/data" "$dir/data"
  printf '%s\n' "$fingerprint" >"$dir/fingerprint"
}

# Idempotent and safe to run concurrently (an exclusive lock on DIR/.lock):
# a DIR already made from the same inputs is left as it is.
# usage: make_db_template DIR
make_db_template() {
  local dir=$1 want
  [[ $dir == /* ]] || dir=$PWD/$dir
  set_users
  ensure_stack_packages
  # Never another directory's contents: DIR/data is replaced.
  if [[ -e $dir && ! -f $dir/.lock ]] && [[ ! -d $dir || -n $(ls -A "$dir") ]]; then
    die "$dir exists and is not a template made by --make-db-template: choose a new directory"
  fi
  mkdir -p "$dir"
  (
    flock 9
    want=$(db_template_fingerprint)
    if [[ $(cat "$dir/fingerprint" 2>/dev/null) == "$want" ]]; then
      log "the MariaDB datadir template in $dir is up to date"
      exit 0
    fi
    build_db_template "$dir" "$want"
  ) 9>>"$dir/.lock" || exit 1
}

start_pool() {
  local env_args=(
    DB_HOST=127.0.0.1 DB_PORT="$WORKER_DB_PORT" MYSQL_DATABASE=items MYSQL_USER=items
    MYSQL_PASSWORD_FILE="$RUN_DIR/db-password"
    FCGI_LISTEN="$FCGI_ADDRESS" FCGI_WORKERS="$FCGI_WORKERS"
    METRICS_FILE="$RUN_DIR/api/metrics" ITEMS_FCGI="$WORKER_BIN"
  )
  local as_worker=()
  [[ -f $RUN_DIR/api-token ]] && env_args+=(API_TOKEN_FILE="$RUN_DIR/api-token")
  # As root, nginx's workers run as nobody: the one peer the socket admits.
  if ((EUID == 0)); then
    env_args+=(FCGI_USER="$WORKER_USER" FCGI_SOCKET_USER=nobody)
    as_worker=(runuser -u "$WORKER_USER" --)
  fi
  # env -i: the workers see only their documented configuration. Checked as
  # the workers' user, which must be able to read the secrets' files too.
  "${as_worker[@]}" env -i -C "$RUN_DIR" PATH="$PATH" "${env_args[@]}" "$WORKER_BIN" --check-config >/dev/null ||
    die "$WORKER_BIN --check-config failed as user $WORKER_USER (see above)"
  # -C: the workers' working directory is one they can enter.
  setsid env -i -C "$RUN_DIR" PATH="$PATH" ASAN_OPTIONS="${ASAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" \
    "${env_args[@]}" "$REPO/fcgi-app/items-pool" </dev/null >>"$RUN_DIR/logs/pool.log" 2>&1 &
  echo $! >"$RUN_DIR/pids/pool.pid"
}

# TLS=1: the local CA (made once, reused by every later start under this
# RUN_DIR, so that a browser or curl told to trust it keeps trusting it) and
# a server certificate from it, issued again when it is missing, from another
# CA, or has less than a day left. The code is secrets.sh's (lib/tls.sh);
# the files stay root's or the caller's: nginx's master reads them before it
# drops privileges.
prepare_tls() {
  ((TLS)) || return 0
  ensure_packages openssl:openssl
  mkdir -p "$TLS_DIR"
  chmod 755 "$TLS_DIR"
  if [[ ! -s $TLS_DIR/ca.pem || ! -s $TLS_DIR/ca.key ]]; then
    (umask 077 && tls_make_ca "$TLS_DIR/ca.pem" "$TLS_DIR/ca.key")
    log "created a local certificate authority: $TLS_DIR/ca.pem"
  fi
  if ! tls_cert_usable "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" "$TLS_DIR/ca.pem" 86400; then
    (umask 077 && tls_issue_server_cert "$TLS_DIR/ca.pem" "$TLS_DIR/ca.key" \
      "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" "$(tls_san_list "")" "$TLS_DIR")
    chmod 644 "$TLS_DIR/cert.pem"
    log "issued $TLS_DIR/cert.pem (localhost, 127.0.0.1, ::1) from that CA"
  fi
}

start_nginx() {
  local tls_env=()
  if ((TLS)); then
    tls_env=(TLS_LISTEN="127.0.0.1:$TLS_PORT" TLS_CERT="$TLS_DIR/cert.pem" TLS_KEY="$TLS_DIR/key.pem")
  fi
  # The HTTPS settings come from TLS and TLS_PORT only, never inherited.
  env -u TLS_LISTEN -u TLS_CERT -u TLS_KEY -u HTTPS_ONLY "${tls_env[@]}" \
    HTTP_LISTEN="127.0.0.1:$HTTP_PORT" METRICS_LISTEN="127.0.0.1:$METRICS_PORT" \
    FCGI_UPSTREAM="$FCGI_ADDRESS" FCGI_BACKEND=items_api DNS_RESOLVER=127.0.0.1 \
    WRITE_RATE="$WRITE_RATE" WRITE_BURST="$WRITE_BURST" \
    STATIC_ROOT="$RUN_DIR/html" NGINX_RUN_DIR="$RUN_DIR/nginx" NGINX_LOG_DIR="$RUN_DIR/logs" \
    "$REPO/nginx/render-conf.sh" "$RUN_DIR/nginx"
  nginx -t -q -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -e "$RUN_DIR/logs/nginx-error.log" ||
    die "nginx refused the rendered configuration $RUN_DIR/nginx/nginx.conf"
  setsid nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -e "$RUN_DIR/logs/nginx-error.log" \
    -g 'daemon off;' </dev/null >>"$RUN_DIR/logs/nginx-stderr.log" 2>&1 &
  echo $! >"$RUN_DIR/pids/nginx.pid"
}

# With TLS=1, over HTTPS too, trusting the local CA: the certificate and the
# listener are checked before the stack is said to be up.
status_ok() {
  curl -fs --max-time 2 "http://127.0.0.1:$HTTP_PORT/status" | grep -q '"database_connection":"OK"' || return 1
  ((TLS)) || return 0
  curl -fs --max-time 2 --cacert "$TLS_DIR/ca.pem" "https://127.0.0.1:$TLS_PORT/status" |
    grep -q '"database_connection":"OK"'
}

# Healthy means /status is OK through nginx; a daemon that died fails at once.
wait_healthy() {
  local deadline=$((SECONDS + 60)) name pid
  until status_ok; do
    for name in mariadb pool nginx; do
      pid=$(cat "$RUN_DIR/pids/$name.pid" 2>/dev/null || true)
      if ! pid_alive "$pid"; then
        show_logs
        die "$name exited during start-up"
      fi
    done
    if ((SECONDS >= deadline)); then
      show_logs
      die "the stack did not become healthy within 60s"
    fi
    sleep 0.1
  done
}

show_logs() {
  local f
  for f in "$RUN_DIR"/logs/*.log; do
    [[ -s $f ]] || continue
    printf '\n==> %s <==\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
}

read_pid() { cat "$RUN_DIR/pids/$1.pid" 2>/dev/null || true; }

stop_db() { stop_pid "$(read_pid mariadb)" mariadbd 60; rm -f "$RUN_DIR/pids/mariadb.pid"; }

# Reverse order of start: the front first, so nothing new reaches the pool.
stop_all() {
  stop_pid "$(read_pid nginx)" nginx 15
  stop_pid "$(read_pid pool)" "worker pool" 15
  stop_db
  rm -f "$RUN_DIR"/pids/*.pid
}

print_urls() {
  cat <<EOF

The stack is up:
  page      http://127.0.0.1:$HTTP_PORT/
  API       http://127.0.0.1:$HTTP_PORT/status  http://127.0.0.1:$HTTP_PORT/items
  metrics   http://127.0.0.1:$METRICS_PORT/metrics   (internal listener)
EOF
  if ((TLS)); then
    cat <<EOF
  HTTPS     https://127.0.0.1:$TLS_PORT/  https://localhost:$TLS_PORT/items
  local CA  $TLS_DIR/ca.pem   (curl --cacert $TLS_DIR/ca.pem https://127.0.0.1:$TLS_PORT/status)
EOF
  fi
  cat <<EOF
  token     $( [[ -f $RUN_DIR/api-token ]] && echo "in $RUN_DIR/api-token" || echo "none: writes are disabled")
  logs      $RUN_DIR/logs/
EOF
}

# A start that fails half-way leaves nothing running. An EXIT trap, since
# die exits without an ERR trap firing (nor does set -e inside a function).
# A daemon that could not bind its port makes the start's status 75; its
# log is set aside, so that the next try's failure is judged on its own.
abort_start() {
  local rc=$? f in_use=0
  ((rc == 0)) && return
  if compgen -G "$RUN_DIR/pids/*.pid" >/dev/null; then
    log "start-up failed: stopping what was started"
    stop_all
  fi
  for f in "$RUN_DIR"/logs/*.log; do
    if grep -qs "$PORT_IN_USE_LOG" "$f"; then
      in_use=1
      mv "$f" "$f.port-in-use"
      log "a daemon could not bind its port ($PORT_IN_USE_LOG): see $f.port-in-use"
    fi
  done
  if ((in_use)); then exit "$EXIT_PORT_IN_USE"; fi
}

# Tries the start up to 5 times while it fails on a taken "auto" port.
start_all() {
  if pid_alive "$(read_pid nginx)" || pid_alive "$(read_pid pool)" || pid_alive "$(read_pid mariadb)"; then
    die "a stack is already running under RUN_DIR=$RUN_DIR (stop it with --stop)"
  fi
  find_auto_ports
  # A fixed port already taken fails at once: no other try would free it.
  check_ports_free
  local try rc
  for ((try = 1; ; try++)); do
    pick_auto_ports
    # In a subshell, so that a failed try's exit stops only the try; not
    # under ||, which would switch set -e off inside it.
    set +e
    (
      set -e
      start_once
    )
    rc=$?
    set -e
    ((rc == 0)) && return 0
    if ((rc != EXIT_PORT_IN_USE || ${#AUTO_PORTS[@]} == 0 || try == 5)); then exit "$rc"; fi
    log "a port was taken before it was bound: trying other ports (${AUTO_PORTS[*]})"
  done
}

start_once() {
  trap abort_start EXIT
  check_ports_free
  ensure_stack_packages
  prepare_run_dir
  prepare_tls
  build_worker
  install_worker
  save_settings
  init_db
  start_pool
  start_nginx
  wait_healthy
  trap - EXIT
}

main() {
  local mode=foreground
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    --detach) mode=detach ;;
    --stop) mode=stop ;;
    --make-db-template)
      [[ -n ${2:-} ]] || { usage >&2; exit 2; }
      make_db_template "$2"
      exit 0
      ;;
    --db)
      case "${2:-}" in
        stop) mode=db-stop ;;
        start) mode=db-start ;;
        *) usage >&2; exit 2 ;;
      esac
      ;;
    "") ;;
    *) usage >&2; exit 2 ;;
  esac
  load_settings
  case $mode in
    stop)
      if ! compgen -G "$RUN_DIR/pids/*.pid" >/dev/null; then
        log "nothing to stop under RUN_DIR=$RUN_DIR"
        exit 0
      fi
      stop_all
      log "stopped"
      ;;
    db-stop) stop_db; log "mariadbd stopped" ;;
    db-start)
      pid_alive "$(read_pid mariadb)" && die "mariadbd is already running"
      # The port this stack's start chose, not a new one.
      if [[ $DB_PORT == auto ]]; then DB_PORT=${SAVED_DB_PORT:?no saved DB_PORT under RUN_DIR=$RUN_DIR}; fi
      start_db; log "mariadbd started" ;;
    detach)
      start_all
      print_urls
      ;;
    foreground)
      start_all
      trap 'log "stopping"; stop_all; exit 0' INT TERM
      print_urls
      echo "  (Ctrl-C stops everything)"
      while pid_alive "$(read_pid nginx)"; do sleep 1; done
      log "nginx exited: stopping the rest"
      stop_all
      ;;
  esac
}

main "$@"
