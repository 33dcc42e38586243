// pyharness.h — embeds CPython in a GoogleTest binary and compares
// statsprof's counts with cProfile's on the same Python code.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "statsprof.h"

namespace pyh {

// Runs `code` in a fresh module namespace compiled as `filename`; returns the
// namespace dict (new reference as an opaque pointer) or fails the test.
void *Exec(const std::string &code, const std::string &filename = "<test>");
// Calls ns[name]() and returns true when it did not raise.
bool Call(void *ns, const char *name);
void Release(void *ns);
// The Python error text, and clears it.
std::string TakeError();

struct SnapDeleter {
  void operator()(statsprof_stats_profile *s) const { statsprof_stats_profile_free(s); }
};
using Snap = std::unique_ptr<statsprof_stats_profile, SnapDeleter>;

Snap Snapshot(statsprof *p, statsprof_snapshot_mode mode);
// The one function named `name` (fails the test if several match).
const statsprof_function_profile *Find(const statsprof_stats_profile *s, const std::string &name);
const statsprof_caller_profile *FindCaller(const statsprof_function_profile *f, const std::string &name);

// "file:line(name)" -> (total calls, primitive calls) plus the same per caller.
struct Counts {
  uint64_t nc = 0, cc = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> callers;
  bool operator==(const Counts &o) const { return nc == o.nc && cc == o.cc && callers == o.callers; }
};
using CountMap = std::map<std::string, Counts>;

CountMap FromSnapshot(const statsprof_stats_profile *s);
// True when STATSPROF_TEST_BUILTINS=off (the *_builtins_off test targets):
// the parity runs below then profile Python functions only, on both sides.
// Any other value of the variable fails the test.
bool BuiltinsOff();
// Runs ns[fn]() under cProfile.Profile and returns its stats, without
// cProfile's own enable/disable entries. builtins=True, or builtins=False
// when BuiltinsOff(); `builtins` 0 or 1 says which instead.
CountMap CProfileRun(void *ns, const char *fn, int builtins = -1);
// Whether source=evalframe must run here: whether the library's self-check
// must find that every Python frame goes through the frame-evaluation
// function on this patch level (the running libpython's Py_Version).
bool EvalFrameRuns();
// Whether builtins=off runs it by default (source=auto): where it runs on
// 3.11 (3.12+ keeps sys.monitoring: lib/profiler.c says why).
bool EvalFrameIsDefault();
// Expects forcing source=evalframe (and builtins=off, unless `config` sets
// builtins) on top of `config`
// to fail as README documents: a start error that names this version and
// what the self-check saw (and gh-104405 before 3.11.4).
void ExpectEvalFrameRefused(const std::string &config);
// Runs ns[fn]() under a fresh statsprof (sink=none) and returns its stats.
// With this_thread_only, only the calling thread's counts (as cProfile).
// STATSPROF_TEST_SOURCE=NAME adds source=NAME to the config (evalframe
// where !EvalFrameRuns(): ExpectEvalFrameRefused, then the default source;
// monitoring before 3.12: the config error, then the default source), and
// BuiltinsOff() adds builtins=off unless the config sets builtins itself.
CountMap StatsprofRun(void *ns, const char *fn, const char *config = "sink=none",
                      bool this_thread_only = false);
// The first C function entry ("~:0(...)") in `m`, or "" when it has none.
std::string FirstCFunction(const CountMap &m);
// Describes differences (empty when equal).
std::string Diff(const CountMap &want, const CountMap &got);

// Reads a whole file.
std::string ReadFile(const std::string &path);
// A fresh temporary directory for this test.
std::string TempDir();

}  // namespace pyh

// ---- Helpers for the config/snapshot/sink/lifecycle suites ---------------
#include <vector>

