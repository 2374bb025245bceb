/* api_test.c: the standard allocation surface with glibc semantics, plus the
 * galleon_* extensions.
 *
 * Built three ways from this one source:
 *  - linked to libgalleon.so (test api_linked);
 *  - without galleon, run under LD_PRELOAD=libgalleon.so (TEST_PRELOAD, test
 *    api_preload): galleon_* functions are reached through dlsym only;
 *  - in the sanitizer builds, linked to galleon_code with GALLEON_NO_OVERRIDE: the
 *    standard names are renamed to galleon_* by test_util.h.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "../test_util.h"

/* ---- galleon_* entry points: direct, or looked up when preloaded ---- */
#ifdef TEST_PRELOAD
typedef struct galleon_stats_s {
  size_t mapped, mapped_peak, committed, in_use, segments, segments_cached,
      large_blocks, heaps, heaps_abandoned, purges, purged_bytes, mmap_calls,
      munmap_calls;
} galleon_stats_t;
#endif

static struct {
  int (*owns)(const void *);
  void (*stats_get)(galleon_stats_t *);
  long (*option_get)(const char *);
  int (*option_set)(const char *, long);
  void (*collect)(void);
  void *(*xmalloc)(size_t);
  void *(*malloc0)(size_t);
  void *(*xmalloc0)(size_t);
  void *(*g_xmalloc)(size_t);
  void *(*g_malloc0)(size_t);
  void *(*g_xmalloc0)(size_t);
  void (*free_sized)(void *, size_t);
  void (*free_aligned_sized)(void *, size_t, size_t);
} G;

__attribute__((unused)) static void *must_dlsym(const char *name) {
  void *f = dlsym(RTLD_DEFAULT, name);
  CHECKF(f != NULL, "dlsym(%s) failed: is libgalleon preloaded?", name);
  return f;
}

static void init_entry_points(void) {
#ifdef TEST_PRELOAD
  *(void **)&G.owns = must_dlsym("galleon_owns");
  *(void **)&G.stats_get = must_dlsym("galleon_stats_get");
  *(void **)&G.option_get = must_dlsym("galleon_option_get");
  *(void **)&G.option_set = must_dlsym("galleon_option_set");
  *(void **)&G.collect = must_dlsym("galleon_collect");
  *(void **)&G.xmalloc = must_dlsym("xmalloc");
  *(void **)&G.malloc0 = must_dlsym("malloc0");
  *(void **)&G.xmalloc0 = must_dlsym("xmalloc0");
  *(void **)&G.g_xmalloc = must_dlsym("galleon_xmalloc");
  *(void **)&G.g_malloc0 = must_dlsym("galleon_malloc0");
  *(void **)&G.g_xmalloc0 = must_dlsym("galleon_xmalloc0");
  *(void **)&G.free_sized = must_dlsym("free_sized");
  *(void **)&G.free_aligned_sized = must_dlsym("free_aligned_sized");
#else
  G.owns = galleon_owns;
  G.stats_get = galleon_stats_get;
  G.option_get = galleon_option_get;
  G.option_set = galleon_option_set;
  G.collect = galleon_collect;
  G.xmalloc = xmalloc;
  G.malloc0 = malloc0;
  G.xmalloc0 = xmalloc0;
  G.g_xmalloc = galleon_xmalloc;
  G.g_malloc0 = galleon_malloc0;
  G.g_xmalloc0 = galleon_xmalloc0;
  G.free_sized = free_sized;
  G.free_aligned_sized = free_aligned_sized;
#endif
}

/* Sizes chosen at run time so that gcc cannot reason about them. */
static volatile size_t v_huge = (size_t)PTRDIFF_MAX + 1;
static volatile size_t v_sizemax = SIZE_MAX;
static size_t huge_size(void) { return v_huge; }

static size_t page_size;

