/* profile_test.c: the sampling heap profiler (src/profile.c, heap.c "Sampling").
 *
 *   rate      the number of sampled allocations matches the Poisson model
 *             (n (1 - exp(-s / interval)) for n blocks of s bytes) within 6 sigma,
 *             for small, medium and large sizes, malloc and calloc
 *   live      a known live set is estimated within 25 % after unsampling, and
 *             freeing it brings the live figures back to 0; "ever allocated" stays
 *   every     profile_interval 1 samples every allocation: sampled blocks behave
 *             like any other (alignment, usable size, calloc zeroes, realloc in place,
 *             moved and by mremap, free_sized, remote frees from another thread,
 *             memalign not sampled and correct), and each way of freeing one drops
 *             it from the live samples
 *   misuse    a sampled block freed twice, or an interior pointer of one freed, is
 *             reported as for any block
 *   files     the file layout google-pprof reads (header, site lines, MAPPED_LIBRARIES),
 *             PATH.collapsed, growth dumps (PATH.0001.heap), errors (no path: EINVAL;
 *             unwritable: the open errno)
 *   fork      a child that forked writes PATH.PID at its exit
 *   leaks     GALLEON_PROFILE_LEAKS's report at exit names the sizes left live
 * Each case runs in a child process (the profiler is process-wide).
 * Usage: test_profile [WORKDIR [CASE]].
 */
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>

#include "../test_util.h"

static char work_dir[256];

typedef struct {
  size_t live_count, live_bytes, total_count, total_bytes;
} counts_t;

typedef struct {
  counts_t header;
  counts_t sites[4096];
  int site_count;
  int has_maps;
} profile_t;

static void read_profile(const char *path, profile_t *out) {
  FILE *f = fopen(path, "r");
  CHECKF(f != NULL, "cannot open %s: %s", path, strerror(errno));
  memset(out, 0, sizeof *out);
  char line[8192];
  CHECK(fgets(line, sizeof line, f) != NULL);
  counts_t *h = &out->header;
  CHECKF(sscanf(line, "heap profile: %zu: %zu [%zu: %zu] @ heap_v2/", &h->live_count, &h->live_bytes,
                &h->total_count, &h->total_bytes) == 4,
         "bad header: %s", line);
  CHECKF(strstr(line, "@ heap_v2/") != NULL, "bad header: %s", line);
  while (fgets(line, sizeof line, f) != NULL) {
    if (line[0] == '\n') break;
    CHECK(out->site_count < 4096);
    counts_t *s = &out->sites[out->site_count++];
    CHECKF(sscanf(line, "%zu: %zu [%zu: %zu] @", &s->live_count, &s->live_bytes, &s->total_count,
                  &s->total_bytes) == 4 && strstr(line, "] @ 0x") != NULL,
           "bad site line: %s", line);
  }
  CHECK(fgets(line, sizeof line, f) != NULL);
  out->has_maps = strcmp(line, "MAPPED_LIBRARIES:\n") == 0;
  fclose(f);
}

/* Samples of blocks of exactly `size` bytes (each site's blocks share a size here). */
static counts_t sum_of_size(const profile_t *p, size_t size) {
  counts_t c = {0, 0, 0, 0};
  for (int i = 0; i < p->site_count; i++) {
    const counts_t *s = &p->sites[i];
    if (s->total_count == 0 || s->total_bytes != s->total_count * size) continue;
    c.live_count += s->live_count;
    c.live_bytes += s->live_bytes;
    c.total_count += s->total_count;
    c.total_bytes += s->total_bytes;
  }
  return c;
}

static double unsampled(size_t count, size_t bytes, double interval) {
  if (count == 0) return 0;
  return (double)bytes / (1 - exp(-((double)bytes / (double)count) / interval));
}

static void profile_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", work_dir, name); }

static void *volatile sink;

/* ---- rate ---- */
__attribute__((noinline)) static void churn(size_t size, size_t n, int zero) {
  for (size_t i = 0; i < n; i++) {
    char *p = zero ? calloc(1, size) : malloc(size);
    CHECK(p != NULL);
    p[0] = 1;
    sink = p;
    free(p);
  }
}

/* One size per process (the sampled counts accumulate per stack). */
static const struct {
  size_t size, n, interval;
  int zero;
} rate_runs[] = {
    /* Sizes between classes (24 -> 32, 40 -> 48, 1100 -> a medium class): a
     * block charged by its class's size must still be sampled by its own. */
    {24, 400000, 8192, 0}, {40, 200000, 8192, 0}, {1000, 40000, 8192, 0}, {1100, 40000, 8192, 0},
    {3000, 20000, 8192, 1}, {20000, 8000, 8192, 0}, {300000, 600, 8192, 0},
    /* Blocks that fill their class (sampled ones move to the next class) and are
     * freed at once, at the default interval: each free empties and retires a page
     * whose unused blocks were charged (the charge must be given back). */
    {65536, 60000, 512 * 1024, 0}, {32768, 100000, 512 * 1024, 0},
};

