/* calibrate.c — how much one profile event costs, so that compensate=on can
 * subtract it from the frames that paid it (as the old `profile` module's
 * bias did), and production mode can estimate its own overhead.
 *
 * Each kind of event the hook is given is measured: a Python call, a C
 * call (CPython makes a temporary bound method for each traced method
 * call), an event the source delivers that is not counted (on
 * sys.monitoring the CALL of a Python function or of a type, which only
 * C_RETURN can tell from a C function's; on PyEval_SetProfile with
 * builtins=off the C calls), and on sys.monitoring (which 3.12+'s
 * PyEval_SetProfile runs over) what an event costs more
 * when its bytecode offset is past CPython's small ints (the offset is
 * then a new int, allocated and freed for each event: code past offset 256
 * of a function, most of the events of long functions). Each is a loop
 * that runs bare and under a scratch profiler on this thread; the
 * difference per event is the cost. A further loop makes no calls at all:
 * it measures how much slower bytecode itself runs while a profile
 * function is installed (CPython's specializing interpreter is off then),
 * a cost that follows the work done, not the events. Each estimate is the
 * median of many short rounds, each a bare and a profiled run back to back
 * (see measure); the profiled time is that of a
 * second call under one scratch profiler, so that first-sight work
 * (labels, the thread's slot, sys.monitoring instrumenting the code) is
 * not counted as event cost. Once per process, source and clock, and on
 * sys.monitoring per builtins setting (measure_all). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const char kCode[] =
    "def _statsprof_cal_f():\n"
    "    pass\n"
    "def _statsprof_cal_py(n):\n"
    "    f = _statsprof_cal_f\n"
    "    for i in range(n):\n"
    "        f()\n"
    /* _statsprof_cal_py's n calls made as a call tree (depth ~log2 n):
     * see py_loop. */
    "def _statsprof_cal_tree(n):\n"
    "    if n > 1:\n"
    "        a = (n - 2) // 2\n"
    "        _statsprof_cal_tree(a)\n"
    "        _statsprof_cal_tree(n - 2 - a)\n"
    "    elif n:\n"
    "        _statsprof_cal_tree(0)\n"
    /* Typical bytecode: attributes, subscripts, comparisons, arithmetic,
     * the operations CPython specializes when no profile function is set. */
    "class _statsprof_cal_obj:\n"
    "    def __init__(self):\n"
    "        self.x = 1.0\n"
    "        self.y = 2.0\n"
    "        self.items = [1, 2, 3]\n"
    "def _statsprof_cal_ops(n, o=_statsprof_cal_obj()):\n"
    "    acc = 0.0\n"
    "    lst = [0] * 16\n"
    "    d = {'a': 1}\n"
    "    for i in range(n):\n"
    "        acc += o.x * o.y\n"
    "        lst[i & 15] = lst[(i + 1) & 15] + (i >> 1)\n"
    "        if d['a'] < i and o.items[1] == 2:\n"
    "            acc -= 1\n"
    "        t = (i, acc)\n"
    "        acc = t[1] + 0.5\n"
    "    return acc\n"
    "def _statsprof_cal_c(n):\n"
    "    l = []\n"
    "    ln = len\n"
    "    for i in range(n):\n"
    "        l.append(i)\n"
    "        ln(l)\n"
    /* Calls that are not counted: a type's CALL and C_RETURN events. */
    "def _statsprof_cal_rej(n):\n"
    "    o = object\n"
    "    for i in range(n):\n"
    "        o()\n"
    /* _statsprof_cal_c with its loop past offset 1000 (never-run padding):
     * every event's offset is a new int. */
    "exec('def _statsprof_cal_c_far(n):\\n    if n < 0:\\n' + '        n += 1\\n' * 250 +\n"
    "     '    l = []\\n    ln = len\\n    for i in range(n):\\n        l.append(i)\\n        ln(l)\\n')\n"
    /* _statsprof_cal_py's call, returning past offset 1000: with
     * builtins=off on sys.monitoring (no C events) the boxed offset is that
     * of its PY_RETURN. */
    "exec('def _statsprof_cal_f_far(n=0):\\n    if n < 0:\\n' + '        n += 1\\n' * 250 + '    return n\\n')\n"
    "def _statsprof_cal_py_far(n):\n"
    "    f = _statsprof_cal_f_far\n"
    "    for i in range(n):\n"
    "        f()\n";

