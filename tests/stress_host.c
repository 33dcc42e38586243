/* stress_host.c — a host that embeds CPython and drives statsprof through
 * the situations that used to crash or hang it: C threads entering and
 * leaving Python while records are cut, Python threads that start and exit
 * while the profiler attaches, signal handlers that start and stop the
 * profiler, fork with a timer, start and stop while other threads run Python,
 * frame markers while a slow sink holds the timer's records, Py_Finalize's
 * last garbage collection under a running profiler, a flush without the GIL
 * once a sub-interpreter existed.
 * Each scenario exits 0 when it ran through and
 * its counts were right; a crash or a hang is the failure that
 * threadstate_stress_test.cc looks for (it runs every scenario in a
 * subprocess, many times).
 *
 *   stress_host SCENARIO [ITERATIONS]
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "statsprof.h"
#include "../lib/internal.h" /* thread-records: how many slots the table holds */

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "stress_host: " __VA_ARGS__);        \
      fprintf(stderr, " [%s:%d]\n", __FILE__, __LINE__);   \
      exit(3);                                             \
    }                                                      \
  } while (0)

static statsprof *g_p;
static PyObject *g_ns;
static int g_iterations = 200;

static PyObject *ns_get(const char *name) {
  PyObject *o = PyDict_GetItemString(g_ns, name);
  CHECK(o, "no %s in the namespace", name);
  return o;
}

static void call0(const char *name) {
  PyObject *r = PyObject_CallNoArgs(ns_get(name));
  if (!r) PyErr_Print();
  CHECK(r, "%s() raised", name);
  Py_DECREF(r);
}

