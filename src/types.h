/* types.h: Galleon's geometry and every type shared between files (layer 0: it
 * declares no function of another file).
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
 *  - Unused pages and cached segments are *purged* (their memory returned to the OS)
 *    by the policy in purge.c: what recent demand says will be reused stays
 *    resident, the rest goes after a short delay, everything goes when the program
 *    is idle.
 *
 * Layers, bottom up (src/README.md; tests/layering checks the includes):
 *   types -> os -> check, options -> sizeclass -> segment -> page -> purge -> large
 *   -> heap -> alloc -> api, stats -> override
 */
#ifndef GALLEON_TYPES_H
#define GALLEON_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "galleon.h"

#define GL_HIDDEN __attribute__((visibility("hidden")))
#define gl_likely(x) __builtin_expect(!!(x), 1)
#define gl_unlikely(x) __builtin_expect(!!(x), 0)
#define GL_NOINLINE __attribute__((noinline))
#define GL_COLD __attribute__((cold, noinline))
#define GL_INLINE static inline __attribute__((always_inline))

/* The secure build (libgalleon-secure, compiled with -DGALLEON_SECURE=1; see
 * docs/SECURITY.md and secure.c): canaries, freed-block patterns, a quarantine,
 * shuffled carving, guard pages.  In the default build GL_SECURE is 0, every
 * `if (GL_SECURE)` folds away and the #if'd fields below do not exist, so its code
 * is the same instructions as without any of it. */
#ifdef GALLEON_SECURE
#define GL_SECURE 1
#else
#define GL_SECURE 0
#endif

/* ---- Geometry ---- */
#define GL_SEGMENT_SHIFT 22
#define GL_SEGMENT_SIZE ((size_t)1 << GL_SEGMENT_SHIFT)
#define GL_SEGMENT_MASK (GL_SEGMENT_SIZE - 1)
#define GL_SMALL_PAGE_SHIFT 16 /* 64 KiB */
#define GL_MEDIUM_PAGE_SHIFT 19 /* 512 KiB */
#define GL_SMALL_PAGES (GL_SEGMENT_SIZE >> GL_SMALL_PAGE_SHIFT)
#define GL_PAGE_SLOT_SHIFT GL_SMALL_PAGE_SHIFT /* page descriptors: one slot per 64 KiB */
#define GL_PAGE_SLOTS GL_SMALL_PAGES
#define GL_MEDIUM_PAGES (GL_SEGMENT_SIZE >> GL_MEDIUM_PAGE_SHIFT)
#define GL_SMALL_MAX ((size_t)8 * 1024)    /* largest block in a small page */
#define GL_MEDIUM_MAX ((size_t)128 * 1024) /* largest block in a medium page */
#define GL_DIRECT_MAX ((size_t)8192)       /* sizes served through heap->direct: every small class */
#define GL_DIRECT_COUNT (GL_DIRECT_MAX / 16 + 1)
#define GL_CLASS_COUNT 41 /* class 0 unused; see sizeclass.h */
#define GL_PAGE_START_ALIGN ((size_t)16 * 1024) /* every page start is a multiple of this */
#define GL_LARGE_OFFSET ((size_t)4096) /* the least offset of a large block in its segment */
#define GL_CARVE_BYTES ((size_t)4096) /* a page carves about this much at a time (page_extend) */
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
/* The secure build: room after every block of a page for its canary (8 bytes
 * right after the requested size) and its size word (the block's last 8), and
 * the quarantine's bounds per thread heap. */
#define GL_SECURE_TRAILER ((size_t)16)
#define GL_QUARANTINE_SLOTS 256
#define GL_QUARANTINE_BYTES ((size_t)512 * 1024)
/* Freed and never-used blocks of the secure build hold this byte. */
#define GL_SECURE_FILL 0xdb
#define GL_SECURE_FILL_WORD ((uint64_t)0xdbdbdbdbdbdbdbdbull)

