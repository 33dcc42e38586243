// lib_internal.h — lib/internal.h for the C++ tests that call the library's
// internal functions (linked statically, see tests/BUILD), so they use the
// library's own declarations and a changed signature fails to compile
// instead of drifting from a copy declared here by hand.
//
// lib/internal.h is C11. The one C11 name it uses that C++17 lacks is
// atomic_ullong: std::atomic<unsigned long long> has the same size,
// alignment and representation (C++23 <stdatomic.h> makes them the same
// type), and the tests never touch those fields anyway.
#pragma once

#include <Python.h>

#include <atomic>
#include <string>

typedef std::atomic<unsigned long long> atomic_ullong;

extern "C" {
#include "lib/internal.h"
}

namespace pyh {

// Opens the built-in or registered sink `name` through the registry, as a
// config string's sink=NAME:ARG does; for tests that hand a sink records
// they built themselves.
inline int OpenSink(const char *name, const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                    size_t errlen) {
  statsprof__sink_spec spec = {const_cast<char *>(name), const_cast<char *>(arg), 0, 0};
  return statsprof__sink_open(&spec, ops, ctx, err, errlen);
}

// Opens sink `name` on arg, hands it rec once and closes it: "" on success,
// else what failed.
inline std::string EmitOnce(const char *name, const std::string &arg, const statsprof_stats_profile &rec) {
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  if (OpenSink(name, arg.c_str(), &ops, &ctx, err, sizeof err) != 0) return std::string("open: ") + err;
  int rc = ops->emit(ctx, &rec);
  ops->close(ctx);
  return rc ? "emit: " + std::string(statsprof_strerror(rc)) : "";
}

// A record of one function, "f" of a.py, as seq 1 of pid 7.
struct OneFunctionRecord {
  statsprof_function_profile f = {"f", "a.py", 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, nullptr};
  statsprof_stats_profile rec = {};
  OneFunctionRecord() {
    rec.nfunc_profiles = 1;
    rec.func_profiles = &f;
    rec.seq = 1;
    rec.pid = 7;
  }
  OneFunctionRecord(const OneFunctionRecord &) = delete;
};

}  // namespace pyh
