/* double_free_after_other_frees: free p, free q, free r (64-byte blocks of the
 * same page), then p again: p is no longer the last block freed.
 * Expected: double free of P. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(64), *p = malloc(64), *q = malloc(64), *r = malloc(64);
  SETUP(keep && p && q && r);
  expect_double_free(p);
  free(p);
  free(q);
  free(r);
  free(opaque(p));
  misuse_returned("free", NULL);
}
