#!/usr/bin/python3
"""dev/duty_bias.py — how far production mode's totals are from the truth
when the work comes in phases, by simulation (no profiler runs).

    dev/duty_bias.py                 the table README's *Production mode* quotes
    dev/duty_bias.py --runs 5        fewer runs per cell (faster, noisier)

The workload is Python busy for a share of wall time that alternates between
LOW and HIGH, each phase lasting an exponentially distributed time (mean:
the row's phase length). Windows of 100 ms are placed as lib/duty.c places
them: after each window the next gap is at least every - window (0.9 s) and,
with max_overhead, long enough that the window's cost (a share of its busy
time: COST_PER_BUSY) stays under the budget; every window's record stands
for the gap before it (span_s) and is divided by its duty, as the tools and
a database's sum(value / duty) do. Each cell is the estimated total busy
time over the true one, the mean over RUNS one-hour runs (and their minimum
and maximum), for fixed gaps (duty=) and for gaps sized by max_overhead=1%.

Fixed gaps do not depend on the work, so the estimate is unbiased. Gaps
sized from a window's cost are longer after busy windows, and the window
that stands for such a gap comes later, when a phase may have ended: the
busier time before it is estimated from a quieter window more often than
the other way round, so totals come out a little low.
"""

import argparse
import bisect
import random

WINDOW, EVERY, MAX_OVERHEAD, MAX_GAP = 0.1, 1.0, 0.01, 60.0
LOW, HIGH = 0.3, 0.9  # Python-busy share of wall time in the two phases
COST_PER_BUSY = 0.3   # the profiler's cost in a window, per second of busy time
HOUR = 3600.0


def phases(rnd, mean_s):
    """Start times and busy shares of alternating phases over one hour."""
    starts, shares, t, high = [], [], 0.0, rnd.random() < 0.5
    while t < HOUR:
        starts.append(t)
        shares.append(HIGH if high else LOW)
        t += rnd.expovariate(1 / mean_s)
        high = not high
    starts.append(HOUR)
    return starts, shares


def busy(starts, shares, a, b):
    """Busy seconds in [a, b)."""
    i, total = bisect.bisect_right(starts, a) - 1, 0.0
    while i < len(shares) and starts[i] < b:
        total += max(0.0, min(b, starts[i + 1]) - max(a, starts[i])) * shares[i]
        i += 1
    return total


def estimate(seed, mean_s, budget):
    """Estimated over true busy time for one run; budget 0 is fixed gaps."""
    starts, shares = phases(random.Random(seed), mean_s)
    t = est = before = 0.0
    while t + WINDOW <= HOUR:
        seen = busy(starts, shares, t, t + WINDOW)
        est += seen / WINDOW * (before + WINDOW)  # divided by duty = window / span
        gap = EVERY - WINDOW
        if budget:
            gap = min(max(gap, COST_PER_BUSY * seen / budget - WINDOW), MAX_GAP)
        t += WINDOW
        before = min(gap, HOUR - t)
        t += gap
    return est / busy(starts, shares, 0.0, HOUR)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="one-hour runs per cell (default 20)")
    args = ap.parse_args()
    print("| phase length (mean) | fixed gaps (duty=) | max_overhead=1% |")
    print("|---:|---:|---:|")
    for mean_s in (0.5, 2.0, 5.0, 20.0, 100.0):
        cells = []
        for budget in (0.0, MAX_OVERHEAD):
            r = [estimate(seed, mean_s, budget) for seed in range(args.runs)]
            cells.append(f"{sum(r) / len(r):.3f} ({min(r):.3f}–{max(r):.3f})")
        print(f"| {mean_s:g} s | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
