/* writer.c — moves records from the host's thread to the sinks.
 *
 * DESIGN
 * Every sink has its own writer: a bounded ring of record pointers, one
 * mutex, two condition variables and one thread, all in a heap block
 * (`shared`) that the thread holds too. The host's thread (under the GIL,
 * inside tick/stop) only takes a reference on the record and pushes it into
 * each ring; formatting and I/O happen on the writer threads, without the
 * GIL. A slow or failing sink therefore fills only its own ring: the other
 * sinks still get every record.
 *   - Full ring: on_full=drop (default) drops the record for that sink and
 *     counts it (the next records carry the total in `dropped`);
 *     on_full=block waits for room, with the GIL released, at most
 *     stop_timeout for all sinks of a record together (for all records of
 *     an interval together: per_thread=on makes one per thread), then
 *     drops it all the same; a sink whose wait timed out is not waited for again until
 *     it finishes a record (`late`), so a stuck sink costs one
 *     stop_timeout, not one per record.
 *   - Flush (stop/statsprof_flush): waits, GIL released, until each ring is
 *     empty and its thread idle — all writers together at most stop_timeout
 *     — then calls the idle sinks' flush. A writer still busy is marked late
 *     and logged; one already late and not one record further since is not
 *     waited for again (logged all the same).
 *   - One deadline per interval, stop or destroy: between
 *     statsprof__writers_deadline_begin and _end (or the close that ends a
 *     destroy) the waits of the records' emits, the flush and the shutdown
 *     share one stop_timeout, so a sink that is slow, not stuck, costs one
 *     stop_timeout there too, not one per wait.
 *   - Shutdown (destroy): sets `closing`, wakes the threads; each drains
 *     what is queued and ends, so a clean shutdown loses nothing. A thread
 *     with nothing left to write is always waited for (it ends at once). A
 *     thread that has not ended by the deadline (stop_timeout for all
 *     writers together, or what is left of the destroy's; none at all for
 *     a writer that was late at the last flush and has written nothing
 *     since) is stuck in its sink's emit: it is abandoned. Its queued
 *     records are dropped and counted, the log says so, the thread is
 *     detached and the host's thread returns. The thread owns `shared`
 *     from then on: when (if ever) emit returns, it calls the sink's close
 *     itself and frees `shared`. It never touches the profiler again; the
 *     owner waits out a log call in progress (`reporting`) before
 *     abandoning, so no log call can outlive the profiler.
 *   - fork(): the child has no writer threads. pthread_atfork holds every
 *     ring's lock across fork() so the child never inherits a held lock; the
 *     child marks its writers dead and zeroes its counts, and the records
 *     the parent had queued are the parent's to write: the child drops them
 *     (uncounted) before it next uses the ring. The next push restarts the
 *     thread.
 * writer=sync skips all of this but fork's zeroed counts, and calls the
 * sinks on the host's thread, where nothing can bound them: the built-in
 * sinks bound each write with their stall limit; a host sink's emit takes
 * as long as it takes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

typedef struct statsprof__writer_shared shared;
struct statsprof__writer_shared {
  pthread_mutex_t lock;
  pthread_cond_t wake; /* producer -> thread: a record, or closing */
  pthread_cond_t idle; /* thread -> waiters: room, progress, a log call done, exit */
  statsprof__sink sink;
  statsprof_stats_profile **ring;
  uint32_t cap, head, count;
  int running;   /* a thread exists in this process */
  int closing;   /* drain and end */
  int busy;      /* the thread is in emit */
  int reporting; /* the thread is in the log function */
  int exited;    /* the thread left its loop: join returns at once */
  int abandoned; /* the owner is gone: the thread closes the sink and frees this */
  uint64_t delivered;   /* records the thread is done with */
  uint64_t current_seq; /* the record in emit */
  uint64_t errors;      /* records this sink failed to take */
  pid_t pid;            /* the process this ring belongs to */
  /* The owner's, valid until abandoned. */
  statsprof__writer *owner;
  atomic_ullong *total_errors;
  const statsprof__log_target *log;
  shared *next; /* all writers (writer=sync ones too), for fork */
};

