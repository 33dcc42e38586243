/* bench_host.c — the measuring half of dev/bench.
 *
 * Embeds CPython, loads dev/bench_workloads.py and measures, in this one
 * process, what each profiler costs on each workload. dev/bench runs it,
 * reads the JSON lines it prints on stdout and makes the table; run it by
 * hand only to debug a measurement:
 *
 *   bench_host --workloads dev/bench_workloads.py [--size full|quick|callgrind]
 *              [--rounds 7] [--workload NAME]... [--mode NAME]...
 *              [--no-extras] [--callgrind]
 *   bench_host --workloads dev/bench_workloads.py --production [--size full|quick]
 *              [--rounds 3] [--seconds 3] [--lead-in 0] [--workload NAME]...
 *              [--prod-mode NAME=CONFIG]... [--short NAME]...
 *   bench_host --workloads dev/bench_workloads.py --game-run CONFIG --frames N [--seed S]
 *
 * Modes (what is installed during the measured call; --mode NAME picks some):
 *   none              nothing
 *   empty             an empty C profile function (PyEval_SetProfile): the
 *                     floor of every PyEval_SetProfile profiler
 *   empty_mon         3.12+: empty sys.monitoring C callbacks for PY_START,
 *                     PY_RESUME, PY_THROW, PY_RETURN, PY_YIELD, PY_UNWIND, CALL,
 *                     C_RETURN, C_RAISE: the floor of cProfile and of statsprof's
 *                     source=monitoring with builtins on
 *   empty_mon_py      3.12+: the same for the PY_* events only: the floor of
 *                     source=monitoring with builtins=off
 *   empty_ef          an empty PEP 523 frame-evaluation function (it only
 *                     calls _PyEval_EvalFrameDefault): the floor of
 *                     source=evalframe, builtins=off's source on 3.11.4+
 *                     (on 3.12+ measured beside sys.monitoring's PY_* floor)
 *   cprofile          cProfile.Profile() (builtins=True), enabled from C
 *   cprofile_nob      cProfile.Profile(builtins=False)
 *   yappi             yappi, wall clock, builtins on (when importable)
 *   statsprof         statsprof_create("sink=none;interval=1h"): the default
 *                     source (setprofile on 3.11, monitoring on 3.12+)
 *   statsprof_nocomp  the same with compensate=off
 *   statsprof_nob     the same with builtins=off
 *   statsprof_sp      3.12+: source=setprofile
 *   statsprof_ef_nob  source=evalframe;builtins=off, where statsprof_nob runs
 *                     another source and evalframe is exact (3.12+)
 *   statsprof_sp_nob  source=setprofile;builtins=off, where statsprof_nob runs
 *                     another source (3.12+, and 3.11.4+)
 * The info line gives each mode's source and floor (the mode with the same
 * events and an empty callback) on this interpreter.
 *
 * For each workload the events a run delivers are counted once with a
 * counting profile function (and, on 3.12+, counting sys.monitoring
 * callbacks); then R rounds run every mode once each,
 * round-robin, in an order rotated every round, so slow drift of a noisy
 * machine hits all modes alike. Every measured call is preceded by a full
 * garbage collection. A profiler is created fresh for every measured call,
 * so its first-sight work (labels, table entries) is part of its cost.
 *
 * --production: the cost of production mode (duty=, max_overhead=), which
 * only shows over runs long enough to hold many windows. One measured run
 * of a workload calls its run() N times back to back, N sized so that the
 * no-hook run takes --seconds; the profiler (one per measured run) stays on
 * across the N calls, and statsprof_tick is called after every run() and,
 * for the game, after every frame (as host_examples/game_host does). When a
 * mode's config has trigger=timer bench_host never ticks: window edges come
 * from the timer thread while run() is busy in Python. --lead-in S runs the
 * workload unmeasured for S seconds after statsprof_start and, in production
 * mode, until the second window has closed, so that the measured calls begin
 * at an arbitrary point of the steady window cycle. Modes are `none` and
 * each --prod-mode NAME=CONFIG (config text after
 * "sink=benchcap;writer=sync;"); a mode named with --short runs N/4 calls
 * (full profiling: no windows to average over). Rounds interleave the
 * modes, rotated every round. Each line reports wall, thread CPU and process
 * CPU seconds (the timer thread included) and, summed over the delta records
 * that cover the measured calls (statsprof_emit_now just before and just
 * after them, and those the interval emitted in between), interval_s,
 * observed_s and overhead_est times interval_s. The measured calls are also
 * cut into units (a game frame, else one run()), timed one by one and
 * counted as inside or outside a window (see g_units): the units outside
 * windows give a no-hook baseline within the same run.
 *
 * --game-run CONFIG --frames N [--seed S]: for the faithfulness comparison,
 * one profiled game: statsprof_start(CONFIG), game.init(S), N frames of
 * game.frame(1/60) back to back with statsprof_frame_mark and statsprof_tick
 * after each (no tick with trigger=timer), statsprof_stop. CONFIG names its
 * own sink (sink=jsonl:...).
 *
 * --callgrind: one measured call per mode, bracketed by callgrind client
 * requests (collection on only around the call) and dumped with the label
 * "bench <workload> <mode>"; run under valgrind --tool=callgrind
 * --collect-atstart=no. Outside valgrind the requests do nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "statsprof.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#endif
#endif
#ifndef HAVE_CALLGRIND
#define HAVE_CALLGRIND 0
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

/* ---- small helpers ------------------------------------------------------ */

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

/* This thread's CPU time: unlike wall time, it does not grow while another
 * process has the CPU, so its minimum is steadier on a busy machine. */
static double cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

/* The whole process's CPU time: every thread, so production mode's timer
 * thread (trigger=timer) is counted too. */
static double proc_cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static void die_python(const char *what) {
  fprintf(stderr, "bench_host: %s failed:\n", what);
  if (PyErr_Occurred()) PyErr_Print();
  exit(1);
}

static void die_statsprof(const char *what, statsprof *p) {
  fprintf(stderr, "bench_host: %s failed: %s\n", what, statsprof_errmsg(p));
  exit(1);
}

/* Calls obj.name(*args) and returns the new reference, or exits. */
static PyObject *call_method(PyObject *obj, const char *name, const char *fmt, ...) {
  PyObject *m = PyObject_GetAttrString(obj, name);
  if (!m) die_python(name);
  PyObject *args;
  if (fmt && *fmt) {
    va_list va;
    va_start(va, fmt);
    args = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (args && !PyTuple_Check(args)) {
      PyObject *t = PyTuple_Pack(1, args);
      Py_DECREF(args);
      args = t;
    }
  } else {
    args = PyTuple_New(0);
  }
  if (!args) die_python(name);
  PyObject *r = PyObject_Call(m, args, NULL);
  Py_DECREF(args);
  Py_DECREF(m);
  if (!r) die_python(name);
  return r;
}

/* obj.name(builtins=True/False): a new reference; dies naming `what`. */
static PyObject *call_with_builtins(PyObject *obj, const char *name, int builtins, const char *what) {
  PyObject *fn = PyObject_GetAttrString(obj, name);
  PyObject *kw = Py_BuildValue("{s:O}", "builtins", builtins ? Py_True : Py_False);
  PyObject *args = PyTuple_New(0);
  PyObject *r = fn && kw && args ? PyObject_Call(fn, args, kw) : NULL;
  if (!r) die_python(what);
  Py_DECREF(fn);
  Py_DECREF(kw);
  Py_DECREF(args);
  return r;
}

