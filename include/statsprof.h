/*
 * statsprof.h — a deterministic profiler for hosts that embed CPython.
 *
 * A host creates one profiler (an opaque `statsprof*`), starts it, calls
 * statsprof_tick() from its main loop, and receives timestamped snapshots
 * shaped like Python's pstats.StatsProfile through sinks (a JSON-lines file,
 * a callback, ...). This is the only public header.
 *
 * Threading: unless a function says otherwise, call it from a thread that
 * holds the GIL, with a main-interpreter thread state current: only the
 * main interpreter is profiled. From a sub-interpreter's thread state
 * (Py_NewInterpreter, PyThreadState_Swap) every such call returns
 * STATSPROF_ESTATE and changes nothing (statsprof_destroy logs that and
 * leaves the profiler alive, unless it never started). Calls on one
 * profiler do not nest: one made while another runs (on another thread
 * that released the GIL, or from a signal handler) returns
 * STATSPROF_ESTATE, except that a call waits, GIL released, for the
 * trigger=timer thread's record (at most about stop_timeout).
 * Errors: functions return 0 on success and a negative STATSPROF_E* code on
 * failure; statsprof_errmsg() then describes what was wrong.
 */
#ifndef STATSPROF_H
#define STATSPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define STATSPROF_API __declspec(dllexport)
#elif defined(__GNUC__)
#define STATSPROF_API __attribute__((visibility("default")))
#else
#define STATSPROF_API
#endif

#define STATSPROF_VERSION_MAJOR 0
#define STATSPROF_VERSION_MINOR 3
#define STATSPROF_VERSION_PATCH 0
#define STATSPROF_VERSION_HEX                                        \
  ((STATSPROF_VERSION_MAJOR << 16) | (STATSPROF_VERSION_MINOR << 8) | \
   STATSPROF_VERSION_PATCH)
#define STATSPROF_VERSION_STRING "0.3.0"

/* The runtime library's STATSPROF_VERSION_HEX; compare with the header's. */
STATSPROF_API unsigned statsprof_version(void);

/* ---- Errors ---------------------------------------------------------- */

/* Every error, once: XX(name, code, text). */
#define STATSPROF_ERRNO_MAP(XX)                                     \
  XX(OK, 0, "success")                                              \
  XX(EINVAL, -1, "invalid argument")                                \
  XX(ENOMEM, -2, "out of memory")                                   \
  XX(ECONFIG, -3, "invalid configuration")                          \
  XX(EIO, -4, "input/output error")                                 \
  XX(ESTATE, -5, "operation not valid in the profiler's state")     \
  XX(ENOPYTHON, -6, "the Python interpreter is not initialized")    \
  XX(ESINK, -7, "a sink failed")                                    \
  XX(EPYTHON, -8, "a Python API call failed")

typedef enum statsprof_error_code {
#define STATSPROF__ERR_ENUM(name, code, text) STATSPROF_##name = code,
  STATSPROF_ERRNO_MAP(STATSPROF__ERR_ENUM)
#undef STATSPROF__ERR_ENUM
} statsprof_error_code;

/* Static text for an error code ("out of memory"); never NULL. */
STATSPROF_API const char *statsprof_strerror(int err);
/* The code's name ("STATSPROF_ENOMEM"); never NULL. */
STATSPROF_API const char *statsprof_err_name(int err);

/* ---- The profiler handle --------------------------------------------- */

typedef struct statsprof statsprof;

/*
 * Creates a profiler from a config string (NULL or "" for defaults):
 * `key=value` pairs separated by ';', e.g.
 *   "interval=1s;clock=wall;sink=jsonl:out/prof.jsonl;sink=stderr".
 * Keys are documented in README.md. Sinks named in the config are opened
 * here, so an unwritable path fails now, not later.
 * On success stores the handle in *out, empties this thread's
 * statsprof_errmsg(NULL) and returns 0. On failure stores NULL and returns
 * an error code — STATSPROF_ECONFIG for a bad key or value (a malformed sink
 * argument included), STATSPROF_ESINK for a sink that cannot open,
 * STATSPROF_ENOMEM when out of memory — and
 * statsprof_errmsg(NULL) gives a message naming the offending text and its
 * offset (per calling thread, until the next call).
 * Does not need the GIL or an initialized interpreter.
 */
