"""End-to-end tests of //host_examples:ini_host, the host that reads its own
INI file and enables statsprof from its [profiler] section.

Each case writes an INI file, runs the built binary with --config, and
checks its exit status, its messages (FILE:LINE for anything wrong in the
file) and the JSON-lines records. work.step() is called once per step and
from nowhere else, so its call count is exact.
"""

import os
import sys
import unittest

sys.dont_write_bytecode = True  # set before importing hosttest: no __pycache__ in the sources

from hosttest import HostTestCase, read_records, total_calls  # noqa: E402


def step_calls(records):
    """Calls of work.py's step() over the records."""
    return sum(total_calls(fp["ncalls"])
               for rec in records for fp in rec["func_profiles"].values()
               if fp["function_name"] == "step" and os.path.basename(fp["file_name"]) == "work.py")


class IniHostTest(HostTestCase):

    name = "ini_host"

    def setUp(self):
        super().setUp()
        self.jsonl = os.path.join(self.tmp, "i.jsonl")

    def write_ini(self, text, name="host.ini", newline="\n"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        return path

    def run_ini(self, text, **kw):
        path = self.write_ini(text, **kw)
        proc, out, err = self.run_host("--config", path)
        return path, proc, out, err

    def assert_ini_error(self, text, line, *words):
        path, proc, out, err = self.run_ini(text)
        self.assertEqual(proc.returncode, 2, err)
        self.assertTrue(err.startswith("ini_host: %s:%d: " % (path, line)), err)
        for word in words:
            self.assertIn(word, err)
        self.assertNotIn("steps in", out)  # the workload never ran
        self.assertEqual(sorted(os.listdir(self.tmp)), ["host.ini"])  # nothing written
        return err

    def test_enabled_profiler_writes_records_of_every_step(self):
        path, proc, out, err = self.run_ini(
            "; written by ini_host_test\n"
            "[workload]\n"
            "steps = 40\n"
            "pause_ms = 0\n"
            "\n"
            "[profiler]\n"
            "enabled = true\n"
            "profiler = interval=200ms;sink=jsonl:%s\n" % self.jsonl)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("profiling with \"interval=200ms;sink=jsonl:%s\" (%s:8)" % (self.jsonl, path), out)
        self.assertIn("ini_host: 40 steps in", out)
        records = read_records(self.jsonl)
        self.assertGreaterEqual(len(records), 1)
        for rec in records:
            self.assertEqual(rec["kind"], "delta")
            self.assertEqual(rec["pid"], proc.pid)
        self.assertEqual(step_calls(records), 40)

    def test_tick_emits_records_while_the_workload_runs(self):
        # 30 steps with 20 ms pauses last at least 600 ms: with a 100 ms
        # interval the host's statsprof_tick emits before the final record.
        _, proc, _, err = self.run_ini(
            "[workload]\nsteps = 30\npause_ms = 20\n"
            "[profiler]\nenabled = true\nprofiler = interval=100ms;sink=jsonl:%s\n" % self.jsonl)
        self.assertEqual(proc.returncode, 0, err)
        records = read_records(self.jsonl)
        self.assertGreaterEqual(len(records), 2)
        self.assertEqual([r["seq"] for r in records], list(range(1, len(records) + 1)))
        self.assertEqual(step_calls(records), 30)

    def test_comments_white_space_crlf_bom_and_name_case_are_accepted(self):
        _, proc, out, err = self.run_ini(
            "\ufeff# a comment\n"
            "   ; an indented comment\n"
            "  [ Workload ]  \n"
            "\tSTEPS   =   7  \n"
            "pause_ms=0\n"
            "[PROFILER]\n"
            "Enabled = Yes\n"
            "profiler =   interval=1h; sink = jsonl:%s   \n" % self.jsonl,
            newline="\r\n")
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("7 steps in", out)
        self.assertEqual(step_calls(read_records(self.jsonl)), 7)

    def test_enabled_false_profiles_nothing(self):
        path, proc, out, err = self.run_ini(
            "[workload]\nsteps = 5\npause_ms = 0\n"
            "[profiler]\nenabled = false\nprofiler = interval=200ms;sink=jsonl:%s\n" % self.jsonl)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(err, "")
        self.assertNotIn("profiling", out)
        self.assertIn("5 steps in", out)
        self.assertEqual(os.listdir(self.tmp), ["host.ini"])

    def test_disabled_profiler_value_is_not_even_parsed(self):
        _, proc, _, err = self.run_ini(
            "[workload]\nsteps = 2\npause_ms = 0\n[profiler]\nenabled = off\nprofiler = bogus\n")
        self.assertEqual(proc.returncode, 0, err)

    def test_profiling_is_off_unless_enabled_is_set(self):
        _, proc, out, err = self.run_ini(
            "[workload]\nsteps = 3\npause_ms = 0\n[profiler]\nprofiler = sink=jsonl:%s\n" % self.jsonl)
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn("profiling", out)
        self.assertEqual(os.listdir(self.tmp), ["host.ini"])

    def test_bad_profiler_value_exits_2_naming_file_line_and_key(self):
        err = self.assert_ini_error(
            "[workload]\n"
            "steps = 3\n"
            "[profiler]\n"
            "enabled = true\n"
            "profiler = interval=200ms;bogus_key=1;sink=jsonl:%s\n" % self.jsonl,
            5, "[profiler] profiler", "bogus_key")
        self.assertIn("unknown key", err)

    def test_bad_profiler_duration_names_the_value(self):
        self.assert_ini_error("[profiler]\nenabled = true\n\nprofiler = interval=soon\n",
                              4, "'soon'", "interval")

    def test_malformed_line_exits_2_naming_the_line(self):
        self.assert_ini_error("[profiler]\nenabled = true\nthis line has no equals sign\n",
                              3, "expected '[section]' or 'key = value'",
                              "'this line has no equals sign'")

    def test_other_ini_errors_name_their_line(self):
        cases = [
            ("[profiler\n", 1, "no closing ']'"),
            ("[profiler] trailing\n", 1, "text after the section header"),
            ("[]\n", 1, "bad section name"),
            ("steps = 3\n", 1, "outside any [section]"),
            ("[workload]\n = 3\n", 2, "bad key name ''"),
            ("[workload]\nsteps = 3\n[other]\n", 3, "unknown section [other]"),
            ("[profiler]\ncolour = red\n", 2, "unknown key 'colour' in [profiler]"),
            ("[workload]\nsteps = 3\n\nsteps = 4\n", 4, "duplicate key 'steps'"),
            ("[profiler]\nenabled = maybe\n", 2, "bad value 'maybe' for enabled"),
            ("[workload]\n# fine\nsteps = 0\n", 3, "bad value '0' for steps"),
            ("[workload]\npause_ms = -1\n", 2, "bad value '-1' for pause_ms"),
        ]
        for text, line, words in cases:
            with self.subTest(text=text):
                self.assert_ini_error(text, line, words)

    def test_missing_config_file_exits_2(self):
        proc, _, err = self.run_host("--config", os.path.join(self.tmp, "nope.ini"))
        self.assertEqual(proc.returncode, 2)
        self.assertIn("nope.ini", err)
        self.assertIn("No such file", err)

    def test_shipped_app_ini_profiles_into_out(self):
        proc, out, err = self.run_host()  # host_examples/ini/app.ini from the runfiles
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("app.ini:", out)
        records = read_records(os.path.join(self.tmp, "out", "ini.jsonl"))
        self.assertEqual(step_calls(records), 200)

    def test_bad_arguments_exit_2_and_help_exits_0(self):
        self.assert_usage_errors(["--nope"], ["extra"], ["--work-dir", self.tmp])
        self.assert_help_mentions("--config", "--work-dir", "[profiler]", "enabled", "steps", "pause_ms")


if __name__ == "__main__":
    unittest.main(verbosity=2)
