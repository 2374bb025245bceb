"""The allocators under test: Galleon (a pinned copy of libgalleon.so), glibc (no
preload), jemalloc, tcmalloc and mimalloc from Debian; installing missing peers."""
import collections
import hashlib
import os
import shutil
import subprocess
import time

from .paths import LIBDIR, ROOT, log

# name: what the reports call it; lib: the library to preload (None = glibc, no
# preload); shown: the path to print in commands (the original of a pinned copy);
# env: variables set for its runs (a variant of Galleon), or None
Allocator = collections.namedtuple("Allocator", "name lib shown env", defaults=(None,))

# Variants of Galleon, run only when --allocators names them: the same library with
# options set.  The file is written (and overwritten) by every run; its contents do
# not matter here, writing it is part of the cost measured.
VARIANTS = {
    "galleon-profile": lambda workdir: {"GALLEON_PROFILE": os.path.join(workdir, "galleon-profile.prof")},
}

PEERS = (  # name, candidate file names in LIBDIR, first one that exists wins
    ("jemalloc", ["libjemalloc.so.2"]),
    ("tcmalloc", ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4"]),
    ("mimalloc", ["libmimalloc.so.2.0", "libmimalloc.so.2", "libmimalloc.so"]),
)

PEER_PACKAGES = {  # what the suite uses -> the Debian package that brings it
    os.path.join(LIBDIR, "libjemalloc.so.2"): "libjemalloc2",
    os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"): "libtcmalloc-minimal4",
    os.path.join(LIBDIR, "libmimalloc.so.2.0"): "libmimalloc2.0",
    "/usr/bin/gnuplot": "gnuplot-nox",
    "/usr/bin/valgrind": "valgrind",
    "/usr/bin/sqlite3": "sqlite3",
    "/usr/bin/redis-benchmark": "redis-tools",
}
SYSCALL_TOOLS = {"/usr/bin/strace": "strace"}  # only needed with --syscalls


def install_missing_peers(syscalls=False):
    """apt-get install the peers and tools that are missing (root or sudo only)."""
    wanted = dict(PEER_PACKAGES, **(SYSCALL_TOOLS if syscalls else {}))
    missing = sorted(set(pkg for path, pkg in wanted.items() if not os.path.exists(path)))
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        log("WARNING: missing %s and cannot install them (not root, no sudo)" % " ".join(missing))
        return
    log("installing missing peers/tools from Debian: %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, check=False)
    r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, env=env, check=False)
    if r.returncode != 0:
        log("WARNING: apt-get install failed (%d); the missing ones are skipped" % r.returncode)


def galleon_path(option):
    """--galleon, else $GALLEON_LIB, else build/libgalleon.so of the repository."""
    return option or os.environ.get("GALLEON_LIB") or os.path.join(ROOT, "build", "libgalleon.so")


def find_allocators(galleon):
    allocs = []
    if os.path.exists(galleon):
        real = os.path.realpath(galleon)
        allocs.append(Allocator("galleon", real, real))
    else:
        log("WARNING: %s not found: Galleon is skipped (build it with `make` in the repo root)" % galleon)
    allocs.append(Allocator("glibc", None, None))
    for name, cands in PEERS:
        for c in cands:
            p = os.path.join(LIBDIR, c)
            if os.path.exists(p):
                allocs.append(Allocator(name, p, p))
                break
        else:
            log("WARNING: %s not found in %s: skipped (apt-get install libjemalloc2 "
                "libtcmalloc-minimal4 libmimalloc2.0)" % (name, LIBDIR))
    return allocs


def secure_path(galleon_shown):
    """libgalleon-secure.so, the secure build, next to Galleon's library."""
    return os.path.join(os.path.dirname(galleon_shown), "libgalleon-secure.so")


def add_variants(allocs, wanted, workdir):
    """Appends the Galleon variants named in `wanted` (after Galleon was pinned),
    and galleon-secure (a pinned copy of libgalleon-secure.so from the same
    directory as Galleon's library) when named."""
    galleon = next((a for a in allocs if a.name == "galleon"), None)
    if "galleon-secure" in wanted:
        if galleon is None:
            raise SystemExit("galleon-secure is looked for next to Galleon's library, which was not found")
        path = secure_path(galleon.shown)
        if not os.path.exists(path):
            raise SystemExit("galleon-secure: %s not found (build it with `make` in the repo root)" % path)
        pinned = os.path.join(workdir, "libgalleon-secure.so")
        shutil.copy2(path, pinned)
        log("galleon-secure: %s, running a pinned copy" % path)
        allocs.append(Allocator("galleon-secure", pinned, os.path.realpath(path)))
    for name in wanted:
        if name in VARIANTS:
            if galleon is None:
                raise SystemExit("%s needs Galleon's library, which was not found" % name)
            allocs.append(Allocator(name, galleon.lib, galleon.shown, VARIANTS[name](workdir)))
    return allocs


def pin_baseline(path, workdir):
    """--baseline: a copy of another libgalleon.so, as allocator galleon-base."""
    if not os.path.isfile(path):
        raise SystemExit("--baseline %s: no such file" % path)
    pinned = os.path.join(workdir, "libgalleon-base.so")
    shutil.copy2(path, pinned)
    log("galleon-base: %s, running a pinned copy" % path)
    return Allocator("galleon-base", pinned, os.path.realpath(path))


def pin_galleon(allocs, workdir):
    """Replace Galleon's library by a copy in workdir (a rebuild during a long run
    cannot mix versions).  Returns (allocs, info for results.json or None)."""
    out, info = [], None
    for a in allocs:
        if a.name != "galleon":
            out.append(a)
            continue
        pinned = os.path.join(workdir, "libgalleon.so")
        shutil.copy2(a.lib, pinned)
        with open(a.lib, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        info = {"path": a.lib, "sha256": digest,
                "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(a.lib)))}
        log("galleon: %s (built %s, sha256 %s...), running a pinned copy" % (a.lib, info["mtime"], digest[:12]))
        out.append(Allocator("galleon", pinned, a.lib))
    return out, info
