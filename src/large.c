/* large.c: blocks over GL_MEDIUM_MAX (large.h). */
#include <errno.h>
#include <string.h>

#include "annotate.h"
#include "check.h"
#include "large.h"

/* ---- Guard pages (secure build) ----
 * A PROT_NONE page follows every large block, at the first page boundary after
 * its `size` bytes (the caller's request plus its canary, secure.c): a linear
 * overflow faults within a page of the end; the canary catches a shorter one on
 * free.  The mapping gets one more page for it.  The guard is lifted before the
 * segment is freed (cached segments are reused, merged and moved whole) or
 * resized (mremap refuses a range with mixed protections).  When mprotect
 * fails (the process is out of memory maps) the block goes without a guard. */
static size_t large_guard_room(void) { return GL_SECURE ? os_page_size() : 0; }

static void large_guard_set(gl_segment_t *seg, size_t size) {
#if GL_SECURE
  size_t page = os_page_size();
  uint8_t *guard = (uint8_t *)gl_align_up((uintptr_t)seg + seg->large_offset + size, page);
  seg->large_guard = NULL;
  if (guard + page <= (uint8_t *)seg + seg->mapped_size && os_protect(guard, page, false)) seg->large_guard = guard;
#endif
}

static void large_guard_lift(gl_segment_t *seg) {
#if GL_SECURE
  if (seg->large_guard != NULL) os_protect(seg->large_guard, os_page_size(), true);
  seg->large_guard = NULL;
#endif
}

