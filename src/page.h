/* page.h: the blocks and free lists of one page (layer 5).
 *
 * Three lists, so the common paths never contend:
 *   free        malloc pops from it (owner only)
 *   local_free  the owner's frees wait here while `free` must stay apart
 *               ("Where frees go" below; owner only)
 *   thread_free other threads push here with one compare-and-swap; the owner takes
 *               the whole list at once.  Its low two bits carry the GL_TF_* state,
 *               its top 16 the list's length.
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

/* How many blocks of size bs page_extend carves at a time: about GL_CARVE_BYTES
 * (memory becomes resident as it is carved), 4 to 64 blocks -- a page reset by
 * galleon_heap_destroy is carved again for each request, and carving far more tiny
 * blocks than a request uses costs more than it saves. */
GL_INLINE uint32_t page_carve_count(size_t bs) {
  size_t n = GL_CARVE_BYTES / bs;
  return n < 4 ? 4 : n > 64 ? 64 : (uint32_t)n;
}

/* The page fields of that test, for block size d and `capacity` carved blocks. */
GL_INLINE uint64_t page_block_magic(size_t d) { return UINT64_MAX / d + 2; }
GL_INLINE uint64_t page_carved_limit(size_t d, uint32_t capacity) {
  return (uint64_t)capacity * (uint64_t)(d * page_block_magic(d));
}

/* ---- Links and marks (Galleon issue #9) ----
 * A free block's two words are what a write after free or an overflow reaches,
 * so neither holds a plain pointer or a plain secret:
 *
 *   link = next ^ block ^ K      the next block of its list (next: NULL at the end)
 *   mark = block * K (mod 2^64)  "this block is free" (the double-free test)
 *
 * K is page->key: a draw from the heap's generator (seeded by getrandom) mixed
 * with a per-process secret kept in Galleon's own data, never in a segment
 * (page.c, "Keys"); it is odd, so the marks of two blocks differ and none is 0,
 * the mark of an allocated block.  The list heads (page->free, local_free and the
 * thread_free word) are metadata outside user memory and stay plain.
 *
 * Every link is decoded and checked where it is loaded, before it becomes a list
 * head or is followed: NULL, or the start of a block the page has carved
 * (page_link_ok: a subtract, a bound, a multiply, a compare).  Anything else is heap
 * corruption: one line on stderr and abort() (page_bad_link) -- never a forged
 * address handed out, never a wild read.  The check is the guarantee; the
 * encoding makes blind writes fail it.
 *
 * What an attacker gets:
 *  - Writing without reading (a write after free, an overflow into a free
 *    neighbour, garbage): the value written decodes to itself ^ block ^ K, a
 *    random address that passes with a chance of about capacity / 2^63 (< 2^-50)
 *    -- a raw pointer to a live block of the same page included.
 *  - Reading one free block: the mark shows no key by itself (the old mark was
 *    page->key in plain text), the link ends a list with block ^ K rather than K,
 *    and link ^ mark does not cancel K (it would with mark = block ^ K, handing
 *    out `next` in plain text).  But one who knows the block's address solves
 *    the mark (or a list's last link) for K; one who reads a carved block never
 *    handed out (next = block + size: next ^ block is small) learns K's upper
 *    bits, and the rest from its mark by trying.  A few instructions cannot hide
 *    a key from a reader.  What a reader who knows K can forge is still bounded by
 *    the check: links of that page only, to block starts among its carved blocks
 *    -- at worst a block of the same page handed out twice, never an address
 *    outside it.  Other pages' keys are unrelated, and so are those of pages a
 *    fork child makes (it draws a new process secret and reseeds its heaps; pages
 *    it inherited keep their keys: re-encoding their lists would touch all free
 *    memory of the process).
 * Cost: malloc's pop decodes (two XORs) and checks (seven instructions; NULL
 * takes the check's out-of-line branch); free's push encodes (two XORs), and
 * its mark is one multiply. */

/* The one line for a link that fails the check; `link` as decoded. */
GL_HIDDEN void page_bad_link(const gl_page_t *page, uintptr_t link) __attribute__((noreturn, cold));