static void call_noargs(PyObject *fn) {
  PyObject *r = PyObject_CallNoArgs(fn);
  if (!r) die_python("the workload");
  Py_DECREF(r);
}

static PyObject *import(const char *name) {
  PyObject *m = PyImport_ImportModule(name);
  if (!m) die_python(name);
  return m;
}

/* ---- profile functions: counting and empty ------------------------------ */

static uint64_t g_events[8];

static int counting_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
  (void)obj, (void)frame, (void)arg;
  if (what >= 0 && what < 8) g_events[what]++;
  return 0;
}

static int empty_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
  (void)obj, (void)frame, (void)what, (void)arg;
  return 0;
}

#if PY_VERSION_HEX >= 0x030B0000
#define HAVE_EVALFRAME 1
/* The floor of source=evalframe: every frame evaluation through a function
 * that does nothing else. */
static PyObject *empty_eval(PyThreadState *ts, struct _PyInterpreterFrame *frame, int throwflag) {
  return _PyEval_EvalFrameDefault(ts, frame, throwflag);
}
static void set_eval(_PyFrameEvalFunction f) { _PyInterpreterState_SetEvalFrameFunc(PyThreadState_Get()->interp, f); }

/* Whether statsprof's builtins=off runs the frame-evaluation source here
 * (3.11.4+, decided by its first start): its function is then installed. */
static int nob_is_evalframe(void) {
  statsprof *p = NULL;
  int yes = 0;
  if (statsprof_create("sink=none;builtins=off;compensate=off", &p) == 0 && statsprof_start(p) == 0)
    yes = _PyInterpreterState_GetEvalFrameFunc(PyThreadState_Get()->interp) != _PyEval_EvalFrameDefault;
  statsprof_destroy(p);
  return yes;
}

/* Whether source=evalframe, forced, starts here (its self-check passes). */
static int ef_exact(void) {
  statsprof *p = NULL;
  int yes = statsprof_create("sink=none;builtins=off;compensate=off;source=evalframe", &p) == 0 && statsprof_start(p) == 0;
  statsprof_destroy(p);
  return yes;
}
#else
#define HAVE_EVALFRAME 0
static int nob_is_evalframe(void) { return 0; }
static int ef_exact(void) { return 0; }
#endif

/* ---- sys.monitoring callbacks: counting and empty (3.12+) ----------------
 *
 * The floor of source=monitoring: METH_FASTCALL C functions registered with
 * sys.monitoring.register_callback for the events statsprof turns on, as
 * statsprof registers its own (PY_START/RESUME/THROW, PY_RETURN/YIELD/UNWIND,
 * and with builtins CALL, C_RETURN, C_RAISE), each returning None at once. */

#define MON_TOOL 3 /* the id statsprof takes first; freed after each use */
static const char *const mon_event_names[] = {"PY_START", "PY_RESUME", "PY_THROW",
                                              "PY_RETURN", "PY_YIELD", "PY_UNWIND",
                                              "CALL", "C_RETURN", "C_RAISE"};
enum { MON_NEVENTS = 9, MON_FIRST_C = 6 };
static uint64_t g_mon_events[MON_NEVENTS];

#if PY_VERSION_HEX >= 0x030C0000
#define HAVE_MONITORING 1

static PyObject *empty_mon_cb(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self, (void)args, (void)nargs;
  Py_RETURN_NONE;
}

/* self is the event's index in mon_event_names (an int). */
static PyObject *counting_mon_cb(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)args, (void)nargs;
  g_mon_events[PyLong_AsLong(self)]++;
  Py_RETURN_NONE;
}

typedef PyObject *(*fastcall_fn)(PyObject *, PyObject *const *, Py_ssize_t);
static PyMethodDef empty_mon_def = {"bench_empty_callback",
                                    (PyCFunction)(void (*)(void))(fastcall_fn)empty_mon_cb,
                                    METH_FASTCALL, NULL};
static PyMethodDef counting_mon_def = {"bench_counting_callback",
                                       (PyCFunction)(void (*)(void))(fastcall_fn)counting_mon_cb,
                                       METH_FASTCALL, NULL};

static PyObject *g_monitoring; /* sys.monitoring */

static long mon_bit(const char *event) {
  PyObject *events = PyObject_GetAttrString(g_monitoring, "events");
  PyObject *v = events ? PyObject_GetAttrString(events, event) : NULL;
  if (!v) die_python("sys.monitoring.events");
  long bit = PyLong_AsLong(v);
  Py_DECREF(v);
  Py_DECREF(events);
  return bit;
}

/* Takes MON_TOOL and turns on the Python events, plus the C-call events
 * when `builtins`, each calling `def` (self: the event's index). */
static void mon_install(PyMethodDef *def, int builtins) {
  Py_DECREF(call_method(g_monitoring, "use_tool_id", "(is)", MON_TOOL, "statsprof-bench"));
  long mask = 0;
  for (int i = 0; i < MON_NEVENTS; i++) {
    if (i >= MON_FIRST_C && !builtins) break;
    long bit = mon_bit(mon_event_names[i]);
    PyObject *idx = PyLong_FromLong(i);
    PyObject *fn = idx ? PyCFunction_New(def, idx) : NULL;
    if (!fn) die_python("PyCFunction_New");
    Py_DECREF(call_method(g_monitoring, "register_callback", "(ilO)", MON_TOOL, bit, fn));
    Py_DECREF(fn);
    Py_DECREF(idx);
    mask |= bit;
  }
  Py_DECREF(call_method(g_monitoring, "set_events", "(il)", MON_TOOL, mask));
}

static void mon_remove(void) {
  Py_DECREF(call_method(g_monitoring, "set_events", "(ii)", MON_TOOL, 0));
  for (int i = 0; i < MON_NEVENTS; i++)
    Py_DECREF(call_method(g_monitoring, "register_callback", "(ilO)", MON_TOOL,
                          mon_bit(mon_event_names[i]), Py_None));
  Py_DECREF(call_method(g_monitoring, "free_tool_id", "(i)", MON_TOOL));
}
#else
#define HAVE_MONITORING 0
#endif

/* ---- units: the measured call timed piece by piece ---------------------- */

/* The workloads call bench_unit() after each unit of work (a repetition, a
 * game frame): the CPU time of each unit, and the sum over units of each
 * unit's minimum over the rounds, which is steadier on a busy machine than
 * the minimum of whole calls (a unit of a few ms often runs undisturbed in
 * some round even when no whole call does). */
#define MAX_UNITS 1024
static double g_unit_stamp[MAX_UNITS]; /* CPU time at each mark, then each unit's */
static int g_nunits, g_units_on;

static PyObject *py_unit(PyObject *self, PyObject *unused) {
  (void)self, (void)unused;
  if (g_units_on && g_nunits < MAX_UNITS) g_unit_stamp[g_nunits++] = cpu_s();
  Py_RETURN_NONE;
}

static PyMethodDef unit_def = {"bench_unit", py_unit, METH_NOARGS,
                               "Marks the end of a unit of the measured call (bench_host)."};

/* ---- modes -------------------------------------------------------------- */

enum kind { K_NONE, K_EMPTY, K_EMPTY_MON, K_EMPTY_EF, K_CPROFILE, K_YAPPI, K_STATSPROF };
enum where { W_ALL, W_MONITORING, W_EVALFRAME, W_NOT_SETPROFILE_NOB, W_EVALFRAME_NOT_NOB };

