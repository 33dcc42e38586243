// subinterp_test.cc — a host that runs sub-interpreters (Py_NewInterpreter,
// PyThreadState_Swap, Py_EndInterpreter; on 3.12+ also
// Py_NewInterpreterFromConfig with a GIL of its own), as mod_wsgi does,
// while a profiler runs on the main interpreter (lib/profiler.c's
// foreign_interp): the main interpreter's counts stay exact, nothing the
// sub-interpreters run is counted, and every call that needs the GIL made
// from a sub-interpreter's thread state fails with STATSPROF_ESTATE and a
// message instead of hooking that interpreter. Each scenario runs in a
// forked child (child.h), on every source: a crash or hang fails the test.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "child.h"
#include "pyharness.h"

namespace {

// Run in both interpreters under the same file name: a call the
// sub-interpreter makes that reached the main profile would raise f's
// count, or show sub_only.
const char kProgram[] = R"(import threading
def f(): pass
def gen(n):
    for i in range(n):
        f()
        yield i
def work():
    for i in range(10): f()
    for _ in gen(5): pass
def sub_only(): pass
def sub_work():
    work()
    sub_only()
    t = threading.Thread(target=work)
    t.start()
    t.join()
)";
constexpr uint64_t kFPerWork = 15;

// The sources to run each scenario on (the default source, PyEval_SetProfile,
// builtins=off, and the forced frame-evaluation source where it runs).
std::vector<std::string> Configs() {
  std::vector<std::string> c = {"sink=none", "sink=none;source=setprofile", "sink=none;builtins=off"};
  if (pyh::EvalFrameRuns()) c.push_back("sink=none;source=evalframe;builtins=off");
  return c;
}

// Execs kProgram in a fresh namespace of the current interpreter; returns
// it (new reference) or nullptr with *err set.
PyObject *Load(std::string *err) {
  PyObject *ns = PyDict_New();
  PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *name = PyUnicode_FromString("subinterp");
  PyDict_SetItemString(ns, "__name__", name);
  Py_XDECREF(name);
  PyObject *co = Py_CompileString(kProgram, "subinterp.py", Py_file_input);
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : nullptr;
  Py_XDECREF(co);
  if (r) {
    Py_DECREF(r);
    return ns;
  }
  *err += "kProgram raised\n";
  PyErr_Print();
  Py_DECREF(ns);
  return nullptr;
}

// ns[name](); "" or what went wrong.
std::string Call(PyObject *ns, const char *name) {
  PyObject *fn = ns ? PyDict_GetItemString(ns, name) : nullptr;
  PyObject *r = fn ? PyObject_CallNoArgs(fn) : nullptr;
  if (r) {
    Py_DECREF(r);
    return "";
  }
  if (PyErr_Occurred()) PyErr_Print();
  return std::string(name) + "() raised\n";
}

// A sub-interpreter that runs sub_work; the caller's thread state is
// current again on return.
std::string RunSubInterpreter() {
  PyThreadState *main_ts = PyThreadState_Get();
  PyThreadState *sub = Py_NewInterpreter();
  if (!sub) {
    PyThreadState_Swap(main_ts);
    return "Py_NewInterpreter failed\n";
  }
  std::string err;
  PyObject *ns = Load(&err);
  err += Call(ns, "sub_work");
  Py_XDECREF(ns);
  Py_EndInterpreter(sub);
  PyThreadState_Swap(main_ts);
  return err;
}

uint64_t Calls(statsprof *p, const char *name, std::string *err) {
  statsprof_stats_profile *s = nullptr;
  int rc = statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s);
  if (rc) {
    *err += std::string("snapshot: ") + statsprof_errmsg(p) + "\n";
    return ~0ull;
  }
  uint64_t n = 0;
  for (size_t i = 0; i < s->nfunc_profiles; i++)
    if (!strcmp(s->func_profiles[i].function_name, name)) n += s->func_profiles[i].ncalls;
  statsprof_stats_profile_free(s);
  return n;
}

// What the main interpreter ran (`works` calls of work) is exactly what the
// profile holds, and nothing of the sub-interpreters'.
void CheckMainCounts(statsprof *p, uint64_t works, child::Problems *pr) {
  std::string err;
  uint64_t f = Calls(p, "f", &err), w = Calls(p, "work", &err), s = Calls(p, "sub_only", &err);
  pr->Check(err.empty(), err);
  pr->Check(f == kFPerWork * works, "f: " + std::to_string(f) + " calls, want " + std::to_string(kFPerWork * works));
  pr->Check(w == works, "work: " + std::to_string(w) + " calls, want " + std::to_string(works));
  pr->Check(s == 0, "sub_only (run only in sub-interpreters) counted " + std::to_string(s) + " times");
}

