/* alloc.h: the fast paths of malloc, calloc and free, inlined into each exported
 * entry point (malloc, galleon_malloc, ...) so a call costs no extra jump, and the
 * rest of the allocation layer (layer 9): free's slow path and the one validity
 * check (free.c), the memalign family (aligned.c), realloc (realloc.c).
 *
 * malloc, sizes up to GL_DIRECT_MAX (24 instructions): TLS load, table lookup, pop
 * the page's free list -- the next link decoded and checked before it becomes the
 * head (page.h, "Links and marks": 10 of the 24) --, count, clear the freed mark.
 * Anything else -- empty list, first call of a thread, bigger sizes -- goes to
 * heap_malloc_refill.
 *
 * free (43 instructions): the segment map says "small or medium segment" and gives
 * the page shift; the page descriptor is found by masking and shifting; one compare
 * says this thread owns the page and it is not on the full list; one multiply and
 * one compare say p is a block start among those carved; the block must not carry
 * its freed mark (a double free).  Mark it, push on the list free_push names
 * (local_free, or `free` itself: page.h, "Where frees go") with its link
 * encoded.  Everything else goes to free_slow: remote frees, aligned blocks,
 * large blocks, errors.
 */
#ifndef GALLEON_ALLOC_H
#define GALLEON_ALLOC_H

#include <errno.h>
#include <string.h>

#include "annotate.h"
#include "heap.h"

/* ---- free.c ---- */
GL_HIDDEN void free_double(void *p) __attribute__((noreturn, cold));
GL_HIDDEN void free_in_page_slow(void *p, gl_page_t *page);
GL_HIDDEN void free_slow(void *p, const char *what);
/* The validity check of free, realloc and malloc_usable_size: the page of a small
 * or medium block (NULL for a large one) and the block's start; reports "<what> P:
 * ..." and aborts for a pointer Galleon did not hand out, and with want_live for a
 * block that is free. */
GL_HIDDEN gl_page_t *free_check_block(const void *p, const char *what, bool want_live, void **block_out);
/* free_check_block with want_live, the common case first in line, as free's fast
 * path tests it: a block start of a small or medium page that is not free.
 * Anything else (a large or aligned block, an error to report) takes the whole
 * check.  realloc and malloc_usable_size ask it of every block (redis asks
 * malloc_usable_size of each one it allocates and frees). */
GL_INLINE gl_page_t *free_check_live_block(const void *p, const char *what, void **block_out) {
  if (segment_map_get((uintptr_t)p) & GL_SEGMAP_PAGES_BIT) {
    gl_page_t *page = segment_page_of(segment_of(p), p);
    if (page_is_block_start(page, p, false) && !page_block_is_free(page, p)) {
      *block_out = (void *)p;
      return page;
    }
  }
  return free_check_block(p, what, true, block_out);
}
GL_HIDDEN size_t alloc_usable_size(const void *p);
/* The start of the block that p points into, or NULL (not a carved block). */
GL_HIDDEN void *alloc_block_start(gl_page_t *page, const void *p);

/* ---- secure.c (the secure build only; alloc.h's fast paths call these instead
 * of their own code when GL_SECURE) ---- */
/* A block of `size` bytes from `heap` (NULL: the thread's heap). */
GL_HIDDEN void *secure_alloc(gl_heap_t *heap, size_t size, bool zero);
GL_HIDDEN void *secure_malloc(size_t size);
GL_HIDDEN void *secure_calloc(size_t count, size_t size);
GL_HIDDEN void secure_free(void *p);
/* memalign's block: `plain` serves size plus the trailer, aligned. */
GL_HIDDEN void *secure_aligned(gl_heap_t *heap, size_t alignment, size_t size,
                               void *(*plain)(gl_heap_t *, size_t, size_t));
GL_HIDDEN size_t secure_usable_size(const void *p);
/* realloc of p, which free_check_block found live (page and block start). */
GL_HIDDEN void *secure_realloc(gl_heap_t *heap, void *p, size_t size, gl_page_t *page, void *start);

/* ---- aligned.c, realloc.c ---- */
/* alignment: a power of two. */
GL_HIDDEN void *aligned_alloc_impl(size_t alignment, size_t size);
/* The same from a first-class heap (NULL: the thread's). */
GL_HIDDEN void *aligned_alloc_in(gl_heap_t *heap, size_t alignment, size_t size);
GL_HIDDEN void *realloc_impl(void *p, size_t size);
/* The same, a moved block coming from a first-class heap (NULL: the thread's). */
GL_HIDDEN void *realloc_in(gl_heap_t *heap, void *p, size_t size);

/* ---- The fast paths ---- */

/* Pops a block of `size` (<= GL_DIRECT_MAX) from the heap's direct page, or NULL. */
GL_INLINE gl_block_t *alloc_direct_pop(gl_heap_t *heap, size_t size, gl_page_t **page_out) {
  gl_page_t *page = heap->direct[(size + 15) >> 4];
  gl_block_t *block = page->free;
  if (gl_likely(block != NULL)) {
    page->free = page_block_next(page, block); /* decoded and checked (page.h) */
    page->used++;
    block->freed_mark = 0;
  }
  *page_out = page;
  return block;
}

