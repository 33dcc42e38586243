// lifecycle_test.cc — create/start/stop/destroy in every order, NULL
// handles, statsprof_from_env, and Py_Finalize under a running
// profiler (last in this file: it re-initializes the interpreter).
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

const char kProgram[] = R"(
def f(): pass
def main():
    for i in range(3): f()
)";

using pyh::Calls;
using pyh::kHook;
using pyh::kNoHook;

// ---- start / stop / destroy ------------------------------------------------

TEST(Lifecycle, StopWithoutStartIsANoOp) {
  pyh::RecordingSink sink;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
  EXPECT_EQ(statsprof_is_running(p), 0);
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_is_running(p), 0);
  statsprof_destroy(p);
  EXPECT_TRUE(sink.records.empty());
  EXPECT_EQ(sink.closes, 1);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
}

TEST(Lifecycle, StartTwiceIsANoOpAndCountsOnce) {
  void *ns = pyh::Exec(kProgram);
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_start(p), 0);
  EXPECT_NE(statsprof_is_running(p), 0);
  EXPECT_EQ(pyh::RunPy(kHook), "");
  pyh::Call(ns, "main");
  EXPECT_EQ(Calls(p, "f"), 4u);
  EXPECT_EQ(Calls(p, "main"), 1u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Lifecycle, StopTwiceIsANoOpAndRemovesTheHook) {
  void *ns = pyh::Exec(kProgram);
  pyh::RecordingSink sink;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_is_running(p), 0);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  pyh::Call(ns, "main");  // not counted
  EXPECT_EQ(Calls(p, "f"), 3u);
  EXPECT_EQ(sink.records.size(), 1u);  // the first stop's record only
  statsprof_destroy(p);
  EXPECT_EQ(sink.records.size(), 1u);
  pyh::Release(ns);
}

TEST(Lifecycle, DestroyWhileStartedEmitsTheFinalRecordAndRemovesTheHook) {
  void *ns = pyh::Exec(kProgram);
  pyh::RecordingSink sink;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  statsprof_destroy(p);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(sink.records[0].calls_by_name["f"], 3u);
  EXPECT_EQ(sink.records[0].calls_by_name["main"], 1u);
  EXPECT_EQ(sink.closes, 1);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  EXPECT_TRUE(pyh::Call(ns, "main"));  // Python runs on without the freed profiler
  pyh::Release(ns);
}

TEST(Lifecycle, DestroyNullIsANoOp) {
  statsprof_destroy(nullptr);
  statsprof_stats_profile_free(nullptr);
}

TEST(Lifecycle, StartAfterStopContinuesCounting) {
  void *ns = pyh::Exec(kProgram);
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Call(ns, "main");  // stopped: not counted
  ASSERT_EQ(statsprof_start(p), 0);
  EXPECT_NE(statsprof_is_running(p), 0);
  pyh::Call(ns, "f");
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(Calls(p, "f"), 7u);
  EXPECT_EQ(Calls(p, "main"), 2u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Lifecycle, TwoProfilersStartedOneAtATimeCountSeparately) {
  void *ns = pyh::Exec(kProgram);
  statsprof *a, *b;
  ASSERT_EQ(statsprof_create("sink=none", &a), 0);
  ASSERT_EQ(statsprof_create("sink=none", &b), 0);
  ASSERT_EQ(statsprof_start(a), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(a), 0);
  ASSERT_EQ(statsprof_start(b), 0);
  pyh::Call(ns, "f");
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_stop(b), 0);
  ASSERT_EQ(statsprof_start(a), 0);  // a again: code objects now carry b's cache
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_stop(a), 0);
  EXPECT_EQ(Calls(a, "f"), 4u);
  EXPECT_EQ(Calls(a, "main"), 1u);
  EXPECT_EQ(Calls(b, "f"), 2u);
  EXPECT_EQ(Calls(b, "main"), 0u);
  statsprof_destroy(b);
  EXPECT_EQ(Calls(a, "f"), 4u);
  statsprof_destroy(a);
  pyh::Release(ns);
}

