/* override.c: the standard names.  Forwarding only: each is a tail call into the
 * implementation, so a preloaded or linked program gets Galleon for every entry
 * point glibc has (and the __libc_ aliases some programs call directly). */
#include <malloc.h>
#include <stdlib.h>

#include "alloc.h"

#define GL_EXPORT __attribute__((visibility("default")))

GL_EXPORT void *malloc(size_t size) { return alloc_malloc_fast(size); }
GL_EXPORT void *calloc(size_t count, size_t size) { return alloc_calloc_fast(count, size); }
GL_EXPORT void free(void *ptr) { alloc_free_fast(ptr); }
GL_EXPORT void *realloc(void *ptr, size_t size) { return galleon_realloc(ptr, size); }
GL_EXPORT void *reallocarray(void *ptr, size_t count, size_t size) {
  return galleon_reallocarray(ptr, count, size);
}
GL_EXPORT void free_sized(void *ptr, size_t size) { alloc_free_fast(ptr); }
GL_EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size) { alloc_free_fast(ptr); }
GL_EXPORT void cfree(void *ptr) { alloc_free_fast(ptr); }
GL_EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size) {
  return galleon_posix_memalign(memptr, alignment, size);
}
GL_EXPORT void *aligned_alloc(size_t alignment, size_t size) {
  return galleon_aligned_alloc(alignment, size);
}
GL_EXPORT void *memalign(size_t alignment, size_t size) { return galleon_memalign(alignment, size); }
GL_EXPORT void *valloc(size_t size) { return galleon_valloc(size); }
GL_EXPORT void *pvalloc(size_t size) { return galleon_pvalloc(size); }
GL_EXPORT size_t malloc_usable_size(void *ptr) { return alloc_usable_size(ptr); }
GL_EXPORT int malloc_trim(size_t pad) { return galleon_malloc_trim(pad); }
GL_EXPORT int mallopt(int param, int value) { return galleon_mallopt(param, value); }
GL_EXPORT void malloc_stats(void) { galleon_malloc_stats(); }

GL_EXPORT struct mallinfo2 mallinfo2(void) {
  struct galleon_mallinfo g = galleon_mallinfo2();
  struct mallinfo2 m = {
      .arena = g.arena, .ordblks = g.ordblks, .smblks = g.smblks, .hblks = g.hblks,
      .hblkhd = g.hblkhd, .usmblks = g.usmblks, .fsmblks = g.fsmblks,
      .uordblks = g.uordblks, .fordblks = g.fordblks, .keepcost = g.keepcost};
  return m;
}

static int clamp_int(size_t v) { return v > (size_t)0x7fffffff ? 0x7fffffff : (int)v; }

GL_EXPORT struct mallinfo mallinfo(void) {
  struct galleon_mallinfo g = galleon_mallinfo2();
  struct mallinfo m = {
      .arena = clamp_int(g.arena), .ordblks = clamp_int(g.ordblks), .smblks = clamp_int(g.smblks),
      .hblks = clamp_int(g.hblks), .hblkhd = clamp_int(g.hblkhd), .usmblks = clamp_int(g.usmblks),
      .fsmblks = clamp_int(g.fsmblks), .uordblks = clamp_int(g.uordblks),
      .fordblks = clamp_int(g.fordblks), .keepcost = clamp_int(g.keepcost)};
  return m;
}

GL_EXPORT int malloc_info(int options, FILE *stream) { return galleon_malloc_info(options, stream); }

/* Entry points glibc exports under internal names; some programs and libraries
 * call them directly. */
GL_EXPORT void *__libc_malloc(size_t size) { return alloc_malloc_fast(size); }
GL_EXPORT void *__libc_calloc(size_t count, size_t size) { return alloc_calloc_fast(count, size); }
GL_EXPORT void *__libc_realloc(void *ptr, size_t size) { return galleon_realloc(ptr, size); }
GL_EXPORT void __libc_free(void *ptr) { alloc_free_fast(ptr); }
GL_EXPORT void *__libc_memalign(size_t alignment, size_t size) {
  return galleon_memalign(alignment, size);
}
GL_EXPORT void *__libc_valloc(size_t size) { return galleon_valloc(size); }
GL_EXPORT void *__libc_pvalloc(size_t size) { return galleon_pvalloc(size); }
GL_EXPORT int __posix_memalign(void **memptr, size_t alignment, size_t size) {
  return galleon_posix_memalign(memptr, alignment, size);
}
