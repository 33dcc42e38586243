/* config.c — the config string: `key=value` pairs separated by ';'.
 * Parsed once into a plain struct; every message quotes the bad text and
 * gives its offset, so a host can point at the exact spot. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void statsprof__config_defaults(statsprof__config *c) {
  memset(c, 0, sizeof *c);
  c->interval_ns = 1000000000;
  c->clock = STATSPROF__CLOCK_WALL;
  c->builtins = 1;
  c->max_functions = 100000;
  c->queue = 64;
  c->compensate = 1;
  c->max_spikes_per_min = 10;
}

void statsprof__config_free(statsprof__config *c) {
  for (size_t i = 0; i < c->nsinks; i++) {
    free(c->sinks[i].name);
    free(c->sinks[i].arg);
  }
  c->nsinks = 0;
}

int64_t statsprof__parse_duration(const char *s) {
  /* Plain decimal only: strtod would also take hex, "inf" and "nan". */
  if (!isdigit((unsigned char)s[0]) && !(s[0] == '.' && isdigit((unsigned char)s[1]))) return -1;
  for (const char *c = s; *c && !isalpha((unsigned char)*c); c++)
    if (!isdigit((unsigned char)*c) && *c != '.') return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || v != v) return -1;
  double scale;
  if (!*end && v == 0) return 0; /* a bare 0 needs no unit */
  if (!strcmp(end, "ns")) scale = 1;
  else if (!strcmp(end, "us")) scale = 1e3;
  else if (!strcmp(end, "ms")) scale = 1e6;
  else if (!strcmp(end, "s")) scale = 1e9;
  else if (!strcmp(end, "m")) scale = 60e9;
  else if (!strcmp(end, "h")) scale = 3600e9;
  else return -1;
  if (v * scale > 9.2e18) return -1;
  return (int64_t)(v * scale + 0.5);
}

static int parse_bool(const char *v) {
  static const char *yes[] = {"1", "on", "true", "yes"}, *no[] = {"0", "off", "false", "no"};
  for (int i = 0; i < 4; i++) {
    if (!strcmp(v, yes[i])) return 1;
    if (!strcmp(v, no[i])) return 0;
  }
  return -1;
}

/* "5%" -> 0.05, "0.05" -> 0.05; -1 when malformed. */
static double parse_fraction(const char *v) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)v[0]) && v[0] != '.') return -1;
  double f = strtod(v, &end);
  if (end == v || errno) return -1;
  if (!strcmp(end, "%")) return f / 100;
  return *end ? -1 : f;
}

