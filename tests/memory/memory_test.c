/* memory_test.c: freed memory goes back to the OS, and a block just freed is
 * the next one reused (warm reuse).
 * RSS is read from /proc/self/statm without allocating.  Pointer arrays live in
 * mmap'd memory of their own so that the test's bookkeeping is not part of what
 * the allocator is asked to return. */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "../test_util.h"

static void *map(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
  return p;
}

static double mib(size_t n) { return (double)n / (double)MiB; }

/* Waits, without allocating, until the RSS is at most `limit` or `max_ms` passed;
 * returns the last RSS read.  Freed memory is returned once the program has been
 * idle for purge_idle_ms (plus the purger's tick): a bound, not a fixed moment. */
static size_t rss_wait_below(size_t limit, long max_ms) {
  size_t rss = rss_bytes();
  for (long waited = 0; rss > limit && waited < max_ms; waited += 20) {
    sleep_ms(20);
    rss = rss_bytes();
  }
  return rss;
}

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}
static double mibd(long n) { return (double)n / (double)MiB; }

static void print_stats(const char *when) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  printf("  [%s] stats: mapped %.1f MiB, committed %.1f MiB, in_use %.1f MiB, purges %zu, "
         "purged %.1f MiB\n",
         when, mib(s.mapped), mib(s.committed), mib(s.in_use), s.purges, mib(s.purged_bytes));
}

/* 1. ~300 MiB in small blocks plus some medium ones; free; RSS must drop. */
static void test_small_blocks_returned(void) {
  const size_t target = 300 * MiB;
  const size_t max_blocks = 1200000;
  void **ptrs = map(max_blocks * sizeof(void *));
  uint64_t rng = 12345;

  size_t base = rss_bytes();
  size_t total = 0, nb = 0;
  while (total < target && nb < max_blocks) {
    size_t n = (nb % 200 == 199) ? rng_range(&rng, 16 * KiB, 128 * KiB) : rng_range(&rng, 16, 1024);
    char *p = malloc(n);
    CHECK(p != NULL);
    memset(p, (int)(nb & 0xff) | 1, n); /* touch every byte */
    ptrs[nb++] = p;
    total += n;
  }
  size_t peak = rss_bytes();
  printf("small blocks: %zu blocks, %.1f MiB requested; RSS baseline %.1f MiB, peak %.1f MiB\n",
         nb, mib(total), mib(base), mib(peak));
  CHECKF(peak >= base + total * 8 / 10, "RSS did not grow with the allocations (%.1f -> %.1f MiB)",
         mib(base), mib(peak));
  /* Spot-check contents, then free everything (in a shuffled-ish order). */
  for (size_t i = 0; i < nb; i += 997) {
    unsigned char *p = ptrs[i];
    CHECK(p[0] == (unsigned char)((i & 0xff) | 1));
  }
  for (size_t i = 0; i < nb; i += 2) free(ptrs[i]);
  for (size_t i = 1; i < nb; i += 2) free(ptrs[i]);
  munmap(ptrs, max_blocks * sizeof(void *));

  /* No allocation from here on until the RSS has been read. */
  double t_free = now_s();
  size_t after_free = rss_wait_below(base + total * 3 / 10, 3000);
  long kept = (long)after_free - (long)base;
  printf("  after free, idle %.0f ms: RSS %.1f MiB (%.1f MiB above baseline)\n", (now_s() - t_free) * 1000,
         mib(after_free), mibd(kept));
  print_stats("after free");
  CHECKF(kept < (long)(total * 3 / 10),
         "RSS still %.1f MiB above baseline after freeing %.1f MiB (limit 30%%)", mibd(kept),
         mib(total));

  int rc = malloc_trim(0);
  CHECK(rc == 0 || rc == 1);
  size_t after_trim = rss_bytes();
  long kept2 = (long)after_trim - (long)base;
  printf("  after malloc_trim(0): RSS %.1f MiB (%.1f MiB above baseline)\n", mib(after_trim),
         mibd(kept2));
  print_stats("after trim");
  CHECKF(after_trim <= after_free + 1 * MiB, "malloc_trim raised RSS: %.1f -> %.1f MiB",
         mib(after_free), mib(after_trim));
  CHECKF(kept2 < (long)(16 * MiB), "RSS %.1f MiB above baseline after malloc_trim(0)", mibd(kept2));
}

/* 2. Large blocks are returned when freed. */
static void test_large_returned(void) {
  const size_t n = 64 * MiB;
  for (int round = 0; round < 3; round++) {
    size_t r0 = rss_bytes();
    char *p = malloc(n);
    CHECK(p != NULL);
    memset(p, 0x77, n);
    size_t r1 = rss_bytes();
    CHECKF(r1 >= r0 + n - 4 * MiB, "RSS did not grow by 64 MiB (%.1f -> %.1f)", mib(r0), mib(r1));
    CHECK(p[n - 1] == 0x77);
    free(p);
    /* rss_wait_below stops at the bound itself: the check allows it too (two CI
     * runs stopped at exactly 8.0 MiB above the start, and the strict check failed
     * there without waiting). */
    size_t r2 = rss_wait_below(r0 + 8 * MiB, 3000);
    printf("large 64 MiB, round %d: RSS %.1f -> %.1f -> %.1f MiB\n", round, mib(r0), mib(r1),
           mib(r2));
    CHECKF(r2 <= r0 + 8 * MiB, "freed 64 MiB block still resident (%.1f MiB above start)",
           mibd((long)r2 - (long)r0));
  }
  /* Several at once, freed in another order.  Galleon may park freed segments,
   * still resident, in its segment cache up to a budget derived from retain_bytes
   * (8 x retain_bytes) until its next call after purge_delay_ms; malloc_trim(0)
   * must return them. */
  size_t retain = (size_t)galleon_option_get("retain_bytes");
  size_t r0 = rss_bytes();
  char *b[4];
  for (int i = 0; i < 4; i++) {
    b[i] = malloc(16 * MiB + (size_t)i * 4096);
    CHECK(b[i] != NULL);
    memset(b[i], i + 1, 16 * MiB);
  }
  free(b[2]);
  free(b[0]);
  free(b[3]);
  free(b[1]);
  size_t r1 = rss_wait_below(r0 + 8 * retain + 8 * MiB, 3000);
  printf("4 x 16 MiB freed: RSS %.1f -> %.1f MiB (retain_bytes %.1f MiB)\n", mib(r0), mib(r1),
         mib(retain));
  CHECKF(r1 < r0 + 8 * retain + 8 * MiB,
         "freed 4 x 16 MiB still resident (%.1f MiB above start, retain_bytes %.1f MiB)",
         mibd((long)r1 - (long)r0), mib(retain));
  int rc = malloc_trim(0);
  CHECK(rc == 0 || rc == 1);
  size_t r2 = rss_bytes();
  printf("  after malloc_trim(0): RSS %.1f MiB\n", mib(r2));
  CHECKF(r2 < r0 + 4 * MiB, "after malloc_trim(0) %.1f MiB of freed large blocks still resident",
         mibd((long)r2 - (long)r0));
}

