// emission_test.cc — records leave through per-sink writer threads: a slow
// or failing sink never stalls the host or costs the other sinks a record.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collect_sink.h"
#include "pyharness.h"

namespace {

void *Program() { return pyh::Exec("def f(): pass\ndef main():\n  for i in range(3): f()\n", "emit.py"); }

statsprof *Make(const char *config) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
  return p;
}

TEST(Emission, SlowSinkDropsOnlyItsOwnRecords) {
  void *ns = Program();
  statsprof *p = Make("sink=none;queue=2;on_full=drop");
  CollectSink slow, fast;
  slow.delay_ms = 30;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &slow), 0);
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &fast), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (size_t i = 0; i < 10; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
    // The fast sink keeps up on its own thread while the slow one lags.
    Py_BEGIN_ALLOW_THREADS while (fast.Take().size() < i + 1) usleep(100);
    Py_END_ALLOW_THREADS
  }
  statsprof_flush(p);
  auto got_fast = fast.Take(), got_slow = slow.Take();
  ASSERT_EQ(got_fast.size(), 10u);
  for (size_t i = 0; i < got_fast.size(); i++) EXPECT_EQ(got_fast[i].seq, i + 1);
  EXPECT_LT(got_slow.size(), 10u);
  EXPECT_GE(got_slow.size(), 2u);
  EXPECT_EQ(statsprof_dropped(p), 10u - got_slow.size());
  EXPECT_GT(got_fast.back().dropped, 0u);  // later records say so
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Emission, BlockingPolicyDeliversEverything) {
  void *ns = Program();
  statsprof *p = Make("sink=none;queue=1;on_full=block");
  CollectSink slow;
  slow.delay_ms = 10;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &slow), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 8; i++) ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  EXPECT_EQ(slow.Take().size(), 8u);
  EXPECT_EQ(statsprof_dropped(p), 0u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

std::vector<std::string> g_log;
void Log(void *, const char *msg) { g_log.push_back(msg); }

TEST(Emission, FailingSinkIsCountedLoggedRateLimitedAndIsolated) {
  void *ns = Program();
  statsprof *p = Make("sink=none");
  g_log.clear();
  statsprof_set_log(p, Log, nullptr);
  CollectSink bad, good;
  bad.fail = STATSPROF_EIO;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &bad), 0);
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &good), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 20; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
    statsprof_flush(p);
  }
  EXPECT_EQ(good.Take().size(), 20u);
  EXPECT_EQ(statsprof_sink_errors(p), 20u);
  // Failures 1, 2, 3, 4, 8 and 16 are logged: rate-limited, not silent.
  EXPECT_EQ(g_log.size(), 6u);
  ASSERT_FALSE(g_log.empty());
  EXPECT_NE(g_log[0].find("collect"), std::string::npos);
  EXPECT_NE(g_log[0].find("input/output error"), std::string::npos);
  EXPECT_EQ(good.Take().back().sink_errors, 19u);  // records report failures
  statsprof_destroy(p);
  EXPECT_EQ(bad.closes, 1);
  EXPECT_EQ(good.closes, 1);
  pyh::Release(ns);
}

// A sink whose flush fails is logged and counted with the failed emits
// (statsprof_sink_errors, the records' sink_errors); it was only logged.
int FailFlush(void *) { return STATSPROF_ESINK; }
int TakeAll(void *, const statsprof_stats_profile *) { return 0; }

TEST(Emission, AFailedFlushIsCountedAsASinkError) {
  void *ns = Program();
  statsprof *p = Make("sink=none");
  g_log.clear();
  statsprof_set_log(p, Log, nullptr);
  static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "noflush", TakeAll, FailFlush};
  ASSERT_EQ(statsprof_add_sink(p, &ops, nullptr), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 0u);  // the record went through
  statsprof_flush(p);
  EXPECT_EQ(statsprof_sink_errors(p), 1u);
  ASSERT_FALSE(g_log.empty());
  EXPECT_NE(g_log[0].find("sink noflush failed to flush"), std::string::npos) << g_log[0];
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Emission, FullDiskCountsErrorsAndOtherSinksGetEverything) {
  void *ns = Program();
  statsprof *p = Make("sink=jsonl:/dev/full");
  g_log.clear();
  statsprof_set_log(p, Log, nullptr);
  CollectSink good;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &good), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 5; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
  }
  statsprof_flush(p);
  EXPECT_EQ(good.Take().size(), 5u);
  EXPECT_EQ(statsprof_sink_errors(p), 5u);
  ASSERT_FALSE(g_log.empty());
  EXPECT_NE(g_log[0].find("jsonl"), std::string::npos);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// Many functions make each record tens of KB: a pipe (64 KB) fills fast.
