/*
 * game_host.c — a small C "engine" that embeds CPython and runs the Python
 * game in host_examples/game at a fixed 60 Hz timestep, the way a real game
 * host would. It shows the whole statsprof integration:
 *
 *   statsprof_create (or statsprof_from_env) -> statsprof_start
 *   -> statsprof_frame_mark + statsprof_tick once per frame
 *   -> statsprof_stop -> statsprof_destroy
 *
 * With --workers N it also runs N C worker threads (pthreads) beside the
 * frame loop, as an engine's job system would: each enters Python with
 * PyGILState_Ensure, attaches the profiler (statsprof_attach_thread) and runs
 * one background job (game/jobs.py), then sleeps a little without the GIL.
 * They are joined before statsprof_stop.
 *
 * Profiling is on only with --profile CONFIG or the STATSPROF environment
 * variable; otherwise no profile hook is installed and the loop pays nothing.
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

#include "embed.h"
#include "statsprof.h"

#define FPS 60
/* After a stall longer than this (a debugger, a suspended process) the loop
 * restarts its schedule instead of replaying the backlog at full speed. */
#define MAX_LAG_NS (NS_PER_S / 4)
#define TOP_ROWS 15
#define GAME_SUBDIR "host_examples/game"
#define MAX_WORKERS 64
#define WORKER_PAUSE_NS (5 * NS_PER_S / 1000) /* between two jobs, without the GIL */

typedef struct host_options {
  double seconds;         /* run time when frames is 0 */
  long frames;            /* 0: derive from seconds */
  long seed;
  const char *profile;    /* statsprof config, or NULL */
  long *hitch;            /* frame numbers that trigger the game's hitch */
  size_t nhitch;
  const char *game_dir;   /* NULL: search (see embed_find_dir) */
  int no_sleep;           /* run frames back to back (tests) */
  long workers;           /* C worker threads running game/jobs.py */
} host_options;

typedef struct game {
  PyObject *module;
  PyObject *frame; /* game.frame */
  PyObject *dt;    /* the float 1/FPS, made once */
} game;

typedef struct loop_stats {
  long frames;
  int64_t work_ns;     /* sum of frame() + tick, without sleeping */
  int64_t max_work_ns;
  int64_t wall_ns;
} loop_stats;

/* ---- command line --------------------------------------------------- */

static void usage(FILE *out) {
  fputs(
      "usage: game_host [options]\n"
      "\n"
      "Runs the Python game in " GAME_SUBDIR " in a fixed-timestep loop at 60 fps,\n"
      "optionally profiled by statsprof.\n"
      "\n"
      "  --seconds S       run for S seconds of game time (default 15)\n"
      "  --frames N        run exactly N frames (instead of --seconds)\n"
      "  --profile CONFIG  profile with this statsprof config, e.g.\n"
      "                    \"interval=1s;sink=jsonl:out/prof.jsonl\" (see README.md)\n"
      "                    without it, the STATSPROF environment variable is used;\n"
      "                    when neither is set nothing is profiled\n"
      "  --hitch LIST      comma-separated frame numbers (1-based) on which the\n"
      "                    game loads a level chunk (~30-50 ms), e.g. 120,300\n"
      "  --seed N          world seed (default 1)\n"
      "  --game-dir DIR    directory holding game.py (default: found in the\n"
      "                    runfiles, $BUILD_WORKSPACE_DIRECTORY or ./" GAME_SUBDIR ")\n"
      "  --no-sleep        do not wait for frame deadlines (faster than real time)\n"
      "  --workers N       also run N C worker threads (0-64, default 0) that run\n"
      "                    background jobs (game/jobs.py) until the loop ends\n"
      "  -h, --help        show this help\n"
      "\n"
      "At exit a profiled run prints the top 15 functions by cumulative time.\n"
      "Exit status: 0 ok, 1 the game or Python failed, 2 bad arguments or\n"
      "profiler config, 130 interrupted (Ctrl-C; the profile is still printed).\n",
      out);
}

static int parse_hitch(const char *s, host_options *o) {
  size_t n = 1;
  for (const char *c = s; *c; c++) n += *c == ',';
  o->hitch = calloc(n, sizeof *o->hitch);
  if (!o->hitch) return -1;
  char *copy = strdup(s), *save = NULL;
  if (!copy) return -1;
  int rc = 0;
  for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save))
    rc = embed_parse_long(tok, 1, LONG_MAX, &o->hitch[o->nhitch++]);
  free(copy);
  return o->nhitch ? rc : -1;
}

