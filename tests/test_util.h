/* test_util.h: shared helpers of the Galleon test programs.
 *
 * Every test program includes this file as its LAST include.  In the sanitizer
 * builds (GALLEON_NO_OVERRIDE=1) the standard allocation names are the
 * sanitizer's, not Galleon's, so this header renames the calls of the test code to
 * the galleon_ prefixed entry points: the tests then exercise Galleon's code while
 * ASan/TSan watch it from outside.
 *
 * Helpers: CHECK/CHECKF (print file:line and abort), a pattern fill/check derived
 * from an address and a size, RSS reading without allocating, and a child runner
 * that forks, captures the child's stderr through a pipe and reports how it ended.
 */
#ifndef GALLEON_TEST_UTIL_H
#define GALLEON_TEST_UTIL_H

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TEST_PRELOAD
#include "galleon.h"
#endif

/* glibc 2.36 has no prototypes for the C23 sized frees. */
extern void free_sized(void *ptr, size_t size);
extern void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#if defined(GALLEON_NO_OVERRIDE) && GALLEON_NO_OVERRIDE
#define TEST_NO_OVERRIDE 1
#define malloc galleon_malloc
#define free galleon_free
#define calloc galleon_calloc
#define realloc galleon_realloc
#define reallocarray galleon_reallocarray
#define posix_memalign galleon_posix_memalign
#define aligned_alloc galleon_aligned_alloc
#define memalign galleon_memalign
#define valloc galleon_valloc
#define pvalloc galleon_pvalloc
#define malloc_usable_size galleon_malloc_usable_size
#define malloc_trim galleon_malloc_trim
#define mallopt galleon_mallopt
#define malloc_stats galleon_malloc_stats
#define free_sized galleon_free_sized
#define free_aligned_sized galleon_free_aligned_sized
#define mallinfo2 galleon_mallinfo2
/* The never-fail helpers are reached through their prefixed names here. */
#define xmalloc galleon_xmalloc
#define malloc0 galleon_malloc0
#define xmalloc0 galleon_xmalloc0
typedef struct galleon_mallinfo test_mallinfo2_t;
#else
#define TEST_NO_OVERRIDE 0
typedef struct mallinfo2 test_mallinfo2_t;
#endif

#if defined(TEST_SANITIZE_THREAD)
#define TEST_SCALE_DIV 6 /* TSan: same shapes, fewer iterations */
#elif defined(TEST_SANITIZE_ADDRESS)
#define TEST_SCALE_DIV 2
#else
#define TEST_SCALE_DIV 1
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
      fflush(stderr);                                                            \
      abort();                                                                   \
    }                                                                            \
  } while (0)

#define CHECKF(cond, ...)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                              \
      fputc('\n', stderr);                                                       \
      fflush(stderr);                                                            \
      abort();                                                                   \
    }                                                                            \
  } while (0)

/* ---- Patterns ---- */
typedef uint64_t __attribute__((may_alias, aligned(1))) tu_u64u;

static inline uint64_t tu_mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

static inline uint64_t tu_seed(const void *p, size_t n) {
  return tu_mix((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL ^ (uint64_t)n);
}

static inline uint64_t tu_word(uint64_t seed, size_t i) {
  return seed ^ ((uint64_t)i * 0xD6E8FEB86659FD93ULL);
}

/* Fill n bytes at p with a pattern derived from seed. */
static inline void pattern_fill_seed(void *p, size_t n, uint64_t seed) {
  unsigned char *b = (unsigned char *)p;
  size_t words = n / 8, i;
  for (i = 0; i < words; i++) *(tu_u64u *)(b + 8 * i) = tu_word(seed, i);
  if (n % 8) {
    uint64_t w = tu_word(seed, words);
    for (size_t j = 0; j < n % 8; j++) b[8 * words + j] = (unsigned char)(w >> (8 * j));
  }
}

/* Index of the first byte that differs from the pattern, or -1 when intact. */
static inline long pattern_check_seed(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = (const unsigned char *)p;
  size_t words = n / 8, i;
  for (i = 0; i < words; i++)
    if (*(const tu_u64u *)(b + 8 * i) != tu_word(seed, i)) {
      uint64_t w = tu_word(seed, i);
      for (size_t j = 0; j < 8; j++)
        if (b[8 * i + j] != (unsigned char)(w >> (8 * j))) return (long)(8 * i + j);
    }
  if (n % 8) {
    uint64_t w = tu_word(seed, words);
    for (size_t j = 0; j < n % 8; j++)
      if (b[8 * words + j] != (unsigned char)(w >> (8 * j))) return (long)(8 * words + j);
  }
  return -1;
}

/* The pattern of a block derived from its own address and size. */
static inline void pattern_fill(void *p, size_t n) { pattern_fill_seed(p, n, tu_seed(p, n)); }
static inline long pattern_check(const void *p, size_t n) {
  return pattern_check_seed(p, n, tu_seed(p, n));
}

#define CHECK_PATTERN(p, n)                                                      \
  do {                                                                           \
    long bad_at_ = pattern_check((p), (n));                                      \
    CHECKF(bad_at_ < 0, "block %p of %zu bytes corrupt at offset %ld", (void *)(p), \
           (size_t)(n), bad_at_);                                                \
  } while (0)

static inline int all_bytes_are(const void *p, size_t n, unsigned char v) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t vw = 0x0101010101010101ULL * v;
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    if (*(const tu_u64u *)(b + i) != vw) return 0;
  for (; i < n; i++)
    if (b[i] != v) return 0;
  return 1;
}