static void exec_code(const char *code) {
  g_ns = PyDict_New();
  PyDict_SetItemString(g_ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *co = Py_CompileString(code, "stress.py", Py_file_input);
  PyObject *r = co ? PyEval_EvalCode(co, g_ns, g_ns) : NULL;
  if (!r) PyErr_Print();
  CHECK(r, "the scenario's code did not run");
  Py_DECREF(r);
  Py_DECREF(co);
}

static uint64_t calls_of(const char *name) {
  statsprof_stats_profile *s = NULL;
  CHECK(statsprof_snapshot(g_p, STATSPROF_CUMULATIVE, &s) == 0, "snapshot: %s", statsprof_errmsg(g_p));
  uint64_t n = 0;
  for (size_t i = 0; i < s->nfunc_profiles; i++)
    if (!strcmp(s->func_profiles[i].function_name, name) && !strcmp(s->func_profiles[i].file_name, "stress.py"))
      n += s->func_profiles[i].ncalls;
  statsprof_stats_profile_free(s);
  return n;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void create_start(const char *config) {
  CHECK(statsprof_create(config, &g_p) == 0, "create: %s", statsprof_errmsg(NULL));
  CHECK(statsprof_start(g_p) == 0, "start: %s", statsprof_errmsg(g_p));
}

/* ---- C threads: PyGILState_Ensure / a few calls / Release, in a loop --- */

static const char kWork[] =
    "def leaf(): pass\n"
    "def work():\n"
    "    for i in range(3): leaf()\n";

enum { NWORKERS = 4 };
static int g_attach;

static void *ensure_worker(void *arg) {
  (void)arg;
  for (int i = 0; i < g_iterations; i++) {
    PyGILState_STATE g = PyGILState_Ensure();
    if (g_attach) CHECK(statsprof_attach_thread(g_p) == 0, "attach: %s", statsprof_errmsg(g_p));
    call0("work");
    PyGILState_Release(g);
  }
  return NULL;
}

/* The main thread cuts a record every millisecond (tick) or leaves it to the
 * timer, while the workers churn thread states. */
static int scenario_ensure(const char *mode) {
  g_attach = strstr(mode, "attach") != NULL;
  int timer = strstr(mode, "timer") != NULL;
  /* setprofile: each record's attach walks the thread-state list (the
   * default source on 3.11; on 3.12+ sys.monitoring needs no walk). */
  int setprofile = strstr(mode, "setprofile") != NULL;
  exec_code(kWork);
  char config[128];
  snprintf(config, sizeof config, "sink=none;interval=1ms;per_thread=on%s%s", timer ? ";trigger=timer" : "",
           setprofile ? ";source=setprofile" : "");
  create_start(config);
  pthread_t th[NWORKERS];
  PyThreadState *ts = PyEval_SaveThread();
  for (int i = 0; i < NWORKERS; i++) CHECK(pthread_create(&th[i], NULL, ensure_worker, NULL) == 0, "thread");
  int joined[NWORKERS] = {0}, left = NWORKERS;
  while (left) {
    PyEval_RestoreThread(ts);
    if (!timer) statsprof_tick(g_p);
    ts = PyEval_SaveThread();
    sleep_us(200);
    for (int i = 0; i < NWORKERS; i++)
      if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0) joined[i] = 1, left--;
  }
  PyEval_RestoreThread(ts);
  statsprof_stop(g_p);
  uint64_t leaf = calls_of("leaf");
  if (g_attach)
    CHECK(leaf == (uint64_t)NWORKERS * g_iterations * 3, "leaf: %llu calls, want %d", (unsigned long long)leaf,
          NWORKERS * g_iterations * 3);
  statsprof_destroy(g_p);
  return 0;
}

/* ---- a signal handler that starts and stops the profiler --------------- */

static PyObject *py_enable(PyObject *self, PyObject *unused) {
  statsprof_start(g_p); /* may fail while busy: never crash */
  Py_RETURN_NONE;
}

static PyObject *py_disable(PyObject *self, PyObject *unused) {
  statsprof_stop(g_p);
  Py_RETURN_NONE;
}

static PyObject *py_tick(PyObject *self, PyObject *unused) {
  statsprof_tick(g_p);
  Py_RETURN_NONE;
}

static PyMethodDef kControl[] = {
    {"enable", py_enable, METH_NOARGS, NULL},
    {"disable", py_disable, METH_NOARGS, NULL},
    {"tick", py_tick, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* enable(), disable() and tick() for the scenario's Python code. */
static void add_controls(void) {
  for (PyMethodDef *m = kControl; m->ml_name; m++) {
    PyObject *f = PyCFunction_New(m, NULL);
    PyDict_SetItemString(g_ns, m->ml_name, f);
    Py_DECREF(f);
  }
}

/* ---- Python threads that start and exit while records attach ---------- */

static const char kChurn[] =
    "import threading\n"
    "def leaf(): pass\n"
    "def body():\n"
    "    for i in range(5): leaf()\n"
    "def batch():\n"
    "    ts = [threading.Thread(target=body) for i in range(8)]\n"
    "    for t in ts:\n"
    "        t.start()\n"
    "        tick()\n"
    "    for t in ts: t.join()\n";

static int scenario_churn(const char *mode) {
  int timer = strstr(mode, "timer") != NULL;
  exec_code(kChurn);
  add_controls();
  create_start(timer ? "sink=none;interval=1ms;trigger=timer;per_thread=on" : "sink=none;interval=1ms;per_thread=on");
  for (int i = 0; i < g_iterations; i++) {
    call0("batch");
    statsprof_tick(g_p);
  }
  statsprof_stop(g_p);
  uint64_t leaf = calls_of("leaf");
  CHECK(leaf == (uint64_t)g_iterations * 8 * 5, "leaf: %llu calls, want %d", (unsigned long long)leaf,
        g_iterations * 8 * 5);
  statsprof_destroy(g_p);
  return 0;
}

static const char kSignal[] =
    "import signal\n"
    "n = [0]\n"
    "def handler(signum, frame):\n"
    "    n[0] += 1\n"
    "    (disable if n[0] % 2 else enable)()\n"
    "def leaf(): pass\n"
    "def main():\n"
    "    signal.signal(signal.SIGALRM, handler)\n"
    "    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)\n"
    "    enable()\n"
    "    for i in range(20000): leaf()\n"
    "    signal.setitimer(signal.ITIMER_REAL, 0, 0)\n"
    "    disable()\n";

static int scenario_signal(const char *mode) {
  (void)mode;
  exec_code(kSignal);
  add_controls();
  CHECK(statsprof_create("sink=none", &g_p) == 0, "create");
  call0("main");
  statsprof_destroy(g_p);
  return 0;
}

/* ---- fork with a timer ------------------------------------------------- */

/* Forks the way CPython asks an embedding host to; the child runs `child`
 * and exits with its status; the parent waits (GIL released) and checks
 * the child exited 0. */
static void fork_and_check(int (*child)(void), int round) {
  PyOS_BeforeFork();
  pid_t pid = fork();
  if (pid == 0) {
    PyOS_AfterFork_Child();
    _exit(child());
  }
  PyOS_AfterFork_Parent();
  CHECK(pid > 0, "fork");
  int st;
  PyThreadState *ts = PyEval_SaveThread();
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  PyEval_RestoreThread(ts);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %d", round, st);
}

/* The child counts only its own calls, and stops. */
static int fork_timer_child(void) {
  call0("work");
  statsprof_stop(g_p);
  uint64_t leaf = calls_of("leaf");
  statsprof_destroy(g_p);
  return leaf == 3 ? 0 : 4;
}

static int scenario_fork_timer(const char *mode) {
  (void)mode;
  exec_code(kWork);
  create_start("sink=none;interval=1ms;trigger=timer");
  for (int i = 0; i < g_iterations; i++) {
    call0("work");
    fork_and_check(fork_timer_child, i);
  }
  statsprof_destroy(g_p);
  return 0;
}

/* ---- a prefork server: enabled in the parent, workers in the child ------ */

static const char kServer[] =
    "import threading\n"
    "def handler(): return sum(range(10))\n"
    "def rename(n): threading.current_thread().name = n\n";

enum { NREQUESTS = 500 };
static pthread_barrier_t g_done, g_release;
static unsigned long g_idents[NWORKERS];

static void *server_worker(void *arg) {
  int index = (int)(intptr_t)arg;
  char name[32];
  snprintf(name, sizeof name, "worker-%d", index);
  /* Half the workers name themselves through statsprof, half through
   * threading: both must reach the thread records. */
  if (index % 2) CHECK(statsprof_name_thread(name) == 0, "name_thread");
  for (int i = 0; i < NREQUESTS; i++) {
    PyGILState_STATE g = PyGILState_Ensure();
    CHECK(statsprof_attach_thread(g_p) == 0, "attach in the child: %s", statsprof_errmsg(g_p));
    if (i == 0 && index % 2 == 0) {
      PyObject *r = PyObject_CallFunction(ns_get("rename"), "s", name);
      CHECK(r, "rename");
      Py_DECREF(r);
    }
    call0("handler");
    g_idents[index] = PyThread_get_thread_ident();
    PyGILState_Release(g);
  }
  pthread_barrier_wait(&g_done);
  pthread_barrier_wait(&g_release); /* alive while the main thread reads names */
  return NULL;
}

static void check_thread_name(int index) {
  char want[32];
  snprintf(want, sizeof want, "worker-%d", index);
  statsprof_stats_profile *s = NULL;
  CHECK(statsprof_snapshot_thread(g_p, STATSPROF_CUMULATIVE, g_idents[index], &s) == 0, "snapshot_thread: %s",
        statsprof_errmsg(g_p));
  CHECK(s->thread_name && !strcmp(s->thread_name, want), "thread %d is named %s", index,
        s->thread_name ? s->thread_name : "(none)");
  uint64_t n = 0;
  for (size_t i = 0; i < s->nfunc_profiles; i++)
    if (!strcmp(s->func_profiles[i].function_name, "handler")) n += s->func_profiles[i].ncalls;
  CHECK(n == NREQUESTS, "thread %d: %llu handler calls", index, (unsigned long long)n);
  statsprof_stats_profile_free(s);
}

static int run_server_child(void) {
  pthread_barrier_init(&g_done, NULL, NWORKERS + 1);
  pthread_barrier_init(&g_release, NULL, NWORKERS + 1);
  pthread_t th[NWORKERS];
  PyThreadState *ts = PyEval_SaveThread();
  for (int i = 0; i < NWORKERS; i++)
    CHECK(pthread_create(&th[i], NULL, server_worker, (void *)(intptr_t)i) == 0, "thread");
  pthread_barrier_wait(&g_done);
  PyEval_RestoreThread(ts);
  uint64_t handled = calls_of("handler");
  CHECK(handled == NWORKERS * NREQUESTS, "the child counted %llu handler calls, want %d",
        (unsigned long long)handled, NWORKERS * NREQUESTS);
  for (int i = 0; i < NWORKERS; i++) check_thread_name(i);
  ts = PyEval_SaveThread();
  pthread_barrier_wait(&g_release);
  for (int i = 0; i < NWORKERS; i++) pthread_join(th[i], NULL);
  PyEval_RestoreThread(ts);
  statsprof_stop(g_p);
  statsprof_destroy(g_p);
  Py_XDECREF(g_ns);
  return Py_FinalizeEx() == 0 ? 0 : 5;
}

/* The app enables the profiler at import in the parent (timer trigger),
 * calls its handler there, then forks a worker that serves from C threads:
 * the child must count exactly its own calls and name its threads. */
static int scenario_prefork(const char *mode) {
  (void)mode;
  exec_code(kServer);
  create_start("sink=none;interval=1ms;trigger=timer;per_thread=on");
  for (int i = 0; i < 7; i++) call0("handler");
  fork_and_check(run_server_child, 0);
  CHECK(calls_of("handler") == 7, "the parent counted %llu handler calls", (unsigned long long)calls_of("handler"));
  statsprof_destroy(g_p);
  return 0;
}

/* ---- per-thread records: bounded by live threads ------------------------ */

static const char kManyThreads[] =
    "import threading\n"
    "def leaf(): pass\n"
    "def body():\n"
    "    for i in range(5): leaf()\n"
    "def batch(n):\n"
    "    ts = [threading.Thread(target=body) for i in range(n)]\n"
    "    for t in ts: t.start()\n"
    "    for t in ts: t.join()\n"
    "gate = threading.Barrier(81)\n"
    "def together():\n"
    "    leaf(); gate.wait()\n"
    "def crowd():\n"
    "    ts = [threading.Thread(target=together) for i in range(80)]\n"
    "    for t in ts: t.start()\n"
    "    leaf(); gate.wait()\n"
    "    for t in ts: t.join()\n";

typedef struct {
  uint64_t merged_leaf, thread_leaf; /* this interval */
  int thread_records;
  uint64_t omitted;
  uint64_t total_leaf;
  int mismatches;
} tally;

static uint64_t leaf_calls(const statsprof_stats_profile *r) {
  uint64_t n = 0;
  for (size_t i = 0; i < r->nfunc_profiles; i++)
    if (!strcmp(r->func_profiles[i].function_name, "leaf")) n += r->func_profiles[i].ncalls;
  return n;
}

/* writer=sync: thread records of an interval come after its merged one. */
static int tally_emit(void *ctx, const statsprof_stats_profile *r) {
  tally *t = ctx;
  if (r->thread_id) {
    t->thread_leaf += leaf_calls(r);
    t->thread_records++;
    return 0;
  }
  t->merged_leaf = leaf_calls(r);
  t->total_leaf += t->merged_leaf;
  t->omitted = r->threads_omitted;
  t->thread_leaf = 0;
  t->thread_records = 0;
  return 0;
}

static const statsprof_sink_ops kTallyOps = {.version = STATSPROF_SINK_VERSION, .name = "tally", .emit = tally_emit};

/* 2000 short-lived threads in batches of 8, a record after each batch: the
 * thread records of each interval add up to its merged record, and the
 * table keeps a slot per live thread, not per thread ever seen. Then 80
 * threads at once: 64 thread records and the rest counted as omitted. */
static int scenario_thread_records(const char *mode) {
  (void)mode;
  exec_code(kManyThreads);
  tally t = {0};
  CHECK(statsprof_create("sink=none;interval=0;per_thread=on;writer=sync", &g_p) == 0, "create");
  CHECK(statsprof_add_sink(g_p, &kTallyOps, &t) == 0, "add_sink");
  CHECK(statsprof_start(g_p) == 0, "start: %s", statsprof_errmsg(g_p));
  uint32_t most_slots = 0;
  for (int i = 0; i < g_iterations; i++) {
    PyObject *r = PyObject_CallFunction(ns_get("batch"), "i", 8);
    CHECK(r, "batch");
    Py_DECREF(r);
    CHECK(statsprof_emit_now(g_p) == 0, "emit");
    CHECK(t.thread_leaf == t.merged_leaf, "interval %d: thread records count %llu leaf calls, the merged %llu", i,
          (unsigned long long)t.thread_leaf, (unsigned long long)t.merged_leaf);
    if (g_p->table.nslots > most_slots) most_slots = g_p->table.nslots;
  }
  CHECK(t.total_leaf == (uint64_t)g_iterations * 8 * 5, "%llu leaf calls in all", (unsigned long long)t.total_leaf);
  /* 8 workers + the main thread + the retired slot; a worker that has not
   * quite exited when its batch's record is cut keeps its slot one more. */
  CHECK(most_slots <= 2 * 8 + 2, "the table grew to %u slots for %d threads", most_slots, g_iterations * 8);
  call0("crowd");
  CHECK(statsprof_emit_now(g_p) == 0, "emit");
  CHECK(t.thread_records == 64, "%d thread records for 81 threads", t.thread_records);
  CHECK(t.omitted == 81 - 64, "threads_omitted %llu", (unsigned long long)t.omitted);
  statsprof_destroy(g_p);
  return 0;
}

/* ---- start and stop while other threads run Python ---------------------- */

static const char kBusy[] =
    "import threading\n"
    "def leaf(): pass\n"
    "def gen():\n"
    "    for i in range(3): yield leaf()\n"
    "class Obj:\n"
    "    def __init__(self, i): self.i = i\n"
    "def work():\n"
    "    for i in range(3): leaf()\n"
    "    for x in gen(): pass\n"
    "    Obj(1)\n"
    "    def __init__(self, i): pass\n" /* a function made: 3.13's evalframe watches those */
    "stop = threading.Event()\n"
    "def spin():\n"
    "    while not stop.is_set(): work()\n"
    "spinners = [threading.Thread(target=spin) for i in range(2)]\n"
    "def start_spinners():\n"
    "    for t in spinners: t.start()\n"
    "def stop_spinners():\n"
    "    stop.set()\n"
    "    for t in spinners: t.join()\n";

static atomic_int g_busy_stop;

/* A C thread that enters Python again and again, never attaching: the
 * sources that see every thread count it from its first call. */
static void *busy_worker(void *arg) {
  (void)arg;
  while (!atomic_load(&g_busy_stop)) {
    PyGILState_STATE g = PyGILState_Ensure();
    call0("work");
    PyGILState_Release(g);
  }
  return NULL;
}

/* builtins=off (on 3.11.4+ the frame-evaluation source, elsewhere the
 * default one): the main thread creates, starts, calls, stops and destroys
 * a profiler ITERATIONS times while two Python threads and two C threads
 * run Python the whole time, so that stop and destroy meet frames still
 * running on other threads. With "-duty", production-mode windows open and
 * close on every tick as well. With "-ef", the frame-evaluation source
 * forced (3.12+; on 3.13 with __init__ functions counted through
 * sys.monitoring, whose local events, function watcher and class walk come
 * and go with each run and window while the other threads call Obj() and
 * make functions); where it does not count exactly (3.11.0-3.11.3) the
 * start must be refused instead. Each run must count exactly the main
 * thread's own calls. */
static int scenario_startstop(const char *mode) {
  int duty = strstr(mode, "duty") != NULL, ef = strstr(mode, "-ef") != NULL;
  char config[160];
  snprintf(config, sizeof config, "sink=none;builtins=off%s%s", ef ? ";source=evalframe" : "",
           duty ? ";duty=50%;window=200us" : "");
  if (ef && Py_Version < 0x030B04F0) {
    CHECK(statsprof_create(config, &g_p) == 0, "create: %s", statsprof_errmsg(NULL));
    CHECK(statsprof_start(g_p) == STATSPROF_ESTATE && strstr(statsprof_errmsg(g_p), "gh-104405"),
          "source=evalframe on %lx: want the documented refusal, got: %s", Py_Version, statsprof_errmsg(g_p));
    statsprof_destroy(g_p);
    g_p = NULL;
    return 0;
  }
  exec_code(kBusy);
  call0("start_spinners");
  pthread_t th[2];
  for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, busy_worker, NULL) == 0, "thread");
  for (int i = 0; i < g_iterations; i++) {
    create_start(config);
    for (int k = 0; k < 5; k++) {
      call0("work");
      statsprof_tick(g_p);
      PyThreadState *ts = PyEval_SaveThread();
      sleep_us(50);
      PyEval_RestoreThread(ts);
    }
    CHECK(statsprof_stop(g_p) == 0, "stop: %s", statsprof_errmsg(g_p));
    statsprof_stats_profile *s = NULL;
    CHECK(statsprof_snapshot_thread(g_p, STATSPROF_CUMULATIVE, PyThread_get_thread_ident(), &s) == 0,
          "snapshot_thread: %s", statsprof_errmsg(g_p));
    uint64_t leaf = 0;
    for (size_t f = 0; f < s->nfunc_profiles; f++)
      if (!strcmp(s->func_profiles[f].function_name, "leaf")) leaf += s->func_profiles[f].ncalls;
    statsprof_stats_profile_free(s);
    CHECK(duty ? leaf <= 5 * 6 : leaf == 5 * 6, "run %d: the main thread's leaf: %llu calls, want %s30", i,
          (unsigned long long)leaf, duty ? "at most " : "");
    statsprof_destroy(g_p);
    g_p = NULL;
  }
  atomic_store(&g_busy_stop, 1);
  PyThreadState *ts = PyEval_SaveThread();
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  PyEval_RestoreThread(ts);
  call0("stop_spinners");
  return 0;
}

/* ---- frame markers while the timer's records wait on a stalling sink -- */

/* A host sink that stalls up to 2 ms per record (a slow network, a disk's
 * retries) and keeps what the records said about frames. */
typedef struct stall_sink {
  pthread_mutex_t mu;
  unsigned seed;
  uint64_t frames; /* frame_stats.frames over the delta records */
  uint64_t spikes, last_spike_frame;
  int out_of_order, closed;
} stall_sink;

static int stall_emit(void *ctx, const statsprof_stats_profile *rec) {
  stall_sink *s = ctx;
  pthread_mutex_lock(&s->mu);
  long us = rand_r(&s->seed) % 2000;
  if (rec->kind == STATSPROF_RECORD_SPIKE) {
    if (rec->frame <= s->last_spike_frame) s->out_of_order = 1;
    s->last_spike_frame = rec->frame;
    s->spikes++;
  } else if (rec->kind == STATSPROF_RECORD_DELTA) {
    s->frames += rec->frame_stats.frames;
  }
  pthread_mutex_unlock(&s->mu);
  sleep_us(us);
  return 0;
}

static void stall_close(void *ctx) {
  stall_sink *s = ctx;
  pthread_mutex_lock(&s->mu);
  s->closed = 1;
  pthread_mutex_unlock(&s->mu);
}

static const statsprof_sink_ops kStallOps = {
    .version = STATSPROF_SINK_VERSION, .name = "stall", .emit = stall_emit, .close = stall_close};

/* The main thread marks frames while two Python threads run and the timer
 * cuts a record every millisecond into a queue of one, whose sink stalls
 * up to 2 ms: the timer's record often waits for room, GIL released, and
 * the marks then come inside it. Every frame must still be counted once
 * in the delta records (marks - 1: the first mark only starts the first
 * frame), every spike statsprof_frame_mark reported must arrive, in frame
 * order, and the host's snapshots meanwhile succeed or say the profiler
 * is busy. */
static int scenario_frames_stall(const char *mode) {
  (void)mode;
  exec_code(kBusy);
  call0("start_spinners");
  for (int i = 0; i < g_iterations; i++) {
    stall_sink s = {.mu = PTHREAD_MUTEX_INITIALIZER, .seed = (unsigned)i + 1};
    CHECK(statsprof_create("sink=none;trigger=timer;interval=1ms;on_full=block;queue=1;budget=300us;"
                           "max_spikes_per_min=100000",
                           &g_p) == 0,
          "create: %s", statsprof_errmsg(NULL));
    CHECK(statsprof_add_sink(g_p, &kStallOps, &s) == 0, "add_sink: %s", statsprof_errmsg(g_p));
    CHECK(statsprof_start(g_p) == 0, "start: %s", statsprof_errmsg(g_p));
    uint64_t marks = 0, spiked = 0;
    for (int k = 0; k < 100; k++) {
      call0("work");
      int rc = statsprof_frame_mark(g_p);
      CHECK(rc == 0 || rc == 1, "frame_mark returned %d: %s", rc, statsprof_errmsg(g_p));
      marks++;
      spiked += (uint64_t)rc;
      if (k % 10 == 5) {
        PyThreadState *ts = PyEval_SaveThread();
        sleep_us(300);
        PyEval_RestoreThread(ts);
      }
      if (k % 25 == 0) {
        statsprof_stats_profile *snap = NULL;
        int src = statsprof_snapshot(g_p, STATSPROF_CUMULATIVE, &snap);
        CHECK(src == 0 || src == STATSPROF_ESTATE, "snapshot returned %d: %s", src, statsprof_errmsg(g_p));
        statsprof_stats_profile_free(snap);
      }
    }
    CHECK(statsprof_stop(g_p) == 0, "stop: %s", statsprof_errmsg(g_p));
    statsprof_destroy(g_p);
    g_p = NULL;
    pthread_mutex_lock(&s.mu);
    CHECK(s.closed, "run %d: the sink was not closed by destroy", i);
    CHECK(s.frames == marks - 1, "run %d: the records counted %llu frames, want %llu", i,
          (unsigned long long)s.frames, (unsigned long long)(marks - 1));
    CHECK(s.spikes == spiked, "run %d: %llu spike records arrived, frame_mark reported %llu", i,
          (unsigned long long)s.spikes, (unsigned long long)spiked);
    CHECK(!s.out_of_order, "run %d: spike records out of frame order", i);
    pthread_mutex_unlock(&s.mu);
  }
  call0("stop_spinners");
  return 0;
}

/* ---- Py_Finalize's last collection runs Python code under the profiler --
 *
 * finalize-gc[-setprofile|-off]: a profiler (the default source, setprofile,
 * or builtins=off's) still running at Py_Finalize (left to it)
 * on a thread named by the host: each new function the thread reaches then
 * looks in sys.modules for threading's name of it. Py_Finalize's last garbage collection, after sys.modules is
 * gone, runs __del__ methods that call functions new to the thread: looking
 * up sys.modules there was "Fatal Python error: PyImport_GetModuleDict". */
static const char kFinalizeGc[] =
    "import sys\n"
    "class Bomb:\n"
    "    def __del__(self):\n"
    "        late_one()\n"
    "def late_one():\n"
    "    return late_two()\n"
    "def late_two():\n"
    "    return 1\n"
    "def arm():\n"
    "    keep = []\n"
    "    for i in range(20):\n"
    "        b = Bomb()\n"
    "        b.me = b\n"
    "        keep.append(b)\n"
    "    sys.statsprof_keep = keep\n";

static int scenario_finalize_gc(const char *mode) {
  const char *variant = mode + strlen("finalize-gc");
  const char *config = !strcmp(variant, "-setprofile") ? "sink=none;interval=1h;source=setprofile"
                       : !strcmp(variant, "-off")      ? "sink=none;interval=1h;builtins=off"
                                                       : "sink=none;interval=1h";
  CHECK(statsprof_name_thread("host-main") == 0, "name_thread");
  exec_code(kFinalizeGc);
  create_start(config);
  call0("arm");
  return 0; /* Py_Finalize with g_p running (main) */
}

/* ---- a sub-interpreter existed: who holds the GIL? ---------------------
 *
 * subinterp-flush: once a sub-interpreter has been created, CPython's
 * PyGILState_Check answers 1 on every thread. statsprof_flush from a thread
 * that released the GIL, while a slow sink still works on a record, then
 * "released" the GIL it did not hold (PyEval_SaveThread without a thread
 * state: a fatal error on 3.11 and 3.12, a crash on 3.13). */
static int slow_emit(void *ctx, const statsprof_stats_profile *rec) {
  (void)ctx;
  (void)rec;
  sleep_us(5000);
  return 0;
}

static const statsprof_sink_ops kSlowOps = {.version = STATSPROF_SINK_VERSION, .name = "slow", .emit = slow_emit};

static int scenario_subinterp_flush(const char *mode) {
  (void)mode;
  exec_code(kWork);
  PyThreadState *main_ts = PyThreadState_Get();
  PyThreadState *sub = Py_NewInterpreter();
  CHECK(sub, "Py_NewInterpreter");
  Py_EndInterpreter(sub);
  PyThreadState_Swap(main_ts);
  create_start("sink=none;interval=1h");
  CHECK(statsprof_add_sink(g_p, &kSlowOps, NULL) == 0, "add_sink: %s", statsprof_errmsg(g_p));
  for (int i = 0; i < g_iterations; i++) {
    call0("work");
    CHECK(statsprof_emit_now(g_p) == 0, "emit_now: %s", statsprof_errmsg(g_p));
    PyThreadState *ts = PyEval_SaveThread();
    int rc = statsprof_flush(g_p);
    PyEval_RestoreThread(ts);
    CHECK(rc == 0, "flush without the GIL: %s", statsprof_errmsg(g_p));
  }
  statsprof_destroy(g_p);
  g_p = NULL;
  return 0;
}

/* ---- destroyed in a forked child before its timer came back ------------
 *
 * fork-destroy: an after_in_child handler registered before statsprof's
 * destroys a trigger=timer profiler in the child of os.fork(), before
 * statsprof's own handler would start its timer thread again. The timer's
 * atexit handler stayed registered, pointing into the freed profiler (read
 * at the child's exit); the child checks that its handler object is gone. */
static const char kForkDestroy[] =
    "import gc, os\n"
    "state = {}\n"
    "def arm(destroy):\n"
    "    state['destroy'] = destroy\n"
    "    os.register_at_fork(after_in_child=lambda: state['destroy']())\n"
    "def timer_handlers():\n"
    "    return sum(1 for o in gc.get_objects() if getattr(o, '__name__', '') == '_statsprof_timer_stop')\n"
    "def fork_once():\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os._exit(0 if timer_handlers() == 0 else 7)\n"
    "    return os.waitpid(pid, 0)[1]\n";

static PyObject *destroy_g_p(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  statsprof_destroy(g_p);
  g_p = NULL;
  Py_RETURN_NONE;
}

static PyMethodDef destroy_def = {"destroy", destroy_g_p, METH_NOARGS, NULL};

static int scenario_fork_destroy(const char *mode) {
  (void)mode;
  exec_code(kForkDestroy);
  PyObject *fn = PyCFunction_New(&destroy_def, NULL);
  PyObject *r = PyObject_CallOneArg(ns_get("arm"), fn); /* before statsprof registers its own */
  Py_DECREF(fn);
  CHECK(r, "arm() raised");
  Py_DECREF(r);
  for (int i = 0; i < g_iterations; i++) {
    create_start("sink=none;trigger=timer;interval=5ms");
    PyObject *st = PyObject_CallNoArgs(ns_get("fork_once"));
    CHECK(st, "fork_once() raised");
    long status = PyLong_AsLong(st);
    Py_DECREF(st);
    CHECK(status == 0, "run %d: the child's wait status is %ld (7 << 8: a timer atexit handler outlived the profiler)",
          i, status);
    statsprof_destroy(g_p);
    g_p = NULL;
  }
  return 0;
}

/* ---- fork while another thread names itself ----------------------------
 *
 * fork-name: a thread renames itself and registers a sink (any thread, no
 * GIL) in a tight loop while the main thread forks; each child does both
 * too. A child forked while the name lock or the sink registry's lock was
 * held inherited it held: it hung there (and in the hook, at a thread's
 * first name lookup; or opening its sinks). */
static atomic_int g_naming;

static int no_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen) {
  (void)arg, (void)ops, (void)ctx, (void)err, (void)errlen;
  return STATSPROF_ESINK;
}

