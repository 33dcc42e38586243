// pyharness.cc — see pyharness.h. Owns main(): Python is initialized once.
#include "pyharness.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
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
  PyDict_SetItemString(ns, "__name__", PyUnicode_FromString("__pyh__"));
  PyObject *co = Py_CompileString(code.c_str(), filename.c_str(), Py_file_input);
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

static const char kCProfileHelper[] = R"PY(
import cProfile
def _pyh_cprofile(fn):
    pr = cProfile.Profile()
    pr.enable()
    try:
        fn()
    except BaseException:
        pass
    pr.disable()
    pr.create_stats()
    own = ("<method 'enable' of '_lsprof.Profiler' objects>",
           "<method 'disable' of '_lsprof.Profiler' objects>")
    out = []
    for (f, l, n), (cc, nc, tt, ct, callers) in pr.stats.items():
        if f == '~' and n in own:
            continue
        cl = [("%s:%d(%s)" % k, v[0], v[1]) for k, v in callers.items()
              if not (k[0] == '~' and k[2] in own)]
        out.append(("%s:%d(%s)" % (f, l, n), nc, cc, cl))
    return out
)PY";

CountMap CProfileRun(void *ns, const char *fn) {
  static PyObject *helper_ns;
  if (!helper_ns) helper_ns = (PyObject *)Exec(kCProfileHelper, "<pyharness>");
  PyObject *helper = PyDict_GetItemString(helper_ns, "_pyh_cprofile");
  PyObject *target = PyDict_GetItemString((PyObject *)ns, fn);
  CountMap m;
  PyObject *r = target ? PyObject_CallOneArg(helper, target) : nullptr;
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
  return m;
}

CountMap StatsprofRun(void *ns, const char *fn, const char *config) {
  statsprof *p = nullptr;
  CountMap m;
  if (statsprof_create(config, &p) != 0) {
    ADD_FAILURE() << statsprof_errmsg(nullptr);
    return m;
  }
  EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  if (!Call(ns, fn)) PyErr_Clear();
  EXPECT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
  Snap s = Snapshot(p, STATSPROF_CUMULATIVE);
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
