/* blockcheck_test.c: free()'s one-multiply block-start test (page.h,
 * page_is_block_start) agrees with the definition -- an offset from the page
 * start that is a multiple of the block size and below capacity blocks -- for every
 * size class, several capacities, and every byte offset from 16 KiB below the page
 * start (the segment header) to 16 KiB past the end of a 512 KiB page. */
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

int main(void) {
  int failures = 0;
  for (unsigned cls = 1; cls <= GL_CLASS_LAST; cls++) failures += check_class(cls);
  printf("block-start test: %d mismatches over %d classes\n", failures, GL_CLASS_LAST);
  return failures != 0;
}