/* A mode: what is installed during the measured call. `builtins` is
 * cProfile's builtins= and the C-call events of the monitoring floor;
 * statsprof's is in its config. `floor` names the mode whose events are the
 * same as this one's with nothing done in the callback (filled in main for
 * this interpreter); `source` is where the events come from. */
typedef struct mode_def {
  const char *name;
  enum kind kind;
  int builtins;
  const char *config;
  enum where where; /* 3.12+ only, 3.11 only, where builtins=off is not setprofile, or where it is
                     * not evalframe and evalframe is exact */
  int on;
  const char *source, *floor;
} mode_def;

#define SP_BASE "sink=none;interval=1h"
static mode_def g_modes[] = {
    {"none", K_NONE, 0, NULL, 0, 0, NULL, NULL},
    {"empty", K_EMPTY, 1, NULL, 0, 0, NULL, NULL},
    {"empty_mon", K_EMPTY_MON, 1, NULL, W_MONITORING, 0, NULL, NULL},
    {"empty_mon_py", K_EMPTY_MON, 0, NULL, W_MONITORING, 0, NULL, NULL},
    {"empty_ef", K_EMPTY_EF, 0, NULL, W_EVALFRAME, 0, NULL, NULL},
    {"cprofile", K_CPROFILE, 1, NULL, 0, 0, NULL, NULL},
    {"cprofile_nob", K_CPROFILE, 0, NULL, 0, 0, NULL, NULL},
    {"yappi", K_YAPPI, 1, NULL, 0, 0, NULL, NULL},
    {"statsprof", K_STATSPROF, 1, SP_BASE, 0, 0, NULL, NULL},
    {"statsprof_nocomp", K_STATSPROF, 1, SP_BASE ";compensate=off", 0, 0, NULL, NULL},
    {"statsprof_nob", K_STATSPROF, 0, SP_BASE ";builtins=off", 0, 0, NULL, NULL},
    {"statsprof_ef_nob", K_STATSPROF, 0, SP_BASE ";source=evalframe;builtins=off", W_EVALFRAME_NOT_NOB, 0,
     NULL, NULL},
    {"statsprof_sp", K_STATSPROF, 1, SP_BASE ";source=setprofile", W_MONITORING, 0, NULL, NULL},
    {"statsprof_sp_nob", K_STATSPROF, 0, SP_BASE ";source=setprofile;builtins=off", W_NOT_SETPROFILE_NOB, 0,
     NULL, NULL},
};
enum { NMODES = sizeof g_modes / sizeof *g_modes };
static const char *STATSPROF_CONFIG = SP_BASE;

/* Each mode's source and floor on this interpreter: cProfile and statsprof's
 * default source use sys.monitoring from 3.12 (cProfile with CALL events
 * even when builtins=False: it filters them itself), PyEval_SetProfile
 * before, except statsprof's builtins=off on 3.11.4+ (`evalframe`: the
 * frame-evaluation source); yappi and source=setprofile always
 * PyEval_SetProfile. Python must be running (nob_is_evalframe). */
static void modes_resolve(void) {
  int ef = nob_is_evalframe();
  for (int i = 0; i < NMODES; i++) {
    mode_def *m = &g_modes[i];
    int mon = HAVE_MONITORING && m->kind != K_YAPPI && m->kind != K_EMPTY &&
              !(m->config && strstr(m->config, "source=setprofile"));
    int nob_ef = m->kind == K_STATSPROF && !m->builtins &&
                 (strstr(m->config, "source=evalframe") || (ef && !strstr(m->config, "source=")));
    m->source = m->kind == K_NONE ? NULL : nob_ef || m->kind == K_EMPTY_EF ? "evalframe" : mon ? "monitoring" : "setprofile";
    if (m->kind == K_NONE || m->kind == K_EMPTY || m->kind == K_EMPTY_MON || m->kind == K_EMPTY_EF) m->floor = NULL;
    else if (nob_ef) m->floor = "empty_ef";
    else if (!mon) m->floor = "empty";
    else m->floor = m->builtins || m->kind == K_CPROFILE ? "empty_mon" : "empty_mon_py";
    if ((m->where == W_MONITORING && !HAVE_MONITORING) || (m->where == W_EVALFRAME && !HAVE_EVALFRAME) ||
        (m->where == W_NOT_SETPROFILE_NOB && !HAVE_MONITORING && !ef) ||
        (m->where == W_EVALFRAME_NOT_NOB && (ef || !HAVE_MONITORING || !ef_exact())))
      m->on = 0;
  }
}

static PyObject *g_cprofile_mod, *g_pstats_mod, *g_yappi_mod, *g_gc_mod;

static void gc_collect(void) {
  PyObject *r = PyObject_CallMethod(g_gc_mod, "collect", NULL);
  if (!r) die_python("gc.collect");
  Py_DECREF(r);
}

/* One measured call of `run` in mode `m`: wall seconds, its thread CPU
 * seconds in *cpu, the profiler's own total_tt (sum of tottime) in
 * *total_tt, or -1 where there is none, and for cProfile the number of C
 * functions in its profile in *c_functions (else -1). */
