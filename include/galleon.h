/* galleon.h: the one installed header of the Galleon memory allocator.
 *
 * Galleon replaces the standard allocation functions (malloc, free, ...) when the
 * program links -lgalleon or runs under LD_PRELOAD=libgalleon.so.  Everything here
 * is also reachable under a galleon_ prefix, so a program can call Galleon
 * explicitly while another allocator stays the system malloc.
 */
#ifndef GALLEON_H
#define GALLEON_H

#include <stddef.h>
#include <stdio.h> /* FILE, for galleon_malloc_info */

#ifdef __cplusplus
extern "C" {
#endif

#define GALLEON_VERSION_MAJOR 0
#define GALLEON_VERSION_MINOR 1
#define GALLEON_VERSION_PATCH 0
#define GALLEON_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define GALLEON_API __attribute__((visibility("default")))
#define GALLEON_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define GALLEON_API
#define GALLEON_MALLOC_ATTR
#endif

/* ---- The standard API under the galleon_ prefix (same semantics as glibc) ---- */
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_malloc(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_calloc(size_t count, size_t size);
GALLEON_API void *galleon_realloc(void *ptr, size_t size);
GALLEON_API void *galleon_reallocarray(void *ptr, size_t count, size_t size);
GALLEON_API void galleon_free(void *ptr);
GALLEON_API void galleon_free_sized(void *ptr, size_t size);
GALLEON_API void galleon_free_aligned_sized(void *ptr, size_t alignment, size_t size);
GALLEON_API int galleon_posix_memalign(void **memptr, size_t alignment, size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_aligned_alloc(size_t alignment, size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_memalign(size_t alignment, size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_valloc(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_pvalloc(size_t size);
GALLEON_API size_t galleon_malloc_usable_size(const void *ptr);

/* malloc_trim(pad): gives the free memory of the calling thread's heap, of exited
 * threads' heaps, of destroyed first-class heaps and of the segment cache back to
 * the OS -- what mallinfo2's keepcost counts -- but for `pad` bytes, which stay
 * resident (the most recently freed).  Returns 1 when memory was returned, else 0.
 * Free memory of other running threads' heaps is theirs to return (the purge
 * rules do it).  pad 0 is galleon_collect(), which also unmaps cached segments. */
GALLEON_API int galleon_malloc_trim(size_t pad);

/* mallopt(param, value): glibc's parameters (malloc.h).  Returns 1 for each of
 * them, whatever the value (glibc refuses a few out-of-range values with 0), and 0
 * for an unknown parameter.  What each does here:
 *   M_TRIM_THRESHOLD  sets the option retain_bytes (free memory a heap keeps
 *                     resident whatever its demand; the segment cache keeps 2x);
 *                     -1 keeps everything.
 * Accepted and ignored, with the reason:
 *   M_MMAP_THRESHOLD  the large-block threshold is fixed: blocks over 128 KiB
 *                     always get a segment (a mapping) of their own, smaller ones
 *                     never do;
 *   M_MMAP_MAX        large blocks have no count limit;
 *   M_ARENA_MAX,      every thread has a heap of its own, never shared, so there
 *   M_ARENA_TEST      is no arena count to limit;
 *   M_PERTURB         filling blocks on malloc and free would cost the inline fast
 *                     paths of every program;
 *   M_MXFAST          there are no fastbins: every size class has the fast path;
 *   M_TOP_PAD         there is no sbrk heap to pad;
 *   M_CHECK_ACTION    a bad free always prints one line and aborts. */
GALLEON_API int galleon_mallopt(int param, int value);

/* malloc_stats(): glibc's layout on stderr, one "Arena N:" per heap (one per
 * thread, exited threads' heaps included, and the first-class heaps), numbered in
 * the order the heaps were made:
 *   system bytes      bytes of the heap's small and medium segments
 *   in use bytes      bytes of the blocks it has handed out
 * then "Total (incl. mmap):" with system bytes = mallinfo2's arena + hblkhd, in use
 * bytes = uordblks + hblkhd, max mmap regions = the most large blocks ever alive
 * at once, max mmap bytes = the most bytes ever mapped for them at once; then
 * galleon_stats_print's text.  Written with the raw write system call: it does not
 * allocate and is not a cancellation point. */
GALLEON_API void galleon_malloc_stats(void);

/* malloc_info(0, stream): glibc's XML (<malloc version="1">), one <heap nr="N"> per
 * heap, numbered as in malloc_stats:
 *   <sizes>: one <size from to total count> per size class with free blocks: the
 *     request sizes the class serves (from..to, to = its block size), the number
 *     of free blocks (count) and their bytes (total); unused pages, which have no
 *     size class yet, are one <unsorted> entry (from/to: smallest and largest);
 *   <total type="fast">: free blocks of the classes up to 8 KiB, served by
 *     malloc's inline fast path (smblks/fsmblks of mallinfo2);
 *   <total type="rest">: free blocks of the larger classes plus unused pages;
 *   <system type="current|max">, <aspace type="total|mprotect">: the bytes of the
 *     heap's segments (no per-heap peak is kept, so max = current; segments are
 *     mapped read-write whole, so mprotect = total); <aspace type="subheaps">: the
 *     number of its segments (glibc: the mappings of a thread arena).
 * Then the process: <total type="fast|rest"> (rest adds the segment cache, one
 * chunk per cached segment), <total type="mmap"> (large blocks: hblks, hblkhd),
 * <system type="current"> = mallinfo2's arena, <system type="max"> = the most
 * bytes ever mapped at once (large blocks included), <aspace> = arena.
 * options must be 0: otherwise -1 with errno EINVAL (as glibc's manual says; glibc
 * 2.36 itself returns EINVAL and leaves errno).  -1 with EINVAL for a NULL stream,
 * -1 with EIO when writing to the stream failed.  Writes through stdio, which may
 * allocate. */
GALLEON_API int galleon_malloc_info(int options, FILE *stream);

/* mallinfo2(): glibc's struct mallinfo2, every field in Galleon's terms.  "arena"
 * is Galleon's small and medium segments plus the segment cache; a "free block" is
 * a block slot of a page in use that is not handed out (freed, or not carved yet).
 * As in glibc, arena = uordblks + fordblks, fsmblks is part of fordblks, and
 * keepcost is part of fordblks. */
struct galleon_mallinfo {
  size_t arena;    /* bytes mapped for small and medium segments (all heaps) and for
                      freed segments kept in the segment cache */
  size_t ordblks;  /* free chunks other than fast ones: free blocks of size classes
                      over 8 KiB, plus one per unused page and per cached segment */
  size_t smblks;   /* free blocks of the size classes up to 8 KiB (those malloc's
                      inline fast path serves) */
  size_t hblks;    /* large blocks alive (over 128 KiB: a segment each) */
  size_t hblkhd;   /* bytes mapped for them */
  size_t usmblks;  /* 0, as glibc, which has never filled it (the peak of mapped
                      bytes is galleon_stats_t's mapped_peak) */
  size_t fsmblks;  /* bytes of the free blocks counted in smblks */
  size_t uordblks; /* bytes of the small and medium blocks handed out (block sizes) */
  size_t fordblks; /* arena - uordblks: free blocks, unused pages, the segment cache
                      and the segment headers (16 KiB per 4 MiB segment) */
  size_t keepcost; /* free memory still resident that malloc_trim(0) called now by
                      this thread returns: unused pages not purged yet and pages
                      with no block in use of this thread's heap and of exited
                      threads' heaps, and resident cached segments */
};
GALLEON_API struct galleon_mallinfo galleon_mallinfo2(void);

/* ---- Never-fail helpers ---- */
/* xmalloc: like malloc, but never returns NULL: on failure it prints one line on
 * stderr and exits the process with status 1.  malloc0 is calloc(1, size);
 * xmalloc0 is the never-fail malloc0. */
GALLEON_API GALLEON_MALLOC_ATTR void *xmalloc(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *malloc0(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *xmalloc0(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_xmalloc(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_malloc0(size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_xmalloc0(size_t size);

/* ---- Looking inside ---- */
/* Nonzero when ptr points at or into memory that Galleon manages. */
GALLEON_API int galleon_owns(const void *ptr);

typedef struct galleon_stats_s {
  size_t mapped;          /* bytes of address space mapped from the OS now */
  size_t mapped_peak;     /* the most that was ever mapped at once */
  size_t committed;       /* bytes mapped and not purged (an upper bound of resident) */
  size_t in_use;          /* bytes handed to the program and not yet freed (block sizes) */
  size_t segments;        /* segments alive (small, medium and large) */
  size_t segments_cached; /* freed segments kept for reuse */
  size_t large_blocks;    /* blocks with a segment of their own */
  size_t heaps;           /* thread heaps alive */
  size_t heaps_abandoned; /* heaps of exited threads not yet taken over */
  size_t purges;          /* madvise calls that returned memory */
  size_t purged_bytes;    /* bytes returned by them */
  size_t mmap_calls;      /* mappings made */
  size_t munmap_calls;    /* mappings released */
  size_t mremap_calls;    /* mappings resized or moved (mremap) */
} galleon_stats_t;

/* Fill *out with a snapshot of the whole process (all threads). */
GALLEON_API void galleon_stats_get(galleon_stats_t *out);
/* Write the statistics to file descriptor fd: human-readable, or one JSON object
 * when json is nonzero.  Never allocates. */
GALLEON_API void galleon_stats_print(int fd, int json);

/* Write a map of the heap to file descriptor fd as one JSON object (what `galleon
 * heapmap` draws): {"galleon": version, "format": "heap", "segment_size",
 * "direct_max", "heaps": [{"nr", "state": "active"|"abandoned"|"unused", "self":
 * whether it is the calling thread's, "segments": [{"address", "kind": "small"|"medium",
 * "mapped", "page_size", "resident", "pages": [{"state": "in_use", "class", "block_size",
 * "used", "capacity", "reserved", "resident"} or {"state": "dirty"|"clean",
 * "resident"}, ...]}]}], "large": {"blocks", "bytes", "in_use_bytes"}, "cache":
 * {"segments", "bytes", "resident_bytes"}}.  used: blocks handed out; capacity:
 * blocks carved so far; reserved: blocks that fit in the page; dirty: unused and
 * resident; clean: unused and purged; resident: bytes of the page (of a segment:
 * the whole segment, header included) in RAM when it was read (mincore, after the
 * heap's lock is let go; left out when the kernel does not say).  Large blocks and
 * the cache are totals (they belong to no heap).  Never allocates; takes each
 * heap's lock in turn, never while writing. */
GALLEON_API void galleon_dump_pages(int fd);

/* ---- Options ----
 * Read once at start from the environment (ignored in set-user-ID programs):
 * GALLEON_OPTIONS="name:value,name:value,..." (name=value works too), then the
 * GALLEON_<NAME> variables, which win; an unknown name or a bad value is one
 * warning line on stderr and is ignored.  Changeable at run time (purge_thread only
 * until the purger has started).  Names: "purge_window_ms" (how far back recent demand reaches: free
 * memory up to the recent peak stays resident), "purge_delay_ms" (free memory beyond
 * that goes after this long), "purge_idle_ms" (no page coming or going this long:
 * everything goes), "retain_bytes" (kept whatever the demand), "purge_decommit"
 * (1 = MADV_DONTNEED, 0 = MADV_FREE), "segment_cache", "purge_thread" (1 = a
 * background thread returns memory while the program is idle), "stats_at_exit"
 * (1 = text, 2 = JSON), "verbose", "profile_interval" (the heap profiler's mean
 * bytes between samples, 512 KiB), "profile_leaks" (1 = leak report at exit),
 * "profile_dump_mb" (also dump the profile each time live memory grows this many
 * MiB; 0 = off).  galleon_option_set returns 0 on success, -1 for
 * an unknown name; values are clamped to each option's range. */
GALLEON_API long galleon_option_get(const char *name);
GALLEON_API int galleon_option_set(const char *name, long value);

/* Purge now: return every free page of the calling thread, of exited threads' heaps
 * and of the segment cache to the OS.  Same as malloc_trim(0). */
GALLEON_API void galleon_collect(void);

/* ---- The sampling heap profiler ----
 * Samples allocations at random, on average one per profile_interval bytes (512 KiB)
 * -- every byte has the same chance, so a block of s bytes is sampled with
 * probability 1 - exp(-s / interval) -- and records the stack of each sampled
 * allocation.  Off by default, and then it costs the fast paths nothing.
 * GALLEON_PROFILE=FILE starts it at process start and writes FILE at exit (a
 * process that forks writes FILE.PID from the child).
 *   galleon_profile_start(path): start sampling; path is where galleon_profile_dump(NULL)
 *     and the exit dump write (NULL or "": no exit dump).  0, or -1 with errno.
 *   galleon_profile_dump(path): write the profile now (NULL: the start's path): path
 *     in the gperftools heap-profile format (google-pprof --text PROGRAM path reads
 *     it; so does `galleon report`), and path.collapsed, the live samples as
 *     collapsed stacks ("outer;...;inner BYTES", estimated bytes) for flame graphs.
 *     0, or -1 with errno (EINVAL: no path; the errno of open).
 *   galleon_profile_stop(): stop sampling; what was sampled stays (and is dumped).
 * Not sampled: blocks of first-class heaps, and memalign-family blocks with an
 * alignment above 16 (their bytes still count toward the next sample). */
GALLEON_API int galleon_profile_start(const char *path);
GALLEON_API int galleon_profile_dump(const char *path);
GALLEON_API void galleon_profile_stop(void);

/* ---- First-class heaps ----
 * A heap of its own, for objects that die together (a request-scoped arena):
 * allocate a request's objects from it, then drop them all in one call.
 *   - One thread at a time may allocate from a heap (any thread; the caller
 *     serialises).  Its blocks are freed with plain free() from any thread, and
 *     realloc/malloc_usable_size work on them as on any block.
 *   - galleon_heap_destroy(h) releases every block of the heap at once -- small,
 *     medium and large; h is gone.  Its pages stay ready for the next
 *     galleon_heap_new and go back to the OS when none takes them within
 *     purge_idle_ms.  Freeing a block of a destroyed heap, or racing a free with the
 *     destroy, is a use after free.
 *   - galleon_heap_delete(h): h is gone, its live blocks stay valid (freed with
 *     free() as usual); its pages go to the pool that new threads adopt.
 *   - galleon_heap_realloc moves a block into h when it must move.
 *   - galleon_heap_memalign: alignment a power of two (else NULL, EINVAL).
 * Failures return NULL with errno = ENOMEM.  A pointer that is not a live heap
 * gets one "galleon: error:" line and abort(). */
typedef struct galleon_heap_s galleon_heap_t;
GALLEON_API galleon_heap_t *galleon_heap_new(void);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_heap_malloc(galleon_heap_t *heap, size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_heap_calloc(galleon_heap_t *heap, size_t count, size_t size);
GALLEON_API void *galleon_heap_realloc(galleon_heap_t *heap, void *ptr, size_t size);
GALLEON_API GALLEON_MALLOC_ATTR void *galleon_heap_memalign(galleon_heap_t *heap, size_t alignment, size_t size);
GALLEON_API void galleon_heap_destroy(galleon_heap_t *heap);
GALLEON_API void galleon_heap_delete(galleon_heap_t *heap);

#ifdef __cplusplus
}
#endif
#endif /* GALLEON_H */
