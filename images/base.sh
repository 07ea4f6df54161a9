#!/usr/bin/env bash
# Build the two local base images the Dockerfiles use when no registry is reachable, both
# from one Debian bookworm (minbase) root filesystem made by debootstrap:
#
#   BUILD_IMAGE    python3, python3-venv, apt: the build stages (venv, pip, apt-get)
#   RUNTIME_IMAGE  the same files minus what a Python service never runs (package
#                  management, logins, disk tools, ...: see runtime-prune.sh): the
#                  runtime stages, which only copy a finished virtualenv in
#
# The debootstrap root filesystem is cached as a tarball, so the download happens once; a
# later run only re-imports what podman's storage lost. The runtime image is derived from
# that tarball in seconds and labelled with a hash of both scripts and of the build
# image's layer: editing the recipe, or a new debootstrap, re-derives it on the next run.
#
#   images/base.sh [BUILD_IMAGE] [CACHE_DIR] [RUNTIME_IMAGE]
#
# Defaults: localhost/gostream-base:bookworm, .cache/images, BUILD_IMAGE-runtime.
# Needs root (debootstrap, chroot) and podman (`make images-deps` installs them).
set -euo pipefail

IMAGE=${1:-localhost/gostream-base:bookworm}
CACHE_DIR=${2:-.cache/images}
RUNTIME_IMAGE=${3:-$IMAGE-runtime}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARBALL="$CACHE_DIR/base-$SUITE.tar"
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
RECIPE_LABEL=org.gostream.base.recipe
HERE=$(cd "$(dirname "$0")" && pwd)

build_rootfs() {
  mkdir -p "$CACHE_DIR"
  local root
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
  rm -rf "$work"
  trap - EXIT
  echo "cached the root filesystem in $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

# The runtime root filesystem: the tarball's, pruned by runtime-prune.sh in a chroot.
build_runtime() {
  work=$(mktemp -d "$CACHE_DIR/runtime.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/rootfs"
  tar --numeric-owner --xattrs -C "$work/rootfs" -xf "$TARBALL"
  cp "$HERE/runtime-prune.sh" "$work/rootfs/runtime-prune.sh"
  chroot "$work/rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LANG=C.UTF-8 \
    /bin/sh /runtime-prune.sh </dev/null
  rm "$work/rootfs/runtime-prune.sh"
  tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/runtime.tar" .
  "${PODMAN[@]}" import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --change "LABEL $RECIPE_LABEL=$1" \
    --message "$IMAGE without what a Python service never runs (images/runtime-prune.sh)" \
    "$work/runtime.tar" "$RUNTIME_IMAGE" >/dev/null
  rm -rf "$work"
  trap - EXIT
}

size() { "${PODMAN[@]}" image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

fresh=
if [ ! -s "$TARBALL" ]; then
  build_rootfs
  fresh=1
fi
if [ -n "$fresh" ] || ! "${PODMAN[@]}" image exists "$IMAGE"; then
  "${PODMAN[@]}" import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + python3" \
    "$TARBALL" "$IMAGE" >/dev/null
  echo "imported $TARBALL as $IMAGE ($(size "$IMAGE"))"
else
  echo "base image $IMAGE already present"
fi

layer=$("${PODMAN[@]}" image inspect --format '{{index .RootFS.Layers 0}}' "$IMAGE")
recipe="$(cat "$HERE/base.sh" "$HERE/runtime-prune.sh" | sha256sum | cut -c1-12)-$(echo "${layer#sha256:}" | cut -c1-12)"
if [ "$("${PODMAN[@]}" image inspect --format "{{index .Labels \"$RECIPE_LABEL\"}}" "$RUNTIME_IMAGE" 2>/dev/null)" = "$recipe" ]; then
  echo "runtime image $RUNTIME_IMAGE already present"
  exit 0
fi
echo "deriving $RUNTIME_IMAGE from $TARBALL"
build_runtime "$recipe"
echo "imported $RUNTIME_IMAGE ($(size "$RUNTIME_IMAGE"))"
