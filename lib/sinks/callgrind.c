/* sinks/callgrind.c — one file per record in the Callgrind profile format
 * (valgrind's "Callgrind Format Specification", version 1), so
 * callgrind_annotate and KCachegrind open our records as they open
 * `valgrind --tool=callgrind` output.
 *
 * sink=callgrind:DIR writes DIR/callgrind.out.statsprof.<seq>.<pid>.
 * Per-thread and spike records carry the merged record's seq, so their
 * names say what they are: callgrind.out.statsprof-thread<tid>.<seq>.<pid>
 * and callgrind.out.statsprof-spike<frame>.<seq>.<pid>. The kind goes
 * before the seq on purpose: KCachegrind opening NAME also loads NAME.* and
 * NAME-* as further parts of one run and adds them up, which would count a
 * merged record and its threads twice.
 *
 * The mapping, one record -> one part:
 *   events: ns          one event, integer nanoseconds (a Python call can
 *                       take less than a microsecond; ns keeps what the
 *                       record's doubles hold)
 *   fl= / fn=           a function: file, and name ":" def line (two
 *                       functions of one name in one file, such as two
 *                       classes' __init__, stay apart); C functions (file
 *                       "~", line 0) keep their cProfile name alone
 *   <line> <tottime>    the function's self cost, at its def line
 *   cfi= / cfn= /       one caller edge, written under the caller:
 *   calls=<n> <line>    the edge's call count and the callee's def line,
 *   <line> <cumtime>    then the caller's line and the edge's inclusive
 *                       time (cProfile's per-caller cumtime)
 * Callers that are not functions of the record themselves (a frame still
 * running when the snapshot was taken) get an fn= block with only their
 * calls. `summary:` and `totals:` are the sum of the self-cost lines, so
 * readers' consistency checks hold exactly. Recursion is as cProfile counts
 * it: a recursive edge's cumtime covers its outermost calls only.
 *
 * Names are written with callgrind's name compression ("(id) name" once,
 * "(id)" after). Bytes that would break a line or are not UTF-8 become
 * "\xNN", as the pstats sink writes invalid UTF-8.
 *
 * Runs on the sink's writer thread without the GIL; the record is only read.
 * Each file is written under a hidden temporary name and renamed into place,
 * so a reader polling DIR never sees a partial file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"

typedef struct callgrind_sink {
  statsprof__record_dir dir;
  char *cmd; /* the command line, sanitized, for "cmd:" */
} callgrind_sink;

/* ---- text -------------------------------------------------------------- */


/* A name on one line: control characters, DEL and invalid UTF-8 become
 * "\xNN"; so does a leading blank, which readers strip after "(id)", and
 * a backslash, so that a name that holds "\x0a" itself reads back apart
 * from one that held a newline. An empty name is "???", callgrind's own
 * word for an unknown one. */
static void put_name(statsprof__buf *b, const char *s) {
  const unsigned char *u = (const unsigned char *)(s ? s : "");
  if (!*u) {
    statsprof__buf_puts(b, "???");
    return;
  }
  for (size_t i = 0; u[i];) {
    size_t n = statsprof__utf8_seq(u + i);
    if (n == 0 || u[i] < 0x20 || u[i] == 0x7f || u[i] == '\\' || (i == 0 && u[i] == ' ')) {
      statsprof__buf_printf(b, "\\x%02x", u[i]);
      i++;
    } else {
      statsprof__buf_put(b, (const char *)u + i, n);
      i += n;
    }
  }
}

/* Seconds -> integer ns, clamped to what a cost counter holds. NaN,
 * negative and -0 are 0. */
static uint64_t to_ns(double s) {
  if (!(s > 0)) return 0;
  double ns = s * 1e9;
  if (ns >= 9.2e18) return INT64_MAX;
  return (uint64_t)llround(ns);
}

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Callgrind line numbers are positive; a relative one starts with '-'. */
static unsigned long pos_line(int line) { return line > 0 ? (unsigned long)line : 0; }

/* ---- functions and edges ---------------------------------------------- */

/* A function of the file: one of the record's, or a caller only. */
typedef struct node {
  const char *file, *name;
  int line;
  uint32_t file_id; /* 1-based id in the "fl" names */
  size_t func;      /* index in rec->func_profiles, or SIZE_MAX */
} node;

typedef struct edge {
  size_t caller, callee; /* nodes */
  size_t order;          /* keeps the record's order among one caller's */
  uint64_t calls, ns;
} edge;