static void *rename_loop(void *arg) {
  (void)arg;
  char name[32];
  for (unsigned i = 0; atomic_load(&g_naming); i++) {
    snprintf(name, sizeof name, "renamer-%u", i % 1000);
    statsprof_name_thread(name);
    statsprof_register_sink("forkname", no_open);
  }
  return NULL;
}

static int fork_name_child(void) {
  return statsprof_name_thread("child") == 0 && statsprof_register_sink("child", no_open) == 0 ? 0 : 7;
}

static int scenario_fork_name(const char *mode) {
  (void)mode;
  pthread_t th;
  atomic_store(&g_naming, 1);
  CHECK(pthread_create(&th, NULL, rename_loop, NULL) == 0, "pthread_create");
  for (int i = 0; i < g_iterations; i++) fork_and_check(fork_name_child, i);
  atomic_store(&g_naming, 0);
  pthread_join(th, NULL);
  return 0;
}

/* ---- fork during a first start's calibration ---------------------------
 *
 * fork-calibrate[-parallel]: the main thread's first start calibrates (its
 * loops run Python code, and let the GIL go) while a Python thread forks
 * every millisecond. In each child the parent's profiler must be usable and
 * a new one must start: the start in progress at fork left the profiler
 * busy for good (every call ESTATE) and calibration marked as running (every
 * later start ESTATE, "called from a signal handler?"). "-parallel": the
 * forking thread also starts a profiler of its own meanwhile, which waits
 * for the main thread's calibration instead of failing. */
