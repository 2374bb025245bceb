/* limits_test.c: requests at the edges of what a process can have.
 *
 *  - huge alignments (up to 2^63) and sizes near PTRDIFF_MAX fail with the errno
 *    glibc gives, never crash, never return a pointer past the address space;
 *  - zero-byte blocks with alignments of 4 MiB and more are freeable;
 *  - requests the kernel's overcommit policy refuses return NULL with ENOMEM;
 *  - under RLIMIT_AS (ulimit -v) Galleon's own metadata leaves room for the program;
 *  - a failed huge request does not use up the cheap mapping path;
 *  - successful calls leave errno alone; mallopt(M_TRIM_THRESHOLD, -1) succeeds;
 *  - GALLEON_* variables are ignored by set-user-ID programs (run as root only).
 */
#define _GNU_SOURCE 1
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../test_util.h"

static void *volatile sink;
static void *opaque(void *p) {
  sink = p;
  return sink;
}
static size_t opaque_size(size_t n) {
  volatile size_t v = n;
  return v;
}

/* ---- alignments ---- */

static void check_block(void *p, size_t align, size_t n, const char *what) {
  CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, %zu) = %p: misaligned", what, align, n, p);
  CHECKF((uintptr_t)p < ((uintptr_t)1 << 47), "%s(%zu, %zu) = %p: outside the address space", what,
         align, n, p);
  CHECKF(malloc_usable_size(p) >= n, "%s(%zu, %zu): usable %zu", what, align, n, malloc_usable_size(p));
  if (n) memset(p, 0x5a, n < 4096 ? n : 4096);
  free(p);
}

static void test_huge_alignments(void) {
  void *p = (void *)0x1234;
  int rc = posix_memalign(&p, (size_t)1 << 63, 1);
  CHECKF(rc == ENOMEM, "posix_memalign(2^63, 1) = %d", rc);
  CHECK(p == (void *)0x1234); /* left alone on failure */
  rc = posix_memalign(&p, (size_t)1 << 63, opaque_size((size_t)PTRDIFF_MAX + 17));
  CHECKF(rc == ENOMEM, "posix_memalign(2^63, PTRDIFF_MAX + 17) = %d", rc);
  CHECK(p == (void *)0x1234);
  errno = 0;
  CHECK(memalign((size_t)1 << 63, 1) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(aligned_alloc((size_t)1 << 62, 1) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(memalign(((size_t)1 << 63) + 1, 1) == NULL && errno == EINVAL); /* no power of two */
  errno = 0;
  CHECK(memalign(((size_t)1 << 62) + 1, 1) == NULL && errno == ENOMEM); /* rounds to 2^63 */

  /* Every power of two with small sizes: a usable aligned block, or ENOMEM. */
  size_t sizes[] = {0, 1, 100, 5000};
  int ok = 0, refused = 0;
  for (unsigned shift = 4; shift < 64; shift++) {
    size_t align = (size_t)1 << shift;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t n = sizes[i];
      errno = 0;
      void *m = memalign(align, n);
      if (m) {
        check_block(m, align, n, "memalign");
        ok++;
      } else {
        CHECKF(errno == ENOMEM, "memalign(2^%u, %zu): errno %d", shift, n, errno);
        refused++;
      }
      void *q = NULL;
      rc = posix_memalign(&q, align, n);
      CHECKF(rc == 0 || rc == ENOMEM, "posix_memalign(2^%u, %zu) = %d", shift, n, rc);
      if (rc == 0) check_block(q, align, n, "posix_memalign");
      /* Sizes that cannot fit with the alignment. */
      q = NULL;
      rc = posix_memalign(&q, align, opaque_size((size_t)PTRDIFF_MAX - align / 2));
      CHECKF(rc == ENOMEM, "posix_memalign(2^%u, PTRDIFF_MAX - 2^%u) = %d", shift, shift - 1, rc);
    }
  }
  /* Up to 1 GiB alignments are served on any 64-bit machine. */
  CHECKF(ok >= 4 * 27, "only %d aligned requests succeeded (%d refused)", ok, refused);
}

static void test_zero_size_big_alignment(void) {
  for (unsigned shift = 22; shift <= 26; shift++) {
    void *p = memalign((size_t)1 << shift, 0);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & (((size_t)1 << shift) - 1)) == 0);
    free(opaque(p)); /* must be accepted */
    CHECK(posix_memalign(&p, (size_t)1 << shift, 0) == 0);
    free(opaque(p));
    p = aligned_alloc((size_t)1 << shift, 0);
    CHECK(p != NULL);
    free(opaque(p));
  }
}

/* ---- the kernel's commit limit ---- */

