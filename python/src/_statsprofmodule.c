/* _statsprofmodule.c — statsprof._statsprof: the C library as a Python type.
 *
 * Profiler wraps one statsprof handle and turns snapshots into plain Python
 * data (dicts, lists, tuples). Control is what makes statsprof.Profile's
 * enable/disable/__enter__/__exit__ invisible to the profile: CPython reports
 * calls of builtin functions and method descriptors to the profile hook, so
 * a disable() written either way would be an entry in its own profile, as
 * cProfile's is. A Control is a descriptor whose bound form is a plain
 * callable object, and CPython reports no event for calling one of those.
 *
 * Uses only the public header (statsprof.h) and runs with the GIL held. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "statsprof.h"

/* ---- errors ------------------------------------------------------------ */

/* Maps a statsprof error to the Python exception a caller would expect. */
static PyObject *raise_rc(int rc, const char *msg) {
  /* Python code the library ran raised it (a signal handler's, in start):
   * the caller gets that exception itself, as cProfile's would. */
  if (rc == STATSPROF_EPYTHON && PyErr_Occurred()) return NULL;
  PyObject *type;
  switch (rc) {
    case STATSPROF_EINVAL:
    case STATSPROF_ECONFIG: type = PyExc_ValueError; break;
    case STATSPROF_ENOMEM: return PyErr_NoMemory();
    case STATSPROF_EIO:
    case STATSPROF_ESINK: type = PyExc_OSError; break;
    default: type = PyExc_RuntimeError; break;
  }
  PyErr_SetString(type, msg && *msg ? msg : statsprof_strerror(rc));
  return NULL;
}

/* ---- snapshots as Python data ----------------------------------------- */

/* Labels are UTF-8 from the hook; anything else is shown, not refused. */
static PyObject *str_of(const char *s) {
  if (!s) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "backslashreplace");
}

/* (file, line, name): the key of cProfile's stats dict. */
static PyObject *label_key(const char *file, int line, const char *name) {
  PyObject *f = str_of(file), *n = str_of(name);
  PyObject *key = f && n ? Py_BuildValue("(OiO)", f, line, n) : NULL;
  Py_XDECREF(f);
  Py_XDECREF(n);
  return key;
}

/* Builds a dict from (key, format, value) triples; steals nothing. */
#define SET(d, k, v)                                 \
  do {                                               \
    PyObject *v_ = (v);                              \
    if (!v_ || PyDict_SetItemString(d, k, v_) < 0) { \
      Py_XDECREF(v_);                                \
      goto fail;                                     \
    }                                                \
    Py_DECREF(v_);                                   \
  } while (0)

static PyObject *caller_dict(const statsprof_caller_profile *c) {
  PyObject *d = PyDict_New();
  if (!d) return NULL;
  SET(d, "function_name", str_of(c->function_name));
  SET(d, "file_name", str_of(c->file_name));
  SET(d, "line_number", PyLong_FromLong(c->line_number));
  SET(d, "ncalls", PyLong_FromUnsignedLongLong(c->ncalls));
  SET(d, "primitive_calls", PyLong_FromUnsignedLongLong(c->primitive_calls));
  SET(d, "tottime", PyFloat_FromDouble(c->tottime));
  SET(d, "cumtime", PyFloat_FromDouble(c->cumtime));
  return d;
fail:
  Py_DECREF(d);
  return NULL;
}

