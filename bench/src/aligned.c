/* aligned.c - aligned allocation mixed with plain malloc: a working set of 512
 * slots per thread; each step frees a random slot and refills it with either
 * malloc (50%), posix_memalign (25%) or aligned_alloc (25%), alignment a power of
 * two from 16 B to 2 MiB (larger alignments rarer), size random up to 64 KiB for
 * small alignments and up to 2x the alignment for large ones.  The returned
 * pointer's alignment and the block's contents are checked.
 *
 * usage: aligned SIZE THREADS     SIZE = steps per thread
 * prints: RESULT aligned elapsed_s=... check=ok */
#include "common.h"
#include <pthread.h>

#define WS 512
static long steps;

static void *worker(void *arg) {
  uint64_t r = 0xa11ull + (uint64_t)(uintptr_t)arg * 13;
  void *p[WS] = {0};
  size_t sz[WS] = {0};
  uint64_t id[WS] = {0}, next = 1;
  for (long s = 0; s < steps; s++) {
    int k = (int)(rng_next(&r) % WS);
    if (p[k]) { TAG_CHECK(p[k], sz[k], id[k], "aligned"); free(p[k]); }
    uint64_t x = rng_next(&r);
    int kind = (int)(x % 4);
    /* alignment exponent 4..21, geometric-ish: each step up halves the chance */
    int e = 4;
    while (e < 21 && (rng_next(&r) & 1)) e++;
    size_t al = (size_t)1 << e;
    size_t n = e <= 12 ? (size_t)rng_range(&r, 1, 64 * 1024 >> (rng_next(&r) % 8)) : (size_t)rng_range(&r, 1, 2 * al);
    void *q = NULL;
    if (kind < 2) {
      q = malloc(n);
      al = 16; /* malloc's guarantee on x86-64 */
      if (n < 16) al = 8;
    } else if (kind == 2) {
      if (posix_memalign(&q, al, n) != 0) q = NULL;
    } else {
      size_t an = (n + al - 1) & ~(al - 1); /* C11 wants size a multiple of the alignment */
      q = aligned_alloc(al, an);
      n = an;
    }
    if (q == NULL) die("aligned: allocation of %zu bytes (alignment %zu, kind %d) failed", n, al, kind);
    if ((uintptr_t)q & (al - 1)) die("aligned: %p is not aligned to %zu (kind %d, size %zu)", q, al, kind, n);
    p[k] = q; sz[k] = n; id[k] = next++;
    tag_fill(q, n, id[k]);
  }
  for (int k = 0; k < WS; k++)
    if (p[k]) { TAG_CHECK(p[k], sz[k], id[k], "aligned final"); free(p[k]); }
  return NULL;
}

int main(int argc, char **argv) {
  steps = arg_long(argc, argv, 1, 500000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  double el = run_threads(worker, threads);
  printf("RESULT aligned elapsed_s=%.4f ops=%ld threads=%d check=ok\n", el, steps * threads, threads);
  return 0;
}
