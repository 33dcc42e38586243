// source_evalframe_test.cc — the frame-evaluation source (PEP 523), with
// builtins=off where it counts exactly (pyh::EvalFrameRuns): when it is
// chosen, when it is refused and why, coexistence with another
// frame-evaluation function, threads it sees without attaching, the
// recursion limit, and evaluations that outlive the run they entered in.
// Its counts against cProfile are the parity suites' (*_evalframe targets).
// Where the source must not run, each test checks the documented refusal
// or fallback instead.
#include <pthread.h>
#include <string.h>

#include <iterator>
#include <map>

#include "child.h"
#include "collect_sink.h"
#include "lib_internal.h"
#include "pyharness.h"
#include "sanitizers.h"

namespace {

// The source builtins=off falls back to where this one would not count
// exactly, and its name in messages.
int Fallback() { return PY_VERSION_HEX >= 0x030C0000 ? STATSPROF__SOURCE_MONITORING : STATSPROF__SOURCE_SETPROFILE; }
const char *FallbackName() { return PY_VERSION_HEX >= 0x030C0000 ? "monitoring" : "setprofile"; }

// Another tool's frame-evaluation function (a debugger's, say).
PyObject *ForeignEval(PyThreadState *ts, struct _PyInterpreterFrame *frame, int throwflag) {
  return _PyEval_EvalFrameDefault(ts, frame, throwflag);
}
_PyFrameEvalFunction Installed() { return _PyInterpreterState_GetEvalFrameFunc(PyThreadState_Get()->interp); }
void Install(_PyFrameEvalFunction f) { _PyInterpreterState_SetEvalFrameFunc(PyThreadState_Get()->interp, f); }

// Whether source=evalframe must run on this interpreter; where it must
// not, checks that forcing it is refused as documented instead.
bool RunsHere() {
  if (pyh::EvalFrameRuns()) return true;
  pyh::ExpectEvalFrameRefused("sink=none");
  return false;
}

statsprof *Make(const std::string &config, pyh::LogLines *log = nullptr) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  if (p && log) statsprof_set_log(p, pyh::LogLines::Fn, log);
  return p;
}

TEST(EvalFrame, BuiltinsOffPicksTheExactSourceOfThisInterpreter) {
  statsprof__evalframe_forget();  // the version's verdict is logged once per interpreter: from here
  pyh::LogLines log;
  statsprof *p = Make("sink=none;builtins=off", &log);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  if (pyh::EvalFrameIsDefault()) {
    EXPECT_EQ(p->src.config.source, STATSPROF__SOURCE_EVALFRAME);
    EXPECT_EQ(log.All(), "");
  } else if (PY_VERSION_HEX >= 0x030C0000) {
    // 3.12+: not the default (lib/profiler.c says why), and no self-check.
    EXPECT_EQ(p->src.config.source, STATSPROF__SOURCE_MONITORING);
    EXPECT_EQ(log.All(), "");
  } else {
    // 3.11 before 3.11.4: the self-check fails (gh-104405) and the log
    // says so.
    EXPECT_EQ(p->src.config.source, Fallback());
    EXPECT_TRUE(log.Has("builtins=off: not using source=evalframe: CPython 3.")) << log.All();
    EXPECT_TRUE(log.Has("pushes some Python frames without calling the frame-evaluation function")) << log.All();
    EXPECT_TRUE(log.Has(": its self-check saw ")) << log.All();
    EXPECT_TRUE(log.Has(std::string("; using source=") + FallbackName())) << log.All();
  }
  // The counts are right whichever source runs.
  void *ns = pyh::Exec("def f(): pass\ndef main():\n  for i in range(7): f()\n");
  pyh::Call(ns, "main");
  EXPECT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
  EXPECT_EQ(pyh::Calls(p, "f"), 7u);
  int p_source = p->src.config.source;
  statsprof_destroy(p);
  // The next profiler chooses the same, and a fallback is not said again.
  pyh::LogLines again;
  statsprof *q = Make("sink=none;builtins=off", &again);
  ASSERT_EQ(statsprof_start(q), 0) << statsprof_errmsg(q);
  EXPECT_EQ(q->src.config.source, p_source);
  EXPECT_EQ(again.All(), "");
  EXPECT_EQ(statsprof_stop(q), 0);
  statsprof_destroy(q);
  // builtins=on keeps the source that counts C functions.
  p = Make("sink=none");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->src.config.source,
            PY_VERSION_HEX >= 0x030C0000 ? STATSPROF__SOURCE_MONITORING : STATSPROF__SOURCE_SETPROFILE);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(EvalFrame, ForcedWithBuiltinsOnIsAConfigError) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create("sink=none;source=evalframe", &p), STATSPROF_ECONFIG);
  EXPECT_EQ(p, nullptr);
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("config: source=evalframe counts Python functions only: it needs builtins=off"),
            std::string::npos)
      << msg;
}

