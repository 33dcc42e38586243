/* jsonl_format.c — a record as JSON lines: the "record" layout (one line
 * per record, functions nested under func_profiles) and the "rows" layout
 * (one flat line per function and per caller edge, for log shippers and
 * databases). Runs without the GIL; the record is immutable and owns
 * (shares) its strings. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static void put_double(statsprof__buf *b, double v) {
  /* JSON has no NaN/inf; a time is never one, but keep the line valid. */
  if (v != v || v > 1e300 || v < -1e300) v = 0;
  statsprof__buf_printf(b, "%.9g", v);
}

static void put_iso(statsprof__buf *b, int64_t ns) {
  time_t sec = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  statsprof__buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ns % 1000000000 / 1000));
}

/* "file:line(name)", the key pstats prints. */
static void put_key(statsprof__buf *b, const char *file, int line, const char *name) {
  size_t n = strlen(file) + strlen(name) + 24;
  char small[512];
  char *k = n <= sizeof small ? small : statsprof__malloc(n);
  if (!k) {
    b->oom = 1;
    return;
  }
  snprintf(k, n, "%s:%d(%s)", file, line, name);
  statsprof__buf_json_string(b, k);
  if (k != small) statsprof__free(k);
}

/* end - start in seconds, exact to the ns; a hand-made record with
 * extreme timestamps must not overflow the subtraction. */
static double interval_s(const statsprof_stats_profile *r) {
  int64_t d;
  if (__builtin_sub_overflow(r->end_ns, r->start_ns, &d)) return ((double)r->end_ns - (double)r->start_ns) * 1e-9;
  return (double)d * 1e-9;
}

/* What the record left out, only when something was: the same fields in
 * both layouts. */
static void put_omitted(statsprof__buf *b, const statsprof_stats_profile *r) {
  if (r->threads_omitted) statsprof__buf_printf(b, ",\"threads_omitted\":%llu", (unsigned long long)r->threads_omitted);
  if (r->spikes_suppressed)
    statsprof__buf_printf(b, ",\"spikes_suppressed\":%llu", (unsigned long long)r->spikes_suppressed);
}

/* Frame statistics under the given names: the record layout nests them
 * in "frame_stats", the rows layout flattens them. */
typedef struct frame_stats_names {
  const char *frames, *mean, *p50, *p95, *p99, *max, *end;
} frame_stats_names;

static const frame_stats_names nested_frame_stats = {
    ",\"frame_stats\":{\"frames\":", ",\"mean\":", ",\"p50\":", ",\"p95\":", ",\"p99\":", ",\"max\":", "}"};

static void put_frame_stats(statsprof__buf *b, const statsprof_frame_stats *f, const frame_stats_names *n) {
  statsprof__buf_printf(b, "%s%llu%s", n->frames, (unsigned long long)f->frames, n->mean);
  put_double(b, f->mean_s);
  statsprof__buf_puts(b, n->p50);
  put_double(b, f->p50_s);
  statsprof__buf_puts(b, n->p95);
  put_double(b, f->p95_s);
  statsprof__buf_puts(b, n->p99);
  put_double(b, f->p99_s);
  statsprof__buf_puts(b, n->max);
  put_double(b, f->max_s);
  statsprof__buf_puts(b, n->end);
}

/* Read once: two sinks' writer threads format records at the same time. */
static char g_hostname[256];

static void read_hostname(void) {
  if (gethostname(g_hostname, sizeof g_hostname - 1) != 0) strcpy(g_hostname, "unknown");
}

static const char *hostname(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_hostname);
  return g_hostname;
}

