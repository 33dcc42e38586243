// snapshot_test.cc — delta and cumulative snapshots, seq and timestamps,
// reset, tick/emit_now/stop emission, callers, and the max_functions cap.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <unistd.h>

#include <vector>

#include "collect_sink.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

// A profiler with sink=none plus a recording host sink.
struct Profiler {
  statsprof *p = nullptr;
  pyh::RecordingSink sink;
  explicit Profiler(const char *config = "sink=none") {
    EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
    if (p) {
      EXPECT_EQ(pyh::AddRecordingSink(p, &sink), 0) << statsprof_errmsg(p);
    }
  }
  ~Profiler() { statsprof_destroy(p); }
};

uint64_t Calls(const statsprof_stats_profile *s, const char *name) {
  const statsprof_function_profile *f = pyh::Find(s, name);
  return f ? f->ncalls : 0;
}

uint64_t TotalCalls(const statsprof_stats_profile *s) {
  uint64_t n = 0;
  for (size_t i = 0; i < s->nfunc_profiles; i++) n += s->func_profiles[i].ncalls;
  return n;
}

const char kTwoFunctions[] = R"(
def f(): pass
def g(): pass
def f3():
    for i in range(3): f()
def f2():
    f(); f()
def g1(): g()
)";

// ---- delta and cumulative ------------------------------------------------

TEST(Snapshot, DeltaExcludesCallsBeforePreviousDelta) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr;
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f3");
  pyh::Call(ns, "g1");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "f2");
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Snap d3 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  ASSERT_TRUE(d1 && d2 && d3);
  EXPECT_EQ(d1->mode, STATSPROF_DELTA);
  EXPECT_EQ(d1->kind, STATSPROF_RECORD_DELTA);
  EXPECT_EQ(Calls(d1.get(), "f"), 3u);
  EXPECT_EQ(Calls(d1.get(), "g"), 1u);
  EXPECT_EQ(Calls(d2.get(), "f"), 2u);
  EXPECT_EQ(pyh::Find(d2.get(), "g"), nullptr);   // only called before d1
  EXPECT_EQ(pyh::Find(d2.get(), "f3"), nullptr);
  EXPECT_EQ(d3->nfunc_profiles, 0u);              // nothing since d2
  EXPECT_EQ(d3->total_tt, 0.0);
  // The caller edges are deltas too.
  const statsprof_function_profile *f = pyh::Find(d2.get(), "f");
  ASSERT_EQ(f->ncallers, 1u);
  EXPECT_STREQ(f->callers[0].function_name, "f2");
  EXPECT_EQ(f->callers[0].ncalls, 2u);
  pyh::Release(ns);
}

TEST(Snapshot, CumulativeKeepsEverythingAndMovesNoMark) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr;
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f3");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "f2");
  pyh::Call(ns, "g1");
  pyh::Snap c1 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  pyh::Snap c2 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  EXPECT_EQ(c1->mode, STATSPROF_CUMULATIVE);
  EXPECT_EQ(c1->kind, STATSPROF_RECORD_CUMULATIVE);
  EXPECT_EQ(Calls(c1.get(), "f"), 5u);
  EXPECT_EQ(Calls(c1.get(), "g"), 1u);
  EXPECT_EQ(Calls(c2.get(), "f"), 5u);
  // The cumulative snapshots did not move the delta mark.
  EXPECT_EQ(Calls(d2.get(), "f"), 2u);
  EXPECT_EQ(Calls(d2.get(), "g"), 1u);
  EXPECT_EQ(pyh::Diff(pyh::FromSnapshot(c1.get()), pyh::FromSnapshot(c2.get())), "");
  pyh::Release(ns);
}

TEST(Snapshot, SeqCountsDeltasAndIsSharedWithEmittedRecords) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Snap c0 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(c0->seq, 1u);  // in the first delta's interval (it said 0)
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Snap c1 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  pyh::Call(ns, "f2");
  ASSERT_EQ(statsprof_emit_now(pr.p), 0);
  pyh::Snap d3 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  ASSERT_EQ(statsprof_flush(pr.p), 0);
  EXPECT_EQ(d1->seq, 1u);
  EXPECT_EQ(c1->seq, 2u);  // the next delta's: cumulative does not advance it
  ASSERT_EQ(pr.sink.records.size(), 1u);
  EXPECT_EQ(pr.sink.records[0].seq, 2u);
  EXPECT_EQ(pr.sink.records[0].calls_by_name["f"], 2u);
  EXPECT_EQ(d3->seq, 3u);
  EXPECT_EQ(d3->nfunc_profiles, 0u);  // emit_now moved the mark
  pyh::Release(ns);
}

