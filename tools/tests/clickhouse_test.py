#!/usr/bin/python3
"""ClickHouse, for real: the rows of a two-process run, loaded into a
ClickHouse server with clickhouse-client, give the same top functions and
the same cumtime per 10-second slice as tools/timeslices.py on the same
file (--slice 10s --align epoch --top 8).

Two game hosts (//host_examples:game_host) run at once for 22 s of game
time, appending to one rows-layout file like a small fleet: one profiles
everything (with per-thread records, which both sides must leave out), the
other runs in production mode with windows further apart than the interval
(window=100ms;every=2500ms;interval=1s), so the duty scaling is compared
too, records with no window and the ones that stand for them (span_s)
included.  The server (Debian's clickhouse-server 18.16, installed by
tools/setup) runs as a plain child process on 127.0.0.1, on free ports,
with a dozen lines of config under a temporary directory; it is killed at
the end whatever happens.  The table and the query are the files in
tools/clickhouse/, which README.md shows verbatim (checked here too).

Run:  /usr/bin/python3 tools/tests/clickhouse_test.py  (after bazel build
//host_examples:game_host), or bazel test //tools:clickhouse_test.
"""

import csv
import ctypes
import datetime
import io
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolstest  # noqa: E402
from toolstest import TOOLS  # noqa: E402

SQL = os.path.join(TOOLS, "clickhouse")
TABLE_SQL = os.path.join(SQL, "statsprof_rows.sql")
QUERY_SQL = os.path.join(SQL, "top_functions.sql")
README = os.path.join(TOOLS, "..", "README.md")

CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>
"""

# The only user is named for this run, so that a client that reached some
# other server on the port (a race for the free port) fails to log in
# instead of testing the wrong server.
USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default/></profiles>
  <users><{user}><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></{user}></users>
  <quotas><default/></quotas>
</yandex>
"""

#: How long the server may take to answer its first query.
READY_SECONDS = 60


def find(program):
    """The program on PATH or in /usr/sbin, /usr/bin; AssertionError (not a
    skip: CI must have it) when it is missing."""
    for path in (shutil.which(program), "/usr/sbin/" + program,
                 "/usr/bin/" + program):
        if path and os.access(path, os.X_OK):
            return path
    raise AssertionError("%s not found: tools/setup installs it (Debian "
                         "package %s)" % (program, program))


