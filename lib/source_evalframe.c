/* source_evalframe.c — PEP 523's frame-evaluation function as the event
 * source of builtins=off on CPython 3.11.4 and later 3.11 (elsewhere only
 * the refusals at the bottom are compiled).
 *
 * DESIGN
 * ef_eval wraps _PyEval_EvalFrameDefault: every evaluation of a Python
 * frame (a call, a generator or coroutine resumed, sent to, thrown into or
 * closed) runs through it on every thread of the interpreter, including C
 * threads created later, and the eval loop keeps its specialised
 * instructions (no tracing mode): bytecode is not slowed, so own time is
 * not scaled. cProfile(builtins=False) on 3.11 counts PyEval_SetProfile's
 * 'call' events, which fire at a frame's RESUME instruction (or when a
 * generator is thrown into), and 'return' events, which fire on
 * RETURN_VALUE, YIELD_VALUE and an exception leaving the frame. An
 * evaluation maps onto exactly one call/return pair, except:
 *   - creating a generator or coroutine runs its frame up to
 *     RETURN_GENERATOR, before the RESUME: no event. Recognised as a frame of
 *     a generator's code still owned by the thread (a generator's own frame
 *     is owned by the generator).
 *   - an evaluation that fails CPython's recursion check at its start
 *     raises RecursionError before any event. Recognised before the call
 *     with the same test CPython makes (ef_recursion_fails).
 *   - with a frame-evaluation function installed, 3.11 pushes a Python
 *     frame without calling it only where an instruction forgets to check
 *     for one: BINARY_SUBSCR_GETITEM (a warmed-up obj[i] with a Python
 *     __getitem__) before 3.11.4 (gh-104405). CALL, CALL_PY_EXACT_ARGS and
 *     CALL_PY_WITH_DEFAULTS check. A self-check at the first use
 *     (ef_probe) runs a warmed-up obj[i] and refuses the source when it
 *     sees fewer calls than ran.
 * The call is counted before the evaluation and its return after it, on
 * the calling thread's state, found through thread-local storage as the
 * monitoring source does (hook.c's statsprof__tls_thread). Each evaluation
 * remembers the run it entered in (p->src.tls_key): one that returns after
 * stop, or in a later run or production-mode window, counts nothing, as a
 * frame entered before start does not.
 *
 * Only one function can be installed per interpreter (debuggers use it
 * too): statsprof installs its own only over CPython's default and puts the
 * default back at stop only if its own is still there. Private API, 3.11's
 * only way: _PyInterpreterState_{Get,Set}EvalFrameFunc,
 * _PyEval_EvalFrameDefault, and the frame's layout (internal
 * pycore_frame.h: f_code, owner). */
#include <patchlevel.h> /* PY_VERSION_HEX, before Python.h decides on Py_BUILD_CORE */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define STATSPROF__EVALFRAME 1
#define Py_BUILD_CORE 1 /* this file only: pycore_frame.h */
#endif

#include <stdio.h>

#include "hotpath.h"

#ifdef STATSPROF__EVALFRAME
#include <internal/pycore_frame.h>

/* The profiler whose function is installed, or NULL; the wrapper reads it
 * under the GIL on every thread. */
static statsprof *g_ef;

/* CPython's recursion check at the start of an evaluation
 * (_Py_EnterRecursiveCallTstate, Include/internal/pycore_ceval.h and
 * Python/ceval.c of 3.11): it fails, raising RecursionError before any
 * profile event, when no room is left, the interpreter's limit was not
 * raised meanwhile, and no RecursionError is being handled. */
static __attribute__((noinline)) int ef_recursion_fails(PyThreadState *ts) {
  int depth = ts->recursion_limit - (ts->recursion_remaining - 1);
  return depth >= Py_GetRecursionLimit() && !ts->recursion_headroom;
}

