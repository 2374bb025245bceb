/* realloc.c: resizing.  In place when the block's usable size allows (and the
 * block would not be more than half empty), mremap for large blocks, else
 * allocate, copy and free.  On failure the old block is left untouched. */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "profile.h"

static void *realloc_checked(gl_heap_t *heap, void *p, size_t size);

/* A new block from the thread's heap, or from a first-class heap. */
static void *realloc_new_block(gl_heap_t *heap, size_t size) {
  return heap == NULL ? alloc_malloc_fast(size) : alloc_heap_block(heap, size, false);
}

void *realloc_impl(void *p, size_t size) { return realloc_in(NULL, p, size); }

/* In GALLEON_VALGRIND builds a block always moves: memcheck then knows every size. */
void *realloc_in(gl_heap_t *heap, void *p, size_t size) {
  if (p == NULL) return realloc_new_block(heap, size);
  annotate_quiet_begin();
  void *q = realloc_checked(heap, p, size);
  annotate_quiet_end();
  return q;
}

static void *realloc_checked(gl_heap_t *heap, void *p, size_t size) {
  /* Validated first: a bad or freed pointer is reported even when the size is bad,
   * and before anything is copied. */
  void *start;
  gl_page_t *page = free_check_live_block(p, "invalid realloc of", &start);
  if (GL_SECURE) return secure_realloc(heap, p, size, page, start);
  if (size > GL_MAX_ALLOC) {
    errno = ENOMEM;
    return NULL;
  }
  size_t usable;
  if (page == NULL) {
    gl_segment_t *seg = segment_find(p);
    void *resized = GL_VALGRIND ? NULL : large_resize(seg, p, size);
    if (resized != NULL) {
      if (gl_unlikely(profile_has_live())) profile_moved(p, resized, size);
      return resized;
    }
    usable = seg->large_usable;
  } else {
    usable = page->block_size - (size_t)((uint8_t *)p - (uint8_t *)start);
    if (!GL_VALGRIND && size <= usable && size >= usable / 2) return p;
  }
  void *fresh = realloc_new_block(heap, size);
  if (fresh == NULL) return NULL;
  memcpy(fresh, p, size < usable ? size : usable);
  alloc_free_fast(p);
  return fresh;
}
