"""`python3 -m statsprof`: the command line of `python3 -m cProfile`, plus --config."""

import errno
import io
import os
import runpy
import stat
import sys
import traceback
from optparse import OptionParser

from . import Profile, _run_and_show

USAGE = ("python3 -m statsprof [-o output_file_path] [-s sort] [--config CONFIG] "
         "[-m module | scriptfile] [arg] ...")


def _parser():
    import pstats
    parser = OptionParser(usage=USAGE)
    parser.allow_interspersed_args = False
    parser.add_option("-o", "--outfile", dest="outfile", default=None,
                      help="Save stats to <outfile> (pstats/cProfile format)")
    parser.add_option("-s", "--sort", dest="sort", default=2,
                      choices=sorted(pstats.Stats.sort_arg_dict_default),
                      help="Sort order when printing to stdout, based on pstats.Stats class")
    parser.add_option("-m", dest="module", action="store_true", default=False,
                      help="Profile a library module")
    parser.add_option("--config", dest="config", default="sink=none",
                      help="statsprof config string, e.g. 'interval=1s;sink=jsonl:prof.jsonl' "
                           "(default: %default)")
    return parser


def _fail(message):
    """A one-line error on stderr and exit status 2, as for bad usage."""
    sys.stderr.write("statsprof: error: %s\n" % message)
    sys.exit(2)


def _check_outfile(path, name):
    """Fails, as for a script that cannot be opened, unless a file can be
    written at `path` (`name` as given): the stats are saved after the
    run, which would be lost. The file is opened for appending, which
    changes nothing in one that exists, and removed again if it did not;
    asking os.access instead let through what only the open refuses (a
    name too long, /proc to root). A FIFO or a device is not opened, only
    asked os.access: a FIFO's reader would take that close for the end of
    the stats, and dump_stats then wait for ever for another reader."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        if not os.access(path, os.W_OK):
            _fail("cannot write %s: %s" % (name, os.strerror(errno.EACCES)))
        return
    existed = mode is not None
    try:
        # O_NONBLOCK: a FIFO with no reader yet fails (ENXIO) instead of
        # waiting for one; dump_stats will wait.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                     | os.O_NOCTTY | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            _fail("cannot write %s: %s" % (name, exc.strerror))
        return
    os.close(fd)
    if not existed:
        os.unlink(os.path.realpath(path))  # a dangling symlink's target


def _module_exists(name):
    """Whether module `name` (dotted) can be found, importing none of its
    packages where that can be helped, so that their imports are profiled:
    each package's submodules are looked for on the file system, where
    most packages keep them. Only a module not found so (a package that
    extends its __path__ or has a finder of its own) is asked for by
    importlib, which imports its packages."""
    import importlib.machinery
    import importlib.util
    parts = name.split(".")
    spec = importlib.util.find_spec(parts[0])
    for i in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            break
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[:i + 1]), spec.submodule_search_locations)
    else:
        if spec is not None:
            return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def main(argv=None):
    """Runs the script or module under the profiler, then prints or saves
    the stats. Exits with the script's exit status: sys.exit(n) gives n
    (after the stats are written), an uncaught exception its traceback and
    1; usage errors, a script or module that cannot be found and an
    output file that cannot be written exit 2 (checked before the run;
    one that goes away during the run exits 2 after it)."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    options, args = parser.parse_args(argv)
    if not args:
        # On stderr, as every other usage error (python -m cProfile prints
        # it on stdout when there are no arguments at all).
        parser.print_usage(sys.stderr)
        sys.exit(2)
    # The profiled code may chdir: fix the output path now.
    outname = options.outfile
    if outname == "":
        _fail("-o: the output file name is empty")
    if options.outfile is not None:
        options.outfile = os.path.abspath(options.outfile)
        _check_outfile(options.outfile, outname)

    # What cannot run (no such script or module) is reported before the
    # profiler exists, so that its sinks create no files.
    if options.module:
        try:
            found = _module_exists(args[0])
        except (ImportError, ValueError) as exc:
            _fail("cannot find module %r: %s" % (args[0], exc))
        if not found:
            _fail("no module named %r" % args[0])
        code = "run_module(modname, run_name='__main__')"
        globs = {"run_module": runpy.run_module, "modname": args[0]}
    else:
        import importlib.machinery
        progname = args[0]
        try:
            with io.open_code(progname) as fp:
                source = fp.read()
        except OSError as exc:
            _fail("can't open file %r: %s" % (progname, exc.strerror or exc))
        code = compile(source, progname, "exec")
        sys.path.insert(0, os.path.dirname(progname))
        spec = importlib.machinery.ModuleSpec(name="__main__", loader=None, origin=progname)
        globs = {
            "__spec__": spec,
            "__file__": spec.origin,
            "__name__": spec.name,
            "__package__": None,
            "__cached__": None,
        }
    # A bad --config is a usage error, reported before anything runs.
    try:
        prof = Profile(config=options.config)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    sys.argv[:] = args
    try:
        exit_status = _run_and_show(prof, code, globs, None, options.outfile,
                                    options.sort)
    except OSError as exc:
        if exc is getattr(prof, "_write_error", None):
            # the output went away during the run (checked before it)
            if exc.run_error is not None:
                traceback.print_exception(type(exc.run_error), exc.run_error,
                                          exc.run_error.__traceback__)
            _fail("cannot write %s: %s" % (outname, exc.strerror))
        if not isinstance(exc, BrokenPipeError):
            raise
        # Prevent "Exception ignored" during interpreter shutdown.
        sys.stdout = None
        sys.exit(exc.errno)
    if exit_status is not None:
        raise exit_status  # the script's sys.exit(), after the report
    return parser
