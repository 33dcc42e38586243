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
 * Uses only the public header (statsprof.h) and runs with the GIL held,
 * but for the log callback and the thread that delivers its messages. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "statsprof.h"

/* Public from 3.13; the old name is gone there. */
#if PY_VERSION_HEX < 0x030D0000
#define Py_IsFinalizing _Py_IsFinalizing
#endif

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

/* ---- the library's log, delivered to Python ---------------------------- */

/* The library calls its log function (statsprof_set_log) from any thread:
 * sink writer threads and the timer thread, which hold no GIL and are not
 * Python threads, as well as the caller's. Calling Python there could hang
 * or crash (PyGILState_Ensure during finalization), and a handler that
 * blocks would stall a sink. So the callback only copies the message into
 * its profiler's queue, bounded (a message that finds it full is counted,
 * and "N messages dropped" is delivered after the others), and wakes the
 * delivery thread: one per process, a C thread started with the first
 * message (again in a forked child), that waits on a condition variable
 * without the GIL and with every signal blocked, and takes the GIL
 * (PyGILState_Ensure, the importing thread's signal mask back) only to
 * deliver, so messages arrive whatever the
 * main thread does (blocked in a join, a sleep, C code; an embedding host
 * whose main thread never runs Python). The queue is also delivered at the
 * start and end of each call on the profiler, and whole at close (after
 * statsprof_destroy: nothing comes later), which first waits for another
 * thread's delivery of it in progress (GIL released, at most LOG_WAIT_MS).
 * One thread delivers a queue at a time, in order; a handler's own calls on
 * the profiler deliver nothing (the delivery in progress goes on). Delivery
 * calls the profiler's log= callable, or looks up
 * logging.getLogger("statsprof") (at each message: a logging configuration
 * made after the profiler, e.g. dictConfig, applies) and calls its warning;
 * no lock of ours is held. Where logging would drop the message (the
 * logger disabled, as dictConfig's disable_existing_loggers does; or no
 * handler and no logging.lastResort), or the callable raises (reported as
 * unraisable), it goes to fd 2 instead; to logging.lastResort (no handler
 * configured) it goes as "statsprof: MESSAGE". A KeyboardInterrupt or
 * SystemExit out of a handler run by a call on the profiler ends that
 * delivery and is raised by the call (log_deliver's `raised`).
 *
 * fd 2 is written by the library's own writer (statsprof_log_stderr:
 * SIGPIPE-safe, no stdio, given up after a stall), with the GIL released;
 * after a write that stalled the next ones do not wait, until one goes
 * through whole.
 *
 * Exit: the module's atexit callback (atexit runs the last registered
 * first, so it runs while the interpreter is whole, before logging's
 * shutdown, imported first) stops the delivery thread from taking the GIL
 * again: it waits, GIL released, for the thread to finish taking it if it
 * is (without a time limit: it gets it at once, sees the stop and lets go),
 * and for a handler in progress at most LOG_WAIT_MS (statsprof's wait ends
 * then; logging.shutdown, after it, still takes each handler's lock, so a
 * logging handler blocked holding it holds up the exit there, as without
 * statsprof). It delivers what is queued itself, then marks every queue
 * dead and drops its target: every later message goes to fd 2, as the
 * library's default does, also from a profiler that outlives Py_Finalize
 * into an interpreter initialized again (its target belonged to the old
 * one). So no thread of ours takes the GIL once finalization began. Where
 * that callback would not run (the module first imported once
 * finalization began: module_exec sees it) the queues are dead from the
 * start; a Py_AtExit function marks them dead as Py_FinalizeEx ends, and
 * the next module_exec (a new Py_Initialize) begins a new generation,
 * whose queues and flags a thread of an older one never touches.
 *
 * One mutex (log_lock) guards every queue, the flags and the thread's
 * state; no one holds it while taking the GIL or calling Python. fork: the
 * prepare handler takes it, the parent and child handlers unlock it (not
 * initialise it again); the child empties the queues (their messages are
 * the parent's to deliver), takes back a delivery left in progress by a
 * thread that does not exist there, and starts its own delivery thread
 * with its first message. */

#define LOG_QUEUE_CAP 64  /* messages waiting in one profiler's queue */
#define LOG_WAIT_MS 1000  /* the most close() or exit waits for another thread's delivery */
#define LOG_STALL_MS 1000 /* a write to fd 2 waits for room, as the library's default log */

typedef struct log_queue {
  struct log_queue *prev, *next; /* every live queue: the thread, fork and atexit walk them */
  int refs;                      /* the Profiler's, a delivery's */
  int orphan;                    /* the Profiler let go (its handle destroyed): nothing more comes */
  int dead;                      /* to fd 2: a sub-interpreter's, or its interpreter finalized */
  unsigned gen;                  /* log_gen when made: of an older one, to fd 2 */
  int delivering;                /* a thread delivers it... */
  pthread_t deliverer;           /* ...this one */
  unsigned head, count;
  char *msgs[LOG_QUEUE_CAP];
  unsigned long long dropped; /* messages that found the queue full */
  PyObject *target;           /* GIL: the log= callable; NULL: logging.getLogger("statsprof") */
} log_queue;

/* Everything but target: log_lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_wake; /* the delivery thread: a message, or stop */
static pthread_cond_t log_done; /* a delivery ended, or the thread let go of the GIL */
static log_queue *log_queues;
static int log_finalizing;      /* atexit ran (or finalization began): every message goes to fd 2 */
static int log_stopping;        /* atexit runs: the thread takes the GIL no more */
static unsigned log_gen;        /* the interpreter's: one more at each Py_Initialize after a Py_Finalize */
static int log_execs;           /* module_exec calls in the main interpreter of this generation */
static int log_atexit_registered; /* mod_finalizing is registered with atexit in this generation */
static int log_ll_armed;        /* log_ll_exit is registered with Py_AtExit */
static int log_ll_ended;        /* ...and ran: Py_FinalizeEx ended */
static int log_thread_running;  /* the delivery thread of this generation exists (detached) */
static int log_thread_entering; /* it decided to deliver and takes the GIL: not yet holding it */
static int log_thread_in_python; /* it holds a thread state: the GIL, or a handler that let go of it */
static pthread_t log_thread;
static sigset_t log_py_sigmask; /* handlers run with it: the importing thread's */
static int log_fd2_stalled; /* atomic: the last write to fd 2 stalled */

