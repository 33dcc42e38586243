/* threads.c — which OS thread a count belongs to, what it is called, and
 * what happens to its counts when it ends.
 *
 * DESIGN
 * A thread is an OS thread: its Python thread states may come and go (a C
 * thread that calls PyGILState_Ensure/Release around each request gets a new
 * one each time), and a new thread may reuse a finished one's ident. So each
 * OS thread that runs profiled Python gets a small process-wide record
 * (statsprof__osthread) in thread-local storage; a pthread key destructor
 * marks it ended when the thread exits. A profiler keeps one table slot per
 * record, bound on the thread's own first profile event (never from another
 * thread), so the counts of two threads with the same ident never mix.
 *
 * Names follow the thread: an explicit statsprof_name_thread() name wins;
 * otherwise, at each record, the name threading gives the live thread (read
 * without running Python code). A thread that ended keeps its last name.
 *
 * Memory follows the live threads: a slot whose thread ended gets its last
 * interval's thread record, then its counts fold into the "retired" slot
 * (one per profiler, never a thread of its own, so merged records still add
 * up) and the slot, with its entries and its label map, is reused by the
 * next new thread. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the OS thread's record -------------------------------------------- */

struct statsprof__osthread {
  atomic_uint refs;  /* the thread's TLS, plus one per slot that names it */
  atomic_int ended;  /* the thread exited */
  unsigned long ident;
  char *name;        /* statsprof_name_thread; under g_name_lock */
  uint32_t gen, slot; /* the slot of the profiler `gen` last bound to it */
};

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static int g_key_ok;
static pthread_mutex_t g_name_lock = PTHREAD_MUTEX_INITIALIZER;

void statsprof__osthread_ref(statsprof__osthread *os) { atomic_fetch_add(&os->refs, 1); }

void statsprof__osthread_unref(statsprof__osthread *os) {
  if (!os || atomic_fetch_sub(&os->refs, 1) != 1) return;
  statsprof__free(os->name);
  statsprof__free(os);
}

static void on_thread_exit(void *v) {
  statsprof__osthread *os = v;
  statsprof__tls_forget();
  atomic_store(&os->ended, 1);
  statsprof__osthread_unref(os);
}

/* fork() while another thread holds the name lock (statsprof_name_thread
 * on any thread, any time) would leave the child's copy held forever: the
 * child's first name lookup, in the hook with the GIL held, hung. fork.c's
 * handlers take it last (it is innermost: nothing is taken under it). */
void statsprof__threads_atfork(int phase) {
  if (phase == 0) pthread_mutex_lock(&g_name_lock);
  else pthread_mutex_unlock(&g_name_lock);
}

static void make_key(void) {
  g_key_ok = pthread_key_create(&g_key, on_thread_exit) == 0;
  statsprof__fork_handlers();
}

/* The calling OS thread's record, made on first use; NULL on failure. */
static statsprof__osthread *osthread_self(void) {
  pthread_once(&g_key_once, make_key);
  if (!g_key_ok) return NULL;
  statsprof__osthread *os = pthread_getspecific(g_key);
  if (os) return os;
  os = statsprof__calloc(1, sizeof *os);
  if (!os) return NULL;
  atomic_init(&os->refs, 1);
  os->ident = PyThread_get_thread_ident();
  os->slot = STATSPROF__NONE;
  if (pthread_setspecific(g_key, os) != 0) {
    statsprof__free(os);
    return NULL;
  }
  return os;
}

int statsprof_name_thread(const char *name) {
  statsprof__osthread *os = osthread_self();
  if (!os) return statsprof__error(NULL, STATSPROF_ENOMEM, "statsprof_name_thread: out of memory");
  char *copy = name && *name ? statsprof__strdup(name) : NULL;
  if (name && *name && !copy) return statsprof__error(NULL, STATSPROF_ENOMEM, "statsprof_name_thread: out of memory");
  pthread_mutex_lock(&g_name_lock);
  char *old = os->name;
  os->name = copy;
  pthread_mutex_unlock(&g_name_lock);
  statsprof__free(old);
  statsprof__error_clear(NULL); /* as create's: "" once one succeeds */
  return 0;
}

int statsprof__osthread_ended(const statsprof__osthread *os) { return atomic_load(&os->ended); }

int statsprof__osthread_is_self(const statsprof__osthread *os) {
  return g_key_ok && os && pthread_getspecific(g_key) == os;
}

/* ---- names ------------------------------------------------------------- */