/* 2a. malloc_trim(pad) keeps `pad` bytes of a big cached segment resident and
 * returns the rest: the cache purges the head of an entry when purging it whole
 * would return far more than asked (a purge that asked for half of a freed table
 * took all of it, and the table growing over it faulted its pages back). */
static void test_trim_keeps_pad(void) {
  const size_t size = 16 * MiB, pad = 6 * MiB;
  malloc_trim(0);
  char *p = malloc(size);
  CHECK(p != NULL);
  memset(p, 5, size);
  free(p); /* cached, resident */
  size_t r0 = rss_bytes();
  malloc_trim(pad);
  size_t r1 = rss_bytes();
  printf("malloc_trim(%zu MiB) with a %zu MiB block cached: RSS %.1f -> %.1f MiB\n", pad / MiB, size / MiB, mib(r0),
         mib(r1));
  CHECKF(r1 + 8 * MiB <= r0, "malloc_trim(%zu MiB) returned only %.1f MiB of %zu MiB cached", pad / MiB,
         mib(r0 - r1), size / MiB);
  CHECKF(r1 + 12 * MiB >= r0, "malloc_trim(%zu MiB) returned %.1f MiB of %zu MiB cached: the pad went too",
         pad / MiB, mib(r0 - r1), size / MiB);
  malloc_trim(0);
  size_t r2 = rss_bytes();
  CHECKF(r2 + 4 * MiB <= r1, "malloc_trim(0) left the kept %.1f MiB resident", mib(r1 - r2));
}

/* 2b. Many large blocks freed at once: beyond the segment cache's resident
 * entries (segment_cache) the segments are purged but stay mapped in the cache,
 * so the RSS drops at once while a new block of the same size takes one without
 * an mmap; malloc_trim(0) unmaps them all. */
static void test_large_purged_cached(void) {
  enum { N = 200 };
  const size_t size = 200 * KiB;
  if (galleon_option_get("segment_cache") <= 0) {
    printf("large blocks purged in the cache: GALLEON_SEGMENT_CACHE=0, skipped\n");
    return;
  }
  void **blocks = map(N * sizeof(void *));
  malloc_trim(0);
  galleon_stats_t s0, s1, s2, s3;
  size_t r0 = rss_bytes();
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(size);
    CHECK(blocks[i] != NULL);
    memset(blocks[i], i + 1, size);
  }
  size_t r1 = rss_bytes();
  galleon_stats_get(&s0);
  for (int i = 0; i < N; i++) free(blocks[i]);
  size_t r2 = rss_bytes(); /* no wait: purged by the frees themselves */
  galleon_stats_get(&s1);
  long cap = galleon_option_get("segment_cache");
  printf("%d x %zu KiB freed: RSS %.1f -> %.1f -> %.1f MiB, %zu segments cached, %zu munmaps\n", N,
         size / KiB, mib(r0), mib(r1), mib(r2), s1.segments_cached, s1.munmap_calls - s0.munmap_calls);
  /* At most `cap` of them resident, plus their neighbours' rounding. */
  CHECKF(r2 < r0 + (size_t)cap * (size + 8 * KiB) + 4 * MiB, "freed %d large blocks: RSS %.1f -> %.1f MiB", N,
         mib(r0), mib(r2));
  CHECKF(s1.segments_cached >= (size_t)N * 9 / 10, "only %zu of %d freed segments cached", s1.segments_cached, N);
  CHECKF(s1.munmap_calls - s0.munmap_calls < (size_t)N / 10, "%zu munmaps for %d freed large blocks",
         s1.munmap_calls - s0.munmap_calls, N);
  /* Allocated again: from the cache, no mmap. */
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(size);
    CHECK(blocks[i] != NULL);
    memset(blocks[i], i + 2, size);
  }
  galleon_stats_get(&s2);
  CHECKF(s2.mmap_calls - s1.mmap_calls < (size_t)N / 10, "%zu mmaps for %d blocks the cache held",
         s2.mmap_calls - s1.mmap_calls, N);
  for (int i = 0; i < N; i++) {
    CHECK(((unsigned char *)blocks[i])[size - 1] == (unsigned char)(i + 2));
    free(blocks[i]);
  }
  malloc_trim(0);
  galleon_stats_get(&s3);
  size_t r3 = rss_bytes();
  printf("  after malloc_trim(0): RSS %.1f MiB, %zu segments cached, mapped %.1f MiB\n", mib(r3),
         s3.segments_cached, mib(s3.mapped));
  CHECKF(s3.segments_cached == 0, "malloc_trim(0) left %zu segments cached", s3.segments_cached);
  CHECKF(s3.munmap_calls - s2.munmap_calls >= (size_t)N * 9 / 10, "malloc_trim(0) unmapped only %zu segments",
         s3.munmap_calls - s2.munmap_calls);
  munmap(blocks, N * sizeof(void *));
}

/* 3. calloc of fresh memory does not touch it. */
static void test_calloc_lazy(void) {
  const size_t n = 256 * MiB;
  size_t r0 = rss_bytes();
  unsigned char *p = calloc(1, n);
  CHECK(p != NULL);
  size_t r1 = rss_bytes();
  printf("calloc(256 MiB): RSS %.1f -> %.1f MiB\n", mib(r0), mib(r1));
  CHECKF(r1 < r0 + 16 * MiB, "calloc(256 MiB) raised RSS by %.1f MiB before any access",
         mibd((long)r1 - (long)r0));
  /* It is zero, and touching it does raise RSS (the measurement works). */
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < n; i += ps) CHECK(p[i] == 0);
  CHECK(p[n - 1] == 0);
  for (size_t i = 0; i < n; i += ps) p[i] = 1;
  size_t r2 = rss_bytes();
  CHECKF(r2 >= r1 + n * 9 / 10, "touching 256 MiB raised RSS only %.1f -> %.1f MiB", mib(r1),
         mib(r2));
  free(p);

  /* The same with a calloc that reuses the freed block's address range, or not:
   * the contents must be zero either way. */
  p = calloc(n / 4096, 4096);
  CHECK(p != NULL);
  for (size_t i = 0; i < n; i += ps) CHECKF(p[i] == 0, "calloc memory not zero at %zu", i);
  free(p);
}

