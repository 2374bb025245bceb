/* profile.c: the sampling heap profiler's records and files (profile.h).
 *
 * Two tables, both chained hash tables in memory from the OS layer:
 *   sites  one record per distinct stack: sampled blocks and bytes, live and ever
 *          allocated (never removed: the "ever allocated" figures outlive frees);
 *   live   one entry per live sampled block: address -> size and site.
 * Sampled numbers are kept raw; a reader scales them by 1 / (1 - exp(-s / R)) for
 * blocks of average size s and interval R (what pprof does for heap_v2 files).
 *
 * Locks, each taken alone (none is held while another is taken):
 *   site_lock   the site table and the arena its records (and live entries) come
 *               from; held while a dump walks the sites and writes its file
 *   a shard's   the live entries of the addresses that hash to it (64 shards, so
 *               frees of sampled blocks in different threads rarely meet)
 * A site's counters are relaxed atomics: records and frees update them under
 * different locks, and a dump reads a consistent-enough picture.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "options.h"
#include "profile.h"

#define PROFILE_MAX_DEPTH 64
#define SITE_BUCKETS 4096
#define LIVE_BUCKETS 8192 /* 64 KiB: chains stay short up to tens of thousands of live samples */
#define ARENA_CHUNK (256 * 1024)
#define PATH_CAP 4096

typedef struct site_s {
  struct site_s *next;
  uint64_t hash;
  uint32_t depth;
  _Atomic(size_t) live_count, live_bytes;   /* sampled blocks still live */
  _Atomic(size_t) total_count, total_bytes; /* every sampled block */
  void *pcs[];                              /* innermost first */
} site_t;

typedef struct live_s {
  struct live_s *next;
  uintptr_t addr;
  size_t size;
  size_t weight; /* the bytes it stands for, added to live_estimate (taken back as is) */
  site_t *site;
} live_t;

bool profile_sampling;
uint32_t profile_generation;
__thread uint8_t profile_tls_busy;
_Atomic(size_t) profile_live_blocks;

#define LIVE_SHARDS 64
typedef struct live_shard_s {
  pthread_mutex_t lock;
  live_t **buckets; /* LIVE_BUCKETS / LIVE_SHARDS */
  live_t *unused;   /* entries to reuse */
} __attribute__((aligned(64))) live_shard_t;

static pthread_mutex_t site_lock = PTHREAD_MUTEX_INITIALIZER;
static site_t **site_buckets; /* under site_lock, with the arena and the path */
static uint8_t *arena_next, *arena_end;
static char profile_path[PATH_CAP]; /* "" when none: nothing written at exit */
static unsigned growth_dumps;
static size_t next_growth_dump; /* live_estimate that triggers the next growth dump */
static live_shard_t shards[LIVE_SHARDS];
static _Atomic(size_t) live_estimate; /* estimated bytes the live samples stand for */
static _Atomic(int) shards_ready;
static bool primed;              /* backtrace's first call made outside malloc */
static uintptr_t own_lo, own_hi; /* Galleon's own code when it is a shared library */
static __thread uint64_t tls_rng;

/* ---- Arithmetic without libm ---- */

#define LN2 0.69314718055994530942

/* ln(u) for u in (0, 1]: u = 2^e m with m in [sqrt(1/2), sqrt(2)), then
 * ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172: seven odd terms of the
 * series, in Horner form, are exact to 1e-12 (sampling needs far less). */
static double log_unit(double u) {
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  int exponent = (int)((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52);
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.41421356237309504880) {
    m *= 0.5;
    exponent++;
  }
  double t = (m - 1) / (m + 1), t2 = t * t;
  double series = 1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 * (1.0 / 11 + t2 * (1.0 / 13))))));
  return exponent * LN2 + 2 * t * series;
}

/* exp(-x) for x >= 0: x = k ln2 + r with r in [0, ln2); exp(-r/8) by eight terms
 * of its series (|r/8| < 0.087: exact to 1e-13), cubed-squared back to exp(-r),
 * and 2^-k put in the exponent. */
