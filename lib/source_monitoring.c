/* source_monitoring.c — the sys.monitoring event source (3.12+, PEP 669).
 *
 * PEP 669's events, as _lsprof.c of 3.12+ uses them: PY_START, PY_RESUME
 * and PY_THROW enter a Python function, PY_RETURN, PY_YIELD and PY_UNWIND
 * leave it; CALL enters a C function (a builtin, or a method descriptor
 * called with its self, which cProfile reports as the bound builtin) and
 * C_RETURN / C_RAISE leave it. The events cover every thread of the
 * interpreter, including threads a host creates later in C: nothing is
 * installed per thread and no other thread's state is touched. The
 * callbacks find the calling thread's state through thread-local storage,
 * made at the thread's first event (hook.c's statsprof__tls_thread). The
 * tool id is the first free of 3 and 4 (sys.monitoring's ids 0, 1, 2 and 5
 * are the debugger's, coverage's, the profiler's - cProfile's - and the
 * optimizer's), so statsprof runs beside cProfile, coverage and a debugger.
 */
#include "hotpath.h"

/* The callbacks are leaves on their fast paths: a frame pointer there
 * costs a register the edge lookup needs (a spill, a push and a pop per
 * event), and an unwinder loses nothing it needs. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("omit-frame-pointer")
#endif

#if PY_VERSION_HEX >= 0x030C0000
static PyTypeObject *g_mon_callback_type; /* the callbacks' objects, per interpreter */

enum { MON_TOOL_FIRST = 3, MON_TOOL_LAST = 4 };
static PyObject *g_missing; /* sys.monitoring.MISSING (borrowed: module-owned) */
/* Each callback is a tiny object of our own: a vectorcall function
 * (PEP 590) and the profiler. CPython calls the function directly, where a
 * builtin function (PyCFunction) passes through cfunction_vectorcall_FASTCALL
 * (its thread-state lookup, keyword check and recursion guard: ~22
 * instructions per event, more where libpython's thread-local storage
 * goes through __tls_get_addr); and the profiler is one load from self,
 * where a capsule's PyCapsule_GetPointer is a call that checks the
 * capsule's name. One object per event kind and tool id registration,
 * held by sys.monitoring and by the profiler. Python can get hold of them
 * too (register_callback returns the one it replaces), so at release they
 * are pointed at g_mon_inert, a profiler whose events are off: a callback
 * called after statsprof_destroy does nothing instead of reading freed
 * memory. Their type is made once per interpreter (statsprof__hook_ready)
 * and forgotten at Py_Finalize. */
typedef struct {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  statsprof *p;
} mon_callback;

static PyMemberDef mon_callback_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(mon_callback, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot mon_callback_slots[] = {
    {Py_tp_doc, (void *)"statsprof's sys.monitoring callback"},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_members, mon_callback_members},
    {0, NULL},
};

static PyType_Spec mon_callback_spec = {
    .name = "statsprof._MonitoringCallback",
    .basicsize = sizeof(mon_callback),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = mon_callback_slots,
};

int statsprof__monitoring_ready(void) { return statsprof__type_ready(&g_mon_callback_type, &mon_callback_spec); }

void statsprof__monitoring_forget(void) { g_mon_callback_type = NULL; }

static PyObject *mon_callback_new(statsprof *p, vectorcallfunc fn) {
  mon_callback *o = g_mon_callback_type ? PyObject_New(mon_callback, g_mon_callback_type) : NULL;
  if (!o) {
    PyErr_Clear();
    return NULL;
  }
  o->vectorcall = fn;
  o->p = p;
  return (PyObject *)o;
}

static inline statsprof *mon_profiler(PyObject *self) { return ((mon_callback *)self)->p; }

/* No thread's key is NO_KEY and mon_on is 0: every callback takes its slow
 * path, which returns at once. */
static statsprof g_mon_inert = {.src = {.mon_tool = -1, .fast_key = STATSPROF__NO_KEY}};

