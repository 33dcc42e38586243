#!/usr/bin/python3
"""Browser test of the HTML written by tools/report.py (headless Chromium).

Run:  /usr/bin/python3 tools/tests/report_browser_test.py
Needs the Debian package "chromium" (/usr/bin/chromium); without it every
test is SKIPPED (exit status 0) with a message saying so.

Writes a report of tools/tests/data/game.jsonl (see make_game_jsonl.py) with
--slice 10s, opens it in Chromium over the DevTools protocol
(chromium_cdp.py, --remote-debugging-pipe, stdlib only), clicks with real
mouse events and checks the page against numbers summed directly from the
JSONL here (a record goes into the slice holding the middle of its
interval):

  - the default field is tottime: whole range sorted by it, draw_sprite
    first (7.636719 s);
  - click the 4th bar (14:30:30-14:30:40, records 30-39, the AI burst):
    the table switches to that slice: find_path first by tottime,
    1.5625 s, ncalls 800/200, cumtime 3.222656;
  - header clicks sort by that column, descending then ascending;
  - click find_path: callers update (200 calls, cumtime 3.222656) and
    find_path itself (600); callees evaluate, find_path, list.append;
  - field and width buttons change the chart; with 1 s slices the first
    slice holds the first record; clicking the selected bar again returns
    to the whole range.

A second report (ShortRunInBrowser) is of 12 of those records with the
file names moved under a long Bazel-runfiles-like directory and default
options: it starts with 12 slices of 1 s; at 10 s the second, partial
slice (2 s of the run) is drawn 1/5 as wide as the first; every file:line
cell shows its file name and line whole ("…/game/ai.py:42", full path in
the tooltip) and the table fits its box.

Set REPORT_SCREENSHOT=docs/report.png to save the screenshot of the first
report (slice 4 selected, find_path's callers shown) there; otherwise it
goes to a temp dir.  The second report's screenshot always goes to a temp
dir; both paths are printed.
Set REPORT_BIG_HTML=/path/report.html to also time opening a big report
(e.g. one written by test_report.py's generator); the time is printed.
"""

import json
import os
import re
import struct
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium_cdp  # noqa: E402
import toolstest  # noqa: E402
from toolstest import GAME, TOOLS  # noqa: E402

REPORT = os.path.join(TOOLS, "report.py")

FIND = "/srv/game/ai.py:42(find_path)"
SPRITE = "/srv/game/render.py:30(draw_sprite)"
UPDATE = "/srv/game/game.py:30(update)"
EVAL = "/srv/game/ai.py:90(evaluate)"
APPEND = "~:0(<method 'append' of 'list' objects>)"
FRAME = "/srv/game/game.py:10(frame)"

S10 = 10 * 10**9