static double exp_neg(double x) {
  if (!(x < 700)) return 0;
  int k = (int)(x * (1 / LN2));
  double r = (x - k * LN2) * 0.125;
  double e = 1 - r * (1 - r * (1.0 / 2 - r * (1.0 / 6 - r * (1.0 / 24 - r * (1.0 / 120 - r * (1.0 / 720 - r * (1.0 / 5040)))))));
  e *= e;
  e *= e;
  e *= e;
  uint64_t bits;
  memcpy(&bits, &e, sizeof bits);
  bits -= (uint64_t)k << 52; /* e is in (0.5, 1]: the result stays normal for k < 1000 */
  memcpy(&e, &bits, sizeof e);
  return e;
}

/* What `count` sampled blocks of `bytes` stand for: each block of average size s
 * was sampled with probability 1 - exp(-s / interval). */
static double unsample(size_t count, size_t bytes) {
  if (count == 0) return 0;
  double mean = (double)bytes / (double)count;
  double p = 1 - exp_neg(mean / (double)gl_options.profile_interval);
  return p > 0 ? (double)bytes / p : (double)bytes;
}

int64_t profile_next_interval(void) {
  uint64_t x = tls_rng;
  if (x == 0) x = os_random();
  x ^= x >> 12; /* xorshift64* */
  x ^= x << 25;
  x ^= x >> 27;
  tls_rng = x;
  x *= UINT64_C(2685821657736338717);
  double u = (double)((x >> 11) + 1) * 0x1p-53; /* (0, 1] */
  double gap = -log_unit(u) * (double)gl_options.profile_interval;
  if (gap > 0x1p62) gap = 0x1p62;
  return (int64_t)gap + 1;
}

bool profile_accept(size_t size, size_t charged) {
  if (size >= charged) return true;
  double interval = (double)gl_options.profile_interval;
  double want = 1 - exp_neg((double)size / interval), have = 1 - exp_neg((double)charged / interval);
  uint64_t x = tls_rng;
  if (x == 0) x = os_random();
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tls_rng = x;
  double u = (double)((x * UINT64_C(2685821657736338717)) >> 11) * 0x1p-53; /* [0, 1) */
  return u * have < want;
}

/* ---- Tables ---- */

static void *arena_alloc(size_t size) {
  size = gl_align_up(size, 16);
  if (arena_next == NULL || size > (size_t)(arena_end - arena_next)) {
    size_t chunk = size > ARENA_CHUNK ? gl_align_up(size, ARENA_CHUNK) : ARENA_CHUNK;
    uint8_t *mem = os_map(chunk);
    if (mem == NULL) return NULL;
    arena_next = mem;
    arena_end = mem + chunk;
  }
  void *p = arena_next;
  arena_next += size;
  return p;
}

/* Maps the tables on first use; site_lock held. */
static bool tables_ready(void) {
  if (site_buckets == NULL) __atomic_store_n(&site_buckets, os_map(SITE_BUCKETS * sizeof(site_t *)), __ATOMIC_RELEASE);
  if (site_buckets == NULL) return false;
  if (atomic_load_explicit(&shards_ready, memory_order_acquire)) return true;
  live_t **buckets = os_map(LIVE_BUCKETS * sizeof(live_t *));
  if (buckets == NULL) return false;
  for (size_t i = 0; i < LIVE_SHARDS; i++) {
    pthread_mutex_init(&shards[i].lock, NULL);
    shards[i].buckets = buckets + i * (LIVE_BUCKETS / LIVE_SHARDS);
    shards[i].unused = NULL;
  }
  atomic_store_explicit(&shards_ready, 1, memory_order_release);
  return true;
}

static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  return h;
}

static uint64_t stack_hash(void *const *pcs, int depth) {
  uint64_t h = (uint64_t)depth;
  for (int i = 0; i < depth; i++) h = mix(h ^ (uintptr_t)pcs[i]) + (uint64_t)i;
  return h;
}

static site_t *site_find(site_t *first, uint64_t hash, void *const *pcs, int depth) {
  for (site_t *s = first; s != NULL; s = __atomic_load_n(&s->next, __ATOMIC_ACQUIRE))
    if (s->hash == hash && s->depth == (uint32_t)depth && memcmp(s->pcs, pcs, (size_t)depth * sizeof(void *)) == 0)
      return s;
  return NULL;
}

