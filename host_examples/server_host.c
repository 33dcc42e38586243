/*
 * server_host.c — a long-running C server that embeds CPython and serves
 * requests with Python handlers (host_examples/server/app.py) on a pool of
 * C worker threads, the way an application server with a Python scripting
 * layer does. No network: a load generator thread puts requests on an
 * in-process queue at a fixed rate.
 *
 * DESIGN
 * The main thread starts Python, imports the app, starts the profiler and
 * then releases the GIL for good: it only waits for the end of the run
 * (--seconds, --requests, SIGINT or SIGTERM, taken with sigtimedwait; the
 * signals are blocked in every thread). The generator pushes requests onto a
 * bounded queue (one mutex, two condition variables); a full queue rejects
 * the request (or, with --rps 0, the generator waits for room). Each worker
 * pops a request, enters Python with PyGILState_Ensure, calls the route's
 * handler, and leaves with PyGILState_Release. Shutdown stops the generator,
 * closes the queue, lets the workers serve what was already accepted and
 * joins them; only then does the main thread take the GIL back to stop the
 * profiler, so the profile's last record holds every request that returned.
 *
 * The statsprof part:
 *   statsprof_create (--profile, or $STATSPROF) before Python starts
 *   -> statsprof_start after the app is imported
 *   -> statsprof_attach_thread in each worker after PyGILState_Ensure
 *   -> records every interval from the profiler's own timer thread
 *      (trigger=timer: this host has no loop to call statsprof_tick from)
 *   -> statsprof_stop -> statsprof_destroy, before Py_FinalizeEx.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: it sets the feature macros for the C library */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed.h"
#include "statsprof.h"

#define APP_SUBDIR "host_examples/server"
#define MAX_ROUTES 16
#define MAX_WORKERS 256
/* How often the main thread looks at the clock and the generator while it
 * waits for a signal. */
#define POLL_NS (NS_PER_S / 10)
/* A generator that fell this far behind (a stopped process) starts its
 * schedule again instead of sending the backlog at once. */
#define MAX_LAG_NS (NS_PER_S / 4)

/*
 * The profile this host writes when profiling is on. Keys the given config
 * (--profile or $STATSPROF) does not set are taken from here, so
 * `--profile interval=1s` still runs on the timer, per thread, into the file.
 * The file rotates at 64 MiB, keeping five old ones.
 */
#define DEFAULT_SINK "jsonl:out/server.jsonl,max_bytes=64M,keep=5"
#define DEFAULT_INTERVAL "10s"
#define PRODUCTION_MODE "max_overhead=1%" /* added when the config is just "on" */
static const char *const default_keys[][2] = {
    {"trigger", "timer"},
    {"interval", DEFAULT_INTERVAL},
    {"per_thread", "on"},
    {"sink", DEFAULT_SINK},
};
#define NDEFAULT_KEYS (sizeof default_keys / sizeof *default_keys)

typedef struct host_options {
  long workers;
  double rps;          /* requests per second; 0: as fast as the workers take them */
  double seconds;      /* 0: until a signal (or --requests) */
  long long requests;  /* 0: no limit */
  long queue;          /* capacity of the request queue */
  unsigned long long seed;
  const char *profile; /* statsprof config, or NULL */
  const char *app_dir; /* NULL: search (see embed_find_dir) */
} host_options;

/* ---- latency histogram ------------------------------------------------ */

/* Log-linear buckets (16 per power of two, as HdrHistogram does): constant
 * memory for a server that runs for days, percentiles within 1/16. */
#define HIST_SUB 16
#define HIST_BUCKETS (64 * HIST_SUB)

typedef struct histogram {
  uint64_t n;
  int64_t max_ns;
  uint64_t counts[HIST_BUCKETS];
} histogram;

static int hist_bucket(uint64_t v) {
  if (v < HIST_SUB) return (int)v;
  int e = 63 - __builtin_clzll(v); /* >= 4 */
  return (e - 3) * HIST_SUB + (int)((v >> (e - 4)) & (HIST_SUB - 1));
}