STATSPROF_API int statsprof_create(const char *config, statsprof **out);

/*
 * Stops (if started), flushes and closes every sink, and frees the profiler.
 * Waits for the sinks at most config stop_timeout (default 5 s); a sink
 * still stuck in a write then is abandoned (see the sink contract below).
 * Accepts NULL. Call with the GIL held if the interpreter is still running;
 * after Py_Finalize it may be called without it.
 */
STATSPROF_API void statsprof_destroy(statsprof *p);

/*
 * The detailed message of the last failed call on `p`, or for p == NULL of
 * the last failed statsprof_create/statsprof_from_env/
 * statsprof_register_sink/statsprof_name_thread on this thread ("" again
 * once one of those succeeds). Never NULL; "" when there was no error. Valid until the next
 * call on `p`. A call refused because it came from a sub-interpreter
 * leaves `p` untouched: its message is the calling thread's, given on that
 * thread until its next failed call on `p`.
 */
STATSPROF_API const char *statsprof_errmsg(const statsprof *p);

/*
 * Installs the profile function (PyEval_SetProfile) on every thread state
 * of the main interpreter, and arranges for threads started later from
 * Python (threading) to be profiled too. Threads a host creates later in C
 * are picked up when a record is due (at the statsprof_tick that emits it,
 * or on the timer thread), at each statsprof_snapshot and when a
 * production-mode window opens, or at once with statsprof_attach_thread();
 * the sys.monitoring source covers them from their first call. Requires
 * the GIL. Starting twice is a no-op.
 * Records measure time from the first start (not from create): cumulative
 * snapshots begin there. Starting again after statsprof_stop keeps the
 * counts and begins the next delta's interval, so no record's interval
 * holds the stopped time. A Python exception pending at the call stays
 * pending (so for stop and destroy). An exception raised while it runs
 * Python code of its own (a signal handler's during the first start's
 * calibration of its own cost, about 0.1 s: Ctrl-C, a SIGALRM deadline)
 * fails it with STATSPROF_EPYTHON, not started: called from Python code
 * (an extension function), the exception is left set for the caller to
 * raise; from C with no Python frame, a KeyboardInterrupt is raised again
 * in the thread's next Python code and another exception is reported as
 * unraisable. A profiler that ran in an interpreter since finalized (Py_FinalizeEx)
 * does not start in the next one: STATSPROF_ESTATE (its counts stay
 * readable; create a new profiler there). Called from a sub-interpreter:
 * STATSPROF_ESTATE (see Threading above).
 */
STATSPROF_API int statsprof_start(statsprof *p);

/*
 * Removes the profile function from every thread, closing frames that were
 * entered and never returned (as cProfile's disable does), and emits a last
 * delta record to the sinks if anything happened since the last one, and
 * flushes them (waiting at most config stop_timeout, as statsprof_flush).
 * Returns STATSPROF_ENOMEM, having done all that, when the profile hook ran
 * out of memory since the last snapshot or stop (see
 * statsprof_set_allocator).
 * Requires the GIL while the interpreter runs. Stopping twice is a no-op.
 * With trigger=timer, a record the timer's thread is handing to the sinks
 * (waiting for room under on_full=block, or in a writer=sync sink) is
 * finished first, with the GIL released (so for destroy).
 */
STATSPROF_API int statsprof_stop(statsprof *p);

/* Nonzero while started. */
STATSPROF_API int statsprof_is_running(const statsprof *p);

/*
 * Installs the profile function on the calling thread's state now (for a C
 * thread that entered Python with PyGILState_Ensure). Requires the GIL.
 */
STATSPROF_API int statsprof_attach_thread(statsprof *p);

/*
 * Names the calling OS thread in `thread` records (per_thread=on,
 * statsprof_snapshot_thread), ahead of the name threading gives it. Names
 * follow the thread: call again to rename it; NULL or "" goes back to
 * threading's name. The name belongs to the OS thread, not to a thread
 * state, so it survives PyGILState_Release. Any thread; no GIL needed;
 * process-wide (every profiler sees it). Returns 0 or STATSPROF_ENOMEM
 * (with its message in statsprof_errmsg(NULL)).
 */
STATSPROF_API int statsprof_name_thread(const char *name);

