/* double_free_aligned: a posix_memalign(4096, 3000) block freed twice.
 * Expected: double free of P. */
#include "misuse.h"

int main(void) {
  void *p = NULL;
  SETUP(posix_memalign(&p, 4096, 3000) == 0 && ((uintptr_t)p & 4095) == 0);
  memset(p, 1, 3000);
  expect_double_free(p);
  free(p);
  free(opaque(p));
  misuse_returned("free", NULL);
}