static PyObject *function_dict(const statsprof_function_profile *f) {
  PyObject *d = PyDict_New(), *callers = PyList_New((Py_ssize_t)f->ncallers);
  if (!d || !callers) goto fail;
  for (size_t i = 0; i < f->ncallers; i++) {
    PyObject *c = caller_dict(&f->callers[i]);
    if (!c) goto fail;
    PyList_SET_ITEM(callers, (Py_ssize_t)i, c);
  }
  SET(d, "function_name", str_of(f->function_name));
  SET(d, "file_name", str_of(f->file_name));
  SET(d, "line_number", PyLong_FromLong(f->line_number));
  SET(d, "ncalls", PyLong_FromUnsignedLongLong(f->ncalls));
  SET(d, "primitive_calls", PyLong_FromUnsignedLongLong(f->primitive_calls));
  SET(d, "tottime", PyFloat_FromDouble(f->tottime));
  SET(d, "percall_tottime", PyFloat_FromDouble(f->percall_tottime));
  SET(d, "cumtime", PyFloat_FromDouble(f->cumtime));
  SET(d, "percall_cumtime", PyFloat_FromDouble(f->percall_cumtime));
  SET(d, "callers", Py_NewRef(callers));
  Py_DECREF(callers);
  return d;
fail:
  Py_XDECREF(d);
  Py_XDECREF(callers);
  return NULL;
}

/* The record, field for field as the C struct (see statsprof.h). */
static PyObject *record_dict(const statsprof_stats_profile *s) {
  PyObject *d = PyDict_New(), *funcs = PyList_New((Py_ssize_t)s->nfunc_profiles);
  if (!d || !funcs) goto fail;
  for (size_t i = 0; i < s->nfunc_profiles; i++) {
    PyObject *f = function_dict(&s->func_profiles[i]);
    if (!f) goto fail;
    PyList_SET_ITEM(funcs, (Py_ssize_t)i, f);
  }
  SET(d, "kind", PyUnicode_FromString(statsprof_record_kind_name(s->kind)));
  SET(d, "seq", PyLong_FromUnsignedLongLong(s->seq));
  SET(d, "pid", PyLong_FromLongLong(s->pid));
  SET(d, "start_ns", PyLong_FromLongLong(s->start_ns));
  SET(d, "end_ns", PyLong_FromLongLong(s->end_ns));
  SET(d, "total_tt", PyFloat_FromDouble(s->total_tt));
  SET(d, "dropped", PyLong_FromUnsignedLongLong(s->dropped));
  SET(d, "overflow_functions", PyLong_FromUnsignedLongLong(s->overflow_functions));
  SET(d, "sink_errors", PyLong_FromUnsignedLongLong(s->sink_errors));
  SET(d, "spikes_suppressed", PyLong_FromUnsignedLongLong(s->spikes_suppressed));
  SET(d, "thread_id", PyLong_FromUnsignedLongLong(s->thread_id));
  SET(d, "thread_name", str_of(s->thread_name));
  SET(d, "func_profiles", Py_NewRef(funcs));
  Py_DECREF(funcs);
  return d;
fail:
  Py_XDECREF(d);
  Py_XDECREF(funcs);
  return NULL;
}

/* cProfile's stats: {(file, line, name): (cc, nc, tt, ct, {caller: (nc, cc,
 * tt, ct)})}. Note the orders: a function's primitive count comes first, a
 * caller edge's total count does. */
static PyObject *pstats_dict(const statsprof_stats_profile *s, int subcalls) {
  PyObject *stats = PyDict_New();
  if (!stats) return NULL;
  for (size_t i = 0; i < s->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &s->func_profiles[i];
    PyObject *callers = PyDict_New();
    PyObject *key = label_key(f->file_name, f->line_number, f->function_name);
    PyObject *val = callers && key ? Py_BuildValue("(KKddO)", (unsigned long long)f->primitive_calls,
                                                   (unsigned long long)f->ncalls, f->tottime,
                                                   f->cumtime, callers)
                                   : NULL;
    int ok = val && PyDict_SetItem(stats, key, val) == 0;
    for (size_t j = 0; ok && subcalls && j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      PyObject *ck = label_key(c->file_name, c->line_number, c->function_name);
      PyObject *cv = ck ? Py_BuildValue("(KKdd)", (unsigned long long)c->ncalls,
                                        (unsigned long long)c->primitive_calls, c->tottime, c->cumtime)
                        : NULL;
      ok = cv && PyDict_SetItem(callers, ck, cv) == 0;
      Py_XDECREF(ck);
      Py_XDECREF(cv);
    }
    Py_XDECREF(callers);
    Py_XDECREF(key);
    Py_XDECREF(val);
    if (!ok) {
      Py_DECREF(stats);
      return NULL;
    }
  }
  return stats;
}

