// rotation_test.cc — JSON-lines files that live for weeks: size-based
// rotation, reopening after an external logrotate, and whole lines after a
// SIGKILL at any moment.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "pyharness.h"

namespace {

// Counts lines and checks each parses as a JSON object (Python's json).
struct FileCheck {
  long lines = -1, bad = -1, partial_tail = -1;
};

FileCheck Check(const std::string &path) {
  pyh::JsonlFile f = pyh::ReadJsonl(path);
  EXPECT_EQ(f.error, "") << path;
  FileCheck c;
  c.lines = f.lines;
  c.bad = f.bad;
  c.partial_tail = f.tail > 0;
  return c;
}

bool Exists(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

long Size(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? (long)st.st_size : -1;
}

void *Program() {
  return pyh::Exec("def f(): pass\ndef g(): f()\ndef main():\n  for i in range(3): g()\n", "rot.py");
}

TEST(Rotation, FilesRotateBySizeAndKeepTheNewestN) {
  std::string dir = pyh::TempDir(), path = dir + "/r.jsonl";
  std::string config = "writer=sync;sink=jsonl:" + path + ",max_bytes=2k,keep=2";
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  void *ns = Program();
  for (int i = 0; i < 40; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
  }
  statsprof_destroy(p);
  EXPECT_EQ(statsprof_sink_errors(nullptr), 0u);
  for (std::string f : {path, path + ".1", path + ".2"}) {
    ASSERT_TRUE(Exists(f)) << f;
    EXPECT_LE(Size(f), 2048) << f;
    FileCheck c = Check(f);
    EXPECT_GT(c.lines, 0) << f;
    EXPECT_EQ(c.bad, 0) << f;
    EXPECT_EQ(c.partial_tail, 0) << f;
  }
  EXPECT_FALSE(Exists(path + ".3"));
  // Newest last: the current file holds the highest seq.
  std::string cur = pyh::ReadFile(path);
  EXPECT_NE(cur.find("\"seq\":40,"), std::string::npos);
  EXPECT_EQ(pyh::ReadFile(path + ".2").find("\"seq\":40,"), std::string::npos);
  pyh::Release(ns);
}

TEST(Rotation, BadRotationOptionsAreConfigErrors) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create("sink=jsonl:/tmp/x.jsonl,max_bytes=12", &p), STATSPROF_ECONFIG);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("max_bytes=12"), std::string::npos);
  EXPECT_EQ(statsprof_create("sink=jsonl:/tmp/x.jsonl,keep=-1", &p), STATSPROF_ECONFIG);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("keep=-1"), std::string::npos);
  EXPECT_EQ(statsprof_create("sink=jsonl:/tmp/x.jsonl,colour=blue", &p), STATSPROF_ECONFIG);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("colour=blue"), std::string::npos);
}

// A renamed PATH is followed at the next record (the sink compares PATH's
// inode with its file's, as parent and child need when either rotates);
// statsprof_reopen, logrotate's postrotate, still works and costs nothing.
TEST(Rotation, ReopenFollowsAnExternalLogrotate) {
  std::string dir = pyh::TempDir(), path = dir + "/l.jsonl";
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=jsonl:" + path).c_str(), &p), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  ASSERT_EQ(rename(path.c_str(), (path + ".old").c_str()), 0);  // logrotate moves it
  ASSERT_EQ(statsprof_emit_now(p), 0);                          // into a new PATH
  statsprof_flush(p);
  ASSERT_EQ(statsprof_reopen(p), 0);  // postrotate
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_destroy(p);
  EXPECT_EQ(Check(path + ".old").lines, 1);
  EXPECT_EQ(Check(path).lines, 2);
  EXPECT_NE(pyh::ReadFile(path).find("\"seq\":2,"), std::string::npos);
  EXPECT_NE(pyh::ReadFile(path).find("\"seq\":3,"), std::string::npos);
}

// statsprof_reopen may be called from any thread without the GIL (a
// signal from logrotate's postrotate), so while the host adds sinks too:
// it read the sink list as add_sink wrote it (a data race, which TSan
// reports; a reopen could find a sink counted before it was filled in).
struct ReopenCount {
  std::atomic<int> reopens{0};
  static int Emit(void *, const statsprof_stats_profile *) { return 0; }
  static void Reopen(void *ctx) { static_cast<ReopenCount *>(ctx)->reopens++; }
};

