#!/usr/bin/env bash
# Build the test node's Prometheus once and cache it: Prometheus with its Kubernetes service
# discovery only (tests/k8s scrapes the chart's pods through the API server; Debian's
# prometheus is built without Kubernetes discovery).
#
#   k8s-test/build-prometheus.sh <bin dir>       (called by `make k8s-tools`, see mk/k8s.mk)
#
# From the wrapper module k8s-test/prometheus, cached as cached-tool.sh says.
set -euo pipefail

bin_dir="${1:?usage: build-prometheus.sh <bin dir>}"

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"  # the release
PROMETHEUS_MODULE="v0.316.0"                         # its Go module version: must match prometheus/go.mod
PROMETHEUS_BUILD_DATE="20261105-15:06:51"            # the module's time on the Go proxy
BUILD_HINT="with a cold Go build cache: about 3 minutes on an idle 2-core machine, 6 CPU-minutes"

# shellcheck source=cached-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/cached-tool.sh"

grep -Eq "github.com/prometheus/prometheus $PROMETHEUS_MODULE( |$)" "$(dirname "$0")/prometheus/go.mod" \
  || { echo "k8s-tools: PROMETHEUS_MODULE=$PROMETHEUS_MODULE does not match prometheus/go.mod" >&2; exit 1; }

build_tool() {  # <out dir>, in the wrapper module
  # As Prometheus' own release build (.promu.yml: static, netgo, the version stamped in), plus
  # its tags that keep the Kubernetes discovery alone (plugins/plugin_*.go), and without
  # `builtinassets` (the web UI is not built: the tests use the HTTP API only).
  local ldflags="-s -w" out
  ldflags+=" -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
  ldflags+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE"
  ldflags+=" -X github.com/prometheus/common/version.Branch=$PROMETHEUS_MODULE"
  ldflags+=" -X github.com/prometheus/common/version.BuildUser=gostream-k8s-test"
  ldflags+=" -X github.com/prometheus/common/version.BuildDate=$PROMETHEUS_BUILD_DATE"
  CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
    -tags netgo,remove_all_sd,enable_kubernetes_sd -ldflags "$ldflags" -o "$1/prometheus" \
    github.com/prometheus/prometheus/cmd/prometheus
  # Refuse a binary that does not report the pinned version.
  # (output captured first: grep -q closing the pipe early would fail it under pipefail)
  out="$("$1/prometheus" --version 2>&1)"
  grep -q "^prometheus, version $PROMETHEUS_VERSION " <<<"$out" \
    || { echo "k8s-tools: prometheus reports '$out', expected $PROMETHEUS_VERSION" >&2; return 1; }
}

cached_tool prometheus "$PROMETHEUS_VERSION" "$bin_dir" "$PROMETHEUS_VERSION $PROMETHEUS_MODULE $PROMETHEUS_BUILD_DATE"
