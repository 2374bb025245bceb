/* heap.h: thread heaps and malloc's slow path (layer 8).
 *
 * A heap is used by one thread at a time.  It keeps, per size class, a queue of
 * pages whose first page is the one to allocate from, a direct table from small
 * sizes to that page, and a full list of pages with no free block.  When a thread
 * exits its heap is abandoned whole: its pages keep their blocks, other threads
 * keep freeing into them (remote frees), the next new thread adopts the heap, and
 * until then other threads and the purger sweep it so its empty pages are
 * returned.  Heaps are never unmapped, so a remote free may always follow
 * page->owner.
 *
 * Lock order: registry_lock -> heap->segs.lock (purge.h) -> ...  No fast path takes
 * a lock.
 */
#ifndef GALLEON_HEAP_H
#define GALLEON_HEAP_H

#include "large.h"

/* The calling thread's heap; &gl_heap_empty (every direct entry an empty page)
 * until its first allocation, so that one misses the fast path and sets it up. */
extern GL_HIDDEN __thread gl_heap_t *gl_tls_heap;
extern GL_HIDDEN gl_heap_t gl_heap_empty;
extern GL_HIDDEN gl_page_t gl_page_empty;

/* Reads options, initialises the OS layer and the thread-exit key; idempotent and
 * allocation-free, safe to call from any entry point. */
GL_HIDDEN void heap_process_init(void);

/* malloc's first stop off the fast path (sizes of every kind): refills the page's
 * free list from the owner's own frees, or goes on to heap_malloc_slow. */
GL_HIDDEN void *heap_malloc_refill(size_t size, gl_heap_t *heap, bool zero);

/* free() saw the last block of a page come back: keep the page or retire it. */
GL_HIDDEN void heap_page_emptied(gl_heap_t *heap, gl_page_t *page);
/* The same, from the fast path: takes the block, so the fast path keeps no
 * register alive across the call. */
GL_HIDDEN void heap_block_freed_last(void *p);
/* A page on the full list got a block back from its owner. */
GL_HIDDEN void heap_page_unfull(gl_heap_t *heap, gl_page_t *page);
/* Gives a checked block back to its page off free's fast path: onto local_free
 * when `heap` (the caller's) owns the page, else as a remote free. */
GL_HIDDEN void heap_block_release(gl_heap_t *heap, gl_page_t *page, gl_block_t *block);

#if GL_SECURE
/* Secure build: a freed block (filled, marked freed) of `page` waits in the
 * heap's quarantine; the oldest ones go back to their pages to make room (heap.c,
 * "Quarantine"). */
GL_HIDDEN void heap_quarantine_release(gl_heap_t *heap, gl_page_t *page, gl_block_t *block);
GL_HIDDEN void heap_quarantine_shrink(gl_heap_t *heap);
GL_INLINE void heap_quarantine_push(gl_heap_t *heap, gl_page_t *page, gl_block_t *block) {
  struct gl_quarantined_s oldest = {NULL, NULL};
  uint32_t head = heap->quarantine_head, count = heap->quarantine_count;
  size_t bytes = heap->quarantine_bytes + page->block_size;
  if (count == GL_QUARANTINE_SLOTS) {
    /* Full: the oldest makes room (its slot is the one the new block takes). */
    oldest = heap->quarantine[head];
    bytes -= oldest.page->block_size;
    head = (head + 1) % GL_QUARANTINE_SLOTS;
    count--;
  }
  struct gl_quarantined_s *slot = &heap->quarantine[(head + count) % GL_QUARANTINE_SLOTS];
  slot->block = block;
  slot->page = page;
  heap->quarantine_head = head;
  heap->quarantine_count = count + 1;
  heap->quarantine_bytes = bytes;
  if (gl_unlikely(bytes > GL_QUARANTINE_BYTES)) heap_quarantine_shrink(heap);
  /* Last, so that free ends in a jump here and keeps nothing across a call. */
  if (oldest.block != NULL) heap_quarantine_release(heap, oldest.page, oldest.block);
}
#endif

/* malloc_trim(keep): the free memory of the calling thread's heap, of abandoned and
 * destroyed heaps and of the segment cache goes back to the OS, but for `keep`
 * bytes (0: all of it, and cached segments are unmapped). */
GL_HIDDEN void heap_trim_all(size_t keep);

/* First-class heaps (galleon_heap_new): used by one thread at a time, their blocks
 * freed with plain free() from any thread (always a remote free).  destroy releases
 * every block at once; delete hands the live blocks over (the heap joins the
 * abandoned heaps, which new threads adopt and sweepers keep returning). */
GL_HIDDEN gl_heap_t *heap_first_class_new(void);
GL_HIDDEN void *heap_first_class_alloc(gl_heap_t *heap, size_t size, bool zero);
GL_HIDDEN void heap_first_class_destroy(gl_heap_t *heap);
GL_HIDDEN void heap_first_class_delete(gl_heap_t *heap);
GL_HIDDEN bool heap_is_first_class(const gl_heap_t *heap);

/* The heap profiler started (on) or stopped: sampling happens on the slow path, so
 * while it runs every refill goes there; at the start the calling thread's free
 * lists go back through it too, to be charged. */
GL_HIDDEN void heap_profile_switched(bool on);

/* Every heap ever made, for statistics (lost heaps excluded by heap_is_lost). */
GL_HIDDEN gl_heap_t *heap_registry_first(void);
GL_HIDDEN bool heap_is_lost(gl_heap_t *heap);
/* Debug validator: queues, full list, direct table and counters agree. */
GL_HIDDEN bool heap_is_valid(gl_heap_t *heap);

#endif /* GALLEON_HEAP_H */
