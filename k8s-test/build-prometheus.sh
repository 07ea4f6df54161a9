#!/usr/bin/env bash
# Build the test node's Prometheus once and cache it: Prometheus with its Kubernetes service
# discovery only (tests/k8s scrapes the chart's pods through the API server; Debian's
# prometheus is built without Kubernetes discovery).
#
#   k8s-test/build-prometheus.sh <bin dir>       (called by `make k8s-tools`, see mk/k8s.mk)
#
# A script of its own, with a key of its own, so that a Prometheus bump does not rebuild
# Kubernetes and a Kubernetes bump does not rebuild Prometheus (build.sh hashes itself into
# its key). Where the binary comes from, cheapest first, as in build.sh:
#   1. <bin dir>/prometheus stamped with the current key: nothing to do.
#   2. the machine-level cache ($GOSTREAM_K8S_CACHE, default ~/.cache/gostream/k8s/<key>/): copy.
#   3. otherwise `go build` from the wrapper module k8s-test/prometheus into that cache, then copy.
# The key is a hash of the wrapper module (go.mod, go.sum), this script and the Go version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${1:?usage: build-prometheus.sh <bin dir>}"

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"  # the release
PROMETHEUS_MODULE="v0.316.0"                         # its Go module version: must match prometheus/go.mod
PROMETHEUS_BUILD_DATE="20261105-15:06:51"            # the module's time on the Go proxy

command -v go >/dev/null 2>&1 || { echo "k8s-tools: 'go' (>= 1.26.7) is required to build Prometheus $PROMETHEUS_VERSION" >&2; exit 1; }
grep -Eq "github.com/prometheus/prometheus $PROMETHEUS_MODULE( |$)" "$here/prometheus/go.mod" \
  || { echo "k8s-tools: PROMETHEUS_MODULE=$PROMETHEUS_MODULE does not match prometheus/go.mod" >&2; exit 1; }

key="$( { go version; echo "$PROMETHEUS_VERSION $PROMETHEUS_MODULE $PROMETHEUS_BUILD_DATE"; \
          cat "$here/build-prometheus.sh" "$here"/prometheus/go.{mod,sum}; } | sha256sum | cut -c1-16)"
name="prometheus-${PROMETHEUS_VERSION}-${key}"
machine_root="${GOSTREAM_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gostream/k8s}"
machine_dir="$machine_root/$name"

if [ -x "$bin_dir/prometheus" ] && [ "$(cat "$bin_dir/.prometheus-build-key" 2>/dev/null)" = "$name" ]; then
  echo "k8s-tools: $name already in $bin_dir"
  exit 0
fi

mkdir -p "$machine_root" "$bin_dir"
# One build per machine at a time, the same lock as build.sh's (parallel clones wait here, then copy).
exec 9>"$machine_root/.lock"
flock 9

if [ -x "$machine_dir/prometheus" ]; then
  echo "k8s-tools: $name found in the machine cache $machine_dir"
else
  echo "k8s-tools: building $name (with a cold Go build cache: about 3 minutes on an idle 2-core machine, 6 CPU-minutes)"
  tmp="$(mktemp -d "$machine_root/.build.XXXXXX")" && chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  start=$SECONDS
  # As Prometheus' own release build (.promu.yml: static, netgo, the version stamped in), plus
  # its tags that keep the Kubernetes discovery alone (plugins/plugin_*.go), and without
  # `builtinassets` (the web UI is not built: the tests use the HTTP API only).
  ldflags="-s -w"
  ldflags+=" -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
  ldflags+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE"
  ldflags+=" -X github.com/prometheus/common/version.Branch=$PROMETHEUS_MODULE"
  ldflags+=" -X github.com/prometheus/common/version.BuildUser=gostream-k8s-test"
  ldflags+=" -X github.com/prometheus/common/version.BuildDate=$PROMETHEUS_BUILD_DATE"
  (cd "$here/prometheus" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -tags netgo,remove_all_sd,enable_kubernetes_sd -ldflags "$ldflags" -o "$tmp/prometheus" \
      github.com/prometheus/prometheus/cmd/prometheus)
  # Refuse a binary that does not report the pinned version.
  # (output captured first: grep -q closing the pipe early would fail it under pipefail)
  out="$("$tmp/prometheus" --version 2>&1)"
  grep -q "^prometheus, version $PROMETHEUS_VERSION " <<<"$out" \
    || { echo "k8s-tools: prometheus reports '$out', expected $PROMETHEUS_VERSION" >&2; exit 1; }
  rm -rf "$machine_dir"
  mv "$tmp" "$machine_dir"
  trap - EXIT
  echo "k8s-tools: built $name in $((SECONDS - start)) s into $machine_dir"
fi

touch "$machine_dir"  # last used; builds unused for 30 days are removed below
find "$machine_root" -mindepth 1 -maxdepth 1 -type d -name 'prometheus-*' -mtime +30 -exec rm -rf {} +

cp -f "$machine_dir/prometheus" "$bin_dir/prometheus.tmp" && mv -f "$bin_dir/prometheus.tmp" "$bin_dir/prometheus"
echo "$name" > "$bin_dir/.prometheus-build-key"
echo "k8s-tools: $name ready in $bin_dir"
