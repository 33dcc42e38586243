"""Shared set-up of the tools' tests (test_timeslices.py, test_report.py,
test_convert.py, report_browser_test.py, test_rows.py, clickhouse_test.py).

Importing it puts tools/ first on sys.path, so that the tests can import
statsprof_records and the tools themselves.  The test data files are
described in test_timeslices.py (sample, other_pid, duty) and in
data/make_game_jsonl.py (game).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
GAME = os.path.join(DATA, "game.jsonl")
SAMPLE = os.path.join(DATA, "sample.jsonl")
OTHER = os.path.join(DATA, "other_pid.jsonl")
DUTY = os.path.join(DATA, "duty.jsonl")
PYTHON = "/usr/bin/python3"

#: Start of the test data (2026-11-25T14:30:00Z) in ns, and one second.
B = 1795617000 * 10**9
S = 10**9

sys.path.insert(0, TOOLS)


def json_records(paths, kinds=("delta",), keep=lambda rec: True):
    """The records of ``paths`` read plainly, for computing expected
    numbers without the tools' code: every complete line's JSON whose kind
    is in ``kinds`` and for which ``keep(rec)`` is true."""
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue
                rec = json.loads(line)
                if rec["kind"] in kinds and keep(rec):
                    yield rec


def run_tool(script, args, stdin=None, text=False, timeout=120,
             max_file_bytes=None):
    """Run ``script`` with PYTHON; CompletedProcess with stdout/stderr
    captured (str with ``text``, else bytes).  ``max_file_bytes``: the
    largest file it may write (RLIMIT_FSIZE: a larger write fails with
    EFBIG, as one on a full disk fails with ENOSPC; Python ignores
    SIGXFSZ).  It writes no bytecode: a .pyc cut by the limit would break
    every later run."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    limit = None
    if max_file_bytes is not None:
        import resource

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (max_file_bytes, max_file_bytes))
    return subprocess.run([PYTHON, "-B", script] + list(args), input=stdin,
                          capture_output=True, text=text, env=env,
                          timeout=timeout, preexec_fn=limit)


def game_host():
    """The built //host_examples:game_host: in the test's runfiles (a data
    dependency of the test), else in bazel-bin."""
    root = os.environ.get("TEST_SRCDIR")
    if root:
        return os.path.join(root, os.environ.get("TEST_WORKSPACE", "statsprof"),
                            "host_examples", "game_host")
    return os.path.join(TOOLS, "..", "bazel-bin", "host_examples", "game_host")


