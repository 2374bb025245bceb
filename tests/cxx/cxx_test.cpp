/* cxx_test.cpp: C++ programs call Galleon's operator new and operator delete
 * (src/override_new.c) directly, with the standard's semantics.
 *
 * Built three ways (tests/cxx/CMakeLists.txt): linked with libgalleon.so, linked
 * with libgalleon.a (TEST_CXX_STATIC), and not linked with Galleon at all, run under
 * LD_PRELOAD=libgalleon.so (TEST_PRELOAD: the galleon_* calls go through dlsym).
 * Checks:
 *  - every operator new/delete symbol the program can bind resolves to the object
 *    that holds Galleon (dladdr), not to libstdc++'s wrapper, and so does the
 *    address of ::operator new the program itself takes;
 *  - every form of new returns a block Galleon owns, of at least the size asked,
 *    and every form of delete (plain, sized, nothrow, aligned, sized aligned) gives
 *    it back (Galleon's in_use count returns to where it was);
 *  - new(0) is unique and non-null; delete(nullptr) in all forms is a no-op;
 *  - aligned new (operator new(n, align_val_t), new-expressions of over-aligned
 *    types) is aligned for 1 .. 1 MiB; a non-power-of-two alignment fails;
 *  - a new that cannot be satisfied throws std::bad_alloc (exact type, what(),
 *    destructors of the frames between run), the nothrow forms return nullptr, and
 *    an uncaught one terminates with libstdc++'s message;
 *  - the new_handler loop: a handler is called until it uninstalls itself, one that
 *    throws propagates its exception, one that frees a reserve block lets the retry
 *    succeed (under RLIMIT_AS, in a child);
 *  - blocks cross threads; the standard containers' storage is Galleon's.
 */
#include <dlfcn.h>
#include <sys/resource.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "galleon.h"
#include "../test_util.h"

#if defined(TEST_PRELOAD)
#define MODE "preload"
#elif defined(TEST_CXX_STATIC)
#define MODE "static"
#else
#define MODE "linked"
#endif

/* ---- Galleon's API: direct when linked, through dlsym under LD_PRELOAD ---- */
struct galleon_api {
  int (*owns)(const void *);
  void (*stats_get)(galleon_stats_t *);
  int (*option_set)(const char *, long);
};
static galleon_api G;

static void load_api() {
#if defined(TEST_PRELOAD)
  G.owns = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "galleon_owns"));
  G.stats_get = reinterpret_cast<void (*)(galleon_stats_t *)>(dlsym(RTLD_DEFAULT, "galleon_stats_get"));
  G.option_set = reinterpret_cast<int (*)(const char *, long)>(dlsym(RTLD_DEFAULT, "galleon_option_set"));
  CHECKF(G.owns && G.stats_get && G.option_set, "galleon_* not found: run under LD_PRELOAD=libgalleon.so");
#else
  G.owns = &galleon_owns;
  G.stats_get = &galleon_stats_get;
  G.option_set = &galleon_option_set;
#endif
}

static size_t in_use() {
  galleon_stats_t s;
  G.stats_get(&s);
  return s.in_use;
}

/* Per thread: the threads test allocates in four threads at once, and a shared
 * sink would hand one thread the pointer another just wrote. */
static thread_local void *volatile sink;
static void *escape(void *p) {
  sink = p;
  return sink;
}
static size_t opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

static void check_block(void *p, size_t n, size_t align, const char *what) {
  CHECKF(p != nullptr, "%s(%zu, align %zu) returned nullptr", what, n, align);
  CHECKF(G.owns(p), "%s(%zu, align %zu) = %p: not Galleon's block", what, n, align, p);
  CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, align %zu) = %p: misaligned", what, n, align, p);
  CHECKF(malloc_usable_size(p) >= n, "%s(%zu, align %zu): usable size %zu", what, n, align,
         malloc_usable_size(p));
  if (n) {
    memset(p, 0xa5, n < 8192 ? n : 8192);
    static_cast<unsigned char *>(p)[n - 1] = 0x5a;
  }
}

