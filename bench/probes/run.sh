#!/usr/bin/env bash
# bench/probes/run.sh [OUT]: runs each probe (probes.c, read_text.py) under glibc,
# Galleon (build/libgalleon.so, or $GALLEON_LIB), jemalloc, tcmalloc and mimalloc
# (Debian's packages, where installed), and under $GALLEON_BASE too when set (an
# earlier build, shown as galleon-base); $REPS (3) repetitions, interleaved.  Writes
# every RESULT line to OUT/raw.txt and the medians to OUT/summary.txt (and stdout).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/bench/results/probes}
reps=${REPS:-3}
mkdir -p "$out"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cc -O2 -Wall -Wextra -pthread "$here/probes.c" -o "$bin/probes"
lib=/usr/lib/x86_64-linux-gnu
allocs=("glibc=" "galleon=${GALLEON_LIB:-$root/build/libgalleon.so}")
[ -n "${GALLEON_BASE:-}" ] && allocs+=("galleon-base=$GALLEON_BASE")
for peer in jemalloc=libjemalloc.so.2 tcmalloc=libtcmalloc_minimal.so.4 mimalloc=libmimalloc.so.2; do
  [ -e "$lib/${peer#*=}" ] && allocs+=("${peer%%=*}=$lib/${peer#*=}")
done
[ -e "${allocs[1]#*=}" ] || { echo "no $(echo "${allocs[1]#*=}"): build Galleon first (make)" >&2; exit 1; }
probes=("$bin/probes handoff 20000" "$bin/probes calloc-unused 100" "$bin/probes vector-doubling 5"
        "$bin/probes cross-thread 200" "python3 $here/read_text.py")
: > "$out/raw.txt"
for probe in "${probes[@]}"; do
  for rep in $(seq "$reps"); do
    for a in "${allocs[@]}"; do
      line=$(env LD_PRELOAD="${a#*=}" $probe | grep '^RESULT')
      echo "${a%%=*} $line" >> "$out/raw.txt"
    done
  done
done
# Medians per probe and allocator: elapsed_s, minflt, maxrss_kb.
awk -v reps="$reps" '
  function med(list,   n, v, i, j, t) { n = split(list, v, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }; return v[int((n + 1) / 2)] }
  { key = $3 " " $1; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
    for (i = 4; i <= NF; i++) { split($i, kv, "="); val[key, kv[1]] = val[key, kv[1]] " " kv[2] } }
  END { printf "%-16s %-13s %10s %10s %12s\n", "probe", "allocator", "elapsed_s", "minflt", "maxrss_kb"
        for (i = 1; i <= k; i++) { split(order[i], p, " ")
          printf "%-16s %-13s %10s %10s %12s\n", p[1], p[2], med(val[order[i], "elapsed_s"]), med(val[order[i], "minflt"]), med(val[order[i], "maxrss_kb"]) } }' \
  "$out/raw.txt" | tee "$out/summary.txt"
