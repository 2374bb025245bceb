/* fuzz_api.c: a libFuzzer target over Galleon's galleon_* API.
 *
 * The allocator sources are compiled into this program without override.c, so
 * malloc/free stay the system's (libFuzzer's own allocations never reach Galleon)
 * and every call below goes to Galleon explicitly.
 *
 * An input is a sequence of operations on a table of SLOTS block slots.  Each
 * operation is one opcode byte, one slot byte and its arguments (sizes, counts,
 * alignments) read from the following bytes; when the input runs out, missing
 * bytes read as zero.  Sizes cover tiny, small, medium and large blocks, the
 * size-class boundaries and absurd values (SIZE_MAX - k, PTRDIFF_MAX + k, 2^62,
 * 2^63, any value >= 2^48); alignments cover every power of two 1..2^63, zero and
 * arbitrary non-powers of two.
 *
 * Checked after every call (abort() with a message on the first violation):
 *  - a successful block is aligned as requested (at least 16 bytes), its usable
 *    size is >= the request and plausible, galleon_owns() knows its first and last
 *    byte, and [p, p + usable) overlaps no other live block;
 *  - every block is filled over its whole usable size with a pattern derived from
 *    its slot, size and a generation counter, verified intact before it is freed or
 *    resized (realloc must preserve min(old, new) bytes; a failed realloc must leave
 *    the block and its usable size untouched); calloc memory reads zero;
 *  - a request that cannot be satisfied returns NULL with errno ENOMEM (EINVAL from
 *    memalign/aligned_alloc for an alignment over 2^63, as glibc); posix_memalign
 *    returns EINVAL for an alignment that is not a power-of-two multiple of
 *    sizeof(void *), else ENOMEM, and leaves *memptr alone; realloc(p, 0) frees p
 *    and returns NULL;
 *  - a request that can be satisfied (size and alignment within the budget below)
 *    succeeds;
 *  - errno is unchanged by a successful call, by free and by the maintenance calls
 *    (collect, malloc_trim, galleon_option_set).
 * Live blocks are bounded (LIVE_LIMIT bytes of usable size): a request that would
 * exceed it is skipped.  Every slot is freed at the end of each input, so inputs
 * are independent.
 *
 * While a bug the fuzzer found is being fixed, a guard that skips its requests may
 * go in the op function under #ifdef FUZZ_SKIP_KNOWN_BUGS (off by default), so that
 * the fuzzer can explore past it; none is needed at present.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "galleon.h"

#define SLOTS 64
#define LIVE_LIMIT ((size_t)64 << 20)   /* usable bytes of all live blocks */
#define LARGE_LIMIT ((size_t)6 << 20)   /* largest "large" request drawn */
#define ABSURD_MIN ((size_t)1 << 48)    /* sizes/alignments from here on must fail */
#define MAYBE_ALIGN ((size_t)1 << 28)   /* alignments from here on may fail (address space) */
#define FULL_CHECK_MAX ((size_t)160 << 10) /* blocks up to this size: every byte checked */
#define SAMPLE_HEAD ((size_t)64 << 10)  /* bigger blocks: head, tail and both ends of */
#define SAMPLE_EDGE 32                  /* each 4 KiB page are filled and checked */
#define MIN_ALIGN 16                    /* what malloc guarantees on x86-64 glibc */
#define ERRNO_SENTINEL 4242

typedef struct {
  uint8_t *p;
  size_t req;     /* bytes requested */
  size_t usable;  /* galleon_malloc_usable_size at allocation time */
  size_t align;   /* alignment asked for (power of two), 0 for plain allocations */
  uint64_t seed;  /* pattern of the block's contents */
} slot_t;

static slot_t slots[SLOTS];
static size_t live_bytes;
static uint64_t generation;
static long default_purge_delay;
static size_t page_size;
static bool trace; /* FUZZ_API_TRACE=1: one line per call on stderr */

#define TRACE(...)                       \
  do {                                   \
    if (trace) fprintf(stderr, __VA_ARGS__); \
  } while (0)

/* ---- failure ---- */