TEST(EvalFrame, ForcedIsRefusedWhereItWouldNotCountExactly) {
  if (!RunsHere()) return;
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  EXPECT_EQ(p->src.config.source, STATSPROF__SOURCE_EVALFRAME);
  // Nothing is slowed but the calls: own time is not scaled.
  EXPECT_EQ(p->src.own_scale, 1u << 16);
  statsprof_destroy(p);
}

// An exception from outside during start's self-check (a signal handler's
// Ctrl-C) was swallowed, and the check cached as failed ("saw -1 of 961
// evaluations") for the rest of the process: builtins=off fell back for
// good, and a forced source=evalframe was refused at every start. The
// start now fails with STATSPROF_EPYTHON and hands the exception back
// (called from C: raised again in this thread's next Python code), and
// the next start checks again. A tracer raises it, deterministically, at
// the self-check's first call (its code's file name is the probe's own;
// calibration has a function of the same name).
TEST(EvalFrame, AnExceptionDuringTheSelfCheckFailsTheStartAndTheNextStartChecksAgain) {
  void *ns = pyh::Exec(
      "import sys\n"
      "def tracer(frame, event, arg):\n"
      "  if event == 'call' and frame.f_code.co_filename == '<statsprof-evalframe-probe>':\n"
      "    sys.settrace(None)\n"
      "    raise KeyboardInterrupt\n"
      "def arm(): sys.settrace(tracer)\n"
      "def after(): return 1\n");
  std::string problems = child::Run([&] {
    child::Problems pr;
    statsprof__evalframe_forget();  // no verdict yet in this process
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;source=evalframe;builtins=off", &p) != 0) return std::string("create");
    pr.Check(pyh::Call(ns, "arm"), "arm");
    int rc = statsprof_start(p);
    pr.Check(rc == STATSPROF_EPYTHON, "start: " + std::to_string(rc) + " " + statsprof_errmsg(p));
    pr.Check(std::string(statsprof_errmsg(p)) ==
                 "statsprof_start: source=evalframe: its self-check was interrupted by an exception",
             statsprof_errmsg(p));
    PyObject *r = PyObject_CallNoArgs(PyDict_GetItemString(static_cast<PyObject *>(ns), "after"));
    pr.Check(!r && PyErr_ExceptionMatches(PyExc_KeyboardInterrupt), "the Ctrl-C was not raised again");
    Py_XDECREF(r);
    PyErr_Clear();
    rc = statsprof_start(p);
    std::string msg = statsprof_errmsg(p);
    if (pyh::EvalFrameRuns())
      pr.Check(rc == 0 && p->src.config.source == STATSPROF__SOURCE_EVALFRAME, "the next start: " + msg);
    else
      pr.Check(rc == STATSPROF_ESTATE && msg.find("self-check saw -1") == std::string::npos &&
                   msg.find("self-check saw") != std::string::npos,
               "the next start: " + msg);
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// An exception of the self-check's own (a RecursionError when started
// near the limit) is no outside interruption: builtins=off falls back for
// this start, says why, and leaves no exception; no verdict is kept.
TEST(EvalFrame, ARecursionErrorInTheSelfCheckFallsBackWithoutAVerdict) {
  void *ns = pyh::Exec(
      "import sys\n"
      "def tracer(frame, event, arg):\n"
      "  if event == 'call' and frame.f_code.co_filename == '<statsprof-evalframe-probe>':\n"
      "    sys.settrace(None)\n"
      "    raise RecursionError('near the limit')\n"
      "def arm(): sys.settrace(tracer)\n"
      "def disarm(): sys.settrace(None)\n");
  std::string problems = child::Run([&] {
    child::Problems pr;
    statsprof__evalframe_forget();  // no verdict yet in this process
    pyh::LogLines log;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;builtins=off", &p) != 0) return std::string("create");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    pr.Check(pyh::Call(ns, "arm"), "arm");
    int rc = statsprof_start(p);
    if (PY_VERSION_HEX < 0x030C0000) {  // where builtins=off tries the frame-evaluation source
      pr.Check(rc == 0 && p->src.config.source == Fallback(), "start: " + std::string(statsprof_errmsg(p)));
      pr.Check(log.Has(std::string("builtins=off: not using source=evalframe: its self-check could not run; using "
                                   "source=") + FallbackName()),
               "the log:\n" + log.All());
    } else {  // sys.monitoring: no self-check, the tracer never fires
      pr.Check(rc == 0 && p->src.config.source == Fallback(), "start: " + std::string(statsprof_errmsg(p)));
    }
    pr.Check(!PyErr_Occurred(), "an exception was left set");
    pr.Check(pyh::Call(ns, "disarm"), "disarm");
    PyErr_Clear();
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

TEST(EvalFrame, AnotherToolsFunctionIsNeverReplaced) {
  Install(ForeignEval);
  // Forced: a clear error naming the condition, and the function stays.
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(statsprof_start(p), STATSPROF_ESTATE);
  std::string msg = statsprof_errmsg(p);
  EXPECT_NE(msg.find(std::string("statsprof_start: source=evalframe: another frame-evaluation function (PEP 523: a "
                                 "debugger or another profiler) is installed on this interpreter; use source=") +
                     FallbackName()),
            std::string::npos)
      << msg;
  EXPECT_TRUE(Installed() == ForeignEval);
  statsprof_destroy(p);
  // Auto: falls back, says why, and counts right.
  pyh::LogLines log;
  p = Make("sink=none;builtins=off", &log);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  EXPECT_EQ(p->src.config.source, Fallback());
  if (PY_VERSION_HEX < 0x030C0000) {  // auto tries it on 3.11 only
    EXPECT_TRUE(log.Has("builtins=off: not using source=evalframe: another frame-evaluation function"))
        << log.All();
  }
  void *ns = pyh::Exec("def f(): pass\ndef main():\n  for i in range(4): f()\n");
  pyh::Call(ns, "main");
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(pyh::Calls(p, "f"), 4u);
  EXPECT_TRUE(Installed() == ForeignEval);
  statsprof_destroy(p);
  Install(nullptr);
  pyh::Release(ns);
}

TEST(EvalFrame, StopPutsBackTheDefaultButNotOverALaterFunction) {
  if (!RunsHere()) return;
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  EXPECT_TRUE(Installed() != _PyEval_EvalFrameDefault);
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_TRUE(Installed() == _PyEval_EvalFrameDefault);
  // Another tool installs its function while statsprof runs: stop leaves it.
  pyh::LogLines log;
  statsprof_set_log(p, pyh::LogLines::Fn, &log);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  Install(ForeignEval);
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_TRUE(Installed() == ForeignEval);
  EXPECT_TRUE(log.Has("source=evalframe: another frame-evaluation function replaced statsprof's; left in place"))
      << log.All();
  // Started again while it is there: refused, not replaced.
  EXPECT_EQ(statsprof_start(p), STATSPROF_ESTATE);
  EXPECT_TRUE(Installed() == ForeignEval);
  statsprof_destroy(p);
  Install(nullptr);
}

TEST(EvalFrame, ASecondProfilerDoesNotTakeTheFunction) {
  if (!RunsHere()) return;
  statsprof *a = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_EQ(statsprof_start(a), 0) << statsprof_errmsg(a);
  ASSERT_EQ(a->src.config.source, STATSPROF__SOURCE_EVALFRAME);
  statsprof *b = Make("sink=none;source=evalframe;builtins=off");
  EXPECT_EQ(statsprof_start(b), STATSPROF_ESTATE);
  std::string msg = statsprof_errmsg(b);
  EXPECT_NE(msg.find("another statsprof profiler is using the frame-evaluation function"), std::string::npos) << msg;
  pyh::LogLines log;
  statsprof *c = Make("sink=none;builtins=off", &log);
  ASSERT_EQ(statsprof_start(c), 0) << statsprof_errmsg(c);
  EXPECT_EQ(c->src.config.source, Fallback());
  if (pyh::EvalFrameIsDefault()) {
    EXPECT_TRUE(log.Has("another statsprof profiler is using the frame-evaluation function")) << log.All();
  }
  // Both count the same calls, each from its own source.
  void *ns = pyh::Exec("def f(): pass\ndef main():\n  for i in range(3): f()\n");
  pyh::Call(ns, "main");
  EXPECT_EQ(statsprof_stop(c), 0);
  EXPECT_EQ(statsprof_stop(a), 0);
  EXPECT_EQ(pyh::Calls(a, "f"), 3u);
  EXPECT_EQ(pyh::Calls(c, "f"), 3u);
  statsprof_destroy(c);
  statsprof_destroy(b);
  statsprof_destroy(a);
  pyh::Release(ns);
}

// At the recursion limit an evaluation can fail CPython's recursion check
// before its first instruction, with no profile event: a call, a generator
// resumed, thrown into or created there. Every depth near the limit is
// tried. Both profilers count the same execution: cProfile runs inside
// statsprof's run, because where exactly the limit strikes depends on what
// each profiler itself takes of the recursion budget (3.14's checks differ
// with and without a frame-evaluation function), and each evaluation must
// count as cProfile counts it.
TEST(EvalFrame, EvaluationsFailingAtTheRecursionLimitMatchCProfile) {
  if (!RunsHere()) return;
  void *ns = pyh::Exec(R"(
import sys
def plain(): pass
def forever():
    while True:
        yield 1
def catches():
    while True:
        try:
            yield 1
        except KeyError:
            pass
def resume(g):
    # FOR_ITER resumes it with no C call in between: next() is a C call,
    # which under cProfile's tracing takes one more level of recursion.
    for x in g:
        return x
def actions(resumed, thrown):
    for act in (plain, lambda: resume(resumed), lambda: thrown.throw(KeyError), lambda: resume(forever())):
        # (a generator that failed the check is finished: throw raises KeyError)
        try:
            act()
        except (RecursionError, StopIteration, KeyError):
            pass
def rec(resumed, thrown):
    try:
        rec(resumed, thrown)
    except RecursionError:
        pass
    actions(resumed, thrown)
def main():
    depth = 0
    f = sys._getframe()
    while f:
        depth, f = depth + 1, f.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 40)
    try:
        for i in range(3):
            resumed, thrown = forever(), catches()
            next(thrown)
            rec(resumed, thrown)
    finally:
        sys.setrecursionlimit(old)
)",
                       "limit.py");
  ASSERT_TRUE(pyh::Call(ns, "main")) << pyh::TakeError();
  EXPECT_EQ(pyh::RunPy("import gc\ngc.collect()\ngc.disable()"), "");
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  pyh::CountMap want = pyh::CProfileRun(ns, "main", 0);
  EXPECT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  pyh::CountMap got = s ? pyh::FromSnapshot(s.get()) : pyh::CountMap{};
  statsprof_destroy(p);
  EXPECT_EQ(pyh::RunPy("import gc\ngc.enable()"), "");
  // statsprof also saw the harness around cProfile's run: only limit.py's
  // functions and callers are compared (cProfile saw nothing else).
  auto ours = [](const std::string &k) { return k.rfind("limit.py:", 0) == 0; };
  for (auto it = got.begin(); it != got.end();) {
    if (!ours(it->first)) {
      it = got.erase(it);
      continue;
    }
    for (auto c = it->second.callers.begin(); c != it->second.callers.end();)
      c = ours(c->first) ? std::next(c) : it->second.callers.erase(c);
    ++it;
  }
  EXPECT_GT(want["limit.py:3(plain)"].nc, 20u);
  EXPECT_EQ(pyh::Diff(want, got), "");
  pyh::Release(ns);
}

// A C thread made after start that enters Python with PyGILState_Ensure
// and never calls statsprof_attach_thread.
void *CThread(void *ns) {
  PyGILState_STATE g = PyGILState_Ensure();
  pyh::Call(ns, "main");
  PyGILState_Release(g);
  return nullptr;
}

TEST(EvalFrame, ACThreadMadeAfterStartIsCountedWithoutAttaching) {
  if (!RunsHere()) return;
  void *ns = pyh::Exec("def f(): pass\ndef main():\n  for i in range(5): f()\n");
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, nullptr, CThread, ns), 0);
  PyThreadState *ts = PyEval_SaveThread();
  pthread_join(th, nullptr);
  PyEval_RestoreThread(ts);
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(pyh::Calls(p, "f"), 5u);  // only that thread called f
  statsprof_destroy(p);
  pyh::Release(ns);
}

// stop() and start() from inside profiled frames: an evaluation that
// entered in one run and returns in the next counts nothing there (it was
// closed at stop, as cProfile's disable closes it), and nothing it left on
// the stack takes the next run's calls as its own.
PyObject *g_restart_target;
PyObject *Restart(PyObject *, PyObject *) {
  statsprof *p = (statsprof *)PyCapsule_GetPointer(g_restart_target, "p");
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_start(p), 0);
  Py_RETURN_NONE;
}
PyMethodDef kRestart = {"restart", Restart, METH_NOARGS, nullptr};

TEST(EvalFrame, EvaluationsOutlivingTheirRunCountNothingInTheNext) {
  if (!RunsHere()) return;
  void *ns = pyh::Exec(R"(
def leaf(): pass
def inner():
    restart()
    leaf()
def outer():
    inner()
    leaf()
)");
  statsprof *p = Make("sink=none;source=evalframe;builtins=off");
  g_restart_target = PyCapsule_New(p, "p", nullptr);
  PyObject *fn = PyCFunction_New(&kRestart, nullptr);
  PyDict_SetItemString((PyObject *)ns, "restart", fn);
  Py_DECREF(fn);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  ASSERT_TRUE(pyh::Call(ns, "outer")) << pyh::TakeError();
  EXPECT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  // outer and inner: once each, closed by the stop inside them.
  const statsprof_function_profile *outer = pyh::Find(s.get(), "outer"), *inner = pyh::Find(s.get(), "inner");
  const statsprof_function_profile *leaf = pyh::Find(s.get(), "leaf");
  ASSERT_TRUE(outer && inner && leaf);
  EXPECT_EQ(outer->ncalls, 1u);
  EXPECT_EQ(inner->ncalls, 1u);
  // leaf: twice in the second run, with no caller (its callers' frames
  // belong to the first run).
  EXPECT_EQ(leaf->ncalls, 2u);
  EXPECT_EQ(leaf->ncallers, 0u);
  statsprof_destroy(p);
  Py_CLEAR(g_restart_target);
  pyh::Release(ns);
}

// A program recurses as deep under builtins=off's default source as
// without a profiler: up to its recursion limit. On 3.12 each evaluation
// through a frame-evaluation function also takes 2 of CPython's 1500 C
// recursion units, one reason builtins=off does not run it by default
// there: forced, the same recursion fails near depth 750.
TEST(EvalFrame, BuiltinsOffLeavesTheRecursionLimitAlone) {
  void *ns = pyh::Exec(R"(
import sys
def down(n):
    return 0 if n == 0 else down(n - 1) + 1
def main():
    depth, f = 0, sys._getframe()
    while f:
        depth, f = depth + 1, f.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        return down(1000 - depth - 10)
    finally:
        sys.setrecursionlimit(old)
)");
  for (const char *config : {"sink=none;builtins=off", "sink=none;source=evalframe;builtins=off"}) {
    bool forced = strstr(config, "evalframe") != nullptr;
    if (forced && !pyh::EvalFrameRuns()) continue;  // refused: ForcedIsRefusedWhereItWouldNotCountExactly
    statsprof *p = Make(config);
    ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
    bool ok = pyh::Call(ns, "main");
    std::string err = ok ? "" : pyh::TakeError();
    EXPECT_EQ(statsprof_stop(p), 0);
    statsprof_destroy(p);
    if (forced && PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000) {
      EXPECT_FALSE(ok);
      EXPECT_NE(err.find("RecursionError"), std::string::npos) << err;
    } else {
      EXPECT_TRUE(ok) << config << ": " << err;
    }
  }
  pyh::Release(ns);
}

// down(depth) on a new thread with the given stack size, under a raised
// recursion limit (0: the default).
const char kRecurse[] = R"(
import sys, threading
def down(n):
    return 0 if n == 0 else down(n - 1) + 1
def main(depth, stack, limit):
    result = []
    def run():
        try:
            result.append(str(down(depth)))
        except RecursionError as e:
            result.append("RecursionError: %s" % e)
    old = sys.getrecursionlimit()
    if limit: sys.setrecursionlimit(limit)
    threading.stack_size(stack)
    try:
        t = threading.Thread(target=run)
        t.start()
        t.join()
    finally:
        threading.stack_size(0)
        sys.setrecursionlimit(old)
    return result[0]
)";

