/* glibc_thread.c - after glibc's benchtests/bench-malloc-thread.c: each thread
 * keeps a working set of 1024 blocks and repeatedly frees a random one and
 * allocates a new one whose size follows an inverse (log-uniform) distribution
 * over 4..32768 B, so small sizes dominate.  Run with 1, 2, ..., THREADS threads
 * in turn, like glibc's bench-malloc-thread 1..N sweep.
 *
 * usage: glibc-thread SIZE THREADS     SIZE = iterations per thread per sweep point
 * prints: RESULT glibc-thread ops_per_s=<aggregate> elapsed_s=... t1=... t2=... check=ok */
#include "common.h"
#include <math.h>
#include <pthread.h>

#define WS 1024
#define NSIZES 4096
static uint32_t size_table[NSIZES];
static long iters;

static void *worker(void *arg) {
  uint64_t r = 0xfeedull + (uint64_t)(uintptr_t)arg * 31337;
  void *ws[WS] = {0};
  uint32_t wsz[WS] = {0};
  for (long i = 0; i < iters; i++) {
    uint64_t x = rng_next(&r);
    int k = (int)(x % WS);
    if (ws[k]) {
      if (*(volatile uint32_t *)ws[k] != wsz[k]) die("glibc-thread: block %p clobbered", ws[k]);
      free(ws[k]);
    }
    wsz[k] = size_table[(x >> 20) % NSIZES];
    ws[k] = xmalloc(wsz[k]);
    *(volatile uint32_t *)ws[k] = wsz[k];
  }
  for (int k = 0; k < WS; k++) free(ws[k]);
  return NULL;
}

int main(int argc, char **argv) {
  iters = arg_long(argc, argv, 1, 1000000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  uint64_t r = 42;
  for (int i = 0; i < NSIZES; i++) {
    double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0;
    size_table[i] = (uint32_t)(4.0 * pow(32768.0 / 4.0, u));
    if (size_table[i] < 4) size_table[i] = 4;
  }
  char detail[512] = "";
  size_t dl = 0;
  double total_el = 0, total_ops = 0;
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  for (int n = 1; n <= threads; n++) {
    double t0 = now_s();
    for (int i = 0; i < n; i++)
      if (pthread_create(&tid[i], NULL, worker, (void *)(uintptr_t)(i + 1))) die("pthread_create");
    for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
    double el = now_s() - t0;
    total_el += el;
    total_ops += (double)iters * n;
    if (dl < sizeof detail - 40)
      dl += (size_t)snprintf(detail + dl, sizeof detail - dl, " t%d=%.0f", n, (double)iters * n / el);
  }
  free(tid);
  printf("RESULT glibc-thread ops_per_s=%.0f elapsed_s=%.4f ops=%.0f%s check=ok\n", total_ops / total_el, total_el,
         total_ops, detail);
  return 0;
}
