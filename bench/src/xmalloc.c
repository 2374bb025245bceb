/* xmalloc.c - producer/consumer test after xmalloc-test (Lever & Boreham,
 * "malloc() performance in a multithreaded Linux environment", USENIX 2000), as
 * in mimalloc-bench.  Half of the threads (at least one) only allocate: they fill
 * batches of 64 blocks of random size 16..512 B and push each batch onto a shared
 * bounded queue.  The other threads only free: they pop batches, check every
 * block and free it.  Every block is thus freed by a thread that did not allocate
 * it - the pattern that defeats allocators without cheap remote frees.
 *
 * usage: xmalloc SIZE THREADS      SIZE = total blocks produced
 * prints: RESULT xmalloc ops_per_s=... elapsed_s=... check=<hash> */
#include "common.h"
#include <pthread.h>

#define BATCH 64
#define QCAP 256

typedef struct {
  void *p[BATCH];
  uint32_t size[BATCH];
  uint64_t id[BATCH];
} batch_t;

static batch_t *queue[QCAP];
static int qhead, qlen, producers_left;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;
static long batches_per_producer;
static uint64_t total_hash;
static long total_freed;

static void *producer(void *arg) {
  uint64_t rng = 0xabcdefull + (uint64_t)(uintptr_t)arg * 1000003;
  uint64_t id = (uint64_t)(uintptr_t)arg << 40;
  for (long b = 0; b < batches_per_producer; b++) {
    batch_t *bt = xmalloc(sizeof *bt);
    for (int i = 0; i < BATCH; i++) {
      bt->size[i] = (uint32_t)rng_range(&rng, 16, 512);
      bt->id[i] = id++;
      bt->p[i] = xmalloc(bt->size[i]);
      tag_fill(bt->p[i], bt->size[i], bt->id[i]);
    }
    pthread_mutex_lock(&mu);
    while (qlen == QCAP) pthread_cond_wait(&not_full, &mu);
    queue[(qhead + qlen) % QCAP] = bt;
    qlen++;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_lock(&mu);
  producers_left--;
  pthread_cond_broadcast(&not_empty);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  uint64_t h = 0;
  long n = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (qlen == 0 && producers_left > 0) pthread_cond_wait(&not_empty, &mu);
    if (qlen == 0) { pthread_mutex_unlock(&mu); break; }
    batch_t *bt = queue[qhead];
    qhead = (qhead + 1) % QCAP;
    qlen--;
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < BATCH; i++) {
      TAG_CHECK(bt->p[i], bt->size[i], bt->id[i], "xmalloc consumer");
      h += bt->size[i] ^ bt->id[i]; /* order-independent sum */
      free(bt->p[i]);
      n++;
    }
    free(bt);
  }
  pthread_mutex_lock(&mu);
  total_hash += h;
  total_freed += n;
  pthread_mutex_unlock(&mu);
  return NULL;
}

int main(int argc, char **argv) {
  long size = arg_long(argc, argv, 1, 4000000);
  int threads = (int)arg_long(argc, argv, 2, 2);
  int np = threads / 2 > 0 ? threads / 2 : 1;
  int nc = threads - np > 0 ? threads - np : 1;
  batches_per_producer = size / BATCH / np > 0 ? size / BATCH / np : 1;
  producers_left = np;
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)(np + nc));
  double t0 = now_s();
  for (int i = 0; i < np; i++)
    if (pthread_create(&tid[i], NULL, producer, (void *)(uintptr_t)(i + 1))) die("pthread_create");
  for (int i = 0; i < nc; i++)
    if (pthread_create(&tid[np + i], NULL, consumer, NULL)) die("pthread_create");
  for (int i = 0; i < np + nc; i++) pthread_join(tid[i], NULL);
  double el = now_s() - t0;
  long expect = batches_per_producer * BATCH * np;
  if (total_freed != expect) die("xmalloc: freed %ld blocks, produced %ld", total_freed, expect);
  printf("RESULT xmalloc ops_per_s=%.0f elapsed_s=%.4f ops=%ld threads=%d check=%016llx\n", expect / el, el,
         expect, np + nc, (unsigned long long)total_hash);
  free(tid);
  return 0;
}