static double measure(const mode_def *m, PyObject *run, double *cpu, double *total_tt,
                      long *c_functions, int callgrind, const char *label) {
  gc_collect();
  *total_tt = -1;
  *c_functions = -1;
  PyObject *prof = NULL;
  statsprof *sp = NULL;

  switch (m->kind) {
    case K_NONE:
      break;
    case K_EMPTY:
      PyEval_SetProfile(empty_hook, NULL);
      break;
    case K_EMPTY_MON:
#if HAVE_MONITORING
      mon_install(&empty_mon_def, m->builtins);
#endif
      break;
    case K_EMPTY_EF:
#if HAVE_EVALFRAME
      set_eval(empty_eval);
#endif
      break;
    case K_CPROFILE:
      prof = call_with_builtins(g_cprofile_mod, "Profile", m->builtins, "cProfile.Profile");
      /* builtins again in enable(): from 3.14 enable() with no arguments
       * turns them back on whatever Profile(builtins=) said. */
      Py_DECREF(call_with_builtins(prof, "enable", m->builtins, "cProfile.Profile.enable"));
      break;
    case K_YAPPI:
      Py_DECREF(call_method(g_yappi_mod, "clear_stats", NULL));
      Py_DECREF(call_with_builtins(g_yappi_mod, "start", 1, "yappi.start"));
      break;
    case K_STATSPROF:
      if (statsprof_create(m->config, &sp)) die_statsprof("statsprof_create", NULL);
      if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
      break;
  }

  double t0 = 0, t1 = 0, c0 = 0, c1 = 0;
  if (callgrind) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_TOGGLE_COLLECT;
    call_noargs(run);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT(label);
  } else {
    g_nunits = 0;
    g_units_on = 1;
    c0 = cpu_s();
    t0 = now_s();
    call_noargs(run);
    t1 = now_s();
    c1 = cpu_s();
    g_units_on = 0;
    /* Marks -> each unit's CPU time: unit i runs from the previous mark (the
     * call's start) to mark i; the return after the last mark goes to the
     * last unit. */
    if (g_nunits > 0) {
      double tail = c1 - g_unit_stamp[g_nunits - 1];
      for (int i = g_nunits - 1; i > 0; i--) g_unit_stamp[i] -= g_unit_stamp[i - 1];
      g_unit_stamp[0] -= c0;
      g_unit_stamp[g_nunits - 1] += tail;
    }
  }
  *cpu = c1 - c0;

  switch (m->kind) {
    case K_NONE:
      break;
    case K_EMPTY:
      PyEval_SetProfile(NULL, NULL);
      break;
    case K_EMPTY_MON:
#if HAVE_MONITORING
      mon_remove();
#endif
      break;
    case K_EMPTY_EF:
#if HAVE_EVALFRAME
      set_eval(NULL);
#endif
      break;
    case K_CPROFILE: {
      Py_DECREF(call_method(prof, "disable", NULL));
      PyObject *st = call_method(g_pstats_mod, "Stats", "(O)", prof);
      PyObject *tt = PyObject_GetAttrString(st, "total_tt");
      if (!tt) die_python("pstats.Stats.total_tt");
      *total_tt = PyFloat_AsDouble(tt);
      Py_DECREF(tt);
      /* C functions in the profile: their file is "~". */
      PyObject *stats = PyObject_GetAttrString(st, "stats");
      if (!stats || !PyDict_Check(stats)) die_python("pstats.Stats.stats");
      *c_functions = 0;
      PyObject *key, *value;
      for (Py_ssize_t pos = 0; PyDict_Next(stats, &pos, &key, &value);) {
        PyObject *file = PyTuple_Check(key) && PyTuple_Size(key) == 3 ? PyTuple_GetItem(key, 0) : NULL;
        if (file && PyUnicode_Check(file) && PyUnicode_CompareWithASCIIString(file, "~") == 0)
          ++*c_functions;
      }
      Py_DECREF(stats);
      Py_DECREF(st);
      Py_DECREF(prof);
      break;
    }
    case K_YAPPI: {
      Py_DECREF(call_method(g_yappi_mod, "stop", NULL));
      PyObject *stats = call_method(g_yappi_mod, "get_func_stats", NULL);
      PyObject *it = PyObject_GetIter(stats);
      if (!it) die_python("iter(yappi.get_func_stats())");
      double sum = 0;
      for (PyObject *s; (s = PyIter_Next(it));) {
        PyObject *tsub = PyObject_GetAttrString(s, "tsub");
        if (!tsub) die_python("YFuncStat.tsub");
        sum += PyFloat_AsDouble(tsub);
        Py_DECREF(tsub);
        Py_DECREF(s);
      }
      if (PyErr_Occurred()) die_python("yappi stats");
      Py_DECREF(it);
      Py_DECREF(stats);
      Py_DECREF(call_method(g_yappi_mod, "clear_stats", NULL));
      *total_tt = sum;
      break;
    }
    case K_STATSPROF: {
      if (statsprof_stop(sp)) die_statsprof("statsprof_stop", sp);
      statsprof_stats_profile *s;
      if (statsprof_snapshot(sp, STATSPROF_CUMULATIVE, &s)) die_statsprof("statsprof_snapshot", sp);
      *total_tt = s->total_tt;
      statsprof_stats_profile_free(s);
      statsprof_destroy(sp);
      break;
    }
  }
  return t1 - t0;
}

/* ---- per workload ------------------------------------------------------- */

/* The events one run delivers: PyEval_SetProfile's (call, return, c_call,
 * c_return + c_exception) and, on 3.12+, sys.monitoring's per event. */
static void count_events(const char *name, const char *size, PyObject *run) {
  memset(g_events, 0, sizeof g_events);
  PyEval_SetProfile(counting_hook, NULL);
  call_noargs(run);
  PyEval_SetProfile(NULL, NULL);
  memset(g_mon_events, 0, sizeof g_mon_events);
#if HAVE_MONITORING
  mon_install(&counting_mon_def, 1);
  call_noargs(run);
  mon_remove();
#endif
  uint64_t calls = g_events[PyTrace_CALL], returns = g_events[PyTrace_RETURN];
  uint64_t c_calls = g_events[PyTrace_C_CALL];
  uint64_t c_returns = g_events[PyTrace_C_RETURN] + g_events[PyTrace_C_EXCEPTION];
  printf("{\"kind\":\"workload\",\"workload\":\"%s\",\"size\":\"%s\",\"events\":%llu,"
         "\"py_events\":%llu,\"calls\":%llu,\"returns\":%llu,\"c_calls\":%llu,"
         "\"c_returns\":%llu,\"monitoring_events\":{",
         name, size, (unsigned long long)(calls + returns + c_calls + c_returns),
         (unsigned long long)(calls + returns), (unsigned long long)calls,
         (unsigned long long)returns, (unsigned long long)c_calls, (unsigned long long)c_returns);
  for (int i = 0; HAVE_MONITORING && i < MON_NEVENTS; i++)
    printf("%s\"%s\":%llu", i ? "," : "", mon_event_names[i], (unsigned long long)g_mon_events[i]);
  printf("}}\n");
  fflush(stdout);
}

static void bench_workload(PyObject *workloads, const char *name, const char *size, int rounds,
                           int callgrind) {
  PyObject *unit = PyCFunction_New(&unit_def, NULL);
  if (!unit) die_python("bench_unit");
  PyObject *run = call_method(workloads, "make", "(ssOO)", name, size, Py_None, unit);
  Py_DECREF(unit);

  /* Warm up unprofiled (imports, caches, specialization), then count. */
  call_noargs(run);
  count_events(name, size, run);

  const mode_def *order[NMODES];
  int n = 0;
  for (int m = 0; m < NMODES; m++)
    if (g_modes[m].on) order[n++] = &g_modes[m];

  if (callgrind) rounds = 1;
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < n; k++) {
      const mode_def *m = order[(k + r) % n];
      char label[128];
      snprintf(label, sizeof label, "bench %s %s", name, m->name);
      /* From 3.12 a change of events re-instruments each code object at its
       * next run: the profilers pay that as part of starting, but no hook
       * should not pay for undoing the previous mode's. */
      if (m->kind == K_NONE) call_noargs(run);
      double tt, cpu;
      long cfuncs;
      double secs = measure(m, run, &cpu, &tt, &cfuncs, callgrind, label);
      if (callgrind) {
        printf("{\"kind\":\"callgrind\",\"workload\":\"%s\",\"mode\":\"%s\",\"label\":\"%s\"}\n",
               name, m->name, label);
      } else {
        printf("{\"kind\":\"time\",\"workload\":\"%s\",\"mode\":\"%s\",\"round\":%d,"
               "\"seconds\":%.9g,\"cpu_seconds\":%.9g,\"total_tt\":%.9g,\"c_functions\":%ld,"
               "\"units\":[",
               name, m->name, r, secs, cpu, tt, cfuncs);
        for (int i = 0; i < g_nunits; i++) printf("%s%.6g", i ? "," : "", g_unit_stamp[i]);
        printf("]}\n");
      }
      fflush(stdout);
    }
  }
  Py_DECREF(run);
}

/* ---- snapshot cost, tick cost, memory per function ---------------------- */

