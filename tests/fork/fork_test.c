/* fork_test.c: fork while other threads allocate and free; the child must be able
 * to allocate freely (also from new threads), free blocks that threads of the
 * parent allocated, and fork again.  Every child arms alarm() so that a deadlock
 * turns into SIGALRM, which the parent reports as a failure. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../test_util.h"

#define BG_THREADS 4
#define SLOTS_PER_THREAD 64
#define CHILD_TIMEOUT_S 20

#ifdef TEST_SANITIZE_THREAD
#define FORKS 10
#else
#define FORKS 50
#endif

/* Blocks published by the background threads: a header word with the size,
 * then the pattern. */
static _Atomic(void *) slots[BG_THREADS][SLOTS_PER_THREAD];
static atomic_bool stop;
static atomic_long bg_ops;

static size_t random_size(uint64_t *rng) {
  uint64_t r = rng_next(rng) % 100;
  if (r < 80) return rng_range(rng, 1, 1024);
  if (r < 99) return rng_range(rng, 1025, 32 * KiB);
  return rng_range(rng, 256 * KiB, 2 * MiB);
}

static void *make_block(size_t n) {
  char *h = malloc(sizeof(size_t) + n);
  CHECK(h != NULL);
  *(size_t *)h = n;
  pattern_fill(h + sizeof(size_t), n);
  return h;
}

static void drop_block(void *h) {
  size_t n = *(size_t *)h;
  CHECK_PATTERN((char *)h + sizeof(size_t), n);
  free(h);
}

static void *background(void *arg) {
  int t = (int)(uintptr_t)arg;
  uint64_t rng = (uint64_t)t * 977 + 5;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    int k = (int)(rng_next(&rng) % SLOTS_PER_THREAD);
    void *old = atomic_exchange(&slots[t][k], NULL);
    if (old) drop_block(old);
    /* a little private churn too */
    void *tmp = malloc(rng_range(&rng, 1, 300));
    CHECK(tmp != NULL);
    void *blk = make_block(random_size(&rng));
    free(tmp);
    atomic_store(&slots[t][k], blk);
    atomic_fetch_add_explicit(&bg_ops, 1, memory_order_relaxed);
  }
  return NULL;
}

/* ---- what a child does ---- */
static void *child_thread(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  void *b[100];
  for (int round = 0; round < 10; round++) {
    for (int i = 0; i < 100; i++) b[i] = make_block(rng_range(&rng, 1, (i % 10 == 0) ? 64 * KiB : 2 * KiB));
    for (int i = 0; i < 100; i++) drop_block(b[i]);
  }
  return NULL;
}

static int child_work(int depth, int iter) {
  alarm(CHILD_TIMEOUT_S);
  uint64_t rng = (uint64_t)iter * 31 + (uint64_t)depth;
  /* Free what the (now absent) background threads had published. */
  int taken = 0;
  for (int t = 0; t < BG_THREADS; t++)
    for (int k = 0; k < SLOTS_PER_THREAD; k++) {
      void *h = atomic_exchange(&slots[t][k], NULL);
      if (h && (k % 2 == 0)) {
        drop_block(h);
        taken++;
      } else if (h) {
        atomic_store(&slots[t][k], h); /* keep half: they must stay intact */
      }
    }
  /* Many sizes, every allocation function. */
  void *keep[300];
  size_t keep_n[300];
  for (int i = 0; i < 300; i++) {
    keep_n[i] = (i % 50 == 0) ? rng_range(&rng, 1 * MiB, 3 * MiB) : random_size(&rng);
    switch (i % 4) {
      case 0: keep[i] = malloc(keep_n[i]); break;
      case 1:
        keep[i] = calloc(1, keep_n[i]);
        CHECK(keep[i] != NULL);
        CHECKF(all_bytes_are(keep[i], keep_n[i], 0), "calloc(%zu) in a child not zeroed", keep_n[i]);
        break;
      case 2: keep[i] = aligned_alloc(256, (keep_n[i] + 255) & ~(size_t)255); break;
      default: {
        void *small = malloc(16);
        CHECK(small != NULL);
        pattern_fill_seed(small, 16, 99);
        keep[i] = realloc(small, keep_n[i]);
        CHECK(keep[i] != NULL);
        size_t kept = keep_n[i] < 16 ? keep_n[i] : 16;
        CHECKF(pattern_check_seed(keep[i], kept, 99) < 0, "realloc in a child lost data");
        break;
      }
    }
    CHECK(keep[i] != NULL);
    pattern_fill(keep[i], keep_n[i]);
  }
  /* Threads in the child, unless TSan (it does not support threads after a
   * multi-threaded fork). */
#ifndef TEST_SANITIZE_THREAD
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    CHECK(pthread_create(&th[i], NULL, child_thread, (void *)(uintptr_t)(iter * 10 + i + 1)) == 0);
  for (int i = 0; i < 3; i++) CHECK(pthread_join(th[i], NULL) == 0);
#else
  child_thread((void *)(uintptr_t)(iter + 1));
#endif
  for (int i = 0; i < 300; i++) CHECK_PATTERN(keep[i], keep_n[i]);
  /* The blocks left in the slots are still intact. */
  for (int t = 0; t < BG_THREADS; t++)
    for (int k = 0; k < SLOTS_PER_THREAD; k++) {
      void *h = atomic_load(&slots[t][k]);
      if (h) CHECK_PATTERN((char *)h + sizeof(size_t), *(size_t *)h);
    }
  /* Fork again from the child. */
  if (depth == 0 && iter % 5 == 0) {
    fflush(stdout);
    pid_t g = fork();
    CHECK(g >= 0);
    if (g == 0) _exit(child_work(1, iter));
    int st;
    CHECK(waitpid(g, &st, 0) == g);
    char buf[128];
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "grandchild of fork %d %s", iter,
           describe_status(st, buf, sizeof buf));
  }
  for (int i = 0; i < 300; i++) free(keep[i]);
  (void)taken;
  return 0;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  double t0 = now_s();
  pthread_t bg[BG_THREADS];
  for (int t = 0; t < BG_THREADS; t++)
    CHECK(pthread_create(&bg[t], NULL, background, (void *)(uintptr_t)t) == 0);
  while (atomic_load(&bg_ops) < 1000) sleep_ms(1);

  int failures = 0;
  for (int i = 0; i < FORKS; i++) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      int rc = child_work(0, i);
      exit(rc); /* through exit(): atexit handlers and stdio run in the child */
    }
    /* The parent keeps allocating while the child runs. */
    void *mine = make_block(1000 + (size_t)i);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    drop_block(mine);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      char buf[128];
      fprintf(stderr, "fork %d: child %s%s\n", i, describe_status(st, buf, sizeof buf),
              WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (timeout: deadlock?)" : "");
      failures++;
    }
    sleep_ms(2); /* let the background threads move on */
  }
  atomic_store(&stop, true);
  for (int t = 0; t < BG_THREADS; t++) pthread_join(bg[t], NULL);
  for (int t = 0; t < BG_THREADS; t++)
    for (int k = 0; k < SLOTS_PER_THREAD; k++) {
      void *h = atomic_exchange(&slots[t][k], NULL);
      if (h) drop_block(h);
    }
  CHECKF(failures == 0, "%d of %d forked children failed", failures, FORKS);
  printf("fork tests passed: %d forks, %ld background operations, %.2f s\n", FORKS,
         atomic_load(&bg_ops), now_s() - t0);
  return 0;
}