_Static_assert(GL_SMALL_PAGES == 64 && GL_MEDIUM_PAGES == 8, "page masks are 64-bit words");
_Static_assert(GL_SMALL_MAX * 8 <= ((size_t)1 << GL_SMALL_PAGE_SHIFT), "small pages hold 8 blocks or more");
_Static_assert(GL_MEDIUM_MAX * 4 <= ((size_t)1 << GL_MEDIUM_PAGE_SHIFT), "medium pages hold 4 blocks or more");
_Static_assert(GL_PAGE_START_ALIGN % GL_MIN_ALIGN == 0, "page starts keep blocks aligned");

/* Segment map entries: what the 4 MiB unit at an address is.  For a small or
 * medium segment the entry is its page shift (bit 4 set in both), so free() learns
 * "ours, with pages" from one byte. */
enum {
  GL_SEGMAP_NONE = 0,                     /* not Galleon's */
  GL_SEGMAP_LARGE = 2,                    /* start of a large segment */
  GL_SEGMAP_TAIL = 3,                     /* a later unit of a large segment */
  GL_SEGMAP_SMALL = GL_SMALL_PAGE_SHIFT,  /* start of a small segment */
  GL_SEGMAP_MEDIUM = GL_MEDIUM_PAGE_SHIFT /* start of a medium segment */
};
#define GL_SEGMAP_PAGES_BIT 16 /* set in exactly the SMALL and MEDIUM entries */
_Static_assert((GL_SEGMAP_SMALL & GL_SEGMAP_PAGES_BIT) != 0 && (GL_SEGMAP_MEDIUM & GL_SEGMAP_PAGES_BIT) != 0 &&
                   (GL_SEGMAP_LARGE & GL_SEGMAP_PAGES_BIT) == 0 && (GL_SEGMAP_TAIL & GL_SEGMAP_PAGES_BIT) == 0,
               "segment map encoding");

typedef enum { GL_KIND_SMALL = 0, GL_KIND_MEDIUM = 1, GL_KIND_LARGE = 2 } gl_kind_t;

/* ---- An intrusive doubly-linked list ----
 * The one list of the code base: class queues, the full list, purge queues, a
 * heap's segments, segments with a free page, the segment cache. */
typedef struct gl_link_s {
  struct gl_link_s *next, *prev;
} gl_link_t;
typedef struct gl_list_s {
  gl_link_t *first, *last;
} gl_list_t;

#define gl_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

GL_INLINE void gl_list_push_back(gl_list_t *list, gl_link_t *e) {
  e->next = NULL;
  e->prev = list->last;
  if (list->last) list->last->next = e;
  else list->first = e;
  list->last = e;
}
GL_INLINE void gl_list_push_front(gl_list_t *list, gl_link_t *e) {
  e->prev = NULL;
  e->next = list->first;
  if (list->first) list->first->prev = e;
  else list->last = e;
  list->first = e;
}
GL_INLINE void gl_list_remove(gl_list_t *list, gl_link_t *e) {
  if (e->prev) e->prev->next = e->next;
  else list->first = e->next;
  if (e->next) e->next->prev = e->prev;
  else list->last = e->prev;
  e->next = e->prev = NULL;
}

/* ---- Blocks and pages ---- */

/* A free block: the link to the next block of its list, and a mark that says
 * "this block is free" so a second free of it is caught in O(1).  Both are keyed
 * (page.h, "Links and marks"): `link` is never a plain pointer, and only page.h's
 * functions read or write it.  Every block is at least 16 bytes. */
typedef struct gl_block_s {
  uintptr_t link;       /* the next block, encoded: page_block_next, page_block_set_next */
  uintptr_t freed_mark; /* page_freed_mark() while free; 0 once allocated */
} gl_block_t;

/* page->thread_free holds the list head with this state in its low two bits and
 * the number of blocks on the list in its top 16 (a block address has at most
 * GL_ADDRESS_BITS bits, a page fewer than 2^16 blocks): the owner takes the list
 * and its length in one exchange, without walking it. */
