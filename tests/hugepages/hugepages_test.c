/* hugepages_test.c: GALLEON_HUGE_PAGES=1 (set by CTest for this program).
 *   - segments ask for transparent huge pages: with the kernel's THP mode "always"
 *     or "madvise", touched segments are backed by huge pages (AnonHugePages);
 *   - purging keeps huge pages whole: free pages of a 2 MiB half that still has a
 *     page in use are not purged (that would split the huge page), a half with no
 *     page in use is; with the option off, the same free pages are purged. */
#define _GNU_SOURCE 1
#include <stdbool.h>
#include <sys/mman.h>

#include "../test_util.h"

static size_t anon_huge_kib(void) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "AnonHugePages: %zu kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

static bool thp_available(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return false;
  char text[128] = "";
  CHECK(fgets(text, sizeof text, f) != NULL || true);
  fclose(f);
  return strstr(text, "[never]") == NULL;
}

static size_t purged(void) {
  galleon_stats_t s;
  galleon_stats_get(&s);
  return s.purged_bytes;
}

#define BLOCKS 16384 /* x 1 KiB = 16 MiB: four small segments */

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  CHECKF(galleon_option_get("huge_pages") == 1, "run with GALLEON_HUGE_PAGES=1");
  CHECK(galleon_option_set("purge_idle_ms", 3600000) == 0); /* only the calls below purge */
  CHECK(galleon_option_set("purge_window_ms", 0) == 0);
  CHECK(galleon_option_set("retain_bytes", 0) == 0);
  char **b = mmap(NULL, BLOCKS * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(b != MAP_FAILED);

  for (int round = 0; round < 2; round++) {
    bool huge = round == 0;
    CHECK(galleon_option_set("huge_pages", huge) == 0);
    size_t huge0 = anon_huge_kib();
    for (size_t i = 0; i < BLOCKS; i++) {
      b[i] = malloc(1024);
      CHECK(b[i] != NULL);
      memset(b[i], 1, 1024);
    }
    size_t huge_kib = anon_huge_kib() - huge0;
    /* Keep one block in every 64 KiB page: every page stays in use, the rest free. */
    for (size_t i = 0; i < BLOCKS; i++)
      if (i % 64 != 0) free(b[i]);
    size_t p0 = purged();
    malloc_trim(0);
    size_t sparse = purged() - p0;
    for (size_t i = 0; i < BLOCKS; i += 64) free(b[i]);
    p0 = purged();
    malloc_trim(0);
    size_t all = purged() - p0;
    printf("hugepages %s: %zu KiB of huge pages for 16 MiB; trim with every page in use purged %zu KiB, "
           "after the last frees %zu KiB\n", huge ? "on" : "off", huge_kib, sparse / 1024, all / 1024);
    /* Every 2 MiB half has pages in use: with huge pages nothing may be purged. */
    if (huge) CHECKF(sparse == 0, "purged %zu bytes while every 2 MiB half held blocks", sparse);
    CHECKF(all >= 8 * MiB, "only %zu bytes purged once everything was free", all);
    if (huge && thp_available())
      CHECKF(huge_kib >= 4096, "segments got only %zu KiB of huge pages (THP is on here)", huge_kib);
  }

  /* Half a segment free and half in use: with huge pages nothing of the used half
   * is purged, the free half is. */
  CHECK(galleon_option_set("huge_pages", 1) == 0);
  for (size_t i = 0; i < BLOCKS; i++) {
    b[i] = malloc(1024);
    CHECK(b[i] != NULL);
    memset(b[i], 2, 1024);
  }
  /* Free the blocks of every odd 64 KiB page (Galleon's small pages): in each 2 MiB
   * half, half the pages become free while the others stay in use. */
#define ODD_PAGE(p) (((((uintptr_t)(p)) & (4 * MiB - 1)) >> 16) % 2 == 1)
  for (size_t i = 0; i < BLOCKS; i++)
    if (ODD_PAGE(b[i])) free(b[i]);
  size_t p0 = purged();
  malloc_trim(0);
  size_t split = purged() - p0;
  printf("hugepages on: every other page free: %zu KiB purged (keepcost %zu KiB)\n", split / 1024,
         (size_t)mallinfo2().keepcost / 1024);
  CHECKF(split == 0, "purged %zu bytes inside 2 MiB halves still in use (splits huge pages)", split);
  CHECK(galleon_option_set("huge_pages", 0) == 0);
  p0 = purged();
  malloc_trim(0);
  size_t without = purged() - p0;
  printf("hugepages off: the same free pages: %zu KiB purged (keepcost %zu KiB)\n", without / 1024,
         (size_t)mallinfo2().keepcost / 1024);
  CHECKF(without >= 4 * MiB, "with huge pages off the free pages were not purged (%zu bytes)", without);
  for (size_t i = 0; i < BLOCKS; i++)
    if (!ODD_PAGE(b[i])) free(b[i]);
  munmap(b, BLOCKS * sizeof(char *));
  printf("hugepages tests passed\n");
  return 0;
}