/* Forgets all counts, the frame times and production mode's windows so far
 * (not the sinks, nor the "so far" counters such as dropped); the next
 * delta and cumulative snapshots start from zero at the reset. GIL. */
STATSPROF_API int statsprof_reset(statsprof *p);

/* ---- Snapshots: pstats-shaped ---------------------------------------- */

/* One caller edge of a function: how often `caller` called it (cProfile's
 * subentry). Times in seconds. */
typedef struct statsprof_caller_profile {
  const char *function_name;
  const char *file_name;
  int line_number;
  uint64_t ncalls;          /* total calls along this edge */
  uint64_t primitive_calls; /* calls that were not recursive on this edge */
  double tottime;
  double cumtime;
} statsprof_caller_profile;

/* One function, field for field as pstats.FunctionProfile (plus the counts
 * as numbers and the callers). Functions are keyed by (file, line, name).
 * C functions are named as cProfile names them, with file "~" and line 0. */
typedef struct statsprof_function_profile {
  const char *function_name;
  const char *file_name;
  int line_number;
  uint64_t ncalls;          /* total calls */
  uint64_t primitive_calls; /* calls not induced by recursion */
  double tottime;           /* seconds in the function itself */
  double percall_tottime;   /* tottime / ncalls, -1 when ncalls == 0 */
  double cumtime;           /* seconds including callees, recursion once */
  double percall_cumtime;   /* cumtime / primitive_calls, -1 when 0 */
  size_t ncallers;
  statsprof_caller_profile *callers;
} statsprof_function_profile;

/* What statsprof_snapshot is asked for; a record's `mode` says which of the
 * two it is (spike and thread records are deltas). */
typedef enum statsprof_snapshot_mode {
  STATSPROF_CUMULATIVE = 0, /* everything since start (or reset) */
  STATSPROF_DELTA = 1       /* only what happened since the last delta */
} statsprof_snapshot_mode;

/* What a record is, every kind once: XX(name, value, text). The text is the
 * record's "kind" in the JSONL and rows layouts and in the Python dict.
 *   CUMULATIVE  everything since start: all threads merged, or one thread
 *               (thread_id set) from statsprof_snapshot_thread
 *   DELTA       one interval (since the previous delta), all threads merged
 *   SPIKE       one frame over budget: only what that frame touched
 *   THREAD      one interval, one thread (per_thread=on, or
 *               statsprof_snapshot_thread with STATSPROF_DELTA)
 * Kinds may be added in a minor release: handle unknown values. */
#define STATSPROF_RECORD_KIND_MAP(XX) \
  XX(CUMULATIVE, 0, "cumulative")     \
  XX(DELTA, 1, "delta")               \
  XX(SPIKE, 2, "spike")               \
  XX(THREAD, 3, "thread")

typedef enum statsprof_record_kind {
#define STATSPROF__KIND_ENUM(name, value, text) STATSPROF_RECORD_##name = value,
  STATSPROF_RECORD_KIND_MAP(STATSPROF__KIND_ENUM)
#undef STATSPROF__KIND_ENUM
} statsprof_record_kind;

/* The kind's text ("delta"); "unknown" for a value not in the table. Never
 * NULL. Any thread. */
STATSPROF_API const char *statsprof_record_kind_name(statsprof_record_kind kind);

/* Frame times over a record's interval (statsprof_frame_mark). */
typedef struct statsprof_frame_stats {
  uint64_t frames; /* frames that ended in the interval; 0: no markers */
  double mean_s, p50_s, p95_s, p99_s, max_s;
} statsprof_frame_stats;

/* A snapshot: pstats.StatsProfile plus when and what it covers. Immutable
 * once made; owned by whoever received it from statsprof_snapshot. */
