/* secure.c: the secure build's checks around every block (libgalleon-secure,
 * GALLEON_SECURE=1; docs/SECURITY.md, "The secure build").  In the default build
 * this file is empty and alloc.h never calls it.
 *
 * A block of a small or medium page, as the secure build hands it out:
 *
 *   block          p               p + size          block + bs - 8
 *   | [tag] ...    | the request   | canary (8) | ... | size word (8) |
 *
 * The request is served from the size class of size + GL_SECURE_TRAILER, so the
 * canary and the size word always fit.  The canary is a keyed hash of its own
 * address (its first byte never 0: an off-by-one NUL always changes it); the size
 * word is the canary's offset in the block, keyed the same way.  free and realloc
 * check both: a write of even one byte past the request is reported, with the
 * request's size, before the block is reused.  malloc_usable_size returns the
 * request (as ASan does), so a program that trusts it stays inside the canary.
 *
 * Carved blocks hold GL_SECURE_FILL beyond their two list words (page.c), and so
 * does every block handed out, beyond what malloc writes (the tail, a tag).  So
 * free fills only what the program may have written -- the request, the canary
 * after it, the size word -- and the whole block reads as the pattern again (a
 * read after free sees no old data), at the cost of the request's length, not the
 * block's.  The block then waits in the quarantine (heap.c) with its freed mark
 * set, and finally goes back to its page's lists, where its first two words become
 * the encoded link and mark.  malloc checks the pattern before anything writes
 * into the block: a write after free shows as a byte that is not the pattern.
 * Blocks up to GL_SECURE_CHECK_FULL bytes are checked whole; in bigger ones the
 * first GL_SECURE_CHECK_FULL bytes, then one word in every GL_SECURE_CHECK_STRIDE
 * bytes and the last word (a whole check of 128 KiB blocks per malloc would cost
 * more than the rest of the allocator).  realloc in place puts the pattern back
 * over what leaves the request.
 *
 * Large blocks (one segment each, large.c) keep the requested size in their
 * segment header, get the same canary after it and a PROT_NONE guard page at the
 * next page boundary; a reused segment is filled with the pattern.  They are not
 * quarantined or filled on free: the segment goes to the segment cache (see
 * docs/SECURITY.md for what that leaves open). */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "profile.h"

#if GL_SECURE

#define GL_SECURE_CHECK_FULL ((size_t)128)
#define GL_SECURE_CHECK_STRIDE ((size_t)1024)

/* A keyed hash of the address: one multiply.  Its low byte (the first byte after
 * the request, little endian) is never 0, so an off-by-one NUL always changes it. */
GL_INLINE uint64_t canary_at(const void *at) {
  uint64_t z = ((uintptr_t)at ^ page_secret_canary) * 0x9E3779B97F4A7C15ull;
  return (z ^ (z >> 29)) | 0x80;
}

GL_INLINE uint64_t load_word(const void *at) {
  uint64_t v;
  memcpy(&v, at, sizeof v);
  return v;
}
GL_INLINE void store_word(void *at, uint64_t v) { memcpy(at, &v, sizeof v); }

static GL_COLD void report_overflow(const void *p, size_t size) {
  gl_fatal_size("heap overflow past the end of the block at", p, size, ": canary overwritten");
}

static GL_COLD void report_write_after_free(const uint8_t *block, const uint8_t *from, size_t len) {
  const uint8_t *at = from;
  while (at < from + len && *at == GL_SECURE_FILL) at++;
  gl_fatal("write after free in the block at", block, ": the freed pattern is overwritten at ", at);
}

/* 16 bytes at a time: two words per load and store, so the check and the fill
 * below cost half the instructions of a word loop (SSE2, baseline on x86-64; gcc
 * and clang lower the vector type to plain words elsewhere). */
typedef uint64_t pair_t __attribute__((vector_size(16)));
static const pair_t fill_pair = {GL_SECURE_FILL_WORD, GL_SECURE_FILL_WORD};

GL_INLINE pair_t load_pair(const void *at) {
  pair_t v;
  memcpy(&v, at, sizeof v);
  return v;
}

/* The pattern over [from, from + len) (len a multiple of 16, as block sizes are):
 * whole up to GL_SECURE_CHECK_FULL bytes, then one word every
 * GL_SECURE_CHECK_STRIDE bytes and the last word. */
