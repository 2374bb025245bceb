/* interior_large: free of p+4144 of a live 1 MiB block p.
 * Expected: invalid free of P: interior pointer of the block at B. */
#include "misuse.h"

int main(void) {
  char *p = malloc(1 * MiB);
  SETUP(p);
  expect_interior("invalid free of", p + 4096 + 48, p);
  free(opaque(p + 4096 + 48));
  misuse_returned("free", NULL);
}
