/* source_evalframe.c — PEP 523's frame-evaluation function as an event
 * source for builtins=off, on every version where its self-check finds it
 * exact (3.11.4+, 3.12 to 3.15; not 3.11.0-3.11.3; 3.13 with __init__
 * functions counted through sys.monitoring). The default of builtins=off
 * on 3.11.4+; on 3.12+ forced with source=evalframe (lib/profiler.c says
 * why not by default).
 *
 * DESIGN
 * ef_eval wraps _PyEval_EvalFrameDefault: every evaluation of a Python
 * frame (a call, a generator or coroutine resumed, sent to, thrown into or
 * closed) runs through it on every thread of the interpreter, including C
 * threads created later, and the eval loop keeps its specialised
 * instructions (no tracing mode, no instrumented code): bytecode is not
 * slowed, so own time is not scaled, and no event is delivered for C
 * calls. cProfile(builtins=False) counts a call at a frame's RESUME
 * instruction (3.11: PyEval_SetProfile's 'call'; 3.12+: sys.monitoring's
 * PY_START/PY_RESUME) or when a generator is thrown into (PY_THROW), and a
 * return on RETURN_VALUE, YIELD_VALUE and an exception leaving the frame.
 * An evaluation maps onto exactly one call/return pair, except:
 *   - creating a generator or coroutine runs its frame up to
 *     RETURN_GENERATOR, before the RESUME: no event. Recognised as a frame of
 *     a generator's code still owned by the thread (a generator's own frame
 *     is owned by the generator).
 *   - an evaluation that fails CPython's recursion check at its start
 *     raises RecursionError before any event. Recognised before the call
 *     with the same test CPython makes (ef_room, ef_recursion_fails).
 *   - with a frame-evaluation function installed, the eval loop pushes a
 *     Python frame without calling it only where an instruction forgets to
 *     check for one: BINARY_SUBSCR_GETITEM before 3.11.4 (gh-104405),
 *     CALL_ALLOC_AND_ENTER_INIT (a class with a Python __init__) on 3.13
 *     (3.13.0 and 3.13.5 measured), where __init__ functions are left to
 *     sys.monitoring (ef_by_monitoring).
 *     A self-check at the first use (ef_probe) warms up every way a frame
 *     gets pushed and refuses the source when it sees fewer evaluations
 *     than ran.
 *   - from 3.12 a returning frame's locals are cleared inside the
 *     evaluation, after the return event: code run by that (a finalizer) is
 *     the caller's callee (ef_returned).
 *   - from 3.14 closing a generator paused outside any try block runs its
 *     frame (GeneratorExit thrown in) only while a tool monitors
 *     PY_UNWIND, as cProfile does; the source turns PY_UNWIND on to a
 *     callback that does nothing (EF_UNWIND), so that generators close as
 *     under cProfile.
 * The call is counted before the evaluation and its return after it, on
 * the calling thread's state, found through thread-local storage as the
 * monitoring source does (hook.c's statsprof__tls_thread). Each evaluation
 * remembers the run it entered in (p->src.tls_key): one that returns after
 * stop, or in a later run or production-mode window, counts nothing, as a
 * frame entered before start does not.
 *
 * Only one function can be installed per interpreter (debuggers use it
 * too): statsprof installs its own only over CPython's default and puts the
 * default back at stop only if its own is still there. Private API, the
 * only way on every version: _PyInterpreterState_{Get,Set}EvalFrameFunc,
 * _PyEval_EvalFrameDefault, the frame's layout (internal pycore_frame.h:
 * the code, owner, previous) and the thread state's recursion counters. */
/* This file only: pycore_frame.h. As a module (not libpython itself), so
 * that no inline helper refers to libpython's unexported thread-state
 * variable. */
#define Py_BUILD_CORE_MODULE 1

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "hotpath.h"

/* As in source_monitoring.c: a frame pointer costs ef_eval a register. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("omit-frame-pointer")
#endif

#if PY_VERSION_HEX >= 0x030E0000
#include <internal/pycore_interpframe.h> /* 3.14 moved the frame's layout here */
#else
#include <internal/pycore_frame.h>
#endif

/* The code object a frame evaluates: a borrowed pointer in the frame,
 * typed as its own field on 3.11-3.12, as "executable" from 3.13 (a tagged
 * stack reference from 3.14; _PyFrame_GetCode untags it). */
static inline PyCodeObject *ef_code(_PyInterpreterFrame *frame) {
#if PY_VERSION_HEX >= 0x030D0000
  return _PyFrame_GetCode(frame);
#else
  return frame->f_code;
#endif
}

/* The profiler whose function is installed, or NULL; the wrapper reads it
 * under the GIL on every thread. */
static statsprof *g_ef;
/* An attach under way: it runs Python (sys.monitoring, the class
 * watcher's walk), which may let the GIL go, and another thread's attach
 * then must not take the function too. */
