// threads_test.cc — every thread is profiled on its own stack: threads that
// existed at start, Python threads started later, C threads that enter
// Python with PyGILState_Ensure; per-thread snapshots; the CPU clock.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <unistd.h>

#include <dlfcn.h>

#include <pthread.h>

#include <atomic>
#include <map>
#include <thread>

#include "child.h"
#include "collect_sink.h"
#include "pyharness.h"

namespace {

statsprof *Start(const char *config = "sink=none") {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
  EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  return p;
}

TEST(Threads, InterleavedRecursionKeepsPrimitiveCountsPerThread) {
  // Threads switch every 10 us, so their fib frames interleave; a shared
  // recursion level would count most outer calls as recursive.
  void *ns = pyh::Exec(R"(
import sys, threading
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
def work():
    for i in range(3): fib(15)
def main():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    ts = [threading.Thread(target=work) for i in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    sys.setswitchinterval(old)
)", "threads.py");
  statsprof *p = Start();
  ASSERT_TRUE(pyh::Call(ns, "main")) << pyh::TakeError();
  statsprof_stop(p);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  const statsprof_function_profile *fib = pyh::Find(s.get(), "fib");
  ASSERT_NE(fib, nullptr);
  EXPECT_EQ(fib->ncalls, 2u * 3u * 1973u);  // fib(15) makes 1973 calls
  EXPECT_EQ(fib->primitive_calls, 6u);
  const statsprof_function_profile *work = pyh::Find(s.get(), "work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->ncalls, 2u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// ---- threads started before and after start, and destroy -------------------

TEST(Threads, ThreadStartedAfterStartIsProfiled) {
  void *ns = pyh::Exec(R"(
import threading
def leaf(): pass
def work():
    for i in range(6): leaf()
def main():
    t = threading.Thread(target=work)
    t.start()
    t.join()
)",
                       "threads.py");
  statsprof *p = Start();
  ASSERT_TRUE(pyh::Call(ns, "main"));
  EXPECT_EQ(pyh::Calls(p, "leaf"), 6u);
  EXPECT_EQ(pyh::Calls(p, "work"), 1u);
  ASSERT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(pyh::RunPy(pyh::kNoHook), "");  // threading.setprofile undone
  ASSERT_TRUE(pyh::Call(ns, "main"));  // threads after stop are not profiled
  EXPECT_EQ(pyh::Calls(p, "leaf"), 6u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

const char kBlockedThread[] = R"(
import threading
go = threading.Event()
def leaf(): pass
def worker():
    go.wait()
    for i in range(4): leaf()
t = threading.Thread(target=worker)
t.start()
def release():
    go.set()
    t.join()
)";

TEST(Threads, ThreadThatExistedAtStartIsProfiled) {
  void *ns = pyh::Exec(kBlockedThread, "existing.py");  // the thread waits on `go`
  statsprof *p = Start();
  ASSERT_TRUE(pyh::Call(ns, "release"));
  EXPECT_EQ(pyh::Calls(p, "leaf"), 4u);
  // worker() was entered before start: its return is not counted.
  EXPECT_EQ(pyh::Calls(p, "worker"), 0u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Threads, DestroyDetachesOtherThreadsBeforeTheyRunAgain) {
  void *ns = pyh::Exec(kBlockedThread, "existing.py");
  statsprof *p = Start();
  statsprof_destroy(p);
  ASSERT_TRUE(pyh::Call(ns, "release"));  // runs profiled code with no profiler
  EXPECT_EQ(pyh::RunPy(pyh::kNoHook), "");
  pyh::Release(ns);
}

TEST(Threads, PerThreadSnapshotHasOnlyThatThreadAndItsName) {
  void *ns = pyh::Exec(R"(
import threading
def in_worker(): pass
def in_main(): pass
ident = []
def worker():
    ident.append(threading.get_ident())
    for i in range(3): in_worker()
def main():
    t = threading.Thread(target=worker, name="worker-7")
    t.start(); t.join()
    in_main()
)", "perthread.py");
  statsprof *p = Start();
  ASSERT_TRUE(pyh::Call(ns, "main"));
  PyObject *ident = PyList_GetItem(PyDict_GetItemString((PyObject *)ns, "ident"), 0);
  ASSERT_NE(ident, nullptr);
  uint64_t tid = PyLong_AsUnsignedLongLong(ident);
  statsprof_stats_profile *s = nullptr;
  ASSERT_EQ(statsprof_snapshot_thread(p, STATSPROF_CUMULATIVE, tid, &s), 0) << statsprof_errmsg(p);
  pyh::Snap snap(s);
  EXPECT_EQ(s->kind, STATSPROF_RECORD_CUMULATIVE);
  EXPECT_EQ(s->thread_id, tid);
  ASSERT_NE(s->thread_name, nullptr);
  EXPECT_STREQ(s->thread_name, "worker-7");
  ASSERT_NE(pyh::Find(s, "in_worker"), nullptr);
  EXPECT_EQ(pyh::Find(s, "in_worker")->ncalls, 3u);
  EXPECT_EQ(pyh::Find(s, "in_main"), nullptr);
  // The merged snapshot has both.
  pyh::Snap all = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  EXPECT_NE(pyh::Find(all.get(), "in_main"), nullptr);
  EXPECT_NE(pyh::Find(all.get(), "in_worker"), nullptr);
  EXPECT_EQ(all->thread_id, 0u);
  EXPECT_EQ(all->kind, STATSPROF_RECORD_CUMULATIVE);
  // A thread's delta is a thread record.
  statsprof_stats_profile *d = nullptr;
  ASSERT_EQ(statsprof_snapshot_thread(p, STATSPROF_DELTA, tid, &d), 0) << statsprof_errmsg(p);
  pyh::Snap dsnap(d);
  EXPECT_EQ(d->kind, STATSPROF_RECORD_THREAD);
  EXPECT_EQ(d->mode, STATSPROF_DELTA);
  EXPECT_EQ(d->thread_id, tid);
  statsprof_stats_profile *bad = nullptr;
  EXPECT_EQ(statsprof_snapshot_thread(p, STATSPROF_CUMULATIVE, 12345, &bad), STATSPROF_EINVAL);
  EXPECT_NE(std::string(statsprof_errmsg(p)).find("12345"), std::string::npos);
  // The worker ended: a record retires it, and its counts stay merged. The
  // message said it "was never profiled".
  // The OS thread ends a little after join returns (its thread-local
  // destructor marks it), then a record retires it.
  int rc = 0;
  for (int i = 0; i < 60000 && rc == 0; i++) {  // a hang guard, not a time limit
    ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
    rc = statsprof_snapshot_thread(p, STATSPROF_CUMULATIVE, tid, &bad);
    statsprof_stats_profile_free(bad);
    bad = nullptr;
    Py_BEGIN_ALLOW_THREADS;
    usleep(1000);
    Py_END_ALLOW_THREADS;
  }
  EXPECT_EQ(rc, STATSPROF_EINVAL);
  EXPECT_NE(std::string(statsprof_errmsg(p)).find("ended"), std::string::npos) << statsprof_errmsg(p);
  EXPECT_EQ(pyh::Find(pyh::Snapshot(p, STATSPROF_CUMULATIVE).get(), "in_worker")->ncalls, 3u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Threads, PerThreadRecordsAreEmittedBesideTheMergedOne) {
  void *ns = pyh::Exec(R"(
import threading
def in_worker(): pass
def main():
    t = threading.Thread(target=lambda: [in_worker() for i in range(5)], name="w")
    t.start(); t.join()
)", "perthread2.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;per_thread=on;writer=sync", &p), 0);
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  auto recs = sink.Take();
  int merged = 0, thread_w = 0;
  for (auto &r : recs) {
    if (r.thread_id == 0) {
      merged++;
      EXPECT_EQ(r.kind, STATSPROF_RECORD_DELTA);
      EXPECT_EQ(r.calls("in_worker"), 5u);
    } else if (r.thread_name == "w") {
      thread_w++;
      EXPECT_EQ(r.kind, STATSPROF_RECORD_THREAD);
      EXPECT_EQ(r.mode, STATSPROF_DELTA);
      EXPECT_EQ(r.calls("in_worker"), 5u);
      EXPECT_EQ(r.calls("main"), 0u);
      EXPECT_EQ(r.seq, recs[0].seq);
    }
  }
  EXPECT_EQ(merged, 1);
  EXPECT_EQ(thread_w, 1);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// Names follow the thread: a rename shows in the next record, and a new
// thread that reuses a finished thread's ident does not inherit its name
// (the old code kept the name seen first: "Dummy-7", then "renamed" for the
// second thread).
TEST(Threads, NamesFollowTheThreadAndEndWithIt) {
  void *ns = pyh::Exec(R"(
import threading
def work(): pass
ready = threading.Event(); go = threading.Event()
def body():
    work(); ready.set(); go.wait(); work()
t1 = threading.Thread(target=body, name="Dummy-7")
def begin():
    t1.start(); ready.wait()
def rename():
    t1.name = "renamed"; go.set(); t1.join()
ident = []
def second():
    t2 = threading.Thread(target=lambda: (ident.append(threading.get_ident()), work()), name="second")
    t2.start(); t2.join()
)", "names.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;per_thread=on;writer=sync", &p), 0);
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  auto names_with_work = [&]() {  // of the records since the last call
    std::vector<std::string> names;
    std::lock_guard<std::mutex> l(sink.mu);
    for (auto &r : sink.records)
      if (r.thread_id && r.calls("work")) names.push_back(r.thread_name);
    sink.records.clear();
    return names;
  };
  ASSERT_TRUE(pyh::Call(ns, "begin"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  EXPECT_EQ(names_with_work(), std::vector<std::string>{"Dummy-7"});
  ASSERT_TRUE(pyh::Call(ns, "rename"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  EXPECT_EQ(names_with_work(), std::vector<std::string>{"renamed"});
  ASSERT_TRUE(pyh::Call(ns, "second"));
  ASSERT_EQ(statsprof_emit_now(p), 0);
  EXPECT_EQ(names_with_work(), std::vector<std::string>{"second"});
  statsprof_destroy(p);
  pyh::Release(ns);
}

// statsprof_name_thread names the calling OS thread; it outlives the thread
// state (a C thread that Ensures and Releases per call keeps its name).
TEST(Threads, HostNamesACThreadForEveryThreadState) {
  void *ns = pyh::Exec("def from_c(): pass\n", "cname.py");
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, "from_c");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none;per_thread=on;writer=sync", &p), 0);
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  Py_BEGIN_ALLOW_THREADS std::thread th([&] {
    EXPECT_EQ(statsprof_name_thread("io-worker"), 0);
    for (int i = 0; i < 3; i++) {
      PyGILState_STATE g = PyGILState_Ensure();
      EXPECT_EQ(statsprof_attach_thread(p), 0);
      Py_XDECREF(PyObject_CallNoArgs(fn));
      PyGILState_Release(g);
    }
  });
  th.join();
  Py_END_ALLOW_THREADS ASSERT_EQ(statsprof_emit_now(p), 0);
  int named = 0;
  for (auto &r : sink.Take())
    if (r.thread_id && r.calls("from_c")) {
      EXPECT_EQ(r.thread_name, "io-worker");
      EXPECT_EQ(r.calls("from_c"), 3u);
      named++;
    }
  EXPECT_EQ(named, 1);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// statsprof_name_thread(NULL) goes back to threading's name, and to none
// for a C thread threading has no Thread for: the old code kept the
// explicit name on that thread's records.
TEST(Threads, NamingACThreadNullTakesItsNameAway) {
  void *ns = pyh::Exec("def from_c(): pass\n", "cname_null.py");
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, "from_c");
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;per_thread=on;writer=sync", &sink);
  Py_BEGIN_ALLOW_THREADS std::thread th([&] {
    PyGILState_STATE g = PyGILState_Ensure();
    EXPECT_EQ(statsprof_attach_thread(p), 0);
    EXPECT_EQ(statsprof_name_thread("io-worker"), 0);
    Py_XDECREF(PyObject_CallNoArgs(fn));
    EXPECT_EQ(statsprof_emit_now(p), 0);
    EXPECT_EQ(statsprof_name_thread(nullptr), 0);
    Py_XDECREF(PyObject_CallNoArgs(fn));
    EXPECT_EQ(statsprof_emit_now(p), 0);
    PyGILState_Release(g);
  });
  th.join();
  Py_END_ALLOW_THREADS;
  std::vector<std::string> names;
  for (auto &r : sink.Take())
    if (r.kind == STATSPROF_RECORD_THREAD && r.calls("from_c")) names.push_back(r.thread_name);
  EXPECT_EQ(names, (std::vector<std::string>{"io-worker", ""}));
  statsprof_destroy(p);
  pyh::Release(ns);
}

// statsprof_name_thread reports through statsprof_errmsg(NULL), as create
// and register_sink do: its success clears the thread's message too (the
// old code left an earlier failure's message there).
TEST(Threads, NamingAThreadClearsTheThreadsMessage) {
  EXPECT_EQ(statsprof_register_sink("a/b", nullptr), STATSPROF_EINVAL);
  EXPECT_STRNE(statsprof_errmsg(nullptr), "");
  EXPECT_EQ(statsprof_name_thread("named"), 0);
  EXPECT_STREQ(statsprof_errmsg(nullptr), "");
  EXPECT_EQ(statsprof_name_thread(nullptr), 0);
}

#if PY_VERSION_HEX >= 0x030C0000
// An ending thread's pthread key destructors run in the order of their
// keys: statsprof's (which marks the thread ended, so that the next record
// frees its state) before one a host made later. When that one runs
// Python, sys.monitoring's callbacks found the freed state through the
// thread's cache (3.12+; without ASan its calls could land anywhere). The
// cache is dropped with statsprof's destructor now: the thread's late
// calls are counted, on a state of their own.
struct LateCalls {
  PyObject *fn = nullptr;
  std::atomic<int> phase{0};
};
pthread_key_t g_late_key;

void LateDestructor(void *v) {
  auto *late = static_cast<LateCalls *>(v);
  late->phase = 1;  // statsprof's destructor has run
  while (late->phase.load() != 2) usleep(1000);
  PyGILState_STATE g = PyGILState_Ensure();
  for (int i = 0; i < 5; i++) Py_XDECREF(PyObject_CallNoArgs(late->fn));
  PyGILState_Release(g);
  late->phase = 3;
}

TEST(Threads, PythonFromALaterKeyDestructorOfAnEndingThreadIsCounted) {
  void *ns = pyh::Exec("def late(): pass\n", "late.py");
  std::string problems = child::Run([&] {
    child::Problems pr;
    statsprof *p = Start("sink=none;interval=1h");
    LateCalls late;
    late.fn = PyDict_GetItemString(static_cast<PyObject *>(ns), "late");
    // A call here makes statsprof's key (at its first thread) before this
    // one: key destructors run in the order of the keys.
    Py_XDECREF(PyObject_CallNoArgs(late.fn));
    if (pthread_key_create(&g_late_key, LateDestructor) != 0) return std::string("pthread_key_create failed");
    std::thread th([&] {
      PyGILState_STATE g = PyGILState_Ensure();
      for (int i = 0; i < 5; i++) Py_XDECREF(PyObject_CallNoArgs(late.fn));  // statsprof's key is set here
      PyGILState_Release(g);
      pthread_setspecific(g_late_key, &late);
    });
    Py_BEGIN_ALLOW_THREADS;
    while (late.phase.load() != 1) usleep(1000);
    Py_END_ALLOW_THREADS;
    pr.Check(statsprof_emit_now(p) == 0, std::string("emit_now: ") + statsprof_errmsg(p));  // frees its state
    late.phase = 2;
    Py_BEGIN_ALLOW_THREADS;
    while (late.phase.load() != 3) usleep(1000);
    th.join();
    Py_END_ALLOW_THREADS;
    uint64_t calls = pyh::Calls(p, "late");
    pr.Check(calls == 11, "late() counted " + std::to_string(calls) + " times, not 11");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}
#endif

// A C thread that enters Python with PyGILState_Ensure after start.
struct CThread {
  std::atomic<int> phase{0};
  std::thread th;
  void Run(PyObject *fn, statsprof *attach_with, int before, int after) {
    th = std::thread([=] {
      PyGILState_STATE g = PyGILState_Ensure();
      for (int i = 0; i < before; i++) Py_XDECREF(PyObject_CallNoArgs(fn));
      if (attach_with) {
        EXPECT_EQ(statsprof_attach_thread(attach_with), 0);
      }
      phase = 1;
      Py_BEGIN_ALLOW_THREADS while (phase.load() != 2) std::this_thread::yield();
      Py_END_ALLOW_THREADS for (int i = 0; i < after; i++) Py_XDECREF(PyObject_CallNoArgs(fn));
      PyGILState_Release(g);
      phase = 3;
    });
  }
  void WaitFor(int v) {
    Py_BEGIN_ALLOW_THREADS while (phase.load() != v) std::this_thread::yield();
    Py_END_ALLOW_THREADS
  }
};

// Runs a C thread that calls from_c() `before` times (attaching itself
// with `attach_with` after them, when given), waits while the main thread
// ticks once (when `tick`), then calls it `after` times; stops p and
// returns the calls of from_c() that p counted.
uint64_t CallsFromCThread(statsprof *p, void *ns, statsprof *attach_with, int before, int after, bool tick) {
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, "from_c");
  CThread t;
  t.Run(fn, attach_with, before, after);
  t.WaitFor(1);
  if (tick) {
    EXPECT_EQ(statsprof_tick(p), 1);  // picks the new thread state up
  }
  t.phase = 2;
  t.WaitFor(3);
  t.th.join();
  statsprof_stop(p);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  const statsprof_function_profile *f = pyh::Find(s.get(), "from_c");
  return f ? f->ncalls : 0;
}

// The setprofile source installs the hook per thread state: a C thread's
// new state is picked up at the next record (tick); the 2 calls before it
// are not seen.
TEST(Threads, CThreadIsPickedUpAtTheNextTick) {
  void *ns = pyh::Exec("def from_c(): pass\n", "cthread.py");
  statsprof *p = Start("source=setprofile;sink=none;interval=0s");
  EXPECT_EQ(CallsFromCThread(p, ns, nullptr, 2, 5, /*tick=*/true), 5u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

#if PY_VERSION_HEX >= 0x030C0000
// sys.monitoring covers every thread of the interpreter: a C thread is
// counted from its first call, with no tick and no statsprof_attach_thread.
TEST(Threads, MonitoringCountsACThreadFromItsFirstCall) {
  void *ns = pyh::Exec("def from_c(): pass\n", "cthread3.py");
  statsprof *p = Start("source=monitoring;sink=none");
  EXPECT_EQ(CallsFromCThread(p, ns, nullptr, 2, 5, /*tick=*/false), 7u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// A new thread may get the ident of one that ended (glibc reuses a joined
// thread's descriptor, and pthread_self() is its address). Its calls are
// its own: the ended thread's state, which the next record pools and
// frees, is never taken over (that counted the new thread's calls under the
// old thread's name and, after the record, into freed memory).
TEST(Threads, MonitoringThreadReusingAnEndedThreadsIdentCountsAsItself) {
  void *ns = pyh::Exec("def from_c(): pass\n", "reuse.py");
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, "from_c");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("source=monitoring;sink=none;per_thread=on;writer=sync;interval=1h", &p), 0);
  CollectSink sink;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  auto calls = [fn](int n) {
    PyGILState_STATE g = PyGILState_Ensure();
    for (int i = 0; i < n; i++) Py_XDECREF(PyObject_CallNoArgs(fn));
    PyGILState_Release(g);
  };
  unsigned long ident[2] = {0, 0};
  std::atomic<int> phase{0};
  std::thread second;
  Py_BEGIN_ALLOW_THREADS std::thread first([&] {
    statsprof_name_thread("first");
    ident[0] = PyThread_get_thread_ident();
    calls(2);
  });
  first.join();
  second = std::thread([&] {
    statsprof_name_thread("second");
    ident[1] = PyThread_get_thread_ident();
    calls(3);
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
    calls(4);
  });
  while (phase.load() != 1) std::this_thread::yield();
  Py_END_ALLOW_THREADS ASSERT_EQ(ident[0], ident[1]) << "the second thread did not reuse the first's ident";
  // The record sees the first thread ended: its state goes to the pool.
  ASSERT_EQ(statsprof_emit_now(p), 0);
  phase = 2;
  Py_BEGIN_ALLOW_THREADS second.join();
  Py_END_ALLOW_THREADS ASSERT_EQ(statsprof_emit_now(p), 0);
  std::map<std::string, uint64_t> by_name;
  for (auto &r : sink.Take())
    if (r.thread_id) by_name[r.thread_name] += r.calls("from_c");
  EXPECT_EQ(by_name["first"], 2u);
  EXPECT_EQ(by_name["second"], 7u);
  statsprof_destroy(p);
  pyh::Release(ns);
}
#endif

TEST(Threads, CThreadCanAttachItself) {
  void *ns = pyh::Exec("def from_c(): pass\n", "cthread2.py");
  statsprof *p = Start();
  EXPECT_EQ(CallsFromCThread(p, ns, p, 0, 3, /*tick=*/false), 3u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Threads, StopRemovesTheHookFromEveryThread) {
  void *ns = pyh::Exec(R"(
import threading, sys
go = threading.Event(); done = threading.Event(); seen = []
def worker():
    go.wait()
    seen.append(sys.getprofile())
    done.set()
t = threading.Thread(target=worker)
def begin(): t.start()
def finish():
    go.set(); done.wait(); t.join()
)", "stop.py");
  {
    void *chk = pyh::Exec("import threading\nhook = threading._profile_hook\n");
    PyObject *h = PyDict_GetItemString((PyObject *)chk, "hook");
    EXPECT_EQ(h, Py_None) << "stale threading profile hook";
  }
  ASSERT_TRUE(pyh::Call(ns, "begin"));
  statsprof *p = Start("source=setprofile;sink=none");  // per-thread-state hooks
  int ours = 0;
  for (PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get()); ts; ts = PyThreadState_Next(ts))
    ours += ts->c_profilefunc != nullptr;
  EXPECT_GE(ours, 2);
  statsprof_stop(p);
  for (PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get()); ts; ts = PyThreadState_Next(ts)) {
    Dl_info info{};
    if (ts->c_profilefunc) dladdr((void *)ts->c_profilefunc, &info);
    EXPECT_EQ(ts->c_profilefunc, nullptr) << (info.dli_sname ? info.dli_sname : "?") << " tid " << ts->thread_id;
  }
  ASSERT_TRUE(pyh::Call(ns, "finish"));
  PyObject *seen = PyDict_GetItemString((PyObject *)ns, "seen");
  EXPECT_EQ(PyList_GetItem(seen, 0), Py_None);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// sys.getprofile() returns a thread's state under source=setprofile; code
// that saves it and restores it with sys.setprofile (a debugger, a timing
// helper) installs CPython's trampoline, which calls it. Not callable, the
// first event after the restore raised TypeError into the profiled code
// (as cProfile's object does); now it puts the C hook back, on its own
// thread with the same state, on another thread with that thread's own.
TEST(Threads, ProfileFunctionSavedAndRestoredFromPython) {
  void *ns = pyh::Exec(R"(
import sys, threading
def skipped(): pass
def after(): pass
def in_thread(): pass
def roundtrip():
    saved = sys.getprofile()
    sys.setprofile(None)
    skipped()
    sys.setprofile(saved)
    for _ in range(3): after()
    return int(sys.getprofile() is saved)
def other_thread():
    saved, hook = sys.getprofile(), threading.getprofile()
    threading.setprofile(saved)
    try:
        th = threading.Thread(target=lambda: [in_thread() for _ in range(4)])
        th.start(); th.join()
    finally:
        threading.setprofile(hook)
    after()
    return 1
def keep():
    global kept
    kept = sys.getprofile()
    return int(kept is not None)
def stopped():
    sys.setprofile(kept)
    skipped()
    return int(sys.getprofile() is None)
def by_hand():
    sys.getprofile()(None, "call", None)
    sys.getprofile()(sys._getframe(), "c_call", None)
    return 1
)", "restore.py");
  auto call = [ns](const char *fn) {
    PyObject *r = PyObject_CallFunction(PyDict_GetItemString(static_cast<PyObject *>(ns), fn), nullptr);
    EXPECT_NE(r, nullptr) << fn << ": " << pyh::TakeError();
    long v = r ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    return v;
  };
  statsprof *p = Start("source=setprofile;sink=none");
  for (int i = 0; i < 2; i++) EXPECT_EQ(call("roundtrip"), 1) << "round " << i;
  EXPECT_EQ(call("other_thread"), 1);
  EXPECT_EQ(call("by_hand"), 1);
  EXPECT_EQ(call("keep"), 1);
  statsprof_stop(p);
  EXPECT_EQ(pyh::Calls(p, "skipped"), 0u);
  EXPECT_EQ(pyh::Calls(p, "after"), 7u);
  EXPECT_EQ(pyh::Calls(p, "in_thread"), 4u);
  EXPECT_EQ(pyh::Calls(p, "roundtrip"), 2u);
  EXPECT_EQ(pyh::Calls(p, "other_thread"), 1u);
  // Restored after its profiler stopped: it removes itself.
  EXPECT_EQ(call("stopped"), 1);
  EXPECT_EQ(pyh::Calls(p, "skipped"), 0u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Threads, AnotherThreadsOwnProfilerIsLeftAlone) {
  void *ns = pyh::Exec(R"(
import threading, cProfile
go = threading.Event(); done = threading.Event(); out = []
def mine(): pass
def worker():
    pr = cProfile.Profile(); pr.enable()
    ready.set(); go.wait()
    mine()
    pr.disable(); pr.create_stats()
    out.append(sum(v[1] for k, v in pr.stats.items() if k[2] == 'mine'))
    done.set()
ready = threading.Event()
t = threading.Thread(target=worker)
def begin(): t.start(); ready.wait()
def finish(): go.set(); done.wait(); t.join()
)", "foreign.py");
  ASSERT_TRUE(pyh::Call(ns, "begin"));
  statsprof *p = Start("sink=none;interval=0s");
  statsprof_tick(p);
  ASSERT_TRUE(pyh::Call(ns, "finish"));
  PyObject *out = PyDict_GetItemString((PyObject *)ns, "out");
  EXPECT_EQ(PyLong_AsLong(PyList_GetItem(out, 0)), 1);  // cProfile kept its thread
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Threads, CpuClockShowsNoTimeForSleepWallClockDoes) {
  void *ns = pyh::Exec(R"(
import time
def nap(): time.sleep(0.1)
def main(): nap()
)", "clock.py");
  pyh::CountMap dummy;
  double wall = 0, cpu = 0;
  for (const char *config : {"sink=none;clock=wall", "sink=none;clock=cpu"}) {
    statsprof *p = Start(config);
    ASSERT_TRUE(pyh::Call(ns, "main"));
    statsprof_stop(p);
    pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
    const statsprof_function_profile *nap = pyh::Find(s.get(), "nap");
    ASSERT_NE(nap, nullptr);
    EXPECT_EQ(nap->ncalls, 1u);
    (std::string(config).find("cpu") != std::string::npos ? cpu : wall) = nap->cumtime;
    statsprof_destroy(p);
  }
  // The wall clock shows the sleep; not to the microsecond: compensation
  // takes the calibrated cost of the events inside off (and the tick's
  // length is calibrated), which left 0.0999775 s in a 3.11.7 run.
  EXPECT_GE(wall, 0.095);
  EXPECT_LT(cpu, 0.05);  // sleeping costs (almost) no CPU
  pyh::Release(ns);
}

}  // namespace
