// jsonl_lines_test.cc — the jsonl sink's promise: every complete line
// parses, in every file, rotated or not — after a full disk (a 64 KiB tmpfs
// filled, then freed), a FIFO whose reader stalls (also across a fork), a
// forked child and its parent appending to one PATH while both rotate it,
// a quiet forked child holding descriptors its parent has left, and a child
// forked while the sink opens its file (the file's descriptors not kept).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "pyharness.h"

namespace {

using Lines = pyh::JsonlFile;
Lines Read(const std::string &path) { return pyh::ReadJsonl(path); }

std::string Describe(const std::string &path, const Lines &l) {
  std::string seqs;
  for (auto [pid, seq] : l.ids) seqs += " " + std::to_string(seq);
  return path + ": " + std::to_string(l.lines) + " lines, " + std::to_string(l.bad) + " that do not parse, " +
         std::to_string(l.tail) + " bytes after the last newline, seqs" + seqs + l.error;
}

long long Size(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? (long long)st.st_size : -1;
}

// About 10 KB of JSON per record: long names, 40 functions (n of them).
std::string Program(int n = 40) {
  std::string code, main = "def main():\n";
  for (int i = 0; i < n; i++) {
    code += "def a_function_with_a_rather_long_name_so_records_are_large_" + std::to_string(i) + "(): pass\n";
    main += "  a_function_with_a_rather_long_name_so_records_are_large_" + std::to_string(i) + "()\n";
  }
  return code + main;
}

// Fills the file system of `dir` with a file, then frees one page of it:
// the next record larger than a page is cut short (ENOSPC).
std::string FillAllButAPage(const std::string &filler) {
  int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return "cannot create the filler: " + std::string(strerror(errno));
  std::string chunk(4096, 'f');
  while (write(fd, chunk.data(), chunk.size()) > 0) continue;
  int e = errno;
  struct stat st;
  fstat(fd, &st);
  int rc = ftruncate(fd, st.st_size - 4096);
  close(fd);
  if (e != ENOSPC) return "filling did not end with ENOSPC but " + std::string(strerror(e));
  return rc == 0 ? "" : "ftruncate failed";
}

// Mounts a 64 KiB tmpfs on dir in a private mount namespace (this process
// only: the test runs it in a forked child, so the mount goes with it).
std::string MountSmallTmpfs(const std::string &dir) {
  if (unshare(CLONE_NEWNS) != 0) return "unshare(CLONE_NEWNS): " + std::string(strerror(errno)) + " (needs root)";
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return "making / private: " + std::string(strerror(errno));
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k") != 0)
    return "mount -t tmpfs -o size=64k: " + std::string(strerror(errno)) + " (needs root)";
  return "";
}

// Issue 11, item 6: a record cut by a full disk was glued to the next one.
// The old code failed both scenarios every run: (a) the cut record's end was
// dropped when the disk was still full, and the next record was appended to
// the half line: a complete line that does not parse; (b) with rotation, the
// end was written after rotating, as the first line of the new file, and
// the rotated file ended with the half record.
TEST(JsonlLines, AFullDiskNeverGluesARecordToTheNext) {
  void *ns = pyh::Exec(Program(), "big.py");
  std::string mnt = pyh::TempDir() + "/mnt";
  ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
  std::string problems = child::Run([&] {
    child::Problems pr;
    std::string m = MountSmallTmpfs(mnt);
    if (!m.empty()) return m;
    auto emit = [&](statsprof *p) {
      pyh::Call(ns, "main");
      statsprof_emit_now(p);
    };
    // (a) no rotation: r1 whole, r2 cut, r3 cut (disk still full), r4 whole.
    std::string a = mnt + "/a.jsonl";
    statsprof *p = nullptr;
    if (statsprof_create(("writer=sync;interval=1h;sink=jsonl:" + a).c_str(), &p) || statsprof_start(p))
      return std::string("create a: ") + statsprof_errmsg(nullptr);
    emit(p);
    long long record = Size(a);
    pr.Check(record > 8192 && record < 24576, "records should be 8-24 KiB, are " + std::to_string(record));
    std::string f = FillAllButAPage(mnt + "/filler");
    pr.Check(f.empty(), f);
    emit(p);
    pr.Check(statsprof_sink_errors(p) == 1, "the second record was not cut");
    emit(p);
    pr.Check(statsprof_sink_errors(p) == 2, "the third record was not cut");
    unlink((mnt + "/filler").c_str());
    emit(p);
    pr.Check(statsprof_sink_errors(p) == 2, "the fourth record failed");
    statsprof_destroy(p);
    Lines la = Read(a);
    pr.Check(la.lines == 2 && la.bad == 0 && la.tail == 0 && la.ids.size() == 2 && la.ids[0].second == 1 &&
                 la.ids[1].second == 4,
             "(a) " + Describe(a, la));

    unlink(a.c_str());
    // (b) rotation at 2 records and a sixth: r1 whole, r2 cut, disk freed,
    // r3 must not rotate a half line into the new file.
    std::string b = mnt + "/b.jsonl";
    std::string config = "writer=sync;interval=1h;sink=jsonl:" + b + ",max_bytes=" + std::to_string(2 * record + 1024);
    if (statsprof_create(config.c_str(), &p) || statsprof_start(p))
      return std::string("create b: ") + statsprof_errmsg(nullptr);
    emit(p);
    f = FillAllButAPage(mnt + "/filler");
    pr.Check(f.empty(), f);
    emit(p);
    pr.Check(statsprof_sink_errors(p) == 1, "(b) the second record was not cut");
    unlink((mnt + "/filler").c_str());
    emit(p);
    statsprof_destroy(p);
    std::set<long long> seqs;
    std::string seen;
    for (std::string file : {b, b + ".1"}) {
      if (Size(file) < 0) continue;
      Lines l = Read(file);
      pr.Check(l.bad == 0 && l.tail == 0, "(b) " + Describe(file, l));
      for (auto [pid, seq] : l.ids) seqs.insert(seq);
      seen += "\n  " + Describe(file, l);
    }
    pr.Check(seqs == std::set<long long>{1, 3}, "(b) records 1 and 3 should be whole:" + seen);
    umount2(mnt.c_str(), MNT_DETACH);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// What a FIFO's reader took, written to `out` and read back.
Lines Save(const std::string &got, const std::string &out) {
  FILE *f = fopen(out.c_str(), "wb");
  if (f) {
    fwrite(got.data(), 1, got.size(), f);
    fclose(f);
  }
  return Read(out);
}

// A FIFO and its reader, the pipe full of whole filler lines but for one
// page: the next record larger than a page is cut after the stall limit.
struct StalledFifo {
  std::string path;
  int rfd = -1, wfd = -1, pages = 0;
  std::string got;  // what the reader took
  std::string Open(const std::string &dir) {
    path = dir + "/f";
    if (mkfifo(path.c_str(), 0600) != 0) return "mkfifo: " + std::string(strerror(errno));
    rfd = open(path.c_str(), O_RDONLY | O_NONBLOCK);
    wfd = open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (rfd < 0 || wfd < 0) return "open: " + std::string(strerror(errno));
    std::string page;
    while (page.size() < 4096) page += "{\"filler\": 100}\n";  // 16 bytes: 256 lines a page
    while (write(wfd, page.data(), page.size()) == (ssize_t)page.size()) pages++;
    if (errno != EAGAIN) return "filling: " + std::string(strerror(errno));
    char buf[4096];
    if (read(rfd, buf, sizeof buf) != (ssize_t)sizeof buf) return "reading a page failed";
    got.append(buf, sizeof buf);
    return "";
  }
  void Drain() {
    char buf[65536];
    for (ssize_t n; (n = read(rfd, buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
  }
  // Closes both ends (the writers' must be closed already), writes what
  // the reader took to `out` and reads it back.
  Lines Finish(const std::string &out) {
    close(wfd);
    Drain();
    close(rfd);
    return Save(got, out);
  }
};

// Where the FIFO tests start: a stalled FIFO, a started writer=sync
// profiler writing into it, and its record 1 cut (one page went in, then
// the stall: its end is kept). Start says what failed, "" when all is set.
struct CutFifoRecord {
  void *ns = nullptr;  // Program()
  std::string dir;
  StalledFifo fifo;
  statsprof *p = nullptr;
  std::string Start() {
    ns = pyh::Exec(Program(), "big.py");
    dir = pyh::TempDir();
    std::string e = fifo.Open(dir);
    if (!e.empty()) return e;
    if (statsprof_create(("writer=sync;interval=1h;sink=jsonl:" + fifo.path).c_str(), &p) != 0 ||
        statsprof_start(p) != 0)
      return std::string("create or start: ") + statsprof_errmsg(p);
    pyh::Call(ns, "main");
    if (statsprof_emit_now(p) != 0) return std::string("emit_now: ") + statsprof_errmsg(p);
    if (statsprof_sink_errors(p) != 1) return "record 1 was not cut";
    return "";
  }
};

// Issue 11, item 6, with a FIFO whose reader stalls: the pipe is full but
// for one page, so the next record is cut (after the 1 s stall limit) and
// the one after cannot even start; then the reader takes everything. The
// old code dropped the cut record's end while the pipe was still full and
// glued the next record to the half line (every run). Now the end is kept
// and written first; the record that came while it could not be is
// dropped and counted.
TEST(JsonlLines, AStalledFifoReaderNeverSeesAGluedLine) {
  CutFifoRecord cut;  // record 1: one page went in, then the stall: cut, its end kept
  ASSERT_EQ(cut.Start(), "");
  void *ns = cut.ns;
  StalledFifo &fifo = cut.fifo;
  statsprof *p = cut.p;
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);  // record 2: the cut end cannot be written: dropped
  EXPECT_EQ(statsprof_sink_errors(p), 2u);
  fifo.Drain();  // the reader is back
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);  // record 3: the end of record 1 first, then record 3
  EXPECT_EQ(statsprof_sink_errors(p), 2u);
  statsprof_destroy(p);  // closes its write end
  std::string out = cut.dir + "/got.jsonl";
  Lines l = fifo.Finish(out);
  EXPECT_EQ(l.lines, fifo.pages * 256 + 2) << Describe(out, l);
  EXPECT_EQ(l.bad, 0) << Describe(out, l);
  EXPECT_EQ(l.tail, 0) << Describe(out, l);
  std::vector<long long> seqs;
  for (auto [pid, seq] : l.ids) seqs.push_back(seq);
  EXPECT_EQ(seqs, (std::vector<long long>{1, 3})) << Describe(out, l);
  pyh::Release(ns);
}

// A stall is one file's reader's: after a record cut on a stalled FIFO,
// later writes to it do not wait, but a file opened next must wait for its
// own reader again. The old code kept the stall across statsprof_reopen:
// into a new FIFO whose reader takes a record larger than the pipe slowly
// but steadily, the record was cut as soon as the pipe was full (every run).
TEST(JsonlLines, AFileOpenedAfterAStallWaitsForItsReaderAgain) {
  CutFifoRecord cut;  // record 1: cut by the stall; later writes there do not wait
  ASSERT_EQ(cut.Start(), "");
  statsprof *p = cut.p;
  // PATH is a new FIFO now, read 4 KiB at a time with pauses between.
  ASSERT_EQ(unlink(cut.fifo.path.c_str()), 0);
  ASSERT_EQ(mkfifo(cut.fifo.path.c_str(), 0600), 0);
  int rfd = open(cut.fifo.path.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(rfd, 0) << strerror(errno);
  ASSERT_EQ(fcntl(rfd, F_SETFL, 0), 0);  // blocking reads from here on
  std::atomic<bool> closed{false};       // the sink's end is closed: EOF is final
  std::string got;
  std::thread reader([&] {
    char buf[4096];
    for (;;) {
      ssize_t n = read(rfd, buf, sizeof buf);
      if (n > 0) got.append(buf, (size_t)n);
      else if (n == 0 && closed) break;
      if (n < 0 && errno != EINTR) break;
      usleep(5000);
    }
  });
  void *big = pyh::Exec(Program(400), "bigger.py");  // a record of well over 64 KiB
  pyh::Call(big, "main");
  ASSERT_EQ(statsprof_reopen(p), 0);
  ASSERT_EQ(statsprof_emit_now(p), 0);  // record 2, into the new FIFO
  EXPECT_EQ(statsprof_sink_errors(p), 1u) << "record 2 was cut: the stall outlived its file";
  statsprof_destroy(p);  // closes its write end
  closed = true;
  reader.join();
  close(rfd);
  cut.fifo.Finish(cut.dir + "/old.jsonl");
  std::string out = cut.dir + "/got.jsonl";
  Lines l = Save(got, out);
  EXPECT_GT(got.size(), 65536u) << Describe(out, l);
  EXPECT_EQ(l.lines, 1) << Describe(out, l);
  EXPECT_EQ(l.bad, 0) << Describe(out, l);
  EXPECT_EQ(l.tail, 0) << Describe(out, l);
  EXPECT_EQ(l.ids, (std::vector<std::pair<long long, long long>>{{getpid(), 2}})) << Describe(out, l);
  pyh::Release(big);
  pyh::Release(cut.ns);
}

// A pause inside the jsonl sink's open_file, for a fork to come there: the
// test binary's fstat comes before libc's for the library (linked in
// statically), and the Nth fstat of the armed inode waits for the test.
// The asm name: Python.h's _FILE_OFFSET_BITS makes this file's `fstat`
// glibc's fstat64, while the library calls fstat.
struct FstatPause {
  std::atomic<ino_t> ino{0};
  std::atomic<int> left{0};
  int inside[2] = {-1, -1}, release[2] = {-1, -1};
};
FstatPause g_fstat_pause;

extern "C" int StatsprofTestFstat(int fd, struct stat *st) __asm__("fstat");
extern "C" int StatsprofTestFstat(int fd, struct stat *st) {
  using Fstat = int (*)(int, struct stat *);
  static Fstat real = reinterpret_cast<Fstat>(dlsym(RTLD_NEXT, "fstat"));
  int rc = real(fd, st);
  FstatPause &f = g_fstat_pause;
  if (rc == 0 && f.ino && st->st_ino == f.ino && --f.left == 0) {
    f.ino = 0;  // once, and never in a child forked while paused
    char c = 'i';
    if (write(f.inside[1], &c, 1) == 1 && read(f.release[0], &c, 1) == 1) return rc;
  }
  return rc;
}

// This process's descriptors of the file `st` names.
int DescriptorsOf(const struct stat &st) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d)) != nullptr;) {
    struct stat fst;
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != dirfd(d) && fstat(fd, &fst) == 0 && fst.st_dev == st.st_dev &&
        fst.st_ino == st.st_ino)
      n++;
  }
  closedir(d);
  return n;
}

// The host forks while the writer thread is inside the jsonl sink's
// open_file, reopening PATH, with both descriptors it opens there still in
// its hands (the file's second fstat). The child's copy of the sink has no
// file yet, but the child holds copies of both: it must close them at its
// first record (or close), as it closes an inherited s->fd. The old code
// never did: O_CLOEXEC closes them only at an exec, and the child held the
// parent's file (for a FIFO, its write end: the reader saw no end of file)
// as long as it lived.
TEST(JsonlLines, AChildForkedWhileTheSinkOpensItsFileKeepsNoCopyOfIt) {
  std::string path = pyh::TempDir() + "/out.jsonl";
  void *ns = pyh::Exec("def f(): pass\n", "opening.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("writer=thread;interval=1h;sink=jsonl:" + path).c_str(), &p), 0)
      << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  FstatPause &pause = g_fstat_pause;
  ASSERT_EQ(pipe(pause.inside), 0);
  ASSERT_EQ(pipe(pause.release), 0);
  pause.left = 2;  // open_file's second fstat: both its descriptors are open
  pause.ino = st.st_ino;
  ASSERT_EQ(statsprof_reopen(p), 0);  // the writer thread opens PATH again for record 1
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  struct pollfd in = {pause.inside[0], POLLIN, 0};
  bool paused = poll(&in, 1, 60000) == 1;  // a bound only against a hang
  std::string report;
  if (paused) {
    report = child::Run([&] {
      child::Problems pr;
      int inherited = DescriptorsOf(st);
      pr.Check(inherited == 0, "the child should have closed open_file's 2 descriptors at fork, has " +
                                   std::to_string(inherited));
      pyh::Call(ns, "f");
      pr.Check(statsprof_emit_now(p) == 0 && statsprof_flush(p) == 0, "emit_now or flush failed in the child");
      pr.Check(statsprof_sink_errors(p) == 0, "the child's record was not written");
      int after_record = DescriptorsOf(st);
      pr.Check(after_record == 1, "after its first record the child should hold only its own descriptor of " +
                                      path + ", holds " + std::to_string(after_record));
      statsprof_destroy(p);
      int after_destroy = DescriptorsOf(st);
      pr.Check(after_destroy == 0, "after destroy the child holds " + std::to_string(after_destroy) +
                                       " descriptors of " + path);
      return pr.text;
    });
  }
  char c = 'r';
  EXPECT_EQ(write(pause.release[1], &c, 1), 1);
  ASSERT_TRUE(paused) << "the writer thread never reached open_file's second fstat";
  EXPECT_TRUE(child::OkUnderTsan(report)) << report;
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 0u);
  statsprof_destroy(p);
  for (int fd : {pause.inside[0], pause.inside[1], pause.release[0], pause.release[1]}) close(fd);
  Lines l = Read(path);
  EXPECT_EQ(l.bad, 0) << Describe(path, l);
  EXPECT_EQ(l.tail, 0) << Describe(path, l);
  // The parent's and the child's. Under TSan a child whose writer thread got
  // a dead parent thread's id ends with status 66 (child::OkUnderTsan),
  // before or after its record was written.
  if (child::kTsan && !report.empty()) {
    EXPECT_GE(l.lines, 1) << Describe(path, l);
    EXPECT_LE(l.lines, 2) << Describe(path, l);
  } else {
    EXPECT_EQ(l.lines, 2) << Describe(path, l);
  }
  pyh::Release(ns);
}

// A child that closes every descriptor after fork and opens files of its
// own (a daemon does) may get the numbers its copy of the sink held. The
// old code closed the inherited descriptor at the child's first record, by
// number: one of the child's own files. Now it is closed at fork.
TEST(JsonlLines, AChildsOwnFilesOnReusedNumbersSurviveItsFirstRecord) {
  std::string dir = pyh::TempDir();
  void *ns = pyh::Exec("def f(): pass\n", "reuse.py");
  for (const char *writer : {"thread", "sync"}) {
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create((std::string("interval=1h;writer=") + writer + ";sink=jsonl:" + dir + "/" +
                                writer + ".jsonl").c_str(), &p), 0)
        << statsprof_errmsg(nullptr);
    ASSERT_EQ(statsprof_start(p), 0);
    pyh::Call(ns, "f");
    ASSERT_EQ(statsprof_emit_now(p), 0);
    ASSERT_EQ(statsprof_flush(p), 0);
    std::string own = dir + "/own-" + writer;
    std::string report = child::Run([&] {
      child::Problems pr;
      // What a daemon does, for the descriptors that matter here (closing
      // all would close the report pipe too): those of files in dir closed,
      // then files of the child's own, which get the lowest free numbers.
      for (int fd = 3; fd < 1024; fd++) {
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && std::string(target, (size_t)n).rfind(dir, 0) == 0) close(fd);
      }
      std::vector<int> fds;
      for (int i = 0; i < 8; i++) fds.push_back(open((own + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
      pyh::Call(ns, "f");
      pr.Check(statsprof_emit_now(p) == 0 && statsprof_flush(p) == 0, "emit_now or flush failed in the child");
      int closed = 0;
      for (int fd : fds) closed += fd < 0 || fcntl(fd, F_GETFD) < 0;
      pr.Check(closed == 0, std::to_string(closed) + " of the child's own files were closed by its first record");
      statsprof_destroy(p);
      return pr.text;
    });
    EXPECT_TRUE(child::OkUnderTsan(report)) << writer << ": " << report;
    statsprof_destroy(p);
  }
  pyh::Release(ns);
}

// Two writer=sync profilers, A and B, writing to one sink=jsonl:ARG (two
// profilers, or two processes alike). Emit runs Program()'s main under one
// of them (never both at once) and emits its record.
struct TwoWriters {
  void *ns = nullptr;
  statsprof *a = nullptr, *b = nullptr;
  std::string Open(const std::string &arg) {
    ns = pyh::Exec(Program(), "big.py");
    std::string config = "writer=sync;interval=1h;sink=jsonl:" + arg;
    if (statsprof_create(config.c_str(), &a) != 0 || statsprof_create(config.c_str(), &b) != 0)
      return std::string("create: ") + statsprof_errmsg(nullptr);
    return "";
  }
  void Emit(statsprof *p) {
    ASSERT_EQ(statsprof_start(p), 0);
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
    ASSERT_EQ(statsprof_stop(p), 0);
  }
  void Close() {
    statsprof_destroy(a);
    statsprof_destroy(b);
    pyh::Release(ns);
  }
};

// Two writers of one FIFO (two profilers here; two processes alike). A's
// record is cut by a stalled reader and A keeps its end, but the old code
// released the lock: once the reader was back, B wrote a whole record right
// after A's half line (one line that does not parse, B's record lost) and
// A's end became a second bad line. Now A keeps the lock until its end is
// written: B's record meanwhile waits the 1 s lock limit and is dropped.
TEST(JsonlLines, ASecondWriterNeverAppendsToAnotherWritersCutRecord) {
  std::string dir = pyh::TempDir();
  StalledFifo fifo;
  ASSERT_EQ(fifo.Open(dir), "");
  TwoWriters w;
  ASSERT_EQ(w.Open(fifo.path), "");
  statsprof *a = w.a, *b = w.b;
  auto emit = [&](statsprof *p) { w.Emit(p); };
  emit(a);  // A's record 1: one page goes in, then the stall: cut, its end kept
  EXPECT_EQ(statsprof_sink_errors(a), 1u);
  fifo.Drain();  // the reader is back
  emit(b);  // B's record 1: the file is A's until A's end is written
  EXPECT_EQ(statsprof_sink_errors(b), 1u);
  emit(a);  // A: the end of record 1, then its record
  EXPECT_EQ(statsprof_sink_errors(a), 1u);
  fifo.Drain();
  emit(b);  // B: the lock is free again
  EXPECT_EQ(statsprof_sink_errors(b), 1u);
  w.Close();
  std::string out = dir + "/got.jsonl";
  Lines l = fifo.Finish(out);
  EXPECT_EQ(l.bad, 0) << Describe(out, l);
  EXPECT_EQ(l.tail, 0) << Describe(out, l);
  EXPECT_EQ(l.ids.size(), 3u) << Describe(out, l);  // A's two records, and B's after A's
}

// The host forks while its writer has a cut record pending: the reader of a
// FIFO stalled, the record's end is kept, and the writer keeps the file's
// lock until that end is written. The child's copy of the sink holds the
// same descriptor (the same open file, the same lock) and the same end.
// It must leave both to the parent: its own record waits the 1 s lock
// limit and is dropped, like any other writer's, and the parent writes the
// end, then its next record. Without the child's check of the pid that
// opened the file (jsonl_emit), the child locked the parent's open file at
// once, wrote the parent's end and its own record, and released the
// parent's lock; the parent then wrote the end a second time: a line that
// does not parse.
TEST(JsonlLines, AForkedChildLeavesItsParentsCutRecordToTheParent) {
  CutFifoRecord cut;  // record 1: one page went in, then the stall: cut, its end kept
  ASSERT_EQ(cut.Start(), "");
  cut.fifo.Drain();  // the reader is back: the end would fit now
  statsprof *p = cut.p;
  std::string report = child::Run([&] {
    child::Problems pr;
    pyh::Call(cut.ns, "main");
    uint64_t before = statsprof_sink_errors(p);
    pr.Check(statsprof_emit_now(p) == 0, "emit_now failed in the child");
    pr.Check(statsprof_sink_errors(p) == before + 1,
             "the child's record should have been dropped (the file is locked by the parent until its cut record "
             "ends), but it was written");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(report, "");
  pyh::Call(cut.ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);  // record 2: the end of record 1, then record 2
  EXPECT_EQ(statsprof_sink_errors(p), 1u);
  statsprof_destroy(p);
  std::string out = cut.dir + "/got.jsonl";
  Lines l = cut.fifo.Finish(out);
  EXPECT_EQ(l.lines, cut.fifo.pages * 256 + 2) << Describe(out, l);
  EXPECT_EQ(l.bad, 0) << Describe(out, l);
  EXPECT_EQ(l.tail, 0) << Describe(out, l);
  EXPECT_EQ(l.ids, (std::vector<std::pair<long long, long long>>{{getpid(), 1}, {getpid(), 2}})) << Describe(out, l);
  pyh::Release(cut.ns);
}

// A lock belongs to the open file, which a forked child shares through its
// inherited descriptor until its first record (or its exit): a child that
// stays quiet — a worker that never ticks — keeps the parent's open file
// alive after the parent closed it. A writer that left a file holding its
// lock (after rotating it, or on finding PATH moved) must unlock it: with
// the lock only released by close(), it stayed held as long as the child
// lived, and every other writer still holding that file (here a second
// profiler; a sibling process alike) timed out on it at each record and
// dropped it, never getting to see that PATH had moved.
TEST(JsonlLines, AQuietForkedChildDoesNotKeepALockItsParentLeftWithAFile) {
  std::string path = pyh::TempDir() + "/shared.jsonl";
  TwoWriters w;
  // max_bytes=1k: every record into a file that has one rotates it first.
  ASSERT_EQ(w.Open(path + ",max_bytes=1k,keep=10"), "");
  statsprof *a = w.a, *b = w.b;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  // Both profilers have PATH open; the child inherits both descriptors and
  // waits, writing nothing, until the parent is done.
  child::Child quiet = child::Start([&] {
    char c;
    return read(go[0], &c, 1) == 1 ? std::string() : std::string("the parent's go was lost");
  });
  w.Emit(a);  // A's record 1, into the first file
  w.Emit(a);  // A's next record: A rotates the first file to PATH.1 under its lock and leaves it
  w.Emit(b);  // B holds the first file: it must get its lock, see PATH moved, and follow
  EXPECT_EQ(statsprof_sink_errors(a), 0u);
  EXPECT_EQ(statsprof_sink_errors(b), 0u) << "B's record was dropped: the first file stayed locked";
  EXPECT_EQ(write(go[1], "g", 1), 1);
  EXPECT_EQ(child::Wait(quiet), "");
  close(go[0]);
  close(go[1]);
  w.Close();
  std::map<long long, int> seqs;  // seq -> records (A's and B's share the pid)
  std::string seen;
  for (int k = 0; k <= 10; k++) {
    std::string file = k ? path + "." + std::to_string(k) : path;
    if (Size(file) < 0) continue;
    Lines l = Read(file);
    EXPECT_EQ(l.bad, 0) << Describe(file, l);
    EXPECT_EQ(l.tail, 0) << Describe(file, l);
    for (auto [pid, seq] : l.ids) seqs[seq]++;
    seen += "\n  " + Describe(file, l);
  }
  EXPECT_EQ(seqs, (std::map<long long, int>{{1, 2}, {2, 1}})) << "A's records 1 and 2, B's 1:" << seen;
}

// Issue 11, item 7: a parent and its forked child append to one PATH and
// both rotate it (max_bytes=4k, keep high enough that nothing is deleted).
// Every record must be in exactly one file, once, every line must parse and
// no file may grow past max_bytes. The old code broke this in every round
// (the child wrote into the parent's rotated file, which grew past 4k, and
// concurrent rotations renamed each other's files).
TEST(JsonlLines, AParentAndItsChildShareOnePathThroughRotations) {
  void *ns = pyh::Exec("def f(): pass\ndef g():\n  for i in range(3): f()\n", "fork.py");
  const int kRecords = 300;
  for (int round = 0; round < 3; round++) {
    std::string dir = pyh::TempDir(), path = dir + "/shared.jsonl";
    statsprof *p = nullptr;
    // on_full=block: no record is dropped for a full queue, so all must arrive.
    std::string config = "interval=1h;on_full=block;sink=jsonl:" + path + ",max_bytes=4k,keep=1000";
    ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
    ASSERT_EQ(statsprof_start(p), 0);
    pyh::Call(ns, "g");
    ASSERT_EQ(statsprof_emit_now(p), 0);  // the file is open and written before fork
    ASSERT_EQ(statsprof_flush(p), 0);
    child::Child c = child::Start([&] {
      child::Problems pr;
      for (int i = 0; i < kRecords; i++) {
        pyh::Call(ns, "g");
        statsprof_emit_now(p);
      }
      statsprof_flush(p);
      pr.Check(statsprof_sink_errors(p) == 0, "the child's sink failed " + std::to_string(statsprof_sink_errors(p)) + " times");
      statsprof_destroy(p);
      return pr.text;
    });
    for (int i = 0; i < kRecords; i++) {
      pyh::Call(ns, "g");
      ASSERT_EQ(statsprof_emit_now(p), 0);
    }
    ASSERT_EQ(statsprof_flush(p), 0);
    std::string report = child::Wait(c);
    EXPECT_TRUE(child::OkUnderTsan(report)) << "round " << round << ": " << report;
    EXPECT_EQ(statsprof_sink_errors(p), 0u);
    statsprof_destroy(p);

    std::map<long long, std::map<long long, int>> seen;  // pid -> seq -> times
    int files = 0;
    for (int k = 0;; k++) {
      std::string file = k ? path + "." + std::to_string(k) : path;
      long long size = Size(file);
      if (size < 0) break;
      files++;
      Lines l = Read(file);
      EXPECT_EQ(l.bad, 0) << "round " << round << ": " << Describe(file, l);
      EXPECT_EQ(l.tail, 0) << "round " << round << ": " << Describe(file, l);
      EXPECT_TRUE(size <= 4096 || l.lines == 1) << "round " << round << ": " << file << " has " << size << " bytes";
      for (auto [pid, seq] : l.ids) seen[pid][seq]++;
    }
    EXPECT_GT(files, 20) << "round " << round;
    ASSERT_EQ(seen.size(), 2u) << "round " << round << ": records from " << seen.size() << " processes";
    for (auto &[pid, seqs] : seen) {
      size_t want = pid == getpid() ? kRecords + 1 : kRecords;
      EXPECT_EQ(seqs.size(), want) << "round " << round << ": process " << pid;
      for (auto [seq, n] : seqs) EXPECT_EQ(n, 1) << "round " << round << ": process " << pid << " seq " << seq;
    }
  }
  pyh::Release(ns);
}

// A writer killed mid-write (kill -9, power loss) leaves a line without its
// newline. The old code appended the next writer's record to it: one
// complete line that does not parse, and that record lost. Now the fragment
// is cut back to the last newline before the record is written.
TEST(JsonlLines, ARecordIsNeverAppendedToALineACrashLeftCut) {
  void *ns = pyh::Exec(Program(), "big.py");
  std::string dir = pyh::TempDir();
  const std::string whole = "{\"seq\": 7, \"pid\": 1}\n", fragment = "{\"seq\": 8, \"pid\": 1, \"func_prof";
  for (std::string before : {whole + fragment, fragment}) {
    std::string path = dir + "/crashed.jsonl";
    FILE *f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    fwrite(before.data(), 1, before.size(), f);
    fclose(f);
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create(("writer=sync;interval=1h;sink=jsonl:" + path).c_str(), &p), 0)
        << statsprof_errmsg(nullptr);
    ASSERT_EQ(statsprof_start(p), 0);
    for (int i = 0; i < 2; i++) {
      pyh::Call(ns, "main");
      ASSERT_EQ(statsprof_emit_now(p), 0);
    }
    EXPECT_EQ(statsprof_sink_errors(p), 0u);
    statsprof_destroy(p);
    Lines l = Read(path);
    bool had_whole = before.size() > fragment.size();
    EXPECT_EQ(l.lines, had_whole ? 3 : 2) << Describe(path, l);
    EXPECT_EQ(l.bad, 0) << Describe(path, l);
    EXPECT_EQ(l.tail, 0) << Describe(path, l);
    std::vector<long long> seqs;
    for (auto [pid, seq] : l.ids) seqs.push_back(seq);
    EXPECT_EQ(seqs, had_whole ? (std::vector<long long>{7, 1, 2}) : (std::vector<long long>{1, 2}))
        << Describe(path, l);
    unlink(path.c_str());
  }
  pyh::Release(ns);
}

}  // namespace
