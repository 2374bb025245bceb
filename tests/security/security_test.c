/* security_test.c: the free lists resist the classic heap exploits (Galleon issue
 * #9).  A write after free or an overflow that replaces the link word of a free
 * block must never make malloc return an address the attacker chose -- not a
 * global, not a live block of the same page -- and must never end in a bare
 * SIGSEGV from following the link: Galleon stops with exactly one line,
 *
 *   galleon: error: heap corruption in the free list of the page at 0x...: bad
 *   link 0x... (a write after free or an overflow)
 *
 * and abort().  Each attack runs in a forked child (run_child), which reports on
 * stderr and exits with its own status when Galleon lets the attack through:
 *   3  malloc returned the forged address, or one next to it (the old exploit)
 *   4  malloc returned a block that is still live (an overlapping allocation)
 *   5  the attacked block came back and malloc went on: nothing was caught
 *   2  the test's own setup did not hold
 *
 * Cases:
 *   local_free_forged   a freed 48-byte block (on local_free) gets &target as its
 *                       link; malloc(48) until the block comes back, and once more
 *   free_forged         the same on the page's `free` list (a refill moved it there)
 *   thread_free_forged  the block freed by another thread (the remote list), then
 *                       overwritten by the owner
 *   live_block_forged   the link replaced by the raw address of a live block of
 *                       the same page (a valid block start, but not encoded)
 *   medium_forged       a 3000-byte block: malloc's refill path (page_take_block)
 *   calloc_forged       the same attack through calloc's fast path
 *   heap_forged         a first-class heap's block (galleon_heap_malloc)
 *   overflow_8          a live block writes 8 bytes past its end into a freed
 *                       neighbour's link
 *   overflow_16         ... 16 bytes: the link and the freed mark
 *   garbage_after_free  a freed block memset to 0x41 (the old code: SIGSEGV)
 *   marks               two free blocks of one page hold different second words
 *                       (freed marks), neither equal to the other's first word, and
 *                       no first word holds a raw pointer (expected: exit 0)
 *   double_free_reuse   free, reuse, free, free: "double free of P" as before
 *   fork_rekey          two fork children make the same new page at the same
 *                       address: its free blocks must differ between them (each
 *                       child draws its own secrets for new pages)
 *
 * The same program built with TEST_SECURE=1 and linked with libgalleon-secure
 * (the CTest entry security_secure) runs the attacks of the secure build instead
 * (docs/SECURITY.md, "The secure build"); each names the exact line expected:
 *   overflow_<n>_free   n = 1, 8, 16 bytes written past the requested size of a
 *                       small (40), small (100), medium (3000) and large (200000)
 *                       block, then free: "heap overflow past the end of the
 *                       block at P (size N): canary overwritten"
 *   overflow_<n>_realloc  the same, reported by realloc
 *   write_after_free    a byte written into a freed block; malloc_trim(0) empties
 *                       the quarantine, then malloc until the block comes back:
 *                       "write after free in the block at P: the freed pattern is
 *                       overwritten at P+30"
 *   write_after_free_evicted  the same, the block pushed out of the quarantine by
 *                       2000 later frees instead of malloc_trim
 *   write_after_free_bytes  the same for a medium block (100 KB), pushed out by
 *                       the quarantine's byte bound (8 more frees of its size)
 *   forged_link_quarantined  a forged link written into a block in quarantine:
 *                       "write after free ... overwritten at P" when it leaves
 *   forged_link_listed  a forged link written after the block left the quarantine
 *                       (it is on local_free): the heap corruption line, as above
 *   thread_free_forged, heap_forged  as in the default build
 *   double_free_reuse   free, malloc_trim, reuse, free, free: "double free of P"
 *   double_free_released  free, malloc_trim (the block back on its page), free:
 *                       "double free of P"
 *   read_after_free     a freed block reads as the pattern 0xdb, not its data (but
 *                       for its second word: the freed mark)
 *   fresh_blocks        a block handed out again holds none of its old data, a
 *                       new one only the pattern (or zero)
 *   quarantine          a freed block is not handed out again by the next 500
 *                       allocations of its size
 *   shuffled            32 new blocks of a page are not handed out in address order
 *   guard_page          writing on past the end of a large block faults (SIGSEGV)
 *                       within a page
 *   medium_guard        writing on past the end of the last block of a medium page
 *                       (100 KiB requests) faults (SIGSEGV) at the page's guard,
 *                       its last OS page, before the next page
 *   medium_churn        medium blocks (20-120 KiB) in two threads, several
 *                       segments: every live block's page has its guard
 *                       (/proc/self/maps), no block overlaps one; after
 *                       malloc_trim(1) the cached segments have none, and come
 *                       back as small and large segments written whole
 *   usable_size         malloc_usable_size is the requested size, and the canary
 *                       lies right after it
 *   large_reused        a 64 MiB block in a reused segment holds none of the last
 *                       block's data (pattern or zero), and getting it does not
 *                       touch the pages the last block never used (few faults)
 *
 * Output in the children goes through write(2): stdio would allocate. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>

#include "../test_util.h"

#if TEST_SECURE
/* The default build's cases this build does not run stay compiled. */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

