"""statsprof for Python: a drop-in for cProfile on top of the statsprof C library.

    import statsprof, pstats
    with statsprof.Profile() as p:
        work()
    pstats.Stats(p).sort_stats("cumtime").print_stats()

`Profile` behaves like `cProfile.Profile` (enable, disable, create_stats,
stats, print_stats, dump_stats, run, runctx, runcall, getstats, clear,
context manager) and
counts calls exactly as cProfile does. Differences, on purpose:

* enable() and disable() (and the context manager's __enter__/__exit__) are
  not entries in the profile; cProfile lists
  "<method 'disable' of '_lsprof.Profiler' objects>".
* It profiles every thread of the interpreter, including threads started
  later, as the C library does; cProfile profiles the enabling thread only.
* `config=` takes the library's config string ("interval=1s;sink=jsonl:x"),
  so the same profile can also stream records to sinks. The default,
  "sink=none", writes nowhere, and a config without sink= (e.g.
  "clock=cpu") gets sink=none added; None means the library's defaults,
  which write statsprof.jsonl.
* A custom `timer` is not supported; the library's clock is used
  (config clock=wall|cpu).
* `snapshot()` returns a pstats.StatsProfile keyed "file:line(name)", with
  times not rounded to milliseconds.
* What the library reports from its own threads (a sink that fails, ...)
  is logged as warnings to logging.getLogger("statsprof") (looked up at
  each message; to stderr where logging would drop it), or passed to
  `log=`, a callable taking the message (python/README.md, "Messages").

`python3 -m statsprof [-o OUT] [-s SORT] [--config CONFIG] (-m module | script.py) [args]`
works like `python3 -m cProfile`.
"""

import collections
import marshal
import sys

from . import _statsprof
from ._statsprof import Control as _Control
from ._statsprof import Profiler

__all__ = ["Profile", "Profiler", "run", "runctx", "version"]

version = _statsprof.version


# Any of these turns production mode on (README.md, "Production mode").
_PRODUCTION_KEYS = {"duty", "window", "every", "max_overhead"}


def _package_config(config, builtins):
    """The library config for Profile(config=..., builtins=...): `config`
    plus sink=none unless it names a sink (the package writes no files
    unless asked; the library's default sink is statsprof.jsonl), plus
    builtins=off for builtins=False unless it sets builtins itself, plus
    trigger=timer in production mode unless it sets a trigger. None means
    the library's defaults, sinks included."""
    if config is None:
        return None if builtins else "builtins=off"
    if not isinstance(config, str):
        raise TypeError("config must be the library's config string (a str) or None, not %s"
                        % type(config).__name__)
    keys = [item.split("=", 1)[0].strip() for item in config.split(";")]
    extra = []
    if "sink" not in keys:
        extra.append("sink=none")
    if not builtins and "builtins" not in keys:
        extra.append("builtins=off")
    # Production mode opens and closes its windows in tick() or on the
    # timer thread; nothing here calls tick(), so without the timer the
    # first window never closed and everything was profiled.
    if _PRODUCTION_KEYS.intersection(keys) and "trigger" not in keys:
        extra.append("trigger=timer")
    return ";".join(([config] if config.strip() else []) + extra)


# cProfile.Profile.getstats()'s entries (_lsprof.profiler_entry and
# profiler_subentry), field for field.
profiler_entry = collections.namedtuple(
    "profiler_entry", "code callcount reccallcount totaltime inlinetime calls")
profiler_subentry = collections.namedtuple(
    "profiler_subentry", "code callcount reccallcount totaltime inlinetime")
# The profile keeps labels, not code objects: a Python function's entry
# has this in their place, with the attributes cProfile's readers take
# from a code object (cProfile.label, pstats).
code_label = collections.namedtuple("code_label", "co_filename co_firstlineno co_name")


def _code(key):
    """getstats()'s `code` for a stats key: a builtin's is its name, as
    cProfile's; a Python function's, a code_label."""
    file, line, name = key
    if (file, line) == ("~", 0):
        return name
    return code_label(file, line, name)


