/* bench_host.c — the measuring half of tools/bench.
 *
 * Embeds CPython, loads tools/bench_workloads.py and measures, in this one
 * process, what each profiler costs on each workload. tools/bench runs it,
 * reads the JSON lines it prints on stdout and makes the table; run it by
 * hand only to debug a measurement:
 *
 *   bench_host --workloads tools/bench_workloads.py [--size full|quick|callgrind]
 *              [--rounds 7] [--workload NAME]... [--mode NAME]...
 *              [--no-extras] [--callgrind]
 *
 * Modes (the profile function installed during the measured call):
 *   none            no profile function
 *   empty           a C profile function that returns 0: the floor that every
 *                   PyEval_SetProfile profiler pays before doing any work
 *   cprofile        cProfile.Profile() (builtins on), enabled from C
 *   yappi           yappi, wall clock, builtins on (when importable)
 *   statsprof       statsprof_create("sink=none;interval=1h")
 *   statsprof_nocomp  the same with compensate=off (when the config knows it)
 *
 * For each workload the events a run delivers are counted once with a
 * counting profile function; then R rounds run every mode once each,
 * round-robin, in an order rotated every round, so slow drift of a noisy
 * machine hits all modes alike. Every measured call is preceded by a full
 * garbage collection. A profiler is created fresh for every measured call,
 * so its first-sight work (labels, table entries) is part of its cost.
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

/* ---- modes -------------------------------------------------------------- */

enum mode { M_NONE, M_EMPTY, M_CPROFILE, M_YAPPI, M_STATSPROF, M_STATSPROF_NOCOMP, M_COUNT };
static const char *mode_names[M_COUNT] = {"none", "empty", "cprofile", "yappi", "statsprof",
                                          "statsprof_nocomp"};
static int mode_on[M_COUNT];

static PyObject *g_cprofile_mod, *g_pstats_mod, *g_yappi_mod, *g_gc_mod;
static const char *STATSPROF_CONFIG = "sink=none;interval=1h";
static const char *STATSPROF_NOCOMP_CONFIG = "sink=none;interval=1h;compensate=off";

/* One measured call of `run` in mode `m`: wall seconds, its thread CPU
 * seconds in *cpu, and the profiler's own total_tt (sum of tottime) in
 * *total_tt, or -1 where there is none. */
static double measure(enum mode m, PyObject *run, double *cpu, double *total_tt, int callgrind,
                      const char *label) {
  PyObject *r = PyObject_CallMethod(g_gc_mod, "collect", NULL);
  if (!r) die_python("gc.collect");
  Py_DECREF(r);
  *total_tt = -1;
  PyObject *prof = NULL;
  statsprof *sp = NULL;

  switch (m) {
    case M_NONE:
      break;
    case M_EMPTY:
      PyEval_SetProfile(empty_hook, NULL);
      break;
    case M_CPROFILE:
      prof = call_method(g_cprofile_mod, "Profile", NULL);
      Py_DECREF(call_method(prof, "enable", NULL));
      break;
    case M_YAPPI:
      Py_DECREF(call_method(g_yappi_mod, "clear_stats", NULL));
      {
        PyObject *start = PyObject_GetAttrString(g_yappi_mod, "start");
        PyObject *kw = Py_BuildValue("{s:O}", "builtins", Py_True);
        PyObject *args = PyTuple_New(0);
        PyObject *res = start && kw && args ? PyObject_Call(start, args, kw) : NULL;
        if (!res) die_python("yappi.start");
        Py_DECREF(res);
        Py_DECREF(start);
        Py_DECREF(kw);
        Py_DECREF(args);
      }
      break;
    case M_STATSPROF:
    case M_STATSPROF_NOCOMP:
      if (statsprof_create(m == M_STATSPROF ? STATSPROF_CONFIG : STATSPROF_NOCOMP_CONFIG, &sp))
        die_statsprof("statsprof_create", NULL);
      if (statsprof_start(sp)) die_statsprof("statsprof_start", sp);
      break;
    default:
      abort();
  }

  double t0 = 0, t1 = 0, c0 = 0, c1 = 0;
  if (callgrind) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_TOGGLE_COLLECT;
    call_noargs(run);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT(label);
  } else {
    c0 = cpu_s();
    t0 = now_s();
    call_noargs(run);
    t1 = now_s();
    c1 = cpu_s();
  }
  *cpu = c1 - c0;

  switch (m) {
    case M_NONE:
      break;
    case M_EMPTY:
      PyEval_SetProfile(NULL, NULL);
      break;
    case M_CPROFILE: {
      Py_DECREF(call_method(prof, "disable", NULL));
      PyObject *st = call_method(g_pstats_mod, "Stats", "(O)", prof);
      PyObject *tt = PyObject_GetAttrString(st, "total_tt");
      if (!tt) die_python("pstats.Stats.total_tt");
      *total_tt = PyFloat_AsDouble(tt);
      Py_DECREF(tt);
      Py_DECREF(st);
      Py_DECREF(prof);
      break;
    }
    case M_YAPPI: {
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
    case M_STATSPROF:
    case M_STATSPROF_NOCOMP: {
      if (statsprof_stop(sp)) die_statsprof("statsprof_stop", sp);
      statsprof_stats_profile *s;
      if (statsprof_snapshot(sp, STATSPROF_CUMULATIVE, &s)) die_statsprof("statsprof_snapshot", sp);
      *total_tt = s->total_tt;
      statsprof_stats_profile_free(s);
      statsprof_destroy(sp);
      break;
    }
    default:
      abort();
  }
  return t1 - t0;
}

