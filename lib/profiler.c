/* profiler.c — the handle: create/destroy, start/stop, tick and snapshots;
 * it composes the parts and hands their records to the writers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint32_t next_gen(void) {
  static atomic_uint gen;
  uint32_t g;
  do g = atomic_fetch_add(&gen, 1) + 1; while (g == 0);
  return g;
}

static int add_writer(statsprof *p, const statsprof_sink_ops *ops, void *ctx) {
  statsprof__sink sink = {ops, ctx};
  int rc = statsprof__writers_add(&p->writers, sink);
  if (rc == STATSPROF_ESTATE) return statsprof__error(p, rc, "statsprof_add_sink: at most %d sinks", STATSPROF__MAX_SINKS);
  if (rc) return statsprof__error(p, rc, "out of memory adding sink %s", ops->name ? ops->name : "?");
  return 0;
}

static void free_all(statsprof *p) {
  statsprof__fork_track(p, 0);
  statsprof__evalframe_release(p);
  statsprof__writers_close(&p->writers);
  int python = statsprof__python_reachable(p) && statsprof__holds_gil();
  if (python) {
    statsprof__monitoring_release(p);
    statsprof__setprofile_release(p);
  }
  statsprof__threads_release(p, python);
  if (python) statsprof__thread_pool_bury(p);
  else if (p->interp_epoch != statsprof__epoch()) statsprof__thread_states_abandon(p); /* its interpreter is gone */
  statsprof__frames_free(&p->frames);
  statsprof__timer_free(&p->timer);
  statsprof__snapshot_state_free(&p->snap);
  statsprof__table_free(&p->table);
  statsprof__config_free(&p->config);
  statsprof__free(p);
}

static int open_config_sinks(statsprof *p) {
  const statsprof__config *c = &p->config;
  /* sink=none, alone and without an argument (the config parser checks). */
  if (c->nsinks == 1 && !strcmp(c->sinks[0].name, "none")) return 0;
  statsprof__sink_spec dflt = {.name = "jsonl", .arg = "statsprof.jsonl"};
  size_t n = c->nsinks ? c->nsinks : 1;
  for (size_t i = 0; i < n; i++) {
    const statsprof__sink_spec *spec = c->nsinks ? &c->sinks[i] : &dflt;
    const statsprof_sink_ops *ops;
    void *ctx;
    int rc = statsprof__sink_open(spec, &ops, &ctx, p->errmsg, sizeof p->errmsg);
    if (!rc && (rc = add_writer(p, ops, ctx)) != 0 && ops->close) ops->close(ctx);
    if (rc) return rc;
  }
  return 0;
}

/* Every part from its slice of the config, then the sinks. */
static int init_parts(statsprof *p) {
  const statsprof__config *c = &p->config;
  statsprof__writers_config wc = {c->writer_sync, c->on_full_block, c->queue, c->stop_timeout_ns};
  statsprof__writers_init(&p->writers, &wc, &p->log);
  statsprof__timer_init(&p->timer, c->interval_ns);
  statsprof__frames_init(&p->frames, c->budget_ns, c->max_spikes_per_min);
  statsprof__duty_init(&p->duty, c->window_ns, c->every_ns, c->max_overhead);
  if (statsprof__table_init(&p->table, c->max_functions))
    return statsprof__error(p, STATSPROF_ENOMEM, "statsprof_create: out of memory");
  return open_config_sinks(p);
}

/* source=auto picks, with builtins, monitoring on 3.12+ and setprofile on
 * 3.11; with builtins=off, evalframe on 3.11 (start falls back where it
 * would not count exactly: choose_source) and monitoring on 3.12+. There
 * the frame-evaluation source is exact too (forced with source=evalframe)
 * but costs about what sys.monitoring's PY_* events cost (3.14 and 3.15
 * game frame: floors 1.20-1.23x either way, callgrind 340 against 347
 * instructions per event; 3.13: its floor is lower, 1.13-1.17x against
 * 1.21-1.25x, but statsprof on it measured 1.27-1.30x on the game against
 * 1.29-1.33x and 1.14-1.36x on ast against 1.16-1.20x, BENCHMARKS.md), while it
 * makes every Python call a C call as well: C stack, and on 3.12 2 of the
 * 1500 units of CPython's C recursion limit, so a program would hit
 * RecursionError near a depth of 750 (3.13: 10000 units). The source
 * starts from its slice of config. */
#define EVALFRAME_BY_DEFAULT (PY_VERSION_HEX < 0x030C0000)
static void pick_source(statsprof *p) {
  statsprof__config *c = &p->config;
  int fallback = 0;
  if (c->source == STATSPROF__SOURCE_AUTO) {
    if (!c->builtins && EVALFRAME_BY_DEFAULT) c->source = STATSPROF__SOURCE_EVALFRAME;
    else c->source = PY_VERSION_HEX >= 0x030C0000 ? STATSPROF__SOURCE_MONITORING : STATSPROF__SOURCE_SETPROFILE;
    fallback = c->source == STATSPROF__SOURCE_EVALFRAME;
  }
  statsprof__source_init(&p->src, &(statsprof__source_config){c->clock, c->builtins, c->source, fallback, 0});
}

/* The source auto falls back to where evalframe would not count exactly:
 * the one builtins=off used before it. */
#define FALLBACK_SOURCE (PY_VERSION_HEX >= 0x030C0000 ? STATSPROF__SOURCE_MONITORING : STATSPROF__SOURCE_SETPROFILE)
#define FALLBACK_NAME (PY_VERSION_HEX >= 0x030C0000 ? "monitoring" : "setprofile")