def die_with_parent():
    """In the server's child process: SIGKILL it when the test process
    dies, so that a test killed at its timeout leaves no server behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """clickhouse-server as a child process with its own config, data
    directory and ports."""

    def __init__(self, directory):
        self.dir = directory
        for sub in ("data", "tmp"):
            os.makedirs(os.path.join(directory, sub))
        self.tcp, self.http = free_port(), free_port()
        with open(os.path.join(directory, "config.xml"), "w") as f:
            f.write(CONFIG.format(tcp=self.tcp, http=self.http, dir=directory))
        self.user = "statsprof_%s" % os.urandom(6).hex()
        with open(os.path.join(directory, "users.xml"), "w") as f:
            f.write(USERS.format(user=self.user))
        self.client = find("clickhouse-client")
        self.log_path = os.path.join(directory, "server.log")
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [find("clickhouse-server"),
             "--config-file=" + os.path.join(self.dir, "config.xml")],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("clickhouse-server exited with %s: %s"
                                     % (self.proc.returncode, self.log_tail()))
            r = self.run("SELECT 1", check=False, timeout=10)
            if r.returncode == 0 and r.stdout.strip() == "1":
                return
            if time.monotonic() > deadline:
                raise AssertionError("clickhouse-server not answering on port "
                                     "%d after %d s: %s; log: %s"
                                     % (self.tcp, READY_SECONDS,
                                        r.stderr.strip(), self.log_tail()))
            time.sleep(0.2)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError as e:
            return str(e)

    def run(self, query, stdin=None, check=True, timeout=120, args=()):
        """clickhouse-client --query QUERY [ARGS] < stdin (a path)."""
        cmd = [self.client, "--host", "127.0.0.1", "--port", str(self.tcp),
               "--user", self.user]
        cmd += list(args) + ["--query", query]
        f = open(stdin, "rb") if stdin else subprocess.DEVNULL
        try:
            r = subprocess.run(cmd, stdin=f, capture_output=True, timeout=timeout)
        finally:
            if stdin:
                f.close()
        r = subprocess.CompletedProcess(r.args, r.returncode,
                                        r.stdout.decode(), r.stderr.decode())
        if check and r.returncode != 0:
            raise AssertionError("clickhouse-client %r failed (%d): %s"
                                 % (query[:80], r.returncode, r.stderr))
        return r


def sql_text(path):
    with open(path) as f:
        return f.read()


def run_fleet(directory, path):
    """Two game hosts at once, appending rows to one file."""
    common = ["--seconds", "22", "--hitch", "300,900"]
    configs = [
        "interval=1s;per_thread=on",
        "interval=1s;window=100ms;every=2500ms",
    ]
    env = dict(os.environ)
    env.pop("STATSPROF", None)
    procs = [subprocess.Popen(
        [toolstest.game_host(), "--profile",
         config + ";sink=jsonl:%s,layout=rows" % path]
        + common + (["--workers", "1"] if i == 0 else []),
        cwd=directory, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for i, config in enumerate(configs)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        if p.returncode != 0:
            raise AssertionError("game_host failed (%d): %s" % (p.returncode, err))


class ClickHouseRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="statsprof-clickhouse-")
        cls.rows = os.path.join(cls.tmp, "fleet.jsonl")
        run_fleet(cls.tmp, cls.rows)
        cls.server = Server(os.path.join(cls.tmp, "server"))
        try:
            cls.server.start()
            cls.server.run(sql_text(TABLE_SQL), args=["--multiquery"])
            cls.server.run("INSERT INTO statsprof_rows FORMAT JSONEachRow",
                           stdin=cls.rows,
                           args=["--input_format_skip_unknown_fields=1"])
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_line_is_a_table_row(self):
        with open(self.rows, "rb") as f:
            lines = f.read().count(b"\n")
        r = self.server.run(
            "SELECT count(), countIf(row = 'record'), sumIf(rows, row = 'record'), "
            "uniqExact(pid), countIf(row = 'function' AND duty > 0 AND duty < 1), "
            "countIf(kind = 'thread'), "
            "countIf(row = 'record' AND kind = 'delta' AND duty = 0 AND "
            "observed_s = 0 AND pid = (SELECT any(pid) FROM statsprof_rows "
            "WHERE duty > 0)), "
            "countIf(row = 'record' AND span_s > interval_s + 0.5) "
            "FROM statsprof_rows")
        (total, records, rows, pids, duty_lines, thread_lines, empty,
         spanned) = map(int, r.stdout.split())
        self.assertEqual(total, lines)
        self.assertEqual(rows, lines)        # each record says its line count
        self.assertGreater(records, 40)
        self.assertEqual(pids, 2)
        self.assertGreater(duty_lines, 100)  # the production-mode host
        self.assertGreater(thread_lines, 100)
        # the production-mode host's intervals with no window, and the
        # records that stand for them
        self.assertGreater(empty, 3)
        self.assertGreater(spanned, 3)

    def test_top_functions_per_slice_equal_timeslices(self):
        r = self.server.run(sql_text(QUERY_SQL), args=["--format", "TSV"])
        sql = {}
        for line in r.stdout.splitlines():
            slice_text, key, value = line.split("\t")
            start = datetime.datetime.strptime(slice_text, "%Y-%m-%d %H:%M:%S")
            start = start.replace(tzinfo=datetime.timezone.utc)
            sql[(int(start.timestamp()) * 10**9, key)] = float(value)

        t = toolstest.run_tool(
            os.path.join(TOOLS, "timeslices.py"),
            ["--slice", "10s", "--align", "epoch", "--field", "cumtime",
             "--top", "8", "--csv", "-", self.rows], text=True)
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertEqual(t.stderr, "")
        table = list(csv.reader(io.StringIO(t.stdout)))
        top = table[0][2:-1]
        py = {}
        for row in table[1:]:
            for key, value in zip(top, row[2:-1]):
                if float(value):
                    py[(int(row[1]), key)] = float(value)

        self.assertEqual(len(top), 8)
        self.assertGreaterEqual(len(table) - 1, 3)   # 22+ s: three slices or more
        self.assertEqual(sorted({k for _, k in sql}), sorted(top))
        self.assertEqual(sorted(sql), sorted(py))
        for k in py:
            self.assertTrue(math.isclose(sql[k], py[k], rel_tol=1e-9,
                                         abs_tol=1e-12), (k, sql[k], py[k]))
        # the query's order: by total, ties by key, as timeslices ranks
        totals = {}
        for (_, key), v in sql.items():
            totals[key] = totals.get(key, 0.0) + v
        self.assertEqual(sorted(totals, key=lambda k: (-totals[k], k)), top)
        # for the log: the two side by side
        print("\n---- clickhouse-client < top_functions.sql (TSV)\n%s"
              "---- timeslices.py --slice 10s --align epoch --top 8 --csv -\n%s"
              % (r.stdout, t.stdout))

    def test_readme_shows_the_table_and_the_query(self):
        with open(README) as f:
            readme = f.read()
        for path in (TABLE_SQL, QUERY_SQL):
            self.assertIn(sql_text(path), readme, path)


if __name__ == "__main__":
    unittest.main()
