/* timer.c — trigger=timer: a thread that emits a record every interval, for
 * hosts without a main loop to call statsprof_tick from.
 *
 * DESIGN
 * The thread sleeps on a condition variable with a deadline; at each
 * deadline it takes the GIL (PyGILState_Ensure), calls the function it was
 * started with (the profiler's "what tick does", which says how long to
 * sleep next), and lets the GIL go. It knows nothing of the profiler. Stopping sets a flag, signals, and joins with
 * the GIL released (the thread may be waiting for it). Py_Finalize must not
 * find the thread asking for the GIL, so start registers a Python atexit
 * callback that stops the thread while the interpreter is still whole; the
 * thread also checks Py_IsFinalizing before asking. fork() leaves the child
 * without the thread: fork.c gives the child fresh synchronisation and,
 * once Python is whole again, a new thread.
 */
#include <string.h>
#include <time.h>

#include "internal.h"

/* The longest single sleep. An interval may be up to 2^63 ns (config.c),
 * and now + that overflowed: a negative tv_nsec made
 * pthread_cond_timedwait fail with EINVAL at once, and the thread spun. A
 * longer wait is slept a day at a time: each wake asks fn again, which
 * emits nothing before its time and says how long is left. */
#define MAX_SLEEP_NS (86400 * (int64_t)1000000000)

static void deadline_after(struct timespec *ts, int64_t ns) {
  if (ns <= 0) ns = 1000000;
  if (ns > MAX_SLEEP_NS) ns = MAX_SLEEP_NS;
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ns / 1000000000);
  ts->tv_nsec += (long)(ns % 1000000000);
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

static void *timer_main(void *arg) {
  statsprof__timer *t = arg;
  struct timespec deadline;
  pthread_mutex_lock(&t->lock);
  deadline_after(&deadline, t->interval_ns);
  while (!t->stop) {
    /* A kick is a flag, not only a signal: start kicks right after spawning
     * this thread, usually before it first waits, and a signal nobody waits
     * for is lost (the first production-mode window then stayed open until
     * the first record, a whole interval). */
    int rc = t->kick ? 0 : pthread_cond_timedwait(&t->cond, &t->lock, &deadline);
    t->wakeups++;
    if (t->stop) break;
    /* 0 with no kick: woken early only to replan (statsprof__timer_kick),
     * or spuriously. Any error counts as the deadline passing: going
     * round again at once on one (EINVAL) spun the thread. */
    if (rc == 0 && !t->kick) continue;
    t->kick = 0;
    pthread_mutex_unlock(&t->lock);
    if (!Py_IsInitialized() || Py_IsFinalizing()) return NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int64_t wait = t->stop ? t->interval_ns : t->fn(t->arg);
    PyGILState_Release(g);
    deadline_after(&deadline, wait > 0 ? wait : 1);
    pthread_mutex_lock(&t->lock);
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

static void init_cond(statsprof__timer *t) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cond, &a);
  pthread_condattr_destroy(&a);
}

static void init_sync(statsprof__timer *t) {
  pthread_mutex_init(&t->lock, NULL);
  init_cond(t);
  t->sync_init = 1;
}

/* Starts the thread; 0 or -1. */
static int spawn(statsprof__timer *t) {
  t->stop = 0;
  /* The host's signals stay on its threads (statsprof__thread_create). */
  int rc = statsprof__thread_create(&t->thread, timer_main, t);
  if (rc) return rc;
  t->running = 1;
  t->pid = getpid();
  return 0;
}

static PyObject *atexit_stop(PyObject *capsule, PyObject *unused) {
  (void)unused;
  statsprof__timer *t = PyCapsule_GetPointer(capsule, "statsprof.timer");
  if (t) statsprof__timer_stop(t);
  Py_RETURN_NONE;
}

static PyMethodDef atexit_def = {"_statsprof_timer_stop", atexit_stop, METH_NOARGS,
                                 "Stops statsprof's timer thread before finalization."};

