#!/usr/bin/env bash
# make deb: build Galleon's Debian packages (debian/) with debhelper, from a copy of
# this tree in OUTDIR/src, so that the working tree gets no build output:
#   OUTDIR/libgalleon0_*.deb, libgalleon-dev_*.deb, galleon_*.deb (+ the automatic
#   libgalleon0-dbgsym_*.deb, .buildinfo, .changes), then lintian on them (fails on
#   errors).
# OUTDIR/src.sha256 records the tree the packages were built from (test_package.sh
# reuses them while it matches).  Installs the Debian packages it needs if missing.
# Usage: tests/package/build_deb.sh [OUTDIR]   (default build-deb, relative to the root)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/package/common.sh
. "$root/tests/package/common.sh"
out=${1:-build-deb}
case "$out" in /*) ;; *) out=$root/$out ;; esac

need_packages build-essential cmake debhelper dpkg-dev fakeroot lintian

# The package version follows the project: debian/changelog must name
# project(VERSION) of CMakeLists.txt.
project_version=$(sed -n 's/^project(galleon VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
deb_version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
upstream_version=${deb_version%-*}
if [ "$upstream_version" != "$project_version" ]; then
  echo "build_deb.sh: debian/changelog is at $deb_version, CMakeLists.txt at $project_version;" \
    "add a debian/changelog entry (dch -v $project_version)" >&2
  exit 1
fi

case "$out" in "$root" | "$root/") echo "build_deb.sh: OUTDIR must not be the source root" >&2; exit 1 ;; esac
rm -rf "$out"
mkdir -p "$out/src"
source_files "$root" > "$out/src.files"
(cd "$root" && tar --null -T - -cf -) < "$out/src.files" | tar -xf - -C "$out/src"
tree_digest "$out/src" < "$out/src.files" > "$out/src.sha256.new"
rm "$out/src.files"

(cd "$out/src" && dpkg-buildpackage -us -uc -b)

changes=$(ls "$out"/galleon_*.changes)
echo "== lintian $(basename "$changes")"
lintian --fail-on error --display-info "$changes"
mv "$out/src.sha256.new" "$out/src.sha256"
echo "== packages in $out:"
ls -1 "$out"/*.deb
