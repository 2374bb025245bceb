/* dlopen_module.cpp: a C++ module that a C program (dlopen_host.c) loads with
 * dlopen(RTLD_LOCAL) after start, so libstdc++ arrives after Galleon and outside
 * the global scope.  cxx_module_run() returns 0 when its operator new is Galleon's
 * and still has the standard's semantics there: std::bad_alloc thrown, the
 * new_handler that this module installs called, nullptr from the nothrow form. */
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

static void *volatile sink;
static std::size_t opaque(std::size_t n) {
  volatile std::size_t v = n;
  return v;
}
static int g_calls;
static void handler() {
  if (++g_calls == 2) std::set_new_handler(nullptr);
}

#define FAIL(...)                                  \
  do {                                             \
    std::fprintf(stderr, "dlopen_module: " __VA_ARGS__); \
    std::fputc('\n', stderr);                      \
    return __LINE__;                               \
  } while (0)

extern "C" __attribute__((visibility("default"))) int cxx_module_run(void) {
  auto owns = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "galleon_owns"));
  if (owns == nullptr) FAIL("galleon_owns not in the global scope");
  Dl_info mine, galleon;
  void *(*pnew)(std::size_t) = &::operator new;
  if (!dladdr(reinterpret_cast<void *>(pnew), &mine) || !dladdr(reinterpret_cast<void *>(owns), &galleon))
    FAIL("dladdr");
  if (mine.dli_fbase != galleon.dli_fbase) FAIL("operator new is in %s, not in %s", mine.dli_fname, galleon.dli_fname);
  char *p = new char[opaque(1000)];
  sink = p;
  if (!owns(p)) FAIL("new char[1000] = %p: not Galleon's", static_cast<void *>(p));
  delete[] p;
  struct alignas(512) big { char b[512]; };
  big *b = new big;
  sink = b;
  if (!owns(b) || (reinterpret_cast<std::uintptr_t>(b) & 511) != 0) FAIL("new alignas(512) = %p", static_cast<void *>(b));
  delete b;

  bool caught = false;
  try {
    sink = ::operator new(opaque(SIZE_MAX / 2));
  } catch (const std::bad_alloc &e) {
    caught = std::strcmp(e.what(), "std::bad_alloc") == 0;
  }
  if (!caught) FAIL("operator new(SIZE_MAX / 2) did not throw std::bad_alloc");

  g_calls = 0;
  std::set_new_handler(handler);
  caught = false;
  try {
    sink = ::operator new(opaque(SIZE_MAX / 2), std::align_val_t(64));
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  if (!caught || g_calls != 2) FAIL("aligned new with a handler: caught %d, %d handler calls", caught, g_calls);
  g_calls = 0;
  std::set_new_handler(handler);
  void *q = ::operator new[](opaque(SIZE_MAX / 2), std::nothrow);
  if (q != nullptr || g_calls != 2) FAIL("nothrow new[] with a handler: %p, %d handler calls", q, g_calls);
  return 0;
}
