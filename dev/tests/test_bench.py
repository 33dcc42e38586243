"""dev/bench's pieces that do not measure: the numbers and goal marks of
dev/bench_cost.py from known records, BENCHMARKS.md's sections, callgrind
function names, the docutils workload; and bench_host itself on a small
workload (exact event counts, every mode's source and floor), with no
timing threshold anywhere."""

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import tempfile
import sys
import unittest

DEV = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, DEV)

import bench_cost  # noqa: E402
import bench_workloads  # noqa: E402


def load_bench():
    """dev/bench as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("bench_tool", os.path.join(DEV, "bench"))
    spec = importlib.util.spec_from_loader("bench_tool", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def mode_info(version_312):
    """bench_host's mode_info for 3.11 or 3.12+ (as it prints it)."""
    mon = "monitoring" if version_312 else "setprofile"
    fl, fl_py = ("empty_mon", "empty_mon_py") if version_312 else ("empty", "empty")
    mi = {
        "none": {"source": None, "floor": None, "builtins": False},
        "empty": {"source": "setprofile", "floor": None, "builtins": True},
        "cprofile": {"source": mon, "floor": fl, "builtins": True},
        "cprofile_nob": {"source": mon, "floor": fl, "builtins": False},
        "statsprof": {"source": mon, "floor": fl, "builtins": True},
        "statsprof_nob": {"source": mon, "floor": fl_py, "builtins": False},
    }
    if version_312:
        mi.update({
            "empty_mon": {"source": "monitoring", "floor": None, "builtins": True},
            "empty_mon_py": {"source": "monitoring", "floor": None, "builtins": False},
            "statsprof_sp": {"source": "setprofile", "floor": "empty", "builtins": True},
        })
    return mi


def records(ms, version="3.13.0", workload="game", tt=None):
    """bench_host records for one workload: ms = {mode: [cpu ms per round]};
    wall time = cpu time; total_tt = tt[mode] x wall, else -1."""
    mi = mode_info(version >= "3.12")
    modes = [m for m in mi if m in ms]
    out = [{"kind": "info", "python": version, "statsprof": "0.1.0", "rounds": 3,
            "statsprof_config": "sink=none;interval=1h", "docutils": "",
            "modes": modes, "mode_info": {m: dict(mi[m], config=None) for m in modes}},
           {"kind": "workload", "workload": workload, "events": 1000000, "py_events": 600000,
            "calls": 300000, "returns": 300000, "c_calls": 200000, "c_returns": 200000,
            "monitoring_events": {}}]
    for m in modes:
        for r, v in enumerate(ms[m]):
            s = v / 1e3
            share = (tt or {}).get(m)
            out.append({"kind": "time", "workload": workload, "mode": m, "round": r,
                        "seconds": s, "cpu_seconds": s, "units": [s],
                        "total_tt": share * s if share is not None else -1})
    return out