int statsprof_format_jsonl(const statsprof_stats_profile *r, char **out, size_t *len) {
  if (!r || !out || !len) return STATSPROF_EINVAL;
  statsprof__buf b = {0};
  char ncalls[48];
  statsprof__buf_puts(&b, "{\"ts\":");
  put_iso(&b, r->end_ns);
  statsprof__buf_printf(&b, ",\"ts_ns\":%lld,\"start_ns\":%lld,\"interval_s\":", (long long)r->end_ns,
                        (long long)r->start_ns);
  statsprof__buf_printf(&b, "%.9f", interval_s(r));
  statsprof__buf_printf(&b, ",\"seq\":%llu,\"pid\":%lld,\"host\":", (unsigned long long)r->seq,
                        (long long)r->pid);
  statsprof__buf_json_string(&b, hostname());
  statsprof__buf_printf(&b, ",\"kind\":\"%s\",\"dropped\":%llu,\"sink_errors\":%llu,\"overflow_functions\":%llu",
                        statsprof_record_kind_name(r->kind), (unsigned long long)r->dropped, (unsigned long long)r->sink_errors,
                        (unsigned long long)r->overflow_functions);
  /* Only when they happened: per_thread=on had more threads than records,
   * max_spikes_per_min held spikes back. */
  put_omitted(&b, r);
  if (r->thread_id) {
    statsprof__buf_printf(&b, ",\"thread_id\":%llu,\"thread_name\":", (unsigned long long)r->thread_id);
    if (r->thread_name) statsprof__buf_json_string(&b, r->thread_name);
    else statsprof__buf_puts(&b, "null");
  }
  if (r->kind == STATSPROF_RECORD_SPIKE) {
    statsprof__buf_printf(&b, ",\"frame\":%llu,\"frame_time_s\":", (unsigned long long)r->frame);
    put_double(&b, r->frame_time_s);
  }
  if (r->frame_stats.frames) put_frame_stats(&b, &r->frame_stats, &nested_frame_stats);
  if (r->observed_s > 0 || r->duty > 0 || r->overhead_est > 0) {
    statsprof__buf_puts(&b, ",\"observed_s\":");
    put_double(&b, r->observed_s);
    statsprof__buf_puts(&b, ",\"duty\":");
    put_double(&b, r->duty);
    statsprof__buf_puts(&b, ",\"span_s\":");
    put_double(&b, r->span_s);
    statsprof__buf_puts(&b, ",\"overhead_est\":");
    put_double(&b, r->overhead_est);
  }
  statsprof__buf_puts(&b, ",\"total_tt\":");
  put_double(&b, r->total_tt);
  statsprof__buf_puts(&b, ",\"func_profiles\":{");
  for (size_t i = 0; i < r->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &r->func_profiles[i];
    if (i) statsprof__buf_put(&b, ",", 1);
    put_key(&b, f->file_name, f->line_number, f->function_name);
    statsprof__ncalls_text(ncalls, sizeof ncalls, f->ncalls, f->primitive_calls);
    statsprof__buf_printf(&b, ":{\"ncalls\":\"%s\",\"tottime\":", ncalls);
    put_double(&b, f->tottime);
    statsprof__buf_puts(&b, ",\"percall_tottime\":");
    put_double(&b, f->percall_tottime);
    statsprof__buf_puts(&b, ",\"cumtime\":");
    put_double(&b, f->cumtime);
    statsprof__buf_puts(&b, ",\"percall_cumtime\":");
    put_double(&b, f->percall_cumtime);
    statsprof__buf_puts(&b, ",\"file_name\":");
    statsprof__buf_json_string(&b, f->file_name);
    statsprof__buf_printf(&b, ",\"line_number\":%d,\"function_name\":", f->line_number);
    statsprof__buf_json_string(&b, f->function_name);
    statsprof__buf_printf(&b, ",\"primitive_calls\":%llu,\"callers\":{",
                          (unsigned long long)f->primitive_calls);
    for (size_t j = 0; j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      if (j) statsprof__buf_put(&b, ",", 1);
      put_key(&b, c->file_name, c->line_number, c->function_name);
      statsprof__buf_printf(&b, ":{\"ncalls\":%llu,\"primitive_calls\":%llu,\"tottime\":",
                            (unsigned long long)c->ncalls, (unsigned long long)c->primitive_calls);
      put_double(&b, c->tottime);
      statsprof__buf_puts(&b, ",\"cumtime\":");
      put_double(&b, c->cumtime);
      statsprof__buf_put(&b, "}", 1);
    }
    statsprof__buf_puts(&b, "}}");
  }
  statsprof__buf_puts(&b, "}}\n");
  if (b.oom) {
    statsprof__free(b.data);
    return STATSPROF_ENOMEM;
  }
  *out = b.data;
  *len = b.len;
  return 0;
}

/* ---- the rows layout ------------------------------------------------------
 *
 * A record becomes a "record" line (its own facts: frame times, counters,
 * total_tt, and how many lines it has), then a "function" line per function,
 * each followed by a "caller" line per caller edge. Every line starts with
 * the fields that say which record it belongs to and when, so it stands
 * alone in a log index or a database table; record-level facts are on the
 * record line only, so that summing them over rows counts each record once.
 * The tools group a record's lines back together (they are contiguous: one
 * write()). */

/* ns since the epoch as seconds with all 9 decimals: exact, where printing
 * a double would round at ~100 ns. */
static void put_seconds(statsprof__buf *b, int64_t ns) {
  uint64_t u = ns < 0 ? 0 - (uint64_t)ns : (uint64_t)ns;
  statsprof__buf_printf(b, "%s%llu.%09llu", ns < 0 ? "-" : "", (unsigned long long)(u / 1000000000),
                        (unsigned long long)(u % 1000000000));
}

static int has_duty(const statsprof_stats_profile *r) {
  return r->observed_s > 0 || r->duty > 0 || r->overhead_est > 0;
}

/* What every line of the record starts with: when, whose, which record, and
 * the duty that its counts and times are to be divided by. */
