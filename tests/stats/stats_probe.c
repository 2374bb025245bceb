/* stats_probe.c: makes a known allocation pattern and reports what Galleon says
 * about it, for stats_check.py (tests/stats) and tool_test.py (tests/tool), which
 * parse the output.  One command per run:
 *
 *   stats_probe info A.xml B.xml  300 blocks of 100 B (class 97..112) and 10 of
 *                                 20000 B, 2 large blocks; malloc_info to A; 200
 *                                 of the 100 B and 5 of the 20000 B blocks freed;
 *                                 malloc_info to B.  stdout: JSON with mallinfo2
 *                                 just before and after each malloc_info
 *   stats_probe stats             5 large blocks alive at once, then 2; a second
 *                                 thread's heap; malloc_stats() on stderr; stdout:
 *                                 JSON with mallinfo2 before and after
 *   stats_probe options           stdout: JSON with every option's value
 *   stats_probe dump FILE         60 blocks of 7000 B, 20 freed, 10 of 20000 B, a
 *                                 3 MiB block; galleon_dump_pages into FILE;
 *                                 stdout: JSON with mallinfo2 around it
 *   stats_probe hold              (under `galleon run`) checks that Galleon is the
 *                                 malloc, prints the options as JSON and exits
 *                                 holding 3 MiB of small blocks and a 1 MiB block
 *
 * Built linked (galleon_* called directly; in the address build the standard
 * names are renamed by test_util.h) or with TEST_PRELOAD for `galleon run`, where
 * the galleon_* functions are looked up with dlsym.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>

#include "galleon.h"
#include "../test_util.h"

#if TEST_NO_OVERRIDE
#define malloc_info galleon_malloc_info
#endif

static struct {
  struct galleon_mallinfo (*mallinfo2)(void);
  void (*heap_dump)(int);
  long (*option_get)(const char *);
  int (*owns)(const void *);
} G;

static void init_entry_points(void) {
#ifdef TEST_PRELOAD
  *(void **)&G.mallinfo2 = must_dlsym("galleon_mallinfo2");
  *(void **)&G.heap_dump = must_dlsym("galleon_dump_pages");
  *(void **)&G.option_get = must_dlsym("galleon_option_get");
  *(void **)&G.owns = must_dlsym("galleon_owns");
#else
  G.mallinfo2 = galleon_mallinfo2;
  G.heap_dump = galleon_dump_pages;
  G.option_get = galleon_option_get;
  G.owns = galleon_owns;
  (void)must_dlsym;
#endif
}

static void print_mallinfo(const char *name, struct galleon_mallinfo m, int last) {
  printf("\"%s\":{\"arena\":%zu,\"ordblks\":%zu,\"smblks\":%zu,\"hblks\":%zu,\"hblkhd\":%zu,"
         "\"usmblks\":%zu,\"fsmblks\":%zu,\"uordblks\":%zu,\"fordblks\":%zu,\"keepcost\":%zu}%s\n",
         name, m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks,
         m.fordblks, m.keepcost, last ? "" : ",");
}

/* A stream whose buffer is ours, so that writing to it never allocates. */
static FILE *open_quiet(const char *path) {
  static char buffers[2][1 << 16];
  static int next;
  FILE *f = fopen(path, "w");
  CHECKF(f != NULL, "cannot open %s", path);
  CHECK(setvbuf(f, buffers[next++ % 2], _IOFBF, sizeof buffers[0]) == 0);
  return f;
}

static int cmd_info(const char *a_path, const char *b_path) {
  enum { K = 300, KF = 200, MED = 10, MEDF = 5 };
  static void *small[K], *medium[MED];
  FILE *a = open_quiet(a_path), *b = open_quiet(b_path);
  void *l1 = malloc(MiB), *l2 = malloc(2 * MiB);
  CHECK(l1 && l2);
  for (int i = 0; i < K; i++) CHECK((small[i] = malloc(100)) != NULL);
  for (int i = 0; i < MED; i++) CHECK((medium[i] = malloc(20000)) != NULL);
  struct galleon_mallinfo a0 = G.mallinfo2();
  CHECK(malloc_info(0, a) == 0);
  struct galleon_mallinfo a1 = G.mallinfo2();
  for (int i = 0; i < KF; i++) free(small[i]);
  for (int i = 0; i < MEDF; i++) free(medium[i]);
  struct galleon_mallinfo b0 = G.mallinfo2();
  CHECK(malloc_info(0, b) == 0);
  struct galleon_mallinfo b1 = G.mallinfo2();
  CHECK(fclose(a) == 0 && fclose(b) == 0);
  printf("{\"small_size\":100,\"small_block\":%zu,\"small_freed\":%d,\"medium_size\":20000,"
         "\"medium_block\":%zu,\"medium_freed\":%d,\"large_blocks\":2,\n",
         malloc_usable_size(small[K - 1]), KF, malloc_usable_size(medium[MED - 1]), MEDF);
  print_mallinfo("a_before", a0, 0);
  print_mallinfo("a_after", a1, 0);
  print_mallinfo("b_before", b0, 0);
  print_mallinfo("b_after", b1, 1);
  printf("}\n");
  return 0;
}

