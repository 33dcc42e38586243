/* error.c — error codes and their messages: the static text, the name,
 * and the per-handle (or per-thread, for create) detailed message. */
#include <stdio.h>

#include "internal.h"

/* statsprof_create has no handle to hold its message yet. */
static _Thread_local char create_errmsg[STATSPROF__ERRLEN];

const char *statsprof_strerror(int err) {
  switch (err) {
#define XX(name, code, text) \
  case code:                 \
    return text;
    STATSPROF_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *statsprof_err_name(int err) {
  switch (err) {
#define XX(name, code, text) \
  case code:                 \
    return "STATSPROF_" #name;
    STATSPROF_ERRNO_MAP(XX)
#undef XX
  }
  return "STATSPROF_UNKNOWN";
}

const char *statsprof_errmsg(const statsprof *p) { return p ? p->errmsg : create_errmsg; }

void statsprof__error_clear(statsprof *p) { (p ? p->errmsg : create_errmsg)[0] = 0; }

unsigned statsprof_version(void) { return STATSPROF_VERSION_HEX; }

int statsprof__error(statsprof *p, int code, const char *fmt, ...) {
  char *dst = p ? p->errmsg : create_errmsg;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, STATSPROF__ERRLEN, fmt, ap);
  va_end(ap);
  return code;
}
