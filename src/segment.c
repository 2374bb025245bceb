/* segment.c: aligned regions, page descriptors, the segment map, the segment cache.
 *
 * Lock order: heap registry lock (heap.c) -> heap->lock -> cache_lock.
 * heap->lock guards a heap's segments, their page masks and the purge queue: the
 * owner takes it when a page enters or leaves use (not per block), the purger
 * thread and stats walkers take it to look at a heap they do not own.
 * cache_lock guards the segment cache (freed segments kept for reuse); nothing on a
 * malloc or free fast path takes it.
 *
 * Invariants:
 *  - A small or medium segment is exactly GL_SEGMENT_SIZE bytes and belongs to one
 *    heap; only that heap's owner (or a thread holding the abandoned heap) changes it.
 *  - free_mask has a bit for every unused page; dirty_mask is the subset that is still
 *    resident, and each of those pages is on its heap's purge queue.
 *  - The segment map says GL_SEGMAP_SMALL/MEDIUM/LARGE for the first unit of
 *    every mapped segment (cached ones too) and GL_SEGMAP_TAIL for later units.
 */
#include <string.h>

#include "check.h"
#include "internal.h"
#include "sizeclass.h"

/* Read by every free(); an unused range points at the zero chunk, which is never
 * written, so a lookup needs no NULL test. */
static _Atomic(uint8_t) segmap_zero_chunk[GL_SEGMAP_CHUNK_UNITS];
#define SEGMAP_BIAS(c) ((uintptr_t)(c) << GL_SEGMAP_CHUNK_SHIFT)
#define SEGMAP_ZERO(c) ((uintptr_t)segmap_zero_chunk - SEGMAP_BIAS(c))
#define SEGMAP_ZERO8(c) SEGMAP_ZERO(c), SEGMAP_ZERO(c + 1), SEGMAP_ZERO(c + 2), SEGMAP_ZERO(c + 3), \
    SEGMAP_ZERO(c + 4), SEGMAP_ZERO(c + 5), SEGMAP_ZERO(c + 6), SEGMAP_ZERO(c + 7)
#define SEGMAP_ZERO64(c) SEGMAP_ZERO8(c), SEGMAP_ZERO8(c + 8), SEGMAP_ZERO8(c + 16), SEGMAP_ZERO8(c + 24), \
    SEGMAP_ZERO8(c + 32), SEGMAP_ZERO8(c + 40), SEGMAP_ZERO8(c + 48), SEGMAP_ZERO8(c + 56)
_Static_assert(GL_SEGMAP_CHUNKS == 512, "the initializer below lists 512 chunks");
uintptr_t gl_segmap[GL_SEGMAP_CHUNKS] = {
    SEGMAP_ZERO64(0),   SEGMAP_ZERO64(64),  SEGMAP_ZERO64(128), SEGMAP_ZERO64(192),
    SEGMAP_ZERO64(256), SEGMAP_ZERO64(320), SEGMAP_ZERO64(384), SEGMAP_ZERO64(448)};

