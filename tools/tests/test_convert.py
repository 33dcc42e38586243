#!/usr/bin/python3
"""Tests for tools/convert.py (records -> pstats, callgrind, speedscope).

Run:  /usr/bin/python3 tools/tests/test_convert.py   (exit status != 0 on
failure).  The callgrind_annotate checks need the Debian package
"valgrind" and are skipped without it.

Data (tools/tests/data/):
  game.jsonl     60 one-second records of a simulated game, written by
                 make_game_jsonl.py (all times are multiples of 1/1024 s, so
                 sums are exact); a "spike" record after second 45.
  sample.jsonl, other_pid.jsonl, duty.jsonl: see test_timeslices.py.
  speedscope-file-format-schema.json: the speedscope file format schema,
                 copied from the speedscope 1.25.0 npm package
                 (dist/release/file-format-schema.json, MIT licence).
Expected numbers are summed here directly from the JSON lines.
"""

import cProfile
import gzip
import io
import json
import marshal
import os
import pstats
import re
import shutil
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolstest  # noqa: E402
from toolstest import B, DATA, DUTY, GAME, OTHER, S, SAMPLE, TOOLS  # noqa: E402
import statsprof_records as sr  # noqa: E402

SCHEMA = os.path.join(DATA, "speedscope-file-format-schema.json")
SCRIPT = os.path.join(TOOLS, "convert.py")
ANNOTATE = shutil.which("callgrind_annotate")
FORMATS = ("pstats", "callgrind", "speedscope", "pprof")

FRAME = ("/srv/game/game.py", 10, "frame")
UPDATE = ("/srv/game/game.py", 30, "update")
FIND = ("/srv/game/ai.py", 42, "find_path")
EVAL = ("/srv/game/ai.py", 90, "evaluate")
SPRITE = ("/srv/game/render.py", 30, "draw_sprite")
COLLIDE = ("/srv/game/physics.py", 60, "collide")
LEN = ("~", 0, "<built-in method builtins.len>")
APPEND = ("~", 0, "<method 'append' of 'list' objects>")


def run(*args, stdin=None):
    return toolstest.run_tool(SCRIPT, args, stdin=stdin)


def label(key):
    m = re.fullmatch(r"(.*):(\d+)\((.*)\)", key)
    return (m.group(1), int(m.group(2)), m.group(3))


def expected(paths, kinds=("delta",), keep=lambda rec: True, duty=True):
    """{func: [nc, pc, tt, ct]}, {(caller, callee): [nc, pc, tt, ct]} summed
    straight from the JSON lines (complete lines only)."""
    funcs, edges = {}, {}
    for rec in toolstest.json_records(paths, kinds, keep):
        d = 1.0
        if duty:
            d = rec.get("duty") or (rec["observed_s"] / rec["interval_s"]
                                    if "observed_s" in rec else 1.0)
        for key, fp in rec["func_profiles"].items():
            nc, _, pc = fp["ncalls"].partition("/")
            a = funcs.setdefault(label(key), [0, 0, 0.0, 0.0])
            for i, v in enumerate((int(nc), int(pc or nc), fp["tottime"],
                                   fp["cumtime"])):
                a[i] += v / d
            for caller, e in fp.get("callers", {}).items():
                b = edges.setdefault((label(caller), label(key)),
                                     [0, 0, 0.0, 0.0])
                for i, v in enumerate((e["ncalls"], e["primitive_calls"],
                                       e["tottime"], e["cumtime"])):
                    b[i] += v / d
    return funcs, edges


class Tmp(toolstest.ToolTest):
    tmp_prefix = "statsprof-convert-"

    def convert(self, *args, ok=True):
        r = run(*args)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r


# ---------------------------------------------------------------------------
# pstats


