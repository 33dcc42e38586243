"""statsprof.Profile against cProfile.Profile on the same code: the same
functions, (cc, nc) per function and (nc, cc) per caller, exactly. Plus the
pstats integration, snapshots, the command line and config errors."""

import asyncio
import collections
import contextlib
import cProfile
import functools
import gc
import io
import itertools
import logging
import marshal
import math
import operator
import os
import pstats
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
import unittest

import statsprof

# cProfile's own entries; statsprof has none (enable/disable are invisible).
CPROFILE_OWN = {
    ("~", 0, "<method 'enable' of '_lsprof.Profiler' objects>"),
    ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>"),
}


class CProfile(cProfile.Profile):
    """cProfile.Profile(builtins=...) as documented on every version. From
    3.14, enable() with no arguments turns builtins back on (its
    argument-clinic default, builtins=True, overrides the constructor's
    builtins=False); passing the value to enable() keeps it everywhere."""

    def __init__(self, builtins=True):
        super().__init__(builtins=builtins)
        self._builtins = builtins

    def enable(self):
        super().enable(builtins=self._builtins)


def counts(stats, drop=frozenset()):
    """{key: (cc, nc, {caller: (nc, cc)})} without the keys in `drop`."""
    out = {}
    for key, (cc, nc, tt, ct, callers) in stats.items():
        if key in drop:
            continue
        out[key] = (cc, nc, {ck: (cv[0], cv[1]) for ck, cv in callers.items() if ck not in drop})
    return out


def run_under(prof, fn):
    prof.enable()
    try:
        fn()
    except Exception:
        pass
    finally:
        prof.disable()
    prof.create_stats()
    return prof.stats


def describe(want, got):
    lines = []
    for key in sorted(set(want) | set(got), key=repr):
        if want.get(key) != got.get(key):
            lines.append("%r:\n   cProfile  %r\n   statsprof %r" % (key, want.get(key), got.get(key)))
    return "\n".join(lines)


class ParityTest(unittest.TestCase):
    """Each case runs once unprofiled (first-call effects: imports, caches),
    then under cProfile and statsprof with the garbage collector off, so
    finalizers run at the same points in both runs.

    The subclasses at the end of this class run every case again with
    builtins=False on both sides, and on the PyEval_SetProfile source."""

    builtins = True  # cProfile.Profile(builtins=...) and statsprof's alike
    config = "sink=none"

    def assertParity(self, fn):
        try:
            fn()
        except Exception:
            pass
        gc.collect()
        gc.disable()
        try:
            want = counts(run_under(CProfile(builtins=self.builtins), fn), CPROFILE_OWN)
            got = counts(run_under(statsprof.Profile(builtins=self.builtins, config=self.config), fn))
        finally:
            gc.enable()
        self.assertTrue(want)
        if not self.builtins:  # the oracle is the one asked for: no C functions
            self.assertEqual([k for k in want if k[0] == "~"], [])
        self.assertEqual(want, got, "\n" + describe(want, got))
        return got

    def assertBuiltinCalls(self, got, key, ncalls):
        """`key`, a C function, has `ncalls` calls, or is absent with builtins=False."""
        if self.builtins:
            self.assertEqual(got[key][:2], (ncalls, ncalls))
        else:
            self.assertNotIn(key, got)

    def test_plain_calls(self):
        def leaf(x):
            return x + 1

        def mid(x):
            return leaf(x) + leaf(x)

        def main():
            return sum(mid(i) for i in range(30))

        got = self.assertParity(main)
        key = (leaf.__code__.co_filename, leaf.__code__.co_firstlineno, "leaf")
        self.assertEqual(got[key][:2], (60, 60))

    def test_direct_and_mutual_recursion(self):
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def even(n):
            return True if n == 0 else odd(n - 1)

        def odd(n):
            return False if n == 0 else even(n - 1)

        def main():
            fib(12)
            for i in range(15):
                even(i)

        got = self.assertParity(main)
        key = (fib.__code__.co_filename, fib.__code__.co_firstlineno, "fib")
        self.assertEqual(got[key][:2], (1, 465))

    def test_builtins_and_methods_of_c_types(self):
        class Point:
            def __init__(self, x):
                self.x = x

            def __add__(self, other):
                return Point(self.x + other.x)

            @property
            def double(self):
                return self.x * 2

        def add3(a, b, c):
            return a + b + c

        def main():
            d = collections.deque()
            l = []
            for i in range(20):
                d.append(i)
                d.appendleft(len(str(i)))
                l.append(math.sqrt(i))
            d.popleft()
            part = functools.partial(add3, 1, 2)
            total = sum(part(i) for i in range(5))
            cpart = functools.partial(max, 3)
            total += cpart(4) + cpart(1)
            counter = collections.Counter("abracadabra")
            counter.most_common(2)
            {}.get(1)
            ",".join(map(str, l))
            sorted(l, key=lambda v: -v)
            list(itertools.chain(range(3), range(2)))
            operator.itemgetter(1)([1, 2])
            p = Point(1) + Point(2)
            return p.double + total

        got = self.assertParity(main)
        self.assertBuiltinCalls(got, ("~", 0, "<method 'append' of 'collections.deque' objects>"), 20)
        self.assertBuiltinCalls(got, ("~", 0, "<built-in method math.sqrt>"), 20)
        key = (Point.double.fget.__code__.co_filename, Point.double.fget.__code__.co_firstlineno, "double")
        self.assertEqual(got[key][:2], (1, 1))

    def test_exceptions_caught_several_frames_up(self):
        def boom(n):
            if n == 0:
                raise ValueError("deep")
            return boom(n - 1)

        def middle():
            return boom(3)

        def catcher():
            try:
                middle()
            except ValueError:
                return 1

        def from_c():
            try:
                int("nope")
            except ValueError:
                pass
            try:
                {}["missing"]
            except KeyError:
                pass
            try:
                next(iter([]))
            except StopIteration:
                pass
            try:
                sorted([3, 1], key=lambda v: 1 / 0)
            except ZeroDivisionError:
                pass

        def reraise():
            try:
                catcher_raises()
            except RuntimeError:
                pass

        def catcher_raises():
            try:
                boom(2)
            except ValueError as e:
                raise RuntimeError("again") from e

        def main():
            for _ in range(4):
                catcher()
                from_c()
                reraise()

        self.assertParity(main)

    def test_uncaught_exception(self):
        def inner():
            raise RuntimeError("out")

        def main():
            inner()

        self.assertParity(main)

    def test_generators_and_yield_from(self):
        def gen(n):
            for i in range(n):
                yield i

        def sub():
            yield from gen(3)
            got = yield 99
            yield got

        def echo():
            while True:
                try:
                    v = yield
                except KeyError:
                    v = "caught"
                if v is None:
                    return
                yield v

        def main():
            total = sum(gen(10))
            s = sub()
            for v in s:
                total += v if isinstance(v, int) else 0
            s2 = sub()
            for _ in range(4):
                next(s2)
            s2.send(5)
            g = gen(5)
            next(g)
            g.close()
            e = echo()
            next(e)
            e.send(1)
            next(e)
            e.throw(KeyError)
            return total + sum(x * 2 for x in gen(4))

        self.assertParity(main)

    def test_asyncio_tasks(self):
        async def leaf(i):
            await asyncio.sleep(0)
            return i * 2

        async def worker(i):
            total = 0
            for j in range(3):
                total += await leaf(j)
            return total

        async def failing():
            await asyncio.sleep(0)
            raise ValueError("task")

        async def main_async():
            results = await asyncio.gather(*(worker(i) for i in range(4)))
            try:
                await asyncio.gather(failing())
            except ValueError:
                pass
            return sum(results)

        def main():
            return asyncio.run(main_async())

        got = self.assertParity(main)
        key = (leaf.__code__.co_filename, leaf.__code__.co_firstlineno, "leaf")
        # A coroutine is counted once per resume, as cProfile does.
        self.assertEqual(got[key][1], 24)

    def test_context_managers(self):
        class Managed:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return exc[0] is KeyError

        @contextlib.contextmanager
        def managed(n):
            yield n

        def main():
            for i in range(3):
                with Managed():
                    pass
                with Managed():
                    raise KeyError(i)
                with managed(i) as v, contextlib.suppress(ValueError):
                    int("x" * v)

        self.assertParity(main)

    def test_class_bodies(self):
        def main():
            class Base:
                def __init_subclass__(cls, **kw):
                    super().__init_subclass__(**kw)
                    cls.registered = True

            for i in range(3):
                class Child(Base):
                    x = i

                    def method(self):
                        return self.x

                Child().method()

        self.assertParity(main)

    def test_lambdas_and_comprehensions(self):
        def main():
            sq = lambda v: v * v  # noqa: E731
            a = [sq(i) for i in range(10)]
            b = {i: sq(i) for i in range(5)}
            c = {i % 3 for i in a}
            d = list(map(lambda v: v + 1, a))
            e = sum(v for v in d if v % 2)
            f = [
                [j for j in range(i)]
                for i in range(4)]
            return len(a) + len(b) + len(c) + e + len(f)

        self.assertParity(main)

    def test_exec_and_eval_of_generated_code(self):
        src = "\n".join("def gen_%d(x):\n    return x + %d\n" % (i, i) for i in range(4))
        src += "def gen_all(x):\n    return " + " + ".join("gen_%d(x)" % i for i in range(4)) + "\n"
        code = compile(src, "<generated>", "exec")

        def main():
            ns = {}
            exec(code, ns)
            for i in range(3):
                ns["gen_all"](i)
            eval(compile("gen_1(10) + gen_2(20)", "<evaluated>", "eval"), ns)
            exec("for i in range(2): gen_3(i)", ns)

        got = self.assertParity(main)
        self.assertEqual(got[("<generated>", 1, "gen_0")][:2], (3, 3))

    def test_generator_and_coroutine_throw_and_close(self):
        def cleanup():
            return 0

        def with_finally():
            try:
                yield 1
                yield 2
            finally:
                cleanup()

        def inner():
            try:
                yield 1
            except ValueError:
                yield 2
            return 3

        def outer():
            r = yield from inner()
            yield r

        @types.coroutine
        def suspend():
            return (yield "suspended")

        async def waiter():
            try:
                return await suspend()
            except KeyError:
                return -1

        async def agen():
            for i in range(3):
                try:
                    yield i
                except KeyError:
                    yield -1

        def step(aw, value=None):
            try:
                aw.send(value)
            except (StopIteration, StopAsyncIteration):
                pass

        def main():
            g = with_finally(); next(g); g.close()
            g = with_finally(); g.close()  # never started
            g = outer(); next(g); g.throw(ValueError); list(g)
            g = outer(); next(g)
            try:
                g.throw(KeyError)  # not caught: leaves both generators
            except KeyError:
                pass
            g = with_finally(); next(g); del g  # closed by its finalizer
            w = waiter(); step(w); step(w, 5)
            w = waiter(); step(w)
            try:
                w.throw(KeyError)
            except StopIteration:
                pass
            w = waiter(); step(w); w.close()
            ag = agen()
            step(ag.asend(None)); step(ag.athrow(KeyError)); step(ag.aclose())

        got = self.assertParity(main)
        key = (cleanup.__code__.co_filename, cleanup.__code__.co_firstlineno, "cleanup")
        self.assertEqual(got[key][:2], (2, 2))

    def test_python_called_from_c(self):
        def key(v):
            return -v

        def odd(v):
            return v % 2

        def double(x):
            return x * 2

        def collate(a, b):
            return (a > b) - (a < b)

        class Total:
            def __init__(self):
                self.t = 0

            def step(self, v):
                self.t += v

            def finalize(self):
                return self.t

        def main():
            sorted(range(10), key=key)
            list(map(double, range(5)))
            list(filter(odd, range(6)))
            functools.reduce(operator.add, range(4))
            con = sqlite3.connect(":memory:")
            con.create_function("dbl", 1, double)
            con.create_aggregate("total", 1, Total)
            con.create_collation("mine", collate)
            con.execute("create table t(x)")
            con.executemany("insert into t values (?)", ((i,) for i in range(5)))
            con.execute("select dbl(x) from t").fetchall()
            con.execute("select total(x) from t").fetchall()
            con.execute("select cast(x as text) as s from t order by s collate mine").fetchall()
            con.close()

        got = self.assertParity(main)
        self.assertEqual(got[(double.__code__.co_filename, double.__code__.co_firstlineno, "double")][:2],
                         (10, 10))
        self.assertEqual(got[(key.__code__.co_filename, key.__code__.co_firstlineno, "key")][:2], (10, 10))

    def test_getitem_and_properties(self):
        class Seq:
            def __init__(self, n):
                self.n = n

            def __getitem__(self, i):
                if i >= self.n:
                    raise IndexError(i)
                return i

        class Temp:
            def __init__(self):
                self._c = 0

            @property
            def celsius(self):
                return self._c

            @celsius.setter
            def celsius(self, v):
                self._c = v

        def main():
            s = Seq(30)
            total = 0
            for i in range(200):  # warm, specialised obj[i] (gh-104405)
                total += s[i % 30]
            list(Seq(5))  # the old sequence protocol, from C
            t = Temp()
            for i in range(10):
                t.celsius = t.celsius + i
            return total

        got = self.assertParity(main)
        getitem = Seq.__getitem__.__code__
        self.assertEqual(got[(getitem.co_filename, getitem.co_firstlineno, "__getitem__")][:2], (206, 206))

    def test_same_label_twice_is_summed(self):
        # Two code objects with one (file, line, name) are one entry, summed;
        # cProfile.create_stats keeps only one of them (a dict overwrite).
        def main():
            for src in ("len('a')", "len('b') + len('c')"):
                eval(src)

        p = statsprof.Profile(builtins=self.builtins, config=self.config)
        p.runcall(main)
        p.create_stats()
        self.assertEqual(p.stats[("<string>", 1, "<module>")][:2], (2, 2))
        self.assertBuiltinCalls(p.stats, ("~", 0, "<built-in method builtins.len>"), 3)
        c = CProfile(builtins=self.builtins)
        c.runcall(main)
        c.create_stats()
        self.assertEqual(c.stats[("<string>", 1, "<module>")][:2], (1, 1))

    def test_runcall_runctx_and_run(self):
        def work(n):
            return sum(range(n))

        gc.disable()
        try:
            for method, args in (("runcall", (work, 10)),
                                 ("runctx", ("work(5)", {"work": work}, None))):
                c = CProfile(builtins=self.builtins)
                s = statsprof.Profile(builtins=self.builtins, config=self.config)
                getattr(c, method)(*args)
                getattr(s, method)(*args)
                c.create_stats()
                s.create_stats()
                want, got = counts(c.stats, CPROFILE_OWN), counts(s.stats)
                self.assertEqual(want, got, method + "\n" + describe(want, got))
            import __main__
            __main__.__dict__["_statsprof_test_work"] = work
            s = statsprof.Profile(builtins=self.builtins, config=self.config).run("_statsprof_test_work(3)")
            s.create_stats()
            self.assertIn(("<string>", 1, "<module>"), s.stats)
        finally:
            gc.enable()

    def test_profile_is_a_context_manager(self):
        def work():
            return [str(i) for i in range(5)]

        gc.disable()
        try:
            c = CProfile(builtins=self.builtins)
            with c:
                work()
            c.create_stats()
            with statsprof.Profile(builtins=self.builtins, config=self.config) as s:
                work()
            s.create_stats()
            self.assertIsInstance(s, statsprof.Profile)
        finally:
            gc.enable()
        want = counts(c.stats, CPROFILE_OWN)
        # cProfile's __exit__ is a Python method and shows up; ours does not.
        want = {k: v for k, v in want.items() if k[2] != "__exit__"}
        for v in want.values():
            for k in [k for k in v[2] if k[2] == "__exit__"]:
                del v[2][k]
        self.assertEqual(want, counts(s.stats), describe(want, counts(s.stats)))