// A thread's delta (statsprof_snapshot_thread) moves only that thread's
// own mark: the merged deltas and the sinks' records still have its calls
// (the thread delta took them: f() x5, thread delta, f() x3, and the
// merged delta said 3 where cumulative said 8), and a second thread delta
// has what the thread did since the first.
TEST(Snapshot, AThreadDeltaMovesOnlyThatThreadsOwnMark) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;writer=sync;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  uint64_t tid = PyThread_get_thread_ident();
  auto thread_delta = [&] {
    statsprof_stats_profile *t = nullptr;
    EXPECT_EQ(statsprof_snapshot_thread(pr.p, STATSPROF_DELTA, tid, &t), 0) << statsprof_errmsg(pr.p);
    return pyh::Snap(t);
  };
  pyh::Call(ns, "f3");
  pyh::Call(ns, "f2");
  pyh::Snap t1 = thread_delta();
  pyh::Call(ns, "f3");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "f2");
  pyh::Snap t2 = thread_delta();
  ASSERT_EQ(statsprof_emit_now(pr.p), 0);
  pyh::Snap t3 = thread_delta();
  pyh::Snap c = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  ASSERT_TRUE(t1 && t2 && t3 && d1 && c);
  EXPECT_EQ(Calls(t1.get(), "f"), 5u);
  EXPECT_EQ(Calls(d1.get(), "f"), 8u);   // the merged delta has all since start
  EXPECT_EQ(Calls(t2.get(), "f"), 5u);   // since t1: 3 + 2
  EXPECT_EQ(t2->start_ns, t1->end_ns);
  EXPECT_EQ(t3->nfunc_profiles, 0u);     // nothing since t2
  ASSERT_EQ(pr.sink.records.size(), 1u);
  EXPECT_EQ(pr.sink.records[0].calls_by_name["f"], 2u);  // since d1
  EXPECT_EQ(Calls(c.get(), "f"), 10u);
  // A reset zeroes the thread's mark with its counts.
  ASSERT_EQ(statsprof_reset(pr.p), 0);
  pyh::Call(ns, "f2");
  pyh::Snap t4 = thread_delta();
  EXPECT_EQ(Calls(t4.get(), "f"), 2u);
  EXPECT_GE(t4->start_ns, t3->end_ns);
  pyh::Release(ns);
}

// A thread that ended gives its slot to the next thread once its last
// record went out: that thread's deltas start from zero, not from the
// mark the ended thread left there.
TEST(Snapshot, AThreadDeltaOfANewThreadInAnEndedOnesSlotStartsFromZero) {
  void *ns = pyh::Exec(std::string(kTwoFunctions) + R"(
import threading
ids = []
def run(fn):
    def body():
        ids.append(threading.get_ident())
        fn()
    t = threading.Thread(target=body)
    t.start()
    t.join()
def first(): run(f2)
def second(): run(f)
)");
  Profiler pr("sink=none;writer=sync;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  auto thread_delta = [&](int k) {
    PyObject *ids = PyDict_GetItemString((PyObject *)ns, "ids");
    uint64_t tid = PyLong_AsUnsignedLongLong(PyList_GetItem(ids, k));
    statsprof_stats_profile *t = nullptr;
    EXPECT_EQ(statsprof_snapshot_thread(pr.p, STATSPROF_DELTA, tid, &t), 0) << statsprof_errmsg(pr.p);
    return pyh::Snap(t);
  };
  ASSERT_TRUE(pyh::Call(ns, "first"));
  pyh::Snap t1 = thread_delta(0);
  // The ended thread's last record frees its slot (once its OS thread is
  // gone: join returns a little before).
  uint64_t first_id = PyLong_AsUnsignedLongLong(PyList_GetItem(PyDict_GetItemString((PyObject *)ns, "ids"), 0));
  for (int i = 0; i < 2000 && statsprof__threads_find(pr.p, first_id) != STATSPROF__NONE; i++) {
    ASSERT_EQ(statsprof_emit_now(pr.p), 0);
    usleep(1000);
  }
  ASSERT_EQ(statsprof__threads_find(pr.p, first_id), STATSPROF__NONE);
  ASSERT_TRUE(pyh::Call(ns, "second"));
  pyh::Snap t2 = thread_delta(1);
  ASSERT_TRUE(t1 && t2);
  EXPECT_EQ(Calls(t1.get(), "f"), 2u);
  EXPECT_EQ(Calls(t2.get(), "f"), 1u);
  EXPECT_EQ(Calls(t2.get(), "body"), 1u);
  pyh::Release(ns);
}