static size_t cur_size, cur_op;

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "\nfuzz_api: violation at op %zu (input of %zu bytes): ", cur_op, cur_size);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- input ---- */

typedef struct {
  const uint8_t *data;
  size_t size, pos;
} input_t;

static uint8_t in_u8(input_t *in) { return in->pos < in->size ? in->data[in->pos++] : 0; }

static uint64_t in_bytes(input_t *in, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)in_u8(in) << (8 * i);
  return v;
}

/* Sizes that sit on Galleon's class and layout boundaries. */
static const size_t edge_sizes[] = {
  0, 1, 7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129,
  255, 256, 257, 511, 512, 513, 1008, 1023, 1024, 1025, 1040, 2047, 2048, 2049,
  4095, 4096, 4097, 6144, 8191, 8192, 8193, 10240, 16383, 16384, 16385,
  32767, 32768, 32769, 65535, 65536, 65537, 98304, 131071, 131072, 131073,
  (256 << 10) - 1, 256 << 10, (512 << 10) - 1, 512 << 10, (512 << 10) + 1,
  (1 << 20) - 4096, 1 << 20, (1 << 20) + 1, (4 << 20) - 8192, (4 << 20) - 4097,
  (4 << 20) - 4096, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, (4 << 20) + 4096,
};

static size_t absurd_size(input_t *in) {
  uint8_t sel = in_u8(in), k = in_u8(in);
  switch (sel % 12) {
    case 0: return SIZE_MAX;
    case 1: return SIZE_MAX - k;
    case 2: return (size_t)PTRDIFF_MAX;
    case 3: return (size_t)PTRDIFF_MAX + 1 + k % 32; /* PTRDIFF_MAX + 17 among them */
    case 4: return (size_t)PTRDIFF_MAX - k;
    case 5: return (size_t)PTRDIFF_MAX - (size_t)k * 4096;
    case 6: return (size_t)PTRDIFF_MAX - ((size_t)1 << (k % 63)) + 1; /* near PTRDIFF_MAX - alignment */
    case 7: return (size_t)1 << (48 + k % 16);                      /* 2^48 .. 2^63 */
    case 8: return ((size_t)1 << (48 + k % 16)) - 1 + (k >> 4 & 1) * 2; /* 2^n -1 / +1 */
    case 9: return SIZE_MAX - ((size_t)1 << (k % 64)) + 1;
    default: { /* any value >= 2^48 */
      uint64_t v = in_bytes(in, 8);
      return v >= ABSURD_MIN ? v : v | ((uint64_t)1 << (48 + k % 16));
    }
  }
}

/* A request size: mostly allocatable ones of every kind, sometimes absurd. */
static size_t in_size(input_t *in) {
  uint8_t sel = in_u8(in);
  switch (sel % 16) {
    case 0: case 1: case 2: case 3: case 4: return in_u8(in) % 65;             /* tiny */
    case 5: case 6: case 7: case 8: return in_bytes(in, 2) % (8192 + 1);        /* small */
    case 9: case 10: return in_bytes(in, 3) % ((128 << 10) + 1);                /* medium */
    case 11: case 12: return edge_sizes[in_u8(in) % (sizeof edge_sizes / sizeof edge_sizes[0])];
    case 13: return (128 << 10) + in_bytes(in, 3) % (LARGE_LIMIT - (128 << 10) + 1); /* large */
    case 14: return absurd_size(in);
    default: { /* raw: absurd when >= 2^48, else below 2^(top byte % 24), up to 8 MiB */
      uint64_t v = in_bytes(in, 8);
      return v >= ABSURD_MIN ? v : v & (((uint64_t)1 << (v >> 40) % 24) - 1);
    }
  }
}

/* An alignment for the memalign family: powers of two 1..2^63 above all, also 0
 * and arbitrary values. */
