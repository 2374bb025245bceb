/* segment.h: segments, the segment map and the segment cache (layer 4).
 *
 * A segment is GL_SEGMENT_SIZE-aligned address space from the OS.  Small and medium
 * segments belong to one heap's segment set and are cut into pages; a large one
 * holds one block.  This layer hands out and takes back whole pages and segments and
 * knows how to purge them; *when* to purge is purge.h's decision.
 *
 * Lock order: (heap registry) -> set->lock -> cache lock.  The cache lock is a leaf,
 * taken here only; no fast path takes any lock.
 */
#ifndef GALLEON_SEGMENT_H
#define GALLEON_SEGMENT_H

#include "os.h"

/* ---- The segment map ---- */

/* The top level: for chunk c, the address of its first entry minus
 * c * GL_SEGMAP_CHUNK_UNITS, so that the entry of unit u is at gl_segmap[c] + u with
 * no masking.  Every chunk starts as a shared all-NONE chunk and gets memory of its
 * own when the first segment in its 256 GiB range is mapped. */
extern GL_HIDDEN uintptr_t gl_segmap[GL_SEGMAP_CHUNKS];

/* What the 4 MiB unit at addr is; NONE for any address Galleon never mapped,
 * including those at or above 2^47.  Five instructions past the shift: a compare
 * and branch, a shift and two loads. */
GL_INLINE uint8_t segment_map_get(uintptr_t addr) {
  size_t unit = addr >> GL_SEGMENT_SHIFT;
  if (gl_unlikely(unit >= GL_SEGMAP_UNITS)) return GL_SEGMAP_NONE;
  uintptr_t biased = __atomic_load_n(&gl_segmap[unit >> GL_SEGMAP_CHUNK_SHIFT], __ATOMIC_RELAXED);
  return atomic_load_explicit((_Atomic(uint8_t) *)(biased + unit), memory_order_relaxed);
}

GL_INLINE gl_segment_t *segment_of(const void *p) {
  return (gl_segment_t *)((uintptr_t)p & ~(uintptr_t)GL_SEGMENT_MASK);
}
/* Page i of seg (i < page_count). */
GL_INLINE gl_page_t *segment_page(gl_segment_t *seg, unsigned i) {
  return &seg->pages[i << (seg->page_shift - GL_PAGE_SLOT_SHIFT)];
}
/* The page that p, inside the small or medium segment seg, belongs to: the byte
 * offset of its descriptor slot is a shift of p and one mask from the header
 * (descriptors are 128 bytes), no variable shift. */
GL_INLINE gl_page_t *segment_page_of(gl_segment_t *seg, const void *p) {
  _Static_assert(sizeof(gl_page_t) == 1 << 7, "a slot's byte offset is its index << 7");
  uintptr_t offset = ((uintptr_t)p >> (GL_PAGE_SLOT_SHIFT - 7)) & seg->slot_offset_mask;
  return (gl_page_t *)((uint8_t *)seg->pages + offset);
}
/* Bytes at the end of each page of seg that no block may reach: in the secure build
 * the last OS page of a medium page, its guard (segment.c, "Guard pages"); 0 for
 * small pages and in the default build (where it folds away). */
GL_INLINE size_t segment_page_guard(const gl_segment_t *seg) {
  return GL_SECURE && seg->kind == GL_KIND_MEDIUM ? os_page_size() : 0;
}
/* Bytes from a page's first block to where its blocks must end: the end of the
 * page, or the start of its guard (its geometry, in use or not).  Every count of
 * a page's blocks (page_init's `reserved`, and with it the carving and the
 * secure build's fill) and every page area (purge queues, statistics) is this. */
GL_INLINE size_t segment_page_area(const gl_page_t *page) {
  gl_segment_t *seg = segment_of(page);
  uint8_t *end = (uint8_t *)seg + ((size_t)(page->index + 1) << seg->page_shift) - segment_page_guard(seg);
  return (size_t)(end - page->start);
}
GL_INLINE bool segment_is_cached(const gl_segment_t *seg) {
  return __atomic_load_n(&seg->cache_state, __ATOMIC_RELAXED) != GL_SEGMENT_LIVE;
}

/* The segment that holds p (walking back over the tail units of a large one), or NULL. */
GL_HIDDEN gl_segment_t *segment_find(const void *p);

/* ---- Pages of a heap's segments (caller holds set->lock) ---- */

