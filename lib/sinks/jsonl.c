/* sinks/jsonl.c — one JSON object per line, appended with one write() per
 * record and no user-space buffering, so a log shipper tailing the file sees
 * whole lines and a crash leaves only whole lines behind.
 *
 * sink=jsonl:PATH[,max_bytes=SIZE][,keep=N][,layout=record|rows]: with
 * max_bytes the file rotates before a record would take it past SIZE (PATH
 * -> PATH.1 -> ... PATH.N, the oldest dropped). layout=rows writes a record
 * as flat lines, one per function and caller edge (jsonl_format.c), still
 * with one write(), so its lines stay together and in one file.
 *
 * Every complete line parses, in every file, rotated or not:
 *   - A record cut short (a full disk, a reader that stalled past the stall
 *     limit) is never followed by another. In a regular file the cut part is
 *     truncated away at once; in a pipe or FIFO the unwritten end is kept
 *     and written before anything else, into the same file — records that
 *     come while it cannot be are dropped (counted) — and given up only when
 *     that file is left behind (reopen), so a cut line is never completed by
 *     something else. The writer keeps the file's lock until then, so
 *     other writers cannot append to the half line either. A regular file that ends inside a line (a writer
 *     killed mid-write, power loss) is cut back to its last newline before
 *     the next record (repair_tail).
 *   - Several writers of one PATH (a forked child and its parent, two
 *     profilers, two processes) take flock() on the file around each
 *     write, and around the rotation with it, so records never interleave
 *     and only one writer rotates. Before writing, a writer compares PATH's
 *     inode with its own file's: if another writer rotated (or logrotate
 *     moved the file), it opens PATH again. A forked child opens PATH
 *     anew (an inherited descriptor would share the parent's lock). The
 *     lock wait has the stall limit too.
 * statsprof_reopen() makes the next record reopen PATH, for an external
 * logrotate (following PATH's inode already does that for a rename). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
  int fd;             /* -1: open PATH at the next record */
  dev_t dev;          /* fd's file, to notice PATH is another one now */
  ino_t ino;
  int regular;        /* fd is a regular file: it rotates, cuts are truncated */
  int readable;       /* fd was opened O_RDWR: a cut line left by another can be found */
  pid_t pid;          /* the process that opened fd */
  jsonl_options_t opt;
  atomic_int reopen;
  int (*format)(const statsprof_stats_profile *, char **, size_t *); /* the layout */
  int stalled;        /* the last write to fd timed out: do not wait again */
  int opening[2];     /* what open_file holds before fd does, else -1 (see forget_parents) */
  char *pending;      /* the unwritten end of a record cut short, for fd */
  size_t npending;
  char qpath[STATSPROF__QUOTE_PATH + 1]; /* PATH as messages quote it */
  char path[];
} jsonl_sink;

static const statsprof_sink_ops jsonl_ops;

/* Says why the record failed, for the writer's log line; returns EIO. */
static int fail(jsonl_sink *s, const char *what, int err) {
  statsprof__sink_fail("%s '%s': %s", what, s->qpath,
                       err == ETIMEDOUT ? "stalled, the reader took nothing for 1 s" : strerror(err));
  return STATSPROF_EIO;
}

/* Closes what open_file held in slot i, the slot cleared first (see
 * drop_pending). */
static void drop_opening(jsonl_sink *s, int i) {
  int fd = s->opening[i];
  s->opening[i] = -1;
  if (fd >= 0) close(fd);
}

/* Created with the host's umask; O_CLOEXEC so children that exec never
 * inherit it, and never at fd 0-2 (statsprof__open_file). Each descriptor is in s->opening from its open to its close
 * or until s->fd has it, for a child forked meanwhile (forget_parents). */