/* ---- Random numbers (per caller state, thread-safe) ---- */
static inline uint64_t rng_next(uint64_t *s) {
  *s += 0x9E3779B97F4A7C15ULL;
  return tu_mix(*s);
}
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) { /* [lo, hi] */
  return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- Time and memory ---- */
static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time the calling thread has used. */
static inline double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

#ifdef TEST_ASAN
/* Bytes of AddressSanitizer's shadow memory that are resident: the mappings that
 * start in x86-64's shadow range (0x7fff8000 up to 0x10007fff8000), from
 * /proc/self/smaps, read without allocating.  Galleon poisons the blocks it frees
 * (annotate.h), which writes their shadow; the shadow stays resident after Galleon
 * purges or unmaps the blocks (the runtime keeps it), and is not Galleon's. */
static inline size_t asan_shadow_resident(void) {
  static char buf[1 << 16];
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  size_t have = 0, kib = 0;
  bool in_shadow = false;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    CHECK(n >= 0);
    have += (size_t)n;
    buf[have] = 0;
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = 0;
      unsigned long long start;
      char dash;
      if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
        if (sscanf(line, "%llx%c", &start, &dash) == 2 && dash == '-')
          in_shadow = start >= 0x7fff8000ull && start < 0x10007fff8000ull;
      } else if (in_shadow && strncmp(line, "Rss:", 4) == 0) {
        kib += strtoul(line + 4, NULL, 10);
      }
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (n == 0) break;
  }
  close(fd);
  return kib * 1024;
}
#endif

/* Resident set size in bytes, read from /proc/self/statm without allocating (under
 * ASan, less the sanitizer's resident shadow memory). */
static inline size_t rss_bytes(void) {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  CHECK(n > 0);
  buf[n] = 0;
  const char *s = buf;
  while (*s && *s != ' ') s++; /* skip "size" */
  while (*s == ' ') s++;
  size_t pages = 0;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + (size_t)(*s++ - '0');
  size_t rss = pages * (size_t)sysconf(_SC_PAGESIZE);
#ifdef TEST_ASAN
  size_t shadow = asan_shadow_resident();
  rss = rss > shadow ? rss - shadow : 0;
#endif
  return rss;
}

/* A function of the preloaded library, by name (the preloaded test variants reach
 * Galleon's own API this way). */
__attribute__((unused)) static void *must_dlsym(const char *name) {
  void *f = dlsym(RTLD_DEFAULT, name);
  CHECKF(f != NULL, "dlsym(%s) failed: is libgalleon preloaded?", name);
  return f;
}

/* ---- Child runner ---- */
typedef struct {
  int status;       /* as from waitpid */
  size_t err_len;   /* bytes captured from the child's stderr */
  char err[16384];  /* NUL-terminated */
} child_result_t;

/* Fork; in the child redirect stderr into a pipe, arm alarm(timeout_s), run
 * fn(arg) and _exit(0) when it returns.  The parent captures the child's stderr
 * and waits for it.  Returns 0, or -1 when fork failed. */
static inline int run_child(void (*fn)(void *), void *arg, unsigned timeout_s,
                            child_result_t *res) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    alarm(timeout_s);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  res->err_len = 0;
  for (;;) {
    char tmp[4096];
    ssize_t n = read(fds[0], tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t room = sizeof res->err - 1 - res->err_len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(res->err + res->err_len, tmp, take);
    res->err_len += take;
  }
  res->err[res->err_len] = 0;
  close(fds[0]);
  while (waitpid(pid, &res->status, 0) < 0) CHECK(errno == EINTR);
  return 0;
}

static inline const char *describe_status(int status, char *buf, size_t n) {
  if (WIFEXITED(status))
    snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, n, "status 0x%x", status);
  return buf;
}

#endif /* GALLEON_TEST_UTIL_H */
