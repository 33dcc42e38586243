// after_destroy_test.cc — what Python can keep of a profiler after
// statsprof_destroy, and call: the sys.monitoring callback objects
// (sys.monitoring.register_callback returns the one it replaces) and the
// threading hook of source=setprofile (threading.getprofile(), which a
// library that saves and restores the hook may reinstall later). Called
// after destroy, they must do nothing, not read the freed profiler.
// So that reading it fails here, this binary's allocator fills every freed
// block with 0xA5 (a freed profiler reads as running, events on, with
// garbage pointers) and never reuses it; under ASan it frees the block for
// real instead, so that ASan reports any read of it.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#include "pyharness.h"
#include "sanitizers.h"

namespace {

// Freed blocks, poisoned, held until exit (reachable: no leak report).
std::mutex g_mu;
std::vector<void *> *g_freed;

constexpr size_t kHeader = 16;  // the block's size, keeping malloc's alignment

constexpr bool kFreeForReal = sanitizers::kAsan;

void *PoisoningAlloc(void *, void *ptr, size_t size) {
  if (size == 0) {
    char *h = static_cast<char *>(ptr) - kHeader;
    memset(ptr, 0xA5, *reinterpret_cast<size_t *>(h));
    if (kFreeForReal) {
      free(h);
      return nullptr;
    }
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

statsprof *Started(const char *config = "sink=none") {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
  if (p) {
    EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  }
  return p;
}

TEST(AfterDestroy, MonitoringCallbacksPythonKeptDoNothing) {
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

const char kThreads[] = R"(
import threading
def leaf(x): return x + 1
saved = []
def save():
    saved.append(threading.getprofile())
    return 0 if saved[0] is None else 1
def work(out):
    out.append(sum(leaf(i) for i in range(10)))
def run_thread():
    out = []
    th = threading.Thread(target=work, args=(out,))
    th.start()
    th.join()
    return out[0] if out else -1
def restore_and_run():
    threading.setprofile(saved[0])
    try:
        return run_thread()
    finally:
        threading.setprofile(None)
)";

TEST(AfterDestroy, ThreadingHookPythonKeptDoesNothing) {
  ASSERT_EQ(g_installed, 0);
  void *ns = pyh::Exec(kThreads);
  statsprof *p = Started("sink=none;source=setprofile");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(CallLong(ns, "save"), 1);  // statsprof's hook for new threads
  EXPECT_EQ(CallLong(ns, "run_thread"), 55);
  statsprof_stop(p);
  EXPECT_EQ(pyh::Calls(p, "leaf"), 10u);  // the hook attached the thread
  statsprof_destroy(p);
  // Reinstalled after destroy: each new thread runs unprofiled, twice.
  EXPECT_EQ(CallLong(ns, "restore_and_run"), 55);
  EXPECT_EQ(CallLong(ns, "restore_and_run"), 55);
  pyh::Release(ns);
}

}  // namespace
