/* api.c: the public galleon_* API with glibc's semantics, and the never-fail
 * helpers.  The standard names (override.c) forward here. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "alloc.h"
#include "check.h"
#include "options.h"
#include "profile.h"

/* glibc's mallopt parameters (malloc.h), spelled out so this file does not depend
 * on glibc's header. */
enum {
  GL_M_MXFAST = 1,
  GL_M_TRIM_THRESHOLD = -1,
  GL_M_TOP_PAD = -2,
  GL_M_MMAP_THRESHOLD = -3,
  GL_M_MMAP_MAX = -4,
  GL_M_CHECK_ACTION = -5,
  GL_M_PERTURB = -6,
  GL_M_ARENA_TEST = -7,
  GL_M_ARENA_MAX = -8,
};

void *galleon_malloc(size_t size) { return alloc_malloc_fast(size); }
void *galleon_calloc(size_t count, size_t size) { return alloc_calloc_fast(count, size); }
void galleon_free(void *ptr) { alloc_free_fast(ptr); }

void *galleon_realloc(void *ptr, size_t size) {
  if (ptr != NULL && size == 0) { /* glibc: free and return NULL */
    alloc_free_fast(ptr);
    return NULL;
  }
  return realloc_impl(ptr, size);
}

void *galleon_reallocarray(void *ptr, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return galleon_realloc(ptr, total);
}

/* C23: the size is a promise of the caller; Galleon finds the size itself. */
void galleon_free_sized(void *ptr, size_t size) { alloc_free_fast(ptr); }
void galleon_free_aligned_sized(void *ptr, size_t alignment, size_t size) { alloc_free_fast(ptr); }

/* memalign and aligned_alloc, as glibc 2.36: an alignment that is not a power of
 * two is rounded up to one; one above 2^63 (no power of two) is EINVAL; a power of
 * two too big to satisfy is ENOMEM. */
static void *memalign_common(size_t alignment, size_t size) {
  if (alignment > ((size_t)1 << 63)) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment < GL_MIN_ALIGN) alignment = GL_MIN_ALIGN;
  if (alignment & (alignment - 1)) alignment = (size_t)1 << (64 - __builtin_clzl(alignment));
  return aligned_alloc_impl(alignment, size);
}

void *galleon_memalign(size_t alignment, size_t size) { return memalign_common(alignment, size); }
void *galleon_aligned_alloc(size_t alignment, size_t size) { return memalign_common(alignment, size); }

int galleon_posix_memalign(void **memptr, size_t alignment, size_t size) {
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void *p = aligned_alloc_impl(alignment, size);
  if (p == NULL) return ENOMEM;
  *memptr = p;
  return 0;
}

void *galleon_valloc(size_t size) { return aligned_alloc_impl(os_page_size(), size); }

void *galleon_pvalloc(size_t size) {
  size_t page = os_page_size();
  if (size > GL_MAX_ALLOC - page) {
    errno = ENOMEM;
    return NULL;
  }
  size_t rounded = (size + page - 1) & ~(page - 1);
  if (rounded == 0) rounded = page;
  return aligned_alloc_impl(page, rounded);
}

size_t galleon_malloc_usable_size(const void *ptr) { return alloc_usable_size(ptr); }

void galleon_collect(void) { heap_trim_all(0); }

int galleon_profile_start(const char *path) {
  heap_process_init();
  if (profile_start(path) != 0) return -1;
  heap_profile_switched(true);
  return 0;
}
int galleon_profile_dump(const char *path) { return profile_dump(path); }
void galleon_profile_stop(void) {
  profile_stop();
  heap_profile_switched(false);
}

/* malloc_trim(pad): the free memory that this call can return (mallinfo2's
 * keepcost: the caller's heap, exited threads' heaps, the segment cache) stays
 * resident when it is at most `pad` bytes; otherwise all of it is returned.  1 when
 * memory went back to the OS. */
int galleon_malloc_trim(size_t pad) {
  heap_process_init();
  size_t before = gl_counter_get(&gl_counters.purged_bytes) + gl_counter_get(&gl_counters.munmap_calls);
  heap_trim_all(pad);
  size_t after = gl_counter_get(&gl_counters.purged_bytes) + gl_counter_get(&gl_counters.munmap_calls);
  return after != before;
}

/* glibc's parameters; galleon.h says what each does here.  1 for every parameter
 * glibc knows, 0 for an unknown one. */
int galleon_mallopt(int param, int value) {
  heap_process_init();
  switch (param) {
    case GL_M_TRIM_THRESHOLD: /* free memory kept resident before purging early */
      /* glibc takes the value as unsigned: -1 means "never trim early". */
      galleon_option_set("retain_bytes", value < 0 ? LONG_MAX : value);
      return 1;
    case GL_M_MXFAST:         /* no fastbins: every size class has a fast path */
    case GL_M_TOP_PAD:        /* no sbrk heap to pad */
    case GL_M_MMAP_THRESHOLD: /* blocks over 128 KiB always get a segment of their own */
    case GL_M_MMAP_MAX:       /* large blocks have no count limit */
    case GL_M_CHECK_ACTION:   /* a bad free always reports one line and aborts */
    case GL_M_PERTURB:        /* no filling: it would cost the fast paths */
    case GL_M_ARENA_TEST:     /* one heap per thread, never shared: no arena limit */
    case GL_M_ARENA_MAX:
      return 1; /* accepted, no effect */
    default:
      return 0;
  }
}

/* ---- Never-fail helpers ---- */

static GL_COLD void out_of_memory(size_t size) {
  gl_message("galleon: error: out of memory allocating", " bytes:", size);
  exit(EXIT_FAILURE);
}

void *galleon_xmalloc(size_t size) {
  void *p = alloc_malloc_fast(size);
  if (gl_unlikely(p == NULL)) out_of_memory(size);
  return p;
}
void *galleon_malloc0(size_t size) { return alloc_calloc_fast(1, size); }
void *galleon_xmalloc0(size_t size) {
  void *p = alloc_calloc_fast(1, size);
  if (gl_unlikely(p == NULL)) out_of_memory(size);
  return p;
}
void *xmalloc(size_t size) { return galleon_xmalloc(size); }
void *malloc0(size_t size) { return galleon_malloc0(size); }
void *xmalloc0(size_t size) { return galleon_xmalloc0(size); }

int galleon_owns(const void *ptr) {
  uint8_t v = segment_map_get((uintptr_t)ptr);
  if (v == GL_SEGMAP_NONE) return 0;
  gl_segment_t *seg = segment_find(ptr);
  if (seg == NULL || segment_is_cached(seg)) return 0;
  if (seg->kind == GL_KIND_LARGE) {
    uint8_t *block = (uint8_t *)seg + seg->large_offset;
    return (const uint8_t *)ptr >= block && (const uint8_t *)ptr < block + seg->large_usable;
  }
  gl_page_t *page = segment_page_of(seg, ptr);
  return page->state == GL_PAGE_IN_USE && alloc_block_start(page, ptr) != NULL;
}
