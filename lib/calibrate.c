/* calibrate.c — how much one profile event costs, so that compensate=on can
 * subtract it from the frames that paid it (as the old `profile` module's
 * bias did). Measured once per process and clock: a loop of empty calls runs
 * bare and under a scratch profiler on this thread; the difference per event
 * is the bias. The minimum of several rounds rejects scheduler noise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char kCode[] =
    "def _statsprof_cal_f():\n"
    "    pass\n"
    "def _statsprof_cal_g(n):\n"
    "    f = _statsprof_cal_f\n"
    "    for i in range(n):\n"
    "        f()\n";

enum { CALLS = 4000, ROUNDS = 7 };

static uint64_t run(PyObject *g, PyObject *n) {
  uint64_t t0 = statsprof__ticks();
  PyObject *r = PyObject_CallOneArg(g, n);
  uint64_t t1 = statsprof__ticks();
  if (!r) PyErr_Clear();
  Py_XDECREF(r);
  return t1 - t0;
}

/* g's raw cumulative time under a scratch profiler, in the clock's ticks. */
static uint64_t profiled(PyObject *g, PyObject *n, statsprof__clock_kind clock) {
  statsprof *s;
  if (statsprof_create(clock == STATSPROF__CLOCK_CPU ? "sink=none;builtins=off;clock=cpu"
                                                     : "sink=none;builtins=off",
                       &s))
    return 0;
  s->bias = 0;
  uint64_t tt = 0;
  if (statsprof__hook_ready() == 0 && statsprof__attach(s, PyThreadState_Get()) == 0) {
    s->running = 1;
    s->interp_epoch = statsprof__epoch();
    PyObject *r = PyObject_CallOneArg(g, n);
    if (!r) PyErr_Clear();
    Py_XDECREF(r);
    statsprof__detach_all(s);
    s->running = 0;
    for (uint32_t i = 0; i < s->table.nentries; i++)
      if (!strcmp(s->table.labels[s->table.entries[i].label].name, "_statsprof_cal_g"))
        tt += s->table.entries[i].c.tt;
  }
  statsprof_destroy(s);
  return tt;
}

static uint64_t measure(statsprof__clock_kind clock) {
  PyObject *ns = PyDict_New();
  PyObject *co = ns ? Py_CompileString(kCode, "<statsprof-calibration>", Py_file_input) : NULL;
  if (ns) PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : NULL;
  PyObject *g = r ? PyDict_GetItemString(ns, "_statsprof_cal_g") : NULL;
  PyObject *n = PyLong_FromLong(CALLS);
  uint64_t bias = 0;
  if (g && n) {
    uint64_t bare = UINT64_MAX, prof = UINT64_MAX;
    for (int i = 0; i < ROUNDS; i++) {
      uint64_t b = run(g, n), q = profiled(g, n, clock);
      if (clock == STATSPROF__CLOCK_CPU) b = (uint64_t)((double)b * statsprof__clock_sec_per_tick * 1e9);
      if (b < bare) bare = b;
      if (q && q < prof) prof = q;
    }
    /* g's frame saw 2 events per call of f plus its own return. */
    if (prof != UINT64_MAX && prof > bare) bias = (prof - bare) / (2 * CALLS + 1);
  }
  if (PyErr_Occurred()) PyErr_Clear();
  Py_XDECREF(n);
  Py_XDECREF(r);
  Py_XDECREF(co);
  Py_XDECREF(ns);
  return bias;
}

uint64_t statsprof__calibrate(statsprof__clock_kind clock) {
  static uint64_t cached[2];
  static int done[2];
  if (done[clock]) return cached[clock];
  /* Calibrating replaces this thread's profile function for a moment: keep
   * a foreign one (cProfile, a debugger) and put it back. */
  PyThreadState *ts = PyThreadState_Get();
  Py_tracefunc func = ts->c_profilefunc;
  PyObject *obj = ts->c_profileobj;
  if (func && func != statsprof__hook) return 0;
  Py_XINCREF(obj);
  cached[clock] = measure(clock);
  if (getenv("STATSPROF_DEBUG")) fprintf(stderr, "statsprof: bias %llu ticks\n", (unsigned long long)cached[clock]);
  done[clock] = 1;
  if (func && _PyEval_SetProfile(ts, func, obj) < 0) PyErr_Clear();
  Py_XDECREF(obj);
  return cached[clock];
}