/* The callbacks: each tries its event's fast path inline and otherwise
 * hands the whole event to an out-of-line function, so that the common
 * case saves few registers and calls nothing. The fast path applies when
 * the thread's cached key is p->src.fast_key, one compare that says: the
 * events are on, this run knows the thread (its state is cached), the
 * clock is the TSC and no frame is tracked (statsprof__monitoring_fast_update);
 * then every lookup has to hit (enter_fast_tsc). */

void statsprof__monitoring_fast_update(statsprof *p) {
  p->src.fast_key = p->src.mon_on && p->src.tsc && !p->frames.tracking ? p->src.tls_key : STATSPROF__NO_KEY;
}

static inline int mon_fast(const statsprof *p) { return __builtin_expect(statsprof__tls.key == p->src.fast_key, 1); }

/* What an event costs beyond its kind's cost: CPython hands each callback
 * the event's bytecode offset as an int, one of its cached small ints (one
 * compare of its address: small_int_range), past those a new int allocated
 * and freed for this event. */
static inline uint64_t mon_box_cost(const statsprof *p, PyObject *offset) {
  return (uintptr_t)offset - p->src.mon_small0 < p->src.mon_small_span ? 0 : p->src.cost_box;
}

static inline uint64_t mon_offset_cost(const statsprof *p, PyObject *const *args, Py_ssize_t nargs) {
  return __builtin_expect(nargs < 2, 0) ? 0 : mon_box_cost(p, args[1]);
}

/* A CALL / C_RETURN event that counts nothing still cost its thread t:
 * it is charged as such. */
static inline void mon_charge_uncounted(statsprof__thread *t, const statsprof *p, PyObject *const *args,
                                        Py_ssize_t nargs) {
  t->spent += p->src.cost_rej + mon_offset_cost(p, args, nargs);
}

/* ml, what a CALL / C_RETURN event is about; NULL is charged to the
 * thread, if this run knows it, as mon_charge_uncounted says. */
static inline const PyMethodDef *mon_counted(statsprof *p, const PyMethodDef *ml, PyObject *const *args,
                                             Py_ssize_t nargs) {
  if (!ml && __builtin_expect(statsprof__tls.key == p->src.tls_key, 1))
    mon_charge_uncounted(statsprof__tls.t, p, args, nargs);
  return ml;
}

static __attribute__((noinline)) PyObject *mon_py_enter_slow(statsprof *p, PyObject *const *args, Py_ssize_t nargs) {
  if (!p->src.mon_on || nargs < 1 || !PyCode_Check(args[0])) Py_RETURN_NONE; /* not CPython's call */
  PyCodeObject *co = (PyCodeObject *)args[0];
  statsprof__thread *t = statsprof__tls_thread(p);
  if (t) enter(t, p, code_label_co(p, co), p->src.cost_py + mon_offset_cost(p, args, nargs));
  Py_RETURN_NONE;
}

