/* heap.c: thread heaps, malloc's slow path, page retirement, abandonment, fork
 * (heap.h).
 *
 * Lock order: registry_lock -> heap->segs.lock -> (purge and segment cache locks).
 * registry_lock guards the abandoned list and the pool heaps are carved from; the
 * list of all heaps is append-only and read without it.  exit_lock guards the
 * shared heap of threads past their teardown.  No fast path takes a lock.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "annotate.h"
#include "check.h"
#include "heap.h"
#include "options.h"
#include "profile.h"
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
static _Atomic(uint64_t) abandoned_next_sweep_ms;
static uint8_t *heap_pool_next, *heap_pool_end;

typedef enum { PROCESS_NOT_STARTED = 0, PROCESS_STARTING = 1, PROCESS_READY = 2 } process_state_t;
static _Atomic(int) process_state;
static pthread_key_t thread_key;
static bool thread_key_ok;

static void heap_thread_done(void *value);
static void direct_ranges_init(void);
static void heap_fork_child(void);
static bool heap_purger_sweep(uint64_t now);
static uint64_t next_key(gl_heap_t *heap);
static void heap_quarantine_flush(gl_heap_t *heap);
static gl_heap_t *heaps_destroyed; /* under registry_lock: reused by heap_first_class_new */

gl_heap_t *heap_registry_first(void) { return atomic_load_explicit(&heaps_all, memory_order_acquire); }

static long option(long *value) { return __atomic_load_n(value, __ATOMIC_RELAXED); }

/* ---- Process start ---- */

void heap_process_init(void) {
  if (gl_likely(atomic_load_explicit(&process_state, memory_order_acquire) == PROCESS_READY)) return;
  int expected = PROCESS_NOT_STARTED;
  if (atomic_compare_exchange_strong(&process_state, &expected, PROCESS_STARTING)) {
    /* Nothing here allocates: sysconf, secure_getenv and pthread_key_create do not. */
    options_init();
    os_init();
    page_secrets_init(false); /* before the first page key */
    direct_ranges_init();
    purge_set_collector(heap_purger_sweep);
    thread_key_ok = pthread_key_create(&thread_key, heap_thread_done) == 0;
    atomic_store_explicit(&process_state, PROCESS_READY, memory_order_release);
  } else {
    while (atomic_load_explicit(&process_state, memory_order_acquire) != PROCESS_READY) sched_yield();
  }
}

__attribute__((constructor)) static void heap_constructor(void) {
  heap_process_init();
  pthread_atfork(NULL, NULL, heap_fork_child);
  profile_start_from_env(); /* after the options, outside malloc */
  if (profile_sampling) heap_profile_switched(true);
}

/* ---- Page queues and the direct table ---- */

/* direct[] entries [direct_lo[cls], direct_hi[cls]] serve size class cls. */
static uint16_t direct_lo[GL_CLASS_COUNT], direct_hi[GL_CLASS_COUNT];

static void direct_ranges_init(void) {
  gl_assert(sizeclass_of(GL_SMALL_MAX) == GL_CLASS_SMALL_LAST);
  gl_assert(sizeclass_of(GL_MEDIUM_MAX) == GL_CLASS_LAST && GL_CLASS_LAST + 1 == GL_CLASS_COUNT);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    /* Every class is the class of its own block size, and blocks stay 16-aligned. */
    gl_assert(sizeclass_of(sizeclass_block_size(cls)) == cls && sizeclass_block_size(cls) % 16 == 0);
    size_t lo = cls == 1 ? 0 : sizeclass_block_size(cls - 1) / 16 + 1;
    size_t hi = sizeclass_block_size(cls) / 16;
    if (hi >= GL_DIRECT_COUNT) hi = GL_DIRECT_COUNT - 1;
    direct_lo[cls] = (uint16_t)(lo < GL_DIRECT_COUNT ? lo : 1);
    direct_hi[cls] = (uint16_t)(lo < GL_DIRECT_COUNT ? hi : 0); /* empty range */
  }
}

static gl_page_t *list_page(gl_link_t *link) { return link ? gl_container_of(link, gl_page_t, link) : NULL; }
static gl_page_t *queue_first(gl_heap_t *heap, unsigned cls) { return list_page(heap->queues[cls].first); }

static void direct_update(gl_heap_t *heap, unsigned cls) {
  gl_page_t *page = queue_first(heap, cls);
  if (page == NULL) page = &gl_page_empty;
  for (unsigned i = direct_lo[cls]; i <= direct_hi[cls]; i++) heap->direct[i] = page;
}

static void class_queue_remove(gl_heap_t *heap, gl_page_t *page) {
  gl_list_t *q = &heap->queues[page->class_idx];
  bool was_first = q->first == &page->link;
  gl_list_remove(q, &page->link);
  if (was_first) direct_update(heap, page->class_idx);
}

static void class_queue_push(gl_heap_t *heap, gl_page_t *page, bool front) {
  gl_list_t *q = &heap->queues[page->class_idx];
  if (front) gl_list_push_front(q, &page->link);
  else gl_list_push_back(q, &page->link);
  if (q->first == &page->link) direct_update(heap, page->class_idx);
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
  heap->kept_bytes -= segment_page_area(page);
}

/* Moves a page with no free block to the full list, where malloc no longer looks at
 * it.  Fails (false) if a remote free arrived meanwhile: the caller gathers it. */
static bool heap_page_to_full(gl_heap_t *heap, gl_page_t *page) {
  uintptr_t tf = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  for (;;) {
    if (GL_TF_HEAD(tf) != 0) return false;
    if ((tf & GL_TF_STATE) != GL_TF_NORMAL) break; /* NOTIFIED: still on the stack */
    if (atomic_compare_exchange_weak_explicit(&page->thread_free, &tf, GL_TF_FULL, memory_order_acq_rel,
                                              memory_order_relaxed))
      break;
  }
  class_queue_remove(heap, page);
  kept_clear(heap, page);
  page->on_full_list = 1;
  __atomic_store_n(&page->fast_free_owner, NULL, __ATOMIC_RELAXED);
  gl_list_push_back(&heap->full, &page->link);
  return true;
}

