/* stats.c: counters, mallinfo2, malloc_stats, malloc_info, the text and JSON dumps
 * and the heap dump.
 *
 * Counters of rare events are process-wide relaxed atomics.  What is in use is not
 * counted on the fast paths: it is read off the page descriptors, walking every
 * heap's segments under that heap's lock (which keeps the segments mapped), one
 * heap at a time; heaps lost at a fork are skipped.  The numbers of other threads'
 * pages are read while those threads run, so they are a snapshot, not an exact cut;
 * blocks freed by other threads count as in use until their page's owner collects
 * them.  No lock is held while output is written (a pipe may block).
 *
 * Nothing here allocates, except that malloc_info writes through the caller's stdio
 * stream, which may allocate its buffer (then no Galleon lock is held).
 *
 * Glibc's statistics in Galleon's terms (galleon.h, struct galleon_mallinfo, says
 * the same field by field):
 *   - one glibc "arena" is one thread heap: the small and medium segments it owns;
 *     heaps are numbered in the order they were created (0: the first);
 *   - a free block is a block slot of a page in use not handed out (freed, or not
 *     carved yet); "fast" ones are those of the size classes malloc serves from its
 *     inline fast path (blocks up to GL_DIRECT_MAX), "rest" the larger classes plus
 *     each unused page and each cached segment as one free chunk;
 *   - mmapped chunks are large blocks (a segment each).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "options.h"
#include "sizeclass.h"

/* ---- Output without stdio: a buffer flushed to a file descriptor (os_write, not
 * a cancellation point) or to a stdio stream (malloc_info only). ---- */

typedef struct out_s {
  char buf[2048]; /* small: malloc_stats may run on a small thread stack */
  size_t n;
  int fd;
  FILE *stream; /* when not NULL, instead of fd */
  bool failed;  /* a stream write failed */
} out_t;

static void out_init_fd(out_t *o, int fd) {
  o->n = 0;
  o->fd = fd;
  o->stream = NULL;
  o->failed = false;
}

static void out_flush(out_t *o) {
  if (o->n == 0) return;
  if (o->stream != NULL) {
    if (fwrite(o->buf, 1, o->n, o->stream) != o->n) o->failed = true;
  } else {
    os_write(o->fd, o->buf, o->n);
  }
  o->n = 0;
}

static void put(out_t *o, const char *s) {
  for (; *s; s++) {
    if (o->n == sizeof o->buf) out_flush(o);
    o->buf[o->n++] = *s;
  }
}

static void put_num(out_t *o, size_t v) {
  char digits[24];
  size_t n = gl_fmt_dec(digits, 0, sizeof digits, v);
  digits[n] = '\0';
  put(o, digits);
}

/* printf's %<width>zu: right-aligned in `width` columns. */
static void put_num_width(out_t *o, size_t v, size_t width) {
  char digits[24];
  size_t n = gl_fmt_dec(digits, 0, sizeof digits, v);
  digits[n] = '\0';
  for (; n < width; n++) put(o, " ");
  put(o, digits);
}

static void put_hex(out_t *o, uintptr_t v) {
  char digits[24];
  size_t n = gl_fmt_hex(digits, 0, sizeof digits, v);
  digits[n] = '\0';
  put(o, digits);
}

/* ---- Walking the heaps ---- */

/* What one heap holds (its small and medium segments). */
typedef struct heap_info_s {
  size_t system;      /* bytes mapped for its segments ... */
  size_t segments;    /* ... and how many */
  size_t in_use;      /* bytes of blocks handed out */
  size_t committed;   /* segment headers + carved blocks of pages in use + dirty unused pages */
  size_t fast_count;  /* free blocks of classes up to GL_DIRECT_MAX ... */
  size_t fast_bytes;  /* ... and their bytes */
  size_t rest_count;  /* free blocks of larger classes ... */
  size_t rest_bytes;  /* ... and their bytes */
  size_t free_pages;  /* unused pages ... */
  size_t free_page_bytes; /* ... and their area */
  size_t free_page_min, free_page_max; /* smallest and largest unused page area */
  size_t dirty_bytes; /* unused pages not purged yet */
  size_t empty_bytes; /* carved bytes of pages in use with no block handed out */
  size_t class_free[GL_CLASS_COUNT]; /* free blocks per size class */
} heap_info_t;