// A stopped profiler keeps its counts but no sys.monitoring tool id
// (3.12+): statsprof has two (3 and 4), and a third profiler, with two
// stopped ones kept for their stats, failed to start ("tool ids 3 and 4
// are both in use"). On 3.11 (no tool ids) the same starts must succeed.
TEST(Lifecycle, StoppedProfilersLeaveTheirMonitoringToolIds) {
  void *ns = pyh::Exec(kProgram);
  for (const char *config : {"sink=none", "sink=none;builtins=off"}) {
    std::vector<statsprof *> kept;
    for (int i = 0; i < 4; i++) {
      statsprof *p = nullptr;
      ASSERT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
      kept.push_back(p);
      ASSERT_EQ(statsprof_start(p), 0) << config << " profiler " << i << ": " << statsprof_errmsg(p);
      pyh::Call(ns, "main");
      ASSERT_EQ(statsprof_stop(p), 0);
      EXPECT_EQ(Calls(p, "f"), 3u) << config << " profiler " << i;
    }
#if PY_VERSION_HEX >= 0x030C0000
    EXPECT_EQ(pyh::RunPy("import sys\n"
                         "assert sys.monitoring.get_tool(3) is None, sys.monitoring.get_tool(3)\n"
                         "assert sys.monitoring.get_tool(4) is None, sys.monitoring.get_tool(4)\n"),
              "");
#endif
    // Started again, the first takes an id again and counts on.
    ASSERT_EQ(statsprof_start(kept[0]), 0) << statsprof_errmsg(kept[0]);
    pyh::Call(ns, "f");
    ASSERT_EQ(statsprof_stop(kept[0]), 0);
    EXPECT_EQ(Calls(kept[0], "f"), 4u) << config;
    for (statsprof *p : kept) statsprof_destroy(p);
  }
  pyh::Release(ns);
}

TEST(Lifecycle, SnapshotOfANeverStartedProfilerIsEmpty) {
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  pyh::Snap c = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  pyh::Snap d = pyh::Snapshot(p, STATSPROF_DELTA);
  ASSERT_TRUE(c && d);
  EXPECT_EQ(c->nfunc_profiles, 0u);
  EXPECT_EQ(d->nfunc_profiles, 0u);
  EXPECT_EQ(c->total_tt, 0.0);
  EXPECT_EQ(d->seq, 1u);
  EXPECT_EQ(statsprof_reset(p), 0);
  statsprof_destroy(p);
}

TEST(Lifecycle, NullHandlesAreEinval) {
  auto msg_has = [](const char *text) {
    return std::string(statsprof_errmsg(nullptr)).find(text) != std::string::npos;
  };
  EXPECT_EQ(statsprof_start(nullptr), STATSPROF_EINVAL);
  EXPECT_TRUE(msg_has("statsprof_start")) << statsprof_errmsg(nullptr);
  EXPECT_EQ(statsprof_stop(nullptr), STATSPROF_EINVAL);
  EXPECT_TRUE(msg_has("statsprof_stop"));
  EXPECT_EQ(statsprof_reset(nullptr), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_emit_now(nullptr), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_attach_thread(nullptr), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_tick(nullptr), STATSPROF_EINVAL);
  statsprof_stats_profile *s = reinterpret_cast<statsprof_stats_profile *>(0x1);
  EXPECT_EQ(statsprof_snapshot(nullptr, STATSPROF_DELTA, &s), STATSPROF_EINVAL);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(statsprof_snapshot(nullptr, STATSPROF_DELTA, nullptr), STATSPROF_EINVAL);
  pyh::RecordingSink sink;
  EXPECT_EQ(statsprof_add_sink(nullptr, pyh::RecordingSinkOps(), &sink), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_is_running(nullptr), 0);
  EXPECT_EQ(statsprof_sink_errors(nullptr), 0u);
  EXPECT_NE(statsprof_errmsg(nullptr), nullptr);
}