TEST(Rotation, ReopenWhileTheHostAddsSinks) {
  static const statsprof_sink_ops ops = {2, "counting", ReopenCount::Emit, nullptr, nullptr, ReopenCount::Reopen};
  for (int round = 0; round < 20; round++) {
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create("sink=none", &p), 0);
    ReopenCount counts[8];
    std::atomic<bool> done{false};
    std::atomic<int> calls{0};
    std::thread reopener([&] {
      while (!done) {
        EXPECT_EQ(statsprof_reopen(p), 0);
        calls++;
      }
    });
    for (auto &c : counts) ASSERT_EQ(statsprof_add_sink(p, &ops, &c), 0);
    while (calls.load() < 2) std::this_thread::yield();
    done = true;
    reopener.join();
    ASSERT_EQ(statsprof_reopen(p), 0);  // every sink now
    for (auto &c : counts) EXPECT_GE(c.reopens.load(), 1);
    statsprof_destroy(p);
  }
}

TEST(Rotation, FilesAreCreatedWithTheHostsUmask) {
  std::string dir = pyh::TempDir(), path = dir + "/u.jsonl";
  mode_t old = umask(027);
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=jsonl:" + path).c_str(), &p), 0);
  umask(old);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  statsprof_destroy(p);
}

TEST(Rotation, EveryCompleteLineParsesAfterSigkill) {
  // A child emits records as fast as it can; SIGKILL lands at a different
  // moment each round. Each record is one write(): only the tail can be cut.
  std::string dir = pyh::TempDir();
  void *ns = pyh::Exec(R"(
def leaf(x): return x
def work():
    for i in range(200): leaf(i)
)", "kill.py");
  for (int round = 0; round < 6; round++) {
    std::string path = dir + "/k" + std::to_string(round) + ".jsonl";
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
      PyOS_AfterFork_Child();
      statsprof *p = nullptr;
      if (statsprof_create(("interval=0s;sink=jsonl:" + path).c_str(), &p) || statsprof_start(p)) _exit(3);
      for (;;) {
        pyh::Call(ns, "work");
        statsprof_tick(p);
      }
    }
    PyOS_AfterFork_Parent();
    // Kill only once records are flowing, then at a different moment each round.
    Py_BEGIN_ALLOW_THREADS for (int i = 0; i < 10000 && Size(path) <= 0; i++) usleep(1000);
    usleep(5000 + round * 7000);
    Py_END_ALLOW_THREADS
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    FileCheck c = Check(path);
    EXPECT_GT(c.lines, 0) << "round " << round;
    EXPECT_EQ(c.bad, 0) << "round " << round;
  }
  pyh::Release(ns);
}

// A rotation whose rename of PATH.1 to PATH.2 failed was logged as
// "cannot rotate 'PATH'": the failed rename names both its files now.
TEST(Rotation, AFailedRotationNamesTheRenameThatFailed) {
  std::string dir = pyh::TempDir(), path = dir + "/r.jsonl";
  {
    FILE *f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fprintf(f, "{\"filler\": \"%s\"}\n", std::string(1100, 'x').c_str());  // past max_bytes
    fclose(f);
    f = fopen((path + ".1").c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }
  ASSERT_EQ(mkdir((path + ".2").c_str(), 0700), 0);  // a non-empty directory: PATH.1 cannot replace it
  ASSERT_EQ(mkdir((path + ".2/in").c_str(), 0700), 0);
  pyh::LogLines log;
  statsprof *p = nullptr;
  std::string config = "writer=sync;interval=1h;sink=jsonl:" + path + ",max_bytes=1k,keep=2";
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  statsprof_set_log(p, pyh::LogLines::Fn, &log);
  ASSERT_EQ(statsprof_start(p), 0);
  void *ns = Program();
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_destroy(p);
  // Each path is quoted at half the usual length so both and the reason
  // fit: a long temporary directory is shortened in its middle, the ends
  // stay.
  EXPECT_TRUE(log.Has("cannot rotate: cannot rename '" + path.substr(0, 20)) && log.Has("/r.jsonl.1' to '") &&
              log.Has("/r.jsonl.2': Is a directory"))
      << log.All();
  EXPECT_EQ(Check(path).lines, 2);  // the record went into PATH all the same
  pyh::Release(ns);
}

}  // namespace