/* 4. A big calloc in a reused segment touches only what was resident: a program
 * that callocs a big buffer, uses a little of it and frees it, again and again,
 * does not pay for the whole buffer each time (it did: every page written with
 * zeros, 16,000 page faults a round of 64 MiB).  The block is zero everywhere,
 * the pages the last round wrote included; and one the program fills whole keeps
 * its pages resident from round to round. */
static void test_calloc_reused(void) {
  const size_t n = 64 * MiB, ps = (size_t)sysconf(_SC_PAGESIZE);
  const int rounds = 20;
  long faults = 0;
  malloc_trim(0); /* no resident segment cached from the tests before */
  for (int round = 0; round < rounds; round++) {
    long f0 = minor_faults();
    unsigned char *p = calloc(1, n);
    CHECK(p != NULL);
    /* The first 64 KiB and one page in every MiB: resident runs and runs emptied. */
    for (size_t i = 0; i < 64 * KiB; i++) CHECKF(p[i] == 0, "round %d: calloc memory not zero at %zu", round, i);
    for (size_t i = 64 * KiB; i < n; i += MiB) CHECKF(p[i + 8] == 0, "round %d: calloc memory not zero at %zu", round, i + 8);
    CHECK(p[n - 1] == 0);
    memset(p, 'S', 64 * KiB);
    for (size_t i = 64 * KiB; i < n; i += MiB) p[i + 8] = 'S';
    p[n - 1] = 'S';
    free(p);
    faults += minor_faults() - f0;
  }
  printf("calloc(64 MiB), 64 KiB and 64 pages used, freed, %d rounds: %ld page faults\n", rounds, faults);
  CHECKF(faults < (long)(n / ps / 4), "%d rounds of a calloc'd 64 MiB block faulted %ld pages", rounds, faults);
  faults = 0;
  for (int round = 0; round < 4; round++) {
    long f0 = minor_faults();
    unsigned char *p = calloc(1, 24 * MiB);
    CHECK(p != NULL);
    for (size_t i = 0; i < 24 * MiB; i += ps) CHECKF(p[i] == 0, "calloc memory not zero at %zu", i);
    memset(p, 'F', 24 * MiB);
    free(p);
    if (round > 0) faults += minor_faults() - f0;
  }
  printf("calloc(24 MiB), filled, freed: %ld page faults a round\n", faults / 3);
  CHECKF(faults / 3 < (long)(24 * MiB / ps / 10), "a calloc'd block filled whole faulted %ld pages a round", faults / 3);
}

/* 4b. In a process with several threads, large blocks of varied sizes under 4 MiB,
 * freed and allocated in turn, reuse cached segments as they are: no mremap to
 * shrink, grow or assemble one for each block (each remap of a shrink or move
 * interrupts every CPU running the process to flush its TLB).  A producer thread
 * handing blocks of 64 KiB - 1 MiB to a consumer made 1.3 remaps a block and ran
 * 10x slower than tcmalloc. */
static size_t galleon_stats_heaps(void) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  return s.heaps;
}

static void *second_heap_thread(void *arg) {
  free(malloc(64)); /* a heap of its own, alive until the test is done */
  char byte;
  CHECK(read(*(int *)arg, &byte, 1) == 1);
  return NULL;
}

/* A second thread heap, alive from second_heap_start to second_heap_stop: large
 * blocks then take cached segments as they are. */
typedef struct {
  int done[2];
  pthread_t thread;
} second_heap_t;

static void second_heap_start(second_heap_t *h) {
  CHECK(pipe(h->done) == 0);
  CHECK(pthread_create(&h->thread, NULL, second_heap_thread, &h->done[0]) == 0);
  while (galleon_stats_heaps() < 2) usleep(1000);
}

static void second_heap_stop(second_heap_t *h) {
  CHECK(write(h->done[1], "x", 1) == 1);
  CHECK(pthread_join(h->thread, NULL) == 0);
  close(h->done[0]);
  close(h->done[1]);
}

static void test_large_varied_reuse(void) {
  enum { LIVE = 64, STEPS = 4000 };
  second_heap_t second;
  second_heap_start(&second);
  void **blocks = map(LIVE * sizeof(void *));
  uint64_t rng = 12345;
  for (int i = 0; i < LIVE; i++) blocks[i] = NULL;
  galleon_stats_t s0, s1;
  galleon_stats_get(&s0);
  for (int step = 0; step < STEPS; step++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t k = (size_t)(rng >> 33) % LIVE, size = 160 * KiB + (size_t)(rng >> 40) % (900 * KiB);
    free(blocks[k]);
    blocks[k] = malloc(size);
    CHECK(blocks[k] != NULL);
    ((char *)blocks[k])[0] = 1;
    ((char *)blocks[k])[size - 1] = 1;
  }
  galleon_stats_get(&s1);
  for (int i = 0; i < LIVE; i++) free(blocks[i]);
  size_t remaps = s1.mremap_calls - s0.mremap_calls, maps = s1.mmap_calls - s0.mmap_calls;
  printf("%d large blocks of 160 KiB - 1 MiB replaced: %zu mremap, %zu mmap\n", STEPS, remaps, maps);
  CHECKF(remaps < STEPS / 100, "%zu mremap calls for %d large blocks", remaps, STEPS);
  CHECKF(maps < STEPS / 4, "%zu mmap calls for %d large blocks", maps, STEPS);
  munmap(blocks, LIVE * sizeof(void *));
  second_heap_stop(&second);
}

/* 4b1. Large blocks resized at random keep what they hold and never keep far more
 * memory than they ask for: after any realloc, usable <= 2 x size + 2 MiB.  A
 * block sits at the end of its mapping, so a shrink that cut the tail at a whole
 * 2 MiB unit could leave several MiB to a block of a few hundred KiB (found by
 * the fuzzer: 3.5 MiB usable for 0.7 MiB). */
static void large_realloc_round(uint64_t rng, bool spread) {
  enum { LIVE = 12, STEPS = 20000 };
  void *blocks[LIVE] = {0};
  size_t sizes[LIVE] = {0};
  for (int step = 0; step < STEPS; step++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t k = (size_t)(rng >> 33) % LIVE;
    /* 4 KiB - 4 MiB evenly, or 130 KiB - 8 MiB skewed toward the small end */
    size_t size = spread ? 4 * KiB + (size_t)(rng >> 40) % (4 * MiB)
                         : 130 * KiB + ((size_t)(rng >> 40) % (8 * MiB)) / (1 + (size_t)(rng >> 20) % 4);
    if ((rng >> 61) == 0) {
      free(blocks[k]);
      blocks[k] = NULL;
      continue;
    }
    uint8_t *p = blocks[k] == NULL ? malloc(size) : realloc(blocks[k], size);
    CHECK(p != NULL);
    if (blocks[k] != NULL)
      CHECKF(p[0] == (uint8_t)k && (size < sizes[k] || p[sizes[k] - 1] == (uint8_t)(sizes[k] >> 12)),
             "realloc of slot %zu lost its data", k);
    size_t usable = malloc_usable_size(p);
    CHECKF(usable >= size && usable <= 2 * size + 2 * MiB, "step %d: %s of %zu bytes to %zu: usable %zu", step,
           blocks[k] ? "realloc" : "malloc", sizes[k], size, usable);
    p[0] = (uint8_t)k;
    p[size - 1] = (uint8_t)(size >> 12);
    blocks[k] = p;
    sizes[k] = size;
  }
  for (int i = 0; i < LIVE; i++) free(blocks[i]);
}