static const char kForkCalibrate[] =
    "import os, threading, time\n"
    "def forker(check, stop, out):\n"
    "    while not stop.is_set():\n"
    "        pid = os.fork()\n"
    "        if pid == 0:\n"
    "            os._exit(check())\n"
    "        out.append(('child', os.waitpid(pid, 0)[1]))\n"
    "        time.sleep(0.001)\n"
    /* parallel: a third thread makes its own first start meanwhile, so
     * that two starts (one calibrating, one waiting for it) overlap the
     * forks; the forker does not wait for it (it did, and then its forks
     * could all come after the main thread's start too). */
    "def begin(check, start_own):\n"
    "    stop, out = threading.Event(), []\n"
    "    ts = [threading.Thread(target=forker, args=(check, stop, out))]\n"
    "    if start_own is not None:\n"
    "        ts.append(threading.Thread(target=lambda: out.append(('own', start_own()))))\n"
    "    for t in ts:\n"
    "        t.start()\n"
    "    time.sleep(0.01)\n"
    "    return ts, stop, out\n"
    "def end(state):\n"
    "    ts, stop, out = state\n"
    "    stop.set()\n"
    "    for t in ts:\n"
    "        t.join()\n"
    "    bad = [r for r in out if r[1] not in (0, 1 << 8, True)]\n"
    "    return bad, len(out), sum(1 for r in out if r == ('child', 0))\n";

