/* os_unwind.c: the heap profiler's stack walker (OS layer; contract in os.h).
 *
 * glibc's backtrace() goes through libgcc's DWARF unwinder, which for every frame
 * finds the code's FDE, then interprets its call-frame program from the start of
 * the function up to the return address: about 1,500 instructions a frame, 15,000
 * for a sampled malloc nine frames deep.  The answer for a given return address is
 * always the same, so this walker computes it once -- where the caller's frame
 * (CFA) is, where the return address and the saved rbp lie -- and keeps it in a
 * cache keyed by the return address.  A walk is then a lookup and three loads a
 * frame.
 *
 * Only what x86-64 code generators emit is understood: a CFA at rsp or rbp plus an
 * offset, rbp and the return address saved at offsets from it.  Anything else (a
 * CFA expression, a signal frame, a register rule this walker does not follow)
 * makes os_unwind() answer -1, and os_backtrace() takes the whole stack from
 * glibc's backtrace() instead: always correct, fast in the usual case.  No FDE for
 * a return address ends the walk, as it ends libgcc's.
 *
 * Nothing here allocates or takes a lock: the cache is a fixed table of slots,
 * each guarded by a sequence number (readers retry nothing: a torn read is a miss),
 * and only one thread at a time fills slots (the others compute without caching).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdatomic.h>
#include <string.h>

#include "os.h"

#if defined(__x86_64__) && defined(__GLIBC__) && __GLIBC_PREREQ(2, 35) /* _dl_find_object */

/* ---- The rule for one return address, packed in 64 bits ----
 *  bits 0-1   kind: RULE_NONE (not understood), RULE_FRAME, RULE_OUTERMOST
 *  bit  2     the CFA is rbp + offset (else rsp + offset)
 *  bit  3     the caller's rbp is saved at CFA + rbp_off (else rbp is unchanged)
 *  bits 8-31  the CFA offset (0 .. 2^24 - 1)
 *  bits 32-47 rbp_off, bits 48-63 ra_off: signed offsets from the CFA */
enum { RULE_NONE = 0, RULE_FRAME = 1, RULE_OUTERMOST = 2 };
#define RULE_CFA_RBP ((uint64_t)1 << 2)
#define RULE_RBP_SAVED ((uint64_t)1 << 3)

static uint64_t rule_pack(bool cfa_rbp, int64_t cfa_off, bool rbp_saved, int64_t rbp_off, int64_t ra_off) {
  if (cfa_off < 0 || cfa_off >= ((int64_t)1 << 24) || rbp_off < INT16_MIN || rbp_off > INT16_MAX ||
      ra_off < INT16_MIN || ra_off > INT16_MAX)
    return RULE_NONE;
  return RULE_FRAME | (cfa_rbp ? RULE_CFA_RBP : 0) | (rbp_saved ? RULE_RBP_SAVED : 0) | ((uint64_t)cfa_off << 8) |
         ((uint64_t)(uint16_t)rbp_off << 32) | ((uint64_t)(uint16_t)ra_off << 48);
}

/* ---- Reading .eh_frame ---- */

typedef struct reader_s {
  const uint8_t *p, *end;
  bool bad;
} reader_t;

static uint64_t read_uleb(reader_t *r) {
  uint64_t value = 0;
  for (unsigned shift = 0; r->p < r->end; shift += 7) {
    uint8_t byte = *r->p++;
    if (shift < 64) value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  r->bad = true;
  return 0;
}

static int64_t read_sleb(reader_t *r) {
  uint64_t value = 0;
  unsigned shift = 0;
  for (;;) {
    if (r->p >= r->end) {
      r->bad = true;
      return 0;
    }
    uint8_t byte = *r->p++;
    if (shift < 64) value |= (uint64_t)(byte & 0x7f) << shift;
    shift += 7;
    if (!(byte & 0x80)) {
      if (shift < 64 && (byte & 0x40)) value |= ~(uint64_t)0 << shift;
      return (int64_t)value;
    }
  }
}

static uint64_t read_fixed(reader_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    r->bad = true;
    return 0;
  }
  uint64_t value = 0;
  memcpy(&value, r->p, n); /* little-endian */
  r->p += n;
  return value;
}

