/* realloc.c: resizing.  In place when the block's usable size allows (and the
 * block would not be more than half empty), mremap for large blocks, else
 * allocate, copy and free.  On failure the old block is left untouched. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

void *realloc_impl(void *p, size_t size) {
  if (p == NULL) return alloc_malloc(size);
  if (size > GL_MAX_ALLOC) {
    /* Validate p first: a bad pointer is reported even when the size is bad. */
    void *start;
    (void)alloc_check_owned(p, "invalid realloc of", &start);
    errno = ENOMEM;
    return NULL;
  }
  void *start;
  gl_page_t *page = alloc_check_owned(p, "invalid realloc of", &start);
  if (page == NULL) {
    gl_segment_t *seg = segment_find(p);
    if (seg->cached) gl_fatal("invalid realloc of", p, ": block already freed", NULL);
    return large_realloc(seg, p, size);
  }
  if (page->heap == NULL) gl_fatal("invalid realloc of", p, ": block already freed", NULL);
  size_t usable = page->block_size - (size_t)((uint8_t *)p - (uint8_t *)start);
  if (size <= usable && size >= usable / 2) return p;
  void *fresh = alloc_malloc(size);
  if (fresh == NULL) return NULL;
  memcpy(fresh, p, size < usable ? size : usable);
  alloc_free(p);
  return fresh;
}