// A host's thread delta falls in the interval the next merged delta
// covers, and has that delta's seq, as per_thread=on's records do (it had
// the previous delta's, 0 before the first).
TEST(Snapshot, ThreadSnapshotsHaveTheSeqOfTheDeltaThatCoversThem) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f2");
  uint64_t tid = PyThread_get_thread_ident();
  statsprof_stats_profile *t1 = nullptr, *t2 = nullptr;
  ASSERT_EQ(statsprof_snapshot_thread(pr.p, STATSPROF_DELTA, tid, &t1), 0) << statsprof_errmsg(pr.p);
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  ASSERT_EQ(statsprof_snapshot_thread(pr.p, STATSPROF_CUMULATIVE, tid, &t2), 0) << statsprof_errmsg(pr.p);
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  EXPECT_EQ(t1->kind, STATSPROF_RECORD_THREAD);
  EXPECT_EQ(t1->seq, d1->seq);
  EXPECT_EQ(t2->seq, d2->seq);
  EXPECT_EQ(d1->seq, 1u);
  statsprof_stats_profile_free(t1);
  statsprof_stats_profile_free(t2);
  pyh::Release(ns);
}

TEST(Snapshot, TimestampsChainFromOneDeltaToTheNext) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr;
  int64_t before_start = pyh::WallNs();
  ASSERT_EQ(statsprof_start(pr.p), 0);
  int64_t after_start = pyh::WallNs();
  pyh::Call(ns, "f3");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "f2");
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Snap d3 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  int64_t before_cum = pyh::WallNs();
  pyh::Snap c = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  int64_t after_cum = pyh::WallNs();

  // The first interval starts at start, not at create (it did).
  EXPECT_GE(d1->start_ns, before_start);
  EXPECT_LE(d1->start_ns, after_start);
  EXPECT_LE(d1->start_ns, d1->end_ns);
  EXPECT_EQ(d2->start_ns, d1->end_ns);
  EXPECT_LE(d2->start_ns, d2->end_ns);
  EXPECT_EQ(d3->start_ns, d2->end_ns);
  EXPECT_LE(d3->start_ns, d3->end_ns);
  // Cumulative covers everything since start.
  EXPECT_EQ(c->start_ns, d1->start_ns);
  EXPECT_GE(c->end_ns, before_cum);
  EXPECT_LE(c->end_ns, after_cum);
  EXPECT_GE(c->end_ns, d3->end_ns);
  EXPECT_EQ(d1->pid, static_cast<int64_t>(getpid()));
  EXPECT_EQ(c->pid, static_cast<int64_t>(getpid()));
  pyh::Release(ns);
}

// Stopped, the profiler counts nothing: the first delta after a restart
// starts at the restart (it claimed the stopped gap, which production mode
// then scaled the counts up by), while cumulative still starts at the
// first start.
TEST(Snapshot, ARestartsFirstDeltaStartsAtTheRestart) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f2");
  ASSERT_EQ(statsprof_stop(pr.p), 0);  // its record ends the first interval
  int64_t before_restart = pyh::WallNs();
  ASSERT_EQ(statsprof_start(pr.p), 0);
  int64_t after_restart = pyh::WallNs();
  pyh::Call(ns, "f3");
  pyh::Snap d = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Snap c = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  ASSERT_TRUE(d && c);
  ASSERT_EQ(statsprof_flush(pr.p), 0);
  ASSERT_EQ(pr.sink.records.size(), 1u);
  EXPECT_GE(d->start_ns, before_restart);
  EXPECT_LE(d->start_ns, after_restart);
  EXPECT_EQ(Calls(d.get(), "f"), 3u);
  EXPECT_EQ(c->start_ns, pr.sink.records[0].start_ns);
  EXPECT_EQ(Calls(c.get(), "f"), 5u);
  pyh::Release(ns);
}

