/* sinks/files.c — file helpers the sinks share: whole writes, directories
 * made on demand, and records published atomically (written to a hidden
 * temporary name, then renamed, or linked, into place, so a reader never
 * sees half a file and no record replaces another). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"

/* Polls fd for room, within what is left of the stall budget (at least
 * once, even with none left). A signal (EINTR) is not a stall: the poll
 * goes on with what is left. */
static int wait_writable(int fd, int64_t *left_ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  int r;
  do {
    int64_t t0 = statsprof__mono_ns();
    r = poll(&pfd, 1, *left_ms > 0 ? (int)*left_ms : 0);
    *left_ms -= (statsprof__mono_ns() - t0) / 1000000 + 1;
  } while (r < 0 && errno == EINTR && *left_ms > 0);
  return r > 0 ? 0 : -1;
}

static atomic_int g_zero_writes;

void statsprof__zero_writes(int n) { atomic_store(&g_zero_writes, n); }

/* A test asked for this write to take nothing. */
static int zero_write_due(void) {
  int zeros = atomic_load_explicit(&g_zero_writes, memory_order_relaxed);
  while (zeros > 0)
    if (atomic_compare_exchange_weak(&g_zero_writes, &zeros, zeros - 1)) return 1;
  return 0;
}

/* write(2), or 0 while a test asks for writes that take nothing. */
static ssize_t write_or_zero(int fd, const char *data, size_t len) {
  return zero_write_due() ? 0 : write(fd, data, len);
}

/* How much of a write to a blocking terminal goes in one write(2) (see
 * write_blocking_fd). */
#define STATSPROF__TTY_CHUNK 64

/* One write to a blocking pipe or terminal we could not open again
 * non-blocking (STATSPROF__OUT_POLL), which has just polled writable, sized
 * so that it should not block; 0 when nothing can go in now.
 *   - A pipe: RWF_NOWAIT makes this one write non-blocking (Linux 5.8+ for
 *     pipes), so concurrent writers cannot make it block. Where the kernel
 *     refuses it (EOPNOTSUPP), at most the free space, F_GETPIPE_SZ minus
 *     FIONREAD, and at most PIPE_BUF: with a free page (poll said so) such
 *     a write does not block. Remaining risk, on those kernels only: another
 *     writer fills the pipe between the check and the write.
 *   - A terminal (RWF_NOWAIT is refused there): its room cannot be known
 *     (TIOCOUTQ is 0 for a pseudo-terminal however full), and a write
 *     larger than the room blocks. A terminal polls writable only with
 *     room left and not stopped (Ctrl-S), so only a small chunk is written
 *     after each poll. Remaining risk: less room than the chunk (plus a
 *     CR for each LF) left, a Ctrl-S or another writer between the poll
 *     and the write; then the write blocks until the terminal reads. */
static ssize_t write_blocking_fd(int fd, const char *data, size_t len) {
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
#ifdef RWF_NOWAIT /* glibc 2.27+ */
    struct iovec v = {(void *)data, len};
    ssize_t n = zero_write_due() ? 0 : pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
    if (n >= 0 || errno != EOPNOTSUPP) return n;
#endif
    int cap = fcntl(fd, F_GETPIPE_SZ), queued = 0;
    if (cap < 0 || ioctl(fd, FIONREAD, &queued) != 0) return -1;
    size_t room = cap > queued ? (size_t)(cap - queued) : 0;
    if (room > PIPE_BUF) room = PIPE_BUF;
    return room ? write_or_zero(fd, data, len < room ? len : room) : 0;
  }
  return write_or_zero(fd, data, len < STATSPROF__TTY_CHUNK ? len : STATSPROF__TTY_CHUNK);
}