/* The middle of a bucket's range of values. */
static double hist_value(int b) {
  if (b < HIST_SUB) return b;
  int e = b / HIST_SUB + 3;
  double width = (double)(UINT64_C(1) << (e - 4));
  return (double)(HIST_SUB + b % HIST_SUB) * width + (width - 1) / 2;
}

static void hist_add(histogram *h, int64_t ns) {
  if (ns < 0) ns = 0;
  h->counts[hist_bucket((uint64_t)ns)]++;
  h->n++;
  if (ns > h->max_ns) h->max_ns = ns;
}

static void hist_merge(histogram *into, const histogram *h) {
  for (int i = 0; i < HIST_BUCKETS; i++) into->counts[i] += h->counts[i];
  into->n += h->n;
  if (h->max_ns > into->max_ns) into->max_ns = h->max_ns;
}

/* The q-quantile in ns (q in (0, 1]), never above the largest value seen. */
static double hist_quantile(const histogram *h, double q) {
  if (!h->n) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
  if (rank < 1) rank = 1;
  for (int b = 0; b < HIST_BUCKETS; b++) {
    seen += h->counts[b];
    if (seen >= rank) {
      double v = hist_value(b);
      return v < (double)h->max_ns ? v : (double)h->max_ns;
    }
  }
  return (double)h->max_ns;
}

/* ---- the request queue ------------------------------------------------ */

typedef struct request {
  uint64_t id;       /* 1, 2, 3, ... */
  int route;
  int64_t queued_ns; /* CLOCK_MONOTONIC when generated */
} request;

typedef struct request_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty; /* workers wait here */
  pthread_cond_t not_full;  /* the generator waits here with --rps 0 */
  request *items;
  size_t cap, head, len;
  int closed;
} request_queue;

static int queue_init(request_queue *q, size_t cap) {
  *q = (request_queue){.cap = cap};
  q->items = calloc(cap, sizeof *q->items);
  if (!q->items) return -1;
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  return 0;
}

static void queue_free(request_queue *q) {
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
  free(q->items);
}

/* Adds r. With wait, blocks while the queue is full; without, a full queue
 * refuses it. Returns 0, or -1 when refused or closed. */
static int queue_push(request_queue *q, const request *r, int wait) {
  pthread_mutex_lock(&q->lock);
  while (wait && !q->closed && q->len == q->cap) pthread_cond_wait(&q->not_full, &q->lock);
  int ok = !q->closed && q->len < q->cap;
  if (ok) {
    q->items[(q->head + q->len++) % q->cap] = *r;
    pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->lock);
  return ok ? 0 : -1;
}

/* Takes the oldest request, waiting for one. Returns 0, or -1 once the
 * queue is closed and empty: a closed queue still hands out what it has. */
static int queue_pop(request_queue *q, request *r) {
  pthread_mutex_lock(&q->lock);
  while (!q->closed && q->len == 0) pthread_cond_wait(&q->not_empty, &q->lock);
  int ok = q->len > 0;
  if (ok) {
    *r = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return ok ? 0 : -1;
}

static void queue_close(request_queue *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = 1;
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->lock);
}

/* ---- the server's state ------------------------------------------------- */

typedef struct route {
  char *name;       /* "api" */
  char *label;      /* "app.py:71(handle_api)", as the profile names it */
  PyObject *handler;
  unsigned weight;
} route;

typedef struct route_stats {
  uint64_t served; /* handler returned (a value or an exception) */
  uint64_t failed; /* ... by raising */
  histogram latency; /* queued to answered */
} route_stats;

typedef struct server server;

typedef struct worker {
  server *s;
  int index;          /* 1-based, for the thread's name */
  pthread_t thread;
  unsigned long ident; /* threading.get_ident() of this thread */
  route_stats *stats;  /* [s->nroutes], this worker's alone */
} worker;