static size_t in_align(input_t *in) {
  uint8_t sel = in_u8(in), k = in_u8(in);
  switch (sel % 8) {
    case 0: case 1: case 2: return (size_t)1 << (k % 64);
    case 3: case 4: return (size_t)1 << (k % 17); /* up to 64 KiB: the usual ones */
    case 5: return ((size_t)1 << (k % 64)) + (k & 0x40 ? 1 : (size_t)-1); /* 2^n +- 1 */
    case 6: return k < 16 ? 0 : in_bytes(in, 2);
    default: return in_bytes(in, 8);
  }
}

/* count and size of calloc and reallocarray: a product that is sometimes ordinary,
 * sometimes absurd, sometimes overflowing (also to a small value). */
static void in_product(input_t *in, size_t *count, size_t *size) {
  uint8_t sel = in_u8(in);
  switch (sel % 6) {
    case 0: *count = 1; *size = in_size(in); break;
    case 1: *count = in_size(in); *size = 1; break;
    case 2: *count = in_u8(in) % 65; *size = in_size(in); break;
    case 3: *count = in_size(in); *size = in_size(in); break;
    case 4: { /* (2^a + b) * 2^(64-a) wraps around to b * 2^(64-a) */
      unsigned a = 1 + in_u8(in) % 63;
      size_t b = in_u8(in), x = ((size_t)1 << a) + b, y = (size_t)1 << (64 - a);
      bool swap = in_u8(in) & 1;
      *count = swap ? y : x;
      *size = swap ? x : y;
      break;
    }
    default: *count = in_bytes(in, 8); *size = in_bytes(in, 8); break;
  }
}

/* ---- block contents ----
 * The fill and check loops are the harness's hot spot: kept out of the coverage
 * and comparison tracing, which is for the allocator's code. */
#ifdef __clang__
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

NO_COVERAGE static inline uint64_t pattern_word(uint64_t seed, size_t w) {
  uint64_t x = seed ^ ((uint64_t)w * 0x9E3779B97F4A7C15ull);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return x;
}

enum { FILL, VERIFY, VERIFY_ZERO };

/* Fills or verifies bytes [from, to) of the block at p.  mode FILL: the pattern of
 * seed; VERIFY: compare with it; VERIFY_ZERO: compare with zero. */
NO_COVERAGE static void range_op(uint8_t *p, size_t from, size_t to, uint64_t seed, int mode,
                                 const char *what, int slot) {
  size_t i = from;
  for (; i < to && (i & 7) != 0; i++) {
    uint8_t want = mode == VERIFY_ZERO ? 0 : (uint8_t)(pattern_word(seed, i >> 3) >> (8 * (i & 7)));
    if (mode == FILL) p[i] = want;
    else if (p[i] != want)
      fail("%s: slot %d block %p byte %zu is 0x%02x, expected 0x%02x", what, slot, (void *)p, i, p[i], want);
  }
  for (; i + 8 <= to; i += 8) {
    uint64_t want = mode == VERIFY_ZERO ? 0 : pattern_word(seed, i >> 3), have;
    if (mode == FILL) {
      memcpy(p + i, &want, 8);
      continue;
    }
    memcpy(&have, p + i, 8);
    if (have != want)
      fail("%s: slot %d block %p bytes %zu..%zu are 0x%016llx, expected 0x%016llx", what, slot,
           (void *)p, i, i + 7, (unsigned long long)have, (unsigned long long)want);
  }
  for (; i < to; i++) {
    uint8_t want = mode == VERIFY_ZERO ? 0 : (uint8_t)(pattern_word(seed, i >> 3) >> (8 * (i & 7)));
    if (mode == FILL) p[i] = want;
    else if (p[i] != want)
      fail("%s: slot %d block %p byte %zu is 0x%02x, expected 0x%02x", what, slot, (void *)p, i, p[i], want);
  }
}

/* Applies range_op to the bytes of [0, n) that a block filled over [0, full) holds
 * a pattern in: all of them when full <= FULL_CHECK_MAX, else the first and last
 * SAMPLE_HEAD bytes and SAMPLE_EDGE bytes at both ends of every 4 KiB page. */
