/* os_linux.c: the only file that talks to the kernel; its contract is os.h.
 *
 * Linux specifics: mappings are made without MAP_NORESERVE (the overcommit policy
 * sees them); reservations are PROT_NONE, which the kernel does not charge until
 * they are made writable.  A hint address makes the common segment mapping one
 * system call: the kernel usually honours it, so the mapping comes back aligned
 * without the reserve-and-trim fallback.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>

#include "os.h"

static size_t os_page = 4096;
/* Next address to ask the kernel for: usually the kernel honours the hint and the
 * mapping comes back aligned in one call, without the over-map and trim. */
static _Atomic(uintptr_t) os_hint;

void os_init(void) {
  long ps = sysconf(_SC_PAGESIZE);
  if (ps > 0) os_page = (size_t)ps;
  /* Start hints at a random 4 MiB-aligned address between 8 and 24 TiB. */
  uintptr_t base = ((uintptr_t)8 << 40) + ((os_random() % ((uintptr_t)4 << 20)) << GL_SEGMENT_SHIFT);
  uintptr_t expected = 0;
  atomic_compare_exchange_strong(&os_hint, &expected, base);
}

size_t os_page_size(void) { return os_page; }

static void *os_mmap(void *hint, size_t size, int prot) {
  int saved = errno;
  /* No MAP_NORESERVE: writable mappings are charged against the overcommit limit
   * (PROT_NONE ones are never charged, and are charged when made writable). */
  void *p = mmap(hint, size, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  if (p == MAP_FAILED) return NULL;
  gl_counter_add(&gl_counters.mmap_calls, 1);
  return p;
}

void os_unmap(void *addr, size_t size) {
  if (size == 0) return;
  int saved = errno;
  munmap(addr, size);
  errno = saved;
  gl_counter_add(&gl_counters.munmap_calls, 1);
}

/* Requests up to this size go through the address hint; bigger ones (rare, and
 * often probes that fail) would use up the hint range. */
#define OS_HINT_MAX_SIZE ((size_t)1 << 30)
#define OS_HINT_END ((uintptr_t)120 << 40)
#define OS_HINT_JUMP ((uintptr_t)256 << 30)

static void *os_map_aligned_prot(size_t size, size_t alignment, int prot) {
  if (alignment < os_page) alignment = os_page;
  if (alignment > GL_MAX_ALIGN || size > GL_MAX_ALLOC - alignment) return NULL;
  /* 1. Try the hint: one system call in the common case.  Each request claims its
   * range of the hint first (one fetch-add), so threads mapping at once each get a
   * range of their own instead of racing for one address, the losers falling to
   * the over-map and trim below. */
  if (alignment <= GL_SEGMENT_SIZE && size <= OS_HINT_MAX_SIZE) {
    size_t step = gl_align_up(size, GL_SEGMENT_SIZE);
    uintptr_t hint = atomic_load_explicit(&os_hint, memory_order_relaxed);
    if (hint != 0 && hint < OS_HINT_END) {
      hint = atomic_fetch_add_explicit(&os_hint, step, memory_order_relaxed);
      void *p = os_mmap((void *)hint, size, prot);
      if (p == NULL) return NULL;
      if (((uintptr_t)p & (alignment - 1)) == 0) return p;
      os_unmap(p, size);
      /* Something else lives at the hint (a sanitizer's shadow, another library's
       * reservation): jump well past it rather than step through it, so that the
       * one-call path comes back after a few misses. */
      uintptr_t next = hint + step;
      atomic_compare_exchange_strong_explicit(&os_hint, &next, next + OS_HINT_JUMP, memory_order_relaxed,
                                              memory_order_relaxed);
    }
  }
  /* 2. Reserve alignment more than needed, trim both ends, and make the middle
   * accessible: the slack is never charged as committed memory. */
  size_t over = size + alignment;
  uint8_t *raw = os_mmap(NULL, over, PROT_NONE);
  if (raw == NULL) return NULL;
  uintptr_t aligned = ((uintptr_t)raw + alignment - 1) & ~(uintptr_t)(alignment - 1);
  size_t head = aligned - (uintptr_t)raw;
  size_t tail = over - head - size;
  if (head) os_unmap(raw, head);
  if (tail) os_unmap((void *)(aligned + size), tail);
  if (prot != PROT_NONE && !os_commit((void *)aligned, size)) {
    os_unmap((void *)aligned, size);
    return NULL;
  }
  return (void *)aligned;
}

bool os_commit(void *addr, size_t size) {
  int saved = errno;
  int rc = mprotect(addr, size, PROT_READ | PROT_WRITE);
  errno = saved;
  return rc == 0;
}

void *os_map(size_t size) {
  if (size > GL_MAX_ALLOC) return NULL;
  void *p = os_mmap(NULL, size, PROT_READ | PROT_WRITE);
  return p;
}

void *os_map_aligned(size_t size, size_t alignment) {
  return os_map_aligned_prot(size, alignment, PROT_READ | PROT_WRITE);
}

void *os_reserve_aligned(size_t size, size_t alignment) {
  return os_map_aligned_prot(size, alignment, PROT_NONE);
}

bool os_purge(void *addr, size_t size, bool decommit) {
  if (size == 0) return true;
  int saved = errno;
  bool zero = true;
  /* DONTNEED fails on locked pages (mlock, mlockall): they keep their contents. */
  if (decommit) {
    zero = madvise(addr, size, MADV_DONTNEED) == 0;
  } else if (madvise(addr, size, MADV_FREE) == 0) {
    zero = false;
  } else {
    zero = madvise(addr, size, MADV_DONTNEED) == 0;
  }
  errno = saved;
  gl_counter_add(&gl_counters.purges, 1);
  gl_counter_add(&gl_counters.purged_bytes, size);
  return zero;
}

bool os_discard(void *addr, size_t size) {
  int saved = errno;
  bool done = madvise(addr, size, MADV_DONTNEED) == 0;
  errno = saved;
  return done;
}

bool os_resident(void *addr, size_t count, uint8_t *resident) {
  int saved = errno;
  bool done = mincore(addr, count * os_page_size(), resident) == 0;
  errno = saved;
  return done;
}

bool os_advise_huge(void *addr, size_t size) {
  int saved = errno;
  int rc = madvise(addr, size, MADV_HUGEPAGE);
  errno = saved;
  return rc == 0;
}

bool os_resize_in_place(void *addr, size_t old_size, size_t new_size) {
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, 0);
  int error = errno;
  gl_counter_add(&gl_counters.mremap_calls, 1);
  if (p == MAP_FAILED && error == EFAULT && new_size > old_size) {
    /* The range is more than one mapping (pages moved in from elsewhere keep
     * theirs: the kernel does not merge them), which mremap does not grow.  A
     * mapping of its own right after it does as well, if that space is free.
     * (Kernels before 4.17 take MAP_FIXED_NOREPLACE as a hint: another address
     * is undone.) */
    uint8_t *end = (uint8_t *)addr + old_size;
    void *more = mmap(end, new_size - old_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (more != MAP_FAILED && more != end) munmap(more, new_size - old_size);
    p = more == end ? addr : MAP_FAILED;
  }
  errno = saved;
  return p == addr;
}

/* Tried once, on three pages: one mapping, its middle page replaced by a page
 * moved in from another (two mappings then, which the kernel does not merge), and
 * the first two pages moved together.  Linux 6.17 and later move such a range;
 * earlier kernels refuse it (EFAULT), after unmapping the destination. */
static bool probe_moves_several(void) {
  size_t page = os_page_size();
  uint8_t *a = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *b = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *c = mmap(NULL, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool moved = false;
  if (a != MAP_FAILED && b != MAP_FAILED && c != MAP_FAILED) {
    a[0] = 1;
    b[0] = 2;
    if (mremap(b, page, page, MREMAP_MAYMOVE | MREMAP_FIXED, a + page) == a + page) {
      b = MAP_FAILED; /* moved into a */
      moved = mremap(a, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_FIXED, c) == c && c[0] == 1 && c[page] == 2;
    }
  }
  if (a != MAP_FAILED) munmap(a, 3 * page);
  if (b != MAP_FAILED) munmap(b, page);
  if (c != MAP_FAILED) munmap(c, 2 * page);
  return moved;
}

bool os_moves_several_mappings(void) {
  static _Atomic(int) known; /* 0: not yet tried; 1: no; 2: yes */
  int v = atomic_load_explicit(&known, memory_order_relaxed);
  if (v == 0) {
    int saved = errno;
    v = probe_moves_several() ? 2 : 1;
    errno = saved;
    atomic_store_explicit(&known, v, memory_order_relaxed);
  }
  return v == 2;
}

bool os_move(void *addr, size_t old_size, size_t new_size, void *target) {
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  errno = saved;
  gl_counter_add(&gl_counters.mremap_calls, 1);
  return p == target;
}

uint64_t os_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int os_thread_id(void) { return (int)syscall(SYS_gettid); }

/* Linux names another thread's CPU clock by its id: ~tid << 3, per thread (4),
 * scheduler time (2) -- what glibc's pthread_getcpuclockid computes from a pthread_t.
 * A raw id is safe where a pthread_t of an exited thread is not: the kernel answers
 * EINVAL for an id that is no thread of this process. */
bool os_cpu_time_ns(int tid, uint64_t *ns) {
  clockid_t clock = tid == 0    ? CLOCK_THREAD_CPUTIME_ID
                    : tid == -1 ? CLOCK_PROCESS_CPUTIME_ID
                                : (clockid_t)(((unsigned)~tid << 3) | 6u);
  struct timespec ts;
  int saved = errno;
  bool ok = clock_gettime(clock, &ts) == 0;
  errno = saved;
  if (ok) *ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  return ok;
}

uint64_t os_random(void) {
  uint64_t value = 0;
  int saved = errno;
  long got = syscall(SYS_getrandom, &value, sizeof value, 1 /* GRND_NONBLOCK */);
  errno = saved;
  if (got != (long)sizeof value) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    value = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&value;
  }
  return value | 1; /* never zero */
}

void os_write(int fd, const char *text, size_t len) {
  int saved = errno;
  while (len > 0) {
    /* syscall(), not write(): write is a cancellation point. */
    long n = syscall(SYS_write, fd, text, len);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    text += n;
    len -= (size_t)n;
  }
  errno = saved;
}

/* secure_getenv() does not allocate in glibc; it is safe before main and in any
 * thread, and returns NULL in set-user-ID and set-group-ID programs. */
const char *os_getenv(const char *name) { return secure_getenv(name); }

long os_read_text(const char *path, char *buf, size_t cap) {
  if (cap == 0) return -1;
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  long n = -1;
  if (fd >= 0) {
    n = syscall(SYS_read, (int)fd, buf, cap - 1);
    syscall(SYS_close, (int)fd);
  }
  errno = saved;
  if (n < 0) return -1;
  buf[n] = 0;
  return n;
}

/* ---- The background thread and its event ---- */

bool os_thread_start(void *(*fn)(void *), const char *name) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits the mask */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  pthread_t thread;
  int saved = errno;
  int rc = pthread_create(&thread, &attr, fn, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc == 0) pthread_setname_np(thread, name);
  errno = saved;
  return rc == 0;
}

