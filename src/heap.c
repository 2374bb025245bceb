/* heap.c: thread heaps, malloc's slow path, retiring pages, abandonment, fork.
 *
 * Lock order: registry_lock -> heap->lock -> cache_lock (segment.c).
 * registry_lock guards the list of all heaps (append only), the abandoned list and
 * the pool heaps are carved from.  No fast path takes a lock.
 *
 * A heap is used by one thread at a time.  When a thread exits, its heap is
 * abandoned whole: its pages keep their blocks, other threads keep freeing into
 * them (remote frees), the next new thread adopts the heap, and until then other
 * threads' slow paths collect it so its empty pages are returned.  Heaps are never
 * unmapped, so a remote free may always follow page->heap.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "check.h"
#include "internal.h"
#include "sizeclass.h"

gl_page_t gl_page_empty;
gl_heap_t gl_heap_empty = {.direct = {[0 ... GL_DIRECT_COUNT - 1] = &gl_page_empty}};
__thread gl_heap_t *gl_tls_heap __attribute__((tls_model("initial-exec"))) = &gl_heap_empty;
/* Set once this thread's heap was abandoned at thread exit. */
static __thread uint8_t gl_tls_heap_done __attribute__((tls_model("initial-exec")));
gl_counters_t gl_counters;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(gl_heap_t *) heaps_all;
static gl_heap_t *heaps_abandoned;
static _Atomic(size_t) abandoned_count;
static _Atomic(uint64_t) abandoned_next_ms;
static uint8_t *heap_pool_next, *heap_pool_end;

static _Atomic(int) process_state; /* 0: not started, 1: starting, 2: ready */
static pthread_key_t thread_key;
static bool thread_key_ok;

static void heap_thread_done(void *value);
static void direct_ranges_init(void);
static void heap_fork_child(void);

gl_heap_t *heap_registry_first(void) {
  return atomic_load_explicit(&heaps_all, memory_order_acquire);
}

/* ---- Process start ---- */

void heap_process_init(void) {
  if (gl_likely(atomic_load_explicit(&process_state, memory_order_acquire) == 2)) return;
  int expected = 0;
  if (atomic_compare_exchange_strong(&process_state, &expected, 1)) {
    /* Nothing here allocates: sysconf, getenv and pthread_key_create do not. */
    options_init();
    os_init();
    direct_ranges_init();
    thread_key_ok = pthread_key_create(&thread_key, heap_thread_done) == 0;
    atomic_store_explicit(&process_state, 2, memory_order_release);
  } else {
    while (atomic_load_explicit(&process_state, memory_order_acquire) != 2) sched_yield();
  }
}

__attribute__((constructor)) static void heap_constructor(void) {
  heap_process_init();
  pthread_atfork(NULL, NULL, heap_fork_child);
}

/* Written under heap->lock (segment.c), read here without it. */
static uint64_t heap_next_purge(gl_heap_t *heap) { return __atomic_load_n(&heap->next_purge_ms, __ATOMIC_RELAXED); }
static size_t heap_dirty(gl_heap_t *heap) { return __atomic_load_n(&heap->dirty_bytes, __ATOMIC_RELAXED); }

/* Purges what is due, or the oldest dirty pages when the heap keeps too many. */
static void heap_purge_if_due(gl_heap_t *heap, uint64_t now) {
  if (now >= heap_next_purge(heap) || heap_dirty(heap) > (size_t)gl_options.retain_bytes)
    segment_purge_due(heap, now, false);
}

uint64_t heap_abandoned_next_ms(void) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return UINT64_MAX;
  return atomic_load_explicit(&abandoned_next_ms, memory_order_relaxed);
}

/* ---- Page queues and the direct table ---- */

/* direct[] entries [direct_lo[cls], direct_hi[cls]] serve size class cls. */
static uint8_t direct_lo[GL_CLASS_COUNT], direct_hi[GL_CLASS_COUNT];