TEST(Snapshot, ResetForgetsCountsAndRestartsBothMarks) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr;
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f3");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "f2");
  pyh::Call(ns, "g1");
  int64_t before_reset = pyh::WallNs();
  ASSERT_EQ(statsprof_reset(pr.p), 0);
  int64_t after_reset = pyh::WallNs();

  pyh::Snap c0 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(c0->nfunc_profiles, 0u);
  EXPECT_EQ(c0->total_tt, 0.0);
  EXPECT_GE(c0->start_ns, before_reset);
  EXPECT_LE(c0->start_ns, after_reset);

  pyh::Call(ns, "f");
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  EXPECT_EQ(Calls(d2.get(), "f"), 1u);  // not 1 - 2 (the calls reset dropped)
  EXPECT_EQ(pyh::Find(d2.get(), "g"), nullptr);
  EXPECT_GE(d2->start_ns, before_reset);
  EXPECT_LE(d2->start_ns, after_reset);
  EXPECT_GT(d2->seq, d1->seq);  // reset keeps the sequence going

  pyh::Call(ns, "f2");
  pyh::Snap c1 = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(Calls(c1.get(), "f"), 3u);
  EXPECT_EQ(Calls(c1.get(), "f3"), 0u);
  pyh::Release(ns);
}

// A host's snapshot carries the records lost so far, as emitted records
// do: both counters were 0 there, whatever the sinks had lost.
TEST(Snapshot, HostSnapshotsCarryDroppedAndSinkErrorsSoFar) {
  void *ns = pyh::Exec(kTwoFunctions);
  GateSink stuck;
  CollectSink failing;
  failing.fail = 1;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h;queue=1;stop_timeout=200ms", &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_add_sink(p, GateSink::Ops(), &stuck), 0);
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &failing), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f2");
  // Each sink takes one record and queues one: the third is dropped at
  // the stuck sink (and maybe at the failing one).
  for (int i = 0; i < 3; i++) ASSERT_EQ(statsprof_emit_now(p), 0);
  // The failing sink's records are all taken (the stuck one's wait ends).
  ASSERT_EQ(statsprof_flush(p), 0);
  ASSERT_GE(statsprof_dropped(p), 1u);
  ASSERT_GE(statsprof_sink_errors(p), 1u);
  for (statsprof_snapshot_mode mode : {STATSPROF_DELTA, STATSPROF_CUMULATIVE}) {
    pyh::Snap s = pyh::Snapshot(p, mode);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->dropped, statsprof_dropped(p));
    EXPECT_EQ(s->sink_errors, statsprof_sink_errors(p));
    statsprof_stats_profile *t = nullptr;
    ASSERT_EQ(statsprof_snapshot_thread(p, mode, PyThread_get_thread_ident(), &t), 0) << statsprof_errmsg(p);
    EXPECT_EQ(t->dropped, statsprof_dropped(p));
    EXPECT_EQ(t->sink_errors, statsprof_sink_errors(p));
    statsprof_stats_profile_free(t);
  }
  stuck.open = true;
  statsprof_destroy(p);
  // An abandoned writer closes the stuck sink on its own thread: the sink
  // must outlive it (under load it was gone first: std::system_error).
  for (int i = 0; i < 60000 && stuck.closes == 0; i++) usleep(1000);  // a hang guard
  EXPECT_EQ(stuck.closes, 1);
  pyh::Release(ns);
}

TEST(Snapshot, BadModeOrNullOutIsEinval) {
  Profiler pr;
  statsprof_stats_profile *s = reinterpret_cast<statsprof_stats_profile *>(0x1);
  EXPECT_EQ(statsprof_snapshot(pr.p, static_cast<statsprof_snapshot_mode>(7), &s), STATSPROF_EINVAL);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(std::string(statsprof_errmsg(pr.p)).find("bad mode 7"), std::string::npos);
  EXPECT_EQ(statsprof_snapshot(pr.p, STATSPROF_DELTA, nullptr), STATSPROF_EINVAL);
}

// 2 was STATSPROF_SPIKE, a record kind that was never a valid request.
TEST(Snapshot, ARecordKindIsNotAModeForEitherSnapshotFunction) {
  Profiler pr;
  statsprof_stats_profile *s = nullptr;
  auto spike = static_cast<statsprof_snapshot_mode>(STATSPROF_RECORD_SPIKE);
  EXPECT_EQ(statsprof_snapshot(pr.p, spike, &s), STATSPROF_EINVAL);
  EXPECT_EQ(s, nullptr);
  EXPECT_STREQ(statsprof_errmsg(pr.p),
               "statsprof_snapshot: bad mode 2 (not STATSPROF_DELTA or STATSPROF_CUMULATIVE)");
  EXPECT_EQ(statsprof_snapshot_thread(pr.p, spike, 1, &s), STATSPROF_EINVAL);
  EXPECT_STREQ(statsprof_errmsg(pr.p),
               "statsprof_snapshot_thread: bad mode 2 (not STATSPROF_DELTA or STATSPROF_CUMULATIVE)");
}

