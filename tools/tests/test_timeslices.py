#!/usr/bin/python3
"""Tests for tools/statsprof_records.py and tools/timeslices.py.

Run:  /usr/bin/python3 tools/tests/test_timeslices.py   (exit status != 0 on
failure).  Needs python3-matplotlib for the PNG tests.

Test data (tools/tests/data/, written once, checked in):

sample.jsonl: pid 1234, host "myhost"; 12 "delta" records, record i covers
[B+i s, B+(i+1) s] with B = 1795617000 s (2026-11-25T14:30:00Z); a
"cumulative" record with huge numbers after record 5 (line 7, must be
skipped); and a half-written last line (line 14, no newline).  With
--slice 5s the records fall into slices by their end time ts_ns:
slice 0 = records 0-3 (4 records), slice 1 = records 4-8 (5), slice 2 =
records 9-11 (3).  Per record:

  function                         in records  ncalls   tottime   cumtime
  /srv/game/game.py:10(frame)      all         "1"      0.0625    0.5
  /srv/game/render.py:7(draw)      all         "2"      0.25      0.375
  ~:0(<built-in method builtins.len>) all      "500"    0.03125   0.03125
  /srv/game/ai.py:42(find_path)    4..11       "12/3"   0.125     0.25
  /srv/game/util.py:3(helper)      0..2        "40"     0.015625  0.015625

(all values are exact binary fractions so sums can be compared exactly).

other_pid.jsonl: pid 5678, host "otherhost"; 3 records ending at B+2s, B+6s,
B+11s, each: frame ncalls "3" tottime 0.5 cumtime 1.0, and
/srv/worker.py:5(work) ncalls "7" tottime 4.0 cumtime 4.0.

duty.jsonl: 4 records (B..B+4s), only "frame":
  rec 0: duty 0.5 (observed_s 0.5)    ncalls "3/1" tottime 0.125  cumtime 0.25
  rec 1: observed_s 0.25 (no duty)    ncalls "2"   tottime 0.0625 cumtime 0.125
  rec 2: no duty fields               ncalls "2"   tottime 0.25   cumtime 0.5
  rec 3: duty 1.0                     ncalls "2"   tottime 0.25   cumtime 0.5
"""

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolstest  # noqa: E402
from toolstest import B, DATA, DUTY, OTHER, S, SAMPLE, TOOLS  # noqa: E402
import statsprof_records as sr  # noqa: E402
import timeslices  # noqa: E402

SCRIPT = os.path.join(TOOLS, "timeslices.py")

FRAME = "/srv/game/game.py:10(frame)"
DRAW = "/srv/game/render.py:7(draw)"
LEN = "~:0(<built-in method builtins.len>)"
FIND = "/srv/game/ai.py:42(find_path)"
HELPER = "/srv/game/util.py:3(helper)"
WORK = "/srv/worker.py:5(work)"

# Expected sums for sample.jsonl with 5 s slices.
EXPECTED = {
    "cumtime": {
        FRAME: [2.0, 2.5, 1.5],
        DRAW: [1.5, 1.875, 1.125],
        FIND: [0.0, 1.25, 0.75],
        LEN: [0.125, 0.15625, 0.09375],
        HELPER: [0.046875, 0.0, 0.0],
    },
    "tottime": {
        FRAME: [0.25, 0.3125, 0.1875],
        DRAW: [1.0, 1.25, 0.75],
        FIND: [0.0, 0.625, 0.375],
        LEN: [0.125, 0.15625, 0.09375],
        HELPER: [0.046875, 0.0, 0.0],
    },
    "ncalls": {
        FRAME: [4, 5, 3],
        DRAW: [8, 10, 6],
        FIND: [0, 60, 36],
        LEN: [2000, 2500, 1500],
        HELPER: [120, 0, 0],
    },
}
EXPECTED_ORDER = {
    "cumtime": [FRAME, DRAW, FIND, LEN, HELPER],
    "tottime": [DRAW, FIND, FRAME, LEN, HELPER],
    "ncalls": [LEN, HELPER, FIND, DRAW, FRAME],
}
SLICES_5S = [B, B + 5 * S, B + 10 * S]


def run(*args, stdin=None):
    """Run timeslices.py; returns CompletedProcess with text stdout/stderr."""
    return toolstest.run_tool(SCRIPT, args, stdin=stdin, text=True)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


class Warnings(list):
    def __call__(self, msg):
        self.append(msg)


# ---------------------------------------------------------------------------
# statsprof_records


class ParseTests(unittest.TestCase):
    def test_parse_ncalls(self):
        self.assertEqual(sr.parse_ncalls("12/3"), (12, 3))
        self.assertEqual(sr.parse_ncalls("500"), (500, 500))
        self.assertEqual(sr.parse_ncalls(7), (7, 7))
        for bad in ("", "x", "12/", "/3", "1.5", "-2", None, True, 1.0):
            with self.assertRaises(ValueError, msg=repr(bad)) as cm:
                sr.parse_ncalls(bad)
            self.assertIn(repr(bad), str(cm.exception))

    def test_parse_duration(self):
        self.assertEqual(sr.parse_duration("500ms"), 500_000_000)
        self.assertEqual(sr.parse_duration("10s"), 10 * S)
        self.assertEqual(sr.parse_duration("1m"), 60 * S)
        self.assertEqual(sr.parse_duration("2.5s"), 2_500_000_000)
        self.assertEqual(sr.parse_duration("0.1s"), 100_000_000)
        self.assertEqual(sr.parse_duration("250us"), 250_000)
        self.assertEqual(sr.parse_duration("1h"), 3600 * S)
        self.assertEqual(sr.parse_duration("10"), 10 * S)
        self.assertEqual(sr.parse_duration("5S"), 5 * S)
        for bad in ("10x", "", "s", "abc", "0s", "-1s", "1.2.3s", "inf",
                    "nan", "0.1ns"):
            with self.assertRaises(ValueError, msg=bad) as cm:
                sr.parse_duration(bad)
            self.assertIn(repr(bad), str(cm.exception))

    def test_format_duration_and_iso(self):
        self.assertEqual(sr.format_duration(5 * S), "5s")
        self.assertEqual(sr.format_duration(60 * S), "1m")
        self.assertEqual(sr.format_duration(500_000_000), "500ms")
        self.assertEqual(sr.format_duration(2_500_000_000), "2.5s")
        self.assertEqual(sr.ns_to_iso(B + 1_123_456_789),
                         "2026-11-25T14:30:01.123456Z")

    def test_labels(self):
        self.assertEqual(sr.split_func_key(FIND),
                         ("/srv/game/ai.py", 42, "find_path"))
        self.assertEqual(sr.short_label(FIND), "find_path (ai.py:42)")
        self.assertEqual(sr.short_label(LEN), "<built-in method builtins.len>")
        self.assertEqual(sr.short_labels(["/a/x.py:1(f)", "/b/x.py:1(f)", FIND]),
                         ["/a/x.py:1(f)", "/b/x.py:1(f)", "find_path (ai.py:42)"])


