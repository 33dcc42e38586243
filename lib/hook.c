/* hook.c — the profile function and the per-thread state it runs on.
 *
 * The hot path is statsprof__hook -> enter/leave. It runs under the GIL,
 * never raises, never calls back into Python and, once a function has been
 * seen, never allocates: the entry comes from the code object's co_extra slot
 * (or the C-function cache), the frame from the thread's preallocated stack.
 *
 * Each thread state carries its own statsprof__thread as the profile
 * function's `obj` (c_profileobj), so the hook finds its stack with no lookup
 * and the stack dies with the thread state. Counting mirrors CPython's
 * _lsprof.c: a call is counted when it returns; cumulative time is added
 * only at the outermost level of recursion of that function in that thread.
 */
#include <string.h>

#include "internal.h"

/* The interpreter generation: bumped by Py_AtExit so that a profiler that
 * outlives Py_Finalize knows its thread states and co_extra index are gone. */
static uint64_t g_epoch = 1;
static int g_atexit_registered;
static Py_ssize_t g_extra_index = -1;
static PyTypeObject *g_thread_type;
#if PY_VERSION_HEX >= 0x030C0000
static PyTypeObject *g_mon_owner_type; /* the sys.monitoring callbacks' self */
static int mon_owner_ready(void);
#else
static int mon_owner_ready(void) { return 0; }
#endif

