/* alloc.h: the fast paths of malloc and free, inlined into each exported entry
 * point (malloc, galleon_malloc, ...) so a call costs no extra jump.
 *
 * malloc, sizes up to GL_DIRECT_MAX (15 instructions): TLS load, table lookup, pop
 * the page's free list, count, clear the freed mark.  Anything else -- empty list,
 * first call of a thread, bigger sizes -- goes to heap_malloc_generic.
 *
 * free (about 35 instructions): one byte of the segment map says "small or medium
 * segment" and gives the page shift; the page descriptor is found by masking and
 * shifting; one compare says this thread owns the page and it is not on the full
 * list; one multiply and two compares say p is a block start; the block must not
 * carry the freed mark (a double free).  Push on local_free.  Everything else goes
 * to alloc_free_slow: remote frees, aligned blocks, large blocks, errors.
 */
#ifndef GALLEON_ALLOC_H
#define GALLEON_ALLOC_H

#include "internal.h"

GL_HIDDEN void alloc_free_double(void *p) __attribute__((noreturn, cold));
GL_HIDDEN void alloc_free_page(void *p, gl_page_t *page);

/* Pops a block of `size` (<= GL_DIRECT_MAX) from the heap's direct page, or NULL. */
GL_INLINE gl_block_t *alloc_direct_pop(gl_heap_t *heap, size_t size, gl_page_t **page_out) {
  gl_page_t *page = heap->direct[(size + 15) >> 4];
  gl_block_t *block = page->free;
  if (gl_likely(block != NULL)) {
    page->free = block->next;
    page->used++;
    block->freed_mark = 0;
  }
  *page_out = page;
  return block;
}

GL_INLINE void *alloc_malloc_fast(size_t size) {
  if (gl_likely(size <= GL_DIRECT_MAX)) {
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(gl_tls_heap, size, &page);
    if (gl_likely(block != NULL)) return block;
  }
  return heap_malloc_generic(size, gl_tls_heap, false);
}

GL_INLINE void alloc_free_fast(void *p) {
  uintptr_t addr = (uintptr_t)p;
  /* No bounds check: every pointer Galleon hands out is below 2^47, so a valid free
   * indexes the map in bounds.  A pointer above that is no malloc'ed block: the
   * unchecked load faults, or finds a byte that leads to reading a "page" whose
   * owner field would have to equal this thread's heap address to pass -- it ends
   * in the slow path's checked lookup (an error message) or a crash. */
  size_t unit = addr >> GL_SEGMENT_SHIFT;
  unsigned shift = atomic_load_explicit(&gl_segmap[unit], memory_order_relaxed);
  if (gl_likely(shift & GL_SEGMAP_PAGES_BIT)) {
    gl_segment_t *seg = (gl_segment_t *)(addr & ~(uintptr_t)GL_SEGMENT_MASK);
    gl_page_t *page = &seg->pages[(addr & GL_SEGMENT_MASK) >> shift];
    gl_block_t *block = p;
    /* Local owner, not on the full list, and p a block start. */
    if (gl_likely(__atomic_load_n(&page->fast_owner, __ATOMIC_RELAXED) == gl_tls_heap &&
                  gl_page_is_block_start(page, p))) {
      uintptr_t mark = page->key;
      if (gl_unlikely(block->freed_mark == mark)) alloc_free_double(p);
      block->freed_mark = mark;
      block->next = page->local_free;
      page->local_free = block;
      if (gl_unlikely(--page->used == 0) && !page->kept_empty) heap_block_freed_last(p);
      return;
    }
    alloc_free_page(p, page);
    return;
  }
  alloc_free_slow(p, "invalid free of");
}

#endif
