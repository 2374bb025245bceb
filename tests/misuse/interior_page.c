/* interior_page: free of p+16 of a live 4 KiB block p.
 * Expected: invalid free of P: interior pointer of the block at B. */
#include "misuse.h"

int main(void) {
  char *p = malloc(4096);
  SETUP(p);
  expect_interior("invalid free of", p + 16, p);
  free(opaque(p + 16));
  misuse_returned("free", NULL);
}