static void *volatile sink;
static void *opaque(void *p) {
  sink = p;
  return sink;
}

/* The address an attacker wants malloc to return: a global, far from any heap. */
static uintptr_t target[8];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
}

#define SETUP(cond)                                   \
  do {                                                \
    if (!(cond)) {                                    \
      say("security setup failed: %s", #cond);        \
      _exit(2);                                       \
    }                                                 \
  } while (0)

static void write_word(void *at, uintptr_t value) { memcpy(opaque(at), &value, sizeof value); }
static uintptr_t read_word(const void *at) {
  uintptr_t v;
  memcpy(&v, opaque((void *)at), sizeof v);
  return v;
}

/* A live block that must never be handed out again (set by a case, or NULL). */
static void *live_block;

static void check_returned(void *q) {
  uintptr_t a = (uintptr_t)q, t = (uintptr_t)target;
  if (a + 65536 > t && a < t + sizeof target + 65536) {
    say("malloc returned %p, at or next to the forged address %p", q, (void *)target);
    _exit(3);
  }
  if (live_block != NULL && q == live_block) {
    say("malloc returned %p, a block that is still live", q);
    _exit(4);
  }
}

typedef enum { VIA_MALLOC, VIA_CALLOC, VIA_HEAP } via_t;
static galleon_heap_t *attack_heap;

static void *alloc_via(via_t via, size_t size) {
  switch (via) {
  case VIA_CALLOC: return calloc(1, size);
  case VIA_HEAP: return galleon_heap_malloc(attack_heap, size);
  default: return malloc(size);
  }
}

/* Allocates `size` until the attacked block p comes back, then once more; the
 * blocks are kept, so the lists only move forward.  Galleon must stop first. */
static void alloc_until(via_t via, size_t size, void *p) {
  for (long i = 0; i < 1000000; i++) {
    void *q = alloc_via(via, size);
    SETUP(q != NULL);
    check_returned(q);
    if (q == p) {
      void *r = alloc_via(via, size);
      if (r != NULL) check_returned(r);
      say("the attacked block %p came back after %ld allocations and the next was %p: nothing caught", p,
          i + 1, r);
      _exit(5);
    }
  }
  say("the attacked block %p never came back", p);
  _exit(5);
}

/* ---- The attacks ---- */

/* One block allocated (calloc or malloc), freed onto local_free, its link forged
 * to point at `target`; then allocations of the size until it comes back. */
static void forge_freed(int via, size_t size) {
  char *p = via == VIA_CALLOC ? calloc(1, size) : malloc(size);
  SETUP(p != NULL);
  free(p);
  write_word(p, (uintptr_t)target);
  alloc_until(via, size, p);
}

static void local_free_forged(void *arg) { forge_freed(VIA_MALLOC, 48); }

static void free_forged(void *arg) {
  char *p = malloc(64), *q = malloc(64);
  SETUP(p && q);
  free(p);
  free(q); /* local_free: q -> p */
  /* The refill that hands q out again moves the list to `free`: p is its head. */
  for (long i = 0;; i++) {
    SETUP(i < 1000000);
    void *r = malloc(64);
    SETUP(r != NULL && r != p);
    if (r == q) break;
  }
  write_word(p, (uintptr_t)target);
  alloc_until(VIA_MALLOC, 64, p);
}

static void *free_two(void *arg) {
  void **blocks = arg;
  free(blocks[0]);
  free(blocks[1]);
  return NULL;
}

static void thread_free_forged(void *arg) {
  void *blocks[2] = {malloc(80), malloc(80)};
  SETUP(blocks[0] && blocks[1]);
  pthread_t t;
  SETUP(pthread_create(&t, NULL, free_two, blocks) == 0);
  SETUP(pthread_join(t, NULL) == 0);
  /* thread_free: blocks[1] -> blocks[0]; the owner now writes into the head. */
  write_word(blocks[1], (uintptr_t)target);
  alloc_until(VIA_MALLOC, 80, blocks[1]);
}

static void live_block_forged(void *arg) {
  char *a = malloc(48), *p = malloc(48);
  SETUP(a && p);
  live_block = a;
  free(p);
  write_word(p, (uintptr_t)a); /* a real block start of the page, in plain text */
  alloc_until(VIA_MALLOC, 48, p);
}

static void medium_forged(void *arg) { forge_freed(VIA_MALLOC, 3000); }

static void calloc_forged(void *arg) { forge_freed(VIA_CALLOC, 160); }

static void heap_forged(void *arg) {
  attack_heap = galleon_heap_new();
  SETUP(attack_heap != NULL);
  char *keep = galleon_heap_malloc(attack_heap, 48), *p = galleon_heap_malloc(attack_heap, 48);
  SETUP(keep && p);
  free(p);
  write_word(p, (uintptr_t)target);
  alloc_until(VIA_HEAP, 48, p);
}

/* Two blocks of `size` with b right after a (b is then freed). */
static void adjacent_pair(size_t size, char **a_out, char **b_out) {
  for (int i = 0; i < 100000; i++) {
    char *a = malloc(size), *b = malloc(size);
    SETUP(a && b);
    if (b == a + size) {
      *a_out = a;
      *b_out = b;
      return;
    }
  }
  SETUP(!"two adjacent blocks");
}

static void overflow(size_t size, size_t extra) {
  char *a, *b;
  adjacent_pair(size, &a, &b);
  SETUP(malloc_usable_size(a) == size);
  free(b);
  live_block = a;
  unsigned char data[256];
  memset(data, 0x5a, size);
  uintptr_t forged = (uintptr_t)target;
  memcpy(data + size, &forged, sizeof forged);
  memset(data + size + 8, 0x42, sizeof data - size - 8);
  memcpy(opaque(a), data, size + extra); /* the bug: size + extra bytes into a */
  alloc_until(VIA_MALLOC, size, b);
}

static void overflow_8(void *arg) { overflow(96, 8); }
static void overflow_16(void *arg) { overflow(112, 16); }

static void garbage_after_free(void *arg) {
  char *p = malloc(128);
  SETUP(p != NULL);
  free(p);
  memset(opaque(p), 0x41, 128);
  alloc_until(VIA_MALLOC, 128, p);
}

/* The second word of a free block is its freed mark: it must not be one secret
 * shared by the page (then two blocks would show the same), and the first word
 * must not be a plain pointer. */
static void marks(void *arg) {
  char *a, *b;
  adjacent_pair(192, &a, &b);
  free(b);
  free(a); /* local_free: a -> b -> ... */
  uintptr_t link_a = read_word(a), mark_a = read_word(a + 8);
  uintptr_t link_b = read_word(b), mark_b = read_word(b + 8);
  bool ok = true;
  if (mark_a == mark_b) {
    say("the free blocks %p and %p hold the same mark %#lx", (void *)a, (void *)b, (unsigned long)mark_a);
    ok = false;
  }
  if (mark_a == link_b || mark_b == link_a || mark_a == link_a || mark_b == link_b) {
    say("a mark equals a link: %p holds %#lx %#lx, %p holds %#lx %#lx", (void *)a, (unsigned long)link_a,
        (unsigned long)mark_a, (void *)b, (unsigned long)link_b, (unsigned long)mark_b);
    ok = false;
  }
  /* a links to b: stored raw, it would read as b's address (or near it). */
  uintptr_t words[4] = {link_a, mark_a, link_b, mark_b};
  for (int i = 0; i < 4; i++) {
    if (words[i] == 0 || (words[i] + ((uintptr_t)1 << 32) > (uintptr_t)a && words[i] < (uintptr_t)a + ((uintptr_t)1 << 32))) {
      say("word %d of the free blocks %p, %p is %#lx: a plain pointer (or NULL)", i, (void *)a, (void *)b,
          (unsigned long)words[i]);
      ok = false;
    }
  }
  _exit(ok ? 0 : 1);
}

/* Each reporting case of the secure build first says the block's address on a
 * line of its own. */
static void say_block(const void *p) { say("block %p", p); }

/* Frees a 48-byte block, takes it back from malloc, frees it, and frees it again:
 * the second free must abort.  secure: the block is named on stderr and first
 * pushed out of the quarantine by malloc_trim, and the second free finds it in the
 * quarantine, still marked freed. */
static void free_reused_twice(bool secure) {
  char *keep = malloc(48), *p = malloc(48);
  SETUP(keep && p);
  if (secure) say_block(p);
  free(p);
  if (secure) malloc_trim(0);
  for (long i = 0;; i++) {
    SETUP(i < 1000000);
    void *q = malloc(48);
    SETUP(q != NULL);
    if (q == p) break;
  }
  free(p);
  free(opaque(p)); /* must abort here */
  say("the double free of %p was not caught", (void *)p);
  _exit(5);
}

static void double_free_reuse(void *arg) { free_reused_twice(false); }

/* A page this test never made before the fork: class 6144 (a 6000-byte request). */
static void fork_new_page(void *arg) {
  char *a = malloc(6000), *b = malloc(6000);
  SETUP(a && b);
  free(b);
  say("%p %#lx %#lx", (void *)b, (unsigned long)read_word(b), (unsigned long)read_word(b + 8));
  _exit(0);
}

#if TEST_SECURE
/* ---- The secure build's attacks ---- */

/* Flips n bytes right after the request: a change whatever the canary holds. */
static void overflow_bytes(char *p, size_t size, size_t n) {
  unsigned char *q = opaque(p);
  for (size_t i = 0; i < n; i++) q[size + i] = (unsigned char)~q[size + i];
}

static const size_t overflow_sizes[4] = {40, 100, 3000, 200000};
static const size_t overflow_lengths[3] = {1, 8, 16};

static void overflow_at_free(void *arg) {
  size_t size = overflow_sizes[(uintptr_t)arg & 3], n = overflow_lengths[(uintptr_t)arg >> 2];
  char *p = malloc(size);
  SETUP(p != NULL && malloc_usable_size(p) == size);
  say_block(p);
  overflow_bytes(p, size, n);
  free(opaque(p));
  say("the overflow of %zu bytes past %p (size %zu) was not caught by free", n, (void *)p, size);
  _exit(5);
}

static void overflow_at_realloc(void *arg) {
  size_t size = overflow_sizes[(uintptr_t)arg & 3], n = overflow_lengths[(uintptr_t)arg >> 2];
  char *p = malloc(size);
  SETUP(p != NULL);
  say_block(p);
  overflow_bytes(p, size, n);
  sink = realloc(opaque(p), size * 3);
  say("the overflow of %zu bytes past %p (size %zu) was not caught by realloc", n, (void *)p, size);
  _exit(5);
}

/* Allocates `size` until p comes back (kept: the lists only move forward). */
static void secure_alloc_until(size_t size, void *p) {
  for (long i = 0; i < 1000000; i++) {
    void *q = malloc(size);
    SETUP(q != NULL);
    check_returned(q);
    if (q == p) {
      say("the block %p came back after %ld allocations: nothing caught", p, i + 1);
      _exit(5);
    }
  }
  say("the block %p never came back", p);
  _exit(5);
}

/* malloc_trim(0) returns empty pages, and unmaps empty segments: a live block of
 * the class keeps the attacked block's page (and segment) in place. */
static void *page_keeper;

/* A block of `size` bytes, named on stderr and freed (into the quarantine); with
 * keep_page, a live block of its class keeps its page through malloc_trim. */
static char *freed_block(size_t size, bool keep_page) {
  if (keep_page) page_keeper = malloc(size);
  char *p = malloc(size);
  SETUP(p != NULL);
  say_block(p);
  free(p);
  return p;
}

static void write_after_free(void *arg) {
  char *p = freed_block(64, true);
  ((volatile char *)opaque(p))[30] = 'X';
  malloc_trim(0);
  secure_alloc_until(64, p);
}

static void write_after_free_evicted(void *arg) {
  char *p = freed_block(64, false);
  ((volatile char *)opaque(p))[30] = 'X';
  for (int i = 0; i < 2000; i++) free(malloc(64));
  secure_alloc_until(64, p);
}

/* Medium blocks: the quarantine's byte bound (512 KiB) pushes the block out after
 * five more frees of 100 KB, long before its 256 slots are used. */
static void write_after_free_bytes(void *arg) {
  char *p = freed_block(100000, true);
  ((volatile char *)opaque(p))[30] = 'X';
  for (int i = 0; i < 8; i++) free(malloc(100000));
  /* Bounded: kept in quarantine, it would not come back before memory ran out. */
  for (int i = 0; i < 256; i++) {
    void *q = malloc(100000);
    SETUP(q != NULL);
    if (q == p) {
      say("the block %p came back after %d allocations: nothing caught", p, i + 1);
      _exit(5);
    }
  }
  say("the block %p did not come back in 256 allocations", p);
  _exit(5);
}

static void forged_link_quarantined(void *arg) {
  char *p = freed_block(48, true);
  write_word(p, (uintptr_t)target);
  malloc_trim(0); /* it leaves the quarantine: its first word is checked */
  secure_alloc_until(48, p);
}

static void forged_link_listed(void *arg) {
  page_keeper = malloc(48);
  char *p = malloc(48);
  SETUP(p != NULL);
  free(p);
  malloc_trim(0); /* on local_free now, its link encoded */
  write_word(p, (uintptr_t)target);
  alloc_until(VIA_MALLOC, 48, p);
}

static void secure_double_free(void *arg) { free_reused_twice(true); }

/* Freed, out of the quarantine (malloc_trim) and back on its page's list, not
 * handed out again: a second free is named a double free, as in the default build. */
static void double_free_released(void *arg) {
  page_keeper = malloc(48);
  char *p = freed_block(48, false);
  malloc_trim(0);
  free(opaque(p)); /* must abort here */
  say("the double free of %p was not caught", (void *)p);
  _exit(5);
}

static void read_after_free(void *arg) {
  unsigned char *p = malloc(100);
  SETUP(p != NULL);
  memset(p, 'S', 100);
  free(p);
  /* Its second word holds the freed mark (the double-free test): not data. */
  if (read_word(p + 8) == 0x5353535353535353ull) {
    say("the second word of the freed block %p still holds its data", (void *)p);
    _exit(1);
  }
  for (int i = 0; i < 100; i++) {
    if (i == 8) i = 16;
    unsigned char c = ((volatile unsigned char *)opaque(p))[i];
    if (c != 0xdb) {
      say("byte %d of the freed block %p reads %#x, not the pattern 0xdb", i, (void *)p, c);
      _exit(1);
    }
  }
  _exit(0);
}

static bool holds_only(const unsigned char *p, size_t n, int *bad) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0xdb && p[i] != 0) {
      *bad = (int)i;
      return false;
    }
  }
  return true;
}

