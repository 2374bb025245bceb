/* os.h: the contract between Galleon and the operating system (layer 1).
 *
 * os_linux.c is the only file that makes a system call or touches the
 * environment, the clock, threads or condition variables.  A port to another
 * system replaces that file and keeps this contract.  Common to every function:
 *  - nothing here allocates (no malloc, no stdio);
 *  - nothing here changes errno: failures are reported by the return value, and
 *    the public API sets errno when it gives up;
 *  - sizes and addresses are multiples of os_page_size() unless said otherwise.
 */
#ifndef GALLEON_OS_H
#define GALLEON_OS_H

#include "types.h"

/* Reads the page size and seeds the mapping hint.  Called once, before any other
 * os_ function that maps memory. */
GL_HIDDEN void os_init(void);
GL_HIDDEN size_t os_page_size(void);

/* ---- Address space ---- */

/* Read-write, zeroed memory for metadata, anywhere (OS page aligned), or NULL. */
GL_HIDDEN void *os_map(size_t size);
/* Read-write, zeroed, lazily committed memory starting at a multiple of `alignment`
 * (a power of two, at most GL_MAX_ALIGN), or NULL.  Accounted: the kernel's
 * overcommit policy may refuse it, as it refuses glibc's malloc.  Untouched pages
 * cost no RAM. */
GL_HIDDEN void *os_map_aligned(size_t size, size_t alignment);
/* The same shape with no access and no commitment: a target for os_move or
 * os_commit. */
GL_HIDDEN void *os_reserve_aligned(size_t size, size_t alignment);
/* Makes reserved pages read-write (and charged); false when the policy refuses. */
GL_HIDDEN bool os_commit(void *addr, size_t size);
GL_HIDDEN void os_unmap(void *addr, size_t size);
/* Gives the memory of a mapped range back; the range stays mapped.  decommit:
 * MADV_DONTNEED, the memory reads as zero afterwards (returns true; false when
 * the kernel refused, as for locked pages); else MADV_FREE where the kernel has it
 * (returns false: contents unknown until reclaimed).  Counted in gl_counters.purges / purged_bytes. */
GL_HIDDEN bool os_purge(void *addr, size_t size, bool decommit);
/* Empties a range's pages without counting it as a purge: they read as zero
 * afterwards (MADV_DONTNEED).  False when the kernel refused (locked pages), which
 * then keep their contents. */
GL_HIDDEN bool os_discard(void *addr, size_t size);
/* Which of the `count` OS pages from addr (page-aligned) are resident: bit 0 of
 * resident[i] (mincore).  A page not resident is one never touched or emptied
 * (reads as zero) -- or swapped out, holding data.  False if the kernel does not
 * say. */
GL_HIDDEN bool os_resident(void *addr, size_t count, uint8_t *resident);
/* Asks for transparent huge pages on a range (MADV_HUGEPAGE); false if refused. */
GL_HIDDEN bool os_advise_huge(void *addr, size_t size);
/* mremap: grows or shrinks a mapping where it is (false if the space after it is
 * taken; a range of several mappings grows by a new mapping after it), or moves
 * its pages onto `target` (a reservation of new_size bytes, or a part of a mapping
 * of ours, which they replace), never copying contents. */
GL_HIDDEN bool os_resize_in_place(void *addr, size_t old_size, size_t new_size);
GL_HIDDEN bool os_move(void *addr, size_t old_size, size_t new_size, void *target);
/* Whether os_move moves a range made of several mappings without resizing it
 * (Linux 6.17 and later); found out once, by trying. */
GL_HIDDEN bool os_moves_several_mappings(void);

/* ---- Time, randomness, output, environment ---- */

/* Milliseconds of a monotonic clock (coarse: a few ms resolution, vDSO, cheap). */
GL_HIDDEN uint64_t os_clock_ms(void);
/* The calling thread's kernel id (gettid). */
GL_HIDDEN int os_thread_id(void);
/* Nanoseconds of CPU time used so far by the thread `tid` of this process (0: the
 * calling thread), or with tid -1 by the whole process.  False when it cannot be
 * read: the thread has exited (or belongs to another process). */
GL_HIDDEN bool os_cpu_time_ns(int tid, uint64_t *ns);
/* 64 random bits, never 0 (getrandom; a clock-derived value if that fails). */
GL_HIDDEN uint64_t os_random(void);
/* Writes all of text with the raw system call: not a cancellation point, so a
 * diagnostic is printed even in a thread with a pending cancel. */
