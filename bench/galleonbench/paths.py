"""Where things are."""
import os
import sys

PKG = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(PKG)
ROOT = os.path.dirname(BENCH)
SRC = os.path.join(BENCH, "src")
BUILD = os.path.join(BENCH, "build")
CACHE = os.path.join(BENCH, ".cache")
RESULTS = os.path.join(BENCH, "results")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
RUNJOB = os.path.join(BUILD, "runjob")
PROBE_LIB = os.path.join(BUILD, "libbenchprobe.so")


def log(msg):
    print(msg, file=sys.stderr, flush=True)
