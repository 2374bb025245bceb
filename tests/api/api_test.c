/* api_test.c: the standard allocation surface with glibc semantics, plus the
 * galleon_* extensions.
 *
 * Built three ways from this one source:
 *  - linked to libgalleon.so (test api_linked);
 *  - without galleon, run under LD_PRELOAD=libgalleon.so (TEST_PRELOAD, test
 *    api_preload): galleon_* functions are reached through dlsym only;
 *  - in the sanitizer builds, linked to galleon_code with GALLEON_NO_OVERRIDE: the
 *    standard names are renamed to galleon_* by test_util.h.
 *
 * Checks assert effects, not return codes: mallopt(M_TRIM_THRESHOLD) changes what
 * stays resident, malloc_trim lowers the RSS, the GALLEON_* variables (k/m/g,
 * yes/no/on/off, json, unparsable values) are read as documented, the text and
 * JSON of galleon_stats_print and GALLEON_STATS_AT_EXIT carry every statistic, and
 * blocks from the __libc_* aliases and cfree are Galleon's.  The environment cases
 * run this program again (execve of /proc/self/exe with --child-*).
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "../test_util.h"

/* ---- galleon_* entry points: direct, or looked up when preloaded ---- */
#ifdef TEST_PRELOAD
typedef struct galleon_stats_s {
  size_t mapped, mapped_peak, committed, in_use, segments, segments_cached,
      large_blocks, heaps, heaps_abandoned, purges, purged_bytes, mmap_calls,
      munmap_calls, mremap_calls;
} galleon_stats_t;
#endif

static struct {
  int (*owns)(const void *);
  void (*stats_get)(galleon_stats_t *);
  void (*stats_print)(int, int);
  long (*option_get)(const char *);
  int (*option_set)(const char *, long);
  void (*collect)(void);
  void *(*xmalloc)(size_t);
  void *(*malloc0)(size_t);
  void *(*xmalloc0)(size_t);
  void *(*g_xmalloc)(size_t);
  void *(*g_malloc0)(size_t);
  void *(*g_xmalloc0)(size_t);
  void (*free_sized)(void *, size_t);
  void (*free_aligned_sized)(void *, size_t, size_t);
} G;

static void init_entry_points(void) {
#ifdef TEST_PRELOAD
  *(void **)&G.owns = must_dlsym("galleon_owns");
  *(void **)&G.stats_get = must_dlsym("galleon_stats_get");
  *(void **)&G.stats_print = must_dlsym("galleon_stats_print");
  *(void **)&G.option_get = must_dlsym("galleon_option_get");
  *(void **)&G.option_set = must_dlsym("galleon_option_set");
  *(void **)&G.collect = must_dlsym("galleon_collect");
  *(void **)&G.xmalloc = must_dlsym("xmalloc");
  *(void **)&G.malloc0 = must_dlsym("malloc0");
  *(void **)&G.xmalloc0 = must_dlsym("xmalloc0");
  *(void **)&G.g_xmalloc = must_dlsym("galleon_xmalloc");
  *(void **)&G.g_malloc0 = must_dlsym("galleon_malloc0");
  *(void **)&G.g_xmalloc0 = must_dlsym("galleon_xmalloc0");
  *(void **)&G.free_sized = must_dlsym("free_sized");
  *(void **)&G.free_aligned_sized = must_dlsym("free_aligned_sized");
#else
  G.owns = galleon_owns;
  G.stats_get = galleon_stats_get;
  G.stats_print = galleon_stats_print;
  G.option_get = galleon_option_get;
  G.option_set = galleon_option_set;
  G.collect = galleon_collect;
  G.xmalloc = xmalloc;
  G.malloc0 = malloc0;
  G.xmalloc0 = xmalloc0;
  G.g_xmalloc = galleon_xmalloc;
  G.g_malloc0 = galleon_malloc0;
  G.g_xmalloc0 = galleon_xmalloc0;
  G.free_sized = free_sized;
  G.free_aligned_sized = free_aligned_sized;
#endif
}

/* Sizes chosen at run time so that gcc cannot reason about them. */
static volatile size_t v_huge = (size_t)PTRDIFF_MAX + 1;
static volatile size_t v_sizemax = SIZE_MAX;
static size_t huge_size(void) { return v_huge; }

static size_t page_size;

#define SHOULD_BE_NOMEM(expr)                                                    \
  do {                                                                           \
    errno = 0;                                                                   \
    void *r_ = (expr);                                                           \
    CHECKF(r_ == NULL, "%s returned %p, expected NULL", #expr, r_);             \
    CHECKF(errno == ENOMEM, "%s set errno %d, expected ENOMEM", #expr, errno);   \
  } while (0)

/* ---- Options: the whole table, saved and restored around the checks that change it ---- */
static const char *const option_names[] = {
    "purge_delay_ms", "purge_idle_ms", "purge_window_ms", "purge_decommit", "retain_bytes",
    "segment_cache",  "stats_at_exit", "verbose",         "purge_thread",   "pressure_percent"};
#define OPTION_COUNT (sizeof option_names / sizeof option_names[0])

typedef struct {
  long v[OPTION_COUNT];
} options_t;

static int option_index(const char *name) {
  for (size_t i = 0; i < OPTION_COUNT; i++)
    if (strcmp(option_names[i], name) == 0) return (int)i;
  CHECKF(0, "no option %s in the test's table", name);
  return -1;
}

static void options_save(options_t *o) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    o->v[i] = G.option_get(option_names[i]);
    CHECKF(o->v[i] >= 0, "galleon_option_get(\"%s\") = %ld: unknown option?", option_names[i],
           o->v[i]);
  }
}

static void options_restore(const options_t *o) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    CHECK(G.option_set(option_names[i], o->v[i]) == 0);
    CHECK(G.option_get(option_names[i]) == o->v[i]);
  }
}

static void options_check_same(const options_t *a, const char *after) {
  options_t b;
  options_save(&b);
  for (size_t i = 0; i < OPTION_COUNT; i++)
    CHECKF(a->v[i] == b.v[i], "option %s changed from %ld to %ld by %s", option_names[i], a->v[i],
           b.v[i], after);
}

static void set_option(const char *name, long value) {
  CHECK(G.option_set(name, value) == 0);
  CHECKF(G.option_get(name) == value, "option %s set to %ld reads %ld", name, value,
         G.option_get(name));
}

/* ---- Statistics: every field of galleon_stats_t, by name ---- */
#define STAT_FIELD(f) {#f, offsetof(galleon_stats_t, f)}
static const struct {
  const char *name;
  size_t offset;
} stat_fields[] = {
    STAT_FIELD(mapped),          STAT_FIELD(mapped_peak),  STAT_FIELD(committed),
    STAT_FIELD(in_use),          STAT_FIELD(segments),     STAT_FIELD(segments_cached),
    STAT_FIELD(large_blocks),    STAT_FIELD(heaps),        STAT_FIELD(heaps_abandoned),
    STAT_FIELD(purges),          STAT_FIELD(purged_bytes), STAT_FIELD(mmap_calls),
    STAT_FIELD(munmap_calls),    STAT_FIELD(mremap_calls)};
#define STAT_COUNT (sizeof stat_fields / sizeof stat_fields[0])
/* The table names every field (they are all size_t). */
_Static_assert(sizeof(galleon_stats_t) == STAT_COUNT * sizeof(size_t),
               "galleon_stats_t has a field the test does not know");

static size_t stat_value(const galleon_stats_t *s, size_t i) {
  size_t v;
  memcpy(&v, (const char *)s + stat_fields[i].offset, sizeof v);
  return v;
}

static int stat_index(const char *name, size_t len) {
  for (size_t i = 0; i < STAT_COUNT; i++)
    if (strlen(stat_fields[i].name) == len && memcmp(stat_fields[i].name, name, len) == 0)
      return (int)i;
  return -1;
}

__attribute__((unused)) static size_t in_use_now(void) {
  galleon_stats_t s;
  G.stats_get(&s);
  return s.in_use;
}

/* ---- Running a program (this one again, or python3) and capturing its output ---- */
typedef struct {
  int status;
  size_t out_len, err_len;
  char out[16384]; /* NUL-terminated */
  char err[16384];
} spawn_result_t;

static char *spawn_env[512];

/* The environment of this process without its GALLEON_* variables, plus `extra`
 * (NULL-terminated): a child then sees exactly the options of the case. */
static char *const *env_with(const char *const *extra) {
  extern char **environ;
  size_t n = 0;
  for (char **e = environ; *e != NULL; e++) {
    if (strncmp(*e, "GALLEON_", 8) == 0) continue;
    CHECK(n < 480);
    spawn_env[n++] = *e;
  }
  for (; extra != NULL && *extra != NULL; extra++) {
    CHECK(n < 510);
    spawn_env[n++] = (char *)*extra;
  }
  spawn_env[n] = NULL;
  return spawn_env;
}

static void drain_into(int fd, char *buf, size_t cap, size_t *len, bool *open_) {
  char tmp[4096];
  ssize_t n = read(fd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    *open_ = false;
    return;
  }
  size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
  memcpy(buf + *len, tmp, take);
  *len += take;
  buf[*len] = 0;
}

/* Runs path with argv and envp, `input` on its stdin; captures stdout and stderr.
 * A child still running after 120 s is killed and fails the test. */
