#!/usr/bin/env bash
# Build the base image debian:bookworm-slim offline (no container registry needed): debootstrap a minbase
# Debian 12 from this machine's configured Debian mirror, slim it like the official slim image, and
# `docker import` it. Used by scripts/deploy.sh when `docker pull` fails.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build-base-image.sh [--force] [--tag NAME] [--update-lock]
       scripts/build-base-image.sh --check [--tag NAME]

Builds the Docker image debian:bookworm-slim (or NAME) from the Debian mirror configured in
/etc/apt/sources.list and /etc/apt/sources.list.d/ with debootstrap --variant=minbase, removes
documentation, man pages, locales and apt lists, and loads it with `docker load`.
Needs root (debootstrap), a running Docker engine and the Debian package debootstrap (installed
when missing, as root on Debian).

Pinned by scripts/base-image.lock (in the repository): the suite, the package manifest
(name=version of every package debootstrap installed), SOURCE_DATE_EPOCH, and the digests of the
result. The build is reproducible: every mtime is set to SOURCE_DATE_EPOCH, the tarball is sorted
by name with numeric owners and no atime/ctime, logs, caches and backup files are removed and the
password-change dates in /etc/shadow set to that day; the image's config (created =
SOURCE_DATE_EPOCH) is written here, not by `docker import`. So the same mirror state gives the same
layer digest and the same image ID. After building it verifies the result against the lock and
fails, loading nothing, on drift:
  - packages other than the lock's (a point release or a security update reached the mirror);
  - with the same inputs as recorded (suite, mirror URLs, debootstrap version, packages), a layer
    digest other than the lock's (the build is not reproducible: a bug here to fix).
  --update-lock   accept what this build gives: write the lock anew (review `git diff`, commit it)
  --check         verify the existing image NAME against the lock (layer digest and image ID), build
                  nothing; exit 1 when it differs (a pulled image, or one built from another state)
  --force         rebuild even when the image already exists
  --tag NAME      image name (default: debian:bookworm-slim)
  --help          this text

Environment: DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR override the mirrors read from apt's sources
(the image's apt sources name them, so they are part of its digest); BASE_IMAGE_LOCK the lock file
(default scripts/base-image.lock).
Nothing is cached outside Docker's own storage: the root filesystem is built in a temporary
directory that is removed on exit.
EOF
}

force=0
update_lock=0
check_only=0
tag=debian:bookworm-slim
while (($#)); do
    case $1 in
        --help | -h) usage; exit 0 ;;
        --force) force=1 ;;
        --update-lock) update_lock=1 ;;
        --check) check_only=1 ;;
        --tag) tag=${2:?--tag needs a value}; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=scripts/lib/docker.sh
. "$(dirname "$0")/lib/docker.sh"
lock=${BASE_IMAGE_LOCK:-$DK_ROOT/scripts/base-image.lock}

# lock_value KEY: the value of the lock's line KEY=... ('' when none).
lock_value() {
    if [[ -r $lock ]]; then sed -n "s/^$1=//p" "$lock" | head -n1; fi
}

if ((check_only)); then
    dk_engine_running || dk_die "no Docker engine answers"
    [[ -r $lock ]] || dk_die "no lock file $lock"
    have=$(docker image inspect -f '{{.Id}} {{range $i, $l := .RootFS.Layers}}{{if $i}},{{end}}{{$l}}{{end}}' "$tag" 2>/dev/null) || dk_die "no image $tag"
    want="$(lock_value image) $(lock_value layer)"
    if [[ $have != "$want" ]]; then
        dk_log "$tag differs from $lock: image and layer $have, the lock's $want"
        exit 1
    fi
    dk_log "$tag matches $lock (image $(lock_value image))"
    exit 0
fi

if ((!force && !update_lock)) && docker image inspect "$tag" >/dev/null 2>&1; then
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

suite=bookworm
arch=$(dpkg --print-architecture)
debootstrap_version=$(dpkg-query -W -f '${Version}' debootstrap 2>/dev/null || echo unknown)
# The fixed time every file and the image's config get: the lock's, or now for a first lock.
epoch=$(lock_value source_date_epoch)
if [[ -z $epoch ]]; then
    ((update_lock)) || dk_die "no lock file $lock (or no source_date_epoch in it): build with --update-lock to make one"
    epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
fi
[[ $epoch =~ ^[0-9]+$ ]] || dk_die "source_date_epoch in $lock is not a number: $epoch"
export SOURCE_DATE_EPOCH=$epoch

