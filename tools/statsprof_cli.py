"""Command-line plumbing shared by the record tools (timeslices.py,
report.py, convert.py).

- the argument parser: its common head (prog, description, the FILE
  arguments) and the record filter options --kind/--pid/--host/
  --scale-duty, with the argument types they use;
- reading: the records the filter options select (``iter_selected``), the
  --since/--until range (``time_range``), and the message when nothing
  matched (``no_match_message``);
- checks before any work (``check_inputs``, ``check_output``), and the
  warnings after reading about the kinds summed (``kind_warnings``);
- writing an output whole or not at all (``open_output``);
- errors: ``UsageError`` ends a tool with "PROG: error: MESSAGE" and exit
  status 2 (see ``run_main``); warnings are "PROG: warning: MESSAGE".

Only the Python standard library is used.
"""

import argparse
import contextlib
import os
import stat
import sys
import tempfile

import statsprof_records as sr

#: Help texts used by more than one tool.
FILES_HELP = 'statsprof JSON-lines file(s); "-" reads stdin'
KIND_HELP = ('record kind(s) to use, comma-separated, or "all" (delta, '
             'thread, spike, cumulative; an unknown kind is skipped with a '
             'warning) (default: delta); summing more than one kind counts '
             'calls again (warned)')
SCALE_DUTY_HELP = ("divide duty-cycled records by their effective duty, "
                   "which covers the intervals with no window before them "
                   "(default: on; off: raw counts)")


class UsageError(Exception):
    """Reported as 'PROG: error: ...' with exit status 2 (see run_main)."""


# ---------------------------------------------------------------------------
# argument parsing


def duration_arg(text):
    """argparse type: a duration ("500ms", "10s", ...) in ns."""
    try:
        return sr.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def int_arg(name, minimum):
    """argparse type for option ``name``: an integer >= ``minimum``."""
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("invalid %s %r: expected an integer"
                                             % (name, text))
        if n < minimum:
            raise argparse.ArgumentTypeError("invalid %s %r: must be >= %d"
                                             % (name, text, minimum))
        return n
    return parse


