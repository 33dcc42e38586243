/* table.c — the function table: one entry per (file, line, name), its
 * label, and the caller->callee edges. Entries are found by index; the hook
 * reaches an entry in O(1) through the code object's co_extra slot or the
 * C-function cache, so the hash tables here are used once per new code
 * object, C function or edge, never per call. Entry 0 is the overflow entry
 * that absorbs functions beyond max_functions. Labels are global; entries
 * are per (label, thread slot). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- strings: append-only, refcounted ---------------------------------- */

struct statsprof__strings {
  atomic_long refs;
  struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
  } *head;
};

statsprof__strings *statsprof__strings_new(void) {
  statsprof__strings *s = statsprof__calloc(1, sizeof *s);
  if (s) atomic_init(&s->refs, 1);
  return s;
}

const char *statsprof__strings_add(statsprof__strings *s, const char *str, size_t len) {
  struct chunk *c = s->head;
  if (!c || c->cap - c->used < len + 1) {
    size_t cap = len + 1 > 16384 ? len + 1 : 16384;
    c = statsprof__malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = s->head;
    s->head = c;
  }
  char *d = c->data + c->used;
  memcpy(d, str, len);
  d[len] = 0;
  c->used += len + 1;
  return d;
}

void statsprof__strings_ref(statsprof__strings *s) { atomic_fetch_add(&s->refs, 1); }

void statsprof__strings_unref(statsprof__strings *s) {
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  for (struct chunk *c = s->head, *n; c; c = n) {
    n = c->next;
    statsprof__free(c);
  }
  statsprof__free(s);
}

/* ---- hashing ----------------------------------------------------------- */

static uint32_t hash_label(const char *file, int line, const char *name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)file; *p; p++) h = (h ^ *p) * 16777619u;
  h = (h ^ (uint32_t)line) * 16777619u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
  return h ? h : 1;
}

static uint32_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (uint32_t)x;
}

static uint32_t *index_new(uint32_t size) {
  uint32_t *ix = statsprof__malloc(sizeof *ix * size);
  if (ix) memset(ix, 0xff, sizeof *ix * size);
  return ix;
}

/* ---- labels, slots and entries --------------------------------------- */

static uint32_t add_label(statsprof__table *t, const char *file, int line, const char *name,
                          uint32_t hash) {
  if (STATSPROF__ARRAY_RESERVE(t->labels, t->caplabels, t->nlabels + 1, 64))
    return STATSPROF__NONE;
  statsprof__label *l = &t->labels[t->nlabels];
  /* A module's functions are usually first seen together: share the file
   * name with the previous label when it is the same. */
  const statsprof__label *prev = t->nlabels ? &t->labels[t->nlabels - 1] : NULL;
  l->file = prev && !strcmp(prev->file, file) ? prev->file : statsprof__strings_add(t->strings, file, strlen(file));
  l->name = statsprof__strings_add(t->strings, name, strlen(name));
  if (!l->file || !l->name) return STATSPROF__NONE;
  l->line = line;
  l->hash = hash;
  return t->nlabels++;
}

static int label_rehash(statsprof__table *t) {
  uint32_t size = (t->label_mask + 1) * 2;
  uint32_t *ix = index_new(size);
  if (!ix) return -1;
  for (uint32_t i = 1; i < t->nlabels; i++) {
    uint32_t h = t->labels[i].hash & (size - 1);
    while (ix[h] != STATSPROF__NONE) h = (h + 1) & (size - 1);
    ix[h] = i;
  }
  statsprof__free(t->label_index);
  t->label_index = ix;
  t->label_mask = size - 1;
  return 0;
}