struct server {
  const host_options *o;
  route routes[MAX_ROUTES];
  int nroutes;
  unsigned total_weight;
  statsprof *profiler; /* NULL: not profiling */
  request_queue queue;
  worker *workers;
  int nworkers;
  pthread_t generator;
  atomic_int stop;          /* the generator should end */
  atomic_int generator_done; /* it ended (--requests reached) */
  atomic_ullong generated;
  atomic_ullong rejected;   /* queue full */
  atomic_int errors_printed;
  atomic_int attach_reported;
};

/* Unlike embed_sleep_until, for a thread that never holds the GIL. */
static void sleep_until(int64_t deadline_ns) {
  struct timespec ts = {.tv_sec = deadline_ns / NS_PER_S, .tv_nsec = deadline_ns % NS_PER_S};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* ---- command line --------------------------------------------------- */

static void usage(FILE *out) {
  fputs(
      "usage: server_host [options]\n"
      "\n"
      "Serves requests with the Python handlers in " APP_SUBDIR "/app.py on a pool\n"
      "of C worker threads, fed by an in-process load generator, optionally\n"
      "profiled by statsprof. Runs until --seconds, --requests, SIGINT or SIGTERM.\n"
      "\n"
      "  --workers N       worker threads (default 4)\n"
      "  --rps R           requests per second the generator sends (default 200);\n"
      "                    0: as fast as the workers take them\n"
      "  --seconds S       stop after S seconds (default: run until a signal)\n"
      "  --requests N      stop after N requests have been generated and served\n"
      "  --queue N         requests the queue holds; more are rejected (default 256)\n"
      "  --seed N          which route each request goes to (default 1)\n"
      "  --profile CONFIG  profile with this statsprof config (see README.md); keys it\n"
      "                    does not set default to\n"
      "                    trigger=timer;interval=" DEFAULT_INTERVAL ";per_thread=on;sink=" DEFAULT_SINK "\n"
      "                    (\"on\" or \"\" means those and " PRODUCTION_MODE ", production\n"
      "                    mode). Without it, the STATSPROF environment variable\n"
      "                    is read the same way; when neither is set nothing is\n"
      "                    profiled\n"
      "  --app-dir DIR     directory holding app.py (default: found in the runfiles,\n"
      "                    $BUILD_WORKSPACE_DIRECTORY or ./" APP_SUBDIR ")\n"
      "  -h, --help        show this help\n"
      "\n"
      "At exit prints the requests served per route and their latency percentiles\n"
      "(from being queued to being answered). Exit status: 0 ok (also after SIGINT\n"
      "or SIGTERM), 1 the app or Python failed, 2 bad arguments or profiler config.\n",
      out);
}

static int bad_arg(const char *opt, const char *val, const char *want) {
  fprintf(stderr, "server_host: bad %s '%s' (%s); see --help\n", opt, val, want);
  return -1;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* Fills *o from argv. Returns 0, 1 for --help, or -1 after printing why. */
static int parse_args(int argc, char **argv, host_options *o) {
  enum { O_WORKERS = 256, O_RPS, O_SECONDS, O_REQUESTS, O_QUEUE, O_SEED, O_PROFILE, O_APP_DIR };
  static const struct option opts[] = {
      {"workers", required_argument, NULL, O_WORKERS}, {"rps", required_argument, NULL, O_RPS},
      {"seconds", required_argument, NULL, O_SECONDS}, {"requests", required_argument, NULL, O_REQUESTS},
      {"queue", required_argument, NULL, O_QUEUE},     {"seed", required_argument, NULL, O_SEED},
      {"profile", required_argument, NULL, O_PROFILE}, {"app-dir", required_argument, NULL, O_APP_DIR},
      {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0}};
  *o = (host_options){.workers = 4, .rps = 200, .queue = 256, .seed = 1};
  long long n;
  int c;
  while ((c = embed_getopt("server_host", argc, argv, opts)) > 0) {
    switch (c) {
      case O_WORKERS:
        if (parse_ll(optarg, 1, MAX_WORKERS, &n)) return bad_arg("--workers", optarg, "1 to 256");
        o->workers = (long)n;
        break;
      case O_RPS:
        if (parse_double(optarg, 0, 1e6, &o->rps)) return bad_arg("--rps", optarg, "0 to 1000000");
        break;
      case O_SECONDS:
        if (parse_double(optarg, 0, 1e9, &o->seconds) || o->seconds <= 0)
          return bad_arg("--seconds", optarg, "a positive number");
        break;
      case O_REQUESTS:
        if (parse_ll(optarg, 1, LLONG_MAX, &o->requests)) return bad_arg("--requests", optarg, "a whole number >= 1");
        break;
      case O_QUEUE:
        if (parse_ll(optarg, 1, 1 << 20, &n)) return bad_arg("--queue", optarg, "1 to 1048576");
        o->queue = (long)n;
        break;
      case O_SEED:
        if (parse_ll(optarg, 0, LLONG_MAX, &n)) return bad_arg("--seed", optarg, "a whole number >= 0");
        o->seed = (unsigned long long)n;
        break;
      case O_PROFILE: o->profile = optarg; break;
      case O_APP_DIR: o->app_dir = optarg; break;
      case 'h': usage(stdout); return 1;
    }
  }
  if (c < 0) return -1;
  return 0;
}

/* ---- the profiler's config ---------------------------------------------- */

/* Where `config` sets `key`: the start of its value, or NULL. A rough
 * scan; statsprof_create judges the rest and reports anything malformed. */
static const char *config_value(const char *config, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = config; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ';') p++;
    if (!strncmp(p, key, klen)) {
      const char *q = p + klen;
      while (*q == ' ' || *q == '\t') q++;
      if (*q == '=') {
        for (q++; *q == ' ' || *q == '\t';) q++;
        return q;
      }
    }
    p += strcspn(p, ";");
  }
  return NULL;
}