TEST(RecordKind, EveryKindHasItsOwnNameAndAnUnknownValueIsUnknown) {
  EXPECT_STREQ(statsprof_record_kind_name(STATSPROF_RECORD_CUMULATIVE), "cumulative");
  EXPECT_STREQ(statsprof_record_kind_name(STATSPROF_RECORD_DELTA), "delta");
  EXPECT_STREQ(statsprof_record_kind_name(STATSPROF_RECORD_SPIKE), "spike");
  EXPECT_STREQ(statsprof_record_kind_name(STATSPROF_RECORD_THREAD), "thread");
  // A kind added to the table without a line above fails here.
#define COUNT_KIND(name, value, text) +1
  EXPECT_EQ(0 STATSPROF_RECORD_KIND_MAP(COUNT_KIND), 4);
#undef COUNT_KIND
  EXPECT_STREQ(statsprof_record_kind_name(static_cast<statsprof_record_kind>(4)), "unknown");
  EXPECT_STREQ(statsprof_record_kind_name(static_cast<statsprof_record_kind>(-1)), "unknown");
  EXPECT_STREQ(statsprof_record_kind_name(static_cast<statsprof_record_kind>(1000)), "unknown");
}

TEST(Snapshot, OutlivesItsProfiler) {
  void *ns = pyh::Exec("def long_lived_name(): pass\n", "survivor.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "long_lived_name");
  statsprof_stats_profile *s = nullptr;
  ASSERT_EQ(statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s), 0);
  statsprof_destroy(p);
  ASSERT_EQ(s->nfunc_profiles, 1u);
  EXPECT_STREQ(s->func_profiles[0].function_name, "long_lived_name");
  EXPECT_STREQ(s->func_profiles[0].file_name, "survivor.py");
  statsprof_stats_profile_free(s);
  statsprof_stats_profile_free(nullptr);
  pyh::Release(ns);
}

// ---- frames still running; percall fields ----------------------------------

// A builtin Python can call to take a delta snapshot mid-program.
statsprof *g_snap_profiler;
std::vector<pyh::Snap> g_mid_snaps;

PyObject *TakeDelta(PyObject *, PyObject *) {
  statsprof_stats_profile *s = nullptr;
  EXPECT_EQ(statsprof_snapshot(g_snap_profiler, STATSPROF_DELTA, &s), 0);
  g_mid_snaps.emplace_back(s);
  Py_RETURN_NONE;
}

PyMethodDef kTakeDeltaDef = {"take_delta", TakeDelta, METH_NOARGS, nullptr};

void *ExecWithTakeDelta(const std::string &code) {
  PyObject *ns = static_cast<PyObject *>(pyh::Exec(""));
  PyObject *fn = PyCFunction_New(&kTakeDeltaDef, nullptr);
  PyDict_SetItemString(ns, "take_delta", fn);
  Py_DECREF(fn);
  PyObject *r = PyRun_String(code.c_str(), Py_file_input, ns, ns);
  if (!r) ADD_FAILURE() << pyh::TakeError();
  Py_XDECREF(r);
  return ns;
}

