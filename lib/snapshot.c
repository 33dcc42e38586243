/* snapshot.c — turns the table's counters into a pstats-shaped record.
 *
 * The only reader of the table from outside the hook. A delta subtracts the
 * counters saved at the previous delta and saves the current ones; labels are
 * not copied: the record shares the table's append-only string store. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Records are shared by the sinks' writer threads: refcounted. */
typedef struct snapshot_impl {
  statsprof_stats_profile pub;
  atomic_long refs;
  statsprof__strings *strings;
} snapshot_impl;

static int fit(statsprof__counters **arr, uint32_t *cap, uint32_t *n, uint32_t need) {
  if (need > *cap) {
    uint32_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    statsprof__counters *a = realloc(*arr, c * sizeof *a);
    if (!a) return -1;
    *arr = a;
    *cap = c;
  }
  /* Entries added since the last delta start from zero. */
  if (need > *n) memset(*arr + *n, 0, (need - *n) * sizeof **arr);
  *n = need;
  return 0;
}

static statsprof__counters diff(const statsprof__counters *cur, const statsprof__counters *prev) {
  statsprof__counters d = *cur;
  if (prev) {
    d.callcount -= prev->callcount;
    d.reccallcount -= prev->reccallcount;
    d.tt -= prev->tt;
    d.it -= prev->it;
  }
  return d;
}

static int nonzero(const statsprof__counters *c) { return c->callcount || c->tt || c->it; }

void statsprof__record_ref(statsprof_stats_profile *s) {
  atomic_fetch_add(&((snapshot_impl *)s)->refs, 1);
}

void statsprof__record_unref(statsprof_stats_profile *s) {
  snapshot_impl *impl = (snapshot_impl *)s;
  if (!s || atomic_fetch_sub(&impl->refs, 1) != 1) return;
  statsprof__strings_unref(impl->strings);
  free(impl);
}

void statsprof_stats_profile_free(statsprof_stats_profile *s) { statsprof__record_unref(s); }

statsprof_stats_profile *statsprof_stats_profile_ref(statsprof_stats_profile *s) {
  if (s) statsprof__record_ref(s);
  return s;
}

void statsprof__snapshot_state_free(statsprof__snapshot_state *s) {
  free(s->prev_entries);
  free(s->prev_edges);
  memset(s, 0, sizeof *s);
}