static void spawn(const char *path, char *const argv[], char *const envp[], const char *input,
                  spawn_result_t *r) {
  int in[2], out[2], err[2];
  CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(path, argv, envp);
    static const char msg[] = "execve failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (input != NULL) {
    size_t len = strlen(input), done = 0;
    CHECK(len < 60000); /* fits the pipe: written before the output is read */
    while (done < len) {
      ssize_t n = write(in[1], input + done, len - done);
      if (n < 0 && errno == EINTR) continue;
      CHECK(n > 0);
      done += (size_t)n;
    }
  }
  close(in[1]);
  r->out_len = r->err_len = 0;
  r->out[0] = r->err[0] = 0;
  bool out_open = true, err_open = true;
  double deadline = now_s() + 120;
  while (out_open || err_open) {
    struct pollfd p[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
    int n = poll(p, 2, 1000);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0);
    if (n == 0 && now_s() > deadline) {
      kill(pid, SIGKILL);
      CHECKF(0, "%s %s did not finish within 120 s", path, argv[1] ? argv[1] : "");
    }
    if (out_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
      drain_into(out[0], r->out, sizeof r->out, &r->out_len, &out_open);
    if (err_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
      drain_into(err[0], r->err, sizeof r->err, &r->err_len, &err_open);
  }
  close(out[0]);
  close(err[0]);
  while (waitpid(pid, &r->status, 0) < 0) CHECK(errno == EINTR);
}

static spawn_result_t spawned; /* one at a time: too big for the stack of a check */

/* This test program again, in child mode `mode`, with `env` as its GALLEON_*. */
static spawn_result_t *run_self(const char *mode, const char *const *env) {
  char *argv[] = {(char *)"api_test", (char *)mode, NULL};
  spawn("/proc/self/exe", argv, env_with(env), NULL, &spawned);
  char buf[128];
  CHECKF(WIFEXITED(spawned.status) && WEXITSTATUS(spawned.status) == 0,
         "child %s (%s%s) %s; stderr:\n%s", mode, env && env[0] ? env[0] : "",
         env && env[0] && env[1] ? " ..." : "", describe_status(spawned.status, buf, sizeof buf),
         spawned.err);
  return &spawned;
}

static size_t count_substr(const char *s, const char *sub) {
  size_t n = 0, len = strlen(sub);
  for (const char *p = strstr(s, sub); p != NULL; p = strstr(p + len, sub)) n++;
  return n;
}

/* ---- A strict JSON parser (RFC 8259) that keeps the top-level members ---- */
#define JSON_MAX_MEMBERS 32
enum { JSON_INT = 1, JSON_STRING = 2, JSON_OTHER = 3 };
typedef struct {
  const char *p, *end;
  const char *error;
  int members;
  char key[JSON_MAX_MEMBERS][32];
  int kind[JSON_MAX_MEMBERS];
  unsigned long long num[JSON_MAX_MEMBERS]; /* JSON_INT: the value */
  char str[JSON_MAX_MEMBERS][32];           /* JSON_STRING: the value (truncated) */
} json_t;

static int json_fail(json_t *j, const char *why) {
  if (j->error == NULL) j->error = why;
  return 0;
}
static int json_peek(const json_t *j) { return j->p < j->end ? (unsigned char)*j->p : -1; }
static void json_ws(json_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}
static bool json_digit(int c) { return c >= '0' && c <= '9'; }

static int json_string(json_t *j, char *out, size_t cap) {
  size_t n = 0;
  if (json_peek(j) != '"') return json_fail(j, "expected a string");
  j->p++;
  for (;;) {
    int c = json_peek(j);
    if (c < 0) return json_fail(j, "unterminated string");
    j->p++;
    if (c == '"') break;
    if (c < 0x20) return json_fail(j, "control character in a string");
    if (c == '\\') {
      int e = json_peek(j);
      if (e < 0) return json_fail(j, "unterminated escape");
      j->p++;
      if (e == 'u') {
        for (int k = 0; k < 4; k++, j->p++) {
          int h = json_peek(j);
          if (!(json_digit(h) || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
            return json_fail(j, "bad \\u escape");
        }
        c = '?';
      } else if (e != 0 && strchr("\"\\/bfnrt", e) != NULL) {
        c = e;
      } else {
        return json_fail(j, "bad escape");
      }
    }
    if (out != NULL && n + 1 < cap) out[n++] = (char)c;
  }
  if (out != NULL) out[n] = 0;
  return 1;
}

static int json_number(json_t *j, unsigned long long *value, bool *is_int) {
  *value = 0;
  *is_int = true;
  if (json_peek(j) == '-') {
    j->p++;
    *is_int = false;
  }
  if (json_peek(j) == '0') {
    j->p++;
  } else if (json_digit(json_peek(j))) {
    while (json_digit(json_peek(j))) {
      unsigned d = (unsigned)(json_peek(j) - '0');
      if (*value > (ULLONG_MAX - d) / 10) *is_int = false;
      *value = *value * 10 + d;
      j->p++;
    }
  } else {
    return json_fail(j, "bad number");
  }
  if (json_peek(j) == '.') {
    j->p++;
    *is_int = false;
    if (!json_digit(json_peek(j))) return json_fail(j, "bad fraction");
    while (json_digit(json_peek(j))) j->p++;
  }
  if (json_peek(j) == 'e' || json_peek(j) == 'E') {
    j->p++;
    *is_int = false;
    if (json_peek(j) == '+' || json_peek(j) == '-') j->p++;
    if (!json_digit(json_peek(j))) return json_fail(j, "bad exponent");
    while (json_digit(json_peek(j))) j->p++;
  }
  return 1;
}

static int json_value(json_t *j, int depth, int member);

static int json_object(json_t *j, int depth) {
  j->p++; /* '{' */
  json_ws(j);
  if (json_peek(j) == '}') {
    j->p++;
    return 1;
  }
  for (;;) {
    json_ws(j);
    char key[32];
    if (!json_string(j, key, sizeof key)) return 0;
    int member = -1;
    if (depth == 1) {
      if (j->members >= JSON_MAX_MEMBERS) return json_fail(j, "too many members");
      member = j->members++;
      memcpy(j->key[member], key, sizeof key);
      j->kind[member] = JSON_OTHER;
      j->str[member][0] = 0;
    }
    json_ws(j);
    if (json_peek(j) != ':') return json_fail(j, "expected ':'");
    j->p++;
    if (!json_value(j, depth, member)) return 0;
    json_ws(j);
    if (json_peek(j) == ',') {
      j->p++;
      continue;
    }
    if (json_peek(j) == '}') {
      j->p++;
      return 1;
    }
    return json_fail(j, "expected ',' or '}'");
  }
}

static int json_value(json_t *j, int depth, int member) {
  if (depth > 32) return json_fail(j, "nested too deep");
  json_ws(j);
  int c = json_peek(j);
  if (c == '{') return json_object(j, depth + 1);
  if (c == '[') {
    j->p++;
    json_ws(j);
    if (json_peek(j) == ']') {
      j->p++;
      return 1;
    }
    for (;;) {
      if (!json_value(j, depth + 1, -1)) return 0;
      json_ws(j);
      if (json_peek(j) == ',') {
        j->p++;
        continue;
      }
      if (json_peek(j) == ']') {
        j->p++;
        return 1;
      }
      return json_fail(j, "expected ',' or ']'");
    }
  }
  if (c == '"') {
    if (member >= 0) j->kind[member] = JSON_STRING;
    return json_string(j, member >= 0 ? j->str[member] : NULL, sizeof j->str[0]);
  }
  if (c == '-' || json_digit(c)) {
    unsigned long long v;
    bool is_int;
    if (!json_number(j, &v, &is_int)) return 0;
    if (member >= 0 && is_int) {
      j->kind[member] = JSON_INT;
      j->num[member] = v;
    }
    return 1;
  }
  static const char *const literals[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t len = strlen(literals[i]);
    if ((size_t)(j->end - j->p) >= len && memcmp(j->p, literals[i], len) == 0) {
      j->p += len;
      return 1;
    }
  }
  return json_fail(j, "unexpected character");
}

/* Parses `len` bytes as one JSON object and nothing else. */
static int json_parse(json_t *j, const char *text, size_t len) {
  memset(j, 0, sizeof *j);
  j->p = text;
  j->end = text + len;
  json_ws(j);
  if (json_peek(j) != '{') return json_fail(j, "not an object");
  if (!json_value(j, 0, -1)) return 0;
  json_ws(j);
  if (j->p != j->end) return json_fail(j, "trailing characters");
  return 1;
}

static void json_self_test(void) {
  static json_t j;
  static const char *const good[] = {
      "{}", "{\"a\":1}", " {\"a\" : -1.5e+3, \"b\":[1,[2,{}],\"x\\n\\u00e9\"], \"c\":null}\n",
      "{\"t\":true,\"f\":false,\"z\":0}"};
  static const char *const bad[] = {
      "", "[]", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1}x", "{\"a\" 1}", "{a:1}", "{\"a\":1",
      "{\"a\":1.}", "{\"a\":\"x\ty\"}", "{\"a\":\"\\q\"}", "{\"a\":tru}", "{\"a\":1}{}",
      "{\"a\":[1,]}", "{\"a\":+1}"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    CHECKF(json_parse(&j, good[i], strlen(good[i])), "the test's JSON parser rejects %s: %s",
           good[i], j.error);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECKF(!json_parse(&j, bad[i], strlen(bad[i])), "the test's JSON parser accepts %s", bad[i]);
  CHECK(json_parse(&j, good[2], strlen(good[2])) && j.members == 3 && j.kind[0] == JSON_OTHER &&
        strcmp(j.key[1], "b") == 0);
  CHECK(json_parse(&j, "{\"n\":42,\"s\":\"v\"}", 16) && j.kind[0] == JSON_INT && j.num[0] == 42 &&
        j.kind[1] == JSON_STRING && strcmp(j.str[1], "v") == 0);
}

/* python3's json module agrees that `text` is one JSON object with `members`
 * members, when /usr/bin/python3 exists (CI installs it). */
static void python_json_check(const char *text, int members) {
  static const char py[] = "/usr/bin/python3";
  if (access(py, X_OK) != 0) {
    printf("  (no %s: JSON checked by the test's own parser only)\n", py);
    return;
  }
  char *argv[] = {(char *)py, (char *)"-c",
                  (char *)"import json, sys\n"
                          "d = json.load(sys.stdin)\n"
                          "assert isinstance(d, dict), type(d)\n"
                          "print(len(d))\n",
                  NULL};
  spawn(py, argv, env_with(NULL), text, &spawned);
  char buf[128];
  CHECKF(WIFEXITED(spawned.status) && WEXITSTATUS(spawned.status) == 0,
         "python3 json.load rejects \"%s\": %s\n%s", text,
         describe_status(spawned.status, buf, sizeof buf), spawned.err);
  CHECKF(atoi(spawned.out) == members, "python3 counts %s members in \"%s\", expected %d",
         spawned.out, text, members);
}

/* ---- Parsing galleon_stats_print's two formats ---- */

/* Text: "galleon VERSION statistics\n", then "  NAME<spaces>VALUE\n" for every field
 * exactly once.  Fills vals; aborts with `what` on any deviation. */
static void parse_stats_text(const char *text, size_t vals[STAT_COUNT], const char *what) {
  const char *nl = strchr(text, '\n');
  CHECKF(nl != NULL && strncmp(text, "galleon ", 8) == 0 && nl - text > 19 &&
             strncmp(nl - 11, " statistics", 11) == 0,
         "%s: no \"galleon VERSION statistics\" header in:\n%s", what, text);
#ifndef TEST_PRELOAD
  CHECKF(strncmp(text + 8, GALLEON_VERSION_STRING " statistics\n", strlen(GALLEON_VERSION_STRING) + 12) == 0,
         "%s: header does not name version %s:\n%s", what, GALLEON_VERSION_STRING, text);
#endif
  bool seen[STAT_COUNT] = {false};
  for (const char *line = nl + 1; *line != 0;) {
    const char *end = strchr(line, '\n');
    CHECKF(end != NULL, "%s: last line not terminated in:\n%s", what, text);
    CHECKF(line[0] == ' ' && line[1] == ' ', "%s: line without indent: %.*s", what,
           (int)(end - line), line);
    const char *name = line + 2, *c = name;
    while (c < end && ((*c >= 'a' && *c <= 'z') || *c == '_')) c++;
    int idx = stat_index(name, (size_t)(c - name));
    CHECKF(idx >= 0, "%s: unknown field in line: %.*s", what, (int)(end - line), line);
    CHECKF(!seen[idx], "%s: field %s twice", what, stat_fields[idx].name);
    CHECKF(c < end && *c == ' ', "%s: no space after %s", what, stat_fields[idx].name);
    while (c < end && *c == ' ') c++;
    CHECKF(c < end && json_digit(*c), "%s: no value for %s", what, stat_fields[idx].name);
    size_t v = 0;
    while (c < end && json_digit(*c)) v = v * 10 + (size_t)(*c++ - '0');
    CHECKF(c == end, "%s: junk after the value of %s", what, stat_fields[idx].name);
    seen[idx] = true;
    vals[idx] = v;
    line = end + 1;
  }
  for (size_t i = 0; i < STAT_COUNT; i++)
    CHECKF(seen[i], "%s: field %s missing in:\n%s", what, stat_fields[i].name, text);
}

/* JSON: exactly one line holding one object: "galleon" (the version) and every
 * field as an integer, each exactly once, nothing else. */
static void parse_stats_json(const char *text, size_t vals[STAT_COUNT], const char *what) {
  static json_t j;
  size_t len = strlen(text);
  CHECKF(len > 2 && text[len - 1] == '\n' && memchr(text, '\n', len - 1) == NULL,
         "%s: not exactly one line: \"%s\"", what, text);
  CHECKF(json_parse(&j, text, len), "%s: invalid JSON (%s at offset %td): %s", what, j.error,
         j.p - text, text);
  CHECKF(j.members == (int)STAT_COUNT + 1, "%s: %d members, expected %zu: %s", what, j.members,
         STAT_COUNT + 1, text);
  CHECKF(strcmp(j.key[0], "galleon") == 0 && j.kind[0] == JSON_STRING && j.str[0][0] != 0,
         "%s: first member is not \"galleon\":\"VERSION\": %s", what, text);
#ifndef TEST_PRELOAD
  CHECKF(strcmp(j.str[0], GALLEON_VERSION_STRING) == 0, "%s: version \"%s\", expected %s", what,
         j.str[0], GALLEON_VERSION_STRING);
#endif
  bool seen[STAT_COUNT] = {false};
  for (int m = 1; m < j.members; m++) {
    int idx = stat_index(j.key[m], strlen(j.key[m]));
    CHECKF(idx >= 0, "%s: unknown member \"%s\"", what, j.key[m]);
    CHECKF(!seen[idx], "%s: member %s twice", what, j.key[m]);
    CHECKF(j.kind[m] == JSON_INT, "%s: %s is not a non-negative integer", what, j.key[m]);
    seen[idx] = true;
    vals[idx] = (size_t)j.num[m];
  }
  python_json_check(text, (int)STAT_COUNT + 1);
}

/* ---- 0. every standard symbol resolves into libgalleon ---- */
static void test_symbols(void) {
#if !TEST_NO_OVERRIDE
  static const char *const names[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
      "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
      "free_sized", "free_aligned_sized", "malloc_trim", "mallopt", "mallinfo",
      "mallinfo2", "malloc_stats", "malloc_info", "cfree", "__libc_malloc", "__libc_calloc",
      "__libc_realloc", "__libc_free", "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
      "__posix_memalign"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *f = dlsym(RTLD_DEFAULT, names[i]);
    CHECKF(f != NULL, "symbol %s not found", names[i]);
    Dl_info info;
    CHECKF(dladdr(f, &info) != 0 && info.dli_fname != NULL, "dladdr(%s) failed", names[i]);
    CHECKF(strstr(info.dli_fname, "libgalleon") != NULL,
           "symbol %s resolves to %s, not libgalleon", names[i], info.dli_fname);
  }
  /* And the galleon_ API is there too. */
  CHECK(dlsym(RTLD_DEFAULT, "galleon_malloc") != NULL);
  CHECK(dlsym(RTLD_DEFAULT, "galleon_owns") != NULL);
#endif
}

/* ---- 1. malloc / free basics ---- */
static void test_malloc_free(void) {
  /* malloc(0): unique, non-NULL, freeable. */
  void *z[64];
  for (int i = 0; i < 64; i++) {
    z[i] = malloc(0);
    CHECK(z[i] != NULL);
    CHECK(G.owns(z[i]));
    for (int j = 0; j < i; j++) CHECKF(z[i] != z[j], "malloc(0) returned %p twice", z[i]);
  }
  for (int i = 0; i < 64; i++) free(z[i]);

  free(NULL);

  /* Alignment of plain malloc: 16 bytes on x86-64. */
  for (size_t n = 1; n < 5000; n += 7) {
    void *p = malloc(n);
    CHECK(p != NULL);
    CHECKF(((uintptr_t)p & 15) == 0, "malloc(%zu) = %p not 16-byte aligned", n, p);
    memset(p, 0x5a, n);
    free(p);
  }

  /* Sizes beyond PTRDIFF_MAX fail with ENOMEM. */
  SHOULD_BE_NOMEM(malloc(huge_size()));
  SHOULD_BE_NOMEM(malloc(v_sizemax));
  SHOULD_BE_NOMEM(malloc(v_sizemax - 4096));

  /* free preserves errno. */
  size_t sizes[] = {8, 700, 20000, 300000, 5 * MiB, 40 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(sizes[i]);
    CHECK(p != NULL);
    memset(p, 1, sizes[i]);
    errno = 1234;
    free(p);
    CHECKF(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
  }
  errno = 1234;
  free(NULL);
  CHECK(errno == 1234);
}

/* ---- 2. malloc_usable_size ---- */
static void test_usable_size(void) {
  CHECK(malloc_usable_size(NULL) == 0);
  enum { N = 400 };
  static void *blocks[N];
  static size_t usable[N];
  uint64_t rng = 42;
  for (int i = 0; i < N; i++) {
    size_t n;
    switch (i % 4) {
      case 0: n = rng_range(&rng, 1, 256); break;
      case 1: n = rng_range(&rng, 257, 8 * KiB); break;
      case 2: n = rng_range(&rng, 8 * KiB, 128 * KiB); break;
      default: n = (i % 40 == 3) ? rng_range(&rng, 1 * MiB, 4 * MiB) : rng_range(&rng, 1, 64 * KiB); break;
    }
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL);
    usable[i] = malloc_usable_size(blocks[i]);
    CHECKF(usable[i] >= n, "usable size %zu < request %zu", usable[i], n);
    CHECKF(usable[i] <= n + n / 2 + 4096 || usable[i] <= 2 * n + 64,
           "usable size %zu unreasonably large for %zu", usable[i], n);
    pattern_fill(blocks[i], usable[i]);
  }
  /* Interleave more allocations and frees; nothing may overwrite live blocks. */
  for (int i = 0; i < N; i += 3) {
    CHECK_PATTERN(blocks[i], usable[i]);
    free(blocks[i]);
    size_t n = rng_range(&rng, 1, 32 * KiB);
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL);
    usable[i] = malloc_usable_size(blocks[i]);
    CHECK(usable[i] >= n);
    pattern_fill(blocks[i], usable[i]);
  }
  for (int i = 0; i < N; i++) {
    CHECK(malloc_usable_size(blocks[i]) == usable[i]);
    CHECK_PATTERN(blocks[i], usable[i]);
    free(blocks[i]);
  }
}

/* ---- 3. calloc ---- */
static void test_calloc(void) {
  void *p = calloc(0, 0);
  CHECK(p != NULL);
  free(p);
  p = calloc(0, 100);
  CHECK(p != NULL);
  free(p);
  p = calloc(100, 0);
  CHECK(p != NULL);
  free(p);

  /* Overflow of count * size. */
  SHOULD_BE_NOMEM(calloc(v_sizemax / 2 + 2, 2));
  SHOULD_BE_NOMEM(calloc((size_t)1 << 33, (size_t)1 << 33));
  SHOULD_BE_NOMEM(calloc(1, huge_size()));

  /* Zeroed memory even when it is reused: dirty, free, calloc the same sizes. */
  static const size_t sizes[] = {1, 8, 24, 100, 500, 4000, 8192,  /* small */
                                 10000, 65536, 131072,            /* medium */
                                 300000, 1 * MiB, 3 * MiB,        /* large */
                                 24 * MiB};                       /* huge */
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    int count = n <= 8192 ? 200 : n <= 131072 ? 40 : n <= 3 * MiB ? 6 : 2;
    void *blk[200];
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < count; i++) {
        blk[i] = malloc(n);
        CHECK(blk[i] != NULL);
        memset(blk[i], 0xAA, malloc_usable_size(blk[i]));
      }
      for (int i = 0; i < count; i++) free(blk[i]);
      for (int i = 0; i < count; i++) {
        /* Alternate the two argument orders. */
        blk[i] = (i & 1) ? calloc(n, 1) : calloc(1, n);
        CHECK(blk[i] != NULL);
        CHECKF(all_bytes_are(blk[i], n, 0), "calloc(%zu) not zeroed (round %d)", n, round);
        memset(blk[i], 0xAA, malloc_usable_size(blk[i]));
      }
      for (int i = 0; i < count; i++) free(blk[i]);
    }
  }
  /* calloc with count * size products. */
  for (size_t c = 1; c < 5000; c = c * 3 + 1) {
    int *a = calloc(c, sizeof(int));
    CHECK(a != NULL);
    for (size_t i = 0; i < c; i++) CHECK(a[i] == 0);
    for (size_t i = 0; i < c; i++) a[i] = -1;
    free(a);
  }
}