/* ---- Profiler ---------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  statsprof *p;
  PyThread_type_lock lock; /* held by the thread whose library call runs */
  unsigned long owner;     /* that thread's ident; 0 when none */
  int depth;               /* the owner's calls in progress (nested: reentrant) */
  int closing;             /* close() came during one: the last to end destroys */
} ProfilerObject;

static PyTypeObject ProfilerType;

static statsprof *handle(ProfilerObject *self) {
  if (!self->p || self->closing) PyErr_SetString(PyExc_ValueError, "the profiler is closed (or was never initialized)");
  return self->closing ? NULL : self->p;
}

/* The library refuses a call on a profiler while another runs
 * (STATSPROF_ESTATE), because some release the GIL (a flush waiting for
 * the sinks, on_full=block, the Python code that start and stop run).
 * From another thread that is only a matter of waiting: each Profiler
 * has a lock, held for the whole library call, which a call from a second
 * thread waits for with the GIL released (two threads' `with p:`, a
 * monitor thread's snapshot() during disable()). A call from the owning
 * thread itself, a signal handler or a __del__ run inside the call, would
 * wait for ever: it goes on to the library, which refuses it as before.
 * Returns 0, or -1 with an exception (a signal handler raised while
 * waiting). */
static int lock_profiler(ProfilerObject *self) {
  unsigned long me = PyThread_get_thread_ident();
  if (self->depth && self->owner == me) {
    self->depth++;
    return 0;
  }
  PyLockStatus r = PyThread_acquire_lock_timed(self->lock, 0, 0);
  while (r != PY_LOCK_ACQUIRED) {
    Py_BEGIN_ALLOW_THREADS
    r = PyThread_acquire_lock_timed(self->lock, -1, 1);
    Py_END_ALLOW_THREADS
    /* Interrupted: run the signal handlers, as threading.Lock.acquire does. */
    if (r == PY_LOCK_INTR && PyErr_CheckSignals() < 0) return -1;
  }
  self->owner = me;
  self->depth = 1;
  return 0;
}

static void destroy_handle(ProfilerObject *self) {
  statsprof *p = self->p;
  self->p = NULL;
  self->closing = 0;
  statsprof_destroy(p);
}

static void unlock_profiler(ProfilerObject *self) {
  if (--self->depth) return;
  /* close() came from inside this thread's call (a signal handler): the
   * library refuses a destroy under a call in progress, so it was left to
   * the outermost call to do as it ends. */
  if (self->closing) destroy_handle(self);
  self->owner = 0;
  PyThread_release_lock(self->lock);
}

/* Begins a library call: the handle, with the lock held, or NULL with an
 * exception (closed, also while this call waited for the lock). */
static statsprof *begin(ProfilerObject *self) {
  if (!handle(self) || lock_profiler(self) < 0) return NULL;
  statsprof *p = handle(self);
  if (!p) unlock_profiler(self);
  return p;
}

static void end(ProfilerObject *self) { unlock_profiler(self); }

/* Accepts any arguments, so subclasses (statsprof.Profile) choose their own. */
static PyObject *profiler_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  ProfilerObject *self = (ProfilerObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  self->p = NULL;
  self->owner = 0;
  self->depth = self->closing = 0;
  self->lock = PyThread_allocate_lock();
  if (!self->lock) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  return (PyObject *)self;
}