#define SHOULD_BE_NOMEM(expr)                                                    \
  do {                                                                           \
    errno = 0;                                                                   \
    void *r_ = (expr);                                                           \
    CHECKF(r_ == NULL, "%s returned %p, expected NULL", #expr, r_);             \
    CHECKF(errno == ENOMEM, "%s set errno %d, expected ENOMEM", #expr, errno);   \
  } while (0)

/* ---- 0. every standard symbol resolves into libgalleon ---- */
static void test_symbols(void) {
#if !TEST_NO_OVERRIDE
  static const char *const names[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
      "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
      "free_sized", "free_aligned_sized", "malloc_trim", "mallopt", "mallinfo",
      "mallinfo2", "malloc_stats"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *f = dlsym(RTLD_DEFAULT, names[i]);
    CHECKF(f != NULL, "symbol %s not found", names[i]);
    Dl_info info;
    CHECKF(dladdr(f, &info) != 0 && info.dli_fname != NULL, "dladdr(%s) failed", names[i]);
    CHECKF(strstr(info.dli_fname, "libgalleon") != NULL,
           "symbol %s resolves to %s, not libgalleon", names[i], info.dli_fname);
  }
  /* And the galleon_ API is there too. */
  CHECK(dlsym(RTLD_DEFAULT, "galleon_malloc") != NULL);
  CHECK(dlsym(RTLD_DEFAULT, "galleon_owns") != NULL);
#endif
}

/* ---- 1. malloc / free basics ---- */
static void test_malloc_free(void) {
  /* malloc(0): unique, non-NULL, freeable. */
  void *z[64];
  for (int i = 0; i < 64; i++) {
    z[i] = malloc(0);
    CHECK(z[i] != NULL);
    CHECK(G.owns(z[i]));
    for (int j = 0; j < i; j++) CHECKF(z[i] != z[j], "malloc(0) returned %p twice", z[i]);
  }
  for (int i = 0; i < 64; i++) free(z[i]);

  free(NULL);

  /* Alignment of plain malloc: 16 bytes on x86-64. */
  for (size_t n = 1; n < 5000; n += 7) {
    void *p = malloc(n);
    CHECK(p != NULL);
    CHECKF(((uintptr_t)p & 15) == 0, "malloc(%zu) = %p not 16-byte aligned", n, p);
    memset(p, 0x5a, n);
    free(p);
  }

  /* Sizes beyond PTRDIFF_MAX fail with ENOMEM. */
  SHOULD_BE_NOMEM(malloc(huge_size()));
  SHOULD_BE_NOMEM(malloc(v_sizemax));
  SHOULD_BE_NOMEM(malloc(v_sizemax - 4096));

  /* free preserves errno. */
  size_t sizes[] = {8, 700, 20000, 300000, 5 * MiB, 40 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(sizes[i]);
    CHECK(p != NULL);
    memset(p, 1, sizes[i]);
    errno = 1234;
    free(p);
    CHECKF(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
  }
  errno = 1234;
  free(NULL);
  CHECK(errno == 1234);
}

/* ---- 2. malloc_usable_size ---- */
static void test_usable_size(void) {
  CHECK(malloc_usable_size(NULL) == 0);
  enum { N = 400 };
  static void *blocks[N];
  static size_t usable[N];
  uint64_t rng = 42;
  for (int i = 0; i < N; i++) {
    size_t n;
    switch (i % 4) {
      case 0: n = rng_range(&rng, 1, 256); break;
      case 1: n = rng_range(&rng, 257, 8 * KiB); break;
      case 2: n = rng_range(&rng, 8 * KiB, 128 * KiB); break;
      default: n = (i % 40 == 3) ? rng_range(&rng, 1 * MiB, 4 * MiB) : rng_range(&rng, 1, 64 * KiB); break;
    }
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL);
    usable[i] = malloc_usable_size(blocks[i]);
    CHECKF(usable[i] >= n, "usable size %zu < request %zu", usable[i], n);
    CHECKF(usable[i] <= n + n / 2 + 4096 || usable[i] <= 2 * n + 64,
           "usable size %zu unreasonably large for %zu", usable[i], n);
    pattern_fill(blocks[i], usable[i]);
  }
  /* Interleave more allocations and frees; nothing may overwrite live blocks. */
  for (int i = 0; i < N; i += 3) {
    CHECK_PATTERN(blocks[i], usable[i]);
    free(blocks[i]);
    size_t n = rng_range(&rng, 1, 32 * KiB);
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL);
    usable[i] = malloc_usable_size(blocks[i]);
    CHECK(usable[i] >= n);
    pattern_fill(blocks[i], usable[i]);
  }
  for (int i = 0; i < N; i++) {
    CHECK(malloc_usable_size(blocks[i]) == usable[i]);
    CHECK_PATTERN(blocks[i], usable[i]);
    free(blocks[i]);
  }
}

/* ---- 3. calloc ---- */
static void test_calloc(void) {
  void *p = calloc(0, 0);
  CHECK(p != NULL);
  free(p);
  p = calloc(0, 100);
  CHECK(p != NULL);
  free(p);
  p = calloc(100, 0);
  CHECK(p != NULL);
  free(p);

  /* Overflow of count * size. */
  SHOULD_BE_NOMEM(calloc(v_sizemax / 2 + 2, 2));
  SHOULD_BE_NOMEM(calloc((size_t)1 << 33, (size_t)1 << 33));
  SHOULD_BE_NOMEM(calloc(1, huge_size()));

  /* Zeroed memory even when it is reused: dirty, free, calloc the same sizes. */
  static const size_t sizes[] = {1, 8, 24, 100, 500, 4000, 8192,  /* small */
                                 10000, 65536, 131072,            /* medium */
                                 300000, 1 * MiB, 3 * MiB,        /* large */
                                 24 * MiB};                       /* huge */
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    int count = n <= 8192 ? 200 : n <= 131072 ? 40 : n <= 3 * MiB ? 6 : 2;
    void *blk[200];
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < count; i++) {
        blk[i] = malloc(n);
        CHECK(blk[i] != NULL);
        memset(blk[i], 0xAA, malloc_usable_size(blk[i]));
      }
      for (int i = 0; i < count; i++) free(blk[i]);
      for (int i = 0; i < count; i++) {
        /* Alternate the two argument orders. */
        blk[i] = (i & 1) ? calloc(n, 1) : calloc(1, n);
        CHECK(blk[i] != NULL);
        CHECKF(all_bytes_are(blk[i], n, 0), "calloc(%zu) not zeroed (round %d)", n, round);
        memset(blk[i], 0xAA, malloc_usable_size(blk[i]));
      }
      for (int i = 0; i < count; i++) free(blk[i]);
    }
  }
  /* calloc with count * size products. */
  for (size_t c = 1; c < 5000; c = c * 3 + 1) {
    int *a = calloc(c, sizeof(int));
    CHECK(a != NULL);
    for (size_t i = 0; i < c; i++) CHECK(a[i] == 0);
    for (size_t i = 0; i < c; i++) a[i] = -1;
    free(a);
  }
}

