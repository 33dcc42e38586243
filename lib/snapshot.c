/* snapshot.c — turns the table's counters into a pstats-shaped record.
 *
 * The only reader of the table from outside the hook. A record covers a set
 * of entries (all, one thread's, or those a frame touched) measured against
 * a baseline (nothing, the previous delta, or the frame's start), merged by
 * label: the same function in several threads is one function profile.
 * Labels are not copied: the record shares the table's string store. */
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

void statsprof__record_ref(statsprof_stats_profile *s) {
  atomic_fetch_add(&((snapshot_impl *)s)->refs, 1);
}

void statsprof__record_unref(statsprof_stats_profile *s) {
  snapshot_impl *impl = (snapshot_impl *)s;
  if (!s || atomic_fetch_sub(&impl->refs, 1) != 1) return;
  statsprof__strings_unref(impl->strings);
  statsprof__free(impl);
}

const char *statsprof_record_kind_name(statsprof_record_kind kind) {
  switch (kind) {
#define STATSPROF__KIND_NAME(name, value, text) \
  case STATSPROF_RECORD_##name:                 \
    return text;
    STATSPROF_RECORD_KIND_MAP(STATSPROF__KIND_NAME)
#undef STATSPROF__KIND_NAME
  }
  return "unknown";
}

void statsprof_stats_profile_free(statsprof_stats_profile *s) { statsprof__record_unref(s); }

statsprof_stats_profile *statsprof_stats_profile_ref(statsprof_stats_profile *s) {
  if (s) statsprof__record_ref(s);
  return s;
}

void statsprof__snapshot_state_free(statsprof__snapshot_state *s) {
  statsprof__free(s->prev_entries);
  statsprof__free(s->prev_edges);
  statsprof__free(s->mark_entries);
  statsprof__free(s->mark_edges);
  statsprof__free(s->mark_wall_ns);
  memset(s, 0, sizeof *s);
}

/* Room for `need` counters, those from `from` on zeroed: entries added
 * since the last delta start from zero. */
static int grow(statsprof__counters **arr, uint32_t *cap, uint32_t from, uint32_t need) {
  if (STATSPROF__ARRAY_RESERVE(*arr, *cap, need, 256)) return -1;
  if (need > from) memset(*arr + from, 0, (need - from) * sizeof **arr);
  return 0;
}

static int fit(statsprof__counters **arr, uint32_t *cap, uint32_t *n, uint32_t need) {
  if (grow(arr, cap, *n, need)) return -1;
  if (need > *n) *n = need;
  return 0;
}

static statsprof__counters diff(const statsprof__counters *cur, const statsprof__counters *base) {
  statsprof__counters d = *cur;
  if (base) {
    d.callcount -= base->callcount;
    d.reccallcount -= base->reccallcount;
    d.tt -= base->tt;
    d.it -= base->it;
  }
  return d;
}

static int nonzero(const statsprof__counters *c) { return c->callcount || c->tt || c->it; }

static void add(statsprof__counters *a, const statsprof__counters *b) {
  a->callcount += b->callcount;
  a->reccallcount += b->reccallcount;
  a->tt += b->tt;
  a->it += b->it;
}

/* One caller edge found for the record, before merging. */
typedef struct pending_edge {
  uint32_t callee_pos, caller_label;
  statsprof__counters d;
} pending_edge;

static int by_callee_then_caller(const void *a, const void *b) {
  const pending_edge *x = a, *y = b;
  if (x->callee_pos != y->callee_pos) return x->callee_pos < y->callee_pos ? -1 : 1;
  return x->caller_label < y->caller_label ? -1 : x->caller_label > y->caller_label;
}

typedef struct build {
  statsprof *p;
  statsprof__selection sel;
  uint32_t *pos;        /* label -> function position, NONE if absent */
  statsprof__counters *sums; /* per position */
  uint32_t *labels;     /* position -> label */
  uint32_t nf;
  pending_edge *edges;
  size_t ne;
} build;

static const statsprof__counters *entry_base(const build *b, uint32_t i) {
  if (b->sel.base == STATSPROF__BASE_PREV) return &b->p->snap.prev_entries[i];
  if (b->sel.base == STATSPROF__BASE_MARK) return &b->p->snap.mark_entries[i];
  if (b->sel.base == STATSPROF__BASE_FRAME) return &b->sel.frame_entries[i].f0;
  return NULL;
}

