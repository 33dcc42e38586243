"""End-to-end tests of //host_examples:game_host, the C host that embeds
CPython and runs the game in host_examples/game.

Each case runs the built binary as a user would and checks what it leaves
behind: its exit status, its stdout table, and the JSON-lines records.
The game is deterministic for a seed, so call counts are exact.
"""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # set before importing hosttest: no __pycache__ in the sources

from hosttest import HostTestCase, read_records, tools_dir, total_calls  # noqa: E402

sys.path.insert(0, tools_dir())
import statsprof_records  # noqa: E402

FRAMES = 120


def merged_calls(records):
    """key -> total calls over all records, and key -> the record's entry."""
    calls, entries = {}, {}
    for rec in records:
        for key, fp in rec["func_profiles"].items():
            calls[key] = calls.get(key, 0) + total_calls(fp["ncalls"])
            entries[key] = fp
    return calls, entries


def calls_of(calls, entries, file_base, function):
    """Total calls of every key whose file is `file_base` and name `function`."""
    return sum(n for key, n in calls.items()
               if os.path.basename(entries[key]["file_name"]) == file_base
               and entries[key]["function_name"] == function)


class GameHostTest(HostTestCase):

    name = "game_host"

    def run_profiled(self, *extra):
        jsonl = os.path.join(self.tmp, "p.jsonl")
        proc, out, err = self.run_host(
            "--frames", str(FRAMES), "--no-sleep",
            "--profile", "interval=500ms;sink=jsonl:" + jsonl, *extra)
        self.assertEqual(proc.returncode, 0, err)
        return proc, out, jsonl

    def test_profiled_run_writes_records_with_the_games_functions(self):
        proc, out, jsonl = self.run_profiled()
        records = read_records(jsonl)  # every line must parse
        self.assertGreaterEqual(len(records), 1)
        self.assertEqual([r["seq"] for r in records], list(range(1, len(records) + 1)))
        for rec in records:
            self.assertEqual(rec["kind"], "delta")
            self.assertEqual(rec["pid"], proc.pid)
            self.assertLessEqual(rec["start_ns"], rec["ts_ns"])

        calls, entries = merged_calls(records)
        # The host calls game.frame once per frame, and nothing else does.
        self.assertEqual(calls_of(calls, entries, "game.py", "frame"), FRAMES)
        self.assertGreater(calls_of(calls, entries, "ai.py", "find_path"), 0)
        self.assertGreater(calls_of(calls, entries, "ai.py", "astar"), 0)
        # Methods named `update` in different files are different keys.
        update_files = {os.path.basename(entries[k]["file_name"])
                        for k, n in calls.items()
                        if entries[k]["function_name"] == "update" and n > 0}
        self.assertIn("entities.py", update_files)
        self.assertTrue(update_files & {"ai.py", "physics.py", "particles.py", "game.py"},
                        update_files)
        update_keys = [k for k in calls if entries[k]["function_name"] == "update"]
        self.assertEqual(len(update_keys), len(set(update_keys)))
        # The host marks every frame: the records' frame statistics add up.
        stats = [r["frame_stats"] for r in records if "frame_stats" in r]
        self.assertEqual(sum(st["frames"] for st in stats), FRAMES)
        for st in stats:
            self.assertLessEqual(st["p50"], st["p95"])
            self.assertLessEqual(st["p95"], st["p99"])
            self.assertLessEqual(st["p99"], st["max"])
        # Labels point at the real sources.
        frame_key = next(k for k in calls if k.endswith("(frame)") and "game.py" in k)
        self.assertTrue(os.path.isfile(entries[frame_key]["file_name"]), frame_key)

    def test_profiled_run_prints_the_top_table(self):
        _, out, _ = self.run_profiled()
        self.assertIn("%d frames in" % FRAMES, out)
        self.assertIn("top 15 by cumtime", out)
        self.assertIn("filename:lineno(function)", out)
        lines = out.splitlines()
        start = next(i for i, l in enumerate(lines) if "filename:lineno(function)" in l)
        rows = [l for l in lines[start + 1:] if l.strip()]
        self.assertEqual(len(rows), 15)
        frame_rows = [r for r in rows if r.split()[-1].startswith("game.py:") and
                      r.endswith("(frame)")]
        self.assertEqual(len(frame_rows), 1, rows)
        self.assertEqual(frame_rows[0].split()[0], str(FRAMES))
        cumtimes = [float(r.split()[2]) for r in rows]
        self.assertEqual(cumtimes, sorted(cumtimes, reverse=True))

    def test_builtins_off_records_hold_the_games_python_functions_only(self):
        # builtins=off (issue 13) against builtins=on on the same
        # deterministic game: the same Python functions with the same calls,
        # no C function and no C caller; the tools read the records as any.
        merged, jsonl = {}, {}
        for builtins in ("on", "off"):
            jsonl[builtins] = os.path.join(self.tmp, builtins + ".jsonl")
            proc, _, err = self.run_host(
                "--frames", str(FRAMES), "--no-sleep", "--profile",
                "builtins=%s;interval=500ms;sink=jsonl:%s" % (builtins, jsonl[builtins]))
            self.assertEqual(proc.returncode, 0, err)
            warnings = []
            records = list(statsprof_records.iter_records(jsonl[builtins], warn=warnings.append))
            self.assertEqual(warnings, [])
            self.assertGreaterEqual(len(records), 1)
            merged[builtins] = statsprof_records.merge_records(records)
        on, off = merged["on"], merged["off"]

        def c_functions(keys):
            return sorted(k for k in keys if k.startswith("~:0("))

        self.assertNotEqual(c_functions(on.funcs), [])  # so that the next line means something
        self.assertEqual(c_functions(off.funcs), [])
        self.assertEqual(c_functions(caller for caller, _ in off.edges), [])
        python_on = {k: v[:2] for k, v in on.funcs.items() if not k.startswith("~:0(")}
        self.assertEqual({k: v[:2] for k, v in off.funcs.items()}, python_on)
        frame = [k for k in off.funcs if re.search(r"[/\\]game\.py:\d+\(frame\)$", k)]
        self.assertEqual(len(frame), 1, sorted(off.funcs))
        self.assertEqual(off.funcs[frame[0]][:2], [FRAMES, FRAMES])
        astar = [k for k in off.funcs if re.search(r"[/\\]ai\.py:\d+\(astar\)$", k)]
        self.assertEqual(len(astar), 1, sorted(off.funcs))
        self.assertGreater(off.funcs[astar[0]][0], 0)

        # timeslices.py: one slice holding the whole run, every function a column.
        r = subprocess.run(
            [sys.executable, os.path.join(tools_dir(), "timeslices.py"), "--field", "ncalls",
             "--slice", "1h", "--top", "100000", "--csv", "-", jsonl["off"]],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        rows = list(csv.reader(io.StringIO(r.stdout)))
        self.assertEqual(len(rows), 2, r.stdout[:2000])
        columns = dict(zip(rows[0][2:], rows[1][2:]))
        self.assertEqual(float(columns.pop("other")), 0)
        self.assertEqual({k: float(v) for k, v in columns.items()},
                         {k: float(v[0]) for k, v in off.funcs.items()})

    def test_hitch_frames_reach_the_game(self):
        _, _, jsonl = self.run_profiled("--hitch", "10,20,500")
        calls, entries = merged_calls(read_records(jsonl))
        # Frame 500 is never reached in a 120-frame run.
        self.assertEqual(calls_of(calls, entries, "game.py", "load_level_chunk"), 2)

    def test_frames_over_budget_become_spike_records(self):
        # A 1 ns budget makes every frame a spike; the rate limit is lifted
        # and the queue blocks instead of dropping, so none may be missing.
        jsonl = os.path.join(self.tmp, "spikes.jsonl")
        proc, _, err = self.run_host(
            "--frames", "20", "--no-sleep", "--hitch", "7", "--profile",
            "budget=1ns;max_spikes_per_min=100000;on_full=block;sink=jsonl:" + jsonl)
        self.assertEqual(proc.returncode, 0, err)
        spikes = [r for r in read_records(jsonl) if r["kind"] == "spike"]
        self.assertEqual([r["frame"] for r in spikes], list(range(1, 21)))
        for rec in spikes:
            calls, entries = merged_calls([rec])
            # A spike holds only its own frame: one call of game.frame.
            self.assertEqual(calls_of(calls, entries, "game.py", "frame"), 1)
            hitch = calls_of(calls, entries, "game.py", "load_level_chunk")
            self.assertEqual(hitch, 1 if rec["frame"] == 7 else 0, rec["frame"])

    def test_every_complete_line_parses_after_kill_9(self):
        # SIGKILL at several moments while records stream out (one every
        # frame): each record is one write(), so only the tail can be cut.
        for delay in (0.3, 0.55, 0.8):
            jsonl = os.path.join(self.tmp, "k%d.jsonl" % int(delay * 100))
            proc = self.start_host("--seconds", "30", "--no-sleep",
                                   "--profile", "interval=0s;sink=jsonl:" + jsonl)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (not os.path.exists(jsonl) or os.path.getsize(jsonl) == 0):
                time.sleep(0.02)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, -signal.SIGKILL)
            with open(jsonl, "rb") as f:
                lines = f.read().split(b"\n")
            lines.pop()  # after the last newline: a record cut by the kill, or nothing
            self.assertGreater(len(lines), 0)
            for line in lines:
                self.assertIsInstance(json.loads(line), dict)

    def test_worker_threads_are_profiled_per_thread(self):
        jsonl = os.path.join(self.tmp, "workers.jsonl")
        proc, out, err = self.run_host(
            "--frames", str(FRAMES), "--no-sleep", "--workers", "2",
            "--profile", "interval=500ms;per_thread=on;sink=jsonl:" + jsonl)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("%d frames in" % FRAMES, out)
        ran = {}
        for line in out.splitlines():
            m = re.match(r"game_host: (worker-\d+) ran (\d+) jobs$", line)
            if m:
                ran[m.group(1)] = int(m.group(2))
        self.assertEqual(sorted(ran), ["worker-1", "worker-2"], out)
        self.assertIn("game_host: 2 workers ran %d jobs" % sum(ran.values()), out)

        records = read_records(jsonl)
        threads = [r for r in records if r["kind"] == "thread"]
        # The main thread may have no threading name (threading imported
        # first by a worker names that worker's ident "MainThread"): null.
        workers = {r["thread_id"] for r in threads if (r["thread_name"] or "").startswith("worker-")}
        self.assertEqual(len(workers), 2, {(r["thread_id"], r["thread_name"]) for r in threads})
        # Every job returned before statsprof_stop: the profile counts each one.
        calls, entries = merged_calls([r for r in records if r["kind"] == "delta"])
        self.assertEqual(calls_of(calls, entries, "jobs.py", "worker_job"), sum(ran.values()))
        calls, entries = merged_calls(threads)
        self.assertEqual(calls_of(calls, entries, "jobs.py", "worker_job"), sum(ran.values()))
        # The frame loop is unchanged: one game.frame per frame.
        calls, entries = merged_calls([r for r in records if r["kind"] == "delta"])
        self.assertEqual(calls_of(calls, entries, "game.py", "frame"), FRAMES)

    def test_statsprof_env_var_turns_profiling_on(self):
        jsonl = os.path.join(self.tmp, "env.jsonl")
        env = dict(self.env, STATSPROF="interval=500ms;sink=jsonl:" + jsonl)
        proc, out, err = self.run_host("--frames", "30", "--no-sleep", env=env)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("filename:lineno(function)", out)
        calls, entries = merged_calls(read_records(jsonl))
        self.assertEqual(calls_of(calls, entries, "game.py", "frame"), 30)

    def test_unprofiled_run_prints_no_table_and_writes_no_file(self):
        proc, out, err = self.run_host("--frames", str(FRAMES), "--no-sleep")
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(err, "")
        self.assertIn("%d frames in" % FRAMES, out)
        self.assertIn("mean frame time", out)
        self.assertNotIn("statsprof", out)
        self.assertNotIn("filename:lineno(function)", out)
        self.assertEqual(len(out.splitlines()), 1, out)
        # Not even the default sink's statsprof.jsonl in the working directory.
        self.assertEqual(os.listdir(self.tmp), [])

    def test_empty_statsprof_env_var_means_off(self):
        proc, out, err = self.run_host("--frames", "5", "--no-sleep",
                                       env=dict(self.env, STATSPROF=""))
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn("filename:lineno(function)", out)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_bad_profile_config_exits_2_naming_the_key(self):
        proc, out, err = self.run_host("--frames", "5", "--no-sleep",
                                       "--profile", "interval=500ms;bogus_key=1")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("bogus_key", err)
        self.assertNotIn("frames in", out)  # the game never started
        self.assertEqual(os.listdir(self.tmp), [])

    def test_bad_interval_exits_2_naming_the_value(self):
        proc, _, err = self.run_host("--frames", "5", "--profile", "interval=soon")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("'soon'", err)

    def test_bad_arguments_exit_2(self):
        self.assert_usage_errors(["--frames", "0"], ["--frames", "5", "--seconds", "1"],
                                 ["--hitch", "a,b"], ["--game-dir", self.tmp], ["--nope"],
                                 ["--workers", "-1"], ["--workers", "65"])

    def test_help_exits_0(self):
        self.assert_help_mentions("--seconds", "--frames", "--profile", "--hitch", "--seed",
                                  "--game-dir", "--no-sleep", "--workers")


if __name__ == "__main__":
    unittest.main(verbosity=2)