static statsprof *g_ef_claim;

/* CPython's recursion checks at the start of an evaluation, before the
 * RESUME that makes its call event (Python/ceval.c and
 * Include/internal/pycore_ceval.h of each version): when one fails,
 * RecursionError is raised before any profile event. ef_room says cheaply
 * that none can fail (the common case); ef_recursion_fails makes the same
 * test CPython makes.
 *   3.11: one Python depth counter; it fails when no room is left, the
 *     interpreter's limit was not raised meanwhile, and no RecursionError is
 *     being handled (recursion_headroom).
 *   3.12, 3.13: a C counter first (the entry takes PY_EVAL_C_STACK_UNITS,
 *     2, of it: it fails at 1 or less on 3.12, at 0 or less on 3.13), then
 *     the Python depth counter, each unless a RecursionError is being
 *     handled.
 *   3.14+: the C check compares the machine stack pointer inside
 *     _PyEval_EvalFrameDefault with the thread's soft limit, which no test
 *     made before the call can repeat: only the Python depth counter is
 *     checked, and an evaluation that fails for want of C stack (the
 *     thread's stack about to overflow) counts one call (README). */
#if PY_VERSION_HEX >= 0x030E0000
static inline int ef_room(PyThreadState *ts) { return ts->py_recursion_remaining > 0; }
#elif PY_VERSION_HEX >= 0x030D0000
static inline int ef_room(PyThreadState *ts) { return ts->py_recursion_remaining > 0 && ts->c_recursion_remaining > 0; }
#elif PY_VERSION_HEX >= 0x030C0000
static inline int ef_room(PyThreadState *ts) { return ts->py_recursion_remaining > 0 && ts->c_recursion_remaining > 1; }
#endif
#if PY_VERSION_HEX >= 0x030C0000
static __attribute__((noinline)) int ef_recursion_fails(PyThreadState *ts) { return !ts->recursion_headroom; }
#else
static inline int ef_room(PyThreadState *ts) { return ts->recursion_remaining > 0; }
static __attribute__((noinline)) int ef_recursion_fails(PyThreadState *ts) {
  int depth = ts->recursion_limit - (ts->recursion_remaining - 1);
  return depth >= Py_GetRecursionLimit() && !ts->recursion_headroom;
}
#endif