typedef struct statsprof_stats_profile {
  double total_tt; /* sum of tottime over all functions, seconds */
  size_t nfunc_profiles;
  statsprof_function_profile *func_profiles;

  statsprof_snapshot_mode mode; /* delta or cumulative */
  statsprof_record_kind kind;   /* what the record is (STATSPROF_RECORD_*) */
  int64_t start_ns;  /* wall clock, ns since the epoch: interval start */
  int64_t end_ns;    /* wall clock, ns since the epoch: interval end */
  uint64_t seq;      /* 1, 2, 3, ... per profiler, counting the merged delta
                        records; any other record has the seq of the merged
                        delta whose interval it falls in (the next one) */
  int64_t pid;
  uint64_t dropped;  /* records lost to full sink queues so far, all sinks */
  uint64_t overflow_functions; /* functions folded into the overflow entry */
  uint64_t sink_errors; /* records sinks failed to take so far, all sinks */
  uint64_t spikes_suppressed; /* spikes not emitted so far: over max_spikes_per_min, or
                                 marked inside another call (statsprof_frame_mark) */

  /* Which thread: 0 and NULL for a record merged over all threads. */
  uint64_t thread_id;
  const char *thread_name;

  statsprof_frame_stats frame_stats; /* delta records */
  uint64_t frame;      /* spike records: the frame's number */
  double frame_time_s; /* spike records: how long that frame took */

  /* Production mode (duty=, window=/every=), in a record whose interval
   * held a window: the seconds inside windows; the share of the work
   * over span_s that was observed; the profiler's own estimated cost as a
   * fraction of the interval. All 0 when profiling is continuous and in a
   * record whose interval held no window. Divide counts and times by duty
   * to estimate all the work over span_s (see span_s below). */
  double observed_s;
  double duty;
  double overhead_est;

  /* per_thread=on: threads that ran in the interval but got no record of
   * their own (at most 64 thread records per interval). Merged records. */
  uint64_t threads_omitted;

  /* Production mode: the seconds this record's estimate stands for, its
   * interval and the intervals with no window just before it (windows are
   * often further apart than the interval), so that summing count/duty
   * over every record estimates the whole run. 0 where duty is 0. */
  double span_s;
} statsprof_stats_profile;

/*
 * Takes a snapshot. STATSPROF_DELTA covers what happened since the previous
 * delta snapshot (or start) and moves that mark; STATSPROF_CUMULATIVE covers
 * everything since start and moves nothing. Frames still running are not in
 * it until they return (as in cProfile). In production mode a delta also
 * takes the windows of its interval (observed_s, duty, span_s), as the
 * emitted records do: they share its mark. Requires the GIL. The caller owns
 * *out and frees it with statsprof_stats_profile_free. STATSPROF_ENOMEM,
 * and no record (a delta's mark does not move), when the profile hook ran
 * out of memory since the last snapshot or stop: some calls are missing.
 */
STATSPROF_API int statsprof_snapshot(statsprof *p, statsprof_snapshot_mode mode,
                                     statsprof_stats_profile **out);

/*
 * Like statsprof_snapshot, for one thread only (its thread_id as in
 * threading.get_ident / PyThreadState.thread_id). A delta covers what the
 * thread did since its previous delta from this function (or start, or
 * reset) and moves only that thread's own mark: merged deltas and the
 * emitted records still have those calls. STATSPROF_EINVAL if the profiler
 * never saw the thread, or the thread ended and a record (or stop) has
 * since retired it: its counts stay in the merged profile.
 */
STATSPROF_API int statsprof_snapshot_thread(statsprof *p, statsprof_snapshot_mode mode,
                                            uint64_t thread_id, statsprof_stats_profile **out);

/* Drops a reference to a snapshot, freeing it with the last one. Accepts
 * NULL. Any thread, no GIL needed. */
STATSPROF_API void statsprof_stats_profile_free(statsprof_stats_profile *s);

/* Takes another reference (e.g. a sink keeping a record past emit); release
 * it with statsprof_stats_profile_free. Returns s. Any thread. */
STATSPROF_API statsprof_stats_profile *statsprof_stats_profile_ref(statsprof_stats_profile *s);

/*
 * Call from the host's main loop (e.g. once per frame). When the configured
 * interval has elapsed since the last record, takes a delta snapshot and
 * emits it to every sink; otherwise returns at once (a clock read and a
 * compare). A tick that emits (or opens a production-mode window) also
 * attaches thread states created since; one that returns at once does not
 * (it would walk every thread state at the host's frame rate).
 * Returns 1 when a record was emitted, 0 when none was due, <0 when no
 * snapshot could be taken. Sinks write on their own threads: their failures
 * are counted (statsprof_sink_errors), logged, and never returned here.
 * Requires the GIL.
 */
STATSPROF_API int statsprof_tick(statsprof *p);

/* Takes a delta snapshot now and emits it, whatever the interval. GIL. */
STATSPROF_API int statsprof_emit_now(statsprof *p);