TEST(Lifecycle, AddSinkValidatesOps) {
  statsprof *p;
  // writer=sync: the sixteen sinks share one RecordingSink, not thread-safe.
  ASSERT_EQ(statsprof_create("sink=none;writer=sync", &p), 0);
  pyh::RecordingSink sink;
  statsprof_sink_ops no_emit = *pyh::RecordingSinkOps();
  no_emit.emit = nullptr;
  statsprof_sink_ops old_version = *pyh::RecordingSinkOps();
  old_version.version = 0;
  EXPECT_EQ(statsprof_add_sink(p, nullptr, &sink), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_add_sink(p, &no_emit, &sink), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_add_sink(p, &old_version, &sink), STATSPROF_EINVAL);
  EXPECT_NE(std::string(statsprof_errmsg(p)).find("version 0"), std::string::npos) << statsprof_errmsg(p);
  for (int i = 0; i < 16; i++) ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0) << i;
  EXPECT_LT(pyh::AddRecordingSink(p, &sink), 0);  // the 17th
  EXPECT_NE(std::string(statsprof_errmsg(p)).find("at most 16 sinks"), std::string::npos)
      << statsprof_errmsg(p);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(sink.emits, 16);  // one record, sixteen sinks
  statsprof_destroy(p);
  EXPECT_EQ(sink.closes, 16);  // never for the refused ones
}

// A config the event source rejects opens no sink: create made the jsonl
// sink's directories and file, then failed with STATSPROF_ECONFIG.
TEST(Lifecycle, ARejectedSourceLeavesNoSinkFiles) {
  std::string dir = pyh::TempDir();
  std::string config = "source=evalframe;builtins=on;sink=jsonl:" + dir + "/sub/out.jsonl";
  statsprof *p = reinterpret_cast<statsprof *>(0x1);
  EXPECT_EQ(statsprof_create(config.c_str(), &p), STATSPROF_ECONFIG);
  EXPECT_EQ(p, nullptr);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("config: source=evalframe counts Python functions only"),
            std::string::npos)
      << statsprof_errmsg(nullptr);
  struct stat st;
  EXPECT_NE(stat((dir + "/sub").c_str(), &st), 0) << dir << "/sub was made";
}

TEST(Lifecycle, AttachThreadNeedsARunningProfiler) {
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  EXPECT_EQ(statsprof_attach_thread(p), STATSPROF_ESTATE);
  ASSERT_EQ(statsprof_start(p), 0);
  EXPECT_EQ(statsprof_attach_thread(p), 0);  // already attached: fine
  ASSERT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_attach_thread(p), STATSPROF_ESTATE);
  statsprof_destroy(p);
}

// statsprof_attach_thread waits, GIL released, while the timer's record
// holds the profiler (on_full=block, a writer=sync sink). It checked that
// the profiler ran before that wait: a stop from another thread that ran
// to its end meanwhile left the waiting thread to put the hook back on a
// stopped profiler (3.11: its profile function, which a destroy then left
// pointing at freed memory; 3.12+: sys.monitoring's events on again). The
// timer's record is stood in for by the busy flag it sets.
TEST(Lifecycle, AttachThreadThatWaitedThroughAStopIsRefused) {
  const char *configs[] = {"sink=none;interval=1h", "sink=none;interval=1h;source=setprofile"};
  for (const char *config : configs) {
    SCOPED_TRACE(config);
    std::string problems = child::Run([&] {
      child::Problems pr;
      statsprof *p = nullptr;
      if (statsprof_create(config, &p) != 0) return std::string("create failed");
      pr.Check(statsprof_start(p) == 0, std::string("start: ") + statsprof_errmsg(p));
      p->busy = STATSPROF__BUSY_TIMER;
      std::atomic<bool> entering{false};
      std::atomic<int> rc{-100};
      std::string hook;
      std::thread th([&] {
        PyGILState_STATE g = PyGILState_Ensure();
        entering = true;
        rc = statsprof_attach_thread(p);  // waits, GIL released, for the "record"
        hook = pyh::RunPy(kNoHook);
        PyGILState_Release(g);
      });
      Py_BEGIN_ALLOW_THREADS;
      while (!entering) usleep(1000);
      usleep(50000);  // it is in its wait now (or the check below still holds)
      Py_END_ALLOW_THREADS;
      p->busy = 0;  // the record went out; this thread holds the GIL and stops
      pr.Check(statsprof_stop(p) == 0, std::string("stop: ") + statsprof_errmsg(p));
      Py_BEGIN_ALLOW_THREADS;
      th.join();
      Py_END_ALLOW_THREADS;
      pr.Check(rc == STATSPROF_ESTATE, "attach_thread after the stop returned " + std::to_string(rc.load()));
      pr.Check(hook.empty(), "the attaching thread has the hook of a stopped profiler: " + hook);
      pr.Check(pyh::RunPy(kNoHook).empty(), "a hook is on after the stop");
      statsprof_destroy(p);
      return pr.text;
    });
    EXPECT_EQ(problems, "");
  }
}