GL_INLINE uintptr_t page_link_encode(uintptr_t key, const void *block, const void *next) {
  return (uintptr_t)next ^ (uintptr_t)block ^ key;
}

/* A decoded link may become a list head: NULL or the start of a block the page
 * has carved.  page_is_block_start is exact for offsets within a page (below
 * 2^19: the argument above, with q * e < 2^20), not for any 64-bit value -- a
 * wrapped product lets through some offsets far outside -- so the offset is
 * bounded first: one compare with a constant.  NULL fails the bound and is told
 * apart there, off the hot path (the ternary keeps gcc from mixing the two
 * tests).  tests/unit checks it on every in-page offset, on every far offset
 * the multiply alone lets through, and on random values. */
GL_INLINE bool page_link_ok(const gl_page_t *page, uintptr_t next) {
  uint64_t offset = next - (uintptr_t)page->start;
  return gl_likely(offset < ((uint64_t)1 << GL_MEDIUM_PAGE_SHIFT)) ? page_is_block_start(page, (const void *)next, true)
                                                                   : next == 0;
}

/* The block after `block` on a list of the page (NULL at its end), decoded and
 * checked.  Owner only (as every walk of the lists is). */
GL_INLINE gl_block_t *page_block_next(const gl_page_t *page, const gl_block_t *block) {
  uintptr_t next = block->link ^ (uintptr_t)block ^ page->key;
  /* An empty asm: gcc would otherwise test next == 0 as "link ^ block == key",
   * keeping both in registers (two more instructions on malloc's path). */
  __asm__("" : "+r"(next));
  if (gl_unlikely(!page_link_ok(page, next))) page_bad_link(page, next);
  return (gl_block_t *)next;
}

GL_INLINE void page_block_set_next(const gl_page_t *page, gl_block_t *block, const gl_block_t *next) {
  block->link = page_link_encode(page->key, block, next);
}

/* The freed mark of a block under key `key`. */
GL_INLINE uintptr_t page_freed_mark(uintptr_t key, const void *block) { return (uintptr_t)block * key; }

/* A block is free (on one of its page's lists, or carved and never handed out)
 * exactly when its second word holds its freed mark. */
GL_INLINE bool page_block_is_free(const gl_page_t *page, const void *block) {
  return ((const gl_block_t *)block)->freed_mark == page_freed_mark(page->key, block);
}

/* Marks a block free and links it in front of `next` (the push of every free). */
GL_INLINE void page_block_push(const gl_page_t *page, gl_block_t *block, const gl_block_t *next) {
  uintptr_t key = page->key;
  block->freed_mark = page_freed_mark(key, block);
  block->link = page_link_encode(key, block, next);
}

/* A block handed out at an interior address (memalign; a block sampled by the heap
 * profiler, 16 bytes in) carries in its first word a tag naming that address; its
 * page is flagged has_aligned.  Only that address frees the block, and never on
 * free's fast path (it is not a block start).  The tag is keyed by page->key (stale
 * data does not match by accident) and by a process secret of its own (page.c), so
 * that the owner of such a block, who knows the address, cannot solve its tag for
 * page->key.  Read as a link it decodes to interior ^ block ^ that secret, which
 * fails the check: a tag is never taken for a link. */
GL_HIDDEN uintptr_t page_interior_tag(const gl_page_t *page, const void *interior);
GL_INLINE void page_tag_interior(gl_page_t *page, void *block, void *interior) {
  ((gl_block_t *)block)->link = page_interior_tag(page, interior);
  if (!__atomic_load_n(&page->has_aligned, __ATOMIC_RELAXED)) __atomic_store_n(&page->has_aligned, 1, __ATOMIC_RELAXED);
}

/* ---- Where frees go ----
 * The owner's frees go on local_free while `free` is a list the fast path must
 * not mix with -- a list of freshly carved, zeroed blocks (free_is_zero: calloc
 * skips their memset), or one the heap profiler charged when it was handed over
 * (heap.c, "Sampling") -- and straight onto `free` otherwise.  There malloc takes
 * the block freed last first, while its lines are still in cache: a program that
 * frees and allocates one size in turn keeps reusing a few warm blocks instead of
 * walking the whole page.  free_push holds the index of the list, so free's fast
 * path adds two instructions and no branch.  The secure build keeps local_free (its frees
 * go through the quarantine, and the order blocks come back in stays random). */