NO_COVERAGE static void block_op(uint8_t *p, size_t n, size_t full, uint64_t seed, int mode,
                                 const char *what, int slot) {
  if (full <= FULL_CHECK_MAX) {
    range_op(p, 0, n, seed, mode, what, slot);
    return;
  }
  size_t head = n < SAMPLE_HEAD ? n : SAMPLE_HEAD;
  range_op(p, 0, head, seed, mode, what, slot);
  for (size_t at = SAMPLE_HEAD; at < n; at += 4096) {
    size_t a_end = at + SAMPLE_EDGE < n ? at + SAMPLE_EDGE : n;
    range_op(p, at, a_end, seed, mode, what, slot);
    size_t b = at + 4096 - SAMPLE_EDGE, b_end = at + 4096 < n ? at + 4096 : n;
    if (b < b_end) range_op(p, b, b_end, seed, mode, what, slot);
  }
  size_t tail = full - SAMPLE_HEAD; /* full > FULL_CHECK_MAX > SAMPLE_HEAD */
  if (tail < n) range_op(p, tail, n, seed, mode, what, slot);
}

/* ---- slots ---- */

static void check_slot(int i, const char *what) {
  slot_t *s = &slots[i];
  size_t u = galleon_malloc_usable_size(s->p);
  if (u != s->usable)
    fail("%s: slot %d block %p: usable size changed from %zu to %zu", what, i, (void *)s->p, s->usable, u);
  block_op(s->p, s->usable, s->usable, s->seed, VERIFY, what, i);
}

/* Takes a block that a call just returned into slot i: checks it and fills it. */
static void adopt(int i, void *ptr, size_t req, size_t align, bool zeroed, const char *what) {
  uint8_t *p = ptr;
  size_t need = align > MIN_ALIGN ? align : MIN_ALIGN;
  if ((uintptr_t)p & (need - 1))
    fail("%s(size %zu, align %zu) returned %p, not %zu-aligned", what, req, align, ptr, need);
  size_t u = galleon_malloc_usable_size(p);
  if (u < req) fail("%s(size %zu, align %zu) returned %p with usable size %zu", what, req, align, ptr, u);
  size_t bound = 2 * req + (align > MIN_ALIGN ? align : 0) + ((size_t)2 << 20);
  if (u > bound)
    fail("%s(size %zu, align %zu) returned %p with implausible usable size %zu", what, req, align, ptr, u);
  if (u > 0 && (!galleon_owns(p) || !galleon_owns(p + u - 1)))
    fail("%s(size %zu) returned %p, which galleon_owns() denies (usable %zu)", what, req, ptr, u);
  for (int j = 0; j < SLOTS; j++) {
    slot_t *o = &slots[j];
    if (j == i || o->p == NULL) continue;
    size_t ou = o->usable ? o->usable : 1, mu = u ? u : 1;
    if (p < o->p + ou && o->p < p + mu)
      fail("%s(size %zu) returned %p (usable %zu), overlapping slot %d's block %p (usable %zu)", what, req,
           ptr, u, j, (void *)o->p, o->usable);
  }
  if (zeroed) block_op(p, req, req, 0, VERIFY_ZERO, what, i);
  slot_t *s = &slots[i];
  s->p = p;
  s->req = req;
  s->usable = u;
  s->align = align;
  s->seed = ((uint64_t)i << 56) ^ ((uint64_t)req << 8) ^ ++generation;
  live_bytes += u;
  block_op(p, u, u, s->seed, FILL, what, i);
}

static void forget(int i) {
  live_bytes -= slots[i].usable;
  memset(&slots[i], 0, sizeof slots[i]);
}

/* Frees slot i (if used) after verifying it; variant picks the entry point. */
static void release(int i, unsigned variant) {
  slot_t *s = &slots[i];
  if (s->p == NULL) return;
  check_slot(i, "free");
  TRACE("%zu: [%d] free variant %u of %p (size %zu)\n", cur_op, i, variant % 3, (void *)s->p, s->req);
  errno = ERRNO_SENTINEL;
  switch (variant % 3) {
    case 0: galleon_free(s->p); break;
    case 1: galleon_free_sized(s->p, s->req); break;
    default:
      if (s->align) galleon_free_aligned_sized(s->p, s->align, s->req);
      else galleon_free(s->p);
      break;
  }
  if (errno != ERRNO_SENTINEL) fail("free of %p changed errno to %d", (void *)s->p, errno);
  forget(i);
}

