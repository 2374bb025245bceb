"""Running: every process goes through bench/build/runjob (fork/exec/wait4 from a
~1 MB process, so that ru_maxrss has no floor from this Python process; it reports
time, peak RSS, faults and context switches), with LD_PRELOAD set for the command
only: the preload probe first, then the allocator under test.  With tracing on, the
command runs under strace -f -c instead (LD_PRELOAD through strace -E).  run_all()
interleaves the allocators: A B C D E, A B C D E, ..."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from . import measuring, verifying
from .measuring import RunResult
from .paths import BUILD, PROBE_LIB, RUNJOB, log


def base_env(extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def preload_value(alloc):
    """LD_PRELOAD of a run: the probe, then the allocator (if any)."""
    return ":".join(x for x in (PROBE_LIB, alloc.lib) if x)


def shown_cmd(alloc, cmd, stdin_path=None, env=None):
    """The command to reproduce a run by hand (without the probe)."""
    pre = "".join("%s=%s " % kv for kv in sorted(dict(env or {}, **(alloc.env or {})).items()))
    if alloc.lib:
        pre += "LD_PRELOAD=%s " % alloc.shown
    return pre + " ".join(c if c else '""' for c in cmd) + (" < %s" % stdin_path if stdin_path else "")


class Outcome:
    """A finished launch: rc (exit status or -signal), rep (runjob's report dict or
    None), stdout, stderr, probes (PROBE lines), syscalls (traced runs), wall."""

    def __init__(self):
        self.rc, self.rep, self.stdout, self.stderr = None, None, "", ""
        self.probes, self.syscalls, self.wall = [], None, None


class Launch:
    """One command started through runjob.  start(), then wait() (or, for a server,
    child_pid()/running() while talking to it, then wait() after it was told to
    exit; stop() kills it)."""

    def __init__(self, ctx, cmd, alloc, timeout, env=None, stdin_path=None, trace=False, cwd=None):
        self.ctx, self.cmd, self.alloc, self.timeout = ctx, list(cmd), alloc, int(timeout)
        self.env, self.stdin_path, self.trace, self.cwd = env, stdin_path, trace, cwd
        self.dir = tempfile.mkdtemp(prefix="run.", dir=ctx.work)
        self.report = os.path.join(self.dir, "runjob.report")
        self.probe_file = os.path.join(self.dir, "probe")
        self.strace_file = os.path.join(self.dir, "strace")
        self.p = None

    def argv(self):
        full = [RUNJOB, "-r", self.report, "-t", str(self.timeout)]
        inner = list(self.cmd)
        if self.trace:
            inner = measuring.strace_prefix(self.strace_file, preload_value(self.alloc)) + inner
        else:
            full += ["-p", preload_value(self.alloc)]
        return full + ["--"] + inner

    def start(self):
        env = base_env(self.env)
        env.update(self.alloc.env or {})
        env["GALLEON_BENCH_PROBE"] = self.probe_file
        self.out = open(os.path.join(self.dir, "stdout"), "w+b")
        self.err = open(os.path.join(self.dir, "stderr"), "w+b")
        self.fin = open(self.stdin_path, "rb") if self.stdin_path else subprocess.DEVNULL
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.argv(), env=env, stdout=self.out, stderr=self.err, stdin=self.fin,
                                  cwd=self.cwd, start_new_session=True)
        return self

    def running(self):
        return self.p is not None and self.p.poll() is None

    def child_pid(self):
        """The pid of the command itself (below runjob, and below strace when
        traced), or None while it is not there yet."""
        pid = self.p.pid
        for _ in range(2 if self.trace else 1):
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    kids = f.read().split()
            except OSError:
                return None
            if not kids:
                return None
            pid = int(kids[0])
        return pid

    def stop(self):
        """Kill the command (runjob kills its process group on SIGTERM)."""
        if self.running():
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def wait(self, grace=30):
        """Wait for the end (runjob kills the command itself at the timeout) and
        collect everything; removes the launch's files."""
        try:
            self.p.wait(self.timeout + grace)
        except subprocess.TimeoutExpired:
            self.p.terminate()
            time.sleep(1)
            self.p.kill()
            self.p.wait()
        o = Outcome()
        o.wall = time.monotonic() - self.t0
        if self.stdin_path:
            self.fin.close()
        for f, attr in ((self.out, "stdout"), (self.err, "stderr")):
            f.seek(0)
            setattr(o, attr, f.read().decode(errors="replace"))
            f.close()
        try:
            with open(self.report) as f:
                o.rep = measuring.parse_runjob_report(f.read())
        except OSError:
            o.rep = None
        o.probes = verifying.read_probes(self.probe_file)
        if self.trace:
            try:
                with open(self.strace_file) as f:
                    o.syscalls = measuring.parse_strace_summary(f.read())
            except OSError:
                o.syscalls = None
        if o.rep is None:
            o.rc = self.p.returncode if self.p.returncode else -9
            o.stderr += "\n[runner] no report from runjob"
        else:
            o.rc = o.rep["status"]
            if o.rc == -signal.SIGKILL and o.wall >= self.timeout:
                o.stderr += "\n[runner] killed after the %d s timeout" % self.timeout
        shutil.rmtree(self.dir, ignore_errors=True)
        return o


