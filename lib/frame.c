/* frame.c — frame markers: frame times, their statistics per record, and
 * spike records for frames over budget.
 *
 * While markers are in use the hook stamps each entry and edge it updates
 * with the frame number and, on the first update in a frame, saves its
 * counters (f0) and appends it to a touched list. A spike record is then
 * built from the touched lists against f0: its cost follows what the frame
 * touched, not the size of the table. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int push(uint32_t **arr, uint32_t *n, uint32_t *cap, uint32_t v) {
  if (*n == *cap) {
    uint32_t c = *cap ? *cap * 2 : 256;
    uint32_t *a = realloc(*arr, c * sizeof *a);
    if (!a) return -1;
    *arr = a;
    *cap = c;
  }
  (*arr)[(*n)++] = v;
  return 0;
}

/* Room for index i; new slots have stamp 0, which no frame has. */
static int fit_base(struct statsprof__frame_base **arr, uint32_t *n, uint32_t i) {
  if (i < *n) return 0;
  uint32_t c = *n ? *n : 1024;
  while (c <= i) c *= 2;
  struct statsprof__frame_base *a = realloc(*arr, c * sizeof *a);
  if (!a) return -1;
  memset(a + *n, 0, (c - *n) * sizeof *a);
  *arr = a;
  *n = c;
  return 0;
}

static void touch_one(struct statsprof__frame_base **arr, uint32_t *n, uint32_t i, const statsprof__counters *c,
                      uint32_t **list, uint32_t *nlist, uint32_t *caplist, statsprof *p) {
  if (fit_base(arr, n, i) || push(list, nlist, caplist, i)) {
    p->frame_lost = 1;
    return;
  }
  (*arr)[i].stamp = p->frame_no;
  (*arr)[i].f0 = *c;
}

void statsprof__frame_touch_entry(statsprof *p, uint32_t entry) {
  touch_one(&p->frame_entries, &p->nframe_entries, entry, &p->table.entries[entry].c, &p->touched_entries,
            &p->ntouched_entries, &p->captouched_entries, p);
}

void statsprof__frame_touch_edge(statsprof *p, uint32_t edge) {
  touch_one(&p->frame_edges, &p->nframe_edges, edge, &p->table.edges[edge].c, &p->touched_edges,
            &p->ntouched_edges, &p->captouched_edges, p);
}

void statsprof__frame_forget(statsprof *p) {
  if (p->frame_entries) memset(p->frame_entries, 0, p->nframe_entries * sizeof *p->frame_entries);
  if (p->frame_edges) memset(p->frame_edges, 0, p->nframe_edges * sizeof *p->frame_edges);
  p->ntouched_entries = p->ntouched_edges = 0;
  p->frame_lost = 1; /* the frame under way spans the reset: no spike */
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t pct(const uint64_t *v, size_t n, double q) {
  size_t r = (size_t)(q * (double)n + 0.999999);
  return v[(r ? r : 1) - 1];
}

void statsprof__frame_stats_take(statsprof *p, statsprof_frame_stats *out) {
  memset(out, 0, sizeof *out);
  size_t n = p->nframe_times;
  if (!n) return;
  uint64_t *v = p->frame_times;
  qsort(v, n, sizeof *v, cmp_u64);
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  out->frames = n;
  out->mean_s = (double)sum / (double)n * 1e-9;
  out->p50_s = (double)pct(v, n, 0.50) * 1e-9;
  out->p95_s = (double)pct(v, n, 0.95) * 1e-9;
  out->p99_s = (double)pct(v, n, 0.99) * 1e-9;
  out->max_s = (double)v[n - 1] * 1e-9;
  p->nframe_times = 0;
}

/* Token bucket: max_spikes_per_min tokens, refilled continuously. */
static int spike_allowed(statsprof *p, int64_t now_ns) {
  double cap = (double)p->config.max_spikes_per_min;
  if (p->spike_last_ns) p->spike_tokens += (double)(now_ns - p->spike_last_ns) * cap / 60e9;
  else p->spike_tokens = cap;
  if (p->spike_tokens > cap) p->spike_tokens = cap;
  p->spike_last_ns = now_ns;
  if (p->spike_tokens < 1) {
    p->spikes_suppressed++;
    return 0;
  }
  p->spike_tokens -= 1;
  return 1;
}

static int emit_spike(statsprof *p, uint64_t frame_ns) {
  statsprof__selection sel = {
      .mode = STATSPROF_SPIKE,
      .base = STATSPROF__BASE_FRAME,
      .slot = STATSPROF__NONE,
      .entries = p->touched_entries,
      .nentries = p->ntouched_entries,
      .edges = p->touched_edges,
      .nedges = p->ntouched_edges,
  };
  statsprof_stats_profile *rec;
  int rc = statsprof__snapshot_build(p, &sel, &rec);
  if (rc) return rc;
  rec->frame = p->frame_no;
  rec->frame_time_s = (double)frame_ns * 1e-9;
  rec->start_ns = rec->end_ns - (int64_t)frame_ns;
  statsprof__writers_emit(&p->writers, rec);
  statsprof_stats_profile_free(rec);
  return 1;
}

int statsprof_frame_mark(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_frame_mark: NULL profiler");
  if (p->busy) return 0; /* called from inside another call (profiler.c) */
  int64_t now = statsprof__mono_ns();
  int rc = 0;
  if (p->frame_tracking) {
    uint64_t ns = (uint64_t)(now - p->frame_start_ns);
    if (p->nframe_times == p->capframe_times) {
      size_t c = p->capframe_times ? p->capframe_times * 2 : 1024;
      uint64_t *a = realloc(p->frame_times, c * sizeof *a);
      if (a) {
        p->frame_times = a;
        p->capframe_times = c;
      }
    }
    if (p->nframe_times < p->capframe_times) p->frame_times[p->nframe_times++] = ns;
    if (p->config.budget_ns && ns > (uint64_t)p->config.budget_ns && p->running && !p->frame_lost &&
        spike_allowed(p, statsprof__wall_ns()))
      rc = emit_spike(p, ns);
  }
  /* The next frame starts now, with nothing touched. */
  p->frame_tracking = 1;
  p->frame_no++;
  p->ntouched_entries = p->ntouched_edges = 0;
  p->frame_lost = 0;
  p->frame_start_ns = now;
  return rc;
}
