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

/* statsprof__error_here's message, and the profiler it is about: its
 * address and its generation, as a later profiler may get the address. */
static _Thread_local char here_errmsg[STATSPROF__ERRLEN];
static _Thread_local const statsprof *here_p;
static _Thread_local uint32_t here_gen;

static int is_here(const statsprof *p) { return p && p == here_p && p->gen == here_gen; }

const char *statsprof_errmsg(const statsprof *p) {
  if (!p) return create_errmsg;
  return is_here(p) ? here_errmsg : p->errmsg;
}

void statsprof__error_clear(statsprof *p) { (p ? p->errmsg : create_errmsg)[0] = 0; }

unsigned statsprof_version(void) { return STATSPROF_VERSION_HEX; }

int statsprof__error(statsprof *p, int code, const char *fmt, ...) {
  char *dst = p ? p->errmsg : create_errmsg;
  if (is_here(p)) here_p = NULL; /* this message is the last one now */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, STATSPROF__ERRLEN, fmt, ap);
  va_end(ap);
  return code;
}

int statsprof__error_here(const statsprof *p, int code, const char *fmt, ...) {
  here_p = p;
  here_gen = p->gen;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(here_errmsg, STATSPROF__ERRLEN, fmt, ap);
  va_end(ap);
  return code;
}