GL_HIDDEN void segment_set_init(gl_segset_t *set);
/* An unused page of `kind`, now in use: resident (dirty) pages first.  *was_dirty
 * says it was on its heap's purge queue; *is_zero that its memory reads as zero.
 * NULL when no memory can be had. */
GL_HIDDEN gl_page_t *segment_page_alloc(gl_segset_t *set, struct gl_heap_s *heap, gl_kind_t kind,
                                        bool *is_zero, bool *was_dirty);
/* That unused page in particular, now in use (as segment_page_alloc). */
GL_HIDDEN void segment_page_take(gl_segset_t *set, gl_page_t *page, bool *is_zero, bool *was_dirty);
/* A page that no longer holds blocks: unused and dirty (resident). */
GL_HIDDEN void segment_page_free(gl_segset_t *set, gl_page_t *page);
/* Purges every dirty page of seg, one madvise per run of adjacent pages; returns
 * the mask of the pages purged (now clean).  With huge_pages, only pages of a
 * 2 MiB half with no page in use: a huge page is returned whole or not at all. */
GL_HIDDEN uint64_t segment_purge_dirty(gl_segment_t *seg, bool decommit, bool huge_pages);
/* A segment with no page in use or dirty leaves its set for the cache. */
GL_HIDDEN void segment_release_if_unused(gl_segset_t *set, gl_segment_t *seg);
/* Debug validator: masks, counts and page states agree. */
GL_HIDDEN bool segment_is_valid(const gl_segment_t *seg);

/* ---- Large segments: one block each, owned by no heap ---- */

/* The mapping size of a large segment that must hold `bytes`: whole OS pages, and
 * from GL_LARGE_SPAN_UNIT up, whole units of it (segment.c, "Large segments"). */
#define GL_LARGE_SPAN_UNIT ((size_t)2 << 20)
GL_HIDDEN size_t segment_large_span(size_t bytes);
/* A segment for a block of `size` bytes aligned to `alignment` (a power of two,
 * at most GL_MAX_ALIGN); reuses cached ones when it can (*from_cache: they made
 * half of it or more). */
GL_HIDDEN gl_segment_t *segment_large_alloc(size_t size, size_t alignment, bool *is_zero, bool *from_cache);
/* A large segment whose block was freed: to the cache (resident, or purged first),
 * or unmapped. */
GL_HIDDEN void segment_large_free(gl_segment_t *seg, bool resident);
/* Resizes the mapping with mremap (contents never copied); the segment's new
 * address, or NULL with the segment as it was. */
GL_HIDDEN gl_segment_t *segment_resize(gl_segment_t *seg, size_t new_size);
/* segment_resize for growth, with resident cached pages moved in where the cache
 * has some (*from_cache: it had). */
GL_HIDDEN gl_segment_t *segment_grow(gl_segment_t *seg, size_t new_size, bool *from_cache);

/* ---- The segment cache: freed segments kept for reuse ----
 * At most segment_cache of them resident; beyond that the oldest is purged and
 * stays cached, mapped but not resident, up to a bound on the bytes of those. */

/* Purges resident cached segments, oldest first, that were cached at or before
 * `cached_by_ms`, until at most keep_bytes of cached memory stay resident. */
GL_HIDDEN void segment_cache_purge(size_t keep_bytes, uint64_t cached_by_ms, bool decommit);
/* Unmaps cached segments cached (or purged) at or before `cached_by_ms`. */
GL_HIDDEN void segment_cache_unmap(uint64_t cached_by_ms);
/* The bound on purged cached segments (bytes of address space): the oldest beyond
 * it are unmapped, now and whenever more are purged.  It starts at
 * SEGMENT_CACHE_PURGED_MIN; purge.h's rules move it. */
#define SEGMENT_CACHE_PURGED_MIN ((size_t)64 << 20)
GL_HIDDEN void segment_cache_limit(size_t purged_bytes);
GL_HIDDEN size_t segment_cache_resident_bytes(void);
GL_HIDDEN size_t segment_cache_bytes(void);
/* Moves the segments of the cache's lock-free front (segment.c) into its lists,
 * where segment_cache_purge and segment_cache_unmap see them. */
GL_HIDDEN void segment_cache_front_drain(void);
/* Counts segments entering and leaving the cache: a sign of activity. */
GL_HIDDEN uint64_t segment_cache_activity(void);
/* In a fork child: forgets a cache another thread was changing at the fork. */
GL_HIDDEN void segment_fork_child(void);

#endif /* GALLEON_SEGMENT_H */
