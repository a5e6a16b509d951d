#!/usr/bin/env bash
# Create the compose deployment's secrets when they are missing; never overwrite one that exists.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/secrets.sh [--dir DIR] [--check] [--renew-tls]

Creates the secret files the compose stack reads through compose `secrets:` (mounted at
/run/secrets/NAME in the containers, read via *_FILE variables):

  db_root_password   MariaDB root password            (db)
  db_password        password of the application user (db, api)
  api_token          bearer token for writes           (api)
  db_exporter_password  password of MariaDB's monitoring account exporter@'%'
                     (db, mysqld-exporter; the db sets it at every start)
  alert_webhook_url  where Alertmanager sends alerts: one http(s) URL, yours to write
                     (created as "none": alerts are then shown, sent nowhere)
  tls_cert, tls_key  the HTTPS certificate (chain) and its key, PEM (front)

Each missing password or token gets 32 random bytes, hex-encoded. An existing file is never
overwritten (an empty one is an error). The directory is made 0700; the files 0640, group 10000
(the group the api and db containers run with) when run as root, else 0644 inside the 0700
directory (the containers' users must be able to read them through the bind mount).

When neither tls_cert nor tls_key exists (bring your own: put both there), it makes a local
certificate authority (tls_ca.pem, its key tls_ca.key 0600, never mounted anywhere) and a server
certificate from it (ECDSA P-256, 397 days) for localhost, 127.0.0.1, ::1 and TLS_HOSTNAMES
(names or addresses, spaces or commas), and prints how to trust it:
curl --cacert DIR/tls_ca.pem https://localhost/. As root, tls_key is made 0400 and owned by
uid 10001, the front's nginx: nobody else reads it.

  --dir DIR   secrets directory (default: SECRETS_DIR from the environment or .env, as compose
              reads it, else ./secrets of the repository)
  --check     create nothing; exit 1 if a secret is missing or empty
  --renew-tls issue a new server certificate and key from the local CA (tls_ca.key), written over
              the old files in place (compose bind-mounts the files: a renamed file would not
              reach a running container); then scripts/deploy.sh --reload-tls
  --help      this text

Rotating a secret of a running stack: scripts/rotate-secret.sh NAME (it changes the password in
MariaDB as well: the db applies the files only at the first start of an empty volume).
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/docker.sh
. "$root/scripts/lib/docker.sh"
# As compose reads it: the environment, then .env.
dir=$(dk_setting SECRETS_DIR ./secrets)
check=0
renew_tls=0
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --dir) dir=${2:?--dir needs a value}; shift ;;
        --check) check=1 ;;
        --renew-tls) renew_tls=1 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $dir == /* ]] || dir=$root/${dir#./}

names=(db_root_password db_password api_token db_exporter_password)
tls_names=(tls_cert tls_key)
secret_gid=10000

if ((check)); then
    rc=0
    for name in "${names[@]}" "${tls_names[@]}"; do
        if [[ ! -s $dir/$name ]]; then
            echo "missing or empty: $dir/$name" >&2
            rc=1
        fi
    done
    if [[ ! -e $dir/alert_webhook_url ]]; then
        echo "missing: $dir/alert_webhook_url (\"none\" or a URL)" >&2
        rc=1
    fi
    exit "$rc"
fi

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

for name in "${names[@]}"; do
    file=$dir/$name
    if [[ -e $file ]]; then
        [[ -s $file ]] || { echo "error: $file exists but is empty: fill it or remove it" >&2; exit 1; }
        echo "kept    $file"
    else
        tmp=$(mktemp "$dir/.$name.XXXXXX")
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp"
        # ln fails if the name appeared meanwhile: never overwrite.
        if ln "$tmp" "$file" 2>/dev/null; then
            echo "created $file"
        else
            echo "kept    $file (created concurrently)"
        fi
        rm -f "$tmp"
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chgrp "$secret_gid" "$file"
        chmod 0640 "$file"
    elif [[ -O $file ]]; then
        chmod 0644 "$file"
    fi
done

# The webhook is the operator's to give (docs/monitoring.md). "none" (not an empty file: Swarm
# refuses an empty secret) sends alerts nowhere.
webhook=$dir/alert_webhook_url
if [[ -e $webhook ]]; then
    echo "kept    $webhook"
else
    echo none >"$webhook"
    echo "created $webhook (\"none\": write your pager's or chat's webhook URL in its place; docs/monitoring.md)"
fi
if [[ $(id -u) -eq 0 ]]; then
    chgrp "$secret_gid" "$webhook"
    chmod 0640 "$webhook"
elif [[ -O $webhook ]]; then
    chmod 0644 "$webhook"
fi

# --- the HTTPS certificate ----------------------------------------------------------------------

front_uid=10001
ca=$dir/tls_ca.pem
ca_key=$dir/tls_ca.key

# The CA and certificate code, shared with scripts/run-local.sh (TLS=1).
# shellcheck source=scripts/lib/tls.sh
. "$root/scripts/lib/tls.sh"

# The subjectAltName of the server certificate: localhost, loopback, TLS_HOSTNAMES.
san_list() { tls_san_list "$(dk_setting TLS_HOSTNAMES)"; }

# issue_server_cert CERT KEY: a new key and a certificate for it from the local CA.
issue_server_cert() {
    local san
    # Its own step: a bad TLS_HOSTNAMES stops here, with its message.
    san=$(san_list)
    tls_issue_server_cert "$ca" "$ca_key" "$1" "$2" "$san" "$dir"
}

# tls_modes: the key readable by the front's nginx only (as root); the rest as the other secrets.
tls_modes() {
    if [[ $(id -u) -eq 0 ]]; then
        chown "$front_uid:$front_uid" "$dir/tls_key"
        chmod 0400 "$dir/tls_key"
        chmod 0644 "$dir/tls_cert"
    else
        chmod 0644 "$dir/tls_key" "$dir/tls_cert"
    fi
}

command -v openssl >/dev/null 2>&1 || {
    if [[ $(id -u) -eq 0 ]] && dk_is_debian; then dk_apt_install openssl; else
        echo "error: openssl is needed for the HTTPS certificate (Debian: apt-get install openssl)" >&2; exit 1; fi
}

if ((renew_tls)); then
    [[ -s $ca && -s $ca_key ]] || { echo "error: no local CA in $dir (tls_ca.pem, tls_ca.key): --renew-tls renews only certificates it made; put your own renewed files in place instead" >&2; exit 1; }
    tmp=$(mktemp -d "$dir/.renew.XXXXXX")
    issue_server_cert "$tmp/cert" "$tmp/key"
    # Over the old files, in place: their inode is what compose mounted into the front.
    cat "$tmp/key" >"$dir/tls_key"
    cat "$tmp/cert" >"$dir/tls_cert"
    rm -rf "$tmp"
    tls_modes
    echo "renewed $dir/tls_cert (valid until $(openssl x509 -in "$dir/tls_cert" -noout -enddate | cut -d= -f2)); apply it: scripts/deploy.sh --reload-tls"
    exit 0
fi

if [[ -e $dir/tls_cert && -e $dir/tls_key ]]; then
    [[ -s $dir/tls_cert && -s $dir/tls_key ]] || { echo "error: $dir/tls_cert or tls_key is empty" >&2; exit 1; }
    echo "kept    $dir/tls_cert, $dir/tls_key"
elif [[ -e $dir/tls_cert || -e $dir/tls_key ]]; then
    echo "error: only one of $dir/tls_cert and $dir/tls_key exists: give both (your certificate and its key), or neither (a local CA makes them)" >&2
    exit 1
else
    if [[ ! -s $ca || ! -s $ca_key ]]; then
        tls_make_ca "$ca" "$ca_key"
        echo "created $ca (a local certificate authority; its key $ca_key stays here)"
    fi
    issue_server_cert "$dir/tls_cert" "$dir/tls_key"
    tls_modes
    echo "created $dir/tls_cert for $(san_list)"
    echo "        trust it with: curl --cacert $ca https://localhost/"
fi