static const statsprof__counters *edge_base(const build *b, uint32_t i) {
  if (b->sel.base == STATSPROF__BASE_PREV) return &b->p->snap.prev_edges[i];
  if (b->sel.base == STATSPROF__BASE_MARK) return &b->p->snap.mark_edges[i];
  if (b->sel.base == STATSPROF__BASE_FRAME) return &b->sel.frame_edges[i].f0;
  return NULL;
}

static int wanted_entry(const build *b, uint32_t i) {
  return b->sel.slot == STATSPROF__NONE || b->p->table.entries[i].slot == b->sel.slot;
}

static void take_entry(build *b, uint32_t i) {
  if (!wanted_entry(b, i)) return;
  const statsprof__entry *e = &b->p->table.entries[i];
  statsprof__counters d = diff(&e->c, entry_base(b, i));
  if (!nonzero(&d)) return;
  if (b->pos[e->label] == STATSPROF__NONE) {
    b->pos[e->label] = b->nf;
    b->labels[b->nf] = e->label;
    memset(&b->sums[b->nf], 0, sizeof *b->sums);
    b->nf++;
  }
  add(&b->sums[b->pos[e->label]], &d);
}

static void take_edge(build *b, uint32_t i) {
  const statsprof__edge *g = &b->p->table.edges[i];
  if (!wanted_entry(b, g->callee)) return;
  statsprof__counters d = diff(&g->c, edge_base(b, i));
  uint32_t pos = b->pos[b->p->table.entries[g->callee].label];
  if (!nonzero(&d) || pos == STATSPROF__NONE) return;
  b->edges[b->ne++] = (pending_edge){pos, b->p->table.entries[g->caller].label, d};
}

static void fill_function(statsprof_function_profile *f, const statsprof__label *l,
                          const statsprof__counters *d, double spt) {
  f->function_name = l->name;
  f->file_name = l->file;
  f->line_number = l->line;
  f->ncalls = d->callcount;
  f->primitive_calls = d->callcount - d->reccallcount;
  f->tottime = (double)d->it * spt;
  f->cumtime = (double)d->tt * spt;
  f->percall_tottime = f->ncalls ? f->tottime / (double)f->ncalls : -1;
  f->percall_cumtime = f->primitive_calls ? f->cumtime / (double)f->primitive_calls : -1;
}

/* Lays the gathered functions and (merged) edges out in one block. */
static snapshot_impl *assemble(build *b, double spt) {
  /* Edges of one callee from the same caller label (several threads) merge. */
  qsort(b->edges, b->ne, sizeof *b->edges, by_callee_then_caller);
  size_t ne = 0;
  for (size_t i = 0; i < b->ne; i++) {
    if (ne && b->edges[ne - 1].callee_pos == b->edges[i].callee_pos &&
        b->edges[ne - 1].caller_label == b->edges[i].caller_label)
      add(&b->edges[ne - 1].d, &b->edges[i].d);
    else
      b->edges[ne++] = b->edges[i];
  }
  size_t size = sizeof(snapshot_impl) + b->nf * sizeof(statsprof_function_profile) +
                ne * sizeof(statsprof_caller_profile);
  snapshot_impl *impl = statsprof__calloc(1, size);
  if (!impl) return NULL;
  statsprof_stats_profile *s = &impl->pub;
  s->func_profiles = (statsprof_function_profile *)(impl + 1);
  s->nfunc_profiles = b->nf;
  statsprof_caller_profile *callers = (statsprof_caller_profile *)(s->func_profiles + b->nf);
  const statsprof__label *labels = b->p->table.labels;
  double total = 0;
  for (uint32_t k = 0; k < b->nf; k++) {
    fill_function(&s->func_profiles[k], &labels[b->labels[k]], &b->sums[k], spt);
    total += s->func_profiles[k].tottime;
  }
  for (size_t i = 0; i < ne; i++) {
    statsprof_function_profile *f = &s->func_profiles[b->edges[i].callee_pos];
    if (!f->callers) f->callers = &callers[i]; /* sorted: a callee's edges are adjacent */
    const statsprof__label *l = &labels[b->edges[i].caller_label];
    const statsprof__counters *d = &b->edges[i].d;
    statsprof_caller_profile *c = &f->callers[f->ncallers++];
    c->function_name = l->name;
    c->file_name = l->file;
    c->line_number = l->line;
    c->ncalls = d->callcount;
    c->primitive_calls = d->callcount - d->reccallcount;
    c->tottime = (double)d->it * spt;
    c->cumtime = (double)d->tt * spt;
  }
  s->total_tt = total;
  atomic_init(&impl->refs, 1);
  impl->strings = b->p->table.strings;
  statsprof__strings_ref(impl->strings);
  return impl;
}