#define GL_TF_NORMAL ((uintptr_t)0)
#define GL_TF_FULL ((uintptr_t)1)     /* page is on its heap's full list: notify on free */
#define GL_TF_NOTIFIED ((uintptr_t)2) /* a remote free has queued it on heap->notified */
#define GL_TF_STATE ((uintptr_t)3)
#define GL_TF_COUNT_SHIFT 48
#define GL_TF_COUNT_ONE ((uintptr_t)1 << GL_TF_COUNT_SHIFT)
#define GL_TF_HEAD(tf) ((tf) & (GL_TF_COUNT_ONE - 1) & ~GL_TF_STATE)
_Static_assert(GL_ADDRESS_BITS <= GL_TF_COUNT_SHIFT, "block addresses stay below the count");
_Static_assert(((size_t)1 << GL_MEDIUM_PAGE_SHIFT) / 16 < ((size_t)1 << (64 - GL_TF_COUNT_SHIFT)),
               "a page's blocks fit the count");

typedef enum {
  GL_PAGE_FREE_CLEAN = 0, /* unused, memory purged (or never touched) */
  GL_PAGE_FREE_DIRTY = 1, /* unused, memory still resident: on its heap's purge queue */
  GL_PAGE_IN_USE = 2,     /* serves blocks of one size class */
} gl_page_state_t;

struct gl_heap_s;

typedef struct gl_page_s {
  /* First cache line: everything the malloc and free fast paths touch. */
  gl_block_t *free;  /* blocks ready to hand out */
  uint32_t used;     /* blocks handed out (including remote frees not yet collected) */
  uint8_t free_push;    /* where free's fast path pushes: `free` or `local_free`, as
                           an index in words into this struct (page.h, "Where frees go") */
  uint8_t free_is_zero; /* blocks on `free` are zero but for their two list words */
  uint8_t mem_is_zero;  /* never-carved memory of this page is zero */
  uint8_t unused0;
  struct gl_heap_s *fast_free_owner; /* == owner while its thread's frees may take the
                                        fast path; NULL while unused or on the full list */
  uint8_t *start;               /* first block */
  uint64_t block_magic;         /* floor((2^64 - 1) / block_size) + 2: see page_is_block_start */
  uint64_t carved_limit;        /* capacity * (block_size * block_magic mod 2^64); 0 unused */
  uintptr_t key;                /* secret of the links and marks of its blocks (page.h) */
  gl_block_t *local_free;       /* frees by the owning thread */
  /* Second cache line: remote frees and slow paths. */
  struct gl_heap_s *owner;        /* NULL while the page is unused */
  _Atomic(uintptr_t) thread_free; /* frees by other threads | GL_TF_* state */
  uint32_t block_size;
  uint16_t reserved;      /* blocks that fit in the page */
  uint8_t on_full_list;   /* on owner->full: malloc does not look at it */
  uint8_t has_aligned;    /* some block was handed out at an interior, aligned address */
  uint8_t class_idx;
  uint8_t index;          /* in the segment */
  uint8_t state;          /* gl_page_state_t */
  uint8_t kept_empty;     /* empty, but kept in its class queue for reuse */
  uint32_t capacity;      /* blocks carved so far (the free list grows lazily) */
  gl_link_t link;         /* in use: class queue or full list; dirty: purge queue */
  struct gl_page_s *notify_next; /* owner->notified stack */
  union {
    uint64_t dirty_since; /* unused and dirty: ms when it became so (it waits purge_delay_ms) */
    struct {              /* in use, heap profiler on (heap.c, "Sampling"): */
      uint32_t sample_listed; /* blocks of `free` charged when it was handed over */
      uint32_t sample_added;  /* blocks gathered onto `free` since */
    };
  };
} gl_page_t;

_Static_assert(sizeof(gl_page_t) == 128, "page descriptors are two cache lines");
_Static_assert(((size_t)1 << GL_SMALL_PAGE_SHIFT) / 16 <= UINT16_MAX &&
                   ((size_t)1 << GL_MEDIUM_PAGE_SHIFT) / (GL_SMALL_MAX + 16) <= UINT16_MAX,
               "a page's block count fits `reserved`");
_Static_assert(offsetof(gl_page_t, free) % sizeof(void *) == 0 && offsetof(gl_page_t, local_free) % sizeof(void *) == 0,
               "free_push names either list by its index in words");
_Static_assert(offsetof(gl_page_t, owner) == 64, "the fast paths' fields fill the first cache line");

/* ---- Segments ---- */

