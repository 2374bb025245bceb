/* purge.c: the purge rules, the queues of dirty pages, and the purger thread
 * (purge.h says when memory is returned; this file is how).
 *
 * Lock order: segs->lock (a heap's, also guards its queue) -> cache_policy_lock ->
 * the segment cache lock (segment.c).  The purger's event lock is taken alone.
 */
#define _GNU_SOURCE /* GL_SPIN_MUTEX_INITIALIZER (os.h) */
#include "check.h"
#include "options.h"
#include "purge.h"
#include "sizeclass.h"

static long option(long *value) { return __atomic_load_n(value, __ATOMIC_RELAXED); }
static bool decommit(void) { return option(&gl_options.purge_decommit) != 0; }

/* ---- Recent demand ----
 * What a heap (or the cache) had in use at its peak over the last window, less what
 * it has now, is what the program may well take back: it stays resident.  How far
 * back to look depends on the program: one that frees and re-allocates in waves
 * longer than the window faults its memory back every wave (redis under load,
 * larson).  So the window learns.  A purge of memory beyond the recent peak opens
 * an episode; fresh pages that the same heap (cache) takes within REGRET_WINDOWS
 * windows of it are re-faults -- had the purged memory been kept (a window up to
 * REGRET_WINDOWS + 1 times as long would have kept it), they would have been those
 * pages, resident.  When re-faults reach 1/REGRET_SHARE of what the episode purged
 * (and REGRET_MIN bytes), the window doubles, up to WINDOW_GROWTH_MAX x
 * purge_window_ms; after WINDOW_DECAY windows with no such doubling it halves back
 * toward purge_window_ms.  A program that shrinks for good pays at most one
 * (longer) window of memory; one that idles gives it all back by the idle rule,
 * whatever the window. */

#define REGRET_SHARE 4
#define REGRET_MIN ((size_t)256 << 10)
#define REGRET_WINDOWS 3
#define WINDOW_GROWTH_MAX 8
#define WINDOW_DECAY 16

/* The window now: purge_window_ms, or longer after re-faults (a new value of the
 * option starts the learning again). */
static uint64_t demand_window_ms(const gl_demand_t *d) {
  uint64_t base = (uint64_t)option(&gl_options.purge_window_ms);
  return d->learned_from_ms == base && d->window_ms > base ? d->window_ms : base;
}

static uint64_t demand_slot_ms(const gl_demand_t *d) {
  uint64_t slot = demand_window_ms(d) / GL_DEMAND_SLOTS;
  return slot ? slot : 1;
}

/* Moves the window to `now` (slots that passed forget their peak) and records the
 * current value. */
