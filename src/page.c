/* page.c: the blocks and free lists of one page (page.h). */
#include <string.h>

#include "annotate.h"
#include "check.h"
#include "page.h"
#include "profile.h"
#include "sizeclass.h"

/* ---- Keys ----
 * Per-process secrets, in Galleon's own data (.bss), not in a segment beside the
 * heap memory they protect:
 *   secret_key  mixed into every page key when the page is set up, so a page key
 *               is neither a bare output of its heap's generator (xorshift: one
 *               output gives the state, and the next keys) nor known to a parent
 *               process for a page its fork child made;
 *   secret_tag  mixed into interior tags only (page.h).
 * Both come from getrandom at process start (heap_process_init).  A fork child
 * draws a new secret_key (and heap.c reseeds the heaps' generators), so the pages
 * it makes get keys its parent never had.  It keeps secret_tag, and the pages it
 * inherited keep their keys: the links and marks in their free blocks are encoded
 * under them, and re-encoding every list would touch all free memory. */
static uint64_t secret_key, secret_tag;
#if GL_SECURE
uint64_t page_secret_canary;
#endif

void page_secrets_init(bool fork_child) {
  secret_key = os_random();
  if (!fork_child) secret_tag = os_random();
#if GL_SECURE
  /* Kept by a fork child: its inherited blocks carry canaries made with it. */
  if (!fork_child) page_secret_canary = os_random();
#endif
}

/* Odd: the marks block * key of distinct blocks differ, and none is 0. */
static uintptr_t page_key(uint64_t random) { return (uintptr_t)((random ^ secret_key) | 1); }

uintptr_t page_interior_tag(const gl_page_t *page, const void *interior) {
  return (uintptr_t)interior ^ page->key ^ (uintptr_t)secret_tag;
}

void page_bad_link(const gl_page_t *page, uintptr_t link) {
  gl_fatal_note("heap corruption in the free list of the page at", page->start, ": bad link ", (const void *)link,
                " (a write after free or an overflow)");
}

void page_init(gl_page_t *page, struct gl_heap_s *owner, uint8_t class_idx, bool mem_is_zero, uint64_t random) {
  size_t bs = sizeclass_block_size(class_idx);
  uint32_t reserved = (uint32_t)(segment_page_area(page) / bs);
  gl_assert(reserved >= 1);
  page->free = NULL;
  page->used = 0;
  __atomic_store_n(&page->capacity, 0, __ATOMIC_RELAXED);
  page->owner = owner;
  __atomic_store_n(&page->fast_free_owner, owner, __ATOMIC_RELAXED);
  page->block_magic = page_block_magic(bs);
  __atomic_store_n(&page->carved_limit, 0, __ATOMIC_RELAXED);
  page->on_full_list = 0;
  page->has_aligned = 0;
  page->free_is_zero = 0;
  page_push_to_local(page);
  page->mem_is_zero = mem_is_zero;
  page->key = page_key(random);
  page->local_free = NULL;
  atomic_store_explicit(&page->thread_free, GL_TF_NORMAL, memory_order_relaxed);
  page->block_size = (uint32_t)bs;
  page->reserved = reserved;
  page->class_idx = class_idx;
  page->kept_empty = 0;
  page->link.next = page->link.prev = NULL;
  page->notify_next = NULL;
  page->sample_listed = page->sample_added = 0;
}

/* Links the blocks first .. last (bs apart) in address order, each marked free and
 * its link encoded (page.h); the last ends the list. */
static void page_carve(const gl_page_t *page, uint8_t *first, uint8_t *last, size_t bs) {
  uintptr_t key = page->key;
  for (uint8_t *b = first; b < last; b += bs) {
    ((gl_block_t *)b)->link = page_link_encode(key, b, b + bs);
    ((gl_block_t *)b)->freed_mark = page_freed_mark(key, b);
  }
  ((gl_block_t *)last)->link = page_link_encode(key, last, NULL);
  ((gl_block_t *)last)->freed_mark = page_freed_mark(key, last);
}

#if GL_SECURE
/* The secure build carves in a shuffled order (a draw of the owner heap's
 * generator per carve, Fisher-Yates over at most 64 blocks), so the next block
 * malloc returns is not the neighbour of the last one: an overflow or a use after
 * free cannot count on which block it reaches.  Every carved block is filled with
 * the freed pattern (beyond its two list words), as a freed block is: a fresh
 * block never shows what the memory held before, and malloc checks the pattern of
 * any block it hands out the same way (secure.c). */
