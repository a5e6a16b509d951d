# shellcheck shell=bash
# Helpers shared by the project's scripts. Source it; it defines functions only.

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages whose commands are missing. As root it runs
# apt-get (without starting the services the packages ship: we start our own
# daemons); otherwise it says what to install and fails.
# usage: ensure_packages "command:package" ...
ensure_packages() {
  local pair cmd pkg missing=()
  for pair in "$@"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if [[ $cmd == /* ]]; then
      [[ -e $cmd ]] && continue
    elif command -v "$cmd" >/dev/null 2>&1; then
      continue
    fi
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if ((EUID != 0)); then
    die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
  fi
  log "installing Debian packages: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0
  if [[ ! -d /var/lib/apt/lists/partial ]] || [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit) ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || rc=$?
  fi
  if ((rc == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
      # A stale package list is the usual cause: refresh once and retry.
      DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    } || rc=$?
  fi
  ((own_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

# The packages that build and run the stack without Docker.
ensure_stack_packages() {
  ensure_packages \
    cc:gcc meson:meson ninja:ninja-build pkg-config:pkg-config \
    /usr/include/fcgiapp.h:libfcgi-dev /usr/include/mariadb/mysql.h:libmariadb-dev \
    /usr/include/jansson.h:libjansson-dev \
    spawn-fcgi:spawn-fcgi multiwatch:multiwatch nginx:nginx \
    /usr/lib/nginx/modules/ngx_http_lua_module.so:libnginx-mod-http-lua \
    mariadbd:mariadb-server mariadb:mariadb-client mariadb-install-db:mariadb-server \
    curl:curl envsubst:gettext-base setsid:util-linux ps:procps
}

# Polls a command until it succeeds or the deadline (seconds) passes.
# usage: wait_until SECONDS DESCRIPTION command...
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

# A zombie (exited, not yet reaped by its parent) counts as gone.
pid_alive() {
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

pid_gone() { ! pid_alive "$1"; }

# Stops a process we started: TERM, then KILL after a grace period.
# usage: stop_pid PID NAME [GRACE_SECONDS]
stop_pid() {
  local pid=$1 name=$2 grace=${3:-15}
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_until "$grace" "$name (pid $pid) to exit" pid_gone "$pid"; then
    log "$name did not stop within ${grace}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# A setting a run-local.sh start saved in RUN_DIR/env, e.g. the port it
# chose for an "auto" one.
# usage: saved_setting RUN_DIR NAME   (NAME as in HTTP_PORT)
saved_setting() {
  local value
  value=$(sed -n "s/^SAVED_$2=//p" "$1/env" 2>/dev/null)
  [[ -n $value ]] || { printf 'error: no %s saved in %s/env\n' "$2" "$1" >&2; return 1; }
  printf '%s\n' "$value"
}

# True when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
