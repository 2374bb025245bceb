/* scale.c - how an allocator holds up as the heap and the thread count grow.
 *
 *   scale heap MIB       builds a heap of MIB MiB of small objects (16-256 B), then
 *                        runs random steps over it: free a random live object and
 *                        allocate one of a new random size in its place, touching it.
 *                        The objects are spread over the whole heap, so TLB and cache
 *                        misses count as they would in a big server.  Reports ns per
 *                        step and the memory overhead: (RSS - requested bytes - the
 *                        pointer table) / requested bytes.
 *   scale threads N      N threads (oversubscribing this machine's cores when N is
 *                        large: lock-holder preemption shows) each run the same fixed
 *                        number of malloc/free steps on a private working set of 2,000
 *                        objects, and hand every 64th object to a neighbour thread to
 *                        free.  Reports ns per step (wall time x cores / steps).
 *
 * prints: RESULT scale elapsed_s=... ops=STEPS ns_per_op=... overhead_pct=... check=ok */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

static size_t object_size(uint64_t *rng) { return (size_t)rng_range(rng, 16, 256); }

static int scale_heap(long mib) {
  size_t target = (size_t)mib << 20;
  size_t cap = target / 100 + 16; /* objects average 136 bytes */
  char **objs = xmalloc(cap * sizeof(char *));
  uint32_t *sizes = xmalloc(cap * sizeof(uint32_t));
  uint64_t rng = 777;
  size_t n = 0, bytes = 0;
  long rss0 = rss_kib();
  while (bytes < target && n < cap) {
    size_t s = object_size(&rng);
    char *p = xmalloc(s);
    p[0] = (char)s;
    p[s - 1] = (char)n;
    objs[n] = p;
    sizes[n] = (uint32_t)s;
    bytes += s;
    n++;
  }
  long steps = 2000000;
  uint64_t check = 0;
  double t0 = now_s();
  for (long i = 0; i < steps; i++) {
    size_t k = (size_t)(rng_next(&rng) % n);
    char *p = objs[k];
    if (p[0] != (char)sizes[k]) die("object %zu corrupt", k);
    check += (unsigned char)p[sizes[k] - 1];
    bytes -= sizes[k];
    free(p);
    size_t s = object_size(&rng);
    p = xmalloc(s);
    p[0] = (char)s;
    p[s - 1] = (char)i;
    objs[k] = p;
    sizes[k] = (uint32_t)s;
    bytes += s;
  }
  double el = now_s() - t0;
  long rss = rss_kib() - rss0;
  double table = (double)n * (sizeof(char *) + sizeof(uint32_t));
  double overhead = ((double)rss * 1024.0 - (double)bytes - table) / (double)bytes * 100.0;
  ESCAPE(&check);
  printf("RESULT scale elapsed_s=%.4f ops=%ld ns_per_op=%.1f overhead_pct=%.1f heap_mb=%ld objects=%zu check=ok\n", el,
         steps, el * 1e9 / (double)steps, overhead, mib, n);
  for (size_t i = 0; i < n; i++) free(objs[i]);
  free(objs);
  free(sizes);
  return 0;
}

#define WORKING 2000
#define STEPS_TOTAL 8000000L

typedef struct {
  int id, count;
  long steps;
  _Atomic(void *) *handoff; /* one slot per thread: a block for that thread to free */
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  uint64_t rng = (uint64_t)w->id * 7919 + 1;
  char *set[WORKING];
  for (int i = 0; i < WORKING; i++) set[i] = xmalloc(object_size(&rng));
  for (long i = 0; i < w->steps; i++) {
    int k = (int)(rng_next(&rng) % WORKING);
    if ((i & 63) == 0) { /* hand this one to the next thread, take what we were given */
      void *mine = atomic_exchange(&w->handoff[(w->id + 1) % w->count], set[k]);
      if (mine) free(mine);
    } else {
      free(set[k]);
    }
    set[k] = xmalloc(object_size(&rng));
    set[k][0] = (char)i;
  }
  for (int i = 0; i < WORKING; i++) free(set[i]);
  return NULL;
}

static int scale_threads(long count) {
  if (count < 1) die("threads must be >= 1");
  pthread_t *t = xmalloc((size_t)count * sizeof(pthread_t));
  worker_t *w = xmalloc((size_t)count * sizeof(worker_t));
  _Atomic(void *) *handoff = xmalloc((size_t)count * sizeof(*handoff));
  for (long i = 0; i < count; i++) atomic_init(&handoff[i], NULL);
  long per = STEPS_TOTAL / count;
  double t0 = now_s();
  for (long i = 0; i < count; i++) {
    w[i] = (worker_t){(int)i, (int)count, per, handoff};
    if (pthread_create(&t[i], NULL, worker, &w[i]) != 0) die("pthread_create");
  }
  for (long i = 0; i < count; i++) pthread_join(t[i], NULL);
  for (long i = 0; i < count; i++) free(atomic_load(&handoff[i]));
  double el = now_s() - t0;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  long steps = per * count;
  printf("RESULT scale elapsed_s=%.4f ops=%ld ns_per_op=%.1f overhead_pct=0 threads=%ld check=ok\n", el, steps,
         el * 1e9 * (double)(cores < count ? cores : count) / (double)steps, count);
  free(t);
  free(w);
  free((void *)handoff);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) die("usage: scale heap MIB | scale threads N");
  long v = arg_long(argc, argv, 2, 1);
  if (strcmp(argv[1], "heap") == 0) return scale_heap(v);
  if (strcmp(argv[1], "threads") == 0) return scale_threads(v);
  die("unknown mode %s", argv[1]);
  return 1;
}
