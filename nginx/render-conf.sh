#!/bin/sh
# Renders the front tier's configuration into OUTDIR: nginx.conf from
# nginx.conf.template, with the include files beside it. The local run
# (scripts/run-local.sh) and the front image (nginx/Dockerfile) both call
# this, so the variable list and the defaults live in one place.
# POSIX sh: the image's build stage runs it with dash.
set -eu

usage() {
	cat <<USAGE
usage: nginx/render-conf.sh OUTDIR

Variables (required unless a default is shown):
  HTTP_LISTEN     public listener, e.g. 127.0.0.1:8080 or 8080
  METRICS_LISTEN  internal listener for /metrics, e.g. 8081
  FCGI_UPSTREAM   the pool for the static upstream "items_api" (host:port or unix:/path)
  FCGI_BACKEND    what requests go to [items_api]: the static upstream, or a host:port
                  re-resolved through DNS_RESOLVER every 5 s (Swarm dnsrr replicas)
  DNS_RESOLVER    resolver for FCGI_BACKEND names [127.0.0.11, Docker's embedded DNS]
  WRITE_RATE      writes (POST, PUT, PATCH, DELETE) allowed per client address [10r/s]
  WRITE_BURST     writes beyond the rate served at once before 429 [20]
  STATIC_ROOT     directory of the page
  NGINX_RUN_DIR   writable directory for the pid and temporary files
  NGINX_LOG_DIR   directory of nginx-access.log and nginx-error.log
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") usage >&2; exit 2 ;;
esac
out=$1
here=$(cd "$(dirname "$0")" && pwd)

: "${FCGI_BACKEND:=items_api}" "${DNS_RESOLVER:=127.0.0.11}"
: "${WRITE_RATE:=10r/s}" "${WRITE_BURST:=20}"
for var in HTTP_LISTEN METRICS_LISTEN FCGI_UPSTREAM STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR; do
	eval "value=\${$var:-}"
	# shellcheck disable=SC2154 # set by the eval above
	[ -n "$value" ] || { echo "render-conf.sh: $var is not set" >&2; exit 2; }
done
export HTTP_LISTEN METRICS_LISTEN FCGI_UPSTREAM FCGI_BACKEND DNS_RESOLVER WRITE_RATE \
	WRITE_BURST STATIC_ROOT NGINX_RUN_DIR NGINX_LOG_DIR

mkdir -p "$out"
# shellcheck disable=SC2016 # names for envsubst, not expansions
envsubst '${HTTP_LISTEN} ${METRICS_LISTEN} ${FCGI_UPSTREAM} ${FCGI_BACKEND} ${DNS_RESOLVER} ${WRITE_RATE} ${WRITE_BURST} ${STATIC_ROOT} ${NGINX_RUN_DIR} ${NGINX_LOG_DIR}' \
	<"$here/nginx.conf.template" >"$out/nginx.conf"
cp "$here/items-fastcgi.conf" "$here/items-headers.conf" "$out/"
