/* crash_test.c: misuse is detected and reported.
 * Each misuse runs in its own forked child with stderr captured through a pipe.
 * Oracle: the child dies of SIGABRT and its stderr holds exactly one line that
 * starts with "galleon: error:", naming the kind of misuse and the pointer. */
#define _GNU_SOURCE 1
#include <stdbool.h>
#include <sys/mman.h>

#include "../test_util.h"

/* The pointer a case passes, for the parent to compare with the report.  Set in
 * the child; the parent learns it through a shared mapping. */
typedef struct {
  uintptr_t bad;   /* pointer handed to free/realloc */
  uintptr_t block; /* start of the block, for interior pointers */
} shared_t;
static shared_t *shared;

static void *volatile sink;

static void *opaque(void *p) { /* hide provenance from the compiler */
  sink = p;
  return sink;
}

static void case_control(void *arg) {
  /* Valid use: must exit 0 with no error report. */
  void *p = malloc(64), *q = malloc(100000), *r = malloc(2 * MiB);
  shared->bad = (uintptr_t)p;
  free(p);
  free(q);
  q = realloc(r, 3 * MiB);
  free(q);
  p = malloc(64);
  free(p);
}

static void double_free(size_t n) {
  char *p = malloc(n);
  CHECK(p != NULL);
  memset(p, 1, n);
  shared->bad = (uintptr_t)p;
  free(p);
  free(opaque(p));
}
static void case_double_free_small(void *arg) { double_free(48); }
static void case_double_free_medium(void *arg) { double_free(64 * KiB); }
static void case_double_free_large(void *arg) { double_free(1 * MiB); }

static void case_double_free_aligned(void *arg) {
  void *p = NULL;
  CHECK(posix_memalign(&p, 4096, 3000) == 0);
  shared->bad = (uintptr_t)p;
  free(p);
  free(opaque(p));
}

static void case_free_after_realloc(void *arg) {
  /* The stale pointer of a block that realloc moved (or, if it grew in place,
   * the same block freed twice). */
  char *p = malloc(32);
  CHECK(p != NULL);
  char *q = realloc(p, 100000);
  CHECK(q != NULL);
  shared->bad = (uintptr_t)p;
  if (q == p) free(q);
  free(opaque(p));
}

#include <pthread.h>
static void *free_in_thread(void *p) {
  free(p);
  return NULL;
}
static void case_double_free_other_thread(void *arg) {
  /* Freed by its owner, then again by another thread (the remote-free path). */
  char *keep = malloc(48); /* keeps the page in use */
  char *p = malloc(48);
  CHECK(keep && p);
  shared->bad = (uintptr_t)p;
  free(p);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_in_thread, opaque(p)) == 0);
  pthread_join(t, NULL);
  free(keep);
}

static void case_free_stack(void *arg) {
  char buf[256];
  memset(buf, 0, sizeof buf);
  shared->bad = (uintptr_t)(buf + 16);
  free(opaque(buf + 16));
}

static void case_free_mmap(void *arg) {
  char *m = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  char *x = m + 4 * MiB; /* 4 MiB-aligned-looking pointer inside a foreign mapping */
  x = (char *)(((uintptr_t)x + 4 * MiB - 1) & ~(uintptr_t)(4 * MiB - 1));
  if (x >= m + 8 * MiB) x = m + 64;
  else x += 64;
  shared->bad = (uintptr_t)x;
  free(opaque(x));
}

static void case_free_static(void *arg) {
  static char data[128];
  shared->bad = (uintptr_t)(data + 16);
  free(opaque(data + 16));
}

static void interior(size_t n, size_t off) {
  char *p = malloc(n);
  CHECK(p != NULL);
  shared->block = (uintptr_t)p;
  shared->bad = (uintptr_t)(p + off);
  free(opaque(p + off));
}
static void case_interior_small(void *arg) { interior(64, 8); }
static void case_interior_page(void *arg) { interior(4096, 16); }
static void case_interior_large(void *arg) { interior(1 * MiB, 4096 + 48); }

static void case_realloc_foreign(void *arg) {
  char buf[128];
  memset(buf, 0, sizeof buf);
  shared->bad = (uintptr_t)(buf + 32);
  void *r = realloc(opaque(buf + 32), 1000);
  sink = r;
}

