#!/usr/bin/env python3
"""pyalloc.py - allocation-heavy Python workload for allocator benchmarks.

Run with PYTHONMALLOC=malloc so that every Python object goes through malloc/free
(otherwise CPython's pymalloc arenas hide the allocator).  Phases: binary trees
(GC'd object graphs, as in the "binary-trees" benchmark game), record processing
(dicts, strings, json round trips, group-by, sort), and string building.
Deterministic: prints a checksum that must be the same under every allocator.

usage: pyalloc.py [SCALE]      (SCALE 1 = about 1 s with glibc on one core)
"""
import json
import random
import sys
import zlib


class Node:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


def make_tree(depth):
    if depth == 0:
        return Node(None, None)
    return Node(make_tree(depth - 1), make_tree(depth - 1))


def check_tree(node):
    if node.left is None:
        return 1
    return 1 + check_tree(node.left) + check_tree(node.right)


def binary_trees(max_depth):
    total = 0
    long_lived = make_tree(max_depth)
    for depth in range(4, max_depth + 1, 2):
        iters = 1 << (max_depth - depth + 4)
        for _ in range(iters):
            total += check_tree(make_tree(depth))
    total += check_tree(long_lived)
    return total


def records(n, rng):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    rows = []
    for i in range(n):
        rows.append({
            "id": i,
            "name": "-".join(rng.choice(words) for _ in range(rng.randint(1, 4))),
            "tags": [rng.choice(words) for _ in range(rng.randint(0, 6))],
            "value": rng.randint(0, 10**6),
            "nested": {"x": rng.random() < 0.5, "y": str(rng.randint(0, 999))},
        })
    text = json.dumps(rows)
    back = json.loads(text)
    groups = {}
    for r in back:
        key = r["name"].split("-")[0]
        groups.setdefault(key, []).append(r)
    out = []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda r: (r["value"], r["id"]))
        out.append((key, len(g), sum(r["value"] for r in g), g[0]["id"]))
    counts = {}
    for r in back:
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
    return zlib.crc32(repr((out, sorted(counts.items()))).encode())


def strings(n, rng):
    parts = []
    acc = 0
    for i in range(n):
        s = "%d:%s" % (i, "x" * rng.randint(0, 200))
        parts.append(s.upper())
        if len(parts) > 1000:
            joined = "|".join(parts)
            acc = zlib.crc32(joined.encode(), acc)
            parts = [p[: len(p) // 2] for p in parts[::3]]
    return acc


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rng = random.Random(12345)
    depth = 12 + (1 if scale >= 2 else 0) + (1 if scale >= 4 else 0)
    h = 0
    reps = max(1, int(round(scale)))
    for _ in range(reps):
        h = zlib.crc32(str(binary_trees(depth)).encode(), h)
        h = zlib.crc32(str(records(int(20000 * min(scale, 1.0)) or 1000, rng)).encode(), h)
        h = zlib.crc32(str(strings(int(100000 * min(scale, 1.0)) or 5000, rng)).encode(), h)
    print("RESULT pyalloc check=%08x" % h)


if __name__ == "__main__":
    main()