static void test_large_realloc_bounded(void) {
  large_realloc_round(3, false);
  large_realloc_round(2, true);
  printf("large mallocs, reallocs and frees: usable sizes within 2 x size + 2 MiB\n");
}

/* 4b2. Blocks under a segment's size cycle through the segment cache.  With a
 * second heap alive (cached segments are taken as they are):
 *   - more of them than segment_cache (32) stay resident while the program asks
 *     for as many: taken back, they do not fault again (purging the oldest at 32
 *     made a thread handing such blocks to another refault them: 4x the faults);
 *   - purged, they are taken back from the cache, not mapped anew.
 * Each round allocates the blocks, largest first (so each finds its own
 * segment), touches their first and last bytes and frees them.  The window that
 * counts the blocks the cache served is 10 ms: of three tries, the one with the
 * fewest faults counts, so a round preempted on a loaded machine does not fail
 * the test. */
enum { CACHED_MANY = 64 };

static long cached_many_round(void **blocks, const size_t *sizes) {
  long f0 = minor_faults();
  for (int i = CACHED_MANY; i-- > 0;) {
    blocks[i] = malloc(sizes[i]);
    CHECK(blocks[i] != NULL);
    ((char *)blocks[i])[0] = 1;
    ((char *)blocks[i])[sizes[i] - 1] = 1;
  }
  for (int i = 0; i < CACHED_MANY; i++) free(blocks[i]);
  return minor_faults() - f0;
}

static void test_large_cached_many(void) {
  second_heap_t second;
  second_heap_start(&second);
  void **blocks = map(CACHED_MANY * sizeof(void *));
  size_t sizes[CACHED_MANY];
  for (int i = 0; i < CACHED_MANY; i++) sizes[i] = 160 * KiB + (size_t)i * 12 * KiB;
  long faults = -1;
  size_t maps = SIZE_MAX;
  for (int try = 0; try < 3; try++) {
    cached_many_round(blocks, sizes); /* mapped, and their segments purged beyond 32 when freed */
    cached_many_round(blocks, sizes); /* all served by the cache: all stay resident */
    long f = cached_many_round(blocks, sizes);
    if (faults < 0 || f < faults) faults = f;
    malloc_trim(1); /* purges the cache, keeps it mapped */
    galleon_stats_t s0, s1;
    galleon_stats_get(&s0);
    cached_many_round(blocks, sizes);
    galleon_stats_get(&s1);
    if (s1.mmap_calls - s0.mmap_calls < maps) maps = s1.mmap_calls - s0.mmap_calls;
  }
  printf("%d cached blocks of 160-916 KiB taken back: %ld faults; purged, taken back: %zu mmap\n", CACHED_MANY,
         faults, maps);
  /* Two touched pages a block: 128 faults when they were purged. */
  CHECKF(faults < CACHED_MANY / 4, "%ld faults taking back %d resident cached blocks", faults, CACHED_MANY);
  CHECKF(maps < CACHED_MANY / 8, "%zu mmap calls for %d blocks whose purged segments were cached", maps,
         CACHED_MANY);
  munmap(blocks, CACHED_MANY * sizeof(void *));
  second_heap_stop(&second);
}

/* 4c. A huge block (32 MiB or more) freed once goes back at once: Python reading a
 * big file frees each conversion buffer as the next one fills, and keeping the
 * freed one resident raised its peak by a quarter.  Huge blocks the program frees
 * and takes back stay resident after the first round. */
static void test_huge_blocks(void) {
  const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  long window = galleon_option_get("purge_window_ms");
  /* No huge block taken from the cache in the window before this test. */
  CHECK(galleon_option_set("purge_window_ms", 300) == 0);
  usleep(350 * 1000);
  char *a = malloc(48 * MiB), *b = malloc(96 * MiB);
  CHECK(a != NULL && b != NULL);
  memset(a, 1, 48 * MiB);
  memset(b, 2, 4 * MiB);
  size_t r0 = rss_bytes();
  free(a);
  size_t r1 = rss_bytes();
  printf("huge blocks: freeing a 48 MiB block, RSS %.1f -> %.1f MiB\n", mib(r0), mib(r1));
  CHECKF(r1 + 40 * MiB < r0, "a 48 MiB block freed once stayed resident (RSS %.1f -> %.1f MiB)", mib(r0), mib(r1));
  free(b);
  /* The window runs from a block's taking to its free, here a 64 MiB fill: on a
   * loaded machine that took over 300 ms, each block was purged as it was freed
   * and every round faulted it all again. */
  CHECK(galleon_option_set("purge_window_ms", 5000) == 0);
  long faults[4];
  for (int round = 0; round < 4; round++) {
    long f0 = minor_faults();
    char *p = malloc(64 * MiB);
    CHECK(p != NULL);
    memset(p, 3, 64 * MiB);
    free(p);
    faults[round] = minor_faults() - f0;
  }
  printf("huge blocks: 64 MiB allocated, filled and freed 4 times: %ld, %ld, %ld, %ld page faults\n", faults[0],
         faults[1], faults[2], faults[3]);
  CHECKF(faults[2] + faults[3] < (long)(64 * MiB / ps / 5), "64 MiB blocks freed and taken back faulted %ld + %ld pages",
         faults[2], faults[3]);
  CHECK(galleon_option_set("purge_window_ms", window) == 0);
}

/* 5. Memory the program is about to reuse stays resident: a working set freed and
 * at once allocated again (small blocks, then a large block the program zero-fills
 * itself) costs few page faults -- the recent demand says it will be reused.  With
 * GALLEON_PURGE_WINDOW_MS=0 and no retain this would fault every page back in. */
