"""Production mode in dev/bench: what duty=5% and max_overhead=1% cost, and
how closely a duty-cycled profile matches a full one (`dev/bench --production`).

Cost. bench_host --production runs each workload of dev/bench_workloads.py
(size `prod`) back to back for --seconds per measured run, under no hook, full
statsprof, duty=5% and max_overhead=1% (modes interleaved over rounds; one
profiler per measured run, started before a lead-in so the measured calls
begin at an arbitrary point of the window cycle). Window edges come from
statsprof_tick after every run() (every game frame), as in a host's loop,
or from the timer thread (trigger=timer). The measured calls are cut into
units (a game frame, else one run()), each timed in process CPU time and
counted as inside or outside a window: the units outside windows are a no-hook
baseline taken in the same run, which cancels most of what other processes
do to the machine. Then one long run of the game with the real defaults.

Faithfulness. host_examples' game_host runs the same game (same seed, same
frames, --no-sleep) once fully profiled and once with duty=5%, each writing
JSONL; the delta records are summed per function and the top 10 by tottime
and by cumtime are compared (same set, ranks, shares of total tottime).

Everything is returned as plain data (so --save-raw / --from-raw can render
again without re-running) and rendered into BENCHMARKS.md's section
`bench:production`.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import statsprof_records  # noqa: E402
from bench_cost import split_records, table as _table  # noqa: E402

GAME_TARGET = "//host_examples:game_host"

# name, title, config (after "sink=benchcap;writer=sync;"). interval=1s, the
# default, in every mode: records every second, as in production.
SHORT_MODES = [
    ("full", "full statsprof", "interval=1s"),
    ("duty", "duty=5%", "interval=1s;duty=5%"),
    ("budget", "max_overhead=1% (window=5ms)", "interval=1s;max_overhead=1%;window=5ms"),
    ("duty_timer", "duty=5%, trigger=timer", "interval=1s;duty=5%;trigger=timer"),
    ("budget_timer", "max_overhead=1% (window=5ms), trigger=timer",
     "interval=1s;max_overhead=1%;window=5ms;trigger=timer"),
]
LONG_MODES = [
    ("duty", "duty=5%", "interval=1s;duty=5%"),
    ("budget", "max_overhead=1%", "interval=1s;max_overhead=1%"),
]
# statsprof_start opens a window at once, which sees every function for the
# first time; the lead-in (and bench_host's wait for the second window to
# close) keeps it and the gap sized after it out of the measured calls.
LEAD_IN = 1.2

# name, title, config, host: game_host ticks every frame (its windows open and
# close between frames); bench_host --game-run plays the same frames with no
# tick at all, so the timer thread's windows open and close inside frames.
FAITH_CONFIGS = [
    ("full", "full statsprof", "interval=1s", "game_host"),
    ("duty", "duty=5%", "interval=1s;duty=5%", "game_host"),
    ("duty_timer", "duty=5%, trigger=timer", "interval=1s;duty=5%;trigger=timer", "bench_host"),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- running -------------------------------------------------------------------

def run_json_lines(cmd, env, cwd, show=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    out = []
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            out.append(rec)
            if show:
                show(rec)
    if proc.wait() != 0:
        sys.exit("bench: %s failed (exit %d)" % (" ".join(cmd), proc.returncode))
    return out


def _progress(rec):
    if rec["kind"] == "prod_workload":
        log("  %-8s %6d calls of run() per measured run (%.2f ms each, no hook)"
            % (rec["workload"], rec["iterations"], rec["call_cpu_seconds"] * 1e3))
    elif rec["kind"] == "prod_time":
        log("    round %d %-11s %6.2f s cpu" % (rec["round"], rec["mode"], rec["proc_cpu_seconds"]))


def run_cost(host, workloads_py, env, root, workloads, seconds, rounds, long_seconds, long_rounds):
    """Runs bench_host --production twice (all workloads; the long game run)."""
    base = [host, "--workloads", workloads_py, "--production", "--size", "prod",
            "--lead-in", str(LEAD_IN)]
    argv = base + ["--seconds", str(seconds), "--rounds", str(rounds), "--short", "full"]
    for name, _, cfg in SHORT_MODES:
        argv += ["--prod-mode", "%s=%s" % (name, cfg)]
    for w in workloads:
        argv += ["--workload", w]
    log("bench_host --production: %s s per measured run, %d rounds ..." % (seconds, rounds))
    short = run_json_lines(argv, env, root, _progress)
    long_ = []
    if long_seconds > 0 and (not workloads or "game" in workloads):
        argv = base + ["--seconds", str(long_seconds), "--rounds", str(long_rounds),
                       "--workload", "game"]
        for name, _, cfg in LONG_MODES:
            argv += ["--prod-mode", "%s=%s" % (name, cfg)]
        log("bench_host --production: the game, defaults, %s s per measured run ..." % long_seconds)
        long_ = run_json_lines(argv, env, root, _progress)
    return {"short": short, "long": long_}


def build_game_host(bazel, root):
    """bazel: the command (a list: bazel, or dev/bazel_py for another
    interpreter)."""
    log("building %s (bazel build -c opt) ..." % GAME_TARGET)
    b = subprocess.run(bazel + ["build", "-c", "opt", GAME_TARGET], cwd=root,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if b.returncode != 0:
        sys.stderr.write(b.stdout)
        sys.exit("bench: `bazel build -c opt %s` failed" % GAME_TARGET)
    out = subprocess.run(bazel + ["info", "-c", "opt", "bazel-bin"], cwd=root, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return os.path.join(out.stdout.strip().splitlines()[-1], "host_examples", "game_host")


def run_faithfulness(game_host, bench_host, workloads_py, env, root, frames, seed):
    """The game under each FAITH_CONFIGS profile; their delta records."""
    tmp = tempfile.mkdtemp(prefix="statsprof-bench-faith.")
    runs = {}
    for name, _, cfg, host in FAITH_CONFIGS:
        path = os.path.join(tmp, name + ".jsonl")
        config = "%s;sink=jsonl:%s" % (cfg, path)
        if host == "game_host":
            cmd = [game_host, "--no-sleep", "--frames", str(frames), "--seed", str(seed),
                   "--game-dir", os.path.join(root, "host_examples", "game"), "--profile", config]
        else:
            cmd = [bench_host, "--workloads", workloads_py, "--game-run", config,
                   "--frames", str(frames), "--seed", str(seed)]
        log("%s, %d frames, %s ..." % (host, frames, cfg))
        p = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            sys.exit("bench: game_host failed (exit %d)" % p.returncode)
        runs[name] = list(statsprof_records.iter_records([path], kinds=("delta",)))
        os.remove(path)
    os.rmdir(tmp)
    return {"frames": frames, "seed": seed, "runs": runs}


# ---- the cost: summarizing -----------------------------------------------------

def _slowdown_formula(d, s):
    """Slowdown of a run that spends a share d of its wall time in windows
    where code runs (1+s) times slower."""
    if d is None or s is None:
        return None
    return 1.0 / (1.0 - d * s / (1.0 + s)) - 1.0


def summarize_cost(records):
    info, wl, times = split_records(records, "prod_info", "prod_workload",
                                    "prod_time")
    out = []
    for w, winfo in wl.items():
        none = times[(w, "none")]
        none_best = min(r["proc_cpu_seconds"] / r["iterations"] for r in none)
        none_unit = sum(r["out_cpu"] for r in none) / sum(r["units_out"] for r in none)
        modes = {}
        for m in info["modes"]:
            name = m["name"]
            rs = times.get((w, name))
            if not rs or name == "none":
                continue
            per = [r["proc_cpu_seconds"] / r["iterations"] for r in rs]
            between = min(per) / none_best - 1
            n_in = sum(r["units_in"] for r in rs)
            n_out = sum(r["units_out"] for r in rs)
            within = within_wall = out_vs_none = None
            rounds_within = []
            if n_out:
                t = sum(r["in_cpu"] + r["out_cpu"] for r in rs)
                out_mean = sum(r["out_cpu"] for r in rs) / n_out
                within = t / ((n_in + n_out) * out_mean) - 1
                tw = sum(r["in_wall"] + r["out_wall"] for r in rs)
                within_wall = tw / ((n_in + n_out) * sum(r["out_wall"] for r in rs) / n_out) - 1
                out_vs_none = out_mean / none_unit - 1
                for r in rs:
                    if r["units_out"]:
                        n = r["units_in"] + r["units_out"]
                        rounds_within.append((r["in_cpu"] + r["out_cpu"]) /
                                             (n * r["out_cpu"] / r["units_out"]) - 1)
            interval = sum(r["interval_s"] for r in rs)
            duty = sum(r["observed_s"] for r in rs) / interval if interval else None
            ovh = sum(r["overhead_s"] for r in rs) / interval if interval else None
            modes[name] = {
                "config": m["config"], "between": between, "within": within,
                "within_wall": within_wall, "rounds_within": rounds_within,
                "units_in": n_in, "units_out": n_out, "duty": duty, "overhead_est": ovh,
                "out_vs_none": out_vs_none, "seconds": sum(r["proc_cpu_seconds"] for r in rs),
                "windowed": "duty" in m["config"] or "max_overhead" in m["config"],
            }
        full = modes.get("full", {}).get("between")
        for m in modes.values():
            m["predicted"] = _slowdown_formula(m["duty"], full) if m["windowed"] else None
        out.append({"workload": w, "iterations": winfo["iterations"],
                    "call_ms": winfo["call_cpu_seconds"] * 1e3,
                    "none_unit_ms": none_unit * 1e3,
                    "modes": modes, "rounds": len(none)})
    return info, out


# ---- faithfulness: summarizing -------------------------------------------------

def sum_profiles(recs, skip_first=False):
    """Per function: tottime, cumtime, ncalls summed over delta records
    (unscaled), plus the records' observed and interval seconds."""
    funcs = {}
    observed = interval = 0.0
    overhead = 0.0
    n = frames = 0
    for rec in recs:
        if rec.get("thread_id"):
            continue
        if skip_first and rec.get("seq") == 1:
            continue
        n += 1
        frames += (rec.get("frame_stats") or {}).get("frames", 0)
        iv = rec.get("interval_s") or 0.0
        interval += iv
        observed += rec.get("observed_s", iv) if "observed_s" in rec else iv
        overhead += rec.get("overhead_est", 0.0) * iv
        for key, fp in rec.get("func_profiles", {}).items():
            # Keyed without directories: the hosts may name the game's
            # directory differently.
            file_name, line, func = statsprof_records.split_func_key(key)
            key = "%s:%d(%s)" % (os.path.basename(file_name) or file_name, line, func)
            f = funcs.setdefault(key, [0.0, 0.0, 0])
            f[0] += fp.get("tottime", 0.0)
            f[1] += fp.get("cumtime", 0.0)
            f[2] += statsprof_records.parse_ncalls(fp.get("ncalls"))[0]
    total = sum(f[0] for f in funcs.values())
    frame_calls = funcs.get("game.py:%d(frame)" % _frame_line(funcs), [0, 0, 0])[2]
    return {"funcs": funcs, "total_tt": total, "observed_s": observed, "interval_s": interval,
            "overhead_s": overhead, "records": n, "frames": frames, "frame_calls": frame_calls}


