/* free_carved_unused: p = malloc(64) is the first block of a fresh page (a new
 * thread's heap); free(p + 64) frees the next block, which the page has carved
 * into its free list but never handed out.  Expected: double free of P (P = p+64). */
#include "misuse.h"

static void run(void) {
  char *p = malloc(64);
  SETUP(p);
  /* The first block of its page: the page was initialised for this call, and
   * p + 64 sits on its free list. */
  SETUP((uintptr_t)p == page_first_block(p, MISUSE_SMALL_PAGE_SHIFT));
  expect_double_free(p + 64);
  free(opaque(p + 64));
  misuse_returned("free", NULL);
}

int main(void) { run_on_new_heap(run); }
