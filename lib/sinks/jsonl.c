/* sinks/jsonl.c — one JSON object per line, appended with one write() per
 * record and no user-space buffering, so a log shipper tailing the file sees
 * whole lines and a crash leaves only whole lines behind.
 *
 * sink=jsonl:PATH[,max_bytes=SIZE][,keep=N][,layout=record|rows]: with
 * max_bytes the file rotates before a record would take it past SIZE (PATH
 * -> PATH.1 -> ... PATH.N, the oldest dropped). layout=rows writes a record
 * as flat lines, one per function and caller edge (jsonl_format.c), still
 * with one write(), so its lines stay together and in one file.
 * statsprof_reopen() makes the next record reopen PATH, for an external
 * logrotate. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"

/* sink=jsonl:PATH,NAME=VALUE options, as parsed. */
typedef struct jsonl_options_t {
  uint64_t max_bytes; /* 0: never rotate */
  uint64_t keep;      /* rotated files kept: PATH.1 ... PATH.keep */
  uint64_t rows;      /* layout=rows */
} jsonl_options_t;

typedef struct jsonl_sink {
  int fd;
  uint64_t size;      /* bytes in the current file */
  jsonl_options_t opt;
  atomic_int reopen;
  int (*format)(const statsprof_stats_profile *, char **, size_t *); /* the layout */
  int stalled;        /* the last write timed out: do not wait again */
  char *pending;      /* the unwritten end of a line cut short */
  size_t npending;
  char path[];
} jsonl_sink;

/* Writes data, remembering what a stalled reader (or a full disk) left
 * unwritten so the next write finishes that line first: the file never gets
 * half a line followed by another record. */
static int write_line(jsonl_sink *s, const char *data, size_t len) {
  size_t n = statsprof__write_some(s->fd, data, len, s->stalled ? 0 : STATSPROF__STALL_MS);
  s->size += n;
  s->stalled = n < len && errno == ETIMEDOUT;
  if (n == len) return 0;
  if (n > 0) {
    char *rest = malloc(len - n);
    if (rest) {
      memcpy(rest, data + n, len - n);
      s->pending = rest;
      s->npending = len - n;
    }
  }
  return -1;
}

/* Created with the host's umask; O_CLOEXEC so children never inherit it. */
static int open_file(jsonl_sink *s) {
  /* mkdir -p, so "out/prof.jsonl" works on a fresh tree. */
  if (statsprof__mkdir_parents(s->path) != 0) return -1;
  /* O_NONBLOCK: a FIFO with no reader fails now (ENXIO) instead of
   * blocking the host, and a stalled reader never blocks a write forever
   * (see statsprof__write_all). No effect on regular files. */
  int fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0666);
  if (fd < 0) return -1;
  struct stat st;
  s->size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  s->fd = fd;
  return 0;
}

static int reopen_file(jsonl_sink *s) {
  int old = s->fd;
  if (open_file(s) != 0) return -1;
  close(old);
  return 0;
}

static int rotate(jsonl_sink *s) {
  size_t n = strlen(s->path) + 16;
  char *from = malloc(n), *to = malloc(n);
  int rc = -1;
  if (from && to) {
    for (unsigned i = (unsigned)s->opt.keep; i >= 1; i--) {
      snprintf(to, n, "%s.%u", s->path, i);
      if (i > 1) snprintf(from, n, "%s.%u", s->path, i - 1);
      else snprintf(from, n, "%s", s->path);
      if (rename(from, to) != 0 && errno != ENOENT) goto out;
    }
    if (s->opt.keep == 0 && unlink(s->path) != 0 && errno != ENOENT) goto out;
    rc = reopen_file(s);
  }
out:
  free(from);
  free(to);
  return rc;
}

static int jsonl_emit(void *ctx, const statsprof_stats_profile *rec) {
  jsonl_sink *s = ctx;
  char *line;
  size_t len;
  int rc = s->format(rec, &line, &len);
  if (rc) return rc;
  if (atomic_exchange(&s->reopen, 0) && reopen_file(s) != 0) rc = STATSPROF_EIO;
  if (!rc && s->opt.max_bytes && s->size > 0 && s->size + len > s->opt.max_bytes && rotate(s) != 0)
    rc = STATSPROF_EIO;
  if (s->npending) {
    char *p = s->pending;
    size_t np = s->npending;
    s->pending = NULL;
    s->npending = 0;
    int stuck = write_line(s, p, np) != 0;
    free(p);
    if (stuck) {
      free(line); /* this record is lost for this sink (counted), the line kept whole */
      return STATSPROF_EIO;
    }
  }
  /* A failed rotation still writes to the old file: better than nothing. */
  if (write_line(s, line, len) != 0) rc = STATSPROF_EIO;
  free(line);
  return rc;
}

static void jsonl_reopen(void *ctx) { atomic_store(&((jsonl_sink *)ctx)->reopen, 1); }

static void jsonl_close(void *ctx) {
  jsonl_sink *s = ctx;
  free(s->pending);
  close(s->fd);
  free(s);
}

static const statsprof_sink_ops jsonl_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "jsonl",
    .emit = jsonl_emit,
    .close = jsonl_close,
    .reopen = jsonl_reopen,
};

static const statsprof__word layout_words[] = {{"record", 0}, {"rows", 1}, {NULL, 0}};

/* The options after PATH: one row each (see statsprof__sink_option). */
static const statsprof__sink_option jsonl_options[] = {
    {"max_bytes", "SIZE",
     {.units = statsprof__size_units, .min = 1024, .max = INT64_MAX,
      .help = "SIZE, at least 1k: bytes, or a decimal number and k, M or G (e.g. 10M)"},
     offsetof(jsonl_options_t, max_bytes)},
    {"keep", "N",
     {.units = statsprof__count_units, .whole = 1, .max = 1000, .help = "N, a whole number from 0 to 1000"},
     offsetof(jsonl_options_t, keep)},
    {"layout", "record|rows", {.words = layout_words, .max = 1, .help = "record or rows"},
     offsetof(jsonl_options_t, rows)},
    {NULL},
};

int statsprof__jsonl_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                          size_t errlen) {
  jsonl_options_t opt = {.max_bytes = 0, .keep = 5};
  const char *path;
  size_t plen;
  int rc = statsprof__sink_args(arg, jsonl_options, &opt, &path, &plen, err, errlen);
  if (rc) return rc;
  if (!plen) {
    statsprof__msg(err, errlen, "needs a file path (sink=jsonl:PATH)");
    return STATSPROF_ECONFIG;
  }
  jsonl_sink *s = calloc(1, sizeof *s + plen + 1);
  if (!s) {
    statsprof__msg(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  memcpy(s->path, path, plen);
  s->opt = opt;
  s->format = opt.rows ? statsprof_format_jsonl_rows : statsprof_format_jsonl;
  atomic_init(&s->reopen, 0);
  if (open_file(s) != 0) {
    int e = errno;
    char q[STATSPROF__QUOTE_PATH + 1];
    statsprof__quote(q, sizeof q, s->path, plen, STATSPROF__QUOTE_PATH);
    statsprof__msg(err, errlen, "cannot open '%s' for appending: %s", q, strerror(e));
    free(s);
    return STATSPROF_EIO;
  }
  *ops = &jsonl_ops;
  *ctx = s;
  return 0;
}