// A C method called on an object whose class shadows it with a Python
// attribute is labelled, as cProfile labels it, with that attribute's repr:
// Python code runs inside the hook's first sight of it (so may a
// finalizer, when naming a thread makes an object). A stop and a destroy
// from there freed the profiler under the hook (or changed it); both are
// now refused, the destroy with a message, and the hook goes on counting.
TEST(Lifecycle, StopAndDestroyFromPythonRunByTheHookAreRefused) {
  const char *configs[] = {"sink=none;interval=1h", "sink=none;interval=1h;source=setprofile"};
  for (const char *config : configs) {
    SCOPED_TRACE(config);
    std::string problems = child::Run([&] {
      child::Problems pr;
      pyh::LogLines log;
      pyh::CallsFromTheHook calls;
      void *ns = pyh::ExecShadowedAppend(&calls, "shadow.py");
      if (statsprof_create(config, &calls.p) != 0) return std::string("create failed");
      statsprof_set_log(calls.p, pyh::LogLines::Fn, &log);
      pr.Check(statsprof_start(calls.p) == 0, std::string("start: ") + statsprof_errmsg(calls.p));
      pr.Check(pyh::Call(ns, "run"), "run() raised: " + pyh::TakeError());
      pr.Check(calls.stop_rc == STATSPROF_ESTATE, "stop from inside the hook returned " +
                                                     std::to_string(calls.stop_rc));
      pr.Check(log.Has("left alive"), "no message for the refused destroy:\n" + log.All());
      pr.Check(statsprof_is_running(calls.p), "not running after the refused stop");
      pr.Check(Calls(calls.p, "<shadowed append>") == 3,
               "list.append counted " + std::to_string(Calls(calls.p, "<shadowed append>")) + " times, not 3");
      statsprof_destroy(calls.p);
      pr.Check(pyh::RunPy(kNoHook).empty(), "a hook is on after the destroy");
      pyh::Release(ns);
      return pr.text;
    });
    EXPECT_EQ(problems, "");
  }
}

// ---- statsprof_from_env --------------------------------------------------------

class FromEnv : public testing::Test {
 protected:
  void SetUp() override {
    unsetenv("STATSPROF");
    unsetenv("MYAPP_PROFILE");
  }
  void TearDown() override { SetUp(); }
};

TEST_F(FromEnv, UnsetOrEmptyReturnsNullAndInstallsNothing) {
  EXPECT_EQ(statsprof_from_env(nullptr), nullptr);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  setenv("STATSPROF", "", 1);
  EXPECT_EQ(statsprof_from_env(nullptr), nullptr);
  EXPECT_EQ(statsprof_from_env("STATSPROF"), nullptr);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
}

// The words that mean on have their opposites: STATSPROF=0 used to be "not
// a valid profiler config" on stderr (and off only by accident).
TEST_F(FromEnv, OffZeroFalseNoMeanOffWithoutAComplaint) {
  for (const char *v : {"0", "off", "false", "no"}) {
    setenv("STATSPROF", v, 1);
    statsprof *p = reinterpret_cast<statsprof *>(1);
    std::string err = pyh::CaptureStderr([&] { p = statsprof_from_env(nullptr); });
    EXPECT_EQ(p, nullptr) << v;
    EXPECT_EQ(err, "") << v;
    EXPECT_EQ(pyh::RunPy(kNoHook), "") << v;
  }
}

TEST_F(FromEnv, ConfigStringStartsAProfiler) {
  void *ns = pyh::Exec(kProgram);
  setenv("STATSPROF", "sink=none;builtins=off", 1);
  statsprof *p = statsprof_from_env(nullptr);
  ASSERT_NE(p, nullptr) << statsprof_errmsg(nullptr);
  EXPECT_NE(statsprof_is_running(p), 0);
  EXPECT_EQ(pyh::RunPy(kHook), "");
  pyh::Call(ns, "main");
  EXPECT_EQ(Calls(p, "f"), 3u);
  statsprof_destroy(p);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  pyh::Release(ns);
}