static void rate_one(void *arg) {
  size_t r = *(size_t *)arg;
  char path[512];
  snprintf(path, sizeof path, "%s/rate%zu.prof", work_dir, r);
  const double interval = (double)rate_runs[r].interval;
  size_t n = rate_runs[r].n / TEST_SCALE_DIV, size = rate_runs[r].size;
  CHECK(galleon_option_set("profile_interval", (long)interval) == 0);
  CHECK(galleon_profile_start(path) == 0);
  churn(size, n, rate_runs[r].zero);
  CHECK(galleon_profile_dump(NULL) == 0);
  profile_t *p = malloc(sizeof *p);
  read_profile(path, p);
  double expect = (double)n * (1 - exp(-(double)size / interval));
  counts_t c = sum_of_size(p, size);
  double tolerance = 6 * sqrt(expect) + 3;
  printf("rate: %zu x %zu bytes: %zu samples, expected %.1f +- %.1f\n", n, size, c.total_count, expect, tolerance);
  CHECKF(fabs((double)c.total_count - expect) <= tolerance, "size %zu: %zu samples, expected %.1f", size,
         c.total_count, expect);
  CHECK(c.live_count == 0 && c.live_bytes == 0);
  free(p);
}

static void case_rate(void *arg) {
  (void)arg;
  for (size_t r = 0; r < sizeof rate_runs / sizeof rate_runs[0]; r++) {
    child_result_t *res = malloc(sizeof *res);
    CHECK(run_child(rate_one, &r, 120, res) == 0);
    CHECKF(WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0, "size %zu: %s", rate_runs[r].size, res->err);
    free(res);
  }
  exit(0);
}

/* ---- live ---- */
static void *live_blocks[1 << 16];

__attribute__((noinline)) static void live_site(size_t n, size_t size) {
  for (size_t i = 0; i < n; i++) {
    live_blocks[i] = malloc(size);
    CHECK(live_blocks[i] != NULL);
    memset(live_blocks[i], 7, 16);
  }
}

static void case_live(void *arg) {
  (void)arg;
  char path[512];
  profile_path(path, sizeof path, "live.prof");
  const double interval = 64 * 1024;
  const size_t n = 8192, size = 4096; /* 32 MiB live */
  CHECK(galleon_option_set("profile_interval", (long)interval) == 0);
  CHECK(galleon_profile_start(path) == 0);
  live_site(n, size);
  CHECK(galleon_profile_dump(path) == 0);
  profile_t *p = malloc(sizeof *p);
  read_profile(path, p);
  CHECK(p->has_maps);
  counts_t c = sum_of_size(p, size);
  double est = unsampled(c.live_count, c.live_bytes, interval);
  printf("live: %zu samples, estimated %.1f MiB of %.1f MiB\n", c.live_count, est / MiB, (double)(n * size) / MiB);
  CHECKF(fabs(est - (double)(n * size)) <= 0.25 * (double)(n * size), "estimated %.0f bytes of %zu", est,
         n * size);
  for (size_t i = 0; i < n; i++) free(live_blocks[i]);
  CHECK(galleon_profile_dump(path) == 0);
  read_profile(path, p);
  c = sum_of_size(p, size);
  CHECKF(c.live_count == 0 && c.live_bytes == 0, "%zu samples still live after the frees", c.live_count);
  CHECK(c.total_count > 0);
  /* The collapsed file lists live sites only: the 4 KiB site is gone. */
  char collapsed[600];
  snprintf(collapsed, sizeof collapsed, "%s.collapsed", path);
  struct stat st;
  CHECK(stat(collapsed, &st) == 0);
  free(p);
  exit(0);
}

/* ---- every ---- */
/* Live samples of blocks of exactly `size` bytes: sites whose live blocks all
 * have that size (one call site serves every size of the loop below, one at a
 * time).  The sizes are odd enough (and at least 13 bytes: with an interval of
 * 1 a block of s bytes is sampled with probability 1 - exp(-s)) that nothing else in the process (stdio, the
 * loader) allocates them. */
