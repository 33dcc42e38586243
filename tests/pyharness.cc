// pyharness.cc — see pyharness.h. Owns main(): Python is initialized once.
#include "pyharness.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <fcntl.h>
#include <unistd.h>

namespace pyh {

std::string TakeError() {
  if (!PyErr_Occurred()) return "";
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  PyErr_NormalizeException(&t, &v, &tb);
  std::string out = "?";
  PyObject *s = v ? PyObject_Str(v) : nullptr;
  if (s) {
    const char *u = PyUnicode_AsUTF8(s);
    out = std::string(t ? ((PyTypeObject *)t)->tp_name : "?") + ": " + (u ? u : "?");
  }
  PyErr_Clear();
  Py_XDECREF(s);
  Py_XDECREF(t);
  Py_XDECREF(v);
  Py_XDECREF(tb);
  return out;
}

void *Exec(const std::string &code, const std::string &filename) {
  PyObject *ns = PyDict_New();
  PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *name = PyUnicode_FromString("__pyh__");
  PyDict_SetItemString(ns, "__name__", name);
  Py_XDECREF(name);
  // Py_CompileString decodes the name with the locale (ASCII under Bazel).
  PyObject *fname = PyUnicode_FromString(filename.c_str());
  PyObject *co = fname ? Py_CompileStringObject(code.c_str(), fname, Py_file_input, nullptr, -1) : nullptr;
  Py_XDECREF(fname);
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : nullptr;
  if (!r) ADD_FAILURE() << "Python code failed: " << TakeError();
  Py_XDECREF(r);
  Py_XDECREF(co);
  return ns;
}

bool Call(void *ns, const char *name) {
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, name);
  if (!fn) {
    ADD_FAILURE() << "no function " << name;
    return false;
  }
  PyObject *r = PyObject_CallNoArgs(fn);
  Py_XDECREF(r);
  return r != nullptr;
}

void Release(void *ns) { Py_XDECREF((PyObject *)ns); }

static PyObject *StopAndDestroy(PyObject *self, PyObject *) {
  auto *calls = static_cast<CallsFromTheHook *>(PyCapsule_GetPointer(self, nullptr));
  if (calls && calls->stop_rc == -100) {
    calls->stop_rc = statsprof_stop(calls->p);
    statsprof_destroy(calls->p);
  }
  Py_RETURN_NONE;
}
static PyMethodDef kStopAndDestroy = {"_stop_and_destroy", StopAndDestroy, METH_NOARGS, nullptr};

void *ExecShadowedAppend(CallsFromTheHook *calls, const std::string &filename) {
  void *ns = Exec(R"(
def f(): pass
class Shadow:
    def __repr__(self):
        _stop_and_destroy()
        return "<shadowed append>"
class L(list):
    append = Shadow()
def run():
    for i in range(3):
        list.append(L(), i)
)",
                  filename);
  PyObject *self = PyCapsule_New(calls, nullptr, nullptr);
  PyObject *fn = self ? PyCFunction_New(&kStopAndDestroy, self) : nullptr;
  if (!ns || !fn || PyDict_SetItemString(static_cast<PyObject *>(ns), "_stop_and_destroy", fn) != 0)
    ADD_FAILURE() << "ExecShadowedAppend: " << TakeError();
  Py_XDECREF(fn);
  Py_XDECREF(self);
  return ns;
}

Snap Snapshot(statsprof *p, statsprof_snapshot_mode mode) {
  statsprof_stats_profile *s = nullptr;
  int rc = statsprof_snapshot(p, mode, &s);
  EXPECT_EQ(rc, 0) << statsprof_errmsg(p);
  return Snap(s);
}

const statsprof_function_profile *Find(const statsprof_stats_profile *s, const std::string &name) {
  const statsprof_function_profile *found = nullptr;
  for (size_t i = 0; s && i < s->nfunc_profiles; i++) {
    if (name == s->func_profiles[i].function_name) {
      EXPECT_EQ(found, nullptr) << "several functions named " << name;
      found = &s->func_profiles[i];
    }
  }
  return found;
}

const statsprof_caller_profile *FindCaller(const statsprof_function_profile *f, const std::string &name) {
  for (size_t i = 0; f && i < f->ncallers; i++)
    if (name == f->callers[i].function_name) return &f->callers[i];
  return nullptr;
}