TEST(Snapshot, RunningFramesCountOnlyOnceTheyReturn) {
  // Inside f(3), after f(2), f(1), f(0) returned: three recursive calls.
  void *ns = ExecWithTakeDelta(R"(
def f(n):
    if n > 0:
        f(n - 1)
    if n == 3:
        take_delta()
def main():
    f(3)
)");
  Profiler pr;
  g_snap_profiler = pr.p;
  g_mid_snaps.clear();
  ASSERT_EQ(statsprof_start(pr.p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  pyh::Snap after = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Snap cum = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  ASSERT_EQ(g_mid_snaps.size(), 1u);
  const statsprof_stats_profile *mid = g_mid_snaps[0].get();

  // Mid-run: main, f(3) and take_delta itself are still on the stack.
  EXPECT_EQ(pyh::Find(mid, "main"), nullptr);
  EXPECT_EQ(pyh::Find(mid, "<take_delta>"), nullptr);
  const statsprof_function_profile *f = pyh::Find(mid, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->ncalls, 3u);
  EXPECT_EQ(f->primitive_calls, 0u);
  EXPECT_EQ(f->cumtime, 0.0);  // cumtime counts at the outermost level only
  EXPECT_EQ(f->percall_cumtime, -1.0);
  EXPECT_DOUBLE_EQ(f->percall_tottime, f->tottime / 3);
  const statsprof_caller_profile *self = pyh::FindCaller(f, "f");
  ASSERT_NE(self, nullptr);
  EXPECT_EQ(self->ncalls, 3u);
  EXPECT_EQ(self->primitive_calls, 1u);  // f(2) was the edge's outermost call
  EXPECT_EQ(f->ncallers, 1u);            // main -> f(3) has not returned

  // After: the rest, and the sum of both is the cumulative view.
  const statsprof_function_profile *f2 = pyh::Find(after.get(), "f");
  ASSERT_NE(f2, nullptr);
  EXPECT_EQ(f2->ncalls, 1u);
  EXPECT_EQ(f2->primitive_calls, 1u);
  EXPECT_DOUBLE_EQ(f2->percall_cumtime, f2->cumtime);
  EXPECT_EQ(Calls(after.get(), "main"), 1u);
  EXPECT_EQ(Calls(after.get(), "<take_delta>"), 1u);
  const statsprof_function_profile *fc = pyh::Find(cum.get(), "f");
  EXPECT_EQ(fc->ncalls, 4u);
  EXPECT_EQ(fc->primitive_calls, 1u);
  EXPECT_EQ(pyh::FindCaller(fc, "f")->ncalls, 3u);
  EXPECT_EQ(pyh::FindCaller(fc, "main")->ncalls, 1u);
  g_mid_snaps.clear();
  pyh::Release(ns);
}

// ---- callers agree with cProfile -------------------------------------------

const char kCallGraph[] = R"(
def leaf(x): return x
def a():
    for i in range(3): leaf(i)
def b():
    for i in range(5): leaf(i)
    a()
def rec(n): return 0 if n == 0 else rec(n - 1)
def warmup():
    a(); b(); rec(5)
def main():
    a(); b(); b(); rec(3); rec(1)
    sorted([3, 1, 2], key=leaf)
)";

TEST(Snapshot, CallersMatchCProfileInCumulativeSnapshot) {
  void *ns = pyh::Exec(kCallGraph, "graph.py");
  pyh::CountMap want = pyh::CProfileRun(ns, "main");
  pyh::CountMap got = pyh::StatsprofRun(ns, "main");
  EXPECT_EQ(pyh::Diff(want, got), "");
  // The oracle itself says what we expect, edge by edge.
  EXPECT_EQ(want["graph.py:2(leaf)"].callers["graph.py:3(a)"], std::make_pair(uint64_t{9}, uint64_t{9}));
  EXPECT_EQ(want["graph.py:2(leaf)"].callers["graph.py:5(b)"], std::make_pair(uint64_t{10}, uint64_t{10}));
  EXPECT_EQ(want["graph.py:3(a)"].callers["graph.py:5(b)"], std::make_pair(uint64_t{2}, uint64_t{2}));
  EXPECT_EQ(want["graph.py:8(rec)"].callers["graph.py:8(rec)"], std::make_pair(uint64_t{4}, uint64_t{2}));
  pyh::Release(ns);
}

TEST(Snapshot, CallersMatchCProfileInADeltaThatFollowsOtherWork) {
  void *ns = pyh::Exec(kCallGraph, "graph.py");
  pyh::CountMap want = pyh::CProfileRun(ns, "main");
  Profiler pr;
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "warmup");
  pyh::Snap d1 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  pyh::Call(ns, "main");
  pyh::Snap d2 = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  EXPECT_EQ(pyh::Diff(want, pyh::FromSnapshot(d2.get())), "");
  pyh::Release(ns);
}

// ---- emission: tick, emit_now, stop ----------------------------------------