static void direct_ranges_init(void) {
  gl_assert(sizeclass_of(GL_SMALL_MAX) == GL_CLASS_SMALL_LAST);
  gl_assert(sizeclass_of(GL_MEDIUM_MAX) == GL_CLASS_LAST && GL_CLASS_LAST + 1 == GL_CLASS_COUNT);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    /* Every class is the class of its own block size, and blocks stay 16-aligned. */
    gl_assert(sizeclass_of(sizeclass_block_size(cls)) == cls && sizeclass_block_size(cls) % 16 == 0);
    size_t lo = cls == 1 ? 0 : sizeclass_block_size(cls - 1) / 16 + 1;
    size_t hi = sizeclass_block_size(cls) / 16;
    if (hi >= GL_DIRECT_COUNT) hi = GL_DIRECT_COUNT - 1;
    direct_lo[cls] = (uint8_t)(lo < GL_DIRECT_COUNT ? lo : 1);
    direct_hi[cls] = (uint8_t)(lo < GL_DIRECT_COUNT ? hi : 0); /* empty range */
  }
}

static void direct_update(gl_heap_t *heap, unsigned cls) {
  gl_page_t *page = heap->queues[cls].first ? heap->queues[cls].first : &gl_page_empty;
  for (unsigned i = direct_lo[cls]; i <= direct_hi[cls]; i++) heap->direct[i] = page;
}

static void queue_remove(gl_page_queue_t *q, gl_page_t *page) {
  if (page->prev) page->prev->next = page->next; else q->first = page->next;
  if (page->next) page->next->prev = page->prev; else q->last = page->prev;
  page->next = page->prev = NULL;
}

static void queue_push_front(gl_page_queue_t *q, gl_page_t *page) {
  page->prev = NULL;
  page->next = q->first;
  if (q->first) q->first->prev = page; else q->last = page;
  q->first = page;
}

static void queue_push_back(gl_page_queue_t *q, gl_page_t *page) {
  page->next = NULL;
  page->prev = q->last;
  if (q->last) q->last->next = page; else q->first = page;
  q->last = page;
}

static void class_queue_remove(gl_heap_t *heap, gl_page_t *page) {
  gl_page_queue_t *q = &heap->queues[page->class_idx];
  bool was_first = q->first == page;
  queue_remove(q, page);
  if (was_first) direct_update(heap, page->class_idx);
}

/* Changes the GL_TF_* state of a page if it is `from`, keeping the list pointer. */
static void thread_free_state_change(gl_page_t *page, uintptr_t from, uintptr_t to) {
  uintptr_t tf = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  while ((tf & GL_TF_STATE) == from &&
         !atomic_compare_exchange_weak_explicit(&page->thread_free, &tf, (tf & ~GL_TF_STATE) | to,
                                                memory_order_acq_rel, memory_order_relaxed)) {
  }
}

static void kept_clear(gl_heap_t *heap, gl_page_t *page) {
  if (!page->kept_empty) return;
  page->kept_empty = 0;
  heap->kept_bytes -= gl_page_area(page);
}

/* Moves a page with no free block to the full list, where malloc no longer looks at
 * it.  Fails (false) if a remote free arrived meanwhile: the caller collects it. */
static bool heap_page_to_full(gl_heap_t *heap, gl_page_t *page) {
  uintptr_t tf = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  for (;;) {
    if ((tf & ~GL_TF_STATE) != 0) return false;
    if ((tf & GL_TF_STATE) != GL_TF_NORMAL) break; /* NOTIFIED: still on the stack */
    if (atomic_compare_exchange_weak_explicit(&page->thread_free, &tf, GL_TF_FULL,
                                              memory_order_acq_rel, memory_order_relaxed))
      break;
  }
  class_queue_remove(heap, page);
  kept_clear(heap, page);
  page->in_full = 1;
  __atomic_store_n(&page->fast_owner, NULL, __ATOMIC_RELAXED);
  queue_push_back(&heap->full, page);
  return true;
}