static void demand_advance(gl_demand_t *d, uint64_t now) {
  uint64_t slot = now / demand_slot_ms(d);
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

/* The highest value of the window (the current one without a window). */
static size_t demand_peak(gl_demand_t *d, uint64_t now) {
  if (option(&gl_options.purge_window_ms) == 0) return d->current;
  demand_advance(d, now);
  size_t peak = d->current;
  for (unsigned i = 0; i < GL_DEMAND_SLOTS; i++)
    if (d->slot_peak[i] > peak) peak = d->slot_peak[i];
  return peak;
}

/* A new length: the slots change scale, the peak so far stays in the newest. */
static void demand_resize(gl_demand_t *d, uint64_t window_ms, uint64_t now) {
  size_t peak = demand_peak(d, now);
  d->window_ms = window_ms;
  d->learned_from_ms = (uint64_t)option(&gl_options.purge_window_ms);
  d->resized_ms = now;
  d->purged_bytes = d->refaulted_bytes = 0;
  for (unsigned i = 0; i < GL_DEMAND_SLOTS; i++) d->slot_peak[i] = 0;
  d->slot = now / demand_slot_ms(d);
  d->slot_peak[d->slot % GL_DEMAND_SLOTS] = peak;
}

/* Dirty bytes worth keeping: what the program had in use recently beyond what it
 * has now, at least `floor`. */
static size_t demand_keep(gl_demand_t *d, uint64_t now, size_t floor) {
  if (option(&gl_options.purge_window_ms) == 0) return floor;
  uint64_t window = demand_window_ms(d);
  if (window > (uint64_t)option(&gl_options.purge_window_ms) && now - d->resized_ms >= WINDOW_DECAY * window)
    demand_resize(d, window / 2, now);
  size_t peak = demand_peak(d, now);
  size_t reuse = peak > d->current ? peak - d->current : 0;
  return reuse > floor ? reuse : floor;
}

/* The rules purged `bytes` as beyond the recent peak (not idle, not trimmed). */
static void demand_purged(gl_demand_t *d, size_t bytes, uint64_t now) {
  if (bytes == 0) return;
  if (now - d->purged_ms > REGRET_WINDOWS * demand_window_ms(d)) /* a new episode */
    d->purged_bytes = d->refaulted_bytes = 0;
  d->purged_bytes += bytes;
  d->purged_ms = now;
}

/* The program took `bytes` of fresh (not resident) memory. */
static void demand_took_fresh(gl_demand_t *d, size_t bytes, uint64_t now) {
  if (d->purged_bytes == 0 || option(&gl_options.purge_window_ms) == 0) return;
  uint64_t window = demand_window_ms(d);
  if (now - d->purged_ms > REGRET_WINDOWS * window) return;
  size_t unpaid = d->purged_bytes - d->refaulted_bytes;
  d->refaulted_bytes += bytes < unpaid ? bytes : unpaid;
  if (d->refaulted_bytes >= REGRET_MIN && d->refaulted_bytes * REGRET_SHARE >= d->purged_bytes &&
      window < (uint64_t)option(&gl_options.purge_window_ms) * WINDOW_GROWTH_MAX)
    demand_resize(d, window * 2, now);
}

/* ---- Memory pressure ----
 * Under a memory limit, the free memory kept for reuse is what gets a process
 * OOM-killed.  The purger reads the process's cgroup usage and limit (v2:
 * memory.current against memory.high or memory.max; v1: memory.usage_in_bytes
 * against memory.limit_in_bytes) and its pressure stall information (the cgroup's
 * memory.pressure, else /proc/pressure/memory) at most every 100 ms.  Usage at or
 * above pressure_percent of the limit, or tasks stalled on memory more than 10% of
 * the last 10 s, turn pressure on: every rule then acts as if the program were idle
 * -- all free memory goes, nothing is kept -- until usage is 10 points below the
 * threshold and stalls under 5%.  GALLEON_CGROUP_DIR names the directory to read
 * instead of the process's own cgroup (tests use a directory of plain files). */

#define PRESSURE_PATH 320
#define PRESSURE_CHECK_MS 100

typedef struct {
  bool probed, found;
  char usage[PRESSURE_PATH], limit[PRESSURE_PATH], high[PRESSURE_PATH], psi[PRESSURE_PATH];
} cgroup_files_t;

static cgroup_files_t cgroup; /* the purger thread's */
static _Atomic(int) pressure_on;
static _Atomic(size_t) pressure_events;
static uint64_t pressure_next_check_ms;

static bool pressure_active(void) { return atomic_load_explicit(&pressure_on, memory_order_relaxed) != 0; }

static void path_join(char *out, const char *dir, const char *dir_end, const char *name) {
  size_t n = 0;
  for (const char *c = dir; c < dir_end && *c && n + 1 < PRESSURE_PATH; c++) out[n++] = *c;
  n = gl_fmt_str(out, n, PRESSURE_PATH, "/");
  n = gl_fmt_str(out, n, PRESSURE_PATH, name);
  out[n] = 0;
}

static bool readable(const char *path) {
  char buf[8];
  return os_read_text(path, buf, sizeof buf) >= 0;
}

/* Fills the paths for a cgroup directory; false when it has no memory files. */
static bool cgroup_use_dir(const char *dir, const char *dir_end) {
  path_join(cgroup.usage, dir, dir_end, "memory.current");
  if (readable(cgroup.usage)) { /* v2 */
    path_join(cgroup.limit, dir, dir_end, "memory.max");
    path_join(cgroup.high, dir, dir_end, "memory.high");
    path_join(cgroup.psi, dir, dir_end, "memory.pressure");
  } else {
    path_join(cgroup.usage, dir, dir_end, "memory.usage_in_bytes");
    if (!readable(cgroup.usage)) return false;
    path_join(cgroup.limit, dir, dir_end, "memory.limit_in_bytes");
    cgroup.high[0] = 0;
    cgroup.psi[0] = 0;
  }
  if (cgroup.psi[0] == 0 || !readable(cgroup.psi)) gl_fmt_str(cgroup.psi, 0, PRESSURE_PATH, "/proc/pressure/memory");
  return true;
}

/* Finds the process's cgroup memory files from /proc/self/cgroup: the v2 line
 * "0::/path", or the v1 line "N:memory:/path". */
static void cgroup_probe(void) {
  cgroup.probed = true;
  const char *dir = os_getenv("GALLEON_CGROUP_DIR");
  if (dir != NULL && *dir) {
    cgroup.found = cgroup_use_dir(dir, dir + PRESSURE_PATH);
    return;
  }
  char text[2048], base[PRESSURE_PATH];
  if (os_read_text("/proc/self/cgroup", text, sizeof text) < 0) return;
  for (char *line = text; *line;) {
    char *end = line;
    while (*end && *end != '\n') end++;
    char *path = NULL;
    const char *roots[2] = {NULL, NULL};
    if (line[0] == '0' && line[1] == ':' && line[2] == ':') {
      path = line + 3;
      roots[0] = "/sys/fs/cgroup";
      roots[1] = "/sys/fs/cgroup/unified";
    } else {
      for (char *c = line; c + 8 <= end; c++) {
        if (c[0] == ':' && c[1] == 'm' && c[2] == 'e' && c[3] == 'm' && c[4] == 'o' && c[5] == 'r' &&
            c[6] == 'y' && c[7] == ':') {
          path = c + 8;
          roots[0] = "/sys/fs/cgroup/memory";
          break;
        }
      }
    }
    for (int r = 0; path && r < 2 && roots[r]; r++) {
      size_t n = gl_fmt_str(base, 0, PRESSURE_PATH, roots[r]);
      for (char *c = path; c < end && n + 1 < PRESSURE_PATH; c++) base[n++] = *c;
      base[n] = 0;
      if (cgroup_use_dir(base, base + n)) {
        cgroup.found = true;
        return;
      }
    }
    line = *end ? end + 1 : end;
  }
}

/* A byte count from a cgroup file; UINT64_MAX for "max" or an unreadable file. */
static uint64_t read_bytes(const char *path) {
  char buf[64];
  if (path[0] == 0 || os_read_text(path, buf, sizeof buf) <= 0) return UINT64_MAX;
  if (buf[0] < '0' || buf[0] > '9') return UINT64_MAX;
  uint64_t v = 0;
  for (const char *c = buf; *c >= '0' && *c <= '9'; c++) {
    if (v > UINT64_MAX / 10 - 10) return UINT64_MAX;
    v = v * 10 + (uint64_t)(*c - '0');
  }
  return v;
}

/* "some avg10=12.34 ..." in hundredths of a percent; 0 when unreadable. */
static unsigned read_stall(const char *path) {
  char buf[256];
  if (os_read_text(path, buf, sizeof buf) <= 0) return 0;
  for (const char *c = buf; *c; c++) {
    if (c[0] == 'a' && c[1] == 'v' && c[2] == 'g' && c[3] == '1' && c[4] == '0' && c[5] == '=') {
      unsigned whole = 0, frac = 0, digits = 0;
      for (c += 6; *c >= '0' && *c <= '9'; c++) whole = whole * 10 + (unsigned)(*c - '0');
      if (*c == '.')
        for (c++; *c >= '0' && *c <= '9' && digits < 2; c++, digits++) frac = frac * 10 + (unsigned)(*c - '0');
      while (digits++ < 2) frac *= 10;
      return whole * 100 + frac;
    }
  }
  return 0;
}

/* The purger's look at the cgroup (at most every PRESSURE_CHECK_MS). */
static void pressure_update(uint64_t now) {
  long percent = option(&gl_options.pressure_percent);
  if (percent <= 0) {
    atomic_store_explicit(&pressure_on, 0, memory_order_relaxed);
    return;
  }
  if (now < pressure_next_check_ms) return;
  pressure_next_check_ms = now + PRESSURE_CHECK_MS;
  if (!cgroup.probed) cgroup_probe();
  if (!cgroup.found) return;
  uint64_t usage = read_bytes(cgroup.usage);
  uint64_t limit = read_bytes(cgroup.limit), high = read_bytes(cgroup.high);
  if (high < limit) limit = high;
  unsigned stall = read_stall(cgroup.psi);
  bool on = pressure_active();
  uint64_t level = (uint64_t)(on ? percent - 10 : percent);
  bool over = usage != UINT64_MAX && limit != UINT64_MAX && limit > 0 && usage / (limit / 100 + 1) >= level;
  bool stalled = stall >= (on ? 500u : 1000u);
  if (over || stalled) {
    if (!on) atomic_fetch_add_explicit(&pressure_events, 1, memory_order_relaxed);
    atomic_store_explicit(&pressure_on, 1, memory_order_relaxed);
  } else {
    atomic_store_explicit(&pressure_on, 0, memory_order_relaxed);
  }
}

/* ---- The purger's wake-up (defined below) ---- */

static void purge_notify(size_t dirty_bytes);
void purge_notify_pending(size_t bytes) { purge_notify(bytes); }

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
  bool huge = option(&gl_options.huge_pages) != 0;
  /* With huge pages a dirty page may have to wait for its 2 MiB neighbours: it goes
   * to the back of the queue as if just freed (it stays sorted).  Each page is
   * looked at once per call: the walk stops when the first page sent back comes
   * round again.  (Not a count of the queue first: in a heap of gigabytes that
   * walk over thousands of cold page descriptors, on every purge, was 40% of the
   * time of a random-replace workload.) */
  uint64_t delay = (uint64_t)option(&gl_options.purge_delay_ms);
  gl_page_t *page, *first_sent_back = NULL;
  while ((page = queue_page(q->pages.first)) != NULL && page != first_sent_back && q->dirty_bytes > keep &&
         (all || page->dirty_since + delay <= now)) {
    gl_segment_t *seg = segment_of(page);
    uint64_t purged = segment_purge_dirty(seg, decommit(), huge);
    if (purged == 0) {
      gl_list_remove(&q->pages, &page->link);
      page->dirty_since = now;
      gl_list_push_back(&q->pages, &page->link);
      if (first_sent_back == NULL) first_sent_back = page;
      continue;
    }
    while (purged) {
      gl_page_t *p = segment_page(seg, (unsigned)__builtin_ctzll(purged));
      purged &= purged - 1;
      gl_list_remove(&q->pages, &p->link);
      queue_bytes(q, segment_page_area(p), false);
      /* Every page purged leaves the queue: a walk that lost its marker ends at
       * the next page sent back, or when the queue empties. */
      if (p == first_sent_back) first_sent_back = NULL;
    }
    segment_release_if_unused(q->segs, seg);
  }
  gl_validate(purge_queue_is_valid(q));
}

