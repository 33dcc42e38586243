// threadstate_stress_test.cc — runs each stress_host scenario in a
// subprocess, several times, and asserts that it exited 0: a crash
// (SIGSEGV, an abort from a corrupted heap) or a hang (killed after a
// generous bound) is the failure. CPython is not instrumented, so the
// sanitizers cannot see these races: the crash itself is the assertion.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sanitizers.h"

extern char **environ;

namespace {

std::string HostPath() {
  const char *srcdir = getenv("TEST_SRCDIR");
  const char *ws = getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/tests/stress_host";
  const char *env = getenv("STATSPROF_STRESS_HOST");
  return env ? env : "tests/stress_host";
}

// Built with ASan or TSan (dev/sanitize), a scenario runs 2-5x slower, and
// a bad access in the library is reported where it happens rather than
// when it finally crashes: the longest scenarios run once there (their
// iterations unchanged), every run in the plain builds, which CI runs on
// all six CPythons. (On 3.11.2 they took 150 of the test's 257 s under
// ASan and 110 of its 196 s under TSan; CI runs it under a sanitizer five
// times.)
constexpr bool kSanitized = sanitizers::kAny;

int Runs(int plain, int sanitized) { return kSanitized ? sanitized : plain; }

// Runs stress_host SCENARIO ITERATIONS; returns a description of how it
// ended: "exit 0" is success. A run that takes over `limit_s` is killed
// (a hang): no run of a healthy build comes near it. Under TSan one run
// of the Python-thread churn took from 17 to 87 s in CI's runs of the same
// code, so the bound is wider under the sanitizers.
std::string RunOnce(const std::string &scenario, int iterations, int limit_s = kSanitized ? 300 : 120) {
  std::string host = HostPath(), iters = std::to_string(iterations);
  std::vector<char *> argv = {host.data(), const_cast<char *>(scenario.c_str()), iters.data(), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, host.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return "spawn failed: " + host;
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 10) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (waited_ms > limit_s * 1000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return "hung (killed after " + std::to_string(limit_s) + " s)";
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "exit " + std::to_string(WEXITSTATUS(status));
}

void ExpectClean(const std::string &scenario, int runs, int iterations) {
  for (int i = 0; i < runs; i++) {
    std::string how = RunOnce(scenario, iterations);
    ASSERT_EQ(how, "exit 0") << scenario << ", run " << i + 1 << " of " << runs;
  }
}

// Four C threads: PyGILState_Ensure, three Python calls, Release, 3000
// times each, while the main thread cuts a record every millisecond. The
// old code walked the thread-state list without CPython's lock and met a
// half-made state: SIGSEGV within the first 3 runs (issue 11 item 1).
TEST(ThreadStateStress, CThreadsEnterAndLeaveWhileRecordsAreCut) { ExpectClean("ensure", 5, 3000); }

// The same on source=setprofile, whose every record walks the list (on
// 3.12+ too, where the default source needs no walk): the walk read the
// list's head without CPython's lock while a worker's PyGILState_Ensure
// linked a new state, which TSan reported on 3.13 (CI runs this test under
// TSan there).
TEST(ThreadStateStress, CThreadsEnterAndLeaveWhileTheSetprofileWalkRuns) {
  ExpectClean("ensure-setprofile", Runs(5, 2), 3000);
}

// The same with statsprof_attach_thread after each Ensure: every call is
// counted exactly (the scenario checks 4 x 3000 x 3 calls). Old code: SIGSEGV
// in the first run.
TEST(ThreadStateStress, CThreadsThatAttachAreCountedExactly) { ExpectClean("ensure-attach", 5, 3000); }

// The same with trigger=timer: records are cut on the timer's thread. Old
// code: SIGSEGV within 2 runs.
TEST(ThreadStateStress, CThreadsWhileTheTimerCutsRecords) { ExpectClean("ensure-timer", 5, 3000); }

// Python threads started (8 at a time, 2000 batches) while records are cut
// on the timer's thread: the old attach looked up Thread.name (Python code)
// between choosing a thread state and installing the hook, the GIL
// switched, the thread exited and its freed state was written. Old code:
// SIGSEGV in the first run. The scenario checks every call was counted.
// (Attaching from tick between batches passed on the old code too; it
// stays as the same check on the tick path.)
TEST(ThreadStateStress, PythonThreadsStartAndExitWhileTheTimerAttaches) {
  ExpectClean("churn-timer", Runs(3, 1), 2000);
}
TEST(ThreadStateStress, PythonThreadsStartAndExitWhileTickAttaches) { ExpectClean("churn", Runs(3, 1), 2000); }

// A signal handler (every 200 us) calling enable()/disable() while the
// first enable() of the process calibrates: the old code freed a per-thread
// stack under the running calibration and corrupted the heap (abort or
// SIGSEGV in the first run). Calibration happens once per process: many runs.
TEST(ThreadStateStress, SignalHandlerStartsAndStopsDuringCalibration) { ExpectClean("signal", 20, 1); }

// fork() 200 times with trigger=timer, each child calling and stopping: the
// old child inherited the timer's condition variable mid-wait and about 1 in
// 4 children hung in stop/destroy; it also kept the parent's counts (the
// scenario checks the child counts exactly its own 3 calls).
TEST(ThreadStateStress, ForkWithTimerChildStartsAfreshAndStops) { ExpectClean("fork-timer", 3, 200); }

// A prefork server: profiler enabled (timer) in the parent, a worker forked
// that serves 4 x 500 requests from C threads (Ensure/attach/Release per
// request), names its threads half through statsprof_name_thread, half
// through threading. The child must count exactly 2000 handler calls, name
// all four threads in thread snapshots, and exit; the parent keeps its 7.
// Old code: the child counted the parent's calls too and named none.
TEST(ThreadStateStress, PreforkWorkerCountsAndNamesItsOwnThreads) { ExpectClean("prefork", 10, 1); }

// per_thread=on with 2000 short-lived threads (8 at a time) and a record
// after every batch: each interval's thread records add up to its merged
// record, every call is counted, and the table holds a slot per live thread
// (ended threads fold into one retired slot), not one per thread ever seen;
// 81 threads active at once give 64 thread records and threads_omitted 17.
TEST(ThreadStateStress, ThreadRecordsAreBoundedByLiveThreads) { ExpectClean("thread-records", 2, 250); }

// builtins=off (on 3.11.4+: the frame-evaluation source, which every thread
// runs through; elsewhere the default source): 300 profilers created,
// started, stopped and destroyed on the main thread while two Python threads
// and two C threads (PyGILState_Ensure, no attach) run Python throughout, so
// that evaluations entered under one run return after its stop, after its
// profiler is freed, or in the next run. Each run counts exactly the main
// thread's 30 leaf calls. "-duty": production-mode windows open and close
// on every tick as well.
TEST(ThreadStateStress, StartAndStopWhileOtherThreadsRunPython) { ExpectClean("startstop", Runs(3, 1), 300); }
TEST(ThreadStateStress, WindowsOpenAndCloseWhileOtherThreadsRunPython) {
  ExpectClean("startstop-duty", Runs(3, 1), 300);
}
// The same with the frame-evaluation source forced (on 3.12+ it is not
// builtins=off's default; on 3.11.0-3.11.3 the start must be refused).
TEST(ThreadStateStress, EvalFrameStartsAndStopsWhileOtherThreadsRunPython) {
  ExpectClean("startstop-ef", Runs(2, 1), 100);
}
TEST(ThreadStateStress, EvalFrameWindowsOpenAndCloseWhileOtherThreadsRunPython) {
  ExpectClean("startstop-ef-duty", Runs(2, 1), 100);
}
// Frame markers while the timer's records wait for room in a stalling
// sink's queue (GIL released), two Python threads running: 15 profilers,
// 100 marks each. Every frame counted once in the records, every reported
// spike delivered in frame order. Marks inside the timer's record used to
// be skipped: the records lost those frames.
TEST(ThreadStateStress, FramesMarkedWhileTheTimersRecordsWaitForASlowSink) {
  ExpectClean("frames-stall", Runs(2, 1), 15);
}
// Py_Finalize's last garbage collection, after sys.modules is gone, runs
// __del__ methods that reach functions new to a thread the host named,
// under a profiler left running: looking for the thread's name in
// sys.modules there aborted the host ("Fatal Python error:
// PyImport_GetModuleDict"), on every source.
TEST(ThreadStateStress, PyFinalizesLastCollectionRunsUnderTheProfiler) {
  for (const char *variant : {"finalize-gc", "finalize-gc-setprofile", "finalize-gc-off"}) ExpectClean(variant, 2, 1);
}
// Once a sub-interpreter has existed, CPython's PyGILState_Check answers 1
// on every thread: statsprof_flush without the GIL, while a slow sink
// works, then released a GIL it did not hold (fatal on 3.11 and 3.12, a
// crash on 3.13).
TEST(ThreadStateStress, FlushWithoutTheGilAfterASubInterpreterExisted) { ExpectClean("subinterp-flush", 2, 20); }
// A trigger=timer profiler destroyed in a forked child by an after_in_child
// handler that runs before statsprof's (its timer not yet back): its atexit
// handler stayed registered, pointing into the freed profiler.
TEST(ThreadStateStress, DestroyedInAForkedChildBeforeItsTimerCameBack) { ExpectClean("fork-destroy", 1, 5); }
// A thread names itself and registers a sink in a tight loop while another
// forks: a child forked while the name lock or the registry's lock was held
// hung at its first name or sink (old code: within the first few hundred
// forks, for either lock).
TEST(ThreadStateStress, ForkWhileAnotherThreadNamesItself) { ExpectClean("fork-name", 1, Runs(2000, 300)); }
// A Python thread forks while the main thread's first start calibrates
// (its loops let the GIL go); each child stops the parent's profiler and
// starts one of its own. Old code: the child's copy stayed busy for good
// (ESTATE) and calibration stayed marked as running ("another profiler is
// calibrating ... signal handler?"). "-parallel": the forking thread starts
// a profiler of its own meanwhile, which used to fail that way too and now
// waits for the other thread's calibration.
TEST(ThreadStateStress, ForkDuringAFirstStartsCalibration) {
  ExpectClean("fork-calibrate", Runs(3, 1), 1);
  ExpectClean("fork-calibrate-parallel", Runs(3, 1), 1);
}
// A finalizer destroys the running profiler while CPython allocates the
// frame object for a call it is about to pass to the hook, with the state
// it already read (3.11): destroy freed that state (ASan: heap-use-after-
// free in statsprof__hook, in the first run); it is kept for its thread now.
TEST(ThreadStateStress, DestroyedByAFinalizerDuringTheHooksFrameAllocation) {
  ExpectClean("gc-destroy", Runs(2, 1), 200);
  ExpectClean("gc-destroy-setprofile", Runs(2, 1), 200);
}
// A finalizer destroys a stopped profiler while sys._current_frames() holds
// CPython's thread-state lock (its frame objects' allocation collects):
// destroy's check of its pooled states against the thread states took that
// lock again and hung for good.
TEST(ThreadStateStress, DestroyedByAFinalizerUnderTheThreadStateLock) {
  ExpectClean("frames-lock-destroy", Runs(2, 1), 100);
}
// A signal handler forks on the calibrating thread itself, up to 8 times
// during a first start: each child goes on with the calibration and then
// starts another profiler. Old code: the child's scratch profiler was freed
// twice (SIGSEGV in the first runs).
TEST(ThreadStateStress, ForkOnTheCalibratingThreadItself) { ExpectClean("fork-in-calibration", Runs(3, 1), 1); }
}  // namespace