/* Whether this evaluation makes a call/return pair (see DESIGN). */
static inline int ef_is_call(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  if (!throwflag && (ef_code(frame)->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
      frame->owner != FRAME_OWNED_BY_GENERATOR)
    return 0; /* a generator being created */
  return __builtin_expect(ef_room(ts), 1) || !ef_recursion_fails(ts);
}

/* CPython 3.14 and 3.15 (measured) close a generator without running its
 * frame unless some tool monitors PY_UNWIND, which cProfile does: the
 * source turns it on while it runs (source_monitoring.c). 3.13.0 closes
 * without running the frame either way; on from 3.13 all the same, so that
 * a later 3.13 patch level that behaves as 3.14 is covered. */
#define EF_UNWIND (PY_VERSION_HEX >= 0x030D0000)

/* Greenlet (gevent, eventlet) switches C stacks under us: it copies a
 * suspended greenlet's slice of the C stack to the heap and lets another
 * greenlet run in the same address range, so a pointer from the thread's
 * state into an evaluation's C frame (an activation record there, as this
 * source once kept) can point at another greenlet's data, and reading a
 * frame pointer through it crashed. The thread's state therefore holds its
 * innermost evaluation by value (t->ef_frame, t->ef_cur, t->ef_left), each
 * ef_eval keeps the outer values in its own locals (which greenlet saves
 * and restores with that greenlet's stack), and nothing read from the
 * thread's state is ever dereferenced. A switch is no event: after one,
 * evaluations return out of order, and each return pops the shadow stack's
 * top, as cProfile's return event does (README, Limits: greenlet). */
#if PY_VERSION_HEX >= 0x030C0000
static inline _PyInterpreterFrame *ef_current(PyThreadState *ts) {
#if PY_VERSION_HEX >= 0x030D0000
  return ts->current_frame;
#else
  return ts->cframe->current_frame;
#endif
}

/* The owner of the entry frame _PyEval_EvalFrameDefault puts below the
 * frame it evaluates. */
#if PY_VERSION_HEX >= 0x030E0000
#define EF_ENTRY_OWNER FRAME_OWNED_BY_INTERPRETER
#else
#define EF_ENTRY_OWNER FRAME_OWNED_BY_CSTACK
#endif

/* From 3.12 the eval loop clears a returning frame (its locals: a
 * finalizer, a weakref callback may run Python code) before
 * _PyEval_EvalFrameDefault returns to us, where 3.11 left that to its
 * caller. cProfile's return event fires before the clearing, so a function
 * called from it is its caller's callee there. The frame is unlinked
 * first: the thread's current frame is then the evaluation's entry frame,
 * whose `previous` is the frame that was current when the evaluation
 * began (t->ef_cur), where the current frame is the evaluated frame or a
 * deeper one while it runs. Seen at the next call, the innermost
 * evaluation's return is counted then, and not again when it ends. Only
 * the live current frame is read: t->ef_cur is compared, never followed. */
static inline void ef_returned(statsprof__thread *t, statsprof *p, PyThreadState *ts) {
  _PyInterpreterFrame *cur = ef_current(ts);
  if (__builtin_expect(cur && cur->owner == EF_ENTRY_OWNER, 0) && t->ef_frame && !t->ef_left &&
      (void *)cur->previous == t->ef_cur) {
    leave(t, p, p->src.cost_py, 1 << 16);
    t->ef_left = 1;
  }
}

/* Counts the evaluation of frame, the thread's innermost from now on. */
#define EF_ENTER(t, ts, frame)                                                                                     \
  void *outer_frame = (t)->ef_frame, *outer_cur = (t)->ef_cur;                                                   \
  int outer_left = (t)->ef_left;                                                                                 \
  (t)->ef_frame = (frame);                                                                                       \
  (t)->ef_cur = ef_current(ts);                                                                                  \
  (t)->ef_left = 0
/* Whether its return still has to be counted. Still the innermost (its
 * frame in the thread's state): the outer evaluation's values come back,
 * and its return was perhaps counted already. After a greenlet switch
 * another greenlet's evaluation may be the innermost: it stays so, and
 * this return is counted, as cProfile counts each return event. */
static inline int ef_leave_counts(statsprof__thread *t, _PyInterpreterFrame *frame, void *outer_frame,
                                  void *outer_cur, int outer_left) {
  if (__builtin_expect(t->ef_frame != frame, 0)) return 1;
  int left = t->ef_left;
  t->ef_frame = outer_frame;
  t->ef_cur = outer_cur;
  t->ef_left = outer_left;
  return !left;
}
#define EF_LEAVE_COUNTS(t, frame) ef_leave_counts(t, frame, outer_frame, outer_cur, outer_left)
#else
/* 3.11 clears the frame after we count its return: nothing to remember. */
static inline void ef_returned(statsprof__thread *t, statsprof *p, PyThreadState *ts) { (void)t, (void)p, (void)ts; }
#define EF_ENTER(t, ts, frame) ((void)0)
#define EF_LEAVE_COUNTS(t, frame) 1
#endif

#if PY_VERSION_HEX < 0x030E0000
/* 3.11 runs a Python call inside the calling evaluation (no C recursion)
 * only while no frame-evaluation function is installed; with ours each
 * Python call is a C call into _PyEval_EvalFrameDefault, and 3.11 has no C
 * recursion limit. A program that raised sys.setrecursionlimit and
 * recursed 20000 frames deep, which runs without a profiler and under
 * cProfile, overflowed an 8 MB stack: SIGSEGV (3.11.7). An evaluation that
 * would start in the last part of its thread's stack is refused with
 * RecursionError instead, as 3.12's C recursion limit refuses it, leaving
 * the frame as _PyEval_EvalFrameDefault leaves it when its own recursion
 * check fails at the start. Only on the thread's own stack: a host that
 * runs Python on a stack of its own (a coroutine library's) is not
 * checked. The C recursion limits of 3.12 (1500 units, 2 per evaluation)
 * and 3.13 (10000) count calls, not bytes: a thread started with a small
 * stack (threading.stack_size) overflowed 256 KiB before 3.12's limit
 * (SIGSEGV, 3.12.1), so the same check runs there (3.14 checks the stack
 * pointer itself). */
/* initial-exec, as statsprof__tls (hook.c): read on every evaluation, so
 * no __tls_get_addr call when the library is in a shared object. */
static __thread uintptr_t ef_stack_lo __attribute__((tls_model("initial-exec")));
static __thread uintptr_t ef_stack_floor __attribute__((tls_model("initial-exec"))) = UINTPTR_MAX; /* not looked up yet */

static __attribute__((noinline, cold)) int ef_stack_low(uintptr_t sp) {
  if (ef_stack_floor == UINTPTR_MAX) {
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      if (pthread_attr_getstack(&a, &addr, &size) != 0) size = 0;
      pthread_attr_destroy(&a);
    }
    /* What the refused evaluation's caller still needs below us: a
     * quarter of the stack, at most 256 KiB. Unknown bounds: never. */
    size_t margin = size / 4 < 256 * 1024 ? size / 4 : 256 * 1024;
    ef_stack_lo = size ? (uintptr_t)addr : 0;
    ef_stack_floor = size ? (uintptr_t)addr + margin : 0;
  }
  return sp >= ef_stack_lo && sp < ef_stack_floor;
}

