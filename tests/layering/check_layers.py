#!/usr/bin/env python3
"""check_layers.py: src/ keeps the layering that src/README.md's table states.

Checks, for every file in src/:
  1. it is listed in the table (a new file must be given a layer);
  2. each #include "x.h" names a header of its own layer or a lower one;
  3. each call of a function declared in a src/ header goes to its own layer or
     a lower one (an upward call would not compile anyway with one header per
     layer; this says where it is).
Exit status 0 when all hold; otherwise one line per violation and status 1.

  check_layers.py [SRC_DIR]      check the tree (default: src/ next to tests/)
  check_layers.py --self-test    also show that an upward include and an upward
                                 call in a copy of the tree are caught
"""
import os
import re
import shutil
import sys
import tempfile

TABLE_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\d+)\s*\|")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
DECL = re.compile(r"^GL_HIDDEN\b[^;(]*?\b([a-z_][a-z0-9_]*)\s*\(", re.M)
INLINE = re.compile(r"^GL_INLINE\b[^;(]*?\b([a-z_][a-z0-9_]*)\s*\(", re.M)
ATTRIBUTE = re.compile(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")
CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def read_table(src):
    layers = {}
    with open(os.path.join(src, "README.md")) as f:
        for line in f:
            m = TABLE_ROW.match(line)
            if m:
                layers[m.group(1)] = int(m.group(2))
    return layers


def check(src):
    problems = []
    layers = read_table(src)
    if not layers:
        return ["src/README.md has no layer table"]
    files = sorted(n for n in os.listdir(src) if n.endswith((".c", ".h")))
    for name in files:
        if name not in layers:
            problems.append("%s: not in src/README.md's layer table" % name)
    for name in layers:
        if name not in files:
            problems.append("src/README.md lists %s, which does not exist" % name)
    # Which layer declares each function.
    owner = {}
    texts = {}
    for name in files:
        with open(os.path.join(src, name)) as f:
            texts[name] = f.read()
        if name.endswith(".h") and name in layers:
            decls = ATTRIBUTE.sub(" ", texts[name])
            for m in DECL.finditer(decls):
                owner[m.group(1)] = name
            for m in INLINE.finditer(decls):
                owner.setdefault(m.group(1), name)
    for name in files:
        if name not in layers:
            continue
        rank = layers[name]
        body = strip_comments(texts[name])
        for m in INCLUDE.finditer(texts[name]):
            header = m.group(1)
            if header == "galleon.h":
                continue  # the public header: every layer may see the API's types
            if header not in layers:
                problems.append("%s: includes %s, which is not in the layer table" % (name, header))
            elif layers[header] > rank:
                problems.append("%s (layer %d): includes %s of layer %d, above it"
                                % (name, rank, header, layers[header]))
        for m in CALL.finditer(body):
            fn = m.group(1)
            declared_in = owner.get(fn)
            if declared_in and layers[declared_in] > rank:
                line = body.count("\n", 0, m.start()) + 1
                problems.append("%s:%d (layer %d): calls %s of %s (layer %d), above it"
                                % (name, line, rank, fn, declared_in, layers[declared_in]))
    return problems


def self_test(src):
    """An upward include and an upward call, planted in a copy, must be reported."""
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "src")
        shutil.copytree(src, copy)
        with open(os.path.join(copy, "segment.c"), "a") as f:
            f.write('\n#include "heap.h"\nstatic void planted(void) { heap_trim_all(); }\n')
        found = check(copy)
        if not any("segment.c (layer 4): includes heap.h" in p for p in found):
            print("self-test: an upward include was not caught")
            ok = False
        if not any("calls heap_trim_all" in p for p in found):
            print("self-test: an upward call was not caught")
            ok = False
    return ok


def main():
    args = sys.argv[1:]
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "..", "..", "src")
    run_self_test = "--self-test" in args
    rest = [a for a in args if a != "--self-test"]
    if rest:
        src = rest[0]
    problems = check(src)
    for p in problems:
        print("layering: " + p)
    ok = not problems
    if run_self_test:
        ok = self_test(src) and ok
    print("layering: %s (%d files)" % ("ok" if ok else "FAILED", len([n for n in os.listdir(src)
                                                                      if n.endswith((".c", ".h"))])))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