/* ---- 4. realloc ---- */
static void grow_shrink(size_t from, size_t to, uint64_t seed) {
  unsigned char *p = malloc(from);
  CHECK(p != NULL);
  pattern_fill_seed(p, from, seed);
  size_t cur = from;
  /* Growth steps of irregular factors, then the same back down. */
  size_t steps[64];
  int ns = 0;
  for (size_t n = from; n < to && ns < 60; n = n + n / 2 + 13) steps[ns++] = n;
  steps[ns++] = to;
  for (int dir = 0; dir < 2; dir++) {
    for (int k = 0; k < ns; k++) {
      size_t n = dir == 0 ? steps[k] : steps[ns - 1 - k];
      unsigned char *q = realloc(p, n);
      CHECKF(q != NULL, "realloc(%zu -> %zu) failed", cur, n);
      size_t keep = cur < n ? cur : n;
      long bad = pattern_check_seed(q, keep, seed);
      CHECKF(bad < 0, "realloc %zu -> %zu lost contents at offset %ld", cur, n, bad);
      CHECK(malloc_usable_size(q) >= n);
      pattern_fill_seed(q, n, seed);
      p = q;
      cur = n;
    }
  }
  free(p);
}

static void test_realloc(void) {
  /* realloc(NULL, n) is malloc(n). */
  void *p = realloc(NULL, 100);
  CHECK(p != NULL);
  CHECK(malloc_usable_size(p) >= 100);
  memset(p, 3, 100);
  free(p);

  /* realloc(p, 0) frees and returns NULL (glibc semantics). */
  for (int i = 0; i < 1000; i++) {
    p = malloc(64);
    CHECK(p != NULL);
    void *q = realloc(p, 0);
    CHECK(q == NULL);
  }
  {
    galleon_stats_t a, b;
    p = malloc(64 * MiB);
    CHECK(p != NULL);
    G.stats_get(&a);
    void *q = realloc(p, 0);
    CHECK(q == NULL);
    G.stats_get(&b);
    CHECKF(b.in_use + 64 * MiB <= a.in_use,
           "realloc(p, 0) of 64 MiB did not free it: in_use %zu -> %zu", a.in_use, b.in_use);
  }

  /* Contents survive growth and shrinking through all size classes. */
  grow_shrink(1, 8 * KiB, 1);             /* small */
  grow_shrink(100, 128 * KiB, 2);         /* small -> medium */
  grow_shrink(8 * KiB, 4 * MiB, 3);       /* medium -> large */
  grow_shrink(1 * MiB, 48 * MiB, 4);      /* large -> huge */
  grow_shrink(1, 40 * MiB, 5);            /* everything */

  /* In-place shrink and regrow keeps the pointer valid. */
  p = malloc(1000);
  pattern_fill_seed(p, 1000, 9);
  p = realloc(p, 10);
  CHECK(p && pattern_check_seed(p, 10, 9) < 0);
  free(p);

  /* Impossible sizes: NULL + ENOMEM, old block intact. */
  static const size_t olds[] = {48, 5000, 100000, 2 * MiB};
  for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
    p = malloc(olds[i]);
    CHECK(p != NULL);
    pattern_fill_seed(p, olds[i], 77);
    SHOULD_BE_NOMEM(realloc(p, huge_size()));
    SHOULD_BE_NOMEM(realloc(p, v_sizemax));
    CHECKF(pattern_check_seed(p, olds[i], 77) < 0, "failed realloc damaged the block");
    CHECK(malloc_usable_size(p) >= olds[i]);
    p = realloc(p, olds[i] * 2);
    CHECK(p != NULL && pattern_check_seed(p, olds[i], 77) < 0);
    free(p);
  }

  /* reallocarray: overflow checked, otherwise realloc. */
  p = reallocarray(NULL, 10, 10);
  CHECK(p != NULL);
  pattern_fill_seed(p, 100, 5);
  errno = 0;
  void *q = reallocarray(p, v_sizemax / 2 + 2, 2);
  CHECK(q == NULL && errno == ENOMEM);
  CHECK(pattern_check_seed(p, 100, 5) < 0);
  q = reallocarray(p, 1000, 10);
  CHECK(q != NULL && pattern_check_seed(q, 100, 5) < 0);
  CHECK(malloc_usable_size(q) >= 10000);
  free(q);
}