static void on_python_exit(void) {
  g_epoch++;
  g_atexit_registered = 0;
  g_extra_index = -1;
  /* Freed with the interpreter; the next one makes its own. */
  g_thread_type = NULL;
#if PY_VERSION_HEX >= 0x030C0000
  g_mon_owner_type = NULL;
#endif
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
static int type_ready(PyTypeObject **type, PyType_Spec *spec) {
  if (*type) return 0;
  *type = (PyTypeObject *)PyType_FromSpec(spec);
  if (*type) return 0;
  PyErr_Clear();
  return STATSPROF_EPYTHON;
}

int statsprof__hook_ready(void) {
  if (!g_atexit_registered) {
    if (Py_AtExit(on_python_exit) != 0) return STATSPROF_EPYTHON;
    g_atexit_registered = 1;
  }
  if (g_extra_index < 0) {
    g_extra_index = PyUnstable_Eval_RequestCodeExtraIndex(NULL);
    if (g_extra_index < 0) {
      PyErr_Clear();
      return STATSPROF_EPYTHON;
    }
  }
  int rc = type_ready(&g_thread_type, &thread_spec);
  return rc ? rc : mon_owner_ready();
}

void statsprof__source_init(statsprof__source *s, const statsprof__source_config *c) {
  memset(s, 0, sizeof *s);
  s->config = *c;
  s->mon_tool = -1;
  s->own_scale = 1 << 16;
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

static __attribute__((noinline)) uint32_t code_entry_slow(statsprof *p, PyCodeObject *co) {
  PyObject *t1, *t2;
  statsprof__pending exc = statsprof__pending_take();
  const char *file = utf8_of(co->co_filename, &t1);
  const char *name = utf8_of(co->co_name, &t2);
  uint32_t idx = intern_or_overflow(p, file, co->co_firstlineno, name);
  Py_XDECREF(t1);
  Py_XDECREF(t2);
  if (g_extra_index >= 0 &&
      PyUnstable_Code_SetExtra((PyObject *)co, g_extra_index,
                               (void *)(((uintptr_t)p->gen << 32) | idx)) < 0)
    PyErr_Clear();
  statsprof__pending_restore(exc);
  return idx;
}

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

/* A code object's co_extra value at our index, or NULL. co_extra is a field
 * of the public PyCodeObject (Include/cpython/code.h) on 3.11 to 3.15, and
 * what it points to, _PyCodeObjectExtra {Py_ssize_t ce_size; void
 * *ce_extras[1];} (Objects/codeobject.c), has not changed since PEP 523:
 * PyUnstable_Code_GetExtra of Debian's 3.11.2, pyenv's 3.12.1 and 3.13.0
 * and sid's 3.14.10 and 3.15.2 compiles to these same three loads (checked
 * by disassembly). Reading it here saves a call and its type check per
 * event. Free-threaded builds (where the slot may be written concurrently)
 * and versions not checked yet use the public function. */
#if PY_VERSION_HEX < 0x03100000 && !defined(Py_GIL_DISABLED)
struct statsprof__code_extra {
  Py_ssize_t ce_size;
  void *ce_extras[1];
};

static inline void *code_extra(PyCodeObject *co) {
  const struct statsprof__code_extra *e = co->co_extra;
  /* g_extra_index is -1 until reserved: as a size_t it is never in range. */
  return e && (size_t)g_extra_index < (size_t)e->ce_size ? e->ce_extras[g_extra_index] : NULL;
}
#else
static inline void *code_extra(PyCodeObject *co) {
  void *extra = NULL;
  if (g_extra_index < 0 || PyUnstable_Code_GetExtra((PyObject *)co, g_extra_index, &extra) != 0) return NULL;
  return extra;
}
#endif

static inline uint32_t code_label_co(statsprof *p, PyCodeObject *co) {
  uintptr_t extra = (uintptr_t)code_extra(co);
  return extra >> 32 == p->gen ? (uint32_t)extra : code_entry_slow(p, co);
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

static __attribute__((noinline)) uint32_t cfunc_entry_slow(statsprof *p, PyCFunctionObject *fn) {
  PyObject *tmp;
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
  return idx;
}

static inline uint32_t cfunc_label_of(statsprof *p, PyCFunctionObject *fn) {
  /* Keyed by the method definition alone, labelled at first sight, as
   * cProfile does: a C method called on a subclass that overrides it in
   * Python keeps its first label instead of splitting in two. A small
   * direct-mapped cache (PyMethodDefs are 32 bytes apart) answers the
   * methods a loop calls again and again without hashing. */
  const PyMethodDef *ml = fn->m_ml;
  struct statsprof__cfunc_hot *h = &p->src.cfunc_hot[((uintptr_t)ml >> 5) % STATSPROF__CFUNC_HOT];
  if (__builtin_expect(h->ml == ml, 1)) return h->label;
  uint32_t idx = statsprof__table_cfunc_find(&p->table, ml);
  if (idx == STATSPROF__NONE) idx = cfunc_entry_slow(p, fn);
  h->ml = ml;
  h->label = idx;
  return idx;
}

/* ---- the hot path ------------------------------------------------------ */

static inline uint64_t now(const statsprof *p) {
  return p->src.config.clock == STATSPROF__CLOCK_CPU ? statsprof__thread_cpu_ns() : statsprof__ticks();
}

/* The hook's clock is the TSC (wall clock, invariant TSC: clock.c), which
 * the fast paths below read inline. With another clock, or on another CPU,
 * every event takes the general path. */
static inline int tsc_clock(const statsprof *p) {
#if defined(__x86_64__) || defined(__i386__)
  return p->src.config.clock != STATSPROF__CLOCK_CPU && statsprof__clock_use_tsc;
#else
  (void)p;
  return 0;
#endif
}

/* Makes room for one more frame; -1 on OOM. */
static __attribute__((noinline)) int thread_grow(statsprof__thread *t) {
  return STATSPROF__ARRAY_RESERVE(t->stack, t->cap, (size_t)t->cap + 1, 128);
}

/* This thread's entry for a label: one array load once it exists. */
static __attribute__((noinline)) uint32_t entry_slow(statsprof *p, statsprof__thread *t, uint32_t label) {
  /* A thread attached from another thread learns which OS thread it is
   * here, at its first event, on its own thread. */
  if (t->slot == STATSPROF__NONE && statsprof__thread_bind(p, t) == STATSPROF__NONE) return STATSPROF__NONE;
  /* A thread's first events can come before threading knows it (its
   * bootstrap): look for its Thread again as it reaches new functions. */
  statsprof__threads_seek_name(p, t->slot);
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
  if (eid == STATSPROF__NONE) p->src.oom = 1;
  else e->last_edge = eid;
  return eid;
}

/* Pushes entry idx, called through edge eid, on a stack with room; the
 * caller sets its t0, last. */
static inline __attribute__((always_inline)) statsprof__callframe *push(statsprof__thread *t, statsprof *p,
                                                                        uint32_t idx, uint32_t eid, uint64_t cost) {
  statsprof__callframe *f = &t->stack[t->depth++];
  f->entry = idx;
  f->edge = eid;
  f->subt = 0;
  f->removed = 0;
  f->spent0 = t->spent += cost;
  t->active = 1;
  p->table.entries[idx].level++;
  if (eid != STATSPROF__NONE) p->table.edges[eid].level++;
  return f;
}

/* A call in the common case: this thread has an entry for the label, the
 * caller's edge is the one the function's previous call came through, the
 * stack has room and the clock is the TSC. It calls nothing, so a callback
 * built on it saves few registers and only past its checks; 0 (nothing
 * changed) when it does not apply. */
static inline __attribute__((always_inline)) int enter_fast(statsprof__thread *t, statsprof *p, uint32_t label,
                                                            uint64_t cost) {
  uint32_t idx, eid = STATSPROF__NONE, depth = t->depth;
  if (!tsc_clock(p) || label >= t->nlocal || (idx = t->local[label]) == STATSPROF__NONE || depth == t->cap)
    return 0;
  if (depth) {
    eid = p->table.entries[idx].last_edge;
    if (eid == STATSPROF__NONE || p->table.edges[eid].caller != t->stack[depth - 1].entry) return 0;
  }
  push(t, p, idx, eid, cost)->t0 = statsprof__rdtsc();
  return 1;
}

/* Any call: makes what is missing (entry, edge, stack room). */
static __attribute__((noinline)) void enter_slow(statsprof__thread *t, statsprof *p, uint32_t label,
                                                 uint64_t cost) {
  uint32_t idx = entry_of(p, t, label);
  if (__builtin_expect(idx == STATSPROF__NONE || (t->depth == t->cap && thread_grow(t)), 0)) {
    p->src.oom = 1;
    t->skipped++;
    return;
  }
  uint32_t eid = t->depth ? edge_of(p, t->stack[t->depth - 1].entry, idx) : STATSPROF__NONE;
  push(t, p, idx, eid, cost)->t0 = now(p);
}

static inline void enter(statsprof__thread *t, statsprof *p, uint32_t label, uint64_t cost) {
  if (!enter_fast(t, p, label, cost)) enter_slow(t, p, label, cost);
}

static inline void count(statsprof__counters *c, uint32_t *level, uint64_t tt, uint64_t it) {
  if (--*level == 0) c->tt += tt;
  else c->reccallcount++;
  c->it += it;
  c->callcount++;
}

/* Frame tracking (frame.c): remember what this frame touched, once. */
static inline void touch(statsprof *p, uint32_t entry, uint32_t edge) {
  statsprof__frames *f = &p->frames;
  if (entry >= f->nentries || f->entries[entry].stamp != f->no) statsprof__frame_touch_entry(f, &p->table, entry);
  if (edge != STATSPROF__NONE && (edge >= f->nedges || f->edges[edge].stamp != f->no))
    statsprof__frame_touch_edge(f, &p->table, edge);
}

/* A return at time t1; `track` 0 when the caller knows frame tracking is off. */
static inline __attribute__((always_inline)) void leave_at(statsprof__thread *t, statsprof *p, uint64_t t1,
                                                           uint64_t cost_of_event, uint64_t own_scale, int track) {
  if (t->skipped) {
    t->skipped--;
    return;
  }
  if (t->depth == 0) return; /* a frame entered before we attached */
  statsprof__callframe *f = &t->stack[--t->depth];
  /* Compensation: the profile events inside this frame (its descendants'
   * calls and returns, and its own return) cost the profiler this much
   * time, which the frame would not have spent unprofiled. */
  /* What callees' bytecode scaling removed is not this frame's time either. */
  uint64_t cost = (((t->spent += cost_of_event) - f->spent0) & p->src.compensate_mask) + f->removed;
  uint64_t raw = t1 > f->t0 + cost ? t1 - f->t0 - cost : 0;
  uint64_t own = raw > f->subt ? raw - f->subt : 0;
  /* A Python frame's own bytecode also runs slower while any profile
   * function is installed (CPython turns off its specializing
   * interpreter): scale its own time back by the calibrated factor. */
  uint64_t it = (own * own_scale) >> 16;
  uint64_t tt = it + f->subt;
  t->slowdown += own - it;
  if (t->depth) {
    f[-1].subt += tt;
    f[-1].removed += f->removed + own - it;
  }
  if (track && p->frames.tracking) touch(p, f->entry, f->edge);
  statsprof__entry *e = &p->table.entries[f->entry];
  count(&e->c, &e->level, tt, it);
  if (f->edge != STATSPROF__NONE) {
    statsprof__edge *g = &p->table.edges[f->edge];
    count(&g->c, &g->level, tt, it);
  }
}

/* A return in the common case (a frame to close, no frame tracking, the
 * TSC): calls nothing, like enter_fast; 0 when it does not apply. */
static inline __attribute__((always_inline)) int leave_fast(statsprof__thread *t, statsprof *p,
                                                            uint64_t cost_of_event, uint64_t own_scale) {
  if (!tsc_clock(p) || t->skipped || !t->depth || p->frames.tracking) return 0;
  leave_at(t, p, statsprof__rdtsc(), cost_of_event, own_scale, 0);
  return 1;
}

static __attribute__((noinline)) void leave_slow(statsprof__thread *t, statsprof *p, uint64_t cost_of_event,
                                                 uint64_t own_scale) {
  leave_at(t, p, now(p), cost_of_event, own_scale, 1);
}

static inline void leave(statsprof__thread *t, statsprof *p, uint64_t cost_of_event, uint64_t own_scale) {
  if (!leave_fast(t, p, cost_of_event, own_scale)) leave_slow(t, p, cost_of_event, own_scale);
}

/* C functions take their own (not inlined) paths: fewer live registers in
 * the dispatcher means a cheaper entry for the common Python events. */
static __attribute__((noinline)) void on_c_call(statsprof__thread *t, statsprof *p, PyObject *arg) {
  if (p->src.config.builtins && PyCFunction_Check(arg))
    enter(t, p, cfunc_label_of(p, (PyCFunctionObject *)arg), p->src.cost_c);
}

static __attribute__((noinline)) void on_c_return(statsprof__thread *t, statsprof *p, PyObject *arg) {
  if (p->src.config.builtins && PyCFunction_Check(arg)) leave(t, p, p->src.cost_c, 1 << 16);
}

static __attribute__((noinline)) void on_call_slow(statsprof__thread *t, statsprof *p, PyCodeObject *co) {
  enter_slow(t, p, code_label_co(p, co), p->src.cost_py);
}

int statsprof__hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
  statsprof__thread *t = (statsprof__thread *)obj;
  statsprof *p = t->p;
  if (__builtin_expect(p == NULL, 0)) return 0; /* profiler stopped or gone */
  if (what == PyTrace_CALL) {
    /* The slow path out of line, and nothing live after it. */
    PyCodeObject *co = frame_code(frame);
    uintptr_t extra = (uintptr_t)code_extra(co);
    if (extra >> 32 != p->gen || !enter_fast(t, p, (uint32_t)extra, p->src.cost_py)) on_call_slow(t, p, co);
  } else if (what == PyTrace_RETURN) leave(t, p, p->src.cost_py, p->src.own_scale);
  else if (what == PyTrace_C_CALL) on_c_call(t, p, arg);
  else if (what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) on_c_return(t, p, arg);
  return 0;
}

void statsprof__flush_thread(statsprof__thread *t) {
  statsprof *p = t->p;
  if (!p) return;
  t->skipped = 0;
  /* One reading for all: the frames end together. CPU time is per thread,
   * and this may run on another thread, so CPU mode reuses each t0. */
  uint64_t t1 = p->src.config.clock == STATSPROF__CLOCK_CPU ? 0 : statsprof__ticks();
  while (t->depth) leave_at(t, p, t1 ? t1 : t->stack[t->depth - 1].t0, 0, 1 << 16, 1);
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
statsprof__thread *statsprof__thread_new(statsprof *p, unsigned long owner) {
  statsprof__thread *t = p->src.pool;
  while (t && t->owner != owner) t = t->next;
  if (t) {
    if (t->prev) t->prev->next = t->next;
    else p->src.pool = t->next;
    if (t->next) t->next->prev = t->prev;
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

void statsprof__thread_pool(statsprof *p, statsprof__thread *t) {
  uint32_t slot = t->slot;
  thread_unlink(t); /* inert from now on */
  t->depth = t->skipped = 0;
  t->slot = slot; /* to know when its thread has ended */
  t->next = p->src.pool;
  if (p->src.pool) p->src.pool->prev = t;
  p->src.pool = t;
}

void statsprof__thread_pool_trim(statsprof *p, int all) {
  for (statsprof__thread *t = p->src.pool, *next; t; t = next) {
    next = t->next;
    int ended = t->slot != STATSPROF__NONE && t->slot < p->table.nslots &&
                p->table.slots[t->slot].state == STATSPROF__SLOT_ENDED;
    if (!all && !ended) continue;
    if (t->prev) t->prev->next = t->next;
    else p->src.pool = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    Py_DECREF(t);
  }
}

void statsprof__thread_orphan(statsprof__thread *t) {
  t->depth = 0;
  t->skipped = 0;
  thread_unlink(t);
}

static int is_ours(statsprof *p, PyThreadState *ts) {
  return ts->c_profilefunc == statsprof__hook && ts->c_profileobj &&
         ((statsprof__thread *)ts->c_profileobj)->p == p;
}

static int setprofile_attach_self(statsprof *p) {
  PyThreadState *ts = PyThreadState_Get();
  if (is_ours(p, ts)) return 0;
  int rc = statsprof__hook_ready();
  if (rc) return statsprof__error(p, rc, "cannot prepare the profile hook");
  statsprof__thread *t = statsprof__thread_new(p, ts->thread_id);
  if (!t) return statsprof__error(p, STATSPROF_ENOMEM, "cannot allocate thread state");
  /* Our own thread state: no other thread can free it meanwhile. The
   * heap type's instances keep it alive (PyObject_New took a ref). */
  if (statsprof__set_profile(ts, statsprof__hook, (PyObject *)t) < 0) {
    PyErr_Clear();
    t->p = NULL;
    thread_unlink(t);
    Py_DECREF(t);
    return statsprof__error(p, STATSPROF_EPYTHON,
                            "PyEval_SetProfile refused (an audit hook raised)");
  }
  Py_DECREF(t); /* the thread state owns it now */
  return 0;
}

static int setprofile_attach_all(statsprof *p, int self) {
  int rc = self > 0 ? setprofile_attach_self(p) : 0;
  if (rc) return rc;
  if (statsprof__hook_ready()) return statsprof__error(p, STATSPROF_EPYTHON, "cannot prepare the profile hook");
  /* Another thread's own profiler (cProfile, a debugger) is left alone. */
  statsprof__tstates_install(p, PyThreadState_Get(), self != 0);
  return 0;
}

static void setprofile_detach_all(statsprof *p) {
  for (statsprof__thread *t = p->src.threads; t; t = t->next) statsprof__flush_thread(t);
  if (p->interp_epoch == g_epoch && Py_IsInitialized()) statsprof__tstates_remove(p, PyThreadState_Get());
  /* Whatever still holds one of ours (a refused removal) finds it inert. */
  while (p->src.threads) thread_unlink(p->src.threads);
}

/* ---- the sys.monitoring source (3.12+) ---------------------------------
 *
 * PEP 669's events, as _lsprof.c of 3.12+ uses them: PY_START, PY_RESUME
 * and PY_THROW enter a Python function, PY_RETURN, PY_YIELD and PY_UNWIND
 * leave it; CALL enters a C function (a builtin, or a method descriptor
 * called with its self, which cProfile reports as the bound builtin) and
 * C_RETURN / C_RAISE leave it. The events cover every thread of the
 * interpreter, including threads a host creates later in C: nothing is
 * installed per thread and no other thread's state is touched. The
 * callbacks find the calling thread's state through thread-local storage,
 * made at the thread's first event. The tool id is the first free of 3 and
 * 4 (sys.monitoring's ids 0, 1, 2 and 5 are the debugger's, coverage's,
 * the profiler's - cProfile's - and the optimizer's), so statsprof runs
 * beside cProfile, coverage and a debugger. */
#if PY_VERSION_HEX >= 0x030C0000
enum { MON_TOOL_FIRST = 3, MON_TOOL_LAST = 4 };
static PyObject *g_missing; /* sys.monitoring.MISSING (borrowed: module-owned) */
static atomic_ullong g_mon_key;

/* The calling thread's state for the profiler whose current run is `key`. */
static __thread struct {
  uint64_t key;
  statsprof__thread *t;
} tls_mon __attribute__((tls_model("initial-exec")));

static __attribute__((noinline)) statsprof__thread *mon_thread_slow(statsprof *p) {
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
  tls_mon.key = p->src.mon_key;
  tls_mon.t = t;
  return t;
}

static inline statsprof__thread *mon_thread(statsprof *p) {
  if (__builtin_expect(tls_mon.key == p->src.mon_key, 1)) return tls_mon.t;
  return mon_thread_slow(p);
}

/* The callbacks' self: a tiny object of our own that holds the profiler,
 * read with one load where a capsule's PyCapsule_GetPointer is a call that
 * checks the capsule's name (~27 instructions per event). One per tool id
 * registration; the callbacks keep it alive. Its type is made once per
 * interpreter (statsprof__hook_ready) and forgotten at Py_Finalize. */
typedef struct {
  PyObject_HEAD
  statsprof *p;
} mon_owner;

static PyType_Slot mon_owner_slots[] = {
    {Py_tp_doc, (void *)"statsprof's sys.monitoring callbacks' owner"},
    {0, NULL},
};

static PyType_Spec mon_owner_spec = {
    .name = "statsprof._MonitoringOwner",
    .basicsize = sizeof(mon_owner),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = mon_owner_slots,
};

static int mon_owner_ready(void) { return type_ready(&g_mon_owner_type, &mon_owner_spec); }

static PyObject *mon_owner_new(statsprof *p) {
  mon_owner *o = g_mon_owner_type ? PyObject_New(mon_owner, g_mon_owner_type) : NULL;
  if (!o) {
    PyErr_Clear();
    return NULL;
  }
  o->p = p;
  return (PyObject *)o;
}

static inline statsprof *mon_profiler(PyObject *self) { return ((mon_owner *)self)->p; }

/* The callbacks: each tries its event's fast path (enter_fast,
 * leave_fast: this run knows the thread, every lookup hits) inline and
 * otherwise hands the whole event to an out-of-line function, so that the
 * common case saves no registers and calls nothing. */

static __attribute__((noinline)) PyObject *mon_py_enter_slow(statsprof *p, PyCodeObject *co) {
  statsprof__thread *t = mon_thread(p);
  if (t) enter(t, p, code_label_co(p, co), p->src.cost_py);
  Py_RETURN_NONE;
}

static PyObject *mon_py_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  statsprof *p = mon_profiler(self);
  if (__builtin_expect(!p->src.mon_on || nargs < 1, 0)) Py_RETURN_NONE;
  PyCodeObject *co = (PyCodeObject *)args[0];
  if (__builtin_expect(tls_mon.key == p->src.mon_key, 1)) {
    uintptr_t extra = (uintptr_t)code_extra(co);
    if (extra >> 32 == p->gen && enter_fast(tls_mon.t, p, (uint32_t)extra, p->src.cost_py)) Py_RETURN_NONE;
  }
  return mon_py_enter_slow(p, co);
}

static __attribute__((noinline)) PyObject *mon_leave_slow(statsprof *p, uint64_t cost_of_event,
                                                          uint64_t own_scale) {
  statsprof__thread *t = mon_thread(p);
  if (t) leave_slow(t, p, cost_of_event, own_scale);
  Py_RETURN_NONE;
}

static PyObject *mon_py_leave(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)args; /* the frame that returns is the top of this thread's stack */
  (void)nargs;
  statsprof *p = mon_profiler(self);
  if (__builtin_expect(!p->src.mon_on, 0)) Py_RETURN_NONE;
  if (__builtin_expect(tls_mon.key == p->src.mon_key, 1) && leave_fast(tls_mon.t, p, p->src.cost_py, p->src.own_scale))
    Py_RETURN_NONE;
  return mon_leave_slow(p, p->src.cost_py, p->src.own_scale);
}

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
  statsprof__pending exc = statsprof__pending_take();
  PyObject *meth = Py_TYPE(descr)->tp_descr_get(descr, self_arg, (PyObject *)Py_TYPE(self_arg));
  uint32_t label = meth && PyCFunction_Check(meth) ? cfunc_label_of(p, (PyCFunctionObject *)meth) : 0;
  Py_XDECREF(meth);
  PyErr_Clear();
  statsprof__pending_restore(exc);
  return label;
}

static __attribute__((noinline)) PyObject *mon_c_enter_slow(statsprof *p, PyObject *const *args,
                                                            Py_ssize_t nargs) {
  statsprof__thread *t;
  const PyMethodDef *ml;
  if (!(ml = mon_cfunc_def(args, nargs)) || !(t = mon_thread(p))) Py_RETURN_NONE;
  PyObject *callable = args[2];
  struct statsprof__cfunc_hot *h = &p->src.cfunc_hot[((uintptr_t)ml >> 5) % STATSPROF__CFUNC_HOT];
  uint32_t label;
  if (h->ml == ml) label = h->label;
  else if (PyCFunction_Check(callable)) label = cfunc_label_of(p, (PyCFunctionObject *)callable);
  else if ((label = statsprof__table_cfunc_find(&p->table, ml)) == STATSPROF__NONE)
    label = mon_descr_label(p, callable, args[3]);
  enter(t, p, label, p->src.cost_c);
  Py_RETURN_NONE;
}

static PyObject *mon_c_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  statsprof *p = mon_profiler(self);
  const PyMethodDef *ml = mon_cfunc_exact(args, nargs);
  if (!ml || __builtin_expect(!p->src.mon_on, 0)) Py_RETURN_NONE;
  if (__builtin_expect(ml != MON_OTHER_TYPE && tls_mon.key == p->src.mon_key, 1)) {
    const struct statsprof__cfunc_hot *h = &p->src.cfunc_hot[((uintptr_t)ml >> 5) % STATSPROF__CFUNC_HOT];
    if (h->ml == ml && enter_fast(tls_mon.t, p, h->label, p->src.cost_c)) Py_RETURN_NONE;
  }
  return mon_c_enter_slow(p, args, nargs);
}

static __attribute__((noinline)) PyObject *mon_c_leave_other(statsprof *p, PyObject *const *args,
                                                             Py_ssize_t nargs) {
  if (mon_cfunc_def(args, nargs)) return mon_leave_slow(p, p->src.cost_c, 1 << 16);
  Py_RETURN_NONE;
}

static PyObject *mon_c_leave(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  statsprof *p = mon_profiler(self);
  const PyMethodDef *ml = mon_cfunc_exact(args, nargs);
  if (!ml || __builtin_expect(!p->src.mon_on, 0)) Py_RETURN_NONE;
  if (__builtin_expect(ml == MON_OTHER_TYPE, 0)) return mon_c_leave_other(p, args, nargs);
  if (__builtin_expect(tls_mon.key == p->src.mon_key, 1) && leave_fast(tls_mon.t, p, p->src.cost_c, 1 << 16))
    Py_RETURN_NONE;
  return mon_leave_slow(p, p->src.cost_c, 1 << 16);
}

typedef PyObject *(*mon_fn)(PyObject *, PyObject *const *, Py_ssize_t);
static PyMethodDef mon_defs[] = {
    {"_statsprof_py_enter", (PyCFunction)(void (*)(void))(mon_fn)mon_py_enter, METH_FASTCALL, NULL},
    {"_statsprof_py_leave", (PyCFunction)(void (*)(void))(mon_fn)mon_py_leave, METH_FASTCALL, NULL},
    {"_statsprof_c_enter", (PyCFunction)(void (*)(void))(mon_fn)mon_c_enter, METH_FASTCALL, NULL},
    {"_statsprof_c_leave", (PyCFunction)(void (*)(void))(mon_fn)mon_c_leave, METH_FASTCALL, NULL},
};
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

/* Takes a tool id, registers the callbacks and turns the events on. */
static int mon_start(statsprof *p) {
  PyObject *mon = monitoring_module();
  if (!mon) {
    PyErr_Clear();
    return statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: sys.monitoring is not available");
  }
  int rc = 0;
  if (p->src.mon_tool < 0) {
    for (int id = MON_TOOL_FIRST; id <= MON_TOOL_LAST && p->src.mon_tool < 0; id++)
      if (mon_call(mon, "use_tool_id", "(is)", id, "statsprof") == 0) p->src.mon_tool = id;
    if (p->src.mon_tool < 0) {
      Py_DECREF(mon);
      return statsprof__error(p, STATSPROF_ESTATE,
                              "source=monitoring: sys.monitoring tool ids %d and %d are both in use (by "
                              "another statsprof or another tool); use source=setprofile",
                              MON_TOOL_FIRST, MON_TOOL_LAST);
    }
    g_missing = PyObject_GetAttrString(mon, "MISSING");
    Py_XDECREF(g_missing); /* the module keeps it alive */
    PyObject *owner = mon_owner_new(p);
    if (!owner) rc = statsprof__error(p, STATSPROF_ENOMEM, "source=monitoring: cannot allocate the callbacks' owner");
    for (int i = 0; owner && !rc && i < MON_NCALLBACKS; i++) {
      PyObject *fn = PyCFunction_New(&mon_defs[mon_callbacks[i].def], owner);
      long bit = mon_event(mon, mon_callbacks[i].event);
      if (!fn || bit < 0 || mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, bit, fn))
        rc = statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: cannot register a callback for %s",
                              mon_callbacks[i].event);
      Py_XDECREF(fn);
    }
    Py_XDECREF(owner);
  }
  long events = 0;
  for (int i = 0; i < MON_NCALLBACKS; i++)
    if (i < MON_FIRST_C || p->src.config.builtins) events |= mon_event(mon, mon_callbacks[i].event);
  p->src.mon_key = atomic_fetch_add(&g_mon_key, 1) + 1; /* every thread's cached state is stale */
  p->src.mon_on = 1;
  if (!rc && mon_call(mon, "set_events", "(il)", p->src.mon_tool, events))
    rc = statsprof__error(p, STATSPROF_EPYTHON, "source=monitoring: set_events failed");
  Py_DECREF(mon);
  return rc;
}