class ParityBuiltinsOffTest(ParityTest):
    """Every parity case with builtins=False on both sides: Python functions
    only, C functions' time in their callers' own time (issue 13)."""

    builtins = False


class ParitySetprofileTest(ParityTest):
    """Every parity case on the PyEval_SetProfile source (on 3.11 it is the
    default; on 3.12+ the default is sys.monitoring)."""

    config = "sink=none;source=setprofile"


class ParitySetprofileBuiltinsOffTest(ParityTest):
    builtins = False
    config = "sink=none;source=setprofile"


class OwnEntriesTest(unittest.TestCase):
    def test_enable_and_disable_leave_no_trace(self):
        p = statsprof.Profile()
        for _ in range(3):
            p.enable()
            len("x")
            p.disable()
        with p:
            len("y")
        statsprof.Profile.disable(p)
        p.create_stats()
        self.assertEqual(set(p.stats), {("~", 0, "<built-in method builtins.len>")})
        self.assertEqual(p.stats[("~", 0, "<built-in method builtins.len>")][:2], (4, 4))

    def test_cprofile_does_show_its_disable(self):
        # The difference documented in statsprof's docstring.
        c = cProfile.Profile()
        c.enable()
        c.disable()
        c.create_stats()
        self.assertIn(("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>"), c.stats)

    def test_stats_have_cprofile_types(self):
        p = statsprof.Profile()
        p.runcall(sorted, [3, 2, 1], key=abs)
        p.create_stats()
        self.assertTrue(p.stats)
        for key, value in p.stats.items():
            self.assertIs(type(key), tuple)
            self.assertEqual([type(v) for v in key], [str, int, str])
            cc, nc, tt, ct, callers = value
            self.assertEqual([type(v) for v in value], [int, int, float, float, dict])
            self.assertLessEqual(cc, nc)
            for ckey, cvalue in callers.items():
                self.assertEqual([type(v) for v in cvalue], [int, int, float, float])

    def test_getstats_has_cprofiles_entries(self):
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def work():
            fib(6)
            sorted([3, 2, 1], key=abs)

        def entries(prof):
            def label(code):
                if isinstance(code, str):
                    return ("~", 0, code)
                return (code.co_filename, code.co_firstlineno, code.co_name)

            out = {}
            for e in prof.getstats():
                if label(e.code) in CPROFILE_OWN:
                    continue
                calls = None if e.calls is None else {
                    label(c.code): (c.callcount, c.reccallcount) for c in e.calls
                    if label(c.code) not in CPROFILE_OWN}
                out[label(e.code)] = (e.callcount, e.reccallcount, calls or None)
            return out

        theirs, ours = CProfile(), statsprof.Profile()
        theirs.runcall(work)
        ours.runcall(work)
        self.assertEqual(entries(ours), entries(theirs))
        fib_key = (fib.__code__.co_filename, fib.__code__.co_firstlineno, "fib")
        self.assertEqual(entries(ours)[fib_key][:2], (25, 24))
        e = ours.getstats()[0]
        self.assertEqual(e._fields, ("code", "callcount", "reccallcount", "totaltime",
                                     "inlinetime", "calls"))
        # cProfile's own stats maker reads them as it reads its own.
        cProfile.Profile.snapshot_stats(ours)
        self.assertEqual(ours.stats, ours.pstats_dict())

    def test_clear_forgets_the_counts(self):
        def f():
            pass

        p = statsprof.Profile()
        key = (f.__code__.co_filename, f.__code__.co_firstlineno, "f")
        with p:
            f()
            f()
            p.clear()
            self.assertNotIn(key, p.pstats_dict())
            f()
        p.create_stats()
        self.assertEqual(p.stats[key][:2], (1, 1))

    def test_builtins_off_and_subcalls_off(self):
        def f():
            return len("abc")

        p = statsprof.Profile(builtins=False)
        p.runcall(f)
        p.create_stats()
        self.assertEqual([k for k in p.stats if k[0] == "~"], [])
        self.assertIn((f.__code__.co_filename, f.__code__.co_firstlineno, "f"), p.stats)

        p = statsprof.Profile(subcalls=False)
        p.runcall(f)
        p.create_stats()
        self.assertEqual({k: v[4] for k, v in p.stats.items()},
                         {k: {} for k in p.stats})

    def test_threads_started_while_enabled_are_profiled(self):
        def in_thread():
            return sum(range(10))

        p = statsprof.Profile()
        p.enable()
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        p.disable()
        p.create_stats()
        key = (in_thread.__code__.co_filename, in_thread.__code__.co_firstlineno, "in_thread")
        self.assertEqual(p.stats[key][:2], (1, 1))