/* Reads one heap under its segs.lock. */
static void heap_info_read(gl_heap_t *h, heap_info_t *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_lock(&h->segs.lock);
  annotate_racy_reads_begin(); /* the pages' counters, written by their owners */
  for (int kind = 0; kind < 2; kind++) {
    for (gl_link_t *l = h->segs.segments[kind].first; l; l = l->next) {
      gl_segment_t *seg = gl_container_of(l, gl_segment_t, link);
      w->system += seg->mapped_size;
      w->segments++;
      w->committed += (size_t)(seg->pages[0].start - (uint8_t *)seg);
      for (unsigned i = 0; i < seg->page_count; i++) {
        gl_page_t *page = segment_page(seg, i);
        uint8_t state = __atomic_load_n(&page->state, __ATOMIC_RELAXED);
        if (state == GL_PAGE_IN_USE) {
          size_t block_size = __atomic_load_n(&page->block_size, __ATOMIC_RELAXED);
          size_t used = __atomic_load_n(&page->used, __ATOMIC_RELAXED);
          size_t reserved = __atomic_load_n(&page->reserved, __ATOMIC_RELAXED);
          size_t capacity = __atomic_load_n(&page->capacity, __ATOMIC_RELAXED);
          unsigned cls = __atomic_load_n(&page->class_idx, __ATOMIC_RELAXED);
          size_t free_blocks = reserved > used ? reserved - used : 0;
          w->in_use += used * block_size;
          w->committed += capacity * block_size;
          if (used == 0) w->empty_bytes += capacity * block_size;
          if (block_size <= GL_DIRECT_MAX) {
            w->fast_count += free_blocks;
            w->fast_bytes += free_blocks * block_size;
          } else {
            w->rest_count += free_blocks;
            w->rest_bytes += free_blocks * block_size;
          }
          if (cls < GL_CLASS_COUNT) w->class_free[cls] += free_blocks;
        } else {
          size_t area = segment_page_area(page);
          w->free_pages++;
          w->free_page_bytes += area;
          if (w->free_page_min == 0 || area < w->free_page_min) w->free_page_min = area;
          if (area > w->free_page_max) w->free_page_max = area;
          if (state == GL_PAGE_FREE_DIRTY) {
            w->committed += area;
            w->dirty_bytes += area;
          }
        }
      }
    }
  }
  annotate_racy_reads_end();
  pthread_mutex_unlock(&h->segs.lock);
}

/* Whether malloc_trim(0) called by this thread returns a heap's free memory: its
 * own heap and those of exited threads. */
static bool heap_is_trimmed_by_caller(gl_heap_t *h) {
  return h == gl_tls_heap || atomic_load_explicit(&h->state, memory_order_relaxed) == GL_HEAP_ABANDONED;
}

/* The whole process: every heap, the segment cache, large blocks. */
typedef struct totals_s {
  size_t system, in_use, committed;
  size_t fast_count, fast_bytes, rest_count, rest_bytes;
  size_t free_pages, free_page_bytes;
  size_t trimmable; /* free resident bytes of the heaps malloc_trim(0) would return */
  size_t cache_bytes, cache_resident, cache_segments;
} totals_t;

static void totals_add(totals_t *t, gl_heap_t *h, const heap_info_t *w) {
  t->system += w->system;
  t->in_use += w->in_use;
  t->committed += w->committed;
  t->fast_count += w->fast_count;
  t->fast_bytes += w->fast_bytes;
  t->rest_count += w->rest_count;
  t->rest_bytes += w->rest_bytes;
  t->free_pages += w->free_pages;
  t->free_page_bytes += w->free_page_bytes;
  if (heap_is_trimmed_by_caller(h)) t->trimmable += w->dirty_bytes + w->empty_bytes;
}

static void totals_finish(totals_t *t) {
  t->cache_bytes = segment_cache_bytes();
  t->cache_resident = segment_cache_resident_bytes();
  t->cache_segments = gl_counter_get(&gl_counters.segments_cached);
}

