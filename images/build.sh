#!/usr/bin/env bash
# Build the service images from images/<service>/Dockerfile with podman, on the local
# base image (images/base.sh) unless BASE_IMAGE says otherwise, and print their sizes.
#
#   images/build.sh [SERVICE...]        default: producer consumer api frontend
#
# Environment: BASE_IMAGE (localhost/gostream-base:bookworm), RUNTIME_IMAGE (the runtime
# stages' base: BASE_IMAGE-runtime for that default, else BASE_IMAGE), TAG (dev), VERSION,
# REVISION (git HEAD), LWC_VERSION (empty: the pin in mk/frontend.mk).
# Images are named localhost/gostream-<service>:<TAG>. Layers are cached in podman's
# storage: a rebuild after a source change reinstalls nothing from PyPI or npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=localhost/gostream-base:bookworm
  RUNTIME_IMAGE=${RUNTIME_IMAGE:-$BASE_IMAGE-runtime}
fi
RUNTIME_IMAGE=${RUNTIME_IMAGE:-$BASE_IMAGE}
TAG=${TAG:-dev}
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}
REVISION=${REVISION:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(producer consumer api frontend)

# How podman runs here: runc, no systemd cgroups, and the open-files/processes limits
# lowered to what this machine allows (raising them is not permitted).
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
BUILD_FLAGS=(--layers --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
# Build steps reach PyPI, npm and Debian through the host's trust store (an egress proxy
# may re-sign TLS); it is mounted for the RUN steps only and never stored in a layer.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA_BUNDLE" ] && BUILD_FLAGS+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

for base in "$BASE_IMAGE" "$RUNTIME_IMAGE"; do
  "${PODMAN[@]}" image exists "$base" || {
    echo "base image $base is missing: run 'make images-base'" >&2
    exit 1
  }
done
for svc in "${services[@]}"; do
  [ -f "images/$svc/Dockerfile" ] || { echo "no images/$svc/Dockerfile" >&2; exit 1; }
  image="localhost/gostream-$svc:$TAG"
  start=$SECONDS
  echo "building $image (bases $BASE_IMAGE, $RUNTIME_IMAGE)"
  "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
    --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" \
    ${LWC_VERSION:+--build-arg "LWC_VERSION=$LWC_VERSION"} \
    -f "images/$svc/Dockerfile" -t "$image" . >"${BUILD_LOG_DIR:-/tmp}/gostream-build-$svc.log" 2>&1 || {
    tail -40 "${BUILD_LOG_DIR:-/tmp}/gostream-build-$svc.log" >&2
    echo "building $image failed (log: ${BUILD_LOG_DIR:-/tmp}/gostream-build-$svc.log)" >&2
    exit 1
  }
  echo "built $image in $((SECONDS - start)) s"
done
for svc in "${services[@]}"; do
  "${PODMAN[@]}" image inspect --format "{{.Size}}" "localhost/gostream-$svc:$TAG" |
    awk -v n="gostream-$svc:$TAG" '{printf "  %-28s %4.0f MB\n", n, $1 / 1e6}'
done
