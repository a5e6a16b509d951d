#!/bin/sh
# Renders the front tier's configuration into OUTDIR: nginx.conf from
# nginx.conf.template, with the include files beside it. The local run
# (scripts/run-local.sh) and the front container (nginx/front-entrypoint, at
# every start, from its environment) both call this, so the variable list,
# the defaults and the checks live in one place.
# POSIX sh: the container runs it with busybox sh.
set -euf # -f: no globbing, values are split on spaces and commas only

usage() {
	cat <<USAGE
usage: nginx/render-conf.sh OUTDIR

Variables (required unless a default is shown):
  HTTP_LISTEN     public listener, e.g. 127.0.0.1:8080 or 8080
  METRICS_LISTEN  internal listener for /metrics and /healthz, e.g. 8081
  FCGI_BACKEND    where requests go [items_api]: the static upstream below, or a
                  host:port re-resolved through DNS_RESOLVER (valid 1 s), so that
                  replicas that come and go are followed (compose --scale, Swarm)
  FCGI_UPSTREAM   the pool of the static upstream "items_api" (host:port or
                  unix:/path); needed only when FCGI_BACKEND is items_api
  DNS_RESOLVER    resolver for FCGI_BACKEND names [127.0.0.11, Docker's embedded DNS]
  WRITE_RATE      writes (POST, PUT, PATCH, DELETE) per client address: N r/s or N r/m [10r/s]
  WRITE_BURST     writes beyond the rate served at once before 429 [20]
  REAL_IP_FROM    addresses/CIDRs of trusted proxies in front of nginx, separated by
                  spaces or commas [none]: the client address is then taken from
                  X-Forwarded-For (rightmost untrusted), for the rate limit and the logs
  NGINX_WORKER_PROCESSES  nginx worker processes: a number or auto [auto]
  NGINX_RLIMIT_NOFILE     open files per worker (worker_rlimit_nofile) [4096]
  STATIC_ROOT     directory of the page
  NGINX_RUN_DIR   writable directory for the pid and temporary files
  NGINX_LOG_DIR   directory of nginx-access.log and nginx-error.log
A value that does not fit its variable is refused (exit 2, the variable named):
nothing from the environment reaches nginx.conf unchecked.
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
out=$1
here=$(cd "$(dirname "$0")" && pwd)

bad() {
	echo "render-conf.sh: $1=$2: $3" >&2
	exit 2
}
digits() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
}

: "${FCGI_BACKEND:=items_api}" "${DNS_RESOLVER:=127.0.0.11}"
: "${WRITE_RATE:=10r/s}" "${WRITE_BURST:=20}" "${REAL_IP_FROM:=}"
: "${NGINX_WORKER_PROCESSES:=auto}" "${NGINX_RLIMIT_NOFILE:=4096}"
for var in HTTP_LISTEN METRICS_LISTEN STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR; do
	eval "value=\${$var:-}"
	# shellcheck disable=SC2154 # set by the eval above
	[ -n "$value" ] || { echo "render-conf.sh: $var is not set" >&2; exit 2; }
done

# Each value is checked against what its directive takes: a ";" or a "{" would
# otherwise add directives of the caller's choosing.
for var in HTTP_LISTEN METRICS_LISTEN; do
	eval "value=\$$var"
	case $value in
	*[!0-9a-fA-F.:\[\]]*) bad "$var" "$value" "expected a port, address:port or [ipv6]:port" ;;
	esac
done
case $FCGI_BACKEND in
items_api) ;;
*[!A-Za-z0-9._-]*:* | *:*[!0-9]* | :* | *:) bad FCGI_BACKEND "$FCGI_BACKEND" "expected items_api or host:port" ;;
*:*) ;;
*) bad FCGI_BACKEND "$FCGI_BACKEND" "expected items_api or host:port" ;;
esac
if [ "$FCGI_BACKEND" = items_api ]; then
	[ -n "${FCGI_UPSTREAM:-}" ] || { echo "render-conf.sh: FCGI_UPSTREAM is not set (FCGI_BACKEND=items_api)" >&2; exit 2; }
	case $FCGI_UPSTREAM in
	*[!A-Za-z0-9._:/\[\]-]*) bad FCGI_UPSTREAM "$FCGI_UPSTREAM" "expected host:port, [ipv6]:port or unix:/path" ;;
	esac
fi
case $DNS_RESOLVER in
'' | *[!0-9a-fA-F.:\[\]]*) bad DNS_RESOLVER "$DNS_RESOLVER" "expected an IP address" ;;
esac
rate=${WRITE_RATE%r/[sm]}
if [ "$rate" = "$WRITE_RATE" ] || ! digits "$rate" || [ "$rate" -eq 0 ]; then
	bad WRITE_RATE "$WRITE_RATE" "expected N r/s or N r/m without spaces, N >= 1 (e.g. 10r/s)"