int statsprof__call_atexit(const char *method, PyObject *fn) {
  PyObject *mod = PyImport_ImportModule("atexit");
  PyObject *r = mod ? PyObject_CallMethod(mod, method, "O", fn) : NULL;
  Py_XDECREF(mod);
  Py_XDECREF(r);
  if (!r) PyErr_Clear();
  return r ? 0 : -1;
}

void statsprof__timer_init(statsprof__timer *t, int64_t interval_ns) {
  memset(t, 0, sizeof *t);
  t->interval_ns = interval_ns;
}

void statsprof__timer_free(statsprof__timer *t) {
  if (!t->sync_init) return;
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  t->sync_init = 0;
}

int statsprof__timer_start(statsprof__timer *t, statsprof__timer_fn fn, void *arg, char *why, size_t whylen) {
  if (t->running) return 0;
  if (!t->sync_init) init_sync(t);
  t->fn = fn;
  t->arg = arg;
  if (t->atexit) { /* a forked child's, whose thread never came back */
    statsprof__call_atexit("unregister", t->atexit);
    Py_CLEAR(t->atexit);
  }
  PyObject *capsule = PyCapsule_New(t, "statsprof.timer", NULL);
  t->atexit = capsule ? PyCFunction_New(&atexit_def, capsule) : NULL;
  Py_XDECREF(capsule);
  if (!t->atexit || statsprof__call_atexit("register", t->atexit)) {
    PyErr_Clear();
    Py_CLEAR(t->atexit);
    statsprof__msg(why, whylen, "cannot register an atexit handler");
    return STATSPROF_EPYTHON;
  }
  int rc = spawn(t);
  if (rc) {
    statsprof__call_atexit("unregister", t->atexit);
    Py_CLEAR(t->atexit);
    statsprof__msg(why, whylen, "cannot start the timer thread: %s", strerror(rc));
    return STATSPROF_ENOMEM;
  }
  return 0;
}

void statsprof__timer_atfork(statsprof__timer *t, int phase) {
  if (!t->sync_init) return;
  if (phase == 0) {
    pthread_mutex_lock(&t->lock);
  } else if (phase == 1) {
    pthread_mutex_unlock(&t->lock);
  } else {
    /* The forking thread took the lock in phase 0 and is the child's only
     * thread: it unlocks it (initialising a locked mutex again is
     * undefined). The parent's thread may have been waiting on the
     * condition: it is not usable here. A fresh one, and no thread until
     * after_fork. */
    pthread_mutex_unlock(&t->lock);
    init_cond(t);
    t->running = 0;
  }
}

int statsprof__timer_after_fork(statsprof__timer *t) {
  if (t->running || !t->atexit) return 0;
  return spawn(t);
}

void statsprof__timer_kick(statsprof__timer *t) {
  if (!t->running) return;
  pthread_mutex_lock(&t->lock);
  t->kick = 1;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

int statsprof__timer_is_self(const statsprof__timer *t) {
  return t->running && t->pid == getpid() && pthread_equal(t->thread, pthread_self());
}

void statsprof__timer_stop(statsprof__timer *t) {
  int have_gil = Py_IsInitialized() && statsprof__holds_gil();
  if (t->running) {
    t->running = 0;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    /* In a forked child the thread does not exist: nothing to join. */
    if (t->pid == getpid()) {
      PyThreadState *ts = have_gil ? PyEval_SaveThread() : NULL;
      pthread_join(t->thread, NULL);
      if (ts) PyEval_RestoreThread(ts);
    }
  }
  /* Also with no thread: a forked child's before it comes back (or when
   * it could not), whose atexit handler would outlive the profiler. */
  if (t->atexit) {
    if (have_gil) statsprof__call_atexit("unregister", t->atexit);
    if (have_gil) Py_CLEAR(t->atexit);
    else t->atexit = NULL; /* the interpreter is gone, and the object with it */
  }
}