/* The config this host runs: `given` plus the host's defaults for the keys
 * it leaves out. "on", "1", "true", "yes" and "" mean the defaults alone,
 * and then production mode: profiling windows sized to cost at most 1% of
 * the server's time (PRODUCTION_MODE), safe to leave on for weeks. An
 * explicit config profiles continuously unless it asks for duty cycling. */
static char *host_config(const char *given) {
  static const char *just_defaults[] = {"", "on", "1", "true", "yes"};
  for (size_t i = 0; i < sizeof just_defaults / sizeof *just_defaults; i++)
    if (!strcmp(given, just_defaults[i])) given = PRODUCTION_MODE;
  size_t len = strlen(given) + 1;
  for (size_t i = 0; i < NDEFAULT_KEYS; i++) len += strlen(default_keys[i][0]) + strlen(default_keys[i][1]) + 2;
  char *out = malloc(len);
  if (!out) return NULL;
  strcpy(out, given);
  for (size_t i = 0; i < NDEFAULT_KEYS; i++) {
    if (config_value(given, default_keys[i][0])) continue;
    if (*out) strcat(out, ";");
    strcat(strcat(strcat(out, default_keys[i][0]), "="), default_keys[i][1]);
  }
  return out;
}

/* Makes the profiler (not started) from --profile, else $STATSPROF. A bad
 * --profile is an error (-1); a bad $STATSPROF only a warning, as with
 * statsprof_from_env: the server runs on unprofiled. */
static int make_profiler(const host_options *o, statsprof **out, int *ticked) {
  *out = NULL;
  const char *given = o->profile, *from = "--profile";
  if (!given) {
    given = getenv("STATSPROF");
    from = "STATSPROF";
    if (!given || !*given) return 0; /* off: no profiler, no hook, no cost */
    static const char *off[] = {"0", "off", "false", "no"}; /* as statsprof_from_env */
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
      if (!strcmp(given, off[i])) return 0;
  }
  char *config = host_config(given);
  if (!config) {
    fputs("server_host: out of memory\n", stderr);
    return -1;
  }
  int rc = statsprof_create(config, out);
  if (rc) {
    fprintf(stderr, "server_host: bad %s: %s\n", from, statsprof_errmsg(NULL));
  } else {
    /* trigger=tick, when asked for: the main thread ticks while it waits. */
    const char *trigger = config_value(config, "trigger");
    *ticked = trigger && !strncmp(trigger, "tick", 4);
    printf("server_host: profiling with \"%s\"\n", config);
    fflush(stdout);
  }
  free(config);
  return rc && o->profile ? -1 : 0;
}