static void log_conds_init(void) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&log_wake, &attr);
  pthread_cond_init(&log_done, &attr);
  pthread_condattr_destroy(&attr);
}

static void log_prepare(void);
static void log_parent(void);
static void log_child(void);
static void profilers_after_fork(void);

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init_once(void) {
  log_conds_init();
  pthread_atfork(log_prepare, log_parent, log_child);
}

static struct timespec log_deadline(int ms) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

static void log_free_messages(log_queue *q) {
  for (; q->count; q->count--, q->head = (q->head + 1) % LOG_QUEUE_CAP) free(q->msgs[q->head]);
}

static void log_prepare(void) { pthread_mutex_lock(&log_lock); }

static void log_parent(void) { pthread_mutex_unlock(&log_lock); }

static void log_child(void) {
  pthread_t me = pthread_self();
  /* Forked from a handler on the delivery thread: that thread goes on here. */
  int mine = log_thread_running && pthread_equal(log_thread, me);
  for (log_queue *q = log_queues; q; q = q->next) {
    log_free_messages(q);
    q->dropped = 0;
    if (q->delivering && !pthread_equal(q->deliverer, me)) q->delivering = 0; /* its thread is not here */
  }
  if (!mine) log_thread_running = log_thread_entering = log_thread_in_python = 0;
  log_conds_init(); /* the parent's waiters do not exist here */
  profilers_after_fork();
  pthread_mutex_unlock(&log_lock);
}

/* "statsprof: MESSAGE" on fd 2, by the library's writer. Any thread,
 * without the GIL. */
static void log_to_fd2(const char *message) {
  int stalled = __atomic_load_n(&log_fd2_stalled, __ATOMIC_RELAXED);
  int rc = statsprof_log_stderr(message, stalled ? 0 : LOG_STALL_MS);
  int err = errno;
  if (rc == 0 && stalled) __atomic_store_n(&log_fd2_stalled, 0, __ATOMIC_RELAXED);
  if (rc != 0 && err == ETIMEDOUT && !stalled) __atomic_store_n(&log_fd2_stalled, 1, __ATOMIC_RELAXED);
}

/* The same with the GIL held: released around the write, unless the
 * interpreter finalizes (a thread that takes it back then may be stopped
 * for good). */
static void log_to_fd2_gil(const char *message) {
  if (Py_IsFinalizing()) {
    log_to_fd2(message);
    return;
  }
  Py_BEGIN_ALLOW_THREADS
  log_to_fd2(message);
  Py_END_ALLOW_THREADS
}

/* A queue with messages nobody delivers now. log_lock held. */
static int log_has_work(void) {
  for (log_queue *q = log_queues; q; q = q->next)
    if (!q->delivering && (q->count || q->dropped)) return 1;
  return 0;
}

static void log_deliver_all(unsigned gen);

/* The delivery thread of generation `arg`. It takes the GIL only between
 * two handshakes with the atexit callback, both under log_lock:
 * - deciding to deliver (no stop, its generation current) sets
 *   log_thread_entering; atexit, having set log_stopping, waits for it to
 *   clear without a time limit (GIL released, no lock held), so the thread
 *   gets the GIL promptly, sees the stop there and lets go of it without
 *   running Python: no thread of ours calls PyGILState_Ensure once
 *   Py_FinalizeEx began;
 * - holding the GIL, log_thread_in_python: atexit waits for that at most
 *   LOG_WAIT_MS (a handler may block), after which the thread is one more
 *   daemon thread holding a thread state, which CPython ends (3.11-3.13)
 *   or parks (3.14+) when it wants the GIL back.
 * A thread of an older generation (the interpreter finalized and was
 * initialized again since) never takes the GIL again nor touches the
 * flags of the new one. It waits with every signal blocked, and runs the
 * handlers with the importing thread's mask (a child they start inherits
 * it across exec). */
static void *log_thread_main(void *arg) {
  unsigned gen = (unsigned)(uintptr_t)arg;
  sigset_t all;
  sigfillset(&all);
  statsprof_name_thread("statsprof log delivery"); /* the profile's name for it (3.12+: it is profiled) */
  pthread_mutex_lock(&log_lock);
  for (;;) {
    while (gen == log_gen && !log_stopping && !log_finalizing && !log_has_work())
      pthread_cond_wait(&log_wake, &log_lock);
    if (gen != log_gen || log_stopping || log_finalizing || !Py_IsInitialized() || Py_IsFinalizing()) break;
    log_thread_entering = 1;
    sigset_t mask = log_py_sigmask;
    pthread_mutex_unlock(&log_lock);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    PyGILState_STATE g = PyGILState_Ensure();
    pthread_mutex_lock(&log_lock);
    /* Checked again with the GIL: atexit may have begun meanwhile. */
    int go = gen == log_gen && !log_stopping && !log_finalizing;
    if (gen == log_gen) { /* an older generation's thread leaves the new one's flags alone */
      log_thread_entering = 0;
      log_thread_in_python = go;
      pthread_cond_broadcast(&log_done);
    }
    pthread_mutex_unlock(&log_lock);
    if (go) log_deliver_all(gen);
    PyGILState_Release(g);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    pthread_mutex_lock(&log_lock);
    if (!go) break;
    if (gen == log_gen) {
      log_thread_in_python = 0;
      pthread_cond_broadcast(&log_done);
    }
  }
  if (gen == log_gen && pthread_equal(log_thread, pthread_self())) log_thread_running = 0;
  pthread_mutex_unlock(&log_lock);
  return NULL;
}