static int bad_arg(const char *opt, const char *val, const char *want) {
  fprintf(stderr, "game_host: bad %s '%s' (%s); see --help\n", opt, val, want);
  return -1;
}

/* Fills *o from argv. Returns 0, 1 for --help, or -1 after printing why. */
static int parse_args(int argc, char **argv, host_options *o) {
  enum { O_SECONDS = 256, O_FRAMES, O_PROFILE, O_HITCH, O_SEED, O_GAME_DIR, O_NO_SLEEP, O_WORKERS };
  static const struct option opts[] = {
      {"seconds", required_argument, NULL, O_SECONDS}, {"frames", required_argument, NULL, O_FRAMES},
      {"profile", required_argument, NULL, O_PROFILE}, {"hitch", required_argument, NULL, O_HITCH},
      {"seed", required_argument, NULL, O_SEED},       {"game-dir", required_argument, NULL, O_GAME_DIR},
      {"no-sleep", no_argument, NULL, O_NO_SLEEP},     {"workers", required_argument, NULL, O_WORKERS},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  *o = (host_options){.seconds = 15.0, .seed = 1};
  int seconds_given = 0, c;
  char *end;
  while ((c = embed_getopt("game_host", argc, argv, opts)) > 0) {
    switch (c) {
      case O_SECONDS:
        errno = 0;
        o->seconds = strtod(optarg, &end);
        if (end == optarg || *end || errno || !(o->seconds > 0 && o->seconds < 1e7))
          return bad_arg("--seconds", optarg, "a positive number");
        seconds_given = 1;
        break;
      case O_FRAMES:
        if (embed_parse_long(optarg, 1, LONG_MAX / 2, &o->frames))
          return bad_arg("--frames", optarg, "a whole number >= 1");
        break;
      case O_PROFILE: o->profile = optarg; break;
      case O_HITCH:
        free(o->hitch);
        o->hitch = NULL;
        o->nhitch = 0;
        if (parse_hitch(optarg, o)) return bad_arg("--hitch", optarg, "frame numbers >= 1, e.g. 120,300");
        break;
      case O_SEED:
        if (embed_parse_long(optarg, LONG_MIN, LONG_MAX, &o->seed)) return bad_arg("--seed", optarg, "an integer");
        break;
      case O_GAME_DIR: o->game_dir = optarg; break;
      case O_NO_SLEEP: o->no_sleep = 1; break;
      case O_WORKERS:
        if (embed_parse_long(optarg, 0, MAX_WORKERS, &o->workers))
          return bad_arg("--workers", optarg, "a whole number from 0 to 64");
        break;
      case 'h': usage(stdout); return 1;
    }
  }
  if (c < 0) return -1;
  if (seconds_given && o->frames) {
    fputs("game_host: give --seconds or --frames, not both\n", stderr);
    return -1;
  }
  if (!o->frames) {
    o->frames = (long)(o->seconds * FPS + 0.5);
    if (o->frames < 1) o->frames = 1;
  }
  return 0;
}

/* ---- Python ----------------------------------------------------------- */

static int call_void(PyObject *module, const char *name, PyObject *arg) {
  PyObject *r = PyObject_CallMethod(module, name, "O", arg);
  Py_XDECREF(r);
  return r ? 0 : -1;
}

static PyObject *hitch_list(const host_options *o) {
  PyObject *list = PyList_New((Py_ssize_t)o->nhitch);
  for (size_t i = 0; list && i < o->nhitch; i++) {
    PyObject *v = PyLong_FromLong(o->hitch[i]);
    if (!v) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, v);
  }
  return list;
}

static int load_game(const char *dir, game *g) {
  *g = (game){0};
  if (embed_add_sys_path(dir) < 0) return -1;
  g->module = PyImport_ImportModule("game");
  g->frame = g->module ? PyObject_GetAttrString(g->module, "frame") : NULL;
  g->dt = g->frame ? PyFloat_FromDouble(1.0 / FPS) : NULL;
  return g->dt ? 0 : -1;
}

/* Runs the game's set-up: hitch frames, then init(seed). */
static int init_game(const host_options *o, game *g) {
  if (o->nhitch) {
    PyObject *frames = hitch_list(o);
    int rc = frames ? call_void(g->module, "set_hitch_frames", frames) : -1;
    Py_XDECREF(frames);
    if (rc) return -1;
  }
  PyObject *seed = PyLong_FromLong(o->seed);
  int rc = seed ? call_void(g->module, "init", seed) : -1;
  Py_XDECREF(seed);
  return rc;
}