static void test_reuse_stays_resident(void) {
  const size_t nblocks = 32768, bsize = 1024; /* 32 MiB */
  void **ptrs = map(nblocks * sizeof(void *));
  for (int round = 0; round < 3; round++) {
    long f0 = minor_faults();
    for (size_t i = 0; i < nblocks; i++) {
      ptrs[i] = malloc(bsize);
      CHECK(ptrs[i] != NULL);
      memset(ptrs[i], round + 1, bsize);
    }
    long faults = minor_faults() - f0;
    printf("reuse, round %d: %zu MiB of 1 KiB blocks allocated with %ld page faults\n", round,
           nblocks * bsize / MiB, faults);
    if (round > 0)
      CHECKF(faults < (long)(nblocks * bsize / 4096 / 10),
             "re-allocating a just-freed working set faulted %ld pages back in", faults);
    for (size_t i = 0; i < nblocks; i++) free(ptrs[i]);
  }
  munmap(ptrs, nblocks * sizeof(void *));
  const size_t big = 24 * MiB;
  for (int round = 0; round < 3; round++) {
    long f0 = minor_faults();
    char *p = malloc(big);
    CHECK(p != NULL);
    memset(p, round + 1, big);
    long faults = minor_faults() - f0;
    printf("reuse, round %d: a 24 MiB block allocated and filled with %ld page faults\n", round, faults);
    if (round > 0)
      CHECKF(faults < (long)(big / 4096 / 10), "re-allocating a just-freed large block faulted %ld pages", faults);
    free(p);
  }
  /* Large blocks aligned beyond a page (posix_memalign(2 MiB) for huge-page
   * buffers, and the rest up to the segment size) come from the segment cache too:
   * each used to get a fresh mapping, faulted in again every time. */
  static const size_t alignments[] = {8 * KiB, 64 * KiB, MiB, 2 * MiB, 4 * MiB};
  for (size_t a = 0; a < sizeof alignments / sizeof alignments[0]; a++) {
    const size_t size = 3 * MiB;
    long faults = 0;
    for (int round = 0; round < 3; round++) {
      long f0 = minor_faults();
      void *p = NULL;
      CHECK(posix_memalign(&p, alignments[a], size) == 0 && ((uintptr_t)p & (alignments[a] - 1)) == 0);
      memset(p, round + 1, size);
      if (round > 0) faults += minor_faults() - f0;
      free(p);
    }
    printf("reuse: a 3 MiB block aligned to %zu KiB allocated and filled again with %ld page faults\n",
           alignments[a] / KiB, faults / 2);
    CHECKF(faults / 2 < (long)(size / 4096 / 10),
           "re-allocating a just-freed block aligned to %zu KiB faulted %ld pages", alignments[a] / KiB, faults / 2);
  }
}

/* 4. An idle program gets its memory back: free a few MiB -- less than the heap may
 * keep before purging on its own (retain_bytes) -- then make no call at all.  Only
 * the background purger can return it; with GALLEON_PURGE_THREAD=0 this fails. */
static void test_idle_return(void) {
  const size_t n = 768; /* x 4 KiB = 3 MiB */
  void **ptrs = map(n * sizeof(void *));
  for (size_t i = 0; i < n; i++) {
    ptrs[i] = malloc(4096);
    CHECK(ptrs[i] != NULL);
    memset(ptrs[i], 0x33, 4096);
  }
  size_t full = rss_bytes();
  for (size_t i = 0; i < n; i++) free(ptrs[i]);
  double t_free = now_s();
  size_t idle = rss_wait_below(full - 3 * MiB / 2, 2000);
  printf("idle return: RSS %.1f MiB with 3 MiB live -> %.1f MiB after free and %.0f ms idle\n",
         mib(full), mib(idle), (now_s() - t_free) * 1000);
  CHECKF(idle + 3 * MiB / 2 <= full, "idle program kept its freed memory (%.1f -> %.1f MiB)",
         mib(full), mib(idle));
  munmap(ptrs, n * sizeof(void *));
}

/* 4e. A buffer regrown from 136 KiB to 10 MiB by realloc, freed, and regrown the
 * same way round after round (sqlite's sorter, at every sort): after the first
 * rounds each growth takes the last buffer's resident pages back from the cache
 * (moved, not faulted).  The head of the recycled segment it starts from counted
 * the pieces moved in the rounds before, and once it had taken 16 it grew fresh:
 * from the fourth round each one faulted its 10 MiB again. */
static void test_regrow_rounds(void) {
  static const size_t steps[] = {136 * KiB, 296 * KiB, 584 * KiB, 1160 * KiB, 4 * MiB, 6 * MiB, 10 * MiB};
  const int rounds = 20;
  long faults[20];
  for (int round = 0; round < rounds; round++) {
    long f0 = minor_faults();
    char *p = malloc(steps[0]);
    CHECK(p != NULL);
    memset(p, round, steps[0]);
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
      p = realloc(p, steps[i]);
      CHECK(p != NULL);
      CHECK(p[steps[i - 1] - 1] == (char)round);
      memset(p + steps[i - 1], round, steps[i] - steps[i - 1]);
    }
    free(p);
    faults[round] = minor_faults() - f0;
  }
  long late = 0;
  for (int round = 3; round < rounds; round++) late += faults[round];
  printf("regrow rounds: a buffer grown 136 KiB -> 10 MiB by realloc %d times: faults", rounds);
  for (int round = 0; round < rounds; round++) printf(" %ld", faults[round]);
  printf("\n");
  /* A fresh 10 MiB is 2,560 pages: rounds 4-20 together fault less than one. */
  CHECKF(late < (long)(10 * MiB / (size_t)sysconf(_SC_PAGESIZE)), "rounds 4-%d faulted %ld pages", rounds, late);
}

/* 4d. Busy is not idle: a thread that keeps allocating and freeing within the pages
 * it has moves no page, which is what an idle heap looks like too.  Memory it freed
 * that the demand rule keeps (a long window here) must stay resident while it runs
 * -- the idle rule purged it within 150 ms, and Python faulted it back at its next
 * phase -- and must still go back once the thread sleeps. */