/* A pointer in one of the DW_EH_PE encodings compilers use for code addresses:
 * absolute or pc-relative, 2, 4 or 8 bytes, signed or not.  `app` false reads
 * only the value (an FDE's address range). */
static uintptr_t read_encoded(reader_t *r, uint8_t encoding, bool app) {
  const uint8_t *field = r->p;
  uint64_t v;
  switch (encoding & 0x0f) {
    case 0x00: v = read_fixed(r, 8); break;                              /* absptr */
    case 0x02: v = read_fixed(r, 2); break;                              /* udata2 */
    case 0x03: v = read_fixed(r, 4); break;                              /* udata4 */
    case 0x04: case 0x0c: v = read_fixed(r, 8); break;                   /* (s)data8 */
    case 0x0a: v = (uint64_t)(int64_t)(int16_t)read_fixed(r, 2); break;  /* sdata2 */
    case 0x0b: v = (uint64_t)(int64_t)(int32_t)read_fixed(r, 4); break;  /* sdata4 */
    default: r->bad = true; return 0;
  }
  if (!app) return (uintptr_t)v;
  switch (encoding & 0x70) {
    case 0x00: return (uintptr_t)v;
    case 0x10: return (uintptr_t)field + (uintptr_t)v;
    default: r->bad = true; return 0; /* datarel, textrel, funcrel: not for code */
  }
}

/* ---- The call-frame program ---- */

#define REG_RBP 6
#define REG_RSP 7

typedef struct row_s {
  unsigned cfa_reg;
  int64_t cfa_off;
  uint8_t rbp_how, ra_how; /* HOW_* */
  int64_t rbp_off, ra_off;
} row_t;

enum { HOW_SAME = 0, HOW_OFFSET, HOW_UNDEFINED, HOW_UNKNOWN };

typedef struct cie_s {
  uint64_t code_align;
  int64_t data_align;
  unsigned ra_reg;
  uint8_t fde_encoding;
  bool has_z;
  const uint8_t *program, *program_end;
} cie_t;

static void row_set(row_t *row, unsigned reg, unsigned ra_reg, uint8_t how, int64_t off) {
  if (reg == REG_RBP) {
    row->rbp_how = how;
    row->rbp_off = off;
  } else if (reg == ra_reg) {
    row->ra_how = how;
    row->ra_off = off;
  } /* other registers (rsp included: the caller's rsp is the CFA) do not matter here */
}

/* Runs a call-frame program from `loc` until the row for `target` is complete.
 * `initial` is the CIE's row (for DW_CFA_restore); NULL while running the CIE. */