def run_game_both_layouts(directory, config, args, timeout=300):
    """Runs the game host in ``directory`` (created) profiled with
    ``config`` plus two jsonl sinks, one per layout: DIRECTORY/record/
    prof.jsonl and DIRECTORY/rows/prof.jsonl (same file name, so that tools
    that print their input's name print the same).  Returns the two paths;
    raises AssertionError if the host fails."""
    os.makedirs(directory, exist_ok=True)
    config += ";sink=jsonl:record/prof.jsonl;sink=jsonl:rows/prof.jsonl,layout=rows"
    env = dict(os.environ)
    env.pop("STATSPROF", None)
    r = subprocess.run([game_host(), "--profile", config] + list(args),
                       cwd=directory, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("game_host %s failed (%d): %s"
                             % (" ".join(args), r.returncode, r.stderr))
    return (os.path.join(directory, "record", "prof.jsonl"),
            os.path.join(directory, "rows", "prof.jsonl"))


def idle_records(path):
    """Writes two delta records of idle intervals (no functions), B..B+2s,
    pid 7 on host "h", to ``path``; returns ``path``."""
    with open(path, "w") as f:
        for i in range(2):
            f.write(json.dumps({
                "ts_ns": B + (i + 1) * S, "start_ns": B + i * S,
                "interval_s": 1.0, "seq": i + 1, "pid": 7, "host": "h",
                "kind": "delta", "dropped": 0, "sink_errors": 0,
                "total_tt": 0.0, "func_profiles": {}}) + "\n")
    return path


def no_newline_file(path, first=b""):
    """Writes ``first`` then a line of MAX_LINE_BYTES + 1 zero bytes with
    no newline (sparse: no disk space) to ``path``; returns ``path``."""
    import statsprof_records
    with open(path, "wb") as f:
        f.write(first)
        f.truncate(len(first) + statsprof_records.MAX_LINE_BYTES + 1)
    return path


def fifo_of(path, data):
    """Makes a FIFO at ``path`` and a daemon thread that writes ``data``
    (bytes) into it once a reader opens it (an input that cannot seek, as
    <(zcat ...) is); returns ``path``.  A thread whose reader never came
    stays blocked in open() until the test process exits."""
    import threading
    os.mkfifo(path)

    def write():
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError:     # the reader went away early
            pass
    threading.Thread(target=write, daemon=True).start()
    return path


def gzip_copy(path, out):
    """Writes ``path`` gzipped to ``out``; returns ``out``."""
    import gzip
    with open(path, "rb") as f, gzip.open(out, "wb") as g:
        g.write(f.read())
    return out


def _rename_first_function(rec, name):
    fps = rec["func_profiles"]
    key = next(iter(fps))
    fp = fps.pop(key)
    fp["function_name"] = name
    fps["%s:%d(%s)" % (fp["file_name"], fp["line_number"], name)] = fp


def _rekey_first_function(rec, key):
    fps = rec["func_profiles"]
    fps[key] = fps.pop(next(iter(fps)))


def _set_first_function(rec, **fields):
    next(iter(rec["func_profiles"].values())).update(fields)


#: Corrupt (hand-edited) records the C library cannot write, which the
#: tools must skip with a FILE:LINE warning: (what the warning names,
#: change made to a good record).
CORRUPTIONS = (
    ("not valid UTF-8", lambda r: _rename_first_function(r, "bad\udcff")),
    ("'ts_ns' out of range", lambda r: r.update(ts_ns=10**30)),
    ("'start_ns' out of range", lambda r: r.update(start_ns=-2**63 - 1)),
    ("'pid' out of range", lambda r: r.update(pid=2**64)),
    ("'seq' out of range", lambda r: r.update(seq=-1)),
    ("'thread_id' out of range", lambda r: r.update(thread_id=2**64)),
    ("'line_number' out of range",
     lambda r: _set_first_function(r, line_number=2**63)),
    ("beyond uint64", lambda r: _set_first_function(r, ncalls=str(2**64))),
    ("invalid 'tottime'", lambda r: _set_first_function(r, tottime=1e300)),
    ("invalid 'interval_s'",
     lambda r: (r.pop("start_ns"), r.update(interval_s=1e300))),
    ("too small", lambda r: r.update(duty=1e-300, observed_s=1e-300)),
    ("too small", lambda r: r.update(observed_s=1e-300, interval_s=1.0)),
    ("non-string 'host': [\"myhost\"]", lambda r: r.update(host=["myhost"])),
    ("non-integer 'seq': [1]", lambda r: r.update(seq=[1])),
    ("non-integer 'pid': {\"a\": 1}", lambda r: r.update(pid={"a": 1})),
    ("non-integer 'seq': 0.5", lambda r: r.update(seq=0.5)),
    # a line number in a key that pprof's varints cannot hold; one whose
    # digits int() refuses to read
    ("/x.py:99999999999999999999(f)\" out of range (int64)",
     lambda r: _set_first_function(r, callers={
         "/x.py:99999999999999999999(f)": {
             "ncalls": 1, "primitive_calls": 1, "tottime": 0.0,
             "cumtime": 0.0}})),
    ("out of range (int64)", lambda r: _rekey_first_function(
        r, "/x.py:%s(f)" % ("9" * 5000))),
)


def corrupt_copy(path, out):
    """Writes the complete delta lines of ``path`` to ``out``, each followed
    by a corrupt copy of it (CORRUPTIONS in turn; seq + 1000, so that it
    is no duplicate of the good one).  The tools must give the same
    numbers for both files.  Returns [(line number, what the warning
    names)] of the corrupt lines."""
    corrupt = []
    with open(out, "w") as f:
        for rec in json_records([path]):
            f.write(json.dumps(rec) + "\n")
            what, change = CORRUPTIONS[len(corrupt) % len(CORRUPTIONS)]
            bad = json.loads(json.dumps(rec))
            bad["seq"] += 1000
            change(bad)
            f.write(json.dumps(bad) + "\n")
            corrupt.append((2 * len(corrupt) + 2, what))
    return corrupt


class ToolTest(unittest.TestCase):
    """A fresh temporary directory ``self.tmp`` per test (its name starts
    with ``tmp_prefix``), and checks of a tool's failing run."""

    tmp_prefix = None

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix=self.tmp_prefix)
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def check_input_as_output_refused(self, script, prog, options, extra=()):
        """Runs ``script`` (with arguments ``extra``) with each of
        ``options`` (e.g. "-o") naming one of its inputs, by its path and by other names (a hard link, a
        symlink, a path through "."): each must fail with PROG's one-line
        error and leave the input as it was."""
        src = self.path("in.jsonl")
        with open(GAME, "rb") as f:
            data = f.read()
        with open(src, "wb") as f:
            f.write(data)
        os.link(src, self.path("hard.jsonl"))
        os.symlink(src, self.path("sym.jsonl"))
        for option in options:
            for out in (src, self.path("hard.jsonl"), self.path("sym.jsonl"),
                        os.path.join(self.tmp, ".", "in.jsonl")):
                with self.subTest(option=option, out=out):
                    r = run_tool(script, [GAME, src, option, out]
                                 + list(extra))
                    self.assertIn(
                        "%s: error: cannot write %s%s: it is the input %s "
                        "(writing it would destroy the input)"
                        % (prog, option[2:].upper() + " "
                           if option.startswith("--") else "", out, src),
                        self.one_line_error(r))
                    with open(src, "rb") as f:
                        self.assertEqual(f.read(), data)

    def one_line_error(self, r):
        """The one "error" line of a run (bytes output) that exited with 2."""
        self.assertEqual(r.returncode, 2)
        err = r.stderr.decode()
        self.assertNotIn("Traceback", err)
        errors = [line for line in err.splitlines() if "error" in line]
        self.assertEqual(len(errors), 1, err)
        return errors[0]
