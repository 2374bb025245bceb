/* usable_size_freed: malloc_usable_size of a freed 64-byte block (a second block
 * keeps its page in use).  Expected: malloc_usable_size of P: block already freed. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(64), *p = malloc(64);
  SETUP(keep && p);
  expect_already_freed("malloc_usable_size of", p);
  free(p);
  size_t n = malloc_usable_size(opaque(p));
  misuse_returned("malloc_usable_size", (void *)(uintptr_t)n);
}
