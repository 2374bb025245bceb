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

/* A block is free (on one of its page's lists, or carved and never handed out)
 * exactly when its second word holds the page key. */
GL_INLINE bool alloc_block_is_free(const gl_page_t *page, const void *block) {
  return ((const gl_block_t *)block)->freed_mark == page->key;
}

/* memalign's tag in the first word of a block handed out at an interior aligned
 * address: that address, keyed so that stale data does not match by accident. */
GL_INLINE uintptr_t alloc_aligned_tag(const gl_page_t *page, const void *aligned) {
  return (uintptr_t)aligned ^ page->key;
}
GL_INLINE void alloc_aligned_tag_set(const gl_page_t *page, void *block, void *aligned) {
  ((gl_block_t *)block)->next = (gl_block_t *)alloc_aligned_tag(page, aligned);
}
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
  unsigned shift = gl_segmap_get(addr);
  if (gl_likely(shift & GL_SEGMAP_PAGES_BIT)) {
    gl_segment_t *seg = (gl_segment_t *)(addr & ~(uintptr_t)GL_SEGMENT_MASK);
    gl_page_t *page = &seg->pages[(addr & GL_SEGMENT_MASK) >> shift];
    gl_block_t *block = p;
    /* Local owner, not on the full list, and p a block start. */
    if (gl_likely(__atomic_load_n(&page->fast_owner, __ATOMIC_RELAXED) == gl_tls_heap &&
                  gl_page_is_block_start(page, p, true))) {
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