static PyObject *fork_child_check(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  int mid_start = !g_p->running; /* forked while the first start calibrated */
  int ok = statsprof_stop(g_p) == 0; /* ESTATE while the parent's start held it */
  statsprof *q = NULL;
  ok = ok && statsprof_create("sink=none", &q) == 0 && statsprof_start(q) == 0;
  if (!ok) fprintf(stderr, "fork-calibrate child: %s / %s\n", statsprof_errmsg(g_p), q ? statsprof_errmsg(q) : "");
  statsprof_destroy(q);
  return PyLong_FromLong(!ok ? 7 : mid_start ? 0 : 1);
}

static statsprof *g_own;

static PyObject *start_own(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  int ok = statsprof_create("sink=none", &g_own) == 0 && statsprof_start(g_own) == 0;
  if (!ok) fprintf(stderr, "fork-calibrate own start: %s\n", statsprof_errmsg(g_own));
  return PyBool_FromLong(ok);
}

static PyMethodDef fork_child_check_def = {"check", fork_child_check, METH_NOARGS, NULL};
static PyMethodDef start_own_def = {"start_own", start_own, METH_NOARGS, NULL};

static int scenario_fork_calibrate(const char *mode) {
  exec_code(kForkCalibrate);
  int parallel = !strcmp(mode, "fork-calibrate-parallel");
  CHECK(statsprof_create("sink=none", &g_p) == 0, "create: %s", statsprof_errmsg(NULL));
  PyObject *check = PyCFunction_New(&fork_child_check_def, NULL);
  PyObject *own = parallel ? PyCFunction_New(&start_own_def, NULL) : Py_NewRef(Py_None);
  PyObject *state = PyObject_CallFunctionObjArgs(ns_get("begin"), check, own, NULL);
  CHECK(state, "begin() raised");
  int rc = statsprof_start(g_p); /* the first: calibrates, while the other thread forks */
  CHECK(rc == 0, "start: %s", statsprof_errmsg(g_p));
  PyObject *r = PyObject_CallOneArg(ns_get("end"), state);
  CHECK(r && PyTuple_Check(r), "end() raised");
  PyObject *bad = PyTuple_GET_ITEM(r, 0);
  CHECK(PyList_GET_SIZE(bad) == 0, "%zd of %ld forks or starts failed (a child's wait status 7 << 8: the child "
        "could not use the parent's profiler or start one)", PyList_GET_SIZE(bad), PyLong_AsLong(PyTuple_GET_ITEM(r, 1)));
  /* The first fork comes 10 ms into a calibration of 100s of ms. */
  CHECK(PyLong_AsLong(PyTuple_GET_ITEM(r, 2)) >= 1, "no fork came during the first start");
  Py_DECREF(r);
  Py_DECREF(state);
  Py_DECREF(check);
  Py_DECREF(own);
  statsprof_destroy(g_own);
  statsprof_destroy(g_p);
  g_p = NULL;
  return 0;
}