static int profiler_init(ProfilerObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"config", NULL};
  const char *config = "sink=none";
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z:Profiler", kwlist, &config)) return -1;
  if (self->depth && self->owner == PyThread_get_thread_ident()) {
    PyErr_SetString(PyExc_RuntimeError, "Profiler.__init__ while a call on this profiler runs");
    return -1;
  }
  statsprof *p;
  int rc = statsprof_create(config, &p);
  if (rc) {
    raise_rc(rc, statsprof_errmsg(NULL));
    return -1;
  }
  if (lock_profiler(self) < 0) {
    statsprof_destroy(p);
    return -1;
  }
  destroy_handle(self); /* __init__ called again: the new config wins */
  self->p = p;
  unlock_profiler(self);
  return 0;
}

static void profiler_dealloc(ProfilerObject *self) {
  destroy_handle(self); /* no call runs: each holds a reference */
  if (self->lock) PyThread_free_lock(self->lock);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Most methods are one library call that returns 0 or an error. */
static PyObject *check(ProfilerObject *self, int rc) {
  if (rc < 0) return raise_rc(rc, statsprof_errmsg(self->p));
  Py_RETURN_NONE;
}

/* One library call that returns 0 or an error, between begin and end. */
static PyObject *call(ProfilerObject *self, int (*fn)(statsprof *)) {
  statsprof *p = begin(self);
  if (!p) return NULL;
  PyObject *r = check(self, fn(p));
  end(self);
  return r;
}

/* tick and frame_mark: 1 or 0 as a bool. */
static PyObject *call_bool(ProfilerObject *self, int (*fn)(statsprof *)) {
  statsprof *p = begin(self);
  if (!p) return NULL;
  int rc = fn(p);
  PyObject *r = rc < 0 ? raise_rc(rc, statsprof_errmsg(p)) : PyBool_FromLong(rc);
  end(self);
  return r;
}

static PyObject *profiler_start(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_start); }

static PyObject *profiler_stop(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_stop); }

static PyObject *profiler_close(ProfilerObject *self, PyObject *unused) {
  if (!self->p) Py_RETURN_NONE;
  if (self->depth && self->owner == PyThread_get_thread_ident()) {
    self->closing = 1; /* inside this thread's call: it destroys as it ends */
    Py_RETURN_NONE;
  }
  if (lock_profiler(self) < 0) return NULL; /* another thread's call ends first */
  destroy_handle(self);
  unlock_profiler(self);
  Py_RETURN_NONE;
}

static PyObject *profiler_reset(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_reset); }

static PyObject *profiler_emit_now(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_emit_now); }

static PyObject *profiler_attach_thread(ProfilerObject *self, PyObject *unused) {
  return call(self, statsprof_attach_thread);
}

static PyObject *profiler_flush(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_flush); }

static PyObject *profiler_tick(ProfilerObject *self, PyObject *unused) { return call_bool(self, statsprof_tick); }

static PyObject *profiler_frame_mark(ProfilerObject *self, PyObject *unused) {
  return call_bool(self, statsprof_frame_mark);
}

static PyObject *profiler_is_running(ProfilerObject *self, PyObject *unused) {
  return PyBool_FromLong(self->p && statsprof_is_running(self->p));
}

static PyObject *profiler_sink_errors(ProfilerObject *self, PyObject *unused) {
  return PyLong_FromUnsignedLongLong(self->p ? statsprof_sink_errors(self->p) : 0);
}

static PyObject *profiler_dropped(ProfilerObject *self, PyObject *unused) {
  return PyLong_FromUnsignedLongLong(self->p ? statsprof_dropped(self->p) : 0);
}

/* Takes a snapshot (all threads, or one) or returns NULL with an exception. */
static statsprof_stats_profile *take(ProfilerObject *self, int delta, PyObject *thread_id) {
  statsprof *p = begin(self);
  if (!p) return NULL;
  statsprof_snapshot_mode mode = delta ? STATSPROF_DELTA : STATSPROF_CUMULATIVE;
  statsprof_stats_profile *s = NULL;
  int rc;
  if (thread_id && thread_id != Py_None) {
    unsigned long long tid = PyLong_AsUnsignedLongLong(thread_id);
    if (tid == (unsigned long long)-1 && PyErr_Occurred()) {
      end(self);
      return NULL;
    }
    rc = statsprof_snapshot_thread(p, mode, (uint64_t)tid, &s);
  } else {
    rc = statsprof_snapshot(p, mode, &s);
  }
  if (rc) raise_rc(rc, statsprof_errmsg(p));
  end(self);
  return rc ? NULL : s;
}

