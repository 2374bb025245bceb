/* page.c: the blocks and free lists of one page (one size class).
 *
 * Three lists, so the common paths never contend:
 *   free        malloc pops from it (owner only)
 *   local_free  the owner's frees go here (owner only)
 *   thread_free other threads push here with one compare-and-swap; the owner takes
 *               the whole list at once.  Its low two bits carry the GL_TF_* state.
 * `used` counts blocks handed out, including remote frees not yet collected, so a
 * page is empty exactly when used == 0 after a collection.
 */
#include <string.h>

#include "check.h"
#include "internal.h"
#include "sizeclass.h"

static uint64_t next_key(gl_heap_t *heap) {
  /* xorshift64*: page keys need to be unpredictable to a careless program, not to
   * an attacker; the generator is seeded from getrandom. */
  uint64_t x = heap->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  heap->rng = x;
  return (x * 0x2545F4914F6CDD1Dull) | 1;
}

void page_init(gl_heap_t *heap, gl_page_t *page, uint8_t class_idx, bool mem_is_zero) {
  size_t bs = sizeclass_block_size(class_idx);
  uint32_t reserved = (uint32_t)(gl_page_area(page) / bs);
  gl_assert(reserved >= 1);
  page->free = NULL;
  page->used = 0;
  __atomic_store_n(&page->capacity, 0, __ATOMIC_RELAXED);
  page->heap = heap;
  __atomic_store_n(&page->fast_owner, heap, __ATOMIC_RELAXED);
  page->block_magic = gl_block_magic(bs);
  __atomic_store_n(&page->carved_limit, 0, __ATOMIC_RELAXED);
  page->in_full = 0;
  page->has_aligned = 0;
  page->free_is_zero = 0;
  page->mem_is_zero = mem_is_zero;
  page->key = (uintptr_t)next_key(heap);
  page->local_free = NULL;
  atomic_store_explicit(&page->thread_free, GL_TF_NORMAL, memory_order_relaxed);
  page->block_size = (uint32_t)bs;
  page->reserved = reserved;
  page->class_idx = class_idx;
  page->kept_empty = 0;
  page->next = page->prev = page->notify_next = NULL;
}

/* Carves the next few blocks of the page into the free list: about 4 KiB at a time,
 * so a page's memory becomes resident only as it is used. */
bool page_extend(gl_page_t *page) {
  if (page->capacity >= page->reserved) return false;
  gl_assert(page->free == NULL);
  size_t bs = page->block_size;
  uint32_t n = (uint32_t)(4096 / bs);
  if (n < 4) n = 4;
  if (n > page->reserved - page->capacity) n = page->reserved - page->capacity;
  uint8_t *first = page->start + (size_t)page->capacity * bs;
  uint8_t *last = first + (size_t)(n - 1) * bs;
  uintptr_t key = page->key;
  /* Carved blocks carry the freed mark: a free() of one that was never handed out
   * is a double free, not a second copy of it on the list. */
  for (uint8_t *b = first; b < last; b += bs) {
    ((gl_block_t *)b)->next = (gl_block_t *)(b + bs);
    ((gl_block_t *)b)->freed_mark = key;
  }
  ((gl_block_t *)last)->next = NULL;
  ((gl_block_t *)last)->freed_mark = key;
  page->free = (gl_block_t *)first;
  /* Remote threads read these in free's checks: relaxed atomic stores. */
  __atomic_store_n(&page->capacity, page->capacity + n, __ATOMIC_RELAXED);
  __atomic_store_n(&page->carved_limit, gl_carved_limit(bs, page->capacity), __ATOMIC_RELAXED);
  page->free_is_zero = page->mem_is_zero;
  return true;
}

/* Moves the owner's and other threads' frees back to where malloc finds them. */
void page_collect(gl_page_t *page) {
  if (page->local_free != NULL && page->free == NULL) {
    page->free = page->local_free;
    page->local_free = NULL;
    page->free_is_zero = 0;
  }
  uintptr_t tf = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  if ((tf & ~GL_TF_STATE) == 0) return;
  /* Only the owner empties the list, so the pointer stays non-NULL across retries. */
  while (!atomic_compare_exchange_weak_explicit(&page->thread_free, &tf, tf & GL_TF_STATE,
                                                memory_order_acquire, memory_order_relaxed)) {
  }
  gl_block_t *head = (gl_block_t *)(tf & ~GL_TF_STATE);
  gl_block_t *tail = head;
  uint32_t count = 1;
  while (tail->next != NULL) {
    tail = tail->next;
    count++;
  }
  gl_assert(count <= page->used);
  tail->next = page->free;
  page->free = head;
  page->used -= count;
  page->free_is_zero = 0;
}

/* A free from a thread that does not own the page: one CAS, plus a second one on
 * the heap's notification stack the first time a page on the full list gets a
 * block back. */
void page_free_remote(gl_page_t *page, gl_block_t *block) {
  uintptr_t addr = (uintptr_t)block;
  uintptr_t mark = page->key;
  if (gl_unlikely(block->freed_mark == mark)) gl_fatal("double free of", block, NULL, NULL);
  block->freed_mark = mark;
  uintptr_t old = atomic_load_explicit(&page->thread_free, memory_order_relaxed);
  uintptr_t desired;
  do {
    uintptr_t state = old & GL_TF_STATE;
    block->next = (gl_block_t *)(old & ~GL_TF_STATE);
    desired = addr | (state == GL_TF_FULL ? GL_TF_NOTIFIED : state);
    /* acq_rel: the block's contents are published to the owner (release), and if we
     * take the FULL -> NOTIFIED step we see the owner's last use of notify_next. */
  } while (!atomic_compare_exchange_weak_explicit(&page->thread_free, &old, desired,
                                                  memory_order_acq_rel, memory_order_relaxed));
  if ((old & GL_TF_STATE) == GL_TF_FULL) {
    /* NOTIFIED pins the page to its heap until the owner pops it from the stack. */
    gl_heap_t *heap = page->heap;
    gl_page_t *head = atomic_load_explicit(&heap->notified, memory_order_relaxed);
    do {
      page->notify_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&heap->notified, &head, page,
                                                    memory_order_release, memory_order_relaxed));
  }
}
