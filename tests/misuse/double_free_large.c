/* double_free_large: a 1 MiB block freed twice, at once: its segment is still in
 * the segment cache (the default).  Expected: double free of P. */
#include "misuse.h"

int main(void) {
  char *p = malloc(1 * MiB);
  SETUP(p);
  memset(p, 1, 1 * MiB);
  expect_double_free(p);
  free(p);
  free(opaque(p));
  misuse_returned("free", NULL);
}