/* ---- 4. realloc ---- */
static void grow_shrink(size_t from, size_t to, uint64_t seed) {
  unsigned char *p = malloc(from);
  CHECK(p != NULL);
  pattern_fill_seed(p, from, seed);
  size_t cur = from;
  /* Growth steps of irregular factors, then the same back down. */
  size_t steps[64];
  int ns = 0;
  for (size_t n = from; n < to && ns < 60; n = n + n / 2 + 13) steps[ns++] = n;
  steps[ns++] = to;
  for (int dir = 0; dir < 2; dir++) {
    for (int k = 0; k < ns; k++) {
      size_t n = dir == 0 ? steps[k] : steps[ns - 1 - k];
      unsigned char *q = realloc(p, n);
      CHECKF(q != NULL, "realloc(%zu -> %zu) failed", cur, n);
      size_t keep = cur < n ? cur : n;
      long bad = pattern_check_seed(q, keep, seed);
      CHECKF(bad < 0, "realloc %zu -> %zu lost contents at offset %ld", cur, n, bad);
      CHECK(malloc_usable_size(q) >= n);
      pattern_fill_seed(q, n, seed);
      p = q;
      cur = n;
    }
  }
  free(p);
}

static void test_realloc(void) {
  /* realloc(NULL, n) is malloc(n). */
  void *p = realloc(NULL, 100);
  CHECK(p != NULL);
  CHECK(malloc_usable_size(p) >= 100);
  memset(p, 3, 100);
  free(p);

  /* realloc(p, 0) frees and returns NULL (glibc semantics). */
  for (int i = 0; i < 1000; i++) {
    p = malloc(64);
    CHECK(p != NULL);
    void *q = realloc(p, 0);
    CHECK(q == NULL);
  }
  {
    galleon_stats_t a, b;
    p = malloc(64 * MiB);
    CHECK(p != NULL);
    G.stats_get(&a);
    void *q = realloc(p, 0);
    CHECK(q == NULL);
    G.stats_get(&b);
    CHECKF(b.in_use + 64 * MiB <= a.in_use,
           "realloc(p, 0) of 64 MiB did not free it: in_use %zu -> %zu", a.in_use, b.in_use);
  }

  /* Contents survive growth and shrinking through all size classes. */
  grow_shrink(1, 8 * KiB, 1);             /* small */
  grow_shrink(100, 128 * KiB, 2);         /* small -> medium */
  grow_shrink(8 * KiB, 4 * MiB, 3);       /* medium -> large */
  grow_shrink(1 * MiB, 48 * MiB, 4);      /* large -> huge */
  grow_shrink(1, 40 * MiB, 5);            /* everything */

  /* In-place shrink and regrow keeps the pointer valid. */
  p = malloc(1000);
  pattern_fill_seed(p, 1000, 9);
  p = realloc(p, 10);
  CHECK(p && pattern_check_seed(p, 10, 9) < 0);
  free(p);

  /* Impossible sizes: NULL + ENOMEM, old block intact. */
  static const size_t olds[] = {48, 5000, 100000, 2 * MiB};
  for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
    p = malloc(olds[i]);
    CHECK(p != NULL);
    pattern_fill_seed(p, olds[i], 77);
    SHOULD_BE_NOMEM(realloc(p, huge_size()));
    SHOULD_BE_NOMEM(realloc(p, v_sizemax));
    CHECKF(pattern_check_seed(p, olds[i], 77) < 0, "failed realloc damaged the block");
    CHECK(malloc_usable_size(p) >= olds[i]);
    p = realloc(p, olds[i] * 2);
    CHECK(p != NULL && pattern_check_seed(p, olds[i], 77) < 0);
    free(p);
  }

  /* reallocarray: overflow checked, otherwise realloc. */
  p = reallocarray(NULL, 10, 10);
  CHECK(p != NULL);
  pattern_fill_seed(p, 100, 5);
  errno = 0;
  void *q = reallocarray(p, v_sizemax / 2 + 2, 2);
  CHECK(q == NULL && errno == ENOMEM);
  CHECK(pattern_check_seed(p, 100, 5) < 0);
  q = reallocarray(p, 1000, 10);
  CHECK(q != NULL && pattern_check_seed(q, 100, 5) < 0);
  CHECK(malloc_usable_size(q) >= 10000);
  free(q);
}

