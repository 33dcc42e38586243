#!/usr/bin/python3
"""Tests of `tools/convert.py --to pprof`, read back with Go's pprof.

Run:  bazel test //tools:pprof_test   (or /usr/bin/python3
tools/tests/test_pprof.py after `bazel build //host_examples:game_host`).
Needs `go` (Debian package golang-go, installed by tools/setup): without it
the tests FAIL, saying so.

Two sources of records:
  - real ones: the game host (//host_examples:game_host, a C program that
    embeds CPython and links statsprof) runs 30 frames with a C worker
    thread and per_thread=on, writing delta and thread records;
  - tools/tests/data/game.jsonl, sample.jsonl, other_pid.jsonl (see
    make_game_jsonl.py and test_timeslices.py), whose numbers are exact.
`go tool pprof -top` (with -sample_index=calls/tottime/cumtime), -traces,
-tags and -raw must give back the sums taken here straight from the JSON
lines: totals and every function's flat value.
"""

import gzip
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
from toolstest import B, GAME, OTHER, S, SAMPLE, TOOLS, game_host  # noqa: E402
import pprof_proto  # noqa: E402

CONVERT = os.path.join(TOOLS, "convert.py")
GO = shutil.which("go") or "/usr/bin/go"


def pprof_name(f, ln, n):
    """What convert.py names a function in pprof (re-stated here)."""
    return n if f == "~" else "%s (%s:%d)" % (n, f, ln)


def split_key(key):
    m = re.fullmatch(r"(.*):(\d+)\((.*)\)", key, re.S)
    return m.group(1), int(m.group(2)), m.group(3)


def sums(paths, kinds=("delta",), keep=lambda rec: True):
    """Straight from the JSON lines (complete lines only): {origin: {name:
    [calls, tottime, cumtime]}}, {origin: {(callee name, caller name):
    calls}} and the records' earliest start and latest end.  origin is
    (pid, host, thread_name)."""
    funcs, edges, t0, t1 = {}, {}, None, None
    for rec in toolstest.json_records(paths, kinds, keep):
        t0 = min(t0 or rec["start_ns"], rec["start_ns"])
        t1 = max(t1 or rec["ts_ns"], rec["ts_ns"])
        org = (rec.get("pid"), rec.get("host"), rec.get("thread_name"))
        fo, eo = funcs.setdefault(org, {}), edges.setdefault(org, {})
        for key, fp in rec["func_profiles"].items():
            name = pprof_name(*split_key(key))
            a = fo.setdefault(name, [0, 0.0, 0.0])
            a[0] += int(fp["ncalls"].partition("/")[0])
            a[1] += fp["tottime"]
            a[2] += fp["cumtime"]
            for caller, e in fp.get("callers", {}).items():
                k = (name, pprof_name(*split_key(caller)))
                eo[k] = eo.get(k, 0) + e["ncalls"]
    return funcs, edges, t0, t1


def expected_flat(funcs):
    """{name: (calls, tottime ns, cumtime ns)} summed over origins, each
    origin's sums rounded to whole ns as the converter does."""
    out = {}
    for fo in funcs.values():
        for name, (nc, tt, ct) in fo.items():
            a = out.setdefault(name, [0, 0, 0])
            a[0] += nc
            a[1] += round(tt * 1e9)
            a[2] += round(ct * 1e9)
    return {k: tuple(v) for k, v in out.items()}


def profile_fields(path):
    """The top-level fields of a gzipped profile file, as a dict."""
    with open(path, "rb") as f:
        return dict(decode_fields(gzip.decompress(f.read())))


