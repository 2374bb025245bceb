/* stats_test.c: glibc's statistics in Galleon's terms (galleon.h), by effect.
 *
 *  - mallinfo2: each field moves by exactly what a known allocation pattern says
 *    (uordblks by the block sizes, smblks/fsmblks by the fast free blocks, ordblks
 *    by the larger ones, hblks/hblkhd by the large blocks) and glibc's identities
 *    hold (arena = uordblks + fordblks, fsmblks and keepcost within fordblks,
 *    usmblks = 0), with arena + hblkhd = the bytes Galleon has mapped;
 *  - malloc_trim(pad): free memory up to pad stays resident (nothing purged,
 *    keepcost unchanged, returns 0); above pad it is returned (returns 1);
 *  - mallopt: M_TRIM_THRESHOLD changes what the segment cache keeps resident;
 *    the ignored parameters return 1 and change no option and no behaviour
 *    (M_MMAP_THRESHOLD leaves the 128 KiB large-block threshold where it is);
 *    unknown ones return 0;
 *  - malloc_stats completes in a thread with a pending cancellation (it is not a
 *    cancellation point) and prints glibc's lines;
 *  - malloc_info: options != 0 or a NULL stream: -1 with EINVAL; a failing stream:
 *    -1 with EIO;
 *  - mallinfo2, malloc_info and galleon_dump_pages read while four threads allocate,
 *    free (large blocks too) and exit: no crash, glibc's identities hold.
 * The XML and text layouts are checked against glibc's by stats_check.py.
 * Linked to libgalleon (normal build) or to galleon_code with the galleon_* names
 * (address build, through test_util.h).
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../test_util.h"

#if TEST_NO_OVERRIDE
#define malloc_info galleon_malloc_info
#endif

static const char *const option_names[] = {"purge_delay_ms", "purge_idle_ms", "purge_window_ms",
                                           "purge_decommit", "retain_bytes",  "segment_cache",
                                           "stats_at_exit",  "verbose",       "purge_thread",
                                           "pressure_percent"};
#define OPTION_COUNT (sizeof option_names / sizeof option_names[0])

static void options_save(long *values) {
  for (size_t i = 0; i < OPTION_COUNT; i++) values[i] = galleon_option_get(option_names[i]);
}
static void options_check_unchanged(const long *values, const char *after) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    long v = galleon_option_get(option_names[i]);
    CHECKF(v == values[i], "%s changed option %s: %ld -> %ld", after, option_names[i], values[i], v);
  }
}

/* glibc's identities and Galleon's: checked on every snapshot. */
static test_mallinfo2_t snapshot(const char *where) {
  test_mallinfo2_t m = mallinfo2();
  galleon_stats_t s;
  galleon_stats_get(&s);
  CHECKF(m.arena == m.uordblks + m.fordblks, "%s: arena %zu != uordblks %zu + fordblks %zu", where,
         m.arena, m.uordblks, m.fordblks);
  CHECKF(m.usmblks == 0, "%s: usmblks %zu (glibc never fills it)", where, m.usmblks);
  CHECKF(m.fsmblks <= m.fordblks, "%s: fsmblks %zu > fordblks %zu", where, m.fsmblks, m.fordblks);
  CHECKF(m.keepcost <= m.fordblks, "%s: keepcost %zu > fordblks %zu", where, m.keepcost, m.fordblks);
  CHECKF(m.fsmblks >= 16 * m.smblks, "%s: %zu fast blocks in %zu bytes", where, m.smblks, m.fsmblks);
  CHECKF(m.fsmblks <= 8192 * m.smblks, "%s: %zu fast blocks in %zu bytes", where, m.smblks, m.fsmblks);
  CHECKF(m.arena + m.hblkhd == s.mapped, "%s: arena %zu + hblkhd %zu != mapped %zu", where, m.arena,
         m.hblkhd, s.mapped);
  CHECKF(m.hblks == s.large_blocks, "%s: hblks %zu, large_blocks %zu", where, m.hblks, s.large_blocks);
  return m;
}