/* ---- 5. aligned allocation ---- */
static void check_aligned(void *p, size_t align, size_t n, const char *fn) {
  CHECKF(p != NULL, "%s(%zu, %zu) failed", fn, align, n);
  CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, %zu) = %p misaligned", fn, align, n, p);
  size_t u = malloc_usable_size(p);
  CHECKF(u >= n, "%s(%zu, %zu): usable %zu", fn, align, n, u);
  CHECK(G.owns(p));
  pattern_fill(p, u);
}

static void test_aligned(void) {
  for (size_t align = 8; align <= 16 * MiB; align *= 2) {
    size_t sizes[] = {1, 8, 24, 100, align - 1, align, align + 1, 3 * align + 5, 70000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      size_t n = sizes[s];
      if (n == 0) continue;
      void *a = NULL, *b, *c, *d = NULL;
      if (align >= sizeof(void *)) {
        void *sentinel = (void *)0x1;
        a = sentinel;
        int rc = posix_memalign(&a, align, n);
        CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", align, n, rc);
        check_aligned(a, align, n, "posix_memalign");
      }
      b = aligned_alloc(align, n);
      check_aligned(b, align, n, "aligned_alloc");
      c = memalign(align, n);
      check_aligned(c, align, n, "memalign");
      if (n % align == 0) {
        d = aligned_alloc(align, n);
        check_aligned(d, align, n, "aligned_alloc");
      }
      /* None of them overlapped another. */
      CHECK_PATTERN(a, malloc_usable_size(a));
      CHECK_PATTERN(b, malloc_usable_size(b));
      CHECK_PATTERN(c, malloc_usable_size(c));
      if (d) CHECK_PATTERN(d, malloc_usable_size(d));
      free(a);
      if (s & 1)
        G.free_aligned_sized(b, align, n); /* b came from aligned_alloc(align, n) */
      else
        free(b);
      free(c);
      free(d);
    }
  }

  /* realloc of aligned blocks keeps their contents (alignment need not survive). */
  for (size_t align = 64; align <= 2 * MiB; align *= 8) {
    void *p = aligned_alloc(align, align);
    CHECK(p != NULL);
    pattern_fill_seed(p, align, align);
    CHECK(G.owns((char *)p + align / 2));
    p = realloc(p, 3 * align + 100);
    CHECK(p != NULL && pattern_check_seed(p, align, align) < 0);
    p = realloc(p, align / 2);
    CHECK(p != NULL && pattern_check_seed(p, align / 2, align) < 0);
    free(p);
  }

  /* posix_memalign errors: EINVAL for a bad alignment, ENOMEM for a huge size;
   * *memptr untouched in both cases. */
  static const size_t bad_aligns[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097,
                                      ((size_t)1 << 40) + 8};
  for (size_t i = 0; i < sizeof bad_aligns / sizeof bad_aligns[0]; i++) {
    void *m = (void *)0xdeadbeef;
    int rc = posix_memalign(&m, bad_aligns[i], 64);
    CHECKF(rc == EINVAL, "posix_memalign(alignment %zu) returned %d", bad_aligns[i], rc);
    CHECK(m == (void *)0xdeadbeef);
  }
  {
    void *m = (void *)0xdeadbeef;
    int rc = posix_memalign(&m, 64, huge_size());
    CHECKF(rc == ENOMEM, "posix_memalign(64, huge) returned %d", rc);
    CHECK(m == (void *)0xdeadbeef);
    rc = posix_memalign(&m, 4096, v_sizemax - 100);
    CHECKF(rc == ENOMEM, "posix_memalign(4096, SIZE_MAX-100) returned %d", rc);
    CHECK(m == (void *)0xdeadbeef);
  }
  SHOULD_BE_NOMEM(aligned_alloc(64, huge_size()));
  SHOULD_BE_NOMEM(memalign(4096, v_sizemax - 10));

  /* posix_memalign(.., 0) gives a freeable pointer (or NULL). */
  {
    void *m = NULL;
    CHECK(posix_memalign(&m, 64, 0) == 0);
    free(m);
  }

  /* valloc and pvalloc. */
  static const size_t vs[] = {1, 100, 4095, 4096, 4097, 10000, 70000, 1 * MiB + 1};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
    size_t n = vs[i];
    void *v = valloc(n);
    check_aligned(v, page_size, n, "valloc");
    void *pv = pvalloc(n);
    size_t rounded = (n + page_size - 1) & ~(page_size - 1);
    check_aligned(pv, page_size, rounded, "pvalloc");
    CHECK_PATTERN(v, malloc_usable_size(v));
    free(v);
    free(pv);
  }
  void *pv0 = pvalloc(0);
  CHECK(pv0 != NULL && ((uintptr_t)pv0 & (page_size - 1)) == 0);
  free(pv0);
  SHOULD_BE_NOMEM(valloc(huge_size()));
  SHOULD_BE_NOMEM(pvalloc(v_sizemax - 10));
}