class PstatsTests(Tmp):
    def load(self, *args):
        out = self.path("out.prof")
        self.convert(*args, "--to", "pstats", "-o", out)
        with open(out, "rb") as f:
            raw = marshal.load(f)
        return raw, pstats.Stats(out)

    def test_merged_game_exact(self):
        raw, st = self.load(GAME)
        funcs, edges = expected([GAME])
        self.assertEqual(len(funcs), 16)
        self.assertEqual(set(raw), set(funcs))
        for func, (nc, pc, tt, ct) in funcs.items():
            cc_, nc_, tt_, ct_, callers = st.stats[func]
            # a function is (primitive, total, tottime, cumtime, callers)
            self.assertEqual((cc_, nc_, tt_, ct_), (pc, nc, tt, ct), func)
            want = {c: tuple(v) for (c, callee), v in edges.items() if callee == func}
            # a caller edge is (total, primitive, tottime, cumtime)
            self.assertEqual(callers, want, func)
        # a few numbers spelled out (60 records, see make_game_jsonl.py)
        self.assertEqual(raw[FIND][:4], (290, 1160, 2.265625, 4.6728515625))
        self.assertEqual(raw[FIND][4][UPDATE], (290, 290, 1.1328125, 4.6728515625))
        self.assertEqual(raw[FIND][4][FIND], (870, 870, 1.1328125, 2.83203125))
        self.assertEqual(st.total_calls, sum(v[0] for v in funcs.values()))
        self.assertEqual(st.prim_calls, sum(v[1] for v in funcs.values()))
        self.assertEqual(st.total_tt, sum(v[2] for v in funcs.values()))
        # pstats can print it (callers too)
        out = io.StringIO()
        st.stream = out
        st.sort_stats("cumulative").print_stats("find_path")
        st.print_callers("find_path")
        text = out.getvalue()
        self.assertRegex(text, r"1160/290 +2\.266 +0\.002 +4\.673 +0\.016 /srv/game/ai\.py:42\(find_path\)")
        self.assertRegex(text, r"290 +1\.133 +4\.673  /srv/game/game\.py:30\(update\)")

    def test_same_shape_as_cprofile(self):
        def work(n):
            return sum(len(str(i)) for i in range(n))
        prof = cProfile.Profile()
        prof.runcall(work, 50)
        real = self.path("real.prof")
        prof.dump_stats(real)
        with open(real, "rb") as f:
            theirs = marshal.load(f)
        ours, _ = self.load(GAME)

        def shape(d):
            ftypes, etypes = set(), set()
            for k, v in d.items():
                self.assertEqual([type(x) for x in k], [str, int, str])
                ftypes.add(tuple(type(x).__name__ for x in v))
                for ck, cv in v[4].items():
                    self.assertEqual([type(x) for x in ck], [str, int, str])
                    etypes.add(tuple(type(x).__name__ for x in cv))
            return ftypes, etypes
        self.assertEqual(shape(ours), shape(theirs))
        self.assertEqual(shape(ours), ({("int", "int", "float", "float", "dict")},
                                       {("int", "int", "float", "float")}))

    def test_one_record_by_seq(self):
        raw, _ = self.load(SAMPLE, "--seq", "5")
        self.assertEqual(raw, {
            FRAME: (1, 1, 0.0625, 0.5, {}),
            ("/srv/game/render.py", 7, "draw"): (2, 2, 0.25, 0.375, {FRAME: (2, 2, 0.25, 0.375)}),
            LEN: (500, 500, 0.03125, 0.03125, {}),
            FIND: (3, 12, 0.125, 0.25, {FRAME: (12, 3, 0.125, 0.25)}),
        })

    def test_seq_errors(self):
        r = self.convert(SAMPLE, "--seq", "77", "--to", "pstats", "-o",
                         self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.decode().splitlines()[-1],
                         "convert: error: no record with seq 77 (seq 0..11)")
        r = self.convert(SAMPLE, OTHER, "--seq", "6", "--to", "pstats", "-o",
                         self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("2 records with seq 6 come from different processes "
                      "(pid 1234 on myhost, pid 5678 on otherhost)", r.stderr.decode())
        raw, _ = self.load(SAMPLE, OTHER, "--seq", "6", "--pid", "5678")
        self.assertEqual(raw[FRAME][:4], (3, 3, 0.5, 1.0))
        r = self.convert(SAMPLE, "--seq", "6", "--since", "+1s", "--to", "pstats",
                         "-o", self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--seq cannot be combined", r.stderr.decode())

    def test_time_range(self):
        # records ending in [B+30s, B+40s): seq 29..38
        keep = lambda rec: B + 30 * S <= rec["ts_ns"] < B + 40 * S  # noqa: E731
        funcs, edges = expected([GAME], keep=keep)
        for since, until in (("+30s", "+40s"),
                             ("2026-11-25T14:30:30Z", "2026-11-25T14:30:40Z"),
                             (str(B + 30 * S), "2026-11-25T15:30:40+01:00")):
            raw, _ = self.load(GAME, "--since", since, "--until", until)
            self.assertEqual({k: list(v[:4]) for k, v in raw.items()},
                             {k: [v[1], v[0], v[2], v[3]] for k, v in funcs.items()})
        self.assertEqual(raw[FIND][:4], (182, 728, 1.421875, 2.9326171875))
        r = self.convert(GAME, "--since", "+40s", "--until", "+30s", "--to",
                         "pstats", "-o", self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--until must be later than --since", r.stderr.decode())
        r = self.convert(GAME, "--since", "yesterday", "--to", "pstats", "-o",
                         self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid time 'yesterday'", r.stderr.decode())
        r = self.convert(GAME, "--since", "2030-01-01T00:00:00Z", "--to",
                         "pstats", "-o", self.path("x"), ok=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("60 outside --since/--until", r.stderr.decode())

    def test_merge_two_processes(self):
        raw, _ = self.load(SAMPLE, OTHER)
        self.assertEqual(raw[FRAME][:4], (21, 21, 0.75 + 1.5, 6.0 + 3.0))
        self.assertEqual(raw[("/srv/worker.py", 5, "work")][:4], (21, 21, 12.0, 12.0))
        raw, _ = self.load(SAMPLE, OTHER, "--host", "myhost")
        self.assertEqual(raw[FRAME][:4], (12, 12, 0.75, 6.0))

    def test_merged_processes_are_warned(self):
        r = self.convert(SAMPLE, OTHER, "--to", "pstats", "-o",
                         self.path("x"))
        warnings = [line for line in r.stderr.decode().splitlines()
                    if "profiler runs merged" in line]
        self.assertEqual(len(warnings), 1, r.stderr.decode())
        self.assertIn("2 profiler runs merged into one profile: pid 1234 on "
                      "myhost run 1 (seq 0..11, ", warnings[0])
        self.assertIn("pid 5678 on otherhost run 1", warnings[0])
        r = self.convert(SAMPLE, OTHER, "--pid", "1234", "--to", "pstats",
                         "-o", self.path("x"))
        self.assertNotIn("merged", r.stderr.decode())

    def write_runs(self, name, side_by_side=False):
        """Two profiler runs of pid 100 on host h, seq 1..5 each: the
        second restarted after the first (or, ``side_by_side``, writing
        the same file half a second later); run 1's f has 10 calls per
        record, run 2's 20."""
        def rec(seq, start, calls):
            return {"ts_ns": start + S, "start_ns": start, "interval_s": 1.0,
                    "seq": seq, "pid": 100, "host": "h", "kind": "delta",
                    "dropped": 0, "sink_errors": 0, "func_profiles": {
                        "a.py:1(f)": {"ncalls": str(calls), "tottime": 0.125,
                                      "cumtime": 0.125}}}
        second = B + (S // 2 if side_by_side else 10 * S)
        recs = ([rec(i, B + (i - 1) * S, 10) for i in range(1, 6)]
                + [rec(i, second + (i - 1) * S, 20) for i in range(1, 6)])
        recs.sort(key=lambda r: r["ts_ns"])
        with open(self.path(name), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        return self.path(name)

    def test_seq_of_two_runs_is_refused(self):
        for side in (False, True):
            path = self.write_runs("runs.jsonl", side)
            r = self.convert(path, "--seq", "3", "--to", "pstats", "-o",
                             self.path("x"), ok=False)
            err = self.one_line_error(r)
            self.assertIn("seq 3 is ambiguous in %s: 2 records with it come "
                          "from 2 profiler runs" % path, err)
            self.assertIn("pid 100 on h run 1 (seq 1..5, ", err)
            self.assertIn("pid 100 on h run 2 (seq 1..5, ", err)
            self.assertIn("choose one with --run N", err)
            self.assertFalse(os.path.exists(self.path("x")))
            for run, calls in (("1", 10), ("2", 20)):
                raw, _ = self.load(path, "--seq", "3", "--run", run)
                self.assertEqual(raw[("a.py", 1, "f")][:2], (calls, calls))
            raw, _ = self.load(path, "--run", "2")
            self.assertEqual(raw[("a.py", 1, "f")][:2], (100, 100))
        r = self.convert(path, "--run", "3", "--to", "pstats", "-o",
                         self.path("x"), ok=False)
        self.assertIn("no profiler run 3: the records read hold pid 100 on h "
                      "run 1", self.one_line_error(r))

    def test_duty_scaling(self):
        r = self.convert(DUTY, "--to", "pstats", "-o", self.path("d.prof"))
        with open(self.path("d.prof"), "rb") as f:
            raw = marshal.load(f)
        # rec0 duty .5: 3/1 -> 6/2, rec1 observed .25: 2 -> 8, rec2-3: 2 each
        self.assertEqual(raw, {FRAME: (14, 18, 1.0, 2.0, {})})
        self.assertIn("2 duty-cycled records scaled by 1/duty; call counts rounded",
                      r.stderr.decode())
        self.convert(DUTY, "--no-scale-duty", "--to", "pstats", "-o", self.path("n.prof"))
        with open(self.path("n.prof"), "rb") as f:
            raw = marshal.load(f)
        self.assertEqual(raw, {FRAME: (7, 9, 0.6875, 1.375, {})})

    def test_caller_only_functions_get_zero_entries(self):
        # drop "frame" from every record: it then appears only as a caller
        src = self.path("noframe.jsonl")
        with open(GAME) as f, open(src, "w") as out:
            for line in f:
                rec = json.loads(line)
                rec["func_profiles"].pop("/srv/game/game.py:10(frame)", None)
                out.write(json.dumps(rec) + "\n")
        raw, st = self.load(src)
        self.assertEqual(raw[FRAME], (0, 0, 0.0, 0.0, {}))
        funcs, edges = expected([GAME])
        self.assertEqual(raw[UPDATE][4], {FRAME: tuple(edges[(FRAME, UPDATE)])})
        st.stream = io.StringIO()
        st.print_callees("frame")  # pstats copes
        self.assertIn("/srv/game/game.py:30(update)", st.stream.getvalue())

    def test_stdout_and_gzip(self):
        gz = self.path("game.jsonl.gz")
        with open(GAME, "rb") as f, gzip.open(gz, "wb") as g:
            g.write(f.read())
        r = run(gz, "--to", "pstats", "-o", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        funcs, _ = expected([GAME])
        raw = marshal.loads(r.stdout)
        self.assertEqual(raw[FIND][:4], tuple([funcs[FIND][1], funcs[FIND][0]] + funcs[FIND][2:]))
        with open(GAME, "rb") as f:
            r2 = run("-", "--to", "pstats", "-o", "-", stdin=f.read())
        self.assertEqual(r2.stdout, r.stdout)


# ---------------------------------------------------------------------------
# callgrind


def parse_callgrind(text):
    """Minimal reader: {(file, fn): self}, {(file, fn, cfile, cfn): (calls,
    inclusive)}, totals.  Resolves "(id) name" compression."""
    names = {"fl": {}, "fn": {}}
    selfc, calls, totals = {}, {}, None
    cur_fl = cur_fn = cfl = cfn = None
    pending = None

    def name(kind, text):
        m = re.fullmatch(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind][m.group(1)]

    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("fl="):
            cur_fl = name("fl", line[3:])
        elif line.startswith("fn="):
            cur_fn = name("fn", line[3:])
        elif line.startswith("cfl="):
            cfl = name("fl", line[4:])
        elif line.startswith("cfn="):
            cfn = name("fn", line[4:])
        elif line.startswith("calls="):
            pending = int(line[6:].split()[0])
        elif line.startswith("totals:"):
            totals = int(line.split()[1])
        elif re.fullmatch(r"\d+ \d+", line):
            cost = int(line.split()[1])
            if pending is not None:
                calls[(cur_fl, cur_fn, cfl, cfn)] = (pending, cost)
                pending = None
            else:
                selfc[(cur_fl, cur_fn)] = selfc.get((cur_fl, cur_fn), 0) + cost
    return selfc, calls, totals


def us(seconds):
    return int(round(seconds * 1e6))


class CallgrindTests(Tmp):
    def write(self, *args):
        out = self.path("callgrind.out")
        self.convert(*args, "--to", "callgrind", "-o", out)
        with open(out) as f:
            return out, f.read()

    def test_contents_exact(self):
        out, text = self.write(GAME)
        self.assertTrue(text.startswith("# callgrind format\nversion: 1\n"))
        self.assertIn("\npositions: line\n", text)
        self.assertIn("\nevents: us\n", text)
        selfc, calls, totals = parse_callgrind(text)
        funcs, edges = expected([GAME])
        self.assertEqual(selfc, {(f[0], f[2]): us(v[2]) for f, v in funcs.items()})
        self.assertEqual(calls, {(c[0], c[2], f[0], f[2]): (v[0], us(v[3]))
                                 for (c, f), v in edges.items()})
        self.assertEqual(totals, sum(us(v[2]) for v in funcs.values()))
        self.assertEqual(selfc[("/srv/game/render.py", "draw_sprite")], 7636719)
        self.assertEqual(calls[("/srv/game/game.py", "update", "/srv/game/ai.py",
                                "find_path")], (290, 4672852))

    @unittest.skipUnless(ANNOTATE, "callgrind_annotate not installed (Debian package valgrind)")
    def test_callgrind_annotate_self_and_inclusive(self):
        out, _ = self.write(GAME)
        funcs, edges = expected([GAME])

        def annotate(*opts):
            r = subprocess.run([ANNOTATE, "--threshold=100", "--auto=no"] + list(opts) + [out],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("malformed", r.stderr)
            rows = {}
            for line in r.stdout.splitlines():
                m = re.fullmatch(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)\s*", line)
                if m:
                    rows[m.group(2)] = int(m.group(1).replace(",", ""))
            return rows

        def name(f):
            return "%s:%s" % (f[0], f[2])

        rows = annotate()
        total = sum(us(v[2]) for v in funcs.values())
        self.assertEqual(rows.pop("PROGRAM TOTALS"), total)
        self.assertEqual(rows, {name(f): us(v[2]) for f, v in funcs.items()})
        top = sorted(rows.items(), key=lambda kv: -kv[1])[:3]
        self.assertEqual(top, [("/srv/game/render.py:draw_sprite", 7636719),
                               ("/srv/game/physics.py:collide", 6740234),
                               ("/srv/game/physics.py:step", 3369141)])
        # inclusive: a called function = the sum of its incoming call
        # costs; a root (never called) = self + its outgoing call costs
        rows = annotate("--inclusive=yes")
        rows.pop("PROGRAM TOTALS")
        want = {}
        for f, v in funcs.items():
            incoming = [us(e[3]) for (c, callee), e in edges.items() if callee == f]
            if incoming:
                want[name(f)] = sum(incoming)
            else:
                want[name(f)] = us(v[2]) + sum(us(e[3]) for (c, _), e in edges.items() if c == f)
        self.assertEqual(rows, want)
        self.assertEqual(rows["/srv/game/game.py:frame"], 30475586)
        self.assertEqual(rows["/srv/game/game.py:update"], us(funcs[UPDATE][3]))
        self.assertEqual(rows["/srv/game/ai.py:evaluate"], us(funcs[EVAL][3]))

    def test_same_name_in_one_file_is_disambiguated(self):
        src = self.path("dup.jsonl")
        rec = {"ts_ns": B + S, "start_ns": B, "kind": "delta", "seq": 0, "pid": 1,
               "func_profiles": {
                   "/a.py:3(<lambda>)": {"ncalls": "2", "tottime": 0.5, "cumtime": 0.5},
                   "/a.py:9(<lambda>)": {"ncalls": "1", "tottime": 0.25, "cumtime": 0.25,
                                         "callers": {"/a.py:3(<lambda>)": {
                                             "ncalls": 1, "primitive_calls": 1,
                                             "tottime": 0.25, "cumtime": 0.25}}}}}
        with open(src, "w") as f:
            f.write(json.dumps(rec) + "\n")
        _, text = self.write(src)
        selfc, calls, totals = parse_callgrind(text)
        self.assertEqual(selfc, {("/a.py", "<lambda>:3"): 500000,
                                 ("/a.py", "<lambda>:9"): 250000})
        self.assertEqual(calls, {("/a.py", "<lambda>:3", "/a.py", "<lambda>:9"): (1, 250000)})


# ---------------------------------------------------------------------------
# speedscope


def validate(schema, value, node=None, where="$"):
    """Validate ``value`` against the subset of JSON schema (draft 7) the
    speedscope schema uses: $ref, anyOf, const, enum, type, properties,
    required, items.  Raises AssertionError naming the place."""
    node = schema if node is None else node
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/definitions/"), ref
        validate(schema, value, schema["definitions"][ref[len("#/definitions/"):]], where)
        rest = {k: v for k, v in node.items() if k not in ("$ref", "title", "$schema")}
        if rest:
            validate(schema, value, rest, where)
        return
    if "anyOf" in node:
        errors = []
        for alt in node["anyOf"]:
            try:
                validate(schema, value, alt, where)
                break
            except AssertionError as e:
                errors.append(str(e))
        else:
            raise AssertionError("%s: matches none of anyOf: %s" % (where, errors))
    t = node.get("type")
    types = {"object": dict, "array": list, "string": str, "number": (int, float)}
    if t is not None:
        ok = isinstance(value, types[t]) and not isinstance(value, bool)
        assert ok, "%s: expected %s, got %r" % (where, t, value)
    if "const" in node:
        assert value == node["const"], "%s: expected %r" % (where, node["const"])
    if "enum" in node:
        assert value in node["enum"], "%s: %r not in %r" % (where, value, node["enum"])
    for req in node.get("required", ()):
        assert req in value, "%s: missing %r" % (where, req)
    for k, sub in node.get("properties", {}).items():
        if isinstance(value, dict) and k in value:
            validate(schema, value[k], sub, "%s.%s" % (where, k))
    if "items" in node and isinstance(value, list):
        for i, v in enumerate(value):
            validate(schema, v, node["items"], "%s[%d]" % (where, i))


class SpeedscopeTests(Tmp):
    @classmethod
    def setUpClass(cls):
        with open(SCHEMA) as f:
            cls.schema = json.load(f)

    def write(self, *args):
        out = self.path("profile.speedscope.json")
        self.convert(*args, "--to", "speedscope", "-o", out)
        with open(out) as f:
            return json.load(f)

    def stacks(self, doc):
        frames = doc["shared"]["frames"]
        p = doc["profiles"][0]
        out = {}
        for s, w in zip(p["samples"], p["weights"]):
            key = tuple(frames[i]["name"] for i in s)
            self.assertNotIn(key, out)
            out[key] = w
        return out

    def test_schema_and_totals(self):
        doc = self.write(GAME)
        validate(self.schema, doc)
        # the validator does reject bad documents
        with self.assertRaises(AssertionError):
            validate(self.schema, dict(doc, profiles=[{"type": "sampled"}]))
        with self.assertRaises(AssertionError):
            validate(self.schema, dict(doc, **{"$schema": "x"}))
        self.assertEqual(doc["$schema"], "https://www.speedscope.app/file-format-schema.json")
        frames = doc["shared"]["frames"]
        self.assertEqual(len(frames), 16)
        self.assertEqual(len(doc["profiles"]), 1)
        p = doc["profiles"][0]
        self.assertEqual((p["type"], p["unit"], p["startValue"]), ("sampled", "microseconds", 0))
        self.assertEqual(len(p["samples"]), len(p["weights"]))
        for s in p["samples"]:
            self.assertTrue(s)
            for i in s:
                self.assertIsInstance(i, int)
                self.assertTrue(0 <= i < len(frames))
        for w in p["weights"]:
            self.assertIsInstance(w, int)
            self.assertGreater(w, 0)
        funcs, _ = expected([GAME])
        total = sum(us(v[2]) for v in funcs.values())
        self.assertEqual(sum(p["weights"]), total)
        self.assertEqual(p["endValue"], total)
        self.assertEqual(total, 31569336)
        # per function: the weights of the stacks ending in it add up to
        # its tottime in microseconds
        by_leaf = {}
        for s, w in zip(p["samples"], p["weights"]):
            leaf = frames[s[-1]]
            by_leaf[(leaf.get("file", "~"), leaf.get("line", 0), leaf["name"])] = \
                by_leaf.get((leaf.get("file", "~"), leaf.get("line", 0), leaf["name"]), 0) + w
        self.assertEqual(by_leaf, {f: us(v[2]) for f, v in funcs.items()})
        self.assertEqual(frames[p["samples"][0][0]], {"name": "frame", "file": "/srv/game/game.py",
                                                      "line": 10})

    def test_stacks_follow_caller_edges(self):
        doc = self.write(GAME)
        stacks = self.stacks(doc)
        funcs, edges = expected([GAME])
        # functions with a single caller chain get exactly their tottime
        self.assertEqual(stacks[("frame", "update", "step", "collide")], us(funcs[COLLIDE][2]))
        self.assertEqual(stacks[("frame", "render", "draw", "draw_sprite")], us(funcs[SPRITE][2]))
        self.assertEqual(stacks[("frame",)], us(funcs[FRAME][2]))
        self.assertEqual(stacks[("load_level",)], 156250)
        # a function with two callers is split by the callers' edge tottime
        # (each weight is that share rounded down or up)
        for path, caller in ((("frame", "update", "step", "collide"), COLLIDE),
                             (("frame", "update", "find_path", "evaluate"), EVAL)):
            exact = edges[(caller, LEN)][2] * 1e6
            self.assertLess(abs(stacks[path + (LEN[2],)] - exact), 1)
        exact = edges[(FIND, APPEND)][2] * 1e6
        self.assertLess(abs(stacks[("frame", "update", "find_path", APPEND[2])] - exact), 1)
        # recursion is not followed: find_path sits once on its stack
        self.assertEqual(stacks[("frame", "update", "find_path")], us(funcs[FIND][2]))
        self.assertEqual(len(stacks), 18)

    def test_function_without_callers_is_a_root(self):
        doc = self.write(SAMPLE, "--seq", "0")
        self.assertEqual(self.stacks(doc), {
            ("frame",): 62500, ("frame", "draw"): 250000,
            ("<built-in method builtins.len>",): 31250, ("helper",): 15625})
        validate(self.schema, doc)


# ---------------------------------------------------------------------------
# command line


class CliTests(Tmp):
    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        text = r.stdout.decode()
        for word in ("--to", "pstats", "callgrind", "speedscope", "--seq", "--since",
                     "exit status"):
            self.assertIn(word, text)

    def test_errors(self):
        out = self.path("x.prof")
        self.assertEqual(self.one_line_error(run("/nonexistent.jsonl", "--to", "pstats", "-o", out)),
                         "convert: error: /nonexistent.jsonl: no such file")
        self.assertEqual(self.one_line_error(run(self.tmp, "--to", "pstats", "-o", out)),
                         "convert: error: %s: is a directory" % self.tmp)
        garbage = self.path("garbage.jsonl")
        with open(garbage, "wb") as f:
            f.write(b"\x00\xff\xfe not json\n{\"half\": \n")
        err = self.one_line_error(run(garbage, "--to", "pstats", "-o", out))
        self.assertEqual(err, "convert: error: no valid records in the input (2 lines read)")
        empty = self.path("empty.jsonl")
        open(empty, "w").close()
        self.assertIn("no valid records", self.one_line_error(run(empty, "--to", "pstats", "-o", out)))
        self.assertIn("no such directory", self.one_line_error(
            run(GAME, "--to", "pstats", "-o", "/nonexistent/dir/x.prof")))
        self.assertIn("--pid 9", self.one_line_error(
            run(GAME, "--pid", "9", "--to", "pstats", "-o", out)))
        r = run(GAME, "--to", "xml", "-o", out)
        self.assertEqual(r.returncode, 2)
        self.assertNotIn(b"Traceback", r.stderr)
        r = run(GAME, "--to", "pstats")
        self.assertEqual(r.returncode, 2)
        self.assertFalse(os.path.exists(out))

    def test_truncated_last_line_is_skipped_with_warning(self):
        r = run(SAMPLE, "--to", "callgrind", "-o", self.path("cg"))
        self.assertEqual(r.returncode, 0)
        err = r.stderr.decode()
        self.assertIn("sample.jsonl:14: skipping incomplete last line", err)
        self.assertIn("12 records", err)
        # a .gz cut in the middle: the complete records are used
        gz = self.path("cut.jsonl.gz")
        with open(GAME, "rb") as f:
            blob = gzip.compress(f.read())
        with open(gz, "wb") as f:
            f.write(blob[:len(blob) // 2])
        r = run(gz, "--to", "pstats", "-o", self.path("p"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("compressed data ends or is corrupt", r.stderr.decode())

    def test_corrupt_records_are_skipped(self):
        bad = self.path("corrupt.jsonl")
        corrupt = toolstest.corrupt_copy(GAME, bad)
        for fmt in ("pstats", "callgrind", "speedscope", "pprof"):
            with self.subTest(fmt=fmt):
                outs = []
                for path in (GAME, bad):
                    out = self.path("out." + fmt)
                    r = self.convert(path, "--to", fmt, "-o", out)
                    with open(out, "rb") as f:
                        outs.append(re.sub(rb"\ncmd: .*\n", b"\n", f.read()))
                self.assertEqual(outs[0], outs[1])
                err = r.stderr.decode()
                self.assertEqual(err.count("skipping malformed line"), 20, err)
                self.assertIn("%d more malformed lines" % (len(corrupt) - 20),
                              err)

    def test_records_without_function_calls(self):
        idle = toolstest.idle_records(self.path("idle.jsonl"))
        empty = ("the 2 selected records hold no function calls (idle "
                 "intervals, or production mode's intervals with no window)")
        out = self.path("idle.prof")
        self.assertEqual(self.one_line_error(run(idle, "--to", "pstats",
                                                 "-o", out)),
                         "convert: error: %s: pstats.Stats cannot load an "
                         "empty profile" % empty)
        self.assertFalse(os.path.exists(out))
        for fmt in ("callgrind", "speedscope", "pprof"):
            out = self.path("idle." + fmt)
            err = self.convert(idle, "--to", fmt, "-o", out).stderr.decode()
            self.assertIn("convert: warning: %s: the %s profile is empty"
                          % (empty, fmt), err)
        with open(self.path("idle.speedscope")) as f:
            doc = json.load(f)
        with open(SCHEMA) as f:
            validate(json.load(f), doc)
        self.assertEqual(doc["profiles"][0]["samples"], [])
        if ANNOTATE:
            r = subprocess.run([ANNOTATE, self.path("idle.callgrind")],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_kinds_that_count_calls_again_are_warned(self):
        out = self.path("k.prof")
        err = self.convert(GAME, "--kind", "all", "--to", "pstats", "-o",
                           out).stderr.decode()
        self.assertIn("convert: warning: delta and spike records summed "
                      "together (60 delta, 1 spike) count the same calls "
                      "again (a spike record repeats one frame of a delta)",
                      err)
        # one record of each kind alone is right; two cumulative ones not
        for kind, seq in (("delta", "4"), ("spike", "1000")):
            err = self.convert(GAME, "--kind", "all", "--seq", seq, "--to",
                               "pstats", "-o", out).stderr.decode()
            self.assertNotIn("warning", err)
        cum = self.path("cum.jsonl")
        with open(cum, "w") as f:
            for rec in toolstest.json_records([SAMPLE], ("cumulative",)):
                for end in (rec["ts_ns"], rec["ts_ns"] + S):
                    f.write(json.dumps(dict(rec, ts_ns=end)) + "\n")
        err = self.convert(cum, "--kind", "cumulative", "--to", "pstats",
                           "-o", out).stderr.decode()
        self.assertIn("convert: warning: 2 cumulative records merged", err)
        err = self.convert(cum, "--kind", "cumulative", "--until",
                           "+6.5s", "--to", "pstats", "-o", out).stderr.decode()
        self.assertNotIn("warning", err)

    def test_key_line_number_beyond_int64(self):
        """A caller key whose line number pprof's varints cannot hold (a
        function's key too) makes its record malformed, named by file and
        line, as a line_number out of range does."""
        good = next(toolstest.json_records([GAME]))
        bad = json.loads(json.dumps(good))
        fp = next(iter(bad["func_profiles"].values()))
        fp["callers"] = {"/x.py:99999999999999999999(f)": {
            "ncalls": 1, "primitive_calls": 1, "tottime": 0.0,
            "cumtime": 0.0}}
        path = self.path("key.jsonl")
        with open(path, "w") as f:
            f.write(json.dumps(good) + "\n")
            f.write(json.dumps(dict(bad, seq=2)) + "\n")
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                err = self.convert(path, "--to", fmt, "-o",
                                   self.path("out")).stderr.decode()
                self.assertIn(
                    "convert: warning: %s:2: skipping malformed line: "
                    "func_profiles[" % path, err)
                self.assertIn('line number of "/x.py:99999999999999999999'
                              '(f)" out of range (int64)', err)
        self.assertEqual(sr.split_func_key("/a.py:%d(f)" % sr.INT64_MAX),
                         ("/a.py", sr.INT64_MAX, "f"))
        self.assertEqual(sr.split_func_key("/a.py:007(f)"), ("/a.py", 7, "f"))
        for line in (str(sr.INT64_MAX + 1), "9" * 5000):
            with self.assertRaises(ValueError):
                sr.split_func_key("/a.py:%s(f)" % line)

    def test_pipe_input(self):
        """A FIFO (as <(zcat ...) gives) reads as stdin does, gzipped or
        not; a relative --since, which reads the input twice, refuses it
        by name."""
        with open(GAME, "rb") as f:
            data = f.read()
        want = self.path("want.prof")
        self.convert(GAME, "--to", "pstats", "-o", want)
        for name, blob in (("plain", data), ("gz", gzip.compress(data))):
            with self.subTest(name=name):
                fifo = toolstest.fifo_of(self.path(name), blob)
                out = self.path(name + ".prof")
                self.convert(fifo, "--to", "pstats", "-o", out)
                with open(out, "rb") as f, open(want, "rb") as g:
                    self.assertEqual(marshal.load(f), marshal.load(g))
        fifo = toolstest.fifo_of(self.path("rel"), data)
        r = self.convert(fifo, "--since", "+1s", "--to", "pstats", "-o",
                         self.path("x"), ok=False)
        self.assertEqual(self.one_line_error(r),
                         "convert: error: a relative --since/--until "
                         "(+DURATION) reads the input twice: it needs files, "
                         "not stdin or a pipe (%s)" % fifo)
        with open(fifo, "rb"):     # lets the writer go
            pass

    def test_output_that_is_an_input_is_refused(self):
        """-o naming an input (by any name) would destroy it: refused
        before anything is read or written."""
        self.check_input_as_output_refused(SCRIPT, "convert", ["-o"],
                                           ["--to", "pstats"])

    def test_failed_write_leaves_no_partial_output(self):
        """An output that cannot be written whole (here a file size limit,
        EFBIG, as a full disk gives ENOSPC) is not left half written: a new
        one is not there, an old one is as it was, and no temporary file
        is left."""
        def limited(out):
            return toolstest.run_tool(SCRIPT, [GAME, "--to", "speedscope",
                                               "-o", out],
                                      max_file_bytes=1000)
        out = self.path("out.json")
        self.assertEqual(self.one_line_error(limited(out)),
                         "convert: error: cannot write %s: %s"
                         % (out, os.strerror(27)))     # EFBIG
        self.assertEqual(os.listdir(self.tmp), [])
        with open(out, "w") as f:
            f.write("old\n")
        os.chmod(out, 0o640)
        self.one_line_error(limited(out))
        with open(out) as f:
            self.assertEqual(f.read(), "old\n")
        self.assertEqual(os.listdir(self.tmp), ["out.json"])
        # written whole: replaced, keeping the file's mode
        self.convert(GAME, "--to", "speedscope", "-o", out)
        with open(out) as f:
            self.assertEqual(json.load(f)["exporter"], "statsprof convert.py")
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o640)
        self.assertEqual(os.listdir(self.tmp), ["out.json"])

    def test_line_longer_than_the_limit(self):
        with open(GAME, "rb") as f:
            good = f.readline()
        big = toolstest.no_newline_file(self.path("z.jsonl"), good)
        r = self.convert(big, "--to", "pstats", "-o", self.path("x"),
                         ok=False)
        self.assertEqual(
            self.one_line_error(r),
            "convert: error: %s: line 2 (byte offset %d) is longer than %d "
            "bytes, the limit (no record is that long): not a statsprof "
            "records file?" % (big, len(good), sr.MAX_LINE_BYTES))
        self.assertFalse(os.path.exists(self.path("x")))

    def test_file_name_not_utf8(self):
        name = self.path(os.fsdecode(b"game\xff.jsonl"))
        shutil.copy(GAME, name)
        out = self.path("cg")
        self.convert(name, "--to", "callgrind", "-o", out)
        with open(out, encoding="utf-8") as f:
            self.assertIn("\ncmd: %s\n" % self.path("game\ufffd.jsonl"),
                          f.read())

    def test_file_given_twice(self):
        out = self.path("x.prof")
        self.assertEqual(
            self.one_line_error(run(GAME, GAME, "--to", "pstats", "-o", out)),
            "convert: error: %s: given twice" % GAME)
        gz = toolstest.gzip_copy(GAME, self.path("g.jsonl.gz"))
        r = self.convert(GAME, gz, "--to", "pstats", "-o", out)
        self.assertIn("60 records read more than once", r.stderr.decode())
        with open(out, "rb") as f:
            got = marshal.load(f)
        self.convert(GAME, "--to", "pstats", "-o", out)
        with open(out, "rb") as f:
            self.assertEqual(got, marshal.load(f))

    def test_pprof_values_beyond_int64(self):
        # valid records (times within int64 ns) whose duty-scaled sum is not
        rec = {"ts_ns": B + S, "start_ns": B, "seq": 1, "pid": 1, "host": "h",
               "kind": "delta", "duty": 0.5, "observed_s": 0.5,
               "func_profiles": {"/a.py:1(f)": {
                   "ncalls": "1", "tottime": 1.0, "cumtime": 9e9}}}
        src, out = self.path("big.jsonl"), self.path("big.pb.gz")
        with open(src, "w") as f:
            f.write(json.dumps(rec) + "\n")
        err = self.one_line_error(run(src, "--to", "pprof", "-o", out))
        self.assertEqual(err, "convert: error: cannot write pprof: a sample of "
                              "f (2, 2000000000, 18000000000000000000) does "
                              "not fit pprof's int64")
        self.assertFalse(os.path.exists(out))
        self.convert(src, "--to", "pprof", "-o", out, "--no-scale-duty")

    def test_executable(self):
        with open(SCRIPT) as f:
            self.assertEqual(f.readline(), "#!/usr/bin/python3\n")
        self.assertTrue(os.access(SCRIPT, os.X_OK))


class UnitTests(unittest.TestCase):
    def test_parse_time(self):
        self.assertEqual(sr.parse_time("2026-11-25T14:30:05Z"), B + 5 * S)
        self.assertEqual(sr.parse_time("2026-11-25 14:30:05.25"), B + 5 * S + S // 4)
        self.assertEqual(sr.parse_time("2026-11-25T15:30:05+01:00"), B + 5 * S)
        self.assertEqual(sr.parse_time(str(B)), B)
        self.assertEqual(sr.parse_time("+90s", B), B + 90 * S)
        for bad in ("", "tomorrow", "2026-13-01T00:00:00Z", "+5s"):
            with self.assertRaises(ValueError):
                sr.parse_time(bad)

    def test_merge_records_matches_function_stats(self):
        recs = list(sr.iter_records(GAME))
        m = sr.merge_records(recs)
        self.assertEqual(m.nrecords, 60)
        self.assertEqual((m.start_ns, m.end_ns), (B, B + 60 * S))
        funcs, edges = expected([GAME])
        key = {label(k): k for k in m.labels}
        self.assertEqual({label(k): v for k, v in m.funcs.items()},
                         {k: list(v) for k, v in funcs.items()})
        self.assertEqual({(label(c), label(f)): v for (c, f), v in m.edges.items()},
                         {k: list(v) for k, v in edges.items()})
        self.assertEqual(m.labels[key[LEN]], LEN)

    def test_bad_callers_entry_skipped_with_warning(self):
        rec = {"ts_ns": 1, "kind": "delta", "seq": 4, "func_profiles": {
            "/a.py:1(f)": {"ncalls": "1", "tottime": 1.0, "cumtime": 1.0,
                           "callers": {"/a.py:2(g)": {"ncalls": "x"},
                                       "/a.py:3(h)": {"ncalls": 1, "tottime": 0.5,
                                                      "cumtime": 0.5}}}}}
        warnings = []
        edges = sr.caller_edges(rec, warn=warnings.append)
        self.assertEqual(edges, [("/a.py:3(h)", "/a.py:1(f)", 1, 1, 0.5, 0.5)])
        self.assertEqual(len(warnings), 1)
        self.assertIn("record seq 4", warnings[0])


if __name__ == "__main__":
    unittest.main(verbosity=1)
