// consumer_host.cc — the smallest C++ host that embeds CPython and profiles
// it with an INSTALLED statsprof, built outside Bazel: cmake/ builds it with
// find_package(statsprof), pkgconfig/ with pkg-config. dev/cmake_check
// builds both and checks what they write.
//
//   consumer_host OUT.jsonl CALLS
//
// Runs consumer.py's main(CALLS), which calls leaf() CALLS times, under a
// profiler writing jsonl to OUT.jsonl. Exits 0, or 1 after saying what failed.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "statsprof.h"

namespace {

const char kProgram[] =
    "def leaf(i):\n"
    "    return i * 2\n"
    "def main(n):\n"
    "    return sum(leaf(i) for i in range(n))\n";

int Fail(const char *what, const char *detail) {
  std::fprintf(stderr, "consumer_host: %s: %s\n", what, detail ? detail : "?");
  return 1;
}

// Runs main(calls) from kProgram, compiled as "consumer.py"; 0 when it
// returned the right sum.
int RunProgram(long calls) {
  PyObject *ns = PyDict_New();
  PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *code = Py_CompileString(kProgram, "consumer.py", Py_file_input);
  PyObject *r = code ? PyEval_EvalCode(code, ns, ns) : nullptr;
  Py_XDECREF(r);
  PyObject *main_fn = r ? PyDict_GetItemString(ns, "main") : nullptr;
  PyObject *sum = main_fn ? PyObject_CallFunction(main_fn, "l", calls) : nullptr;
  long got = sum ? PyLong_AsLong(sum) : -1;
  int rc = sum && got == calls * (calls - 1) ? 0 : 1;
  if (PyErr_Occurred()) PyErr_Print();
  Py_XDECREF(sum);
  Py_XDECREF(code);
  Py_DECREF(ns);
  return rc;
}

}  // namespace

int main(int argc, char **argv) {
  char *end = nullptr;
  long calls = argc == 3 ? std::strtol(argv[2], &end, 10) : 0;
  if (argc != 3 || *end || calls < 1 || calls > 1000000) {
    std::fprintf(stderr, "usage: consumer_host OUT.jsonl CALLS (1 to 1000000)\n");
    return 2;
  }
  // The header this host was compiled with against the library it loaded.
  if (statsprof_version() != STATSPROF_VERSION_HEX)
    return Fail("library version differs from the header's", STATSPROF_VERSION_STRING);

  std::string config = "interval=1h;sink=jsonl:" + std::string(argv[1]);
  statsprof *p = nullptr;
  if (statsprof_create(config.c_str(), &p) != 0) return Fail("statsprof_create", statsprof_errmsg(nullptr));

  PyConfig pc;
  PyConfig_InitIsolatedConfig(&pc);  // PYTHONPATH/PYTHONHOME of the caller ignored
  PyStatus st = PyConfig_SetBytesString(&pc, &pc.program_name, argv[0]);
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&pc);
  PyConfig_Clear(&pc);
  if (PyStatus_Exception(st)) {
    statsprof_destroy(p);
    return Fail("cannot start Python", st.err_msg);
  }

  int rc = 0;
  if (statsprof_start(p) != 0) {
    rc = Fail("statsprof_start", statsprof_errmsg(p));
  } else {
    if (RunProgram(calls) != 0) rc = Fail("consumer.py", "main() failed");
    // interval=1h: no record is due yet; the run's one record comes from stop.
    if (statsprof_tick(p) != 0) rc = Fail("statsprof_tick", "emitted a record before its interval");
    if (statsprof_stop(p) != 0) rc = Fail("statsprof_stop", statsprof_errmsg(p));
  }
  statsprof_destroy(p);
  if (Py_FinalizeEx() < 0) rc = 1;
  return rc;
}
