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
  if (v & GL_SEGMAP_PAGES_BIT) {
    gl_segment_t *seg = gl_segment_of(p);
    gl_page_t *page = gl_page_of(seg, p);
    if (gl_likely(gl_page_is_block_start(page, p))) {
      *block_out = (void *)p;
      return page;
    }
    void *block = alloc_block_start(page, p);
    if (block == NULL) gl_fatal(what, p, ": not allocated by galleon", NULL);
    if (block != p && !__atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED))
      gl_fatal(what, p, ": interior pointer of the block at ", block);
    *block_out = block;
    return page;
  }
  gl_segment_t *seg = segment_find(p);
  if (seg == NULL || seg->kind != GL_KIND_LARGE) gl_fatal(what, p, ": not allocated by galleon", NULL);
  *block_out = (uint8_t *)seg + seg->large_offset;
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
  } else if (page->heap == NULL) {
    /* An unused page: the block was freed already and its page retired. */
    alloc_free_double(p);
  } else {
    page_free_remote(page, block);
  }
}

void alloc_free_page(void *p, gl_page_t *page) {
  if (gl_likely(gl_page_is_block_start(page, p))) {
    free_in_page(p, page, p);
    return;
  }
  alloc_free_slow(p, "invalid free of");
}

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
  free_in_page(p, page, start);
}

size_t alloc_usable_size(const void *p) {
  if (gl_segmap_get((uintptr_t)p) == GL_SEGMAP_NONE) return 0; /* NULL and foreign pointers */
  void *start;
  gl_page_t *page = alloc_check_owned(p, "malloc_usable_size of", &start);
  if (page != NULL) return page->block_size - (size_t)((const uint8_t *)p - (uint8_t *)start);
  gl_segment_t *seg = segment_find(p);
  return seg->large_usable - (size_t)((const uint8_t *)p - (uint8_t *)start);
}
