#!/usr/bin/python3
"""Tests for tools/report.py (the HTML report), without a browser.

Run:  /usr/bin/python3 tools/tests/test_report.py   (exit status != 0 on
failure).  report_browser_test.py drives the page itself in Chromium.

The page embeds all its numbers as JSON (<script id="data">); these tests
read that JSON back and compare it with sums computed here directly from
the JSON lines (a record goes into the slice holding the middle of its
interval).  Data: tools/tests/data/game.jsonl
(see make_game_jsonl.py), sample.jsonl, other_pid.jsonl, duty.jsonl (see
test_timeslices.py).

BigInputTests write synthetic inputs with write_synthetic() below (3,600
one-second records of a host with 2,000 functions; and a day-long range)
into a temp dir, time report.py on them and check the HTML size; the
numbers are printed.  Run them alone with
    /usr/bin/python3 tools/tests/test_report.py BigInputTests
"""

import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolstest  # noqa: E402
from toolstest import B, DATA, DUTY, GAME, OTHER, S, SAMPLE, TOOLS  # noqa: E402
sys.path.insert(0, DATA)
import statsprof_records as sr  # noqa: E402
import make_game_jsonl  # noqa: E402

SCRIPT = os.path.join(TOOLS, "report.py")

FRAME = "/srv/game/game.py:10(frame)"
UPDATE = "/srv/game/game.py:30(update)"
FIND = "/srv/game/ai.py:42(find_path)"
APPEND = "~:0(<method 'append' of 'list' objects>)"
SPRITE = "/srv/game/render.py:30(draw_sprite)"


def run(*args, stdin=None):
    return toolstest.run_tool(SCRIPT, args, stdin=stdin, timeout=600)


def page_data(path):
    with open(path, encoding="utf-8") as f:
        html = f.read()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>',
                  html, re.S)
    return json.loads(m.group(1)), html


def rows_of(d, data):
    """{key: [nc, pc, tt, ct]} of a slice/whole-range entry."""
    keys = [f[4] for f in data["funcs"]]
    r = d["r"]
    return {keys[r[i]]: r[i + 1:i + 5] for i in range(0, len(r), 5)}


def edges_of(d, data):
    keys = [f[4] for f in data["funcs"]]
    e = d["e"]
    return {(keys[e[i]], keys[e[i + 1]]): e[i + 2:i + 6] for i in range(0, len(e), 6)}


