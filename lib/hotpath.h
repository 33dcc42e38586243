/* hotpath.h — the counting core's hot path, inlined into each event source.
 *
 * A call event becomes enter(), a return event leave(). They run under the
 * GIL, never raise, never call back into Python and, once a function has
 * been seen, never allocate: the label comes from the code object's
 * co_extra slot (or the C-function cache), the frame from the thread's
 * preallocated stack. enter_fast/leave_fast are the common case and call
 * nothing; the rest goes to the out-of-line slow paths in hook.c. Counting
 * mirrors CPython's _lsprof.c: a call is counted when it returns;
 * cumulative time is added only at the outermost level of recursion of
 * that function in that thread.
 */
#ifndef STATSPROF_HOTPATH_H
#define STATSPROF_HOTPATH_H

#include "internal.h"

/* Our co_extra index, -1 until reserved (hook.c). */
extern Py_ssize_t statsprof__extra_index;

/* The slow paths (hook.c): a function's first sight; a call that needs an
 * entry, an edge or stack room; a return on another clock or while frames
 * are tracked. */
uint32_t statsprof__code_entry_slow(statsprof *p, PyCodeObject *co);
uint32_t statsprof__cfunc_entry_slow(statsprof *p, PyCFunctionObject *fn);
void statsprof__enter_slow(statsprof__thread *t, statsprof *p, uint32_t label, uint64_t cost);
void statsprof__enter_code_slow(statsprof__thread *t, statsprof *p, PyCodeObject *co, uint64_t cost);
void statsprof__leave_slow(statsprof__thread *t, statsprof *p, uint64_t cost_of_event, uint64_t own_scale);

/* A code object's co_extra value at our index, or NULL. co_extra is a field
 * of the public PyCodeObject (Include/cpython/code.h) on 3.11 to 3.15, and
 * what it points to, _PyCodeObjectExtra {Py_ssize_t ce_size; void
 * *ce_extras[1];} (Objects/codeobject.c), has not changed since PEP 523:
 * PyUnstable_Code_GetExtra of Debian's 3.11.2, pyenv's 3.12.1 and 3.13.0
 * and sid's 3.14.10 and 3.15.2 compiles to these same three loads (checked
 * by disassembly). Reading it here saves a call and its type check per
 * event. Versions not checked yet use the public function (free-threaded
 * builds, where the slot could be written concurrently, are refused:
 * pycompat.h). */
#if PY_VERSION_HEX < 0x03100000
struct statsprof__code_extra {
  Py_ssize_t ce_size;
  void *ce_extras[1];
};

static inline void *code_extra(PyCodeObject *co) {
  const struct statsprof__code_extra *e = co->co_extra;
  /* statsprof__extra_index is -1 until reserved: as a size_t it is never in range. */
  return e && (size_t)statsprof__extra_index < (size_t)e->ce_size ? e->ce_extras[statsprof__extra_index] : NULL;
}
#else
static inline void *code_extra(PyCodeObject *co) {
  void *extra = NULL;
  if (statsprof__extra_index < 0 || PyUnstable_Code_GetExtra((PyObject *)co, statsprof__extra_index, &extra) != 0)
    return NULL;
  return extra;
}
#endif

static inline uint32_t code_label_co(statsprof *p, PyCodeObject *co) {
  uintptr_t extra = (uintptr_t)code_extra(co);
  return extra >> 32 == p->gen ? (uint32_t)extra : statsprof__code_entry_slow(p, co);
}

/* The slot of the small direct-mapped cache of C functions' labels where
 * method definition ml would be (PyMethodDefs are 32 bytes apart). */
static inline struct statsprof__cfunc_hot *cfunc_hot_slot(statsprof *p, const PyMethodDef *ml) {
  return &p->src.cfunc_hot[((uintptr_t)ml >> 5) % STATSPROF__CFUNC_HOT];
}

static inline uint32_t cfunc_label_of(statsprof *p, PyCFunctionObject *fn) {
  /* Keyed by the method definition alone, labelled at first sight, as
   * cProfile does: a C method called on a subclass that overrides it in
   * Python keeps its first label instead of splitting in two. The cache
   * answers the methods a loop calls again and again without hashing. */
  const PyMethodDef *ml = fn->m_ml;
  struct statsprof__cfunc_hot *h = cfunc_hot_slot(p, ml);
  if (__builtin_expect(h->ml == ml, 1)) return h->label;
  uint32_t idx = statsprof__table_cfunc_find(&p->table, ml);
  if (idx == STATSPROF__NONE) idx = statsprof__cfunc_entry_slow(p, fn);
  h->ml = ml;
  h->label = idx;
  return idx;
}

/* ---- the hot path ------------------------------------------------------ */

static inline uint64_t now(const statsprof *p) {
  return p->src.config.clock == STATSPROF__CLOCK_CPU ? statsprof__thread_cpu_ns() : statsprof__ticks();
}


/* Pushes entry idx, called through edge eid, on a stack with room; the
 * caller adds the entry time to its base, last. */
static inline __attribute__((always_inline)) statsprof__callframe *push(statsprof__thread *t, statsprof *p,
                                                                        uint32_t idx, uint32_t eid, uint64_t cost) {
  statsprof__callframe *f = &t->stack[t->depth++];
  f->entry = idx;
  f->edge = eid;
  f->subt = 0;
  f->removed = 0;
  f->base = -((t->spent += cost) & p->src.compensate_mask);
  t->active = 1;
  p->table.entries[idx].level++;
  if (eid != STATSPROF__NONE) p->table.edges[eid].level++;
  return f;
}

