/* hook.c — what the event sources share: the per-thread state, a
 * function's label at its first sight, the hot path's slow paths, and
 * which source attaches and detaches.
 *
 * A thread's statsprof__thread holds its call stack. Under
 * source=setprofile it is the profile function's `obj` (c_profileobj) of
 * its thread state, so the hook finds its stack with no lookup and the
 * stack dies with the thread state; under source=monitoring and
 * source=evalframe the source finds it through thread-local storage
 * (statsprof__tls_thread, below).
 */
#include <string.h>

#include "hotpath.h"

/* The interpreter generation: bumped by Py_AtExit so that a profiler that
 * outlives Py_Finalize knows its thread states and co_extra index are gone. */
static uint64_t g_epoch = 1;
static int g_atexit_registered;
Py_ssize_t statsprof__extra_index = -1;
static PyTypeObject *g_thread_type;

static void grave_sweep(void);

static void on_python_exit(void) {
  g_epoch++;
  grave_sweep(); /* the grave's states went with the interpreter: their stacks go now */
  g_atexit_registered = 0;
  statsprof__extra_index = -1;
  /* Freed with the interpreter; the next one makes its own. */
  g_thread_type = NULL;
  statsprof__monitoring_forget();
  statsprof__evalframe_forget();
}

uint64_t statsprof__epoch(void) { return g_epoch; }

/* ---- per-thread state: a tiny heap type ------------------------------- */

static void thread_unlink(statsprof__thread *t) {
  statsprof *p = t->p;
  if (!p) return;
  /* What it did since the last record still earns its thread a record. */
  if (t->active && t->slot != STATSPROF__NONE) p->table.slots[t->slot].active = 1;
  /* Its cost still counts against production mode's budget (duty.c). */
  p->src.cost_gone += t->spent + t->slowdown;
  if (t->prev) t->prev->next = t->next;
  else p->src.threads = t->next;
  if (t->next) t->next->prev = t->prev;
  t->p = NULL;
  t->prev = t->next = NULL;
}

static void thread_dealloc(PyObject *self) {
  statsprof__thread *t = (statsprof__thread *)self;
  PyTypeObject *tp = Py_TYPE(self);
  /* The thread state dropped us (thread exit, sys.setprofile, finalize):
   * frames still open are counted as returning now, as cProfile does. */
  if (t->p) statsprof__flush_thread(t);
  thread_unlink(t);
  statsprof__free(t->stack);
  PyObject_Free(self);
  Py_DECREF(tp);
}

static PyType_Slot thread_slots[] = {
    {Py_tp_dealloc, (void *)thread_dealloc},
    {Py_tp_call, (void *)statsprof__setprofile_call},
    {Py_tp_doc, (void *)"statsprof per-thread profiler state"},
    {0, NULL},
};

static PyType_Spec thread_spec = {
    .name = "statsprof._ThreadState",
    .basicsize = sizeof(statsprof__thread),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = thread_slots,
};

/* Makes *type from spec once per interpreter (on_python_exit forgets it). */
int statsprof__type_ready(PyTypeObject **type, PyType_Spec *spec) {
  if (*type) return 0;
  *type = (PyTypeObject *)PyType_FromSpec(spec);
  if (*type) return 0;
  PyErr_Clear();
  return STATSPROF_EPYTHON;
}

static void grave_flush_at_exit(void);

int statsprof__hook_ready(void) {
  if (!g_atexit_registered) {
    if (Py_AtExit(on_python_exit) != 0) return STATSPROF_EPYTHON;
    g_atexit_registered = 1;
  }
  grave_flush_at_exit();
  if (statsprof__extra_index < 0) {
    statsprof__extra_index = PyUnstable_Eval_RequestCodeExtraIndex(NULL);
    if (statsprof__extra_index < 0) {
      PyErr_Clear();
      return STATSPROF_EPYTHON;
    }
  }
  int rc = statsprof__type_ready(&g_thread_type, &thread_spec);
  return rc ? rc : statsprof__monitoring_ready();
}