def _frame_line(funcs):
    """The line of game.py's frame() among the keys (0 when absent)."""
    for k in funcs:
        if k.startswith("game.py:") and k.endswith("(frame)"):
            return statsprof_records.split_func_key(k)[1]
    return 0


def ranks(funcs, idx):
    order = sorted(funcs, key=lambda k: -funcs[k][idx])
    return {k: i + 1 for i, k in enumerate(order)}, order


def compare(full, other, idx, top=10):
    """Top-`top` by field idx (0 tottime, 1 cumtime) in both runs: rows and a summary."""
    rf, of = ranks(full["funcs"], idx)
    ro, oo = ranks(other["funcs"], idx)
    tf, to = full["total_tt"] or 1.0, other["total_tt"] or 1.0
    keys = list(of[:top]) + [k for k in oo[:top] if k not in of[:top]]
    rows = []
    for k in keys:
        sf = full["funcs"][k][idx] / tf if k in full["funcs"] else 0.0
        so = other["funcs"][k][idx] / to if k in other["funcs"] else 0.0
        rows.append({"key": k, "rank_full": rf.get(k), "rank_other": ro.get(k),
                     "share_full": sf, "share_other": so})
    same_set = set(of[:top]) == set(oo[:top])
    in_both = [r for r in rows if r["rank_full"] and r["rank_full"] <= top]
    max_rank = max((abs(r["rank_full"] - r["rank_other"]) for r in in_both if r["rank_other"]),
                   default=None)
    max_pp = max((abs(r["share_full"] - r["share_other"]) for r in in_both), default=None)
    max_rel = max((abs(r["share_other"] / r["share_full"] - 1) for r in in_both
                   if r["share_full"] > 0), default=None)
    missing = [r["key"] for r in rows if r["rank_full"] and r["rank_full"] <= top and
               (not r["rank_other"] or r["rank_other"] > top)]
    return {"rows": rows, "same_set": same_set, "max_rank_diff": max_rank, "max_share_pp": max_pp,
            "max_share_rel": max_rel, "missing": missing}