/* Starts the delivery thread unless it runs: 0, or -1. log_lock held. */
static int log_thread_start(void) {
  if (log_thread_running) return 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* it takes no signal: it inherits this mask */
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (!rc) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&log_thread, &attr, log_thread_main, (void *)(uintptr_t)log_gen);
    pthread_attr_destroy(&attr);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) return -1;
  log_thread_running = 1;
  return 0;
}

/* The library's log function: any thread, GIL or not. */
static void log_callback(void *ud, const char *message) {
  log_queue *q = ud;
  pthread_mutex_lock(&log_lock);
  /* During atexit's delivery (log_stopping) no thread: it takes what is queued. */
  if (log_finalizing || q->dead || q->gen != log_gen || !Py_IsInitialized() || Py_IsFinalizing() ||
      (!log_stopping && log_thread_start() != 0)) {
    pthread_mutex_unlock(&log_lock);
    log_to_fd2(message);
    return;
  }
  char *copy = q->count < LOG_QUEUE_CAP ? strdup(message) : NULL;
  if (copy) {
    q->msgs[(q->head + q->count) % LOG_QUEUE_CAP] = copy;
    q->count++;
  } else {
    q->dropped++;
  }
  pthread_cond_signal(&log_wake);
  pthread_mutex_unlock(&log_lock);
}

/* A queue for a new profiler: dead (to fd 2) in a sub-interpreter, or once
 * the interpreter finalizes. GIL held. */
static log_queue *log_queue_new(void) {
  log_queue *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->refs = 1;
  int sub = PyInterpreterState_Get() != PyInterpreterState_Main();
  pthread_mutex_lock(&log_lock);
  q->dead = sub || log_finalizing;
  q->gen = log_gen;
  q->next = log_queues;
  if (log_queues) log_queues->prev = q;
  log_queues = q;
  pthread_mutex_unlock(&log_lock);
  return q;
}

/* Drops a reference; the last frees the queue. GIL held. */
static void log_queue_release(log_queue *q) {
  pthread_mutex_lock(&log_lock);
  int last = --q->refs == 0;
  if (last) {
    if (q->prev) q->prev->next = q->next;
    else log_queues = q->next;
    if (q->next) q->next->prev = q->prev;
    log_free_messages(q);
  }
  pthread_mutex_unlock(&log_lock);
  if (!last) return;
  Py_XDECREF(q->target);
  free(q);
}

/* logging.getLogger("statsprof").warning(text), the logger looked up now.
 * 1: logged; 0: logging would drop it (the logger disabled; no handler and
 * no logging.lastResort); -1 with an exception. To lastResort (no handler)
 * the message goes as "statsprof: MESSAGE", as on fd 2. */
static int log_to_logging(PyObject *text) {
  int rc = -1;
  PyObject *logging = PyImport_ImportModule("logging");
  PyObject *logger = logging ? PyObject_CallMethod(logging, "getLogger", "s", "statsprof") : NULL;
  PyObject *disabled = logger ? PyObject_GetAttrString(logger, "disabled") : NULL;
  PyObject *has = NULL, *last = NULL, *msg = NULL;
  int off = disabled ? PyObject_IsTrue(disabled) : -1;
  if (off == 1) rc = 0;
  if (off == 0) has = PyObject_CallMethod(logger, "hasHandlers", NULL);
  int handled = has ? PyObject_IsTrue(has) : -1;
  if (handled == 1) msg = Py_NewRef(text);
  if (handled == 0) last = PyObject_GetAttrString(logging, "lastResort");
  if (last == Py_None) rc = 0;
  else if (last) msg = PyUnicode_FromFormat("statsprof: %U", text);
  if (msg) {
    PyObject *r = PyObject_CallMethod(logger, "warning", "O", msg);
    rc = r ? 1 : -1;
    Py_XDECREF(r);
  }
  Py_XDECREF(msg);
  Py_XDECREF(last);
  Py_XDECREF(has);
  Py_XDECREF(disabled);
  Py_XDECREF(logger);
  Py_XDECREF(logging);
  return rc;
}

/* The exception set now, taken (a new reference, or NULL): on 3.11
 * normalized, its traceback on it. */
static PyObject *exc_take(void) {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (!type) return NULL;
  PyErr_NormalizeException(&type, &value, &tb);
  if (value && tb) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  return value;
#endif
}

/* Sets it as the exception (steals it; NULL: none). */
static void exc_set(PyObject *exc) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(exc);
#else
  if (!exc) {
    PyErr_Clear();
    return;
  }
  PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Raises `exc` (stolen) in place of the exception set, if any, which
 * becomes its context. */
static void exc_raise_over(PyObject *exc) {
  PyObject *old = exc_take();
  if (old && old != exc) PyException_SetContext(exc, old); /* steals old */
  else Py_XDECREF(old);
  exc_set(exc);
}

/* Hands one message to the queue's target. GIL held, no exception set.
 * With `raised` (the delivery runs inside a call of the application's, on
 * its thread), an exception out of the handler that is no Exception
 * (KeyboardInterrupt, SystemExit) is taken into *raised for the caller to
 * raise; otherwise it is reported as unraisable. Either way the message
 * then goes to fd 2. */
static void log_emit(log_queue *q, const char *message, PyObject **raised) {
  pthread_mutex_lock(&log_lock);
  int fd2 = log_finalizing || q->dead || q->gen != log_gen;
  pthread_mutex_unlock(&log_lock);
  if (fd2) {
    log_to_fd2_gil(message);
    return;
  }
  PyObject *target = Py_XNewRef(q->target);
  PyObject *text = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "backslashreplace");
  int rc = -1;
  if (text && target) {
    PyObject *r = PyObject_CallOneArg(target, text);
    rc = r ? 1 : -1;
    Py_XDECREF(r);
  } else if (text) {
    rc = log_to_logging(text);
  }
  if (rc < 0 && raised && !PyErr_ExceptionMatches(PyExc_Exception)) *raised = exc_take();
  else if (rc < 0) PyErr_WriteUnraisable(target);
  if (rc <= 0) log_to_fd2_gil(message);
  Py_XDECREF(text);
  Py_XDECREF(target);
}

