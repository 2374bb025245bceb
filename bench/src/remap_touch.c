/* remap_touch.c - what this machine charges for writing a page, depending on how
 * the page came to be where it is.  No allocator is involved: the program maps
 * and moves its own memory.  Galleon reuses freed large blocks by moving their
 * pages with mremap (docs/ARCHITECTURE.md, "Large blocks and realloc"); this
 * measures what such a move costs the program at its next write of the pages:
 *   fresh     a new anonymous mapping, written for the first time (page faults)
 *   resident  the same pages written again, left where they are
 *   moved-2m  moved to an address with the same offset in a 2 MiB unit, a whole
 *             number of 2 MiB units: the kernel moves page-table pages
 *   moved-4k  moved to an address 4 KiB off that alignment: the kernel moves
 *             each page's entry on its own
 * Each figure is microseconds per 4 KiB page for writing SIZE MiB (memset), the
 * median of ROUNDS moves (the first move of a region is reported apart: some
 * hypervisors charge it differently).  On bare metal the four are close after
 * "fresh"; under a hypervisor that shadows the guest's page tables they are not.
 *
 * usage: remap-touch [SIZE_MIB [ROUNDS]]      defaults 20 and 9
 * prints: RESULT remap-touch fresh_us=... resident_us=... moved_2m_first_us=...
 *         moved_2m_us=... moved_4k_first_us=... moved_4k_us=... */
#include "common.h"
#include <sys/mman.h>

#define UNIT ((size_t)2 << 20)

/* An address range of `size` bytes at `offset` past a 2 MiB boundary, reserved
 * (no access) so that a move can land on it. */
static char *reserve(size_t size, size_t offset) {
  char *raw = mmap(NULL, size + 2 * UNIT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) die("remap-touch: mmap failed");
  char *at = (char *)(((uintptr_t)raw + UNIT - 1) & ~(uintptr_t)(UNIT - 1)) + offset;
  return at;
}

static double write_us_per_page(char *p, size_t size, int value) {
  double t = now_s();
  memset(p, value, size);
  ESCAPE(p);
  return (now_s() - t) * 1e6 / (double)(size / 4096);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Moves a written region `rounds` times, each time to a fresh reservation at
 * `offset` past a 2 MiB boundary, alternating with offset 0, and writes it after
 * each move; the first write's cost in *first, the median of the others returned. */
static double moved(size_t size, size_t offset, int rounds, double *first) {
  char *p = mmap(reserve(size, 0), size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) die("remap-touch: mmap failed");
  memset(p, 1, size);
  double costs[64];
  if (rounds > 64) rounds = 64;
  for (int i = 0; i <= rounds; i++) {
    char *to = reserve(size, i % 2 == 0 ? offset : 0);
    p = mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (p == MAP_FAILED) die("remap-touch: mremap failed");
    double us = write_us_per_page(p, size, 2 + i);
    if (i == 0) *first = us;
    else costs[i - 1] = us;
  }
  munmap(p, size);
  qsort(costs, (size_t)rounds, sizeof costs[0], cmp_double);
  return costs[rounds / 2];
}

int main(int argc, char **argv) {
  size_t size = (size_t)arg_long(argc, argv, 1, 20) << 20;
  int rounds = (int)arg_long(argc, argv, 2, 9);
  size = (size + UNIT - 1) & ~(UNIT - 1);
  char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("remap-touch: mmap failed");
  double fresh = write_us_per_page(p, size, 1);
  double resident = write_us_per_page(p, size, 2);
  munmap(p, size);
  double first2m, first4k;
  double m2 = moved(size, 0, rounds, &first2m);
  double m4 = moved(size, 4096, rounds, &first4k);
  printf("RESULT remap-touch size_mib=%zu fresh_us=%.2f resident_us=%.2f moved_2m_first_us=%.2f moved_2m_us=%.2f "
         "moved_4k_first_us=%.2f moved_4k_us=%.2f\n",
         size >> 20, fresh, resident, first2m, m2, first4k, m4);
  return 0;
}
