/* frame.c — frame markers: frame times, their statistics per record, and
 * spike records for frames over budget.
 *
 * While markers are in use the hook stamps each entry and edge it updates
 * with the frame number and, on the first update in a frame, saves its
 * counters (f0) and appends it to a touched list. A spike record is then
 * built (by the handle, profiler.c) from the touched lists against f0: its
 * cost follows what the frame touched, not the size of the table. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int push(uint32_t **arr, uint32_t *n, uint32_t *cap, uint32_t v) {
  if (STATSPROF__ARRAY_RESERVE(*arr, *cap, *n + 1, 256)) return -1;
  (*arr)[(*n)++] = v;
  return 0;
}

/* Room for index i (the array is its own capacity); new slots have stamp
 * 0, which no frame has. */
static int fit_base(statsprof__frame_base **arr, uint32_t *n, uint32_t i) {
  uint32_t old = *n;
  if (STATSPROF__ARRAY_RESERVE(*arr, *n, (size_t)i + 1, 1024)) return -1;
  memset(*arr + old, 0, (*n - old) * sizeof **arr);
  return 0;
}

void statsprof__frames_init(statsprof__frames *f, int64_t budget_ns, uint32_t max_spikes_per_min) {
  memset(f, 0, sizeof *f);
  f->budget_ns = budget_ns;
  f->max_spikes_per_min = max_spikes_per_min;
}

void statsprof__frames_free(statsprof__frames *f) {
  statsprof__free(f->touched_entries);
  statsprof__free(f->touched_edges);
  statsprof__free(f->entries);
  statsprof__free(f->edges);
  statsprof__free(f->times);
  statsprof__free(f->spike_times);
}

static void touch_one(statsprof__frames *f, statsprof__frame_base **arr, uint32_t *n, uint32_t i,
                      const statsprof__counters *c, uint32_t **list, uint32_t *nlist, uint32_t *caplist) {
  if (fit_base(arr, n, i) || push(list, nlist, caplist, i)) {
    f->lost = f->oom = 1;
    return;
  }
  (*arr)[i].stamp = f->no;
  (*arr)[i].f0 = *c;
}

void statsprof__frame_touch_entry(statsprof__frames *f, const statsprof__table *t, uint32_t entry) {
  touch_one(f, &f->entries, &f->nentries, entry, &t->entries[entry].c, &f->touched_entries,
            &f->ntouched_entries, &f->captouched_entries);
}

void statsprof__frame_touch_edge(statsprof__frames *f, const statsprof__table *t, uint32_t edge) {
  touch_one(f, &f->edges, &f->nedges, edge, &t->edges[edge].c, &f->touched_edges, &f->ntouched_edges,
            &f->captouched_edges);
}