static void test_mallinfo_fields(void) {
  enum { N = 1000, M = 8, L = 3 };
  static void *p[N], *q[M], *r[L];
  test_mallinfo2_t m0 = snapshot("start");
  for (int i = 0; i < N; i++) CHECK((p[i] = malloc(48)) != NULL);
  test_mallinfo2_t m1 = snapshot("after 1000 x 48 B");
  CHECKF(m1.uordblks - m0.uordblks == N * 48, "uordblks grew by %zu for 1000 x 48 B",
         m1.uordblks - m0.uordblks);
  for (int i = 0; i < N; i += 2) free(p[i]);
  test_mallinfo2_t m2 = snapshot("after freeing 500 x 48 B");
  CHECKF(m1.uordblks - m2.uordblks == N / 2 * 48, "uordblks fell by %zu", m1.uordblks - m2.uordblks);
  CHECKF(m2.smblks - m1.smblks == N / 2, "smblks grew by %zu for 500 free 48 B blocks",
         m2.smblks - m1.smblks);
  CHECKF(m2.fsmblks - m1.fsmblks == N / 2 * 48, "fsmblks grew by %zu", m2.fsmblks - m1.fsmblks);
  CHECKF(m2.ordblks == m1.ordblks, "ordblks moved (%zu -> %zu) for fast frees", m1.ordblks, m2.ordblks);
  CHECKF(m2.arena == m1.arena, "arena moved for frees");

  for (int i = 0; i < M; i++) CHECK((q[i] = malloc(20000)) != NULL);
  size_t block = malloc_usable_size(q[0]);
  CHECKF(block >= 20000 && block <= 25000, "usable size %zu of a 20000 B block", block);
  test_mallinfo2_t m3 = snapshot("after 8 x 20000 B");
  CHECKF(m3.uordblks - m2.uordblks == M * block, "uordblks grew by %zu for 8 x %zu B",
         m3.uordblks - m2.uordblks, block);
  for (int i = 0; i < M; i += 2) free(q[i]);
  test_mallinfo2_t m4 = snapshot("after freeing 4 x 20000 B");
  CHECKF(m4.ordblks - m3.ordblks == M / 2, "ordblks grew by %zu for 4 free 20000 B blocks",
         m4.ordblks - m3.ordblks);
  CHECKF(m4.smblks == m3.smblks && m4.fsmblks == m3.fsmblks, "fast counts moved for medium frees");

  for (int i = 0; i < L; i++) {
    CHECK((r[i] = malloc(MiB)) != NULL);
    memset(r[i], 1, MiB);
  }
  test_mallinfo2_t m5 = snapshot("after 3 x 1 MiB");
  CHECKF(m5.hblks - m4.hblks == L, "hblks grew by %zu for 3 large blocks", m5.hblks - m4.hblks);
  CHECKF(m5.hblkhd - m4.hblkhd >= L * MiB && m5.hblkhd - m4.hblkhd <= L * (MiB + 64 * KiB),
         "hblkhd grew by %zu for 3 x 1 MiB", m5.hblkhd - m4.hblkhd);
  CHECKF(m5.uordblks == m4.uordblks, "large blocks counted in uordblks");

#if !TEST_NO_OVERRIDE
  /* The standard names give the same numbers (nothing allocates in between). */
  struct mallinfo2 g = mallinfo2();
  struct galleon_mallinfo h = galleon_mallinfo2();
  CHECK(memcmp(&g, &h, sizeof g) == 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo o = mallinfo();
#pragma GCC diagnostic pop
  CHECK((size_t)o.uordblks == (h.uordblks > INT32_MAX ? (size_t)INT32_MAX : h.uordblks));
  CHECK((size_t)o.hblks == h.hblks && (size_t)o.smblks == h.smblks && o.usmblks == 0);
#endif
  for (int i = 0; i < L; i++) free(r[i]);
  for (int i = 1; i < M; i += 2) free(q[i]);
  for (int i = 1; i < N; i += 2) free(p[i]);
  snapshot("after freeing everything");
  printf("  mallinfo2 fields move as defined\n");
}

static void test_malloc_trim_pad(void) {
  enum { N = 2048 };
  static void *p[N];
  CHECK(mallopt(M_TRIM_THRESHOLD, 64 * (int)MiB) == 1); /* everything freed stays resident */
  malloc_trim(0);
  for (int i = 0; i < N; i++) {
    CHECK((p[i] = malloc(4000)) != NULL);
    memset(p[i], 7, 4000);
  }
  for (int i = 0; i < N; i++) free(p[i]);
  test_mallinfo2_t m1 = snapshot("8 MiB freed");
  galleon_stats_t s1;
  galleon_stats_get(&s1);
  CHECKF(m1.keepcost >= 6 * MiB, "keepcost %zu after freeing 8 MiB with 64 MiB retained", m1.keepcost);

  int rc = malloc_trim(m1.keepcost + 2 * MiB);
  test_mallinfo2_t m2 = snapshot("trim with pad above keepcost");
  galleon_stats_t s2;
  galleon_stats_get(&s2);
  CHECKF(rc == 0, "malloc_trim(pad > free memory) returned %d", rc);
  /* Nothing purged; empty pages a heap kept ready may now count as free. */
  CHECKF(m2.keepcost >= m1.keepcost && m2.keepcost <= m1.keepcost + MiB,
         "malloc_trim(pad > free memory) changed keepcost %zu -> %zu", m1.keepcost, m2.keepcost);
  CHECKF(s2.purged_bytes == s1.purged_bytes && s2.munmap_calls == s1.munmap_calls,
         "malloc_trim(pad > free memory) purged %zu bytes", s2.purged_bytes - s1.purged_bytes);

  rc = malloc_trim(m1.keepcost / 2);
  test_mallinfo2_t m3 = snapshot("trim with pad below keepcost");
  galleon_stats_t s3;
  galleon_stats_get(&s3);
  CHECKF(rc == 1, "malloc_trim(pad < free memory) returned %d", rc);
  CHECKF(m3.keepcost <= m1.keepcost / 2, "keepcost %zu after malloc_trim(%zu)", m3.keepcost,
         m1.keepcost / 2);
  CHECKF(s3.purged_bytes > s2.purged_bytes, "malloc_trim(pad < free memory) purged nothing");

  CHECKF(m3.keepcost > 0, "malloc_trim(%zu) kept nothing of %zu free bytes", m1.keepcost / 2, m1.keepcost);
  rc = malloc_trim(0); /* what the pad kept */
  test_mallinfo2_t m4 = snapshot("trim(0) after a trim with pad");
  CHECKF(rc == 1 && m4.keepcost == 0, "malloc_trim(0) after malloc_trim(pad) returned %d, keepcost %zu", rc,
         m4.keepcost);
  rc = malloc_trim(0);
  CHECKF(rc == 0, "malloc_trim(0) with nothing left returned %d", rc);
  CHECK(mallopt(M_TRIM_THRESHOLD, (int)MiB) == 1);
  printf("  malloc_trim honours pad (kept all %zu free bytes under a larger pad, %zu under half of it)\n",
         m1.keepcost, m3.keepcost);
}

static void test_mallopt_trim_threshold(void) {
  enum { N = 16 };
  static void *p[N];
  long saved[OPTION_COUNT];
  options_save(saved);
  galleon_option_set("purge_window_ms", 0); /* keep only what retain_bytes says */
  galleon_option_set("purge_delay_ms", 0);
  malloc_trim(0);

  CHECK(mallopt(M_TRIM_THRESHOLD, 64 * (int)MiB) == 1);
  CHECK(galleon_option_get("retain_bytes") == (long)(64 * MiB));
  for (int i = 0; i < N; i++) {
    CHECK((p[i] = malloc(MiB)) != NULL);
    memset(p[i], 3, MiB);
  }
  for (int i = 0; i < N; i++) free(p[i]);
  test_mallinfo2_t kept = snapshot("16 MiB of large blocks freed, 64 MiB retained");
  CHECKF(kept.keepcost >= N * MiB, "M_TRIM_THRESHOLD 64 MiB: only %zu bytes kept resident",
         kept.keepcost);

  CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1);
  CHECK(galleon_option_get("retain_bytes") == 0);
  void *q = malloc(MiB); /* a free applies the rules */
  CHECK(q != NULL);
  free(q);
  test_mallinfo2_t gone = snapshot("M_TRIM_THRESHOLD 0");
  CHECKF(gone.keepcost + (N - 1) * MiB <= kept.keepcost,
         "M_TRIM_THRESHOLD 0: keepcost %zu -> %zu, the cache was not purged", kept.keepcost,
         gone.keepcost);

  CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1); /* glibc: unsigned, "never trim" */
  CHECK(galleon_option_get("retain_bytes") >= (long)1 << 40);
  for (size_t i = 0; i < OPTION_COUNT; i++) galleon_option_set(option_names[i], saved[i]);
  options_check_unchanged(saved, "restoring");
  printf("  mallopt(M_TRIM_THRESHOLD) changes what stays resident (%zu -> %zu bytes)\n",
         kept.keepcost, gone.keepcost);
}

