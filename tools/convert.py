#!/usr/bin/python3
"""Convert statsprof profile records into pstats, callgrind, speedscope or
pprof files.

Run with --help for the full description.
"""

import json
import marshal
import sys

import statsprof_cli as cli
import statsprof_records as sr

PROG = "convert"
FORMATS = ("pstats", "callgrind", "speedscope", "pprof")

DESCRIPTION = """\
Convert statsprof profile records (JSON lines) into a profile file for
other tools.

Which records:
  --seq N              the record(s) with "seq": N (with per-thread records,
                       or several processes, narrow it with --pid/--host);
                       a seq found in two profiler runs of one process (a
                       restarted profiler's seq starts again at 1, or two
                       profilers write one file) is an error naming the
                       runs: choose one with --run;
  --run N              only the records of profiler run N of their process
                       (runs are numbered 1, 2, ... per pid and host in the
                       order read, among the records --kind, --pid, --host,
                       --since and --until select: a seq that does not
                       grow starts a run; errors and warnings list them);
  --since T/--until T  every record whose end time ts_ns is in [T, U), merged;
  (neither)            every matching record, merged.
Records of several processes or profiler runs are merged with a warning
naming them.  Merging sums, per function, the call counts (total and primitive), tottime
and cumtime, and per caller->callee edge the same four numbers, exactly as
pstats.Stats.add() does.  Only records of the chosen --kind (default
"delta") are used.  Duty-cycled records (fields "duty" or "observed_s") are
divided by their effective duty, unless --no-scale-duty (raw counts): their
duty over their interval plus the intervals with no window before them,
back to the previous window of their run (pid and host), so that the
estimate covers those empty intervals too (not the ones after a run's last
window); call counts are then rounded to whole numbers.

Formats (--to):
  pstats      marshal dump identical in shape to cProfile.Profile.dump_stats:
              {(file, line, name): (primitive_calls, ncalls, tottime, cumtime,
              {caller: (ncalls, primitive_calls, tottime, cumtime)})}.
              Open with python3 -m pstats OUT, snakeviz, gprof2dot, ...
              Functions that appear only as callers are added with zero
              counts, so every caller is a key of the dict.
  callgrind   callgrind text format for callgrind_annotate / KCachegrind:
              one event "us" (microseconds, integers): a function's self
              cost is its tottime, a call's cost is the callee's cumtime in
              calls from that caller (inclusive cost), "calls=" the number of
              calls.  Positions are the functions' first lines; built-ins
              have file "~" and line 0.  Recursive calls are written as they
              are recorded, so inclusive figures of recursive functions count
              the recursion like pstats' callers do.
  speedscope  speedscope JSON (https://www.speedscope.app/file-format-schema.json),
              one "sampled" profile in microseconds.  The records hold only
              caller->callee edges, not whole stacks, so stacks are rebuilt:
              each function's tottime is split over its callers in
              proportion to the callers' edge tottime, and from there upward
              in proportion to the edges' cumtime (time not explained by any
              recorded caller makes the function a root; recursive edges are
              not followed).  Paths lighter than 0.01%% of the total (or
              deeper than 64) end early.  Weights are whole microseconds and,
              per function, add up to its tottime (rounded), so the profile
              total equals the sum of tottime.  The flame graph is an
              estimate where a function is reached along several paths.
  pprof       gzipped profile.proto for go tool pprof, Grafana Pyroscope,
              Parca, Datadog, OpenTelemetry profiles.  Sample types calls
              (count), tottime and cumtime (nanoseconds; tottime is the
              default).  No stacks are made up: a sample is one function
              (its calls with no recorded caller and their own time, and
              its cumtime) or a caller->callee pair (the callee's calls and
              own time under that caller).  Per function, the samples
              ending in it (pprof's "flat") add up to its ncalls, tottime
              and cumtime; the totals of calls and tottime are the
              records' sums.  A flame graph is two levels deep: each
              function with the own time of its direct callees on top.
              "cum" of tottime is own time plus direct callees' own time,
              not cumtime (use -sample_index=cumtime, column flat).
              Samples are labelled pid, host and (--kind thread)
              thread_id/thread; the profile's time and duration are the
              records' first start and their span.

Records that hold no function calls (idle intervals, production mode's
intervals with no window) make an empty profile: an error for pstats,
whose reader rejects it (exit status 2, no file written); a warning for
the other formats, whose readers show it empty.

Input: one or more files ("-" = stdin; .gz read transparently).  Malformed
lines, such as a half-written last line, are skipped with a warning.  A
file given twice is an error; a record read again (e.g. from a file and
its .gz copy) is used once, with a warning.
"""