class TimingNumbers(unittest.TestCase):
    def setUp(self):
        # Minimum of the rounds: none 100, empty_mon 150, cprofile 300,
        # cprofile_nob 250, statsprof 180, statsprof_nob 140 (ms).
        self.ms = {"none": [100, 110, 104], "empty": [260, 250, 270],
                   "empty_mon": [150, 160, 155], "empty_mon_py": [120, 121, 122],
                   "cprofile": [300, 330, 310], "cprofile_nob": [250, 251, 252],
                   "statsprof": [190, 180, 200], "statsprof_nob": [140, 150, 141],
                   "statsprof_sp": [280, 290, 285]}
        self.s = bench_cost.summarize_timing(
            records(self.ms, tt={"statsprof": 0.5, "cprofile": 1.0}))
        self.pm = self.s["workloads"][0]["modes"]

    def test_minimum_spread_and_slowdown(self):
        sp = self.pm["statsprof"]
        self.assertAlmostEqual(sp["t"], 0.180)
        self.assertAlmostEqual(sp["spread"], (0.190 - 0.180) / 0.180)
        self.assertAlmostEqual(sp["x"], 1.8)
        self.assertAlmostEqual(self.pm["none"]["x"], 1.0)

    def test_own_cost_over_the_same_floor(self):
        # statsprof: (180 - 150) / (300 - 150) = 0.2 of cProfile's own.
        self.assertAlmostEqual(self.pm["statsprof"]["own"], 0.030)
        self.assertAlmostEqual(self.pm["statsprof"]["own_ns"], 0.030e9 / 1000000)
        self.assertAlmostEqual(self.pm["statsprof"]["vs_cprofile_own"], 0.2)
        # builtins=off: over the PY_*-only floor, against cProfile(builtins=False)
        # over its own floor (which has the C-call events): 20 / 100.
        self.assertAlmostEqual(self.pm["statsprof_nob"]["own"], 0.020)
        self.assertAlmostEqual(self.pm["statsprof_nob"]["own_ns"], 0.020e9 / 600000)
        self.assertAlmostEqual(self.pm["statsprof_nob"]["vs_cprofile_own"], 0.2)
        # source=setprofile: over the empty PyEval_SetProfile function.
        self.assertAlmostEqual(self.pm["statsprof_sp"]["own"], 0.030)

    def test_added_time_and_room(self):
        # (180 - 100) / (300 - 100); the floor alone (150 - 100) / 200.
        self.assertAlmostEqual(self.pm["statsprof"]["vs_cprofile_added"], 0.4)
        self.assertAlmostEqual(self.pm["statsprof"]["floor_of_cprofile_added"], 0.25)
        self.assertAlmostEqual(self.pm["statsprof_nob"]["vs_cprofile_added"], 40 / 150)

    def test_total_tt_ratio(self):
        # Half of its own time, which is 1.8x no hook's.
        self.assertAlmostEqual(self.pm["statsprof"]["tt_ratio"], 0.9)
        self.assertAlmostEqual(self.pm["cprofile"]["tt_ratio"], 3.0)
        self.assertIsNone(self.pm["none"]["tt_ratio"])

    def test_total_tt_from_the_least_preempted_round(self):
        recs = records({"none": [100], "statsprof": [180, 190]}, tt={"statsprof": 0.5})
        times = [r for r in recs if r.get("mode") == "statsprof"]
        # Round 0 waited as long as it ran (wall 2x CPU), round 1 10%; only
        # round 1 counts: 0.4 of its wall time, times the slowdown 1.8.
        times[0]["seconds"] = 0.360
        times[1].update(seconds=0.209, total_tt=0.4 * 0.209)
        r = bench_cost.summarize_timing(recs)["workloads"][0]["modes"]["statsprof"]
        self.assertAlmostEqual(r["tt_waited"], 0.1)
        self.assertAlmostEqual(r["tt_ratio"], 0.72)
        self.assertEqual(bench_cost.tt_cell(r, True), "0.72× **✗**")
        times[1]["seconds"] = 0.380  # both waited: round 0 (0.09 of 0.36 s) x 1.8
        r = bench_cost.summarize_timing(recs)["workloads"][0]["modes"]["statsprof"]
        self.assertEqual(bench_cost.tt_cell(r, True), "0.45× (waited 100%)")

    def test_total_tt_is_the_median_calm_round(self):
        # Three calm rounds with shares 0.2, 0.6 and 0.4 of their wall time (a
        # machine changing speed between them), a fourth that waited 50%: the
        # median calm round (0.4) is judged, the calm ones' range shown.
        recs = records({"none": [100, 100, 100, 100], "statsprof": [200, 200, 200, 200]},
                       tt={"statsprof": 0.5})
        times = [r for r in recs if r.get("mode") == "statsprof"]
        for t, share in zip(times, (0.2, 0.6, 0.4, 0.05)):
            t["total_tt"] = share * t["seconds"]
        times[3]["seconds"] = 0.300
        times[3]["total_tt"] = 0.05 * 0.300
        r = bench_cost.summarize_timing(recs)["workloads"][0]["modes"]["statsprof"]
        self.assertAlmostEqual(r["tt_ratio"], 0.8)
        self.assertAlmostEqual(r["tt_waited"], 0.0)
        self.assertEqual(tuple(round(x, 6) for x in r["tt_range"]), (0.4, 1.2))
        self.assertEqual(bench_cost.tt_cell(r, True, True), "0.80× ✓ (0.40–1.20)")
        self.assertEqual(bench_cost.tt_cell(r, True), "0.80× ✓")

    def test_goal_marks(self):
        text = bench_cost.render_timing(self.s, [("CPU", "test")], "dev/bench --test", 40,
                                        "cpu", None)
        # own 0.2 <= 0.25, added 0.4 <= 0.6, builtins=off 1.4x > 1.3x on the game.
        self.assertIn("| 0.20× ✓ | 0.40× ✓ | 0.25× |", text)
        # Total slowdowns with builtins=off: both floors, cProfile, statsprof.
        self.assertIn("| game | 1.20× | 2.50× | 2.50× | 1.40× **✗** |", text)
        self.assertIn("| game | 0.90× ✓ |", text)
        self.assertIn("`dev/bench --test`", text)
        self.assertNotIn("Noisy run", text)

    def test_no_room_and_noise(self):
        ms = dict(self.ms, empty_mon=[250, 400, 400], statsprof=[270, 271, 272])
        text = bench_cost.render_timing(bench_cost.summarize_timing(records(ms)),
                                        [], "c", 40, "cpu", None)
        # The floor alone adds 150 of cProfile's 200: 0.75 > 0.6.
        self.assertIn("0.85× (floor alone 0.75×, 0.81× with own at its goal: no room)", text)
        self.assertIn("> **Noisy run**: the median of game/empty sys.monitoring callbacks, "
                      "PY_* + CALL/C_RETURN/C_RAISE (floor) was 60% above its minimum.", text)

    def test_room_counts_the_own_goal(self):
        # A floor of 0.59 leaves 0.01 of cProfile's added: a profiler at its own
        # goal would add 0.59 + 0.25 * 0.41 = 0.69, so there is no room; at 0.46
        # it would add 0.595, so there is.
        self.assertAlmostEqual(bench_cost.best_added(0.59), 0.6925)
        self.assertTrue(bench_cost.no_room(0.59))
        self.assertFalse(bench_cost.no_room(0.46))
        self.assertFalse(bench_cost.no_room(None))
        self.assertEqual(bench_cost.added_cell(0.66, 0.59),
                         "0.66× (floor alone 0.59×, 0.69× with own at its goal: no room)")
        self.assertEqual(bench_cost.added_cell(0.62, 0.46), "0.62× **✗**")
        self.assertEqual(bench_cost.added_cell(None, 0.46), "—")

    def test_no_ratio_over_a_negative_own_cost(self):
        # cProfile(builtins=False) under its floor: noise, not a ratio.
        ms = dict(self.ms, cprofile_nob=[145, 146, 147])
        pm = bench_cost.summarize_timing(records(ms))["workloads"][0]["modes"]
        self.assertAlmostEqual(pm["cprofile_nob"]["own"], -0.005)
        self.assertIsNone(pm["statsprof_nob"]["vs_cprofile_own"])

    def test_311_has_no_builtins_off_goal(self):
        ms = {"none": [100], "empty": [200], "cprofile": [300], "cprofile_nob": [280],
              "statsprof": [220], "statsprof_nob": [215]}
        s = bench_cost.summarize_timing(records(ms, version="3.11.2"))
        self.assertAlmostEqual(s["workloads"][0]["modes"]["statsprof_nob"]["own"], 0.015)
        text = bench_cost.render_timing(s, [], "c", 40, "cpu", None)
        self.assertIn("| game | 2.00× | 2.80× | 2.15× |", text)

    def test_summary_across_versions(self):
        t13 = {"result": self.s, "date": "D13"}
        t11 = {"result": bench_cost.summarize_timing(records(
            {"none": [100], "empty": [200], "cprofile": [300], "cprofile_nob": [280],
             "statsprof": [230], "statsprof_nob": [215]}, version="3.11.2")), "date": "D11"}
        text = bench_cost.render_summary({"3.13": {"timing": t13}, "3.11": {"timing": t11}})
        lines = text.splitlines()
        r11 = next(i for i, ln in enumerate(lines) if ln.startswith("| 3.11 | setprofile"))
        r13 = next(i for i, ln in enumerate(lines) if ln.startswith("| 3.13 | monitoring"))
        self.assertLess(r11, r13)
        # 3.11: own (230 - 200) / (300 - 200) = 0.3, a miss.
        self.assertIn("| 0.30× **✗** |", lines[r11])
        self.assertIn("| 0.20× ✓ |", lines[r13])
        self.assertIn("| 3.13 | 1.20× | 1.40× **✗** | — |", text)


