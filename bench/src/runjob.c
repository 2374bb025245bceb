/* runjob.c - run a command, report its wall time, peak RSS, page faults and
 * context switches.
 * usage: runjob [-p PRELOAD_LIB] [-o STDOUT_FILE] [-r REPORT_FILE] [-t TIMEOUT_S] -- CMD [ARGS...]
 * The preload library (if any; several may be given separated by ':') is put into
 * LD_PRELOAD of the child only, so this helper itself always runs on the system
 * malloc.  Prints to stderr (or into REPORT_FILE with -r):
 *   RUNJOB wall_s=<seconds> maxrss_kb=<KiB> status=<exit code or -signal>
 *          minflt=<n> majflt=<n> nvcsw=<n> nivcsw=<n> utime_s=<s> stime_s=<s>
 * (one line; the figures come from wait4's rusage of the child, which on Linux
 * includes the descendants it waited for), and exits with the child's exit code
 * (128+signal when killed).  The child runs in its own process group; SIGTERM/SIGINT
 * to runjob and the -t timeout kill that whole group.
 *
 * Why a C helper: a child's ru_maxrss starts at the RSS of the process that forked
 * it (Linux copies the high-water mark across fork+exec), so measuring from a
 * 20+ MB Python or bash parent would put a floor under every peak RSS. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child;
static void on_alarm(int sig) {
  (void)sig;
  if (child > 0) kill(-child, SIGKILL);
}

int main(int argc, char **argv) {
  const char *preload = NULL, *outfile = NULL, *report = NULL;
  int timeout = 0, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) preload = argv[++i];
    else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) outfile = argv[++i];
    else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) report = argv[++i];
    else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) timeout = atoi(argv[++i]);
    else { fprintf(stderr, "runjob: unknown option %s\n", argv[i]); return 2; }
  }
  if (i >= argc) {
    fprintf(stderr, "usage: runjob [-p PRELOAD] [-o STDOUT_FILE] [-r REPORT_FILE] [-t TIMEOUT_S] -- CMD [ARGS...]\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  child = fork();
  if (child < 0) { perror("runjob: fork"); return 2; }
  if (child == 0) {
    setpgid(0, 0);
    if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
    else unsetenv("LD_PRELOAD");
    if (outfile) {
      int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) { perror("runjob: open output"); _exit(127); }
      dup2(fd, 1);
      close(fd);
    }
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "runjob: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  setpgid(child, child);
  signal(SIGTERM, on_alarm);
  signal(SIGINT, on_alarm);
  if (timeout > 0) {
    signal(SIGALRM, on_alarm);
    alarm((unsigned)timeout);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(child, &status, 0, &ru) < 0) {
    if (errno != EINTR) { perror("runjob: wait4"); return 2; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  FILE *rf = report ? fopen(report, "w") : stderr;
  if (rf == NULL) rf = stderr;
  /* keep the first three fields first: bench/main-job parses them with one regex */
  fprintf(rf,
          "RUNJOB wall_s=%.6f maxrss_kb=%ld status=%d minflt=%ld majflt=%ld nvcsw=%ld nivcsw=%ld "
          "utime_s=%.6f stime_s=%.6f\n",
          wall, ru.ru_maxrss, code, ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw,
          (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
  if (rf != stderr) fclose(rf);
  return code >= 0 ? code : 128 - code;
}