static void set_name(statsprof *p, statsprof__slot *s, const char *name) {
  if (!name) {
    s->name = NULL; /* no explicit name (any more), and threading has none */
    return;
  }
  if (s->name && !strcmp(s->name, name)) return;
  const char *n = statsprof__strings_add(p->table.strings, name, strlen(name));
  if (n) s->name = n;
  else p->src.oom = 1; /* reported at the next snapshot or stop */
}

/* threading._active, if threading was imported; borrowed. Dictionary
 * lookups only: no Python code runs. Not while Python finalizes: its last
 * garbage collection runs __del__ methods after sys.modules is gone, and
 * PyImport_GetModuleDict is then a fatal error. */
static PyObject *threading_active(void) {
  if (Py_IsFinalizing()) return NULL;
  PyObject *modules = PyImport_GetModuleDict();
  PyObject *threading = modules && PyDict_Check(modules) ? PyDict_GetItemString(modules, "threading") : NULL;
  PyObject *dict = threading && PyModule_Check(threading) ? PyModule_GetDict(threading) : NULL;
  PyObject *active = dict ? PyDict_GetItemString(dict, "_active") : NULL;
  return active && PyDict_Check(active) ? active : NULL;
}

/* The slot's threading.Thread's instance dict: the one threading._active
 * has for the live thread now, else the last one seen. The slot holds that
 * dict (not the Thread), so a name given just before the thread ended, or
 * before its Thread went away (3.13+ deletes a C thread's dummy Thread when
 * its thread state is released), is still read at the next record, and a
 * later thread with the same ident never takes it over. */
static PyObject *thread_dict(statsprof__slot *s, PyObject *active) {
  if (active && !statsprof__osthread_ended(s->os)) {
    PyObject *key = PyLong_FromUnsignedLong(s->thread_id);
    PyObject *th = key ? PyDict_GetItemWithError(active, key) : NULL;
    Py_XDECREF(key);
    /* The public getter: it also makes the dict of an instance whose
     * attributes still live inline (3.12's managed dicts), where the
     * private _PyObject_GetDictPtr finds none. No Python code runs. */
    PyObject *dict = th ? PyObject_GenericGetDict(th, NULL) : NULL;
    if (!dict) PyErr_Clear();
    if (dict && PyDict_Check(dict) && dict != s->thread_ref) {
      Py_XDECREF(s->thread_ref);
      s->thread_ref = Py_NewRef(dict);
    }
    Py_XDECREF(dict);
  }
  return s->thread_ref;
}

/* threading's name: the Thread's _name. */
static void name_from_threading(statsprof *p, statsprof__slot *s, PyObject *active) {
  PyObject *dict = thread_dict(s, active);
  PyObject *name = dict ? PyDict_GetItemString(dict, "_name") : NULL;
  const char *u = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
  set_name(p, s, u);
}

/* A slot's name now: explicit, else threading's. Runs no Python code (the
 * hook calls it when it binds a thread). */
static void name_slot(statsprof *p, statsprof__slot *s, PyObject *active) {
  pthread_mutex_lock(&g_name_lock);
  char *explicit_name = s->os->name ? statsprof__strdup(s->os->name) : NULL;
  if (s->os->name && !explicit_name) p->src.oom = 1;
  pthread_mutex_unlock(&g_name_lock);
  if (explicit_name) set_name(p, s, explicit_name);
  else name_from_threading(p, s, active);
  statsprof__free(explicit_name);
}

void statsprof__threads_seek_name(statsprof *p, uint32_t slot) {
  statsprof__slot *s = &p->table.slots[slot];
  if (s->thread_ref || !s->os) return;
  statsprof__pending exc = statsprof__pending_take();
  name_slot(p, s, threading_active());
  PyErr_Clear();
  statsprof__pending_restore(exc);
}

void statsprof__threads_name(statsprof *p) {
  statsprof__pending exc = statsprof__pending_take();
  PyObject *active = threading_active();
  for (uint32_t i = 0; i < p->table.nslots; i++)
    if (p->table.slots[i].os) name_slot(p, &p->table.slots[i], active);
  PyErr_Clear();
  statsprof__pending_restore(exc);
}

/* ---- binding a profile hook's thread to its slot ------------------------ */

