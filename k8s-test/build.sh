#!/usr/bin/env bash
# Build the test cluster's binaries once and cache them: etcd, kube-apiserver and
# kube-controller-manager (the control plane); kubelet, kube-scheduler, kube-proxy, CoreDNS,
# kube-router and the pod sandbox's pause (the node, tests/k8s/node.py).
#
#   k8s-test/build.sh <bin dir>       (called by `make k8s-tools`, see mk/k8s.mk)
#
# Where the binaries come from, cheapest first:
#   1. <bin dir> already holds them, stamped with the current build key: nothing to do.
#   2. the machine-level cache ($GOSTREAM_K8S_CACHE, default ~/.cache/gostream/k8s/<key>/)
#      holds them (another clone, or an earlier run, built them): copy.
#   3. otherwise `go build` from the wrapper modules in this folder into the machine cache,
#      then copy. Go's own caches (GOMODCACHE, GOCACHE) make a rebuild after a version
#      change fast for the unchanged packages.
# The key is a hash of the wrapper modules (go.mod, go.sum, sources), this script and the
# Go version, so changing the pinned versions or build flags rebuilds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${1:?usage: build.sh <bin dir>}"

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"       # must match kubernetes/go.mod
KUBE_BUILD_DATE="${KUBE_BUILD_DATE:-2026-10-27T12:01:04Z}"  # release time on the Go proxy
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"        # must match etcd/go.mod (Kubernetes pins 3.7.0)
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"  # must match coredns/go.mod
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"  # must match kube-router/go.mod
BINARIES=(etcd kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy kubectl coredns kube-router pause)

command -v go >/dev/null 2>&1 || { echo "k8s-tools: 'go' (>= 1.26) is required to build Kubernetes $KUBE_VERSION" >&2; exit 1; }
grep -Eq "k8s.io/kubernetes $KUBE_VERSION( |$)" "$here/kubernetes/go.mod" \
  || { echo "k8s-tools: KUBE_VERSION=$KUBE_VERSION does not match kubernetes/go.mod" >&2; exit 1; }
grep -Eq "go.etcd.io/etcd/server/v3 $ETCD_VERSION( |$)" "$here/etcd/go.mod" \
  || { echo "k8s-tools: ETCD_VERSION=$ETCD_VERSION does not match etcd/go.mod" >&2; exit 1; }
grep -Eq "github.com/coredns/coredns $COREDNS_VERSION( |$)" "$here/coredns/go.mod" \
  || { echo "k8s-tools: COREDNS_VERSION=$COREDNS_VERSION does not match coredns/go.mod" >&2; exit 1; }
grep -Eq "github.com/cloudnativelabs/kube-router/v2 $KUBE_ROUTER_VERSION( |$)" "$here/kube-router/go.mod" \
  || { echo "k8s-tools: KUBE_ROUTER_VERSION=$KUBE_ROUTER_VERSION does not match kube-router/go.mod" >&2; exit 1; }

key="$( { go version; echo "$KUBE_VERSION $KUBE_BUILD_DATE $ETCD_VERSION $COREDNS_VERSION $KUBE_ROUTER_VERSION"; \
          cat "$here/build.sh" "$here"/kubernetes/go.{mod,sum} "$here"/etcd/go.{mod,sum} "$here"/etcd/*.go \
              "$here"/coredns/go.{mod,sum} "$here"/coredns/*.go "$here"/kube-router/go.{mod,sum} \
              "$here"/pause/go.mod "$here"/pause/*.go; } \
        | sha256sum | cut -c1-16)"
name="kube-${KUBE_VERSION}-etcd-${ETCD_VERSION}-${key}"
machine_root="${GOSTREAM_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gostream/k8s}"
machine_dir="$machine_root/$name"

have_all() { local b; for b in "${BINARIES[@]}"; do [ -x "$1/$b" ] || return 1; done; }

if have_all "$bin_dir" && [ "$(cat "$bin_dir/.k8s-build-key" 2>/dev/null)" = "$name" ]; then
  echo "k8s-tools: $name already in $bin_dir"
  exit 0