/* ---- what a request must do ---- */

/* Whether a block of `size` bytes can be asked for without passing LIVE_LIMIT
 * (once slot i's block is gone). */
static bool fits(int i, size_t size) {
  size_t others = live_bytes - slots[i].usable;
  return size <= LIVE_LIMIT && others + size <= LIVE_LIMIT;
}

static size_t pow2_ceil(size_t a) {
  if (a <= 1) return 1;
  if (a > ((size_t)1 << 63)) return 0; /* no power of two */
  return (size_t)1 << (64 - __builtin_clzl(a - 1));
}

enum { MUST_SUCCEED, MAY_FAIL, MUST_FAIL, SKIP };

/* The outcome required of an allocation of size bytes aligned to align (a power of
 * two, or 0 when no power of two can satisfy it). */
static int expectation(int i, size_t size, size_t align) {
  if (size >= ABSURD_MIN || align == 0 || align >= ABSURD_MIN) return MUST_FAIL;
  if (!fits(i, size)) return SKIP;
  if (align >= MAYBE_ALIGN) return MAY_FAIL;
  return MUST_SUCCEED;
}

static void check_failure(const char *what, size_t size, size_t align, int err, int expect, int allowed1,
                          int allowed2) {
  if (expect == MUST_SUCCEED)
    fail("%s(size %zu, align %zu) failed (errno %d) though it is possible", what, size, align, err);
  if (err != allowed1 && err != allowed2)
    fail("%s(size %zu, align %zu) failed with errno %d, expected %d", what, size, align, err, allowed1);
}

static void check_success(const char *what, void *p, size_t size, size_t align, int expect) {
  if (expect == MUST_FAIL)
    fail("%s(size %zu, align %zu) returned %p for an impossible request", what, size, align, p);
  if (errno != ERRNO_SENTINEL)
    fail("%s(size %zu, align %zu) succeeded but changed errno to %d", what, size, align, errno);
}

/* ---- operations ---- */

enum {
  OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOCARRAY, OP_FREE, OP_MEMALIGN, OP_ALIGNED_ALLOC,
  OP_POSIX_MEMALIGN, OP_VALLOC, OP_PVALLOC, OP_USABLE_SIZE, OP_MAINTENANCE, OP_COUNT
};

static void op_malloc(int i, input_t *in) {
  size_t size = in_size(in);
  int expect = expectation(i, size, 1);
  if (expect == SKIP) return;
  release(i, in_u8(in));
  errno = ERRNO_SENTINEL;
  void *p = galleon_malloc(size);
  TRACE("%zu: [%d] malloc(%zu) = %p errno %d\n", cur_op, i, size, p, errno);
  if (p == NULL) {
    check_failure("malloc", size, 0, errno, expect, ENOMEM, ENOMEM);
    return;
  }
  check_success("malloc", p, size, 0, expect);
  adopt(i, p, size, 0, false, "malloc");
}

static void op_calloc(int i, input_t *in) {
  size_t count, size;
  in_product(in, &count, &size);
  size_t total;
  bool overflow = __builtin_mul_overflow(count, size, &total);
  int expect = overflow ? MUST_FAIL : expectation(i, total, 1);
  if (expect == SKIP) return;
  release(i, in_u8(in));
  errno = ERRNO_SENTINEL;
  void *p = galleon_calloc(count, size);
  TRACE("%zu: [%d] calloc(%zu, %zu) = %p errno %d\n", cur_op, i, count, size, p, errno);
  if (p == NULL) {
    check_failure("calloc", total, 0, errno, expect, ENOMEM, ENOMEM);
    return;
  }
  check_success("calloc", p, total, 0, expect);
  adopt(i, p, total, 0, true, "calloc");
}

