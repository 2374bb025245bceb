/* fork_watchdog.h: run one fork scenario in a process of its own and turn a hang
 * into a prompt failure with a message, instead of a CTest timeout.
 *
 * The program (the supervisor) forks a worker that leads a process group of its
 * own, runs the scenario and _exits.  The worker reports progress (fw_progress())
 * and where it is (fw_phase()) in a shared page.  When the progress count stands
 * still for fw_hang_s seconds, the supervisor prints what the worker was doing and
 * kills the whole group -- the worker, its threads and any child it forked -- so
 * that no stuck process outlives the test or holds CTest's output pipe open.
 *
 * Include this header last instead of test_util.h (it includes test_util.h after
 * its own system headers). */
#ifndef GALLEON_FORK_WATCHDOG_H
#define GALLEON_FORK_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "../test_util.h"

/* Seconds without progress that count as a hang.  Sanitizer builds fork slowly
 * (TSan copies its shadow mappings' page tables on every fork). */
#ifndef FW_HANG_S
#if defined(TEST_SANITIZE_THREAD)
#define FW_HANG_S 40.0
#else
#define FW_HANG_S 20.0
#endif
#endif

typedef struct {
  atomic_long progress;          /* bumped at each completed step of the worker */
  _Atomic(const char *) phase;   /* a string literal: same address in both processes */
} fw_shared_t;

static fw_shared_t *fw_shared;

/* Worker side; both are async-signal-safe (lock-free atomics on a shared page). */
static inline void fw_progress(void) {
  atomic_fetch_add_explicit(&fw_shared->progress, 1, memory_order_relaxed);
}
static inline void fw_phase(const char *what) {
  atomic_store_explicit(&fw_shared->phase, what, memory_order_relaxed);
}

/* Kills the worker's process group and reaps the worker and every orphan of the
 * group handed to us (for at most a second). */
static inline void fw_kill_group(pid_t pid) {
  kill(-pid, SIGKILL);
  double until = now_s() + 1.0;
  while (now_s() < until) {
    pid_t r = waitpid(-1, NULL, WNOHANG);
    if (r < 0 && errno == ECHILD) break;
    if (r <= 0) sleep_ms(1);
  }
}

/* Runs worker() in a child process and waits for it.  Returns 0 when it exited
 * with status 0; otherwise prints why (name: ...) and returns 1.  hint says what a
 * hang most likely means. */
static inline int fw_run(const char *name, void (*worker)(void), const char *hint) {
  if (fw_shared == NULL) {
    void *m = mmap(NULL, sizeof(fw_shared_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    fw_shared = (fw_shared_t *)m;
  }
  /* Orphans of the worker (children of a killed worker) come to us to be reaped. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  atomic_store(&fw_shared->progress, 0);
  fw_phase("starting");
  pid_t supervisor = getpid();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the supervisor */
    if (getppid() != supervisor) _exit(3);
    worker();
    fflush(stdout);
    _exit(0);
  }
  setpgid(pid, pid); /* also here: no window where a kill of the group misses it */
  double start = now_s(), last_move = start;
  long last = 0;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    CHECK(r == 0 || (r < 0 && errno == EINTR));
    long p = atomic_load_explicit(&fw_shared->progress, memory_order_relaxed);
    double t = now_s();
    if (p != last) {
      last = p;
      last_move = t;
    } else if (t - last_move >= FW_HANG_S) {
      fprintf(stderr,
              "%s: HANG: no progress for %.0f s (%.1f s after the start, %ld steps done, "
              "worker was: %s).\n%s: likely cause: %s\n",
              name, t - last_move, t - start, p, atomic_load(&fw_shared->phase), name, hint);
      fflush(stderr);
      fw_kill_group(pid);
      return 1;
    }
    sleep_ms(20);
  }
  fw_kill_group(pid); /* leftovers of the group, if any */
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  char buf[128];
  fprintf(stderr, "%s: worker %s (was: %s, %ld steps done)\n", name,
          describe_status(status, buf, sizeof buf), atomic_load(&fw_shared->phase),
          atomic_load(&fw_shared->progress));
  return 1;
}

/* How long a scenario keeps going: at least min_steps and budget_s seconds, at most
 * max_steps.  A time budget instead of a fixed count keeps a loaded machine from
 * stretching the test, the minimum keeps it meaningful there. */
static inline bool fw_keep_going(double start, long steps, double budget_s, long min_steps,
                                 long max_steps) {
  if (steps >= max_steps) return false;
  return steps < min_steps || now_s() - start < budget_s;
}

#endif /* GALLEON_FORK_WATCHDOG_H */
