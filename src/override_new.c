/* override_new.c: the C++ allocation functions (operator new and operator delete
 * in all their replaceable forms), written in C under their Itanium C++ ABI names,
 * so that a C++ program linked with -lgalleon or run under LD_PRELOAD calls
 * Galleon directly instead of going through libstdc++'s operator new, which would
 * only call malloc.
 *
 * Semantics are the standard's (and libstdc++'s):
 *  - new loops while the allocation fails: it calls the installed std::new_handler
 *    and retries; with none installed it throws std::bad_alloc.  The nothrow forms
 *    run the same loop and return NULL where new would throw.  An exception thrown
 *    by a new_handler propagates out of both (libstdc++ returns NULL from a nothrow
 *    new when the handler throws; C has no catch).
 *  - new(0) returns a unique pointer; delete(NULL) does nothing.
 *  - the aligned forms (std::align_val_t) honour the alignment; an alignment that
 *    is not a power of two fails at once (bad_alloc or NULL), as in libstdc++.
 *  - the sized deletes ignore the size: Galleon finds it from the pointer.
 *
 * Only the public galleon_* API is called.  The C++ runtime (std::get_new_handler,
 * __cxa_throw and std::bad_alloc's typeinfo, vtable and destructor) is referenced
 * weakly, so a C program needs no libstdc++; in a C++ program they resolve to the
 * loaded libstdc++.  Where they did not resolve at load time -- libstdc++ arrived
 * later, with a dlopen()ed C++ module -- they are looked up when an allocation
 * fails: in the global scope, then in libstdc++.so.6 if it is loaded.  Without a
 * C++ runtime, a new that must throw prints one line on stderr and aborts.
 *
 * The throw unwinds through the frames of this file: it is compiled with
 * -fexceptions (CMakeLists.txt), so its unwind tables do not depend on the
 * target's default of -fasynchronous-unwind-tables. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"

#define GL_EXPORT __attribute__((visibility("default")))

/* dlopen and dlsym are in libc itself since glibc 2.34 (no -ldl). */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define GL_CXX_LOOKUP 1
#else
#define GL_CXX_LOOKUP 0
#endif

/* ---- The C++ runtime, weakly ---- */
typedef void (*gl_new_handler_t)(void);
typedef gl_new_handler_t (*gl_get_new_handler_fn)(void);
typedef void *(*gl_allocate_exception_fn)(size_t);
typedef void (*gl_throw_fn)(void *, void *, void (*)(void *));
typedef void (*gl_dtor_fn)(void *);

extern gl_new_handler_t _ZSt15get_new_handlerv(void) __attribute__((weak)); /* std::get_new_handler() */
extern void *__cxa_allocate_exception(size_t) __attribute__((weak));
extern void __cxa_throw(void *, void *, void (*)(void *)) __attribute__((weak, noreturn));
extern char _ZTISt9bad_alloc[] __attribute__((weak));  /* typeinfo for std::bad_alloc */
extern void *_ZTVSt9bad_alloc[] __attribute__((weak)); /* vtable for std::bad_alloc */
extern void _ZNSt9bad_allocD1Ev(void *) __attribute__((weak)); /* std::bad_alloc::~bad_alloc() */

#if GL_CXX_LOOKUP
/* Weak as well: a static link (libgalleon.a, -static) does not pull in glibc's
 * static dlopen for this; where it is there anyway (libstdc++.a brings it), ld
 * prints its usual "Using 'dlopen' in statically linked applications" warning. */
#pragma weak dlopen
#pragma weak dlsym
#pragma weak dlclose
static _Atomic(void *) gl_libstdcxx; /* a dlopen handle that keeps it loaded */

