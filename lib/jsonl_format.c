/* jsonl_format.c — one record as one JSON line. Runs without the GIL; the
 * record is immutable and owns (shares) its strings. */
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
  char *k = n <= sizeof small ? small : malloc(n);
  if (!k) {
    b->oom = 1;
    return;
  }
  snprintf(k, n, "%s:%d(%s)", file, line, name);
  statsprof__buf_json_string(b, k);
  if (k != small) free(k);
}

/* end - start in seconds, exact to the ns; a hand-made record with
 * extreme timestamps must not overflow the subtraction. */
static double interval_s(const statsprof_stats_profile *r) {
  int64_t d;
  if (__builtin_sub_overflow(r->end_ns, r->start_ns, &d)) return ((double)r->end_ns - (double)r->start_ns) * 1e-9;
  return (double)d * 1e-9;
}

static const char *kind_name(const statsprof_stats_profile *r) {
  if (r->mode == STATSPROF_SPIKE) return "spike";
  if (r->mode == STATSPROF_CUMULATIVE) return "cumulative";
  return r->thread_id ? "thread" : "delta";
}

static void put_frame_stats(statsprof__buf *b, const statsprof_frame_stats *f) {
  statsprof__buf_printf(b, ",\"frame_stats\":{\"frames\":%llu,\"mean\":", (unsigned long long)f->frames);
  put_double(b, f->mean_s);
  statsprof__buf_puts(b, ",\"p50\":");
  put_double(b, f->p50_s);
  statsprof__buf_puts(b, ",\"p95\":");
  put_double(b, f->p95_s);
  statsprof__buf_puts(b, ",\"p99\":");
  put_double(b, f->p99_s);
  statsprof__buf_puts(b, ",\"max\":");
  put_double(b, f->max_s);
  statsprof__buf_puts(b, "}");
}

static const char *hostname(void) {
  static char name[256];
  if (!name[0] && gethostname(name, sizeof name - 1) != 0) strcpy(name, "unknown");
  return name;
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
                        kind_name(r), (unsigned long long)r->dropped, (unsigned long long)r->sink_errors,
                        (unsigned long long)r->overflow_functions);
  if (r->thread_id) {
    statsprof__buf_printf(&b, ",\"thread_id\":%llu,\"thread_name\":", (unsigned long long)r->thread_id);
    if (r->thread_name) statsprof__buf_json_string(&b, r->thread_name);
    else statsprof__buf_puts(&b, "null");
  }
  if (r->mode == STATSPROF_SPIKE) {
    statsprof__buf_printf(&b, ",\"frame\":%llu,\"frame_time_s\":", (unsigned long long)r->frame);
    put_double(&b, r->frame_time_s);
  }
  if (r->frame_stats.frames) put_frame_stats(&b, &r->frame_stats);
  if (r->observed_s > 0 || r->duty > 0 || r->overhead_est > 0) {
    statsprof__buf_puts(&b, ",\"observed_s\":");
    put_double(&b, r->observed_s);
    statsprof__buf_puts(&b, ",\"duty\":");
    put_double(&b, r->duty);
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
    free(b.data);
    return STATSPROF_ENOMEM;
  }
  *out = b.data;
  *len = b.len;
  return 0;
}
