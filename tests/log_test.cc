// log_test.cc — everything the library reports after a call returned goes
// through the host's log function (statsprof_set_log); without one it is
// a line on fd 2, and never through stdio.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "child.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

constexpr auto npos = std::string::npos;

// STATSPROF_DEBUG=1 for one test: statsprof_start logs the calibration.
struct DebugEnv {
  DebugEnv() { setenv("STATSPROF_DEBUG", "1", 1); }
  ~DebugEnv() { unsetenv("STATSPROF_DEBUG"); }
};

// Creates, starts, stops and destroys a profiler with fd 2 captured;
// returns what reached fd 2.
std::string StartAndStop(pyh::LogLines *log) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create("sink=none", &p), 0) << statsprof_errmsg(nullptr);
  if (log) statsprof_set_log(p, pyh::LogLines::Fn, log);
  return pyh::CaptureStderr([&] {
    EXPECT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
    EXPECT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
    statsprof_destroy(p);
  });
}

TEST(Log, CalibrationGoesToTheHostsLogFunctionAndNothingToFd2) {
  DebugEnv debug;
  pyh::LogLines log;
  EXPECT_EQ(StartAndStop(&log), "");
  ASSERT_EQ(log.lines.size(), 1u);
  const std::string &m = log.lines[0];
  EXPECT_EQ(m.rfind("calibrated ", 0), 0u) << m;
  EXPECT_NE(m.find(" ticks per Python event, "), npos) << m;
  EXPECT_NE(m.find(" per C event, "), npos) << m;
  EXPECT_NE(m.find(", bytecode x"), npos) << m;
  EXPECT_EQ(m.find('\n'), npos) << m;  // the host gets the message, not a line
}

TEST(Log, WithoutALogFunctionTheMessageIsOneLineOnFd2) {
  DebugEnv debug;
  std::string err = StartAndStop(nullptr);
  EXPECT_EQ(err.rfind("statsprof: calibrated ", 0), 0u) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
}

// The first start on a clock calibrates, and times the bare call it
// compares later starts with; a later start times it again and logs the
// ratio. The first used to log "x0.00" of the reference, a ratio that was
// never measured (and below x0.80, as if the costs had been scaled to 0).
// clock=cpu: no other test here calibrated it.
TEST(Log, CalibrationLogsTheBareCallRatioOnlyWhereItWasMeasured) {
  DebugEnv debug;
  pyh::LogLines log;
  for (int i = 0; i < 2; i++) {
    statsprof *p = nullptr;
    ASSERT_EQ(statsprof_create("sink=none;clock=cpu", &p), 0) << statsprof_errmsg(nullptr);
    statsprof_set_log(p, pyh::LogLines::Fn, &log);
    ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
    ASSERT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
    statsprof_destroy(p);
  }
  ASSERT_EQ(log.lines.size(), 2u);
  EXPECT_NE(log.lines[0].find("; a bare call took "), npos) << log.lines[0];
  EXPECT_NE(log.lines[0].find(" ticks at the calibration (not timed again at this start)"), npos) << log.lines[0];
  EXPECT_EQ(log.lines[0].find(" x0.00 "), npos) << log.lines[0];
  EXPECT_NE(log.lines[1].find("; a bare call takes x"), npos) << log.lines[1];
  EXPECT_EQ(log.lines[1].find(" x0.00 "), npos) << log.lines[1];
}

TEST(Log, NothingIsLoggedWithoutStatsprofDebug) {
  pyh::LogLines log;
  EXPECT_EQ(StartAndStop(&log), "");
  EXPECT_TRUE(log.lines.empty()) << log.lines[0];
}

TEST(Log, SinkFailureGoesToTheHostsLogFunctionAndNothingToFd2) {
  void *ns = pyh::Exec("def f(): pass\n");
  pyh::LogLines log;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=jsonl:/dev/full;interval=1h", &p), 0) << statsprof_errmsg(nullptr);
  statsprof_set_log(p, pyh::LogLines::Fn, &log);
  std::string err = pyh::CaptureStderr([&] {
    ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
    pyh::Call(ns, "f");
    EXPECT_EQ(statsprof_emit_now(p), 0);
    EXPECT_EQ(statsprof_flush(p), 0);
    statsprof_destroy(p);
  });
  EXPECT_EQ(err, "");
  ASSERT_FALSE(log.lines.empty());
  EXPECT_EQ(log.lines[0],
            "sink jsonl failed to write record 1: cannot write to '/dev/full': No space left on device "
            "(1 failures so far)");
  pyh::Release(ns);
}