static uint64_t page_shuffle_draw(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static void page_carve_shuffled(gl_page_t *page, uint8_t *first, uint32_t n, size_t bs) {
  uint8_t order[64];
  uint64_t state = page->owner != NULL ? page->owner->rng : page->key;
  for (uint32_t i = 0; i < n; i++) order[i] = (uint8_t)i;
  for (uint32_t i = n - 1; i > 0; i--) {
    uint32_t j = (uint32_t)((page_shuffle_draw(&state) >> 32) % (i + 1));
    uint8_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  if (page->owner != NULL) page->owner->rng = state;
  uintptr_t key = page->key;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t *b = first + (size_t)order[i] * bs;
    uint8_t *next = i + 1 < n ? first + (size_t)order[i + 1] * bs : NULL;
    memset(b + sizeof(gl_block_t), GL_SECURE_FILL, bs - sizeof(gl_block_t));
    ((gl_block_t *)b)->link = page_link_encode(key, b, next);
    ((gl_block_t *)b)->freed_mark = page_freed_mark(key, b);
  }
  page->free = (gl_block_t *)(first + (size_t)order[0] * bs);
}
#endif

bool page_extend(gl_page_t *page) {
  if (page->capacity >= page->reserved) return false;
  gl_assert(page->free == NULL);
  size_t bs = page->block_size;
  uint32_t n = page_carve_count(bs);
  if (n > page->reserved - page->capacity) n = page->reserved - page->capacity;
  uint8_t *first = page->start + (size_t)page->capacity * bs;
  uint8_t *last = first + (size_t)(n - 1) * bs;
  /* Carved blocks carry the freed mark: a free() of one that was never handed out
   * is a double free, not a second copy of it on the list. */
#if GL_SECURE
  (void)last;
  page_carve_shuffled(page, first, n, bs);
#else
  page_carve(page, first, last, bs);
  page->free = (gl_block_t *)first;
#endif
  annotate_noaccess(first, (size_t)n * bs); /* until handed out */
  page->sample_listed = page->sample_added = 0;
  /* Remote threads read these in free's checks: relaxed atomic stores. */
  __atomic_store_n(&page->capacity, page->capacity + n, __ATOMIC_RELAXED);
  __atomic_store_n(&page->carved_limit, page_carved_limit(bs, page->capacity), __ATOMIC_RELAXED);
  page->free_is_zero = GL_SECURE ? 0 : page->mem_is_zero; /* secure: the pattern, not zero */
  page_push_to_free_unless(page, __atomic_load_n(&profile_sampling, __ATOMIC_RELAXED));
  return true;
}

void page_relink(gl_page_t *page, uint64_t random) {
  page->key = page_key(random);
  page->free = NULL;
  if (page->capacity == 0) return;
  size_t bs = page->block_size;
  uint8_t *first = page->start, *last = first + (size_t)(page->capacity - 1) * bs;
  /* Secure: every block of a destroyed heap gets the freed pattern (the next heap
   * must not see its data), and they go on the list in address order. */
  if (GL_SECURE) memset(first, GL_SECURE_FILL, (size_t)page->capacity * bs);
  page_carve(page, first, last, bs);
  annotate_noaccess(first, (size_t)page->capacity * bs);
  page->free = (gl_block_t *)first;
  page->sample_listed = page->sample_added = 0;
}

void page_cut_free(gl_page_t *page, size_t keep) {
  gl_block_t *rest = page->free;
  if (keep > 0) {
    gl_block_t *last = page->free;
    for (size_t i = 1; i < keep && last != NULL; i++) last = page_block_next(page, last);
    if (last == NULL) return;
    rest = page_block_next(page, last);
    page_block_set_next(page, last, NULL);
  } else {
    page->free = NULL;
  }
  if (rest == NULL) return;
  if (page->local_free != NULL) {
    gl_block_t *tail = rest;
    uint32_t n = 1;
    for (gl_block_t *next; (next = page_block_next(page, tail)) != NULL; tail = next)
      if (gl_unlikely(++n > page->capacity)) page_bad_link(page, (uintptr_t)next); /* a cycle */
    page_block_set_next(page, tail, page->local_free);
  }
  page->local_free = rest;
}

void page_gather_frees(gl_page_t *page, bool to_local) {
  /* Without to_local this may be a hand-over the profiler charges next. */
  bool sampling = __atomic_load_n(&profile_sampling, __ATOMIC_RELAXED);
  if (page->local_free != NULL && page->free == NULL && !to_local) {
    page_free_from_local(page, sampling);
  }
  uintptr_t tf = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  if (GL_TF_HEAD(tf) == 0) return;
  /* Only the owner empties the list, so the pointer stays non-NULL across retries. */
  while (!atomic_compare_exchange_weak_explicit(&page->thread_free, &tf, tf & GL_TF_STATE,
                                                memory_order_acquire, memory_order_relaxed)) {
  }
  /* The head is metadata, pushed by page_free_remote after free checked the
   * block, and so is the count beside it; the links behind the head are in the
   * blocks and are checked where they are followed: here, or one by one as malloc
   * pops them.  The list becomes a list head of its own when one is empty, with
   * no walk: the blocks were written by other threads, so a walk would take a
   * cache miss on every one of them before malloc takes it again on the same
   * lines. */
  gl_block_t *head = (gl_block_t *)GL_TF_HEAD(tf);
  uint32_t count = (uint32_t)(tf >> GL_TF_COUNT_SHIFT);
  if (gl_unlikely(count == 0 || count > page->used)) page_bad_link(page, (uintptr_t)head);
  page->used -= count;
  if (!to_local && page->free == NULL) {
    page->free = head;
    page->free_is_zero = 0;
    page->sample_listed = page->sample_added = 0;
    page_push_to_free_unless(page, sampling);
    return;
  }
  if (page->local_free == NULL) {
    page->local_free = head;
    return;
  }
  /* Both lists taken: splice behind the tail of this one, which must hold
   * exactly `count` blocks (fewer or more: a forged link). */
  gl_block_t *tail = head;
  uint32_t walked = 1;
  for (gl_block_t *next; (next = page_block_next(page, tail)) != NULL; walked++) {
    if (gl_unlikely(walked >= count)) page_bad_link(page, (uintptr_t)next);
    tail = next;
  }
  if (gl_unlikely(walked != count)) page_bad_link(page, 0);
  page_block_set_next(page, tail, page->local_free);
  page->local_free = head;
}

/* A free from a thread that does not own the page: one CAS, plus a second one on
 * the heap's notification stack the first time a page on the full list gets a
 * block back. */
void page_free_remote(gl_page_t *page, gl_block_t *block) {
  uintptr_t addr = (uintptr_t)block;
  uintptr_t key = page->key, mark = page_freed_mark(key, block);
  if (gl_unlikely(block->freed_mark == mark)) gl_fatal("double free of", block, NULL, NULL);
  block->freed_mark = mark;
  uintptr_t old = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  uintptr_t desired;
  do {
    uintptr_t state = old & GL_TF_STATE;
    block->link = page_link_encode(key, block, (const void *)GL_TF_HEAD(old));
    desired = addr | (state == GL_TF_FULL ? GL_TF_NOTIFIED : state) | ((old & ~(GL_TF_COUNT_ONE - 1)) + GL_TF_COUNT_ONE);
    /* acq_rel: the block's contents are published to the owner (release), and if we
     * take the FULL -> NOTIFIED step we see the owner's last use of notify_next. */
  } while (!atomic_compare_exchange_weak_explicit(&page->thread_free, &old, desired,
                                                  memory_order_acq_rel, memory_order_relaxed));
  if ((old & GL_TF_STATE) == GL_TF_FULL) {
    /* NOTIFIED pins the page to its heap until the owner pops it from the stack. */
    struct gl_heap_s *heap = page->owner;
    gl_page_t *head = atomic_load_explicit(&heap->notified, memory_order_relaxed);
    do {
      page->notify_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&heap->notified, &head, page,
                                                    memory_order_release, memory_order_relaxed));
  }
}

bool page_is_valid(const gl_page_t *page) {
  if (page->state != GL_PAGE_IN_USE) return page->owner == NULL && page->carved_limit == 0;
  if (page->owner == NULL || page->capacity > page->reserved || page->used > page->capacity) return false;
  if (page->block_size != sizeclass_block_size(page->class_idx)) return false;
  if (page->carved_limit != page_carved_limit(page->block_size, page->capacity)) return false;
  if ((size_t)page->reserved * page->block_size > segment_page_area(page)) return false;
  /* Frees feed `free` only when it is neither a zeroed list nor the secure build's. */
  if (page->free_push != GL_PUSH_LOCAL && (page->free_push != GL_PUSH_FREE || page->free_is_zero || GL_SECURE))
    return false;
  /* Every block on the owner's lists is free and inside the carved area. */
  uint32_t listed = 0;
  const gl_block_t *lists[2] = {page->free, page->local_free};
  for (int l = 0; l < 2; l++) {
    for (const gl_block_t *b = lists[l]; b != NULL; b = page_block_next(page, b)) {
      if (!page_is_block_start(page, b, true) || !page_block_is_free(page, b)) return false;
      if (++listed > page->capacity) return false; /* a cycle */
    }
  }
  return listed + page->used <= page->capacity;
}