class ReadTests(unittest.TestCase):
    def read(self, paths, **kw):
        w = Warnings()
        recs = list(sr.iter_records(paths, warn=w, **kw))
        return recs, w

    def test_sample_delta_only_and_truncated_warning(self):
        stats = {}
        recs, w = self.read([SAMPLE], stats=stats)
        self.assertEqual([r["seq"] for r in recs], list(range(12)))
        self.assertTrue(all(r["kind"] == "delta" for r in recs))
        self.assertEqual(len(w), 1)
        self.assertTrue(w[0].startswith(SAMPLE + ":14: skipping incomplete "
                                        "last line"), w[0])
        self.assertEqual(stats["malformed"], 1)
        self.assertEqual(stats["matched"], 12)
        self.assertEqual(stats["kinds"], {"delta": 12, "cumulative": 1})

    def test_single_path_string(self):
        recs, _ = self.read(SAMPLE)
        self.assertEqual(len(recs), 12)

    def test_kinds(self):
        recs, _ = self.read([SAMPLE], kinds=None)
        self.assertEqual(len(recs), 13)
        recs, _ = self.read([SAMPLE], kinds=("cumulative",))
        self.assertEqual([r["seq"] for r in recs], [100])
        recs, _ = self.read([SAMPLE], kinds=("spike",))
        self.assertEqual(recs, [])

    def test_pid_host_time_filters(self):
        recs, _ = self.read([SAMPLE, OTHER])
        self.assertEqual(len(recs), 15)
        recs, _ = self.read([SAMPLE, OTHER], pid=5678)
        self.assertEqual([r["ts_ns"] for r in recs], [B + 2 * S, B + 6 * S,
                                                      B + 11 * S])
        recs, _ = self.read([SAMPLE, OTHER], pid=1234)
        self.assertEqual(len(recs), 12)
        recs, _ = self.read([SAMPLE, OTHER], host="otherhost")
        self.assertEqual(len(recs), 3)
        recs, _ = self.read([SAMPLE], since_ns=B + 5 * S, until_ns=B + 8 * S)
        self.assertEqual([r["seq"] for r in recs], [4, 5, 6])

    def test_garbage_lines_each_warned(self):
        with open(SAMPLE) as f:
            good = f.read().splitlines()[:2]
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "g.jsonl")
            with open(p, "wb") as f:
                f.write(b"\n".join([
                    good[0].encode(),
                    b"this is not json",
                    b"",
                    b"[1, 2, 3]",
                    b'{"ts_ns": "x", "kind": "delta", "func_profiles": {}}',
                    b'{"ts_ns": 5, "kind": "delta", "func_profiles": '
                    b'{"f": {"ncalls": "a/b", "tottime": 1, "cumtime": 1}}}',
                    b"\xff\xfe garbage bytes",
                    good[1].encode(),
                ]) + b"\n")
            recs, w = self.read([p])
        self.assertEqual([r["seq"] for r in recs], [0, 1])
        self.assertEqual([m.split(": ")[0] for m in w],
                         [p + ":2", p + ":4", p + ":5", p + ":6", p + ":7"])
        self.assertIn("invalid JSON", w[0])
        self.assertIn("not a JSON object", w[1])
        self.assertIn("ts_ns", w[2])
        self.assertIn("ncalls", w[3])
        self.assertIn("UTF-8", w[4])

    def test_warning_cap(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "junk.jsonl")
            with open(p, "w") as f:
                f.write("junk\n" * 30)
            stats = {}
            recs, w = self.read([p], stats=stats, max_warnings_per_file=5)
        self.assertEqual(recs, [])
        self.assertEqual(stats["malformed"], 30)
        self.assertEqual(len(w), 6)
        self.assertIn("25 more malformed lines", w[-1])

    def test_gzip_and_truncated_gzip(self):
        with open(SAMPLE, "rb") as f:
            data = f.read()
        with tempfile.TemporaryDirectory() as d:
            gz = os.path.join(d, "s.jsonl.gz")
            with gzip.open(gz, "wb") as f:
                f.write(data)
            recs, w = self.read([gz])
            self.assertEqual(len(recs), 12)
            self.assertEqual(len(w), 1)
            self.assertIn(gz + ":14:", w[0])
            # compressed but without .gz suffix: detected by magic bytes
            nosuffix = os.path.join(d, "rotated.1")
            os.rename(gz, nosuffix)
            recs, _ = self.read([nosuffix])
            self.assertEqual(len(recs), 12)
            # a gzip stream cut short (writer killed): records before the
            # cut are read, then one warning, no exception
            with open(nosuffix, "rb") as f:
                comp = f.read()
            cut = os.path.join(d, "cut.gz")
            with open(cut, "wb") as f:
                f.write(comp[:len(comp) * 2 // 3])
            recs, w = self.read([cut])
            self.assertGreater(len(recs), 0)
            self.assertLess(len(recs), 12)
            self.assertTrue(any("compressed data ends or is corrupt" in m
                                for m in w), w)

    def test_records_read_twice_are_used_once(self):
        with tempfile.TemporaryDirectory() as d:
            gz = toolstest.gzip_copy(SAMPLE, os.path.join(d, "s.jsonl.gz"))
            stats = {}
            recs, w = self.read([SAMPLE, gz, OTHER], stats=stats)
            self.assertEqual(recs, self.read([SAMPLE, OTHER])[0])
            self.assertEqual((stats["matched"], stats["duplicates"]), (15, 12))
            self.assertEqual(len(w), 4)     # two truncated last lines
            self.assertEqual(w[2], "12 records read more than once (the same "
                             "host, pid, kind, seq, thread, frame and times: "
                             "a file given with its copy?); each is used once")
            self.assertIn("7 delta records missing", w[3])  # OTHER's seqs
            # a thread record is not its delta, nor another thread's
            recs, w = self.read([SAMPLE], kinds=None)
            thread = [dict(recs[0], kind="thread", thread_id=t) for t in (1, 2)]
            # records without seq, pid or host cannot be told apart
            anon = {k: v for k, v in recs[0].items() if k != "seq"}
            p = os.path.join(d, "t.jsonl")
            with open(p, "w") as f:
                for rec in [recs[0]] + thread + thread + [anon, anon]:
                    f.write(json.dumps(rec) + "\n")
            stats = {}
            recs, w = self.read([p], kinds=None, stats=stats)
        self.assertEqual([(r["kind"], r.get("thread_id"), r.get("seq"))
                          for r in recs],
                         [("delta", None, 0), ("thread", 1, 0),
                          ("thread", 2, 0), ("delta", None, None),
                          ("delta", None, None)])
        self.assertEqual(stats["duplicates"], 2)
        self.assertIn("2 records read more than once", w[0])

    def test_lost_records_warned(self):
        with open(SAMPLE) as f:
            good = json.loads(f.readline())
        lines = []
        for pid, kind, seq, dropped, errors in (
                (1, "delta", 1, 0, 0), (1, "delta", 2, 0, 0),
                (1, "delta", 4, 2, 0),          # seq 3 lost (dropped)
                (1, "thread", 4, 2, 0), (1, "thread", 9, 3, 1),
                (1, "delta", 5, 1, 1),          # counters only grow: max
                (1, "delta", 1, 0, 0),          # a new run: no gap
                (2, "delta", 7, 0, 0), (2, "delta", 8, 0, 0)):
            lines.append(json.dumps(dict(     # one second after another
                good, pid=pid, kind=kind, seq=seq, dropped=dropped,
                sink_errors=errors, start_ns=good["start_ns"] + len(lines) * S,
                ts_ns=good["ts_ns"] + len(lines) * S)))
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "lost.jsonl")
            with open(p, "w") as f:
                f.write("\n".join(lines) + "\n")
            stats = {}
            recs, w = self.read([p], kinds=None, stats=stats)
            self.assertEqual(len(recs), 9)
            self.assertEqual(w, ["records lost (pid 1 on myhost): 3 dropped "
                                 "by full sink queues, 1 failed sink write "
                                 "(the records' counts, over all sinks), 1 "
                                 "delta record missing (gaps in seq); sums "
                                 "are low"])
            self.assertEqual((stats["dropped"], stats["sink_errors"],
                              stats["seq_gaps"]), (3, 1, 1))
            # what is not read does not count: pid 2 alone lost nothing
            recs, w = self.read([p], kinds=None, pid=2)
            self.assertEqual((len(recs), w), (2, []))
            # only gaps between delta records count
            recs, w = self.read([p], kinds=("thread",))
            self.assertEqual(w, ["records lost (pid 1 on myhost): 3 dropped "
                                 "by full sink queues, 1 failed sink write "
                                 "(the records' counts, over all sinks); "
                                 "sums are low"])

    def losses(self, files, warning):
        """Writes ``files`` (name -> records) to a temporary directory and
        reads them in the order given: checks the one warning, returns the
        stats' (dropped, sink_errors, seq_gaps)."""
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for name, recs in files:
                paths.append(os.path.join(d, name))
                with open(paths[-1], "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in recs)
            stats = {}
            recs, w = self.read(paths, kinds=None, stats=stats)
        self.assertEqual(len(recs), sum(len(r) for _, r in files))
        self.assertEqual(w, [warning])
        return stats["dropped"], stats["sink_errors"], stats["seq_gaps"]

    @staticmethod
    def interval(second, kind, seq, dropped, errors, length=S):
        """A record of pid 1 from ``second`` on, one second long (as the
        library writes a profiler's deltas, each from where the last one
        ended), with its counters."""
        with open(SAMPLE) as f:
            rec = json.loads(f.readline())
        rec.update(pid=1, kind=kind, seq=seq, dropped=dropped,
                   sink_errors=errors, start_ns=B + int(second * S),
                   ts_ns=B + int(second * S) + length, interval_s=length / S)
        return rec

    def test_a_restart_in_the_same_process_counts_both_runs_losses(self):
        # The host destroys its profiler and creates another in the same
        # process: seq starts again at 1, dropped and sink_errors at 0.
        # Run 1 lost its seq 3 and counts 2 dropped and 1 failed write; run
        # 2 (a spike before its first delta, a thread record after it)
        # counts 1 and 1. The largest counter per pid (2 and 1) hid run 2's.
        r = self.interval
        run1 = [r(0, "delta", 1, 0, 0), r(1, "delta", 2, 1, 0),
                r(3, "delta", 4, 2, 1)]
        run2 = [r(5, "spike", 0, 0, 0, length=S // 60),
                r(5, "delta", 1, 0, 0), r(5, "thread", 1, 0, 0),
                r(6, "delta", 2, 1, 0), r(7, "delta", 3, 1, 1)]
        warning = ("records lost (pid 1 on myhost): 3 dropped by full sink "
                   "queues, 2 failed sink writes (the records' counts, over "
                   "all sinks), 1 delta record missing (gaps in seq); sums "
                   "are low")
        self.assertEqual(self.losses([("prof.jsonl", run1 + run2)], warning),
                         (3, 2, 1))
        # Rotated files in glob order, the newest first: the same.
        files = [("prof.jsonl", run2[3:]), ("prof.jsonl.1", run1[2:] + run2[:3]),
                 ("prof.jsonl.2", run1[:2])]
        self.assertEqual(self.losses(files, warning), (3, 2, 1))

    def test_two_profilers_side_by_side_in_one_process_are_two_runs(self):
        # Two profilers write one file, B created a second after A: their
        # records alternate, each one's deltas chained in time, none
        # missing. Each run's counters count (A dropped 1, B failed 1
        # write); taking every seq that did not grow as a new run read a
        # gap at each of A's records after one of B's.
        r = self.interval
        a = [r(i, "delta", i + 1, min(i, 1), 0) for i in range(5)]
        b = [r(i + 1.5, "delta", i + 1, 0, min(i, 1)) for i in range(4)]
        both = sorted(a + b, key=lambda rec: rec["ts_ns"])
        warning = ("records lost (pid 1 on myhost): 1 dropped by full sink "
                   "queues, 1 failed sink write (the records' counts, over "
                   "all sinks); sums are low")
        self.assertEqual(self.losses([("prof.jsonl", both)], warning), (1, 1, 0))

    def test_corrupt_records_skipped_with_warnings(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "c.jsonl")
            corrupt = toolstest.corrupt_copy(SAMPLE, p)
            stats = {}
            recs, w = self.read([p], stats=stats)
        self.assertEqual(recs, self.read([SAMPLE])[0])
        self.assertEqual(len(w), len(corrupt))
        for (line, what), msg in zip(corrupt, w):
            self.assertTrue(msg.startswith("%s:%d: skipping malformed line: "
                                           % (p, line)), msg)
            self.assertIn(what, msg)
        self.assertEqual(stats["malformed"], 12)

    def test_strings_and_integer_bounds(self):
        with open(SAMPLE) as f:
            good = json.loads(f.readline())

        def variant(**fields):
            rec = json.loads(json.dumps(good))
            rec.update(fields)
            return json.dumps(rec)

        key, fp = next(iter(good["func_profiles"].items()))
        row = {"ts_ns": B + S, "start_ns": B, "seq": 1, "pid": 1,
               "host": "h", "kind": "delta"}
        rows = [dict(row, row="record", rows=2, interval_s=1.0, dropped=0,
                     sink_errors=0, overflow_functions=0, total_tt=0.5),
                dict(row, row="function", key="/a.py:1(f\udcff)",
                     file="/a.py", line=1, function="f\udcff", ncalls=1,
                     primitive_calls=1, tottime=0.5, cumtime=0.5)]
        lines = [
            # accepted: a surrogate pair (one character), the bounds
            variant(host="\U0001f600", seq=1),
            variant(seq=2, pid=-2**63, thread_id=2**64 - 1,
                    kind="thread", dropped=2**64 - 1),
            variant(seq=3, ts_ns=2**63 - 1, duty=1e-18),
            # skipped: a lone surrogate in a value, a key, a rows line
            variant(seq=4, host="h\udc80"),
            variant(seq=5, func_profiles={"\ud800": fp}),
        ] + [json.dumps(r) for r in rows]
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "s.jsonl")
            with open(p, "w") as f:
                f.write("\n".join(lines) + "\n")
            recs, w = self.read([p], kinds=None)
        self.assertEqual([(r["seq"], r["host"]) for r in recs],
                         [(1, "\U0001f600"), (2, "myhost"), (3, "myhost")])
        self.assertEqual([m.split(": ")[0] for m in w],
                         [p + ":4", p + ":5", p + ":7", p + ":7",
                          "records lost (pid -9223372036854775808 on myhost)"])
        self.assertIn('lone surrogate "\\udc80"', w[0])
        self.assertIn('lone surrogate "\\ud800"', w[1])
        self.assertIn("not valid UTF-8", w[2])
        self.assertIn("incomplete delta record seq 1", w[3])

    def test_header_field_types(self):
        """A list, object or float where an integer or a string belongs
        (they tell records apart: a list cannot be hashed) is a malformed
        line named by file and line; null stands for a missing field."""
        with open(SAMPLE) as f:
            good = json.loads(f.readline())
        bad = [("host", ["myhost"], "non-string 'host': [\"myhost\"]"),
               ("host", 7, "non-string 'host': 7"),
               ("seq", [0], "non-integer 'seq': [0]"),
               ("seq", 0.5, "non-integer 'seq': 0.5"),
               ("pid", {"a": 1}, 'non-integer \'pid\': {"a": 1}'),
               ("pid", "4242", "non-integer 'pid': \"4242\""),
               ("thread_id", True, "non-integer 'thread_id': true"),
               ("thread_name", ["t"], "non-string 'thread_name': [\"t\"]")]
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "h.jsonl")
            with open(p, "w") as f:
                for i, (name, value, _what) in enumerate(bad):
                    f.write(json.dumps(dict(good, **{"seq": i, name: value}))
                            + "\n")
                f.write(json.dumps(dict(good, seq=None, host=None)) + "\n")
            recs, w = self.read([p], kinds=None)
        self.assertEqual(len(recs), 1)
        self.assertEqual(w, ["%s:%d: skipping malformed line: %s"
                             % (p, i + 1, what)
                             for i, (_n, _v, what) in enumerate(bad)])

    def test_line_longer_than_the_limit(self):
        """A line longer than max_line_bytes (a file with no newline,
        /dev/zero) raises InputError naming the file, the line and its
        offset, after the records before it; no more is read into
        memory."""
        with open(SAMPLE, "rb") as f:
            good = f.readline()
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "long.jsonl")
            with open(p, "wb") as f:
                f.write(good + b"\n" + b"x" * len(good) + b"\n" + good)
            recs = []
            with self.assertRaises(sr.InputError) as cm:
                for rec in sr.iter_records(p, warn=Warnings(),
                                           max_line_bytes=len(good)):
                    recs.append(rec)
            self.assertEqual(len(recs), 1)
            self.assertEqual(cm.exception.filename, p)
            self.assertEqual(cm.exception.strerror,
                             "line 3 (byte offset %d) is longer than %d bytes, "
                             "the limit (no record is that long): not a "
                             "statsprof records file?"
                             % (len(good) + 1, len(good)))
            # a gzipped file: the offset is in the uncompressed data
            gz = toolstest.gzip_copy(p, p + ".gz")
            with self.assertRaises(sr.InputError) as cm:
                list(sr.iter_records(gz, warn=Warnings(),
                                     max_line_bytes=len(good)))
            self.assertIn("line 3 (byte offset %d)" % (len(good) + 1),
                          cm.exception.strerror)
            # a line of exactly the limit is read (and is bad JSON)
            _, w = self.read([p], max_line_bytes=len(good) + 1)
            self.assertTrue(w[0].startswith(p + ":3: skipping malformed "
                                            "line: invalid JSON"), w)
            # the default limit, through the tool
            toolstest.no_newline_file(p, good)
            r = toolstest.run_tool(SCRIPT, ["--slice", "1s", p], text=True)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.splitlines()[-1],
                         "timeslices: error: %s: line 2 (byte offset %d) is "
                         "longer than %d bytes, the limit (no record is that "
                         "long): not a statsprof records file?"
                         % (p, len(good), sr.MAX_LINE_BYTES))
        self.assertNotIn("Traceback", r.stderr)

    def test_missing_file_raises_oserror(self):
        with self.assertRaises(FileNotFoundError):
            list(sr.iter_records(["/nonexistent/x.jsonl"], warn=Warnings()))