debootstrap --variant=minbase --merged-usr --arch="$arch" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 || {
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

# Reproducible: what varies from one run to the next without the packages changing. ldconfig's
# aux-cache records inodes and times; the "-" files are backups of the previous version; shadow's
# third field is the day each account's password was last changed (the build day).
rm -f "$rootfs/var/cache/ldconfig/aux-cache" "$rootfs"/etc/{passwd,group,shadow,gshadow,subuid,subgid}- \
    "$rootfs/var/lib/dpkg/lock" "$rootfs/var/lib/dpkg/lock-frontend" "$rootfs/var/lib/dpkg/triggers/Lock"
day=$((epoch / 86400))
awk -F: -v OFS=: -v day="$day" '$3 != "" { $3 = day } { print }' "$rootfs/etc/shadow" >"$workdir/shadow"
cat "$workdir/shadow" >"$rootfs/etc/shadow" # keeps the file's owner and mode

# The package manifest (what the lock pins) and the drift check against the lock.
dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f '${Package}=${Version}\n' | LC_ALL=C sort >"$workdir/manifest"
if [[ -r $lock ]] && ((!update_lock)); then
    sed -n 's/^package=//p' "$lock" | LC_ALL=C sort >"$workdir/manifest.lock"
    if ! diff -u "$workdir/manifest.lock" "$workdir/manifest" >"$workdir/manifest.diff"; then
        sed -n 's/^\([-+]\)\([^-+]\)/  \1\2/p' "$workdir/manifest.diff" >&2
        dk_die "the mirror ($mirror, $suite) now gives other packages than $lock records (- locked, + now; above): nothing loaded. Review them, then scripts/build-base-image.sh --update-lock --force and commit the lock."
    fi
fi

# The layer: sorted, one mtime, numeric owners, no atime/ctime, pax headers named without the PID.
tar --sort=name --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    --mtime="@$epoch" --numeric-owner --xattrs -C "$rootfs" -cf "$workdir/layer.tar" .
layer=sha256:$(sha256sum "$workdir/layer.tar" | cut -d' ' -f1)

# The image: written here (docker import would stamp the current time into its config, so the
# image ID would change with every build), loaded with docker load.
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
mkdir "$workdir/image"
mv "$workdir/layer.tar" "$workdir/image/layer.tar"
printf '{"architecture":"%s","config":{"Cmd":["bash"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"created":"%s","history":[{"created":"%s","created_by":"scripts/build-base-image.sh: debootstrap --variant=minbase %s, slimmed"}],"os":"linux","rootfs":{"diff_ids":["%s"],"type":"layers"}}' \
    "$arch" "$created" "$created" "$suite" "$layer" >"$workdir/config.json"
image=sha256:$(sha256sum "$workdir/config.json" | cut -d' ' -f1)
mv "$workdir/config.json" "$workdir/image/${image#sha256:}.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "${image#sha256:}" "$tag" >"$workdir/image/manifest.json"

# Same inputs, other bytes: the build is not reproducible (or the lock was edited by hand).
inputs="$suite $arch $mirror ${security:-none} $debootstrap_version"
locked_inputs="$(lock_value suite) $(lock_value arch) $(lock_value mirror) $(lock_value security_mirror) $(lock_value debootstrap)"
if [[ -r $lock ]] && ((!update_lock)); then
    if [[ $inputs != "$locked_inputs" ]]; then
        dk_log "the packages match $lock; the layer digest is not compared: other inputs ($inputs) than the lock's ($locked_inputs)"
    elif [[ $layer != "$(lock_value layer)" ]]; then
        dk_die "same inputs and packages as $lock, but the layer digest is $layer, the lock's $(lock_value layer): the build is not reproducible here (nothing loaded). scripts/build-base-image.sh --update-lock --force accepts it."
    fi
fi

tar -C "$workdir/image" -c . | docker load >/dev/null
[[ $(docker image inspect -f '{{.Id}}' "$tag") == "$image" ]] || dk_die "docker load gave $tag another ID than $image"

if ((update_lock)); then
    {
        printf '# The base image debian:bookworm-slim as scripts/build-base-image.sh builds it: written by\n'
        printf '# scripts/build-base-image.sh --update-lock (review the diff, commit it); every build is checked\n'
        printf '# against it. Inputs: suite, arch, mirror, security_mirror, debootstrap, source_date_epoch;\n'
        printf '# results: the package manifest, the layer digest (diff_id) and the image ID.\n'
        printf 'suite=%s\narch=%s\nmirror=%s\nsecurity_mirror=%s\ndebootstrap=%s\nsource_date_epoch=%s\n' \
            "$suite" "$arch" "$mirror" "${security:-none}" "$debootstrap_version" "$epoch"
        printf 'layer=%s\nimage=%s\n' "$layer" "$image"
        printf '# debian:bookworm-slim@sha256:... of the official image, to pull by digest where a registry\n'
        printf '# answers (scripts/lib/docker.sh); empty: pulled by tag.\n'
        printf 'pull=%s\n' "$(lock_value pull)"
        sed 's/^/package=/' "$workdir/manifest"
    } >"$lock.new"
    mv "$lock.new" "$lock"
    dk_log "wrote $lock ($(wc -l <"$workdir/manifest") packages, layer $layer)"
fi

size=$(docker image inspect -f '{{.Size}}' "$tag")
dk_log "built $tag: $((size / 1000000)) MB in $((SECONDS - start)) s; layer $layer, image $image"
