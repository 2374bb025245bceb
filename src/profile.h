/* profile.h: the sampling heap profiler (layer 2).
 *
 * Off (the default) it costs the fast paths nothing: they are the same
 * instructions, and the slow path tests one flag.  On (GALLEON_PROFILE=FILE, or
 * galleon_profile_start) it samples allocations as a Poisson process over
 * allocated bytes: the gaps between sampled bytes are drawn from an exponential
 * distribution of mean profile_interval (512 KiB), and the allocation holding a
 * sampled byte is sampled, so a block of s bytes is sampled with probability
 * 1 - exp(-s / interval) whatever the order of allocations -- the model that
 * tcmalloc uses and that pprof's heap_v2 format undoes.
 *
 * How allocations reach the sampler without a test on the fast path is the heap
 * layer's part (heap.c, "Sampling"): each list of blocks it hands to the fast path
 * is charged to the heap's budget when handed over, and cut short where the budget
 * runs out, so the fast path runs dry exactly at the sampled allocation.  A sampled
 * block is handed out 16 bytes into a larger block (tagged like a memalign block):
 * free's fast path never takes it, and free's slow path calls profile_forget.
 *
 * This file keeps, for each distinct stack, the sampled counts and bytes (live and
 * ever allocated), and for each live sampled block its size and stack; it writes
 * them in the gperftools heap-profile format (google-pprof reads it) and as
 * collapsed stacks, and the leak report.  Its memory comes from the OS layer;
 * nothing here calls malloc, and one lock (taken alone, never held while waiting
 * for anything else) guards it.
 */
#ifndef GALLEON_PROFILE_H
#define GALLEON_PROFILE_H

#include "types.h"

/* Sampling is on.  Read relaxed by the slow paths. */
extern GL_HIDDEN bool profile_sampling;
/* Bumped at each start: a heap whose budget comes from an older generation draws
 * a fresh one. */
extern GL_HIDDEN uint32_t profile_generation;
/* Not 0: the thread is inside the profiler, or in an allocation that must not be
 * sampled (memalign with a large alignment): nothing it allocates is sampled.
 * PROFILE_UNCHARGED: nor charged (the block that serves a sampled request). */
extern GL_HIDDEN __thread uint8_t profile_tls_busy;
#define PROFILE_UNCHARGED 2
/* Number of live sampled blocks: free's slow path asks the profiler only when
 * this is not 0. */
extern GL_HIDDEN _Atomic(size_t) profile_live_blocks;

/* Bytes to allocate before the next sampled byte: exponential, mean
 * profile_interval, at least 1. */
GL_HIDDEN int64_t profile_next_interval(void);
/* A sampled byte fell in a block of `charged` bytes serving a request of `size`:
 * whether to sample it, with probability (1 - exp(-size / I)) / (1 - exp(-charged / I))
 * so that the request is sampled as its own size says. */
GL_HIDDEN bool profile_accept(size_t size, size_t charged);
/* A sampled allocation of `size` bytes at p: records the caller's stack. */
GL_HIDDEN void profile_record(void *p, size_t size);
/* p was freed (or is about to be); nothing happens when p was not sampled. */
GL_HIDDEN void profile_forget(const void *p);
/* realloc moved a sampled block's pages (mremap) from old to p. */
GL_HIDDEN void profile_moved(const void *old, void *p, size_t size);

/* The API (galleon_profile_*, galleon.h): 0, or -1 with errno. */
GL_HIDDEN int profile_start(const char *path);
GL_HIDDEN int profile_dump(const char *path);
GL_HIDDEN void profile_stop(void);
/* At process start (a constructor, outside malloc): GALLEON_PROFILE=FILE, or the
 * profile_leaks option, starts the profiler. */
GL_HIDDEN void profile_start_from_env(void);

/* In a fork child: the lock repaired (a profile found mid-change is dropped). */
GL_HIDDEN void profile_fork_child(void);

GL_INLINE bool profile_has_live(void) {
  return atomic_load_explicit(&profile_live_blocks, memory_order_relaxed) != 0;
}

#endif /* GALLEON_PROFILE_H */