fi
{ digits "$WRITE_BURST" && [ "$WRITE_BURST" -ge 1 ]; } || bad WRITE_BURST "$WRITE_BURST" "expected a number >= 1"
case $NGINX_WORKER_PROCESSES in
auto) ;;
*) { digits "$NGINX_WORKER_PROCESSES" && [ "$NGINX_WORKER_PROCESSES" -ge 1 ]; } ||
	bad NGINX_WORKER_PROCESSES "$NGINX_WORKER_PROCESSES" "expected auto or a number >= 1" ;;
esac
{ digits "$NGINX_RLIMIT_NOFILE" && [ "$NGINX_RLIMIT_NOFILE" -ge 2100 ]; } ||
	bad NGINX_RLIMIT_NOFILE "$NGINX_RLIMIT_NOFILE" "expected a number >= 2100 (2 per connection: client and pool, 1024 connections, and the files served)"
for var in STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR; do
	eval "value=\$$var"
	case $value in
	/*) ;;
	*) bad "$var" "$value" "expected an absolute path" ;;
	esac
	# Quoted in nginx.conf: any character but these (and newlines) may appear.
	case $value in
	*[\"\\\$]* | *'
'*) bad "$var" "$value" "a path with a quote, a backslash, a \$ or a newline" ;;
	esac
done
realip=""
for cidr in $(printf '%s' "$REAL_IP_FROM" | tr ',' ' '); do
	# IPv4 is digits and dots, IPv6 hex digits and colons; nginx checks the rest at start.
	case $cidr in
	*:*) allowed='0-9a-fA-F:./' ;;
	*) allowed='0-9./' ;;
	esac
	case $cidr in
	*[!$allowed]* | */*/* | [!0-9a-fA-F:]*)
		bad REAL_IP_FROM "$REAL_IP_FROM" "expected addresses or CIDRs (e.g. 10.0.0.0/8) separated by spaces or commas" ;;
	esac
	realip="$realip    set_real_ip_from $cidr;
"
done

export HTTP_LISTEN METRICS_LISTEN FCGI_BACKEND DNS_RESOLVER WRITE_RATE \
	WRITE_BURST STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR NGINX_WORKER_PROCESSES NGINX_RLIMIT_NOFILE

mkdir -p "$out"
# shellcheck disable=SC2016 # names for envsubst, not expansions
envsubst '${HTTP_LISTEN} ${METRICS_LISTEN} ${FCGI_BACKEND} ${DNS_RESOLVER} ${WRITE_RATE} ${WRITE_BURST} ${STATIC_ROOT} ${NGINX_RUN_DIR} ${NGINX_LOG_DIR} ${NGINX_WORKER_PROCESSES} ${NGINX_RLIMIT_NOFILE}' \
	<"$here/nginx.conf.template" >"$out/nginx.conf"
cp "$here/items-fastcgi.conf" "$here/items-headers.conf" "$out/"

# The static upstream exists only when requests go to it: a name in it is
# resolved once, at start, and nginx refuses to start while it does not resolve.
if [ "$FCGI_BACKEND" = items_api ]; then
	cat >"$out/items-upstream.conf" <<UPSTREAM
# Rendered by render-conf.sh: FCGI_BACKEND=items_api, FCGI_UPSTREAM=$FCGI_UPSTREAM.
# The pool, listed twice on purpose: nginx retries a failed idempotent
# request (a worker killed mid-request) only on "another" server, and
# max_fails=0 keeps a restarted worker's socket from being marked down.
upstream items_api {
    server $FCGI_UPSTREAM max_fails=0;
    server $FCGI_UPSTREAM max_fails=0;
}
UPSTREAM
else
	printf '# Rendered by render-conf.sh: FCGI_BACKEND=%s is resolved through %s, no static upstream.\n' \
		"$FCGI_BACKEND" "$DNS_RESOLVER" >"$out/items-upstream.conf"
fi

if [ -n "$realip" ]; then
	cat >"$out/items-realip.conf" <<REALIP
# Rendered by render-conf.sh from REAL_IP_FROM: requests from these proxies
# carry the client's address in X-Forwarded-For; nginx takes the rightmost
# address there that is not a trusted proxy as \$remote_addr (rate limit, logs).
$realip    real_ip_header X-Forwarded-For;
    real_ip_recursive on;
REALIP
else
	echo "# Rendered by render-conf.sh: REAL_IP_FROM is empty, \$remote_addr is the peer's address." >"$out/items-realip.conf"
fi
