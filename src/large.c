/* large.c: blocks over GL_MEDIUM_MAX, each in a segment of its own.
 *
 * A large block starts GL_LARGE_OFFSET (one OS page) into its segment, so it is
 * page aligned; the mapping is as long as the block needs, rounded to OS pages.
 * Freed large segments go to the segment cache, where they are purged after the
 * purge delay and unmapped later.  realloc of a large block resizes the mapping in
 * place or moves it with mremap: page tables move, contents are never copied.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

static size_t align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

void *large_alloc(size_t size, size_t alignment, bool zero) {
  if (size > GL_MAX_ALLOC) {
    errno = ENOMEM;
    return NULL;
  }
  heap_process_init();
  bool is_zero = false;
  gl_segment_t *seg = segment_large_alloc(size, alignment, &is_zero);
  if (seg == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  if (zero && !is_zero) memset(block, 0, size);
  gl_counter_add(&gl_counters.large_blocks, 1);
  gl_counter_add(&gl_counters.large_bytes, seg->mapped_size);
  gl_counter_add(&gl_counters.large_in_use_bytes, seg->large_usable);
  return block;
}

void large_free(gl_segment_t *seg, void *p, const char *what) {
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  if (seg->cached) gl_fatal("double free of", p, NULL, NULL);
  if ((uint8_t *)p != block) gl_fatal(what, p, ": interior pointer of the block at ", block);
  gl_counter_sub(&gl_counters.large_blocks, 1);
  gl_counter_sub(&gl_counters.large_bytes, seg->mapped_size);
  gl_counter_sub(&gl_counters.large_in_use_bytes, seg->large_usable);
  segment_large_free(seg);
}

static void large_set_size(gl_segment_t *seg, size_t mapped) {
  gl_counter_sub(&gl_counters.large_bytes, seg->mapped_size);
  gl_counter_sub(&gl_counters.large_in_use_bytes, seg->large_usable);
  gl_counter_sub(&gl_counters.mapped, seg->mapped_size);
  seg->mapped_size = mapped;
  seg->large_usable = mapped - seg->large_offset;
  gl_counter_add(&gl_counters.large_bytes, mapped);
  gl_counter_add(&gl_counters.large_in_use_bytes, seg->large_usable);
  gl_counter_add(&gl_counters.mapped, mapped);
  size_t peak = gl_counter_get(&gl_counters.mapped_peak);
  size_t now = gl_counter_get(&gl_counters.mapped);
  if (now > peak) atomic_store_explicit(&gl_counters.mapped_peak, now, memory_order_relaxed);
}

/* Returns the new block or NULL (errno = ENOMEM, old block intact). */
void *large_realloc(gl_segment_t *seg, void *p, size_t size) {
  uint8_t *block = (uint8_t *)seg + seg->large_offset;
  size_t page = os_page_size();
  size_t needed = align_up(seg->large_offset + size, page);
  size_t mapped = seg->mapped_size;
  bool movable = seg->large_alignment <= GL_LARGE_OFFSET && size > GL_MEDIUM_MAX;

  if (size > GL_MEDIUM_MAX && needed <= mapped) {
    /* Shrink in place; give the tail back when it is worth a system call. */
    size_t spare = mapped - needed;
    if (spare >= ((size_t)1 << 20) || spare > mapped / 4) {
      segment_map_set(seg, mapped, GL_SEGMAP_NONE);
      os_unmap((uint8_t *)seg + needed, spare);
      large_set_size(seg, needed);
      segment_map_set(seg, needed, GL_SEGMAP_LARGE);
    }
    return p;
  }
  if (movable) {
    /* Grow: in place if the address space after it is free, else move the pages.
     * Leave 1/8 headroom so growth in small steps does not remap every time. */
    size_t target_size = align_up(needed + needed / 8, page);
    if (target_size < needed) target_size = needed;
    if (os_resize_in_place(seg, mapped, target_size)) {
      large_set_size(seg, target_size);
      segment_map_set(seg, target_size, GL_SEGMAP_LARGE);
      return p;
    }
    void *target = os_reserve_aligned(target_size, GL_SEGMENT_SIZE);
    if (target != NULL) {
      segment_map_set(seg, mapped, GL_SEGMAP_NONE);
      if (os_move(seg, mapped, target_size, target)) {
        gl_segment_t *moved = target;
        large_set_size(moved, target_size);
        segment_map_set(moved, target_size, GL_SEGMAP_LARGE);
        return (uint8_t *)moved + moved->large_offset;
      }
      segment_map_set(seg, mapped, GL_SEGMAP_LARGE);
      os_unmap(target, target_size);
    }
  }
  /* Shrinking into a small or medium block, over-aligned blocks, or mremap failed. */
  void *fresh = alloc_malloc(size);
  if (fresh == NULL) return NULL;
  size_t old_usable = seg->large_usable - (size_t)((uint8_t *)p - block);
  memcpy(fresh, p, size < old_usable ? size : old_usable);
  large_free(seg, p, "invalid realloc of");
  return fresh;
}