/* The rules, for a queue whose lock is held. */
static void queue_apply(gl_purge_queue_t *q, uint64_t now, bool idle) {
  if (q->dirty_bytes == 0) return;
  if (idle) {
    queue_purge(q, now, 0, true);
    return;
  }
  size_t before = q->dirty_bytes;
  queue_purge(q, now, demand_keep(&q->demand, now, (size_t)option(&gl_options.retain_bytes)), false);
  demand_purged(&q->demand, before - q->dirty_bytes, now);
}

/* A dirty page that last held blocks of `block_size`, among the SAME_SIZE_SCAN
 * oldest in the queue (the next ones the rules would purge), or NULL.  A page
 * handed from one size class to another keeps resident every OS page that either
 * class touched, and blocks of another size touch other offsets: a page that went
 * round the classes of a program writing only part of each block (headers, a
 * buffer filled a little) ended up resident whole while each class used a few
 * blocks of it.  The same class touches the same offsets again (bench mixed: 9.8 k
 * -> 6.8 k faults, aligned 7.5 k -> 6.0 k, glibc-thread 2.9 k -> 2.4 k).  The
 * secure build keeps its random placement (segment_page_alloc). */
#define SAME_SIZE_SCAN 16
static gl_page_t *queue_find_same_size(gl_purge_queue_t *q, uint32_t block_size) {
  if (GL_SECURE) return NULL;
  unsigned seen = 0;
  for (gl_page_t *p = queue_page(q->pages.first); p != NULL && seen < SAME_SIZE_SCAN;
       p = queue_page(p->link.next), seen++)
    if (p->block_size == block_size) return p;
  return NULL;
}

