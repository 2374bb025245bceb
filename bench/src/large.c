/* large.c - after mimalloc-bench's "malloc-large": repeatedly allocate blocks
 * of 5-25 MiB, keeping up to 20 alive, and free a random live one in their place.
 * Like the original (std::make_unique<char[]>(n), which value-initialises), every
 * block is written in full when allocated - so an allocator that hands out fresh
 * pages pays for page faults and one that reuses its mappings does not - and one
 * byte per MiB plus the last byte are checked before it is freed.  THREADS threads
 * run this independently.
 *
 * usage: malloc-large SIZE THREADS     SIZE = allocations per thread
 * prints: RESULT malloc-large elapsed_s=... check=ok */
#include "common.h"
#include <pthread.h>

#define LIVE 20
#define MIB (1024u * 1024u)
static long iters;

static void touch(unsigned char *p, size_t n, unsigned char v) { memset(p, v, n); }
static void check(unsigned char *p, size_t n, unsigned char v) {
  for (size_t o = 0; o < n; o += MIB)
    if (p[o] != v) die("malloc-large: block %p (size %zu) offset %zu corrupted", (void *)p, n, o);
  if (p[n - 1] != v) die("malloc-large: block %p (size %zu) tail corrupted", (void *)p, n);
}

static void *worker(void *arg) {
  uint64_t r = 0x1a2b3cull + (uint64_t)(uintptr_t)arg;
  unsigned char *blk[LIVE] = {0};
  size_t sz[LIVE] = {0};
  unsigned char val[LIVE] = {0};
  for (long i = 0; i < iters; i++) {
    int k = (int)(rng_next(&r) % LIVE);
    if (blk[k]) { check(blk[k], sz[k], val[k]); free(blk[k]); }
    sz[k] = (size_t)rng_range(&r, 5ull * MIB, 25ull * MIB);
    blk[k] = xmalloc(sz[k]);
    val[k] = (unsigned char)(1 + i % 250);
    touch(blk[k], sz[k], val[k]);
  }
  for (int k = 0; k < LIVE; k++)
    if (blk[k]) { check(blk[k], sz[k], val[k]); free(blk[k]); }
  return NULL;
}

int main(int argc, char **argv) {
  iters = arg_long(argc, argv, 1, 2000);
  int threads = (int)arg_long(argc, argv, 2, 1);
  double el = run_threads(worker, threads);
  printf("RESULT malloc-large elapsed_s=%.4f ops=%ld threads=%d check=ok\n", el, iters * threads, threads);
  return 0;
}