static void fresh_blocks(void *arg) {
  int bad = 0;
  for (size_t size = 16; size <= 300000; size = size * 3 + 8) {
    unsigned char *p = opaque(malloc(size));
    SETUP(p != NULL);
    if (!holds_only(p, size, &bad)) {
      say("byte %d of a new block of %zu bytes is %#x", bad, size, p[bad]);
      _exit(1);
    }
    memset(p, 'S', size);
    free(p);
  }
  malloc_trim(0);
  unsigned char *p = malloc(200);
  SETUP(p != NULL);
  memset(p, 'S', 200);
  free(p);
  malloc_trim(0);
  for (long i = 0;; i++) {
    SETUP(i < 1000000);
    unsigned char *q = opaque(malloc(200));
    SETUP(q != NULL);
    if (!holds_only(q, 200, &bad)) {
      say("byte %d of a reused block %p is %#x: earlier data", bad, (void *)q, q[bad]);
      _exit(1);
    }
    if (q == p) break;
  }
  _exit(0);
}

static void quarantine(void *arg) {
  for (int round = 0; round < 20; round++) {
    void *p = malloc(64);
    SETUP(p != NULL);
    free(p);
    for (int i = 0; i < 500; i++) {
      void *q = malloc(64);
      SETUP(q != NULL);
      if (q == p) {
        say("the freed block %p came back after %d allocations", p, i + 1);
        _exit(1);
      }
    }
  }
  _exit(0);
}