static PyObject *profiler_snapshot(ProfilerObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"delta", "thread_id", NULL};
  int delta = 0;
  PyObject *tid = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pO:snapshot", kwlist, &delta, &tid)) return NULL;
  statsprof_stats_profile *s = take(self, delta, tid);
  if (!s) return NULL;
  PyObject *r = record_dict(s);
  statsprof_stats_profile_free(s);
  return r;
}

static PyObject *profiler_pstats_dict(ProfilerObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"subcalls", NULL};
  int subcalls = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:pstats_dict", kwlist, &subcalls)) return NULL;
  statsprof_stats_profile *s = take(self, 0, NULL);
  if (!s) return NULL;
  PyObject *r = pstats_dict(s, subcalls);
  statsprof_stats_profile_free(s);
  return r;
}

/* A profiler is a handle on this process's hooks, sinks and threads:
 * nothing a copy could have. Without this, pickle and copy got as far as
 * calling the class with the object as its config. */
static PyObject *profiler_reduce_ex(ProfilerObject *self, PyObject *protocol) {
  PyObject *type = (PyObject *)Py_TYPE(self);
  PyObject *mod = PyObject_GetAttrString(type, "__module__");
  PyObject *name = mod ? PyObject_GetAttrString(type, "__qualname__") : NULL;
  if (name) PyErr_Format(PyExc_TypeError, "cannot pickle '%U.%U' object", mod, name);
  Py_XDECREF(mod);
  Py_XDECREF(name);
  return NULL;
}