/* ---- 6. free_sized / free_aligned_sized ---- */
static void test_sized_free(void) {
  galleon_stats_t a, b;
  G.free_sized(NULL, 0);
  G.free_aligned_sized(NULL, 64, 0);
  G.stats_get(&a);
  uint64_t rng = 7;
  for (int i = 0; i < 20000; i++) {
    size_t n = rng_range(&rng, 1, (i % 100 == 0) ? 2 * MiB : 20 * KiB);
    void *p = malloc(n);
    CHECK(p != NULL);
    memset(p, 0x11, n);
    G.free_sized(p, n);
    size_t al = (size_t)16 << (i % 9);
    void *q = aligned_alloc(al, n);
    CHECK(q != NULL && ((uintptr_t)q & (al - 1)) == 0);
    memset(q, 0x22, n);
    G.free_aligned_sized(q, al, n);
  }
  G.stats_get(&b);
  CHECKF(b.in_use <= a.in_use + 1 * MiB, "sized frees leak: in_use %zu -> %zu", a.in_use,
         b.in_use);
}

/* ---- 7. mallinfo, mallinfo2, malloc_trim, mallopt, malloc_stats ---- */
static size_t capture_stderr_of(void (*fn)(void)) {
  char path[] = "/tmp/galleon_api_stderr_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  CHECK(saved >= 0);
  CHECK(dup2(fd, 2) == 2);
  fn();
  fflush(stderr);
  CHECK(dup2(saved, 2) == 2);
  close(saved);
  off_t len = lseek(fd, 0, SEEK_END);
  close(fd);
  return (size_t)len;
}

