/* stats.c: counters, mallinfo2, malloc_stats, the text and JSON dumps.
 *
 * Counters of rare events are process-wide relaxed atomics.  What is in use is not
 * counted on the fast paths: it is read off the page descriptors, walking every
 * heap's segments under that heap's lock (which keeps the segments
 * mapped).  The numbers of other threads' pages are read while those threads run,
 * so they are a snapshot, not an exact cut.  Nothing here allocates.
 */
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "options.h"

typedef struct walk_s {
  size_t in_use;      /* bytes of blocks handed out in small and medium pages */
  size_t committed;   /* headers + pages in use + dirty free pages */
  size_t free_pages;  /* unused pages in segments */
  size_t dirty_bytes; /* unused pages still resident */
  size_t segment_bytes;
} walk_t;

static void walk_heaps(walk_t *w) {
  memset(w, 0, sizeof *w);
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    if (heap_is_lost(h)) continue; /* half-changed at a fork: not walked */
    pthread_mutex_lock(&h->segs.lock);
    for (int kind = 0; kind < 2; kind++) {
      for (gl_link_t *l = h->segs.segments[kind].first; l; l = l->next) {
        gl_segment_t *seg = gl_container_of(l, gl_segment_t, link);
        w->segment_bytes += seg->mapped_size;
        w->committed += (size_t)(seg->pages[0].start - (uint8_t *)seg);
        for (unsigned i = 0; i < seg->page_count; i++) {
          gl_page_t *page = &seg->pages[i];
          uint8_t state = __atomic_load_n(&page->state, __ATOMIC_RELAXED);
          size_t area = segment_page_area(page);
          if (state == GL_PAGE_IN_USE) {
            w->in_use += (size_t)__atomic_load_n(&page->used, __ATOMIC_RELAXED) *
                         __atomic_load_n(&page->block_size, __ATOMIC_RELAXED);
            w->committed += (size_t)__atomic_load_n(&page->capacity, __ATOMIC_RELAXED) *
                            __atomic_load_n(&page->block_size, __ATOMIC_RELAXED);
          } else {
            w->free_pages++;
            if (state == GL_PAGE_FREE_DIRTY) {
              w->committed += area;
              w->dirty_bytes += area;
            }
          }
        }
      }
    }
    pthread_mutex_unlock(&h->segs.lock);
  }
}

void galleon_stats_get(galleon_stats_t *out) {
  heap_process_init();
  walk_t w;
  walk_heaps(&w);
  size_t cached_resident = segment_cache_resident_bytes();
  memset(out, 0, sizeof *out);
  out->mapped = gl_counter_get(&gl_counters.mapped);
  out->mapped_peak = gl_counter_get(&gl_counters.mapped_peak);
  out->committed = w.committed + gl_counter_get(&gl_counters.large_bytes) + cached_resident;
  out->in_use = w.in_use + gl_counter_get(&gl_counters.large_in_use_bytes);
  out->segments = gl_counter_get(&gl_counters.segments);
  out->segments_cached = gl_counter_get(&gl_counters.segments_cached);
  out->large_blocks = gl_counter_get(&gl_counters.large_blocks);
  out->heaps = gl_counter_get(&gl_counters.heaps);
  out->heaps_abandoned = gl_counter_get(&gl_counters.heaps_abandoned);
  out->purges = gl_counter_get(&gl_counters.purges);
  out->purged_bytes = gl_counter_get(&gl_counters.purged_bytes);
  out->mmap_calls = gl_counter_get(&gl_counters.mmap_calls);
  out->munmap_calls = gl_counter_get(&gl_counters.munmap_calls);
}

struct galleon_mallinfo galleon_mallinfo2(void) {
  heap_process_init();
  walk_t w;
  walk_heaps(&w);
  struct galleon_mallinfo m;
  memset(&m, 0, sizeof m);
  m.arena = w.segment_bytes;
  m.ordblks = w.free_pages;
  m.hblks = gl_counter_get(&gl_counters.large_blocks);
  m.hblkhd = gl_counter_get(&gl_counters.large_bytes);
  m.usmblks = gl_counter_get(&gl_counters.mapped_peak);
  m.uordblks = w.in_use;
  m.fordblks = w.segment_bytes > w.in_use ? w.segment_bytes - w.in_use : 0;
  m.keepcost = w.dirty_bytes + segment_cache_resident_bytes();
  return m;
}

typedef struct line_s {
  char buf[2048];
  size_t n;
} out_t;

static void put(out_t *o, const char *s) { o->n = gl_fmt_str(o->buf, o->n, sizeof o->buf, s); }
static void put_num(out_t *o, size_t v) { o->n = gl_fmt_dec(o->buf, o->n, sizeof o->buf, v); }
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
  out_t o = {.n = 0};
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
  put_field(&o, "munmap_calls", s.munmap_calls, json, true);
  if (json) put(&o, "}\n");
  os_write(fd, o.buf, o.n);
}

/* glibc's malloc_stats layout first (tools parse it), then Galleon's own lines. */
void galleon_malloc_stats(void) {
  struct galleon_mallinfo m = galleon_mallinfo2();
  out_t o = {.n = 0};
  put(&o, "Arena 0:\nsystem bytes     = ");
  put_num(&o, m.arena);
  put(&o, "\nin use bytes     = ");
  put_num(&o, m.uordblks);
  put(&o, "\nTotal (incl. mmap):\nsystem bytes     = ");
  put_num(&o, m.arena + m.hblkhd);
  put(&o, "\nin use bytes     = ");
  put_num(&o, m.uordblks + m.hblkhd);
  put(&o, "\nmax mmap regions = ");
  put_num(&o, m.hblks);
  put(&o, "\nmax mmap bytes   = ");
  put_num(&o, m.usmblks);
  put(&o, "\n");
  os_write(2, o.buf, o.n);
  galleon_stats_print(2, 0);
}

__attribute__((destructor)) static void stats_at_exit(void) {
  long mode = gl_options.stats_at_exit;
  if (mode == 1) galleon_stats_print(2, 0);
  else if (mode == 2) galleon_stats_print(2, 1);
}