class BucketTests(unittest.TestCase):
    def records(self, path=SAMPLE, **kw):
        return list(sr.iter_records([path], warn=Warnings(), **kw))

    def test_each_field_exact(self):
        for field in sr.FIELDS:
            with self.subTest(field=field):
                slices, table = sr.bucket_records(self.records(), 5 * S, field)
                self.assertEqual(slices, SLICES_5S)
                self.assertEqual(table, EXPECTED[field])
                if field == "ncalls":
                    for row in table.values():
                        self.assertTrue(all(type(v) is int for v in row))

    def test_top_ordering(self):
        for field in sr.FIELDS:
            with self.subTest(field=field):
                _, table = sr.bucket_records(self.records(), 5 * S, field)
                self.assertEqual(sr.top_functions(table, 10),
                                 EXPECTED_ORDER[field])
                self.assertEqual(sr.top_functions(table, 2),
                                 EXPECTED_ORDER[field][:2])
                self.assertEqual(sr.top_functions(table, 0), [])

    def test_top_ties_broken_by_key(self):
        table = {"b": [1, 1], "a": [2, 0], "c": [0, 3]}
        self.assertEqual(sr.top_functions(table, 3), ["c", "a", "b"])
        # ranked by the total over all slices, not by the peak slice
        table = {"peak": [5.0, 0.0, 0.0], "steady": [2.0, 2.0, 2.0]}
        self.assertEqual(sr.top_functions(table, 1), ["steady"])

    def test_other_values(self):
        _, table = sr.bucket_records(self.records(), 5 * S, "cumtime")
        self.assertEqual(sr.other_values(table, [FRAME, DRAW, FIND], 0.0),
                         [0.171875, 0.15625, 0.09375])
        self.assertEqual(sr.other_values(table, list(table), 0.0),
                         [0.0, 0.0, 0.0])
        # no functions at all: still one "other" value per slice
        self.assertEqual(sr.other_values({}, [], 0, 2), [0, 0])

    def test_slice_boundaries_and_sizes(self):
        recs = self.records()
        # 1 s slices: record i (ends at B+(i+1)s) lands in slice i+1, slice 0
        # (nothing ends within the first second) is empty
        slices, table = sr.bucket_records(recs, S, "ncalls")
        self.assertEqual(len(slices), 13)
        self.assertEqual(table[FRAME], [0] + [1] * 12)
        self.assertEqual(table[HELPER], [0, 40, 40, 40] + [0] * 9)
        # 2.5 s slices: ends 1,2 -> 0; 3,4 -> 1; 5,6,7 -> 2; 8,9 -> 3;
        # 10,11,12 -> 4
        slices, table = sr.bucket_records(recs, 2_500_000_000, "ncalls")
        self.assertEqual(slices, [B + i * 2_500_000_000 for i in range(5)])
        self.assertEqual(table[FRAME], [2, 2, 3, 2, 3])
        # one big slice
        slices, table = sr.bucket_records(recs, 60 * S, "tottime")
        self.assertEqual(slices, [B])
        self.assertEqual(table[DRAW], [3.0])

    def test_gap_gives_empty_slices_and_order_does_not_matter(self):
        recs = self.records()
        late = dict(recs[0], ts_ns=B + 31 * S, start_ns=B + 30 * S)
        slices, table = sr.bucket_records(
            list(reversed(recs)) + [late], 5 * S, "ncalls")
        self.assertEqual(len(slices), 7)
        self.assertEqual(table[FRAME], [4, 5, 3, 0, 0, 0, 1])

    def test_t0_is_earliest_start(self):
        # other_pid alone: earliest start is B+1s, so slices start there
        recs = self.records(OTHER)
        slices, table = sr.bucket_records(recs, 5 * S, "cumtime")
        self.assertEqual(slices, [B + S, B + 6 * S, B + 11 * S])
        self.assertEqual(table[WORK], [4.0, 4.0, 4.0])

    def test_epoch_alignment(self):
        recs = self.records()
        # 7 s slices: B is 2 s past a multiple of 7 s since the epoch, so
        # epoch-aligned slices start at B-2s: [B-2, B+5) holds the records
        # ending at B+1..B+4, [B+5, B+12) those ending at B+5..B+11,
        # [B+12, B+19) the last one; aligned to the first record (B) they
        # would be [B, B+7) and [B+7, B+14).
        self.assertEqual(B % (7 * S), 2 * S)
        slices, table = sr.bucket_records(recs, 7 * S, "cumtime",
                                          align="epoch")
        self.assertEqual(slices, [B - 2 * S, B + 5 * S, B + 12 * S])
        self.assertEqual(table[FRAME], [2.0, 3.5, 0.5])
        self.assertEqual(table[FIND], [0.0, 1.75, 0.25])
        slices, table = sr.bucket_records(recs, 7 * S, "cumtime")
        self.assertEqual(slices, [B, B + 7 * S])
        self.assertEqual(table[FRAME], [3.0, 3.0])
        # already on a multiple: the same slices either way
        self.assertEqual(sr.bucket_records(recs, 5 * S, "ncalls", align="epoch"),
                         sr.bucket_records(recs, 5 * S, "ncalls"))
        with self.assertRaises(ValueError) as cm:
            sr.bucket_records(recs, 5 * S, "ncalls", align="start")
        self.assertIn("invalid align 'start'", str(cm.exception))

    def test_duty_scaling(self):
        recs = self.records(DUTY)
        for field, scaled, unscaled in (("cumtime", 2.0, 1.375),
                                        ("tottime", 1.0, 0.6875),
                                        ("ncalls", 18.0, 9)):
            with self.subTest(field=field):
                _, table = sr.bucket_records(recs, 10 * S, field)
                self.assertEqual(table, {FRAME: [scaled]})
                _, table = sr.bucket_records(recs, 10 * S, field,
                                             scale_duty=False)
                self.assertEqual(table, {FRAME: [unscaled]})
        self.assertEqual([sr.record_duty(r) for r in recs],
                         [0.5, 0.25, 1.0, 1.0])

    def test_empty_and_bad_arguments(self):
        self.assertEqual(sr.bucket_records([], 5 * S, "cumtime"), ([], {}))
        with self.assertRaises(ValueError) as cm:
            sr.bucket_records([], 5 * S, "walltime")
        self.assertIn("walltime", str(cm.exception))
        with self.assertRaises(ValueError):
            sr.bucket_records([], 0, "cumtime")
        with self.assertRaises(ValueError) as cm:
            sr.bucket_records(self.records(), S, "cumtime", max_slices=12)
        self.assertIn("too many slices: 13", str(cm.exception))