/* A page on the full list goes back to its class queue once this many of its
 * blocks are free again (owner frees; heap_block_release), not at the first one:
 * in a big heap of scattered frees, a page taken back for a single block is dry
 * again at the next malloc, and each such round trip through the full list cost
 * a slow path (scale heap 1024: 40% of mallocs took it, 330 ns a step; 230 ns
 * with this).  At most 1/64 of a page's blocks wait this way (bounded overhead:
 * scale's overhead_pct 9.1 -> 10.0), and the page that got such a free last is
 * remembered per class (full_waiting): heap_find_page takes it back before it
 * starts a new page, so a small heap does not grow for want of them.  Remote
 * frees, malloc_trim (a sweep with `all`) and galleon_heap_destroy still bring a
 * page back at once. */
#define GL_UNFULL_FREE_BLOCKS(page) (((uint32_t)(page)->reserved >> 6) + 1u)

void heap_page_unfull(gl_heap_t *heap, gl_page_t *page) {
  if (!page->on_full_list) return;
  if (heap->full_waiting[page->class_idx] == page) heap->full_waiting[page->class_idx] = NULL;
  gl_list_remove(&heap->full, &page->link);
  page->on_full_list = 0;
  __atomic_store_n(&page->fast_free_owner, heap, __ATOMIC_RELAXED);
  thread_free_state_change(page, GL_TF_FULL, GL_TF_NORMAL);
  class_queue_push(heap, page, false);
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

static void sample_refund(gl_heap_t *heap, gl_page_t *page);

/* Takes an empty page off the heap's lists (its queue or the full list), its kept
 * and profiler state undone, unless a remote free notification still points at it
 * (false).  The caller gives it back to its segment or sets it up again. */
static bool heap_page_unlist(gl_heap_t *heap, gl_page_t *page) {
  if (page->used != 0) return false;
  if ((atomic_load_explicit(&page->thread_free, memory_order_acquire) & GL_TF_STATE) == GL_TF_NOTIFIED)
    return false; /* pinned until popped from heap->notified */
  kept_clear(heap, page);
  if (gl_unlikely(__atomic_load_n(&profile_sampling, __ATOMIC_RELAXED))) sample_refund(heap, page);
  if (page->on_full_list) {
    gl_list_remove(&heap->full, &page->link);
    page->on_full_list = 0;
    if (heap->full_waiting[page->class_idx] == page) heap->full_waiting[page->class_idx] = NULL;
  } else {
    class_queue_remove(heap, page);
  }
  return true;
}

/* Gives an empty page back to its segment (purge.h decides when its memory goes),
 * unless a remote free notification still points at it. */
static bool heap_page_retire(gl_heap_t *heap, gl_page_t *page) {
  if (!heap_page_unlist(heap, page)) return false;
  purge_page_free(&heap->purge, page);
  return true;
}

/* Keep the emptied page in its queue, blocks and all, while the heap keeps little
 * such memory (retain_bytes), or when it is the only small page of its class: a
 * program that frees a batch and allocates it again then finds its pages ready
 * instead of re-initialising them.  The periodic sweep retires kept pages that are
 * still empty. */
void heap_page_emptied(gl_heap_t *heap, gl_page_t *page) {
  if (page->used != 0 || page->kept_empty) return;
  if (!page->on_full_list) {
    gl_list_t *q = &heap->queues[page->class_idx];
    bool only_small = q->first == &page->link && page->link.next == NULL && page->class_idx <= GL_CLASS_SMALL_LAST;
    size_t area = segment_page_area(page);
    if (only_small || heap->kept_bytes + area <= (size_t)option(&gl_options.retain_bytes)) {
      page->kept_empty = 1;
      heap->kept_bytes += area;
      return;
    }
  }
  heap_page_retire(heap, page);
}

void heap_block_freed_last(void *p) {
  gl_page_t *page = segment_page_of(segment_of(p), p);
  heap_page_emptied(page->owner, page);
}

void heap_block_release(gl_heap_t *heap, gl_page_t *page, gl_block_t *block) {
  if (page->owner != heap) {
    page_free_remote(page, block);
    return;
  }
  page_block_push(page, block, page->local_free);
  page->local_free = block;
  page->used--;
  if (page->on_full_list) {
    if (page->capacity - page->used >= GL_UNFULL_FREE_BLOCKS(page)) heap_page_unfull(heap, page);
    else heap->full_waiting[page->class_idx] = page;
  }
  if (page->used == 0) heap_page_emptied(heap, page);
}

/* Gathers the frees of every page, retires the empty ones (kept pages after one
 * interval of grace; all of them when `all`), then applies the purge rules (or
 * purges everything).  Returns how many pages it retired.
 *
 * Pages on the full list are looked at only when `all`: nothing there waits for a
 * sweep.  The first remote free into a full page puts it on the heap's notified
 * stack (processed first, below), and the owner's own frees into it are handled
 * as they happen (heap_block_release: back to the queue, or retired when empty).
 * A big heap is mostly full pages, and walking them every sweep took a cache and
 * TLB miss per page descriptor: 10% of `scale heap 16384`. */
static size_t heap_sweep(gl_heap_t *heap, bool all) {
  size_t retired = 0;
  /* While the profiler samples, lists reach `free` only by a charged hand-over. */
  bool to_local = __atomic_load_n(&profile_sampling, __ATOMIC_RELAXED);
  heap_process_notified(heap);
  for (gl_page_t *page = all ? list_page(heap->full.first) : NULL, *next; page; page = next) {
    next = list_page(page->link.next);
    page_gather_frees(page, to_local);
    if (page->used == 0) retired += heap_page_retire(heap, page);
    else if (page->free || page->local_free) heap_page_unfull(heap, page);
  }
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    for (gl_page_t *page = queue_first(heap, cls), *next; page; page = next) {
      next = list_page(page->link.next);
      page_gather_frees(page, to_local);
      if (page->used != 0) kept_clear(heap, page);
      else if (all || page->kept_empty) retired += heap_page_retire(heap, page);
      else heap_page_emptied(heap, page);
    }
  }
  uint64_t now = os_clock_ms();
  if (all) purge_heap_all(&heap->purge);
  else purge_heap_tick(&heap->purge, now);
  heap->next_sweep_ms = now + 10 * (uint64_t)option(&gl_options.purge_delay_ms) + 10;
  gl_validate(heap_is_valid(heap));
  return retired;
}