void heap_page_unfull(gl_heap_t *heap, gl_page_t *page) {
  if (!page->in_full) return;
  queue_remove(&heap->full, page);
  page->in_full = 0;
  __atomic_store_n(&page->fast_owner, heap, __ATOMIC_RELAXED);
  thread_free_state_change(page, GL_TF_FULL, GL_TF_NORMAL);
  gl_page_queue_t *q = &heap->queues[page->class_idx];
  queue_push_back(q, page);
  if (q->first == page) direct_update(heap, page->class_idx);
}

static void heap_process_notified(gl_heap_t *heap) {
  gl_page_t *page = atomic_exchange_explicit(&heap->notified, NULL, memory_order_acquire);
  while (page != NULL) {
    gl_page_t *next = page->notify_next;
    page->notify_next = NULL;
    thread_free_state_change(page, GL_TF_NOTIFIED, GL_TF_NORMAL);
    heap_page_unfull(heap, page);
    page = next;
  }
}

/* Gives an empty page back to its segment, unless it must stay because a remote
 * free notification still points at it. */
static bool heap_page_retire_now(gl_heap_t *heap, gl_page_t *page) {
  if (page->used != 0) return false;
  if ((atomic_load_explicit(&page->thread_free, memory_order_acquire) & GL_TF_STATE) == GL_TF_NOTIFIED)
    return false; /* pinned until popped from heap->notified */
  kept_clear(heap, page);
  if (page->in_full) {
    queue_remove(&heap->full, page);
    page->in_full = 0;
  } else {
    class_queue_remove(heap, page);
  }
  segment_page_free(heap, page);
  return true;
}

/* A page just became empty through a free.  Keep it in its queue, blocks and all,
 * while the heap keeps little such memory (retain_bytes / 4), or when it is the only
 * small page of its class: a program that frees a batch and allocates it again then
 * finds its pages ready instead of re-initialising them.  The periodic collection
 * retires kept pages that are still empty. */
void heap_page_retire(gl_heap_t *heap, gl_page_t *page) {
  if (page->used != 0 || page->kept_empty) return;
  if (!page->in_full) {
    gl_page_queue_t *q = &heap->queues[page->class_idx];
    bool only_small = q->first == page && page->next == NULL && page->class_idx <= GL_CLASS_SMALL_LAST;
    if (only_small || heap->kept_bytes + gl_page_area(page) <= (size_t)gl_options.retain_bytes / 4) {
      page->kept_empty = 1;
      heap->kept_bytes += gl_page_area(page);
      return;
    }
  }
  if (heap_page_retire_now(heap, page)) {
    heap_purge_if_due(heap, os_clock_ms());
    purge_notify(heap_dirty(heap) + segment_cache_dirty_bytes());
  }
}

/* free()'s fast path saw the last block of a page come back.  Takes the block, not
 * the page, so the fast path keeps no register alive for this call. */
void heap_block_freed_last(void *p) {
  gl_page_t *page = gl_page_of(gl_segment_of(p), p);
  heap_page_retire(page->heap, page);
}

/* Collects remote frees of every page and retires the empty ones.  An empty page
 * kept as the only one of its class gets one interval of grace. */
static void heap_collect_pages(gl_heap_t *heap, bool force) {
  heap_process_notified(heap);
  for (gl_page_t *page = heap->full.first, *next; page; page = next) {
    next = page->next;
    page_collect(page);
    if (page->used == 0) heap_page_retire_now(heap, page);
    else if (page->free) heap_page_unfull(heap, page);
  }
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    for (gl_page_t *page = heap->queues[cls].first, *next; page; page = next) {
      next = page->next;
      page_collect(page);
      if (page->used != 0) kept_clear(heap, page);
      else if (force || page->kept_empty) heap_page_retire_now(heap, page);
      else heap_page_retire(heap, page);
    }
  }
}

