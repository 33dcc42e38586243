// alloc_test.cc — the allocator hook (statsprof_set_allocator) and what
// running out of memory does: every allocation of the library goes through
// the host's function, and failing any one of them — the Nth, for N = 0, 1,
// 2, ... until a run needs fewer — gives STATSPROF_ENOMEM with a message
// from the call that needed it (the hook's at the next snapshot or stop, a
// sink's as a logged sink error), changes nothing else, and leaks nothing.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <pthread.h>
#include <vector>

#include "pyharness.h"
#include "statsprof.h"

namespace {

// The test's allocator: counts requests and live blocks, and fails the
// request numbered fail_at (counting from 0; -1: none). Any thread.
struct Counting {
  std::atomic<long> requests{0};  // allocations and resizes
  std::atomic<long> live{0};      // blocks allocated and not yet freed
  std::atomic<long> fail_at{-1};
  std::atomic<long> failed{0};
  std::atomic<long> wrong_ud{0};
};
Counting g_alloc;

void *CountingAlloc(void *ud, void *ptr, size_t size) {
  if (ud != &g_alloc) g_alloc.wrong_ud++;
  if (size == 0) {
    if (ptr) g_alloc.live--;
    free(ptr);
    return nullptr;
  }
  long n = g_alloc.requests++;
  if (n == g_alloc.fail_at) {
    g_alloc.failed++;
    return nullptr;
  }
  void *q = realloc(ptr, size);
  if (q && !ptr) g_alloc.live++;
  return q;
}

// Installed before main(), so before the library allocates anything: the
// whole process runs on it, as a host that sets it first would.
const int g_installed = statsprof_set_allocator(CountingAlloc, &g_alloc);

bool IsOom(const char *msg) { return strstr(msg, "out of memory") != nullptr; }

// Starts counting requests anew; the request numbered n fails (-1: none).
void FailAt(long n) {
  g_alloc.fail_at = -1;
  g_alloc.requests = 0;
  g_alloc.failed = 0;
  g_alloc.fail_at = n;
}

struct OneFunctionRecord {
  statsprof_function_profile f{"f", "a.py", 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, nullptr};
  statsprof_stats_profile rec{};
  OneFunctionRecord() {
    rec.nfunc_profiles = 1;
    rec.func_profiles = &f;
  }
};

struct Log {
  std::mutex mu;
  std::vector<std::string> lines;
  bool Has(const char *what) {
    std::lock_guard<std::mutex> g(mu);
    for (const auto &l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  }
  std::string All() {
    std::lock_guard<std::mutex> g(mu);
    std::string s;
    for (const auto &l : lines) s += l + "\n";
    return s;
  }
};

void LogTo(void *ud, const char *message) {
  Log *log = static_cast<Log *>(ud);
  std::lock_guard<std::mutex> g(log->mu);
  log->lines.push_back(message);
}

const char kWork[] = R"PY(
class Box:
    def __init__(self, v):
        self.v = v

def leaf(x):
    return Box(x).v + 1

def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)

def work():
    s = 0
    for i in range(20):
        s += leaf(i)
    s += rec(5) + len(sorted([3, 1, 2]))
    return s
)PY";

// work() on a C thread of its own, attached with statsprof_attach_thread:
// its thread record, table slot and stack are made at its first call, on
// that thread, and the record is freed when it exits — before pthread_join
// returns (key destructors run first), so the counts below are exact.
struct CThread {
  statsprof *p;
  void *ns;
  int attach_rc = 0;
  std::string error;
};

void *CThreadMain(void *arg) {
  CThread *w = static_cast<CThread *>(arg);
  PyGILState_STATE g = PyGILState_Ensure();
  w->attach_rc = statsprof_attach_thread(w->p);
  if (!pyh::Call(w->ns, "work")) w->error = "work() raised on a C thread: " + pyh::TakeError() + "; ";
  PyGILState_Release(g);
  return nullptr;
}

// Returns statsprof_attach_thread's result.
int WorkOnACThread(statsprof *p, void *ns, std::string *error) {
  CThread w{p, ns};
  pthread_t t;
  Py_BEGIN_ALLOW_THREADS
  if (pthread_create(&t, nullptr, CThreadMain, &w) == 0) pthread_join(t, nullptr);
  else w.error = "pthread_create failed; ";
  Py_END_ALLOW_THREADS
  *error += w.error;
  return w.attach_rc;
}