static PyObject *mon_py_enter(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  statsprof *p = mon_profiler(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (mon_fast(p) && __builtin_expect(nargs >= 2 && Py_IS_TYPE(args[0], &PyCode_Type), 1) &&
      enter_code_fast_tsc(statsprof__tls.t, p, (PyCodeObject *)args[0], p->src.cost_py + mon_box_cost(p, args[1])))
    Py_RETURN_NONE;
  return mon_py_enter_slow(p, args, nargs);
}

static __attribute__((noinline)) PyObject *mon_leave_slow(statsprof *p, uint64_t cost_of_event,
                                                          uint64_t own_scale) {
  statsprof__thread *t = statsprof__tls_thread(p);
  if (t) statsprof__leave_slow(t, p, cost_of_event, own_scale);
  Py_RETURN_NONE;
}

static __attribute__((noinline)) PyObject *mon_py_leave_slow(statsprof *p, PyObject *const *args, Py_ssize_t nargs) {
  if (!p->src.mon_on) Py_RETURN_NONE;
  return mon_leave_slow(p, p->src.cost_py + mon_offset_cost(p, args, nargs), p->src.own_scale);
}

static PyObject *mon_py_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  /* the frame that returns is the top of this thread's stack */
  statsprof *p = mon_profiler(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (!mon_fast(p) || __builtin_expect(nargs < 2, 0)) return mon_py_leave_slow(p, args, nargs);
  leave_fast_tsc(statsprof__tls.t, p, p->src.cost_py + mon_box_cost(p, args[1]), p->src.own_scale);
  Py_RETURN_NONE;
}

#if STATSPROF__EF_INIT
/* The frame-evaluation source on 3.13: PY_UNWIND is on for every code
 * object (statsprof__monitoring_unwind_on), and leaves a frame only of the
 * __init__ functions counted here (statsprof__monitoring_watch_init); the
 * others are the frame-evaluation function's. */
static PyObject *mon_ef_unwind(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  statsprof *p = mon_profiler(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2 || !PyCode_Check(args[0])) Py_RETURN_NONE;
  const _PyCoMonitoringData *m = ((PyCodeObject *)args[0])->_co_monitoring;
  if (!m || !(m->local_monitors.tools[PY_MONITORING_EVENT_PY_START] & p->src.ef_init_tool)) Py_RETURN_NONE;
  return mon_py_leave(self, args, nargsf, kwnames);
}
#endif

/* What a CALL / C_RETURN event's callable is, by exact type (CALL fires for
 * Python calls too, most of them in Python code): the PyMethodDef of a C
 * function cProfile counts, NULL for a call it does not count, or
 * MON_OTHER_TYPE when only PyCFunction_Check's subtype walk can tell. */
#define MON_OTHER_TYPE ((const PyMethodDef *)1)
static inline const PyMethodDef *mon_cfunc_exact(PyObject *const *args, Py_ssize_t nargs) {
  if (__builtin_expect(nargs < 4, 0)) return NULL;
  PyObject *callable = args[2];
  PyTypeObject *tp = Py_TYPE(callable);
  if (tp == &PyFunction_Type || tp == &PyMethod_Type || tp == &PyType_Type) return NULL;
  if (tp == &PyCFunction_Type || tp == &PyCMethod_Type) return ((PyCFunctionObject *)callable)->m_ml;
  if (tp == &PyMethodDescr_Type) return args[3] != g_missing ? ((PyMethodDescrObject *)callable)->d_method : NULL;
  return MON_OTHER_TYPE;
}

/* The PyMethodDef a CALL / C_RETURN event is about, or NULL when the call
 * is not one cProfile counts as a C function. */
static const PyMethodDef *mon_cfunc_def(PyObject *const *args, Py_ssize_t nargs) {
  const PyMethodDef *ml = mon_cfunc_exact(args, nargs);
  if (ml != MON_OTHER_TYPE) return ml;
  return PyCFunction_Check(args[2]) ? ((PyCFunctionObject *)args[2])->m_ml : NULL;
}

/* First sight of a method descriptor's C function: label it the way
 * cProfile does, from the builtin bound to the call's self. */
static __attribute__((noinline)) uint32_t mon_descr_label(statsprof *p, PyObject *descr, PyObject *self_arg) {
  statsprof__hook_hold(p); /* the bound method is a new object: the collector may run */
  statsprof__pending exc = statsprof__pending_take();
  PyObject *meth = Py_TYPE(descr)->tp_descr_get(descr, self_arg, (PyObject *)Py_TYPE(self_arg));
  uint32_t label = meth && PyCFunction_Check(meth) ? cfunc_label_of(p, (PyCFunctionObject *)meth) : 0;
  Py_XDECREF(meth);
  PyErr_Clear();
  statsprof__pending_restore(exc);
  statsprof__hook_let_go(p);
  return label;
}

static __attribute__((noinline)) PyObject *mon_c_enter_slow(statsprof *p, PyObject *const *args,
                                                            Py_ssize_t nargs) {
  statsprof__thread *t;
  const PyMethodDef *ml;
  if (!p->src.mon_on || !(ml = mon_counted(p, mon_cfunc_def(args, nargs), args, nargs)) ||
      !(t = statsprof__tls_thread(p)))
    Py_RETURN_NONE;
  PyObject *callable = args[2];
  struct statsprof__cfunc_hot *h = cfunc_hot_slot(p, ml);
  uint32_t label;
  if (h->ml == ml) label = h->label;
  else if (PyCFunction_Check(callable)) label = cfunc_label_of(p, (PyCFunctionObject *)callable);
  else if ((label = statsprof__table_cfunc_find(&p->table, ml)) == STATSPROF__NONE)
    label = mon_descr_label(p, callable, args[3]);
  enter(t, p, label, p->src.cost_c + mon_offset_cost(p, args, nargs));
  Py_RETURN_NONE;
}

static PyObject *mon_c_enter(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  statsprof *p = mon_profiler(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (!mon_fast(p)) return mon_c_enter_slow(p, args, nargs);
  const PyMethodDef *ml = mon_cfunc_exact(args, nargs);
  if (!ml) {
    mon_charge_uncounted(statsprof__tls.t, p, args, nargs);
    Py_RETURN_NONE;
  }
  if (__builtin_expect(ml != MON_OTHER_TYPE, 1)) {
    if (enter_cfunc_cached_tsc(statsprof__tls.t, p, ml, p->src.cost_c + mon_offset_cost(p, args, nargs)))
      Py_RETURN_NONE;
  }
  return mon_c_enter_slow(p, args, nargs);
}

static __attribute__((noinline)) PyObject *mon_c_leave_other(statsprof *p, PyObject *const *args,
                                                             Py_ssize_t nargs) {
  if (p->src.mon_on && mon_counted(p, mon_cfunc_def(args, nargs), args, nargs))
    return mon_leave_slow(p, p->src.cost_c + mon_offset_cost(p, args, nargs), 1 << 16);
  Py_RETURN_NONE;
}

static PyObject *mon_c_leave(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
  statsprof *p = mon_profiler(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (!mon_fast(p)) return mon_c_leave_other(p, args, nargs);
  const PyMethodDef *ml = mon_cfunc_exact(args, nargs);
  if (!ml) {
    mon_charge_uncounted(statsprof__tls.t, p, args, nargs);
    Py_RETURN_NONE;
  }
  if (__builtin_expect(ml == MON_OTHER_TYPE, 0)) return mon_c_leave_other(p, args, nargs);
  leave_fast_tsc(statsprof__tls.t, p, p->src.cost_c + mon_offset_cost(p, args, nargs), 1 << 16);
  Py_RETURN_NONE;
}

typedef PyObject *(*mon_fn)(PyObject *, PyObject *const *, Py_ssize_t);
static const vectorcallfunc mon_fns[] = {mon_py_enter, mon_py_leave, mon_c_enter, mon_c_leave};
/* Events by name: their bit values differ between versions (3.14 added
 * branch events), so they are read from sys.monitoring.events. */
static const struct {
  const char *event;
  int def;
} mon_callbacks[] = {
    {"PY_START", 0},  {"PY_RESUME", 0}, {"PY_THROW", 0}, {"PY_RETURN", 1}, {"PY_YIELD", 1},
    {"PY_UNWIND", 1}, {"CALL", 2},      {"C_RETURN", 3}, {"C_RAISE", 3},
};
enum { MON_NCALLBACKS = sizeof mon_callbacks / sizeof *mon_callbacks, MON_FIRST_C = 6 };
_Static_assert(MON_NCALLBACKS == STATSPROF__MON_CALLBACKS, "statsprof__source.mon_cbs holds one per event");

/* sys.monitoring.events.NAME, or -1. */
static long mon_event(PyObject *mon, const char *name) {
  PyObject *events = PyObject_GetAttrString(mon, "events");
  PyObject *v = events ? PyObject_GetAttrString(events, name) : NULL;
  long bit = v && PyLong_Check(v) ? PyLong_AsLong(v) : -1;
  Py_XDECREF(v);
  Py_XDECREF(events);
  if (bit < 0) PyErr_Clear();
  return bit;
}

static PyObject *monitoring_module(void) {
  PyObject *sys = PyImport_ImportModule("sys");
  PyObject *m = sys ? PyObject_GetAttrString(sys, "monitoring") : NULL;
  Py_XDECREF(sys);
  return m;
}

/* Calls sys.monitoring.NAME(args...); 0, or -1 with the exception cleared. */
static int mon_call(PyObject *mon, const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  PyObject *args = Py_VaBuildValue(fmt, ap);
  va_end(ap);
  PyObject *fn = args ? PyObject_GetAttrString(mon, name) : NULL;
  PyObject *r = fn ? PyObject_Call(fn, args, NULL) : NULL;
  Py_XDECREF(fn);
  Py_XDECREF(args);
  Py_XDECREF(r);
  if (!r) PyErr_Clear();
  return r ? 0 : -1;
}

/* Where CPython's cached ints 0..N lie (N = statsprof__small_int_max(),
 * one static array): an offset past N is a new int for every event. Should
 * they not lie evenly in one array, no offset counts as boxed. */
static void small_int_range(statsprof__source *src) {
  long max = statsprof__small_int_max();
  PyObject *zero = PyLong_FromLong(0), *one = PyLong_FromLong(1);
  uintptr_t lo = (uintptr_t)zero, stride = (uintptr_t)one - (uintptr_t)zero;
  Py_XDECREF(zero); /* cached: their addresses stay theirs */
  Py_XDECREF(one);
  int even = zero && one;
  for (long n = 2; even && n <= max; n++) {
    PyObject *a = PyLong_FromLong(n);
    even = (uintptr_t)a == lo + (uintptr_t)n * stride; /* where the array puts it */
    Py_XDECREF(a);
  }
  PyErr_Clear();
  src->mon_small0 = even ? lo : 0;
  src->mon_small_span = even ? (uintptr_t)(max + 1) * stride : UINTPTR_MAX;
}

/* Takes the first free of statsprof's tool ids unless p holds one: 0, or
 * -1 when both are in use. */
static int mon_take_tool(statsprof *p, PyObject *mon) {
  for (int id = MON_TOOL_FIRST; id <= MON_TOOL_LAST && p->src.mon_tool < 0; id++)
    if (mon_call(mon, "use_tool_id", "(is)", id, "statsprof") == 0) p->src.mon_tool = id;
  return p->src.mon_tool < 0 ? -1 : 0;
}

/* Takes a tool id, registers the callbacks and turns the events on. */
static int mon_start(statsprof *p) {
  PyObject *mon = monitoring_module();
  if (!mon) {
    PyErr_Clear();
    return statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: sys.monitoring is not available");
  }
  int rc = 0;
  if (p->src.mon_tool < 0) {
    if (mon_take_tool(p, mon)) {
      Py_DECREF(mon);
      return statsprof__error(p, STATSPROF_ESTATE,
                              "source=monitoring: sys.monitoring tool ids %d and %d are both in use (by "
                              "another statsprof or another tool); use source=setprofile",
                              MON_TOOL_FIRST, MON_TOOL_LAST);
    }
    small_int_range(&p->src);
    g_missing = PyObject_GetAttrString(mon, "MISSING");
    Py_XDECREF(g_missing); /* the module keeps it alive */
    for (int i = 0; !rc && i < MON_NCALLBACKS; i++) {
      PyObject *fn = mon_callback_new(p, mon_fns[mon_callbacks[i].def]);
      long bit = mon_event(mon, mon_callbacks[i].event);
      if (!fn) rc = statsprof__error(p, STATSPROF_ENOMEM, "source=monitoring: cannot allocate a callback");
      else if (bit < 0 || mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, bit, fn))
        rc = statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: cannot register a callback for %s",
                              mon_callbacks[i].event);
      p->src.mon_cbs[i] = fn; /* kept, to make inert at release */
    }
  }
  long events = 0;
  for (int i = 0; i < MON_NCALLBACKS; i++)
    if (i < MON_FIRST_C || p->src.config.builtins) events |= mon_event(mon, mon_callbacks[i].event);
  p->src.tls_key = statsprof__tls_key_next(); /* every thread's cached state is stale */
  p->src.mon_on = 1;
  statsprof__monitoring_fast_update(p);
  if (!rc && mon_call(mon, "set_events", "(il)", p->src.mon_tool, events))
    rc = statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: set_events failed");
  Py_DECREF(mon);
  return rc;
}

static void mon_unwatch_inits(statsprof *p);

/* Turns the events off (the tool id stays ours until release). */
static void mon_stop(statsprof *p) {
  p->src.mon_on = 0;
  statsprof__monitoring_fast_update(p);
  if (p->src.mon_tool < 0 || !statsprof__python_reachable(p)) return;
  PyObject *mon = monitoring_module();
  if (mon) mon_call(mon, "set_events", "(ii)", p->src.mon_tool, 0);
  else PyErr_Clear();
  Py_XDECREF(mon);
}

void statsprof__monitoring_release(statsprof *p) {
  mon_stop(p);
  if (p->src.mon_tool < 0) return;
  /* Pointing the callbacks at g_mon_inert needs no Python API, only
   * objects that still exist: sys.monitoring holds them until its
   * interpreter is gone, and may call them until then. */
  if (p->interp_epoch == statsprof__epoch())
    for (int i = 0; i < MON_NCALLBACKS; i++)
      if (p->src.mon_cbs[i]) ((mon_callback *)p->src.mon_cbs[i])->p = &g_mon_inert;
  if (statsprof__python_reachable(p)) {
    mon_unwatch_inits(p); /* before the tool id goes; needs no module: its callable was kept */
    PyObject *mon = monitoring_module();
    for (int i = 0; mon && i < MON_NCALLBACKS; i++) {
      long bit = mon_event(mon, mon_callbacks[i].event);
      if (bit >= 0) mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, bit, Py_None);
    }
    if (mon) mon_call(mon, "free_tool_id", "(i)", p->src.mon_tool);
    else PyErr_Clear();
    Py_XDECREF(mon);
    for (int i = 0; i < MON_NCALLBACKS; i++) Py_CLEAR(p->src.mon_cbs[i]);
  }
  /* Else they went with their interpreter. */
  memset(p->src.mon_cbs, 0, sizeof p->src.mon_cbs);
  if (statsprof__python_reachable(p)) {
    Py_CLEAR(p->src.ef_inits);
    Py_CLEAR(p->src.ef_set_local);
    Py_CLEAR(p->src.ef_probe);
  }
  p->src.ef_inits = p->src.ef_set_local = p->src.ef_probe = NULL; /* else they went with their interpreter */
  p->src.ef_walked = 0;
  p->src.ef_init_tool = 0;
  p->src.mon_tool = -1;
}

