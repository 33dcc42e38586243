"""What the host_examples tests share: finding the built host, running it in
a scratch directory with STATSPROF unset, and reading its JSON-lines records.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest


def find_host(name):
    """The binary `name` (e.g. "game_host") in the test's runfiles, or the
    one $NAME (e.g. $GAME_HOST) names."""
    override = os.environ.get(name.upper())
    if override:
        return override
    root = os.environ.get("TEST_SRCDIR")
    workspace = os.environ.get("TEST_WORKSPACE", "statsprof")
    if root:
        return os.path.join(root, workspace, "host_examples", name)
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "bazel-bin", "host_examples", name)


def tools_dir():
    """tools/ of this workspace: in the test's runfiles (from a data
    dependency on a tool), else in the checkout."""
    root = os.environ.get("TEST_SRCDIR")
    if root:
        return os.path.join(root, os.environ.get("TEST_WORKSPACE", "statsprof"), "tools")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")


def total_calls(ncalls):
    """pstats' "12/3" means 12 calls, 3 of them primitive."""
    return int(str(ncalls).split("/")[0])


def read_records(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [json.loads(line) for line in lines]  # every line must parse


class HostTestCase(unittest.TestCase):
    """Runs the host `name` (set by the subclass, e.g. "game_host") in
    self.tmp, a fresh directory, so that a test sees every file the host
    writes there."""

    name = None

    def setUp(self):
        self.host = find_host(self.name)
        base = os.environ.get("TEST_TMPDIR") or tempfile.gettempdir()
        self.tmp = tempfile.mkdtemp(dir=base)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.env = dict(os.environ)
        self.env.pop("STATSPROF", None)

    def start_host(self, *args, env=None, cwd=None):
        return subprocess.Popen(
            [self.host] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env or self.env, cwd=cwd or self.tmp, text=True)

    def run_host(self, *args, env=None, cwd=None):
        proc = self.start_host(*args, env=env, cwd=cwd)
        out, err = proc.communicate(timeout=240)
        return proc, out, err

    def assert_usage_errors(self, *arg_lists):
        """Each argument list makes the host exit 2, saying why under its name."""
        for args in arg_lists:
            proc, _, err = self.run_host(*args)
            self.assertEqual(proc.returncode, 2, args)
            self.assertTrue(err.startswith(self.name + ": "), (args, err))

    def assert_help_mentions(self, *words):
        """--help exits 0 and its text holds every one of `words`."""
        proc, out, _ = self.run_host("--help")
        self.assertEqual(proc.returncode, 0)
        for word in words:
            self.assertIn(word, out)
