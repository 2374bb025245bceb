/* page.h: the blocks and free lists of one page (layer 5).
 *
 * Three lists, so the common paths never contend:
 *   free        malloc pops from it (owner only)
 *   local_free  the owner's frees go here (owner only)
 *   thread_free other threads push here with one compare-and-swap; the owner takes
 *               the whole list at once.  Its low two bits carry the GL_TF_* state.
 * `used` counts blocks handed out, including remote frees not yet collected, so a
 * page is empty exactly when used == 0 after a collection.
 */
#ifndef GALLEON_PAGE_H
#define GALLEON_PAGE_H

#include <string.h>

#include "segment.h"

/* p is the start of a block the page has carved, in one multiply and one compare,
 * no division.  With d = block_size, M = block_magic and e = d * M - 2^64 (so
 * d <= e < 2d), an offset n = q * d + r gives n * M = q * e + r * M (mod 2^64):
 * for r = 0 that is q * e, below carved_limit = capacity * e exactly when
 * q < capacity; for r > 0 it is at least M > 2^47, far above any limit (at most
 * 2^21).  Offsets below the page start (down to -16 KiB) wrap to within 2^47 of
 * 2^64.  tests/unit checks this for every class and offset.  Unused pages have
 * carved_limit 0: nothing passes.  `owner`: the caller owns the page, the only
 * thread that changes carved_limit, so it reads it plainly; others read atomically. */
GL_INLINE bool page_is_block_start(const gl_page_t *page, const void *p, bool owner) {
  uint64_t offset = (uintptr_t)p - (uintptr_t)page->start;
  uint64_t limit = owner ? page->carved_limit : __atomic_load_n(&page->carved_limit, __ATOMIC_RELAXED);
  return offset * page->block_magic < limit;
}

/* The page fields of that test, for block size d and `capacity` carved blocks. */
GL_INLINE uint64_t page_block_magic(size_t d) { return UINT64_MAX / d + 2; }
GL_INLINE uint64_t page_carved_limit(size_t d, uint32_t capacity) {
  return (uint64_t)capacity * (uint64_t)(d * page_block_magic(d));
}

/* A block is free (on one of its page's lists, or carved and never handed out)
 * exactly when its second word holds the page key. */
GL_INLINE bool page_block_is_free(const gl_page_t *page, const void *block) {
  return ((const gl_block_t *)block)->freed_mark == page->key;
}

/* A block handed out at an interior address (memalign; a block sampled by the heap
 * profiler, 16 bytes in) carries in its first word a tag naming that address,
 * keyed so that stale data does not match by accident; its page is flagged
 * has_aligned.  Only that address frees the block, and never on free's fast path
 * (it is not a block start). */
GL_INLINE uintptr_t page_interior_tag(const gl_page_t *page, const void *interior) {
  return (uintptr_t)interior ^ page->key;
}
GL_INLINE void page_tag_interior(gl_page_t *page, void *block, void *interior) {
  ((gl_block_t *)block)->next = (gl_block_t *)page_interior_tag(page, interior);
  if (!__atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED)) __atomic_store_n(&page->has_aligned, 1, __ATOMIC_RELAXED);
}

/* Blocks on the page's free list (the owner's view). */
GL_INLINE size_t page_free_count(const gl_page_t *page) {
  /* Blocks not handed out are on free or local_free (remote frees still count in
   * used until gathered). */
  if (page->local_free == NULL) return page->capacity - page->used;
  size_t n = 0;
  for (const gl_block_t *b = page->free; b != NULL; b = b->next) n++;
  return n;
}

/* Zeroes a block just taken from page->free for calloc: blocks carved from memory
 * the kernel zeroed need only their link cleared (the freed mark is cleared by the
 * taker). */
GL_INLINE void page_block_zero(const gl_page_t *page, gl_block_t *block, size_t size) {
  if (page->free_is_zero) block->next = NULL;
  else memset(block, 0, size);
}

/* Sets up a page that just came into use for blocks of class_idx. */
GL_HIDDEN void page_init(gl_page_t *page, struct gl_heap_s *owner, uint8_t class_idx, bool mem_is_zero,
                         uintptr_t key);
/* Carves the next few blocks into the free list (about 4 KiB at a time, so memory
 * becomes resident only as it is used); false when the page is fully carved. */
GL_HIDDEN bool page_extend(gl_page_t *page);
/* Puts every block the page has carved on its free list (marked free under the
 * page's current key): the page of a destroyed first-class heap, ready for the
 * next one. */
GL_HIDDEN void page_relink(gl_page_t *page);
/* Keeps the first `keep` blocks of the free list and moves the rest to the front
 * of local_free, where the next refill finds them (the heap profiler's cut). */
GL_HIDDEN void page_cut_free(gl_page_t *page, size_t keep);
/* Moves the owner's and other threads' frees back to where malloc finds them; with
 * to_local, other threads' frees join local_free and `free` is left alone (a sweep
 * while the heap profiler samples: only a charged hand-over may fill `free`). */
GL_HIDDEN void page_gather_frees(gl_page_t *page, bool to_local);
/* A free from a thread that does not own the page. */
GL_HIDDEN void page_free_remote(gl_page_t *page, gl_block_t *block);
/* Debug validator: counts and lists of a page in use agree. */
GL_HIDDEN bool page_is_valid(const gl_page_t *page);

#endif /* GALLEON_PAGE_H */