int statsprof__snapshot_take(statsprof *p, statsprof_snapshot_mode mode,
                             statsprof_stats_profile **out) {
  statsprof__table *t = &p->table;
  statsprof__snapshot_state *ss = &p->snap;
  int delta = mode == STATSPROF_DELTA;
  *out = NULL;
  if (delta && (fit(&ss->prev_entries, &ss->capprev_entries, &ss->nprev_entries, t->nentries) ||
                fit(&ss->prev_edges, &ss->capprev_edges, &ss->nprev_edges, t->nedges)))
    return statsprof__error(p, STATSPROF_ENOMEM, "out of memory taking a snapshot");
  const statsprof__counters *pe = delta ? ss->prev_entries : NULL;
  const statsprof__counters *pg = delta ? ss->prev_edges : NULL;

  /* Pass 1: which functions and edges, and where each function goes. */
  uint32_t *slot = malloc((t->nentries ? t->nentries : 1) * sizeof *slot);
  uint32_t *ncallers = calloc(t->nentries ? t->nentries : 1, sizeof *ncallers);
  if (!slot || !ncallers) {
    free(slot);
    free(ncallers);
    return statsprof__error(p, STATSPROF_ENOMEM, "out of memory taking a snapshot");
  }
  size_t nf = 0, ne = 0;
  for (uint32_t i = 0; i < t->nentries; i++) {
    statsprof__counters d = diff(&t->entries[i].c, pe ? &pe[i] : NULL);
    slot[i] = nonzero(&d) ? (uint32_t)nf++ : STATSPROF__NONE;
  }
  for (uint32_t i = 0; i < t->nedges; i++) {
    statsprof__counters d = diff(&t->edges[i].c, pg ? &pg[i] : NULL);
    if (nonzero(&d) && slot[t->edges[i].callee] != STATSPROF__NONE) {
      ncallers[t->edges[i].callee]++;
      ne++;
    }
  }

  size_t size = sizeof(snapshot_impl) + nf * sizeof(statsprof_function_profile) +
                ne * sizeof(statsprof_caller_profile);
  snapshot_impl *impl = calloc(1, size);
  if (!impl) {
    free(slot);
    free(ncallers);
    return statsprof__error(p, STATSPROF_ENOMEM, "out of memory taking a snapshot");
  }
  statsprof_stats_profile *s = &impl->pub;
  s->func_profiles = (statsprof_function_profile *)(impl + 1);
  s->nfunc_profiles = nf;
  statsprof_caller_profile *callers = (statsprof_caller_profile *)(s->func_profiles + nf);
  const double spt = p->config.clock == STATSPROF__CLOCK_CPU ? 1e-9 : statsprof__clock_sec_per_tick;

  /* Pass 2: functions, each with room for its callers. */
  size_t next_caller = 0;
  double total = 0;
  for (uint32_t i = 0; i < t->nentries; i++) {
    if (slot[i] == STATSPROF__NONE) continue;
    statsprof__counters d = diff(&t->entries[i].c, pe ? &pe[i] : NULL);
    statsprof_function_profile *f = &s->func_profiles[slot[i]];
    f->function_name = t->labels[i].name;
    f->file_name = t->labels[i].file;
    f->line_number = t->labels[i].line;
    f->ncalls = d.callcount;
    f->primitive_calls = d.callcount - d.reccallcount;
    f->tottime = (double)d.it * spt;
    f->cumtime = (double)d.tt * spt;
    f->percall_tottime = f->ncalls ? f->tottime / (double)f->ncalls : -1;
    f->percall_cumtime = f->primitive_calls ? f->cumtime / (double)f->primitive_calls : -1;
    f->callers = callers + next_caller;
    next_caller += ncallers[i];
    total += f->tottime;
  }
  /* Pass 3: the callers. */
  for (uint32_t i = 0; i < t->nedges; i++) {
    const statsprof__edge *e = &t->edges[i];
    statsprof__counters d = diff(&e->c, pg ? &pg[i] : NULL);
    if (!nonzero(&d) || slot[e->callee] == STATSPROF__NONE) continue;
    statsprof_function_profile *f = &s->func_profiles[slot[e->callee]];
    statsprof_caller_profile *c = &f->callers[f->ncallers++];
    c->function_name = t->labels[e->caller].name;
    c->file_name = t->labels[e->caller].file;
    c->line_number = t->labels[e->caller].line;
    c->ncalls = d.callcount;
    c->primitive_calls = d.callcount - d.reccallcount;
    c->tottime = (double)d.it * spt;
    c->cumtime = (double)d.tt * spt;
  }
  free(slot);
  free(ncallers);

  int64_t wall = statsprof__wall_ns();
  s->total_tt = total;
  s->mode = mode;
  s->start_ns = delta ? ss->last_wall_ns : ss->start_wall_ns;
  s->end_ns = wall;
  s->pid = (int64_t)getpid();
  s->overflow_functions = t->overflow_functions;
  atomic_init(&impl->refs, 1);
  impl->strings = t->strings;
  statsprof__strings_ref(t->strings);
  if (delta) {
    for (uint32_t i = 0; i < t->nentries; i++) ss->prev_entries[i] = t->entries[i].c;
    for (uint32_t i = 0; i < t->nedges; i++) ss->prev_edges[i] = t->edges[i].c;
    ss->last_wall_ns = wall;
    ss->seq++;
  }
  s->seq = ss->seq;
  *out = s;
  return 0;
}