static int open_file(jsonl_sink *s) {
  /* mkdir -p, so "out/prof.jsonl" works on a fresh tree. */
  if (statsprof__mkdir_parents(s->path) != 0) return -1;
  /* O_NONBLOCK: a FIFO with no reader fails now (ENXIO) instead of
   * blocking the host, and a stalled reader never blocks a write forever
   * (see statsprof__write_some). No effect on regular files. */
  int fd = s->opening[0] = statsprof__open_file(s->path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK, 0666);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    drop_opening(s, 0);
    errno = e;
    return -1;
  }
  s->readable = 0;
  if (S_ISREG(st.st_mode)) {
    /* Read access too, to find a line a crashed writer left cut (see
     * repair_tail). Opened write-only first, so a FIFO is never opened for
     * reading; a file we may not read is still written. */
    int rw = s->opening[1] = statsprof__open_file(s->path, O_RDWR | O_APPEND | O_NONBLOCK, 0);
    struct stat rst;
    if (rw >= 0 && fstat(rw, &rst) == 0 && rst.st_dev == st.st_dev && rst.st_ino == st.st_ino) {
      drop_opening(s, 0);
      fd = rw;
      s->readable = 1;
    } else {
      drop_opening(s, 1);
    }
  }
  s->fd = fd;
  s->opening[0] = s->opening[1] = -1;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->regular = S_ISREG(st.st_mode);
  s->pid = getpid();
  return 0;
}

/* The host may fork() while the writer thread is in here: the child gets
 * the sink as it was at that instant. So the fields are cleared before the
 * memory is freed or the descriptor closed, never after: a child must not
 * free the parent's freed pointer again (a double free, an abort), nor
 * close a number that is free now and may become one of its own files. */
static void drop_pending(jsonl_sink *s) {
  char *p = s->pending;
  s->npending = 0;
  s->pending = NULL;
  statsprof__free(p);
}

/* A stall was that file's reader's: the next file's writes wait again. */
static void close_file(jsonl_sink *s) {
  int fd = s->fd;
  s->fd = -1;
  s->stalled = 0;
  close(fd);
}

/* Leaves the current file, which this process opened (a forked child's
 * copy of the parent's was let go of first: forget_parents): a cut
 * record's end gets one last chance (no waiting), else that file ends with
 * a cut line, which no reader counts as a line. Our lock is released here,
 * not by close(): it belongs to the open file, and a forked child that has
 * not written yet (a worker that never ticks) keeps that open file, and
 * with it the lock, as long as it lives, and every other writer of that
 * file would time out on it at each record. */
static void leave_file(jsonl_sink *s) {
  if (s->fd < 0) return;
  if (s->npending) statsprof__write_some(s->fd, s->pending, s->npending, 0);
  drop_pending(s);
  flock(s->fd, LOCK_UN);
  close_file(s);
}

/* flock, waiting at most the stall limit for another writer: 0 locked, 1
 * where files cannot be locked (written unlocked), -1 (errno) otherwise. */
/* How many times one record follows PATH to a new file (see jsonl_emit). */
#define STATSPROF__MAX_FOLLOWS 1024

static int lock_file(int fd) {
  int64_t start = statsprof__mono_ns();
  for (unsigned us = 100;; us = us < 10000 ? us * 2 : us) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == ENOLCK || errno == EINVAL || errno == EOPNOTSUPP) return 1;
    if (errno != EWOULDBLOCK) return -1;
    if (statsprof__mono_ns() - start > (int64_t)STATSPROF__STALL_MS * 1000000) {
      errno = ETIMEDOUT;
      return -1;
    }
    usleep(us);
  }
}

/* PATH is no longer the file we hold (rotated by another writer, moved by
 * logrotate, removed). */
static int path_moved(const jsonl_sink *s) {
  struct stat st;
  return stat(s->path, &st) != 0 || st.st_dev != s->dev || st.st_ino != s->ino;
}

/* Under the lock of the file at PATH: PATH -> PATH.1 -> ... -> PATH.keep
 * (the oldest dropped). The caller then leaves the file and opens PATH
 * afresh, like any writer that finds PATH moved. A failure says which
 * rename failed (sink_fail), and returns -1. */
