"""Read and aggregate statsprof profile records (JSON lines).

The statsprof C library writes one JSON object per line, e.g.::

    {"ts": "2026-11-25T14:30:01.123456Z", "ts_ns": 1795617001123456000,
     "start_ns": 1795617000123000000, "interval_s": 1.000456, "seq": 3,
     "pid": 1234, "host": "myhost", "kind": "delta", "dropped": 0,
     "total_tt": 0.123,
     "func_profiles": {
        "/path/game/ai.py:42(find_path)": {"ncalls": "12/3", "tottime": 0.01,
            "cumtime": 0.05, "file_name": "/path/game/ai.py",
            "line_number": 42, "function_name": "find_path", ...}}}

or, with ``sink=jsonl:PATH,layout=rows``, a record as flat lines: one
``"row": "record"`` line (with ``"rows"``, the record's line count), then a
``"row": "function"`` line per function, each followed by a
``"row": "caller"`` line per caller edge.  Both layouts are read into the
same record dicts (the record layout's shape); a file may mix them.

This module is meant to be imported by the tools in this directory (and by
later ones).  The main entry points are:

``iter_records(paths, kinds=("delta",), pid=None, host=None, since_ns=None,
until_ns=None, warn=...)``
    Yield the record dicts from one or more files ("-" is stdin; gzip files
    are recognised by their magic bytes, so ``.gz`` works).  Blank lines are
    ignored; malformed lines (garbage, a half-written last line left by a
    killed writer, records with missing/invalid fields, rows-layout records
    with lines missing) are skipped with one warning each, naming file and
    line number.

``with_effective_duty(records)``
    Production mode: give each record that held a window the effective
    duty that makes its estimate cover the empty intervals before it
    (record_duty then returns it); the tools apply it to every record
    stream (statsprof_cli.iter_selected).

``bucket_records(records, slice_ns, field, scale_duty=True, align=...)``
    Sum ``field`` (cumtime, tottime or ncalls) per function per time slice.

``top_functions(table, n)``
    The ``n`` functions with the largest total over all slices.

``parse_ncalls("12/3") -> (12, 3)`` and ``parse_duration("500ms") -> ns``.

Only the Python standard library is used.
"""

import datetime
import fractions
import gzip
import io
import json
import math
import os
import re
import sys
import zlib

__all__ = [
    "FIELDS", "FIELD_UNITS", "DEFAULT_KINDS", "ALIGNS",
    "parse_ncalls", "parse_duration", "format_duration",
    "iter_records", "record_start_ns", "record_duty", "with_effective_duty",
    "EFFECTIVE_DUTY", "RUN", "function_values", "MAX_LINE_BYTES",
    "InputError",
    "bucket_records", "top_functions", "other_values",
    "split_func_key", "short_label", "short_labels", "ns_to_iso",
]

#: Fields that can be aggregated.
FIELDS = ("cumtime", "tottime", "ncalls")
#: Unit of each field, for labels.
FIELD_UNITS = {"cumtime": "seconds", "tottime": "seconds", "ncalls": "calls"}
#: Kinds read by default.
DEFAULT_KINDS = ("delta",)
#: The kinds the library writes (statsprof.h, STATSPROF_RECORD_KIND_MAP).
KNOWN_KINDS = ("delta", "thread", "spike", "cumulative")

NS_PER_S = 1_000_000_000

# ---------------------------------------------------------------------------
# Small parsers