static void test_busy_not_idle(void) {
  const size_t n = 2048; /* x 4 KiB = 8 MiB */
  long window = galleon_option_get("purge_window_ms");
  CHECK(galleon_option_set("purge_window_ms", 20000) == 0);
  sleep_ms(300); /* what earlier tests left goes first */
  void **ptrs = map(n * sizeof(void *));
  for (size_t i = 0; i < n; i++) {
    ptrs[i] = malloc(4096);
    CHECK(ptrs[i] != NULL);
    memset(ptrs[i], 0x44, 4096);
  }
  for (size_t i = 0; i < n; i++) free(ptrs[i]);
  char *large = malloc(16 * MiB); /* and a segment in the cache */
  CHECK(large != NULL);
  memset(large, 0x45, 16 * MiB);
  free(large);
  size_t freed = rss_bytes();
  double t0 = now_s(), cpu0 = thread_cpu_s();
  unsigned long spins = 0;
  while (now_s() - t0 < 0.7) { /* busy, within one page: no page comes or goes */
    for (int i = 0; i < 1024; i++, spins++) {
      volatile char *x = malloc(48);
      CHECK(x != NULL);
      x[0] = (char)i;
      free((void *)x);
    }
  }
  size_t busy = rss_bytes();
  double share = (thread_cpu_s() - cpu0) / (now_s() - t0);
  printf("busy is not idle: 8 MiB of pages and a 16 MiB block freed, RSS %.1f MiB; after %.0f ms of malloc/free "
         "(%lu pairs, %.0f%% of a CPU) %.1f MiB\n",
         mib(freed), (now_s() - t0) * 1000, spins, share * 100, mib(busy));
  /* Busy means over 1/8 of a CPU between two of the purger's looks (50 ms apart):
   * on a machine so loaded that this thread ran under half the time, a window of
   * under 1/8 may come by chance, and the check says nothing. */
  if (share >= 0.5)
    CHECKF(busy + 2 * MiB >= freed, "a busy thread's freed memory was purged as idle (RSS %.1f -> %.1f MiB)",
           mib(freed), mib(busy));
  else
    printf("busy is not idle: this thread ran %.0f%% of the time: not checked\n", share * 100);
  /* Asleep: RSS read every 300 ms, not every 20 as rss_wait_below does -- in ASan
   * builds a read walks the shadow's page tables, 20 ms of this thread's CPU time,
   * and reading that often is being busy. */
  double t_sleep = now_s();
  size_t idle = busy;
  for (int i = 0; i < 8 && idle + 20 * MiB > busy; i++) {
    sleep_ms(300);
    idle = rss_bytes();
  }
  printf("busy is not idle: then asleep %.0f ms: RSS %.1f MiB\n", (now_s() - t_sleep) * 1000, mib(idle));
  CHECKF(idle + 20 * MiB <= busy, "a sleeping thread kept its freed memory (RSS %.1f -> %.1f MiB)", mib(busy), mib(idle));
  munmap(ptrs, n * sizeof(void *));
  CHECK(galleon_option_set("purge_window_ms", window) == 0);
}

/* 4g. Waves: 8 MiB of 4 KiB blocks allocated and written, freed, then 600 ms of
 * busy work in the pages left (no page comes or goes, not idle), round after round.
 * With a 200 ms window the peak is forgotten before each wave and its pages are
 * purged, then faulted back.  Those re-faults lengthen the window (purge.c, "Recent
 * demand"): 200 -> 400 -> 800 ms, and from then on the pages stay resident between
 * waves.  The first waves fault all 2,048 pages; the last ones a fraction. */
static void test_window_learns(void) {
  const size_t n = 2048, waves = 7;
  long window = galleon_option_get("purge_window_ms");
  CHECK(galleon_option_set("purge_window_ms", 200) == 0);
  sleep_ms(300); /* what earlier tests left goes first */
  void **ptrs = map(n * sizeof(void *));
  long faults[7];
  double share_min = 1;
  for (size_t w = 0; w < waves; w++) {
    long f0 = minor_faults();
    for (size_t i = 0; i < n; i++) {
      ptrs[i] = malloc(4096);
      CHECK(ptrs[i] != NULL);
      memset(ptrs[i], 0x46, 4096);
    }
    faults[w] = minor_faults() - f0;
    for (size_t i = 0; i < n; i++) free(ptrs[i]);
    double t0 = now_s(), cpu0 = thread_cpu_s();
    while (now_s() - t0 < 0.6) {
      for (int i = 0; i < 1024; i++) {
        volatile char *x = malloc(48);
        CHECK(x != NULL);
        x[0] = (char)i;
        free((void *)x);
      }
    }
    double share = (thread_cpu_s() - cpu0) / (now_s() - t0);
    if (share < share_min) share_min = share;
  }
  printf("window learns: faults per wave of 2048 pages:");
  for (size_t w = 0; w < waves; w++) printf(" %ld", faults[w]);
  printf(" (this thread ran at least %.0f%% of each pause)\n", share_min * 100);
  CHECKF(faults[0] >= (long)n / 2, "the first wave faulted only %ld pages", faults[0]);
  /* Busy means over 1/8 of a CPU (see test_busy_not_idle): a thread that ran under
   * half the time may be taken for idle, and its memory purged by that rule. */
  if (share_min >= 0.5)
    CHECKF(faults[waves - 1] + faults[waves - 2] <= (long)n / 2,
           "the window did not learn: the last waves faulted %ld and %ld of %zu pages", faults[waves - 2],
           faults[waves - 1], n);
  else
    printf("window learns: this thread ran %.0f%% of a pause: not checked\n", share_min * 100);
  munmap(ptrs, n * sizeof(void *));
  CHECK(galleon_option_set("purge_window_ms", window) == 0);
}

/* A line of a file as text (no allocation); false when unreadable. */
static bool read_small_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return false;
  buf[n] = 0;
  return true;
}

/* The purger thread's id (its name is galleon-purge), or 0. */
static long purger_tid(void) {
  DIR *dir = opendir("/proc/self/task");
  if (dir == NULL) return 0;
  long found = 0;
  for (struct dirent *e; found == 0 && (e = readdir(dir)) != NULL;) {
    char path[96], name[64];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    if (e->d_name[0] != '.' && read_small_file(path, name, sizeof name) && strncmp(name, "galleon-purge", 13) == 0)
      found = atol(e->d_name);
  }
  closedir(dir);
  return found;
}

static long voluntary_switches(long tid) {
  char path[96], text[2048];
  snprintf(path, sizeof path, "/proc/self/task/%ld/status", tid);
  if (!read_small_file(path, text, sizeof text)) return -1;
  const char *line = strstr(text, "\nvoluntary_ctxt_switches:");
  return line ? atol(line + 26) : -1;
}

/* 4h. A heap created and destroyed per request (bench `arena`): each destroy queues
 * memory, and the purger, finding it gone an instant later, slept without a
 * deadline again, to be woken by the next destroy -- 7,300 wake-ups in 40,000
 * requests.  Once woken it keeps ticking for a second (purge.c, the purger thread):
 * over 400 ms of requests it wakes a few times per tick, not per request.  In a
 * new process (this program run again), whose purger has nothing else to look
 * after. */