/* realloc and reallocarray of slot i (NULL when empty). */
static void op_realloc(int i, input_t *in, bool array) {
  slot_t *s = &slots[i];
  size_t count = 1, size, total;
  if (array) in_product(in, &count, &size);
  else size = in_size(in);
  bool overflow = __builtin_mul_overflow(count, size, &total);
  const char *what = array ? "reallocarray" : "realloc";
  /* the new block and the old one coexist while it is copied */
  int expect = overflow ? MUST_FAIL : expectation(i, total, 1);
  if (expect == SKIP || (expect != MUST_FAIL && live_bytes + total > LIVE_LIMIT)) return;
  if (s->p) check_slot(i, what);
  uint8_t *old = s->p;
  errno = ERRNO_SENTINEL;
  void *p = array ? galleon_reallocarray(old, count, size) : galleon_realloc(old, size);
  TRACE("%zu: [%d] %s(%p, %zu, %zu) = %p errno %d\n", cur_op, i, what, (void *)old, count, size, p, errno);
  if (old != NULL && total == 0 && !overflow) { /* glibc: frees and returns NULL */
    if (p != NULL) fail("%s(%p, 0) returned %p, expected NULL", what, (void *)old, p);
    forget(i);
    return;
  }
  if (p == NULL) {
    check_failure(what, total, 0, errno, expect, ENOMEM, ENOMEM);
    if (old) check_slot(i, "failed realloc"); /* the old block must be intact */
    return;
  }
  check_success(what, p, total, 0, expect);
  if (old) {
    size_t keep = s->req < total ? s->req : total;
    block_op(p, keep, s->usable, s->seed, VERIFY, "realloc (kept bytes)", i);
    forget(i);
  }
  adopt(i, p, total, 0, false, what);
}

static void op_free(int i, input_t *in) {
  uint8_t variant = in_u8(in);
  if (slots[i].p == NULL && variant % 8 == 7) { /* free(NULL) is a no-op that keeps errno */
    errno = ERRNO_SENTINEL;
    galleon_free(NULL);
    galleon_free_sized(NULL, 0);
    if (errno != ERRNO_SENTINEL) fail("free(NULL) changed errno to %d", errno);
    return;
  }
  release(i, variant);
}

/* memalign and aligned_alloc (glibc 2.36 semantics: a non-power of two is rounded
 * up to one; an alignment over 2^63, which no power of two covers, is EINVAL; a
 * power of two too big to satisfy is ENOMEM). */
static void op_memalign(int i, input_t *in, bool aligned_alloc) {
  const char *what = aligned_alloc ? "aligned_alloc" : "memalign";
  size_t align = in_align(in), size = in_size(in);
  size_t eff = pow2_ceil(align);
  int expect = expectation(i, size, eff);
  if (expect == SKIP) return;
  release(i, in_u8(in));
  errno = ERRNO_SENTINEL;
  void *p = aligned_alloc ? galleon_aligned_alloc(align, size) : galleon_memalign(align, size);
  TRACE("%zu: [%d] %s(%zu, %zu) = %p errno %d\n", cur_op, i, what, align, size, p, errno);
  if (p == NULL) {
    int want = align > ((size_t)1 << 63) ? EINVAL : ENOMEM;
    check_failure(what, size, align, errno, expect, want, want);
    return;
  }
  check_success(what, p, size, align, expect);
  adopt(i, p, size, eff, false, what);
}

static void op_posix_memalign(int i, input_t *in) {
  size_t align = in_align(in), size = in_size(in);
  bool bad_align = align < sizeof(void *) || (align & (align - 1)) != 0;
  int expect = bad_align ? MUST_FAIL : expectation(i, size, align);
  if (expect == SKIP) return;
  release(i, in_u8(in));
  void *const sentinel = (void *)(uintptr_t)0x5a5a5a5a5a5a5a50ull;
  void *p = sentinel;
  errno = ERRNO_SENTINEL;
  int rc = galleon_posix_memalign(&p, align, size);
  TRACE("%zu: [%d] posix_memalign(%zu, %zu) = %d, %p\n", cur_op, i, align, size, rc, p);
  if (rc != 0) {
    if (p != sentinel)
      fail("posix_memalign(align %zu, size %zu) returned %d and changed *memptr to %p", align, size, rc, p);
    if (bad_align && rc != EINVAL)
      fail("posix_memalign(align %zu, size %zu) returned %d, expected EINVAL", align, size, rc);
    if (!bad_align) check_failure("posix_memalign", size, align, rc, expect, ENOMEM, ENOMEM);
    return;
  }
  if (p == NULL || p == sentinel)
    fail("posix_memalign(align %zu, size %zu) returned 0 with *memptr %p", align, size, p);
  check_success("posix_memalign", p, size, align, expect);
  adopt(i, p, size, align, false, "posix_memalign");
}