void statsprof__frame_forget(statsprof__frames *f) {
  if (f->entries) memset(f->entries, 0, f->nentries * sizeof *f->entries);
  if (f->edges) memset(f->edges, 0, f->nedges * sizeof *f->edges);
  f->ntouched_entries = f->ntouched_edges = 0;
  f->ntimes = f->nframes = f->sum_ns = f->max_ns = 0; /* the next record's frame statistics begin at the reset */
  f->lost = 1;   /* the frame under way spans the reset: no spike */
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

void statsprof__frame_stats_take(statsprof__frames *f, statsprof_frame_stats *out) {
  memset(out, 0, sizeof *out);
  size_t n = f->ntimes;
  if (!n) return;
  uint64_t *v = f->times;
  qsort(v, n, sizeof *v, cmp_u64);
  out->frames = f->nframes;
  out->mean_s = (double)f->sum_ns / (double)f->nframes * 1e-9;
  out->p50_s = (double)pct(v, n, 0.50) * 1e-9;
  out->p95_s = (double)pct(v, n, 0.95) * 1e-9;
  out->p99_s = (double)pct(v, n, 0.99) * 1e-9;
  out->max_s = (double)f->max_ns * 1e-9;
  f->ntimes = f->nframes = f->sum_ns = f->max_ns = 0;
}

/* At most max_spikes_per_min spike records in any 60 s: the last that
 * many spike times, oldest first from spike_next. (A token bucket that
 * started full and refilled continuously let about twice the limit out in
 * the first minute.) Monotonic time, as the frames'. */
static int spike_allowed(statsprof__frames *f, int64_t now_ns) {
  uint32_t cap = f->max_spikes_per_min;
  if (cap && !f->spike_times) {
    f->spike_times = statsprof__calloc(cap, sizeof *f->spike_times);
    if (!f->spike_times) f->oom = 1;
  }
  if (!f->spike_times || (f->nspike_times == cap && now_ns - f->spike_times[f->spike_next] < 60000000000)) {
    f->spikes_suppressed++;
    return 0;
  }
  f->spike_times[f->spike_next] = now_ns;
  f->spike_next = (f->spike_next + 1) % cap;
  if (f->nspike_times < cap) f->nspike_times++;
  return 1;
}

static int over_budget(const statsprof__frames *f, uint64_t ns, int hooked) {
  return f->budget_ns && ns > (uint64_t)f->budget_ns && hooked;
}

/* Reservoir sampling (Vitter's R): past STATSPROF__FRAME_TIMES frames,
 * the nth replaces a random kept one with probability kept/n, so the kept
 * ones stay a uniform sample of all. */
static uint64_t next_random(statsprof__frames *f) {
  uint64_t x = f->sample_rng ? f->sample_rng : 0x9e3779b97f4a7c15u;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return f->sample_rng = x;
}

/* Ends the current frame's time at now_ns, where the next frame starts
 * (frames_end's: frames_begin follows, after the spike record, whose
 * writer=sync sinks may run Python that marks a frame first; that frame
 * starts here too), and keeps it for the frame statistics while the
 * profiler runs (stopped, the host may go on marking frames for days). */
static int keep_time(statsprof__frames *f, int64_t now_ns, int running, uint64_t *ns) {
  *ns = (uint64_t)(now_ns - f->start_ns);
  f->start_ns = now_ns;
  if (!running) return 0;
  if (f->ntimes < STATSPROF__FRAME_TIMES) {
    if (STATSPROF__ARRAY_RESERVE(f->times, f->captimes, f->ntimes + 1, 1024)) return STATSPROF_ENOMEM;
    f->times[f->ntimes++] = *ns;
  } else {
    uint64_t j = next_random(f) % (f->nframes + 1);
    if (j < f->ntimes) f->times[j] = *ns;
  }
  f->nframes++;
  f->sum_ns += *ns;
  if (*ns > f->max_ns) f->max_ns = *ns;
  return 0;
}

int statsprof__frames_end(statsprof__frames *f, int64_t now_ns, int running, int hooked, uint64_t *spike_ns) {
  if (!f->tracking) return 0;
  /* Frames marked inside this one (frames_mark_held) had their numbers. */
  uint64_t merged = f->held;
  f->no += f->held;
  f->held = 0;
  uint64_t ns;
  if (keep_time(f, now_ns, running, &ns)) return STATSPROF_ENOMEM;
  *spike_ns = ns;
  if (!over_budget(f, ns, hooked) || f->lost) return 0;
  if (merged || f->partial) {
    /* Its touches are those of the frames marked inside it as well, or
     * lack those made before frames_begin. */
    f->spikes_suppressed++;
    return 0;
  }
  return spike_allowed(f, now_ns);
}

void statsprof__frames_begin(statsprof__frames *f, int64_t now_ns) {
  if (!f->tracking) f->start_ns = now_ns; /* else frames_end or a nested mark set it */
  f->tracking = 1;
  /* Frames marked since frames_end, inside its spike record's sinks: the
   * new frame began at the last of them, and the touches made since then
   * are cleared here, so it gets no spike record either. */
  f->partial = f->held > 0;
  f->no += 1 + f->held;
  f->held = 0;
  f->ntouched_entries = f->ntouched_edges = 0;
  f->lost = 0;
}

/* The host marked a frame while another call held the profiler (the
 * timer's record waiting for a sink with the GIL released, mostly).
 * Skipping the mark, as before, merged two frames into one: frame
 * statistics lost a frame and gained a long one, and two short frames
 * made a false spike. The frame's time is kept instead. Its touches, and
 * the spike record that would need them, are not: the holder may be
 * building a record from the touched lists (pure C under the GIL, so
 * never interrupted by this call, but its selection points into them),
 * so they stay with the frame under way, which then covers several
 * frames and gets no spike record either. Both count as suppressed when
 * over budget. Only the times and the counters here are written, which
 * snapshot building reads with the GIL held throughout. */
int statsprof__frames_mark_held(statsprof__frames *f, int64_t now_ns, int running, int hooked) {
  if (!f->tracking) {
    /* The first mark only starts frame 1: nothing is built from frames
     * yet, so that is safe inside another call. */
    statsprof__frames_begin(f, now_ns);
    return 1;
  }
  uint64_t ns;
  if (keep_time(f, now_ns, running, &ns)) return STATSPROF_ENOMEM;
  if (over_budget(f, ns, hooked) && !f->lost) f->spikes_suppressed++;
  f->held++;
  return 0;
}

void statsprof__frames_cut(statsprof__frames *f) {
  if (f->tracking) f->partial = 1;
}