static uint64_t abandoned_interval_ms(void) { return 10 * (uint64_t)option(&gl_options.purge_delay_ms) + 10; }

/* Sweeps the heaps of exited threads: remote frees into them empty their pages. */
static size_t heap_sweep_abandoned(bool all) {
  if (all) pthread_mutex_lock(&registry_lock);
  else if (pthread_mutex_trylock(&registry_lock) != 0) return 0;
  size_t retired = 0;
  for (gl_heap_t *h = heaps_abandoned; h; h = h->abandoned_next) retired += heap_sweep(h, all);
  atomic_store_explicit(&abandoned_next_sweep_ms, os_clock_ms() + abandoned_interval_ms(), memory_order_relaxed);
  pthread_mutex_unlock(&registry_lock);
  return retired;
}

/* The purger's hook: more to do while sweeping still retires pages. */
/* Destroyed first-class heaps nobody took back within purge_idle_ms give their
 * pages back; returns whether some still hold pages. */
static bool heap_sweep_destroyed(uint64_t now) {
  if (__atomic_load_n(&heaps_destroyed, __ATOMIC_RELAXED) == NULL || pthread_mutex_trylock(&registry_lock) != 0)
    return __atomic_load_n(&heaps_destroyed, __ATOMIC_RELAXED) != NULL;
  bool holding = false;
  for (gl_heap_t *h = heaps_destroyed; h; h = h->abandoned_next) {
    if (h->kept_bytes == 0) continue;
    if (now >= h->next_sweep_ms) heap_sweep(h, true);
    else holding = true;
  }
  pthread_mutex_unlock(&registry_lock);
  return holding;
}

static bool heap_purger_sweep(uint64_t now) {
  bool more = heap_sweep_destroyed(now);
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0 ||
      now < atomic_load_explicit(&abandoned_next_sweep_ms, memory_order_relaxed))
    return more;
  annotate_quiet_begin(); /* it reads the lists in free blocks */
  bool progress = heap_sweep_abandoned(false) != 0;
  annotate_quiet_end();
  return progress || more;
}

/* Slow-path housekeeping: notifications, the purge rules, periodic sweeps.  The
 * clock is read on every fourth call only; retiring a page reads it too. */
static void heap_maintain(gl_heap_t *heap) {
  if (atomic_load_explicit(&heap->notified, memory_order_relaxed) != NULL) heap_process_notified(heap);
  if ((++heap->slow_calls & 3) != 0) return;
  uint64_t now = os_clock_ms();
  purge_heap_tick(&heap->purge, now);
  if (now >= heap->next_sweep_ms) heap_sweep(heap, false);
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) != 0 &&
      now >= atomic_load_explicit(&abandoned_next_sweep_ms, memory_order_relaxed))
    heap_sweep_abandoned(false);
}

/* Retires every empty page (kept ones too) and purges the heap's dirty memory down
 * to `keep` bytes; returns the bytes it kept. */
static size_t heap_trim(gl_heap_t *heap, size_t keep) {
  heap_sweep(heap, false);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    for (gl_page_t *page = queue_first(heap, cls), *next; page; page = next) {
      next = list_page(page->link.next);
      if (page->used == 0) heap_page_retire(heap, page);
    }
  }
  return purge_heap_keep(&heap->purge, keep);
}

static size_t keep_less(size_t keep, size_t kept) { return kept < keep ? keep - kept : 0; }

void heap_trim_all(size_t keep) {
  heap_process_init();
  gl_heap_t *heap = gl_tls_heap;
  if (heap != &gl_heap_empty) heap_quarantine_flush(heap);
  /* What a heap keeps counts against `keep` (it may keep more: pages that huge
   * pages hold resident). */
  if (heap != &gl_heap_empty) keep = keep_less(keep, heap_trim(heap, keep));
  pthread_mutex_lock(&registry_lock);
  for (gl_heap_t *h = heaps_abandoned; h; h = h->abandoned_next) keep = keep_less(keep, heap_trim(h, keep));
  for (gl_heap_t *h = heaps_destroyed; h; h = h->abandoned_next) keep = keep_less(keep, heap_trim(h, keep));
  atomic_store_explicit(&abandoned_next_sweep_ms, os_clock_ms() + abandoned_interval_ms(), memory_order_relaxed);
  pthread_mutex_unlock(&registry_lock);
  purge_cache_keep(keep);
}

/* ---- Quarantine (secure build) ----
 * A block freed in the secure build does not go back to its page's lists at
 * once: secure.c fills it with the freed pattern, marks it freed (so a second free
 * is a double free, and realloc or malloc_usable_size of it are refused) and
 * queues it here, on the freeing thread's heap.  It goes back, oldest first, when
 * the queue holds GL_QUARANTINE_SLOTS blocks or GL_QUARANTINE_BYTES of them, when
 * the thread exits, and on malloc_trim/galleon_collect: a use after free does not
 * reach the next block of the size handed out.  A quarantined block still counts
 * in its page's `used`, so the page stays in use and in place meanwhile (no
 * retirement, no relink), whichever thread owns it; its release is the ordinary
 * free, local or remote, with the page the ring kept beside the block (nothing
 * looked up twice).  Blocks of first-class heaps skip the quarantine
 * (galleon_heap_destroy takes every block of its pages back at once), and so do
 * blocks handed out at an interior address (secure.c). */
#if GL_SECURE
/* Out of the ring already, its bytes no longer counted. */
void heap_quarantine_release(gl_heap_t *heap, gl_page_t *page, gl_block_t *block) {
  /* Its first two words held the pattern and the freed mark since it came in;
   * the rest of the pattern is checked when the block is handed out. */
  uintptr_t key = page->key, mark = page_freed_mark(key, block);
  if (gl_unlikely(block->link != GL_SECURE_FILL_WORD))
    gl_fatal("write after free in the block at", block, ": the freed pattern is overwritten at ", block);
  if (gl_unlikely(block->freed_mark != mark))
    gl_fatal("write after free in the block at", block, ": the freed pattern is overwritten at ", &block->freed_mark);
  if (gl_likely(__atomic_load_n(&page->fast_free_owner, __ATOMIC_RELAXED) == heap)) {
    /* free's own fast path (alloc.h), the mark already set: a page of this
     * heap, not on the full list. */
    if (page_push_freed(page, block, key)) heap_page_emptied(heap, page);
    return;
  }
  block->freed_mark = 0; /* a remote free marks it again */
  heap_block_release(heap, page, block);
}