class PstatsTest(unittest.TestCase):
    def work(self):
        def helper(n):
            return sorted(range(n), key=lambda v: -v)

        for i in range(5):
            helper(i)

    def test_stats_report_sorted_by_cumtime(self):
        p = statsprof.Profile()
        p.runcall(self.work)
        out = io.StringIO()
        st = pstats.Stats(p, stream=out)
        st.sort_stats("cumtime").print_stats()
        st.print_callers()
        st.print_callees()
        text = out.getvalue()
        self.assertIn("function calls", text)
        self.assertIn("Ordered by: cumulative time", text)
        self.assertIn("(helper)", text)
        self.assertIn("(<lambda>)", text)
        # 5 helper calls; lambda called for 0+1+2+3+4 elements.
        self.assertEqual(st.stats[self.key_of("helper", st)][:2], (5, 5))
        self.assertEqual(st.stats[self.key_of("<lambda>", st)][:2], (10, 10))

    def key_of(self, name, st):
        keys = [k for k in st.stats if k[2] == name]
        self.assertEqual(len(keys), 1, keys)
        return keys[0]

    def test_print_stats_method(self):
        p = statsprof.Profile()
        p.runcall(self.work)
        out = io.StringIO()
        old, sys.stdout = sys.stdout, out
        try:
            p.print_stats("tottime")
        finally:
            sys.stdout = old
        self.assertIn("Ordered by: internal time", out.getvalue())
        self.assertIn("(helper)", out.getvalue())

    def test_dump_stats_loads_in_pstats(self):
        p = statsprof.Profile()
        p.runcall(self.work)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "out.prof")
            p.dump_stats(path)
            with open(path, "rb") as f:
                self.assertEqual(marshal.load(f), p.stats)
            st = pstats.Stats(path, stream=io.StringIO())
            self.assertEqual(st.stats, p.stats)
            st.sort_stats("calls").print_stats()

    def test_dump_stats_of_a_closed_profile_leaves_the_file(self):
        p = statsprof.Profile()
        p.close()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "old.prof")
            with open(path, "w") as f:
                f.write("kept")
            with self.assertRaises(ValueError):
                p.dump_stats(path)
            with open(path) as f:
                self.assertEqual(f.read(), "kept")


class SnapshotTest(unittest.TestCase):
    def test_two_update_methods_stay_two_entries(self):
        class A:
            def update(self):
                return 1

        class B:
            def update(self):
                return sorted([2, 1])

        def main():
            a, b = A(), B()
            for _ in range(3):
                a.update()
            for _ in range(5):
                b.update()

        p = statsprof.Profile()
        p.runcall(main)
        snap = p.snapshot()
        self.assertIsInstance(snap, pstats.StatsProfile)
        fa = "%s:%d(update)" % (A.update.__code__.co_filename, A.update.__code__.co_firstlineno)
        fb = "%s:%d(update)" % (B.update.__code__.co_filename, B.update.__code__.co_firstlineno)
        self.assertIn(fa, snap.func_profiles)
        self.assertIn(fb, snap.func_profiles)
        self.assertIsInstance(snap.func_profiles[fa], pstats.FunctionProfile)
        self.assertEqual(snap.func_profiles[fa].ncalls, "3")
        self.assertEqual(snap.func_profiles[fb].ncalls, "5")
        self.assertEqual(snap.func_profiles[fb].line_number, B.update.__code__.co_firstlineno)
        # pstats' own keys by bare name: one of the two is lost there.
        own = pstats.Stats(p).get_stats_profile()
        self.assertEqual(len([k for k in own.func_profiles if k == "update"]), 1)

    def test_values_are_the_stats_not_rounded(self):
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        p = statsprof.Profile()
        p.runcall(fib, 10)
        snap = p.snapshot()
        p.create_stats()
        for (file, line, name), (cc, nc, tt, ct, _) in p.stats.items():
            fp = snap.func_profiles["%s:%d(%s)" % (file, line, name)]
            self.assertEqual(fp.ncalls, str(nc) if nc == cc else "%d/%d" % (nc, cc))
            self.assertEqual(fp.tottime, tt)
            self.assertEqual(fp.cumtime, ct)
            self.assertEqual(fp.percall_tottime, tt / nc)
            self.assertEqual(fp.percall_cumtime, ct / cc)
        self.assertEqual(len(snap.func_profiles), len(p.stats))
        self.assertAlmostEqual(snap.total_tt, sum(v[2] for v in p.stats.values()), places=12)
        self.assertEqual(snap.func_profiles[
            "%s:%d(fib)" % (fib.__code__.co_filename, fib.__code__.co_firstlineno)].ncalls, "177/1")

    def test_delta_snapshots_cover_only_their_interval(self):
        def f():
            return 1

        key = "%s:%d(f)" % (f.__code__.co_filename, f.__code__.co_firstlineno)
        p = statsprof.Profile()
        p.enable()
        f()
        first = p.snapshot(delta=True)
        f()
        f()
        second = p.snapshot(delta=True)
        p.disable()
        self.assertEqual(first.func_profiles[key].ncalls, "1")
        self.assertEqual(second.func_profiles[key].ncalls, "2")
        self.assertEqual(p.snapshot().func_profiles[key].ncalls, "3")

    def test_raw_record(self):
        def f():
            return g()

        def g():
            return 2

        p = statsprof.Profile()
        p.runcall(f)
        rec = statsprof.Profiler.snapshot(p)
        self.assertEqual(rec["kind"], "cumulative")
        self.assertEqual(rec["pid"], os.getpid())
        self.assertLessEqual(rec["start_ns"], rec["end_ns"])
        by_name = {r["function_name"]: r for r in rec["func_profiles"]}
        self.assertEqual(by_name["g"]["ncalls"], 1)
        self.assertEqual([(c["function_name"], c["ncalls"], c["primitive_calls"])
                          for c in by_name["g"]["callers"]], [("f", 1, 1)])
        self.assertAlmostEqual(rec["total_tt"], sum(r["tottime"] for r in rec["func_profiles"]))
        self.assertEqual(rec["spikes_suppressed"], 0)

    def test_record_kinds_are_the_jsonl_words(self):
        def f():
            pass

        p = statsprof.Profile()
        p.runcall(f)
        tid = threading.get_ident()
        snap = statsprof.Profiler.snapshot
        self.assertEqual(snap(p, delta=True)["kind"], "delta")
        p.runcall(f)
        one = snap(p, delta=True, thread_id=tid)
        self.assertEqual((one["kind"], one["thread_id"]), ("thread", tid))
        whole = snap(p, thread_id=tid)
        self.assertEqual((whole["kind"], whole["thread_id"]), ("cumulative", tid))


