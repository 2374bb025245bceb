/* internal.h: Galleon's types and the index of its internal functions.
 *
 * How memory is organised, bottom up:
 *
 *  - A *segment* is a region of address space aligned to GL_SEGMENT_SIZE (4 MiB),
 *    mapped from the OS.  Its first bytes hold the segment header with an array of
 *    page descriptors, so for any pointer p that Galleon handed out,
 *    segment = p & ~GL_SEGMENT_MASK finds the metadata without a header in front of
 *    the block.  A global segment map (one byte per 4 MiB of address space) says
 *    whether an address belongs to a segment at all, so a foreign pointer given to
 *    free() is detected instead of followed.
 *
 *  - A small segment is cut into 64 *pages* of 64 KiB, a medium one into 8 pages of
 *    512 KiB.  Each page serves blocks of one size class and keeps three free lists:
 *    `free` (malloc pops from it), `local_free` (frees by the owning thread) and
 *    `thread_free` (frees by other threads, one atomic push).  A large block (over
 *    GL_MEDIUM_MAX) gets a segment of its own holding one page.
 *
 *  - A *heap* belongs to one thread at a time.  It owns small and medium segments,
 *    keeps a queue of pages per size class and a direct table from small sizes to
 *    the page to allocate from, so malloc's fast path is: table lookup, pop the free
 *    list, return.  A thread that exits abandons its heap; the next new thread takes
 *    it over whole, and meanwhile other threads collect its empty pages.
 *
 *  - Free pages and free segments are *purged* (madvise) after a short delay, so a
 *    program that frees memory gives it back to the OS.
 *
 * Layers (see src/README.md): os_linux -> segment -> page -> heap -> alloc/aligned/
 * realloc/large -> api -> override.  options and stats are read by all.
 */
#ifndef GALLEON_INTERNAL_H
#define GALLEON_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "galleon.h"

#define GL_HIDDEN __attribute__((visibility("hidden")))
#define gl_likely(x) __builtin_expect(!!(x), 1)
#define gl_unlikely(x) __builtin_expect(!!(x), 0)
#define GL_NOINLINE __attribute__((noinline))
#define GL_COLD __attribute__((cold, noinline))
#define GL_INLINE static inline __attribute__((always_inline))

/* ---- Geometry ---- */
#define GL_SEGMENT_SHIFT 22
#define GL_SEGMENT_SIZE ((size_t)1 << GL_SEGMENT_SHIFT)
#define GL_SEGMENT_MASK (GL_SEGMENT_SIZE - 1)
#define GL_SMALL_PAGE_SHIFT 16 /* 64 KiB */
#define GL_MEDIUM_PAGE_SHIFT 19 /* 512 KiB */
#define GL_SMALL_PAGES (GL_SEGMENT_SIZE >> GL_SMALL_PAGE_SHIFT)
#define GL_MEDIUM_PAGES (GL_SEGMENT_SIZE >> GL_MEDIUM_PAGE_SHIFT)
#define GL_SMALL_MAX ((size_t)8 * 1024)    /* largest block in a small page */
#define GL_MEDIUM_MAX ((size_t)128 * 1024) /* largest block in a medium page */
#define GL_DIRECT_MAX ((size_t)1024)       /* sizes served through heap->direct */
#define GL_DIRECT_COUNT (GL_DIRECT_MAX / 16 + 1)
#define GL_CLASS_COUNT 49 /* class 0 unused; 1..8: 16..128 step 16; then 4 per power of two */
#define GL_PAGE_START_ALIGN ((size_t)16 * 1024) /* every page start is a multiple of this */
#define GL_LARGE_OFFSET ((size_t)4096) /* where a large block starts in its segment */
#define GL_MAX_ALLOC ((size_t)PTRDIFF_MAX)
/* Alignments above this fail with ENOMEM, like requests the address space cannot
 * hold: every alignment and size computation stays far from wrapping. */
#define GL_MAX_ALIGN ((size_t)1 << 40)
#define GL_ADDRESS_BITS 47
#define GL_SEGMAP_UNITS ((size_t)1 << (GL_ADDRESS_BITS - GL_SEGMENT_SHIFT))
/* The segment map is two-level so that only the parts covering used address space
 * are mapped: 512 chunks of 64 Ki entries, each chunk covering 256 GiB. */
#define GL_SEGMAP_CHUNK_SHIFT 16
#define GL_SEGMAP_CHUNK_UNITS ((size_t)1 << GL_SEGMAP_CHUNK_SHIFT)
#define GL_SEGMAP_CHUNKS (GL_SEGMAP_UNITS >> GL_SEGMAP_CHUNK_SHIFT)
#define GL_MIN_ALIGN 16

