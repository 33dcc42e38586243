/*
 * ini_host.c — a host that keeps its settings in its own INI file and turns
 * statsprof on from it, the way an application with a config file of its
 * own would rather than through an environment variable:
 *
 *   [profiler]
 *   enabled = true
 *   profiler = interval=2s;sink=jsonl:out/ini.jsonl
 *
 * The profiler value is handed to statsprof_create unchanged; an error in it
 * is reported at its place in the INI file (FILE:LINE) with statsprof's
 * message, before Python starts. Then the host runs the Python workload in
 * host_examples/ini/work.py step by step, calling statsprof_tick after each.
 * The INI parser below is small and self-contained: sections, key = value,
 * comment lines starting with ';' or '#', white space ignored.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: it sets the feature macros for the C library */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "embed.h"
#include "statsprof.h"

#define WORK_SUBDIR "host_examples/ini"

/* ---- a small INI parser ------------------------------------------------ */

/*
 * Called once per section header (key and value NULL) and once per
 * `key = value` line, with names and value trimmed of white space. Returns
 * 0, or nonzero after writing what was wrong into err[errlen] (without the
 * file and line: the parser adds them).
 */
typedef int (*ini_fn)(void *ud, const char *section, const char *key, const char *value, int line,
                      char *err, size_t errlen);

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) e--;
  *e = 0;
  return s;
}

static int is_name(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') return 0;
  return 1;
}

/* Checks one line (no newline) and hands it to fn. `section` holds the
 * current section's name and is updated by a header. Returns 0, or nonzero
 * with err[errlen] filled. */
static int ini_line(char *text, char *section, size_t seclen, int line, ini_fn fn, void *ud, char *err,
                    size_t errlen) {
  char *s = trim(text);
  if (!*s || *s == ';' || *s == '#') return 0;
  if (*s == '[') {
    char *close = strchr(s, ']');
    if (!close) return snprintf(err, errlen, "section header '%s' has no closing ']'", s), -1;
    if (*trim(close + 1)) return snprintf(err, errlen, "text after the section header: '%s'", close + 1), -1;
    *close = 0;
    char *name = trim(s + 1);
    if (!is_name(name))
      return snprintf(err, errlen, "bad section name '[%s]' (letters, digits, '_', '-', '.')", name), -1;
    if (strlen(name) >= seclen) return snprintf(err, errlen, "section name '%s' is too long", name), -1;
    strcpy(section, name);
    return fn(ud, section, NULL, NULL, line, err, errlen);
  }
  char *eq = strchr(s, '=');
  if (!eq) return snprintf(err, errlen, "expected '[section]' or 'key = value', got '%s'", s), -1;
  *eq = 0;
  char *key = trim(s), *value = trim(eq + 1);
  if (!is_name(key)) return snprintf(err, errlen, "bad key name '%s' (letters, digits, '_', '-', '.')", key), -1;
  if (!*section) return snprintf(err, errlen, "key '%s' is outside any [section]", key), -1;
  return fn(ud, section, key, value, line, err, errlen);
}

/*
 * Reads the INI file at `path` and calls fn for what it holds, in order.
 * Returns 0; -1 when the file cannot be read (err: the path and the OS
 * error); -2 for a malformed line or when fn refused one (err:
 * "PATH:LINE: what was wrong"). A UTF-8 byte order mark and CRLF line ends
 * are accepted.
 */
static int ini_parse(const char *path, ini_fn fn, void *ud, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return -1;
  }
  char section[128] = "", what[512];
  char *buf = NULL;
  size_t cap = 0;
  ssize_t n;
  int line = 0, rc = 0;
  while (!rc && (n = getline(&buf, &cap, f)) >= 0) {
    line++;
    if ((size_t)n != strlen(buf)) {
      snprintf(err, errlen, "%s:%d: the line holds a NUL byte", path, line);
      rc = -2;
      break;
    }
    char *text = buf;
    if (line == 1 && !strncmp(text, "\xef\xbb\xbf", 3)) text += 3;
    if (ini_line(text, section, sizeof section, line, fn, ud, what, sizeof what)) {
      snprintf(err, errlen, "%s:%d: %s", path, line, what);
      rc = -2;
    }
  }
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    rc = -1;
  }
  free(buf);
  fclose(f);
  return rc;
}