GL_INLINE void check_pattern(const uint8_t *block, const uint8_t *from, size_t len) {
  gl_assert(len % 16 == 0);
  size_t full = len < GL_SECURE_CHECK_FULL ? len : GL_SECURE_CHECK_FULL, i = 0;
  pair_t diff = {0, 0};
  /* 64 bytes a round: four loads folded into four xors, a short dependency chain. */
  for (; i + 64 <= full; i += 64)
    diff |= ((load_pair(from + i) ^ fill_pair) | (load_pair(from + i + 16) ^ fill_pair)) |
            ((load_pair(from + i + 32) ^ fill_pair) | (load_pair(from + i + 48) ^ fill_pair));
  for (; i < full; i += 16) diff |= load_pair(from + i) ^ fill_pair;
  if (gl_unlikely((diff[0] | diff[1]) != 0)) report_write_after_free(block, from, full);
  if (gl_likely(len <= full)) return;
  uint64_t sparse = 0;
  for (i = full; i < len; i += GL_SECURE_CHECK_STRIDE) sparse |= load_word(from + i) ^ GL_SECURE_FILL_WORD;
  sparse |= load_word(from + len - 8) ^ GL_SECURE_FILL_WORD;
  if (gl_unlikely(sparse != 0)) report_write_after_free(block, from, len);
}

/* The canary after `size` bytes at p, and for a page's block the size word. */
GL_INLINE void set_tail(gl_page_t *page, uint8_t *block, uint8_t *p, size_t size) {
  uint8_t *end = p + size;
  store_word(end, canary_at(end));
  if (page != NULL) {
    uint8_t *word = block + page->block_size - 8;
    store_word(word, (uint64_t)(end - block) ^ canary_at(word));
  } else {
    segment_find(p)->large_requested = size;
  }
}

/* The request size of the live block at p (page and block as free_check_block
 * found them), its canary checked. */
GL_INLINE size_t checked_size(gl_page_t *page, uint8_t *block, const uint8_t *p) {
  size_t lead = (size_t)(p - block), end;
  if (page != NULL) {
    size_t bs = page->block_size;
    const uint8_t *word = block + bs - 8;
    end = (size_t)(load_word(word) ^ canary_at(word));
    if (gl_unlikely(end < lead || end > bs - GL_SECURE_TRAILER))
      gl_fatal("heap overflow past the end of the block at", p, ": its size word is overwritten", NULL);
  } else {
    gl_segment_t *seg = segment_find(p);
    end = seg->large_requested;
    if (gl_unlikely(end > seg->large_usable - 8))
      gl_fatal("heap overflow past the end of the block at", p, ": its size word is overwritten", NULL);
  }
  if (gl_unlikely(load_word(block + end) != canary_at(block + end))) report_overflow(p, end - lead);
  return end - lead;
}

/* A block just taken from the allocator for a request of `size`: its pattern
 * checked, its first words cleared of list data, zeroed when asked, its tail set. */
GL_INLINE void *block_ready_in_page(gl_page_t *page, uint8_t *block, uint8_t *p, size_t size, bool zero) {
  size_t bs = page->block_size;
  check_pattern(block, block + sizeof(gl_block_t), bs - sizeof(gl_block_t));
  /* The link word still holds an encoded link (key material): the pattern
   * instead.  A tagged block (interior p) keeps its tag. */
  if (block == p) store_word(p, GL_SECURE_FILL_WORD);
  ((gl_block_t *)block)->freed_mark = GL_SECURE_FILL_WORD;
  if (zero) memset(p, 0, size);
  set_tail(page, block, p, size);
  return p;
}

static void *block_ready(uint8_t *p, size_t size, bool zero) {
  if (p == NULL) return NULL;
  uint8_t v = segment_map_get((uintptr_t)p);
  if (gl_likely(v & GL_SEGMAP_PAGES_BIT)) {
    gl_page_t *page = segment_page_of(segment_of(p), p);
    uint8_t *block = alloc_block_start(page, p);
    return block_ready_in_page(page, block, p, size, zero);
  }
  /* A large block asked for zeroed comes zeroed (secure_alloc); one that was not
   * is a request of a page's size the heap profiler moved to a large block. */
  if (zero) memset(p, 0, size);
  set_tail(NULL, p, p, size);
  return p;
}

