/* threads_test.c: allocation from many threads, cross-thread frees, blocks that
 * outlive the thread that allocated them, many short-lived threads.
 * Every block carries a pattern derived from its address and size, checked by the
 * thread that frees it. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../test_util.h"

#define SCALED(n) ((n) / TEST_SCALE_DIV > 0 ? (n) / TEST_SCALE_DIV : 1)

/* Random size: mostly small, some medium up to 64 KiB, rarely large. */
static size_t random_size(uint64_t *rng) {
  uint64_t r = rng_next(rng) % 1000;
  if (r < 700) return rng_range(rng, 1, 256);
  if (r < 950) return rng_range(rng, 257, 8 * KiB);
  if (r < 998) return rng_range(rng, 8 * KiB + 1, 64 * KiB);
  return rng_range(rng, 256 * KiB, 4 * MiB);
}

/* Allocate with one of the allocation functions, chosen at random; fill. */
static void *alloc_block(uint64_t *rng, size_t n) {
  void *p = NULL;
  switch (rng_next(rng) % 8) {
    case 0: {
      p = calloc(1, n);
      CHECK(p != NULL);
      CHECKF(all_bytes_are(p, n, 0), "calloc(%zu) not zeroed", n);
      break;
    }
    case 1: {
      size_t al = (size_t)16 << (rng_next(rng) % 9);
      CHECK(posix_memalign(&p, al, n) == 0);
      CHECK(((uintptr_t)p & (al - 1)) == 0);
      break;
    }
    case 2: {
      /* grow from a smaller block */
      p = malloc(n / 2 + 1);
      CHECK(p != NULL);
      p = realloc(p, n);
      break;
    }
    default: p = malloc(n); break;
  }
  CHECKF(p != NULL, "allocation of %zu failed", n);
  pattern_fill(p, n);
  return p;
}

static void free_block(void *p, size_t n) {
  CHECK_PATTERN(p, n);
  free(p);
}

/* ================= 1. producer / consumer ================= */
typedef struct {
  void *p;
  size_t n;
} item_t;

#define QCAP 4096
static struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  item_t buf[QCAP];
  size_t head, count;
  int producers_left;
} Q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0, 0}}, 0, 0, 0};

static void q_push(item_t it) {
  pthread_mutex_lock(&Q.mu);
  while (Q.count == QCAP) pthread_cond_wait(&Q.not_full, &Q.mu);
  Q.buf[(Q.head + Q.count) % QCAP] = it;
  Q.count++;
  pthread_cond_signal(&Q.not_empty);
  pthread_mutex_unlock(&Q.mu);
}

/* Returns false when every producer is done and the queue is empty. */
static bool q_pop(item_t *it) {
  pthread_mutex_lock(&Q.mu);
  while (Q.count == 0 && Q.producers_left > 0) pthread_cond_wait(&Q.not_empty, &Q.mu);
  if (Q.count == 0) {
    pthread_mutex_unlock(&Q.mu);
    return false;
  }
  *it = Q.buf[Q.head];
  Q.head = (Q.head + 1) % QCAP;
  Q.count--;
  pthread_cond_signal(&Q.not_full);
  pthread_mutex_unlock(&Q.mu);
  return true;
}

static atomic_size_t consumed;

static void *producer(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 1000003;
  size_t items = SCALED(60000);
  for (size_t i = 0; i < items; i++) {
    size_t n = random_size(&rng);
    item_t it = {alloc_block(&rng, n), n};
    q_push(it);
    /* Some local churn as well. */
    if (i % 16 == 0) {
      size_t m = random_size(&rng);
      void *t = alloc_block(&rng, m);
      free_block(t, m);
    }
  }
  pthread_mutex_lock(&Q.mu);
  Q.producers_left--;
  pthread_cond_broadcast(&Q.not_empty);
  pthread_mutex_unlock(&Q.mu);
  return NULL;
}

static void *consumer(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 7919;
  item_t it;
  size_t local = 0;
  while (q_pop(&it)) {
    /* Sometimes reallocate the received block before freeing it. */
    if (rng_next(&rng) % 8 == 0) {
      CHECK_PATTERN(it.p, it.n);
      size_t m = random_size(&rng);
      void *q = realloc(it.p, m);
      CHECK(q != NULL);
      size_t keep = m < it.n ? m : it.n;
      long bad = pattern_check_seed(q, keep, tu_seed(it.p, it.n));
      CHECKF(bad < 0, "cross-thread realloc %zu -> %zu lost data at %ld", it.n, m, bad);
      pattern_fill(q, m);
      it.p = q;
      it.n = m;
    }
    free_block(it.p, it.n);
    local++;
  }
  atomic_fetch_add(&consumed, local);
  return NULL;
}

