# shellcheck shell=bash
# Shared by build_deb.sh and test_package.sh (sourced, bash).

# need_packages PKG...: apt-get install the Debian packages that are missing.
need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' ||
      missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "tests/package: need root (or sudo) to install: ${missing[*]}" >&2
      return 1
    }
    sudo=(sudo)
  fi
  echo "tests/package: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# source_files ROOT: NUL-separated paths (relative to ROOT) of the tree the packages
# are built from: what git tracks plus untracked files it does not ignore (no
# build directories, no bench/.cache), or outside git everything but .git and the
# build directories.
source_files() {
  local root=$1
  if command -v git >/dev/null 2>&1 && git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do
        if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
      done)
  else
    (cd "$root" && find . \( -name .git -o -path ./build -o -path './build-*' -o -path ./bench/.cache \) -prune \
      -o \( -type f -o -type l \) -printf '%P\0')
  fi
}

# tree_digest DIR < LIST: one hash over the names, modes and contents of the files
# of the NUL-separated LIST (source_files' output), read in DIR.
tree_digest() {
  local dir=$1
  LC_ALL=C sort -z |
    (cd "$dir" && while IFS= read -r -d '' f; do
      printf '%s %s ' "$f" "$(stat -c %a "$f")"
      if [ -L "$f" ]; then readlink "$f"; else sha256sum < "$f"; fi
    done) | sha256sum | cut -d' ' -f1
}