static inline int ef_stack_ok(void) {
  /* A local's address, not __builtin_frame_address: that made ef_eval
   * keep a frame pointer, one register fewer on every evaluation. */
  char here;
  uintptr_t sp = (uintptr_t)&here;
  return __builtin_expect(sp >= ef_stack_floor, 1) || !ef_stack_low(sp);
}

#define EF_NO_STACK                                                                                     \
  "maximum recursion depth exceeded: no C stack left (under statsprof's builtins=off source on Python " \
  Py_STRINGIFY(PY_MAJOR_VERSION) "." Py_STRINGIFY(PY_MINOR_VERSION) " each Python call is a C call)"
#if PY_VERSION_HEX < 0x030C0000
/* 3.11: the caller (_PyEval_Vector, gen_send_ex2) pops the frame. */
static __attribute__((noinline, cold)) PyObject *ef_refuse(PyThreadState *ts, _PyInterpreterFrame *frame,
                                                           int throwflag) {
  (void)ts, (void)frame, (void)throwflag;
  PyErr_SetString(PyExc_RecursionError, EF_NO_STACK);
  return NULL;
}
#else
/* 3.12, 3.13: the eval loop pops the frame it was given, also when its own
 * recursion check fails at the start; so that one fails: with no C
 * recursion units left it raises RecursionError and unwinds the frame
 * (Python/ceval.c, _Py_CheckRecursiveCall), whose clearing then runs with
 * none left (a finalizer it runs gets RecursionError too). Not while
 * CPython is making a RecursionError (recursion_headroom), where its own
 * check lets the evaluation run. */
static __attribute__((noinline, cold)) PyObject *ef_refuse(PyThreadState *ts, _PyInterpreterFrame *frame,
                                                           int throwflag) {
  if (ts->recursion_headroom) return _PyEval_EvalFrameDefault(ts, frame, throwflag);
  int units = ts->c_recursion_remaining;
  ts->c_recursion_remaining = 0;
  PyObject *r = _PyEval_EvalFrameDefault(ts, frame, throwflag);
  ts->c_recursion_remaining = units;
  if (!r && PyErr_ExceptionMatches(PyExc_RecursionError)) {
    PyErr_Clear();
    PyErr_SetString(PyExc_RecursionError, EF_NO_STACK);
  }
  return r;
}
#endif
#else
static inline int ef_stack_ok(void) { return 1; } /* CPython 3.12+ checks the C stack itself */
static inline PyObject *ef_refuse(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  (void)ts, (void)frame, (void)throwflag;
  return NULL;
}
#endif

/* Whether a code object is named __init__ (3.13: ef_by_monitoring). */
static int ef_named_init(PyObject *code) {
  PyObject *name = ((PyCodeObject *)code)->co_name;
  return PyUnicode_GET_LENGTH(name) == 8 && PyUnicode_CompareWithASCIIString(name, "__init__") == 0;
}

#if STATSPROF__EF_INIT
/* 3.13's CALL_ALLOC_AND_ENTER_INIT (a call of a class whose __init__ is a
 * Python function) pushes the __init__ frame without calling the
 * frame-evaluation function, and specialises so whether one is installed
 * or not (3.14 checks), also at a class's very first call where a site
 * shared by many classes specialises again. The calls of __init__
 * functions are therefore counted through sys.monitoring instead, which
 * sees them either way: their code objects get PY_START and PY_RETURN as
 * local events of our tool (PY_UNWIND is on for all code), and the
 * frame-evaluation function leaves them alone, so each call counts once.
 * Which code objects, from a run's first attach to its stop (production
 * mode's closed windows included):
 *   - the __init__ of every class that exists at that first attach
 *     (ef_watch_classes);
 *   - every function made (a class body's def, exec'd code) or given a new
 *     code object whose code is named __init__ (a function watcher:
 *     ef_func_event);
 *   - a code object evaluated through us for the first time since the
 *     profiler was made that is its first argument's type's __init__,
 *     whatever its name (ef_watch_new).
 * Left: a function of another name made before the run and made a class's
 * __init__ during it, whose first call is at a site that specialises
 * then. */
static inline int ef_by_monitoring(const statsprof *p, PyCodeObject *co) {
  const _PyCoMonitoringData *m = co->_co_monitoring;
  return m && (m->local_monitors.tools[PY_MONITORING_EVENT_PY_START] & p->src.ef_init_tool);
}

static int ef_init_code(PyObject *code) {
  if (!code || !PyCode_Check(code)) return 0;
  PyCodeObject *co = (PyCodeObject *)code;
  return co->co_argcount >= 1 && !(co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR));
}

