"""The installed package, as a user gets it from `pip install .`: run by
dev/pip_check from a directory outside the source tree, with the install
directory (argv[1]) on PYTHONPATH.

Checks that `statsprof` comes from that directory, with its compiled
extension, built for this interpreter; that profiling a known function gives
exact call counts; and that every function, count and caller equals this
interpreter's cProfile on the same code. Exit status 0 on success; each
failure is printed."""

import cProfile
import os
import sys
import sysconfig

site = os.path.realpath(sys.argv[1])
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


import statsprof  # noqa: E402  (after argv is read, for the message below)
from statsprof import _statsprof  # noqa: E402

pkg = os.path.realpath(os.path.dirname(statsprof.__file__))
check(pkg == os.path.join(site, "statsprof"), "statsprof imported from %s, not from %s" % (pkg, site))
ext = os.path.basename(_statsprof.__file__)
check(ext == "_statsprof" + sysconfig.get_config_var("EXT_SUFFIX"),
      "extension %s is not built for this interpreter (%s)" % (ext, sysconfig.get_config_var("EXT_SUFFIX")))


def leaf(i):
    return i * 2


def mid(n):
    total = 0
    for i in range(n):  # a loop: a comprehension is a function of its own on 3.11
        total += leaf(i)
    return total


def top():
    for _ in range(7):
        mid(11)
    return sorted([3, 1, 2])


def profile(prof):
    prof.enable()
    top()
    prof.disable()
    prof.create_stats()
    return {k: (cc, nc, {ck: tuple(cv[:2]) for ck, cv in callers.items()})
            for k, (cc, nc, tt, ct, callers) in prof.stats.items()}


key = {f.__name__: (f.__code__.co_filename, f.__code__.co_firstlineno, f.__name__) for f in (leaf, mid, top)}
got = profile(statsprof.Profile())
check(got.get(key["leaf"], (None, None))[:2] == (77, 77), "leaf: %r, want 77 calls" % (got.get(key["leaf"]),))
check(got.get(key["mid"], (None, None))[:2] == (7, 7), "mid: %r, want 7 calls" % (got.get(key["mid"]),))
check(got.get(key["top"], (None, None))[:2] == (1, 1), "top: %r, want 1 call" % (got.get(key["top"]),))
check(got.get(key["leaf"], (0, 0, {}))[2] == {key["mid"]: (77, 77)},
      "leaf's callers: %r, want mid 77 times" % (got.get(key["leaf"], (0, 0, {}))[2],))

# cProfile lists its own enable and disable; statsprof's are invisible.
own = {("~", 0, "<method 'enable' of '_lsprof.Profiler' objects>"),
       ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>")}
want = {k: (cc, nc, {ck: cv for ck, cv in callers.items() if ck not in own})
        for k, (cc, nc, callers) in profile(cProfile.Profile()).items() if k not in own}
for k in sorted(set(want) | set(got), key=repr):
    check(want.get(k) == got.get(k), "%r: cProfile %r, statsprof %r" % (k, want.get(k), got.get(k)))

print("installed_check: Python %s, %s, %d functions: %s" % (
    sys.version.split()[0], pkg, len(got), "FAILED" if failures else "ok"))
sys.exit(1 if failures else 0)
