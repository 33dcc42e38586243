// stdlib_parity_test.cc — cProfile parity on real code: parts of CPython's
// own test suite (Debian's libpython3.11-testsuite), run in-process under
// cProfile and under statsprof. Each suite runs unprofiled first so that
// imports and caches are warm for both profiled runs.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyharness.h"

namespace {

const char kRunner[] = R"(
import unittest, io, importlib, sys
# These start a child interpreter (3.14+: import_helper.ensure_lazy_imports),
# and subprocess's poll loop turns a timing-dependent number of times.
NONDETERMINISTIC = {"test_lazy_import", "test_lazy_imports"}
def deterministic(suite):
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out.addTest(deterministic(t))
        elif getattr(t, "_testMethodName", None) not in NONDETERMINISTIC:
            out.addTest(t)
    return out
def make(name):
    mod = importlib.import_module(name)
    def run():
        suite = deterministic(unittest.defaultTestLoader.loadTestsFromModule(mod))
        res = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
        return res.testsRun
    return run
available = True
try:
    import test.support
except ImportError:
    available = False
)";

class StdlibParity : public testing::TestWithParam<const char *> {};

TEST_P(StdlibParity, CallCountsAndCallersMatchCProfile) {
  void *ns = pyh::Exec(kRunner, "stdlib_runner.py");
  PyObject *d = (PyObject *)ns;
  // tools/setup installs it; missing here is a broken set-up, not a skip.
  ASSERT_EQ(PyDict_GetItemString(d, "available"), Py_True) << "install libpython3.11-testsuite (tools/setup)";
  PyObject *make = PyDict_GetItemString(d, "make");
  PyObject *run = PyObject_CallFunction(make, "s", GetParam());
  ASSERT_NE(run, nullptr) << "cannot import " << GetParam() << ": " << pyh::TakeError();
  PyDict_SetItemString(d, "suite", run);
  Py_DECREF(run);
  // Warm-up, twice: on 3.14 and 3.15 test_string's first rerun still fills
  // an ABC cache (os.PathLike's __subclasshook__, once), so whichever
  // profiler ran first would count 4 calls the other never sees.
  for (int i = 0; i < 2; i++) ASSERT_TRUE(pyh::Call(ns, "suite")) << pyh::TakeError();
  pyh::CountMap want = pyh::CProfileRun(ns, "suite");
  // cProfile sees only the thread that enabled it; statsprof sees every
  // thread, so compare with this thread's own view. (test_enum is not in
  // the list: its threads make this thread's Condition.wait count vary.)
  pyh::CountMap got = pyh::StatsprofRun(ns, "suite", "sink=none", /*this_thread_only=*/true);
  // Python functions alone are fewer (test_html: 80 on 3.11).
  EXPECT_GT(want.size(), pyh::BuiltinsOff() ? 50u : 100u);
  EXPECT_EQ(pyh::Diff(want, got), "");
  uint64_t calls = 0, edges = 0;
  for (const auto &[k, c] : want) {
    calls += c.nc;
    edges += c.callers.size();
  }
  printf("%s: %zu functions, %llu calls, %llu caller edges compared\n", GetParam(), want.size(),
         (unsigned long long)calls, (unsigned long long)edges);
  pyh::Release(ns);
}

INSTANTIATE_TEST_SUITE_P(Suites, StdlibParity,
                         testing::Values("test.test_difflib", "test.test_textwrap",
                                         "test.test_shlex", "test.test_fnmatch", "test.test_html",
                                         "test.test_colorsys", "test.test_string"),
                         [](const testing::TestParamInfo<const char *> &i) {
                           std::string n = i.param;
                           return n.substr(n.rfind('_') + 1);
                         });

}  // namespace