static void *gl_cxx_lookup(const char *name) {
  if (dlsym == NULL || dlopen == NULL || dlclose == NULL) return NULL;
  void *p = dlsym(RTLD_DEFAULT, name);
  if (p != NULL) return p;
  /* A C++ module dlopen()ed with RTLD_LOCAL brings libstdc++ outside the global
   * scope: ask for it by name, without loading it. */
  void *h = atomic_load_explicit(&gl_libstdcxx, memory_order_acquire);
  if (h == NULL) {
    h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL) return NULL;
    void *expected = NULL;
    if (!atomic_compare_exchange_strong(&gl_libstdcxx, &expected, h)) {
      dlclose(h);
      h = expected;
    }
  }
  return dlsym(h, name);
}
#define GL_CXX(weak_sym, name) ((void *)(weak_sym) != NULL ? (void *)(weak_sym) : gl_cxx_lookup(name))
#else
#define GL_CXX(weak_sym, name) ((void *)(weak_sym))
#endif

static void gl_cxx_fatal(const char *msg, size_t len) {
  os_write(2, msg, len); /* the raw system call: not a cancellation point */
  abort();
}
#define GL_FATAL(lit) gl_cxx_fatal(lit, sizeof(lit) - 1)

/* Call the installed std::new_handler; 0 when there is none (nor a C++ runtime). */
GL_COLD static int gl_call_new_handler(void) {
  gl_get_new_handler_fn get = (gl_get_new_handler_fn)GL_CXX(_ZSt15get_new_handlerv, "_ZSt15get_new_handlerv");
  if (get == NULL) return 0;
  gl_new_handler_t handler = get();
  if (handler == NULL) return 0;
  handler(); /* may throw: the exception propagates through this frame */
  return 1;
}

/* throw std::bad_alloc(): an object of one vtable pointer, as std::exception. */
GL_COLD __attribute__((noreturn)) static void gl_throw_bad_alloc(void) {
  gl_allocate_exception_fn alloc_exc =
      (gl_allocate_exception_fn)GL_CXX(__cxa_allocate_exception, "__cxa_allocate_exception");
  gl_throw_fn throw_fn = (gl_throw_fn)GL_CXX(__cxa_throw, "__cxa_throw");
  void *typeinfo = GL_CXX(_ZTISt9bad_alloc, "_ZTISt9bad_alloc");
  void **vtable = (void **)GL_CXX(_ZTVSt9bad_alloc, "_ZTVSt9bad_alloc");
  gl_dtor_fn dtor = (gl_dtor_fn)GL_CXX(_ZNSt9bad_allocD1Ev, "_ZNSt9bad_allocD1Ev");
  if (alloc_exc == NULL || throw_fn == NULL || typeinfo == NULL || vtable == NULL || dtor == NULL)
    GL_FATAL("galleon: error: operator new: out of memory, and no C++ runtime to throw std::bad_alloc\n");
  void **obj = (void **)alloc_exc(sizeof(void *));
  *obj = vtable + 2; /* past offset-to-top and the typeinfo pointer */
  throw_fn(obj, typeinfo, dtor);
  __builtin_unreachable();
}

/* ---- The allocation loops (slow paths: the first attempt failed) ---- */
GL_COLD static void *gl_new_retry(size_t size, int nothrow) {
  for (;;) {
    if (!gl_call_new_handler()) {
      if (nothrow) return NULL;
      gl_throw_bad_alloc();
    }
    void *p = alloc_malloc_fast(size);
    if (p != NULL) return p;
  }
}

GL_COLD static void *gl_new_aligned_retry(size_t size, size_t align, int nothrow) {
  if (align == 0 || (align & (align - 1)) != 0) { /* no handler can fix that */
    if (nothrow) return NULL;
    gl_throw_bad_alloc();
  }
  for (;;) {
    if (!gl_call_new_handler()) {
      if (nothrow) return NULL;
      gl_throw_bad_alloc();
    }
    void *p = galleon_aligned_alloc(align, size);
    if (p != NULL) return p;
  }
}

