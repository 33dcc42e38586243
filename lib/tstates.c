/* tstates.c — the only code that touches thread states the profiler does
 * not own (start, production-mode windows and records attach the hook to
 * every thread of the interpreter, stop removes it).
 *
 * DESIGN
 * Other threads create and destroy thread states at any time: a C thread's
 * PyGILState_Ensure makes and links one *without* the GIL. CPython links
 * and unlinks them under its own lock over the thread-state list
 * (_PyRuntime.interpreters.mutex, "HEAD_LOCK"), and only frees a state once
 * it is unlinked. On 3.11 a new state is linked at the head of the list
 * *before* it is initialised, so a walk without that lock can meet it
 * half-made. 3.11 has no public API for the lock: we take it through the
 * internal headers that python3.11-dev ships (a documented private
 * dependency), and while holding it (and the GIL) we only set the profile
 * fields directly, exactly as _PyEval_SetProfile does but without its audit
 * event, so that no Python code can run and release the GIL mid-walk.
 *
 * From 3.12 a state is initialised before it is linked and states are
 * unlinked by threads holding the GIL, so a state the walk holds is not
 * freed under it; but the list's head still changes without the GIL when
 * a C thread links a new state, so the walk reads the head and each next
 * pointer under the same lock, as CPython's PyEval_SetProfileAllThreads
 * does, and releases it before it acts on the state: the profile function
 * must be set with _PyEval_SetProfile (it drives sys.monitoring), which
 * takes that lock itself. (Without the lock, TSan reports the walk's
 * reads of a state a host thread's PyGILState_Ensure has just made: 3.12,
 * stress scenario ensure-setprofile.) Its audit event could run a Python audit hook that releases the GIL; that
 * is the remaining risk there, documented in README (sys.monitoring
 * removes the walk altogether). */
#include <patchlevel.h> /* PY_VERSION_HEX, before Python.h decides on Py_BUILD_CORE */
#if PY_VERSION_HEX < 0x030C0000
#define STATSPROF__HEAD_LOCK 1
#endif
#define Py_BUILD_CORE 1 /* this file only: the internal headers below */

#include "internal.h"

#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>

#if PY_VERSION_HEX < 0x030D0000
/* 3.11 and 3.12: a PyThread lock, whose acquisition never releases the GIL. */
static void head_lock(void) { PyThread_acquire_lock(_PyRuntime.interpreters.mutex, WAIT_LOCK); }
static void head_unlock(void) { PyThread_release_lock(_PyRuntime.interpreters.mutex); }
static int head_trylock(void) { return PyThread_acquire_lock(_PyRuntime.interpreters.mutex, NOWAIT_LOCK) == PY_LOCK_ACQUIRED; }
#else
#include <sched.h>

/* From 3.13 a PyMutex. CPython takes it with _Py_LOCK_DONT_DETACH, which
 * libpython does not export; the public PyMutex_Lock may detach this
 * thread (release the GIL) while it waits, and a state the walk holds
 * could then be freed. So this is the lock's own fast path (a
 * compare-and-swap of its bits, as _PyMutex_LockTimed's), yielding the
 * CPU while another thread holds it: only for a moment, as whoever holds
 * it links or unlinks a state and never waits for the GIL meanwhile.
 * PyMutex_Unlock wakes a thread that parked on it. */