void heap_collect(gl_heap_t *heap, bool force) {
  heap_collect_pages(heap, force);
  uint64_t now = os_clock_ms();
  segment_purge_due(heap, now, force);
  heap->next_collect_ms = now + 10 * (uint64_t)gl_options.purge_delay_ms + 10;
}

static uint64_t abandoned_interval_ms(void) { return 10 * (uint64_t)gl_options.purge_delay_ms + 10; }

void heap_collect_abandoned(bool force) {
  if (force) pthread_mutex_lock(&registry_lock);
  else if (pthread_mutex_trylock(&registry_lock) != 0) return;
  for (gl_heap_t *h = heaps_abandoned; h; h = h->abandoned_next) heap_collect(h, force);
  atomic_store_explicit(&abandoned_next_ms, os_clock_ms() + abandoned_interval_ms(), memory_order_relaxed);
  pthread_mutex_unlock(&registry_lock);
}

/* Slow-path housekeeping: notifications, delayed purges, periodic collection.
 * The clock is read on every fourth call only; retiring a page reads it too. */
static void heap_maintain(gl_heap_t *heap) {
  if (atomic_load_explicit(&heap->notified, memory_order_relaxed) != NULL) heap_process_notified(heap);
  if ((++heap->slow_calls & 3) != 0 && heap_dirty(heap) <= (size_t)gl_options.retain_bytes) return;
  uint64_t now = os_clock_ms();
  heap_purge_if_due(heap, now);
  if (now >= heap->next_collect_ms) heap_collect(heap, false);
  if (now >= atomic_load_explicit(&gl_cache_next_event_ms, memory_order_relaxed))
    segment_cache_collect(now, false);
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) != 0 &&
      now >= atomic_load_explicit(&abandoned_next_ms, memory_order_relaxed))
    heap_collect_abandoned(false);
}

/* ---- The slow path of malloc ---- */

static gl_page_t *heap_find_page(gl_heap_t *heap, unsigned cls) {
  gl_page_queue_t *q = &heap->queues[cls];
  gl_page_t *page = q->first;
  while (page != NULL) {
    gl_page_t *next = page->next;
    page_collect(page);
    if (page->free != NULL || page_extend(page)) break;
    if (!heap_page_to_full(heap, page)) {
      page_collect(page);
      gl_assert(page->free != NULL);
      break;
    }
    page = next;
  }
  if (page != NULL) {
    kept_clear(heap, page);
    if (q->first != page) {
      queue_remove(q, page);
      queue_push_front(q, page);
      direct_update(heap, cls);
    }
    return page;
  }
  bool is_zero = false;
  page = segment_page_alloc(heap, sizeclass_kind(cls), &is_zero);
  if (page == NULL) return NULL;
  page_init(heap, page, (uint8_t)cls, is_zero);
  page_extend(page);
  queue_push_front(q, page);
  direct_update(heap, cls);
  return page;
}

/* Hands out the first block of page->free, which is not empty. */
GL_INLINE void *page_take_block(gl_page_t *page, size_t size, bool zero) {
  gl_block_t *block = page->free;
  page->free = block->next;
  page->used++;
  if (zero) {
    if (page->free_is_zero) block->next = NULL;
    else memset(block, 0, size);
  }
  block->freed_mark = 0;
  return block;
}

/* Allocates from `heap`, which this thread owns (or holds exit_lock for). */
static void *heap_alloc_from(gl_heap_t *heap, size_t size, bool zero) {
  if (gl_unlikely(size > GL_MEDIUM_MAX)) return large_alloc(size, 0, zero);
  unsigned cls = sizeclass_of(size);
  gl_page_t *page = heap->queues[cls].first;
  if (page == NULL || page->free == NULL) {
    heap_maintain(heap);
    page = heap_find_page(heap, cls);
    if (gl_unlikely(page == NULL)) {
      errno = ENOMEM;
      return NULL;
    }
  }
  return page_take_block(page, size, zero);
}

static void *heap_malloc_after_exit(size_t size, bool zero);

