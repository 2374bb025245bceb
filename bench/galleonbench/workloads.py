"""The workloads, as data.  Each row of TABLE is one workload:

  name, kind         kind: "c" (a program of bench/src, RESULT line), "program" (a
                     real program; wall time), "redis-memory", "redis-throughput"
  desc               one line for --list
  metric, higher     the primary metric (its ratio is the "time" ratio) and whether
                     higher is better ("wall_s" = the process's wall time)
  prog, quick, full  C: the binary in bench/build and its arguments in --quick and in
                     full runs ("{T}" = --threads)
  extra, mem         secondary metrics to report; memory figures (lower is better)
                     that get their own "memory-return" ratios
  full_only          skipped by --quick unless named in --only
  launches           (quick, full): processes per run; their means form the run
  max_reps           cap on the repetitions (the slow redis runs)
  warmup             one untimed run first (under the first allocator): the first
                     process to touch this much memory pays for the machine backing
                     it (on a virtual machine, the host: 16 GiB took 50 s of wall
                     time and 481 ns a step, the run after it 12 s and 446 ns), which
                     would otherwise fall on whichever allocator runs first
  command            program: ctx -> (argv, stdin path, extra env) or None (inputs.py)
  params             kind-specific settings (redis)
"""
import dataclasses

from . import inputs

T = "{T}"


@dataclasses.dataclass
class Workload:
    name: str
    kind: str
    desc: str
    metric: str = "elapsed_s"
    higher: bool = False
    prog: str = None
    quick: list = ()
    full: list = ()
    extra: tuple = ()
    mem: tuple = ()
    full_only: bool = False
    timeout: int = 300
    launches: tuple = (1, 1)
    max_reps: int = None
    warmup: bool = False
    command: object = None
    check_filter: object = None
    params: dict = dataclasses.field(default_factory=dict)

    # names the reporting code uses
    @property
    def higher_better(self):
        return self.higher

    @property
    def extra_metrics(self):
        return list(self.extra)

    @property
    def mem_metrics(self):
        return list(self.mem)

    def args(self, ctx):
        a = self.quick if ctx.quick else self.full
        return [str(x).replace(T, str(ctx.threads)) for x in a]

    def launches_for(self, ctx):
        return self.launches[0] if ctx.quick else self.launches[1]

    def reps_for(self, reps):
        return min(reps, self.max_reps) if self.max_reps else reps

    def cost(self, res):
        """Lower is better: the primary metric of a run turned into a cost."""
        v = res.wall if self.metric == "wall_s" else res.metrics.get(self.metric)
        if v is None or v <= 0:
            return None
        return 1.0 / v if self.higher else v

    def primary(self, res):
        return res.wall if self.metric == "wall_s" else res.metrics.get(self.metric)


FRAGMENT_EXTRA = ("peak_mb", "shrunk_mb", "worked_mb", "idle_mb", "live_mb")