static size_t live_of(const char *path, size_t size) {
  CHECK(galleon_profile_dump(path) == 0);
  profile_t *p = malloc(sizeof *p);
  read_profile(path, p);
  size_t live = 0;
  for (int i = 0; i < p->site_count; i++)
    if (p->sites[i].live_count > 0 && p->sites[i].live_bytes == p->sites[i].live_count * size)
      live += p->sites[i].live_count;
  free(p);
  return live;
}

static void *remote_free(void *arg) {
  free(arg);
  return NULL;
}

static void case_every(void *arg) {
  (void)arg;
  char path[512];
  profile_path(path, sizeof path, "every.prof");
  CHECK(galleon_option_set("profile_interval", 1) == 0);
  CHECK(galleon_profile_start(path) == 0);

  static const size_t sizes[] = {19,    13,     31,           77,     1001,   1027,
                                 5003,  65531,  131072 - 16,  131072, 200003, (3 << 20) + 5};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t s = sizes[i];
    char *p = malloc(s);
    CHECK(p != NULL && ((uintptr_t)p & 15) == 0);
    CHECKF(malloc_usable_size(p) >= s, "size %zu: usable %zu", s, malloc_usable_size(p));
    memset(p, 0x5a, s);
    CHECKF(live_of(path, s) == 1, "size %zu: not sampled", s);
    char *z = calloc(1, s);
    CHECK(z != NULL && all_bytes_are(z, s, 0));
    CHECK(live_of(path, s) == 2);
    free(z);
    if (i % 2) free_sized(p, s);
    else free(p);
    CHECKF(live_of(path, s) == 0, "size %zu: a sampled block is still live after its free", s);
  }

  /* realloc: in place, moved, and a large block resized by mremap. */
  char *p = malloc(101), saved[90];
  pattern_fill(p, 101);
  memcpy(saved, p, sizeof saved);
  char *q = realloc(p, 90); /* fits: stays, still sampled (at its first size) */
  CHECK(q == p && live_of(path, 101) == 1);
  q = realloc(q, 5001); /* moves: the old sample goes, the new one comes */
  CHECK(q != NULL && live_of(path, 101) == 0 && live_of(path, 5001) == 1 && memcmp(q, saved, sizeof saved) == 0);
  free(q);
  CHECK(live_of(path, 5001) == 0);
  char *big = malloc((1 << 20) + 3);
  memset(big, 3, 1 << 20);
  char *bigger = realloc(big, (16 << 20) + 3);
  CHECK(bigger != NULL && bigger[(1 << 20) - 1] == 3);
  CHECK(live_of(path, (1 << 20) + 3) == 0 && live_of(path, (16 << 20) + 3) == 1);
  free(bigger);
  CHECK(live_of(path, (16 << 20) + 3) == 0);

  /* Remote free of a sampled block. */
  p = malloc(333);
  CHECK(live_of(path, 333) == 1);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, remote_free, p) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(live_of(path, 333) == 0);

  /* memalign beyond 16: not sampled, aligned as asked. */
  void *a = memalign(64, 111);
  CHECK(a != NULL && ((uintptr_t)a & 63) == 0 && live_of(path, 111) == 0);
  free(a);
  void *pa = NULL;
  CHECK(posix_memalign(&pa, 4096, 5000) == 0 && ((uintptr_t)pa & 4095) == 0);
  free(pa);

  /* Stopped: nothing new is sampled, frees still count. */
  p = malloc(67);
  galleon_profile_stop();
  q = malloc(67);
  size_t live67 = live_of(path, 67);
  CHECKF(live67 == 1, "%zu live samples of 67 bytes", live67);
  free(p);
  free(q);
  CHECK(live_of(path, 67) == 0);
  exit(0);
}

/* ---- misuse ---- */
static void double_free_sampled(void *arg) {
  (void)arg;
  CHECK(galleon_option_set("profile_interval", 1) == 0);
  CHECK(galleon_profile_start(NULL) == 0);
  char *p = malloc(40);
  free(p);
  free(p);
}

static void interior_of_sampled(void *arg) {
  (void)arg;
  CHECK(galleon_option_set("profile_interval", 1) == 0);
  CHECK(galleon_profile_start(NULL) == 0);
  char *p = malloc(40);
  free(p + 8);
}

static void expect_abort(void (*fn)(void *), const char *want) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(run_child(fn, NULL, 60, r) == 0);
  CHECKF(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT && strstr(r->err, want) != NULL,
         "expected abort with \"%s\", got status %d, stderr: %s", want, r->status, r->err);
  free(r);
}

static void case_misuse(void *arg) {
  (void)arg;
  expect_abort(double_free_sampled, "galleon: error: double free of 0x");
  expect_abort(interior_of_sampled, ": interior pointer of the block at 0x");
  exit(0);
}