def kind_arg(text):
    """argparse type: comma-separated record kinds, as a list."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise argparse.ArgumentTypeError("invalid --kind %r: empty" % text)
    return kinds


def new_parser(prog, description, epilog, files_help=FILES_HELP):
    """An ArgumentParser with the tools' layout and the FILE arguments.

    The program name is the basename of sys.argv[0] (``prog`` when there is
    none); ``description`` and ``epilog`` are printed as written.
    """
    p = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else prog,
        description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help=files_help)
    return p


def add_filter_options(p, kind_help=KIND_HELP, scale_duty_help=SCALE_DUTY_HELP):
    """Add --kind, --pid, --host and --[no-]scale-duty (in that order)."""
    p.add_argument("--kind", type=kind_arg, default=list(sr.DEFAULT_KINDS),
                   metavar="KIND[,KIND...]", help=kind_help)
    p.add_argument("--pid", type=int, metavar="N",
                   help="use only records written by process N")
    p.add_argument("--host", metavar="H",
                   help="use only records written on host H")
    p.add_argument("--scale-duty", action=argparse.BooleanOptionalAction,
                   default=True, help=scale_duty_help)


# ---------------------------------------------------------------------------
# checks before reading


def is_stream(path):
    """True for stdin ("-") and for any input that is not a regular file
    (a FIFO, /dev/stdin, <(zcat ...), a device): it can be read once."""
    if path == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _stdin_once(files):
    if files.count("-") > 1:
        raise UsageError('"-" (stdin) given more than once')


def check_inputs(files, stdin_last=False):
    """Raise UsageError unless every file exists and is readable, no file
    is given twice (its records would count twice) and "-" (stdin) is
    given at most once.  A repeated "-" is reported before the files are
    looked at, or with ``stdin_last`` (timeslices) after."""
    if not stdin_last:
        _stdin_once(files)
    given = {}      # (device, inode) -> the path that named it first
    for path in files:
        if path == "-":
            continue
        if not os.path.exists(path):
            raise UsageError("%s: no such file" % path)
        if os.path.isdir(path):
            raise UsageError("%s: is a directory" % path)
        if not os.access(path, os.R_OK):
            raise UsageError("%s: permission denied" % path)
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        if key in given:
            first = given[key]
            raise UsageError("%s: given twice" % path if first == path else
                             "%s: the same file as %s, given twice"
                             % (path, first))
        given[key] = path
    _stdin_once(files)


def _output_name(path, what):
    return "%s %s" % (what, path) if what else path


def check_output(path, inputs, what=None):
    """Raise UsageError if ``path`` cannot be created ("-" = stdout passes)
    or is one of the files ``inputs`` (the same file by device and inode,
    under any name: writing it would destroy the input).

    Messages are "cannot write [WHAT ]PATH: ...".
    """
    if path == "-":
        return
    name = _output_name(path, what)
    if os.path.isdir(path):
        raise UsageError("cannot write %s: is a directory" % name)
    for f in inputs:
        try:
            same = f != "-" and os.path.samefile(path, f)
        except OSError:     # the output does not exist yet
            same = False
        if same:
            raise UsageError("cannot write %s: it is the input %s (writing "
                             "it would destroy the input)"
                             % (name, display_text(f)))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError("cannot write %s: no such directory %s"
                         % (name, parent))
    if not os.access(parent, os.W_OK):
        raise UsageError("cannot write %s: permission denied" % name)


@contextlib.contextmanager
def open_output(path, mode="w", **kw):
    """``open(path, mode, **kw)`` for writing an output whole or not at
    all: the data goes to a temporary file next to ``path`` (a symlink's
    target), renamed over it when the block ends without an exception and
    removed otherwise, so that a failed write (a full disk) leaves no
    partial output, and an existing output as it was.  The file gets the
    mode a plain open() would give.  An existing output that is not a
    regular file (/dev/null, a FIFO) is written in place."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(path, mode, **kw) as f:
            yield f
        return
    if st is not None:
        perm = stat.S_IMODE(st.st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        perm = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(target),
                               suffix=".tmp", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
        os.chmod(tmp, perm)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def display_text(text):
    """Command-line text (a file name, --title) as the outputs can write
    it in UTF-8: bytes that are not UTF-8 (surrogate escapes in argv)
    become U+FFFD."""
    return os.fsencode(text).decode("utf-8", "replace")


def input_error(e):
    """The UsageError for an OSError raised while reading the input."""
    return UsageError("%s: %s" % (e.filename or "input", e.strerror or e))


def output_error(path, e, what=None):
    """The UsageError for an OSError raised while writing ``path``."""
    return UsageError("cannot write %s: %s" % (_output_name(path, what),
                                               e.strerror or e))


# ---------------------------------------------------------------------------
# reading


def selected_kinds(args):
    """The kinds for iter_records: None (every kind) for --kind all."""
    return None if "all" in args.kind else args.kind


def iter_selected(args, warn, stats=None, since_ns=None, until_ns=None):
    """iter_records over args.files, filtered by --kind/--pid/--host and
    the time range [since_ns, until_ns), with each production-mode record's
    effective duty set (sr.with_effective_duty: its 1/duty estimate covers
    the intervals with no window before it)."""
    return sr.with_effective_duty(sr.iter_records(
        args.files, kinds=selected_kinds(args), pid=args.pid, host=args.host,
        since_ns=since_ns, until_ns=until_ns, warn=warn, stats=stats,
        names=getattr(args, "input_names", None), known_kinds=KINDS))


def first_start_ns(args):
    """Earliest interval start of the matching records (None if none)."""
    first = None
    for rec in iter_selected(args, lambda m: None):
        s = min(sr.record_start_ns(rec), rec["ts_ns"])
        first = s if first is None else min(first, s)
    return first


def time_range(args, no_records):
    """(since_ns, until_ns) from args.since/args.until (None when not given).

    A relative time (+DURATION) counts from the first matching record's
    start, which takes an extra pass over the files (UsageError for stdin,
    and UsageError(no_records) when no record matches).
    """
    if not (args.since or args.until):
        return None, None
    t0 = None
    if any(t and t.strip().startswith("+") for t in (args.since, args.until)):
        streams = [f for f in args.files if is_stream(f)]
        if streams:
            raise UsageError("a relative --since/--until (+DURATION) reads "
                             "the input twice: it needs files, not stdin or "
                             "a pipe (%s)" % ", ".join(
                                 "<stdin>" if f == "-" else display_text(f)
                                 for f in streams))
        t0 = first_start_ns(args)
        if t0 is None:
            raise UsageError(no_records)
    try:
        since = sr.parse_time(args.since, t0) if args.since else None
        until = sr.parse_time(args.until, t0) if args.until else None
    except ValueError as e:
        raise UsageError(str(e))
    if since is not None and until is not None and until <= since:
        raise UsageError("--until must be later than --since")
    return since, until


def no_match_message(args, stats):
    """Why no record matched, from iter_records' ``stats``."""
    if stats.get("records", 0) == 0:
        return ("no valid records in the input (%d line%s read)"
                % (stats.get("lines", 0), "" if stats.get("lines") == 1 else "s"))
    kinds = ", ".join("%d %s" % (n, k) for k, n in sorted(stats["kinds"].items()))
    parts = ["%d record%s read (%s)" % (stats["records"],
                                        "" if stats["records"] == 1 else "s",
                                        kinds)]
    if args.kind != ["all"]:
        parts.append("--kind %s" % ",".join(args.kind))
    if stats.get("filtered_pid"):
        parts.append("%d excluded by --pid %d" % (stats["filtered_pid"], args.pid))
    if stats.get("filtered_host"):
        parts.append("%d excluded by --host %s" % (stats["filtered_host"],
                                                   args.host))
    if stats.get("filtered_time"):
        parts.append("%d outside --since/--until" % stats["filtered_time"])
    return "no records matched: " + "; ".join(parts)


# ---------------------------------------------------------------------------
# running


#: The kinds the library writes.  Any two count the same calls (README,
#: "Deltas add up"): why, for each kind beside delta.
KINDS = sr.KNOWN_KINDS
_AGAIN = {"thread": "a thread record repeats its thread's share of a delta",
          "spike": "a spike record repeats one frame of a delta",
          "cumulative": "a cumulative record holds all calls so far"}


def kind_warnings(used, warn, slices):
    """Warn about what the kinds of the records summed do to the sums.

    ``used``: dict kind -> records summed (e.g. stats["matched_kinds"]);
    ``slices``: the sums are per time slice (timeslices, report) rather
    than over the whole selection (convert)."""
    mixed = [k for k in KINDS if used.get(k)]
    if len(mixed) > 1:
        warn("%s records summed together (%s) count the same calls again "
             "(%s); choose one kind with --kind"
             % (", ".join(mixed[:-1]) + " and " + mixed[-1],
                ", ".join("%d %s" % (used[k], k) for k in mixed),
                "; ".join(_AGAIN[k] for k in mixed if k in _AGAIN)))
    n = used.get("cumulative", 0)
    if slices and n:
        warn("cumulative records hold running totals; summing them per "
             "slice does not give the time spent in each slice")
    elif n > 1:
        warn("%d cumulative records merged: each holds the running totals "
             "since its profiler started, so earlier calls count again; "
             "choose one (--seq, --since/--until)" % n)


def warner(prog):
    """A warn(message) function printing "PROG: warning: MESSAGE" to stderr."""
    def warn(msg):
        print("%s: warning: %s" % (prog, msg), file=sys.stderr)
    return warn


def run_main(prog, body, quiet_broken_pipe=True):
    """Call ``body()`` and return the exit status: 0; 2 after printing
    "PROG: error: MESSAGE" for a UsageError; 130 on Ctrl-C; and, with
    ``quiet_broken_pipe``, 1 without a traceback when stdout's reader has
    gone (e.g. piped into head)."""
    try:
        body()
    except UsageError as e:
        print("%s: error: %s" % (prog, e), file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not quiet_broken_pipe:
            raise
        # stop quietly; point stdout at /dev/null so that flushing it at
        # exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