// One run of a profiler through everything that allocates: create (config,
// table, every sink), start, the first calls of Python functions, a frame
// over budget (a spike record), a snapshot, records with per-thread
// records to every sink, stop. What each call returned, the counts of the
// snapshot, and whether anything out of memory was reported.
struct Outcome {
  std::vector<std::pair<std::string, int>> calls;  // (call, rc) of every call made
  std::string bad;                                 // a call's wrong return or message
  bool reported = false;                           // some call returned ENOMEM or a sink logged it
  pyh::CountMap counts;                            // the snapshot's
  uint64_t sink_errors = 0;
};

Outcome RunProfiler(void *ns, const std::string &config, bool c_thread = false) {
  Outcome o;
  Log log;
  pyh::RecordingSink host_sink;  // outlives the profiler: destroy closes it
  auto check = [&](const char *call, int rc, const statsprof *p) {
    o.calls.push_back({call, rc});
    if (rc >= 0) return;
    const char *msg = statsprof_errmsg(p);
    if (rc != STATSPROF_ENOMEM || !IsOom(msg))
      o.bad += std::string(call) + " returned " + statsprof_err_name(rc) + ": '" + msg + "'; ";
    o.reported = true;
  };
  statsprof *p = nullptr;
  int rc = statsprof_create(config.c_str(), &p);
  check("create", rc, nullptr);
  if (rc) {
    if (p) o.bad += "create failed but stored a profiler; ";
    return o;
  }
  statsprof_set_log(p, LogTo, &log);
  check("add_sink", pyh::AddRecordingSink(p, &host_sink), p);
  check("start", statsprof_start(p), p);
  check("frame_mark 1", statsprof_frame_mark(p), p);
  if (!pyh::Call(ns, "work")) o.bad += "work() raised: " + pyh::TakeError() + "; ";
  if (c_thread) check("attach_thread", WorkOnACThread(p, ns, &o.bad), p);
  check("frame_mark 2", statsprof_frame_mark(p), p);
  statsprof_stats_profile *s = nullptr;
  rc = statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s);
  check("snapshot", rc, p);
  if (rc == 0) o.counts = pyh::FromSnapshot(s);
  if (rc != 0 && s) o.bad += "snapshot failed but stored a record; ";
  statsprof_stats_profile_free(s);
  s = nullptr;
  rc = statsprof_snapshot_thread(p, STATSPROF_DELTA, PyThread_get_thread_ident(), &s);
  // A thread whose binding ran out of memory at every call was never seen:
  // that was reported by the snapshot above.
  if (!(rc == STATSPROF_EINVAL && o.reported)) check("snapshot_thread", rc, p);
  if (rc == 0 && !s) o.bad += "snapshot_thread stored no record; ";
  statsprof_stats_profile_free(s);
  check("emit_now", statsprof_emit_now(p), p);
  if (!pyh::Call(ns, "work")) o.bad += "work() raised: " + pyh::TakeError() + "; ";
  if (c_thread) check("attach_thread", WorkOnACThread(p, ns, &o.bad), p);
  check("stop", statsprof_stop(p), p);
  // A per-thread record that could not be made is logged (its interval's
  // record went out).
  if (log.Has("out of memory")) o.reported = true;
  o.sink_errors = statsprof_sink_errors(p);
  if (o.sink_errors) {
    if (!log.Has("out of memory")) o.bad += "sink errors without an out-of-memory log line: " + log.All();
    o.reported = true;
  }
  statsprof_destroy(p);
  return o;
}

std::string Describe(const Outcome &o) {
  std::string s;
  for (const auto &[call, rc] : o.calls) s += call + "=" + std::to_string(rc) + " ";
  return s;
}

class OutOfMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(g_installed, 0);
    ns_ = pyh::Exec(kWork, "alloc_work.py");
    dir_ = pyh::TempDir();
  }
  void TearDown() override { pyh::Release(ns_); }

  // Fails the Nth allocation for N = 0, 1, 2, ... until a run makes no
  // more than N requests; checks every run against a run that fails none.
  void FailEachAllocation(const char *label, const std::string &config, bool c_thread = false) {
    // The first start in the process calibrates, and the first profiled
    // call gives this thread its thread record (kept until it exits): both
    // happen here, once, before the baseline.
    Outcome ref = RunProfiler(ns_, config, c_thread);
    ASSERT_EQ(ref.bad, "");
    ASSERT_FALSE(ref.reported) << Describe(ref);
    ASSERT_FALSE(ref.counts.empty());
    ref = RunProfiler(ns_, config, c_thread);
    const long base = g_alloc.live;
    long n = 0, reported = 0;
    for (;; n++) {
      FailAt(n);
      Outcome o = RunProfiler(ns_, config, c_thread);
      g_alloc.fail_at = -1;
      SCOPED_TRACE("failing allocation " + std::to_string(n) + ": " + Describe(o));
      EXPECT_EQ(o.bad, "");
      EXPECT_EQ(g_alloc.live, base) << "blocks leaked (or freed twice) after destroy";
      if (!g_alloc.failed) {
        EXPECT_FALSE(o.reported);
        EXPECT_EQ(pyh::Diff(ref.counts, o.counts), "");
        break;
      }
      // A failure is reported, or costs nothing: the counts are exact.
      if (o.reported) reported++;
      else EXPECT_EQ(pyh::Diff(ref.counts, o.counts), "") << "a failed allocation went unreported";
      if (HasFailure()) break;
    }
    EXPECT_EQ(g_alloc.wrong_ud, 0);
    // Every step above allocates: many allocations, most of them reported.
    EXPECT_GT(n, 50);
    EXPECT_GT(reported, n / 2);
    std::printf("%s: %ld allocations failed one at a time, %ld reported as out of memory\n", label, n, reported);
  }

  void *ns_ = nullptr;
  std::string dir_;
};

TEST(Allocator, EveryAllocationOfARunGoesThroughTheHostsFunction) {
  ASSERT_EQ(g_installed, 0);
  void *ns = pyh::Exec(kWork, "alloc_work.py");
  long live = g_alloc.live, requests = g_alloc.requests;
  std::string dir = pyh::TempDir();
  Outcome o = RunProfiler(ns, "writer=sync;sink=jsonl:" + dir + "/a.jsonl;sink=pstats:" + dir + "/p");
  EXPECT_EQ(o.bad, "");
  EXPECT_GT(g_alloc.requests - requests, 20);
  // The thread's own record stays (one block) until the thread exits, and
  // so does its per-thread state's stack (hook.c's grave: CPython may
  // still hold the state), which the next profiler on this thread reuses.
  EXPECT_LE(g_alloc.live - live, 2);
  EXPECT_EQ(g_alloc.wrong_ud, 0);
  pyh::Release(ns);
}

TEST(Allocator, CannotChangeWhileItsMemoryIsInUse) {
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  EXPECT_EQ(statsprof_set_allocator(nullptr, nullptr), STATSPROF_ESTATE);
  statsprof_stats_profile *s = nullptr;
  ASSERT_EQ(statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s), 0);
  statsprof_destroy(p);
  // The record outlives its profiler and still needs the allocator that made it.
  EXPECT_EQ(statsprof_set_allocator(nullptr, nullptr), STATSPROF_ESTATE);
  statsprof_stats_profile_free(s);
  // This thread's record (made by earlier tests' profiled calls, or by
  // naming it) lives until the thread exits.
  ASSERT_EQ(statsprof_name_thread("main"), 0);
  EXPECT_EQ(statsprof_set_allocator(nullptr, nullptr), STATSPROF_ESTATE);
  EXPECT_EQ(statsprof_name_thread(nullptr), 0);
}

TEST(Allocator, FormattedBuffersAreFreedWithStatsprofFree) {
  OneFunctionRecord r;
  const statsprof_stats_profile &rec = r.rec;
  for (auto format : {statsprof_format_jsonl, statsprof_format_jsonl_rows}) {
    long live = g_alloc.live;
    char *out = nullptr;
    size_t len = 0;
    ASSERT_EQ(format(&rec, &out, &len), 0);
    EXPECT_EQ(g_alloc.live, live + 1);
    EXPECT_NE(std::string(out, len).find("a.py:1(f)"), std::string::npos);
    statsprof_free(out);
    EXPECT_EQ(g_alloc.live, live);
  }
  statsprof_free(nullptr);
}