/* Condition variables on the monotonic clock: waits have deadlines. */
static void init_conds(shared *w) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w->wake, &attr);
  pthread_cond_init(&w->idle, &attr);
  pthread_condattr_destroy(&attr);
}

static void init_sync(shared *w) {
  pthread_mutex_init(&w->lock, NULL);
  init_conds(w);
}

/* All writers of the process, for fork handling. */
static pthread_mutex_t g_writers_lock = PTHREAD_MUTEX_INITIALIZER;
static shared *g_writers;

static void atfork_prepare(void) {
  pthread_mutex_lock(&g_writers_lock);
  for (shared *w = g_writers; w; w = w->next) pthread_mutex_lock(&w->lock);
}

static void atfork_parent(void) {
  for (shared *w = g_writers; w; w = w->next) pthread_mutex_unlock(&w->lock);
  pthread_mutex_unlock(&g_writers_lock);
}

/* The forking thread took every lock in prepare and is the child's only
 * thread: it unlocks them (initialising a locked mutex again is undefined,
 * and TSan reports its destroy later as a locked mutex's). The condition
 * variables may have had waiters that did not survive: made anew. */
static void atfork_child(void) {
  for (shared *w = g_writers; w; w = w->next) {
    pthread_mutex_unlock(&w->lock);
    init_conds(w);
    w->running = w->busy = w->reporting = w->exited = w->closing = 0; /* the thread did not survive fork */
    statsprof__jsonl_forked(&w->sink); /* before the child's own code can reuse those numbers */
    /* The child's counts start from zero, as its records do. */
    w->errors = 0;
    w->owner->dropped = 0;
    w->owner->late = 0;
    atomic_store(w->total_errors, 0);
  }
  pthread_mutex_unlock(&g_writers_lock);
}

static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* In a forked child, the records the parent had queued: the parent writes
 * them, so the child lets them go. Lock held. */
static void forget_inherited(shared *w) {
  pid_t pid = getpid();
  if (w->pid == pid) return;
  w->pid = pid;
  for (; w->count; w->count--, w->head = (w->head + 1) % w->cap) statsprof__record_unref(w->ring[w->head]);
}

/* ---- the sink side ----------------------------------------------------- */

/* What the sink said about its failure, on the thread that ran emit. */
static _Thread_local char sink_why[STATSPROF__ERRLEN];

void statsprof__sink_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sink_why, sizeof sink_why, fmt, ap);
  va_end(ap);
}

static const char *sink_name(const statsprof__sink *s) { return s->ops->name ? s->ops->name : "?"; }

static int call_emit(const statsprof__sink *s, const statsprof_stats_profile *rec, char *why, size_t whylen) {
  sink_why[0] = 0;
  int err = s->ops->emit(s->ctx, rec);
  statsprof__msg(why, whylen, "%s", err && sink_why[0] ? sink_why : statsprof_strerror(err));
  return err;
}

/* Counts a failure and logs it, rate-limited: the first three, then at 8,
 * 16, 32, ... failures. Lock held if w has a thread; the log call runs with
 * it released, marked `reporting` so the owner cannot go away meanwhile. */
static void report_failure(shared *w, uint64_t seq, const char *why, int locked) {
  uint64_t n = ++w->errors;
  atomic_fetch_add(w->total_errors, 1);
  if (n > 3 && (n & (n - 1)) != 0) return;
  char msg[STATSPROF__ERRLEN];
  statsprof__msg(msg, sizeof msg, "sink %s failed to write record %llu: %s (%llu failures so far)",
                 sink_name(&w->sink), (unsigned long long)seq, why, (unsigned long long)n);
  if (locked) {
    w->reporting = 1;
    pthread_mutex_unlock(&w->lock);
  }
  statsprof__logf(w->log, "%s", msg);
  if (locked) {
    pthread_mutex_lock(&w->lock);
    w->reporting = 0;
    pthread_cond_broadcast(&w->idle);
  }
}

