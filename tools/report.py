#!/usr/bin/python3
"""Write a self-contained HTML report of statsprof profile records.

Run with --help for the full description.
"""

import array
import datetime
import heapq
import json
import math
import operator
import os
import sys
import time

import statsprof_cli as cli
import statsprof_records as sr

PROG = "report"

#: Slice widths precomputed for the page (those that fit the time range).
CANDIDATE_WIDTHS_NS = tuple(s * sr.NS_PER_S for s in (1, 10, 60, 300, 3600, 86400))
FIELD_INDEX = {"ncalls": 0, "tottime": 2, "cumtime": 3}
#: The default slice width gives at most this many slices (bars).
AUTO_SLICES = 200
#: ... and is at least this share of the records' median interval, so that
#: a slice holds about one record or more.
AUTO_MIN_INTERVAL_SHARE = 0.9
#: Every slice lists at least this many functions, whatever the budget.
MIN_ROWS = 10
#: Largest time a callers entry may hold (see sr.MAX_SECONDS).
MAX_S = sr.MAX_SECONDS

DESCRIPTION = """\
Write one self-contained HTML file (no network, no server: open it in any
browser) for looking at statsprof profile records over time:

  - a stacked bar timeline of the TOP functions per time slice plus
    "other": slices start at the earliest record's start, and a record
    goes into the slice that holds the middle of its interval (so a 1 s
    record lands in the 1 s slice it covers; timeslices uses the end
    time); a last slice that the records cover only in part is drawn
    that much narrower; slice width and field (tottime, cumtime, ncalls)
    are chosen in the page;
  - a sortable function table (ncalls, tottime, cumtime, per-call times,
    file:line) for the whole range, or for the slice clicked in the chart;
  - the callers and callees of the function clicked in the table (summed
    from the records' "callers" edges), for the whole range or the slice.

Everything is aggregated here and embedded as compact JSON; the page only
selects.  Slice widths: 1s, 10s, 1m, 5m, 1h and 1d, each included when it
gives 2..MAX_SLICES slices, plus --slice (the initial choice; by default
the finest of those widths that gives at most 200 slices and is not
much shorter than the records' median interval).  To keep
the file small for long runs with many functions, each slice's table
lists at most --table-rows functions (its largest by cumtime, tottime and
ncalls, interleaved).  The rows of all slices share the budget
--max-table-entries, handed out coarsest width first, so the slices of
the finest widths may list fewer (at least 10).  Each slice's call edges
are limited to 2 per listed function, largest cumtime first.  The page
says when a list is cut.  The whole-range table lists every function (up to 10000).

--since/--until keep only the records ending in that time range.
Duty-cycled records (fields "duty" or "observed_s") are divided by their
effective duty unless --no-scale-duty (raw counts): their duty over their
interval plus the intervals with no window before them, back to the
previous window of their run (pid and host), whose work their estimate
stands for; intervals after a run's last window are not covered, and the
estimate lands in the slices of the window's record.  Input: files ("-" =
stdin, .gz read transparently); malformed lines such as a half-written
last line are skipped with a warning.  A file given twice is an error; a
record read again (e.g. from a file and its .gz copy) is used once, with a
warning.
"""

EPILOG = """\
examples:
  %(prog)s prof.jsonl                       # writes report.html
  %(prog)s -o out/report.html --slice 1m --field tottime day.jsonl.gz
  %(prog)s --pid 1234 --top 12 run1.jsonl run2.jsonl

exit status: 0 on success; 2 on bad arguments, unreadable input, no matching
records or an unwritable output.
"""


#: Reported as 'report: error: ...' with exit status 2.
UsageError = cli.UsageError


# ---------------------------------------------------------------------------
# arguments


def build_parser():
    p = cli.new_parser(PROG, DESCRIPTION, EPILOG)
    p.add_argument("-o", "--output", default="report.html", metavar="OUT.html",
                   help="HTML file to write (default: report.html)")
    p.add_argument("--slice", type=cli.duration_arg, default=None,
                   metavar="DURATION",
                   help="initial slice width, e.g. 1s, 10s, 1m (default: "
                        "from the run's length: the finest of 1s/10s/1m/5m/1h/1d "
                        "giving at most %d slices, not shorter than about the "
                        "records' interval); the page also offers those widths "
                        "where they fit" % AUTO_SLICES)
    p.add_argument("--field", choices=sr.FIELDS, default="tottime",
                   help="initial field of the chart and table sort (default: "
                        "tottime, which stacks to the time really spent; "
                        "cumtime counts nested calls in every caller)")
    p.add_argument("--top", type=cli.int_arg("--top", 1), default=10,
                   metavar="N",
                   help="functions stacked separately in the chart, ranked by "
                        'their total; the rest is "other" (default: 10)')
    cli.add_filter_options(p)
    p.add_argument("--title", metavar="T", help="page title")
    p.add_argument("--max-slices", type=cli.int_arg("--max-slices", 1),
                   default=1500, metavar="N",
                   help="offer a slice width only if it gives at most N slices "
                        "(bars) (default: 1500)")
    p.add_argument("--table-rows", type=cli.int_arg("--table-rows", 1),
                   default=200, metavar="N",
                   help="functions listed per slice (default: 200)")
    p.add_argument("--max-table-entries",
                   type=cli.int_arg("--max-table-entries", 1),
                   default=80000, metavar="N",
                   help="total per-slice table rows over all slices and widths, "
                        "shared out coarsest width first; every slice still "
                        "lists at least %d (default: 80000; a row with its call "
                        "edges takes about 65 bytes of HTML)" % MIN_ROWS)
    p.add_argument("--since", metavar="T",
                   help="use only records ending at or after T: ISO-8601 "
                        "(2026-11-25T14:30:05Z, no zone = UTC), ns since the "
                        "epoch, or +DURATION from the first record's start")
    p.add_argument("--until", metavar="T",
                   help="use only records ending before T (same forms)")
    return p


# ---------------------------------------------------------------------------
# accumulation

def _zeros(n):
    return array.array("d", bytes(8 * n))


class _Bucket:
    """Sums for one time bucket: f = [nc, pc, tt, ct] arrays by function
    id, e = the same by edge id, nrec = records."""
    __slots__ = ("f", "e", "nrec")

    def __init__(self, nf, ne):
        self.f = [_zeros(nf) for _ in range(4)]
        self.e = [_zeros(ne) for _ in range(4)]
        self.nrec = 0

    def grow(self, nf, ne):
        for a in self.f:
            if len(a) < nf:
                a.extend(_zeros(nf - len(a)))
        for a in self.e:
            if len(a) < ne:
                a.extend(_zeros(ne - len(a)))

    def add(self, other):
        """self += other (other may be shorter)."""
        for mine, theirs in ((self.f, other.f), (self.e, other.e)):
            for i in range(4):
                a, b = mine[i], theirs[i]
                n = len(b)
                a[:n] = array.array("d", map(operator.add, a[:n], b))
        self.nrec += other.nrec