uint32_t statsprof__table_intern(statsprof__table *t, const char *file, int line,
                                 const char *name) {
  uint32_t hash = hash_label(file, line, name);
  uint32_t h = hash & t->label_mask;
  for (uint32_t i; (i = t->label_index[h]) != STATSPROF__NONE; h = (h + 1) & t->label_mask) {
    const statsprof__label *l = &t->labels[i];
    if (l->hash == hash && l->line == line && !strcmp(l->name, name) && !strcmp(l->file, file))
      return i;
  }
  if (t->nlabels - 1 >= t->max_functions) {
    t->overflow_functions++;
    return 0;
  }
  /* Keep the load factor under 1/2; a failed rehash may go to 3/4. */
  if (t->nlabels * 2 > t->label_mask) {
    if (label_rehash(t) == 0) {
      h = hash & t->label_mask;
      while (t->label_index[h] != STATSPROF__NONE) h = (h + 1) & t->label_mask;
    } else if (t->nlabels * 4 > t->label_mask * 3) {
      return STATSPROF__NONE;
    }
  }
  uint32_t idx = add_label(t, file, line, name, hash);
  if (idx == STATSPROF__NONE) return idx;
  t->label_index[h] = idx;
  return idx;
}

uint32_t statsprof__table_slot_new(statsprof__table *t) {
  /* A free slot keeps its label map and entries: a new thread reuses them. */
  for (uint32_t i = 0; i < t->nslots; i++)
    if (t->slots[i].state == STATSPROF__SLOT_FREE) return i;
  if (STATSPROF__ARRAY_RESERVE(t->slots, t->capslots, t->nslots + 1, 64)) return STATSPROF__NONE;
  memset(&t->slots[t->nslots], 0, sizeof *t->slots);
  return t->nslots++;
}

uint32_t statsprof__table_entry(statsprof__table *t, uint32_t slot, uint32_t label) {
  statsprof__slot *s = &t->slots[slot];
  if (label >= s->nlocal) {
    /* The map is its own capacity: every label it covers has a value. */
    uint32_t old = s->nlocal;
    if (STATSPROF__ARRAY_RESERVE(s->local, s->nlocal, label + 1 > t->nlabels ? label + 1 : t->nlabels, 256))
      return STATSPROF__NONE;
    memset(s->local + old, 0xff, (s->nlocal - old) * sizeof *s->local);
  }
  if (s->local[label] != STATSPROF__NONE) return s->local[label];
  if (STATSPROF__ARRAY_RESERVE(t->entries, t->capentries, t->nentries + 1, 64))
    return STATSPROF__NONE;
  statsprof__entry *e = &t->entries[t->nentries];
  memset(e, 0, sizeof *e);
  e->label = label;
  e->slot = slot;
  e->last_edge = e->other_edge = STATSPROF__NONE;
  return s->local[label] = t->nentries++;
}

/* ---- edges ------------------------------------------------------------- */

static uint64_t edge_key(uint32_t caller, uint32_t callee) {
  return ((uint64_t)caller << 32) | callee;
}

static int edge_rehash(statsprof__table *t) {
  uint32_t size = (t->edge_mask + 1) * 2;
  uint32_t *ix = index_new(size);
  if (!ix) return -1;
  for (uint32_t i = 0; i < t->nedges; i++) {
    uint32_t h = mix64(edge_key(t->edges[i].caller, t->edges[i].callee)) & (size - 1);
    while (ix[h] != STATSPROF__NONE) h = (h + 1) & (size - 1);
    ix[h] = i;
  }
  statsprof__free(t->edge_index);
  t->edge_index = ix;
  t->edge_mask = size - 1;
  return 0;
}

uint32_t statsprof__table_edge(statsprof__table *t, uint32_t caller, uint32_t callee) {
  uint32_t h = mix64(edge_key(caller, callee)) & t->edge_mask;
  for (uint32_t i; (i = t->edge_index[h]) != STATSPROF__NONE; h = (h + 1) & t->edge_mask)
    if (t->edges[i].caller == caller && t->edges[i].callee == callee) return i;
  if ((t->nedges + 1) * 2 > t->edge_mask) {
    if (edge_rehash(t) == 0) {
      h = mix64(edge_key(caller, callee)) & t->edge_mask;
      while (t->edge_index[h] != STATSPROF__NONE) h = (h + 1) & t->edge_mask;
    } else if ((t->nedges + 1) * 4 > t->edge_mask * 3) {
      return STATSPROF__NONE;
    }
  }
  if (STATSPROF__ARRAY_RESERVE(t->edges, t->capedges, t->nedges + 1, 64))
    return STATSPROF__NONE;
  statsprof__edge *e = &t->edges[t->nedges];
  memset(e, 0, sizeof *e);
  e->caller = caller;
  e->callee = callee;
  t->edge_index[h] = t->nedges;
  return t->nedges++;
}

