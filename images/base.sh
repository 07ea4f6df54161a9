#!/usr/bin/env bash
# Build the local base image the Dockerfiles use when no registry is reachable:
# Debian bookworm (minbase) with python3 and python3-venv, from debootstrap, imported
# into podman's storage. The root filesystem tarball is cached, so the download happens
# once; a later run only re-imports the tarball if podman's storage lost the image.
#
#   images/base.sh [IMAGE] [CACHE_DIR]
#
# Defaults: IMAGE=localhost/gostream-base:bookworm, CACHE_DIR=.cache/images.
# Needs root, debootstrap and podman (`make images-deps` installs them).
set -euo pipefail

IMAGE=${1:-localhost/gostream-base:bookworm}
CACHE_DIR=${2:-.cache/images}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARBALL="$CACHE_DIR/base-$SUITE.tar"
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

if "${PODMAN[@]}" image exists "$IMAGE"; then
  echo "base image $IMAGE already present"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  mkdir -p "$CACHE_DIR"
  work=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "debootstrap $SUITE (minbase + python3, python3-venv) from $MIRROR: about a minute"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    echo "debootstrap failed (log above)" >&2
    exit 1
  }
  root="$work/rootfs"
  # What a container never needs: package indexes and downloaded .debs (a build stage
  # that installs packages runs apt-get update itself), documentation, translations.
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/debootstrap
  # Keep it that way when later stages install packages (as Debian's own images do).
  cat >"$root/etc/dpkg/dpkg.cfg.d/01-container-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
  cat >"$root/etc/apt/apt.conf.d/01-container-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  tar --numeric-owner --xattrs -C "$root" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  echo "cached the root filesystem in $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

"${PODMAN[@]}" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $SUITE + python3" \
  "$TARBALL" "$IMAGE" >/dev/null
echo "imported $TARBALL as $IMAGE ($("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
