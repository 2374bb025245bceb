#!/usr/bin/env python3
"""tool_test.py: the galleon command end to end (tests/tool).

  tool_test.py CASE --tool GALLEON --probe PROBE --profile-probe PPROBE --profile-probe-static SPROBE --source DIR
               --build DIR --work DIR --cmake CMAKE

GALLEON is the build tree's copy of tools/galleon (next to libgalleon.so), run
directly (its #! line), as a user would.  PROBE is tests/stats/stats_probe.c built
without Galleon (it looks the galleon_* functions up with dlsym); PPROBE is
tests/tool/profile_probe.c, also built without it.  CASE:
  cli      --version prints galleon.h's version; --help names every command and
           option; usage errors (no command, unknown command or option, run without
           CMD, bad --stats, --option or --profile, report without a profile or
           with a bad --top) exit 2 with the usage; a missing CMD exits 127, an
           unreadable or non-dump file, an unreadable or non-profile file exit 1,
           each with a clear message
  run      galleon run preloads libgalleon.so (the probe's malloc is Galleon's),
           passes --option through GALLEON_OPTIONS (winning over GALLEON_<NAME>),
           prints the statistics at exit as JSON or text showing the 4 MiB the probe
           still holds, keeps the command's exit status and LD_PRELOAD; --profile
           and --profile-leaks set GALLEON_PROFILE (absolute) and
           GALLEON_PROFILE_LEAKS
  heapmap  a heap dump drawn to PNG: the signature, IHDR of the expected width and
           a height that grows with the segments, a sane file size; SVG too; the .gp
           script carries one box per page.  Exit 77 (skipped) without gnuplot,
           after checking the .gp output and the "gnuplot is not installed" error
  report   first a synthetic profile (PPROBE's real addresses and memory map, known
           sampled numbers) checks galleon report alone: the estimates, the
           symbols (addr2line), the allocator frame left out, --total, --top,
           --collapsed, --flame, --svg (google-pprof, and its fallback without
           it), frames without addr2line, and that google-pprof --text reads the
           same file; SPROBE (the probe with libgalleon.a linked in, so the
           library's own frames stay in its stacks) must still show big_site <-
           main first; then galleon run --profile over PPROBE checks the library's
           profile: big_site first by live bytes (64 MiB, within 40%: about
           128 samples, 4.5 sigma), small_site after it, churn_site first with
           --total, the collapsed stacks, the flame graph, --svg, and
           google-pprof --text naming big_site first.
           Without google-pprof (or dot) those parts are skipped, unless CI=true
           or GALLEON_REQUIRE_PROGRAMS=1 make it a failure
  install  cmake --install into a scratch prefix: bin/galleon runs and preloads the
           installed lib*/libgalleon.so; the man pages are in share/man/man{1,3,7}
"""
import argparse
import json
import math
import os
import re
import signal
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def env_without_galleon(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLEON_") and k != "LD_PRELOAD"}
    env.update(extra or {})
    return env


def run(cmd, env=None, expect=0, cwd=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=env if env is not None else env_without_galleon(), timeout=120, cwd=cwd)
    if expect is not None:
        check(r.returncode == expect, "%s: exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s" %
              (" ".join(cmd), r.returncode, expect, r.stdout, r.stderr))
    return r


def header_version(source):
    with open(os.path.join(source, "include", "galleon.h")) as f:
        return re.search(r'#define GALLEON_VERSION_STRING "([^"]+)"', f.read()).group(1)


# ---- cli ----

def case_cli(a):
    tool = a.tool
    r = run([tool, "--version"])
    check(r.stdout == "galleon %s\n" % header_version(a.source), "--version printed %r" % r.stdout)
    r = run([tool, "--help"])
    for word in ("galleon run", "galleon heapmap", "--stats", "--option", "--library", "-o OUT.png",
                 "--title", "--profile FILE", "--profile-leaks", "galleon report", "--top N", "--total",
                 "--flame OUT.svg", "--collapsed OUT.txt", "--svg OUT.svg", "--program PATH", "galleon(1)"):
        check(word in r.stdout, "--help does not mention %r" % word)

    usage_errors = [
        ([], None),
        (["frobnicate"], "unknown command"),
        (["report"], "no profile given"),
        (["report", "a.prof", "b.prof"], "one profile at a time"),
        (["report", "a.prof", "--top", "many"], "--top takes a number"),
        (["report", "a.prof", "--top=-1"], "--top takes a number"),
        (["report", "a.prof", "--flame"], "--flame needs a value"),
        (["report", "a.prof", "--frob"], "unknown option --frob"),
        (["run", "--profile"], "--profile needs FILE"),
        (["run", "--profile=", "--", "true"], "--profile needs FILE"),
        (["run"], "no command given"),
        (["run", "--"], "no command given"),
        (["run", "--stats=xml", "--", "true"], "--stats takes text or json"),
        (["run", "--option", "purge_delay_ms", "--", "true"], "expected NAME=VALUE"),
        (["run", "--option", "a=1,b=2", "--", "true"], "expected NAME=VALUE"),
        (["run", "--option"], "needs NAME=VALUE"),
        (["run", "--frob", "--", "true"], "unknown option --frob"),
        (["heapmap"], "no dump given"),
        (["heapmap", "x.json"], "no output given"),
        (["heapmap", "x.json", "-o", "x.jpg"], "must end in .png, .svg, .gp or .txt (or be -)"),
    ]
    for args, message in usage_errors:
        r = run([tool] + args, expect=2)
        check(r.stdout == "", "%s printed on stdout: %r" % (args, r.stdout))
        check(r.stderr.count("usage: galleon run") == 1, "galleon %s: no usage on stderr: %r" %
              (" ".join(args), r.stderr))
        if message:
            check(r.stderr.startswith("galleon: ") and message in r.stderr.splitlines()[0],
                  "galleon %s: first line %r, expected %r" % (" ".join(args), r.stderr.splitlines()[0], message))

    r = run([tool, "run", "--", "/nonexistent/program", "x"], expect=127)
    check(r.stderr == "galleon: run: cannot run /nonexistent/program: command not found\n",
          "missing command: %r" % r.stderr)
    os.makedirs(a.work, exist_ok=True)
    plain = os.path.join(a.work, "not_executable")
    with open(plain, "w") as f:
        f.write("data\n")
    os.chmod(plain, 0o644)
    r = run([tool, "run", "--", plain], expect=126)
    check(r.stderr.startswith("galleon: run: cannot run %s: " % plain), "not executable: %r" % r.stderr)
    r = run([tool, "run", "--library", "/nonexistent/libgalleon.so", "--", "true"], expect=1)
    check("--library /nonexistent/libgalleon.so: no such file" in r.stderr, "bad --library: %r" % r.stderr)

    r = run([tool, "heapmap", "/nonexistent/dump.json", "-o", os.path.join(a.work, "x.png")], expect=1)
    check(r.stderr.startswith("galleon: heapmap: cannot read /nonexistent/dump.json: No such file"),
          "unreadable dump: %r" % r.stderr)
    bad = os.path.join(a.work, "bad.json")
    with open(bad, "w") as f:
        f.write("{not json")
    r = run([tool, "heapmap", bad, "-o", os.path.join(a.work, "x.png")], expect=1)
    check("is not JSON" in r.stderr, "invalid JSON: %r" % r.stderr)
    with open(bad, "w") as f:
        f.write('{"galleon":"0.1.0","mapped":1}')  # galleon_stats_print's JSON, not a heap dump
    r = run([tool, "heapmap", bad, "-o", os.path.join(a.work, "x.png")], expect=1)
    check("is not a Galleon heap dump" in r.stderr, "stats JSON taken for a dump: %r" % r.stderr)

    r = run([tool, "run", "--profile", "/nonexistent/dir/x.prof", "--", "true"], expect=1)
    check(r.stderr.startswith("galleon: run: --profile /nonexistent/dir/x.prof: no such directory"),
          "--profile in a missing directory: %r" % r.stderr)
    r = run([tool, "report", "/nonexistent/x.prof"], expect=1)
    check(r.stderr.startswith("galleon: report: cannot read /nonexistent/x.prof: No such file")
          and r.stdout == "", "unreadable profile: %r" % r.stderr)
    not_profile = os.path.join(a.work, "not.prof")
    for text in ("", "hello\n", '{"format":"heap","heaps":[]}', "heap profile: 1: 2 [ 3: 4] @ heap/2\n"):
        with open(not_profile, "w") as f:
            f.write(text)
        r = run([tool, "report", not_profile], expect=1)
        check(r.stderr.startswith("galleon: report: %s is not a heap profile" % not_profile)
              and len(r.stderr.splitlines()) == 1, "%r taken for a heap profile: %r" % (text, r.stderr))
    with open(not_profile, "w") as f:
        f.write("heap profile: 1: 2 [ 3: 4] @ heap_v2/524288\n 1: 2 [ 3: 4] @ 0x12 junk\n")
    r = run([tool, "report", not_profile], expect=1)
    check(r.stderr.startswith("galleon: report: %s:2: not a heap profile sample line" % not_profile),
          "a bad sample line: %r" % r.stderr)
    print("  cli: version, help, usage errors, missing command (127), unreadable files and profiles")


# ---- run ----

def last_json_line(text):
    lines = [l for l in text.splitlines() if l.startswith("{")]
    check(lines, "no JSON line in %r" % text)
    return json.loads(lines[-1])


def case_run(a):
    tool, probe = a.tool, a.probe
    r = run([tool, "run", "--stats=json", "--option", "purge_delay_ms=100", "--option=retain_bytes:2m",
             "--", probe, "hold"], env=env_without_galleon({"GALLEON_PURGE_DELAY_MS": "5"}))
    out = json.loads(r.stdout)
    lib = os.path.join(a.build, "libgalleon.so")
    check(out["preload"] == lib, "LD_PRELOAD was %r, expected the build tree's %s" % (out["preload"], lib))
    check(out["options"]["purge_delay_ms"] == 100 and out["options"]["retain_bytes"] == 2 << 20,
          "options in the command: %s" % out["options"])
    check(out["options"]["stats_at_exit"] == 2, "--stats=json: stats_at_exit %s" % out["options"]["stats_at_exit"])
    stats = last_json_line(r.stderr)
    check(stats["galleon"] == header_version(a.source), "stats version %r" % stats["galleon"])
    check(stats["in_use"] >= 4 << 20 and stats["large_blocks"] >= 1,
          "the probe exits holding 3 MiB of blocks and a 1 MiB block; stats say %s" % stats)
    check("warning" not in r.stderr, "warnings: %r" % r.stderr)

    r = run([tool, "run", "--stats", "--", probe, "hold"])
    check(re.search(r"^galleon \S+ statistics\n", r.stderr, re.M), "--stats text: %r" % r.stderr)
    m = re.search(r"^  in_use +(\d+)$", r.stderr, re.M)
    check(m and int(m.group(1)) >= 4 << 20, "--stats text: in_use line %r" % (m and m.group(0)))

    r = run([tool, "run", "--option", "no_such_option=1", "--", probe, "options"])
    check("galleon: warning: GALLEON_OPTIONS: ignoring unknown option no_such_option" in r.stderr,
          "an unknown --option is warned about by the library: %r" % r.stderr)

    r = run([tool, "run", "sh", "-c", "echo $LD_PRELOAD; exit 7"], expect=7,
            env=env_without_galleon({"LD_PRELOAD": "libother.so"}))
    check(r.stdout == "%s:libother.so\n" % lib, "LD_PRELOAD for the command: %r" % r.stdout)

    # --profile: the path made absolute (the library opens it at exit, wherever the
    # program is then).  The shell writes that profile: it is not looked at here.
    work = os.path.realpath(a.work)
    os.makedirs(work, exist_ok=True)
    r = run([tool, "run", "--profile", "env.prof", "--profile-leaks", "--", "sh", "-c",
             'echo "$GALLEON_PROFILE $GALLEON_PROFILE_LEAKS"'], cwd=work)
    check(r.stdout == "%s 1\n" % os.path.join(work, "env.prof"), "--profile, --profile-leaks: %r" % r.stdout)
    r = run([tool, "run", "--profile=%s" % os.path.join(work, "env.prof"), "--", "sh", "-c",
             'echo "$GALLEON_PROFILE ${GALLEON_PROFILE_LEAKS-unset}"'], cwd="/")
    check(r.stdout == "%s unset\n" % os.path.join(work, "env.prof"), "--profile=FILE: %r" % r.stdout)

    # --secure: the secure build is preloaded, and it is the secure build (a
    # one-byte overflow past a request is reported when the block is freed).
    secure_lib = os.path.join(a.build, "libgalleon-secure.so")
    r = run([tool, "run", "--secure", "--", "sh", "-c", "echo $LD_PRELOAD"], env=env_without_galleon())
    check(r.stdout == "%s\n" % secure_lib, "--secure preloads %r" % r.stdout)
    overflow = ("import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; "
                "p = libc.malloc(24); ctypes.memset(p + 24, 65, 1); libc.free(ctypes.c_void_p(p))")
    r = run([tool, "run", "--secure", "--", sys.executable, "-c", overflow], expect=-signal.SIGABRT,
            env=env_without_galleon())
    check("galleon: error: heap overflow past the end of the block at 0x" in r.stderr,
          "--secure: a one-byte overflow: %r" % r.stderr)
    r = run([tool, "run", "--secure", "--library", os.path.join(a.build, "libgalleon.so"), "--", "true"],
            expect=2)
    check("--secure and --library" in r.stderr, "--secure with --library: %r" % r.stderr)
    print("  run: preload, options (winning over GALLEON_<NAME>), stats at exit (json, text), exit status, "
          "--profile, --secure")


# ---- heapmap ----

def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    check(head[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG (starts %r)" % (path, head[:8]))
    check(head[12:16] == b"IHDR", "%s: no IHDR chunk first" % path)
    return struct.unpack(">II", head[16:24])


def case_heapmap(a):
    tool, probe = a.tool, a.probe
    os.makedirs(a.work, exist_ok=True)
    dump = os.path.join(a.work, "heap.json")
    r = run([tool, "run", "--", probe, "dump", dump])
    with open(dump) as f:
        d = json.load(f)
    pages = sum(len(s["pages"]) for h in d["heaps"] for s in h["segments"])
    segments = sum(len(h["segments"]) for h in d["heaps"])
    check(segments >= 2, "the probe's dump has %d segments" % segments)

    gp = os.path.join(a.work, "heap.gp")
    run([tool, "heapmap", dump, "-o", gp])
    with open(gp) as f:
        script = f.read()
    data = script.split("$pages << EOD\n", 1)[1].split("EOD\n", 1)[0].splitlines()
    check(len(data) == pages, "the script draws %d boxes for %d pages" % (len(data), pages))
    check("set terminal" not in script and "with boxxyerror" in script, "the .gp script: %r" % script[:200])
    # Each resident page gets a bar as wide as its resident share, and the heading
    # the totals (the dump's "resident" fields).
    bars = script.split("$resident << EOD\n", 1)[1].split("EOD\n", 1)[0].splitlines()
    resident_pages = sum(1 for h in d["heaps"] for s in h["segments"] for p in s["pages"] if p.get("resident"))
    check(resident_pages > 0 and len(bars) == resident_pages, "%d resident bars for %d resident pages" %
          (len(bars), resident_pages))
    in_segments = sum(s["resident"] for h in d["heaps"] for s in h["segments"])
    check("resident in segments: %.1f MiB;" % (in_segments / 1048576.0) in script, "no resident totals in %r" %
          script[:600])

    # The table by size class (-o -: standard output; -o X.txt: a file, the same
    # text): one row per block size in use, whose sums are the dump's.
    table = run([tool, "heapmap", dump, "-o", "-"]).stdout
    txt = os.path.join(a.work, "heap.txt")
    run([tool, "heapmap", dump, "-o", txt])
    with open(txt) as f:
        check(f.read() == table, "heap.txt differs from the table on standard output")
    rows = [l.split() for l in table.splitlines()[1:] if l.split()[0] in ("small", "medium")]
    in_use = [p for h in d["heaps"] for s in h["segments"] for p in s["pages"] if p["state"] == "in_use"]
    sizes = sorted({p["block_size"] for p in in_use})
    check([int(r[1]) for r in rows] == sizes, "table block sizes %s, dump %s" % ([r[1] for r in rows], sizes))
    check(sum(int(r[2]) for r in rows) == len(in_use), "table pages %d, dump %d" %
          (sum(int(r[2]) for r in rows), len(in_use)))
    check(sum(int(r[3]) for r in rows) == sum(p["used"] for p in in_use), "table used blocks")
    total = [l.split() for l in table.splitlines() if l.startswith("total")][0]
    resident_in_use = sum(p["resident"] for p in in_use)
    check(int(total[-1]) == (resident_in_use + 1023) // 1024, "table resident %s KiB, dump %d bytes" %
          (total[-1], resident_in_use))
    check("segments: %d, %d KiB resident" % (segments, (in_segments + 1023) // 1024) in table,
          "table segments line: %r" % table[-300:])

    if shutil.which("gnuplot") is None:
        env = env_without_galleon({"PATH": "/nonexistent"})
        r = run([sys.executable, tool, "heapmap", dump, "-o", os.path.join(a.work, "heap.png")], env=env,
                expect=1)
        check("gnuplot is not installed" in r.stderr, "without gnuplot: %r" % r.stderr)
        print("  heapmap: gnuplot is not installed: PNG not checked (install gnuplot-nox)")
        sys.exit(77)

    png = os.path.join(a.work, "heap.png")
    run([tool, "heapmap", dump, "-o", png])
    width, height = png_size(png)
    size = os.path.getsize(png)
    check(width == 1100 and height == min(4000, 180 + 22 * segments), "PNG %dx%d for %d segments" %
          (width, height, segments))
    check(4000 < size < 4 << 20, "PNG of %d bytes" % size)
    svg = os.path.join(a.work, "heap.svg")
    run([tool, "heapmap", dump, "-o", svg, "--title", "probe heap"])
    with open(svg) as f:
        text = f.read()
    check("<svg" in text and "probe heap" in text, "the SVG: %r" % text[:200])

    # Missing gnuplot: a clear error, nothing written.
    env = env_without_galleon({"PATH": "/nonexistent"})
    missing = os.path.join(a.work, "missing.png")
    r = run([sys.executable, tool, "heapmap", dump, "-o", missing], env=env, expect=1)
    check("gnuplot is not installed" in r.stderr and not os.path.exists(missing), "without gnuplot: %r" % r.stderr)
    print("  heapmap: PNG %dx%d, %d bytes, for %d segments (%d pages); SVG; .gp script" %
          (width, height, size, segments, pages))


# ---- report ----

RATE = 524288
MiB = 1 << 20
ROW = re.compile(r"^ *(\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB)) +(\d+\.\d)% +(\d+) +(\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB))  (.+)$")
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def programs_required():
    """A program missing is a failure in CI (CI=true, or GALLEON_REQUIRE_PROGRAMS=1,
    which .ci/run sets), a skipped part elsewhere: as tests/preload/real_programs.sh."""
    if os.environ.get("GALLEON_REQUIRE_PROGRAMS", "0") == "1":
        return True
    return os.environ.get("CI", "") in ("true", "TRUE", "True", "1", "yes")


def installed(programs, skipped, part):
    """Whether all of `programs` are on PATH; when not, fails in CI and otherwise
    notes `part` as skipped."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return True
    check(not programs_required(), "%s not installed, and CI=%s GALLEON_REQUIRE_PROGRAMS=%s require it (%s)" %
          (", ".join(missing), os.environ.get("CI", ""), os.environ.get("GALLEON_REQUIRE_PROGRAMS", ""), part))
    skipped.append("%s (%s not installed)" % (part, ", ".join(missing)))
    return False


def unsample(count, nbytes):
    """pprof's heap_v2 estimate: each sample of mean size s stands for
    1 / (1 - exp(-s / RATE)) blocks."""
    if count == 0:
        return 0.0, 0.0
    scale = 1.0 / (1.0 - math.exp(-(float(nbytes) / count) / RATE))
    return count * scale, nbytes * scale


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024.0 or unit == "GiB":
            return "%d B" % round(n) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0


def report(a, args, env=None, expect=0):
    return run([a.tool, "report"] + args, env=env, expect=expect)


def parse_table(text, total=False):
    """(the totals line, [rows]) of galleon report's output; every line after the
    column header is a row, or the "... more sites" line."""
    lines = text.splitlines()
    check(len(lines) >= 2, "report printed %r" % text)
    check(lines[1].split() == ["live", "%alloc" if total else "%live", "objects", "allocated", "site"],
          "column header %r" % lines[1])
    rows = []
    for line in lines[2:]:
        if line.startswith("... "):
            continue
        m = ROW.match(line)
        check(m, "not a row of the table: %r" % line)
        rows.append({"live": m.group(1), "share": float(m.group(2)), "objects": int(m.group(3)),
                     "allocated": m.group(4), "site": m.group(5)})
    return lines[0], rows


def to_bytes(text):
    number, unit = text.split()
    return float(number) * UNITS[unit]


def read_collapsed(path):
    stacks = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(\S.*) (\d+)$", line.rstrip("\n"))
            check(m, "%s: not a collapsed stack: %r" % (path, line))
            check(m.group(1) not in stacks, "%s: %s twice" % (path, m.group(1)))
            stacks[m.group(1)] = int(m.group(2))
    return stacks


def svg_texts(path):
    """The <title> and <text> strings of an SVG file, which must be well-formed XML."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise CheckFailed("%s is not well-formed XML: %s" % (path, e))
    check(root.tag.endswith("svg"), "%s: root element %s" % (path, root.tag))
    return ["".join(e.itertext()) for e in root.iter() if e.tag.split("}")[-1] in ("title", "text")]


def pprof_first_site(probe, profile):
    """The function of the first data line of google-pprof --text, the top site by
    live bytes ("64.3  93.4%  93.4%  64.3  93.4% big_site")."""
    r = run(["google-pprof", "--text", probe, profile], env=env_without_galleon())
    rows = [l for l in r.stdout.splitlines() if re.match(r"^\s*[\d.]+\s+[\d.]+%\s+[\d.]+%", l)]
    check(rows, "google-pprof --text printed no rows: %r %r" % (r.stdout, r.stderr))
    return rows[0].split()[-1], r.stdout


def synthetic_profile(a, path):
    """A heap profile made here, not by the library: sites in PPROBE's functions
    (at their addresses in a run of `profile_probe symbols`, with that run's memory
    map) with known sampled numbers.  Returns the expected estimates."""
    out = run([a.profile_probe, "symbols"]).stdout.splitlines()
    symbols = dict((name, int(address, 16)) for name, address in (l.split() for l in out[:5]))
    maps = out[5:]
    check(set(symbols) == {"big_site", "small_site", "churn_site", "main", "malloc"}, "symbols: %s" % out[:5])
    # (live count, live bytes, total count, total bytes, stack innermost first);
    # the pcs are return addresses: a few bytes into the function.
    sites = [
        (128, 128 * 4096, 128, 128 * 4096, [symbols["big_site"] + 0x10, symbols["main"] + 0x10]),
        (8, 8 * 4096, 8, 8 * 4096, [symbols["malloc"] + 0x10, symbols["small_site"] + 0x10,
                                    symbols["main"] + 0x18]),
        (0, 0, 480, 480 * 65536, [symbols["churn_site"] + 0x10, symbols["main"] + 0x20]),
        (1, 100, 1, 100, [0x1230]),  # below mmap_min_addr: no module
        # As Galleon linked into a program leaves it: its own frame (big_site
        # standing in for it) under malloc's; the same site as the second line.
        (2, 2 * 4096, 2, 2 * 4096, [symbols["big_site"] + 0x20, symbols["malloc"] + 0x10,
                                    symbols["small_site"] + 0x10, symbols["main"] + 0x18]),
    ]
    totals = [sum(s[k] for s in sites) for k in range(4)]
    with open(path, "w") as f:
        f.write("heap profile: %5d: %8d [%5d: %8d] @ heap_v2/%d\n" % tuple(totals + [RATE]))
        for s in sites:
            f.write("%6d: %8d [%6d: %8d] @%s\n" % (s[0], s[1], s[2], s[3], "".join(" 0x%016x" % p for p in s[4])))
        f.write("\nMAPPED_LIBRARIES:\n" + "\n".join(maps) + "\n")
    estimates = {}
    for name, s in zip(["big_site", "small_site", "churn_site", "0x1230", "small_site"], sites):
        e = unsample(s[0], s[1]) + unsample(s[2], s[3])
        estimates[name] = tuple(x + y for x, y in zip(estimates.get(name, (0, 0, 0, 0)), e))
    return estimates


def check_synthetic(a, skipped):
    """galleon report on a profile whose numbers are known: the parser, the
    estimates, the symbols and every output, independently of the library."""
    work = a.work
    prof = os.path.join(work, "synthetic.prof")
    est = synthetic_profile(a, prof)  # name -> (live count, live bytes, total count, total bytes)
    live = sum(e[1] for e in est.values())

    first, rows = parse_table(report(a, [prof]).stdout)
    check(first.startswith(prof + ": %s live in %d objects, " % (human(live), round(sum(e[0] for e in est.values()))))
          and "one sample per 512.0 KiB" in first, "synthetic: totals line %r" % first)
    check([r["site"].split()[0] for r in rows] == ["big_site", "small_site", "0x1230"],
          "synthetic: sites by live bytes %s (churn_site has none live; malloc is left out)" % rows)
    check(re.match(r"^big_site \(profile_probe\.c:\d+\) <- main \(profile_probe\.c:\d+\)$|"
                   r"^big_site \(profile_probe\.c:\d+\) <- main$", rows[0]["site"]),
          "synthetic: the big site is %r" % rows[0]["site"])
    check(re.match(r"^small_site \(profile_probe\.c:\d+\) <- main", rows[1]["site"]),
          "synthetic: malloc's frame (and the one under it) is not left out: %r" % rows[1]["site"])
    for row, name in zip(rows, ("big_site", "small_site", "0x1230")):
        e = est[name]
        check(row["live"] == human(e[1]) and row["objects"] == round(e[0]) and row["allocated"] == human(e[3])
              and abs(row["share"] - 100.0 * e[1] / live) < 0.051,
              "synthetic: %s: %s, expected %s live (%.1f%%) in %d objects, %s in total" %
              (name, row, human(e[1]), 100.0 * e[1] / live, round(e[0]), human(e[3])))

    first, rows = parse_table(report(a, [prof, "--total", "--top", "2"]).stdout, total=True)
    check([r["site"].split()[0] for r in rows] == ["churn_site", "big_site"] and rows[0]["live"] == "0 B"
          and rows[0]["allocated"] == human(est["churn_site"][3]), "synthetic --total --top 2: %s" % rows)
    r = report(a, [prof, "--top=1"])
    check(len(parse_table(r.stdout)[1]) == 1 and "... 2 more sites" in r.stdout, "--top=1: %r" % r.stdout)

    collapsed = os.path.join(work, "synthetic.collapsed")
    flame = os.path.join(work, "synthetic.flame.svg")
    report(a, [prof, "--collapsed", collapsed, "--flame=" + flame])
    expected = {"main;big_site": est["big_site"][1], "main;small_site": est["small_site"][1],
                "0x1230": est["0x1230"][1]}
    got = read_collapsed(collapsed)
    check(sorted(got) == sorted(expected) and all(abs(got[k] - expected[k]) <= 1 for k in got),
          "synthetic --collapsed: %s, expected %s" % (got, expected))
    texts = svg_texts(flame)
    check(any(t.startswith("big_site (%s, " % human(est["big_site"][1])) for t in texts)
          and any(t.startswith("all (") for t in texts), "synthetic --flame: %s" % texts)
    report(a, [prof, "--total", "--collapsed", collapsed])
    check(read_collapsed(collapsed).get("main;churn_site", 0) == round(est["churn_site"][3]),
          "synthetic --total --collapsed: %s" % read_collapsed(collapsed))

    # Without addr2line (nor google-pprof, dot): MODULE+0xOFFSET frames, a note,
    # and --svg falls back to the flame graph.
    svg = os.path.join(work, "synthetic.fallback.svg")
    r = run([sys.executable, a.tool, "report", prof, "--svg", svg], env=env_without_galleon({"PATH": "/nonexistent"}))
    rows = parse_table(r.stdout)[1]
    module = re.escape(os.path.basename(a.profile_probe))
    check(re.match(r"^%s\+0x[0-9a-f]+ <- %s\+0x[0-9a-f]+$" % (module, module), rows[0]["site"]),
          "without addr2line: %r" % rows[0]["site"])
    check("galleon: report: addr2line is not installed" in r.stderr and
          "google-pprof and dot are not installed" in r.stderr and "wrote a flame graph to %s" % svg in r.stderr,
          "without addr2line, google-pprof, dot: %r" % r.stderr)
    check(any(t.startswith(os.path.basename(a.profile_probe) + "+0x") for t in svg_texts(svg)),
          "fallback flame graph of %s" % svg)

    if installed(["google-pprof"], skipped, "synthetic: google-pprof --text"):
        name, text = pprof_first_site(a.profile_probe, prof)
        check(name == "big_site", "google-pprof --text on the synthetic profile: first %r\n%s" % (name, text))
    if installed(["google-pprof", "dot"], skipped, "synthetic: --svg"):
        svg = os.path.join(work, "synthetic.pprof.svg")
        report(a, [prof, "--svg", svg, "--program", a.profile_probe])
        check(any("big_site" in t for t in svg_texts(svg)), "synthetic --svg: no big_site in %s" % svg)


def check_profiled(a, skipped):
    """The library's own profile of profile_probe, through galleon run --profile."""
    work = a.work
    prof = os.path.join(work, "probe.prof")
    for stale in (prof, prof + ".collapsed"):
        if os.path.exists(stale):
            os.unlink(stale)
    run([a.tool, "run", "--profile", prof, "--", a.profile_probe])
    check(os.path.isfile(prof), "galleon run --profile %s -- profile_probe: the library wrote no profile" % prof)

    first, rows = parse_table(report(a, [prof]).stdout)
    sites = [r["site"].split()[0] for r in rows]
    check(sites and sites[0] == "big_site", "the top live site is not big_site: %s\n%s" % (first, rows))
    big = to_bytes(rows[0]["live"])
    check(abs(big - 64 * MiB) <= 0.4 * 64 * MiB, "big_site holds 64 MiB, estimated %s" % rows[0]["live"])
    check(re.search(r"^big_site \(profile_probe\.c:\d+\) <- main", rows[0]["site"]),
          "big_site's row: %r" % rows[0]["site"])
    check("small_site" in sites and to_bytes(rows[sites.index("small_site")]["live"]) < big,
          "small_site (4 MiB) is not after big_site: %s" % rows)
    check("churn_site" not in sites, "churn_site frees all it allocates, but holds %s" % rows)

    first, rows = parse_table(report(a, [prof, "--total"]).stdout, total=True)
    check(rows and rows[0]["site"].startswith("churn_site ") and
          abs(to_bytes(rows[0]["allocated"]) - 256 * MiB) <= 0.3 * 256 * MiB,
          "--total: churn_site (256 MiB) is not first: %s" % rows)

    collapsed = os.path.join(work, "probe.collapsed")
    flame = os.path.join(work, "probe.flame.svg")
    report(a, [prof, "--collapsed", collapsed, "--flame", flame])
    stacks = read_collapsed(collapsed)
    in_big = sum(v for k, v in stacks.items() if k.split(";")[-1] == "big_site" and "main" in k.split(";"))
    check(in_big >= 0.8 * sum(stacks.values()), "--collapsed: the big_site stacks hold %d of %d bytes: %s" %
          (in_big, sum(stacks.values()), stacks))
    check(any(t.startswith("big_site (") for t in svg_texts(flame)), "--flame: no big_site in %s" % flame)

    if installed(["google-pprof"], skipped, "google-pprof --text"):
        name, text = pprof_first_site(a.profile_probe, prof)
        check(name == "big_site", "google-pprof --text: the first site is %r, not big_site\n%s" % (name, text))
    svg = os.path.join(work, "probe.svg")
    r = report(a, [prof, "--svg", svg])
    if installed(["google-pprof", "dot"], skipped, "--svg with google-pprof"):
        check(r.stderr == "", "--svg: %r" % r.stderr)
        check(any("big_site" in t for t in svg_texts(svg)), "--svg: google-pprof's graph lacks big_site")
    else:
        check("wrote a flame graph to %s" % svg in r.stderr, "--svg without google-pprof: %r" % r.stderr)
        check(any(t.startswith("big_site (") for t in svg_texts(svg)), "--svg fallback: no big_site")
    print("  report: big_site %s live, %s in total for churn_site; collapsed stacks, flame graph, --svg" %
          (human(big), rows[0]["allocated"]))


def check_profiled_static(a):
    """Galleon linked into the program: the library keeps its own frames in the
    stacks (it cannot tell them from the program's), galleon report skips them."""
    prof = os.path.join(a.work, "static.prof")
    if os.path.exists(prof):
        os.unlink(prof)
    run([a.profile_probe_static], env=env_without_galleon({"GALLEON_PROFILE": prof}))
    check(os.path.isfile(prof), "profile_probe (libgalleon.a) with GALLEON_PROFILE=%s wrote no profile" % prof)
    first, rows = parse_table(report(a, [prof]).stdout)
    check(rows and re.search(r"^big_site \(profile_probe\.c:\d+\) <- main", rows[0]["site"]),
          "linked-in Galleon: the top site is not big_site <- main: %s\n%s" % (first, rows))
    check(abs(to_bytes(rows[0]["live"]) - 64 * MiB) <= 0.4 * 64 * MiB,
          "linked-in Galleon: big_site holds 64 MiB, estimated %s" % rows[0]["live"])


def case_report(a):
    os.makedirs(a.work, exist_ok=True)
    skipped = []
    check_synthetic(a, skipped)
    print("  report: synthetic profile: estimates, symbols, --total, --top, --collapsed, --flame, fallbacks")
    check_profiled_static(a)
    print("  report: Galleon linked into the program: its own frames skipped")
    check_profiled(a, skipped)
    for part in skipped:
        print("  report: skipped: %s" % part)


# ---- install ----

def case_install(a):
    prefix = os.path.join(a.work, "prefix")
    shutil.rmtree(prefix, ignore_errors=True)
    run([a.cmake, "--install", a.build, "--prefix", prefix], env=dict(os.environ))
    tool = os.path.join(prefix, "bin", "galleon")
    check(os.access(tool, os.X_OK), "%s is not installed or not executable" % tool)
    for section in ("1", "3", "7"):
        page = os.path.join(prefix, "share", "man", "man" + section, "galleon." + section)
        check(os.path.isfile(page), "%s is not installed" % page)
    r = run([tool, "--version"])
    check(r.stdout == "galleon %s\n" % header_version(a.source), "installed --version: %r" % r.stdout)
    r = run([tool, "run", "--", a.probe, "hold"])
    preload = json.loads(r.stdout)["preload"]
    check(preload.startswith(prefix + "/lib") and preload.endswith(("/libgalleon.so", "/libgalleon.so.0"))
          and os.path.isfile(preload),
          "the installed galleon preloads %r, not the installed library" % preload)
    shutil.rmtree(prefix, ignore_errors=True)
    print("  install: bin/galleon preloads %s; man pages installed" % os.path.relpath(preload, a.work))


CASES = {"cli": case_cli, "run": case_run, "heapmap": case_heapmap, "report": case_report,
         "install": case_install}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    for opt in ("--tool", "--probe", "--profile-probe", "--profile-probe-static", "--source", "--build", "--work",
                "--cmake"):
        p.add_argument(opt, required=True)
    a = p.parse_args()
    try:
        CASES[a.case](a)
    except CheckFailed as e:
        print("FAILED: %s" % e)
        return 1
    print("tool_%s: passed" % a.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
