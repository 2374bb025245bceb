/* blockcheck_test.c: free()'s one-multiply block-start test (page.h,
 * page_is_block_start) agrees with the definition -- an offset from the page
 * start that is a multiple of the block size and below capacity blocks -- for every
 * size class, several capacities, and every byte offset from 16 KiB below the page
 * start (the segment header) to 16 KiB past the end of a 512 KiB page.
 *
 * The check of a decoded free-list link (page_link_ok) must hold for any
 * 64-bit value, which the multiply alone does not: its product wraps, and about
 * carved_limit offsets far from the page pass it.  Those offsets are computed
 * (the preimages of the small products) and must all fail the link check, as
 * must a sample of random values; NULL passes it (a list's end), and the in-page
 * offsets must agree with the definition as above. */
#include <stdio.h>
#include <stdlib.h>

#include "page.h"
#include "sizeclass.h"

static int check_class(unsigned cls) {
  size_t d = sizeclass_block_size(cls);
  size_t page_size = sizeclass_kind(cls) == GL_KIND_SMALL ? ((size_t)1 << GL_SMALL_PAGE_SHIFT)
                                                          : ((size_t)1 << GL_MEDIUM_PAGE_SHIFT);
  uint32_t reserved = (uint32_t)(page_size / d);
  uint32_t capacities[] = {0, 1, reserved / 2, reserved - 1, reserved};
  static gl_page_t page;
  uintptr_t start = (uintptr_t)1 << 40; /* any address: only differences matter */
  page.start = (uint8_t *)start;
  page.block_magic = page_block_magic(d);
  int failures = 0;
  for (size_t c = 0; c < sizeof capacities / sizeof capacities[0]; c++) {
    uint32_t cap = capacities[c];
    page.carved_limit = page_carved_limit(d, cap);
    for (long n = -16384; n < (long)(page_size + 16384); n++) {
      bool want = n >= 0 && (size_t)n % d == 0 && (size_t)n / d < cap;
      bool got = page_is_block_start(&page, (const void *)(start + (uintptr_t)n), true);
      if (got != want && failures++ < 5)
        fprintf(stderr, "class %u (block %zu), capacity %u, offset %ld: test says %d, should be %d\n", cls, d,
                cap, n, got, want);
    }
  }
  return failures;
}

/* The inverse of an odd number mod 2^64 (Newton's iteration). */
static uint64_t inverse(uint64_t a) {
  uint64_t x = a;
  for (int i = 0; i < 6; i++) x *= 2 - a * x;
  return x;
}

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* The link check for one class, its page full: in-page offsets as the definition,
 * the multiply's far-away passes and random values rejected.  Counts in *ghosts
 * the values that pass page_is_block_start alone but are no carved block. */
static int check_links(unsigned cls, long *ghosts) {
  size_t d = sizeclass_block_size(cls);
  size_t page_size = sizeclass_kind(cls) == GL_KIND_SMALL ? ((size_t)1 << GL_SMALL_PAGE_SHIFT)
                                                          : ((size_t)1 << GL_MEDIUM_PAGE_SHIFT);
  uint32_t cap = (uint32_t)(page_size / d);
  static gl_page_t page;
  uintptr_t start = ((uintptr_t)0x1234 << 30) + 16384; /* a page after a segment header */
  page.start = (uint8_t *)start;
  page.block_magic = page_block_magic(d);
  page.carved_limit = page_carved_limit(d, cap);
  int failures = 0;
  for (long n = -16384; n < (long)(page_size + 16384); n++) {
    uintptr_t p = start + (uintptr_t)n;
    bool want = n >= 0 && (size_t)n % d == 0 && (size_t)n / d < cap;
    if (page_link_ok(&page, p) != want && failures++ < 5)
      fprintf(stderr, "link check, class %u (block %zu), offset %ld: says %d, should be %d\n", cls, d, n, !want, want);
  }
  if (!page_link_ok(&page, 0) && failures++ < 5) fprintf(stderr, "link check, class %u: NULL fails\n", cls);
  /* Offsets whose product is v < carved_limit: with M = 2^t * odd, v = 2^t * w and
   * offset = w * odd^-1 + j * 2^(64 - t). */
  uint64_t m = page.block_magic;
  int t = __builtin_ctzll(m);
  uint64_t inv = inverse(m >> t);
  for (uint64_t v = 0; v < page.carved_limit; v += (uint64_t)1 << t) {
    for (uint64_t j = 0; j < ((uint64_t)1 << t); j++) {
      uint64_t n = (v >> t) * inv + (t ? j << (64 - t) : 0);
      bool legit = n % d == 0 && n / d < cap;
      if (!page_is_block_start(&page, (const void *)(start + n), true) && failures++ < 5)
        fprintf(stderr, "class %u: offset %#llx should pass the multiply\n", cls, (unsigned long long)n);
      if (legit) continue;
      (*ghosts)++;
      if (page_link_ok(&page, start + n) && failures++ < 5)
        fprintf(stderr, "link check, class %u (block %zu): offset %#llx (no block) passes\n", cls, d,
                (unsigned long long)n);
    }
  }
  uint64_t s = 0x9E3779B97F4A7C15ull ^ cls;
  for (int i = 0; i < 100000; i++) {
    uintptr_t p = (uintptr_t)xorshift(&s);
    uint64_t n = p - start;
    bool want = n % d == 0 && n / d < cap;
    if (page_link_ok(&page, p) != want && failures++ < 5)
      fprintf(stderr, "link check, class %u: random %#llx says %d\n", cls, (unsigned long long)p, !want);
  }
  return failures;
}

int main(void) {
  int failures = 0;
  for (unsigned cls = 1; cls <= GL_CLASS_LAST; cls++) failures += check_class(cls);
  printf("block-start test: %d mismatches over %d classes\n", failures, GL_CLASS_LAST);
  int link_failures = 0;
  long ghosts = 0;
  for (unsigned cls = 1; cls <= GL_CLASS_LAST; cls++) link_failures += check_links(cls, &ghosts);
  printf("link check: %d mismatches over %d classes (%ld far offsets pass the multiply alone, none the check)\n",
         link_failures, GL_CLASS_LAST, ghosts);
  return failures != 0 || link_failures != 0 || ghosts == 0;
}
