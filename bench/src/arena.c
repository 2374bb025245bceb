/* arena.c - request-scoped allocation: a server handles requests one after the
 * other, each allocating a few hundred objects (mostly small, some up to 8 KiB)
 * that all die when the request ends.  Under Galleon the request's objects come
 * from a heap of their own (galleon_heap_new, found with dlsym) that is destroyed
 * in one call at the end; under any other allocator -- or with ARENA_MODE=malloc --
 * they are malloc'ed and freed one by one.  So the Galleon row of this workload is
 * the arena, the others are plain malloc/free of the same objects.
 *
 * usage: arena REQUESTS [THREADS]     THREADS is accepted and must be 1
 * prints: RESULT arena elapsed_s=... ops=OBJECTS mode=heap|malloc check=ok */
#include <dlfcn.h>

#include "common.h"

#define OBJECTS_PER_REQUEST 400

typedef void *(*heap_new_fn)(void);
typedef void *(*heap_malloc_fn)(void *, size_t);
typedef void (*heap_destroy_fn)(void *);

int main(int argc, char **argv) {
  long requests = arg_long(argc, argv, 1, 10000);
  const char *mode_env = getenv("ARENA_MODE");
  heap_new_fn heap_new = (heap_new_fn)dlsym(RTLD_DEFAULT, "galleon_heap_new");
  heap_malloc_fn heap_malloc = (heap_malloc_fn)dlsym(RTLD_DEFAULT, "galleon_heap_malloc");
  heap_destroy_fn heap_destroy = (heap_destroy_fn)dlsym(RTLD_DEFAULT, "galleon_heap_destroy");
  int use_heap = heap_new && heap_malloc && heap_destroy && !(mode_env && strcmp(mode_env, "malloc") == 0);
  char *objs[OBJECTS_PER_REQUEST];
  size_t sizes[OBJECTS_PER_REQUEST];
  uint64_t rng = 12345, check = 0, objects = 0;
  double t0 = now_s();
  for (long r = 0; r < requests; r++) {
    void *heap = use_heap ? heap_new() : NULL;
    if (use_heap && heap == NULL) die("galleon_heap_new failed");
    for (int i = 0; i < OBJECTS_PER_REQUEST; i++) {
      uint64_t k = rng_next(&rng) % 100;
      size_t n = k < 70 ? rng_range(&rng, 16, 128) : k < 95 ? rng_range(&rng, 129, 1024) : rng_range(&rng, 1025, 8192);
      char *p = use_heap ? heap_malloc(heap, n) : malloc(n);
      if (p == NULL) die("allocation failed");
      memset(p, (int)(i & 0x7f), n < 64 ? n : 64); /* the request writes its objects */
      p[n - 1] = (char)r;
      objs[i] = p;
      sizes[i] = n;
    }
    for (int i = 0; i < OBJECTS_PER_REQUEST; i++) check += (unsigned char)objs[i][0] + (unsigned char)objs[i][sizes[i] - 1];
    if (use_heap) {
      heap_destroy(heap);
    } else {
      for (int i = 0; i < OBJECTS_PER_REQUEST; i++) free(objs[i]);
    }
    objects += OBJECTS_PER_REQUEST;
  }
  double t1 = now_s();
  ESCAPE(&check);
  printf("RESULT arena elapsed_s=%.6f ops=%llu mode=%s check=ok\n", t1 - t0, (unsigned long long)objects,
         use_heap ? "heap" : "malloc");
  return 0;
}