static inline void *gl_new(size_t size, int nothrow) {
  void *p = alloc_malloc_fast(size);
  if (__builtin_expect(p != NULL, 1)) return p;
  return gl_new_retry(size, nothrow);
}

static inline void *gl_new_aligned(size_t size, size_t align, int nothrow) {
  void *p = NULL;
  if (__builtin_expect(align != 0 && (align & (align - 1)) == 0, 1)) p = galleon_aligned_alloc(align, size);
  if (__builtin_expect(p != NULL, 1)) return p;
  return gl_new_aligned_retry(size, align, nothrow);
}

/* ---- The replaceable functions: the set libstdc++ exports on x86-64 ----
 * std::nothrow_t is passed by reference (a pointer, ignored); std::align_val_t is
 * an enum over size_t, passed as size_t. */

/* operator new(size_t), operator new[](size_t) */
GL_EXPORT void *_Znwm(size_t size) { return gl_new(size, 0); }
GL_EXPORT void *_Znam(size_t size) { return gl_new(size, 0); }
/* operator new(size_t, const std::nothrow_t&), operator new[](...) */
GL_EXPORT void *_ZnwmRKSt9nothrow_t(size_t size, const void *nt) { return gl_new(size, 1); }
GL_EXPORT void *_ZnamRKSt9nothrow_t(size_t size, const void *nt) { return gl_new(size, 1); }
/* operator new(size_t, std::align_val_t), operator new[](...) (C++17) */
GL_EXPORT void *_ZnwmSt11align_val_t(size_t size, size_t align) { return gl_new_aligned(size, align, 0); }
GL_EXPORT void *_ZnamSt11align_val_t(size_t size, size_t align) { return gl_new_aligned(size, align, 0); }
/* operator new(size_t, std::align_val_t, const std::nothrow_t&), operator new[](...) */
GL_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const void *nt) {
  return gl_new_aligned(size, align, 1);
}
GL_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const void *nt) {
  return gl_new_aligned(size, align, 1);
}

/* operator delete(void*), operator delete[](void*) */
GL_EXPORT void _ZdlPv(void *ptr) { alloc_free_fast(ptr); }
GL_EXPORT void _ZdaPv(void *ptr) { alloc_free_fast(ptr); }
/* operator delete(void*, const std::nothrow_t&), operator delete[](...) */
GL_EXPORT void _ZdlPvRKSt9nothrow_t(void *ptr, const void *nt) { alloc_free_fast(ptr); }
GL_EXPORT void _ZdaPvRKSt9nothrow_t(void *ptr, const void *nt) { alloc_free_fast(ptr); }
/* operator delete(void*, size_t), operator delete[](...) (C++14) */
GL_EXPORT void _ZdlPvm(void *ptr, size_t size) { alloc_free_fast(ptr); }
GL_EXPORT void _ZdaPvm(void *ptr, size_t size) { alloc_free_fast(ptr); }
/* operator delete(void*, std::align_val_t), operator delete[](...) (C++17) */
GL_EXPORT void _ZdlPvSt11align_val_t(void *ptr, size_t align) { alloc_free_fast(ptr); }
GL_EXPORT void _ZdaPvSt11align_val_t(void *ptr, size_t align) { alloc_free_fast(ptr); }
/* operator delete(void*, std::align_val_t, const std::nothrow_t&), operator delete[](...) */
GL_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *ptr, size_t align, const void *nt) {
  alloc_free_fast(ptr);
}
GL_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *ptr, size_t align, const void *nt) {
  alloc_free_fast(ptr);
}
/* operator delete(void*, size_t, std::align_val_t), operator delete[](...) */
GL_EXPORT void _ZdlPvmSt11align_val_t(void *ptr, size_t size, size_t align) {
  alloc_free_fast(ptr);
}
GL_EXPORT void _ZdaPvmSt11align_val_t(void *ptr, size_t size, size_t align) {
  alloc_free_fast(ptr);
}