/* ---- destroyed by a finalizer during CPython's frame allocation ---------
 *
 * gc-destroy[-setprofile]: with the collector's threshold at 1, every
 * profiled call's frame allocation collects, and a cyclic Bomb's __del__
 * destroys the running profiler there: CPython has already read the hook
 * and its per-thread state, which it passes on after the allocation (3.11's
 * call_trace). destroy freed that state (ASan, PYTHONMALLOC=malloc:
 * heap-use-after-free in statsprof__hook). */
static const char kBombs[] =
    "import gc, sys\n"
    "hooks = {}\n"
    "class Bomb:\n"
    "    def __del__(self):\n"
    "        hooks['destroy']()\n"
    "def leaf():\n"
    "    pass\n"
    "def calls():\n"
    "    for k in range(20):\n"
    "        leaf()\n"
    "def frames():\n"
    "    return len(sys._current_frames())\n"
    "def run(n, create, destroy, trigger):\n"
    "    hooks['destroy'] = destroy\n"
    "    old = gc.get_threshold()\n"
    "    try:\n"
    "        for i in range(n):\n"
    "            create()\n"
    "            b = Bomb()\n"
    "            b.me = b\n"
    "            del b\n"
    "            gc.set_threshold(1)\n"
    "            trigger()\n"
    "            gc.set_threshold(*old)\n"
    "            destroy()\n"
    "    finally:\n"
    "        gc.set_threshold(*old)\n";

