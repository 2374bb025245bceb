/* check.h: assertions and the one fatal-error path.
 *
 * Three levels:
 *  - gl_fatal(): misuse or corruption found at run time in every build (double free,
 *    invalid free).  Writes one line "galleon: error: ..." with write(2) -- no stdio,
 *    no malloc -- and aborts.
 *  - gl_assert(e): internal invariants, compiled (and type-checked) always, evaluated
 *    only when GALLEON_DEBUG is set; free in release builds.
 *  - gl_validate(e): whole-structure validators (segment_is_valid, heap_is_valid,
 *    ...) at the points where state changes; also only with GALLEON_DEBUG, so the
 *    Debug test stage checks the structure, not scattered asserts.
 */
#ifndef GALLEON_CHECK_H
#define GALLEON_CHECK_H

#include "os.h"

#ifdef GALLEON_DEBUG
#define GL_DEBUG_CHECKS 1
#else
#define GL_DEBUG_CHECKS 0
#endif

/* Formats "galleon: error: <what> <ptr><detail>\n" and aborts.  `other` is printed
 * after `detail` when nonzero. */
GL_HIDDEN __attribute__((noreturn, cold)) void gl_fatal(const char *what, const void *ptr,
                                                         const char *detail,
                                                         const void *other);
/* The same with `note` (when not NULL) after `other`. */
GL_HIDDEN __attribute__((noreturn, cold)) void gl_fatal_note(const char *what, const void *ptr,
                                                              const char *detail, const void *other,
                                                              const char *note);
/* "galleon: error: <what> <ptr> (size <size>)<note>\n" and abort. */
GL_HIDDEN __attribute__((noreturn, cold)) void gl_fatal_size(const char *what, const void *ptr, size_t size,
                                                              const char *note);
GL_HIDDEN __attribute__((noreturn, cold)) void gl_assert_fail(const char *expr,
                                                               const char *file, int line);
/* A one-line message on stderr (when verbose, or always for warnings). */
GL_HIDDEN void gl_message(const char *prefix, const char *text, size_t number);

/* Formatting into a fixed buffer without stdio: each appends at `at` and returns the
 * new length, never writing past cap - 1. */
GL_HIDDEN size_t gl_fmt_str(char *buf, size_t at, size_t cap, const char *text);
GL_HIDDEN size_t gl_fmt_hex(char *buf, size_t at, size_t cap, uintptr_t value);
GL_HIDDEN size_t gl_fmt_dec(char *buf, size_t at, size_t cap, size_t value);

/* In a fork child: whether no thread held m when fork() was called.  Either way m is
 * left unlocked and usable.  A held lock means its data may be half-changed. */
GL_INLINE bool gl_mutex_was_free_at_fork(pthread_mutex_t *m) {
  bool was_free = pthread_mutex_trylock(m) == 0;
  /* Unlock what we took (re-initialising a locked mutex confuses TSan); a mutex held
   * by a thread that is gone can only be re-initialised. */
  if (was_free) pthread_mutex_unlock(m);
  else pthread_mutex_init(m, NULL);
  return was_free;
}

#define gl_assert(e)                                                    \
  do {                                                                  \
    if (GL_DEBUG_CHECKS && !(e)) gl_assert_fail(#e, __FILE__, __LINE__); \
  } while (0)
#define gl_validate(e) gl_assert(e)

#endif
