/* usable_size_foreign: malloc_usable_size of pointers Galleon never handed out
 * (NULL, stack, static, the program's own mapping, addresses at and above 2^47)
 * is 0, with no error.  Expected: exit 0, nothing on stderr. */
#include "misuse.h"

static char data[128];

int main(void) {
  expect_exit0();
  char buf[64];
  memset(buf, 0, sizeof buf);
  char *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  void *keep = malloc(16); /* the heap exists */
  CHECK(keep);
  CHECK(malloc_usable_size(NULL) == 0);
  CHECK(malloc_usable_size(opaque(buf + 8)) == 0);
  CHECK(malloc_usable_size(opaque(data + 16)) == 0);
  CHECK(malloc_usable_size(opaque(m + 4096)) == 0);
  CHECK(malloc_usable_size(opaque_addr((uintptr_t)1 << 47)) == 0);
  CHECK(malloc_usable_size(opaque_addr((uintptr_t)0xffff800000001000ULL)) == 0);
  free(keep);
  return 0;
}