/* Turns the events off (the tool id stays ours until release). */
static void mon_stop(statsprof *p) {
  p->src.mon_on = 0;
  if (p->src.mon_tool < 0 || p->interp_epoch != g_epoch || !Py_IsInitialized()) return;
  PyObject *mon = monitoring_module();
  if (mon) mon_call(mon, "set_events", "(ii)", p->src.mon_tool, 0);
  else PyErr_Clear();
  Py_XDECREF(mon);
}

void statsprof__monitoring_release(statsprof *p) {
  mon_stop(p);
  if (p->src.mon_tool < 0) return;
  if (p->interp_epoch == g_epoch && Py_IsInitialized()) {
    PyObject *mon = monitoring_module();
    for (int i = 0; mon && i < MON_NCALLBACKS; i++) {
      long bit = mon_event(mon, mon_callbacks[i].event);
      if (bit >= 0) mon_call(mon, "register_callback", "(ilO)", p->src.mon_tool, bit, Py_None);
    }
    if (mon) mon_call(mon, "free_tool_id", "(i)", p->src.mon_tool);
    else PyErr_Clear();
    Py_XDECREF(mon);
  }
  p->src.mon_tool = -1;
}

static int monitoring_attach_all(statsprof *p) { return p->src.mon_on ? 0 : mon_start(p); }

