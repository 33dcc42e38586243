/*
 * embed.h — what the example hosts share: starting an embedded CPython,
 * finding their Python code wherever they are run from, and a few small
 * utilities. Each host's own logic stays in its own file.
 *
 * Every function that prints takes `host`, the program's name
 * ("game_host"), which starts each message it writes to stderr.
 */
#ifndef STATSPROF_HOST_EXAMPLES_EMBED_H
#define STATSPROF_HOST_EXAMPLES_EMBED_H

#include <getopt.h>
#include <stdint.h>

#define NS_PER_S INT64_C(1000000000)

/* The hosts' exit statuses (server_host never returns EXIT_INTERRUPTED). */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/*
 * getopt_long over the host's long options `opts` (and -h), with the hosts'
 * messages; each option needs a NULL `flag` and a nonzero `val`. Returns the
 * next option's `val` (optarg holds its value); 0 once every argument is read;
 * -1 after printing "HOST: unknown option or missing value in 'ARG'" or,
 * as the hosts take no operands, "HOST: unexpected argument 'ARG'".
 */
int embed_getopt(const char *host, int argc, char **argv, const struct option *opts);

/*
 * Under `bazel run` the host starts in its runfiles tree; this changes to
 * $BUILD_WORKING_DIRECTORY, the directory bazel was run from, so that
 * relative paths on the command line mean what the user meant. A failure
 * is printed and otherwise ignored. Call before anything opens a file.
 */
void embed_enter_working_dir(const char *host);

/*
 * The real directory (symlinks resolved) that holds `file`, e.g. "game.py",
 * of the host's Python code, which lives at `subdir` ("host_examples/game")
 * in the workspace. Looks in `flag_dir` only when it is not NULL (the
 * host's --*-dir option); otherwise in the binary's runfiles (found from
 * $RUNFILES_DIR, $TEST_SRCDIR, argv0 or /proc/self/exe: bazel run, bazel
 * test, or bazel-bin/... run directly), then in $BUILD_WORKSPACE_DIRECTORY
 * (`bazel run`), then in ./subdir. Returns a malloc'd string the caller
 * frees, or NULL when there is no such file. Prints nothing.
 */
char *embed_find_dir(const char *argv0, const char *flag_dir, const char *subdir, const char *file);

/*
 * Starts an isolated CPython (PYTHONPATH, PYTHONHOME and user site-packages
 * are ignored; no bytecode is written) whose program name is argv0.
 * `signal_handlers` is PyConfig.install_signal_handlers: 1 lets Ctrl-C raise
 * KeyboardInterrupt, 0 leaves the signals to the host. Returns 0 with the
 * GIL held, or -1 after printing why Python did not start.
 */
int embed_start_python(const char *host, const char *argv0, int signal_handlers);

/* Names the calling C thread "worker-N" in threading, so profile records
 * of kind "thread" carry the name. Call before the profiler attaches: this
 * is the host's plumbing, not the app's work. GIL held; errors ignored. */
void embed_name_thread(int index);

/* Puts `dir` first on sys.path. GIL held. Returns 0, or -1 with a Python
 * exception set (or none when sys.path is missing or not a list). */
int embed_add_sys_path(const char *dir);

/*
 * Ends the Python failure that left an exception set, and returns the exit
 * status for it: EXIT_INTERRUPTED for KeyboardInterrupt (Ctrl-C), which is
 * cleared and reported as "HOST: interrupted"; EXIT_RUNTIME for anything
 * else, which PyErr_Print prints with its traceback. GIL held.
 */
int embed_python_failure(const char *host);

/* CLOCK_MONOTONIC in nanoseconds. Any thread; no GIL needed. */
int64_t embed_mono_ns(void);

/*
 * Sleeps until the absolute CLOCK_MONOTONIC time `deadline_ns`, with the GIL
 * released meanwhile (held on entry and on return). Returns 0, or -1 when a
 * Python signal handler raised (Ctrl-C: KeyboardInterrupt is set).
 */
int embed_sleep_until(int64_t deadline_ns);

/* The decimal integer `s`, all of it, when it is within [lo, hi]: stores it
 * in *out and returns 0. Returns -1 for anything else. */
int embed_parse_long(const char *s, long lo, long hi, long *out);

#endif