/* The pattern over the first n bytes of a block (n + 7 rounded down to words
 * stays below its size word): small ones inline. */
#define GL_SECURE_FILL_INLINE ((size_t)248) /* requests filled by the loop below */
GL_INLINE void fill_words(uint8_t *at, size_t n) {
  if (n <= GL_SECURE_FILL_INLINE + 8) {
    /* 32 bytes a round, the last 16-byte store ending at n (n >= 8; the block
     * holds 16 at least); the empty asm keeps gcc from making this `rep stos`,
     * whose start-up costs more than the few stores. */
    if (n < 16) n = 16;
    size_t i = 0;
    for (; i + 32 < n; i += 32) {
      memcpy(at + i, &fill_pair, 16);
      memcpy(at + i + 16, &fill_pair, 16);
      __asm__("" : "+r"(i));
    }
    if (i + 16 < n) memcpy(at + i, &fill_pair, 16);
    memcpy(at + n - 16, &fill_pair, 16);
  } else {
    memset(at, GL_SECURE_FILL, n);
  }
}

void *secure_alloc(gl_heap_t *heap, size_t size, bool zero) {
  if (gl_unlikely(size > GL_MAX_ALLOC - GL_SECURE_TRAILER)) {
    errno = ENOMEM;
    return NULL;
  }
  size_t inner = size + GL_SECURE_TRAILER;
  /* Large blocks come zeroed from the kernel: ask for that rather than memset. */
  bool large_zero = zero && inner > GL_MEDIUM_MAX;
  void *p;
  if (heap == NULL && inner <= GL_DIRECT_MAX) {
    /* malloc's fast path, which knows the page: no lookup. */
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(gl_tls_heap, inner, &page);
    if (gl_likely(block != NULL)) return block_ready_in_page(page, (uint8_t *)block, (uint8_t *)block, size, zero);
  }
  if (heap != NULL) p = alloc_heap_block_plain(heap, inner, large_zero);
  else if (large_zero) p = alloc_calloc_plain(1, inner);
  else p = alloc_malloc_plain(inner);
  return block_ready(p, size, zero && !large_zero);
}

static GL_NOINLINE void *malloc_refill(gl_heap_t *heap, size_t size) {
  return block_ready(heap_malloc_refill(size + GL_SECURE_TRAILER, heap, false), size, false);
}

/* malloc's own path: the direct page's next block, or the refill (which tries
 * the direct page no more), or secure_alloc for bigger requests.  Kept apart so
 * that it calls nothing on its way and saves no registers. */
void *secure_malloc(size_t size) {
  size_t inner = size + GL_SECURE_TRAILER;
  if (gl_likely(inner <= GL_DIRECT_MAX && inner > size)) {
    gl_heap_t *heap = gl_tls_heap;
    gl_page_t *page;
    gl_block_t *block = alloc_direct_pop(heap, inner, &page);
    if (gl_likely(block != NULL)) return block_ready_in_page(page, (uint8_t *)block, (uint8_t *)block, size, false);
    return malloc_refill(heap, size);
  }
  return secure_alloc(NULL, size, false);
}

