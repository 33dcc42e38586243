// timer_test.cc — lib/timer.c, trigger=timer: records are cut on the timer's
// own thread while the host never calls statsprof_tick, every call lands in
// exactly one record, a restarted profiler gets its timer back, a huge
// interval does not make the thread spin, its threads leave the fault
// signals unblocked, and
// Py_Finalize with the timer running is safe (last in this file: it
// finalizes the interpreter and starts it again).
#define PY_SSIZE_T_CLEAN
#include <Python.h>


#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <string>

#include "child.h"
#include "collect_sink.h"
#include "lib_internal.h"
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

// A timer thread that cannot start (a process at its thread limit) fails
// the start with the OS's reason, leaves nothing half started (no calls
// counted before the next start), and the next start gets its timer.
TEST(Timer, AStartWhoseTimerThreadCannotStartFailsWithTheReasonAndTheNextStartWorks) {
  void *ns = pyh::Exec(kSteps, "nothread.py");
  statsprof *p = Make("sink=none;trigger=timer;interval=20ms;on_full=block");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  statsprof__fail_thread_creates(1);
  EXPECT_EQ(statsprof_start(p), STATSPROF_ENOMEM);
  statsprof__fail_thread_creates(0);
  EXPECT_STREQ(statsprof_errmsg(p), "trigger=timer: cannot start the timer thread: Resource temporarily unavailable");
  EXPECT_FALSE(statsprof_is_running(p));
  PyObject *r = PyObject_CallFunction(PyDict_GetItemString(static_cast<PyObject *>(ns), "step"), "i", 5);
  ASSERT_TRUE(r) << pyh::TakeError();  // not counted: no hook
  Py_DECREF(r);
  ASSERT_EQ(statsprof_start(p), 0);
  int steps = StepUntil(ns, &sink, 2, 5);
  ASSERT_GT(steps, 0);
  ASSERT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(CallsOfF(sink.Take()), uint64_t(steps) * 5);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// Lets the timer run (GIL released) until its record holds the profiler
// while it waits for room, GIL released: a stuck sink and on_full=block.
// Holding the GIL, the caller then knows the timer is inside that wait.
bool UntilTimerWaits(statsprof *p) {
  for (int i = 0; i < 60000; i++) {  // a hang guard, not a time limit
    if (p->busy == STATSPROF__BUSY_TIMER) return true;
    Py_BEGIN_ALLOW_THREADS;
    usleep(1000);
    Py_END_ALLOW_THREADS;
  }
  return false;
}

// The timer's record held the profiler across its wait for room, so a
// stop then failed with STATSPROF_ESTATE and a destroy was refused, leaving
// the profiler running with its hook, timer and writer threads (the Python
// package's close() let go of it so: records kept coming after close). Both
// now wait for the timer's record by stopping the timer first.
TEST(Timer, StopAndDestroyWhileTheTimersRecordWaitsForRoomSucceed) {
  void *ns = pyh::Exec(kSteps, "timer_wait.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    GateSink gate;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;trigger=timer;interval=1ms;on_full=block;queue=1;stop_timeout=200ms", &p) != 0)
      return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(p, GateSink::Ops(), &gate);
    pr.Check(statsprof_start(p) == 0, "start");
    pyh::Call(ns, "f");
    pr.Check(UntilTimerWaits(p), "the timer's record never waited for room");
    int rc = statsprof_stop(p);
    pr.Check(rc == 0, "stop returned " + std::to_string(rc) + ": " + statsprof_errmsg(p));
    pr.Check(!statsprof_is_running(p), "still running after stop");
    pr.Check(statsprof_start(p) == 0, "start again");
    // A sink whose wait for room timed out is not waited for again until it
    // finishes a record: let it finish some, then stick again.
    int before = gate.emits;
    gate.open = true;
    Py_BEGIN_ALLOW_THREADS;
    for (int i = 0; i < 60000 && gate.emits < before + 2; i++) usleep(1000);  // a hang guard
    Py_END_ALLOW_THREADS;
    gate.open = false;
    pr.Check(UntilTimerWaits(p), "the timer's record never waited for room after the restart");
    statsprof_destroy(p);
    pr.Check(pyh::RunPy(pyh::kNoHook) == "", "a hook is still installed after destroy");
    if (log.Has("left alive")) return pr.text + "destroy was refused:\n" + log.All();
    log.dead = true;
    gate.open = true;
    for (int i = 0; i < 60000 && gate.closes == 0; i++) usleep(1000);  // its emit returns: close on its thread
    pr.Check(gate.closes == 1, "the abandoned sink was closed " + std::to_string(gate.closes) + " times");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A call from another thread while the timer's record held the profiler,
// waiting for room with the GIL released, failed with STATSPROF_ESTATE
// ("called while another call on this profiler runs"): a Python user's
// snapshot() beside trigger=timer (the package's choice for production
// mode) got RuntimeError. It now waits for that record, which gives up
// its wait after stop_timeout.
TEST(Timer, ACallWhileTheTimersRecordWaitsForRoomWaitsForIt) {
  void *ns = pyh::Exec(kSteps, "timer_call.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    GateSink gate;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;trigger=timer;interval=1ms;on_full=block;queue=1;stop_timeout=200ms", &p) != 0)
      return std::string("create failed");
    statsprof_add_sink(p, GateSink::Ops(), &gate);
    pr.Check(statsprof_start(p) == 0, "start");
    pyh::Call(ns, "f");
    pr.Check(UntilTimerWaits(p), "the timer's record never waited for room");
    statsprof_stats_profile *s = nullptr;
    int rc = statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s);
    pr.Check(rc == 0, "snapshot returned " + std::to_string(rc) + ": " + statsprof_errmsg(p));
    if (s) pr.Check(s->nfunc_profiles > 0, "an empty snapshot");
    statsprof_stats_profile_free(s);
    gate.open = true;
    statsprof_destroy(p);
    // An abandoned writer closes the gate on its own thread: not before.
    for (int i = 0; i < 60000 && gate.closes == 0; i++) usleep(1000);  // a hang guard
    pr.Check(gate.closes == 1, "the gate was closed " + std::to_string(gate.closes) + " times");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// The same from Python code the hook runs at a C method's first sight (the
