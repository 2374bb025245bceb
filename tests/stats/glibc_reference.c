/* glibc_reference.c: glibc's own malloc_info and malloc_stats output, the layout
 * stats_check.py holds Galleon's against.  Not linked with Galleon and never run
 * under it: the system malloc.  A second thread makes a second arena.
 *
 *   glibc_reference info    malloc_info(0, stdout)
 *   glibc_reference stats   malloc_stats() on stderr
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *thread_allocates(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < 100; i++) blocks[i] = malloc(64 + (size_t)i * 40);
  for (int i = 0; i < 100; i += 2) free(blocks[i]);
  return NULL;
}

int main(int argc, char **argv) {
  static void *blocks[400], *thread_blocks[100];
  for (int i = 0; i < 400; i++) blocks[i] = malloc(16 + (size_t)(i % 50) * 24);
  for (int i = 0; i < 400; i += 3) free(blocks[i]);
  void *large = malloc(4 << 20);
  pthread_t t;
  if (pthread_create(&t, NULL, thread_allocates, thread_blocks) != 0 || pthread_join(t, NULL) != 0) return 1;
  int rc = 0;
  if (argc == 2 && strcmp(argv[1], "info") == 0) rc = malloc_info(0, stdout);
  else if (argc == 2 && strcmp(argv[1], "stats") == 0) malloc_stats();
  else rc = 2;
  free(large);
  return rc;
}
