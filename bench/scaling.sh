#!/bin/bash
# bench/scaling.sh: the thread-heavy workloads at THREADS threads on a machine with
# that many cores (bench/run sizes everything for this 2-core machine), Galleon
# against glibc and the three peers, interleaved, medians of REPS.  Needs only
# bash, awk and what `make bench` built (build/libgalleon.so, bench/build), so it
# runs on a bare machine with the peers' libraries copied into PEERDIR.
#
# usage: bench/scaling.sh [THREADS] [REPS] [PEERDIR]
#   THREADS  default: the number of online CPUs
#   REPS     default 3
#   PEERDIR  where libjemalloc.so.2, libtcmalloc_minimal.so.4, libmimalloc.so.2.0 are
#            (default /usr/lib/x86_64-linux-gnu); a missing one is skipped
#   GALLEON_LIB (environment): the library to test (default build/libgalleon.so)
# prints one `RAW workload allocator value` line per run, then a table: each
# allocator's median (the workload's own metric) and Galleon's cost / its cost.
set -u
T=${1:-$(getconf _NPROCESSORS_ONLN)}
REPS=${2:-3}
PEERS=${3:-/usr/lib/x86_64-linux-gnu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bench/build

ALLOCS=(galleon glibc jemalloc tcmalloc mimalloc)
declare -A LIB=([galleon]=${GALLEON_LIB:-$ROOT/build/libgalleon.so} [glibc]="" [jemalloc]=$PEERS/libjemalloc.so.2
                [tcmalloc]=$PEERS/libtcmalloc_minimal.so.4 [mimalloc]=$PEERS/libmimalloc.so.2.0)
# name | command | metric in the RESULT line | 1 when higher is better
WORKLOADS=(
  "xmalloc|xmalloc $((1000000 * T)) $T|ops_per_s|1"
  "larson|larson 4000000 $T|ops_per_s|1"
  "mstress|mstress 1000000 $T|ops_per_s|1"
  "glibc-thread|glibc-thread 200000 $T|t$T|1"
  "scale-threads|scale threads $T|ns_per_op|0"
  "cache-scratch|cache-scratch 100000 $T|elapsed_s|0"
  "aligned|aligned 200000 $T|elapsed_s|0"
)

echo "scaling: $T threads, $REPS reps, $(getconf _NPROCESSORS_ONLN) CPUs, $(uname -r)"
for a in "${ALLOCS[@]}"; do
  if [ -n "${LIB[$a]}" ] && [ ! -e "${LIB[$a]}" ]; then
    echo "scaling: $a not found at ${LIB[$a]}: skipped"
    unset "LIB[$a]"
  fi
done

RAW=$(mktemp)
for rep in $(seq "$REPS"); do
  for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name cmd metric higher <<<"$w"
    for a in "${ALLOCS[@]}"; do
      [ -v "LIB[$a]" ] || continue
      out=$(env ${LIB[$a]:+LD_PRELOAD=${LIB[$a]}} timeout 300 $B/$cmd 2>&1 | grep '^RESULT')
      v=$(sed -n "s/.* $metric=\([0-9.e+-]*\).*/\1/p" <<<"$out")
      [ -n "$v" ] || v=FAIL
      echo "RAW $name $a $v $higher" | tee -a "$RAW"
    done
  done
done

echo
echo "median per allocator (the workload's metric); galleon's cost / the peer's below (< 1: galleon better)"
awk -v allocs="${ALLOCS[*]}" '
  { key = $2 SUBSEP $3; if ($4 != "FAIL") { n[key]++; v[key, n[key]] = $4 } higher[$2] = $5
    if (!($2 in seen)) { seen[$2] = 1; order[++nw] = $2 } }
  function median(key,   i, j, t, m) {
    m = n[key]; if (m == 0) return ""
    for (i = 1; i <= m; i++) a[i] = v[key, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    na = split(allocs, al, " ")
    printf "%-14s", "workload"; for (i = 1; i <= na; i++) printf " %12s", al[i]; printf "\n"
    for (k = 1; k <= nw; k++) {
      w = order[k]; printf "%-14s", w
      for (i = 1; i <= na; i++) { m = median(w SUBSEP al[i]); med[al[i]] = m; printf " %12s", (m == "" ? "-" : sprintf("%.4g", m)) }
      printf "\n%-14s", "  galleon/x"
      for (i = 1; i <= na; i++) {
        g = med["galleon"]; p = med[al[i]]
        if (g == "" || p == "" || g == 0 || p == 0) { printf " %12s", "-"; continue }
        r = higher[w] ? p / g : g / p
        printf " %12.2f", r; if (al[i] != "galleon") { lr[al[i]] += log(r); cnt[al[i]]++ }
      }
      printf "\n"
    }
    printf "%-14s", "geomean"
    for (i = 1; i <= na; i++) printf " %12s", (cnt[al[i]] ? sprintf("%.2f", exp(lr[al[i]] / cnt[al[i]])) : "-")
    printf "\n"
  }' "$RAW"
rm -f "$RAW"