static const char *g_gc_config;

static PyObject *gc_create(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  create_start(g_gc_config);
  Py_RETURN_NONE;
}

static PyMethodDef gc_create_def = {"create", gc_create, METH_NOARGS, NULL};

/* kBombs' run: `create` makes g_p each round, `trigger` is what collects. */
static int run_bombs(PyMethodDef *create_def, const char *trigger) {
  exec_code(kBombs);
  PyObject *create = PyCFunction_New(create_def, NULL);
  PyObject *destroy = PyCFunction_New(&destroy_def, NULL);
  PyObject *r = PyObject_CallFunction(ns_get("run"), "iOOO", g_iterations, create, destroy, ns_get(trigger));
  if (!r) PyErr_Print();
  CHECK(r, "run() raised");
  Py_DECREF(r);
  Py_DECREF(create);
  Py_DECREF(destroy);
  return 0;
}

static int scenario_gc_destroy(const char *mode) {
  g_gc_config = !strcmp(mode, "gc-destroy-setprofile") ? "sink=none;interval=1h;source=setprofile"
                                                        : "sink=none;interval=1h";
  return run_bombs(&gc_create_def, "calls");
}

/* ---- destroyed by a finalizer while CPython holds its thread-state lock --
 *
 * frames-lock-destroy: sys._current_frames() makes frame objects with
 * CPython's thread-state lock held; with the collector's threshold at 1 a
 * cyclic Bomb's __del__ then destroys a stopped profiler, whose pooled
 * states destroy checks against the thread states: taking that lock again
 * hung the thread for good. */

