#!/usr/bin/python3
"""Aggregate statsprof profile records into time slices.

Reads the JSON-lines snapshots written by statsprof, sums one field
(cumtime, tottime or ncalls) per function per N-second slice, and prints a
text table of the top functions (plus "other") per slice.  Optionally
writes the same numbers as CSV and/or draws a stacked bar chart (PNG).

Run with --help for the full description.
"""

import csv
import datetime
import os
import sys

import statsprof_cli as cli
import statsprof_records as sr

PROG = "timeslices"

DESCRIPTION = """\
Aggregate statsprof profile records (JSON lines) into time slices.

Every matching record goes into the slice that contains its end time
(ts_ns); slices are aligned to the start (start_ns) of the earliest record,
so slice k covers [t0 + k*SLICE, t0 + (k+1)*SLICE).  With --align epoch,
slices start at multiples of SLICE since the Unix epoch instead (the first
one holding the earliest end time), so they are the slices a database query
grouping by intDiv(ts_ns, SLICE) gives, the same for every file of a
fleet.  For each slice the
chosen field is summed per function; the TOP functions with the largest
total over all slices get a column each, and all other functions are summed
into "other".  Empty slices between records are shown as zeros.

Output:
  - always (unless --csv -): a text table on stdout, one row per slice:
    slice start (UTC), seconds since t0, one column per top function
    ("function (file.py:line)"), "other", and a final "total" row;
  - --csv OUT: one row per slice: slice_start_iso, slice_start_ns, then one
    column per top function (headed by its full pstats key
    "file:line(function)") and "other";
  - --png OUT: a stacked bar chart of the same numbers (x = seconds since
    the first record, or UTC clock time with --clock; legend with short
    labels; y axis in seconds or calls).

Input: one or more files ("-" = stdin), in either layout of the jsonl sink
(one line per record, or layout=rows); gzip-compressed files are read
transparently.  Blank lines are ignored; malformed lines (garbage, or a
half-written last line from a killed writer) are skipped with one warning
on stderr naming file and line number.  A file given twice is an error; a
record read again (e.g. from a file and its .gz copy) is used once, with a
warning.  Only records of the chosen --kind (default "delta") are used;
other kinds (e.g. "cumulative") are skipped.

ncalls counts the TOTAL calls (12 for "12/3").  If a record was profiled
with a duty cycle (production mode), each of its values is divided by its
effective duty, unless --no-scale-duty is given (raw counts): the record's
"duty" (or observed_s/interval_s) times its interval, over its interval
plus the intervals with no window (no functions, no duty fields) since the
previous record of its run (pid and host) that held a window.  Its
estimate then covers those empty intervals too, and totals over time are
unbiased, except for the empty intervals after a run's last window, which
no estimate covers.  The estimate lands in the slice of the window's
record: slices holding only empty records show nothing (choose slices
longer than the gaps between windows for a smooth chart).  Where every
interval held a window this is the record's own duty (a duty that is
missing, zero or negative means no scaling), as in SQL on rows:
value / if(duty > 0, duty, 1).

Note: cumtime includes time spent in callees, so stacking cumtime of
nested functions counts that time more than once; tottime stacks to the
real time spent in Python code.
"""

EPILOG = """\
examples:
  %(prog)s --slice 10s prof.jsonl
  %(prog)s --slice 500ms --field tottime --top 5 --png out.png prof.jsonl.gz
  %(prog)s --pid 1234 --csv slices.csv run1.jsonl run2.jsonl
  zcat prof.jsonl.gz | %(prog)s --field ncalls -

exit status: 0 on success; 2 on bad arguments (e.g. bad --slice or --field),
missing/unreadable input files, no matching records, or unwritable output.
"""


#: Reported as 'timeslices: error: ...' with exit status 2.
UsageError = cli.UsageError


# ---------------------------------------------------------------------------
# argument parsing


