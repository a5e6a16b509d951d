#!/usr/bin/env bash
# Healthcheck of the db tier (compose healthcheck and the image's HEALTHCHECK).
# Healthy = the first initialisation has completed AND the server answers a real query over TCP on
# 127.0.0.1:3306 (the path the api uses), with InnoDB available. The credentials of the
# privilege-less `healthcheck` account come from a client option file that the entrypoint wrote with
# mode 0600 in the datadir at initialisation: no password on any command line.
set -euo pipefail

datadir=${MARIADB_DATADIR:-/var/lib/mysql}
if [[ ${1:-} == --help ]]; then
    echo "Usage: healthcheck.sh   (exit 0 when healthy; reads $datadir/.my-healthcheck.cnf)"
    exit 0
fi
if [[ ! -f $datadir/.docker-init-complete ]]; then
    echo "unhealthy: initialisation not complete" >&2
    exit 1
fi
out=$(mariadb --defaults-extra-file="$datadir/.my-healthcheck.cnf" --protocol=tcp --host=127.0.0.1 \
    --connect-timeout=3 --batch --skip-column-names \
    -e "SELECT COUNT(*) FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT')")
if [[ $out != 1 ]]; then
    echo "unhealthy: InnoDB not available" >&2
    exit 1
fi
