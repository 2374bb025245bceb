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

/* A block in a reused segment that must not show the earlier block's data: a
 * calloc'd one must read as zero, and in the secure build every one must hold zero
 * or the pattern.  Resident pages are written with `value`; runs of pages that are
 * not resident -- never touched, or purged -- are emptied instead (they read as
 * zero; emptying also clears pages swapped out, which hold data), without being
 * touched.  Writing every page made a program that asks for a big buffer and uses
 * its start pay for the whole request on every call: calloc(64 MiB), 64 KiB used,
 * shrunk and freed took 3 ms a round against glibc's 0.03 ms, and in the secure
 * build a Python multiprocessing worker receiving 100 MB (os.read(fd, n) asks for
 * n and shrinks the block to the 64 KiB the pipe held) took 5x the faults and 3x
 * the time of the default build.  Purging everything instead refaulted a block the
 * program then writes whole (3.5x slower on calloc, fill, free of 20 MiB).  A run
 * shorter than GL_CLEAR_RUN_MIN pages is written too: a system call costs about as
 * much as writing that much. */
#define GL_CLEAR_RUN_MIN 16
#define GL_CLEAR_BATCH 512 /* pages asked of mincore at a time */
static void large_clear(uint8_t *block, size_t size, int value) {
  size_t page = os_page_size();
  uint8_t *end = block + size;
  uint8_t *from = (uint8_t *)gl_align_up((uintptr_t)block, page);
  uint8_t *to = (uint8_t *)((uintptr_t)end & ~(uintptr_t)(page - 1));
  if (to <= from) {
    memset(block, value, size);
    return;
  }
  memset(block, value, (size_t)(from - block));
  memset(to, value, (size_t)(end - to));
  uint8_t resident[GL_CLEAR_BATCH];
  for (uint8_t *at = from; at < to;) {
    size_t count = (size_t)(to - at) / page;
    if (count > GL_CLEAR_BATCH) count = GL_CLEAR_BATCH;
    if (!os_resident(at, count, resident)) memset(resident, 1, count);
    for (size_t i = 0, j; i < count; i = j) {
      bool is_resident = resident[i] & 1;
      for (j = i + 1; j < count && (resident[j] & 1) == is_resident; j++) continue;
      uint8_t *run = at + i * page;
      size_t len = (j - i) * page;
      if (is_resident || j - i < GL_CLEAR_RUN_MIN || !os_discard(run, len)) memset(run, value, len);
    }
    at += count * page;
  }
}

void *large_alloc(size_t size, size_t alignment, bool zero) {
  if (size > GL_MAX_ALLOC - large_guard_room()) {
    errno = ENOMEM;
    return NULL;
  }
  bool is_zero = false;
  bool from_cache = false;
  gl_segment_t *seg = segment_large_alloc(size + large_guard_room(), alignment, &is_zero, &from_cache);
  if (seg == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  /* Secure: a reused segment holds an earlier block's data. */
  if (!is_zero && (zero || GL_SECURE)) large_clear(block, size, zero ? 0 : GL_SECURE_FILL);
  large_guard_set(seg, size);
  if (GL_VALGRIND && seg->large_usable > size) annotate_noaccess(block + size, seg->large_usable - size);
  gl_counter_add_peak(&gl_counters.large_blocks, 1, &gl_counters.large_blocks_peak);
  gl_counter_add_peak(&gl_counters.large_bytes, seg->mapped_size, &gl_counters.large_bytes_peak);
  gl_counter_add(&gl_counters.large_in_use_bytes, seg->large_usable);
  purge_large_allocated(size, from_cache, !from_cache || is_zero);
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
  segment_large_free(seg, purge_large_keep_resident(seg->mapped_size));
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

/* The most usable room a large block keeps through a resize in place: twice its
 * size and a 2 MiB unit (no wrap: size <= GL_MAX_ALLOC).  The block sits at the end
 * of a mapping of whole units, so a tail cut at a unit boundary, or headroom
 * counted from a block's end far into its mapping, could otherwise leave a 0.7 MiB
 * block 3.5 MiB (found by the fuzzer). */
static bool large_room_bounded(size_t room, size_t size) { return room <= 2 * size + GL_LARGE_SPAN_UNIT; }

static void *large_resize_untracked(gl_segment_t *seg, void *p, size_t size) {
  size_t end = seg->large_offset + size; /* (no wrap: size <= GL_MAX_ALLOC, checked by the caller) */
  size_t needed = segment_large_span(end);
  size_t mapped = seg->mapped_size, usable = seg->large_usable;
  bool stays_large = size > GL_MEDIUM_MAX;

  if (stays_large && size <= usable) {
    /* Shrink in place; give the tail back when it is worth a system call.  Past
     * the bound, the block moves to one of its size instead (the copy costs the
     * new size, less than the memory it would pin). */
    bool trim = needed <= mapped && (mapped - needed >= ((size_t)1 << 20) || mapped - needed > mapped / 4);
    if (!large_room_bounded((trim ? needed : mapped) - seg->large_offset, size)) return NULL;
    if (trim && segment_resize(seg, needed) != NULL) large_counters_resized(seg, mapped, usable);
    return p;
  }
  if (stays_large && seg->large_alignment <= GL_LARGE_OFFSET) {
    /* Grow, leaving 1/8 headroom so growth in small steps does not remap each time
     * (of the block's end: the unit rounding is headroom already). */
    size_t target = segment_large_span(end + end / 8);
    if (!large_room_bounded(target - seg->large_offset, size)) target = needed;
    bool from_cache;
    gl_segment_t *moved = segment_grow(seg, target > needed ? target : needed, &from_cache);
    if (moved != NULL) {
      large_counters_resized(moved, mapped, usable);
      purge_large_grown(from_cache);
      return (uint8_t *)moved + moved->large_offset;
    }
  }
  /* Shrinking into a small or medium block, over-aligned blocks, or mremap failed:
   * the caller allocates and copies. */
  return NULL;
}