EPILOG = """\
examples:
  %(prog)s --to pstats -o run.prof prof.jsonl && python3 -m pstats run.prof
  %(prog)s --seq 42 --to callgrind -o callgrind.out.42 prof.jsonl
  %(prog)s --since 2026-11-25T14:30:00Z --until +5m --to speedscope -o p.json prof.jsonl
  %(prog)s --since +30s --until +40s --to pstats -o burst.prof prof.jsonl
  %(prog)s --to pprof -o prof.pb.gz prof.jsonl && go tool pprof -top prof.pb.gz

times (--since/--until): ISO-8601 (2026-11-25T14:30:05Z, no zone = UTC), ns
since the epoch, or +DURATION from the start of the first matching record.

exit status: 0 on success; 2 on bad arguments, unreadable input, no matching
records, no function calls for --to pstats, or an unwritable output.
"""


#: Reported as 'convert: error: ...' with exit status 2.
UsageError = cli.UsageError


# ---------------------------------------------------------------------------
# selection


def build_parser():
    p = cli.new_parser(PROG, DESCRIPTION, EPILOG)
    p.add_argument("--to", required=True, choices=FORMATS,
                   help="output format")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help='output file ("-" = stdout)')
    p.add_argument("--seq", type=int, metavar="N",
                   help="convert only the record(s) with this seq number")
    p.add_argument("--run", type=cli.int_arg("--run", 1), metavar="N",
                   help="convert only the records of profiler run N of "
                   "their process (see --seq)")
    p.add_argument("--since", metavar="T",
                   help="first time (inclusive) of record end times")
    p.add_argument("--until", metavar="T",
                   help="last time (exclusive) of record end times")
    cli.add_filter_options(p)
    return p


def origin(rec):
    """(pid, host, thread_id, thread_name) of a record: what the pprof
    output labels its samples with (thread fields only in "thread"
    records)."""
    return (rec.get("pid"), rec.get("host"), rec.get("thread_id"),
            rec.get("thread_name"))


def _run_name(where, run):
    host, pid = where
    return "pid %s on %s run %d" % (pid, host, run)


class _RunSpan:
    """What the records read of one profiler run hold: seqs and times."""
    __slots__ = ("first", "last", "start", "end")

    def __init__(self):
        self.first = self.last = self.start = self.end = None

    def add(self, rec):
        seq = rec.get("seq")
        if isinstance(seq, int):
            self.first = seq if self.first is None else min(self.first, seq)
            self.last = seq if self.last is None else max(self.last, seq)
        start, end = sr.record_start_ns(rec), rec["ts_ns"]
        self.start = start if self.start is None else min(self.start, start)
        self.end = end if self.end is None else max(self.end, end)

    def __str__(self):
        seqs = ("seq %d..%d" % (self.first, self.last)
                if self.first is not None else "no seq")
        return "%s, %s to %s" % (seqs, sr.ns_to_iso(self.start),
                                 sr.ns_to_iso(self.end))


def _runs_text(runs, spans):
    """ "pid 100 on h run 1 (seq 1..5, T to U), ..." """
    runs = sorted(runs, key=str)
    return ", ".join("%s (%s)" % (_run_name(w, r), spans[(w, r)])
                     for w, r in runs[:4]) + (", ..." if len(runs) > 4 else "")