class Sections(unittest.TestCase):
    def test_order_and_replacement(self):
        bench = load_bench()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "B.md")
            with open(path, "w") as fh:
                fh.write("# B\n\nkept text\n\n<!-- BEGIN bench:production -->\nP\n"
                         "<!-- END bench:production -->\n")
            bench.write_section(path, "bench:py3.13", "CPython 3.13", "thirteen",
                                before=["bench:production"])
            bench.write_section(path, "bench:py3.11", "CPython 3.11", "eleven",
                                before=["bench:py3.13", "bench:production"])
            bench.write_section(path, "bench:summary", "Summary", "sum",
                                before=["bench:py3.11", "bench:py3.13"])
            bench.write_section(path, "bench:py3.13", "CPython 3.13", "thirteen again",
                                before=["bench:production"])
            with open(path) as fh:
                text = fh.read()
        order = [text.index(s) for s in ("kept text", "## Summary", "## CPython 3.11",
                                         "## CPython 3.13", "<!-- BEGIN bench:production")]
        self.assertEqual(order, sorted(order))
        self.assertIn("thirteen again", text)
        self.assertNotIn("thirteen\n", text)
        self.assertEqual(text.count("<!-- BEGIN bench:py3.13 -->"), 1)


class SavedResults(unittest.TestCase):
    def test_pack_round_trip(self):
        bench = load_bench()
        recs = records({"none": [100.123456, 101], "statsprof": [180, 181]},
                       tt={"statsprof": 0.5})
        saved = {"kind": "timing", "version": "3.13", "records": recs}
        packed = bench.pack(saved)
        self.assertEqual([r["kind"] for r in packed["records"]], ["info", "workload"])
        self.assertEqual(packed["times"]["game"]["none"][0],
                         [0, 0.10012, 0.10012, -1.0, [0.10012], -1])
        back = bench.unpack(json.loads(json.dumps(packed)))
        times = sorted((r for r in back["records"] if r["kind"] == "time"),
                       key=lambda r: (r["mode"], r["round"]))
        self.assertEqual(len(times), 4)
        self.assertEqual(times[2], {"kind": "time", "workload": "game", "mode": "statsprof",
                                    "round": 0, "seconds": 0.18, "cpu_seconds": 0.18,
                                    "total_tt": 0.09, "units": [0.18], "c_functions": -1})