/* The site of a stack.  Sites are never removed and each is published whole by a
 * release store of its bucket's head: a known stack is found without the lock. */
static site_t *site_get(void *const *pcs, int depth) {
  uint64_t hash = stack_hash(pcs, depth);
  site_t **buckets = __atomic_load_n(&site_buckets, __ATOMIC_ACQUIRE);
  if (buckets != NULL) {
    site_t *s = site_find(__atomic_load_n(&buckets[hash % SITE_BUCKETS], __ATOMIC_ACQUIRE), hash, pcs, depth);
    if (s != NULL) return s;
  }
  pthread_mutex_lock(&site_lock);
  site_t *s = NULL;
  if (tables_ready()) {
    site_t **bucket = &site_buckets[hash % SITE_BUCKETS];
    s = site_find(*bucket, hash, pcs, depth);
    if (s == NULL && (s = arena_alloc(sizeof(site_t) + (size_t)depth * sizeof(void *))) != NULL) {
      s->hash = hash;
      s->depth = (uint32_t)depth;
      memcpy(s->pcs, pcs, (size_t)depth * sizeof(void *));
      s->next = *bucket;
      __atomic_store_n(bucket, s, __ATOMIC_RELEASE);
    }
  }
  pthread_mutex_unlock(&site_lock);
  return s;
}

static live_shard_t *shard_of(uintptr_t addr) { return &shards[mix(addr) % LIVE_SHARDS]; }

static live_t **live_bucket(live_shard_t *shard, uintptr_t addr) {
  return &shard->buckets[(mix(addr) / LIVE_SHARDS) % (LIVE_BUCKETS / LIVE_SHARDS)];
}

/* Unlinks and returns the entry of addr, or NULL (the shard's lock held). */
static live_t *live_take(live_shard_t *shard, uintptr_t addr) {
  for (live_t **link = live_bucket(shard, addr); *link != NULL; link = &(*link)->next) {
    live_t *e = *link;
    if (e->addr == addr) {
      *link = e->next;
      return e;
    }
  }
  return NULL;
}

static void live_put(live_shard_t *shard, live_t *e) {
  live_t **bucket = live_bucket(shard, e->addr);
  e->next = *bucket;
  *bucket = e;
}

#define ADD(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
#define SUB(field, n) atomic_fetch_sub_explicit(&(field), (n), memory_order_relaxed)
#define GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* Returns the new estimate of live bytes. */
static size_t site_live_add(live_t *e) {
  ADD(e->site->live_count, 1);
  ADD(e->site->live_bytes, e->size);
  e->weight = (size_t)unsample(1, e->size);
  return ADD(live_estimate, e->weight) + e->weight;
}

static void site_live_sub(const live_t *e) {
  SUB(e->site->live_count, 1);
  SUB(e->site->live_bytes, e->size);
  SUB(live_estimate, e->weight);
}

/* ---- Stacks ---- */

/* The caller's stack, innermost first, without Galleon's own frames when Galleon
 * is a shared library (linked into the program, its frames stay: report tools
 * skip the allocator's names). */
/* Debug builds check the cached walker against glibc's backtrace() on every
 * sample.  Their first frames differ (each walk's own return address into
 * capture_stack; backtrace's list starts with os_backtrace and check_walk, and with
 * the interceptor's frame under a sanitizer): from the walk's second frame, found
 * among backtrace's first few, both must agree to the end. */
static GL_NOINLINE void check_walk(void *const *walked, int n) {
  if (n < 2) return;
  void *slow[PROFILE_MAX_DEPTH + 24];
  int m = os_backtrace(slow, PROFILE_MAX_DEPTH + 24);
  int at = 0;
  while (at < 6 && at < m && slow[at] != walked[1]) at++;
  if (at == 6 || at == m) gl_fatal("stack walk: its second frame is not in backtrace's, at", walked[1], NULL, NULL);
  for (int i = 1; i < n; i++)
    if (at + i - 1 >= m || walked[i] != slow[at + i - 1])
      gl_fatal("stack walk: a frame differs from backtrace's:", walked[i], " instead of ", at + i - 1 < m ? slow[at + i - 1] : NULL);
  if (n < PROFILE_MAX_DEPTH + 16 && at + n - 1 != m) gl_fatal("stack walk: not as deep as backtrace's, stack of", walked[0], NULL, NULL);
}

