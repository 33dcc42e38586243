/* timer.c — trigger=timer: a thread that emits a record every interval, for
 * hosts without a main loop to call statsprof_tick from.
 *
 * DESIGN
 * The thread sleeps on a condition variable with a deadline; at each
 * deadline it takes the GIL (PyGILState_Ensure), does what statsprof_tick
 * does, and lets the GIL go. Stopping sets a flag, signals, and joins with
 * the GIL released (the thread may be waiting for it). Py_Finalize must not
 * find the thread asking for the GIL, so start registers a Python atexit
 * callback that stops the thread while the interpreter is still whole; the
 * thread also checks Py_IsFinalizing before asking. fork() leaves the child
 * without the thread: fork.c gives the child fresh synchronisation and,
 * once Python is whole again, a new thread.
 */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

static void deadline_after(struct timespec *ts, int64_t ns) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  int64_t t = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + (ns > 0 ? ns : 1000000);
  ts->tv_sec = t / 1000000000;
  ts->tv_nsec = t % 1000000000;
}

static void *timer_main(void *arg) {
  statsprof *p = arg;
  struct timespec deadline;
  pthread_mutex_lock(&p->timer_lock);
  deadline_after(&deadline, p->config.interval_ns);
  while (!p->timer_stop) {
    int rc = pthread_cond_timedwait(&p->timer_cond, &p->timer_lock, &deadline);
    if (p->timer_stop) break;
    /* Woken early only to replan (statsprof__timer_kick). */
    if (rc != ETIMEDOUT && !p->timer_kick) continue;
    p->timer_kick = 0;
    pthread_mutex_unlock(&p->timer_lock);
    if (!Py_IsInitialized() || Py_IsFinalizing()) return NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int64_t wait = p->config.interval_ns;
    if (p->running && !p->timer_stop) {
      statsprof__emit_due(p, 1);
      /* Wake for the next record or production-mode window edge. */
      uint64_t now = statsprof__ticks();
      wait = p->next_due > now ? (int64_t)((double)(p->next_due - now) * statsprof__clock_sec_per_tick * 1e9)
                               : 0;
    }
    PyGILState_Release(g);
    deadline_after(&deadline, wait > 0 ? wait : 1);
    pthread_mutex_lock(&p->timer_lock);
  }
  pthread_mutex_unlock(&p->timer_lock);
  return NULL;
}

static void init_sync(statsprof *p) {
  pthread_mutex_init(&p->timer_lock, NULL);
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&p->timer_cond, &a);
  pthread_condattr_destroy(&a);
  p->timer_init = 1;
}

/* Starts the thread; 0 or -1. */
static int spawn(statsprof *p) {
  p->timer_stop = 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the host's signals stay on its threads */
  int created = pthread_create(&p->timer_thread, NULL, timer_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (created != 0) return -1;
  p->timer_running = 1;
  p->timer_pid = getpid();
  return 0;
}

static PyObject *atexit_stop(PyObject *capsule, PyObject *unused) {
  (void)unused;
  statsprof *p = PyCapsule_GetPointer(capsule, "statsprof.timer");
  if (p) statsprof__timer_stop(p);
  Py_RETURN_NONE;
}

static PyMethodDef atexit_def = {"_statsprof_timer_stop", atexit_stop, METH_NOARGS,
                                 "Stops statsprof's timer thread before finalization."};

static int call_atexit(const char *method, PyObject *fn) {
  PyObject *mod = PyImport_ImportModule("atexit");
  PyObject *r = mod ? PyObject_CallMethod(mod, method, "O", fn) : NULL;
  Py_XDECREF(mod);
  Py_XDECREF(r);
  if (!r) PyErr_Clear();
  return r ? 0 : -1;
}

int statsprof__timer_start(statsprof *p) {
  if (p->timer_running) return 0;
  if (!p->timer_init) init_sync(p);
  PyObject *capsule = PyCapsule_New(p, "statsprof.timer", NULL);
  p->timer_atexit = capsule ? PyCFunction_New(&atexit_def, capsule) : NULL;
  Py_XDECREF(capsule);
  if (!p->timer_atexit || call_atexit("register", p->timer_atexit)) {
    PyErr_Clear();
    Py_CLEAR(p->timer_atexit);
    return statsprof__error(p, STATSPROF_EPYTHON, "trigger=timer: cannot register an atexit handler");
  }
  if (spawn(p) != 0) {
    call_atexit("unregister", p->timer_atexit);
    Py_CLEAR(p->timer_atexit);
    return statsprof__error(p, STATSPROF_ENOMEM, "trigger=timer: cannot start the timer thread");
  }
  return 0;
}

void statsprof__timer_atfork(statsprof *p, int phase) {
  if (!p->timer_init) return;
  if (phase == 0) {
    pthread_mutex_lock(&p->timer_lock);
  } else if (phase == 1) {
    pthread_mutex_unlock(&p->timer_lock);
  } else {
    /* The parent's thread may have been waiting on the condition: it is
     * not usable here. Fresh ones, and no thread until after_fork. */
    init_sync(p);
    p->timer_running = 0;
  }
}

void statsprof__timer_after_fork(statsprof *p) {
  if (!p->config.trigger_timer || p->timer_running || !p->timer_atexit) return;
  if (spawn(p) != 0) statsprof__logf(&p->log, "trigger=timer: cannot start the timer thread in the forked child");
}

void statsprof__timer_kick(statsprof *p) {
  if (!p->timer_running) return;
  pthread_mutex_lock(&p->timer_lock);
  p->timer_kick = 1;
  pthread_cond_signal(&p->timer_cond);
  pthread_mutex_unlock(&p->timer_lock);
}

void statsprof__timer_stop(statsprof *p) {
  if (!p->timer_running) return;
  p->timer_running = 0;
  pthread_mutex_lock(&p->timer_lock);
  p->timer_stop = 1;
  pthread_cond_signal(&p->timer_cond);
  pthread_mutex_unlock(&p->timer_lock);
  int have_gil = Py_IsInitialized() && PyGILState_Check();
  /* In a forked child the thread does not exist: nothing to join. */
  if (p->timer_pid == getpid()) {
    PyThreadState *ts = have_gil ? PyEval_SaveThread() : NULL;
    pthread_join(p->timer_thread, NULL);
    if (ts) PyEval_RestoreThread(ts);
  }
  if (p->timer_atexit) {
    if (have_gil) call_atexit("unregister", p->timer_atexit);
    if (have_gil) Py_CLEAR(p->timer_atexit);
    else p->timer_atexit = NULL; /* the interpreter is gone, and the object with it */
  }
}