void statsprof__source_init(statsprof__source *s, const statsprof__source_config *c) {
  memset(s, 0, sizeof *s);
  s->config = *c;
  s->mon_tool = -1;
  s->fast_key = STATSPROF__NO_KEY;
  s->own_scale = 1 << 16;
  /* The TSC (wall clock, invariant TSC: clock.c) is read inline by the
   * fast paths; with another clock, or on another CPU, every event takes
   * the general path. */
  statsprof__clock_init();
#if defined(__x86_64__) || defined(__i386__)
  s->tsc = c->clock != STATSPROF__CLOCK_CPU && statsprof__clock_use_tsc;
#endif
}

/* ---- slow paths: first sight of a function ---------------------------- */

/* UTF-8 of a str; file names with undecodable bytes get backslash escapes. */
static const char *utf8_of(PyObject *s, PyObject **tmp) {
  *tmp = NULL;
  if (!s || !PyUnicode_Check(s)) return "?";
  const char *u = PyUnicode_AsUTF8(s);
  if (u) return u;
  PyErr_Clear();
  *tmp = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
  if (!*tmp) {
    PyErr_Clear();
    return "?";
  }
  return PyBytes_AS_STRING(*tmp);
}

static uint32_t intern_or_overflow(statsprof *p, const char *file, int line, const char *name) {
  uint32_t idx = statsprof__table_intern(&p->table, file, line, name);
  if (idx == STATSPROF__NONE) {
    p->src.oom = 1;
    idx = 0;
  }
  return idx;
}

__attribute__((noinline)) uint32_t statsprof__code_entry_slow(statsprof *p, PyCodeObject *co) {
  PyObject *t1, *t2;
  statsprof__hook_hold(p);
  statsprof__pending exc = statsprof__pending_take();
  const char *file = utf8_of(co->co_filename, &t1);
  const char *name = utf8_of(co->co_name, &t2);
  uint32_t idx = intern_or_overflow(p, file, co->co_firstlineno, name);
  Py_XDECREF(t1);
  Py_XDECREF(t2);
  if (statsprof__extra_index >= 0 &&
      PyUnstable_Code_SetExtra((PyObject *)co, statsprof__extra_index,
                               (void *)(((uintptr_t)p->gen << 32) | idx)) < 0)
    PyErr_Clear();
  statsprof__pending_restore(exc);
  statsprof__hook_let_go(p);
  return idx;
}

/* cProfile's label for a C function (normalizeUserObj in _lsprof.c). */
static PyObject *cfunc_label(PyCFunctionObject *fn) {
  PyObject *self = fn->m_self, *mod = fn->m_module;
  const char *name = fn->m_ml->ml_name;
  if (self == NULL) {
    PyObject *modname = NULL;
    if (mod && PyUnicode_Check(mod)) {
      modname = Py_NewRef(mod);
    } else if (mod && PyModule_Check(mod)) {
      modname = PyModule_GetNameObject(mod);
      if (!modname) PyErr_Clear();
    }
    if (modname) {
      PyObject *r = PyUnicode_CompareWithASCIIString(modname, "builtins") != 0
                        ? PyUnicode_FromFormat("<%U.%s>", modname, name)
                        : NULL;
      Py_DECREF(modname);
      if (r) return r;
    }
    return PyUnicode_FromFormat("<%s>", name);
  }
  PyObject *pyname = PyUnicode_FromString(name);
  if (pyname) {
    PyObject *mo = statsprof__type_lookup(Py_TYPE(self), pyname);
    Py_DECREF(pyname);
    if (mo) {
      PyObject *r = PyObject_Repr(mo);
      Py_DECREF(mo);
      if (r) return r;
    }
  }
  PyErr_Clear();
  if (mod && PyUnicode_Check(mod)) return PyUnicode_FromFormat("<built-in method %S.%s>", mod, name);
  return PyUnicode_FromFormat("<built-in method %s>", name);
}

