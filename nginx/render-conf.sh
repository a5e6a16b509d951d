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
  FCGI_UPSTREAM_BACKUP  a second pool of "items_api", used only when the first one
                  refuses or fails (nginx's backup server) [none]
  DNS_RESOLVER    resolver for FCGI_BACKEND names [127.0.0.11, Docker's embedded DNS]
  WRITE_RATE      writes (POST, PUT, PATCH, DELETE) per client address: N r/s or N r/m [10r/s]
  WRITE_BURST     writes beyond the rate served at once before 429 [20]
  REAL_IP_FROM    addresses/CIDRs of trusted proxies in front of nginx, separated by
                  spaces or commas [none]: the client address is then taken from
                  X-Forwarded-For (rightmost untrusted), for the rate limit and the logs
  NGINX_WORKER_PROCESSES  nginx worker processes: a number or auto [auto]
  NGINX_RLIMIT_NOFILE     open files per worker (worker_rlimit_nofile) [4096]
  TLS_LISTEN      HTTPS listener (TLS 1.2/1.3, HTTP/2), e.g. 8443 [none: plain HTTP only]
  TLS_CERT, TLS_KEY  the certificate chain and its key (PEM files), with TLS_LISTEN
  HTTPS_ONLY      1: HTTP_LISTEN only redirects to HTTPS (308), refuses writes (403),
                  serves /.well-known/acme-challenge/ from ACME_ROOT; HSTS on HTTPS [0]
  HTTPS_PUBLIC_PORT  the port clients reach HTTPS on, for the redirect [443]
  HSTS_MAX_AGE    Strict-Transport-Security max-age with HTTPS_ONLY=1 [31536000]
  ACME_ROOT       directory of the ACME http-01 challenges [STATIC_ROOT/../acme]
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
: "${TLS_LISTEN:=}" "${HTTPS_ONLY:=0}" "${HTTPS_PUBLIC_PORT:=443}" "${HSTS_MAX_AGE:=31536000}"
for var in HTTP_LISTEN METRICS_LISTEN STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR; do
	eval "value=\${$var:-}"
	# shellcheck disable=SC2154 # set by the eval above
	[ -n "$value" ] || { echo "render-conf.sh: $var is not set" >&2; exit 2; }
done

# Each value is checked against what its directive takes: a ";" or a "{" would
# otherwise add directives of the caller's choosing.
for var in HTTP_LISTEN METRICS_LISTEN TLS_LISTEN; do
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
	case ${FCGI_UPSTREAM_BACKUP:-} in
	*[!A-Za-z0-9._:/\[\]-]*) bad FCGI_UPSTREAM_BACKUP "$FCGI_UPSTREAM_BACKUP" "expected host:port, [ipv6]:port or unix:/path" ;;
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
case $HTTPS_ONLY in
0 | 1) ;;
*) bad HTTPS_ONLY "$HTTPS_ONLY" "expected 0 or 1" ;;
esac
if [ -n "$TLS_LISTEN" ]; then
	if [ -z "${TLS_CERT:-}" ] || [ -z "${TLS_KEY:-}" ]; then
		echo "render-conf.sh: TLS_LISTEN=$TLS_LISTEN needs TLS_CERT and TLS_KEY" >&2
		exit 2
	fi
elif [ "$HTTPS_ONLY" = 1 ]; then
	echo "render-conf.sh: HTTPS_ONLY=1 needs TLS_LISTEN (and TLS_CERT, TLS_KEY)" >&2
	exit 2
fi
{ digits "$HTTPS_PUBLIC_PORT" && [ "$HTTPS_PUBLIC_PORT" -ge 1 ] && [ "$HTTPS_PUBLIC_PORT" -le 65535 ]; } ||
	bad HTTPS_PUBLIC_PORT "$HTTPS_PUBLIC_PORT" "expected a port from 1 to 65535"