def summarize_faith(data):
    out = {"frames": data["frames"], "seed": data["seed"], "views": {}}
    for skip in (True, False):
        sums = {n: sum_profiles(recs, skip) for n, recs in data["runs"].items()}
        view = {"sums": {n: {k: v for k, v in s.items() if k != "funcs"} for n, s in sums.items()},
                "cmp": {}}
        for n in sums:
            if n == "full":
                continue
            view["cmp"][n] = {"tottime": compare(sums["full"], sums[n], 0),
                              "cumtime": compare(sums["full"], sums[n], 1)}
        # Outer frames: how much of each run's cumtime the game's frame() keeps.
        view["frame_cum"] = {}
        for n, s in sums.items():
            k = next((k for k in s["funcs"] if k.endswith("(frame)") and "game.py" in k), None)
            view["frame_cum"][n] = (s["funcs"][k][1] / s["total_tt"]) if k and s["total_tt"] else None
        out["views"]["steady" if skip else "all"] = view
    return out


# ---- rendering -----------------------------------------------------------------

def _pct(x, fmt="%+.2f%%"):
    return "—" if x is None else fmt % (x * 100)


def _label(key):
    return "`%s`" % statsprof_records.short_label(key).replace("|", "\\|")


def render(cost, faith, machine, cmd, params):
    lines = ["Machine and run:\n"]
    for k, v in machine:
        lines.append("- **%s**: %s" % (k, v))
    lines.append("- **Command**: `%s`" % cmd)
    lines.append("")
    lines.append("Production mode profiles only inside windows (`duty=5%`: 50 ms every second; "
                 "`max_overhead=1%`: gaps sized after each window so that the estimated cost "
                 "stays under 1% of wall time). The issue's goal: at most 1% slower than no hook, "
                 "and a profile whose top functions match a full one.\n")

    if cost and cost.get("short"):
        info, res = summarize_cost(cost["short"])
        modes = [m for m in SHORT_MODES if any(m[0] in r["modes"] for r in res)]
        lines.append("### Slowdown over no hook\n")
        lines.append(
            "Process CPU time (all threads, so the timer thread is counted) of the same work "
            "under each mode, as a percentage over no hook. For the windowed modes: measured "
            "within each run against the units (game frames, or single run() calls) that ran "
            "outside windows; full statsprof has no such units and is the minimum over rounds "
            "against the no-hook runs. %d rounds of %s s (no-hook time) per mode, interleaved; "
            "each profiled run is preceded by a lead-in of at least %.1f s that lasts until the "
            "second window has closed (the steady cycle, not the start). Windows move at "
            "statsprof_tick after every run() (the game: every frame), except with "
            "*trigger=timer*.\n"
            % (info["rounds"], _fmt_num(info["seconds"]), info["lead_in"]))
        hdr = ["workload", "run() no hook"] + [t for _, t, _ in modes]
        rows = []
        for r in res:
            row = [r["workload"], "%.2f ms" % r["call_ms"]]
            for name, _, _ in modes:
                m = r["modes"].get(name)
                if not m:
                    row.append("—")
                elif m["within"] is not None:
                    row.append("**%s**" % _pct(m["within"]) if name != "full" else _pct(m["within"]))
                else:
                    row.append(_pct(m["between"], "%+.0f%%"))
            rows.append(row)
        avg = ["**mean**", ""]
        for name, _, _ in modes:
            vals = [r["modes"][name]["within"] if r["modes"][name]["within"] is not None
                    else r["modes"][name]["between"] for r in res if name in r["modes"]]
            avg.append(_pct(sum(vals) / len(vals), "%+.0f%%" if name == "full" else "%+.2f%%")
                       if vals else "—")
        rows.append(avg)
        lines.append(_table(hdr, rows))
        lines.append("")
        lines.append("Per mode: the realized duty and the profiler's own estimate "
                     "(`observed_s` and `overhead_est` summed over the delta records of the "
                     "measured runs), the slowdown expected from that duty d and full "
                     "statsprof's slowdown s (1/(1 − d·s/(1+s)) − 1, about d·s/(1+s)), the same "
                     "slowdown in "
                     "wall time and between runs (min over rounds, noisier), and units outside "
                     "windows against no-hook units (a cost that outlasts a window would show "
                     "here).\n")
        hdr = ["workload", "mode", "slowdown (cpu)", "per round", "wall", "between runs",
               "duty (records)", "overhead_est", "expected from duty", "units in / out",
               "outside vs no hook"]
        rows = []
        for r in res:
            for name, title, _ in modes:
                m = r["modes"].get(name)
                if not m or name == "full":
                    continue
                rows.append([r["workload"], title, _pct(m["within"]),
                             " ".join(_pct(x, "%.1f") for x in m["rounds_within"]),
                             _pct(m["within_wall"]), _pct(m["between"]), _pct(m["duty"], "%.2f%%"),
                             _pct(m["overhead_est"], "%.2f%%"), _pct(m["predicted"]),
                             "%d / %d" % (m["units_in"], m["units_out"]), _pct(m["out_vs_none"])])
        lines.append(_table(hdr, rows, ["l", "l"] + ["r"] * 9))
        lines.append("")

    if cost and cost.get("long"):
        info, res = summarize_cost(cost["long"])
        r = res[0]
        lines.append("### The game with the real defaults\n")
        lines.append("One long run per mode and round (%d × %s s of no-hook time, %s frames per "
                     "run), `duty=5%%` = 50 ms windows every 1 s, `max_overhead=1%%` with its "
                     "default 50 ms windows; statsprof_tick after every frame.\n"
                     % (info["rounds"], _fmt_num(info["seconds"]),
                        "{:,}".format(r["iterations"] * params.get("game_frames", 40))))
        hdr = ["mode", "slowdown (cpu)", "per round", "wall", "between runs", "duty (records)",
               "overhead_est", "frames in / out", "outside vs no hook"]
        rows = []
        for name, title, _ in LONG_MODES:
            m = r["modes"].get(name)
            if not m:
                continue
            rows.append([title, "**%s**" % _pct(m["within"]),
                         " ".join(_pct(x, "%.1f") for x in m["rounds_within"]),
                         _pct(m["within_wall"]), _pct(m["between"]), _pct(m["duty"], "%.2f%%"),
                         _pct(m["overhead_est"], "%.2f%%"), "%d / %d" % (m["units_in"], m["units_out"]),
                         _pct(m["out_vs_none"])])
        lines.append(_table(hdr, rows, ["l"] + ["r"] * 8))
        lines.append("")

    if isinstance(faith, dict):
        faith = [faith]
    for i, f in enumerate(faith or []):
        lines.extend(render_faith(summarize_faith(f), brief=i > 0))

    if params.get("notes"):
        lines.append("### How to read this\n")
        lines.append(params["notes"])
    return "\n".join(lines)