/* Many short rounds: on a loaded machine a short run is more often not
 * preempted at all (measure keeps the rounds that ran through). The
 * median of the rounds' own estimates, where the minimum of each side was
 * taken before: this machine alternates for hundreds of ms between two
 * speeds about 1.8x apart, and the minima of bare and profiled runs taken
 * from different rounds moved one process's estimate by +-15% (3.11, idle,
 * 8 calibrations in one process: 61-87 ticks per Python event, bytecode
 * x1.99-x2.35; with the medians 45-51 in the fast stretches, 81-83 in the
 * slow). */
enum { CALLS = 2000, ROUNDS = 15 };

/* The loops raise nothing of their own: what they raise comes from
 * outside (a signal handler's exception: Ctrl-C's KeyboardInterrupt, a
 * SIGALRM deadline; one sent to this thread; a MemoryError). The first is
 * kept, ends the measuring (nothing is cached), and fails the start with
 * STATSPROF_EPYTHON; statsprof__calibrate_reraise hands it back. */
static int g_raised_set;
static statsprof__pending g_raised;
static unsigned long g_raised_thread;

void statsprof__calibrate_keep_raised(void) {
  if (g_raised_set) {
    PyErr_Clear();
    return;
  }
  g_raised = statsprof__pending_take();
  g_raised_set = 1;
  g_raised_thread = PyThread_get_thread_ident();
}

/* A bare run's ticks in the unit of `clock`'s profile times. */
static double clock_units(statsprof__clock_kind clock, uint64_t ticks) {
  return clock == STATSPROF__CLOCK_CPU ? (double)ticks * statsprof__clock_sec_per_tick * 1e9 : (double)ticks;
}

static uint64_t run(PyObject *g, PyObject *n) {
  uint64_t t0 = statsprof__ticks();
  PyObject *r = PyObject_CallOneArg(g, n);
  uint64_t t1 = statsprof__ticks();
  if (!r) statsprof__calibrate_keep_raised();
  Py_XDECREF(r);
  return t1 - t0;
}

/* A scratch profiler could not be made, or its hook could not count every
 * call: the measurement is worthless, and nothing is cached. GIL held. */
static int g_oom;

/* A calibration runs (the loops run Python code, and let the GIL go), on
 * thread g_cal_thread; a probe runs (as g_calibrating: a start that must
 * calibrate is not held up by it). The scratch profiler in use, and one a
 * forked child inherited from a calibration on a thread it does not have. */
static int g_calibrating, g_probing;
static unsigned long g_cal_thread;
static uint64_t g_cal_epoch;
static statsprof *g_scratch, *g_stale_scratch;

/* The cumulative time the scratch profiler s has for function `name`. */
static uint64_t tt_of(const statsprof *s, const char *name) {
  uint64_t tt = 0;
  for (uint32_t i = 0; i < s->table.nentries; i++)
    if (!strcmp(s->table.labels[s->table.entries[i].label].name, name)) tt += s->table.entries[i].c.tt;
  return tt;
}

/* g's raw cumulative time under a scratch profiler, in the clock's ticks:
 * that of a second call, so that the first sight of g and its callees
 * (their labels, this thread's slot, sys.monitoring instrumenting their
 * code) is not taken for the cost of their events. */
static uint64_t profiled(PyObject *g, PyObject *n, const char *name, statsprof__clock_kind clock, int source,
                         int builtins) {
  statsprof *s = statsprof__scratch_new(clock, source, builtins);
  if (!s) {
    g_oom = 1;
    return 0;
  }
  g_scratch = s;
  uint64_t tt = 0;
  if (statsprof__hook_ready() == 0 && statsprof__attach_self(s) == 0) {
    for (int k = 0; k < 2; k++) {
      uint64_t before = tt_of(s, name);
      PyObject *r = PyObject_CallOneArg(g, n);
      if (!r) statsprof__calibrate_keep_raised();
      Py_XDECREF(r);
      tt = tt_of(s, name) - before;
    }
    statsprof__detach_all(s);
  }
  if (s->src.oom) g_oom = 1;
  g_scratch = NULL;
  statsprof__scratch_free(s);
  return tt;
}

/* What is measured, and with which scratch profiler. */
typedef struct {
  statsprof__clock_kind clock;
  int source, builtins;
} setup;

/* Whether this thread ran all through a round that took `ticks` of wall
 * time and cpu_ns of its CPU time: no more than 2% (and 5 us) waiting. */
