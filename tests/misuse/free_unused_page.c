/* free_unused_page: a pointer into the page after that of p = malloc(64), in the
 * same segment of a new thread's heap, a page that is not in use.
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

static void run(void) {
  char *p = malloc(64);
  SETUP(p);
  uintptr_t page = (uintptr_t)p & ~(((uintptr_t)1 << MISUSE_SMALL_PAGE_SHIFT) - 1);
  char *x = (char *)(page + ((uintptr_t)1 << MISUSE_SMALL_PAGE_SHIFT) + 64);
  SETUP(((uintptr_t)x & ~(MISUSE_SEGMENT - 1)) == ((uintptr_t)p & ~(MISUSE_SEGMENT - 1)));
  SETUP(!galleon_owns(x));
  expect_foreign("invalid free of", x);
  free(opaque(x));
  misuse_returned("free", NULL);
}

int main(void) { run_on_new_heap(run); }