def decode_fields(data):
    """The top-level fields of a protobuf message: list of (field, value),
    value an int (varint) or bytes (length-delimited).  Independent of
    pprof_proto, to check it."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = n = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n
    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 2:
            n = varint()
            out.append((field, data[i:i + n]))
            i += n
        else:
            raise AssertionError("unexpected wire type %d" % wire)
    return out


class PprofTest(toolstest.ToolTest):
    tmp_prefix = "statsprof-pprof-"

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(GO):
            raise AssertionError("%s not found: install the Debian package golang-go "
                                 "(tools/setup does) for `go tool pprof`" % GO)
        cls.gohome = tempfile.TemporaryDirectory(prefix="statsprof-gohome-")

    @classmethod
    def tearDownClass(cls):
        cls.gohome.cleanup()

    def convert(self, *args, out="prof.pb.gz"):
        out = self.path(out)
        r = toolstest.run_tool(CONVERT, list(args) + ["--to", "pprof", "-o", out])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return out

    def pprof(self, *args):
        """stdout of `go tool pprof ARGS`; offline, with HOME and the Go
        caches in a temporary directory (the Bazel sandbox has no HOME)."""
        home = self.gohome.name
        env = dict(os.environ, HOME=home, GOCACHE=os.path.join(home, "cache"),
                   GOPATH=os.path.join(home, "go"), PPROF_TMPDIR=home,
                   GOPROXY="off", GOTOOLCHAIN="local")
        r = subprocess.run([GO, "tool", "pprof"] + list(args), capture_output=True,
                           text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def top(self, path, index, *more):
        """(total, {name: flat}) of `go tool pprof -top`, every node kept;
        times in whole ns.  With a filter (-tagfocus) the total is what the
        shown nodes account for (pprof's "Total samples" stays the whole
        profile's)."""
        unit = [] if index == "calls" else ["-unit=ns"]
        text = self.pprof("-top", "-sample_index=" + index, "-nodefraction=0",
                          "-nodecount=100000", *unit, *more, path)
        self.assertIn("Type: %s\n" % index, text)
        m = re.search(r"\nShowing nodes accounting for (\d+)(?:ns)?, [\d.]+% of "
                      r"(\d+)(?:ns)? total\n", text)
        self.assertIsNotNone(m, text)
        shown, total = int(m.group(1)), int(m.group(2))
        self.assertIn("Total samples = %d" % total, text)
        rows = {}
        head = text.index("      flat  flat%")
        for line in text[head:].splitlines()[1:]:
            m = re.fullmatch(r"\s*(\d+)(?:ns)? +\S+% +\S+% +(\d+)(?:ns)? +\S+% +(.*)", line)
            self.assertIsNotNone(m, line)
            self.assertNotIn(m.group(3), rows)
            rows[m.group(3)] = int(m.group(1))
        self.assertEqual(shown, sum(rows.values()))
        return (shown if more else total), rows

    def traces(self, path, index, *more):
        """Samples of `go tool pprof -traces`: list of (labels dict,
        [frame names, leaf first], value text)."""
        text = self.pprof("-traces", "-sample_index=" + index, *more, path)
        out = []
        for block in text.split("-----------+-------------------------------------------------------\n")[1:]:
            if not block:
                continue          # after the last sample's separator
            labels, frames, value = {}, [], None
            for line in block.splitlines():
                label = re.fullmatch(r" *(\w+):  (.*)", line)
                if frames:
                    self.assertEqual(line[:13], " " * 13, line)
                    frames.append(line[13:])
                elif label:
                    labels[label.group(1)] = label.group(2)
                else:           # "%10s   %s": the value, then the leaf
                    m = re.fullmatch(r" *(\S+)   (.*)", line)
                    self.assertIsNotNone(m, line)
                    value = m.group(1)
                    frames.append(m.group(2))
            out.append((labels, frames, value))
        return out

    def assert_flat_equals_records(self, path, funcs):
        """calls, tottime and cumtime: every function's flat value and the
        calls and tottime totals equal the records' sums."""
        want = expected_flat(funcs)
        for i, index in enumerate(("calls", "tottime", "cumtime")):
            total, rows = self.top(path, index)
            self.assertEqual(rows, {k: v[i] for k, v in want.items() if v[i]}, index)
            self.assertEqual(total, sum(v[i] for v in want.values()), index)
        return want

    def assert_pairs_are_recorded_edges(self, path, edges):
        """Every sample is one function or a recorded caller->callee pair,
        and the pairs' calls are the edges' calls."""
        got = {}
        for labels, frames, value in self.traces(path, "calls"):
            self.assertIn(len(frames), (1, 2), frames)
            if len(frames) == 2:
                org = (int(labels["pid"]), labels["host"], labels.get("thread"))
                k = (org, frames[0], frames[1])
                self.assertNotIn(k, got)
                got[k] = int(value)
        want = {(org,) + e: n for org, eo in edges.items() for e, n in eo.items() if n}
        self.assertEqual(got, want)


class FromTheGameHost(PprofTest):
    """Records written by statsprof itself, in the game host."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.TemporaryDirectory(prefix="statsprof-pprof-game-")
        cls.jsonl = os.path.join(cls.dir.name, "game.jsonl")
        host = game_host()
        r = subprocess.run(
            [host, "--frames", "30", "--no-sleep", "--workers", "1", "--profile",
             "interval=100ms;per_thread=on;sink=jsonl:" + cls.jsonl],
            capture_output=True, text=True, cwd=cls.dir.name, timeout=240,
            env={k: v for k, v in os.environ.items() if k != "STATSPROF"})
        if r.returncode != 0:
            raise AssertionError("%s exited %d: %s" % (host, r.returncode, r.stderr))

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()
        super().tearDownClass()

    def test_delta_records(self):
        path = self.convert(self.jsonl)
        funcs, edges, t0, t1 = sums([self.jsonl])
        self.assertEqual(len(funcs), 1)               # one process
        want = self.assert_flat_equals_records(path, funcs)
        self.assertGreater(len(want), 50)
        self.assert_pairs_are_recorded_edges(path, edges)
        # list comprehensions keep their name, qualified with file:line
        top = self.pprof("-top", "-nodefraction=0", "-nodecount=100000", path)
        self.assertNotIn("<unknown>", top)
        self.assertRegex(top, r"<listcomp> \(/\S+/host_examples/game/\w+\.py:\d+\)\n")
        self.assertIn("<built-in method builtins.len>\n", top)
        # the profile's time and duration are the records' span
        raw = self.pprof("-raw", path)
        m = re.search(r"\nTime: (\S+) (\d\d):(\d\d):(\d\d)\.?(\d*) \+0000 UTC\n", raw)
        self.assertIsNotNone(m, raw[:400])
        ns = (int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4))) * S \
            + int(m.group(5).ljust(9, "0"))
        self.assertEqual(ns, t0 % (86400 * S))
        fields = profile_fields(path)
        self.assertEqual((fields[9], fields[10]), (t0, t1 - t0))

    def test_thread_records_are_labelled_by_thread(self):
        path = self.convert(self.jsonl, "--kind", "thread")
        funcs, edges, _, _ = sums([self.jsonl], kinds=("thread",))
        self.assertEqual(sorted(org[2] for org in funcs), ["MainThread", "worker-1"])
        self.assert_flat_equals_records(path, funcs)
        self.assert_pairs_are_recorded_edges(path, edges)
        for org, fo in funcs.items():
            total, rows = self.top(path, "tottime", "-tagfocus=thread=^%s$" % org[2])
            self.assertEqual(total, sum(round(v[1] * 1e9) for v in fo.values()), org)
            total, rows = self.top(path, "calls", "-tagfocus=thread=^%s$" % org[2])
            self.assertEqual(total, sum(v[0] for v in fo.values()), org)
        self.assertIn("bake_cost_map (", " ".join(rows))   # the worker's job
        tags = self.pprof("-tags", path)
        for key in ("pid", "host", "thread", "thread_id"):
            self.assertRegex(tags, r"(?m)^ %s: Total " % key)


class FromTestData(PprofTest):
    """The checked-in records, whose numbers are exact."""

    def test_game_jsonl_exact(self):
        path = self.convert(GAME)
        funcs, edges, t0, t1 = sums([GAME])
        want = self.assert_flat_equals_records(path, funcs)
        self.assert_pairs_are_recorded_edges(path, edges)
        self.assertEqual(want["find_path (/srv/game/ai.py:42)"],
                         (1160, 2265625000, 4672851562))
        total, rows = self.top(path, "tottime")
        self.assertEqual(total, 31569335937)          # 31.569336 s, as speedscope's total
        # the one flame graph pprof can draw: a caller, its callees' own time
        stacks = {}
        for labels, frames, value in self.traces(path, "tottime", "-unit=ns"):
            self.assertEqual(labels, {"pid": "4242", "host": "gamebox"})
            stacks[tuple(frames)] = value
        self.assertEqual(stacks[("find_path (/srv/game/ai.py:42)",
                                 "update (/srv/game/game.py:30)")], "1132812500ns")
        self.assertEqual(stacks[("find_path (/srv/game/ai.py:42)",
                                 "find_path (/srv/game/ai.py:42)")], "1132812500ns")
        # a function with no recorded caller keeps its own time in one frame
        self.assertEqual(stacks[("frame (/srv/game/game.py:10)",)], "898437500ns")
        self.assertEqual(stacks[("load_level (/srv/game/game.py:80)",)], "156250000ns")
        self.assertEqual((t0, t1), (B, B + 60 * S))

    def test_two_processes_are_labelled(self):
        path = self.convert(SAMPLE, OTHER)
        funcs, edges, _, _ = sums([SAMPLE, OTHER])
        self.assertEqual(sorted(funcs), [(1234, "myhost", None), (5678, "otherhost", None)])
        self.assert_flat_equals_records(path, funcs)
        self.assert_pairs_are_recorded_edges(path, edges)
        total, rows = self.top(path, "tottime", "-tagfocus=pid=5678")
        self.assertEqual(rows["work (/srv/worker.py:5)"], 12 * S)
        self.assertEqual(total, sum(round(v[1] * 1e9) for v in funcs[(5678, "otherhost", None)].values()))
        total, _ = self.top(path, "calls", "-tagfocus=host=^myhost$")
        self.assertEqual(total, sum(v[0] for v in funcs[(1234, "myhost", None)].values()))

    def test_one_record_and_a_time_range(self):
        path = self.convert(SAMPLE, "--seq", "5")
        total, rows = self.top(path, "calls")
        self.assertEqual(rows, {"frame (/srv/game/game.py:10)": 1, "draw (/srv/game/render.py:7)": 2,
                                "<built-in method builtins.len>": 500,
                                "find_path (/srv/game/ai.py:42)": 12})
        keep = lambda rec: B + 30 * S <= rec["ts_ns"] < B + 40 * S  # noqa: E731
        path = self.convert(GAME, "--since", "+30s", "--until", "+40s", out="range.pb.gz")
        funcs, _, t0, t1 = sums([GAME], keep=keep)
        self.assert_flat_equals_records(path, funcs)
        fields = profile_fields(path)
        self.assertEqual((fields[9], fields[10]), (B + 29 * S, 10 * S))

    def test_duty_cycled_records_are_scaled(self):
        path = self.convert(os.path.join(toolstest.DATA, "duty.jsonl"))
        total, rows = self.top(path, "calls")
        self.assertEqual(rows, {"frame (/srv/game/game.py:10)": 18})   # as --to pstats
        total, rows = self.top(path, "tottime")
        self.assertEqual(total, S)
        self.assertIn("duty-cycled records scaled by 1/duty", self.pprof("-comments", path))

    def test_stdout_gives_the_same_bytes(self):
        r = toolstest.run_tool(CONVERT, [GAME, "--to", "pprof", "-o", "-"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout[:2], b"\x1f\x8b")
        with open(self.convert(GAME), "rb") as f:
            self.assertEqual(f.read(), r.stdout)      # same bytes every time


class EncoderTest(unittest.TestCase):
    def test_varints(self):
        enc = pprof_proto.encode_varint
        self.assertEqual(enc(0), b"\x00")
        self.assertEqual(enc(1), b"\x01")
        self.assertEqual(enc(150), b"\x96\x01")
        self.assertEqual(enc(2**63 - 1), b"\xff" * 8 + b"\x7f")
        self.assertEqual(enc(-1), b"\xff" * 9 + b"\x01")
        for bad in (2**64, -2**63 - 1):
            with self.assertRaises(ValueError):
                enc(bad)

    def test_message_layout(self):
        p = pprof_proto.Profile([("calls", "count")], "calls", time_nanos=5,
                                duration_nanos=7)
        loc = p.location(p.function("f (/a.py:3)", "/a.py", 3, system_name="/a.py:3(f)"), 3)
        p.sample([loc], [4], [("pid", None, 9, None), ("host", "h", 0, None)])
        with self.assertRaises(ValueError):
            p.sample([loc], [1, 2])
        fields = decode_fields(p.encode())
        strings = [v.decode() for f, v in fields if f == 6]
        self.assertEqual(strings[0], "")
        self.assertEqual(len(strings), len(set(strings)))
        one = {f: v for f, v in fields if f != 6}
        self.assertEqual((one[9], one[10], strings[one[14]]), (5, 7, "calls"))
        vt = dict(decode_fields(one[1]))
        self.assertEqual((strings[vt[1]], strings[vt[2]]), ("calls", "count"))
        sample = decode_fields(one[2])
        self.assertEqual(sample[:2], [(1, b"\x01"), (2, b"\x04")])   # packed
        labels = [dict(decode_fields(v)) for f, v in sample[2:]]
        self.assertEqual([(strings[lab[1]], lab.get(3), strings[lab.get(2, 0)]) for lab in labels],
                         [("pid", 9, ""), ("host", None, "h")])
        func = dict(decode_fields(one[5]))
        self.assertEqual((func[1], strings[func[2]], strings[func[3]], strings[func[4]], func[5]),
                         (1, "f (/a.py:3)", "/a.py:3(f)", "/a.py", 3))
        location = decode_fields(one[4])
        self.assertEqual(location[:2], [(1, 1), (2, 1)])
        self.assertEqual(dict(decode_fields(location[2][1])), {1: 1, 2: 3})


if __name__ == "__main__":
    unittest.main(verbosity=2)