class CallgrindNames(unittest.TestCase):
    def test_short_fn(self):
        cases = {
            "/tmp/python-build.2026/Python-3.13.0/./Modules/_lsprof.c:Stop": "Modules/_lsprof.c:Stop",
            "/tmp/python-build.2026/Python-3.12.1/Python/ceval.c:f": "Python/ceval.c:f",
            "./build-shared/../Python/instrumentation.c:g": "Python/instrumentation.c:g",
            "/proc/self/cwd/lib/hook.c:mon_py_enter": "lib/hook.c:mon_py_enter",
            "???:__popcountdi2": "__popcountdi2",
            "/build/reproducible-path/glibc-2.43/elf/../sysdeps/x86_64/tls_get_addr.S:f":
                "elf/../sysdeps/x86_64/tls_get_addr.S:f",
            "_PyEval_EvalFrameDefault'2": "_PyEval_EvalFrameDefault",
        }
        for raw, short in cases.items():
            self.assertEqual(bench_cost.short_fn(raw), short)

    def test_inlined_header_lines_count_as_their_function(self):
        out = "\n".join([
            "645,764,800 (100.0%)  PROGRAM TOTALS",
            "-" * 80,
            "Ir                    file:function",
            "-" * 80,
            "645,764,800 (100.0%)  ???:(below main) [/x/bench_host]",
            " 18,655,452 ( 2.89%)  /proc/self/cwd/lib/hotpath.h:mon_py_leave",
            "  5,000,000 ( 0.77%)  /proc/self/cwd/lib/source_monitoring.c:mon_py_leave [/x/bench_host]",
            "  1,067,760 ( 0.17%)  /proc/self/cwd/lib/internal.h:mon_py_leave",
            " 19,825,625 ( 3.07%)  /tmp/Python-3.13.0/./Include/object.h:_PyEval_EvalFrameDefault'2",
            "159,095,267 (24.64%)  /tmp/Python-3.13.0/Python/generated_cases.c.h:"
            "_PyEval_EvalFrameDefault'2 [/x/libpython3.13.so.1.0]",
            "",
            "-" * 80,
            "-- Auto-annotated source: lib/hotpath.h",
            "  3,500,000 ( 0.54%)  return ((uint64_t)hi << 32) | lo;",
        ])
        self.assertEqual(bench_cost.annotate_costs(out), {
            "(below main) [bench_host]": 645764800,
            "lib/source_monitoring.c:mon_py_leave [bench_host]": 18655452 + 5000000 + 1067760,
            "Python/generated_cases.c.h:_PyEval_EvalFrameDefault [libpython3.13.so.1.0]":
                19825625 + 159095267,
        })

    def test_summarize_without_annotate(self):
        info = {"python": "3.13.0", "modes": ["none", "empty_mon", "cprofile", "statsprof"],
                "mode_info": {m: v for m, v in mode_info(True).items()
                              if m in ("none", "empty_mon", "cprofile", "statsprof")}}
        events = {"fib": {"events": 1000, "py_events": 1000}}
        dumps = {("fib", "none"): (None, 300000), ("fib", "empty_mon"): (None, 800000),
                 ("fib", "cprofile"): (None, 1000000), ("fib", "statsprof"): (None, 850000)}
        c = bench_cost.summarize_callgrind(info, events, dumps, annotate=False)
        sp = c["workloads"][0]["modes"]["statsprof"]
        self.assertEqual(sp["own"], 50)
        self.assertEqual(sp["vs_cprofile_own"], 0.25)
        self.assertAlmostEqual(sp["vs_cprofile_added"], 550 / 700)
        self.assertEqual(c["breakdowns"], [])


