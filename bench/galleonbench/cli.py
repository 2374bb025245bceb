"""bench/run: the command line.

usage: bench/run [--quick] [--only NAME,...] [--threads N] [--reps K] [--out DIR]
                 [--galleon PATH] [--allocators A,B,...] [--subject NAME]
                 [--syscalls] [--no-callgrind] [--list]

Builds the workloads in bench/src (gcc, into bench/build), finds the allocators
(Galleon = build/libgalleon.so, glibc = no preload, jemalloc, tcmalloc, mimalloc),
runs every workload under every allocator interleaved (A B C D E, A B C D E, ...)
K times, checks that each run used the allocator it was meant to, and reports
medians [min-max], page faults, context switches, Galleon's ratios against each
peer and their geometric means.  Writes DIR/results.json, DIR/report.txt and
DIR/chart.png.  See bench/README.md.
"""
import argparse
import json
import os
import shutil
import tempfile
import time

from . import allocators, build, callgrind, charting, reporting, running
from .paths import CACHE, RESULTS, log
from .workloads import all_workloads


class Ctx:
    """What every run needs: mode, threads, scratch and input directories, the
    prepared program commands, whether this run is traced."""

    def __init__(self, quick, threads, syscalls):
        self.quick, self.threads, self.syscalls = quick, threads, syscalls
        self.trace = False
        self.prepared = {}
        self.work = tempfile.mkdtemp(prefix="galleon-bench-")
        self.inputs = os.path.join(CACHE, "inputs")  # generated inputs, kept for reproducing failures
        os.makedirs(self.inputs, exist_ok=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Galleon benchmark suite (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repetition, under a minute")
    ap.add_argument("--only", help="comma-separated workloads (and/or 'callgrind')")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, help="repetitions (default: 1 quick, 5 full)")
    ap.add_argument("--out", help="output directory (default bench/results/<timestamp>)")
    ap.add_argument("--galleon", help="path of libgalleon.so (default build/libgalleon.so, or $GALLEON_LIB)")
    ap.add_argument("--allocators", help="comma-separated subset of galleon,glibc,jemalloc,tcmalloc,mimalloc, "
                    "plus galleon-profile (Galleon with its heap profiler on: GALLEON_PROFILE) and "
                    "galleon-secure (libgalleon-secure.so, the secure build, next to Galleon's library)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another libgalleon.so (an earlier build) run as allocator galleon-base, interleaved with "
                         "the others: a change measured against what it changes")
    ap.add_argument("--subject", help="allocator whose ratios are reported (default galleon)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count mmap/munmap/madvise/futex/... per run (one extra strace -f -c run per "
                         "workload and allocator)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    return ap.parse_args(argv)


def select(workloads, only, quick):
    if only:
        known = set(w.name for w in workloads) | {"callgrind"}
        bad = only - known
        if bad:
            raise SystemExit("unknown workload(s): %s (see --list)" % ", ".join(sorted(bad)))
        return [w for w in workloads if w.name in only]
    if quick:
        return [w for w in workloads if not w.full_only]
    return workloads


def main(argv=None):
    a = parse_args(argv)
    t_start = time.monotonic()
    workloads = all_workloads()
    if a.list:
        for w in workloads:
            print("%-14s %s%s" % (w.name, w.desc, "  (full run only)" if w.full_only else ""))
        print("%-14s %s" % ("callgrind", "instructions per malloc+free (bench/src/fastpath.c under valgrind)"))
        return 0
    allocators.install_missing_peers(syscalls=a.syscalls)
    if a.syscalls and not shutil.which("strace"):
        raise SystemExit("--syscalls needs strace (apt-get install strace)")
    reps = a.reps or (1 if a.quick else 5)
    only = set(x.strip() for x in a.only.split(",")) if a.only else None
    workloads = select(workloads, only, a.quick)
    outdir = a.out or os.path.join(RESULTS, time.strftime("%Y%m%d-%H%M%S") + ("-quick" if a.quick else ""))
    os.makedirs(outdir, exist_ok=True)
    os.environ.pop("LD_PRELOAD", None)
    ctx = Ctx(a.quick, a.threads, a.syscalls)

    try:
        build.build_programs()
        allocs = allocators.find_allocators(allocators.galleon_path(a.galleon))
        allocs, galleon_info = allocators.pin_galleon(allocs, ctx.work)
        if a.baseline:
            allocs.append(allocators.pin_baseline(a.baseline, ctx.work))
        if a.allocators:
            want = [x.strip() for x in a.allocators.split(",")] + (["galleon-base"] if a.baseline else [])
            allocs = allocators.add_variants(allocs, want, ctx.work)
            allocs = [x for x in allocs if x.name in want]
        names = [x.name for x in allocs]
        subject = a.subject or ("galleon" if "galleon" in names else None)
        if subject and subject not in names:
            raise SystemExit("--subject %s is not among the allocators found: %s" % (subject, names))
        if not subject:
            log("WARNING: no Galleon: absolute numbers only (use --subject NAME to see ratios of a peer)")
        log("allocators: " + ", ".join("%s (%s)" % (x.name, x.lib or "system, no preload") for x in allocs))
        log("threads=%d reps=%d mode=%s%s out=%s" % (ctx.threads, reps, "quick" if a.quick else "full",
                                                     " +syscalls" if a.syscalls else "", outdir))
        active = [w for w in workloads if running.prepare(ctx, w)]
        runs, traced = running.run_all(ctx, active, allocs, reps)
        cg = None
        if not a.no_callgrind and (only is None or "callgrind" in only):
            tc = time.monotonic()
            cg = callgrind.run_callgrind(ctx, allocs)
            log("  %-14s done in %5.1f s" % ("callgrind", time.monotonic() - tc))
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)

    summary = reporting.summarize(active, allocs, runs, subject, traced)
    reporting.print_report(summary, allocs, subject, cg)
    chart = charting.draw_chart(summary, allocs, subject, outdir, cg)
    total = time.monotonic() - t_start
    result = reporting.results_json(a, ctx, reps, allocs, subject, galleon_info, summary, cg, runs, traced, total)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(outdir, "report.txt"), "w") as f:
        reporting.print_report(summary, allocs, subject, cg, out=f)
    print()
    print("results: %s%s" % (os.path.join(outdir, "results.json"), ("\nchart:   " + chart) if chart else ""))
    print("total time: %.1f s" % total)
    # exit status 1 when the subject (Galleon) failed or computed a wrong answer anywhere
    bad = [wn for wn, ws in summary.items()
           if subject and (ws["alloc"][subject]["errors"] or subject in ws["check_mismatch"]
                           or ws["alloc"][subject].get("syscall_errors"))]
    if cg and subject and any(e["allocator"] == subject for e in cg["errors"]):
        bad.append("callgrind")
    if bad:
        print("%s FAILED in: %s (see FAILURES above)" % (subject, ", ".join(bad)))
    return 1 if bad else 0
