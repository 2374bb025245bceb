/* fork_signal_test.c: fork() from a signal handler that interrupted malloc, free
 * or fork() itself.
 *
 * fork() is async-signal-safe in glibc (POSIX.1-2008 lists it), and glibc's malloc
 * keeps it so in a single-threaded process: its fork takes no malloc lock there.
 * An allocator whose pthread_atfork prepare handler takes its own locks breaks
 * that: when the signal lands while the interrupted code holds one of those locks
 * (in malloc's slow path, or in an outer fork() between prepare and parent), the
 * handler's fork() locks it a second time from the same thread and never returns.
 *
 * A helper process sends SIGUSR1 to the test process at short random intervals;
 * the handler forks and waits for its child, which only _exits (in a handler only
 * async-signal-safe calls are allowed: no malloc).  Meanwhile the main thread
 * allocates and frees blocks of every kind and forks, its children allocating
 * before they _exit.  The test process must stay single-threaded (a sender thread,
 * or Galleon's purger thread, would make glibc's own fork take its atfork lock,
 * which a nested fork cannot take again), so the purger thread is switched off.
 * The watchdog (fork_watchdog.h) turns a hang into a failure. */
#define _GNU_SOURCE 1
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fork_watchdog.h"

#ifdef TEST_SANITIZE_THREAD
#define BUDGET_S 2.0
#define MIN_ROUNDS 5
#define MIN_HANDLER_FORKS 5
#else
#define BUDGET_S 1.0
#define MIN_ROUNDS 30
#define MIN_HANDLER_FORKS 30
#endif
#define MAX_ROUNDS 100000

/* Written by the handler only (the main thread reads them once the sender is
 * gone); a handler is not re-entered: SIGUSR1 is blocked while it runs. */
static volatile sig_atomic_t handler_forks, handler_fork_errors, handler_bad_children;
static volatile sig_atomic_t handler_last_errno;
/* Signals handled, on a page shared with the sender. */
static atomic_long *handled;

static void on_usr1(int sig) {
  (void)sig;
  int saved_errno = errno;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0) {
    handler_fork_errors++;
    handler_last_errno = errno;
  } else {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) handler_bad_children++;
    handler_forks++;
    fw_progress();
  }
  atomic_fetch_add_explicit(handled, 1, memory_order_relaxed);
  errno = saved_errno;
}

/* The sender: SIGUSR1 to the target, and once the handler is done, a random pause
 * of 0 to 2 times as long as the handler took (at least 200 us), so that the main
 * thread gets about as much time as the handler in every build.  Until the target
 * is gone or kills it. */
static void sender(pid_t target) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != target) _exit(0);
  uint64_t rng = (uint64_t)target * 2654435761u;
  for (;;) {
    long before = atomic_load(handled);
    double t0 = now_s();
    if (kill(target, SIGUSR1) != 0) _exit(0);
    /* Wait for the handler (not forever: a hung target still gets signals). */
    struct timespec poll = {0, 20000};
    while (atomic_load(handled) == before && now_s() - t0 < 0.1) nanosleep(&poll, NULL);
    long took_us = (long)((now_s() - t0) * 1e6);
    long max_gap_us = 2 * took_us > 200 ? 2 * took_us : 200;
    struct timespec gap = {0, (long)rng_range(&rng, 0, (size_t)max_gap_us) * 1000};
    nanosleep(&gap, NULL);
  }
}

/* Sizes that take every path: small and medium blocks (pages come and go under the
 * heap lock), large ones (the segment cache lock), realloc across the kinds. */
static void churn(uint64_t *rng) {
  void *b[12];
  for (int i = 0; i < 12; i++) {
    size_t n;
    switch (i % 4) {
      case 0: n = rng_range(rng, 1, 512); break;
      case 1: n = rng_range(rng, 513, 64 * KiB); break;
      case 2: n = rng_range(rng, 130 * KiB, 2 * MiB); break;
      default: n = rng_range(rng, 1, 2 * KiB); break;
    }
    b[i] = malloc(n);
    CHECK(b[i] != NULL);
    memset(b[i], 0x3c, n < 256 ? n : 256);
  }
  b[3] = realloc(b[3], 300 * KiB);
  CHECK(b[3] != NULL);
  b[2] = realloc(b[2], 100);
  CHECK(b[2] != NULL);
  for (int i = 0; i < 12; i++) free(b[(i * 5) % 12]);
}

static void worker(void) {
  double t0 = now_s();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0); /* before the first signal can come */

  void *m = mmap(NULL, sizeof(atomic_long), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  handled = (atomic_long *)m;
  fw_phase("forking the signal sender");
  pid_t self = getpid();
  fflush(stdout);
  pid_t snd = fork();
  CHECK(snd >= 0);
  if (snd == 0) sender(self);

  uint64_t rng = 12345;
  long rounds = 0, forks = 0;
  /* The budget, the minimum of rounds, and enough forks in the handler (for at
   * most 10 budgets more). */
  while (fw_keep_going(t0, rounds, BUDGET_S, MIN_ROUNDS, MAX_ROUNDS) ||
         (handler_forks < MIN_HANDLER_FORKS && now_s() - t0 < 11 * BUDGET_S)) {
    fw_phase("allocating and freeing (SIGUSR1 handler forks meanwhile)");
    churn(&rng);
    fw_phase("in fork() (parent side; SIGUSR1 handler forks meanwhile)");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      /* Not in a handler: the child may allocate. */
      void *p = malloc(rng_range(&rng, 1, 200 * KiB));
      if (p == NULL) _exit(2);
      free(p);
      _exit(0);
    }
    fw_phase("waiting for a forked child (SIGUSR1 handler forks meanwhile)");
    int st;
    while (waitpid(pid, &st, 0) < 0) CHECK(errno == EINTR);
    char buf[128];
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child of the main thread's fork %ld %s",
           forks, describe_status(st, buf, sizeof buf));
    forks++;
    rounds++;
    fw_progress();
  }

  fw_phase("stopping the signal sender");
  kill(snd, SIGKILL);
  while (waitpid(snd, NULL, 0) < 0) CHECK(errno == EINTR);
  signal(SIGUSR1, SIG_IGN);
  CHECKF(handler_fork_errors == 0, "%d forks in the handler failed (errno %d)",
         (int)handler_fork_errors, (int)handler_last_errno);
  CHECKF(handler_forks >= MIN_HANDLER_FORKS, "only %d forks from the handler (signals lost?)",
         (int)handler_forks);
  CHECKF(handler_bad_children == 0, "%d children forked in the handler did not exit with 0",
         (int)handler_bad_children);
  printf("fork_signal passed: %ld rounds of allocation with %ld forks, %d forks from the "
         "SIGUSR1 handler, %.2f s\n",
         rounds, forks, (int)handler_forks, now_s() - t0);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
#ifndef TEST_PRELOAD
  /* Keep the process single-threaded (see the top of the file). */
  CHECK(galleon_option_set("purge_thread", 0) == 0);
#endif
  int failed = fw_run("fork_signal", worker,
                      "fork() from a signal handler: the allocator's pthread_atfork prepare "
                      "handler takes a lock that the interrupted code (malloc/free, or an "
                      "outer fork() between its prepare and parent handlers) already holds "
                      "in the same thread");
  return failed ? 1 : 0;
}