/* ---- this host's settings ---------------------------------------------- */

typedef struct settings {
  int enabled;          /* [profiler] enabled; default false */
  char *profiler;       /* [profiler] profiler, or NULL: statsprof's defaults */
  int enabled_line, profiler_line;
  long steps;           /* [workload] steps */
  long pause_ms;        /* [workload] pause_ms: sleep after each step */
  long seed;            /* [workload] seed */
  int lines[8];         /* where each key was set, for duplicates; 0: not yet */
} settings;

/* Every key this host knows, by section. */
static const struct known_key {
  const char *section, *key;
} known_keys[] = {
    {"profiler", "enabled"}, {"profiler", "profiler"}, {"workload", "steps"},
    {"workload", "pause_ms"}, {"workload", "seed"},
};
#define NKNOWN (sizeof known_keys / sizeof *known_keys)

static int parse_bool(const char *v) {
  static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
  for (int i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i])) return 1;
    if (!strcasecmp(v, no[i])) return 0;
  }
  return -1;
}

static int on_ini_entry(void *ud, const char *section, const char *key, const char *value, int line,
                        char *err, size_t errlen) {
  settings *st = ud;
  if (strcasecmp(section, "profiler") && strcasecmp(section, "workload"))
    return snprintf(err, errlen, "unknown section [%s] (known: [profiler], [workload])", section), -1;
  if (!key) return 0;
  int k = -1;
  for (size_t i = 0; i < NKNOWN; i++)
    if (!strcasecmp(section, known_keys[i].section) && !strcasecmp(key, known_keys[i].key)) k = (int)i;
  if (k < 0)
    return snprintf(err, errlen, "unknown key '%s' in [%s] (known: %s)", key, section,
                    strcasecmp(section, "profiler") ? "steps, pause_ms, seed" : "enabled, profiler"),
           -1;
  if (st->lines[k])
    return snprintf(err, errlen, "duplicate key '%s' in [%s] (first set on line %d)", key, section, st->lines[k]),
           -1;
  st->lines[k] = line;
  switch (k) {
    case 0:
      if ((st->enabled = parse_bool(value)) < 0)
        return snprintf(err, errlen, "bad value '%s' for enabled (use true or false)", value), -1;
      st->enabled_line = line;
      return 0;
    case 1:
      if (!(st->profiler = strdup(value))) return snprintf(err, errlen, "out of memory"), -1;
      st->profiler_line = line;
      return 0;
    case 2:
      if (embed_parse_long(value, 1, 1000000000, &st->steps))
        return snprintf(err, errlen, "bad value '%s' for steps (a whole number >= 1)", value), -1;
      return 0;
    case 3:
      if (embed_parse_long(value, 0, 60000, &st->pause_ms))
        return snprintf(err, errlen, "bad value '%s' for pause_ms (0 to 60000)", value), -1;
      return 0;
    default:
      if (embed_parse_long(value, LONG_MIN, LONG_MAX, &st->seed))
        return snprintf(err, errlen, "bad value '%s' for seed (an integer)", value), -1;
      return 0;
  }
}

/*
 * The profiler the settings ask for: NULL when not enabled. A config
 * statsprof refuses is reported at its line in the INI file; returns -1.
 */
