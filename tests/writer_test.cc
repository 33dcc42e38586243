// writer_test.cc — the writers between the host and its sinks: bounded
// shutdown with a stuck sink (stop_timeout, abandoning), a stderr nobody
// reads, on_full=block, and fork with records still queued. Everything that
// could hang runs in a forked child (tests/child.h) whose exit status the
// test asserts: the old code hung in each of them.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "collect_sink.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

// Waits (polling) up to 30 s for cond; no timing is asserted, only that it
// happens at all.
template <typename F>
bool Eventually(F cond) {
  for (int i = 0; i < 3000; i++) {
    if (cond()) return true;
    usleep(10000);
  }
  return cond();
}

const char kProgram[] = "def f(): pass\ndef g():\n  for i in range(10): f()\n";

// Issue 11, item 5: a host sink whose emit never returns made
// statsprof_stop (and destroy) wait forever: this child hung in every run.
TEST(Writer, StuckSinkIsAbandonedAfterStopTimeoutAndClosedOnItsThread) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    GateSink stuck;
    pyh::RecordingSink good;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h;stop_timeout=300ms", &p) != 0) return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    pr.Check(statsprof_add_sink(p, GateSink::Ops(), &stuck) == 0, "add stuck");
    pr.Check(pyh::AddRecordingSink(p, &good) == 0, "add good");
    pr.Check(statsprof_start(p) == 0, "start");
    for (int i = 0; i < 5; i++) {
      pyh::Call(ns, "g");
      pr.Check(statsprof_emit_now(p) == 0, "emit_now");
    }
    pr.Check(statsprof_stop(p) == 0, "stop");  // waits 300 ms for the stuck sink, then returns
    pr.Check(log.Has("sink stuck: flush gave up waiting after stop_timeout=0.300s"), "no flush message:\n" + log.All());
    statsprof_destroy(p);  // returns: the stuck sink is abandoned
    log.dead = true;
    pr.Check(good.records.size() == 5, "the healthy sink got " + std::to_string(good.records.size()) + " records");
    pr.Check(good.closes == 1, "the healthy sink was not closed");
    pr.Check(stuck.emits == 1 && stuck.closes == 0, "the stuck sink: emits " + std::to_string(stuck.emits) +
                                                         ", closes " + std::to_string(stuck.closes));
    pr.Check(log.Has("sink stuck abandoned after stop_timeout=0.300s: its thread is stuck writing record 1; "
                     "4 queued records dropped"),
             "no abandon message:\n" + log.All());
    // Its emit returns at last: close runs then, on the sink's own thread,
    // and nothing else reaches the gone profiler.
    stuck.open = true;
    pr.Check(Eventually([&] { return stuck.closes == 1; }), "the abandoned sink was never closed");
    pr.Check(stuck.closed_off_main, "close ran on the host's thread");
    pr.Check(stuck.emits == 1, "the abandoned sink got more records");
    pr.Check(log.after_death == 0, "the log function was called after destroy");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// Shutdown against emits that end just before or just after the deadline,
