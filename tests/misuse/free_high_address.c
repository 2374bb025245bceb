/* free_high_address: free of 0xffff800000001000, an address at or above 2^47 (the
 * kernel half) that no user mapping can hold.
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  void *x = (void *)(uintptr_t)0xffff800000001000ULL;
  void *keep = malloc(16); /* the heap exists: free's fast path is the one taken */
  SETUP(keep);
  expect_foreign("invalid free of", x);
  free(opaque(x));
  misuse_returned("free", NULL);
}