static GL_NOINLINE void *heap_malloc_slow(size_t size, gl_heap_t *heap, bool zero) {
  if (gl_unlikely(heap == &gl_heap_empty)) {
    if (gl_unlikely(gl_tls_heap_done)) return heap_malloc_after_exit(size, zero);
    heap = heap_get_or_init();
    if (heap == NULL) {
      errno = ENOMEM;
      return NULL;
    }
  }
  return heap_alloc_from(heap, size, zero);
}

/* malloc's first stop off the fast path.  Kept small (no register spills): it pops
 * the class queue's head for sizes above the direct table, and refills a page whose
 * free list ran dry from the owner's own frees (local_free).  Housekeeping (remote
 * frees, purges, full pages) waits for every 16th refill, or anything else. */
void *heap_malloc_generic(size_t size, gl_heap_t *heap, bool zero) {
  gl_page_t *page;
  if (gl_likely(size <= GL_DIRECT_MAX)) page = heap->direct[(size + 15) >> 4];
  else if (size <= GL_MEDIUM_MAX) page = heap->queues[sizeclass_of(size)].first;
  else return heap_malloc_slow(size, heap, zero);
  if (gl_unlikely(page == NULL)) return heap_malloc_slow(size, heap, zero);
  if (page->free == NULL) { /* (above the direct table, the head may have blocks) */
    if (page->local_free == NULL || (++heap->slow_calls & 15) == 0) return heap_malloc_slow(size, heap, zero);
    page->free = page->local_free;
    page->local_free = NULL;
    page->free_is_zero = 0;
  }
  return page_take_block(page, size, zero);
}

/* ---- Thread start and exit ---- */

static gl_heap_t *heap_new_locked(void) {
  size_t size = (sizeof(gl_heap_t) + 63) & ~(size_t)63;
  if (heap_pool_next == NULL || heap_pool_next + size > heap_pool_end) {
    size_t chunk = 64 * 1024;
    uint8_t *mem = os_map(chunk);
    if (mem == NULL) return NULL;
    heap_pool_next = mem;
    heap_pool_end = mem + chunk;
  }
  gl_heap_t *heap = (gl_heap_t *)heap_pool_next;
  heap_pool_next += size;
  for (size_t i = 0; i < GL_DIRECT_COUNT; i++) heap->direct[i] = &gl_page_empty;
  heap->next_purge_ms = UINT64_MAX;
  heap->rng = os_random();
  pthread_mutex_init(&heap->lock, NULL);
  heap->all_next = atomic_load_explicit(&heaps_all, memory_order_relaxed);
  atomic_store_explicit(&heaps_all, heap, memory_order_release);
  return heap;
}

gl_heap_t *heap_get_or_init(void) {
  heap_process_init();
  gl_heap_t *heap = gl_tls_heap;
  if (heap != &gl_heap_empty) return heap;
  pthread_mutex_lock(&registry_lock);
  heap = heaps_abandoned;
  if (heap != NULL) {
    heaps_abandoned = heap->abandoned_next;
    heap->abandoned_next = NULL;
    atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
    gl_counter_sub(&gl_counters.heaps_abandoned, 1);
  } else {
    heap = heap_new_locked();
  }
  if (heap != NULL) {
    heap->state = GL_HEAP_ACTIVE;
    gl_counter_add(&gl_counters.heaps, 1);
  }
  pthread_mutex_unlock(&registry_lock);
  if (heap == NULL) return NULL;
  gl_tls_heap = heap;
  /* May allocate (a second-level key table): the heap is in place already. */
  if (thread_key_ok) pthread_setspecific(thread_key, heap);
  return heap;
}

static void heap_thread_done(void *value) {
  gl_heap_t *heap = value;
  if (heap == NULL || heap == &gl_heap_empty || heap != gl_tls_heap) return;
  heap_collect(heap, false);
  gl_tls_heap = &gl_heap_empty;
  gl_tls_heap_done = 1;
  pthread_mutex_lock(&registry_lock);
  heap->state = GL_HEAP_ABANDONED;
  heap->abandoned_next = heaps_abandoned;
  heaps_abandoned = heap;
  atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
  gl_counter_sub(&gl_counters.heaps, 1);
  gl_counter_add(&gl_counters.heaps_abandoned, 1);
  pthread_mutex_unlock(&registry_lock);
  purge_notify(heap_dirty(heap) + segment_cache_dirty_bytes());
}