/* Segment map entries: what the 4 MiB unit at an address is.  For a small or
 * medium segment the entry is its page shift, so free() learns "ours, with pages"
 * and the shift to find the page from one byte. */
enum {
  GL_SEGMAP_NONE = 0,                     /* not Galleon's */
  GL_SEGMAP_LARGE = 2,                    /* start of a large segment */
  GL_SEGMAP_TAIL = 3,                     /* a later unit of a large segment */
  GL_SEGMAP_SMALL = GL_SMALL_PAGE_SHIFT,  /* start of a small segment */
  GL_SEGMAP_MEDIUM = GL_MEDIUM_PAGE_SHIFT /* start of a medium segment */
};
#define GL_SEGMAP_PAGES_BIT 16 /* set in exactly the SMALL and MEDIUM entries */
_Static_assert((GL_SEGMAP_SMALL & GL_SEGMAP_PAGES_BIT) && (GL_SEGMAP_MEDIUM & GL_SEGMAP_PAGES_BIT) &&
                   !(GL_SEGMAP_LARGE & GL_SEGMAP_PAGES_BIT) && !(GL_SEGMAP_TAIL & GL_SEGMAP_PAGES_BIT),
               "segment map encoding");

typedef enum { GL_KIND_SMALL = 0, GL_KIND_MEDIUM = 1, GL_KIND_LARGE = 2 } gl_kind_t;

/* A free block: the link, and a mark that says "this block is free" so a second
 * free of it is caught in O(1).  Every block is at least 16 bytes. */
typedef struct gl_block_s {
  struct gl_block_s *next;
  uintptr_t freed_mark; /* page->key while free; 0 once allocated */
} gl_block_t;

/* page->thread_free holds the list head with this state in its low two bits. */
#define GL_TF_NORMAL ((uintptr_t)0)
#define GL_TF_FULL ((uintptr_t)1)     /* page is on its heap's full list: notify on free */
#define GL_TF_NOTIFIED ((uintptr_t)2) /* a remote free has queued it on heap->notified */
#define GL_TF_STATE ((uintptr_t)3)

typedef enum {
  GL_PAGE_FREE_CLEAN = 0, /* unused, memory purged (or never touched) */
  GL_PAGE_FREE_DIRTY = 1, /* unused, memory still resident: on heap->purge */
  GL_PAGE_IN_USE = 2,     /* serves blocks of one size class */
} gl_page_state_t;

struct gl_heap_s;

typedef struct gl_page_s {
  /* First cache line: everything the malloc and free fast paths touch. */
  gl_block_t *free;  /* blocks ready to hand out */
  uint32_t used;     /* blocks handed out (including remote frees not yet collected) */
  uint8_t in_full;      /* on heap->full */
  uint8_t has_aligned;  /* some block was handed out at an interior, aligned address */
  uint8_t free_is_zero; /* blocks on `free` are zero but for their two list words */
  uint8_t mem_is_zero;  /* never-carved memory of this page is zero */
  struct gl_heap_s *fast_owner; /* == heap while a local free may take the fast path;
                                   NULL while the page is unused or on the full list */
  uint8_t *start;               /* first block */
  uint64_t block_magic;         /* floor((2^64 - 1) / block_size) + 2: see gl_page_is_block_start */
  uint64_t carved_limit;        /* capacity * (block_size * block_magic mod 2^64); 0 unused */
  uintptr_t key;                /* secret for freed marks */
  gl_block_t *local_free;       /* frees by the owning thread */
  /* Second cache line: remote frees and slow paths. */
  struct gl_heap_s *heap;         /* owner; NULL while the page is unused */
  _Atomic(uintptr_t) thread_free; /* frees by other threads | GL_TF_* state */
  uint32_t block_size;
  uint32_t reserved;      /* blocks that fit in the page */
  uint8_t class_idx;
  uint8_t index;          /* in the segment */
  uint8_t state;          /* gl_page_state_t */
  uint8_t kept_empty;     /* empty, but kept as the only page of its class */
  uint32_t capacity;      /* blocks carved so far (the free list grows lazily) */
  struct gl_page_s *next; /* class queue, full list or purge queue */
  struct gl_page_s *prev;
  struct gl_page_s *notify_next; /* heap->notified stack */
  uint64_t purge_at;             /* ms: when a dirty free page is to be purged */
} gl_page_t;