/* ---- Python ----------------------------------------------------------- */

static char *utf8_dup(PyObject *s) {
  const char *u = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
  return u ? strdup(u) : NULL;
}

/* "app.py:71(handle_api)": the handler's key in the profile, with the file's
 * base name. A callable without a code object gets its repr. */
static char *handler_label(PyObject *fn) {
  PyObject *code = PyObject_GetAttrString(fn, "__code__");
  if (!code || !PyCode_Check(code)) {
    Py_XDECREF(code);
    PyErr_Clear();
    PyObject *r = PyObject_Repr(fn);
    char *s = utf8_dup(r);
    Py_XDECREF(r);
    return s;
  }
  PyCodeObject *co = (PyCodeObject *)code;
  const char *file = PyUnicode_AsUTF8(co->co_filename), *name = PyUnicode_AsUTF8(co->co_name);
  char *label = NULL;
  if (file && name) {
    const char *slash = strrchr(file, '/');
    size_t n = strlen(file) + strlen(name) + 32;
    label = malloc(n);
    if (label) snprintf(label, n, "%s:%d(%s)", slash ? slash + 1 : file, co->co_firstlineno, name);
  }
  Py_DECREF(code);
  return label;
}

/* Reads app.ROUTES: a list of (name, handler, weight). Returns 0, or -1 with
 * a Python exception set. */
static int load_routes(PyObject *app, server *s) {
  PyObject *routes = PyObject_GetAttrString(app, "ROUTES");
  PyObject *seq = routes ? PySequence_Fast(routes, "app.ROUTES must be a list") : NULL;
  Py_XDECREF(routes);
  if (!seq) return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  if (n < 1 || n > MAX_ROUTES) {
    PyErr_Format(PyExc_ValueError, "app.ROUTES must have 1 to %d routes, not %zd", MAX_ROUTES, n);
    Py_DECREF(seq);
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *name, *fn;
    unsigned long weight;
    if (!PyArg_ParseTuple(item, "UOk;app.ROUTES items are (name, handler, weight)", &name, &fn, &weight))
      break;
    if (!PyCallable_Check(fn) || weight < 1 || weight > 1000000) {
      PyErr_Format(PyExc_ValueError, "app.ROUTES[%zd]: the handler must be callable, the weight 1 to 1000000", i);
      break;
    }
    route *r = &s->routes[s->nroutes];
    r->name = utf8_dup(name);
    r->label = handler_label(fn);
    if (!r->name || !r->label) {
      if (!PyErr_Occurred()) PyErr_NoMemory();
      free(r->name);
      free(r->label);
      break;
    }
    Py_INCREF(fn);
    r->handler = fn;
    r->weight = (unsigned)weight;
    s->total_weight += r->weight;
    s->nroutes++;
  }
  Py_DECREF(seq);
  return s->nroutes == n ? 0 : -1;
}

static void free_routes(server *s) {
  for (int i = 0; i < s->nroutes; i++) {
    Py_CLEAR(s->routes[i].handler);
    free(s->routes[i].name);
    free(s->routes[i].label);
  }
  s->nroutes = 0;
}

/* Imports app.py from dir and reads its routes. Returns 0, or -1 with a
 * Python exception set. */
static int load_app(const char *dir, server *s) {
  if (embed_add_sys_path(dir) < 0) return -1;
  PyObject *app = PyImport_ImportModule("app");
  int rc = app ? load_routes(app, s) : -1;
  Py_XDECREF(app);
  return rc;
}

/* ---- the load generator ------------------------------------------------ */

/* splitmix64: which route request `id` goes to, the same for every run with
 * the same seed. */