/* source=evalframe, chosen or forced: whether it counts exactly on this
 * interpreter and the frame-evaluation function is free is only known
 * with Python running. Decided at each start until it falls back, before
 * calibration measures the source: auto falls back for good and says why
 * in the log (an interpreter's version only once), a forced source fails. */
static int choose_source(statsprof *p) {
  statsprof__source_config *c = &p->src.config;
  char why[320];
  int usable = c->source == STATSPROF__SOURCE_EVALFRAME ? statsprof__evalframe_usable(why, sizeof why) : 1;
  if (usable == 1) return 0;
  if (usable == -2) return statsprof__error(p, STATSPROF_EPYTHON, "statsprof_start: source=evalframe: %s", why);
  if (!c->fallback)
    return statsprof__error(p, STATSPROF_ESTATE, "statsprof_start: source=evalframe: %s; use source=%s", why,
                            FALLBACK_NAME);
  if (usable == 0)
    statsprof__logf(&p->log, "builtins=off: not using source=evalframe: %s; using source=%s", why, FALLBACK_NAME);
  c->source = p->config.source = FALLBACK_SOURCE;
  c->fallback = 0;
  return 0;
}

int statsprof_create(const char *config, statsprof **out) {
  if (!out) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_create: out is NULL");
  *out = NULL;
  statsprof__clock_init();
  statsprof *p = statsprof__calloc(1, sizeof *p);
  if (!p) return statsprof__error(NULL, STATSPROF_ENOMEM, "statsprof_create: out of memory");
  /* The source's checks are the parser's: a config they reject opens no
   * sink (its files and directories were left behind). */
  int rc = statsprof__config_parse(config, &p->config, p->errmsg, sizeof p->errmsg);
  if (!rc) {
    pick_source(p);
    rc = init_parts(p);
  }
  if (rc) {
    statsprof__error(NULL, rc, "%s", p->errmsg);
    if (p->table.strings) free_all(p);
    else {
      statsprof__config_free(&p->config);
      statsprof__free(p);
    }
    return rc;
  }
  p->gen = next_gen();
  statsprof__fork_track(p, 1);
  p->snap.last_wall_ns = p->snap.start_wall_ns = statsprof__wall_ns();
  p->interval_ticks = statsprof__ns_to_ticks(p->config.interval_ns);
  statsprof__error_clear(NULL); /* no stale message from an earlier failed create */
  *out = p;
  return 0;
}

/* Calibration's profiler (calibrate.c): only a table and an event source,
 * already running on this interpreter, raw times (no compensation, no
 * bytecode scale); no sinks, no timer, not known to fork. The caller
 * attaches it to its own thread. */
statsprof *statsprof__scratch_new(statsprof__clock_kind clock, int source, int builtins) {
  statsprof *s = statsprof__calloc(1, sizeof *s);
  if (!s) return NULL;
  statsprof__config_defaults(&s->config);
  statsprof__source_init(&s->src, &(statsprof__source_config){clock, builtins, source, 0, 1});
  if (statsprof__table_init(&s->table, s->config.max_functions)) {
    statsprof__free(s);
    return NULL;
  }
  /* Its hook reads each event's offset as the real one does
   * (source_setprofile.c's box_cost), so that calibration counts it. */
  s->src.sp_small_max = statsprof__small_int_max();
  s->gen = next_gen();
  s->interp_epoch = statsprof__epoch();
  s->running = 1;
  return s;
}

void statsprof__scratch_free(statsprof *s) {
  if (!s) return;
  s->running = 0;
  free_all(s);
}

int statsprof__python_alive(const statsprof *p) {
  return Py_IsInitialized() && p->interp_epoch == statsprof__epoch();
}

int statsprof__python_reachable(const statsprof *p) {
  if (p->interp_epoch != statsprof__epoch()) return 0; /* its interpreter is gone */
  return Py_IsInitialized() || (Py_IsFinalizing() && PyThreadState_GetUnchecked() != NULL);
}

int statsprof__holds_gil(void) {
  PyThreadState *ts = PyThreadState_GetUnchecked();
#if PY_VERSION_HEX < 0x030C0000
  /* 3.11's current thread state is the GIL holder's, whichever thread it
   * is (compared, not read: another thread's may be freed meanwhile): this
   * thread's own (PyGILState_Ensure's, threading's, the main thread's). */
  return ts && ts == PyGILState_GetThisThreadState();
#else
  return ts != NULL; /* per thread from 3.12 */
#endif
}

/* The profiler's own cost so far (ticks): every per-thread state's
 * calibrated event cost and bytecode slowdown, live or unlinked. */
uint64_t statsprof__own_cost(const statsprof *p) {
  uint64_t n = p->src.cost_gone;
  for (const statsprof__thread *t = p->src.threads; t; t = t->next) n += t->spent + t->slowdown;
  return n;
}

static void close_window(statsprof *p, uint64_t now) {
  /* Counts the frames still open as returning now, then unhooks: every
   * state is unlinked, its cost in cost_gone. */
  statsprof__detach_all(p);
  statsprof__duty_close(&p->duty, now, statsprof__own_cost(p));
}

/* Production mode: opens or closes the window whose edge has come. */
static void duty_step(statsprof *p, uint64_t now, int self) {
  int edge = statsprof__duty_due(&p->duty, now);
  if (edge == STATSPROF__DUTY_CLOSE) {
    close_window(p, now);
  } else if (edge == STATSPROF__DUTY_OPEN) {
    statsprof__duty_open(&p->duty, now, statsprof__own_cost(p));
    statsprof__frames_cut(&p->frames); /* the frame under way had no hook until now */
    /* Not after Py_Finalize (a tick then), nor on a later interpreter. */
    if (statsprof__may_attach(p)) statsprof__attach_all(p, self);
  }
}