class _Accumulator:
    """Buckets of width ``base`` anchored at ``anchor`` (bucket i covers
    [anchor + i*base, anchor + (i+1)*base)), by the middle of the record's
    interval (see Collector.run).  With
    ``coarsen`` (a function base -> larger base or None), the base grows
    whenever the buckets would span more than ``max_buckets``."""

    def __init__(self, base, anchor, max_buckets=None, coarsen=None):
        self.base, self.anchor = base, anchor
        self.max_buckets, self.coarsen = max_buckets, coarsen
        self.buckets = {}
        self.lo = self.hi = None

    def bucket(self, at, nf, ne):
        idx = (at - self.anchor) // self.base
        b = self.buckets.get(idx)
        if b is None:
            if self.coarsen is not None and self.lo is not None:
                lo, hi = min(self.lo, idx), max(self.hi, idx)
                while hi - lo + 1 > self.max_buckets:
                    nb = self.coarsen(self.base)
                    if nb is None:
                        break
                    self._rebase(nb)
                    idx = (at - self.anchor) // self.base
                    lo, hi = self.lo, self.hi
                    lo, hi = min(lo, idx), max(hi, idx)
                b = self.buckets.get(idx)
                if b is not None:
                    b.grow(nf, ne)
            if b is None:
                b = self.buckets[idx] = _Bucket(nf, ne)
            self.lo = idx if self.lo is None else min(self.lo, idx)
            self.hi = idx if self.hi is None else max(self.hi, idx)
        else:
            b.grow(nf, ne)
        return b

    def _rebase(self, nb):
        factor = nb // self.base
        merged = {}
        for idx in sorted(self.buckets):
            b = self.buckets[idx]
            j = idx // factor
            t = merged.get(j)
            if t is None:
                merged[j] = b
            else:
                nf = max(len(t.f[0]), len(b.f[0]))
                ne = max(len(t.e[0]), len(b.e[0]))
                t.grow(nf, ne)
                t.add(b)
        self.buckets = merged
        self.base = nb
        self.lo, self.hi = min(merged), max(merged)


class Collector:
    """Reads records once, assigning ids to functions and edges and adding
    their numbers to every accumulator."""

    def __init__(self, scale_duty, warn):
        self.scale_duty = scale_duty
        self.warn = warn
        self.fid = {}          # func key -> id
        self.keys = []         # id -> func key
        self.labels = []       # id -> (file, line, name)
        self.has_stats = []    # id -> seen in func_profiles (not only caller)
        self.eid = {}          # (caller id, callee id) -> edge id
        self.edges = []        # edge id -> (caller id, callee id)
        self.nrecords = 0
        self.duty_scaled = 0
        self.t0 = None         # earliest interval start / end
        self.tmax = None       # latest ts_ns
        self.tlast = None      # latest interval middle (where records go)
        self.intervals = []    # ts_ns - start of each record
        self.pids, self.hosts, self.kinds = set(), set(), set()
        self.bad_edges = 0

    def _new_func(self, key, rec):
        i = len(self.keys)
        self.fid[key] = i
        self.keys.append(key)
        self.labels.append(sr.func_label(rec, key))
        self.has_stats.append(False)
        return i

    def run(self, records, accumulators):
        fid, eid, edges = self.fid, self.eid, self.edges
        parse_ncalls = sr.parse_ncalls
        for rec in records:
            self.nrecords += 1
            ts = rec["ts_ns"]
            start = min(sr.record_start_ns(rec), ts)
            at = (start + ts) // 2     # a record goes where most of it is
            self.t0 = start if self.t0 is None else min(self.t0, start)
            self.tmax = ts if self.tmax is None else max(self.tmax, ts)
            self.tlast = at if self.tlast is None else max(self.tlast, at)
            self.intervals.append(ts - start)
            self.pids.add(rec.get("pid"))
            self.hosts.add(rec.get("host"))
            self.kinds.add(rec.get("kind"))
            duty = sr.record_duty(rec) if self.scale_duty else 1.0
            if duty != 1.0:
                self.duty_scaled += 1
            inv = 1.0 / duty
            fps = rec["func_profiles"]
            # ids first, so the buckets can be sized once per record
            for key, fp in fps.items():
                i = fid.get(key)
                if i is None:
                    i = self._new_func(key, rec)
                if not self.has_stats[i]:
                    self.has_stats[i] = True
                    self.labels[i] = sr.func_label(rec, key)
                callers = fp.get("callers")
                if callers and type(callers) is dict:
                    for ckey in callers:
                        c = fid.get(ckey)
                        if c is None:
                            c = self._new_func(ckey, rec)
                        if (c, i) not in eid:
                            eid[(c, i)] = len(edges)
                            edges.append((c, i))
            nf, ne = len(self.keys), len(edges)
            buckets = [acc.bucket(at, nf, ne) for acc in accumulators]
            for b in buckets:
                b.nrec += 1
            bad = 0
            for key, fp in fps.items():
                i = fid[key]
                s = fp["ncalls"]
                try:
                    nc = pc = int(s)
                except (ValueError, TypeError):
                    nc, pc = parse_ncalls(s)
                tt, ct = fp["tottime"], fp["cumtime"]
                if inv != 1.0:
                    nc, pc, tt, ct = nc * inv, pc * inv, tt * inv, ct * inv
                for b in buckets:
                    f = b.f
                    f[0][i] += nc
                    f[1][i] += pc
                    f[2][i] += tt
                    f[3][i] += ct
                callers = fp.get("callers")
                if not callers:
                    continue
                if type(callers) is not dict:
                    bad += 1
                    continue
                for ckey, e in callers.items():
                    vals = _edge_fast(e)
                    if vals is None:
                        try:
                            vals = sr._edge_values(e)
                        except ValueError as err:
                            bad += 1
                            if bad == 1:
                                self.warn("record seq %s: skipping bad callers "
                                          "entry of %s: %s"
                                          % (rec.get("seq"), key, err))
                            continue
                    enc, epc, ett, ect = vals
                    if inv != 1.0:
                        enc, epc, ett, ect = enc * inv, epc * inv, ett * inv, ect * inv
                    k = eid[(fid[ckey], i)]
                    for b in buckets:
                        e4 = b.e
                        e4[0][k] += enc
                        e4[1][k] += epc
                        e4[2][k] += ett
                        e4[3][k] += ect
            self.bad_edges += bad


def _edge_fast(e):
    """(nc, pc, tt, ct) of a well-formed callers entry, else None."""
    if type(e) is not dict:
        return None
    nc, pc = e.get("ncalls"), e.get("primitive_calls")
    tt, ct = e.get("tottime"), e.get("cumtime")
    if pc is None:
        pc = nc
    if (type(nc) is int and type(pc) is int
            and 0 <= nc <= sr.UINT64_MAX and 0 <= pc <= sr.UINT64_MAX
            and type(tt) in (float, int) and type(ct) in (float, int)
            and -MAX_S <= tt <= MAX_S and -MAX_S <= ct <= MAX_S):
        return nc, pc, tt, ct
    return None  # sr._edge_values tells why (or accepts "12/3" counts)


# ---------------------------------------------------------------------------
# slice widths


def nslices(t0, tlast, width):
    """Slices of ``width`` from t0 to the one holding tlast."""
    return (tlast - t0) // width + 1


