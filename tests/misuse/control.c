/* control: valid use of every call the misuse programs misuse, on the same kinds
 * of blocks.  Expected: exit 0, nothing on stderr. */
#include "misuse.h"

static void *free_it(void *p) {
  free(p);
  return NULL;
}

int main(void) {
  expect_exit0();
  /* small, medium, large, each freed once */
  char *s = malloc(48), *m = malloc(64 * KiB), *l = malloc(1 * MiB);
  CHECK(s && m && l);
  memset(s, 1, 48);
  memset(m, 2, 64 * KiB);
  memset(l, 3, 1 * MiB);
  CHECK(malloc_usable_size(s) >= 48 && malloc_usable_size(l) >= MiB);
  free(s);
  free(m);
  free(l);
  /* aligned blocks, including one whose page is flagged as holding aligned blocks */
  void *a = NULL;
  CHECK(posix_memalign(&a, 4096, 3000) == 0 && ((uintptr_t)a & 4095) == 0);
  free(a);
  char *al = memalign(32768, 100), *ord = malloc(40000);
  CHECK(al && ord && ((uintptr_t)al & 32767) == 0);
  free(al);
  free(ord);
  void *big = memalign(4 * MiB, 1);
  CHECK(big && ((uintptr_t)big & (4 * MiB - 1)) == 0);
  free(big);
  /* realloc that moves (small to medium to large, large to larger) and in place */
  char *p = malloc(32);
  CHECK(p);
  p = realloc(p, 100000);
  CHECK(p);
  p = realloc(p, 3 * MiB);
  CHECK(p);
  p = realloc(p, 5 * MiB);
  CHECK(p);
  free(p);
  char *q = malloc(64);
  CHECK(q);
  q = realloc(q, 60);
  CHECK(q);
  free(q);
  /* a block freed by another thread */
  char *keep = malloc(64), *r = malloc(64);
  CHECK(keep && r);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_it, r) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  free(keep);
  free(NULL);
  CHECK(realloc(malloc(16), 0) == NULL);
  return 0;
}