__attribute__((noinline)) uint32_t statsprof__cfunc_entry_slow(statsprof *p, PyCFunctionObject *fn) {
  PyObject *tmp;
  statsprof__hook_hold(p); /* cfunc_label may run a Python __repr__ */
  statsprof__pending exc = statsprof__pending_take();
  PyObject *label = cfunc_label(fn);
  uint32_t idx;
  if (label) {
    idx = intern_or_overflow(p, "~", 0, utf8_of(label, &tmp));
    Py_XDECREF(tmp);
    Py_DECREF(label);
  } else {
    PyErr_Clear();
    idx = intern_or_overflow(p, "~", 0, fn->m_ml->ml_name);
  }
  if (statsprof__table_cfunc_add(&p->table, fn->m_ml, idx)) p->src.oom = 1;
  statsprof__pending_restore(exc);
  statsprof__hook_let_go(p);
  return idx;
}

/* ---- the hot path's slow paths ---------------------------------------- */

/* Makes room for one more frame; -1 on OOM. */
static __attribute__((noinline)) int thread_grow(statsprof__thread *t) {
  return STATSPROF__ARRAY_RESERVE(t->stack, t->cap, (size_t)t->cap + 1, 128);
}

/* This thread's entry for a label: one array load once it exists. */
static __attribute__((noinline)) uint32_t entry_slow(statsprof *p, statsprof__thread *t, uint32_t label) {
  /* A thread attached from another thread learns which OS thread it is
   * here, at its first event, on its own thread. Naming it reads its
   * Thread's __dict__, which may make one (and run the collector). */
  statsprof__hook_hold(p);
  int bound = t->slot != STATSPROF__NONE || statsprof__thread_bind(p, t) != STATSPROF__NONE;
  /* A thread's first events can come before threading knows it (its
   * bootstrap): look for its Thread again as it reaches new functions. */
  if (bound) statsprof__threads_seek_name(p, t->slot);
  statsprof__hook_let_go(p);
  if (!bound) return STATSPROF__NONE;
  uint32_t idx = statsprof__table_entry(&p->table, t->slot, label);
  if (idx == STATSPROF__NONE) p->src.oom = 1;
  /* The slot's map may have moved: refresh this thread's copy of it. */
  t->local = p->table.slots[t->slot].local;
  t->nlocal = p->table.slots[t->slot].nlocal;
  return idx;
}

static inline uint32_t entry_of(statsprof *p, statsprof__thread *t, uint32_t label) {
  if (__builtin_expect(label < t->nlocal && t->local[label] != STATSPROF__NONE, 1)) return t->local[label];
  return entry_slow(p, t, label);
}

static inline uint32_t edge_of(statsprof *p, uint32_t caller, uint32_t callee) {
  statsprof__entry *e = &p->table.entries[callee];
  uint32_t eid = e->last_edge;
  if (eid != STATSPROF__NONE && p->table.edges[eid].caller == caller) return eid;
  eid = statsprof__table_edge(&p->table, caller, callee);
  if (eid == STATSPROF__NONE) {
    p->src.oom = 1;
  } else {
    e->other_edge = e->last_edge;
    e->last_edge = eid;
  }
  return eid;
}

/* Any call: makes what is missing (entry, edge, stack room). */
__attribute__((noinline)) void statsprof__enter_slow(statsprof__thread *t, statsprof *p, uint32_t label,
                                                  uint64_t cost) {
  uint32_t idx = entry_of(p, t, label);
  if (__builtin_expect(idx == STATSPROF__NONE || (t->depth == t->cap && thread_grow(t)), 0)) {
    p->src.oom = 1;
    t->skipped++;
    return;
  }
  uint32_t eid = t->depth ? edge_of(p, t->stack[t->depth - 1].entry, idx) : STATSPROF__NONE;
  push(t, p, idx, eid, cost)->base += now(p);
}

__attribute__((noinline)) void statsprof__enter_code_slow(statsprof__thread *t, statsprof *p, PyCodeObject *co,
                                                       uint64_t cost) {
  statsprof__enter_slow(t, p, code_label_co(p, co), cost);
}

