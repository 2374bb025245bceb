/* interior_small: free of p+8 of a live 64-byte block p.
 * Expected: invalid free of P: interior pointer of the block at B. */
#include "misuse.h"

int main(void) {
  char *p = malloc(64);
  SETUP(p);
  expect_interior("invalid free of", p + 8, p);
  free(opaque(p + 8));
  misuse_returned("free", NULL);
}
