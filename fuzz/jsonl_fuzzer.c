/* jsonl_fuzzer.c — libFuzzer target for statsprof_format_jsonl and
 * statsprof_format_jsonl_rows.
 *
 * Builds a record from the fuzz bytes (names with arbitrary bytes: invalid
 * UTF-8, control characters, quotes, backslashes; any counts; any doubles
 * including NaN, infinities, -0 and subnormals; any timestamps), formats it,
 * and checks the promise of the JSON-lines sink: exactly one line (in the
 * rows layout, 1 + functions + caller edges lines), each ending
 * in '\n' and one strictly valid JSON object (RFC 8259: no NaN, no raw
 * control characters, escapes and surrogate pairs well formed) in valid
 * UTF-8 (RFC 3629). A violation abort()s, which libFuzzer reports.
 *
 * Input layout (every read past the end yields zeros, so any input is a
 * record): a header of fixed-size fields, then functions, each with its
 * callers; strings are a length byte and that many bytes.
 * Build and run: dev/fuzz. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statsprof.h"

#define MAX_FUNCS 64
#define MAX_CALLERS 16

static void fail(const char *why, const char *out, size_t len, size_t at) {
  fprintf(stderr, "jsonl_fuzzer: %s at byte %zu of %zu\n", why, at, len);
  fprintf(stderr, "output: %.*s\n", (int)(len < 4096 ? len : 4096), out);
  abort();
}

/* ---- reading the input ------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n;
  char *strings; /* one arena for every string, freed at the end */
  size_t used, cap;
} input;

static void take(input *in, void *dst, size_t n) {
  size_t k = n < in->n ? n : in->n;
  memset(dst, 0, n);
  memcpy(dst, in->p, k);
  in->p += k;
  in->n -= k;
}

static uint8_t u8(input *in) {
  uint8_t v;
  take(in, &v, 1);
  return v;
}

/* Counts: mostly small, sometimes anything (a byte selects). */
static uint64_t count(input *in) {
  uint8_t kind = u8(in);
  if (kind < 0xc0) return kind;
  uint64_t v;
  take(in, &v, sizeof v);
  return v;
}

static int64_t i64(input *in) {
  int64_t v;
  take(in, &v, sizeof v);
  return v;
}

/* Doubles: the interesting values by name, or any 64 bits. */
static double dbl(input *in) {
  uint8_t kind = u8(in);
  switch (kind % 10) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return -0.0;
    case 4: return 5e-324;
    case 5: return 1e300;
    case 6: return (double)kind / 7.0;
    default: {
      double v;
      take(in, &v, sizeof v);
      return v;
    }
  }
}

/* A NUL-terminated string of up to 255 bytes (a NUL byte inside ends it,
 * as it would for any C string). NULL when the arena cannot grow. */
static const char *str(input *in) {
  size_t n = u8(in);
  if (in->used + n + 1 > in->cap) return "";
  char *s = in->strings + in->used;
  take(in, s, n);
  s[n] = 0;
  in->used += strlen(s) + 1;
  return s;
}

/* ---- a strict JSON validator ------------------------------------------- */

/* The validator is not what is being fuzzed: without coverage
 * instrumentation it runs about 4x faster and its branches do not steer
 * the fuzzer. */
#define NOCOV __attribute__((no_sanitize("coverage")))

typedef struct {
  const unsigned char *s;
  size_t i, n;
  const char *out; /* for messages */
} json;

NOCOV static void jfail(json *j, const char *why) { fail(why, j->out, j->n, j->i); }

NOCOV static void ws(json *j) {
  while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\r')) j->i++;
}

NOCOV static void expect(json *j, char c) {
  if (j->i >= j->n || j->s[j->i] != (unsigned char)c) jfail(j, "unexpected character");
  j->i++;
}

NOCOV static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

NOCOV static unsigned u4(json *j) {
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    if (j->i >= j->n || hexval(j->s[j->i]) < 0) jfail(j, "bad \\u escape");
    v = v * 16 + (unsigned)hexval(j->s[j->i++]);
  }
  return v;
}

