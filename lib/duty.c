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
  p->window_taken_at = now;
  p->window_cost_gone = p->window_cost_taken = 0;
  p->duty_boundary = now + ns_to_ticks(p->config.window_ns);
  statsprof__attach_all(p, self);
}

/* The calibrated cost of every profile event in the window so far, in
 * ticks: the live per-thread states' (each window attaches fresh ones, so
 * they start at 0) and those already unlinked. A host thread that enters
 * Python with PyGILState_Ensure gets a new thread state, and so a new
 * per-thread state, every time; its cost must not leave with it. */
static uint64_t window_cost(statsprof *p) {
  uint64_t n = p->window_cost_gone;
  for (statsprof__thread *t = p->threads; t; t = t->next) n += t->spent + t->slowdown;
  return n;
}

static void close_window(statsprof *p, uint64_t now) {
  /* Counts the frames still open as returning now, then unhooks: every
   * state is unlinked, its cost in window_cost_gone. */
  statsprof__detach_all(p);
  uint64_t spent = window_cost(p);
  p->in_window = 0;
  double spt = statsprof__clock_sec_per_tick;
  double observed = (double)(now - p->window_start) * spt;
  double cost = (double)spent * spt;
  /* A record taken during the window already has part of it. */
  p->observed_s += (double)(now - p->window_taken_at) * spt;
  p->overhead_s += (double)(spent - p->window_cost_taken) * spt;
  p->window_cost_gone = p->window_cost_taken = 0;
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
  if (p->in_window) {
    /* The open window's part so far: its time, and its cost (the record
     * that ends it takes only the rest). */
    observed += (double)(now - p->window_taken_at) * spt;
    p->window_taken_at = now;
    uint64_t spent = window_cost(p);
    p->overhead_s += (double)(spent - p->window_cost_taken) * spt;
    p->window_cost_taken = spent;
  }
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
