#!/bin/sh
# Turn a copy of the base root filesystem into the runtime base: run by images/base.sh
# inside a chroot of that copy (so absolute symlinks in it never lead to the host).
#
# What goes is what a Python service never runs: package management, logins, disk tools,
# GnuTLS/Kerberos/systemd libraries, the virtualenv wheels, the stdlib's tests. What stays:
# python3 and its stdlib, OpenSSL and the CA certificates, tzdata, the shell and coreutils
# (kubectl exec), and dpkg's status file listing the packages left, for image scanners.
# The checks at the end fail the build if anything left lost a library it links to.
set -eu

# Debian packages whose files go. None is a dependency of python3, its extension modules
# (except nis and _dbm, removed below), bash, coreutils or the other tools left.
DROP="
  apt libapt-pkg6.0 dpkg debconf libdebconfclient0 debian-archive-keyring gpgv perl-base
  adduser base-passwd init-system-helpers sysvinit-utils libseccomp2 libxxhash0 libmd0
  login passwd libpam0g libpam-modules libpam-modules-bin libpam-runtime
  libsemanage2 libsemanage-common libsepol2 libaudit1 libaudit-common libcap-ng0
  util-linux util-linux-extra mount bsdutils libmount1 libblkid1 libsmartcols1 libudev1
  e2fsprogs libext2fs2 libss2 logsave libcom-err2
  libgnutls30 libnettle8 libhogweed6 libp11-kit0 libtasn1-6 libidn2-0 libunistring2
  libgcrypt20 libgpg-error0 libsystemd0 liblz4-1 libzstd1 libdb5.3
  libkrb5-3 libk5crypto3 libkrb5support0 libgssapi-krb5-2 libkeyutils1
  libtirpc3 libtirpc-common libnsl2
  python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl
  python3-distutils python3-lib2to3
"
info=/var/lib/dpkg/info

# dpkg's status without the dropped packages (paragraphs start with "Package: <name>").
awk -v drop=" $(echo $DROP) " 'BEGIN { RS = ""; ORS = "\n\n" } index(drop, " " $2 " ") == 0' \
  /var/lib/dpkg/status >/status.new

for pkg in $DROP; do
  list=$info/$pkg.list
  [ -f "$list" ] || list=$(ls "$info/$pkg":*.list 2>/dev/null | head -n 1)
  [ -f "$list" ] || { echo "runtime-prune: package $pkg is not in the base" >&2; exit 1; }
  # Files and links only: directories (/bin, /lib: the usr-merge links) may be shared.
  while IFS= read -r path; do
    [ -d "$path" ] || rm -f "$path"
  done <"$list"
  # Then the directories it left empty, deepest first.
  sort -r "$list" | while IFS= read -r path; do
    case $path in /usr/local/*) ;; /usr/*|/etc/*) [ -L "$path" ] || rmdir "$path" 2>/dev/null || true ;; esac
  done
done

py=$(echo /usr/lib/python3.[0-9]*)
# Bytecode of the packages above (compiled after installation, so not in their lists),
# the stdlib's tests and test extensions, help()'s topics, and nis/_dbm (their libraries
# went above).
rm -rf "$py"/distutils "$py"/lib2to3 "$py"/ensurepip "$py"/venv "$py"/test "$py"/pydoc_data \
  "$py"/lib-dynload/_test*.so "$py"/lib-dynload/_xxtestfuzz*.so "$py"/lib-dynload/xxlimited*.so \
  "$py"/lib-dynload/_ctypes_test*.so "$py"/lib-dynload/nis.*.so "$py"/lib-dynload/_dbm.*.so
# glibc's iconv modules (Python has its own codecs), the openssl command (the library and
# its configuration stay), shell completion, lintian overrides, package manager state.
rm -rf /usr/lib/*/gconv /usr/bin/openssl /usr/bin/c_rehash /usr/lib/ssl/misc \
  /usr/share/bash-completion /usr/share/lintian /etc/apt /etc/dpkg \
  /var/lib/apt /var/cache/apt /var/cache/debconf /var/lib/dpkg
mkdir -p /var/lib/dpkg
mv /status.new /var/lib/dpkg/status
# Alternatives that pointed into what went.
find /etc/alternatives /usr/bin /usr/sbin -xtype l -delete
ldconfig

# Every program and library left still finds its libraries; every stdlib extension imports.
missing=$(find /usr -type f \( -perm -u+x -o -name '*.so*' \) -exec sh -c \
  'for f; do ldd "$f" 2>/dev/null | grep -q "not found" && echo "$f"; done; true' sh {} +)
[ -z "$missing" ] || { echo "runtime-prune: libraries missing for:" $missing >&2; exit 1; }
python3 - <<'PY'
import importlib, os, ssl, sysconfig

dynload = os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload")
for name in sorted(os.listdir(dynload)):
    importlib.import_module(name.split(".")[0])
assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0, "no CA certificates"
PY