static int rotate_names(jsonl_sink *s) {
  size_t n = strlen(s->path) + 16;
  char *from = statsprof__malloc(n), *to = statsprof__malloc(n);
  int rc = -1, e = ENOMEM;
  if (from && to) {
    rc = 0;
    for (unsigned i = (unsigned)s->opt.keep; i >= 1 && rc == 0; i--) {
      snprintf(to, n, "%s.%u", s->path, i);
      if (i > 1) snprintf(from, n, "%s.%u", s->path, i - 1);
      else snprintf(from, n, "%s", s->path);
      if (rename(from, to) != 0 && errno != ENOENT) rc = -1;
    }
    if (rc == 0 && s->opt.keep == 0 && unlink(s->path) != 0 && errno != ENOENT) rc = -1;
    e = errno;
  }
  if (rc && from && to && s->opt.keep) {
    /* Half each: both and the OS's reason fit the message. */
    char qfrom[STATSPROF__QUOTE_PATH / 2 + 1], qto[STATSPROF__QUOTE_PATH / 2 + 1];
    statsprof__quote(qfrom, sizeof qfrom, from, strlen(from), STATSPROF__QUOTE_PATH / 2);
    statsprof__quote(qto, sizeof qto, to, strlen(to), STATSPROF__QUOTE_PATH / 2);
    statsprof__sink_fail("cannot rotate: cannot rename '%s' to '%s': %s", qfrom, qto, strerror(e));
  } else if (rc) {
    fail(s, e == ENOMEM ? "out of memory, cannot rotate" : "cannot rotate (remove)", e);
  }
  statsprof__free(from);
  statsprof__free(to);
  return rc;
}

/* Writes data to fd within the stall limit (none after a stall). */
static size_t write_part(jsonl_sink *s, const char *data, size_t len) {
  size_t n = statsprof__write_some(s->fd, data, len, s->stalled ? 0 : STATSPROF__STALL_MS);
  int e = errno;
  s->stalled = n < len && e == ETIMEDOUT;
  errno = e;
  return n;
}

/* The end of a cut record, into the file that has its start. */
static int finish_pending(jsonl_sink *s) {
  if (!s->npending) return 0;
  size_t n = write_part(s, s->pending, s->npending);
  if (n < s->npending) {
    int e = errno;
    memmove(s->pending, s->pending + n, s->npending - n);
    s->npending -= n;
    return fail(s, "a cut record could not be finished, this one is dropped: cannot write to", e);
  }
  drop_pending(s);
  return 0;
}

/* How far back repair_tail looks for the newline before a cut line. */
#define STATSPROF__REPAIR_SCAN (64 << 20)

/* A file that ends inside a line (its writer was killed mid-write, the
 * machine lost power, a cut could not be truncated) would glue our record
 * to that fragment: one complete line that does not parse. Under the lock,
 * with nothing of ours pending: the fragment is truncated away, back to
 * the last newline; where that fails (ftruncate refused, no newline in the
 * last 64 MiB) a newline ends it, so at least our record is a line of its
 * own. A file we cannot read is not checked. */
static int repair_tail(jsonl_sink *s) {
  struct stat st;
  char buf[4096];
  if (!s->regular || !s->readable || s->npending || fstat(s->fd, &st) != 0 || st.st_size == 0) return 0;
  off_t end = st.st_size, pos = end - 1, keep = -1;
  if (pread(s->fd, buf, 1, pos) != 1 || buf[0] == '\n') return 0;
  while (keep < 0 && pos > 0 && end - pos < STATSPROF__REPAIR_SCAN) {
    size_t n = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
    if (pread(s->fd, buf, n, pos - (off_t)n) != (ssize_t)n) break;
    for (size_t i = n; i-- > 0 && keep < 0;)
      if (buf[i] == '\n') keep = pos - (off_t)n + (off_t)i + 1;
    pos -= (off_t)n;
  }
  if (pos == 0 && keep < 0) keep = 0;
  if (keep >= 0 && ftruncate(s->fd, keep) == 0) return 0;
  if (statsprof__write_some(s->fd, "\n", 1, 0) == 1) return 0;
  return fail(s, "a cut line could not be ended, this record is dropped: cannot write to", errno);
}