static size_t malloc_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* sys.getallocatedblocks(): blocks held by pymalloc (small Python objects,
 * and small PyMem_Malloc buffers such as a code object's co_extra). */
static long pymalloc_blocks(void) {
  PyObject *fn = PySys_GetObject("getallocatedblocks"); /* borrowed */
  PyObject *r = fn ? PyObject_CallNoArgs(fn) : NULL;
  if (!r) die_python("sys.getallocatedblocks");
  long n = PyLong_AsLong(r);
  Py_DECREF(r);
  return n;
}

static void bench_snapshot(PyObject *workloads, long nfuncs, int reps) {
  PyObject *call_all = call_method(workloads, "make_functions", "(l)", nfuncs);
  call_noargs(call_all); /* warm, unprofiled */
  gc_collect();

  /* What CPython itself keeps per function once any profile function has
   * seen it (the floor), measured first so that it is not counted below. */
  long fb0 = pymalloc_blocks();
  size_t fm0 = malloc_in_use();
  PyEval_SetProfile(empty_hook, NULL);
  call_noargs(call_all);
  call_noargs(call_all);
  PyEval_SetProfile(NULL, NULL);
  size_t fm1 = malloc_in_use();
  long fb1 = pymalloc_blocks();

  /* Memory: everything statsprof allocated to track these functions once
   * called twice and snapshotted twice (table, labels, edges, the saved
   * delta counters, per-thread recursion levels, co_extra slots). */
  long b0 = pymalloc_blocks();
  size_t m0 = malloc_in_use();
  statsprof *sp;
  if (statsprof_create(STATSPROF_CONFIG, &sp)) die_statsprof("statsprof_create", NULL);
  if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
  statsprof_stats_profile *s;
  call_noargs(call_all);
  if (statsprof_snapshot(sp, STATSPROF_DELTA, &s)) die_statsprof("statsprof_snapshot", sp);
  statsprof_stats_profile_free(s);
  call_noargs(call_all);
  if (statsprof_snapshot(sp, STATSPROF_DELTA, &s)) die_statsprof("statsprof_snapshot", sp);
  size_t nprof = s->nfunc_profiles;
  statsprof_stats_profile_free(s);
  size_t m1 = malloc_in_use();
  long b1 = pymalloc_blocks();

  /* Delta snapshot: every function was called since the previous one. */
  double best_delta = 1e30, best_cum = 1e30;
  for (int i = 0; i < reps; i++) {
    call_noargs(call_all);
    double t0 = now_s();
    if (statsprof_snapshot(sp, STATSPROF_DELTA, &s)) die_statsprof("statsprof_snapshot", sp);
    statsprof_stats_profile_free(s);
    double t1 = now_s();
    if (t1 - t0 < best_delta) best_delta = t1 - t0;
  }
  for (int i = 0; i < reps; i++) {
    double t0 = now_s();
    if (statsprof_snapshot(sp, STATSPROF_CUMULATIVE, &s)) die_statsprof("statsprof_snapshot", sp);
    statsprof_stats_profile_free(s);
    double t1 = now_s();
    if (t1 - t0 < best_cum) best_cum = t1 - t0;
  }
  /* A tick that is due: a delta snapshot handed to the (no) sinks. */
  double best_emit = 1e30;
  for (int i = 0; i < reps; i++) {
    call_noargs(call_all);
    double t0 = now_s();
    if (statsprof_emit_now(sp)) die_statsprof("statsprof_emit_now", sp);
    double t1 = now_s();
    if (t1 - t0 < best_emit) best_emit = t1 - t0;
  }
  statsprof_destroy(sp);
  printf("{\"kind\":\"snapshot\",\"functions\":%ld,\"profiles\":%zu,\"delta_s\":%.9g,"
         "\"cumulative_s\":%.9g,\"emit_s\":%.9g,\"malloc_bytes\":%lld,\"pymalloc_blocks\":%ld,"
         "\"floor_malloc_bytes\":%lld,\"floor_pymalloc_blocks\":%ld}\n",
         nfuncs, nprof, best_delta, best_cum, best_emit, (long long)m1 - (long long)m0, b1 - b0,
         (long long)fm1 - (long long)fm0, fb1 - fb0);
  fflush(stdout);
  Py_DECREF(call_all);
}

static void bench_tick(long n) {
  statsprof *sp;
  if (statsprof_create(STATSPROF_CONFIG, &sp)) die_statsprof("statsprof_create", NULL);
  if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
  double best = 1e30;
  int emitted = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now_s();
    for (long i = 0; i < n; i++) emitted |= statsprof_tick(sp);
    double t1 = now_s();
    if (t1 - t0 < best) best = t1 - t0;
  }
  statsprof_destroy(sp);
  printf("{\"kind\":\"tick\",\"ticks\":%ld,\"ns_per_tick\":%.4g,\"emitted\":%d}\n", n,
         best * 1e9 / (double)n, emitted);
  fflush(stdout);
}

/* What one clock_gettime(CLOCK_MONOTONIC) costs here: cProfile's timer
 * (_PyTime_GetPerfCounter) reads it twice per call, so it sets a lower bound
 * on cProfile's own cost per event on this machine. And what one rdtsc
 * costs, statsprof's clock at every event (back to back: its throughput,
 * which other work overlaps in part). */
static inline uint64_t bench_rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
  uint32_t lo, hi;
  __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
#else
  return 0;
#endif
}

static void bench_clock(long n) {
  double best = 1e30, best_tsc = 1e30;
  volatile long sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    struct timespec ts;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
      clock_gettime(CLOCK_MONOTONIC, &ts);
      sink += ts.tv_nsec;
    }
    double t1 = now_s();
    if (t1 - t0 < best) best = t1 - t0;
    for (long i = 0; i < n; i++) sink += (long)bench_rdtsc();
    double t2 = now_s();
    if (t2 - t1 < best_tsc) best_tsc = t2 - t1;
  }
  (void)sink;
#if defined(__x86_64__) || defined(__i386__)
  printf("{\"kind\":\"clock\",\"reads\":%ld,\"ns_per_clock_gettime\":%.4g,\"ns_per_rdtsc\":%.4g}\n", n,
         best * 1e9 / (double)n, best_tsc * 1e9 / (double)n);
#else
  printf("{\"kind\":\"clock\",\"reads\":%ld,\"ns_per_clock_gettime\":%.4g}\n", n, best * 1e9 / (double)n);
#endif
  fflush(stdout);
}

/* ---- production mode: long runs with duty-cycled profilers -------------- */

/* The delta records of a production-mode profiler, summed: a host sink
 * (writer=sync, so it runs inside statsprof_emit_now on this thread). */
static struct {
  pthread_mutex_t lock;
  long records;
  double interval_s, observed_s, overhead_s, total_tt;
} g_cap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int cap_emit(void *ctx, const statsprof_stats_profile *r) {
  (void)ctx;
  if (r->kind != STATSPROF_RECORD_DELTA) return 0;
  double iv = (double)(r->end_ns - r->start_ns) * 1e-9;
  pthread_mutex_lock(&g_cap.lock);
  g_cap.records++;
  g_cap.interval_s += iv;
  g_cap.observed_s += r->observed_s;
  g_cap.overhead_s += r->overhead_est * iv;
  g_cap.total_tt += r->total_tt;
  pthread_mutex_unlock(&g_cap.lock);
  return 0;
}

static const statsprof_sink_ops cap_ops = {
    .version = STATSPROF_SINK_VERSION, .name = "benchcap", .emit = cap_emit};

static int cap_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                    size_t errlen) {
  (void)arg, (void)err, (void)errlen;
  *ops = &cap_ops;
  *ctx = NULL;
  return 0;
}

static void cap_reset(void) {
  pthread_mutex_lock(&g_cap.lock);
  g_cap.records = 0;
  g_cap.interval_s = g_cap.observed_s = g_cap.overhead_s = g_cap.total_tt = 0;
  pthread_mutex_unlock(&g_cap.lock);
}