static int ef_init_candidate(PyObject *fn) { return fn && PyFunction_Check(fn) && ef_init_code(PyFunction_GET_CODE(fn)); }

/* statsprof__monitoring_watch_init from a hook or a watcher: it calls
 * Python (a finalizer may run, and let the GIL go), so p is held
 * meanwhile (statsprof__hook_hold: a stop or destroy from there fails
 * instead of freeing it under us), and the exception being raised, if
 * any, is kept. */
static int ef_watch(statsprof *p, PyObject *code) {
  statsprof__hook_hold(p);
  PyObject *exc = PyErr_GetRaisedException();
  int rc = statsprof__monitoring_watch_init(p, code);
  PyErr_SetRaisedException(exc);
  statsprof__hook_let_go(p);
  return rc;
}

/* A code object's first evaluation through us since the profiler was made:
 * whether it is an __init__ now counted through sys.monitoring (the
 * evaluation's own PY_START included). */
static __attribute__((noinline)) int ef_watch_new(statsprof *p, _PyInterpreterFrame *frame) {
  PyCodeObject *co = ef_code(frame);
  PyObject *fn = frame->f_funcobj;
  if (!ef_init_candidate(fn) || PyFunction_GET_CODE(fn) != (PyObject *)co) return 0;
  PyObject *self = frame->localsplus[0];
  int init = ef_named_init((PyObject *)co);
  if (!init && self) {
    PyObject *exc = PyErr_GetRaisedException(), *name = PyUnicode_InternFromString("__init__");
    init = name && _PyType_Lookup(Py_TYPE(self), name) == fn;
    Py_XDECREF(name);
    PyErr_SetRaisedException(exc);
  }
  return init && ef_watch(p, (PyObject *)co) == 0 && ef_by_monitoring(p, co);
}

/* The profiler whose function watcher is on, from its run's first attach
 * to its stop. */
static statsprof *g_ef_owner;

static int ef_func_event(PyFunction_WatchEvent event, PyFunctionObject *func, PyObject *new_value) {
  statsprof *p = g_ef_owner;
  PyObject *code = event == PyFunction_EVENT_CREATE ? func->func_code
                   : event == PyFunction_EVENT_MODIFY_CODE ? new_value
                                                           : NULL;
  if (p && ef_init_code(code) && ef_named_init(code)) ef_watch(p, code);
  return 0;
}

/* Every class's own __init__, over type.__subclasses__ from object. */
static void ef_watch_classes(statsprof *p) {
  int64_t t0 = statsprof__mono_ns();
  PyObject *todo = PyList_New(0), *seen = PySet_New(NULL), *name = PyUnicode_InternFromString("__init__");
  long nwatched = 0, nfailed = 0, nclasses = 0;
  if (todo && seen && name && PyList_Append(todo, (PyObject *)&PyBaseObject_Type) == 0) {
    Py_ssize_t n;
    while ((n = PyList_GET_SIZE(todo)) > 0) {
      PyObject *tp = PyList_GET_ITEM(todo, n - 1);
      Py_INCREF(tp);
      PyList_SetSlice(todo, n - 1, n, NULL);
      nclasses++;
      PyObject *subs = PyObject_CallMethod((PyObject *)&PyType_Type, "__subclasses__", "O", tp);
      for (Py_ssize_t i = 0; subs && PyList_Check(subs) && i < PyList_GET_SIZE(subs); i++) {
        PyObject *sub = PyList_GET_ITEM(subs, i), *id = PyLong_FromVoidPtr(sub);
        int had = id ? PySet_Contains(seen, id) : -1;
        if (had == 0 && (PySet_Add(seen, id) || PyList_Append(todo, sub))) had = -1;
        Py_XDECREF(id);
        if (had < 0) PyErr_Clear();
      }
      Py_XDECREF(subs);
      PyErr_Clear();
      if (PyType_HasFeature((PyTypeObject *)tp, Py_TPFLAGS_HEAPTYPE)) {
        PyObject *init = PyDict_GetItemWithError(((PyTypeObject *)tp)->tp_dict, name);
        Py_XINCREF(init); /* watching runs Python, which may change the class */
        if (ef_init_candidate(init)) {
          if (statsprof__monitoring_watch_init(p, PyFunction_GET_CODE(init)) == 0) nwatched++;
          else nfailed++;
        }
        Py_XDECREF(init);
        PyErr_Clear();
      }
      Py_DECREF(tp);
    }
  }
  PyErr_Clear();
  Py_XDECREF(todo);
  Py_XDECREF(seen);
  Py_XDECREF(name);
  if (nfailed || !todo || !seen || !name)
    statsprof__logf(&p->log,
                    "source=evalframe: %ld of the %ld __init__ functions found could not be given to sys.monitoring: "
                    "calls of those classes may be missed",
                    nfailed, nwatched + nfailed);
  if (getenv("STATSPROF_DEBUG"))
    statsprof__logf(&p->log, "source=evalframe: %ld classes, %ld __init__ functions counted through sys.monitoring in %.2f ms",
                    nclasses, nwatched,
                    (double)(statsprof__mono_ns() - t0) / 1e6);
}

