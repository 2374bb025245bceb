/* runner.c: misuse_runner PROGRAM -- runs one misuse program and judges it.
 *
 * The program announces on stdout, before it acts, exactly one line
 *   expect: galleon: error: ...   it must die of SIGABRT, and its stderr must be
 *                                 exactly that line: one line starting with
 *                                 "galleon: error:", equal to the announced one,
 *                                 and nothing else;
 *   expect: exit 0                it must exit with status 0 and an empty stderr.
 * The program runs with core dumps off and a 20 s alarm (kept across exec).
 * Exit status: 0 when the program did as announced, 1 otherwise, with the
 * evidence on stdout.  Nothing here is linked with Galleon.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define ERROR_PREFIX "galleon: error:"

/* The whole content of a file, NUL-terminated. */
static char *slurp(FILE *f) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf || fseek(f, 0, SEEK_SET) != 0) return NULL;
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (len + 1 == cap) {
      char *bigger = realloc(buf, cap *= 2);
      if (!bigger) return NULL;
      buf = bigger;
    }
  }
  buf[len] = 0;
  return buf;
}

/* Lines of text that start with prefix: the count, and a copy of the last one. */
static int lines_with_prefix(const char *text, const char *prefix, char *last, size_t cap) {
  int count = 0;
  size_t plen = strlen(prefix);
  for (const char *s = text; *s;) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (len >= plen && strncmp(s, prefix, plen) == 0) {
      count++;
      size_t take = len < cap - 1 ? len : cap - 1;
      memcpy(last, s, take);
      last[take] = 0;
    }
    s += len + (nl ? 1 : 0);
  }
  return count;
}

static void describe(int status, char *buf, size_t n) {
  if (WIFEXITED(status))
    snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, n, "status 0x%x", status);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
    return 2;
  }
  FILE *out = tmpfile(), *err = tmpfile();
  if (!out || !err) {
    perror("misuse_runner: tmpfile");
    return 2;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("misuse_runner: fork");
    return 2;
  }
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core); /* abort() must not spend time writing a core */
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    alarm(20);
    execv(argv[1], argv + 1);
    fprintf(stderr, "misuse_runner: exec %s: %s\n", argv[1], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      perror("misuse_runner: waitpid");
      return 2;
    }
  char *out_text = slurp(out), *err_text = slurp(err);
  if (!out_text || !err_text) {
    fprintf(stderr, "misuse_runner: reading the program's output failed\n");
    return 2;
  }

  char expect[1024] = "", got[1024] = "", how[128];
  int n_expect = lines_with_prefix(out_text, "expect: ", expect, sizeof expect);
  int n_err = lines_with_prefix(err_text, ERROR_PREFIX, got, sizeof got);
  const char *want = expect + strlen("expect: ");
  describe(status, how, sizeof how);

  const char *why = NULL;
  char wanted[1200];
  bool want_exit0 = strcmp(want, "exit 0") == 0;
  if (n_expect != 1) {
    why = n_expect == 0 ? "the program announced no \"expect:\" line"
                        : "the program announced more than one \"expect:\" line";
  } else if (want_exit0) {
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) why = "valid use did not exit 0";
    else if (err_text[0] != 0) why = "valid use wrote to stderr";
  } else if (strncmp(want, ERROR_PREFIX, strlen(ERROR_PREFIX)) != 0) {
    why = "the \"expect:\" line is neither \"exit 0\" nor a \"galleon: error:\" line";
  } else if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)) {
    why = "the program did not die of SIGABRT";
  } else if (n_err != 1) {
    why = n_err == 0 ? "stderr holds no \"galleon: error:\" line"
                     : "stderr holds more than one \"galleon: error:\" line";
  } else if (strcmp(got, want) != 0) {
    why = "the error line differs from the expected one";
  } else {
    snprintf(wanted, sizeof wanted, "%s\n", want);
    if (strcmp(err_text, wanted) != 0) why = "stderr holds more than the error line";
  }

  const char *name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
  if (why == NULL) {
    printf("ok: %s: %s: %s\n", name, how, want_exit0 ? "exit 0, stderr empty" : want);
    return 0;
  }
  printf("FAIL: %s: %s\n", name, why);
  printf("  expected: %s\n", n_expect == 1 ? want : "(no single announcement)");
  printf("  ended:    %s\n", how);
  printf("  stderr:   <<%s>>\n", err_text);
  printf("  stdout:   <<%s>>\n", out_text);
  return 1;
}