/* ---- Frames ----------------------------------------------------------- */

/*
 * Ends a frame (call once per frame of the host's loop, e.g. after
 * rendering). The profiler then knows each frame's time: records carry
 * frame statistics, and with config budget=DURATION a frame that took
 * longer is a spike: its own profile (only what that frame touched) is
 * emitted as a record of kind STATSPROF_RECORD_SPIKE, at most
 * max_spikes_per_min in any 60 s (the rest are counted in later records'
 * spikes_suppressed). Returns 1 when a spike record was emitted, else 0; <0 on
 * error. GIL held.
 *
 * A frame marked while another call on the profiler runs (the timer's
 * record waiting for a full queue or a writer=sync sink, with the GIL
 * released; a writer=sync sink's Python inside a spike record) is timed,
 * but its profile cannot be told from the next frame's: neither gets a
 * spike record, and when over budget they count in spikes_suppressed.
 */
STATSPROF_API int statsprof_frame_mark(statsprof *p);

/* ---- Sinks ------------------------------------------------------------- */

/*
 * A sink receives every record. Fill a static const ops struct with
 * designated initializers; `version` is STATSPROF_SINK_VERSION, and methods
 * are only ever appended behind it. Methods may be NULL except emit.
 *
 * Threading: each sink has its own writer thread (config writer=thread, the
 * default): emit runs there, one call at a time, without the GIL, so a slow
 * sink delays only itself. flush and close run on the thread that calls
 * statsprof_flush/stop/destroy, never beside an emit. A sink must not call
 * into the profiler; if it needs the GIL it must take it
 * (PyGILState_Ensure) — the profiler never waits for a sink while holding
 * the GIL.
 *
 * Shutdown is bounded: statsprof_flush, stop and destroy wait for the
 * sinks at most config stop_timeout (default 5 s) each, all sinks
 * together. A sink whose thread is still inside emit when destroy's wait
 * ends is abandoned: its queued records are dropped (counted in `dropped`
 * and reported through the log function), its thread is left running and
 * statsprof_destroy returns. `close` is then called later, on that sink's
 * writer thread, right after its stuck emit returns — or never, if it never
 * does. So `ops` and `ctx` must stay valid until `close` is called, which
 * may be after statsprof_destroy has returned: free `ctx` in close, not
 * after destroy, and do not unload the code behind `ops` while an emit may
 * still be running. An emit that may outlive the interpreter must not take
 * the GIL after Py_FinalizeEx.
 *
 * writer=sync runs emit, flush and close on the emitting thread (inside
 * statsprof_tick/emit_now/stop/destroy, GIL held). Nothing can bound them
 * there: the built-in sinks bound each write by their stall limit (1 s),
 * a host sink must bound its own emit.
 *
 * `close` is called exactly once, also when an emit failed; never after a
 * failed add.
 */
#define STATSPROF_SINK_VERSION 2

typedef struct statsprof_sink_ops {
  int version;
  const char *name; /* for error messages: "jsonl", "my-logger", ... */
  /* Receives a record it does not own, valid during the call only (take a
   * reference with statsprof_stats_profile_ref to keep it). Returns 0, or
   * nonzero (a STATSPROF_E* code) on failure: the failure is counted,
   * logged (rate-limited) and reported in later records' sink_errors; the
   * other sinks still get the record. */
  int (*emit)(void *ctx, const statsprof_stats_profile *rec);
  int (*flush)(void *ctx);
  void (*close)(void *ctx);
  /* Methods below are valid for version >= 2. */
  /* Asks the sink to reopen its output (after logrotate moved it). Called
   * from the thread that calls statsprof_reopen, concurrently with emit:
   * set a flag and act on it in the next emit. */
  void (*reopen)(void *ctx);
} statsprof_sink_ops;

/*
 * Adds a host sink. `ops` and `ctx` must stay valid until the sink's close
 * has been called (see above: for an abandoned sink that is after
 * statsprof_destroy returns); `ctx` is passed back to every method. Any
 * thread holding the GIL. A profiler has at most 16 sinks, those of its
 * config string included. Returns 0; STATSPROF_EINVAL for a NULL `p`, ops
 * or ops->emit or an unsupported ops->version; STATSPROF_ESTATE when the
 * profiler has 16 sinks already, or from a sub-interpreter; STATSPROF_ENOMEM.
 */
