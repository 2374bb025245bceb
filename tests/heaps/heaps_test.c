/* heaps_test.c: first-class heaps (galleon_heap_*).
 *   destroy: a million live blocks (small, medium, large) released in one call;
 *   cross-thread frees: other threads free blocks of the heap before it is destroyed;
 *   delete: live blocks stay valid and are freed later from another thread;
 *   calloc/realloc/memalign in a heap; errors; heaps reused, memory bounded. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdbool.h>

#include "../test_util.h"

static size_t in_use(void) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  return s.in_use;
}

static size_t mapped(void) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  return s.mapped;
}

#define MANY (1000000 / TEST_SCALE_DIV)

static void test_destroy_many(void) {
  galleon_heap_t *h = galleon_heap_new();
  CHECK(h != NULL);
  char **blocks = malloc(MANY * sizeof(char *));
  CHECK(blocks != NULL);
  size_t before = in_use();
  uint64_t rng = 99;
  size_t bytes = 0;
  for (size_t i = 0; i < MANY; i++) {
    size_t n = i % 5000 == 0 ? rng_range(&rng, 200 * KiB, 2 * MiB)
               : i % 100 == 0 ? rng_range(&rng, 2 * KiB, 100 * KiB) : rng_range(&rng, 1, 256);
    blocks[i] = galleon_heap_malloc(h, n);
    CHECK(blocks[i] != NULL);
    pattern_fill(blocks[i], n < 64 ? n : 64);
    bytes += n;
  }
  for (size_t i = 0; i < MANY; i += 997) CHECK(galleon_owns(blocks[i]));
  size_t during = in_use();
  CHECKF(during >= before + bytes * 9 / 10, "in_use %zu after %zu bytes in the heap", during, bytes);
  double t0 = now_s();
  galleon_heap_destroy(h);
  double t1 = now_s();
  size_t after = in_use();
  printf("heaps/destroy: %d blocks, %.1f MiB, destroyed in %.1f ms; in_use %.1f -> %.1f MiB\n", MANY,
         (double)bytes / MiB, (t1 - t0) * 1000, (double)during / MiB, (double)after / MiB);
  CHECKF(after <= before + MiB, "in_use %zu after destroy (was %zu before the heap)", after, before);
  free(blocks);
}

typedef struct {
  char **blocks;
  size_t from, to, step;
} free_job_t;

static void *free_some(void *arg) {
  free_job_t *job = arg;
  for (size_t i = job->from; i < job->to; i += job->step) free(job->blocks[i]);
  return NULL;
}

static void test_cross_thread_frees(void) {
  const size_t n = 200000 / TEST_SCALE_DIV;
  for (int round = 0; round < 3; round++) {
    galleon_heap_t *h = galleon_heap_new();
    CHECK(h != NULL);
    char **blocks = malloc(n * sizeof(char *));
    CHECK(blocks != NULL);
    for (size_t i = 0; i < n; i++) {
      blocks[i] = galleon_heap_malloc(h, i % 1000 == 0 ? 300 * KiB : 48 + i % 200);
      CHECK(blocks[i] != NULL);
      blocks[i][0] = (char)i;
    }
    /* Two threads free every other block (remote frees: pages fill up, get
     * notified, keep blocks on their remote lists); the owner allocates more. */
    free_job_t a = {blocks, 0, n, 4}, b = {blocks, 2, n, 4};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, free_some, &a) == 0);
    CHECK(pthread_create(&tb, NULL, free_some, &b) == 0);
    for (size_t i = 0; i < n / 10; i++) CHECK(galleon_heap_malloc(h, 64) != NULL);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (size_t i = 1; i < n; i += 2) CHECK(blocks[i][0] == (char)i);
    galleon_heap_destroy(h);
    free(blocks);
  }
  printf("heaps/cross_thread_frees: ok\n");
}

static void *free_all(void *arg) {
  free_job_t *job = arg;
  for (size_t i = job->from; i < job->to; i += job->step) {
    CHECK_PATTERN(job->blocks[i], 100);
    free(job->blocks[i]);
  }
  return NULL;
}

static void test_delete_keeps_blocks(void) {
  const size_t n = 20000;
  galleon_heap_t *h = galleon_heap_new();
  CHECK(h != NULL);
  char **blocks = malloc(n * sizeof(char *));
  CHECK(blocks != NULL);
  for (size_t i = 0; i < n; i++) {
    blocks[i] = galleon_heap_malloc(h, i % 2000 == 0 ? 500 * KiB : 100 + i % 900);
    CHECK(blocks[i] != NULL);
    pattern_fill(blocks[i], 100);
  }
  galleon_heap_delete(h);
  /* Still valid: another thread checks and frees them. */
  free_job_t job = {blocks, 0, n, 1};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_all, &job) == 0);
  pthread_join(t, NULL);
  free(blocks);
  printf("heaps/delete: %zu blocks stayed valid and were freed by another thread\n", n);
}

static void test_calls(void) {
  galleon_heap_t *h = galleon_heap_new();
  CHECK(h != NULL);
  unsigned char *z = galleon_heap_calloc(h, 1000, 10);
  CHECK(z != NULL && all_bytes_are(z, 10000, 0));
  char *r = galleon_heap_realloc(h, NULL, 100);
  CHECK(r != NULL);
  pattern_fill_seed(r, 100, 42);
  size_t sizes[] = {100000, 3 * MiB, 5 * MiB, 200, 10};
  size_t kept = 100;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    r = galleon_heap_realloc(h, r, sizes[i]);
    CHECK(r != NULL);
    if (sizes[i] < kept) kept = sizes[i];
    CHECKF(pattern_check_seed(r, kept, 42) < 0, "realloc in a heap to %zu lost the contents", sizes[i]);
  }
  CHECK(galleon_heap_realloc(h, r, 0) == NULL); /* frees */
  for (size_t align = 16; align <= 2 * MiB; align *= 2) {
    void *a = galleon_heap_memalign(h, align, 100);
    CHECKF(a != NULL && ((uintptr_t)a & (align - 1)) == 0, "galleon_heap_memalign(%zu) = %p", align, a);
    CHECK(malloc_usable_size(a) >= 100);
  }
  errno = 0;
  CHECK(galleon_heap_memalign(h, 48, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(galleon_heap_malloc(h, (size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(galleon_heap_calloc(h, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
  galleon_heap_destroy(h); /* the memalign blocks and z go with it */
  galleon_heap_destroy(NULL);
  galleon_heap_delete(NULL);
  printf("heaps/calls: ok\n");
}

static void test_reuse_bounded(void) {
  size_t m0 = mapped();
  for (int i = 0; i < 2000 / TEST_SCALE_DIV; i++) {
    galleon_heap_t *h = galleon_heap_new();
    CHECK(h != NULL);
    for (int j = 0; j < 500; j++) CHECK(galleon_heap_malloc(h, (size_t)(j * 37) % 3000 + 1) != NULL);
    CHECK(galleon_heap_malloc(h, 400 * KiB) != NULL);
    galleon_heap_destroy(h);
  }
  galleon_collect();
  size_t m1 = mapped();
  printf("heaps/reuse: 2000 heaps made and destroyed: mapped %.1f -> %.1f MiB\n", (double)m0 / MiB,
         (double)m1 / MiB);
  CHECKF(m1 < m0 + 64 * MiB, "mapped grew from %zu to %zu", m0, m1);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  test_calls();
  test_destroy_many();
  test_cross_thread_frees();
  test_delete_keeps_blocks();
  test_reuse_bounded();
  printf("heaps tests passed\n");
  return 0;
}