// or between two records: every sink is closed exactly once (by destroy or,
// abandoned, by its own thread), nothing is logged after destroy, no
// crash, no leak (ASan) and no race (TSan). A stress test of the new
// abandon logic; the old code had none (it waited without a bound).
TEST(Writer, AbandoningRacesWithEmitsThatFinishAroundTheDeadline) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    const int kRounds = 150;
    std::vector<GateSink *> sinks;
    std::vector<pyh::LogLines *> logs;
    std::mt19937 rng(11);
    for (int round = 0; round < kRounds; round++) {
      // Every fifth sink is stuck until the end (always abandoned), every
      // fifth after it fast with a long timeout (never), the rest race.
      GateSink *s = new GateSink;
      s->delay_us = round % 5 == 0 ? -1 : round % 5 == 1 ? 0 : (int)(rng() % 3000);
      pyh::LogLines *log = new pyh::LogLines;
      sinks.push_back(s);
      logs.push_back(log);
      std::string timeout = round % 5 == 1 ? "30s" : std::to_string(rng() % 3000) + "us";
      std::string config = "sink=none;interval=1h;stop_timeout=" + timeout;
      statsprof *p = nullptr;
      if (statsprof_create(config.c_str(), &p) != 0) return std::string("create failed");
      statsprof_set_log(p, pyh::LogLines::Fn, log);
      statsprof_add_sink(p, GateSink::Ops(), s);
      statsprof_start(p);
      for (int i = 0; i < 1 + round % 4; i++) {
        pyh::Call(ns, "g");
        statsprof_emit_now(p);
      }
      if (round % 2) statsprof_stop(p);
      statsprof_destroy(p);
      log->dead = true;
    }
    for (GateSink *s : sinks) s->open = true;
    pr.Check(Eventually([&] {
               for (GateSink *s : sinks)
                 if (s->closes != 1) return false;
               return true;
             }),
             "not every sink was closed once");
    for (int i = 0; i < kRounds; i++) {
      pr.Check(sinks[i]->closes == 1, "round " + std::to_string(i) + ": closes " + std::to_string(sinks[i]->closes));
      pr.Check(logs[i]->after_death == 0, "round " + std::to_string(i) + ": logged after destroy");
      bool abandoned = logs[i]->Has("abandoned");
      if (i % 5 == 0) pr.Check(abandoned, "round " + std::to_string(i) + ": a stuck sink was not abandoned");
      if (i % 5 == 1) pr.Check(!abandoned, "round " + std::to_string(i) + ": a fast sink was abandoned");
    }
    usleep(100000);  // a second close would show now
    for (int i = 0; i < kRounds; i++) pr.Check(sinks[i]->closes == 1, "closed twice");
    for (GateSink *s : sinks) delete s;
    for (pyh::LogLines *l : logs) delete l;
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A started profiler (nullptr if config is refused) logging to `log`, whose
// one sink, `stuck`, is inside emit with its first record.
statsprof *StartWithStuckSink(const char *config, void *ns, pyh::LogLines *log, GateSink *stuck,
                              child::Problems *pr) {
  statsprof *p = nullptr;
  if (statsprof_create(config, &p) != 0) return nullptr;
  statsprof_set_log(p, pyh::LogLines::Fn, log);
  statsprof_add_sink(p, GateSink::Ops(), stuck);
  statsprof_start(p);
  pyh::Call(ns, "g");
  statsprof_emit_now(p);  // into emit, stuck
  pr->Check(Eventually([&] { return stuck->emits == 1; }), "the first record never reached emit");
  return p;
}

// on_full=block waited for room forever: a tick with a stuck sink hung the
// host (every run). Now it waits stop_timeout, then drops the record.
// It then waited a full stop_timeout again for every later record: a tick
// with per-thread records (or stop joining the timer thread) held the host
// for (records x stop_timeout). Now a sink whose wait timed out is not
// waited for again until it finishes a record: the old code took at least
// 16 s for the 8 records below (2 s each, a timed wait that cannot end
// sooner); the bound is half that, three orders of magnitude above the
// milliseconds they take now, so only a machine stalled for 8 s fails it.
TEST(Writer, OnFullBlockWaitsAtMostStopTimeout) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    GateSink stuck;
    statsprof *p = StartWithStuckSink("sink=none;interval=1h;on_full=block;queue=1;stop_timeout=2s", ns, &log,
                                      &stuck, &pr);
    if (!p) return std::string("create failed");
    statsprof_emit_now(p);  // queued
    pr.Check(statsprof_dropped(p) == 0, "dropped too early");
    statsprof_emit_now(p);  // no room: waits 2 s, then drops
    pr.Check(statsprof_dropped(p) == 1, "dropped " + std::to_string(statsprof_dropped(p)) + ", want 1");
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 8; i++) statsprof_emit_now(p);  // still stuck: dropped without waiting
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pr.Check(statsprof_dropped(p) == 9, "dropped " + std::to_string(statsprof_dropped(p)) + ", want 9");
    pr.Check(took < 8.0, "8 records for a stuck sink took " + std::to_string(took) + " s: each waited");
    statsprof_destroy(p);
    stuck.open = true;
    pr.Check(Eventually([&] { return stuck.closes == 1; }), "the abandoned sink was never closed");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A sink that takes 400 ms per record: slow, never stuck.
