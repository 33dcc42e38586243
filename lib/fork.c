/* fork.c — a forked child gets a profiler that works exactly as if it had
 * been started there.
 *
 * DESIGN
 * Two moments. (1) pthread_atfork, in the C library's fork: the timer's
 * lock is held across fork() so the child never inherits it held, and the
 * child unlocks it and re-creates its condition variable (a condition variable
 * the parent's timer thread was waiting on is not usable in the child: a
 * child that signalled it hung). Writers do the same for their rings
 * (writer.c). (2) os.register_at_fork(after_in_child=...), which CPython
 * runs from PyOS_AfterFork_Child once the interpreter is whole again (the
 * other threads' states are gone by then, their open frames flushed): each
 * running profiler forgets the parent's counts, threads, delta baselines
 * and frame marks, its calling thread forgets the frames open at fork (as
 * at start, their returns are not counted), and a trigger=timer profiler
 * starts a new timer thread. Records then carry the child's pid; sequence
 * numbers start again at 1. A host that forks in C must call
 * PyOS_BeforeFork/PyOS_AfterFork_Parent/PyOS_AfterFork_Child around fork(),
 * as CPython requires of any embedding host that forks and runs Python in
 * the child. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static statsprof *g_profilers; /* every profiler of the process */
static uint64_t g_hook_epoch;  /* interpreter the Python hook is registered in */

/* One set of handlers, so one order: the locks taken under others come
 * last (pthread_atfork's handlers registered apart ran in reverse order of
 * registration: TSan saw the name lock taken before g_lock at fork, after
 * it elsewhere). */
static void atfork_prepare(void) {
  pthread_mutex_lock(&g_lock);
  for (statsprof *p = g_profilers; p; p = p->next_profiler) statsprof__timer_atfork(&p->timer, 0);
  /* Then: its holders never wait for ours (tstates.c). */
  if (g_profilers) statsprof__runtime_lock_atfork(0);
  /* Innermost: held only for a moment, nothing taken under them. */
  statsprof__registry_atfork(0);
  statsprof__threads_atfork(0);
}

static void atfork_parent(void) {
  statsprof__threads_atfork(1);
  statsprof__registry_atfork(1);
  statsprof__runtime_lock_atfork(1);
  for (statsprof *p = g_profilers; p; p = p->next_profiler) statsprof__timer_atfork(&p->timer, 1);
  pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void) {
  statsprof__threads_atfork(2);
  statsprof__registry_atfork(2);
  statsprof__runtime_lock_atfork(2);
  for (statsprof *p = g_profilers; p; p = p->next_profiler) {
    statsprof__timer_atfork(&p->timer, 2);
    /* A call in progress at fork belongs to the parent's thread, also for
     * a profiler not running yet (its first start, calibrating). */
    p->busy = p->timer_joining = p->timer_deferred = 0;
    p->hook_holds = 0; /* the other threads' hooks are not in the child (a let_go stops at 0) */
  }
  statsprof__calibrate_atfork_child();
  /* The forking thread took it in prepare and is the child's only thread:
   * it unlocks it, as the other handlers do theirs (initialised again, TSan
   * took it for still held and reported the writers' lock taken under it
   * as a lock-order inversion). */
  pthread_mutex_unlock(&g_lock);
}

static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

void statsprof__fork_handlers(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_atfork);
}

void statsprof__fork_track(statsprof *p, int add) {
  statsprof__fork_handlers();
  pthread_mutex_lock(&g_lock);
  statsprof **pp = &g_profilers;
  while (*pp && *pp != p) pp = &(*pp)->next_profiler;
  if (add && !*pp) {
    p->next_profiler = g_profilers;
    g_profilers = p;
  } else if (!add && *pp) {
    *pp = p->next_profiler;
  }
  pthread_mutex_unlock(&g_lock);
}

