/* purge.c: the purger thread, so that an idle program gives memory back.
 *
 * Freed pages and segments are purged after purge_delay_ms.  A thread that keeps
 * allocating does that itself on its slow paths, but a program that frees most of
 * its memory and then waits (a server between requests) makes no more calls, and
 * the memory would stay resident.  So, once a program has more than
 * GL_PURGER_START_BYTES of freed memory waiting, one background thread is started.
 * It sleeps until the earliest purge deadline, purges what is due -- taking each
 * heap's lock with trylock, so it never makes an owner wait -- and sleeps again,
 * without a deadline when nothing is pending.  A thread that queues memory whose
 * deadline comes before the purger's wake-up time signals it.
 *
 * Nothing on a malloc or free fast path looks at it.  It blocks every signal, so
 * it never receives one meant for the program.  GALLEON_PURGE_THREAD=0 turns it off
 * (then purging happens on the program's own allocation calls only).  After fork()
 * the child starts its own when it needs one.
 *
 * Lock order: purger_lock is taken alone (never with another Galleon lock held).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "check.h"
#include "internal.h"

#define GL_PURGER_START_BYTES ((size_t)1 << 20)

enum { PURGER_NONE = 0, PURGER_RUNNING = 1, PURGER_FAILED = 2 };

static pthread_mutex_t purger_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purger_cond;
static _Atomic(int) purger_state;
static _Atomic(uint64_t) purger_wake_ms; /* when it will wake up: 0 awake, UINT64_MAX no deadline */

static uint64_t purge_round(void) {
  uint64_t now = os_clock_ms();
  uint64_t next = UINT64_MAX;
  for (gl_heap_t *h = heap_registry_first(); h; h = h->all_next) {
    if (heap_is_lost(h)) continue;
    uint64_t due = __atomic_load_n(&h->next_purge_ms, __ATOMIC_RELAXED);
    if (due <= now && !segment_purge_try(h, now)) due = now + 1; /* busy: retry soon */
    else due = __atomic_load_n(&h->next_purge_ms, __ATOMIC_RELAXED);
    if (due < next) next = due;
  }
  if (now >= atomic_load_explicit(&gl_cache_next_event_ms, memory_order_relaxed))
    segment_cache_collect(now, false);
  uint64_t cache_due = atomic_load_explicit(&gl_cache_next_event_ms, memory_order_relaxed);
  if (cache_due < next) next = cache_due;
  uint64_t abandoned_due = heap_abandoned_next_ms();
  if (abandoned_due <= now) {
    heap_collect_abandoned(false);
    abandoned_due = heap_abandoned_next_ms();
  }
  if (abandoned_due < next) next = abandoned_due;
  return next;
}

static void *purger_main(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t next = purge_round();
    pthread_mutex_lock(&purger_lock);
    /* Announce the wake-up time, then look again: work queued by a thread that saw
     * the old announcement is found here, work queued later gets a signal (the
     * fences pair with the one in purge_notify). */
    atomic_store_explicit(&purger_wake_ms, next, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    pthread_mutex_unlock(&purger_lock);
    uint64_t again = purge_round();
    pthread_mutex_lock(&purger_lock);
    if (again < next) {
      next = again;
      atomic_store_explicit(&purger_wake_ms, next, memory_order_relaxed);
    }
    if (next == UINT64_MAX) {
      pthread_cond_wait(&purger_cond, &purger_lock);
    } else {
      uint64_t now = os_clock_ms();
      if (next > now) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait_ms = next - now + 1;
        ts.tv_sec += (time_t)(wait_ms / 1000);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&purger_cond, &purger_lock, &ts);
      }
    }
    atomic_store_explicit(&purger_wake_ms, 0, memory_order_relaxed);
    pthread_mutex_unlock(&purger_lock);
  }
  return NULL;
}

static void purger_start(void) {
  int expected = PURGER_NONE;
  if (!atomic_compare_exchange_strong(&purger_state, &expected, PURGER_RUNNING)) return;
  pthread_condattr_t cattr;
  pthread_condattr_init(&cattr);
  pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
  pthread_cond_init(&purger_cond, &cattr);
  pthread_condattr_destroy(&cattr);

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  pthread_t thread;
  /* pthread_create may call malloc: no Galleon lock is held here. */
  int rc = pthread_create(&thread, &attr, purger_main, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    atomic_store(&purger_state, PURGER_FAILED);
    if (gl_options.verbose) gl_message("galleon: ", "could not start the purger thread", 0);
    return;
  }
  pthread_setname_np(thread, "galleon-purge");
}

/* Called, with no Galleon lock held, after freed memory was queued for purging.
 * Wakes the purger when it would otherwise sleep past the new work's deadline. */
void purge_notify(size_t dirty_bytes) {
  int state = atomic_load_explicit(&purger_state, memory_order_relaxed);
  if (state == PURGER_NONE) {
    if (dirty_bytes >= GL_PURGER_START_BYTES && gl_options.purge_thread) purger_start();
    return;
  }
  if (state != PURGER_RUNNING) return;
  atomic_thread_fence(memory_order_seq_cst);
  uint64_t wake = atomic_load_explicit(&purger_wake_ms, memory_order_relaxed);
  if (wake != 0 && wake > os_clock_ms() + (uint64_t)gl_options.purge_delay_ms) {
    pthread_mutex_lock(&purger_lock);
    pthread_cond_signal(&purger_cond);
    pthread_mutex_unlock(&purger_lock);
  }
}

/* The purger thread does not exist in a fork child; the child starts its own. */
void purge_fork_child(void) {
  pthread_mutex_init(&purger_lock, NULL);
  atomic_store(&purger_state, PURGER_NONE);
  atomic_store(&purger_wake_ms, 0);
}