/* One UTF-8 sequence (RFC 3629) at j->i; returns its length. */
NOCOV static size_t utf8(json *j) {
  const unsigned char *s = j->s + j->i;
  size_t left = j->n - j->i;
  unsigned char c = s[0];
  size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n == 0 || n > left) jfail(j, "invalid UTF-8 lead byte");
  unsigned char lo = 0x80, hi = 0xbf;
  if (c == 0xe0) lo = 0xa0;
  if (c == 0xed) hi = 0x9f;
  if (c == 0xf0) lo = 0x90;
  if (c == 0xf4) hi = 0x8f;
  if (n > 1 && (s[1] < lo || s[1] > hi)) jfail(j, "invalid UTF-8 sequence");
  for (size_t k = 2; k < n; k++)
    if ((s[k] & 0xc0) != 0x80) jfail(j, "invalid UTF-8 continuation");
  return n;
}

NOCOV static void string(json *j) {
  expect(j, '"');
  for (;;) {
    if (j->i >= j->n) jfail(j, "unterminated string");
    unsigned char c = j->s[j->i];
    if (c == '"') {
      j->i++;
      return;
    }
    if (c < 0x20) jfail(j, "raw control character in string");
    if (c == '\\') {
      j->i++;
      if (j->i >= j->n) jfail(j, "dangling backslash");
      unsigned char e = j->s[j->i++];
      if (e == 'u') {
        unsigned v = u4(j);
        if (v >= 0xdc00 && v <= 0xdfff) jfail(j, "lone low surrogate");
        if (v >= 0xd800 && v <= 0xdbff) {
          if (j->i + 1 >= j->n || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u') jfail(j, "lone high surrogate");
          j->i += 2;
          unsigned w = u4(j);
          if (w < 0xdc00 || w > 0xdfff) jfail(j, "high surrogate without low surrogate");
        }
      } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
        jfail(j, "bad escape");
      }
      continue;
    }
    j->i += utf8(j);
  }
}

NOCOV static int digit(json *j) { return j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9'; }

NOCOV static void number(json *j) {
  if (j->i < j->n && j->s[j->i] == '-') j->i++;
  if (!digit(j)) jfail(j, "number without digits");
  if (j->s[j->i] == '0') j->i++;
  else
    while (digit(j)) j->i++;
  if (j->i < j->n && j->s[j->i] == '.') {
    j->i++;
    if (!digit(j)) jfail(j, "fraction without digits");
    while (digit(j)) j->i++;
  }
  if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
    j->i++;
    if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
    if (!digit(j)) jfail(j, "exponent without digits");
    while (digit(j)) j->i++;
  }
}

NOCOV static void literal(json *j, const char *word) {
  size_t n = strlen(word);
  if (j->n - j->i < n || memcmp(j->s + j->i, word, n)) jfail(j, "bad literal");
  j->i += n;
}

NOCOV static void value(json *j, int depth);

NOCOV static void object(json *j, int depth) {
  expect(j, '{');
  ws(j);
  if (j->i < j->n && j->s[j->i] == '}') {
    j->i++;
    return;
  }
  for (;;) {
    ws(j);
    string(j);
    ws(j);
    expect(j, ':');
    value(j, depth + 1);
    ws(j);
    if (j->i < j->n && j->s[j->i] == ',') {
      j->i++;
      continue;
    }
    expect(j, '}');
    return;
  }
}

NOCOV static void array(json *j, int depth) {
  expect(j, '[');
  ws(j);
  if (j->i < j->n && j->s[j->i] == ']') {
    j->i++;
    return;
  }
  for (;;) {
    value(j, depth + 1);
    ws(j);
    if (j->i < j->n && j->s[j->i] == ',') {
      j->i++;
      continue;
    }
    expect(j, ']');
    return;
  }
}

NOCOV static void value(json *j, int depth) {
  if (depth > 64) jfail(j, "nested too deep");
  ws(j);
  if (j->i >= j->n) jfail(j, "value expected");
  switch (j->s[j->i]) {
    case '{': object(j, depth); break;
    case '[': array(j, depth); break;
    case '"': string(j); break;
    case 't': literal(j, "true"); break;
    case 'f': literal(j, "false"); break;
    case 'n': literal(j, "null"); break;
    default: number(j); break;
  }
}