/* ---- files ---- */
static void case_files(void *arg) {
  (void)arg;
  char path[512];
  CHECK(galleon_profile_dump(NULL) == -1 && errno == EINVAL); /* never started: no path */
  CHECK(galleon_profile_start(NULL) == 0);
  CHECK(galleon_profile_dump(NULL) == -1 && errno == EINVAL);
  CHECK(galleon_profile_dump("/nonexistent-dir/x.prof") == -1 && errno == ENOENT);
  /* Growth dumps: every 4 MiB of estimated live growth. */
  profile_path(path, sizeof path, "growth.prof");
  CHECK(galleon_option_set("profile_dump_mb", 4) == 0);
  CHECK(galleon_option_set("profile_interval", 64 * 1024) == 0);
  CHECK(galleon_profile_start(path) == 0);
  live_site(6144, 4096); /* 24 MiB */
  char first[600];
  snprintf(first, sizeof first, "%s.0001.heap", path);
  struct stat st;
  CHECKF(stat(first, &st) == 0 && st.st_size > 0, "no growth dump %s", first);
  profile_t *p = malloc(sizeof *p);
  read_profile(first, p);
  CHECK(p->has_maps && p->header.live_count > 0);
  free(p);
  exit(0);
}

/* ---- fork ---- */
static void case_fork(void *arg) {
  (void)arg;
  char path[512];
  profile_path(path, sizeof path, "fork.prof");
  CHECK(galleon_profile_start(path) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    live_site(1024, 4096);
    exit(0); /* the exit dump: PATH.PID */
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char child_path[600];
  snprintf(child_path, sizeof child_path, "%s.%d", path, (int)pid);
  profile_t *p = malloc(sizeof *p);
  read_profile(child_path, p);
  CHECK(p->has_maps);
  free(p);
  exit(0);
}

/* ---- leaks ---- */
__attribute__((noinline)) static void leak_site(void) {
  for (int i = 0; i < 2048; i++) {
    void *p = malloc(4096); /* 8 MiB, never freed */
    memset(p, 1, 64);
    sink = p;
  }
}

static void leaking_child(void *arg) {
  (void)arg;
  CHECK(galleon_option_set("profile_leaks", 1) == 0);
  CHECK(galleon_option_set("profile_interval", 64 * 1024) == 0);
  CHECK(galleon_profile_start(NULL) == 0);
  leak_site();
  exit(0); /* the report is written at exit */
}

static void case_leaks(void *arg) {
  (void)arg;
  child_result_t *r = malloc(sizeof *r);
  CHECK(run_child(leaking_child, NULL, 60, r) == 0);
  CHECKF(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status %d: %s", r->status, r->err);
  const char *report = strstr(r->err, "galleon: leak report: ");
  CHECKF(report != NULL, "no leak report: %s", r->err);
  const char *top = strstr(report, "\ngalleon: leak: ");
  CHECKF(top != NULL, "no leak line: %s", r->err);
  size_t bytes = 0, blocks = 0;
  CHECK(sscanf(top, "\ngalleon: leak: %zu bytes in %zu blocks at ", &bytes, &blocks) == 2);
  printf("leaks: top site %zu bytes in %zu blocks\n", bytes, blocks);
  CHECKF(bytes >= 4 * MiB && bytes <= 12 * MiB, "top leak %zu bytes, expected about 8 MiB: %s", bytes, r->err);
  free(r);
  exit(0);
}

/* ---- driver ---- */
static const struct {
  const char *name;
  void (*fn)(void *);
} cases[] = {
    {"rate", case_rate},     {"live", case_live}, {"every", case_every}, {"misuse", case_misuse},
    {"files", case_files},   {"fork", case_fork}, {"leaks", case_leaks},
};

int main(int argc, char **argv) {
  snprintf(work_dir, sizeof work_dir, "%s", argc > 1 ? argv[1] : "profile_work");
  mkdir(work_dir, 0755);
  int failed = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 2 && strcmp(argv[2], cases[i].name) != 0) continue; /* profile_test DIR CASE: one case */
    child_result_t *r = malloc(sizeof *r);
    CHECK(run_child(cases[i].fn, NULL, 240, r) == 0);
    char how[128];
    int ok = WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
    printf("%-8s %s%s%s", cases[i].name, ok ? "ok" : "FAILED: ", ok ? "" : describe_status(r->status, how, sizeof how),
           "\n");
    if (!ok) {
      printf("%s\n", r->err);
      failed++;
    }
    free(r);
  }
  return failed ? 1 : 0;
}