int statsprof__may_attach(const statsprof *p) {
  return p->running && statsprof__python_alive(p) && (!statsprof__duty_enabled(&p->duty) || p->duty.in_window);
}

static void plan_next(statsprof *p) {
  p->next_due = p->next_tick;
  if (statsprof__duty_enabled(&p->duty) && p->duty.boundary < p->next_due) p->next_due = p->duty.boundary;
}

/* Calls on one profiler never nest. Some run Python code (imports, the
 * calibration loops, atexit registration): a signal handler or another
 * thread can run then, and a call from there into the same profiler would
 * find it half-changed. Such a call fails with STATSPROF_ESTATE (tick and
 * frame_mark just return 0); all of them hold the GIL, so a plain flag
 * does. */
static int held(const statsprof *p) { return p->busy || p->timer_joining || p->hook_holds; }

/* Another thread's hook holds the profiler (statsprof__hook_hold: Python
 * code it ran let the GIL go). */
static int hook_held_elsewhere(const statsprof *p, unsigned long me) {
  return p->hook_holds && p->hook_owner != me;
}

/* The timer skipped a record while the profiler was held: now it is not. */
static void kick_deferred_timer(statsprof *p) {
  if (!p->timer_deferred) return;
  p->timer_deferred = 0;
  statsprof__timer_kick(&p->timer);
}

void statsprof__hook_let_go(statsprof *p) {
  if (p->hook_holds <= 0) return; /* 0: a forked child's (fork.c) */
  if (!--p->hook_holds && !p->busy && !p->timer_joining) kick_deferred_timer(p);
}

/* The timer thread's record holds the profiler while it waits with the
 * GIL released (on_full=block, a writer=sync sink), bounded by the
 * writers' stop_timeout: a call from another thread waits for it, GIL
 * released, rather than fail (a Python user's snapshot or flush beside
 * trigger=timer, which the package picks for production mode, got
 * RuntimeError). It waits the same way for another thread's hook holding
 * the profiler (statsprof__hook_hold); only for that when timer_too is 0
 * (stop and destroy, which join the timer instead). Not while finalizing:
 * the other thread may never get the GIL back then. */
static void wait_for_holders(statsprof *p, int timer_too) {
  unsigned long me = PyThread_get_thread_ident();
  int timer = timer_too && p->busy == STATSPROF__BUSY_TIMER && !p->timer_joining &&
              !statsprof__timer_is_self(&p->timer);
  if ((!timer && !hook_held_elsewhere(p, me)) || !statsprof__holds_gil() || Py_IsFinalizing()) return;
  int64_t deadline = statsprof__mono_ns() + 2 * p->config.stop_timeout_ns + 1000000000;
  for (long us = 100;
       ((timer && p->busy == STATSPROF__BUSY_TIMER) || hook_held_elsewhere(p, me)) && statsprof__mono_ns() < deadline;
       us = us < 20000 ? 2 * us : us) {
    Py_BEGIN_ALLOW_THREADS;
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
    Py_END_ALLOW_THREADS;
  }
}

int statsprof__enter(statsprof *p, const char *fn) {
  wait_for_holders(p, 1);
  if (!held(p)) {
    p->busy = STATSPROF__BUSY_CALL;
    return 0;
  }
  return statsprof__error(p, STATSPROF_ESTATE,
                          "%s: called while another call on this profiler runs (from a signal handler, a "
                          "callback or another thread)",
                          fn);
}

void statsprof__leave(statsprof *p) {
  p->busy = 0;
  kick_deferred_timer(p);
}

/* The timer thread's record holds the profiler (BUSY_TIMER) while it waits
 * with the GIL released (on_full=block, a writer=sync sink running Python).
 * Stop and destroy found it busy and failed: destroy left the profiler
 * running, its hook, timer and writer threads alive (and the Python
 * package's close() let go of it so). They stop the timer first instead,
 * whose join waits for that record, GIL released; timer_joining keeps
 * every other call, a destroy above all, out meanwhile. */
static void finish_timer_record(statsprof *p) {
  /* Another thread's hook first (its Python code let the GIL go). */
  wait_for_holders(p, 0);
  /* On the timer's own thread (its record's writer=sync sink) the record
   * is this call's caller: it cannot be waited for, and stopping the timer
   * would only leave it unjoined and the profiler without records. From
   * inside this thread's hook the call is refused: the timer stays. */
  if (p->busy != STATSPROF__BUSY_TIMER || p->timer_joining || p->hook_holds ||
      statsprof__timer_is_self(&p->timer))
    return;
  p->timer_joining = 1;
  statsprof__timer_stop(&p->timer);
  p->timer_joining = 0;
}

/* Only the main interpreter is profiled: what the sources make (the
 * co_extra index, the hook's types, the sys.monitoring tool, the
 * frame-evaluation function, threading's hook) is made once per process
 * and belongs to the interpreter it was made in. A call made while a
 * sub-interpreter's thread state is current (Py_NewInterpreter,
 * PyThreadState_Swap) used to hook that interpreter's threads and count
 * its code in this profile, stop only that interpreter's hooks, or from
 * an interpreter with its own GIL (3.12+) run beside the main
 * interpreter's calls; it fails instead, without touching the profiler
 * (its message is the thread's: statsprof__error_here). */
