/* double_free_other_thread: a 48-byte block freed by its owner, then again by
 * another thread (the remote-free path).  Expected: double free of P. */
#include "misuse.h"

static void *free_it(void *p) {
  free(p);
  return NULL;
}

int main(void) {
  char *keep = malloc(48), *p = malloc(48); /* keep: the page stays in use */
  SETUP(keep && p);
  expect_double_free(p);
  free(p);
  pthread_t t;
  SETUP(pthread_create(&t, NULL, free_it, opaque(p)) == 0);
  pthread_join(t, NULL);
  misuse_returned("free in another thread", NULL);
}
