/* segment.c: aligned regions, page descriptors, the segment map, the segment cache.
 *
 * Lock order: (heap registry, heap.c) -> set->lock -> cache_lock.
 * set->lock guards a heap's segment lists, the page masks of its segments and its
 * purge queue; callers of the page functions hold it.  cache_lock guards the
 * segment cache (freed segments kept for reuse) and is taken only here.
 *
 * Invariants (segment_is_valid checks them in debug builds):
 *  - A small or medium segment is exactly GL_SEGMENT_SIZE bytes and belongs to one
 *    heap's set; only that heap's owner (or the purger, under set->lock) changes it.
 *  - free_mask has a bit for every unused page; dirty_mask is the subset still
 *    resident; used_pages counts the rest.
 *  - The segment map says SMALL/MEDIUM/LARGE for the first unit of every mapped
 *    segment (cached ones too) and TAIL for later units.
 *  - Secure build: only a medium segment in a set has page guards (page_guards);
 *    a cached one has none, and no page's blocks reach into its guard
 *    (segment_page_area; page_is_valid checks the blocks).
 */
#define _GNU_SOURCE /* GL_SPIN_MUTEX_INITIALIZER (os.h) */
#include <string.h>

#include "check.h"
#include "options.h"
#include "segment.h"

/* ---- The segment map ---- */

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

/* Maps the chunks of the segment map that cover [addr, addr + size); false when the
 * OS has no memory for one.  Chunks are installed with a CAS and never removed, so
 * no lock is needed and a fork() at any point leaves a usable map. */