// interval=0s: every tick is due. Sinks run on writer threads by default
// (flush before looking) or inline with writer=sync.
void ExpectEveryTickEmits(const char *config) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr(config);
  EXPECT_EQ(statsprof_tick(pr.p), 0);  // not started: nothing is due
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f3");
  EXPECT_EQ(statsprof_tick(pr.p), 1);
  pyh::Call(ns, "f2");
  EXPECT_EQ(statsprof_tick(pr.p), 1);
  EXPECT_EQ(statsprof_tick(pr.p), 1);  // due even when nothing happened
  ASSERT_EQ(statsprof_flush(pr.p), 0);
  ASSERT_EQ(pr.sink.records.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(pr.sink.records[i].seq, i + 1);
    EXPECT_EQ(pr.sink.records[i].mode, STATSPROF_DELTA);
    EXPECT_EQ(pr.sink.records[i].kind, STATSPROF_RECORD_DELTA);
  }
  EXPECT_EQ(pr.sink.records[0].calls_by_name["f"], 3u);
  EXPECT_EQ(pr.sink.records[1].calls_by_name["f"], 2u);
  EXPECT_TRUE(pr.sink.records[2].counts.empty());
  EXPECT_EQ(pr.sink.records[1].start_ns, pr.sink.records[0].end_ns);
  ASSERT_EQ(statsprof_stop(pr.p), 0);
  EXPECT_EQ(statsprof_tick(pr.p), 0);  // stopped: nothing is due
  EXPECT_EQ(pr.sink.records.size(), 3u);
  EXPECT_GE(pr.sink.flushes, 1);
  pyh::Release(ns);
}

TEST(Tick, ZeroIntervalEmitsOnEveryTick) { ExpectEveryTickEmits("sink=none;interval=0s"); }

TEST(Tick, ZeroIntervalEmitsOnEveryTickWithSyncWriter) {
  ExpectEveryTickEmits("sink=none;interval=0s;writer=sync");
}

TEST(Tick, LongIntervalEmitsNothingButEmitNowDoes) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  for (int i = 0; i < 5; i++) {
    pyh::Call(ns, "f");
    EXPECT_EQ(statsprof_tick(pr.p), 0);
  }
  ASSERT_EQ(statsprof_flush(pr.p), 0);
  EXPECT_TRUE(pr.sink.records.empty());
  ASSERT_EQ(statsprof_emit_now(pr.p), 0);
  EXPECT_EQ(statsprof_tick(pr.p), 0);
  ASSERT_EQ(statsprof_flush(pr.p), 0);
  ASSERT_EQ(pr.sink.records.size(), 1u);
  EXPECT_EQ(pr.sink.records[0].calls_by_name["f"], 5u);
  EXPECT_EQ(pr.sink.records[0].seq, 1u);
  pyh::Release(ns);
}

TEST(Stop, EmitsTheLastDeltaOnce) {
  void *ns = pyh::Exec(kTwoFunctions);
  pyh::RecordingSink sink;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f3");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  pyh::Call(ns, "f2");
  ASSERT_EQ(statsprof_stop(p), 0);
  ASSERT_EQ(sink.records.size(), 2u);
  EXPECT_EQ(sink.records[1].calls_by_name["f"], 2u);
  EXPECT_EQ(sink.records[1].calls_by_name.count("f3"), 0u);
  EXPECT_GE(sink.flushes, 1);
  ASSERT_EQ(statsprof_stop(p), 0);
  statsprof_destroy(p);
  EXPECT_EQ(sink.records.size(), 2u);  // neither the second stop nor destroy re-emits
  EXPECT_EQ(sink.closes, 1);
  pyh::Release(ns);
}

TEST(Stop, EmitsNothingWhenNothingHappenedSinceTheLastRecord) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f3");
  ASSERT_EQ(statsprof_emit_now(pr.p), 0);
  ASSERT_EQ(statsprof_stop(pr.p), 0);
  EXPECT_EQ(pr.sink.records.size(), 1u);
  pyh::Release(ns);
}

// The records' seqs have no gaps: tools read a missing seq as a record lost
// on the way ("sums are low"). A stop with nothing new leaves its empty
// interval unwritten, and used to spend a seq on it all the same: after a
// stop and a start the next record was 3, after 1.
TEST(Stop, AnEmptyLastIntervalLeavesNoGapInTheSeqs) {
  void *ns = pyh::Exec(kTwoFunctions);
  Profiler pr("sink=none;interval=1h");
  for (int round = 0; round < 2; round++) {
    ASSERT_EQ(statsprof_start(pr.p), 0);
    pyh::Call(ns, "f3");
    ASSERT_EQ(statsprof_emit_now(pr.p), 0);
    ASSERT_EQ(statsprof_stop(pr.p), 0);  // nothing since emit_now: no record
  }
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "f2");
  ASSERT_EQ(statsprof_stop(pr.p), 0);  // the last interval, written
  ASSERT_EQ(pr.sink.records.size(), 3u);
  for (uint64_t i = 0; i < 3; i++) EXPECT_EQ(pr.sink.records[i].seq, i + 1) << "record " << i;
  pyh::Snap d = pyh::Snapshot(pr.p, STATSPROF_DELTA);
  EXPECT_EQ(d->seq, 4u);
  pyh::Release(ns);
}

