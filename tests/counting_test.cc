// counting_test.cc — call counts, recursion and times, with cProfile on the
// same code as the oracle.
#include <Python.h>

#include <cstdlib>
#include <cstring>

#include "pyharness.h"

namespace {

// Runs `fn` from `code` under cProfile and statsprof and expects the same
// functions, call counts and callers; returns statsprof's counts. `fn` runs
// once unprofiled first (imports, caches, specialisation warm), and the
// garbage collector is off during the profiled runs so that finalizers run
// at the same points in both.
pyh::CountMap ExpectParity(const std::string &code, const char *fn = "main") {
  void *ns = pyh::Exec(code, "parity.py");
  if (!pyh::Call(ns, fn)) pyh::TakeError();
  EXPECT_EQ(pyh::RunPy("import gc\ngc.collect()\ngc.disable()"), "");
  pyh::CountMap want = pyh::CProfileRun(ns, fn);
  pyh::CountMap got = pyh::StatsprofRun(ns, fn);
  EXPECT_EQ(pyh::RunPy("import gc\ngc.enable()"), "");
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(pyh::Diff(want, got), "");
  pyh::Release(ns);
  return got;
}

// Total calls of the functions named `name` (any file, any line).
uint64_t CallsOf(const pyh::CountMap &m, const std::string &name) {
  uint64_t n = 0;
  for (const auto &[k, c] : m)
    if (k.size() > name.size() + 2 && k.compare(k.size() - name.size() - 2, std::string::npos, "(" + name + ")") == 0)
      n += c.nc;
  return n;
}


TEST(Counting, StraightCallsMatchCProfile) {
  ExpectParity(R"(
def leaf(x): return x + 1
def mid(x): return leaf(x) + leaf(x)
def main():
    t = 0
    for i in range(50): t += mid(i)
    return t
)");
}

TEST(Counting, DirectRecursionCountsTotalAndPrimitive) {
  ExpectParity(R"(
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
def main(): return fib(12)
)");
  void *ns = pyh::Exec("def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
                       "def main(): return fib(10)\n");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  const statsprof_function_profile *fib = pyh::Find(s.get(), "fib");
  ASSERT_NE(fib, nullptr);
  EXPECT_EQ(fib->ncalls, 177u);  // calls of fib(10): 2*fib(11)-1
  EXPECT_EQ(fib->primitive_calls, 1u);
  // Recursion is counted once in cumtime: not more than its caller's.
  const statsprof_function_profile *main_f = pyh::Find(s.get(), "main");
  EXPECT_LE(fib->cumtime, main_f->cumtime);
  EXPECT_DOUBLE_EQ(fib->percall_cumtime, fib->cumtime / 1);
  EXPECT_DOUBLE_EQ(fib->percall_tottime, fib->tottime / 177);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Counting, MutualRecursionMatchesCProfile) {
  ExpectParity(R"(
def even(n): return True if n == 0 else odd(n - 1)
def odd(n): return False if n == 0 else even(n - 1)
def main():
    for i in range(20): even(i)
)");
}

TEST(Counting, BuiltinsAndMethodsAreNamedLikeCProfile) {
  ExpectParity(R"(
import math
def main():
    l = []
    for i in range(30):
        l.append(len(str(i)))
        math.sqrt(i)
    d = {}
    d.get(1)
    sorted(l, key=lambda v: -v)
    ",".join(map(str, l))
)");
  void *ns = pyh::Exec("def main():\n  l = []\n  for i in range(7): l.append(len('ab'))\n");
  // builtins=on explicitly: the *_builtins_off targets leave it alone.
  pyh::CountMap got = pyh::StatsprofRun(ns, "main", "sink=none;builtins=on");
  EXPECT_EQ(got["~:0(<built-in method builtins.len>)"].nc, 7u);
  EXPECT_EQ(got["~:0(<method 'append' of 'list' objects>)"].nc, 7u);
  pyh::Release(ns);
}

TEST(Counting, BuiltinsOffCountsOnlyPythonFunctions) {
  void *ns = pyh::Exec("def f(): return len('x')\ndef main():\n  for i in range(3): f()\n");
  pyh::CountMap got = pyh::StatsprofRun(ns, "main", "sink=none;builtins=off");
  EXPECT_EQ(got.count("~:0(<built-in method builtins.len>)"), 0u);
  EXPECT_EQ(got["<test>:1(f)"].nc, 3u);
  pyh::Release(ns);
}

TEST(Counting, ExceptionsPropagatingThroughFramesMatchCProfile) {
  ExpectParity(R"(
def boom(n):
    if n == 0: raise ValueError("x")
    return boom(n - 1)
def catcher():
    try: boom(4)
    except ValueError: return 1
def c_raises():
    try: int("nope")
    except ValueError: pass
    try: {}["missing"]
    except KeyError: pass
def main():
    for i in range(5): catcher(); c_raises()
)");
}

TEST(Counting, UncaughtExceptionStillCountsFrames) {
  ExpectParity(R"(
def inner(): raise RuntimeError("out")
def main(): inner()
)");
}

TEST(Counting, GeneratorsCountEachResumeLikeCProfile) {
  ExpectParity(R"(
def gen(n):
    for i in range(n): yield i
def sub():
    yield from gen(3)
    yield 99
def main():
    total = sum(gen(10))
    for v in sub(): total += v
    g = gen(5); next(g); g.close()
    return total
)");
}

TEST(Counting, TottimeAndCumtimeRelations) {
  void *ns = pyh::Exec(R"(
def leaf():
    s = 0
    for i in range(2000): s += i
    return s
def mid(): return leaf() + leaf()
def main():
    for i in range(20): mid()
)");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  double sum = 0;
  for (size_t i = 0; i < s->nfunc_profiles; i++) {
    const statsprof_function_profile &f = s->func_profiles[i];
    EXPECT_LE(f.tottime, f.cumtime + 1e-12) << f.function_name;
    EXPECT_GE(f.tottime, 0);
    sum += f.tottime;
  }
  EXPECT_NEAR(sum, s->total_tt, 1e-9);
  const statsprof_function_profile *main_f = pyh::Find(s.get(), "main");
  const statsprof_function_profile *mid = pyh::Find(s.get(), "mid");
  const statsprof_function_profile *leaf = pyh::Find(s.get(), "leaf");
  EXPECT_EQ(leaf->ncalls, 40u);
  // cumtime of a caller covers its callees' cumtime.
  EXPECT_GE(main_f->cumtime, mid->cumtime);
  EXPECT_GE(mid->cumtime, leaf->cumtime);
  EXPECT_NEAR(mid->cumtime, mid->tottime + leaf->cumtime, mid->cumtime * 1e-6 + 1e-9);
  // Callers: leaf is called only by mid, 40 times.
  ASSERT_EQ(leaf->ncallers, 1u);
  EXPECT_STREQ(leaf->callers[0].function_name, "mid");
  EXPECT_EQ(leaf->callers[0].ncalls, 40u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Counting, SleepingFunctionShowsWallTime) {
  void *ns = pyh::Exec(R"(
import time
def nap(): time.sleep(0.02)
def main():
    for i in range(5): nap()
)");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  const statsprof_function_profile *nap = pyh::Find(s.get(), "nap");
  ASSERT_NE(nap, nullptr);
  EXPECT_EQ(nap->ncalls, 5u);
  EXPECT_GE(nap->cumtime, 0.1);
  const statsprof_function_profile *sleep = pyh::Find(s.get(), "<built-in method time.sleep>");
  ASSERT_NE(sleep, nullptr);
  EXPECT_GE(sleep->tottime, 0.1);
  EXPECT_LT(nap->tottime, sleep->tottime);  // the sleep is the callee's own time
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Counting, SameNameInTwoFilesIsTwoEntries) {
  void *a = pyh::Exec("def update(): pass\n", "a.py");
  void *b = pyh::Exec("def update(): pass\ndef main():\n  update()\n", "b.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(a, "update");
  pyh::Call(b, "main");
  pyh::Call(a, "update");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  pyh::CountMap m = pyh::FromSnapshot(s.get());
  EXPECT_EQ(m["a.py:1(update)"].nc, 2u);
  EXPECT_EQ(m["b.py:1(update)"].nc, 1u);
  statsprof_destroy(p);
  pyh::Release(a);
  pyh::Release(b);
}

TEST(Counting, CodeObjectsWithTheSameLabelAreSummed) {
  // exec of the same source twice makes two code objects with one label.
  void *ns = pyh::Exec(R"(
def main():
    src = "def gen_f(x):\n    return x * 2\n"
    for i in range(3):
        g = {}
        exec(compile(src, "generated.py", "exec"), g)
        g["gen_f"](i); g["gen_f"](i)
)");
  pyh::CountMap got = pyh::StatsprofRun(ns, "main");
  EXPECT_EQ(got["generated.py:1(gen_f)"].nc, 6u);
  pyh::Release(ns);
}

// ---- More of what cProfile has to agree on: the workloads of issue 13 ----
// Each runs on every parity target: both event sources, builtins on and off.

TEST(Counting, GeneratorThrowAndCloseMatchCProfile) {
  pyh::CountMap got = ExpectParity(R"PY(
def cleanup(): return 0
def catching():
    while True:
        try:
            yield 1
        except KeyError:
            yield "caught"
def with_finally():
    try:
        yield 1
        yield 2
    finally:
        cleanup()
def catches_exit():
    try:
        yield 1
    except GeneratorExit:
        cleanup()
        raise
def inner():
    try:
        yield 1
    except ValueError:
        yield 2
    yield 3
    return "done"
def outer():
    r = yield from inner()
    yield r
def main():
    g = catching(); next(g); g.throw(KeyError); next(g); g.close()
    g = with_finally(); next(g); g.close()
    g = catches_exit(); next(g); g.close()
    g = with_finally(); g.close()          # never started: no frame runs
    g = outer(); next(g); g.throw(ValueError); list(g)
    g = catching(); next(g)
    try: g.throw(ValueError)               # not caught: leaves the generator
    except ValueError: pass
    g = inner()
    try: g.throw(RuntimeError)             # thrown before the first next()
    except RuntimeError: pass
    g = with_finally(); next(g); del g     # closed by its finalizer (refcount)
    g = outer(); next(g); g.close()        # close through yield from
)PY");
  EXPECT_EQ(CallsOf(got, "cleanup"), 3u);  // two closes and one finalizer
}

TEST(Counting, CoroutinesAndAsyncGeneratorsDrivenByHandMatchCProfile) {
  ExpectParity(R"PY(
import types
async def leaf(x): return x
async def adder(n):
    t = 0
    for i in range(n): t += await leaf(i)
    return t
@types.coroutine
def suspend():
    v = yield "suspended"
    return v
async def waiter():
    try:
        return await suspend()
    except KeyError:
        return await leaf(-1)
async def closer():
    try:
        await suspend()
    finally:
        await leaf(0)  # never suspends, so allowed while closing
async def agen(n):
    for i in range(n):
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
    step(adder(3))
    w = waiter(); step(w); step(w, 5)
    w = waiter(); step(w)
    try: w.throw(KeyError)
    except StopIteration: pass
    c = closer(); step(c); c.close()
    c = waiter(); c.close()                # never started
    ag = agen(3)
    step(ag.asend(None)); step(ag.athrow(KeyError)); step(ag.asend(None))
    step(ag.aclose())
)PY");
}

TEST(Counting, AsyncioEventLoopMatchesCProfile) {
  pyh::CountMap got = ExpectParity(R"PY(
import asyncio
async def leaf(i):
    await asyncio.sleep(0)
    return i * 2
async def worker(i):
    total = 0
    for j in range(3): total += await leaf(j)
    return total
async def failing():
    await asyncio.sleep(0)
    raise ValueError("task")
async def producer(q):
    for i in range(4): await q.put(i)
    await q.put(None)
async def consumer(q):
    got = []
    while (v := await q.get()) is not None: got.append(v)
    return got
async def amain():
    results = await asyncio.gather(*(worker(i) for i in range(3)))
    try: await asyncio.gather(failing())
    except ValueError: pass
    q = asyncio.Queue()
    _, got = await asyncio.gather(producer(q), consumer(q))
    sleeper = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    sleeper.cancel()
    try: await sleeper
    except asyncio.CancelledError: pass
    return sum(results) + len(got)
def main(): return asyncio.run(amain())
)PY");
  // A coroutine is counted once per resume: 9 leaves, each resumed once.
  EXPECT_EQ(CallsOf(got, "leaf"), 18u);
}

TEST(Counting, PythonCalledFromCMatchesCProfile) {
  pyh::CountMap got = ExpectParity(R"PY(
import functools, itertools, json, re, sqlite3, collections, heapq
def key(v): return -v
def odd(v): return v % 2
def add(a, b): return a + b
def double(x): return x * 2
def collate(a, b): return (a > b) - (a < b)
def authorize(*args): return sqlite3.SQLITE_OK
def default(o): return sorted(o)
def repl(m): return m.group(0).upper()
class Total:
    def __init__(self): self.t = 0
    def step(self, v): self.t += v
    def finalize(self): return self.t
class Ordered:
    def __init__(self, v): self.v = v
    def __lt__(self, other): return self.v < other.v
    def __hash__(self): return hash(self.v)
    def __eq__(self, other): return self.v == other.v
@functools.lru_cache(maxsize=None)
def cached(n): return n * n
def main():
    sorted(range(10), key=key); min(range(5), key=key); [3, 1, 2].sort(key=key)
    list(map(double, range(5))); list(filter(odd, range(6)))
    functools.reduce(add, range(6)); list(itertools.starmap(add, [(1, 2), (3, 4)]))
    [k for k, _ in itertools.groupby(range(6), key=odd)]
    sorted(Ordered(v) for v in (3, 1, 2)); heapq.nsmallest(2, [Ordered(5), Ordered(4), Ordered(6)])
    {Ordered(1): 1, Ordered(2): 2}[Ordered(1)]
    collections.defaultdict(list)["x"].append(1)
    json.dumps({"s": {3, 1}}, default=default)
    re.sub("[ab]", repl, "abcab")
    cached.cache_clear(); [cached(i % 3) for i in range(6)]
    functools.partial(add, 1)(2)
    con = sqlite3.connect(":memory:")
    con.create_function("dbl", 1, double)
    con.create_aggregate("total", 1, Total)
    con.create_collation("mine", collate)
    con.set_authorizer(authorize)
    con.execute("create table t(x)")
    con.executemany("insert into t values (?)", ((i,) for i in range(5)))
    con.execute("select dbl(x) from t").fetchall()
    con.execute("select total(x) from t").fetchall()
    con.execute("select cast(x as text) as s from t order by s collate mine desc").fetchall()
    con.set_authorizer(None)
    con.close()
)PY");
  EXPECT_EQ(CallsOf(got, "double"), 5u + 5u);  // map, then the SQL function
  EXPECT_EQ(CallsOf(got, "step"), 5u);
  EXPECT_EQ(CallsOf(got, "finalize"), 1u);
  EXPECT_EQ(CallsOf(got, "cached"), 3u);  // the cache answers the rest
}

TEST(Counting, PropertiesDescriptorsAndDunderMethodsMatchCProfile) {
  pyh::CountMap got = ExpectParity(R"PY(
import functools
class Temp:
    def __init__(self): self._c = 0
    @property
    def celsius(self): return self._c
    @celsius.setter
    def celsius(self, v): self._c = v
    @celsius.deleter
    def celsius(self): self._c = 0
    @functools.cached_property
    def expensive(self): return self._c * 2
    @classmethod
    def make(cls): return cls()
    @staticmethod
    def unit(): return "C"
    def __getattr__(self, name): return name
    def __repr__(self): return "Temp(%r)" % self._c
    def __format__(self, spec): return format(self._c, spec)
    def __len__(self): return 1
    def __bool__(self): return True
    def __call__(self, x): return x
    def __enter__(self): return self
    def __exit__(self, *exc): return exc[0] is KeyError
class Seq:
    def __init__(self, n): self.n = n
    def __getitem__(self, i):
        if i >= self.n: raise IndexError(i)
        return i
    def __setitem__(self, i, v): pass
    def __contains__(self, v): return 0 <= v < self.n
class Count:
    def __init__(self, n): self.i, self.n = 0, n
    def __iter__(self): return self
    def __next__(self):
        if self.i == self.n: raise StopIteration
        self.i += 1
        return self.i
class Missing(dict):
    def __missing__(self, key): return key
class Base:
    def __init_subclass__(cls, **kw): super().__init_subclass__(**kw)
class Named:
    def __set_name__(self, owner, name): self.name = name
    def __get__(self, obj, owner=None): return self.name
def main():
    t = Temp.make()
    for i in range(20): t.celsius = t.celsius + i
    del t.celsius
    t.expensive; t.expensive
    Temp.unit(); t.nothing_here; repr(t); f"{t:>4}"; len(t); bool(t); t(3)
    with t: pass
    with t: raise KeyError
    s = Seq(30)
    total = 0
    for i in range(200): total += s[i % 30]   # gh-104405: specialised obj[i]
    s[0] = 1; 3 in s
    list(Seq(5))                                # old sequence protocol, from C
    sum(Count(4)); Missing()["k"]
    class Child(Base):
        attr = Named()
    Child().attr
    return total
)PY");
  EXPECT_EQ(CallsOf(got, "__getitem__"), 200u + 6u);  // list() stops at the 6th
  EXPECT_EQ(CallsOf(got, "celsius"), 20u + 20u + 1u);
}

TEST(Counting, ExceptionsAcrossCAndCleanupMatchCProfile) {
  ExpectParity(R"PY(
def bad_key(v): return 1 / (v - 2)
def fails(): raise KeyError("k")
def finally_returns():
    try: fails()
    finally: return "overridden"
def chained():
    try: fails()
    except KeyError as e: raise RuntimeError("chained") from e
def gen_raises():
    yield 1
    raise ValueError("from a generator")
def group():
    raise ExceptionGroup("g", [ValueError(1), KeyError(2)])
class Guard:
    def __enter__(self): return self
    def __exit__(self, *exc):
        cleanup()
        return True
def cleanup(): return None
def main():
    for _ in range(3):
        try: sorted(range(5), key=bad_key)
        except ZeroDivisionError: pass
        finally_returns()
        try: chained()
        except RuntimeError: pass
        try:
            for v in gen_raises(): pass
        except ValueError: pass
        try: group()
        except* ValueError: pass
        except* KeyError: pass
        with Guard(): fails()
)PY");
}

TEST(Counting, RecursionThroughGeneratorsAndCMatchesCProfile) {
  pyh::CountMap got = ExpectParity(R"PY(
def walk(tree):
    if isinstance(tree, int):
        yield tree
        return
    for sub in tree: yield from walk(sub)
def size(n): return 1 + sum(map(size, range(n)))   # recursion through map/sum
def deep(n): return 0 if n == 0 else 1 + deep(n - 1)
def main():
    list(walk([1, [2, [3, [4, 5]], 6], [[7]]]))
    size(6)
    deep(300)
)PY");
  EXPECT_EQ(got["parity.py:8(deep)"].nc, 301u);
  EXPECT_EQ(got["parity.py:8(deep)"].cc, 1u);
  EXPECT_EQ(got["parity.py:7(size)"].nc, 64u);  // 2^6
}

// Python code run while a frame's locals are cleared as it returns, raises
// or finishes a generator (a finalizer, a weakref callback): cProfile's
// return event fires before the clearing, so that code is the caller's
// callee. From 3.12 the eval loop clears inside the frame's evaluation,
// where the frame-evaluation source sees it (source_evalframe.c).
TEST(Counting, FinalizersRunByAReturningFrameMatchCProfile) {
  ExpectParity(R"(
import weakref
class Res:
    def __del__(self): tidy()
def tidy(): pass
def note(ref): pass
def returns():
    r = Res()
    w = weakref.ref(Res(), note)
    keep = [Res(), Res()]
    return 1
def raises():
    r = Res()
    raise KeyError
def gen():
    r = Res()
    yield 1
    yield 2
def closes():
    g = gen()
    next(g)
    g.close()
def nested():
    def inner():
        r = Res()
        return returns()
    return inner()
def main():
    for i in range(3):
        returns()
        try:
            raises()
        except KeyError:
            pass
        for x in gen(): pass
        closes()
        nested()
)");
}

// Calls of classes whose __init__ is a Python function. 3.13 specialises a
// warmed-up call site to CALL_ALLOC_AND_ENTER_INIT, which pushes the
// __init__ frame without calling a frame-evaluation function: the
// frame-evaluation source counts __init__ functions through sys.monitoring
// there. statsprof runs first, so that its run meets sites specialised
// before it started: inherited, super() and raising __init__s, one named
// otherwise, nested construction, a dataclass, and classes made and an
// __init__ replaced while it runs.
TEST(Counting, ClassCallsWithPythonInitMatchCProfile) {
  void *ns = pyh::Exec(R"PY(
import dataclasses
class A:
    def __init__(self, i): self.i = i
class B(A):
    pass
class C(A):
    def __init__(self, i):
        super().__init__(i)
def _other_init(self, i): self.i = -i
class D:
    __init__ = _other_init
class E:
    def __init__(self, i):
        if i % 3 == 0: raise ValueError(i)
        self.i = i
class Node:
    def __init__(self, depth):
        self.kids = [Node(depth - 1) for _ in range(2)] if depth else []
@dataclasses.dataclass
class P:
    x: int
    y: int = 0
def make_late():
    class L:
        def __init__(self, i): self.i = i
    return L
def late_init(self, i): self.i = i * 2
def main():
    t = 0
    for i in range(50):
        t += A(i).i + B(i).i + C(i).i + D(i).i + P(i).x
        try:
            E(i)
        except ValueError:
            t += 1
    Node(4)
    L = make_late()
    for i in range(50): t += L(i).i
    class M:
        def __init__(self, i): self.i = i
    for i in range(20): t += M(i).i
    M.__init__ = late_init
    for i in range(20): t += M(i).i
    return t
)PY",
                       "parity.py");
  for (int i = 0; i < 3; i++)
    if (!pyh::Call(ns, "main")) pyh::TakeError();
  EXPECT_EQ(pyh::RunPy("import gc\ngc.collect()\ngc.disable()"), "");
  pyh::CountMap got = pyh::StatsprofRun(ns, "main");
  pyh::CountMap want = pyh::CProfileRun(ns, "main");
  EXPECT_EQ(pyh::RunPy("import gc\ngc.enable()"), "");
  EXPECT_EQ(pyh::Diff(want, got), "");
  // A's (its own, B's, C's super()) 150, C's, E's, Node's 31, P's, L's, M's
  EXPECT_EQ(CallsOf(got, "__init__"), 150u + 50u + 50u + 31u + 50u + 50u + 20u);
  EXPECT_EQ(CallsOf(got, "_other_init"), 50u);
  EXPECT_EQ(CallsOf(got, "late_init"), 20u);
  pyh::Release(ns);
}

// statsprof's sys.monitoring callbacks can be reached from Python
// (register_callback returns the callback it replaces). Called with
// arguments CPython never passes (too few, or no code object where one
// belongs), they do nothing: no crash, no count, and counting goes on.
TEST(Counting, MonitoringCallbacksCalledFromPythonWithJunkDoNothing) {
  void *ns = pyh::Exec(R"(
import sys
def leaf(x): return x + 1
def poked(): pass
def poke():
    m = getattr(sys, 'monitoring', None)
    for tool in ((3, 4) if m else ()):
        if m.get_tool(tool) != 'statsprof':
            continue
        for name, junk in (('PY_START', ((), (1,), (1, 2), ('x', 0, None), (None, 0, 1, 2))),
                           ('PY_RETURN', ((), (leaf.__code__,))),
                           ('CALL', ((), (1, 2, 3), (None, None, None, None), (1, 2, 3, 4, 5))),
                           ('C_RETURN', ((), (1,), (1, 2, 3)))):
            ev = getattr(m.events, name)
            cb = m.register_callback(tool, ev, None)
            m.register_callback(tool, ev, cb)
            if cb is None:
                continue
            for args in junk:
                if cb(*args) is not None:
                    raise AssertionError((name, args))
            if cb(k=1) is not None:
                raise AssertionError((name, 'keywords'))
            poked()
def main():
    t = 0
    for i in range(50): t += leaf(i)
    poke()
    for i in range(50): t += leaf(i)
    return t
)");
  pyh::CountMap got = pyh::StatsprofRun(ns, "main");
  EXPECT_EQ(got["<test>:3(leaf)"].nc, 100u);
  EXPECT_EQ(got["<test>:5(poke)"].nc, 1u);
  EXPECT_EQ(got["<test>:25(main)"].nc, 1u);
  // Where the source is sys.monitoring, poke() found and called all four.
  const char *source = getenv("STATSPROF_TEST_SOURCE");
  std::string src = source ? source : "";
  const char *builtins = getenv("STATSPROF_TEST_BUILTINS");
  bool evalframe = (src == "evalframe" && pyh::EvalFrameRuns()) ||
                   (src.empty() && builtins && !strcmp(builtins, "off") && pyh::EvalFrameIsDefault());
  bool monitoring = PY_VERSION_HEX >= 0x030C0000 && src != "setprofile" && !evalframe;
  // 3.13's frame-evaluation source counts __init__ functions through
  // sys.monitoring: PY_START's and PY_RETURN's callbacks.
  EXPECT_EQ(got["<test>:4(poked)"].nc, monitoring ? 4u : evalframe && (PY_VERSION_HEX >> 16) == 0x030D ? 2u : 0u);
  pyh::Release(ns);
}

}  // namespace