gl_page_t *purge_page_alloc(gl_purge_queue_t *q, struct gl_heap_s *heap, unsigned cls, bool *is_zero) {
  gl_kind_t kind = sizeclass_kind(cls);
  bool was_dirty = false;
  pthread_mutex_lock(&q->segs->lock);
  gl_page_t *page = queue_find_same_size(q, (uint32_t)sizeclass_block_size(cls));
  if (page != NULL) {
    gl_assert(segment_of(page)->kind == kind);
    segment_page_take(q->segs, page, is_zero, &was_dirty);
  } else {
    page = segment_page_alloc(q->segs, heap, kind, is_zero, &was_dirty);
  }
  if (page != NULL) {
    size_t area = segment_page_area(page);
    uint64_t now = os_clock_ms();
    if (was_dirty) {
      gl_list_remove(&q->pages, &page->link);
      queue_bytes(q, area, false);
    } else {
      demand_took_fresh(&q->demand, area, now);
    }
    demand_set(&q->demand, q->demand.current + area, now);
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
  page->dirty_since = now;
  gl_list_push_back(&q->pages, &page->link); /* the clock only grows: the queue stays sorted */
  queue_bytes(q, area, true);
  demand_set(&q->demand, q->demand.current - area, now);
  atomic_fetch_add_explicit(&q->activity, 1, memory_order_relaxed);
  queue_apply(q, now, pressure_active());
  size_t dirty = q->dirty_bytes;
  pthread_mutex_unlock(&q->segs->lock);
  purge_notify(dirty + segment_cache_resident_bytes());
}

void purge_heap_tick(gl_purge_queue_t *q, uint64_t now) {
  if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) == 0) return;
  pthread_mutex_lock(&q->segs->lock);
  queue_apply(q, now, pressure_active());
  pthread_mutex_unlock(&q->segs->lock);
}

