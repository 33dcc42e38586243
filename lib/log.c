/* log.c — the one way the library reports what happens off the caller's
 * thread or after the call returned: the host's log function
 * (statsprof_set_log), else a line on fd 2. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The last default line gave up on a stderr nobody reads: the next ones
 * write only what fits now until one gets through, so a shutdown that logs
 * a line per stuck sink waits for one stall, not one per line. An atomic:
 * nothing a fork could leave locked. */
static atomic_int g_stalled;

void statsprof__logf(const statsprof__log_target *log, const char *fmt, ...) {
  char msg[STATSPROF__ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log && log->fn) {
    log->fn(log->ud, msg);
    return;
  }
  int err = errno;
  if (statsprof_log_stderr(msg, atomic_load(&g_stalled) ? 0 : STATSPROF__STALL_MS) == 0) atomic_store(&g_stalled, 0);
  else if (errno == ETIMEDOUT) atomic_store(&g_stalled, 1);
  errno = err;
}

/* The default goes to fd 2 as the stderr sink writes it: a stderr nobody
 * reads must not hold a sink's thread (or, through it, shutdown). */
int statsprof_log_stderr(const char *message, int stall_ms) {
  statsprof__stderr_out out = {.fd = -1};
  char line[STATSPROF__ERRLEN + 16];
  /* "statsprof: " and "\n" always fit: a longer message is cut, not the newline. */
  statsprof__msg(line, sizeof line, "statsprof: %.*s\n", (int)(sizeof line - 13), message ? message : "");
  size_t len = strlen(line);
  statsprof__stderr_refresh(&out);
  size_t done = statsprof__write_fd(out.fd, out.how, line, len, stall_ms > 0 ? stall_ms : 0);
  int err = errno;
  statsprof__stderr_close(&out);
  errno = err;
  return done == len ? 0 : -1;
}
