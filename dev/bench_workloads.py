"""Workloads for dev/bench: the Python code that bench_host profiles.

Each workload is built by make(name, size) into a zero-argument callable
`run`. Everything a run needs (data, source text, imports) is prepared by
make(), outside the measured region; every call of run() does exactly the
same work, so each call delivers the same profile events.

Sizes:
    full       the default benchmark (each run is tens of ms unprofiled)
    quick      dev/bench --quick
    callgrind  dev/bench --callgrind (small: valgrind is ~50x slower)
    prod       dev/bench --production: the callgrind sizes (one run is under
               a millisecond unprofiled, so a statsprof_tick after each run
               moves production-mode windows to within a few ms), but the
               game at full size (it ticks after every frame)

The workloads:
    fib        recursive fib: pure Python calls and returns, nothing else
    json_re    json dumps/loads, str/len builtins and re on generated data:
               many C calls (c_call/c_return events)
    ast        ast.parse + ast.unparse of argparse.py: a deep visitor
    difflib    difflib.unified_diff of two versions of a text
    game       host_examples/game: game.init(1), then N frames of frame(1/60)
    docutils   a third-party library at work: docutils (Debian's python3-docutils)
               turns a generated reStructuredText document into HTML5
               (publish_string: settings, parser, transforms, writer). On an
               interpreter without its own docutils, Debian's dist-packages is
               appended to sys.path (docutils is pure Python); where docutils is
               still missing the workload is left out (see names()).

Each workload but the game is one piece of work repeated `reps` times; the
game is game.init(1) and then its frames. make(name, size, on_frame, on_unit)
also takes two zero-argument callables: the game calls on_frame() after every
frame, as a host calls statsprof_tick once per frame (bench_host --production
passes one; the other workloads ignore it), and every workload calls on_unit()
after each repetition (the game: after init and after each frame), so that
bench_host can time the units one by one (the full sizes make units of a few
milliseconds).
"""

import os
import sys

NAMES = ("fib", "json_re", "ast", "difflib", "game", "docutils")

HERE = os.path.dirname(os.path.abspath(__file__))
# Normalized: the game's functions are keyed by this path in profiles, which
# dev/bench --production compares with host_examples/game_host's.
GAME_DIR = os.path.normpath(os.environ.get("STATSPROF_BENCH_GAME_DIR") or os.path.join(
    HERE, os.pardir, "host_examples", "game"))
ARGPARSE = os.path.join(os.path.dirname(os.__file__), "argparse.py")
# Where Debian installs pure-Python packages such as docutils for its python3.
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"

# name -> {size: parameters}; see the make_* functions for their meaning.
PARAMS = {
    "fib": {"full": (22, 10), "quick": (22, 2), "callgrind": (18, 1), "prod": (18, 1)},
    "json_re": {"full": (400, 5), "quick": (600, 1), "callgrind": (100, 1), "prod": (100, 1)},
    "ast": {"full": (0.25, 8), "quick": (0.4, 1), "callgrind": (0.08, 1), "prod": (0.08, 1)},
    "difflib": {"full": (1000, 12), "quick": (1500, 1), "callgrind": (300, 1), "prod": (300, 1)},
    "game": {"full": 40, "quick": 10, "callgrind": 3, "prod": 40},
    "docutils": {"full": (1, 4), "quick": (2, 1), "callgrind": (1, 1), "prod": (1, 1)},
}


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def make_fib(n):
    def run():
        fib(n)
    return run


def make_json_re(nrecords):
    import json
    import random
    import re

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
             "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi"]
    data = []
    for i in range(nrecords):
        data.append({
            "id": i,
            "name": " ".join(rng.choice(words) for _ in range(rng.randint(2, 6))),
            "email": "%s.%d@example.org" % (rng.choice(words), rng.randint(1, 9999)),
            "score": rng.random() * 100,
            "tags": [rng.choice(words) for _ in range(rng.randint(0, 5))],
            "nested": {"a": rng.randint(0, 100), "b": [rng.random() for _ in range(3)]},
        })
    email_re = re.compile(r"^([a-z]+)\.(\d+)@([a-z.]+)$")
    word_re = re.compile(r"\b[a-e]\w*")

    def run():
        text = json.dumps(data)
        back = json.loads(text)
        total = 0
        for rec in back:
            name = rec["name"]
            total += len(name) + len(str(rec["id"])) + len(rec["tags"])
            m = email_re.match(rec["email"])
            if m:
                total += int(m.group(2))
            total += len(word_re.findall(name))
            total += len(word_re.sub("_", name).upper().split())
            total += len(json.dumps(rec["nested"]))
        return total
    return run


