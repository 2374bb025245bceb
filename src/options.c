/* options.c: the one table of options.
 *
 * Each option is read once, at process start, without allocating: first from
 * GALLEON_OPTIONS, a comma-separated list of name:value (or name=value) items, then
 * from GALLEON_<NAME> (upper case), which wins over the list.  galleon_option_set()
 * and mallopt() change them later.  Values are integers with an optional k/m/g
 * suffix, or yes/no/on/off/true/false, or "json" (for stats_at_exit).  Each unknown
 * name or unparsable value costs one warning line on stderr and is ignored.
 */
#include <string.h>

#include "check.h"
#include "options.h"

gl_options_t gl_options = {
    .purge_delay_ms = 10,
    .purge_idle_ms = 100,
    .purge_window_ms = 1000,
    .purge_decommit = 1,
    .retain_bytes = 1 << 20,
    .segment_cache = 32,
    .stats_at_exit = 0,
    .verbose = 0,
    .purge_thread = 1,
    .pressure_percent = 90,
    .huge_pages = 0,
    .profile_interval = 512 * 1024,
    .profile_leaks = 0,
    .profile_dump_mb = 0,
};

typedef struct option_desc_s {
  const char *name;
  const char *env;
  long *value;
  long min, max;
} option_desc_t;

static const option_desc_t option_table[] = {
    {"purge_delay_ms", "GALLEON_PURGE_DELAY_MS", &gl_options.purge_delay_ms, 0, 3600000},
    {"purge_idle_ms", "GALLEON_PURGE_IDLE_MS", &gl_options.purge_idle_ms, 1, 3600000},
    {"purge_window_ms", "GALLEON_PURGE_WINDOW_MS", &gl_options.purge_window_ms, 0, 3600000},
    {"purge_decommit", "GALLEON_PURGE_DECOMMIT", &gl_options.purge_decommit, 0, 1},
    {"retain_bytes", "GALLEON_RETAIN_BYTES", &gl_options.retain_bytes, 0, (long)1 << 40},
    {"segment_cache", "GALLEON_SEGMENT_CACHE", &gl_options.segment_cache, 0, 4096},
    {"stats_at_exit", "GALLEON_STATS_AT_EXIT", &gl_options.stats_at_exit, 0, 2},
    {"verbose", "GALLEON_VERBOSE", &gl_options.verbose, 0, 1},
    {"purge_thread", "GALLEON_PURGE_THREAD", &gl_options.purge_thread, 0, 1},
    {"pressure_percent", "GALLEON_PRESSURE_PERCENT", &gl_options.pressure_percent, 0, 100},
    {"huge_pages", "GALLEON_HUGE_PAGES", &gl_options.huge_pages, 0, 1},
    {"profile_interval", "GALLEON_PROFILE_INTERVAL", &gl_options.profile_interval, 1, (long)1 << 40},
    {"profile_leaks", "GALLEON_PROFILE_LEAKS", &gl_options.profile_leaks, 0, 1},
    {"profile_dump_mb", "GALLEON_PROFILE_DUMP_MB", &gl_options.profile_dump_mb, 0, (long)1 << 30},
};
#define OPTION_COUNT (sizeof option_table / sizeof option_table[0])

static bool parse_value(const char *text, long *out) {
  if (strcmp(text, "yes") == 0 || strcmp(text, "on") == 0 || strcmp(text, "true") == 0) {
    *out = 1;
    return true;
  }
  if (strcmp(text, "no") == 0 || strcmp(text, "off") == 0 || strcmp(text, "false") == 0) {
    *out = 0;
    return true;
  }
  if (strcmp(text, "json") == 0) {
    *out = 2;
    return true;
  }
  long value = 0;
  const char *c = text;
  if (*c < '0' || *c > '9') return false;
  for (; *c >= '0' && *c <= '9'; c++) {
    if (value > (long)1 << 50) return false;
    value = value * 10 + (*c - '0');
  }
  switch (*c) {
    case 'k': case 'K': value <<= 10; c++; break;
    case 'm': case 'M': value <<= 20; c++; break;
    case 'g': case 'G': value <<= 30; c++; break;
    default: break;
  }
  if (*c != '\0') return false;
  *out = value;
  return true;
}

static const option_desc_t *option_find(const char *name) {
  if (name == NULL) return NULL;
  for (size_t i = 0; i < OPTION_COUNT; i++)
    if (strcmp(option_table[i].name, name) == 0) return &option_table[i];
  return NULL;
}

static void option_store(const option_desc_t *opt, long value) {
  if (value < opt->min) value = opt->min;
  if (value > opt->max) value = opt->max;
  __atomic_store_n(opt->value, value, __ATOMIC_RELAXED);
}

/* One warning line about an item of GALLEON_OPTIONS: "<what><item>". */
static void options_list_warning(const char *what, const char *item) {
  char line[160];
  size_t n = gl_fmt_str(line, 0, sizeof line, what);
  n = gl_fmt_str(line, n, sizeof line, item);
  line[n] = '\0';
  gl_message("galleon: warning: GALLEON_OPTIONS: ", line, 0);
}

/* GALLEON_OPTIONS="name:value,name:value": each item is copied into a buffer on the
 * stack, split at its first ':' or '=', looked up and stored.  Empty items (a
 * trailing comma) are skipped. */
static void options_parse_list(const char *list) {
  const char *c = list;
  while (*c != '\0') {
    char item[96];
    size_t len = 0;
    bool too_long = false;
    for (; *c != '\0' && *c != ','; c++) {
      if (len + 1 < sizeof item) item[len++] = *c;
      else too_long = true;
    }
    if (*c == ',') c++;
    item[len] = '\0';
    if (len == 0) continue;
    if (too_long) {
      options_list_warning("ignoring an item too long: ", item);
      continue;
    }
    char *sep = item;
    while (*sep != '\0' && *sep != ':' && *sep != '=') sep++;
    if (*sep == '\0') {
      options_list_warning("ignoring an item without a value (name:value): ", item);
      continue;
    }
    char sep_char = *sep;
    *sep = '\0';
    const option_desc_t *opt = option_find(item);
    long value;
    if (opt == NULL) {
      options_list_warning("ignoring unknown option ", item);
    } else if (!parse_value(sep + 1, &value)) {
      *sep = sep_char;
      options_list_warning("ignoring unparsable ", item);
    } else {
      option_store(opt, value);
    }
  }
}

void options_init(void) {
  const char *list = os_getenv("GALLEON_OPTIONS");
  if (list != NULL) options_parse_list(list);
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const char *text = os_getenv(option_table[i].env);
    if (text == NULL || *text == '\0') continue;
    long value;
    if (parse_value(text, &value))
      option_store(&option_table[i], value);
    else
      gl_message("galleon: warning: ignoring unparsable ", option_table[i].env, 0);
  }
}

long galleon_option_get(const char *name) {
  const option_desc_t *opt = option_find(name);
  return opt ? __atomic_load_n(opt->value, __ATOMIC_RELAXED) : -1;
}

int galleon_option_set(const char *name, long value) {
  const option_desc_t *opt = option_find(name);
  if (opt == NULL) return -1;
  option_store(opt, value);
  return 0;
}
