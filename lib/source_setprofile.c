/* source_setprofile.c — the PyEval_SetProfile event source (every
 * version; the only one on 3.11): a C profile function installed on each
 * thread state, whose object is that thread's statsprof__thread.
 */
#include <string.h>

#include "hotpath.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
/* CPython 3.11's layouts (Include/internal/pycore_frame.h, pycore_code.h):
 * reading them directly saves two calls and a refcount pair per call event.
 * Other versions use the public functions below. */
struct statsprof__iframe311 {
  PyObject *f_func, *f_globals, *f_builtins, *f_locals;
  PyCodeObject *f_code;
};
struct statsprof__pyframe311 {
  PyObject_HEAD
  PyFrameObject *f_back;
  struct statsprof__iframe311 *f_frame;
};
static inline PyCodeObject *frame_code(PyFrameObject *frame) {
  return ((struct statsprof__pyframe311 *)frame)->f_frame->f_code;
}
#else
static inline PyCodeObject *frame_code(PyFrameObject *frame) {
  PyCodeObject *co = PyFrame_GetCode(frame);
  /* The frame holds a reference to its code: dropping ours at once is safe. */
  Py_DECREF(co);
  return co;
}
#endif

#if PY_VERSION_HEX >= 0x030C0000
/* On 3.12+ PyEval_SetProfile runs as a sys.monitoring tool of CPython's,
 * which boxes each event's bytecode offset in a new int past its small
 * ints before it calls the profile function: calibrate.c measures what
 * that costs, and the frame's last instruction is that offset (a
 * generator resumed, a return, the call instruction of a C call). */
static inline uint64_t box_cost(const statsprof *p, PyFrameObject *frame) {
  return PyFrame_GetLasti(frame) > p->src.sp_small_max ? p->src.cost_box : 0;
}

long statsprof__small_int_max(void) {
  static long max = -1;
  for (long n = 0; max < 0; n++) {
    PyObject *a = PyLong_FromLong(n), *b = PyLong_FromLong(n);
    if (!a || !b || a != b || n == 1 << 16) max = n - 1;
    Py_XDECREF(a);
    Py_XDECREF(b);
  }
  PyErr_Clear();
  return max;
}
#else
static inline uint64_t box_cost(const statsprof *p, PyFrameObject *frame) {
  (void)p, (void)frame;
  return 0; /* 3.11 hands the profile function the frame, nothing boxed */
}

long statsprof__small_int_max(void) { return 256; }
#endif

/* builtins=off: the C call is not counted, but its events cost as much as
 * calibration measured, and the time in between, d, is its caller's own
 * time spent in C, which the bytecode scale s must not shrink. It is
 * measured on the caller's own clock (time less its callees' time, what
 * their scaling removed and the profiler's cost, so that Python functions
 * the C function calls back are left out), and the frame is given back
 * beforehand what the scale will take from it: its own time grows by
 * x = d (1 - s) / s (removed, unsigned, wraps; leave_at's arithmetic is
 * modular), so that it keeps (own - d) s + d. Only the innermost pending
 * C call is tracked: one that calls back Python which makes a C call of
 * its own loses this and is scaled like bytecode. CPython pairs every C
 * return with its call in the same frame; a frame entered before we
 * attached is not on the stack, and frames we skipped are not the top. */
static void on_c_not_counted(statsprof__thread *t, statsprof *p, int call, uint64_t box) {
  t->spent += p->src.cost_rej + box;
  if (!t->depth || t->skipped || !p->src.own_scale) return;
  statsprof__callframe *f = &t->stack[t->depth - 1];
  uint64_t own_clock = now(p) - (t->spent & p->src.compensate_mask) - f->subt - f->removed;
  if (call) {
    t->cmark = own_clock;
    t->cdepth = t->depth;
  } else if (t->cdepth == t->depth) {
    t->cdepth = 0;
    int64_t d = (int64_t)(own_clock - t->cmark);
    uint64_t x = d > 0 ? (uint64_t)d * ((1 << 16) - p->src.own_scale) / p->src.own_scale : 0;
    f->removed -= x;
    t->slowdown -= x;
  }
}

