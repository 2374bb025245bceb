/* double_free_medium: a 64 KiB block freed twice (a second block keeps its page
 * in use).  Expected: double free of P. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(64 * KiB), *p = malloc(64 * KiB);
  SETUP(keep && p);
  memset(p, 1, 64 * KiB);
  expect_double_free(p);
  free(p);
  free(opaque(p));
  misuse_returned("free", NULL);
}