static bool run_program(const cie_t *cie, reader_t *r, uintptr_t loc, uintptr_t target, row_t *row,
                        const row_t *initial) {
  row_t stack[8];
  unsigned depth = 0;
  while (r->p < r->end && !r->bad) {
    uint8_t op = *r->p++;
    uint64_t reg, delta = 0;
    switch (op >> 6) {
      case 1: delta = op & 0x3f; goto advance;                      /* advance_loc */
      case 2: row_set(row, op & 0x3f, cie->ra_reg, HOW_OFFSET, (int64_t)read_uleb(r) * cie->data_align); continue;
      case 3:                                                        /* restore */
        if (initial == NULL) return false;
        reg = op & 0x3f;
        goto restore;
    }
    switch (op) {
      case 0x00: continue;                                           /* nop */
      case 0x02: delta = read_fixed(r, 1); goto advance;
      case 0x03: delta = read_fixed(r, 2); goto advance;
      case 0x04: delta = read_fixed(r, 4); goto advance;
      case 0x05:                                                     /* offset_extended */
        reg = read_uleb(r);
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_OFFSET, (int64_t)read_uleb(r) * cie->data_align);
        continue;
      case 0x11:                                                     /* offset_extended_sf */
        reg = read_uleb(r);
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_OFFSET, read_sleb(r) * cie->data_align);
        continue;
      case 0x06:                                                     /* restore_extended */
        if (initial == NULL) return false;
        reg = read_uleb(r);
        goto restore;
      case 0x07: row_set(row, (unsigned)read_uleb(r), cie->ra_reg, HOW_UNDEFINED, 0); continue;
      case 0x08: row_set(row, (unsigned)read_uleb(r), cie->ra_reg, HOW_SAME, 0); continue;
      case 0x09:                                                     /* register */
        reg = read_uleb(r);
        read_uleb(r);
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_UNKNOWN, 0);
        continue;
      case 0x0a:                                                     /* remember_state */
        if (depth == 8) return false;
        stack[depth++] = *row;
        continue;
      case 0x0b:                                                     /* restore_state */
        if (depth == 0) return false;
        *row = stack[--depth];
        continue;
      case 0x0c: row->cfa_reg = (unsigned)read_uleb(r); row->cfa_off = (int64_t)read_uleb(r); continue;
      case 0x12:                                                     /* def_cfa_sf */
        row->cfa_reg = (unsigned)read_uleb(r);
        row->cfa_off = read_sleb(r) * cie->data_align;
        continue;
      case 0x0d: row->cfa_reg = (unsigned)read_uleb(r); continue;
      case 0x0e: row->cfa_off = (int64_t)read_uleb(r); continue;
      case 0x13: row->cfa_off = read_sleb(r) * cie->data_align; continue;
      case 0x0f: return false;                                       /* def_cfa_expression */
      case 0x10: case 0x16: {                                        /* (val_)expression */
        reg = read_uleb(r);
        uint64_t length = read_uleb(r);
        if (length > (uint64_t)(r->end - r->p)) return false;
        r->p += length;
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_UNKNOWN, 0);
        continue;
      }
      case 0x14: case 0x15:                                          /* val_offset(_sf) */
        reg = read_uleb(r);
        if (op == 0x14) read_uleb(r); else read_sleb(r);
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_UNKNOWN, 0);
        continue;
      case 0x2e: read_uleb(r); continue;                             /* GNU_args_size */
      case 0x2f:                                                     /* GNU_negative_offset_extended */
        reg = read_uleb(r);
        row_set(row, (unsigned)reg, cie->ra_reg, HOW_OFFSET, -(int64_t)read_uleb(r) * cie->data_align);
        continue;
      default: return false;                                         /* set_loc, vendor ops */
    }
  advance:
    loc += delta * cie->code_align;
    if (loc > target) return true;
    continue;
  restore:
    if (reg == REG_RBP) {
      row->rbp_how = initial->rbp_how;
      row->rbp_off = initial->rbp_off;
    } else if (reg == cie->ra_reg) {
      row->ra_how = initial->ra_how;
      row->ra_off = initial->ra_off;
    }
  }
  return !r->bad;
}

/* The CIE at `at`: false for what this walker does not read (signal frames, the
 * old "eh" augmentation, 64-bit lengths). */
static bool parse_cie(const uint8_t *at, cie_t *cie) {
  uint32_t length;
  memcpy(&length, at, 4);
  uint32_t id;
  memcpy(&id, at + 4, 4);
  if (length == 0 || length == 0xffffffffu || id != 0) return false;
  reader_t r = {at + 8, at + 4 + length, false};
  uint8_t version = (uint8_t)read_fixed(&r, 1);
  const char *aug = (const char *)r.p;
  size_t aug_len = strnlen(aug, (size_t)(r.end - r.p));
  r.p += aug_len + 1;
  if (version != 1 && version != 3) return false;
  cie->code_align = read_uleb(&r);
  cie->data_align = read_sleb(&r);
  cie->ra_reg = version == 1 ? (unsigned)read_fixed(&r, 1) : (unsigned)read_uleb(&r);
  cie->fde_encoding = 0; /* absptr */
  cie->has_z = aug[0] == 'z';
  if (cie->has_z) {
    uint64_t data_len = read_uleb(&r);
    if (r.bad || data_len > (uint64_t)(r.end - r.p)) return false;
    reader_t data = {r.p, r.p + data_len, false};
    for (size_t i = 1; i < aug_len; i++) {
      if (aug[i] == 'R') cie->fde_encoding = (uint8_t)read_fixed(&data, 1);
      else if (aug[i] == 'L') read_fixed(&data, 1);
      else if (aug[i] == 'P') read_encoded(&data, (uint8_t)read_fixed(&data, 1) & 0x0f, false);
      else return false; /* 'S' (signal frame) and unknown letters */
    }
    r.p += data_len;
  } else if (aug[0] != '\0') {
    return false;
  }
  cie->program = r.p;
  cie->program_end = r.end;
  return !r.bad;
}

