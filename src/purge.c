/* purge.c: the purge rules, the queues of dirty pages, and the purger thread
 * (purge.h says when memory is returned; this file is how).
 *
 * Lock order: segs->lock (a heap's, also guards its queue) -> cache_policy_lock ->
 * the segment cache lock (segment.c).  The purger's event lock is taken alone.
 */
#include "check.h"
#include "options.h"
#include "purge.h"

static long option(long *value) { return __atomic_load_n(value, __ATOMIC_RELAXED); }
static bool decommit(void) { return option(&gl_options.purge_decommit) != 0; }

/* ---- Recent demand ---- */

static uint64_t demand_slot_ms(void) {
  uint64_t window = (uint64_t)option(&gl_options.purge_window_ms);
  uint64_t slot = window / GL_DEMAND_SLOTS;
  return slot ? slot : 1;
}

/* Moves the window to `now` (slots that passed forget their peak) and records the
 * current value. */
static void demand_advance(gl_demand_t *d, uint64_t now) {
  uint64_t slot = now / demand_slot_ms();
  if (slot != d->slot) {
    uint64_t gap = slot > d->slot ? slot - d->slot : GL_DEMAND_SLOTS;
    for (uint64_t i = 1; i <= gap && i <= GL_DEMAND_SLOTS; i++) d->slot_peak[(d->slot + i) % GL_DEMAND_SLOTS] = 0;
    d->slot = slot;
  }
  size_t *peak = &d->slot_peak[slot % GL_DEMAND_SLOTS];
  if (d->current > *peak) *peak = d->current;
}

static void demand_set(gl_demand_t *d, size_t current, uint64_t now) {
  d->current = current;
  demand_advance(d, now);
}

/* Dirty bytes worth keeping: what the program had in use recently beyond what it
 * has now, at least `floor`. */
static size_t demand_keep(gl_demand_t *d, uint64_t now, size_t floor) {
  if (option(&gl_options.purge_window_ms) == 0) return floor;
  demand_advance(d, now);
  size_t peak = 0;
  for (unsigned i = 0; i < GL_DEMAND_SLOTS; i++)
    if (d->slot_peak[i] > peak) peak = d->slot_peak[i];
  size_t reuse = peak > d->current ? peak - d->current : 0;
  return reuse > floor ? reuse : floor;
}

/* ---- The purger's wake-up (defined below) ---- */

static void purge_notify(size_t dirty_bytes);

/* ---- A heap's queue of dirty pages (segs->lock held) ---- */

static _Atomic(gl_purge_queue_t *) queues_all;

static gl_page_t *queue_page(gl_link_t *link) { return link ? gl_container_of(link, gl_page_t, link) : NULL; }

static void queue_bytes(gl_purge_queue_t *q, size_t bytes, bool add) {
  __atomic_store_n(&q->dirty_bytes, add ? q->dirty_bytes + bytes : q->dirty_bytes - bytes, __ATOMIC_RELAXED);
}

void purge_queue_init(gl_purge_queue_t *q, gl_segset_t *segs) {
  q->segs = segs;
  q->pages.first = q->pages.last = NULL;
  q->dirty_bytes = 0;
  q->quiet_since_ms = os_clock_ms();
  gl_purge_queue_t *head = atomic_load_explicit(&queues_all, memory_order_relaxed);
  do {
    q->all_next = head;
  } while (!atomic_compare_exchange_weak_explicit(&queues_all, &head, q, memory_order_release,
                                                  memory_order_relaxed));
}

/* Purges the oldest dirty pages -- each with every other dirty page of its segment,
 * one madvise per run -- until at most `keep` dirty bytes are left or the oldest is
 * not yet due (unless `all`).  A segment left with nothing in use goes to the cache. */
static void queue_purge(gl_purge_queue_t *q, uint64_t now, size_t keep, bool all) {
  gl_page_t *page;
  while ((page = queue_page(q->pages.first)) != NULL && q->dirty_bytes > keep && (all || page->purge_at <= now)) {
    gl_segment_t *seg = segment_of(page);
    uint64_t purged = segment_purge_dirty(seg, decommit());
    while (purged) {
      gl_page_t *p = &seg->pages[__builtin_ctzll(purged)];
      purged &= purged - 1;
      gl_list_remove(&q->pages, &p->link);
      queue_bytes(q, segment_page_area(p), false);
    }
    segment_release_if_unused(q->segs, seg);
  }
  gl_validate(purge_queue_is_valid(q));
}

/* The rules, for a queue whose lock is held. */
static void queue_apply(gl_purge_queue_t *q, uint64_t now, bool idle) {
  if (q->dirty_bytes == 0) return;
  size_t keep = idle ? 0 : demand_keep(&q->demand, now, (size_t)option(&gl_options.retain_bytes));
  queue_purge(q, now, keep, idle);
}

