#!/usr/bin/env bash
# Build the base image debian:bookworm-slim offline (no container registry needed): debootstrap a minbase
# Debian 12 from this machine's configured Debian mirror, slim it like the official slim image, and
# `docker import` it. Used by scripts/deploy.sh when `docker pull` fails.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build-base-image.sh [--force] [--tag NAME]

Builds the Docker image debian:bookworm-slim (or NAME) from the Debian mirror configured in
/etc/apt/sources.list and /etc/apt/sources.list.d/ with debootstrap --variant=minbase, removes
documentation, man pages, locales and apt lists, and imports it with `docker import`.
Needs root (debootstrap), a running Docker engine and the Debian package debootstrap (installed
when missing, as root on Debian).

  --force      rebuild even when the image already exists
  --tag NAME   image name (default: debian:bookworm-slim)
  --help       this text

Environment: DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR override the mirrors read from apt's sources.
Nothing is cached outside Docker's own storage: the root filesystem is built in a temporary
directory that is removed on exit.
EOF
}

force=0
tag=debian:bookworm-slim
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --force) force=1 ;;
        --tag) tag=${2:?--tag needs a value}; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"

if ((!force)) && docker image inspect "$tag" >/dev/null 2>&1; then
    dk_log "$tag already exists (use --force to rebuild)"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || dk_die "debootstrap needs root"
dk_engine_running || dk_die "no Docker engine answers (scripts/deploy.sh starts one)"
command -v debootstrap >/dev/null 2>&1 || dk_apt_install debootstrap

# Print "URI SUITE" for every Debian entry of apt's sources, in both formats (one-line and deb822).
apt_source_entries() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } print $i, $(i + 1) }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk '
            function flush() { if (types ~ /(^| )deb( |$)/) for (u in uris) for (s in suites) print uris[u], suites[s]; delete uris; delete suites; types = "" }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0 " " }
            tolower($1) == "uris:" { for (i = 2; i <= NF; i++) uris[i] = $i }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) suites[i] = $i }
            END { flush() }' "$f"
    done
}

entries=$(apt_source_entries | awk '$1 ~ /^(https?|file):/' | sort -u)
mirror=${DEBIAN_MIRROR:-$(awk '$2 == "bookworm" { print $1; exit }' <<<"$entries")}
security=${DEBIAN_SECURITY_MIRROR:-$(awk '$2 == "bookworm-security" { print $1; exit }' <<<"$entries")}
[[ -n $mirror ]] || dk_die "no 'bookworm' entry in apt's sources: set DEBIAN_MIRROR"
mirror=${mirror%/}
security=${security%/}
dk_log "building $tag from $mirror (security: ${security:-none})"

start=$SECONDS
workdir=$(mktemp -d /tmp/items-base-image.XXXXXX)
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the target on failure
    local m
    for m in proc sys dev/pts dev; do
        if mountpoint -q "$workdir/rootfs/$m" 2>/dev/null; then umount -l "$workdir/rootfs/$m" || true; fi
    done
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT
rootfs=$workdir/rootfs

debootstrap --variant=minbase --merged-usr --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    bookworm "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 || {
    tail -n 30 "$workdir/debootstrap.log" >&2
    dk_die "debootstrap failed"
}

# apt sources inside the image: the same mirrors as this machine (deb822, like the official image).
{
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror"
    if [[ -n $security ]]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security"
    fi
} >"$rootfs/etc/apt/sources.list.d/debian.sources"
rm -f "$rootfs/etc/apt/sources.list"

# What the official slim image configures: no docs/man/locales from later installs, clean apt caches.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# policy-rc.d: never start services inside image builds.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"

# Slim: documentation (keeping copyright files), man/info pages, locales, apt lists and caches, logs.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda}/* "$rootfs"/usr/share/locale/*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
mkdir -p "$rootfs/var/lib/apt/lists/partial" "$rootfs/var/cache/apt/archives/partial"
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"
rm -f "$rootfs/etc/machine-id" && : >"$rootfs/etc/machine-id"

tar --numeric-owner --xattrs -C "$rootfs" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase bookworm ($mirror), slimmed" \
        - "$tag" >/dev/null

size=$(docker image inspect -f '{{.Size}}' "$tag")
dk_log "built $tag: $((size / 1000000)) MB in $((SECONDS - start)) s"