void purge_heap_all(gl_purge_queue_t *q) {
  pthread_mutex_lock(&q->segs->lock);
  queue_purge(q, os_clock_ms(), 0, true);
  pthread_mutex_unlock(&q->segs->lock);
}

size_t purge_heap_keep(gl_purge_queue_t *q, size_t keep) {
  pthread_mutex_lock(&q->segs->lock);
  queue_purge(q, os_clock_ms(), keep, true);
  size_t left = q->dirty_bytes;
  pthread_mutex_unlock(&q->segs->lock);
  return left;
}

bool purge_queue_is_valid(gl_purge_queue_t *q) {
  size_t bytes = 0;
  uint64_t last_due = 0;
  for (gl_page_t *p = queue_page(q->pages.first); p; p = queue_page(p->link.next)) {
    if (p->state != GL_PAGE_FREE_DIRTY || p->owner != NULL || p->dirty_since < last_due) return false;
    gl_segment_t *seg = segment_of(p);
    if (!(seg->dirty_mask & ((uint64_t)1 << p->index))) return false;
    last_due = p->dirty_since;
    bytes += segment_page_area(p);
  }
  return bytes == q->dirty_bytes;
}

/* ---- The segment cache ---- */

static pthread_mutex_t cache_policy_lock = GL_SPIN_MUTEX_INITIALIZER;
static gl_demand_t cache_demand; /* bytes of live segments */
static uint64_t cache_seen_activity, cache_quiet_since_ms;
static uint64_t cache_unmap_checked_ms; /* cache_apply's last look for entries to unmap */
static uint64_t cache_front_drained_ms;  /* and its last drain of the cache's front */

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

/* Purged cached segments cost address space (and commit charge), no memory: as
 * many bytes of them are kept as live segments had at their recent peak (at least
 * SEGMENT_CACHE_PURGED_MIN), so a program that frees and allocates its segments
 * again maps nothing, and total mapping never exceeds twice its recent peak.
 * (cache_policy_lock held.) */
static void cache_set_limit(uint64_t now) {
  size_t peak = demand_peak(&cache_demand, now);
  segment_cache_limit(peak > SEGMENT_CACHE_PURGED_MIN ? peak : SEGMENT_CACHE_PURGED_MIN);
}

/* Purges cached segments cached by `cached_by_ms` beyond `keep` resident bytes: the
 * demand rule's purge (cache_policy_lock held). */
static void cache_purge_beyond(size_t keep, uint64_t cached_by_ms, uint64_t now) {
  size_t before = segment_cache_resident_bytes();
  segment_cache_purge(keep, cached_by_ms, decommit());
  size_t after = segment_cache_resident_bytes();
  demand_purged(&cache_demand, before > after ? before - after : 0, now);
}