/* The oldest block out of the ring, and back to its page. */
static void quarantine_pop(gl_heap_t *heap) {
  struct gl_quarantined_s oldest = heap->quarantine[heap->quarantine_head];
  heap->quarantine_head = (heap->quarantine_head + 1) % GL_QUARANTINE_SLOTS;
  heap->quarantine_count--;
  heap->quarantine_bytes -= oldest.page->block_size;
  heap_quarantine_release(heap, oldest.page, oldest.block);
}

void heap_quarantine_shrink(gl_heap_t *heap) {
  /* Never the newest. */
  while (heap->quarantine_count > 1 && heap->quarantine_bytes > GL_QUARANTINE_BYTES) quarantine_pop(heap);
}
#endif

static void heap_quarantine_flush(gl_heap_t *heap) {
#if GL_SECURE
  while (heap->quarantine_count != 0) quarantine_pop(heap);
  gl_assert(heap->quarantine_bytes == 0);
#else
  (void)heap;
#endif
}

/* ---- The slow path of malloc ---- */

static uint64_t next_key(gl_heap_t *heap) {
  /* xorshift64*, seeded from getrandom: one output gives away the state, so the
   * page key is this draw mixed with a process secret (page_init, page.c). */
  uint64_t x = heap->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  heap->rng = x;
  return (x * 0x2545F4914F6CDD1Dull) | 1;
}

/* A new page for class cls is about to be taken.  When the heap has no resident
 * free page for it (none queued dirty), an empty page kept for another class of the
 * same kind (heap_page_emptied) is taken over instead: set up again for cls where it
 * is, its memory resident, no trip through the segment.  A program that works
 * through its sizes one after another -- a batch of 16-byte blocks, freed, then of
 * 32, ... (glibc's bench-malloc-simple) -- otherwise kept every finished size's
 * pages and faulted fresh memory in for each next one: its faults were the sum of
 * the sizes' footprints, not the largest.  Looks at most KEPT_SCAN pages of each
 * other queue: this path runs once per new page. */
#define KEPT_SCAN 4
static gl_page_t *heap_take_kept(gl_heap_t *heap, unsigned cls) {
  if (heap->kept_bytes == 0 || __atomic_load_n(&heap->purge.dirty_bytes, __ATOMIC_RELAXED) != 0 ||
      __atomic_load_n(&heap->first_class, __ATOMIC_RELAXED))
    return NULL;
  bool small = sizeclass_kind(cls) == GL_KIND_SMALL;
  unsigned first = small ? 1 : GL_CLASS_SMALL_LAST + 1, last = small ? GL_CLASS_SMALL_LAST : GL_CLASS_LAST;
  for (unsigned c = first; c <= last; c++) {
    if (c == cls) continue;
    unsigned seen = 0;
    for (gl_page_t *page = queue_first(heap, c); page != NULL && seen < KEPT_SCAN;
         page = list_page(page->link.next), seen++) {
      if (page->kept_empty && heap_page_unlist(heap, page)) return page;
    }
  }
  return NULL;
}

/* The page to allocate a block of class cls from: the first of its queue with a
 * free block (gathering frees, moving exhausted pages to the full list on the way),
 * else a new page.  A dry page that can still carve blocks (page_extend) carves
 * them only when none of the FIND_BEHIND_SCAN pages behind it holds, in its
 * owner's frees, at least as much memory as a carve touches (GL_CARVE_BYTES):
 * carving touches memory the process never used, while freed blocks stay resident
 * until their page empties.  A thread whose medium blocks come and go at random
 * otherwise carved the page at the front while the pages behind held as many free
 * blocks (bench aligned: 8.2 k faults, 7.1 k with this; scale heap 1: 41-47%
 * memory overhead, 25-31%).  Fewer free bytes than a carve stay where they are:
 * a few scattered small blocks instead of a fresh run of them cost a big heap its
 * locality (scale heap 2048: 12% slower a step).  The pages behind are only looked
 * at: gathering their remote frees one page at a time, or sending dry ones to the
 * full list (whose remote frees then notify the owner), cost a producer-consumer
 * program 12% of its speed (bench xmalloc).  The carvable page then goes to the
 * back of the queue, where the walk reaches it once the pages before it are dry,
 * rather than being looked past at every refill.  What it costs is refills: a
 * page taken from behind holds fewer blocks than a carve adds (callgrind, a
 * random one of 4,096 blocks freed and 16-1,024 B allocated: 84 -> 86
 * instructions a step; 88 without the move to the back). */
#define FIND_BEHIND_SCAN 8
static gl_page_t *heap_find_page(gl_heap_t *heap, unsigned cls) {
  gl_page_t *page = queue_first(heap, cls), *carvable = NULL;
  while (page != NULL) {
    gl_page_t *next = list_page(page->link.next);
    page_gather_frees(page, false);
    if (page->free != NULL) break;
    if (page->capacity < page->reserved) {
      carvable = page;
      break;
    }
    if (!heap_page_to_full(heap, page)) {
      page_gather_frees(page, false);
      gl_assert(page->free != NULL);
      break;
    }
    page = next;
  }
  if (carvable != NULL) {
    bool sampling = __atomic_load_n(&profile_sampling, __ATOMIC_RELAXED);
    page = list_page(carvable->link.next);
    for (unsigned seen = 0; page != NULL && seen < FIND_BEHIND_SCAN; seen++) {
      if ((size_t)(page->capacity - page->used) * page->block_size >= GL_CARVE_BYTES) {
        if (page->local_free != NULL && page->free == NULL) page_free_from_local(page, sampling);
        if (page->free != NULL) break;
      }
      page = list_page(page->link.next);
    }
    if (page == NULL || page->free == NULL) {
      page = page_extend(carvable) ? carvable : NULL;
    } else {
      /* Behind the others, so that the next refills do not look past it again
       * before their pages run dry. */
      class_queue_remove(heap, carvable);
      class_queue_push(heap, carvable, false);
    }
  }
  if (page != NULL) {
    kept_clear(heap, page);
    if (queue_first(heap, cls) != page) {
      class_queue_remove(heap, page);
      class_queue_push(heap, page, true);
    }
    return page;
  }
  /* Every page of the queue is dry: a full page holding a few frees before a new
   * page (GL_UNFULL_FREE_BLOCKS). */
  page = heap->full_waiting[cls];
  if (page != NULL) {
    heap_page_unfull(heap, page); /* the queue's only page, so its first */
    page_gather_frees(page, false);
    if (page->free != NULL) return page;
  }
  bool is_zero = false;
  page = heap_take_kept(heap, cls);
  if (page == NULL) page = purge_page_alloc(&heap->purge, heap, cls, &is_zero);
  if (page == NULL) return NULL;
  page_init(page, heap, (uint8_t)cls, is_zero, next_key(heap));
  page_extend(page);
  class_queue_push(heap, page, true);
  gl_validate(page_is_valid(page));
  return page;
}