static int foreign_interp(statsprof *p, const char *fn) {
  PyThreadState *ts = PyThreadState_GetUnchecked();
  if (!ts || PyThreadState_GetInterpreter(ts) == PyInterpreterState_Main()) return 0;
  statsprof__error_here(p, STATSPROF_ESTATE,
                        "%s: called from a sub-interpreter; statsprof profiles the main interpreter only: make "
                        "a main-interpreter thread state current first (PyThreadState_Swap)",
                        fn);
  return 1;
}

static int stop_locked(statsprof *p);
static int64_t timer_tick(void *arg);

static int calibrating_elsewhere(statsprof *p) {
  return statsprof__error(p, STATSPROF_ESTATE,
                            "statsprof_start: another profiler is calibrating on this thread (called from a "
                            "signal handler?), or on another thread for over 60 s");
}

/* The own cost per event, for compensate=on and production mode's budget. */
static int set_costs(statsprof *p) {
  statsprof__source *src = &p->src;
  statsprof__costs c;
  int rc = statsprof__calibrate(src->config.clock, src->config.source, src->config.builtins, &c);
  if (rc == STATSPROF_ENOMEM)
    return statsprof__error(p, rc, "statsprof_start: out of memory measuring the profiler's own cost");
  if (rc == STATSPROF_EPYTHON)
    return statsprof__error(p, rc,
                            "statsprof_start: a Python exception (a signal handler's?) interrupted the measuring "
                            "of the profiler's own cost; not started");
  if (rc) return calibrating_elsewhere(p);
  src->cost_py = c.py;
  src->cost_c = c.c;
  src->cost_rej = c.rej;
  src->cost_box = c.box;
  src->sp_small_max = statsprof__small_int_max();
  src->own_scale = c.own_scale;
  if (getenv("STATSPROF_DEBUG")) {
    /* speed is 0 where the bare call was not timed at this start: the
     * calibration's own start (it measured the reference), or another
     * profile function on this thread. */
    char speed[160];
    if (c.speed > 0)
      snprintf(speed, sizeof speed,
               "a bare call takes x%.2f of the %.0f ticks it took then (below x0.80 the costs are scaled by it)",
               c.speed, c.bare_call);
    else
      snprintf(speed, sizeof speed, "a bare call took %.0f ticks at the calibration (not timed again at this start)",
               c.bare_call);
    statsprof__logf(&p->log,
                    "calibrated %llu ticks per Python event, %llu per C event, %llu per event not counted, "
                    "%llu more per boxed offset, bytecode x%.3f; %s",
                    (unsigned long long)c.py, (unsigned long long)c.c, (unsigned long long)c.rej,
                    (unsigned long long)c.box, 65536.0 / (double)c.own_scale, speed);
  }
  src->compensate_mask = p->config.compensate ? ~(uint64_t)0 : 0;
  if (!p->config.compensate) src->own_scale = 1 << 16;
  return 0;
}

/* The hook on every thread: now, or from the first production-mode window
 * on (whose attach, like every window's, reports nothing). */
static int attach_first(statsprof *p) {
  if (!statsprof__duty_enabled(&p->duty)) return statsprof__attach_all(p, 1);
  statsprof__duty_start(&p->duty, statsprof__ticks(), statsprof__own_cost(p));
  statsprof__attach_all(p, 1);
  return 0;
}

static int start_locked(statsprof *p) {
  if (!Py_IsInitialized())
    return statsprof__error(p, STATSPROF_ENOPYTHON, "statsprof_start: Python is not initialized");
  if (p->running && statsprof__python_alive(p)) {
    /* Already running: the caller's own thread may have lost the hook
     * (sys.setprofile(None)); put it back, as cProfile's enable would. */
    return statsprof__may_attach(p) ? statsprof__attach_self(p) : 0;
  }
  /* What the source made in that interpreter (sys.monitoring's tool id and
   * callbacks, threading's hook, the per-thread states) went with it. */
  if (p->interp_epoch && p->interp_epoch != statsprof__epoch())
    return statsprof__error(p, STATSPROF_ESTATE,
                            "statsprof_start: this profiler ran in an interpreter that has since been finalized; "
                            "create a new profiler for this one (this one's counts stay readable)");
  p->running = 0;
  int rc = statsprof__hook_ready();
  if (rc) return statsprof__error(p, rc, "statsprof_start: cannot prepare the profile hook");
  if (statsprof__calibrate_settle()) return calibrating_elsewhere(p);
  if ((rc = choose_source(p)) != 0 || (rc = set_costs(p)) != 0) return rc;
  int first = p->interp_epoch == 0;
  p->interp_epoch = statsprof__epoch();
  p->running = 1;
  statsprof__frames_cut(&p->frames); /* a frame under way had no hook until now */
  /* Threads started later from Python; failure only loses those threads
   * until the next tick. Done before attaching, so it is not profiled. */
  if (p->config.source == STATSPROF__SOURCE_SETPROFILE && statsprof__threading_hook(p, 1))
    statsprof__logf(&p->log, "cannot install threading.setprofile: new Python threads are picked up at tick");
  /* A forked child starts afresh (fork.c); imports os: before attaching. */
  if (statsprof__fork_hook())
    statsprof__logf(&p->log, "cannot register an after-fork handler: a forked child keeps the parent's counts");
  /* The timer's atexit registration imports: also before attaching. */
  char why[STATSPROF__ERRLEN];
  if (p->config.trigger_timer && (rc = statsprof__timer_start(&p->timer, timer_tick, p, why, sizeof why)) != 0) {
    statsprof__error(p, rc, "trigger=timer: %s", why);
    p->running = 0;
    statsprof__threading_hook(p, 0);
    return rc;
  }
  /* Records measure from here, not from create (hosts create early, before
   * Py_Initialize even): the first start is where cumulative begins, and
   * a restart begins the next delta, which must not claim the stopped gap
   * (in production mode that gap made span_s long and scaled the counts
   * up by it). */
  int64_t now = statsprof__wall_ns();
  if (first) p->snap.start_wall_ns = now;
  p->snap.last_wall_ns = now;
  p->next_tick = statsprof__ticks() + p->interval_ticks;
  rc = attach_first(p);
  plan_next(p);
  statsprof__timer_kick(&p->timer);
  if (rc) {
    stop_locked(p);
    return rc;
  }
  return 0;
}

