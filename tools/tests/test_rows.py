#!/usr/bin/python3
"""The rows layout (sink=jsonl:PATH,layout=rows) in the tools.

The game host (//host_examples:game_host) runs twice, each time writing the
same records in both layouts (two jsonl sinks of one profiler):

- "full": per-thread records (--workers 1, per_thread=on) and spike records
  (budget=, with --hitch frames);
- "duty": production mode (duty=50%), records with observed_s/duty.

Then statsprof_records must read both files into the same records, and every
tool (timeslices, report, convert) must give the same output for both.  The
reader's handling of damaged rows files (a line missing, cut, malformed, or
without its record line) is checked on the real output.

Run:  /usr/bin/python3 tools/tests/test_rows.py  (after bazel build
//host_examples:game_host), or bazel test //tools:rows_test.
"""

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolstest  # noqa: E402
from toolstest import TOOLS  # noqa: E402
import statsprof_records as sr  # noqa: E402

RUNS = {
    "full": ("interval=100ms;per_thread=on;budget=8ms",
             ["--frames", "150", "--no-sleep", "--workers", "1",
              "--hitch", "40,100"]),
    # Paced at 60 fps, not --no-sleep: 150 frames take 2.5 s, so at least
    # 12 records however fast the machine runs the game.
    "duty": ("interval=200ms;duty=50%;window=20ms",
             ["--frames", "150"]),
}
_runs = {}
_tmp = None


def setUpModule():
    global _tmp
    _tmp = tempfile.mkdtemp(prefix="statsprof-rows-test-")
    for name, (config, args) in RUNS.items():
        _runs[name] = toolstest.run_game_both_layouts(
            os.path.join(_tmp, name), config, args)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


class Warnings(list):
    def __call__(self, msg):
        self.append(msg)


def read(path, **kw):
    w = Warnings()
    recs = list(sr.iter_records(path, kinds=None, warn=w, **kw))
    return recs, w


def without_percall(rec):
    """The record without percall_* (the rows layout does not carry them:
    the reader divides the printed times, so they are close, not equal)."""
    rec = dict(rec)
    rec["func_profiles"] = {
        k: {f: v for f, v in fp.items() if not f.startswith("percall_")}
        for k, fp in rec["func_profiles"].items()}
    return rec


class SameRecords(unittest.TestCase):
    def check(self, name, kinds):
        record, rows = _runs[name]
        a, wa = read(record)
        b, wb = read(rows)
        self.assertEqual((wa, wb), ([], []))
        self.assertEqual({r["kind"] for r in a}, kinds)
        self.assertGreater(len(a), 5)
        self.assertEqual(len(a), len(b))
        for x, y in zip(a, b):
            self.assertEqual(without_percall(x), without_percall(y))
            for key, fp in x["func_profiles"].items():
                for f in ("percall_tottime", "percall_cumtime"):
                    self.assertTrue(math.isclose(
                        fp[f], y["func_profiles"][key][f], rel_tol=1e-7),
                        (key, f, fp[f], y["func_profiles"][key][f]))
        return a

    def test_full_run_with_threads_and_spikes(self):
        recs = self.check("full", {"delta", "thread", "spike"})
        self.assertTrue(any("frame_stats" in r for r in recs))
        self.assertTrue(any(r.get("thread_name") == "worker-1" for r in recs))
        self.assertTrue(any(r["func_profiles"] and any(
            fp["callers"] for fp in r["func_profiles"].values())
            for r in recs))

    def test_production_mode_run(self):
        recs = self.check("duty", {"delta"})
        # A record whose interval held no window (e.g. the last one, cut by
        # stop in a gap) observed nothing: no duty fields, and no functions.
        for r in recs:
            self.assertTrue(("duty" in r and "observed_s" in r)
                            or not r["func_profiles"], r)
        self.assertTrue(any(0 < r["duty"] < 1 for r in recs))

    def test_every_rows_line_is_small(self):
        """The point of the layout: no line near a shipper's limit."""
        for name in RUNS:
            with open(_runs[name][1], "rb") as f:
                longest = max(len(line) for line in f)
            self.assertLess(longest, 2048, name)