/* After its heap is abandoned a thread may still allocate: a pthread key destructor
 * that runs after Galleon's, or in glibc's last destructor round, when a new heap
 * would never be abandoned again.  Such calls share one heap under exit_lock.  No
 * thread has it as gl_tls_heap, so every free into it is a remote free. */
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static gl_heap_t *exit_heap;

static void *heap_malloc_after_exit(size_t size, bool zero) {
  if (size > GL_MEDIUM_MAX) return large_alloc(size, 0, zero);
  pthread_mutex_lock(&exit_lock);
  if (exit_heap == NULL) {
    pthread_mutex_lock(&registry_lock);
    exit_heap = heap_new_locked();
    if (exit_heap != NULL) atomic_store_explicit(&exit_heap->state, GL_HEAP_ACTIVE, memory_order_relaxed);
    pthread_mutex_unlock(&registry_lock);
  }
  void *p = NULL;
  if (exit_heap != NULL) p = heap_alloc_from(exit_heap, size, zero);
  else errno = ENOMEM;
  pthread_mutex_unlock(&exit_lock);
  return p;
}

/* ---- fork ----
 * fork() holds no Galleon lock: a prepare handler that took the heap locks would
 * hold them while glibc's fork waits for the stdio list lock, and a thread in
 * fflush(NULL) holds that while it waits for a FILE whose owner is inside malloc
 * (and a fork from a signal handler that interrupted fork would lock them twice).
 * Galleon's locks are leaves -- never held while waiting for anything outside
 * Galleon -- so instead the child repairs: a lock it finds held was held by a thread
 * that does not exist in the child (or by this thread, interrupted by a signal
 * handler that forked), and what that lock guards may be half-changed.  Such a heap
 * is marked lost and never touched again (its blocks stay valid: freeing one is a
 * remote free that nobody collects); if it was this thread's heap, the thread takes
 * a fresh one at its next malloc.  Heaps of threads that do not exist in the child
 * keep their pages; their blocks may be freed by the child. */
bool heap_is_lost(gl_heap_t *heap) {
  return atomic_load_explicit(&heap->state, memory_order_relaxed) == GL_HEAP_LOST;
}

static void heap_fork_child(void) {
  if (!gl_mutex_was_free_at_fork(&registry_lock)) {
    /* Mid-adoption, abandonment or heap creation: forget the abandoned list and the
     * rest of the pool chunk.  The list of all heaps is append-only and published
     * with one release store, so it is whole. */
    heaps_abandoned = NULL;
    atomic_store_explicit(&abandoned_count, 0, memory_order_relaxed);
    heap_pool_next = heap_pool_end = NULL;
  }
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    if (gl_mutex_was_free_at_fork(&h->lock)) continue;
    atomic_store_explicit(&h->state, GL_HEAP_LOST, memory_order_relaxed);
    __atomic_store_n(&h->next_purge_ms, UINT64_MAX, __ATOMIC_RELAXED);
    if (h == gl_tls_heap) gl_tls_heap = &gl_heap_empty;
  }
  for (gl_heap_t **link = &heaps_abandoned; *link;) {
    if (heap_is_lost(*link)) {
      *link = (*link)->abandoned_next;
      atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
    } else {
      link = &(*link)->abandoned_next;
    }
  }
  if (!gl_mutex_was_free_at_fork(&exit_lock) && exit_heap != NULL) {
    atomic_store_explicit(&exit_heap->state, GL_HEAP_LOST, memory_order_relaxed);
    exit_heap = NULL;
  }
  segment_fork_child();
  purge_fork_child();
}