/* The rules for the cache (cache_policy_lock held). */
static void cache_apply(uint64_t now, bool idle) {
  /* The front's segments into the lists, where these rules see them: once a
   * millisecond while busy (younger ones would wait out the delay anyway), every
   * time when nothing waits (idle, or no delay). */
  uint64_t delay = cache_purge_delay_ms();
  if (idle || delay == 0 || now != cache_front_drained_ms) {
    cache_front_drained_ms = now;
    segment_cache_front_drain();
  }
  if (segment_cache_bytes() == 0) return;
  cache_set_limit(now);
  if (idle) {
    segment_cache_purge(0, UINT64_MAX, decommit());
  } else {
    size_t floor = 2 * (size_t)option(&gl_options.retain_bytes);
    size_t keep = demand_keep(&cache_demand, now, floor);
    cache_purge_beyond(keep, now >= delay ? now - delay : 0, now);
  }
  /* Once a millisecond: the unmap delay is a second or more, and the look takes
   * the lock that every thread taking and giving cached segments waits for. */
  uint64_t unmap = cache_unmap_delay_ms();
  if (now >= unmap && now != cache_unmap_checked_ms) {
    cache_unmap_checked_ms = now;
    segment_cache_unmap(now - unmap);
  }
}

/* ---- Huge blocks ----
 * The demand rule keeps a freed block resident when the program had that much in
 * use recently: right for a program that frees and allocates its big blocks in
 * turn (bench `large-zero`, 5-25 MiB), wrong for one that frees a huge buffer once
 * and goes on with what it built from it.  Python reading a 37 MB file converts it
 * through buffers of 38, 76 and 151 MB, each freed as the next fills: the 76 MB
 * one stayed cached while the 151 MB one faulted in, 243 MB at peak against 198 MB
 * for glibc, jemalloc and mimalloc (glibc unmaps blocks over 32 MiB when they are
 * freed, jemalloc purges those over 8 MiB at once).  So a freed block of
 * GL_HUGE_BLOCK or more is purged as it goes into the cache -- it stays there,
 * purged, as address space -- unless a request that big was served (half of it or
 * more) from the cache within purge_window_ms: then the program does take huge
 * blocks back, and the next one it frees stays resident.  A program churning 64
 * MiB blocks pays the faults of one round. */
#define GL_HUGE_BLOCK ((size_t)32 << 20)
static _Atomic(uint64_t) huge_reused_ms; /* the last time the cache served one; 0: never */

bool purge_large_keep_resident(size_t size) {
  if (size < GL_HUGE_BLOCK) return true;
  uint64_t last = atomic_load_explicit(&huge_reused_ms, memory_order_relaxed);
  return last != 0 && os_clock_ms() - last <= (uint64_t)option(&gl_options.purge_window_ms);
}

/* The live large bytes went up: the demand that the cache's limit follows
 * (`fresh`: bytes of it not resident before). */
static void cache_demand_rose(uint64_t now, bool purge_beyond_keep, size_t fresh) {
  pthread_mutex_lock(&cache_policy_lock);
  if (fresh) demand_took_fresh(&cache_demand, fresh, now);
  demand_set(&cache_demand, live_segment_bytes(), now);
  cache_set_limit(now);
  if (purge_beyond_keep && segment_cache_resident_bytes() != 0) {
    segment_cache_front_drain(); /* what it purges may be the youngest */
    size_t keep = demand_keep(&cache_demand, now, 2 * (size_t)option(&gl_options.retain_bytes));
    cache_purge_beyond(keep, UINT64_MAX, now);
  }
  pthread_mutex_unlock(&cache_policy_lock);
}

void purge_large_allocated(size_t size, bool from_cache, bool fresh) {
  uint64_t now = os_clock_ms();
  if (from_cache && size >= GL_HUGE_BLOCK) atomic_store_explicit(&huge_reused_ms, now ? now : 1, memory_order_relaxed);
  cache_demand_rose(now, false, fresh ? size : 0);
}

/* A large block grew in place or moved bigger.  When its new pages came from the
 * cache (segment_grow), the program is taking cached memory back: the rest waits
 * for the cache's delay like any other.  When they did not -- fresh pages faulted
 * in while an older block's resident tail sits in the cache -- cached memory
 * beyond what the demand rule keeps goes now, whatever its age: waiting would only
 * add the tail to the peak.  (A new block is different: it comes from the cache
 * when one fits, and purging on every miss cost `aligned`, whose over-aligned
 * blocks only take exact fits, 4.5% in time and 6% in faults.) */