struct SlowSink {
  std::atomic<int> emits{0};
  static int Emit(void *ctx, const statsprof_stats_profile *) {
    usleep(400000);
    static_cast<SlowSink *>(ctx)->emits++;
    return 0;
  }
  static const statsprof_sink_ops *Ops() {
    static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "slow", Emit, nullptr, nullptr, nullptr};
    return &ops;
  }
};

// on_full=block with per_thread=on: each of an interval's records (one per
// thread, then the merged one) waited up to a stop_timeout of its own for
// a slow sink, so one tick held the host for up to (threads + 1) x
// stop_timeout. They share one now. No timing is asserted: in the shared
// 1 s a 400 ms sink finishes at most two records, holds a third in emit
// and a fourth in its ring, so at least 3 of the 7 are dropped (usleep
// never returns early); the old code dropped none.
TEST(Writer, OnFullBlockWaitsOneStopTimeoutPerIntervalNotPerThreadRecord) {
  void *ns = pyh::Exec(
      "import threading\n"
      "def f(): pass\n"
      "def six():\n"
      "  ts = [threading.Thread(target=f) for i in range(6)]\n"
      "  for t in ts: t.start()\n"
      "  for t in ts: t.join()\n");
  std::string problems = child::Run([&] {
    child::Problems pr;
    SlowSink slow;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h;on_full=block;queue=1;stop_timeout=1s;per_thread=on", &p) != 0)
      return std::string("create failed");
    statsprof_add_sink(p, SlowSink::Ops(), &slow);
    pr.Check(statsprof_start(p) == 0, "start");
    pyh::Call(ns, "six");
    pr.Check(statsprof_emit_now(p) == 0, "emit_now");
    uint64_t dropped = statsprof_dropped(p);
    pr.Check(dropped >= 3, "dropped " + std::to_string(dropped) + " of the interval's 7 records, want at least 3");
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A writer thread that could not start (a process at its thread limit)
// sent the sink's records through the emitting thread without a word: a
// host sink that blocks then held the host, and nothing said why. The
// records still reach the sink (as with writer=sync); the log now says so
// once, with the OS's reason, and says when the thread starts at last.
TEST(Writer, AWriterThreadThatCannotStartIsLoggedAndItsRecordsStillWritten) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    pyh::RecordingSink good;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h", &p) != 0) return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    pyh::AddRecordingSink(p, &good);
    pr.Check(statsprof_start(p) == 0, "start");
    statsprof__fail_thread_creates(2);
    for (int i = 0; i < 2; i++) {
      pyh::Call(ns, "g");
      pr.Check(statsprof_emit_now(p) == 0, "emit_now");
    }
    // Written on this thread, so already there.
    pr.Check(good.records.size() == 2, "records " + std::to_string(good.records.size()) + " with no writer thread");
    const std::string cannot =
        "sink recording: cannot start its writer thread (Resource temporarily unavailable): its records are "
        "written on the emitting thread until one starts";
    pr.Check(log.lines.size() == 1 && log.lines[0] == cannot, "the log:\n" + log.All());
    pyh::Call(ns, "g");
    pr.Check(statsprof_emit_now(p) == 0, "emit_now");
    pr.Check(log.lines.size() == 2 && log.lines[1] == "sink recording: its writer thread started",
             "the log:\n" + log.All());
    statsprof_destroy(p);
    pr.Check(good.records.size() == 3, "records " + std::to_string(good.records.size()) + ", want 3");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A profiler has at most 16 sinks, those of its config included: a host
// sink beyond them is STATSPROF_ESTATE (the header said nothing of it).
TEST(Writer, SixteenSinksInAllConfigIncluded) {
  std::string config = "interval=1h";
  for (int i = 0; i < 15; i++) config += ";sink=stderr";
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  pyh::RecordingSink a, b;
  EXPECT_EQ(pyh::AddRecordingSink(p, &a), 0);
  EXPECT_EQ(pyh::AddRecordingSink(p, &b), STATSPROF_ESTATE);
  EXPECT_STREQ(statsprof_errmsg(p), "statsprof_add_sink: at most 16 sinks");
  statsprof_destroy(p);
  EXPECT_EQ(a.closes, 1);
  EXPECT_EQ(b.closes, 0);
}

// With on_full=block, stop's last record waited stop_timeout for a stuck
// sink and marked it late; the flush after it ignored that and waited a
// second stop_timeout, so stop (and destroy without stop) took two (the
// old code logged "flush gave up waiting" in each case below, after 2.0 s
// of waits that cannot end sooner). The flush now skips a sink stuck since
// a wait gave up on it, and says so. The time bound is the contract itself
// (one stop_timeout), asserted loosely: 1.75 of them.
TEST(Writer, StopWithOnFullBlockWaitsOnceForAStuckSink) {
  void *ns = pyh::Exec(kProgram);
  for (bool stop_first : {true, false}) {
    SCOPED_TRACE(stop_first ? "stop" : "destroy without stop");
    std::string problems = child::Run([&] {
      child::Problems pr;
      pyh::LogLines log;
      GateSink stuck;
      statsprof *p = StartWithStuckSink("sink=none;interval=1h;on_full=block;queue=1;stop_timeout=1s", ns, &log,
                                        &stuck, &pr);
      if (!p) return std::string("create failed");
      pyh::Call(ns, "g");
      statsprof_emit_now(p);  // queued: the ring is full
      pyh::Call(ns, "g");     // so the stop has a last record to emit
      auto t0 = std::chrono::steady_clock::now();
      if (stop_first) {
        pr.Check(statsprof_stop(p) == 0, "stop");
        pr.Check(statsprof_dropped(p) == 1, "the stop's record was not dropped after its wait: dropped " +
                                                 std::to_string(statsprof_dropped(p)));
      }
      statsprof_destroy(p);
      double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      log.dead = true;
      pr.Check(log.Has("sink stuck: flush did not wait: its thread is still writing record 1, where an earlier "
                       "wait gave up after stop_timeout=1.000s, 1 more queued"),
               "the flush did not skip the stuck sink:\n" + log.All());
      pr.Check(!log.Has("flush gave up waiting"), "the flush waited again:\n" + log.All());
      pr.Check(took < 1.75, "stop and destroy took " + std::to_string(took) + " s with stop_timeout=1s");
      stuck.open = true;
      pr.Check(Eventually([&] { return stuck.closes == 1; }), "the abandoned sink was never closed");
      return pr.text;
    });
    EXPECT_EQ(problems, "");
  }
  pyh::Release(ns);
}

// A sink whose emit waits for a permit per record: slow, not stuck.
struct StepSink {
  std::atomic<int> permits{0}, emits{0}, closes{0};
  static int Emit(void *ctx, const statsprof_stats_profile *) {
    auto *s = static_cast<StepSink *>(ctx);
    s->emits++;
    while (s->permits.load() <= 0) usleep(1000);
    s->permits--;
    return 0;
  }
  static void Close(void *ctx) { static_cast<StepSink *>(ctx)->closes++; }
  static const statsprof_sink_ops *Ops() {
    static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "step", Emit, nullptr, Close, nullptr};
    return &ops;
  }
};

// One deadline per stop or destroy (writer.c's stopping/stopped): once
// the stop's stop_timeout is spent (here in a sleep, in a stop on the
// last records' on_full=block waits), the flush and the close wait no
// more — neither for a sink that got one record further meanwhile, which
// a close of its own would have waited a full stop_timeout for — yet a
// sink with nothing left to write is still closed on the host's thread,
// not abandoned. Without the shared deadline each wait below took its own
// 2 s; the bound is half of one.
TEST(Writer, TheWaitsOfOneStopShareOneDeadline) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    StepSink step;
    pyh::RecordingSink good;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h;stop_timeout=2s", &p) != 0) return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(p, StepSink::Ops(), &step);
    pyh::AddRecordingSink(p, &good);
    statsprof_start(p);
    for (int i = 0; i < 3; i++) {  // record 1 in the step sink's emit, 2 and 3 queued
      pyh::Call(ns, "g");
      statsprof_emit_now(p);
    }
    pr.Check(Eventually([&] { return step.emits == 1; }), "the first record never reached emit");
    statsprof__writers_deadline_begin(&p->writers);
    usleep(2100000);  // the stop's stop_timeout, spent
    auto t0 = std::chrono::steady_clock::now();
    statsprof__writers_drain(&p->writers);
    double drain = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pr.Check(log.Has("sink step: flush gave up waiting after stop_timeout=2.000s: its thread is still writing record 1"),
             "no flush message:\n" + log.All());
    step.permits = 1;  // one record further: no longer stuck where the flush left it
    pr.Check(Eventually([&] { return step.emits == 2; }), "the second record never reached emit");
    t0 = std::chrono::steady_clock::now();
    statsprof__writers_close(&p->writers);
    double close = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pr.Check(drain < 1.0, "the flush waited " + std::to_string(drain) + " s after the stop's deadline");
    pr.Check(close < 1.0, "the close waited " + std::to_string(close) + " s after the stop's deadline");
    pr.Check(log.Has("sink step abandoned after stop_timeout=2.000s: its thread is stuck writing record 2; "
                     "1 queued records dropped"),
             "no abandon message:\n" + log.All());
    pr.Check(!log.Has("sink recording abandoned"), "the idle sink was abandoned:\n" + log.All());
    pr.Check(good.records.size() == 3 && good.closes == 1,
             "the idle sink: records " + std::to_string(good.records.size()) + ", closes " + std::to_string(good.closes));
    statsprof_destroy(p);
    log.dead = true;
    step.permits = 100;
    pr.Check(Eventually([&] { return step.closes == 1; }), "the abandoned sink was never closed");
    pr.Check(log.after_death == 0, "the log function was called after destroy");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// Issue 11, item 5: sink=stderr with fd 2 a pipe nobody reads blocked in
// fwrite (holding stdio's lock on stderr) and destroy waited for it
// forever: this child hung in every run. Now each table has the stall
// limit, the other sinks get every record and destroy returns.
TEST(Writer, StderrThatNobodyReadsCostsOnlyThatSink) {
  std::string code = "def main():\n";
  std::string defs;
  for (int i = 0; i < 300; i++) {
    defs += "def function_with_a_long_name_number_" + std::to_string(i) + "(): pass\n";
    code += "  function_with_a_long_name_number_" + std::to_string(i) + "()\n";
  }
  void *ns = pyh::Exec(defs + code, "stderr_stall.py");
  std::string path = pyh::TempDir() + "/all.jsonl";
  std::string problems = child::Run([&] {
    child::Problems pr;
    int fds[2];
    if (pipe(fds) != 0) return std::string("pipe");
    dup2(fds[1], 2);  // the read end stays open and is never read
    close(fds[1]);
    pyh::LogLines log;
    statsprof *p = nullptr;
    std::string config = "sink=stderr:300;sink=jsonl:" + path + ";interval=1h;stop_timeout=2s";
    if (statsprof_create(config.c_str(), &p) != 0) return std::string("create: ") + statsprof_errmsg(nullptr);
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    statsprof_start(p);
    for (int i = 0; i < 20; i++) {  // about 25 KB per table: the 64 KiB pipe is full after 3
      pyh::Call(ns, "main");
      statsprof_emit_now(p);
    }
    statsprof_destroy(p);
    std::string text = pyh::ReadFile(path);
    int lines = 0;
    for (char c : text) lines += c == '\n';
    pr.Check(lines == 20, "the jsonl sink got " + std::to_string(lines) + " of 20 records");
    pr.Check(log.Has("sink stderr failed to write record"), "no failure logged:\n" + log.All());
    pr.Check(log.Has("cannot write to stderr: stalled, no room for 1 s"), "no stall logged:\n" + log.All());
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// The default log (no statsprof_set_log) writes to fd 2 as the stderr sink
// does: a stderr nobody reads delays it by the stall limit, never forever.
TEST(Writer, DefaultLogToAStderrNobodyReadsDoesNotHang) {
  std::string problems = child::Run([&] {
    child::Problems pr;
    if (child::FullStderrPipe() < 0) return std::string("pipe");
    pyh::RecordingSink failing;
    failing.fail = STATSPROF_EIO;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h;stop_timeout=30s", &p) != 0) return std::string("create");
    pyh::AddRecordingSink(p, &failing);
    for (int i = 0; i < 4; i++) statsprof_emit_now(p);  // 4 failures: 4 log lines, 1 s each at most
    statsprof_destroy(p);
    pr.Check(failing.emits == 4, "emits " + std::to_string(failing.emits));
    return pr.text;
  }, 60);
  EXPECT_EQ(problems, "");
}

// ---- destroy on another thread while a call waits for a sink ---------------

const char kRefused[] = "statsprof_destroy: called while another call on this profiler runs";

// statsprof_flush waits for the sinks with the GIL released but did not
// mark the profiler busy: another thread's destroy freed it under the wait,
// and the flush went on in freed memory when its wait ended (a standalone
// host doing this died of SIGSEGV in 3 runs of 3; here the destroy went
// through). The destroy is refused now, as during every other call, and
// the profiler is destroyed once the flush is done.
TEST(Writer, DestroyOnAnotherThreadWhileFlushWaitsIsRefused) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    GateSink stuck;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;interval=1h;stop_timeout=2s", &p) != 0) return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(p, GateSink::Ops(), &stuck);
    statsprof_start(p);
    pyh::Call(ns, "g");
    statsprof_emit_now(p);  // into emit, stuck: flush waits its whole stop_timeout
    std::atomic<bool> entered{false}, flushed{false};
    std::atomic<int> flush_rc{1};
    std::thread flusher([&] {
      PyGILState_STATE g = PyGILState_Ensure();
      entered = true;
      flush_rc = statsprof_flush(p);  // holds the GIL until its wait releases it
      flushed = true;
      PyGILState_Release(g);
    });
    Py_BEGIN_ALLOW_THREADS;
    while (!entered) usleep(1000);
    Py_END_ALLOW_THREADS;  // the GIL back: the flusher is inside its wait now
    bool during = !flushed;
    statsprof_destroy(p);
    pr.Check(during, "the flush had ended before destroy");
    pr.Check(log.Has(kRefused), "destroy was not refused during the flush:\n" + log.All());
    Py_BEGIN_ALLOW_THREADS;
    flusher.join();
    Py_END_ALLOW_THREADS;
    pr.Check(flush_rc == 0, "flush returned " + std::to_string(flush_rc));
    statsprof_destroy(p);  // now it goes: the stuck sink is abandoned
    log.dead = true;
    stuck.open = true;
    pr.Check(Eventually([&] { return stuck.closes == 1; }), "the abandoned sink was never closed");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// A writer=sync sink that runs Python (here time.sleep, as a Python logger
// might) releases the GIL inside statsprof_frame_mark's spike record, which
// did not mark the profiler busy either: another thread's destroy freed it
// and frame_mark went on in freed memory (ASan: heap-use-after-free in
// statsprof__writers_emit; without ASan the destroy simply succeeded).
struct PySleepSink {
  std::atomic<bool> in_spike{false};
  std::atomic<int> closes{0};
};

int PySleepEmit(void *ctx, const statsprof_stats_profile *rec) {
  auto *s = static_cast<PySleepSink *>(ctx);
  if (rec->kind != STATSPROF_RECORD_SPIKE) return 0;
  s->in_spike = true;
  return PyRun_SimpleString("import time\ntime.sleep(0.2)\n") == 0 ? 0 : STATSPROF_EIO;
}

void PySleepClose(void *ctx) { static_cast<PySleepSink *>(ctx)->closes++; }

const statsprof_sink_ops kPySleepOps = {STATSPROF_SINK_VERSION, "pysleep", PySleepEmit, nullptr, PySleepClose,
                                        nullptr};

TEST(Writer, DestroyOnAnotherThreadWhileASpikesSyncSinkRunsPythonIsRefused) {
  void *ns = pyh::Exec(kProgram);
  std::string problems = child::Run([&] {
    child::Problems pr;
    pyh::LogLines log;
    PySleepSink sink;
    statsprof *p = nullptr;
    if (statsprof_create("sink=none;writer=sync;interval=1h;budget=1ns;max_spikes_per_min=100000", &p) != 0)
      return std::string("create failed");
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    statsprof_add_sink(p, &kPySleepOps, &sink);
    statsprof_start(p);
    statsprof_frame_mark(p);
    std::atomic<bool> destroyed{false};
    std::thread destroyer([&] {
      while (!sink.in_spike) usleep(1000);
      PyGILState_STATE g = PyGILState_Ensure();  // while the sink sleeps in Python
      statsprof_destroy(p);
      destroyed = true;
      PyGILState_Release(g);
    });
    pyh::Call(ns, "g");
    int rc = statsprof_frame_mark(p);  // a spike: the sink runs Python, the destroyer gets the GIL
    pr.Check(rc == 1, "frame_mark returned " + std::to_string(rc));
    Py_BEGIN_ALLOW_THREADS;
    destroyer.join();
    Py_END_ALLOW_THREADS;
    pr.Check(destroyed, "the destroyer did not finish");
    pr.Check(log.Has(kRefused), "destroy was not refused during frame_mark:\n" + log.All());
    pr.Check(sink.closes == 0, "the sink was closed during frame_mark");
    statsprof_destroy(p);
    log.dead = true;
    pr.Check(sink.closes == 1, "closes " + std::to_string(sink.closes));
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

// ---- fork ------------------------------------------------------------------

// A sink that appends "writer_pid record_pid seq" per record to a file
// (one small O_APPEND write each), after its gate opens.
std::atomic<bool> g_tag_gate{false};
int g_tag_fd = -1;

// Set when the writer thread waits at the gate: the test forks only then,
// so the fork never catches that thread inside the allocator (a sanitizer's
// allocator is not fork-safe: under ASan a child forked while the thread
// was still starting hung on its lock).
std::atomic<bool> g_tag_waiting{false};

int TagEmit(void *, const statsprof_stats_profile *rec) {
  if (!g_tag_gate) {
    g_tag_waiting = true;
    while (!g_tag_gate) usleep(1000);
  }
  char line[96];
  int n = snprintf(line, sizeof line, "%d %lld %llu\n", (int)getpid(), (long long)rec->pid,
                   (unsigned long long)rec->seq);
  return write(g_tag_fd, line, (size_t)n) == n ? 0 : STATSPROF_EIO;
}

const statsprof_sink_ops kTagOps = {STATSPROF_SINK_VERSION, "tag", TagEmit, nullptr, nullptr, nullptr};

// The child's writers start with zeroed counts: with writer=sync the child
// inherited the parent's sink_errors (its first record said 3, seq 1),
// because only writers with a thread were in the list fork resets.
TEST(Writer, ForkedChildStartsWithZeroedCountsOnEveryWriter) {
  pyh::LogLines log;
  for (const char *writer : {"sync", "thread"}) {
    SCOPED_TRACE(writer);
    pyh::RecordingSink failing;
    failing.fail = STATSPROF_EIO;
    statsprof *p = nullptr;
    std::string config = std::string("sink=none;interval=1h;writer=") + writer;
    ASSERT_EQ(statsprof_create(config.c_str(), &p), 0);
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    ASSERT_EQ(pyh::AddRecordingSink(p, &failing), 0);
    ASSERT_EQ(statsprof_start(p), 0);
    for (int i = 0; i < 3; i++) statsprof_emit_now(p);
    statsprof_flush(p);
    ASSERT_EQ(statsprof_sink_errors(p), 3u);
    size_t before = failing.records.size();
    std::string problems = child::Run([&] {
      child::Problems pr;
      pr.Check(statsprof_sink_errors(p) == 0, "sink_errors " + std::to_string(statsprof_sink_errors(p)) + " at fork");
      statsprof_emit_now(p);
      statsprof_flush(p);
      pr.Check(failing.records.size() == before + 1, "records " + std::to_string(failing.records.size()));
      if (failing.records.size() > before) {
        const pyh::Record &r = failing.records[before];
        pr.Check(r.seq == 1 && r.sink_errors == 0 && r.dropped == 0,
                 "the child's first record: seq " + std::to_string(r.seq) + " sink_errors " +
                     std::to_string(r.sink_errors) + " dropped " + std::to_string(r.dropped));
      }
      pr.Check(statsprof_sink_errors(p) == 1, "sink_errors " + std::to_string(statsprof_sink_errors(p)) + " after");
      statsprof_destroy(p);
      return pr.text;
    });
    EXPECT_TRUE(child::OkUnderTsan(problems)) << problems;
    statsprof_destroy(p);
  }
}

// Issue 11, item 7: records queued in a writer's ring when the host forked
// were written by the parent and again by the child, with the parent's pid
// (the old code did so in every round). The child writes only its own.
TEST(Writer, RecordsQueuedAtForkAreWrittenOnlyByTheParent) {
  void *ns = pyh::Exec(kProgram);
  std::string dir = pyh::TempDir();
  for (int round = 1; round <= 6; round++) {
    std::string path = dir + "/tags" + std::to_string(round);
    g_tag_fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(g_tag_fd, 0);
    g_tag_gate = false;
    g_tag_waiting = false;
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create("sink=none;interval=1h", &p), 0);
    ASSERT_EQ(statsprof_add_sink(p, &kTagOps, nullptr), 0);
    ASSERT_EQ(statsprof_start(p), 0);
    for (int i = 0; i < round; i++) {  // record 1 in emit, the rest queued
      pyh::Call(ns, "g");
      ASSERT_EQ(statsprof_emit_now(p), 0);
    }
    for (int ms = 0; !g_tag_waiting && ms < 60000; ms++) usleep(1000);  // a hang guard, not a time limit
    ASSERT_TRUE(g_tag_waiting) << "round " << round << ": the writer thread never reached the sink";
    std::string problems = child::Run([&] {
      g_tag_gate = true;
      pyh::Call(ns, "g");
      statsprof_emit_now(p);  // the child's own record
      statsprof_destroy(p);
      return std::string();
    });
    EXPECT_TRUE(child::OkUnderTsan(problems)) << "round " << round << ": " << problems;
    g_tag_gate = true;
    statsprof_destroy(p);
    close(g_tag_fd);
    std::istringstream in(pyh::ReadFile(path));
    std::map<uint64_t, int> parent_seqs;
    int child_lines = 0;
    for (long writer, rec_pid; in >> writer >> rec_pid;) {
      uint64_t seq;
      in >> seq;
      EXPECT_EQ(writer, rec_pid) << "round " << round << ": process " << writer << " wrote a record of " << rec_pid
                                 << " (seq " << seq << ")";
      if (writer == getpid()) parent_seqs[seq]++;
      else child_lines++;
    }
    EXPECT_EQ(child_lines, 1) << "round " << round;
    ASSERT_EQ(parent_seqs.size(), (size_t)round) << "round " << round;
    for (auto [seq, n] : parent_seqs) EXPECT_EQ(n, 1) << "round " << round << ": seq " << seq;
  }
  pyh::Release(ns);
}

}  // namespace