def sums(paths, slice_ns=None, t0=None, kinds=("delta",), keep=lambda r: True):
    """Straight sums from the JSON lines: {slice index or -1 (whole):
    (funcs {key: [nc, pc, tt, ct]}, edges, nrecords)}.  Slices start at
    the earliest record's start; a record goes into the one that holds the
    middle of its interval."""
    recs = list(toolstest.json_records(paths, kinds, keep))
    if t0 is None:
        t0 = min(r["start_ns"] for r in recs)
    out = {}
    for r in recs:
        mid = (r["start_ns"] + r["ts_ns"]) // 2
        idxs = [-1] + ([(mid - t0) // slice_ns] if slice_ns else [])
        for idx in idxs:
            funcs, edges, n = out.setdefault(idx, ({}, {}, [0]))
            n[0] += 1
            for key, fp in r["func_profiles"].items():
                nc, _, pc = fp["ncalls"].partition("/")
                a = funcs.setdefault(key, [0, 0, 0.0, 0.0])
                for i, v in enumerate((int(nc), int(pc or nc), fp["tottime"], fp["cumtime"])):
                    a[i] += v
                for c, e in fp.get("callers", {}).items():
                    b = edges.setdefault((c, key), [0, 0, 0.0, 0.0])
                    for i, v in enumerate((e["ncalls"], e["primitive_calls"], e["tottime"],
                                           e["cumtime"])):
                        b[i] += v
    return {k: (f, e, n[0]) for k, (f, e, n) in out.items()}


FIELD_INDEX = {"ncalls": 0, "tottime": 2, "cumtime": 3}


def series(paths, slice_ns, field, top_n=10):
    """The chart's columns computed plainly: the ``top_n`` functions by
    their total, largest first (ties by key), then the rest ("other"), one
    value per slice; times rounded to the µs as the page stores them."""
    per = sums(paths, slice_ns)
    n = max(per) + 1
    i = FIELD_INDEX[field]
    table = {}
    for idx, (funcs, _, _) in per.items():
        for key, v in funcs.items():
            if idx >= 0:
                table.setdefault(key, [0] * n)[idx] += v[i]
    top = sorted(table, key=lambda k: (-sum(table[k]), k))[:top_n]
    cols = [table[k] for k in top]
    cols.append([sum(table[k][j] for k in table if k not in top) for j in range(n)])
    if field != "ncalls":
        cols = [[round(v, 6) for v in col] for col in cols]
    return top, cols


def rounded(d):
    """Values as the page stores them: counts as they are, times to the µs."""
    return {k: [v[0], v[1], round(v[2], 6), round(v[3], 6)] for k, v in d.items()}


def write_synthetic(path, nrec, nfuncs, per_record, hot=100, spacing_s=1):
    """Write ``nrec`` delta records of 1 s, one every ``spacing_s`` seconds,
    from a program with ``nfuncs`` functions (function i is called by
    function (i-1)//3).  Each record holds the ``hot`` first functions and
    a window of ``per_record - hot`` others that moves by 37 per record,
    so over time every function appears.  In record ``seq`` function i has
    ncalls (i % 7) + 1 + (seq % 3), tottime ((seq*7919 + i*104729) % 1000
    + 1) us and cumtime twice that.  Returns the file size."""
    names = []
    for i in range(nfuncs):
        f = "/srv/app/pkg%02d/mod%02d.py" % (i % 23, i % 17)
        line = 10 + (i * 7) % 900
        names.append(("%s:%d(func_%04d)" % (f, line, i), f, line, "func_%04d" % i))
    jkeys = [json.dumps(n[0]) for n in names]
    tails = ['"file_name":%s,"line_number":%d,"function_name":%s'
             % (json.dumps(f), line, json.dumps(name)) for _k, f, line, name in names]
    others = nfuncs - hot
    with open(path, "w") as out:
        for seq in range(nrec):
            first = (seq * 37) % others
            active = list(range(hot)) + [hot + (first + j) % others
                                         for j in range(per_record - hot)]
            parts = []
            total = 0.0
            for i in active:
                nc = (i % 7) + 1 + (seq % 3)
                tt = ((seq * 7919 + i * 104729) % 1000 + 1) * 1e-6
                ct = tt * 2
                total += tt
                callers = ""
                if i:
                    callers = ('%s:{"ncalls":%d,"primitive_calls":%d,"tottime":%r,'
                               '"cumtime":%r}' % (jkeys[(i - 1) // 3], nc, nc, tt, ct))
                parts.append(
                    '%s:{"ncalls":"%d","tottime":%r,"percall_tottime":%r,"cumtime":%r,'
                    '"percall_cumtime":%r,%s,"primitive_calls":%d,"callers":{%s}}'
                    % (jkeys[i], nc, tt, tt / nc, ct, ct / nc, tails[i], nc, callers))
            end = B + seq * spacing_s * S + S
            out.write(
                '{"ts":"%s","ts_ns":%d,"start_ns":%d,"interval_s":1.0,"seq":%d,'
                '"pid":77,"host":"big","kind":"delta","dropped":0,"sink_errors":0,'
                '"overflow_functions":0,"total_tt":%r,"func_profiles":{%s}}\n'
                % (sr.ns_to_iso(end), end, end - S, seq, total, ",".join(parts)))
    return os.path.getsize(path)


class Tmp(toolstest.ToolTest):
    tmp_prefix = "statsprof-report-"

    def report(self, *args, ok=True, stdin=None):
        out = os.path.join(self.tmp, "r.html")
        r = run(*args, "-o", out, stdin=stdin)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            data, html = page_data(out)
            return data, html, r
        return r


# ---------------------------------------------------------------------------


class GameDataTests(Tmp):
    """report.py game.jsonl --slice 10s, numbers checked against plain sums."""

    @classmethod
    def setUpClass(cls):
        cls._ctmp = tempfile.TemporaryDirectory(prefix="statsprof-report-")
        out = os.path.join(cls._ctmp.name, "game.html")
        r = run(GAME, "--slice", "10s", "-o", out)
        assert r.returncode == 0, r.stderr
        cls.stderr = r.stderr.decode()
        cls.data, cls.html = page_data(out)
        cls.keys = [f[4] for f in cls.data["funcs"]]

    @classmethod
    def tearDownClass(cls):
        cls._ctmp.cleanup()

    def width(self, label):
        return next(w for w in self.data["widths"] if w["label"] == label)

    def test_checked_in_data_is_the_generator_output(self):
        import io
        buf = io.StringIO()
        make_game_jsonl.main(buf)
        with open(GAME) as f:
            self.assertEqual(f.read(), buf.getvalue())

    def test_header(self):
        d = self.data
        self.assertEqual((d["nrec"], d["pids"], d["hosts"], d["kinds"]),
                         (60, ["4242"], ["gamebox"], ["delta"]))
        self.assertEqual((d["t0"], d["end"], d["range_s"]),
                         ("2026-11-25T14:30:00.000000Z", "2026-11-25T14:31:00.000000Z", 60.0))
        # one minute of 1 s records: 60 slices of 1 s, 6 of 10 s; one of
        # 1 m is not offered
        self.assertEqual([w["label"] for w in d["widths"]], ["1s", "10s"])
        self.assertEqual([w["n"] for w in d["widths"]], [60, 6])
        self.assertEqual(d["end_ms"], (B + 60 * S) / 1e6)
        self.assertEqual(d["initial"], {"width": 1, "field": "tottime"})
        self.assertEqual(len(self.keys), 16)
        self.assertEqual(self.data["funcs"][self.keys.index(FIND)],
                         ["/srv/game/ai.py", 42, "find_path", "find_path (ai.py:42)", FIND])
        self.assertIn("wrote", self.stderr)

    def test_series_equal_plain_sums(self):
        for label in ("1s", "10s"):
            w = self.width(label)
            for field in sr.FIELDS:
                top, want = series([GAME], int(w["ns"]), field)
                self.assertEqual([self.keys[i] for i in self.data["top"][field]], top)
                self.assertEqual(w["series"][field], want, (label, field))
        # draw_sprite: a loading second (0-4, no sprites) then 60 fps seconds
        self.assertEqual(self.width("10s")["series"]["tottime"][0], [0.996094] + [1.328125] * 5)
        # each 1 s record is in the 1 s slice it covers: none is empty
        self.assertEqual([d["k"] for d in self.width("1s")["slices"]], [1] * 60)
        self.assertEqual([d["k"] for d in self.width("10s")["slices"]], [10] * 6)

    def test_slice_tables_and_edges_exact(self):
        for label, ns in (("1s", S), ("10s", 10 * S)):
            want = sums([GAME], ns)
            w = self.width(label)
            for i, d in enumerate(w["slices"]):
                if i not in want:
                    self.assertEqual(d, 0)
                    continue
                funcs, edges, n = want[i]
                self.assertEqual(d["k"], n)
                self.assertEqual(d["n"], len(funcs))
                self.assertEqual(rows_of(d, self.data), rounded(funcs), (label, i))
                self.assertEqual(edges_of(d, self.data), rounded(edges), (label, i))
                self.assertNotIn("ecut", d)
        d = self.width("10s")["slices"][3]   # 14:30:30-14:30:40, the AI burst
        self.assertEqual(rows_of(d, self.data)[FIND], [800, 200, 1.5625, 3.222656])
        self.assertEqual(edges_of(d, self.data)[(UPDATE, FIND)], [200, 200, 0.78125, 3.222656])

    def test_whole_range(self):
        funcs, edges, n = sums([GAME])[-1]
        a = self.data["all"]
        self.assertEqual((a["k"], a["n"]), (60, 16))
        self.assertEqual(rows_of(a, self.data), rounded(funcs))
        self.assertEqual(edges_of(a, self.data), rounded(edges))
        self.assertEqual(rows_of(a, self.data)[SPRITE], [136000, 136000, 7.636719, 8.085938])

    def test_self_contained(self):
        html = self.html
        self.assertTrue(html.startswith("<!DOCTYPE html>"))
        self.assertEqual(re.findall(r"https?://[^\s\"'<>]+", html), ["http://www.w3.org/2000/svg"])
        for bad in ("<link", " src=", "@import", "fetch(", "XMLHttpRequest", "import("):
            self.assertNotIn(bad, html)
        self.assertEqual(html.count("<script"), 2)
        self.assertEqual(html.count("</script>"), 2)


class OptionTests(Tmp):
    def test_pid_host_and_kind_filters(self):
        data, _, _ = self.report(SAMPLE, OTHER, "--pid", "5678")
        self.assertEqual(sorted(f[4] for f in data["funcs"]),
                         ["/srv/game/game.py:10(frame)", "/srv/worker.py:5(work)"])
        self.assertEqual(rows_of(data["all"], data)["/srv/worker.py:5(work)"], [21, 21, 12.0, 12.0])
        data, _, _ = self.report(SAMPLE, OTHER, "--host", "myhost")
        self.assertEqual(data["nrec"], 12)
        data, _, r = self.report(GAME, "--kind", "spike")
        self.assertEqual((data["nrec"], data["kinds"]), (1, ["spike"]))
        self.assertEqual(rows_of(data["all"], data),
                         {"~:0(<built-in method gc.collect>)": [1, 1, 0.195312, 0.195312]})
        self.assertNotIn("warning", r.stderr.decode())

    def test_kinds_that_count_calls_again_are_warned(self):
        data, _, r = self.report(GAME, "--kind", "all")
        self.assertEqual(data["kinds"], ["delta", "spike"])
        self.assertIn("report: warning: delta and spike records summed "
                      "together (60 delta, 1 spike) count the same calls "
                      "again", r.stderr.decode())
        _, _, r = self.report(SAMPLE, "--kind", "cumulative")
        self.assertIn("report: warning: cumulative records hold running "
                      "totals", r.stderr.decode())

    def test_duty_scaling(self):
        data, _, _ = self.report(DUTY)
        self.assertEqual(data["duty"], 2)
        # rec0 duty .5: 3/1 -> 6/2, rec1 observed .25: 2 -> 8, rec2-3: 2 each
        self.assertEqual(rows_of(data["all"], data), {FRAME: [18, 14, 1.0, 2.0]})
        self.assertEqual(data["widths"][0]["series"]["ncalls"][0], [6, 8, 2, 2])
        data, _, _ = self.report(DUTY, "--no-scale-duty")
        self.assertEqual(data["duty"], 0)
        self.assertEqual(rows_of(data["all"], data), {FRAME: [9, 7, 0.6875, 1.375]})

    def test_truncated_last_line_warning(self):
        data, _, r = self.report(SAMPLE)
        self.assertIn("sample.jsonl:14: skipping incomplete last line", r.stderr.decode())
        self.assertEqual((data["nrec"], data["malformed"]), (12, 1))

    def test_corrupt_records_are_skipped(self):
        bad = self.path("corrupt.jsonl")
        corrupt = toolstest.corrupt_copy(GAME, bad)
        ref, _, _ = self.report(GAME)
        data, _, r = self.report(bad)
        for k in ("nrec", "all", "widths", "funcs"):
            self.assertEqual(data[k], ref[k], k)
        self.assertEqual(data["malformed"], len(corrupt))
        self.assertIn("40 more malformed lines", r.stderr.decode())

    def test_records_read_twice_are_used_once(self):
        r = self.report(GAME, GAME, ok=False)
        self.assertEqual(self.one_line_error(r),
                         "report: error: %s: given twice" % GAME)
        ref, _, _ = self.report(GAME)
        with open(GAME, "rb") as f:
            data, _, r = self.report(GAME, "-", stdin=f.read())
        self.assertEqual((data["nrec"], data["widths"]),
                         (ref["nrec"], ref["widths"]))
        self.assertIn("60 records read more than once", r.stderr.decode())

    def test_file_name_not_utf8(self):
        name = self.path(os.fsdecode(b"game\xff.jsonl"))
        shutil.copy(GAME, name)
        data, html, _ = self.report(name, "--title", os.fsdecode(b"t\xfe"))
        self.assertEqual(data["files"], [self.path("game\ufffd.jsonl")])
        self.assertEqual(data["title"], "t\ufffd")
        self.assertIn("<title>t\ufffd</title>", html)

    def test_stdin_and_gzip_give_the_same_numbers(self):
        ref, _, _ = self.report(GAME)
        gz = os.path.join(self.tmp, "g.jsonl.gz")
        with open(GAME, "rb") as f, gzip.open(gz, "wb") as g:
            g.write(f.read())
        data, _, _ = self.report(gz)
        self.assertEqual(data["widths"], ref["widths"])
        with open(GAME, "rb") as f:
            data, _, _ = self.report("-", stdin=f.read())
        self.assertEqual(data["widths"], ref["widths"])
        self.assertEqual(data["files"], ["-"])

    def test_time_range(self):
        data, _, _ = self.report(GAME, "--since", "+30s", "--until", "+40s")
        funcs, edges, n = sums([GAME], keep=lambda r: B + 30 * S <= r["ts_ns"] < B + 40 * S)[-1]
        self.assertEqual(data["nrec"], 10)
        self.assertEqual(rows_of(data["all"], data), rounded(funcs))
        data2, _, _ = self.report(GAME, "--since", "2026-11-25T14:30:30Z",
                                  "--until", "2026-11-25T14:30:40Z")
        self.assertEqual(data2["all"], data["all"])

    def test_table_row_limit_interleaves_fields(self):
        data, _, _ = self.report(GAME, "--table-rows", "3")
        w = data["widths"][1]
        self.assertEqual((w["label"], w["rows"]), ("10s", 3))
        d = w["slices"][3]
        # the largest by cumtime, tottime and ncalls: frame, find_path, append
        self.assertEqual(list(rows_of(d, data)), [FRAME, FIND, APPEND])
        self.assertEqual(d["n"], 12)
        edges = edges_of(d, data)
        self.assertEqual(len(edges), 6)
        self.assertEqual(d["ecut"], 1)
        funcs, all_edges, _ = sums([GAME], 10 * S)[3]
        touching = sorted(((k, v) for k, v in all_edges.items()
                           if k[0] in (FRAME, FIND, APPEND) or k[1] in (FRAME, FIND, APPEND)),
                          key=lambda kv: -kv[1][3])
        self.assertEqual(set(edges), {k for k, _ in touching[:6]})
        # the whole range still lists every function
        self.assertEqual(data["all"]["n"], 16)
        self.assertEqual(len(rows_of(data["all"], data)), 16)

    def test_row_budget_spread_over_widths(self):
        data, _, _ = self.report(GAME, "--max-table-entries", "300", "--table-rows", "50")
        rows = {w["label"]: w["rows"] for w in data["widths"]}
        # coarsest first, each width a fair share of what is left: 10s (6
        # slices) 300/2 -> 25 each; 1s (60 slices) 150 -> 2, raised to the
        # minimum of 10
        self.assertEqual(rows, {"10s": 25, "1s": 10})
        for w in data["widths"]:
            for d in w["slices"]:
                if d:
                    self.assertEqual(len(d["r"]) // 5, min(d["n"], w["rows"]))

    def test_odd_slice_and_second_pass(self):
        # 7s is derived from the 1s buckets ...
        data, _, _ = self.report(GAME, "--slice", "7s")
        self.assertEqual([w["label"] for w in data["widths"]], ["1s", "7s", "10s"])
        # ... unless the buckets had to grow to 10s (--max-slices 20): then a
        # second pass over the file buckets by 7s directly
        data2, _, _ = self.report(GAME, "--slice", "7s", "--max-slices", "20")
        self.assertEqual([w["label"] for w in data2["widths"]], ["7s", "10s"])
        for d in (data, data2):
            w = next(w for w in d["widths"] if w["label"] == "7s")
            self.assertEqual(w["n"], 9)
            self.assertEqual(w["series"]["tottime"], series([GAME], 7 * S, "tottime")[1])
            want = sums([GAME], 7 * S)
            for i, sd in enumerate(w["slices"]):
                self.assertEqual(rows_of(sd, d), rounded(want[i][0]))

    def test_misaligned_files_are_read_again(self):
        # a second file whose record starts 1.5 s before the first file's:
        # slices start there, half a second off the first pass' buckets
        early = os.path.join(self.tmp, "early.jsonl")
        with open(GAME) as f:
            rec = json.loads(f.readline())
        rec["start_ns"] -= 1500 * 10**6
        rec["ts_ns"] -= 1500 * 10**6
        with open(early, "w") as f:
            f.write(json.dumps(rec) + "\n")
        data, _, _ = self.report(GAME, early)
        self.assertEqual(data["t0"], "2026-11-25T14:29:58.500000Z")
        for w in data["widths"]:
            for field in sr.FIELDS:
                self.assertEqual(w["series"][field], series([GAME, early], int(w["ns"]), field)[1],
                                 (w["label"], field))

    def test_too_many_slices_for_requested_width(self):
        data, _, r = self.report(GAME, "--slice", "1s", "--max-slices", "20")
        self.assertEqual([w["label"] for w in data["widths"]], ["10s"])
        self.assertEqual(data["initial"]["width"], 0)
        self.assertIn("--slice 1s gives 60 slices (more than --max-slices 20); starting with 10s",
                      r.stderr.decode())
        self.assertEqual(data["note"], "--slice 1s gives 60 slices (more than --max-slices 20); "
                                       "starting with 10s")
        data, _, r = self.report(GAME, "--max-slices", "20")   # the default fits
        self.assertEqual(([w["label"] for w in data["widths"]], data["note"]), (["10s"], None))

    def test_single_record(self):
        one = os.path.join(self.tmp, "one.jsonl")
        with open(GAME) as f:
            line = f.readline()
        with open(one, "w") as f:
            f.write(line)
        data, _, _ = self.report(one)
        self.assertEqual([(w["label"], w["n"]) for w in data["widths"]], [("1s", 1)])

    def test_default_slice_width_follows_the_run(self):
        def widths(*args):
            data, _, _ = self.report(*args)
            return ([w["label"] for w in data["widths"]],
                    data["widths"][data["initial"]["width"]]["label"],
                    data["widths"][data["initial"]["width"]]["n"])
        # 12 s of 1 s records (ending before 13 s): 12 slices of 1 s, not 2 of 10 s
        self.assertEqual(widths(GAME, "--until", "+13s"), (["1s", "10s"], "1s", 12))
        self.assertEqual(widths(GAME), (["1s", "10s"], "1s", 60))
        # records 10 s long: slices of 1 s would mostly be empty
        ten = os.path.join(self.tmp, "ten.jsonl")
        with open(ten, "w") as f:
            for i in range(12):
                f.write(json.dumps({"ts_ns": B + (i + 1) * 10 * S, "start_ns": B + i * 10 * S,
                                    "kind": "delta", "seq": i, "func_profiles": {
                                        "/a.py:1(f)": {"ncalls": "1", "tottime": 0.5,
                                                       "cumtime": 0.5}}}) + "\n")
        self.assertEqual(widths(ten), (["1s", "10s", "1m"], "10s", 12))
        # more than 200 slices of 1 s: the next width
        self.assertEqual(widths(GAME, "--max-slices", "30"), (["10s"], "10s", 6))

    def test_script_close_in_names_is_escaped(self):
        evil = os.path.join(self.tmp, "evil.jsonl")
        name = "</script><script>alert(1)</script>"
        rec = {"ts_ns": B + S, "start_ns": B, "kind": "delta", "seq": 0,
               "func_profiles": {"/x.py:1(%s)" % name: {"ncalls": "1", "tottime": 0.5,
                                                         "cumtime": 0.5}}}
        with open(evil, "w") as f:
            f.write(json.dumps(rec) + "\n")
        data, html, _ = self.report(evil, "--title", "<b>t</b> & co")
        self.assertEqual(html.count("</script>"), 2)
        self.assertEqual(data["funcs"][0][2], name)
        self.assertIn("<title>&lt;b&gt;t&lt;/b&gt; &amp; co</title>", html)


class CliTests(Tmp):
    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        text = r.stdout.decode()
        for word in ("self-contained", "--slice", "--field", "--top", "--pid", "--host",
                     "--table-rows", "exit status"):
            self.assertIn(word, text)

    def test_errors(self):
        out = os.path.join(self.tmp, "r.html")
        self.assertEqual(self.one_line_error(run("/nonexistent.jsonl", "-o", out)),
                         "report: error: /nonexistent.jsonl: no such file")
        garbage = os.path.join(self.tmp, "garbage.jsonl")
        with open(garbage, "wb") as f:
            f.write(b"\x00\xff\xfe not json\n{\"ts_ns\": 5, \"ki")
        self.assertEqual(self.one_line_error(run(garbage, "-o", out)),
                         "report: error: no valid records in the input (2 lines read)")
        self.assertIn("no such directory", self.one_line_error(
            run(GAME, "-o", "/nonexistent/dir/r.html")))
        self.assertIn("is a directory", self.one_line_error(run(GAME, "-o", self.tmp)))
        self.assertIn("no records matched: 61 records read (60 delta, 1 spike); --kind delta; "
                      "60 excluded by --pid 1", self.one_line_error(run(GAME, "--pid", "1", "-o", out)))
        for bad in (["--slice", "0s"], ["--field", "x"], ["--top", "0"]):
            r = run(GAME, "-o", out, *bad)
            self.assertEqual(r.returncode, 2)
            self.assertNotIn(b"Traceback", r.stderr)
        self.assertFalse(os.path.exists(out))

    def test_executable(self):
        with open(SCRIPT) as f:
            self.assertEqual(f.readline(), "#!/usr/bin/python3\n")
        self.assertTrue(os.access(SCRIPT, os.X_OK))


    def test_pipe_input_is_read_twice_from_a_copy(self):
        """A FIFO (<(zcat ...)) is copied as stdin is: the report needs two
        passes for some widths; the page and the warnings name the FIFO,
        not the copy."""
        with open(GAME, "rb") as f:
            data = f.read()
        bad = b"{not json\n"
        out = os.path.join(self.tmp, "r.html")
        want = run(GAME, "-o", out, "--slice", "7s")
        self.assertEqual(want.returncode, 0, want.stderr)
        want = page_data(out)[0]
        fifo = toolstest.fifo_of(os.path.join(self.tmp, "in.jsonl"),
                                 gzip.compress(bad + data))
        r = run(fifo, "-o", out, "--slice", "7s")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = page_data(out)[0]
        self.assertEqual(got["files"], [fifo])
        for k in ("nrec", "funcs", "all", "widths"):
            self.assertEqual(got[k], want[k], k)
        self.assertIn("report: warning: %s:1: skipping malformed line"
                      % fifo, r.stderr.decode())

    def test_stdin_warnings_and_copy_errors_name_stdin(self):
        with open(GAME, "rb") as f:
            data = f.read()
        out = os.path.join(self.tmp, "r.html")
        r = run("-", "-o", out, stdin=b"{not json\n" + data)
        self.assertEqual(r.returncode, 0, r.stderr)
        err = r.stderr.decode()
        self.assertIn("report: warning: <stdin>:1: skipping malformed line",
                      err)
        self.assertNotRegex(err, r"statsprof-report-\w+\.jsonl")  # the copy
        # the copy of stdin cannot be written: a file size limit (EFBIG),
        # as a full disk (ENOSPC) would
        os.remove(out)
        r = toolstest.run_tool(SCRIPT, ["-", "-o", out], stdin=data,
                               max_file_bytes=1000)
        self.assertEqual(
            self.one_line_error(r),
            "report: error: <stdin>: cannot keep a copy in %s (the report "
            "reads its input twice): %s"
            % (tempfile.gettempdir(), os.strerror(27)))   # EFBIG
        self.assertFalse(os.path.exists(out))

    def test_output_that_is_an_input_is_refused(self):
        self.check_input_as_output_refused(SCRIPT, "report", ["-o"])

    def test_line_longer_than_the_limit(self):
        """A file with no newline is refused at MAX_LINE_BYTES, also in the
        first pass of a relative --since."""
        big = toolstest.no_newline_file(os.path.join(self.tmp, "z.jsonl"))
        out = os.path.join(self.tmp, "r.html")
        for opts in ((), ("--since", "+1s")):
            with self.subTest(opts=opts):
                self.assertEqual(
                    self.one_line_error(run(big, "-o", out, *opts)),
                    "report: error: %s: line 1 (byte offset 0) is longer "
                    "than %d bytes, the limit (no record is that long): not "
                    "a statsprof records file?" % (big, sr.MAX_LINE_BYTES))
                self.assertFalse(os.path.exists(out))


class BigInputTests(Tmp):
    """Synthetic inputs of a host with 2,000 functions.  Prints the sizes
    and times; asserts the page numbers and that the HTML stays < 10 MB."""

    def big(self, name, nrec, per_record, spacing_s, widths):
        src = os.path.join(self.tmp, name + ".jsonl")
        t = time.monotonic()
        size = write_synthetic(src, nrec, 2000, per_record, spacing_s=spacing_s)
        gen = time.monotonic() - t
        out = os.path.join(self.tmp, name + ".html")
        t = time.monotonic()
        r = run(src, "-o", out)
        took = time.monotonic() - t
        self.assertEqual(r.returncode, 0, r.stderr)
        html_size = os.path.getsize(out)
        data, _ = page_data(out)
        print("\n%s: %d records x %d of 2000 functions, %.0f MB JSONL (written in %.1f s); "
              "report.py %.1f s; HTML %.2f MB; widths %s; rows per slice %s"
              % (name, nrec, per_record, size / 1e6, gen, took, html_size / 1e6,
                 [w["label"] for w in data["widths"]], [w["rows"] for w in data["widths"]]),
              file=sys.stderr)
        self.assertEqual([w["label"] for w in data["widths"]], widths)
        self.assertEqual((data["nrec"], len(data["funcs"]), data["all"]["n"]), (nrec, 2000, 2000))
        self.assertLess(html_size, 10 * 10**6)
        # whole range: function 0 (in every record) has ncalls 1 + seq % 3
        keys = [f[4] for f in data["funcs"]]
        f0 = rows_of(data["all"], data)["/srv/app/pkg00/mod00.py:10(func_0000)"]
        self.assertEqual(f0[0], sum(1 + seq % 3 for seq in range(nrec)))
        # the table budget holds and every slice lists its largest functions
        total = 0
        for w in data["widths"]:
            for d in w["slices"]:
                if d:
                    self.assertLessEqual(len(d["r"]) // 5, w["rows"])
                    total += len(d["r"]) // 5
        self.assertLessEqual(total, 80000)
        self.assertEqual(keys.index("/srv/app/pkg00/mod00.py:10(func_0000)"), 0)
        return data

    def test_hour_of_1s_records(self):
        data = self.big("hour", 3600, 200, 1, ["10s", "1m", "5m"])
        self.assertEqual(data["initial"]["width"], 1)    # 1m: 60 slices

    def test_day_long_range(self):
        # one record a minute for a day: the same slices (1m .. 1d) and
        # functions as a day of 1 s records, at 1/60 of the input
        data = self.big("day", 1440, 200, 60, ["1m", "5m", "1h"])
        self.assertEqual(data["initial"]["width"], 2)    # 1h: 24 slices


if __name__ == "__main__":
    unittest.main(verbosity=1)