/* Delivers the messages queued now, then the count of those dropped (all
 * of them, also what comes meanwhile, once the Profiler let go of the
 * queue: its handle is destroyed, nothing more comes). Nothing while the
 * queue is being delivered: by this thread (a handler's own call on the
 * profiler: the outer delivery goes on) or by another, which goes on with
 * what is left; with `wait`, another's delivery is first waited for (GIL
 * released, at most LOG_WAIT_MS), then what is left delivered here. What
 * comes meanwhile is left to the delivery thread. With `raised`, a
 * KeyboardInterrupt or SystemExit out of a handler ends the delivery (the
 * rest stays queued) and is put there for the caller. GIL held; the
 * caller's exception, if any, is kept. */
static void log_deliver(log_queue *q, int wait, PyObject **raised) {
  if (!q) return;
  pthread_t me = pthread_self();
  pthread_mutex_lock(&log_lock);
  if (wait && q->delivering && !pthread_equal(q->deliverer, me) && !Py_IsFinalizing()) {
    pthread_mutex_unlock(&log_lock);
    Py_BEGIN_ALLOW_THREADS
    struct timespec deadline = log_deadline(LOG_WAIT_MS);
    pthread_mutex_lock(&log_lock);
    while (q->delivering && pthread_cond_timedwait(&log_done, &log_lock, &deadline) != ETIMEDOUT) continue;
    pthread_mutex_unlock(&log_lock);
    Py_END_ALLOW_THREADS
    pthread_mutex_lock(&log_lock);
  }
  if (q->delivering || (!q->count && !q->dropped)) {
    pthread_mutex_unlock(&log_lock);
    return;
  }
  q->delivering = 1;
  q->deliverer = me;
  q->refs++; /* a Profiler.__init__ may let go of it meanwhile */
  unsigned n = q->count;
  pthread_mutex_unlock(&log_lock);
  PyObject *saved = exc_take();
  PyObject *exc = NULL;
  for (;;) {
    char *msg = NULL, note[96] = "";
    pthread_mutex_lock(&log_lock);
    /* A dead queue takes no more messages (they go to fd 2 directly), so
     * its rest is drained here too: a delivery in progress as atexit made
     * it dead leaves nothing for a thread that is gone. */
    if ((n || q->orphan || q->dead) && q->count) {
      if (n) n--;
      msg = q->msgs[q->head];
      q->head = (q->head + 1) % LOG_QUEUE_CAP;
      q->count--;
    } else if (!q->count && q->dropped) { /* after the messages that came before them */
      snprintf(note, sizeof note, "%llu messages dropped (the log queue was full)", q->dropped);
      q->dropped = 0;
    }
    pthread_mutex_unlock(&log_lock);
    if (!msg && !note[0]) break;
    log_emit(q, msg ? msg : note, raised ? &exc : NULL);
    free(msg);
    if (note[0] || exc) break;
  }
  pthread_mutex_lock(&log_lock);
  q->delivering = 0;
  pthread_cond_broadcast(&log_done);
  if (q->count || q->dropped) pthread_cond_signal(&log_wake);
  pthread_mutex_unlock(&log_lock);
  log_queue_release(q);
  exc_set(saved);
  if (raised) *raised = exc;
}

/* Delivers every queue of generation `gen`, not waiting for another
 * thread's; stops if another generation began. GIL held. */
static void log_deliver_all(unsigned gen) {
  pthread_mutex_lock(&log_lock);
  log_queue *q = gen == log_gen ? log_queues : NULL;
  if (q) q->refs++;
  pthread_mutex_unlock(&log_lock);
  while (q) {
    log_deliver(q, 0, NULL);
    pthread_mutex_lock(&log_lock);
    log_queue *next = gen == log_gen ? q->next : NULL;
    if (next) next->refs++;
    pthread_mutex_unlock(&log_lock);
    log_queue_release(q);
    q = next;
  }
}

/* atexit: the interpreter begins to finalize. */
static PyObject *mod_finalizing(PyObject *m, PyObject *unused) {
  if (PyInterpreterState_Get() != PyInterpreterState_Main()) Py_RETURN_NONE;
  pthread_mutex_lock(&log_lock);
  log_stopping = 1; /* the thread takes the GIL no more */
  pthread_cond_broadcast(&log_wake);
  int busy = log_thread_entering || log_thread_in_python;
  unsigned gen = log_gen;
  pthread_mutex_unlock(&log_lock);
  if (busy) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&log_lock);
    /* Taking the GIL (log_thread_main): without a time limit, as it gets
     * it as soon as it is free, and lets go of it at once, seeing the
     * stop. Given up, it could take it as Py_FinalizeEx frees what it
     * needs. */
    while (log_thread_entering && !Py_IsFinalizing()) pthread_cond_wait(&log_done, &log_lock);
    /* In a handler: at most LOG_WAIT_MS, a handler may block. */
    struct timespec deadline = log_deadline(LOG_WAIT_MS);
    while (log_thread_in_python && pthread_cond_timedwait(&log_done, &log_lock, &deadline) != ETIMEDOUT) continue;
    pthread_mutex_unlock(&log_lock);
    Py_END_ALLOW_THREADS
  }
  log_deliver_all(gen); /* logging is whole yet */
  pthread_mutex_lock(&log_lock);
  log_finalizing = 1;
  for (log_queue *q = log_queues; q; q = q->next) q->dead = 1;
  pthread_mutex_unlock(&log_lock);
  log_deliver_all(gen); /* what came meanwhile: to fd 2 */
  /* The targets belong to this interpreter: dropped now (their messages go
   * to fd 2), one at a time, as a DECREF may run code that makes or frees
   * profilers. */
  for (;;) {
    PyObject *target = NULL;
    pthread_mutex_lock(&log_lock);
    for (log_queue *q = log_queues; q && !target; q = q->next) {
      if (q->gen != gen) continue; /* an older interpreter's object: not ours to touch */
      target = q->target;
      q->target = NULL;
    }
    pthread_mutex_unlock(&log_lock);
    if (!target) break;
    Py_DECREF(target);
  }
  Py_RETURN_NONE;
}