/* Hands out the first block of page->free, which is not empty. */
GL_INLINE void *page_take_block(gl_page_t *page, size_t size, bool zero) {
  gl_block_t *block = page->free;
  page->free = page_block_next(page, block); /* decoded and checked (page.h) */
  page->used++;
  if (zero) page_block_zero(page, block, size);
  block->freed_mark = 0;
  return block;
}

static gl_heap_t *exit_heap;

/* heap_malloc_refill sends every 16th refill of a list to the slow path (for
 * housekeeping).  While the heap profiler samples, every refill takes the slow
 * path, where the sampling code below is: none of it is on the way of malloc when
 * the profiler is off. */
static uint32_t refill_slow_mask = 15;

/* ---- Sampling for the heap profiler (profile.h) ----
 * With the profiler on, every thread heap keeps a budget: the bytes it may hand out
 * before the next sampled byte.  Blocks are charged when the slow path gives them
 * to the fast path: a page's free list all at once when it is handed over (small
 * and medium sizes), a large block by itself.  A list that would overrun the budget is
 * cut after the last block that fits (the rest waits on local_free), so the fast
 * path runs dry just before the sampled allocation and brings it here.  Off, none
 * of this runs and the fast paths are the same instructions.  Charging a list
 * early shifts a sample by at most one list of blocks, which does not change the
 * chance that a given byte is sampled.  First-class heaps and the exit heap are not
 * sampled: a destroyed heap's blocks are never freed one by one. */


/* The secure build asks for every request plus its trailer (secure.c): the
 * profiler records what the program asked for. */
#define GL_PROFILE_TRAILER (GL_SECURE ? GL_SECURE_TRAILER : 0)

/* Frees go on local_free again in every page of the heap: the lists that reach
 * `free` from now on are charged hand-overs ("Where frees go", page.h). */
static void heap_pages_push_local(gl_heap_t *heap) {
  for (gl_page_t *page = list_page(heap->full.first); page; page = list_page(page->link.next))
    page_push_to_local(page);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++)
    for (gl_page_t *page = queue_first(heap, cls); page; page = list_page(page->link.next))
      page_push_to_local(page);
}

static bool heap_samples(gl_heap_t *heap) {
  if (heap->first_class || heap == exit_heap) return false;
  uint32_t generation = __atomic_load_n(&profile_generation, __ATOMIC_RELAXED);
  if (heap->sample_generation != generation) {
    /* Started while this thread was running: its pages may push onto `free`. */
    heap_pages_push_local(heap);
    heap->sample_generation = generation;
    heap->sample_left = profile_next_interval();
  }
  return true;
}

/* Charges the page's free list, which the fast path is about to get, and cuts it
 * where the budget runs out.  False when the budget runs out before its
 * first block: the allocation being made is the sampled one. */
/* Gives the budget back the charge of the blocks still on `free` (count of them)
 * from the page's last hand-over; blocks gathered onto it since were never
 * charged.  The page's counts start again from 0. */
static void sample_give_back(gl_heap_t *heap, gl_page_t *page, size_t count) {
  size_t left = count > page->sample_added ? count - page->sample_added : 0;
  if (left > page->sample_listed) left = page->sample_listed;
  heap->sample_left += (int64_t)left * (int64_t)page->block_size;
  page->sample_listed = page->sample_added = 0;
}

/* The common hand-over, charged in a few instructions: a list with no earlier
 * charge to settle (sample_listed 0), counted without a walk (local_free empty:
 * every block not handed out is on `free`), that fits in the budget, for a
 * sampling heap (a first-class heap or the exit heap never has the current
 * generation: heap_samples leaves it alone) outside the profiler's own calls. */
GL_INLINE bool sample_charge_quick(gl_heap_t *heap, gl_page_t *page) {
  if (page->local_free != NULL || page->sample_listed != 0 || profile_tls_busy != 0 ||
      heap->sample_generation != __atomic_load_n(&profile_generation, __ATOMIC_RELAXED))
    return false;
  uint32_t count = page->capacity - page->used;
  int64_t bytes = (int64_t)count * (int64_t)page->block_size;
  if (bytes >= heap->sample_left) return false;
  heap->sample_left -= bytes;
  page->sample_listed = count;
  return true;
}

static bool sample_charge_list(gl_heap_t *heap, gl_page_t *page) {
  int64_t block_size = (int64_t)page->block_size;
  size_t count = page_free_count(page);
  /* A list handed over again before it ran dry: what is left of its earlier charge
   * is given back first. */
  sample_give_back(heap, page, count);
  int64_t bytes = (int64_t)count * block_size;
  if (bytes < heap->sample_left) {
    heap->sample_left -= bytes;
    page->sample_listed = (uint32_t)count;
    return true;
  }
  /* The sampled byte lies in block fit + 1: the budget keeps the distance to it,
   * in (0, block_size], so the next hand-over (of any class) meets it exactly. */
  int64_t fit = heap->sample_left > 0 ? (heap->sample_left - 1) / block_size : 0;
  heap->sample_left -= fit * block_size;
  page_cut_free(page, (size_t)fit);
  page->sample_listed = (uint32_t)fit;
  return fit > 0;
}

/* A page leaves its heap (retired) with blocks still on `free`: their charge is
 * given back. */
