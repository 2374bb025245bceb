/* sizeclass.h: size <-> size class.
 *
 * Small classes (blocks of small pages, up to 8 KiB): classes 1..8 are 16..128
 * bytes in 16-byte steps; above that there are four classes per power of two (160,
 * 192, 224, 256, 320, ... 8192), so internal waste stays under 20%.
 *
 * Medium classes (blocks of 512 KiB medium pages, over 8 KiB): two per power of two,
 * 12, 16, 24, 32, 48, 64, 96 and 128 KiB; class 40 is 128 KiB, the largest medium
 * block.  Few medium classes because a medium page is carved for one class and
 * holds its free blocks for it alone: with sixteen classes a program's medium
 * blocks spread over sixteen partly used pages per thread, each resident wherever
 * an earlier class wrote.  Two per power of two waste up to a third of a block and
 * halve the pages held.  The 1.5x classes are 64 bytes longer (12 KiB + 64, ...):
 * blocks of a power-of-two size would all start on 4 KiB multiples, so their
 * free-list links and headers would compete for the same few L1 cache sets; the
 * power-of-two classes keep their size, so their blocks stay naturally aligned
 * for memalign.
 *
 * No loops, no tables: a bit scan and a few shifts.
 */
#ifndef GALLEON_SIZECLASS_H
#define GALLEON_SIZECLASS_H

#include "types.h"

#define GL_MEDIUM_SKEW 64 /* extra bytes of the 1.5x medium classes */

/* size must be <= GL_MEDIUM_MAX. */
GL_INLINE unsigned sizeclass_of(size_t size) {
  if (size <= 128) return size <= 16 ? 1 : (unsigned)((size + 15) >> 4);
  size_t s = size - 1;
  unsigned top = 63u - (unsigned)__builtin_clzl(s); /* >= 7 */
  if (gl_likely(top < 13u)) return 8u + (top - 7u) * 4u + (unsigned)((s >> (top - 2u)) & 3u) + 1u;
  /* (2^top, 2^(top+1)]: the 1.5x class up to 1.5 * 2^top + skew, then 2^(top+1). */
  size_t upper = size > ((size_t)3 << (top - 1u)) + GL_MEDIUM_SKEW;
  return 33u + (top - 13u) * 2u + (unsigned)upper;
}

GL_INLINE size_t sizeclass_block_size(unsigned cls) {
  if (cls <= 8) return (size_t)cls << 4;
  if (cls <= 32) {
    unsigned k = cls - 9u;
    unsigned top = 7u + k / 4u;
    return ((size_t)1 << top) + (size_t)(k % 4u + 1u) * ((size_t)1 << (top - 2u));
  }
  unsigned k = cls - 33u;
  unsigned top = 13u + k / 2u;
  return k % 2u ? (size_t)1 << (top + 1u) : ((size_t)3 << (top - 1u)) + GL_MEDIUM_SKEW;
}

#define GL_CLASS_SMALL_LAST 32 /* sizeclass_of(GL_SMALL_MAX) */
#define GL_CLASS_LAST 40       /* sizeclass_of(GL_MEDIUM_MAX) */

GL_INLINE gl_kind_t sizeclass_kind(unsigned cls) {
  return cls <= GL_CLASS_SMALL_LAST ? GL_KIND_SMALL : GL_KIND_MEDIUM;
}

#endif
