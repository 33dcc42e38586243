"""Production mode's empty intervals: with_effective_duty (statsprof_records)
and the three tools that use it (timeslices.py, report.py, convert.py).

The records are made here: a "true" workload (each function's tottime,
cumtime and calls per second of interval), profiled either in full (every
record holds all of it, no duty fields) or in windows that sample a share
``duty`` of an interval's work in some intervals only (the others are
empty: no functions, no duty fields, as the C library writes them).  Summed
over the run with the tools' duty scaling, a windowed run must give the
true totals whenever its last record holds a window.
"""

import json
import os
import pstats
import re
import shutil
import tempfile
import unittest

import toolstest
from toolstest import B, S

import statsprof_records as sr

F = "/g/game.py:10(update)"
G = "/g/game.py:20(draw)"
#: Per second of interval: (ncalls, tottime, cumtime).
RATES = {F: (400, 0.2, 0.3), G: (200, 0.1, 0.1)}
#: Interval lengths (ns), not all equal so that the weighting matters.
LENGTHS = [S, S // 2, S, 2 * S, S, S // 2, S, S, 3 * S // 2, S, S, S // 2]


def fp(key, nc, tt, ct):
    file_name, line, name = sr.split_func_key(key)
    return {"ncalls": str(nc), "tottime": tt, "cumtime": ct,
            "file_name": file_name, "line_number": line,
            "function_name": name}


def make_run(pid=100, windows=None, duties=None, lengths=LENGTHS, t0=B,
             kind="delta", host="h", extra=None):
    """The records of one run.  ``windows`` None: full profiling.  Else the
    indexes of the intervals that held a window, ``duties`` (one per
    interval, default 0.05) the share observed there.  Returns (records,
    true totals {key: (ncalls, tottime, cumtime)})."""
    recs, true = [], {k: [0, 0.0, 0.0] for k in RATES}
    start = t0
    for i, length in enumerate(lengths):
        secs = length / S
        rec = {"ts_ns": start + length, "start_ns": start,
               "interval_s": secs, "seq": i + 1, "pid": pid, "host": host,
               "kind": kind, "dropped": 0, "func_profiles": {}}
        for k, (nc, tt, ct) in RATES.items():
            t = true[k]
            t[0] += nc * secs
            t[1] += tt * secs
            t[2] += ct * secs
        if windows is None:
            share = 1.0
        elif i in windows:
            share = duties[i] if duties else 0.05
            rec["observed_s"] = share * secs
            rec["duty"] = share
            rec["overhead_est"] = 0.001
        else:
            share = 0.0
        if share:
            for k, (nc, tt, ct) in RATES.items():
                rec["func_profiles"][k] = fp(k, round(nc * secs * share),
                                             tt * secs * share,
                                             ct * secs * share)
        rec["total_tt"] = sum(f["tottime"]
                              for f in rec["func_profiles"].values())
        if extra:
            rec.update(extra)
        recs.append(rec)
        start += length
    return recs, {k: tuple(v) for k, v in true.items()}


def raw_totals(recs):
    """{key: [ncalls, tottime, cumtime]} summed without any scaling."""
    out = {}
    for rec in recs:
        for k, f in rec["func_profiles"].items():
            t = out.setdefault(k, [0, 0.0, 0.0])
            t[0] += int(f["ncalls"])
            t[1] += f["tottime"]
            t[2] += f["cumtime"]
    return out


def per_record_totals(recs):
    """Today's scaling: each record divided by its own duty."""
    out = {}
    for rec in recs:
        d = rec.get("duty", 1.0)
        for k, f in rec["func_profiles"].items():
            t = out.setdefault(k, [0.0, 0.0, 0.0])
            t[0] += int(f["ncalls"]) / d
            t[1] += f["tottime"] / d
            t[2] += f["cumtime"] / d
    return out


def library_totals(recs, scale_duty=True):
    """Totals through with_effective_duty and merge_records."""
    merged = sr.merge_records(sr.with_effective_duty(
        json.loads(json.dumps(r)) for r in recs), scale_duty)
    return {k: [v[0], v[2], v[3]] for k, v in merged.funcs.items()}


def spanned(recs):
    """``recs`` as statsprof now writes them: a record that held a window
    carries "span_s", its interval and the empty ones just before it, and
    its "duty" is over that span already (thread records copy their
    delta's)."""
    out, pending = [], 0
    for rec in recs:
        rec = json.loads(json.dumps(rec))
        length = rec["ts_ns"] - rec["start_ns"]
        if "duty" not in rec:
            pending += length
        else:
            rec["duty"] = rec["duty"] * length / (length + pending)
            rec["span_s"] = (length + pending) / S
            pending = 0
        out.append(rec)
    return out


#: Windows 3 intervals apart, the last interval holding one.
EVERY3 = (2, 5, 8, 11)


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="duty_span_test.")
        self.addCleanup(shutil.rmtree, self.tmp)

    def write(self, name, *runs):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            for rec in sorted((r for run in runs for r in run),
                              key=lambda r: r["ts_ns"]):
                f.write(json.dumps(rec) + "\n")
        return path

    def assertTotals(self, got, want, places=9):
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            for g, w in zip(got[k], want[k]):
                self.assertAlmostEqual(g, w, places=places, msg=k)


