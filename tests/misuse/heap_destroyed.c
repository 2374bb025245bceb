/* heap_destroyed: galleon_heap_malloc on a heap that galleon_heap_destroy has
 * ended.  Expected: galleon_heap_malloc on P: not a live galleon heap. */
#include "misuse.h"

int main(void) {
  galleon_heap_t *h = galleon_heap_new();
  SETUP(h != NULL);
  SETUP(galleon_heap_malloc(h, 100) != NULL);
  galleon_heap_destroy(h);
  expect_error("galleon_heap_malloc on", h, ": not a live galleon heap", NULL);
  void *p = galleon_heap_malloc(opaque(h), 100);
  misuse_returned("galleon_heap_malloc", p);
}