static std::string Key(const char *file, int line, const char *name) {
  return std::string(file) + ":" + std::to_string(line) + "(" + name + ")";
}

CountMap FromSnapshot(const statsprof_stats_profile *s) {
  CountMap m;
  for (size_t i = 0; i < s->nfunc_profiles; i++) {
    const statsprof_function_profile &f = s->func_profiles[i];
    Counts &c = m[Key(f.file_name, f.line_number, f.function_name)];
    c.nc = f.ncalls;
    c.cc = f.primitive_calls;
    for (size_t j = 0; j < f.ncallers; j++) {
      const statsprof_caller_profile &e = f.callers[j];
      c.callers[Key(e.file_name, e.line_number, e.function_name)] = {e.ncalls, e.primitive_calls};
    }
  }
  return m;
}

// The oracle sums cProfile's raw entries by label: its own create_stats keys
// a dict by label, so two code objects with one label (exec'd code, a module
// imported twice) overwrite each other there — a known cProfile gap that
// statsprof does not share.
static const char kCProfileHelper[] = R"PY(
import cProfile
# cProfile.label's rule, here because 3.15 moved the function (to
# profiling.tracing; cProfile re-exports only run, runctx and Profile).
def _pyh_key(code):
    if isinstance(code, str):
        return "~:0(%s)" % code
    return "%s:%d(%s)" % (code.co_filename, code.co_firstlineno, code.co_name)
def _pyh_cprofile(fn, builtins):
    pr = cProfile.Profile(builtins=builtins)
    # builtins again: from 3.14 enable() with no arguments turns builtins
    # back on (its argument-clinic default overrides the constructor's).
    pr.enable(builtins=builtins)
    try:
        fn()
    except BaseException:
        pass
    pr.disable()
    own = ("~:0(<method 'enable' of '_lsprof.Profiler' objects>)",
           "~:0(<method 'disable' of '_lsprof.Profiler' objects>)")
    funcs, callers = {}, {}
    for e in pr.getstats():
        k = _pyh_key(e.code)
        nc, cc = funcs.get(k, (0, 0))
        funcs[k] = (nc + e.callcount, cc + e.callcount - e.reccallcount)
        for sub in e.calls or ():
            edges = callers.setdefault(_pyh_key(sub.code), {})
            nc, cc = edges.get(k, (0, 0))
            edges[k] = (nc + sub.callcount, cc + sub.callcount - sub.reccallcount)
    out = []
    for k, (nc, cc) in funcs.items():
        if k in own:
            continue
        cl = [(c, v[0], v[1]) for c, v in callers.get(k, {}).items() if c not in own]
        out.append((k, nc, cc, cl))
    return out
)PY";

bool BuiltinsOff() {
  const char *v = getenv("STATSPROF_TEST_BUILTINS");
  if (!v) return false;
  if (std::string(v) == "off") return true;
  ADD_FAILURE() << "STATSPROF_TEST_BUILTINS=" << v << ": only 'off' (or unset) is meaningful";
  return false;
}

CountMap CProfileRun(void *ns, const char *fn, int builtins) {
  static PyObject *helper_ns;
  if (!helper_ns) helper_ns = (PyObject *)Exec(kCProfileHelper, "<pyharness>");
  PyObject *helper = PyDict_GetItemString(helper_ns, "_pyh_cprofile");
  PyObject *target = PyDict_GetItemString((PyObject *)ns, fn);
  CountMap m;
  bool off = builtins < 0 ? BuiltinsOff() : !builtins;
  PyObject *r = target ? PyObject_CallFunctionObjArgs(helper, target, off ? Py_False : Py_True, nullptr) : nullptr;
  if (!r) {
    ADD_FAILURE() << "cProfile run failed: " << TakeError();
    return m;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(r); i++) {
    PyObject *row = PyList_GET_ITEM(r, i);
    Counts &c = m[PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 0))];
    c.nc = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(row, 1));
    c.cc = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(row, 2));
    PyObject *cl = PyTuple_GET_ITEM(row, 3);
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(cl); j++) {
      PyObject *e = PyList_GET_ITEM(cl, j);
      c.callers[PyUnicode_AsUTF8(PyTuple_GET_ITEM(e, 0))] = {
          PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(e, 1)), PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(e, 2))};
    }
  }
  Py_DECREF(r);
  // The oracle itself must be the one asked for: builtins=False has no C
  // function ("~:0(...)") entries at all.
  if (off && !FirstCFunction(m).empty()) ADD_FAILURE() << "cProfile(builtins=False) reported " << FirstCFunction(m);
  return m;
}