class LibraryTests(Tmp):
    def test_windows_three_intervals_apart_give_true_totals(self):
        recs, true = make_run(windows=EVERY3)
        self.assertTotals(library_totals(recs), true)
        # per-record scaling (the old way) counts only 4 of 12 intervals
        old = per_record_totals(recs)
        self.assertLess(old[F][1], true[F][1] / 2)

    def test_effective_duty_values(self):
        recs, _ = make_run(windows=EVERY3)
        out = list(sr.with_effective_duty(recs))
        duties = [sr.record_duty(r) for r in out if "duty" in r]
        # window i covers intervals i-2..i
        want = [0.05 * LENGTHS[i] / sum(LENGTHS[i - 2:i + 1]) for i in EVERY3]
        for d, w in zip(duties, want):
            self.assertAlmostEqual(d, w, places=12)
        # empty records are left alone (nothing to scale)
        self.assertTrue(all(sr.EFFECTIVE_DUTY not in r
                            for r in out if "duty" not in r))

    def test_continuous_run_unchanged(self):
        recs, true = make_run()
        self.assertTotals(library_totals(recs), raw_totals(recs))
        self.assertTotals(library_totals(recs), true, places=6)
        self.assertTrue(all(sr.EFFECTIVE_DUTY not in r
                            for r in sr.with_effective_duty(recs)))

    def test_no_scale_duty_is_raw(self):
        recs, _ = make_run(windows=EVERY3)
        self.assertTotals(library_totals(recs, scale_duty=False),
                          raw_totals(recs))

    def test_every_interval_with_a_window_unchanged(self):
        duties = [0.02 + 0.01 * i for i in range(len(LENGTHS))]
        recs, true = make_run(windows=range(len(LENGTHS)), duties=duties)
        self.assertTotals(library_totals(recs), per_record_totals(recs))
        self.assertTrue(all(sr.EFFECTIVE_DUTY not in r
                            for r in sr.with_effective_duty(recs)))

    def test_pids_do_not_mix(self):
        a, true_a = make_run(pid=1, windows=EVERY3)
        b, true_b = make_run(pid=2, windows=range(len(LENGTHS)))
        c, true_c = make_run(pid=3, windows=(0, 4, 5, 11))
        both = sorted(a + b + c, key=lambda r: r["ts_ns"])
        want = {k: [x + y + z for x, y, z in zip(true_a[k], true_b[k],
                                                 true_c[k])]
                for k in RATES}
        self.assertTotals(library_totals(both), want)
        for pid, true in ((1, true_a), (2, true_b), (3, true_c)):
            self.assertTotals(library_totals(
                [r for r in both if r["pid"] == pid]), true)

    def test_hosts_do_not_mix(self):
        a, true_a = make_run(pid=1, windows=EVERY3, host="a")
        b, true_b = make_run(pid=1, windows=(1, 4, 7, 10, 11), host="b")
        both = sorted(a + b, key=lambda r: r["ts_ns"])
        want = {k: [x + y for x, y in zip(true_a[k], true_b[k])]
                for k in RATES}
        self.assertTotals(library_totals(both), want)

    def test_records_that_carry_span_s_are_left_as_written(self):
        # statsprof spans them itself: the tools must not span them again,
        # and a plain per-record 1/duty (a database's sum) gives the truth.
        for windows in (EVERY3, (0, 4, 5, 11), range(len(LENGTHS))):
            with self.subTest(windows=windows):
                recs, true = make_run(windows=windows)
                new = spanned(recs)
                out = list(sr.with_effective_duty(json.loads(json.dumps(r))
                                                  for r in new))
                self.assertTrue(all(sr.EFFECTIVE_DUTY not in r for r in out))
                self.assertTotals(library_totals(new), true)
                self.assertTotals(per_record_totals(new), true)
                threads = [dict(r, kind="thread", thread_id=1)
                           for r in new if "duty" in r]
                self.assertTotals(library_totals(threads), true)
                self.assertTotals(per_record_totals(threads), true)

    def test_trailing_empty_records_are_not_covered(self):
        recs, _ = make_run(windows=(2, 5, 8))  # 9..11 after the last window
        covered, _ = make_run(windows=(2, 5, 8), lengths=LENGTHS[:9])
        self.assertTotals(library_totals(recs), library_totals(covered))
        _, true9 = make_run(lengths=LENGTHS[:9])
        self.assertTotals(library_totals(recs), true9)

    def test_window_record_of_an_empty_interval(self):
        # start_ns == ts_ns: nothing to spread its duty over, so it keeps
        # its own (the effective duty was 0, a division by zero)
        recs, _ = make_run(windows=(1,), duties=[0.5] * 2, lengths=[S, S])
        recs[1]["start_ns"] = recs[1]["ts_ns"]
        got = library_totals(recs)
        self.assertTotals(got, {k: [v / 0.5 for v in t]
                                for k, t in raw_totals(recs).items()})

    def test_restart_in_the_same_process(self):
        # seq starts again at 1: the second run's first window covers only
        # its own empty intervals, not the first run's trailing ones.
        a, _ = make_run(windows=(2, 5, 8), lengths=LENGTHS[:10])
        b, true_b = make_run(windows=EVERY3, t0=a[-1]["ts_ns"] + 60 * S)
        _, true_a9 = make_run(lengths=LENGTHS[:9])
        want = {k: [x + y for x, y in zip(true_a9[k], true_b[k])]
                for k in RATES}
        self.assertTotals(library_totals(a + b), want)

    def test_thread_records_add_up_to_the_deltas(self):
        # Two threads; "worker" ran in every other window only.  The
        # thread records of an interval share the delta's duty and seq.
        for windows, lengths in (((0, 3, 6, 9, 11), LENGTHS),
                                 (EVERY3, [S] * 12)):
            with self.subTest(windows=windows):
                self.check_threads(windows, lengths)

    def check_threads(self, windows, lengths):
        deltas, true = make_run(windows=windows, lengths=lengths)
        threads = []
        for rec in deltas:
            if "duty" not in rec:
                continue
            busy = [("main", 1, 0.75)]
            if rec["seq"] % 2 == 0:
                busy.append(("worker", 2, 0.25))
            else:
                busy[0] = ("main", 1, 1.0)
            for name, tid, part in busy:
                t = dict(rec, kind="thread", thread_id=tid, thread_name=name)
                t["func_profiles"] = {
                    k: dict(f, tottime=f["tottime"] * part,
                            cumtime=f["cumtime"] * part,
                            ncalls=str(int(int(f["ncalls"]) * part)))
                    for k, f in rec["func_profiles"].items()}
                threads.append(t)
        got_t = library_totals(threads)
        got_d = library_totals(deltas)
        self.assertTotals(got_d, true)
        for k in RATES:  # times add up exactly; counts were truncated
            self.assertAlmostEqual(got_t[k][1], got_d[k][1], places=9)
            self.assertAlmostEqual(got_t[k][2], got_d[k][2], places=9)
        # spanning each thread on its own would not: the worker's windows
        # are 6 intervals apart, its idle windows between them
        per_thread = []
        for t in threads:
            per_thread.append(dict(t, pid="%s.%s" % (t["pid"], t["thread_id"])))
        alone = library_totals(per_thread)
        self.assertGreater(alone[F][1], got_t[F][1] + 1e-6)