/* ---- The forms ---- */
static const char *const kSymbols[] = {
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdaPv", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t", "_ZdlPvm", "_ZdaPvm",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t"};

enum form { PLAIN, ARRAY, NOTHROW, ARRAY_NOTHROW, ALIGNED, ARRAY_ALIGNED, ALIGNED_NOTHROW, ARRAY_ALIGNED_NOTHROW };
static const char *const kFormName[] = {"new", "new[]", "new(nothrow)", "new[](nothrow)", "new(align)",
                                        "new[](align)", "new(align, nothrow)", "new[](align, nothrow)"};
static bool is_nothrow(int f) { return f == NOTHROW || f == ARRAY_NOTHROW || f == ALIGNED_NOTHROW || f == ARRAY_ALIGNED_NOTHROW; }
static bool is_aligned(int f) { return f >= ALIGNED; }

__attribute__((noinline)) static void *form_new(int f, size_t n, size_t align) {
  std::align_val_t al = static_cast<std::align_val_t>(align);
  switch (f) {
    case PLAIN: return escape(::operator new(n));
    case ARRAY: return escape(::operator new[](n));
    case NOTHROW: return escape(::operator new(n, std::nothrow));
    case ARRAY_NOTHROW: return escape(::operator new[](n, std::nothrow));
    case ALIGNED: return escape(::operator new(n, al));
    case ARRAY_ALIGNED: return escape(::operator new[](n, al));
    case ALIGNED_NOTHROW: return escape(::operator new(n, al, std::nothrow));
    default: return escape(::operator new[](n, al, std::nothrow));
  }
}

/* The matching deletes: variant 0 plain, 1 sized, 2 nothrow. */
static const char *const kDeleteName[] = {"delete", "sized delete", "nothrow delete"};
__attribute__((noinline)) static void form_delete(int f, void *p, size_t n, size_t align, int variant) {
  std::align_val_t al = static_cast<std::align_val_t>(align);
  bool array = f == ARRAY || f == ARRAY_NOTHROW || f == ARRAY_ALIGNED || f == ARRAY_ALIGNED_NOTHROW;
  if (!is_aligned(f)) {
    if (array) {
      if (variant == 0) ::operator delete[](p);
      else if (variant == 1) ::operator delete[](p, n);
      else ::operator delete[](p, std::nothrow);
    } else {
      if (variant == 0) ::operator delete(p);
      else if (variant == 1) ::operator delete(p, n);
      else ::operator delete(p, std::nothrow);
    }
  } else {
    if (array) {
      if (variant == 0) ::operator delete[](p, al);
      else if (variant == 1) ::operator delete[](p, n, al);
      else ::operator delete[](p, al, std::nothrow);
    } else {
      if (variant == 0) ::operator delete(p, al);
      else if (variant == 1) ::operator delete(p, n, al);
      else ::operator delete(p, al, std::nothrow);
    }
  }
}

/* ---- Symbols: the program binds Galleon's operator new, not libstdc++'s ---- */
static void test_symbols() {
  Dl_info galleon_obj, info;
  CHECK(dladdr(reinterpret_cast<void *>(G.owns), &galleon_obj) != 0);
  for (const char *name : kSymbols) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    CHECKF(sym != nullptr, "%s not found", name);
    CHECKF(dladdr(sym, &info) != 0, "dladdr(%s)", name);
    CHECKF(info.dli_fbase == galleon_obj.dli_fbase, "%s resolves to %s, not to Galleon's %s", name,
           info.dli_fname, galleon_obj.dli_fname);
  }
  /* The addresses the program itself calls. */
  void *(*pnew)(std::size_t) = &::operator new;
  void *(*pnew_al)(std::size_t, std::align_val_t) = &::operator new[];
  void (*pdelete_sized)(void *, std::size_t) noexcept = &::operator delete;
  void *own[] = {reinterpret_cast<void *>(pnew), reinterpret_cast<void *>(pnew_al),
                 reinterpret_cast<void *>(pdelete_sized)};
  for (void *fn : own) {
    CHECK(dladdr(fn, &info) != 0);
    CHECKF(info.dli_fbase == galleon_obj.dli_fbase, "&operator new/delete = %p in %s, not in Galleon's %s", fn,
           info.dli_fname, galleon_obj.dli_fname);
  }
  CHECK(reinterpret_cast<void *>(pnew) == dlsym(RTLD_DEFAULT, "_Znwm"));
#if !defined(TEST_CXX_STATIC)
  CHECKF(strstr(galleon_obj.dli_fname, "libgalleon.so") != nullptr, "Galleon is in %s", galleon_obj.dli_fname);
#endif
  /* libstdc++ still has its own, which nothing here calls. */
  void *libstdcxx = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
  CHECK(libstdcxx != nullptr);
  void *theirs = dlsym(libstdcxx, "_Znwm");
  CHECK(theirs != nullptr && dladdr(theirs, &info) != 0);
  CHECKF(theirs != reinterpret_cast<void *>(pnew) && strstr(info.dli_fname, "libstdc++") != nullptr,
         "libstdc++'s operator new at %p in %s", theirs, info.dli_fname);
  dlclose(libstdcxx);
  printf("cxx/" MODE "/symbols: all %zu operator new/delete symbols resolve to %s\n",
         sizeof kSymbols / sizeof kSymbols[0], galleon_obj.dli_fname);
}