def _fmt_num(x):
    return ("%g" % x)


def render_faith(fs, brief=False):
    """The faithfulness section of one run length; `brief`: summaries only."""
    if brief:
        return _faith_summaries(fs, ["### Faithfulness over %s s of game time\n"
                                     % _fmt_num(fs["frames"] / 60.0),
                                     "The same comparison over %d frames (summaries only):\n"
                                     % fs["frames"]], brief)
    intro = (
        "The same game, seed %d, %d frames back to back (%s s of game time at 60 fps), once per "
        "config below with `sink=jsonl`: `game_host --no-sleep --frames %d --seed %d --profile "
        "CONFIG` (host_examples: statsprof_tick after every frame), and for trigger=timer "
        "`bench_host --game-run CONFIG` (the same loop with no tick, so the timer thread's "
        "windows open and close inside frames). Each run's delta records are summed per "
        "function, unscaled (shares need no 1/duty). *Share* is a function's tottime (or "
        "cumtime) over the run's total tottime. The tables leave out each run's first record "
        "(seq 1): statsprof_start opens a window at once, and that window holds game.init() "
        "(world generation), which a 5%% sample weighs 20 times over; the summary rows give "
        "both.\n"
        % (fs["seed"], fs["frames"], _fmt_num(fs["frames"] / 60.0), fs["frames"], fs["seed"]))
    return _faith_summaries(fs, ["### Faithfulness: duty=5% against full profiling (the game)\n",
                                 intro], brief)