std::string FirstCFunction(const CountMap &m) {
  for (const auto &[k, c] : m)
    if (k.rfind("~:0(", 0) == 0) return k;
  return "";
}

bool EvalFrameRuns() {
  // 3.11 before 3.11.4 misses a warmed-up obj[i] (gh-104405). (3.13 misses
  // a warmed-up class call with a Python __init__, CALL_ALLOC_AND_ENTER_INIT,
  // and counts __init__ functions through sys.monitoring there.)
  return Py_Version >= 0x030B04F0;
}

bool EvalFrameIsDefault() { return EvalFrameRuns() && PY_VERSION_HEX < 0x030C0000; }

void ExpectEvalFrameRefused(const std::string &config) {
  std::string cfg = config + ";source=evalframe";
  if (config.find("builtins") == std::string::npos) cfg += ";builtins=off";
  statsprof *p = nullptr;
  int rc = statsprof_create(cfg.c_str(), &p);
  ASSERT_EQ(rc, 0) << statsprof_errmsg(nullptr);
  EXPECT_EQ(statsprof_start(p), STATSPROF_ESTATE);
  char version[32];
  snprintf(version, sizeof version, "CPython %lu.%lu.%lu ", Py_Version >> 24, (Py_Version >> 16) & 0xff,
           (Py_Version >> 8) & 0xff);
  std::string msg = statsprof_errmsg(p);
  EXPECT_NE(msg.find(std::string("statsprof_start: source=evalframe: ") + version +
                     "pushes some Python frames without calling the frame-evaluation function" +
                     (Py_Version < 0x030B04F0 ? " (gh-104405, fixed in 3.11.4)" : "") + ": its self-check saw "),
            std::string::npos)
      << msg;
  EXPECT_FALSE(statsprof_is_running(p));
  statsprof_destroy(p);
}

CountMap StatsprofRun(void *ns, const char *fn, const char *config, bool this_thread_only) {
  statsprof *p = nullptr;
  CountMap m;
  // The *_setprofile test targets run the same parity checks on the
  // PyEval_SetProfile source (the default on 3.12+ is sys.monitoring).
  std::string cfg = config ? config : "";
  const char *source = getenv("STATSPROF_TEST_SOURCE");
  // The *_evalframe targets: where the frame-evaluation source must not
  // run, forcing it must fail as documented, and the parity check then runs
  // on the interpreter's default source. A test that counts C functions
  // (builtins=on) keeps the default source.
  if (source && !strcmp(source, "evalframe")) {
    if (cfg.find("builtins=on") != std::string::npos) source = nullptr;
    else if (!EvalFrameRuns()) {
      ExpectEvalFrameRefused(cfg);
      source = nullptr;
    }
  }
  // The *_monitoring_builtins_off targets before 3.12: forcing
  // sys.monitoring is a config error, then the default source runs.
  if (source && !strcmp(source, "monitoring") && PY_VERSION_HEX < 0x030C0000) {
    statsprof *q = nullptr;
    EXPECT_EQ(statsprof_create((cfg + ";source=monitoring").c_str(), &q), STATSPROF_ECONFIG);
    EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("config: source=monitoring needs Python 3.12 or newer"),
              std::string::npos)
        << statsprof_errmsg(nullptr);
    statsprof_destroy(q);
    source = nullptr;
  }
  if (source) cfg += std::string(";source=") + source;
  // The *_builtins_off targets: Python functions only, unless the test
  // chose builtins itself.
  if (BuiltinsOff() && cfg.find("builtins") == std::string::npos) cfg += ";builtins=off";
  if (statsprof_create(cfg.c_str(), &p) != 0) {
    ADD_FAILURE() << statsprof_errmsg(nullptr);
    return m;
  }
  EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  if (!Call(ns, fn)) PyErr_Clear();
  EXPECT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
  Snap s;
  if (this_thread_only) {
    statsprof_stats_profile *raw = nullptr;
    EXPECT_EQ(statsprof_snapshot_thread(p, STATSPROF_CUMULATIVE, PyThread_get_thread_ident(), &raw), 0)
        << statsprof_errmsg(p);
    s.reset(raw);
  } else {
    s = Snapshot(p, STATSPROF_CUMULATIVE);
  }
  if (s) m = FromSnapshot(s.get());
  statsprof_destroy(p);
  return m;
}

