/* unwind_test.c: the heap profiler's cached stack walker (src/os_unwind.c) gives
 * the same return addresses as glibc's backtrace() on the stacks programs have:
 * plain calls, recursion, frames with a frame pointer (alloca), calls back from
 * libc (qsort), threads, a stack deeper than the walk's limit, and it answers -1
 * (or the same list) in a signal handler.  Each stack is walked twice, the second
 * time from the cache.
 *
 * Linked with os_unwind.c alone (no allocator): it needs only libc. */
#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"

static int failures, walks, fallbacks;

/* Both walks are made from here: past the first entry (each call's own return
 * address in this function) the lists must be equal. */
static __attribute__((noinline)) void compare(const char *what, int max) {
  void *fast[256], *slow[256];
  for (int pass = 0; pass < 2; pass++) {
    int n = os_unwind(fast, max);
    int m = backtrace(slow, max);
    walks++;
    if (n < 0) {
      fallbacks++;
      continue;
    }
    /* Past each list's own first frame; under a sanitizer backtrace() is
     * intercepted, and its list starts with the interceptor's frame. */
    int at = 1;
    while (at < 4 && at < m && slow[at] != fast[1]) at++;
    int bad = n < 2 || at == 4 || at == m || (n < max && n - 1 != m - at);
    for (int i = 1; !bad && i < n && at + i - 1 < m; i++) bad = fast[i] != slow[at + i - 1];
    if (bad) {
      failures++;
      fprintf(stderr, "FAIL %s (pass %d): os_unwind %d frames, backtrace %d\n", what, pass, n, m);
      for (int i = 0; i < (n > m ? n : m) && i < 64; i++)
        fprintf(stderr, "  %2d %p %p\n", i, i < n ? fast[i] : NULL, i < m ? slow[i] : NULL);
    }
  }
}

static __attribute__((noinline)) int recurse(int depth, int max) {
  if (depth == 0) {
    compare(max < 64 ? "deeper than the limit" : "recursion", max);
    return 0;
  }
  return recurse(depth - 1, max) + 1; /* not a tail call */
}

/* alloca keeps a frame pointer: the CFA is rbp-based in this frame. */
static __attribute__((noinline)) int with_alloca(size_t size) {
  volatile char *p = alloca(size);
  p[0] = 1;
  compare("alloca frame", 128);
  return p[0];
}

static __attribute__((noinline)) int by_qsort(const void *a, const void *b) {
  static int once;
  if (!once++) compare("called back from qsort", 128);
  return *(const int *)a - *(const int *)b;
}

static void from_probe(void) { compare("called back from a dlopen'ed object", 128); }

/* Walks through PATH's unwind_probe; its address, or NULL when it cannot be loaded. */
static void *through_object(const char *path) {
  void *object = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (object == NULL) {
    fprintf(stderr, "FAIL cannot load %s: %s\n", path, dlerror());
    failures++;
    return NULL;
  }
  int (*probe)(void (*)(void)) = (int (*)(void (*)(void)))dlsym(object, "unwind_probe");
  if (probe == NULL) {
    fprintf(stderr, "FAIL %s has no unwind_probe\n", path);
    failures++;
    dlclose(object);
    return NULL;
  }
  probe(from_probe);
  dlclose(object);
  return (void *)probe;
}

static void *thread_main(void *arg) {
  (void)arg;
  recurse(5, 128);
  with_alloca(4096);
  return NULL;
}

static volatile sig_atomic_t in_handler_result;

static void handler(int sig) {
  (void)sig;
  void *fast[128], *slow[128];
  int n = os_unwind(fast, 128);
  int m = backtrace(slow, 128);
  /* Through a signal frame: the walker hands over (-1) or agrees. */
  int ok = n < 0;
  if (n >= 2) {
    int at = 1;
    while (at < 4 && at < m && slow[at] != fast[1]) at++;
    ok = at < 4 && at < m && n - 1 == m - at;
    for (int i = 1; ok && i < n; i++) ok = fast[i] == slow[at + i - 1];
  }
  in_handler_result = ok ? 1 : -1;
}

int main(int argc, char **argv) {
  void *warm[4];
  backtrace(warm, 4); /* loads libgcc_s outside the comparisons */

  compare("main", 128);
  recurse(10, 128);
  recurse(100, 128);
  recurse(100, 20);
  with_alloca(100);
  with_alloca(100000);

  int values[64];
  for (int i = 0; i < 64; i++) values[i] = 64 - i;
  qsort(values, 64, sizeof values[0], by_qsort);

  pthread_t threads[4];
  for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, thread_main, NULL);
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);

  if (argc == 3) {
    void *first = through_object(argv[1]);
    void *second = through_object(argv[2]);
    printf("unwind: the second object %s the first's address\n", first == second ? "took" : "did not take");
  }

  signal(SIGUSR1, handler);
  raise(SIGUSR1);
  if (in_handler_result != 1) {
    fprintf(stderr, "FAIL signal handler: the walk disagreed with backtrace\n");
    failures++;
  }

#if defined(__x86_64__)
  /* On x86-64 the walker must really work: every walk above but the signal
   * handler's is understood. */
  if (fallbacks != 0) {
    fprintf(stderr, "FAIL %d of %d walks fell back to backtrace()\n", fallbacks, walks);
    failures++;
  }
#endif
  printf("unwind: %d walks, %d fallbacks, %d failures\n", walks, fallbacks, failures);
  return failures != 0;
}