/* ---- 5. aligned allocation ---- */
static void check_aligned(void *p, size_t align, size_t n, const char *fn) {
  CHECKF(p != NULL, "%s(%zu, %zu) failed", fn, align, n);
  CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, %zu) = %p misaligned", fn, align, n, p);
  size_t u = malloc_usable_size(p);
  CHECKF(u >= n, "%s(%zu, %zu): usable %zu", fn, align, n, u);
  CHECK(G.owns(p));
  pattern_fill(p, u);
}

static void test_aligned(void) {
  for (size_t align = 8; align <= 16 * MiB; align *= 2) {
    size_t sizes[] = {1, 8, 24, 100, align - 1, align, align + 1, 3 * align + 5, 70000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      size_t n = sizes[s];
      if (n == 0) continue;
      void *a = NULL, *b, *c, *d = NULL;
      if (align >= sizeof(void *)) {
        void *sentinel = (void *)0x1;
        a = sentinel;
        int rc = posix_memalign(&a, align, n);
        CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", align, n, rc);
        check_aligned(a, align, n, "posix_memalign");
      }
      b = aligned_alloc(align, n);
      check_aligned(b, align, n, "aligned_alloc");
      c = memalign(align, n);
      check_aligned(c, align, n, "memalign");
      if (n % align == 0) {
        d = aligned_alloc(align, n);
        check_aligned(d, align, n, "aligned_alloc");
      }
      /* None of them overlapped another. */
      CHECK_PATTERN(a, malloc_usable_size(a));
      CHECK_PATTERN(b, malloc_usable_size(b));
      CHECK_PATTERN(c, malloc_usable_size(c));
      if (d) CHECK_PATTERN(d, malloc_usable_size(d));
      free(a);
      if (s & 1)
        G.free_aligned_sized(b, align, n); /* b came from aligned_alloc(align, n) */
      else
        free(b);
      free(c);
      free(d);
    }
  }

  /* realloc of aligned blocks keeps their contents (alignment need not survive). */
  for (size_t align = 64; align <= 2 * MiB; align *= 8) {
    void *p = aligned_alloc(align, align);
    CHECK(p != NULL);
    pattern_fill_seed(p, align, align);
    CHECK(G.owns((char *)p + align / 2));
    p = realloc(p, 3 * align + 100);
    CHECK(p != NULL && pattern_check_seed(p, align, align) < 0);
    p = realloc(p, align / 2);
    CHECK(p != NULL && pattern_check_seed(p, align / 2, align) < 0);
    free(p);
  }

  /* posix_memalign errors: EINVAL for a bad alignment, ENOMEM for a huge size;
   * *memptr untouched in both cases. */
  static const size_t bad_aligns[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097,
                                      ((size_t)1 << 40) + 8};
  for (size_t i = 0; i < sizeof bad_aligns / sizeof bad_aligns[0]; i++) {
    void *m = (void *)0xdeadbeef;
    int rc = posix_memalign(&m, bad_aligns[i], 64);
    CHECKF(rc == EINVAL, "posix_memalign(alignment %zu) returned %d", bad_aligns[i], rc);
    CHECK(m == (void *)0xdeadbeef);
  }
  {
    void *m = (void *)0xdeadbeef;
    int rc = posix_memalign(&m, 64, huge_size());
    CHECKF(rc == ENOMEM, "posix_memalign(64, huge) returned %d", rc);
    CHECK(m == (void *)0xdeadbeef);
    rc = posix_memalign(&m, 4096, v_sizemax - 100);
    CHECKF(rc == ENOMEM, "posix_memalign(4096, SIZE_MAX-100) returned %d", rc);
    CHECK(m == (void *)0xdeadbeef);
  }
  SHOULD_BE_NOMEM(aligned_alloc(64, huge_size()));
  SHOULD_BE_NOMEM(memalign(4096, v_sizemax - 10));

  /* posix_memalign(.., 0) gives a freeable pointer (or NULL). */
  {
    void *m = NULL;
    CHECK(posix_memalign(&m, 64, 0) == 0);
    free(m);
  }

  /* valloc and pvalloc. */
  static const size_t vs[] = {1, 100, 4095, 4096, 4097, 10000, 70000, 1 * MiB + 1};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
    size_t n = vs[i];
    void *v = valloc(n);
    check_aligned(v, page_size, n, "valloc");
    void *pv = pvalloc(n);
    size_t rounded = (n + page_size - 1) & ~(page_size - 1);
    check_aligned(pv, page_size, rounded, "pvalloc");
    CHECK_PATTERN(v, malloc_usable_size(v));
    free(v);
    free(pv);
  }
  void *pv0 = pvalloc(0);
  CHECK(pv0 != NULL && ((uintptr_t)pv0 & (page_size - 1)) == 0);
  free(pv0);
  SHOULD_BE_NOMEM(valloc(huge_size()));
  SHOULD_BE_NOMEM(pvalloc(v_sizemax - 10));
}

/* ---- 6. free_sized / free_aligned_sized ---- */
static void test_sized_free(void) {
  galleon_stats_t a, b;
  G.free_sized(NULL, 0);
  G.free_aligned_sized(NULL, 64, 0);
  G.stats_get(&a);
  uint64_t rng = 7;
  for (int i = 0; i < 20000; i++) {
    size_t n = rng_range(&rng, 1, (i % 100 == 0) ? 2 * MiB : 20 * KiB);
    void *p = malloc(n);
    CHECK(p != NULL);
    memset(p, 0x11, n);
    G.free_sized(p, n);
    size_t al = (size_t)16 << (i % 9);
    void *q = aligned_alloc(al, n);
    CHECK(q != NULL && ((uintptr_t)q & (al - 1)) == 0);
    memset(q, 0x22, n);
    G.free_aligned_sized(q, al, n);
  }
  G.stats_get(&b);
  CHECKF(b.in_use <= a.in_use + 1 * MiB, "sized frees leak: in_use %zu -> %zu", a.in_use,
         b.in_use);
}

/* ---- 7. mallinfo, mallinfo2, malloc_stats ---- */
static char captured[16384];

/* Runs fn with stderr redirected to a file; returns what it wrote (in `captured`). */
static size_t capture_stderr_of(void (*fn)(void)) {
  char path[] = "/tmp/galleon_api_stderr_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  CHECK(saved >= 0);
  CHECK(dup2(fd, 2) == 2);
  fn();
  fflush(stderr);
  CHECK(dup2(saved, 2) == 2);
  close(saved);
  off_t len = lseek(fd, 0, SEEK_END);
  CHECK(len >= 0 && (size_t)len < sizeof captured);
  CHECK(pread(fd, captured, (size_t)len, 0) == len);
  captured[len] = 0;
  close(fd);
  return (size_t)len;
}

static void call_malloc_stats(void) { malloc_stats(); }

/* The number after `label` in glibc's malloc_stats layout. */
static size_t stats_number_after(const char *text, const char *label) {
  const char *at = strstr(text, label);
  CHECKF(at != NULL, "malloc_stats: no \"%s\" in:\n%s", label, text);
  return (size_t)strtoull(at + strlen(label), NULL, 10);
}