/* The version tag a type gets now, from a probe type of ours: CPython
 * hands them out in order from one counter per interpreter, and a call
 * site specialises only for a type that has one (CALL_ALLOC_AND_ENTER_INIT
 * is keyed by it). So when the probe's next tag follows the one it got at
 * the last walk, no class was made or changed in between, and a
 * production-mode window need not walk them again. 0: unknown. */
static unsigned int ef_next_version(statsprof *p) {
  static PyType_Slot slots[] = {{0, NULL}};
  static PyType_Spec spec = {"statsprof._version_probe", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, slots};
  for (int tries = 0; tries < 2; tries++) {
    if (!p->src.ef_probe && !(p->src.ef_probe = PyType_FromSpec(&spec))) break;
    PyTypeObject *probe = (PyTypeObject *)p->src.ef_probe;
    PyType_Modified(probe);
    if (PyUnstable_Type_AssignVersionTag(probe)) return probe->tp_version_tag;
    Py_CLEAR(p->src.ef_probe); /* out of tags of its own (CPython gives a type 1000): a new one */
  }
  PyErr_Clear();
  return 0;
}

/* An attach: at a run's first, the classes that exist and a watcher for
 * the functions made from now on; at a production-mode window's, the
 * classes again when one was made or changed since (its __init__ perhaps
 * a function of another name, and its call sites specialised between the
 * windows). */
static void ef_watch_run(statsprof *p) {
  if (p->src.config.scratch) return; /* calibration's loops make no classes */
  if (!p->src.ef_func_watcher) {
    int id = PyFunction_AddWatcher(ef_func_event);
    p->src.ef_func_watcher = id < 0 ? -1 : id + 1; /* -1: none this run */
    if (id < 0) {
      PyErr_Clear();
      statsprof__logf(&p->log, "source=evalframe: no function watcher left (CPython has 8): calls of a class "
                               "made while profiling may be missed where a call site specialises at its first call");
    }
  }
  /* Ours while attached (g_ef is one profiler's), and perhaps another
   * profiler's between our windows. */
  if (p->src.ef_func_watcher > 0) g_ef_owner = p;
  unsigned int version = ef_next_version(p);
  int again = p->src.ef_walked && version && version == p->src.ef_version + 1;
  p->src.ef_version = version;
  if (again) return;
  p->src.ef_walked = 1;
  ef_watch_classes(p);
}

/* At stop: the watcher off. */
static void ef_unwatch_run(statsprof *p) {
  if (g_ef_owner == p) g_ef_owner = NULL;
  if (p->src.ef_func_watcher > 0 && statsprof__python_reachable(p) && statsprof__holds_gil() &&
      PyFunction_ClearWatcher(p->src.ef_func_watcher - 1))
    PyErr_Clear();
  p->src.ef_func_watcher = 0;
}
#endif

static PyObject *ef_eval(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  if (__builtin_expect(!ef_stack_ok(), 0)) return ef_refuse(ts, frame, throwflag);
  statsprof *p = g_ef;
  statsprof__thread *t;
  if (__builtin_expect(!p || !ef_is_call(ts, frame, throwflag), 0) || !(t = statsprof__tls_thread(p)))
    return _PyEval_EvalFrameDefault(ts, frame, throwflag);
  uint64_t key = p->src.tls_key;
  ef_returned(t, p, ts);
  PyCodeObject *co = ef_code(frame);
  /* enter_code's label, read once */
  uintptr_t extra = (uintptr_t)code_extra(co);
  int known = extra >> 32 == p->gen;
#if STATSPROF__EF_INIT
  if (__builtin_expect(ef_by_monitoring(p, co), 0)) return _PyEval_EvalFrameDefault(ts, frame, throwflag);
  if (__builtin_expect(!known, 0)) {
    /* Python ran: the run may have ended meanwhile */
    if (ef_watch_new(p, frame) || g_ef != p || p->src.tls_key != key || !(t = statsprof__tls_thread(p)))
      return _PyEval_EvalFrameDefault(ts, frame, throwflag);
  }
#endif
  EF_ENTER(t, ts, frame);
  if (!(p->src.tsc && known && enter_fast_tsc(t, p, (uint32_t)extra, p->src.cost_py)))
    statsprof__enter_code_slow(t, p, co, p->src.cost_py);
  PyObject *r = _PyEval_EvalFrameDefault(ts, frame, throwflag);
  /* Still the run it entered in (p and t are alive): its return pops the
   * shadow stack's top, unless it was counted already. */
  if (__builtin_expect(g_ef == p && p->src.tls_key == key, 1) && EF_LEAVE_COUNTS(t, frame) &&
      !leave_fast(t, p, p->src.cost_py, 1 << 16))
    statsprof__leave_slow(t, p, p->src.cost_py, 1 << 16);
  return r;
}

