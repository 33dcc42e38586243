/* sinks/pstats.c — one file per record, in the format of
 * cProfile.Profile.dump_stats, so `pstats.Stats(path)`, snakeviz, gprof2dot
 * and friends read our records as they read cProfile's.
 *
 * dump_stats is marshal.dump of
 *   {(file, line, name): (cc, nc, tt, ct, {caller_key: (nc, cc, tt, ct)})}
 * Sinks run without the GIL, so the marshal bytes are written by hand: a
 * small subset of marshal version 4 (dicts, tuples, ints, binary floats and
 * strings, no back-references), which every Python since 3.4 loads.
 *
 * Each file is written under a hidden temporary name and renamed into place,
 * so a reader polling DIR never sees a partial file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../internal.h"

typedef struct pstats_sink {
  unsigned tmp_counter; /* keeps temporary names unique within the process */
  char dir[];
} pstats_sink;

/* ---- marshal, version 4 subset ----------------------------------------- */

static void put_u8(statsprof__buf *b, unsigned v) {
  char c = (char)v;
  statsprof__buf_put(b, &c, 1);
}

static void put_le32(statsprof__buf *b, uint32_t v) {
  char c[4] = {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
  statsprof__buf_put(b, c, 4);
}

/* Counts are unsigned 64-bit; marshal's 'i' holds a signed 32-bit value and
 * anything larger is a 'l': base 2**15 digits, least significant first. */
static void put_uint(statsprof__buf *b, uint64_t v) {
  if (v <= INT32_MAX) {
    put_u8(b, 'i');
    put_le32(b, (uint32_t)v);
    return;
  }
  uint16_t digits[5];
  uint32_t n = 0;
  for (; v; v >>= 15) digits[n++] = (uint16_t)(v & 0x7fff);
  put_u8(b, 'l');
  put_le32(b, n);
  for (uint32_t i = 0; i < n; i++) {
    char c[2] = {(char)digits[i], (char)(digits[i] >> 8)};
    statsprof__buf_put(b, c, 2);
  }
}

static void put_int(statsprof__buf *b, int v) {
  put_u8(b, 'i');
  put_le32(b, (uint32_t)v);
}

static void put_float(statsprof__buf *b, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  put_u8(b, 'g');
  put_le32(b, (uint32_t)bits);
  put_le32(b, (uint32_t)(bits >> 32));
}

/* Length of the valid UTF-8 sequence at s, or 0. Surrogates and overlong
 * forms are invalid: marshal.load would refuse or mangle them. */
static size_t utf8_seq(const unsigned char *s) {
  if (s[0] < 0x80) return 1;
  size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
  if (n == 0 || s[0] > 0xf4) return 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
  if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
  return n;
}

/* Labels are UTF-8 from the hook, but a record may come from elsewhere:
 * invalid bytes become "\xNN", as the hook's backslashreplace would write. */
static void put_str(statsprof__buf *b, const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t len = strlen(s);
  int ascii = 1, valid = 1;
  for (size_t i = 0, n; i < len; i += n ? n : 1) {
    n = utf8_seq(u + i);
    ascii &= n == 1;
    valid &= n != 0;
  }
  if (ascii && len < 256) {
    put_u8(b, 'z');
    put_u8(b, (unsigned)len);
    statsprof__buf_put(b, s, len);
    return;
  }
  if (valid) {
    put_u8(b, ascii ? 'a' : 'u');
    put_le32(b, (uint32_t)len);
    statsprof__buf_put(b, s, len);
    return;
  }
  statsprof__buf fixed = {0};
  for (size_t i = 0, n; i < len; i += n ? n : 1) {
    n = utf8_seq(u + i);
    if (n) statsprof__buf_put(&fixed, s + i, n);
    else statsprof__buf_printf(&fixed, "\\x%02x", u[i]);
  }
  if (fixed.oom) b->oom = 1;
  else put_str(b, fixed.data);
  free(fixed.data);
}

static void put_key(statsprof__buf *b, const char *file, int line, const char *name) {
  put_u8(b, ')');
  put_u8(b, 3);
  put_str(b, file);
  put_int(b, line);
  put_str(b, name);
}

/* The whole record as marshal.dumps(cProfile_stats). */
static void put_stats(statsprof__buf *b, const statsprof_stats_profile *rec) {
  put_u8(b, '{');
  for (size_t i = 0; i < rec->nfunc_profiles; i++) {
    const statsprof_function_profile *f = &rec->func_profiles[i];
    put_key(b, f->file_name, f->line_number, f->function_name);
    /* A function is (primitive, total, ...); its callers are the reverse. */
    put_u8(b, ')');
    put_u8(b, 5);
    put_uint(b, f->primitive_calls);
    put_uint(b, f->ncalls);
    put_float(b, f->tottime);
    put_float(b, f->cumtime);
    put_u8(b, '{');
    for (size_t j = 0; j < f->ncallers; j++) {
      const statsprof_caller_profile *c = &f->callers[j];
      put_key(b, c->file_name, c->line_number, c->function_name);
      put_u8(b, ')');
      put_u8(b, 4);
      put_uint(b, c->ncalls);
      put_uint(b, c->primitive_calls);
      put_float(b, c->tottime);
      put_float(b, c->cumtime);
    }
    put_u8(b, '0');
  }
  put_u8(b, '0');
}

/* ---- files ------------------------------------------------------------- */

static int mkdir_p(const char *dir) {
  char *d = strdup(dir);
  if (!d) return -1;
  int rc = 0;
  for (char *s = d + 1;; s++) {
    if (*s && *s != '/') continue;
    char c = *s;
    *s = 0;
    if (mkdir(d, 0777) != 0 && errno != EEXIST) rc = -1;
    *s = c;
    if (rc || !c) break;
  }
  if (!rc) {
    /* EEXIST above may have been a file: check what is there now. */
    struct stat st;
    if (stat(dir, &st) != 0) rc = -1;
    else if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      rc = -1;
    }
  }
  int e = errno;
  free(d);
  errno = e;
  return rc;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Creates a fresh hidden file in the sink's directory; its name in `path`. */
static int open_tmp(pstats_sink *s, char *path, size_t n) {
  for (int tries = 0; tries < 100; tries++) {
    snprintf(path, n, "%s/.statsprof-%ld-%u.tmp", s->dir, (long)getpid(), s->tmp_counter++);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/* Moves tmp into place without replacing another record of the same second
 * (two profilers in one process share seq and pid): "-2", "-3", ... then. */
static int publish(const char *tmp, const char *base) {
  char path[4096];
  for (int k = 1; k < 1000; k++) {
    if (k == 1) snprintf(path, sizeof path, "%s.prof", base);
    else snprintf(path, sizeof path, "%s-%d.prof", base, k);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EEXIST) continue;
    /* A file system without RENAME_NOREPLACE: plain rename. */
    if (errno == EINVAL || errno == ENOSYS) return rename(tmp, path);
    return -1;
  }
  return -1;
}

/* DIR/statsprof-<seq>-<UTC end time>-<pid>, without the ".prof". */
static void record_base(char *out, size_t n, const char *dir, const statsprof_stats_profile *rec) {
  time_t secs = (time_t)(rec->end_ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(out, n, "%s/statsprof-%06llu-%04d%02d%02dT%02d%02d%02dZ-%lld", dir,
           (unsigned long long)rec->seq, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (long long)rec->pid);
}

static int write_file(pstats_sink *s, const char *base, const statsprof__buf *b) {
  char tmp[4096];
  int fd = open_tmp(s, tmp, sizeof tmp);
  /* DIR removed under us (a tmp cleaner): make it again, once. */
  if (fd < 0 && errno == ENOENT && mkdir_p(s->dir) == 0) fd = open_tmp(s, tmp, sizeof tmp);
  if (fd < 0) return STATSPROF_EIO;
  int ok = write_all(fd, b->data, b->len) == 0;
  ok &= close(fd) == 0;
  if (ok && publish(tmp, base) == 0) return 0;
  unlink(tmp);
  return STATSPROF_EIO;
}

static int pstats_emit(void *ctx, const statsprof_stats_profile *rec) {
  pstats_sink *s = ctx;
  /* pstats.Stats refuses an empty dict, and an idle host would fill DIR
   * with them; the gap in seq still shows the interval. */
  if (rec->nfunc_profiles == 0) return 0;
  statsprof__buf b = {0};
  put_stats(&b, rec);
  int rc = STATSPROF_ENOMEM;
  if (!b.oom) {
    char base[4096];
    record_base(base, sizeof base, s->dir, rec);
    rc = write_file(s, base, &b);
  }
  free(b.data);
  return rc;
}

static void pstats_close(void *ctx) { free(ctx); }

static const statsprof_sink_ops pstats_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "pstats",
    .emit = pstats_emit,
    .flush = NULL,
    .close = pstats_close,
};

int statsprof__pstats_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                           size_t errlen) {
  if (!arg) {
    snprintf(err, errlen, "needs a directory (sink=pstats:DIR)");
    return STATSPROF_ECONFIG;
  }
  size_t len = strlen(arg);
  while (len > 1 && arg[len - 1] == '/') len--;
  if (len > 3000) {
    snprintf(err, errlen, "directory name is too long (%zu bytes)", len);
    return STATSPROF_ECONFIG;
  }
  pstats_sink *s = malloc(sizeof *s + len + 1);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  s->tmp_counter = 0;
  memcpy(s->dir, arg, len);
  s->dir[len] = 0;
  /* Fail now, not at the first record: create the directory and prove we
   * can make files in it (access() would not tell for root or read-only
   * mounts). */
  char probe[4096];
  int fd = -1;
  if (mkdir_p(s->dir) != 0 || (fd = open_tmp(s, probe, sizeof probe)) < 0) {
    snprintf(err, errlen, "cannot write profiles into directory '%s': %s", s->dir, strerror(errno));
    free(s);
    return STATSPROF_EIO;
  }
  close(fd);
  unlink(probe);
  *ops = &pstats_ops;
  *ctx = s;
  return 0;
}
