// source_monitoring_test.cc — the sys.monitoring source's callback objects
// outside the run that made them. Python can keep them
// (sys.monitoring.register_callback returns the one it replaces) and call
// them after statsprof_destroy: they must do nothing, not read the freed
// profiler. So that a callback that still read it would fail here, not
// just under ASan, this binary's allocator fills every freed block with
// 0xA5 and never reuses it: a freed profiler reads as events on, with
// garbage pointers. On 3.11 (no sys.monitoring) the test checks that no
// callback exists.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#include "pyharness.h"

namespace {

// Freed blocks, poisoned, held until exit (reachable: no leak report).
std::mutex g_mu;
std::vector<void *> *g_freed;

constexpr size_t kHeader = 16;  // the block's size, keeping malloc's alignment

void *PoisoningAlloc(void *, void *ptr, size_t size) {
  if (size == 0) {
    char *h = static_cast<char *>(ptr) - kHeader;
    memset(ptr, 0xA5, *reinterpret_cast<size_t *>(h));
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_freed) g_freed = new std::vector<void *>;
    g_freed->push_back(h);
    return nullptr;
  }
  char *h = static_cast<char *>(realloc(ptr ? static_cast<char *>(ptr) - kHeader : nullptr, size + kHeader));
  if (!h) return nullptr;
  *reinterpret_cast<size_t *>(h) = size;
  return h + kHeader;
}

// Before main(), so before the library allocates anything.
const int g_installed = statsprof_set_allocator(PoisoningAlloc, nullptr);

const char kCode[] = R"(
import sys
def leaf(x): return x + 1
def main():
    t = 0
    for i in range(10): t += leaf(i)
    return t
kept = []
NAMES = ('PY_START', 'PY_RESUME', 'PY_THROW', 'PY_RETURN', 'PY_YIELD', 'PY_UNWIND', 'CALL', 'C_RETURN', 'C_RAISE')
def grab():
    m = getattr(sys, 'monitoring', None)
    for tool in ((3, 4) if m else ()):
        if m.get_tool(tool) != 'statsprof':
            continue
        for name in NAMES:
            ev = getattr(m.events, name)
            cb = m.register_callback(tool, ev, None)
            m.register_callback(tool, ev, cb)
            if cb is not None:
                kept.append((name, cb))
    return len(kept)
def call_kept():
    # Each with the arguments CPython passes for its event.
    if not kept:
        return 0
    code, m = leaf.__code__, sys.monitoring
    args = {'PY_START': (code, 0), 'PY_RESUME': (code, 0), 'PY_THROW': (code, 0, ValueError()),
            'PY_RETURN': (code, 0, None), 'PY_YIELD': (code, 0, None), 'PY_UNWIND': (code, 0, ValueError()),
            'CALL': (code, 0, len, m.MISSING), 'C_RETURN': (code, 0, len, m.MISSING),
            'C_RAISE': (code, 0, len, m.MISSING, ValueError())}
    for _ in range(3):
        for name, cb in kept:
            if cb(*args[name]) is not None:
                raise AssertionError(name)
    return 0
)";

long CallLong(void *ns, const char *fn) {
  PyObject *r = PyObject_CallFunction(PyDict_GetItemString(static_cast<PyObject *>(ns), fn), nullptr);
  EXPECT_NE(r, nullptr) << fn << ": " << pyh::TakeError();
  long v = r ? PyLong_AsLong(r) : -1;
  Py_XDECREF(r);
  return v;
}

statsprof *Started() {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create("sink=none", &p), 0) << statsprof_errmsg(nullptr);
  if (p) EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  return p;
}

TEST(Monitoring, CallbacksPythonKeptDoNothingAfterDestroy) {
  ASSERT_EQ(g_installed, 0);
  void *ns = pyh::Exec(kCode);
  statsprof *first = Started();
  ASSERT_NE(first, nullptr);
  // The default source: sys.monitoring on 3.12+, one callback per event.
  EXPECT_EQ(CallLong(ns, "grab"), PY_VERSION_HEX >= 0x030C0000 ? 9 : 0);
  statsprof_destroy(first);

  // No profiler at all, then another profiler on the same tool id: the old
  // callbacks count nothing into it (leaf 10 calls, from main alone).
  EXPECT_EQ(CallLong(ns, "call_kept"), 0);
  statsprof *second = Started();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(CallLong(ns, "call_kept"), 0);
  EXPECT_EQ(CallLong(ns, "main"), 55);
  EXPECT_EQ(CallLong(ns, "call_kept"), 0);
  statsprof_stop(second);
  EXPECT_EQ(pyh::Calls(second, "leaf"), 10u);
  EXPECT_EQ(pyh::Calls(second, "main"), 1u);
  EXPECT_EQ(pyh::Calls(second, "call_kept"), 2u);
  statsprof_destroy(second);
  EXPECT_EQ(CallLong(ns, "call_kept"), 0);
  pyh::Release(ns);
}

}  // namespace