std::string Diff(const CountMap &want, const CountMap &got) {
  std::ostringstream out;
  for (const auto &[k, w] : want) {
    auto it = got.find(k);
    if (it == got.end()) {
      out << "missing " << k << " (" << w.nc << "/" << w.cc << ")\n";
      continue;
    }
    const Counts &g = it->second;
    if (w.nc != g.nc || w.cc != g.cc)
      out << k << ": calls want " << w.nc << "/" << w.cc << " got " << g.nc << "/" << g.cc << "\n";
    if (w.callers != g.callers) {
      out << k << ": callers differ:\n";
      for (const auto &[ck, cv] : w.callers) {
        auto ci = g.callers.find(ck);
        if (ci == g.callers.end()) out << "   missing caller " << ck << "\n";
        else if (ci->second != cv)
          out << "   " << ck << " want " << cv.first << "/" << cv.second << " got " << ci->second.first << "/"
              << ci->second.second << "\n";
      }
      for (const auto &[ck, cv] : g.callers)
        if (!w.callers.count(ck)) out << "   extra caller " << ck << "\n";
    }
  }
  for (const auto &[k, g] : got)
    if (!want.count(k)) out << "extra " << k << " (" << g.nc << "/" << g.cc << ")\n";
  return out.str();
}

std::string ReadFile(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string CaptureStderr(const std::function<void()> &fn) {
  std::string path = TempDir() + "/stderr.txt";
  fflush(stderr);
  int saved = dup(2);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  EXPECT_GE(fd, 0);
  dup2(fd, 2);
  close(fd);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  return ReadFile(path);
}

std::string TempDir() {
  const char *base = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/statsprof-XXXXXX";
  char *d = mkdtemp(&tmpl[0]);
  EXPECT_NE(d, nullptr);
  return tmpl;
}

}  // namespace pyh

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  Py_InitializeEx(0);
  int rc = RUN_ALL_TESTS();
  if (Py_IsInitialized()) Py_FinalizeEx();
  return rc;
}

// ---- Helpers for the config/snapshot/sink/lifecycle suites ---------------
#include <ctime>

namespace pyh {

uint64_t Calls(statsprof *p, const std::string &name) {
  Snap s = Snapshot(p, STATSPROF_CUMULATIVE);
  const statsprof_function_profile *f = Find(s.get(), name);
  return f ? f->ncalls : 0;
}

// Whether statsprof receives events: its profile function (setprofile
// source), or its sys.monitoring tool with events on (3.12+ default).
// _pyh_eval_frame_set(): whether a frame-evaluation function other than
// CPython's is installed (statsprof's source=evalframe), which Python code
// cannot see; RunPy puts it in the namespace.
static PyObject *EvalFrameSet(PyObject *, PyObject *) {
  return PyBool_FromLong(_PyInterpreterState_GetEvalFrameFunc(PyThreadState_Get()->interp) !=
                         _PyEval_EvalFrameDefault);
}
static PyMethodDef kEvalFrameSet = {"_pyh_eval_frame_set", EvalFrameSet, METH_NOARGS, nullptr};

#define STATSPROF_EVENTS_ON                                                                 \
  "def statsprof_events_on():\n"                                                           \
  "    if sys.getprofile() is not None or _pyh_eval_frame_set(): return True\n"            \
  "    m = getattr(sys, 'monitoring', None)\n"                                             \
  "    return bool(m) and any(m.get_tool(i) == 'statsprof' and m.get_events(i) for i in (3, 4))\n"
const char kNoHook[] = "import sys, threading\n" STATSPROF_EVENTS_ON R"(
assert not statsprof_events_on(), repr(sys.getprofile())
assert threading.getprofile() is None, repr(threading.getprofile())
)";
const char kHook[] = "import sys\n" STATSPROF_EVENTS_ON R"(
assert statsprof_events_on()
)";