/* Turns the events off. A production-mode window's close keeps the tool
 * id for the next window; a stop gives it back: statsprof has two ids, and
 * stopped profilers kept for their counts (a Python user keeps each
 * Profile for its stats) made a third one's start fail. */
static void mon_off(statsprof *p) {
  if (p->running) mon_stop(p);
  else statsprof__monitoring_release(p);
}

int statsprof__monitoring_attach_all(statsprof *p) { return p->src.mon_on ? 0 : mon_start(p); }

/* ---- PY_UNWIND alone, for the frame-evaluation source ------------------
 * From 3.14 a generator's close() (explicit, or when a suspended generator
 * is dropped) runs the generator's frame, throwing GeneratorExit in, only
 * while some tool monitors PY_UNWIND; otherwise, when the generator is
 * paused outside any try block, it just clears the frame. cProfile
 * monitors PY_UNWIND, so under cProfile that close is a call (PY_THROW)
 * that a program profiled without it never makes. The frame-evaluation
 * source turns PY_UNWIND on, to a callback that does nothing, so that
 * CPython closes generators as it does under cProfile and the
 * evaluation is counted as cProfile counts it. It costs a callback per
 * frame an exception unwinds, nothing else. */
#if !STATSPROF__EF_INIT /* 3.13 counts __init__ functions with it (mon_ef_unwind) */
static PyObject *mon_nothing(PyObject *self, PyObject *const *args, Py_ssize_t n) {
  (void)self, (void)args, (void)n;
  Py_RETURN_NONE;
}
static PyMethodDef mon_nothing_def = {"_statsprof_unwind", (PyCFunction)(void (*)(void))(mon_fn)mon_nothing,
                                      METH_FASTCALL, NULL};