static long overcommit_mode(void) {
  FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
  if (!f) return -1;
  long mode = -1;
  if (fscanf(f, "%ld", &mode) != 1) mode = -1;
  fclose(f);
  return mode;
}

static size_t ram_and_swap(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  CHECK(f != NULL);
  char line[256];
  size_t total = 0, kb;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "MemTotal: %zu kB", &kb) == 1) total += kb * 1024;
    if (sscanf(line, "SwapTotal: %zu kB", &kb) == 1) total += kb * 1024;
  }
  fclose(f);
  return total;
}

static void test_overcommit(void) {
  long mode = overcommit_mode();
  if (mode == 1) { /* "always": the kernel grants everything; nothing to check */
    printf("limits/overcommit: vm.overcommit_memory=1, the kernel accepts any size: skipped\n");
    return;
  }
  size_t too_much = 2 * ram_and_swap();
  size_t sizes[] = {too_much, (size_t)1 << 40, (size_t)32 << 40};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    void *p = malloc(opaque_size(sizes[i]));
    CHECKF(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d under overcommit mode %ld", sizes[i],
           p, errno, mode);
    errno = 0;
    p = calloc(opaque_size(sizes[i]), 1);
    CHECKF(p == NULL && errno == ENOMEM, "calloc(%zu, 1) = %p", sizes[i], p);
    p = malloc(64);
    void *q = realloc(p, opaque_size(sizes[i]));
    CHECKF(q == NULL && errno == ENOMEM, "realloc to %zu = %p", sizes[i], q);
    free(p);
  }
  /* What fits still works afterwards. */
  void *p = malloc(64 * MiB);
  CHECK(p != NULL);
  memset(p, 1, 64 * MiB);
  free(p);
}

/* ---- ulimit -v ---- */

static size_t address_space_now(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  CHECK(f != NULL);
  size_t pages = 0;
  CHECK(fscanf(f, "%zu", &pages) == 1);
  fclose(f);
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* As `ulimit -v 64m` before the program starts: the limit counts every mapping of
 * the process, Galleon's own metadata included (a 32 MiB static segment map once
 * left 17-25 MiB to the program; glibc's malloc leaves 59-61). */
#define RLIMIT_TOTAL (64 * MiB)

static int rlimit_probe(void) {
  size_t at_start = address_space_now();
  static void *blocks[256];
  size_t got = 0;
  while (got < 256) {
    errno = 0;
    void *p = malloc(MiB);
    if (!p) {
      CHECKF(errno == ENOMEM, "malloc under RLIMIT_AS: errno %d", errno);
      break;
    }
    memset(p, 3, 4096);
    blocks[got++] = p;
  }
  /* Reallocs near the limit: failures leave blocks intact, successes leave errno. */
  for (size_t i = 0; i + 1 < got; i += 2) {
    errno = 0;
    void *q = realloc(blocks[i], 3 * MiB);
    if (q) {
      CHECKF(errno == 0, "successful realloc set errno %d", errno);
      blocks[i] = q;
    } else {
      CHECK(errno == ENOMEM);
    }
  }
  for (size_t i = 0; i < got; i++) free(blocks[i]);
  void *again = malloc(8 * MiB);
  CHECK(again != NULL);
  free(again);
  printf("%zu %zu\n", got, at_start / MiB);
  return 0;
}

static void test_rlimit(void) {
#if defined(TEST_SANITIZE_ADDRESS) || defined(TEST_SANITIZE_THREAD)
  printf("limits/rlimit: sanitizers reserve terabytes of shadow memory: skipped\n");
#else
  int fds[2];
  CHECK(pipe(fds) == 0);
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    struct rlimit rl = {RLIMIT_TOTAL, RLIMIT_TOTAL};
    dup2(fds[1], 1);
    close(fds[0]);
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(2);
    execl("/proc/self/exe", "limits_test", "--rlimit-probe", (char *)NULL);
    _exit(3);
  }
  close(fds[1]);
  char out[256] = "";
  ssize_t n = read(fds[0], out, sizeof out - 1);
  close(fds[0]);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0 && n > 0, "probe under RLIMIT_AS failed: status 0x%x",
         status);
  out[n] = 0;
  size_t got = 0, at_start = 0;
  CHECK(sscanf(out, "%zu %zu", &got, &at_start) == 2);
  printf("limits/rlimit: %zu MiB of malloc under a %zu MiB limit (%zu MiB mapped at start)\n", got,
         RLIMIT_TOTAL / MiB, at_start);
  CHECKF(got + at_start >= RLIMIT_TOTAL / MiB - 12, "only %zu MiB under RLIMIT_AS with %zu MiB mapped at start",
         got, at_start);
  CHECKF(at_start < 24, "%zu MiB of address space mapped before main's first malloc", at_start);
