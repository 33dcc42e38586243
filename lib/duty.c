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
 * is sized so that cost stays under max_overhead of wall time.
 *
 * This file only keeps time and accounts: the handle (profiler.c) asks
 * statsprof__duty_due which edge has come, attaches or detaches the hook,
 * and passes in the profiler's own cost so far (ticks, ever growing), from
 * which the window's cost is a difference. */
#include <string.h>

#include "internal.h"

void statsprof__duty_init(statsprof__duty *d, int64_t window_ns, int64_t every_ns, double max_overhead) {
  memset(d, 0, sizeof *d);
  d->window_ns = window_ns;
  d->every_ns = every_ns;
  d->max_overhead = max_overhead;
}

int statsprof__duty_enabled(const statsprof__duty *d) { return d->window_ns > 0; }

int statsprof__duty_due(const statsprof__duty *d, uint64_t now) {
  if (!statsprof__duty_enabled(d) || now < d->boundary) return STATSPROF__DUTY_NONE;
  return d->in_window ? STATSPROF__DUTY_CLOSE : STATSPROF__DUTY_OPEN;
}

void statsprof__duty_open(statsprof__duty *d, uint64_t now, uint64_t cost) {
  d->in_window = 1;
  d->window_start = now;
  d->taken_at = now;
  d->cost_at_open = d->cost_taken = cost;
  d->boundary = now + statsprof__ns_to_ticks(d->window_ns);
}

void statsprof__duty_close(statsprof__duty *d, uint64_t now, uint64_t cost) {
  uint64_t spent = cost - d->cost_at_open;
  d->in_window = 0;
  double spt = statsprof__clock_sec_per_tick;
  double observed = (double)(now - d->window_start) * spt;
  double window_cost = (double)spent * spt;
  /* A record taken during the window already has part of it. */
  d->observed_s += (double)(now - d->taken_at) * spt;
  d->overhead_s += (double)(cost - d->cost_taken) * spt;
  int64_t gap_ns = d->every_ns - d->window_ns;
  if (d->max_overhead > 0 && observed > 0) {
    /* cost over (observed + gap) must stay under the budget. The budget
     * only lengthens gaps, up to a minute (a profile that goes quiet for
     * longer says nothing about the load that followed a costly window),
     * never below the configured one: every=2m keeps its 2 minutes. */
    int64_t cap_ns = 60 * (int64_t)1000000000;
    if (cap_ns < gap_ns) cap_ns = gap_ns;
    double need = window_cost / d->max_overhead - observed;
    if (need * 1e9 > (double)gap_ns) gap_ns = need * 1e9 < (double)cap_ns ? (int64_t)(need * 1e9) : cap_ns;
  }
  d->boundary = now + statsprof__ns_to_ticks(gap_ns > 0 ? gap_ns : 0);
}

void statsprof__duty_start(statsprof__duty *d, uint64_t now, uint64_t cost) {
  d->in_window = 0;
  statsprof__duty_forget(d);
  statsprof__duty_open(d, now, cost);
}

void statsprof__duty_forget(statsprof__duty *d) { d->observed_s = d->overhead_s = d->unobserved_s = 0; }

void statsprof__duty_reset(statsprof__duty *d, uint64_t now, uint64_t cost) {
  statsprof__duty_forget(d);
  /* The open window's part so far went with the counts. */
  if (d->in_window) d->taken_at = now, d->cost_taken = cost;
}

void statsprof__duty_take(statsprof__duty *d, statsprof_stats_profile *rec, uint64_t now, uint64_t cost) {
  double spt = statsprof__clock_sec_per_tick;
  double observed = d->observed_s;
  if (d->in_window) {
    /* The open window's part so far: its time, and its cost (the record
     * that ends it takes only the rest). */
    observed += (double)(now - d->taken_at) * spt;
    d->taken_at = now;
    d->overhead_s += (double)(cost - d->cost_taken) * spt;
    d->cost_taken = cost;
  }
  double interval = (double)(rec->end_ns - rec->start_ns) * 1e-9;
  if (observed <= 0) {
    /* No window in this interval: its work is left for the next record
     * that observes one to stand for. */
    d->unobserved_s += interval;
    d->overhead_s = 0;
    return;
  }
  /* Windows are often further apart than the interval. The record that
   * observed one stands for the intervals with none before it as well
   * (span_s), so that dividing every record by its duty estimates all the
   * work, in the tools and in a database's plain sum alike. duty is the
   * share of that work observed: code in a window runs slower (the
   * profiler's cost), so wall time would overstate it. Both sides exclude
   * that estimated cost, unless the estimate reaches the observed time
   * itself: the calibrated cost per event was then too high for this
   * stretch (calibrated while the machine was slower, seen under load),
   * and the plain share of wall time is the better figure: duty 0 would
   * say nothing was observed, and readers that scale by 1/duty would leave
   * the counts unscaled. */
  double span = interval + d->unobserved_s;
  double overhead = d->overhead_s < observed ? d->overhead_s : 0;
  rec->observed_s = observed;
  rec->span_s = span;
  rec->duty = span > overhead ? (observed - overhead) / (span - overhead) : 0;
  if (rec->duty > 1) rec->duty = 1;
  if (rec->duty < 0) rec->duty = 0;
  rec->overhead_est = interval > 0 ? d->overhead_s / interval : 0;
  statsprof__duty_forget(d); /* this record now stands for all of it */
}