#endif

int statsprof__monitoring_tool_free(void) {
  PyObject *mon = monitoring_module();
  int free_ = 0;
  for (int id = MON_TOOL_FIRST; mon && id <= MON_TOOL_LAST && !free_; id++) {
    PyObject *r = PyObject_CallMethod(mon, "get_tool", "i", id);
    free_ = r == Py_None;
    Py_XDECREF(r);
  }
  PyErr_Clear();
  Py_XDECREF(mon);
  return free_;
}

int statsprof__monitoring_unwind_on(statsprof *p) {
  PyObject *mon = monitoring_module();
  if (!mon) {
    PyErr_Clear();
    return statsprof__error(p, STATSPROF_EPYTHON, "source=evalframe: sys.monitoring is not available");
  }
  int rc = 0;
  if (p->src.mon_tool < 0) {
    if (mon_take_tool(p, mon)) {
      Py_DECREF(mon);
      return statsprof__error(p, STATSPROF_ESTATE,
                              "source=evalframe: sys.monitoring tool ids %d and %d are both in use (by another "
                              "statsprof or another tool), and this source needs one for PY_UNWIND",
                              MON_TOOL_FIRST, MON_TOOL_LAST);
    }
#if STATSPROF__EF_INIT
    /* The callbacks of the events of __init__ functions (index: mon_callbacks). */
    static const struct {
      int index;
      vectorcallfunc fn;
    } cbs[] = {{0, mon_py_enter}, {3, mon_py_leave}, {5, mon_ef_unwind}};
    for (size_t i = 0; !rc && i < sizeof cbs / sizeof *cbs; i++) {
      const char *event = mon_callbacks[cbs[i].index].event;
      PyObject *fn = mon_callback_new(p, cbs[i].fn);
      if (!fn) rc = statsprof__error(p, STATSPROF_ENOMEM, "source=evalframe: cannot allocate a callback");
      else if (mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, mon_event(mon, event), fn))
        rc = statsprof__error(p, STATSPROF_EPYTHON, "source=evalframe: cannot register a callback for %s", event);
      p->src.mon_cbs[cbs[i].index] = fn; /* kept, to make inert at release */
    }
    /* for statsprof__monitoring_watch_init, which must not import (it runs
     * inside the frame-evaluation function and function watchers) */
    p->src.ef_init_events = mon_event(mon, "PY_START") | mon_event(mon, "PY_RETURN");
    if (!rc && !(p->src.ef_set_local = PyObject_GetAttrString(mon, "set_local_events")))
      rc = statsprof__error(p, STATSPROF_EPYTHON, "source=evalframe: no sys.monitoring.set_local_events");
#else
    PyObject *fn = PyCFunction_New(&mon_nothing_def, NULL);
    if (!fn || mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, mon_event(mon, "PY_UNWIND"), fn))
      rc = statsprof__error(p, STATSPROF_EPYTHON, "source=evalframe: cannot register a callback for PY_UNWIND");
    Py_XDECREF(fn);
