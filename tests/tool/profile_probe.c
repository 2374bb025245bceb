/* profile_probe.c: a known allocation pattern for the heap profiler, for
 * tool_test.py's report case (galleon run --profile, galleon report, google-pprof).
 * Built without Galleon (-O1 -g -fno-omit-frame-pointer -fno-inline) and run under
 * `galleon run --profile FILE`, so the library samples its malloc calls:
 *
 *   profile_probe          big_site() keeps 64 MiB live in 4 KiB blocks,
 *                          small_site() keeps 4 MiB live in 4 KiB blocks and
 *                          churn_site() allocates and frees 256 MiB in 64 KiB
 *                          blocks; it exits holding the 68 MiB, so the profile
 *                          written at exit shows big_site first by live bytes and
 *                          churn_site first by bytes allocated in total
 *   profile_probe symbols  allocates nothing; prints "NAME 0xADDRESS" for
 *                          big_site, small_site, churn_site, main and malloc, then
 *                          a copy of /proc/self/maps: what tool_test.py needs to
 *                          write a synthetic profile that names real code
 *
 * The pointers go to global arrays and every block is written, so the compiler
 * cannot drop an allocation (-fno-builtin too: malloc is just a function here).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096
#define BIG_BLOCKS ((64 << 20) / BLOCK)
#define SMALL_BLOCKS ((4 << 20) / BLOCK)
#define CHURN_BLOCK (64 << 10)
#define CHURN_BLOCKS ((256 << 20) / CHURN_BLOCK)

static char *big[BIG_BLOCKS];
static char *small[SMALL_BLOCKS];
volatile unsigned long sink;

static void check(char *p, size_t size) {
  if (p == NULL) {
    fprintf(stderr, "profile_probe: malloc(%zu) failed\n", size);
    exit(1);
  }
  memset(p, 0x5a, size);
}

__attribute__((noinline)) void big_site(void) {
  for (int i = 0; i < BIG_BLOCKS; i++) {
    big[i] = malloc(BLOCK);
    check(big[i], BLOCK);
  }
}

__attribute__((noinline)) void small_site(void) {
  for (int i = 0; i < SMALL_BLOCKS; i++) {
    small[i] = malloc(BLOCK);
    check(small[i], BLOCK);
  }
}

__attribute__((noinline)) void churn_site(void) {
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    char *p = malloc(CHURN_BLOCK);
    check(p, CHURN_BLOCK);
    sink += (unsigned char)p[i % CHURN_BLOCK];
    free(p);
  }
}

int main(int argc, char **argv);

static void print_symbols(void) {
  printf("big_site %#lx\n", (unsigned long)(uintptr_t)&big_site);
  printf("small_site %#lx\n", (unsigned long)(uintptr_t)&small_site);
  printf("churn_site %#lx\n", (unsigned long)(uintptr_t)&churn_site);
  printf("main %#lx\n", (unsigned long)(uintptr_t)&main);
  printf("malloc %#lx\n", (unsigned long)(uintptr_t)&malloc);
  FILE *maps = fopen("/proc/self/maps", "r");
  if (maps == NULL) {
    perror("profile_probe: /proc/self/maps");
    exit(1);
  }
  char line[4096];
  while (fgets(line, sizeof line, maps) != NULL)
    fputs(line, stdout);
  fclose(maps);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "symbols") == 0) {
    print_symbols();
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr, "usage: profile_probe [symbols]\n");
    return 2;
  }
  big_site();
  small_site();
  churn_site();
  unsigned long sum = 0;
  for (int i = 0; i < BIG_BLOCKS; i += 512)
    sum += (unsigned char)big[i][i % BLOCK];
  for (int i = 0; i < SMALL_BLOCKS; i += 512)
    sum += (unsigned char)small[i][i % BLOCK];
  printf("profile_probe: holding %d MiB in big_site and %d MiB in small_site (%lu)\n",
         BIG_BLOCKS * BLOCK >> 20, SMALL_BLOCKS * BLOCK >> 20, sum + sink);
  return 0; /* exits holding big[] and small[]: they are what the profile shows live */
}