static void sample_refund(gl_heap_t *heap, gl_page_t *page) {
  if (page->sample_listed == 0 || heap != gl_tls_heap || !heap_samples(heap)) return;
  sample_give_back(heap, page, page_free_count(page));
}

static void *heap_alloc_from(gl_heap_t *heap, size_t size, bool zero);

/* A sampled allocation is handed out 16 bytes into its block, tagged like a
 * memalign block, so that free's fast path leaves it to free_slow, which tells the
 * profiler; a large block as it is (large frees always take the slow path). */
static void *heap_sample_tag(gl_page_t *page, uint8_t *block) {
  page_tag_interior(page, block, block + 16);
  return block + 16;
}

/* The sampled request, served from a block of another class (its own has no room
 * for the 16 bytes) or a large block: neither charged nor sampled itself. */
static GL_NOINLINE void *heap_sample_elsewhere(gl_heap_t *heap, size_t size, bool zero) {
  profile_tls_busy = PROFILE_UNCHARGED;
  void *p;
  if (size <= GL_MEDIUM_MAX - 16) {
    uint8_t *block = heap_alloc_from(heap, size + 16, zero);
    p = block == NULL ? NULL : heap_sample_tag(segment_page_of(segment_of(block), block), block);
  } else {
    p = large_alloc(size, 0, zero);
  }
  profile_tls_busy = 0;
  profile_record(p, size - GL_PROFILE_TRAILER);
  return p;
}

/* page_take_block with the profiler on: charge, maybe cut, maybe sample.  The
 * page's free list was handed over just now (the fast path, or malloc's refill for
 * medium sizes, found it empty). */
static GL_NOINLINE void *heap_take_sampling(gl_heap_t *heap, gl_page_t *page, size_t size, bool zero) {
  if (!heap_samples(heap)) return page_take_block(page, size, zero);
  uint8_t busy = profile_tls_busy;
  if (busy) {
    /* A block that must not be sampled (the profiler's own, memalign's) is taken
     * whatever the budget says, and the rest of its list charged.  The block
     * serving a sampled request is not charged, and the rest of its list waits on
     * local_free until the fast path asks for it: charged now, a list of a class
     * that only samples use would eat the budget. */
    void *block = page_take_block(page, size, zero);
    if (busy == PROFILE_UNCHARGED) {
      if (page->free != NULL) page_cut_free(page, 0);
      page->sample_listed = page->sample_added = 0;
      return block;
    }
    heap->sample_left -= (int64_t)page->block_size;
    if (page->free != NULL) sample_charge_list(heap, page);
    return block;
  }
  if (heap->sample_left > 0 && sample_charge_list(heap, page)) return page_take_block(page, size, zero);
  /* A sampled byte falls in the next block.  Lists are charged by block size, so
   * the request is sampled with the probability its own size gives (thinning). */
  bool sample = profile_accept(size - GL_PROFILE_TRAILER, page->block_size);
  heap->sample_left = profile_next_interval();
  if (page->free == NULL) { /* cut before its first block: take the list back */
    page_free_from_local(page, true);
  }
  if (sample && page->block_size - size < 16) {
    sample_charge_list(heap, page); /* the list goes on to the fast path */
    return heap_sample_elsewhere(heap, size, zero);
  }
  uint8_t *block = page_take_block(page, sample ? size + 16 : size, zero);
  if (page->free != NULL) sample_charge_list(heap, page);
  if (!sample) return block;
  void *p = heap_sample_tag(page, block);
  profile_record(p, size - GL_PROFILE_TRAILER);
  return p;
}

static GL_NOINLINE void *heap_large_sampling(gl_heap_t *heap, size_t size, bool zero) {
  if (heap_samples(heap) && profile_tls_busy != PROFILE_UNCHARGED) {
    heap->sample_left -= (int64_t)size;
    if (heap->sample_left <= 0 && !profile_tls_busy) {
      heap->sample_left = profile_next_interval();
      return heap_sample_elsewhere(heap, size, zero);
    }
  }
  return large_alloc(size, 0, zero);
}

void heap_profile_switched(bool on) {
  __atomic_store_n(&refill_slow_mask, on ? 0 : 15, __ATOMIC_RELAXED);
  gl_heap_t *heap = gl_tls_heap;
  if (!on) return;
  if (heap == &gl_heap_empty) return;
  /* The calling thread's lists were handed over uncharged: send them back through
   * the slow path, so its sampling is exact from here.  Other threads' are off by
   * at most one list per class until their lists run dry; their frees go on
   * feeding `free` uncharged until their first refill after this (heap_samples):
   * a thread that never refills is not sampled. */
  heap_pages_push_local(heap);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    gl_page_t *page = queue_first(heap, cls);
    if (page != NULL && page->free != NULL) page_cut_free(page, 0);
  }
}


/* Allocates from `heap`, which this thread owns (or holds exit_lock for). */
static void *heap_alloc_from(gl_heap_t *heap, size_t size, bool zero) {
  if (gl_unlikely(size > GL_MEDIUM_MAX)) {
    if (gl_unlikely(__atomic_load_n(&profile_sampling, __ATOMIC_RELAXED))) return heap_large_sampling(heap, size, zero);
    return large_alloc(size, 0, zero);
  }
  unsigned cls = sizeclass_of(size);
  gl_page_t *page = queue_first(heap, cls);
  if (page == NULL || page->free == NULL) {
    heap_maintain(heap);
    page = heap_find_page(heap, cls);
    if (gl_unlikely(page == NULL)) {
      errno = ENOMEM;
      return NULL;
    }
    /* A list handed over now: the heap profiler charges it (in line when it can:
     * in a big heap of scattered frees this is nearly every allocation). */
    if (gl_unlikely(__atomic_load_n(&profile_sampling, __ATOMIC_RELAXED)) && !sample_charge_quick(heap, page))
      return heap_take_sampling(heap, page, size, zero);
  }
  return page_take_block(page, size, zero);
}

static gl_heap_t *heap_get_or_init(void);
static void *heap_malloc_after_exit(size_t size, bool zero);

/* heap_malloc_refill's work while the profiler samples (it sends every refill of
 * a list here, with the page whose `free` ran dry): the same, ending in
 * heap_take_sampling; housekeeping still waits for every 16th refill.  A first-
 * class heap or the exit heap never has a current sample_generation (heap_samples
 * leaves it alone), so the generation test also keeps their lists uncharged. */
