/* sinks/registry.c — sinks found by name: the built-in ones and the host's,
 * through the same table, so a config string names either the same way. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

int statsprof__jsonl_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                          size_t errlen);
int statsprof__stderr_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                           size_t errlen);
int statsprof__pstats_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen);
int statsprof__callgrind_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen);

#define MAX_REGISTERED 32

static struct {
  char name[32];
  statsprof_sink_open_fn open;
} registry[MAX_REGISTERED] = {
    {"jsonl", statsprof__jsonl_open},
    {"stderr", statsprof__stderr_open},
    {"pstats", statsprof__pstats_open},
    {"callgrind", statsprof__callgrind_open},
};
static size_t nregistry; /* counted at first use: built-ins come first */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Lock held. */
static void count_builtins(void) {
  if (nregistry) return;
  while (nregistry < MAX_REGISTERED && registry[nregistry].open) nregistry++;
}

int statsprof_register_sink(const char *name, statsprof_sink_open_fn open) {
  if (!name || !open || !*name || strlen(name) >= sizeof registry[0].name)
    return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_register_sink: bad name or NULL open");
  for (const char *c = name; *c; c++)
    if (!(*c == '_' || *c == '-' || (*c >= '0' && *c <= '9') || ((*c | 32) >= 'a' && (*c | 32) <= 'z')))
      return statsprof__error(NULL, STATSPROF_EINVAL, "statsprof_register_sink: bad name '%s'", name);
  int rc = 0;
  pthread_mutex_lock(&lock);
  count_builtins();
  size_t i = 0;
  while (i < nregistry && strcmp(registry[i].name, name)) i++;
  if (i == MAX_REGISTERED) {
    rc = statsprof__error(NULL, STATSPROF_ENOMEM, "statsprof_register_sink: registry full");
  } else {
    snprintf(registry[i].name, sizeof registry[i].name, "%s", name);
    registry[i].open = open;
    if (i == nregistry) nregistry++;
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

int statsprof__sink_open(const statsprof__sink_spec *spec, const statsprof_sink_ops **ops,
                         void **ctx, char *err, size_t errlen) {
  statsprof_sink_open_fn open = NULL;
  char known[512] = "";
  pthread_mutex_lock(&lock);
  count_builtins();
  for (size_t i = 0; i < nregistry; i++) {
    if (!strcmp(registry[i].name, spec->name)) open = registry[i].open;
    size_t n = strlen(known);
    snprintf(known + n, sizeof known - n, "%s%s", n ? ", " : "", registry[i].name);
  }
  pthread_mutex_unlock(&lock);
  if (!open) {
    snprintf(err, errlen, "config: unknown sink '%s' (known: none, %s)", spec->name, known);
    return STATSPROF_ECONFIG;
  }
  char detail[STATSPROF__ERRLEN] = "";
  *ops = NULL;
  *ctx = NULL;
  int rc = open(spec->arg, ops, ctx, detail, sizeof detail);
  if (rc == 0 && (!*ops || !(*ops)->emit)) {
    if (*ops && (*ops)->close) (*ops)->close(*ctx);
    rc = STATSPROF_ESINK;
  }
  if (rc != 0) {
    snprintf(err, errlen, "sink %s%s%s: %s", spec->name, spec->arg ? ":" : "", spec->arg ? spec->arg : "",
             *detail ? detail : "failed to open");
    /* One code for "this sink cannot open"; the message says why. */
    return STATSPROF_ESINK;
  }
  return 0;
}
