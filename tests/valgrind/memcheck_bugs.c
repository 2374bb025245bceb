/* memcheck_bugs.c: one deliberate bug per case, in a program linked with
 * libgalleon_memcheck.a, so Galleon stays its malloc under valgrind and memcheck
 * sees Galleon's blocks only through the client requests (src/annotate.h).
 * run_memcheck.sh runs each case under memcheck and checks the report.
 *
 *   memcheck_bugs CASE     CASE = clean | overflow | overflow-slack | overflow-large |
 *                          use-after-free | uninitialised | leak | double-free |
 *                          calloc-defined | realloc-moves */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;
static void *opaque(void *p) {
  sink = p;
  return sink;
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "clean";
  if (strcmp(c, "clean") == 0) { /* valid use of every kind: no error, no leak */
    char *a = malloc(100), *b = calloc(10, 10), *l = malloc(300000);
    memset(a, 1, 100);
    memset(l, 2, 300000);
    a = realloc(a, 5000);
    a[4999] = 3;
    void *m = NULL;
    if (posix_memalign(&m, 4096, 100) != 0) return 1;
    memset(m, 4, 100);
    int sum = b[99] + a[0] + l[299999];
    free(a);
    free(b);
    free(l);
    free(m);
    return sum == 3 ? 0 : 1;
  }
  if (strcmp(c, "overflow") == 0) { /* one byte past a 64-byte block */
    char *p = opaque(malloc(64));
    p[64] = 1;
    free(p);
    return 0;
  }
  if (strcmp(c, "overflow-slack") == 0) { /* past a 60-byte request, inside its 64-byte block */
    char *p = opaque(malloc(60));
    p[60] = 1;
    free(p);
    return 0;
  }
  if (strcmp(c, "overflow-large") == 0) {
    char *p = opaque(malloc(200000));
    p[200000] = 1;
    free(p);
    return 0;
  }
  if (strcmp(c, "use-after-free") == 0) {
    char *p = opaque(malloc(64));
    memset(p, 5, 64);
    free(p);
    return ((volatile char *)p)[10] == 5 ? 0 : 1;
  }
  if (strcmp(c, "uninitialised") == 0) {
    char *p = opaque(malloc(64));
    if (p[10] == 42) puts("the answer"); /* a branch on a byte never written */
    free(p);
    return 0;
  }
  if (strcmp(c, "leak") == 0) {
    /* The first block of a page is named by the page's descriptor (its start), so
     * memcheck counts it reachable: leak the second one. */
    void *first = malloc(1234);
    sink = malloc(1234);
    sink = NULL; /* the only pointer is gone */
    free(first);
    return 0;
  }
  if (strcmp(c, "double-free") == 0) {
    /* memcheck reports it, then Galleon's own check aborts: both must show. */
    char *keep = malloc(48), *p = opaque(malloc(48));
    free(p);
    free(opaque(p));
    free(keep);
    return 0;
  }
  if (strcmp(c, "calloc-defined") == 0) { /* calloc memory is defined: no report */
    char *p = calloc(1, 64);
    int r = p[10] == 0 ? 0 : 1;
    free(p);
    return r;
  }
  if (strcmp(c, "realloc-moves") == 0) { /* old pointer after realloc is freed */
    char *p = opaque(malloc(32));
    memset(p, 1, 32);
    char *q = realloc(p, 40);
    int r = ((volatile char *)p)[0];
    free(q);
    return r == 1 ? 0 : 2;
  }
  fprintf(stderr, "unknown case %s\n", c);
  return 2;
}
