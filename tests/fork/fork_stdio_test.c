/* fork_stdio_test.c: fork() while some threads allocate with a FILE locked and
 * others call fflush(NULL).
 *
 * glibc's fork() runs the pthread_atfork prepare handlers first and only then
 * takes the stdio list lock; fflush(NULL) holds that list lock while it locks each
 * FILE in turn.  An allocator whose prepare handler keeps its own locks across
 * fork() can therefore close a cycle:
 *   forking thread:       holds the allocator's locks, waits for the list lock;
 *   fflush(NULL) thread:  holds the list lock, waits for a FILE's lock;
 *   FILE thread:          holds that FILE's lock, waits in malloc for an
 *                         allocator lock.
 * glibc's own malloc takes its locks after the list lock and does not deadlock;
 * neither may Galleon.  The main thread forks over and over (the child allocates,
 * frees and _exits); the watchdog (fork_watchdog.h) turns a hang into a failure. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "fork_watchdog.h"

#define FILE_THREADS 3
#define FLUSH_THREADS 2

#ifdef TEST_SANITIZE_THREAD
#define BUDGET_S 2.0
#define MIN_FORKS 5
#else
#define BUDGET_S 1.0
#define MIN_FORKS 20
#endif
#define MAX_FORKS 5000

static atomic_bool stop;
static atomic_long file_rounds[FILE_THREADS];
static atomic_long flushes[FLUSH_THREADS];

/* Sizes of a realloc chain: small, medium, then large blocks (each of those takes
 * a lock in Galleon), then back to small. */
static const size_t chain[] = {24, 700, 6000, 40000, 200000, 700000, 1500000, 90000, 300};
#define CHAIN_LEN (sizeof chain / sizeof chain[0])

static void *file_thread(void *arg) {
  int t = (int)(uintptr_t)arg;
  FILE *f = fopen("/dev/null", "w");
  CHECK(f != NULL);
  uint64_t rng = (uint64_t)t * 7919 + 3;
  void *grow = NULL;
  size_t grow_n = 0, step = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    flockfile(f);
    /* Everything below runs with f locked, as fprintf's internals would. */
    void *tmp[4];
    for (int i = 0; i < 4; i++) {
      size_t n = (i == 3) ? rng_range(&rng, 130 * KiB, 600 * KiB) : rng_range(&rng, 1, 4 * KiB);
      tmp[i] = malloc(n);
      CHECK(tmp[i] != NULL);
      memset(tmp[i], 0x5a, n < 64 ? n : 64);
    }
    size_t n = chain[step++ % CHAIN_LEN];
    void *g = realloc(grow, n);
    CHECK(g != NULL);
    size_t kept = grow_n < n ? grow_n : n;
    CHECKF(grow == NULL || pattern_check_seed(g, kept, 77) < 0, "realloc lost data");
    pattern_fill_seed(g, n, 77);
    grow = g;
    grow_n = n;
    for (int i = 3; i >= 0; i--) free(tmp[i]);
    fputc_unlocked('.', f); /* leave something for fflush(NULL) to write */
    funlockfile(f);
    atomic_fetch_add_explicit(&file_rounds[t], 1, memory_order_relaxed);
    /* Let fflush(NULL) have f now and then (FILE locks are not fair either). */
    if (step % 4 == 0) sched_yield();
  }
  free(grow);
  CHECK(fclose(f) == 0);
  return NULL;
}

static void *flush_thread(void *arg) {
  int t = (int)(uintptr_t)arg;
  uint64_t rng = (uint64_t)t * 104729 + 11;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    fflush(NULL); /* holds the list lock, then locks every FILE in turn */
    atomic_fetch_add_explicit(&flushes[t], 1, memory_order_relaxed);
    /* A short pause: glibc's list lock is not fair, and fflush(NULL) in a tight
     * loop would starve fork() for whole seconds. */
    struct timespec pause = {0, (long)rng_range(&rng, 0, 100) * 1000};
    nanosleep(&pause, NULL);
  }
  return NULL;
}

/* The child of a multi-threaded fork: allocation must work (small and large, and
 * realloc between them), then _exit without touching stdio. */
static void child(long i) {
  size_t n = 16 + (size_t)(i % 13) * 300;
  char *p = malloc(n);
  if (p == NULL) _exit(2);
  pattern_fill_seed(p, n, (uint64_t)i);
  char *q = realloc(p, 300 * KiB);
  if (q == NULL || pattern_check_seed(q, n, (uint64_t)i) >= 0) _exit(3);
  void *r = malloc(100);
  if (r == NULL) _exit(4);
  free(q);
  free(r);
  _exit(0);
}

static long sum(atomic_long *a, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) s += atomic_load(&a[i]);
  return s;
}

static void worker(void) {
  double t0 = now_s();
  pthread_t th[FILE_THREADS + FLUSH_THREADS];
  for (int t = 0; t < FILE_THREADS; t++)
    CHECK(pthread_create(&th[t], NULL, file_thread, (void *)(uintptr_t)t) == 0);
  for (int t = 0; t < FLUSH_THREADS; t++)
    CHECK(pthread_create(&th[FILE_THREADS + t], NULL, flush_thread, (void *)(uintptr_t)t) == 0);
  fw_phase("waiting for the threads to start");
  for (int t = 0; t < FILE_THREADS; t++)
    while (atomic_load(&file_rounds[t]) == 0) sleep_ms(1);
  for (int t = 0; t < FLUSH_THREADS; t++)
    while (atomic_load(&flushes[t]) == 0) sleep_ms(1);
  fw_progress();

  long rounds_before = sum(file_rounds, FILE_THREADS), flushes_before = sum(flushes, FLUSH_THREADS);
  double f0 = now_s();
  long forks = 0;
  while (fw_keep_going(f0, forks, BUDGET_S, MIN_FORKS, MAX_FORKS)) {
    fw_phase("in fork() (parent side), with FILE threads and fflush(NULL) threads running");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) child(forks);
    fw_phase("waiting for a forked child (the child hangs or is slow to allocate)");
    int st;
    while (waitpid(pid, &st, 0) < 0) CHECK(errno == EINTR);
    char buf[128];
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child of fork %ld %s", forks,
           describe_status(st, buf, sizeof buf));
    forks++;
    fw_progress();
  }
  double fork_s = now_s() - f0;
  long rounds = sum(file_rounds, FILE_THREADS) - rounds_before;
  long fl = sum(flushes, FLUSH_THREADS) - flushes_before;

  fw_phase("joining the threads");
  atomic_store(&stop, true);
  for (int t = 0; t < FILE_THREADS + FLUSH_THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
  fw_progress();
  /* The threads ran while the main thread forked: the pattern was exercised. */
  CHECKF(rounds > 0 && fl > 0, "threads idle during the forks: %ld rounds, %ld flushes", rounds, fl);
  printf("fork_stdio passed: %ld forks in %.2f s while %d threads made %ld FILE-locked "
         "allocation rounds and %d threads %ld fflush(NULL) calls; %.2f s in all\n",
         forks, fork_s, FILE_THREADS, rounds, FLUSH_THREADS, fl, now_s() - t0);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int failed = fw_run("fork_stdio", worker,
                      "the allocator's pthread_atfork prepare handler holds its locks while "
                      "glibc's fork() waits for the stdio list lock; a thread in fflush(NULL) "
                      "holds that lock and waits for a FILE locked by a thread that waits for "
                      "an allocator lock inside malloc/realloc/free");
  return failed ? 1 : 0;
}