def select(args, warn, by_origin=None):
    """Read and merge the selected records into a MergedProfile.

    With a dict ``by_origin``, the records are also merged per origin (see
    origin()) into by_origin[origin]."""
    if args.seq is not None and (args.since or args.until):
        raise UsageError("--seq cannot be combined with --since/--until")
    since_ns, until_ns = cli.time_range(args, cli.no_match_message(args, {}))
    stats = {}
    merged = sr.MergedProfile()
    seqs_seen = set()
    spans = {}              # ((host, pid), run) -> _RunSpan of its records
    merged_runs = set()     # the ((host, pid), run) of the records merged
    used = {}               # kind -> records merged
    for rec in cli.iter_selected(args, warn, stats, since_ns, until_ns):
        run = ((rec.get("host"), rec.get("pid")), rec[sr.RUN])
        spans.setdefault(run, _RunSpan()).add(rec)
        if args.run is not None and run[1] != args.run:
            continue
        if args.seq is not None:
            seqs_seen.add(rec.get("seq"))
            if rec.get("seq") != args.seq:
                continue
        merged_runs.add(run)
        merged.add(rec, args.scale_duty, warn)
        used[rec["kind"]] = used.get(rec["kind"], 0) + 1
        if by_origin is not None:
            part = by_origin.get(origin(rec))
            if part is None:
                part = by_origin[origin(rec)] = sr.MergedProfile()
            part.add(rec, args.scale_duty)
    if not stats.get("matched"):
        raise UsageError(cli.no_match_message(args, stats))
    if args.run is not None and not any(r == args.run for _w, r in spans):
        raise UsageError("no profiler run %d: the records read hold %s"
                         % (args.run, _runs_text(spans, spans)))
    files = ", ".join(cli.display_text(f) for f in args.files)
    if args.seq is not None:
        if not merged.nrecords:
            known = sorted(s for s in seqs_seen if isinstance(s, int))
            raise UsageError("no record with seq %d (seq %s)" % (
                args.seq, "%d..%d" % (known[0], known[-1]) if known else "missing"))
        origins = {w for w, _r in merged_runs}
        if len(origins) > 1:
            raise UsageError(
                "%d records with seq %d come from different processes (%s); "
                "choose one with --pid/--host" % (
                    merged.nrecords, args.seq,
                    ", ".join("pid %s on %s" % (p, h)
                              for h, p in sorted(origins, key=str))))
        if len(merged_runs) > 1:
            raise UsageError(
                "seq %d is ambiguous in %s: %d records with it come from %d "
                "profiler runs of one process (a restarted profiler, or two "
                "side by side): %s; choose one with --run N" % (
                    args.seq, files, merged.nrecords, len(merged_runs),
                    _runs_text(merged_runs, spans)))
    elif len(merged_runs) > 1:
        warn("%d profiler runs merged into one profile: %s; choose one with "
             "--pid/--host/--run (or --seq)"
             % (len(merged_runs), _runs_text(merged_runs, spans)))
    cli.kind_warnings(used, warn, slices=False)
    return merged


# ---------------------------------------------------------------------------
# pstats


def _count(v):
    """Counts become ints (duty-scaled ones are rounded)."""
    return v if isinstance(v, int) else int(round(v))


def pstats_dict(merged):
    """The cProfile-shaped stats dict of a MergedProfile."""
    labels = merged.labels
    stats = {}
    for key, (nc, pc, tt, ct) in merged.funcs.items():
        stats[labels[key]] = (_count(pc), _count(nc), float(tt), float(ct), {})
    for (caller, callee), (nc, pc, tt, ct) in merged.edges.items():
        if labels[callee] not in stats:  # cannot happen: edges come from funcs
            continue
        stats[labels[callee]][4][labels[caller]] = (
            _count(nc), _count(pc), float(tt), float(ct))
    for (caller, _callee) in merged.edges:
        if labels[caller] not in stats:
            stats[labels[caller]] = (0, 0, 0.0, 0.0, {})
    return stats


def write_pstats(merged, out):
    marshal.dump(pstats_dict(merged), out)


# ---------------------------------------------------------------------------
# callgrind


def _us(seconds):
    return int(round(seconds * 1e6))


