"""What one run measured: wall time, peak RSS, page faults, context switches, CPU
time (from runjob's wait4 rusage), the workload's own metrics, and, in a traced run,
system call counts (strace -f -c).  RunResult is the record of one run."""
import re
import statistics

RUSAGE_FIELDS = ("minflt", "majflt", "nvcsw", "nivcsw", "utime_s", "stime_s")

# system calls counted with --syscalls; the table shows REPORTED, results.json all
TRACED_SYSCALLS = ("mmap", "munmap", "mremap", "madvise", "mprotect", "brk", "futex")
REPORTED_SYSCALLS = ("mmap", "munmap", "madvise", "futex")


def parse_runjob_report(text):
    """The RUNJOB line of bench/src/runjob.c -> dict (wall_s, maxrss_kb, status,
    minflt, ...); None when there is none."""
    m = re.search(r"RUNJOB wall_s=([\d.]+) maxrss_kb=(\d+) status=(-?\d+)(.*)", text or "")
    if not m:
        return None
    rep = {"wall_s": float(m.group(1)), "maxrss_kb": int(m.group(2)), "status": int(m.group(3))}
    for k, v in re.findall(r"(\w+)=([-\d.]+)", m.group(4)):
        rep[k] = float(v) if "." in v else int(v)
    return rep


def strace_prefix(summary_file, preload):
    """The command prefix that counts TRACED_SYSCALLS of a command and all its
    threads and children into summary_file.  LD_PRELOAD goes to the traced command
    only (strace -E), so strace itself runs on the system malloc; seccomp-bpf stops
    the tracee only on the traced calls."""
    pre = ["strace", "-f", "-c", "-U", "name,calls,errors", "-o", summary_file, "--seccomp-bpf",
           "-e", "trace=" + ",".join(TRACED_SYSCALLS)]
    if preload:
        pre += ["-E", "LD_PRELOAD=" + preload]
    return pre + ["--"]


def parse_strace_summary(text):
    """strace -c -U name,calls,errors output -> {syscall: calls}, every traced call
    present (0 when it was not made); None when the summary is missing."""
    if not text or "total" not in text:
        return None
    counts = {s: 0 for s in TRACED_SYSCALLS}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit() and f[0] != "total":
            counts[f[0]] = int(f[1])
    return counts


def vmrss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


class RunResult:
    """One run of one workload under one allocator (for a workload launched several
    times per run: the mean per process, see combine())."""

    def __init__(self):
        self.ok = False
        self.wall = None
        self.maxrss_kb = None
        self.usage = {}          # RUSAGE_FIELDS from runjob
        self.ops = None          # operations the workload reported (faults per op)
        self.syscalls = None     # {syscall: count} in a traced run
        self.metrics = {}
        self.check = None
        self.error = None
        self.cmd = None
        self.stdout = ""
        self.processes = None    # processes the preload probe saw
        self.launches = 1

    def take_usage(self, rep):
        """Copy runjob's figures (a parse_runjob_report dict)."""
        if rep:
            self.wall = rep["wall_s"]
            self.maxrss_kb = rep["maxrss_kb"]
            self.usage = {k: rep[k] for k in RUSAGE_FIELDS if k in rep}

    def per_op(self, field):
        v = self.usage.get(field)
        return v / self.ops if v is not None and self.ops else None

    def to_json(self):
        d = {"ok": self.ok, "wall_s": self.wall, "maxrss_kb": self.maxrss_kb, "metrics": self.metrics,
             "check": self.check, "error": self.error}
        d.update({k: self.usage.get(k) for k in RUSAGE_FIELDS})
        d.update({"ops": self.ops, "minflt_per_op": self.per_op("minflt"), "syscalls": self.syscalls,
                  "processes": self.processes, "launches": self.launches})
        return d


def combine(parts):
    """Several launches of one program as one run: means per process of time,
    faults, context switches, metrics and operations; the largest peak RSS; one
    answer.  Fails with the first failure."""
    r = RunResult()
    r.launches = len(parts)
    r.cmd = parts[0].cmd
    r.stdout = parts[-1].stdout
    bad = [p for p in parts if not p.ok]
    if bad:
        r.error = "launch %d of %d: %s" % (parts.index(bad[0]) + 1, len(parts), bad[0].error)
        return r
    checks = set(str(p.check) for p in parts)
    if len(checks) != 1:
        r.error = "the launches computed different answers: %s" % sorted(checks)
        return r
    mean = lambda xs: statistics.mean(xs) if xs and None not in xs else None  # noqa: E731
    r.wall = mean([p.wall for p in parts])
    r.maxrss_kb = max(p.maxrss_kb or 0 for p in parts) or None
    r.usage = {k: mean([p.usage.get(k) for p in parts]) for k in RUSAGE_FIELDS}
    r.ops = mean([p.ops for p in parts])
    r.metrics = {k: mean([p.metrics.get(k) for p in parts]) for k in parts[0].metrics}
    if all(p.syscalls for p in parts):
        r.syscalls = {k: mean([p.syscalls.get(k, 0) for p in parts]) for k in parts[0].syscalls}
    r.processes = sum(p.processes or 0 for p in parts)
    r.check = parts[0].check
    r.ok = True
    return r