class ProfilerTest(unittest.TestCase):
    def test_enable_after_setprofile_none_counts_again_like_cprofile(self):
        # The old code's second enable() did nothing until the next record:
        # the calls in between were lost (issue 11 item 14).
        def f():
            pass

        def run(prof):
            prof.enable()
            f()
            sys.setprofile(None)
            f()  # nobody profiles this one
            prof.enable()
            f()
            f()
            prof.disable()
            prof.create_stats()
            return counts(prof.stats, CPROFILE_OWN)

        key = (f.__code__.co_filename, f.__code__.co_firstlineno, "f")
        got = run(statsprof.Profile(config="source=setprofile"))
        self.assertEqual(got[key][:2], (3, 3))
        if sys.version_info < (3, 12):
            # The same as cProfile, which uses the same hook there. Only f's
            # counts: cProfile keeps sys.setprofile's C frame open on its
            # stack (its return event never comes) and files the later calls
            # of f under it as their caller; statsprof closes the frames of a
            # thread whose hook is removed, as at disable().
            self.assertEqual(got[key][:2], run(cProfile.Profile())[key][:2])
        else:
            # sys.monitoring (the default source, as cProfile's) does not
            # hear sys.setprofile(None): all four calls count.
            self.assertEqual(run(statsprof.Profile())[key][:2], (4, 4))

    def test_bad_config_raises_value_error_naming_the_key(self):
        with self.assertRaises(ValueError) as cm:
            statsprof.Profile(config="bogus_key=1")
        self.assertIn("bogus_key", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            statsprof.Profiler("interval=fast")
        self.assertIn("interval", str(cm.exception))
        self.assertIn("fast", str(cm.exception))
        with self.assertRaises(ValueError):
            statsprof.Profile(timer=lambda: 0)

    def test_a_config_that_is_not_a_str_raises_type_error_naming_it(self):
        # 5 used to raise AttributeError from str.split, b"..." a TypeError
        # about bytes and str.
        for config in (5, b"sink=none"):
            with self.assertRaises(TypeError) as cm:
                statsprof.Profile(config=config)
            self.assertEqual(str(cm.exception), "config must be the library's config string (a str) "
                                                "or None, not %s" % type(config).__name__)

    def test_a_config_without_a_sink_writes_nowhere(self):
        # The package's default is sink=none; a config naming no sink, as
        # the clock=cpu the docs give for cProfile's timer=, used to replace
        # it and got the library's default sink: ./statsprof.jsonl.
        def f():
            return 1

        with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
            for config in ("clock=cpu", "", " clock = cpu ; interval=1s "):
                for builtins in (True, False):
                    with statsprof.Profile(config=config, builtins=builtins) as p:
                        f()
                    p.close()
                    self.assertEqual(os.listdir(d), [], (config, builtins))
            with contextlib.redirect_stdout(io.StringIO()):
                statsprof.runctx("f()", {"f": f}, {}, config="clock=cpu")
            self.assertEqual(os.listdir(d), [])
            with statsprof.Profile(config="clock=cpu;sink=jsonl:r.jsonl") as p:
                f()
            p.close()
            self.assertEqual(os.listdir(d), ["r.jsonl"])

    def test_run_to_an_unwritable_file_raises_the_errnos_os_error(self):
        # as cProfile.run does; statsprof raised its private _WriteError
        with tempfile.TemporaryDirectory() as d:
            missing = os.path.join(d, "nodir", "x.prof")
            with self.assertRaises(OSError) as cm:
                statsprof.run("x = 1", missing)
            self.assertIs(type(cm.exception), FileNotFoundError)
            self.assertEqual(cm.exception.filename, missing)
            self.assertIn("No such file or directory", str(cm.exception))
            self.assertIn(missing, str(cm.exception))
            with self.assertRaises(OSError) as cm:
                statsprof.runctx("1 / 0", {}, {}, d)
            self.assertIs(type(cm.exception), IsADirectoryError)
            self.assertIsInstance(cm.exception.__context__, ZeroDivisionError)

    def test_production_mode_profiles_in_windows_without_tick_calls(self):
        # Its windows change in tick() or on the timer thread, and nothing
        # calls tick() from Python: the package adds trigger=timer. Without
        # it the first window never closed: every call was counted.
        import time

        def f():
            pass

        p = statsprof.Profile(config="duty=10%;window=10ms")
        n = 0
        with p:
            end = time.monotonic() + 0.6
            while time.monotonic() < end:
                f()
                n += 1
        p.create_stats()
        key = (f.__code__.co_filename, f.__code__.co_firstlineno, "f")
        counted = p.stats.get(key, (0, 0))[1]
        self.assertLess(counted, n / 2, (counted, n))
        # a trigger given is kept: tick() is the caller's to call
        p = statsprof.Profile(config="duty=10%;trigger=tick")
        with p:
            f()
            self.assertFalse(p.tick())

    def test_profiles_refuse_pickling(self):
        import copy
        import pickle
        for p, name in ((statsprof.Profile(), "statsprof.Profile"),
                        (statsprof.Profiler(), "statsprof._statsprof.Profiler")):
            for dump in (pickle.dumps, copy.copy):
                with self.assertRaises(TypeError) as cm:
                    dump(p)
                self.assertEqual(str(cm.exception), "cannot pickle %r object" % name)

    def test_strerror_refuses_codes_beyond_an_int(self):
        self.assertEqual(statsprof._statsprof.strerror(0), "success")
        for code in (2 ** 40, -2 ** 40, 2 ** 32):
            with self.assertRaises(OverflowError):
                statsprof._statsprof.strerror(code)

    def test_unwritable_sink_raises_os_error_naming_the_path(self):
        with tempfile.TemporaryDirectory() as d:
            blocker = os.path.join(d, "file")
            open(blocker, "w").close()
            with self.assertRaises(OSError) as cm:
                statsprof.Profiler("sink=pstats:%s/sub" % blocker)
            self.assertIn(blocker, str(cm.exception))

    def test_sinks_receive_records(self):
        def f():
            return 1

        with tempfile.TemporaryDirectory() as d:
            p = statsprof.Profile(config="sink=pstats:%s;sink=jsonl:%s/r.jsonl" % (d, d))
            p.runcall(f)  # disable emits the record
            p.close()
            profs = [n for n in os.listdir(d) if n.endswith(".prof")]
            self.assertEqual(len(profs), 1)
            st = pstats.Stats(os.path.join(d, profs[0]))
            self.assertIn((f.__code__.co_filename, f.__code__.co_firstlineno, "f"), st.stats)
            with open(os.path.join(d, "r.jsonl")) as fh:
                self.assertEqual(len(fh.readlines()), 1)
        with self.assertRaises(ValueError):
            p.enable()

    def test_raw_profiler_methods(self):
        p = statsprof.Profiler()
        self.assertFalse(p.is_running())
        p.start()
        self.assertTrue(p.is_running())
        sum(range(3))
        p.stop()
        self.assertFalse(p.is_running())
        self.assertIn(("~", 0, "<built-in method builtins.sum>"), p.pstats_dict())
        p.reset()
        self.assertEqual(p.pstats_dict(), {})
        self.assertFalse(p.tick())
        p.emit_now()
        p.flush()
        self.assertEqual(p.sink_errors(), 0)
        self.assertEqual(p.dropped(), 0)


def run_script(source, timeout=120):
    """Runs `source` in a new interpreter with this statsprof importable and
    a temporary directory as its argv[1]."""
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "script.py")
        with open(script, "w") as f:
            f.write(source)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
        return subprocess.run([sys.executable, script, d], env=dict(os.environ, PYTHONPATH=pkg_root),
                              capture_output=True, text=True, timeout=timeout)


# The start of a script for run_script: a jsonl sink each of whose writes
# waits 1 s for the file's lock, so that a flush releases the GIL, and a
# GIL that changes hands only when released.
STALLED_SINK = textwrap.dedent("""\
    import fcntl, os, sys, threading
    import statsprof
    sys.setswitchinterval(1000)
    path = os.path.join(sys.argv[1], "s.jsonl")
    config = "sink=jsonl:" + path + ";stop_timeout=2s"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    """)


class CloseDuringACallTest(unittest.TestCase):
    """close() while another thread's call waits with the GIL released: the
    library refuses to destroy a profiler under a call in progress, and
    close() used to let go of it anyway, leaving it running (hook
    installed, sinks and their threads alive). Run in a subprocess: the
    old code leaked that hook into everything after it."""

    SCRIPT = STALLED_SINK + textwrap.dedent("""\
        p = statsprof.Profiler(config=config)
        p.start()
        def f(): pass
        for i in range(3):
            f()
            p.emit_now()
        entered = threading.Event()
        result = []
        def flusher():
            entered.set()
            try:
                result.append(p.flush())  # keeps the GIL until its wait releases it
            except ValueError as e:
                result.append(e)
        t = threading.Thread(target=flusher)
        t.start()
        entered.wait()  # the GIL back: the flush is waiting
        p.close()
        t.join()
        os.close(fd)
        def hooked():
            if sys.version_info >= (3, 12):
                return any(sys.monitoring.get_tool(i) for i in (3, 4))
            return sys.getprofile() is not None
        print("flush", result, "hook", hooked())
        """)

    def test_close_while_another_thread_flushes_destroys_when_the_flush_ends(self):
        r = run_script(self.SCRIPT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "flush [None] hook False", r.stderr)
        self.assertNotIn("left alive", r.stderr)


class ThreadsShareAProfileTest(unittest.TestCase):
    """Calls on one Profile from two threads: the second waits for the
    first (with the GIL released) instead of the library's RuntimeError
    ("called while another call on this profiler runs"), which cProfile
    never raises there. Run in a subprocess: the GIL switch interval and
    the flock are the process's."""

    # The sink's failures are logged as each disable() ends, after it let
    # go of the profile: a handler that writes to stderr lets go of the
    # GIL there, and the other thread's call could end first. Not what is
    # tested here: the messages are kept, without a write.
    SCRIPT = STALLED_SINK + textwrap.dedent("""\
        messages = []
        p = statsprof.Profile(config=config, log=messages.append)
        def f(): pass
        def run(call):
            p.enable()
            f()
            entered = threading.Event()
            result = []
            def disabler():
                entered.set()
                p.disable()  # keeps the GIL until its flush releases it
                result.append("disabled")
            t = threading.Thread(target=disabler)
            t.start()
            entered.wait()  # the GIL back: the disable is flushing
            try:
                call()
                result.append("called")
            except Exception as e:
                result.append("%s: %s" % (type(e).__name__, e))
            t.join()
            return result
        print(run(lambda: p.snapshot()))
        def with_p():
            with p:
                f()
        print(run(with_p))
        print("running", p.is_running())
        """)

    def test_a_second_thread_waits_for_the_first_threads_call(self):
        r = run_script(self.SCRIPT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [
            "['disabled', 'called']",
            "['disabled', 'called']",
            "running False",
        ], r.stderr)

    def test_many_with_blocks_and_snapshots_from_two_threads(self):
        p = statsprof.Profile()
        done = False
        errors = []

        def f(n):
            return n if n < 2 else f(n - 1) + f(n - 2)

        def monitor():
            while not done:
                try:
                    p.snapshot(delta=True)
                except Exception as e:
                    errors.append(e)

        def worker():
            for i in range(100):
                try:
                    with p:
                        f(8)
                except Exception as e:
                    errors.append(e)

        threads = [threading.Thread(target=monitor), threading.Thread(target=worker)]
        for t in threads:
            t.start()
        worker()
        threads[1].join()
        done = True
        threads[0].join()
        self.assertEqual(errors, [])
        self.assertFalse(p.is_running())

    def test_a_call_from_inside_a_call_on_the_same_thread_raises_not_hangs(self):
        # start() imports threading through builtins.__import__: a Python
        # function there runs inside the library call, on its thread, as a
        # signal handler or a __del__ would. Waiting for the lock would
        # hang for ever; the library refuses the call instead.
        import builtins
        p = statsprof.Profile()
        seen = []
        real_import = builtins.__import__

        def importing(name, *args, **kw):
            if not seen:
                seen.append("called")
                try:
                    statsprof.Profiler.snapshot(p)
                    seen.append("snapshot")
                except RuntimeError as e:
                    seen.append(str(e))
            return real_import(name, *args, **kw)

        builtins.__import__ = importing
        try:
            p.enable()
        finally:
            builtins.__import__ = real_import
            p.disable()
        self.assertEqual(len(seen), 2, seen)
        self.assertIn("called while another call on this profiler runs", seen[1])


# The start of a script for run_script: `hold(call)` runs call() on a new
# thread, and returns once that call is inside the library (its
# threading.setprofile, on the thread's trace function), waiting there with
# the GIL released for release.set() (or `most` seconds). SOURCE is the
# source whose start and stop call threading.setprofile on every version.
HOLD = textwrap.dedent("""\
    import os, sys, threading
    import statsprof
    SOURCE = ";source=setprofile"
    inside, release = threading.Event(), threading.Event()
    def hold(call, daemon=False, most=None):
        def tracer(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "setprofile" and not inside.is_set():
                inside.set()
                release.wait(most)
        def run():
            sys.settrace(tracer)
            call()
            sys.settrace(None)
        t = threading.Thread(target=run, daemon=daemon)
        t.start()
        inside.wait()
        return t
    """)