class Profile(Profiler):
    """Profile(timer=None, timeunit=0.0, subcalls=True, builtins=True, *, config="sink=none", log=None)

    A cProfile.Profile work-alike. `builtins=False` profiles Python functions
    only; `subcalls=False` leaves the caller dicts in `stats` empty.
    `config` is the C library's config string; without a sink= it writes
    nowhere (sink=none is added). None means the library's defaults (which
    write statsprof.jsonl).

    The library's messages (a sink that fails, a flush that gave up, ...)
    are logged as warnings to logging.getLogger("statsprof"), looked up at
    each message (written to stderr where logging would drop them: the
    logger disabled, or no handler and no logging.lastResort), or passed to
    `log`, a callable taking the message string, when given (not in a
    sub-interpreter). A thread of the package delivers them, whatever the
    main thread does; close() delivers what is left.
    """

    def __init__(self, timer=None, timeunit=0.0, subcalls=True, builtins=True, *, config="sink=none",
                 log=None):
        if timer is not None:
            raise ValueError("statsprof.Profile has its own clock; a custom timer is not "
                             "supported (use config='clock=cpu' for CPU time)")
        self._subcalls = bool(subcalls)
        super().__init__(_package_config(config, builtins), log)

    # Descriptors implemented in C: calling them produces no profile event,
    # so they never appear in the stats (see _statsprofmodule.c).
    enable = _Control("start")
    disable = _Control("stop")
    __enter__ = _Control("enter")
    __exit__ = _Control("exit")

    def create_stats(self):
        self.disable()
        self.snapshot_stats()

    def snapshot_stats(self):
        """Sets self.stats to everything counted so far (cProfile's format)."""
        self.stats = self.pstats_dict(self._subcalls)

    # Forgets everything counted so far, as cProfile's clear().
    clear = Profiler.reset

    def getstats(self):
        """What cProfile's getstats() gives, from the same counts: a list of
        profiler_entry (code, callcount, reccallcount, totaltime, inlinetime,
        calls: a list of profiler_subentry for the functions it called, or
        None). `code` is a code_label (co_filename, co_firstlineno,
        co_name), or a builtin's name as in cProfile."""
        stats = self.pstats_dict(self._subcalls)
        # One object per function: cProfile's snapshot_stats matches an
        # entry's callees to it by id(code).
        codes = {key: _code(key) for key in stats}
        calls = {key: [] for key in stats}
        for key, (cc, nc, tt, ct, callers) in stats.items():
            for caller, (cnc, ccc, ctt, cct) in callers.items():
                calls.setdefault(caller, []).append(
                    profiler_subentry(codes[key], cnc, cnc - ccc, cct, ctt))
        return [profiler_entry(codes[key], nc, nc - cc, ct, tt, calls[key] or None)
                for key, (cc, nc, tt, ct, callers) in stats.items()]

    def print_stats(self, sort=-1):
        import pstats
        pstats.Stats(self).strip_dirs().sort_stats(sort).print_stats()

    def dump_stats(self, file):
        # The stats first: a closed profile raises before the file is
        # opened, and so emptied.
        self.create_stats()
        with open(file, "wb") as f:
            marshal.dump(self.stats, f)

    def run(self, cmd):
        import __main__
        dict = __main__.__dict__
        return self.runctx(cmd, dict, dict)

    def runctx(self, cmd, globals, locals):
        self.enable()
        try:
            exec(cmd, globals, locals)
        finally:
            self.disable()
        return self

    def runcall(self, func, /, *args, **kw):
        self.enable()
        try:
            return func(*args, **kw)
        finally:
            self.disable()

    def snapshot(self, delta=False, thread_id=None):
        """The profile so far as a pstats.StatsProfile.

        Unlike pstats.Stats.get_stats_profile, func_profiles is keyed
        "file:line(name)" (so two methods named `update` stay two entries)
        and times are not rounded. delta=True covers only what happened since
        the previous delta snapshot (or emitted record) and moves that mark.
        The raw record, with callers, is Profiler.snapshot(self, ...).
        """
        import pstats
        rec = Profiler.snapshot(self, delta, thread_id)
        funcs = {}
        for f in rec["func_profiles"]:
            nc, cc = f["ncalls"], f["primitive_calls"]
            key = "%s:%d(%s)" % (f["file_name"], f["line_number"], f["function_name"])
            funcs[key] = pstats.FunctionProfile(
                ncalls=str(nc) if nc == cc else "%d/%d" % (nc, cc),
                tottime=f["tottime"],
                percall_tottime=f["percall_tottime"],
                cumtime=f["cumtime"],
                percall_cumtime=f["percall_cumtime"],
                file_name=f["file_name"],
                line_number=f["line_number"],
            )
        return pstats.StatsProfile(rec["total_tt"], funcs)


def _run_and_show(prof, statement, globals, locals, filename, sort):
    """cProfile's runctx helper: a SystemExit ends the run, not the report.
    Returns the SystemExit the code raised, or None. When the stats cannot
    be saved to `filename`, raises the OSError of that (FileNotFoundError,
    PermissionError, ... by errno, as cProfile does), kept as
    prof._write_error, with `run_error` what the run itself raised (or
    None), whose report comes first."""
    exit_status = None
    try:
        prof.runctx(statement, globals, locals)
    except SystemExit as exc:
        exit_status = exc
    except BaseException as exc:
        _show(prof, filename, sort, exc)
        raise
    _show(prof, filename, sort, None)
    return exit_status


def _show(prof, filename, sort, run_error):
    if filename is None:
        prof.print_stats(sort)
        return
    try:
        prof.dump_stats(filename)
    except OSError as exc:
        if exc.filename is None:  # a write, not the open, failed
            exc.filename = filename
        exc.run_error = run_error
        prof._write_error = exc
        raise


def run(statement, filename=None, sort=-1, *, config="sink=none"):
    """Like cProfile.run: profiles exec(statement) in __main__'s namespace,
    then prints the stats or saves them to `filename`."""
    import __main__
    dict = __main__.__dict__
    _run_and_show(Profile(config=config), statement, dict, dict, filename, sort)


def runctx(statement, globals, locals, filename=None, sort=-1, *, config="sink=none"):
    """Like cProfile.runctx."""
    _run_and_show(Profile(config=config), statement, globals, locals, filename, sort)
