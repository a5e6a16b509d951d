#!/usr/bin/env bash
# Create the compose deployment's secrets when they are missing; never overwrite one that exists.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/secrets.sh [--dir DIR] [--check]

Creates the secret files the compose stack reads through compose `secrets:` (mounted at
/run/secrets/NAME in the containers, read via *_FILE variables):

  db_root_password   MariaDB root password            (db)
  db_password        password of the application user (db, api)
  api_token          bearer token for writes           (api)

Each missing file gets 32 random bytes, hex-encoded. An existing file is never overwritten (an
empty one is an error). The directory is made 0700; the files 0640, group 10000 (the group the
api and db containers run with) when run as root, else 0644 inside the 0700 directory (the
containers' users must be able to read them through the bind mount).

  --dir DIR   secrets directory (default: SECRETS_DIR from the environment or .env, as compose
              reads it, else ./secrets of the repository)
  --check     create nothing; exit 1 if a secret is missing or empty
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
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --dir) dir=${2:?--dir needs a value}; shift ;;
        --check) check=1 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $dir == /* ]] || dir=$root/${dir#./}

names=(db_root_password db_password api_token)
secret_gid=10000

if ((check)); then
    rc=0
    for name in "${names[@]}"; do
        if [[ ! -s $dir/$name ]]; then
            echo "missing or empty: $dir/$name" >&2
            rc=1
        fi
    done
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