/* ---- the self-check ---------------------------------------------------- */

/* Every way a Python frame gets evaluated, warmed up so that the eval loop
 * specialises each (b[i], a method, a property, an __init__, an overridden
 * __getattribute__, plain, default and keyword calls and a method with a
 * default, a generator in a for loop, yield from): per round 15
 * evaluations that are calls, plus the driver's own. An instruction that
 * pushes a frame without calling the frame-evaluation function shows as
 * fewer (gh-104405 before 3.11.4, CALL_ALLOC_AND_ENTER_INIT on 3.13). */
static const char kProbe[] =
    "class _B:\n"
    "    def __getitem__(self, i): return i\n"
    "    def m(self, i): return i\n"
    "    def md(self, i, j=1): return i\n"
    "    @property\n"
    "    def p(self): return 1\n"
    "class _I:\n"
    "    def __init__(self, i): self.i = i\n"
    "class _G:\n"
    "    def __getattribute__(self, name): return 1\n"
    "def _f(i): return i\n"
    "def _d(i, j=1): return i\n"
    "def _k(i, *, j): return i\n"
    "def _gen(): yield 1\n"
    "def _sub(): yield 1\n"
    "def _outer(): yield from _sub()\n"
    "def _statsprof_probe(n, b=_B(), g=_G()):\n"
    "    s = 0\n"
    "    for i in range(n):\n"
    "        s += b[i] + b.m(i) + b.md(i) + b.p + _I(i).i + g.x + _f(i) + _d(i) + _k(i, j=i)\n"
    "        for x in _gen(): s += x\n"
    "        for x in _outer(): s += x\n"
    "    return s\n";
enum { PROBE_ROUNDS = 64, PROBE_PER_ROUND = 15, PROBE_WARMUP = 1000 };
/* The version test stands on its own: a profile or trace function on this
 * thread may keep the loop from specialising, and the self-check would then
 * pass on any version. */

static PyObject *g_probe_file; /* the probe's co_filename: its code objects share it */
static long g_probe_seen;

/* 3.13 counts __init__ functions through sys.monitoring (ef_by_monitoring):
 * their evaluations are left out of the self-check. */
#define PROBE_INITS (STATSPROF__EF_INIT ? PROBE_ROUNDS : 0)

static PyObject *ef_probe_eval(PyThreadState *ts, _PyInterpreterFrame *frame, int throwflag) {
  PyCodeObject *co = ef_code(frame);
  if (co->co_filename == g_probe_file &&
      !(!throwflag && (co->co_flags & CO_GENERATOR) && frame->owner != FRAME_OWNED_BY_GENERATOR) &&
      !(STATSPROF__EF_INIT && ef_named_init((PyObject *)co)))
    g_probe_seen++;
  return _PyEval_EvalFrameDefault(ts, frame, throwflag);
}

/* Calls fn(n); 0 when it raised. */
static int probe_call(PyObject *fn, long n) {
  PyObject *r = PyObject_CallFunction(fn, "l", n);
  Py_XDECREF(r);
  return r != NULL;
}

static int g_probe_raised; /* the last probe was stopped by an exception from outside */

/* Runs the warmed-up probe PROBE_ROUNDS times under a counting
 * frame-evaluation function: how many of its calls the function saw, or -1
 * when the probe could not run. The slot must be free. */