/* Units: the measured calls cut into short pieces (a game frame, or one
 * run() of the other workloads), each timed and classified by whether
 * statsprof profiled this thread (hook_on) at its start or its end
 * (in a window or not). The time of the units outside windows is the
 * no-hook baseline of the same run, so slowdown can be measured within one
 * run: what another process does to the machine slows both kinds alike. */
static struct {
  int active;
  int hook_at_start;
  int was_on; /* the hook's state when last looked at */
  long closes; /* windows seen closing (on, then off) */
  double last_cpu, last_wall;
  long n_in, n_out;
  double in_cpu, out_cpu, in_wall, out_wall;
} g_units;

/* sys.monitoring (3.12+): a window is open while statsprof's tool has
 * events; its id (3 or 4, the first free) is looked up after each start. */
static PyObject *g_mon_get_events; /* sys.monitoring.get_events, or NULL */
static int g_mon_tool = -1;

static void mon_tool_find(void) {
  g_mon_tool = -1;
  Py_CLEAR(g_mon_get_events);
  PyObject *mon = PySys_GetObject("monitoring"); /* borrowed; NULL before 3.12 */
  if (!mon) return;
  g_mon_get_events = PyObject_GetAttrString(mon, "get_events");
  if (!g_mon_get_events) die_python("sys.monitoring.get_events");
  for (int id = 0; id < 6 && g_mon_tool < 0; id++) {
    PyObject *name = PyObject_CallMethod(mon, "get_tool", "i", id);
    if (!name) die_python("sys.monitoring.get_tool");
    if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "statsprof") == 0) g_mon_tool = id;
    Py_DECREF(name);
  }
}

/* Whether this thread is profiled now (in a window): statsprof's profile
 * function is installed on it (the setprofile source) or its
 * sys.monitoring tool has events; notes when a window has closed since the
 * last look. */
static int hook_on(void) {
  int on = PyThreadState_Get()->c_profilefunc != NULL;
  if (!on && g_mon_tool >= 0) {
    PyObject *ev = PyObject_CallFunction(g_mon_get_events, "i", g_mon_tool);
    if (!ev) die_python("sys.monitoring.get_events");
    on = PyLong_AsLong(ev) != 0;
    Py_DECREF(ev);
  }
  if (g_units.was_on && !on) g_units.closes++;
  g_units.was_on = on;
  return on;
}

static void units_begin(void) {
  memset(&g_units, 0, sizeof g_units);
  g_units.active = 1;
  g_units.hook_at_start = g_units.was_on = hook_on();
  g_units.last_wall = now_s();
  g_units.last_cpu = proc_cpu_s();
}

/* Ends the current unit (before a tick can change the window). */
static void unit_end(void) {
  if (!g_units.active) return;
  double c = proc_cpu_s(), w = now_s();
  if (g_units.hook_at_start || hook_on()) {
    g_units.n_in++;
    g_units.in_cpu += c - g_units.last_cpu;
    g_units.in_wall += w - g_units.last_wall;
  } else {
    g_units.n_out++;
    g_units.out_cpu += c - g_units.last_cpu;
    g_units.out_wall += w - g_units.last_wall;
  }
  g_units.last_cpu = c;
  g_units.last_wall = w;
}

/* The next unit starts (its clock at the previous unit's end: the tick in
 * between is paid by the unit it opened or closed a window for). */
static void unit_start(void) {
  if (g_units.active) g_units.hook_at_start = hook_on();
}

/* The profiler the workload's per-frame tick drives (NULL: no hook mode,
 * or trigger=timer), and the one whose frames it marks (--game-run). */
static statsprof *g_tick_sp, *g_mark_sp;
static long g_ticks;

static PyObject *py_tick(PyObject *self, PyObject *unused) {
  (void)self, (void)unused;
  g_ticks++;
  unit_end();
  if (g_mark_sp && statsprof_frame_mark(g_mark_sp) < 0) {
    PyErr_Format(PyExc_RuntimeError, "statsprof_frame_mark: %s", statsprof_errmsg(g_mark_sp));
    return NULL;
  }
  if (g_tick_sp && statsprof_tick(g_tick_sp) < 0) {
    PyErr_Format(PyExc_RuntimeError, "statsprof_tick: %s", statsprof_errmsg(g_tick_sp));
    return NULL;
  }
  unit_start();
  Py_RETURN_NONE;
}

static PyMethodDef tick_def = {"bench_tick", py_tick, METH_NOARGS,
                               "statsprof_tick on the profiler being measured (bench_host)."};

#define MAX_PROD_MODES 8

typedef struct prod_mode {
  const char *name;
  const char *config; /* NULL: no hook */
  int fraction_div;   /* runs 1/fraction_div of the calls */
} prod_mode;

typedef struct prod_result {
  double wall, cpu, proc_cpu;
  long records;
  double interval_s, observed_s, overhead_s, total_tt;
  long ticks;
  long n_in, n_out; /* units inside and outside windows, and their times */
  double in_cpu, out_cpu, in_wall, out_wall;
  double lead_in; /* seconds run before the measured calls */
} prod_result;

/* One run() call: a unit unless the game ticked (a unit per frame), then
 * statsprof_tick unless the windows are the timer's. */
static void run_unit(PyObject *run, statsprof *sp, int timer) {
  long ticks = g_ticks;
  call_noargs(run);
  if (g_ticks == ticks) unit_end();
  if (sp && !timer && statsprof_tick(sp) < 0) die_statsprof("statsprof_tick", sp);
  if (g_ticks == ticks) unit_start();
}

static void prod_measure(const prod_mode *m, PyObject *run, long iters, double lead_in,
                         prod_result *out) {
  /* With trigger=timer only the timer thread moves the windows. */
  int timer = m->config && strstr(m->config, "trigger=timer") != NULL;
  gc_collect();
  statsprof *sp = NULL;
  if (m->config) {
    char config[1024];
    snprintf(config, sizeof config, "sink=benchcap;writer=sync;%s", m->config);
    if (statsprof_create(config, &sp)) die_statsprof("statsprof_create", NULL);
    if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
    mon_tool_find();
  }
  g_tick_sp = timer ? NULL : sp;
  /* Lead-in: run unmeasured for at least lead_in seconds and, in production
   * mode, until the second window has closed, so the measured calls start at
   * an arbitrary point of the steady window cycle: not in the window that
   * statsprof_start opens (which sees every function for the first time, and
   * with trigger=timer lasts until the timer's first wake), nor in the gap
   * that max_overhead sizes after it. At most two minutes. */
  double lead = 0;
  if (sp && lead_in > 0) {
    int windowed = strstr(m->config, "duty=") || strstr(m->config, "max_overhead=") ||
                   strstr(m->config, "window=") || strstr(m->config, "every=");
    double start = now_s(), end = start + lead_in;
    units_begin();
    for (;;) {
      run_unit(run, sp, timer);
      double now = now_s();
      if (now >= end && (!windowed || g_units.closes >= 2 || now >= start + 120)) break;
    }
    g_units.active = 0;
    lead = now_s() - start;
  }
  /* The records from here on cover the measured calls only. */
  if (sp && statsprof_emit_now(sp) < 0) die_statsprof("statsprof_emit_now", sp);
  cap_reset();
  g_ticks = 0;
  double p0 = proc_cpu_s(), c0 = cpu_s(), t0 = now_s();
  units_begin();
  for (long i = 0; i < iters; i++) run_unit(run, sp, timer);
  g_units.active = 0;
  double t1 = now_s(), c1 = cpu_s(), p1 = proc_cpu_s();
  *out = (prod_result){.wall = t1 - t0, .cpu = c1 - c0, .proc_cpu = p1 - p0, .ticks = g_ticks,
                       .n_in = g_units.n_in, .n_out = g_units.n_out, .in_cpu = g_units.in_cpu,
                       .out_cpu = g_units.out_cpu, .in_wall = g_units.in_wall,
                       .out_wall = g_units.out_wall, .lead_in = lead};
  if (sp) {
    if (statsprof_emit_now(sp) < 0) die_statsprof("statsprof_emit_now", sp);
    pthread_mutex_lock(&g_cap.lock);
    out->records = g_cap.records;
    out->interval_s = g_cap.interval_s;
    out->observed_s = g_cap.observed_s;
    out->overhead_s = g_cap.overhead_s;
    out->total_tt = g_cap.total_tt;
    pthread_mutex_unlock(&g_cap.lock);
    g_tick_sp = NULL;
    if (statsprof_stop(sp)) die_statsprof("statsprof_stop", sp);
    statsprof_destroy(sp);
    g_mon_tool = -1; /* freed with the profiler */
  }
  g_tick_sp = NULL;
}