static int capture_stack(void **out) {
  void *raw[PROFILE_MAX_DEPTH + 16];
  int n = os_unwind(raw, PROFILE_MAX_DEPTH + 16);
  if (GL_DEBUG_CHECKS && n >= 0) check_walk(raw, n);
  if (n < 0) n = os_backtrace(raw, PROFILE_MAX_DEPTH + 16);
  int first = 0;
  if (own_hi != 0)
    while (first < n && (uintptr_t)raw[first] >= own_lo && (uintptr_t)raw[first] < own_hi) first++;
  int depth = n - first;
  if (depth > PROFILE_MAX_DEPTH) depth = PROFILE_MAX_DEPTH;
  memcpy(out, raw + first, (size_t)depth * sizeof(void *));
  return depth;
}

/* ---- Recording ---- */

static void dump_growth(size_t estimate, size_t step);

void profile_record(void *p, size_t size) {
  if (p == NULL) return;
  uint8_t busy = profile_tls_busy;
  profile_tls_busy = 1;
  void *pcs[PROFILE_MAX_DEPTH];
  int depth = capture_stack(pcs);
  site_t *site = site_get(pcs, depth);
  if (site == NULL) {
    profile_tls_busy = busy;
    return;
  }
  live_shard_t *shard = shard_of((uintptr_t)p);
  pthread_mutex_lock(&shard->lock);
  live_t *e = shard->unused;
  if (e == NULL) {
    /* The arena is site_lock's: not taken under a shard's lock. */
    pthread_mutex_unlock(&shard->lock);
    pthread_mutex_lock(&site_lock);
    e = arena_alloc(sizeof *e);
    pthread_mutex_unlock(&site_lock);
    if (e == NULL) {
      profile_tls_busy = busy;
      return;
    }
    pthread_mutex_lock(&shard->lock);
  } else {
    shard->unused = e->next;
  }
  e->addr = (uintptr_t)p;
  e->size = size;
  e->site = site;
  size_t estimate = site_live_add(e);
  live_put(shard, e);
  pthread_mutex_unlock(&shard->lock);
  ADD(site->total_count, 1);
  ADD(site->total_bytes, size);
  ADD(profile_live_blocks, 1);
  long step = gl_options.profile_dump_mb;
  if (step > 0 && estimate >= __atomic_load_n(&next_growth_dump, __ATOMIC_RELAXED)) dump_growth(estimate, (size_t)step << 20);
  profile_tls_busy = busy;
}

void profile_forget(const void *p) {
  if (!atomic_load_explicit(&shards_ready, memory_order_acquire)) return;
  live_shard_t *shard = shard_of((uintptr_t)p);
  pthread_mutex_lock(&shard->lock);
  live_t *e = live_take(shard, (uintptr_t)p);
  if (e != NULL) {
    site_live_sub(e);
    e->next = shard->unused;
    shard->unused = e;
    SUB(profile_live_blocks, 1);
  }
  pthread_mutex_unlock(&shard->lock);
}

void profile_moved(const void *old, void *p, size_t size) {
  if (!atomic_load_explicit(&shards_ready, memory_order_acquire)) return;
  live_shard_t *from = shard_of((uintptr_t)old);
  pthread_mutex_lock(&from->lock);
  live_t *e = live_take(from, (uintptr_t)old);
  pthread_mutex_unlock(&from->lock);
  if (e == NULL) return;
  site_live_sub(e);
  e->addr = (uintptr_t)p;
  e->size = size;
  site_live_add(e);
  live_shard_t *to = shard_of((uintptr_t)p);
  pthread_mutex_lock(&to->lock);
  live_put(to, e);
  pthread_mutex_unlock(&to->lock);
}