/* The first entry of chunk c. */
static _Atomic(uint8_t) *segmap_chunk(size_t c) {
  return (_Atomic(uint8_t) *)(__atomic_load_n(&gl_segmap[c], __ATOMIC_ACQUIRE) + SEGMAP_BIAS(c));
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static gl_segment_t *cache_first; /* most recently cached first */
static size_t cache_count;
static size_t cache_dirty_bytes;
_Atomic(uint64_t) gl_cache_next_event_ms = UINT64_MAX;

/* In a fork child: if another thread held cache_lock at the fork, the cache list may
 * be half-changed, so the child forgets the cache (its segments stay mapped, unused,
 * and a stale free() of one still finds it cached). */
void segment_fork_child(void) {
  if (!gl_mutex_was_free_at_fork(&cache_lock)) {
    cache_first = NULL;
    cache_count = 0;
    __atomic_store_n(&cache_dirty_bytes, 0, __ATOMIC_RELAXED);
    atomic_store_explicit(&gl_cache_next_event_ms, UINT64_MAX, memory_order_relaxed);
  }
}

/* Rounded to GL_PAGE_START_ALIGN so every page start is aligned to it (aligned.c
 * relies on that); the part of the first page that rounding skips is never touched. */
static size_t segment_header_size(unsigned page_count) {
  return gl_align_up(sizeof(gl_segment_t) + page_count * sizeof(gl_page_t), GL_PAGE_START_ALIGN);
}

/* Maps the chunks of the segment map that cover [addr, addr + size); false when the
 * OS has no memory for one.  Chunks are installed with a CAS and never removed, so
 * no lock is needed and a fork() at any point leaves a usable map. */
bool segment_map_reserve(const void *addr, size_t size) {
  size_t first = (uintptr_t)addr >> GL_SEGMENT_SHIFT;
  size_t last = ((uintptr_t)addr + size - 1) >> GL_SEGMENT_SHIFT;
  if (size == 0 || last >= GL_SEGMAP_UNITS || last < first) return false;
  for (size_t c = first >> GL_SEGMAP_CHUNK_SHIFT; c <= last >> GL_SEGMAP_CHUNK_SHIFT; c++) {
    if (segmap_chunk(c) != segmap_zero_chunk) continue;
    uint8_t *fresh = os_map(GL_SEGMAP_CHUNK_UNITS);
    if (fresh == NULL) return false;
    uintptr_t expected = SEGMAP_ZERO(c);
    if (!__atomic_compare_exchange_n(&gl_segmap[c], &expected, (uintptr_t)fresh - SEGMAP_BIAS(c), false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      os_unmap(fresh, GL_SEGMAP_CHUNK_UNITS); /* another thread installed one */
  }
  return true;
}

/* Marks the units of a mapping: `value` for the first, GL_SEGMAP_TAIL for the rest
 * (or NONE for all).  Setting requires segment_map_reserve() to have succeeded for
 * the range. */
void segment_map_set(gl_segment_t *seg, size_t mapped_size, uint8_t value) {
  size_t first = (uintptr_t)seg >> GL_SEGMENT_SHIFT;
  size_t units = (mapped_size + GL_SEGMENT_MASK) >> GL_SEGMENT_SHIFT;
  for (size_t i = 0; i < units && first + i < GL_SEGMAP_UNITS; i++) {
    size_t unit = first + i;
    _Atomic(uint8_t) *chunk = segmap_chunk(unit >> GL_SEGMAP_CHUNK_SHIFT);
    if (chunk == segmap_zero_chunk) {
      gl_assert(value == GL_SEGMAP_NONE);
      continue;
    }
    uint8_t v = value;
    if (i > 0 && value != GL_SEGMAP_NONE) v = GL_SEGMAP_TAIL;
    atomic_store_explicit(&chunk[unit & (GL_SEGMAP_CHUNK_UNITS - 1)], v, memory_order_relaxed);
  }
}

/* The segment that holds p, or NULL: walks back over the tail units of a large one. */
gl_segment_t *segment_find(const void *p) {
  uintptr_t unit = (uintptr_t)p >> GL_SEGMENT_SHIFT;
  if (unit >= GL_SEGMAP_UNITS) return NULL;
  for (;;) {
    uint8_t v = gl_segmap_get(unit << GL_SEGMENT_SHIFT);
    if ((v & GL_SEGMAP_PAGES_BIT) || v == GL_SEGMAP_LARGE) return (gl_segment_t *)(unit << GL_SEGMENT_SHIFT);
    if (v != GL_SEGMAP_TAIL || unit == 0) return NULL;
    unit--;
  }
}

/* Fresh address space for a segment (read-write, or reserved only), with the
 * segment-map chunks that will describe it already in place. */
static void *segment_os_map(size_t size, size_t alignment, bool reserve_only) {
  void *p = reserve_only ? os_reserve_aligned(size, alignment) : os_map_aligned(size, alignment);
  if (p != NULL && !segment_map_reserve(p, size)) {
    os_unmap(p, size);
    return NULL;
  }
  return p;
}

static void counters_mapped(size_t bytes) {
  size_t now = atomic_fetch_add_explicit(&gl_counters.mapped, bytes, memory_order_relaxed) + bytes;
  size_t peak = gl_counter_get(&gl_counters.mapped_peak);
  while (now > peak &&
         !atomic_compare_exchange_weak_explicit(&gl_counters.mapped_peak, &peak, now,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

static void segment_unmap(gl_segment_t *seg) {
  size_t size = seg->mapped_size;
  segment_map_set(seg, size, GL_SEGMAP_NONE);
  gl_counter_sub(&gl_counters.mapped, size);
  gl_counter_sub(&gl_counters.segments, 1);
  os_unmap(seg, size);
}

/* ---- The segment cache ---- */

static void cache_unlink(gl_segment_t *seg) {
  if (seg->prev) seg->prev->next = seg->next; else cache_first = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
  seg->cached = 0;
  cache_count--;
  if (seg->cache_dirty == 1) __atomic_store_n(&cache_dirty_bytes, cache_dirty_bytes - seg->mapped_size, __ATOMIC_RELAXED);
  gl_counter_sub(&gl_counters.segments_cached, 1);
}

/* A freed segment is big: refaulting it costs far more than a page's worth, so it
 * stays resident ten times longer than a freed page before it is purged. */
static uint64_t cache_purge_delay_ms(void) {
  return (uint64_t)gl_options.purge_delay_ms * 10;
}

static uint64_t cache_unmap_delay_ms(void) {
  long d = gl_options.purge_delay_ms * 50;
  return (uint64_t)(d < 1000 ? 1000 : d);
}

/* Purge a cached segment, keeping its first OS page: it holds the cache links. */
static void cache_purge_entry(gl_segment_t *seg) {
  if (seg->cache_dirty != 1) return;
  size_t keep = os_page_size();
  bool zero = os_purge((uint8_t *)seg + keep, seg->mapped_size - keep);
  seg->cache_dirty = zero ? 0 : 2; /* 2: purged, but reads may not be zero (MADV_FREE) */
  __atomic_store_n(&cache_dirty_bytes, cache_dirty_bytes - seg->mapped_size, __ATOMIC_RELAXED);
}

/* Takes a cached segment of at least `size` bytes (exactly, when exact), or NULL.
 * With resizable, and nothing fits, takes the largest dirty one instead: the caller
 * resizes it with mremap, which keeps its resident pages -- cheaper than faulting in
 * a fresh mapping. */
static gl_segment_t *cache_take(size_t size, bool exact, bool resizable, bool *is_zero) {
  gl_segment_t *best = NULL, *split = NULL, *largest_dirty = NULL;
  pthread_mutex_lock(&cache_lock);
  for (gl_segment_t *s = cache_first; s; s = s->next) {
    if (s->cache_dirty == 1) {
      if (largest_dirty == NULL || s->mapped_size > largest_dirty->mapped_size) largest_dirty = s;
      if (s->mapped_size >= size && (split == NULL || s->mapped_size < split->mapped_size)) split = s;
    }
    if (s->mapped_size < size) continue;
    if (exact ? s->mapped_size != size : s->mapped_size - size > size / 2 + (1u << 20)) continue;
    if (best == NULL || s->mapped_size < best->mapped_size) best = s;
    if (s->mapped_size == size) break;
  }
  /* Nothing fits: the smallest resident segment that is big enough (the caller
   * splits it), else the biggest resident one (the caller grows it). */
  if (best == NULL && resizable) best = split ? split : largest_dirty;
  if (best) {
    *is_zero = best->cache_dirty == 0 && gl_options.purge_decommit;
    cache_unlink(best);
  }
  pthread_mutex_unlock(&cache_lock);
  return best;
}

/* Resident memory the cache may hold before purging at once: half of what the
 * program has in large blocks, at least 8 x retain_bytes.  Either way the purger
 * returns it after purge_delay_ms once the program stops reusing it. */
static size_t cache_dirty_budget(void) {
  size_t floor = (size_t)gl_options.retain_bytes * 8;
  size_t scaled = gl_counter_get(&gl_counters.large_in_use_bytes) / 2;
  return scaled > floor ? scaled : floor;
}

/* Purges cache entries whose delay has passed and unmaps those unused for long (all
 * of them when force).  Cheap to call often: one atomic load when nothing is due. */
void segment_cache_collect(uint64_t now, bool force) {
  if (!force && now < atomic_load_explicit(&gl_cache_next_event_ms, memory_order_relaxed)) return;
  gl_segment_t *to_unmap = NULL;
  pthread_mutex_lock(&cache_lock);
  uint64_t next = UINT64_MAX;
  uint64_t purge_delay = cache_purge_delay_ms();
  uint64_t unmap_delay = cache_unmap_delay_ms();
  for (gl_segment_t *s = cache_first, *n; s; s = n) {
    n = s->next;
    if (force || now >= s->cached_at + unmap_delay) {
      cache_unlink(s);
      s->next = to_unmap;
      to_unmap = s;
      continue;
    }
    if (s->cache_dirty == 1 && now >= s->cached_at + purge_delay) cache_purge_entry(s);
    uint64_t due = s->cache_dirty == 1 ? s->cached_at + purge_delay : s->cached_at + unmap_delay;
    if (due < next) next = due;
  }
  atomic_store_explicit(&gl_cache_next_event_ms, next, memory_order_relaxed);
  pthread_mutex_unlock(&cache_lock);
  while (to_unmap) {
    gl_segment_t *n = to_unmap->next;
    segment_unmap(to_unmap);
    to_unmap = n;
  }
}

/* Gives a segment that no longer holds any block to the cache (or back to the OS). */
static void segment_cache_put(gl_segment_t *seg, bool dirty) {
  uint64_t now = os_clock_ms();
  gl_segment_t *evict = NULL;
  pthread_mutex_lock(&cache_lock);
  if (gl_options.segment_cache <= 0) {
    evict = seg;
  } else {
    if (cache_count >= (size_t)gl_options.segment_cache) {
      /* Evict the oldest entry. */
      gl_segment_t *last = cache_first;
      while (last->next) last = last->next;
      cache_unlink(last);
      evict = last;
    }
    seg->cached = 1;
    seg->cache_dirty = dirty ? 1 : 0;
    seg->cached_at = now;
    seg->prev = NULL;
    seg->next = cache_first;
    if (cache_first) cache_first->prev = seg;
    cache_first = seg;
    cache_count++;
    gl_counter_add(&gl_counters.segments_cached, 1);
    if (dirty) {
      __atomic_store_n(&cache_dirty_bytes, cache_dirty_bytes + seg->mapped_size, __ATOMIC_RELAXED);
      /* Keep the resident memory parked in the cache bounded: past the budget the
       * oldest dirty segments are purged now instead of after the delay (the newest
       * is the one most likely to be reused). */
      if (gl_options.purge_delay_ms == 0) {
        cache_purge_entry(seg);
      } else if (cache_dirty_bytes > cache_dirty_budget()) {
        gl_segment_t *last = cache_first;
        while (last->next) last = last->next;
        size_t budget = cache_dirty_budget();
        for (gl_segment_t *s = last; s && cache_dirty_bytes > budget; s = s->prev) cache_purge_entry(s);
      }
    }
    uint64_t due = now + (seg->cache_dirty == 1 ? cache_purge_delay_ms() : cache_unmap_delay_ms());
    if (due < atomic_load_explicit(&gl_cache_next_event_ms, memory_order_relaxed))
      atomic_store_explicit(&gl_cache_next_event_ms, due, memory_order_relaxed);
  }
  pthread_mutex_unlock(&cache_lock);
  if (evict) segment_unmap(evict);
}

/* ---- Small and medium segments, owned by heaps ---- */

static void avail_push(gl_heap_t *heap, gl_segment_t *seg) {
  gl_segment_t **head = &heap->avail[seg->kind];
  seg->avail_prev = NULL;
  seg->avail_next = *head;
  if (*head) (*head)->avail_prev = seg;
  *head = seg;
  seg->in_avail = 1;
}

static void avail_remove(gl_heap_t *heap, gl_segment_t *seg) {
  if (seg->avail_prev) seg->avail_prev->avail_next = seg->avail_next;
  else heap->avail[seg->kind] = seg->avail_next;
  if (seg->avail_next) seg->avail_next->avail_prev = seg->avail_prev;
  seg->avail_next = seg->avail_prev = NULL;
  seg->in_avail = 0;
}

static gl_segment_t *segment_new_pages(gl_heap_t *heap, gl_kind_t kind) {
  bool is_zero = false;
  gl_segment_t *seg = cache_take(GL_SEGMENT_SIZE, true, false, &is_zero);
  if (seg == NULL) {
    seg = segment_os_map(GL_SEGMENT_SIZE, GL_SEGMENT_SIZE, false);
    if (seg == NULL) return NULL;
    is_zero = true;
    counters_mapped(GL_SEGMENT_SIZE);
    gl_counter_add(&gl_counters.segments, 1);
  }
  unsigned shift = kind == GL_KIND_SMALL ? GL_SMALL_PAGE_SHIFT : GL_MEDIUM_PAGE_SHIFT;
  unsigned count = (unsigned)(GL_SEGMENT_SIZE >> shift);
  size_t header = segment_header_size(count);
  memset(seg, 0, sizeof(gl_segment_t) + count * sizeof(gl_page_t));
  seg->kind = (uint8_t)kind;
  seg->page_shift = (uint8_t)shift;
  seg->page_count = count;
  seg->mapped_size = GL_SEGMENT_SIZE;
  seg->heap = heap;
  seg->free_mask = count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1);
  for (unsigned i = 0; i < count; i++) {
    gl_page_t *page = &seg->pages[i];
    size_t begin = i == 0 ? header : ((size_t)i << shift);
    page->index = (uint8_t)i;
    page->start = (uint8_t *)seg + begin;
    page->state = GL_PAGE_FREE_CLEAN;
    page->mem_is_zero = is_zero;
  }
  segment_map_set(seg, GL_SEGMENT_SIZE, kind == GL_KIND_SMALL ? GL_SEGMAP_SMALL : GL_SEGMAP_MEDIUM);

  seg->next = heap->segments[kind];
  if (seg->next) seg->next->prev = seg;
  heap->segments[kind] = seg;
  avail_push(heap, seg);
  return seg;
}

/* A segment with no page in use and no dirty page leaves the heap. */
static void segment_release(gl_heap_t *heap, gl_segment_t *seg) {
  gl_assert(seg->used_pages == 0 && seg->dirty_mask == 0);
  if (seg->in_avail) avail_remove(heap, seg);
  if (seg->prev) seg->prev->next = seg->next; else heap->segments[seg->kind] = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
  seg->heap = NULL;
  /* The rest of the header (page descriptors) is purged too, so a reuse of this
   * segment finds zero memory everywhere past the first OS page. */
  bool all_zero = true;
  for (unsigned i = 0; i < seg->page_count; i++) all_zero = all_zero && seg->pages[i].mem_is_zero;
  size_t keep = os_page_size();
  size_t header = segment_header_size(seg->page_count);
  all_zero = os_purge((uint8_t *)seg + keep, header - keep) && all_zero;
  segment_cache_put(seg, !all_zero);
}

static void purge_queue_remove(gl_heap_t *heap, gl_page_t *page) {
  if (page->prev) page->prev->next = page->next; else heap->purge.first = page->next;
  if (page->next) page->next->prev = page->prev; else heap->purge.last = page->prev;
  page->next = page->prev = NULL;
  __atomic_store_n(&heap->dirty_bytes, heap->dirty_bytes - gl_page_area(page), __ATOMIC_RELAXED);
}

gl_page_t *segment_page_alloc(gl_heap_t *heap, gl_kind_t kind, bool *is_zero) {
  pthread_mutex_lock(&heap->lock);
  gl_segment_t *seg = heap->avail[kind];
  if (seg == NULL) {
    seg = segment_new_pages(heap, kind);
    if (seg == NULL) {
      pthread_mutex_unlock(&heap->lock);
      return NULL;
    }
  }
  gl_assert(seg->free_mask != 0);
  /* A dirty page first: it is resident already, a clean one would fault in. */
  uint64_t pick = seg->dirty_mask ? seg->dirty_mask : seg->free_mask;
  unsigned idx = (unsigned)__builtin_ctzll(pick);
  gl_page_t *page = &seg->pages[idx];
  uint64_t bit = (uint64_t)1 << idx;
  if (page->state == GL_PAGE_FREE_DIRTY) {
    purge_queue_remove(heap, page);
    page->mem_is_zero = 0;
  }
  *is_zero = page->mem_is_zero;
  seg->free_mask &= ~bit;
  seg->dirty_mask &= ~bit;
  seg->used_pages++;
  if (seg->free_mask == 0) avail_remove(heap, seg);
  page->state = GL_PAGE_IN_USE;
  pthread_mutex_unlock(&heap->lock);
  return page;
}

void segment_page_free(gl_heap_t *heap, gl_page_t *page) {
  gl_segment_t *seg = gl_segment_of(page);
  uint64_t bit = (uint64_t)1 << page->index;
  gl_assert(page->state == GL_PAGE_IN_USE && page->used == 0);
  pthread_mutex_lock(&heap->lock);
  page->heap = NULL;
  __atomic_store_n(&page->fast_owner, NULL, __ATOMIC_RELAXED);
  page->free = NULL;
  page->local_free = NULL;
  __atomic_store_n(&page->carved_limit, 0, __ATOMIC_RELAXED);
  page->state = GL_PAGE_FREE_DIRTY;
  page->purge_at = os_clock_ms() + (uint64_t)gl_options.purge_delay_ms;
  /* Append to the purge queue: it stays sorted by purge_at. */
  page->next = NULL;
  page->prev = heap->purge.last;
  if (heap->purge.last) heap->purge.last->next = page; else heap->purge.first = page;
  heap->purge.last = page;
  __atomic_store_n(&heap->dirty_bytes, heap->dirty_bytes + gl_page_area(page), __ATOMIC_RELAXED);
  if (page->purge_at < heap->next_purge_ms)
    __atomic_store_n(&heap->next_purge_ms, page->purge_at, __ATOMIC_RELAXED);
  seg->free_mask |= bit;
  seg->dirty_mask |= bit;
  seg->used_pages--;
  if (!seg->in_avail) avail_push(heap, seg);
  pthread_mutex_unlock(&heap->lock);
}

/* Purges every dirty page of seg, one madvise per run of adjacent pages. */
static void segment_purge_dirty(gl_heap_t *heap, gl_segment_t *seg) {
  uint64_t mask = seg->dirty_mask;
  while (mask) {
    unsigned first = (unsigned)__builtin_ctzll(mask);
    unsigned last = first;
    while (last + 1 < seg->page_count && (mask >> (last + 1)) & 1) last++;
    uint8_t *begin = seg->pages[first].start;
    uint8_t *end = (uint8_t *)seg + ((size_t)(last + 1) << seg->page_shift);
    bool zero = os_purge(begin, (size_t)(end - begin));
    for (unsigned i = first; i <= last; i++) {
      gl_page_t *page = &seg->pages[i];
      purge_queue_remove(heap, page);
      page->state = GL_PAGE_FREE_CLEAN;
      page->mem_is_zero = zero;
      mask &= ~((uint64_t)1 << i);
    }
  }
  seg->dirty_mask = 0;
}

static void purge_due_locked(gl_heap_t *heap, uint64_t now, bool force) {
  gl_page_t *page;
  while ((page = heap->purge.first) != NULL &&
         (force || page->purge_at <= now || heap->dirty_bytes > (size_t)gl_options.retain_bytes)) {
    gl_segment_t *seg = gl_segment_of(page);
    segment_purge_dirty(heap, seg);
    if (seg->used_pages == 0) segment_release(heap, seg);
  }
  __atomic_store_n(&heap->next_purge_ms, page ? page->purge_at : UINT64_MAX, __ATOMIC_RELAXED);
}

void segment_purge_due(gl_heap_t *heap, uint64_t now, bool force) {
  pthread_mutex_lock(&heap->lock);
  purge_due_locked(heap, now, force);
  pthread_mutex_unlock(&heap->lock);
}

/* For the purger thread: never waits for a heap's owner. */
bool segment_purge_try(gl_heap_t *heap, uint64_t now) {
  if (pthread_mutex_trylock(&heap->lock) != 0) return false;
  purge_due_locked(heap, now, false);
  pthread_mutex_unlock(&heap->lock);
  return true;
}

size_t segment_cache_dirty_bytes(void) { return __atomic_load_n(&cache_dirty_bytes, __ATOMIC_RELAXED); }

/* ---- Large segments: one block each, owned by no heap ---- */

/* Shrinks a cached segment to `keep` bytes; its tail, still resident, moves (mremap,
 * no copy) to an aligned address of its own and goes back to the cache as a dirty
 * segment, so the pages stay reusable instead of being unmapped. */
static gl_segment_t *segment_split(gl_segment_t *seg, size_t keep) {
  size_t old_size = seg->mapped_size, tail = old_size - keep;
  if (tail < ((size_t)1 << 20)) return segment_resize(seg, keep);
  void *target = segment_os_map(tail, GL_SEGMENT_SIZE, true);
  if (target == NULL) return segment_resize(seg, keep);
  if (!os_move((uint8_t *)seg + keep, tail, tail, target)) {
    os_unmap(target, tail);
    return segment_resize(seg, keep);
  }
  uint8_t value = gl_segmap_get((uintptr_t)seg);
  segment_map_set(seg, old_size, GL_SEGMAP_NONE);
  seg->mapped_size = keep;
  segment_map_set(seg, keep, value);
  gl_segment_t *rest = target;
  memset(rest, 0, sizeof(gl_segment_t));
  rest->kind = GL_KIND_LARGE;
  rest->page_shift = GL_SEGMENT_SHIFT;
  rest->mapped_size = tail;
  rest->large_offset = GL_LARGE_OFFSET;
  segment_map_set(rest, tail, GL_SEGMAP_LARGE);
  gl_counter_add(&gl_counters.segments, 1);
  segment_cache_put(rest, true);
  return seg;
}

/* Resizes a segment's mapping to new_size bytes with mremap: shrinks in place, grows
 * in place when the address space after it is free, else moves its pages onto a
 * fresh aligned reservation.  Contents are never copied.  Returns the segment's new
 * address, or NULL (the segment is left as it was). */
gl_segment_t *segment_resize(gl_segment_t *seg, size_t new_size) {
  size_t old_size = seg->mapped_size;
  uint8_t value = gl_segmap_get((uintptr_t)seg);
  if (new_size == old_size) return seg;
  if (new_size > old_size && !segment_map_reserve(seg, new_size)) return NULL;
  if (new_size > old_size && !os_resize_in_place(seg, old_size, new_size)) {
    void *target = segment_os_map(new_size, GL_SEGMENT_SIZE, true);
    if (target == NULL) return NULL;
    if (!os_move(seg, old_size, new_size, target)) {
      os_unmap(target, new_size);
      return NULL;
    }
    segment_map_set(seg, old_size, GL_SEGMAP_NONE);
    seg = target;
  } else if (new_size < old_size) {
    segment_map_set(seg, old_size, GL_SEGMAP_NONE);
    if (!os_resize_in_place(seg, old_size, new_size)) os_unmap((uint8_t *)seg + new_size, old_size - new_size);
  }
  seg->mapped_size = new_size;
  segment_map_set(seg, new_size, value);
  if (new_size > old_size) counters_mapped(new_size - old_size);
  else gl_counter_sub(&gl_counters.mapped, old_size - new_size);
  return seg;
}


/* A large segment for a block of `size` bytes aligned to `alignment` (a power of
 * two <= GL_MAX_ALIGN).  The block starts at large_offset: one OS page in, or at
 * min(alignment, GL_SEGMENT_SIZE) for bigger alignments.  A zero-byte block still
 * gets one byte, so its address lies inside the mapping. */
gl_segment_t *segment_large_alloc(size_t size, size_t alignment, bool *is_zero) {
  size_t page = os_page_size();
  size_t offset = GL_LARGE_OFFSET;
  if (alignment > offset) offset = alignment < GL_SEGMENT_SIZE ? alignment : GL_SEGMENT_SIZE;
  if (alignment > GL_MAX_ALIGN || size > GL_MAX_ALLOC - GL_MAX_ALIGN - 2 * GL_SEGMENT_SIZE) return NULL;
  if (size == 0) size = 1;
  size_t needed = gl_align_up(offset + size, page);
  gl_segment_t *seg = NULL;
  *is_zero = false;
  if (offset == GL_LARGE_OFFSET) {
    seg = cache_take(needed, false, true, is_zero);
    /* Resized when it does not fit: grown, or shrunk so a small block does not pin
     * a big resident mapping. */
    if (seg != NULL && (seg->mapped_size < needed || seg->mapped_size / 2 > needed)) {
      gl_segment_t *resized = seg->mapped_size > needed ? segment_split(seg, needed) : segment_resize(seg, needed);
      if (resized == NULL) segment_unmap(seg);
      seg = resized;
      *is_zero = false;
    }
  }
  if (seg == NULL) {
    if (alignment <= GL_SEGMENT_SIZE) {
      seg = segment_os_map(needed, GL_SEGMENT_SIZE, false);
      if (seg == NULL) return NULL;
    } else {
      /* The block must sit at an `alignment` boundary with the header one segment
       * below it: reserve alignment + needed bytes aligned to `alignment`, drop the
       * part before the header, and commit the rest. */
      size_t span = alignment - GL_SEGMENT_SIZE + needed;
      uint8_t *base = segment_os_map(span, alignment, true);
      if (base == NULL) return NULL;
      uint8_t *header = base + alignment - GL_SEGMENT_SIZE;
      os_unmap(base, (size_t)(header - base));
      if (!os_commit(header, needed)) {
        os_unmap(header, needed);
        return NULL;
      }
      seg = (gl_segment_t *)header;
    }
    *is_zero = true;
    seg->mapped_size = needed;
    counters_mapped(needed);
    gl_counter_add(&gl_counters.segments, 1);
  }
  size_t mapped = seg->mapped_size;
  memset(seg, 0, sizeof(gl_segment_t));
  seg->kind = GL_KIND_LARGE;
  seg->page_shift = GL_SEGMENT_SHIFT;
  seg->mapped_size = mapped;
  seg->large_offset = offset;
  seg->large_usable = mapped - offset;
  seg->large_alignment = alignment;
  seg->large_is_zero = *is_zero;
  segment_map_set(seg, mapped, GL_SEGMAP_LARGE);
  return seg;
}

void segment_large_free(gl_segment_t *seg) {
  if (seg->large_offset != GL_LARGE_OFFSET) {
    segment_unmap(seg);  /* over-aligned: its shape is not reusable */
    return;
  }
  segment_cache_put(seg, true);
  segment_cache_collect(os_clock_ms(), false);
  purge_notify(segment_cache_dirty_bytes());
}

void segment_cache_stats(size_t *count, size_t *bytes, size_t *dirty_bytes) {
  pthread_mutex_lock(&cache_lock);
  size_t total = 0;
  for (gl_segment_t *s = cache_first; s; s = s->next) total += s->mapped_size;
  *count = cache_count;
  *bytes = total;
  *dirty_bytes = cache_dirty_bytes;
  pthread_mutex_unlock(&cache_lock);
}