def parse_ncalls(value):
    """Parse a pstats call count.

    ``"12/3"`` -> ``(12, 3)`` (total calls, primitive calls); ``"500"`` ->
    ``(500, 500)``.  A plain non-negative int is accepted too.  Raises
    ValueError naming the bad text otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("invalid ncalls %r: negative" % (value,))
        return value, value
    if not isinstance(value, str):
        raise ValueError("invalid ncalls %r: expected a string like '12/3'"
                         % (value,))
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(\d+)\s*)?", value)
    if not m:
        raise ValueError("invalid ncalls %r: expected 'N' or 'TOTAL/PRIMITIVE'"
                         % (value,))
    total = int(m.group(1))
    prim = int(m.group(2)) if m.group(2) is not None else total
    return total, prim


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000, "\u00b5s": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S, "sec": NS_PER_S,
    "m": 60 * NS_PER_S, "min": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z\u00b5]*)\s*")


def parse_duration(text):
    """Parse a duration such as "500ms", "10s", "2.5s", "1m", "1h" into ns.

    Units: ns, us, ms, s, m (minutes), min, h.  A bare number means
    seconds.  The result is a positive int; ValueError (naming the bad text)
    is raised for anything else, including zero.
    """
    if not isinstance(text, str):
        raise ValueError("invalid duration %r" % (text,))
    m = _DURATION_RE.fullmatch(text.lower())
    if not m:
        raise ValueError("invalid duration %r: expected a number with a unit, "
                         "e.g. 500ms, 10s, 2.5s, 1m" % (text,))
    number, unit = m.group(1), m.group(2) or "s"
    if unit not in _DURATION_UNITS:
        raise ValueError("invalid duration %r: unknown unit %r (use ns, us, "
                         "ms, s, m, h)" % (text, unit))
    ns = fractions.Fraction(number) * _DURATION_UNITS[unit]
    if ns < 1:
        raise ValueError("invalid duration %r: must be at least 1ns" % (text,))
    return round(ns)


def format_duration(ns):
    """Short human form of a duration in ns: 10s, 500ms, 2.5s, 1m, 90s."""
    for unit, size in (("h", 3600 * NS_PER_S), ("m", 60 * NS_PER_S)):
        if ns % size == 0:
            return "%d%s" % (ns // size, unit)
    if ns % 1_000_000 == 0 and ns < NS_PER_S:
        return "%dms" % (ns // 1_000_000)
    if ns % 1_000 == 0 and ns < 1_000_000:
        return "%dus" % (ns // 1_000)
    if ns < 1_000:
        return "%dns" % ns
    return "%gs" % (ns / NS_PER_S)


def ns_to_iso(ns):
    """ISO-8601 UTC with microseconds, like the records' "ts" field."""
    secs, rem = divmod(int(ns), NS_PER_S)
    dt = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    dt = dt.replace(microsecond=rem // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------
# Reading


def _default_warn(message):
    print("warning: " + message, file=sys.stderr)


class _BadRecord(ValueError):
    pass


#: The longest line read (64 MiB): far above any record the library
#: writes (a busy interval's record-layout line is ~100 KB), it keeps a
#: file that is no statsprof file (/dev/zero, a huge file with no newline)
#: from filling the memory.
MAX_LINE_BYTES = 64 << 20


class InputError(OSError):
    """An input that cannot be read as records at all (a line longer than
    MAX_LINE_BYTES): ``filename`` names it, ``strerror`` says where and
    why.  An OSError, so that the tools report it as one."""

    def __init__(self, name, message):
        super().__init__(None, message, name)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


# What the C library can write: its integers are int64 (times, pid, line
# numbers) or uint64 (seq, thread ids, counts); a time fits int64 ns, and
# a duty is at least 1 ns observed of such a time.  Values beyond them
# come from a corrupt or hand-edited line, and would overflow the outputs
# (datetime, pprof's varints, float sums).
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_SECONDS = INT64_MAX / NS_PER_S
MIN_DUTY = 1 / INT64_MAX

#: Record fields of each integer type (checked when present).
_INT64_FIELDS = ("ts_ns", "start_ns", "pid")
_UINT64_FIELDS = ("seq", "thread_id", "frame", "dropped", "sink_errors",
                  "overflow_functions", "threads_omitted", "spikes_suppressed")


def _check_ints(rec, names, lo, hi, what):
    for name in names:
        v = rec.get(name)
        if _is_int(v) and not lo <= v <= hi:
            raise _BadRecord("%r out of range (%s): %d" % (name, what, v))


def _is_seconds(v):
    return _is_number(v) and abs(v) <= MAX_SECONDS


def _short_json(v, limit=40):
    """``v`` as JSON, cut to about ``limit`` characters (for messages)."""
    text = json.dumps(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_header(rec):
    """Validate the fields needed for filtering; raise _BadRecord."""
    if not isinstance(rec, dict):
        raise _BadRecord("not a JSON object")
    if not _is_int(rec.get("ts_ns")):
        raise _BadRecord("missing or non-integer 'ts_ns'")
    if "start_ns" in rec and not _is_int(rec["start_ns"]):
        raise _BadRecord("non-integer 'start_ns'")
    # what tells records apart and filters them: a list or object there
    # could not be hashed, a float or a number for a name would count wrong
    for name in _INT64_FIELDS + _UINT64_FIELDS:
        v = rec.get(name)
        if v is not None and not _is_int(v):
            raise _BadRecord("non-integer %r: %s" % (name, _short_json(v)))
    for name in ("host", "thread_name"):
        v = rec.get(name)
        if v is not None and not isinstance(v, str):
            raise _BadRecord("non-string %r: %s" % (name, _short_json(v)))
    _check_ints(rec, _INT64_FIELDS, INT64_MIN, INT64_MAX, "int64")
    _check_ints(rec, _UINT64_FIELDS, 0, UINT64_MAX, "uint64")
    if not isinstance(rec.get("kind"), str):
        raise _BadRecord("missing or non-string 'kind'")


def _check_body(rec):
    """Validate what aggregation needs; raise _BadRecord."""
    for name in ("interval_s", "observed_s", "span_s"):
        if name in rec and not _is_seconds(rec[name]):
            raise _BadRecord("invalid %r: %r" % (name, rec[name]))
    if "duty" in rec and not _is_number(rec["duty"]):
        raise _BadRecord("invalid 'duty': %r" % (rec["duty"],))
    duty = _own_duty(rec)
    if duty < MIN_DUTY:    # 1/duty would scale values past any output
        raise _BadRecord("duty %r too small (below %.3g)" % (duty, MIN_DUTY))
    fps = rec.get("func_profiles")
    if not isinstance(fps, dict):
        raise _BadRecord("missing or invalid 'func_profiles'")
    for key, fp in fps.items():
        if not isinstance(fp, dict):
            raise _BadRecord("func_profiles[%r] is not an object" % key)
        try:
            if parse_ncalls(fp.get("ncalls"))[0] > UINT64_MAX:
                raise ValueError("invalid ncalls %r: beyond uint64"
                                 % (fp["ncalls"],))
        except ValueError as e:
            raise _BadRecord("func_profiles[%r]: %s" % (key, e))
        for name in ("tottime", "cumtime"):
            if not _is_seconds(fp.get(name)):
                raise _BadRecord("func_profiles[%r]: missing or invalid %r"
                                 % (key, name))
        try:
            _check_ints(fp, ("line_number",), INT64_MIN, INT64_MAX, "int64")
            split_func_key(key)
            callers = fp.get("callers")
            if isinstance(callers, dict):
                for caller in callers:
                    split_func_key(caller)
        except ValueError as e:
            raise _BadRecord("func_profiles[%s]: %s"
                             % (_short_json(key, 80), e))


#: A JSON escape of a UTF-16 surrogate.  A lone one decodes to a str that
#: cannot be written as UTF-8 (the outputs' encoding); the library never
#: writes one (it writes UTF-8 as is), so only lines that have one are
#: looked at closely (a surrogate pair is a valid character).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_strings(rec):
    """Raise _BadRecord if a string (or key) of ``rec`` is not valid UTF-8."""
    try:
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise _BadRecord("a string is not valid UTF-8 (lone surrogate %s)"
                         % json.dumps(e.object[e.start]))


# The rows layout (sink=jsonl:PATH,layout=rows): a record's lines are
# contiguous (one write()), the "record" line first, saying how many lines
# the record has; each function line is followed by its caller lines.

#: Fields on every line of a rows-layout record that say which record it
#: is; in either layout no two records share them.
_ROW_IDENTITY = ("ts_ns", "start_ns", "seq", "pid", "host", "kind",
                 "thread_id", "frame")


def _row_identity(row):
    return tuple(row.get(k) for k in _ROW_IDENTITY)


def _identifiable(rec):
    """True if rec has what tells records apart (see _ROW_IDENTITY): the
    library always writes seq, pid and host."""
    return (rec.get("seq") is not None and rec.get("pid") is not None
            and rec.get("host") is not None)


def _need(row, name, check, what):
    value = row.get(name)
    if not check(value):
        raise _BadRecord("%s %r: %r" % ("missing" if name not in row
                                        else "invalid", name, value)
                         + ("" if what is None else " (%s)" % what))
    return value


def _is_count(v):
    return _is_int(v) and v >= 0


def _ncalls_text(total, primitive):
    return str(total) if total == primitive else "%d/%d" % (total, primitive)


def _record_from_row(row):
    """A record dict (the record layout's shape, no functions yet) from a
    "record" line, and the number of lines the record has."""
    nrows = _need(row, "rows", lambda v: _is_int(v) and v >= 1,
                  "the record's line count")
    for name in ("ts_ns", "start_ns"):
        _need(row, name, _is_int, None)
    for name in ("seq", "pid", "dropped", "sink_errors",
                 "overflow_functions"):
        _need(row, name, _is_int, None)
    _need(row, "host", lambda v: isinstance(v, str), None)
    _need(row, "kind", lambda v: isinstance(v, str), None)
    for name in ("interval_s", "total_tt"):
        _need(row, name, _is_number, None)
    rec = {"ts": ns_to_iso(row["ts_ns"])}
    for name in ("ts_ns", "start_ns", "interval_s", "seq", "pid", "host",
                 "kind", "dropped", "sink_errors", "overflow_functions"):
        rec[name] = row[name]
    for name in ("threads_omitted", "spikes_suppressed"):  # only when not 0
        if name in row:
            rec[name] = _need(row, name, _is_count, None)
    if "thread_id" in row:
        rec["thread_id"] = _need(row, "thread_id", _is_count, None)
        rec["thread_name"] = row.get("thread_name")
    if "frame" in row:
        rec["frame"] = _need(row, "frame", _is_count, None)
        rec["frame_time_s"] = _need(row, "frame_time_s", _is_number, None)
    if "frames" in row:
        stats = {"frames": _need(row, "frames", _is_count, None)}
        for name in ("mean", "p50", "p95", "p99", "max"):
            stats[name] = _need(row, "frame_%s_s" % name, _is_number, None)
        rec["frame_stats"] = stats
    if "duty" in row:
        for name in ("observed_s", "duty", "overhead_est"):
            rec[name] = _need(row, name, _is_number, None)
        if "span_s" in row:     # written by a statsprof that spans itself
            rec["span_s"] = _need(row, "span_s", _is_number, None)
    rec["total_tt"] = row["total_tt"]
    rec["func_profiles"] = {}
    return rec, nrows


def _add_row(rec, row):
    """Add a "function" or "caller" line to its record (the shape of the
    record layout's func_profiles entries and callers)."""
    kind = row.get("row")
    key = _need(row, "key", lambda v: isinstance(v, str), None)
    nc = _need(row, "ncalls", _is_count, None)
    pc = _need(row, "primitive_calls", _is_count, None)
    tt = _need(row, "tottime", _is_number, None)
    ct = _need(row, "cumtime", _is_number, None)
    fps = rec["func_profiles"]
    if kind == "function":
        fps[key] = {
            "ncalls": _ncalls_text(nc, pc), "tottime": tt,
            "percall_tottime": tt / nc if nc else -1, "cumtime": ct,
            "percall_cumtime": ct / pc if pc else -1,
            "file_name": _need(row, "file", lambda v: isinstance(v, str),
                               None),
            "line_number": _need(row, "line", _is_int, None),
            "function_name": _need(row, "function",
                                   lambda v: isinstance(v, str), None),
            "primitive_calls": pc, "callers": {}}
    else:
        caller = _need(row, "caller_key", lambda v: isinstance(v, str), None)
        fp = fps.get(key)
        if fp is None:
            raise _BadRecord("caller line of %r before its function line"
                             % key)
        fp["callers"][caller] = {"ncalls": nc, "primitive_calls": pc,
                                 "tottime": tt, "cumtime": ct}


class _RowsAssembler:
    """Puts the rows-layout records of one file back together.

    ``bad(message, what)`` reports a skipped line or record.  A record whose
    lines do not all arrive (a line malformed, missing, or another record
    starting early) is skipped with one warning.
    """

    def __init__(self, bad):
        self.bad = bad
        self.rec = None       # the record being put together, or None
        self.missing = 0      # its lines still to come
        self.nrows = 0
        self.identity = None
        self.lineno = 0       # of its "record" line
        self.broken = False   # a line of it was bad (already reported)
        self.orphans = None   # identity of lines whose record line is gone

    def _describe(self):
        return "%s record seq %s (pid %s) of line %d" % (
            self.rec.get("kind"), self.rec.get("seq"), self.rec.get("pid"),
            self.lineno)

    def _break(self, why):
        if not self.broken:
            self.broken = True
            self.bad(why, "incomplete " + self._describe())

    def _count_line(self):
        """One of the pending record's lines has arrived; returns the
        record when it is complete and whole."""
        self.missing -= 1
        if self.missing > 0:
            return None
        rec, self.rec = self.rec, None
        return None if self.broken else rec

    def cut(self):
        """Anything but the pending record's next line arrived (or the
        file ended)."""
        if self.rec is not None:
            self._break("only %d of its %d lines follow"
                        % (self.nrows - self.missing, self.nrows))
            self.rec = None

    def malformed(self):
        """A line that did not parse: the pending record loses it."""
        if self.rec is not None:
            self._break("one of its lines is malformed")
            self._count_line()

    def line(self, row, lineno):
        """A parsed rows-layout line; returns a complete record or None."""
        kind = row["row"]
        if kind == "record":
            self.cut()
            try:
                rec, nrows = _record_from_row(row)
            except _BadRecord as e:
                self.bad(str(e), "record line")
                return None
            self.rec, self.nrows, self.missing = rec, nrows, nrows
            self.identity, self.lineno = _row_identity(row), lineno
            self.broken = False
            return self._count_line()
        if kind not in ("function", "caller"):
            self.cut()
            self.bad("unknown row %r (expected record, function or caller)"
                     % (kind,))
            return None
        identity = _row_identity(row)
        if self.rec is None or identity != self.identity:
            self.cut()
            if identity != self.orphans:  # one warning per lost record line
                self.orphans = identity
                self.bad("no record line before it (further lines of this "
                         "record skipped quietly)", "%s line" % kind)
            return None
        if not self.broken:
            try:
                _add_row(self.rec, row)
            except _BadRecord as e:
                self._break("%s line %d: %s" % (kind, lineno, e))
        return self._count_line()


def _open_binary(path, name=None):
    """Open path ("-" = stdin) for binary reading, gunzipping if needed.
    The gzip magic is peeked at, not read and sought back, so that a pipe
    (a FIFO, /dev/stdin, <(zcat ...)) reads as stdin does.

    Returns (file object, display name: ``name``, else "<stdin>" or the
    path, list of objects to close).
    """
    if path == "-":
        raw = sys.stdin.buffer
        to_close = []
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)
    else:
        raw = open(path, "rb")
        to_close = [raw]
    if name is None:
        name = "<stdin>" if path == "-" else path
    magic = raw.peek(2)[:2]
    if magic == b"\x1f\x8b":
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        return gz, name, [gz] + to_close
    return raw, name, to_close


def iter_records(paths, kinds=DEFAULT_KINDS, pid=None, host=None,
                 since_ns=None, until_ns=None, warn=_default_warn,
                 stats=None, max_warnings_per_file=20,
                 max_line_bytes=MAX_LINE_BYTES, names=None,
                 known_kinds=None):
    """Yield record dicts read from ``paths`` (a path or a list of paths).

    - "-" reads stdin; gzip-compressed input is detected automatically;
      a pipe reads as stdin does.  Messages name a file by its path, or
      "<stdin>", or by ``names[path]`` when given (a dict: e.g. the input
      a temporary copy was made of).
    - ``kinds``: iterable of kinds to keep (None = every kind; with
      ``known_kinds``, every kind in it: a record of another kind, e.g.
      one a newer library added, is skipped with one warning per file and
      kind naming the kind and its first line, and counted in
      stats["unknown_kinds"]).
    - ``pid`` / ``host``: keep only records with that pid / host.
    - ``since_ns`` / ``until_ns``: keep records with
      ``since_ns <= ts_ns < until_ns`` (either bound may be None).
    - Malformed lines are skipped, calling ``warn(message)`` once per line
      with "FILE:LINE: ..." (at most ``max_warnings_per_file`` per file, then
      one summary line).  Records of other kinds / pids / hosts / times are
      skipped silently.
    - A record read again (the same host, pid, kind, seq, thread_id,
      frame, start_ns and ts_ns: a file given twice, or with its .gz
      copy, or one record in both layouts) is used once; one warning at
      the end gives their number.  Records without seq, pid or host
      cannot be told apart and are all used.
    - ``stats``: optional dict, filled with counters: "lines", "records"
      (valid JSON records seen), "malformed", "matched", "kinds" (dict kind
      -> count of all valid records), "filtered_pid", "filtered_host",
      "filtered_time", "duplicates" (matching records read again),
      "matched_kinds" (dict kind -> count of the matching records),
      "dropped", "sink_errors", "seq_gaps" (see below).
    - Records lost on the way make sums low: one warning at the end says
      so when the matching records' "dropped" or "sink_errors" (records
      lost so far, all sinks: the largest value per profiler run, summed)
      are not 0, or seqs are missing between delta records of a run (seq
      counts a profiler's deltas; a seq that does not grow is a new run in
      the same pid and host: see _Losses).
    - Every yielded record is annotated with its profiler run (key RUN):
      its number, from 1, among the runs of its (host, pid) in the order
      read (see _Losses), so that records of two runs (a restarted
      profiler, whose seq starts again at 1; two profilers side by side)
      can be told apart.

    Opening a file that does not exist raises OSError (FileNotFoundError)
    when the generator reaches it; a line longer than ``max_line_bytes``
    raises InputError (an OSError) naming the file, the line and its byte
    offset (of the uncompressed data), after the records before it.  Every returned record has been checked:
    integer "ts_ns", integer (or null) "seq", "pid", "thread_id" and the
    other integer fields, string (or null) "host" and "thread_name", a
    "func_profiles" object whose entries have a parsable
    "ncalls" and finite "tottime"/"cumtime"; what the C library cannot
    write is malformed too: a string that is not UTF-8 (a lone surrogate
    escape), an integer field outside its int64/uint64 range, a time
    beyond int64 ns, a duty below MIN_DUTY.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    kinds = None if kinds is None else frozenset(kinds)
    if stats is None:
        stats = {}
    for k in ("lines", "records", "malformed", "matched", "filtered_pid",
              "filtered_host", "filtered_time", "duplicates"):
        stats.setdefault(k, 0)
    stats.setdefault("kinds", {})
    stats.setdefault("matched_kinds", {})
    seen = set()        # identities of the records used
    duplicates = 0
    losses = _Losses()

    for path in paths:
        path = os.fspath(path)
        fobj, name, to_close = _open_binary(path, (names or {}).get(path))
        nwarn = 0
        lineno = 0
        offset = 0          # of the line read next, in the data read

        def bad(msg, what="malformed line"):
            nonlocal nwarn
            stats["malformed"] += 1
            nwarn += 1
            if nwarn <= max_warnings_per_file:
                warn("%s:%d: skipping %s: %s" % (name, lineno, what, msg))

        rows = _RowsAssembler(bad)
        unknown = set()     # the unknown kinds warned about in this file

        def finish(rec):
            """Filter and count a complete record; True to yield it."""
            try:
                _check_header(rec)
            except _BadRecord as e:
                bad(str(e))
                return False
            kind = rec["kind"]
            if kinds is not None and kind not in kinds:
                stats["records"] += 1
                stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
                return False
            if (kinds is None and known_kinds is not None
                    and kind not in known_kinds):
                stats["records"] += 1
                stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
                stats["unknown_kinds"] = stats.get("unknown_kinds", 0) + 1
                if kind not in unknown:
                    unknown.add(kind)
                    warn("%s:%d: skipping records of unknown kind %s (not %s;"
                         " a newer statsprof?): summing them could count "
                         "calls again; name the kind (--kind %s) to use them"
                         % (name, lineno, _short_json(kind),
                            ", ".join(known_kinds), kind))
                return False
            try:
                _check_body(rec)
            except _BadRecord as e:
                bad(str(e))
                return False
            stats["records"] += 1
            stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
            if pid is not None and rec.get("pid") != pid:
                stats["filtered_pid"] += 1
                return False
            if host is not None and rec.get("host") != host:
                stats["filtered_host"] += 1
                return False
            ts = rec["ts_ns"]
            if ((since_ns is not None and ts < since_ns)
                    or (until_ns is not None and ts >= until_ns)):
                stats["filtered_time"] += 1
                return False
            if _identifiable(rec):
                identity = _row_identity(rec)
                if identity in seen:
                    nonlocal duplicates
                    duplicates += 1
                    return False
                seen.add(identity)
            stats["matched"] += 1
            stats["matched_kinds"][kind] = stats["matched_kinds"].get(kind, 0) + 1
            rec[RUN] = losses.add(rec)
            return True

        try:
            while True:
                try:
                    raw = fobj.readline(max_line_bytes + 1)
                except (EOFError, OSError, zlib.error) as e:
                    # gzip.BadGzipFile is an OSError; EOFError = truncated .gz
                    warn("%s: compressed data ends or is corrupt after line %d "
                         "(%s); ignoring the rest of the file"
                         % (name, lineno, e))
                    break
                if not raw:
                    break
                lineno += 1
                if len(raw) > max_line_bytes:
                    raise InputError(name, (
                        "line %d (byte offset %d) is longer than %d bytes, "
                        "the limit (no record is that long): not a statsprof "
                        "records file?" % (lineno, offset, max_line_bytes)))
                offset += len(raw)
                stats["lines"] += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad("not valid UTF-8")
                    rows.malformed()
                    continue
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if _SURROGATE_ESCAPE.search(line):
                        _check_strings(rec)
                except _BadRecord as e:
                    bad(str(e))
                    rows.malformed()
                    continue
                except ValueError as e:
                    if not line.endswith("\n"):
                        bad(str(e), "incomplete last line (writer killed?)")
                    else:
                        bad("invalid JSON: %s" % e)
                    rows.malformed()
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("row"), str):
                    rec = rows.line(rec, lineno)
                    if rec is None:
                        continue
                else:
                    rows.cut()
                if finish(rec):
                    yield rec
            rows.cut()
        finally:
            for f in to_close:
                f.close()
        if nwarn > max_warnings_per_file:
            warn("%s: %d more malformed lines skipped (warnings suppressed)"
                 % (name, nwarn - max_warnings_per_file))
    stats["duplicates"] += duplicates
    if duplicates:
        warn("%d record%s read more than once (the same host, pid, kind, "
             "seq, thread, frame and times: a file given with its copy?); "
             "each is used once" % (duplicates, "" if duplicates == 1 else "s"))
    losses.report(stats, warn)


#: Key under which iter_records stores a record's run number (1, 2, ...
#: among the profiler runs of its host and pid, see _Losses; a private
#: annotation of the record dict, not a field of the format).
RUN = "_run"


class _Run:
    """One profiler's records in a process, as far as _Losses can chain
    them."""
    __slots__ = ("number", "first_seq", "first_start", "seq", "end",
                 "active", "dropped", "errors", "gaps")

    def __init__(self, seq, ts, number=0):
        self.number = number    # 1, 2, ... in the order the runs started
        self.first_seq = None   # seq of its first delta record
        self.first_start = None  # and that record's start_ns
        self.seq = seq          # of its last delta (before one: 1st record's)
        self.end = None         # ts_ns of its last delta
        self.active = ts        # ts_ns of its latest record
        self.dropped = self.errors = self.gaps = 0

    def fits(self, seq, start, delta):
        """A record with this seq (a delta starting at ``start``) may come
        next in this run."""
        if not delta:
            return seq is None or self.seq <= seq
        return self.seq < seq and (self.end is None or self.end <= start)

    def take(self, seq, start, ts, delta, dropped, errors):
        if delta:
            if self.first_seq is None:
                self.first_seq, self.first_start = seq, start
            else:
                self.gaps += seq - self.seq - 1
            self.seq, self.end = seq, ts
        self.active = max(self.active, ts)
        self.dropped = max(self.dropped, dropped)
        self.errors = max(self.errors, errors)


def _run_to_extend(runs, latest, seq, start, delta):
    """The run of ``runs`` a record extends, or None (it starts one): for
    a delta, the run whose last delta ended where it starts, else the
    latest active that it fits; for other records, the latest active that
    they fit.  ``latest``: the latest active run, tried first."""
    if latest is not None and latest.fits(seq, start, delta) and (
            not delta or latest.end == start):
        return latest
    fit = [r for r in runs if r.fits(seq, start, delta)]
    chained = [r for r in fit if delta and r.end == start]
    return (chained or [max(fit, key=lambda r: r.active, default=None)])[0]


class _Losses:
    """What the records say was lost, per profiler run: the largest
    "dropped" and "sink_errors" (counters since its profiler was created)
    and the seqs missing between its delta records, summed over the runs
    of every (host, pid).

    A host may destroy its profiler and create another in the same
    process: the new one's seq starts again at 1 and its counters at 0, so
    one pid's records may hold several runs, one after another, or side by
    side (two profilers writing one file).  Records name no profiler: a
    run is the chain of its deltas, each with a seq above the last one's,
    starting where the last one ended (start_ns = its ts_ns) unless a
    record between was lost (or not written: an empty interval at stop),
    and never before.  So a delta extends the run it chains onto, else
    the latest active run it fits, else it starts a run (a restart: its
    seq does not grow).  Thread records share their delta's seq, spikes
    and the host's cumulative records the last delta's: they count in the
    latest active run whose seq is not above theirs.  Files read out of
    order (a glob lists PATH before PATH.1) leave a run in pieces, a later
    one read first: report joins each piece to the run it continues, by
    the same rule."""

    def __init__(self):
        self.runs = {}        # (host, pid) -> [_Run] in the order started
        self.latest = {}      # (host, pid) -> its latest active _Run

    def add(self, rec):
        where = (rec.get("host"), rec.get("pid"))
        runs = self.runs.setdefault(where, [])
        seq = rec.get("seq") if _is_int(rec.get("seq")) else None
        delta = rec["kind"] == "delta" and seq is not None
        start, ts = record_start_ns(rec), rec["ts_ns"]
        run = _run_to_extend(runs, self.latest.get(where), seq, start, delta)
        if run is None:
            run = _Run(seq or 0, ts, len(runs) + 1)
            runs.append(run)
        counts = [rec.get(n) for n in ("dropped", "sink_errors")]
        run.take(seq, start, ts, delta,
                 *(v if _is_int(v) else 0 for v in counts))
        if run.active >= self.latest.get(where, run).active:
            self.latest[where] = run
        return run.number

    @staticmethod
    def _joined(runs):
        """The runs, each piece joined (in place) to the run it
        continues."""
        whole = []
        for piece in sorted(runs, key=lambda r: r.active
                            if r.first_start is None else r.first_start):
            run = None
            if piece.first_seq is not None:
                run = _run_to_extend(whole, None, piece.first_seq,
                                     piece.first_start, True)
            if run is None:
                whole.append(piece)
                continue
            run.take(piece.first_seq, piece.first_start, piece.end, True,
                     piece.dropped, piece.errors)
            run.seq, run.gaps = piece.seq, run.gaps + piece.gaps
            run.active = max(run.active, piece.active)
        return whole

    def report(self, stats, warn):
        lost = {}
        for where, runs in self.runs.items():
            whole = self._joined(runs)
            lost[where] = [sum(getattr(r, n) for r in whole)
                           for n in ("dropped", "errors", "gaps")]
        dropped, errors, gaps = (sum(c[i] for c in lost.values())
                                 for i in range(3))
        stats["dropped"] = stats.get("dropped", 0) + dropped
        stats["sink_errors"] = stats.get("sink_errors", 0) + errors
        stats["seq_gaps"] = stats.get("seq_gaps", 0) + gaps
        if not (dropped or errors or gaps):
            return
        parts = []
        if dropped:
            parts.append("%d dropped by full sink queues" % dropped)
        if errors:
            parts.append("%d failed sink write%s"
                         % (errors, "" if errors == 1 else "s"))
        if dropped or errors:
            parts[-1] += " (the records' counts, over all sinks)"
        if gaps:
            parts.append("%d delta record%s missing (gaps in seq)"
                         % (gaps, "" if gaps == 1 else "s"))
        where = sorted((w for w, c in lost.items() if any(c)), key=str)
        warn("records lost (%s): %s; sums are low"
             % (", ".join("pid %s on %s" % (p, h) for h, p in where[:4])
                + (", ..." if len(where) > 4 else ""), ", ".join(parts)))


# ---------------------------------------------------------------------------
# Aggregation


def record_start_ns(rec):
    """Start of the record's interval: "start_ns", else ts_ns - interval_s."""
    start = rec.get("start_ns")
    if _is_int(start):
        return start
    interval = rec.get("interval_s")
    if _is_number(interval) and interval > 0:
        return rec["ts_ns"] - round(interval * NS_PER_S)
    return rec["ts_ns"]


def record_duty(rec):
    """Fraction of the work to divide the record's values by (1.0 if not
    duty-cycled).

    The effective duty set by with_effective_duty (which
    cli.iter_selected applies) when present, else the record's own:
    "duty" if present, else "observed_s" / "interval_s".  Values that are
    missing, zero or negative give 1.0 (no scaling).
    """
    eff = rec.get(EFFECTIVE_DUTY)
    if eff is not None:
        return eff
    return _own_duty(rec)


def _own_duty(rec):
    duty = rec.get("duty")
    if not _is_number(duty):
        observed, interval = rec.get("observed_s"), rec.get("interval_s")
        if _is_number(observed) and _is_number(interval) and interval > 0:
            duty = observed / interval
        else:
            return 1.0
    if duty <= 0:
        return 1.0
    return duty


#: Key under which with_effective_duty stores a record's effective duty (a
#: private annotation of the record dict, not a field of the format).
EFFECTIVE_DUTY = "_effective_duty"

#: Kinds that with_effective_duty spreads over the intervals with no window.
SPAN_KINDS = ("delta", "thread")


def _has_window(rec):
    """True if the record carries production mode's fields (its interval
    held a profiling window)."""
    return "duty" in rec or "observed_s" in rec


class _RunState:
    __slots__ = ("seq", "end", "pending", "eff")

    def __init__(self):
        self.seq = None      # seq of the last record seen
        self.end = None      # ts_ns of the last interval with thread records (thread)
        self.pending = 0     # ns of empty intervals since then (delta)
        self.eff = None      # (seq, ts_ns, effective duty) of the last window


def with_effective_duty(records):
    """Yield ``records`` (in order), each window-bearing delta or thread
    record annotated with its effective duty (key EFFECTIVE_DUTY, which
    record_duty then returns).

    Production mode profiles short windows, often further apart than the
    interval: a record whose interval held no window has no functions and
    no "duty"/"observed_s", and the 1/duty of a record that held one only
    scales up to its own interval.  So a window-bearing record's estimate
    is made to cover the intervals with no window before it, back to the
    previous window-bearing record of its run:

        effective duty = sum(duty_i * L_i) / sum(L_i)

    over that span (L = interval length, ts_ns - start_ns; an empty
    interval has duty 0), i.e. duty * L / (L + empty time before it).
    Dividing by it makes sums over time unbiased.

    Records that carry "span_s" (written by a statsprof that spans them
    itself) already have that duty as "duty" and are left as they are; the
    rest of this is for records written before it did.

    Runs: records of one kind, pid and host.  Delta records: the empty
    records before a window-bearing one (since the previous window-bearing
    one, or since the run's first record) make up the span; a record
    without the fields but with functions (full profiling) is observed
    whole and ends a span.  Thread records: the C library copies the
    delta's duty into the thread records of the interval and writes a
    thread record only for a thread that ran, so there are no empty thread
    records; the thread records of one pid and host with one seq are one
    interval, and the span of an interval is the time since the end of
    the previous interval that had thread records when seqs are missing
    between them (a thread idle in one window is observed idle there, so
    threads are not spanned one by one: that would move the idle windows'
    time onto the next busy one); before the run's first such interval,
    seq - 1 intervals of its length (seq starts at 1 per profiler).  A
    window in which no thread ran anything leaves no thread record: its
    interval is then spanned by the next window's records.  A seq that does not grow starts a new
    run (the profiler restarted in the same process).  Records after a
    run's last window are not covered by any estimate: sums over time are
    then low by that tail.  Other kinds (spike, cumulative) keep their own
    duty.  Records must come in the order written (a run's records in
    time order, as each file of a run is; files of one run given out of
    order make the spans wrong).  Nothing is buffered: one small state
    per run.
    """
    runs = {}
    for rec in records:
        kind = rec.get("kind")
        if kind in SPAN_KINDS and "span_s" not in rec:
            key = (kind, rec.get("pid"), rec.get("host"))
            st = runs.get(key)
            if st is None:
                st = runs[key] = _RunState()
            seq = rec.get("seq")
            seq = seq if _is_int(seq) else None
            if kind == "delta":
                _delta_duty(st, rec, seq)
            else:
                _thread_duty(st, rec, seq)
        yield rec


def _interval_ns(rec):
    return max(0, rec["ts_ns"] - record_start_ns(rec))


def _delta_duty(st, rec, seq):
    if seq is not None and st.seq is not None and seq <= st.seq:
        st.pending = 0                          # a new run, same pid
    st.seq = seq if seq is not None else st.seq
    length = _interval_ns(rec)
    if not _has_window(rec):
        if rec.get("func_profiles"):
            st.pending = 0                      # full profiling: seen whole
        else:
            st.pending += length                # no window: duty 0
        return
    duty = _own_duty(rec)
    if st.pending and length > 0:   # an empty interval stands for nothing
        rec[EFFECTIVE_DUTY] = duty * length / (length + st.pending)
    st.pending = 0


def _thread_duty(st, rec, seq):
    if not _has_window(rec):
        return
    ts = rec["ts_ns"]
    if st.eff is not None and st.eff[0] == seq and st.eff[1] == ts:
        rec[EFFECTIVE_DUTY] = st.eff[2]         # another thread, same interval
        return
    if seq is not None and st.seq is not None and seq <= st.seq:
        st.seq = st.end = None                  # a new run, same pid
    length = _interval_ns(rec)
    gap = 0
    if seq is not None and st.seq is None:
        # The run's first interval with thread records: seq counts the
        # intervals before it (1 is the first), whose lengths the thread
        # records do not give: taken as this one's.
        gap = (seq - 1) * length if seq > 1 else 0
    elif st.end is not None and seq is not None and seq > st.seq + 1:
        gap = max(0, record_start_ns(rec) - st.end)
    duty = _own_duty(rec)
    # an empty interval stands for nothing (its effective duty would be 0)
    eff = duty * length / (length + gap) if gap and length > 0 else duty
    if eff != duty:
        rec[EFFECTIVE_DUTY] = eff
    st.seq, st.end, st.eff = seq, ts, (seq, ts, eff)


def function_values(rec, field, scale_duty=True):
    """dict func_key -> value of ``field`` in one record.

    ncalls is the TOTAL count (the first number of "12/3").  With
    ``scale_duty`` the values are divided by the record's duty fraction
    (see record_duty); unscaled ncalls stay ints.
    """
    if field not in FIELDS:
        raise ValueError("invalid field %r: choose one of %s"
                         % (field, ", ".join(FIELDS)))
    duty = record_duty(rec) if scale_duty else 1.0
    out = {}
    for key, fp in rec.get("func_profiles", {}).items():
        if field == "ncalls":
            v = parse_ncalls(fp.get("ncalls"))[0]
        else:
            v = fp.get(field, 0)
        if duty != 1.0:
            v = v / duty
        out[key] = v
    return out


#: Where slices start: at the first record, or at multiples of the slice
#: length since the Unix epoch (as a database's intDiv(ts_ns, slice) does).
ALIGNS = ("first", "epoch")


def bucket_records(records, slice_ns, field, scale_duty=True, t0=None,
                   max_slices=1_000_000, align="first"):
    """Sum ``field`` per function per time slice.

    A record goes into the slice containing its ``ts_ns`` (end of its
    interval): slice index = floor((ts_ns - t0) / slice_ns), where ``t0``
    defaults to the earliest interval start among the records (the first
    record's start).  With ``align="epoch"`` it is the earliest ``ts_ns``
    rounded down to a multiple of ``slice_ns`` instead: a slice is then
    [k*slice_ns, (k+1)*slice_ns) since the epoch, as a database's
    intDiv(ts_ns, slice_ns) groups records, and the first one holds a
    record.  Returns ``(slices, table)``: ``slices`` is the list of
    slice start times in ns (every slice from the first to the last, empty
    ones included) and ``table`` maps func_key -> list of per-slice sums
    (same length as ``slices``).  No records gives ``([], {})``.
    ValueError is raised if more than ``max_slices`` slices would be needed
    (slice far too short for the time range).
    """
    if field not in FIELDS:
        raise ValueError("invalid field %r: choose one of %s"
                         % (field, ", ".join(FIELDS)))
    if not _is_int(slice_ns) or slice_ns <= 0:
        raise ValueError("invalid slice length %r ns: must be a positive int"
                         % (slice_ns,))
    if align not in ALIGNS:
        raise ValueError("invalid align %r: choose one of %s"
                         % (align, ", ".join(ALIGNS)))
    # Reduce each record to what is needed, so that only one field is kept
    # in memory while the start of the first slice is not yet known.
    reduced = []
    first = None
    for rec in records:
        start = record_start_ns(rec)
        first = start if first is None else min(first, start)
        reduced.append((rec["ts_ns"], function_values(rec, field, scale_duty)))
    if not reduced:
        return [], {}
    if t0 is None and align == "epoch":
        t0 = min(ts for ts, _ in reduced)
        t0 -= t0 % slice_ns
    elif t0 is None:
        t0 = min(first, min(ts for ts, _ in reduced))
    nslices = max((ts - t0) // slice_ns for ts, _ in reduced) + 1
    if max_slices is not None and nslices > max_slices:
        raise ValueError("too many slices: %d slices of %s for %s of records "
                         "(limit %d); use a longer slice"
                         % (nslices, format_duration(slice_ns),
                            format_duration(nslices * slice_ns), max_slices))
    zero = 0 if field == "ncalls" else 0.0
    table = {}
    for ts, values in reduced:
        idx = (ts - t0) // slice_ns
        if idx < 0:
            continue  # before an explicit t0
        for key, v in values.items():
            row = table.get(key)
            if row is None:
                row = table[key] = [zero] * nslices
            row[idx] += v
    slices = [t0 + i * slice_ns for i in range(nslices)]
    return slices, table


def top_functions(table, n):
    """Keys of the ``n`` functions with the largest total over all slices.

    Ties are broken by key so the order is deterministic.
    """
    if n <= 0:
        return []
    ranked = sorted(table, key=lambda k: (-sum(table[k]), k))
    return ranked[:n]


def other_values(table, top, zero=0, nslices=None):
    """Per-slice sum of every function not in ``top`` (``zero`` is the
    starting value: 0 for ncalls, 0.0 for times).  ``nslices`` is the
    number of slices (default: the length of the table's rows); give it
    when the table may be empty (records without functions), which still
    has slices."""
    top = set(top)
    if nslices is None:
        nslices = len(next(iter(table.values()))) if table else 0
    out = [zero] * nslices
    for key, row in table.items():
        if key in top:
            continue
        for i, v in enumerate(row):
            out[i] += v
    return out


# ---------------------------------------------------------------------------
# Labels

_KEY_RE = re.compile(r"(.*):(\d+)\((.*)\)", re.S)


def split_func_key(key):
    """"/p/ai.py:42(find_path)" -> ("/p/ai.py", 42, "find_path").

    Keys that do not look like pstats keys give (key, 0, key).  A line
    number beyond int64 (what the C library writes, and pprof's varints
    hold) raises ValueError; iter_records skips the records that have
    such a function or caller key as malformed.
    """
    m = _KEY_RE.fullmatch(key)
    if not m:
        return key, 0, key
    digits = m.group(2).lstrip("0")
    # checked on the text: int() of a longer one raises, or is slow
    if len(digits) > len(str(INT64_MAX)) or int(digits or "0") > INT64_MAX:
        raise ValueError("line number of %s out of range (int64)"
                         % _short_json(key, 80))
    return m.group(1), int(digits or "0"), m.group(3)


def short_label(key):
    """"find_path (ai.py:42)"; built-ins ("~:0(...)") give just the name."""
    file_name, line, func = split_func_key(key)
    if file_name == "~" or (file_name == func and line == 0):
        return func
    return "%s (%s:%d)" % (func, os.path.basename(file_name) or file_name, line)


def short_labels(keys):
    """Short labels for ``keys``, falling back to the full key when two
    short labels would be the same."""
    labels = [short_label(k) for k in keys]
    counts = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [k if counts[lab] > 1 else lab for k, lab in zip(keys, labels)]


# ---------------------------------------------------------------------------
# Function statistics, caller edges and merging (used by report.py and
# convert.py).  Appended; nothing above depends on it.

__all__ += [
    "func_label", "function_stats", "caller_edges", "MergedProfile",
    "merge_records", "parse_time",
]


def func_label(rec, key):
    """(file_name, line_number, function_name) of ``key`` in ``rec``.

    Uses the entry's "file_name"/"line_number"/"function_name" fields when
    the key is one of the record's functions and they are valid, else
    parses the key ("file:line(name)", see split_func_key).  Keys that
    only appear as callers are parsed the same way.
    """
    fp = rec.get("func_profiles", {}).get(key)
    if isinstance(fp, dict):
        f, ln, n = (fp.get("file_name"), fp.get("line_number"),
                    fp.get("function_name"))
        if isinstance(f, str) and _is_int(ln) and isinstance(n, str):
            return f, ln, n
    return split_func_key(key)


def function_stats(rec, scale_duty=True):
    """dict func_key -> (ncalls, primitive_calls, tottime, cumtime).

    Counts are ints unless the record is duty-scaled (``scale_duty`` and a
    duty fraction below 1, see record_duty): then every value is divided by
    the duty fraction and counts become floats.
    """
    duty = record_duty(rec) if scale_duty else 1.0
    out = {}
    for key, fp in rec.get("func_profiles", {}).items():
        nc, pc = parse_ncalls(fp.get("ncalls"))
        tt, ct = fp.get("tottime", 0.0), fp.get("cumtime", 0.0)
        if duty != 1.0:
            nc, pc, tt, ct = nc / duty, pc / duty, tt / duty, ct / duty
        out[key] = (nc, pc, tt, ct)
    return out


def _edge_values(value):
    """(ncalls, primitive_calls, tottime, cumtime) of one callers entry."""
    if not isinstance(value, dict):
        raise ValueError("not an object")
    nc, pc = parse_ncalls(value.get("ncalls"))
    if "primitive_calls" in value:
        pc = value["primitive_calls"]
        if not _is_int(pc) or pc < 0:
            raise ValueError("invalid 'primitive_calls' %r" % (pc,))
    if max(nc, pc) > UINT64_MAX:
        raise ValueError("invalid ncalls %r: beyond uint64" % (nc,))
    tt, ct = value.get("tottime", 0.0), value.get("cumtime", 0.0)
    if not (_is_seconds(tt) and _is_seconds(ct)):
        raise ValueError("invalid tottime/cumtime %r/%r" % (tt, ct))
    return nc, pc, tt, ct


def caller_edges(rec, scale_duty=True, warn=None):
    """List of (caller_key, callee_key, ncalls, primitive_calls, tottime,
    cumtime) from the "callers" objects of the record's functions.

    As in pstats, an edge's tottime/cumtime is the callee's time spent in
    calls made by that caller.  Duty scaling as in function_stats.  A
    malformed callers entry is skipped, calling ``warn(message)`` (once per
    record) when given.
    """
    duty = record_duty(rec) if scale_duty else 1.0
    out = []
    warned = False
    for callee, fp in rec.get("func_profiles", {}).items():
        callers = fp.get("callers")
        if callers is None:
            continue
        if not isinstance(callers, dict):
            callers = {None: callers}
        for caller, value in callers.items():
            try:
                if caller is None:
                    raise ValueError("'callers' is not an object")
                nc, pc, tt, ct = _edge_values(value)
            except ValueError as e:
                if warn is not None and not warned:
                    warned = True
                    warn("record seq %s: skipping bad callers entry of %s: %s"
                         % (rec.get("seq"), callee, e))
                continue
            if duty != 1.0:
                nc, pc, tt, ct = nc / duty, pc / duty, tt / duty, ct / duty
            out.append((caller, callee, nc, pc, tt, ct))
    return out


class MergedProfile:
    """Sum of the function statistics and caller edges of many records.

    Attributes:
      funcs:   dict func_key -> [ncalls, primitive_calls, tottime, cumtime]
      edges:   dict (caller_key, callee_key) -> [ncalls, primitive_calls,
               tottime, cumtime]
      labels:  dict func_key -> (file_name, line_number, function_name) for
               every key in funcs and every caller key
      nrecords, duty_scaled (records whose values were scaled),
      start_ns (earliest interval start), end_ns (latest ts_ns),
      pids, hosts, seqs (sets).
    """

    def __init__(self):
        self.funcs = {}
        self.edges = {}
        self.labels = {}
        self.nrecords = 0
        self.duty_scaled = 0
        self.start_ns = None
        self.end_ns = None
        self.pids = set()
        self.hosts = set()
        self.seqs = set()

    def add(self, rec, scale_duty=True, warn=None):
        """Add one (already validated) record."""
        self.nrecords += 1
        if scale_duty and record_duty(rec) != 1.0:
            self.duty_scaled += 1
        start, end = record_start_ns(rec), rec["ts_ns"]
        self.start_ns = start if self.start_ns is None else min(self.start_ns,
                                                                 start)
        self.end_ns = end if self.end_ns is None else max(self.end_ns, end)
        self.pids.add(rec.get("pid"))
        self.hosts.add(rec.get("host"))
        self.seqs.add(rec.get("seq"))
        labels = self.labels
        for key, vals in function_stats(rec, scale_duty).items():
            acc = self.funcs.get(key)
            if acc is None:
                self.funcs[key] = list(vals)
            else:
                for i in range(4):
                    acc[i] += vals[i]
            if key not in labels:
                labels[key] = func_label(rec, key)
        for caller, callee, *vals in caller_edges(rec, scale_duty, warn):
            acc = self.edges.get((caller, callee))
            if acc is None:
                self.edges[(caller, callee)] = list(vals)
            else:
                for i in range(4):
                    acc[i] += vals[i]
            if caller not in labels:
                labels[caller] = func_label(rec, caller)

    @property
    def total_tt(self):
        return sum(v[2] for v in self.funcs.values())


def merge_records(records, scale_duty=True, warn=None):
    """A MergedProfile of ``records`` (e.g. from iter_records)."""
    merged = MergedProfile()
    for rec in records:
        merged.add(rec, scale_duty, warn)
    return merged


_ISO_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d\d:?\d\d)?")


def parse_time(text, t0_ns=None):
    """Parse a point in time into ns since the epoch.

    Accepts an ISO-8601 time like the records' "ts" field
    ("2026-11-25T14:30:05Z", "2026-11-25 14:30:05.5", "...+01:00"; no zone
    means UTC), an integer number of ns since the epoch (like "ts_ns"), or
    an offset "+DURATION" (e.g. "+30s", "+5m") from ``t0_ns`` (ValueError
    if ``t0_ns`` is None).  Raises ValueError naming the bad text.
    """
    if not isinstance(text, str):
        raise ValueError("invalid time %r" % (text,))
    s = text.strip()
    if s.startswith("+"):
        if t0_ns is None:
            raise ValueError("invalid time %r: a relative time needs a start"
                             % (text,))
        return t0_ns + parse_duration(s[1:])
    if re.fullmatch(r"\d+", s):
        return int(s)
    m = _ISO_RE.fullmatch(s)
    if not m:
        raise ValueError("invalid time %r: expected ISO-8601 like "
                         "2026-11-25T14:30:05Z, ns since the epoch, or "
                         "+DURATION" % (text,))
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    try:
        dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi),
                               int(sec or 0), tzinfo=datetime.timezone.utc)
    except ValueError as e:
        raise ValueError("invalid time %r: %s" % (text, e))
    ns = int(dt.timestamp()) * NS_PER_S
    if frac:
        ns += int(frac.ljust(9, "0"))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[-2:])
        ns -= sign * (hh * 3600 + mm * 60) * NS_PER_S
    return ns