std::string RunPy(const std::string &code, const std::map<std::string, std::string> &vars) {
  PyObject *ns = PyDict_New();
  PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *eval_frame_set = PyCFunction_New(&kEvalFrameSet, nullptr);
  PyDict_SetItemString(ns, "_pyh_eval_frame_set", eval_frame_set);
  Py_XDECREF(eval_frame_set);
  for (const auto &[k, v] : vars) {
    PyObject *s = PyUnicode_DecodeUTF8(v.data(), (Py_ssize_t)v.size(), "surrogateescape");
    PyDict_SetItemString(ns, k.c_str(), s);
    Py_XDECREF(s);
  }
  PyObject *co = Py_CompileString(code.c_str(), "<pyh-check>", Py_file_input);
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : nullptr;
  std::string err = r ? "" : TakeError();
  Py_XDECREF(r);
  Py_XDECREF(co);
  Py_DECREF(ns);
  return err;
}

static int recording_emit(void *ctx, const statsprof_stats_profile *rec) {
  RecordingSink *s = static_cast<RecordingSink *>(ctx);
  s->emits++;
  Record r;
  r.seq = rec->seq;
  r.mode = rec->mode;
  r.kind = rec->kind;
  r.start_ns = rec->start_ns;
  r.end_ns = rec->end_ns;
  r.overflow_functions = rec->overflow_functions;
  r.sink_errors = rec->sink_errors;
  r.dropped = rec->dropped;
  r.thread_id = rec->thread_id;
  r.counts = FromSnapshot(rec);
  for (size_t i = 0; i < rec->nfunc_profiles; i++)
    r.calls_by_name[rec->func_profiles[i].function_name] += rec->func_profiles[i].ncalls;
  s->records.push_back(std::move(r));
  return s->fail;
}

static int recording_flush(void *ctx) {
  static_cast<RecordingSink *>(ctx)->flushes++;
  return 0;
}

static void recording_close(void *ctx) { static_cast<RecordingSink *>(ctx)->closes++; }

static const statsprof_sink_ops kRecordingOps = {
    STATSPROF_SINK_VERSION, "recording", recording_emit, recording_flush, recording_close,
};

const statsprof_sink_ops *RecordingSinkOps() { return &kRecordingOps; }

int AddRecordingSink(statsprof *p, RecordingSink *sink) { return statsprof_add_sink(p, &kRecordingOps, sink); }

JsonlFile ReadJsonl(const std::string &path) {
  void *ns = Exec(R"(
import json
def read(path):
    data = open(path, 'rb').read()
    parts = data.split(b'\n')
    tail = parts.pop()
    bad, ids = 0, []
    for p in parts:
        try:
            r = json.loads(p)
        except ValueError:
            r = None
        if not isinstance(r, dict):
            bad += 1
        elif 'pid' in r and 'seq' in r and 'filler' not in r:
            ids.append((r['pid'], r['seq']))
    return len(parts), bad, len(tail), ids
)");
  JsonlFile f;
  PyObject *r = PyObject_CallFunction(PyDict_GetItemString((PyObject *)ns, "read"), "s", path.c_str());
  if (r) {
    f.lines = PyLong_AsLong(PyTuple_GetItem(r, 0));
    f.bad = PyLong_AsLong(PyTuple_GetItem(r, 1));
    f.tail = PyLong_AsLong(PyTuple_GetItem(r, 2));
    PyObject *ids = PyTuple_GetItem(r, 3);
    for (Py_ssize_t i = 0; i < PyList_Size(ids); i++) {
      PyObject *t = PyList_GetItem(ids, i);
      f.ids.emplace_back(PyLong_AsLongLong(PyTuple_GetItem(t, 0)), PyLong_AsLongLong(PyTuple_GetItem(t, 1)));
    }
  } else {
    f.error = TakeError();
  }
  Py_XDECREF(r);
  Release(ns);
  return f;
}

int64_t WallNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

}  // namespace pyh