/* Py_AtExit: Py_FinalizeEx ended, without the atexit callback if it did
 * not run (the module imported by another atexit callback, atexit._clear,
 * ...): every queue dead, the thread ends; the next module_exec begins a
 * new generation. No Python here. */
static void log_ll_exit(void) {
  pthread_mutex_lock(&log_lock);
  log_finalizing = log_stopping = 1;
  for (log_queue *q = log_queues; q; q = q->next) q->dead = 1;
  log_ll_armed = 0;
  log_ll_ended = 1;
  pthread_cond_broadcast(&log_wake);
  pthread_mutex_unlock(&log_lock);
}

/* Whether this interpreter's finalization began (threading's shutdown
 * ran: its atexit callbacks, or any later, run now), as when the module is
 * first imported by an atexit callback or a __del__ run by Py_FinalizeEx.
 * Not seen: an atexit callback importing it where threading was never
 * imported before. GIL held. */
static int log_finalization_began(void) {
  if (Py_IsFinalizing()) return 1;
  PyObject *threading = PyDict_GetItemString(PyImport_GetModuleDict(), "threading"); /* borrowed */
  PyObject *flag = threading && PyModule_Check(threading) ? PyObject_GetAttrString(threading, "_SHUTTING_DOWN") : NULL;
  int began = flag && PyBool_Check(flag) && flag == Py_True;
  Py_XDECREF(flag);
  PyErr_Clear();
  return began;
}

/* ---- Profiler ---------------------------------------------------------- */

typedef struct ProfilerObject {
  PyObject_HEAD
  statsprof *p;
  PyThread_type_lock lock; /* held by the thread whose library call runs */
  unsigned long owner;     /* that thread's ident, until it let go of the lock; 0 when none */
  int depth;               /* the owner's calls in progress (nested: reentrant) */
  int closing;             /* close() came during one: the last to end destroys */
  log_queue *log;          /* the library's messages, until they reach Python */
  struct ProfilerObject *prev, *next; /* every Profiler, for the fork child (log_lock) */
} ProfilerObject;

static ProfilerObject *profilers; /* log_lock */

/* The fork child (log_child, log_lock held): a call another thread of the
 * parent had in progress never ends here, and its lock would be held for
 * ever. A fresh lock; the old one is left, as CPython leaves its own
 * locks at fork (_PyThread_at_fork_reinit): a thread may have been inside
 * it. The forking thread's own call goes on. */
static void profilers_after_fork(void) {
  unsigned long me = PyThread_get_thread_ident();
  for (ProfilerObject *o = profilers; o; o = o->next) {
    /* Not only a lock with an owner: a thread that took it in a wait's
     * slice sets owner only once it has the GIL back, which it never gets
     * here. Nothing else runs in the child, so any lock but ours is free. */
    if (o->owner == me) continue;
    PyThread_type_lock fresh = PyThread_allocate_lock();
    if (!fresh) continue; /* out of memory in the child: calls on it wait */
    o->lock = fresh;
    o->owner = 0;
    o->depth = o->closing = 0;
  }
}

/* The module's state: its two types, heap types made by module_exec (one
 * pair per module object: per interpreter, and made anew in one that
 * Py_Initialize began again, where static types kept the finalized
 * interpreter's dict, MRO and subclasses). */
typedef struct {
  PyTypeObject *profiler_type;
  PyTypeObject *control_type;
} module_state;

static struct PyModuleDef module_def;

static statsprof *handle(ProfilerObject *self) {
  if (!self->p || self->closing) PyErr_SetString(PyExc_ValueError, "the profiler is closed (or was never initialized)");
  return self->closing ? NULL : self->p;
}

#define LOCK_SLICE_US 100000 /* a wait for another thread's call looks at finalization this often */

/* The library refuses a call on a profiler while another runs
 * (STATSPROF_ESTATE), because some release the GIL (a flush waiting for
 * the sinks, on_full=block, the Python code that start and stop run).
 * From another thread that is only a matter of waiting: each Profiler
 * has a lock, held for the whole library call, which a call from a second
 * thread waits for with the GIL released (two threads' `with p:`, a
 * monitor thread's snapshot() during disable()). A call from the owning
 * thread itself, a signal handler or a __del__ run inside the call, would
 * wait for ever: it goes on to the library, which refuses it as before;
 * one from the Python a deferred destroy runs (unlock_profiler) raises.
 * Once the interpreter finalizes the owner, another thread, never lets go
 * (CPython ends or parks a thread that wants the GIL back then): the wait
 * looks at that between slices, and raises.
 * Returns 0, or -1 with an exception (a signal handler raised while
 * waiting). */