void purge_large_grown(bool from_cache) { cache_demand_rose(os_clock_ms(), !from_cache, 0); }

void purge_large_freed(void) {
  uint64_t now = os_clock_ms();
  pthread_mutex_lock(&cache_policy_lock);
  demand_set(&cache_demand, live_segment_bytes(), now);
  cache_apply(now, pressure_active());
  pthread_mutex_unlock(&cache_policy_lock);
  purge_notify(segment_cache_resident_bytes());
}

void purge_cache_all(void) { purge_cache_keep(0); }

void purge_cache_keep(size_t keep) {
  pthread_mutex_lock(&cache_policy_lock);
  segment_cache_front_drain();
  segment_cache_purge(keep, UINT64_MAX, decommit());
  if (keep == 0) segment_cache_unmap(UINT64_MAX);
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

/* ---- Idle ----
 * No page (or cached segment) coming or going for purge_idle_ms is what an idle
 * program looks like, but a busy one can look the same: a thread that allocates and
 * frees within the pages it has, or computes between allocations, moves no page.
 * Taking that for idle purged everything it had just freed and it faulted the lot
 * back at its next phase: python (bench pyalloc) paid 22 k faults instead of 15 k
 * in most runs, depending on where its phases fell against the purger's ticks.  So
 * quiet is idle only when the thread that owns the heap (for the cache: the whole
 * process, less the purger) also used less than 1/IDLE_CPU_SHARE of a CPU between
 * two of the purger's looks at it.  A thread that runs is busy; one asleep in a
 * system call, or blocked, is not.  Heaps no thread owns (abandoned, first-class)
 * keep the quiet test alone.  The clocks are read only for queues already quiet
 * (one system call a round each), and a program that sleeps is found idle one
 * round later than before. */
#define IDLE_CPU_SHARE 8

/* Whether the thread `tid` (-1: the process less the purger) used more than its
 * share of a CPU since the mark, which moves to now.  Without a mark (the first
 * look, or activity since), it is busy. */
static bool cpu_busy_since_mark(int tid, uint64_t *mark_ns, uint64_t *mark_ms, uint64_t now) {
  uint64_t cpu, self;
  if (!os_cpu_time_ns(tid, &cpu)) return false; /* exited: nothing runs */
  if (tid == -1 && os_cpu_time_ns(0, &self)) cpu = cpu > self ? cpu - self : 0;
  bool had_mark = *mark_ms != 0 && now > *mark_ms;
  uint64_t used = cpu > *mark_ns ? cpu - *mark_ns : 0, elapsed_ns = (now - *mark_ms) * 1000000u;
  *mark_ns = cpu;
  *mark_ms = now;
  return !had_mark || used * IDLE_CPU_SHARE > elapsed_ns;
}

/* No page came or went for purge_idle_ms (activity takes the CPU mark away). */
static bool quiet_for(uint64_t activity, uint64_t *seen, uint64_t *quiet_since, uint64_t *cpu_mark_ms, uint64_t now) {
  if (activity != *seen) {
    *seen = activity;
    *quiet_since = now;
    *cpu_mark_ms = 0;
    return false;
  }
  return now - *quiet_since >= (uint64_t)option(&gl_options.purge_idle_ms);
}

static bool queue_quiet(gl_purge_queue_t *q, uint64_t now) {
  return quiet_for(atomic_load_explicit(&q->activity, memory_order_relaxed), &q->seen_activity, &q->quiet_since_ms,
                   &q->cpu_mark_ms, now);
}

static bool queue_owner_busy(gl_purge_queue_t *q, uint64_t now) {
  int tid = atomic_load_explicit(&q->owner_tid, memory_order_relaxed);
  return tid != 0 && cpu_busy_since_mark(tid, &q->cpu_mark_ns, &q->cpu_mark_ms, now);
}

static uint64_t cache_cpu_mark_ns, cache_cpu_mark_ms;

static bool cache_idle(uint64_t now) {
  return quiet_for(segment_cache_activity(), &cache_seen_activity, &cache_quiet_since_ms, &cache_cpu_mark_ms, now) &&
         !cpu_busy_since_mark(-1, &cache_cpu_mark_ns, &cache_cpu_mark_ms, now);
}

void purge_queue_set_owner(gl_purge_queue_t *q, int tid) {
  atomic_store_explicit(&q->owner_tid, tid, memory_order_relaxed);
}

static bool purge_round(uint64_t now) {
  bool pending = false;
  pressure_update(now);
  bool pressure = pressure_active();
  for (gl_purge_queue_t *q = atomic_load_explicit(&queues_all, memory_order_acquire); q; q = q->all_next) {
    if (atomic_load_explicit(&q->lost, memory_order_relaxed)) continue;
    bool quiet = queue_quiet(q, now);
    if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) == 0) continue;
    bool idle = pressure || (quiet && !queue_owner_busy(q, now));
    if (pthread_mutex_trylock(&q->segs->lock) == 0) { /* never wait for an owner */
      queue_apply(q, now, idle);
      pthread_mutex_unlock(&q->segs->lock);
    }
    if (__atomic_load_n(&q->dirty_bytes, __ATOMIC_RELAXED) != 0) pending = true;
  }
  if (segment_cache_bytes() != 0 && pthread_mutex_trylock(&cache_policy_lock) == 0) {
    bool idle = pressure || cache_idle(now);
    demand_set(&cache_demand, live_segment_bytes(), now);
    cache_apply(now, idle);
    if (pressure) segment_cache_unmap(UINT64_MAX);
    pthread_mutex_unlock(&cache_policy_lock);
  }
  if (segment_cache_bytes() != 0) pending = true; /* resident, or to unmap later */
  purge_collect_fn collect = atomic_load(&purger_collect);
  if (collect && collect(now)) pending = true;
  return pending;
}