/* ---- Writing ---- */

typedef struct writer_s {
  int fd;
  size_t used;
  char buf[8192];
} writer_t;

static void writer_flush(writer_t *w) {
  if (w->used > 0) os_write(w->fd, w->buf, w->used);
  w->used = 0;
}

static void put(writer_t *w, const char *text, size_t len) {
  if (w->used + len > sizeof w->buf) writer_flush(w);
  if (len > sizeof w->buf) {
    os_write(w->fd, text, len);
    return;
  }
  memcpy(w->buf + w->used, text, len);
  w->used += len;
}

static void put_str(writer_t *w, const char *text) { put(w, text, strlen(text)); }

static void put_dec(writer_t *w, size_t value) {
  char line[32];
  put(w, line, gl_fmt_dec(line, 0, sizeof line, value));
}

static void put_hex(writer_t *w, uintptr_t value) {
  char line[32];
  put(w, line, gl_fmt_hex(line, 0, sizeof line, value));
}

/* "live_count: live_bytes [total_count: total_bytes]", gperftools' counts. */
static void put_counts(writer_t *w, size_t lc, size_t lb, size_t tc, size_t tb) {
  put_dec(w, lc);
  put_str(w, ": ");
  put_dec(w, lb);
  put_str(w, " [");
  put_dec(w, tc);
  put_str(w, ": ");
  put_dec(w, tb);
  put_str(w, "]");
}

#define FOR_EACH_SITE(s)                                 \
  for (size_t b_ = 0; b_ < SITE_BUCKETS; b_++)           \
    for (site_t *s = site_buckets[b_]; s != NULL; s = s->next)

/* The gperftools heap profile (lock held). */
static void write_heap_profile(writer_t *w) {
  size_t lc = 0, lb = 0, tc = 0, tb = 0;
  FOR_EACH_SITE(s) {
    lc += GET(s->live_count);
    lb += GET(s->live_bytes);
    tc += GET(s->total_count);
    tb += GET(s->total_bytes);
  }
  put_str(w, "heap profile: ");
  put_counts(w, lc, lb, tc, tb);
  put_str(w, " @ heap_v2/");
  put_dec(w, (size_t)gl_options.profile_interval);
  put_str(w, "\n");
  FOR_EACH_SITE(s) {
    put_counts(w, GET(s->live_count), GET(s->live_bytes), GET(s->total_count), GET(s->total_bytes));
    put_str(w, " @");
    for (uint32_t i = 0; i < s->depth; i++) {
      put_str(w, " ");
      put_hex(w, (uintptr_t)s->pcs[i]);
    }
    put_str(w, "\n");
  }
  put_str(w, "\nMAPPED_LIBRARIES:\n");
  writer_flush(w);
  os_copy_file("/proc/self/maps", w->fd);
}

/* A frame's name: its dynamic symbol, else object+0xOFF (base name), else the
 * address. */
static void put_frame(writer_t *w, const void *pc) {
  const char *symbol, *object;
  uintptr_t offset;
  os_symbolize(pc, &symbol, &object, &offset);
  if (symbol != NULL) {
    put_str(w, symbol);
    return;
  }
  if (object != NULL && object[0] != '\0') {
    const char *base = strrchr(object, '/');
    put_str(w, base ? base + 1 : object);
    put_str(w, "+");
  }
  put_hex(w, offset);
}

/* Collapsed stacks of the live samples, outermost frame first (lock held). */
static void write_collapsed(writer_t *w) {
  FOR_EACH_SITE(s) {
    if (GET(s->live_count) == 0) continue;
    for (uint32_t i = s->depth; i-- > 0;) {
      put_frame(w, s->pcs[i]);
      if (i > 0) put_str(w, ";");
    }
    if (s->depth == 0) put_str(w, "[unknown]");
    put_str(w, " ");
    put_dec(w, (size_t)unsample(GET(s->live_count), GET(s->live_bytes)));
    put_str(w, "\n");
  }
}