static int lock_profiler(ProfilerObject *self) {
  unsigned long me = PyThread_get_thread_ident();
  if (self->owner == me) {
    if (!self->depth) {
      PyErr_SetString(PyExc_RuntimeError, "called while this profiler is being closed on this thread");
      return -1;
    }
    self->depth++;
    return 0;
  }
  PyLockStatus r = PyThread_acquire_lock_timed(self->lock, 0, 0);
  while (r != PY_LOCK_ACQUIRED) {
    if (Py_IsFinalizing()) {
      PyErr_SetString(PyExc_RuntimeError, "another thread's call on this profiler never ends: the "
                                          "interpreter is finalizing");
      return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    r = PyThread_acquire_lock_timed(self->lock, LOCK_SLICE_US, 1);
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
   * the outermost call to do as it ends. The destroy runs Python: owner
   * stays set, so a call from there raises instead of waiting for itself. */
  if (self->closing) destroy_handle(self);
  PyThread_release_lock(self->lock);
  self->owner = 0;
}

/* Begins a library call: the handle, with the lock held, or NULL with an
 * exception (closed, also while this call waited for the lock; a
 * KeyboardInterrupt or SystemExit out of a log handler). */
static statsprof *begin(ProfilerObject *self) {
  PyObject *raised = NULL;
  log_deliver(self->log, 0, &raised); /* what came since the last call, before this one */
  if (raised) {
    exc_set(raised);
    return NULL;
  }
  if (!handle(self) || lock_profiler(self) < 0) return NULL;
  statsprof *p = handle(self);
  if (!p) unlock_profiler(self);
  return p;
}

/* Ends it, and delivers the messages that came meanwhile (also those of a
 * destroy a close() from inside the call left to it), unless it ends a
 * call inside another on this thread: the outer one delivers them.
 * Returns -1 with a KeyboardInterrupt or SystemExit out of a log handler
 * (in place of the call's own exception, if any: its context), for the
 * call to raise; else 0. */
static int end(ProfilerObject *self) {
  int outer = self->depth == 1;
  unlock_profiler(self);
  PyObject *raised = NULL;
  if (outer) log_deliver(self->log, 0, &raised);
  if (!raised) return 0;
  exc_raise_over(raised);
  return -1;
}

/* The Profiler lets go of a queue whose handle is destroyed: the rest of
 * its messages go to its target (also those another thread's delivery in
 * progress still has to hand over: it goes on to the end), then it is
 * released. `raised` as log_deliver. */
static void log_queue_let_go(log_queue *q, PyObject **raised) {
  pthread_mutex_lock(&log_lock);
  q->orphan = 1;
  pthread_mutex_unlock(&log_lock);
  log_deliver(q, 1, raised);
  if (raised && *raised) {
    /* A KeyboardInterrupt or SystemExit ended the delivery: the rest goes
     * to fd 2 (no Python runs for a dead queue), not freed unseen. */
    pthread_mutex_lock(&log_lock);
    q->dead = 1;
    pthread_mutex_unlock(&log_lock);
    log_deliver(q, 0, NULL);
  }
  log_queue_release(q);
}

/* Accepts any arguments, so subclasses (statsprof.Profile) choose their own. */
static PyObject *profiler_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  ProfilerObject *self = (ProfilerObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  self->p = NULL;
  self->owner = 0;
  self->depth = self->closing = 0;
  self->lock = PyThread_allocate_lock();
  self->log = log_queue_new();
  if (!self->lock || !self->log) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  pthread_mutex_lock(&log_lock);
  self->next = profilers;
  if (profilers) profilers->prev = self;
  profilers = self;
  pthread_mutex_unlock(&log_lock);
  return (PyObject *)self;
}

static int profiler_init(ProfilerObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"config", "log", NULL};
  const char *config = "sink=none";
  PyObject *log = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|zO:Profiler", kwlist, &config, &log)) return -1;
  if (self->owner == PyThread_get_thread_ident()) { /* also from the Python a deferred destroy runs */
    PyErr_SetString(PyExc_RuntimeError, "Profiler.__init__ while a call on this profiler runs");
    return -1;
  }
  if (log != Py_None && !PyCallable_Check(log)) {
    PyErr_Format(PyExc_TypeError, "log must be a callable taking the message, or None (logging), not %.100s",
                 Py_TYPE(log)->tp_name);
    return -1;
  }
  /* Delivered by a thread of the main interpreter: a callable of another
   * could not be called there. */
  if (log != Py_None && PyInterpreterState_Get() != PyInterpreterState_Main()) {
    PyErr_SetString(PyExc_RuntimeError,
                    "Profiler(log=...) in a sub-interpreter: statsprof delivers its messages in the main "
                    "interpreter only (here they go to stderr; log=None)");
    return -1;
  }
  /* A queue of the new handle's own: what the old one logged, still
   * queued or in another thread's hands, goes to the old target. */
  log_queue *nq = log_queue_new();
  if (!nq) {
    PyErr_NoMemory();
    return -1;
  }
  /* Before any message: nothing is queued yet. A dead queue (after the
   * atexit callback) keeps no target: it could outlive this interpreter. */
  if (!nq->dead) nq->target = Py_XNewRef(log == Py_None ? NULL : log);
  statsprof *p;
  int rc = statsprof_create(config, &p);
  if (rc) {
    raise_rc(rc, statsprof_errmsg(NULL));
    log_queue_let_go(nq, NULL);
    return -1;
  }
  statsprof_set_log(p, log_callback, nq);
  if (lock_profiler(self) < 0) {
    statsprof_destroy(p);
    log_queue_let_go(nq, NULL);
    return -1;
  }
  destroy_handle(self); /* __init__ called again: the new config wins */
  self->p = p;
  log_queue *old = self->log;
  self->log = nq;
  unlock_profiler(self);
  PyObject *raised = NULL;
  log_queue_let_go(old, &raised); /* the old handle's last messages, to the old target */
  if (raised) {
    exc_set(raised);
    return -1;
  }
  return 0;
}

/* The log target may refer to the profiler (a closure, a bound method of
 * the application's): a cycle the collector must see, or the profiler,
 * its sinks and their threads would live for ever. Cleared, the messages
 * go to fd 2. */
static int profiler_traverse(ProfilerObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  if (self->log) Py_VISIT(self->log->target);
  return 0;
}

static int profiler_clear(ProfilerObject *self) {
  if (!self->log) return 0;
  pthread_mutex_lock(&log_lock);
  self->log->dead = 1;
  pthread_mutex_unlock(&log_lock);
  Py_CLEAR(self->log->target);
  return 0;
}

static void profiler_dealloc(ProfilerObject *self) {
  PyObject_GC_UnTrack(self);
  pthread_mutex_lock(&log_lock);
  if (self->prev) self->prev->next = self->next;
  else if (profilers == self) profilers = self->next;
  if (self->next) self->next->prev = self->prev;
  pthread_mutex_unlock(&log_lock);
  destroy_handle(self); /* no call runs: each holds a reference */
  if (self->log) {
    PyObject *raised = NULL;
    log_queue_let_go(self->log, &raised); /* the library calls it no more */
    if (raised && PyErr_GivenExceptionMatches(raised, PyExc_KeyboardInterrupt)) {
      PyErr_SetInterrupt(); /* raised where the main thread runs Python next */
      Py_DECREF(raised);
    } else if (raised) {
      PyObject *saved = exc_take();
      exc_set(raised);
      PyErr_WriteUnraisable(NULL);
      exc_set(saved);
    }
  }
  if (self->lock) PyThread_free_lock(self->lock);
  PyTypeObject *type = Py_TYPE(self); /* a heap type: each instance holds a reference */
  type->tp_free((PyObject *)self);
  Py_DECREF(type);
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
  if (end(self) < 0) Py_CLEAR(r);
  return r;
}

/* tick and frame_mark: 1 or 0 as a bool. */
static PyObject *call_bool(ProfilerObject *self, int (*fn)(statsprof *)) {
  statsprof *p = begin(self);
  if (!p) return NULL;
  int rc = fn(p);
  PyObject *r = rc < 0 ? raise_rc(rc, statsprof_errmsg(p)) : PyBool_FromLong(rc);
  if (end(self) < 0) Py_CLEAR(r);
  return r;
}

static PyObject *profiler_start(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_start); }