def finish(r, o, alloc, trace):
    """Fill r from the outcome o; returns False (r.error set) when the run failed:
    bad exit, loader error, preload not in effect, missing syscall summary."""
    r.take_usage(o.rep)
    r.syscalls = o.syscalls
    r.processes = len(set(p["pid"] for p in o.probes)) or None
    problems = []
    if o.rc != 0:
        problems.append("%s; stderr: %s" % (verifying.describe_status(o.rc), o.stderr.strip()[-600:] or "(empty)"))
    v = verifying.verify_launch(o, alloc)
    if v:
        problems.append(v)
    if trace and not o.syscalls:
        problems.append("no strace summary")
    if problems:
        r.error = "; ".join(problems)
        return False
    return True


def timeout_of(ctx, w):
    t = 30 if ctx.quick and w.kind == "c" else w.timeout
    return t * 3 if ctx.trace else t


# ----------------------------------------------------------------------------- kinds
def run_c(ctx, w, alloc):
    """A C workload of bench/src: one RESULT line with its metrics and answer."""
    r = RunResult()
    cmd = [os.path.join(BUILD, w.prog)] + w.args(ctx)
    r.cmd = shown_cmd(alloc, cmd)
    o = Launch(ctx, cmd, alloc, timeout_of(ctx, w), trace=ctx.trace).start().wait()
    r.stdout = o.stdout
    if not finish(r, o, alloc, ctx.trace):
        return r
    fields = verifying.parse_result_line(o.stdout)
    if fields is None:
        r.error = "no RESULT line; stderr: %s" % (o.stderr.strip()[-600:] or "(empty)")
        return r
    r.metrics = {k: v for k, v in fields.items() if isinstance(v, float)}
    r.ops = r.metrics.get("ops")
    r.check = fields.get("check")
    if isinstance(r.check, float):
        r.check = str(r.check)
    r.ok = True
    return r


def run_program(ctx, w, alloc):
    """A real program: its wall time is the metric, a hash of its output the answer."""
    r = RunResult()
    cmd, stdin_path, extra_env = ctx.prepared[w.name]
    r.cmd = shown_cmd(alloc, cmd, stdin_path, extra_env)
    o = Launch(ctx, cmd, alloc, timeout_of(ctx, w), env=extra_env, stdin_path=stdin_path,
               trace=ctx.trace).start().wait()
    if not finish(r, o, alloc, ctx.trace):
        return r
    text = w.check_filter(o.stdout) if w.check_filter else o.stdout
    r.check = verifying.output_hash(text)
    r.metrics = {"wall_s": r.wall}
    r.ok = True
    return r


def prepare(ctx, w):
    """Once per workload before the runs: False = skip it (a warning was printed)."""
    if w.kind == "program":
        ctx.prepared[w.name] = w.command(ctx)
        return ctx.prepared[w.name] is not None
    if w.kind.startswith("redis"):
        from . import redis
        return redis.prepare(ctx)
    return True


def run_once(ctx, w, alloc):
    """One run = w.launches(ctx) launches of the workload, combined."""
    if w.kind == "c":
        fn = run_c
    elif w.kind == "program":
        fn = run_program
    else:
        from . import redis
        fn = redis.RUNNERS[w.kind]
    n = w.launches_for(ctx)
    if n == 1:
        return fn(ctx, w, alloc)
    return measuring.combine([fn(ctx, w, alloc) for _ in range(n)])


def run_all(ctx, workloads, allocs, reps):
    """Every workload, rep by rep, the allocators interleaved within each rep (in
    turn first, so that none is always the one that runs after another workload).
    With ctx.syscalls, one more (traced, untimed) round per workload.
    Returns (runs, traced): {workload: {allocator: [RunResult]}} each."""
    runs, traced = {}, {}
    for w in workloads:
        tw = time.monotonic()
        runs[w.name] = {a.name: [] for a in allocs}
        if w.warmup:
            r = run_once(ctx, w, allocs[0])
            log("  %-14s warm-up run (untimed, %s): %s" % (w.name, allocs[0].name, "ok" if r.ok else r.error))
        for rep in range(w.reps_for(reps)):
            # interleaved, each rep starting one further: A B C D E, B C D E A, ...
            for a in allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]:
                r = run_once(ctx, w, a)
                runs[w.name][a.name].append(r)
                if not r.ok:
                    log("  FAILURE %s / %s (rep %d): %s\n    command: %s" % (w.name, a.name, rep + 1, r.error, r.cmd))
        if ctx.syscalls:
            traced[w.name] = {}
            ctx.trace = True
            try:
                for a in allocs:
                    r = run_once(ctx, w, a)
                    traced[w.name][a.name] = [r]
                    if not r.ok:
                        log("  FAILURE (strace run) %s / %s: %s\n    command: strace -f -c %s" % (
                            w.name, a.name, r.error, r.cmd))
            finally:
                ctx.trace = False
        log("  %-14s done in %5.1f s" % (w.name, time.monotonic() - tw))
    return runs, traced
