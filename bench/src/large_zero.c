/* large_zero.c - large-block churn with zero-filled blocks, the way C++ code that
 * writes `auto buf = std::make_unique<char[]>(n);` behaves: operator new (malloc)
 * followed by value-initialisation, i.e. the program itself clears every byte of
 * every new block.  Because the clearing is a memset by the program and not a
 * calloc, an allocator cannot skip it by handing out fresh (already zero) pages:
 * each block costs a full write, plus a page fault per page that is not resident.
 * So the figure this workload exposes is how well an allocator keeps large blocks
 * (5-25 MiB) resident and reuses them instead of unmapping and refaulting them.
 *
 * A table of 20 slots: the first 20 steps fill it, every later step picks a slot
 * at random, checks and frees its block and puts a new one of a random size in
 * [5 MiB, 25 MiB] there.  After the memset, the program "uses" the block the way
 * a buffer is used: it stamps a few bytes (start, middle, end, and one byte per
 * 256 KiB).  Before a block is freed its stamps are checked, and so are sample
 * bytes between the stamps, which must still be zero.  Single-threaded.
 *
 * usage: large-zero STEPS [THREADS]     THREADS is accepted and must be 1
 * prints: RESULT large-zero elapsed_s=... ops=STEPS cleared_mb=... check=ok */
#include "common.h"

#define SLOTS 20
#define MIB ((size_t)1 << 20)
#define STAMP_EVERY ((size_t)256 << 10)

typedef struct {
  unsigned char *p;
  size_t n;
  uint64_t id;
} slot_t;

static unsigned char stamp_byte(uint64_t id, size_t off) {
  return (unsigned char)(1 + ((id * 131 + off / STAMP_EVERY) % 255)); /* never 0 */
}

static void use_block(slot_t *s) {
  tag_fill(s->p, s->n, s->id); /* start, middle and last byte */
  for (size_t off = STAMP_EVERY; off + 64 < s->n; off += STAMP_EVERY) s->p[off] = stamp_byte(s->id, off);
}

static void check_block(const slot_t *s) {
  TAG_CHECK(s->p, s->n, s->id, "large-zero");
  for (size_t off = STAMP_EVERY; off + 64 < s->n; off += STAMP_EVERY) {
    if (s->p[off] != stamp_byte(s->id, off))
      die("large-zero: block %p (size %zu) stamp at %zu overwritten", (void *)s->p, s->n, off);
    /* bytes between the stamps were cleared by the memset and never written since */
    size_t z = off + 4096 + (s->id % 61) * 8;
    if (z < s->n - 64 && z != s->n / 2 && s->p[z] != 0)
      die("large-zero: block %p (size %zu) byte %zu is %d, not 0", (void *)s->p, s->n, z, s->p[z]);
  }
}

int main(int argc, char **argv) {
  long steps = arg_long(argc, argv, 1, 1000);
  long threads = arg_long(argc, argv, 2, 1);
  if (threads != 1) die("large-zero is single-threaded (THREADS must be 1, got %ld)", threads);
  slot_t slot[SLOTS];
  memset(slot, 0, sizeof slot);
  uint64_t r = 0x2e20f111ull;
  double cleared = 0;
  double t0 = now_s();
  for (long i = 0; i < steps; i++) {
    slot_t *s = &slot[i < SLOTS ? i : (long)(rng_next(&r) % SLOTS)];
    if (s->p != NULL) {
      check_block(s);
      free(s->p);
    }
    s->n = (size_t)rng_range(&r, 5 * MIB, 25 * MIB);
    s->id = (uint64_t)i + 1;
    s->p = malloc(s->n);
    if (s->p == NULL) die("large-zero: malloc(%zu) returned NULL", s->n);
    /* Without this barrier gcc fuses malloc + memset(0) into calloc, and an
     * allocator that knows its pages are fresh would skip the clearing. */
    ESCAPE(s->p);
    memset(s->p, 0, s->n); /* the program's own value-initialisation */
    ESCAPE(s->p);
    cleared += (double)s->n;
    use_block(s);
  }
  for (int k = 0; k < SLOTS; k++)
    if (slot[k].p != NULL) {
      check_block(&slot[k]);
      free(slot[k].p);
    }
  double el = now_s() - t0;
  printf("RESULT large-zero elapsed_s=%.4f ops=%ld cleared_mb=%.0f check=ok\n", el, steps, cleared / (double)MIB);
  return 0;
}