/* Each kind of event has its own out-of-line handler, which the hook
 * jumps to (a sibling call): the hook itself saves no registers. Each
 * handler's common case calls nothing on 3.11 (on 3.12+ box_cost's
 * PyFrame_GetLasti) and jumps to its slow part otherwise, so that it
 * needs few registers and saves fewer. */
static __attribute__((noinline)) int on_py_call_slow(statsprof__thread *t, statsprof *p, PyCodeObject *co,
                                                     uint64_t cost) {
  statsprof__enter_code_slow(t, p, co, cost);
  return 0;
}

static __attribute__((noinline)) int on_py_call(statsprof__thread *t, statsprof *p, PyFrameObject *frame) {
  PyCodeObject *co = frame_code(frame);
  uint64_t cost = p->src.cost_py + box_cost(p, frame);
  if (enter_code_fast(t, p, co, cost)) return 0;
  return on_py_call_slow(t, p, co, cost);
}

static __attribute__((noinline)) int on_py_return(statsprof__thread *t, statsprof *p, PyFrameObject *frame) {
  leave(t, p, p->src.cost_py + box_cost(p, frame), p->src.own_scale);
  return 0;
}

/* The C function's method definition when its type is exactly one of
 * CPython's (PyCFunction_Check without the subtype walk), else NULL. */
static inline const PyMethodDef *c_exact_ml(PyObject *arg) {
  PyTypeObject *tp = Py_TYPE(arg);
  return tp == &PyCFunction_Type || tp == &PyCMethod_Type ? ((PyCFunctionObject *)arg)->m_ml : NULL;
}

static __attribute__((noinline)) int on_c_call_slow(statsprof__thread *t, statsprof *p, PyFrameObject *frame,
                                                    PyObject *arg) {
  if (!p->src.config.builtins) on_c_not_counted(t, p, 1, box_cost(p, frame));
  else if (PyCFunction_Check(arg))
    enter(t, p, cfunc_label_of(p, (PyCFunctionObject *)arg), p->src.cost_c + box_cost(p, frame));
  return 0;
}

static __attribute__((noinline)) int on_c_call(statsprof__thread *t, statsprof *p, PyFrameObject *frame,
                                               PyObject *arg) {
  const PyMethodDef *ml;
  if (p->src.config.builtins && p->src.tsc && (ml = c_exact_ml(arg)) &&
      enter_cfunc_cached_tsc(t, p, ml, p->src.cost_c + box_cost(p, frame)))
    return 0;
  return on_c_call_slow(t, p, frame, arg);
}

static __attribute__((noinline)) int on_c_return_slow(statsprof__thread *t, statsprof *p, PyFrameObject *frame,
                                                      PyObject *arg) {
  if (!p->src.config.builtins) on_c_not_counted(t, p, 0, box_cost(p, frame));
  else if (PyCFunction_Check(arg)) leave(t, p, p->src.cost_c + box_cost(p, frame), 1 << 16);
  return 0;
}

static __attribute__((noinline)) int on_c_return(statsprof__thread *t, statsprof *p, PyFrameObject *frame,
                                                 PyObject *arg) {
  if (p->src.config.builtins && p->src.tsc && !p->frames.tracking && c_exact_ml(arg)) {
    leave_fast_tsc(t, p, p->src.cost_c + box_cost(p, frame), 1 << 16);
    return 0;
  }
  return on_c_return_slow(t, p, frame, arg);
}

int statsprof__hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
  statsprof__thread *t = (statsprof__thread *)obj;
  statsprof *p = t->p;
  if (__builtin_expect(p == NULL, 0)) return 0; /* profiler stopped or gone */
  switch (what) {
  case PyTrace_CALL:
    return on_py_call(t, p, frame);
  case PyTrace_RETURN:
    return on_py_return(t, p, frame);
  case PyTrace_C_CALL:
    return on_c_call(t, p, frame, arg);
  case PyTrace_C_RETURN:
  case PyTrace_C_EXCEPTION:
    return on_c_return(t, p, frame, arg);
  default:
    return 0;
  }
}

static int is_ours(statsprof *p, PyThreadState *ts) {
  return ts->c_profilefunc == statsprof__hook && ts->c_profileobj &&
         ((statsprof__thread *)ts->c_profileobj)->p == p;
}