static void bench_production(PyObject *workloads, const char *name, const char *size, int rounds,
                             double seconds, double lead_in, const prod_mode *modes,
                             int nmodes) {
  PyObject *tick = PyCFunction_New(&tick_def, NULL);
  if (!tick) die_python("bench_tick");
  PyObject *run = call_method(workloads, "make", "(ssO)", name, size, tick);
  Py_DECREF(tick);

  /* Warm up unprofiled, then size N from the best of three no-hook calls. */
  call_noargs(run);
  double best = 1e30;
  for (int i = 0; i < 3; i++) {
    double c0 = cpu_s();
    call_noargs(run);
    double c = cpu_s() - c0;
    if (c < best) best = c;
  }
  long iters = (long)(seconds / best + 0.5);
  if (iters < 1) iters = 1;
  printf("{\"kind\":\"prod_workload\",\"workload\":\"%s\",\"size\":\"%s\",\"iterations\":%ld,"
         "\"call_cpu_seconds\":%.9g}\n",
         name, size, iters, best);
  fflush(stdout);

  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < nmodes; k++) {
      const prod_mode *m = &modes[(k + r) % nmodes];
      long n = iters / m->fraction_div;
      if (n < 1) n = 1;
      prod_result res;
      prod_measure(m, run, n, lead_in, &res);
      printf("{\"kind\":\"prod_time\",\"workload\":\"%s\",\"mode\":\"%s\",\"round\":%d,"
             "\"iterations\":%ld,\"seconds\":%.9g,\"cpu_seconds\":%.9g,\"proc_cpu_seconds\":%.9g,"
             "\"records\":%ld,\"interval_s\":%.9g,\"observed_s\":%.9g,\"overhead_s\":%.9g,"
             "\"total_tt\":%.9g,\"ticks\":%ld,\"units_in\":%ld,\"units_out\":%ld,"
             "\"in_cpu\":%.9g,\"out_cpu\":%.9g,\"in_wall\":%.9g,\"out_wall\":%.9g,"
             "\"lead_in_s\":%.9g}\n",
             name, m->name, r, n, res.wall, res.cpu, res.proc_cpu, res.records, res.interval_s,
             res.observed_s, res.overhead_s, res.total_tt, res.ticks, res.n_in, res.n_out,
             res.in_cpu, res.out_cpu, res.in_wall, res.out_wall, res.lead_in);
      fflush(stdout);
    }
  }
  Py_DECREF(run);
}

/* ---- one profiled game, for the faithfulness comparison ------------------ */

static void game_run(PyObject *workloads, const char *config, long frames, long seed) {
  int timer = strstr(config, "trigger=timer") != NULL;
  PyObject *tick = PyCFunction_New(&tick_def, NULL);
  if (!tick) die_python("bench_tick");
  PyObject *run = call_method(workloads, "make_game_run", "(llO)", frames, seed, tick);
  Py_DECREF(tick);
  statsprof *sp;
  if (statsprof_create(config, &sp)) die_statsprof("statsprof_create", NULL);
  if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
  g_tick_sp = timer ? NULL : sp;
  g_mark_sp = sp;
  double c0 = proc_cpu_s(), t0 = now_s();
  statsprof_frame_mark(sp); /* frame 1 starts now, as in game_host */
  call_noargs(run);
  double t1 = now_s(), c1 = proc_cpu_s();
  g_tick_sp = g_mark_sp = NULL;
  if (statsprof_stop(sp)) die_statsprof("statsprof_stop", sp);
  statsprof_destroy(sp);
  Py_DECREF(run);
  printf("{\"kind\":\"game_run\",\"frames\":%ld,\"seed\":%ld,\"seconds\":%.9g,"
         "\"proc_cpu_seconds\":%.9g,\"timer\":%s}\n",
         frames, seed, t1 - t0, c1 - c0, timer ? "true" : "false");
  fflush(stdout);
}

/* ---- main --------------------------------------------------------------- */

static int finish(PyObject *workloads) {
  Py_DECREF(workloads);
  Py_XDECREF(g_yappi_mod);
  Py_DECREF(g_pstats_mod);
  Py_DECREF(g_cprofile_mod);
  Py_DECREF(g_gc_mod);
  return Py_FinalizeEx() < 0 ? 1 : 0;
}

/* bench_workloads.names(): the workloads this interpreter can run. */
static PyObject *workload_names(PyObject *workloads) {
  PyObject *names = call_method(workloads, "names", NULL);
  if (!PyTuple_Check(names)) die_python("bench_workloads.names() is not a tuple");
  return names;
}