TEST_F(FromEnv, OnAndOneMeanDefaults) {
  for (const char *v : {"on", "1"}) {
    std::string dir = pyh::TempDir();
    char old[4096];
    ASSERT_NE(getcwd(old, sizeof old), nullptr);
    ASSERT_EQ(chdir(dir.c_str()), 0);
    setenv("STATSPROF", v, 1);
    statsprof *p = statsprof_from_env(nullptr);
    EXPECT_NE(p, nullptr) << v << ": " << statsprof_errmsg(nullptr);
    EXPECT_NE(statsprof_is_running(p), 0);
    statsprof_destroy(p);
    ASSERT_EQ(chdir(old), 0);
    struct stat st;
    EXPECT_EQ(stat((dir + "/statsprof.jsonl").c_str(), &st), 0) << v << ": default sink not opened";
  }
}

TEST_F(FromEnv, MalformedValueReturnsNullAndTheHostRunsOn) {
  setenv("STATSPROF", "sink=none;interval=soon", 1);
  EXPECT_EQ(statsprof_from_env(nullptr), nullptr);
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("bad interval 'soon'"), std::string::npos) << msg;
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  EXPECT_EQ(pyh::RunPy("x = sum(range(10))\nassert x == 45\n"), "");
  setenv("STATSPROF", "sink=nosuchsink", 1);
  EXPECT_EQ(statsprof_from_env(nullptr), nullptr);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("nosuchsink"), std::string::npos);
}

TEST_F(FromEnv, CustomVariableName) {
  setenv("MYAPP_PROFILE", "sink=none", 1);
  EXPECT_EQ(statsprof_from_env(nullptr), nullptr);  // STATSPROF is unset
  statsprof *p = statsprof_from_env("MYAPP_PROFILE");
  ASSERT_NE(p, nullptr) << statsprof_errmsg(nullptr);
  EXPECT_NE(statsprof_is_running(p), 0);
  statsprof_destroy(p);
  setenv("MYAPP_PROFILE", "colour=blue", 1);
  EXPECT_EQ(statsprof_from_env("MYAPP_PROFILE"), nullptr);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("colour"), std::string::npos);
}

// ---- Py_Finalize while started (keep last: it re-initializes Python; do not
// run this binary with --gtest_shuffle) -------------------------------------------