statsprof *Started(const std::string &config, child::Problems *pr) {
  statsprof *p = nullptr;
  if (statsprof_create(config.c_str(), &p) != 0) {
    pr->Check(false, config + ": create: " + statsprof_errmsg(nullptr));
    return nullptr;
  }
  if (statsprof_start(p) != 0) {
    pr->Check(false, config + ": start: " + statsprof_errmsg(p));
    statsprof_destroy(p);
    return nullptr;
  }
  return p;
}

// A host C thread that runs interpreters while the main one is profiled.
struct HostThread {
  statsprof *p = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0};
  std::string err;  // the thread's own, read after the join
};

// Its body for scenario 1: sub-interpreters sharing the GIL.
void *SubLoop(void *arg) {
  HostThread *h = static_cast<HostThread *>(arg);
  while (!h->stop) {
    PyGILState_STATE g = PyGILState_Ensure();
    h->err += RunSubInterpreter();
    PyGILState_Release(g);
    h->runs++;
  }
  return nullptr;
}

void SleepMs(int ms) {
  Py_BEGIN_ALLOW_THREADS;
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, nullptr);
  Py_END_ALLOW_THREADS;
}

// The main interpreter works and ticks while `body` runs interpreters on a
// host thread, until that ran 5 of them (at least 20 rounds); then joins it.
// *works counts the calls of work. The cap of 20000 rounds (20 s and more)
// only keeps a host thread that never runs one from hanging the test: 400
// rounds were too few once under a load of 10, where a sub-interpreter can
// take longer than 80 of them.
void Beside(void *(*body)(void *), HostThread *h, PyObject *ns, uint64_t *works, std::string *err,
            child::Problems *pr) {
  pthread_t th;
  if (pthread_create(&th, nullptr, body, h) != 0) {
    pr->Check(false, "pthread_create");
    return;
  }
  for (int i = 0; i < 20000 && (i < 20 || h->runs < 5); i++) {
    *err += Call(ns, "work");
    ++*works;
    pr->Check(statsprof_tick(h->p) >= 0, "tick: " + std::string(statsprof_errmsg(h->p)));
    SleepMs(1);
  }
  h->stop = true;
  Py_BEGIN_ALLOW_THREADS;
  pthread_join(th, nullptr);
  Py_END_ALLOW_THREADS;
  pr->Check(h->runs >= 5, "the host thread ran " + std::to_string(h->runs) + " interpreters");
  pr->Check(h->err.empty(), h->err);
}

// Runs scenario(config) in `runs` forked children per source.
void InChildren(std::string (*scenario)(const std::string &), int runs) {
  for (const std::string &config : Configs())
    for (int run = 0; run < runs; run++) {
      std::string problems = child::Run([&] { return scenario(config); }, 120);
      ASSERT_TRUE(problems.empty()) << problems;
    }
}

// Scenario 1: sub-interpreters come and go, on the profiled thread and on
// a host thread, while the main interpreter runs and ticks.
std::string MainCountsSurvive(const std::string &config) {
  child::Problems pr;
  statsprof *p = Started(config + ";interval=1ms;per_thread=on", &pr);
  if (!p) return pr.text;
  std::string err;
  PyObject *ns = Load(&err);
  uint64_t works = 0;
  for (int i = 0; i < 20 && ns; i++) {
    err += Call(ns, "work");
    works++;
    err += RunSubInterpreter();
    err += Call(ns, "work");
    works++;
    pr.Check(statsprof_tick(p) >= 0, "tick: " + std::string(statsprof_errmsg(p)));
  }
  HostThread h;
  h.p = p;
  Beside(SubLoop, &h, ns, &works, &err, &pr);
  pr.Check(err.empty(), err);
  CheckMainCounts(p, works, &pr);
  pr.Check(statsprof_stop(p) == 0, "stop: " + std::string(statsprof_errmsg(p)));
  CheckMainCounts(p, works, &pr);
  statsprof_destroy(p);
  Py_XDECREF(ns);
  return pr.text.empty() ? "" : config + ":\n" + pr.text;
}

TEST(SubInterp, MainInterpretersCountsSurviveSubInterpreters) { InChildren(MainCountsSurvive, 3); }

// A call from a sub-interpreter: STATSPROF_ESTATE, saying so.
void ExpectRefused(statsprof *p, int rc, const char *fn, child::Problems *pr) {
  std::string msg = statsprof_errmsg(p);
  pr->Check(rc == STATSPROF_ESTATE && msg.find(fn) != std::string::npos &&
                msg.find("sub-interpreter") != std::string::npos,
            std::string(fn) + " from a sub-interpreter returned " + std::to_string(rc) + " (" + msg +
                "), want STATSPROF_ESTATE naming the sub-interpreter");
}