void os_event_init(os_event_t *ev) {
  pthread_mutex_init(&ev->lock, NULL);
  pthread_condattr_t cattr;
  pthread_condattr_init(&cattr);
  pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
  pthread_cond_init(&ev->cond, &cattr);
  pthread_condattr_destroy(&cattr);
}

void os_event_lock(os_event_t *ev) { pthread_mutex_lock(&ev->lock); }
void os_event_unlock(os_event_t *ev) { pthread_mutex_unlock(&ev->lock); }

void os_event_wait(os_event_t *ev, uint64_t deadline_ms) {
  int saved = errno;
  if (deadline_ms == UINT64_MAX) {
    pthread_cond_wait(&ev->cond, &ev->lock);
  } else {
    uint64_t now = os_clock_ms();
    if (deadline_ms > now) {
      uint64_t wait_ms = deadline_ms - now + 1; /* the coarse clock may lag: one more */
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += (time_t)(wait_ms / 1000);
      ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
    }
  }
  errno = saved;
}

void os_event_signal(os_event_t *ev) {
  pthread_mutex_lock(&ev->lock);
  pthread_cond_signal(&ev->cond);
  pthread_mutex_unlock(&ev->lock);
}

/* ---- Files and stacks ---- */

int os_file_create(const char *path) {
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = errno;
  errno = saved;
  return fd < 0 ? -err : (int)fd;
}