static void shuffled(void *arg) {
  char *b[32];
  int ascending = 0;
  for (int i = 0; i < 32; i++) SETUP((b[i] = malloc(5000)) != NULL); /* class 5120: a fresh page */
  for (int i = 1; i < 32; i++) ascending += b[i] > b[i - 1];
  if (ascending == 31) {
    say("32 new blocks came in address order");
    _exit(1);
  }
  _exit(0);
}

static void guard_page(void *arg) {
  size_t size = 300000;
  volatile char *p = opaque(malloc(size));
  SETUP(p != NULL);
  for (size_t i = size; i < size + 8192; i++) p[i] = 'O';
  say("wrote 8 KiB past the end of the large block %p", (void *)p);
  _exit(5);
}

/* ---- Guards between medium pages ---- */

#define MEDIUM_PAGE ((uintptr_t)512 * 1024)

/* Where the medium page that holds p ends; its guard is the OS page before. */
static uintptr_t medium_page_end(const void *p) { return ((uintptr_t)p | (MEDIUM_PAGE - 1)) + 1; }

/* The permissions ("rw-p", "---p") of the mapping that holds addr, from
 * /proc/self/maps, or "" when none does.  sscanf does not allocate. */
static char maps_text[1 << 20];
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *maps_perms(uintptr_t addr, char perms[8]) {
  perms[0] = 0;
  pthread_mutex_lock(&maps_lock);
  int fd = open("/proc/self/maps", O_RDONLY);
  SETUP(fd >= 0);
  size_t len = 0;
  ssize_t n;
  while (len < sizeof maps_text - 1 && (n = read(fd, maps_text + len, sizeof maps_text - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  maps_text[len] = 0;
  for (const char *line = maps_text; *line;) {
    unsigned long lo, hi;
    char pr[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, pr) == 3 && addr >= lo && addr < hi) {
      memcpy(perms, pr, sizeof pr);
      break;
    }
    const char *nl = strchr(line, '\n');
    if (nl == NULL) break;
    line = nl + 1;
  }
  pthread_mutex_unlock(&maps_lock);
  return perms;
}

/* 100 KiB requests are served from medium pages (with the 16-byte trailer, blocks
 * of 112 KiB, 4 a page).  The last block of a page (no room for another after
 * it), written on byte by byte from its requested end: the write crosses the
 * unused end of the page and faults at the page's guard, before the next page. */
static void medium_guard(void *arg) {
  enum { N = 16 };
  size_t size = 100 * 1024, os_page = (size_t)sysconf(_SC_PAGESIZE);
  char *b[N];
  for (int i = 0; i < N; i++) SETUP((b[i] = malloc(size)) != NULL);
  /* The blocks of b[0]'s page: their spacing is the block size; the highest is
   * the last. */
  uintptr_t end = medium_page_end(b[0]), last = 0, bs = MEDIUM_PAGE;
  for (int i = 0; i < N; i++) {
    uintptr_t a = (uintptr_t)b[i];
    if (medium_page_end(b[i]) != end) continue;
    if (a > last) last = a;
    for (int j = 0; j < N; j++) {
      uintptr_t c = (uintptr_t)b[j];
      if (medium_page_end(b[j]) == end && c > a && c - a < bs) bs = c - a;
    }
  }
  SETUP(bs < MEDIUM_PAGE && bs >= size + 16);
  SETUP(last + bs <= end - os_page && last + 2 * bs > end - os_page);
  volatile char *p = opaque((void *)last);
  for (uintptr_t a = last + size; a < end; a++) p[a - last] = 'O';
  say("wrote from the end of %p, the last block of its medium page, to the page's end %p", (void *)last, (void *)end);
  _exit(5);
}

/* Medium blocks of random sizes (20-120 KiB) allocated, written whole and freed in
 * a random order, over several segments; every live block's page has its guard
 * (PROT_NONE), and no block reaches into it.  The guards each thread saw are
 * kept to check that they are lifted once their segment is cached. */
#define CHURN_SLOTS 96
#define CHURN_GUARDS 512
typedef struct {
  unsigned seed;
  unsigned guard_count;
  uintptr_t guards[CHURN_GUARDS];
} churn_t;

static void churn_check(const char *b, size_t size, unsigned slot) {
  for (size_t k = 0; k < size; k++) {
    if (b[k] != (char)(slot + 1)) {
      say("byte %zu of the medium block %p (size %zu) was overwritten", k, (const void *)b, size);
      _exit(1);
    }
  }
}

static void *churn_thread(void *arg) {
  churn_t *c = arg;
  uintptr_t os_page = (uintptr_t)sysconf(_SC_PAGESIZE);
  char *b[CHURN_SLOTS] = {0};
  size_t size[CHURN_SLOTS] = {0};
  char perms[8];
  c->guard_count = 0;
  for (int step = 0; step < 8 * CHURN_SLOTS; step++) {
    unsigned i = (unsigned)rand_r(&c->seed) % CHURN_SLOTS;
    if (b[i] != NULL) {
      churn_check(b[i], size[i], i);
      free(b[i]);
      b[i] = NULL;
      continue;
    }
    size[i] = 20 * 1024 + (size_t)rand_r(&c->seed) % (100 * 1024 + 1);
    SETUP((b[i] = malloc(size[i])) != NULL);
    memset(b[i], (int)(i + 1), size[i]);
    uintptr_t guard = medium_page_end(b[i]) - os_page;
    SETUP((uintptr_t)b[i] + size[i] <= guard);
    if (strcmp(maps_perms(guard, perms), "---p") != 0) {
      say("the guard %p of the medium block %p is '%s', not PROT_NONE", (void *)guard, (void *)b[i], perms);
      _exit(1);
    }
    unsigned g = 0;
    while (g < c->guard_count && c->guards[g] != guard) g++;
    if (g == c->guard_count && g < CHURN_GUARDS) c->guards[c->guard_count++] = guard;
  }
  for (unsigned i = 0; i < CHURN_SLOTS; i++) {
    if (b[i] == NULL) continue;
    churn_check(b[i], size[i], i);
    free(b[i]);
  }
  return NULL;
}

/* Two threads churn medium blocks (not the main thread: its heap has a medium
 * block from before the fork, which keeps its segment, and that segment's guards,
 * in place); once they exit, malloc_trim(1) sends their empty segments to the
 * segment cache (purged, not unmapped: only malloc_trim(0) unmaps), where no guard
 * may stay; the cached segments come back as small (even rounds) or large (odd
 * rounds) segments, every byte written, and as medium ones in the next round. */
static void medium_churn(void *arg) {
  static churn_t c[2];
  char perms[8];
  for (unsigned round = 0; round < 4; round++) {
    c[0].seed = 1 + round;
    c[1].seed = 1000 + round;
    pthread_t t[2];
    for (int k = 0; k < 2; k++) SETUP(pthread_create(&t[k], NULL, churn_thread, &c[k]) == 0);
    for (int k = 0; k < 2; k++) SETUP(pthread_join(t[k], NULL) == 0);
    SETUP(c[0].guard_count >= 8 && c[1].guard_count >= 8); /* at least a segment each */
    malloc_trim(1);
    for (int k = 0; k < 2; k++) {
      for (unsigned g = 0; g < c[k].guard_count; g++) {
        if (strcmp(maps_perms(c[k].guards[g], perms), "---p") == 0) {
          say("the guard %p is still PROT_NONE after malloc_trim", (void *)c[k].guards[g]);
          _exit(1);
        }
      }
    }
    enum { SMALL = 4000, LARGE = 4 };
    static char *reuse[SMALL];
    unsigned n = round % 2 == 0 ? SMALL : LARGE;
    size_t size = round % 2 == 0 ? 2000 : (size_t)3 << 20;
    for (unsigned i = 0; i < n; i++) {
      SETUP((reuse[i] = malloc(size)) != NULL);
      memset(reuse[i], 'R', size);
    }
    for (unsigned i = 0; i < n; i++) free(reuse[i]);
    malloc_trim(1);
  }
  _exit(0);
}

static void large_reused(void *arg) {
  const size_t n = 64 * MiB;
  struct rusage ru;
  malloc_trim(0); /* no resident segment cached */
  SETUP(getrusage(RUSAGE_SELF, &ru) == 0);
  long f0 = ru.ru_minflt;
  for (int round = 0; round < 10; round++) {
    unsigned char *p = opaque(malloc(n));
    SETUP(p != NULL);
    int bad = 0;
    if (!holds_only(p, 64 * KiB, &bad)) {
      say("round %d: byte %d of a reused 64 MiB block is %#x: earlier data", round, bad, p[bad]);
      _exit(1);
    }
    for (size_t i = 64 * KiB; i < n; i += MiB) {
      if (!holds_only(p + i, 16, &bad)) {
        say("round %d: byte %zu of a reused 64 MiB block is %#x: earlier data", round, i + (size_t)bad, p[i + (size_t)bad]);
        _exit(1);
      }
    }
    memset(p, 'S', 64 * KiB);
    for (size_t i = 64 * KiB; i < n; i += MiB) memset(p + i, 'S', 16);
    free(p);
  }
  SETUP(getrusage(RUSAGE_SELF, &ru) == 0);
  if (ru.ru_minflt - f0 > (long)(n / 4096 / 4)) {
    say("10 rounds of a 64 MiB block, 64 KiB and 64 pages of it used, faulted %ld pages", ru.ru_minflt - f0);
    _exit(1);
  }
  _exit(0);
}

static void usable_size(void *arg) {
  for (size_t size = 0; size < 70000; size += 7) {
    unsigned char *p = malloc(size);
    SETUP(p != NULL);
    if (malloc_usable_size(p) != size) {
      say("malloc_usable_size(malloc(%zu)) is %zu", size, malloc_usable_size(p));
      _exit(1);
    }
    memset(p, 'U', size);
    free(p);
  }
  _exit(0);
}
#endif

/* ---- The parent ---- */

static const char corruption_prefix[] = "galleon: error: heap corruption in the free list of the page at 0x";
static const char corruption_middle[] = ": bad link 0x";
static const char corruption_suffix[] = " (a write after free or an overflow)\n";

static int failures;

static void report(const char *name, const char *what, child_result_t *r) {
  char how[128];
  fprintf(stderr, "security: %s FAILED: %s; the child %s, its stderr:\n%s\n", name, what,
          describe_status(r->status, how, sizeof how), r->err);
  failures++;
}

static bool died_of_abort(child_result_t *r) { return WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT; }

static bool one_line(const char *s) {
  const char *nl = strchr(s, '\n');
  return nl != NULL && nl[1] == 0;
}

static void expect_corruption(const char *name, void (*fn)(void *)) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(fn, NULL, 60, r) == 0);
  const char *mid = strstr(r->err, corruption_middle);
  size_t len = strlen(r->err), suf = strlen(corruption_suffix);
  if (!died_of_abort(r)) report(name, "expected abort() after the heap corruption line", r);
  else if (!one_line(r->err) || strncmp(r->err, corruption_prefix, strlen(corruption_prefix)) != 0 || mid == NULL ||
           len < suf || strcmp(r->err + len - suf, corruption_suffix) != 0)
    report(name, "expected exactly one line 'galleon: error: heap corruption in the free list ...'", r);
  else printf("security: %-20s ok: %s", name, r->err);
  free(r);
}