size_t statsprof__write_fd(int fd, int how, const char *data, size_t len, int stall_ms) {
  /* A reader that went away raises SIGPIPE, and a write past RLIMIT_FSIZE
   * SIGXFSZ; either would kill the host (their default action): block both
   * here (the write then fails with EPIPE or EFBIG) and take back the one
   * this write caused. */
  sigset_t block_set, old;
  sigemptyset(&block_set);
  sigaddset(&block_set, SIGPIPE);
  sigaddset(&block_set, SIGXFSZ);
  pthread_sigmask(SIG_BLOCK, &block_set, &old);
  size_t done = 0;
  int err = 0;
  int64_t left_ms = stall_ms;
  while (done < len) {
    ssize_t n;
    if (how == STATSPROF__OUT_SEND) {
      n = send(fd, data + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else if (how == STATSPROF__OUT_POLL) {
      if (wait_writable(fd, &left_ms) != 0) {
        err = ETIMEDOUT;
        break;
      }
      n = write_blocking_fd(fd, data + done, len - done);
    } else {
      n = write_or_zero(fd, data + done, len - done);
    }
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    /* Nothing taken and no error (a device or FUSE file system may do
     * that): no progress, like EAGAIN, so it spends the stall budget
     * instead of looping for ever. */
    if (n == 0) errno = EAGAIN;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (left_ms > 0 && wait_writable(fd, &left_ms) == 0) continue;
      err = ETIMEDOUT;
      break;
    }
    err = errno;
    break;
  }
  if (err == EPIPE || err == EFBIG) {
    sigset_t raised;
    struct timespec zero = {0, 0};
    sigemptyset(&raised);
    sigaddset(&raised, err == EPIPE ? SIGPIPE : SIGXFSZ);
    sigtimedwait(&raised, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return done;
}

size_t statsprof__write_some(int fd, const char *data, size_t len, int stall_ms) {
  return statsprof__write_fd(fd, STATSPROF__OUT_WRITE, data, len, stall_ms);
}

void statsprof__stderr_refresh(statsprof__stderr_out *o) {
  struct stat st;
  /* A forked child's copy of our descriptor: by now the number may be the
   * child's own file (a daemon closes what it inherited and opens its
   * own), so it is forgotten, not closed or written. */
  if (o->own && o->pid != getpid()) {
    o->fd = -1;
    o->own = 0;
  }
  if (fstat(2, &st) != 0) {
    statsprof__stderr_close(o);
    return; /* no fd 2: writes fail with EBADF */
  }
  /* Our own non-blocking open stays right while fd 2 is that file. fd 2
   * itself is looked at again each time: the host may have set or cleared
   * its O_NONBLOCK since (a blocking pipe written as if non-blocking would
   * block the host). */
  if (o->own && o->dev == st.st_dev && o->ino == st.st_ino) return;
  statsprof__stderr_close(o);
  o->dev = st.st_dev;
  o->ino = st.st_ino;
  o->fd = 2;
  o->how = STATSPROF__OUT_WRITE; /* files and devices that do not block on a reader */
  if (S_ISSOCK(st.st_mode)) {
    o->how = STATSPROF__OUT_SEND; /* journald's socket: MSG_DONTWAIT per call */
  } else if ((S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) && !(fcntl(2, F_GETFL) & O_NONBLOCK)) {
    /* Setting O_NONBLOCK on fd 2 would change it for the host too (the
     * flag belongs to the open file, shared by dups): open the same pipe
     * or terminal again, non-blocking, for ourselves. */
    int fd = statsprof__open_file("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd >= 0) {
      o->fd = fd;
      o->own = 1;
      o->pid = getpid();
    } else {
      o->how = STATSPROF__OUT_POLL;
    }
  }
}

void statsprof__stderr_close(statsprof__stderr_out *o) {
  if (o->own) close(o->fd);
  o->fd = -1;
  o->own = 0;
}

int statsprof__open_file(const char *path, int flags, mode_t mode) {
  int fd = open(path, flags | O_CLOEXEC, mode);
  if (fd < 0 || fd > 2) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int e = errno;
  close(fd);
  errno = e;
  return high;
}

int statsprof__write_all(int fd, const char *data, size_t len) {
  return statsprof__write_some(fd, data, len, STATSPROF__STALL_MS) == len ? 0 : -1;
}

/* mkdir -p of `path`, or of its directory part when `parent_only`. */
static int make_dirs(const char *path, int parent_only) {
  char *d = statsprof__strdup(path);
  if (!d) {
    errno = ENOMEM;
    return -1;
  }
  int rc = 0;
  for (char *s = d + 1; rc == 0; s++) {
    if (*s && *s != '/') continue;
    if (!*s && parent_only) break;
    char c = *s;
    *s = 0;
    if (mkdir(d, 0777) != 0 && errno != EEXIST) rc = -1;
    *s = c;
    if (!c) break;
  }
  if (!rc && !parent_only) {
    /* EEXIST above may have been a file: check what is there now. */
    struct stat st;
    if (stat(path, &st) != 0) rc = -1;
    else if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      rc = -1;
    }
  }
  int e = errno;
  statsprof__free(d);
  errno = e;
  return rc;
}

int statsprof__mkdir_parents(const char *file) { return make_dirs(file, 1); }

char *statsprof__absolute_path(const char *path, size_t len, const char *what, char *err, size_t errlen) {
  if (len && path[0] == '/') {
    char *p = statsprof__strndup(path, len);
    if (!p) {
      statsprof__msg(err, errlen, "out of memory");
      errno = ENOMEM;
    }
    return p;
  }
  char *cwd = NULL;
  int e = 0;
  for (size_t n = 4096; !cwd && n <= (1u << 20); n *= 4) {
    if (!(cwd = statsprof__malloc(n + len + 2))) {
      e = ENOMEM;
      break;
    }
    if (getcwd(cwd, n)) break;
    e = errno;
    statsprof__free(cwd);
    cwd = NULL;
    if (e != ERANGE) break;
  }
  if (!cwd) {
    char q[STATSPROF__QUOTE_PATH + 1];
    statsprof__quote(q, sizeof q, path, len, STATSPROF__QUOTE_PATH);
    if (e == ENOMEM) statsprof__msg(err, errlen, "out of memory");
    else statsprof__msg(err, errlen, "%s '%s' is relative, and the current directory is unknown (getcwd: %s)", what, q,
                        strerror(e));
    errno = e;
    return NULL;
  }
  size_t c = strlen(cwd);
  if (c > 1) cwd[c++] = '/'; /* "/" already ends in one */
  memcpy(cwd + c, path, len);
  cwd[c + len] = 0;
  return cwd;
}

/* A fresh hidden file in dir; its name in `path`. */
static int open_tmp(statsprof__record_dir *d, char *path, size_t n) {
  for (int tries = 0; tries < 100; tries++) {
    snprintf(path, n, "%s/.statsprof-%s-%ld-%u.tmp", d->path, d->tag, (long)getpid(), d->tmp_counter++);
    int fd = statsprof__open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

int statsprof__record_dir_open(statsprof__record_dir *d, const char *arg, const char *tag, char *err,
                               size_t errlen) {
  d->path = NULL;
  d->tag = tag;
  d->tmp_counter = 0;
  const char *dir;
  size_t len;
  int rc = statsprof__sink_args(arg, NULL, NULL, &dir, &len, err, errlen);
  if (rc) return rc;
  if (!len) {
    statsprof__msg(err, errlen, "needs a directory (sink=%s:DIR)", tag);
    return STATSPROF_ECONFIG;
  }
  while (len > 1 && dir[len - 1] == '/') len--;
  /* Resolved now: a host that chdirs later must not move DIR. */
  if (!(d->path = statsprof__absolute_path(dir, len, "directory", err, errlen)))
    return errno == ENOMEM ? STATSPROF_ENOMEM : STATSPROF_EIO;
  len = strlen(d->path);
  if (len > 3000) {
    statsprof__msg(err, errlen, "directory name is too long (%zu bytes)", len);
    statsprof__record_dir_close(d);
    return STATSPROF_ECONFIG;
  }
  /* Fail now, not at the first record: create the directory and prove we
   * can make files in it (access() would not tell for root or read-only
   * mounts). */
  char probe[4096];
  int fd = -1;
  if (make_dirs(d->path, 0) != 0 || (fd = open_tmp(d, probe, sizeof probe)) < 0) {
    int e = errno;
    char q[STATSPROF__QUOTE_PATH + 1];
    statsprof__quote(q, sizeof q, d->path, len, STATSPROF__QUOTE_PATH);
    statsprof__msg(err, errlen, "cannot write profiles into directory '%s': %s", q,
                   e == ENOMEM ? "out of memory" : strerror(e));
    statsprof__record_dir_close(d);
    return e == ENOMEM ? STATSPROF_ENOMEM : STATSPROF_EIO;
  }
  close(fd);
  unlink(probe);
  return 0;
}

void statsprof__record_dir_close(statsprof__record_dir *d) {
  statsprof__free(d->path);
  d->path = NULL;
}

/* Moves tmp into place without replacing another record of the same name
 * (two profilers in one process share seq and pid): base+suffix, then
 * base SEP 2 suffix, base SEP 3 suffix, ... */
static int publish(const char *tmp, const char *base, char sep, const char *suffix) {
  char path[4096];
  for (int k = 1; k < 1000; k++) {
    if (k == 1) snprintf(path, sizeof path, "%s%s", base, suffix);
    else snprintf(path, sizeof path, "%s%c%d%s", base, sep, k, suffix);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EEXIST) continue;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    /* A file system without RENAME_NOREPLACE (NFS, FUSE): a plain rename
     * would replace an existing record; link() refuses to. */
    if (link(tmp, path) == 0) {
      unlink(tmp);
      return 0;
    }
    if (errno == EEXIST) continue;
    return -1;
  }
  errno = EEXIST;
  return -1;
}

void statsprof__record_kind_tag(char *out, size_t n, const statsprof_stats_profile *rec) {
  if (rec->kind == STATSPROF_RECORD_SPIKE) snprintf(out, n, "-spike%llu", (unsigned long long)rec->frame);
  else if (rec->thread_id) snprintf(out, n, "-thread%llu", (unsigned long long)rec->thread_id);
  else if (n) out[0] = 0;
}

int statsprof__record_dir_write(statsprof__record_dir *d, const char *base, char sep, const char *suffix,
                                const statsprof__buf *b) {
  char tmp[4096], q[STATSPROF__QUOTE_PATH + 1];
  int fd = open_tmp(d, tmp, sizeof tmp);
  /* DIR removed under us (a tmp cleaner): make it again, once. */
  if (fd < 0 && errno == ENOENT && make_dirs(d->path, 0) == 0) fd = open_tmp(d, tmp, sizeof tmp);
  if (fd < 0) {
    int e = errno;
    statsprof__quote(q, sizeof q, d->path, strlen(d->path), STATSPROF__QUOTE_PATH);
    statsprof__sink_fail("cannot create a file in '%s': %s", q, strerror(e));
    return STATSPROF_EIO;
  }
  int ok = statsprof__write_all(fd, b->data, b->len) == 0;
  int e = errno;
  if (close(fd) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && publish(tmp, base, sep, suffix) == 0) return 0;
  if (ok) e = errno;
  unlink(tmp);
  /* Named as the record's file, not the temporary one, gone by now. */
  char dest[4096];
  snprintf(dest, sizeof dest, "%s%s", base, suffix);
  statsprof__quote(q, sizeof q, dest, strlen(dest), STATSPROF__QUOTE_PATH);
  statsprof__sink_fail("cannot %s '%s': %s", ok ? "publish (rename into place)" : "write", q, strerror(e));
  return STATSPROF_EIO;
}