GL_INLINE void *alloc_malloc_plain(size_t size) {
  if (gl_likely(size <= GL_DIRECT_MAX)) {
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(gl_tls_heap, size, &page);
    if (gl_likely(block != NULL)) return block;
  }
  return heap_malloc_refill(size, gl_tls_heap, false);
}

GL_INLINE void *alloc_calloc_plain(size_t count, size_t size) {
  size_t total;
  if (gl_unlikely(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  gl_heap_t *heap = gl_tls_heap;
  if (gl_likely(total <= GL_DIRECT_MAX)) {
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(heap, total, &page);
    if (gl_likely(block != NULL)) {
      page_block_zero(page, block, total);
      return block;
    }
  }
  return heap_malloc_refill(total, heap, true);
}

GL_INLINE void alloc_free_plain(void *p) {
  uintptr_t addr = (uintptr_t)p;
  if (gl_likely(segment_map_get(addr) & GL_SEGMAP_PAGES_BIT)) {
    /* The page from the address and its segment's header (segment_page_of), not
     * from the segment map's byte: the CPU reads the header while that byte is on
     * its way, where a shift taken from the byte made the loads wait for each other
     * (scale threads 1: 8.4 -> 7.7 ns a step).  The page in one register, which
     * every field below is an offset of (gcc would otherwise compute it again for
     * the list free_push names). */
    gl_page_t *page = segment_page_of(segment_of(p), p);
    __asm__("" : "+r"(page));
    gl_block_t *block = p;
    /* Local owner, not on the full list, and p a block start. */
    if (gl_likely(__atomic_load_n(&page->fast_free_owner, __ATOMIC_RELAXED) == gl_tls_heap &&
                  page_is_block_start(page, p, true))) {
      uintptr_t key = page->key, mark = page_freed_mark(key, block);
      if (gl_unlikely(block->freed_mark == mark)) free_double(p);
      block->freed_mark = mark;
      if (page_push_freed(page, block, key)) heap_block_freed_last(p); /* local_free, or free (page.h) */
      return;
    }
    free_in_page_slow(p, page);
    return;
  }
  free_slow(p, "invalid free of");
}

/* The entry points: the plain paths, described to memcheck in GALLEON_VALGRIND
 * builds (annotate.h); in other builds the `if` vanishes. */
GL_INLINE void *alloc_malloc_fast(size_t size) {
  if (GL_SECURE) return secure_malloc(size);
  if (GL_VALGRIND) {
    annotate_quiet_begin();
    void *p = alloc_malloc_plain(size);
    annotate_quiet_end();
    annotate_alloc(p, size, false);
    return p;
  }
  return alloc_malloc_plain(size);
}

GL_INLINE void *alloc_calloc_fast(size_t count, size_t size) {
  if (GL_SECURE) return secure_calloc(count, size);
  if (GL_VALGRIND) {
    annotate_quiet_begin();
    void *p = alloc_calloc_plain(count, size);
    annotate_quiet_end();
    annotate_alloc(p, count * size, true);
    return p;
  }
  return alloc_calloc_plain(count, size);
}

GL_INLINE void alloc_free_fast(void *p) {
  if (GL_SECURE) {
    secure_free(p);
    return;
  }
  if (GL_VALGRIND) {
    annotate_free(p);
    annotate_quiet_begin();
    alloc_free_plain(p);
    annotate_quiet_end();
    return;
  }
  alloc_free_plain(p);
}

/* A block from a first-class heap (heap.h): the thread heaps' fast path with the
 * heap passed in, large blocks tracked by the heap; described to memcheck like the
 * rest. */
GL_INLINE void *alloc_heap_block_plain(gl_heap_t *heap, size_t size, bool zero) {
  if (gl_likely(size <= GL_DIRECT_MAX && !zero)) {
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(heap, size, &page);
    if (gl_likely(block != NULL)) return block;
  }
  if (size <= GL_MEDIUM_MAX) return heap_malloc_refill(size, heap, zero);
  if (size > GL_MAX_ALLOC) {
    errno = ENOMEM;
    return NULL;
  }
  return heap_first_class_alloc(heap, size, zero);
}

GL_INLINE void *alloc_heap_block(gl_heap_t *heap, size_t size, bool zero) {
  if (GL_SECURE) return secure_alloc(heap, size, zero);
  if (GL_VALGRIND) {
    annotate_quiet_begin();
    void *p = alloc_heap_block_plain(heap, size, zero);
    annotate_quiet_end();
    annotate_alloc(p, size, zero);
    return p;
  }
  return alloc_heap_block_plain(heap, size, zero);
}

#endif /* GALLEON_ALLOC_H */