class CallsThatCannotEndTest(unittest.TestCase):
    """A call on the profiler held by another thread that will never let
    go of it, or by this thread: each used to wait for ever. In a
    subprocess with a time limit."""

    def run_held(self, source):
        return run_script(HOLD + textwrap.dedent(source), timeout=60)

    def test_a_close_at_exit_does_not_wait_for_a_daemon_thread_the_interpreter_ends(self):
        r = self.run_held("""\
            import types
            p = statsprof.Profiler("sink=none" + SOURCE)
            hold(p.start, daemon=True)
            class App:
                def __del__(self, p=p, write=os.write):
                    try:
                        p.close()
                        write(1, b"closed\\n")
                    except RuntimeError as e:
                        write(1, ("close: %s\\n" % e).encode())
            # A module's: deleted once the interpreter finalizes (__main__'s
            # globals stay, the daemon thread's frames refer to them).
            sys.modules["held"] = types.ModuleType("held")
            sys.modules["held"].app = App()
            """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "close: another thread's call on this profiler never ends: "
                                   "the interpreter is finalizing\n", r.stderr)

    def test_a_child_forked_during_another_threads_call_uses_the_profiler(self):
        r = self.run_held("""\
            import signal
            p = statsprof.Profiler("sink=none" + SOURCE)
            t = hold(p.start)
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # what waited for the parent's thread is killed
                p.snapshot()
                p.close()
                os.write(1, b"child ok\\n")
                os._exit(0)
            release.set()
            t.join()
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status), "running", p.is_running())
            p.close()
            """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "child ok\nchild 0 running True\n", r.stderr)

    def test_a_second_close_returns_once_the_first_closes_the_sinks(self):
        r = self.run_held("""\
            path = os.path.join(sys.argv[1], "r.jsonl")
            def records():
                try:
                    with open(path) as f:
                        return f.read()
                except FileNotFoundError:
                    return None
            p = statsprof.Profiler("sink=jsonl:" + path + SOURCE)
            p.start()
            sum(range(100))
            t = hold(p.close, most=2)  # its stop, before the last record
            p.close()
            seen = records()
            release.set()
            t.join()
            print("complete" if seen == records() else "incomplete", records().count("\\n") > 0)
            """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "complete True\n", r.stderr)

    def test_a_call_from_a_close_deferred_to_the_calls_end_raises_not_hangs(self):
        r = self.run_held("""\
            p = statsprof.Profiler("sink=none" + SOURCE)
            n = 0
            def tracer(frame, event, arg):
                global n
                if event == "call" and frame.f_code.co_name == "setprofile":
                    n += 1
                    if n == 1:
                        p.close()  # inside start: deferred to its end
                    elif n == 2:  # the deferred destroy's stop
                        try:
                            p.__init__("sink=none")
                            print("init ran")
                        except RuntimeError as e:
                            print("init:", e)
                        print("close", p.close())
            sys.settrace(tracer)
            p.start()
            sys.settrace(None)
            print("running", p.is_running())
            """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [
            "init: Profiler.__init__ while a call on this profiler runs",
            "close None",
            "running False",
        ], r.stderr)


class ListHandler(logging.Handler):
    """Keeps the records it is given, and the threads they came on."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record, threading.current_thread()))

    def messages(self):
        return [r.getMessage() for r, _ in self.records]


@contextlib.contextmanager
def statsprof_logger_handler(handler=None):
    """A handler on logging.getLogger("statsprof") for the block."""
    handler = handler or ListHandler()
    logger = logging.getLogger("statsprof")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def wait_for(cond, timeout=30, sleep=False):
    """Runs Python (no call on a profiler) until cond() or the timeout;
    with sleep, lets go of the GIL now and then (a main thread that only
    runs Python takes a pending call only once it takes the GIL back, on
    3.11 and 3.12)."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        sum(range(100))
        if sleep:
            time.sleep(0.001)
    return cond()


FULL = "sink=jsonl:/dev/full"  # every write fails: ENOSPC
NO_SPACE = "cannot write to '/dev/full': No space left on device"


class LogTest(unittest.TestCase):
    """The library's messages (a sink failing, ...), which it reports from
    its own threads, reach Python's logging (logging.getLogger("statsprof"),
    level WARNING) or Profile(log=callable); they used to be written to fd 2
    whatever the application's logging configuration."""

    def test_a_failing_sink_is_logged_to_the_statsprof_logger(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.jsonl")
            p = statsprof.Profile(config="sink=jsonl:" + path)
            os.unlink(path)
            os.mkdir(path)  # the next record opens the path again, and cannot
            with statsprof_logger_handler() as h:
                with p:
                    sum(range(10))
                p.close()
            self.assertEqual(len(h.records), 1, h.messages())
            record, _ = h.records[0]
            self.assertEqual((record.name, record.levelno), ("statsprof", logging.WARNING))
            self.assertEqual(record.getMessage(),
                             "sink jsonl failed to write record 1: cannot open for appending "
                             "'%s': Is a directory (1 failures so far)" % path)

    def test_a_log_callable_gets_the_messages_instead(self):
        got = []
        p = statsprof.Profile(config=FULL, log=got.append)
        with statsprof_logger_handler() as h:
            with p:
                p.emit_now()
                p.flush()
                self.assertEqual(len(got), 1, got)  # flush's end delivers, or the delivery thread did
            p.close()
        self.assertEqual(got, ["sink jsonl failed to write record %d: %s (%d failures so far)"
                               % (i, NO_SPACE, i) for i in (1, 2)])
        self.assertEqual(h.records, [])
        self.assertRaises(TypeError, statsprof.Profile, log="not callable")
        raw = []
        q = statsprof.Profiler(FULL, log=raw.append)  # the raw handle too
        q.emit_now()
        q.close()
        self.assertEqual(len(raw), 1, raw)
        self.assertIn(NO_SPACE, raw[0])

    def test_a_failing_handler_or_callable_does_not_break_profiling(self):
        def f(n):
            return n if n < 2 else f(n - 1) + f(n - 2)

        closed = io.StringIO()
        closed.close()
        failing = logging.StreamHandler(closed)  # each emit raises, and logging reports it
        err = io.StringIO()
        with statsprof_logger_handler(failing), statsprof_logger_handler() as h, \
                contextlib.redirect_stderr(err):
            with statsprof.Profile(config=FULL) as p:
                f(10)
                p.emit_now()
                p.flush()
                f(10)
            p.create_stats()
            p.close()
            # close() waits at most 1 s for the delivery thread's delivery
            # in progress (on a loaded machine it can take longer): both
            # handlers are waited for here, while they and the redirect last.
            self.assertTrue(wait_for(lambda: len(h.messages()) >= 2, timeout=60, sleep=True), h.messages())
        self.assertEqual(err.getvalue().count("--- Logging error ---"), 2, err.getvalue())
        self.assertEqual(len(h.messages()), 2, h.messages())  # the other handler got them all
        self.assertEqual(p.stats[(__file__, f.__code__.co_firstlineno, "f")][:2], (2, 354))

        def raising(message):
            raise ValueError("log callable broke: " + message)

        unraisable = []
        old_hook = sys.unraisablehook
        sys.unraisablehook = unraisable.append
        try:
            with statsprof.Profile(config=FULL, log=raising) as p:
                f(10)
                p.emit_now()
                p.flush()
                f(10)
            p.create_stats()
            p.close()
            self.assertTrue(wait_for(lambda: len(unraisable) >= 2, timeout=60, sleep=True), unraisable)
        finally:
            sys.unraisablehook = old_hook
        self.assertEqual(p.stats[(__file__, f.__code__.co_firstlineno, "f")][:2], (2, 354))
        self.assertEqual(len(unraisable), 2)
        self.assertIsInstance(unraisable[0].exc_value, ValueError)
        self.assertIn(NO_SPACE, str(unraisable[0].exc_value))

    def test_a_callable_that_calls_the_profiler_does_not_recurse(self):
        # Each message it gets makes another (a record the sink fails): the
        # calls it makes deliver nothing while it runs, so it is never
        # called inside itself.
        depth, most, got = [0], [0], []

        def log(message):
            depth[0] += 1
            try:
                most[0] = max(most[0], depth[0])
                got.append(message)
                if p.is_running():
                    p.emit_now()
                    p.flush()
                    p.snapshot()
            finally:
                depth[0] -= 1

        p = statsprof.Profile(config=FULL, log=log)
        p.enable()
        p.emit_now()
        wait_for(lambda: len(got) >= 4, sleep=True)
        p.disable()
        p.close()
        self.assertGreaterEqual(len(got), 4, got)
        self.assertEqual(most[0], 1)

    def test_a_log_callable_that_refers_to_its_profile_is_collected(self):
        import weakref

        class Owner:
            def __init__(self):
                self.p = statsprof.Profile(config=FULL, log=self.log)
                self.got = []

            def log(self, message):
                self.got.append(message)

        owner = Owner()
        ref = weakref.ref(owner.p)
        del owner
        gc.collect()
        self.assertIsNone(ref())

    def test_messages_from_a_sink_thread_arrive_while_python_runs(self):
        # No call on the profiler: the timer thread emits, the sink's
        # thread fails and logs, and the package's delivery thread (not the
        # main thread, which only runs Python here) hands the messages to
        # logging, taking the GIL as any thread does.
        with statsprof_logger_handler() as h:
            p = statsprof.Profile(config="trigger=timer;interval=10ms;" + FULL)
            p.enable()
            arrived = wait_for(lambda: len(h.records) >= 3)
            p.disable()
            p.close()
        self.assertTrue(arrived, h.messages())
        self.assertEqual(h.messages()[:3], ["sink jsonl failed to write record %d: %s (%d failures so far)"
                                            % (i, NO_SPACE, i) for i in (1, 2, 3)])
        first = {t.ident for _, t in h.records[:3]}  # 3.13+: a _DummyThread per delivery
        self.assertEqual(len(first), 1, first)
        self.assertNotIn(threading.main_thread().ident, first)

    def test_messages_arrive_while_the_main_thread_is_blocked(self):
        # The main thread waits in C (an Event's lock), running no bytecode,
        # as in a join(), a sleep() or a host whose main thread never runs
        # Python: the messages reach logging meanwhile. They used to wait
        # for the main thread's next bytecode (a pending call), and this
        # wait ran out.
        arrived = threading.Event()

        class Handler(ListHandler):
            def emit(self, record):
                super().emit(record)
                if len(self.records) >= 3:
                    arrived.set()

        with statsprof_logger_handler(Handler()) as h:
            p = statsprof.Profile(config="trigger=timer;interval=10ms;" + FULL)
            p.enable()
            got = arrived.wait(120)
            p.disable()
            p.close()
        self.assertTrue(got, h.messages())
        self.assertEqual(h.messages()[:3], ["sink jsonl failed to write record %d: %s (%d failures so far)"
                                            % (i, NO_SPACE, i) for i in (1, 2, 3)])
        self.assertNotIn(threading.main_thread().ident, {t.ident for _, t in h.records[:3]})

    def test_close_delivers_everything(self):
        got = []
        p = statsprof.Profile(config=FULL + ";stop_timeout=5s", log=got.append)
        p.enable()
        for _ in range(5):
            p.emit_now()  # the sink's thread fails them, after these return
        p.close()  # stops (a last record), waits for the sink, then delivers
        self.assertEqual(got, ["sink jsonl failed to write record %d: %s (%d failures so far)"
                               % (i, NO_SPACE, i) for i in (1, 2, 3, 4)])

    def test_a_blocked_log_callable_stalls_nothing_and_drops_with_a_count(self):
        # While the callable blocks, the sinks go on failing and their
        # threads go on logging: the messages wait in a bounded queue, and
        # those that do not fit are counted. 16 sinks fail records 1, 2,
        # 3, 4 and 8 each (the library logs a sink's 1st to 4th failures,
        # then each power of 2): 80 messages, all made while the callable
        # blocks, so 64 wait (and 1 is in its hands) and 15 are dropped.
        got, released, blocked, release = [], [], threading.Event(), threading.Event()

        def log(message):
            got.append(message)
            if len(got) == 1:
                blocked.set()
                released.append(release.wait(120))  # False: the other thread's calls stalled

        def more():
            blocked.wait(120)
            for _ in range(7):
                p.emit_now()  # their messages wait: another thread's delivery of the queue runs
            p.flush()
            release.set()

        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        paths = [os.path.join(d.name, "%d.jsonl" % i) for i in range(16)]
        # stop_timeout well past any machine's flush: a flush that gave up
        # would log one more message, and the counts below count them all.
        p = statsprof.Profile(config="stop_timeout=10m;" + ";".join("sink=jsonl:" + path for path in paths),
                              log=log)
        for path in paths:
            os.unlink(path)
            os.mkdir(path)  # each record opens it again, and cannot
        t = threading.Thread(target=more)
        t.start()
        p.emit_now()
        p.flush()  # its end, or the delivery thread, delivers: the callable blocks
        t.join()
        p.close()
        self.assertEqual(released, [True])  # more()'s calls went on meanwhile
        self.assertRegex(got[-1], r"^\d+ messages dropped \(the log queue was full\)$")
        dropped = int(got[-1].split()[0])
        self.assertEqual(len(got) - 1 + dropped, 80, got)
        self.assertEqual(dropped, 80 - 1 - 64, got)
        self.assertTrue(all("Is a directory" in m for m in got[:-1]), got)

    def test_a_forked_child_logs_its_own_messages(self):
        if not hasattr(os, "fork"):
            self.skipTest("no fork")
        with statsprof_logger_handler() as h:
            p = statsprof.Profile(config="trigger=timer;interval=1ms;" + FULL)
            p.enable()
            wait_for(lambda: len(h.records) >= 2)
            for _ in range(5):
                pid = os.fork()  # while the timer and the sink thread log
                if pid == 0:
                    status = 1
                    try:
                        del h.records[:]
                        p.emit_now()
                        p.flush()
                        p.disable()
                        p.close()
                        msgs = h.messages()
                        status = 0 if msgs and all(NO_SPACE in m for m in msgs) else 3
                    finally:
                        os._exit(status)
                _, status = os.waitpid(pid, 0)
                self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            p.disable()
            p.close()

    def test_a_fork_during_another_threads_delivery_leaves_the_child_delivering(self):
        # A thread of the parent is inside the callable when the main
        # thread forks: in the child that thread does not exist, and its
        # delivery in progress must not keep the child's messages from
        # being delivered (they were skipped for ever, even at close()).
        if not hasattr(os, "fork"):
            self.skipTest("no fork")
        parent = os.getpid()
        got, blocker, blocked, release = [], [], threading.Event(), threading.Event()

        def log(message):
            got.append(message)
            if os.getpid() == parent and threading.current_thread() is not threading.main_thread() \
                    and not blocked.is_set():
                blocker.append(threading.current_thread())
                blocked.set()
                release.wait(120)

        p = statsprof.Profile(config=FULL, log=log)

        def emit():
            p.emit_now()
            p.flush()  # its end delivers, unless the delivery thread does

        t = threading.Thread(target=emit)
        t.start()
        self.assertTrue(blocked.wait(120))  # the main thread runs no bytecode meanwhile
        if blocker[0] is not t:
            t.join()  # out of its calls on the profiler: the child can make its own
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                del got[:]
                p.emit_now()
                p.close()  # the sink failed it: delivered by now
                status = 0 if got and all(NO_SPACE in m for m in got) else 3
            finally:
                os._exit(status)
        release.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        p.close()
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)