/* Writes one file with `write` (lock held).  0, or -1 with errno. */
static int write_file(const char *path, void (*write)(writer_t *)) {
  static writer_t w; /* under the lock: 8 KiB off the stack */
  w.fd = os_file_create(path);
  if (w.fd < 0) {
    errno = -w.fd;
    return -1;
  }
  w.used = 0;
  write(&w);
  writer_flush(&w);
  os_file_close(w.fd);
  return 0;
}

/* Writes path (the heap profile) and path.collapsed; lock held.  0, or -1 with
 * errno. */
static int dump_locked(const char *path) {
  if (!tables_ready()) {
    errno = ENOMEM;
    return -1;
  }
  char collapsed[PATH_CAP + 16];
  size_t n = gl_fmt_str(collapsed, 0, sizeof collapsed, path);
  n = gl_fmt_str(collapsed, n, sizeof collapsed, ".collapsed");
  collapsed[n] = '\0';
  if (write_file(path, write_heap_profile) != 0) return -1;
  return write_file(collapsed, write_collapsed);
}

int profile_dump(const char *path) {
  uint8_t busy = profile_tls_busy;
  profile_tls_busy = 1;
  pthread_mutex_lock(&site_lock);
  int rc;
  if (path == NULL) path = profile_path;
  if (path[0] == '\0' || strlen(path) >= PATH_CAP) {
    errno = EINVAL;
    rc = -1;
  } else {
    rc = dump_locked(path);
  }
  pthread_mutex_unlock(&site_lock);
  profile_tls_busy = busy;
  return rc;
}

/* PATH.NNNN.heap, gperftools' name for a growth dump: live memory (estimate) grew
 * past the trigger, which moves `step` above it. */
static void dump_growth(size_t estimate, size_t step) {
  char path[PATH_CAP + 32];
  pthread_mutex_lock(&site_lock);
  if (profile_path[0] != '\0' && estimate >= next_growth_dump) { /* not done by another thread */
    __atomic_store_n(&next_growth_dump, estimate + step, __ATOMIC_RELAXED);
    unsigned seq = ++growth_dumps;
    size_t n = gl_fmt_str(path, 0, sizeof path, profile_path);
    n = gl_fmt_str(path, n, sizeof path, ".");
    for (unsigned d = 1000; d > 0; d /= 10) path[n++] = (char)('0' + (seq / d) % 10);
    n = gl_fmt_str(path, n, sizeof path, ".heap");
    path[n] = '\0';
    dump_locked(path);
  }
  pthread_mutex_unlock(&site_lock);
}

/* ---- The leak report ---- */

static void put_site_frames(writer_t *w, const site_t *s, uint32_t frames) {
  if (s->depth == 0) put_str(w, "[unknown]");
  for (uint32_t i = 0; i < s->depth && i < frames; i++) {
    if (i > 0) put_str(w, " <- ");
    put_frame(w, s->pcs[i]);
  }
}

/* On stderr: the live samples by site, largest first, top 20 (lock held). */
static void leak_report_locked(void) {
  static writer_t w;
  w.fd = 2;
  w.used = 0;
  size_t sites = 0, samples = 0;
  double total = 0;
  FOR_EACH_SITE(s) {
    if (GET(s->live_count) == 0) continue;
    sites++;
    samples += GET(s->live_count);
    total += unsample(GET(s->live_count), GET(s->live_bytes));
  }
  put_str(&w, "galleon: leak report: ");
  put_dec(&w, (size_t)total);
  put_str(&w, " bytes estimated live at exit, from ");
  put_dec(&w, samples);
  put_str(&w, " sampled blocks at ");
  put_dec(&w, sites);
  put_str(&w, " sites (one sample per ");
  put_dec(&w, (size_t)gl_options.profile_interval);
  put_str(&w, " bytes on average)\n");
  /* Top 20 by estimated bytes: repeated selection, no sorting memory needed. */
  double last = -1;
  const site_t *last_site = NULL;
  for (int rank = 0; rank < 20; rank++) {
    const site_t *best = NULL;
    double best_bytes = -1;
    bool passed_last = last_site == NULL;
    FOR_EACH_SITE(s) {
      if (GET(s->live_count) == 0) continue;
      double est = unsample(GET(s->live_count), GET(s->live_bytes));
      /* The order: bytes descending, then table order; skip what was printed. */
      if (last_site != NULL) {
        if (s == last_site) {
          passed_last = true;
          continue;
        }
        if (est > last || (est == last && !passed_last)) continue;
      }
      if (est > best_bytes) {
        best = s;
        best_bytes = est;
      }
    }
    if (best == NULL) break;
    put_str(&w, "galleon: leak: ");
    put_dec(&w, (size_t)best_bytes);
    put_str(&w, " bytes in ");
    put_dec(&w, (size_t)(best_bytes * (double)GET(best->live_count) / (double)(GET(best->live_bytes) ? GET(best->live_bytes) : 1)));
    put_str(&w, " blocks at ");
    put_site_frames(&w, best, 4);
    put_str(&w, "\n");
    last = best_bytes;
    last_site = best;
  }
  writer_flush(&w);
}

