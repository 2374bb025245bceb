/* probes.c - allocation patterns that bench/run does not cover, each a trap an
 * allocator fell into once (bench/probes/README.md says which).  One pattern per
 * run: `probes NAME [N]`.  Prints one RESULT line: elapsed_s, and minflt and
 * maxrss_kb of the whole process (getrusage). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stderr, "probes: %s\n", what);
  exit(1);
}

/* Keeps the compiler from dropping writes to memory that is freed unread. */
static void *(*volatile fill)(void *, int, size_t) = memset;

/* ---- handoff: a producer thread allocates blocks of 64 KiB - 1 MiB, touches their
 * first and last byte, and hands each to a consumer thread that frees it (a
 * network thread passing buffers to workers). ---- */
#define SLOTS 1024
static void *_Atomic slots[SLOTS];

static void *producer(void *arg) {
  long n = (long)(intptr_t)arg;
  uint64_t r = 0x9e3779b97f4a7c15ull;
  for (long i = 0; i < n; i++) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    size_t size = ((size_t)64 << 10) + (size_t)(r % ((size_t)1 << 20));
    char *p = malloc(size);
    if (p == NULL) die("malloc failed");
    p[0] = 1;
    p[size - 1] = 2;
    for (unsigned k = (unsigned)(r % SLOTS);; k = (k + 1) % SLOTS) {
      void *empty = NULL;
      if (atomic_compare_exchange_strong(&slots[k], &empty, p)) break;
    }
  }
  return NULL;
}

static void *consumer(void *arg) {
  long n = (long)(intptr_t)arg, got = 0;
  while (got < n)
    for (unsigned k = 0; k < SLOTS && got < n; k++) {
      void *p = atomic_exchange(&slots[k], NULL);
      if (p != NULL) {
        free(p);
        got++;
      }
    }
  return NULL;
}

static void handoff(long n) {
  pthread_t a, b;
  if (pthread_create(&a, NULL, producer, (void *)(intptr_t)n) || pthread_create(&b, NULL, consumer, (void *)(intptr_t)n))
    die("pthread_create failed");
  pthread_join(a, NULL);
  pthread_join(b, NULL);
}

/* ---- calloc-unused: calloc(64 MiB), use the first 64 KiB, shrink it to that with
 * realloc, free it; again and again (a buffer sized for the worst case). ---- */
static void calloc_unused(long n) {
  for (long i = 0; i < n; i++) {
    char *p = calloc(1, (size_t)64 << 20);
    if (p == NULL) die("calloc failed");
    fill(p, 'x', (size_t)64 << 10);
    p = realloc(p, (size_t)64 << 10);
    if (p == NULL || p[100] != 'x') die("realloc failed");
    free(p);
  }
}

/* ---- vector-doubling: grow a buffer from 1 KiB to 256 MiB by doubling (new block,
 * copy, free the old: what std::vector does), filling it; n times over. ---- */
static void vector_doubling(long n) {
  for (long round = 0; round < n; round++) {
    char *p = NULL;
    size_t old = 0;
    for (size_t size = 1024; size <= ((size_t)256 << 20); size *= 2) {
      char *q = malloc(size);
      if (q == NULL) die("malloc failed");
      if (p != NULL) memcpy(q, p, old);
      fill(q + old, 7, size - old);
      free(p);
      p = q;
      old = size;
    }
    if (p[old - 1] != 7) die("lost data");
    free(p);
  }
}

/* ---- cross-thread: 4 threads each replace blocks at random in a working set of
 * 4,096 (16 B - 8 KB, half of them under 272 B) and hand one freed block in eight
 * to the next thread, which frees it at the end of its round of 4,000 steps (the
 * rpmalloc benchmark's shape: mixed sizes, remote frees).  A thread that finishes
 * keeps freeing what it is handed until all have finished. ---- */
#define CT_THREADS 4
#define CT_SLOTS 4096
#define CT_STEPS 4000
typedef struct ct_node { struct ct_node *next; } ct_node_t;
static _Atomic(ct_node_t *) ct_inbox[CT_THREADS];
static atomic_int ct_done;
static long ct_rounds;

static uint64_t ct_next(uint64_t *r) {
  *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
  return *r;
}

static void ct_drain(int t) {
  for (ct_node_t *n = atomic_exchange(&ct_inbox[t], NULL), *next; n != NULL; n = next) {
    next = n->next;
    free(n);
  }
}

static void *ct_worker(void *arg) {
  int t = (int)(intptr_t)arg;
  uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
  void **slot = calloc(CT_SLOTS, sizeof(void *));
  if (slot == NULL) die("calloc failed");
  for (long round = 0; round < ct_rounds; round++) {
    for (int i = 0; i < CT_STEPS; i++) {
      unsigned k = (unsigned)(ct_next(&r) % CT_SLOTS);
      if (slot[k] != NULL) {
        if (ct_next(&r) % 8 == 0) {
          ct_node_t *n = slot[k];
          _Atomic(ct_node_t *) *inbox = &ct_inbox[(t + 1) % CT_THREADS];
          n->next = atomic_load(inbox);
          while (!atomic_compare_exchange_weak(inbox, &n->next, n)) continue;
        } else {
          free(slot[k]);
        }
      }
      size_t size = 16 + (size_t)(ct_next(&r) % 7984);
      if (ct_next(&r) & 1) size = 16 + size % 256;
      slot[k] = malloc(size);
      if (slot[k] == NULL) die("malloc failed");
      fill(slot[k], t, size < 64 ? size : 64);
    }
    ct_drain(t);
  }
  atomic_fetch_add(&ct_done, 1);
  while (atomic_load(&ct_done) < CT_THREADS) ct_drain(t);
  ct_drain(t);
  for (int k = 0; k < CT_SLOTS; k++) free(slot[k]);
  free(slot);
  return NULL;
}

static void cross_thread(long n) {
  pthread_t th[CT_THREADS];
  ct_rounds = n;
  for (int t = 0; t < CT_THREADS; t++)
    if (pthread_create(&th[t], NULL, ct_worker, (void *)(intptr_t)t)) die("pthread_create failed");
  for (int t = 0; t < CT_THREADS; t++) pthread_join(th[t], NULL);
  for (int t = 0; t < CT_THREADS; t++) ct_drain(t);
}

int main(int argc, char **argv) {
  if (argc < 2) die("usage: probes handoff|calloc-unused|vector-doubling|cross-thread [N]");
  const char *name = argv[1];
  long n = argc > 2 ? atol(argv[2]) : 0;
  double t0 = now_s();
  if (strcmp(name, "handoff") == 0) handoff(n ? n : 20000);
  else if (strcmp(name, "calloc-unused") == 0) calloc_unused(n ? n : 100);
  else if (strcmp(name, "vector-doubling") == 0) vector_doubling(n ? n : 5);
  else if (strcmp(name, "cross-thread") == 0) cross_thread(n ? n : 200);
  else die("unknown pattern");
  double elapsed = now_s() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("RESULT %s elapsed_s=%.4f minflt=%ld maxrss_kb=%ld\n", name, elapsed, ru.ru_minflt, ru.ru_maxrss);
  return 0;
}
