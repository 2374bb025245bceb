/* heaps.c: first-class heaps, the galleon_heap_* API (heap.h has the rules).
 *
 * A request-scoped arena: a server makes a heap per request, allocates the
 * request's objects from it, and drops them all with galleon_heap_destroy instead
 * of freeing each.  One thread at a time may allocate from a heap (the caller
 * serialises); its blocks may be freed with free() by any thread, until the heap is
 * destroyed.  Freeing a block of a destroyed heap, or racing a free with the
 * destroy, is a use after free. */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "check.h"

/* first_class is set while the heap is live (destroy and delete clear it). */
static gl_heap_t *live_heap(galleon_heap_t *h, const char *what) {
  gl_heap_t *heap = (gl_heap_t *)h;
  if (gl_unlikely(heap == NULL || !heap->first_class)) gl_fatal(what, h, ": not a live galleon heap", NULL);
  return heap;
}

galleon_heap_t *galleon_heap_new(void) {
  gl_heap_t *heap = heap_first_class_new();
  if (heap == NULL) errno = ENOMEM;
  return (galleon_heap_t *)heap;
}

void *galleon_heap_malloc(galleon_heap_t *h, size_t size) {
  return alloc_heap_block(live_heap(h, "galleon_heap_malloc on"), size, false);
}

void *galleon_heap_calloc(galleon_heap_t *h, size_t count, size_t size) {
  gl_heap_t *heap = live_heap(h, "galleon_heap_calloc on");
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_heap_block(heap, total, true);
}

void *galleon_heap_realloc(galleon_heap_t *h, void *p, size_t size) {
  gl_heap_t *heap = live_heap(h, "galleon_heap_realloc on");
  if (p != NULL && size == 0) { /* as realloc: free and return NULL */
    alloc_free_fast(p);
    return NULL;
  }
  return realloc_in(heap, p, size);
}

void *galleon_heap_memalign(galleon_heap_t *h, size_t alignment, size_t size) {
  gl_heap_t *heap = live_heap(h, "galleon_heap_memalign on");
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return NULL;
  }
  return aligned_alloc_in(heap, alignment, size);
}

void galleon_heap_destroy(galleon_heap_t *h) {
  if (h == NULL) return;
  heap_first_class_destroy(live_heap(h, "galleon_heap_destroy of"));
}

void galleon_heap_delete(galleon_heap_t *h) {
  if (h == NULL) return;
  heap_first_class_delete(live_heap(h, "galleon_heap_delete of"));
}