__attribute__((noinline)) void statsprof__leave_slow(statsprof__thread *t, statsprof *p, uint64_t cost_of_event,
                                                  uint64_t own_scale) {
  leave_at(t, p, now(p), cost_of_event, own_scale, 1);
}

void statsprof__flush_thread(statsprof__thread *t) {
  statsprof *p = t->p;
  if (!p) return;
  t->skipped = 0;
  /* One reading for all: the frames end together. CPU time is per thread,
   * and this may run on another thread, so in CPU mode each frame ends
   * when it began (its base plus the cost compensation took since). */
  uint64_t t1 = p->src.config.clock == STATSPROF__CLOCK_CPU ? 0 : statsprof__ticks();
  while (t->depth)
    leave_at(t, p, t1 ? t1 : t->stack[t->depth - 1].base + (t->spent & p->src.compensate_mask), 0, 1 << 16, 1);
}

/* ---- attaching to thread states --------------------------------------- */

/* Removing a thread's hook must not free its state at once. CPython reads
 * the profile function and its object, then may allocate the frame object
 * it passes to them; that allocation can run the garbage collector, a
 * finalizer's Python code, a signal handler, and so a stop() that removes
 * the hook, before the call it prepared reaches us with the object it read
 * (seen in 1 of ~50 runs of the signal stress scenario under ASan, as a
 * use after free). So a state whose hook we removed goes, inert (p NULL),
 * into the profiler's pool, and is only ever reused for the same thread:
 * such a late call then finds either an inert state or that thread's own
 * live one. States in the pool are freed when their thread has ended, or
 * with the profiler. */
static statsprof__thread *grave_take(unsigned long owner);

statsprof__thread *statsprof__thread_new(statsprof *p, unsigned long owner) {
  statsprof__thread *t = p->src.pool;
  while (t && t->owner != owner) t = t->next;
  if (t) {
    if (t->prev) t->prev->next = t->next;
    else p->src.pool = t->next;
    if (t->next) t->next->prev = t->prev;
  } else {
    t = grave_take(owner); /* a destroyed profiler's, for this thread */
  }
  if (t) {
    statsprof__callframe *stack = t->stack;
    uint32_t cap = t->cap;
    memset((char *)t + sizeof(PyObject), 0, sizeof *t - sizeof(PyObject));
    t->stack = stack;
    t->cap = cap;
  } else {
    t = PyObject_New(statsprof__thread, g_thread_type);
    if (!t) {
      PyErr_Clear();
      return NULL;
    }
    memset((char *)t + sizeof(PyObject), 0, sizeof *t - sizeof(PyObject));
  }
  t->p = p;
  t->owner = owner;
  t->slot = STATSPROF__NONE; /* bound at its first event (threads.c) */
  t->next = p->src.threads;
  if (p->src.threads) p->src.threads->prev = t;
  p->src.threads = t;
  return t;
}

/* ---- the calling thread's state, for the sources that own theirs ------- */

__thread struct statsprof__tls statsprof__tls __attribute__((tls_model("initial-exec")));

void statsprof__tls_forget(void) {
  /* 0 is no run's key (they start at 1), as at the thread's start; NO_KEY
   * would match a fast_key that is off. */
  statsprof__tls.key = 0;
  statsprof__tls.t = NULL;
}
static atomic_ullong g_tls_key;

uint64_t statsprof__tls_key_next(void) { return atomic_fetch_add(&g_tls_key, 1) + 1; }

statsprof__thread *statsprof__tls_thread_slow(statsprof *p) {
  unsigned long me = PyThread_get_thread_ident();
  /* This run may know the thread already (another profiler's run on it
   * took the cache meanwhile). A new thread reuses the ident of one that
   * ended, whose state stays here until the next record pools and frees it
   * (threads.c): a state bound to another OS thread is not this thread's. */
  statsprof__thread *t = p->src.threads;
  while (t && (t->owner != me ||
               (t->slot != STATSPROF__NONE && !statsprof__osthread_is_self(p->table.slots[t->slot].os))))
    t = t->next;
  if (!t) t = statsprof__thread_new(p, me);
  if (!t) {
    p->src.oom = 1;
    return NULL;
  }
  statsprof__tls.key = p->src.tls_key;
  statsprof__tls.t = t;
  return t;
}