/* ---- Every form allocates from Galleon, every delete gives back ---- */
static void test_forms() {
  static const size_t sizes[] = {0, 1, 8, 24, 100, 1000, 5000, 70000, 300000, 5 * MiB};
  int checked = 0;
  for (int f = PLAIN; f <= ARRAY_ALIGNED_NOTHROW; f++) {
    size_t align = is_aligned(f) ? 64 : 1;
    for (size_t n : sizes) {
      for (int variant = 0; variant < 3; variant++) {
        size_t before = in_use();
        void *p = form_new(f, opaque(n), align);
        check_block(p, n, align, kFormName[f]);
        size_t during = in_use();
        CHECKF(during >= before + n, "%s(%zu): in_use %zu -> %zu", kFormName[f], n, before, during);
        form_delete(f, p, n, align, variant);
        size_t after = in_use();
        /* Slack: Galleon may start its purger thread meanwhile (glibc allocates). */
        CHECKF(after <= before + 4 * KiB, "%s(%zu) then %s: in_use %zu -> %zu -> %zu",
               kFormName[f], n, kDeleteName[variant], before, during, after);
        checked++;
      }
    }
  }
  /* new-expressions: the compiler picks the form (sized and aligned deletes). */
  struct obj {
    char b[1000];
  };
  struct alignas(256) over {
    char b[300];
  };
  size_t before = in_use();
  obj *o = new obj;
  check_block(escape(o), sizeof(obj), 1, "new obj");
  delete static_cast<obj *>(escape(o));
  over *v = new over;
  check_block(escape(v), sizeof(over), 256, "new over-aligned");
  delete static_cast<over *>(escape(v));
  over *va = new over[3];
  check_block(escape(va), 3 * sizeof(over), 256, "new over-aligned[3]");
  delete[] static_cast<over *>(escape(va));
  char *c = new char[opaque(12345)];
  check_block(escape(c), 12345, 1, "new char[]");
  delete[] static_cast<char *>(escape(c));
  std::string *s = new std::string(opaque(3000), 'x');
  CHECK(G.owns(escape(s)) && G.owns(s->data()) && s->size() == 3000 && s->back() == 'x');
  delete s;
  CHECKF(in_use() <= before + 4 * KiB, "new-expressions: in_use %zu -> %zu", before, in_use());
  printf("cxx/" MODE "/forms: %d new/delete pairs of 8 x 3 forms, in_use balanced\n", checked);
}