typedef enum {
  GL_SEGMENT_LIVE = 0,        /* owned by a heap, or holding a large block */
  GL_SEGMENT_CACHED_DIRTY,    /* in the segment cache, memory resident */
  GL_SEGMENT_CACHED_ZERO,     /* in the cache, purged: reads as zero */
  GL_SEGMENT_CACHED_LAZY,     /* in the cache, purged lazily (MADV_FREE): contents unknown */
} gl_segment_state_t;

typedef struct gl_segment_s {
  uint8_t kind;        /* gl_kind_t */
  uint8_t page_shift;  /* pages are 1 << page_shift bytes (large: unused) */
  uint8_t in_avail;    /* on its set's avail list */
  uint8_t cache_state; /* gl_segment_state_t */
  uint32_t page_count;
  uint32_t slot_offset_mask; /* small and medium: the bits of (address >> 9) that
                                make the byte offset of the address's page's slot
                                in pages[] (segment_page_of) */
  uint32_t used_pages;
  uint64_t free_mask;  /* bit i: page i unused */
  uint64_t dirty_mask; /* bit i: page i unused and resident */
  size_t mapped_size;  /* bytes mapped at this address */
  struct gl_heap_s *heap;  /* owner of a small or medium segment; of a large one only
                              when a first-class heap allocated it */
  gl_link_t link;          /* its set's segment list, or the segment cache */
  gl_link_t avail_link;    /* its set's list of segments with an unused page */
  uint64_t cached_at;      /* ms */
  /* large segments: */
  size_t large_offset;   /* where the block starts */
  size_t large_usable;   /* bytes usable from there to the end of the mapping */
  size_t large_alignment;
  uint8_t large_is_zero; /* the block's memory is known to be zero */
  uint8_t large_moved_in; /* pieces of cached segments moved in (segment_grow,
                             segment_assemble), each a kernel mapping of its own;
                             saturates at 255 */
  size_t large_moved_from; /* the offset of the lowest page moved in (when
                              large_moved_in): below it, one mapping */
#if GL_SECURE
  size_t large_requested; /* the size asked for: its canary follows it */
  uint8_t *large_guard;   /* the PROT_NONE page after the block, or NULL */
  uint8_t page_guards;    /* medium: bit i set while page i's guard is PROT_NONE */
#endif
  /* One descriptor slot per 64 KiB of the segment (GL_PAGE_SLOTS), whatever the
   * page size: page i sits in slot i << (page_shift - GL_PAGE_SLOT_SHIFT), so
   * medium page i in slot 8i, and the slots between stay zero.  free() finds a
   * block's page with one mask for both kinds (segment.h, segment_page_of). */
  gl_page_t pages[] __attribute__((aligned(64)));
} gl_segment_t;

/* The small and medium segments of one heap.  `lock` guards these lists, the page
 * masks of their segments and the heap's purge queue: the owner takes it when a
 * page enters or leaves use (not per block); the purger and statistics take it to
 * look at a heap they do not own. */
typedef struct gl_segset_s {
  pthread_mutex_t lock;
  gl_list_t segments[2]; /* small, medium */
  gl_list_t avail[2];    /* those with an unused page */
} gl_segset_t;

/* ---- Purging (purge.c) ---- */

/* Recent demand: the highest value of `current` in each of the last
 * GL_DEMAND_SLOTS time slots of a window that lengthens when memory purged as
 * beyond it is faulted back soon after (purge.c, "Recent demand"). */
#define GL_DEMAND_SLOTS 8
typedef struct gl_demand_s {
  size_t current;
  size_t slot_peak[GL_DEMAND_SLOTS];
  uint64_t slot;      /* number of the newest slot (time / slot length) */
  uint64_t window_ms;       /* the window's length, when longer than ... */
  uint64_t learned_from_ms; /* ... purge_window_ms, which was this then */
  uint64_t resized_ms;      /* when it last changed */
  uint64_t purged_ms;                   /* the last purge of memory beyond it */
  size_t purged_bytes, refaulted_bytes; /* what this episode purged, and of it faulted back */
} gl_demand_t;