// Scenario 2: every call that needs the GIL, made while a sub-interpreter's
// thread state is current, changes nothing.
std::string CallsFromSubInterpreter(const std::string &config) {
  child::Problems pr;
  pyh::LogLines log;
  statsprof *p = Started(config + ";interval=1ms", &pr);
  if (!p) return pr.text;
  statsprof_set_log(p, pyh::LogLines::Fn, &log);
  std::string err;
  PyObject *ns = Load(&err);
  err += Call(ns, "work");
  PyThreadState *main_ts = PyThreadState_Get();
  PyThreadState *sub = Py_NewInterpreter();
  if (!sub) {
    PyThreadState_Swap(main_ts);
    return "Py_NewInterpreter failed";
  }
  PyObject *sub_ns = Load(&err);
  SleepMs(2);  // a record is due
  ExpectRefused(p, statsprof_tick(p), "statsprof_tick", &pr);
  ExpectRefused(p, statsprof_emit_now(p), "statsprof_emit_now", &pr);
  statsprof_stats_profile *s = nullptr;
  ExpectRefused(p, statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s), "statsprof_snapshot", &pr);
  pr.Check(s == nullptr, "snapshot from a sub-interpreter returned a record");
  statsprof_stats_profile_free(s);
  ExpectRefused(p, statsprof_snapshot_thread(p, STATSPROF_DELTA, PyThread_get_thread_ident(), &s),
                "statsprof_snapshot_thread", &pr);
  statsprof_stats_profile_free(s);
  ExpectRefused(p, statsprof_attach_thread(p), "statsprof_attach_thread", &pr);
  ExpectRefused(p, statsprof_start(p), "statsprof_start", &pr);
  ExpectRefused(p, statsprof_frame_mark(p), "statsprof_frame_mark", &pr);
  ExpectRefused(p, statsprof_reset(p), "statsprof_reset", &pr);
  ExpectRefused(p, statsprof_flush(p), "statsprof_flush", &pr);
  ExpectRefused(p, statsprof_stop(p), "statsprof_stop", &pr);
  pr.Check(statsprof_is_running(p), "stop from a sub-interpreter stopped the profiler");
  // A sink added from there would be raced by the main interpreter's
  // records (an interpreter with its own GIL runs beside them).
  static const statsprof_sink_ops kNoSink = {STATSPROF_SINK_VERSION, "nosink",
                                             [](void *, const statsprof_stats_profile *) { return 0; }};
  ExpectRefused(p, statsprof_add_sink(p, &kNoSink, nullptr), "statsprof_add_sink", &pr);
  statsprof_set_log(p, nullptr, nullptr);  // refused: log keeps receiving the lines below
  // destroy cannot fail: it leaves the profiler alive and logs why.
  statsprof_destroy(p);
  pr.Check(log.Has("statsprof_destroy: called from a sub-interpreter"),
           "destroy from a sub-interpreter did not log that it left the profiler alive:\n" + log.All());
  err += Call(sub_ns, "sub_work");
  Py_XDECREF(sub_ns);
  Py_EndInterpreter(sub);
  PyThreadState_Swap(main_ts);
  err += Call(ns, "work");
  pr.Check(err.empty(), err);
  pr.Check(statsprof_is_running(p), "the profiler stopped");
  CheckMainCounts(p, 2, &pr);
  pr.Check(statsprof_tick(p) >= 0, "tick back on the main interpreter: " + std::string(statsprof_errmsg(p)));
  pr.Check(statsprof_stop(p) == 0, "stop: " + std::string(statsprof_errmsg(p)));
  CheckMainCounts(p, 2, &pr);
  log.dead = true;
  statsprof_destroy(p);
  pr.Check(log.after_death == 0, "logged after destroy");
  // The sources were given back: a new profiler starts and counts.
  statsprof *q = Started(config, &pr);
  if (q) {
    err += Call(ns, "work");
    CheckMainCounts(q, 1, &pr);
    statsprof_destroy(q);
  }
  pr.Check(err.empty(), err);
  Py_XDECREF(ns);
  return pr.text.empty() ? "" : config + ":\n" + pr.text;
}

TEST(SubInterp, CallsFromASubInterpreterAreRefused) { InChildren(CallsFromSubInterpreter, 3); }

