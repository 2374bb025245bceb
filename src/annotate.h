/* annotate.h: telling Valgrind's memcheck about Galleon's blocks, and ThreadSanitizer
 * about its lock-free statistics reads (layer 2).
 *
 * Built with -DGALLEON_VALGRIND=ON (GALLEON_VALGRIND=1), Galleon describes every
 * block to memcheck: a block handed out is MALLOCLIKE (its bytes addressable and
 * undefined, or defined for calloc), a freed block FREELIKE (no access), blocks
 * carved but never handed out and the slack past each request have no access.
 * So memcheck, which cannot replace malloc in a program statically linked with
 * libgalleon.a, reports overflows, use after free, uninitialised reads, invalid
 * and double frees, and leaks inside Galleon's blocks.  Galleon's own accesses to
 * free blocks (its lists) run with memcheck's error reporting turned off.
 *
 * Without GALLEON_VALGRIND every hook compiles to nothing and GL_VALGRIND is 0, so
 * `if (GL_VALGRIND)` branches vanish from the fast paths.
 */
#ifndef GALLEON_ANNOTATE_H
#define GALLEON_ANNOTATE_H

#include "types.h"

#if defined(GALLEON_VALGRIND) && GALLEON_VALGRIND
#include <valgrind/memcheck.h>
#define GL_VALGRIND 1
/* A block of `size` bytes at p now belongs to the program. */
#define annotate_alloc(p, size, zeroed)                                      \
  do {                                                                       \
    if ((p) != NULL) VALGRIND_MALLOCLIKE_BLOCK((p), (size), 0, (zeroed)); \
  } while (0)
/* The program gives the block at p back (memcheck reports an invalid free). */
#define annotate_free(p)                          \
  do {                                            \
    if ((p) != NULL) VALGRIND_FREELIKE_BLOCK((p), 0); \
  } while (0)
/* Galleon's own work on memory the program may not touch: errors off, and on. */
#define annotate_quiet_begin() VALGRIND_DISABLE_ERROR_REPORTING
#define annotate_quiet_end() VALGRIND_ENABLE_ERROR_REPORTING
/* Memory nobody may touch until it is handed out. */
#define annotate_noaccess(p, size) VALGRIND_MAKE_MEM_NOACCESS((p), (size))
#else
#define GL_VALGRIND 0
#define annotate_alloc(p, size, zeroed) ((void)0)
#define annotate_free(p) ((void)0)
#define annotate_quiet_begin() ((void)0)
#define annotate_quiet_end() ((void)0)
#define annotate_noaccess(p, size) ((void)0)
#endif

/* ThreadSanitizer.  The statistics walk reads the counters of pages other threads
 * own (used, capacity, state) with relaxed loads and none of their locks: a
 * snapshot that may be a moment stale, by design, since taking every owner's
 * path through a lock would put the walk on the fast path.  The owners write them
 * with plain stores, which TSan reports against the walk's loads; these hooks
 * hide the walk's reads from it (its writes stay checked). */
#if defined(__SANITIZE_THREAD__)
#define GL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GL_TSAN 1
#endif
#endif
#ifdef GL_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define annotate_racy_reads_begin() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define annotate_racy_reads_end() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define annotate_racy_reads_begin() ((void)0)
#define annotate_racy_reads_end() ((void)0)
#endif

#endif /* GALLEON_ANNOTATE_H */