static void test_producer_consumer(void) {
  enum { P = 3, C = 3 };
  pthread_t pt[P], ct[C];
  Q.producers_left = P;
  atomic_store(&consumed, 0);
  for (int i = 0; i < C; i++) CHECK(pthread_create(&ct[i], NULL, consumer, (void *)(uintptr_t)(i + 1)) == 0);
  for (int i = 0; i < P; i++) CHECK(pthread_create(&pt[i], NULL, producer, (void *)(uintptr_t)(i + 1)) == 0);
  for (int i = 0; i < P; i++) pthread_join(pt[i], NULL);
  for (int i = 0; i < C; i++) pthread_join(ct[i], NULL);
  CHECK(atomic_load(&consumed) == (size_t)P * SCALED(60000));
}

/* ================= 2. blocks that outlive their thread ================= */
#define ORPHANS_PER_THREAD 3000
#define ORPHAN_THREADS 8
static item_t orphans[ORPHAN_THREADS][ORPHANS_PER_THREAD];

static void *orphan_maker(void *arg) {
  uintptr_t t = (uintptr_t)arg;
  uint64_t rng = t * 31337 + 1;
  size_t n_items = SCALED(ORPHANS_PER_THREAD);
  for (size_t i = 0; i < n_items; i++) {
    size_t n = random_size(&rng);
    orphans[t][i].p = alloc_block(&rng, n);
    orphans[t][i].n = n;
    /* Free a few of our own to make partially used pages. */
    if (i % 5 == 4) {
      free_block(orphans[t][i - 2].p, orphans[t][i - 2].n);
      orphans[t][i - 2].p = NULL;
    }
  }
  return NULL; /* exits holding live blocks */
}

typedef struct {
  int first, step;
  uint64_t seed;
} reaper_arg_t;

static void *orphan_reaper(void *argp) {
  reaper_arg_t *a = argp;
  uint64_t rng = a->seed;
  size_t n_items = SCALED(ORPHANS_PER_THREAD);
  /* Allocate while freeing, so freed memory of dead threads gets reused. */
  void *mine[64] = {0};
  size_t mine_n[64] = {0};
  for (int t = a->first; t < ORPHAN_THREADS; t += a->step)
    for (size_t i = 0; i < n_items; i++) {
      if (orphans[t][i].p) {
        free_block(orphans[t][i].p, orphans[t][i].n);
        orphans[t][i].p = NULL;
      }
      int k = (int)(rng_next(&rng) % 64);
      if (mine[k]) free_block(mine[k], mine_n[k]);
      mine_n[k] = random_size(&rng);
      mine[k] = alloc_block(&rng, mine_n[k]);
    }
  for (int k = 0; k < 64; k++)
    if (mine[k]) free_block(mine[k], mine_n[k]);
  return NULL;
}

static void test_orphans(void) {
  for (int round = 0; round < 4; round++) {
    pthread_t th[ORPHAN_THREADS];
    for (int t = 0; t < ORPHAN_THREADS; t++)
      CHECK(pthread_create(&th[t], NULL, orphan_maker, (void *)(uintptr_t)t) == 0);
    for (int t = 0; t < ORPHAN_THREADS; t++) pthread_join(th[t], NULL);
    /* Half the rounds: the main thread frees; otherwise new threads do. */
    if (round % 2 == 0) {
      reaper_arg_t a = {0, 1, 99};
      orphan_reaper(&a);
    } else {
      pthread_t r[3];
      reaper_arg_t a[3];
      for (int i = 0; i < 3; i++) {
        a[i].first = i;
        a[i].step = 3;
        a[i].seed = (uint64_t)round * 10 + (uint64_t)i;
        CHECK(pthread_create(&r[i], NULL, orphan_reaper, &a[i]) == 0);
      }
      for (int i = 0; i < 3; i++) pthread_join(r[i], NULL);
    }
  }
}

/* ================= 3. many short-lived threads ================= */
#define POOL 256
static _Atomic(void *) pool[POOL];
static atomic_int threads_done;