static GL_NOINLINE void *heap_refill_sampling(size_t size, gl_heap_t *heap, gl_page_t *page, bool zero) {
  if (page->local_free == NULL || (heap->slow_calls & 15) == 0) return heap_alloc_from(heap, size, zero);
  page_free_from_local(page, true);
  if (sample_charge_quick(heap, page)) return page_take_block(page, size, zero);
  return heap_take_sampling(heap, page, size, zero);
}

static GL_NOINLINE void *heap_malloc_slow(size_t size, gl_heap_t *heap, bool zero);

/* heap_malloc_refill's way out when a list is empty (or every 16th refill, for
 * housekeeping; every refill while the profiler samples). */
static GL_NOINLINE void *heap_refill_slow(size_t size, gl_heap_t *heap, gl_page_t *page, bool zero) {
  if (gl_unlikely(heap == &gl_heap_empty)) return heap_malloc_slow(size, heap, zero);
  if (__atomic_load_n(&profile_sampling, __ATOMIC_RELAXED)) return heap_refill_sampling(size, heap, page, zero);
  return heap_alloc_from(heap, size, zero);
}

/* malloc's second stop: the thread's first call, large sizes, a page to find. */
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

/* Kept small (no register spills): it pops the class queue's head for sizes above
 * the direct table, and refills a page whose free list ran dry from the owner's own
 * frees (local_free).  Housekeeping (remote frees, purges, full pages) waits for
 * every 16th refill, or anything else. */
void *heap_malloc_refill(size_t size, gl_heap_t *heap, bool zero) {
  gl_page_t *page;
  if (gl_likely(size <= GL_DIRECT_MAX)) page = heap->direct[(size + 15) >> 4];
  else if (size <= GL_MEDIUM_MAX) page = queue_first(heap, sizeclass_of(size));
  else return heap_malloc_slow(size, heap, zero);
  if (gl_unlikely(page == NULL)) return heap_malloc_slow(size, heap, zero);
  if (page->free == NULL) { /* (above the direct table, the head may have blocks) */
    /* The mask is a memory operand, as cheap as the constant 15 it stands for
     * while the profiler is off. */
    if (page->local_free == NULL || (++heap->slow_calls & __atomic_load_n(&refill_slow_mask, __ATOMIC_RELAXED)) == 0)
      return heap_refill_slow(size, heap, page, zero);
    page->free = page->local_free;
    page->local_free = NULL;
    page->free_is_zero = 0;
    page_push_to_free_unless(page, false); /* the profiler is off (mask 15) */
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
  heap->rng = os_random();
  segment_set_init(&heap->segs);
  purge_queue_init(&heap->purge, &heap->segs);
  heap->all_next = atomic_load_explicit(&heaps_all, memory_order_relaxed);
  atomic_store_explicit(&heaps_all, heap, memory_order_release);
  return heap;
}

/* The thread's heap: an abandoned one adopted whole, or a new one. */
static gl_heap_t *heap_get_or_init(void) {
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
    atomic_store_explicit(&heap->state, GL_HEAP_ACTIVE, memory_order_relaxed);
    gl_counter_add(&gl_counters.heaps, 1);
  }
  pthread_mutex_unlock(&registry_lock);
  if (heap == NULL) return NULL;
  gl_validate(heap_is_valid(heap));
  gl_tls_heap = heap;
  purge_queue_set_owner(&heap->purge, os_thread_id());
  /* May allocate (a second-level key table): the heap is in place already. */
  if (thread_key_ok) pthread_setspecific(thread_key, heap);
  return heap;
}

static void heap_thread_done(void *value) {
  gl_heap_t *heap = value;
  if (heap == NULL || heap == &gl_heap_empty || heap != gl_tls_heap) return;
  heap_quarantine_flush(heap);
  heap_sweep(heap, false);
  gl_tls_heap = &gl_heap_empty;
  gl_tls_heap_done = 1;
  purge_queue_set_owner(&heap->purge, 0);
  pthread_mutex_lock(&registry_lock);
  atomic_store_explicit(&heap->state, GL_HEAP_ABANDONED, memory_order_relaxed);
  heap->abandoned_next = heaps_abandoned;
  heaps_abandoned = heap;
  atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
  gl_counter_sub(&gl_counters.heaps, 1);
  gl_counter_add(&gl_counters.heaps_abandoned, 1);
  pthread_mutex_unlock(&registry_lock);
}

/* After its heap is abandoned a thread may still allocate: a pthread key destructor
 * that runs after Galleon's, or in glibc's last destructor round, when a new heap
 * would never be abandoned again.  Such calls share one heap under exit_lock.  No
 * thread has it as gl_tls_heap, so every free into it is a remote free. */
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* ---- First-class heaps ---- */

gl_heap_t *heap_first_class_new(void) {
  heap_process_init();
  pthread_mutex_lock(&registry_lock);
  gl_heap_t *heap = heaps_destroyed;
  /* Written under registry_lock, read without it by the purger's quick test. */
  if (heap != NULL) __atomic_store_n(&heaps_destroyed, heap->abandoned_next, __ATOMIC_RELAXED);
  else heap = heap_new_locked();
  if (heap != NULL) {
    heap->abandoned_next = NULL;
    heap->first_class = 1;
    atomic_store_explicit(&heap->state, GL_HEAP_ACTIVE, memory_order_relaxed);
  }
  pthread_mutex_unlock(&registry_lock);
  return heap;
}

bool heap_is_first_class(const gl_heap_t *heap) {
  return heap != NULL && heap->first_class &&
         atomic_load_explicit(&heap->state, memory_order_relaxed) == GL_HEAP_ACTIVE;
}

void *heap_first_class_alloc(gl_heap_t *heap, size_t size, bool zero) {
  if (size <= GL_MEDIUM_MAX) return heap_alloc_from(heap, size, zero);
  void *p = large_alloc(size, 0, zero);
  if (p != NULL) large_track(heap, p);
  return p;
}