#endif
  }
  if (!rc && mon_call(mon, "set_events", "(il)", p->src.mon_tool, mon_event(mon, "PY_UNWIND")))
    rc = statsprof__error(p, STATSPROF_EPYTHON, "source=evalframe: set_events failed");
  Py_DECREF(mon);
  return rc;
}

void statsprof__monitoring_unwind_off(statsprof *p) { mon_off(p); }

#if STATSPROF__EF_INIT
/* Keyed by id, since a code object's own hash reads all of it, and held
 * weakly, so that a long run over classes made and dropped does not keep
 * their code: an id found again is the same code object only while its
 * weak reference says so. Dead ones are dropped when the dictionary has
 * doubled. */
static void mon_prune_inits(statsprof *p) {
  PyObject *dead = PyList_New(0), *id, *wr, *o;
  Py_ssize_t pos = 0;
  while (dead && PyDict_Next(p->src.ef_inits, &pos, &id, &wr)) {
    int alive = PyWeakref_GetRef(wr, &o);
    if (alive > 0) Py_DECREF(o);
    else if (alive == 0 && PyList_Append(dead, id)) break;
  }
  for (Py_ssize_t i = 0; dead && i < PyList_GET_SIZE(dead); i++) PyDict_DelItem(p->src.ef_inits, PyList_GET_ITEM(dead, i));
  Py_XDECREF(dead);
  PyErr_Clear();
  p->src.ef_prune_at = 2 * PyDict_GET_SIZE(p->src.ef_inits) + 64;
}