static int ran_through(uint64_t ticks, uint64_t cpu_ns) {
  return (double)ticks * statsprof__clock_sec_per_tick * 1e9 <= (double)cpu_ns * 1.02 + 5000;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* This machine's speed for Python code changes by up to 2x for seconds at
 * a time (BENCHMARKS.md: a process that calibrated in a slow stretch
 * charged 141 ticks per Python event where 66 was right, and fib's
 * total_tt came out 0.03x of its real time). So a bare loop of calls, the
 * probe, is timed after every round of the calibration and again at every
 * later start (~0.1 ms), and when it now runs clearly faster (below
 * kFaster of its median time during the calibration) the costs shrink by
 * that ratio. They never grow: a tool slowing the loop down (cProfile's
 * events) must not make statsprof subtract more, and a profile left
 * under-compensated keeps at most compensate=off's times, where one
 * over-compensated loses them to zero. */
static const char kProbe[] =
    "def _statsprof_probe_f():\n"
    "    pass\n"
    "def _statsprof_probe(n):\n"
    "    f = _statsprof_probe_f\n"
    "    for i in range(n):\n"
    "        f()\n";
enum { PROBE_CALLS = 400, PROBE_RUNS = 3, PROBE_REFS = 4 * ROUNDS * 5 };
static const double kFaster = 0.8;

/* The probe's loop (a new reference), or NULL. */
static PyObject *probe_new(void) {
  PyObject *ns = PyDict_New();
  PyObject *co = ns ? Py_CompileString(kProbe, "<statsprof-calibration>", Py_file_input) : NULL;
  if (ns) PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : NULL;
  PyObject *g = r ? PyDict_GetItemString(ns, "_statsprof_probe") : NULL;
  Py_XINCREF(g); /* its globals, ns, live as long: probe_free */
  if (PyErr_Occurred()) statsprof__calibrate_keep_raised();
  Py_XDECREF(r);
  Py_XDECREF(co);
  Py_XDECREF(ns);
  return g;
}

/* Its functions and globals refer to each other: cleared, they go without
 * the cyclic collector (which a host may have turned off). */
static void probe_free(PyObject *g) {
  if (!g) return;
  PyDict_Clear(PyFunction_GetGlobals(g));
  Py_DECREF(g);
}

/* Ticks per call of the probe's loop, once specialized: the median of
 * `runs` runs (0 when it could not run). */
static double probe_time(PyObject *g, statsprof__clock_kind clock, int runs) {
  PyObject *n = g ? PyLong_FromLong(PROBE_CALLS) : NULL;
  double t[PROBE_RUNS];
  int k = 0;
  if (n) run(g, n);
  for (int i = 0; n && i < runs && i < PROBE_RUNS; i++) {
    double b = clock_units(clock, run(g, n));
    if (b > 0) t[k++] = b;
  }
  if (PyErr_Occurred()) statsprof__calibrate_keep_raised();
  Py_XDECREF(n);
  return k ? median(t, k) / PROBE_CALLS : 0;
}

/* During a calibration: the probe, and its time after each round that ran
 * through ([1]) or not ([0], used when none did, as measure does). */
static PyObject *g_probe;
static double g_probe_ref[2][PROBE_REFS];
static int g_nprobe_ref[2];

/* Bare and profiled times of loop `name`, one pair per round that ran
 * through (up to ROUNDS of 4 x ROUNDS tries; when none did, every round's):
 * on a loaded machine every short round may wait for a CPU (3.13: 268 ticks
 * per Python event where 90 ran through). Each pair is measured back to
 * back, so a stretch where Python code runs slower (the thread's CPU time
 * cannot see it; BENCHMARKS.md has what was measured) slows both alike,
 * and the estimates below take the median over the pairs. */
typedef struct {
  int n;
  uint64_t bare[ROUNDS], prof[ROUNDS];
} pairs;

static int measure(PyObject *ns, const char *name, setup su, pairs *out) {
  PyObject *g = PyDict_GetItemString(ns, name);
  PyObject *n = PyLong_FromLong(CALLS);
  pairs any = {0};
  out->n = 0;
  for (int i = 0; g && n && out->n < ROUNDS && i < 4 * ROUNDS && !g_oom && !g_raised_set; i++) {
    run(g, n); /* the profiled run before took the loop's specializations away */
    uint64_t c0 = statsprof__thread_cpu_ns(), w0 = statsprof__ticks();
    uint64_t b = run(g, n), q = profiled(g, n, name, su.clock, su.source, su.builtins);
    int through = ran_through(statsprof__ticks() - w0, statsprof__thread_cpu_ns() - c0);
    b = (uint64_t)clock_units(su.clock, b);
    if (!q || !b) continue;
    if (any.n < ROUNDS) any.bare[any.n] = b, any.prof[any.n++] = q;
    if (g_probe && g_nprobe_ref[through] < PROBE_REFS) {
      double pt = probe_time(g_probe, su.clock, 1);
      if (pt > 0) g_probe_ref[through][g_nprobe_ref[through]++] = pt;
    }
    if (!through) continue;
    out->bare[out->n] = b;
    out->prof[out->n++] = q;
  }
  if (!out->n) *out = any;
  Py_XDECREF(n);
  return out->n > 0;
}

/* Ticks per event of loop `name`, which makes `events` events per call,
 * beyond the slower bytecode (scale, 2^16 = none) of its own frame and
 * `others` ticks of other events already known: the median over the
 * rounds of each round's own estimate. */
static uint64_t event_cost(PyObject *ns, const char *name, uint64_t events, uint64_t others, uint64_t scale,
                           setup su) {
  pairs m;
  if (!measure(ns, name, su, &m)) return 0;
  double d[ROUNDS];
  for (int i = 0; i < m.n; i++)
    d[i] = ((double)m.prof[i] - (double)m.bare[i] * 65536.0 / (double)scale - (double)others) / (double)events;
  double c = median(d, m.n);
  return c > 0 ? (uint64_t)(c + 0.5) : 0;
}

/* The bytecode's slowdown as own_scale (bare / profiled, in 1/65536): the
 * median of the rounds' ratios; 2^16 when it is not slower. */
static uint64_t bytecode_scale(PyObject *ns, setup su) {
  pairs m;
  if (!measure(ns, "_statsprof_cal_ops", su, &m)) return 1 << 16;
  double r[ROUNDS];
  for (int i = 0; i < m.n; i++) r[i] = (double)m.bare[i] / (double)m.prof[i];
  double x = median(r, m.n);
  return x < 1 ? (uint64_t)(x * 65536.0) : 1 << 16;
}

/* Whether sys.monitoring delivers the events: source=monitoring, and on
 * 3.12+ PyEval_SetProfile, a sys.monitoring tool of CPython's own. */
static int over_monitoring(setup su) {
  return su.source == STATSPROF__SOURCE_MONITORING ||
         (su.source == STATSPROF__SOURCE_SETPROFILE && PY_VERSION_HEX >= 0x030C0000);
}

/* Which loop measures a Python call's events. Where sys.monitoring
 * delivers them (3.12+: source=monitoring, and PyEval_SetProfile, which
 * runs over it), a call costs more inside a call tree than in a flat loop
 * of calls, in time though not in instructions (cProfile on 3.13: 8 ns more
 * per call in fib than in the loop, the same instructions under callgrind),
 * and programs call in trees: calibrated on the loop, fib's total_tt came
 * out 1.3x-1.5x its real time on 3.14 and 3.15 (BENCHMARKS.md). On 3.11's
 * PyEval_SetProfile and its frame-evaluation source the loop's cost is
 * already fib's. */
static const char *py_loop(setup su) { return over_monitoring(su) ? "_statsprof_cal_tree" : "_statsprof_cal_py"; }

static void measure_all(setup su, statsprof__costs *out) {
  PyObject *ns = PyDict_New();
  PyObject *co = ns ? Py_CompileString(kCode, "<statsprof-calibration>", Py_file_input) : NULL;
  if (ns) PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : NULL;
  memset(out, 0, sizeof *out);
  out->own_scale = 1 << 16;
  /* The frame-evaluation function leaves the bytecode as fast as it was. */
  if (r && su.source != STATSPROF__SOURCE_EVALFRAME) out->own_scale = bytecode_scale(ns, su);
  if (r && su.source == STATSPROF__SOURCE_MONITORING && !su.builtins) {
    /* builtins=off on sys.monitoring: PY_* events only. Its calls keep
     * their specialized instructions, which CALL events take away, so the
     * Python event's cost with builtins on (that loss included) would be
     * too much here (fib's total_tt 0.78x of its real time on 3.13). No
     * event goes uncounted, and no C event comes. */
    out->py = event_cost(ns, py_loop(su), 2 * CALLS + 1, 0, out->own_scale, su);
    out->c = out->py;
    /* One boxed offset per call, its PY_RETURN's: against the same flat loop. */
    uint64_t flat = event_cost(ns, "_statsprof_cal_py", 2 * CALLS + 1, 0, out->own_scale, su);
    out->box = event_cost(ns, "_statsprof_cal_py_far", CALLS, flat * (2 * CALLS + 1), out->own_scale, su);
  } else if (r) {
    int mon = su.source == STATSPROF__SOURCE_MONITORING;
    /* Not counted: on sys.monitoring a type's CALL and C_RETURN; on
     * PyEval_SetProfile the 4 C events per round with builtins=off. */
    out->rej = mon ? event_cost(ns, "_statsprof_cal_rej", 2 * CALLS, 0, out->own_scale, su)
                   : event_cost(ns, "_statsprof_cal_c", 4 * CALLS, 0, out->own_scale,
                                (setup){su.clock, su.source, 0});
    /* py: 2 events per call of f, plus the loop's own return; on
     * sys.monitoring each call's CALL event too, not counted. */
    out->py = event_cost(ns, py_loop(su), 2 * CALLS + 1, mon ? CALLS * out->rej : 0, out->own_scale, su);
    /* c: 4 C events per round; the loop's return is a Python event. */
    uint64_t c = event_cost(ns, "_statsprof_cal_c", 4 * CALLS, 0, out->own_scale, su);
    out->c = c ? c : out->py;
    /* Events sys.monitoring delivers box their offsets. */
    if (over_monitoring(su)) {
      uint64_t far = event_cost(ns, "_statsprof_cal_c_far", 4 * CALLS, 0, out->own_scale, su);
      out->box = far > out->c ? far - out->c : 0;
    }
  }
  if (PyErr_Occurred()) statsprof__calibrate_keep_raised();
  Py_XDECREF(r);
  Py_XDECREF(co);
  if (ns) PyDict_Clear(ns); /* its functions refer back to it */
  Py_XDECREF(ns);
}

/* [source][clock][builtins]: builtins is 1 but for sys.monitoring, where
 * builtins=off takes other events (measure_all). */
static statsprof__costs cached[STATSPROF__NSOURCES][2][2];
static int done[STATSPROF__NSOURCES][2][2];

static int builtins_key(int source, int builtins) { return source != STATSPROF__SOURCE_MONITORING || builtins; }

statsprof__costs *statsprof__calibration_cached(statsprof__clock_kind clock, int source, int builtins) {
  int b = builtins_key(source, builtins);
  return done[source][clock][b] ? &cached[source][clock][b] : NULL;
}

static int calibrate(statsprof__clock_kind clock, int source, int builtins, statsprof__costs *out);

/* The loops run Python code and clear what they raise: an exception the
 * host left pending is kept aside meanwhile, and one they raised (see
 * statsprof__calibrate_keep_raised) makes it STATSPROF_EPYTHON. */
int statsprof__calibrate(statsprof__clock_kind clock, int source, int builtins, statsprof__costs *out) {
  statsprof__pending exc = statsprof__pending_take();
  int rc = calibrate(clock, source, builtins_key(source, builtins), out);
  statsprof__pending_restore(exc);
  return g_raised_set && g_raised_thread == PyThread_get_thread_ident() ? STATSPROF_EPYTHON : rc;
}

void statsprof__calibrate_reraise(void) {
  if (!g_raised_set || g_raised_thread != PyThread_get_thread_ident()) return;
  g_raised_set = 0;
  statsprof__pending host = statsprof__pending_take();
  statsprof__pending_restore(g_raised);
  if (statsprof__pending_is_set(host) || !PyEval_GetFrame()) {
    /* No Python caller to raise it to (a C host), or the host's own
     * pending exception comes first: Ctrl-C is raised again in this
     * thread's next Python code (PyErr_SetInterrupt could crash a host
     * without Python's signal handling), anything else is reported. */
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
      PyErr_Clear();
      PyThreadState_SetAsyncExc(PyThreadState_Get()->thread_id, PyExc_KeyboardInterrupt);
    } else {
      PyErr_WriteUnraisable(NULL);
    }
    statsprof__pending_restore(host);
  }
  /* Else called from Python code: left set, for the caller to raise. */
}