static void monitoring_detach_all(statsprof *p) {
  mon_stop(p);
  /* Frames still open close now; the states wait in the pool for their
   * thread's next run (a late callback finds p->src.mon_on off). */
  while (p->src.threads) {
    statsprof__thread *t = p->src.threads;
    statsprof__flush_thread(t);
    statsprof__thread_pool(p, t);
  }
}
#else
void statsprof__monitoring_release(statsprof *p) { (void)p; }
#endif

int statsprof__attach_all(statsprof *p, int self) {
#if PY_VERSION_HEX >= 0x030C0000
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) return monitoring_attach_all(p);
#endif
  return setprofile_attach_all(p, self);
}

void statsprof__detach_all(statsprof *p) {
#if PY_VERSION_HEX >= 0x030C0000
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) {
    monitoring_detach_all(p);
    return;
  }
#endif
  setprofile_detach_all(p);
}

int statsprof__attach_self(statsprof *p) {
#if PY_VERSION_HEX >= 0x030C0000
  /* Every thread already gets the events. */
  if (p->src.config.source == STATSPROF__SOURCE_MONITORING) return monitoring_attach_all(p);
#endif
  return setprofile_attach_self(p);
}

/* ---- threads started later from Python -------------------------------- */

/* threading.setprofile(f) makes each new Thread call sys.setprofile(f) before
 * run(); f then swaps itself for the C hook on its first event. */
