/* sinks/stderr.c — a pstats-like text table of the top N functions by
 * cumulative time, for a human watching the console.
 *
 * Written to fd 2 directly, never through stdio: fwrite would hold the
 * FILE lock of stderr (and block the host's own writes to it) for as long
 * as a pipe's reader does not read. Each table gets the stall limit the
 * file sinks have (STATSPROF__STALL_MS); after a stall the next tables do
 * not wait at all until one goes through whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

typedef struct stderr_sink {
  size_t top;
  statsprof__stderr_out out;
  int stalled; /* the last table timed out */
  int cut;     /* the last table was cut short: start the next on a new line */
} stderr_sink;

static int by_cumtime(const void *a, const void *b, void *rec) {
  const statsprof_function_profile *fp = ((const statsprof_stats_profile *)rec)->func_profiles;
  const statsprof_function_profile *fa = &fp[*(const size_t *)a], *fb = &fp[*(const size_t *)b];
  return fa->cumtime < fb->cumtime ? 1 : fa->cumtime > fb->cumtime ? -1 : 0;
}

static int stderr_emit(void *ctx, const statsprof_stats_profile *r) {
  stderr_sink *s = ctx;
  size_t n = r->nfunc_profiles, *order = statsprof__malloc((n ? n : 1) * sizeof *order);
  if (!order) return STATSPROF_ENOMEM;
  for (size_t i = 0; i < n; i++) order[i] = i;
  qsort_r(order, n, sizeof *order, by_cumtime, (void *)r);
  uint64_t calls = 0;
  for (size_t i = 0; i < n; i++) calls += r->func_profiles[i].ncalls;
  char kind[160];
  const char *name = statsprof_record_kind_name(r->kind);
  if (r->kind == STATSPROF_RECORD_SPIKE)
    snprintf(kind, sizeof kind, "%s, frame %llu", name, (unsigned long long)r->frame);
  else if (r->kind == STATSPROF_RECORD_THREAD)
    snprintf(kind, sizeof kind, "%s %llu %s", name, (unsigned long long)r->thread_id,
             r->thread_name ? r->thread_name : "");
  else if (r->thread_id)
    snprintf(kind, sizeof kind, "%s, thread %llu %s", name, (unsigned long long)r->thread_id,
             r->thread_name ? r->thread_name : "");
  else
    snprintf(kind, sizeof kind, "%s", name);
  statsprof__buf b = {0};
  if (s->cut) statsprof__buf_puts(&b, "\n"); /* the rest of a cut table is dropped, not its line */
  statsprof__buf_printf(&b, "statsprof #%llu (%s): %.3f s, %llu calls, total_tt %.6f s\n",
                        (unsigned long long)r->seq, kind,
                        (double)((uint64_t)r->end_ns - (uint64_t)r->start_ns) * 1e-9, (unsigned long long)calls, r->total_tt);
  statsprof__buf_puts(&b, "      ncalls   tottime   percall   cumtime   percall filename:lineno(function)\n");
  for (size_t i = 0; i < n && i < s->top; i++) {
    const statsprof_function_profile *f = &r->func_profiles[order[i]];
    char nc[48];
    statsprof__ncalls_text(nc, sizeof nc, f->ncalls, f->primitive_calls);
    statsprof__buf_printf(&b, "%12s %9.6f %9.6f %9.6f %9.6f %s:%d(%s)\n", nc, f->tottime,
                          f->ncalls ? f->percall_tottime : 0.0, f->cumtime,
                          f->primitive_calls ? f->percall_cumtime : 0.0, f->file_name, f->line_number,
                          f->function_name);
  }
  statsprof__free(order);
  int rc = b.oom ? STATSPROF_ENOMEM : 0;
  if (!rc) {
    statsprof__stderr_refresh(&s->out);
    size_t done = statsprof__write_fd(s->out.fd, s->out.how, b.data, b.len, s->stalled ? 0 : STATSPROF__STALL_MS);
    int e = errno;
    s->stalled = done < b.len && e == ETIMEDOUT;
    if (done < b.len) {
      s->cut |= done > 0;
      statsprof__sink_fail("cannot write to stderr: %s", e == ETIMEDOUT ? "stalled, no room for 1 s" : strerror(e));
      rc = STATSPROF_EIO;
    } else {
      s->cut = 0;
    }
  }
  statsprof__free(b.data);
  return rc;
}

static void stderr_close(void *ctx) {
  stderr_sink *s = ctx;
  statsprof__stderr_close(&s->out);
  statsprof__free(s);
}

static const statsprof_sink_ops stderr_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "stderr",
    .emit = stderr_emit,
    .close = stderr_close,
};

int statsprof__stderr_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                           size_t errlen) {
  static const statsprof__value_spec rows = {
      .units = statsprof__count_units, .whole = 1, .min = 1, .max = 100000,
      .help = "sink=stderr or sink=stderr:N, N from 1 to 100000"};
  const char *main;
  size_t len;
  uint64_t top = 20;
  int rc = statsprof__sink_args(arg, NULL, NULL, &main, &len, err, errlen);
  if (!rc && arg) rc = statsprof__sink_main_value(arg, "row count", &rows, main, len, &top, err, errlen);
  if (rc) return rc;
  stderr_sink *s = statsprof__malloc(sizeof *s);
  if (!s) {
    statsprof__msg(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  s->top = (size_t)top;
  s->out.fd = -1;
  s->out.own = 0;
  s->stalled = s->cut = 0;
  *ops = &stderr_ops;
  *ctx = s;
  return 0;
}
