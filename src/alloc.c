/* alloc.c: the fast paths of malloc, calloc and free, and the checks of free.
 *
 * malloc fast path (sizes up to GL_DIRECT_MAX): one TLS load, a table lookup, pop
 * the page's free list, count, clear the freed mark.  Anything else -- empty list,
 * first call of a thread, bigger sizes -- goes to heap_malloc_generic.
 *
 * free fast path: the segment map says "small/medium segment", the page is found
 * by masking and shifting, the pointer is checked to be a block start (a multiply
 * and a compare), the owner is this thread, the block does not carry the freed
 * mark: push on local_free.  Everything else goes to alloc_free_slow, which sorts
 * out remote frees, aligned blocks, large blocks and the errors.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

GL_INLINE bool block_offset_ok(const gl_page_t *page, uint64_t offset) {
  /* offset < area and offset % block_size == 0, without a division. */
  return offset < page->area_size && offset * page->div_magic <= page->div_magic - 1;
}

void *alloc_malloc(size_t size) {
  gl_heap_t *heap = gl_tls_heap;
  if (gl_likely(size <= GL_DIRECT_MAX)) {
    gl_page_t *page = heap->direct[(size + 15) >> 4];
    gl_block_t *block = page->free;
    if (gl_likely(block != NULL)) {
      page->free = block->next;
      page->used++;
      block->freed_mark = 0;
      return block;
    }
  }
  return heap_malloc_generic(heap, size, false);
}

void *alloc_calloc(size_t count, size_t size) {
  size_t total;
  if (gl_unlikely(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  gl_heap_t *heap = gl_tls_heap;
  if (gl_likely(total <= GL_DIRECT_MAX)) {
    gl_page_t *page = heap->direct[(total + 15) >> 4];
    gl_block_t *block = page->free;
    if (gl_likely(block != NULL)) {
      page->free = block->next;
      page->used++;
      if (page->free_is_zero) block->next = NULL;
      else memset(block, 0, total);
      block->freed_mark = 0;
      return block;
    }
  }
  return heap_malloc_generic(heap, total, true);
}

/* The start of the block that p points into (p itself unless the page holds
 * aligned blocks); NULL when p is not inside a block. */
void *alloc_block_start(gl_page_t *page, const void *p) {
  if (page->state != GL_PAGE_IN_USE) return NULL;
  uint64_t offset = (uintptr_t)p - (uintptr_t)page->start;
  if (offset >= page->area_size) return NULL;
  uint64_t rem = offset % page->block_size;
  return (uint8_t *)p - rem;
}

/* Validates p for free/realloc/usable_size: returns its page (NULL for a large
 * block) and the block start.  Reports a foreign or interior pointer and aborts. */
gl_page_t *alloc_check_owned(const void *p, const char *what, void **block_out) {
  uint8_t v = gl_segmap_get((uintptr_t)p);
  if (v == GL_SEGMAP_PAGES) {
    gl_segment_t *seg = gl_segment_of(p);
    gl_page_t *page = gl_page_of(seg, p);
    void *block = alloc_block_start(page, p);
    if (block == NULL) gl_fatal(what, p, ": not allocated by galleon", NULL);
    if (block != p && !page->has_aligned)
      gl_fatal(what, p, ": interior pointer of the block at ", block);
    *block_out = block;
    return page;
  }
  gl_segment_t *seg = segment_find(p);
  if (seg == NULL || seg->kind != GL_KIND_LARGE) gl_fatal(what, p, ": not allocated by galleon", NULL);
  *block_out = (uint8_t *)seg + seg->large_offset;
  return NULL;
}

static GL_NOINLINE void free_double(void *p) { gl_fatal("double free of", p, NULL, NULL); }

/* Everything free's fast path does not handle. */
void alloc_free_slow(void *p, const char *what) {
  if (p == NULL) return;
  void *start;
  gl_page_t *page = alloc_check_owned(p, what, &start);
  if (page == NULL) {
    gl_segment_t *seg = segment_find(p);
    large_free(seg, p, what);
    return;
  }
  gl_block_t *block = start;
  gl_heap_t *heap = gl_tls_heap;
  if (page->heap == heap) {
    uintptr_t mark = (uintptr_t)block ^ page->key;
    if (block->freed_mark == mark) free_double(p);
    block->next = page->local_free;
    block->freed_mark = mark;
    page->local_free = block;
    page->used--;
    if (page->in_full) heap_page_unfull(heap, page);
    if (page->used == 0) heap_page_retire(heap, page);
  } else if (page->heap == NULL) {
    /* An unused page: the block was freed already and its page retired. */
    free_double(p);
  } else {
    page_free_remote(page, block);
  }
}

void alloc_free(void *p) {
  uintptr_t addr = (uintptr_t)p;
  if (gl_unlikely(gl_segmap_get(addr) != GL_SEGMAP_PAGES)) {
    alloc_free_slow(p, "invalid free of");
    return;
  }
  gl_page_t *page = gl_page_of(gl_segment_of(p), p);
  gl_block_t *block = p;
  gl_heap_t *heap = gl_tls_heap;
  if (gl_likely(page->heap == heap && block_offset_ok(page, addr - (uintptr_t)page->start) &&
                !page->in_full)) {
    uintptr_t mark = addr ^ page->key;
    if (gl_unlikely(block->freed_mark == mark)) free_double(p);
    block->next = page->local_free;
    block->freed_mark = mark;
    page->local_free = block;
    if (gl_unlikely(--page->used == 0)) heap_page_retire(heap, page);
    return;
  }
  alloc_free_slow(p, "invalid free of");
}

size_t alloc_usable_size(const void *p) {
  if (p == NULL) return 0;
  uint8_t v = gl_segmap_get((uintptr_t)p);
  if (v == GL_SEGMAP_NONE) return 0;
  void *start;
  gl_page_t *page = alloc_check_owned(p, "malloc_usable_size of", &start);
  if (page != NULL) return page->block_size - (size_t)((const uint8_t *)p - (uint8_t *)start);
  gl_segment_t *seg = segment_find(p);
  return seg->large_usable - (size_t)((const uint8_t *)p - (uint8_t *)start);
}