static int wanted(const char *name, const char *const *only, int nonly) {
  int yes = nonly == 0;
  for (int k = 0; k < nonly; k++) yes |= !strcmp(only[k], name);
  return yes;
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_host --workloads FILE [--size full|quick|callgrind] [--rounds N]\n"
          "                  [--workload NAME]... [--mode NAME]... [--no-extras] [--callgrind]\n"
          "       bench_host --workloads FILE --production [--size full|quick] [--rounds N]\n"
          "                  [--seconds S] [--lead-in S] [--workload NAME]...\n"
          "                  [--prod-mode NAME=CONFIG]... [--short NAME]...\n"
          "       bench_host --workloads FILE --game-run CONFIG --frames N [--seed S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *workloads_path = NULL, *size = "full";
  const char *only_workloads[16];
  int nonly = 0, rounds = 7, extras = 1, callgrind = 0, modes_given = 0;
  int production = 0, nprod = 0, rounds_given = 0;
  double seconds = 3, lead_in = 0;
  const char *game_config = NULL;
  long frames = 0, seed = 1;
  prod_mode prod[MAX_PROD_MODES];
  const char *shorts[MAX_PROD_MODES];
  int nshort = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--workloads") && v) workloads_path = argv[++i];
    else if (!strcmp(a, "--size") && v) size = argv[++i];
    else if (!strcmp(a, "--rounds") && v) rounds = atoi(argv[++i]), rounds_given = 1;
    else if (!strcmp(a, "--production")) production = 1;
    else if (!strcmp(a, "--seconds") && v) seconds = atof(argv[++i]);
    else if (!strcmp(a, "--lead-in") && v) lead_in = atof(argv[++i]);
    else if (!strcmp(a, "--game-run") && v) game_config = argv[++i];
    else if (!strcmp(a, "--frames") && v) frames = atol(argv[++i]);
    else if (!strcmp(a, "--seed") && v) seed = atol(argv[++i]);
    else if (!strcmp(a, "--short") && v && nshort < MAX_PROD_MODES) shorts[nshort++] = argv[++i];
    else if (!strcmp(a, "--prod-mode") && v && nprod < MAX_PROD_MODES) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v) usage();
      prod[nprod++] = (prod_mode){.name = strndup(v, (size_t)(eq - v)), .config = eq + 1,
                                  .fraction_div = 1};
      i++;
    }
    else if (!strcmp(a, "--workload") && v && nonly < 16) only_workloads[nonly++] = argv[++i];
    else if (!strcmp(a, "--mode") && v) {
      int found = 0;
      for (int m = 0; m < NMODES; m++)
        if (!strcmp(v, g_modes[m].name)) g_modes[m].on = found = 1;
      if (!found) {
        fprintf(stderr, "bench_host: unknown mode '%s'\n", v);
        usage();
      }
      modes_given = 1;
      i++;
    } else if (!strcmp(a, "--no-extras")) extras = 0;
    else if (!strcmp(a, "--callgrind")) callgrind = 1;
    else usage();
  }
  if (!workloads_path || rounds < 1 || seconds <= 0) usage();
  if (!modes_given)
    for (int m = 0; m < NMODES; m++) g_modes[m].on = 1;
  Py_Initialize();
  modes_resolve();
  g_gc_mod = import("gc");
  g_cprofile_mod = import("cProfile");
  g_pstats_mod = import("pstats");
  g_yappi_mod = PyImport_ImportModule("yappi");
  if (g_yappi_mod) {
    Py_DECREF(call_method(g_yappi_mod, "set_clock_type", "(s)", "wall"));
  } else {
    PyErr_Clear();
    for (int m = 0; m < NMODES; m++)
      if (g_modes[m].kind == K_YAPPI) g_modes[m].on = 0;
  }
#if HAVE_MONITORING
  g_monitoring = PySys_GetObject("monitoring"); /* borrowed; sys keeps it */
  if (!g_monitoring) die_python("sys.monitoring");
#endif

  /* import bench_workloads from the directory of the given file. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", workloads_path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else snprintf(dir, sizeof dir, ".");
  PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
  PyObject *d = PyUnicode_FromString(dir);
  if (!sys_path || !d || PyList_Insert(sys_path, 0, d)) die_python("sys.path.insert");
  Py_DECREF(d);
  PyObject *workloads = import("bench_workloads");

  if (game_config) {
    if (frames < 1) usage();
    game_run(workloads, game_config, frames, seed);
    return finish(workloads);
  }

  if (production) {
    if (!rounds_given) rounds = 3;
    if (statsprof_register_sink("benchcap", cap_open)) die_statsprof("statsprof_register_sink", NULL);
    /* `none` first, then the given modes. */
    prod_mode modes[MAX_PROD_MODES + 1];
    int nmodes = 0;
    modes[nmodes++] = (prod_mode){.name = "none", .config = NULL, .fraction_div = 1};
    for (int k = 0; k < nprod; k++) {
      modes[nmodes] = prod[k];
      for (int j = 0; j < nshort; j++)
        if (!strcmp(shorts[j], prod[k].name)) modes[nmodes].fraction_div = 4;
      nmodes++;
    }
    printf("{\"kind\":\"prod_info\",\"python\":\"%s\",\"statsprof\":\"%s\",\"size\":\"%s\","
           "\"rounds\":%d,\"seconds\":%.9g,\"lead_in\":%.9g,\"modes\":[",
           PY_VERSION, STATSPROF_VERSION_STRING, size, rounds, seconds, lead_in);
    for (int k = 0; k < nmodes; k++)
      printf("%s{\"name\":\"%s\",\"config\":%s%s%s,\"fraction\":%g}", k ? "," : "",
             modes[k].name, modes[k].config ? "\"" : "", modes[k].config ? modes[k].config : "null",
             modes[k].config ? "\"" : "", 1.0 / modes[k].fraction_div);
    printf("]}\n");
    fflush(stdout);
    PyObject *pnames = workload_names(workloads);
    for (Py_ssize_t i = 0; i < PyTuple_Size(pnames); i++) {
      const char *name = PyUnicode_AsUTF8(PyTuple_GetItem(pnames, i));
      if (wanted(name, only_workloads, nonly))
        bench_production(workloads, name, size, rounds, seconds, lead_in, modes, nmodes);
    }
    Py_DECREF(pnames);
    return finish(workloads);
  }

  PyObject *origin = call_method(workloads, "docutils_origin", NULL);
  printf("{\"kind\":\"info\",\"python\":\"%s\",\"statsprof\":\"%s\",\"yappi\":%s,"
         "\"size\":\"%s\",\"rounds\":%d,\"callgrind\":%s,\"callgrind_requests\":%s,"
         "\"statsprof_config\":\"%s\",\"docutils\":\"%s\",\"modes\":[",
         PY_VERSION, STATSPROF_VERSION_STRING, g_yappi_mod ? "true" : "false", size,
         callgrind ? 1 : rounds, callgrind ? "true" : "false", HAVE_CALLGRIND ? "true" : "false",
         STATSPROF_CONFIG, origin == Py_None ? "" : PyUnicode_AsUTF8(origin));
  Py_DECREF(origin);
  for (int m = 0, first = 1; m < NMODES; m++)
    if (g_modes[m].on) {
      printf("%s\"%s\"", first ? "" : ",", g_modes[m].name);
      first = 0;
    }
  printf("],\"mode_info\":{");
  for (int m = 0, first = 1; m < NMODES; m++) {
    const mode_def *d = &g_modes[m];
    if (!d->on) continue;
    printf("%s\"%s\":{\"source\":%s%s%s,\"floor\":%s%s%s,\"builtins\":%s,\"config\":%s%s%s}",
           first ? "" : ",", d->name, d->source ? "\"" : "", d->source ? d->source : "null",
           d->source ? "\"" : "", d->floor ? "\"" : "", d->floor ? d->floor : "null",
           d->floor ? "\"" : "",
           d->builtins ? "true" : "false",
           d->config ? "\"" : "", d->config ? d->config : "null", d->config ? "\"" : "");
    first = 0;
  }
  printf("}}\n");
  fflush(stdout);

  PyObject *names = workload_names(workloads);
  for (Py_ssize_t i = 0; i < PyTuple_Size(names); i++) {
    const char *name = PyUnicode_AsUTF8(PyTuple_GetItem(names, i));
    if (wanted(name, only_workloads, nonly)) bench_workload(workloads, name, size, rounds, callgrind);
  }
  Py_DECREF(names);

  if (extras && !callgrind) {
    int reps = strcmp(size, "full") ? 5 : 20;
    bench_snapshot(workloads, 1000, reps);
    bench_snapshot(workloads, 10000, reps);
    bench_tick(strcmp(size, "full") ? 200000 : 1000000);
    bench_clock(strcmp(size, "full") ? 200000 : 1000000);
  }
  return finish(workloads);
}