static void head_lock(void) {
  PyMutex *m = &_PyRuntime.interpreters.mutex;
  uint8_t bits = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
  for (;;) {
    if (!(bits & _Py_LOCKED) && __atomic_compare_exchange_n(&m->_bits, &bits, (uint8_t)(bits | _Py_LOCKED), 0,
                                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      return;
    sched_yield();
    bits = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
  }
}
static void head_unlock(void) { PyMutex_Unlock(&_PyRuntime.interpreters.mutex); }
static int head_trylock(void) {
  PyMutex *m = &_PyRuntime.interpreters.mutex;
  uint8_t bits = __atomic_load_n(&m->_bits, __ATOMIC_RELAXED);
  return !(bits & _Py_LOCKED) && __atomic_compare_exchange_n(&m->_bits, &bits, (uint8_t)(bits | _Py_LOCKED), 0,
                                                             __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
#endif

#ifdef STATSPROF__HEAD_LOCK

/* fork(): a thread that creates or deletes a thread state (the timer's
 * PyGILState_Ensure each tick does) holds this lock without the GIL, and
 * 3.11's PyOS_AfterFork_Child takes it again before it renews it: a child
 * forked at that moment waited forever (stress fork-timer, 1 run in ~300).
 * So fork() waits for it, like 3.13's own PyOS_BeforeFork. */
static int g_fork_held;

void statsprof__runtime_lock_atfork(int phase) {
  if (phase == 0) {
    g_fork_held = Py_IsInitialized() && _PyRuntime.interpreters.mutex != NULL;
    if (g_fork_held) head_lock();
  } else if (g_fork_held) {
    g_fork_held = 0;
    head_unlock();
  }
}

/* _PyEval_SetProfile of 3.11 without the audit event; refs are the caller's. */
static void set_profile(PyThreadState *ts, Py_tracefunc func, PyObject *obj) {
  ts->c_profilefunc = func;
  ts->c_profileobj = obj;
  /* _PyThreadState_UpdateTracingState of 3.11. */
  ts->cframe->use_tracing = ts->tracing == 0 && (ts->c_tracefunc || ts->c_profilefunc) ? 255 : 0;
}

void statsprof__tstates_install(statsprof *p, PyThreadState *me, int skip_me) {
  head_lock();
  for (PyThreadState *ts = me->interp->threads.head; ts; ts = ts->next) {
    if ((skip_me && ts == me) || ts->c_profilefunc) continue;
    statsprof__thread *t = statsprof__thread_new(p, ts->thread_id);
    if (!t) break; /* out of memory: the next record tries again */
    set_profile(ts, statsprof__hook, (PyObject *)t);
  }
  head_unlock();
}

void statsprof__tstates_remove(statsprof *p, PyThreadState *me) {
  /* The thread states' references go to p's pool (hook.c), after unlocking. */
  PyObject *dropped[64];
  for (int again = 1; again;) {
    size_t n = 0;
    again = 0;
    head_lock();
    for (PyThreadState *ts = me->interp->threads.head; ts; ts = ts->next) {
      if (ts->c_profilefunc != statsprof__hook || !ts->c_profileobj ||
          ((statsprof__thread *)ts->c_profileobj)->p != p)
        continue;
      if (n == sizeof dropped / sizeof *dropped) {
        again = 1;
        break;
      }
      dropped[n++] = ts->c_profileobj;
      set_profile(ts, NULL, NULL);
    }
    head_unlock();
    for (size_t i = 0; i < n; i++) statsprof__thread_pool(p, (statsprof__thread *)dropped[i]);
  }
}

int statsprof__tstates_has_thread(PyThreadState *me, unsigned long ident) {
  if (!head_trylock()) return -1;
  int found = 0;
  for (PyThreadState *ts = me->interp->threads.head; ts && !found; ts = ts->next) found = ts->thread_id == ident;
  head_unlock();
  return found;
}

#else /* 3.12 and later */

/* The list's first state and the one after ts, each read under CPython's
 * lock over the list (never held while acting on a state). */
static PyThreadState *head_of(PyInterpreterState *interp) {
  head_lock();
  PyThreadState *ts = PyInterpreterState_ThreadHead(interp);
  head_unlock();
  return ts;
}

static PyThreadState *next_of(PyThreadState *ts) {
  head_lock();
  PyThreadState *next = PyThreadState_Next(ts);
  head_unlock();
  return next;
}

void statsprof__tstates_install(statsprof *p, PyThreadState *me, int skip_me) {
  PyInterpreterState *interp = PyThreadState_GetInterpreter(me);
  for (PyThreadState *ts = head_of(interp); ts; ts = next_of(ts)) {
    if ((skip_me && ts == me) || ts->c_profilefunc) continue;
    statsprof__thread *t = statsprof__thread_new(p, ts->thread_id);
    if (!t) break;
    if (statsprof__set_profile(ts, statsprof__hook, (PyObject *)t) < 0) {
      PyErr_Clear();
      statsprof__thread_orphan(t);
    }
    Py_DECREF(t);
  }
}

void statsprof__tstates_remove(statsprof *p, PyThreadState *me) {
  PyInterpreterState *interp = PyThreadState_GetInterpreter(me);
  for (PyThreadState *ts = head_of(interp); ts; ts = next_of(ts)) {
    if (ts->c_profilefunc != statsprof__hook || !ts->c_profileobj ||
        ((statsprof__thread *)ts->c_profileobj)->p != p)
      continue;
    statsprof__thread *t = (statsprof__thread *)Py_NewRef(ts->c_profileobj);
    if (statsprof__set_profile(ts, NULL, NULL) < 0) {
      PyErr_Clear();
      Py_DECREF(t);
    } else {
      statsprof__thread_pool(p, t);
    }
  }
}

int statsprof__tstates_has_thread(PyThreadState *me, unsigned long ident) {
  if (!head_trylock()) return -1;
  int found = 0;
  for (PyThreadState *ts = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me)); ts && !found;
       ts = PyThreadState_Next(ts))
    found = ts->thread_id == ident;
  head_unlock();
  return found;
}

#endif

#ifndef STATSPROF__HEAD_LOCK
void statsprof__runtime_lock_atfork(int phase) { (void)phase; }
#endif