static void call_malloc_stats(void) { malloc_stats(); }

static void test_glibc_extras(void) {
  size_t big = 64 * MiB;
  test_mallinfo2_t m0 = mallinfo2();
  void *p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  test_mallinfo2_t m1 = mallinfo2();
  CHECKF(m1.uordblks + m1.hblkhd >= m0.uordblks + m0.hblkhd + big,
         "mallinfo2 does not show a 64 MiB block: %zu+%zu -> %zu+%zu", m0.uordblks,
         m0.hblkhd, m1.uordblks, m1.hblkhd);
#if !TEST_NO_OVERRIDE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  free(p);
  struct mallinfo o0 = mallinfo();
  p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  struct mallinfo o1 = mallinfo();
#pragma GCC diagnostic pop
  unsigned long before = (unsigned long)(unsigned)o0.uordblks + (unsigned)o0.hblkhd;
  unsigned long after = (unsigned long)(unsigned)o1.uordblks + (unsigned)o1.hblkhd;
  CHECKF(after >= before + big, "mallinfo does not show a 64 MiB block: %lu -> %lu", before,
         after);
#endif
  free(p);
  test_mallinfo2_t m2 = mallinfo2();
  CHECKF(m2.uordblks + m2.hblkhd + big <= m1.uordblks + m1.hblkhd + 1 * MiB,
         "mallinfo2 still counts the freed 64 MiB block");

  int rc = malloc_trim(0);
  CHECKF(rc == 0 || rc == 1, "malloc_trim returned %d", rc);
  rc = malloc_trim(1 * MiB);
  CHECKF(rc == 0 || rc == 1, "malloc_trim returned %d", rc);
  CHECK(mallopt(M_TRIM_THRESHOLD, 256 * 1024) == 1);

  size_t n = capture_stderr_of(call_malloc_stats);
  CHECKF(n > 0, "malloc_stats wrote nothing to stderr");
}