class SameToolOutput(unittest.TestCase):
    """Each tool, run on the record-layout file and on the rows-layout file
    of one run, writes the same output (the report also names its input
    file and the time it was made: those are put aside)."""

    def run_both(self, name, script, args, outputs=()):
        results = []
        for path in _runs[name]:
            work = os.path.dirname(path)
            r = subprocess.run(
                [toolstest.PYTHON, os.path.join(TOOLS, script),
                 os.path.basename(path)] + list(args),
                cwd=work, capture_output=True, text=True, timeout=300,
                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
            self.assertEqual(r.returncode, 0, r.stderr)
            files = {}
            for out in outputs:
                with open(os.path.join(work, out), "rb") as f:
                    files[out] = f.read()
            results.append((r.stdout, r.stderr, files))
        self.assertEqual(results[0], results[1], (script, args))
        return results[0]

    def test_timeslices(self):
        for name, field, align in (("full", "cumtime", "first"),
                                   ("full", "tottime", "epoch"),
                                   ("full", "ncalls", "epoch"),
                                   ("duty", "cumtime", "epoch"),
                                   ("duty", "ncalls", "first")):
            out, _, files = self.run_both(
                name, "timeslices.py",
                ["--slice", "500ms", "--field", field, "--align", align,
                 "--top", "6", "--csv", "slices.csv", "--kind", "all"],
                ["slices.csv"])
            self.assertIn("top 6 shown", out)
            self.assertGreater(files["slices.csv"].count(b"\n"), 2)
        self.run_both("full", "timeslices.py", ["--kind", "thread"])
        self.run_both("full", "timeslices.py", ["--kind", "spike",
                                                 "--field", "tottime"])
        self.run_both("duty", "timeslices.py", ["--no-scale-duty"])

    def test_convert(self):
        for name in RUNS:
            for fmt in ("pstats", "callgrind", "speedscope", "pprof"):
                self.run_both(name, "convert.py", ["--to", fmt, "-o", "out"],
                              ["out"])
            self.run_both(name, "convert.py",
                          ["--to", "pstats", "--seq", "2", "-o", "out"],
                          ["out"])

    def test_report(self):
        generated = re.compile(rb'"generated":"[^"]*"')
        for name in RUNS:
            outs = []
            for path in _runs[name]:
                work = os.path.dirname(path)
                r = toolstest.run_tool(os.path.join(TOOLS, "report.py"),
                                       [path, "-o", os.path.join(work, "r.html")])
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(work, "r.html"), "rb") as f:
                    html = f.read()
                self.assertEqual(len(generated.findall(html)), 1)
                html = generated.sub(b'"generated":""', html)
                outs.append(html.replace(work.encode(), b"DIR"))
            self.assertEqual(outs[0], outs[1], name)


