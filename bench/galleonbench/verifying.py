"""Is a run's result to be trusted?  The workload's RESULT line and answer, the
dynamic loader's complaints, and the preload probe (bench/src/probe.c): every
process a workload starts must resolve malloc and free to the allocator under test
(libc.so.6 for glibc)."""
import hashlib
import os
import re
import signal

# what ld.so prints when an LD_PRELOAD entry fails (it then runs on without it)
LOADER_ERROR = re.compile(r"^.*(?:ld\.so: object .* cannot be preloaded|ERROR: ld\.so:|"
                          r"error while loading shared libraries).*$", re.M)


def describe_status(rc):
    if rc < 0:
        try:
            return "killed by signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit status %d" % rc


def parse_result_line(text):
    """'RESULT name k=v ...' -> {k: float or str}; None without such a line."""
    for line in text.splitlines():
        if line.startswith("RESULT "):
            fields = {}
            for tok in line.split()[2:]:
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    try:
                        fields[k] = float(v)
                    except ValueError:
                        fields[k] = v
            return fields
    return None


def output_hash(text):
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def loader_error(stderr):
    """The first line in which the dynamic loader reports a failed preload, or None."""
    m = LOADER_ERROR.search(stderr or "")
    return m.group(0).strip() if m else None


def read_probes(path):
    """The PROBE lines a run left: [{pid, malloc, free, exe}]."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"PROBE pid=(\d+) malloc=(\S*) free=(\S*) exe=(.*)$", line.rstrip("\n"))
                if m:
                    out.append({"pid": int(m.group(1)), "malloc": m.group(2), "free": m.group(3),
                                "exe": m.group(4)})
    except OSError:
        pass
    return out


def _is_libc(obj):
    return os.path.basename(obj).startswith("libc.so")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_preload(probes, lib, shown=None):
    """None when every process the probe saw resolved malloc and free to lib (to
    libc when lib is None), else what went wrong."""
    if not probes:
        return ("the preload probe saw no process (is %s loadable? was the program static, or did it "
                "clear LD_PRELOAD?): cannot tell which malloc ran" % "libbenchprobe.so")
    want = shown or lib or "libc.so.6"
    for p in probes:
        for sym in ("malloc", "free"):
            obj = p[sym]
            good = _is_libc(obj) if lib is None else _same_file(obj, lib)
            if not good:
                return ("preload did not take effect: %s in pid %d (%s) resolves to %s, expected %s" % (
                    sym, p["pid"], p["exe"], obj, want))
    return None


def verify_launch(outcome, alloc):
    """Loader errors and the probe for one finished launch: None or an error."""
    le = loader_error(outcome.stderr)
    if le:
        return "dynamic loader: " + le
    return check_preload(outcome.probes, alloc.lib, alloc.shown)


def check_mismatches(ws):
    """Allocators whose answers differ from glibc's ({name: {got, glibc}}); only for
    workloads with a real answer (not just 'ok')."""
    ref = ws["alloc"].get("glibc", {}).get("checks")
    out = {}
    if ref and ref != ["ok"] and len(ref) == 1:
        for name, e in ws["alloc"].items():
            if e["checks"] and e["checks"] != ref:
                out[name] = {"got": e["checks"], "glibc": ref}
    return out