// main(depth, stack, limit) under a profiler made from config: what it
// returned (the depth, or RecursionError's message); *evalframe says
// whether the frame-evaluation source ran.
std::string Recurse(void *ns, const char *config, long depth, long stack, long limit, bool *evalframe) {
  statsprof *p = Make(config);
  if (!p || statsprof_start(p) != 0) return std::string("start: ") + statsprof_errmsg(p);
  PyObject *fn = PyDict_GetItemString(static_cast<PyObject *>(ns), "main");
  PyObject *r = fn ? PyObject_CallFunction(fn, "lll", depth, stack, limit) : nullptr;
  std::string got = r && PyUnicode_Check(r) ? PyUnicode_AsUTF8(r) : "main() raised: " + pyh::TakeError();
  Py_XDECREF(r);
  statsprof_stop(p);
  *evalframe = p->config.source == STATSPROF__SOURCE_EVALFRAME;
  statsprof_destroy(p);
  return got;
}

// Where the frame-evaluation source makes each Python call a C call that
// CPython does not bound by bytes (3.11: no C recursion limit; 3.12, 3.13:
// ones that count calls), statsprof refuses an evaluation near its
// thread's stack end.
bool ChecksTheStack() { return PY_VERSION_HEX < 0x030E0000; }

// 3.11 inlines a Python call into its caller's evaluation only while no
// frame-evaluation function is installed: under this source each call is a
// C call, and 3.11 has no C recursion limit. A program that raised its
// recursion limit and recursed deep, fine without a profiler and under
// cProfile, overflowed its thread's C stack (SIGSEGV, 3.11.7: this child
// died of signal 11). It gets RecursionError now, as 3.12's C recursion
// limit gives it; 3.13's counts calls: RecursionError beyond
// about 5000 frames; where another source runs, the recursion completes.
TEST(EvalFrame, DeepRecursionUnderARaisedLimitNeverOverflowsTheCStack) {
  void *ns = pyh::Exec(kRecurse);
  std::string problems = child::Run([&] {
    bool evalframe = false;
    // 200000 C calls of ~500 bytes do not fit in 16 MiB
    std::string got = Recurse(ns, "sink=none;builtins=off", 200000, 16 << 20, 210000, &evalframe);
    if (evalframe && PY_VERSION_HEX < 0x030C0000)
      return got.find("no C stack left") != std::string::npos ? std::string() : "want RecursionError, got " + got;
    // 3.13: CPython's C recursion limit, 10000 units of 2 per evaluation
    if (evalframe && (PY_VERSION_HEX >> 16) == 0x030D)
      return got.find("maximum recursion depth exceeded") != std::string::npos ? std::string()
                                                                              : "want RecursionError, got " + got;
    return got == "200000" ? std::string() : "want 200000, got " + got;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A thread started with a small stack, recursing within Python's default
// limit: without a profiler (and under cProfile) 3.11 to 3.15 run it
// without C recursion. Under the frame-evaluation source each call is a C
// call, and the C recursion limits of 3.12 and 3.13 count calls, not
// bytes: 900 frames of ~500 bytes overflowed 256 KiB (this child died of
// signal 11 on 3.13.0, and with source=evalframe on 3.12.1). Where
// statsprof checks the stack (3.11 to 3.13) such an evaluation gets its
// RecursionError; on 3.14+ CPython's own ("Stack overflow (used 220 kB)":
// it checks the stack pointer);
// on the other sources the recursion completes. Under the sanitizers a
// frame takes several times the stack, and 256 KiB did not leave the
// thread's own start-up room (threading's start() then waits for ever):
// 2 MiB there, where the recursion may complete. In a child, so that a
// crash or a hang fails the test. Each round starts a new profiler and
// thread.
TEST(EvalFrame, SmallThreadStackNeverOverflows) {
  void *ns = pyh::Exec(kRecurse);
  for (const char *config : {"sink=none;builtins=off", "sink=none;builtins=off;source=evalframe"}) {
    if (strstr(config, "evalframe") && !pyh::EvalFrameRuns()) continue;
    std::string problems = child::Run([&] {
      std::string bad;
      for (int round = 0; round < 5 && bad.empty(); round++) {
        bool evalframe = false;
        std::string got = Recurse(ns, config, 900, sanitizers::kAny ? 2 << 20 : 256 << 10, 0, &evalframe);
        if (evalframe && ChecksTheStack() && !sanitizers::kAny) {
          if (got.find("no C stack left") == std::string::npos) bad = "want RecursionError, got " + got;
        } else if (evalframe) {
          if (got != "900" && got.rfind("RecursionError: ", 0) != 0) bad = "want 900 or RecursionError, got " + got;
        } else if (got != "900") {
          bad = "want 900, got " + got;
        }
      }
      return bad;
    });
    EXPECT_EQ(problems, "") << config;
  }
  pyh::Release(ns);
}

// Production mode: the source is installed only during windows, and
// classes are made, and their call sites specialised, in and between
// windows (on 3.13 CALL_ALLOC_AND_ENTER_INIT then pushes their __init__
// without the frame-evaluation function: each window's attach finds the
// classes made since the last, lib/source_evalframe.c). Every __init__
// call that starts inside a window, as Python sees it, is counted once,
// the one named __init__ and the one named otherwise alike.
statsprof *g_duty_p;
PyObject *PyTick(PyObject *, PyObject *) {
  statsprof_tick(g_duty_p);
  Py_RETURN_NONE;
}
PyObject *PyInWindow(PyObject *, PyObject *) { return PyBool_FromLong(g_duty_p && g_duty_p->duty.in_window); }
PyMethodDef kTickDef = {"tick", PyTick, METH_NOARGS, nullptr};
PyMethodDef kInWindowDef = {"in_window", PyInWindow, METH_NOARGS, nullptr};
// tick() and in_window() for the Python code in ns.
void AddWindowFunctions(void *ns) {
  for (PyMethodDef *def : {&kTickDef, &kInWindowDef}) {
    PyObject *fn = PyCFunction_New(def, nullptr);
    PyDict_SetItemString(static_cast<PyObject *>(ns), def->ml_name, fn);
    Py_DECREF(fn);
  }
}

TEST(EvalFrame, ProductionWindowsCountClassesMadeBetweenThem) {
  void *ns = pyh::Exec(R"(
import time
counts = {}
def reset():
    counts.update(a=0, a_in=0, b=0, b_in=0)
A_SRC = """
class A:
    def __init__(self, i):
        counts["a_in"] += in_window()
        counts["a"] += 1
"""
B_SRC = """
def _init_b(self, i):
    counts["b_in"] += in_window()
    counts["b"] += 1
"""
def make(k):
    # a code object of its own for each class: one recognised in an
    # earlier window tells nothing about this one
    g = {"counts": counts, "in_window": in_window}
    if k % 2:
        exec(compile(B_SRC, "b%d.py" % k, "exec"), g)
        return type("B", (), {"__init__": g["_init_b"]})
    exec(compile(A_SRC, "a%d.py" % k, "exec"), g)
    return g["A"]
def call(cls, n):
    for i in range(n): cls(i)
def run(seconds):
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        cls = make(k)
        k += 1
        call(cls, 8)
        tick()
        call(cls, 8)
        tick()
)",
                       "windows.py");
  AddWindowFunctions(ns);
  for (const char *config : {"sink=none;builtins=off;window=5ms;every=20ms;interval=1h",
                             "sink=none;builtins=off;source=evalframe;window=5ms;every=20ms;interval=1h"}) {
    if (strstr(config, "evalframe") && !pyh::EvalFrameRuns()) continue;
    ASSERT_TRUE(pyh::Call(ns, "reset")) << pyh::TakeError();
    CollectSink sink;
    g_duty_p = Make(config);
    ASSERT_NE(g_duty_p, nullptr);
    ASSERT_EQ(statsprof_add_sink(g_duty_p, CollectSink::Ops(), &sink), 0);
    ASSERT_EQ(statsprof_start(g_duty_p), 0) << statsprof_errmsg(g_duty_p);
    PyObject *r = PyObject_CallFunction(PyDict_GetItemString(static_cast<PyObject *>(ns), "run"), "d", 0.5);
    EXPECT_NE(r, nullptr) << pyh::TakeError();
    Py_XDECREF(r);
    statsprof_destroy(g_duty_p);
    g_duty_p = nullptr;
    uint64_t a = 0, b = 0;
    for (auto &rec : sink.Take())
      if (rec.kind == STATSPROF_RECORD_DELTA)
        for (auto &[name, calls, tt, ct] : rec.funcs) a += name == "__init__" ? calls : 0, b += name == "_init_b" ? calls : 0;
    PyObject *counts = PyDict_GetItemString(static_cast<PyObject *>(ns), "counts");
    auto count = [&](const char *k) { return (uint64_t)PyLong_AsLong(PyDict_GetItemString(counts, k)); };
    EXPECT_EQ(a, count("a_in")) << config;
    EXPECT_EQ(b, count("b_in")) << config;
    EXPECT_GT(count("a_in"), 0u) << config;
    EXPECT_LT(count("a_in"), count("a")) << config;  // some calls were made between windows
  }
  pyh::Release(ns);
}

// Calls by function name (all files) since p's last delta snapshot.
std::map<std::string, uint64_t> DeltaCalls(statsprof *p) {
  std::map<std::string, uint64_t> calls;
  statsprof_stats_profile *st = nullptr;
  EXPECT_EQ(statsprof_snapshot(p, STATSPROF_DELTA, &st), 0) << statsprof_errmsg(p);
  for (size_t i = 0; st && i < st->nfunc_profiles; i++) calls[st->func_profiles[i].function_name] += st->func_profiles[i].ncalls;
  statsprof_stats_profile_free(st);
  return calls;
}

// Classes called once each through one call site they share (a factory,
// a registry): on 3.13 the site specialises again from time to time, and
// then at some class's very first call, which pushes its __init__ without
// the frame-evaluation function (every 53rd class here). Every call counts,
// over two runs of one profiler, whose second run meets code objects the
// first one saw: the classes are made in each run, by exec'd code as
// dataclasses and attrs make them, and in a class body.
TEST(EvalFrame, FreshClassesThroughOneSiteCountEveryCall) {
  if (!RunsHere()) return;
  void *ns = pyh::Exec(R"(
counts = {"n": 0}
def exec_made(k):
    g = {"counts": counts}
    exec(compile("class C:\n    def __init__(self):\n        counts['n'] += 1\n", "c%d.py" % k, "exec"), g)
    return g["C"]
def body_made():
    class D:
        def __init__(self):
            counts["n"] += 1
    return D
def use(cls):
    return cls()
def main():
    for k in range(150):
        use(exec_made(k))
        use(body_made())
)",
                       "fresh.py");
  for (const char *config : {"sink=none;builtins=off", "sink=none;builtins=off;source=evalframe"}) {
    statsprof *p = Make(config);
    ASSERT_NE(p, nullptr);
    for (int run = 0; run < 2; run++) {
      ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
      ASSERT_TRUE(pyh::Call(ns, "main")) << pyh::TakeError();
      std::map<std::string, uint64_t> calls = DeltaCalls(p);
      EXPECT_EQ(statsprof_stop(p), 0);
      EXPECT_EQ(calls["use"], 300u) << config << " run " << run;
      EXPECT_EQ(calls["__init__"], 300u) << config << " run " << run;
    }
    statsprof_destroy(p);
  }
  pyh::Release(ns);
}

// Production mode's stop gives back what the source took, whether a
// window is open at the stop or not (from 3.13 its sys.monitoring tool id;
// on 3.13 the local events of the __init__ functions too), and the next
// run of the profiler counts as exactly as its first: its function watcher
// and its walk over the classes are back (a stop inside a window once left
// the tool, the local events and the walked state behind, and the next
// start then skipped them).
TEST(EvalFrame, ProductionStopGivesBackItsToolAndLocalEvents) {
  if (!RunsHere()) return;
  void *ns = pyh::Exec(R"(
import sys
counts = {"n": 0}
class Old:
    def __init__(self):
        counts["n"] += 1
def fresh(k):
    g = {"counts": counts}
    exec(compile("class C:\n    def __init__(self):\n        counts['n'] += 1\n", "p%d.py" % k, "exec"), g)
    return g["C"]
def use(cls):
    return cls()
def work(k0):
    for k in range(k0, k0 + 100):
        use(fresh(k))
        use(Old)
def until(want_open):
    for _ in range(10000000):
        if bool(in_window()) == want_open:
            return True
        tick()
    return False
def leftovers():
    m = getattr(sys, "monitoring", None)
    if m is None:
        return ""
    left = ["tool %d" % i for i in (3, 4) if m.get_tool(i) == "statsprof"]
    left += ["local events %d" % i for i in (3, 4) if m.get_local_events(i, Old.__init__.__code__)]
    return ", ".join(left)
)",
                       "prodstop.py");
  AddWindowFunctions(ns);
  auto py = [&](const std::string &call) {
    PyObject *r = PyRun_String(call.c_str(), Py_eval_input, static_cast<PyObject *>(ns), static_cast<PyObject *>(ns));
    std::string out = !r ? pyh::TakeError() : PyUnicode_Check(r) ? PyUnicode_AsUTF8(r) : r == Py_True ? "True" : r == Py_None ? "None" : "?";
    Py_XDECREF(r);
    return out;
  };
  // Windows that open and close: a stop inside one, then one between two.
  g_duty_p = Make("sink=none;builtins=off;source=evalframe;window=5ms;every=20ms;interval=1h");
  ASSERT_NE(g_duty_p, nullptr);
  for (bool open : {true, false}) {
    ASSERT_EQ(statsprof_start(g_duty_p), 0) << statsprof_errmsg(g_duty_p);
    EXPECT_EQ(py("work(0)"), "None");
    EXPECT_EQ(py(open ? "until(True)" : "until(False)"), "True");
    EXPECT_EQ(statsprof_stop(g_duty_p), 0);
    EXPECT_EQ(py("leftovers()"), "") << (open ? "stopped in a window" : "stopped between windows");
  }
  statsprof_destroy(g_duty_p);
  // One window for the whole run: every call counts, run after run.
  g_duty_p = Make("sink=none;builtins=off;source=evalframe;window=1h;every=2h;interval=1h");
  ASSERT_NE(g_duty_p, nullptr);
  for (int run = 0; run < 3; run++) {
    ASSERT_EQ(statsprof_start(g_duty_p), 0) << statsprof_errmsg(g_duty_p);
    EXPECT_EQ(py("work(" + std::to_string(1000 * (run + 1)) + ")"), "None");
    std::map<std::string, uint64_t> calls = DeltaCalls(g_duty_p);
    EXPECT_EQ(statsprof_stop(g_duty_p), 0);
    EXPECT_EQ(calls["use"], 200u) << "run " << run;
    EXPECT_EQ(calls["__init__"], 200u) << "run " << run;
    EXPECT_EQ(py("leftovers()"), "") << "run " << run;
  }
  statsprof_destroy(g_duty_p);
  g_duty_p = nullptr;
  pyh::Release(ns);
}

}  // namespace