class LogConfigTest(unittest.TestCase):
    """Where the messages go as the application configures logging, in a
    process of its own (logging's configuration is the process's)."""

    MSG1 = "sink jsonl failed to write record 1: %s (1 failures so far)" % NO_SPACE

    def test_a_configuration_made_after_the_profile_applies(self):
        # python -m statsprof makes the profile before the script runs; a
        # dictConfig there disables the loggers that exist (its default,
        # disable_existing_loggers): the profile's logger used to be one of
        # them, bound at creation, and the messages went nowhere. Looked up
        # at each message, it is not; one disabled on purpose (it existed
        # before the configuration) gets them written to stderr.
        script = textwrap.dedent("""\
            import logging, logging.config, os, sys
            import statsprof

            path = os.path.join(sys.argv[1], "log")

            def configure():
                logging.config.dictConfig({
                    "version": 1,
                    "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
                    "handlers": {"file": {"class": "logging.FileHandler", "filename": path,
                                          "formatter": "plain"}},
                    "root": {"handlers": ["file"]},
                })

            p = statsprof.Profile(config="sink=jsonl:/dev/full")
            configure()
            p.emit_now()
            p.close()
            logging.getLogger("statsprof")  # it exists now: the next configuration disables it
            configure()
            q = statsprof.Profile(config="sink=jsonl:/dev/full")
            q.emit_now()
            q.close()
            logging.shutdown()
            with open(path) as f:
                print(f.read(), end="")
            """)
        r = run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "statsprof WARNING %s\n" % self.MSG1)
        self.assertEqual(r.stderr, "statsprof: %s\n" % self.MSG1)

    def test_without_a_handler_the_messages_keep_their_prefix(self):
        # No logging configuration: logging.lastResort prints the message
        # on stderr, as "statsprof: ..." as the library's own line was (it
        # printed the bare message); with lastResort None, where logging
        # would drop it, it is written to stderr all the same.
        script = textwrap.dedent("""\
            import logging
            import statsprof

            for last in (logging.lastResort, None):
                logging.lastResort = last
                p = statsprof.Profile(config="sink=jsonl:/dev/full")
                p.emit_now()
                p.close()
            """)
        r = run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "statsprof: %s\n" % self.MSG1 * 2)

    def test_a_stderr_whose_reader_went_away_does_not_kill_the_process(self):
        # A message that goes to stderr (a log callable that raises; the
        # logger disabled) where the reader is gone: EPIPE, not a SIGPIPE,
        # which kills a process that keeps its default action (a host that
        # embeds Python; here set back from Python's SIG_IGN).
        script = textwrap.dedent("""\
            import logging, signal, sys
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            sys.unraisablehook = lambda unraisable: None
            import statsprof

            def raising(message):
                raise ValueError(message)

            sys.stdin.readline()  # the parent has closed its end of our stderr
            p = statsprof.Profile(config="sink=jsonl:/dev/full", log=raising)
            p.emit_now()
            p.close()
            logging.getLogger("statsprof").disabled = True
            q = statsprof.Profile(config="sink=jsonl:/dev/full")
            q.emit_now()
            q.close()
            print("alive")
            """)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=pkg_root),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_w)
        finally:
            os.close(err_w)
            os.close(err_r)  # nobody reads the child's stderr now
        out, _ = proc.communicate(b"go\n", timeout=120)
        self.assertEqual((proc.returncode, out), (0, b"alive\n"))
    def test_stderr_is_written_with_the_gil_released(self):
        # A message that goes to stderr (the log callable raised) while
        # stderr, a pipe, is full: its only reader is a Python thread that
        # the callable wakes, and that needs the GIL between its reads. The
        # write waits for room with the GIL released, so the reader makes
        # it; it used to wait with the GIL held, and give up after 1 s.
        script = textwrap.dedent("""\
            import fcntl, os, sys, threading
            sys.unraisablehook = lambda unraisable: None
            import statsprof

            r, w = os.pipe()
            fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: one page
            os.dup2(w, 2)
            os.close(w)
            os.set_blocking(2, False)
            try:
                while True:
                    os.write(2, b"x" * 4096)  # full
            except BlockingIOError:
                pass
            os.set_blocking(2, True)
            start, data = threading.Event(), []

            def reader():
                start.wait()
                while not b"".join(data).endswith(b"\\n"):
                    data.append(os.read(r, 512))

            t = threading.Thread(target=reader, daemon=True)
            t.start()

            def log(message):
                start.set()  # the reader wants the GIL from now on
                raise ValueError(message)

            p = statsprof.Profile(config="sink=jsonl:/dev/full", log=log)
            p.emit_now()
            p.close()
            t.join(60)
            print(b"".join(data).decode().lstrip("x"), end="")
            """)
        r = run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "statsprof: %s\n" % self.MSG1)

    def test_a_log_callable_in_a_sub_interpreter_is_refused(self):
        # The messages are delivered in the main interpreter, where a
        # callable of another cannot be called: log= there raises (it used
        # to be taken and never called); without it a profile is made as
        # before (the library refuses most calls there; what it would log
        # goes to stderr).
        script = textwrap.dedent("""\
            import os, sys
            try:
                import _interpreters as interpreters  # 3.13+
                iid = interpreters.create("legacy")
            except ImportError:
                import _xxsubinterpreters as interpreters
                iid = interpreters.create(**({"isolated": False} if sys.version_info >= (3, 12) else {}))
            code = "\\n".join([
                "import statsprof",
                "try:",
                "    statsprof.Profile(log=print)",
                "    result = 'accepted'",
                "except RuntimeError as e:",
                "    result = 'RuntimeError: ' + str(e)",
                "statsprof.Profile().close()",
                "with open(%r, 'w') as f:" % os.path.join(sys.argv[1], "result"),
                "    f.write(result)",
            ])
            failed = interpreters.run_string(iid, code)
            interpreters.destroy(iid)
            with open(os.path.join(sys.argv[1], "result")) as f:
                print(failed, f.read())
            """)
        r = run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("None RuntimeError: Profiler(log=...) in a sub-interpreter"), r.stdout)


