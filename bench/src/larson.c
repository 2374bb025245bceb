/* larson.c - server simulation after Larson & Krishnan, "Memory allocation for
 * long-running server applications" (ISMM 1998), as in the Hoard / mimalloc-bench
 * "larson" benchmark.  Each of THREADS lanes owns a pool of CHUNKS blocks of random
 * size 8..1000 B; a worker repeatedly frees a random member and allocates a new
 * random-sized block in its place.  After each generation (SIZE/GENS operations)
 * the worker starts a successor thread that inherits the pool and exits, so
 * blocks are freed by threads other than the one that allocated them.
 *
 * usage: larson SIZE THREADS [CHUNKS] [GENS]
 *   SIZE   = replacements per lane in total
 * prints: RESULT larson ops_per_s=... elapsed_s=... check=<hash of final pool> */
#include "common.h"
#include <pthread.h>

typedef struct {
  void *p;
  uint32_t size;
  uint64_t id;
} slot_t;

typedef struct {
  int lane;
  slot_t *pool;
  long chunks;
  long ops_per_gen;
  int gens_left;
  uint64_t rng;
  uint64_t next_id;
} lane_t;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int lanes_done;

static void spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &a, fn, arg) != 0) die("pthread_create failed");
  pthread_attr_destroy(&a);
}

static void *worker(void *arg) {
  lane_t *L = (lane_t *)arg;
  slot_t *pool = L->pool;
  for (long i = 0; i < L->ops_per_gen; i++) {
    long k = (long)(rng_next(&L->rng) % (uint64_t)L->chunks);
    slot_t *s = &pool[k];
    TAG_CHECK(s->p, s->size, s->id, "larson");
    free(s->p);
    s->size = (uint32_t)rng_range(&L->rng, 8, 1000);
    s->id = L->next_id++;
    s->p = xmalloc(s->size);
    tag_fill(s->p, s->size, s->id);
  }
  if (--L->gens_left > 0) {
    spawn(worker, L); /* the successor inherits the pool; this thread exits */
  } else {
    pthread_mutex_lock(&done_mu);
    lanes_done++;
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long size = arg_long(argc, argv, 1, 2000000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  long chunks = arg_long(argc, argv, 3, 1000);
  int gens = (int)arg_long(argc, argv, 4, 20);
  lane_t *lanes = xmalloc(sizeof(lane_t) * (size_t)threads);
  /* Initial pools are allocated by the main thread (as in the original). */
  for (int t = 0; t < threads; t++) {
    lane_t *L = &lanes[t];
    memset(L, 0, sizeof *L);
    L->lane = t;
    L->chunks = chunks;
    L->ops_per_gen = size / gens > 0 ? size / gens : 1;
    L->gens_left = gens;
    L->rng = 0x1234567ull + (uint64_t)t * 7919;
    L->pool = xmalloc(sizeof(slot_t) * (size_t)chunks);
    for (long i = 0; i < chunks; i++) {
      slot_t *s = &L->pool[i];
      s->size = (uint32_t)rng_range(&L->rng, 8, 1000);
      s->id = L->next_id++;
      s->p = xmalloc(s->size);
      tag_fill(s->p, s->size, s->id);
    }
  }
  double t0 = now_s();
  for (int t = 0; t < threads; t++) spawn(worker, &lanes[t]);
  pthread_mutex_lock(&done_mu);
  while (lanes_done < threads) pthread_cond_wait(&done_cv, &done_mu);
  pthread_mutex_unlock(&done_mu);
  double el = now_s() - t0;
  uint64_t h = 0;
  for (int t = 0; t < threads; t++) {
    for (long i = 0; i < chunks; i++) {
      slot_t *s = &lanes[t].pool[i];
      TAG_CHECK(s->p, s->size, s->id, "larson final");
      h = mix_hash(h, s->size);
      free(s->p);
    }
    free(lanes[t].pool);
  }
  long total = lanes[0].ops_per_gen * (long)gens * threads;
  printf("RESULT larson ops_per_s=%.0f elapsed_s=%.4f ops=%ld threads=%d check=%016llx\n", total / el, el,
         total, threads, (unsigned long long)h);
  free(lanes);
  return 0;
}
