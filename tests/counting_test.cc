// counting_test.cc — call counts, recursion and times, with cProfile on the
// same code as the oracle.
#include "pyharness.h"

namespace {

// Runs `fn` from `code` under cProfile and statsprof and expects the same
// functions, call counts and callers.
void ExpectParity(const std::string &code, const char *fn = "main") {
  void *ns = pyh::Exec(code, "parity.py");
  pyh::CountMap want = pyh::CProfileRun(ns, fn);
  pyh::CountMap got = pyh::StatsprofRun(ns, fn);
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(pyh::Diff(want, got), "");
  pyh::Release(ns);
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
  pyh::CountMap got = pyh::StatsprofRun(ns, "main");
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

}  // namespace
