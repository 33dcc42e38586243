/* writer.c — moves records from the host's thread to the sinks.
 *
 * DESIGN
 * Every sink has its own writer: a bounded ring of record pointers, one
 * mutex, two condition variables and one thread. The host's thread (under
 * the GIL, inside tick/stop) only takes a reference on the record and pushes
 * it into each ring; formatting and I/O happen on the writer threads,
 * without the GIL. A slow or failing sink therefore fills only its own ring:
 * the other sinks still get every record.
 *   - Full ring: on_full=drop (default) drops the record for that sink and
 *     counts it (the next records carry the total in `dropped`);
 *     on_full=block waits for room (with the GIL released).
 *   - Flush (stop/destroy/statsprof_flush): waits, GIL released, until each
 *     ring is empty and its thread idle, then calls the sink's flush.
 *   - Shutdown: sets `closing`, wakes the thread, joins it; the thread drains
 *     what is queued first, so a clean shutdown loses nothing.
 *   - fork(): the child has no writer threads. pthread_atfork holds every
 *     ring's lock across fork() so the child never inherits a held lock; the
 *     child marks its writers dead, and the next push restarts them.
 * writer=sync skips all of this and calls the sinks on the host's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* All writers of the process, for fork handling. */
static pthread_mutex_t g_writers_lock = PTHREAD_MUTEX_INITIALIZER;
static statsprof__writer *g_writers;

static void atfork_prepare(void) {
  pthread_mutex_lock(&g_writers_lock);
  for (statsprof__writer *w = g_writers; w; w = w->next_writer) pthread_mutex_lock(&w->lock);
}

static void atfork_parent(void) {
  for (statsprof__writer *w = g_writers; w; w = w->next_writer) pthread_mutex_unlock(&w->lock);
  pthread_mutex_unlock(&g_writers_lock);
}

static void atfork_child(void) {
  for (statsprof__writer *w = g_writers; w; w = w->next_writer) {
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->idle, NULL);
    w->running = 0; /* the thread did not survive fork */
    w->busy = 0;
  }
  pthread_mutex_init(&g_writers_lock, NULL);
}

static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* ---- the sink side ----------------------------------------------------- */

static void report_failure(statsprof__writer *w, const statsprof_stats_profile *rec, int err) {
  uint64_t n = ++w->errors;
  atomic_fetch_add(w->total_errors, 1);
  /* Rate limit: the first three, then at 8, 16, 32, ... failures. */
  if (n <= 3 || (n & (n - 1)) == 0)
    statsprof__logf(w->log, "sink %s failed to write record %llu: %s (%llu failures so far)",
                    w->sink.ops->name ? w->sink.ops->name : "?", (unsigned long long)rec->seq,
                    statsprof_strerror(err), (unsigned long long)n);
}

static void deliver(statsprof__writer *w, statsprof_stats_profile *rec) {
  int err = w->sink.ops->emit(w->sink.ctx, rec);
  if (err) report_failure(w, rec, err);
  statsprof__record_unref(rec);
}

static void *writer_main(void *arg) {
  statsprof__writer *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->count == 0 && !w->closing) pthread_cond_wait(&w->wake, &w->lock);
    if (w->count == 0) break; /* closing and drained */
    statsprof_stats_profile *rec = w->ring[w->head];
    w->head = (w->head + 1) % w->cap;
    w->count--;
    w->busy = 1;
    pthread_cond_broadcast(&w->idle); /* room for a blocked producer */
    pthread_mutex_unlock(&w->lock);
    deliver(w, rec);
    pthread_mutex_lock(&w->lock);
    w->busy = 0;
    pthread_cond_broadcast(&w->idle);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