/* The record, into the locked file at PATH. */
static int write_record(jsonl_sink *s, const char *line, size_t len) {
  struct stat st;
  off_t start = s->regular && fstat(s->fd, &st) == 0 ? st.st_size : -1;
  size_t n = write_part(s, line, len);
  if (n == len) return 0;
  int e = errno;
  /* Cut short. A regular file loses the cut part at once, if nobody
   * appended behind it (writers that do not lock); otherwise its end waits
   * for the next chance, in this file. */
  if (start >= 0 && fstat(s->fd, &st) == 0 && st.st_size == start + (off_t)n && ftruncate(s->fd, start) == 0)
    n = len;
  if (n < len && n > 0 && (s->pending = statsprof__malloc(len - n)) != NULL) {
    memcpy(s->pending, line + n, len - n);
    s->npending = len - n;
  }
  return fail(s, "cannot write to", e);
}

/* Due for rotation before this record? Regular files only. */
static int full(const jsonl_sink *s, size_t len) {
  struct stat st;
  return s->regular && s->opt.max_bytes && fstat(s->fd, &st) == 0 && st.st_size > 0 &&
         (uint64_t)st.st_size + len > s->opt.max_bytes;
}

/* In a forked child, what its copy of the sink holds is the parent's:
 * the descriptor and its lock (an unlock would be the parent's), a cut
 * record's end (the parent finishes it), and the descriptors open_file had
 * in hand if the fork came while it ran (O_CLOEXEC closes them only at an
 * exec). The descriptors go at once, in the child's atfork handler
 * (statsprof__jsonl_forked): left for the child's first record, they
 * could be numbers the child has closed and reused for files of its own
 * by then (a daemon closing every descriptor after fork), which that
 * record would close. */
static void close_parents_fds(jsonl_sink *s) {
  for (int i = 0; i < 2; i++)
    if (s->opening[i] == s->fd) s->opening[i] = -1; /* forked as open_file ended */
  drop_opening(s, 0);
  drop_opening(s, 1);
  if (s->fd >= 0 && s->pid != getpid()) close_file(s);
}

void statsprof__jsonl_forked(const statsprof__sink *sink) {
  if (sink->ops == &jsonl_ops) close_parents_fds(sink->ctx);
}

/* The rest at the child's first record, or at close (no allocator calls
 * in an atfork handler: the host's allocator may hold a lock there); and
 * all of it for a sink no writer holds (tests open one directly). Only a
 * child finds s->opening set here: emits of one sink never overlap. */
static void forget_parents(jsonl_sink *s) {
  close_parents_fds(s);
  if (s->fd < 0 && s->npending && s->pid != getpid()) drop_pending(s);
}