/* A forked child has no calibrating thread: what it left is freed at the
 * child's first calibration, with the GIL. */
void statsprof__calibrate_atfork_child(void) {
  /* Forked on the calibrating thread itself (a signal handler, a
   * finalizer in its loops): the calibration goes on in the child. */
  if (g_cal_thread == PyThread_get_thread_ident()) return;
  if (g_scratch) g_stale_scratch = g_scratch;
  g_scratch = NULL;
  g_calibrating = g_probing = 0;
}

static void free_stale(void) {
  if (!g_stale_scratch) return;
  statsprof__detach_all(g_stale_scratch);
  statsprof__scratch_free(g_stale_scratch);
  g_stale_scratch = NULL;
}

/* Another thread's calibration runs (its loops let the GIL go): this
 * thread waits for it, GIL released, rather than fail its start, at most
 * 60 s. One of an interpreter since finalized (its thread is gone) is
 * over. */
static int wait_for_other(void) {
  if (g_calibrating && g_cal_epoch != statsprof__epoch()) g_calibrating = 0;
  int64_t deadline = statsprof__mono_ns() + 60 * (int64_t)1000000000;
  for (long ms = 1; g_calibrating && statsprof__mono_ns() < deadline; ms = ms < 20 ? ms + 1 : ms) {
    Py_BEGIN_ALLOW_THREADS;
    struct timespec ts = {0, ms * 1000000};
    nanosleep(&ts, NULL);
    Py_END_ALLOW_THREADS;
  }
  return g_calibrating ? STATSPROF_ESTATE : 0;
}