int statsprof__writer_init(statsprof__writer *w, statsprof__sink sink, const statsprof__config *c,
                           atomic_ullong *total_errors, const statsprof__log_target *log) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_atfork);
  memset(w, 0, sizeof *w);
  w->sink = sink;
  w->sync = c->writer_sync;
  w->block = c->on_full_block;
  w->cap = c->queue;
  w->total_errors = total_errors;
  w->log = log;
  if (w->sync) return 0;
  w->ring = calloc(w->cap, sizeof *w->ring);
  if (!w->ring) return STATSPROF_ENOMEM;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->wake, NULL);
  pthread_cond_init(&w->idle, NULL);
  pthread_mutex_lock(&g_writers_lock);
  w->next_writer = g_writers;
  g_writers = w;
  pthread_mutex_unlock(&g_writers_lock);
  w->registered = 1;
  return 0;
}

/* Starts the thread on first use (and again in a forked child). Lock held. */
static int ensure_thread(statsprof__writer *w) {
  if (w->running) return 0;
  w->closing = 0;
  /* Signals are the host's business: its handlers must not run on our
   * thread, so the thread starts with every signal blocked. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&w->thread, NULL, writer_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return -1;
  w->running = 1;
  return 0;
}

/* Waits on `cond` with the GIL released if this thread holds it, so a sink
 * that needs the GIL (a Python callback) can finish. Lock held. */
static void wait_released(statsprof__writer *w, pthread_cond_t *cond) {
  PyThreadState *ts = Py_IsInitialized() && PyGILState_Check() ? PyEval_SaveThread() : NULL;
  pthread_cond_wait(cond, &w->lock);
  if (ts) {
    pthread_mutex_unlock(&w->lock);
    PyEval_RestoreThread(ts);
    pthread_mutex_lock(&w->lock);
  }
}

int statsprof__writer_push(statsprof__writer *w, statsprof_stats_profile *rec) {
  if (w->sync) {
    statsprof__record_ref(rec);
    deliver(w, rec);
    return 0;
  }
  pthread_mutex_lock(&w->lock);
  if (ensure_thread(w)) {
    /* No thread: write on this one rather than lose the record. */
    pthread_mutex_unlock(&w->lock);
    statsprof__record_ref(rec);
    deliver(w, rec);
    return 0;
  }
  while (w->count == w->cap && w->block) wait_released(w, &w->idle);
  int dropped = w->count == w->cap;
  if (!dropped) {
    statsprof__record_ref(rec);
    w->ring[(w->head + w->count) % w->cap] = rec;
    w->count++;
    pthread_cond_signal(&w->wake);
  } else {
    w->dropped++;
  }
  pthread_mutex_unlock(&w->lock);
  return dropped;
}

void statsprof__writer_drain(statsprof__writer *w) {
  if (!w->sync) {
    pthread_mutex_lock(&w->lock);
    while (w->running && (w->count || w->busy)) wait_released(w, &w->idle);
    pthread_mutex_unlock(&w->lock);
  }
  if (w->sink.ops->flush && w->sink.ops->flush(w->sink.ctx) != 0)
    statsprof__logf(w->log, "sink %s failed to flush", w->sink.ops->name ? w->sink.ops->name : "?");
}

void statsprof__writer_close(statsprof__writer *w) {
  if (!w->sync) {
    pthread_mutex_lock(&w->lock);
    int running = w->running;
    w->closing = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    if (running) {
      PyThreadState *ts = Py_IsInitialized() && PyGILState_Check() ? PyEval_SaveThread() : NULL;
      pthread_join(w->thread, NULL);
      if (ts) PyEval_RestoreThread(ts);
    }
    /* A thread that could not start leaves records behind: free them. */
    while (w->count) {
      statsprof__record_unref(w->ring[w->head]);
      w->head = (w->head + 1) % w->cap;
      w->count--;
    }
  }
  if (w->sink.ops->flush) w->sink.ops->flush(w->sink.ctx);
  if (w->sink.ops->close) w->sink.ops->close(w->sink.ctx);
  if (w->registered) {
    pthread_mutex_lock(&g_writers_lock);
    statsprof__writer **pp = &g_writers;
    while (*pp && *pp != w) pp = &(*pp)->next_writer;
    if (*pp) *pp = w->next_writer;
    pthread_mutex_unlock(&g_writers_lock);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->idle);
  }
  free(w->ring);
  memset(w, 0, sizeof *w);
}
