/* sizeclass.h: size <-> size class.
 *
 * Classes 1..8 are 16..128 bytes in 16-byte steps; above that there are four
 * classes per power of two (160, 192, 224, 256, 320, ...), so internal waste stays
 * under 20%.  Class 48 is 128 KiB, the largest medium block.  No loops, no tables:
 * a bit scan and a few shifts.
 */
#ifndef GALLEON_SIZECLASS_H
#define GALLEON_SIZECLASS_H

#include "types.h"

/* size must be <= GL_MEDIUM_MAX. */
GL_INLINE unsigned sizeclass_of(size_t size) {
  if (size <= 128) return size <= 16 ? 1 : (unsigned)((size + 15) >> 4);
  size_t s = size - 1;
  unsigned top = 63u - (unsigned)__builtin_clzl(s); /* >= 7 */
  return 8u + (top - 7u) * 4u + (unsigned)((s >> (top - 2u)) & 3u) + 1u;
}

GL_INLINE size_t sizeclass_block_size(unsigned cls) {
  if (cls <= 8) return (size_t)cls << 4;
  unsigned k = cls - 9u;
  unsigned top = 7u + k / 4u;
  return ((size_t)1 << top) + (size_t)(k % 4u + 1u) * ((size_t)1 << (top - 2u));
}

#define GL_CLASS_SMALL_LAST 32 /* sizeclass_of(GL_SMALL_MAX) */
#define GL_CLASS_LAST 48       /* sizeclass_of(GL_MEDIUM_MAX) */

GL_INLINE gl_kind_t sizeclass_kind(unsigned cls) {
  return cls <= GL_CLASS_SMALL_LAST ? GL_KIND_SMALL : GL_KIND_MEDIUM;
}

#endif
