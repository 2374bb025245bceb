/* large.h: blocks over GL_MEDIUM_MAX, each in a segment of its own (layer 7).
 *
 * A large block sits at the end of its segment, at a page boundary (an alignment
 * boundary for an aligned one), after the header page; the mapping is as long as
 * the two need, rounded to OS pages, and from 2 MiB up to whole 2 MiB units
 * (segment_large_span).
 * Freed large segments go to the segment cache (purge.h says when they are purged
 * and unmapped).  Growing or shrinking one moves page tables with mremap: contents
 * are never copied.
 */
#ifndef GALLEON_LARGE_H
#define GALLEON_LARGE_H

#include "purge.h"

/* A block of `size` bytes aligned to `alignment` (0 or a power of two at most
 * GL_MAX_ALIGN), zeroed when `zero`; NULL with errno = ENOMEM. */
GL_HIDDEN void *large_alloc(size_t size, size_t alignment, bool zero);
/* p is the block of seg (alloc_check_block said so).  A cached segment holds no
 * block: that is a double free. */
GL_HIDDEN void large_free(gl_segment_t *seg, void *p);
/* First-class heaps own their large blocks (heap.c): track, and stop tracking. */
GL_HIDDEN void large_track(struct gl_heap_s *heap, void *block);
GL_HIDDEN void large_untrack_all(struct gl_heap_s *heap, bool free_them);
/* Resizes the block in place or by moving its pages: the block's new address, or
 * NULL when that cannot be done (the block is untouched; the caller copies). */
GL_HIDDEN void *large_resize(gl_segment_t *seg, void *p, size_t size);

#endif