/* ---- new(0), delete(nullptr) ---- */
static void test_zero_and_null() {
  for (int f = PLAIN; f <= ARRAY_ALIGNED_NOTHROW; f++) {
    size_t align = is_aligned(f) ? 128 : 1;
    void *p = form_new(f, opaque(0), align);
    void *q = form_new(f, opaque(0), align);
    check_block(p, 0, align, kFormName[f]);
    check_block(q, 0, align, kFormName[f]);
    CHECKF(p != q, "%s(0) twice = %p", kFormName[f], p);
    form_delete(f, p, 0, align, 0);
    form_delete(f, q, 0, align, 1);
    for (int variant = 0; variant < 3; variant++) form_delete(f, escape(nullptr), 0, align, variant);
  }
  printf("cxx/" MODE "/zero: new(0) unique and non-null, delete(nullptr) a no-op, every form\n");
}

/* ---- Alignment ---- */
static void test_aligned() {
  int checked = 0;
  for (size_t align = 1; align <= MiB; align *= 2) {
    const size_t sizes[] = {1, align / 2 + 1, align, 3 * align + 8};
    for (size_t n : sizes) {
      for (int f = ALIGNED; f <= ARRAY_ALIGNED_NOTHROW; f++) {
        int variant = checked % 3;
        void *p = form_new(f, opaque(n), align);
        check_block(p, n, align, kFormName[f]);
        form_delete(f, p, n, align, variant);
        checked++;
      }
    }
  }
  struct alignas(4096) page {
    char b[5000];
  };
  std::vector<page *> pages;
  for (int i = 0; i < 20; i++) pages.push_back(new page);
  for (page *pg : pages) check_block(escape(pg), sizeof(page), 4096, "new alignas(4096)");
  for (page *pg : pages) delete pg;
  printf("cxx/" MODE "/aligned: %d aligned new/delete pairs, alignments 1 .. 1 MiB\n", checked);
}

/* ---- Failure: bad_alloc, nullptr ---- */
enum outcome { GOT, NULLPTR, BAD_ALLOC, CUSTOM };
struct custom_error {
  int code;
};
static int g_guards_destroyed;
struct guard {
  ~guard() { g_guards_destroyed++; }
};

__attribute__((noinline)) static void *new_with_guard(int f, size_t n, size_t align) {
  guard g;
  void *p = form_new(f, n, align);
  escape(&g);
  return p;
}

static outcome try_new(int f, size_t n, size_t align, void **out = nullptr) {
  int destroyed = g_guards_destroyed;
  try {
    void *p = new_with_guard(f, n, align);
    if (out) *out = p;
    return p ? GOT : NULLPTR;
  } catch (const std::bad_alloc &e) {
    CHECKF(typeid(e) == typeid(std::bad_alloc), "%s threw a %s", kFormName[f], typeid(e).name());
    CHECKF(strcmp(e.what(), "std::bad_alloc") == 0, "what() = %s", e.what());
    CHECKF(g_guards_destroyed == destroyed + 1, "%s: the frame's destructors did not run", kFormName[f]);
    return BAD_ALLOC;
  } catch (const custom_error &e) {
    CHECK(e.code == 42);
    CHECKF(g_guards_destroyed == destroyed + 1, "%s: the frame's destructors did not run", kFormName[f]);
    return CUSTOM;
  }
}

static const size_t kHuge[] = {SIZE_MAX / 2, SIZE_MAX - 4096, (size_t)1 << 62, (size_t)1 << 47};