void *large_alloc(size_t size, size_t alignment, bool zero) {
  if (size > GL_MAX_ALLOC - large_guard_room()) {
    errno = ENOMEM;
    return NULL;
  }
  bool is_zero = false;
  gl_segment_t *seg = segment_large_alloc(size + large_guard_room(), alignment, &is_zero);
  if (seg == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  if (zero && !is_zero) memset(block, 0, size);
  /* Secure: a reused segment holds an earlier block's data. */
  if (GL_SECURE && !zero && !is_zero) memset(block, GL_SECURE_FILL, size);
  large_guard_set(seg, size);
  if (GL_VALGRIND && seg->large_usable > size) annotate_noaccess(block + size, seg->large_usable - size);
  gl_counter_add_peak(&gl_counters.large_blocks, 1, &gl_counters.large_blocks_peak);
  gl_counter_add_peak(&gl_counters.large_bytes, seg->mapped_size, &gl_counters.large_bytes_peak);
  gl_counter_add(&gl_counters.large_in_use_bytes, seg->large_usable);
  purge_large_allocated();
  return block;
}

/* A first-class heap's large segments are on its large_blocks list (through
 * seg->link, which only the segment cache uses otherwise), under its segs.lock. */
void large_track(struct gl_heap_s *heap, void *block) {
  gl_segment_t *seg = segment_find(block);
  pthread_mutex_lock(&heap->segs.lock);
  seg->heap = heap;
  gl_list_push_back(&heap->large_blocks, &seg->link);
  pthread_mutex_unlock(&heap->segs.lock);
}

static void large_untrack(gl_segment_t *seg) {
  struct gl_heap_s *heap = seg->heap;
  if (heap == NULL) return;
  pthread_mutex_lock(&heap->segs.lock);
  gl_list_remove(&heap->large_blocks, &seg->link);
  seg->heap = NULL;
  pthread_mutex_unlock(&heap->segs.lock);
}

void large_untrack_all(struct gl_heap_s *heap, bool free_them) {
  for (;;) {
    pthread_mutex_lock(&heap->segs.lock);
    gl_link_t *first = heap->large_blocks.first;
    gl_segment_t *seg = first ? gl_container_of(first, gl_segment_t, link) : NULL;
    if (seg) {
      gl_list_remove(&heap->large_blocks, first);
      seg->heap = NULL;
    }
    pthread_mutex_unlock(&heap->segs.lock);
    if (seg == NULL) return;
    if (free_them) large_free(seg, (uint8_t *)seg + seg->large_offset);
  }
}

void large_free(gl_segment_t *seg, void *p) {
  gl_assert((uint8_t *)p == (uint8_t *)seg + seg->large_offset);
  if (segment_is_cached(seg)) gl_fatal("double free of", p, NULL, NULL);
  large_untrack(seg);
  gl_counter_sub(&gl_counters.large_blocks, 1);
  gl_counter_sub(&gl_counters.large_bytes, seg->mapped_size);
  gl_counter_sub(&gl_counters.large_in_use_bytes, seg->large_usable);
  large_guard_lift(seg);
  segment_large_free(seg);
  purge_large_freed();
}

/* Moves the large-block counters of seg from its old mapping size to its new one. */
static void large_counters_resized(gl_segment_t *seg, size_t old_mapped, size_t old_usable) {
  gl_counter_sub(&gl_counters.large_bytes, old_mapped);
  gl_counter_sub(&gl_counters.large_in_use_bytes, old_usable);
  seg->large_usable = seg->mapped_size - seg->large_offset;
  gl_counter_add_peak(&gl_counters.large_bytes, seg->mapped_size, &gl_counters.large_bytes_peak);
  gl_counter_add(&gl_counters.large_in_use_bytes, seg->large_usable);
}

static void *large_resize_untracked(gl_segment_t *seg, void *p, size_t size);

static void *large_resize_guarded(gl_segment_t *seg, void *p, size_t size);

/* mremap may move the header, and with it the list links: a tracked segment leaves
 * its heap's list while it is resized. */
void *large_resize(gl_segment_t *seg, void *p, size_t size) {
  struct gl_heap_s *heap = seg->heap;
  if (heap == NULL) return large_resize_guarded(seg, p, size);
  large_untrack(seg);
  void *q = large_resize_guarded(seg, p, size);
  large_track(heap, q != NULL ? q : p);
  return q;
}

/* The guard page comes off for the resize and goes back after the new end (or the
 * old one, when the block stays where and as it was). */
static void *large_resize_guarded(gl_segment_t *seg, void *p, size_t size) {
  if (!GL_SECURE) return large_resize_untracked(seg, p, size);
  if (size > GL_MAX_ALLOC - large_guard_room()) return NULL;
#if GL_SECURE
  size_t old_size = seg->large_guard != NULL ? (size_t)(seg->large_guard - (uint8_t *)p) : seg->large_usable;
#else
  size_t old_size = 0;
#endif
  large_guard_lift(seg);
  void *q = large_resize_untracked(seg, p, size + large_guard_room());
  if (q != NULL) large_guard_set(segment_find(q), size);
  else large_guard_set(seg, old_size);
  return q;
}

static void *large_resize_untracked(gl_segment_t *seg, void *p, size_t size) {
  size_t page = os_page_size();
  size_t needed = gl_align_up(seg->large_offset + size, page);
  size_t mapped = seg->mapped_size, usable = seg->large_usable;
  bool stays_large = size > GL_MEDIUM_MAX;

  if (stays_large && needed <= mapped) {
    /* Shrink in place; give the tail back when it is worth a system call. */
    size_t spare = mapped - needed;
    if ((spare >= ((size_t)1 << 20) || spare > mapped / 4) && segment_resize(seg, needed) != NULL)
      large_counters_resized(seg, mapped, usable);
    return p;
  }
  if (stays_large && seg->large_alignment <= GL_LARGE_OFFSET) {
    /* Grow, leaving 1/8 headroom so growth in small steps does not remap each time. */
    size_t target = gl_align_up(needed + needed / 8, page);
    gl_segment_t *moved = segment_resize(seg, target > needed ? target : needed);
    if (moved != NULL) {
      large_counters_resized(moved, mapped, usable);
      purge_large_grown();
      return (uint8_t *)moved + moved->large_offset;
    }
  }
  /* Shrinking into a small or medium block, over-aligned blocks, or mremap failed:
   * the caller allocates and copies. */
  return NULL;
}
