/*
 * embed.c — what the example hosts share; see embed.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: it sets the feature macros for the C library */

#include "embed.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKSPACE "statsprof" /* workspace(name=...) in WORKSPACE: the runfiles root */

int embed_getopt(const char *host, int argc, char **argv, const struct option *opts) {
  opterr = 0; /* our own messages, without argv[0]'s full path */
  int c = getopt_long(argc, argv, "h", opts, NULL);
  if (c == '?' || c == ':') {
    fprintf(stderr, "%s: unknown option or missing value in '%s'; see --help\n", host, argv[optind - 1]);
    return -1;
  }
  if (c != -1) return c;
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument '%s'; see --help\n", host, argv[optind]);
    return -1;
  }
  return 0;
}

void embed_enter_working_dir(const char *host) {
  const char *wd = getenv("BUILD_WORKING_DIRECTORY");
  if (wd && *wd && chdir(wd) != 0) fprintf(stderr, "%s: cannot cd to %s: %s\n", host, wd, strerror(errno));
}

/* ---- finding the host's Python code ------------------------------------ */

/* The real directory of BASE[/SUFFIX]/FILE, or NULL. Resolving symlinks
 * makes profiled file names point at the sources, not at a runfiles tree. */
static char *dir_at(const char *base, const char *suffix, const char *file) {
  if (!base || !*base) return NULL;
  char path[PATH_MAX], real[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s%s%s/%s", base, suffix ? "/" : "", suffix ? suffix : "", file);
  if (n < 0 || (size_t)n >= sizeof path || !realpath(path, real)) return NULL;
  *strrchr(real, '/') = 0;
  return strdup(real);
}

char *embed_find_dir(const char *argv0, const char *flag_dir, const char *subdir, const char *file) {
  if (flag_dir) return dir_at(flag_dir, NULL, file);
  char in_runfiles[PATH_MAX];
  if (snprintf(in_runfiles, sizeof in_runfiles, "%s/%s", WORKSPACE, subdir) >= (int)sizeof in_runfiles)
    return NULL;
  char *dir = dir_at(getenv("RUNFILES_DIR"), in_runfiles, file);
  if (!dir) dir = dir_at(getenv("TEST_SRCDIR"), in_runfiles, file);
  char exe[PATH_MAX] = "";
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  const char *bins[] = {argv0, exe};
  for (int i = 0; !dir && i < 2; i++) {
    char runfiles[PATH_MAX + 16];
    if (*bins[i] && snprintf(runfiles, sizeof runfiles, "%s.runfiles", bins[i]) < (int)sizeof runfiles)
      dir = dir_at(runfiles, in_runfiles, file);
  }
  if (!dir) dir = dir_at(getenv("BUILD_WORKSPACE_DIRECTORY"), subdir, file);
  if (!dir) dir = dir_at(".", subdir, file);
  return dir;
}

/* ---- Python ------------------------------------------------------------ */

int embed_start_python(const char *host, const char *argv0, int signal_handlers) {
  PyConfig config;
  /* Isolated: PYTHONPATH, PYTHONHOME and user site-packages of whoever runs
   * the host must not change which code the host runs. */
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = signal_handlers;
  config.write_bytecode = 0; /* leave no __pycache__ in the source tree */
  /* A path, not "python3": the stdlib is found from libpython's own prefix,
   * never from some other python3 on PATH. */
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, argv0);
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) {
    fprintf(stderr, "%s: cannot start Python: %s%s%s\n", host, st.func ? st.func : "", st.func ? ": " : "",
            st.err_msg ? st.err_msg : "unknown error");
    return -1;
  }
  return 0;
}

int embed_add_sys_path(const char *dir) {
  PyObject *path = PySys_GetObject("path"); /* borrowed */
  PyObject *d = PyUnicode_DecodeFSDefault(dir);
  int rc = path && d && PyList_Check(path) ? PyList_Insert(path, 0, d) : -1;
  Py_XDECREF(d);
  return rc;
}

int embed_python_failure(const char *host) {
  if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
    PyErr_Clear();
    fprintf(stderr, "%s: interrupted\n", host);
    return EXIT_INTERRUPTED;
  }
  PyErr_Print();
  return EXIT_RUNTIME;
}

/* ---- time and numbers -------------------------------------------------- */

int64_t embed_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int embed_sleep_until(int64_t deadline_ns) {
  struct timespec ts = {.tv_sec = deadline_ns / NS_PER_S, .tv_nsec = deadline_ns % NS_PER_S};
  for (;;) {
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    Py_END_ALLOW_THREADS
    if (rc != EINTR) return 0;
    if (PyErr_CheckSignals() < 0) return -1;
  }
}

int embed_parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

void embed_name_thread(int index) {
  PyObject *threading = PyImport_ImportModule("threading");
  PyObject *me = threading ? PyObject_CallMethod(threading, "current_thread", NULL) : NULL;
  PyObject *name = PyUnicode_FromFormat("worker-%d", index);
  if (!me || !name || PyObject_SetAttrString(me, "name", name) < 0) PyErr_Clear();
  Py_XDECREF(name);
  Py_XDECREF(me);
  Py_XDECREF(threading);
}
