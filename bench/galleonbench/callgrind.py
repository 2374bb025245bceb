"""Instructions per malloc+free: bench/src/fastpath.c under valgrind --tool=callgrind,
for N and 2N iterations, minus the same for fastpath-stub (trivial inline malloc),
so start-up and the loop's own work cancel."""
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

from . import verifying
from .paths import BUILD, log
from .running import Launch, shown_cmd

CG_MODES = [("pair", "64 B malloc/free pair", 77), ("batch", "10,000 x 64 B then free all", 67),
            ("random", "free random of 4,096 + malloc 16-1024 B", 87)]


def callgrind_count(ctx, prog, mode, n, alloc):
    """Instructions executed by the main thread (callgrind --separate-threads, file
    -01), so that an allocator's background thread, if any, does not blur the
    per-call count.  Raises RuntimeError with the command on failure."""
    fd, outf = tempfile.mkstemp(prefix="cg.", dir=ctx.work)
    os.close(fd)
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--callgrind-out-file=" + outf,
           os.path.join(BUILD, prog), mode, str(n)]
    o = Launch(ctx, cmd, alloc, 300).start().wait()
    main_ir = None
    for f in sorted(os.listdir(ctx.work)):
        p = os.path.join(ctx.work, f)
        if f.startswith(os.path.basename(outf)):
            if f.endswith("-01"):
                with open(p) as fh:
                    m = re.search(r"^(?:summary|totals):\s*(\d+)", fh.read(), re.M)
                    main_ir = int(m.group(1)) if m else None
            os.unlink(p)
    if o.rc != 0 or main_ir is None:
        raise RuntimeError("%s: %s; %s" % (shown_cmd(alloc, cmd), verifying.describe_status(o.rc),
                                           o.stderr.strip()[-400:]))
    # the launcher and the program both load the preloads; both must resolve to the allocator
    bad = verifying.verify_launch(o, alloc)
    if bad:
        raise RuntimeError("%s: %s" % (shown_cmd(alloc, cmd), bad))
    return main_ir


def run_callgrind(ctx, allocs):
    if not shutil.which("valgrind"):
        log("WARNING: valgrind missing (apt-get install valgrind): callgrind section skipped")
        return None
    ns = {"pair": 20000, "batch": 2, "random": 20000} if ctx.quick else {"pair": 200000, "batch": 10,
                                                                          "random": 200000}
    steps_per = {"pair": 1, "batch": 10000, "random": 1}
    glibc = next((a for a in allocs if a.lib is None), None)
    stub_alloc = glibc or allocs[0]._replace(name="glibc", lib=None, shown=None)
    jobs = []
    for mode, _, _ in CG_MODES:
        for k in (1, 2):
            jobs.append(("fastpath-stub", mode, k, stub_alloc, True))
            for a in allocs:
                jobs.append(("fastpath", mode, k, a, False))

    def one(j):
        prog, mode, k, a, _ = j
        try:
            return j, callgrind_count(ctx, prog, mode, ns[mode] * k, a), None
        except Exception as e:  # noqa: BLE001
            return j, None, str(e)

    log("callgrind: %d valgrind runs (2 at a time; instruction counts do not depend on load)" % len(jobs))
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 2)) as ex:
        results = list(ex.map(one, jobs))
    counts, errors = {}, []
    for (prog, mode, k, a, stub), c, e in results:
        counts[(prog, mode, k, None if stub else a.name)] = c
        if e:
            errors.append({"allocator": None if stub else a.name, "mode": mode, "error": e})
    out = {"n": ns, "modes": {}, "errors": errors}
    for mode, desc, ref in CG_MODES:
        steps = ns[mode] * steps_per[mode]
        c1, c2 = counts.get(("fastpath-stub", mode, 1, None)), counts.get(("fastpath-stub", mode, 2, None))
        loop = (c2 - c1) / steps if c1 and c2 else None
        row = {"desc": desc, "reference_best_peer": ref, "loop_overhead": loop, "per_step": {}}
        for a in allocs:
            a1, a2 = counts.get(("fastpath", mode, 1, a.name)), counts.get(("fastpath", mode, 2, a.name))
            row["per_step"][a.name] = (a2 - a1) / steps - loop if a1 and a2 and loop is not None else None
        out["modes"][mode] = row
    return out
