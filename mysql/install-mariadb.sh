#!/usr/bin/env bash
# Build-time only (both stages of mysql/Dockerfile): installs exactly MARIADB_VERSION of the given
# MariaDB packages from Debian's mirror, or fails the build saying where the pin is.
#
#   install-mariadb.sh VERSION PACKAGE...
#
# Why pinned: the server's version decides the on-disk format of the volume and whether the
# entrypoint runs mariadb-upgrade (docker-entrypoint.sh), so a rebuild must not change it silently
# when the mirror moves on; a version change is a commit that changes the pin.
set -euo pipefail

version=${1:-}
shift || true
if [[ -z $version || $# -eq 0 ]]; then
    echo "usage: install-mariadb.sh VERSION PACKAGE..." >&2
    exit 2
fi

apt-get update

missing=()
for pkg in "$@"; do
    # madison lists every version the configured mirrors offer: "pkg | version | source".
    if ! apt-cache madison "$pkg" | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -Fxq -- "$version"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    {
        echo "ERROR: MariaDB $version is not available from the Debian mirror for: ${missing[*]}"
        echo "Versions the mirror offers for ${missing[0]}:"
        apt-cache madison "${missing[0]}" | sed 's/^/    /'
        echo "Change the pin: ARG MARIADB_VERSION at the top of mysql/Dockerfile"
        echo "(or build with --build-arg MARIADB_VERSION=<one of the versions above>)."
        echo "A new version on an existing volume is upgraded by the entrypoint at the next start"
        echo "(mariadb-upgrade, after a backup of the system tables; see docs/deployment.md)."
    } >&2
    exit 1
fi

pinned=()
for pkg in "$@"; do
    pinned+=("$pkg=$version")
done
# mariadb-common and libmariadb3 come from the same source package: pinned too, so that no part of
# the server or client is taken from a newer release than the pin.
for pkg in mariadb-common libmariadb3; do
    if apt-cache madison "$pkg" | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -Fxq -- "$version"; then
        pinned+=("$pkg=$version")
    fi
done
apt-get install -y --no-install-recommends "${pinned[@]}"

# What was installed is what was asked for (apt may not silently pick another candidate).
for pkg in "$@"; do
    got=$(dpkg-query -W -f='${Version}' "$pkg")
    if [[ $got != "$version" ]]; then
        echo "ERROR: $pkg $got installed, $version asked for (mysql/Dockerfile ARG MARIADB_VERSION)" >&2
        exit 1
    fi
done
rm -rf /var/lib/apt/lists/*
