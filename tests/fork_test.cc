// fork_test.cc — lib/fork.c: in a forked child a running profiler works as
// if it had been started there: the parent's counts and threads are gone,
// its records carry the child's pid and are numbered from 1 again, it
// writes through writers of its own, and a trigger=timer profiler gets a
// timer thread again. Each child runs through child.h and reports what it
// found wrong; the parent asserts the report is empty.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "child.h"
#include "collect_sink.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

const char kProgram[] = R"(
import threading, time
def f(): pass
def g(): pass
def main():
    for i in range(3): f()
def child_main():
    g(); g()
def step():
    g()
    time.sleep(0.01)
go = threading.Event()
def waiter():
    go.wait()
    f()
t = threading.Thread(target=waiter, name="parent-only")
def begin(): t.start()
def finish(): go.set(); t.join()
)";

std::string Describe(const CollectedRecord &r) {
  return "seq " + std::to_string(r.seq) + " thread " + std::to_string(r.thread_id) + " f " +
         std::to_string(r.calls("f")) + " g " + std::to_string(r.calls("g"));
}

TEST(Fork, ChildForgetsTheParentsCountsAndThreadsAndNumbersItsRecordsFromOne) {
  void *ns = pyh::Exec(kProgram, "fork.py");
  ASSERT_TRUE(pyh::Call(ns, "begin"));  // a thread that exists only in the parent
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;interval=1h;per_thread=on", &sink);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  size_t before = sink.Take().size();
  ASSERT_GE(before, 2u);
  uint64_t main_thread = PyThread_get_thread_ident();
  std::string problems = child::Run([&] {
    child::Problems pr;
    pr.Check(pyh::Call(ns, "child_main"), "child_main raised");
    pr.Check(statsprof_emit_now(p) == 0, "emit_now failed");
    statsprof_flush(p);
    auto recs = sink.Take();  // the parent's records (copied by fork), then the child's
    pr.Check(recs.size() > before, "the child emitted nothing");
    for (size_t i = before; i < recs.size(); i++) {
      const CollectedRecord &r = recs[i];
      pr.Check(r.seq == 1, "child record not numbered from 1: " + Describe(r));
      pr.Check(r.calls("f") == 0, "child record holds the parent's calls: " + Describe(r));
      pr.Check(r.thread_id == 0 || r.thread_id == main_thread, "a record of a parent-only thread: " + Describe(r));
      if (r.thread_id == 0) pr.Check(r.calls("g") == 2, "merged child record: " + Describe(r));
    }
    pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
    pr.Check(s->pid == getpid(), "snapshot pid " + std::to_string(s->pid));
    pr.Check(pyh::Calls(p, "f") == 0, "the parent's calls of f are counted in the child");
    pr.Check(pyh::Calls(p, "g") == 2, "g: " + std::to_string(pyh::Calls(p, "g")) + " calls, want 2");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  ASSERT_TRUE(pyh::Call(ns, "finish"));
  // The parent goes on counting where it was.
  EXPECT_EQ(pyh::Calls(p, "f"), 7u);  // 3 + 3 + the waiter's
  EXPECT_EQ(pyh::Calls(p, "g"), 0u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// A production-mode window open at fork: the child's first record counted
// the parent's part of it (observed time and cost from the window's
// opening, before the fork), where every other account starts afresh.
TEST(Fork, ChildCountsAnOpenWindowFromTheFork) {
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;window=1h;every=2h;interval=1h", &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  ASSERT_TRUE(p->duty.in_window);
  p->duty.cost_taken = 0;
  p->src.cost_gone = 12345;  // as if the parent's events had cost this much
  uint64_t before = statsprof__ticks();
  std::string problems = child::Run([&] {
    child::Problems pr;
    pr.Check(p->duty.in_window, "the window closed at fork");
    pr.Check(p->duty.taken_at >= before, "the open window still counts from before the fork");
    pr.Check(p->duty.cost_taken == statsprof__own_cost(p), "the window's cost still counts from before the fork");
    pr.Check(p->duty.observed_s == 0 && p->duty.overhead_s == 0, "the parent's accounts were kept");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  statsprof_destroy(p);
}

TEST(Fork, ChildEmitsThroughItsOwnWriterWithItsPid) {
  std::string path = pyh::TempDir() + "/fork.jsonl";
  void *ns = pyh::Exec(kProgram, "fork.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=jsonl:" + path).c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);  // the parent's writer thread is running
  statsprof_flush(p);
  pid_t child_pid = -1;
  child::Child c = child::Start([&] {
    pyh::Call(ns, "main");
    int rc = statsprof_emit_now(p);
    statsprof_flush(p);
    return rc == 0 ? std::string() : "emit_now: " + std::to_string(rc);
  });
  child_pid = c.pid;
  std::string problems = child::Wait(c);
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  statsprof_destroy(p);
  pyh::JsonlFile f = pyh::ReadJsonl(path);
  ASSERT_EQ(f.error, "");
  EXPECT_EQ(f.bad, 0);
  EXPECT_EQ(f.tail, 0);
  int nparent = 0, nchild = 0;
  for (auto [pid, seq] : f.ids) {
    if (pid == getpid()) nparent++;
    if (pid == child_pid) {
      nchild++;
      EXPECT_EQ(seq, 1) << "the child's record";
    }
  }
  EXPECT_EQ(nchild, 1);
  EXPECT_EQ(nparent, 1);  // emit_now's: nothing ran after it, so destroy adds none
  pyh::Release(ns);
}

// Counts the records of the process it runs in, without a lock: a mutex the
// parent's writer thread held at fork would stay held in the child.
struct PidSink {
  std::atomic<int> records{0};
  std::atomic<uint64_t> first_seq{0};
  static int Emit(void *ctx, const statsprof_stats_profile *r) {
    auto *s = static_cast<PidSink *>(ctx);
    if (r->pid != getpid()) return 0;
    uint64_t none = 0;
    s->first_seq.compare_exchange_strong(none, r->seq);
    s->records++;
    return 0;
  }
  static const statsprof_sink_ops *Ops() {
    static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "pid", Emit, nullptr, nullptr};
    return &ops;
  }
};

TEST(Fork, TimerProfilerGetsATimerAgainInTheChild) {
  void *ns = pyh::Exec(kProgram, "fork.py");
  PidSink sink;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;trigger=timer;interval=20ms;on_full=block", &p), 0);
  ASSERT_EQ(statsprof_add_sink(p, PidSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  std::string problems = child::Run([&] {
    // The counts fork copied are the parent's. No record is cut before this
    // thread lets the GIL go in step().
    sink.records = 0;
    sink.first_seq = 0;
    // Nothing here ticks: only the child's timer can cut its records.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (sink.records < 2 && std::chrono::steady_clock::now() < deadline)
      if (!pyh::Call(ns, "step")) return std::string("step raised");
    if (sink.records < 2) return "no timer in the child: " + std::to_string(sink.records) + " records in 30 s";
    child::Problems pr;
    pr.Check(sink.first_seq == 1, "the child's first record has seq " + std::to_string(sink.first_seq));
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  statsprof_destroy(p);
  pyh::Release(ns);
}

// A log function that makes (and ends) a profiler of its own each time it
// is called, as a host that profiles its log handling might.
struct CreatingLog {
  std::vector<std::string> lines;
  int created = 0;
  static void Fn(void *ud, const char *msg) {
    auto *l = static_cast<CreatingLog *>(ud);
    l->lines.push_back(msg);
    statsprof *q = nullptr;
    if (statsprof_create("sink=none", &q) == 0) {
      l->created++;
      statsprof_destroy(q);
    }
  }
};

// The forked child's timer thread could not start (a process at its thread
// limit): the child said so from CPython's after-fork hook while holding
// the lock of the process's list of profilers, which statsprof_create and
// statsprof_destroy take: a log function that made a profiler hung the
// child (every run). The log now runs with that lock let go.
TEST(Fork, ChildLogsATimerThatCannotStartWithoutHoldingTheProfilersLock) {
  void *ns = pyh::Exec(kProgram, "fork.py");
  CreatingLog log;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;writer=sync;trigger=timer;interval=1h", &p), 0);
  statsprof_set_log(p, CreatingLog::Fn, &log);
  ASSERT_EQ(statsprof_start(p), 0);
  statsprof__fail_thread_creates(1);  // the child's timer, the first thread made after this
  std::string problems = child::Run([&] {
    child::Problems pr;
    std::string all;
    for (const std::string &l : log.lines) all += "  " + l + "\n";
    pr.Check(log.lines.size() == 1 && log.lines[0] == "trigger=timer: cannot start the timer thread in the forked child",
             "the log:\n" + all);
    pr.Check(log.created == 1, "the log function made " + std::to_string(log.created) + " profilers, want 1");
    pr.Check(pyh::Call(ns, "main"), "main raised");
    pr.Check(statsprof_emit_now(p) == 0, "emit_now in the child: " + std::string(statsprof_errmsg(p)));
    statsprof_destroy(p);
    return pr.text;
  });
  statsprof__fail_thread_creates(0);
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  statsprof_destroy(p);
  pyh::Release(ns);
}

// A fork while another thread's interval waited for an on_full=block sink
// (its shared deadline set, GIL released) left the child that deadline,
// long past there: every later on_full=block wait, flush and close in the
// child then gave up at once. The child starts with none.
TEST(Fork, ChildHasNoDeadlineOfTheParentsWaits) {
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_EQ(statsprof__writers_deadline_begin(&p->writers), 1);  // as an interval's emit under way
  std::string problems = child::Run([&] {
    child::Problems pr;
    pr.Check(p->writers.until == 0, "the child kept the parent's deadline");
    statsprof_destroy(p);
    return pr.text;
  });
  statsprof__writers_deadline_end(&p->writers);
  EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
  statsprof_destroy(p);
}

}  // namespace