/* Moves the baseline (the merged one, or a thread's mark) of the selected
 * entries and edges to now. */
static void commit(statsprof *p, const statsprof__selection *sel) {
  statsprof__table *t = &p->table;
  int mark = sel->base == STATSPROF__BASE_MARK;
  statsprof__counters *entries = mark ? p->snap.mark_entries : p->snap.prev_entries;
  statsprof__counters *edges = mark ? p->snap.mark_edges : p->snap.prev_edges;
  for (uint32_t i = 0; i < t->nentries; i++)
    if (sel->slot == STATSPROF__NONE || t->entries[i].slot == sel->slot) entries[i] = t->entries[i].c;
  for (uint32_t i = 0; i < t->nedges; i++)
    if (sel->slot == STATSPROF__NONE || t->entries[t->edges[i].callee].slot == sel->slot) edges[i] = t->edges[i].c;
}

int statsprof__snapshot_fit(statsprof *p) {
  statsprof__snapshot_state *ss = &p->snap;
  /* The marks first: they zero what prev_* adds, from its old length. */
  if (ss->marks && (grow(&ss->mark_entries, &ss->capmark_entries, ss->nprev_entries, p->table.nentries) ||
                    grow(&ss->mark_edges, &ss->capmark_edges, ss->nprev_edges, p->table.nedges)))
    return -1;
  return fit(&ss->prev_entries, &ss->capprev_entries, &ss->nprev_entries, p->table.nentries) ||
                 fit(&ss->prev_edges, &ss->capprev_edges, &ss->nprev_edges, p->table.nedges)
             ? -1
             : 0;
}

/* The first thread delta: every thread's mark at zero (its counts since
 * start or reset), and the slot's time. */
static int marks_fit(statsprof *p, uint32_t slot) {
  statsprof__snapshot_state *ss = &p->snap;
  if (!ss->marks) {
    if (grow(&ss->mark_entries, &ss->capmark_entries, 0, ss->nprev_entries) ||
        grow(&ss->mark_edges, &ss->capmark_edges, 0, ss->nprev_edges))
      return -1;
    ss->marks = 1;
  }
  if (slot >= ss->nmark_slots) {
    uint32_t cap = ss->nmark_slots;
    if (STATSPROF__ARRAY_RESERVE(ss->mark_wall_ns, cap, slot + 1, 8)) return -1;
    memset(ss->mark_wall_ns + ss->nmark_slots, 0, (cap - ss->nmark_slots) * sizeof *ss->mark_wall_ns);
    ss->nmark_slots = cap;
  }
  return statsprof__snapshot_fit(p);
}

void statsprof__snapshot_marks_retire(statsprof *p) {
  statsprof__snapshot_state *ss = &p->snap;
  statsprof__table *t = &p->table;
  if (!ss->marks) return;
  for (uint32_t i = 0; i < t->nentries && i < ss->nprev_entries; i++)
    if (t->slots[t->entries[i].slot].state == STATSPROF__SLOT_FREE)
      memset(&ss->mark_entries[i], 0, sizeof *ss->mark_entries);
  for (uint32_t i = 0; i < t->nedges && i < ss->nprev_edges; i++)
    if (t->slots[t->entries[t->edges[i].callee].slot].state == STATSPROF__SLOT_FREE)
      memset(&ss->mark_edges[i], 0, sizeof *ss->mark_edges);
  for (uint32_t i = 0; i < ss->nmark_slots && i < t->nslots; i++)
    if (t->slots[i].state == STATSPROF__SLOT_FREE) ss->mark_wall_ns[i] = 0;
}