static int make_profiler(const char *ini_path, const settings *st, statsprof **out) {
  *out = NULL;
  if (!st->enabled) return 0; /* off: no profiler, no hook, no cost */
  /* "" and an absent value both mean statsprof's defaults. */
  if (statsprof_create(st->profiler, out)) {
    fprintf(stderr, "ini_host: %s:%d: bad [profiler] %s: %s\n", ini_path,
            st->profiler ? st->profiler_line : st->enabled_line, st->profiler ? "profiler" : "enabled",
            statsprof_errmsg(NULL));
    return -1;
  }
  printf("ini_host: profiling with \"%s\" (%s:%d)\n", st->profiler ? st->profiler : "",
         ini_path, st->profiler ? st->profiler_line : st->enabled_line);
  fflush(stdout);
  return 0;
}

/* ---- command line --------------------------------------------------- */

typedef struct host_options {
  const char *config;   /* the INI file, or NULL: WORK_SUBDIR/app.ini */
  const char *work_dir; /* NULL: search (see embed_find_dir) */
} host_options;

static void usage(FILE *out) {
  fputs(
      "usage: ini_host [options]\n"
      "\n"
      "Reads its settings from an INI file and runs the Python workload in\n"
      WORK_SUBDIR "/work.py, profiled by statsprof when the file's [profiler]\n"
      "section says so:\n"
      "\n"
      "  [profiler]\n"
      "  enabled = true\n"
      "  profiler = interval=2s;sink=jsonl:out/ini.jsonl\n"
      "  [workload]\n"
      "  steps = 200\n"
      "  pause_ms = 10\n"
      "  seed = 1\n"
      "\n"
      "enabled is false unless set; profiler is a statsprof config (README.md),\n"
      "statsprof's defaults when absent. steps counts work.step() calls, with\n"
      "pause_ms of sleep after each. Comments are whole lines starting with ';'\n"
      "or '#' (not after a value: ';' separates a statsprof config's keys).\n"
      "\n"
      "  --config FILE     the INI file (default: " WORK_SUBDIR "/app.ini, found\n"
      "                    like --work-dir)\n"
      "  --work-dir DIR    directory holding work.py (default: found in the\n"
      "                    runfiles, $BUILD_WORKSPACE_DIRECTORY or ./" WORK_SUBDIR ")\n"
      "  -h, --help        show this help\n"
      "\n"
      "Exit status: 0 ok, 1 the workload or Python failed, 2 bad arguments or a\n"
      "bad INI file (reported as FILE:LINE), 130 interrupted (Ctrl-C).\n",
      out);
}

