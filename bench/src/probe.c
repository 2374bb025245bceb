/* probe.c - libbenchprobe.so, preloaded by bench/run in front of the allocator
 * under test (LD_PRELOAD="libbenchprobe.so:ALLOCATOR", or the probe alone for
 * glibc) to prove that the preload took effect in every process a workload starts.
 *
 * When GALLEON_BENCH_PROBE names a file, a constructor appends one line per process:
 *   PROBE pid=<pid> malloc=<object defining malloc> free=<object defining free> exe=<path>
 * where the objects are the first shared objects after the probe in the global
 * search order that define "malloc" and "free" (dlsym(RTLD_NEXT) + dladdr): the
 * preloaded allocator when the preload worked, libc.so.6 when it did not (or for
 * the glibc runs).  RTLD_NEXT rather than RTLD_DEFAULT because a program that takes
 * the address of free (gcc's cc1 does) exports a canonical PLT entry for it, and
 * RTLD_DEFAULT would name the program instead of the library its calls reach.  The
 * runner checks every line.  No allocation here: a fixed buffer and one write(2) with
 * O_APPEND, so lines of concurrent processes do not interleave.  Without the
 * variable the probe does nothing.  It costs one dlsym/dladdr pair per process. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *object_of(const char *sym) {
  void *addr = dlsym(RTLD_NEXT, sym);
  Dl_info info;
  if (addr == NULL) return "(unresolved)";
  if (dladdr(addr, &info) == 0 || info.dli_fname == NULL) return "(unknown)";
  return info.dli_fname[0] ? info.dli_fname : "(unnamed)";
}

__attribute__((constructor)) static void bench_probe(void) {
  const char *path = getenv("GALLEON_BENCH_PROBE");
  if (path == NULL || path[0] == '\0') return;
  char exe[1024];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  char line[3200];
  int len = snprintf(line, sizeof line, "PROBE pid=%d malloc=%s free=%s exe=%s\n", (int)getpid(),
                     object_of("malloc"), object_of("free"), exe);
  if (len <= 0) return;
  if (len >= (int)sizeof line) len = (int)sizeof line - 1;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return; /* no line: the runner reports the preload as unverified */
  ssize_t w = write(fd, line, (size_t)len);
  (void)w;
  close(fd);
}
