/* duty.c — production mode: the hook is installed on every thread only
 * during short windows and removed between them (duty=5% or
 * window=50ms;every=1s), optionally sized to an overhead budget
 * (max_overhead=1%).
 *
 * Semantics at the edges of a window. A frame already running when a
 * window opens is not on the new stack: its return is ignored, so no call
 * that began outside the window is counted, and its time is not seen. A
 * frame still running when a window closes is counted as returning at the
 * close (as cProfile's disable does): its call began inside the window, and
 * its times are clipped to the window, never inflated. Outer frames that
 * span windows therefore show only the time of callees observed inside
 * windows; records carry observed_s and duty so tools can scale.
 *
 * Budget. After each window the profiler's own cost is estimated as the
 * window's profile events times the calibrated cost per event; the next gap
 * is sized so that cost stays under max_overhead of wall time. */
#include "internal.h"

static uint64_t ns_to_ticks(int64_t ns) {
  return (uint64_t)((double)ns * 1e-9 / statsprof__clock_sec_per_tick);
}

int statsprof__duty_enabled(const statsprof *p) { return p->config.window_ns > 0; }

static void open_window(statsprof *p, uint64_t now, int self) {
  p->in_window = 1;
  p->window_start = now;
  p->duty_boundary = now + ns_to_ticks(p->config.window_ns);
  statsprof__attach_all(p, self);
}

/* The calibrated cost of every profile event in the window, in ticks
 * (each window attaches fresh per-thread states, so they start at 0). */
static uint64_t window_cost(statsprof *p) {
  uint64_t n = 0;
  for (statsprof__thread *t = p->threads; t; t = t->next) n += t->spent + t->slowdown;
  return n;
}

static void close_window(statsprof *p, uint64_t now) {
  uint64_t spent = window_cost(p);
  /* Counts the frames still open as returning now, then unhooks. */
  statsprof__detach_all(p);
  p->in_window = 0;
  double spt = statsprof__clock_sec_per_tick;
  double observed = (double)(now - p->window_start) * spt;
  double cost = (double)spent * spt;
  p->observed_s += observed;
  p->overhead_s += cost;
  int64_t gap_ns = p->config.every_ns - p->config.window_ns;
  if (p->config.max_overhead > 0 && observed > 0) {
    /* cost over (observed + gap) must stay under the budget. */
    double need = cost / p->config.max_overhead - observed;
    if (need * 1e9 > (double)gap_ns) gap_ns = (int64_t)(need * 1e9);
    if (gap_ns > 60 * (int64_t)1000000000) gap_ns = 60 * (int64_t)1000000000;
  }
  p->duty_boundary = now + ns_to_ticks(gap_ns > 0 ? gap_ns : 0);
}

void statsprof__duty_step(statsprof *p, uint64_t now, int self) {
  if (!statsprof__duty_enabled(p) || now < p->duty_boundary) return;
  if (p->in_window) close_window(p, now);
  else open_window(p, now, self);
}

void statsprof__duty_stop(statsprof *p) {
  if (statsprof__duty_enabled(p) && p->in_window) close_window(p, statsprof__ticks());
}

void statsprof__duty_start(statsprof *p) {
  p->in_window = 0;
  p->observed_s = p->overhead_s = 0;
  open_window(p, statsprof__ticks(), 1);
}

void statsprof__duty_take(statsprof *p, statsprof_stats_profile *rec) {
  if (!statsprof__duty_enabled(p)) return;
  uint64_t now = statsprof__ticks();
  double spt = statsprof__clock_sec_per_tick;
  double observed = p->observed_s;
  if (p->in_window) observed += (double)(now - p->window_start) * spt, p->window_start = now;
  double interval = (double)(rec->end_ns - rec->start_ns) * 1e-9;
  /* duty is the share of the interval's *work* that was observed: code in
   * a window runs slower (the profiler's cost), so wall time would
   * overstate it. Both sides exclude that estimated cost. */
  double cost = p->overhead_s < observed ? p->overhead_s : observed;
  rec->observed_s = observed;
  rec->duty = interval > cost ? (observed - cost) / (interval - cost) : 0;
  if (rec->duty > 1) rec->duty = 1;
  if (rec->duty < 0) rec->duty = 0;
  rec->overhead_est = interval > 0 ? p->overhead_s / interval : 0;
  p->observed_s = p->overhead_s = 0;
}