/* ---- Start, stop, exit, fork ---- */

int profile_start(const char *path) {
  if (path == NULL) path = "";
  if (strlen(path) >= PATH_CAP) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (!primed) {
    /* Outside malloc: backtrace's first call loads libgcc_s, which allocates. */
    uint8_t busy = profile_tls_busy;
    profile_tls_busy = 1;
    os_backtrace_prime();
    bool is_program;
    if (os_object_range((const void *)profile_record, &own_lo, &own_hi, &is_program) && is_program)
      own_lo = own_hi = 0; /* linked into the program: its frames and Galleon's share a range */
    primed = true;
    profile_tls_busy = busy;
  }
  pthread_mutex_lock(&site_lock);
  bool ok = tables_ready();
  if (ok) {
    memcpy(profile_path, path, strlen(path) + 1);
    if (next_growth_dump == 0) __atomic_store_n(&next_growth_dump, (size_t)gl_options.profile_dump_mb << 20, __ATOMIC_RELAXED);
    __atomic_store_n(&profile_generation, profile_generation + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&profile_sampling, true, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&site_lock);
  if (!ok) {
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

void profile_start_from_env(void) {
  const char *path = os_getenv("GALLEON_PROFILE");
  if ((path != NULL && path[0] != '\0') || gl_options.profile_leaks) profile_start(path);
}

void profile_stop(void) { __atomic_store_n(&profile_sampling, false, __ATOMIC_RELAXED); }

__attribute__((destructor)) static void profile_at_exit(void) {
  if (!primed) return;
  profile_tls_busy = 1;
  pthread_mutex_lock(&site_lock);
  if (profile_path[0] != '\0') dump_locked(profile_path);
  if (gl_options.profile_leaks) leak_report_locked();
  pthread_mutex_unlock(&site_lock);
  profile_tls_busy = 0;
}

void profile_fork_child(void) {
  bool whole = gl_mutex_was_free_at_fork(&site_lock);
  if (atomic_load_explicit(&shards_ready, memory_order_acquire))
    for (size_t i = 0; i < LIVE_SHARDS; i++)
      if (!gl_mutex_was_free_at_fork(&shards[i].lock)) whole = false;
  if (!whole) {
    /* The tables may be half-changed: drop them (their memory is lost). */
    __atomic_store_n(&site_buckets, NULL, __ATOMIC_RELAXED);
    atomic_store_explicit(&shards_ready, 0, memory_order_relaxed);
    arena_next = arena_end = NULL;
    atomic_store_explicit(&live_estimate, 0, memory_order_relaxed);
    atomic_store_explicit(&profile_live_blocks, 0, memory_order_relaxed);
    __atomic_store_n(&profile_sampling, false, __ATOMIC_RELAXED);
    profile_path[0] = '\0';
    return;
  }
  if (profile_path[0] != '\0') {
    /* The child writes PATH.PID at its exit, not over its parent's file. */
    size_t n = strlen(profile_path);
    if (n + 24 < PATH_CAP) {
      n = gl_fmt_str(profile_path, n, PATH_CAP, ".");
      n = gl_fmt_dec(profile_path, n, PATH_CAP, (size_t)os_getpid());
      profile_path[n] = '\0';
    }
  }
}