static void op_valloc(int i, input_t *in, bool pvalloc) {
  const char *what = pvalloc ? "pvalloc" : "valloc";
  size_t size = in_size(in);
  size_t need = size;
  if (pvalloc && size < ABSURD_MIN) need = size == 0 ? page_size : (size + page_size - 1) & ~(page_size - 1);
  int expect = expectation(i, need, page_size);
  if (expect == SKIP) return;
  release(i, in_u8(in));
  errno = ERRNO_SENTINEL;
  void *p = pvalloc ? galleon_pvalloc(size) : galleon_valloc(size);
  TRACE("%zu: [%d] %s(%zu) = %p errno %d\n", cur_op, i, what, size, p, errno);
  if (p == NULL) {
    check_failure(what, size, page_size, errno, expect, ENOMEM, ENOMEM);
    return;
  }
  check_success(what, p, size, page_size, expect);
  adopt(i, p, need, page_size, false, what);
}

static void op_usable_size(int i, input_t *in) {
  (void)in;
  if (slots[i].p) check_slot(i, "usable_size");
  else if (galleon_malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) is not 0");
}

static void op_maintenance(input_t *in) {
  uint8_t sel = in_u8(in);
  TRACE("%zu: maintenance %d\n", cur_op, sel % 4);
  errno = ERRNO_SENTINEL;
  switch (sel % 4) {
    case 0: galleon_collect(); break;
    case 1: (void)galleon_malloc_trim(in_bytes(in, 2)); break;
    case 2: galleon_option_set("purge_delay_ms", 0); break;
    default: galleon_option_set("purge_delay_ms", default_purge_delay); break;
  }
  if (errno != ERRNO_SENTINEL) fail("maintenance call %d changed errno to %d", sel % 4, errno);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  long ps = sysconf(_SC_PAGESIZE);
  page_size = ps > 0 ? (size_t)ps : 4096;
  default_purge_delay = galleon_option_get("purge_delay_ms");
  const char *t = getenv("FUZZ_API_TRACE");
  trace = t != NULL && *t == '1';
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_t in = {data, size, 0};
  cur_size = size;
  cur_op = 0;
  while (in.pos < in.size) {
    uint8_t op = in_u8(&in);
    int i = in_u8(&in) % SLOTS;
    cur_op++;
    switch (op % OP_COUNT) {
      case OP_MALLOC: op_malloc(i, &in); break;
      case OP_CALLOC: op_calloc(i, &in); break;
      case OP_REALLOC: op_realloc(i, &in, false); break;
      case OP_REALLOCARRAY: op_realloc(i, &in, true); break;
      case OP_FREE: op_free(i, &in); break;
      case OP_MEMALIGN: op_memalign(i, &in, false); break;
      case OP_ALIGNED_ALLOC: op_memalign(i, &in, true); break;
      case OP_POSIX_MEMALIGN: op_posix_memalign(i, &in); break;
      case OP_VALLOC: op_valloc(i, &in, false); break;
      case OP_PVALLOC: op_valloc(i, &in, true); break;
      case OP_USABLE_SIZE: op_usable_size(i, &in); break;
      default: op_maintenance(&in); break;
    }
  }
  for (int i = 0; i < SLOTS; i++) release(i, (unsigned)i);
  if (live_bytes != 0) fail("live byte count is %zu after freeing every slot", live_bytes);
  galleon_option_set("purge_delay_ms", default_purge_delay);
  return 0;
}