// statsprof_from_env has no handle a host could give a log function.
TEST(Log, FromEnvWithABadConfigIsOneLineOnFd2) {
  setenv("STATSPROF_LOG_TEST", "bogus=1", 1);
  statsprof *p = reinterpret_cast<statsprof *>(0x1);
  std::string err = pyh::CaptureStderr([&] { p = statsprof_from_env("STATSPROF_LOG_TEST"); });
  unsetenv("STATSPROF_LOG_TEST");
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(err.rfind("statsprof: STATSPROF_LOG_TEST is not a valid profiler config, profiling stays off: ", 0), 0u)
      << err;
  EXPECT_NE(err.find("bogus"), npos) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
}

// statsprof_log_stderr is the default log's writer, for a host's log
// function that falls back on it (the Python package's, once logging is
// gone): one "statsprof: " line on fd 2, a long message cut, not its newline.
TEST(Log, LogStderrWritesTheDefaultsLine) {
  int rc = -1;
  std::string err = pyh::CaptureStderr([&] { rc = statsprof_log_stderr("a sink failed", 1000); });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(err, "statsprof: a sink failed\n");
  std::string longer(4000, 'x');
  err = pyh::CaptureStderr([&] { rc = statsprof_log_stderr(longer.c_str(), 1000); });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(err.rfind("statsprof: xxx", 0), 0u) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
  EXPECT_LT(err.size(), longer.size());
}

// A stderr nobody reads: with stall_ms 0 the write gives up at once
// (ETIMEDOUT), so a caller that saw one stall need not wait again; a
// stderr whose reader went away is EPIPE, not a SIGPIPE that kills the
// host (the signal's default action here, as in a host that keeps it).
TEST(Log, LogStderrGivesUpOnAFullPipeAndSurvivesAClosedOne) {
  std::string problems = child::Run([&] {
    child::Problems pr;
    signal(SIGPIPE, SIG_DFL);
    int reader = child::FullStderrPipe();
    if (reader < 0) return std::string("pipe");
    errno = 0;
    int rc = statsprof_log_stderr("nobody reads this", 0);
    int err = errno;
    pr.Check(rc == -1 && err == ETIMEDOUT, "full pipe: rc " + std::to_string(rc) + " errno " + std::to_string(err));
    close(reader);  // the reader goes away
    errno = 0;
    rc = statsprof_log_stderr("the reader is gone", 1000);
    err = errno;
    pr.Check(rc == -1 && err == EPIPE, "closed pipe: rc " + std::to_string(rc) + " errno " + std::to_string(err));
    return pr.text;
  }, 60);
  EXPECT_EQ(problems, "");
}

// Each default log line waited its full stall limit (1 s) on a stderr
// nobody reads, so a shutdown that logs a line per stuck sink (16 sinks:
// 16 s) overran its stop_timeout by that much. After one line gave up the
// next ones write only what fits now, until one gets through: the old code
// took at least 10 s for the 10 lines below (a timed wait each that cannot
// end sooner); the bound is half that.
TEST(Log, AfterOneStalledDefaultLineTheNextOnesDoNotWait) {
  std::string problems = child::Run([&] {
    child::Problems pr;
    int reader = child::FullStderrPipe();
    if (reader < 0) return std::string("pipe");
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; i++) statsprof__logf(nullptr, "line %d nobody reads", i);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pr.Check(took < 5.0, "10 lines on a full stderr took " + std::to_string(took) + " s: each waited");
    char buf[65536];
    while (read(reader, buf, sizeof buf) == 8192) continue;  // the filler, drained: room again
    statsprof__logf(nullptr, "room again");
    ssize_t n = read(reader, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    pr.Check(std::string(buf).find("statsprof: room again\n") != npos, std::string("after the drain: ") + buf);
    return pr.text;
  }, 60);
  EXPECT_EQ(problems, "");
}

// A stderr that is a file past RLIMIT_FSIZE: the write raised SIGXFSZ,
// whose default action killed the host. Now it fails with EFBIG; in a
// child, which the old code's first call killed.
TEST(Log, LogStderrIntoAFileAtItsSizeLimitFailsWithEfbig) {
  std::string path = pyh::TempDir() + "/err.log";
  std::string problems = child::Run([&] {
    child::Problems pr;
    signal(SIGXFSZ, SIG_DFL);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, 2) != 2) return std::string("no file on fd 2");
    close(fd);
    struct rlimit rl = {16, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return std::string("setrlimit");
    for (int i = 0; i < 3; i++) {
      errno = 0;
      int rc = statsprof_log_stderr("a line longer than the limit", 1000);
      int err = errno;
      pr.Check(rc == -1 && err == EFBIG, "rc " + std::to_string(rc) + " errno " + std::to_string(err));
    }
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  EXPECT_EQ(pyh::ReadFile(path), "statsprof: a lin");  // the first 16 bytes
}

}  // namespace
