/* interior_aligned_page: memalign(32768, 100) allocates a padded block of
 * 100 + 32768 - 16 = 32852 bytes (the class of 48 KiB + 64 bytes) and returns an aligned
 * address inside it, which flags the page as holding aligned blocks.  q =
 * malloc(40000) is an ordinary block of the same class in that page; free(q + 16)
 * is still an interior pointer.
 * Expected: invalid free of P: interior pointer of the block at B (B = q). */
#include "misuse.h"

#define CLASS_SIZE ((uintptr_t)(49152 + 64))

static void run(void) {
  /* An aligned block that is not its block's start (a block at a 32 KiB boundary
   * is returned as is and flags nothing): at most a few tries. */
  char *a = NULL;
  for (int i = 0; i < 4 && a == NULL; i++) {
    char *x = memalign(32768, 100);
    SETUP(x && ((uintptr_t)x & 32767) == 0);
    uintptr_t first = page_first_block(x, MISUSE_MEDIUM_PAGE_SHIFT);
    uintptr_t block = first + ((uintptr_t)x - first) / CLASS_SIZE * CLASS_SIZE;
    if (block != (uintptr_t)x) a = x;
  }
  SETUP(a != NULL);
  char *q = malloc(40000);
  SETUP(q && malloc_usable_size(q) == CLASS_SIZE);
  /* q: an ordinary block (a block start) of the page that holds a. */
  SETUP(((uintptr_t)q >> MISUSE_MEDIUM_PAGE_SHIFT) == ((uintptr_t)a >> MISUSE_MEDIUM_PAGE_SHIFT));
  SETUP(((uintptr_t)q - page_first_block(q, MISUSE_MEDIUM_PAGE_SHIFT)) % CLASS_SIZE == 0);
  expect_interior("invalid free of", q + 16, q);
  free(opaque(q + 16));
  misuse_returned("free", NULL);
}

int main(void) { run_on_new_heap(run); }
