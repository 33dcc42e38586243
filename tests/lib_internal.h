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

}  // namespace pyh
