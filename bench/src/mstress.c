/* mstress.c - mixed stress after mimalloc-bench's "mstress" (Leijen) and
 * rpmalloc's "rptest" (Jansson): random sizes up to 16 KiB (skewed to small),
 * short-lived blocks (freed at once), long-lived blocks (kept in a per-thread
 * working set across a round), and blocks passed between threads through a
 * shared array of atomic slots.  After each round, half of every working set
 * dies at once (phase change).
 *
 * usage: mstress SIZE THREADS [ROUNDS]    SIZE = steps per thread in total
 * prints: RESULT mstress ops_per_s=... elapsed_s=... check=ok */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define LOCAL 2000
#define SHARED 1024

typedef struct { uint64_t size, id; } hdr_t; /* stored at the start of every block */

static _Atomic(hdr_t *) shared_slots[SHARED];
static long steps_per_round;
static int rounds;
static pthread_barrier_t bar;
static atomic_long total_ops;

static size_t rand_size(uint64_t *r) {
  static const size_tier_t tiers[] = {{80, 16, 256}, {95, 257, 4096}, {100, 4097, 16384}};
  return size_from_tiers(r, 100, tiers);
}
static hdr_t *blk_new(uint64_t *r, uint64_t id) {
  size_t n = rand_size(r);
  hdr_t *h = xmalloc(n);
  h->size = n;
  h->id = id;
  unsigned char *b = (unsigned char *)h;
  b[n - 1] = (unsigned char)(id * 31 + n);
  if (n > 64) memset(b + 16, (int)(id & 0xff), 32);
  return h;
}
static void blk_check(hdr_t *h) {
  unsigned char *b = (unsigned char *)h;
  size_t n = h->size;
  if (n < 16 || n > 16384) die("mstress: block %p has corrupt size field %zu", (void *)h, n);
  if (b[n - 1] != (unsigned char)(h->id * 31 + n)) die("mstress: block %p (size %zu) tail corrupted", (void *)h, n);
  if (n > 64)
    for (int i = 16; i < 48; i++)
      if (b[i] != (unsigned char)(h->id & 0xff)) die("mstress: block %p body corrupted", (void *)h);
}
static void blk_free(hdr_t *h) {
  if (h == NULL) return;
  blk_check(h);
  free(h);
}

static void *worker(void *arg) {
  uint64_t t = (uint64_t)(uintptr_t)arg;
  uint64_t r = 0x777ull + t * 10007, id = t << 48;
  hdr_t **local = xmalloc(sizeof(hdr_t *) * LOCAL);
  long ops = 0;
  for (int i = 0; i < LOCAL; i++) local[i] = blk_new(&r, id++);
  pthread_barrier_wait(&bar);
  for (int round = 0; round < rounds; round++) {
    for (long s = 0; s < steps_per_round; s++) {
      uint64_t x = rng_next(&r) % 100;
      if (x < 50) { /* short-lived burst */
        hdr_t *tmp[4];
        int k = 1 + (int)(x & 3);
        for (int i = 0; i < k; i++) tmp[i] = blk_new(&r, id++);
        for (int i = k - 1; i >= 0; i--) blk_free(tmp[i]);
        ops += k;
      } else if (x < 90) { /* replace a long-lived block */
        int i = (int)(rng_next(&r) % LOCAL);
        blk_free(local[i]);
        local[i] = blk_new(&r, id++);
        ops++;
      } else { /* pass a block to another thread */
        int i = (int)(rng_next(&r) % LOCAL), j = (int)(rng_next(&r) % SHARED);
        hdr_t *got = atomic_exchange(&shared_slots[j], local[i]);
        local[i] = got ? got : blk_new(&r, id++);
        if (got) blk_check(got);
        ops++;
      }
    }
    for (int i = 0; i < LOCAL; i += 2) { /* half of the working set dies */
      blk_free(local[i]);
      local[i] = blk_new(&r, id++);
    }
    ops += LOCAL / 2;
  }
  for (int i = 0; i < LOCAL; i++) blk_free(local[i]);
  free(local);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

int main(int argc, char **argv) {
  long size = arg_long(argc, argv, 1, 2000000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  rounds = (int)arg_long(argc, argv, 3, 10);
  steps_per_round = size / rounds > 0 ? size / rounds : 1;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  for (int t = 0; t < threads; t++)
    if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)(t + 1))) die("pthread_create");
  pthread_barrier_wait(&bar);
  double t0 = now_s();
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  double el = now_s() - t0;
  for (int j = 0; j < SHARED; j++) blk_free(atomic_exchange(&shared_slots[j], NULL));
  printf("RESULT mstress ops_per_s=%.0f elapsed_s=%.4f ops=%ld threads=%d check=ok\n",
         (double)atomic_load(&total_ops) / el, el, (long)atomic_load(&total_ops), threads);
  free(tid);
  return 0;
}