static void *thread_allocates(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < 1000; i++) CHECK((blocks[i] = malloc(64)) != NULL);
  return NULL;
}

static int cmd_stats(void) {
  static void *thread_blocks[1000];
  void *large[5];
  for (int i = 0; i < 5; i++) {
    CHECK((large[i] = malloc(MiB)) != NULL);
    memset(large[i], 1, MiB);
  }
  for (int i = 2; i < 5; i++) free(large[i]);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, thread_allocates, thread_blocks) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  fflush(stderr);
  struct galleon_mallinfo m0 = G.mallinfo2();
  malloc_stats();
  struct galleon_mallinfo m1 = G.mallinfo2();
  printf("{\"large_peak_blocks\":5,\"large_block\":%zu,\n", (size_t)MiB);
  print_mallinfo("before", m0, 0);
  print_mallinfo("after", m1, 1);
  printf("}\n");
  return 0;
}

static const char *const option_names[] = {"purge_delay_ms", "purge_idle_ms", "purge_window_ms",
                                           "purge_decommit", "retain_bytes",  "segment_cache",
                                           "stats_at_exit",  "verbose",       "purge_thread",
                                           "pressure_percent"};

static void print_options(void) {
  printf("{");
  for (size_t i = 0; i < sizeof option_names / sizeof option_names[0]; i++)
    printf("%s\"%s\":%ld", i ? "," : "", option_names[i], G.option_get(option_names[i]));
  printf("}");
}

static int cmd_dump(const char *path) {
  enum { N = 60, NF = 20 };
  static void *blocks[N];
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECKF(fd >= 0, "cannot open %s", path);
  void *large = malloc(3 * MiB);
  CHECK(large != NULL);
  for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(7000)) != NULL);
  for (int i = 0; i < NF; i++) free(blocks[i]);
  for (int i = 0; i < 10; i++) CHECK(malloc(20000) != NULL); /* a medium segment too */
  struct galleon_mallinfo m0 = G.mallinfo2();
  G.heap_dump(fd);
  struct galleon_mallinfo m1 = G.mallinfo2();
  close(fd);
  printf("{\"size\":7000,\"block\":%zu,\"used\":%d,\"large_bytes\":%zu,\n", malloc_usable_size(blocks[N - 1]),
         N - NF, (size_t)3 * MiB);
  print_mallinfo("before", m0, 0);
  print_mallinfo("after", m1, 1);
  printf("}\n");
  return 0;
}

static int cmd_hold(void) {
  static void *blocks[3 * 1024];
  void *p = malloc(10);
  CHECKF(p != NULL && G.owns(p), "malloc is not Galleon's");
  free(p);
  for (int i = 0; i < 3 * 1024; i++) {
    CHECK((blocks[i] = malloc(1024)) != NULL);
    memset(blocks[i], 5, 1024);
  }
  void *large = malloc(MiB);
  CHECK(large != NULL && G.owns(large));
  memset(large, 6, MiB);
  const char *preload = getenv("LD_PRELOAD");
  printf("{\"preload\":\"%s\",\"options\":", preload ? preload : "");
  print_options();
  printf("}\n");
  return 0; /* exits holding the blocks: the statistics at exit show them */
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOFBF, 0);
  init_entry_points();
  int rc = 2;
  if (argc == 4 && strcmp(argv[1], "info") == 0) rc = cmd_info(argv[2], argv[3]);
  else if (argc == 2 && strcmp(argv[1], "stats") == 0) rc = cmd_stats();
  else if (argc == 2 && strcmp(argv[1], "options") == 0) {
    print_options();
    printf("\n");
    rc = 0;
  } else if (argc == 3 && strcmp(argv[1], "dump") == 0) rc = cmd_dump(argv[2]);
  else if (argc == 2 && strcmp(argv[1], "hold") == 0) rc = cmd_hold();
  else fprintf(stderr, "usage: stats_probe info A.xml B.xml | stats | options | dump FILE | hold\n");
  fflush(stdout);
  return rc;
}