static void test_failures() {
  for (size_t n : kHuge) {
    for (int f = PLAIN; f <= ARRAY_ALIGNED_NOTHROW; f++) {
      outcome o = try_new(f, opaque(n), 64);
      outcome want = is_nothrow(f) ? NULLPTR : BAD_ALLOC;
      CHECKF(o == want, "%s(%zu): outcome %d, want %d", kFormName[f], n, o, want);
    }
  }
  /* A bad alignment fails whatever the size. */
  for (int f = ALIGNED; f <= ARRAY_ALIGNED_NOTHROW; f++) {
    outcome o = try_new(f, opaque(16), 24);
    CHECKF(o == (is_nothrow(f) ? NULLPTR : BAD_ALLOC), "%s(16, align 24): outcome %d", kFormName[f], o);
  }
  /* A new-expression, caught as std::exception. */
  bool caught = false;
  try {
    char *c = new char[opaque(SIZE_MAX / 2)];
    escape(c);
  } catch (const std::exception &e) {
    caught = strcmp(e.what(), "std::bad_alloc") == 0;
  }
  CHECK(caught);
  char *c = new (std::nothrow) char[opaque(SIZE_MAX / 2)];
  CHECK(escape(c) == nullptr);
  printf("cxx/" MODE "/failures: huge and misaligned requests throw std::bad_alloc (nothrow: nullptr)\n");
}

static void uncaught_child(void *) {
  void *p = ::operator new(opaque(SIZE_MAX / 2));
  escape(p);
}

static void test_uncaught() {
  child_result_t *res = new child_result_t;
  CHECK(run_child(uncaught_child, nullptr, 30, res) == 0);
  char buf[128];
  CHECKF(WIFSIGNALED(res->status) && WTERMSIG(res->status) == SIGABRT, "uncaught bad_alloc: %s; stderr: %s",
         describe_status(res->status, buf, sizeof buf), res->err);
  CHECKF(strstr(res->err, "terminate called after throwing an instance of 'std::bad_alloc'") != nullptr,
         "stderr: %s", res->err);
  delete res;
  printf("cxx/" MODE "/uncaught: an uncaught bad_alloc terminates with libstdc++'s message\n");
}

/* ---- new_handler ---- */
static int g_handler_calls;
static int g_uninstall_at;
static void *g_reserve;

static void counting_handler() {
  if (++g_handler_calls >= g_uninstall_at) std::set_new_handler(nullptr);
}
static void throwing_handler() {
  g_handler_calls++;
  throw custom_error{42};
}
static void reserve_handler() {
  g_handler_calls++;
  if (g_reserve) {
    ::operator delete(g_reserve);
    g_reserve = nullptr;
  } else {
    std::set_new_handler(nullptr);
  }
}

static void test_new_handler() {
  for (int f = PLAIN; f <= ARRAY_ALIGNED_NOTHROW; f++) {
    /* Called until it uninstalls itself, then the form's failure. */
    g_handler_calls = 0;
    g_uninstall_at = 3;
    std::set_new_handler(counting_handler);
    outcome o = try_new(f, opaque(SIZE_MAX / 2), 64);
    CHECKF(o == (is_nothrow(f) ? NULLPTR : BAD_ALLOC), "%s with a handler: outcome %d", kFormName[f], o);
    CHECKF(g_handler_calls == 3, "%s: handler called %d times, want 3", kFormName[f], g_handler_calls);
    CHECK(std::get_new_handler() == nullptr);
    /* Not called when the allocation succeeds. */
    std::set_new_handler(counting_handler);
    g_handler_calls = 0;
    void *p = form_new(f, opaque(100), 64);
    check_block(p, 100, is_aligned(f) ? 64 : 1, kFormName[f]);
    form_delete(f, p, 100, 64, 0);
    CHECK(g_handler_calls == 0);
    std::set_new_handler(nullptr);
    if (is_nothrow(f)) continue;
    /* A handler that throws: its exception propagates out of new. */
    g_handler_calls = 0;
    std::set_new_handler(throwing_handler);
    o = try_new(f, opaque(SIZE_MAX / 2), 64);
    CHECKF(o == CUSTOM, "%s with a throwing handler: outcome %d", kFormName[f], o);
    CHECK(g_handler_calls == 1);
    std::set_new_handler(nullptr);
  }
  printf("cxx/" MODE "/new_handler: called until uninstalled; a throwing handler's exception propagates\n");
}

