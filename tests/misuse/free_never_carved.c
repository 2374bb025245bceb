/* free_never_carved: p = malloc(16) is the first block of a fresh page (a new
 * thread's heap); p + 16384 is a block boundary of that page beyond what it has
 * carved so far (about 4 KiB at a time).
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

static void run(void) {
  char *p = malloc(16);
  SETUP(p);
  SETUP((uintptr_t)p == page_first_block(p, MISUSE_SMALL_PAGE_SHIFT));
  expect_foreign("invalid free of", p + 16384);
  free(opaque(p + 16384));
  misuse_returned("free", NULL);
}

int main(void) { run_on_new_heap(run); }