typedef struct graph {
  node *nodes;
  size_t nnodes;
  size_t *node_index; /* open addressing: node + 1, 0 empty */
  size_t node_mask;
  const char **files; /* by file_id - 1 */
  size_t nfiles;
  size_t *file_index; /* open addressing: file_id, 0 empty */
  size_t file_mask;
  edge *edges;
  size_t nedges;
} graph;

static uint64_t hash_str(uint64_t h, const char *s) {
  for (const unsigned char *u = (const unsigned char *)s; *u; u++) h = (h ^ *u) * 0x100000001b3ull;
  return (h ^ 0xff) * 0x100000001b3ull; /* ends the string: ("ab","c") != ("a","bc") */
}

static size_t table_mask(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  return cap - 1;
}

static uint32_t file_id(graph *g, const char *file) {
  size_t i = hash_str(0xcbf29ce484222325ull, file) & g->file_mask;
  for (; g->file_index[i]; i = (i + 1) & g->file_mask)
    if (!strcmp(g->files[g->file_index[i] - 1], file)) return (uint32_t)g->file_index[i];
  g->files[g->nfiles++] = file;
  g->file_index[i] = g->nfiles;
  return (uint32_t)g->nfiles;
}

static size_t node_of(graph *g, const char *file, int line, const char *name) {
  file = file ? file : "";
  name = name ? name : "";
  uint64_t h = hash_str(hash_str(0xcbf29ce484222325ull ^ (uint32_t)line, file), name);
  size_t i = h & g->node_mask;
  for (; g->node_index[i]; i = (i + 1) & g->node_mask) {
    node *n = &g->nodes[g->node_index[i] - 1];
    if (n->line == line && !strcmp(n->file, file) && !strcmp(n->name, name)) return g->node_index[i] - 1;
  }
  node *n = &g->nodes[g->nnodes];
  *n = (node){.file = file, .name = name, .line = line, .func = SIZE_MAX};
  n->file_id = file_id(g, file);
  g->node_index[i] = ++g->nnodes;
  return g->nnodes - 1;
}

