/* internal.h — types shared by the library's files. Not installed. */
#ifndef STATSPROF_INTERNAL_H
#define STATSPROF_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <stdint.h>

#include "alloc.h"
#include "pycompat.h"
#include "statsprof.h"

#define STATSPROF__NONE UINT32_MAX
#define STATSPROF__ERRLEN 512

/* ---- clock.c ----------------------------------------------------------- */

typedef enum { STATSPROF__CLOCK_WALL = 0, STATSPROF__CLOCK_CPU = 1 } statsprof__clock_kind;

/* Ticks of the hook's clock: TSC cycles when the TSC is invariant, else ns. */
void statsprof__clock_init(void);
extern int statsprof__clock_use_tsc;
extern double statsprof__clock_sec_per_tick;

/* A duration (ns, >= 0) in ticks, at most UINT64_MAX / 2 (a huge one
 * means "never": the conversion must not overflow, nor now + it wrap). */
uint64_t statsprof__ns_to_ticks(int64_t ns);
int64_t statsprof__wall_ns(void);     /* CLOCK_REALTIME, ns since the epoch */
int64_t statsprof__mono_ns(void);     /* CLOCK_MONOTONIC */
uint64_t statsprof__thread_cpu_ns(void);

/* The TSC itself (x86; 0 elsewhere, where statsprof__clock_use_tsc is 0). */
static inline uint64_t statsprof__rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
  uint32_t lo, hi;
  __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
#else
  return 0;
#endif
}

static inline uint64_t statsprof__ticks(void) {
  if (statsprof__clock_use_tsc) return statsprof__rdtsc();
  return (uint64_t)statsprof__mono_ns();
}

/* ---- config.c: values, keys ------------------------------------------- */

/* Every number in a config string or a sink argument goes through one
 * parser, statsprof__parse_value: plain decimal ("12", "2.5", ".5") and a
 * unit from the value's list; no sign, hex, exponent, inf or nan. */
typedef struct statsprof__unit {
  const char *suffix; /* "ms", "k", "%", or "" for a bare number */
  uint64_t scale;     /* what one of it is worth in the value's base unit */
} statsprof__unit;

typedef struct statsprof__word {
  const char *word;
  uint64_t value;
} statsprof__word;

typedef struct statsprof__value_spec {
  const statsprof__unit *units; /* numbers: ends with {NULL}; 0 needs no unit */
  const statsprof__word *words; /* or words: ends with {NULL} */
  int whole;                    /* numbers: no fractional part */
  uint64_t min, max;            /* in base units */
  const char *help;             /* what is expected, for messages */
} statsprof__value_spec;

extern const statsprof__unit statsprof__duration_units[]; /* ns, us, ms, s, m, h -> ns */
extern const statsprof__unit statsprof__size_units[];     /* bytes, k, M, G (1024s) */
extern const statsprof__unit statsprof__count_units[];    /* a bare whole number */

/* Parses text[0, len) as `spec` says into *out. On error returns
 * STATSPROF_ECONFIG and writes why (e.g. "not a plain decimal number",
 * "out of range") into why[whylen]. */
int statsprof__parse_value(const statsprof__value_spec *spec, const char *text, size_t len, uint64_t *out,
                           char *why, size_t whylen);
/* Narrows [*b, *e) to its text without surrounding white space. */
void statsprof__trim(const char **b, const char **e);

#define STATSPROF__MAX_SINKS 16

typedef struct statsprof__sink_spec {
  char *name;        /* "jsonl", "stderr", a registered host sink ... */
  char *arg;         /* text after ':' or NULL */
  size_t offset;     /* of the `sink=` item in the config string */
  size_t arg_offset; /* of arg in the config string */
} statsprof__sink_spec;

/* Where events come from (hook.c): auto picks evalframe with builtins=off
 * where it counts exactly (else monitoring on 3.12+, setprofile on 3.11),
 * and with builtins monitoring on 3.12+, setprofile on 3.11. */
enum {
  STATSPROF__SOURCE_AUTO = 0,
  STATSPROF__SOURCE_MONITORING = 1,
  STATSPROF__SOURCE_SETPROFILE = 2,
  STATSPROF__SOURCE_EVALFRAME = 3,
  STATSPROF__NSOURCES
};

typedef struct statsprof__config {
  int64_t interval_ns;      /* tick emits a record this often */
  statsprof__clock_kind clock;
  int builtins;             /* profile C functions too (cProfile's builtins=True) */
  int source;               /* STATSPROF__SOURCE_*; never AUTO after create */
  uint32_t max_functions;   /* table cap; the rest folds into one entry */
  int writer_sync;          /* writer=sync: sinks run on the emitting thread */
  int on_full_block;        /* on_full=block: wait for room instead of dropping */
  uint32_t queue;           /* records each sink's ring holds */
  int trigger_timer;        /* trigger=timer: a thread takes the snapshots */
  int compensate;           /* subtract the profiler's own per-event cost */
  int64_t budget_ns;        /* frame budget: longer frames are spikes; 0 off */
  uint32_t max_spikes_per_min;
  int per_thread;           /* also emit one record per thread */
  int64_t window_ns;        /* production mode: hook installed this long */
  int64_t every_ns;         /* ... once per this period; 0: continuous */
  double max_overhead;      /* adaptive: keep own cost under this fraction */
  double duty;              /* as given (fraction), 0 if not */
  int64_t stop_timeout_ns;  /* how long stop/destroy/flush wait for the sinks */
  size_t nsinks;
  statsprof__sink_spec sinks[STATSPROF__MAX_SINKS];
} statsprof__config;

void statsprof__config_defaults(statsprof__config *c);
/* Parses `text` into `c` (defaults first). On error writes a message naming
 * the offending text and its offset into err and returns STATSPROF_ECONFIG
 * (or STATSPROF_ENOMEM). */
int statsprof__config_parse(const char *text, statsprof__config *c, char *err, size_t errlen);
/* Row i of the key table (NULL past the last): its name and value spec,
 * for the test that holds README's table of keys against it. */
const char *statsprof__config_key(int i, statsprof__value_spec *spec);
void statsprof__config_free(statsprof__config *c);
/* "1.5s", "200ms", "2m", "10us" -> ns; -1 when malformed. */
int64_t statsprof__parse_duration(const char *s);

/* Message helpers (text.c): `s` quoted for a message, at most `max` bytes
 * of it, the middle elided ("/tmp/aaa...aaa/x.jsonl") so the end of a long
 * path and whatever follows it in the message survive. */
void statsprof__quote(char *out, size_t n, const char *s, size_t len, size_t max);
/* How much of a path a message quotes: with the rest of the message it
 * fits STATSPROF__ERRLEN. */