def auto_width(t0, tlast, intervals, max_slices):
    """The default slice width: the finest candidate width that gives at
    most AUTO_SLICES (and max_slices) slices and is not much shorter than
    the records' median interval; else the coarsest candidate."""
    median = sorted(intervals)[len(intervals) // 2] if intervals else 0
    for w in CANDIDATE_WIDTHS_NS:
        if (w >= AUTO_MIN_INTERVAL_SHARE * median
                and nslices(t0, tlast, w) <= min(AUTO_SLICES, max_slices)):
            return w
    return CANDIDATE_WIDTHS_NS[-1]


def choose_widths(t0, tmax, requested, max_slices):
    """(widths, initial width, note): the widths offered in the page.
    ``tmax`` is where the last record goes (Collector.tlast)."""
    note = None
    widths = []
    for w in sorted(set(CANDIDATE_WIDTHS_NS) | {requested}):
        n = nslices(t0, tmax, w)
        if n <= max_slices and (n >= 2 or w == requested):
            widths.append(w)
    initial = requested
    if requested not in widths:
        larger = [w for w in widths if w > requested]
        if not larger:
            w = -(-(tmax - t0 + 1) // max_slices)
            w = -(-w // sr.NS_PER_S) * sr.NS_PER_S
            widths.append(w)
            larger = [w]
        initial = larger[0]
        note = ("--slice %s gives %d slices (more than --max-slices %d); "
                "starting with %s" % (sr.format_duration(requested),
                                      nslices(t0, tmax, requested), max_slices,
                                      sr.format_duration(initial)))
    if not any(nslices(t0, tmax, w) >= 2 for w in widths):
        # a single record: offer just the finest width that fits
        widths = sorted(set(widths[:1]) | {initial})
    return sorted(widths), initial, note


def _coarsen_chain(base):
    """Next larger candidate width that is a multiple of ``base``."""
    for w in CANDIDATE_WIDTHS_NS:
        if w > base and w % base == 0:
            return w
    return base * 10


# ---------------------------------------------------------------------------
# building the page data


def _t(v):
    """A time for the JSON: rounded to the microsecond."""
    r = round(v, 6)
    return 0 if r == 0 else r


def _c(v):
    """A count for the JSON: int when whole."""
    r = round(v, 2)
    return int(r) if r == int(r) else r


def _slices_of(width, acc, collector, derived):
    """List of _Bucket per slice of ``width`` (None for empty slices)."""
    t0 = collector.t0
    n = nslices(t0, collector.tlast, width)
    out = [None] * n
    nf, ne = len(collector.keys), len(collector.edges)
    # derive from a finer computed width when possible (cheaper), else
    # from the accumulator's buckets
    src = None
    for w, sl in derived:
        if width % w == 0:
            src = [(t0 + k * w, b) for k, b in enumerate(sl) if b is not None]
    if src is None:
        src = [(acc.anchor + idx * acc.base, b)
               for idx, b in sorted(acc.buckets.items())]
    for start, b in src:
        k = (start - t0) // width
        t = out[k]
        if t is None:
            b.grow(nf, ne)
            t = out[k] = _Bucket(0, 0)
            t.f = [array.array("d", a) for a in b.f]
            t.e = [array.array("d", a) for a in b.e]
            t.nrec = b.nrec
        else:
            b.grow(nf, ne)
            t.add(b)
    return out


def _rows(b, fids):
    out = []
    f0, f1, f2, f3 = b.f
    for i in fids:
        out += (i, _c(f0[i]), _c(f1[i]), _t(f2[i]), _t(f3[i]))
    return out


def _edge_rows(b, eids, edges):
    out = []
    e0, e1, e2, e3 = b.e
    for k in eids:
        c, i = edges[k]
        out += (c, i, _c(e0[k]), _c(e1[k]), _t(e2[k]), _t(e3[k]))
    return out


def _pick_rows(b, limit):
    """Function ids listed for a bucket: the largest by cumtime, tottime and
    ncalls, interleaved, up to ``limit``; and the number of functions with
    calls or time in it."""
    f0, f1, f2, f3 = b.f
    live = [i for i in range(len(f0)) if f0[i] or f2[i] or f3[i]]
    if len(live) <= limit:
        return sorted(live, key=lambda i: -f3[i]), len(live)
    ranked = [heapq.nlargest(limit, live, key=a.__getitem__) for a in (f3, f2, f0)]
    chosen, seen = [], set()
    for group in zip(*ranked):
        for i in group:
            if i not in seen:
                seen.add(i)
                chosen.append(i)
                if len(chosen) >= limit:
                    return chosen, len(live)
    return chosen, len(live)


def _pick_edges(b, fids, limit, edges):
    """Edge ids touching ``fids``, largest cumtime first, up to ``limit``;
    and whether some were left out."""
    e0, e2, e3 = b.e[0], b.e[2], b.e[3]
    fset = set(fids)
    live = [k for k in range(len(e0))
            if (e0[k] or e3[k] or e2[k])
            and (edges[k][0] in fset or edges[k][1] in fset)]
    if len(live) <= limit:
        return sorted(live, key=lambda k: -e3[k]), False
    return heapq.nlargest(limit, live, key=e3.__getitem__), True


def _row_limits(widths_n, table_rows, budget):
    """Rows per slice for each width: water-filling ``budget`` over the
    widths, coarsest (fewest slices) first."""
    limits = {}
    remaining = budget
    order = sorted(widths_n, key=lambda wn: wn[1])
    for pos, (w, n) in enumerate(order):
        share = remaining // (len(order) - pos)
        r = max(min(MIN_ROWS, table_rows), min(table_rows, share // max(n, 1)))
        limits[w] = r
        remaining -= r * n
    return limits


def build_data(args, collector, accs, widths, initial, note, stats, timings):
    t0, tmax = collector.t0, collector.tmax
    keys, edges = collector.keys, collector.edges
    labels = collector.labels
    nf, ne = len(keys), len(edges)

    # per-width slices
    derived = []
    slices_by_w = {}
    for w in widths:
        acc = accs.get(w) or accs["base"]
        sl = _slices_of(w, acc, collector, derived if w not in accs else [])
        slices_by_w[w] = sl
        if w not in accs:
            derived.append((w, sl))
    timings["slices"] = time.monotonic()

    # whole range
    whole = _Bucket(nf, ne)
    for b in slices_by_w[widths[-1]]:
        if b is not None:
            b.grow(nf, ne)
            whole.add(b)
    whole_rows, whole_n = _pick_rows(whole, 10000)
    whole_edges, whole_cut = _pick_edges(whole, whole_rows, 30000, edges)

    # global top functions per field (same as timeslices.top_functions:
    # largest total, ties by key)
    tops = {}
    for field, fi in FIELD_INDEX.items():
        a = whole.f[fi]
        ranked = sorted((i for i in range(nf) if collector.has_stats[i]),
                        key=lambda i: (-a[i], keys[i]))
        tops[field] = ranked[:args.top]

    limits = _row_limits([(w, len(slices_by_w[w])) for w in widths],
                         args.table_rows, args.max_table_entries)
    wdata = []
    for w in widths:
        sl = slices_by_w[w]
        series = {}
        for field, fi in FIELD_INDEX.items():
            conv = _c if field == "ncalls" else _t
            top = tops[field]
            cols = [[] for _ in range(len(top) + 1)]
            for b in sl:
                if b is None:
                    for col in cols:
                        col.append(0)
                    continue
                a = b.f[fi]
                s = 0.0
                for j, i in enumerate(top):
                    v = a[i] if i < len(a) else 0.0
                    s += v
                    cols[j].append(conv(v))
                rest = math.fsum(a) - s
                cols[-1].append(conv(rest if rest > 1e-9 * max(s, 1) else 0.0))
            series[field] = cols
        sdata = []
        limit = limits[w]
        for b in sl:
            if b is None:
                sdata.append(0)
                continue
            fids, nlive = _pick_rows(b, limit)
            eids, cut = _pick_edges(b, fids, 2 * limit, edges)
            d = {"k": b.nrec, "n": nlive, "r": _rows(b, fids),
                 "e": _edge_rows(b, eids, edges)}
            if cut:
                d["ecut"] = 1
            sdata.append(d)
        wdata.append({"ns": str(w), "s": w / sr.NS_PER_S,
                      "label": sr.format_duration(w), "n": len(sl),
                      "rows": limit, "series": series, "slices": sdata})
    timings["tables"] = time.monotonic()

    shown = [cli.display_text(f)
             for f in getattr(args, "display_files", args.files)]
    files = [f if f == "-" else os.path.abspath(f) for f in shown]
    title = cli.display_text(args.title) if args.title else (
        "statsprof report: %s" % ", ".join(
            os.path.basename(f) if f != "-" else "stdin" for f in shown))
    return {
        "v": 1,
        "title": title,
        "files": files,
        "generated": datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "t0": sr.ns_to_iso(t0),
        "t0_ms": t0 / 1e6,
        "end": sr.ns_to_iso(tmax),
        "range_s": (tmax - t0) / sr.NS_PER_S,
        "end_ms": tmax / 1e6,
        "nrec": collector.nrecords,
        "pids": sorted(str(p) for p in collector.pids if p is not None),
        "hosts": sorted(str(h) for h in collector.hosts if h is not None),
        "kinds": sorted(str(k) for k in collector.kinds),
        "duty": collector.duty_scaled,
        "malformed": stats.get("malformed", 0),
        "note": note,
        "funcs": [[lab[0], lab[1], lab[2], sr.short_label(k), k]
                  for k, lab in zip(keys, labels)],
        "top": tops,
        "all": {"k": collector.nrecords, "n": whole_n,
                "r": _rows(whole, whole_rows),
                "e": _edge_rows(whole, whole_edges, edges),
                **({"ecut": 1} if whole_cut else {})},
        "widths": wdata,
        "initial": {"width": widths.index(initial), "field": args.field},
    }


def collect(args, warn):
    """Read the records; returns (collector, accumulators, widths,
    initial width, note, stats)."""
    since_ns, until_ns = cli.time_range(
        args, "no records matched (needed for a relative --since/--until)")

    def records(stats, warn=warn):
        return cli.iter_selected(args, warn, stats, since_ns, until_ns)

    stats = {}
    col = Collector(args.scale_duty, warn)
    base0 = math.gcd(sr.NS_PER_S, args.slice or sr.NS_PER_S)
    acc = None

    def first_pass(recs):
        nonlocal acc
        for rec in recs:
            if acc is None:
                anchor = min(sr.record_start_ns(rec), rec["ts_ns"])
                acc = _Accumulator(base0, anchor, args.max_slices + 1,
                                   _coarsen_chain)
            yield rec

    lazy = _LazyAccs(lambda: acc)
    try:
        col.run(first_pass(records(stats)), lazy)
    except OSError as e:
        raise cli.input_error(e)
    if not stats.get("matched"):
        raise UsageError(cli.no_match_message(args, stats))
    if col.bad_edges:
        warn("%d malformed callers entries skipped" % col.bad_edges)
    requested = args.slice or auto_width(col.t0, col.tlast, col.intervals,
                                         args.max_slices)
    widths, initial, note = choose_widths(col.t0, col.tlast, requested,
                                          args.max_slices)
    accs = {"base": acc}
    aligned = (acc.anchor - col.t0) % acc.base == 0
    missing = [w for w in widths if not aligned or w % acc.base]
    if missing:
        # widths the first pass cannot give: read again, bucketing by them
        if any(cli.is_stream(f) for f in args.files):
            raise UsageError("internal: stdin cannot be read twice")
        extra = {w: _Accumulator(w, col.t0) for w in missing}
        col2 = Collector(args.scale_duty, lambda m: None)
        col2.fid, col2.keys, col2.labels = col.fid, col.keys, col.labels
        col2.has_stats, col2.eid, col2.edges = col.has_stats, col.eid, col.edges
        col2.run(records({}, lambda m: None), list(extra.values()))
        accs.update(extra)
    return col, accs, widths, initial, note, stats


class _LazyAccs:
    """The accumulator list for Collector.run, created on the first record."""

    def __init__(self, get):
        self.get = get

    def __iter__(self):
        a = self.get()
        return iter([a] if a is not None else [])


# ---------------------------------------------------------------------------
# HTML


def embed_json(data):
    """JSON safe inside <script>: every "<" is escaped (it can only occur
    inside strings)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).replace("<", "\\u003c")


def render_html(data):
    return (HTML_TEMPLATE
            .replace("__TITLE__", _html_escape(data["title"]))
            .replace("__DATA__", embed_json(data)))


def _html_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


HTML_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --fg:#1d2330; --muted:#5b6472; --line:#dde1e7; --bg:#ffffff; --panel:#f6f7f9; --accent:#2563eb; --sel:#fff3c4; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 10px 18px 6px; border-bottom: 1px solid var(--line); }
h1 { font-size: 17px; margin: 0 0 2px; font-weight: 600; }
h2 { font-size: 14px; margin: 0; font-weight: 600; }
h3 { font-size: 12px; margin: 8px 0 4px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
#meta { color: var(--muted); font-size: 12px; }
#meta .warn { color: #a15c00; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; padding: 8px 18px; }
.group { display: inline-flex; align-items: center; gap: 4px; }
.group > span { color: var(--muted); margin-right: 2px; }
button { font: inherit; border: 1px solid var(--line); background: #fff; padding: 3px 9px; border-radius: 4px; cursor: pointer; color: var(--fg); }
button:hover { border-color: #aab2bf; }
button.on { background: var(--accent); border-color: var(--accent); color: #fff; }
#chartbox { position: relative; padding: 0 18px; }
#chart { display: block; width: 100%; height: 300px; user-select: none; }
#chart .axis text { fill: var(--muted); font-size: 11px; }
#chart .axis line, #chart .axis path { stroke: #c4c9d1; }
#chart .grid line { stroke: #eef0f3; }
#chart .hit { fill: transparent; cursor: pointer; }
#chart .hit:hover { fill: rgba(37, 99, 235, .08); }
#chart .selbox { fill: none; stroke: #1d2330; stroke-width: 2; pointer-events: none; }
#chart .selmark { fill: #1d2330; pointer-events: none; }
#chart .dim { fill: rgba(255, 255, 255, .45); pointer-events: none; }
#chart path.series.hl { stroke: #1d2330; stroke-width: 1.5; }
#legend .item.hl { font-weight: 600; }
#tip { position: absolute; pointer-events: none; background: rgba(29, 35, 48, .94); color: #fff; padding: 6px 8px; border-radius: 4px; font-size: 12px; display: none; max-width: 420px; z-index: 5; }
#tip table { width: auto; margin-top: 3px; }
#tip td { padding: 0 4px; white-space: nowrap; border: none; text-align: left; }
#tip td.v { text-align: right; font-variant-numeric: tabular-nums; }
#legend { padding: 4px 18px 8px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
#legend .item { display: inline-flex; align-items: center; gap: 5px; cursor: pointer; max-width: 360px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#legend .item.other { cursor: default; color: var(--muted); }
#legend .sw { width: 11px; height: 11px; border-radius: 2px; flex: none; }
.panes { display: flex; gap: 18px; padding: 6px 18px 18px; align-items: flex-start; }
#tablesec { flex: 3 1 0; min-width: 0; }
#callsec { flex: 2 1 0; min-width: 0; }
.bar { display: flex; align-items: center; gap: 10px; margin-bottom: 6px; flex-wrap: wrap; }
.note { color: var(--muted); font-size: 12px; margin: 2px 0 6px; }
input[type=search] { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; width: 200px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { text-align: right; background: var(--panel); position: sticky; top: 0; font-weight: 600; cursor: pointer; user-select: none; }
th.l, td.l { text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.fn { text-align: left; max-width: var(--fnmax, 330px); overflow: hidden; text-overflow: ellipsis; }
td.loc { text-align: left; color: var(--muted); max-width: 212px; overflow: hidden; text-overflow: ellipsis; }
th.sorted { color: var(--accent); }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f1f5ff; }
tbody tr.selected { background: var(--sel); }
.tablewrap { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 4px; }
.callwrap { max-height: 260px; overflow: auto; border: 1px solid var(--line); border-radius: 4px; }
.chip { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 5px; vertical-align: baseline; }
.empty { color: var(--muted); padding: 8px; }
#fstats { font-size: 12px; color: var(--muted); margin: 4px 0; }
</style>
</head>
<body>
<header><h1 id="title"></h1><div id="meta"></div></header>
<div class="controls">
  <div class="group" id="widths"><span>Slice</span></div>
  <div class="group" id="fields"><span>Field</span></div>
  <div class="note" id="chartnote"></div>
</div>
<div id="chartbox"><svg id="chart" xmlns="http://www.w3.org/2000/svg"></svg><div id="tip"></div></div>
<div id="legend"></div>
<div class="panes">
  <section id="tablesec">
    <div class="bar"><h2 id="tabletitle"></h2><button id="wholebtn">Whole range</button>
      <input type="search" id="filter" placeholder="filter functions"></div>
    <div class="note" id="tablenote"></div>
    <div class="tablewrap"><table id="ftable"><thead><tr>
      <th class="l" data-col="name">function</th><th data-col="nc">ncalls</th><th data-col="tt">tottime</th>
      <th data-col="ttpc">percall</th><th data-col="ct">cumtime</th><th data-col="ctpc">percall</th>
      <th class="l" data-col="loc">file:line</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="callsec">
    <h2 id="calltitle">Callers and callees</h2>
    <div id="fstats">Click a function in the table (or the legend) to see who calls it and what it calls.</div>
    <h3>called by</h3>
    <div class="callwrap"><table id="callers"><thead><tr><th class="l">caller</th><th>ncalls</th><th>tottime</th><th>cumtime</th></tr></thead><tbody></tbody></table></div>
    <h3>calls</h3>
    <div class="callwrap"><table id="callees"><thead><tr><th class="l">callee</th><th>ncalls</th><th>tottime</th><th>cumtime</th></tr></thead><tbody></tbody></table></div>
    <div class="note" id="callnote"></div>
  </section>
</div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(function () {
const D = JSON.parse(document.getElementById("data").textContent);
const F = D.funcs;                      // id -> [file, line, name, short, key]
const FIELDS = ["cumtime", "tottime", "ncalls"];
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#3b5ba5", "#d37295", "#a0cbe8", "#8cd17d", "#f1ce63",
  "#79706e", "#bab0ac", "#499894", "#d4a6c8", "#fabfd2", "#b6992d"];
const OTHER = "#c7cbd1";
const MAXROWS = 1000;
const S = { w: D.initial.width, field: D.initial.field, slice: -1, func: -1,
            sort: null, asc: false, filter: "" };
window.statsprofReport = { state: S, data: D };

const $ = (id) => document.getElementById(id);
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c])); }
function plural(n, w) { return n + " " + w + (n === 1 ? "" : "s"); }
function fmtT(v) { return v.toFixed(6); }
function fmtC(v) { return Number.isInteger(v) ? String(v) : v.toFixed(1); }
function fmtNc(nc, pc) { return nc === pc ? fmtC(nc) : fmtC(nc) + "/" + fmtC(pc); }
function fmtAxis(v, field) {
  if (field === "ncalls") {
    if (v >= 1e6) return (v / 1e6).toPrecision(3).replace(/\.?0+$/, "") + "M";
    if (v >= 1e3) return (v / 1e3).toPrecision(3).replace(/\.?0+$/, "") + "k";
    return String(Math.round(v * 100) / 100);
  }
  if (v === 0) return "0";
  if (v >= 1) return (+v.toPrecision(3)) + " s";
  if (v >= 1e-3) return (+(v * 1e3).toPrecision(3)) + " ms";
  return (+(v * 1e6).toPrecision(3)) + " µs";
}
function fmtVal(v, field) { return field === "ncalls" ? fmtC(v) : fmtT(v); }
function loc(id) { const f = F[id]; return f[0] === "~" ? "~ (built-in)" : f[0] + ":" + f[1]; }
// file:line shortened from the left, a directory at a time, until it fits
// px pixels, so that the file name and line stay visible:
// "…/host_examples/game/ai.py:42" (the full text is the cell's title).
const LOCPX = 200, shortLocs = new Map();
let measureCtx = null;
function shortLoc(s, px) {
  const memo = px + " " + s;
  let out = shortLocs.get(memo);
  if (out !== undefined) return out;
  if (!measureCtx) {
    measureCtx = document.createElement("canvas").getContext("2d");
    measureCtx.font = getComputedStyle(document.querySelector("#ftable")).font;
  }
  out = s;
  for (let i = s.indexOf("/", 1); measureCtx.measureText(out).width > px && i >= 0 && i < s.lastIndexOf("/") + 1; i = s.indexOf("/", i + 1))
    out = "…" + s.slice(i);
  shortLocs.set(memo, out);
  return out;
}
// When the table is wider than its box, take the excess from the
// file:line column (down to the file name and line), then from the
// function column (its names end in "…"; the full name is the title).
const FNPX = 330;
function fitTable(tbody) {
  const table = tbody.closest("table"), wrap = tbody.closest(".tablewrap");
  table.style.setProperty("--fnmax", FNPX + "px");
  let over = wrap.scrollWidth - wrap.clientWidth;
  if (over <= 0) return;
  const px = Math.max(40, LOCPX - over);
  tbody.querySelectorAll("td.loc").forEach(td => { td.textContent = shortLoc(td.title, px); });
  over = wrap.scrollWidth - wrap.clientWidth;
  if (over > 0) table.style.setProperty("--fnmax", Math.max(120, FNPX - over) + "px");
}
function clock(ms, withMs) {
  const iso = new Date(ms).toISOString();
  return withMs ? iso.slice(11, 23) : iso.slice(11, 19);
}
function widthObj() { return D.widths[S.w]; }
function sliceStartMs(i) { return D.t0_ms + i * widthObj().s * 1000; }
// The share of slice i that the records' time range covers: 1, except for
// a last slice that the run ends inside.
function coverage(i) {
  const W = widthObj();
  return Math.min(1, Math.max(0, (D.end_ms - sliceStartMs(i)) / (W.s * 1000)));
}
function fmtSecs(s) { return (+s.toPrecision(3)) + " s"; }
function sliceLabel(i) {
  const W = widthObj(), c = coverage(i), sub = W.s < 1 || D.t0_ms % 1000 !== 0 || c < 1;
  const a = sliceStartMs(i), b = a + W.s * 1000 * c;
  const day = new Date(a).toISOString().slice(0, 10);
  return day + " " + clock(a, sub) + "–" + clock(b, sub) + " UTC" +
    (c < 1 ? " (the run ends " + fmtSecs(W.s * c) + " into this " + W.label + " slice)" : "");
}

// ---------------------------------------------------------------- header
function header() {
  $("title").textContent = D.title;
  document.title = D.title;
  const parts = [];
  parts.push(plural(D.nrec, "record") + " (" + D.kinds.join(", ") + ")");
  parts.push(D.t0.replace("T", " ").slice(0, 19) + " to " + D.end.replace("T", " ").slice(0, 19) + " UTC");
  parts.push("pid " + (D.pids.join(", ") || "?") + " on " + (D.hosts.join(", ") || "?"));
  parts.push(plural(F.length, "function"));
  let html = esc(parts.join(" · ")) + "<br>" + esc(D.files.join(", "));
  if (D.duty) html += "<br><span class=warn>" + esc(plural(D.duty, "record") + " duty-cycled: values divided by the effective duty (estimates for the whole interval and the intervals with no window before it)") + "</span>";
  if (D.malformed) html += "<br><span class=warn>" + esc(plural(D.malformed, "malformed line") + " skipped") + "</span>";
  if (D.note) html += "<br><span class=warn>" + esc(D.note) + "</span>";
  $("meta").innerHTML = html;
}

function controls() {
  const wbox = $("widths"), fbox = $("fields");
  D.widths.forEach((W, i) => {
    const b = document.createElement("button");
    b.textContent = W.label; b.dataset.w = i; b.title = plural(W.n, "slice");
    b.onclick = () => { S.w = i; S.slice = -1; renderAll(); };
    wbox.appendChild(b);
  });
  FIELDS.forEach(f => {
    const b = document.createElement("button");
    b.textContent = f; b.dataset.field = f;
    b.onclick = () => { S.field = f; S.sort = null; renderAll(); };
    fbox.appendChild(b);
  });
  $("wholebtn").onclick = () => { S.slice = -1; renderChart(); renderTable(); renderCalls(); };
  $("filter").oninput = (e) => { S.filter = e.target.value.toLowerCase(); renderTable(); };
  document.querySelectorAll("#ftable th").forEach(th => {
    th.onclick = () => {
      const c = th.dataset.col;
      if (S.sort === c) S.asc = !S.asc; else { S.sort = c; S.asc = (c === "name" || c === "loc"); }
      renderTable();
    };
  });
  document.addEventListener("keydown", e => {
    if (e.target.tagName === "INPUT") return;
    const W = widthObj();
    if (e.key === "Escape") { S.slice = -1; }
    else if (e.key === "ArrowRight" && S.slice < W.n - 1) { S.slice++; }
    else if (e.key === "ArrowLeft" && S.slice > 0) { S.slice--; }
    else return;
    renderChart(); renderTable(); renderCalls();
  });
  window.addEventListener("resize", () => { renderChart(); renderTable(); });
  document.addEventListener("mousemove", e => { if (!e.target.closest || !e.target.closest("#hits")) $("tip").style.display = "none"; });
}

// ----------------------------------------------------------------- chart
function niceStep(max, n) {
  const raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / p;
  return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * p;
}
function colorOf(rank) { return PALETTE[rank % PALETTE.length]; }

function renderChart() {
  const W = widthObj(), field = S.field, cols = W.series[field], top = D.top[field];
  document.querySelectorAll("#widths button").forEach(b => b.classList.toggle("on", +b.dataset.w === S.w));
  document.querySelectorAll("#fields button").forEach(b => b.classList.toggle("on", b.dataset.field === field));
  const lastCover = coverage(W.n - 1);
  $("chartnote").textContent = (field === "cumtime"
    ? "cumtime includes callees, so nested functions are stacked more than once; tottime stacks to the real time. "
    : "") + (lastCover < 1 ? "The last bar is narrower: the run covers " + fmtSecs(W.s * lastCover) + " of its " + W.label + "." : "");
  const svg = $("chart");
  const width = Math.max(svg.clientWidth || 900, 300), height = svg.clientHeight || 300;
  const ml = 64, mr = 12, mt = 10, mb = 34, pw = width - ml - mr, ph = height - mt - mb;
  // the axis ends where the run ends: a last slice the run covers only in
  // part gets only that share of a bar's width
  const n = W.n, bw = pw / (n - 1 + coverage(n - 1));
  const totals = new Float64Array(n);
  cols.forEach(col => col.forEach((v, i) => totals[i] += v));
  let ymax = 0; totals.forEach(v => { if (v > ymax) ymax = v; });
  if (ymax <= 0) ymax = 1;
  const step = niceStep(ymax, 5); ymax = Math.ceil(ymax / step - 1e-9) * step;
  const y = v => mt + ph - v / ymax * ph;
  const gap = bw > 6 ? Math.min(2, bw * 0.15) : 0;
  let out = [];
  out.push('<g class="grid">');
  for (let v = 0; v <= ymax + step / 2; v += step) out.push('<line x1="' + ml + '" x2="' + (ml + pw) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>');
  out.push('</g>');
  // one path per series: many bars, few DOM nodes
  const base = new Float64Array(n);
  cols.forEach((col, j) => {
    const color = j < top.length ? colorOf(j) : OTHER;
    let d = "";
    for (let i = 0; i < n; i++) {
      const v = col[i]; if (!(v > 0)) continue;
      const y0 = y(base[i]), y1 = y(base[i] + v);
      base[i] += v;
      const x = ml + i * bw + gap / 2, w = Math.max(bw * coverage(i) - gap, 0.5);
      d += "M" + x.toFixed(2) + " " + y1.toFixed(2) + "h" + w.toFixed(2) + "V" + y0.toFixed(2) + "h" + (-w).toFixed(2) + "Z";
    }
    const name = j < top.length ? F[top[j]][3] : "other";
    if (d) out.push('<path class="series" data-series="' + j + '" fill="' + color + '" d="' + d + '"><title>' + esc(name) + '</title></path>');
  });
  // axes
  out.push('<g class="axis">');
  out.push('<line x1="' + ml + '" x2="' + (ml + pw) + '" y1="' + (mt + ph) + '" y2="' + (mt + ph) + '"/>');
  for (let v = 0; v <= ymax + step / 2; v += step) out.push('<text x="' + (ml - 6) + '" y="' + (y(v) + 4) + '" text-anchor="end">' + esc(fmtAxis(v, field)) + '</text>');
  // time ticks at round clock times
  const spanMs = (n - 1 + coverage(n - 1)) * W.s * 1000, xt = t => ml + (t - D.t0_ms) / spanMs * pw;
  const want = spanMs / Math.max(1, Math.floor(pw / 110));
  const NICE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5,
                18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];
  const tstep = NICE.find(v => v >= want) || want;
  const fmtTick = t => { const iso = new Date(t).toISOString();
    return tstep < 1e3 ? iso.slice(11, 23) : spanMs >= 864e5 ? iso.slice(5, 10) + " " + iso.slice(11, 16)
         : tstep >= 6e4 ? iso.slice(11, 16) : iso.slice(11, 19); };
  for (let t = Math.ceil(D.t0_ms / tstep) * tstep; t <= D.t0_ms + spanMs + 1e-6; t += tstep) {
    const x = xt(t), anchor = x > ml + pw - 30 ? "end" : x < ml + 30 ? "start" : "middle";
    out.push('<line x1="' + x + '" x2="' + x + '" y1="' + (mt + ph) + '" y2="' + (mt + ph + 4) + '"/>');
    out.push('<text x="' + x + '" y="' + (mt + ph + 16) + '" text-anchor="' + anchor + '">' + fmtTick(t) + '</text>');
  }
  const unit = field === "ncalls" ? "calls" : "seconds";
  out.push('<text x="' + (ml + pw / 2) + '" y="' + (height - 3) + '" text-anchor="middle">' + esc("time (UTC, " + D.t0.slice(0, 10) + "), " + W.label + " slices — click a bar for its functions") + '</text>');
  out.push('<text transform="translate(12,' + (mt + ph / 2) + ') rotate(-90)" text-anchor="middle">' + esc(field + " per slice (" + unit + ")") + '</text>');
  out.push('</g>');
  if (S.slice >= 0) {
    // fade the other slices, outline the selected one
    const xs = ml + S.slice * bw, xe = xs + bw * coverage(S.slice);
    out.push('<rect class="dim" x="' + ml + '" y="' + mt + '" width="' + (xs - ml) + '" height="' + ph + '"/>');
    out.push('<rect class="dim" x="' + xe + '" y="' + mt + '" width="' + (ml + pw - xe) + '" height="' + ph + '"/>');
    out.push('<rect class="selbox" x="' + xs + '" y="' + (y(totals[S.slice]) - 1) + '" width="' + Math.max(xe - xs, 1) + '" height="' + (mt + ph - y(totals[S.slice]) + 1) + '"/>');
    out.push('<path class="selmark" d="M' + ((xs + xe) / 2 - 5) + ' ' + (mt - 8) + 'h10l-5 7z"/>');
  }
  // click targets, one per slice
  out.push('<g id="hits">');
  for (let i = 0; i < n; i++) out.push('<rect class="hit" data-slice="' + i + '" x="' + (ml + i * bw) + '" y="' + mt + '" width="' + Math.max(bw * coverage(i), 0.5) + '" height="' + ph + '"/>');
  out.push('</g>');
  $("tip").style.display = "none";
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.innerHTML = out.join("");
  const hits = svg.querySelector("#hits");
  hits.onclick = e => { const i = +e.target.dataset.slice; if (e.target.dataset.slice !== undefined) selectSlice(i); };
  hits.onmousemove = e => { if (e.target.dataset.slice !== undefined) tip(+e.target.dataset.slice, e); };
  hits.onmouseleave = () => { $("tip").style.display = "none"; };
  renderLegend();
  highlight();
}

function tip(i, e) {
  const W = widthObj(), field = S.field, cols = W.series[field], top = D.top[field];
  const sd = W.slices[i];
  let rows = [];
  cols.forEach((col, j) => { if (col[i] > 0) rows.push([j, col[i]]); });
  rows.sort((a, b) => b[1] - a[1]);
  let html = "<b>" + esc(sliceLabel(i)) + "</b><br>" + (sd ? plural(sd.k, "record") : "no records") + "<table>";
  rows.slice(0, 8).forEach(([j, v]) => {
    const name = j < top.length ? F[top[j]][3] : "other";
    const color = j < top.length ? colorOf(j) : OTHER;
    html += '<tr><td><span class="chip" style="background:' + color + '"></span>' + esc(name) + '</td><td class="v">' + fmtVal(v, field) + "</td></tr>";
  });
  html += "</table>";
  const t = $("tip"), box = $("chartbox").getBoundingClientRect();
  t.innerHTML = html; t.style.display = "block";
  let x = e.clientX - box.left + 14;
  if (x + t.offsetWidth > box.width) x = e.clientX - box.left - t.offsetWidth - 14;
  t.style.left = x + "px"; t.style.top = (e.clientY - box.top + 10) + "px";
}

function renderLegend() {
  const top = D.top[S.field];
  let html = top.map((id, j) => '<span class="item" data-fid="' + id + '" title="' + esc(F[id][4]) + '"><span class="sw" style="background:' + colorOf(j) + '"></span>' + esc(F[id][3]) + '</span>').join("");
  html += '<span class="item other"><span class="sw" style="background:' + OTHER + '"></span>other</span>';
  const lg = $("legend");
  lg.innerHTML = html;
  lg.querySelectorAll(".item[data-fid]").forEach(el => el.onclick = () => selectFunc(+el.dataset.fid));
}

function selectSlice(i) {
  S.slice = (S.slice === i) ? -1 : i;
  renderChart(); renderTable(); renderCalls();
}

// ----------------------------------------------------------------- table
function current() {
  // {rows: [[fid,nc,pc,tt,ct]...], edges: [...], k, n, cut, ecut, label}
  let src, label;
  if (S.slice < 0) { src = D.all; label = "Whole range"; }
  else {
    src = widthObj().slices[S.slice] || { k: 0, n: 0, r: [], e: [] };
    label = "Slice " + (S.slice + 1) + " of " + widthObj().n + " · " + sliceLabel(S.slice);
  }
  if (src._rows === undefined) {
    const rows = [], edges = [];
    for (let i = 0; i < src.r.length; i += 5) rows.push(src.r.slice(i, i + 5));
    for (let i = 0; i < src.e.length; i += 6) edges.push(src.e.slice(i, i + 6));
    Object.defineProperty(src, "_rows", { value: rows, enumerable: false });
    Object.defineProperty(src, "_edges", { value: edges, enumerable: false });
  }
  return { rows: src._rows, edges: src._edges, k: src.k, n: src.n, ecut: !!src.ecut, label };
}

const SORTKEY = {
  name: r => F[r[0]][3].toLowerCase(), nc: r => r[1], tt: r => r[3],
  ttpc: r => r[1] ? r[3] / r[1] : 0, ct: r => r[4], ctpc: r => r[2] ? r[4] / r[2] : 0,
  loc: r => loc(r[0]),
};

function renderTable() {
  const cur = current();
  const sort = S.sort || { cumtime: "ct", tottime: "tt", ncalls: "nc" }[S.field];
  $("tabletitle").textContent = cur.label;
  $("wholebtn").style.visibility = S.slice < 0 ? "hidden" : "visible";
  document.querySelectorAll("#ftable th").forEach(th => {
    const on = th.dataset.col === sort;
    th.classList.toggle("sorted", on);
    th.textContent = th.textContent.replace(/ [▲▼]$/, "") + (on ? (S.asc ? " ▲" : " ▼") : "");
  });
  const key = SORTKEY[sort], dir = S.asc ? 1 : -1;
  let rows = cur.rows;
  if (S.filter) rows = rows.filter(r => F[r[0]][4].toLowerCase().includes(S.filter));
  rows = rows.slice().sort((a, b) => {
    const x = key(a), y = key(b);
    if (x < y) return -dir; if (x > y) return dir;
    return F[a[0]][4] < F[b[0]][4] ? -1 : 1;
  });
  const shown = rows.slice(0, MAXROWS);
  const html = shown.map(r => {
    const [id, nc, pc, tt, ct] = r, f = F[id];
    return '<tr data-fid="' + id + '"' + (id === S.func ? ' class="selected"' : "") + '>' +
      '<td class="fn" title="' + esc(f[4]) + '">' + esc(f[3]) + '</td>' +
      '<td>' + fmtNc(nc, pc) + '</td><td>' + fmtT(tt) + '</td><td>' + (nc ? fmtT(tt / nc) : "") + '</td>' +
      '<td>' + fmtT(ct) + '</td><td>' + (pc ? fmtT(ct / pc) : "") + '</td>' +
      '<td class="loc" title="' + esc(loc(id)) + '">' + esc(shortLoc(loc(id), LOCPX)) + '</td></tr>';
  }).join("");
  const tb = document.querySelector("#ftable tbody");
  tb.innerHTML = html || '<tr><td class="empty l" colspan="7">' + (cur.k ? "no matching functions" : "no records in this slice") + '</td></tr>';
  tb.querySelectorAll("tr[data-fid]").forEach(tr => tr.onclick = () => selectFunc(+tr.dataset.fid));
  fitTable(tb);
  let note = plural(cur.k, "record") + " · " + plural(cur.n, "function") + " with calls or time";
  if (cur.rows.length < cur.n) note += " · the " + cur.rows.length + " largest (by cumtime, tottime and ncalls) are listed";
  if (rows.length > MAXROWS) note += " · first " + MAXROWS + " shown, use the filter";
  if (D.duty) note += " · duty-scaled";
  $("tablenote").textContent = note;
}

function highlight() {
  const j = D.top[S.field].indexOf(S.func);
  document.querySelectorAll("#chart path.series").forEach(p => p.classList.toggle("hl", +p.dataset.series === j));
  document.querySelectorAll("#legend .item[data-fid]").forEach(el => el.classList.toggle("hl", +el.dataset.fid === S.func));
}

function selectFunc(id) {
  S.func = id;
  renderTable(); renderCalls(); highlight();
}

function callRows(list, other) {
  // list: edges [caller, callee, nc, pc, tt, ct]; other: index (0 caller / 1 callee) of the function to show
  if (!list.length) return '<tr><td class="empty l" colspan="4">none recorded</td></tr>';
  return list.slice().sort((a, b) => b[5] - a[5]).map(e => {
    const id = e[other];
    return '<tr data-fid="' + id + '"><td class="fn" title="' + esc(F[id][4]) + '">' + esc(F[id][3]) + '</td><td>' + fmtNc(e[2], e[3]) + '</td><td>' + fmtT(e[4]) + '</td><td>' + fmtT(e[5]) + '</td></tr>';
  }).join("");
}

function renderCalls() {
  const id = S.func;
  if (id < 0) return;
  const cur = current(), f = F[id];
  $("calltitle").textContent = f[3];
  const row = cur.rows.find(r => r[0] === id);
  let stats = esc(f[4]) + "<br>" + esc(cur.label) + ": ";
  stats += row ? "ncalls " + fmtNc(row[1], row[2]) + " · tottime " + fmtT(row[3]) + " · cumtime " + fmtT(row[4])
               : (S.slice >= 0 && cur.rows.length < cur.n ? "not among the listed functions of this slice" : "no calls returned in this range");
  $("fstats").innerHTML = stats;
  const callers = cur.edges.filter(e => e[1] === id), callees = cur.edges.filter(e => e[0] === id);
  const cb = document.querySelector("#callers tbody"), ce = document.querySelector("#callees tbody");
  cb.innerHTML = callRows(callers, 0);
  ce.innerHTML = callRows(callees, 1);
  [cb, ce].forEach(tb => tb.querySelectorAll("tr[data-fid]").forEach(tr => tr.onclick = () => selectFunc(+tr.dataset.fid)));
  $("callnote").textContent = "ncalls, tottime and cumtime of the callee in calls along that edge (as in pstats print_callers)" +
    (cur.ecut ? "; this slice lists only its largest call edges" : "");
}

function renderAll() { renderChart(); renderTable(); renderCalls(); }

header(); controls(); renderAll();
document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
"""


# ---------------------------------------------------------------------------
# main


def _spool(path):
    """A temporary copy (a NamedTemporaryFile) of stdin ("-") or a pipe,
    which the report may read twice; UsageError naming the input when it
    cannot be read, or the copy cannot be written (a full disk)."""
    import tempfile
    name = cli.display_text("<stdin>" if path == "-" else path)
    spool = tempfile.NamedTemporaryFile(prefix="statsprof-report-",
                                        suffix=".jsonl")

    def keep(chunk):
        try:
            spool.write(chunk)
            spool.flush()
        except OSError as e:
            raise UsageError("%s: cannot keep a copy in %s (the report reads "
                             "its input twice): %s"
                             % (name, tempfile.gettempdir(), e.strerror or e))

    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except OSError as e:
                    raise UsageError("%s: %s" % (name, e.strerror or e))
                if not chunk:
                    break
                keep(chunk)
        finally:
            if src is not sys.stdin.buffer:
                src.close()
    except BaseException:
        spool.close()
        raise
    return spool


def _run(args, warn):
    """Check, read, aggregate and write the page; UsageError on failure."""
    cli.check_inputs(args.files)
    if args.output == "-":
        raise UsageError("-o needs a file name")
    cli.check_output(args.output, args.files)
    timings = {"start": time.monotonic()}
    spools = []
    try:
        if any(cli.is_stream(f) for f in args.files):
            # stdin or a pipe may have to be read twice: keep a copy, and
            # name the input, not the copy, in messages
            args.display_files = list(args.files)
            args.input_names = {}
            for i, f in enumerate(args.files):
                if cli.is_stream(f):
                    spools.append(_spool(f))
                    args.files[i] = spools[-1].name
                    args.input_names[spools[-1].name] = (
                        "<stdin>" if f == "-" else f)
        col, accs, widths, initial, note, stats = collect(args, warn)
    except OSError as e:    # e.g. the first pass of a relative --since
        raise cli.input_error(e)
    finally:
        for spool in spools:
            spool.close()
    timings["read"] = time.monotonic()
    cli.kind_warnings(stats["matched_kinds"], warn, slices=True)
    if note:
        warn(note)
    data = build_data(args, col, accs, widths, initial, note, stats, timings)
    html = render_html(data)
    try:
        with cli.open_output(args.output, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as e:
        raise cli.output_error(args.output, e)
    timings["end"] = time.monotonic()
    print("%s: wrote %s (%.1f kB; %d records, %d functions; slices %s; "
          "%.1fs)" % (PROG, args.output, len(html.encode("utf-8")) / 1000,
                      col.nrecords, len(col.keys),
                      ", ".join(sr.format_duration(w) for w in widths),
                      timings["end"] - timings["start"]), file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return cli.run_main(PROG, lambda: _run(args, cli.warner(PROG)),
                        quiet_broken_pipe=False)


if __name__ == "__main__":
    sys.exit(main())