def make_ast(fraction):
    import ast

    with open(ARGPARSE, encoding="utf-8") as f:
        full = f.read()
    # A prefix of the file that ends before a top-level statement, so it
    # parses: the statement boundary nearest to `fraction` of the lines.
    lines = full.splitlines(keepends=True)
    starts = [node.lineno for node in ast.parse(full).body] + [len(lines) + 1]
    want = fraction * len(lines)
    cut = min(starts[1:], key=lambda ln: abs(ln - want))
    src = "".join(lines[:cut - 1])
    ast.parse(src)

    def run():
        ast.unparse(ast.parse(src))
    return run


def make_difflib(nlines):
    import difflib
    import random

    rng = random.Random(1)
    vocab = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "profile",
             "frame", "snapshot", "counter", "python", "hook", "event", "table"]
    a = ["%d %s\n" % (i % 97, " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))))
         for i in range(nlines)]
    b = []
    for line in a:
        r = rng.random()
        if r < 0.04:
            continue                      # deleted
        if r < 0.10:
            b.append(line.replace("o", "0", 1))  # changed
        else:
            b.append(line)
        if r > 0.97:
            b.append("inserted %d\n" % rng.randint(0, 1000))

    def run():
        list(difflib.unified_diff(a, b, "a.txt", "b.txt", n=3))
    return run


def import_docutils():
    """docutils.core, from this interpreter's own path or else from Debian's
    python3-docutils; ImportError when neither has it."""
    try:
        import docutils.core
    except ImportError:
        if not os.path.isdir(os.path.join(DEBIAN_DIST_PACKAGES, "docutils")):
            raise
        # Appended, not prepended: this interpreter's own modules still win,
        # and 3.11's compiled extensions there do not load into other versions.
        if DEBIAN_DIST_PACKAGES not in sys.path:
            sys.path.append(DEBIAN_DIST_PACKAGES)
        import docutils.core
    return docutils.core


def docutils_origin():
    """'docutils VERSION (PATH)', or None when it cannot be imported."""
    try:
        import_docutils()
    except ImportError:
        return None
    import docutils
    return "docutils %s (%s)" % (docutils.__version__, os.path.dirname(docutils.__file__))


def rst_document(nsections, seed=2):
    """A reStructuredText document of `nsections` sections, the same for a
    given size: paragraphs with inline markup and links, bullet, enumerated,
    definition and field lists, a literal block, a table and a footnote each,
    and a table of contents."""
    import random

    rng = random.Random(seed)
    words = ["frame", "budget", "profile", "python", "engine", "render", "entity", "world",
             "path", "cache", "record", "sink", "thread", "event", "timer", "window"]

    def sentence():
        out = []
        for _ in range(rng.randint(6, 14)):
            w = rng.choice(words)
            r = rng.random()
            if r < 0.08:
                w = "*%s*" % w
            elif r < 0.14:
                w = "**%s**" % w
            elif r < 0.20:
                w = "``%s()``" % w
            elif r < 0.23:
                w = "`%s <https://example.org/%s>`_" % (w, w)
            out.append(w)
        return " ".join(out).capitalize() + "."

    def para():
        return " ".join(sentence() for _ in range(rng.randint(2, 5)))

    lines = ["Benchmark document", "==================", "", ".. contents::", ""]
    for s in range(nsections):
        title = "Section %d: %s" % (s + 1, rng.choice(words))
        lines += [title, "-" * len(title), "", para(), ""]
        lines += ["- " + sentence() for _ in range(rng.randint(2, 5))] + [""]
        lines += ["%d. %s" % (i + 1, sentence()) for i in range(rng.randint(2, 4))] + [""]
        lines += [rng.choice(words), "   " + sentence(), ""]
        lines += [":%s: %s" % (rng.choice(words), sentence()) for _ in range(2)] + [""]
        lines += ["Example::", "", "    def %s(x):" % rng.choice(words),
                  "        return x * %d" % s, ""]
        lines += ["=====  =====  ======", "A      B      C", "=====  =====  ======"]
        lines += ["%-5s  %-5d  %-6s" % (rng.choice(words)[:5], rng.randint(0, 999),
                                        rng.choice(words)[:6]) for _ in range(4)]
        lines += ["=====  =====  ======", "", para() + " See [#f%d]_." % s, ""]
    lines += [".. [#f%d] %s" % (s, sentence()) for s in range(nsections)]
    return "\n".join(lines) + "\n"


def make_docutils(nsections):
    core = import_docutils()
    src = rst_document(nsections)
    # No config files, no stylesheet read from disk, no messages on stderr:
    # every run does the same work in memory.
    settings = {"_disable_config": True, "embed_stylesheet": False,
                "output_encoding": "unicode", "report_level": 5, "halt_level": 5,
                "warning_stream": False}

    def run():
        core.publish_string(src, writer_name="html5", settings_overrides=settings)
    return run


def names():
    """The workloads this interpreter can run: NAMES without docutils where
    docutils cannot be imported."""
    return tuple(n for n in NAMES if n != "docutils" or docutils_origin())


def make_game(frames, on_frame=None, on_unit=None):
    if GAME_DIR not in sys.path:
        sys.path.insert(0, GAME_DIR)
    import game

    dt = 1.0 / 60.0

    def run():
        game.init(1)
        if on_unit is not None:
            on_unit()
        for _ in range(frames):
            game.frame(dt)
            if on_frame is not None:
                on_frame()
            if on_unit is not None:
                on_unit()
    return run


def repeat(body, reps, on_unit=None):
    """run(): body() `reps` times, on_unit() after each when given."""
    if on_unit is None:
        def run():
            for _ in range(reps):
                body()
    else:
        def run():
            for _ in range(reps):
                body()
                on_unit()
    return run


def make_game_run(frames, seed=1, on_frame=None):
    """For dev/bench --production's faithfulness runs: one game as
    host_examples/game_host plays it with --no-sleep, game.init(seed) and then
    `frames` frames back to back, on_frame() after each when given."""
    if GAME_DIR not in sys.path:
        sys.path.insert(0, GAME_DIR)
    import game

    dt = 1.0 / 60.0

    def run():
        game.init(seed)
        for _ in range(frames):
            game.frame(dt)
            if on_frame is not None:
                on_frame()
    return run


def make(name, size="full", on_frame=None, on_unit=None):
    """The run() callable of workload `name` at `size` (see the module doc);
    the game calls on_frame() after every frame, and every workload on_unit()
    after each unit, when they are given."""
    if name not in PARAMS:
        raise ValueError("unknown workload %r; known: %s" % (name, ", ".join(NAMES)))
    p = PARAMS[name][size]
    if name == "game":
        return make_game(p, on_frame, on_unit)
    arg, reps = p
    return repeat(globals()["make_" + name](arg), reps, on_unit)


def make_functions(n):
    """For the snapshot and memory measurements: a callable that calls each of
    `n` distinct Python functions (distinct code objects) once."""
    src = "".join("def f%d():\n    return %d\n" % (i, i) for i in range(n))
    ns = {}
    exec(compile(src, "<bench_functions_%d>" % n, "exec"), ns)
    funcs = [ns["f%d" % i] for i in range(n)]

    def call_all():
        for f in funcs:
            f()
    return call_all


def _best_seconds(run, repeat=5):
    import time
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    # Unprofiled timings of every workload: a quick way to tune PARAMS.
    size = sys.argv[1] if len(sys.argv) > 1 else "full"
    for name in names():
        run = make(name, size)
        run()
        print("%-8s %8.2f ms" % (name, _best_seconds(run) * 1e3))