static void walk_heaps(totals_t *t) {
  memset(t, 0, sizeof *t);
  size_t quarantined = 0;
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    if (heap_is_lost(h)) continue; /* half-changed at a fork: not walked */
    heap_info_t w;
    heap_info_read(h, &w);
    totals_add(t, h, &w);
#if GL_SECURE
    quarantined += __atomic_load_n(&h->quarantine_bytes, __ATOMIC_RELAXED);
#endif
  }
  /* Secure build: quarantined blocks were freed by the program; they still count
   * in their pages' `used` (and may lie in another heap's pages), so they come off
   * the total. */
  t->in_use -= quarantined < t->in_use ? quarantined : t->in_use;
  totals_finish(t);
}

/* Calls fn(h, nr, ctx) for every heap not lost, in creation order (nr 0: the
 * first heap made).  The registry is a list, newest first, that only grows at its
 * head: the heaps reachable from one reading of the head are a fixed set, and a
 * heap's number is count - 1 - its position.  Without allocating, the list is read
 * in batches of positions, oldest batch first. */
#define HEAP_BATCH 64
typedef void (*heap_visit_fn)(gl_heap_t *h, size_t nr, void *ctx);
static void heaps_in_order(heap_visit_fn fn, void *ctx) {
  gl_heap_t *first = heap_registry_first();
  size_t count = 0;
  for (gl_heap_t *h = first; h; h = h->all_next) count++;
  for (size_t end = count; end > 0;) { /* positions [start, end), oldest last */
    size_t start = end > HEAP_BATCH ? end - HEAP_BATCH : 0;
    gl_heap_t *batch[HEAP_BATCH];
    size_t pos = 0;
    for (gl_heap_t *h = first; h && pos < end; h = h->all_next, pos++)
      if (pos >= start) batch[pos - start] = h;
    for (size_t i = end - start; i > 0; i--) {
      gl_heap_t *h = batch[i - 1];
      if (!heap_is_lost(h)) fn(h, count - 1 - (start + i - 1), ctx);
    }
    end = start;
  }
}

/* ---- galleon_stats_get, galleon_mallinfo2 ---- */

void galleon_stats_get(galleon_stats_t *out) {
  heap_process_init();
  totals_t t;
  walk_heaps(&t);
  memset(out, 0, sizeof *out);
  out->mapped = gl_counter_get(&gl_counters.mapped);
  out->mapped_peak = gl_counter_get(&gl_counters.mapped_peak);
  out->committed = t.committed + gl_counter_get(&gl_counters.large_bytes) + t.cache_resident;
  out->in_use = t.in_use + gl_counter_get(&gl_counters.large_in_use_bytes);
  out->segments = gl_counter_get(&gl_counters.segments);
  out->segments_cached = gl_counter_get(&gl_counters.segments_cached);
  out->large_blocks = gl_counter_get(&gl_counters.large_blocks);
  out->heaps = gl_counter_get(&gl_counters.heaps);
  out->heaps_abandoned = gl_counter_get(&gl_counters.heaps_abandoned);
  out->purges = gl_counter_get(&gl_counters.purges);
  out->purged_bytes = gl_counter_get(&gl_counters.purged_bytes);
  out->mmap_calls = gl_counter_get(&gl_counters.mmap_calls);
  out->munmap_calls = gl_counter_get(&gl_counters.munmap_calls);
  out->mremap_calls = gl_counter_get(&gl_counters.mremap_calls);
}

static struct galleon_mallinfo mallinfo_of(const totals_t *t) {
  struct galleon_mallinfo m;
  memset(&m, 0, sizeof m);
  m.arena = t->system + t->cache_bytes;
  m.ordblks = t->rest_count + t->free_pages + t->cache_segments;
  m.smblks = t->fast_count;
  m.hblks = gl_counter_get(&gl_counters.large_blocks);
  m.hblkhd = gl_counter_get(&gl_counters.large_bytes);
  m.usmblks = 0; /* as glibc, which has never filled it */
  m.fsmblks = t->fast_bytes;
  m.uordblks = t->in_use;
  m.fordblks = m.arena > t->in_use ? m.arena - t->in_use : 0;
  m.keepcost = t->trimmable + t->cache_resident;
  return m;
}