// repr of an attribute that shadows it) while the timer's record holds the
// profiler: the hook's own hold did nothing then (busy was the record's),
// and a stop from there joined the timer, whose record then let go, and
// went on to stop the profiler under the hook (a destroy freed it: a crash
// when the hook went on). Both are refused; the timer keeps running.
TEST(Timer, StopAndDestroyFromTheHookWhileTheTimersRecordWaitsAreRefused) {
  pyh::CallsFromTheHook calls;
  void *ns = pyh::ExecShadowedAppend(&calls, "timer_hook.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    GateSink gate;
    if (statsprof_create("sink=none;trigger=timer;interval=1ms;on_full=block;queue=1;stop_timeout=200ms",
                         &calls.p) != 0)
      return std::string("create failed");
    statsprof_set_log(calls.p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(calls.p, GateSink::Ops(), &gate);
    pr.Check(statsprof_start(calls.p) == 0, "start");
    pyh::Call(ns, "f");
    pr.Check(UntilTimerWaits(calls.p), "the timer's record never waited for room");
    pr.Check(pyh::Call(ns, "run"), "run() raised: " + pyh::TakeError());
    pr.Check(calls.stop_rc == STATSPROF_ESTATE, "stop from the hook returned " + std::to_string(calls.stop_rc));
    pr.Check(log.Has("left alive"), "no message for the refused destroy:\n" + log.All());
    pr.Check(statsprof_is_running(calls.p), "not running after the refused stop");
    gate.open = true;
    statsprof_destroy(calls.p);
    for (int i = 0; i < 60000 && gate.closes == 0; i++) usleep(1000);  // a hang guard
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// Frames the host marked while the timer's record held the profiler
// (waiting for room, GIL released) were skipped: the next mark ended one
// frame as long as all of them, so frame statistics lost frames and gained
// a long one, and short frames made a false spike. They are now timed; as
// their touches merge into the frame under way, neither they nor that
// frame get a spike record (over budget: spikes_suppressed), and the
// frames after them are numbered and spiked as before. The first mark,
// which only starts frame 1, counts there too.
TEST(Timer, FramesMarkedWhileTheTimersRecordWaitsAreTimedButNotSpiked) {
  void *ns = pyh::Exec(kSteps, "timer_frames.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    GateSink gate;
    CollectSink sink;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;trigger=timer;interval=1ms;on_full=block;queue=1;budget=1ms", &p) != 0)
      return std::string("create failed");
    statsprof_add_sink(p, GateSink::Ops(), &gate);
    statsprof_add_sink(p, CollectSink::Ops(), &sink);
    pr.Check(statsprof_start(p) == 0, "start");
    // Every frame sleeps 3 ms with the GIL (over the 1 ms budget) before
    // its mark; an unheld mark first waits, GIL released, until the timer
    // holds nothing, and nothing runs Python between that check and the
    // mark, so the timer (which needs the GIL) cannot start a record there.
    auto mark_after_3ms = [&](bool want_held) {
      if (!want_held)
        for (int i = 0; i < 60000 && p->busy; i++) {  // a hang guard, not a time limit
          Py_BEGIN_ALLOW_THREADS;
          usleep(100);
          Py_END_ALLOW_THREADS;
        }
      usleep(3000);
      pr.Check((p->busy == STATSPROF__BUSY_TIMER) == want_held,
               want_held ? "the timer's record no longer holds the profiler" : "the profiler is held");
      return statsprof_frame_mark(p);
    };
    pyh::Call(ns, "f");
    pr.Check(UntilTimerWaits(p), "the timer's record never waited for room");
    // No Python from here to the last held mark: the GIL is never given up,
    // so a record that waits only briefly (for the collecting sink's queue)
    // cannot finish in between either.
    pr.Check(mark_after_3ms(true) == 0, "the first mark, inside the timer's record");  // frame 1 begins
    pr.Check(mark_after_3ms(true) == 0, "a mark inside the timer's record");           // ends frame 1
    pr.Check(mark_after_3ms(true) == 0, "a mark inside the timer's record");           // ends frame 2
    gate.open = true;
    pyh::Call(ns, "f");
    pr.Check(mark_after_3ms(false) == 0, "frame 3, which holds frames 1 and 2's calls, was spiked");
    pyh::Call(ns, "f");
    pr.Check(mark_after_3ms(false) == 1, "frame 4, over budget, was not spiked");
    pr.Check(statsprof_stop(p) == 0, std::string("stop: ") + statsprof_errmsg(p));
    uint64_t frames = 0, suppressed = 0;
    std::vector<uint64_t> spiked;
    for (const CollectedRecord &r : sink.Take()) {
      if (r.kind == STATSPROF_RECORD_SPIKE) spiked.push_back(r.frame);
      else frames += r.frames;
      suppressed = std::max(suppressed, r.spikes_suppressed);
    }
    pr.Check(frames == 4, "records counted " + std::to_string(frames) + " frames, want 4");
    pr.Check(suppressed == 3, std::to_string(suppressed) + " spikes suppressed, want 3 (frames 1, 2 and 3)");
    pr.Check(spiked == std::vector<uint64_t>{4}, std::to_string(spiked.size()) + " spike records, want frame 4's");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A writer=sync sink that stops its own profiler from the timer's record:
// that stop runs on the timer's thread, inside the record, so it fails
// (STATSPROF_ESTATE, the record holds the profiler) and must leave the
// timer running: stopping it there would join the timer's own thread
// (refused) and leave the profiler running with no timer and no records.
struct StopFromSink {
  statsprof *p = nullptr;
  std::atomic<int> emits{0}, stop_rc{1};
  static int Emit(void *ctx, const statsprof_stats_profile *) {
    auto *s = static_cast<StopFromSink *>(ctx);
    if (s->emits++ == 0) s->stop_rc = statsprof_stop(s->p);
    return 0;
  }
};
const statsprof_sink_ops kStopFromSinkOps = {STATSPROF_SINK_VERSION, "stopper", StopFromSink::Emit, nullptr, nullptr,
                                              nullptr};

TEST(Timer, StopFromTheTimersOwnRecordFailsAndTheTimerRuns) {
  void *ns = pyh::Exec(kSteps, "timer_self_stop.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    StopFromSink sink;
    if (statsprof_create("sink=none;trigger=timer;interval=5ms;writer=sync", &sink.p) != 0)
      return std::string("create failed");
    statsprof_set_log(sink.p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(sink.p, &kStopFromSinkOps, &sink);
    pr.Check(statsprof_start(sink.p) == 0, "start");
    PyObject *step = PyDict_GetItemString(static_cast<PyObject *>(ns), "step");
    for (int i = 0; i < 2000 && sink.emits < 5; i++) {  // a hang guard, not a time limit
      PyObject *r = PyObject_CallFunction(step, "i", 10);
      Py_XDECREF(r);
    }
    pr.Check(sink.stop_rc == STATSPROF_ESTATE, "stop inside the timer's record returned " +
                                                   std::to_string(sink.stop_rc.load()));
    pr.Check(sink.emits >= 5, "the timer stopped cutting records after the sink's stop (" +
                                  std::to_string(sink.emits.load()) + " records)");
    pr.Check(statsprof_is_running(sink.p), "not running");
    statsprof_destroy(sink.p);
    pr.Check(pyh::RunPy(pyh::kNoHook) == "", "a hook is still installed after destroy");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// Raw allocations made off the main thread: each PyGILState_Ensure of the
// timer's thread makes a thread state there (and its Release frees it).
std::atomic<long> g_off_main{0};
pthread_t g_main_thread;
PyMemAllocatorEx g_raw;

void *CountingMalloc(void *ctx, size_t n) {
  if (!pthread_equal(pthread_self(), g_main_thread)) g_off_main++;
  return g_raw.malloc(g_raw.ctx, n);
}
void *CountingCalloc(void *ctx, size_t n, size_t size) {
  if (!pthread_equal(pthread_self(), g_main_thread)) g_off_main++;
  return g_raw.calloc(g_raw.ctx, n, size);
}
void *CountingRealloc(void *ctx, void *ptr, size_t n) { return g_raw.realloc(g_raw.ctx, ptr, n); }
void CountingFree(void *ctx, void *ptr) { g_raw.free(g_raw.ctx, ptr); }

// While a call waited for the sinks with the GIL released (here a flush
// with a stuck sink), the timer found the profiler busy, skipped its record
// and asked again at once: its thread spun on the GIL, making and freeing a
// thread state each time, for the whole wait (about 1000 a millisecond; a
// Python host measured 0.35 s of CPU in a 1.5 s flush). It now waits for
// that call to end.
TEST(Timer, TimerDoesNotSpinWhileACallWaitsForTheSinks) {
  void *ns = pyh::Exec(kSteps, "timer_spin.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    GateSink gate;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;trigger=timer;interval=1ms;stop_timeout=500ms", &p) != 0)
      return std::string("create failed");
    statsprof_set_log(p, [](void *, const char *) {}, nullptr);
    statsprof_add_sink(p, GateSink::Ops(), &gate);
    statsprof_start(p);
    pyh::Call(ns, "f");
    statsprof_emit_now(p);  // into the gate's emit, stuck: the flush waits its whole stop_timeout
    g_main_thread = pthread_self();
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &g_raw);
    PyMemAllocatorEx counting = {nullptr, CountingMalloc, CountingCalloc, CountingRealloc, CountingFree};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &counting);
    g_off_main = 0;
    int rc = statsprof_flush(p);
    long made = g_off_main;
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &g_raw);
    // A timer that waits wakes at most once in the flush (its one-second
    // floor); one that spins makes thousands.
    pr.Check(rc == 0, "flush returned " + std::to_string(rc));
    pr.Check(made < 50, "the timer's thread allocated " + std::to_string(made) + " times during the flush");
    statsprof_destroy(p);
    gate.open = true;
    for (int i = 0; i < 60000 && gate.closes == 0; i++) usleep(1000);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// The timer alone, whose fn asks for the longest sleep there is: the first
// deadline and each one after overflowed so, without help from the
// profiler's tick (which caps an interval at 2^63 TSC ticks, on a TSC
// machine less than 2^63 ns, so there the test below spun only until
// start's kick, and passed on the old code).
// The spinning thread held its lock throughout (a failed wait does not let
// it go): on the old code this test's kick hung, as a host's start could.
int64_t SleepForever(void *calls) {
  ++*static_cast<int *>(calls);
  return INT64_MAX;
}

TEST(Timer, TheLongestSleepIsSleptNotSpun) {
  statsprof__timer t;
  statsprof__timer_init(&t, INT64_MAX);
  int calls = 0;
  char why[256] = "";
  ASSERT_EQ(statsprof__timer_start(&t, SleepForever, &calls, why, sizeof why), 0) << why;
  Py_BEGIN_ALLOW_THREADS;
  usleep(50000);  // the first deadline: interval_ns from now
  statsprof__timer_kick(&t);
  usleep(50000);  // the next: what fn said
  Py_END_ALLOW_THREADS;
  pthread_mutex_lock(&t.lock);
  uint64_t wakeups = t.wakeups;
  pthread_mutex_unlock(&t.lock);
  statsprof__timer_stop(&t);
  statsprof__timer_free(&t);
  EXPECT_EQ(calls, 1) << "the kick's";
  EXPECT_GE(wakeups, 1u) << "the kick";
  EXPECT_LE(wakeups, 3u) << "the timer's thread spun";
}

// The longest interval config takes, 2^63 - 1 ns (about 292 years), with
// trigger=timer, end to end: the thread comes out of its wait once in
// 100 ms (start's kick) and cuts no record. On the old code the sleeps
// overflowed (see above) and the thread spun, holding its lock, where the
// profiler's ticks are nanoseconds; with the TSC only until start's kick,
// so this passed there. A count, not a time.
TEST(Timer, AHugeIntervalSleepsInsteadOfSpinning) {
  statsprof *p = Make("sink=none;trigger=timer;interval=9223372036854775807ns");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  Py_BEGIN_ALLOW_THREADS;
  usleep(100000);
  Py_END_ALLOW_THREADS;
  pthread_mutex_lock(&p->timer.lock);
  uint64_t wakeups = p->timer.wakeups;
  pthread_mutex_unlock(&p->timer.lock);
  EXPECT_GE(wakeups, 1u) << "start's kick";
  EXPECT_LE(wakeups, 3u) << "the timer's thread spun";
  EXPECT_TRUE(sink.Take().empty()) << "a record before the interval ended";
  ASSERT_EQ(statsprof_stop(p), 0);
  statsprof_destroy(p);
}

// Kernel ids of this process's threads.
std::set<std::string> Tasks() {
  std::set<std::string> tids;
  DIR *d = opendir("/proc/self/task");
  if (!d) return tids;
  while (struct dirent *e = readdir(d))
    if (e->d_name[0] != '.') tids.insert(e->d_name);
  closedir(d);
  return tids;
}

// The SigBlk mask of thread `tid` (bit n-1 is signal n); 0 if unread.
uint64_t BlockedSignals(const std::string &tid) {
  std::ifstream status("/proc/self/task/" + tid + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  return 0;
}

// The writer and timer threads blocked every signal, the synchronous
// faults too: a SIGSEGV (SIGBUS, SIGFPE, ...) raised there while blocked
// kills the process with the default action, and the host's crash handler
// or Python's faulthandler never runs. They block the host's signals
// (SIGINT, SIGTERM: those stay on its threads) and no fault.
TEST(Timer, TheTimersAndWritersThreadsLeaveFaultSignalsUnblocked) {
  void *ns = pyh::Exec(kSteps, "signals.py");
  std::set<std::string> before = Tasks();
  statsprof *p = Make("sink=none;trigger=timer;interval=20ms");
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_GT(StepUntil(ns, &sink, 1, 1), 0);  // a timer's record, through the sink's writer thread
  int ours = 0;
  for (const std::string &tid : Tasks()) {
    if (before.count(tid)) continue;
    ours++;
    uint64_t blocked = BlockedSignals(tid);
    auto bit = [](int sig) { return uint64_t(1) << (sig - 1); };
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD, SIGPIPE})
      EXPECT_TRUE(blocked & bit(sig)) << "thread " << tid << ": " << strsignal(sig) << " not blocked";
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS})
      EXPECT_FALSE(blocked & bit(sig)) << "thread " << tid << ": " << strsignal(sig) << " blocked";
  }
  EXPECT_GE(ours, 2) << "the timer's thread and the sink's writer";
  ASSERT_EQ(statsprof_stop(p), 0);
  statsprof_destroy(p);
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