static void test_glibc_extras(void) {
  size_t big = 64 * MiB;
  test_mallinfo2_t m0 = mallinfo2();
  void *p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  test_mallinfo2_t m1 = mallinfo2();
  CHECKF(m1.uordblks + m1.hblkhd >= m0.uordblks + m0.hblkhd + big,
         "mallinfo2 does not show a 64 MiB block: %zu+%zu -> %zu+%zu", m0.uordblks,
         m0.hblkhd, m1.uordblks, m1.hblkhd);
  CHECKF(m1.hblks >= m0.hblks + 1, "mallinfo2.hblks %zu -> %zu with a 64 MiB block live",
         m0.hblks, m1.hblks);
#if !TEST_NO_OVERRIDE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  free(p);
  struct mallinfo o0 = mallinfo();
  p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  struct mallinfo o1 = mallinfo();
#pragma GCC diagnostic pop
  unsigned long before = (unsigned long)(unsigned)o0.uordblks + (unsigned)o0.hblkhd;
  unsigned long after = (unsigned long)(unsigned)o1.uordblks + (unsigned)o1.hblkhd;
  CHECKF(after >= before + big, "mallinfo does not show a 64 MiB block: %lu -> %lu", before,
         after);
#endif

  /* malloc_stats: glibc's layout (what tools parse), then Galleon's statistics,
   * both showing the live 64 MiB block. */
  size_t n = capture_stderr_of(call_malloc_stats);
  CHECKF(n > 0, "malloc_stats wrote nothing to stderr");
  CHECKF(strncmp(captured, "Arena 0:\nsystem bytes     = ", 28) == 0,
         "malloc_stats does not start with glibc's \"Arena 0:\" block:\n%s", captured);
  const char *total = strstr(captured, "Total (incl. mmap):\n");
  CHECKF(total != NULL, "malloc_stats: no \"Total (incl. mmap):\" in:\n%s", captured);
  size_t total_in_use = stats_number_after(total, "in use bytes     = ");
  size_t total_system = stats_number_after(total, "system bytes     = ");
  CHECKF(total_in_use >= big && total_system >= total_in_use,
         "malloc_stats: total system %zu, in use %zu with a 64 MiB block live", total_system,
         total_in_use);
  CHECKF(stats_number_after(captured, "max mmap regions = ") >= 1,
         "malloc_stats: no mmap region with a 64 MiB block live");
  const char *own = strstr(captured, "galleon ");
  CHECKF(own != NULL, "malloc_stats: no Galleon statistics after glibc's layout:\n%s", captured);
  size_t vals[STAT_COUNT];
  parse_stats_text(own, vals, "malloc_stats");
  CHECKF(vals[stat_index("in_use", 6)] >= big, "malloc_stats: in_use %zu with a 64 MiB block live",
         vals[stat_index("in_use", 6)]);

  free(p);
  test_mallinfo2_t m2 = mallinfo2();
  CHECKF(m2.uordblks + m2.hblkhd + big <= m1.uordblks + m1.hblkhd + 1 * MiB,
         "mallinfo2 still counts the freed 64 MiB block");
}

/* ---- 7b. mallopt: M_TRIM_THRESHOLD is retain_bytes and changes what stays resident ---- */
static void *churn_blocks[16384];

typedef struct {
  long committed; /* bytes: galleon_stats_t.committed after minus before */
  long rss;       /* bytes: the kernel's resident set after minus before */
} kept_t;

/* From a trimmed heap: allocates `total` bytes in blocks of `block` bytes, touches
 * them, frees them all, and says how much more is committed and resident than
 * before. */
static void churn(size_t total, size_t block, kept_t *kept) {
  size_t n = total / block;
  CHECK(n <= sizeof churn_blocks / sizeof churn_blocks[0]);
  memset(churn_blocks, 0, sizeof churn_blocks); /* resident before the baseline */
  G.collect();
  galleon_stats_t s0, s1;
  G.stats_get(&s0);
  size_t rss0 = rss_bytes();
  for (size_t i = 0; i < n; i++) {
    churn_blocks[i] = malloc(block);
    CHECK(churn_blocks[i] != NULL);
    memset(churn_blocks[i], 0x5c, block);
  }
  for (size_t i = 0; i < n; i++) free(churn_blocks[i]);
  G.stats_get(&s1);
  size_t rss1 = rss_bytes();
  kept->committed = (long)s1.committed - (long)s0.committed;
  kept->rss = (long)rss1 - (long)rss0;
}

static void test_mallopt(void) {
  options_t saved;
  options_save(&saved);

  /* M_TRIM_THRESHOLD sets retain_bytes; -1 (glibc: "never trim") is its maximum. */
  static const int thresholds[] = {256 * 1024, 0, 1, 3 << 20, INT_MAX};
  for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++) {
    CHECK(mallopt(M_TRIM_THRESHOLD, thresholds[i]) == 1);
    CHECKF(G.option_get("retain_bytes") == thresholds[i],
           "mallopt(M_TRIM_THRESHOLD, %d): retain_bytes is %ld", thresholds[i],
           G.option_get("retain_bytes"));
  }
  CHECK(G.option_set("retain_bytes", LONG_MAX) == 0);
  long max = G.option_get("retain_bytes");
  CHECKF(max > INT_MAX, "retain_bytes set to LONG_MAX reads %ld", max);
  CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1);
  CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);
  CHECKF(G.option_get("retain_bytes") == max,
         "mallopt(M_TRIM_THRESHOLD, -1): retain_bytes is %ld, the maximum is %ld",
         G.option_get("retain_bytes"), max);

  /* glibc's other parameters are accepted and change nothing; unknown ones fail. */
  CHECK(mallopt(M_TRIM_THRESHOLD, 123456) == 1);
  options_t before;
  options_save(&before);
  static const struct {
    int param, value;
    const char *name;
  } others[] = {{M_MXFAST, 64, "M_MXFAST"},           {M_TOP_PAD, 1 << 20, "M_TOP_PAD"},
                {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD"}, {M_MMAP_MAX, 0, "M_MMAP_MAX"},
                {M_CHECK_ACTION, 3, "M_CHECK_ACTION"},   {M_PERTURB, 0xAA, "M_PERTURB"},
                {M_ARENA_TEST, 2, "M_ARENA_TEST"},       {M_ARENA_MAX, 1, "M_ARENA_MAX"}};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    CHECKF(mallopt(others[i].param, others[i].value) == 1, "mallopt(%s) not accepted",
           others[i].name);
    options_check_same(&before, others[i].name);
  }
  CHECK(mallopt(12345, 1) == 0);
  options_check_same(&before, "mallopt(12345, 1)");

  /* The effect.  Nothing purged for the recent demand (window 0), excess purged at
   * once (delay 0), no idle purge during the check, purges drop the RSS at once, no
   * purge for the cgroup's memory pressure (a CI container may be near its limit). */
  set_option("pressure_percent", 0);
  set_option("purge_window_ms", 0);
  set_option("purge_delay_ms", 0);
  set_option("purge_idle_ms", 60000);
  set_option("purge_decommit", 1);
  sleep_ms(100); /* a purger round that read the old options is over */
  const size_t total = 8 * MiB;
  kept_t hi, lo;
  for (int attempt = 1;; attempt++) {
    CHECK(mallopt(M_TRIM_THRESHOLD, 64 * MiB) == 1);
    churn(total, 1000, &hi);
    if (hi.committed >= (long)(6 * MiB) && hi.rss >= (long)(6 * MiB)) break;
    /* Only a purger round that started under the old options can explain a miss. */
    CHECKF(attempt < 3,
           "M_TRIM_THRESHOLD 64 MiB: after freeing 8 MiB of small blocks only %ld KiB stay "
           "committed and %ld KiB resident (3 tries)", hi.committed / 1024, hi.rss / 1024);
    sleep_ms(200);
  }
  CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1);
  churn(total, 1000, &lo);
  printf("  mallopt(M_TRIM_THRESHOLD): after freeing 8 MiB, 64 MiB keeps %ld KiB committed / %ld "
         "KiB resident, 0 keeps %ld / %ld KiB\n",
         hi.committed / 1024, hi.rss / 1024, lo.committed / 1024, lo.rss / 1024);
  CHECKF(lo.committed <= (long)(1 * MiB),
         "M_TRIM_THRESHOLD 0, no window, no delay: %ld KiB stay committed after freeing 8 MiB",
         lo.committed / 1024);
  CHECKF(lo.rss + (long)(4 * MiB) <= hi.rss,
         "M_TRIM_THRESHOLD 0 keeps %ld KiB resident, 64 MiB keeps %ld KiB: no difference",
         lo.rss / 1024, hi.rss / 1024);
  options_restore(&saved);
}

/* ---- 7c. malloc_trim and galleon_collect: what is kept for reuse goes back now ---- */
static void test_malloc_trim(void) {
  options_t saved;
  options_save(&saved);
  /* Keep everything that is freed (a big threshold, a long delay, no idle purge, a
   * segment cache, no purge for the cgroup's memory pressure), and let purges
   * lower the RSS at once. */
  set_option("pressure_percent", 0);
  set_option("purge_window_ms", 1000);
  set_option("purge_delay_ms", 10000);
  set_option("purge_idle_ms", 60000);
  set_option("purge_decommit", 1);
  set_option("segment_cache", 32);
  CHECK(mallopt(M_TRIM_THRESHOLD, 64 * MiB) == 1);
  sleep_ms(100); /* a purger round that read the old options is over */
  const size_t small_total = 16 * MiB, large = 16 * MiB, drop = 24 * MiB;
  memset(churn_blocks, 0, sizeof churn_blocks);
  for (int use_collect = 0; use_collect < 2; use_collect++) {
    const char *how = use_collect ? "galleon_collect()" : "malloc_trim(0)";
    size_t rss0 = 0, rss1 = 0;
    galleon_stats_t s1, s2;
    for (int attempt = 1;; attempt++) {
      G.collect();
      rss0 = rss_bytes();
      size_t n = small_total / 2000;
      for (size_t i = 0; i < n; i++) {
        churn_blocks[i] = malloc(2000);
        CHECK(churn_blocks[i] != NULL);
        memset(churn_blocks[i], 0x3a, 2000);
      }
      void *big = malloc(large);
      CHECK(big != NULL);
      memset(big, 0x3b, large);
      for (size_t i = 0; i < n; i++) free(churn_blocks[i]);
      free(big);
      G.stats_get(&s1);
      rss1 = rss_bytes();
      if (rss1 >= rss0 + drop && s1.committed >= drop) break;
      CHECKF(attempt < 3,
             "freed 16 MiB of small blocks and a 16 MiB block under a 64 MiB threshold, but "
             "the RSS only went %zu -> %zu KiB (3 tries): nothing left for %s", rss0 / 1024,
             rss1 / 1024, how);
      sleep_ms(200);
    }
    if (use_collect) {
      G.collect();
    } else {
      int rc = malloc_trim(0);
      CHECKF(rc == 1, "malloc_trim(0) returned %d with %zu KiB to return", rc,
             (rss1 - rss0) / 1024);
    }
    size_t rss2 = rss_bytes();
    G.stats_get(&s2);
    test_mallinfo2_t m = mallinfo2();
    printf("  %s: RSS %zu -> %zu KiB, committed %zu -> %zu KiB\n", how, rss1 / 1024, rss2 / 1024,
           s1.committed / 1024, s2.committed / 1024);
    CHECKF(rss2 + drop <= rss1, "%s lowered the RSS only from %zu to %zu KiB", how, rss1 / 1024,
           rss2 / 1024);
    CHECKF(s2.committed + drop <= s1.committed, "%s: committed %zu -> %zu KiB", how,
           s1.committed / 1024, s2.committed / 1024);
    CHECKF(s2.purged_bytes > s1.purged_bytes && s2.munmap_calls > s1.munmap_calls,
           "%s: purged bytes %zu -> %zu, munmaps %zu -> %zu", how, s1.purged_bytes,
           s2.purged_bytes, s1.munmap_calls, s2.munmap_calls);
    CHECKF(s2.segments_cached == 0, "%s left %zu segments in the cache", how, s2.segments_cached);
    CHECKF(m.keepcost == 0, "%s left %zu bytes of free memory resident (mallinfo2.keepcost)", how,
           (size_t)m.keepcost);
    int rc = malloc_trim(0);
    CHECKF(rc == 0, "malloc_trim(0) right after %s returned %d: it had still something to return",
           how, rc);
  }
  /* The pad is accepted (Galleon keeps nothing at a heap top). */
  int rc = malloc_trim(1 * MiB);
  CHECKF(rc == 0 || rc == 1, "malloc_trim(1 MiB) returned %d", rc);
  options_restore(&saved);
}