namespace pyh {

// Python code the hook runs, calling into the profiler: run() calls
// list.append on a list subclass that shadows append with a Python
// attribute, and cProfile (so statsprof) labels that C method with the
// attribute's repr, "<shadowed append>". That repr, run at the hook's first
// sight of the method, stops and then destroys calls->p (once) and keeps
// stop's result in calls->stop_rc. f() is a plain function. Returns the
// namespace, as Exec; `calls` must outlive it.
struct CallsFromTheHook {
  statsprof *p = nullptr;
  int stop_rc = -100;  // not called yet
};
void *ExecShadowedAppend(CallsFromTheHook *calls, const std::string &filename);

// Runs `code` in a fresh namespace where each vars[k] is bound to a str;
// returns "" when it ran without raising, else the Python error text.
std::string RunPy(const std::string &code, const std::map<std::string, std::string> &vars = {});

// ncalls of the one function named `name` in a cumulative snapshot, 0 when
// it has none.
uint64_t Calls(statsprof *p, const std::string &name);
// Python code for RunPy that raises unless statsprof receives no events on
// any thread (no profile function, no sys.monitoring events, no
// frame-evaluation function, no threading.setprofile) -- kNoHook -- or
// receives them on this one (kHook).
extern const char kNoHook[];
extern const char kHook[];

// One record as a host sink received it (copied: records are only lent).
struct Record {
  uint64_t seq = 0;
  statsprof_snapshot_mode mode = STATSPROF_DELTA;
  statsprof_record_kind kind = STATSPROF_RECORD_DELTA;
  int64_t start_ns = 0, end_ns = 0;
  uint64_t overflow_functions = 0;
  uint64_t sink_errors = 0, dropped = 0; // as carried by the record
  uint64_t thread_id = 0;
  CountMap counts;                               // "file:line(name)" -> counts
  std::map<std::string, uint64_t> calls_by_name; // function_name -> ncalls
};

// A host sink that keeps every record; emit returns `fail` (0 = success).
// emit runs on the sink's writer thread: call statsprof_flush (or stop /
// destroy) before reading the fields from the test's thread.
struct RecordingSink {
  std::vector<Record> records;
  int fail = 0;
  int emits = 0, flushes = 0, closes = 0;
};
// statsprof_add_sink with the recording ops and `sink` as ctx.
int AddRecordingSink(statsprof *p, RecordingSink *sink);
const statsprof_sink_ops *RecordingSinkOps();

// CLOCK_REALTIME in ns since the epoch, as the records' start_ns/end_ns.
int64_t WallNs();

// A JSON-lines file read back with Python's json: its complete lines, the
// ones that do not parse as a JSON object, the bytes after the last newline
// (a cut line), and (pid, seq) of each line that has both (lines with a
// "filler" key are a test's own and skipped).
struct JsonlFile {
  long lines = -1, bad = -1, tail = -1;
  std::vector<std::pair<long long, long long>> ids;
  std::string error;  // the Python error, if reading failed
};
JsonlFile ReadJsonl(const std::string &path);

// Runs `fn` with fd 2 redirected into a file; returns what was written.
std::string CaptureStderr(const std::function<void()> &fn);

// A log function for statsprof_set_log that keeps every message (called
// from any thread). Set `dead` once the profiler is destroyed: a log call
// after that (counted in after_death) would be a use after free in a host.
struct LogLines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::atomic<bool> dead{false};
  std::atomic<int> after_death{0};
  static void Fn(void *ud, const char *msg) {
    LogLines *l = static_cast<LogLines *>(ud);
    if (l->dead) l->after_death++;
    std::lock_guard<std::mutex> g(l->mu);
    l->lines.push_back(msg);
  }
  std::string All() {
    std::lock_guard<std::mutex> g(mu);
    std::string all;
    for (const std::string &s : lines) all += "  " + s + "\n";
    return all;
  }
  bool Has(const std::string &needle) {
    std::lock_guard<std::mutex> g(mu);
    for (const std::string &l : lines)
      if (l.find(needle) != std::string::npos) return true;
    return false;
  }
};

}  // namespace pyh