void *BigProgram() {
  std::string code = "def main():\n";
  for (int i = 0; i < 100; i++) code += "  f" + std::to_string(i) + "()\n";
  for (int i = 0; i < 100; i++) code += "def f" + std::to_string(i) + "(): pass\n";
  return pyh::Exec(code, "a_rather_long_file_name_to_make_each_record_bigger_than_usual.py");
}

TEST(Emission, PipeWhoseReaderStopsCostsOnlyThatSink) {
  std::string fifo = pyh::TempDir() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // opens, then never reads
  ASSERT_GE(reader, 0);
  void *ns = BigProgram();
  statsprof *p = Make(("queue=4;sink=jsonl:" + fifo).c_str());
  CollectSink good;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &good), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (size_t i = 0; i < 20; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);  // returns: the host never waits on the pipe
    // The other sink keeps up on its own thread while the pipe's is stuck.
    Py_BEGIN_ALLOW_THREADS while (good.Take().size() < i + 1) usleep(100);
    Py_END_ALLOW_THREADS
  }
  statsprof_flush(p);
  EXPECT_EQ(good.Take().size(), 20u);
  EXPECT_GT(statsprof_sink_errors(p) + statsprof_dropped(p), 0u);
  statsprof_destroy(p);  // finishes although the reader never read
  // What reached the pipe is whole lines only.
  std::string data;
  char buf[65536];
  for (ssize_t n; (n = read(reader, buf, sizeof buf)) > 0;) data.append(buf, (size_t)n);
  close(reader);
  ASSERT_FALSE(data.empty());
  size_t lines = 0;
  for (size_t at = 0, nl; (nl = data.find('\n', at)) != std::string::npos; at = nl + 1, lines++)
    EXPECT_EQ(data[at], '{');
  EXPECT_GT(lines, 0u);
  pyh::Release(ns);
}

TEST(Emission, PipeWhoseReaderLeftDoesNotKillTheHost) {
  std::string fifo = pyh::TempDir() + "/gone";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  void *ns = Program();
  for (const char *writer : {"writer=thread", "writer=sync"}) {
    int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(reader, 0);
    statsprof *p = Make((std::string(writer) + ";sink=jsonl:" + fifo).c_str());
    CollectSink good;
    ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &good), 0);
    ASSERT_EQ(statsprof_start(p), 0);
    ASSERT_EQ(statsprof_emit_now(p), 0);
    statsprof_flush(p);
    close(reader);  // the reader goes away: writes now raise SIGPIPE
    for (int i = 0; i < 3; i++) {
      pyh::Call(ns, "main");
      ASSERT_EQ(statsprof_emit_now(p), 0);
      statsprof_flush(p);
    }
    EXPECT_EQ(good.Take().size(), 4u) << writer;  // still alive, and the other sink got all
    EXPECT_EQ(statsprof_sink_errors(p), 3u) << writer;
    statsprof_destroy(p);
  }
  pyh::Release(ns);
}

TEST(Emission, FifoWithNoReaderFailsAtCreateInsteadOfBlocking) {
  std::string fifo = pyh::TempDir() + "/nobody";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(("sink=jsonl:" + fifo).c_str(), &p), STATSPROF_ESINK);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find(fifo), std::string::npos);
}

TEST(Emission, StopDeliversEverythingQueued) {
  void *ns = Program();
  statsprof *p = Make("sink=none;queue=64");
  CollectSink slow;
  slow.delay_ms = 5;
  ASSERT_EQ(statsprof_add_sink(p, CollectSink::Ops(), &slow), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 10; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
  }
  pyh::Call(ns, "main");
  statsprof_destroy(p);  // 10 queued + the final interval
  auto got = slow.Take();
  EXPECT_EQ(got.size(), 11u);
  EXPECT_EQ(got.back().calls("f"), 3u);
  EXPECT_EQ(slow.flushes >= 1, true);
  EXPECT_EQ(slow.closes, 1);
  pyh::Release(ns);
}

}  // namespace