def build_parser():
    p = cli.new_parser(PROG, DESCRIPTION, EPILOG,
                       files_help='statsprof JSON-lines file(s); "-" reads '
                                  "stdin; .gz files are decompressed")
    p.add_argument("--slice", type=cli.duration_arg,
                   default=sr.parse_duration("10s"),
                   metavar="DURATION",
                   help="slice length, e.g. 500ms, 10s, 2.5s, 1m, 1h; a bare "
                        "number means seconds (default: 10s)")
    p.add_argument("--align", choices=sr.ALIGNS, default="first",
                   help="where slices start: at the first record (first) or at "
                        "multiples of --slice since the Unix epoch (epoch), "
                        "as a database's intDiv(ts_ns, SLICE) groups them "
                        "(default: first)")
    p.add_argument("--field", choices=sr.FIELDS, default="cumtime",
                   help="field to sum: cumtime or tottime (seconds) or ncalls "
                        "(total calls) (default: cumtime)")
    p.add_argument("--top", type=cli.int_arg("--top", 0), default=8,
                   metavar="N",
                   help="number of functions shown separately, ranked by "
                        "their total over all slices; the rest is summed as "
                        '"other" (default: 8)')
    cli.add_filter_options(
        p,
        kind_help='record kind(s) to use, comma-separated, or "all" '
                  '(delta, thread, spike, cumulative; an unknown kind is '
                  'skipped with a warning) (default: delta).  Values are summed as they are, '
                  'so "cumulative" records give sums of running totals, '
                  'and more than one kind counts calls again (both warned)',
        scale_duty_help="divide values by the record's effective duty when "
                        "it was only partly observed, covering the intervals "
                        "with no window before it (default: on; off: raw "
                        "counts)")
    p.add_argument("--csv", metavar="OUT.csv",
                   help='write the slices as CSV to OUT.csv ("-" = stdout, '
                        "then the text table is not printed)")
    p.add_argument("--png", metavar="OUT.png",
                   help="draw a stacked bar chart to OUT.png (needs matplotlib)")
    p.add_argument("--title", metavar="T",
                   help="chart title (default: field, slice length and files)")
    p.add_argument("--clock", action="store_true",
                   help="chart x axis in UTC clock time instead of seconds "
                        "since the first record")
    return p


# ---------------------------------------------------------------------------
# formatting


def format_value(v, field):
    if field == "ncalls":
        if isinstance(v, int) or float(v).is_integer():
            return "%d" % v
        return "%.1f" % v
    return "%.6f" % v


def _offset_decimals(slice_ns):
    for decimals in range(0, 9):
        if slice_ns % (sr.NS_PER_S // 10 ** decimals) == 0:
            return decimals
    return 9


def format_offset(off_ns, slice_ns):
    return "%.*f" % (_offset_decimals(slice_ns), off_ns / sr.NS_PER_S)


def _truncate(text, width=40):
    return text if len(text) <= width else text[:width - 3] + "..."


class Summary:
    """Facts collected while reading, for headers and messages."""

    def __init__(self):
        self.pids = set()
        self.hosts = set()
        self.kinds = set()
        self.duty_scaled = 0

    def watch(self, records, scale_duty):
        for rec in records:
            self.pids.add(rec.get("pid"))
            self.hosts.add(rec.get("host"))
            self.kinds.add(rec.get("kind"))
            if scale_duty and sr.record_duty(rec) != 1.0:
                self.duty_scaled += 1
            yield rec


def _join(values):
    vals = sorted(str(v) for v in values if v is not None)
    if not vals:
        return "?"
    if len(vals) > 4:
        return "%s,... (%d)" % (",".join(vals[:4]), len(vals))
    return ",".join(vals)


def render_table(result):
    """The text table as a list of lines."""
    field, slice_ns = result["field"], result["slice_ns"]
    t0 = result["slices"][0]
    header = ["slice_start (UTC)", "t+s"] + [
        _truncate(lab) for lab in result["labels"]] + ["other"]
    rows = []
    for i, start in enumerate(result["slices"]):
        row = [sr.ns_to_iso(start), format_offset(start - t0, slice_ns)]
        row += [format_value(col[i], field) for col in result["columns"]]
        rows.append(row)
    totals = ["total", ""] + [format_value(sum(col), field)
                              for col in result["columns"]]
    widths = [max(len(r[c]) for r in [header, totals] + rows)
              for c in range(len(header))]

    def fmt(row):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    s = result["summary"]
    nfiles = len(result["files"])
    info = "# %s (%s) per %s slice; %d %s record%s from %d file%s; pid %s; host %s" % (
        field, sr.FIELD_UNITS[field], sr.format_duration(slice_ns),
        result["nrecords"], "/".join(sorted(s.kinds)),
        "" if result["nrecords"] == 1 else "s",
        nfiles, "" if nfiles == 1 else "s", _join(s.pids), _join(s.hosts))
    info2 = "# %d function%s, top %d shown%s" % (
        result["nfunctions"], "" if result["nfunctions"] == 1 else "s",
        len(result["top"]),
        "; %d records scaled by 1/duty" % s.duty_scaled if s.duty_scaled else "")
    lines = [info, info2, fmt(header)]
    lines += [fmt(r) for r in rows]
    lines.append("-" * len(fmt(header)))
    lines.append(fmt(totals))
    return lines


def write_csv(result, out):
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["slice_start_iso", "slice_start_ns"] + result["top"] + ["other"])
    for i, start in enumerate(result["slices"]):
        w.writerow([sr.ns_to_iso(start), start]
                   + [col[i] for col in result["columns"]])