static uint64_t mix(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static int pick_route(const server *s, uint64_t id) {
  uint64_t w = mix(id ^ (s->o->seed * UINT64_C(0x2545f4914f6cdd1d))) % s->total_weight;
  for (int i = 0; i < s->nroutes; i++) {
    if (w < s->routes[i].weight) return i;
    w -= s->routes[i].weight;
  }
  return s->nroutes - 1;
}

/* Sends requests every 1/rps seconds on an absolute schedule (or as fast as
 * the queue takes them with --rps 0) until told to stop or --requests have
 * gone out. Never touches Python. */
static void *generator_main(void *arg) {
  server *s = arg;
  const host_options *o = s->o;
  int64_t period = o->rps > 0 ? (int64_t)((double)NS_PER_S / o->rps) : 0;
  int64_t base = embed_mono_ns(), k = 0;
  for (uint64_t id = 1; !atomic_load(&s->stop); id++) {
    if (o->requests && id > (uint64_t)o->requests) break;
    if (period) {
      int64_t deadline = base + ++k * period;
      if (embed_mono_ns() - deadline > MAX_LAG_NS) {
        base = deadline = embed_mono_ns();
        k = 0;
      }
      /* In slices, so a slow rate still stops promptly. */
      for (int64_t now = embed_mono_ns(); now < deadline && !atomic_load(&s->stop); now = embed_mono_ns())
        sleep_until(deadline - now > POLL_NS ? now + POLL_NS : deadline);
      if (atomic_load(&s->stop)) break;
    }
    request r = {.id = id, .route = pick_route(s, id), .queued_ns = embed_mono_ns()};
    atomic_fetch_add(&s->generated, 1);
    if (queue_push(&s->queue, &r, period == 0)) atomic_fetch_add(&s->rejected, 1);
  }
  atomic_store(&s->generator_done, 1);
  return NULL;
}

/* ---- the workers ------------------------------------------------------- */

/* One request, from entering Python to leaving it. */
static void serve(worker *w, const request *r) {
  server *s = w->s;
  route_stats *st = &w->stats[r->route];
  PyGILState_STATE g = PyGILState_Ensure();
  /* PyGILState_Ensure made this thread a new thread state (Release deletes
   * it again): attach the profiler to it before running any Python. */
  if (s->profiler && statsprof_attach_thread(s->profiler) && !atomic_exchange(&s->attach_reported, 1))
    fprintf(stderr, "server_host: statsprof_attach_thread: %s\n", statsprof_errmsg(s->profiler));
  PyObject *id = PyLong_FromUnsignedLongLong(r->id);
  PyObject *reply = id ? PyObject_CallOneArg(s->routes[r->route].handler, id) : NULL;
  if (reply && !PyUnicode_Check(reply) && !PyBytes_Check(reply)) {
    PyErr_Format(PyExc_TypeError, "handler %s returned %.100s, not str", s->routes[r->route].label,
                 Py_TYPE(reply)->tp_name);
    Py_CLEAR(reply);
  }
  if (!reply) {
    st->failed++;
    if (atomic_fetch_add(&s->errors_printed, 1) < 3) {
      fprintf(stderr, "server_host: request %llu (%s) failed:\n", (unsigned long long)r->id,
              s->routes[r->route].name);
      PyErr_Print();
    } else {
      PyErr_Clear();
    }
  }
  Py_XDECREF(reply);
  Py_XDECREF(id);
  PyGILState_Release(g);
  st->served++;
  hist_add(&st->latency, embed_mono_ns() - r->queued_ns);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  PyGILState_STATE g = PyGILState_Ensure();
  w->ident = PyThread_get_thread_ident();
  embed_name_thread(w->index);
  PyGILState_Release(g);
  request r;
  while (queue_pop(&w->s->queue, &r) == 0) serve(w, &r);
  return NULL;
}

/* ---- running ----------------------------------------------------------- */

static int start_threads(server *s) {
  s->workers = calloc((size_t)s->o->workers, sizeof *s->workers);
  if (!s->workers) return -1;
  for (long i = 0; i < s->o->workers; i++) {
    worker *w = &s->workers[i];
    *w = (worker){.s = s, .index = (int)i + 1};
    w->stats = calloc((size_t)s->nroutes, sizeof *w->stats);
    if (!w->stats || pthread_create(&w->thread, NULL, worker_main, w)) {
      free(w->stats);
      return -1;
    }
    s->nworkers++;
  }
  if (pthread_create(&s->generator, NULL, generator_main, s)) return -1;
  return 0;
}

/* Waits, without the GIL, until the run is over: --seconds elapsed, the
 * generator sent its --requests, or SIGINT/SIGTERM arrived. Returns the
 * signal, or 0. With trigger=tick the profiler is ticked meanwhile. */
static int wait_for_end(server *s, const sigset_t *sigs, int tick) {
  int64_t end = s->o->seconds > 0 ? embed_mono_ns() + (int64_t)(s->o->seconds * 1e9) : INT64_MAX;
  for (;;) {
    int64_t left = end - embed_mono_ns();
    if (left <= 0 || atomic_load(&s->generator_done)) return 0;
    if (left > POLL_NS) left = POLL_NS;
    struct timespec ts = {.tv_sec = left / NS_PER_S, .tv_nsec = left % NS_PER_S};
    int sig = sigtimedwait(sigs, NULL, &ts);
    if (sig > 0) return sig;
    if (tick && s->profiler) {
      PyGILState_STATE g = PyGILState_Ensure();
      statsprof_tick(s->profiler);
      PyGILState_Release(g);
    }
  }
}

/* Stops the generator, lets the workers serve what is queued, joins all. */
static void stop_threads(server *s, int generator_started) {
  atomic_store(&s->stop, 1);
  if (generator_started) pthread_join(s->generator, NULL);
  queue_close(&s->queue);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);
}