int statsprof__monitoring_watch_init(statsprof *p, PyObject *code) {
  if (p->src.mon_tool < 0 || !p->src.ef_set_local) return -1;
  PyObject *id = PyLong_FromVoidPtr(code), *wr = NULL, *r = NULL;
  int rc = -1;
  if (!id || (!p->src.ef_inits && !(p->src.ef_inits = PyDict_New()))) goto done;
  PyObject *had = PyDict_GetItemWithError(p->src.ef_inits, id), *o = NULL; /* borrowed */
  if (had && PyWeakref_GetRef(had, &o) > 0) {
    Py_DECREF(o);
    if (o == code) {
      rc = 0;
      goto done;
    }
  }
  if (PyErr_Occurred()) goto done;
  r = PyObject_CallFunction(p->src.ef_set_local, "iOl", p->src.mon_tool, code, p->src.ef_init_events);
  if (r && (wr = PyWeakref_NewRef(code, NULL)) && !PyDict_SetItem(p->src.ef_inits, id, wr)) rc = 0;
  else if (r) /* out of memory: not kept, so not left on for release to miss */
    Py_XDECREF(PyObject_CallFunction(p->src.ef_set_local, "iOi", p->src.mon_tool, code, 0));
  if (!rc && PyDict_GET_SIZE(p->src.ef_inits) >= p->src.ef_prune_at) mon_prune_inits(p);
  p->src.ef_init_tool = (uint8_t)(1u << p->src.mon_tool);
done:
  Py_XDECREF(r);
  Py_XDECREF(wr);
  Py_XDECREF(id);
  PyErr_Clear();
  return rc;
}