int statsprof__calibrate_settle(void) {
  free_stale();
  /* A signal handler on the calibrating thread may start a profiler. */
  if (g_calibrating && g_cal_thread == PyThread_get_thread_ident()) return STATSPROF_ESTATE;
  return wait_for_other();
}

static int calibrate(statsprof__clock_kind clock, int source, int builtins, statsprof__costs *out) {
  statsprof__clock_init(); /* bare and profiled runs must read the same clock */
  if (statsprof__calibrate_settle()) return STATSPROF_ESTATE;
  statsprof__costs *costs = &cached[source][clock][builtins];
  int fresh = !done[source][clock][builtins];
  if (fresh) {
    /* Calibrating replaces this thread's profile function for a moment:
     * keep a foreign one (cProfile, a debugger) and put it back. */
    PyThreadState *ts = PyThreadState_Get();
    Py_tracefunc func = ts->c_profilefunc;
    PyObject *obj = ts->c_profileobj;
    if (func && func != statsprof__hook) {
      memset(out, 0, sizeof *out);
      out->own_scale = 1 << 16;
      return 0;
    }
    Py_XINCREF(obj);
    g_calibrating = 1;
    g_cal_thread = PyThread_get_thread_ident();
    g_cal_epoch = statsprof__epoch();
    g_oom = 0;
    /* Every source. The frame-evaluation source's rounds sometimes leave
     * the probe slow (3.11.7 in dev/bench: 156-170 ticks per call against
     * 84-115 elsewhere; cause not found), which shrinks its costs at later
     * starts (under-compensation, bounded by compensate=off); without the
     * probe a calibration in a slow stretch over-compensated fib to 0.34x. */
    g_probe = probe_new();
    g_nprobe_ref[0] = g_nprobe_ref[1] = 0;
    measure_all((setup){clock, source, builtins}, costs);
    int k = g_nprobe_ref[1] ? 1 : 0;
    costs->bare_call = g_nprobe_ref[k] ? median(g_probe_ref[k], g_nprobe_ref[k]) : 0;
    probe_free(g_probe);
    g_probe = NULL;
    g_calibrating = 0;
    /* Out of memory or interrupted: measured again at the next start. */
    done[source][clock][builtins] = !g_oom && !g_raised_set;
    /* Our own thread: the public setter does (an audit hook's refusal is
     * reported as unraisable). */
    if (func) PyEval_SetProfile(func, obj);
    Py_XDECREF(obj);
    if (g_oom) return STATSPROF_ENOMEM;
  }
  *out = *costs;
  out->speed = 0;
  /* Not under a profile function (another profiler on this thread): it
   * would slow the loop and count it. */
  if (!fresh && out->bare_call > 0 && !g_calibrating && !g_probing && !PyThreadState_Get()->c_profilefunc) {
    g_probing = 1;
    PyObject *g = probe_new();
    double speed = probe_time(g, clock, PROBE_RUNS) / out->bare_call;
    probe_free(g);
    g_probing = 0;
    out->speed = speed;
    if (speed > 0 && speed < kFaster) {
      out->py = (uint64_t)((double)out->py * speed + 0.5);
      out->c = (uint64_t)((double)out->c * speed + 0.5);
      out->rej = (uint64_t)((double)out->rej * speed + 0.5);
      out->box = (uint64_t)((double)out->box * speed + 0.5);
    }
  }
  return 0;
}