struct galleon_mallinfo galleon_mallinfo2(void) {
  heap_process_init();
  totals_t t;
  walk_heaps(&t);
  return mallinfo_of(&t);
}

/* ---- galleon_stats_print ---- */

static void put_field(out_t *o, const char *name, size_t v, bool json, bool last) {
  if (json) {
    put(o, "\"");
    put(o, name);
    put(o, "\":");
    put_num(o, v);
    if (!last) put(o, ",");
  } else {
    put(o, "  ");
    put(o, name);
    for (size_t len = strlen(name); len < 18; len++) put(o, " ");
    put_num(o, v);
    put(o, "\n");
  }
}

void galleon_stats_print(int fd, int json) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  out_t o;
  out_init_fd(&o, fd);
  put(&o, json ? "{\"galleon\":\"" GALLEON_VERSION_STRING "\"," : "galleon " GALLEON_VERSION_STRING " statistics\n");
  put_field(&o, "mapped", s.mapped, json, false);
  put_field(&o, "mapped_peak", s.mapped_peak, json, false);
  put_field(&o, "committed", s.committed, json, false);
  put_field(&o, "in_use", s.in_use, json, false);
  put_field(&o, "segments", s.segments, json, false);
  put_field(&o, "segments_cached", s.segments_cached, json, false);
  put_field(&o, "large_blocks", s.large_blocks, json, false);
  put_field(&o, "heaps", s.heaps, json, false);
  put_field(&o, "heaps_abandoned", s.heaps_abandoned, json, false);
  put_field(&o, "purges", s.purges, json, false);
  put_field(&o, "purged_bytes", s.purged_bytes, json, false);
  put_field(&o, "mmap_calls", s.mmap_calls, json, false);
  put_field(&o, "munmap_calls", s.munmap_calls, json, false);
  put_field(&o, "mremap_calls", s.mremap_calls, json, true);
  if (json) put(&o, "}\n");
  out_flush(&o);
}

/* ---- malloc_stats: glibc's layout, one "Arena N" per heap ---- */

static void put_stats_line(out_t *o, const char *label, size_t v) {
  put(o, label);
  put_num_width(o, v, 10);
  put(o, "\n");
}

typedef struct stats_ctx_s {
  out_t *out;
  totals_t totals;
} stats_ctx_t;

static void malloc_stats_heap(gl_heap_t *h, size_t nr, void *arg) {
  stats_ctx_t *c = arg;
  heap_info_t w;
  heap_info_read(h, &w);
  totals_add(&c->totals, h, &w);
  put(c->out, "Arena ");
  put_num(c->out, nr);
  put(c->out, ":\n");
  put_stats_line(c->out, "system bytes     = ", w.system);
  put_stats_line(c->out, "in use bytes     = ", w.in_use);
}

void galleon_malloc_stats(void) {
  heap_process_init();
  out_t o;
  out_init_fd(&o, 2);
  stats_ctx_t c = {.out = &o};
  heaps_in_order(malloc_stats_heap, &c);
  totals_finish(&c.totals);
  struct galleon_mallinfo m = mallinfo_of(&c.totals);
  put(&o, "Total (incl. mmap):\n");
  put_stats_line(&o, "system bytes     = ", m.arena + m.hblkhd);
  put_stats_line(&o, "in use bytes     = ", m.uordblks + m.hblkhd);
  put_stats_line(&o, "max mmap regions = ", gl_counter_get(&gl_counters.large_blocks_peak));
  put_stats_line(&o, "max mmap bytes   = ", gl_counter_get(&gl_counters.large_bytes_peak));
  out_flush(&o);
  galleon_stats_print(2, 0);
}

/* ---- malloc_info: glibc's XML ---- */

static void put_xml_size(out_t *o, const char *element, size_t from, size_t to, size_t total, size_t count) {
  put(o, "  <");
  put(o, element);
  put(o, " from=\"");
  put_num(o, from);
  put(o, "\" to=\"");
  put_num(o, to);
  put(o, "\" total=\"");
  put_num(o, total);
  put(o, "\" count=\"");
  put_num(o, count);
  put(o, "\"/>\n");
}

