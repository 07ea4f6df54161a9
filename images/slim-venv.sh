#!/bin/sh
# Trim a virtualenv before the runtime stage copies it: run by each image's build stage.
#
#   sh slim-venv.sh /opt/venv
#
# Goes: test suites shipped inside packages, C/Cython sources and headers, type stubs
# (only compilers, test runners and type checkers read them), and the symbols of extension
# modules when `strip` is there (build stages with big extensions install binutils). The
# libraries auditwheel vendored into <dist>.libs/ keep theirs: patchelf rewrote them, and
# strip can corrupt such a file (numpy's OpenBLAS then fails to load).
# Stays: the .pyc files. The root file system is read-only at run time, so without them
# every process start would compile its imports again, never caching the result (measured:
# the api's imports take about a second longer, in every gunicorn worker).
set -eu
venv=$1
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
find "$site" -type f \( -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
  -o -name '*.pyi' \) -delete
if command -v strip >/dev/null; then
  find "$site" -type d -name '*.libs' -prune -o -type f -name '*.so' -exec strip --strip-unneeded {} +
fi
