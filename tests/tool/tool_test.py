#!/usr/bin/env python3
"""tool_test.py: the galleon command end to end (tests/tool).

  tool_test.py CASE --tool GALLEON --probe PROBE --source DIR --build DIR --work DIR --cmake CMAKE

GALLEON is the build tree's copy of tools/galleon (next to libgalleon.so), run
directly (its #! line), as a user would.  PROBE is tests/stats/stats_probe.c built
without Galleon (it looks the galleon_* functions up with dlsym).  CASE:
  cli      --version prints galleon.h's version; --help names every command and
           option; usage errors (no command, unknown command or option, run without
           CMD, bad --stats or --option) exit 2 with the usage; a missing CMD exits
           127, an unreadable or non-dump file exits 1, each with a clear message
  run      galleon run preloads libgalleon.so (the probe's malloc is Galleon's),
           passes --option through GALLEON_OPTIONS (winning over GALLEON_<NAME>),
           prints the statistics at exit as JSON or text showing the 4 MiB the probe
           still holds, keeps the command's exit status and LD_PRELOAD
  heapmap  a heap dump drawn to PNG: the signature, IHDR of the expected width and
           a height that grows with the segments, a sane file size; SVG too; the .gp
           script carries one box per page.  Exit 77 (skipped) without gnuplot,
           after checking the .gp output and the "gnuplot is not installed" error
  install  cmake --install into a scratch prefix: bin/galleon runs and preloads the
           installed lib*/libgalleon.so; the man pages are in share/man/man{1,3,7}
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def env_without_galleon(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLEON_") and k != "LD_PRELOAD"}
    env.update(extra or {})
    return env


def run(cmd, env=None, expect=0):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=env if env is not None else env_without_galleon(), timeout=120)
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
                 "--title", "galleon(1)"):
        check(word in r.stdout, "--help does not mention %r" % word)
    check("report" not in r.stdout, "--help offers a report command that does not exist")

    usage_errors = [
        ([], None),
        (["frobnicate"], "unknown command"),
        (["report"], "unknown command"),
        (["run"], "no command given"),
        (["run", "--"], "no command given"),
        (["run", "--stats=xml", "--", "true"], "--stats takes text or json"),
        (["run", "--option", "purge_delay_ms", "--", "true"], "expected NAME=VALUE"),
        (["run", "--option", "a=1,b=2", "--", "true"], "expected NAME=VALUE"),
        (["run", "--option"], "needs NAME=VALUE"),
        (["run", "--frob", "--", "true"], "unknown option --frob"),
        (["heapmap"], "no dump given"),
        (["heapmap", "x.json"], "no output given"),
        (["heapmap", "x.json", "-o", "x.jpg"], "must end in .png, .svg or .gp"),
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
    print("  cli: version, help, usage errors, missing command (127), unreadable files")


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
    print("  run: preload, options (winning over GALLEON_<NAME>), stats at exit (json, text), exit status")


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
    check(width == 1100 and height == min(4000, 160 + 22 * segments), "PNG %dx%d for %d segments" %
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


CASES = {"cli": case_cli, "run": case_run, "heapmap": case_heapmap, "install": case_install}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    for opt in ("--tool", "--probe", "--source", "--build", "--work", "--cmake"):
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