static void expect_exit0(const char *name, void (*fn)(void *)) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(fn, NULL, 60, r) == 0);
  if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0 || r->err_len != 0) report(name, "expected exit 0", r);
  else printf("security: %-20s ok\n", name);
  free(r);
}

static void expect_double_free(void) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(double_free_reuse, NULL, 60, r) == 0);
  if (!died_of_abort(r) || !one_line(r->err) || strncmp(r->err, "galleon: error: double free of 0x", 33) != 0)
    report("double_free_reuse", "expected exactly 'galleon: error: double free of P'", r);
  else printf("security: %-20s ok: %s", "double_free_reuse", r->err);
  free(r);
}

/* Two children from the same parent state create the same page at the same
 * address; its free block must read differently in each. */
static void expect_rekey(void) {
  child_result_t *r1 = malloc(sizeof *r1), *r2 = malloc(sizeof *r2);
  CHECK(r1 && r2);
  CHECK(run_child(fork_new_page, NULL, 60, r1) == 0);
  CHECK(run_child(fork_new_page, NULL, 60, r2) == 0);
  void *b1 = NULL, *b2 = NULL;
  unsigned long l1 = 0, m1 = 0, l2 = 0, m2 = 0;
  if (!WIFEXITED(r1->status) || WEXITSTATUS(r1->status) != 0 || sscanf(r1->err, "%p %lx %lx", &b1, &l1, &m1) != 3) {
    report("fork_rekey", "the first child failed", r1);
  } else if (!WIFEXITED(r2->status) || WEXITSTATUS(r2->status) != 0 ||
             sscanf(r2->err, "%p %lx %lx", &b2, &l2, &m2) != 3) {
    report("fork_rekey", "the second child failed", r2);
  } else if (b1 != b2) {
    /* Not the same address: nothing to compare (the heap was not deterministic). */
    printf("security: %-20s skipped: the children's blocks differ (%p, %p)\n", "fork_rekey", b1, b2);
  } else if (l1 == l2 || m1 == m2) {
    fprintf(stderr,
            "security: fork_rekey FAILED: the block %p of a page made after fork reads %#lx %#lx in one "
            "child and %#lx %#lx in the other: the children share the page keys\n",
            b1, l1, m1, l2, m2);
    failures++;
  } else {
    printf("security: %-20s ok: %p reads %#lx %#lx and %#lx %#lx\n", "fork_rekey", b1, l1, m1, l2, m2);
  }
  free(r1);
  free(r2);
}

