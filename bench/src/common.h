/* common.h - shared helpers for the Galleon benchmark workloads.
 * Every workload uses only the standard allocation API (malloc, free, realloc,
 * posix_memalign, aligned_alloc), so any allocator can be swapped in with
 * LD_PRELOAD.  Each program takes "SIZE THREADS" as its first two arguments,
 * checks its own data and prints exactly one line starting with "RESULT". */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _GNU_SOURCE
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#define UNUSED __attribute__((unused))
#else
#define UNUSED
#endif

/* Keep the compiler from eliding a malloc/free pair or a store. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

static UNUSED void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("BENCH FAILURE: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  abort();
}

static UNUSED double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: small, fast, deterministic per-thread PRNG. */
static inline uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi) { /* inclusive */
  return lo + rng_next(s) % (hi - lo + 1);
}

/* A size drawn from tiers: x = rng % `total` picks the first tier with x < below,
 * then a size in [lo, hi] of that tier (the last tier's `below` is `total`). */
typedef struct {
  uint32_t below, lo, hi;
} size_tier_t;
static inline size_t size_from_tiers(uint64_t *r, uint32_t total, const size_tier_t *tiers) {
  uint64_t x = rng_next(r) % total;
  const size_tier_t *t = tiers;
  while (x >= t->below) t++;
  return (size_t)rng_range(r, t->lo, t->hi);
}

static UNUSED void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) die("malloc(%zu) returned NULL", n);
  return p;
}

/* Tagging: a block of n bytes gets a 64-bit tag at its start (n >= 8), the low
 * tag byte at its end and at its middle.  tag_check verifies all three; any
 * overlap between two live blocks or a stray write by the allocator shows up. */
static inline uint64_t tag_of(uint64_t id, size_t n) {
  return (id * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)n << 1) ^ 0x5bd1e995u;
}
static inline void tag_fill(void *p, size_t n, uint64_t id) {
  unsigned char *b = (unsigned char *)p;
  uint64_t t = tag_of(id, n);
  if (n >= 8) {
    memcpy(b, &t, 8);
    if (n > 8) b[n - 1] = (unsigned char)(t >> 8);
    if (n >= 16) b[n / 2] = (unsigned char)(t >> 16);
  } else if (n > 0) {
    b[0] = (unsigned char)t;
    if (n > 1) b[n - 1] = (unsigned char)(t >> 8);
  }
}
static inline int tag_ok(const void *p, size_t n, uint64_t id) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t t = tag_of(id, n), got;
  if (n >= 8) {
    memcpy(&got, b, 8);
    if (got != t) return 0;
    if (n > 8 && b[n - 1] != (unsigned char)(t >> 8)) return 0;
    if (n >= 16 && b[n / 2] != (unsigned char)(t >> 16)) return 0;
  } else if (n > 0) {
    if (b[0] != (unsigned char)t) return 0;
    if (n > 1 && b[n - 1] != (unsigned char)(t >> 8)) return 0;
  }
  return 1;
}
#define TAG_CHECK(p, n, id, what)                                                       \
  do {                                                                                  \
    if (!tag_ok((p), (n), (id)))                                                        \
      die("%s: block %p (size %zu, id %llu) corrupted", (what), (void *)(p), (size_t)(n), \
          (unsigned long long)(id));                                                    \
  } while (0)

/* Resident set size in KiB, from /proc/self/statm (second field, pages). */
static UNUSED long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static UNUSED long arg_long(int argc, char **argv, int i, long def) {
  if (argc > i) {
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v <= 0) die("bad argument %d: '%s' (want a positive integer)", i, argv[i]);
    return v;
  }
  return def;
}

/* Runs fn(thread index) on `threads` threads and returns the elapsed seconds. */
static UNUSED double run_threads(void *(*fn)(void *), int threads) {
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  double t0 = now_s();
  for (int t = 0; t < threads; t++)
    if (pthread_create(&tid[t], NULL, fn, (void *)(uintptr_t)t)) die("pthread_create");
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  double el = now_s() - t0;
  free(tid);
  return el;
}

static UNUSED uint64_t mix_hash(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  return h;
}
#endif