fi

mkdir -p "$machine_root" "$bin_dir"
# One build per machine at a time (parallel clones wait here, then copy).
exec 9>"$machine_root/.lock"
flock 9

if have_all "$machine_dir"; then
  echo "k8s-tools: $name found in the machine cache $machine_dir"
else
  echo "k8s-tools: building $name (with cold Go caches: 15-25 minutes on 2 cores;"
  echo "           with the Go build cache warm: under a minute)"
  tmp="$(mktemp -d "$machine_root/.build.XXXXXX")" && chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  start=$SECONDS
  # Same settings as Kubernetes' own release build (hack/lib/golang.sh): static, trimmed,
  # no symbol table, the selinux/notest/grpcnotrace tags, and the version stamped in so
  # that /version and --version report the real release.
  kube_ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION"
    kube_ldflags+=" -X $pkg.gitMajor=$(echo "$KUBE_VERSION" | cut -d. -f1 | tr -d v)"
    kube_ldflags+=" -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
    kube_ldflags+=" -X $pkg.gitTreeState=clean"
    kube_ldflags+=" -X $pkg.buildDate=$KUBE_BUILD_DATE"
  done
  (cd "$here/kubernetes" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -tags selinux,notest,grpcnotrace -ldflags "$kube_ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
      k8s.io/kubernetes/cmd/kubectl)
  (cd "$here/etcd" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" -o "$tmp/etcd" .)
  # CoreDNS and kube-router stamp their versions the way their own Makefiles do.
  (cd "$here/coredns" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$tmp/coredns" .)
  (cd "$here/kube-router" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      -o "$tmp/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  (cd "$here/pause" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp/pause" .)
  # Refuse binaries that do not report the pinned versions. Each output is captured first:
  # `binary | grep -q` fails under pipefail whenever grep exits before the binary has written
  # its last line (SIGPIPE; etcd's four lines lost that race on a loaded machine).
  for b in kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy; do
    out="$("$tmp/$b" --version)"
    grep -qx "Kubernetes $KUBE_VERSION" <<<"$out" \
      || { echo "k8s-tools: $b reports '$out', expected $KUBE_VERSION" >&2; exit 1; }
  done
  out="$("$tmp/etcd" --version)"
  grep -q "etcd Version: ${ETCD_VERSION#v}" <<<"$out" \
    || { echo "k8s-tools: etcd reports '$out', expected ${ETCD_VERSION#v}" >&2; exit 1; }
  out="$("$tmp/kubectl" version --client)"
  grep -qx "Client Version: $KUBE_VERSION" <<<"$out" \
    || { echo "k8s-tools: kubectl reports '$out', expected $KUBE_VERSION" >&2; exit 1; }
  out="$("$tmp/coredns" -version)"
  grep -q "CoreDNS-${COREDNS_VERSION#v}" <<<"$out" \
    || { echo "k8s-tools: coredns reports '$out', expected ${COREDNS_VERSION#v}" >&2; exit 1; }
  out="$("$tmp/kube-router" --version 2>&1)"
  grep -q "$KUBE_ROUTER_VERSION" <<<"$out" \
    || { echo "k8s-tools: kube-router reports '$out', expected $KUBE_ROUTER_VERSION" >&2; exit 1; }
  rm -rf "$machine_dir"
  mv "$tmp" "$machine_dir"
  trap - EXIT
  echo "k8s-tools: built $name in $((SECONDS - start)) s into $machine_dir"
fi

touch "$machine_dir"  # last used; builds unused for 30 days are removed below
find "$machine_root" -mindepth 1 -maxdepth 1 -type d -name 'kube-*' -mtime +30 -exec rm -rf {} +

for b in "${BINARIES[@]}"; do
  cp -f "$machine_dir/$b" "$bin_dir/$b.tmp" && mv -f "$bin_dir/$b.tmp" "$bin_dir/$b"
done
echo "$name" > "$bin_dir/.k8s-build-key"
echo "k8s-tools: $name ready in $bin_dir"