int statsprof__setprofile_attach_self(statsprof *p) {
  PyThreadState *ts = PyThreadState_Get();
  if (is_ours(p, ts)) return 0;
  int rc = statsprof__hook_ready();
  if (rc) return statsprof__error(p, rc, "cannot prepare the profile hook");
  statsprof__thread *t = statsprof__thread_new(p, ts->thread_id);
  if (!t) return statsprof__error(p, STATSPROF_ENOMEM, "out of memory allocating a thread state");
  /* Our own thread state: no other thread can free it meanwhile. The
   * heap type's instances keep it alive (PyObject_New took a ref). */
  if (statsprof__set_profile(ts, statsprof__hook, (PyObject *)t) < 0) {
    PyErr_Clear();
    statsprof__thread_orphan(t);
    Py_DECREF(t);
    return statsprof__error(p, STATSPROF_EPYTHON,
                            "PyEval_SetProfile refused (an audit hook raised)");
  }
  Py_DECREF(t); /* the thread state owns it now */
  return 0;
}

int statsprof__setprofile_attach_all(statsprof *p, int self) {
  int rc = self > 0 ? statsprof__setprofile_attach_self(p) : 0;
  if (rc) return rc;
  if (statsprof__hook_ready()) return statsprof__error(p, STATSPROF_EPYTHON, "cannot prepare the profile hook");
  /* Another thread's own profiler (cProfile, a debugger) is left alone. */
  statsprof__tstates_install(p, PyThreadState_Get(), self != 0);
  return 0;
}

void statsprof__setprofile_detach_all(statsprof *p) {
  for (statsprof__thread *t = p->src.threads; t; t = t->next) statsprof__flush_thread(t);
  if (statsprof__python_reachable(p)) statsprof__tstates_remove(p, PyThreadState_Get());
  /* Whatever still holds one of ours (a refused removal) finds it inert. */
  while (p->src.threads) statsprof__thread_orphan(p->src.threads);
}

/* ---- threads started later from Python -------------------------------- */

/* threading.setprofile(f) makes each new Thread call sys.setprofile(f) before
 * run(); f then swaps itself for the C hook on its first event.
 *
 * f is one function per profiler, made at its first start and kept,
 * because Python can keep it too: threading.getprofile() returns it, and a
 * library that saves the hook and restores it later may reinstall it after
 * statsprof_destroy. Release points its capsule at g_released, and a thread
 * that then calls f only clears its profile function. */
static char g_released;

/* Passes an event that came through CPython's trampoline, as sys.setprofile
 * delivers it (frame, event name, arg), to the C hook with state obj. */
static void dispatch(PyObject *obj, PyObject *frame, PyObject *event, PyObject *arg) {
  static const char *const events[] = {"call", "exception", "line", "return", "c_call", "c_exception", "c_return"};
  const char *ev = PyUnicode_Check(event) ? PyUnicode_AsUTF8(event) : NULL;
  if (!ev) PyErr_Clear();
  if (!ev || !PyFrame_Check(frame)) return;
  for (int i = 0; i < 7; i++) {
    if (strcmp(ev, events[i])) continue;
    /* A C event's arg is the function; the hook reads its type. */
    if (i >= PyTrace_C_CALL && arg == Py_None) return;
    statsprof__hook(obj, (PyFrameObject *)frame, i, arg == Py_None ? NULL : arg);
    return;
  }
}

static PyObject *thread_bootstrap(PyObject *capsule, PyObject *const *args, Py_ssize_t nargs) {
  void *ptr = PyCapsule_GetPointer(capsule, "statsprof");
  statsprof *p = ptr == &g_released ? NULL : ptr;
  PyThreadState *ts = PyThreadState_Get();
  if (!p || nargs != 3 || !statsprof__may_attach(p)) {
    PyErr_Clear();
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
  }
  if (statsprof__setprofile_attach_self(p) != 0) {
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
  }
  dispatch(ts->c_profileobj, args[0], args[1], args[2]);
  Py_RETURN_NONE;
}

static PyMethodDef bootstrap_def = {"_statsprof_thread_bootstrap", (PyCFunction)(void (*)(void))thread_bootstrap,
                                    METH_FASTCALL, "Attaches statsprof to a new thread."};

