// child.h — runs part of a test in a forked child, for what can hang or
// crash the process (shutdown with stuck sinks, fork itself): the parent
// asserts the child's exit status, and a child that does not finish in time
// is killed and reported as hung instead of hanging the test binary.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "sanitizers.h"

namespace child {

constexpr bool kTsan = sanitizers::kTsan;

// TSan cannot follow fork() while another thread runs: a thread the child
// creates may get the id of a parent thread that is gone in the child,
// which TSan reports ("dup thread with used id") and turns into exit
// status 66. Tests that fork with a writer thread busy accept exactly that
// status under TSan (their real checks are on what the processes wrote).
inline bool OkUnderTsan(const std::string &report) { return report.empty() || (kTsan && report == "exit status 66"); }

// What a child found wrong; empty when all is well.
struct Problems {
  std::string text;
  void Check(bool ok, const std::string &what) {
    if (!ok) text += what + "\n";
  }
};

// A forked child: its pid and the read end of its report pipe.
struct Child {
  pid_t pid = -1;
  int fd = -1;
};

// Forks (Python-safely); the child runs fn, reports what it returns ("" for
// success) through a pipe and _exits with 0 (success) or 1. The parent goes
// on at once (see Wait).
inline Child Start(const std::function<std::string()> &fn) {
  int fds[2];
  Child c;
  if (pipe(fds) != 0) return c;
  PyOS_BeforeFork();
  pid_t pid = fork();
  if (pid == 0) {
    PyOS_AfterFork_Child();
    close(fds[0]);
    std::string problems = fn();
    size_t off = 0;
    while (off < problems.size()) {
      ssize_t n = write(fds[1], problems.data() + off, problems.size() - off);
      if (n <= 0) break;
      off += (size_t)n;
    }
    _exit(problems.empty() ? 0 : 1);
  }
  PyOS_AfterFork_Parent();
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return c;
  }
  c.pid = pid;
  c.fd = fds[0];
  return c;
}

// Waits for the child: its report, or "HUNG"/"CRASHED ..." when it did not
// exit normally within timeout_s (then it is killed). The parent keeps the
// GIL throughout, as the test does.
inline std::string Wait(Child c, int timeout_s = 60) {
  if (c.pid < 0) return "fork failed";
  std::string report;
  int status = 0;
  bool done = false;
  for (int waited_ms = 0; waited_ms < timeout_s * 1000 && !done; waited_ms += 10) {
    char buf[4096];
    struct pollfd pfd = {c.fd, POLLIN, 0};
    while (poll(&pfd, 1, 0) > 0) {
      ssize_t n = read(c.fd, buf, sizeof buf);
      if (n <= 0) break;
      report.append(buf, (size_t)n);
    }
    done = waitpid(c.pid, &status, WNOHANG) == c.pid;
    if (!done) usleep(10000);
  }
  if (!done) {
    kill(c.pid, SIGKILL);
    waitpid(c.pid, &status, 0);
    close(c.fd);
    return "HUNG: the child did not finish within " + std::to_string(timeout_s) + " s\n" + report;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(c.fd, buf, sizeof buf)) > 0) report.append(buf, (size_t)n);
  close(c.fd);
  if (WIFSIGNALED(status)) return "CRASHED with signal " + std::to_string(WTERMSIG(status)) + "\n" + report;
  if (WEXITSTATUS(status) != 0 && report.empty()) return "exit status " + std::to_string(WEXITSTATUS(status));
  return report;
}

// Start and Wait.
inline std::string Run(const std::function<std::string()> &fn, int timeout_s = 60) {
  return Wait(Start(fn), timeout_s);
}

// For a child: makes fd 2 a pipe nobody reads, with no room left (4 KiB,
// filled), blocking as stderr usually is. Returns the read end (the
// caller may close it: a reader gone), or -1.
inline int FullStderrPipe() {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fcntl(fds[1], F_SETPIPE_SZ, 4096);
  dup2(fds[1], 2);
  close(fds[1]);
  std::string filler(8192, 'x');
  fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK);
  while (write(2, filler.data(), filler.size()) > 0) continue;  // fill the pipe
  fcntl(2, F_SETFL, fcntl(2, F_GETFL) & ~O_NONBLOCK);
  return fds[0];
}

}  // namespace child