/* Whether this evaluation makes a call/return pair (see DESIGN). */
static inline int ef_is_call(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  if (!throwflag && (frame->f_code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
      frame->owner != FRAME_OWNED_BY_GENERATOR)
    return 0; /* a generator being created */
  return __builtin_expect(ts->recursion_remaining > 0, 1) || !ef_recursion_fails(ts);
}

static PyObject *ef_eval(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  statsprof *p = g_ef;
  statsprof__thread *t;
  if (__builtin_expect(!p || !ef_is_call(ts, frame, throwflag), 0) || !(t = statsprof__tls_thread(p)))
    return _PyEval_EvalFrameDefault(ts, frame, throwflag);
  uint64_t key = p->src.tls_key;
  enter_code(t, p, frame->f_code, p->src.cost_py);
  PyObject *r = _PyEval_EvalFrameDefault(ts, frame, throwflag);
  /* Still the run it entered in: p and t are alive, and its frame is on top. */
  if (__builtin_expect(g_ef == p && p->src.tls_key == key, 1)) leave(t, p, p->src.cost_py, 1 << 16);
  return r;
}

/* ---- the self-check ---------------------------------------------------- */

static const char kProbe[] =
    "class _statsprof_probe_box:\n"
    "    def __getitem__(self, i):\n"
    "        return i\n"
    "def _statsprof_probe(n, b=_statsprof_probe_box()):\n"
    "    s = 0\n"
    "    for i in range(n):\n"
    "        s += b[i]\n"
    "    return s\n";
enum { PROBE_CALLS = 64, PROBE_WARMUP = 1000 };
/* The version test stands on its own: a profile or trace function on this
 * thread may keep the loop from specialising, and the self-check would then
 * pass on any version. */

static PyObject *g_probe_code; /* the code whose evaluations ef_probe_eval counts */
static long g_probe_seen;

static PyObject *ef_probe_eval(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  if ((PyObject *)frame->f_code == g_probe_code) g_probe_seen++;
  return _PyEval_EvalFrameDefault(ts, frame, throwflag);
}

/* Calls fn(n); 0 when it raised. */
static int probe_call(PyObject *fn, long n) {
  PyObject *r = PyObject_CallFunction(fn, "l", n);
  Py_XDECREF(r);
  return r != NULL;
}

/* Runs a warmed-up obj[i] with a Python __getitem__ PROBE_CALLS times under
 * a counting frame-evaluation function: how many of its calls the function
 * saw, or -1 when the probe could not run. The slot must be free. */
static long ef_probe(PyInterpreterState *interp) {
  PyObject *ns = PyDict_New();
  PyObject *code = ns ? Py_CompileString(kProbe, "<statsprof-evalframe-probe>", Py_file_input) : NULL;
  if (ns) PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *r = code ? PyEval_EvalCode(code, ns, ns) : NULL;
  PyObject *fn = r ? PyDict_GetItemString(ns, "_statsprof_probe") : NULL;
  PyObject *box = r ? PyDict_GetItemString(ns, "_statsprof_probe_box") : NULL;
  PyObject *getitem = box ? PyObject_GetAttrString(box, "__getitem__") : NULL;
  g_probe_code = getitem ? PyObject_GetAttrString(getitem, "__code__") : NULL;
  long seen = -1;
  /* The warm-up specialises b[i] to BINARY_SUBSCR_GETITEM. */
  if (fn && g_probe_code && probe_call(fn, PROBE_WARMUP)) {
    g_probe_seen = 0;
    _PyInterpreterState_SetEvalFrameFunc(interp, ef_probe_eval);
    int ok = probe_call(fn, PROBE_CALLS);
    _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
    if (ok) seen = g_probe_seen;
  }
  PyErr_Clear();
  Py_CLEAR(g_probe_code);
  Py_XDECREF(getitem);
  Py_XDECREF(r);
  Py_XDECREF(code);
  Py_XDECREF(ns);
  return seen;
}

/* ---- the source --------------------------------------------------------- */

static int ef_slot_free(PyInterpreterState *interp) {
  _PyFrameEvalFunction f = _PyInterpreterState_GetEvalFrameFunc(interp);
  return f == _PyEval_EvalFrameDefault || (f == ef_eval && !g_ef);
}

/* The version and self-check verdict, once per interpreter: 1 exact, 0 not
 * (why in g_verdict_why). */
static uint64_t g_verdict_epoch;
static int g_verdict;
static char g_verdict_why[200];

static void ef_verdict(PyInterpreterState *interp) {
  if (g_verdict_epoch == statsprof__epoch()) return;
  unsigned long v = Py_Version; /* the running libpython, not the headers */
  long seen = ef_probe(interp);
  g_verdict = v >= 0x030B04F0 && seen == PROBE_CALLS;
  g_verdict_why[0] = 0;
  if (!g_verdict)
    snprintf(g_verdict_why, sizeof g_verdict_why,
             "CPython %lu.%lu.%lu pushes some Python frames without calling the frame-evaluation function "
             "(gh-104405, fixed in 3.11.4): its self-check saw %ld of %d __getitem__ calls",
             v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, seen, PROBE_CALLS);
  g_verdict_epoch = statsprof__epoch();
}

int statsprof__evalframe_usable(char *why, size_t n) {
  PyInterpreterState *interp = PyThreadState_Get()->interp;
  if (g_ef) {
    snprintf(why, n, "another statsprof profiler is using the frame-evaluation function");
    return 0;
  }
  if (!ef_slot_free(interp)) {
    snprintf(why, n,
             "another frame-evaluation function (PEP 523: a debugger or another profiler) is installed on "
             "this interpreter");
    return 0;
  }
  int first = g_verdict_epoch != statsprof__epoch();
  ef_verdict(interp);
  if (g_verdict) return 1;
  snprintf(why, n, "%s", g_verdict_why);
  return first ? 0 : -1;
}

int statsprof__evalframe_attach_all(statsprof *p) {
  if (g_ef == p) return 0;
  PyInterpreterState *interp = PyThreadState_Get()->interp;
  if (g_ef || !ef_slot_free(interp))
    return statsprof__error(p, STATSPROF_ESTATE,
                            "source=evalframe: the frame-evaluation function was taken (by %s) since start",
                            g_ef ? "another statsprof profiler" : "a debugger or another profiler");
  p->src.tls_key = statsprof__tls_key_next(); /* every thread's cached state is stale */
  g_ef = p;
  _PyInterpreterState_SetEvalFrameFunc(interp, ef_eval);
  return 0;
}

void statsprof__evalframe_detach_all(statsprof *p) {
  if (g_ef == p) {
    g_ef = NULL; /* evaluations still running find it gone */
    if (p->interp_epoch == statsprof__epoch() && Py_IsInitialized()) {
      PyInterpreterState *interp = PyThreadState_Get()->interp;
      /* Never clobber a function installed after ours. */
      if (_PyInterpreterState_GetEvalFrameFunc(interp) == ef_eval) _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
      else
        statsprof__logf(&p->log,
                        "source=evalframe: another frame-evaluation function replaced statsprof's; left in place");
    }
  }
  /* Frames still open close now; the states wait in the pool for their
   * thread's next run. */
  while (p->src.threads) {
    statsprof__thread *t = p->src.threads;
    statsprof__flush_thread(t);
    statsprof__thread_pool(p, t);
  }
}

void statsprof__evalframe_forget(void) {
  g_ef = NULL; /* the interpreter, and its frame-evaluation function, are gone */
  g_verdict_epoch = 0;
}
#else
int statsprof__evalframe_usable(char *why, size_t n) {
  snprintf(why, n, "the frame-evaluation source exists only on CPython 3.11");
  return 0;
}
int statsprof__evalframe_attach_all(statsprof *p) {
  return statsprof__error(p, STATSPROF_ESTATE, "source=evalframe: only on CPython 3.11");
}
void statsprof__evalframe_detach_all(statsprof *p) { (void)p; }
void statsprof__evalframe_forget(void) {}
#endif