NOCOV static void validate_line(const char *out, size_t len) {
  if (len == 0 || out[len - 1] != '\n') fail("does not end with a newline", out, len, len);
  const char *nl = memchr(out, '\n', len);
  if ((size_t)(nl - out) != len - 1) fail("more than one line", out, len, (size_t)(nl - out));
  if (memchr(out, 0, len)) fail("NUL byte in output", out, len, (size_t)((const char *)memchr(out, 0, len) - out));
  json j = {(const unsigned char *)out, 0, len - 1, out};
  ws(&j);
  if (j.i >= j.n || j.s[j.i] != '{') jfail(&j, "the line is not an object");
  value(&j, 0);
  ws(&j);
  if (j.i != j.n) jfail(&j, "text after the object");
}

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size, NULL, 0, 0};
  in.cap = size + 2 * (MAX_FUNCS * (MAX_CALLERS + 1) * 2 + 1) + 16;
  in.strings = malloc(in.cap);
  if (!in.strings) return 0;

  statsprof_stats_profile rec;
  memset(&rec, 0, sizeof rec);
  /* Every kind, and 4: one this build does not know ("unknown"). */
  rec.kind = (statsprof_record_kind)(u8(&in) % 5);
  rec.mode = rec.kind == STATSPROF_RECORD_CUMULATIVE ? STATSPROF_CUMULATIVE : STATSPROF_DELTA;
  rec.seq = count(&in);
  rec.pid = i64(&in);
  rec.start_ns = i64(&in);
  rec.end_ns = i64(&in);
  rec.dropped = count(&in);
  rec.overflow_functions = count(&in);
  rec.sink_errors = count(&in);
  rec.thread_id = count(&in);
  rec.thread_name = (u8(&in) & 1) ? str(&in) : NULL;
  rec.frame_stats.frames = count(&in);
  rec.frame_stats.mean_s = dbl(&in);
  rec.frame_stats.p50_s = dbl(&in);
  rec.frame_stats.p95_s = dbl(&in);
  rec.frame_stats.p99_s = dbl(&in);
  rec.frame_stats.max_s = dbl(&in);
  rec.frame = count(&in);
  rec.frame_time_s = dbl(&in);
  rec.total_tt = dbl(&in);

  statsprof_function_profile funcs[MAX_FUNCS];
  statsprof_caller_profile callers[MAX_FUNCS][MAX_CALLERS];
  size_t nf = u8(&in) % (MAX_FUNCS + 1);
  for (size_t i = 0; i < nf; i++) {
    statsprof_function_profile *f = &funcs[i];
    f->function_name = str(&in);
    f->file_name = str(&in);
    f->line_number = (int)i64(&in);
    f->ncalls = count(&in);
    f->primitive_calls = count(&in);
    f->tottime = dbl(&in);
    f->percall_tottime = dbl(&in);
    f->cumtime = dbl(&in);
    f->percall_cumtime = dbl(&in);
    f->ncallers = u8(&in) % (MAX_CALLERS + 1);
    f->callers = f->ncallers ? callers[i] : NULL;
    for (size_t k = 0; k < f->ncallers; k++) {
      statsprof_caller_profile *c = &callers[i][k];
      c->function_name = str(&in);
      c->file_name = str(&in);
      c->line_number = (int)i64(&in);
      c->ncalls = count(&in);
      c->primitive_calls = count(&in);
      c->tottime = dbl(&in);
      c->cumtime = dbl(&in);
    }
  }
  rec.nfunc_profiles = nf;
  rec.func_profiles = nf ? funcs : NULL;

  char *out = NULL;
  size_t len = 0;
  int rc = statsprof_format_jsonl(&rec, &out, &len);
  if (rc != 0 && rc != STATSPROF_ENOMEM) {
    fprintf(stderr, "jsonl_fuzzer: statsprof_format_jsonl returned %d\n", rc);
    abort();
  }
  if (rc == 0) {
    if (!out) fail("NULL output", "", 0, 0);
    if (strlen(out) != len) fail("length disagrees with the text", out, len, strlen(out));
    validate_line(out, len);
  }
  statsprof_free(out);

  /* The rows layout: a record line, then a line per function and per edge. */
  size_t want = 1 + nf;
  for (size_t i = 0; i < nf; i++) want += funcs[i].ncallers;
  out = NULL;
  len = 0;
  rc = statsprof_format_jsonl_rows(&rec, &out, &len);
  if (rc != 0 && rc != STATSPROF_ENOMEM) {
    fprintf(stderr, "jsonl_fuzzer: statsprof_format_jsonl_rows returned %d\n", rc);
    abort();
  }
  if (rc == 0) {
    if (!out) fail("NULL rows output", "", 0, 0);
    if (strlen(out) != len) fail("rows length disagrees with the text", out, len, strlen(out));
    size_t lines = 0;
    for (const char *p = out, *end = out + len; p < end; lines++) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
      validate_line(p, n);
      p += n;
    }
    if (lines != want) fail("rows: wrong number of lines", out, len, lines);
  }
  statsprof_free(out);
  free(in.strings);
  return 0;
}