#define STATSPROF__QUOTE_PATH 280
/* snprintf that is fine with truncating (messages have fixed buffers). */
void statsprof__msg(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends to the message in out[n] (a list of names, ...), as far as it fits. */
void statsprof__msg_add(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- table.c: functions, labels, caller edges ------------------------- */

/* Counters are cProfile's: callcount (total), reccallcount (recursive), tt
 * (cumulative, counted at recursion level 0), it (inline = own time). */
typedef struct statsprof__counters {
  uint64_t callcount;
  uint64_t reccallcount;
  uint64_t tt;
  uint64_t it;
} statsprof__counters;

/* An entry is one function in one thread: the hook only ever touches its
 * own thread's entries, so recursion levels live here and threads that
 * interleave cannot confuse each other. Snapshots merge entries by label. */
typedef struct statsprof__entry {
  statsprof__counters c;
  uint32_t label, slot;
  uint32_t last_edge;     /* fast path: the edge used by the previous call, */
  uint32_t other_edge;    /* and the one before it from another caller */
  uint32_t level;         /* recursion depth of this function in its thread */
} statsprof__entry;

typedef struct statsprof__edge {
  statsprof__counters c;
  uint32_t caller, callee; /* entries (of one thread) */
  uint32_t level, pad;
} statsprof__edge;

typedef struct statsprof__label {
  const char *file;
  const char *name;
  int line;
  uint32_t hash;
} statsprof__label;

/* A thread's record shared by every profiler (threads.c). */
typedef struct statsprof__osthread statsprof__osthread;

enum {
  STATSPROF__SLOT_FREE = 0, /* no thread: the next new thread takes it */
  STATSPROF__SLOT_LIVE,     /* its OS thread runs */
  STATSPROF__SLOT_ENDED,    /* its thread exited: one last record, then retired */
  STATSPROF__SLOT_RETIRED,  /* the counts of threads that ended (one per table) */
};

/* One OS thread's counts (threads.c). `local` maps label -> this slot's
 * entry. A free slot keeps its entries (counts zero) for the next thread. */
typedef struct statsprof__slot {
  unsigned long thread_id;
  statsprof__osthread *os; /* referenced; NULL when free or retired */
  const char *name;        /* in the string store; NULL until known */
  PyObject *thread_ref;    /* its threading.Thread's instance dict, or NULL */
  uint32_t *local;
  uint32_t nlocal;
  uint8_t state;
  uint8_t active; /* ran Python since the last record */
} statsprof__slot;

/* Append-only string storage shared (refcounted) with snapshots, so a
 * snapshot can point at labels without copying and outlive the profiler. */
typedef struct statsprof__strings statsprof__strings;
statsprof__strings *statsprof__strings_new(void);
const char *statsprof__strings_add(statsprof__strings *s, const char *str, size_t len);
void statsprof__strings_ref(statsprof__strings *s);
void statsprof__strings_unref(statsprof__strings *s);

typedef struct statsprof__table {
  statsprof__label *labels;
  uint32_t nlabels, caplabels;
  uint32_t max_functions;
  uint64_t overflow_functions; /* distinct functions folded into label 0 */

  statsprof__entry *entries;
  uint32_t nentries, capentries;
  statsprof__edge *edges;
  uint32_t nedges, capedges;
  statsprof__slot *slots;
  uint32_t nslots, capslots;
  uint32_t retired;           /* the slot of ended threads' counts, or NONE */

  uint32_t *label_index; /* open addressing: label index or NONE */
  uint32_t label_mask;
  uint32_t *edge_index; /* open addressing: edge index or NONE */
  uint32_t edge_mask;

  /* C functions: PyMethodDef* -> label (as cProfile keys them) */
  struct statsprof__cfunc_slot {
    const void *ml;
    uint32_t entry;
  } *cfuncs;
  uint32_t cfunc_mask, ncfuncs;

  statsprof__strings *strings;
} statsprof__table;

int statsprof__table_init(statsprof__table *t, uint32_t max_functions);
void statsprof__table_free(statsprof__table *t);
/* Finds or adds the label (file, line, name); returns its index, 0 (the
 * overflow label) when the table is full, NONE on allocation failure. */
uint32_t statsprof__table_intern(statsprof__table *t, const char *file, int line,
                                 const char *name);
/* A free slot (reused, or added); NONE on allocation failure. */
uint32_t statsprof__table_slot_new(statsprof__table *t);
/* The entry of `label` in `slot`, added on first use; NONE on failure. */
uint32_t statsprof__table_entry(statsprof__table *t, uint32_t slot, uint32_t label);
/* Finds or adds the caller->callee edge; NONE on allocation failure. */
uint32_t statsprof__table_edge(statsprof__table *t, uint32_t caller, uint32_t callee);
uint32_t statsprof__table_cfunc_find(const statsprof__table *t, const void *ml);
int statsprof__table_cfunc_add(statsprof__table *t, const void *ml, uint32_t entry);
/* Zeroes every counter (keeps labels). */
void statsprof__table_clear_counts(statsprof__table *t);

/* ---- hook.c, hotpath.h, source_*.c: the event sources and the hot path */

/* The event source's and counting core's slice of config (hook.c,
 * threads.c, snapshot.c), fixed at create. */
typedef struct statsprof__source_config {
  statsprof__clock_kind clock; /* what the hook's times are */
  int builtins;                /* count C functions too */
  int source;                  /* STATSPROF__SOURCE_MONITORING, _SETPROFILE or _EVALFRAME, never AUTO */
  int fallback;                /* evalframe chosen by auto: monitoring/setprofile where it is not exact */
  int scratch;                 /* calibration's (calibrate.c): evalframe on 3.13 walks no classes */
} statsprof__source_config;

/* The event source: how CPython's events reach the counting core
 * (PyEval_SetProfile per thread state, sys.monitoring on 3.12+, or PEP
 * 523's frame-evaluation function with builtins=off), its
 * per-thread states and the calibrated cost it subtracts. Set up at create
 * from its config slice (statsprof__source_init); the hook reads and
 * writes it on every profiled thread under the GIL, start/stop/tick
 * attach and detach under the GIL too. */
#define STATSPROF__CFUNC_HOT 256
#define STATSPROF__NO_KEY UINT64_MAX /* no thread's cached key (those start at 0) */
#define STATSPROF__MON_CALLBACKS 9     /* sys.monitoring events with a callback of ours */
typedef struct statsprof__source {
  statsprof__source_config config; /* clock, builtins, which source */
  struct statsprof__thread *threads; /* live per-thread states */
  struct statsprof__thread *pool;    /* inert ones whose hook was removed (hook.c) */
  int mon_tool;               /* source=monitoring (evalframe: PY_UNWIND): our sys.monitoring tool id, or -1 */
  PyObject *mon_cbs[STATSPROF__MON_CALLBACKS]; /* source=monitoring: our callback objects, which
                                                * Python may keep past release (source_monitoring.c) */
  PyObject *bootstrap; /* source=setprofile: threading's profile hook, which Python may
                        * keep past release (source_setprofile.c) */
  int mon_on;                 /* ... its events are on (evalframe on 3.13: those of __init__) */
  PyObject *ef_inits;         /* evalframe on 3.13: the code objects of __init__ functions counted
                               * through sys.monitoring, weakly, by id (source_evalframe.c), or NULL */
  Py_ssize_t ef_prune_at;     /* ... its size at which dead ones are dropped */
  uint8_t ef_init_tool;       /* ... 1 << mon_tool while they are, else 0 */
  PyObject *ef_set_local;     /* ... sys.monitoring.set_local_events, and their events */
  long ef_init_events;
  int ef_walked;              /* ... this run's classes were walked (at its first attach) */
  PyObject *ef_probe;         /* ... a type of ours that tells whether other types got version
                               * tags since the last walk, or NULL */
  unsigned int ef_version;    /* ... the tag it got then */
  int ef_func_watcher;        /* ... the id + 1 of the function watcher that finds new ones, 0
                               * before the run's first attach, -1 when none was left */
  uint64_t tls_key;           /* monitoring, evalframe: this run's key for the threads' states
                               * cached in thread-local storage (hook.c); 0 while off */
  uint64_t fast_key;          /* monitoring: tls_key while every fast path applies (events
                               * on, the TSC, no frame tracking), else STATSPROF__NO_KEY:
                               * one compare in each callback instead of four */
  int oom;                    /* sticky: the hook could not allocate */
  uint64_t cost_py, cost_c; /* calibrated ticks per Python / C profile event (start) */
  uint64_t cost_rej;        /* ... per event delivered but not counted (a CALL of a
                             * Python function or a type on source=monitoring, a C
                             * call with builtins=off on source=setprofile) */
  uint64_t cost_box;        /* ... extra per sys.monitoring event whose bytecode
                             * offset CPython boxes in a new int (past its small ints;
                             * source=setprofile on 3.12+ runs over sys.monitoring too) */
  long sp_small_max;        /* source=setprofile on 3.12+: the largest offset not boxed */
  uintptr_t mon_small0;     /* source=monitoring: where CPython's cached ints 0.. lie: */
  uintptr_t mon_small_span; /* an offset outside [small0, small0 + span) is boxed */
  struct statsprof__cfunc_hot {
    const void *ml;
    uint32_t label;
  } cfunc_hot[STATSPROF__CFUNC_HOT]; /* in front of the table's C-function map */
  uint64_t compensate_mask; /* all ones with compensate=on, else 0 */
  uint64_t own_scale;       /* Python own time x own_scale / 2^16 (compensate) */
  int tsc;                  /* the hook's clock is the TSC, which the fast paths read inline */
  /* ticks: the calibrated cost of per-thread states already unlinked
   * (hook.c adds each one's at unlink, e.g. when its thread state ended
   * with PyGILState_Release), so that own cost never leaves with them */
  uint64_t cost_gone;
} statsprof__source;

/* No threads, no tool id, raw times (own_scale 1.0) until start sets the
 * calibrated costs. */
void statsprof__source_init(statsprof__source *s, const statsprof__source_config *c);
/* Whether the source makes and keeps the per-thread states itself, found
 * through thread-local storage (monitoring, evalframe), rather than
 * installing each one on its thread state (setprofile). */
static inline int statsprof__source_owns_states(const statsprof__source *s) {
  return s->config.source != STATSPROF__SOURCE_SETPROFILE;
}

/* One Python call on a thread's profiled call stack (not a host frame
 * marker: those are frame.c's). */
typedef struct statsprof__callframe {
  uint64_t base;    /* entry time less the thread's compensated cost then (spent & compensate_mask) */
  uint64_t subt;    /* time spent in callees */
  uint64_t removed; /* time the bytecode scale took from callees' subtrees */
  uint32_t entry;
  uint32_t edge;
} statsprof__callframe; /* 32 bytes: indexing the stack is a shift */

/* Per-thread state: the object installed as the profile function's `obj`,
 * so the hook finds its thread's stack without any lookup. Owned by the
 * thread state (c_profileobj); dies with it. */
typedef struct statsprof__thread {
  PyObject_HEAD
  statsprof *p;
  statsprof__callframe *stack;
  uint32_t depth, cap;
  uint32_t skipped;       /* calls not pushed (stack allocation failed) */
  uint32_t slot;          /* this thread's slot in the table */
  uint32_t nlocal;        /* copy of the slot's label -> entry map, */
  union {
    uint32_t *local;                      /* read on every call without a lookup */
    struct statsprof__osthread *grave_os; /* once buried (hook.c): its OS thread, referenced */
  };
  uint64_t spent;         /* calibrated profiler cost of its events, ticks */
  uint64_t slowdown;      /* own time removed by the bytecode scale, ticks */
  uint64_t cmark;         /* builtins=off on source=setprofile: the top frame's own */
  uint32_t cdepth;        /* clock at its pending C call's start, and its depth (0: none) */
  int active;             /* entered a function since the last record */
  /* evalframe on 3.12+ (source_evalframe.c): the innermost counted evaluation
   * by value (its frame, the thread's current frame when it began, whether its
   * return was counted early); each evaluation keeps the outer one's values in
   * its own locals. Never pointers into a C stack: greenlet moves those. */
  void *ef_frame, *ef_cur;
  int ef_left;
  unsigned long owner;    /* the thread (ident) whose state it was made for */
  struct statsprof__thread *prev, *next; /* p->src.threads, or p->src.pool */
} statsprof__thread;

int statsprof__hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
int statsprof__hook_ready(void); /* type + co_extra index; GIL held */
uint64_t statsprof__epoch(void); /* changes at every Py_Finalize */
/* Whether the interpreter p started on still runs (not finalized since). */
int statsprof__python_alive(const statsprof *p);
/* Whether what p made in its interpreter can still be released through
 * Python's API by this thread: alive, or inside Py_Finalize with this
 * thread's state current, where objects' destructors (a module-level
 * profiler's, say) still run and so do Python code and events. */
int statsprof__python_reachable(const statsprof *p);
/* Whether the calling thread holds the GIL. Not
 * PyGILState_Check: once a sub-interpreter exists it answers 1 on every
 * thread, and releasing a GIL this thread does not hold is fatal. */
int statsprof__holds_gil(void);
/* Installs the hook on the calling thread's own state (GIL held). */
int statsprof__attach_self(statsprof *p);
/* Attaches every thread state of the interpreter that has no profile
 * function. The caller's own: self > 0 attaches it even if it has one
 * (start), self == 0 treats it like the others, self < 0 skips it (timer). */
int statsprof__attach_all(statsprof *p, int self);
/* Closes open frames of every thread, then removes the hook everywhere. */
void statsprof__detach_all(statsprof *p);
/* Counts frames still open as if they returned now (cProfile's disable). */
void statsprof__flush_thread(statsprof__thread *t);
/* A per-thread state for p on the thread `owner` (its ident), not yet
 * bound to a slot: one from p's pool made for that thread, else a new one
 * (GIL held; runs no Python code, so it may be called under the
 * thread-state lock). The caller gets one reference. */
statsprof__thread *statsprof__thread_new(statsprof *p, unsigned long owner);
/* Takes a reference to t after its hook was removed: t goes inert into
 * p's pool rather than being freed (see hook.c). */
void statsprof__thread_pool(statsprof *p, statsprof__thread *t);
/* A new key for a run of a source whose states are cached per thread
 * (statsprof__tls_thread, hotpath.h): never 0, never reused. */
uint64_t statsprof__tls_key_next(void);
/* Frees pooled states of threads that ended: GIL held. */
void statsprof__thread_pool_trim(statsprof *p);
/* At destroy: the pooled states of threads that may still run go to the
 * process's grave (hook.c), the others are freed. GIL held. */
void statsprof__thread_pool_bury(statsprof *p);
/* Makes t inert and forgets it (its thread state may still hold it). */
void statsprof__thread_orphan(statsprof__thread *t);
/* After the interpreter that made p's per-thread states is gone: frees
 * what they hold of ours and forgets them (no Python API). */
void statsprof__thread_states_abandon(statsprof *p);
/* Makes *type from spec once per interpreter (forgotten at Py_Finalize). */
int statsprof__type_ready(PyTypeObject **type, PyType_Spec *spec);

/* The sources behind statsprof__attach_all and _detach_all (GIL held).
 * source_setprofile.c: the profile function on each thread state. */
int statsprof__setprofile_attach_self(statsprof *p);
int statsprof__setprofile_attach_all(statsprof *p, int self);
void statsprof__setprofile_detach_all(statsprof *p);
/* Installs / removes threading.setprofile so new Python threads get the hook;
 * at release, that hook made inert wherever Python still keeps it. */
int statsprof__threading_hook(statsprof *p, int install);
void statsprof__setprofile_release(statsprof *p);
/* A per-thread state called as a Python profile function (tp_call): what
 * sys.setprofile(sys.getprofile()) installs (source_setprofile.c). */
PyObject *statsprof__setprofile_call(PyObject *self, PyObject *args, PyObject *kw);
/* source_monitoring.c (3.12+; elsewhere only the first three exist):
 * its callbacks' type (vectorcall objects), made once per interpreter and forgotten at
 * Py_Finalize; at release, events off, the tool id given back and the
 * callbacks made inert. */
int statsprof__monitoring_ready(void);
void statsprof__monitoring_forget(void);
void statsprof__monitoring_release(statsprof *p);
int statsprof__monitoring_attach_all(statsprof *p);
void statsprof__monitoring_detach_all(statsprof *p);
/* For the frame-evaluation source from 3.13 (source_monitoring.c): whether
 * one of statsprof's tool ids is free; PY_UNWIND on (taking one), to a
 * callback that does nothing, so that generators are closed as under
 * cProfile; and off again (the id is freed by release). GIL held. */
int statsprof__monitoring_tool_free(void);
int statsprof__monitoring_unwind_on(statsprof *p);
/* After a change to mon_on, tls_key, the clock or frame tracking. */
void statsprof__monitoring_fast_update(statsprof *p);
void statsprof__monitoring_unwind_off(statsprof *p);
/* 3.13 (STATSPROF__EF_INIT): the frame-evaluation source leaves the calls
 * of __init__ functions to sys.monitoring (source_evalframe.c says why):
 * PY_START and PY_RETURN set as local events on code, counted by the
 * monitoring source's callbacks (and PY_UNWIND's callback leaves such a
 * frame). 0, or -1 with the exception cleared. GIL held. */
#define STATSPROF__EF_INIT (PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000)
#if STATSPROF__EF_INIT
int statsprof__monitoring_watch_init(statsprof *p, PyObject *code);
#endif
/* source_evalframe.c: whether the
 * frame-evaluation source would count exactly here and its slot is free:
 * 1, else why, and 0, or -1 when the reason is this interpreter's version
 * or self-check, already given once, or -2 when an exception from outside
 * interrupted the self-check (kept for statsprof__calibrate_reraise: the
 * start fails with STATSPROF_EPYTHON); installing and removing its
 * function; at Py_Finalize, forgetting it. GIL held. */
int statsprof__evalframe_usable(char *why, size_t n);
int statsprof__evalframe_attach_all(statsprof *p);
void statsprof__evalframe_detach_all(statsprof *p);
void statsprof__evalframe_forget(void);
/* A forked child: an attach another thread had under way at fork never
 * ends there. */
void statsprof__evalframe_after_fork(void);
/* At free: nothing of the source may point at p any more. */
void statsprof__evalframe_release(statsprof *p);

/* ---- tstates.c: thread states the profiler does not own ---------------- */

/* Installs p's hook on every thread state of `me`'s interpreter that has
 * no profile function, except `me` when skip_me. GIL held. */
void statsprof__tstates_install(statsprof *p, PyThreadState *me, int skip_me);
/* Removes p's hook from every thread state of `me`'s interpreter. GIL. */
void statsprof__tstates_remove(statsprof *p, PyThreadState *me);
/* Whether a thread state of me's interpreter belongs to thread `ident`:
 * only such a thread can be inside CPython's call of a profile function.
 * -1 when CPython's thread-state lock is taken (perhaps by this thread,
 * sys._current_frames collecting into a finalizer that destroys a
 * profiler): never waited for. */
int statsprof__tstates_has_thread(PyThreadState *me, unsigned long ident);
/* fork's handlers (fork.c): phase 0 before fork takes 3.11's thread-state
 * list lock, 1 (parent) and 2 (child) give it back; nothing on 3.12+. */
void statsprof__runtime_lock_atfork(int phase);

/* ---- threads.c: OS threads, names, retirement ------------------------- */

/* Binds t to the calling OS thread's slot (made on first sight). Runs on
 * t's own thread, at its first event. NONE on allocation failure. */
uint32_t statsprof__thread_bind(statsprof *p, statsprof__thread *t);
void statsprof__osthread_unref(statsprof__osthread *os);
void statsprof__osthread_ref(statsprof__osthread *os);
int statsprof__osthread_ended(const statsprof__osthread *os);
int statsprof__osthread_is_self(const statsprof__osthread *os); /* the calling thread's */
/* Names the slot from threading if its Thread was not found yet (the hook's
 * slow path: dictionary lookups only). */
void statsprof__threads_seek_name(statsprof *p, uint32_t slot);
/* Refreshes every slot's name (explicit, else threading's). GIL. */
void statsprof__threads_name(statsprof *p);
/* Drops the slots' references to Python objects (GIL held, or Python gone). */
void statsprof__threads_release(statsprof *p, int python_alive);
/* Marks slots that ran since the last record, and slots whose thread ended. */
void statsprof__threads_scan(statsprof *p);
/* Folds ended threads' counts into the retired slot; frees their slots.
 * After Py_Finalize it drops their Python references without touching them. */
void statsprof__threads_retire(statsprof *p);
/* The slot of a thread ident, or NONE. */
uint32_t statsprof__threads_find(statsprof *p, uint64_t thread_id);

/* ---- frame.c: the host's frame markers, frame statistics, spikes ------ */

/* A table entry's or edge's counters at the start of the frame that last
 * touched it (stamp: that frame's number; 0 is no frame). */
typedef struct statsprof__frame_base {
  uint64_t stamp;
  statsprof__counters f0;
} statsprof__frame_base;

/* Everything statsprof_frame_mark keeps. All of it under the GIL: the host
 * thread that marks frames writes the frame number, times and spike
 * budget; the hook (any profiled thread) reads `tracking` and `no` and
 * appends to the touched lists and bases. */
/* Frame times kept per record for its percentiles: past this many (4.5
 * hours at 60 fps between records) a uniform sample of them, so a host
 * that marks frames for days between records uses 512 KiB, not a growing
 * array; count, mean and max stay exact. */
#define STATSPROF__FRAME_TIMES 65536

typedef struct statsprof__frames {
  int64_t budget_ns;           /* config: longer frames are spikes; 0 off */
  uint32_t max_spikes_per_min; /* config */
  int tracking;                /* markers in use: the hook records touches */
  uint64_t no;                 /* current frame number (1, 2, ...) */
  /* Per entry / edge, allocated when first touched. */
  statsprof__frame_base *entries, *edges;
  uint32_t nentries, nedges;
  uint32_t *touched_entries, ntouched_entries, captouched_entries;
  uint32_t *touched_edges, ntouched_edges, captouched_edges;
  int lost;                    /* a touched list could not grow: no spike */
  int oom;                     /* ... sticky, for the next snapshot or stop */
  int64_t start_ns;            /* the current frame's start, monotonic */
  uint64_t held;               /* frames marked inside the current one (frames_mark_held) */
  int partial;                 /* the current frame's touches are incomplete: no spike */
  uint64_t *times;             /* ns, frames ended in the current interval while running: */
  size_t ntimes, captimes;     /* ... all of them, or a uniform sample of STATSPROF__FRAME_TIMES */
  uint64_t nframes, sum_ns, max_ns; /* ... and exactly, their number, total and longest */
  uint64_t sample_rng;         /* the sample's random state (xorshift64) */
  int64_t *spike_times;        /* the last max_spikes_per_min spikes' times (a ring), */
  uint32_t nspike_times, spike_next; /* ... how many, the oldest */
  uint64_t spikes_suppressed;
} statsprof__frames;

void statsprof__frames_init(statsprof__frames *f, int64_t budget_ns, uint32_t max_spikes_per_min);
void statsprof__frames_free(statsprof__frames *f);
/* The hook's first update of an entry / edge in a frame: saves its
 * counters and lists it (out of line: the hook's inline check is
 * `stamp != no`). */
void statsprof__frame_touch_entry(statsprof__frames *f, const statsprof__table *t, uint32_t entry);
void statsprof__frame_touch_edge(statsprof__frames *f, const statsprof__table *t, uint32_t edge);
/* Forgets what frames touched and the times of the frames that ended in
 * the interval (after a reset of the counters). */
void statsprof__frame_forget(statsprof__frames *f);
/* Frame statistics of the interval so far; starts a new interval. */
void statsprof__frame_stats_take(statsprof__frames *f, statsprof_frame_stats *out);
/* Ends the current frame at now_ns (monotonic): records its time if
 * `running` (the profiler started); returns 1 with its length in
 * *spike_ns when it deserves a spike record (over budget, `hooked` — the
 * hook on: running, in a production-mode window — nothing lost nor
 * partial, within max_spikes_per_min). The
 * caller builds that record from the touched lists before frames_begin.
 * STATSPROF_ENOMEM when the frame's time could not be kept. */
int statsprof__frames_end(statsprof__frames *f, int64_t now_ns, int running, int hooked, uint64_t *spike_ns);
/* Starts the next frame, with nothing touched: at now_ns for the first
 * frame, else where frames_end (or a mark nested in its spike) put it. */
void statsprof__frames_begin(statsprof__frames *f, int64_t now_ns);
/* A mark made while another call holds the profiler: ends the frame's
 * time only (its touches stay with the next frame, see frame.c). 1 when
 * it was the first mark, which starts frame tracking. */
int statsprof__frames_mark_held(statsprof__frames *f, int64_t now_ns, int running, int hooked);
/* The hook goes on with a frame under way (start, a production-mode window
 * opening): what the frame touched before is missing, so no spike. */
void statsprof__frames_cut(statsprof__frames *f);

/* ---- calibrate.c ------------------------------------------------------ */

/* The profiler's own cost per profile event in ticks of `clock`, for
 * Python functions, for C functions, for events the source delivers that
 * are not counted and, on sys.monitoring, for an event whose offset is
 * boxed; and the bytecode slowdown. Measured once per process, event
 * source and clock (on sys.monitoring, per builtins setting: builtins=off
 * takes other events) on the calling thread; at every later call a bare loop
 * timed after each of the calibration's rounds runs again, and when Python code now runs
 * clearly faster than it did then, the costs shrink in proportion (speed).
 * GIL held; waits, GIL released, for another thread's calibration.
 * STATSPROF_ESTATE when called from inside a calibration on this thread (a
 * signal handler starting a profiler), STATSPROF_ENOMEM when out of memory,
 * STATSPROF_EPYTHON when an exception from outside interrupted it (nothing
 * cached in either: measured again at the next call). */
typedef struct statsprof__costs {
  uint64_t py, c, rej, box; /* ticks per event, as statsprof__source's cost_* */
  uint64_t own_scale;       /* bytecode under the profiler: x 2^16 / own_scale slower */
  double bare_call;         /* ticks per call of a bare Python loop, the probe: its median
                             * over the calibration's rounds */
  double speed;             /* the loop's time now over bare_call (0: not measured, as at
                             * calibration); below 0.8 the costs were scaled by it */
} statsprof__costs;
int statsprof__calibrate(statsprof__clock_kind clock, int source, int builtins, statsprof__costs *out);
/* After a calibration that failed with STATSPROF_EPYTHON (an exception
 * from outside, e.g. a signal handler's, interrupted it), at the end of the
 * start, once the host's pending exception is back: called from Python
 * code, the exception is left set for the caller to raise; else Ctrl-C is
 * raised again in this thread's next Python code and anything else is
 * reported as unraisable. */
void statsprof__calibrate_reraise(void);
/* An exception that start's own Python code raised (a signal handler's
 * KeyboardInterrupt, MemoryError) is taken aside for
 * statsprof__calibrate_reraise; the first one is kept. */
void statsprof__calibrate_keep_raised(void);
/* pthread_atfork's child: a calibration in progress at fork ran on a thread
 * the child does not have (fork.c). */
void statsprof__calibrate_atfork_child(void);
/* Before a start chooses its source: what a forked child inherited from a
 * calibration is released, and another thread's calibration (whose scratch
 * profiler may hold the frame-evaluation function) is waited for. GIL
 * held; STATSPROF_ESTATE when called from inside a calibration on this
 * thread or after 60 s. */
int statsprof__calibrate_settle(void);
/* What was measured (tests); NULL before. */
statsprof__costs *statsprof__calibration_cached(statsprof__clock_kind clock, int source, int builtins);

/* The largest int CPython caches (256 up to 3.14, 1024 on 3.15): on 3.12+
 * an event at a bytecode offset past it boxes the offset in a new int.
 * GIL held (source_setprofile.c; both sys.monitoring-based sources). */
long statsprof__small_int_max(void);

/* Calibration's scratch profiler (profiler.c): a table and the event
 * source `source` on `clock` (C functions counted or not), marked running on this interpreter with raw
 * times; no sinks, timer or fork tracking. NULL when out of memory. */
statsprof *statsprof__scratch_new(statsprof__clock_kind clock, int source, int builtins);
void statsprof__scratch_free(statsprof *s);

/* ---- snapshot.c -------------------------------------------------------- */

typedef struct statsprof__snapshot_state {
  statsprof__counters *prev_entries; /* counters at the last delta */
  uint32_t nprev_entries, capprev_entries;
  statsprof__counters *prev_edges;
  uint32_t nprev_edges, capprev_edges;
  int64_t last_wall_ns;  /* end of the last delta (start of the next) */
  int64_t start_wall_ns; /* start or reset: where cumulative begins */
  uint64_t seq;
  /* statsprof_snapshot_thread's deltas: each thread's own mark, apart from
   * the merged one. Made at the first, then kept as long as prev_* (so a
   * reset or fork, which empties those, empties these too). */
  statsprof__counters *mark_entries, *mark_edges;
  uint32_t capmark_entries, capmark_edges;
  int64_t *mark_wall_ns; /* per slot: the end of its last thread delta (0: none) */
  uint32_t nmark_slots;
  int marks;             /* the arrays above are in use */
} statsprof__snapshot_state;

typedef enum {
  STATSPROF__BASE_NONE,  /* cumulative: counters as they are */
  STATSPROF__BASE_PREV,  /* delta: minus the counters at the last delta */
  STATSPROF__BASE_FRAME, /* spike: minus the counters at the frame's start */
  STATSPROF__BASE_MARK,  /* a host's thread delta: minus its last one's */
} statsprof__base;

/* What a record covers. */
typedef struct statsprof__selection {
  statsprof_record_kind kind; /* what the record will be */
  statsprof__base base;
  uint32_t slot;            /* one thread's slot, or NONE for all */
  const uint32_t *entries;  /* only these entries (NULL: all) */
  uint32_t nentries;
  const uint32_t *edges;    /* only these edges (NULL: all) */
  uint32_t nedges;
  int commit;               /* delta: move the baseline */
  const statsprof__frame_base *frame_entries, *frame_edges; /* BASE_FRAME's baselines */
} statsprof__selection;

int statsprof__snapshot_build(statsprof *p, const statsprof__selection *sel,
                              statsprof_stats_profile **out);
int statsprof__snapshot_take(statsprof *p, statsprof_snapshot_mode mode,
                             statsprof_stats_profile **out);
/* Grows the delta baselines to cover every entry and edge; -1 on OOM. */
int statsprof__snapshot_fit(statsprof *p);
/* Called by threads_retire: a freed slot's thread marks go, so that the next
 * thread in that slot starts from zero. */
void statsprof__snapshot_marks_retire(statsprof *p);
void statsprof__snapshot_state_free(statsprof__snapshot_state *s);

/* ---- sinks and their writers ------------------------------------------ */

typedef struct statsprof__sink {
  const statsprof_sink_ops *ops;
  void *ctx;
} statsprof__sink;

/* In a forked child, from the writers' atfork handler: a jsonl sink closes
 * the descriptors its copy holds of the parent's (any other sink: nothing). */
void statsprof__jsonl_forked(const statsprof__sink *sink);

typedef struct statsprof__log_target {
  statsprof_log_fn fn;
  void *ud;
} statsprof__log_target;

/* log.c: to the host's log function, or (NULL, or no function set) a
 * line on fd 2. */
void statsprof__logf(const statsprof__log_target *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One sink, its bounded ring and its thread (see writer.c). The part the
 * thread uses lives on the heap (`sh`), so that a thread stuck in a sink's
 * emit can be abandoned and outlive the profiler. Touched by the host's
 * threads only (under the GIL, or inside stop/destroy). */
typedef struct statsprof__writer {
  statsprof__sink sink;
  int sync, block;
  int64_t stop_timeout_ns;  /* the longest stop/destroy/flush waits for it */
  uint64_t dropped;         /* records this sink lost: full ring, abandoned */
  uint64_t late_mark;       /* a wait (flush, on_full=block) timed out with this many delivered, */
  int late;                 /* ... and it may still be stuck there */
  int no_thread;            /* its thread failed to start: logged, records written on the emitting thread */
  pthread_t thread;
  struct statsprof__writer_shared *sh;
} statsprof__writer;

/* A profiler's writers: "emit to every sink" (writer.c). The array and
 * its counts are the host's threads' (under the GIL, or inside
 * stop/destroy); `errors` is bumped by the writer threads. */
typedef struct statsprof__writers_config {
  int sync;                /* writer=sync: sinks run on the emitting thread */
  int block;               /* on_full=block: wait for room instead of dropping */
  uint32_t queue;          /* records each sink's ring holds */
  int64_t stop_timeout_ns; /* how long stop/destroy/flush wait for the sinks */
} statsprof__writers_config;

typedef struct statsprof__writers {
  statsprof__writers_config config;
  const statsprof__log_target *log; /* the host's log (the handle's) */
  statsprof__writer w[STATSPROF__MAX_SINKS];
  size_t n;
  atomic_ullong errors;             /* failed emits and flushes, all sinks */
  int64_t until;                    /* the stop's or destroy's deadline (monotonic ns), 0 outside one */
} statsprof__writers;

void statsprof__writers_init(statsprof__writers *ws, const statsprof__writers_config *c,
                             const statsprof__log_target *log);
/* Adds a writer for an opened sink: ENOMEM, or ESTATE past MAX_SINKS. */
int statsprof__writers_add(statsprof__writers *ws, statsprof__sink sink);
/* Stamps rec with the drop and error counts so far and queues it for
 * every sink (each takes its own reference). */
void statsprof__writers_emit(statsprof__writers *ws, statsprof_stats_profile *rec);
/* Records lost so far, all sinks: full rings, abandoned writers. */
uint64_t statsprof__writers_dropped(const statsprof__writers *ws);
/* Calls each sink's reopen (sinks of ops version 2 and up). */
void statsprof__writers_reopen(statsprof__writers *ws);
/* Waits, at most the writers' stop_timeout in all, until every queued
 * record is written, then calls each idle sink's flush. A sink still stuck
 * where an earlier wait gave up on it is not waited for again. */
void statsprof__writers_drain(statsprof__writers *ws);
/* Closes the writers: each thread drains its ring and ends; one still
 * running after stop_timeout (all writers together) is abandoned (see
 * writer.c). Then flush and close for the others. Leaves none, and ends
 * a stop's deadline. */
void statsprof__writers_close(statsprof__writers *ws);
/* A stop, a destroy or an interval's records begin: until
 * statsprof__writers_deadline_end (or the statsprof__writers_close that
 * ends a destroy), the waits of emit, drain and close share one
 * stop_timeout, starting now. 0 if one was already running (a stop's last
 * interval): its caller ends it. */
int statsprof__writers_deadline_begin(statsprof__writers *ws);
void statsprof__writers_deadline_end(statsprof__writers *ws);

void statsprof__record_ref(statsprof_stats_profile *rec);
void statsprof__record_unref(statsprof_stats_profile *rec);

/* Opens a built-in or registered sink by name (the config's sink=NAME:ARG).
 * A malformed argument is STATSPROF_ECONFIG (as the sink's open returned
 * it), a sink that cannot open STATSPROF_ESINK; the message names the sink,
 * says why and gives the offset in the config string. */
int statsprof__sink_open(const statsprof__sink_spec *spec, const statsprof_sink_ops **ops,
                         void **ctx, char *err, size_t errlen);

/* Sink arguments (registry.c): every built-in sink's argument is
 * MAIN[,NAME=VALUE]... — MAIN is the sink's own (a path, a directory, a
 * row count), then options from the sink's table. Adding an option to a
 * sink is one row in its table and one uint64_t field. */
typedef struct statsprof__sink_option {
  const char *name;    /* "max_bytes" */
  const char *metavar; /* "SIZE", for the list of options in messages */
  statsprof__value_spec spec;
  size_t field;        /* offsetof the uint64_t it sets in `fields` */
} statsprof__sink_option;

/* Splits arg (NULL: "") into MAIN (*main, *mainlen) and its options, each
 * stored into `fields` as its row says (opts ends with {NULL}). A bad
 * option is STATSPROF_ECONFIG with a message quoting it. Not strtok: no
 * hidden state, any thread. */
int statsprof__sink_args(const char *arg, const statsprof__sink_option *opts, void *fields, const char **main,
                         size_t *mainlen, char *err, size_t errlen);
/* Parses MAIN with `spec`; "bad WHAT 'text': why; expected ..." on error. */
int statsprof__sink_main_value(const char *arg, const char *what, const statsprof__value_spec *spec,
                               const char *main, size_t len, uint64_t *out, char *err, size_t errlen);
/* Records where in its argument a sink's open found the problem (bytes from
 * the argument's start), for the offset statsprof__sink_open reports. On
 * the opening thread; sinks call it through the two parsers above. */
void statsprof__sink_blame(const char *arg, const char *at);

/* Why a sink's emit or flush failed, in words (path, OS error), for the
 * writer's log line: set by the sink on the thread that runs emit, read by
 * the writer right after. */
void statsprof__sink_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- duty.c: production mode's windows ------------------------------- */

/* When the hook is on (windows) and what that observed and cost, between
 * delta records. Touched only under the GIL by the thread running a
 * public call or the timer's tick (calls on a profiler never nest). Times
 * in ticks; costs in ticks of the profiler's own cost counter, which the
 * caller passes in (ever growing: a window's cost is a difference). */
typedef struct statsprof__duty {
  int64_t window_ns, every_ns; /* config: window_ns 0 is production mode off */
  double max_overhead;         /* config: lengthen gaps to stay under it; 0 off */
  int in_window;               /* the hook is on the threads */
  uint64_t window_start;       /* the open window's start */
  uint64_t boundary;           /* the next edge: the window's end or the gap's */
  uint64_t taken_at;           /* the open window's time before it is in a record */
  uint64_t cost_at_open, cost_taken; /* cost counter at the open, at the last record */
  double observed_s, overhead_s;     /* since the last delta record */
  double unobserved_s; /* intervals with no window since the last record with one */
} statsprof__duty;

enum { STATSPROF__DUTY_NONE, STATSPROF__DUTY_OPEN, STATSPROF__DUTY_CLOSE };

void statsprof__duty_init(statsprof__duty *d, int64_t window_ns, int64_t every_ns, double max_overhead);
int statsprof__duty_enabled(const statsprof__duty *d);
/* Which edge has come by `now`: STATSPROF__DUTY_NONE, _OPEN or _CLOSE. */
int statsprof__duty_due(const statsprof__duty *d, uint64_t now);
/* A window opens (the caller then attaches) / closed (the caller has
 * detached, counting frames still open as returning now): `cost` is the
 * own-cost counter now. */
void statsprof__duty_open(statsprof__duty *d, uint64_t now, uint64_t cost);
void statsprof__duty_close(statsprof__duty *d, uint64_t now, uint64_t cost);
/* start: the accounts anew and the first window open. */
void statsprof__duty_start(statsprof__duty *d, uint64_t now, uint64_t cost);
/* Drops what was observed, spent and left unobserved since the last
 * record (start, fork). */
void statsprof__duty_forget(statsprof__duty *d);
/* statsprof_reset and a forked child: forget as well the open window's
 * time and cost so far. */
void statsprof__duty_reset(statsprof__duty *d, uint64_t now, uint64_t cost);
/* The profiler's own cost so far, ticks (production mode's budget). */
uint64_t statsprof__own_cost(const statsprof *p);
/* Fills observed_s/duty/span_s/overhead_est of a delta record; starts
 * anew. */
void statsprof__duty_take(statsprof__duty *d, statsprof_stats_profile *rec, uint64_t now, uint64_t cost);

/* pthread_create for the library's own threads (writers, timer; in
 * threads.c): they start with the host's signals blocked, all but the
 * synchronous faults. pthread_create's result. */
int statsprof__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);
/* Tests: the next n thread creations fail with EAGAIN, as in a process at
 * its thread limit (RLIMIT_NPROC binds no root, and an interposed
 * pthread_create would fight the sanitizers' own). */
void statsprof__fail_thread_creates(int n);

/* ---- timer.c: trigger=timer ------------------------------------------ */

/* What the timer thread runs at each wake, with the GIL held: the
 * profiler's tick. Returns how long to sleep before the next wake (ns). */
typedef int64_t (*statsprof__timer_fn)(void *arg);

/* A thread that calls fn every so often (see timer.c). Started, stopped
 * and kicked by the host's threads under the GIL; the thread itself reads
 * fn/arg/interval_ns (fixed while it runs) and the flags under `lock`. */
typedef struct statsprof__timer {
  int64_t interval_ns;     /* config: the first sleep, and the sleep when stopping */
  statsprof__timer_fn fn;  /* set by start, before the thread exists */
  void *arg;
  pthread_t thread;
  pthread_mutex_t lock;    /* guards stop and kick; held across fork() */
  pthread_cond_t cond;
  int sync_init;           /* lock and cond exist */
  int running;             /* a thread was started and not yet joined */
  int stop, kick;          /* under lock: end the thread / replan now */
  uint64_t wakeups;        /* under lock: times the thread came out of its wait (tests) */
  pid_t pid;               /* the process that started the thread */
  PyObject *atexit;        /* the atexit callback that stops the thread */
} statsprof__timer;

void statsprof__timer_init(statsprof__timer *t, int64_t interval_ns);
void statsprof__timer_free(statsprof__timer *t);
/* Starts the thread, which will call fn(arg); registers an atexit
 * callback that stops it before Py_Finalize. GIL held. On failure returns
 * STATSPROF_EPYTHON or STATSPROF_ENOMEM and says why in *why. */
int statsprof__timer_start(statsprof__timer *t, statsprof__timer_fn fn, void *arg, char *why, size_t whylen);
/* Stops and joins the thread (releasing the GIL while it waits). */
void statsprof__timer_stop(statsprof__timer *t);
/* Makes the thread plan its next wake now (e.g. the first window's end,
 * which start sets after spawning the thread): a flag the thread reads
 * before it waits, so a kick sent before it first waits is kept. */
void statsprof__timer_kick(statsprof__timer *t);
/* fork: phase 0 before fork (holds the timer's lock), 1 in the parent
 * after it, 2 in the child (the lock unlocked, a new condition, no thread). */
void statsprof__timer_atfork(statsprof__timer *t, int phase);
/* In a forked child, once Python is whole: a new thread if the parent had
 * one. -1 when it could not start. GIL. */
int statsprof__timer_after_fork(statsprof__timer *t);
/* Nonzero on the timer's own thread (a writer=sync sink run by its tick). */
int statsprof__timer_is_self(const statsprof__timer *t);

/* ---- the handle -------------------------------------------------------- */

/* The handle composes the parts; profiler.c is the only file that reads
 * `config` (each part gets its slice at create). Unless a field says
 * otherwise, it is touched under the GIL by the thread running a public
 * call or the timer's tick, and calls on one profiler never nest (busy). */
#define STATSPROF__BUSY_CALL 1
#define STATSPROF__BUSY_TIMER 2

struct statsprof {
  /* The event source (hook.c, tstates.c): its own struct, above. */
  statsprof__source src;
  /* The counting core (table.c, threads.c; the hook writes it on every
   * profiled thread, under the GIL; the public calls read it for
   * snapshots). */
  statsprof__table table;
  uint32_t gen;       /* tags this profiler's co_extra values */
  int running;
  uint64_t interp_epoch; /* the interpreter we started on (see hook.c) */
  int oom_reported;      /* the source's sticky oom was returned (profiler.c) */

  statsprof__frames frames;       /* frame markers (frame.c); the hook stamps touches */
  statsprof__snapshot_state snap; /* delta baselines (snapshot.c) */
  statsprof__duty duty;           /* production mode (duty.c) */
  statsprof__timer timer;         /* trigger=timer (timer.c); its thread calls back in */
  statsprof__writers writers;     /* the sinks (writer.c); their threads bump errors */

  /* The handle's own (profiler.c). */
  int busy;           /* a public call (BUSY_CALL) or the timer's record (BUSY_TIMER) runs: calls never nest */
  int timer_joining;  /* stop or destroy waits for the timer's record (profiler.c) */
  int timer_deferred; /* the timer skipped a record for a call in progress: its leave kicks the timer */
  int hook_holds;     /* hook slow paths running CPython code (statsprof__hook_hold) */
  int fork_log;       /* the forked child's reset has this to log once g_lock is let go (fork.c) */
  unsigned long hook_owner; /* the thread whose hook took the first of them */
  uint64_t next_tick; /* ticks value when the next record is due */
  uint64_t next_due;  /* the earlier of next_tick and a duty boundary */
  uint64_t interval_ticks;
  statsprof__log_target log; /* the host's log function, for every part */
  statsprof__config config;  /* as parsed at create */
  struct statsprof *next_profiler; /* every profiler of the process (fork.c, under its lock) */
  char errmsg[STATSPROF__ERRLEN];
};

/* The one rule for putting the hook on a thread now (start, tick, a
 * snapshot, attach_thread, a new Python thread's first event): the
 * profiler runs in this interpreter and production mode, if on, is inside
 * a window. GIL held. */
int statsprof__may_attach(const statsprof *p);

/* Guards a public call against nesting (see profiler.c): 0, or ESTATE
 * with a message. statsprof__leave ends the call. */
int statsprof__enter(statsprof *p, const char *fn);
void statsprof__leave(statsprof *p);

/* The calling thread's cached state (hotpath.h's statsprof__tls) is
 * forgotten: its OS thread is ending (threads.c), and the state it points
 * to is freed at the next record, while a later key destructor may still
 * run Python on it. */
void statsprof__tls_forget(void);

/* The hook's slow paths call CPython (labels, thread names), which can run
 * the collector's finalizers or Python code (a __repr__), and so let a
 * call into this profiler run, from there or from another thread. The
 * profiler counts as held meanwhile, by a count of its own (busy may be
 * the timer's record's, which a stop or destroy waits out): from that
 * thread a destroy leaves it alive (with a message) and other calls fail
 * with STATSPROF_ESTATE, where they freed or changed it under the hook;
 * another thread's call waits for it, GIL released (profiler.c). Each
 * hold is let go once. */
static inline void statsprof__hook_hold(statsprof *p) {
  if (!p->hook_holds++) p->hook_owner = PyThread_get_thread_ident();
}
void statsprof__hook_let_go(statsprof *p);


/* fork.c: every profiler is known to the fork handlers while it exists. */
void statsprof__fork_track(statsprof *p, int add);
/* pthread_atfork's handlers, registered once (any thread, no GIL): the
 * name lock's and the sink registry's are taken there too, last. */
/* atexit.register(fn) or atexit.unregister(fn) (timer.c): 0, or -1 with
 * the error cleared. GIL held. */
int statsprof__call_atexit(const char *method, PyObject *fn);
void statsprof__fork_handlers(void);
void statsprof__threads_atfork(int phase);  /* 0 prepare, 1 parent, 2 child */
void statsprof__registry_atfork(int phase); /* likewise */
/* Registers the Python-level after-fork handler (once per interpreter);
 * imports os. -1 when it could not. GIL. */
int statsprof__fork_hook(void);


/* Records a formatted message on p (or the thread's create message). */
int statsprof__error(statsprof *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Empties p's message (or, for NULL, the thread's create message): a call
 * that succeeds leaves no stale message behind. */
void statsprof__error_clear(statsprof *p);
/* As statsprof__error, for a call refused without touching p (made from a
 * sub-interpreter, which may run beside p's calls under a GIL of its own):
 * the message is kept per thread, and statsprof_errmsg(p) gives it on this
 * thread until its next failed call on p. */
int statsprof__error_here(const statsprof *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- text.c: the growable buffer, JSON strings, UTF-8 ------------------ */

/* Growable byte buffer for formatting. */
typedef struct statsprof__buf {
  char *data;
  size_t len, cap;
  int oom;
} statsprof__buf;
void statsprof__buf_put(statsprof__buf *b, const char *s, size_t n);
void statsprof__buf_puts(statsprof__buf *b, const char *s);
void statsprof__buf_printf(statsprof__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void statsprof__buf_json_string(statsprof__buf *b, const char *s);

/* pstats' ncalls text: "12" or "12/3". */
void statsprof__ncalls_text(char *out, size_t n, uint64_t total, uint64_t primitive);
size_t statsprof__utf8_seq(const unsigned char *s); /* length of a valid sequence, or 0 */

/* ---- sinks/files.c ----------------------------------------------------- */
/* A pipe or socket whose reader stopped reading gets this long per write
 * before the write gives up: a stuck reader costs that sink records, never
 * the writer thread (or shutdown) forever. */
#define STATSPROF__STALL_MS 1000
/* Writes what it can within stall_ms of waiting for a non-blocking fd;
 * returns the bytes written (errno set when short: ETIMEDOUT for a stall).
 * SIGPIPE-safe. */
size_t statsprof__write_some(int fd, const char *data, size_t len, int stall_ms);
/* The same for an fd written `how`: OUT_WRITE (non-blocking or a regular
 * file), OUT_SEND (a socket: send with MSG_DONTWAIT, the fd's flags stay
 * the host's) or OUT_POLL (a blocking pipe: poll, then PIPE_BUF at most). */
enum { STATSPROF__OUT_WRITE, STATSPROF__OUT_SEND, STATSPROF__OUT_POLL };
size_t statsprof__write_fd(int fd, int how, const char *data, size_t len, int stall_ms);
/* Tests: the next n write(2)s of statsprof__write_fd return 0, taking
 * nothing, as some devices and FUSE file systems do. */
void statsprof__zero_writes(int n);

/* Whatever fd 2 is, written without ever blocking for longer than a stall
 * and without stdio (whose lock would block the host's own writes to
 * stderr): refreshed before each write, since a host may redirect fd 2. */
typedef struct statsprof__stderr_out {
  int fd;        /* -1 before the first refresh */
  int own;       /* fd is our non-blocking open of fd 2's pipe or terminal */
  pid_t pid;     /* the process that opened it (own) */
  int how;       /* STATSPROF__OUT_* */
  dev_t dev;     /* what fd 2 was when fd was chosen */
  ino_t ino;
} statsprof__stderr_out;
void statsprof__stderr_refresh(statsprof__stderr_out *o);
void statsprof__stderr_close(statsprof__stderr_out *o);
int statsprof__write_all(int fd, const char *data, size_t len);
int statsprof__mkdir_parents(const char *file);
/* open(2), O_CLOEXEC added, the descriptor moved to 3 or above: with fd 0,
 * 1 or 2 closed, a sink's file must not take a stdio number (a file at fd
 * 2 would be taken for stderr, and log lines written into it). */
int statsprof__open_file(const char *path, int flags, mode_t mode);
/* path[0..len) as an absolute path (allocated), resolved against the
 * current directory now, so a host's later chdir does not move a sink's
 * output. NULL (errno ENOMEM, or getcwd's) with a message in err naming
 * `what` and the path. */
char *statsprof__absolute_path(const char *path, size_t len, const char *what, char *err, size_t errlen);

/* A directory receiving one file per record, published atomically. */
typedef struct statsprof__record_dir {
  char *path;
  const char *tag;      /* in temporary names: ".statsprof-TAG-..." */
  unsigned tmp_counter; /* keeps temporary names unique within the process */
} statsprof__record_dir;
/* Checks the sink argument (DIR, no options; `tag` is the sink's name),
 * then mkdir -p and a probe file: an unwritable DIR fails here, with a
 * message (STATSPROF_ECONFIG for a malformed argument, else STATSPROF_EIO). */
int statsprof__record_dir_open(statsprof__record_dir *d, const char *arg, const char *tag, char *err,
                               size_t errlen);
void statsprof__record_dir_close(statsprof__record_dir *d);
/* What a per-thread or spike record's file name says after the sink's
 * prefix, "-thread<tid>" or "-spike<frame>" ("" for a merged record): they
 * carry their merged record's seq, time and pid. */
void statsprof__record_kind_tag(char *out, size_t n, const statsprof_stats_profile *rec);
/* Writes b to base+suffix (or base SEP k suffix if taken). */
int statsprof__record_dir_write(statsprof__record_dir *d, const char *base, char sep, const char *suffix,
                                const statsprof__buf *b);


#endif
