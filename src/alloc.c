/* alloc.c: calloc's fast path, and everything free's fast path (alloc.h) hands
 * over: remote frees, aligned blocks, large blocks, and the checks that turn a bad
 * pointer into one line on stderr and abort(). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "alloc.h"
#include "internal.h"

void *alloc_malloc(size_t size) { return alloc_malloc_fast(size); }
void alloc_free(void *p) { alloc_free_fast(p); }

void *alloc_calloc(size_t count, size_t size) {
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
      /* Blocks carved from kernel-zeroed memory need only their link cleared. */
      if (page->free_is_zero) block->next = NULL;
      else memset(block, 0, total);
      return block;
    }
  }
  return heap_malloc_generic(total, heap, true);
}

/* The start of the block that p points into, or NULL when p is not inside a block
 * the page has carved (or the page is not in use). */
void *alloc_block_start(gl_page_t *page, const void *p) {
  if (__atomic_load_n(&page->state, __ATOMIC_RELAXED) != GL_PAGE_IN_USE) return NULL;
  uint64_t offset = (uintptr_t)p - (uintptr_t)page->start;
  uint64_t carved = (uint64_t)__atomic_load_n(&page->capacity, __ATOMIC_RELAXED) * page->block_size;
  if (offset >= carved) return NULL;
  uint64_t rem = offset % page->block_size;
  return (uint8_t *)p - rem;
}

/* The one validity check of free, realloc and malloc_usable_size.  Returns the page
 * of a small or medium block (NULL for a large one) and the block's start.  Reports
 * "<what> P: ..." and aborts for a pointer Galleon did not hand out: outside every
 * segment, in a page not in use or past what the page has carved, an interior
 * pointer (an aligned block is recognised by its tag), and with want_live a block
 * that is free.  (free checks freedom itself: it reports a double free.) */
gl_page_t *alloc_check_block(const void *p, const char *what, bool want_live, void **block_out) {
  uint8_t v = gl_segmap_get((uintptr_t)p);
  if (v & GL_SEGMAP_PAGES_BIT) {
    gl_page_t *page = gl_page_of(gl_segment_of(p), p);
    void *block = alloc_block_start(page, p);
    if (block == NULL) gl_fatal(what, p, ": not allocated by galleon", NULL);
    if (block != p && !(__atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED) &&
                        (uintptr_t)((gl_block_t *)block)->next == alloc_aligned_tag(page, p)))
      gl_fatal(what, p, ": interior pointer of the block at ", block);
    if (want_live && alloc_block_is_free(page, block)) gl_fatal(what, p, ": block already freed", NULL);
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
  if (want_live && seg->cached) gl_fatal(what, p, ": block already freed", NULL);
  *block_out = block;
  return NULL;
}

void alloc_free_double(void *p) { gl_fatal("double free of", p, NULL, NULL); }

/* A block of a small or medium page (page found by the caller) whose free is not the
 * fast path: a remote free, a page on the full list, an aligned block, an error. */
static void free_in_page(void *p, gl_page_t *page, void *start) {
  gl_block_t *block = start;
  gl_heap_t *heap = gl_tls_heap;
  if (page->heap == heap) {
    uintptr_t mark = page->key;
    if (block->freed_mark == mark) alloc_free_double(p);
    block->next = page->local_free;
    block->freed_mark = mark;
    page->local_free = block;
    page->used--;
    if (page->in_full) heap_page_unfull(heap, page);
    if (page->used == 0) heap_page_retire(heap, page);
  } else {
    page_free_remote(page, block);
  }
}

void alloc_free_page(void *p, gl_page_t *page) {
  if (gl_likely(gl_page_is_block_start(page, p, false))) {
    free_in_page(p, page, p);
    return;
  }
  alloc_free_slow(p, "invalid free of");
}

/* Everything free's fast path does not handle. */
void alloc_free_slow(void *p, const char *what) {
  if (p == NULL) return;
  void *start;
  gl_page_t *page = alloc_check_block(p, what, false, &start);
  if (page == NULL) {
    large_free(segment_find(p), p);
    return;
  }
  free_in_page(p, page, start);
}

size_t alloc_usable_size(const void *p) {
  if (gl_segmap_get((uintptr_t)p) == GL_SEGMAP_NONE) return 0; /* NULL and foreign pointers */
  void *start;
  gl_page_t *page = alloc_check_block(p, "malloc_usable_size of", true, &start);
  if (page != NULL) return page->block_size - (size_t)((const uint8_t *)p - (uint8_t *)start);
  return segment_find(p)->large_usable;
}