digits "$HSTS_MAX_AGE" || bad HSTS_MAX_AGE "$HSTS_MAX_AGE" "expected a number of seconds"
: "${ACME_ROOT:=$(dirname "$STATIC_ROOT")/acme}"
for var in STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR ACME_ROOT ${TLS_LISTEN:+TLS_CERT TLS_KEY}; do
	eval "value=\$$var"
	case $value in
	/*) ;;
	*) bad "$var" "$value" "expected an absolute path" ;;
	esac
	# Quoted in nginx.conf: any character but these (and newlines) may appear.
	case $value in
	*[\"\\$]* | *'
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

# /metrics/replica?address=IP:PORT passes a scrape to that replica; a pool on
# a unix socket is a single one, which answers for whatever address was asked.
# shellcheck disable=SC2016 # nginx variables, written as they are
METRICS_REPLICA='$replica_ip:$replica_port'
case $FCGI_BACKEND:${FCGI_UPSTREAM:-} in
items_api:unix:*) METRICS_REPLICA=items_api ;;
esac

export HTTP_LISTEN METRICS_LISTEN FCGI_BACKEND DNS_RESOLVER WRITE_RATE METRICS_REPLICA \
	WRITE_BURST STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR NGINX_WORKER_PROCESSES NGINX_RLIMIT_NOFILE

mkdir -p "$out"
# shellcheck disable=SC2016 # names for envsubst, not expansions
envsubst '${HTTP_LISTEN} ${METRICS_LISTEN} ${FCGI_BACKEND} ${METRICS_REPLICA} ${DNS_RESOLVER} ${WRITE_RATE} ${WRITE_BURST} ${STATIC_ROOT} ${NGINX_RUN_DIR} ${NGINX_LOG_DIR} ${NGINX_WORKER_PROCESSES} ${NGINX_RLIMIT_NOFILE}' \
	<"$here/nginx.conf.template" >"$out/nginx.conf"
cp "$here/items-fastcgi.conf" "$here/items-headers.conf" "$here/items-count.conf" "$here/ffdhe2048.pem" "$out/"

# The static upstream exists only when requests go to it: a name in it is
# resolved once, at start, and nginx refuses to start while it does not resolve.
if [ "$FCGI_BACKEND" = items_api ]; then
	tries=2
	[ -z "${FCGI_UPSTREAM_BACKUP:-}" ] || tries=3
	cat >"$out/items-upstream.conf" <<UPSTREAM
# Rendered by render-conf.sh: FCGI_BACKEND=items_api, FCGI_UPSTREAM=$FCGI_UPSTREAM.
# The pool, listed twice on purpose: nginx retries a failed idempotent
# request (a worker killed mid-request) only on "another" server, and
# max_fails=0 keeps a restarted worker's socket from being marked down.
upstream items_api {
    server $FCGI_UPSTREAM max_fails=0;
    server $FCGI_UPSTREAM max_fails=0;
${FCGI_UPSTREAM_BACKUP:+    server $FCGI_UPSTREAM_BACKUP max_fails=0 backup;
}}
# A failed request goes to the next server once (twice to reach the backup).
fastcgi_next_upstream_tries $tries;
UPSTREAM
else
	{
		printf '# Rendered by render-conf.sh: FCGI_BACKEND=%s is resolved through %s, no static upstream.\n' \
			"$FCGI_BACKEND" "$DNS_RESOLVER"
		# Three addresses: a lost node takes all its replicas at once (two of the three under
		# Swarm's API_MAX_PER_NODE), and each lost one costs only the connect timeout. Not every
		# address: a request that crashes a worker would crash one in every replica. Bounded in
		# time: no request is passed on after 11 s (just past one read timeout, so that a request
		# lost with its replica is tried once more).
		echo '# A failed request goes to the next address, three tries in all, for up to 11 s.'
		echo 'fastcgi_next_upstream_tries 3;'
		echo 'fastcgi_next_upstream_timeout 11s;'
	} >"$out/items-upstream.conf"
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

# The public server's listeners (included inside it): plain HTTP, HTTPS beside
# it, or, with HTTPS_ONLY=1, HTTPS alone (the HTTP listener then belongs to
# the redirecting server of items-redirect.conf).
{
	echo "# Rendered by render-conf.sh: TLS_LISTEN=${TLS_LISTEN:-none}, HTTPS_ONLY=$HTTPS_ONLY."
	[ "$HTTPS_ONLY" = 1 ] || echo "listen $HTTP_LISTEN default_server;"
	if [ -n "$TLS_LISTEN" ]; then
		cat <<TLS
listen $TLS_LISTEN ssl http2 default_server;
ssl_certificate "$TLS_CERT";
ssl_certificate_key "$TLS_KEY";
# Mozilla's "intermediate" configuration (v5.7): TLS 1.2 and 1.3, AEAD suites
# with forward secrecy. All of them are strong, so Mozilla lets the client
# pick; the server's order here instead, since testssl.sh 3.0 (Debian 12's,
# run by the compose suite) rates "no server cipher order" HIGH.
ssl_protocols TLSv1.2 TLSv1.3;
ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305;
ssl_prefer_server_ciphers on;
ssl_dhparam ffdhe2048.pem;
ssl_ecdh_curve X25519:prime256v1:secp384r1;
# Resumption from a cache the workers share (no ticket keys to rotate: a
# ticket key that never changes would undo forward secrecy).
ssl_session_cache shared:items_tls:10m;
ssl_session_timeout 1d;
ssl_session_tickets off;
# OCSP stapling, when the certificate names a responder (the generated one
# does not: nginx then staples nothing, and says so once in its log).
ssl_stapling on;
ssl_stapling_verify on;
TLS
	fi
} >"$out/items-listen.conf"

# HTTPS_ONLY=1: the plain-HTTP listener answers nothing but a redirect, the
# ACME http-01 challenges, and a refusal of writes (their token has already
# crossed the network in clear: never serve them, say why).
if [ "$HTTPS_ONLY" = 1 ]; then
	if [ "$HTTPS_PUBLIC_PORT" = 443 ]; then https_port=""; else https_port=":$HTTPS_PUBLIC_PORT"; fi
	cat >"$out/items-redirect.conf" <<REDIRECT
# Rendered by render-conf.sh: HTTPS_ONLY=1.
server {
    listen $HTTP_LISTEN default_server;
    server_name _;
    include items-headers.conf;
    include items-count.conf;

    location ^~ /.well-known/acme-challenge/ {
        root "$ACME_ROOT";
        default_type text/plain;
        try_files \$uri =404;
    }
    location / {
        default_type application/json;
        if (\$request_method ~ ^(POST|PUT|PATCH|DELETE)\$) {
            return 403 '{"error":"writes are served over HTTPS only (https://\$host$https_port\$request_uri); the token sent in clear may have been seen: rotate it"}\n';
        }
        return 308 https://\$host$https_port\$request_uri;
    }
}
REDIRECT
else
	echo "# Rendered by render-conf.sh: HTTPS_ONLY=0, no redirecting server." >"$out/items-redirect.conf"
fi

# Strict-Transport-Security, with HTTPS_ONLY=1 only (included by
# items-headers.conf: on every response of the public server, HTTPS alone then),
# and over HTTPS only: the redirecting server includes items-headers.conf too,
# and RFC 6797 (7.2) forbids the header over plain HTTP. An empty value is no
# header; the map sits in items-redirect.conf, at the http level.
if [ "$HTTPS_ONLY" = 1 ]; then
	echo "add_header Strict-Transport-Security \$items_hsts always;" >"$out/items-hsts.conf"
	cat >>"$out/items-redirect.conf" <<HSTS
map \$https \$items_hsts {
    on      "max-age=$HSTS_MAX_AGE";
    default "";
}
HSTS
else
	echo "# Rendered by render-conf.sh: HTTPS_ONLY=0, no Strict-Transport-Security." >"$out/items-hsts.conf"
fi