# ---------------------------------------------------------------------------
# timeslices CLI

TABLE_CUMTIME_TOP3 = """\
# cumtime (seconds) per 5s slice; 12 delta records from 1 file; pid 1234; host myhost
# 5 functions, top 3 shown
slice_start (UTC)            t+s  frame (game.py:10)  draw (render.py:7)  find_path (ai.py:42)     other
2026-11-25T14:30:00.000000Z    0            2.000000            1.500000              0.000000  0.171875
2026-11-25T14:30:05.000000Z    5            2.500000            1.875000              1.250000  0.156250
2026-11-25T14:30:10.000000Z   10            1.500000            1.125000              0.750000  0.093750
--------------------------------------------------------------------------------------------------------
total                                       6.000000            4.500000              2.000000  0.421875
"""

TRUNC_WARNING = ("timeslices: warning: %s:14: skipping incomplete last line "
                 "(writer killed?): " % SAMPLE)


class CliTests(toolstest.ToolTest):
    def ok(self, *args, **kw):
        p = run(*args, **kw)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        return p

    def csv_rows(self, *args):
        out = os.path.join(self.tmp, "out.csv")
        self.ok("--csv", out, *args)
        return read_csv(out)

    # --- text table -------------------------------------------------------

    def test_text_table_exact(self):
        p = self.ok("--slice", "5s", "--top", "3", SAMPLE)
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)

    def test_text_table_other_fields(self):
        p = self.ok("--slice", "5s", "--field", "ncalls", "--top", "2", SAMPLE)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(";")[0], "# ncalls (calls) per 5s slice")
        self.assertEqual(lines[2].split(),
                         ["slice_start", "(UTC)", "t+s", "<built-in", "method",
                          "builtins.len>", "helper", "(util.py:3)", "other"])
        self.assertEqual(lines[3].split(),
                         ["2026-11-25T14:30:00.000000Z", "0", "2000", "120", "12"])
        self.assertEqual(lines[4].split()[2:], ["2500", "0", "75"])
        self.assertEqual(lines[5].split()[2:], ["1500", "0", "45"])
        self.assertEqual(lines[-1].split(), ["total", "6000", "120", "132"])
        p = self.ok("--slice", "5s", "--field", "tottime", "--top", "1", SAMPLE)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[2].split()[3:], ["draw", "(render.py:7)", "other"])
        self.assertEqual(lines[3].split()[2:], ["1.000000", "0.421875"])
        self.assertEqual(lines[4].split()[2:], ["1.250000", "1.093750"])
        self.assertEqual(lines[5].split()[2:], ["0.750000", "0.656250"])

    def test_default_slice_is_10s(self):
        rows = self.csv_rows("--field", "ncalls", "--top", "1", SAMPLE)
        self.assertEqual(rows, [
            ["slice_start_iso", "slice_start_ns", LEN, "other"],
            ["2026-11-25T14:30:00.000000Z", str(B), "4500", "207"],
            ["2026-11-25T14:30:10.000000Z", str(B + 10 * S), "1500", "45"],
        ])

    # --- CSV --------------------------------------------------------------

    def test_csv_exact_each_field(self):
        for field in sr.FIELDS:
            with self.subTest(field=field):
                top = EXPECTED_ORDER[field][:3]
                rows = self.csv_rows("--slice", "5s", "--top", "3",
                                     "--field", field, SAMPLE)
                self.assertEqual(rows[0], ["slice_start_iso", "slice_start_ns"]
                                 + top + ["other"])
                self.assertEqual(len(rows), 4)
                for i, row in enumerate(rows[1:]):
                    self.assertEqual(row[0], sr.ns_to_iso(SLICES_5S[i]))
                    self.assertEqual(int(row[1]), SLICES_5S[i])
                    expect = [EXPECTED[field][k][i] for k in top]
                    expect.append(sum(EXPECTED[field][k][i]
                                      for k in EXPECTED_ORDER[field][3:]))
                    conv = int if field == "ncalls" else float
                    self.assertEqual([conv(v) for v in row[2:]], expect)

    def test_csv_exact_text(self):
        out = os.path.join(self.tmp, "c.csv")
        self.ok("--slice", "5s", "--top", "3", "--csv", out, SAMPLE)
        with open(out, newline="") as f:
            self.assertEqual(f.read(), (
                "slice_start_iso,slice_start_ns,%s,%s,%s,other\n"
                "2026-11-25T14:30:00.000000Z,1795617000000000000,2.0,1.5,0.0,0.171875\n"
                "2026-11-25T14:30:05.000000Z,1795617005000000000,2.5,1.875,1.25,0.15625\n"
                "2026-11-25T14:30:10.000000Z,1795617010000000000,1.5,1.125,0.75,0.09375\n"
            ) % (FRAME, DRAW, FIND))

    def test_csv_stdout(self):
        p = self.ok("--slice", "5s", "--top", "0", "--field", "ncalls",
                    "--csv", "-", SAMPLE)
        self.assertEqual(p.stdout, (
            "slice_start_iso,slice_start_ns,other\n"
            "2026-11-25T14:30:00.000000Z,1795617000000000000,2132\n"
            "2026-11-25T14:30:05.000000Z,1795617005000000000,2575\n"
            "2026-11-25T14:30:10.000000Z,1795617010000000000,1545\n"))

    def test_records_without_functions(self):
        # two records of idle intervals, B..B+2s: by their end times in
        # three 1 s slices
        idle = toolstest.idle_records(self.path("idle.jsonl"))
        p = self.ok("--slice", "1s", "--field", "ncalls", idle)
        self.assertEqual(p.stdout, (
            "# ncalls (calls) per 1s slice; 2 delta records from 1 file; "
            "pid 7; host h\n"
            "# 0 functions, top 0 shown\n"
            "slice_start (UTC)            t+s  other\n"
            "2026-11-25T14:30:00.000000Z    0      0\n"
            "2026-11-25T14:30:01.000000Z    1      0\n"
            "2026-11-25T14:30:02.000000Z    2      0\n"
            "---------------------------------------\n"
            "total                                 0\n"))
        p = self.ok("--slice", "1s", "--csv", "-", idle)
        self.assertEqual(p.stdout, (
            "slice_start_iso,slice_start_ns,other\n"
            "2026-11-25T14:30:00.000000Z,1795617000000000000,0.0\n"
            "2026-11-25T14:30:01.000000Z,1795617001000000000,0.0\n"
            "2026-11-25T14:30:02.000000Z,1795617002000000000,0.0\n"))

    def test_corrupt_records_give_the_same_table(self):
        p = self.path("c.jsonl")
        corrupt = toolstest.corrupt_copy(SAMPLE, p)
        for args in (("--slice", "5s"), ("--field", "ncalls", "--csv", "-")):
            with self.subTest(args=args):
                got, want = self.ok(*args, p), self.ok(*args, SAMPLE)
                self.assertEqual(got.stdout, want.stdout)
                self.assertEqual(got.stderr.count("skipping malformed line"),
                                 len(corrupt))

    def test_table_still_printed_with_csv(self):
        out = os.path.join(self.tmp, "c.csv")
        p = self.ok("--slice", "5s", "--top", "3", "--csv", out, SAMPLE)
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)

    # --- PNG --------------------------------------------------------------

    def check_png(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(data), 5000)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.image as mpimg
        img = mpimg.imread(path)
        self.assertEqual(img.shape, (600, 1200, 4))
        # not a blank image: several distinct colours (bars, legend)
        self.assertGreater(len({tuple(px) for px in img[::10, ::10].reshape(
            -1, 4).tolist()}), 5)

    def test_png(self):
        png = os.path.join(self.tmp, "out.png")
        p = self.ok("--slice", "5s", "--top", "3", "--png", png,
                    "--title", "my title", SAMPLE)
        self.check_png(png)
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)

    def test_png_clock_axis_and_ncalls(self):
        png = os.path.join(self.tmp, "clock.png")
        self.ok("--slice", "2s", "--field", "ncalls", "--clock", "--png", png,
                SAMPLE, OTHER)
        self.check_png(png)

    def test_chart_contents(self):
        args = timeslices.build_parser().parse_args(
            ["--slice", "5s", "--top", "3", SAMPLE])
        result = timeslices.compute(args, Warnings())
        fig = timeslices.make_chart(result, title="T")
        ax = fig.axes[0]
        self.assertEqual([t.get_text() for t in ax.get_legend().get_texts()],
                         ["frame (game.py:10)", "draw (render.py:7)",
                          "find_path (ai.py:42)", "other"])
        self.assertEqual(ax.get_ylabel(), "cumtime per 5s slice (seconds)")
        self.assertEqual(ax.get_title(), "T")
        self.assertTrue(ax.get_xlabel().startswith("seconds since first record"))
        # 4 series x 3 slices, stacked: tops of the "other" bars = slice totals
        bars = ax.patches
        self.assertEqual(len(bars), 12)
        self.assertEqual([b.get_x() for b in bars[:3]], [0.0, 5.0, 10.0])
        tops = [b.get_y() + b.get_height() for b in bars[9:]]
        self.assertEqual(tops, [3.671875, 5.78125, 3.46875])
        # ncalls: y label in calls
        args = timeslices.build_parser().parse_args(
            ["--slice", "5s", "--field", "ncalls", DUTY])
        fig = timeslices.make_chart(timeslices.compute(args, Warnings()))
        self.assertEqual(fig.axes[0].get_ylabel(),
                         "ncalls per 5s slice (calls), duty-scaled")

    # --- warnings, filters, duty ----------------------------------------

    def test_truncated_line_warning(self):
        p = self.ok("--slice", "5s", SAMPLE)
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith(TRUNC_WARNING), lines[0])

    def test_pid_filter(self):
        both = self.csv_rows("--slice", "5s", "--top", "3", SAMPLE, OTHER)
        self.assertEqual(both[0][2:], [WORK, FRAME, DRAW, "other"])
        self.assertEqual([r[2:] for r in both[1:]], [
            ["4.0", "3.0", "1.5", "0.171875"],
            ["4.0", "3.5", "1.875", "1.40625"],
            ["4.0", "2.5", "1.125", "0.84375"]])
        only = self.csv_rows("--slice", "5s", "--top", "3", "--pid", "1234",
                             SAMPLE, OTHER)
        alone = self.csv_rows("--slice", "5s", "--top", "3", SAMPLE)
        self.assertEqual(only, alone)
        other = self.csv_rows("--slice", "5s", "--pid", "5678", SAMPLE, OTHER)
        self.assertEqual(other, [
            ["slice_start_iso", "slice_start_ns", WORK, FRAME, "other"],
            ["2026-11-25T14:30:01.000000Z", str(B + S), "4.0", "1.0", "0.0"],
            ["2026-11-25T14:30:06.000000Z", str(B + 6 * S), "4.0", "1.0", "0.0"],
            ["2026-11-25T14:30:11.000000Z", str(B + 11 * S), "4.0", "1.0", "0.0"]])

    def test_host_filter(self):
        rows = self.csv_rows("--slice", "10s", "--field", "ncalls",
                             "--host", "otherhost", SAMPLE, OTHER)
        self.assertEqual([r[2:] for r in rows], [[WORK, FRAME, "other"],
                                                 ["14", "6", "0"],
                                                 ["7", "3", "0"]])

    def test_kind_choice(self):
        rows = self.csv_rows("--slice", "10s", "--kind", "cumulative", SAMPLE)
        self.assertEqual(rows[1][2:], ["5000.0", "777.0", "0.0"])
        rows = self.csv_rows("--slice", "60s", "--field", "ncalls", "--top",
                             "0", "--kind", "all", SAMPLE)
        self.assertEqual(rows[1][2:], ["6267"])  # 6252 delta + 15 cumulative

    def kind_warnings(self, *args):
        err = self.ok("--field", "ncalls", *args).stderr
        return [line for line in err.splitlines()
                if "last line" not in line]

    def test_kinds_that_count_calls_again_are_warned(self):
        running = ("timeslices: warning: cumulative records hold running "
                   "totals; summing them per slice does not give the time "
                   "spent in each slice")
        self.assertEqual(self.kind_warnings("--kind", "all", SAMPLE), [
            "timeslices: warning: delta and cumulative records summed "
            "together (12 delta, 1 cumulative) count the same calls again "
            "(a cumulative record holds all calls so far); choose one kind "
            "with --kind", running])
        self.assertEqual(self.kind_warnings("--kind", "cumulative", SAMPLE),
                         [running])
        self.assertEqual(self.kind_warnings("--kind", "delta,spike",
                                            toolstest.GAME),
                         ["timeslices: warning: delta and spike records "
                          "summed together (60 delta, 1 spike) count the "
                          "same calls again (a spike record repeats one "
                          "frame of a delta); choose one kind with --kind"])
        # by the records read: "all" over deltas only sums nothing twice
        self.assertEqual(self.kind_warnings("--kind", "all", DUTY), [])
        self.assertEqual(self.kind_warnings(SAMPLE), [])

    def test_output_that_is_an_input_is_refused(self):
        self.check_input_as_output_refused(SCRIPT, "timeslices",
                                           ["--csv", "--png"])

    def test_unknown_kind_is_not_summed_under_all(self):
        """A kind the library does not write (one a newer statsprof may
        add) is skipped under --kind all, with a warning naming it, the
        file and its first line; --kind NAME uses it."""
        with open(DUTY) as f:
            lines = [line for line in f if line.endswith("\n")]
        heap = json.loads(lines[0])
        heap.update(kind="heap", seq=1000)
        p = self.path("heap.jsonl")
        with open(p, "w") as f:
            f.writelines(lines[:2] + [json.dumps(heap) + "\n"] + lines[2:]
                         + [json.dumps(dict(heap, seq=1001)) + "\n"])
        self.assertEqual(self.kind_warnings("--kind", "all", p), [
            "timeslices: warning: %s:3: skipping records of unknown kind "
            '"heap" (not delta, thread, spike, cumulative; a newer '
            "statsprof?): summing them could count calls again; name the "
            "kind (--kind heap) to use them" % p])
        for args in (("--kind", "all"), ()):
            self.assertEqual(self.ok("--field", "ncalls", "--csv", "-",
                                     *args, p).stdout,
                             self.ok("--field", "ncalls", "--csv", "-",
                                     DUTY).stdout)
        self.assertEqual(self.kind_warnings("--kind", "heap", p), [])

    def test_align_epoch_cli(self):
        rows = self.csv_rows("--slice", "7s", "--align", "epoch", "--top", "1",
                             SAMPLE)
        self.assertEqual([r[:3] for r in rows], [
            ["slice_start_iso", "slice_start_ns", FRAME],
            ["2026-11-25T14:29:58.000000Z", str(B - 2 * S), "2.0"],
            ["2026-11-25T14:30:05.000000Z", str(B + 5 * S), "3.5"],
            ["2026-11-25T14:30:12.000000Z", str(B + 12 * S), "0.5"]])
        err = self.one_line_error(toolstest.run_tool(
            SCRIPT, ["--align", "start", SAMPLE]))
        self.assertIn("--align: invalid choice: 'start'", err)

    def test_duty_scaling_cli(self):
        for field, scaled, unscaled in (("cumtime", "2.0", "1.375"),
                                        ("tottime", "1.0", "0.6875"),
                                        ("ncalls", "18.0", "9")):
            with self.subTest(field=field):
                rows = self.csv_rows("--field", field, DUTY)
                self.assertEqual(rows[1][2:], [scaled, "0" if field == "ncalls"
                                               else "0.0"])
                rows = self.csv_rows("--field", field, "--no-scale-duty", DUTY)
                self.assertEqual(rows[1][2], unscaled)
        p = self.ok("--field", "ncalls", DUTY)
        self.assertIn("2 records scaled by 1/duty", p.stdout)
        self.assertEqual(p.stdout.splitlines()[-1].split(), ["total", "18", "0"])

    def test_gzip_and_stdin(self):
        with open(SAMPLE, "rb") as f:
            data = f.read()
        gz = os.path.join(self.tmp, "s.jsonl.gz")
        with gzip.open(gz, "wb") as f:
            f.write(data)
        p = self.ok("--slice", "5s", "--top", "3", gz)
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)
        p = self.ok("--slice", "5s", "--top", "3", "-", stdin=data.decode())
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)
        self.assertIn("<stdin>:14: skipping incomplete last line", p.stderr)

    def test_executable_with_shebang(self):
        with open(SCRIPT) as f:
            self.assertEqual(f.readline(), "#!/usr/bin/python3\n")
        self.assertTrue(os.access(SCRIPT, os.X_OK))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        p = subprocess.run([SCRIPT, "--slice", "5s", "--top", "3", SAMPLE],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, TABLE_CUMTIME_TOP3)

    def test_help(self):
        p = self.ok("--help")
        for word in ("--slice", "--field", "--top", "--kind", "--pid", "--host",
                     "--csv", "--png", "--title", "--clock", "--no-scale-duty",
                     "cumtime", "tottime", "ncalls", "other", "stdin", "exit status"):
            self.assertIn(word, p.stdout)

    # --- errors -------------------------------------------------------------

    def error(self, *args, stdin=None):
        p = run(*args, stdin=stdin)
        self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
        self.assertNotIn("Traceback", p.stderr)
        self.assertEqual(p.stdout, "")
        return p.stderr

    def test_error_missing_file(self):
        err = self.error("--slice", "5s", SAMPLE, "/nonexistent/prof.jsonl")
        self.assertIn("timeslices: error: /nonexistent/prof.jsonl: no such file",
                      err)

    def test_error_directory(self):
        err = self.error(DATA)
        self.assertIn("is a directory", err)

    def test_error_no_records_matched(self):
        err = self.error("--pid", "9999", SAMPLE)
        self.assertIn("timeslices: error: no records matched", err)
        self.assertIn("12 excluded by --pid 9999", err)
        err = self.error("--kind", "spike", SAMPLE)
        self.assertIn("no records matched", err)
        self.assertIn("13 records read (1 cumulative, 12 delta)", err)
        err = self.error("--host", "nohost", SAMPLE)
        self.assertIn("12 excluded by --host nohost", err)
        empty = os.path.join(self.tmp, "empty.jsonl")
        with open(empty, "w") as f:
            f.write("garbage\n")
        err = self.error(empty)
        self.assertIn("no records matched: no valid records", err)
        self.assertIn(empty + ":1: skipping malformed line", err)
        err = self.error("-", stdin="")
        self.assertIn("no records matched", err)

    def test_error_bad_slice(self):
        for bad in ("10x", "0s", "-5s", "fast", ""):
            with self.subTest(slice=bad):
                err = self.error("--slice=" + bad, SAMPLE)
                self.assertIn("argument --slice: invalid duration %r" % bad, err)

    def test_error_too_many_slices(self):
        err = self.error("--slice", "1us", SAMPLE)
        self.assertIn("timeslices: error: too many slices: 12000001 slices "
                      "of 1us", err)

    def test_error_bad_field(self):
        err = self.error("--field", "walltime", SAMPLE)
        self.assertIn("argument --field: invalid choice: 'walltime'", err)

    def test_error_bad_top_and_pid(self):
        self.assertIn("must be >= 0", self.error("--top", "-1", SAMPLE))
        self.assertIn("argument --pid", self.error("--pid", "abc", SAMPLE))

    def test_error_no_files(self):
        self.assertIn("required: FILE", self.error())

    def test_lost_records_warning(self):
        err = self.ok("--field", "ncalls", OTHER).stderr
        self.assertEqual(err, "timeslices: warning: records lost (pid 5678 "
                              "on otherhost): 7 delta records missing (gaps "
                              "in seq); sums are low\n")
        self.assertNotIn("records lost", self.ok(SAMPLE).stderr)

    def test_file_given_twice(self):
        err = self.error("--field", "ncalls", SAMPLE, OTHER, SAMPLE)
        self.assertEqual(err, "timeslices: error: %s: given twice\n" % SAMPLE)
        link = self.path("link.jsonl")
        os.link(SAMPLE, link)
        err = self.error(SAMPLE, link)
        self.assertEqual(err, "timeslices: error: %s: the same file as %s, "
                              "given twice\n" % (link, SAMPLE))
        # a copy (here gzipped) is read, its records used once
        gz = toolstest.gzip_copy(SAMPLE, self.path("s.jsonl.gz"))
        want = self.ok("--field", "ncalls", SAMPLE)
        got = self.ok("--field", "ncalls", SAMPLE, gz)
        self.assertEqual(got.stdout, want.stdout.replace("1 file", "2 files"))
        self.assertIn("timeslices: warning: 12 records read more than once",
                      got.stderr)

    def test_error_unwritable_outputs(self):
        err = self.error("--csv", "/nonexistent/dir/x.csv", SAMPLE)
        self.assertIn("cannot write CSV /nonexistent/dir/x.csv", err)
        err = self.error("--png", "/nonexistent/dir/x.png", SAMPLE)
        self.assertIn("cannot write PNG /nonexistent/dir/x.png", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