TEST(Allocator, FormattingOutOfMemoryIsEnomem) {
  OneFunctionRecord r;
  const statsprof_stats_profile &rec = r.rec;
  for (auto format : {statsprof_format_jsonl, statsprof_format_jsonl_rows}) {
    long live = g_alloc.live;
    for (long n = 0;; n++) {
      FailAt(n);
      char *out = nullptr;
      size_t len = 0;
      int rc = format(&rec, &out, &len);
      g_alloc.fail_at = -1;
      statsprof_free(out);
      ASSERT_EQ(g_alloc.live, live) << "failing allocation " << n;
      if (!g_alloc.failed) {
        EXPECT_EQ(rc, 0);
        break;
      }
      EXPECT_EQ(rc, STATSPROF_ENOMEM) << "failing allocation " << n;
      EXPECT_EQ(out, nullptr);
    }
  }
}

TEST(Allocator, NameThreadOutOfMemoryIsEnomemAndKeepsTheOldName) {
  ASSERT_EQ(statsprof_name_thread("old"), 0);
  FailAt(0);
  EXPECT_EQ(statsprof_name_thread("new"), STATSPROF_ENOMEM);
  g_alloc.fail_at = -1;
  EXPECT_EQ(g_alloc.failed, 1);
  EXPECT_TRUE(IsOom(statsprof_errmsg(nullptr))) << statsprof_errmsg(nullptr);
  EXPECT_EQ(statsprof_name_thread(nullptr), 0);
}

TEST_F(OutOfMemory, EveryFailedAllocationIsReportedOrHarmlessAndNothingLeaks) {
  FailEachAllocation("sync writers, every sink", "writer=sync;interval=1h;per_thread=on;budget=1ns;max_spikes_per_min=100000;sink=jsonl:" +
                     dir_ + "/r.jsonl;sink=jsonl:" + dir_ + "/rows.jsonl,layout=rows;sink=pstats:" + dir_ +
                     "/pstats;sink=callgrind:" + dir_ + "/cg;sink=stderr:3");
}

TEST_F(OutOfMemory, WithWriterThreadsToo) {
  // Sinks format on their own threads here: which request fails varies
  // from run to run, but each is reported and nothing leaks.
  FailEachAllocation("writer threads", "interval=1h;sink=jsonl:" + dir_ + "/t.jsonl;sink=callgrind:" + dir_ + "/cg");
}

// The first start for a clock measures the profiler's own cost on scratch
// profilers (calibrate.c); out of memory there fails that start, caches
// nothing, and the next start measures again. clock=cpu: no other test here
// starts one, so its measurement happens inside this loop. A measurement
// takes a third of a second and allocates about 250 times: every 13th
// allocation fails (the first eight each), which still fails each of the
// scratch profilers' kinds of allocation.
TEST(OutOfMemoryCalibrating, FailsTheStartAndIsMeasuredAgainNextTime) {
  const long base = g_alloc.live;
  long n = 0, start_failed = 0;
  for (;; n += n < 8 ? 1 : 13) {
    statsprof *p = nullptr;
    FailAt(n);
    int rc = statsprof_create("sink=none;clock=cpu", &p);
    int start = rc ? 0 : statsprof_start(p);
    std::string msg = rc ? statsprof_errmsg(nullptr) : statsprof_errmsg(p);
    int stop = rc ? 0 : statsprof_stop(p);
    if (stop) msg = statsprof_errmsg(p);
    statsprof_destroy(p);
    g_alloc.fail_at = -1;
    SCOPED_TRACE("failing allocation " + std::to_string(n) + ": " + msg);
    EXPECT_EQ(g_alloc.live, base);
    EXPECT_TRUE(rc == 0 || rc == STATSPROF_ENOMEM);
    EXPECT_TRUE(start == 0 || start == STATSPROF_ENOMEM);
    EXPECT_TRUE(stop == 0 || stop == STATSPROF_ENOMEM);
    if (rc || start || stop) {
      EXPECT_TRUE(IsOom(msg.c_str()));
    }
    if (start == STATSPROF_ENOMEM && msg.find("measuring the profiler's own cost") != std::string::npos)
      start_failed++;
    if (!g_alloc.failed) {
      EXPECT_EQ(rc | start | stop, 0);
      break;
    }
    if (HasFailure()) break;
  }
  // Calibration allocates on each of its scratch profilers: many starts
  // failed there, each measured again at the next.
  EXPECT_GT(start_failed, 10);
  std::printf("calibration: failing allocations up to %ld, %ld of them failed the start\n", n, start_failed);
}