class LogAtExitTest(unittest.TestCase):
    """Messages from a sink's thread while the interpreter finalizes: those
    logged before it did reach logging; those after, once logging may be
    gone, are written to fd 2. The process exits normally."""

    SCRIPT = textwrap.dedent("""\
        import atexit, logging, os, sys, threading

        def late():
            # atexit runs this after statsprof's own callback (registered
            # later): the interpreter is finalizing.
            for _ in range(5):
                p.emit_now()  # records 4 to 8: the sink thread logs 4 and 8
            p.flush()
            def spin():  # a daemon thread, still emitting at the end
                while True:
                    p.emit_now()
            threading.Thread(target=spin, daemon=True).start()
            for _ in range(2000):
                p.emit_now()  # left to the sink thread as the interpreter ends

        atexit.register(late)
        import statsprof

        logging.basicConfig(filename=os.path.join(sys.argv[1], "log"),
                            format="%(name)s %(levelname)s %(message)s")
        p = statsprof.Profile(config="sink=jsonl:/dev/full")
        p.enable()
        for _ in range(3):
            p.emit_now()  # the sink thread logs each
        p.flush()  # ...and they reach logging
        """)

    def test_messages_while_finalizing_go_to_stderr(self):
        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "script.py")
            with open(script, "w") as f:
                f.write(self.SCRIPT)
            pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
            for _ in range(3):
                open(os.path.join(d, "log"), "w").close()
                r = subprocess.run([sys.executable, script, d], env=dict(os.environ, PYTHONPATH=pkg_root),
                                   capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(d, "log")) as f:
                    log = f.read().splitlines()
                msg = "sink jsonl failed to write record %d: %s (%d failures so far)"
                self.assertEqual(log[:3], ["statsprof WARNING " + msg % (i, NO_SPACE, i) for i in (1, 2, 3)],
                                 r.stderr)
                for i in (4, 8):
                    self.assertIn("statsprof: " + msg % (i, NO_SPACE, i) + "\n", r.stderr)