static void test_mallopt_ignored(void) {
  static const struct {
    int param;
    const char *name;
  } ignored[] = {{M_MXFAST, "M_MXFAST"},         {M_TOP_PAD, "M_TOP_PAD"},
                 {M_MMAP_THRESHOLD, "M_MMAP_THRESHOLD"}, {M_MMAP_MAX, "M_MMAP_MAX"},
                 {M_CHECK_ACTION, "M_CHECK_ACTION"}, {M_PERTURB, "M_PERTURB"},
                 {M_ARENA_TEST, "M_ARENA_TEST"}, {M_ARENA_MAX, "M_ARENA_MAX"}};
  long saved[OPTION_COUNT];
  options_save(saved);
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
    int rc = mallopt(ignored[i].param, 4096);
    CHECKF(rc == 1, "mallopt(%s) returned %d", ignored[i].name, rc);
    options_check_unchanged(saved, ignored[i].name);
  }
  CHECK(mallopt(12345, 1) == 0);

  /* M_MMAP_THRESHOLD has no effect: 64 KiB is still a medium block after a 4 KiB
   * threshold, 1 MiB still a large one after a 64 MiB threshold. */
  CHECK(mallopt(M_MMAP_THRESHOLD, 4096) == 1);
  size_t h0 = mallinfo2().hblks;
  void *p = malloc(64 * KiB);
  CHECK(p != NULL);
  CHECKF(mallinfo2().hblks == h0, "64 KiB became a large block after M_MMAP_THRESHOLD 4096");
  free(p);
  CHECK(mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1);
  p = malloc(MiB);
  CHECK(p != NULL);
  CHECKF(mallinfo2().hblks == h0 + 1, "1 MiB is not a large block after M_MMAP_THRESHOLD 64 MiB");
  free(p);
  printf("  mallopt's ignored parameters return 1 and change nothing\n");
}