static PyMethodDef profiler_methods[] = {
    {"__reduce_ex__", (PyCFunction)profiler_reduce_ex, METH_O, NULL},
    {"start", (PyCFunction)profiler_start, METH_NOARGS,
     "start()\n--\n\nInstalls the profile hook on every thread (statsprof_start)."},
    {"stop", (PyCFunction)profiler_stop, METH_NOARGS,
     "stop()\n--\n\nRemoves the hook, counting frames still open as returning now, and "
     "emits a last delta record (statsprof_stop)."},
    {"close", (PyCFunction)profiler_close, METH_NOARGS,
     "close()\n--\n\nStops, flushes and closes the sinks and frees the profiler, after "
     "another thread's call on it ends (from inside a call on this thread, a signal handler: as "
     "that call ends); later calls raise ValueError."},
    {"reset", (PyCFunction)profiler_reset, METH_NOARGS, "reset()\n--\n\nForgets all counts."},
    {"tick", (PyCFunction)profiler_tick, METH_NOARGS,
     "tick()\n--\n\nEmits a delta record when the configured interval has passed; "
     "returns whether it did."},
    {"emit_now", (PyCFunction)profiler_emit_now, METH_NOARGS,
     "emit_now()\n--\n\nTakes a delta snapshot now and emits it to the sinks."},
    {"attach_thread", (PyCFunction)profiler_attach_thread, METH_NOARGS,
     "attach_thread()\n--\n\nInstalls the hook on the calling thread now."},
    {"flush", (PyCFunction)profiler_flush, METH_NOARGS,
     "flush()\n--\n\nWaits until every emitted record reached every sink."},
    {"frame_mark", (PyCFunction)profiler_frame_mark, METH_NOARGS,
     "frame_mark()\n--\n\nEnds a frame of the host loop; returns whether a spike record "
     "was emitted."},
    {"is_running", (PyCFunction)profiler_is_running, METH_NOARGS, "is_running()\n--\n\n"},
    {"sink_errors", (PyCFunction)profiler_sink_errors, METH_NOARGS,
     "sink_errors()\n--\n\nRecords the sinks failed to take."},
    {"dropped", (PyCFunction)profiler_dropped, METH_NOARGS,
     "dropped()\n--\n\nRecords lost to full sink queues."},
    {"snapshot", (PyCFunction)(void (*)(void))profiler_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(delta=False, thread_id=None)\n--\n\n"
     "The profile as a dict: kind (\"cumulative\", \"delta\", or \"thread\" for one "
     "thread's delta), seq, pid, start_ns, end_ns, total_tt, dropped, "
     "overflow_functions, sink_errors, spikes_suppressed (frames over budget not recorded: "
     "max_spikes_per_min), thread_id, thread_name and func_profiles, a list of "
     "dicts (function_name, file_name, line_number, ncalls, primitive_calls, tottime, "
     "percall_tottime, cumtime, percall_cumtime, callers: a list of dicts). delta=True "
     "covers only what happened since the previous delta and moves that mark."},
    {"pstats_dict", (PyCFunction)(void (*)(void))profiler_pstats_dict, METH_VARARGS | METH_KEYWORDS,
     "pstats_dict(subcalls=True)\n--\n\n"
     "Everything so far in cProfile's stats format: {(file, line, name): (cc, nc, tt, ct, "
     "{caller: (nc, cc, tt, ct)})}; with subcalls=False the caller dicts are empty."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProfilerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "statsprof._statsprof.Profiler",
    .tp_basicsize = sizeof(ProfilerObject),
    .tp_dealloc = (destructor)profiler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Profiler(config='sink=none')\n--\n\n"
              "A statsprof profiler. `config` is the library's config string "
              "(e.g. 'interval=1s;sink=jsonl:out.jsonl'); None means the library defaults. "
              "A bad config raises ValueError naming the offending text.",
    .tp_methods = profiler_methods,
    .tp_init = (initproc)profiler_init,
    .tp_new = profiler_new,
};

/* ---- Control: untraced enable/disable ---------------------------------- */

typedef enum { OP_START, OP_STOP, OP_ENTER, OP_EXIT } control_op;
static const char *const op_names[] = {"start", "stop", "enter", "exit"};

typedef struct {
  PyObject_HEAD
  control_op op;
  PyObject *self; /* bound: the Profiler; NULL in the class */
  vectorcallfunc vectorcall;
} ControlObject;

static PyTypeObject ControlType;

static PyObject *control_run(ControlObject *c, Py_ssize_t nargs, PyObject *kwnames) {
  /* __exit__ takes the exception triple; the others take nothing. */
  if (c->op != OP_EXIT && (nargs || (kwnames && PyTuple_GET_SIZE(kwnames)))) {
    PyErr_Format(PyExc_TypeError, "%s() takes no arguments", op_names[c->op]);
    return NULL;
  }
  ProfilerObject *self = (ProfilerObject *)c->self;
  PyObject *r = call(self, c->op == OP_START || c->op == OP_ENTER ? statsprof_start : statsprof_stop);
  if (!r || c->op == OP_START || c->op == OP_STOP) return r;
  Py_DECREF(r);
  if (c->op == OP_ENTER) return Py_NewRef((PyObject *)self);
  Py_RETURN_FALSE; /* __exit__ never swallows the exception */
}

static PyObject *control_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
  ControlObject *c = (ControlObject *)callable;
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (c->self) return control_run(c, nargs, kwnames);
  /* Unbound, called through the class: Profile.disable(p). */
  if (nargs < 1 || !PyObject_TypeCheck(args[0], &ProfilerType)) {
    PyErr_Format(PyExc_TypeError, "%s() needs a Profiler as its first argument", op_names[c->op]);
    return NULL;
  }
  ControlObject bound = *c;
  bound.self = args[0];
  return control_run(&bound, nargs - 1, kwnames);
}

