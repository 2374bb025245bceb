/* free.c: everything free's fast path (alloc.h) hands over -- remote frees, frees
 * into pages on the full list, aligned blocks, large blocks -- and the one validity
 * check that free, realloc and malloc_usable_size share, which turns a bad pointer
 * into one line on stderr and abort(). */
#include "alloc.h"
#include "check.h"
#include "profile.h"

void *alloc_block_start(gl_page_t *page, const void *p) {
  /* A block start, the common case (realloc, malloc_usable_size): free's multiply
   * test, not the division below.  It fails for a page not in use (carved_limit 0). */
  if (page_is_block_start(page, p, false)) return (void *)p;
  if (__atomic_load_n(&page->state, __ATOMIC_RELAXED) != GL_PAGE_IN_USE) return NULL;
  uint64_t offset = (uintptr_t)p - (uintptr_t)page->start;
  uint64_t carved = (uint64_t)__atomic_load_n(&page->capacity, __ATOMIC_RELAXED) * page->block_size;
  if (offset >= carved) return NULL;
  return (uint8_t *)p - offset % page->block_size;
}

/* Rejects: outside every segment, in a page not in use or past what the page has
 * carved, an interior pointer (an aligned block is recognised by its tag, which
 * names exactly the address memalign returned), and with want_live a free block.
 * (free checks freedom itself, on its own paths: that is a double free.) */
gl_page_t *free_check_block(const void *p, const char *what, bool want_live, void **block_out) {
  uint8_t v = segment_map_get((uintptr_t)p);
  if (v & GL_SEGMAP_PAGES_BIT) {
    gl_page_t *page = segment_page_of(segment_of(p), p);
    void *block = alloc_block_start(page, p);
    if (block == NULL) gl_fatal(what, p, ": not allocated by galleon", NULL);
    /* A block handed out at an interior address lost its tag to the free list
     * when it was freed: freeing that address again is a double free. */
    if (block != p && __atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED) && page_block_is_free(page, block)) {
      if (!want_live) free_double((void *)p);
      gl_fatal(what, p, ": block already freed", NULL);
    }
    if (block != p && !(__atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED) &&
                        ((gl_block_t *)block)->link == page_interior_tag(page, p)))
      gl_fatal(what, p, ": interior pointer of the block at ", block);
    if (want_live && page_block_is_free(page, block)) gl_fatal(what, p, ": block already freed", NULL);
    *block_out = block;
    return page;
  }
  gl_segment_t *seg = segment_find(p);
  if (seg == NULL || seg->kind != GL_KIND_LARGE) gl_fatal(what, p, ": not allocated by galleon", NULL);
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  if ((const uint8_t *)p != block) {
    if ((const uint8_t *)p < block || (const uint8_t *)p >= block + seg->large_usable)
      gl_fatal(what, p, ": not allocated by galleon", NULL);
    gl_fatal(what, p, ": interior pointer of the block at ", block);
  }
  if (want_live && segment_is_cached(seg)) gl_fatal(what, p, ": block already freed", NULL);
  *block_out = block;
  return NULL;
}

void free_double(void *p) { gl_fatal("double free of", p, NULL, NULL); }

/* A checked block of a small or medium page whose free is not the fast path: a
 * remote free, a page on the full list, an aligned block. */
static void free_block_in_page(void *p, gl_page_t *page, void *start) {
  gl_block_t *block = start;
  gl_heap_t *heap = gl_tls_heap;
  /* (A remote free checks the mark itself, under its CAS.) */
  if (page->owner == heap && page_block_is_free(page, block)) free_double(p);
  heap_block_release(heap, page, block);
}

void free_in_page_slow(void *p, gl_page_t *page) {
  if (gl_likely(page_is_block_start(page, p, false))) {
    free_block_in_page(p, page, p);
    return;
  }
  free_slow(p, "invalid free of");
}

void free_slow(void *p, const char *what) {
  if (p == NULL) return;
  void *start;
  gl_page_t *page = free_check_block(p, what, false, &start);
  /* Blocks the heap profiler sampled are large or handed out at an interior
   * address (heap.c): they all come here. */
  if (gl_unlikely(profile_has_live()) && (page == NULL || start != p)) profile_forget(p);
  if (page == NULL) {
    large_free(segment_find(p), p);
    return;
  }
  free_block_in_page(p, page, start);
}

size_t alloc_usable_size(const void *p) {
  if (segment_map_get((uintptr_t)p) == GL_SEGMAP_NONE) return 0; /* NULL and foreign pointers */
  void *start;
  if (GL_SECURE) return secure_usable_size(p);
  annotate_quiet_begin();
  gl_page_t *page = free_check_live_block(p, "malloc_usable_size of", &start);
  annotate_quiet_end();
  if (page != NULL) return page->block_size - (size_t)((const uint8_t *)p - (uint8_t *)start);
  return segment_find(p)->large_usable;
}
