/* sizeclass_test.c: the size -> class mapping (src/sizeclass.h) for every size
 * from 1 byte to GL_MEDIUM_MAX: each size gets the smallest class whose block holds
 * it; block sizes grow with the class, stay 16-byte multiples, and waste at most
 * what the layout promises (under 16 bytes up to 128, under 20% up to 8 KiB, at
 * most half a block plus 64 bytes above); the small/medium split falls at
 * GL_SMALL_MAX; medium classes are two per power of two, the power-of-two ones of
 * that exact size (naturally aligned) and the 1.5x ones 64 bytes past a 4 KiB
 * multiple (so their blocks do not all start on 4 KiB boundaries). */
#include <stdio.h>

#include "sizeclass.h"

static int failures;

#define EXPECT(cond, ...)                         \
  do {                                            \
    if (!(cond) && failures++ < 10) {             \
      fprintf(stderr, "sizeclass: " __VA_ARGS__); \
      fputc('\n', stderr);                        \
    }                                             \
  } while (0)

int main(void) {
  EXPECT(sizeclass_of(GL_SMALL_MAX) == GL_CLASS_SMALL_LAST, "GL_CLASS_SMALL_LAST is not the class of GL_SMALL_MAX");
  EXPECT(sizeclass_of(GL_MEDIUM_MAX) == GL_CLASS_LAST, "GL_CLASS_LAST is not the class of GL_MEDIUM_MAX");
  EXPECT(GL_CLASS_LAST + 1 == GL_CLASS_COUNT, "GL_CLASS_COUNT is not GL_CLASS_LAST + 1");
  EXPECT(sizeclass_block_size(GL_CLASS_SMALL_LAST) == GL_SMALL_MAX, "the last small class is not GL_SMALL_MAX");
  EXPECT(sizeclass_block_size(GL_CLASS_LAST) == GL_MEDIUM_MAX, "the last class is not GL_MEDIUM_MAX");

  for (unsigned cls = 1; cls <= GL_CLASS_LAST; cls++) {
    size_t bs = sizeclass_block_size(cls);
    EXPECT(bs % 16 == 0, "class %u: block size %zu is not a multiple of 16", cls, bs);
    EXPECT(cls == 1 || bs > sizeclass_block_size(cls - 1), "class %u: block size %zu does not grow", cls, bs);
    EXPECT(sizeclass_kind(cls) == (bs <= GL_SMALL_MAX ? GL_KIND_SMALL : GL_KIND_MEDIUM), "class %u: wrong kind", cls);
    if (cls > GL_CLASS_SMALL_LAST) {
      bool power_of_two = (bs & (bs - 1)) == 0;
      EXPECT(power_of_two == ((cls - GL_CLASS_SMALL_LAST) % 2 == 0), "class %u: %zu is not every other power of two",
             cls, bs);
      EXPECT(power_of_two || bs % 4096 == 64, "class %u: 1.5x block size %zu is not 64 past a 4 KiB multiple", cls, bs);
    }
  }
  EXPECT(GL_CLASS_LAST - GL_CLASS_SMALL_LAST == 2 * 4, "not two medium classes per power of two from 8 to 128 KiB");

  for (size_t size = 1; size <= GL_MEDIUM_MAX; size++) {
    unsigned cls = sizeclass_of(size);
    if (cls < 1 || cls > GL_CLASS_LAST) {
      EXPECT(0, "size %zu: class %u out of range", size, cls);
      continue;
    }
    size_t bs = sizeclass_block_size(cls);
    EXPECT(bs >= size, "size %zu: class %u holds only %zu bytes", size, cls, bs);
    EXPECT(cls == 1 || sizeclass_block_size(cls - 1) < size, "size %zu: class %u, but class %u holds it", size, cls,
           cls - 1);
    if (size <= 128) EXPECT(bs - size < 16, "size %zu: block %zu", size, bs);
    else if (size <= GL_SMALL_MAX) EXPECT((bs - size) * 5 < bs, "size %zu: block %zu wastes 20%% or more", size, bs);
    else EXPECT(2 * bs <= 3 * size + 128, "size %zu: block %zu over 1.5x the size + 64", size, bs);
  }
  printf("size classes: %d failures over %zu sizes and %d classes\n", failures, (size_t)GL_MEDIUM_MAX, GL_CLASS_LAST);
  return failures != 0;
}