class LogEdgeTest(unittest.TestCase):
    """Delivery where an exception, a signal mask, a re-initialization or an
    interpreter that already finalizes matters."""

    def run_script(self, script, *args):
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "script.py")
            with open(path, "w") as f:
                f.write(textwrap.dedent(script))
            return subprocess.run([sys.executable, path, d, *args], env=dict(os.environ, PYTHONPATH=pkg_root),
                                  capture_output=True, text=True, timeout=120)

    def occupy_the_delivery_thread(self):
        """A profile whose callable blocks on the delivery thread (not the
        main thread's calls) until the returned event is set."""
        busy, release = threading.Event(), threading.Event()

        def blocking(message):
            if threading.current_thread() is not threading.main_thread():
                busy.set()
                release.wait(120)

        q = statsprof.Profile(config=FULL, log=blocking)
        for _ in range(1000):
            q.emit_now()  # the sink fails it; delivered by this call's end, or the thread
            if busy.wait(0.1):
                break
        self.assertTrue(busy.is_set())

        def done():
            release.set()
            q.close()
        self.addCleanup(done)
        return release

    def test_keyboard_interrupt_in_the_callable_is_raised_by_the_call(self):
        # It used to go to sys.unraisablehook, and the program went on after
        # a Ctrl-C. With the delivery thread kept busy (another profile's
        # callable blocks there), this profile's messages are delivered by
        # the main thread's calls: the first raises out of the call that
        # delivers it; the rest stay queued for the next ones.
        self.occupy_the_delivery_thread()
        got = []

        def interrupting(message):
            got.append(message)
            if len(got) == 1:
                raise KeyboardInterrupt

        p = statsprof.Profile(config=FULL, log=interrupting)
        with self.assertRaises(KeyboardInterrupt):
            p.emit_now()
            p.emit_now()
            p.flush()  # both failed by now: its end delivers them, if no earlier call did
        self.assertEqual(len(got), 1, got)
        p.emit_now()
        p.close()
        records = [m.split(":")[0] for m in got]
        self.assertGreaterEqual(len(records), 2, got)
        self.assertEqual(records, ["sink jsonl failed to write record %d" % i
                                   for i in range(1, len(records) + 1)], got)

    def test_keyboard_interrupt_at_deletion_sends_the_rest_to_stderr(self):
        # The profile's deletion delivers what is queued; a KeyboardInterrupt
        # out of the callable ended that delivery and the queue, freed
        # with it, lost the rest: now they go to stderr, and the interrupt
        # comes again in the main thread.
        script = """\
            import sys, threading, time
            import statsprof

            busy, release = threading.Event(), threading.Event()

            def blocking(message):
                if threading.current_thread() is not threading.main_thread():
                    busy.set()
                    release.wait(120)

            q = statsprof.Profile(config="sink=jsonl:/dev/full", log=blocking)
            for _ in range(1000):
                q.emit_now()
                if busy.wait(0.1):
                    break
            assert busy.is_set()  # the delivery thread is held: p's messages stay queued
            got = []

            def interrupting(message):
                got.append(message)
                raise KeyboardInterrupt

            p = statsprof.Profile(config="trigger=timer;interval=1ms;sink=jsonl:/dev/full", log=interrupting)
            p.enable()
            time.sleep(2)  # the timer's records fail meanwhile, their messages queue (not a measurement)
            interrupted = False
            try:
                del p  # its deletion delivers them: the first raises
                for _ in range(1000):
                    time.sleep(0.01)  # the interrupt comes at the next bytecode
            except KeyboardInterrupt:
                interrupted = True
            release.set()
            q.close()
            print("got", len(got), "interrupted", interrupted, flush=True)
            """
        r = self.run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["got 1 interrupted True"], r.stderr)
        # The message that raised goes to stderr too (as any a handler did
        # not take); the rest after it must be there as well, not lost.
        lines = [line for line in r.stderr.splitlines() if line.startswith("statsprof: sink jsonl failed")]
        self.assertGreaterEqual(len(lines), 2, r.stderr)

    def test_system_exit_in_the_callable_is_raised_by_the_call(self):
        self.occupy_the_delivery_thread()
        p = statsprof.Profile(config=FULL, log=lambda m: sys.exit(3))
        with self.assertRaises(SystemExit):
            p.emit_now()
            p.close()  # the sink failed it: close() delivers it, if emit_now's end did not
        p.close()

    def test_a_callable_on_the_delivery_thread_runs_children_with_the_programs_signal_mask(self):
        # The delivery thread waits with every signal blocked; a child
        # started from a callable inherited that mask across exec (a
        # subprocess that could not be stopped with SIGTERM or Ctrl-C).
        script = """\
            import os, signal, subprocess, sys, threading
            import statsprof

            print("main", sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), flush=True)
            done = threading.Event()

            def log(message):
                if threading.current_thread() is threading.main_thread() or done.is_set():
                    return
                r = subprocess.run(["grep", "SigBlk", "/proc/self/status"], capture_output=True, text=True)
                print("child", r.stdout.split()[-1], flush=True)
                done.set()

            p = statsprof.Profile(config="trigger=timer;interval=1ms;sink=jsonl:/dev/full", log=log)
            p.enable()
            print("delivered", done.wait(60), flush=True)  # no call on the profiler: the delivery thread's
            p.disable()
            p.close()
            """
        r = self.run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["main []", "child 0000000000000000", "delivered True"],
                         r.stderr)

    def test_init_after_close_keeps_the_old_messages_for_the_old_callable(self):
        # close() waits at most 1 s for the delivery thread's delivery of
        # the profile; left over, the old handle's messages went to the
        # callable the next __init__ set.
        with tempfile.TemporaryDirectory() as d:
            a, b = os.path.join(d, "a"), os.path.join(d, "b")
            old, new, blocked, release = [], [], threading.Event(), threading.Event()

            def old_log(message):
                old.append(message)
                if threading.current_thread() is not threading.main_thread() and not blocked.is_set():
                    blocked.set()
                    release.wait(120)

            p = statsprof.Profiler("sink=jsonl:" + a, log=old_log)
            os.unlink(a)
            os.mkdir(a)  # each record opens it again, and cannot
            threading.Thread(target=p.emit_now).start()
            self.assertTrue(blocked.wait(120))  # the delivery thread holds the first message
            p.emit_now()
            p.emit_now()
            p.close()  # the sink failed them; the delivery in progress is not waited for to its end
            p.__init__("sink=jsonl:" + b, log=new.append)
            os.unlink(b)
            os.mkdir(b)
            release.set()
            p.emit_now()
            p.close()
            wait_for(lambda: len(old) >= 3, timeout=60, sleep=True)  # records 1 to 3
            self.assertTrue(all(a in m for m in old), old)
            self.assertTrue(new and all(b in m for m in new), new)

    def test_imported_by_an_atexit_callback_its_messages_go_to_stderr(self):
        # Registered while atexit runs its callbacks, the module's own
        # callback never runs: its delivery thread went on taking the GIL
        # as the interpreter finalized. Now the module sees that
        # finalization began, and its messages go to stderr.
        script = """\
            import atexit, logging, os, sys, threading

            def late():
                import statsprof
                p = statsprof.Profile(config="sink=jsonl:/dev/full")  # to logging
                p.enable()
                for _ in range(3):
                    p.emit_now()
                p.flush()
                def spin():  # a daemon thread, still emitting at the end
                    while True:
                        p.emit_now()
                try:
                    threading.Thread(target=spin, daemon=True).start()
                except RuntimeError:
                    pass  # 3.12+: no new thread once the interpreter finalizes
                for _ in range(200):
                    p.emit_now()

            atexit.register(late)
            logging.basicConfig(filename=os.path.join(sys.argv[1], "log"),
                                format="%(name)s %(levelname)s %(message)s")
            """
        for _ in range(3):
            r = self.run_script(script)
            self.assertEqual(r.returncode, 0, r.stderr)
            for i in (1, 2, 3):
                self.assertIn("statsprof: sink jsonl failed to write record %d: %s (%d failures so far)\n"
                              % (i, NO_SPACE, i), r.stderr)

    def test_the_module_executed_again_after_atexit_keeps_the_messages_on_stderr(self):
        # importlib.reload does nothing to the extension module (CPython
        # marks a multi-phase module executed), but a new module object,
        # imported again after leaving sys.modules, runs its exec again: it
        # used to start over as if the interpreter were new (its messages
        # to the callable, a delivery thread taking the GIL as the
        # interpreter finalized).
        script = """\
            import atexit, importlib, logging, os, sys, threading

            got = []

            def late():  # runs after statsprof's own callback
                importlib.reload(statsprof._statsprof)  # nothing
                del sys.modules["statsprof._statsprof"]
                m = importlib.import_module("statsprof._statsprof")  # executed again
                p = m.Profiler("sink=jsonl:/dev/full", log=got.append)
                p.emit_now()
                p.emit_now()
                p.flush()
                def spin():
                    while True:
                        p.emit_now()
                try:
                    threading.Thread(target=spin, daemon=True).start()
                except RuntimeError:
                    pass  # 3.12+: no new thread once the interpreter finalizes
                for _ in range(200):
                    p.emit_now()
                print("delivered", got, flush=True)

            atexit.register(late)
            import statsprof  # registers its callback after late's: it runs first
            """
        r = self.run_script(script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("delivered []", r.stdout, r.stderr)
        for i in (1, 2):
            self.assertIn("statsprof: sink jsonl failed to write record %d: %s (%d failures so far)\n"
                          % (i, NO_SPACE, i), r.stderr)


class CommandLineTest(unittest.TestCase):
    SCRIPT = textwrap.dedent("""\
        import sys
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        def main():
            for i in range(8):
                fib(i)
            print("argv", sys.argv[1:])
        if __name__ == "__main__":
            main()
        """)

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.script = os.path.join(self.dir.name, "prog.py")
        with open(self.script, "w") as f:
            f.write(self.SCRIPT)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_root, self.dir.name]))

    def run_cli(self, *args, module="statsprof", timeout=None):
        return subprocess.run([sys.executable, "-m", module, *args], env=self.env,
                              cwd=self.dir.name, capture_output=True, text=True, timeout=timeout)

    def test_outfile_matches_cprofile_cli(self):
        ours = os.path.join(self.dir.name, "ours.prof")
        theirs = os.path.join(self.dir.name, "theirs.prof")
        r = self.run_cli("-o", ours, "-s", "cumtime", self.script, "a", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("argv ['a', 'b']", r.stdout)
        r = self.run_cli("-o", theirs, self.script, module="cProfile")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = counts(pstats.Stats(ours).stats)
        want = counts(pstats.Stats(theirs).stats, CPROFILE_OWN)
        self.assertEqual(want, got, describe(want, got))
        self.assertEqual(got[(self.script, 2, "fib")][:2], (8, 100))

    def test_sorted_report_on_stdout(self):
        r = self.run_cli("-s", "tottime", "prog.py")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Ordered by: internal time", r.stdout)
        self.assertIn("prog.py:2(fib)", r.stdout)
        self.assertIn("100/8", r.stdout)

    def test_module_mode(self):
        r = self.run_cli("-m", "prog", "x")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("argv ['x']", r.stdout)
        self.assertIn("prog.py:2(fib)", r.stdout)

    def test_config_option_and_bad_config(self):
        out = os.path.join(self.dir.name, "recs")
        r = self.run_cli("--config", "sink=pstats:" + out, "prog.py")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(os.listdir(out)), 1)
        r = self.run_cli("--config", "clock=cpu", "prog.py")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("statsprof.jsonl", os.listdir(self.dir.name))  # no sink given: none
        r = self.run_cli("--config", "nonsense_key=3", "prog.py")
        self.assertEqual(r.returncode, 2)
        self.assertIn("nonsense_key", r.stderr)

    def test_no_arguments_prints_usage(self):
        r = self.run_cli()
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr.lower())  # an error: not on stdout
        self.assertEqual(r.stdout, "")
        r = self.run_cli("-s", "cumtime")          # options but no script
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr.lower())

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def profiled_functions(self, path):
        return {k[2] for k in pstats.Stats(path).stats}

    def test_exit_status_is_the_scripts(self):
        self.write("ex.py", """\
            import sys
            def leave(arg):
                sys.exit(int(arg) if arg.isdigit() else arg)
            leave(sys.argv[1])
            """)
        out = os.path.join(self.dir.name, "ex.prof")
        for arg, status in (("3", 3), ("0", 0), ("255", 255)):
            r = self.run_cli("-o", out, "ex.py", arg)
            self.assertEqual(r.returncode, status, r.stderr)
            self.assertEqual(r.stderr, "")
            # the profile is written before exiting
            self.assertIn("leave", self.profiled_functions(out))
            os.unlink(out)
        r = self.run_cli("-o", out, "ex.py", "bye")  # sys.exit("bye"): message, 1
        self.assertEqual((r.returncode, r.stderr), (1, "bye\n"))
        self.assertIn("leave", self.profiled_functions(out))
        r = self.run_cli("-s", "calls", "ex.py", "4")  # stats on stdout, then 4
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("(leave)", r.stdout)

    def test_uncaught_exception_exits_1_after_writing_the_profile(self):
        self.write("boom.py", """\
            def explode():
                raise RuntimeError("boom")
            explode()
            """)
        out = os.path.join(self.dir.name, "boom.prof")
        r = self.run_cli("-o", out, "boom.py")
        self.assertEqual(r.returncode, 1)
        self.assertIn("Traceback", r.stderr)
        self.assertTrue(r.stderr.endswith("RuntimeError: boom\n"), r.stderr)
        self.assertIn("explode", self.profiled_functions(out))

    def test_unwritable_outfile_is_a_one_line_error_before_the_run(self):
        records = os.path.join(self.dir.name, "never.jsonl")
        for out, why in (("nodir/x.prof", "No such file or directory"),
                         ("prog.py/x.prof", "Not a directory"),
                         (".", "Is a directory")):
            r = self.run_cli("--config", "sink=jsonl:" + records, "-o", out,
                             "prog.py")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (
                2, "", "statsprof: error: cannot write %s: %s\n" % (out, why)))
        self.assertFalse(os.path.exists(records))   # the profiler never started
        # What only opening the file tells, which os.access did not: the
        # script ran, then the profile was lost. /proc refuses even root.
        long_name = "a" * 300 + ".prof"
        cases = [(long_name, "File name too long")]
        if os.path.isdir("/proc/self"):
            cases.append(("/proc/statsprof-x.prof", "No such file or directory"))
        for out, why in cases:
            r = self.run_cli("-o", out, "prog.py")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (
                2, "", "statsprof: error: cannot write %s: %s\n" % (out, why)))
        r = self.run_cli("-o", "", "prog.py")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (
            2, "", "statsprof: error: -o: the output file name is empty\n"))

    def test_outfile_check_leaves_what_was_there(self):
        existing = os.path.join(self.dir.name, "old.prof")
        with open(existing, "w") as f:
            f.write("kept")
        os.chmod(existing, 0o444)
        r = self.run_cli("-o", "old.prof", "nope.py")  # checked, not run
        self.assertEqual(r.returncode, 2)
        if os.getuid() != 0:
            self.assertIn("cannot write old.prof: Permission denied", r.stderr)
        else:
            self.assertIn("can't open file 'nope.py'", r.stderr)
        with open(existing) as f:
            self.assertEqual(f.read(), "kept")  # not truncated
        r = self.run_cli("-o", "new.prof", "nope.py")
        self.assertIn("can't open file 'nope.py'", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir.name, "new.prof")))

    def test_outfile_fifo_gets_the_stats_as_from_cprofile(self):
        # The check before the run used to open and close the FIFO: its
        # reader took that for the end, and the stats waited for another.
        fifo = os.path.join(self.dir.name, "out.fifo")
        os.mkfifo(fifo)
        for module in ("cProfile", "statsprof"):
            got = []

            def reader():
                with open(fifo, "rb") as f:
                    got.append(f.read())

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            r = self.run_cli("-o", fifo, self.script, module=module, timeout=60)
            t.join(60)
            self.assertEqual((r.returncode, r.stdout), (0, "argv []\n"), r.stderr)
            self.assertIn((self.script, 2, "fib"), marshal.loads(got[0]), module)

    def test_outfile_gone_during_the_run(self):
        self.write("gone.py", """\
            import shutil, sys
            shutil.rmtree("out")
            print("ran")
            if sys.argv[1:] == ["raise"]:
                raise RuntimeError("boom")
            """)
        for arg in ("", "raise"):
            os.mkdir(os.path.join(self.dir.name, "out"))
            r = self.run_cli("-o", "out/gone.prof", "gone.py", arg)
            self.assertEqual((r.returncode, r.stdout), (2, "ran\n"))
            err = ("statsprof: error: cannot write out/gone.prof: No such "
                   "file or directory\n")
            if arg:     # the script's own error is reported first
                self.assertTrue(r.stderr.startswith("Traceback"), r.stderr)
                self.assertIn("RuntimeError: boom\n" + err, r.stderr)
            else:
                self.assertEqual(r.stderr, err)

    def test_missing_script_or_module_is_a_one_line_error(self):
        records = os.path.join(self.dir.name, "never.jsonl")
        r = self.run_cli("--config", "sink=jsonl:" + records, "nope.py", "arg")
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertEqual(r.stderr, "statsprof: error: can't open file 'nope.py': "
                                   "No such file or directory\n")
        self.assertFalse(os.path.exists(records))   # the profiler never started
        r = self.run_cli(self.dir.name)
        self.assertEqual((r.returncode, r.stderr), (
            2, "statsprof: error: can't open file %r: Is a directory\n" % self.dir.name))
        for name in ("no_such_module_here", "json.no_such_module_here",
                     "xml.etree.no_such_module_here", "json.decoder.no_such_module_here"):
            r = self.run_cli("-m", name)
            self.assertEqual((r.returncode, r.stderr), (
                2, "statsprof: error: no module named %r\n" % name))
        self.write("pkg/__init__.py", "print('pkg imported')")
        self.write("pkg/mod.py", "print('mod ran')")
        r = self.run_cli("-s", "calls", "-m", "pkg.mod")
        self.assertEqual(r.returncode, 0, r.stderr)
        # the package imported once, inside the profile
        self.assertEqual(r.stdout.count("imported"), 1, r.stdout)
        self.assertIn(" __init__.py:1(<module>)", r.stdout)


if __name__ == "__main__":
    unittest.main()