class DamagedRowsFiles(toolstest.ToolTest):
    """The reader on rows files that lost or mangled lines: the records
    that are whole come out, each damaged one is skipped with a warning
    naming it, and nothing raises."""

    tmp_prefix = "statsprof-rows-damage-"

    def setUp(self):
        super().setUp()
        with open(_runs["full"][1], "rb") as f:
            self.lines = f.read().split(b"\n")[:-1]
        # the lines of three small records (of any kind), in file order
        groups = []
        i = 0
        while i < len(self.lines):
            n = json.loads(self.lines[i])["rows"]
            groups.append(self.lines[i:i + n])
            i += n
        small = sorted((g for g in groups if len(g) >= 4),
                       key=lambda g: (len(g), groups.index(g)))[:3]
        self.groups = sorted(small, key=groups.index)
        self.assertEqual(len(self.groups), 3)
        self.whole, _ = read(self.write(b"".join(
            line + b"\n" for g in self.groups for line in g)))
        self.assertEqual(len(self.whole), 3)

    def write(self, data, name="d.jsonl"):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def join(self, groups):
        return b"".join(line + b"\n" for g in groups for line in g)

    def seq_of(self, k):
        return self.whole[k]["seq"]

    def test_cut_at_every_line_and_inside_lines(self):
        data = self.join(self.groups)
        ends = [len(self.join(self.groups[:k + 1])) for k in range(3)]
        for cut in range(1, len(data)):
            if cut % 97 and data[cut - 1:cut] != b"\n" and cut + 1 not in ends:
                # every line end, just before each record's last newline,
                # and some cuts inside lines
                continue
            recs, w = read(self.write(data[:cut]))
            # A cut just before a record's last newline leaves it whole.
            whole = sum(1 for e in ends if e - 1 <= cut)
            self.assertEqual(recs, self.whole[:whole], cut)
            if cut in ends or cut + 1 in ends:
                self.assertEqual(w, [], cut)
            else:
                self.assertTrue(w, cut)
                self.assertTrue(any("skipping incomplete" in m for m in w), w)

    def test_a_missing_line_costs_only_its_record(self):
        g = [list(x) for x in self.groups]
        del g[1][-1]
        path = self.write(self.join(g))
        recs, w = read(path)
        self.assertEqual(recs, [self.whole[0], self.whole[2]])
        self.assertEqual(len(w), 1, w)
        self.assertRegex(w[0], r"^%s:%d: skipping incomplete \w+ record seq %d "
                         r"\(pid \d+\) of line %d: only %d of its %d lines "
                         r"follow$" % (re.escape(path), len(g[0]) + len(g[1]) + 1,
                                       self.seq_of(1), len(g[0]) + 1,
                                       len(g[1]), len(g[1]) + 1))

    def test_a_malformed_line_costs_only_its_record(self):
        g = [list(x) for x in self.groups]
        g[1][1] = g[1][1][:40] + b"#" + g[1][1][41:]
        recs, w = read(self.write(self.join(g)))
        self.assertEqual(recs, [self.whole[0], self.whole[2]])
        self.assertEqual(len(w), 2, w)
        self.assertIn("skipping malformed line: invalid JSON", w[0])
        self.assertIn("skipping incomplete", w[1])
        self.assertIn("one of its lines is malformed", w[1])

    def test_a_bad_field_costs_only_its_record(self):
        g = [list(x) for x in self.groups]
        row = json.loads(g[1][1])
        row["ncalls"] = -3
        g[1][1] = json.dumps(row).encode()
        recs, w = read(self.write(self.join(g)))
        self.assertEqual(recs, [self.whole[0], self.whole[2]])
        self.assertEqual(len(w), 1, w)
        self.assertIn("invalid 'ncalls': -3", w[0])

    def test_lines_without_their_record_line(self):
        g = [list(x) for x in self.groups]
        del g[1][0]
        recs, w = read(self.write(self.join(g)))
        self.assertEqual(recs, [self.whole[0], self.whole[2]])
        self.assertEqual(len(w), 1, w)   # once for the record's lines
        self.assertIn("skipping function line: no record line before it", w[0])

    def test_a_bad_record_line(self):
        g = [list(x) for x in self.groups]
        row = json.loads(g[0][0])
        del row["rows"]
        g[0][0] = json.dumps(row).encode()
        recs, w = read(self.write(self.join(g)))
        self.assertEqual(recs, self.whole[1:])
        self.assertIn("skipping record line: missing 'rows'", w[0])

    def test_unknown_row(self):
        g = [list(x) for x in self.groups]
        g[2].insert(0, b'{"row": "summary", "ts_ns": 1, "kind": "delta"}')
        recs, w = read(self.write(self.join(g)))
        self.assertEqual(recs, self.whole)
        self.assertEqual(len(w), 1, w)
        self.assertIn("unknown row 'summary'", w[0])

    def test_both_layouts_in_one_file_and_gzip(self):
        with open(_runs["full"][0], "rb") as f:
            record_lines = f.read().split(b"\n")[:3]
        data = (record_lines[0] + b"\n" + self.join(self.groups[:2])
                + record_lines[1] + b"\n" + self.join(self.groups[2:])
                + record_lines[2] + b"\n")
        recs, w = read(self.write(data))
        # Six records picked out of a run: where the picked rows records are
        # deltas, their seqs skip the ones left out, which the reader rightly
        # reports as records lost (which of them are the smallest depends on
        # the game run's timing). Nothing else may be warned.
        self.assertEqual([x for x in w if not x.startswith("records lost")], [])
        self.assertEqual(len(recs), 6)
        self.assertEqual(recs[1:3], self.whole[:2])
        import gzip
        recs2, w2 = read(self.write(gzip.compress(data), "d.jsonl.gz"))
        self.assertEqual((recs2, w2), (recs, w))


if __name__ == "__main__":
    unittest.main()