void statsprof__thread_pool(statsprof *p, statsprof__thread *t) {
  uint32_t slot = t->slot;
  thread_unlink(t); /* inert from now on */
  t->depth = t->skipped = 0;
  t->slot = slot; /* to know when its thread has ended */
  t->next = p->src.pool;
  if (p->src.pool) p->src.pool->prev = t;
  p->src.pool = t;
}

void statsprof__thread_pool_trim(statsprof *p) {
  for (statsprof__thread *t = p->src.pool, *next; t; t = next) {
    next = t->next;
    int ended = t->slot != STATSPROF__NONE && t->slot < p->table.nslots &&
                p->table.slots[t->slot].state == STATSPROF__SLOT_ENDED;
    if (!ended) continue;
    if (t->prev) t->prev->next = t->next;
    else p->src.pool = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    Py_DECREF(t);
  }
}

/* ---- a destroyed profiler's states: the grave -------------------------
 *
 * A pooled state (above) can still get the late call CPython prepared
 * before its hook was removed, and destroy used to free the pool: a
 * finalizer that destroys a profiler (a statsprof.Profile collected while
 * enabled, say) during that frame allocation, on 3.11, left CPython calling
 * the freed state. So the states of threads that may still run go here,
 * inert, process-wide: the next profiler's state for that same thread is
 * one of them, and they are freed once their thread has ended. GIL held. */
static statsprof__thread *g_grave;
static uint64_t g_grave_epoch; /* the interpreter the states belong to */

static void grave_unlink(statsprof__thread *t) {
  if (t->prev) t->prev->next = t->next;
  else g_grave = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  statsprof__osthread_unref(t->grave_os);
  t->grave_os = NULL;
}

/* Whether t's thread can no longer bring a late call: it has ended, or has
 * no thread state (never had one with this hook's call pending). */
static int grave_done(const statsprof__thread *t, PyThreadState *me) {
  return (t->grave_os && statsprof__osthread_ended(t->grave_os)) || statsprof__tstates_has_thread(me, t->owner) == 0;
}

/* Frees the states of threads that have ended, and with `mine` the calling
 * thread's. After Py_Finalize their objects went with the interpreter:
 * only their stacks are freed. */
static void grave_sweep_also(int mine) {
  int gone = g_grave_epoch != statsprof__epoch();
  PyThreadState *me = gone ? NULL : PyThreadState_Get();
  for (statsprof__thread *t = g_grave, *next; t; t = next) {
    next = t->next;
    int self = mine && t->grave_os && statsprof__osthread_is_self(t->grave_os);
    if (!gone && !self && !grave_done(t, me)) continue;
    grave_unlink(t);
    if (!gone) {
      Py_DECREF(t);
      continue;
    }
    statsprof__free(t->stack);
    t->stack = NULL;
    t->cap = 0;
  }
  g_grave_epoch = statsprof__epoch();
}

static void grave_sweep(void) { grave_sweep_also(0); }

/* The grave's state for thread `owner` if that is the calling thread,
 * taken out of it; NULL if none. Only for the caller's own thread: on 3.11
 * a thread state's thread_id is that of the thread that made it, so a
 * state installed on another thread's state could be another thread's,
 * with its late call still to come. */
static statsprof__thread *grave_take(unsigned long owner) {
  /* Not a full sweep: on 3.11 the caller may hold CPython's thread-state
   * lock, which grave_done tries. */
  if (g_grave_epoch != statsprof__epoch()) grave_sweep();
  if (owner != PyThread_get_thread_ident()) return NULL;
  statsprof__thread *t = g_grave;
  while (t && (t->owner != owner || (t->grave_os && !statsprof__osthread_is_self(t->grave_os)))) t = t->next;
  if (t) grave_unlink(t);
  return t;
}

