/* dlopen_host.c: a C program linked with Galleon, without libstdc++, that
 * dlopen()s a C++ module (dlopen_module.cpp, path in argv[1]) with RTLD_LOCAL: the
 * module's operator new is Galleon's, whose weak references to the C++ runtime did
 * not resolve at start; it still throws std::bad_alloc and calls the module's
 * new_handler. */
#define _GNU_SOURCE 1
#include <dlfcn.h>

#include "../test_util.h"

int main(int argc, char **argv) {
  CHECK(argc == 2);
  void *m = malloc(100); /* linked with Galleon */
  CHECK(m != NULL && galleon_owns(m));
  free(m);
  /* A C program: no C++ runtime until the module brings one. */
  CHECK(dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD) == NULL);
  CHECK(dlsym(RTLD_DEFAULT, "__cxa_throw") == NULL);
  CHECK(dlsym(RTLD_DEFAULT, "_Znwm") != NULL); /* Galleon's */
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  CHECKF(h != NULL, "dlopen(%s): %s", argv[1], dlerror());
  CHECK(dlsym(RTLD_DEFAULT, "__cxa_throw") == NULL); /* libstdc++ is not global */
  int (*run)(void) = (int (*)(void))dlsym(h, "cxx_module_run");
  CHECK(run != NULL);
  int rc = run();
  CHECKF(rc == 0, "cxx_module_run failed at dlopen_module.cpp line %d", rc);
  printf("cxx/dlopen: a C++ module loaded after start gets Galleon's operator new, bad_alloc and new_handler\n");
  return 0;
}