/* ---- 8. xmalloc / malloc0 / xmalloc0 ---- */
static void child_xmalloc_huge(void *arg) {
  void *(*fn)(size_t) = *(void *(**)(size_t))arg;
  void *p = fn(v_sizemax);
  /* Not reached when the helper works. */
  fprintf(stderr, "xmalloc(SIZE_MAX) returned %p\n", p);
  _exit(3);
}

static void check_xmalloc_fails(void *(*fn)(size_t), const char *name) {
  child_result_t *r = malloc(sizeof *r);
  CHECK(r != NULL);
  CHECK(run_child(child_xmalloc_huge, &fn, 20, r) == 0);
  char buf[128];
  CHECKF(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 1,
         "%s(SIZE_MAX): child %s, stderr: %s", name, describe_status(r->status, buf, sizeof buf),
         r->err);
  size_t lines = 0;
  for (size_t i = 0; i < r->err_len; i++) lines += r->err[i] == '\n';
  CHECKF(lines == 1 && r->err_len > 1 && r->err[r->err_len - 1] == '\n',
         "%s(SIZE_MAX) must print exactly one line on stderr, got: \"%s\"", name, r->err);
  free(r);
}

static void check_zeroing(void *(*fn)(size_t), const char *name) {
  static const size_t sizes[] = {1, 64, 1000, 20000, 200000, 3 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *d[8];
    for (int k = 0; k < 8; k++) {
      d[k] = malloc(sizes[i]);
      CHECK(d[k]);
      memset(d[k], 0xAA, malloc_usable_size(d[k]));
    }
    for (int k = 0; k < 8; k++) free(d[k]);
    for (int k = 0; k < 8; k++) {
      d[k] = fn(sizes[i]);
      CHECKF(d[k] != NULL, "%s(%zu) failed", name, sizes[i]);
      CHECKF(all_bytes_are(d[k], sizes[i], 0), "%s(%zu) not zeroed", name, sizes[i]);
      CHECK(malloc_usable_size(d[k]) >= sizes[i]);
    }
    for (int k = 0; k < 8; k++) free(d[k]);
  }
}

static void test_never_fail(void) {
  void *p = G.xmalloc(100);
  CHECK(p != NULL && G.owns(p) && malloc_usable_size(p) >= 100);
  memset(p, 1, 100);
  free(p);
  p = G.g_xmalloc(5000);
  CHECK(p != NULL && G.owns(p));
  free(p);
  check_zeroing(G.malloc0, "malloc0");
  check_zeroing(G.xmalloc0, "xmalloc0");
  check_zeroing(G.g_malloc0, "galleon_malloc0");
  check_zeroing(G.g_xmalloc0, "galleon_xmalloc0");
  check_xmalloc_fails(G.xmalloc, "xmalloc");
  check_xmalloc_fails(G.xmalloc0, "xmalloc0");
  check_xmalloc_fails(G.g_xmalloc, "galleon_xmalloc");
  /* malloc0 fails softly. */
  errno = 0;
  CHECK(G.malloc0(v_sizemax) == NULL && errno == ENOMEM);
}

/* ---- 9. galleon_owns, stats, options, collect ---- */
static int a_static_variable;

static void test_introspection(void) {
  int on_stack = 0;
  CHECK(!G.owns(&on_stack));
  CHECK(!G.owns(&a_static_variable));
  CHECK(!G.owns(NULL));
  CHECK(!G.owns((void *)test_introspection));
  void *m = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  CHECK(!G.owns(m));
  CHECK(!G.owns((char *)m + 4096));
  munmap(m, 1 * MiB);

  static const size_t sizes[] = {1, 100, 5000, 100000, 2 * MiB, 30 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = malloc(sizes[i]);
    CHECK(p != NULL);
    CHECKF(G.owns(p), "galleon_owns(malloc(%zu)) is false", sizes[i]);
    CHECKF(G.owns(p + sizes[i] - 1), "galleon_owns(interior of malloc(%zu)) is false", sizes[i]);
    free(p);
  }

  galleon_stats_t s0, s1, s2;
  G.stats_get(&s0);
  CHECK(s0.mapped_peak >= s0.mapped);
  CHECK(s0.committed <= s0.mapped);
  CHECK(s0.in_use <= s0.mapped);
  CHECK(s0.heaps >= 1);
  CHECK(s0.mmap_calls >= 1);
  size_t big = 48 * MiB;
  void *p = malloc(big);
  CHECK(p != NULL);
  memset(p, 1, big);
  void *smalls[100];
  for (int i = 0; i < 100; i++) smalls[i] = malloc(1000);
  G.stats_get(&s1);
  CHECKF(s1.in_use >= s0.in_use + big + 100 * 1000, "in_use %zu -> %zu", s0.in_use, s1.in_use);
  CHECK(s1.mapped >= s1.in_use);
  CHECK(s1.mapped_peak >= s1.mapped);
  CHECK(s1.committed <= s1.mapped);
  CHECK(s1.large_blocks >= s0.large_blocks + 1);
  CHECK(s1.segments >= 1);
  CHECK(s1.mmap_calls >= s0.mmap_calls);
  free(p);
  for (int i = 0; i < 100; i++) free(smalls[i]);
  G.stats_get(&s2);
  CHECKF(s2.in_use + big <= s1.in_use, "in_use %zu -> %zu after freeing", s1.in_use, s2.in_use);
  CHECK(s2.large_blocks + 1 <= s1.large_blocks);
  CHECK(s2.mapped_peak >= s1.mapped_peak);

  /* Options: known names set and read back; unknown names rejected and not read. */
  options_t saved;
  options_save(&saved);
  long d = G.option_get("purge_delay_ms");
  CHECK(G.option_set("purge_delay_ms", d) == 0);
  CHECK(G.option_get("purge_delay_ms") == d);
  CHECK(G.option_set("retain_bytes", 12345678) == 0);
  CHECK(G.option_get("retain_bytes") == 12345678);
  CHECK(G.option_set("no_such_option", 1) == -1);
  CHECK(G.option_get("no_such_option") == -1);
  CHECK(G.option_set(NULL, 1) == -1);
  options_restore(&saved);

  /* collect: purges everything free; live blocks survive it. */
  void *keep = malloc(300);
  pattern_fill(keep, 300);
  void *gone = malloc(3 * MiB);
  CHECK(gone != NULL);
  memset(gone, 7, 3 * MiB);
  free(gone);
  G.collect();
  galleon_stats_t s3;
  G.stats_get(&s3);
  test_mallinfo2_t mi = mallinfo2();
  CHECK(s3.committed <= s3.mapped);
  CHECKF(s3.segments_cached == 0, "galleon_collect left %zu cached segments", s3.segments_cached);
  CHECKF(mi.keepcost == 0, "galleon_collect left %zu free bytes resident", (size_t)mi.keepcost);
  CHECK(G.owns(keep));
  CHECK_PATTERN(keep, 300);
  free(keep);
}

/* ---- 9b. galleon_stats_print: text and JSON, every field, the values of the moment ---- */
static char stats_text[8192];

/* Prints into a pipe between two galleon_stats_get snapshots. */
static void print_stats_between(int json, galleon_stats_t *before, galleon_stats_t *after) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  G.stats_get(before);
  G.stats_print(fds[1], json);
  G.stats_get(after);
  close(fds[1]);
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fds[0], stats_text + len, sizeof stats_text - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0);
    if (n == 0) break;
    len += (size_t)n;
    CHECK(len < sizeof stats_text - 1);
  }
  stats_text[len] = 0;
  close(fds[0]);
}

/* Each printed value lies between the two snapshots around the print (equal to
 * both when nothing changed meanwhile). */
static void check_printed(const size_t vals[STAT_COUNT], const galleon_stats_t *a,
                          const galleon_stats_t *b, const char *what) {
  for (size_t i = 0; i < STAT_COUNT; i++) {
    size_t x = stat_value(a, i), y = stat_value(b, i);
    size_t lo = x < y ? x : y, hi = x < y ? y : x;
    CHECKF(vals[i] >= lo && vals[i] <= hi,
           "%s prints %s = %zu; galleon_stats_get says %zu before and %zu after", what,
           stat_fields[i].name, vals[i], x, y);
  }
}

static void test_stats_print(void) {
  json_self_test();
  const int i_in_use = stat_index("in_use", 6), i_large = stat_index("large_blocks", 12);
  void *big = malloc(6 * MiB);
  CHECK(big != NULL);
  memset(big, 1, 6 * MiB);
  void *smalls[200];
  for (int i = 0; i < 200; i++) {
    smalls[i] = malloc(300);
    CHECK(smalls[i] != NULL);
    memset(smalls[i], 2, 300);
  }
  size_t printed_in_use[2];
  for (int json = 0; json < 2; json++) {
    const char *what = json ? "galleon_stats_print(fd, 1)" : "galleon_stats_print(fd, 0)";
    galleon_stats_t a, b;
    size_t vals[STAT_COUNT];
    print_stats_between(json, &a, &b);
    if (json)
      parse_stats_json(stats_text, vals, what);
    else
      parse_stats_text(stats_text, vals, what);
    check_printed(vals, &a, &b, what);
    CHECKF(vals[i_in_use] >= 6 * MiB + 200 * 300, "%s: in_use %zu with 6 MiB live", what,
           vals[i_in_use]);
    CHECKF(vals[i_large] >= 1, "%s: no large block with 6 MiB live", what);
    printed_in_use[json] = vals[i_in_use];
  }
  free(big);
  for (int i = 0; i < 200; i++) free(smalls[i]);
  /* The output follows the program: after the frees both formats show less. */
  for (int json = 0; json < 2; json++) {
    galleon_stats_t a, b;
    size_t vals[STAT_COUNT];
    print_stats_between(json, &a, &b);
    if (json)
      parse_stats_json(stats_text, vals, "galleon_stats_print(fd, 1) after frees");
    else
      parse_stats_text(stats_text, vals, "galleon_stats_print(fd, 0) after frees");
    check_printed(vals, &a, &b, "galleon_stats_print after frees");
    CHECKF(vals[i_in_use] + 6 * MiB <= printed_in_use[json],
           "galleon_stats_print(fd, %d): in_use %zu -> %zu after freeing 6 MiB", json,
           printed_in_use[json], vals[i_in_use]);
  }
}