/* The owner left while emit was stuck; emit has now returned: the thread
 * closes the sink (the contract lets close run here) and frees the rest. */
static void finish_abandoned(shared *w) {
  if (w->sink.ops->close) w->sink.ops->close(w->sink.ctx);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->wake);
  pthread_cond_destroy(&w->idle);
  statsprof__free(w->ring);
  statsprof__free(w);
}

static void *writer_main(void *arg) {
  shared *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->count == 0 && !w->closing) pthread_cond_wait(&w->wake, &w->lock);
    if (w->count == 0) break; /* closing and drained */
    statsprof_stats_profile *rec = w->ring[w->head];
    w->head = (w->head + 1) % w->cap;
    w->count--;
    w->busy = 1;
    w->current_seq = rec->seq;
    pthread_cond_broadcast(&w->idle); /* room for a blocked producer */
    pthread_mutex_unlock(&w->lock);
    char why[STATSPROF__ERRLEN];
    int err = call_emit(&w->sink, rec, why, sizeof why);
    pthread_mutex_lock(&w->lock);
    w->busy = 0;
    w->delivered++;
    if (w->abandoned) {
      pthread_mutex_unlock(&w->lock);
      statsprof__record_unref(rec);
      finish_abandoned(w);
      return NULL;
    }
    if (err) report_failure(w, rec->seq, why, 1);
    statsprof__record_unref(rec);
    pthread_cond_broadcast(&w->idle);
  }
  if (w->abandoned) { /* given up on just before it could end */
    pthread_mutex_unlock(&w->lock);
    finish_abandoned(w);
    return NULL;
  }
  w->exited = 1;
  pthread_cond_broadcast(&w->idle);
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

static int writer_init(statsprof__writer *w, statsprof__sink sink, const statsprof__writers_config *c,
                       atomic_ullong *total_errors, const statsprof__log_target *log) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_atfork);
  memset(w, 0, sizeof *w);
  w->sink = sink;
  w->sync = c->sync;
  w->block = c->block;
  w->stop_timeout_ns = c->stop_timeout_ns;
  shared *sh = statsprof__calloc(1, sizeof *sh);
  if (!sh) return STATSPROF_ENOMEM;
  sh->sink = sink;
  sh->cap = c->queue;
  sh->owner = w;
  sh->total_errors = total_errors;
  sh->log = log;
  sh->pid = getpid();
  w->sh = sh;
  if (!w->sync) {
    sh->ring = statsprof__calloc(sh->cap, sizeof *sh->ring);
    if (!sh->ring) {
      statsprof__free(sh);
      w->sh = NULL;
      return STATSPROF_ENOMEM;
    }
  }
  /* writer=sync ones too, which have no thread: a forked child zeroes
   * every writer's counts. */
  init_sync(sh);
  pthread_mutex_lock(&g_writers_lock);
  sh->next = g_writers;
  g_writers = sh;
  pthread_mutex_unlock(&g_writers_lock);
  return 0;
}

static void unregister(shared *sh) {
  pthread_mutex_lock(&g_writers_lock);
  shared **pp = &g_writers;
  while (*pp && *pp != sh) pp = &(*pp)->next;
  if (*pp) *pp = sh->next;
  pthread_mutex_unlock(&g_writers_lock);
}

/* Out of the fork list, its lock and conditions gone: no thread uses it. */
static void writer_retire(shared *w) {
  unregister(w);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->wake);
  pthread_cond_destroy(&w->idle);
}

/* Starts the thread on first use (and again in a forked child). Lock held.
 * pthread_create's error. */
static int ensure_thread(statsprof__writer *o) {
  shared *w = o->sh;
  if (w->running) return 0;
  w->closing = w->exited = 0;
  int rc = statsprof__thread_create(&o->thread, writer_main, w); /* host's signals blocked */
  if (rc) return rc;
  w->running = 1;
  return 0;
}