static void put_row_identity(statsprof__buf *b, const statsprof_stats_profile *r) {
  statsprof__buf_puts(b, "{\"ts\":");
  put_seconds(b, r->end_ns);
  statsprof__buf_puts(b, ",\"start\":");
  put_seconds(b, r->start_ns);
  statsprof__buf_printf(b, ",\"interval_s\":%.9f,\"ts_ns\":%lld,\"start_ns\":%lld", interval_s(r),
                        (long long)r->end_ns, (long long)r->start_ns);
  statsprof__buf_printf(b, ",\"seq\":%llu,\"pid\":%lld,\"host\":", (unsigned long long)r->seq, (long long)r->pid);
  statsprof__buf_json_string(b, hostname());
  statsprof__buf_printf(b, ",\"kind\":\"%s\"", statsprof_record_kind_name(r->kind));
  if (r->thread_id) {
    /* No null for a thread without a name: database columns are strings. */
    statsprof__buf_printf(b, ",\"thread_id\":%llu", (unsigned long long)r->thread_id);
    if (r->thread_name) {
      statsprof__buf_puts(b, ",\"thread_name\":");
      statsprof__buf_json_string(b, r->thread_name);
    }
  }
  /* Spikes share their delta's seq: the frame tells them apart. */
  if (r->kind == STATSPROF_RECORD_SPIKE) statsprof__buf_printf(b, ",\"frame\":%llu", (unsigned long long)r->frame);
  if (has_duty(r)) {
    statsprof__buf_puts(b, ",\"duty\":");
    put_double(b, r->duty);
  }
}

static void put_record_row(statsprof__buf *b, const statsprof_stats_profile *r, size_t nrows) {
  statsprof__buf_printf(b, ",\"row\":\"record\",\"rows\":%zu", nrows);
  if (r->kind == STATSPROF_RECORD_SPIKE) {
    statsprof__buf_puts(b, ",\"frame_time_s\":");
    put_double(b, r->frame_time_s);
  }
  static const frame_stats_names flat = {",\"frames\":",      ",\"frame_mean_s\":", ",\"frame_p50_s\":",
                                         ",\"frame_p95_s\":", ",\"frame_p99_s\":",  ",\"frame_max_s\":", ""};
  if (r->frame_stats.frames) put_frame_stats(b, &r->frame_stats, &flat);
  if (has_duty(r)) {
    statsprof__buf_puts(b, ",\"observed_s\":");
    put_double(b, r->observed_s);
    statsprof__buf_puts(b, ",\"span_s\":");
    put_double(b, r->span_s);
    statsprof__buf_puts(b, ",\"overhead_est\":");
    put_double(b, r->overhead_est);
  }
  statsprof__buf_printf(b, ",\"dropped\":%llu,\"sink_errors\":%llu,\"overflow_functions\":%llu,\"total_tt\":",
                        (unsigned long long)r->dropped, (unsigned long long)r->sink_errors,
                        (unsigned long long)r->overflow_functions);
  put_double(b, r->total_tt);
  put_omitted(b, r);
  statsprof__buf_puts(b, "}\n");
}

static void put_counts(statsprof__buf *b, uint64_t ncalls, uint64_t primitive, double tottime, double cumtime) {
  statsprof__buf_printf(b, ",\"ncalls\":%llu,\"primitive_calls\":%llu,\"tottime\":", (unsigned long long)ncalls,
                        (unsigned long long)primitive);
  put_double(b, tottime);
  statsprof__buf_puts(b, ",\"cumtime\":");
  put_double(b, cumtime);
  statsprof__buf_puts(b, "}\n");
}

int statsprof_format_jsonl_rows(const statsprof_stats_profile *r, char **out, size_t *len) {
  if (!r || !out || !len) return STATSPROF_EINVAL;
  size_t nrows = 1 + r->nfunc_profiles;
  for (size_t i = 0; i < r->nfunc_profiles; i++) nrows += r->func_profiles[i].ncallers;
  statsprof__buf id = {0}, key = {0}, b = {0};
  put_row_identity(&id, r);
  if (id.oom) {
    statsprof__free(id.data);
    return STATSPROF_ENOMEM;
  }
  statsprof__buf_put(&b, id.data, id.len);
  put_record_row(&b, r, nrows);
  for (size_t i = 0; i < r->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &r->func_profiles[i];
    key.len = 0;
    put_key(&key, f->file_name, f->line_number, f->function_name);
    if (key.oom) break;
    statsprof__buf_put(&b, id.data, id.len);
    statsprof__buf_puts(&b, ",\"row\":\"function\",\"key\":");
    statsprof__buf_put(&b, key.data, key.len);
    statsprof__buf_puts(&b, ",\"file\":");
    statsprof__buf_json_string(&b, f->file_name);
    statsprof__buf_printf(&b, ",\"line\":%d,\"function\":", f->line_number);
    statsprof__buf_json_string(&b, f->function_name);
    put_counts(&b, f->ncalls, f->primitive_calls, f->tottime, f->cumtime);
    for (size_t j = 0; j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      statsprof__buf_put(&b, id.data, id.len);
      statsprof__buf_puts(&b, ",\"row\":\"caller\",\"key\":");
      statsprof__buf_put(&b, key.data, key.len);
      statsprof__buf_puts(&b, ",\"caller_key\":");
      put_key(&b, c->file_name, c->line_number, c->function_name);
      put_counts(&b, c->ncalls, c->primitive_calls, c->tottime, c->cumtime);
    }
  }
  int oom = key.oom || b.oom;
  statsprof__free(id.data);
  statsprof__free(key.data);
  if (oom) {
    statsprof__free(b.data);
    return STATSPROF_ENOMEM;
  }
  *out = b.data;
  *len = b.len;
  return 0;
}