class DocutilsWorkload(unittest.TestCase):
    def test_document_and_run(self):
        # tools/setup installs python3-docutils: the workload must be there.
        self.assertIn("docutils", bench_workloads.names())
        self.assertRegex(bench_workloads.docutils_origin(), r"^docutils \d+\.\d+")
        doc = bench_workloads.rst_document(2)
        self.assertEqual(doc, bench_workloads.rst_document(2))
        self.assertEqual(doc.count("\nSection "), 2)
        import docutils.core
        html = docutils.core.publish_string(
            doc, writer_name="html5",
            settings_overrides={"_disable_config": True, "embed_stylesheet": False,
                                "output_encoding": "unicode", "report_level": 1,
                                "halt_level": 2})  # any warning would raise
        self.assertIn('<h1 class="title">Benchmark document</h1>', html)
        self.assertEqual(html.count("<table"), 2)
        self.assertIsNone(bench_workloads.make("docutils", "callgrind")())


def bench_host():
    root = os.environ.get("TEST_SRCDIR")
    if root:
        return os.path.join(root, os.environ.get("TEST_WORKSPACE", "statsprof"), "dev",
                            "bench_host")
    return os.path.join(DEV, "..", "bazel-bin", "dev", "bench_host")


class BenchHost(unittest.TestCase):
    """bench_host on fib(18) once per mode: what it reports, not how fast."""

    def test_fib_every_mode(self):
        r = subprocess.run([bench_host(), "--workloads", os.path.join(DEV, "bench_workloads.py"),
                            "--size", "callgrind", "--rounds", "1", "--workload", "fib",
                            "--no-extras"], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONHASHSEED="0"))
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        info = recs[0]
        self.assertEqual(info["kind"], "info")
        mi = info["mode_info"]
        ver = tuple(int(x) for x in info["python"].split(".")[:3])
        v312 = ver >= (3, 12)
        expected = mode_info(v312)
        # builtins=off runs the frame-evaluation source on 3.11.4+; on 3.12+
        # it is measured beside sys.monitoring, forced
        if (3, 11, 4) <= ver < (3, 12):
            expected["statsprof_nob"] = {"source": "evalframe", "floor": "empty_ef", "builtins": False}
        if v312:
            expected["statsprof_ef_nob"] = {"source": "evalframe", "floor": "empty_ef", "builtins": False}
        self.assertEqual("statsprof_ef_nob" in mi, v312)
        for m, want in expected.items():
            self.assertEqual({k: mi[m][k] for k in want}, want, m)
        self.assertEqual(mi["statsprof_nob"]["config"], "sink=none;interval=1h;builtins=off")
        self.assertEqual("statsprof_sp" in mi, v312)
        self.assertEqual("empty_mon" in info["modes"], v312)
        # fib(18) makes 2 * fib(19) - 1 = 8361 calls, run() and the repetition's
        # body are two more; bench_unit() after the repetition is a C call.
        w = recs[1]
        self.assertEqual((w["kind"], w["calls"], w["returns"], w["c_calls"], w["c_returns"]),
                         ("workload", 8363, 8363, 1, 1))
        self.assertEqual((w["events"], w["py_events"]), (16728, 16726))
        if v312:
            me = w["monitoring_events"]
            self.assertEqual((me["PY_START"], me["PY_RETURN"], me["CALL"], me["C_RETURN"]),
                             (8363, 8363, 8364, 2))
        else:
            self.assertEqual(w["monitoring_events"], {})
        times = {t["mode"]: t for t in recs if t["kind"] == "time"}
        self.assertEqual(set(times), set(info["modes"]))
        for m, t in times.items():
            self.assertGreater(t["cpu_seconds"], 0, m)
            has_tt = m.startswith(("cprofile", "statsprof", "yappi"))
            self.assertEqual(t["total_tt"] >= 0, has_tt, m)
            # cProfile's profile holds bench_unit() with builtins, nothing in C without.
            want_c = {"cprofile": 1, "cprofile_nob": 0}.get(m, -1)
            self.assertEqual(t["c_functions"], want_c, m)
            # One unit (one repetition), which is the whole call.
            self.assertEqual(len(t["units"]), 1, m)
            self.assertAlmostEqual(t["units"][0], t["cpu_seconds"], delta=t["cpu_seconds"] * 1e-5)

    def test_game_units(self):
        r = subprocess.run([bench_host(), "--workloads", os.path.join(DEV, "bench_workloads.py"),
                            "--size", "callgrind", "--rounds", "2", "--workload", "game",
                            "--mode", "none", "--mode", "statsprof", "--no-extras"],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONHASHSEED="0"))
        self.assertEqual(r.returncode, 0, r.stderr)
        times = [json.loads(line) for line in r.stdout.splitlines() if '"time"' in line]
        self.assertEqual(len(times), 4)
        for t in times:
            # game.init and 3 frames, adding up to the whole call.
            self.assertEqual(len(t["units"]), 4)
            self.assertAlmostEqual(sum(t["units"]), t["cpu_seconds"],
                                   delta=t["cpu_seconds"] * 1e-5)

    def test_production_units_in_and_out_of_windows(self):
        # --production tells units run inside a window from units outside on
        # each event source: the first unit starts in the window that start
        # opens; a tick after 1 ms or more closes it, so a later unit runs
        # outside (0.2 s of calls, a tick after each). "auto" is
        # sys.monitoring on 3.12+.
        window = "interval=1h;window=1ms;every=2ms"
        modes = ["--prod-mode", "sp=%s;source=setprofile" % window]
        r = subprocess.run([bench_host(), "--workloads", os.path.join(DEV, "bench_workloads.py"),
                            "--production", "--size", "prod", "--seconds", "0.2", "--rounds", "1",
                            "--lead-in", "0", "--workload", "fib"] + modes +
                           ["--prod-mode", "auto=" + window],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONHASHSEED="0"))
        self.assertEqual(r.returncode, 0, r.stderr)
        times = {t["mode"]: t for t in map(json.loads, r.stdout.splitlines()) if t["kind"] == "prod_time"}
        self.assertEqual(set(times), {"none", "sp", "auto"})
        for m in ("sp", "auto"):
            self.assertGreaterEqual(times[m]["units_in"], 1, m)
            self.assertGreaterEqual(times[m]["units_out"], 1, m)
        # No hook: every unit outside.
        self.assertEqual(times["none"]["units_in"], 0)
        self.assertGreater(times["none"]["units_out"], 0)


if __name__ == "__main__":
    unittest.main()