static int64_t deadline_after(int64_t ns) { return statsprof__mono_ns() + ns; }
#define NO_DEADLINE INT64_MAX

/* The deadline of a wait starting now: the stop's or destroy's in
 * progress, else a stop_timeout of its own. */
static int64_t wait_deadline(const statsprof__writers *ws) {
  return ws->until ? ws->until : deadline_after(ws->config.stop_timeout_ns);
}

/* Late at an earlier wait and not one record further since: stuck in the
 * same emit, not worth another stop_timeout. Lock held. */
static int still_stuck(const statsprof__writer *o) { return o->late && o->sh->delivered == o->late_mark; }

/* Waits on `cond` until the deadline (monotonic ns) with the GIL released
 * if this thread holds it, so a sink that needs the GIL (a Python
 * callback) can finish. Lock held. Returns nonzero once the deadline passed. */
static int wait_until(shared *w, pthread_cond_t *cond, int64_t deadline) {
  if (deadline - statsprof__mono_ns() <= 0) return 1;
  struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
  PyThreadState *tstate = Py_IsInitialized() && statsprof__holds_gil() ? PyEval_SaveThread() : NULL;
  pthread_cond_timedwait(cond, &w->lock, &ts);
  if (tstate) {
    pthread_mutex_unlock(&w->lock);
    PyEval_RestoreThread(tstate);
    pthread_mutex_lock(&w->lock);
  }
  return 0;
}

static void deliver_here(statsprof__writer *o, statsprof_stats_profile *rec) {
  char why[STATSPROF__ERRLEN];
  if (call_emit(&o->sink, rec, why, sizeof why)) report_failure(o->sh, rec->seq, why, 0);
}

/* Queues rec for the sink (taking a reference); 1 if it was dropped. With
 * on_full=block, a full ring is waited on until `deadline`, which all the
 * sinks of one record share. */
static int writer_push(statsprof__writer *o, statsprof_stats_profile *rec, int64_t deadline) {
  if (o->sync) {
    deliver_here(o, rec);
    return 0;
  }
  shared *w = o->sh;
  pthread_mutex_lock(&w->lock);
  forget_inherited(w);
  int rc = ensure_thread(o);
  if (rc) {
    /* No thread (a process at its thread limit): write on this one rather
     * than lose the record, as writer=sync would; said once, and each
     * record tries again. */
    pthread_mutex_unlock(&w->lock);
    if (!o->no_thread)
      statsprof__logf(w->log, "sink %s: cannot start its writer thread (%s): its records are written on the "
                      "emitting thread until one starts",
                      sink_name(&o->sink), strerror(rc));
    o->no_thread = 1;
    deliver_here(o, rec);
    return 0;
  }
  /* A sink that already let a wait time out and has not finished a record
   * since is stuck in the same emit: waiting again would only hold the
   * host (a tick with per-thread records, stop joining the timer thread)
   * a stop_timeout per record. */
  if (w->count == w->cap && o->block && !still_stuck(o)) {
    int timed_out = 0;
    while (w->count == w->cap && !(timed_out = wait_until(w, &w->idle, deadline))) continue;
    if (w->count == w->cap && timed_out) {
      o->late = 1;
      o->late_mark = w->delivered;
    }
  }
  int dropped = w->count == w->cap;
  if (!dropped) {
    statsprof__record_ref(rec);
    w->ring[(w->head + w->count) % w->cap] = rec;
    w->count++;
    pthread_cond_signal(&w->wake);
  } else {
    o->dropped++;
  }
  pthread_mutex_unlock(&w->lock);
  if (o->no_thread) { /* the log outside the ring's lock */
    o->no_thread = 0;
    statsprof__logf(w->log, "sink %s: its writer thread started", sink_name(&o->sink));
  }
  return dropped;
}