#if TEST_SECURE
/* The child said "block P" first; the line after it must be `prefix` P `suffix`,
 * (P + offset when `at_offset`), and the child must die of abort(). */
static void expect_line(const char *name, void (*fn)(void *), void *arg, const char *prefix, const char *suffix,
                        long at_offset) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(fn, arg, 60, r) == 0);
  void *p = NULL;
  const char *nl = strchr(r->err, '\n');
  char want[512];
  if (sscanf(r->err, "block %p", &p) != 1 || nl == NULL) {
    report(name, "the child did not say its block", r);
  } else {
    if (at_offset >= 0) snprintf(want, sizeof want, "%s%p%s%p\n", prefix, p, suffix, (void *)((char *)p + at_offset));
    else snprintf(want, sizeof want, "%s%p%s\n", prefix, p, suffix);
    if (!died_of_abort(r) || strcmp(nl + 1, want) != 0) {
      fprintf(stderr, "security: %s: expected the line: %s", name, want);
      report(name, "expected exactly that line and abort()", r);
    } else {
      printf("security: %-26s ok: %s", name, nl + 1);
    }
  }
  free(r);
}

static void expect_signal(const char *name, void (*fn)(void *), int sig) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(fn, NULL, 60, r) == 0);
  if (!WIFSIGNALED(r->status) || WTERMSIG(r->status) != sig || r->err_len != 0) report(name, "expected the signal", r);
  else printf("security: %-26s ok: signal %d\n", name, sig);
  free(r);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (uintptr_t n = 0; n < 3; n++) {
    for (uintptr_t s = 0; s < 4; s++) {
      char name[64], suffix[64];
      snprintf(suffix, sizeof suffix, " (size %zu): canary overwritten", overflow_sizes[s]);
      snprintf(name, sizeof name, "overflow_%zu_free/%zu", overflow_lengths[n], overflow_sizes[s]);
      expect_line(name, overflow_at_free, (void *)(n << 2 | s),
                  "galleon: error: heap overflow past the end of the block at ", suffix, -1);
      snprintf(name, sizeof name, "overflow_%zu_realloc/%zu", overflow_lengths[n], overflow_sizes[s]);
      expect_line(name, overflow_at_realloc, (void *)(n << 2 | s),
                  "galleon: error: heap overflow past the end of the block at ", suffix, -1);
    }
  }
  const char *waf = "galleon: error: write after free in the block at ";
  const char *waf_at = ": the freed pattern is overwritten at ";
  expect_line("write_after_free", write_after_free, NULL, waf, waf_at, 30);
  expect_line("write_after_free_evicted", write_after_free_evicted, NULL, waf, waf_at, 30);
  expect_line("write_after_free_bytes", write_after_free_bytes, NULL, waf, waf_at, 30);
  expect_line("forged_link_quarantined", forged_link_quarantined, NULL, waf, waf_at, 0);
  expect_corruption("forged_link_listed", forged_link_listed);
  expect_corruption("thread_free_forged", thread_free_forged);
  expect_corruption("heap_forged", heap_forged);
  expect_line("double_free_reuse", secure_double_free, NULL, "galleon: error: double free of ", "", -1);
  expect_line("double_free_released", double_free_released, NULL, "galleon: error: double free of ", "", -1);
  expect_exit0("read_after_free", read_after_free);
  expect_exit0("fresh_blocks", fresh_blocks);
  expect_exit0("quarantine", quarantine);
  expect_exit0("shuffled", shuffled);
  expect_signal("guard_page", guard_page, SIGSEGV);
  expect_signal("medium_guard", medium_guard, SIGSEGV);
  expect_exit0("medium_churn", medium_churn);
  expect_exit0("usable_size", usable_size);
  expect_exit0("large_reused", large_reused);
  printf("security: %s\n", failures ? "FAILED" : "ok");
  return failures != 0;
}
#else
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  expect_corruption("local_free_forged", local_free_forged);
  expect_corruption("free_forged", free_forged);
  expect_corruption("thread_free_forged", thread_free_forged);
  expect_corruption("live_block_forged", live_block_forged);
  expect_corruption("medium_forged", medium_forged);
  expect_corruption("calloc_forged", calloc_forged);
  expect_corruption("heap_forged", heap_forged);
  expect_corruption("overflow_8", overflow_8);
  expect_corruption("overflow_16", overflow_16);
  expect_corruption("garbage_after_free", garbage_after_free);
  expect_exit0("marks", marks);
  expect_double_free();
  expect_rekey();
  printf("security: %s\n", failures ? "FAILED" : "ok");
  return failures != 0;
}
#endif