#define GL_PUSH_FREE (offsetof(gl_page_t, free) / sizeof(gl_block_t *))
#define GL_PUSH_LOCAL (offsetof(gl_page_t, local_free) / sizeof(gl_block_t *))
/* The head of the list at word `index` of the page (free_push). */
GL_INLINE gl_block_t *page_list_head(const gl_page_t *page, size_t index) {
  return ((gl_block_t *const *)page)[index];
}
GL_INLINE void page_list_set_head(gl_page_t *page, size_t index, gl_block_t *block) {
  ((gl_block_t **)page)[index] = block;
}
GL_INLINE void page_push_to_local(gl_page_t *page) { page->free_push = GL_PUSH_LOCAL; }
/* The owner's free of a block already marked freed (key: page->key): onto the
 * list free_push names.  True when that left the page empty and not kept (the
 * caller then calls heap_page_emptied). */
GL_INLINE bool page_push_freed(gl_page_t *page, gl_block_t *block, uintptr_t key) {
  size_t list = page->free_push;
  block->link = page_link_encode(key, block, page_list_head(page, list));
  page_list_set_head(page, list, block);
  return gl_unlikely(--page->used == 0) && !page->kept_empty;
}
/* `sampling`: the heap profiler charges this page's lists (heap.c). */
GL_INLINE void page_push_to_free_unless(gl_page_t *page, bool sampling) {
  page->free_push = GL_SECURE || sampling || page->free_is_zero ? GL_PUSH_LOCAL : GL_PUSH_FREE;
}

/* Blocks on the page's free list (the owner's view). */
GL_INLINE size_t page_free_count(const gl_page_t *page) {
  /* Blocks not handed out are on free or local_free (remote frees still count in
   * used until gathered). */
  if (page->local_free == NULL) return page->capacity - page->used;
  size_t n = 0;
  for (const gl_block_t *b = page->free; b != NULL; b = page_block_next(page, b))
    if (gl_unlikely(++n > page->capacity)) page_bad_link(page, (uintptr_t)b); /* a cycle */
  return n;
}

/* The owner's frees become the free list (which is empty): a new list, nothing of
 * it charged yet by the heap profiler.  (heap_malloc_refill does the same inline,
 * without the profiler's counts, which only matter while it samples.) */
GL_INLINE void page_free_from_local(gl_page_t *page, bool sampling) {
  page->free = page->local_free;
  page->local_free = NULL;
  page->free_is_zero = 0;
  page->sample_listed = page->sample_added = 0;
  page_push_to_free_unless(page, sampling);
}

/* Zeroes a block just taken from page->free for calloc: blocks carved from memory
 * the kernel zeroed need only their link cleared (the freed mark is cleared by the
 * taker). */
GL_INLINE void page_block_zero(const gl_page_t *page, gl_block_t *block, size_t size) {
  if (page->free_is_zero) block->link = 0;
  else memset(block, 0, size);
}

#if GL_SECURE
/* The secure build's canaries are keyed by this (secure.c); drawn with the other
 * secrets at process start, before the first block. */
extern GL_HIDDEN uint64_t page_secret_canary;
#endif

/* Draws the per-process secrets (os_random): at process start, and in a fork
 * child (fork_child: only the one new page keys take, see page.c). */
GL_HIDDEN void page_secrets_init(bool fork_child);
/* Sets up a page that just came into use for blocks of class_idx; `random`: a
 * draw of its heap's generator, from which the page key is made. */
GL_HIDDEN void page_init(gl_page_t *page, struct gl_heap_s *owner, uint8_t class_idx, bool mem_is_zero,
                         uint64_t random);
/* Carves the next few blocks into the free list (about 4 KiB at a time, so memory
 * becomes resident only as it is used); false when the page is fully carved. */
GL_HIDDEN bool page_extend(gl_page_t *page);
/* Gives the page a new key (made from `random`, as page_init) and puts every
 * block it has carved on its free list, marked free under that key: the page of a
 * destroyed first-class heap, ready for the next one. */
GL_HIDDEN void page_relink(gl_page_t *page, uint64_t random);
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
