/* log.c — the one way the library reports what happens off the caller's
 * thread or after the call returned: the host's log function
 * (statsprof_set_log), else a line on fd 2. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

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
  statsprof_log_stderr(msg, STATSPROF__STALL_MS);
}

/* The default goes to fd 2 as the stderr sink writes it: a stderr nobody
 * reads must not hold a sink's thread (or, through it, shutdown). No state
 * is shared between calls: nothing a fork could leave locked. */
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
