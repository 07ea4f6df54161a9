#!/bin/sh
# The pinned, hashed requirements of some of pyproject's extras, read from uv.lock: what the
# virtualenv (`make venv`: the dev extra) and each image (its service's extra) install with
# `pip install --require-hashes`. One lock for all of them; uv reads and writes it, pip installs.
#
#   images/requirements.sh api > requirements.txt   the api image's packages (+ the build backend)
#   images/requirements.sh --lock                   bring uv.lock in line with pyproject.toml,
#                                                   keeping the versions it has (`make lock`)
#   images/requirements.sh --upgrade                every package to the newest version
#                                                   pyproject.toml allows (`make upgrade`)
#
# Fails, saying to run `make lock`, when pyproject.toml changed and uv.lock was not updated.
# uv itself is pinned here and installed once into a cache (UV_HOME) with pip.
set -eu
UV_VERSION=0.13.9
UV_HOME=${UV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/gostream/uv-$UV_VERSION}
uv=$UV_HOME/bin/uv
if [ ! -x "$uv" ]; then
  python3 -m venv "$UV_HOME" >&2
  "$UV_HOME/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
export UV_NO_PROGRESS=1
case "${1:-}" in
  --lock) exec "$uv" lock ;;
  --upgrade) exec "$uv" lock --upgrade ;;
  "" | -*) echo "usage: $0 EXTRA [EXTRA...] | --lock | --upgrade" >&2; exit 2 ;;
esac
extras=""
for extra in "$@"; do extras="$extras --extra $extra"; done
# shellcheck disable=SC2086 # one --extra per word
# Offline: exporting reads only the lock (and fails at once when it no longer fits pyproject).
if ! "$uv" export --offline --quiet --locked --no-emit-project --no-header --format requirements-txt \
    --group build $extras; then
  echo "uv.lock does not match pyproject.toml: run \`make lock\` and commit uv.lock" >&2
  exit 1
fi