def _faith_summaries(fs, lines, brief):
    st = fs["views"]["steady"]
    hdr = ["run", "host", "config", "records", "interval s", "observed s", "duty",
           "overhead_est", "frame() cumtime share", "frames run", "frame() calls seen",
           "calls ÷ duty", "calls ÷ work share"]
    rows = []
    for n, title, cfg, host in FAITH_CONFIGS:
        s = st["sums"].get(n)
        if not s:
            continue
        iv = s["interval_s"]
        duty = s["observed_s"] / iv if iv else None
        work = ((s["observed_s"] - s["overhead_s"]) / (iv - s["overhead_s"])
                if iv and n != "full" else duty)
        rows.append([title, host, "`%s`" % cfg, s["records"], "%.1f" % iv, "%.2f" % s["observed_s"],
                     _pct(duty, "%.2f%%") if n != "full" else "100%",
                     _pct(s["overhead_s"] / iv, "%.2f%%") if n != "full" and iv else "—",
                     _pct(st["frame_cum"].get(n), "%.1f%%"), "{:,}".format(s["frames"]),
                     "{:,}".format(s["frame_calls"]),
                     "{:,.0f}".format(s["frame_calls"] / duty) if duty else "—",
                     "{:,.0f}".format(s["frame_calls"] / work) if work and work > 0 else "—"])
    lines.append(_table(hdr, rows, ["l", "l", "l"] + ["r"] * 10))
    lines.append("")
    if not brief:
        lines.append(
            "*Scaling*: *frames run* counts the frames of those records (frame_stats), *frame() "
            "calls seen* the calls the profile counted. Dividing counts by `duty` (observed_s / "
            "interval_s, what README and the tools do) assumes code inside a window runs at "
            "full speed; it runs (1+s) times slower, so ÷ duty underestimates the interval's "
            "calls by about that factor. *÷ work share* divides by (observed_s − cost) / "
            "(interval_s − cost), cost = overhead_est × interval_s: the share of the unprofiled "
            "work that the windows saw, as close as overhead_est is to the real cost.")
        lines.append("")
    hdr = ["compared with full", "field", "same top-10 set", "max rank difference",
           "max share difference", "max relative share difference", "full's top 10 missing"]
    rows = []
    for view_name, view in (("after the first record", fs["views"]["steady"]),
                            ("all records", fs["views"]["all"])):
        for n, title, _, _ in FAITH_CONFIGS:
            if n not in view["cmp"]:
                continue
            for field in ("tottime", "cumtime"):
                c = view["cmp"][n][field]
                rows.append(["%s, %s" % (title, view_name), field,
                             "**yes**" if c["same_set"] else "**no**",
                             "±%d" % c["max_rank_diff"] if c["max_rank_diff"] is not None else "—",
                             _pct(c["max_share_pp"], "%.2f pp"), _pct(c["max_share_rel"], "%.0f%%"),
                             ", ".join(_label(k) for k in c["missing"]) or "—"])
    lines.append(_table(hdr, rows, ["l", "l"] + ["r"] * 4 + ["l"]))
    lines.append("")
    if brief:
        return lines
    for n, title, _, _ in FAITH_CONFIGS:
        if n not in st["cmp"]:
            continue
        for field in ("tottime", "cumtime"):
            c = st["cmp"][n][field]
            lines.append("Top 10 by %s, full against %s (after the first record); a row with a "
                         "full rank above 10 is in the other run's top 10 only:\n" % (field, title))
            hdr = ["function", "rank full", "rank %s" % title, "share full",
                   "share %s" % title, "difference"]
            rows = []
            for r in c["rows"]:
                rows.append([_label(r["key"]), r["rank_full"] or "—", r["rank_other"] or "—",
                             "%.2f%%" % (r["share_full"] * 100), "%.2f%%" % (r["share_other"] * 100),
                             "%+.2f pp" % ((r["share_other"] - r["share_full"]) * 100)])
            lines.append(_table(hdr, rows))
            lines.append("")
    return lines