/* The FDE covering `pc` through the object's .eh_frame_hdr search table, or NULL. */
static const uint8_t *find_fde(uintptr_t pc) {
  struct dl_find_object found;
  if (_dl_find_object((void *)pc, &found) != 0 || found.dlfo_eh_frame == NULL) return NULL;
  const uint8_t *hdr = found.dlfo_eh_frame;
  /* version 1; the table as (int32 start, int32 FDE) pairs relative to hdr. */
  if (hdr[0] != 1 || hdr[2] != 0x03 || hdr[3] != 0x3b || (hdr[1] & 0x0f) != 0x0b) return NULL;
  uint32_t count;
  memcpy(&count, hdr + 8, 4);
  const int32_t *table = (const int32_t *)(hdr + 12);
  if (count == 0 || pc < (uintptr_t)hdr + table[0]) return NULL;
  uint32_t lo = 0, hi = count; /* the last entry whose start <= pc */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)hdr + table[2 * mid] <= pc) lo = mid;
    else hi = mid;
  }
  return hdr + table[2 * lo + 1];
}

/* The rule for a return address (or the walker's own pc): where the caller's CFA,
 * rbp and return address are.  `pc` - 1 is looked up: a return address follows
 * its call, which may be a function's last instruction. */
static uint64_t rule_compute(uintptr_t pc) {
  uintptr_t target = pc - 1;
  const uint8_t *fde = find_fde(target);
  if (fde == NULL) return RULE_OUTERMOST;
  uint32_t length;
  int32_t cie_delta;
  memcpy(&length, fde, 4);
  memcpy(&cie_delta, fde + 4, 4);
  if (length == 0 || length == 0xffffffffu || cie_delta <= 0) return RULE_NONE;
  cie_t cie;
  if (!parse_cie(fde + 4 - cie_delta, &cie)) return RULE_NONE;
  reader_t r = {fde + 8, fde + 4 + length, false};
  uintptr_t start = read_encoded(&r, cie.fde_encoding, true);
  uintptr_t range = read_encoded(&r, cie.fde_encoding, false);
  if (r.bad || target < start || target - start >= range) return RULE_OUTERMOST;
  if (cie.has_z) {
    uint64_t skip = read_uleb(&r);
    if (skip > (uint64_t)(r.end - r.p)) return RULE_NONE;
    r.p += skip;
  }
  row_t row = {REG_RSP, 8, HOW_SAME, HOW_UNKNOWN, 0, 0};
  reader_t cie_program = {cie.program, cie.program_end, false};
  if (!run_program(&cie, &cie_program, start, UINTPTR_MAX, &row, NULL)) return RULE_NONE;
  row_t initial = row;
  if (!run_program(&cie, &r, start, target, &row, &initial)) return RULE_NONE;
  if (row.ra_how == HOW_UNDEFINED) return RULE_OUTERMOST;
  if ((row.cfa_reg != REG_RSP && row.cfa_reg != REG_RBP) || row.ra_how != HOW_OFFSET ||
      (row.rbp_how != HOW_SAME && row.rbp_how != HOW_OFFSET))
    return RULE_NONE;
  return rule_pack(row.cfa_reg == REG_RBP, row.cfa_off, row.rbp_how == HOW_OFFSET, row.rbp_off, row.ra_off);
}

/* ---- The cache ---- */

#define CACHE_SLOTS 8192 /* 192 KiB of zero pages; touched as return addresses arrive */

typedef struct slot_s {
  _Atomic uint64_t seq; /* odd while being written */
  _Atomic uintptr_t pc;
  _Atomic uint64_t rule;
} slot_t;

static slot_t rule_cache[CACHE_SLOTS];
static atomic_flag cache_writer = ATOMIC_FLAG_INIT;

static slot_t *slot_of(uintptr_t pc) {
  uint64_t h = (uint64_t)pc * 0x9e3779b97f4a7c15ull;
  return &rule_cache[h >> (64 - 13)];
}

/* A seqlock without fences (ThreadSanitizer has none): the writer's release
 * stores put the odd sequence number before the slot's words, the reader's
 * acquire loads keep its second look at the number after them.  The writer holds
 * cache_writer. */