/* Fills *o from argv. Returns 0, 1 for --help, or -1 after printing why. */
static int parse_args(int argc, char **argv, host_options *o) {
  enum { O_CONFIG = 256, O_WORK_DIR };
  static const struct option opts[] = {{"config", required_argument, NULL, O_CONFIG},
                                       {"work-dir", required_argument, NULL, O_WORK_DIR},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  *o = (host_options){0};
  int c;
  while ((c = embed_getopt("ini_host", argc, argv, opts)) > 0) {
    switch (c) {
      case O_CONFIG: o->config = optarg; break;
      case O_WORK_DIR: o->work_dir = optarg; break;
      case 'h': usage(stdout); return 1;
    }
  }
  if (c < 0) return -1;
  return 0;
}

/* ---- Python ----------------------------------------------------------- */

/* Imports work.py from dir and runs its setup(seed). Returns the module, or
 * NULL with a Python exception set. */
static PyObject *load_work(const char *dir, long seed) {
  PyObject *work = embed_add_sys_path(dir) == 0 ? PyImport_ImportModule("work") : NULL;
  PyObject *r = work ? PyObject_CallMethod(work, "setup", "l", seed) : NULL;
  if (!r) Py_CLEAR(work);
  Py_XDECREF(r);
  return work;
}

/* The workload: step(0) ... step(steps - 1), a profiler tick after each.
 * Returns 0, or -1 with a Python exception set. */
static int run_steps(PyObject *work, const settings *st, statsprof *p, uint64_t *checksum, long *done) {
  PyObject *step = PyObject_GetAttrString(work, "step");
  if (!step) return -1;
  int rc = 0, reported = 0;
  for (long i = 0; i < st->steps && !rc; i++) {
    PyObject *r = PyObject_CallFunction(step, "l", i);
    unsigned long long v = r ? PyLong_AsUnsignedLongLongMask(r) : 0;
    Py_XDECREF(r);
    if (!r || PyErr_Occurred()) {
      rc = -1;
      break;
    }
    *checksum += v;
    ++*done;
    if (p && statsprof_tick(p) < 0 && !reported) {
      fprintf(stderr, "ini_host: statsprof_tick: %s\n", statsprof_errmsg(p));
      reported = 1;
    }
    if (st->pause_ms && embed_sleep_until(embed_mono_ns() + (int64_t)st->pause_ms * 1000000)) rc = -1;
  }
  Py_DECREF(step);
  return rc;
}

/* The run inside a running interpreter. Returns an exit code. */
static int run(const settings *st, const char *dir, statsprof *p) {
  PyObject *work = load_work(dir, st->seed);
  if (!work) {
    PyErr_Print();
    fprintf(stderr, "ini_host: cannot load the workload from %s\n", dir);
    return EXIT_RUNTIME;
  }
  if (p && statsprof_start(p)) {
    fprintf(stderr, "ini_host: statsprof_start: %s\n", statsprof_errmsg(p));
    Py_DECREF(work);
    return EXIT_RUNTIME;
  }
  int status = EXIT_OK;
  uint64_t checksum = 0;
  long done = 0;
  int64_t t0 = embed_mono_ns();
  if (run_steps(work, st, p, &checksum, &done)) status = embed_python_failure("ini_host");
  double wall_s = (double)(embed_mono_ns() - t0) / 1e9;
  /* The last record goes out here, also after Ctrl-C. */
  if (p && statsprof_stop(p)) {
    fprintf(stderr, "ini_host: statsprof_stop: %s\n", statsprof_errmsg(p));
    if (status == EXIT_OK) status = EXIT_RUNTIME;
  }
  printf("ini_host: %ld steps in %.2f s, checksum %llu\n", done, wall_s, (unsigned long long)checksum);
  Py_DECREF(work);
  return status;
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv) {
  host_options o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc > 0 ? EXIT_OK : EXIT_USAGE;
  /* Relative paths (--config, a jsonl sink's file) mean the directory
   * `bazel run` ran from. */
  embed_enter_working_dir("ini_host");

  char *dir = embed_find_dir(argv[0], o.work_dir, WORK_SUBDIR, "work.py");
  if (!dir) {
    fprintf(stderr, "ini_host: no work.py in %s; use --work-dir DIR\n",
            o.work_dir ? o.work_dir : "the runfiles, $BUILD_WORKSPACE_DIRECTORY or ./" WORK_SUBDIR);
    return EXIT_USAGE;
  }
  char default_ini[PATH_MAX + 16];
  snprintf(default_ini, sizeof default_ini, "%s/app.ini", dir);
  const char *ini = o.config ? o.config : default_ini;

  settings st = {.steps = 200, .pause_ms = 10, .seed = 1};
  char err[1024];
  if (ini_parse(ini, on_ini_entry, &st, err, sizeof err)) {
    fprintf(stderr, "ini_host: %s\n", err);
    free(st.profiler);
    free(dir);
    return EXIT_USAGE;
  }
  /* Made before Python starts: a bad config fails fast and starts nothing. */
  statsprof *p = NULL;
  if (make_profiler(ini, &st, &p)) {
    free(st.profiler);
    free(dir);
    return EXIT_USAGE;
  }
  int status = EXIT_RUNTIME;
  /* Ctrl-C ends the run; the profile is still written. */
  if (embed_start_python("ini_host", argv[0], 1) == 0) {
    status = run(&st, dir, p);
    statsprof_destroy(p); /* before Py_FinalizeEx */
    if (Py_FinalizeEx() < 0 && status == EXIT_OK) status = EXIT_RUNTIME;
  } else {
    statsprof_destroy(p);
  }
  free(st.profiler);
  free(dir);
  return status;
}
