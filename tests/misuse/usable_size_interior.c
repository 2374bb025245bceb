/* usable_size_interior: malloc_usable_size of p+8 of a live 64-byte block p.
 * Expected: malloc_usable_size of P: interior pointer of the block at B. */
#include "misuse.h"

int main(void) {
  char *p = malloc(64);
  SETUP(p);
  expect_interior("malloc_usable_size of", p + 8, p);
  size_t n = malloc_usable_size(opaque(p + 8));
  misuse_returned("malloc_usable_size", (void *)(uintptr_t)n);
}
