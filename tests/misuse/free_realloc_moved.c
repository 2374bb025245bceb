/* free_realloc_moved: free of the old pointer of a block that realloc moved
 * (32 bytes grown to 100000).  Expected: double free of P. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(32), *p = malloc(32);
  SETUP(keep && p);
  char *q = realloc(p, 100000);
  SETUP(q != NULL && q != p);
  expect_double_free(p);
  free(opaque(p));
  misuse_returned("free", NULL);
}