TEST_F(OutOfMemory, InANewThreadsFirstCalls) {
  FailEachAllocation("new C threads", "writer=sync;interval=1h;per_thread=on;sink=jsonl:" + dir_ + "/th.jsonl",
                     true);
}

// statsprof_tick returns 1 whenever its record went out, <0 only when no
// record could be taken: a per-thread record that ran out of memory made
// a tick that had emitted its merged record return STATSPROF_ENOMEM. Each
// allocation of a tick with per-thread records fails in turn.
TEST(OutOfMemoryTicking, ATickThatEmittedItsRecordReturnsOneAndLogsAMissingThreadRecord) {
  ASSERT_EQ(g_installed, 0);
  void *ns = pyh::Exec(kWork, "alloc_tick.py");
  long n = 0, thread_missing = 0;
  for (;; n++) {
    Log log;
    pyh::RecordingSink sink;
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create("sink=none;writer=sync;interval=0s;per_thread=on", &p), 0);
    statsprof_set_log(p, LogTo, &log);
    ASSERT_EQ(pyh::AddRecordingSink(p, &sink), 0);
    ASSERT_EQ(statsprof_start(p), 0);
    ASSERT_TRUE(pyh::Call(ns, "work"));
    FailAt(n);
    int rc = statsprof_tick(p);
    g_alloc.fail_at = -1;
    bool failed = g_alloc.failed != 0;
    size_t deltas = 0, threads = 0;
    for (const auto &r : sink.records) {
      deltas += r.kind == STATSPROF_RECORD_DELTA;
      threads += r.kind == STATSPROF_RECORD_THREAD;
    }
    SCOPED_TRACE("failing allocation " + std::to_string(n) + ": tick returned " + std::to_string(rc));
    if (deltas) EXPECT_EQ(rc, 1) << statsprof_errmsg(p);
    else EXPECT_EQ(rc, STATSPROF_ENOMEM);
    if (deltas && !threads) {
      thread_missing++;
      EXPECT_TRUE(log.Has("a thread's record is missing: out of memory")) << log.All();
    }
    statsprof_destroy(p);
    if (!failed || HasFailure()) break;
  }
  EXPECT_GT(thread_missing, 0);  // some failures hit only the thread record
  pyh::Release(ns);
}

// Nothing in lib/ allocates but through lib/alloc.c: a raw malloc would
// bypass the host's allocator and the tests above.
TEST(Allocator, NoRawAllocationInTheLibrary) {
  const char *root = getenv("STATSPROF_SOURCE_DIR");
  std::string lib = std::string(root ? root : ".") + "/lib";
  std::vector<std::string> files;
  for (const char *sub : {"", "/sinks"}) {
    DIR *d = opendir((lib + sub).c_str());
    ASSERT_NE(d, nullptr) << lib + sub << ": " << strerror(errno)
                          << " (Bazel: //:lib_sources in data; ctest: STATSPROF_SOURCE_DIR)";
    while (dirent *e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 2 && (n.substr(n.size() - 2) == ".c" || n.substr(n.size() - 2) == ".h"))
        files.push_back(lib + sub + "/" + n);
    }
    closedir(d);
  }
  ASSERT_GT(files.size(), 20u);
  const std::regex raw(
      R"((^|[^A-Za-z0-9_.>])(malloc|calloc|realloc|free|strdup|strndup|aligned_alloc|posix_memalign|asprintf|vasprintf|PyMem_Raw[A-Za-z]*)\s*\()");
  std::string found;
  bool saw_alloc_c = false;
  for (const auto &f : files) {
    if (f.size() >= 8 && f.substr(f.size() - 8) == "/alloc.c") {
      saw_alloc_c = true;
      continue;
    }
    std::ifstream in(f);
    std::string line;
    for (int no = 1; std::getline(in, line); no++) {
      size_t c = line.find("//");
      std::string code = line.substr(0, c);
      if (code.find_first_not_of(" \t") != std::string::npos && code[code.find_first_not_of(" \t")] == '*')
        continue;  // a comment's continuation line
      if (std::regex_search(code, raw)) found += f + ":" + std::to_string(no) + ": " + line + "\n";
    }
  }
  EXPECT_TRUE(saw_alloc_c);
  EXPECT_EQ(found, "") << "allocate through statsprof__malloc & co. (lib/alloc.h)";
}

}  // namespace