/* jobs.worker_job, the worker threads' job. Returns a new reference, or NULL
 * with a Python exception set. */
static PyObject *load_job(void) {
  PyObject *jobs = PyImport_ImportModule("jobs");
  PyObject *job = jobs ? PyObject_GetAttrString(jobs, "worker_job") : NULL;
  Py_XDECREF(jobs);
  return job;
}

static void free_game(game *g) {
  Py_CLEAR(g->dt);
  Py_CLEAR(g->frame);
  Py_CLEAR(g->module);
}

/* ---- the fixed-timestep loop ------------------------------------------ */

/* The profiler's part of a frame: mark its end (frame times; a spike record
 * when it went over a configured budget), then emit a record if one is due.
 * A failure is reported once and the game keeps running. */
static void profile_frame(statsprof *p, int *reported) {
  int marked = statsprof_frame_mark(p);
  int ticked = statsprof_tick(p);
  if ((marked < 0 || ticked < 0) && !*reported) {
    fprintf(stderr, "game_host: statsprof_%s: %s\n", marked < 0 ? "frame_mark" : "tick",
            statsprof_errmsg(p));
    *reported = 1;
  }
}

/* One frame: the game's step, then the profiler's part. */
static int run_frame(game *g, statsprof *p, int *reported) {
  PyObject *r = PyObject_CallOneArg(g->frame, g->dt);
  if (!r) return -1;
  Py_DECREF(r);
  if (p) profile_frame(p, reported);
  return 0;
}

/* Runs o->frames frames, each started on its 1/60 s deadline (frames late
 * after a hitch run back to back to catch up). Returns 0, or -1 with a
 * Python exception set. */
static int run_frames(const host_options *o, game *g, statsprof *p, loop_stats *st) {
  int reported = 0;
  int64_t base = embed_mono_ns(), k = 0;
  /* Frame 1 starts now: each mark ends one frame (its wait and its work). */
  if (p) statsprof_frame_mark(p);
  for (long i = 0; i < o->frames; i++) {
    int64_t start = embed_mono_ns();
    if (run_frame(g, p, &reported)) return -1;
    int64_t work = embed_mono_ns() - start;
    st->frames++;
    st->work_ns += work;
    if (work > st->max_work_ns) st->max_work_ns = work;
    if (o->no_sleep || i + 1 == o->frames) continue;
    int64_t deadline = base + ++k * NS_PER_S / FPS;
    if (embed_mono_ns() - deadline > MAX_LAG_NS) {
      base = deadline = embed_mono_ns();
      k = 0;
    }
    if (embed_sleep_until(deadline)) return -1;
  }
  return 0;
}

static int run_loop(const host_options *o, game *g, statsprof *p, loop_stats *st) {
  *st = (loop_stats){0};
  int64_t t0 = embed_mono_ns();
  int rc = run_frames(o, g, p, st);
  st->wall_ns = embed_mono_ns() - t0; /* also when interrupted */
  return rc;
}

/* ---- the worker threads ---------------------------------------------- */

typedef struct worker_pool worker_pool;

typedef struct worker {
  worker_pool *pool;
  int index;  /* 1-based: "worker-1" */
  pthread_t thread;
  long jobs;  /* jobs that returned; read after the join */
  int failed; /* a job raised: the worker stopped */
} worker;

struct worker_pool {
  statsprof *p;    /* NULL: not profiled */
  PyObject *job;   /* jobs.worker_job */
  worker *workers;
  int n;           /* started */
  atomic_int stop; /* set when the frame loop is over */
  atomic_int attach_reported;
};

/* One job: enter Python, attach the profiler, run jobs.worker_job, leave.
 * Returns 0, or -1 after printing the job's exception. */
static int run_job(worker *w) {
  worker_pool *pool = w->pool;
  PyGILState_STATE g = PyGILState_Ensure();
  /* PyGILState_Ensure made a new thread state (Release deletes it again):
   * attach the profiler to it before running any Python. */
  if (pool->p && statsprof_attach_thread(pool->p) && !atomic_exchange(&pool->attach_reported, 1))
    fprintf(stderr, "game_host: statsprof_attach_thread: %s\n", statsprof_errmsg(pool->p));
  PyObject *r = PyObject_CallFunction(pool->job, "il", w->index, w->jobs);
  if (r)
    w->jobs++;
  else {
    fprintf(stderr, "game_host: worker-%d: job %ld failed:\n", w->index, w->jobs);
    PyErr_Print();
  }
  Py_XDECREF(r);
  PyGILState_Release(g);
  return r ? 0 : -1;
}