static void log_late(statsprof__writer *o, uint64_t seq, uint32_t queued, int waited) {
  if (waited)
    statsprof__logf(o->sh->log,
                    "sink %s: flush gave up waiting after stop_timeout=%.3fs: its thread is still writing record "
                    "%llu, %u more queued",
                    sink_name(&o->sink), (double)o->stop_timeout_ns * 1e-9, (unsigned long long)seq, queued);
  else
    statsprof__logf(o->sh->log,
                    "sink %s: flush did not wait: its thread is still writing record %llu, where an earlier wait gave "
                    "up after stop_timeout=%.3fs, %u more queued",
                    sink_name(&o->sink), (unsigned long long)seq, (double)o->stop_timeout_ns * 1e-9, queued);
}

static void flush_sink(statsprof__writer *o) {
  char why[STATSPROF__ERRLEN];
  sink_why[0] = 0;
  if (!o->sink.ops->flush || o->sink.ops->flush(o->sink.ctx) == 0) return;
  statsprof__msg(why, sizeof why, "%s", sink_why[0] ? sink_why : "no reason given");
  atomic_fetch_add(o->sh->total_errors, 1); /* the records' sink_errors: flushes too */
  statsprof__logf(o->sh->log, "sink %s failed to flush: %s", sink_name(&o->sink), why);
}

void statsprof__writers_drain(statsprof__writers *all) {
  statsprof__writer *ws = all->w;
  size_t n = all->n;
  int64_t deadline = n ? wait_deadline(all) : 0;
  for (size_t i = 0; i < n; i++) {
    statsprof__writer *o = &ws[i];
    if (!o->sync) {
      shared *w = o->sh;
      pthread_mutex_lock(&w->lock);
      forget_inherited(w);
      /* A sink an on_full=block wait (the stop's last record) or the last
       * flush gave up on, stuck since: waiting again made stop and destroy
       * take two stop_timeouts. */
      int skipped = w->running && still_stuck(o), timed_out = skipped;
      if (!skipped) {
        while (w->running && (w->count || w->busy || w->reporting) && !(timed_out = wait_until(w, &w->idle, deadline)))
          continue;
        o->late = timed_out;
        o->late_mark = w->delivered;
      }
      uint32_t queued = w->count;
      uint64_t seq = w->current_seq;
      pthread_mutex_unlock(&w->lock);
      if (timed_out) {
        log_late(o, seq, queued, !skipped);
        continue; /* flush would run beside a live emit */
      }
    }
    flush_sink(o);
  }
}

/* Gives up on a writer whose thread is stuck in emit: returns 1 (lock
 * released) once it is abandoned, 0 (lock held) if the thread ended after
 * all. Lock held. Once `abandoned` is set the thread may free `shared` at
 * any moment, so everything needed afterwards is taken before. */
static int abandon(statsprof__writer *o) {
  shared *w = o->sh;
  uint32_t queued = w->count;
  for (; w->count; w->count--, w->head = (w->head + 1) % w->cap) statsprof__record_unref(w->ring[w->head]);
  o->dropped += queued;
  /* Out of the fork list first, without our lock (fork takes the list's
   * lock before ours). */
  pthread_mutex_unlock(&w->lock);
  unregister(w);
  pthread_mutex_lock(&w->lock);
  while (w->reporting) wait_until(w, &w->idle, NO_DEADLINE);
  if (w->exited) return 0;
  uint64_t seq = w->current_seq;
  const statsprof__log_target *log = w->log;
  w->abandoned = 1;
  pthread_mutex_unlock(&w->lock);
  pthread_detach(o->thread);
  statsprof__logf(log,
                  "sink %s abandoned after stop_timeout=%.3fs: its thread is stuck writing record %llu; "
                  "%u queued records dropped; its close runs on that thread if the write ever returns",
                  sink_name(&o->sink), (double)o->stop_timeout_ns * 1e-9, (unsigned long long)seq, queued);
  return 1;
}

