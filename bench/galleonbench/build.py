"""The C programs of bench/src, compiled with gcc into bench/build (only what changed)."""
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

from .paths import BUILD, SRC, log

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-pthread"]

# output name -> (source, extra flags, libs)
PROGRAMS = {
    "larson": ("larson.c", [], []),
    "cache-thrash": ("cache.c", ["-DSCRATCH=0"], []),
    "cache-scratch": ("cache.c", ["-DSCRATCH=1"], []),
    "xmalloc": ("xmalloc.c", [], []),
    "mstress": ("mstress.c", [], []),
    "glibc-simple": ("glibc_simple.c", [], []),
    "glibc-thread": ("glibc_thread.c", [], ["-lm"]),
    "churn": ("churn.c", [], []),
    "malloc-large": ("large.c", [], []),
    "large-zero": ("large_zero.c", [], []),
    "short-lived": ("shortlived.c", [], []),
    "arena": ("arena.c", [], ["-ldl"]),
    "scale": ("scale.c", [], []),
    "realloc": ("realloc.c", [], []),
    "aligned": ("aligned.c", [], []),
    "mixed": ("mixed.c", [], []),
    "fragment": ("fragment.c", [], []),
    "fastpath": ("fastpath.c", [], []),
    "fastpath-stub": ("fastpath.c", ["-DSTUB"], []),
    "runjob": ("runjob.c", [], []),
    # preloaded in front of every allocator: proves the preload took effect (verifying.py)
    "libbenchprobe.so": ("probe.c", ["-shared", "-fPIC"], ["-ldl"]),
}


def build_programs():
    os.makedirs(BUILD, exist_ok=True)
    common = os.path.join(SRC, "common.h")
    todo = []
    for name, (src, flags, libs) in PROGRAMS.items():
        out = os.path.join(BUILD, name)
        srcp = os.path.join(SRC, src)
        newest = max(os.path.getmtime(srcp), os.path.getmtime(common), os.path.getmtime(__file__))
        if os.path.exists(out) and os.path.getmtime(out) >= newest:
            continue
        todo.append(["gcc"] + CFLAGS + flags + [srcp, "-o", out] + libs)

    def cc(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("build failed: %s\n%s" % (" ".join(cmd), r.stderr))

    if todo:
        log("building %d workload binaries in %s" % (len(todo), BUILD))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
            list(ex.map(cc, todo))
