// timer_test.cc — lib/timer.c, trigger=timer: records are cut on the timer's
// own thread while the host never calls statsprof_tick, every call lands in
// exactly one record, a restarted profiler gets its timer back, and
// Py_Finalize with the timer running is safe (last in this file: it
// finalizes the interpreter and starts it again).
#define PY_SSIZE_T_CLEAN
#include <Python.h>


#include <chrono>

#include "collect_sink.h"
#include "pyharness.h"

namespace {

// step() calls f() `calls` times and sleeps 10 ms with the GIL released, so
// the timer's thread can take it and cut a record.
const char kSteps[] = R"(
import time
def f(): pass
def step(calls):
    for i in range(calls): f()
    time.sleep(0.01)
)";

statsprof *Make(const char *config) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
  return p;
}

// Runs step(calls) until `sink` holds `records` records (the timer cut
// them: nothing here ticks); returns the number of steps, 0 when a minute
// was not enough (the test then fails: the timer does not run).
int StepUntil(void *ns, CollectSink *sink, size_t records, int calls) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  PyObject *step = PyDict_GetItemString(static_cast<PyObject *>(ns), "step");
  for (int steps = 1; std::chrono::steady_clock::now() < deadline; steps++) {
    PyObject *r = PyObject_CallFunction(step, "i", calls);
    if (!r) {
      ADD_FAILURE() << pyh::TakeError();
      return 0;
    }
    Py_DECREF(r);
    if (sink->Take().size() >= records) return steps;
  }
  ADD_FAILURE() << "fewer than " << records << " records in a minute; got " << sink->Take().size();
  return 0;
}

uint64_t CallsOfF(const std::vector<CollectedRecord> &recs) {
  uint64_t calls = 0;
  for (auto &r : recs) calls += r.calls("f");
  return calls;
}

TEST(Timer, RecordsAreCutWithoutTicksAndEveryCallLandsInExactlyOne) {
  void *ns = pyh::Exec(kSteps, "timer.py");
  statsprof *p = Make("sink=none;trigger=timer;interval=20ms;on_full=block");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  int steps = StepUntil(ns, &sink, 3, 7);
  ASSERT_GT(steps, 0);
  ASSERT_EQ(statsprof_stop(p), 0);  // cuts the last record and flushes
  auto recs = sink.Take();
  ASSERT_GE(recs.size(), 3u);
  for (size_t i = 0; i < recs.size(); i++) {
    EXPECT_EQ(recs[i].mode, STATSPROF_DELTA) << i;
    EXPECT_EQ(recs[i].seq, recs[0].seq + i) << "records in order, none lost";
    EXPECT_EQ(recs[i].dropped, 0u) << i;
  }
  EXPECT_EQ(CallsOfF(recs), uint64_t(steps) * 7);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Timer, ARestartedProfilerGetsItsTimerBack) {
  void *ns = pyh::Exec(kSteps, "restart.py");
  statsprof *p = Make("sink=none;trigger=timer;interval=20ms;on_full=block");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  int steps = 0;
  for (size_t round = 1; round <= 3; round++) {
    ASSERT_EQ(statsprof_start(p), 0);
    // Two records cut by the timer in each round, beside stop's own.
    int n = StepUntil(ns, &sink, sink.Take().size() + 2, 3);
    ASSERT_GT(n, 0) << "round " << round;
    steps += n;
    ASSERT_EQ(statsprof_stop(p), 0);
  }
  EXPECT_EQ(CallsOfF(sink.Take()), uint64_t(steps) * 3);
  statsprof_destroy(p);
  EXPECT_EQ(sink.closes, 1);
  pyh::Release(ns);
}

TEST(Timer, FinalizeWithTimerRunningIsSafe) {
  // Last in this binary: it finalizes Python and starts it again.
  statsprof *p = Make("sink=none;trigger=timer;interval=10ms");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  void *ns = pyh::Exec(kSteps, "final.py");
  ASSERT_GT(StepUntil(ns, &sink, 1, 3), 0);
  pyh::Release(ns);
  ASSERT_EQ(Py_FinalizeEx(), 0);  // the atexit handler stops the timer first
  statsprof_stats_profile *s = nullptr;
  EXPECT_EQ(statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s), 0);
  statsprof_stats_profile_free(s);
  statsprof_destroy(p);
  EXPECT_GE(sink.Take().size(), 1u);
  Py_InitializeEx(0);
  // A new profiler works in the new interpreter.
  void *ns2 = pyh::Exec("def f(): pass\ndef main():\n  for i in range(3): f()\n", "again.py");
  pyh::CountMap m = pyh::StatsprofRun(ns2, "main");
  EXPECT_EQ(m["again.py:1(f)"].nc, 3u);
  pyh::Release(ns2);
}

}  // namespace