static void case_realloc_mmap(void *arg) {
  char *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  shared->bad = (uintptr_t)(m + 4096);
  void *r = realloc(opaque(m + 4096), 10);
  sink = r;
}

typedef struct {
  const char *name;
  void (*fn)(void *);
  const char *want1; /* the report must contain this... */
  const char *want2; /* ...or this (NULL: only want1) */
  bool interior;     /* check "block at" address too */
  bool expect_ok;    /* the control case */
} case_t;

static const case_t cases[] = {
    {"control (valid use)", case_control, NULL, NULL, false, true},
    {"double free, small block", case_double_free_small, "double free", NULL, false, false},
    {"double free, medium block", case_double_free_medium, "double free", NULL, false, false},
    /* A large block may already be unmapped when freed again: "invalid" is an
     * acceptable report then. */
    {"double free, large block", case_double_free_large, "double free", "invalid free", false, false},
    {"double free, aligned block", case_double_free_aligned, "double free", NULL, false, false},
    {"free of a pointer realloc moved", case_free_after_realloc, "double free", NULL, false, false},
    {"double free from another thread", case_double_free_other_thread, "double free", NULL, false, false},
    {"free of a stack pointer", case_free_stack, "invalid free", NULL, false, false},
    {"free of a static pointer", case_free_static, "invalid free", NULL, false, false},
    {"free into an mmap region", case_free_mmap, "invalid free", NULL, false, false},
    {"free of p+8 of a 64-byte block", case_interior_small, "invalid free", NULL, true, false},
    {"free of p+16 of a 4 KiB block", case_interior_page, "invalid free", NULL, true, false},
    {"free of p+4144 of a 1 MiB block", case_interior_large, "invalid free", NULL, true, false},
    {"realloc of a stack pointer", case_realloc_foreign, "invalid realloc", NULL, false, false},
    {"realloc into an mmap region", case_realloc_mmap, "invalid realloc", NULL, false, false},
};

/* First "0x..." number at or after s. */
static bool parse_hex_after(const char *s, const char *key, uintptr_t *out) {
  const char *k = strstr(s, key);
  if (!k) return false;
  const char *h = strstr(k, "0x");
  if (!h) return false;
  char *end;
  unsigned long long v = strtoull(h + 2, &end, 16);
  if (end == h + 2) return false;
  *out = (uintptr_t)v;
  return true;
}

static int run_case(const case_t *c) {
  static child_result_t r;
  memset(shared, 0, sizeof *shared);
  CHECK(run_child(c->fn, NULL, 10, &r) == 0);
  char st[128];
  describe_status(r.status, st, sizeof st);

  /* Lines starting with the error prefix. */
  int n_err = 0;
  char line[1024] = "";
  for (char *s = r.err; *s;) {
    char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (strncmp(s, "galleon: error:", 15) == 0) {
      n_err++;
      size_t l = len < sizeof line - 1 ? len : sizeof line - 1;
      memcpy(line, s, l);
      line[l] = 0;
    }
    s += len + (nl ? 1 : 0);
  }

  const char *why = NULL;
  if (c->expect_ok) {
    if (!(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)) why = "valid use did not exit 0";
    else if (n_err != 0) why = "valid use produced an error report";
  } else if (!(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT)) {
    why = "child did not die of SIGABRT";
  } else if (n_err != 1) {
    why = "stderr does not have exactly one \"galleon: error:\" line";
  } else if (!strstr(line, c->want1) && !(c->want2 && strstr(line, c->want2))) {
    why = "the report does not name the misuse";
  } else {
    uintptr_t a;
    if (!parse_hex_after(line, "of ", &a) || a != shared->bad) {
      why = "the report does not name the pointer passed";
    } else if (c->interior) {
      uintptr_t b;
      if (!parse_hex_after(line, "block at", &b) || b != shared->block)
        why = "the interior-pointer report does not name the block";
    }
  }
  printf("%-40s %s: %s\n", c->name, why ? "FAIL" : "ok", st);
  if (!why && n_err) printf("    %s\n", line);
  if (why) {
    printf("    %s; pointer %#lx block %#lx\n    stderr was: <<%s>>\n", why,
           (unsigned long)shared->bad, (unsigned long)shared->block, r.err);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(shared != MAP_FAILED);
  int failed = 0, ran = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
    failed += run_case(&cases[i]);
    ran++;
  }
  printf("%d of %d crash cases failed\n", failed, ran);
  return failed ? 1 : 0;
}
