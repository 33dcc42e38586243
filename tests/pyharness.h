// pyharness.h — embeds CPython in a GoogleTest binary and compares
// statsprof's counts with cProfile's on the same Python code.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

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
// Runs ns[fn]() under cProfile.Profile (builtins on) and returns its stats,
// without cProfile's own enable/disable entries.
CountMap CProfileRun(void *ns, const char *fn);
// Runs ns[fn]() under a fresh statsprof (sink=none) and returns its stats.
CountMap StatsprofRun(void *ns, const char *fn, const char *config = "sink=none");
// Describes differences (empty when equal).
std::string Diff(const CountMap &want, const CountMap &got);

// Reads a whole file.
std::string ReadFile(const std::string &path);
// A fresh temporary directory for this test.
std::string TempDir();

}  // namespace pyh