/* ---- 8. xmalloc / malloc0 / xmalloc0 ---- */
static void child_xmalloc_huge(void *arg) {
  void *(*fn)(size_t) = *(void *(**)(size_t))arg;
  void *p = fn(v_sizemax);
  /* Not reached when the helper works. */
  fprintf(stderr, "xmalloc(SIZE_MAX) returned %p\n", p);
  _exit(3);
}

static void check_xmalloc_fails(void *(*fn)(size_t), const char *name) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(child_xmalloc_huge, &fn, 20, r) == 0);
  char buf[128];
  CHECKF(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 1,
         "%s(SIZE_MAX): child %s, stderr: %s", name, describe_status(r->status, buf, sizeof buf),
         r->err);
  size_t lines = 0;
  for (size_t i = 0; i < r->err_len; i++) lines += r->err[i] == '\n';
  CHECKF(lines == 1 && r->err_len > 1 && r->err[r->err_len - 1] == '\n',
         "%s(SIZE_MAX) must print exactly one line on stderr, got: \"%s\"", name, r->err);
  free(r);
}

static void check_zeroing(void *(*fn)(size_t), const char *name) {
  static const size_t sizes[] = {1, 64, 1000, 20000, 200000, 3 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *d[8];
    for (int k = 0; k < 8; k++) {
      d[k] = malloc(sizes[i]);
      CHECK(d[k]);
      memset(d[k], 0xAA, malloc_usable_size(d[k]));
    }
    for (int k = 0; k < 8; k++) free(d[k]);
    for (int k = 0; k < 8; k++) {
      d[k] = fn(sizes[i]);
      CHECKF(d[k] != NULL, "%s(%zu) failed", name, sizes[i]);
      CHECKF(all_bytes_are(d[k], sizes[i], 0), "%s(%zu) not zeroed", name, sizes[i]);
      CHECK(malloc_usable_size(d[k]) >= sizes[i]);
    }
    for (int k = 0; k < 8; k++) free(d[k]);
  }
}

static void test_never_fail(void) {
  void *p = G.xmalloc(100);
  CHECK(p != NULL && G.owns(p) && malloc_usable_size(p) >= 100);
  memset(p, 1, 100);
  free(p);
  p = G.g_xmalloc(5000);
  CHECK(p != NULL && G.owns(p));
  free(p);
  check_zeroing(G.malloc0, "malloc0");
  check_zeroing(G.xmalloc0, "xmalloc0");
  check_zeroing(G.g_malloc0, "galleon_malloc0");
  check_zeroing(G.g_xmalloc0, "galleon_xmalloc0");
  check_xmalloc_fails(G.xmalloc, "xmalloc");
  check_xmalloc_fails(G.xmalloc0, "xmalloc0");
  check_xmalloc_fails(G.g_xmalloc, "galleon_xmalloc");
  /* malloc0 fails softly. */
  errno = 0;
  CHECK(G.malloc0(v_sizemax) == NULL && errno == ENOMEM);
}

/* ---- 9. galleon_owns, stats, options, collect ---- */
static int a_static_variable;

