"""The redis workloads: Debian's redis built from source with MALLOC=libc
(bench/redis_setup.sh) so that LD_PRELOAD swaps its allocator, driven by
redis-benchmark and redis-cli (which run on the system malloc).  The server only
listens on 127.0.0.1, every wait is bounded, and the server is always killed."""
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from . import verifying
from .measuring import RunResult, vmrss_mb
from .paths import BENCH, CACHE, log
from .running import Launch, base_env, finish, shown_cmd

SERVER = os.path.join(CACHE, "redis-server")
TOOLS = {}


def prepare(ctx):
    """Build redis once; find redis-cli and redis-benchmark.  False = skip."""
    if "ok" in TOOLS:
        return TOOLS["ok"]
    TOOLS["cli"] = shutil.which("redis-cli")
    TOOLS["bench"] = shutil.which("redis-benchmark")
    TOOLS["ok"] = False
    if not (TOOLS["cli"] and TOOLS["bench"]):
        log("WARNING: redis-cli/redis-benchmark missing (apt-get install redis-tools): redis skipped")
        return False
    if not os.access(SERVER, os.X_OK):
        log("building redis from Debian source (bench/redis_setup.sh), this takes a few minutes ...")
        r = subprocess.run([os.path.join(BENCH, "redis_setup.sh")], capture_output=True, text=True)
        if r.returncode != 0 or not os.access(SERVER, os.X_OK):
            log("WARNING: redis build failed, redis skipped:\n" + (r.stdout + r.stderr)[-1500:])
            return False
    TOOLS["ok"] = True
    return True


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """redis-server on 127.0.0.1 under one allocator, started through runjob."""

    def __init__(self, ctx, alloc):
        self.ctx, self.alloc = ctx, alloc
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=ctx.work, prefix="redis-")
        self.cmd = [SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--dir", self.dir, "--logfile", os.path.join(self.dir, "log"), "--daemonize", "no",
                    "--protected-mode", "yes", "--io-threads", "1"]
        self.launch = Launch(ctx, self.cmd, alloc, 900, trace=ctx.trace)
        self.pid = None
        self.last_bench = ""

    def shown(self):
        return shown_cmd(self.alloc, self.cmd)

    def cli(self, *args, timeout=30):
        r = subprocess.run([TOOLS["cli"], "-h", "127.0.0.1", "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=timeout, env=base_env())
        return r.stdout

    def bench(self, args, timeout=180):
        r = subprocess.run([TOOLS["bench"], "-h", "127.0.0.1", "-p", str(self.port)] + args, capture_output=True,
                           text=True, timeout=timeout, env=base_env())
        self.last_bench = "redis-benchmark %s -> exit %d; stdout tail: %r; stderr tail: %r" % (
            " ".join(args), r.returncode, r.stdout[-200:], r.stderr[-300:])
        if r.returncode != 0:
            raise RuntimeError(self.last_bench)
        return r.stdout

    def rss_mb(self):
        return vmrss_mb(self.pid)

    def start(self):
        """Start, wait for PING (10 s), and check that the allocator is in effect:
        mem_allocator:libc, the library mapped, the probe's verdict."""
        self.launch.start()
        for _ in range(100):
            if self.pid is None:
                self.pid = self.launch.child_pid()
            if not self.launch.running():
                raise RuntimeError("redis-server exited at start-up")
            if self.pid and self.cli("ping", timeout=5).strip() == "PONG":
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("redis-server did not answer PING within 10 s")
        m = re.search(r"mem_allocator:(\S+)", self.cli("info", "memory"))
        if not m or m.group(1) != "libc":
            raise RuntimeError("mem_allocator is %s, not libc: preloading cannot work" % (m and m.group(1)))
        with open("/proc/%d/maps" % self.pid) as f:
            maps = f.read()
        lib = self.alloc.lib
        if lib and os.path.realpath(lib) not in maps and lib not in maps:
            raise RuntimeError("%s is not mapped into redis-server: LD_PRELOAD did not take effect" % lib)
        if not lib and any(x in maps for x in ("jemalloc", "tcmalloc", "mimalloc", "galleon")):
            raise RuntimeError("an allocator library is mapped into the glibc run")
        bad = verifying.check_preload(verifying.read_probes(self.launch.probe_file), lib, self.alloc.shown)
        if bad:
            raise RuntimeError(bad)

    def stop(self, r):
        """SHUTDOWN NOSAVE, wait up to 15 s, and take the server's rusage into r.
        False (r.error set) when the server's end was bad."""
        self.cli("shutdown", "nosave", timeout=10)
        try:
            self.launch.p.wait(15)
        except subprocess.TimeoutExpired:
            raise RuntimeError("redis-server did not exit within 15 s of SHUTDOWN")
        o = self.launch.wait()
        wall = r.wall
        ok = finish(r, o, self.alloc, self.ctx.trace)
        r.wall = wall  # the run's time is the client's view, set by the caller
        return ok

    def close(self, r):
        """Always: kill the server if it is still there; add its log tail to an error."""
        if r.error:
            try:
                with open(os.path.join(self.dir, "log")) as f:
                    r.error += "; log tail: " + f.read()[-400:].replace("\n", " | ")
            except OSError:
                pass
        self.launch.stop()
        if self.launch.p is not None and os.path.isdir(self.launch.dir):
            o = self.launch.wait()
            if r.error and o.stderr.strip():
                r.error += "; stderr: " + o.stderr.strip()[-400:]
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_rps(out, names):
    """redis-benchmark --csv output -> {name_rps: requests/s}."""
    rps = {}
    for line in out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) >= 2 and f[0] in names:
            rps[f[0].lower() + "_rps"] = float(f[1])
    return rps


def geomean(xs):
    return statistics.geometric_mean(xs) if xs and all(x > 0 for x in xs) else None


def with_server(body):
    """Run body(server, result) against a fresh server under the allocator."""
    def run(ctx, w, alloc):
        r = RunResult()
        s = Server(ctx, alloc)
        r.cmd = s.shown()
        t0 = time.monotonic()
        try:
            s.start()
            body(ctx, w, s, r)
            r.wall = time.monotonic() - t0
            if s.stop(r):
                r.check = "ok"
                r.ok = True
        except Exception as e:  # noqa: BLE001 - any failure is recorded, never hidden
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            s.close(r)
        return r
    return run


def memory_body(ctx, w, s, r):
    """Throughput of SET/GET/LPUSH (pipeline 4), then fill ~200 MB, FLUSHALL, idle:
    RSS after each phase."""
    n = 20000 if ctx.quick else 100000
    rps = {}
    for size in (100, 1000):
        out = s.bench(["-q", "--csv", "-n", str(n), "-c", "50", "-P", "4", "-d", str(size),
                       "-r", "100000", "-t", "set,get,lpush"])
        for k, v in parse_rps(out, ("SET", "GET", "LPUSH")).items():
            rps.setdefault(k, []).append(v)
    if len(rps) != 3:
        raise RuntimeError("redis-benchmark produced no results: %r" % out[-300:])
    for k, v in rps.items():
        r.metrics[k] = statistics.mean(v)
    r.metrics["rps_geo"] = geomean([r.metrics[k] for k in ("set_rps", "get_rps", "lpush_rps")])
    s.cli("flushall")
    # fill ~200 MB: big values then many small ones (random keys), bounded counts
    tf = time.monotonic()
    nbig, nsmall = (20000, 60000) if ctx.quick else (110000, 500000)
    s.bench(["-q", "-n", str(nbig), "-c", "20", "-P", "16", "-d", "1000", "-r", "1000000000", "-t", "set"],
            timeout=300)
    dbsize1 = int(s.cli("dbsize").strip() or 0)
    first = s.last_bench
    s.bench(["-q", "-n", str(nsmall), "-c", "20", "-P", "16", "-d", "100", "-r", "1000000000", "-t", "set"],
            timeout=300)
    r.metrics["fill_s"] = time.monotonic() - tf
    dbsize = int(s.cli("dbsize").strip() or 0)
    if dbsize1 < nbig * 0.95 or dbsize < (nbig + nsmall) * 0.95:
        raise RuntimeError("keys lost: DBSIZE %d after %d SETs of 1000 B (random keys), %d after %d more "
                           "SETs of 100 B; first fill: %s; second: %s" % (
                               dbsize1, nbig, dbsize, nsmall, first, s.last_bench))
    r.metrics["keys"] = dbsize
    r.metrics["filled_rss_mb"] = s.rss_mb()
    um = re.search(r"used_memory:(\d+)", s.cli("info", "memory"))
    if um:
        r.metrics["used_memory_mb"] = int(um.group(1)) / 1048576.0
    s.cli("flushall")
    r.metrics["flushed_rss_mb"] = s.rss_mb()
    time.sleep(1.0 if ctx.quick else 4.0)
    r.metrics["idle_rss_mb"] = s.rss_mb()
    if s.cli("dbsize").strip() != "0":
        raise RuntimeError("DBSIZE not 0 after FLUSHALL")
    r.ops = 2 * 3 * n + nbig + nsmall


def throughput_body(ctx, w, s, r):
    """redis-benchmark -P 16: SET then GET of w.params["size"]-byte values on a
    bounded keyspace (so the GETs hit), a fixed request count, bounded in time."""
    size, keyspace = w.params["size"], w.params["keyspace"]
    n = w.params["requests"][0 if ctx.quick else 1]
    limit = 60 if ctx.quick else 180
    if ctx.trace:
        limit *= 3
    out = s.bench(["-q", "--csv", "-n", str(n), "-c", "50", "-P", "16", "-d", str(size), "-r", str(keyspace),
                   "-t", "set,get"], timeout=limit)
    rps = parse_rps(out, ("SET", "GET"))
    if len(rps) != 2:
        raise RuntimeError("redis-benchmark produced no SET/GET results: %r" % out[-300:])
    r.metrics.update(rps)
    r.metrics["rps_geo"] = geomean([rps["set_rps"], rps["get_rps"]])
    keys = int(s.cli("dbsize").strip() or 0)
    if not 0 < keys <= keyspace:
        raise RuntimeError("DBSIZE %d after %d SETs on a keyspace of %d" % (keys, n, keyspace))
    key = s.cli("randomkey").strip()
    got = int(s.cli("strlen", key).strip() or -1)
    if got != size:
        raise RuntimeError("STRLEN %s is %d, not %d" % (key, got, size))
    r.metrics["keys"] = keys
    r.metrics["filled_rss_mb"] = s.rss_mb()
    r.ops = 2 * n


RUNNERS = {"redis-memory": with_server(memory_body), "redis-throughput": with_server(throughput_body)}
