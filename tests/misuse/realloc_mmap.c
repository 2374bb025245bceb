/* realloc_mmap: realloc of a pointer into the program's own anonymous mapping.
 * Expected: invalid realloc of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  char *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  SETUP(m != MAP_FAILED);
  expect_foreign("invalid realloc of", m + 4096);
  void *r = realloc(opaque(m + 4096), 10);
  misuse_returned("realloc", r);
}
