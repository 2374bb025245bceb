/* glibc_simple.c - after glibc's benchtests/bench-malloc-simple.c: tight loops
 * that allocate a batch of N equal small blocks (N = 1, 25, 100, 400) and free
 * them again, for sizes 16..1024 B.  Run once in the main thread and once in a
 * second thread (glibc's "main arena" / "thread arena" cases), then THREADS
 * threads at once when THREADS > 1.
 *
 * usage: glibc-simple SIZE THREADS     SIZE = malloc/free pairs per case
 * prints: RESULT glibc-simple ns_per_op=... elapsed_s=... check=ok */
#include "common.h"
#include <pthread.h>

static long pairs;
static const int sizes[] = {16, 32, 64, 128, 256, 512, 1024};
static const int batches[] = {1, 25, 100, 400};

static void *run(void *arg) {
  (void)arg;
  void *blk[400];
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    size_t sz = (size_t)sizes[si];
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
      int n = batches[bi];
      long loops = pairs / n;
      for (long l = 0; l < loops; l++) {
        for (int i = 0; i < n; i++) {
          blk[i] = xmalloc(sz);
          *(volatile uint32_t *)blk[i] = (uint32_t)i;
        }
        for (int i = 0; i < n; i++) {
          if (*(volatile uint32_t *)blk[i] != (uint32_t)i) die("glibc-simple: block %p clobbered", blk[i]);
          free(blk[i]);
        }
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  pairs = arg_long(argc, argv, 1, 200000);
  int threads = (int)arg_long(argc, argv, 2, 1);
  long per_pass = 0;
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) per_pass += pairs / batches[bi] * batches[bi];
  per_pass *= (long)(sizeof sizes / sizeof sizes[0]);
  double t0 = now_s();
  run(NULL); /* main arena */
  pthread_t t;
  if (pthread_create(&t, NULL, run, NULL)) die("pthread_create"); /* thread arena */
  pthread_join(t, NULL);
  long ops = 2 * per_pass;
  if (threads > 1) {
    pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
    for (int i = 0; i < threads; i++)
      if (pthread_create(&tid[i], NULL, run, NULL)) die("pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    free(tid);
    ops += per_pass * threads;
  }
  double el = now_s() - t0;
  printf("RESULT glibc-simple ns_per_op=%.2f elapsed_s=%.4f ops=%ld threads=%d check=ok\n", el * 1e9 / (double)ops,
         el, ops, threads);
  return 0;
}