static PyObject *thread_bootstrap(PyObject *capsule, PyObject *const *args, Py_ssize_t nargs) {
  statsprof *p = PyCapsule_GetPointer(capsule, "statsprof");
  PyThreadState *ts = PyThreadState_Get();
  if (!p || nargs != 3 || !statsprof__may_attach(p)) {
    PyErr_Clear();
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
  }
  if (setprofile_attach_self(p) != 0) {
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
  }
  static const char *events[] = {"call", "exception", "line", "return", "c_call", "c_exception", "c_return"};
  const char *ev = PyUnicode_Check(args[1]) ? PyUnicode_AsUTF8(args[1]) : NULL;
  for (int i = 0; ev && i < 7; i++)
    if (!strcmp(ev, events[i]))
      statsprof__hook(ts->c_profileobj, (PyFrameObject *)args[0], i, args[2] == Py_None ? NULL : args[2]);
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
  PyObject *fn = NULL;
  if (install) {
    PyObject *capsule = PyCapsule_New(p, "statsprof", NULL);
    fn = capsule ? PyCFunction_New(&bootstrap_def, capsule) : NULL;
    Py_XDECREF(capsule);
  }
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
  Py_XDECREF(fn);
  Py_XDECREF(current);
  Py_DECREF(threading);
  return rc;
}