static void purger_requests_child(void) {
  unsigned long requests = 0;
  double t0 = now_s();
  while (now_s() - t0 < 0.4) {
    galleon_heap_t *h = galleon_heap_new();
    CHECK(h != NULL);
    for (int i = 0; i < 400; i++) { /* 70% 16-128 B, 25% up to 1 KiB, 5% up to 8 KiB */
      unsigned k = (unsigned)(requests * 400 + (unsigned long)i) * 2654435761u;
      size_t n = k % 100 < 70 ? 16 + k % 113 : k % 100 < 95 ? 129 + k % 896 : 1025 + k % 7168;
      char *p = galleon_heap_malloc(h, n);
      CHECK(p != NULL);
      memset(p, i & 0x7f, n < 64 ? n : 64);
      p[n - 1] = (char)i;
    }
    galleon_heap_destroy(h);
    requests++;
  }
  double elapsed = now_s() - t0;
  long tid = purger_tid(); /* started by the requests; all its switches are theirs */
  CHECKF(tid != 0, "no galleon-purge thread after %lu requests", requests);
  long wakes = voluntary_switches(tid);
  CHECK(wakes >= 0);
  long tick_ms = galleon_option_get("purge_idle_ms") / 2;
  if (tick_ms < 10) tick_ms = 10;
  long bound = 4 * (long)(elapsed * 1000 / (double)tick_ms) + 20;
  printf("purger: %lu requests (a heap each) in %.0f ms: %ld context switches of the purger (bound %ld)\n",
         requests, elapsed * 1000, wakes, bound);
  CHECKF(wakes <= bound, "the purger was woken %ld times in %lu requests", wakes, requests);
}

static void test_purger_not_woken_per_request(void) {
  fflush(stdout);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) { /* a new process: no heap of the threads before, no state */
    execl("/proc/self/exe", "test_memory", "--purger-requests", (char *)NULL);
    _exit(127);
  }
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the request child failed (status %d)", status);
}

/* A block that grows by doubling (realloc), after a big block was freed into the
 * segment cache: the first step takes the head of the cached segment and leaves
 * its resident tail cached; each growth that follows takes its new pages from that
 * tail (mremap moves them in: resident, no fault), not fresh pages faulted in
 * beside it (sqlite's hash tables, grown from 136 KiB to 9 MiB over and over).
 * RSS grows by the block, not by twice it; faults are a fraction of its pages. */
static void test_growth_after_cached(void) {
  const size_t big = 8 * MiB, ps = (size_t)sysconf(_SC_PAGESIZE);
  char *old = malloc(big);
  CHECK(old != NULL);
  memset(old, 1, big);
  size_t rss0 = rss_bytes();
  free(old); /* cached, resident */
  long f0 = minor_faults();
  size_t n = 128 * 1024;
  char *p = malloc(n);
  CHECK(p != NULL);
  memset(p, 2, n);
  while (n < big) {
    p = realloc(p, 2 * n);
    CHECK(p != NULL);
    CHECK(p[0] == 2 && p[n - 1] == (n == 128 * 1024 ? 2 : 3)); /* contents kept */
    memset(p + n, 3, n);
    n *= 2;
  }
  long faults = minor_faults() - f0;
  size_t rss1 = rss_bytes();
  printf("growth after cached: RSS %.1f MiB with an 8 MiB block freed -> %.1f MiB with one grown to 8 MiB, "
         "%ld page faults (%zu pages)\n",
         mib(rss0), mib(rss1), faults, big / ps);
  CHECKF(rss1 <= rss0 + 3 * MiB, "RSS grew by %.1f MiB for a block that took the place of a freed one",
         mib(rss1 - rss0));
  /* The freed block's mapping is rounded to whole 2 MiB units (cheap page-table
   * moves), and the part it never touched, up to a unit, is not resident. */
  long untouched_slack = (long)((2 * MiB) / ps);
  CHECKF(faults < (long)(big / ps / 4) + untouched_slack,
         "a block growing over a freed one's resident pages faulted %ld of %zu pages", faults, big / ps);
  free(p);
}

/* A block freed by its owner is the next one malloc hands out in its size, while
 * its lines are still in cache -- once the page's freshly carved, zeroed list is
 * used up (frees do not mix into a list calloc trusts to be zero).  Fails when
 * frees wait on local_free until the page's list runs dry (under 1% reuse then),
 * and when a freed block reaches a zeroed list (calloc returns the old bytes). */
static void *warm_reuse_thread(void *arg) {
  (void)arg;
  static const size_t sizes[] = {16, 24, 100, 1000, 8000, 20000, 100000};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    void *keep = malloc(n); /* the page stays in use throughout */
    CHECK(keep != NULL);
    int same = 0;
    const int rounds = 2000;
    for (int i = 0; i < rounds; i++) {
      char *p = malloc(n);
      CHECK(p != NULL);
      memset(p, 0xAA, n);
      free(p);
      char *q = (i & 1) ? calloc(1, n) : malloc(n);
      CHECK(q != NULL);
      if (i & 1) CHECKF(all_bytes_are(q, n, 0), "calloc(1, %zu) after a free: not zeroed (round %d)", n, i);
      same += q == p;
      free(q);
    }
    printf("warm reuse: %zu B: the block freed last came back %d times in %d\n", n, same, rounds);
    CHECKF(same >= rounds * 9 / 10, "%zu B: the block freed last came back %d times in %d", n, same, rounds);
    free(keep);
  }
  return NULL;
}

/* A block freed into a page that was full is found again before a new page is
 * started, though one free is too few to put that page back in its queue
 * (heap.c, GL_UNFULL_FREE_BLOCKS and full_waiting). */
static void *full_page_reuse_thread(void *arg) {
  (void)arg;
  enum { N = 5000, MORE = 3000 };
  void **blocks = map(N * sizeof(void *)), **more = map(MORE * sizeof(void *));
  for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(64)) != NULL);
  void *x = blocks[100]; /* in the first page, full since later ones were started */
  free(x);
  int found = -1;
  for (int i = 0; i < MORE && found < 0; i++) {
    CHECK((more[i] = malloc(64)) != NULL);
    if (more[i] == x) found = i;
  }
  printf("full page reuse: the block freed in a full page came back after %d mallocs\n", found + 1);
  CHECKF(found >= 0, "a block freed in a full page was not reused within %d mallocs", MORE);
  for (int i = 0; i <= found; i++) free(more[i]);
  for (int i = 0; i < N; i++)
    if (i != 100) free(blocks[i]);
  munmap(blocks, N * sizeof(void *));
  munmap(more, MORE * sizeof(void *));
  return NULL;
}

/* A thread that works through its sizes one after another -- 400 blocks of 16
 * bytes, freed, then of 32, ... up to 1 KiB (glibc's bench-malloc-simple) -- takes
 * the pages it kept for the sizes it finished rather than fresh memory: its page
 * faults follow the largest size's footprint (400 KiB), not their sum (813 KiB). */