static void put_xml_total(out_t *o, const char *type, size_t count, size_t size) {
  put(o, "<total type=\"");
  put(o, type);
  put(o, "\" count=\"");
  put_num(o, count);
  put(o, "\" size=\"");
  put_num(o, size);
  put(o, "\"/>\n");
}

static void put_xml_sized(out_t *o, const char *element, const char *type, size_t size) {
  put(o, "<");
  put(o, element);
  put(o, " type=\"");
  put(o, type);
  put(o, "\" size=\"");
  put_num(o, size);
  put(o, "\"/>\n");
}

/* One <size> per class of `kind` (fast: blocks up to GL_DIRECT_MAX) with free
 * blocks: the request sizes the class serves, and its free blocks. */
static void put_xml_classes(out_t *o, const heap_info_t *w, bool fast) {
  for (unsigned cls = 1; cls < GL_CLASS_COUNT; cls++) {
    size_t block_size = sizeclass_block_size(cls);
    if ((block_size <= GL_DIRECT_MAX) != fast || w->class_free[cls] == 0) continue;
    size_t from = cls == 1 ? 0 : sizeclass_block_size(cls - 1) + 1;
    put_xml_size(o, "size", from, block_size, w->class_free[cls] * block_size, w->class_free[cls]);
  }
}

static void malloc_info_heap(gl_heap_t *h, size_t nr, void *arg) {
  stats_ctx_t *c = arg;
  out_t *o = c->out;
  heap_info_t w;
  heap_info_read(h, &w);
  totals_add(&c->totals, h, &w);
  put(o, "<heap nr=\"");
  put_num(o, nr);
  put(o, "\">\n<sizes>\n");
  put_xml_classes(o, &w, true);
  /* Unused pages: free chunks with no size class yet, like glibc's unsorted bin. */
  if (w.free_pages != 0) put_xml_size(o, "unsorted", w.free_page_min, w.free_page_max, w.free_page_bytes, w.free_pages);
  put_xml_classes(o, &w, false);
  put(o, "</sizes>\n");
  put_xml_total(o, "fast", w.fast_count, w.fast_bytes);
  put_xml_total(o, "rest", w.rest_count + w.free_pages, w.rest_bytes + w.free_page_bytes);
  /* No per-heap peak is kept: max is the current size.  Segments are mapped
   * read-write whole: the address space is the mapped size, all of it accessible.
   * glibc's subheaps (the mappings of a thread arena) are its segments. */
  put_xml_sized(o, "system", "current", w.system);
  put_xml_sized(o, "system", "max", w.system);
  put_xml_sized(o, "aspace", "total", w.system);
  put_xml_sized(o, "aspace", "mprotect", w.system);
  put_xml_sized(o, "aspace", "subheaps", w.segments);
  put(o, "</heap>\n");
}

int galleon_malloc_info(int options, FILE *stream) {
  if (options != 0 || stream == NULL) {
    errno = EINVAL;
    return -1;
  }
  heap_process_init();
  out_t o;
  out_init_fd(&o, -1);
  o.stream = stream;
  stats_ctx_t c = {.out = &o};
  put(&o, "<malloc version=\"1\">\n");
  heaps_in_order(malloc_info_heap, &c);
  totals_finish(&c.totals);
  const totals_t *t = &c.totals;
  struct galleon_mallinfo m = mallinfo_of(t);
  size_t mapped_peak = gl_counter_get(&gl_counters.mapped_peak);
  put_xml_total(&o, "fast", m.smblks, m.fsmblks);
  put_xml_total(&o, "rest", m.ordblks, t->rest_bytes + t->free_page_bytes + t->cache_bytes);
  put_xml_total(&o, "mmap", m.hblks, m.hblkhd);
  put_xml_sized(&o, "system", "current", m.arena);
  put_xml_sized(&o, "system", "max", mapped_peak > m.arena ? mapped_peak : m.arena);
  put_xml_sized(&o, "aspace", "total", m.arena);
  put_xml_sized(&o, "aspace", "mprotect", m.arena);
  put(&o, "</malloc>\n");
  out_flush(&o);
  if (o.failed) {
    errno = EIO;
    return -1;
  }
  return 0;
}