/* ---- per workload ------------------------------------------------------- */

static void bench_workload(PyObject *workloads, const char *name, const char *size, int rounds,
                           int callgrind) {
  PyObject *run = call_method(workloads, "make", "(ss)", name, size);

  /* Warm up unprofiled (imports, caches, specialization), then count. */
  call_noargs(run);
  memset(g_events, 0, sizeof g_events);
  PyEval_SetProfile(counting_hook, NULL);
  call_noargs(run);
  PyEval_SetProfile(NULL, NULL);
  uint64_t calls = g_events[PyTrace_CALL], returns = g_events[PyTrace_RETURN];
  uint64_t c_calls = g_events[PyTrace_C_CALL];
  uint64_t c_returns = g_events[PyTrace_C_RETURN] + g_events[PyTrace_C_EXCEPTION];
  printf("{\"kind\":\"workload\",\"workload\":\"%s\",\"size\":\"%s\",\"events\":%llu,"
         "\"calls\":%llu,\"returns\":%llu,\"c_calls\":%llu,\"c_returns\":%llu}\n",
         name, size, (unsigned long long)(calls + returns + c_calls + c_returns),
         (unsigned long long)calls, (unsigned long long)returns, (unsigned long long)c_calls,
         (unsigned long long)c_returns);
  fflush(stdout);

  enum mode order[M_COUNT];
  int n = 0;
  for (int m = 0; m < M_COUNT; m++)
    if (mode_on[m]) order[n++] = (enum mode)m;

  if (callgrind) rounds = 1;
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < n; k++) {
      enum mode m = order[(k + r) % n];
      char label[128];
      snprintf(label, sizeof label, "bench %s %s", name, mode_names[m]);
      double tt, cpu;
      double secs = measure(m, run, &cpu, &tt, callgrind, label);
      if (callgrind) {
        printf("{\"kind\":\"callgrind\",\"workload\":\"%s\",\"mode\":\"%s\",\"label\":\"%s\"}\n",
               name, mode_names[m], label);
      } else {
        printf("{\"kind\":\"time\",\"workload\":\"%s\",\"mode\":\"%s\",\"round\":%d,"
               "\"seconds\":%.9g,\"cpu_seconds\":%.9g,\"total_tt\":%.9g}\n",
               name, mode_names[m], r, secs, cpu, tt);
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
  PyObject *r = PyObject_CallMethod(g_gc_mod, "collect", NULL);
  if (!r) die_python("gc.collect");
  Py_DECREF(r);

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
 * on cProfile's own cost per event on this machine. */
static void bench_clock(long n) {
  double best = 1e30;
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
  }
  (void)sink;
  printf("{\"kind\":\"clock\",\"reads\":%ld,\"ns_per_clock_gettime\":%.4g}\n", n,
         best * 1e9 / (double)n);
  fflush(stdout);
}

/* ---- main --------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: bench_host --workloads FILE [--size full|quick|callgrind] [--rounds N]\n"
          "                  [--workload NAME]... [--mode NAME]... [--no-extras] [--callgrind]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *workloads_path = NULL, *size = "full";
  const char *only_workloads[16];
  int nonly = 0, rounds = 7, extras = 1, callgrind = 0, modes_given = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--workloads") && v) workloads_path = argv[++i];
    else if (!strcmp(a, "--size") && v) size = argv[++i];
    else if (!strcmp(a, "--rounds") && v) rounds = atoi(argv[++i]);
    else if (!strcmp(a, "--workload") && v && nonly < 16) only_workloads[nonly++] = argv[++i];
    else if (!strcmp(a, "--mode") && v) {
      int found = 0;
      for (int m = 0; m < M_COUNT; m++)
        if (!strcmp(v, mode_names[m])) mode_on[m] = found = 1;
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
  if (!workloads_path || rounds < 1) usage();
  if (!modes_given)
    for (int m = 0; m < M_COUNT; m++) mode_on[m] = 1;

  Py_Initialize();
  g_gc_mod = import("gc");
  g_cprofile_mod = import("cProfile");
  g_pstats_mod = import("pstats");
  g_yappi_mod = PyImport_ImportModule("yappi");
  if (g_yappi_mod) {
    Py_DECREF(call_method(g_yappi_mod, "set_clock_type", "(s)", "wall"));
  } else {
    PyErr_Clear();
    mode_on[M_YAPPI] = 0;
  }
  statsprof *probe;
  int compensate_known = statsprof_create(STATSPROF_NOCOMP_CONFIG, &probe) == 0;
  statsprof_destroy(probe);
  if (!compensate_known) mode_on[M_STATSPROF_NOCOMP] = 0;

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

  printf("{\"kind\":\"info\",\"python\":\"%s\",\"statsprof\":\"%s\",\"yappi\":%s,"
         "\"compensate_option\":%s,\"size\":\"%s\",\"rounds\":%d,\"callgrind\":%s,"
         "\"callgrind_requests\":%s,\"statsprof_config\":\"%s\",\"modes\":[",
         PY_VERSION, STATSPROF_VERSION_STRING, g_yappi_mod ? "true" : "false",
         compensate_known ? "true" : "false", size, callgrind ? 1 : rounds,
         callgrind ? "true" : "false", HAVE_CALLGRIND ? "true" : "false", STATSPROF_CONFIG);
  for (int m = 0, first = 1; m < M_COUNT; m++)
    if (mode_on[m]) {
      printf("%s\"%s\"", first ? "" : ",", mode_names[m]);
      first = 0;
    }
  printf("]}\n");
  fflush(stdout);

  PyObject *names = PyObject_GetAttrString(workloads, "NAMES");
  if (!names) die_python("bench_workloads.NAMES");
  for (Py_ssize_t i = 0; i < PyTuple_Size(names); i++) {
    const char *name = PyUnicode_AsUTF8(PyTuple_GetItem(names, i));
    int wanted = nonly == 0;
    for (int k = 0; k < nonly; k++) wanted |= !strcmp(only_workloads[k], name);
    if (wanted) bench_workload(workloads, name, size, rounds, callgrind);
  }
  Py_DECREF(names);

  if (extras && !callgrind) {
    int reps = strcmp(size, "full") ? 5 : 20;
    bench_snapshot(workloads, 1000, reps);
    bench_snapshot(workloads, 10000, reps);
    bench_tick(strcmp(size, "full") ? 200000 : 1000000);
    bench_clock(strcmp(size, "full") ? 200000 : 1000000);
  }

  Py_DECREF(workloads);
  Py_XDECREF(g_yappi_mod);
  Py_DECREF(g_pstats_mod);
  Py_DECREF(g_cprofile_mod);
  Py_DECREF(g_gc_mod);
  if (Py_FinalizeEx() < 0) return 1;
  return 0;
}
