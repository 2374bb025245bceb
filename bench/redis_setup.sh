#!/bin/bash
# Build Debian's redis-server from source with MALLOC=libc so that LD_PRELOAD can
# swap the allocator (Debian's binary links jemalloc statically-ish via the system lib).
# Result: bench/.cache/redis-server (symlink to the built binary).  Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache="$here/.cache"
mkdir -p "$cache"
if [ -x "$cache/redis-server" ]; then echo "redis: already built: $cache/redis-server"; exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
src_list=/etc/apt/sources.list.d/galleon-bench-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | $SUDO tee "$src_list" >/dev/null
  else
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $SUDO tee /etc/apt/sources.list.d/galleon-bench-src.list >/dev/null
  fi
  $SUDO apt-get update -qq
fi
cd "$cache"
if ! ls -d redis-*/ >/dev/null 2>&1; then
  apt-get source -qq redis
fi
dir=$(ls -d redis-*/ | head -1); dir=${dir%/}
cd "$dir"
# Debian strips some bundled deps; use the system ones when the tree lacks them.
extra=()
missing_pkgs=()
if [ ! -d deps/lua/src ]; then extra+=(USE_SYSTEM_LUA=yes); missing_pkgs+=(liblua5.1-dev lua-bitop-dev lua-cjson-dev); fi
if [ ! -d deps/hiredis ] || [ -z "$(ls deps/hiredis 2>/dev/null)" ]; then extra+=(USE_SYSTEM_HIREDIS=yes); missing_pkgs+=(libhiredis-dev); fi
if [ ! -d deps/hdr_histogram ] || [ -z "$(ls deps/hdr_histogram 2>/dev/null)" ]; then extra+=(USE_SYSTEM_HDR_HISTOGRAM=yes); missing_pkgs+=(libhdr-histogram-dev); fi
grep -q USE_SYSTEM_LZF src/Makefile 2>/dev/null && { extra+=(USE_SYSTEM_LZF=yes); missing_pkgs+=(liblzf-dev); } || true
need=()
for p in "${missing_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#missing_pkgs[@]} -gt 0 ] && [ ${#need[@]} -gt 0 ]; then $SUDO apt-get install -y -qq "${need[@]}"; fi
echo "redis: make MALLOC=libc ${extra[*]}"
make -j2 MALLOC=libc "${extra[@]}" BUILD_TLS=no USE_SYSTEMD=no redis-server >"$cache/redis-build.log" 2>&1 || { tail -40 "$cache/redis-build.log"; exit 1; }
ln -sf "$cache/$dir/src/redis-server" "$cache/redis-server"
echo "redis: built $cache/redis-server"