/* ---- galleon_dump_pages: every heap's segments and pages, as JSON ---- */

typedef struct page_snap_s {
  uint8_t state, class_idx;
  uint32_t block_size, used, capacity, reserved;
  uint32_t start, area; /* the page's memory: offset in its segment, bytes */
  uint32_t resident;    /* bytes of it resident (segment_residency) */
} page_snap_t;

typedef struct segment_snap_s {
  uintptr_t address;
  size_t mapped_size;
  uint8_t kind, page_shift;
  bool resident_known;
  uint32_t page_count;
  size_t resident; /* the whole segment's, header included */
  page_snap_t pages[GL_SMALL_PAGES];
} segment_snap_t;

/* Copies the index-th segment of `kind` of heap h (under its lock, so that nothing
 * is written while it is held); false when there is no such segment. */
static bool segment_snapshot(gl_heap_t *h, int kind, size_t index, segment_snap_t *s) {
  bool found = false;
  pthread_mutex_lock(&h->segs.lock);
  gl_link_t *l = h->segs.segments[kind].first;
  for (size_t i = 0; l != NULL && i < index; i++) l = l->next;
  if (l != NULL) {
    gl_segment_t *seg = gl_container_of(l, gl_segment_t, link);
    s->address = (uintptr_t)seg;
    s->mapped_size = seg->mapped_size;
    s->kind = seg->kind;
    s->page_shift = seg->page_shift;
    s->page_count = seg->page_count <= GL_SMALL_PAGES ? seg->page_count : GL_SMALL_PAGES;
    annotate_racy_reads_begin(); /* as in heap_info_read */
    for (unsigned i = 0; i < s->page_count; i++) {
      gl_page_t *page = segment_page(seg, i);
      page_snap_t *p = &s->pages[i];
      p->state = __atomic_load_n(&page->state, __ATOMIC_RELAXED);
      p->class_idx = __atomic_load_n(&page->class_idx, __ATOMIC_RELAXED);
      p->block_size = __atomic_load_n(&page->block_size, __ATOMIC_RELAXED);
      p->used = __atomic_load_n(&page->used, __ATOMIC_RELAXED);
      p->capacity = __atomic_load_n(&page->capacity, __ATOMIC_RELAXED);
      p->reserved = __atomic_load_n(&page->reserved, __ATOMIC_RELAXED);
      p->start = (uint32_t)((uint8_t *)page->start - (uint8_t *)seg);
      p->area = (uint32_t)segment_page_area(page);
    }
    annotate_racy_reads_end();
    found = true;
  }
  pthread_mutex_unlock(&h->segs.lock);
  return found;
}

/* Which of the snapshot's memory is resident (mincore), after its heap's lock is
 * let go: what a page holds in RAM beside what it has carved shows where a
 * process's RSS goes (a page that served other size classes before stays resident
 * where they wrote).  Unknown when the kernel does not say (the segment left its
 * heap meanwhile and was unmapped). */
static void segment_residency(segment_snap_t *s) {
  uint8_t resident[GL_SEGMENT_SIZE / 4096];
  size_t os_page = os_page_size(), count = s->mapped_size / os_page;
  s->resident_known = count <= sizeof resident && os_resident((void *)s->address, count, resident);
  s->resident = 0;
  for (unsigned i = 0; i < s->page_count; i++) s->pages[i].resident = 0;
  if (!s->resident_known) return;
  for (size_t k = 0; k < count; k++) s->resident += (resident[k] & 1) ? os_page : 0;
  for (unsigned i = 0; i < s->page_count; i++) {
    page_snap_t *p = &s->pages[i];
    for (size_t k = p->start / os_page; k < count && k < ((size_t)p->start + p->area) / os_page; k++)
      p->resident += (resident[k] & 1) ? (uint32_t)os_page : 0;
  }
}

static void put_json_num(out_t *o, const char *name, size_t v, bool comma) {
  put(o, "\"");
  put(o, name);
  put(o, "\":");
  put_num(o, v);
  if (comma) put(o, ",");
}