#endif
}

/* ---- the mapping hint survives failed huge requests ---- */

static void test_hint_after_failures(void) {
#if defined(TEST_SANITIZE_ADDRESS) || defined(TEST_SANITIZE_THREAD)
  /* The hint starts at a random address between 8 and 24 TiB, and ASan's high
   * shadow reaches 16 TiB: there every hinted mapping misses until the hint has
   * jumped past it, which depends on how many fresh mappings earlier tests made
   * (fewer since large aligned blocks come from the segment cache). */
  printf("limits/hint_after_failures: the sanitizer's shadow covers the hint range: skipped\n");
#elif !defined(TEST_PRELOAD)
  for (int i = 0; i < 200; i++) sink = malloc(opaque_size((size_t)1 << 46)); /* 64 TiB: refused */
  galleon_stats_t before, after;
  void *blocks[8];
  /* An empty segment cache (what earlier tests freed, aligned blocks included, may
   * sit there): these segments must come fresh from the kernel. */
  galleon_collect();
  galleon_stats_get(&before);
  for (int i = 0; i < 8; i++) {
    blocks[i] = malloc(9 * MiB + (size_t)i * 4 * MiB); /* sizes the segment cache cannot serve */
    CHECK(blocks[i] != NULL);
  }
  galleon_stats_get(&after);
  for (int i = 0; i < 8; i++) free(blocks[i]);
  /* Through the hint a segment costs one mmap and no munmap; without it, a
   * reservation trimmed at both ends. */
  size_t unmaps = after.munmap_calls - before.munmap_calls;
  CHECKF(unmaps <= 2, "%zu munmap calls for 8 fresh segments after failed huge requests", unmaps);
#endif
}

/* ---- small things ---- */

static void test_errno_and_mallopt(void) {
  CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);
  CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
  size_t sizes[] = {1, 100, 5000, 100000, 300000, 5 * MiB, 40 * MiB, 1000, 10};
  void *p = NULL;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    p = realloc(p, sizes[i]);
    CHECK(p != NULL);
    CHECKF(errno == 0, "realloc to %zu succeeded but set errno %d", sizes[i], errno);
  }
  free(p);
}

/* ---- set-user-ID programs ignore GALLEON_* ---- */

static int report_option(void) {
  printf("%ld\n", galleon_option_get("purge_delay_ms"));
  return 0;
}

__attribute__((unused)) static long run_reporting(const char *exe) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "GALLEON_PURGE_DELAY_MS=777 '%s' --report-option", exe);
  FILE *f = popen(cmd, "r");
  CHECK(f != NULL);
  long v = -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  pclose(f);
  return v;
}

static void test_setuid_ignores_environment(void) {
#if defined(TEST_PRELOAD) || defined(TEST_NO_OVERRIDE) && TEST_NO_OVERRIDE
  return;
#else
  if (geteuid() != 0) {
    printf("limits/setuid: needs root to make a set-user-ID copy: skipped\n");
    return;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(n > 0);
  self[n] = 0;
  CHECK(run_reporting(self) == 777); /* control: honoured normally */
  char dir[] = "/tmp/galleon-setuid-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  CHECK(chmod(dir, 0755) == 0);
  char copy[4200], cmd[8500];
  snprintf(copy, sizeof copy, "%s/limits_setuid", dir);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", self, copy);
  CHECK(system(cmd) == 0);
  CHECK(chown(copy, 65534, 65534) == 0); /* nobody */
  CHECK(chmod(copy, 04755) == 0);
  long v = run_reporting(copy);
  unlink(copy);
  rmdir(dir);
  if (v == -1) { /* nobody could not load the library from the build tree */
    printf("limits/setuid: the set-user-ID copy could not run here: skipped\n");
    return;
  }
  CHECKF(v != 777, "a set-user-ID program honoured GALLEON_PURGE_DELAY_MS (got %ld)", v);
#endif
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--report-option") == 0) return report_option();
  if (argc > 1 && strcmp(argv[1], "--rlimit-probe") == 0) return rlimit_probe();
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"huge_alignments", test_huge_alignments},
               {"zero_size_big_alignment", test_zero_size_big_alignment},
               {"overcommit", test_overcommit},
               {"rlimit", test_rlimit},
               {"hint_after_failures", test_hint_after_failures},
               {"errno_and_mallopt", test_errno_and_mallopt},
               {"setuid", test_setuid_ignores_environment}};
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue; /* one test by name */
    double t0 = now_s();
    tests[i].fn();
    printf("limits/%s: ok (%.2f s)\n", tests[i].name, now_s() - t0);
  }
  printf("limits tests passed\n");
  return 0;
}
