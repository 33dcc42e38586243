/* sinks/jsonl.c — one JSON object per line, appended with one write() per
 * record and no user-space buffering, so a log shipper tailing the file sees
 * whole lines and a crash leaves only whole lines behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"

typedef struct jsonl_sink {
  int fd;
  char path[];
} jsonl_sink;

/* mkdir -p of the file's directory, so "out/prof.jsonl" works on a fresh tree. */
static int make_parents(const char *path) {
  char *d = strdup(path);
  if (!d) return -1;
  for (char *s = d + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(d, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      free(d);
      errno = e;
      return -1;
    }
    *s = '/';
  }
  free(d);
  return 0;
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

static int jsonl_emit(void *ctx, const statsprof_stats_profile *rec) {
  jsonl_sink *s = ctx;
  char *line;
  size_t len;
  int rc = statsprof_format_jsonl(rec, &line, &len);
  if (rc) return rc;
  rc = write_all(s->fd, line, len) ? STATSPROF_EIO : 0;
  free(line);
  return rc;
}

static void jsonl_close(void *ctx) {
  jsonl_sink *s = ctx;
  close(s->fd);
  free(s);
}

static const statsprof_sink_ops jsonl_ops = {
    .version = STATSPROF_SINK_VERSION,
    .name = "jsonl",
    .emit = jsonl_emit,
    .flush = NULL,
    .close = jsonl_close,
};

int statsprof__jsonl_open(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err,
                          size_t errlen) {
  if (!arg) {
    snprintf(err, errlen, "needs a file path (sink=jsonl:PATH)");
    return STATSPROF_ECONFIG;
  }
  jsonl_sink *s = malloc(sizeof *s + strlen(arg) + 1);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return STATSPROF_ENOMEM;
  }
  strcpy(s->path, arg);
  if (make_parents(arg) != 0 ||
      (s->fd = open(arg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666)) < 0) {
    snprintf(err, errlen, "cannot open '%s' for appending: %s", arg, strerror(errno));
    free(s);
    return STATSPROF_EIO;
  }
  *ops = &jsonl_ops;
  *ctx = s;
  return 0;
}