/* Address space mapped now, from /proc/self/statm (no allocation). */
static size_t vm_bytes() {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  CHECK(n > 0);
  buf[n] = 0;
  size_t pages = 0;
  for (const char *s = buf; *s >= '0' && *s <= '9'; s++) pages = pages * 10 + (size_t)(*s - '0');
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* In a child: under RLIMIT_AS, 80 MiB fit only once the handler frees a 96 MiB
 * reserve; each form then succeeds after exactly one call. */
static void reserve_child(void *) {
  CHECK(G.option_set("segment_cache", 0) == 0); /* a freed large block is unmapped */
  CHECK(G.option_set("purge_thread", 0) == 0);
  struct rlimit rl;
  CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
  const rlim_t soft = rl.rlim_cur;
  for (int f = PLAIN; f <= ARRAY_ALIGNED_NOTHROW; f++) {
    rl.rlim_cur = soft;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    g_reserve = ::operator new(96 * MiB);
    rl.rlim_cur = vm_bytes() + 48 * MiB;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    void *probe = malloc(opaque(80 * MiB));
    CHECKF(probe == nullptr, "80 MiB fit under the limit without the reserve");
    g_handler_calls = 0;
    std::set_new_handler(reserve_handler);
    void *p = nullptr;
    outcome o = try_new(f, opaque(80 * MiB), 4096, &p);
    CHECKF(o == GOT, "%s after freeing the reserve: outcome %d (%d handler calls)", kFormName[f], o,
           g_handler_calls);
    CHECKF(g_handler_calls == 1, "%s: handler called %d times", kFormName[f], g_handler_calls);
    CHECK(g_reserve == nullptr);
    check_block(p, 80 * MiB, is_aligned(f) ? 4096 : 1, kFormName[f]);
    form_delete(f, p, 80 * MiB, 4096, 1);
    std::set_new_handler(nullptr);
  }
  printf("ok\n");
  fflush(stdout);
}

static void test_reserve_handler() {
  child_result_t *res = new child_result_t;
  CHECK(run_child(reserve_child, nullptr, 60, res) == 0);
  char buf[128];
  CHECKF(WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0, "reserve handler child: %s; stderr: %s",
         describe_status(res->status, buf, sizeof buf), res->err);
  delete res;
  printf("cxx/" MODE "/reserve: a handler that frees a reserve block makes every form succeed on retry\n");
}

/* ---- Threads, containers ---- */
static void test_threads_and_containers() {
  const int kThreads = 4, kPer = 2000;
  std::vector<std::vector<void *>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++)
    threads.emplace_back([t, &made] {
      for (int i = 0; i < kPer; i++) {
        int f = (t + i) % 8;
        made[t].push_back(form_new(f, (size_t)(i % 700) * 16 + 1, 32));
      }
    });
  for (std::thread &th : threads) th.join();
  for (int t = 0; t < kThreads; t++)
    for (int i = 0; i < kPer; i++) {
      int f = (t + i) % 8;
      size_t n = (size_t)(i % 700) * 16 + 1;
      check_block(made[t][i], n, is_aligned(f) ? 32 : 1, kFormName[f]);
      form_delete(f, made[t][i], n, 32, i % 3);
    }
  std::vector<int> v(10000, 7);
  CHECK(G.owns(v.data()));
  std::string s(opaque(5000), 'y');
  CHECK(G.owns(s.data()));
  std::shared_ptr<std::vector<double>> sp = std::make_shared<std::vector<double>>(300);
  CHECK(G.owns(sp.get()) && G.owns(sp->data()));
  printf("cxx/" MODE "/threads: %d blocks made in %d threads, deleted in main; containers' storage is Galleon's\n",
         kThreads * kPer, kThreads);
}

int main() {
  load_api();
  test_symbols();
  test_forms();
  test_zero_and_null();
  test_aligned();
  test_failures();
  test_uncaught();
  test_new_handler();
  test_reserve_handler();
  test_threads_and_containers();
  printf("cxx/" MODE ": ok\n");
  return 0;
}
