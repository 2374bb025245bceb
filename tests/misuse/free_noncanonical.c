/* free_noncanonical: free of (uintptr_t)1 << 47, the first address above the
 * user half: non-canonical, and one unit past the end of the segment map.
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  void *x = (void *)((uintptr_t)1 << 47);
  void *keep = malloc(16); /* the heap exists: free's fast path is the one taken */
  SETUP(keep);
  expect_foreign("invalid free of", x);
  free(opaque(x));
  misuse_returned("free", NULL);
}