void statsprof__writers_close(statsprof__writers *all) {
  statsprof__writer *ws = all->w;
  size_t n = all->n;
  all->n = 0;
  int64_t deadline = n ? wait_deadline(all) : 0;
  all->until = 0;
  for (size_t i = 0; i < n; i++) {
    if (ws[i].sync) continue;
    shared *w = ws[i].sh;
    pthread_mutex_lock(&w->lock);
    forget_inherited(w);
    w->closing = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
  }
  for (size_t i = n; i-- > 0;) {
    statsprof__writer *o = &ws[i];
    shared *w = o->sh;
    int abandoned = 0;
    if (!o->sync) {
      pthread_mutex_lock(&w->lock);
      int64_t until = still_stuck(o) ? 0 : deadline;
      /* A thread with nothing left to write ends at once, even when the
       * destroy's deadline has passed (spent on another sink at its
       * flush): wait for it rather than abandon a sink that is done. */
      while (w->running && !w->exited) {
        if (w->count == 0 && !w->busy) wait_until(w, &w->idle, NO_DEADLINE);
        else if (wait_until(w, &w->idle, until)) break;
      }
      while (w->reporting) wait_until(w, &w->idle, NO_DEADLINE); /* a log call: the profiler must outlive it */
      if (w->running && !w->exited) abandoned = abandon(o);
      if (!abandoned) {
        int running = w->running;
        pthread_mutex_unlock(&w->lock);
        if (running) pthread_join(o->thread, NULL);
        /* A thread that could not start leaves records behind: free them. */
        for (; w->count; w->count--, w->head = (w->head + 1) % w->cap) statsprof__record_unref(w->ring[w->head]);
        writer_retire(w);
      }
    } else {
      writer_retire(w);
    }
    if (!abandoned) {
      flush_sink(o);
      if (o->sink.ops->close) o->sink.ops->close(o->sink.ctx);
      statsprof__free(w->ring);
      statsprof__free(w);
    }
    memset(o, 0, sizeof *o);
  }
}

/* ---- every sink of a profiler ------------------------------------------ */

void statsprof__writers_init(statsprof__writers *ws, const statsprof__writers_config *c,
                             const statsprof__log_target *log) {
  memset(ws, 0, sizeof *ws);
  ws->config = *c;
  ws->log = log;
  atomic_init(&ws->errors, 0);
}

int statsprof__writers_add(statsprof__writers *ws, statsprof__sink sink) {
  if (ws->n == STATSPROF__MAX_SINKS) return STATSPROF_ESTATE;
  int rc = writer_init(&ws->w[ws->n], sink, &ws->config, &ws->errors, ws->log);
  /* Published after the writer is whole: statsprof_reopen reads the list
   * from any thread, without the GIL. */
  if (!rc) __atomic_store_n(&ws->n, ws->n + 1, __ATOMIC_RELEASE);
  return rc;
}

uint64_t statsprof__writers_dropped(const statsprof__writers *ws) {
  uint64_t n = 0;
  for (size_t i = 0; i < ws->n; i++) n += ws->w[i].dropped;
  return n;
}

/* Sink failures surface later, in the log and in the counters that
 * following records carry. */
void statsprof__writers_emit(statsprof__writers *ws, statsprof_stats_profile *rec) {
  rec->dropped = statsprof__writers_dropped(ws);
  rec->sink_errors = atomic_load(&ws->errors);
  int64_t deadline = ws->n ? wait_deadline(ws) : 0;
  for (size_t i = 0; i < ws->n; i++) writer_push(&ws->w[i], rec, deadline);
}

int statsprof__writers_deadline_begin(statsprof__writers *ws) {
  if (ws->until) return 0;
  ws->until = deadline_after(ws->config.stop_timeout_ns);
  return 1;
}

void statsprof__writers_deadline_end(statsprof__writers *ws) { ws->until = 0; }

void statsprof__writers_reopen(statsprof__writers *ws) {
  size_t n = __atomic_load_n(&ws->n, __ATOMIC_ACQUIRE);
  for (size_t i = 0; i < n; i++) {
    const statsprof_sink_ops *ops = ws->w[i].sink.ops;
    if (ops->version >= 2 && ops->reopen) ops->reopen(ws->w[i].sink.ctx);
  }
}