static long ef_probe(PyInterpreterState *interp) {
  PyObject *ns = PyDict_New();
  PyObject *code = ns ? Py_CompileString(kProbe, "<statsprof-evalframe-probe>", Py_file_input) : NULL;
  if (ns) PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *r = code ? PyEval_EvalCode(code, ns, ns) : NULL;
  PyObject *fn = r ? PyDict_GetItemString(ns, "_statsprof_probe") : NULL;
  g_probe_file = fn && PyFunction_Check(fn) ? ((PyCodeObject *)PyFunction_GetCode(fn))->co_filename : NULL;
  long seen = -1;
  if (g_probe_file && probe_call(fn, PROBE_WARMUP)) {
    g_probe_seen = 0;
    _PyInterpreterState_SetEvalFrameFunc(interp, ef_probe_eval);
    int ok = probe_call(fn, PROBE_ROUNDS);
    _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
    if (ok) seen = g_probe_seen;
  }
  /* An exception from outside (a signal handler's Ctrl-C, SystemExit,
   * MemoryError): the start fails and hands it back. Another (a
   * RecursionError when started near the limit) only means no verdict. */
  g_probe_raised = PyErr_Occurred() && (!PyErr_ExceptionMatches(PyExc_Exception) ||
                                        PyErr_ExceptionMatches(PyExc_MemoryError));
  if (g_probe_raised) statsprof__calibrate_keep_raised();
  else PyErr_Clear();
  g_probe_file = NULL;
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

/* 0, or -1 when the self-check could not run (an exception from outside
 * stopped it): no verdict then, the next start checks again. */
static int ef_verdict(PyInterpreterState *interp) {
  if (g_verdict_epoch == statsprof__epoch()) return 0;
  unsigned long v = Py_Version; /* the running libpython, not the headers */
  long seen = ef_probe(interp);
  if (seen < 0) return -1;
  long want = PROBE_ROUNDS * PROBE_PER_ROUND + 1 - PROBE_INITS;
  g_verdict = v >= 0x030B04F0 && seen == want;
  g_verdict_why[0] = 0;
  if (!g_verdict)
    snprintf(g_verdict_why, sizeof g_verdict_why,
             "CPython %lu.%lu.%lu pushes some Python frames without calling the frame-evaluation function%s: "
             "its self-check saw %ld of %ld evaluations",
             v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v < 0x030B04F0 ? " (gh-104405, fixed in 3.11.4)" : "",
             seen, want);
  g_verdict_epoch = statsprof__epoch();
  return 0;
}

int statsprof__evalframe_usable(char *why, size_t n) {
  PyInterpreterState *interp = PyThreadState_Get()->interp;
  if (g_ef || g_ef_claim) {
    snprintf(why, n, "another statsprof profiler is using the frame-evaluation function");
    return 0;
  }
#if EF_UNWIND
  if (!statsprof__monitoring_tool_free()) {
    snprintf(why, n, "sys.monitoring tool ids 3 and 4 are both in use, and this source needs one for PY_UNWIND");
    return 0;
  }
#endif
  if (!ef_slot_free(interp)) {
    snprintf(why, n,
             "another frame-evaluation function (PEP 523: a debugger or another profiler) is installed on "
             "this interpreter");
    return 0;
  }
  int first = g_verdict_epoch != statsprof__epoch();
  if (ef_verdict(interp)) {
    snprintf(why, n, "its self-check %s", g_probe_raised ? "was interrupted by an exception" : "could not run");
    return g_probe_raised ? -2 : 0;
  }
  if (g_verdict) return 1;
  snprintf(why, n, "%s", g_verdict_why);
  return first ? 0 : -1;
}

int statsprof__evalframe_attach_all(statsprof *p) {
  if (g_ef == p) return 0;
  PyInterpreterState *interp = PyThreadState_Get()->interp;
  if (g_ef || g_ef_claim || !ef_slot_free(interp))
    return statsprof__error(p, STATSPROF_ESTATE,
                            "source=evalframe: the frame-evaluation function was taken (by %s) since start",
                            g_ef || g_ef_claim ? "another statsprof profiler" : "a debugger or another profiler");
  g_ef_claim = p;
#if EF_UNWIND
  int rc = statsprof__monitoring_unwind_on(p);
  if (rc) {
    g_ef_claim = NULL;
    return rc;
  }
#endif
  p->src.tls_key = statsprof__tls_key_next(); /* every thread's cached state is stale */
#if STATSPROF__EF_INIT
  p->src.mon_on = 1; /* the events of __init__ functions */
  statsprof__monitoring_fast_update(p);
  ef_watch_run(p);
#endif
  g_ef_claim = NULL;
  g_ef = p;
  _PyInterpreterState_SetEvalFrameFunc(interp, ef_eval);
  return 0;
}

void statsprof__evalframe_detach_all(statsprof *p) {
  int mine = g_ef == p;
#if STATSPROF__EF_INIT
  if (!p->running) ef_unwatch_run(p);
#endif
#if EF_UNWIND
  /* A window's close keeps the tool id for the next window; a stop gives
   * it back (and 3.13's local events), also after a window closed before
   * it (production mode). */
  if (mine || !p->running) statsprof__monitoring_unwind_off(p);
#endif
  if (mine) {
    g_ef = NULL; /* evaluations still running find it gone */
    if (statsprof__python_reachable(p)) {
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

void statsprof__evalframe_release(statsprof *p) {
#if STATSPROF__EF_INIT
  if (g_ef_owner == p || p->src.ef_func_watcher) ef_unwatch_run(p);
#else
  (void)p;
#endif
}

void statsprof__evalframe_after_fork(void) { g_ef_claim = NULL; }

void statsprof__evalframe_forget(void) {
  g_ef = g_ef_claim = NULL; /* the interpreter, and its frame-evaluation function, are gone */
#if STATSPROF__EF_INIT
  g_ef_owner = NULL;
#endif
  g_verdict_epoch = 0;
}
