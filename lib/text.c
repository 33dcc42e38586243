/* text.c — formatting text: fixed-size messages, the growable buffer the
 * record formats and sinks write into, JSON strings and UTF-8 checks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void statsprof__msg(char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, n, fmt, ap);
  va_end(ap);
}

void statsprof__msg_add(char *out, size_t n, const char *fmt, ...) {
  size_t len = strnlen(out, n);
  if (len + 1 >= n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out + len, n - len, fmt, ap);
  va_end(ap);
}

void statsprof__quote(char *out, size_t n, const char *s, size_t len, size_t max) {
  if (max + 1 > n) max = n - 1;
  if (len <= max) {
    statsprof__msg(out, n, "%.*s", (int)len, s);
    return;
  }
  size_t keep = max > 3 ? max - 3 : 0, head = keep / 2, tail = len - (keep - head);
  /* Cut between UTF-8 sequences, so the message stays valid UTF-8. */
  while (head > 0 && ((unsigned char)s[head] & 0xc0) == 0x80) head--;
  while (tail < len && ((unsigned char)s[tail] & 0xc0) == 0x80) tail++;
  statsprof__msg(out, n, "%.*s...%.*s", (int)head, s, (int)(len - tail), s + tail);
}

size_t statsprof__utf8_seq(const unsigned char *s) {
  if (s[0] < 0x80) return 1;
  size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
  if (n == 0 || s[0] > 0xf4) return 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
  if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
  return n;
}

static int buf_reserve(statsprof__buf *b, size_t extra) {
  if (b->oom) return -1;
  if (extra > SIZE_MAX - b->len - 1 || STATSPROF__ARRAY_RESERVE(b->data, b->cap, b->len + extra + 1, 256)) {
    b->oom = 1;
    return -1;
  }
  return 0;
}

void statsprof__buf_put(statsprof__buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

void statsprof__buf_puts(statsprof__buf *b, const char *s) { statsprof__buf_put(b, s, strlen(s)); }

void statsprof__buf_printf(statsprof__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[128];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    statsprof__buf_put(b, small, (size_t)n);
    return;
  }
  if (buf_reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* JSON string: escapes quotes, backslashes and control characters; UTF-8
 * passes through. Invalid UTF-8 bytes become U+FFFD so the line stays valid. */
void statsprof__buf_json_string(statsprof__buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  statsprof__buf_put(b, "\"", 1);
  while (*p) {
    unsigned char c = *p;
    const unsigned char *run = p;
    while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    if (p > run) {
      statsprof__buf_put(b, (const char *)run, (size_t)(p - run));
      continue;
    }
    c = *p;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      statsprof__buf_put(b, e, 2);
      p++;
    } else if (c < 0x20) {
      const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      if (named) {
        statsprof__buf_put(b, named, 2);
      } else {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        statsprof__buf_put(b, e, 6);
      }
      p++;
    } else {
      /* One valid UTF-8 sequence (RFC 3629: no overlongs, surrogates or
       * code points above U+10FFFF), else U+FFFD for one byte. */
      size_t n = statsprof__utf8_seq(p);
      if (n) {
        statsprof__buf_put(b, (const char *)p, n);
        p += n;
      } else {
        statsprof__buf_put(b, "\\ufffd", 6);
        p++;
      }
    }
  }
  statsprof__buf_put(b, "\"", 1);
}

void statsprof__ncalls_text(char *out, size_t n, uint64_t total, uint64_t primitive) {
  if (total == primitive)
    snprintf(out, n, "%llu", (unsigned long long)total);
  else
    snprintf(out, n, "%llu/%llu", (unsigned long long)total, (unsigned long long)primitive);
}