_Static_assert(sizeof(gl_page_t) == 128, "page descriptors are two cache lines");

typedef struct gl_segment_s {
  uint8_t kind;       /* gl_kind_t */
  uint8_t page_shift; /* pages are 1 << page_shift bytes (large: unused) */
  uint8_t in_avail;   /* on heap->avail[kind] */
  uint8_t cached;     /* in the segment cache (freed) */
  uint8_t cache_dirty;/* cached and not purged since */
  uint32_t page_count;
  uint32_t used_pages;
  uint64_t free_mask;  /* bit i: page i unused */
  uint64_t dirty_mask; /* bit i: page i unused and resident */
  size_t mapped_size;  /* bytes mapped at this address */
  struct gl_heap_s *heap;          /* owner of a small or medium segment */
  struct gl_segment_s *next, *prev;             /* heap->segments[kind] or the cache */
  struct gl_segment_s *avail_next, *avail_prev; /* heap->avail[kind] */
  uint64_t cached_at;  /* ms */
  /* large segments: */
  size_t large_offset;   /* where the block starts */
  size_t large_usable;   /* bytes usable from there to the end of the mapping */
  size_t large_alignment;
  uint8_t large_is_zero; /* the block's memory is known to be zero */
  gl_page_t pages[] __attribute__((aligned(64)));
} gl_segment_t;

typedef struct gl_page_queue_s {
  gl_page_t *first;
  gl_page_t *last;
} gl_page_queue_t;

typedef enum {
  GL_HEAP_ACTIVE = 1,    /* a thread owns it */
  GL_HEAP_ABANDONED = 2, /* its thread exited: on the abandoned list */
  GL_HEAP_LOST = 3,      /* a fork child found it mid-change: never touched again */
} gl_heap_state_t;

typedef struct gl_heap_s {
  gl_page_t *direct[GL_DIRECT_COUNT]; /* (size + 15) / 16 -> page to allocate from */
  gl_page_queue_t queues[GL_CLASS_COUNT];
  gl_page_queue_t full;  /* pages with no free block at last look */
  gl_page_queue_t purge; /* unused dirty pages, oldest first */
  _Atomic(gl_page_t *) notified; /* pages of `full` that received remote frees */
  gl_segment_t *segments[2];     /* all small / medium segments owned */
  gl_segment_t *avail[2];        /* those with an unused page */
  size_t dirty_bytes;            /* bytes on `purge` */
  size_t kept_bytes;             /* area of empty pages kept in class queues (kept_empty) */
  uint64_t next_purge_ms;        /* earliest purge_at on `purge` */
  uint64_t rng;                  /* page keys */
  uint64_t next_collect_ms;      /* next full collection of remote frees */
  pthread_mutex_t lock;          /* segments, masks, purge queue: see segment.c */
  uint32_t slow_calls;
  _Atomic(int) state;            /* gl_heap_state_t */
  struct gl_heap_s *all_next;       /* every heap ever made (never freed) */
  struct gl_heap_s *abandoned_next; /* abandoned list */
} gl_heap_t;

/* Global state (one instance: gl_global, defined in heap.c). */
typedef struct gl_options_s {
  long purge_delay_ms;
  long purge_decommit; /* 1: MADV_DONTNEED, 0: MADV_FREE */
  long retain_bytes;   /* dirty free bytes a heap may keep before purging early */
  long segment_cache;  /* freed segments kept for reuse */
  long stats_at_exit;  /* 1: text, 2: JSON on stderr at exit */
  long verbose;
  long purge_thread;   /* 1: a background thread purges while the program is idle */
} gl_options_t;

extern GL_HIDDEN gl_options_t gl_options;
/* The segment map's top level: for chunk c, the address of its first entry minus
 * c * GL_SEGMAP_CHUNK_UNITS, so that entry `unit` is at gl_segmap[c] + unit with no
 * masking.  Every chunk starts as a shared all-NONE chunk and gets memory of its
 * own when the first segment in its 256 GiB range is mapped. */
extern GL_HIDDEN uintptr_t gl_segmap[GL_SEGMAP_CHUNKS];
extern GL_HIDDEN __thread gl_heap_t *gl_tls_heap;
extern GL_HIDDEN gl_heap_t gl_heap_empty;
extern GL_HIDDEN gl_page_t gl_page_empty;
extern GL_HIDDEN _Atomic(uint64_t) gl_cache_next_event_ms; /* segment.c: next cache purge or unmap */