/* ---- C functions ------------------------------------------------------- */

static uint32_t cfunc_hash(const void *ml) { return mix64((uint64_t)(uintptr_t)ml); }

uint32_t statsprof__table_cfunc_find(const statsprof__table *t, const void *ml) {
  uint32_t h = cfunc_hash(ml) & t->cfunc_mask;
  for (;; h = (h + 1) & t->cfunc_mask) {
    const struct statsprof__cfunc_slot *s = &t->cfuncs[h];
    if (!s->ml) return STATSPROF__NONE;
    if (s->ml == ml) return s->entry;
  }
}

static void cfunc_put(struct statsprof__cfunc_slot *slots, uint32_t mask, const void *ml, uint32_t entry) {
  uint32_t h = cfunc_hash(ml) & mask;
  while (slots[h].ml) h = (h + 1) & mask;
  slots[h].ml = ml;
  slots[h].entry = entry;
}

int statsprof__table_cfunc_add(statsprof__table *t, const void *ml, uint32_t entry) {
  if ((t->ncfuncs + 1) * 2 > t->cfunc_mask) {
    uint32_t size = (t->cfunc_mask + 1) * 2;
    struct statsprof__cfunc_slot *n = statsprof__calloc(size, sizeof *n);
    if (!n && (t->ncfuncs + 1) * 4 > t->cfunc_mask * 3) return -1;
    if (!n) goto put;
    for (uint32_t i = 0; i <= t->cfunc_mask; i++)
      if (t->cfuncs[i].ml) cfunc_put(n, size - 1, t->cfuncs[i].ml, t->cfuncs[i].entry);
    statsprof__free(t->cfuncs);
    t->cfuncs = n;
    t->cfunc_mask = size - 1;
  }
put:
  cfunc_put(t->cfuncs, t->cfunc_mask, ml, entry);
  t->ncfuncs++;
  return 0;
}

/* ---- life cycle -------------------------------------------------------- */

int statsprof__table_init(statsprof__table *t, uint32_t max_functions) {
  memset(t, 0, sizeof *t);
  t->max_functions = max_functions;
  t->retired = STATSPROF__NONE;
  t->strings = statsprof__strings_new();
  t->label_mask = 255;
  t->edge_mask = 1023;
  t->cfunc_mask = 255;
  t->label_index = index_new(t->label_mask + 1);
  t->edge_index = index_new(t->edge_mask + 1);
  t->cfuncs = statsprof__calloc(t->cfunc_mask + 1, sizeof *t->cfuncs);
  if (!t->strings || !t->label_index || !t->edge_index || !t->cfuncs ||
      add_label(t, "~", 0, "<statsprof overflow: functions beyond max_functions>", 0) != 0) {
    statsprof__table_free(t);
    return STATSPROF_ENOMEM;
  }
  return 0;
}

void statsprof__table_free(statsprof__table *t) {
  for (uint32_t i = 0; i < t->nslots; i++) {
    statsprof__free(t->slots[i].local);
    statsprof__osthread_unref(t->slots[i].os);
  }
  statsprof__free(t->slots);
  statsprof__free(t->entries);
  statsprof__free(t->labels);
  statsprof__free(t->edges);
  statsprof__free(t->label_index);
  statsprof__free(t->edge_index);
  statsprof__free(t->cfuncs);
  statsprof__strings_unref(t->strings);
  memset(t, 0, sizeof *t);
}

void statsprof__table_clear_counts(statsprof__table *t) {
  /* Levels stay: frames open now still return into these entries. */
  for (uint32_t i = 0; i < t->nentries; i++) memset(&t->entries[i].c, 0, sizeof t->entries[i].c);
  for (uint32_t i = 0; i < t->nedges; i++) memset(&t->edges[i].c, 0, sizeof t->edges[i].c);
  /* overflow_functions stays: folded functions stay folded (their code
   * objects still point at label 0) and would not be counted again. */
}