long os_getpid(void) { return syscall(SYS_getpid); }

void os_file_close(int fd) {
  int saved = errno;
  syscall(SYS_close, fd);
  errno = saved;
}

bool os_copy_file(const char *path, int fd) {
  int saved = errno;
  long in = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    errno = saved;
    return false;
  }
  char buf[4096];
  long n;
  while ((n = syscall(SYS_read, (int)in, buf, sizeof buf)) > 0) os_write(fd, buf, (size_t)n);
  syscall(SYS_close, (int)in);
  errno = saved;
  return n == 0;
}

int os_backtrace(void **pcs, int max) {
  int saved = errno;
  int n = backtrace(pcs, max);
  errno = saved;
  return n < 0 ? 0 : n;
}

void os_backtrace_prime(void) {
  void *pcs[4];
  os_backtrace(pcs, 4);
}

typedef struct object_search_s {
  uintptr_t code, lo, hi;
  int index;
  bool found, is_program;
} object_search_t;

static int object_search_one(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  object_search_t *s = data;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
    if (start < lo) lo = start;
    if (end > hi) hi = end;
  }
  if (s->index++, s->code < lo || s->code >= hi) return 0;
  s->is_program = s->index == 1; /* dl_iterate_phdr reports the program first */
  s->lo = lo;
  s->hi = hi;
  s->found = true;
  return 1;
}

bool os_object_range(const void *code, uintptr_t *lo, uintptr_t *hi, bool *is_program) {
  object_search_t s = {(uintptr_t)code, 0, 0, 0, false, false};
  int saved = errno;
  dl_iterate_phdr(object_search_one, &s);
  errno = saved;
  *lo = s.lo;
  *hi = s.hi;
  *is_program = s.is_program;
  return s.found;
}

void os_symbolize(const void *pc, const char **symbol, const char **object, uintptr_t *offset) {
  Dl_info info;
  int saved = errno;
  int ok = dladdr(pc, &info);
  errno = saved;
  *symbol = NULL;
  *object = NULL;
  *offset = (uintptr_t)pc;
  if (!ok) return;
  *object = info.dli_fname;
  if (info.dli_sname != NULL && info.dli_saddr != NULL) {
    *symbol = info.dli_sname;
    *offset = (uintptr_t)pc - (uintptr_t)info.dli_saddr;
  } else if (info.dli_fbase != NULL) {
    *offset = (uintptr_t)pc - (uintptr_t)info.dli_fbase;
  }
}

bool os_protect(void *addr, size_t size, bool accessible) {
  int saved = errno;
  int rc = mprotect(addr, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
  errno = saved;
  return rc == 0;
}
