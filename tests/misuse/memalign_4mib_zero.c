/* memalign_4mib_zero: memalign(4 MiB, 0), then free: valid use.
 * Expected: exit 0, nothing on stderr. */
#include "misuse.h"

int main(void) {
  expect_exit0();
  char *p = memalign(4 * MiB, 0);
  CHECK(p != NULL && ((uintptr_t)p & (4 * MiB - 1)) == 0);
  free(p);
  p = memalign(4 * MiB, 0); /* and again, from the segment cache */
  CHECK(p != NULL && ((uintptr_t)p & (4 * MiB - 1)) == 0);
  free(p);
  return 0;
}