static void put_segment_json(out_t *o, const segment_snap_t *s) {
  put(o, "{\"address\":\"");
  put_hex(o, s->address);
  put(o, "\",\"kind\":\"");
  put(o, s->kind == GL_KIND_SMALL ? "small" : "medium");
  put(o, "\",");
  put_json_num(o, "mapped", s->mapped_size, true);
  put_json_num(o, "page_size", (size_t)1 << s->page_shift, true);
  if (s->resident_known) put_json_num(o, "resident", s->resident, true);
  put(o, "\"pages\":[");
  for (unsigned i = 0; i < s->page_count; i++) {
    const page_snap_t *p = &s->pages[i];
    if (i) put(o, ",");
    if (p->state == GL_PAGE_IN_USE) {
      put(o, "{\"state\":\"in_use\",");
      put_json_num(o, "class", p->class_idx, true);
      put_json_num(o, "block_size", p->block_size, true);
      put_json_num(o, "used", p->used, true);
      put_json_num(o, "capacity", p->capacity, true);
      put_json_num(o, "reserved", p->reserved, s->resident_known);
    } else {
      put(o, p->state == GL_PAGE_FREE_DIRTY ? "{\"state\":\"dirty\"" : "{\"state\":\"clean\"");
      if (s->resident_known) put(o, ",");
    }
    if (s->resident_known) put_json_num(o, "resident", p->resident, false);
    put(o, "}");
  }
  put(o, "]}");
}

static const char *heap_state_name(gl_heap_t *h) {
  switch (atomic_load_explicit(&h->state, memory_order_relaxed)) {
    case GL_HEAP_ACTIVE: return "active";
    case GL_HEAP_ABANDONED: return "abandoned";
    default: return "unused"; /* being set up, or kept for reuse */
  }
}

typedef struct dump_ctx_s {
  out_t *out;
  bool any;
} dump_ctx_t;

static void heap_dump_heap(gl_heap_t *h, size_t nr, void *arg) {
  dump_ctx_t *c = arg;
  out_t *o = c->out;
  put(o, c->any ? ",\n{" : "\n{");
  c->any = true;
  put_json_num(o, "nr", nr, true);
  put(o, "\"state\":\"");
  put(o, heap_state_name(h));
  put(o, "\",\"self\":");
  put(o, h == gl_tls_heap ? "true" : "false");
  put(o, ",\"segments\":[");
  bool first_seg = true;
  for (int kind = 0; kind < 2; kind++) {
    segment_snap_t snap;
    for (size_t index = 0; segment_snapshot(h, kind, index, &snap); index++) {
      segment_residency(&snap);
      put(o, first_seg ? "\n" : ",\n");
      first_seg = false;
      put_segment_json(o, &snap);
    }
  }
  put(o, "]}");
}

void galleon_dump_pages(int fd) {
  heap_process_init();
  out_t o;
  out_init_fd(&o, fd);
  put(&o, "{\"galleon\":\"" GALLEON_VERSION_STRING "\",\"format\":\"heap\",");
  put_json_num(&o, "segment_size", GL_SEGMENT_SIZE, true);
  put_json_num(&o, "direct_max", GL_DIRECT_MAX, true);
  put(&o, "\n\"heaps\":[");
  dump_ctx_t c = {.out = &o, .any = false};
  heaps_in_order(heap_dump_heap, &c);
  put(&o, "],\n\"large\":{");
  put_json_num(&o, "blocks", gl_counter_get(&gl_counters.large_blocks), true);
  put_json_num(&o, "bytes", gl_counter_get(&gl_counters.large_bytes), true);
  put_json_num(&o, "in_use_bytes", gl_counter_get(&gl_counters.large_in_use_bytes), false);
  put(&o, "},\n\"cache\":{");
  put_json_num(&o, "segments", gl_counter_get(&gl_counters.segments_cached), true);
  put_json_num(&o, "bytes", segment_cache_bytes(), true);
  put_json_num(&o, "resident_bytes", segment_cache_resident_bytes(), false);
  put(&o, "}}\n");
  out_flush(&o);
}

__attribute__((destructor)) static void stats_at_exit(void) {
  long mode = gl_options.stats_at_exit;
  if (mode == 1) galleon_stats_print(2, 0);
  else if (mode == 2) galleon_stats_print(2, 1);
}