/* Their local events off, at release (before the tool id goes). */
static void mon_unwatch_inits(statsprof *p) {
  Py_ssize_t pos = 0;
  PyObject *id, *wr, *code;
  while (p->src.ef_inits && p->src.ef_set_local && PyDict_Next(p->src.ef_inits, &pos, &id, &wr))
    if (PyWeakref_GetRef(wr, &code) > 0) {
      Py_XDECREF(PyObject_CallFunction(p->src.ef_set_local, "iOi", p->src.mon_tool, code, 0));
      Py_DECREF(code);
    }
  PyErr_Clear();
  Py_CLEAR(p->src.ef_inits);
  Py_CLEAR(p->src.ef_set_local);
  Py_CLEAR(p->src.ef_probe);
  p->src.ef_walked = 0;
}
#else
static void mon_unwatch_inits(statsprof *p) { (void)p; }
#endif

void statsprof__monitoring_detach_all(statsprof *p) {
  mon_off(p);
  /* Frames still open close now; the states wait in the pool for their
   * thread's next run (a late callback finds p->src.mon_on off). */
  while (p->src.threads) {
    statsprof__thread *t = p->src.threads;
    statsprof__flush_thread(t);
    statsprof__thread_pool(p, t);
  }
}
#else
int statsprof__monitoring_ready(void) { return 0; }
void statsprof__monitoring_fast_update(statsprof *p) { (void)p; }
void statsprof__monitoring_forget(void) {}
void statsprof__monitoring_release(statsprof *p) { (void)p; }
int statsprof__monitoring_tool_free(void) { return 0; }
int statsprof__monitoring_unwind_on(statsprof *p) { (void)p; return 0; }
void statsprof__monitoring_unwind_off(statsprof *p) { (void)p; }
#endif

