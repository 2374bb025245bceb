#!/usr/bin/env bash
# make test-package: check Galleon's Debian packages without installing them on this
# machine.  Reuses OUTDIR/*.deb while they were built from the current tree
# (OUTDIR/src.sha256), else builds them (build_deb.sh); extracts them with dpkg -x
# into a scratch root under OUTDIR and, from there:
#   - checks which package holds which file (and that none is in two);
#   - runs programs under LD_PRELOAD=<root>/usr/lib/<triplet>/libgalleon.so.0: perl,
#     whose GALLEON_STATS_AT_EXIT=1 statistics must appear on stderr, and a plain C
#     program whose malloc must resolve into libgalleon.so.0 (dladdr);
#   - compiles a program with `pkg-config --cflags --libs galleon` against the
#     extracted libgalleon-dev (PKG_CONFIG_SYSROOT_DIR/PKG_CONFIG_LIBDIR), runs it
#     (galleon_owns() of a malloc'ed block), and the same linked with libgalleon.a
#     and through find_package(galleon) in CMake;
#   - when the galleon package holds the galleon command: runs `galleon --version`,
#     and `galleon run --stats` from a root holding only libgalleon0 and galleon (what
#     `apt install galleon` installs).
# Usage: tests/package/test_package.sh [OUTDIR]   (default build-deb)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/package/common.sh
. "$root/tests/package/common.sh"
out=${1:-build-deb}
case "$out" in /*) ;; *) out=$root/$out ;; esac

need_packages build-essential cmake dpkg-dev pkg-config python3

# ---- the packages: reuse or build ----
list=$(mktemp)
source_files "$root" > "$list"
digest=$(tree_digest "$root" < "$list")
rm -f "$list"
if [ -f "$out/src.sha256" ] && [ "$(cat "$out/src.sha256")" = "$digest" ] &&
  ls "$out"/libgalleon0_*.deb "$out"/libgalleon-dev_*.deb >/dev/null 2>&1; then
  echo "== reusing the packages in $out (built from this tree)"
else
  echo "== building the packages (make deb)"
  "$root/tests/package/build_deb.sh" "$out"
fi

fail() { echo "test_package.sh: FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

version=$(dpkg-parsechangelog -l "$out/src/debian/changelog" -S Version)
upstream=${version%-*}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
deb() { echo "$out/${1}_${version}_${arch}.deb"; }
for p in libgalleon0 libgalleon-dev galleon; do
  [ -f "$(deb $p)" ] || fail "$(deb $p) was not built"
done

scratch=$(mktemp -d "$out/test-package.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
sysroot=$scratch/root
mkdir -p "$sysroot"
for p in libgalleon0 libgalleon-dev galleon; do
  dpkg -x "$(deb $p)" "$sysroot"
  dpkg-deb -c "$(deb $p)" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./||' > "$scratch/$p.files"
done
lib=$sysroot/usr/lib/$triplet

# ---- contents: each file in the package it belongs to, and in one only ----
has() { grep -qx -- "$2" "$scratch/$1.files" || fail "$1 lacks /$2"; }
has libgalleon0 "usr/lib/$triplet/libgalleon.so.0"
has libgalleon0 "usr/lib/$triplet/libgalleon.so.$upstream"
has libgalleon-dev usr/include/galleon.h
has libgalleon-dev "usr/lib/$triplet/libgalleon.a"
has libgalleon-dev "usr/lib/$triplet/libgalleon.so"
has libgalleon-dev "usr/lib/$triplet/pkgconfig/galleon.pc"
has libgalleon-dev "usr/lib/$triplet/cmake/galleon/galleonConfig.cmake"
has libgalleon-dev "usr/lib/$triplet/cmake/galleon/galleonTargets.cmake"
[ "$(readlink "$lib/libgalleon.so")" = libgalleon.so.0 ] || fail "libgalleon.so does not point to libgalleon.so.0"
if grep -v -e '^usr/share/doc/' -e "^usr/lib/$triplet/libgalleon\.so\.0" "$scratch/libgalleon0.files"; then
  fail "libgalleon0 holds more than the shared library (above)"
fi
# What the tree the packages were built from provides goes where it belongs.
if [ -f "$out/src/man/galleon.3" ]; then has libgalleon-dev usr/share/man/man3/galleon.3.gz; fi
if [ -f "$out/src/man/galleon.1" ]; then has galleon usr/share/man/man1/galleon.1.gz; fi
if [ -f "$out/src/man/galleon.7" ]; then has galleon usr/share/man/man7/galleon.7.gz; fi
if [ -e "$out/src/tools/galleon" ] || [ -e "$out/src/tools/galleon.c" ]; then has galleon usr/bin/galleon; fi
dups=$(cat "$scratch"/*.files | grep -v '^usr/share/doc/' | sort | uniq -d)
[ -z "$dups" ] || fail "files in two packages: $dups"
pass "package contents ($(cat "$scratch"/*.files | grep -vc '^usr/share/doc/') files)"

# ---- 1. LD_PRELOAD of the packaged shared library ----
# shellcheck disable=SC2016
perl_prog='my @a = map { "x" x $_ } 1 .. 2000; print scalar(@a), "\n"'
GALLEON_STATS_AT_EXIT=1 LD_PRELOAD=$lib/libgalleon.so.0 perl -e "$perl_prog" \
  > "$scratch/perl.out" 2> "$scratch/perl.err" || fail "perl under LD_PRELOAD failed: $(cat "$scratch/perl.err")"
[ "$(cat "$scratch/perl.out")" = 2000 ] || fail "perl under LD_PRELOAD printed $(cat "$scratch/perl.out")"
grep -q "^galleon $upstream statistics" "$scratch/perl.err" ||
  fail "no Galleon statistics from perl under LD_PRELOAD: $(cat "$scratch/perl.err")"
in_use=$(awk '$1 == "in_use" {print $2}' "$scratch/perl.err")
[ "${in_use:-0}" -gt 0 ] || fail "Galleon served nothing to perl (in_use ${in_use:-?})"
pass "LD_PRELOAD: perl allocated from Galleon (in_use $in_use at exit)"

cat > "$scratch/preload.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  Dl_info info;
  void *volatile p = malloc(1000);
  if (p == NULL || !dladdr((void *)&malloc, &info) || info.dli_fname == NULL) return 2;
  printf("%s\n", info.dli_fname);
  free(p);
  return strstr(info.dli_fname, "libgalleon.so.0") != NULL ? 0 : 1;
}
C
cc -O1 -o "$scratch/preload" "$scratch/preload.c"
from=$(LD_PRELOAD=$lib/libgalleon.so.0 "$scratch/preload") || fail "malloc under LD_PRELOAD resolved to ${from:-?}"
[ "$from" = "$lib/libgalleon.so.0" ] || fail "malloc resolved to $from, not $lib/libgalleon.so.0"
pass "LD_PRELOAD: a plain program's malloc is $from"

# ---- 2. building against libgalleon-dev ----
cat > "$scratch/owns.c" <<'C'
#include <galleon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  int on_stack = 0;
  char *p = malloc(100);
  if (p == NULL) return 2;
  strcpy(p, "galleon");
  if (!galleon_owns(p)) { fprintf(stderr, "galleon_owns(malloc(100)) is 0\n"); return 1; }
  if (galleon_owns(&on_stack)) { fprintf(stderr, "galleon_owns(stack) is not 0\n"); return 1; }
  free(p);
  printf("%s\n", GALLEON_VERSION_STRING);
  return 0;
}
C
export PKG_CONFIG_SYSROOT_DIR=$sysroot
export PKG_CONFIG_LIBDIR=$lib/pkgconfig
pkg-config --exists galleon || fail "pkg-config does not find galleon.pc in the extracted tree"
[ "$(pkg-config --modversion galleon)" = "$upstream" ] || fail "galleon.pc has version $(pkg-config --modversion galleon)"
flags=$(pkg-config --cflags --libs galleon)
echo "pkg-config --cflags --libs galleon: $flags"
case " $flags " in *" -I$sysroot/usr/include "*) ;; *) fail "pkg-config --cflags does not point into $sysroot" ;; esac
case " $flags " in *" -L$lib "*) ;; *) fail "pkg-config --libs does not point into $sysroot" ;; esac
# shellcheck disable=SC2086
cc -Wall -Werror -o "$scratch/owns" "$scratch/owns.c" $flags
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
got=$(LD_LIBRARY_PATH=$lib "$scratch/owns") || fail "the program built with pkg-config failed"
[ "$got" = "$upstream" ] || fail "galleon.h says version $got"
LD_LIBRARY_PATH=$lib ldd "$scratch/owns" | grep -q "libgalleon.so.0 => $lib/libgalleon.so.0" ||
  fail "the program does not load $lib/libgalleon.so.0"
pass "pkg-config: linked with -lgalleon, galleon_owns(malloc(100)) = 1"

cc -Wall -Werror -I"$sysroot/usr/include" -o "$scratch/owns_static" "$scratch/owns.c" "$lib/libgalleon.a" -lpthread
[ "$("$scratch/owns_static")" = "$upstream" ] || fail "the program linked with libgalleon.a failed"
if ldd "$scratch/owns_static" | grep -q libgalleon; then fail "the static build loads libgalleon.so"; fi
pass "libgalleon.a: linked statically, galleon_owns(malloc(100)) = 1"

mkdir -p "$scratch/cmake"
cp "$scratch/owns.c" "$scratch/cmake/"
cat > "$scratch/cmake/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(owns C)
find_package(galleon REQUIRED)
add_executable(owns owns.c)
target_link_libraries(owns galleon::galleon)
add_executable(owns_static owns.c)
target_link_libraries(owns_static galleon::galleon_static)
CM
cmake -S "$scratch/cmake" -B "$scratch/cmake/build" -DCMAKE_PREFIX_PATH="$sysroot/usr" \
  -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF > "$scratch/cmake.log" 2>&1 ||
  fail "find_package(galleon) failed: $(cat "$scratch/cmake.log")"
grep -q "galleon_DIR:PATH=$lib/cmake/galleon" "$scratch/cmake/build/CMakeCache.txt" ||
  fail "find_package(galleon) did not use $lib/cmake/galleon"
cmake --build "$scratch/cmake/build" >> "$scratch/cmake.log" 2>&1 || fail "CMake build failed: $(cat "$scratch/cmake.log")"
[ "$(LD_LIBRARY_PATH=$lib "$scratch/cmake/build/owns")" = "$upstream" ] || fail "galleon::galleon program failed"
[ "$("$scratch/cmake/build/owns_static")" = "$upstream" ] || fail "galleon::galleon_static program failed"
pass "CMake: find_package(galleon), galleon::galleon and galleon::galleon_static"

# ---- 3. the galleon command ----
if grep -qx usr/bin/galleon "$scratch/galleon.files"; then
  v=$("$sysroot/usr/bin/galleon" --version) || fail "galleon --version failed"
  echo "galleon --version: $v"
  case "$v" in *"$upstream"*) ;; *) fail "galleon --version does not say $upstream" ;; esac
  pass "galleon --version"
  # As `apt install galleon` leaves it: the command and libgalleon0, no -dev package.
  runtime=$scratch/runtime
  mkdir -p "$runtime"
  dpkg -x "$(deb libgalleon0)" "$runtime"
  dpkg -x "$(deb galleon)" "$runtime"
  "$runtime/usr/bin/galleon" run --stats -- perl -e "$perl_prog" \
    > "$scratch/run.out" 2> "$scratch/run.err" ||
    fail "galleon run with only libgalleon0 and galleon installed: $(cat "$scratch/run.err")"
  [ "$(cat "$scratch/run.out")" = 2000 ] || fail "galleon run -- perl printed $(cat "$scratch/run.out")"
  grep -q "^galleon $upstream statistics" "$scratch/run.err" ||
    fail "no Galleon statistics from galleon run --stats: $(cat "$scratch/run.err")"
  pass "galleon run --stats -- perl, with libgalleon0 and galleon only"
else
  echo "skip: the galleon package holds no galleon command (the tree has no tools/ yet)"
fi
echo "test_package.sh: all checks passed ($(basename "$(deb libgalleon0)") and co.)"
