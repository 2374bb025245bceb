#!/usr/bin/env bash
# bench/pressure/run.sh [LIBGALLEON] : RSS over time of a bursty program in a cgroup
# with a 120 MiB memory limit, under Galleon with its pressure response (default),
# Galleon without it (GALLEON_PRESSURE_PERCENT=0) and glibc.  Needs root and a
# writable cgroup memory hierarchy (v1 or v2).  Writes bench/results/pressure/*.tsv
# and docs/pressure-chart.png (gnuplot).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lib=${1:-$root/build/libgalleon.so}
out=$root/bench/results/pressure
mkdir -p "$out"
prog=$(mktemp -d)/pressure_demo
cc -O2 "$here/pressure_demo.c" -o "$prog"
limit=125829120
v1=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
v2=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
if [ -n "$v1" ] && [ -w "/sys/fs/cgroup/memory$v1" ]; then
  cg=/sys/fs/cgroup/memory$v1/galleon-pressure-$$; mkdir "$cg"; echo $limit > "$cg/memory.limit_in_bytes"
elif [ -n "$v2" ] && [ -w "/sys/fs/cgroup$v2" ]; then
  cg=/sys/fs/cgroup$v2/galleon-pressure-$$; mkdir "$cg"; echo $limit > "$cg/memory.max"
else
  echo "no writable cgroup memory hierarchy here"; exit 1
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
run() { # name, env...
  local name=$1; shift
  bash -c "echo \$\$ > '$cg/cgroup.procs'; exec env $* '$prog' 4" > "$out/$name.tsv"
  echo "$name: peak $(sort -k2 -n "$out/$name.tsv" | tail -1 | awk '{print $2}') MiB, median $(awk '{print $2}' "$out/$name.tsv" | sort -n | awk '{a[NR]=$1} END{print a[int(NR/2)+1]}') MiB"
}
run galleon "LD_PRELOAD=$lib"
run galleon-no-pressure "LD_PRELOAD=$lib GALLEON_PRESSURE_PERCENT=0"
run glibc ""
if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 900,420 font ",10" noenhanced
set output "$root/docs/pressure-chart.png"
set title "RSS of a bursty program in a cgroup with a 120 MiB limit (112 MiB freed every 300 ms)"
set xlabel "ms"; set ylabel "RSS (MiB)"; set yrange [0:130]; set key bottom right
plot "$out/galleon.tsv" with lines lw 2 title "Galleon", \
     "$out/galleon-no-pressure.tsv" with lines title "Galleon, GALLEON_PRESSURE_PERCENT=0", \
     "$out/glibc.tsv" with lines title "glibc"
GP
  echo "chart: docs/pressure-chart.png"
fi