def expected_slices():
    """Plain re-implementation of the aggregation, for cross-checks:
    {slice index: (funcs {key: [nc, pc, tt, ct]}, edges {(caller, callee):
    [nc, pc, tt, ct]})} for 10 s slices, plus the whole range at key -1.  A
    record goes into the slice holding the middle of its interval."""
    recs = []
    with open(GAME) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "delta":
                recs.append(r)
    t0 = min(r["start_ns"] for r in recs)
    out = {}
    for r in recs:
        for idx in (((r["start_ns"] + r["ts_ns"]) // 2 - t0) // S10, -1):
            funcs, edges = out.setdefault(idx, ({}, {}))
            for key, fp in r["func_profiles"].items():
                nc, _, pc = fp["ncalls"].partition("/")
                a = funcs.setdefault(key, [0, 0, 0.0, 0.0])
                a[0] += int(nc)
                a[1] += int(pc or nc)
                a[2] += fp["tottime"]
                a[3] += fp["cumtime"]
                for caller, e in fp.get("callers", {}).items():
                    b = edges.setdefault((caller, key), [0, 0, 0.0, 0.0])
                    b[0] += e["ncalls"]
                    b[1] += e["primitive_calls"]
                    b[2] += e["tottime"]
                    b[3] += e["cumtime"]
    return out


def short(key):
    """Same as statsprof_records.short_label."""
    import statsprof_records as sr
    return sr.short_label(key)


def ncalls_text(nc, pc):
    return str(nc) if nc == pc else "%d/%d" % (nc, pc)


def setUpModule():
    if not os.path.exists(chromium_cdp.CHROMIUM):
        print("SKIP report_browser_test: %s not found; install the Debian "
              "package 'chromium' (tools/setup should) to run the browser "
              "tests" % chromium_cdp.CHROMIUM, file=sys.stderr)
        raise unittest.SkipTest("%s not installed" % chromium_cdp.CHROMIUM)


class ReportInBrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="statsprof-report-browser-")
        cls.html = os.path.join(cls.tmp.name, "report.html")
        r = toolstest.run_tool(REPORT, [GAME, "-o", cls.html, "--slice", "10s",
                                        "--title", "statsprof report: game.jsonl"],
                               text=True)
        if r.returncode != 0:
            raise AssertionError("report.py failed: %s" % r.stderr)
        cls.exp = expected_slices()
        cls.br = chromium_cdp.Chromium(width=1400, height=1000)
        cls.br.open("file://" + cls.html)
        cls.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.br.close()
        cls.tmp.cleanup()

    @classmethod
    def wait_ready(cls):
        for _ in range(100):
            if cls.br.eval("document.body.dataset.ready") == "1":
                return
            time.sleep(0.05)
        raise AssertionError("page never became ready")

    # helpers ---------------------------------------------------------------

    def table(self):
        """Rows of the function table: [key, ncalls, tottime, percall,
        cumtime, percall, file:line]."""
        return self.br.eval("""[...document.querySelectorAll('#ftable tbody tr[data-fid]')].map(tr =>
            [tr.cells[0].title].concat([...tr.cells].slice(1).map(td => td.textContent)))""")

    def calls(self, which):
        return self.br.eval("""[...document.querySelectorAll('#%s tbody tr[data-fid]')].map(tr =>
            [tr.cells[0].title].concat([...tr.cells].slice(1).map(td => td.textContent)))""" % which)

    def text(self, sel):
        return self.br.eval("document.querySelector(%s).textContent" % json.dumps(sel))

    def reset(self):
        """Whole range, 10s slices, tottime, no sort override."""
        self.br.eval("""(() => { const S = window.statsprofReport.state;
            S.slice = -1; S.field = 'tottime'; S.sort = null; S.asc = false; S.func = -1;
            S.w = window.statsprofReport.data.widths.findIndex(w => w.label === '10s');
            document.querySelector('#widths button[data-w="' + S.w + '"]').click(); })()""")

    # tests -----------------------------------------------------------------

    def test_0_opens_with_tottime(self):
        # before any reset: the page as it opens
        self.assertEqual(self.text("#fields button.on"), "tottime")
        self.assertEqual(self.text("th.sorted"), "tottime ▼")
        self.assertEqual(self.text("#chartnote"), "")

    def test_1_initial_whole_range(self):
        self.reset()
        self.assertEqual(self.text("#tabletitle"), "Whole range")
        buttons = self.br.eval("[...document.querySelectorAll('#widths button')].map(b => b.textContent)")
        self.assertEqual(buttons, ["1s", "10s"])
        self.assertEqual(self.br.eval("document.querySelectorAll('#chart rect.hit').length"), 6)
        rows = self.table()
        funcs = self.exp[-1][0]
        self.assertEqual(len(rows), len(funcs))
        # default sort: tottime descending
        want = sorted(funcs, key=lambda k: (-funcs[k][2], k))
        self.assertEqual([r[0] for r in rows], want)
        self.assertEqual(rows[0][0], SPRITE)
        self.assertEqual(rows[0][2], "7.636719")
        self.assertEqual(rows[0][1], "136000")
        # sorting by cumtime puts the outermost function first
        self.br.click_element('th[data-col="ct"]')
        rows = self.table()
        self.assertEqual([r[0] for r in rows], sorted(funcs, key=lambda k: (-funcs[k][3], k)))
        self.assertEqual(rows[0][:2] + rows[0][4:5], [FRAME, "3400", "30.475586"])

    def test_2_click_slice_changes_table(self):
        self.reset()
        rows = self.table()
        self.assertEqual(rows[0][0], SPRITE)           # whole range top tottime
        self.assertEqual(rows[0][2], "7.636719")
        # a real mouse click on the 4th bar (14:30:30 - 14:30:40)
        self.br.click_element('#chart rect.hit[data-slice="3"]')
        self.assertEqual(self.br.eval("window.statsprofReport.state.slice"), 3)
        self.assertEqual(self.text("#tabletitle"),
                         "Slice 4 of 6 · 2026-11-25 14:30:30–14:30:40 UTC")
        self.assertIn("10 records", self.text("#tablenote"))
        rows = self.table()
        funcs = self.exp[3][0]
        self.assertEqual(rows[0][0], FIND)             # the AI burst
        self.assertEqual(rows[0][1:6], ["800/200", "1.562500", "%.6f" % (1.5625 / 800),
                                        "3.222656", "%.6f" % (3.22265625 / 200)])
        self.assertEqual(funcs[FIND], [800, 200, 1.5625, 3.22265625])
        self.assertEqual(rows[0][6], "/srv/game/ai.py:42")
        self.assertEqual([r[0] for r in rows],
                         sorted(funcs, key=lambda k: (-funcs[k][2], k)))
        for r in rows:
            nc, pc, tt, ct = funcs[r[0]]
            self.assertEqual(r[1], ncalls_text(nc, pc))
            self.assertEqual(r[2], "%.6f" % round(tt, 6))
            self.assertEqual(r[4], "%.6f" % round(ct, 6))
        # the selection box is drawn on that bar
        self.assertEqual(self.br.eval("document.querySelectorAll('#chart .selbox').length"), 1)

    def test_3_sort_by_header(self):
        self.reset()
        self.br.click_element('#chart rect.hit[data-slice="3"]')
        funcs = self.exp[3][0]
        self.br.click_element('th[data-col="nc"]')
        rows = self.table()
        self.assertEqual([r[0] for r in rows],
                         sorted(funcs, key=lambda k: (-funcs[k][0], k)))
        self.assertEqual(rows[0][0], APPEND)
        self.assertEqual(rows[0][1], "24800")
        self.assertEqual(self.text('th[data-col="nc"]'), "ncalls ▼")
        self.br.click_element('th[data-col="nc"]')   # again: ascending
        rows = self.table()
        self.assertEqual([r[0] for r in rows],
                         sorted(funcs, key=lambda k: (funcs[k][0], k)))
        self.assertEqual(self.text('th[data-col="nc"]'), "ncalls ▲")
        self.br.click_element('th[data-col="name"]')
        rows = self.table()
        self.assertEqual([r[0] for r in rows],
                         sorted(funcs, key=lambda k: (short(k).lower(), k)))

    def test_4_callers_and_callees(self):
        self.reset()
        self.br.click_element('#chart rect.hit[data-slice="3"]')
        self.br.click_element('#ftable tbody tr[data-fid="%d"]' % self.fid(FIND))
        self.assertEqual(self.text("#calltitle"), "find_path (ai.py:42)")
        # its bars are outlined in the chart (when it is one of the top series)
        top = self.br.eval("window.statsprofReport.data.top.tottime")
        self.assertEqual(self.br.eval("[...document.querySelectorAll('#chart path.series.hl')]"
                                      ".map(p => +p.dataset.series)"), [top.index(self.fid(FIND))])
        edges = self.exp[3][1]
        callers = self.calls("callers")
        self.assertEqual([c[0] for c in callers], [UPDATE, FIND])  # by cumtime
        for c in callers:
            nc, pc, tt, ct = edges[(c[0], FIND)]
            self.assertEqual(c[1:], [ncalls_text(nc, pc), "%.6f" % round(tt, 6),
                                     "%.6f" % round(ct, 6)])
        self.assertEqual(callers[0][1:], ["200", "0.781250", "3.222656"])
        self.assertEqual(callers[1][1:], ["600", "0.781250", "1.953125"])
        callees = self.calls("callees")
        self.assertEqual(sorted(c[0] for c in callees), sorted([EVAL, FIND, APPEND]))
        self.assertEqual(callees[0][0], FIND)  # cumtime 1.953125 > evaluate 1.5625
        self.assertEqual([c[1:] for c in callees if c[0] == EVAL],
                         [["3200", "1.367188", "1.562500"]])
        # whole range: the same function's edges over all records
        self.br.click_element("#wholebtn")
        self.assertEqual(self.text("#tabletitle"), "Whole range")
        callers = self.calls("callers")
        nc, pc, tt, ct = self.exp[-1][1][(UPDATE, FIND)]
        self.assertEqual(callers[0][:2], [UPDATE, str(nc)])
        self.assertEqual(callers[0][3], "%.6f" % round(ct, 6))
        # clicking a callee navigates to it
        self.br.click_element('#callees tbody tr[data-fid="%d"]' % self.fid(EVAL))
        self.assertEqual(self.text("#calltitle"), "evaluate (ai.py:90)")
        self.assertEqual([c[0] for c in self.calls("callers")], [FIND])

    def test_5_field_and_width_buttons(self):
        self.reset()
        legend = self.br.eval("[...document.querySelectorAll('#legend .item[data-fid]')].map(e => e.title)")
        whole = self.exp[-1][0]
        self.assertEqual(legend, sorted(whole, key=lambda k: (-whole[k][2], k))[:10])
        self.br.click_element('#fields button[data-field="cumtime"]')
        legend = self.br.eval("[...document.querySelectorAll('#legend .item[data-fid]')].map(e => e.title)")
        self.assertEqual(legend, sorted(whole, key=lambda k: (-whole[k][3], k))[:10])
        self.assertEqual(self.text('th.sorted'), "cumtime ▼")
        self.assertIn("nested functions are stacked more than once", self.text("#chartnote"))
        self.br.click_element('#fields button[data-field="tottime"]')
        self.assertEqual(self.text('th.sorted'), "tottime ▼")
        # bar heights: the stacked total of slice 3 equals the slice's tottime sum
        total = self.br.eval("""(() => { const W = window.statsprofReport.data.widths.find(w => w.label === '10s');
            return W.series.tottime.reduce((s, col) => s + col[3], 0); })()""")
        self.assertAlmostEqual(total, sum(v[2] for v in self.exp[3][0].values()), places=5)
        self.br.click_element('#widths button:nth-of-type(1)')   # 1s
        self.assertEqual(self.br.eval("document.querySelectorAll('#chart rect.hit').length"), 60)
        self.assertEqual(self.text("#tabletitle"), "Whole range")
        # the first 1 s slice holds the first record (it is not empty)
        self.br.click_element('#chart rect.hit[data-slice="0"]')
        self.assertEqual(self.text("#tabletitle"),
                         "Slice 1 of 60 · 2026-11-25 14:30:00–14:30:01 UTC")
        self.assertIn("1 record ·", self.text("#tablenote"))
        self.assertGreater(self.bar_widths()[0], 0)
        # clicking the selected bar again goes back to the whole range
        self.br.click_element('#chart rect.hit[data-slice="0"]')
        self.assertEqual(self.text("#tabletitle"), "Whole range")

    def test_6_filter_and_keyboard(self):
        self.reset()
        self.br.eval("""(() => { const f = document.getElementById('filter');
            f.value = 'render.py'; f.dispatchEvent(new Event('input')); })()""")
        self.assertEqual(sorted(r[0] for r in self.table()),
                         ["/srv/game/render.py:30(draw_sprite)", "/srv/game/render.py:7(draw)"])
        self.br.eval("""(() => { const f = document.getElementById('filter');
            f.value = ''; f.dispatchEvent(new Event('input')); f.blur(); })()""")
        self.br.click_element('#chart rect.hit[data-slice="3"]')
        self.br.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "ArrowRight",
                                                "code": "ArrowRight", "windowsVirtualKeyCode": 39})
        self.br.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "ArrowRight",
                                                "code": "ArrowRight", "windowsVirtualKeyCode": 39})
        self.assertTrue(self.text("#tabletitle").startswith("Slice 5 of 6"))

    def test_7_screenshot(self):
        self.reset()
        self.br.click_element('#chart rect.hit[data-slice="3"]')
        self.br.click_element('#ftable tbody tr[data-fid="%d"]' % self.fid(FIND))
        self.br.eval("window.scrollTo(0, 0)")
        path = os.environ.get("REPORT_SCREENSHOT") or os.path.join(self.tmp.name, "report.png")
        self.br.screenshot(path)
        with open(path, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", head[16:24])
        self.assertEqual(width, 1400)
        self.assertGreaterEqual(height, 800)
        print("\nscreenshot: %s (%dx%d)" % (path, width, height), file=sys.stderr)

    def test_8_big_report_load_time(self):
        big = os.environ.get("REPORT_BIG_HTML")
        if not big:
            self.skipTest("set REPORT_BIG_HTML=report.html to time a big report")
        t = time.monotonic()
        self.br.open("file://" + os.path.abspath(big))
        self.wait_ready()
        loaded = time.monotonic() - t
        n = self.br.eval("document.querySelectorAll('#ftable tbody tr').length")
        self.br.click_element('#chart rect.hit[data-slice="1"]')
        clicked = time.monotonic() - t - loaded
        print("\nbig report %s (%.1f MB): ready in %.2f s, %d table rows, "
              "slice click %.2f s" % (big, os.path.getsize(big) / 1e6, loaded, n,
                                      clicked), file=sys.stderr)
        self.assertGreater(n, 0)
        self.br.open("file://" + self.html)
        self.wait_ready()

    def fid(self, key):
        return self.br.eval("window.statsprofReport.data.funcs.findIndex(f => f[4] === %s)"
                            % json.dumps(key))

    def bar_widths(self):
        """Drawn width of each slice's bar, from the paths of the chart (one
        "M x y h w V y0 h -w Z" per bar and series), keyed by x."""
        d = self.br.eval("[...document.querySelectorAll('#chart path.series')].map(p => p.getAttribute('d'))")
        out = {}
        for path in d:
            for x, w in re.findall(r"M([\d.]+) [\d.]+h([\d.]+)V", path):
                out[float(x)] = float(w)
        return [out[x] for x in sorted(out)]


LONG_NAME = "find_path_through_the_navigation_mesh_weighted_by_terrain_cost"
LONG = ("/home/builder/.cache/bazel/_bazel_builder/3f2a9c0d5e1b/execroot/statsprof/"
        "bazel-out/k8-fastbuild/bin/host_examples/game_host.runfiles/statsprof/"
        "host_examples/game/")


class ShortRunInBrowser(unittest.TestCase):
    """12 s of records (game.jsonl's records 28-39) under long file names,
    default options."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="statsprof-report-short-")
        src = os.path.join(cls.tmp.name, "short.jsonl")
        with open(GAME) as f, open(src, "w") as out:
            for line in f:
                rec = json.loads(line)
                if rec["kind"] == "delta" and 28 <= rec["seq"] <= 39:
                    out.write(line.replace("/srv/game/", LONG).replace("find_path", LONG_NAME))
        cls.html = os.path.join(cls.tmp.name, "short.html")
        r = toolstest.run_tool(REPORT, [src, "-o", cls.html], text=True)
        if r.returncode != 0:
            raise AssertionError("report.py failed: %s" % r.stderr)
        cls.br = chromium_cdp.Chromium(width=1400, height=1000)
        cls.br.open("file://" + cls.html)
        ReportInBrowser.wait_ready.__func__(cls)

    @classmethod
    def tearDownClass(cls):
        cls.br.close()
        cls.tmp.cleanup()

    text = ReportInBrowser.text
    bar_widths = ReportInBrowser.bar_widths

    def hit_widths(self):
        return self.br.eval("[...document.querySelectorAll('#chart rect.hit')].map(r => +r.getAttribute('width'))")

    def test_1_default_slices_and_field(self):
        self.assertEqual(self.text("#widths button.on"), "1s")
        self.assertEqual(self.text("#fields button.on"), "tottime")
        widths = self.hit_widths()
        self.assertEqual(len(widths), 12)
        self.assertEqual(len(set(widths)), 1)          # 12 full slices
        self.assertEqual(len(self.bar_widths()), 12)   # none empty
        self.assertEqual(self.text("#chartnote"), "")

    def test_2_partial_last_slice_is_narrower(self):
        self.br.click_element('#widths button:nth-of-type(2)')   # 10s
        self.assertEqual(self.text("#widths button.on"), "10s")
        hits = self.hit_widths()
        self.assertEqual(len(hits), 2)
        self.assertAlmostEqual(hits[1] / hits[0], 0.2, places=6)  # 2 s of 10 s
        bars = self.bar_widths()
        gap = 2                                           # between bars
        self.assertAlmostEqual(bars[0], hits[0] - gap, places=1)
        self.assertAlmostEqual(bars[1], hits[1] - gap, places=1)
        self.assertEqual(self.text("#chartnote"),
                         "The last bar is narrower: the run covers 2 s of its 10s.")
        self.br.click_element('#chart rect.hit[data-slice="1"]')
        self.assertEqual(self.text("#tabletitle"),
                         "Slice 2 of 2 · 2026-11-25 14:30:38.000–14:30:40.000 UTC "
                         "(the run ends 2 s into this 10s slice)")
        self.assertIn("2 records", self.text("#tablenote"))
        box = self.br.eval("+document.querySelector('#chart .selbox').getAttribute('width')")
        self.assertAlmostEqual(box, hits[1], places=6)
        self.br.click_element('#chart rect.hit[data-slice="1"]')

    def test_3_file_and_line_stay_visible(self):
        # a long function name and long paths: the table still fits its box,
        # the file:line column giving up directories first
        cells = self.br.eval("""[...document.querySelectorAll('#ftable td.loc')].map(td =>
            [td.textContent, td.title, td.scrollWidth <= td.clientWidth])""")
        self.assertEqual(len(cells), 12)
        for text, title, fits in cells:
            self.assertTrue(fits, text)
            if title == "~ (built-in)":
                self.assertEqual(text, title)
                continue
            self.assertTrue(title.startswith(LONG), title)
            name = title[len(LONG):]                   # e.g. ai.py:42
            self.assertTrue(text.startswith("…/") and text.endswith("/" + name), text)
            self.assertTrue(title.endswith(text[1:]))
        fn = self.br.eval("""[...document.querySelectorAll('#ftable td.fn')].filter(td =>
            td.title.includes('navigation_mesh')).map(td => [td.title, td.textContent])""")
        self.assertEqual(fn, [[LONG + "ai.py:42(%s)" % LONG_NAME, LONG_NAME + " (ai.py:42)"]])
        wrap = self.br.eval("(() => { const w = document.querySelector('.tablewrap');"
                            " return [w.scrollWidth, w.clientWidth]; })()")
        self.assertLessEqual(wrap[0], wrap[1])          # no sideways scrolling

    def test_4_screenshot(self):
        self.br.click_element('#widths button:nth-of-type(2)')   # 10s
        self.br.eval("window.scrollTo(0, 0)")
        path = os.path.join(tempfile.gettempdir(), "statsprof-report-short.png")
        self.br.screenshot(path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print("\nscreenshot: %s" % path, file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
