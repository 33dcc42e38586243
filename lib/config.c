/* config.c — the config string: `key=value` pairs separated by ';'.
 *
 * Every key is one row of CONFIG_KEYS below (name, kind, field, bounds,
 * help): the parser, the duplicate check, the store into the struct and the
 * "known keys" message are generated from it, and config_test holds
 * README's table of keys against it. Every number, here and in
 * sink arguments (lib/sinks/registry.c), goes through statsprof__parse_value:
 * plain decimal and a unit, nothing strtod would also take (hex, exponents,
 * inf, nan), and a value that does not fit — too large, or not zero but
 * rounding to zero — is an error, never a silent wrap. Every message quotes
 * the bad text and gives its offset, so a host can point at the exact spot. */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- values ------------------------------------------------------------ */

const statsprof__unit statsprof__duration_units[] = {
    {"ns", 1},         {"us", 1000},           {"ms", 1000000},
    {"s", 1000000000}, {"m", 60 * 1000000000ull}, {"h", 3600 * 1000000000ull},
    {NULL, 0},
};
const statsprof__unit statsprof__size_units[] = {
    {"", 1}, {"k", 1024}, {"K", 1024}, {"M", 1024 * 1024}, {"G", 1024 * 1024 * 1024}, {NULL, 0},
};
const statsprof__unit statsprof__count_units[] = {{"", 1}, {NULL, 0}};
/* Fractions are kept in billionths: "0.05" and "5%" are both 50000000. */
static const statsprof__unit fraction_units[] = {{"", 1000000000}, {"%", 10000000}, {NULL, 0}};
#define FRACTION_ONE 1000000000.0

__extension__ typedef unsigned __int128 u128;

/* "ns, us, ms, s, m or h" */
static void list_units(char *out, size_t n, const statsprof__unit *u) {
  size_t count = 0;
  out[0] = 0;
  while (u[count].suffix) count++;
  for (size_t i = 0; i < count; i++)
    if (*u[i].suffix) statsprof__msg_add(out, n, "%s%s", *out ? (i + 1 == count ? " or " : ", ") : "", u[i].suffix);
}

int statsprof__parse_value(const statsprof__value_spec *spec, const char *s, size_t len, uint64_t *out,
                           char *why, size_t whylen) {
  if (spec->words) {
    for (const statsprof__word *w = spec->words; w->word; w++)
      if (strlen(w->word) == len && !memcmp(w->word, s, len)) {
        *out = w->value;
        return 0;
      }
    statsprof__msg(why, whylen, "not a known value");
    return STATSPROF_ECONFIG;
  }
  /* digits [. digits], at least one digit */
  size_t i = 0, nint = 0, nfrac = 0;
  uint64_t ip = 0;
  int too_big = 0, nonzero = 0;
  for (; i < len && isdigit((unsigned char)s[i]); i++, nint++) {
    unsigned d = (unsigned)(s[i] - '0');
    nonzero |= d != 0;
    if (ip > (UINT64_MAX - d) / 10) too_big = 1;
    else ip = ip * 10 + d;
  }
  const char *frac = NULL;
  if (i < len && s[i] == '.') {
    frac = s + ++i;
    for (; i < len && isdigit((unsigned char)s[i]); i++, nfrac++) nonzero |= s[i] != '0';
  }
  const char *unit = s + i;
  size_t ulen = len - i;
  if (nint + nfrac == 0) {
    statsprof__msg(why, whylen, "not a plain decimal number");
    return STATSPROF_ECONFIG;
  }
  /* Say why the two things strtod would have taken are refused. */
  if (ulen && (unit[0] == 'x' || unit[0] == 'X') && nint == 1 && !frac && s[0] == '0') {
    statsprof__msg(why, whylen, "hexadecimal is not allowed, only plain decimal numbers");
    return STATSPROF_ECONFIG;
  }
  if (ulen > 1 && (unit[0] == 'e' || unit[0] == 'E') &&
      (isdigit((unsigned char)unit[1]) || unit[1] == '+' || unit[1] == '-')) {
    statsprof__msg(why, whylen, "exponents are not allowed, only plain decimal numbers");
    return STATSPROF_ECONFIG;
  }
  if (spec->whole && frac) {
    statsprof__msg(why, whylen, "not a whole number");
    return STATSPROF_ECONFIG;
  }
  uint64_t scale = 0;
  for (const statsprof__unit *u = spec->units; u->suffix; u++)
    if (strlen(u->suffix) == ulen && !memcmp(u->suffix, unit, ulen)) scale = u->scale;
  if (!scale && !(ulen == 0 && !nonzero)) { /* a bare 0 needs no unit */
    char units[128];
    list_units(units, sizeof units, spec->units);
    if (ulen == 0) statsprof__msg(why, whylen, "needs a unit (%s)", units);
    else statsprof__msg(why, whylen, "unknown unit '%.*s' (use %s)", (int)(ulen > 32 ? 32 : ulen), unit, units);
    return STATSPROF_ECONFIG;
  }
  if (!scale) scale = 1;
  /* The fraction, exactly: round(0.ddd * scale), from its first 19 digits. */
  uint64_t v = 0;
  u128 fv = 0, den = 1;
  for (size_t k = 0; k < nfrac && k < 19; k++) {
    fv = fv * 10 + (unsigned)(frac[k] - '0');
    den *= 10;
  }
  u128 total = (u128)ip * scale + (fv * scale + den / 2) / den;
  if (too_big || total > UINT64_MAX) {
    statsprof__msg(why, whylen, "too large");
    return STATSPROF_ECONFIG;
  }
  v = (uint64_t)total;
  if (nonzero && v == 0) {
    statsprof__msg(why, whylen, "not zero, but rounds to zero");
    return STATSPROF_ECONFIG;
  }
  if (v < spec->min || v > spec->max) {
    statsprof__msg(why, whylen, v > spec->max ? "too large" : "too small");
    return STATSPROF_ECONFIG;
  }
  *out = v;
  return 0;
}