/* ---- malloc_stats is not a cancellation point ---- */
static atomic_int cancel_sent, stats_done;

static void *stats_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&cancel_sent)) sched_yield(); /* not a cancellation point */
  malloc_stats();
  atomic_store(&stats_done, 1);
  pthread_testcancel();
  return NULL;
}

static void test_malloc_stats_cancel(void) {
  char path[] = "/tmp/galleon_stats_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  CHECK(saved >= 0 && dup2(fd, 2) == 2);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, stats_thread, NULL) == 0);
  CHECK(pthread_cancel(t) == 0);
  atomic_store(&cancel_sent, 1);
  void *ret;
  CHECK(pthread_join(t, &ret) == 0);
  CHECK(dup2(saved, 2) == 2);
  close(saved);
  CHECKF(atomic_load(&stats_done) == 1, "malloc_stats was cancelled: it is a cancellation point");
  CHECK(ret == PTHREAD_CANCELED);
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  CHECK(n > 0);
  buf[n] = 0;
  CHECKF(strstr(buf, "Arena 0:\nsystem bytes     = ") != NULL && strstr(buf, "Total (incl. mmap):\n") &&
             strstr(buf, "\nmax mmap regions = ") && strstr(buf, "\nmax mmap bytes   = "),
         "malloc_stats printed:\n%s", buf);
  printf("  malloc_stats completes under a pending cancellation\n");
}