gl_page_t *purge_page_alloc(gl_purge_queue_t *q, struct gl_heap_s *heap, gl_kind_t kind, bool *is_zero) {
  bool was_dirty = false;
  pthread_mutex_lock(&q->segs->lock);
  gl_page_t *page = segment_page_alloc(q->segs, heap, kind, is_zero, &was_dirty);
  if (page != NULL) {
    size_t area = segment_page_area(page);
    if (was_dirty) {
      gl_list_remove(&q->pages, &page->link);
      queue_bytes(q, area, false);
    }
    demand_set(&q->demand, q->demand.current + area, os_clock_ms());
    atomic_fetch_add_explicit(&q->activity, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&q->segs->lock);
  return page;
}

void purge_page_free(gl_purge_queue_t *q, gl_page_t *page) {
  uint64_t now = os_clock_ms();
  size_t area = segment_page_area(page);
  pthread_mutex_lock(&q->segs->lock);
  segment_page_free(q->segs, page);
  page->purge_at = now + (uint64_t)option(&gl_options.purge_delay_ms);
  gl_list_push_back(&q->pages, &page->link); /* purge_at only grows: the queue stays sorted */
  queue_bytes(q, area, true);
  demand_set(&q->demand, q->demand.current - area, now);
  atomic_fetch_add_explicit(&q->activity, 1, memory_order_relaxed);
  queue_apply(q, now, false);
  size_t dirty = q->dirty_bytes;
  pthread_mutex_unlock(&q->segs->lock);
  purge_notify(dirty + segment_cache_resident_bytes());
}

void purge_heap_tick(gl_purge_queue_t *q, uint64_t now) {
  if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) == 0) return;
  pthread_mutex_lock(&q->segs->lock);
  queue_apply(q, now, false);
  pthread_mutex_unlock(&q->segs->lock);
}

void purge_heap_all(gl_purge_queue_t *q) {
  pthread_mutex_lock(&q->segs->lock);
  queue_purge(q, os_clock_ms(), 0, true);
  pthread_mutex_unlock(&q->segs->lock);
}

bool purge_queue_is_valid(gl_purge_queue_t *q) {
  size_t bytes = 0;
  uint64_t last_due = 0;
  for (gl_page_t *p = queue_page(q->pages.first); p; p = queue_page(p->link.next)) {
    if (p->state != GL_PAGE_FREE_DIRTY || p->owner != NULL || p->purge_at < last_due) return false;
    gl_segment_t *seg = segment_of(p);
    if (!(seg->dirty_mask & ((uint64_t)1 << p->index))) return false;
    last_due = p->purge_at;
    bytes += segment_page_area(p);
  }
  return bytes == q->dirty_bytes;
}

/* ---- The segment cache ---- */

static pthread_mutex_t cache_policy_lock = PTHREAD_MUTEX_INITIALIZER;
static gl_demand_t cache_demand; /* bytes of live segments */
static uint64_t cache_seen_activity, cache_quiet_since_ms;

/* A freed segment is big: refaulting it costs far more than a page, so excess
 * cached memory waits ten times longer than a page before it is purged. */
static uint64_t cache_purge_delay_ms(void) { return 10 * (uint64_t)option(&gl_options.purge_delay_ms); }
/* Cached segments nobody took for this long are unmapped. */
static uint64_t cache_unmap_delay_ms(void) {
  uint64_t d = 50 * (uint64_t)option(&gl_options.purge_delay_ms);
  return d < 1000 ? 1000 : d;
}

static size_t live_segment_bytes(void) {
  size_t mapped = gl_counter_get(&gl_counters.mapped), cached = segment_cache_bytes();
  return mapped > cached ? mapped - cached : 0;
}

/* The rules for the cache (cache_policy_lock held). */
static void cache_apply(uint64_t now, bool idle) {
  if (segment_cache_bytes() == 0) return;
  uint64_t delay = cache_purge_delay_ms();
  if (idle) {
    segment_cache_purge(0, UINT64_MAX, decommit());
  } else {
    size_t floor = 2 * (size_t)option(&gl_options.retain_bytes);
    size_t keep = demand_keep(&cache_demand, now, floor);
    segment_cache_purge(keep, now >= delay ? now - delay : 0, decommit());
  }
  uint64_t unmap = cache_unmap_delay_ms();
  if (now >= unmap) segment_cache_unmap(now - unmap);
}

void purge_large_allocated(void) {
  pthread_mutex_lock(&cache_policy_lock);
  demand_set(&cache_demand, live_segment_bytes(), os_clock_ms());
  pthread_mutex_unlock(&cache_policy_lock);
}

void purge_large_freed(void) {
  uint64_t now = os_clock_ms();
  pthread_mutex_lock(&cache_policy_lock);
  demand_set(&cache_demand, live_segment_bytes(), now);
  cache_apply(now, false);
  pthread_mutex_unlock(&cache_policy_lock);
  purge_notify(segment_cache_resident_bytes());
}

void purge_cache_all(void) {
  pthread_mutex_lock(&cache_policy_lock);
  segment_cache_purge(0, UINT64_MAX, decommit());
  segment_cache_unmap(UINT64_MAX);
  pthread_mutex_unlock(&cache_policy_lock);
}

/* ---- The purger thread ----
 * One round: every heap queue and the cache get the rules, with the idle rule for
 * those whose activity counter has not moved for purge_idle_ms.  It returns whether
 * dirty memory is left anywhere; the thread then sleeps purge_idle_ms / 2, or
 * without a deadline when nothing is left (a thread that queues dirty memory ends
 * that sleep). */