STATSPROF_API int statsprof_add_sink(statsprof *p, const statsprof_sink_ops *ops,
                                     void *ctx);

/*
 * Opens a sink named in a config string (`sink=NAME:ARG`): stores the ops and
 * the instance context, or returns nonzero after writing a message that names
 * what was wrong (e.g. the path and the OS error) into err[errlen]:
 * STATSPROF_ECONFIG when `arg` itself is malformed (statsprof_create then
 * fails with STATSPROF_ECONFIG), any other nonzero value when the sink cannot
 * open (STATSPROF_ESINK). `arg` is the text after ':' or NULL.
 */
typedef int (*statsprof_sink_open_fn)(const char *arg, const statsprof_sink_ops **ops,
                                      void **ctx, char *err, size_t errlen);

/*
 * Makes a host sink available by name to config strings, exactly like the
 * built-in ones (jsonl, stderr, ...). Names are letters, digits, '_' and '-',
 * at most 31 of them. Registering an existing name replaces it. Any thread;
 * process-wide. Returns 0; STATSPROF_EINVAL for a NULL `open` or a bad name
 * (empty, too long, another character); STATSPROF_ESTATE when the registry
 * is full: it holds 32 names, the 4 built-in ones included (replacing a
 * name always succeeds). On failure statsprof_errmsg(NULL) says why.
 */
STATSPROF_API int statsprof_register_sink(const char *name, statsprof_sink_open_fn open);

/*
 * Asks every sink to reopen its output at its next record, for external log
 * rotation (logrotate's postrotate: signal the host, which calls this).
 * Any thread; no GIL needed; not while statsprof_destroy(p) may run (it
 * frees the sinks this reads). Returns 0.
 */
STATSPROF_API int statsprof_reopen(statsprof *p);

/* Number of records a sink failed to take, summed over all sinks. Any thread. */
STATSPROF_API uint64_t statsprof_sink_errors(const statsprof *p);

/* Records lost because a sink's queue was full (on_full=drop), all sinks. */
STATSPROF_API uint64_t statsprof_dropped(const statsprof *p);

/*
 * Waits until every record emitted so far has been handed to every sink,
 * then calls each sink's flush — at most config stop_timeout for all sinks
 * together: a sink still busy then is logged and not flushed. A sink still
 * inside the write that an earlier wait (a flush, or an on_full=block
 * record) gave up on is not waited for again. Releases the GIL while
 * waiting if the caller holds it. Returns 0, or STATSPROF_ESTATE, flushing
 * nothing, when another call on this profiler is in progress (on another
 * thread that released the GIL, or from a signal handler) or when called
 * from a sub-interpreter (see Threading above).
 */
STATSPROF_API int statsprof_flush(statsprof *p);

/*
 * Where the profiler reports problems that happen later, off the caller's
 * thread (a sink failing, rate-limited): fn(ud, message), called from any
 * thread, never with profiler locks held, and never after statsprof_destroy
 * returns (destroy waits for a call in progress). NULL restores the
 * default, a line on stderr, written to fd 2 directly (not through stdio)
 * and given up after 1 s when nobody reads it. Call before statsprof_start.
 */
typedef void (*statsprof_log_fn)(void *ud, const char *message);
STATSPROF_API void statsprof_set_log(statsprof *p, statsprof_log_fn fn, void *ud);

/*
 * The default log's writer, for a host's log function that falls back on
 * it (its own logging gone or refusing the message): "statsprof: MESSAGE"
 * as one line on fd 2, written directly (not through stdio), SIGPIPE-safe
 * (a reader that went away is an error, EPIPE, not a signal), and given
 * up after stall_ms of waiting for room on a pipe or terminal nobody
 * reads (the default log waits 1000; 0 writes only what fits now). Any
 * thread; needs no GIL and no profiler, and keeps no state between calls.
 * Returns 0 when the whole line was written, else -1 with errno set
 * (ETIMEDOUT when it stalled).
 */
STATSPROF_API int statsprof_log_stderr(const char *message, int stall_ms);

/* ---- Enable from the environment -------------------------------------- */