// ---- max_functions -----------------------------------------------------------

const char kSixFunctions[] = R"(
def f1(): pass
def f2(): pass
def f3(): pass
def f4(): pass
def f5(): pass
def f6(): pass
def main():
    for i, fn in enumerate([f1, f2, f3, f4, f5, f6]):
        for _ in range(i + 1): fn()
)";

TEST(MaxFunctions, ExtraFunctionsFoldIntoTheOverflowEntry) {
  void *ns = pyh::Exec(kSixFunctions, "six.py");
  Profiler pr("sink=none;builtins=off;max_functions=3");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(pr.p), 0);
  pyh::Snap s = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  // First seen first served: main, f1, f2; f3..f6 fold.
  ASSERT_EQ(s->nfunc_profiles, 4u);
  EXPECT_EQ(Calls(s.get(), "main"), 1u);
  EXPECT_EQ(Calls(s.get(), "f1"), 1u);
  EXPECT_EQ(Calls(s.get(), "f2"), 2u);
  EXPECT_EQ(pyh::Find(s.get(), "f3"), nullptr);
  const statsprof_function_profile *over = nullptr;
  for (size_t i = 0; i < s->nfunc_profiles; i++)
    if (std::string(s->func_profiles[i].function_name).rfind("<statsprof overflow", 0) == 0)
      over = &s->func_profiles[i];
  ASSERT_NE(over, nullptr);
  EXPECT_EQ(over->ncalls, 3u + 4 + 5 + 6);
  EXPECT_EQ(over->primitive_calls, over->ncalls);
  EXPECT_STREQ(over->file_name, "~");
  EXPECT_EQ(over->line_number, 0);
  EXPECT_EQ(s->overflow_functions, 4u);
  const statsprof_caller_profile *from_main = pyh::FindCaller(over, "main");
  ASSERT_NE(from_main, nullptr);
  EXPECT_EQ(from_main->ncalls, 18u);
  // Total calls are conserved against an uncapped run.
  EXPECT_EQ(TotalCalls(s.get()), 22u);
  pyh::CountMap full = pyh::StatsprofRun(ns, "main", "sink=none;builtins=off");
  uint64_t full_calls = 0;
  for (const auto &[k, c] : full) full_calls += c.nc;
  EXPECT_EQ(full_calls, 22u);
  EXPECT_EQ(full.size(), 7u);
  pyh::Release(ns);
}

TEST(MaxFunctions, OverflowCountsDistinctFunctionsNotCalls) {
  void *ns = pyh::Exec(kSixFunctions, "six.py");
  Profiler pr("sink=none;builtins=off;max_functions=1");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "main");
  pyh::Call(ns, "main");
  pyh::Snap s = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(s->overflow_functions, 6u);
  EXPECT_EQ(Calls(s.get(), "main"), 2u);
  EXPECT_EQ(TotalCalls(s.get()), 44u);
  pyh::Release(ns);
}

// BUG (lib/table.c statsprof__table_clear_counts + lib/hook.c co_extra cache):
// reset zeroes overflow_functions, but the folded code objects keep their
// cached entry 0 and are never counted again, so after a reset the overflow
// entry holds calls from 5 functions while overflow_functions says 0.
TEST(MaxFunctions, OverflowFunctionsSurvivesReset) {
  void *ns = pyh::Exec(kSixFunctions, "six.py");
  Profiler pr("sink=none;builtins=off;max_functions=2");
  ASSERT_EQ(statsprof_start(pr.p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_reset(pr.p), 0);
  pyh::Call(ns, "main");
  pyh::Snap s = pyh::Snapshot(pr.p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(TotalCalls(s.get()), 22u);
  EXPECT_EQ(Calls(s.get(), "f1"), 1u);
  EXPECT_EQ(s->overflow_functions, 5u);  // f2..f6 are folded into the 20 overflow calls
  pyh::Release(ns);
}

}  // namespace