static char *dup_range(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

/* Trims [*b, *e) of white space. */
static void trim(const char **b, const char **e) {
  while (*b < *e && isspace((unsigned char)**b)) (*b)++;
  while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

typedef struct {
  char *err;
  size_t errlen;
  const char *text; /* whole config, for offsets */
} parse_ctx;

static int fail(parse_ctx *pc, const char *at, const char *fmt, const char *item, const char *detail) {
  char what[256];
  snprintf(what, sizeof what, fmt, item, detail ? detail : "");
  snprintf(pc->err, pc->errlen, "config: %s (at offset %ld)", what, (long)(at - pc->text));
  return STATSPROF_ECONFIG;
}

/* Production mode: fills window/every from whichever of duty, window,
 * every and max_overhead were given. */
static int finish_duty(parse_ctx *pc, statsprof__config *c, unsigned seen) {
  int has_window = (seen >> 14) & 1, has_every = (seen >> 15) & 1;
  if (!c->duty && !has_window && !has_every && !c->max_overhead) return 0;
  if (c->duty && has_window && has_every)
    return fail(pc, pc->text, "duty cannot be combined with both window and every%s%s", "", NULL);
  if (c->duty && has_every && !has_window) c->window_ns = (int64_t)((double)c->every_ns * c->duty);
  if (!c->window_ns) c->window_ns = 50000000; /* 50 ms */
  /* max_overhead alone starts at 10% and lengthens the gaps as needed. */
  if (!has_every) {
    double every = (double)c->window_ns / (c->duty ? c->duty : 0.1);
    /* A day between windows is already "almost never"; beyond int64 is not. */
    if (every > 86400e9) return fail(pc, pc->text, "window is too long for the duty%s%s (every would exceed 24h)", "", NULL);
    c->every_ns = (int64_t)every;
  }
  if (c->every_ns < c->window_ns)
    return fail(pc, pc->text, "every must be at least window%s%s (production mode)", "", NULL);
  return 0;
}

static int set_key(parse_ctx *pc, statsprof__config *c, const char *key, const char *val,
                   const char *at, unsigned *seen) {
  static const char *keys[] = {"interval", "clock", "builtins", "max_functions", "sink",
                               "writer", "on_full", "queue", "trigger", "compensate",
                               "budget", "max_spikes_per_min", "per_thread", "duty", "window",
                               "every", "max_overhead"};
  enum { NKEYS = sizeof keys / sizeof *keys };
  int k = -1;
  for (int i = 0; i < NKEYS; i++)
    if (!strcmp(key, keys[i])) k = i;
  if (k < 0)
    return fail(pc, at,
                "unknown key '%s'%s; known keys: interval, clock, builtins, max_functions, sink, "
                "writer, on_full, queue, trigger, compensate, budget, max_spikes_per_min, per_thread, "
                "duty, window, every, max_overhead",
                key, NULL);
  if (k != 4 && (*seen & (1u << k))) return fail(pc, at, "duplicate key '%s'%s", key, NULL);
  *seen |= 1u << k;
  if (!*val) return fail(pc, at, "key '%s' has an empty value%s", key, NULL);

  switch (k) {
    case 0: {
      int64_t ns = statsprof__parse_duration(val);
      if (ns < 0)
        return fail(pc, at, "bad duration '%s' for interval%s (use e.g. 500ms, 1s, 2m)", val, NULL);
      c->interval_ns = ns;
      return 0;
    }
    case 1:
      if (!strcmp(val, "wall")) c->clock = STATSPROF__CLOCK_WALL;
      else if (!strcmp(val, "cpu")) c->clock = STATSPROF__CLOCK_CPU;
      else return fail(pc, at, "bad clock '%s'%s (use wall or cpu)", val, NULL);
      return 0;
    case 2:
    case 9:
    case 12: {
      int b = parse_bool(val);
      if (b < 0) return fail(pc, at, "bad value '%s' for %s (use on or off)", val, key);
      *(k == 2 ? &c->builtins : k == 9 ? &c->compensate : &c->per_thread) = b;
      return 0;
    }
    case 10:
    case 14:
    case 15: {
      int64_t ns = statsprof__parse_duration(val);
      if (ns < 0 || (k != 10 && ns == 0))
        return fail(pc, at, "bad duration '%s' for %s (use e.g. 16.6ms, 50ms, 1s)", val, key);
      *(k == 10 ? &c->budget_ns : k == 14 ? &c->window_ns : &c->every_ns) = ns;
      return 0;
    }
    case 13:
    case 16: {
      double f = parse_fraction(val);
      if (f <= 0 || f > 1)
        return fail(pc, at, "bad %s '%s' (a percentage above 0%% and at most 100%%, e.g. 5%%)", key, val);
      *(k == 13 ? &c->duty : &c->max_overhead) = f;
      return 0;
    }
    case 11: {
      char *end;
      errno = 0;
      unsigned long n = strtoul(val, &end, 10);
      if (*end || errno || n > 100000 || val[0] == '-')
        return fail(pc, at, "bad max_spikes_per_min '%s'%s (a whole number from 0 to 100000)", val, NULL);
      c->max_spikes_per_min = (uint32_t)n;
      return 0;
    }
    case 5:
      if (!strcmp(val, "thread")) c->writer_sync = 0;
      else if (!strcmp(val, "sync")) c->writer_sync = 1;
      else return fail(pc, at, "bad writer '%s'%s (use thread or sync)", val, NULL);
      return 0;
    case 6:
      if (!strcmp(val, "drop")) c->on_full_block = 0;
      else if (!strcmp(val, "block")) c->on_full_block = 1;
      else return fail(pc, at, "bad on_full '%s'%s (use drop or block)", val, NULL);
      return 0;
    case 7: {
      char *end;
      errno = 0;
      unsigned long n = strtoul(val, &end, 10);
      if (*end || errno || n < 1 || n > 65536 || val[0] == '-')
        return fail(pc, at, "bad queue '%s'%s (records per sink, from 1 to 65536)", val, NULL);
      c->queue = (uint32_t)n;
      return 0;
    }
    case 8:
      if (!strcmp(val, "tick")) c->trigger_timer = 0;
      else if (!strcmp(val, "timer")) c->trigger_timer = 1;
      else return fail(pc, at, "bad trigger '%s'%s (use tick or timer)", val, NULL);
      return 0;
    case 3: {
      char *end;
      errno = 0;
      unsigned long long n = strtoull(val, &end, 10);
      if (*end || errno || n < 1 || n > 100000000 || val[0] == '-')
        return fail(pc, at, "bad max_functions '%s'%s (a whole number from 1 to 100000000)", val, NULL);
      c->max_functions = (uint32_t)n;
      return 0;
    }
    default: {
      if (c->nsinks == STATSPROF__MAX_SINKS) return fail(pc, at, "too many sinks at '%s'%s", val, NULL);
      const char *colon = strchr(val, ':');
      size_t nlen = colon ? (size_t)(colon - val) : strlen(val);
      if (nlen == 0) return fail(pc, at, "sink '%s' has no name%s (use NAME or NAME:ARG)", val, NULL);
      for (size_t i = 0; i < nlen; i++)
        if (!isalnum((unsigned char)val[i]) && val[i] != '_' && val[i] != '-')
          return fail(pc, at, "bad sink name in '%s'%s (use NAME or NAME:ARG)", val, NULL);
      if (colon && !colon[1]) return fail(pc, at, "sink '%s' has an empty argument after ':'%s", val, NULL);
      statsprof__sink_spec *s = &c->sinks[c->nsinks];
      s->name = dup_range(val, nlen);
      s->arg = colon ? dup_range(colon + 1, strlen(colon + 1)) : NULL;
      if (!s->name || (colon && !s->arg)) {
        free(s->name);
        free(s->arg);
        snprintf(pc->err, pc->errlen, "config: out of memory");
        return STATSPROF_ENOMEM;
      }
      c->nsinks++;
      return 0;
    }
  }
}

int statsprof__config_parse(const char *text, statsprof__config *c, char *err, size_t errlen) {
  statsprof__config_defaults(c);
  if (!text) return 0;
  parse_ctx pc = {err, errlen, text};
  unsigned seen = 0;
  const char *p = text;
  while (*p) {
    const char *end = strchr(p, ';');
    if (!end) end = p + strlen(p);
    const char *b = p, *e = end;
    trim(&b, &e);
    if (b < e) {
      const char *eq = memchr(b, '=', (size_t)(e - b));
      char item[256];
      snprintf(item, sizeof item, "%.*s", (int)(e - b), b);
      if (!eq) {
        statsprof__config_free(c);
        return fail(&pc, b, "'%s' is not key=value%s", item, NULL);
      }
      const char *kb = b, *ke = eq, *vb = eq + 1, *ve = e;
      trim(&kb, &ke);
      trim(&vb, &ve);
      char *key = dup_range(kb, (size_t)(ke - kb)), *val = dup_range(vb, (size_t)(ve - vb));
      int rc = key && val ? set_key(&pc, c, key, val, b, &seen) : STATSPROF_ENOMEM;
      if (rc == STATSPROF_ENOMEM && !(key && val)) snprintf(err, errlen, "config: out of memory");
      free(key);
      free(val);
      if (rc) {
        statsprof__config_free(c);
        return rc;
      }
    }
    p = *end ? end + 1 : end;
  }
  int rc = finish_duty(&pc, c, seen);
  if (rc) statsprof__config_free(c);
  return rc;
}
