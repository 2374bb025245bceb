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
GALLEON_API int galleon_malloc_trim(size_t pad);
GALLEON_API int galleon_mallopt(int param, int value);
GALLEON_API void galleon_malloc_stats(void);

/* Same fields and meaning as glibc's struct mallinfo2. */
struct galleon_mallinfo {
  size_t arena;    /* bytes mapped for small and medium blocks (segments) */
  size_t ordblks;  /* number of free pages held in segments */
  size_t smblks;   /* unused (0), as in glibc */
  size_t hblks;    /* number of large blocks with a mapping of their own */
  size_t hblkhd;   /* bytes mapped for those large blocks */
  size_t usmblks;  /* peak bytes mapped from the OS */
  size_t fsmblks;  /* unused (0), as in glibc */
  size_t uordblks; /* bytes in use by the program in small and medium blocks */
  size_t fordblks; /* bytes mapped in segments but not in use */
  size_t keepcost; /* bytes of freed memory still resident, to be purged later */
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
} galleon_stats_t;

/* Fill *out with a snapshot of the whole process (all threads). */
GALLEON_API void galleon_stats_get(galleon_stats_t *out);
/* Write the statistics to file descriptor fd: human-readable, or one JSON object
 * when json is nonzero.  Never allocates. */
GALLEON_API void galleon_stats_print(int fd, int json);

/* ---- Options ----
 * Read once at start from GALLEON_<NAME> environment variables (ignored in
 * set-user-ID programs), changeable at run time (purge_thread only until the purger
 * has started).  Names: "purge_window_ms" (how far back recent demand reaches: free
 * memory up to the recent peak stays resident), "purge_delay_ms" (free memory beyond
 * that goes after this long), "purge_idle_ms" (no page coming or going this long:
 * everything goes), "retain_bytes" (kept whatever the demand), "purge_decommit"
 * (1 = MADV_DONTNEED, 0 = MADV_FREE), "segment_cache", "purge_thread" (1 = a
 * background thread returns memory while the program is idle), "stats_at_exit"
 * (1 = text, 2 = JSON), "verbose".  galleon_option_set returns 0 on success, -1 for
 * an unknown name; values are clamped to each option's range. */
GALLEON_API long galleon_option_get(const char *name);
GALLEON_API int galleon_option_set(const char *name, long value);

/* Purge now: return every free page of the calling thread, of exited threads' heaps
 * and of the segment cache to the OS.  Same as malloc_trim(0). */
GALLEON_API void galleon_collect(void);

#ifdef __cplusplus
}
#endif
#endif /* GALLEON_H */
