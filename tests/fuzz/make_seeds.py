#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz_api.c into tests/fuzz/corpus/.

Each helper below emits the bytes that fuzz_api.c's interpreter reads for one
operation (opcode, slot, arguments); see in_size(), in_align() and the op_*
functions there.  Run it again after changing the input format; inputs the fuzzer
found are kept in the same folder as found-* (coverage) and regress-* (minimized
crash reproducers).
"""
import os
import struct

OPS = dict(malloc=0, calloc=1, realloc=2, reallocarray=3, free=4, memalign=5,
           aligned_alloc=6, posix_memalign=7, valloc=8, pvalloc=9, usable=10, maint=11)
M64 = (1 << 64) - 1


def u(n, v):
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


# ---- sizes (in_size) ----
def tiny(n): return bytes([0, n])
def small(n): return bytes([5]) + u(2, n)
def medium(n): return bytes([9]) + u(3, n)
def edge(i): return bytes([11, i])
def large(n): return bytes([13]) + u(3, n - (128 << 10))
def raw(v): return bytes([15]) + u(8, v)                 # absurd when >= 2^48
def absurd(case, k=0): return bytes([14, case, k])       # cases 0..9 of absurd_size()


# ---- alignments (in_align) ----
def pow2(k): return bytes([0, k])                        # 2^k, k = 0..63
def pow2_pm1(k, plus): return bytes([5, k | (0x40 if plus else 0)])
def align_raw(v): return bytes([7, 0]) + u(8, v)


def op(name, slot, *args):
    return bytes([OPS[name], slot]) + b"".join(args)


def alloc(name, slot, size, variant=0):
    return op(name, slot, size, bytes([variant]))


def memalign(name, slot, align, size, variant=0):
    return op(name, slot, align, size, bytes([variant]))


def maint(sel, pad=0):
    return op("maint", 0, bytes([sel]) + (u(2, pad) if sel == 1 else b""))


SEEDS = {
    "malloc-kinds": b"".join([
        alloc("malloc", 0, tiny(0)), alloc("malloc", 1, tiny(64)), alloc("malloc", 2, small(8192)),
        alloc("malloc", 3, medium(100000)), alloc("malloc", 4, large(3 << 20)),
        op("usable", 3), op("free", 1, b"\x01"), op("free", 4, b"\x02"), op("free", 9, b"\x07")]),
    "malloc-edges": b"".join(alloc("malloc", i, edge(i * 3)) for i in range(24)),
    "malloc-absurd": b"".join(alloc("malloc", i, absurd(i, 17)) for i in range(10))
                     + alloc("malloc", 11, raw(1 << 63)) + alloc("malloc", 12, raw(M64)),
    "calloc": b"".join([
        op("calloc", 0, b"\x00", small(4000), b"\x00"), op("calloc", 1, b"\x02", b"\x10", medium(5000), b"\x00"),
        op("calloc", 2, b"\x00", large(1 << 20), b"\x00"), op("free", 2, b"\x00"),
        op("calloc", 3, b"\x00", large(1 << 20), b"\x00")]),
    "calloc-overflow": b"".join([
        op("calloc", 0, b"\x03", absurd(7, 15), edge(5), b"\x00"),      # 2^63 * 2 wraps to 0
        op("calloc", 1, b"\x04", b"\x20", b"\x01", b"\x00", b"\x00"),  # (2^33 + 1) * 2^31
        op("calloc", 2, b"\x05", u(8, 1 << 32), u(8, (1 << 32) + 1), b"\x00"),
        op("calloc", 3, b"\x05", u(8, 1 << 40), u(8, 1 << 8), b"\x00"),  # 2^48: too big
        op("calloc", 4, b"\x01", absurd(0), b"\x00"),
        op("calloc", 5, b"\x03", tiny(0), absurd(0), b"\x00")]),          # 0 * SIZE_MAX
    "realloc-chain": b"".join([
        op("realloc", 0, tiny(10)), op("realloc", 0, small(3000)), op("realloc", 0, medium(120000)),
        op("realloc", 0, large(2 << 20)), op("realloc", 0, large(5 << 20)), op("realloc", 0, large(1 << 20)),
        op("realloc", 0, small(100)), op("realloc", 0, tiny(0))]),
    "realloc-absurd": b"".join([
        op("realloc", 0, small(500)), op("realloc", 0, absurd(2)), op("realloc", 0, absurd(3, 17)),
        op("realloc", 1, large(1 << 20)), op("realloc", 1, absurd(0)), op("usable", 1)]),
    "realloc-large-shrink": b"".join([
        op("realloc", 0, large(6 << 20)), op("realloc", 0, large(200 << 10)),
        op("realloc", 0, medium(131072)), op("realloc", 0, large(4 << 20))]),
    "reallocarray": b"".join([
        op("reallocarray", 0, b"\x02", b"\x08", small(100)),
        op("reallocarray", 0, b"\x04", b"\x3e", b"\x03", b"\x01"),     # (2^63 + 3) * 2 wraps to 6
        op("reallocarray", 0, b"\x05", u(8, 1 << 33), u(8, 1 << 33)),
        op("reallocarray", 0, b"\x02", b"\x00", small(100)),             # 0 elements: frees
        op("reallocarray", 1, b"\x03", small(3), medium(40000))]),
    "memalign-pow2": b"".join(memalign("memalign", k, pow2(k), small(100 + k)) for k in range(24)),
    "memalign-big-align": b"".join(memalign("memalign", i, pow2(k), tiny(8))
                                   for i, k in enumerate([22, 23, 28, 30, 40, 47, 48, 62, 63])),
    "memalign-odd-align": b"".join([
        memalign("memalign", 0, bytes([6, 0]), small(50)), memalign("memalign", 1, pow2_pm1(12, True), small(50)),
        memalign("memalign", 2, pow2_pm1(12, False), small(50)), memalign("memalign", 3, align_raw(M64), small(50)),
        memalign("memalign", 4, align_raw((1 << 62) + 1), small(50)), memalign("memalign", 5, pow2(3), tiny(0))]),
    "memalign-4m-size0": memalign("memalign", 0, pow2(22), tiny(0)) + op("free", 0, b"\x00"),
    "aligned-alloc": b"".join([
        memalign("aligned_alloc", 0, pow2(6), small(640)), memalign("aligned_alloc", 1, pow2(16), medium(70000)),
        memalign("aligned_alloc", 2, pow2(21), large(1 << 20)), memalign("aligned_alloc", 3, pow2(12), absurd(4, 9)),
        op("free", 1, b"\x02"), op("free", 2, b"\x02")]),
    "posix-memalign": b"".join([
        memalign("posix_memalign", 0, pow2(3), tiny(1)), memalign("posix_memalign", 1, pow2(2), tiny(1)),
        memalign("posix_memalign", 2, bytes([6, 0]), tiny(1)), memalign("posix_memalign", 3, align_raw(24), tiny(1)),
        memalign("posix_memalign", 4, pow2(13), medium(20000)), memalign("posix_memalign", 5, pow2(20), absurd(6, 20)),
        memalign("posix_memalign", 6, pow2(48), tiny(16))]),
    "posix-memalign-2p63": memalign("posix_memalign", 0, pow2(63), tiny(16)),
    "valloc": b"".join([
        alloc("valloc", 0, tiny(1)), alloc("valloc", 1, small(5000)), alloc("valloc", 2, large(300000)),
        alloc("pvalloc", 3, tiny(0)), alloc("pvalloc", 4, small(4097)), alloc("pvalloc", 5, absurd(1, 1)),
        alloc("valloc", 6, absurd(0))]),
    "maintenance": b"".join([
        maint(2), alloc("malloc", 0, large(2 << 20)), op("free", 0, b"\x00"), alloc("malloc", 1, small(6000)),
        op("free", 1, b"\x00"), maint(0), maint(1, 4096), alloc("malloc", 2, large(2 << 20)), maint(3)]),
    "many-slots": b"".join(alloc("malloc", i, tiny(i)) for i in range(64))
                  + b"".join(op("free", (i * 37) % 64, b"\x00") for i in range(64)),
    "mixed": b"".join([
        alloc("malloc", 0, small(1000)), op("calloc", 1, b"\x00", small(1000), b"\x00"),
        memalign("memalign", 2, pow2(7), small(1000)), op("realloc", 0, small(2000)),
        op("realloc", 2, small(500)), op("reallocarray", 1, b"\x02", b"\x02", small(1000)),
        alloc("valloc", 3, small(1000)), op("realloc", 3, medium(50000)), op("usable", 2)]),
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds, {sum(map(len, SEEDS.values()))} bytes in {out}")