#define GL_PURGER_START_BYTES ((size_t)1 << 20)

enum { PURGER_NONE = 0, PURGER_RUNNING = 1, PURGER_FAILED = 2 };

static os_event_t purger_event;
static _Atomic(int) purger_state;
static _Atomic(int) purger_sleeping; /* 1: asleep with no deadline */
static _Atomic(purge_collect_fn) purger_collect;

/* The fence between "announce, then look" on both sides: an RMW on one word, so
 * that whichever side comes second sees what the other wrote before (TSan knows
 * RMWs, not fences). */
static _Atomic(uint64_t) purger_fence_word;
static void purger_fence(void) { atomic_fetch_add_explicit(&purger_fence_word, 1, memory_order_acq_rel); }

void purge_set_collector(purge_collect_fn collect) { atomic_store(&purger_collect, collect); }

static bool quiet_for(uint64_t activity, uint64_t *seen, uint64_t *quiet_since, uint64_t now) {
  if (activity != *seen) {
    *seen = activity;
    *quiet_since = now;
    return false;
  }
  return now - *quiet_since >= (uint64_t)option(&gl_options.purge_idle_ms);
}

static bool purge_round(uint64_t now) {
  bool pending = false;
  for (gl_purge_queue_t *q = atomic_load_explicit(&queues_all, memory_order_acquire); q; q = q->all_next) {
    if (atomic_load_explicit(&q->lost, memory_order_relaxed)) continue;
    uint64_t activity = atomic_load_explicit(&q->activity, memory_order_relaxed);
    bool idle = quiet_for(activity, &q->seen_activity, &q->quiet_since_ms, now);
    if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) == 0) continue;
    if (pthread_mutex_trylock(&q->segs->lock) == 0) { /* never wait for an owner */
      queue_apply(q, now, idle);
      pthread_mutex_unlock(&q->segs->lock);
    }
    if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) != 0) pending = true;
  }
  if (segment_cache_bytes() != 0 && pthread_mutex_trylock(&cache_policy_lock) == 0) {
    bool idle = quiet_for(segment_cache_activity(), &cache_seen_activity, &cache_quiet_since_ms, now);
    demand_set(&cache_demand, live_segment_bytes(), now);
    cache_apply(now, idle);
    pthread_mutex_unlock(&cache_policy_lock);
  }
  if (segment_cache_bytes() != 0) pending = true; /* resident, or to unmap later */
  purge_collect_fn collect = atomic_load(&purger_collect);
  if (collect && collect(now)) pending = true;
  return pending;
}

static void *purger_main(void *arg) {
  (void)arg;
  for (;;) {
    bool pending = purge_round(os_clock_ms());
    os_event_lock(&purger_event);
    if (!pending) {
      /* Announce the deadline-less sleep, then look once more: memory queued by a
       * thread that did not see the announcement is found here, memory queued later
       * comes with a signal (the fences pair with purge_notify's). */
      atomic_store_explicit(&purger_sleeping, 1, memory_order_relaxed);
      purger_fence();
      os_event_unlock(&purger_event);
      pending = purge_round(os_clock_ms());
      os_event_lock(&purger_event);
      if (!pending) os_event_wait(&purger_event, UINT64_MAX);
      atomic_store_explicit(&purger_sleeping, 0, memory_order_relaxed);
    } else {
      uint64_t tick = (uint64_t)option(&gl_options.purge_idle_ms) / 2;
      os_event_wait(&purger_event, os_clock_ms() + (tick < 10 ? 10 : tick));
    }
    os_event_unlock(&purger_event);
  }
  return NULL;
}

static void purger_start(void) {
  int expected = PURGER_NONE;
  if (!atomic_compare_exchange_strong(&purger_state, &expected, PURGER_RUNNING)) return;
  os_event_init(&purger_event);
  /* May call malloc: no Galleon lock is held here. */
  if (!os_thread_start(purger_main, "galleon-purge")) {
    atomic_store(&purger_state, PURGER_FAILED);
    if (option(&gl_options.verbose)) gl_message("galleon: ", "could not start the purger thread", 0);
  }
}

/* Called with no Galleon lock held after dirty memory was queued: starts the purger
 * when enough is waiting, ends its deadline-less sleep.  Nothing else: a busy
 * program does not signal a purger that will wake on its own. */
static void purge_notify(size_t dirty_bytes) {
  int state = atomic_load_explicit(&purger_state, memory_order_relaxed);
  if (state == PURGER_NONE) {
    if (dirty_bytes >= GL_PURGER_START_BYTES && option(&gl_options.purge_thread)) purger_start();
    return;
  }
  if (state != PURGER_RUNNING) return;
  purger_fence();
  if (atomic_load_explicit(&purger_sleeping, memory_order_relaxed)) os_event_signal(&purger_event);
}

void purge_fork_child(void) {
  gl_mutex_was_free_at_fork(&cache_policy_lock);
  atomic_store(&purger_state, PURGER_NONE);
  atomic_store(&purger_sleeping, 0);
}