/* A call in the common case, on a caller that knows the clock is the TSC:
 * this thread has an entry for the label, the caller's edge is the one the
 * function's previous call came through and the stack has room. It calls
 * nothing, so a callback built on it saves few registers and only past
 * its checks; 0 (nothing changed) when it does not apply. */
static inline __attribute__((always_inline)) int enter_fast_tsc(statsprof__thread *t, statsprof *p, uint32_t label,
                                                                uint64_t cost) {
  uint32_t idx, eid = STATSPROF__NONE, depth = t->depth;
  if (label >= t->nlocal || (idx = t->local[label]) == STATSPROF__NONE || depth == t->cap) return 0;
  if (depth) {
    /* The edges of the function's last two callers: a helper called from
     * two places in turn still takes this path. */
    uint32_t caller = t->stack[depth - 1].entry;
    statsprof__entry *e = &p->table.entries[idx];
    eid = e->last_edge;
    if (eid == STATSPROF__NONE || p->table.edges[eid].caller != caller) {
      eid = e->other_edge;
      if (eid == STATSPROF__NONE || p->table.edges[eid].caller != caller) return 0;
      e->other_edge = e->last_edge;
      e->last_edge = eid;
    }
  }
  push(t, p, idx, eid, cost)->base += statsprof__rdtsc();
  return 1;
}

/* A call of the C function whose method definition is ml, on the fast
 * path when the C-function cache already holds its label (the caller
 * knows the clock is the TSC); 0, nothing changed, otherwise. */
static inline __attribute__((always_inline)) int enter_cfunc_cached_tsc(statsprof__thread *t, statsprof *p,
                                                                        const PyMethodDef *ml, uint64_t cost) {
  const struct statsprof__cfunc_hot *h = cfunc_hot_slot(p, ml);
  return h->ml == ml && enter_fast_tsc(t, p, h->label, cost);
}

/* enter_fast_tsc where the clock is the TSC; 0 otherwise. */
static inline __attribute__((always_inline)) int enter_fast(statsprof__thread *t, statsprof *p, uint32_t label,
                                                            uint64_t cost) {
  return p->src.tsc && enter_fast_tsc(t, p, label, cost);
}

/* A call of Python code on the fast path (its label in co_extra for this
 * run, then enter_fast_tsc, on a caller that knows the clock is the TSC);
 * 0, nothing changed, when that does not apply. */
static inline __attribute__((always_inline)) int enter_code_fast_tsc(statsprof__thread *t, statsprof *p,
                                                                     PyCodeObject *co, uint64_t cost) {
  uintptr_t extra = (uintptr_t)code_extra(co);
  return extra >> 32 == p->gen && enter_fast_tsc(t, p, (uint32_t)extra, cost);
}

static inline __attribute__((always_inline)) int enter_code_fast(statsprof__thread *t, statsprof *p, PyCodeObject *co,
                                                                 uint64_t cost) {
  return p->src.tsc && enter_code_fast_tsc(t, p, co, cost);
}

/* A call of Python code: the slow path (label, then enter_slow) out of
 * line, so that the caller keeps nothing live for it. */
static inline __attribute__((always_inline)) void enter_code(statsprof__thread *t, statsprof *p, PyCodeObject *co,
                                                             uint64_t cost) {
  if (!enter_code_fast(t, p, co, cost)) statsprof__enter_code_slow(t, p, co, cost);
}

static inline void enter(statsprof__thread *t, statsprof *p, uint32_t label, uint64_t cost) {
  if (!enter_fast(t, p, label, cost)) statsprof__enter_slow(t, p, label, cost);
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
   * calls and returns, and its own return) cost the profiler the growth
   * of t->spent since its entry (which base holds back), time the frame
   * would not have spent unprofiled. What callees' bytecode scaling
   * removed, and the callees' own time, are not its own either. */
  int64_t left = (int64_t)(t1 - ((t->spent += cost_of_event) & p->src.compensate_mask) - f->base - f->removed);
  uint64_t own = left > (int64_t)f->subt ? (uint64_t)left - f->subt : 0;
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

/* A return on a caller that knows the clock is the TSC and no frame is
 * tracked: calls nothing, like enter_fast_tsc. */
static inline __attribute__((always_inline)) void leave_fast_tsc(statsprof__thread *t, statsprof *p,
                                                                 uint64_t cost_of_event, uint64_t own_scale) {
  leave_at(t, p, statsprof__rdtsc(), cost_of_event, own_scale, 0);
}

/* leave_fast_tsc where it applies; 0 when it does not. */
static inline __attribute__((always_inline)) int leave_fast(statsprof__thread *t, statsprof *p,
                                                            uint64_t cost_of_event, uint64_t own_scale) {
  if (!p->src.tsc || p->frames.tracking) return 0;
  leave_fast_tsc(t, p, cost_of_event, own_scale);
  return 1;
}

static inline void leave(statsprof__thread *t, statsprof *p, uint64_t cost_of_event, uint64_t own_scale) {
  if (!leave_fast(t, p, cost_of_event, own_scale)) statsprof__leave_slow(t, p, cost_of_event, own_scale);
}

/* The calling thread's state, for the sources that make and keep their
 * own (monitoring, evalframe): cached in thread-local storage for the run
 * p->src.tls_key, found or made by hook.c's slow path; NULL out of memory. */
struct statsprof__tls {
  uint64_t key;
  statsprof__thread *t;
};
extern __thread struct statsprof__tls statsprof__tls __attribute__((tls_model("initial-exec")));
statsprof__thread *statsprof__tls_thread_slow(statsprof *p);

static inline statsprof__thread *statsprof__tls_thread(statsprof *p) {
  if (__builtin_expect(statsprof__tls.key == p->src.tls_key, 1)) return statsprof__tls.t;
  return statsprof__tls_thread_slow(p);
}

#endif