static int by_caller(const void *a, const void *b) {
  const edge *x = a, *y = b;
  if (x->caller != y->caller) return x->caller < y->caller ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static void graph_free(graph *g) {
  statsprof__free(g->nodes);
  statsprof__free(g->node_index);
  statsprof__free(g->files);
  statsprof__free(g->file_index);
  statsprof__free(g->edges);
}

static int graph_build(graph *g, const statsprof_stats_profile *rec) {
  size_t nkeys = rec->nfunc_profiles;
  for (size_t i = 0; i < rec->nfunc_profiles; i++) nkeys += rec->func_profiles[i].ncallers;
  memset(g, 0, sizeof *g);
  g->node_mask = table_mask(nkeys);
  g->file_mask = g->node_mask;
  g->nodes = statsprof__malloc((nkeys ? nkeys : 1) * sizeof *g->nodes);
  g->files = statsprof__malloc((nkeys ? nkeys : 1) * sizeof *g->files);
  g->edges = statsprof__malloc((nkeys ? nkeys : 1) * sizeof *g->edges);
  g->node_index = statsprof__calloc(g->node_mask + 1, sizeof *g->node_index);
  g->file_index = statsprof__calloc(g->file_mask + 1, sizeof *g->file_index);
  if (!g->nodes || !g->files || !g->edges || !g->node_index || !g->file_index) return STATSPROF_ENOMEM;
  /* The record's functions first, in its order, then callers not among them. */
  for (size_t i = 0; i < rec->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &rec->func_profiles[i];
    node *n = &g->nodes[node_of(g, f->file_name, f->line_number, f->function_name)];
    if (n->func == SIZE_MAX) n->func = i;
  }
  for (size_t i = 0; i < rec->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &rec->func_profiles[i];
    size_t callee = node_of(g, f->file_name, f->line_number, f->function_name);
    for (size_t j = 0; j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      /* callgrind_annotate reads the cost line after "calls=0" as self
       * cost: an edge without calls cannot be written. The library never
       * makes one (calls and times are counted together at return). */
      if (c->ncalls == 0) continue;
      size_t caller = node_of(g, c->file_name, c->line_number, c->function_name);
      g->edges[g->nedges] =
          (edge){.caller = caller, .callee = callee, .order = g->nedges, .calls = c->ncalls, .ns = to_ns(c->cumtime)};
      g->nedges++;
    }
  }
  qsort(g->edges, g->nedges, sizeof *g->edges, by_caller);
  return 0;
}

/* ---- the file ---------------------------------------------------------- */

typedef struct writer {
  statsprof__buf *b;
  const graph *g;
  unsigned char *file_named, *fn_named; /* compression ids already defined */
} writer;

static void put_file(writer *w, const char *spec, uint32_t id) {
  statsprof__buf_printf(w->b, "%s=(%u)", spec, id);
  if (!w->file_named[id - 1]) {
    w->file_named[id - 1] = 1;
    statsprof__buf_put(w->b, " ", 1);
    put_name(w->b, w->g->files[id - 1]);
  }
  statsprof__buf_put(w->b, "\n", 1);
}

static void put_fn(writer *w, const char *spec, size_t k) {
  const node *n = &w->g->nodes[k];
  statsprof__buf_printf(w->b, "%s=(%zu)", spec, k + 1);
  if (!w->fn_named[k]) {
    w->fn_named[k] = 1;
    statsprof__buf_put(w->b, " ", 1);
    put_name(w->b, n->name);
    if (n->line != 0) statsprof__buf_printf(w->b, ":%d", n->line);
  }
  statsprof__buf_put(w->b, "\n", 1);
}

static void put_header(statsprof__buf *b, const callgrind_sink *s, const statsprof_stats_profile *rec,
                       uint64_t total) {
  statsprof__buf_printf(b,
                        "# callgrind format\n"
                        "version: 1\n"
                        "creator: statsprof " STATSPROF_VERSION_STRING "\n"
                        "pid: %lld\n"
                        "cmd: %s\n"
                        "part: %llu\n",
                        (long long)rec->pid, s->cmd, (unsigned long long)rec->seq);
  if (rec->thread_id) statsprof__buf_printf(b, "thread: %llu\n", (unsigned long long)rec->thread_id);
  statsprof__buf_printf(b, "desc: Trigger: statsprof %s record %llu\n", statsprof_record_kind_name(rec->kind),
                        (unsigned long long)rec->seq);
  statsprof__buf_printf(b, "desc: Interval: %lld ns to %lld ns since the epoch (%.6f s)\n",
                        (long long)rec->start_ns, (long long)rec->end_ns,
                        ((double)rec->end_ns - (double)rec->start_ns) * 1e-9);
  if (rec->thread_id) {
    statsprof__buf_puts(b, "desc: Thread: ");
    put_name(b, rec->thread_name ? rec->thread_name : "");
    statsprof__buf_put(b, "\n", 1);
  }
  if (rec->kind == STATSPROF_RECORD_SPIKE)
    statsprof__buf_printf(b, "desc: Frame: %llu took %.6f s\n", (unsigned long long)rec->frame,
                          rec->frame_time_s);
  if (rec->dropped || rec->sink_errors || rec->overflow_functions)
    statsprof__buf_printf(b, "desc: Losses: %llu records dropped, %llu sink errors, %llu functions in the overflow entry\n",
                          (unsigned long long)rec->dropped, (unsigned long long)rec->sink_errors,
                          (unsigned long long)rec->overflow_functions);
  statsprof__buf_printf(b,
                        "positions: line\n"
                        "event: ns : Time (nanoseconds)\n"
                        "events: ns\n"
                        "summary: %llu\n\n",
                        (unsigned long long)total);
}

static int format(const callgrind_sink *s, const statsprof_stats_profile *rec, statsprof__buf *b) {
  graph g;
  int rc = graph_build(&g, rec);
  writer w = {.b = b, .g = &g};
  if (!rc) {
    w.file_named = statsprof__calloc(g.nfiles ? g.nfiles : 1, 1);
    w.fn_named = statsprof__calloc(g.nnodes ? g.nnodes : 1, 1);
    if (!w.file_named || !w.fn_named) rc = STATSPROF_ENOMEM;
  }
  if (!rc) {
    uint64_t total = 0;
    for (size_t k = 0; k < g.nnodes; k++)
      if (g.nodes[k].func != SIZE_MAX) total = sat_add(total, to_ns(rec->func_profiles[g.nodes[k].func].tottime));
    put_header(b, s, rec, total);
    size_t e = 0;
    for (size_t k = 0; k < g.nnodes; k++) {
      const node *n = &g.nodes[k];
      put_file(&w, "fl", n->file_id);
      put_fn(&w, "fn", k);
      /* A function's first line binds it to its file in KCachegrind: the
       * self cost comes first, even when it is 0. */
      if (n->func != SIZE_MAX)
        statsprof__buf_printf(b, "%lu %llu\n", pos_line(n->line),
                              (unsigned long long)to_ns(rec->func_profiles[n->func].tottime));
      for (; e < g.nedges && g.edges[e].caller == k; e++) {
        const edge *c = &g.edges[e];
        const node *callee = &g.nodes[c->callee];
        put_file(&w, "cfi", callee->file_id);
        put_fn(&w, "cfn", c->callee);
        statsprof__buf_printf(b, "calls=%llu %lu\n%lu %llu\n", (unsigned long long)c->calls,
                              pos_line(callee->line), pos_line(n->line), (unsigned long long)c->ns);
      }
      statsprof__buf_put(b, "\n", 1);
    }
    statsprof__buf_printf(b, "totals: %llu\n", (unsigned long long)total);
    if (b->oom) rc = STATSPROF_ENOMEM;
  }
  statsprof__free(w.file_named);
  statsprof__free(w.fn_named);
  graph_free(&g);
  return rc;
}

/* ---- files ------------------------------------------------------------- */

static void record_path(char *out, size_t n, const char *dir, const statsprof_stats_profile *rec) {
  char kind[48];
  statsprof__record_kind_tag(kind, sizeof kind, rec);
  snprintf(out, n, "%s/callgrind.out.statsprof%s.%llu.%lld", dir, kind, (unsigned long long)rec->seq,
           (long long)rec->pid);
}

static int callgrind_emit(void *ctx, const statsprof_stats_profile *rec) {
  callgrind_sink *s = ctx;
  /* An idle interval would only add an empty file (as the pstats sink, we
   * skip it; the gap in seq shows the interval). */
  if (rec->nfunc_profiles == 0) return 0;
  statsprof__buf b = {0};
  int rc = format(s, rec, &b);
  if (!rc) {
    char path[4096];
    record_path(path, sizeof path, s->dir.path, rec);
    /* A second file of the same name: ".2", ".3", ..., which KCachegrind
     * loads as further parts of the same run. */
    rc = statsprof__record_dir_write(&s->dir, path, '.', "", &b);
  }
  statsprof__free(b.data);
  return rc;
}

static void callgrind_close(void *ctx) {
  callgrind_sink *s = ctx;
  statsprof__record_dir_close(&s->dir);
  statsprof__free(s->cmd);
  statsprof__free(s);
}

static const statsprof_sink_ops callgrind_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "callgrind",
    .emit = callgrind_emit,
    .flush = NULL,
    .close = callgrind_close,
};