/* ---- the report ------------------------------------------------------- */

static void print_row(const char *name, const char *label, const route_stats *st) {
  const histogram *h = &st->latency;
  printf("%-12s %-32s %9llu %7llu %9.3f %9.3f %9.3f %9.3f\n", name, label, (unsigned long long)st->served,
         (unsigned long long)st->failed, hist_quantile(h, 0.50) / 1e6, hist_quantile(h, 0.95) / 1e6,
         hist_quantile(h, 0.99) / 1e6, (double)h->max_ns / 1e6);
}

static void print_report(const server *s, double wall_s) {
  route_stats *per = calloc((size_t)s->nroutes + 1, sizeof *per), *all;
  if (!per) {
    fputs("server_host: out of memory for the report\n", stderr);
    return;
  }
  all = &per[s->nroutes];
  for (int w = 0; w < s->nworkers; w++) {
    for (int r = 0; r < s->nroutes; r++) {
      const route_stats *st = &s->workers[w].stats[r];
      per[r].served += st->served;
      per[r].failed += st->failed;
      hist_merge(&per[r].latency, &st->latency);
    }
  }
  for (int r = 0; r < s->nroutes; r++) {
    all->served += per[r].served;
    all->failed += per[r].failed;
    hist_merge(&all->latency, &per[r].latency);
  }
  printf("server_host: served %llu of %llu requests in %.2f s (%.1f/s) with %d workers; "
         "%llu rejected (queue full), %llu failed\n",
         (unsigned long long)all->served, (unsigned long long)atomic_load(&s->generated), wall_s,
         wall_s > 0 ? (double)all->served / wall_s : 0.0, s->nworkers,
         (unsigned long long)atomic_load(&s->rejected), (unsigned long long)all->failed);
  printf("%-12s %-32s %9s %7s %9s %9s %9s %9s\n", "route", "handler", "served", "failed", "p50_ms", "p95_ms",
         "p99_ms", "max_ms");
  for (int r = 0; r < s->nroutes; r++) print_row(s->routes[r].name, s->routes[r].label, &per[r]);
  print_row("all", "-", all);
  printf("server_host: worker threads:");
  for (int w = 0; w < s->nworkers; w++) printf(" %lu", s->workers[w].ident);
  printf("\n");
  free(per);
}

/* ---- main -------------------------------------------------------------- */

