"""galleonbench - the Galleon benchmark suite behind bench/run.

One module per concern (see bench/README.md, "Layout"):

  paths       where things are (bench/, bench/build, bench/.cache), log()
  build       the C programs and the preload probe, compiled with gcc into bench/build
  allocators  which allocators exist (Galleon, glibc, jemalloc, tcmalloc, mimalloc), pinning
  workloads   the workloads, as a table of data
  inputs      generated inputs of the real programs (sqlite script, C file, python script)
  running     process launch through bench/build/runjob, preload, strace, interleaving
  measuring   the record of one run: time, RSS, faults, context switches, syscalls
  verifying   RESULT lines, answers, loader errors, the preload probe
  redis       the redis-server workloads
  callgrind   instructions per malloc+free under valgrind
  reporting   summaries, the printed tables, results.json
  charting    chart.png (matplotlib or gnuplot)
  cli         the command line (bench/run)
"""