def callgrind_lines(merged, files=()):
    """The callgrind file as a list of lines."""
    labels = merged.labels
    keys = set(merged.funcs)
    for caller, callee in merged.edges:
        keys.add(caller)
        keys.add(callee)
    # fn names are file-local in callgrind; disambiguate same-named
    # functions of one file by their line.
    by_file_name = {}
    for k in keys:
        f, ln, n = labels[k]
        by_file_name.setdefault((f, n), set()).add(ln)
    fn_name = {}
    for k in keys:
        f, ln, n = labels[k]
        fn_name[k] = n if len(by_file_name[(f, n)]) == 1 else "%s:%d" % (n, ln)

    fl_ids, fn_ids = {}, {}

    def fl(name):
        if name in fl_ids:
            return "(%d)" % fl_ids[name]
        fl_ids[name] = len(fl_ids) + 1
        return "(%d) %s" % (fl_ids[name], name)

    def fn(name):
        if name in fn_ids:
            return "(%d)" % fn_ids[name]
        fn_ids[name] = len(fn_ids) + 1
        return "(%d) %s" % (fn_ids[name], name)

    calls_from = {}
    for (caller, callee), vals in merged.edges.items():
        calls_from.setdefault(caller, []).append((callee, vals))

    total = 0
    body = []
    order = sorted(keys, key=lambda k: (labels[k][0], labels[k][1],
                                        labels[k][2]))
    for k in order:
        f, ln, _n = labels[k]
        body.append("")
        body.append("fl=" + fl(f))
        body.append("fn=" + fn(fn_name[k]))
        self_us = _us(merged.funcs[k][2]) if k in merged.funcs else 0
        total += self_us
        body.append("%d %d" % (ln, self_us))
        for callee, (nc, _pc, _tt, ct) in sorted(
                calls_from.get(k, ()), key=lambda e: labels[e[0]]):
            cost = _us(ct)
            ncalls = _count(nc)
            if ncalls <= 0:
                if cost <= 0:
                    continue
                ncalls = 1  # a cost line needs calls > 0
            cf, cln, _cn = labels[callee]
            body.append("cfl=" + fl(cf))
            body.append("cfn=" + fn(fn_name[callee]))
            body.append("calls=%d %d" % (ncalls, cln))
            body.append("%d %d" % (ln, cost))
    pids = sorted(str(p) for p in merged.pids if p is not None)
    head = [
        "# callgrind format",
        "version: 1",
        "creator: statsprof convert.py",
    ]
    if len(pids) == 1:
        head.append("pid: %s" % pids[0])
    head.append("cmd: %s" % " ".join(files))
    head.append("desc: %d record%s from %s to %s" % (
        merged.nrecords, "" if merged.nrecords == 1 else "s",
        sr.ns_to_iso(merged.start_ns), sr.ns_to_iso(merged.end_ns)))
    if merged.duty_scaled:
        head.append("desc: %d duty-cycled records scaled by 1/duty"
                    % merged.duty_scaled)
    head += ["positions: line",
             "event: us : Time (microseconds)",
             "events: us"]
    return head + body + ["", "totals: %d" % total]


def write_callgrind(merged, out, files=()):
    out.write("\n".join(callgrind_lines(merged, files)) + "\n")


# ---------------------------------------------------------------------------
# speedscope

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def build_stacks(merged, min_fraction=1e-4, max_depth=64):
    """Estimated stacks: dict (root_key, ..., leaf_key) -> weight (seconds).

    See the module help ("speedscope") for the method.  The weights of the
    stacks ending in a function add up to its tottime.
    """
    funcs = merged.funcs
    callers_of = {}
    for (caller, callee), (_nc, _pc, tt, ct) in merged.edges.items():
        callers_of.setdefault(callee, []).append((caller, tt, ct))
    total = sum(v[2] for v in funcs.values())
    threshold = total * min_fraction
    stacks = {}

    def emit(path, w):
        if w > 0:
            stack = tuple(reversed(path))
            stacks[stack] = stacks.get(stack, 0.0) + w

    def expand(path, w):
        x = path[-1]
        self_level = len(path) == 1
        stat = funcs.get(x)
        base = (stat[2] if self_level else stat[3]) if stat else 0.0
        edges = callers_of.get(x, ())
        known = sum(e[1] if self_level else e[2] for e in edges)
        denom = max(base, known)
        noncyclic = [(e[0], e[1] if self_level else e[2]) for e in edges
                     if e[0] not in path]
        nsum = sum(v for _c, v in noncyclic)
        if denom <= 0 or nsum <= 0:
            emit(path, w)
            return
        root_frac = max(0.0, base - known) / denom
        emit(path, w * root_frac)
        share = w * (1.0 - root_frac) / nsum
        for caller, v in sorted(noncyclic):
            wc = share * v
            if wc <= 0:
                continue
            if wc < threshold or len(path) >= max_depth:
                emit(path + [caller], wc)
            else:
                expand(path + [caller], wc)

    for key in sorted(funcs):
        tt = funcs[key][2]
        if tt > 0:
            expand([key], tt)
    return stacks


