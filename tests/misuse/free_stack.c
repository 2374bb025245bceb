/* free_stack: free of a pointer into the stack.
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  char buf[256];
  memset(buf, 0, sizeof buf);
  expect_foreign("invalid free of", buf + 16);
  free(opaque(buf + 16));
  misuse_returned("free", NULL);
}
