#!/usr/bin/env python3
"""check_man.py: the man pages in man/ are clean roff and document what exists.

  check_man.py SOURCE_DIR

For man/galleon.1, galleon.3 and galleon.7:
  - `groff -ww -man -z` (every warning on, no output) prints nothing and exits 0;
  - the .TH line names the page and section, and the version of include/galleon.h;
and their contents:
  - galleon.3 names every function that include/galleon.h exports (GALLEON_API);
  - galleon.7 names every option of src/options.c's table and its GALLEON_
    variable, and GALLEON_OPTIONS;
  - galleon.1 names every command and option that tools/galleon's usage lists.
Exit 0 when all hold, 77 (skipped) when groff is not installed, else 1.
"""
import os
import re
import shutil
import subprocess
import sys


def roff_text(path):
    """The page's text with font changes and escaped dashes undone, for searching."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-").replace("\\(dq", '"')


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_man.py SOURCE_DIR\n")
        return 2
    src = argv[1]
    problems = []
    with open(os.path.join(src, "include", "galleon.h")) as f:
        header = f.read()
    version = re.search(r'#define GALLEON_VERSION_STRING "([^"]+)"', header).group(1)

    groff = shutil.which("groff")
    pages = {s: os.path.join(src, "man", "galleon." + s) for s in ("1", "3", "7")}
    for section, path in pages.items():
        if not os.path.isfile(path):
            problems.append("%s is missing" % path)
            continue
        with open(path) as f:
            first = f.readline()
        m = re.match(r'\.TH GALLEON (\d) \S+ "Galleon ([^"]+)"', first)
        if not m or m.group(1) != section or m.group(2) != version:
            problems.append("%s: .TH line %r (expected section %s, Galleon %s)" % (path, first.strip(),
                                                                                   section, version))
        if groff:
            r = subprocess.run([groff, "-ww", "-man", "-z", path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
            if r.returncode != 0 or r.stderr or r.stdout:
                problems.append("%s: groff -ww -man -z: status %d\n%s%s" % (path, r.returncode, r.stdout, r.stderr))

    texts = {s: roff_text(p) for s, p in pages.items() if os.path.isfile(p)}
    if "3" in texts:
        functions = re.findall(r"^GALLEON_API\b[^;(]*?\b(\w+)\s*\(", header, re.M)
        if len(functions) < 30:
            problems.append("only %d GALLEON_API functions found in galleon.h" % len(functions))
        for name in functions:
            if not re.search(r"\b%s\b" % re.escape(name), texts["3"]):
                problems.append("galleon.3 does not document %s" % name)
    if "7" in texts:
        with open(os.path.join(src, "src", "options.c")) as f:
            table = re.findall(r'\{"([a-z_]+)", "(GALLEON_[A-Z_]+)"', f.read())
        if len(table) < 5:
            problems.append("only %d options found in src/options.c" % len(table))
        for name, env in table + [("GALLEON_OPTIONS", "GALLEON_OPTIONS")]:
            for word in (name, env):
                if not re.search(r"\b%s\b" % re.escape(word), texts["7"]):
                    problems.append("galleon.7 does not document %s" % word)
    if "1" in texts:
        with open(os.path.join(src, "tools", "galleon")) as f:
            usage = re.search(r'USAGE = """\\\n(.*?)"""', f.read(), re.S).group(1)
        words = set(re.findall(r"--?[a-z][a-z-]*", usage)) | set(re.findall(r"galleon (\w+)", usage))
        for word in sorted(words):
            if word not in texts["1"]:
                problems.append("galleon.1 does not document %s (in tools/galleon's usage)" % word)

    for p in problems:
        print("FAILED: " + p)
    if problems:
        return 1
    if not groff:
        print("groff is not installed: the roff was not checked (Debian: groff-base)")
        return 77
    print("man pages: groff -ww clean; every function, option and command documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
