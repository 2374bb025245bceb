/* misuse.h: what every misuse program shares (tests/misuse/README.md).
 *
 * A misuse program computes the exact line Galleon must print -- it knows the
 * pointers -- and announces it on stdout as "expect: <line>" before it performs
 * the misuse; a program of valid use announces "expect: exit 0".  misuse_runner
 * holds the program to it.  Output goes through write(2) only: stdio would
 * allocate its buffer from Galleon and change the heap under the test.
 *
 * Each program includes this header only, and it includes test_util.h last, so in
 * the sanitizer builds the calls below are galleon_* too.
 */
#ifndef GALLEON_MISUSE_H
#define GALLEON_MISUSE_H

#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "../test_util.h"

/* Hides a pointer's provenance from the compiler, so it can neither warn about
 * nor fold away the misuse that follows. */
static void *volatile misuse_sink;
static inline void *opaque(void *p) {
  misuse_sink = p;
  return misuse_sink;
}
static inline void *opaque_addr(uintptr_t a) { return opaque((void *)a); }

/* ---- Output without stdio ---- */
typedef struct {
  char buf[512];
  size_t len;
} mline_t;

static inline void ml_str(mline_t *l, const char *s) {
  while (*s && l->len + 1 < sizeof l->buf) l->buf[l->len++] = *s++;
}
/* As Galleon's gl_fmt_hex: "0x", lower case, no leading zeros ("0x0" for 0). */
static inline void ml_hex(mline_t *l, uintptr_t v) {
  ml_str(l, "0x");
  int shift = 60;
  while (shift > 0 && ((v >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) {
    char d[2] = {"0123456789abcdef"[(v >> shift) & 0xf], 0};
    ml_str(l, d);
  }
}
static inline void ml_write(int fd, mline_t *l) {
  l->buf[l->len++] = '\n';
  size_t off = 0;
  while (off < l->len) {
    ssize_t n = write(fd, l->buf + off, l->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += (size_t)n;
  }
}

/* A test's own failure before the misuse (its assumption about the heap does not
 * hold): one line on stderr, exit 2.  The runner reports it as a failure. */
#define SETUP(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      mline_t l_ = {.len = 0};                                                   \
      ml_str(&l_, "misuse setup failed: ");                                      \
      ml_str(&l_, #cond);                                                        \
      ml_write(2, &l_);                                                          \
      _exit(2);                                                                  \
    }                                                                            \
  } while (0)

/* ---- The announcement ---- */

/* "expect: galleon: error: <what> <P><detail>[<B>]", the format of gl_fatal. */
static inline void expect_error(const char *what, const void *p, const char *detail,
                                const void *block) {
  mline_t l = {.len = 0};
  ml_str(&l, "expect: galleon: error: ");
  ml_str(&l, what);
  ml_str(&l, " ");
  ml_hex(&l, (uintptr_t)p);
  if (detail) ml_str(&l, detail);
  if (block) ml_hex(&l, (uintptr_t)block);
  ml_write(1, &l);
}
static inline void expect_double_free(const void *p) { expect_error("double free of", p, NULL, NULL); }
static inline void expect_foreign(const char *what, const void *p) {
  expect_error(what, p, ": not allocated by galleon", NULL);
}
static inline void expect_interior(const char *what, const void *p, const void *block) {
  expect_error(what, p, ": interior pointer of the block at ", block);
}
static inline void expect_already_freed(const char *what, const void *p) {
  expect_error(what, p, ": block already freed", NULL);
}
static inline void expect_exit0(void) {
  mline_t l = {.len = 0};
  ml_str(&l, "expect: exit 0");
  ml_write(1, &l);
}

/* The misuse came back: say so on stderr and exit 1 (never reached when Galleon
 * catches it). */
__attribute__((noreturn)) static inline void misuse_returned(const char *call,
                                                            const void *result) {
  mline_t l = {.len = 0};
  ml_str(&l, "misuse not caught: ");
  ml_str(&l, call);
  ml_str(&l, " returned");
  if (result) {
    ml_str(&l, " ");
    ml_hex(&l, (uintptr_t)result);
  }
  ml_write(2, &l);
  _exit(1);
}

/* ---- Running a case on a heap of its own ---- */

/* Runs fn on a new thread, which gets a new heap: nothing else ever allocated
 * from its pages, whatever libc did in the main thread before main(). */
static inline void *misuse_thread_main_(void *arg) {
  ((void (*)(void))arg)();
  return NULL;
}
static inline void run_on_new_heap(void (*fn)(void)) {
  pthread_t t;
  SETUP(pthread_create(&t, NULL, misuse_thread_main_, (void *)fn) == 0);
  SETUP(pthread_join(t, NULL) == 0);
}

/* ---- Galleon's geometry, for the cases whose setup depends on it ----
 * Segments of 4 MiB; pages of 64 KiB (blocks up to 8 KiB) or 512 KiB (up to
 * 128 KiB); the first page of a segment starts after the 16 KiB header.  These
 * are checked only in SETUP conditions: a geometry change fails the setup loudly
 * instead of testing something else. */
#define MISUSE_SEGMENT ((uintptr_t)4 << 20)
#define MISUSE_HEADER ((uintptr_t)16 << 10)
#define MISUSE_SMALL_PAGE_SHIFT 16
#define MISUSE_MEDIUM_PAGE_SHIFT 19

/* The first block of the page that holds p. */
static inline uintptr_t page_first_block(const void *p, unsigned page_shift) {
  uintptr_t a = (uintptr_t)p, seg = a & ~(MISUSE_SEGMENT - 1);
  uintptr_t page = a & ~(((uintptr_t)1 << page_shift) - 1);
  return page == seg ? seg + MISUSE_HEADER : page;
}

#endif /* GALLEON_MISUSE_H */
