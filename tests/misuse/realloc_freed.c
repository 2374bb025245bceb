/* realloc_freed: q = malloc(64); free(q); realloc(q, 60).  The check must come
 * before anything else: realloc neither returns nor copies (a copy and free of q
 * would print a different line).
 * Expected: invalid realloc of P: block already freed. */
#include "misuse.h"

int main(void) {
  char *keep = malloc(64), *q = malloc(64);
  SETUP(keep && q);
  expect_already_freed("invalid realloc of", q);
  free(q);
  void *r = realloc(opaque(q), 60);
  misuse_returned("realloc", r);
}