def apportion(target, weights):
    """Whole numbers that add up to ``target`` (an int >= 0), shared in
    proportion to ``weights`` (dict key -> number >= 0) by the largest
    remainder method, ties by key.  All zeros when the weights are."""
    total = sum(weights.values())
    if total <= 0 or target <= 0:
        return {k: 0 for k in weights}
    exact = {k: w * target / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    rest = target - sum(out.values())
    for k in sorted(weights, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def _integer_weights(stacks, merged):
    """Whole microseconds per stack; per leaf function they add up to
    round(tottime * 1e6)."""
    by_leaf = {}
    for stack, w in stacks.items():
        by_leaf.setdefault(stack[-1], {})[stack] = w
    out = {}
    for leaf, group in by_leaf.items():
        for s, v in apportion(_us(merged.funcs[leaf][2]), group).items():
            if v > 0:
                out[s] = v
    return out


def speedscope_doc(merged, name="statsprof"):
    labels = merged.labels
    stacks = _integer_weights(build_stacks(merged), merged)
    frame_index = {}
    frames = []

    def frame(key):
        i = frame_index.get(key)
        if i is None:
            f, ln, n = labels[key]
            fr = {"name": n}
            if f != "~":
                fr["file"] = f
                fr["line"] = ln
            i = frame_index[key] = len(frames)
            frames.append(fr)
        return i

    def sort_key(stack):
        return tuple(labels[k][2] + "\0" + labels[k][0] for k in stack)

    samples, weights = [], []
    for stack in sorted(stacks, key=sort_key):
        samples.append([frame(k) for k in stack])
        weights.append(stacks[stack])
    total = sum(weights)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": [{
            "type": "sampled",
            "name": name,
            "unit": "microseconds",
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        }],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": "statsprof convert.py",
    }


def write_speedscope(merged, out, name):
    json.dump(speedscope_doc(merged, name), out, separators=(",", ":"))
    out.write("\n")


# ---------------------------------------------------------------------------
# pprof

#: Sample types of the pprof output: calls, own time, cumulative time.
PPROF_TYPES = (("calls", "count"), ("tottime", "nanoseconds"),
               ("cumtime", "nanoseconds"))


def _ns(seconds):
    return int(round(seconds * 1e9))


def pprof_function_name(label):
    """The name pprof shows: "find_path (/srv/game/ai.py:42)"; built-ins
    ("~", 0, name) keep their name.  Names must be unique: pprof merges
    functions of the same name (two classes' update() methods)."""
    f, ln, n = label
    if f == "~" or (f == n and ln == 0):
        return n
    return "%s (%s:%d)" % (n, f, ln)


def _pprof_labels(org):
    pid, host, thread_id, thread_name = org
    labels = []
    if isinstance(pid, int):
        labels.append(("pid", None, pid, None))
    if host is not None:
        labels.append(("host", str(host), 0, None))
    if isinstance(thread_id, int):
        labels.append(("thread_id", None, thread_id, None))
    if thread_name is not None:
        labels.append(("thread", str(thread_name), 0, None))
    return labels


def pprof_samples(merged):
    """The samples of one MergedProfile: list of (stack, (calls, tottime_ns,
    cumtime_ns)), stack = (leaf key,) or (callee key, caller key).

    Each function's calls and tottime are shared out over its caller edges
    (the calls and own time it spent under each caller, as recorded) and a
    one-frame sample for the rest (calls with no recorded caller); the
    one-frame sample also carries its cumtime.  Per function the samples
    ending in it add up to its calls, round(tottime) and round(cumtime)
    exactly; no stack deeper than caller -> callee is made up.
    """
    incoming = {}
    for (caller, callee), vals in merged.edges.items():
        incoming.setdefault(callee, {})[caller] = vals
    out = []
    for key in sorted(merged.funcs):
        nc, _pc, tt, ct = merged.funcs[key]
        edges = incoming.get(key, {})
        shares = []
        for i, target in ((0, _count(nc)), (2, _ns(tt))):
            weights = {(key, c): max(v[i], 0) for c, v in edges.items()}
            weights[(key,)] = max((nc if i == 0 else tt)
                                  - sum(weights.values()), 0)
            shares.append(apportion(target, weights))
        cum = {(key,): _ns(ct)}
        for stack in sorted(shares[0]):
            values = (shares[0][stack], shares[1][stack], cum.get(stack, 0))
            if any(values):
                out.append((stack, values))
    return out