TABLE = [
    dict(name="larson", kind="c", prog="larson", quick=[200000, T], full=[20000000, T],
         metric="ops_per_s", higher=True,
         desc="Larson server simulation (Larson&Krishnan 1998; Hoard/mimalloc-bench larson)"),
    dict(name="cache-thrash", kind="c", prog="cache-thrash", quick=[20000, T], full=[1500000, T],
         desc="Hoard cache-thrash: active false sharing"),
    dict(name="cache-scratch", kind="c", prog="cache-scratch", quick=[20000, T], full=[1500000, T],
         desc="Hoard cache-scratch: passive false sharing"),
    dict(name="xmalloc", kind="c", prog="xmalloc", quick=[300000, T], full=[16000000, T],
         metric="ops_per_s", higher=True, desc="xmalloc-test producer/consumer (Lever&Boreham 2000)"),
    dict(name="mstress", kind="c", prog="mstress", quick=[150000, T], full=[8000000, T],
         metric="ops_per_s", higher=True, desc="mimalloc-bench mstress / rpmalloc rptest mixed stress"),
    dict(name="glibc-simple", kind="c", prog="glibc-simple", quick=[30000, T], full=[300000, T],
         metric="ns_per_op", desc="glibc bench-malloc-simple"),
    dict(name="glibc-thread", kind="c", prog="glibc-thread", quick=[300000, T], full=[8000000, T],
         metric="ops_per_s", higher=True, desc="glibc bench-malloc-thread, 1..N threads"),
    dict(name="churn", kind="c", prog="churn", quick=[30, T], full=[1200, T],
         desc="cfrac-style bignum object churn (Pollard rho + Fibonacci)"),
    dict(name="malloc-large", kind="c", prog="malloc-large", quick=[30, 1], full=[400, 1],
         desc="mimalloc-bench malloc-large: 5-25 MiB blocks"),
    dict(name="large-zero", kind="c", prog="large-zero", quick=[100, 1], full=[1000, 1],
         desc="large-block churn, 20 live blocks of 5-25 MiB, each memset to 0 by the program "
              "(make_unique<char[]>)"),
    dict(name="short-lived", kind="c", prog="short-lived", quick=[100, 4], full=[100, 4],
         metric="wall_s", launches=(3, 10),
         desc="short-lived 4-thread process (~0.2 s) launched several times per run: start-up, "
              "first touch, hand-offs"),
    dict(name="arena", kind="c", prog="arena", quick=[2000, 1], full=[40000, 1],
         desc="request-scoped objects (400 per request): Galleon destroys a galleon_heap per "
              "request, the others malloc/free each object"),
    dict(name="scale-heap-1m", kind="c", prog="scale", quick=["heap", 1], full=["heap", 1],
         metric="ns_per_op", extra=("overhead_pct",), desc="scale: random replace steps over a 1 MiB heap of 16-256 B objects"),
    dict(name="scale-heap-256m", kind="c", prog="scale", quick=["heap", 64], full=["heap", 256],
         metric="ns_per_op", extra=("overhead_pct",), desc="scale: the same over 256 MiB"),
    dict(name="scale-heap-4g", kind="c", prog="scale", quick=["heap", 256], full=["heap", 4096],
         metric="ns_per_op", extra=("overhead_pct",), full_only=True, max_reps=2, warmup=True, timeout=900,
         desc="scale: the same over 4 GiB (TLB misses)"),
    dict(name="scale-heap-16g", kind="c", prog="scale", quick=["heap", 1024], full=["heap", 16384],
         metric="ns_per_op", extra=("overhead_pct",), full_only=True, max_reps=1, warmup=True, timeout=1800,
         desc="scale: the same over 16 GiB"),
    dict(name="scale-t1", kind="c", prog="scale", quick=["threads", 1], full=["threads", 1],
         metric="ns_per_op", desc="scale: 1 thread, malloc/free with hand-offs"),
    dict(name="scale-t16", kind="c", prog="scale", quick=["threads", 16], full=["threads", 16],
         metric="ns_per_op", desc="scale: 16 threads on this machine's cores (oversubscribed)"),
    dict(name="scale-t64", kind="c", prog="scale", quick=["threads", 64], full=["threads", 64],
         metric="ns_per_op", desc="scale: 64 threads (oversubscribed)"),
    dict(name="scale-t256", kind="c", prog="scale", quick=["threads", 256], full=["threads", 256],
         metric="ns_per_op", desc="scale: 256 threads (oversubscribed: lock-holder preemption shows)"),
    dict(name="realloc", kind="c", prog="realloc", quick=[400000, 1], full=[20000000, 1],
         desc="realloc growth: string appends and vector doubling"),
    dict(name="aligned", kind="c", prog="aligned", quick=[60000, T], full=[4000000, T],
         desc="posix_memalign/aligned_alloc 16 B-2 MiB mixed with malloc"),
    dict(name="mixed", kind="c", prog="mixed", quick=[200, T], full=[3000, T],
         desc="rpmalloc-benchmark shape: every slot of 2,000 replaced each round by 16 B-128 KiB, "
              "batches handed to a neighbour thread"),
    dict(name="fragment", kind="c", prog="fragment", quick=[96, T], full=[600, T],
         desc="fragmentation & memory return: RSS after freeing 90% (no trim)",
         extra=FRAGMENT_EXTRA, mem=("shrunk_mb", "idle_mb")),
    dict(name="fragment-trim", kind="c", prog="fragment", quick=[96, T, "trim"], full=[600, T, "trim"],
         desc="fragmentation & memory return with malloc_trim(0)",
         extra=FRAGMENT_EXTRA, mem=("shrunk_mb", "idle_mb")),
    dict(name="python", kind="program", metric="wall_s", command=inputs.make_python, timeout=600,
         desc="python3 PYTHONMALLOC=malloc bench/pyalloc.py"),
    dict(name="sqlite", kind="program", metric="wall_s", command=inputs.make_sqlite, timeout=600,
         desc="sqlite3 :memory: on a generated insert/index/query script"),
    dict(name="gcc", kind="program", metric="wall_s", command=inputs.make_gcc, timeout=600, full_only=True,
         desc="gcc -O2 -c on a generated large C file"),
    dict(name="redis", kind="redis-memory", metric="rps_geo", higher=True, full_only=True, max_reps=2,
         extra=("set_rps", "get_rps", "lpush_rps", "fill_s", "used_memory_mb", "filled_rss_mb",
                "flushed_rss_mb", "idle_rss_mb"),
         mem=("filled_rss_mb", "idle_rss_mb"),
         desc="redis-server (MALLOC=libc build) driven by redis-benchmark; idle RSS after FLUSHALL"),
    dict(name="redis-p16-100", kind="redis-throughput", metric="rps_geo", higher=True, full_only=True,
         max_reps=3, extra=("set_rps", "get_rps"),
         params={"size": 100, "requests": (100000, 1000000), "keyspace": 100000},
         desc="redis-benchmark -P 16, SET and GET of 100 B values: requests/s"),
    dict(name="redis-p16-4000", kind="redis-throughput", metric="rps_geo", higher=True, full_only=True,
         max_reps=3, extra=("set_rps", "get_rps"),
         params={"size": 4000, "requests": (40000, 300000), "keyspace": 20000},
         desc="redis-benchmark -P 16, SET and GET of 4,000 B values: requests/s"),
]


def all_workloads():
    return [Workload(**row) for row in TABLE]