static PyObject *control_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  const char *name;
  if (kwds && PyDict_GET_SIZE(kwds)) {
    PyErr_SetString(PyExc_TypeError, "Control() takes no keyword arguments");
    return NULL;
  }
  if (!PyArg_ParseTuple(args, "s:Control", &name)) return NULL;
  for (int op = 0; op < 4; op++) {
    if (strcmp(name, op_names[op])) continue;
    ControlObject *c = (ControlObject *)type->tp_alloc(type, 0);
    if (!c) return NULL;
    c->op = (control_op)op;
    c->self = NULL;
    c->vectorcall = control_vectorcall;
    return (PyObject *)c;
  }
  PyErr_Format(PyExc_ValueError, "unknown control '%s' (use start, stop, enter or exit)", name);
  return NULL;
}

static PyObject *control_get(PyObject *descr, PyObject *obj, PyObject *type) {
  ControlObject *c = (ControlObject *)descr;
  if (!obj || obj == Py_None || c->self) return Py_NewRef(descr);
  if (!PyObject_TypeCheck(obj, &ProfilerType)) {
    PyErr_Format(PyExc_TypeError, "%s() belongs on a Profiler subclass", op_names[c->op]);
    return NULL;
  }
  ControlObject *b = PyObject_GC_New(ControlObject, &ControlType);
  if (!b) return NULL;
  b->op = c->op;
  b->self = Py_NewRef(obj);
  b->vectorcall = control_vectorcall;
  PyObject_GC_Track(b);
  return (PyObject *)b;
}

static int control_traverse(ControlObject *c, visitproc visit, void *arg) {
  Py_VISIT(c->self);
  return 0;
}

static int control_clear(ControlObject *c) {
  Py_CLEAR(c->self);
  return 0;
}

static void control_dealloc(ControlObject *c) {
  PyObject_GC_UnTrack(c);
  Py_CLEAR(c->self);
  Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *control_repr(ControlObject *c) {
  if (c->self) return PyUnicode_FromFormat("<statsprof control %s of %R>", op_names[c->op], c->self);
  return PyUnicode_FromFormat("<statsprof control %s>", op_names[c->op]);
}

static PyTypeObject ControlType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "statsprof._statsprof.Control",
    .tp_basicsize = sizeof(ControlObject),
    .tp_dealloc = (destructor)control_dealloc,
    .tp_vectorcall_offset = offsetof(ControlObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)control_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Control(op)\n--\n\n"
              "A Profiler method that the profile does not see: op is 'start', 'stop', "
              "'enter' (start, return the profiler) or 'exit' (stop, return False). "
              "Put it in a Profiler subclass's body.",
    .tp_traverse = (traverseproc)control_traverse,
    .tp_clear = (inquiry)control_clear,
    .tp_descr_get = control_get,
    .tp_new = control_new,
};

/* ---- module ------------------------------------------------------------ */

static PyObject *mod_strerror(PyObject *m, PyObject *arg) {
  int rc; /* OverflowError outside an int, rather than another code's text */
  if (!PyArg_Parse(arg, "i:strerror", &rc)) return NULL;
  return PyUnicode_FromString(statsprof_strerror(rc));
}

static PyMethodDef module_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(code)\n--\n\nThe library's text for an error code."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m) {
  if (PyType_Ready(&ProfilerType) < 0 || PyType_Ready(&ControlType) < 0) return -1;
  if (PyModule_AddType(m, &ProfilerType) < 0 || PyModule_AddType(m, &ControlType) < 0) return -1;
  unsigned v = statsprof_version();
  PyObject *version = PyUnicode_FromFormat("%u.%u.%u", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  if (!version || PyModule_AddObject(m, "version", version) < 0) {
    Py_XDECREF(version);
    return -1;
  }
  return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "statsprof._statsprof",
    .m_doc = "The statsprof C library (statsprof.h) for Python; see the statsprof package.",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__statsprof(void) { return PyModuleDef_Init(&module_def); }
