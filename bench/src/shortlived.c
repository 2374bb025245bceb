/* shortlived.c - a short-lived multi-threaded process, the shape of a command-line
 * tool or a build step: it starts, spawns a few threads, allocates a working set of
 * small and medium blocks, passes blocks between the threads, repeatedly frees half
 * of the working set and grows it back, and exits after a fraction of a second.  The
 * runner launches it several times per repetition and times the whole process, so
 * what an allocator costs at start-up (initialisation, first mappings, a background
 * thread), on first touch of fresh memory (page faults) and at exit counts as much
 * as its steady-state speed.
 *
 * Each of THREADS threads owns a table of WS slots.  A round:
 *   1. grow: fill every empty slot with a new block: 90% small (32 B-8 KiB, most
 *      under 512 B), 10% medium (8-128 KiB); every block is written in full once
 *      (first touch) and tagged;
 *   2. hand over: one block in 8 is pushed onto the next thread's inbox (a
 *      lock-free stack) and its slot is emptied;
 *   3. all threads meet at a barrier; each takes its inbox and adopts what arrived
 *      into its empty slots (those blocks are later freed by a thread that did not
 *      allocate them), freeing the rest at once;
 *   4. shrink: every other slot is checked and freed (half the working set dies).
 * At the end every block is checked and freed.
 *
 * usage: short-lived SIZE THREADS     SIZE = rounds; THREADS = worker threads
 * prints: RESULT short-lived elapsed_s=... ops=<allocations> check=ok */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define WS 1500

typedef struct blk {
  struct blk *next; /* link while in an inbox */
  uint64_t id;
  uint32_t size;
  uint32_t pad;
} blk_t; /* the header every block starts with; the rest is a fill pattern */

typedef struct {
  _Atomic(blk_t *) inbox;
  blk_t *slot[WS];
  uint64_t rng, next_id;
  long allocs;
} lane_t;

static lane_t *lanes;
static int nlanes;
static long rounds;
static pthread_barrier_t bar;

static unsigned char fill_of(uint64_t id) { return (unsigned char)(0x5a ^ (id * 29)); }

static size_t pick_size(uint64_t *r) {
  /* 32 B at least: the header takes 24. */
  static const size_tier_t tiers[] = {{65, 32, 512}, {90, 513, 8192}, {100, 8193, 128 * 1024}};
  return size_from_tiers(r, 100, tiers);
}

static blk_t *blk_new(lane_t *L, int t) {
  size_t n = pick_size(&L->rng);
  blk_t *b = malloc(n);
  if (b == NULL) die("short-lived: malloc(%zu) returned NULL", n);
  b->next = NULL;
  b->id = ((uint64_t)t << 40) | L->next_id++;
  b->size = (uint32_t)n;
  b->pad = 0;
  memset((unsigned char *)b + sizeof *b, fill_of(b->id), n - sizeof *b); /* first touch of every byte */
  L->allocs++;
  return b;
}

static void blk_free(blk_t *b) {
  size_t n = b->size;
  const unsigned char *p = (const unsigned char *)b;
  unsigned char f = fill_of(b->id);
  if (n < 32 || n > 128 * 1024) die("short-lived: block %p has a corrupt size %zu", (void *)b, n);
  size_t mid = n / 2 > sizeof *b ? n / 2 : sizeof *b;
  if (p[sizeof *b] != f || p[mid] != f || p[n - 1] != f)
    die("short-lived: block %p (size %zu, id %llx) corrupted", (void *)b, n, (unsigned long long)b->id);
  free(b);
}

static void push(lane_t *to, blk_t *b) {
  blk_t *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
  do b->next = head;
  while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, b, memory_order_release,
                                                memory_order_relaxed));
}

static void *worker(void *arg) {
  int t = (int)(uintptr_t)arg;
  lane_t *L = &lanes[t], *next = &lanes[(t + 1) % nlanes];
  for (long round = 0; round < rounds; round++) {
    for (int i = 0; i < WS; i++)
      if (L->slot[i] == NULL) L->slot[i] = blk_new(L, t);
    for (int i = (int)(round % 8); i < WS; i += 8) {
      push(next, L->slot[i]);
      L->slot[i] = NULL;
    }
    pthread_barrier_wait(&bar);
    blk_t *got = atomic_exchange_explicit(&L->inbox, NULL, memory_order_acquire);
    for (int i = 0; got != NULL;) {
      blk_t *b = got;
      got = b->next;
      while (i < WS && L->slot[i] != NULL) i++;
      if (i < WS) L->slot[i] = b;
      else blk_free(b);
    }
    for (int i = (int)(round & 1); i < WS; i += 2)
      if (L->slot[i] != NULL) {
        blk_free(L->slot[i]);
        L->slot[i] = NULL;
      }
    pthread_barrier_wait(&bar); /* nobody pushes into an inbox still being drained */
  }
  for (int i = 0; i < WS; i++)
    if (L->slot[i] != NULL) blk_free(L->slot[i]);
  return NULL;
}

int main(int argc, char **argv) {
  rounds = arg_long(argc, argv, 1, 40);
  nlanes = (int)arg_long(argc, argv, 2, 4);
  double t0 = now_s();
  lanes = calloc((size_t)nlanes, sizeof *lanes);
  if (lanes == NULL) die("calloc of %d lanes failed", nlanes);
  for (int t = 0; t < nlanes; t++) lanes[t].rng = 0x5107ull + (uint64_t)t * 7777;
  pthread_barrier_init(&bar, NULL, (unsigned)nlanes);
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)nlanes);
  for (int t = 0; t < nlanes; t++)
    if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t)) die("pthread_create");
  for (int t = 0; t < nlanes; t++) pthread_join(tid[t], NULL);
  long allocs = 0;
  for (int t = 0; t < nlanes; t++) {
    if (atomic_load(&lanes[t].inbox) != NULL) die("short-lived: inbox %d not drained", t);
    allocs += lanes[t].allocs;
  }
  double el = now_s() - t0;
  pthread_barrier_destroy(&bar);
  free(tid);
  free(lanes);
  printf("RESULT short-lived elapsed_s=%.4f ops=%ld threads=%d check=ok\n", el, allocs, nlanes);
  return 0;
}