static void *sizes_in_turn_thread(void *arg) {
  static void *blocks[400];
  long *faults = arg;
  struct rusage ru;
  CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
  long f0 = ru.ru_minflt;
  for (size_t size = 16; size <= 1024; size *= 2) {
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < 400; i++) {
        blocks[i] = malloc(size);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 1, size);
      }
      for (int i = 0; i < 400; i++) free(blocks[i]);
    }
  }
  CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
  *faults = ru.ru_minflt - f0;
  return NULL;
}

static void test_sizes_in_turn(void) {
  long faults = 0;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, sizes_in_turn_thread, &faults) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  long ps = sysconf(_SC_PAGESIZE);
  printf("sizes in turn, 400 blocks of 16 B .. 1 KiB each: %ld page faults (footprints: largest %ld, sum %ld pages)\n",
         faults, 400 * 1024 / ps, 400 * 2032 / ps);
  CHECKF(faults < 400 * 1024 / ps + 50, "working through sizes faulted %ld pages", faults);
}

/* Blocks freed in pages behind the one malloc carves from are handed out before it
 * carves more (heap.c, heap_find_page): carving touches memory never used, while
 * the freed blocks stay resident until their page empties.  64 blocks of 45,000 B
 * fill six medium pages and carve part of a seventh; freeing every second block of
 * the first 32 puts six full pages back in the queue behind the seventh.  Fails
 * (10 of 16 came back) when the seventh page is carved first. */
static void *freed_before_carved_thread(void *arg) {
  (void)arg;
  enum { N = 64, FREED = 16, SIZE = 45000 };
  static void *blocks[N], *again[FREED];
  for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(SIZE)) != NULL);
  for (int i = 0; i < FREED; i++) free(blocks[2 * i]);
  int reused = 0;
  for (int i = 0; i < FREED; i++) {
    CHECK((again[i] = malloc(SIZE)) != NULL);
    for (int j = 0; j < FREED; j++) reused += again[i] == blocks[2 * j];
  }
  printf("freed before carved: %d of the %d blocks freed behind the page being carved came back\n", reused,
         FREED);
  CHECKF(reused == FREED, "only %d of %d freed blocks were reused before carving new ones", reused, FREED);
  for (int i = 0; i < FREED; i++) free(again[i]);
  for (int i = 0; i < N; i++)
    if (i >= 2 * FREED || (i & 1)) free(blocks[i]);
  return NULL;
}

static void test_freed_before_carved(void) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, freed_before_carved_thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

/* A page that emptied goes back, resident, to the heap's queue of free pages; the
 * next page a size class needs is one that last held that size, if a recent one
 * did (purge.c, queue_find_same_size): blocks of another size touch other offsets,
 * so a page handed round the classes of a program that writes part of each block
 * ends up resident whole.  Two pages of 24 KiB blocks, then two of 32 KiB, all
 * freed: a new 24 KiB block must start a page the 24 KiB blocks had, a 32 KiB one a
 * page of theirs.  Fails when the lowest free page goes first (both land in the
 * first 24 KiB page). */
static void *same_size_page_thread(void *arg) {
  (void)arg;
  enum { A = 24 * 1024, B = 32 * 1024, NA = 42, NB = 32 };
  static void *a[NA], *b[NB];
  for (int i = 0; i < NA; i++) CHECK((a[i] = malloc(A)) != NULL);
  for (int i = 0; i < NB; i++) CHECK((b[i] = malloc(B)) != NULL);
  for (int i = 0; i < NA; i++) free(a[i]);
  for (int i = 0; i < NB; i++) free(b[i]);
  void *nb = malloc(B), *na = malloc(A);
  CHECK(nb != NULL && na != NULL);
  int b_home = 0, a_home = 0;
  for (int i = 0; i < NB; i++) b_home += nb == b[i];
  for (int i = 0; i < NA; i++) a_home += na == a[i];
  printf("same-size page: a new %d B block %s a page of %d B blocks, a new %d B block %s\n", B,
         b_home ? "starts" : "does not start", B, A, a_home ? "too" : "does not");
  CHECKF(b_home && a_home, "an emptied page went to another size class (%d B: %d, %d B: %d)", B, b_home, A, a_home);
  free(nb);
  free(na);
  return NULL;
}

static void test_same_size_page(void) {
  /* Emptied pages go to the queue (none kept in their class), and none is purged
   * before the test looks. */
  long retain = galleon_option_get("retain_bytes"), delay = galleon_option_get("purge_delay_ms");
  CHECK(galleon_option_set("retain_bytes", 0) == 0);
  CHECK(galleon_option_set("purge_delay_ms", 60000) == 0);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, same_size_page_thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(galleon_option_set("retain_bytes", retain) == 0);
  CHECK(galleon_option_set("purge_delay_ms", delay) == 0);
}

static void test_warm_reuse(void) {
  pthread_t f;
  CHECK(pthread_create(&f, NULL, full_page_reuse_thread, NULL) == 0);
  CHECK(pthread_join(f, NULL) == 0);
  /* A thread of its own: a heap whose pages are all fresh. */
  pthread_t t;
  CHECK(pthread_create(&t, NULL, warm_reuse_thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  if (argc > 1 && strcmp(argv[1], "--purger-requests") == 0) {
    purger_requests_child();
    return 0;
  }
  double t0 = now_s();
  /* Make what "returned" means explicit: purge with MADV_DONTNEED (so RSS shows it)
   * and after a short delay. */
  CHECK(galleon_option_set("purge_decommit", 1) == 0);
  CHECK(galleon_option_set("purge_delay_ms", 50) == 0);
  /* Warm up: the first allocations map metadata and the first segments. */
  for (int i = 0; i < 1000; i++) free(malloc((size_t)(i % 100) + 1));

  /* First: it needs a recent peak that is its own (the demand window). */
  test_growth_after_cached();
  /* Before the other tests leave heaps of exited threads behind: its thread needs a
   * heap of its own. */
  test_sizes_in_turn();
  test_freed_before_carved();
  test_same_size_page();
  test_small_blocks_returned();
  test_large_returned();
  test_trim_keeps_pad();
  test_large_purged_cached();
  test_calloc_lazy();
  test_calloc_reused();
  test_large_varied_reuse();
  test_large_realloc_bounded();
  test_large_cached_many();
  test_huge_blocks();
  test_reuse_stays_resident();
  test_idle_return();
  test_busy_not_idle();
  test_window_learns();
  test_purger_not_woken_per_request();
  test_regrow_rounds();
  test_warm_reuse();
  printf("memory tests passed in %.2f s\n", now_s() - t0);
  return 0;
}