static void *short_lived(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 2654435761u + 3;
  enum { K = 48 };
  void *b[K];
  size_t bn[K];
  for (int i = 0; i < K; i++) {
    bn[i] = (i == 0 && (uintptr_t)arg % 50 == 0) ? rng_range(&rng, 256 * KiB, 2 * MiB)
                                                   : rng_range(&rng, 1, 4 * KiB);
    b[i] = alloc_block(&rng, bn[i]);
  }
  for (int i = 0; i < K; i += 2) free_block(b[i], bn[i]);
  /* Hand a few blocks to a shared pool; take over whatever was there (allocated
   * by threads that are probably dead now). */
  for (int i = 1; i < K; i += 2) {
    if (i % 8 == 1) {
      int slot = (int)(rng_next(&rng) % POOL);
      void *old = atomic_exchange(&pool[slot], NULL);
      if (old) {
        size_t on = *(size_t *)old;
        CHECK_PATTERN((char *)old + sizeof(size_t), on);
        free(old);
      }
      void *h = malloc(sizeof(size_t) + bn[i]);
      CHECK(h != NULL);
      *(size_t *)h = bn[i];
      /* The pattern is keyed by the copy's address and size. */
      pattern_fill((char *)h + sizeof(size_t), bn[i]);
      void *prev = NULL;
      if (!atomic_compare_exchange_strong(&pool[slot], &prev, h)) {
        CHECK_PATTERN((char *)h + sizeof(size_t), bn[i]);
        free(h);
      }
    }
    free_block(b[i], bn[i]);
  }
  atomic_fetch_add(&threads_done, 1);
  return NULL;
}

