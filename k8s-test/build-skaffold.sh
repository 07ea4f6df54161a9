#!/usr/bin/env bash
# Build skaffold once and cache it, for the node test that runs `skaffold deploy` of the
# repository's skaffold.yaml (tests/k8s/test_chart_on_node.py). skaffold's releases are
# binaries on a web site, which this machine cannot reach; its Go module is on the proxy.
#
#   k8s-test/build-skaffold.sh <bin dir>       (called by `make k8s-tools`, see mk/k8s.mk)
#
# From the wrapper module k8s-test/skaffold, cached as cached-tool.sh says.
set -euo pipefail

bin_dir="${1:?usage: build-skaffold.sh <bin dir>}"

SKAFFOLD_VERSION="v2.16.1"                                 # must match skaffold/go.mod
SKAFFOLD_COMMIT="95fb592deb61a4e290edca4925bd7c9c2fa93f6c"  # the tag's commit (the Go proxy's .info)
SKAFFOLD_BUILD_DATE="2025-06-18T03:34:25Z"                 # the tag's time on the Go proxy
BUILD_HINT="with a cold Go build cache: about 4.5 minutes on an idle 2-core machine, 8 CPU-minutes"

# shellcheck source=cached-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/cached-tool.sh"

grep -Eq "github.com/GoogleContainerTools/skaffold/v2 $SKAFFOLD_VERSION( |$)" "$(dirname "$0")/skaffold/go.mod" \
  || { echo "k8s-tools: SKAFFOLD_VERSION=$SKAFFOLD_VERSION does not match skaffold/go.mod" >&2; exit 1; }

build_tool() {  # <out dir>, in the wrapper module
  # As skaffold's own Linux release build (its Makefile: the version, commit and date stamped
  # into pkg/skaffold/version, tags timetzdata osusergo netgo release, -s -w), without cgo.
  local pkg="github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version" ldflags out
  ldflags="-s -w -X $pkg.version=$SKAFFOLD_VERSION -X $pkg.gitCommit=$SKAFFOLD_COMMIT -X $pkg.buildDate=$SKAFFOLD_BUILD_DATE"
  CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
    -tags timetzdata,osusergo,netgo,release -ldflags "$ldflags" -o "$1/skaffold" \
    github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold
  # Refuse a binary that does not report the pinned version (output captured first: grep -q
  # closing the pipe early would fail it under pipefail; `version` writes nothing to HOME).
  out="$(SKAFFOLD_UPDATE_CHECK=false "$1/skaffold" version 2>&1)"
  grep -qx "$SKAFFOLD_VERSION" <<<"$out" \
    || { echo "k8s-tools: skaffold reports '$out', expected $SKAFFOLD_VERSION" >&2; return 1; }
}

cached_tool skaffold "$SKAFFOLD_VERSION" "$bin_dir" "$SKAFFOLD_VERSION $SKAFFOLD_COMMIT $SKAFFOLD_BUILD_DATE"