static void slot_write(slot_t *slot, uintptr_t pc, uint64_t rule) {
  /* Read again under the flag: the number only grows, so no reader can match its
   * first and second look across a whole write. */
  uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_relaxed) | 1;
  atomic_store_explicit(&slot->seq, seq, memory_order_relaxed);
  atomic_store_explicit(&slot->pc, pc, memory_order_release);
  atomic_store_explicit(&slot->rule, rule, memory_order_release);
  atomic_store_explicit(&slot->seq, seq + 1, memory_order_release);
}

static uint64_t rule_of(uintptr_t pc, bool use_cache) {
  if (!use_cache) return rule_compute(pc);
  slot_t *slot = slot_of(pc);
  uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
  uintptr_t cached_pc = atomic_load_explicit(&slot->pc, memory_order_acquire);
  uint64_t rule = atomic_load_explicit(&slot->rule, memory_order_acquire);
  if (cached_pc == pc && !(seq & 1) && atomic_load_explicit(&slot->seq, memory_order_relaxed) == seq)
    return rule;
  rule = rule_compute(pc);
  /* One writer at a time; a thread that finds the flag taken (or a fork child
   * whose parent's writer was caught mid-write) simply does not cache. */
  if (!atomic_flag_test_and_set_explicit(&cache_writer, memory_order_acquire)) {
    slot_write(slot, pc, rule);
    atomic_flag_clear_explicit(&cache_writer, memory_order_release);
  }
  return rule;
}

/* ---- Objects unloaded ----
 * A cached rule belongs to the code at its address; after a dlclose other code
 * may be loaded there.  dl_iterate_phdr's count of objects ever unloaded
 * (dlpi_subs, read from its first object) is looked at before each walk, and when
 * it moved the cache is emptied before it is used again, as libgcc once checked
 * its FDE cache.  A walk cannot race with an unload that matters: the code on its
 * own stack was loaded, so any unload before it was done, before the walk began. */
static _Atomic(unsigned long long) cache_subs;

static int read_subs(struct dl_phdr_info *info, size_t size, void *data) {
  if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs)
    *(unsigned long long *)data = info->dlpi_subs;
  return 1;
}

/* Whether this walk may use the cache (false while another thread empties it). */
static bool cache_current(void) {
  unsigned long long subs = 0;
  dl_iterate_phdr(read_subs, &subs);
  if (subs == atomic_load_explicit(&cache_subs, memory_order_acquire)) return true;
  if (atomic_flag_test_and_set_explicit(&cache_writer, memory_order_acquire)) return false;
  for (size_t i = 0; i < CACHE_SLOTS; i++)
    if (atomic_load_explicit(&rule_cache[i].pc, memory_order_relaxed) != 0) slot_write(&rule_cache[i], 0, RULE_NONE);
  atomic_store_explicit(&cache_subs, subs, memory_order_release);
  atomic_flag_clear_explicit(&cache_writer, memory_order_release);
  return true;
}

/* ---- The walk ---- */

/* Not instrumented by ASan: it reads other frames' saved rbp and return address. */
__attribute__((no_sanitize_address)) GL_NOINLINE int os_unwind(void **pcs, int max) {
  int saved_errno = errno;
  bool use_cache = cache_current();
  errno = saved_errno;
  uintptr_t pc, sp, fp;
  __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(pc), "=r"(sp), "=r"(fp));
  int n = 0;
  while (n < max) {
    uint64_t rule = rule_of(pc, use_cache);
    unsigned kind = rule & 3;
    if (kind == RULE_OUTERMOST) break;
    if (kind != RULE_FRAME) return -1;
    uintptr_t cfa = ((rule & RULE_CFA_RBP) ? fp : sp) + ((rule >> 8) & 0xffffff);
    /* The caller's frame lies above this one; anything else is a stack this walker
     * misread (an rbp that is not a frame pointer): hand it to backtrace(). */
    if (cfa <= sp || cfa - sp > ((uintptr_t)1 << 24) || (cfa & 7) != 0) return -1;
    uintptr_t ra = *(const uintptr_t *)(cfa + (int16_t)(rule >> 48));
    if (rule & RULE_RBP_SAVED) fp = *(const uintptr_t *)(cfa + (int16_t)(rule >> 32));
    sp = cfa;
    if (ra == 0) break;
    pcs[n++] = (void *)ra;
    pc = ra;
  }
  return n;
}

#else

int os_unwind(void **pcs, int max) {
  (void)pcs;
  (void)max;
  return -1;
}

#endif