TEST(ZzFinalize, PyFinalizeWhileStartedThenReinitialize) {
  void *ns = pyh::Exec(kProgram, "before.py");
  pyh::RecordingSink sink;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
  // Two more that run in this interpreter and are started again in the
  // next one (below), both still running at Py_Finalize. On 3.11 each
  // start takes this thread's hook from the one before; on 3.12+ the
  // setprofile one runs beside the sys.monitoring ones. (A profiler
  // stopped before Py_Finalize, and ended threads: the next test.)
  statsprof *again[2] = {nullptr, nullptr};
  const char *again_config[2] = {"sink=none;interval=1h", "sink=none;interval=1h;source=setprofile"};
  for (int i = 1; i >= 0; i--) {
    ASSERT_EQ(statsprof_create(again_config[i], &again[i]), 0);
    ASSERT_EQ(statsprof_start(again[i]), 0) << statsprof_errmsg(again[i]);
    pyh::Call(ns, "main");
  }
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  pyh::Release(ns);

  ASSERT_EQ(Py_FinalizeEx(), 0);
  ASSERT_FALSE(Py_IsInitialized());
  EXPECT_EQ(statsprof_is_running(p), 0);
  {
    statsprof_stats_profile *s = nullptr;
    ASSERT_EQ(statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s), 0) << statsprof_errmsg(p);
    pyh::Snap snap(s);
    const statsprof_function_profile *f = pyh::Find(s, "f");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->ncalls, 3u);  // counts from before finalize remain
    EXPECT_STREQ(f->file_name, "before.py");
  }
  EXPECT_EQ(statsprof_start(p), STATSPROF_ENOPYTHON);
  EXPECT_EQ(statsprof_stop(p), 0);
  ASSERT_EQ(sink.records.size(), 1u);  // the last delta still goes out
  EXPECT_EQ(sink.records[0].calls_by_name["f"], 3u);
  statsprof_destroy(p);
  EXPECT_EQ(sink.closes, 1);

  // Creating needs no interpreter.
  statsprof *q;
  ASSERT_EQ(statsprof_create("sink=none;builtins=off", &q), 0);
  EXPECT_EQ(statsprof_start(q), STATSPROF_ENOPYTHON);

  Py_InitializeEx(0);
  ASSERT_TRUE(Py_IsInitialized());
  void *ns2 = pyh::Exec("def g(): pass\ndef main():\n  for i in range(5): g()\n", "after.py");
  ASSERT_EQ(statsprof_start(q), 0) << statsprof_errmsg(q);
  ASSERT_TRUE(pyh::Call(ns2, "main"));
  ASSERT_EQ(statsprof_stop(q), 0);
  EXPECT_EQ(Calls(q, "g"), 5u);
  EXPECT_EQ(Calls(q, "main"), 1u);
  statsprof_destroy(q);
  // What their sources made in the old interpreter (tool id, callbacks,
  // threading's hook, per-thread states) went with it: refused, with the
  // way out in the message; their counts stay readable.
  for (int i = 0; i < 2; i++) {
    statsprof *r = again[i];
    EXPECT_EQ(statsprof_start(r), STATSPROF_ESTATE) << again_config[i];
    EXPECT_NE(std::string(statsprof_errmsg(r)).find("finalized; create a new profiler"), std::string::npos)
        << statsprof_errmsg(r);
    EXPECT_EQ(statsprof_is_running(r), 0);
    // 3.12+: each kept counting while the next ones ran main.
    const uint64_t want[2] = {PY_VERSION_HEX >= 0x030C0000 ? 6u : 3u, PY_VERSION_HEX >= 0x030C0000 ? 9u : 3u};
    EXPECT_EQ(Calls(r, "f"), want[i]) << again_config[i];
    EXPECT_EQ(statsprof_stop(r), 0) << again_config[i];
    statsprof_destroy(r);
  }
  // A brand-new profiler after re-initialization works too.
  pyh::CountMap m = pyh::StatsprofRun(ns2, "main", "sink=none;builtins=off");
  EXPECT_EQ(m["after.py:1(g)"].nc, 5u);
  EXPECT_EQ(pyh::RunPy(kNoHook), "");
  pyh::Release(ns2);
}

// The threads of this process, as /proc/self/task lists them.
static size_t TaskCount() {
  size_t n = 0;
  if (DIR *d = opendir("/proc/self/task")) {
    while (const dirent *e = readdir(d))
      if (e->d_name[0] != '.') n++;
    closedir(d);
  }
  return n;
}

// Waits until at most n threads remain. threading's join() returns when a
// thread's Python state is cleared, before its OS thread has run its TLS
// destructors, which free the library's record of that OS thread: blocks
// of the allocator that no profiler owns. Bounded (a minute, then the
// test fails) so that a thread that never ends cannot hang the suite.
static bool WaitForTasks(size_t n) {
  for (int i = 0; i < 60000 && TaskCount() > n; i++) usleep(1000);
  return TaskCount() <= n;
}