int statsprof__threading_hook(statsprof *p, int install) {
  PyObject *threading = PyImport_ImportModule("threading");
  if (!threading) {
    PyErr_Clear();
    return STATSPROF_EPYTHON;
  }
  int rc = 0;
  PyObject *current = PyObject_GetAttrString(threading, "_profile_hook");
  if (!current) PyErr_Clear();
  int current_is_ours = current && PyCFunction_Check(current) &&
                        ((PyCFunctionObject *)current)->m_ml == &bootstrap_def &&
                        PyCapsule_GetPointer(((PyCFunctionObject *)current)->m_self, "statsprof") == p;
  if (install && !p->src.bootstrap) {
    PyObject *capsule = PyCapsule_New(p, "statsprof", NULL);
    p->src.bootstrap = capsule ? PyCFunction_New(&bootstrap_def, capsule) : NULL;
    Py_XDECREF(capsule);
  }
  PyObject *fn = install ? p->src.bootstrap : NULL;
  /* Only replace what is ours or empty: never clobber another profiler. */
  if ((install && (!current || current == Py_None)) || (!install && current_is_ours)) {
    PyObject *r = PyObject_CallMethod(threading, "setprofile", "O", install ? fn : Py_None);
    if (!r) {
      PyErr_Clear();
      rc = STATSPROF_EPYTHON;
    }
    Py_XDECREF(r);
  }
  if (install && !fn) PyErr_Clear();
  Py_XDECREF(current);
  Py_DECREF(threading);
  return rc;
}

/* ---- a thread's state restored by Python --------------------------------
 *
 * sys.getprofile() returns the calling thread's state. Code that saves it
 * and restores it later with sys.setprofile(saved) (a debugger, a timing
 * helper, a test's fixture) installs CPython's trampoline, which calls the
 * state with (frame, event, arg) on every event, so the state is callable:
 * its first call puts the C hook back with the same state and stack, as
 * if it had never been removed (the events in between are missed, as they
 * are by cProfile, whose object raises TypeError into the profiled code
 * there instead). Installed on another thread (threading.setprofile(saved))
 * it attaches that thread's own state, as the threading hook does; once
 * its profiler has stopped it removes itself. Called by hand it does
 * nothing. */
PyObject *statsprof__setprofile_call(PyObject *self, PyObject *args, PyObject *kw) {
  PyObject *frame, *event, *arg;
  if (kw && PyDict_GET_SIZE(kw)) {
    PyErr_SetString(PyExc_TypeError, "statsprof's profile function takes no keyword arguments");
    return NULL;
  }
  if (!PyArg_UnpackTuple(args, "statsprof profile function", 3, 3, &frame, &event, &arg)) return NULL;
  PyThreadState *ts = PyThreadState_Get();
  if (ts->c_profileobj != self || ts->c_profilefunc == statsprof__hook) Py_RETURN_NONE;
  statsprof__thread *t = (statsprof__thread *)self;
  statsprof *p = t->p;
  if (p && p->src.config.source != STATSPROF__SOURCE_SETPROFILE) p = NULL;
  PyObject *obj = NULL;
  Py_INCREF(self); /* the thread state's reference may go below */
  if (p && t->owner == (unsigned long)ts->thread_id) {
    /* Its own thread: the C hook again; if an audit hook refuses, the
     * trampoline keeps delivering. */
    if (statsprof__set_profile(ts, statsprof__hook, self) < 0) PyErr_Clear();
    obj = self;
  } else {
    if (statsprof__set_profile(ts, NULL, NULL) < 0) PyErr_Clear();
    if (p && statsprof__may_attach(p) && statsprof__setprofile_attach_self(p) == 0) obj = ts->c_profileobj;
  }
  if (obj) dispatch(obj, frame, event, arg);
  Py_DECREF(self);
  Py_RETURN_NONE;
}

void statsprof__setprofile_release(statsprof *p) {
  if (!p->src.bootstrap) return;
  if (PyCapsule_SetPointer(PyCFunction_GET_SELF(p->src.bootstrap), &g_released)) PyErr_Clear();
  Py_CLEAR(p->src.bootstrap);
}