GL_HIDDEN void os_write(int fd, const char *text, size_t len);
/* secure_getenv: NULL in set-user-ID and set-group-ID programs. */
GL_HIDDEN const char *os_getenv(const char *name);
/* Reads up to cap - 1 bytes of a (small, procfs or cgroupfs) file into buf and
 * terminates it; the length, or -1 when the file cannot be read. */
GL_HIDDEN long os_read_text(const char *path, char *buf, size_t cap);

/* ---- Files and stacks, for the heap profiler (profile.h) ---- */

/* Creates (or truncates) a file for writing, mode 0644: its descriptor, or minus
 * the errno value that open gave. */
GL_HIDDEN int os_file_create(const char *path);
GL_HIDDEN long os_getpid(void);
GL_HIDDEN void os_file_close(int fd);
/* Copies a file (of any length: /proc/self/maps) to fd; false when unreadable. */
GL_HIDDEN bool os_copy_file(const char *path, int fd);
/* The return addresses of the calling thread's stack, innermost first, at most
 * max: glibc's backtrace() (the DWARF unwinder; no frame pointers needed).  Its
 * first call loads libgcc_s, which allocates: os_backtrace_prime() makes that
 * call from a safe place (a constructor), never from inside malloc. */
GL_HIDDEN int os_backtrace(void **pcs, int max);
/* The same walk from the caller of os_unwind, through a cache of the DWARF rule of
 * each return address (os_unwind.c): a few loads a frame instead of libgcc's
 * interpretation of the call-frame program.  -1 when a frame needs what it does
 * not understand (a CFA expression, a signal frame): then use os_backtrace. */
GL_HIDDEN int os_unwind(void **pcs, int max);
GL_HIDDEN void os_backtrace_prime(void);
/* The address range of the loaded object (executable or shared library) that
 * holds `code`, and whether that object is the program itself; false when it
 * cannot be told. */
GL_HIDDEN bool os_object_range(const void *code, uintptr_t *lo, uintptr_t *hi, bool *is_program);
/* Names a code address (dladdr, which does not allocate): the nearest dynamic
 * symbol at or below it (NULL when none) and pc's offset from it, else from the
 * object's base; the object's path (NULL when unknown).  Executables export few
 * symbols: `galleon report` names the rest from debug information. */
GL_HIDDEN void os_symbolize(const void *pc, const char **symbol, const char **object, uintptr_t *offset);

/* ---- A background thread and the event it sleeps on ---- */

/* Starts a detached thread with a small stack, every signal blocked (so it never
 * takes one meant for the program) and the given name.  May call malloc: call it
 * with no Galleon lock held.  Returns false when the thread could not start. */
GL_HIDDEN bool os_thread_start(void *(*fn)(void *), const char *name);

/* The initializer of a lock held for a few hundred instructions at most that every
 * thread takes (the segment cache): glibc's adaptive mutex spins a little before it
 * sleeps, where a plain one calls futex at the first collision.  A producer thread
 * handing large blocks to a consumer slept on the cache lock 2,800 times in 20,000
 * blocks and ran 2.3x slower.  Needs _GNU_SOURCE before the file's first system
 * header; without it, or off glibc, a plain mutex. */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#define GL_SPIN_MUTEX_INITIALIZER PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#else
#define GL_SPIN_MUTEX_INITIALIZER PTHREAD_MUTEX_INITIALIZER
#endif

/* A sleeping place for one thread: os_event_wait() returns when signalled or when
 * the monotonic clock (os_clock_ms) reaches deadline_ms (UINT64_MAX: no deadline).
 * The caller holds the event's lock around the test that decides to wait. */
typedef struct os_event_s {
  pthread_mutex_t lock;
  pthread_cond_t cond;
} os_event_t;
GL_HIDDEN void os_event_init(os_event_t *ev);
GL_HIDDEN void os_event_lock(os_event_t *ev);
GL_HIDDEN void os_event_unlock(os_event_t *ev);
GL_HIDDEN void os_event_wait(os_event_t *ev, uint64_t deadline_ms); /* lock held */
GL_HIDDEN void os_event_signal(os_event_t *ev);                     /* takes the lock */

/* Makes [addr, addr + size) inaccessible (PROT_NONE) or readable and writable
 * again; false when the kernel refuses (out of memory maps).  The secure build's
 * guard pages. */
GL_HIDDEN bool os_protect(void *addr, size_t size, bool accessible);

#endif /* GALLEON_OS_H */
