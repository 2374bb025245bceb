/* aligned.c: the memalign family.
 *
 * Alignment comes from the size-class geometry where it can: every page starts at
 * a GL_PAGE_START_ALIGN (16 KiB) boundary (64 KiB but for the first page of a segment), so a size class
 * whose block size is a multiple of the alignment hands out aligned blocks anyway.
 * Otherwise the block is over-allocated and an aligned address inside it returned;
 * its page is flagged has_aligned so free() finds the block start in O(1), and the
 * block's first word holds a tag naming the aligned address, so only that address,
 * not any interior pointer, frees the block.  Bigger
 * alignments get a large segment placed so that its block is aligned.
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "profile.h"
#include "sizeclass.h"


/* A block from the thread's heap, or from a first-class heap. */
static void *block_from(gl_heap_t *heap, size_t size) {
  return heap ? heap_first_class_alloc(heap, size, false) : alloc_malloc_plain(size);
}

static void *aligned_alloc_plain(gl_heap_t *heap, size_t alignment, size_t size) {
  gl_assert(alignment != 0 && (alignment & (alignment - 1)) == 0);
  if (alignment <= GL_MIN_ALIGN) return block_from(heap, size);
  if (alignment > GL_MAX_ALIGN || size > GL_MAX_ALLOC - alignment) {
    errno = ENOMEM;
    return NULL;
  }
  if (alignment <= GL_PAGE_START_ALIGN) {
    size_t rounded = gl_align_up(size, alignment);
    if (rounded == 0) rounded = alignment;
    if (rounded <= GL_MEDIUM_MAX && (sizeclass_block_size(sizeclass_of(rounded)) & (alignment - 1)) == 0) {
      void *p = block_from(heap, rounded);
      gl_assert(p == NULL || ((uintptr_t)p & (alignment - 1)) == 0);
      return p;
    }
  }
  size_t padded = size + alignment - GL_MIN_ALIGN;
  if (padded <= GL_MEDIUM_MAX) {
    uint8_t *p = block_from(heap, padded);
    if (p == NULL) return NULL;
    uint8_t *aligned = (uint8_t *)gl_align_up((uintptr_t)p, alignment);
    if (aligned != p) {
      /* The gap in front (at least 16 bytes) carries the tag that lets free() tell
       * this pointer from an interior pointer of the block. */
      page_tag_interior(segment_page_of(segment_of(p), p), p, aligned);
    }
    return aligned;
  }
  heap_process_init(); /* large_alloc may be the process's first call */
  void *p = large_alloc(size, alignment, false);
  if (p != NULL && heap != NULL) large_track(heap, p);
  return p;
}

void *aligned_alloc_impl(size_t alignment, size_t size) { return aligned_alloc_in(NULL, alignment, size); }

void *aligned_alloc_in(gl_heap_t *heap, size_t alignment, size_t size) {
  /* malloc's own alignment: malloc's path, nothing to tag or to keep from the
   * profiler. */
  if (!GL_SECURE && !GL_VALGRIND && alignment <= GL_MIN_ALIGN) return block_from(heap, size);
  annotate_quiet_begin();
  /* A block the heap profiler samples is handed out 16 bytes into a bigger one:
   * aligned to 16 only.  Larger alignments are charged, never sampled. */
  uint8_t busy = profile_tls_busy;
  if (alignment > GL_MIN_ALIGN) profile_tls_busy = 1;
  void *p = GL_SECURE ? secure_aligned(heap, alignment, size, aligned_alloc_plain)
                      : aligned_alloc_plain(heap, alignment, size);
  profile_tls_busy = busy;
  annotate_quiet_end();
  annotate_alloc(p, size, false);
  return p;
}