/* Every block goes at once: each page is reset in place -- every block it had
 * carved back on its free list, in address order, under a new key (so a stale
 * free of an old block is caught as a double free) -- and kept in its class queue,
 * and every large block is freed.  The next galleon_heap_new takes this heap
 * back with its pages ready: a server that destroys a heap per request neither
 * re-initialises pages through the segment layer nor faults memory in.  A destroyed
 * heap nobody takes back within purge_idle_ms is swept by the purger, which
 * returns its pages (heap_purger_sweep). */
void heap_first_class_destroy(gl_heap_t *heap) {
  heap_process_notified(heap);
  for (gl_page_t *page; (page = list_page(heap->full.first)) != NULL;) heap_page_unfull(heap, page);
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    for (gl_page_t *page = queue_first(heap, cls); page; page = list_page(page->link.next)) {
      page->used = 0;
      page->local_free = NULL;
      atomic_store_explicit(&page->thread_free, GL_TF_NORMAL, memory_order_relaxed);
      page->has_aligned = 0;
      page->free_is_zero = 0;
      page_push_to_free_unless(page, false); /* first-class heaps are not sampled */
      page_relink(page, next_key(heap)); /* a new key: stale frees are double frees */
      if (!page->kept_empty) {
        page->kept_empty = 1;
        heap->kept_bytes += segment_page_area(page);
      }
    }
  }
  large_untrack_all(heap, true);
  gl_validate(heap_is_valid(heap));
  pthread_mutex_lock(&registry_lock);
  heap->first_class = 0;
  heap->next_sweep_ms = os_clock_ms() + (uint64_t)option(&gl_options.purge_idle_ms);
  atomic_store_explicit(&heap->state, GL_HEAP_DESTROYED, memory_order_relaxed);
  heap->abandoned_next = heaps_destroyed;
  __atomic_store_n(&heaps_destroyed, heap, __ATOMIC_RELAXED);
  size_t kept = heap->kept_bytes;
  pthread_mutex_unlock(&registry_lock);
  purge_notify_pending(kept);
}

/* The live blocks stay valid: the heap becomes an abandoned one, adopted by the
 * next new thread and swept meanwhile; its large blocks become ordinary ones. */
void heap_first_class_delete(gl_heap_t *heap) {
  heap_sweep(heap, false);
  large_untrack_all(heap, false);
  pthread_mutex_lock(&registry_lock);
  heap->first_class = 0;
  atomic_store_explicit(&heap->state, GL_HEAP_ABANDONED, memory_order_relaxed);
  heap->abandoned_next = heaps_abandoned;
  heaps_abandoned = heap;
  atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
  gl_counter_add(&gl_counters.heaps_abandoned, 1);
  pthread_mutex_unlock(&registry_lock);
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

static void heap_lose(gl_heap_t *heap) {
  atomic_store_explicit(&heap->state, GL_HEAP_LOST, memory_order_relaxed);
  atomic_store_explicit(&heap->purge.lost, 1, memory_order_relaxed);
  if (heap == gl_tls_heap) gl_tls_heap = &gl_heap_empty;
}

/* A fork child must not make the page keys its parent (or a sibling) makes next:
 * it draws a new process secret for page keys (page.c) and reseeds every heap's
 * generator from one getrandom call.  A generator is a plain word that only its
 * owner changes, and no thread but this one exists any more: writing it is safe
 * even in a heap that is lost.  Pages already made keep their keys (page.c). */
static void heap_fork_rekey(void) {
  page_secrets_init(true);
  uint64_t seed = os_random();
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    /* splitmix64: a distinct, nonzero state per heap from one seed. */
    uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h->rng = (z ^ (z >> 31)) | 1;
  }
}

static void heap_fork_child(void) {
  heap_fork_rekey();
  if (!gl_mutex_was_free_at_fork(&registry_lock)) {
    /* Mid-adoption, abandonment or heap creation: forget the abandoned list and the
     * rest of the pool chunk.  The list of all heaps is append-only and published
     * with one release store, so it is whole. */
    heaps_abandoned = NULL;
    __atomic_store_n(&heaps_destroyed, NULL, __ATOMIC_RELAXED);
    atomic_store_explicit(&abandoned_count, 0, memory_order_relaxed);
    heap_pool_next = heap_pool_end = NULL;
  }
  /* The only thread left is this one, under a new id. */
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    purge_queue_set_owner(&h->purge, h == gl_tls_heap ? os_thread_id() : 0);
    if (!gl_mutex_was_free_at_fork(&h->segs.lock)) heap_lose(h);
  }
  if (!gl_mutex_was_free_at_fork(&exit_lock) && exit_heap != NULL) {
    heap_lose(exit_heap);
    exit_heap = NULL;
  }
  for (gl_heap_t **link = &heaps_abandoned; *link;) {
    if (heap_is_lost(*link)) {
      *link = (*link)->abandoned_next;
      atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
    } else {
      link = &(*link)->abandoned_next;
    }
  }
  segment_fork_child();
  purge_fork_child();
  profile_fork_child();
}

/* ---- Validation (debug builds) ---- */

bool heap_is_valid(gl_heap_t *heap) {
  size_t kept = 0;
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    gl_page_t *first = queue_first(heap, cls);
    for (unsigned i = direct_lo[cls]; i <= direct_hi[cls]; i++)
      if (heap->direct[i] != (first ? first : &gl_page_empty)) return false;
    for (gl_page_t *p = first; p; p = list_page(p->link.next)) {
      if (p->owner != heap || p->class_idx != cls || p->on_full_list || !page_is_valid(p)) return false;
      if (__atomic_load_n(&p->fast_free_owner, __ATOMIC_RELAXED) != heap) return false;
      if (p->kept_empty) kept += segment_page_area(p);
    }
  }
  for (gl_page_t *p = list_page(heap->full.first); p; p = list_page(p->link.next)) {
    if (p->owner != heap || !p->on_full_list || p->kept_empty || !page_is_valid(p)) return false;
    if (__atomic_load_n(&p->fast_free_owner, __ATOMIC_RELAXED) != NULL) return false;
  }
  for (unsigned cls = 0; cls < GL_CLASS_COUNT; cls++) {
    const gl_page_t *p = heap->full_waiting[cls];
    if (p != NULL && (p->owner != heap || !p->on_full_list || p->class_idx != cls || p->used >= p->capacity))
      return false;
  }
  return kept == heap->kept_bytes;
}
