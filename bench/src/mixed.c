/* mixed.c - blocks of mixed sizes replaced at random by threads that pass some of
 * them on: the shape of rpmalloc's own benchmark.  Each of THREADS threads keeps
 * SLOTS live blocks.  A round replaces every slot once, in order, by a block of a
 * new random size -- 80% 16-256 B, 18% 256 B-8 KiB, 2% 8-128 KiB -- tagged at its
 * start, middle and end (the rest is never touched, as in a program that
 * allocates buffers bigger than what it writes); then the thread moves BATCH of
 * its blocks into the next thread's inbox and frees, after checking them, the
 * blocks the previous thread left in its own (at most two batches wait there).
 * So the working set turns over in
 * every size at once, a few blocks at a time are freed far from where they were
 * allocated, and the order of reuse across size classes decides what is warm in
 * cache.
 *
 * usage: mixed SIZE THREADS     SIZE = rounds per thread
 * prints: RESULT mixed elapsed_s=... ops=<allocations> check=ok */
#include "common.h"
#include <pthread.h>

#define SLOTS 2000
#define BATCH 128
#define INBOX (2 * BATCH)

typedef struct {
  void *p;
  uint32_t size;
  uint64_t id;
} item_t;

typedef struct {
  pthread_mutex_t lock;
  item_t items[INBOX];
  int count;
} inbox_t;

static inbox_t *inboxes;
static int nthreads;
static long rounds;

static size_t pick_size(uint64_t *r) {
  static const size_tier_t tiers[] = {{800, 16, 256}, {980, 257, 8192}, {1000, 8193, 128 * 1024}};
  return size_from_tiers(r, 1000, tiers);
}

static void *worker(void *arg) {
  int t = (int)(uintptr_t)arg;
  uint64_t r = 0x51ed27ull + (uint64_t)t * 0x9E3779B97F4A7C15ull, next_id = (uint64_t)t << 48;
  item_t *slot = xmalloc(sizeof(item_t) * SLOTS);
  item_t *taken = xmalloc(sizeof(item_t) * INBOX);
  memset(slot, 0, sizeof(item_t) * SLOTS);
  inbox_t *next = &inboxes[(t + 1) % nthreads], *mine = &inboxes[t];
  for (long round = 0; round < rounds; round++) {
    for (int i = 0; i < SLOTS; i++) {
      item_t *s = &slot[i];
      if (s->p != NULL) {
        TAG_CHECK(s->p, s->size, s->id, "mixed");
        free(s->p);
      }
      s->size = (uint32_t)pick_size(&r);
      s->id = next_id++;
      s->p = xmalloc(s->size);
      tag_fill(s->p, s->size, s->id);
    }
    /* Pass on BATCH slots spread over the table (a different set every round),
     * unless the neighbour has not yet taken the last two batches: a thread that
     * runs ahead would otherwise pile up blocks in a slower one's inbox, and the
     * peak memory would measure the scheduler. */
    pthread_mutex_lock(&next->lock);
    for (int i = 0; i < BATCH && next->count < 2 * BATCH; i++) {
      item_t *s = &slot[(round * 131 + i * 15) % SLOTS];
      if (s->p == NULL) continue;
      next->items[next->count++] = *s;
      s->p = NULL;
    }
    pthread_mutex_unlock(&next->lock);
    pthread_mutex_lock(&mine->lock);
    int n = mine->count;
    memcpy(taken, mine->items, sizeof(item_t) * (size_t)n);
    mine->count = 0;
    pthread_mutex_unlock(&mine->lock);
    for (int i = 0; i < n; i++) {
      TAG_CHECK(taken[i].p, taken[i].size, taken[i].id, "mixed (passed on)");
      free(taken[i].p);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].p != NULL) {
      TAG_CHECK(slot[i].p, slot[i].size, slot[i].id, "mixed (final)");
      free(slot[i].p);
    }
  free(slot);
  free(taken);
  return NULL;
}

int main(int argc, char **argv) {
  rounds = arg_long(argc, argv, 1, 1000);
  nthreads = (int)arg_long(argc, argv, 2, 2);
  inboxes = xmalloc(sizeof(inbox_t) * (size_t)nthreads);
  for (int t = 0; t < nthreads; t++) {
    pthread_mutex_init(&inboxes[t].lock, NULL);
    inboxes[t].count = 0;
  }
  double el = run_threads(worker, nthreads);
  /* What the last rounds passed on and nobody took. */
  for (int t = 0; t < nthreads; t++)
    for (int i = 0; i < inboxes[t].count; i++) {
      TAG_CHECK(inboxes[t].items[i].p, inboxes[t].items[i].size, inboxes[t].items[i].id, "mixed (left)");
      free(inboxes[t].items[i].p);
    }
  free(inboxes);
  printf("RESULT mixed elapsed_s=%.4f ops=%ld threads=%d check=ok\n", el, rounds * SLOTS * (long)nthreads, nthreads);
  return 0;
}