static int jsonl_emit(void *ctx, const statsprof_stats_profile *rec) {
  jsonl_sink *s = ctx;
  char *line;
  size_t len;
  int rc = s->format(rec, &line, &len);
  if (rc) return rc;
  forget_parents(s);
  if (atomic_exchange(&s->reopen, 0)) leave_file(s);
  /* Until we hold the lock of the file that is at PATH (other writers may
   * rotate it meanwhile): each lock wait has the stall limit, and PATH may
   * be followed a bounded number of times. */
  int64_t start = statsprof__mono_ns();
  int rotations = 0, follows = 0;
  for (;;) {
    if (s->fd < 0 && open_file(s) != 0) {
      rc = fail(s, "cannot open for appending", errno);
      break;
    }
    int locked = lock_file(s->fd);
    if (locked < 0 && errno == ETIMEDOUT) {
      statsprof__sink_fail("'%s' stayed locked by another writer for 1 s", s->qpath);
      rc = STATSPROF_EIO;
      break;
    }
    if (locked < 0) {
      rc = fail(s, "cannot lock", errno);
      break;
    }
    if (path_moved(s)) { /* another writer rotated PATH, or logrotate moved it: follow */
      leave_file(s);     /* and its lock */
      /* Each follow is a rotation another writer finished, and a writer
       * preempted between its open and its lock follows several on a
       * loaded machine (a 1 s limit failed a test there). Given up on: a
       * PATH replaced again and again without end, or for a long time. */
      follows++;
      int64_t took_ms = (statsprof__mono_ns() - start) / 1000000;
      if (follows >= STATSPROF__MAX_FOLLOWS || (follows >= 8 && took_ms > 5 * STATSPROF__STALL_MS)) {
        statsprof__sink_fail("'%s' was replaced %d times in %lld ms while a record waited", s->qpath,
                             follows, (long long)took_ms);
        rc = STATSPROF_EIO;
        break;
      }
      continue;
    }
    /* A cut record's end comes first; while it cannot be written, records
     * are dropped rather than written after half a line. */
    rc = finish_pending(s);
    if (!rc && locked == 0) rc = repair_tail(s); /* unlocked, the fragment may be a live write */
    if (!rc && rotations < 8 && full(s, len)) {
      /* Rotated under our lock; then PATH is opened afresh, as above. */
      if (rotate_names(s) == 0) {
        rotations++;
        leave_file(s);
        continue;
      }
      rc = STATSPROF_EIO; /* rotate_names said why */
      int wrc = write_record(s, line, len); /* into this file all the same */
      if (wrc) rc = wrc;
    } else if (!rc) {
      rc = write_record(s, line, len);
    }
    /* A cut record's start is in the file: the lock stays ours until its
     * end is written (or the file is left), so no other writer appends to
     * the half line; they time out and drop, as for any busy lock. */
    if (locked == 0 && !s->npending) flock(s->fd, LOCK_UN);
    break;
  }
  statsprof__free(line);
  return rc;
}

static void jsonl_reopen(void *ctx) { atomic_store(&((jsonl_sink *)ctx)->reopen, 1); }

static void jsonl_close(void *ctx) {
  jsonl_sink *s = ctx;
  forget_parents(s);
  leave_file(s);
  statsprof__free(s);
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
  /* Resolved now: a host that chdirs later (a daemon's chdir("/")) must
   * not move PATH, which is looked up again at every record. */
  char *abs = statsprof__absolute_path(path, plen, "file", err, errlen);
  if (!abs) return errno == ENOMEM ? STATSPROF_ENOMEM : STATSPROF_EIO;
  plen = strlen(abs);
  jsonl_sink *s = statsprof__calloc(1, sizeof *s + plen + 1);
  if (!s) {
    statsprof__free(abs);
    statsprof__msg(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  memcpy(s->path, abs, plen);
  statsprof__free(abs);
  statsprof__quote(s->qpath, sizeof s->qpath, s->path, plen, STATSPROF__QUOTE_PATH);
  s->opt = opt;
  s->format = opt.rows ? statsprof_format_jsonl_rows : statsprof_format_jsonl;
  atomic_init(&s->reopen, 0);
  s->opening[0] = s->opening[1] = -1;
  if (open_file(s) != 0) {
    int e = errno;
    statsprof__msg(err, errlen, "cannot open '%s' for appending: %s", s->qpath,
                   e == ENOMEM ? "out of memory" : strerror(e));
    statsprof__free(s);
    return e == ENOMEM ? STATSPROF_ENOMEM : STATSPROF_EIO;
  }
  *ops = &jsonl_ops;
  *ctx = s;
  return 0;
}
