/* realloc_stack: realloc of a pointer into the stack.
 * Expected: invalid realloc of P: not allocated by galleon. */
#include "misuse.h"

int main(void) {
  char buf[128];
  memset(buf, 0, sizeof buf);
  expect_foreign("invalid realloc of", buf + 32);
  void *r = realloc(opaque(buf + 32), 1000);
  misuse_returned("realloc", r);
}
