/* purge.h: when memory goes back to the OS (layer 6) -- the one place that decides.
 *
 * Unused pages of a heap and freed segments in the segment cache stay resident
 * ("dirty") while recent demand says the program will use them again, and are
 * purged (madvise) otherwise:
 *
 *   - demand: for each heap the bytes of its pages in use, for the cache the bytes
 *     of live segments; the highest value in each slot of the last purge_window_ms
 *     is remembered.  Dirty memory up to (recent peak - current) -- what the program
 *     just had and may well take again -- is kept, and at least retain_bytes
 *     (2 x for the cache).  The window of a heap (or the cache) whose purged memory
 *     is faulted back soon after grows, up to 8 x;
 *   - excess: dirty memory beyond that is purged once it has been dirty for
 *     purge_delay_ms (cached segments: 10 x), oldest first -- cached segments at
 *     once when a large block grows without taking cached pages (the program maps
 *     more beside them rather than taking them back); a cached segment only partly
 *     beyond the rule loses its head, not all of it;
 *   - huge blocks: a freed block of 32 MiB or more is purged as it goes into the
 *     cache, unless a block that big came from the cache within purge_window_ms
 *     (the program frees and takes back blocks of that size);
 *   - idle: a heap, or the cache, that has seen no page or segment come or go for
 *     purge_idle_ms, while the thread owning the heap (for the cache: the process)
 *     used under 1/8 of a CPU, gives back all of its dirty memory;
 *   - pressure: when the process's cgroup nears its memory limit, or its tasks
 *     stall on memory, every rule acts as if the program were idle;
 *   - malloc_trim(0) and galleon_collect() give back everything now.
 *
 * Who runs the rules: the owner thread when a page leaves use and every few slow
 * paths (purge_heap_tick), large frees (purge_large_freed), and one background
 * thread, started once 1 MiB of free memory is waiting, which wakes every
 * purge_idle_ms / 2 (10-250 ms) while any dirty memory exists and for a second
 * after, sleeps otherwise.  Busy
 * threads never signal it except to end a sleep without deadline.
 *
 * Lock order: (heap registry) -> segs->lock -> cache policy lock -> (segment cache
 * lock).  The purger takes segs->lock with trylock only: it never makes an owner wait.
 */
#ifndef GALLEON_PURGE_H
#define GALLEON_PURGE_H

#include "page.h"

/* ---- A heap's pages ---- */

/* Sets up a heap's queue and hands it to the purger (queues are never freed). */
GL_HIDDEN void purge_queue_init(gl_purge_queue_t *q, gl_segset_t *segs);
/* The kernel id of the thread that owns the queue's heap (0: none, as for heaps
 * abandoned or first-class): whether that thread runs tells a busy heap from an
 * idle one. */
GL_HIDDEN void purge_queue_set_owner(gl_purge_queue_t *q, int tid);
/* A page for `heap` to put into use for size class `cls`: resident pages first, one
 * that last held that class's block size before any other; NULL when no memory can
 * be had. */
GL_HIDDEN gl_page_t *purge_page_alloc(gl_purge_queue_t *q, struct gl_heap_s *heap, unsigned cls, bool *is_zero);
/* A page with no block left leaves use: queued dirty, purged by the rules above. */
GL_HIDDEN void purge_page_free(gl_purge_queue_t *q, gl_page_t *page);
/* The owner's periodic look (slow path): applies the rules if anything is dirty. */
GL_HIDDEN void purge_heap_tick(gl_purge_queue_t *q, uint64_t now);
/* Purges all dirty pages of the queue now. */
GL_HIDDEN void purge_heap_all(gl_purge_queue_t *q);
/* Purges the oldest dirty pages now until at most `keep` bytes are left; returns
 * the dirty bytes left (malloc_trim's pad). */
GL_HIDDEN size_t purge_heap_keep(gl_purge_queue_t *q, size_t keep);
/* Debug validator: the queue lists exactly the dirty pages and their bytes. */
GL_HIDDEN bool purge_queue_is_valid(gl_purge_queue_t *q);

/* ---- Large blocks and the segment cache ---- */

/* A large block of `size` bytes was allocated (demand rose; from_cache: a cached
 * segment served it; fresh: its memory was not resident), grew (demand rose; unless cached pages served the growth,
 * cached memory beyond the rule goes at once), or was freed into the cache. */
GL_HIDDEN void purge_large_allocated(size_t size, bool from_cache, bool fresh);
GL_HIDDEN void purge_large_grown(bool from_cache);
/* Whether the segment of a large block being freed, `size` bytes, goes into the
 * cache resident (else purged: the huge-block rule above). */
GL_HIDDEN bool purge_large_keep_resident(size_t size);
GL_HIDDEN void purge_large_freed(void);
/* Purges and unmaps every cached segment now. */
GL_HIDDEN void purge_cache_all(void);
/* Purges cached segments now, oldest first, until at most `keep` bytes stay
 * resident (keep 0: all purged and unmapped). */
GL_HIDDEN void purge_cache_keep(size_t keep);

/* ---- The purger thread ---- */

/* The heap layer's collection of abandoned heaps, run by the purger on each round;
 * returns whether it has more to do later. */
typedef bool (*purge_collect_fn)(uint64_t now);
GL_HIDDEN void purge_set_collector(purge_collect_fn collect);
/* Memory the collector will have to look at is waiting (bytes): starts the purger
 * when enough is, ends its sleep without deadline. */
GL_HIDDEN void purge_notify_pending(size_t bytes);
/* How many times memory pressure (cgroup limit or stalls) turned on. */
GL_HIDDEN size_t purge_pressure_events(void);
/* In a fork child: the purger does not exist there; the child starts its own. */
GL_HIDDEN void purge_fork_child(void);

#endif /* GALLEON_PURGE_H */
