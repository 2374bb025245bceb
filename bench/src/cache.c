/* cache.c - cache-thrash and cache-scratch from the Hoard benchmarks (Berger et
 * al., ASPLOS 2000), as in mimalloc-bench.  Tests for allocator-induced false
 * sharing: each thread repeatedly allocates a small object, writes to it many
 * times, and frees it.  An allocator that hands neighbouring bytes of one cache
 * line to different threads makes the writes ping-pong the line between cores.
 *   cache-thrash:  objects come from each thread's own allocations (active false sharing)
 *   cache-scratch: the main thread first allocates one object per thread, adjacent
 *                  in memory; each thread frees its object first, and then allocates
 *                  (passive false sharing: does the allocator reuse that freed slot?)
 * Built twice from this source: -DSCRATCH=0 (cache-thrash) and -DSCRATCH=1.
 *
 * usage: cache-thrash|cache-scratch SIZE THREADS [OBJSIZE] [REPS]
 *   SIZE = malloc/free iterations per thread; REPS = writes per byte per object
 * prints: RESULT cache-xxx elapsed_s=... check=ok */
#include "common.h"
#include <pthread.h>
#ifndef SCRATCH
#define SCRATCH 0
#endif
#define NAME (SCRATCH ? "cache-scratch" : "cache-thrash")

typedef struct {
  long iters;
  int objsize;
  int reps;
  char *initial; /* scratch: object allocated by main, freed by this thread */
  pthread_barrier_t *bar;
} targ_t;

static void *worker(void *arg) {
  targ_t *a = (targ_t *)arg;
  pthread_barrier_wait(a->bar);
  if (a->initial) free(a->initial);
  for (long i = 0; i < a->iters; i++) {
    volatile char *o = (volatile char *)xmalloc((size_t)a->objsize);
    for (int r = 0; r < a->reps; r++)
      for (int j = 0; j < a->objsize; j++) o[j] = (char)(o[j] * 0 + r + j);
    for (int j = 0; j < a->objsize; j++)
      if (o[j] != (char)(a->reps - 1 + j)) die("%s: object %p byte %d changed under us", NAME, (void *)o, j);
    free((void *)o);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long size = arg_long(argc, argv, 1, 100000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  int objsize = (int)arg_long(argc, argv, 3, 8);
  int reps = (int)arg_long(argc, argv, 4, 100);
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  targ_t *args = xmalloc(sizeof(targ_t) * (size_t)threads);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; t++) {
    args[t].iters = size;
    args[t].objsize = objsize;
    args[t].reps = reps;
    args[t].bar = &bar;
    args[t].initial = SCRATCH ? xmalloc((size_t)objsize) : NULL;
    if (args[t].initial) memset(args[t].initial, 1, (size_t)objsize);
  }
  for (int t = 0; t < threads; t++)
    if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) die("pthread_create failed");
  double t0 = now_s();
  pthread_barrier_wait(&bar);
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  double el = now_s() - t0;
  printf("RESULT %s elapsed_s=%.4f ops=%ld threads=%d check=ok\n", NAME, el, size * threads, threads);
  pthread_barrier_destroy(&bar);
  free(args);
  free(tid);
  return 0;
}