/* After its last round with memory left, or its last wake-up from a sleep without
 * deadline, the purger keeps ticking this long before it sleeps without a deadline
 * again.  A program that queues memory now and then while it runs -- a request's
 * heap destroyed, a block freed into the cache, the purger finding nothing left an
 * instant later -- would otherwise end that sleep every time: bench `arena` (a heap
 * destroyed per request, each one's pages gone by the next round) woke it 7,300
 * times in 40,000 requests, 18,700 context switches where the other allocators
 * make one.  Ticking, it wakes 1000 / tick times a second at most, and a program
 * gone idle costs that many rounds once. */
#define PURGER_LINGER_MS 1000

static void *purger_main(void *arg) {
  (void)arg;
  uint64_t last_pending_ms = 0;
  for (;;) {
    /* Under pressure it keeps its ticks even with nothing to purge: only its rounds
     * read the cgroup files, and every thread's rules act on the flag they leave
     * (a deadline-less sleep kept pressure on long after it ended, and the next
     * frees were purged at once). */
    uint64_t now = os_clock_ms();
    bool pending = purge_round(now) || pressure_active();
    if (pending) last_pending_ms = now;
    bool linger = now - last_pending_ms < PURGER_LINGER_MS;
    os_event_lock(&purger_event);
    if (!pending && !linger) {
      /* Announce the deadline-less sleep, then look once more: memory queued by a
       * thread that did not see the announcement is found here, memory queued later
       * comes with a signal (the fences pair with purge_notify's). */
      atomic_store_explicit(&purger_sleeping, 1, memory_order_relaxed);
      purger_fence();
      os_event_unlock(&purger_event);
      pending = purge_round(os_clock_ms()) || pressure_active();
      os_event_lock(&purger_event);
      if (!pending) os_event_wait(&purger_event, UINT64_MAX);
      atomic_store_explicit(&purger_sleeping, 0, memory_order_relaxed);
      last_pending_ms = os_clock_ms(); /* woken: memory was queued, tick a while */
    } else {
      /* Half the idle time (so an idle heap is seen within 1.5 x of it), at least 10
       * ms, at most 250 ms (pressure is checked on these rounds). */
      uint64_t tick = (uint64_t)option(&gl_options.purge_idle_ms) / 2;
      tick = tick < 10 ? 10 : tick > 250 ? 250 : tick;
      os_event_wait(&purger_event, os_clock_ms() + tick);
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

size_t purge_pressure_events(void) { return atomic_load_explicit(&pressure_events, memory_order_relaxed); }

void purge_fork_child(void) {
  gl_mutex_was_free_at_fork(&cache_policy_lock);
  atomic_store(&purger_state, PURGER_NONE);
  atomic_store(&purger_sleeping, 0);
}