/* The child's fresh start for one profiler. GIL held, one thread. */
static void child_reset(statsprof *p) {
  for (statsprof__thread *t = p->src.threads; t; t = t->next) {
    t->depth = 0;
    t->skipped = 0;
    t->ef_frame = t->ef_cur = NULL; /* the evaluations running at fork return to a fresh start */
    t->ef_left = 0;
  }
  statsprof__table *tb = &p->table;
  for (uint32_t i = 0; i < tb->nentries; i++) tb->entries[i].level = 0;
  for (uint32_t i = 0; i < tb->nedges; i++) tb->edges[i].level = 0;
  statsprof__table_clear_counts(tb);
  /* Only the forking thread exists here: the others' slots end now. */
  for (uint32_t i = 0; i < tb->nslots; i++) {
    statsprof__slot *s = &tb->slots[i];
    if (s->state == STATSPROF__SLOT_LIVE && !statsprof__osthread_is_self(s->os)) s->state = STATSPROF__SLOT_ENDED;
    s->active = 0;
  }
  statsprof__threads_retire(p);
  statsprof__frame_forget(&p->frames);
  p->snap.nprev_entries = p->snap.nprev_edges = 0;
  p->snap.last_wall_ns = p->snap.start_wall_ns = statsprof__wall_ns();
  p->snap.seq = 0;
  /* A window open at fork counts in the child from here. */
  statsprof__duty_reset(&p->duty, statsprof__ticks(), statsprof__own_cost(p));
  p->next_tick = statsprof__ticks() + p->interval_ticks;
  p->busy = p->timer_joining = p->timer_deferred = 0; /* a call in progress at fork belongs to the parent's thread */
  statsprof__writers_deadline_end(&p->writers); /* ... and so does its deadline (an interval's, a stop's) */
  if (p->running && statsprof__timer_after_fork(&p->timer)) p->fork_log = 1;
}

/* The next profiler with something to log, held as a public call holds it
 * (a destroy from the log function is refused); NULL when none is left. */
static statsprof *next_fork_log(void) {
  pthread_mutex_lock(&g_lock);
  statsprof *p = g_profilers;
  while (p && !p->fork_log) p = p->next_profiler;
  if (p) {
    p->fork_log = 0;
    p->busy = STATSPROF__BUSY_CALL;
  }
  pthread_mutex_unlock(&g_lock);
  return p;
}

static PyObject *after_fork_child(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  statsprof__evalframe_after_fork();
  pthread_mutex_lock(&g_lock);
  for (statsprof *p = g_profilers; p; p = p->next_profiler)
    if (p->interp_epoch == statsprof__epoch()) child_reset(p);
  pthread_mutex_unlock(&g_lock);
  /* The host's log function runs with g_lock let go: one that creates or
   * destroys a profiler would deadlock on it. */
  for (statsprof *p; (p = next_fork_log());) {
    statsprof__logf(&p->log, "trigger=timer: cannot start the timer thread in the forked child");
    statsprof__leave(p);
  }
  Py_RETURN_NONE;
}

static PyMethodDef after_fork_def = {"_statsprof_after_fork_child", after_fork_child, METH_NOARGS,
                                     "Gives every statsprof profiler a fresh start in a forked child."};

int statsprof__fork_hook(void) {
  if (g_hook_epoch == statsprof__epoch()) return 0;
  PyObject *os = PyImport_ImportModule("os");
  PyObject *fn = os ? PyCFunction_New(&after_fork_def, NULL) : NULL;
  PyObject *reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
  PyObject *args = PyTuple_New(0);
  PyObject *kw = fn ? Py_BuildValue("{sO}", "after_in_child", fn) : NULL;
  PyObject *r = reg && args && kw ? PyObject_Call(reg, args, kw) : NULL;
  int rc = r ? 0 : -1;
  if (r) g_hook_epoch = statsprof__epoch();
  else PyErr_Clear();
  Py_XDECREF(r);
  Py_XDECREF(kw);
  Py_XDECREF(args);
  Py_XDECREF(reg);
  Py_XDECREF(fn);
  Py_XDECREF(os);
  return rc;
}
