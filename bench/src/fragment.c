/* fragment.c - fragmentation and memory return.  Phases:
 *  1. grow: allocate random sizes (80% 16..512 B, 18% 512 B..16 KiB, 2% 16..256 KiB)
 *     until SIZE MiB are live, with short-lived temporaries freed along the way;
 *  2. shrink: free 90% of the blocks, chosen at random (scattered holes);
 *     optionally malloc_trim(0) (argument "trim");
 *  3. work: keep working at the reduced size with DIFFERENT size mixes (does the
 *     allocator reuse the holes?), replacing blocks 4x the live count;
 *  4. idle: sleep 1 s (allocators with time-based decay can return memory).
 * Reports RSS (from /proc/self/statm) after each phase, in MiB.
 * THREADS threads each own SIZE/THREADS MiB.
 *
 * usage: fragment SIZE_MIB THREADS [trim]
 * prints: RESULT fragment peak_mb=... shrunk_mb=... worked_mb=... idle_mb=... live_mb=... check=ok */
#include "common.h"
#include <malloc.h>
#include <pthread.h>

typedef struct { uint32_t size; uint64_t id; void *p; } blk_t;
typedef struct {
  int t;
  size_t target;
  blk_t *b;
  long n, cap;
  uint64_t r, id;
  size_t live;
} st_t;

static pthread_barrier_t bar1, bar2, bar3;

static size_t size_grow(uint64_t *r) {
  uint64_t x = rng_next(r) % 100;
  if (x < 80) return (size_t)rng_range(r, 16, 512);
  if (x < 98) return (size_t)rng_range(r, 513, 16384);
  return (size_t)rng_range(r, 16385, 262144);
}
static size_t size_work(uint64_t *r) { /* a different mix: medium-heavy */
  uint64_t x = rng_next(r) % 100;
  if (x < 40) return (size_t)rng_range(r, 24, 96);
  if (x < 90) return (size_t)rng_range(r, 1000, 6000);
  return (size_t)rng_range(r, 40000, 120000);
}
static void put(st_t *s, long k, size_t n) {
  blk_t *b = &s->b[k];
  b->size = (uint32_t)n;
  b->id = s->id++;
  b->p = xmalloc(n);
  if (n >= 4096) memset(b->p, 0x5a, n); /* programs write what they allocate: make it resident */
  tag_fill(b->p, n, b->id);
  s->live += n;
}
static void drop(st_t *s, long k) {
  blk_t *b = &s->b[k];
  if (!b->p) return;
  TAG_CHECK(b->p, b->size, b->id, "fragment");
  free(b->p);
  s->live -= b->size;
  b->p = NULL;
}

static void *worker(void *arg) {
  st_t *s = (st_t *)arg;
  s->cap = 1024;
  s->b = xmalloc(sizeof(blk_t) * (size_t)s->cap);
  /* 1. grow */
  while (s->live < s->target) {
    if (s->n == s->cap) {
      s->cap *= 2;
      s->b = realloc(s->b, sizeof(blk_t) * (size_t)s->cap);
      if (!s->b) die("realloc failed");
    }
    put(s, s->n++, size_grow(&s->r));
    if (rng_next(&s->r) % 4 == 0) { /* a short-lived temporary */
      void *t = xmalloc(size_grow(&s->r));
      ESCAPE(t);
      free(t);
    }
  }
  pthread_barrier_wait(&bar1);
  /* 2. free 90% at random */
  for (long k = 0; k < s->n; k++)
    if (rng_next(&s->r) % 10 != 0) drop(s, k);
  pthread_barrier_wait(&bar2);
  /* 3. keep working with a different size mix (only in the slots still alive +
   *    the first tenth of the freed ones) */
  long slots = s->n;
  long work = 4 * (s->n / 10);
  for (long i = 0; i < work; i++) {
    long k = (long)(rng_next(&s->r) % (uint64_t)slots);
    if (s->b[k].p == NULL && (k % 10) != 0) continue; /* keep the live count about constant */
    drop(s, k);
    put(s, k, size_work(&s->r));
  }
  pthread_barrier_wait(&bar3);
  return NULL;
}

int main(int argc, char **argv) {
  long mib = arg_long(argc, argv, 1, 400);
  int threads = (int)arg_long(argc, argv, 2, 2);
  int trim = argc > 3 && strcmp(argv[3], "trim") == 0;
  st_t *s = calloc((size_t)threads, sizeof(st_t));
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  pthread_barrier_init(&bar1, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&bar2, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&bar3, NULL, (unsigned)threads + 1);
  double t0 = now_s();
  for (int t = 0; t < threads; t++) {
    s[t].t = t;
    s[t].target = (size_t)mib * 1024 * 1024 / (size_t)threads;
    s[t].r = 0xf00dull + (uint64_t)t * 7;
    if (pthread_create(&tid[t], NULL, worker, &s[t])) die("pthread_create");
  }
  pthread_barrier_wait(&bar1);
  long peak = rss_kib();
  pthread_barrier_wait(&bar2);
  long shrunk = rss_kib();
  if (trim) { malloc_trim(0); shrunk = rss_kib(); }
  pthread_barrier_wait(&bar3);
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  if (trim) malloc_trim(0);
  long worked = rss_kib();
  double el = now_s() - t0;
  size_t live = 0;
  for (int t = 0; t < threads; t++) live += s[t].live;
  sleep(1);
  long idle = rss_kib();
  /* final check and cleanup */
  for (int t = 0; t < threads; t++) {
    for (long k = 0; k < s[t].n; k++) drop(&s[t], k);
    free(s[t].b);
  }
  printf("RESULT fragment%s peak_mb=%.1f shrunk_mb=%.1f worked_mb=%.1f idle_mb=%.1f live_mb=%.1f elapsed_s=%.4f check=ok\n",
         trim ? "-trim" : "", peak / 1024.0, shrunk / 1024.0, worked / 1024.0, idle / 1024.0, live / 1048576.0, el);
  free(s);
  free(tid);
  return 0;
}