static bool segment_map_reserve(const void *addr, size_t size) {
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
static void segment_map_set(gl_segment_t *seg, size_t mapped_size, uint8_t value) {
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

gl_segment_t *segment_find(const void *p) {
  uintptr_t unit = (uintptr_t)p >> GL_SEGMENT_SHIFT;
  if (unit >= GL_SEGMAP_UNITS) return NULL;
  for (;;) {
    uint8_t v = segment_map_get(unit << GL_SEGMENT_SHIFT);
    if ((v & GL_SEGMAP_PAGES_BIT) || v == GL_SEGMAP_LARGE) return (gl_segment_t *)(unit << GL_SEGMENT_SHIFT);
    if (v != GL_SEGMAP_TAIL || unit == 0) return NULL;
    unit--;
  }
}

/* ---- Mapping and unmapping ---- */

static bool cache_unmap_all(void);

/* Fresh address space for a segment (read-write, or reserved only), with the
 * segment-map chunks that will describe it already in place.  When the kernel
 * refuses (an address-space limit, strict overcommit), the cached segments are
 * unmapped and it is asked once more. */
static void *segment_os_map(size_t size, size_t alignment, bool reserve_only) {
  void *p = reserve_only ? os_reserve_aligned(size, alignment) : os_map_aligned(size, alignment);
  if (p == NULL && cache_unmap_all())
    p = reserve_only ? os_reserve_aligned(size, alignment) : os_map_aligned(size, alignment);
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

static void segment_unmap_range(gl_segment_t *seg, size_t size) {
  segment_map_set(seg, size, GL_SEGMAP_NONE);
  gl_counter_sub(&gl_counters.mapped, size);
  gl_counter_sub(&gl_counters.segments, 1);
  os_unmap(seg, size);
}

static void segment_unmap(gl_segment_t *seg) { segment_unmap_range(seg, seg->mapped_size); }

/* segment_page_of's mask for pages of 1 << shift bytes: the slot offsets (index
 * << 7) of the pages' first slots. */
static uint32_t segment_slot_offset_mask(unsigned shift) {
  unsigned stride = 1u << (shift - GL_PAGE_SLOT_SHIFT); /* slots per page */
  return (uint32_t)(GL_PAGE_SLOTS - stride) << 7;
}

/* The header with its GL_PAGE_SLOTS descriptor slots, rounded to
 * GL_PAGE_START_ALIGN so every page start is aligned to it (aligned.c relies on
 * that); the part of the first page that rounding skips is never touched. */
static size_t segment_header_size(void) {
  return gl_align_up(sizeof(gl_segment_t) + GL_PAGE_SLOTS * sizeof(gl_page_t), GL_PAGE_START_ALIGN);
}

/* ---- The segment cache ----
 * Freed segments wait here for reuse, so that a program that frees and allocates
 * segments does not pay an munmap and an mmap (each takes the address-space lock
 * for writing) for every one.  Two kinds of entries:
 *  - resident (CACHED_DIRTY): on cache_dirty, most recently cached first.  At
 *    most segment_cache of them, or more while the cache serves as many large
 *    blocks (cache_capacity_victim): one too many purges the oldest (it stays
 *    cached, purged);
 *    purge.c's rules purge them earlier (segment_cache_purge), or only the part of
 *    one beyond what they keep: its head, after the header page (purged_head),
 *    while its tail, where a growing block takes pages from (segment_grow), stays.
 *  - purged (CACHED_ZERO, CACHED_LAZY): the whole mapping, header included, was
 *    purged, so it costs address space and no memory; reusing it costs no mmap.
 *    At most cache_purged_limit bytes of them (purge.c sets it from the recent demand):
 *    beyond it the oldest are unmapped.  The segment map says NONE for them (their
 *    header reads as zero): a stale pointer into one is not Galleon's.
 * Each kind is also on one list per size bucket (four a power of two; a segment
 * of exactly GL_SEGMENT_SIZE, the size of every segment for pages, alone in its
 * bucket), so a lookup reads a few entries, not the cache: with one list of
 * resident entries, a thread taking large blocks that another frees scanned it
 * under the lock on every block (bench/probes handoff: 0.044 -> 0.040 s).
 * What the cache knows of an entry is in a node of its own (cache_node_t, from
 * pages of metadata), not in the segment's header, which a purge clears.
 * cache_age lists every entry, most recently cached first: unmapping by age reads
 * only what it unmaps.  A segment being purged is in no list (the lock is not held
 * over the madvise) and still counts as cached.  Resident segments under
 * GL_SEGMENT_SIZE pass through a small lock-free front first ("The front", below). */

typedef struct cache_node_s {
  gl_link_t link;   /* cache_dirty (resident), a detached list, or the free nodes */
  gl_link_t bucket; /* its size bucket: cache_resident[] or cache_purged[] */
  gl_link_t age;  /* cache_age */
  gl_segment_t *seg;
  size_t size;
  size_t purged_head;  /* resident entries: bytes purged after the header page */
  size_t purge_more;   /* in transit: purge this much more of the head, stay resident */
  uint64_t cached_at;
  uint8_t state; /* gl_segment_state_t */
} cache_node_t;

#define CACHE_BUCKETS 192
#define CACHE_SCAN 16 /* entries of one bucket looked at for a fit */
#define CACHE_NODE_CHUNK ((size_t)64 << 10)

static pthread_mutex_t cache_lock = GL_SPIN_MUTEX_INITIALIZER;
static gl_list_t cache_age;   /* every entry, most recently cached first */
static gl_list_t cache_dirty; /* resident entries, most recently cached first */
/* Entries by size bucket, most recent first, resident and purged apart; a bit for
 * each bucket that has some. */
static gl_list_t cache_resident[CACHE_BUCKETS], cache_purged[CACHE_BUCKETS];
static uint64_t cache_resident_nonempty[CACHE_BUCKETS / 64], cache_purged_nonempty[CACHE_BUCKETS / 64];
static gl_list_t cache_free_nodes;
static size_t cache_dirty_count;
static size_t cache_total_bytes;    /* read without the lock */
static size_t cache_resident_bytes; /* of those, resident ones in a list: read without the lock */
static size_t cache_purged_bytes;   /* of those, purged ones: read without the lock */
static size_t cache_transit_bytes, cache_transit_count; /* of those, being purged */
static size_t cache_purged_limit = SEGMENT_CACHE_PURGED_MIN; /* read without the lock */
static _Atomic(uint64_t) cache_activity;

/* Large blocks the cache served, in the current window of CACHE_SERVED_MS and the
 * one before (lock held): the capacity rule (cache_put). */
#define CACHE_SERVED_MS 10
static uint64_t cache_served_window;
static size_t cache_served_now, cache_served_before;

static void cache_served_advance(uint64_t now) {
  uint64_t window = now / CACHE_SERVED_MS;
  if (window == cache_served_window) return;
  cache_served_before = window == cache_served_window + 1 ? cache_served_now : 0;
  cache_served_now = 0;
  cache_served_window = window;
}

static cache_node_t *cache_node(gl_link_t *link) { return link ? gl_container_of(link, cache_node_t, link) : NULL; }
static cache_node_t *cache_aged(gl_link_t *link) { return link ? gl_container_of(link, cache_node_t, age) : NULL; }
static cache_node_t *cache_bucketed(gl_link_t *link) {
  return link ? gl_container_of(link, cache_node_t, bucket) : NULL;
}

static void cache_bytes_add(size_t *counter, size_t delta, bool add) {
  __atomic_store_n(counter, add ? *counter + delta : *counter - delta, __ATOMIC_RELAXED);
}

/* Bucket of a mapping size: four a power of two, monotonic in the size. */
static unsigned cache_bucket(size_t size) {
  if (size < 4096) return 0;
  unsigned lg = 63u - (unsigned)__builtin_clzll(size);
  unsigned b = (lg - 12) * 4 + (unsigned)((size >> (lg - 2)) & 3) + (size > GL_SEGMENT_SIZE ? 1 : 0);
  return b < CACHE_BUCKETS ? b : CACHE_BUCKETS - 1;
}

/* A node for a new entry (lock held); NULL when no metadata memory can be had. */
static cache_node_t *cache_node_new(void) {
  if (cache_free_nodes.first == NULL) {
    cache_node_t *chunk = os_map(CACHE_NODE_CHUNK);
    if (chunk == NULL) return NULL;
    for (size_t i = 0; i < CACHE_NODE_CHUNK / sizeof(cache_node_t); i++)
      gl_list_push_back(&cache_free_nodes, &chunk[i].link);
  }
  cache_node_t *node = cache_node(cache_free_nodes.first);
  gl_list_remove(&cache_free_nodes, &node->link);
  return node;
}

/* The bytes of an entry that count as resident (a resident entry whose head was
 * purged counts its tail). */
static size_t node_resident(const cache_node_t *node) { return node->size - node->purged_head; }

/* Puts an entry on its state's lists and at the young end of cache_age (lock held).
 * cache_age, and cache_dirty with it, stay in cached_at order, so the rules that
 * look for entries old enough stop at the first that is not: a time read before
 * the lock may be older than the youngest entry's, and is raised to it. */
static void cache_insert(cache_node_t *node) {
  cache_node_t *youngest = cache_aged(cache_age.first);
  if (youngest != NULL && youngest->cached_at > node->cached_at) node->cached_at = youngest->cached_at;
  bool resident = node->state == GL_SEGMENT_CACHED_DIRTY;
  unsigned b = cache_bucket(node->size);
  gl_list_push_front(resident ? &cache_resident[b] : &cache_purged[b], &node->bucket);
  (resident ? cache_resident_nonempty : cache_purged_nonempty)[b / 64] |= (uint64_t)1 << (b % 64);
  if (resident) {
    gl_list_push_front(&cache_dirty, &node->link);
    cache_dirty_count++;
    cache_bytes_add(&cache_resident_bytes, node_resident(node), true);
  } else {
    cache_bytes_add(&cache_purged_bytes, node->size, true);
  }
  gl_list_push_front(&cache_age, &node->age);
}

/* The cache's invariants (lock held; debug builds, gl_validate): cache_age holds
 * every listed entry and cache_dirty the resident ones, both in cached_at order,
 * youngest first (segment_cache_purge and segment_cache_unmap stop at the first
 * entry too young); each entry is on the bucket list of its size and state, and a
 * bucket's bit says whether that list has any; the counts and byte totals match. */
static bool cache_is_valid(void) {
  size_t dirty = 0, resident = 0, purged = 0, listed = 0;
  uint64_t newer = UINT64_MAX;
  for (cache_node_t *n = cache_aged(cache_age.first); n; n = cache_aged(n->age.next)) {
    if (n->cached_at > newer) return false;
    newer = n->cached_at;
    listed++;
    if (n->state == GL_SEGMENT_CACHED_DIRTY) {
      dirty++;
      resident += node_resident(n);
    } else {
      purged += n->size;
    }
  }
  newer = UINT64_MAX;
  size_t on_dirty = 0;
  for (cache_node_t *n = cache_node(cache_dirty.first); n; n = cache_node(n->link.next), on_dirty++) {
    if (n->state != GL_SEGMENT_CACHED_DIRTY || n->cached_at > newer) return false;
    newer = n->cached_at;
  }
  if (on_dirty != dirty || dirty != cache_dirty_count || resident != cache_resident_bytes ||
      purged != cache_purged_bytes)
    return false;
  size_t bucketed = 0;
  for (unsigned b = 0; b < CACHE_BUCKETS; b++) {
    for (int kind = 0; kind < 2; kind++) {
      const gl_list_t *list = kind ? &cache_resident[b] : &cache_purged[b];
      const uint64_t *bits = kind ? cache_resident_nonempty : cache_purged_nonempty;
      if ((list->first != NULL) != (((bits[b / 64] >> (b % 64)) & 1) != 0)) return false;
      for (cache_node_t *n = cache_bucketed(list->first); n; n = cache_bucketed(n->bucket.next), bucketed++)
        if (cache_bucket(n->size) != b || (n->state == GL_SEGMENT_CACHED_DIRTY) != (kind == 1)) return false;
    }
  }
  return bucketed == listed;
}

/* Takes an entry off its state's lists and cache_age (lock held). */
static void cache_remove(cache_node_t *node) {
  bool resident = node->state == GL_SEGMENT_CACHED_DIRTY;
  unsigned b = cache_bucket(node->size);
  gl_list_t *list = resident ? &cache_resident[b] : &cache_purged[b];
  gl_list_remove(list, &node->bucket);
  if (list->first == NULL) (resident ? cache_resident_nonempty : cache_purged_nonempty)[b / 64] &= ~((uint64_t)1 << (b % 64));
  if (resident) {
    gl_list_remove(&cache_dirty, &node->link);
    cache_dirty_count--;
    cache_bytes_add(&cache_resident_bytes, node_resident(node), false);
  } else {
    cache_bytes_add(&cache_purged_bytes, node->size, false);
  }
  gl_list_remove(&cache_age, &node->age);
}

/* Takes an entry out of the cache for good (lock held): its segment, with the
 * size and state it was cached with in *size and *state. */
/* `count` entries of `bytes` in all have left the cache (lock held). */
static void cache_forget(size_t count, size_t bytes) {
  cache_bytes_add(&cache_total_bytes, bytes, false);
  gl_counter_sub(&gl_counters.segments_cached, count);
  atomic_fetch_add_explicit(&cache_activity, count, memory_order_relaxed);
}

static gl_segment_t *cache_unlink(cache_node_t *node, size_t *size, uint8_t *state) {
  gl_segment_t *seg = node->seg;
  cache_remove(node);
  cache_forget(1, node->size);
  *size = node->size;
  *state = node->state;
  gl_list_push_front(&cache_free_nodes, &node->link);
  return seg;
}

/* A segment taken from the cache, live again (no lock held): a purged one gets its
 * header fields and its place in the segment map back. */
static gl_segment_t *cache_revive(gl_segment_t *seg, size_t size, uint8_t state) {
  if (state != GL_SEGMENT_CACHED_DIRTY) {
    seg->mapped_size = size;
    segment_map_set(seg, size, GL_SEGMAP_LARGE); /* what the caller makes of it decides */
  }
  __atomic_store_n(&seg->cache_state, GL_SEGMENT_LIVE, __ATOMIC_RELAXED);
  return seg;
}

/* Moves the oldest purged entries beyond cache_purged_limit to `doomed` (lock held). */
static void cache_over_limit(gl_list_t *doomed) {
  size_t limit = __atomic_load_n(&cache_purged_limit, __ATOMIC_RELAXED);
  for (cache_node_t *n = cache_aged(cache_age.last), *prev; n && cache_purged_bytes > limit; n = prev) {
    prev = cache_aged(n->age.prev);
    if (n->state == GL_SEGMENT_CACHED_DIRTY) continue; /* at most segment_cache of them */
    cache_remove(n);
    gl_list_push_back(doomed, &n->link);
  }
}

/* Unmaps the segments of nodes taken out of the cache (no lock held), then frees
 * the nodes. */
static void cache_unmap_nodes(gl_list_t *doomed) {
  if (doomed->first == NULL) return;
  size_t count = 0, bytes = 0;
  for (cache_node_t *n = cache_node(doomed->first); n; n = cache_node(n->link.next)) {
    segment_unmap_range(n->seg, n->size);
    count++;
    bytes += n->size;
  }
  pthread_mutex_lock(&cache_lock);
  cache_forget(count, bytes);
  while (doomed->first != NULL) {
    gl_link_t *l = doomed->first;
    gl_list_remove(doomed, l);
    gl_list_push_front(&cache_free_nodes, l);
  }
  pthread_mutex_unlock(&cache_lock);
}

/* Takes a resident entry off its lists to be purged without the lock (lock held). */
/* An entry in no list, to be purged without the lock: still counted as cached
 * (lock held). */
static void cache_to_transit(cache_node_t *node, gl_list_t *detached) {
  cache_transit_bytes += node->size;
  cache_transit_count++;
  gl_list_push_back(detached, &node->link);
}

static void cache_detach(cache_node_t *node, gl_list_t *detached) {
  cache_remove(node);
  cache_to_transit(node, detached);
}

/* Purges the segments of detached entries, whole (no lock held), and puts them
 * back as purged entries; unmaps what goes over the limit. */
static void cache_purge_detached(gl_list_t *detached, bool decommit) {
  if (detached->first == NULL) return;
  size_t page = os_page_size();
  for (cache_node_t *n = cache_node(detached->first); n; n = cache_node(n->link.next)) {
    if (n->purge_more != 0) { /* part of its head: it stays resident, and mapped */
      os_purge((uint8_t *)n->seg + page + n->purged_head, n->purge_more, decommit);
      continue;
    }
    /* The map forgets it first: nothing reads its header once it is purged.  A
     * resident one is purged whole, one purged but its header by that page. */
    segment_map_set(n->seg, n->size, GL_SEGMAP_NONE);
    bool resident = n->state == GL_SEGMENT_CACHED_DIRTY;
    bool zero = os_purge(n->seg, resident ? n->size : os_page_size(), decommit);
    n->state = zero && n->state != GL_SEGMENT_CACHED_LAZY ? GL_SEGMENT_CACHED_ZERO : GL_SEGMENT_CACHED_LAZY;
  }
  uint64_t now = os_clock_ms();
  gl_list_t doomed = {NULL, NULL};
  pthread_mutex_lock(&cache_lock);
  while (detached->first != NULL) {
    cache_node_t *n = cache_node(detached->first);
    gl_list_remove(detached, &n->link);
    cache_transit_bytes -= n->size;
    cache_transit_count--;
    n->cached_at = now; /* the unmap delay counts from here */
    n->purged_head += n->purge_more;
    n->purge_more = 0;
    cache_insert(n);
  }
  cache_over_limit(&doomed);
  gl_validate(cache_is_valid());
  pthread_mutex_unlock(&cache_lock);
  cache_unmap_nodes(&doomed);
}

/* Whether pages of a cached entry may be moved with mremap: where the kernel does
 * not move a range of several mappings (before Linux 6.17: it refuses, after
 * unmapping the destination), only from a segment that is one mapping. */
static bool node_movable(const cache_node_t *node, bool moves_several) {
  return moves_several || node->seg->large_moved_in == 0;
}

typedef enum { FIT_ANY, FIT_MOVABLE, FIT_MOVABLE_SEVERAL } cache_fit_t;

/* An entry of `lists` (cache_resident or cache_purged) of a size in [least, most]:
 * the most recently cached one that fits in the lowest bucket that has one, looking
 * at up to CACHE_SCAN entries of each bucket from least's up (lock held); NULL if
 * none.  FIT_MOVABLE: one whose pages may be moved.  The first fit, not the best
 * of the bucket: a bucket's sizes are within a quarter of each other, and every
 * entry looked at is a cache miss under the lock the freeing threads wait for (a
 * thread handing blocks of 64 KiB - 1 MiB to another: 0.33 -> 0.27 s, and fewer
 * faults, since the youngest entry's pages are the likeliest to be resident). */
static cache_node_t *cache_fit(gl_list_t *lists, const uint64_t *nonempty, size_t least, size_t most,
                               cache_fit_t which) {
  unsigned last = cache_bucket(most);
  for (unsigned b = cache_bucket(least); b <= last; b++) {
    uint64_t word = nonempty[b / 64] >> (b % 64);
    if (word == 0) {
      b |= 63u; /* the next word */
      continue;
    }
    b += (unsigned)__builtin_ctzll(word);
    if (b > last) break;
    unsigned seen = 0;
    for (cache_node_t *n = cache_bucketed(lists[b].first); n && seen < CACHE_SCAN;
         n = cache_bucketed(n->bucket.next), seen++) {
      if (which != FIT_ANY && !node_movable(n, which == FIT_MOVABLE_SEVERAL)) continue;
      if (n->size >= least && n->size <= most) return n;
    }
  }
  return NULL;
}

/* Takes a cached segment of exactly `size` bytes (a segment for pages), or NULL. */
static gl_segment_t *cache_take_exact(size_t size, bool *is_zero) {
  pthread_mutex_lock(&cache_lock);
  cache_node_t *best = cache_fit(cache_resident, cache_resident_nonempty, size, size, FIT_ANY);
  if (best == NULL) best = cache_fit(cache_purged, cache_purged_nonempty, size, size, FIT_ANY);
  gl_segment_t *seg = NULL;
  size_t mapped = 0;
  uint8_t state = 0;
  if (best) seg = cache_unlink(best, &mapped, &state);
  gl_validate(cache_is_valid());
  pthread_mutex_unlock(&cache_lock);
  if (seg == NULL) return NULL;
  *is_zero = state == GL_SEGMENT_CACHED_ZERO;
  return cache_revive(seg, mapped, state);
}

#define CACHE_PIECES 8

/* Whether more than one thread heap lives: large blocks then take cached segments
 * as they are (segment_large_alloc), pass through the front (below) and grow by
 * moving fewer cached pages (segment_grow), since every remap interrupts the CPUs
 * running the other threads. */
static bool several_thread_heaps(void) { return gl_counter_get(&gl_counters.heaps) > 1; }

/* ---- The front: segments under GL_SEGMENT_SIZE freed and taken without the lock ----
 * A thread handing large blocks to another took the cache's lock twice a block,
 * once each side, and the two threads spent their time waiting for each other
 * (probes handoff).  A resident segment smaller than a segment for pages goes to
 * one of CACHE_FRONT_SLOTS slots instead when one is empty, and a large block takes
 * one that fits from there first: one compare-and-swap each.  A slot holds the
 * segment's address with its size in 4 KiB units in the low bits (segments start
 * at a GL_SEGMENT_SIZE boundary), so a taker reads the size without touching the
 * header of a segment it does not own, and the swap that empties the slot hands
 * the segment over.  Entries stay there about a millisecond at most:
 * segment_cache_front_drain, which purge.c's rules call once a millisecond and
 * before anything that purges all, moves them into the cache's lists, where the
 * rules see them.  They count as cached and resident meanwhile. */
#define CACHE_FRONT_SLOTS 8
#define CACHE_FRONT_SIZE_MASK ((uintptr_t)GL_SEGMENT_SIZE - 1)
static _Atomic(uintptr_t) cache_front[CACHE_FRONT_SLOTS];
static _Atomic(size_t) cache_front_bytes;
static _Atomic(size_t) cache_front_served; /* taken since a put folded them into cache_served_now */

static size_t front_size(uintptr_t v) { return (size_t)(v & CACHE_FRONT_SIZE_MASK) << 12; }

/* Whether seg went to the front (else the caller gives it to the cache). */
static bool cache_front_put(gl_segment_t *seg) {
  size_t size = seg->mapped_size;
  if (size >= GL_SEGMENT_SIZE || __atomic_load_n(&gl_options.segment_cache, __ATOMIC_RELAXED) <= 0) return false;
  gl_assert(((uintptr_t)seg & CACHE_FRONT_SIZE_MASK) == 0 && size % 4096 == 0);
  uintptr_t v = (uintptr_t)seg | (uintptr_t)(size >> 12);
  __atomic_store_n(&seg->cache_state, GL_SEGMENT_CACHED_DIRTY, __ATOMIC_RELAXED);
  /* Counted before the swap publishes it: a taker's decrement may follow at once. */
  atomic_fetch_add_explicit(&cache_front_bytes, size, memory_order_relaxed);
  gl_counter_add(&gl_counters.segments_cached, 1);
  for (unsigned i = 0; i < CACHE_FRONT_SLOTS; i++) {
    uintptr_t empty = 0;
    if (atomic_load_explicit(&cache_front[i], memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong_explicit(&cache_front[i], &empty, v, memory_order_release,
                                                memory_order_relaxed)) {
      atomic_fetch_add_explicit(&cache_activity, 1, memory_order_relaxed);
      return true;
    }
  }
  atomic_fetch_sub_explicit(&cache_front_bytes, size, memory_order_relaxed);
  gl_counter_sub(&gl_counters.segments_cached, 1);
  return false;
}

/* Takes the segment of slot i if it still holds v (owned by the caller then, live
 * again), else NULL. */
static gl_segment_t *cache_front_claim(unsigned i, uintptr_t v) {
  if (!atomic_compare_exchange_strong_explicit(&cache_front[i], &v, 0, memory_order_acquire, memory_order_relaxed))
    return NULL;
  gl_segment_t *seg = (gl_segment_t *)(v & ~CACHE_FRONT_SIZE_MASK);
  atomic_fetch_sub_explicit(&cache_front_bytes, front_size(v), memory_order_relaxed);
  gl_counter_sub(&gl_counters.segments_cached, 1);
  atomic_fetch_add_explicit(&cache_activity, 1, memory_order_relaxed);
  __atomic_store_n(&seg->cache_state, GL_SEGMENT_LIVE, __ATOMIC_RELAXED);
  return seg;
}

/* The smallest segment of the front of a size in [least, most], live again, or
 * NULL (the slots share a cache line: reading them all costs one miss). */
static gl_segment_t *cache_front_take(size_t least, size_t most) {
  for (int tries = 0; tries < 2; tries++) {
    unsigned best = CACHE_FRONT_SLOTS;
    uintptr_t best_v = 0;
    for (unsigned i = 0; i < CACHE_FRONT_SLOTS; i++) {
      uintptr_t v = atomic_load_explicit(&cache_front[i], memory_order_relaxed);
      if (v != 0 && front_size(v) >= least && front_size(v) <= most &&
          (best_v == 0 || front_size(v) < front_size(best_v))) {
        best = i;
        best_v = v;
      }
    }
    if (best == CACHE_FRONT_SLOTS) return NULL;
    gl_segment_t *seg = cache_front_claim(best, best_v);
    if (seg != NULL) {
      atomic_fetch_add_explicit(&cache_front_served, 1, memory_order_relaxed);
      return seg;
    }
  }
  return NULL;
}

static void cache_put(gl_segment_t *seg, bool dirty);

void segment_cache_front_drain(void) {
  for (unsigned i = 0; i < CACHE_FRONT_SLOTS; i++) {
    uintptr_t v = atomic_load_explicit(&cache_front[i], memory_order_relaxed);
    gl_segment_t *seg = v != 0 ? cache_front_claim(i, v) : NULL;
    if (seg != NULL) cache_put(seg, true);
  }
}

/* Cached memory for a large block of `size` bytes, resident memory first, since a
 * page that is already resident costs no fault:
 *   1. a resident segment that fits (at most half again as big);
 *   2. a resident segment that is bigger, the lowest size bucket's (the caller
 *      splits it);
 *   3. resident segments, largest first, that together come closest to `size` (up
 *      to CACHE_PIECES; the caller moves their pages together with mremap);
 *   4. a purged segment that fits.
 * Returns how many segments it took into pieces[] (0: none).
 *   CACHE_TAKE_FIT: 1. or 4. only, and "fits" means at most twice as big: the
 *   segment is taken as it is (no split, no assembly).  A purged one saves the
 *   mmap a miss would cost and the munmap of the entries a fresh mapping pushes
 *   over the cache's limit (each a TLB shootdown of every CPU the process runs on);
 *   CACHE_TAKE_RESIDENT: 1. to 3. only (a purged segment saves no fault).
 * Pages moved with mremap come from segments whose pages may be moved
 * (node_movable): 3., and every segment in CACHE_TAKE_RESIDENT.  A lookup reads a
 * few entries of a few size buckets, not the cache. */
typedef enum { CACHE_TAKE_ANY, CACHE_TAKE_FIT, CACHE_TAKE_RESIDENT } cache_take_t;

/* 3.: resident entries, from the largest bucket down, until they cover `size` or
 * there are CACHE_PIECES of them (lock held).  Returns how many went into taken[]. */
static unsigned cache_take_pieces(size_t size, cache_node_t **taken, bool moves_several) {
  unsigned count = 0;
  size_t got = 0;
  for (unsigned b = CACHE_BUCKETS; b-- > 0 && got < size && count < CACHE_PIECES;) {
    if (((cache_resident_nonempty[b / 64] >> (b % 64)) & 1) == 0) continue;
    for (cache_node_t *n = cache_bucketed(cache_resident[b].first); n && got < size && count < CACHE_PIECES;
         n = cache_bucketed(n->bucket.next)) {
      if (!node_movable(n, moves_several)) continue;
      taken[count++] = n;
      got += n->size;
    }
  }
  return count;
}

static unsigned cache_take_large(size_t size, gl_segment_t **pieces, bool *is_zero, cache_take_t mode) {
  bool fit_only = mode == CACHE_TAKE_FIT;
  bool several = !fit_only && os_moves_several_mappings(); /* (its first call maps: before the lock) */
  cache_fit_t which = mode != CACHE_TAKE_RESIDENT ? FIT_ANY : several ? FIT_MOVABLE_SEVERAL : FIT_MOVABLE;
  cache_node_t *taken[CACHE_PIECES];
  size_t most = size + size / 2 + ((size_t)1 << 20);
  if (fit_only && most > 2 * size) most = 2 * size; /* taken as it is: not shrunk (segment_large_alloc) */
  unsigned count = 0;
  *is_zero = false;
  if (mode != CACHE_TAKE_RESIDENT && size < GL_SEGMENT_SIZE) {
    gl_segment_t *front = cache_front_take(size, most);
    if (front != NULL) {
      pieces[0] = front;
      return 1;
    }
  }
  pthread_mutex_lock(&cache_lock);
  cache_node_t *one = cache_fit(cache_resident, cache_resident_nonempty, size, most, which);
  if (one == NULL && !fit_only) one = cache_fit(cache_resident, cache_resident_nonempty, size, SIZE_MAX, which);
  if (one != NULL) {
    taken[count++] = one;
  } else if (cache_resident_bytes > 0 && !fit_only) {
    count = cache_take_pieces(size, taken, several);
  } else if (mode != CACHE_TAKE_RESIDENT) {
    cache_node_t *purged = cache_fit(cache_purged, cache_purged_nonempty, size, most, FIT_ANY);
    if (purged != NULL) taken[count++] = purged;
  }
  if (count > 0) cache_served_now++; /* (in the window of the last put: cache_put moves it on) */
  size_t sizes[CACHE_PIECES];
  uint8_t states[CACHE_PIECES];
  for (unsigned i = 0; i < count; i++) pieces[i] = cache_unlink(taken[i], &sizes[i], &states[i]);
  gl_validate(cache_is_valid());
  pthread_mutex_unlock(&cache_lock);
  for (unsigned i = 0; i < count; i++) cache_revive(pieces[i], sizes[i], states[i]);
  if (count == 1) *is_zero = states[0] == GL_SEGMENT_CACHED_ZERO;
  return count;
}

/* The resident entry that one too many makes cache_put purge (lock held), or
 * NULL: the oldest, beyond `capacity` entries and as many more as the cache served
 * large blocks lately, or beyond `capacity` entries that hold more than `capacity`
 * segments for pages.  A thread handing blocks of 64 KiB - 1 MiB to another cycles
 * through more than 32 segments, and purging the oldest at 32 made it refault
 * them after an madvise that interrupts every CPU running the process (probe
 * handoff 200000: 4x the faults).  A program that frees many blocks it did not
 * take from the cache keeps `capacity` (bench fragment frees 900 at once).
 * Segments for pages, and bigger ones, meet the bytes bound at `capacity`: for
 * them the rule is the count. */
static cache_node_t *cache_capacity_victim(size_t capacity) {
  bool too_many = cache_dirty_count > capacity &&
                  (cache_dirty_count > capacity + cache_served_now + cache_served_before ||
                   cache_resident_bytes > capacity * GL_SEGMENT_SIZE);
  return too_many ? cache_node(cache_dirty.last) : NULL;
}

/* Gives a segment that holds no block to the cache (or back to the OS when the
 * cache is off, or has no memory for the node).  `dirty`: its memory is resident;
 * else all but its first OS page reads as zero (purged). */
static void cache_put(gl_segment_t *seg, bool dirty) {
#if GL_SECURE
  gl_assert(seg->page_guards == 0); /* lifted: a cached segment may become anything */
#endif
  uint64_t now = os_clock_ms();
  gl_list_t detached = {NULL, NULL};
  cache_node_t *node = NULL;
  pthread_mutex_lock(&cache_lock);
  long capacity = __atomic_load_n(&gl_options.segment_cache, __ATOMIC_RELAXED);
  if (capacity > 0) node = cache_node_new();
  if (node != NULL) {
    node->seg = seg;
    node->size = seg->mapped_size;
    node->purged_head = node->purge_more = 0;
    node->cached_at = now;
    /* Resident or not, the segment is kept whole: its first page (the header) is
     * resident until it is purged with the rest (below or by purge.c's rules). */
    node->state = GL_SEGMENT_CACHED_DIRTY;
    __atomic_store_n(&seg->cache_state, GL_SEGMENT_CACHED_DIRTY, __ATOMIC_RELAXED);
    cache_bytes_add(&cache_total_bytes, node->size, true);
    gl_counter_add(&gl_counters.segments_cached, 1);
    atomic_fetch_add_explicit(&cache_activity, 1, memory_order_relaxed);
    cache_served_advance(now);
    cache_served_now += atomic_exchange_explicit(&cache_front_served, 0, memory_order_relaxed);
    if (dirty) {
      cache_insert(node);
      /* One resident segment too many: purged, not unmapped. */
      for (cache_node_t *victim; (victim = cache_capacity_victim((size_t)capacity)) != NULL;)
        cache_detach(victim, &detached);
    } else {
      /* Purged already but its first page: that page goes too. */
      node->state = GL_SEGMENT_CACHED_ZERO;
      cache_to_transit(node, &detached);
    }
  }
  gl_validate(cache_is_valid());
  pthread_mutex_unlock(&cache_lock);
  if (node == NULL) segment_unmap(seg);
  cache_purge_detached(&detached, __atomic_load_n(&gl_options.purge_decommit, __ATOMIC_RELAXED) != 0);
}

/* A resident entry whose purge would take more than PARTIAL_OVERSHOOT beyond what
 * is asked has only its head purged, when that is PARTIAL_MIN or more (less is
 * left: not worth a system call).  Purging whole entries overshot by most of a
 * segment: a table that grows over a freed one's pages lost them all to a purge
 * that asked for half. */
#define PARTIAL_MIN ((size_t)256 << 10)
#define PARTIAL_OVERSHOOT ((size_t)1 << 20)

void segment_cache_purge(size_t keep_bytes, uint64_t cached_by_ms, bool decommit) {
  if (__atomic_load_n(&cache_resident_bytes, __ATOMIC_RELAXED) <= keep_bytes) return;
  size_t page = os_page_size();
  gl_list_t detached = {NULL, NULL};
  pthread_mutex_lock(&cache_lock);
  for (cache_node_t *n = cache_node(cache_dirty.last), *prev; n && cache_resident_bytes > keep_bytes; n = prev) {
    prev = cache_node(n->link.prev);
    if (n->cached_at > cached_by_ms) break; /* younger ones follow (cache_insert) */
    size_t excess = cache_resident_bytes - keep_bytes, resident = node_resident(n);
    if (resident <= excess + PARTIAL_OVERSHOOT || keep_bytes == 0) {
      cache_detach(n, &detached);
    } else {
      size_t more = gl_align_up(excess, page);
      if (more < PARTIAL_MIN || more + page >= resident) break;
      cache_detach(n, &detached);
      n->purge_more = more;
      break; /* what is left is what is kept */
    }
  }
  pthread_mutex_unlock(&cache_lock);
  cache_purge_detached(&detached, decommit);
}

void segment_cache_unmap(uint64_t cached_by_ms) {
  gl_list_t doomed = {NULL, NULL};
  pthread_mutex_lock(&cache_lock);
  for (cache_node_t *n = cache_aged(cache_age.last), *prev; n; n = prev) {
    prev = cache_aged(n->age.prev);
    if (n->cached_at > cached_by_ms) break; /* newer ones follow */
    cache_remove(n);
    gl_list_push_back(&doomed, &n->link);
  }
  pthread_mutex_unlock(&cache_lock);
  cache_unmap_nodes(&doomed);
}

/* Unmaps every cached segment; whether there was any. */
static bool cache_unmap_all(void) {
  segment_cache_front_drain();
  if (segment_cache_bytes() == 0) return false;
  segment_cache_unmap(UINT64_MAX);
  return true;
}

void segment_cache_limit(size_t purged_bytes) {
  __atomic_store_n(&cache_purged_limit, purged_bytes, __ATOMIC_RELAXED);
  if (__atomic_load_n(&cache_purged_bytes, __ATOMIC_RELAXED) <= purged_bytes) return;
  gl_list_t doomed = {NULL, NULL};
  pthread_mutex_lock(&cache_lock);
  cache_over_limit(&doomed);
  pthread_mutex_unlock(&cache_lock);
  cache_unmap_nodes(&doomed);
}

size_t segment_cache_resident_bytes(void) {
  return __atomic_load_n(&cache_resident_bytes, __ATOMIC_RELAXED) +
         atomic_load_explicit(&cache_front_bytes, memory_order_relaxed);
}
size_t segment_cache_bytes(void) {
  return __atomic_load_n(&cache_total_bytes, __ATOMIC_RELAXED) +
         atomic_load_explicit(&cache_front_bytes, memory_order_relaxed);
}
uint64_t segment_cache_activity(void) { return atomic_load_explicit(&cache_activity, memory_order_relaxed); }

/* In a fork child: if another thread held cache_lock at the fork, the lists may be
 * half-changed, so the child forgets the cache (its segments stay mapped, unused;
 * a stale free() of a resident one still finds it cached).  Segments another
 * thread was purging are forgotten too: that thread is not in the child. */
void segment_fork_child(void) {
  if (!gl_mutex_was_free_at_fork(&cache_lock)) {
    memset(&cache_age, 0, sizeof cache_age);
    memset(&cache_dirty, 0, sizeof cache_dirty);
    memset(cache_purged, 0, sizeof cache_purged);
    memset(cache_purged_nonempty, 0, sizeof cache_purged_nonempty);
    memset(cache_resident, 0, sizeof cache_resident);
    memset(cache_resident_nonempty, 0, sizeof cache_resident_nonempty);
    memset(&cache_free_nodes, 0, sizeof cache_free_nodes);
    cache_dirty_count = cache_transit_bytes = cache_transit_count = 0;
    __atomic_store_n(&cache_total_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&cache_resident_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&cache_purged_bytes, 0, __ATOMIC_RELAXED);
    return;
  }
  cache_bytes_add(&cache_total_bytes, cache_transit_bytes, false);
  gl_counter_sub(&gl_counters.segments_cached, cache_transit_count);
  cache_transit_bytes = cache_transit_count = 0;
}

/* ---- Small and medium segments, owned by a heap's set ---- */

void segment_set_init(gl_segset_t *set) {
  memset(set, 0, sizeof *set);
  pthread_mutex_init(&set->lock, NULL);
}

static void avail_push(gl_segset_t *set, gl_segment_t *seg) {
  gl_list_push_front(&set->avail[seg->kind], &seg->avail_link);
  seg->in_avail = 1;
}

static void avail_remove(gl_segset_t *set, gl_segment_t *seg) {
  gl_list_remove(&set->avail[seg->kind], &seg->avail_link);
  seg->in_avail = 0;
}

/* ---- Guard pages between medium pages (secure build) ----
 * The last OS page of every medium page is PROT_NONE while its segment is a
 * medium segment, and segment_page_area ends the page's blocks before it: a
 * linear overflow off the last block of a medium page faults there instead of
 * running on into the next page.  The guards are set when a segment becomes
 * medium (one mprotect each, 8 a segment) and lifted together, with one mprotect
 * over the range they span, before the segment goes to the cache, where it may
 * become a small or a large segment, be moved with mremap (which refuses mixed
 * protections) or be split.  Purging a run of pages (madvise, segment_purge_dirty)
 * may cover guards: madvise changes no protection, so a purged page keeps its
 * guard, and a purged page needs no re-commit.  A guard the kernel refuses (the
 * process is out of memory maps) is left out: that page goes without.  A segment
 * whose guards cannot be lifted is unmapped instead of cached. */
static void segment_guards_set(gl_segment_t *seg) {
#if GL_SECURE
  size_t guard = segment_page_guard(seg);
  if (guard == 0) return;
  for (unsigned i = 0; i < seg->page_count; i++) {
    uint8_t *at = (uint8_t *)seg + ((size_t)(i + 1) << seg->page_shift) - guard;
    if (os_protect(at, guard, false)) seg->page_guards |= (uint8_t)(1u << i);
  }
#else
  (void)seg;
#endif
}

/* Makes every guard of seg accessible again; false (guards left as they were)
 * when the kernel refuses. */
static bool segment_guards_lift(gl_segment_t *seg) {
#if GL_SECURE
  unsigned guards = seg->page_guards;
  if (guards == 0) return true;
  unsigned first = (unsigned)__builtin_ctz(guards), last = 31u - (unsigned)__builtin_clz(guards);
  uint8_t *begin = (uint8_t *)seg + ((size_t)(first + 1) << seg->page_shift) - os_page_size();
  uint8_t *end = (uint8_t *)seg + ((size_t)(last + 1) << seg->page_shift);
  if (!os_protect(begin, (size_t)(end - begin), true)) return false;
  seg->page_guards = 0;
#else
  (void)seg;
#endif
  return true;
}

static gl_segment_t *segment_new_pages(gl_segset_t *set, struct gl_heap_s *heap, gl_kind_t kind) {
  bool is_zero = false;
  gl_segment_t *seg = cache_take_exact(GL_SEGMENT_SIZE, &is_zero);
  if (seg == NULL) {
    seg = segment_os_map(GL_SEGMENT_SIZE, GL_SEGMENT_SIZE, false);
    if (seg == NULL) return NULL;
    is_zero = true;
    counters_mapped(GL_SEGMENT_SIZE);
    gl_counter_add(&gl_counters.segments, 1);
  }
  unsigned shift = kind == GL_KIND_SMALL ? GL_SMALL_PAGE_SHIFT : GL_MEDIUM_PAGE_SHIFT;
  unsigned count = (unsigned)(GL_SEGMENT_SIZE >> shift);
  size_t header = segment_header_size();
  memset(seg, 0, sizeof(gl_segment_t) + GL_PAGE_SLOTS * sizeof(gl_page_t));
  seg->kind = (uint8_t)kind;
  seg->page_shift = (uint8_t)shift;
  seg->page_count = count;
  seg->slot_offset_mask = segment_slot_offset_mask(shift);
  seg->mapped_size = GL_SEGMENT_SIZE;
  seg->heap = heap;
  seg->free_mask = count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1);
  for (unsigned i = 0; i < count; i++) {
    gl_page_t *page = segment_page(seg, i);
    size_t begin = i == 0 ? header : ((size_t)i << shift);
    page->index = (uint8_t)i;
    page->start = (uint8_t *)seg + begin;
    page->state = GL_PAGE_FREE_CLEAN;
    page->mem_is_zero = is_zero;
  }
  segment_map_set(seg, GL_SEGMENT_SIZE, kind == GL_KIND_SMALL ? GL_SEGMAP_SMALL : GL_SEGMAP_MEDIUM);
  if (__atomic_load_n(&gl_options.huge_pages, __ATOMIC_RELAXED)) os_advise_huge(seg, GL_SEGMENT_SIZE);
  segment_guards_set(seg);
  gl_list_push_front(&set->segments[kind], &seg->link);
  avail_push(set, seg);
  gl_validate(segment_is_valid(seg));
  return seg;
}

gl_page_t *segment_page_alloc(gl_segset_t *set, struct gl_heap_s *heap, gl_kind_t kind, bool *is_zero,
                              bool *was_dirty) {
  gl_link_t *first = set->avail[kind].first;
  gl_segment_t *seg = first ? gl_container_of(first, gl_segment_t, avail_link) : segment_new_pages(set, heap, kind);
  if (seg == NULL) return NULL;
  gl_assert(seg->free_mask != 0);
  /* A dirty page first: it is resident already, a clean one would fault in. */
  uint64_t pick = seg->dirty_mask ? seg->dirty_mask : seg->free_mask;
  unsigned idx = (unsigned)__builtin_ctzll(pick);
#if GL_SECURE
  /* Secure: any one of those pages, so where a page of a class lies (next to
   * which other class) is not predictable.  Mixed from the heap's generator state
   * (which its owner draws from right after this, for the page key) and the
   * segment's address, without advancing it. */
  if (heap != NULL) {
    uint64_t z = heap->rng ^ (uintptr_t)seg ^ seg->used_pages;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (unsigned k = (unsigned)(z % (uint64_t)__builtin_popcountll(pick)); k > 0; k--) pick &= pick - 1;
    idx = (unsigned)__builtin_ctzll(pick);
  }
#endif
  gl_page_t *page = segment_page(seg, idx);
  segment_page_take(set, page, is_zero, was_dirty);
  return page;
}

void segment_page_take(gl_segset_t *set, gl_page_t *page, bool *is_zero, bool *was_dirty) {
  gl_segment_t *seg = segment_of(page);
  gl_assert(page->state != GL_PAGE_IN_USE);
  uint64_t bit = (uint64_t)1 << page->index;
  *was_dirty = page->state == GL_PAGE_FREE_DIRTY;
  if (*was_dirty) page->mem_is_zero = 0;
  *is_zero = page->mem_is_zero;
  seg->free_mask &= ~bit;
  seg->dirty_mask &= ~bit;
  seg->used_pages++;
  if (seg->free_mask == 0) avail_remove(set, seg);
  __atomic_store_n(&page->state, GL_PAGE_IN_USE, __ATOMIC_RELAXED);
  gl_validate(segment_is_valid(seg));
}

void segment_page_free(gl_segset_t *set, gl_page_t *page) {
  gl_segment_t *seg = segment_of(page);
  uint64_t bit = (uint64_t)1 << page->index;
  gl_assert(page->state == GL_PAGE_IN_USE && page->used == 0);
  page->owner = NULL;
  __atomic_store_n(&page->fast_free_owner, NULL, __ATOMIC_RELAXED);
  page->free = NULL;
  page->local_free = NULL;
  __atomic_store_n(&page->carved_limit, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&page->state, GL_PAGE_FREE_DIRTY, __ATOMIC_RELAXED);
  seg->free_mask |= bit;
  seg->dirty_mask |= bit;
  seg->used_pages--;
  if (!seg->in_avail) avail_push(set, seg);
  gl_validate(segment_is_valid(seg));
}

uint64_t segment_purge_dirty(gl_segment_t *seg, bool decommit, bool huge_pages) {
  uint64_t purged = seg->dirty_mask;
  if (huge_pages) {
    unsigned half = seg->page_count / 2;
    uint64_t low = ((uint64_t)1 << half) - 1, allowed = 0;
    for (unsigned h = 0; h < 2; h++) {
      uint64_t bits = low << (h * half);
      if ((seg->free_mask & bits) == bits) allowed |= bits;
    }
    purged &= allowed;
  }
  uint64_t mask = purged;
  while (mask) {
    unsigned first = (unsigned)__builtin_ctzll(mask);
    unsigned last = first;
    while (last + 1 < seg->page_count && (mask >> (last + 1)) & 1) last++;
    /* One madvise for the run, guards (secure build) included: it leaves them
     * PROT_NONE. */
    uint8_t *begin = segment_page(seg, first)->start;
    uint8_t *end = (uint8_t *)seg + ((size_t)(last + 1) << seg->page_shift);
    bool zero = os_purge(begin, (size_t)(end - begin), decommit);
    for (unsigned i = first; i <= last; i++) {
      gl_page_t *page = segment_page(seg, i);
      __atomic_store_n(&page->state, GL_PAGE_FREE_CLEAN, __ATOMIC_RELAXED);
      page->mem_is_zero = zero;
      mask &= ~((uint64_t)1 << i);
    }
  }
  seg->dirty_mask &= ~purged;
  gl_validate(segment_is_valid(seg));
  return purged;
}

void segment_release_if_unused(gl_segset_t *set, gl_segment_t *seg) {
  if (seg->used_pages != 0 || seg->dirty_mask != 0) return;
  if (seg->in_avail) avail_remove(set, seg);
  gl_list_remove(&set->segments[seg->kind], &seg->link);
  seg->heap = NULL;
  /* The rest of the header (page descriptors) is purged too, so a reuse of this
   * segment finds zero memory everywhere past the first OS page. */
  bool all_zero = true;
  for (unsigned i = 0; i < seg->page_count; i++) all_zero = all_zero && segment_page(seg, i)->mem_is_zero;
  size_t keep = os_page_size();
  size_t header = segment_header_size();
  bool decommit = __atomic_load_n(&gl_options.purge_decommit, __ATOMIC_RELAXED) != 0;
  all_zero = os_purge((uint8_t *)seg + keep, header - keep, decommit) && all_zero;
  if (!segment_guards_lift(seg)) {
    segment_unmap(seg);
    return;
  }
  cache_put(seg, !all_zero);
}

bool segment_is_valid(const gl_segment_t *seg) {
#if GL_SECURE
  /* Only a medium segment has page guards, and only while in a set. */
  if (seg->page_guards != 0 && (seg->kind != GL_KIND_MEDIUM || segment_is_cached(seg))) return false;
#endif
  if (seg->kind == GL_KIND_LARGE) return seg->large_offset < seg->mapped_size;
  uint64_t all = seg->page_count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << seg->page_count) - 1);
  if ((seg->free_mask & ~all) || (seg->dirty_mask & ~seg->free_mask)) return false;
  if (seg->used_pages != (uint32_t)__builtin_popcountll(all & ~seg->free_mask)) return false;
  if ((seg->free_mask != 0) != (seg->in_avail != 0)) return false;
  unsigned stride = 1u << (seg->page_shift - GL_PAGE_SLOT_SHIFT);
  if (seg->slot_offset_mask != segment_slot_offset_mask(seg->page_shift)) return false;
  for (unsigned slot = 0; slot < GL_PAGE_SLOTS; slot++) {
    /* The slots between a medium segment's pages are never used
     * (segment_page_of masks them out): zero. */
    const gl_page_t *page = &seg->pages[slot];
    if (slot % stride != 0) {
      if (page->fast_free_owner != NULL || page->carved_limit != 0 || page->owner != NULL) return false;
      continue;
    }
    unsigned i = slot / stride;
    uint64_t bit = (uint64_t)1 << i;
    uint8_t state = __atomic_load_n(&page->state, __ATOMIC_RELAXED);
    if (page->index != i) return false;
    if (state == GL_PAGE_IN_USE ? (seg->free_mask & bit) != 0 : (seg->free_mask & bit) == 0) return false;
    if ((state == GL_PAGE_FREE_DIRTY) != ((seg->dirty_mask & bit) != 0)) return false;
    if (state != GL_PAGE_IN_USE && __atomic_load_n(&page->carved_limit, __ATOMIC_RELAXED) != 0) return false;
  }
  return true;
}

/* ---- Large segments ---- */

/* A segment cut to `keep` bytes below every page moved into it is one mapping
 * again (its start grew in place or was committed fresh): it counts no pieces, so
 * it may take pieces again and be moved whole.  A buffer regrown round after round
 * from the head of the same recycled segment used up its pieces (segment_grow)
 * while it held none, and from its fourth round each faulted its 10 MiB fresh while
 * the cache purged the last one's (tests/memory regrow_rounds). */
static void segment_cut_pieces(gl_segment_t *seg, size_t keep) {
  if (seg->large_moved_in != 0 && keep <= seg->large_moved_from) seg->large_moved_in = 0;
}

/* Resizes a segment's mapping: shrinks in place, grows in place when the address
 * space after it is free, else moves its pages onto a fresh aligned reservation. */
gl_segment_t *segment_resize(gl_segment_t *seg, size_t new_size) {
  size_t old_size = seg->mapped_size;
  uint8_t value = segment_map_get((uintptr_t)seg);
  if (new_size == old_size) return seg;
  if (new_size > old_size && !segment_map_reserve(seg, new_size)) return NULL;
  if (new_size > old_size && !os_resize_in_place(seg, old_size, new_size)) {
    void *target = segment_os_map(new_size, GL_SEGMENT_SIZE, true);
    if (target == NULL) return NULL;
    /* The map forgets the old range before the move frees it: another thread may
     * map a segment there the moment it is free. */
    segment_map_set(seg, old_size, GL_SEGMAP_NONE);
    if (!os_move(seg, old_size, new_size, target)) {
      segment_map_set(seg, old_size, value);
      os_unmap(target, new_size);
      return NULL;
    }
    seg = target;
  } else if (new_size < old_size) {
    segment_map_set(seg, old_size, GL_SEGMAP_NONE);
    if (!os_resize_in_place(seg, old_size, new_size)) os_unmap((uint8_t *)seg + new_size, old_size - new_size);
    segment_cut_pieces(seg, new_size);
  }
  seg->mapped_size = new_size;
  segment_map_set(seg, new_size, value);
  if (new_size > old_size) counters_mapped(new_size - old_size);
  else gl_counter_sub(&gl_counters.mapped, old_size - new_size);
  return seg;
}

/* Shrinks a cached segment to `keep` bytes; its tail, still resident, moves (mremap,
 * no copy) to an aligned address of its own and goes back to the cache as a dirty
 * segment, so the pages stay reusable instead of being unmapped. */
static gl_segment_t *segment_split(gl_segment_t *seg, size_t keep) {
  size_t old_size = seg->mapped_size, tail = old_size - keep;
  if (tail < ((size_t)1 << 20)) return segment_resize(seg, keep);
  void *target = segment_os_map(tail, GL_SEGMENT_SIZE, true);
  if (target == NULL) return segment_resize(seg, keep);
  /* The map describes the shorter segment before the move frees the tail's range. */
  uint8_t value = segment_map_get((uintptr_t)seg);
  segment_map_set(seg, old_size, GL_SEGMAP_NONE);
  segment_map_set(seg, keep, value);
  if (!os_move((uint8_t *)seg + keep, tail, tail, target)) {
    segment_map_set(seg, old_size, value);
    os_unmap(target, tail);
    return segment_resize(seg, keep);
  }
  seg->mapped_size = keep;
  uint8_t moved_in = seg->large_moved_in;
  segment_cut_pieces(seg, keep);
  gl_segment_t *rest = target;
  memset(rest, 0, sizeof(gl_segment_t));
  rest->kind = GL_KIND_LARGE;
  rest->page_shift = GL_SEGMENT_SHIFT;
  rest->mapped_size = tail;
  rest->large_offset = GL_LARGE_OFFSET;
  rest->large_moved_in = moved_in; /* it may hold pages moved in, anywhere */
  rest->large_moved_from = 0;
  segment_map_set(rest, tail, GL_SEGMAP_LARGE);
  gl_counter_add(&gl_counters.segments, 1);
  cache_put(rest, true);
  return seg;
}

/* Moves the last `take` bytes of a segment taken from the cache to `dest` (mremap:
 * page tables move, the pages stay resident, nothing is copied), over whatever was
 * mapped there.  The head left, if any, goes back to the cache; a segment moved
 * whole is a segment no more.  False, the segment unmapped, when the move fails
 * (`dest` may then be unmapped). */
static bool piece_move(gl_segment_t *piece, size_t take, uint8_t *dest) {
  size_t piece_size = piece->mapped_size;
  uint8_t *from = (uint8_t *)piece + piece_size - take;
  uint8_t value = segment_map_get((uintptr_t)piece);
  /* The map forgets the moved range before the move frees it (another thread may
   * map there at once). */
  segment_map_set(piece, piece_size, GL_SEGMAP_NONE);
  if (take < piece_size) segment_map_set(piece, piece_size - take, value);
  if (!os_move(from, take, take, dest)) {
    segment_map_set(piece, piece_size, value);
    segment_unmap(piece);
    return false;
  }
  if (take < piece_size) {
    piece->mapped_size = piece_size - take;
    cache_put(piece, true);
  } else {
    gl_counter_sub(&gl_counters.segments, 1);
  }
  return true;
}

/* A segment of `size` bytes made of the resident pages of cached pieces: each is
 * moved (mremap: page tables move, pages stay resident, nothing is copied) into one
 * fresh aligned reservation, whole, or the last one by its tail (the rest of it
 * goes back to the cache).  They fill it from its end, where the block goes
 * (segment_large_alloc), and what they do not cover, at its start, is committed
 * fresh: the part of the mapping before the block is then not resident.  NULL when
 * the address space or the commit is refused (the pieces are unmapped). */
static gl_segment_t *segment_assemble(gl_segment_t **pieces, unsigned count, size_t size) {
  uint8_t *target = segment_os_map(size, GL_SEGMENT_SIZE, true);
  size_t filled = 0;
  for (unsigned i = 0; i < count; i++) {
    gl_segment_t *piece = pieces[i];
    size_t piece_size = piece->mapped_size;
    size_t take = piece_size < size - filled ? piece_size : size - filled;
    if (target == NULL || take == 0) { /* not needed after all */
      cache_put(piece, true);
      continue;
    }
    if (piece_move(piece, take, target + size - filled - take)) filled += take;
  }
  if (target == NULL) return NULL;
  if (filled < size && !os_commit(target, size - filled)) {
    os_unmap(target, size);
    gl_counter_sub(&gl_counters.mapped, filled);
    return NULL;
  }
  counters_mapped(size - filled);
  gl_counter_add(&gl_counters.segments, 1);
  gl_segment_t *seg = (gl_segment_t *)target;
  seg->mapped_size = size;
  /* Its header may be a moved piece's data: set what segment_large_alloc keeps. */
  seg->large_moved_in = (uint8_t)count;
  seg->large_moved_from = size - filled; /* the pieces fill it from its end */
  return seg;
}

/* Grows a live large segment to `new_size` (segment_resize), and fills the new
 * part with resident pages of cached segments where there are some, moved there
 * with mremap.  A block that grows by doubling (sqlite's hash tables, a vector)
 * while an older block's pages sit resident in the cache otherwise faults fresh
 * pages in beside them -- and the cache then purges the old ones: sqlite's tables
 * grew from 136 KiB to 9 MiB five times over, faulting 9 MiB each time, with the
 * last table's 9 MiB resident in the cache every time.  Moving pages costs each
 * CPU running the process a TLB flush: with more than one thread heap, only growth
 * of GROW_MOVE_MIN_THREADED or more takes cached pages (the faults then cost far
 * more than the flush). */
#define GROW_MOVE_MIN ((size_t)64 << 10)
#define GROW_MOVE_MIN_THREADED ((size_t)1 << 20)
/* Pages moved in stay mappings of their own (the kernel merges neighbouring ones
 * only when they share an origin), and a process has at most vm.max_map_count
 * (65,530 by default): a segment takes pieces GROW_MOVE_MAX_PIECES times, then
 * grows fresh -- GROW_MOVE_MAX_PIECES_FEW times while the process has fewer than
 * GROW_FEW_SEGMENTS segments (at most 12 k mappings more).  A segment cut below
 * its pieces counts none again (segment_cut_pieces); the tail split off a
 * segment keeps its count, wherever its pieces are, and a buffer regrown from
 * such tails round after round reaches 16 in three rounds (bench sqlite's sorter:
 * 14.8 k faults with 16, 12.9 k with 64). */
#define GROW_MOVE_MAX_PIECES 16
#define GROW_MOVE_MAX_PIECES_FEW 64
#define GROW_FEW_SEGMENTS 256
static unsigned grow_move_max_pieces(void) {
  return gl_counter_get(&gl_counters.segments) < GROW_FEW_SEGMENTS ? GROW_MOVE_MAX_PIECES_FEW : GROW_MOVE_MAX_PIECES;
}
gl_segment_t *segment_grow(gl_segment_t *seg, size_t new_size, bool *from_cache) {
  size_t old_size = seg->mapped_size;
  *from_cache = false;
  gl_assert(new_size > old_size); /* shrinking is segment_resize's */
  size_t extra = new_size - old_size;
  size_t least = several_thread_heaps() ? GROW_MOVE_MIN_THREADED : GROW_MOVE_MIN;
  gl_segment_t *pieces[CACHE_PIECES];
  bool is_zero;
  unsigned count = extra >= least && segment_cache_resident_bytes() >= least &&
                           seg->large_moved_in < grow_move_max_pieces()
                       ? cache_take_large(extra, pieces, &is_zero, CACHE_TAKE_RESIDENT)
                       : 0;
  gl_segment_t *grown = segment_resize(seg, new_size);
  size_t filled = old_size;
  for (unsigned i = 0; i < count; i++) {
    size_t take = pieces[i]->mapped_size < new_size - filled ? pieces[i]->mapped_size : new_size - filled;
    if (grown == NULL || take == 0) {
      cache_put(pieces[i], true);
      continue;
    }
    uint8_t *dest = (uint8_t *)grown + filled;
    if (piece_move(pieces[i], take, dest)) {
      /* Its bytes were counted with the piece, and again with the growth. */
      gl_counter_sub(&gl_counters.mapped, take);
      if (grown->large_moved_in == 0) grown->large_moved_from = filled; /* growth goes up */
      filled += take;
      *from_cache = true;
      if (grown->large_moved_in < UINT8_MAX) grown->large_moved_in++;
    } else if (!os_commit(dest, take)) {
      /* A failed move may have unmapped `dest` (pieces of several mappings are
       * not moved where the kernel refuses them), so this takes a failed move and
       * a refused mmap: the block has lost pages and nothing can mend it. */
      gl_fatal("out of memory: a large block being grown lost its pages at", dest, NULL, NULL);
    }
  }
  return grown;
}

/* Large segments of GL_LARGE_SPAN_UNIT (2 MiB) or more are whole units of it.  They
 * start at a GL_SEGMENT_SIZE boundary, so every split, piece moved in and growth
 * then moves ranges whose source and destination are both 2 MiB aligned, which the
 * kernel moves a page-table page at a time rather than an entry at a time.  Under
 * a hypervisor that shadows page tables an entry moved on its own costs the next
 * write of its page about 5 us, a third of a fresh page's fault, while a moved
 * page-table page costs nothing (bench/src/remap_touch.c): blocks of 5-25 MiB
 * churned while busy ran about twice as fast (bench malloc-large, large-zero).  What the
 * rounding adds costs address space only: the block sits at the end of the
 * mapping (segment_large_alloc), and nothing touches the rest. */
size_t segment_large_span(size_t bytes) {
  size_t span = gl_align_up(bytes, os_page_size());
  return span >= GL_LARGE_SPAN_UNIT ? gl_align_up(span, GL_LARGE_SPAN_UNIT) : span;
}

gl_segment_t *segment_large_alloc(size_t size, size_t alignment, bool *is_zero, bool *from_cache) {
  size_t page = os_page_size();
  size_t offset = GL_LARGE_OFFSET;
  if (alignment > offset) offset = alignment < GL_SEGMENT_SIZE ? alignment : GL_SEGMENT_SIZE;
  if (alignment > GL_MAX_ALIGN || size > GL_MAX_ALLOC - GL_MAX_ALIGN - 2 * GL_SEGMENT_SIZE) return NULL;
  if (size == 0) size = 1; /* a zero-byte block still lies inside its mapping */
  size_t needed = segment_large_span(offset + size);
  gl_segment_t *seg = NULL;
  *is_zero = false;
  *from_cache = false;
  /* Cached segments start at a GL_SEGMENT_SIZE boundary, so one serves any
   * alignment up to that with the block `offset` into it. */
  if (alignment <= GL_SEGMENT_SIZE) {
    gl_segment_t *pieces[CACHE_PIECES];
    /* An over-aligned block takes only a segment that fits as it is: sizes and
     * alignments that vary would otherwise split and move cached segments (an
     * mremap, a TLB shootdown each) more often than they save a mapping.  So does
     * a block under a segment's size while more than one thread heap lives: a
     * shrink or move then interrupts every CPU running the process to flush its
     * TLB, which costs more than the faults it saves on a block of that size (a
     * thread handing blocks of 64 KiB - 1 MiB to another made 1.3 remaps a block
     * and ran 3x slower).  Alone, a remap is a local flush, and assembling freed
     * pieces keeps a program that doubles its tables from faulting fresh pages
     * beside them (Python: 2.4 MB more at peak without it). */
    bool fit_only = offset != GL_LARGE_OFFSET ||
                    (needed < GL_SEGMENT_SIZE && several_thread_heaps());
    unsigned count = cache_take_large(needed, pieces, is_zero, fit_only ? CACHE_TAKE_FIT : CACHE_TAKE_ANY);
    size_t taken = 0;
    for (unsigned i = 0; i < count; i++) taken += pieces[i]->mapped_size;
    /* Most of it: a few small pieces assembled into a big block are not the
     * program taking a big block back (purge.c, huge blocks). */
    *from_cache = taken >= needed / 2;
    if (count > 1) {
      seg = segment_assemble(pieces, count, needed);
      *is_zero = false;
    } else if (count == 1) {
      seg = pieces[0];
      /* Resized when it does not fit: grown, or split so a small block does not
       * pin a big resident mapping -- when the mapping is over twice the block's
       * own extent, not its unit-rounded span (taken whole up to twice the span,
       * 278 of bench malloc-large's 400 blocks kept up to half their mapping
       * resident and unused: peak RSS 405 MiB against 377 MiB this way, faults
       * the same). */
      if (seg->mapped_size < needed || seg->mapped_size / 2 > offset + size) {
        gl_segment_t *resized = seg->mapped_size > needed ? segment_split(seg, needed) : segment_resize(seg, needed);
        if (resized == NULL) segment_unmap(seg);
        seg = resized;
        *is_zero = false;
      }
    }
    /* What lies between the header page and an aligned block stays unused while
     * the block lives: give it back if the cache left much of it resident. */
    if (seg != NULL && offset - page >= ((size_t)1 << 20) && !*is_zero)
      os_purge((uint8_t *)seg + page, offset - page, true);
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
  uint8_t moved_in = seg->large_moved_in; /* its mappings stay as they were */
  size_t moved_from = seg->large_moved_from;
  memset(seg, 0, sizeof(gl_segment_t));
  seg->large_moved_in = moved_in;
  seg->large_moved_from = moved_from;
  seg->kind = GL_KIND_LARGE;
  seg->page_shift = GL_SEGMENT_SHIFT;
  seg->mapped_size = mapped;
  /* The block ends where the mapping ends: a cached segment's resident pages are
   * at its end (pieces are taken by their tails, heads are purged first), and the
   * unit rounding's spare part stays before the block, untouched. */
  if (alignment <= GL_SEGMENT_SIZE) offset = (mapped - size) & ~(offset - 1);
  seg->large_offset = offset;
  seg->large_usable = mapped - offset;
  seg->large_alignment = alignment;
  seg->large_is_zero = *is_zero;
  segment_map_set(seg, mapped, GL_SEGMAP_LARGE);
  if (mapped >= ((size_t)2 << 20) && __atomic_load_n(&gl_options.huge_pages, __ATOMIC_RELAXED))
    os_advise_huge(seg, mapped);
  return seg;
}

/* A large segment has its header at a GL_SEGMENT_SIZE boundary at the start of
 * its mapping, so the cache can give it to any later block aligned up to
 * GL_SEGMENT_SIZE (segment_large_alloc).  Blocks aligned beyond that are never
 * served from the cache: theirs are unmapped rather than left to sit there. */
void segment_large_free(gl_segment_t *seg, bool resident) {
  if (seg->large_alignment > GL_SEGMENT_SIZE) {
    segment_unmap(seg);
    return;
  }
  /* All but the header page, which cache_put purges with its own. */
  size_t page = os_page_size();
  if (!resident) resident = !os_purge((uint8_t *)seg + page, seg->mapped_size - page, true);
  /* The front only while several thread heaps live: alone, a thread's freed
   * segments are better in the lists, where a bigger block assembles them
   * (cache_take_large) -- through the front, a program doubling a buffer up to
   * 256 MiB faulted 3% more (probes vector-doubling), Python's bench run 3-10%. */
  if (resident && several_thread_heaps() && cache_front_put(seg)) return;
  cache_put(seg, resident);
}