/* A profiler that ran and stopped: its states wait in its pool. */
static PyObject *create_stopped(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  create_start("sink=none;interval=1h;source=setprofile");
  call0("leaf");
  CHECK(statsprof_stop(g_p) == 0, "stop: %s", statsprof_errmsg(g_p));
  Py_RETURN_NONE;
}

static PyMethodDef create_stopped_def = {"create", create_stopped, METH_NOARGS, NULL};

static int scenario_frames_lock_destroy(const char *mode) {
  (void)mode;
  return run_bombs(&create_stopped_def, "frames");
}

/* ---- fork on the calibrating thread itself ------------------------------
 *
 * fork-in-calibration: a Python signal handler forks while the first start
 * calibrates on this thread (a timer signal every 2 ms, up to 8 forks,
 * some while a scratch profiler runs). Each child goes on
 * with that calibration and its start, then starts another profiler: the
 * child's copy of the calibration's scratch profiler was freed twice (by
 * the calibration, and again as left over from a calibration "on another
 * thread"): SIGSEGV or glibc's double-free abort. */
static const char kForkInCalibration[] =
    "import os, signal\n"
    "state = {'children': []}\n"
    "def on_alarm(sig, frame):\n"
    "    if len(state['children']) >= 8 or os.getpid() != state['parent']:\n"
    "        return\n"
    "    pid = os.fork()\n"
    "    if pid:\n"
    "        state['children'].append(pid)\n"
    "def arm():\n"
    "    state['parent'] = os.getpid()\n"
    "    signal.signal(signal.SIGALRM, on_alarm)\n"
    "    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)\n"
    "def disarm():\n"
    "    signal.setitimer(signal.ITIMER_REAL, 0, 0)\n"
    "    signal.signal(signal.SIGALRM, signal.SIG_DFL)\n"
    "    return os.getpid() == state['parent']\n"
    "def reap():\n"
    "    return [os.waitpid(pid, 0)[1] for pid in state['children']]\n";

static int scenario_fork_in_calibration(const char *mode) {
  (void)mode;
  exec_code(kForkInCalibration);
  call0("arm");
  CHECK(statsprof_create("sink=none", &g_p) == 0, "create: %s", statsprof_errmsg(NULL));
  int rc = statsprof_start(g_p); /* the first: calibrates; the handler forks meanwhile */
  PyObject *parent = PyObject_CallNoArgs(ns_get("disarm"));
  CHECK(parent, "disarm() raised");
  if (parent == Py_False) { /* the child, forked inside the start above */
    statsprof *q = NULL;
    int ok = rc == 0 && statsprof_create("sink=none", &q) == 0 && statsprof_start(q) == 0;
    statsprof_destroy(q);
    statsprof_destroy(g_p);
    _exit(ok ? 0 : 7);
  }
  Py_DECREF(parent);
  CHECK(rc == 0, "start: %s", statsprof_errmsg(g_p));
  PyObject *st = PyObject_CallNoArgs(ns_get("reap"));
  CHECK(st && PyList_Check(st), "reap() raised");
  CHECK(PyList_GET_SIZE(st) >= 1, "no fork came during the calibration");
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(st); i++) {
    long status = PyLong_AsLong(PyList_GET_ITEM(st, i));
    CHECK(status == 0, "child %zd's wait status is %ld (a signal number: it crashed; old code, a double free: 11 or 6)", i, status);
  }
  Py_DECREF(st);
  statsprof_destroy(g_p);
  g_p = NULL;
  return 0;
}

int main(int argc, char **argv) {
  CHECK(argc >= 2, "usage: stress_host SCENARIO [ITERATIONS]");
  if (argc >= 3) g_iterations = atoi(argv[2]);
  Py_InitializeEx(0);
  const char *s = argv[1];
  int rc;
  if (!strncmp(s, "ensure", 6)) rc = scenario_ensure(s);
  else if (!strncmp(s, "churn", 5)) rc = scenario_churn(s);
  else if (!strcmp(s, "signal")) rc = scenario_signal(s);
  else if (!strcmp(s, "fork-timer")) rc = scenario_fork_timer(s);
  else if (!strcmp(s, "prefork")) rc = scenario_prefork(s);
  else if (!strcmp(s, "thread-records")) rc = scenario_thread_records(s);
  else if (!strncmp(s, "startstop", 9)) rc = scenario_startstop(s);
  else if (!strcmp(s, "frames-stall")) rc = scenario_frames_stall(s);
  else if (!strncmp(s, "finalize-gc", 11)) rc = scenario_finalize_gc(s);
  else if (!strcmp(s, "subinterp-flush")) rc = scenario_subinterp_flush(s);
  else if (!strcmp(s, "fork-destroy")) rc = scenario_fork_destroy(s);
  else if (!strcmp(s, "fork-name")) rc = scenario_fork_name(s);
  else if (!strncmp(s, "fork-calibrate", 14)) rc = scenario_fork_calibrate(s);
  else if (!strncmp(s, "gc-destroy", 10)) rc = scenario_gc_destroy(s);
  else if (!strcmp(s, "frames-lock-destroy")) rc = scenario_frames_lock_destroy(s);
  else if (!strcmp(s, "fork-in-calibration")) rc = scenario_fork_in_calibration(s);
  else CHECK(0, "unknown scenario %s", s);
  Py_XDECREF(g_ns);
  CHECK(Py_FinalizeEx() == 0, "finalize");
  return rc;
}