int64_t statsprof__parse_duration(const char *s) {
  static const statsprof__value_spec spec = {.units = statsprof__duration_units, .max = INT64_MAX};
  uint64_t v;
  char why[128];
  return statsprof__parse_value(&spec, s, strlen(s), &v, why, sizeof why) ? -1 : (int64_t)v;
}

/* ---- the keys ---------------------------------------------------------- */

static const statsprof__word bool_words[] = {{"on", 1},  {"off", 0}, {"1", 1},   {"0", 0},
                                             {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {NULL, 0}};
static const statsprof__word clock_words[] = {{"wall", STATSPROF__CLOCK_WALL}, {"cpu", STATSPROF__CLOCK_CPU}, {NULL, 0}};
static const statsprof__word writer_words[] = {{"thread", 0}, {"sync", 1}, {NULL, 0}};
static const statsprof__word on_full_words[] = {{"drop", 0}, {"block", 1}, {NULL, 0}};
static const statsprof__word trigger_words[] = {{"tick", 0}, {"timer", 1}, {NULL, 0}};
static const statsprof__word source_words[] = {{"auto", STATSPROF__SOURCE_AUTO},
                                               {"monitoring", STATSPROF__SOURCE_MONITORING},
                                               {"setprofile", STATSPROF__SOURCE_SETPROFILE},
                                               {"evalframe", STATSPROF__SOURCE_EVALFRAME},
                                               {NULL, 0}};

#define DURATION_HELP "a DURATION: a decimal number and a unit ns, us, ms, s, m or h"
#define MAX_NS ((uint64_t)INT64_MAX)

/* X(name, kind, field, min, max, words, help): min and max in the kind's
 * base unit (ns, a count, billionths); help says what is expected. */
#define CONFIG_KEYS(X)                                                                                    \
  X(interval, DURATION, interval_ns, 0, MAX_NS, NULL, DURATION_HELP ", e.g. 500ms, 1s, 2m")               \
  X(clock, WORDS, clock, 0, 1, clock_words, "wall or cpu")                                                \
  X(builtins, WORDS, builtins, 0, 1, bool_words, "on or off")                                             \
  X(source, WORDS, source, 0, 3, source_words, "auto, monitoring, setprofile or evalframe")              \
  X(max_functions, COUNT, max_functions, 1, 100000000, NULL, "a whole number from 1 to 100000000")        \
  X(sink, SINK, sinks, 0, 0, NULL, "NAME or NAME:ARG")                                                    \
  X(writer, WORDS, writer_sync, 0, 1, writer_words, "thread or sync")                                     \
  X(on_full, WORDS, on_full_block, 0, 1, on_full_words, "drop or block")                                  \
  X(queue, COUNT, queue, 1, 65536, NULL, "records per sink, a whole number from 1 to 65536")              \
  X(trigger, WORDS, trigger_timer, 0, 1, trigger_words, "tick or timer")                                  \
  X(compensate, WORDS, compensate, 0, 1, bool_words, "on or off")                                         \
  X(budget, DURATION, budget_ns, 0, MAX_NS, NULL, DURATION_HELP ", e.g. 16.6ms")                          \
  X(max_spikes_per_min, COUNT, max_spikes_per_min, 0, 100000, NULL, "a whole number from 0 to 100000")    \
  X(per_thread, WORDS, per_thread, 0, 1, bool_words, "on or off")                                         \
  X(duty, FRACTION, duty, 1, 1000000000, NULL, "a percentage above 0% and at most 100%, e.g. 5% or 0.05") \
  X(window, DURATION, window_ns, 1, MAX_NS, NULL, DURATION_HELP " above 0, e.g. 50ms")                    \
  X(every, DURATION, every_ns, 1, MAX_NS, NULL, DURATION_HELP " above 0, e.g. 1s")                        \
  X(max_overhead, FRACTION, max_overhead, 1, 1000000000, NULL, "a percentage above 0% and at most 100%, e.g. 1%") \
  X(stop_timeout, DURATION, stop_timeout_ns, 0, 86400 * 1000000000ull, NULL, DURATION_HELP " up to 24h, e.g. 5s")

enum {
#define X(name, kind, field, lo, hi, wl, hp) KEY_##name,
  CONFIG_KEYS(X)
#undef X
      NKEYS
};
_Static_assert(NKEYS <= 32, "seen-bits are an unsigned");

enum { KIND_DURATION, KIND_COUNT, KIND_WORDS, KIND_FRACTION, KIND_SINK };

static const struct key {
  const char *name;
  int kind;
  statsprof__value_spec spec;
} keys[NKEYS] = {
#define UNITS_DURATION statsprof__duration_units
#define UNITS_COUNT statsprof__count_units
#define UNITS_WORDS NULL
#define UNITS_FRACTION fraction_units
#define UNITS_SINK NULL
#define X(name, kind, field, lo, hi, wl, hp) \
  {#name, KIND_##kind, {.units = UNITS_##kind, .words = wl, .whole = KIND_##kind == KIND_COUNT, .min = lo, .max = hi, .help = hp}},
    CONFIG_KEYS(X)
#undef X
};

#define STORE_DURATION(f, v) (f) = (int64_t)(v)
#define STORE_COUNT(f, v) (f) = (uint32_t)(v)
#define STORE_WORDS(f, v) (f) = (v)
#define STORE_FRACTION(f, v) (f) = (double)(v) / FRACTION_ONE
#define STORE_SINK(f, v) (void)0

static void store(statsprof__config *c, int key, uint64_t v) {
  switch (key) {
#define X(name, kind, field, lo, hi, wl, hp) \
  case KEY_##name:                                \
    STORE_##kind(c->field, v);                    \
    break;
    CONFIG_KEYS(X)
#undef X
  }
}

void statsprof__config_defaults(statsprof__config *c) {
  memset(c, 0, sizeof *c);
  c->interval_ns = 1000000000;
  c->clock = STATSPROF__CLOCK_WALL;
  c->builtins = 1;
  c->max_functions = 100000;
  c->queue = 64;
  c->compensate = 1;
  c->max_spikes_per_min = 10;
  c->stop_timeout_ns = 5000000000; /* how long a host's shutdown may wait for a stuck sink */
}

void statsprof__config_free(statsprof__config *c) {
  for (size_t i = 0; i < c->nsinks; i++) {
    statsprof__free(c->sinks[i].name);
    statsprof__free(c->sinks[i].arg);
  }
  c->nsinks = 0;
}

/* ---- parsing ----------------------------------------------------------- */

typedef struct parse_ctx {
  char *err;
  size_t errlen;
  const char *text;      /* whole config, for offsets */
  const char *at[NKEYS]; /* each key's item, for messages about keys together */
} parse_ctx;

/* "config: WHAT (at offset N)"; returns STATSPROF_ECONFIG. */
static int fail(parse_ctx *pc, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parse_ctx *pc, const char *at, const char *fmt, ...) {
  char what[STATSPROF__ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  statsprof__msg(pc->err, pc->errlen, "config: %s (at offset %ld)", what, (long)(at - pc->text));
  return STATSPROF_ECONFIG;
}

/* Text quoted in a message: long values keep their start and end. */
#define QUOTE(buf, b, e) (statsprof__quote(buf, sizeof buf, b, (size_t)((e) - (b)), 120), buf)

void statsprof__trim(const char **b, const char **e) {
  while (*b < *e && isspace((unsigned char)**b)) (*b)++;
  while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

/* ns in the largest unit that holds it whole, as a config would say it. */
static const char *duration_text(char *out, size_t n, int64_t ns) {
  static const struct {
    int64_t ns;
    const char *unit;
  } units[] = {{1000000000, "s"}, {1000000, "ms"}, {1000, "us"}};
  for (size_t i = 0; i < sizeof units / sizeof *units; i++)
    if (ns % units[i].ns == 0) {
      snprintf(out, n, "%lld%s", (long long)(ns / units[i].ns), units[i].unit);
      return out;
    }
  snprintf(out, n, "%lldns", (long long)ns);
  return out;
}

/* The later of two items: a message about keys together blames the one
 * given last. */
static const char *later(const char *a, const char *b) { return a > b ? a : b; }

/* Production mode: fills window/every from whichever of duty, window,
 * every and max_overhead were given; a message blames the key that made
 * the combination wrong. */
static int finish_duty(parse_ctx *pc, statsprof__config *c, unsigned seen) {
  int has_window = (seen >> KEY_window) & 1, has_every = (seen >> KEY_every) & 1;
  char e[32], w[32];
  if (!c->duty && !has_window && !has_every && !c->max_overhead) return 0;
  if (c->duty && has_window && has_every)
    return fail(pc, later(later(pc->at[KEY_duty], pc->at[KEY_window]), pc->at[KEY_every]),
                "duty cannot be combined with both window and every");
  if (c->duty && has_every && !has_window) {
    c->window_ns = (int64_t)((double)c->every_ns * c->duty);
    /* not the default window below, which would be past every */
    if (c->window_ns < 1)
      return fail(pc, later(pc->at[KEY_every], pc->at[KEY_duty]),
                  "every x duty, the window, is under 1ns (every %s, duty %g)", duration_text(e, sizeof e, c->every_ns),
                  c->duty);
  }
  if (!c->window_ns) c->window_ns = 50000000; /* 50 ms */
  /* max_overhead alone starts at 10% and lengthens the gaps as needed. */
  if (!has_every) {
    double every = (double)c->window_ns / (c->duty ? c->duty : 0.1);
    /* A day between windows is already "almost never"; beyond int64 is not. */
    if (every > 86400e9)
      return fail(pc, has_window ? pc->at[KEY_window] : pc->at[KEY_duty],
                  "window is too long for the duty (every would exceed 24h)");
    c->every_ns = (int64_t)every;
  }
  if (c->every_ns < c->window_ns)
    return fail(pc, pc->at[KEY_every], "every (%s) must be at least window (%s%s)",
                duration_text(e, sizeof e, c->every_ns), duration_text(w, sizeof w, c->window_ns),
                has_window ? "" : ", the default");
  return 0;
}

/* sink=NAME[:ARG]: the name is checked here, the argument by the sink when
 * it opens (statsprof__sink_open), with this item's offsets for messages. */
static int add_sink(parse_ctx *pc, statsprof__config *c, const char *item, const char *vb, const char *ve) {
  char q[160];
  if (c->nsinks == STATSPROF__MAX_SINKS)
    return fail(pc, item, "too many sinks at '%s' (at most %d)", QUOTE(q, vb, ve), STATSPROF__MAX_SINKS);
  const char *colon = memchr(vb, ':', (size_t)(ve - vb));
  const char *ne = colon ? colon : ve, *ab = colon ? colon + 1 : ve;
  /* White space around the ':' too ("jsonl: /tmp/x" made a directory " "). */
  statsprof__trim(&vb, &ne);
  statsprof__trim(&ab, &ve);
  if (ne == vb) return fail(pc, item, "sink '%s' has no name (use NAME or NAME:ARG)", QUOTE(q, vb, ve));
  for (const char *n = vb; n < ne; n++)
    if (!isalnum((unsigned char)*n) && *n != '_' && *n != '-')
      return fail(pc, item, "bad sink name in '%s' (use NAME or NAME:ARG)", QUOTE(q, vb, ve));
  if (colon && ab == ve) return fail(pc, item, "sink '%s' has an empty argument after ':'", QUOTE(q, vb, ve));
  if (colon && ne - vb == 4 && !memcmp(vb, "none", 4))
    return fail(pc, item, "sink=none takes no argument (got '%s')", QUOTE(q, vb, ve));
  statsprof__sink_spec *s = &c->sinks[c->nsinks];
  s->name = statsprof__strndup(vb, (size_t)(ne - vb));
  s->arg = colon ? statsprof__strndup(ab, (size_t)(ve - ab)) : NULL;
  s->offset = (size_t)(item - pc->text);
  s->arg_offset = colon ? (size_t)(ab - pc->text) : s->offset;
  if (!s->name || (colon && !s->arg)) {
    statsprof__free(s->name);
    statsprof__free(s->arg);
    statsprof__msg(pc->err, pc->errlen, "config: out of memory");
    return STATSPROF_ENOMEM;
  }
  c->nsinks++;
  return 0;
}

static int set_key(parse_ctx *pc, statsprof__config *c, const char *item, const char *kb, const char *ke,
                   const char *vb, const char *ve, unsigned *seen) {
  char q[160];
  int k = 0;
  while (k < NKEYS && !(strlen(keys[k].name) == (size_t)(ke - kb) && !memcmp(keys[k].name, kb, (size_t)(ke - kb)))) k++;
  if (k == NKEYS) {
    char known[512] = "";
    for (int i = 0; i < NKEYS; i++) statsprof__msg_add(known, sizeof known, "%s%s", i ? ", " : "", keys[i].name);
    return fail(pc, item, "unknown key '%s'; known keys: %s", QUOTE(q, kb, ke), known);
  }
  if (keys[k].kind != KIND_SINK && (*seen & (1u << k))) return fail(pc, item, "duplicate key '%s'", keys[k].name);
  *seen |= 1u << k;
  pc->at[k] = item;
  if (vb == ve) return fail(pc, item, "key '%s' has an empty value", keys[k].name);
  if (keys[k].kind == KIND_SINK) return add_sink(pc, c, item, vb, ve);
  uint64_t v;
  char why[160];
  if (statsprof__parse_value(&keys[k].spec, vb, (size_t)(ve - vb), &v, why, sizeof why))
    return fail(pc, item, "bad %s '%s': %s; expected %s", keys[k].name, QUOTE(q, vb, ve), why, keys[k].spec.help);
  store(c, k, v);
  return 0;
}

/* The file or directory a built-in sink writes: its argument up to the
 * first option, without white space or trailing '/'; NULL for a sink that
 * writes none (stderr, a host's). */
static const char *sink_place(const statsprof__sink_spec *s, size_t *len) {
  static const char *const writes_files[] = {"jsonl", "pstats", "callgrind"};
  int files = 0;
  for (size_t i = 0; i < sizeof writes_files / sizeof *writes_files; i++) files |= !strcmp(s->name, writes_files[i]);
  if (!files || !s->arg) return NULL;
  const char *b = s->arg, *e = strchr(b, ',');
  if (!e) e = b + strlen(b);
  statsprof__trim(&b, &e);
  while (e - b > 1 && e[-1] == '/') e--;
  *len = (size_t)(e - b);
  return b;
}

/* Drops "." and empty components and resolves ".." in an absolute path,
 * in place, by its text alone. */
static void normalize_path(char *path) {
  char *out = path;
  for (const char *p = path; *p;) {
    while (*p == '/') p++;
    const char *e = strchr(p, '/');
    if (!e) e = p + strlen(p);
    size_t n = (size_t)(e - p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      while (out > path && *--out != '/') continue;
    } else if (n && !(n == 1 && p[0] == '.')) {
      *out++ = '/';
      memmove(out, p, n);
      out += n;
    }
    p = e;
  }
  if (out == path) *out++ = '/';
  *out = 0;
}

/* The place a sink writes as one spelling: absolute (from the working
 * directory), normalized, and through realpath where it, or else its
 * parent directory, exists (symbolic links, "dir/../"). The text as given
 * when it does not fit. */
static void place_key(const char *b, size_t len, char *key, size_t keylen) {
  char path[PATH_MAX], real[PATH_MAX];
  size_t cwd = 0;
  if (*b != '/') {
    if (getcwd(path, sizeof path)) {
      cwd = strlen(path);
      path[cwd++] = '/';
    } else {
      cwd = sizeof path; /* no working directory: the text as given, below */
    }
  }
  if (cwd + len >= sizeof path) {
    snprintf(key, keylen, "%.*s", (int)len, b);
    return;
  }
  memcpy(path + cwd, b, len);
  path[cwd + len] = 0;
  if (realpath(path, real)) {
    snprintf(key, keylen, "%s", real);
    return;
  }
  normalize_path(path);
  char *slash = strrchr(path, '/');
  if (slash > path) {
    *slash = 0;
    if (realpath(path, real) && snprintf(key, keylen, "%s/%s", strcmp(real, "/") ? real : "", slash + 1) < (int)keylen)
      return;
    *slash = '/';
  }
  snprintf(key, keylen, "%s", path);
}

/* sink=none opens nothing, so it stands alone; two sinks of one kind
 * writing one place would interleave lines or replace each other's files,
 * however the place is spelled (a/x, ./a/x, an absolute path, a link). */
static int finish_sinks(parse_ctx *pc, statsprof__config *c) {
  for (size_t i = 0; i < c->nsinks && c->nsinks > 1; i++)
    if (!strcmp(c->sinks[i].name, "none"))
      return fail(pc, pc->text + c->sinks[i].offset, "sink=none cannot be combined with other sinks");
  for (size_t j = 1; j < c->nsinks; j++) {
    size_t lj, li;
    const char *pj = sink_place(&c->sinks[j], &lj);
    char kj[PATH_MAX], ki[PATH_MAX];
    if (pj) place_key(pj, lj, kj, sizeof kj);
    for (size_t i = 0; pj && i < j; i++) {
      const char *pi = sink_place(&c->sinks[i], &li);
      char q[160];
      if (!pi || strcmp(c->sinks[i].name, c->sinks[j].name)) continue;
      place_key(pi, li, ki, sizeof ki);
      if (!strcmp(ki, kj))
        return fail(pc, pc->text + c->sinks[j].offset, "sink %s writes to '%s' as the sink at offset %zu does",
                    c->sinks[j].name, QUOTE(q, pj, pj + lj), c->sinks[i].offset);
    }
  }
  return 0;
}

/* A source this interpreter or the other keys rule out: checked here, not
 * at create, for the offsets every other message has. */
static int finish_source(parse_ctx *pc, const statsprof__config *c) {
  if (c->source == STATSPROF__SOURCE_MONITORING && PY_VERSION_HEX < 0x030C0000)
    return fail(pc, pc->at[KEY_source], "source=monitoring needs Python 3.12 or newer (sys.monitoring); this is %s",
                PY_VERSION);
  if (c->source == STATSPROF__SOURCE_EVALFRAME && c->builtins)
    return fail(pc, later(pc->at[KEY_source], pc->at[KEY_builtins]),
                "source=evalframe counts Python functions only: it needs builtins=off");
  return 0;
}

const char *statsprof__config_key(int i, statsprof__value_spec *spec) {
  if (i < 0 || i >= NKEYS) return NULL;
  if (spec) *spec = keys[i].spec;
  return keys[i].name;
}

int statsprof__config_parse(const char *text, statsprof__config *c, char *err, size_t errlen) {
  statsprof__config_defaults(c);
  if (!text) return 0;
  parse_ctx pc = {.err = err, .errlen = errlen, .text = text};
  unsigned seen = 0;
  int rc = 0;
  for (const char *p = text; *p && !rc;) {
    const char *end = strchr(p, ';');
    if (!end) end = p + strlen(p);
    const char *b = p, *e = end;
    statsprof__trim(&b, &e);
    if (b < e) {
      const char *eq = memchr(b, '=', (size_t)(e - b));
      char q[160];
      if (!eq) {
        rc = fail(&pc, b, "'%s' is not key=value", QUOTE(q, b, e));
      } else {
        const char *kb = b, *ke = eq, *vb = eq + 1, *ve = e;
        statsprof__trim(&kb, &ke);
        statsprof__trim(&vb, &ve);
        rc = set_key(&pc, c, b, kb, ke, vb, ve, &seen);
      }
    }
    p = *end ? end + 1 : end;
  }
  if (!rc) rc = finish_sinks(&pc, c);
  if (!rc) rc = finish_duty(&pc, c, seen);
  if (!rc) rc = finish_source(&pc, c);
  if (rc) statsprof__config_free(c);
  return rc;
}