/* Process-wide counters (relaxed atomics; cold paths only). */
typedef struct gl_counters_s {
  _Atomic(size_t) mapped, mapped_peak;
  _Atomic(size_t) purges, purged_bytes, mmap_calls, munmap_calls;
  _Atomic(size_t) large_blocks, large_bytes, large_in_use_bytes;
  _Atomic(size_t) segments, segments_cached, heaps, heaps_abandoned;
} gl_counters_t;
extern GL_HIDDEN gl_counters_t gl_counters;

GL_INLINE void gl_counter_add(_Atomic(size_t) *c, size_t n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}
GL_INLINE void gl_counter_sub(_Atomic(size_t) *c, size_t n) {
  atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}
GL_INLINE size_t gl_counter_get(_Atomic(size_t) *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- Segment map helpers ---- */
/* What the 4 MiB unit at addr is; NONE for any address Galleon never mapped,
 * including those at or above 2^47.  Five instructions past the shift: a compare
 * and branch, a shift and two loads. */
GL_INLINE uint8_t gl_segmap_get(uintptr_t addr) {
  size_t unit = addr >> GL_SEGMENT_SHIFT;
  if (gl_unlikely(unit >= GL_SEGMAP_UNITS)) return GL_SEGMAP_NONE;
  uintptr_t biased = __atomic_load_n(&gl_segmap[unit >> GL_SEGMAP_CHUNK_SHIFT], __ATOMIC_RELAXED);
  return atomic_load_explicit((_Atomic(uint8_t) *)(biased + unit), memory_order_relaxed);
}
GL_INLINE gl_segment_t *gl_segment_of(const void *p) {
  return (gl_segment_t *)((uintptr_t)p & ~(uintptr_t)GL_SEGMENT_MASK);
}
GL_INLINE gl_page_t *gl_page_of(gl_segment_t *seg, const void *p) {
  return &seg->pages[((uintptr_t)p - (uintptr_t)seg) >> seg->page_shift];
}

GL_INLINE size_t gl_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

/* Bytes from a page's first block to the end of the page (its geometry, in use or not). */
GL_INLINE size_t gl_page_area(const gl_page_t *page) {
  gl_segment_t *seg = gl_segment_of(page);
  uint8_t *end = (uint8_t *)seg + ((size_t)(page->index + 1) << seg->page_shift);
  return (size_t)(end - page->start);
}

/* p is the start of a block the page has carved, in one multiply and one compare,
 * no division.  With d = block_size, M = block_magic and e = d * M - 2^64 (so
 * d <= e < 2d), an offset n = q * d + r gives n * M = q * e + r * M (mod 2^64):
 * for r = 0 that is q * e, below carved_limit = capacity * e exactly when
 * q < capacity; for r > 0 it is at least M > 2^47, far above any limit (at most
 * 2^21).  Offsets below the page start (down to -16 KiB) wrap to within 2^47 of
 * 2^64.  tests/unit checks this for every class and offset.  Unused pages have
 * carved_limit 0: nothing passes.  `owner`: the caller owns the page, the only
 * thread that changes carved_limit, so it reads it plainly; others read atomically. */
GL_INLINE bool gl_page_is_block_start(const gl_page_t *page, const void *p, bool owner) {
  uint64_t offset = (uintptr_t)p - (uintptr_t)page->start;
  uint64_t limit = owner ? page->carved_limit : __atomic_load_n(&page->carved_limit, __ATOMIC_RELAXED);
  return offset * page->block_magic < limit;
}

/* The page fields of that test, for block size d and `capacity` carved blocks. */
GL_INLINE uint64_t gl_block_magic(size_t d) { return UINT64_MAX / d + 2; }
GL_INLINE uint64_t gl_carved_limit(size_t d, uint32_t capacity) {
  return (uint64_t)capacity * (uint64_t)(d * gl_block_magic(d));
}

/* ---- os_linux.c ---- */
GL_HIDDEN void os_init(void);
GL_HIDDEN size_t os_page_size(void);
GL_HIDDEN void *os_map(size_t size);
GL_HIDDEN void *os_map_aligned(size_t size, size_t alignment);
GL_HIDDEN void *os_reserve_aligned(size_t size, size_t alignment);
GL_HIDDEN bool os_commit(void *addr, size_t size);
GL_HIDDEN void os_unmap(void *addr, size_t size);
GL_HIDDEN bool os_purge(void *addr, size_t size); /* true: memory reads as zero afterwards */
GL_HIDDEN bool os_resize_in_place(void *addr, size_t old_size, size_t new_size);
GL_HIDDEN bool os_move(void *addr, size_t old_size, size_t new_size, void *target);
GL_HIDDEN uint64_t os_clock_ms(void);
GL_HIDDEN uint64_t os_random(void);
GL_HIDDEN void os_write(int fd, const char *text, size_t len);
GL_HIDDEN const char *os_getenv(const char *name);

/* ---- options.c ---- */
GL_HIDDEN void options_init(void);

/* ---- check.h holds the fatal-error path ---- */

/* ---- segment.c ---- */
GL_HIDDEN gl_page_t *segment_page_alloc(gl_heap_t *heap, gl_kind_t kind, bool *is_zero);
GL_HIDDEN void segment_page_free(gl_heap_t *heap, gl_page_t *page);
GL_HIDDEN void segment_purge_due(gl_heap_t *heap, uint64_t now, bool force);
GL_HIDDEN bool segment_purge_try(gl_heap_t *heap, uint64_t now);
GL_HIDDEN size_t segment_cache_dirty_bytes(void);
GL_HIDDEN gl_segment_t *segment_large_alloc(size_t size, size_t alignment, bool *is_zero);
GL_HIDDEN void segment_large_free(gl_segment_t *seg);
GL_HIDDEN gl_segment_t *segment_resize(gl_segment_t *seg, size_t new_size);
GL_HIDDEN void segment_cache_collect(uint64_t now, bool force);
GL_HIDDEN bool segment_map_reserve(const void *addr, size_t size);
GL_HIDDEN void segment_map_set(gl_segment_t *seg, size_t mapped_size, uint8_t kind_value);
GL_HIDDEN void segment_fork_child(void);
GL_HIDDEN gl_segment_t *segment_find(const void *p);
GL_HIDDEN void segment_cache_stats(size_t *count, size_t *bytes, size_t *dirty_bytes);

/* ---- page.c ---- */
GL_HIDDEN void page_init(gl_heap_t *heap, gl_page_t *page, uint8_t class_idx, bool mem_is_zero);
GL_HIDDEN bool page_extend(gl_page_t *page);
GL_HIDDEN void page_collect(gl_page_t *page);
GL_HIDDEN void page_free_remote(gl_page_t *page, gl_block_t *block);

/* ---- heap.c ---- */
GL_HIDDEN gl_heap_t *heap_get_or_init(void);
GL_HIDDEN void *heap_malloc_generic(size_t size, gl_heap_t *heap, bool zero);
GL_HIDDEN void heap_page_retire(gl_heap_t *heap, gl_page_t *page);
GL_HIDDEN void heap_block_freed_last(void *p);
GL_HIDDEN void heap_page_unfull(gl_heap_t *heap, gl_page_t *page);
GL_HIDDEN void heap_collect(gl_heap_t *heap, bool force);
GL_HIDDEN void heap_collect_abandoned(bool force);
GL_HIDDEN uint64_t heap_abandoned_next_ms(void);
GL_HIDDEN void heap_process_init(void);
GL_HIDDEN gl_heap_t *heap_registry_first(void);
GL_HIDDEN bool heap_is_lost(gl_heap_t *heap);

/* ---- alloc.c ---- */
GL_HIDDEN void *alloc_malloc(size_t size);
GL_HIDDEN void *alloc_calloc(size_t count, size_t size);
GL_HIDDEN void alloc_free(void *p);
GL_HIDDEN size_t alloc_usable_size(const void *p);
GL_HIDDEN void *alloc_block_start(gl_page_t *page, const void *p);
GL_HIDDEN void alloc_free_slow(void *p, const char *what);
GL_HIDDEN gl_page_t *alloc_check_block(const void *p, const char *what, bool want_live, void **block_out);

/* ---- large.c ---- */
GL_HIDDEN void *large_alloc(size_t size, size_t alignment, bool zero);
GL_HIDDEN void large_free(gl_segment_t *seg, void *p);
GL_HIDDEN void *large_realloc(gl_segment_t *seg, void *p, size_t size);

/* ---- purge.c ---- */
GL_HIDDEN void purge_notify(size_t dirty_bytes);
GL_HIDDEN void purge_fork_child(void);

/* ---- aligned.c ---- */
GL_HIDDEN void *aligned_alloc_impl(size_t alignment, size_t size, bool zero);

/* ---- realloc.c ---- */
GL_HIDDEN void *realloc_impl(void *p, size_t size);


#endif /* GALLEON_INTERNAL_H */