static void test_malloc_info_errors(void) {
  FILE *f = tmpfile();
  CHECK(f != NULL);
  errno = 0;
  CHECK(malloc_info(1, f) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(malloc_info(0, NULL) == -1 && errno == EINVAL);
  CHECK(malloc_info(0, f) == 0);
  CHECK(ftell(f) > 100);
  fclose(f);
  FILE *ro = fopen("/dev/null", "r");
  CHECK(ro != NULL);
  errno = 0;
  CHECKF(malloc_info(0, ro) == -1 && errno == EIO, "malloc_info to a read-only stream: errno %d", errno);
  fclose(ro);
  printf("  malloc_info: EINVAL for options or stream, EIO for a failing stream\n");
}

/* ---- Reading the statistics while other threads allocate, free and exit ---- */
static atomic_int churn_stop;

static void *churn_thread(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  enum { SLOTS = 256 };
  void *slots[SLOTS] = {0};
  for (int round = 0; !atomic_load(&churn_stop); round++) {
    size_t i = rng_range(&rng, 0, SLOTS - 1);
    free(slots[i]);
    size_t size = rng_range(&rng, 0, 99) < 2 ? rng_range(&rng, 129 * KiB, 2 * MiB)
                                             : rng_range(&rng, 1, 32 * KiB);
    slots[i] = malloc(size);
    CHECK(slots[i] != NULL);
    memset(slots[i], 9, size < 256 ? size : 256);
    if (round == 20000) break; /* the thread exits: its heap is abandoned, then adopted */
  }
  for (size_t i = 0; i < SLOTS; i++) free(slots[i]);
  return NULL;
}

static void test_concurrent_reads(void) {
  enum { THREADS = 4 };
  pthread_t t[THREADS];
  FILE *sink = fopen("/dev/null", "w");
  int sink_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  CHECK(sink != NULL && sink_fd >= 0);
  galleon_option_set("purge_thread", 1); /* the purger joins in */
  double end = now_s() + 1.0;
  int reads = 0;
  for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(i + 1)) == 0);
  while (now_s() < end) {
    test_mallinfo2_t m = mallinfo2();
    CHECK(m.arena == m.uordblks + m.fordblks && m.usmblks == 0);
    CHECK(malloc_info(0, sink) == 0);
    galleon_dump_pages(sink_fd);
    reads++;
    for (int i = 0; i < THREADS; i++) { /* restart the threads that exited */
      if (pthread_tryjoin_np(t[i], NULL) == 0)
        CHECK(pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(reads * THREADS + i)) == 0);
    }
  }
  atomic_store(&churn_stop, 1);
  for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
  fclose(sink);
  close(sink_fd);
  printf("  %d reads of mallinfo2, malloc_info and the heap dump while 4 threads churned\n", reads);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("stats tests\n"); /* stdio's buffers are allocated before anything is measured */
  galleon_option_set("purge_thread", 0); /* nothing purges behind the measurements */
  test_mallinfo_fields();
  test_malloc_trim_pad();
  test_mallopt_trim_threshold();
  test_mallopt_ignored();
  test_malloc_stats_cancel();
  test_malloc_info_errors();
  test_concurrent_reads();
  printf("stats tests passed\n");
  return 0;
}