/* ---- 10. the GALLEON_* variables (each case is this program run again) ---- */

/* Child mode --child-options: prints every option as name=value. */
static int child_print_options(void) {
  for (size_t i = 0; i < OPTION_COUNT; i++)
    printf("%s=%ld\n", option_names[i], G.option_get(option_names[i]));
  return 0;
}

static void read_child_options(const spawn_result_t *r, long vals[OPTION_COUNT], const char *what) {
  bool seen[OPTION_COUNT] = {false};
  for (const char *line = r->out; *line != 0;) {
    const char *end = strchr(line, '\n');
    CHECKF(end != NULL, "%s: unterminated line in:\n%s", what, r->out);
    const char *eq = memchr(line, '=', (size_t)(end - line));
    CHECKF(eq != NULL, "%s: bad line in:\n%s", what, r->out);
    int idx = -1;
    for (size_t i = 0; i < OPTION_COUNT; i++)
      if (strlen(option_names[i]) == (size_t)(eq - line) &&
          memcmp(option_names[i], line, (size_t)(eq - line)) == 0)
        idx = (int)i;
    CHECKF(idx >= 0 && !seen[idx], "%s: unexpected line in:\n%s", what, r->out);
    seen[idx] = true;
    vals[idx] = strtol(eq + 1, NULL, 10);
    line = end + 1;
  }
  for (size_t i = 0; i < OPTION_COUNT; i++)
    CHECKF(seen[i], "%s: option %s not printed:\n%s", what, option_names[i], r->out);
}

static const struct env_case {
  const char *env[4]; /* NULL-terminated */
  struct {
    const char *name;
    long value;
  } expect[4];        /* options that differ from the defaults; NULL-terminated */
  const char *warned; /* the variable reported unparsable, or NULL */
} env_cases[] = {
    /* Sizes: plain, k, m, g. */
    {{"GALLEON_RETAIN_BYTES=3m"}, {{"retain_bytes", 3L << 20}}, NULL},
    {{"GALLEON_RETAIN_BYTES=2k"}, {{"retain_bytes", 2L << 10}}, NULL},
    {{"GALLEON_RETAIN_BYTES=1g"}, {{"retain_bytes", 1L << 30}}, NULL},
    {{"GALLEON_RETAIN_BYTES=123457"}, {{"retain_bytes", 123457}}, NULL},
    {{"GALLEON_RETAIN_BYTES=0"}, {{"retain_bytes", 0}}, NULL},
    {{"GALLEON_PURGE_DELAY_MS=7", "GALLEON_SEGMENT_CACHE=5"},
     {{"purge_delay_ms", 7}, {"segment_cache", 5}}, NULL},
    {{"GALLEON_PURGE_DELAY_MS=0", "GALLEON_SEGMENT_CACHE=0", "GALLEON_PURGE_WINDOW_MS=250"},
     {{"purge_delay_ms", 0}, {"segment_cache", 0}, {"purge_window_ms", 250}}, NULL},
    {{"GALLEON_PURGE_IDLE_MS=2500", "GALLEON_PRESSURE_PERCENT=50"},
     {{"purge_idle_ms", 2500}, {"pressure_percent", 50}}, NULL},
    {{"GALLEON_PRESSURE_PERCENT=0"}, {{"pressure_percent", 0}}, NULL},
    /* Switches: yes/no/on/off and numbers. */
    {{"GALLEON_PURGE_THREAD=no"}, {{"purge_thread", 0}}, NULL},
    {{"GALLEON_PURGE_THREAD=off"}, {{"purge_thread", 0}}, NULL},
    {{"GALLEON_PURGE_THREAD=0"}, {{"purge_thread", 0}}, NULL},
    {{"GALLEON_PURGE_THREAD=yes"}, {{"purge_thread", 1}}, NULL},
    {{"GALLEON_PURGE_THREAD=on"}, {{"purge_thread", 1}}, NULL},
    {{"GALLEON_PURGE_DECOMMIT=off", "GALLEON_VERBOSE=on"},
     {{"purge_decommit", 0}, {"verbose", 1}}, NULL},
    {{"GALLEON_PURGE_DECOMMIT=no", "GALLEON_VERBOSE=yes"},
     {{"purge_decommit", 0}, {"verbose", 1}}, NULL},
    {{"GALLEON_PURGE_DECOMMIT=0", "GALLEON_VERBOSE=1"}, {{"purge_decommit", 0}, {"verbose", 1}},
     NULL},
    {{"GALLEON_STATS_AT_EXIT=json"}, {{"stats_at_exit", 2}}, NULL},
    {{"GALLEON_STATS_AT_EXIT=1"}, {{"stats_at_exit", 1}}, NULL},
    /* Unparsable: one warning line, the default kept, the other variables still read. */
    {{"GALLEON_RETAIN_BYTES=12x"}, {{NULL, 0}}, "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_RETAIN_BYTES=3mb"}, {{NULL, 0}}, "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_RETAIN_BYTES=-5"}, {{NULL, 0}}, "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_RETAIN_BYTES=1.5m"}, {{NULL, 0}}, "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_RETAIN_BYTES=m"}, {{NULL, 0}}, "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_RETAIN_BYTES=lots", "GALLEON_SEGMENT_CACHE=5"}, {{"segment_cache", 5}},
     "GALLEON_RETAIN_BYTES"},
    {{"GALLEON_PURGE_DELAY_MS=soon"}, {{NULL, 0}}, "GALLEON_PURGE_DELAY_MS"},
    {{"GALLEON_SEGMENT_CACHE=5q"}, {{NULL, 0}}, "GALLEON_SEGMENT_CACHE"},
    {{"GALLEON_PURGE_THREAD=maybe"}, {{NULL, 0}}, "GALLEON_PURGE_THREAD"},
    {{"GALLEON_STATS_AT_EXIT=xml", "GALLEON_PURGE_DELAY_MS=7"}, {{"purge_delay_ms", 7}},
     "GALLEON_STATS_AT_EXIT"},
};

static void test_env_cases(void) {
  long defaults[OPTION_COUNT];
  spawn_result_t *r = run_self("--child-options", NULL);
  read_child_options(r, defaults, "no GALLEON_* variable");
  CHECKF(r->err_len == 0, "no GALLEON_* variable, yet stderr says: %s", r->err);
  /* The documented defaults (README.md, "Options"). */
  static const struct {
    const char *name;
    long value;
  } documented[] = {{"purge_window_ms", 1000}, {"purge_delay_ms", 10},  {"purge_idle_ms", 100},
                    {"retain_bytes", 1L << 20}, {"pressure_percent", 90}, {"purge_decommit", 1},
                    {"segment_cache", 32},      {"purge_thread", 1},      {"stats_at_exit", 0},
                    {"verbose", 0}};
  for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
    CHECKF(defaults[option_index(documented[i].name)] == documented[i].value,
           "default %s is %ld, README.md says %ld", documented[i].name,
           defaults[option_index(documented[i].name)], documented[i].value);

  for (size_t c = 0; c < sizeof env_cases / sizeof env_cases[0]; c++) {
    const struct env_case *k = &env_cases[c];
    char what[256];
    snprintf(what, sizeof what, "%s%s%s%s%s", k->env[0], k->env[1] ? " " : "",
             k->env[1] ? k->env[1] : "", k->env[2] ? " " : "", k->env[2] ? k->env[2] : "");
    long expected[OPTION_COUNT], got[OPTION_COUNT];
    memcpy(expected, defaults, sizeof expected);
    for (int e = 0; e < 4 && k->expect[e].name != NULL; e++)
      expected[option_index(k->expect[e].name)] = k->expect[e].value;
    r = run_self("--child-options", k->env);
    read_child_options(r, got, what);
    for (size_t i = 0; i < OPTION_COUNT; i++)
      CHECKF(got[i] == expected[i], "%s: option %s is %ld, expected %ld", what, option_names[i],
             got[i], expected[i]);
    if (k->warned != NULL) {
      char line[128];
      snprintf(line, sizeof line, "galleon: warning: ignoring unparsable %s\n", k->warned);
      CHECKF(strstr(r->err, line) != NULL && count_substr(r->err, "galleon: warning") == 1,
             "%s: expected exactly the warning \"%.*s\" on stderr, got: \"%s\"", what,
             (int)strlen(line) - 1, line, r->err);
    } else {
      CHECKF(strstr(r->err, "warning") == NULL, "%s: unexpected warning on stderr: %s", what,
             r->err);
    }
  }
  printf("  %zu GALLEON_* environments read as documented\n",
         sizeof env_cases / sizeof env_cases[0]);
}

/* ---- 10b. GALLEON_STATS_AT_EXIT: the statistics on stderr when the program exits ---- */

/* Child mode --child-exit-stats: 5 MiB and 100 small blocks still live at exit. */
static void *volatile exit_live[101];
static int child_exit_stats(void) {
  exit_live[0] = malloc(5 * MiB);
  CHECK(exit_live[0] != NULL);
  memset(exit_live[0], 1, 5 * MiB);
  for (int i = 1; i <= 100; i++) {
    exit_live[i] = malloc(1000);
    CHECK(exit_live[i] != NULL);
    memset(exit_live[i], 2, 1000);
  }
  return 0; /* exit() runs Galleon's destructor */
}

static void check_exit_values(const size_t vals[STAT_COUNT], const char *what) {
#define V(name) vals[stat_index(#name, strlen(#name))]
  CHECKF(V(in_use) >= 5 * MiB + 100 * 1000, "%s: in_use %zu at exit with 5 MiB live", what,
         V(in_use));
  CHECKF(V(large_blocks) >= 1 && V(segments) >= 1 && V(heaps) >= 1 && V(mmap_calls) >= 1,
         "%s: large_blocks %zu, segments %zu, heaps %zu, mmap_calls %zu", what, V(large_blocks),
         V(segments), V(heaps), V(mmap_calls));
  CHECKF(V(mapped) >= V(in_use) && V(mapped_peak) >= V(mapped) && V(committed) >= 5 * MiB &&
             V(committed) <= V(mapped),
         "%s: mapped %zu, peak %zu, committed %zu, in_use %zu", what, V(mapped), V(mapped_peak),
         V(committed), V(in_use));
#undef V
}