/* Runs jobs, at least one, until the frame loop is over. */
static void *worker_main(void *arg) {
  worker *w = arg;
  PyGILState_STATE g = PyGILState_Ensure();
  embed_name_thread(w->index);
  PyGILState_Release(g);
  const struct timespec pause = {.tv_sec = 0, .tv_nsec = WORKER_PAUSE_NS};
  do {
    if (run_job(w)) {
      w->failed = 1;
      break;
    }
    nanosleep(&pause, NULL);
  } while (!atomic_load(&w->pool->stop));
  return NULL;
}

/* Starts o->workers threads (none for 0). Signals stay with the main thread.
 * GIL held. Returns 0, or -1 after printing why (the started ones run on). */
static int start_workers(const host_options *o, statsprof *p, PyObject *job, worker_pool *pool) {
  *pool = (worker_pool){.p = p, .job = job};
  if (!o->workers) return 0;
  pool->workers = calloc((size_t)o->workers, sizeof *pool->workers);
  if (!pool->workers) {
    fputs("game_host: out of memory for the workers\n", stderr);
    return -1;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  for (long i = 0; i < o->workers && !rc; i++) {
    worker *w = &pool->workers[i];
    *w = (worker){.pool = pool, .index = (int)i + 1};
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc)
      fprintf(stderr, "game_host: cannot start worker-%d: %s\n", w->index, strerror(rc));
    else
      pool->n++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc ? -1 : 0;
}

/* Tells the workers the loop is over and joins them, without the GIL (they
 * need it to finish their job). GIL held. Returns how many failed. */
static int stop_workers(worker_pool *pool) {
  atomic_store(&pool->stop, 1);
  int failed = 0;
  Py_BEGIN_ALLOW_THREADS
  for (int i = 0; i < pool->n; i++) pthread_join(pool->workers[i].thread, NULL);
  Py_END_ALLOW_THREADS
  for (int i = 0; i < pool->n; i++) failed += pool->workers[i].failed;
  return failed;
}

static void print_workers(const worker_pool *pool) {
  long total = 0;
  for (int i = 0; i < pool->n; i++) {
    printf("game_host: worker-%d ran %ld jobs\n", pool->workers[i].index, pool->workers[i].jobs);
    total += pool->workers[i].jobs;
  }
  if (pool->n) printf("game_host: %d workers ran %ld jobs\n", pool->n, total);
}

/* ---- the report ------------------------------------------------------- */

static int by_cumtime_desc(const void *a, const void *b) {
  const statsprof_function_profile *fa = *(const statsprof_function_profile *const *)a;
  const statsprof_function_profile *fb = *(const statsprof_function_profile *const *)b;
  return (fa->cumtime < fb->cumtime) - (fa->cumtime > fb->cumtime);
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* pstats' "12/3" when recursion made total and primitive calls differ. */
static void ncalls_text(char *buf, size_t n, const statsprof_function_profile *f) {
  if (f->ncalls == f->primitive_calls)
    snprintf(buf, n, "%llu", (unsigned long long)f->ncalls);
  else
    snprintf(buf, n, "%llu/%llu", (unsigned long long)f->ncalls, (unsigned long long)f->primitive_calls);
}

static void print_top(const statsprof_stats_profile *s, size_t top) {
  size_t n = s->nfunc_profiles;
  const statsprof_function_profile **order = malloc((n ? n : 1) * sizeof *order);
  if (!order) {
    fputs("game_host: out of memory for the profile table\n", stderr);
    return;
  }
  for (size_t i = 0; i < n; i++) order[i] = &s->func_profiles[i];
  qsort(order, n, sizeof *order, by_cumtime_desc);
  printf("\nstatsprof: %zu functions, %.3f s in Python (total_tt); top %zu by cumtime\n", n,
         s->total_tt, n < top ? n : top);
  printf("%12s %10s %10s  %s\n", "ncalls", "tottime", "cumtime", "filename:lineno(function)");
  for (size_t i = 0; i < n && i < top; i++) {
    char nc[48];
    ncalls_text(nc, sizeof nc, order[i]);
    printf("%12s %10.6f %10.6f  %s:%d(%s)\n", nc, order[i]->tottime, order[i]->cumtime,
           base_name(order[i]->file_name), order[i]->line_number, order[i]->function_name);
  }
  free(order);
}

/* Stops the profiler (its last record goes to the sinks), prints the whole
 * run's top functions and destroys it. Returns 0 or -1. */
static int finish_profile(statsprof *p) {
  int rc = statsprof_stop(p);
  if (rc) fprintf(stderr, "game_host: statsprof_stop: %s\n", statsprof_errmsg(p));
  statsprof_stats_profile *s = NULL;
  if (statsprof_snapshot(p, STATSPROF_CUMULATIVE, &s) == 0) {
    print_top(s, TOP_ROWS);
    statsprof_stats_profile_free(s);
  } else {
    fprintf(stderr, "game_host: statsprof_snapshot: %s\n", statsprof_errmsg(p));
    rc = -1;
  }
  statsprof_destroy(p);
  return rc ? -1 : 0;
}

static void print_frames(const loop_stats *st) {
  double mean_ms = st->frames ? (double)st->work_ns / (double)st->frames / 1e6 : 0.0;
  printf("game_host: %ld frames in %.2f s, mean frame time %.3f ms (max %.3f ms)\n", st->frames,
         (double)st->wall_ns / 1e9, mean_ms, (double)st->max_work_ns / 1e6);
}

/* ---- main -------------------------------------------------------------- */

/* The game's whole life inside a running interpreter. Returns an exit code. */
static int run_game(const host_options *o, const char *dir, statsprof *p) {
  game g;
  PyObject *job = NULL; /* jobs.worker_job, with --workers */
  if (load_game(dir, &g) || (o->workers && !(job = load_job()))) {
    PyErr_Print();
    fprintf(stderr, "game_host: cannot load the game from %s\n", dir);
    Py_XDECREF(job);
    free_game(&g);
    statsprof_destroy(p);
    return EXIT_RUNTIME;
  }
  if (p && statsprof_start(p)) {
    fprintf(stderr, "game_host: statsprof_start: %s\n", statsprof_errmsg(p));
    Py_XDECREF(job);
    free_game(&g);
    statsprof_destroy(p);
    return EXIT_USAGE;
  }
  if (!p) p = statsprof_from_env(NULL); /* NULL when STATSPROF is unset: no hook at all */

  int status = EXIT_OK;
  loop_stats st = {0};
  worker_pool pool = {0};
  if (init_game(o, &g))
    status = embed_python_failure("game_host");
  else if (start_workers(o, p, job, &pool))
    status = EXIT_RUNTIME;
  else if (run_loop(o, &g, p, &st))
    status = embed_python_failure("game_host");
  /* Joined before statsprof_stop: every job they ran is in the profile. */
  if (stop_workers(&pool) && status == EXIT_OK) status = EXIT_RUNTIME;
  print_frames(&st);
  print_workers(&pool);
  if (p && finish_profile(p) && status == EXIT_OK) status = EXIT_RUNTIME;
  free(pool.workers);
  Py_XDECREF(job);
  free_game(&g);
  return status;
}

int main(int argc, char **argv) {
  host_options o;
  int rc = parse_args(argc, argv, &o);
  if (rc) {
    free(o.hitch);
    return rc > 0 ? EXIT_OK : EXIT_USAGE;
  }
  /* Relative paths on the command line (a jsonl sink's file) mean the
   * directory `bazel run` ran from. */
  embed_enter_working_dir("game_host");

  char *dir = embed_find_dir(argv[0], o.game_dir, GAME_SUBDIR, "game.py");
  if (!dir) {
    fprintf(stderr, "game_host: no game.py in %s; use --game-dir DIR\n",
            o.game_dir ? o.game_dir : "the runfiles, $BUILD_WORKSPACE_DIRECTORY or ./" GAME_SUBDIR);
    free(o.hitch);
    return EXIT_USAGE;
  }
  /* Made before Python starts: a bad config fails fast and starts nothing. */
  statsprof *p = NULL;
  if (o.profile && statsprof_create(o.profile, &p)) {
    fprintf(stderr, "game_host: bad --profile: %s\n", statsprof_errmsg(NULL));
    free(dir);
    free(o.hitch);
    return EXIT_USAGE;
  }
  /* Ctrl-C ends the loop; the profile is still printed. */
  if (embed_start_python("game_host", argv[0], 1)) {
    statsprof_destroy(p);
    free(dir);
    free(o.hitch);
    return EXIT_RUNTIME;
  }
  int status = run_game(&o, dir, p);
  if (Py_FinalizeEx() < 0 && status == EXIT_OK) status = EXIT_RUNTIME;
  free(dir);
  free(o.hitch);
  return status;
}
