/* sinks/pstats.c — one file per record, in the format of
 * cProfile.Profile.dump_stats, so `pstats.Stats(path)`, snakeviz, gprof2dot
 * and friends read our records as they read cProfile's.
 *
 * dump_stats is marshal.dump of
 *   {(file, line, name): (cc, nc, tt, ct, {caller_key: (nc, cc, tt, ct)})}
 * Sinks run without the GIL, so the marshal bytes are written by hand: a
 * small subset of marshal version 4 (dicts, tuples, ints, binary floats and
 * strings, no back-references), which every Python since 3.4 loads.
 *
 * Each file is written under a hidden temporary name and renamed into place,
 * so a reader polling DIR never sees a partial file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../internal.h"

typedef struct pstats_sink {
  statsprof__record_dir dir;
} pstats_sink;

/* ---- marshal, version 4 subset ----------------------------------------- */

static void put_u8(statsprof__buf *b, unsigned v) {
  char c = (char)v;
  statsprof__buf_put(b, &c, 1);
}

static void put_le32(statsprof__buf *b, uint32_t v) {
  char c[4] = {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
  statsprof__buf_put(b, c, 4);
}

/* Counts are unsigned 64-bit; marshal's 'i' holds a signed 32-bit value and
 * anything larger is a 'l': base 2**15 digits, least significant first. */
static void put_uint(statsprof__buf *b, uint64_t v) {
  if (v <= INT32_MAX) {
    put_u8(b, 'i');
    put_le32(b, (uint32_t)v);
    return;
  }
  uint16_t digits[5];
  uint32_t n = 0;
  for (; v; v >>= 15) digits[n++] = (uint16_t)(v & 0x7fff);
  put_u8(b, 'l');
  put_le32(b, n);
  for (uint32_t i = 0; i < n; i++) {
    char c[2] = {(char)digits[i], (char)(digits[i] >> 8)};
    statsprof__buf_put(b, c, 2);
  }
}

static void put_int(statsprof__buf *b, int v) {
  put_u8(b, 'i');
  put_le32(b, (uint32_t)v);
}

static void put_float(statsprof__buf *b, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  put_u8(b, 'g');
  put_le32(b, (uint32_t)bits);
  put_le32(b, (uint32_t)(bits >> 32));
}


/* Labels are UTF-8 from the hook, but a record may come from elsewhere:
 * invalid bytes become "\xNN", as the hook's backslashreplace would write. */
static void put_str(statsprof__buf *b, const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t len = strlen(s);
  int ascii = 1, valid = 1;
  for (size_t i = 0, n; i < len; i += n ? n : 1) {
    n = statsprof__utf8_seq(u + i);
    ascii &= n == 1;
    valid &= n != 0;
  }
  if (ascii && len < 256) {
    put_u8(b, 'z');
    put_u8(b, (unsigned)len);
    statsprof__buf_put(b, s, len);
    return;
  }
  if (valid) {
    put_u8(b, ascii ? 'a' : 'u');
    put_le32(b, (uint32_t)len);
    statsprof__buf_put(b, s, len);
    return;
  }
  statsprof__buf fixed = {0};
  for (size_t i = 0, n; i < len; i += n ? n : 1) {
    n = statsprof__utf8_seq(u + i);
    if (n) statsprof__buf_put(&fixed, s + i, n);
    else statsprof__buf_printf(&fixed, "\\x%02x", u[i]);
  }
  if (fixed.oom) b->oom = 1;
  else put_str(b, fixed.data);
  statsprof__free(fixed.data);
}

static void put_key(statsprof__buf *b, const char *file, int line, const char *name) {
  put_u8(b, ')');
  put_u8(b, 3);
  put_str(b, file);
  put_int(b, line);
  put_str(b, name);
}

/* The whole record as marshal.dumps(cProfile_stats). */
static void put_stats(statsprof__buf *b, const statsprof_stats_profile *rec) {
  put_u8(b, '{');
  for (size_t i = 0; i < rec->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &rec->func_profiles[i];
    put_key(b, f->file_name, f->line_number, f->function_name);
    /* A function is (primitive, total, ...); its callers are the reverse. */
    put_u8(b, ')');
    put_u8(b, 5);
    put_uint(b, f->primitive_calls);
    put_uint(b, f->ncalls);
    put_float(b, f->tottime);
    put_float(b, f->cumtime);
    put_u8(b, '{');
    for (size_t j = 0; j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      put_key(b, c->file_name, c->line_number, c->function_name);
      put_u8(b, ')');
      put_u8(b, 4);
      put_uint(b, c->ncalls);
      put_uint(b, c->primitive_calls);
      put_float(b, c->tottime);
      put_float(b, c->cumtime);
    }
    put_u8(b, '0');
  }
  put_u8(b, '0');
}

/* ---- files ------------------------------------------------------------- */

/* DIR/statsprof<kind>-<seq>-<UTC end time>-<pid>, without the ".prof".
 * Per-thread and spike records carry their merged record's seq, time and
 * pid: <kind> ("-thread<tid>", "-spike<frame>") keeps their names apart,
 * and, before the seq, out of a glob for the merged ones (statsprof-[0-9]*),
 * which pstats.Stats would otherwise add up with their threads. */
static void record_base(char *out, size_t n, const char *dir, const statsprof_stats_profile *rec) {
  time_t secs = (time_t)(rec->end_ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char kind[48];
  statsprof__record_kind_tag(kind, sizeof kind, rec);
  snprintf(out, n, "%s/statsprof%s-%06llu-%04d%02d%02dT%02d%02d%02dZ-%lld", dir, kind,
           (unsigned long long)rec->seq, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (long long)rec->pid);
}

static int pstats_emit(void *ctx, const statsprof_stats_profile *rec) {
  pstats_sink *s = ctx;
  /* pstats.Stats refuses an empty dict, and an idle host would fill DIR
   * with them; the gap in seq still shows the interval. */
  if (rec->nfunc_profiles == 0) return 0;
  statsprof__buf b = {0};
  put_stats(&b, rec);
  int rc = STATSPROF_ENOMEM;
  if (!b.oom) {
    char base[4096];
    record_base(base, sizeof base, s->dir.path, rec);
    /* A second file of the same second: "-2.prof", "-3.prof", ... */
    rc = statsprof__record_dir_write(&s->dir, base, '-', ".prof", &b);
  }
  statsprof__free(b.data);
  return rc;
}

static void pstats_close(void *ctx) {
  pstats_sink *s = ctx;
  statsprof__record_dir_close(&s->dir);
  statsprof__free(s);
}

static const statsprof_sink_ops pstats_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "pstats",
    .emit = pstats_emit,
    .flush = NULL,
    .close = pstats_close,
};

int statsprof__pstats_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                           size_t errlen) {
  pstats_sink *s = statsprof__malloc(sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  int rc = statsprof__record_dir_open(&s->dir, arg, "pstats", err, errlen);
  if (rc) {
    statsprof__free(s);
    return rc;
  }
  *ops = &pstats_ops;
  *ctx = s;
  return 0;
}