void *secure_calloc(size_t count, size_t size) {
  size_t total;
  if (gl_unlikely(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  return secure_alloc(NULL, total, true);
}

void *secure_aligned(gl_heap_t *heap, size_t alignment, size_t size,
                     void *(*plain)(gl_heap_t *, size_t, size_t)) {
  if (gl_unlikely(size > GL_MAX_ALLOC - GL_SECURE_TRAILER)) {
    errno = ENOMEM;
    return NULL;
  }
  return block_ready(plain(heap, alignment, size + GL_SECURE_TRAILER), size, false);
}

/* A page's live block, checked, whose request is `size`: the freed pattern. */
GL_INLINE void fill_freed(gl_page_t *page, gl_block_t *block, size_t size) {
  /* What the program may have written: its request and the canary after it (the
   * rest still holds the pattern it was handed out with), and the size word. */
  fill_words((uint8_t *)block, size + 8);
  store_word((uint8_t *)block + page->block_size - 8, GL_SECURE_FILL_WORD);
}

/* Big requests (memset), and pages of other heaps. */
static GL_NOINLINE void free_block_slow(gl_page_t *page, gl_block_t *block, size_t size, uintptr_t mark) {
  fill_freed(page, block, size);
  /* A page of this thread's heap (never a first-class one), or of another heap
   * that is not first-class. */
  gl_heap_t *heap = gl_tls_heap;
  if (__atomic_load_n(&page->fast_free_owner, __ATOMIC_RELAXED) == heap ||
      (heap != &gl_heap_empty && !__atomic_load_n(&page->owner->first_class, __ATOMIC_RELAXED))) {
    block->freed_mark = mark;
    heap_quarantine_push(heap, page, block);
    return;
  }
  alloc_free_plain(block);
}

/* Interior (memalign, sampled by the heap profiler) and large blocks, and bad
 * pointers: checked (a bad one is reported), then freed without quarantine. */
static GL_NOINLINE void free_other(void *p) {
  void *start;
  gl_page_t *page = free_check_block(p, "invalid free of", false, &start);
  if (page == NULL) {
    if (segment_is_cached(segment_find(p))) free_double(p);
    checked_size(NULL, p, p);
  } else {
    if (page_block_is_free(page, start)) free_double(p);
    size_t end = (size_t)((uint8_t *)p - (uint8_t *)start) + checked_size(page, start, p);
    memset((uint8_t *)start + sizeof(gl_block_t), GL_SECURE_FILL, end + 8 - sizeof(gl_block_t));
    store_word((uint8_t *)start + page->block_size - 8, GL_SECURE_FILL_WORD);
  }
  free_slow(p, "invalid free of");
}

/* The common case inline, and everything else a jump away: free keeps no
 * registers of its own. */
void secure_free(void *p) {
  if (gl_likely(segment_map_get((uintptr_t)p) & GL_SEGMAP_PAGES_BIT)) {
    gl_page_t *page = segment_page_of(segment_of(p), p);
    if (gl_likely(page_is_block_start(page, p, false))) {
      gl_block_t *block = p;
      uintptr_t mark = page_freed_mark(page->key, block);
      if (gl_unlikely(block->freed_mark == mark)) free_double(p);
      size_t size = checked_size(page, p, p);
      gl_heap_t *heap = gl_tls_heap;
      if (gl_likely(size < GL_SECURE_FILL_INLINE && __atomic_load_n(&page->fast_free_owner, __ATOMIC_RELAXED) == heap)) {
        fill_freed(page, block, size);
        block->freed_mark = mark;
        heap_quarantine_push(heap, page, block);
        return;
      }
      free_block_slow(page, block, size, mark);
      return;
    }
  } else if (p == NULL) {
    return;
  }
  free_other(p);
}

size_t secure_usable_size(const void *p) {
  void *start;
  gl_page_t *page = free_check_block(p, "malloc_usable_size of", true, &start);
  return checked_size(page, start, p);
}

void *secure_realloc(gl_heap_t *heap, void *p, size_t size, gl_page_t *page, void *start) {
  size_t old = checked_size(page, start, p);
  if (size > GL_MAX_ALLOC - GL_SECURE_TRAILER) {
    errno = ENOMEM;
    return NULL;
  }
  if (page == NULL) {
    void *resized = large_resize(segment_find(p), p, size + GL_SECURE_TRAILER);
    if (resized != NULL) {
      if (gl_unlikely(profile_has_live())) profile_moved(p, resized, size);
      set_tail(NULL, resized, resized, size);
      return resized;
    }
  } else {
    size_t room = page->block_size - GL_SECURE_TRAILER - (size_t)((uint8_t *)p - (uint8_t *)start);
    if (size <= room && size >= room / 2) {
      /* What no longer belongs to the request (shrinking), or the old canary
       * (growing), gets the pattern back. */
      size_t keep = size < old ? size : old;
      memset((uint8_t *)p + keep, GL_SECURE_FILL, old + 8 - keep);
      set_tail(page, start, p, size);
      return p;
    }
  }
  void *fresh = secure_alloc(heap, size, false);
  if (fresh == NULL) return NULL;
  memcpy(fresh, p, size < old ? size : old);
  secure_free(p);
  return fresh;
}

#else
typedef int secure_unused_t; /* ISO C: a translation unit holds a declaration */
#endif