def make_chart(result, title=None, clock=False):
    """A matplotlib Figure with the stacked bar chart."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    import matplotlib.dates as mdates

    field, slice_ns = result["field"], result["slice_ns"]
    slices = result["slices"]
    t0 = slices[0]
    fig = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    slice_s = slice_ns / sr.NS_PER_S
    if clock:
        xs = [mdates.date2num(datetime.datetime.fromtimestamp(
            s / sr.NS_PER_S, datetime.timezone.utc)) for s in slices]
        width = slice_s / 86400.0 * 0.9
    else:
        xs = [(s - t0) / sr.NS_PER_S for s in slices]
        width = slice_s * 0.9

    names = result["labels"] + ["other"]
    ntop = len(result["labels"])
    cmap = matplotlib.colormaps["tab10" if ntop <= 10 else "tab20"]
    bottom = [0.0] * len(slices)
    for i, (name, col) in enumerate(zip(names, result["columns"])):
        is_other = i == ntop
        if is_other and not any(col):
            continue
        color = "#b0b0b0" if is_other else cmap(i % cmap.N)
        ax.bar(xs, col, width=width, bottom=bottom, align="edge",
               color=color, label=_truncate(name, 60), linewidth=0)
        bottom = [b + v for b, v in zip(bottom, col)]

    if clock:
        loc = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.set_xlabel("time (UTC)")
    else:
        ax.set_xlabel("seconds since first record (%s)" % sr.ns_to_iso(t0))
    ylabel = "%s per %s slice (%s)" % (field, sr.format_duration(slice_ns),
                                       sr.FIELD_UNITS[field])
    if result["summary"].duty_scaled:
        ylabel += ", duty-scaled"
    ax.set_ylabel(ylabel)
    if title is None:
        files = ", ".join(os.path.basename(f) if f != "-" else "stdin"
                          for f in result["files"])
        title = "%s per %s slice - %s" % (field, sr.format_duration(slice_ns),
                                         _truncate(files, 80))
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize="small", title="function")
    return fig


# ---------------------------------------------------------------------------
# main


def _check_outputs(args):
    """Fail before doing any work if an output file cannot be created."""
    for what, path in (("CSV", args.csv), ("PNG", args.png)):
        if path:
            cli.check_output(path, args.files, what)
    if args.png == "-":
        raise UsageError("--png needs a file name")


def _no_match_message(args, stats):
    message = cli.no_match_message(args, stats)
    if stats["records"] == 0:
        message = "no records matched: " + message
    return message


def compute(args, warn):
    """Read, filter and aggregate; returns the result dict used for output."""
    stats = {}
    summary = Summary()
    records = cli.iter_selected(args, warn, stats)
    try:
        slices, table = sr.bucket_records(
            summary.watch(records, args.scale_duty), args.slice, args.field,
            scale_duty=args.scale_duty, align=args.align)
    except OSError as e:
        raise cli.input_error(e)
    except ValueError as e:
        raise UsageError(str(e))
    if not stats.get("matched"):
        raise UsageError(_no_match_message(args, stats))
    top = sr.top_functions(table, args.top)
    zero = 0 if args.field == "ncalls" else 0.0
    # sized by the slices: records without functions (idle intervals,
    # production mode's intervals with no window) leave the table empty
    columns = [table[k] for k in top] + [sr.other_values(table, top, zero,
                                                         len(slices))]
    return {
        "field": args.field, "slice_ns": args.slice, "files": args.files,
        "slices": slices, "table": table, "top": top,
        "labels": sr.short_labels(top), "columns": columns,
        "nrecords": stats["matched"], "nfunctions": len(table),
        "summary": summary, "stats": stats,
    }


def _run(args, warn):
    """Check, compute and write the outputs; UsageError on failure."""
    cli.check_inputs(args.files, stdin_last=True)
    _check_outputs(args)
    result = compute(args, warn)
    # by the records read: --kind all may or may not mix kinds
    cli.kind_warnings(result["stats"]["matched_kinds"], warn, slices=True)

    if args.csv != "-":
        sys.stdout.write("\n".join(render_table(result)) + "\n")
        sys.stdout.flush()
    if args.csv:
        if args.csv == "-":
            write_csv(result, sys.stdout)
        else:
            try:
                with cli.open_output(args.csv, "w", newline="",
                                     encoding="utf-8") as f:
                    write_csv(result, f)
            except OSError as e:
                raise cli.output_error(args.csv, e, "CSV")
    if args.png:
        try:
            fig = make_chart(result, title=args.title, clock=args.clock)
        except ImportError as e:
            raise UsageError("--png needs matplotlib (Debian package "
                             "python3-matplotlib): %s" % e)
        try:
            with cli.open_output(args.png, "wb") as f:
                fig.savefig(f, format="png")
        except OSError as e:
            raise cli.output_error(args.png, e, "PNG")


def main(argv=None):
    args = build_parser().parse_args(argv)
    return cli.run_main(PROG, lambda: _run(args, cli.warner(PROG)))


if __name__ == "__main__":
    sys.exit(main())