static void test_short_lived(void) {
  int total = SCALED(2000), wave = 40;
  atomic_store(&threads_done, 0);
  for (int base = 0; base < total; base += wave) {
    pthread_t th[40];
    int n = total - base < wave ? total - base : wave;
    for (int i = 0; i < n; i++) {
      int rc = pthread_create(&th[i], NULL, short_lived, (void *)(uintptr_t)(base + i + 1));
      CHECKF(rc == 0, "pthread_create: %s", strerror(rc));
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  }
  CHECK(atomic_load(&threads_done) == total);
  for (int i = 0; i < POOL; i++) {
    void *h = atomic_exchange(&pool[i], NULL);
    if (h) {
      CHECK_PATTERN((char *)h + sizeof(size_t), *(size_t *)h);
      free(h);
    }
  }
}

/* ================= 4. concurrent churn, random sizes, some large ============ */
static void *churn(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 6364136223846793005ULL + 1;
  enum { SLOTS = 2000 };
  void **p = calloc(SLOTS, sizeof *p);
  size_t *n = calloc(SLOTS, sizeof *n);
  CHECK(p && n);
  size_t ops = SCALED(150000);
  for (size_t i = 0; i < ops; i++) {
    size_t k = rng_next(&rng) % SLOTS;
    if (p[k]) {
      if (rng_next(&rng) % 4 == 0) {
        size_t m = random_size(&rng);
        CHECK_PATTERN(p[k], n[k]);
        void *q = realloc(p[k], m);
        CHECK(q != NULL);
        size_t keep = m < n[k] ? m : n[k];
        CHECK(pattern_check_seed(q, keep, tu_seed(p[k], n[k])) < 0);
        pattern_fill(q, m);
        p[k] = q;
        n[k] = m;
        continue;
      }
      free_block(p[k], n[k]);
      p[k] = NULL;
    } else {
      n[k] = random_size(&rng);
      p[k] = alloc_block(&rng, n[k]);
    }
  }
  for (size_t k = 0; k < SLOTS; k++)
    if (p[k]) free_block(p[k], n[k]);
  free(p);
  free(n);
  return NULL;
}

/* Runs fn in `count` threads at once (argument 1..count) and waits for them. */
static void run_threads(void *(*fn)(void *), int count) {
  pthread_t th[16];
  CHECK(count <= 16);
  for (int i = 0; i < count; i++) CHECK(pthread_create(&th[i], NULL, fn, (void *)(uintptr_t)(i + 1)) == 0);
  for (int i = 0; i < count; i++) pthread_join(th[i], NULL);
}

static void test_churn(void) { run_threads(churn, 4); }

/* Statistics read while other threads allocate and free: the walk reads the
 * counters of pages those threads own without their locks (a snapshot, stale by
 * a moment).  Under TSan this is the case that must stay quiet; everywhere it
 * must neither crash nor hand back a total that wrapped below zero. */
static atomic_bool stats_busy_done;
static void *stats_busy_churn(void *arg) {
  churn(arg);
  return NULL;
}
static void test_stats_while_busy(void) {
  enum { T = 2 };
  pthread_t th[T];
  atomic_store(&stats_busy_done, false);
  for (int i = 0; i < T; i++) CHECK(pthread_create(&th[i], NULL, stats_busy_churn, (void *)(uintptr_t)(i + 7)) == 0);
  unsigned reads = 0;
  int fd = open("/dev/null", O_WRONLY);
  CHECK(fd >= 0);
  for (int joined = 0; joined < T;) {
    test_mallinfo2_t mi = mallinfo2();
    CHECKF(mi.uordblks < ((size_t)1 << 40) && mi.arena < ((size_t)1 << 40), "mallinfo2: in use %zu, arena %zu", mi.uordblks, mi.arena);
#if !defined(TEST_PRELOAD)
    galleon_stats_t s;
    galleon_stats_get(&s);
    CHECKF(s.in_use < ((size_t)1 << 40) && s.committed < ((size_t)1 << 40), "stats: in_use %zu, committed %zu", s.in_use, s.committed);
    if (reads % 8 == 0) galleon_dump_pages(fd);
#endif
    reads++;
    if (pthread_tryjoin_np(th[joined], NULL) == 0) joined++;
  }
  close(fd);
  CHECK(reads > 0);
}

/* Large blocks grown by realloc while other threads free large blocks into the
 * segment cache: a growing block takes resident cached pages, moved into its
 * mapping with mremap (segment_grow), while other threads take and give back
 * cached segments.  Every block keeps its contents across each growth. */
static void *large_growth(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull;
  enum { SLOTS = 6 };
  char *block[SLOTS] = {0};
  size_t size[SLOTS] = {0};
  uint64_t seed[SLOTS] = {0};
  for (int i = 0; i < SCALED(400); i++) {
    int k = (int)(rng_next(&rng) % SLOTS);
    if (block[k] == NULL) {
      size[k] = rng_range(&rng, 256 * KiB, 3 * MiB);
      seed[k] = rng_next(&rng);
      block[k] = malloc(size[k]);
      CHECK(block[k] != NULL);
      pattern_fill_seed(block[k], size[k], seed[k]);
      continue;
    }
    long bad = pattern_check_seed(block[k], size[k], seed[k]);
    CHECKF(bad < 0, "large block of %zu bytes corrupt at offset %ld", size[k], bad);
    if (size[k] < 8 * MiB && rng_next(&rng) % 2 == 0) {
      size_t grown = size[k] + rng_range(&rng, size[k] / 4, 2 * size[k]);
      char *p = realloc(block[k], grown);
      CHECK(p != NULL);
      bad = pattern_check_seed(p, size[k], seed[k]);
      CHECKF(bad < 0, "block grown from %zu to %zu bytes corrupt at offset %ld", size[k], grown, bad);
      block[k] = p;
      size[k] = grown;
      pattern_fill_seed(p, grown, seed[k]);
    } else {
      free(block[k]);
      block[k] = NULL;
    }
  }
  for (int k = 0; k < SLOTS; k++) free(block[k]);
  return NULL;
}

static void test_large_growth(void) { run_threads(large_growth, 4); }

/* Threads whose pthread key destructor allocates in every destructor round, glibc's
 * last one included (the destructor sets its value again each time), after
 * Galleon's own teardown has abandoned the thread's heap.  Every heap must still be
 * abandoned and reused: the number of heaps stays near the number of threads alive
 * at once, not the number of threads ever started. */
#define EXIT_ALLOC_THREADS 1500
static pthread_key_t exit_alloc_key;
static void exit_alloc_destructor(void *value) {
  free(value);
  void *again = malloc(200); /* a block in a fresh heap if Galleon made one */
  CHECK(again != NULL);
  memset(again, 7, 200);
  pthread_setspecific(exit_alloc_key, again); /* ignored in the last round: leaked */
}
static void *exit_alloc_thread(void *arg) {
  void *p = malloc(100);
  CHECK(p != NULL);
  pthread_setspecific(exit_alloc_key, p);
  return arg;
}
static void test_alloc_after_exit(void) {
#if defined(TEST_SANITIZE_THREAD)
  /* TSan tears its own per-thread state down in a key destructor; a mutex taken in
   * a later destructor round crashes inside TSan's interceptor. */
  return;
#endif
  CHECK(pthread_key_create(&exit_alloc_key, exit_alloc_destructor) == 0);
  for (int i = 0; i < EXIT_ALLOC_THREADS; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, exit_alloc_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
  }
#if !defined(TEST_PRELOAD)
  galleon_stats_t s;
  galleon_stats_get(&s);
  size_t heaps = s.heaps + s.heaps_abandoned;
  CHECKF(heaps < 64, "%zu heaps after %d threads that allocate during exit", heaps, EXIT_ALLOC_THREADS);
#endif
  pthread_key_delete(exit_alloc_key);
}

/* Remote frees come back through each page's remote list, which carries its
 * length (page.h): the owner takes it in one exchange, onto an empty list head
 * without a walk, or spliced behind local_free when both of its lists hold
 * blocks.  Every block must come back exactly once: the owner's next
 * allocations are distinct and overlap no live block, the pages are reused (no
 * growth over the rounds) and, all freed, in_use is back where it was. */
#define REMOTE_N 6000
typedef struct {
  void **blocks;
  size_t from;
} remote_job_t;
static void *free_odd(void *arg) {
  remote_job_t *job = arg;
  for (size_t i = job->from; i < REMOTE_N; i += 2) free(job->blocks[i]);
  return NULL;
}
static int compare_addresses(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}
static void test_remote_lists(void) {
  static void *blocks[REMOTE_N], *again[REMOTE_N];
#if !defined(TEST_PRELOAD)
  galleon_collect();
  galleon_stats_t s;
  galleon_stats_get(&s);
  size_t base_in_use = s.in_use, mapped_after_first = 0;
#endif
  for (int round = 0; round < 24; round++) {
    size_t size = 16 + (size_t)(round % 8) * 48;
    for (size_t i = 0; i < REMOTE_N; i++) {
      blocks[i] = malloc(size);
      CHECK(blocks[i] != NULL);
      memset(blocks[i], 0x5a, size);
    }
    pthread_t t;
    remote_job_t job = {blocks, 1};
    CHECK(pthread_create(&t, NULL, free_odd, &job) == 0);
    /* Meanwhile the owner frees the even blocks of the first half, takes some
     * back (its pages' lists change hands while remote frees arrive), frees
     * those and the rest of the even blocks. */
    for (size_t i = 0; i < REMOTE_N / 2; i += 2) free(blocks[i]);
    for (size_t i = 0; i < REMOTE_N / 8; i++) CHECK((again[i] = malloc(size)) != NULL);
    for (size_t i = 0; i < REMOTE_N / 8; i++) free(again[i]);
    CHECK(pthread_join(t, NULL) == 0);
    for (size_t i = REMOTE_N / 2; i < REMOTE_N; i += 2) free(blocks[i]);
    /* Both lists of some pages hold blocks when the remote ones are taken. */
    if (round % 3 == 0) galleon_collect();
    for (size_t i = 0; i < REMOTE_N; i++) {
      again[i] = malloc(size);
      CHECK(again[i] != NULL);
      memset(again[i], (int)i, size);
    }
    qsort(again, REMOTE_N, sizeof again[0], compare_addresses);
    for (size_t i = 1; i < REMOTE_N; i++)
      CHECKF((uintptr_t)again[i] - (uintptr_t)again[i - 1] >= size, "blocks %p and %p of %zu bytes overlap",
             again[i - 1], again[i], size);
    for (size_t i = 0; i < REMOTE_N; i++) free(again[i]);
#if !defined(TEST_PRELOAD)
    galleon_stats_get(&s);
    if (round == 7) mapped_after_first = s.mapped; /* every size seen once */
    if (round > 7)
      CHECKF(s.mapped <= mapped_after_first, "mapped grew from %zu to %zu in round %d", mapped_after_first,
             s.mapped, round);
#endif
  }
#if !defined(TEST_PRELOAD)
  galleon_collect();
  galleon_stats_get(&s);
  CHECKF(s.in_use <= base_in_use + 64 * KiB, "in_use %zu after all blocks were freed (was %zu)", s.in_use,
         base_in_use);
#endif
}

/* ================= 8. large blocks handed between threads =================
 * Producers allocate blocks of 64 KiB - 1 MiB and hand them to consumers, which
 * free them: the segment cache's lock-free front (segment.c) passes segments
 * between the two sides with one compare-and-swap each.  The first and last 256
 * bytes of each block carry a pattern of its address and size, checked before the
 * free: a segment handed to two owners at once shows as a pattern overwritten. */
#define HANDOFF_SLOTS 64
#define HANDOFF_EDGE 256
static _Atomic(void *) handoff_slots[HANDOFF_SLOTS];
static _Atomic(size_t) handoff_consumed;

static size_t handoff_size(const void *p) {
  size_t n;
  memcpy(&n, (const char *)p + HANDOFF_EDGE, sizeof n);
  return n;
}

static void *handoff_producer(void *arg) {
  uint64_t rng = (uintptr_t)arg * 7919 + 3;
  for (size_t i = 0; i < SCALED(6000); i++) {
    size_t n = rng_range(&rng, 64 * KiB, 1088 * KiB);
    char *p = malloc(n);
    CHECK(p != NULL);
    pattern_fill_seed(p, HANDOFF_EDGE, tu_seed(p, n));
    memcpy(p + HANDOFF_EDGE, &n, sizeof n);
    pattern_fill_seed(p + n - HANDOFF_EDGE, HANDOFF_EDGE, tu_seed(p, n) + 1);
    for (unsigned k = (unsigned)(rng_next(&rng) % HANDOFF_SLOTS);; k = (k + 1) % HANDOFF_SLOTS) {
      void *empty = NULL;
      if (atomic_compare_exchange_strong(&handoff_slots[k], &empty, p)) break;
      if (k == 0) sched_yield();
    }
  }
  return NULL;
}

static void *handoff_consumer(void *arg) {
  size_t total = (size_t)(uintptr_t)arg;
  while (atomic_load(&handoff_consumed) < total) {
    bool got = false;
    for (unsigned k = 0; k < HANDOFF_SLOTS; k++) {
      char *p = atomic_exchange(&handoff_slots[k], NULL);
      if (p == NULL) continue;
      size_t n = handoff_size(p);
      CHECKF(n >= 64 * KiB && n <= 1088 * KiB, "handed-off block %p: size word %zu overwritten", (void *)p, n);
      CHECKF(pattern_check_seed(p, HANDOFF_EDGE, tu_seed(p, n)) < 0 &&
                 pattern_check_seed(p + n - HANDOFF_EDGE, HANDOFF_EDGE, tu_seed(p, n) + 1) < 0,
             "handed-off block %p (%zu bytes) overwritten", (void *)p, n);
      free(p);
      atomic_fetch_add(&handoff_consumed, 1);
      got = true;
    }
    if (!got) sched_yield();
  }
  return NULL;
}

static void test_large_handoff(void) {
  enum { P = 2, C = 2 };
  size_t total = (size_t)P * SCALED(6000);
  atomic_store(&handoff_consumed, 0);
  pthread_t pt[P], ct[C];
  for (int i = 0; i < C; i++)
    CHECK(pthread_create(&ct[i], NULL, handoff_consumer, (void *)(uintptr_t)total) == 0);
  for (int i = 0; i < P; i++) CHECK(pthread_create(&pt[i], NULL, handoff_producer, (void *)(uintptr_t)(i + 1)) == 0);
  for (int i = 0; i < P; i++) pthread_join(pt[i], NULL);
  for (int i = 0; i < C; i++) pthread_join(ct[i], NULL);
  CHECK(atomic_load(&handoff_consumed) == total);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"producer_consumer", test_producer_consumer},
               {"orphans", test_orphans},
               {"short_lived", test_short_lived},
               {"churn", test_churn},
               {"stats_while_busy", test_stats_while_busy},
               {"remote_lists", test_remote_lists},
               {"large_growth", test_large_growth},
               {"alloc_after_exit", test_alloc_after_exit},
               {"large_handoff", test_large_handoff}};
  double t_all = now_s();
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    double t0 = now_s();
    tests[i].fn();
    printf("threads/%s: ok (%.2f s)\n", tests[i].name, now_s() - t0);
    fflush(stdout);
  }
#if !defined(TEST_PRELOAD)
  galleon_collect();
  galleon_stats_t s;
  galleon_stats_get(&s);
  printf("after collect: in_use %zu, mapped %zu, committed %zu, heaps %zu, abandoned %zu\n",
         s.in_use, s.mapped, s.committed, s.heaps, s.heaps_abandoned);
  /* Everything the tests allocated was freed: what is left in use is small. */
  CHECKF(s.in_use < 16 * MiB, "in_use %zu after all blocks were freed", s.in_use);
#endif
  printf("threads tests passed in %.2f s\n", now_s() - t_all);
  return 0;
}