uint32_t statsprof__thread_bind(statsprof *p, statsprof__thread *t) {
  statsprof__table *tb = &p->table;
  statsprof__osthread *os = osthread_self();
  if (!os) return STATSPROF__NONE;
  uint32_t s = os->gen == p->gen && os->slot < tb->nslots && tb->slots[os->slot].os == os ? os->slot
                                                                                          : STATSPROF__NONE;
  for (uint32_t i = 0; s == STATSPROF__NONE && i < tb->nslots; i++)
    if (tb->slots[i].os == os) s = i;
  if (s == STATSPROF__NONE) {
    s = statsprof__table_slot_new(tb);
    if (s == STATSPROF__NONE) return STATSPROF__NONE;
    atomic_fetch_add(&os->refs, 1);
    tb->slots[s].os = os;
    tb->slots[s].thread_id = os->ident;
    tb->slots[s].state = STATSPROF__SLOT_LIVE;
    /* Named now, in case the thread ends before the next record. */
    statsprof__pending exc = statsprof__pending_take();
    name_slot(p, &tb->slots[s], threading_active());
    PyErr_Clear();
    statsprof__pending_restore(exc);
  }
  os->gen = p->gen;
  os->slot = s;
  t->slot = s;
  t->local = tb->slots[s].local;
  t->nlocal = tb->slots[s].nlocal;
  return s;
}

/* ---- activity and the end of threads ------------------------------------ */

void statsprof__threads_scan(statsprof *p) {
  for (statsprof__thread *t = p->src.threads; t; t = t->next)
    if (t->active && t->slot != STATSPROF__NONE) {
      p->table.slots[t->slot].active = 1;
      t->active = 0;
    }
  for (uint32_t i = 0; i < p->table.nslots; i++) {
    statsprof__slot *s = &p->table.slots[i];
    if (s->state == STATSPROF__SLOT_LIVE && statsprof__osthread_ended(s->os)) s->state = STATSPROF__SLOT_ENDED;
  }
}

/* Adds counters b into a (when a is not NULL) and zeroes b. */
static void move_counters(statsprof__counters *a, statsprof__counters *b) {
  if (a) {
    a->callcount += b->callcount;
    a->reccallcount += b->reccallcount;
    a->tt += b->tt;
    a->it += b->it;
  }
  memset(b, 0, sizeof *b);
}

/* Moves entry `from`'s counts, and its baselines, onto entry `to`. A
 * baseline array too short for `to` only loses `from`'s part: it starts at
 * zero there, like the counts themselves. */
static void move_entry(statsprof *p, uint32_t from, uint32_t to) {
  move_counters(&p->table.entries[to].c, &p->table.entries[from].c);
  uint32_t n = p->snap.nprev_entries;
  if (from < n) move_counters(to < n ? &p->snap.prev_entries[to] : NULL, &p->snap.prev_entries[from]);
  statsprof__frames *f = &p->frames;
  n = f->nentries;
  if (from < n) move_counters(to < n ? &f->entries[to].f0 : NULL, &f->entries[from].f0);
}

static void move_edge(statsprof *p, uint32_t from, uint32_t to) {
  move_counters(&p->table.edges[to].c, &p->table.edges[from].c);
  uint32_t n = p->snap.nprev_edges;
  if (from < n) move_counters(to < n ? &p->snap.prev_edges[to] : NULL, &p->snap.prev_edges[from]);
  statsprof__frames *f = &p->frames;
  n = f->nedges;
  if (from < n) move_counters(to < n ? &f->edges[to].f0 : NULL, &f->edges[from].f0);
}

/* The retired slot's entry for entry i's label; NONE on allocation failure. */
static uint32_t retired_entry(statsprof *p, uint32_t i) {
  return statsprof__table_entry(&p->table, p->table.retired, p->table.entries[i].label);
}

/* Folds the counts of every ended slot into the retired slot and frees the
 * slot for a new thread. Call after the interval's records went out: each
 * ended thread has had its last one. */