static PyObject *profiler_stop(ProfilerObject *self, PyObject *unused) { return call(self, statsprof_stop); }

static PyObject *profiler_close(ProfilerObject *self, PyObject *unused) {
  if (self->owner == PyThread_get_thread_ident()) {
    /* Inside this thread's call: it destroys as it ends (or destroys now). */
    if (self->p) self->closing = 1;
    Py_RETURN_NONE;
  }
  /* Also when closed: another thread's close may be destroying it (self->p
   * is NULL then), and returns once its sinks are flushed. */
  if (lock_profiler(self) < 0) return NULL;
  if (!self->p) {
    unlock_profiler(self);
    Py_RETURN_NONE;
  }
  destroy_handle(self);
  unlock_profiler(self);
  PyObject *raised = NULL;
  log_deliver(self->log, 1, &raised); /* all of them: the library calls it no more */
  if (raised) {
    exc_set(raised);
    return NULL;
  }
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
  if (end(self) < 0 && !rc) {
    statsprof_stats_profile_free(s);
    return NULL;
  }
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

static PyType_Slot profiler_slots[] = {
    {Py_tp_dealloc, profiler_dealloc},
    {Py_tp_traverse, profiler_traverse},
    {Py_tp_clear, profiler_clear},
    {Py_tp_doc, (void *)"Profiler(config='sink=none', log=None)\n--\n\n"
            "A statsprof profiler. `config` is the library's config string "
            "(e.g. 'interval=1s;sink=jsonl:out.jsonl'); None means the library defaults. "
            "A bad config raises ValueError naming the offending text. The library's "
            "messages (a sink failing, ...) go to `log`, a callable taking the message "
            "string (main interpreter only), or with None to logging.getLogger('statsprof')"
            ".warning, looked up at each message; where logging would drop it (the logger "
            "disabled, or no handler and no logging.lastResort) it goes to fd 2. They are "
            "delivered by a thread of the module's (the library's threads only queue them), "
            "at the start and end of each call on the profiler, and at close(); once the "
            "interpreter finalizes, to fd 2."},
    {Py_tp_methods, profiler_methods},
    {Py_tp_init, profiler_init},
    {Py_tp_new, profiler_new},
    {0, NULL},
};

/* Immutable, as a static type is. */
static PyType_Spec profiler_spec = {
    .name = "statsprof._statsprof.Profiler",
    .basicsize = sizeof(ProfilerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = profiler_slots,
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

/* The Profiler type of the module that made `control`'s type; NULL with
 * an exception where there is none (the module cleared as its
 * interpreter finalizes). */
static PyTypeObject *profiler_type_of(PyObject *control) {
  PyObject *m = PyType_GetModuleByDef(Py_TYPE(control), &module_def); /* borrowed */
  module_state *st = m ? PyModule_GetState(m) : NULL;
  if (st && st->profiler_type) return st->profiler_type;
  if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "statsprof._statsprof is finalized");
  return NULL;
}

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
  PyTypeObject *profiler_type = profiler_type_of(callable);
  if (!profiler_type) return NULL;
  if (nargs < 1 || !PyObject_TypeCheck(args[0], profiler_type)) {
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
  PyTypeObject *profiler_type = profiler_type_of(descr);
  if (!profiler_type) return NULL;
  if (!PyObject_TypeCheck(obj, profiler_type)) {
    PyErr_Format(PyExc_TypeError, "%s() belongs on a Profiler subclass", op_names[c->op]);
    return NULL;
  }
  ControlObject *b = PyObject_GC_New(ControlObject, Py_TYPE(descr)); /* the Control type: not subclassed */
  if (!b) return NULL;
  b->op = c->op;
  b->self = Py_NewRef(obj);
  b->vectorcall = control_vectorcall;
  PyObject_GC_Track(b);
  return (PyObject *)b;
}

static int control_traverse(ControlObject *c, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(c));
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
  PyTypeObject *type = Py_TYPE(c);
  type->tp_free((PyObject *)c);
  Py_DECREF(type);
}

static PyObject *control_repr(ControlObject *c) {
  if (c->self) return PyUnicode_FromFormat("<statsprof control %s of %R>", op_names[c->op], c->self);
  return PyUnicode_FromFormat("<statsprof control %s>", op_names[c->op]);
}

/* The vectorcall offset of a type made from a spec. */
#if PY_VERSION_HEX >= 0x030C0000
#define MEMBER_PYSSIZET Py_T_PYSSIZET
#define MEMBER_READONLY Py_READONLY
#else
#define MEMBER_PYSSIZET T_PYSSIZET
#define MEMBER_READONLY READONLY
#endif

static PyMemberDef control_members[] = {
    {"__vectorcalloffset__", MEMBER_PYSSIZET, offsetof(ControlObject, vectorcall), MEMBER_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot control_slots[] = {
    {Py_tp_dealloc, control_dealloc},
    {Py_tp_members, control_members},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, control_repr},
    {Py_tp_doc, (void *)"Control(op)\n--\n\n"
            "A Profiler method that the profile does not see: op is 'start', 'stop', "
            "'enter' (start, return the profiler) or 'exit' (stop, return False). "
            "Put it in a Profiler subclass's body."},
    {Py_tp_traverse, control_traverse},
    {Py_tp_clear, control_clear},
    {Py_tp_descr_get, control_get},
    {Py_tp_new, control_new},
    {0, NULL},
};

static PyType_Spec control_spec = {
    .name = "statsprof._statsprof.Control",
    .basicsize = sizeof(ControlObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = control_slots,
};

/* ---- module ------------------------------------------------------------ */

static PyObject *mod_strerror(PyObject *m, PyObject *arg) {
  int rc; /* OverflowError outside an int, rather than another code's text */
  if (!PyArg_Parse(arg, "i:strerror", &rc)) return NULL;
  return PyUnicode_FromString(statsprof_strerror(rc));
}

static PyMethodDef module_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(code)\n--\n\nThe library's text for an error code."},
    {"_finalizing", mod_finalizing, METH_NOARGS,
     "_finalizing()\n--\n\nThe atexit callback: stops the log thread, delivers the queued log messages; "
     "later ones go to fd 2."},
    {NULL, NULL, 0, NULL},
};

/* A type made from a spec has its vectorcall offset as a member in its
 * dict; the static Control had none, and tp_vectorcall_offset is set
 * already: taken out. */
static int hide_vectorcalloffset(PyTypeObject *t) {
  if (PyDict_DelItemString(t->tp_dict, "__vectorcalloffset__") < 0) {
    if (!PyErr_ExceptionMatches(PyExc_KeyError)) return -1;
    PyErr_Clear();
  }
  PyType_Modified(t);
  return 0;
}

static int module_exec(PyObject *m) {
  module_state *st = PyModule_GetState(m);
  if (!st) return -1;
  st->profiler_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &profiler_spec, NULL);
  if (!st->profiler_type) return -1;
  st->control_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &control_spec, NULL);
  if (!st->control_type || hide_vectorcalloffset(st->control_type) < 0) return -1;
  if (PyModule_AddType(m, st->profiler_type) < 0 || PyModule_AddType(m, st->control_type) < 0) return -1;
  unsigned v = statsprof_version();
  PyObject *version = PyUnicode_FromFormat("%u.%u.%u", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  if (!version || PyModule_AddObject(m, "version", version) < 0) {
    Py_XDECREF(version);
    return -1;
  }
  pthread_once(&log_once, log_init_once);
  if (PyInterpreterState_Get() != PyInterpreterState_Main()) return 0;
  int began = log_finalization_began();
  pthread_mutex_lock(&log_lock);
  if (log_ll_ended) {
    /* Py_FinalizeEx ran since the last exec: an interpreter initialized
     * again, by a host that embeds it. A new generation: the old delivery
     * thread (waiting, or in a handler its atexit gave up on) takes the
     * GIL no more and leaves the new queues and flags alone; the next
     * message starts another. */
    log_gen++;
    log_execs = 0;
    log_atexit_registered = 0;
    log_ll_ended = 0;
    log_finalizing = log_stopping = 0;
    log_thread_running = log_thread_entering = log_thread_in_python = 0;
    pthread_cond_broadcast(&log_wake);
  }
  /* Executed again in this interpreter (a new module object, as importlib.reload
   * does nothing to it) nothing is reset: after the atexit callback the
   * queues stay dead. */
  int first = log_execs++ == 0;
  if (first) pthread_sigmask(SIG_BLOCK, NULL, &log_py_sigmask); /* the importing thread's */
  if (began) {
    /* The atexit callback would never run (registered too late): every
     * message to fd 2, no thread takes the GIL. */
    log_finalizing = log_stopping = 1;
    for (log_queue *q = log_queues; q; q = q->next) q->dead = 1;
    pthread_cond_broadcast(&log_wake);
  }
  /* Without it (Py_AtExit's slots all taken) a re-initialization looks
   * like the same interpreter: messages to fd 2 after it, safely. */
  if (!log_ll_armed && Py_AtExit(log_ll_exit) == 0) log_ll_armed = 1;
  int registered = log_atexit_registered;
  pthread_mutex_unlock(&log_lock);
  if (registered || began) return 0; /* registered already (a failed exec retried registers); or it would never run */
  /* logging first: its atexit callback (shutdown) then runs after ours. */
  PyObject *logging = PyImport_ImportModule("logging");
  PyObject *atexit = logging ? PyImport_ImportModule("atexit") : NULL;
  PyObject *fn = atexit ? PyObject_GetAttrString(m, "_finalizing") : NULL;
  PyObject *r = fn ? PyObject_CallMethod(atexit, "register", "O", fn) : NULL;
  Py_XDECREF(logging);
  Py_XDECREF(atexit);
  Py_XDECREF(fn);
  if (!r) return -1;
  Py_DECREF(r);
  pthread_mutex_lock(&log_lock);
  log_atexit_registered = 1;
  pthread_mutex_unlock(&log_lock);
  return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  module_state *st = PyModule_GetState(m);
  if (st) {
    Py_VISIT(st->profiler_type);
    Py_VISIT(st->control_type);
  }
  return 0;
}

static int module_clear(PyObject *m) {
  module_state *st = PyModule_GetState(m);
  if (st) {
    Py_CLEAR(st->profiler_type);
    Py_CLEAR(st->control_type);
  }
  return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "statsprof._statsprof",
    .m_doc = "The statsprof C library (statsprof.h) for Python; see the statsprof package.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__statsprof(void) { return PyModuleDef_Init(&module_def); }