class ToolTests(Tmp):
    """The same through the three tools' command lines."""

    def setUp(self):
        super().setUp()
        self.recs, self.true = make_run(windows=EVERY3)
        self.other, self.true_other = make_run(pid=7, windows=(0, 6, 7, 11))
        self.path = self.write("pm.jsonl", self.recs, self.other)
        self.want = {k: [x + y for x, y in zip(self.true[k],
                                               self.true_other[k])]
                     for k in RATES}

    def tool(self, name, *args):
        r = toolstest.run_tool(os.path.join(toolstest.TOOLS, name), args,
                               text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def timeslices(self, *args):
        out = os.path.join(self.tmp, "t.csv")
        r = self.tool("timeslices.py", self.path, "--slice", "4s",
                      "--top", "10", "--csv", out, *args)
        with open(out) as f:
            lines = [line.rstrip("\n").split(",") for line in f]
        cols = {name: sum(float(row[i]) for row in lines[1:])
                for i, name in enumerate(lines[0]) if i >= 2}
        return cols, r

    def test_timeslices(self):
        for field, i in (("ncalls", 0), ("tottime", 1), ("cumtime", 2)):
            cols, r = self.timeslices("--field", field)
            for k in RATES:
                self.assertAlmostEqual(cols[k], self.want[k][i], places=6)
        cols, r = self.timeslices("--field", "tottime", "--no-scale-duty")
        raw = raw_totals(self.recs + self.other)
        for k in RATES:
            self.assertAlmostEqual(cols[k], raw[k][1], places=6)

    def test_timeslices_one_pid(self):
        cols, _ = self.timeslices("--field", "tottime", "--pid", "100")
        for k in RATES:
            self.assertAlmostEqual(cols[k], self.true[k][1], places=6)

    def test_convert_pstats(self):
        out = os.path.join(self.tmp, "o.prof")
        r = self.tool("convert.py", self.path, "--to", "pstats", "-o", out)
        # the 4 + 4 window-bearing records (empty ones are not counted)
        self.assertIn("8 duty-cycled records scaled by 1/duty", r.stderr)
        st = pstats.Stats(out).stats
        got = {"%s:%d(%s)" % k: v for k, v in st.items()}
        for k in RATES:
            self.assertEqual(got[k][1], round(self.want[k][0]))
            self.assertAlmostEqual(got[k][2], self.want[k][1], places=6)
            self.assertAlmostEqual(got[k][3], self.want[k][2], places=6)

    def test_report(self):
        out = os.path.join(self.tmp, "r.html")
        self.tool("report.py", self.path, "-o", out)
        with open(out, encoding="utf-8") as f:
            html = f.read()
        data = json.loads(re.search(
            r'<script type="application/json" id="data">(.*?)</script>',
            html, re.S).group(1))
        self.assertEqual(data["duty"], 8)
        keys = [f[4] for f in data["funcs"]]
        r = data["all"]["r"]
        rows = {keys[r[i]]: r[i + 1:i + 5] for i in range(0, len(r), 5)}
        self.assertEqual(sorted(rows), sorted(RATES))
        for k in RATES:  # the page rounds to 6 significant digits
            nc, _, tt, ct = rows[k]
            self.assertAlmostEqual(nc / self.want[k][0], 1, places=5)
            self.assertAlmostEqual(tt / self.want[k][1], 1, places=5)
            self.assertAlmostEqual(ct / self.want[k][2], 1, places=5)


if __name__ == "__main__":
    unittest.main()