void statsprof__threads_retire(statsprof *p) {
  statsprof__table *t = &p->table;
  int any = 0;
  for (uint32_t i = 0; i < t->nslots; i++) any |= t->slots[i].state == STATSPROF__SLOT_ENDED;
  if (!any) return;
  if (t->retired == STATSPROF__NONE) {
    t->retired = statsprof__table_slot_new(t);
    if (t->retired == STATSPROF__NONE) return; /* try again at the next record */
    t->slots[t->retired].state = STATSPROF__SLOT_RETIRED;
  }
  /* Baselines must cover the retired entries about to be made. */
  uint32_t nentries = t->nentries;
  for (uint32_t i = 0; i < nentries; i++) {
    if (t->slots[t->entries[i].slot].state != STATSPROF__SLOT_ENDED) continue;
    if (retired_entry(p, i) == STATSPROF__NONE) return; /* out of memory: keep the slots */
  }
  uint32_t nedges = t->nedges;
  for (uint32_t k = 0; k < nedges; k++) {
    const statsprof__edge *g = &t->edges[k];
    if (t->slots[t->entries[g->callee].slot].state != STATSPROF__SLOT_ENDED) continue;
    if (statsprof__table_edge(t, retired_entry(p, g->caller), retired_entry(p, g->callee)) == STATSPROF__NONE)
      return;
  }
  /* Every target exists now; make room for them in the baselines. */
  if (statsprof__snapshot_fit(p)) return;
  for (uint32_t k = 0; k < nedges; k++) {
    const statsprof__edge *g = &t->edges[k];
    if (t->slots[t->entries[g->callee].slot].state != STATSPROF__SLOT_ENDED) continue;
    move_edge(p, k, statsprof__table_edge(t, retired_entry(p, g->caller), retired_entry(p, g->callee)));
  }
  for (uint32_t i = 0; i < nentries; i++)
    if (t->slots[t->entries[i].slot].state == STATSPROF__SLOT_ENDED) move_entry(p, i, retired_entry(p, i));
  for (statsprof__thread *th = p->src.threads, *next; th; th = next) {
    next = th->next;
    if (th->slot == STATSPROF__NONE || t->slots[th->slot].state != STATSPROF__SLOT_ENDED) continue;
    /* A state the dead thread left behind must not count into the slot's
     * next owner. The sources that own their states: to the pool. */
    if (statsprof__source_owns_states(&p->src)) statsprof__thread_pool(p, th);
    else statsprof__thread_orphan(th);
  }
  /* Pooled states of ended threads can no longer be called late. After
   * Py_Finalize (a destroy's last record) the objects went with their
   * interpreter: the references are dropped, not released, and the pool
   * is abandoned with the profiler (free_all). */
  int python = statsprof__python_reachable(p);
  if (python) statsprof__thread_pool_trim(p);
  for (uint32_t i = 0; i < t->nslots; i++) {
    statsprof__slot *s = &t->slots[i];
    if (s->state != STATSPROF__SLOT_ENDED) continue;
    statsprof__osthread_unref(s->os);
    if (python) Py_CLEAR(s->thread_ref);
    s->thread_ref = NULL;
    s->os = NULL;
    s->thread_id = 0;
    s->name = NULL;
    s->active = 0;
    s->state = STATSPROF__SLOT_FREE;
  }
  /* Its thread marks go with the slot: the next thread there starts from zero. */
  statsprof__snapshot_marks_retire(p);
}

void statsprof__threads_release(statsprof *p, int python_alive) {
  for (uint32_t i = 0; i < p->table.nslots; i++) {
    /* After Py_Finalize the objects are gone with the interpreter. */
    if (python_alive) Py_XDECREF(p->table.slots[i].thread_ref);
    p->table.slots[i].thread_ref = NULL;
  }
}

/* The live slot of a thread ident (the newest if the ident was reused). */
uint32_t statsprof__threads_find(statsprof *p, uint64_t thread_id) {
  uint32_t found = STATSPROF__NONE;
  for (uint32_t i = 0; i < p->table.nslots; i++) {
    const statsprof__slot *s = &p->table.slots[i];
    if (s->os && s->thread_id == thread_id && (found == STATSPROF__NONE || s->state == STATSPROF__SLOT_LIVE))
      found = i;
  }
  return found;
}

/* Signals are the host's business: its handlers must not run on our
 * threads, so they start with every signal blocked but the synchronous
 * faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS). A fault
 * raised while blocked is not delivered: the kernel kills the process
 * with the default action, and the host's crash handler (Python's
 * faulthandler) never ran. */
static atomic_int g_create_fails;

void statsprof__fail_thread_creates(int n) { atomic_store(&g_create_fails, n); }

int statsprof__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg) {
  int fails = atomic_load_explicit(&g_create_fails, memory_order_relaxed);
  while (fails > 0)
    if (atomic_compare_exchange_weak(&g_create_fails, &fails, fails - 1)) return EAGAIN;
  sigset_t mask, old;
  sigfillset(&mask);
  static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&mask, faults[i]);
  pthread_sigmask(SIG_SETMASK, &mask, &old);
  int rc = pthread_create(thread, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}
