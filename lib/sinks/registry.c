/* sinks/registry.c — sinks found by name: the built-in ones and the host's,
 * through the same table, so a config string names either the same way;
 * and the one parser of built-in sinks' arguments. */
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

/* Not inherited held by a child forked while another thread looks a sink
 * up or registers one: fork.c's handlers take it last (innermost). */
void statsprof__registry_atfork(int phase) {
  if (phase == 0) pthread_mutex_lock(&lock);
  else pthread_mutex_unlock(&lock);
}

static void lock_registry(void) {
  statsprof__fork_handlers();
  pthread_mutex_lock(&lock);
}

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
  lock_registry();
  count_builtins();
  size_t i = 0;
  while (i < nregistry && strcmp(registry[i].name, name)) i++;
  if (i == MAX_REGISTERED) { /* a fixed table's limit, not memory */
    rc = statsprof__error(NULL, STATSPROF_ESTATE,
                          "statsprof_register_sink: cannot add '%s': the registry is full (%d names, the built-in "
                          "ones included); a registered name can still be replaced",
                          name, MAX_REGISTERED);
  } else {
    memcpy(registry[i].name, name, strlen(name) + 1); /* length checked above */
    registry[i].open = open;
    if (i == nregistry) nregistry++;
  }
  pthread_mutex_unlock(&lock);
  if (!rc) statsprof__error_clear(NULL);
  return rc;
}

/* ---- arguments --------------------------------------------------------- */

/* Where the open running on this thread found its argument's problem. */
static _Thread_local size_t blame_at = SIZE_MAX;

void statsprof__sink_blame(const char *arg, const char *at) { blame_at = arg && at ? (size_t)(at - arg) : SIZE_MAX; }

int statsprof__sink_main_value(const char *arg, const char *what, const statsprof__value_spec *spec,
                               const char *main, size_t len, uint64_t *out, char *err, size_t errlen) {
  char why[160], q[160];
  if (statsprof__parse_value(spec, main, len, out, why, sizeof why) == 0) return 0;
  statsprof__quote(q, sizeof q, main, len, 120);
  statsprof__msg(err, errlen, "bad %s '%s': %s; expected %s", what, q, why, spec->help);
  statsprof__sink_blame(arg, main);
  return STATSPROF_ECONFIG;
}

int statsprof__sink_args(const char *arg, const statsprof__sink_option *opts, void *fields, const char **main,
                         size_t *mainlen, char *err, size_t errlen) {
  const char *t = arg ? arg : "";
  const char *o = strchr(t, ',');
  /* White space around the parts is ignored, as around config values. */
  const char *me = o ? o : t + strlen(t);
  statsprof__trim(&t, &me);
  *main = t;
  *mainlen = (size_t)(me - t);
  unsigned seen = 0;
  while (o++) {
    const char *next = strchr(o, ',');
    const char *oe = next ? next : o + strlen(o);
    statsprof__trim(&o, &oe);
    size_t olen = (size_t)(oe - o);
    const char *eq = memchr(o, '=', olen);
    const char *ne = eq ? eq : oe, *vb = eq ? eq + 1 : oe, *ve = oe;
    statsprof__trim(&o, &ne);
    statsprof__trim(&vb, &ve);
    size_t nlen = (size_t)(ne - o);
    unsigned k = 0;
    while (opts && opts[k].name && !(strlen(opts[k].name) == nlen && !memcmp(opts[k].name, o, nlen))) k++;
    char q[160], why[160];
    statsprof__quote(q, sizeof q, o, olen, 120);
    statsprof__sink_blame(arg, o);
    if (!eq || !opts || !opts[k].name) {
      char known[256] = "";
      for (unsigned i = 0; opts && opts[i].name; i++)
        statsprof__msg_add(known, sizeof known, "%s%s=%s", i ? ", " : "", opts[i].name, opts[i].metavar);
      statsprof__msg(err, errlen, "bad option '%s': %s (options: %s)", q,
                     !eq ? "not NAME=VALUE" : "unknown option", *known ? known : "none");
      return STATSPROF_ECONFIG;
    }
    if (seen & (1u << k)) {
      statsprof__msg(err, errlen, "option '%s' given twice", opts[k].name);
      return STATSPROF_ECONFIG;
    }
    seen |= 1u << k;
    uint64_t v;
    if (statsprof__parse_value(&opts[k].spec, vb, (size_t)(ve - vb), &v, why, sizeof why)) {
      statsprof__msg(err, errlen, "bad option '%s': %s; expected %s=%s", q, why, opts[k].name, opts[k].spec.help);
      return STATSPROF_ECONFIG;
    }
    memcpy((char *)fields + opts[k].field, &v, sizeof v);
    o = next;
  }
  statsprof__sink_blame(NULL, NULL);
  return 0;
}

/* ---- opening ----------------------------------------------------------- */

int statsprof__sink_open(const statsprof__sink_spec *spec, const statsprof_sink_ops **ops,
                         void **ctx, char *err, size_t errlen) {
  statsprof_sink_open_fn open = NULL;
  char known[512] = "none";
  lock_registry();
  count_builtins();
  for (size_t i = 0; i < nregistry; i++) {
    if (!strcmp(registry[i].name, spec->name)) open = registry[i].open;
    statsprof__msg_add(known, sizeof known, ", %s", registry[i].name);
  }
  pthread_mutex_unlock(&lock);
  if (!open) {
    statsprof__msg(err, errlen, "config: unknown sink '%s' (known: %s) (at offset %zu)", spec->name, known,
                   spec->offset);
    return STATSPROF_ECONFIG;
  }
  char detail[STATSPROF__ERRLEN] = "";
  *ops = NULL;
  *ctx = NULL;
  blame_at = SIZE_MAX;
  int rc = open(spec->arg, ops, ctx, detail, sizeof detail);
  size_t at = blame_at != SIZE_MAX && spec->arg ? spec->arg_offset + blame_at : spec->offset;
  blame_at = SIZE_MAX;
  if (rc == 0 && (!*ops || !(*ops)->emit)) {
    if (*ops && (*ops)->close) (*ops)->close(*ctx);
    rc = STATSPROF_ESINK;
  }
  if (rc == 0) return 0;
  /* A bad argument is a config error, as a bad value anywhere else; every
   * other failure is "this sink cannot open", and the message says why. */
  int code = rc == STATSPROF_ECONFIG || rc == STATSPROF_ENOMEM ? rc : STATSPROF_ESINK;
  /* The argument in short: the sink's own message names the path in full
   * (or as much as fits). */
  char q[64] = "";
  if (spec->arg) {
    q[0] = ':';
    statsprof__quote(q + 1, sizeof q - 1, spec->arg, strlen(spec->arg), sizeof q - 2);
  }
  statsprof__msg(err, errlen, "%ssink %s%s: %s (at offset %zu)", code == STATSPROF_ECONFIG ? "config: " : "",
                 spec->name, q, *detail ? detail : "failed to open", at);
  return code;
}
