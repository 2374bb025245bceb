/* check.c: the fatal-error path and messages.  write(2) only: these run while
 * the heap may be corrupt, so nothing here allocates or takes a lock. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

size_t gl_fmt_str(char *buf, size_t at, size_t cap, const char *text) {
  while (*text && at + 1 < cap) buf[at++] = *text++;
  return at;
}

size_t gl_fmt_hex(char *buf, size_t at, size_t cap, uintptr_t value) {
  char digits[2 + 16];
  size_t n = 0;
  digits[n++] = '0';
  digits[n++] = 'x';
  int shift = 60;
  while (shift > 0 && ((value >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) digits[n++] = "0123456789abcdef"[(value >> shift) & 0xf];
  for (size_t i = 0; i < n && at + 1 < cap; i++) buf[at++] = digits[i];
  return at;
}

size_t gl_fmt_dec(char *buf, size_t at, size_t cap, size_t value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  while (n > 0 && at + 1 < cap) buf[at++] = digits[--n];
  return at;
}

void gl_fatal_note(const char *what, const void *ptr, const char *detail, const void *other, const char *note) {
  char line[256];
  size_t n = gl_fmt_str(line, 0, sizeof line, "galleon: error: ");
  n = gl_fmt_str(line, n, sizeof line, what);
  n = gl_fmt_str(line, n, sizeof line, " ");
  n = gl_fmt_hex(line, n, sizeof line, (uintptr_t)ptr);
  if (detail) n = gl_fmt_str(line, n, sizeof line, detail);
  if (other) n = gl_fmt_hex(line, n, sizeof line, (uintptr_t)other);
  if (note) n = gl_fmt_str(line, n, sizeof line, note);
  line[n++] = '\n';
  os_write(2, line, n);
  abort();
}

void gl_fatal(const char *what, const void *ptr, const char *detail, const void *other) {
  gl_fatal_note(what, ptr, detail, other, NULL);
}

void gl_fatal_size(const char *what, const void *ptr, size_t size, const char *note) {
  char line[256];
  size_t n = gl_fmt_str(line, 0, sizeof line, "galleon: error: ");
  n = gl_fmt_str(line, n, sizeof line, what);
  n = gl_fmt_str(line, n, sizeof line, " ");
  n = gl_fmt_hex(line, n, sizeof line, (uintptr_t)ptr);
  n = gl_fmt_str(line, n, sizeof line, " (size ");
  n = gl_fmt_dec(line, n, sizeof line, size);
  n = gl_fmt_str(line, n, sizeof line, ")");
  n = gl_fmt_str(line, n, sizeof line, note);
  line[n++] = '\n';
  os_write(2, line, n);
  abort();
}

void gl_assert_fail(const char *expr, const char *file, int line_no) {
  char line[256];
  size_t n = gl_fmt_str(line, 0, sizeof line, "galleon: error: internal check failed: ");
  n = gl_fmt_str(line, n, sizeof line, expr);
  n = gl_fmt_str(line, n, sizeof line, " at ");
  n = gl_fmt_str(line, n, sizeof line, file);
  n = gl_fmt_str(line, n, sizeof line, ":");
  n = gl_fmt_dec(line, n, sizeof line, (size_t)line_no);
  line[n++] = '\n';
  os_write(2, line, n);
  abort();
}

void gl_message(const char *prefix, const char *text, size_t number) {
  char line[256];
  size_t n = gl_fmt_str(line, 0, sizeof line, prefix);
  n = gl_fmt_str(line, n, sizeof line, text);
  if (number) {
    n = gl_fmt_str(line, n, sizeof line, " ");
    n = gl_fmt_dec(line, n, sizeof line, number);
  }
  line[n++] = '\n';
  os_write(2, line, n);
}
