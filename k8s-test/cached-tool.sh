# Sourced by build-prometheus.sh and build-skaffold.sh: one binary built from a wrapper
# module in k8s-test/, cached per machine under a key of its own, so that bumping it
# rebuilds nothing else and nothing else rebuilds it (build.sh hashes itself into its key).
# Where the binary comes from, cheapest first, as in build.sh:
#   1. <bin dir>/<tool> stamped with the current key: nothing to do.
#   2. the machine-level cache ($GOSTREAM_K8S_CACHE, default ~/.cache/gostream/k8s/<name>/): copy.
#   3. otherwise the caller's `build_tool <dir>` (go build into <dir>/<tool>, then a check of
#      its version) into that cache, then copy.
# The key is a hash of the wrapper module (go.mod, go.sum), the calling script, this file,
# the pinned versions and the Go version.

# cached_tool <tool> <version> <bin dir> <pins>   (the caller defines build_tool)
cached_tool() {
  local tool="$1" version="$2" bin_dir="$3" pins="$4"
  local here module key name machine_root machine_dir start
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  module="$here/$tool"
  command -v go >/dev/null 2>&1 || { echo "k8s-tools: 'go' (>= 1.26.7) is required to build $tool $version" >&2; return 1; }

  key="$( { go version; echo "$pins"; cat "$0" "${BASH_SOURCE[0]}" "$module"/go.{mod,sum}; } | sha256sum | cut -c1-16)"
  name="${tool}-${version}-${key}"
  machine_root="${GOSTREAM_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gostream/k8s}"
  machine_dir="$machine_root/$name"

  if [ -x "$bin_dir/$tool" ] && [ "$(cat "$bin_dir/.$tool-build-key" 2>/dev/null)" = "$name" ]; then
    echo "k8s-tools: $name already in $bin_dir"
    return 0
  fi

  mkdir -p "$machine_root" "$bin_dir"
  # One build per machine at a time, the same lock as build.sh's (parallel clones wait here, then copy).
  exec 9>"$machine_root/.lock"
  flock 9

  if [ -x "$machine_dir/$tool" ]; then
    echo "k8s-tools: $name found in the machine cache $machine_dir"
  else
    echo "k8s-tools: building $name${BUILD_HINT:+ ($BUILD_HINT)}"
    tmp="$(mktemp -d "$machine_root/.build.XXXXXX")" && chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    start=$SECONDS
    (cd "$module" && build_tool "$tmp")
    rm -rf "$machine_dir"
    mv "$tmp" "$machine_dir"
    trap - EXIT
    echo "k8s-tools: built $name in $((SECONDS - start)) s into $machine_dir"
  fi

  touch "$machine_dir"  # last used; builds unused for 30 days are removed below
  find "$machine_root" -mindepth 1 -maxdepth 1 -type d -name "${tool}-*" -mtime +30 -exec rm -rf {} +

  cp -f "$machine_dir/$tool" "$bin_dir/$tool.tmp" && mv -f "$bin_dir/$tool.tmp" "$bin_dir/$tool"
  echo "$name" > "$bin_dir/.$tool-build-key"
  echo "k8s-tools: $name ready in $bin_dir"
}