/* Start, stop and destroy run Python code (calibration, imports, the
 * hook's removal) and clear what it raises: an exception the host has
 * pending when it calls them is kept aside meanwhile. */
typedef struct {
  int held;
  statsprof__pending exc;
} host_exc;

static host_exc host_exc_take(void) {
  host_exc h = {.held = Py_IsInitialized() && statsprof__holds_gil()};
  if (h.held) h.exc = statsprof__pending_take();
  return h;
}

static void host_exc_restore(host_exc h) {
  if (h.held && Py_IsInitialized()) statsprof__pending_restore(h.exc);
}

int statsprof_start(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_start: NULL profiler");
  if (foreign_interp(p, "statsprof_start")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_start");
  if (rc) return rc;
  host_exc exc = host_exc_take();
  rc = start_locked(p);
  host_exc_restore(exc);
  if (exc.held) statsprof__calibrate_reraise();
  statsprof__leave(p);
  return rc;
}

int statsprof_is_running(const statsprof *p) {
  return p && p->running && statsprof__python_alive(p);
}

int statsprof_attach_thread(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_attach_thread: NULL profiler");
  if (foreign_interp(p, "statsprof_attach_thread")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_attach_thread");
  if (rc) return rc;
  /* Checked once the call holds the profiler: enter may wait for the
   * timer's record with the GIL released, and a stop from another thread
   * then ran to its end (the hook went on a stopped profiler's thread,
   * and its destroy freed the profiler under it). */
  if (!statsprof_is_running(p))
    rc = statsprof__error(p, STATSPROF_ESTATE, "statsprof_attach_thread: profiler is not running");
  else if (statsprof__may_attach(p)) /* between production-mode windows no thread has the hook */
    rc = statsprof__attach_self(p);
  statsprof__leave(p);
  return rc;
}

uint64_t statsprof_dropped(const statsprof *p) { return p ? statsprof__writers_dropped(&p->writers) : 0; }

/* Per-thread records: only threads that ran Python in the interval (or
 * ended in it), at most this many; the rest are counted in the merged
 * record's threads_omitted. */
#define STATSPROF__MAX_THREAD_RECORDS 64

/* per_thread=on: a delta record for each thread that ran Python in the
 * interval, against the baseline the merged record then moves. */
static int thread_records(statsprof *p, statsprof_stats_profile **threads, size_t *nthreads, uint64_t *omitted) {
  int rc = 0;
  if (statsprof__python_alive(p)) statsprof__threads_name(p);
  for (uint32_t i = 0; i < p->table.nslots; i++) {
    statsprof__slot *slot = &p->table.slots[i];
    if (!slot->active || (slot->state != STATSPROF__SLOT_LIVE && slot->state != STATSPROF__SLOT_ENDED)) continue;
    statsprof__selection sel = {.kind = STATSPROF_RECORD_THREAD, .base = STATSPROF__BASE_PREV, .slot = i};
    statsprof_stats_profile *r;
    int brc = statsprof__snapshot_build(p, &sel, &r);
    if (brc) {
      rc = brc; /* the merged record still goes out; the message says why one is missing */
      continue;
    }
    if (!r->nfunc_profiles) statsprof_stats_profile_free(r);
    else if (*nthreads == STATSPROF__MAX_THREAD_RECORDS) ++*omitted, statsprof_stats_profile_free(r);
    else threads[(*nthreads)++] = r;
  }
  return rc;
}

/* One delta interval: with per_thread=on, first a record per thread that
 * did something (same baseline), then the merged one, which moves it. */
static int emit_interval(statsprof *p, int skip_empty) {
  /* The hook cannot report: a host that only ticks learns of its failure
   * from the log; the next snapshot or stop returns it (take_hook_oom). */
  if ((p->src.oom || p->frames.oom) && !p->oom_reported) {
    p->oom_reported = 1;
    statsprof__logf(&p->log, "the profile hook ran out of memory: some calls are missing from the "
                             "records or counted in the overflow entry");
  }
  int thread_rc = 0;
  statsprof__threads_scan(p);
  statsprof_stats_profile *threads[STATSPROF__MAX_THREAD_RECORDS];
  size_t nthreads = 0;
  uint64_t omitted = 0;
  if (p->config.per_thread) thread_rc = thread_records(p, threads, &nthreads, &omitted);
  for (uint32_t i = 0; i < p->table.nslots; i++) p->table.slots[i].active = 0;
  statsprof_stats_profile *rec;
  int rc = statsprof__snapshot_take(p, STATSPROF_DELTA, &rec);
  /* From the first emit: an on_full=block sink holds the tick one
   * stop_timeout in all, not one per thread's record. */
  int own_deadline = statsprof__writers_deadline_begin(&p->writers);
  if (!rc) {
    rec->threads_omitted = omitted;
    statsprof__frame_stats_take(&p->frames, &rec->frame_stats);
    if (statsprof__duty_enabled(&p->duty))
      statsprof__duty_take(&p->duty, rec, statsprof__ticks(), statsprof__own_cost(p));
    if (rec->nfunc_profiles || rec->frame_stats.frames || !skip_empty) statsprof__writers_emit(&p->writers, rec);
    /* An empty last interval, not written, gives its seq back: a seq
     * missing between records means a record lost on the way. */
    else if (!nthreads) p->snap.seq--;
  }
  for (size_t i = 0; i < nthreads; i++) {
    if (!rc) {
      threads[i]->seq = rec->seq;
      threads[i]->observed_s = rec->observed_s;
      threads[i]->duty = rec->duty;
      threads[i]->span_s = rec->span_s;
      threads[i]->overhead_est = rec->overhead_est;
      threads[i]->start_ns = rec->start_ns;
      threads[i]->end_ns = rec->end_ns;
      statsprof__writers_emit(&p->writers, threads[i]);
    }
    statsprof_stats_profile_free(threads[i]);
  }
  if (!rc) statsprof_stats_profile_free(rec);
  if (own_deadline) statsprof__writers_deadline_end(&p->writers);
  /* Threads that ended had their last record: their slots go back. */
  if (!rc) statsprof__threads_retire(p);
  /* The interval's record went out: a missing thread record is the log's
   * (tick's <0 says no record went out). */
  if (!rc && thread_rc) statsprof__logf(&p->log, "per_thread=on: a thread's record is missing: %s", p->errmsg);
  return rc;
}

/* The hook's sticky out-of-memory flag becomes an error here, once, as
 * cProfile's disable and getstats turn theirs into MemoryError. */
static int take_hook_oom(statsprof *p, const char *fn) {
  if (!p->src.oom && !p->frames.oom) return 0;
  p->src.oom = p->oom_reported = p->frames.oom = 0;
  return statsprof__error(p, STATSPROF_ENOMEM,
                          "%s: the profile hook ran out of memory: some calls are missing from the counts "
                          "(or counted in the overflow entry)",
                          fn);
}

int statsprof_reopen(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_reopen: NULL profiler");
  statsprof__writers_reopen(&p->writers);
  return 0;
}

int statsprof_flush(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_flush: NULL profiler");
  /* From an interpreter with its own GIL (3.12+) the busy flag below would
   * race with the main interpreter's calls, a destroy among them. */
  if (foreign_interp(p, "statsprof_flush")) return STATSPROF_ESTATE;
  /* It waits with the GIL released: unmarked, another thread's destroy
   * freed the writers under that wait (a crash when the wait ended). */
  int rc = statsprof__enter(p, "statsprof_flush");
  if (rc) return rc;
  statsprof__writers_drain(&p->writers);
  statsprof__leave(p);
  return 0;
}

void statsprof_set_log(statsprof *p, statsprof_log_fn fn, void *ud) {
  if (!p || foreign_interp(p, "statsprof_set_log")) return;
  p->log.fn = fn;
  p->log.ud = ud;
}

int statsprof_emit_now(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_emit_now: NULL profiler");
  if (foreign_interp(p, "statsprof_emit_now")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_emit_now");
  if (rc) return rc;
  rc = emit_interval(p, 0);
  statsprof__leave(p);
  return rc;
}

static int emit_due_locked(statsprof *p, int from_timer) {
  /* The timer's own thread state runs no Python: leave it alone. */
  int self = from_timer ? -1 : 0;
  uint64_t now = statsprof__ticks();
  duty_step(p, now, self);
  int rc = 0;
  if (now >= p->next_tick) {
    /* A fixed cadence: records do not drift later by the tick's lateness
     * (1 s intervals measured 1.022 s median from `now + interval`), so
     * time slices of the interval hold one record each. A host that
     * stalled for whole intervals skips them rather than catching up. */
    p->next_tick += p->interval_ticks;
    if (p->next_tick <= now) p->next_tick = now + p->interval_ticks;
    if (statsprof__may_attach(p)) statsprof__attach_all(p, self);
    rc = emit_interval(p, 0);
    if (!rc) rc = 1;
  }
  plan_next(p);
  return rc;
}

/* What tick does when a record is due: pick up new threads, emit. GIL. */
static int emit_due(statsprof *p, int from_timer) {
  if (held(p)) return 0; /* the call in progress finishes first */
  p->busy = from_timer ? STATSPROF__BUSY_TIMER : STATSPROF__BUSY_CALL;
  int rc = emit_due_locked(p, from_timer);
  statsprof__leave(p);
  return rc;
}

/* The timer thread's wake (GIL held): what tick does, then how long until
 * the next record or production-mode window edge. */
static int64_t timer_tick(void *arg) {
  statsprof *p = arg;
  if (!p->running) return p->config.interval_ns;
  if (held(p)) {
    /* A call in progress (a flush, a record waiting for room, GIL
     * released): its leave kicks the timer. Asking again at once, the
     * timer spun on the GIL for as long as that call waited. */
    p->timer_deferred = 1;
    return p->config.interval_ns > 1000000000 ? p->config.interval_ns : 1000000000;
  }
  emit_due(p, 1);
  uint64_t now = statsprof__ticks();
  if (p->next_due <= now) return 0;
  /* Up to 2^63 ns away (interval=2562047h): converting that to int64_t is
   * undefined; the timer sleeps a day at a time anyway. */
  double ns = (double)(p->next_due - now) * statsprof__clock_sec_per_tick * 1e9;
  return ns < 9e18 ? (int64_t)ns : INT64_MAX;
}

int statsprof_tick(statsprof *p) {
  if (!p) return STATSPROF_EINVAL;
  if (foreign_interp(p, "statsprof_tick")) return STATSPROF_ESTATE;
  if (statsprof__ticks() < p->next_due || !p->running) return 0;
  return emit_due(p, 0);
}

/* Only the two modes are inputs: record kinds (spike, thread) are not. */
static int bad_mode(statsprof *p, const char *fn, statsprof_snapshot_mode mode) {
  if (mode == STATSPROF_DELTA || mode == STATSPROF_CUMULATIVE) return 0;
  statsprof__error(p, STATSPROF_EINVAL, "%s: bad mode %d (not STATSPROF_DELTA or STATSPROF_CUMULATIVE)", fn, (int)mode);
  return 1;
}

int statsprof_snapshot(statsprof *p, statsprof_snapshot_mode mode, statsprof_stats_profile **out) {
  if (!out) return statsprof__error(p, STATSPROF_EINVAL, "statsprof_snapshot: out is NULL");
  *out = NULL;
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_snapshot: NULL profiler");
  if (bad_mode(p, "statsprof_snapshot", mode)) return STATSPROF_EINVAL;
  if (foreign_interp(p, "statsprof_snapshot")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_snapshot");
  if (rc) return rc;
  if (statsprof__may_attach(p)) statsprof__attach_all(p, 0);
  rc = take_hook_oom(p, "statsprof_snapshot");
  if (!rc) rc = statsprof__snapshot_take(p, mode, out);
  /* A delta moves the emitted records' mark: it takes the windows of its
   * interval too, or the next record would claim them. */
  if (!rc && mode == STATSPROF_DELTA && statsprof__duty_enabled(&p->duty))
    statsprof__duty_take(&p->duty, *out, statsprof__ticks(), statsprof__own_cost(p));
  statsprof__leave(p);
  return rc;
}

int statsprof_snapshot_thread(statsprof *p, statsprof_snapshot_mode mode, uint64_t thread_id,
                              statsprof_stats_profile **out) {
  if (!out) return statsprof__error(p, STATSPROF_EINVAL, "statsprof_snapshot_thread: out is NULL");
  *out = NULL;
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_snapshot_thread: NULL profiler");
  if (bad_mode(p, "statsprof_snapshot_thread", mode)) return STATSPROF_EINVAL;
  if (foreign_interp(p, "statsprof_snapshot_thread")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_snapshot_thread");
  if (rc) return rc;
  /* Looked up once held: enter may wait with the GIL released, while the
   * timer's record retires the slot and a new thread takes it. */
  uint32_t slot = statsprof__threads_find(p, thread_id);
  if (slot == STATSPROF__NONE) {
    rc = statsprof__error(p, STATSPROF_EINVAL,
                          "statsprof_snapshot_thread: thread %llu is not profiled (never seen, or it ended and a "
                          "record has since folded its counts into the merged profile)",
                          (unsigned long long)thread_id);
    statsprof__leave(p);
    return rc;
  }
  if (statsprof__python_alive(p)) statsprof__threads_name(p);
  /* A thread's delta is measured against its own mark: with the merged
   * one, it took its calls from the next merged record and the sinks'. */
  statsprof__selection sel = {
      .kind = mode == STATSPROF_DELTA ? STATSPROF_RECORD_THREAD : STATSPROF_RECORD_CUMULATIVE,
      .base = mode == STATSPROF_DELTA ? STATSPROF__BASE_MARK : STATSPROF__BASE_NONE,
      .slot = slot,
      .commit = mode == STATSPROF_DELTA,
  };
  rc = take_hook_oom(p, "statsprof_snapshot_thread");
  if (!rc) rc = statsprof__snapshot_build(p, &sel, out);
  statsprof__leave(p);
  return rc;
}

static int stop_locked(statsprof *p) {
  if (!p->running) return 0;
  statsprof__timer_stop(&p->timer);
  if (p->duty.in_window) close_window(p, statsprof__ticks());
  p->running = 0;
  statsprof__detach_all(p);
  if (statsprof__python_alive(p)) statsprof__threading_hook(p, 0);
  /* The last interval goes out now: a clean stop loses nothing. */
  int rc = emit_interval(p, 1);
  statsprof__writers_drain(&p->writers);
  if (!rc) rc = take_hook_oom(p, "statsprof_stop");
  return rc;
}

int statsprof_stop(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_stop: NULL profiler");
  if (foreign_interp(p, "statsprof_stop")) return STATSPROF_ESTATE;
  finish_timer_record(p);
  int rc = statsprof__enter(p, "statsprof_stop");
  if (rc) return rc;
  host_exc exc = host_exc_take();
  /* The last record's emit and the flush wait one stop_timeout in all. */
  statsprof__writers_deadline_begin(&p->writers);
  rc = stop_locked(p);
  statsprof__writers_deadline_end(&p->writers);
  host_exc_restore(exc);
  statsprof__leave(p);
  return rc;
}

/* A spike record: what the frame that just ended touched, against the
 * counters at its start. 1 when it went out. */
static int emit_spike(statsprof *p, uint64_t frame_ns) {
  const statsprof__frames *f = &p->frames;
  statsprof__selection sel = {
      .kind = STATSPROF_RECORD_SPIKE,
      .base = STATSPROF__BASE_FRAME,
      .slot = STATSPROF__NONE,
      .entries = f->touched_entries,
      .nentries = f->ntouched_entries,
      .edges = f->touched_edges,
      .nedges = f->ntouched_edges,
      .frame_entries = f->entries,
      .frame_edges = f->edges,
  };
  statsprof_stats_profile *rec;
  int rc = statsprof__snapshot_build(p, &sel, &rec);
  if (rc) return rc;
  rec->frame = f->no;
  rec->frame_time_s = (double)frame_ns * 1e-9;
  rec->start_ns = rec->end_ns - (int64_t)frame_ns;
  statsprof__writers_emit(&p->writers, rec);
  statsprof_stats_profile_free(rec);
  return 1;
}

int statsprof_frame_mark(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_frame_mark: NULL profiler");
  if (foreign_interp(p, "statsprof_frame_mark")) return STATSPROF_ESTATE;
  if (held(p)) {
    /* Inside another call: the frame's time only (frame.c). */
    int rc = statsprof__frames_mark_held(&p->frames, statsprof__mono_ns(), p->running, statsprof__may_attach(p));
    if (rc == 1) statsprof__monitoring_fast_update(p); /* frame tracking is on now */
    if (rc < 0)
      return statsprof__error_here(p, STATSPROF_ENOMEM, "statsprof_frame_mark: out of memory keeping frame %llu's time",
                                   (unsigned long long)(p->frames.no + p->frames.held));
    return 0;
  }
  /* A spike's sinks may release the GIL (on_full=block, a writer=sync sink
   * running Python): unmarked, another thread's destroy freed the profiler
   * under this call. */
  p->busy = STATSPROF__BUSY_CALL;
  int64_t now = statsprof__mono_ns();
  uint64_t spike_ns;
  /* Between production-mode windows no thread has the hook: an empty
   * spike record would only use up max_spikes_per_min. */
  int rc = statsprof__frames_end(&p->frames, now, p->running, statsprof__may_attach(p), &spike_ns);
  if (rc < 0)
    rc = statsprof__error(p, rc, "statsprof_frame_mark: out of memory keeping frame %llu's time",
                          (unsigned long long)p->frames.no);
  else if (rc)
    rc = emit_spike(p, spike_ns);
  statsprof__frames_begin(&p->frames, now);
  statsprof__monitoring_fast_update(p); /* frame tracking is on: touches need the slow path */
  statsprof__leave(p);
  return rc;
}

int statsprof_reset(statsprof *p) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_reset: NULL profiler");
  if (foreign_interp(p, "statsprof_reset")) return STATSPROF_ESTATE;
  int rc = statsprof__enter(p, "statsprof_reset");
  if (rc) return rc;
  statsprof__table_clear_counts(&p->table);
  statsprof__frame_forget(&p->frames);
  /* Or the next record claimed the windows before the reset for its
   * interval, which starts at the reset. */
  if (statsprof__duty_enabled(&p->duty)) statsprof__duty_reset(&p->duty, statsprof__ticks(), statsprof__own_cost(p));
  p->snap.nprev_entries = p->snap.nprev_edges = 0;
  p->snap.last_wall_ns = p->snap.start_wall_ns = statsprof__wall_ns();
  statsprof__leave(p);
  return 0;
}

void statsprof_destroy(statsprof *p) {
  if (!p) return;
  /* Its hooks are the main interpreter's, and only a call from there can
   * remove them. One that never started there has none. */
  if (p->interp_epoch == statsprof__epoch() && foreign_interp(p, "statsprof_destroy")) {
    statsprof__logf(&p->log, "statsprof_destroy: called from a sub-interpreter; the profiler is left alive "
                             "(destroy it from the main interpreter)");
    return;
  }
  finish_timer_record(p);
  if (held(p)) {
    /* Freeing it under the call in progress would crash that call. */
    statsprof__logf(&p->log, "statsprof_destroy: called while another call on this profiler runs (from a "
                             "signal handler?); the profiler is left alive");
    return;
  }
  p->busy = STATSPROF__BUSY_CALL;
  host_exc exc = host_exc_take();
  statsprof__writers_deadline_begin(&p->writers); /* ...and the close too (free_all ends it) */
  stop_locked(p);
  free_all(p);
  host_exc_restore(exc);
}

int statsprof_add_sink(statsprof *p, const statsprof_sink_ops *ops, void *ctx) {
  if (!p) return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_add_sink: NULL profiler");
  if (!ops || !ops->emit)
    return statsprof__error(p, STATSPROF_EINVAL, "statsprof_add_sink: ops or ops->emit is NULL");
  if (ops->version < 1)
    return statsprof__error(p, STATSPROF_EINVAL, "statsprof_add_sink: ops->version %d is not supported",
                            ops->version);
  if (foreign_interp(p, "statsprof_add_sink")) return STATSPROF_ESTATE;
  return add_writer(p, ops, ctx);
}

uint64_t statsprof_sink_errors(const statsprof *p) { return p ? atomic_load(&p->writers.errors) : 0; }

statsprof *statsprof_from_env(const char *name) {
  const char *var = name ? name : "STATSPROF";
  const char *v = getenv(var);
  if (!v || !*v) return NULL;
  /* The words builtins=on/off takes: off is off, not a bad config. */
  if (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")) return NULL;
  if (!strcmp(v, "1") || !strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes")) v = NULL;
  statsprof *p;
  int rc = statsprof_create(v, &p);
  if (rc) {
    /* No handle yet, so no host log function: the default line on fd 2. */
    statsprof__logf(NULL, "%s is not a valid profiler config, profiling stays off: %s", var, statsprof_errmsg(NULL));
    return NULL;
  }
  rc = statsprof_start(p);
  if (rc) {
    statsprof__error(NULL, rc, "%s", statsprof_errmsg(p));
    statsprof__logf(NULL, "cannot start the profiler from %s: %s", var, statsprof_errmsg(p));
    statsprof_destroy(p);
    return NULL;
  }
  return p;
}