void statsprof__thread_pool_bury(statsprof *p) {
  grave_sweep();
  for (statsprof__thread *t = p->src.pool, *next; t; t = next) {
    next = t->next;
    statsprof__osthread *os =
        t->slot != STATSPROF__NONE && t->slot < p->table.nslots ? p->table.slots[t->slot].os : NULL;
    t->prev = t->next = NULL;
    t->grave_os = os;
    if (grave_done(t, PyThreadState_Get())) {
      t->grave_os = NULL;
      Py_DECREF(t);
      continue;
    }
    if (os) statsprof__osthread_ref(os);
    t->slot = STATSPROF__NONE;
    t->next = g_grave;
    if (g_grave) g_grave->prev = t;
    g_grave = t;
  }
  p->src.pool = NULL;
}

/* At Python's exit (atexit, the interpreter whole): the states of this
 * thread, the finalizing one, which is past any late call, and of ended
 * threads are freed; those of threads still running wait for Py_Finalize's
 * end, which drops them with the interpreter (on_python_exit). */
static PyObject *grave_flush(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  grave_sweep_also(1);
  Py_RETURN_NONE;
}

static PyMethodDef grave_flush_def = {"_statsprof_grave_flush", grave_flush, METH_NOARGS,
                                      "Frees destroyed statsprof profilers' per-thread states at exit."};

/* Once per interpreter, at a start (Python code may run then). */
static void grave_flush_at_exit(void) {
  static uint64_t registered_epoch;
  if (registered_epoch == g_epoch) return;
  PyObject *fn = PyCFunction_New(&grave_flush_def, NULL);
  if (fn && statsprof__call_atexit("register", fn) == 0) registered_epoch = g_epoch;
  else PyErr_Clear(); /* tried again at the next start */
  Py_XDECREF(fn);
}

/* The states' objects went with their interpreter's allocator and are left
 * as they are (128 bytes each; CPython's finalization leaks more);
 * their stacks are ours, and a profiler destroyed after Py_Finalize used to
 * leak them (a few KB per thread, per profiler, per re-initialization).
 * Nothing can reach a state any more: its thread state and the callbacks
 * went with the interpreter, and a thread-local cache is only read under
 * a live run's key. */
void statsprof__thread_states_abandon(statsprof *p) {
  statsprof__thread *lists[2] = {p->src.threads, p->src.pool};
  for (int i = 0; i < 2; i++) {
    for (statsprof__thread *t = lists[i], *next; t; t = next) {
      next = t->next;
      statsprof__free(t->stack);
      t->stack = NULL;
      t->cap = t->depth = 0;
      t->p = NULL;
      t->prev = t->next = NULL;
    }
  }
  p->src.threads = p->src.pool = NULL;
}

void statsprof__thread_orphan(statsprof__thread *t) {
  t->depth = 0;
  t->skipped = 0;
  thread_unlink(t);
}

int statsprof__attach_all(statsprof *p, int self) {
#if PY_VERSION_HEX >= 0x030C0000
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) return statsprof__monitoring_attach_all(p);
#endif
  if (p->src.config.source == STATSPROF__SOURCE_EVALFRAME) return statsprof__evalframe_attach_all(p);
  return statsprof__setprofile_attach_all(p, self);
}

void statsprof__detach_all(statsprof *p) {
#if PY_VERSION_HEX >= 0x030C0000
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) {
    statsprof__monitoring_detach_all(p);
    return;
  }
#endif
  if (p->src.config.source == STATSPROF__SOURCE_EVALFRAME) {
    statsprof__evalframe_detach_all(p);
    return;
  }
  statsprof__setprofile_detach_all(p);
}

int statsprof__attach_self(statsprof *p) {
  /* Monitoring and evalframe: every thread already gets the events. */
#if PY_VERSION_HEX >= 0x030C0000
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) return statsprof__monitoring_attach_all(p);
#endif
  if (p->src.config.source == STATSPROF__SOURCE_EVALFRAME) return statsprof__evalframe_attach_all(p);
  return statsprof__setprofile_attach_self(p);
}
