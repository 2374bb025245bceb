/* free_mmap: free of a pointer 64 bytes past a 4 MiB boundary inside the
 * program's own anonymous mapping (it looks like a block in a segment).
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  char *m = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  SETUP(m != MAP_FAILED);
  char *x = (char *)(((uintptr_t)m + 4 * MiB - 1) & ~(uintptr_t)(4 * MiB - 1)) + 64;
  SETUP(x < m + 8 * MiB);
  expect_foreign("invalid free of", x);
  free(opaque(x));
  misuse_returned("free", NULL);
}