static void test_introspection(void) {
  int on_stack = 0;
  CHECK(!G.owns(&on_stack));
  CHECK(!G.owns(&a_static_variable));
  CHECK(!G.owns(NULL));
  CHECK(!G.owns((void *)test_introspection));
  void *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  CHECK(!G.owns(m));
  CHECK(!G.owns((char *)m + 4096));
  munmap(m, 1 * MiB);

  static const size_t sizes[] = {1, 100, 5000, 100000, 2 * MiB, 30 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = malloc(sizes[i]);
    CHECK(p != NULL);
    CHECKF(G.owns(p), "galleon_owns(malloc(%zu)) is false", sizes[i]);
    CHECKF(G.owns(p + sizes[i] - 1), "galleon_owns(interior of malloc(%zu)) is false", sizes[i]);
    free(p);
  }

  galleon_stats_t s0, s1, s2;
  G.stats_get(&s0);
  CHECK(s0.mapped_peak >= s0.mapped);
  CHECK(s0.committed <= s0.mapped);
  CHECK(s0.in_use <= s0.mapped);
  CHECK(s0.heaps >= 1);
  CHECK(s0.mmap_calls >= 1);
  size_t big = 48 * MiB;
  void *p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  void *smalls[100];
  for (int i = 0; i < 100; i++) smalls[i] = malloc(1000);
  G.stats_get(&s1);
  CHECKF(s1.in_use >= s0.in_use + big + 100 * 1000, "in_use %zu -> %zu", s0.in_use, s1.in_use);
  CHECK(s1.mapped >= s1.in_use);
  CHECK(s1.mapped_peak >= s1.mapped);
  CHECK(s1.committed <= s1.mapped);
  CHECK(s1.large_blocks >= s0.large_blocks + 1);
  CHECK(s1.segments >= 1);
  CHECK(s1.mmap_calls >= s0.mmap_calls);
  free(p);
  for (int i = 0; i < 100; i++) free(smalls[i]);
  G.stats_get(&s2);
  CHECKF(s2.in_use + big <= s1.in_use, "in_use %zu -> %zu after freeing", s1.in_use, s2.in_use);
  CHECK(s2.large_blocks + 1 <= s1.large_blocks);
  CHECK(s2.mapped_peak >= s1.mapped_peak);

  /* Options: known names set and read back; unknown names rejected. */
  long d = G.option_get("purge_delay_ms");
  CHECK(G.option_set("purge_delay_ms", d) == 0);
  CHECK(G.option_get("purge_delay_ms") == d);
  CHECK(G.option_set("retain_bytes", 12345678) == 0);
  CHECK(G.option_get("retain_bytes") == 12345678);
  CHECK(G.option_set("no_such_option", 1) == -1);

  /* collect: purges; everything still works afterwards. */
  void *keep = malloc(300);
  pattern_fill(keep, 300);
  G.collect();
  galleon_stats_t s3;
  G.stats_get(&s3);
  CHECK(s3.committed <= s3.mapped);
  CHECK_PATTERN(keep, 300);
  free(keep);
}

/* ---- options from the environment (run first: mallopt changes options) ---- */
static void test_env_options(void) {
  /* Options given in the environment were read at start. */
  static const char *const opt_names[] = {"purge_delay_ms", "purge_decommit", "retain_bytes",
                                          "segment_cache"};
  static const char *const env_names[] = {"GALLEON_PURGE_DELAY_MS", "GALLEON_PURGE_DECOMMIT",
                                          "GALLEON_RETAIN_BYTES", "GALLEON_SEGMENT_CACHE"};
  for (int i = 0; i < 4; i++) {
    const char *e = getenv(env_names[i]);
    if (e) {
      long v = G.option_get(opt_names[i]);
      CHECKF(v == atol(e), "%s=%s in the environment, but option %s is %ld", env_names[i], e,
             opt_names[i], v);
      printf("  option %s = %ld from the environment\n", opt_names[i], v);
    }
  }

}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  init_entry_points();
  double t0 = now_s();
  test_env_options();
  test_symbols();
  test_malloc_free();
  test_usable_size();
  test_calloc();
  test_realloc();
  test_aligned();
  test_sized_free();
  test_glibc_extras();
  test_never_fail();
  test_introspection();
  printf("api tests passed (%s%s) in %.2f s\n",
#ifdef TEST_PRELOAD
         "preload",
#else
         "linked",
#endif
         TEST_NO_OVERRIDE ? ", no override" : "", now_s() - t0);
  return 0;
}