// A profiler destroyed after Py_Finalize frees every allocation of its own,
// per-thread stacks included, whether it was running at Py_Finalize or
// stopped before it (stopped, its states wait in its pool). The states'
// Python objects went with the interpreter.
TEST(ZzFinalize, ProfilersDestroyedAfterFinalizeFreeTheirThreadStates) {
  const char kThreaded[] = R"(
import threading
def f(): pass
def work():
    for i in range(50): f()
def main():
    ts = [threading.Thread(target=work) for i in range(3)]
    for t in ts: t.start()
    work()
    for t in ts: t.join()
)";
  const char *configs[] = {"sink=none;interval=1h", "sink=none;interval=1h;source=setprofile",
                           "sink=none;interval=1h;builtins=off"};
  const size_t tasks = TaskCount();
  // Earlier tests' destroyed profilers left states for this thread in
  // hook.c's grave, which this test's profilers take over: it is emptied at
  // Py_Finalize.
  ASSERT_EQ(Py_FinalizeEx(), 0);
  Py_InitializeEx(0);
  for (const char *config : configs) {
    SCOPED_TRACE(config);
    void *ns = pyh::Exec(kThreaded, "threaded.py");
    // Live blocks made in an earlier interpreter (OS threads' records) stay
    // as they are: only this test's profilers' blocks count, once the
    // threads main() started have ended.
    ASSERT_TRUE(WaitForTasks(tasks)) << TaskCount() << " threads, " << tasks << " before";
    long live = statsprof__alloc_live();
    statsprof *stopped, *running;
    ASSERT_EQ(statsprof_create(config, &stopped), 0);
    ASSERT_EQ(statsprof_create(config, &running), 0);
    ASSERT_EQ(statsprof_start(stopped), 0) << statsprof_errmsg(stopped);
    ASSERT_TRUE(pyh::Call(ns, "main"));
    ASSERT_EQ(statsprof_stop(stopped), 0);
    ASSERT_EQ(statsprof_start(running), 0) << statsprof_errmsg(running);
    ASSERT_TRUE(pyh::Call(ns, "main"));
    EXPECT_EQ(Calls(stopped, "f"), 200u);
    pyh::Release(ns);
    ASSERT_EQ(Py_FinalizeEx(), 0);
    EXPECT_EQ(Calls(running, "f"), 200u);
    statsprof_destroy(stopped);
    statsprof_destroy(running);
    ASSERT_TRUE(WaitForTasks(tasks)) << TaskCount() << " threads, " << tasks << " before";
    EXPECT_EQ(statsprof__alloc_live(), live);
    Py_InitializeEx(0);
    ASSERT_TRUE(Py_IsInitialized());
  }
}

// Py_Finalize destroys a profiler that Python owns (a module-level
// statsprof.Profile still enabled at exit) while it clears the modules:
// Py_IsInitialized() is 0 already, but objects' destructors still run
// Python code, so events still come. Its sources are released then, as
// at any other destroy: the events after it find nothing of it (under
// ASan a read of the freed profiler fails the run; without, the stress of
// a few thousand events on freed memory).
statsprof *g_owned = nullptr;
PyObject *DestroyOwned(PyObject *, PyObject *) {
  statsprof_destroy(g_owned);
  g_owned = nullptr;
  Py_RETURN_NONE;
}
PyMethodDef kDestroyOwned = {"_destroy_owned", DestroyOwned, METH_NOARGS, nullptr};

TEST(ZzFinalize, ProfilerDestroyedWhileFinalizingReleasesItsSources) {
  const char kOwner[] = R"(
class Owner:
    def __init__(self, destroy):
        self.destroy = destroy
    def leaf(self):
        return 1
    def work(self):
        return sum(self.leaf() for i in range(2000))
    def __del__(self):
        self.work()
        self.destroy()
        self.work()
owner = Owner(_destroy_owned)
)";
  const char *configs[] = {"sink=none;interval=1h", "sink=none;interval=1h;source=setprofile",
                           "sink=none;interval=1h;builtins=off"};
  for (const char *config : configs) {
    SCOPED_TRACE(config);
    ASSERT_EQ(statsprof_create(config, &g_owned), 0);
    ASSERT_EQ(statsprof_start(g_owned), 0) << statsprof_errmsg(g_owned);
    PyObject *fn = PyCFunction_New(&kDestroyOwned, nullptr);
    ASSERT_NE(fn, nullptr);
    PyObject *main_dict = PyModule_GetDict(PyImport_AddModule("__main__"));
    ASSERT_EQ(PyDict_SetItemString(main_dict, "_destroy_owned", fn), 0);
    Py_DECREF(fn);
    ASSERT_EQ(PyRun_SimpleString(kOwner), 0);
    ASSERT_EQ(Py_FinalizeEx(), 0);
    EXPECT_EQ(g_owned, nullptr);  // Owner.__del__ ran during Py_Finalize
    Py_InitializeEx(0);
    ASSERT_TRUE(Py_IsInitialized());
  }
}

}  // namespace