/* A heap's unused resident pages, and what its recent demand says to keep. */
typedef struct gl_purge_queue_s {
  gl_list_t pages;          /* dirty unused pages, oldest first */
  size_t dirty_bytes;       /* their area (read without the lock by the purger) */
  gl_demand_t demand;       /* bytes of pages in use */
  _Atomic(uint64_t) activity; /* bumped when a page enters or leaves use */
  uint64_t seen_activity;   /* the purger's last look at `activity` ... */
  uint64_t quiet_since_ms;  /* ... and since when it has not changed */
  _Atomic(int) owner_tid;   /* the owning thread's kernel id; 0: none (purge.c, "idle") */
  uint64_t cpu_mark_ns, cpu_mark_ms; /* the purger's last reading of that thread's CPU time */
  _Atomic(int) lost;        /* fork child: a thread died holding its lock */
  gl_segset_t *segs;        /* guarded by segs->lock */
  struct gl_purge_queue_s *all_next; /* every queue ever registered (never freed) */
} gl_purge_queue_t;

/* ---- Heaps ---- */

typedef enum {
  GL_HEAP_ACTIVE = 1,    /* a thread owns it */
  GL_HEAP_ABANDONED = 2, /* its thread exited: on the abandoned list */
  GL_HEAP_LOST = 3,      /* a fork child found it mid-change: never touched again */
  GL_HEAP_DESTROYED = 4, /* a first-class heap destroyed: kept for reuse by the next one */
} gl_heap_state_t;

typedef struct gl_heap_s {
  gl_page_t *direct[GL_DIRECT_COUNT]; /* (size + 15) / 16 -> page to allocate from */
  gl_list_t queues[GL_CLASS_COUNT];   /* pages of each class, the one to allocate from first */
  gl_list_t full;                     /* pages with no free block at last look */
  gl_page_t *full_waiting[GL_CLASS_COUNT]; /* per class: a page of `full` holding owner
                                              frees too few to bring it back (heap.c) */
  _Atomic(gl_page_t *) notified;      /* pages of `full` that received remote frees */
  gl_segset_t segs;
  gl_purge_queue_t purge;
  size_t kept_bytes;                  /* area of empty pages kept in class queues */
  uint64_t rng;                       /* page keys */
  uint64_t next_sweep_ms;             /* next sweep of remote frees and empty pages */
  uint32_t slow_calls;
  uint8_t first_class;                /* made by galleon_heap_new, not a thread's */
  uint32_t sample_generation;         /* heap profiler: the start that drew sample_left */
  int64_t sample_left;                /* heap profiler: bytes to allocate before the next sample */
  gl_list_t large_blocks;             /* first-class: its large segments (under segs.lock) */
#if GL_SECURE
  /* Freed blocks waiting before they go back to their pages' lists (heap.c,
   * "Quarantine"): a ring, oldest at quarantine_head, each block with its page. */
  uint32_t quarantine_head, quarantine_count;
  size_t quarantine_bytes;
  struct gl_quarantined_s {
    gl_block_t *block;
    gl_page_t *page;
  } quarantine[GL_QUARANTINE_SLOTS];
#endif
  _Atomic(int) state;                 /* gl_heap_state_t */
  struct gl_heap_s *all_next;         /* every heap ever made (never freed) */
  struct gl_heap_s *abandoned_next;   /* abandoned list */
} gl_heap_t;

/* ---- Process-wide counters (relaxed atomics; cold paths only) ---- */
typedef struct gl_counters_s {
  _Atomic(size_t) mapped, mapped_peak;
  _Atomic(size_t) purges, purged_bytes, mmap_calls, munmap_calls, mremap_calls;
  _Atomic(size_t) large_blocks, large_bytes, large_in_use_bytes;
  _Atomic(size_t) large_blocks_peak, large_bytes_peak; /* most ever alive at once */
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
/* Adds n to c and raises *peak to the new value if that is higher. */
GL_INLINE void gl_counter_add_peak(_Atomic(size_t) *c, size_t n, _Atomic(size_t) *peak) {
  size_t now = atomic_fetch_add_explicit(c, n, memory_order_relaxed) + n;
  size_t old = atomic_load_explicit(peak, memory_order_relaxed);
  while (now > old && !atomic_compare_exchange_weak_explicit(peak, &old, now, memory_order_relaxed,
                                                             memory_order_relaxed)) {
  }
}

GL_INLINE size_t gl_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

#endif /* GALLEON_TYPES_H */