static void free_server(server *s) {
  for (int i = 0; s->workers && i < s->nworkers; i++) free(s->workers[i].stats);
  free(s->workers);
  free_routes(s);
  queue_free(&s->queue);
}

static void print_start(const server *s) {
  printf("server_host: serving routes");
  for (int r = 0; r < s->nroutes; r++) printf("%s %s", r ? "," : "", s->routes[r].name);
  if (s->o->rps > 0) printf(" on %d workers at %g requests/s", s->nworkers, s->o->rps);
  else printf(" on %d workers, as fast as they go", s->nworkers);
  printf("; SIGINT or SIGTERM stops\n");
  fflush(stdout);
}

/* The server's life inside a running interpreter (GIL held on entry and on
 * return). Returns an exit code. */
static int run_server(server *s, const char *dir, const sigset_t *sigs, int tick) {
  if (load_app(dir, s)) {
    PyErr_Print();
    fprintf(stderr, "server_host: cannot load the app from %s\n", dir);
    return EXIT_RUNTIME;
  }
  if (s->profiler && statsprof_start(s->profiler)) {
    fprintf(stderr, "server_host: statsprof_start: %s\n", statsprof_errmsg(s->profiler));
    return EXIT_USAGE;
  }
  int status = EXIT_OK;
  /* From here on the main thread runs no Python: the workers take turns. */
  PyThreadState *main_ts = PyEval_SaveThread();
  int64_t t0 = embed_mono_ns();
  int started = start_threads(s) == 0;
  if (!started) {
    fputs("server_host: cannot start the worker threads\n", stderr);
    status = EXIT_RUNTIME;
  } else {
    print_start(s);
    int sig = wait_for_end(s, sigs, tick);
    if (sig) fprintf(stderr, "server_host: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  }
  stop_threads(s, started);
  double wall_s = (double)(embed_mono_ns() - t0) / 1e9;
  PyEval_RestoreThread(main_ts);

  /* Every handler has returned: the last record holds the rest of them. */
  if (s->profiler && statsprof_stop(s->profiler)) {
    fprintf(stderr, "server_host: statsprof_stop: %s\n", statsprof_errmsg(s->profiler));
    status = EXIT_RUNTIME;
  }
  print_report(s, wall_s);
  return status;
}

int main(int argc, char **argv) {
  host_options o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc > 0 ? EXIT_OK : EXIT_USAGE;
  /* Relative paths (the jsonl sink's file) mean the directory `bazel run`
   * ran from. */
  embed_enter_working_dir("server_host");

  /* Blocked here, so in every thread started later (the workers, Python's,
   * statsprof's): the main thread alone takes them, with sigtimedwait. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  char *dir = embed_find_dir(argv[0], o.app_dir, APP_SUBDIR, "app.py");
  if (!dir) {
    fprintf(stderr, "server_host: no app.py in %s; use --app-dir DIR\n",
            o.app_dir ? o.app_dir : "the runfiles, $BUILD_WORKSPACE_DIRECTORY or ./" APP_SUBDIR);
    return EXIT_USAGE;
  }
  server s = {.o = &o};
  if (queue_init(&s.queue, (size_t)o.queue)) {
    fputs("server_host: out of memory\n", stderr);
    free(dir);
    return EXIT_RUNTIME;
  }
  /* Made before Python starts: a bad config fails fast and starts nothing. */
  int tick = 0;
  if (make_profiler(&o, &s.profiler, &tick)) {
    queue_free(&s.queue);
    free(dir);
    return EXIT_USAGE;
  }
  /* SIGINT/SIGTERM are the main thread's (sigtimedwait), not Python's. */
  if (embed_start_python("server_host", argv[0], 0)) {
    statsprof_destroy(s.profiler);
    queue_free(&s.queue);
    free(dir);
    return EXIT_RUNTIME;
  }
  int status = run_server(&s, dir, &sigs, tick);
  statsprof_destroy(s.profiler); /* before Py_FinalizeEx */
  free_server(&s);
  if (Py_FinalizeEx() < 0 && status == EXIT_OK) status = EXIT_RUNTIME;
  free(dir);
  return status;
}
