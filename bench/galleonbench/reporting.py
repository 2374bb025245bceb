"""Summaries (median [min-max] per workload and allocator, ratios of the subject
against each peer), the printed tables, and results.json."""
import math
import os
import statistics
import sys
import time

from . import verifying
from .measuring import REPORTED_SYSCALLS, RUSAGE_FIELDS, TRACED_SYSCALLS


def med_min_max(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return "%.3gM" % (v / 1e6) if a < 1e9 else "%.3gG" % (v / 1e9)
    if a >= 1e4:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 1:
        return "%.3f" % v if a < 10 else "%.2f" % v
    return "%.4f" % v if a >= 1e-4 or a == 0 else "%.2g" % v


def fmt_count(v):
    """A count: 1234, 12.3k, 4.56M."""
    if v is None:
        return "-"
    if v >= 1e6:
        return "%.3gM" % (v / 1e6)
    if v >= 1e4:
        return "%.3gk" % (v / 1e3)
    return "%.0f" % v


def fmt_stat(s):
    if not s:
        return "FAIL"
    return "%s [%s-%s]" % (fmt_num(s["median"]), fmt_num(s["min"]), fmt_num(s["max"]))


def median_of(s):
    return s["median"] if s else None


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(workloads, allocs, runs, subject, traced=None):
    traced = traced or {}
    summary = {}
    for w in workloads:
        if w.name not in runs:
            continue
        ws = {"metric": w.metric, "higher_better": w.higher, "desc": w.desc, "alloc": {}}
        for a in allocs:
            rs = runs[w.name].get(a.name, [])
            ok = [r for r in rs if r.ok]
            entry = {
                "ok_runs": len(ok), "runs": len(rs),
                "primary": med_min_max([w.primary(r) for r in ok]),
                "cost": med_min_max([w.cost(r) for r in ok]),
                "wall_s": med_min_max([r.wall for r in ok]),
                "maxrss_mb": med_min_max([r.maxrss_kb / 1024.0 for r in ok if r.maxrss_kb]),
                "extra": {},
                "errors": [{"cmd": r.cmd, "error": r.error} for r in rs if not r.ok],
                "checks": sorted(set(str(r.check) for r in ok)),
            }
            for k in list(w.extra) + [m for m in w.mem if m not in w.extra]:
                entry["extra"][k] = med_min_max([r.metrics.get(k) for r in ok])
            # faults, context switches, CPU time (per process for multi-launch workloads)
            for k in RUSAGE_FIELDS:
                entry[k] = med_min_max([r.usage.get(k) for r in ok])
            entry["ops"] = med_min_max([r.ops for r in ok])
            entry["minflt_per_op"] = med_min_max([r.per_op("minflt") for r in ok])
            entry["launches_per_run"] = ok[0].launches if ok else None
            trs = traced.get(w.name, {}).get(a.name)
            if trs is not None:
                tok = [r for r in trs if r.ok and r.syscalls]
                entry["syscalls"] = ({s: med_min_max([r.syscalls.get(s) for r in tok]) for s in TRACED_SYSCALLS}
                                     if tok else None)
                entry["syscall_errors"] = [{"cmd": r.cmd, "error": r.error} for r in trs if not r.ok]
            ws["alloc"][a.name] = entry
        # output consistency: every allocator must compute the same answer as glibc
        ws["check_mismatch"] = verifying.check_mismatches(ws)
        # ratios: subject cost / peer cost (lower = subject better), peak RSS, faults
        ws["ratios"] = {}
        se = ws["alloc"].get(subject) if subject else None
        for a in allocs:
            if not se or a.name == subject:
                continue
            pe = ws["alloc"][a.name]
            both = se["cost"] and pe["cost"]
            tr = (se["cost"]["median"] / pe["cost"]["median"]
                  if both and pe["cost"]["median"] and not ws["check_mismatch"].get(subject) else None)
            rr = (se["maxrss_mb"]["median"] / pe["maxrss_mb"]["median"]
                  if se["maxrss_mb"] and pe["maxrss_mb"] and both else None)
            ws["ratios"][a.name] = {"time": tr, "rss": rr,
                                    "minflt": ratio(median_of(se["minflt"]), median_of(pe["minflt"])) if both else None}
            for k in w.mem:
                x, y = se["extra"].get(k), pe["extra"].get(k)
                ws["ratios"][a.name][k] = x["median"] / y["median"] if x and y and y["median"] else None
        ws["mem_metrics"] = list(w.mem)
        summary[w.name] = ws
    return summary


def print_report(summary, allocs, subject, callgrind, out=sys.stdout):
    names = [a.name for a in allocs]
    p = lambda s="": print(s, file=out)  # noqa: E731
    colw = 26
    row = lambda label, cells: p(label + "".join("%-*s" % (colw, c) for c in cells))  # noqa: E731
    p()
    p("== Results: median [min-max] of each allocator (primary metric; lower is better unless marked ^) ==")
    p("%-14s %-11s " % ("workload", "metric") + "".join("%-*s" % (colw, n) for n in names))
    for wn, ws in summary.items():
        row("%-14s %-11s " % (wn, ws["metric"][:10] + ("^" if ws["higher_better"] else "")),
            [fmt_stat(ws["alloc"][n]["primary"]) for n in names])
    p()
    p("== Peak RSS (MiB, from wait4 ru_maxrss), median [min-max] ==")
    for wn, ws in summary.items():
        row("%-14s %-11s " % (wn, "maxrss_mb"), [fmt_stat(ws["alloc"][n]["maxrss_mb"]) for n in names])
    p()
    p("== Page faults: minor faults (wait4 ru_minflt, the process and its children; per process when a run "
      "launches it several times), median, and per operation where the workload counts operations ==")
    for wn, ws in summary.items():
        cells = []
        for n in names:
            e = ws["alloc"][n]
            c = fmt_count(median_of(e["minflt"])) if e["minflt"] else "FAIL"
            po = median_of(e["minflt_per_op"])
            if po is not None:
                c += " (%s/op)" % fmt_num(po)
            cells.append(c)
        row("%-14s %-11s " % (wn, "minflt"), cells)
    p()
    p("== Context switches (wait4 ru_nvcsw / ru_nivcsw): voluntary / involuntary, median ==")
    for wn, ws in summary.items():
        row("%-14s %-11s " % (wn, "vol/invol"), [
            "%s / %s" % (fmt_count(median_of(ws["alloc"][n]["nvcsw"])), fmt_count(median_of(ws["alloc"][n]["nivcsw"])))
            if ws["alloc"][n]["nvcsw"] else "FAIL" for n in names])
    if any("syscalls" in e for ws in summary.values() for e in ws["alloc"].values()):
        p()
        p("== System calls (strace -f -c, one extra untimed run per workload and allocator): %s ==" %
          " / ".join(REPORTED_SYSCALLS))
        for wn, ws in summary.items():
            cells = []
            for n in names:
                sc = ws["alloc"][n].get("syscalls")
                cells.append(" / ".join(fmt_count(median_of(sc[s])) for s in REPORTED_SYSCALLS) if sc else "FAIL")
            row("%-14s %-11s " % (wn, "syscalls"), cells)
    extra_rows = [(wn, k) for wn, ws in summary.items() for k in next(iter(ws["alloc"].values()))["extra"]]
    if extra_rows:
        p()
        p("== Secondary metrics (memory in MiB, rates in ops/s) ==")
        for wn, k in extra_rows:
            ws = summary[wn]
            row("%-14s %-15s " % (wn, k[:15]), [fmt_stat(ws["alloc"][n]["extra"].get(k)) for n in names])
    if subject:
        peers = [n for n in names if n != subject]
        p()
        p("== %s ratios vs each peer: time = %s cost / peer cost, rss = %s peak RSS / peer peak RSS "
          "(< 1.00 means %s is better) ==" % (subject, subject, subject, subject))
        p("%-14s " % "workload" + "".join("%-19s" % ("vs " + n) for n in peers))
        p("%-14s " % "" + "".join("%-19s" % "time    rss" for _ in peers))
        tg = {n: [] for n in peers}
        rg = {n: [] for n in peers}
        for wn, ws in summary.items():
            cells = []
            for n in peers:
                r = ws["ratios"].get(n, {})
                t, s = r.get("time"), r.get("rss")
                tg[n].append(t)
                rg[n].append(s)
                cells.append("%-19s" % ("%-7s %-7s" % ("%.2f" % t if t else "-", "%.2f" % s if s else "-")))
            p("%-14s " % wn + "".join(cells))
        p("%-14s " % "GEOMEAN" + "".join("%-19s" % ("%-7s %-7s" % (
            "%.2f" % geomean(tg[n]) if geomean(tg[n]) else "-", "%.2f" % geomean(rg[n]) if geomean(rg[n]) else "-"))
            for n in peers))
        memrows = [(wn, k) for wn, ws in summary.items() for k in ws["mem_metrics"]]
        if memrows:
            p()
            p("== %s memory-return ratios (the workload's own RSS reading, %s / peer; < 1.00 = %s holds less) =="
              % (subject, subject, subject))
            p("%-28s " % "workload:metric" + "".join("%-12s" % ("vs " + n) for n in peers))
            for wn, k in memrows:
                p("%-28s " % (wn + ":" + k) + "".join(
                    "%-12s" % ("%.2f" % summary[wn]["ratios"][n][k] if summary[wn]["ratios"][n].get(k) else "-")
                    for n in peers))
    if callgrind:
        p()
        p("== callgrind: instructions per malloc+free step (loop cost subtracted; exact, noise-free) ==")
        p("%-8s %-10s " % ("loop", "loop-only") + "".join("%-11s" % n for n in names) + "ref(best peer)")
        for mode, r in callgrind["modes"].items():
            p("%-8s %-10s " % (mode, "%.1f" % r["loop_overhead"] if r["loop_overhead"] is not None else "-") +
              "".join("%-11s" % ("%.1f" % r["per_step"][n] if r["per_step"].get(n) is not None else "FAIL")
                      for n in names) + "%d" % r["reference_best_peer"])
        for e in callgrind["errors"]:
            p("  callgrind FAILURE (%s, %s): %s" % (e["allocator"], e["mode"], e["error"]))
    fails = [(wn, n, e) for wn, ws in summary.items() for n in names for e in ws["alloc"][n]["errors"]]
    sfails = [(wn, n, e) for wn, ws in summary.items() for n in names
              for e in ws["alloc"][n].get("syscall_errors", [])]
    mism = [(wn, n, m) for wn, ws in summary.items() for n, m in ws["check_mismatch"].items()]
    if fails or mism or sfails:
        p()
        p("== FAILURES ==")
        for wn, n, e in fails:
            p("  [%s / %s] %s\n      command: %s" % (wn, n, e["error"], e["cmd"]))
        for wn, n, e in sfails:
            p("  [%s / %s, strace run] %s\n      command: %s" % (wn, n, e["error"], e["cmd"]))
        for wn, n, m in mism:
            p("  [%s / %s] WRONG RESULT: check %s, glibc computed %s" % (wn, n, m["got"], m["glibc"]))


def results_json(args, ctx, reps, allocs, subject, galleon_info, summary, callgrind, runs, traced, total):
    """Everything, for other tools.  Layout: meta, allocators, workloads (the
    summaries), geomean_ratios, callgrind, raw (every run), raw_syscalls (the traced
    runs, --syscalls only)."""
    names = [a.name for a in allocs]
    geo = {}
    if subject:
        for n in names:
            if n != subject:
                geo[n] = {k: geomean([ws["ratios"].get(n, {}).get(k) for ws in summary.values()])
                          for k in ("time", "rss", "minflt")}
    return {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "threads": ctx.threads,
                 "reps": reps, "host": os.uname().nodename, "cpus": os.cpu_count(), "total_s": total,
                 "subject": subject, "galleon": galleon_info, "syscalls": bool(args.syscalls),
                 "traced_syscalls": list(TRACED_SYSCALLS) if args.syscalls else None,
                 "preload_check": "bench/src/probe.c: malloc and free of every process resolve to the allocator"},
        "allocators": [{"name": a.name, "preload": a.lib} for a in allocs],
        "workloads": summary,
        "geomean_ratios": geo,
        "callgrind": callgrind,
        "raw": {wn: {n: [r.to_json() for r in rs] for n, rs in per.items()} for wn, per in runs.items()},
        "raw_syscalls": ({wn: {n: [r.to_json() for r in rs] for n, rs in per.items()} for wn, per in traced.items()}
                         if args.syscalls else None),
    }