static void test_stats_at_exit(void) {
  static const char *const text_env[] = {"GALLEON_STATS_AT_EXIT=1", NULL};
  static const char *const json_env[] = {"GALLEON_STATS_AT_EXIT=json", NULL};
  static const char *const off_env[] = {"GALLEON_STATS_AT_EXIT=0", NULL};
  size_t vals[STAT_COUNT];

  spawn_result_t *r = run_self("--child-exit-stats", text_env);
  CHECKF(r->out_len == 0, "GALLEON_STATS_AT_EXIT=1 wrote on stdout: %s", r->out);
  parse_stats_text(r->err, vals, "GALLEON_STATS_AT_EXIT=1 (stderr)");
  check_exit_values(vals, "GALLEON_STATS_AT_EXIT=1");

  r = run_self("--child-exit-stats", json_env);
  CHECKF(r->out_len == 0, "GALLEON_STATS_AT_EXIT=json wrote on stdout: %s", r->out);
  static char err_copy[sizeof spawned.err]; /* parse_stats_json runs python3 */
  memcpy(err_copy, r->err, sizeof err_copy);
  parse_stats_json(err_copy, vals, "GALLEON_STATS_AT_EXIT=json (stderr)");
  check_exit_values(vals, "GALLEON_STATS_AT_EXIT=json");

  r = run_self("--child-exit-stats", off_env);
  CHECKF(r->err_len == 0, "GALLEON_STATS_AT_EXIT=0 printed: %s", r->err);
  r = run_self("--child-exit-stats", NULL);
  CHECKF(r->err_len == 0, "without GALLEON_STATS_AT_EXIT the program printed: %s", r->err);
}

/* ---- 11. glibc's internal names (__libc_malloc, ...) and cfree are Galleon's ---- */
#if !TEST_NO_OVERRIDE
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
#ifndef TEST_PRELOAD
/* glibc links neither (cfree is a compatibility symbol there): libgalleon's. */
extern int __posix_memalign(void **memptr, size_t alignment, size_t size);
extern void cfree(void *ptr);
#endif

typedef struct {
  const char *how;
  void *(*malloc_)(size_t);
  void *(*calloc_)(size_t, size_t);
  void *(*realloc_)(void *, size_t);
  void (*free_)(void *);
  void *(*memalign_)(size_t, size_t);
  void *(*valloc_)(size_t);
  void *(*pvalloc_)(size_t);
  int (*posix_memalign_)(void **, size_t, size_t);
  void (*cfree_)(void *);
} alias_fns_t;

/* A block of at least n bytes, aligned, inside Galleon's memory; filled. */
static void check_alias_block(void *p, size_t n, size_t align, const char *fn, const char *how) {
  CHECKF(p != NULL, "%s(%zu) [%s] returned NULL", fn, n, how);
  CHECKF(G.owns(p) && G.owns((char *)p + n - 1), "%s(%zu) [%s] = %p is not a Galleon block", fn,
         n, how, p);
  CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu) [%s] = %p is not %zu-aligned", fn, n, how, p,
         align);
  CHECKF(malloc_usable_size(p) >= n, "%s(%zu) [%s]: usable size %zu", fn, n, how,
         malloc_usable_size(p));
}

/* in_use grew by n when the block came, shrank by n when it went. */
static void check_in_use(size_t u0, size_t u1, size_t u2, size_t n, const char *fn,
                         const char *freer, const char *how) {
  CHECKF(u1 >= u0 + n, "%s(%zu) [%s]: Galleon's in_use %zu -> %zu", fn, n, how, u0, u1);
  CHECKF(u2 + n <= u1, "%s of a %s(%zu) block [%s]: Galleon's in_use %zu -> %zu", freer, fn, n,
         how, u1, u2);
}

static void exercise_aliases(const alias_fns_t *f) {
  static const size_t sizes[] = {24, 5000, 200000, 3 * MiB};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s], u0, u1, u2;
    size_t rounded = (n + page_size - 1) & ~(page_size - 1);

    u0 = in_use_now();
    char *p = f->malloc_(n);
    check_alias_block(p, n, 16, "__libc_malloc", f->how);
    memset(p, 0xab, n);
    u1 = in_use_now();
    free(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "__libc_malloc", "free", f->how);

    /* __libc_calloc zeroes memory that was dirty; __libc_free frees. */
    for (int k = 0; k < 4; k++) {
      void *d = malloc(n);
      CHECK(d != NULL);
      memset(d, 0xcd, n);
      free(d);
    }
    u0 = in_use_now();
    p = f->calloc_(n, 1);
    check_alias_block(p, n, 16, "__libc_calloc", f->how);
    CHECKF(all_bytes_are(p, n, 0), "__libc_calloc(%zu, 1) [%s] not zeroed", n, f->how);
    u1 = in_use_now();
    f->free_(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "__libc_calloc", "__libc_free", f->how);

    /* __libc_realloc keeps the contents; __libc_realloc(p, 0) frees. */
    p = f->malloc_(64);
    check_alias_block(p, 64, 16, "__libc_malloc", f->how);
    pattern_fill_seed(p, 64, n);
    u0 = in_use_now();
    char *q = f->realloc_(p, n + 64);
    check_alias_block(q, n + 64, 16, "__libc_realloc", f->how);
    CHECKF(pattern_check_seed(q, 64, n) < 0, "__libc_realloc(64 -> %zu) [%s] lost the contents",
           n + 64, f->how);
    u1 = in_use_now();
    CHECK(f->realloc_(q, 0) == NULL);
    u2 = in_use_now();
    CHECKF(u1 >= u0 + n && u2 + n + 64 <= u1, "__libc_realloc [%s]: in_use %zu -> %zu -> %zu",
           f->how, u0, u1, u2);

    u0 = in_use_now();
    p = f->memalign_(4096, n);
    check_alias_block(p, n, 4096, "__libc_memalign", f->how);
    u1 = in_use_now();
    f->cfree_(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "__libc_memalign", "cfree", f->how);

    u0 = in_use_now();
    p = f->valloc_(n);
    check_alias_block(p, n, page_size, "__libc_valloc", f->how);
    u1 = in_use_now();
    free(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "__libc_valloc", "free", f->how);

    u0 = in_use_now();
    p = f->pvalloc_(n);
    check_alias_block(p, rounded, page_size, "__libc_pvalloc", f->how);
    u1 = in_use_now();
    f->free_(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, rounded, "__libc_pvalloc", "__libc_free", f->how);

    void *m = (void *)0x1;
    u0 = in_use_now();
    CHECK(f->posix_memalign_(&m, 256, n) == 0);
    check_alias_block(m, n, 256, "__posix_memalign", f->how);
    u1 = in_use_now();
    free(m);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "__posix_memalign", "free", f->how);
    m = (void *)0xdeadbeef;
    CHECK(f->posix_memalign_(&m, 24, n) == EINVAL && m == (void *)0xdeadbeef);

    u0 = in_use_now();
    p = malloc(n);
    check_alias_block(p, n, 16, "malloc", f->how);
    u1 = in_use_now();
    f->cfree_(p);
    u2 = in_use_now();
    check_in_use(u0, u1, u2, n, "malloc", "cfree", f->how);
  }
}
#endif

static void test_aliases(void) {
#if !TEST_NO_OVERRIDE
  alias_fns_t looked_up = {"dlsym", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  *(void **)&looked_up.malloc_ = must_dlsym("__libc_malloc");
  *(void **)&looked_up.calloc_ = must_dlsym("__libc_calloc");
  *(void **)&looked_up.realloc_ = must_dlsym("__libc_realloc");
  *(void **)&looked_up.free_ = must_dlsym("__libc_free");
  *(void **)&looked_up.memalign_ = must_dlsym("__libc_memalign");
  *(void **)&looked_up.valloc_ = must_dlsym("__libc_valloc");
  *(void **)&looked_up.pvalloc_ = must_dlsym("__libc_pvalloc");
  *(void **)&looked_up.posix_memalign_ = must_dlsym("__posix_memalign");
  *(void **)&looked_up.cfree_ = must_dlsym("cfree");
  exercise_aliases(&looked_up);
  /* Direct calls: bound by the linker (linked) or interposed at load (preloaded;
   * glibc exports __libc_malloc and the others under version GLIBC_2.2.5). */
  alias_fns_t direct = {"direct call", __libc_malloc, __libc_calloc, __libc_realloc,
                        __libc_free, __libc_memalign, __libc_valloc, __libc_pvalloc,
#ifdef TEST_PRELOAD
                        looked_up.posix_memalign_, looked_up.cfree_
#else
                        __posix_memalign, cfree
#endif
  };
  exercise_aliases(&direct);
#endif
}

/* ---- options from this process's environment (run first: mallopt changes options) ---- */
static void test_env_options(void) {
  /* Every GALLEON_<NAME> given to this run was read at start (numbers with an
   * optional k/m/g suffix here: the CTest variants give numbers). */
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    char env[64] = "GALLEON_";
    for (size_t k = 0; option_names[i][k] != 0; k++)
      env[8 + k] = (char)(option_names[i][k] >= 'a' && option_names[i][k] <= 'z'
                              ? option_names[i][k] - 'a' + 'A'
                              : option_names[i][k]);
    const char *e = getenv(env);
    if (e == NULL || *e < '0' || *e > '9') continue;
    char *end;
    long want = strtol(e, &end, 10);
    if (*end == 'k') want <<= 10;
    if (*end == 'm') want <<= 20;
    if (*end == 'g') want <<= 30;
    long v = G.option_get(option_names[i]);
    CHECKF(v == want, "%s=%s in the environment, but option %s is %ld", env, e, option_names[i],
           v);
    printf("  option %s = %ld from the environment\n", option_names[i], v);
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output that precedes a failure */
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  init_entry_points();
  /* Child modes: this program run again by test_env_cases and test_stats_at_exit. */
  if (argc > 1 && strcmp(argv[1], "--child-options") == 0) return child_print_options();
  if (argc > 1 && strcmp(argv[1], "--child-exit-stats") == 0) return child_exit_stats();
  CHECKF(argc == 1, "unknown argument %s", argv[1]);
  double t0 = now_s();
  test_env_options();
  test_symbols();
  test_malloc_free();
  test_usable_size();
  test_calloc();
  test_realloc();
  test_aligned();
  test_sized_free();
  test_glibc_extras();
  test_mallopt();
  test_malloc_trim();
  test_never_fail();
  test_introspection();
  test_stats_print();
  test_aliases();
  test_env_cases();
  test_stats_at_exit();
  printf("api tests passed (%s%s) in %.2f s\n",
#ifdef TEST_PRELOAD
         "preload",
#else
         "linked",
#endif
         TEST_NO_OVERRIDE ? ", no override" : "", now_s() - t0);
  return 0;
}