// Scenario 3: a profiler started inside a sub-interpreter (refused), the
// sub-interpreter ended, the profiler destroyed from the main interpreter;
// then one on the main interpreter counts exactly.
std::string StartInSubInterpreter(const std::string &config) {
  child::Problems pr;
  std::string err;
  PyThreadState *main_ts = PyThreadState_Get();
  PyThreadState *sub = Py_NewInterpreter();
  if (!sub) {
    PyThreadState_Swap(main_ts);
    return "Py_NewInterpreter failed";
  }
  statsprof *p = nullptr;
  pr.Check(statsprof_create(config.c_str(), &p) == 0, "create in a sub-interpreter");
  ExpectRefused(p, statsprof_start(p), "statsprof_start", &pr);
  PyObject *sub_ns = Load(&err);
  err += Call(sub_ns, "sub_work");
  Py_XDECREF(sub_ns);
  Py_EndInterpreter(sub);
  PyThreadState_Swap(main_ts);
  statsprof_destroy(p);
  PyObject *ns = Load(&err);
  statsprof *q = Started(config, &pr);
  if (q) {
    err += Call(ns, "work");
    CheckMainCounts(q, 1, &pr);
    pr.Check(statsprof_stop(q) == 0, "stop: " + std::string(statsprof_errmsg(q)));
    statsprof_destroy(q);
  }
  pr.Check(err.empty(), err);
  Py_XDECREF(ns);
  return pr.text.empty() ? "" : config + ":\n" + pr.text;
}

TEST(SubInterp, StartInASubInterpreterIsRefused) { InChildren(StartInSubInterpreter, 3); }

#if PY_VERSION_HEX >= 0x030C0000
// 3.12+: a host thread runs an interpreter with a GIL of its own, truly in
// parallel with the main interpreter, and calls the profiler from it.
void *OwnGilLoop(void *arg) {
  HostThread *o = static_cast<HostThread *>(arg);
  while (!o->stop) {
    // As CPython's own tests do: a main-interpreter thread state to
    // start from, detached before the new interpreter takes its GIL.
    PyGILState_STATE g = PyGILState_Ensure();
    PyThreadState *main_ts = PyThreadState_Swap(nullptr);
    PyThreadState *sub = nullptr;
    PyInterpreterConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.allow_threads = 1;
    cfg.check_multi_interp_extensions = 1;
    cfg.gil = PyInterpreterConfig_OWN_GIL;
    PyStatus st = Py_NewInterpreterFromConfig(&sub, &cfg);
    if (PyStatus_Exception(st) || !sub) {
      o->err += "Py_NewInterpreterFromConfig failed\n";
      PyThreadState_Swap(main_ts);
      PyGILState_Release(g);
      return nullptr;
    }
    PyObject *ns = Load(&o->err);
    o->err += Call(ns, "sub_work");
    // Refused without touching the profiler the main thread is using (its
    // message is this thread's), so that nothing races.
    int rc = statsprof_tick(o->p);
    if (rc != STATSPROF_ESTATE || !strstr(statsprof_errmsg(o->p), "statsprof_tick: called from a sub-interpreter"))
      o->err += "tick from an own-GIL interpreter: " + std::to_string(rc) + " " + statsprof_errmsg(o->p) + "\n";
    rc = statsprof_attach_thread(o->p);
    if (rc != STATSPROF_ESTATE || !strstr(statsprof_errmsg(o->p), "statsprof_attach_thread: called from a sub"))
      o->err += "attach_thread from an own-GIL interpreter: " + std::to_string(rc) + " " + statsprof_errmsg(o->p) + "\n";
    Py_XDECREF(ns);
    Py_EndInterpreter(sub);
    PyThreadState_Swap(main_ts);
    PyGILState_Release(g);
    o->runs++;
  }
  return nullptr;
}

std::string OwnGilInterpreters(const std::string &config) {
  child::Problems pr;
  statsprof *p = Started(config + ";interval=1ms", &pr);
  if (!p) return pr.text;
  std::string err;
  PyObject *ns = Load(&err);
  HostThread h;
  h.p = p;
  uint64_t works = 0;
  Beside(OwnGilLoop, &h, ns, &works, &err, &pr);
  pr.Check(err.empty(), err);
  CheckMainCounts(p, works, &pr);
  pr.Check(statsprof_stop(p) == 0, "stop: " + std::string(statsprof_errmsg(p)));
  statsprof_destroy(p);
  Py_XDECREF(ns);
  return pr.text.empty() ? "" : config + ":\n" + pr.text;
}

TEST(SubInterp, InterpretersWithTheirOwnGilRunBeside) { InChildren(OwnGilInterpreters, 1); }
#endif

}  // namespace