def pprof_profile(merged, by_origin, name):
    """A pprof_proto.Profile of the selected records: the samples of each
    origin (pid, host, thread) labelled with it."""
    import pprof_proto
    labels = merged.labels
    prof = pprof_proto.Profile(
        PPROF_TYPES, default_sample_type="tottime",
        time_nanos=merged.start_ns,
        duration_nanos=merged.end_ns - merged.start_ns,
        comments=["statsprof: " + name,
                  "samples are functions (own time, calls with no recorded "
                  "caller, cumtime) and caller->callee pairs (the callee's "
                  "calls and own time under that caller); no deeper stacks"]
        + (["%d duty-cycled records scaled by 1/duty" % merged.duty_scaled]
           if merged.duty_scaled else []))
    locations = {}

    def location(key):
        lid = locations.get(key)
        if lid is None:
            f, ln, n = labels[key]
            fid = prof.function(pprof_function_name((f, ln, n)),
                                "" if f == "~" else f, ln,
                                system_name="%s:%d(%s)" % (f, ln, n))
            lid = locations[key] = prof.location(fid, ln)
        return lid

    for org in sorted(by_origin, key=lambda o: tuple(map(str, o))):
        tags = _pprof_labels(org)
        for stack, values in pprof_samples(by_origin[org]):
            # sums of duty-scaled records can pass what int64 holds
            if not all(sr.INT64_MIN <= v <= sr.INT64_MAX for v in values):
                raise UsageError(
                    "cannot write pprof: a sample of %s (%s) does not fit "
                    "pprof's int64" % (labels[stack[0]][2],
                                       ", ".join(map(str, values))))
            prof.sample([location(k) for k in stack], values, tags)
    return prof


# ---------------------------------------------------------------------------
# main


def _profile_name(args, merged):
    what = ("seq %d" % args.seq if args.seq is not None else
            "%d record%s" % (merged.nrecords, "" if merged.nrecords == 1 else "s"))
    return "%s, %s to %s" % (what, sr.ns_to_iso(merged.start_ns),
                             sr.ns_to_iso(merged.end_ns))


def _run(args, warn):
    """Check, read, merge and write the output; UsageError on failure."""
    cli.check_inputs(args.files)
    cli.check_output(args.output, args.files)
    by_origin = {} if args.to == "pprof" else None
    try:
        merged = select(args, warn, by_origin)
    except OSError as e:
        raise cli.input_error(e)
    if not merged.funcs:
        empty = ("the %d selected record%s hold%s no function calls (idle "
                 "intervals, or production mode's intervals with no window)"
                 % (merged.nrecords, "" if merged.nrecords == 1 else "s",
                    "s" if merged.nrecords == 1 else ""))
        if args.to == "pstats":
            raise UsageError(empty + ": pstats.Stats cannot load an empty "
                             "profile")
        # callgrind_annotate, go tool pprof and speedscope read one
        warn("%s: the %s profile is empty" % (empty, args.to))
    # built before the output is created: it may fail (see pprof_profile)
    pprof = (pprof_profile(merged, by_origin, _profile_name(args, merged))
             if args.to == "pprof" else None)
    binary = args.to in ("pstats", "pprof")
    if args.output == "-" and binary and sys.stdout.isatty():
        raise UsageError("refusing to write binary %s data to a "
                         "terminal; use -o FILE" % args.to)
    def write(out):
        if args.to == "pstats":
            write_pstats(merged, out)
        elif args.to == "callgrind":
            write_callgrind(merged, out,
                            [cli.display_text(f) for f in args.files])
        elif args.to == "pprof":
            pprof.write_gz(out)
        else:
            write_speedscope(merged, out, _profile_name(args, merged))
        out.flush()

    try:
        if args.output == "-":
            write(sys.stdout.buffer if binary else sys.stdout)
        else:
            with cli.open_output(args.output, "wb" if binary else "w",
                                 **({} if binary else {"encoding": "utf-8"})
                                 ) as out:
                write(out)
    except OSError as e:
        raise cli.output_error(args.output, e)
    if merged.duty_scaled:
        warn("%d duty-cycled record%s scaled by 1/duty%s" % (
            merged.duty_scaled, "" if merged.duty_scaled == 1 else "s",
            "; call counts rounded" if args.to != "speedscope" else ""))
    if args.output != "-":
        print("%s: wrote %s (%s, %d record%s, %d functions)" % (
            PROG, args.output, args.to, merged.nrecords,
            "" if merged.nrecords == 1 else "s", len(merged.funcs)),
            file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return cli.run_main(PROG, lambda: _run(args, cli.warner(PROG)))


if __name__ == "__main__":
    sys.exit(main())