int statsprof__snapshot_build(statsprof *p, const statsprof__selection *sel,
                              statsprof_stats_profile **out) {
  statsprof__table *t = &p->table;
  statsprof__snapshot_state *ss = &p->snap;
  *out = NULL;
  if ((sel->base == STATSPROF__BASE_PREV && statsprof__snapshot_fit(p)) ||
      (sel->base == STATSPROF__BASE_MARK && marks_fit(p, sel->slot)))
    return statsprof__error(p, STATSPROF_ENOMEM, "out of memory taking a snapshot");
  uint32_t n_entries = sel->entries ? sel->nentries : t->nentries;
  uint32_t n_edges = sel->edges ? sel->nedges : t->nedges;
  build b = {.p = p, .sel = *sel};
  b.pos = statsprof__malloc((t->nlabels ? t->nlabels : 1) * sizeof *b.pos);
  b.sums = statsprof__malloc((n_entries ? n_entries : 1) * sizeof *b.sums);
  b.labels = statsprof__malloc((n_entries ? n_entries : 1) * sizeof *b.labels);
  b.edges = statsprof__malloc((n_edges ? n_edges : 1) * sizeof *b.edges);
  snapshot_impl *impl = NULL;
  if (b.pos && b.sums && b.labels && b.edges) {
    memset(b.pos, 0xff, (t->nlabels ? t->nlabels : 1) * sizeof *b.pos);
    for (uint32_t k = 0; k < n_entries; k++) take_entry(&b, sel->entries ? sel->entries[k] : k);
    for (uint32_t k = 0; k < n_edges; k++) take_edge(&b, sel->edges ? sel->edges[k] : k);
    impl = assemble(&b, p->src.config.clock == STATSPROF__CLOCK_CPU ? 1e-9 : statsprof__clock_sec_per_tick);
  }
  statsprof__free(b.pos);
  statsprof__free(b.sums);
  statsprof__free(b.labels);
  statsprof__free(b.edges);
  if (!impl) return statsprof__error(p, STATSPROF_ENOMEM, "out of memory taking a snapshot");

  statsprof_stats_profile *s = &impl->pub;
  s->kind = sel->kind;
  s->mode = sel->kind == STATSPROF_RECORD_CUMULATIVE ? STATSPROF_CUMULATIVE : STATSPROF_DELTA;
  s->spikes_suppressed = p->frames.spikes_suppressed;
  s->end_ns = statsprof__wall_ns();
  s->start_ns = sel->base == STATSPROF__BASE_PREV ? ss->last_wall_ns : ss->start_wall_ns;
  /* A thread's mark older than a reset is where it was zeroed. */
  if (sel->base == STATSPROF__BASE_MARK && ss->mark_wall_ns[sel->slot] > s->start_ns)
    s->start_ns = ss->mark_wall_ns[sel->slot];
  s->pid = (int64_t)getpid();
  s->overflow_functions = t->overflow_functions;
  /* So far, for the host's own snapshots too (emitting stamps them again). */
  s->dropped = statsprof_dropped(p);
  s->sink_errors = statsprof_sink_errors(p);
  if (sel->slot != STATSPROF__NONE) {
    s->thread_id = t->slots[sel->slot].thread_id;
    s->thread_name = t->slots[sel->slot].name;
  }
  if (sel->commit) commit(p, sel);
  if (sel->commit && sel->base == STATSPROF__BASE_MARK) ss->mark_wall_ns[sel->slot] = s->end_ns;
  /* Only a merged delta starts a new interval; a thread's delta moves only
   * that thread's own mark. Other records (spikes, threads, cumulative)
   * carry the seq of the merged delta that will cover them, the next one:
   * the previous one's gave the first spike seq 0. */
  if (sel->commit && sel->slot == STATSPROF__NONE) {
    ss->last_wall_ns = s->end_ns;
    s->seq = ++ss->seq;
  } else {
    s->seq = ss->seq + 1;
  }
  *out = s;
  return 0;
}

int statsprof__snapshot_take(statsprof *p, statsprof_snapshot_mode mode,
                             statsprof_stats_profile **out) {
  statsprof__selection sel = {
      .kind = mode == STATSPROF_DELTA ? STATSPROF_RECORD_DELTA : STATSPROF_RECORD_CUMULATIVE,
      .base = mode == STATSPROF_DELTA ? STATSPROF__BASE_PREV : STATSPROF__BASE_NONE,
      .slot = STATSPROF__NONE,
      .commit = mode == STATSPROF_DELTA,
  };
  return statsprof__snapshot_build(p, &sel, out);
}
