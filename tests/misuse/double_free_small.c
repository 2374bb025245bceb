/* double_free_small: a 48-byte block freed twice (a second block keeps its page
 * in use).  Expected: double free of P. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(48), *p = malloc(48);
  SETUP(keep && p);
  memset(p, 1, 48);
  expect_double_free(p);
  free(p);
  free(opaque(p));
  misuse_returned("free", NULL);
}
