/* fastpath.c - three loops whose instruction counts (under valgrind --tool=callgrind)
 * measure an allocator's fast path exactly:
 *   pair   : N times { p = malloc(64); free(p); }
 *   batch  : N times { 10,000 x malloc(64); then free all 10,000 }
 *   random : 4,096 live blocks; N times { free a random one; malloc 16..1024 B in its place }
 * Compiled twice: normally, and with -DSTUB where malloc/free are trivial inline
 * stand-ins, so that the loop's own cost (RNG, array traffic, loop control) can
 * be measured and subtracted.  The runner runs N and 2N iterations of each and
 * reports (Ir(2N) - Ir(N)) / steps - the same for the stub = instructions per
 * malloc+free step (start-up and allocator initialisation cancel out).
 *
 * usage: fastpath{,-stub} MODE N          MODE = pair | batch | random
 * prints: RESULT fastpath mode=... steps=... elapsed_s=... check=ok */
#include "common.h"

#ifdef STUB
static char stub_area[4096];
static inline void *my_malloc(size_t n) {
  void *p = stub_area;
  __asm__ volatile("" : "+r"(p) : "r"(n));
  return p;
}
static inline void my_free(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
#else
#define my_malloc malloc
#define my_free free
#endif

#define BATCH 10000
#define LIVE 4096

int main(int argc, char **argv) {
  if (argc < 3) die("usage: fastpath pair|batch|random N");
  const char *mode = argv[1];
  long n = arg_long(argc, argv, 2, 1000);
  long steps = 0;
  double t0 = now_s();
  if (strcmp(mode, "pair") == 0) {
    for (long i = 0; i < n; i++) {
      void *p = my_malloc(64);
      if (p == NULL) die("malloc failed");
      ESCAPE(p);
      my_free(p);
    }
    steps = n;
  } else if (strcmp(mode, "batch") == 0) {
    void **a = malloc(sizeof(void *) * BATCH);
    if (a == NULL) die("malloc failed");
    for (long b = 0; b < n; b++) {
      for (int i = 0; i < BATCH; i++) {
        a[i] = my_malloc(64);
        ESCAPE(a[i]);
      }
      for (int i = 0; i < BATCH; i++) my_free(a[i]);
    }
    free(a);
    steps = n * BATCH;
  } else if (strcmp(mode, "random") == 0) {
    void **a = malloc(sizeof(void *) * LIVE);
    if (a == NULL) die("malloc failed");
    uint64_t r = 12345;
    for (int i = 0; i < LIVE; i++) {
      a[i] = my_malloc(16 + rng_next(&r) % 1009);
      ESCAPE(a[i]);
    }
    for (long i = 0; i < n; i++) {
      uint64_t x = rng_next(&r);
      uint32_t k = (uint32_t)(x % LIVE);
      my_free(a[k]);
      a[k] = my_malloc(16 + (size_t)((x >> 32) % 1009));
      ESCAPE(a[k]);
    }
    for (int i = 0; i < LIVE; i++) my_free(a[i]);
    free(a);
    steps = n;
  } else {
    die("unknown mode '%s'", mode);
  }
  double el = now_s() - t0;
  printf("RESULT fastpath mode=%s steps=%ld elapsed_s=%.4f ns_per_step=%.2f check=ok\n", mode, steps, el,
         el * 1e9 / (double)steps);
  return 0;
}
