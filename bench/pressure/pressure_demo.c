/* pressure_demo.c - a bursty program under a cgroup memory limit: every 300 ms it
 * builds a 112 MiB working set of small blocks, uses it, frees it and stays busy with
 * small allocations (never idle).  It prints its RSS every 25 ms ("ms rss_mib") for
 * DURATION seconds.  bench/pressure/run.sh runs it in a cgroup with a 120 MiB limit
 * under Galleon (pressure response on and off) and glibc, and draws the RSS lines. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

#define BLOCKS (112 * 1024) /* x 1 KiB */

int main(int argc, char **argv) {
  double duration = argc > 1 ? atof(argv[1]) : 4.0;
  static char *blocks[BLOCKS];
  double start = now_ms(), next_sample = 0, next_burst = 0;
  void *churn[64] = {0};
  unsigned k = 0;
  while (now_ms() - start < duration * 1000) {
    double t = now_ms() - start;
    if (t >= next_burst) {
      for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(1024);
        memset(blocks[i], i, 1024);
      }
      for (int i = 0; i < BLOCKS; i++) free(blocks[i]);
      next_burst += 300;
    }
    if (t >= next_sample) {
      printf("%.0f %.1f\n", t, rss_mib());
      fflush(stdout);
      next_sample += 25;
    }
    /* busy, not idle: small allocations keep coming */
    free(churn[k % 64]);
    churn[k % 64] = malloc(64 + k % 512);
    k++;
    usleep(200);
  }
  return 0;
}
