/* free_static: free of a pointer into static data.
 * Expected: invalid free of P: not allocated by galleon. */
#include "misuse.h"

static char data[128];

int main(void) {
  expect_foreign("invalid free of", data + 16);
  free(opaque(data + 16));
  misuse_returned("free", NULL);
}