/*
 * "Profiling from a config flag": reads the environment variable `name`
 * (NULL means "STATSPROF"). When it is unset, empty, "0", "off", "false"
 * or "no" returns NULL and installs nothing: zero cost. Otherwise creates a
 * profiler from its value ("1", "on", "true" or "yes" means defaults) and
 * starts it; on error prints the message to
 * stderr, returns NULL and leaves the host running (statsprof_errmsg(NULL)
 * keeps the message). Requires the GIL (an initialized interpreter).
 */
STATSPROF_API statsprof *statsprof_from_env(const char *name);

/* ---- Memory ---------------------------------------------------------- */

/*
 * The allocator: fn(ud, ptr, size), one function as Lua's lua_Alloc
 *   ptr == NULL, size > 0: allocate size bytes; NULL on failure;
 *   ptr != NULL, size > 0: resize as realloc does; on failure return NULL
 *                          and leave ptr as it was;
 *   ptr != NULL, size == 0: free ptr; the return value is ignored.
 * statsprof never asks for 0 bytes and never frees NULL.
 */
typedef void *(*statsprof_alloc_fn)(void *ud, void *ptr, size_t size);

/*
 * Makes every allocation of the library go through fn (NULL: back to
 * realloc and free): profilers, tables, records, formatted buffers, sink
 * state, thread names, and the per-thread call stacks of the profile hook
 * (these used to come from CPython's raw allocator, PyMem_RawMalloc; they
 * are ours now). CPython's own objects, including the small per-thread
 * state objects the hook installs, stay with CPython's allocator.
 *
 * Process-wide, not per profiler, because what it allocates outlives
 * profilers: a record (and the label strings it shares) is freed by
 * whoever drops its last reference, on any thread, after
 * statsprof_destroy too, and thread names belong to OS threads. So fn
 * must be thread-safe: the library calls it concurrently from the host's
 * threads, the sinks' writer threads, the timer thread and threads that
 * exit (a thread's name record is freed then).
 *
 * Set it first, like sqlite3_config: returns STATSPROF_ESTATE, changing
 * nothing, while any block allocated through the current allocator is
 * still alive (a profiler, a record, a buffer, a thread's name record — an
 * OS thread keeps one from its first profiled call or
 * statsprof_name_thread until it exits), so a block is never freed by an
 * allocator that did not make it. Must not run concurrently with any other
 * statsprof call. Returns 0 otherwise. No GIL needed.
 *
 * Out of memory is STATSPROF_ENOMEM from the call that needed the memory,
 * with a message. The profile hook cannot return errors: a call it could
 * not count is remembered and the next statsprof_snapshot,
 * statsprof_snapshot_thread or statsprof_stop returns STATSPROF_ENOMEM
 * (as cProfile's disable and getstats raise MemoryError). A sink's out of
 * memory is a sink error (counted, and logged with the sink's name).
 */
STATSPROF_API int statsprof_set_allocator(statsprof_alloc_fn fn, void *ud);

/*
 * Frees a buffer the library handed to the caller (statsprof_format_jsonl,
 * statsprof_format_jsonl_rows) through the allocator that made it. Accepts
 * NULL. Any thread. With the default allocator free() works too (the
 * contract of earlier versions), but the block then stays counted as
 * alive, and statsprof_set_allocator keeps returning STATSPROF_ESTATE.
 */
STATSPROF_API void statsprof_free(void *ptr);

/* ---- Formatting helpers ------------------------------------------------ */

/*
 * Writes `rec` as one JSON line (with the trailing '\n') into a buffer that
 * the caller frees with statsprof_free(). Returns 0 and sets *out and *len,
 * or an error (STATSPROF_ENOMEM).
 * Any thread; no GIL needed.
 */
STATSPROF_API int statsprof_format_jsonl(const statsprof_stats_profile *rec,
                                         char **out, size_t *len);

/*
 * Writes `rec` in the rows layout (sink=jsonl:PATH,layout=rows): flat JSON
 * lines, one for the record itself (frame times, counters, line count),
 * then one per function and one per caller edge, each starting with the
 * record's time and identity. Every line ends in '\n'; README.md lists the
 * fields.
 * Returns 0 and sets *out (freed by the caller with statsprof_free()) and
 * *len, or an error (STATSPROF_ENOMEM). Any thread; no GIL needed.
 */
STATSPROF_API int statsprof_format_jsonl_rows(const statsprof_stats_profile *rec,
                                              char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* STATSPROF_H */