/* The process's command line for "cmd:", read once: arguments joined by
 * spaces, on one line. */
static char *command_line(void) {
  statsprof__buf raw = {0}, out = {0};
  int fd = statsprof__open_file("/proc/self/cmdline", O_RDONLY, 0);
  if (fd >= 0) {
    char chunk[1024];
    ssize_t n;
    while (raw.len < 4096 && (n = read(fd, chunk, sizeof chunk)) > 0) statsprof__buf_put(&raw, chunk, (size_t)n);
    close(fd);
  }
  while (raw.len && raw.data[raw.len - 1] == 0) raw.len--;
  if (raw.len == 0) {
    extern char *program_invocation_name;
    statsprof__buf_puts(&raw, program_invocation_name ? program_invocation_name : "");
  }
  for (size_t i = 0; i < raw.len; i++)
    if (raw.data[i] == 0) raw.data[i] = ' ';
  statsprof__buf_put(&raw, "", 1);
  if (!raw.oom) put_name(&out, raw.data);
  statsprof__buf_put(&out, "", 1);
  statsprof__free(raw.data);
  if (raw.oom || out.oom) {
    statsprof__free(out.data);
    return NULL;
  }
  return out.data;
}

int statsprof__callgrind_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                              size_t errlen) {
  callgrind_sink *s = statsprof__calloc(1, sizeof *s);
  if (!s || !(s->cmd = command_line())) {
    statsprof__free(s);
    snprintf(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  int rc = statsprof__record_dir_open(&s->dir, arg, "callgrind", err, errlen);
  if (rc) {
    statsprof__free(s->cmd);
    statsprof__free(s);
    return rc;
  }
  *ops = &callgrind_ops;
  *ctx = s;
  return 0;
}
