// callgrind_sink_test.cc — sink=callgrind:DIR writes one Callgrind profile
// per record: callgrind_annotate (valgrind's own reader) loads it and shows
// exactly the record's functions, call counts and self times.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "lib_internal.h"
#include "pyharness.h"

namespace {

// ---- what the sink received -------------------------------------------

struct Func {
  std::string file, name;
  int line = 0;
  uint64_t ncalls = 0;
  double tottime = 0, cumtime = 0;
  std::map<std::string, uint64_t> caller_calls;  // caller label -> calls
};

struct Rec {
  uint64_t seq = 0, thread_id = 0;
  int64_t pid = 0;
  double total_tt = 0;
  std::map<std::string, Func> funcs;  // label -> function
};

// How the file names a function: "name:line", or the bare name for C
// functions (line 0); callgrind_annotate prefixes the file.
std::string Label(const std::string &file, int line, const std::string &name) {
  return file + ":" + name + (line ? ":" + std::to_string(line) : "");
}

struct Capture {
  std::vector<Rec> records;
};

int CaptureEmit(void *ctx, const statsprof_stats_profile *r) {
  Rec rec;
  rec.seq = r->seq;
  rec.pid = r->pid;
  rec.thread_id = r->thread_id;
  rec.total_tt = r->total_tt;
  for (size_t i = 0; i < r->nfunc_profiles; i++) {
    const statsprof_function_profile &f = r->func_profiles[i];
    Func &out = rec.funcs[Label(f.file_name, f.line_number, f.function_name)];
    out.file = f.file_name;
    out.name = f.function_name;
    out.line = f.line_number;
    out.ncalls = f.ncalls;
    out.tottime = f.tottime;
    out.cumtime = f.cumtime;
    for (size_t j = 0; j < f.ncallers; j++) {
      const statsprof_caller_profile &c = f.callers[j];
      out.caller_calls[Label(c.file_name, c.line_number, c.function_name)] = c.ncalls;
    }
  }
  static_cast<Capture *>(ctx)->records.push_back(rec);
  return 0;
}

const statsprof_sink_ops kCaptureOps = {
    .version = STATSPROF_SINK_VERSION,
    .name = "capture",
    .emit = CaptureEmit,
    .flush = nullptr,
    .close = nullptr};

// The sink's unit: integer nanoseconds, rounded.
uint64_t Ns(double s) { return s > 0 ? (uint64_t)std::llround(s * 1e9) : 0; }

// ---- files and callgrind_annotate ---------------------------------------

std::vector<std::string> ListDir(const std::string &dir) {
  std::vector<std::string> names;
  DIR *d = opendir(dir.c_str());
  if (!d) return names;
  while (dirent *e = readdir(d))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names.push_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string FindTool(const char *name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/bin:/usr/local/bin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

#define REQUIRE_ANNOTATE()                                                        \
  if (FindTool("callgrind_annotate").empty())                                    \
  GTEST_SKIP() << "callgrind_annotate not found (Debian package valgrind; tools/setup " \
                  "installs it)"

struct ToolRun {
  int status = -1;
  std::string out, err;
};

// Runs callgrind_annotate with `args` on `file`; stdout and stderr apart.
ToolRun Annotate(const std::string &args, const std::string &file) {
  ToolRun r;
  std::string err_path = pyh::TempDir() + "/stderr";
  std::string cmd = FindTool("callgrind_annotate") + " " + args + " '" + file + "' 2>'" + err_path + "'";
  FILE *f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = pyh::ReadFile(err_path);
  return r;
}

uint64_t Number(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  return std::stoull(s);
}

// "--inclusive=yes": function -> cost column.
std::map<std::string, uint64_t> CostTable(const std::string &out, uint64_t *program_total) {
  std::map<std::string, uint64_t> costs;
  static const std::regex row(R"(^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$)");
  std::stringstream ss(out);
  std::string line;
  std::smatch m;
  while (std::getline(ss, line)) {
    if (!std::regex_match(line, m, row)) continue;
    if (m[2] == "PROGRAM TOTALS") *program_total = Number(m[1]);
    else costs[m[2]] = Number(m[1]);
  }
  return costs;
}

// "--tree=caller": each function's self cost ("*" line) and the callers
// listed above it ("<" lines) with their call counts.
struct TreeFunc {
  uint64_t self = 0;
  std::map<std::string, uint64_t> caller_calls;
  std::map<std::string, uint64_t> caller_cost;
};

std::map<std::string, TreeFunc> CallerTree(const std::string &out) {
  std::map<std::string, TreeFunc> tree;
  static const std::regex caller(R"(^\s*([\d,]+) \(\s*[\d.]+%\)\s+<\s+(.*) \((\d+)x\)( \[.*\])?$)");
  static const std::regex self(R"(^\s*([\d,]+) \(\s*[\d.]+%\)\s+\*\s+(.*)$)");
  std::map<std::string, uint64_t> calls, cost;
  std::stringstream ss(out);
  std::string line;
  std::smatch m;
  while (std::getline(ss, line)) {
    if (std::regex_match(line, m, caller)) {
      calls[m[2]] += std::stoull(m[3]);
      cost[m[2]] += Number(m[1]);
    } else if (std::regex_match(line, m, self)) {
      TreeFunc &f = tree[m[2]];
      f.self = Number(m[1]);
      f.caller_calls = calls;
      f.caller_cost = cost;
      calls.clear();
      cost.clear();
    }
  }
  return tree;
}

// The "key: value" header lines, the self-cost sum and the totals line of
// a file, read the simple way (every line after fn= that is not a call).
struct Parsed {
  std::map<std::string, std::string> header;
  uint64_t self_sum = 0, totals = 0;
  std::vector<std::string> lines;
};

Parsed ParseFile(const std::string &path) {
  Parsed p;
  std::stringstream ss(pyh::ReadFile(path));
  std::string line;
  bool body = false, after_calls = false;
  while (std::getline(ss, line)) {
    p.lines.push_back(line);
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(": ");
    if (!body && colon != std::string::npos) {
      p.header[line.substr(0, colon)] = line.substr(colon + 2);
      if (line.rfind("summary: ", 0) == 0) body = true;
      continue;
    }
    if (line.rfind("totals: ", 0) == 0) {
      p.totals = std::stoull(line.substr(8));
    } else if (line.rfind("calls=", 0) == 0) {
      after_calls = true;
    } else if (isdigit((unsigned char)line[0])) {
      if (!after_calls) p.self_sum += std::stoull(line.substr(line.find(' ') + 1));
      after_calls = false;
    }
  }
  return p;
}

// ---- the program --------------------------------------------------------

// main -> a x3, a -> b x2 each, main -> rec(4): recursion 4 deep, and one
// C function. Line numbers: b 1, a 3, rec 5, main 7.
const char kProgram[] = R"(def b(n):
    return n * 2
def a(i):
    return b(i) + b(i + 1)
def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)
def main():
    for i in range(3):
        a(i)
    rec(4)
    return len("x")
)";

// Profiles ns.main() with sink=callgrind:DIR and a capture sink. Tests pass
// compensate=off: compensation may bring a tiny function's self time to 0,
// and callgrind_annotate leaves functions without cost out of its lists.
void ProfileMain(const std::string &config, void *ns, Capture *cap) {
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_add_sink(p, &kCaptureOps, cap), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 0u);
  statsprof_destroy(p);
}

TEST(CallgrindSink, AnnotateShowsExactCallCountsAndSelfTimesOfTheRecord) {
  REQUIRE_ANNOTATE();
  std::string dir = pyh::TempDir() + "/cg";
  void *ns = pyh::Exec(kProgram, "program.py");
  Capture cap;
  ProfileMain("compensate=off;sink=callgrind:" + dir, ns, &cap);
  ASSERT_EQ(cap.records.size(), 1u);
  const Rec &rec = cap.records[0];
  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], "callgrind.out.statsprof.1." + std::to_string(getpid()));
  std::string path = dir + "/" + files[0];

  const std::string kMain = "program.py:main:7", kA = "program.py:a:3", kB = "program.py:b:1",
                    kRec = "program.py:rec:5", kLen = "~:<built-in method builtins.len>";
  for (const std::string &k : {kMain, kA, kB, kRec, kLen}) ASSERT_EQ(rec.funcs.count(k), 1u) << k;

  // --tree=caller: who called whom, how often, and each one's self time.
  ToolRun tree = Annotate("--tree=caller --threshold=100 --auto=no", path);
  ASSERT_EQ(tree.status, 0) << tree.err;
  EXPECT_EQ(tree.err.find("WARNING"), std::string::npos) << tree.err;
  std::map<std::string, TreeFunc> t = CallerTree(tree.out);
  EXPECT_EQ(t.size(), rec.funcs.size()) << tree.out;
  using Calls = std::map<std::string, uint64_t>;
  EXPECT_EQ(t[kMain].caller_calls, Calls{});
  EXPECT_EQ(t[kA].caller_calls, (Calls{{kMain, 3}}));
  EXPECT_EQ(t[kB].caller_calls, (Calls{{kA, 6}}));
  EXPECT_EQ(t[kRec].caller_calls, (Calls{{kMain, 1}, {kRec, 4}}));
  EXPECT_EQ(t[kLen].caller_calls, (Calls{{kMain, 1}}));
  uint64_t self_sum = 0;
  for (const auto &[k, f] : rec.funcs) {
    SCOPED_TRACE(k);
    ASSERT_EQ(t.count(k), 1u) << tree.out;
    EXPECT_EQ(t[k].self, Ns(f.tottime));
    EXPECT_EQ(t[k].caller_calls, f.caller_calls);
    self_sum += t[k].self;
  }
  // Self times add up to the record's total: each function is rounded to
  // the nearest ns, so they may differ by half a ns per function.
  EXPECT_LE(std::fabs((double)self_sum - rec.total_tt * 1e9), 0.5 * (double)rec.funcs.size() + 1e-6)
      << self_sum << " vs " << rec.total_tt;

  // --inclusive=yes: a function called from one place costs that edge's
  // cumtime; the root costs its self time plus its calls, its cumtime.
  ToolRun incl = Annotate("--inclusive=yes --threshold=100 --auto=no", path);
  ASSERT_EQ(incl.status, 0) << incl.err;
  uint64_t program_total = 0;
  std::map<std::string, uint64_t> c = CostTable(incl.out, &program_total);
  EXPECT_EQ(program_total, self_sum) << incl.out;
  for (const std::string &k : {kA, kB, kLen}) EXPECT_EQ(c[k], Ns(rec.funcs.at(k).cumtime)) << k;
  EXPECT_LE(std::llabs((long long)c[kMain] - (long long)Ns(rec.funcs.at(kMain).cumtime)), 4) << incl.out;
  // main holds every other call: its inclusive time is the whole program,
  // up to the rounding of each function and edge to whole ns.
  EXPECT_LE(std::llabs((long long)c[kMain] - (long long)program_total), (long long)rec.funcs.size())
      << incl.out;
  // The record's ncalls for rec is 5 (1 + 4 recursive), as the tree says.
  EXPECT_EQ(rec.funcs.at(kRec).ncalls, 5u);
  pyh::Release(ns);
}

TEST(CallgrindSink, FilesAreNamedBySeqAndPidAndCarryTheHeader) {
  std::string dir = pyh::TempDir();
  void *ns = pyh::Exec(kProgram, "program.py");
  Capture cap;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=callgrind:" + dir + "/").c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_add_sink(p, &kCaptureOps, &cap), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_stop(p), 0);
  statsprof_destroy(p);

  ASSERT_EQ(cap.records.size(), 2u);
  std::vector<std::string> files = ListDir(dir);
  const std::string pid = std::to_string(getpid());
  ASSERT_EQ(files, (std::vector<std::string>{"callgrind.out.statsprof.1." + pid,
                                             "callgrind.out.statsprof.2." + pid}))
      << "one file per record, no temporary files left";
  for (size_t i = 0; i < 2; i++) {
    SCOPED_TRACE(files[i]);
    Parsed f = ParseFile(dir + "/" + files[i]);
    ASSERT_GE(f.lines.size(), 3u);
    EXPECT_EQ(f.lines[0], "# callgrind format");
    EXPECT_EQ(f.lines[1], "version: 1");
    EXPECT_EQ(f.lines[2], std::string("creator: statsprof ") + STATSPROF_VERSION_STRING);
    EXPECT_EQ(f.header["pid"], pid);
    EXPECT_EQ(f.header["part"], std::to_string(i + 1));
    EXPECT_EQ(f.header["positions"], "line");
    EXPECT_EQ(f.header["events"], "ns");
    EXPECT_NE(f.header["cmd"].find("callgrind_sink_test"), std::string::npos) << f.header["cmd"];
    EXPECT_EQ(f.header.count("thread"), 0u);
    EXPECT_EQ(std::stoull(f.header["summary"]), f.self_sum);
    EXPECT_EQ(f.totals, f.self_sum);
    uint64_t want = 0;
    for (const auto &[k, fn] : cap.records[i].funcs) want += Ns(fn.tottime);
    EXPECT_EQ(f.self_sum, want);
  }
  // The second record is only what happened after the first: main twice.
  EXPECT_EQ(cap.records[1].funcs.at("program.py:a:3").ncalls, 6u);
  std::string second = pyh::ReadFile(dir + "/" + files[1]);
  EXPECT_NE(second.find("\ncalls=6 3\n7 "), std::string::npos) << second;
  pyh::Release(ns);
}

TEST(CallgrindSink, PerThreadRecordsHaveTheirOwnNames) {
  // KCachegrind opening NAME also loads NAME.* and NAME-* as parts of one
  // run and adds them up: a thread's record must not look like a part of
  // the merged one.
  std::string dir = pyh::TempDir();
  void *ns = pyh::Exec(kProgram, "program.py");
  Capture cap;
  ProfileMain("compensate=off;per_thread=on;sink=callgrind:" + dir, ns, &cap);
  ASSERT_EQ(cap.records.size(), 2u);
  uint64_t tid = cap.records[0].thread_id ? cap.records[0].thread_id : cap.records[1].thread_id;
  ASSERT_NE(tid, 0u);
  const std::string pid = std::to_string(getpid());
  std::vector<std::string> files = ListDir(dir);
  const std::string merged = "callgrind.out.statsprof.1." + pid;
  const std::string thread = "callgrind.out.statsprof-thread" + std::to_string(tid) + ".1." + pid;
  ASSERT_EQ(files, (std::vector<std::string>{thread, merged}));  // sorted
  for (const std::string &name : files)
    EXPECT_TRUE(name == merged || (name.rfind(merged + ".", 0) != 0 && name.rfind(merged + "-", 0) != 0)) << name;
  Parsed f = ParseFile(dir + "/" + thread);
  EXPECT_EQ(f.header["thread"], std::to_string(tid));
  EXPECT_EQ(f.header["part"], "1");
  std::string text = pyh::ReadFile(dir + "/" + thread);
  EXPECT_NE(text.find("\ndesc: Thread: MainThread\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ncalls=3 3\n"), std::string::npos) << text;
  EXPECT_EQ(ParseFile(dir + "/" + merged).header.count("thread"), 0u);
  pyh::Release(ns);
}

// A record made by hand: names that would break lines or are not UTF-8,
// two functions of one name in one file, a caller that is not in the
// record, odd times, and a spike.
TEST(CallgrindSink, HandMadeRecordWithHostileNamesStaysWellFormed) {
  std::string dir = pyh::TempDir() + "/hand";
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("callgrind", dir.c_str(), &ops, &ctx, err, sizeof err), 0) << err;

  statsprof_caller_profile init_callers[] = {
      {"run", "m.py", 30, 2, 2, 0.0, 0.000004},       // not a function of the record
      {"make", "m.py", 40, 0, 0, 0.0, 1.0},           // no calls: cannot be written
  };
  statsprof_caller_profile bad_callers[] = {{"__init__", "m.py", 10, 7, 7, 0.0, 0.5e-9}};
  statsprof_function_profile funcs[] = {
      {"__init__", "m.py", 10, 2, 2, 0.000001, 0, 0.000003, 0, 2, init_callers},
      {"__init__", "m.py", 20, 1, 1, 0.000002, 0, 0.000002, 0, 0, nullptr},
      {"line\nbreak\x01", "bad\xff\xfe.py", 5, 7, 7, NAN, 0, INFINITY, 0, 1, bad_callers},
      {"", "", -3, 1, 1, -1.0, 0, -0.0, 0, 0, nullptr},
      {" spaced", "(9) odd.py", 1, 1, 1, 1e-9, 0, 1e-9, 0, 0, nullptr},
  };
  statsprof_stats_profile rec = {};
  rec.nfunc_profiles = sizeof funcs / sizeof funcs[0];
  rec.func_profiles = funcs;
  rec.seq = 12;
  rec.pid = 42;
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_SPIKE;
  rec.frame = 77;
  rec.frame_time_s = 0.25;
  ASSERT_EQ(ops->emit(ctx, &rec), 0);
  ops->close(ctx);

  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files, std::vector<std::string>{"callgrind.out.statsprof-spike77.12.42"});
  std::string path = dir + "/" + files[0];
  Parsed f = ParseFile(path);
  // Every line is one line: the newline and control byte are escaped, as
  // are the invalid bytes.
  std::string text = pyh::ReadFile(path);
  EXPECT_NE(text.find("fn=(3) line\\x0abreak\\x01:5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("cfi=(2) bad\\xff\\xfe.py\n"), std::string::npos) << text;
  EXPECT_NE(text.find("fn=(4) ???:-3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("fn=(5) \\x20spaced:1\n"), std::string::npos) << text;
  // (Its name with its line: the cmd: line holds the test's path, which may
  // say "make" too, as a CMake build directory does.)
  EXPECT_EQ(text.find("make:40"), std::string::npos) << "an edge without calls is left out";
  // Negative lines are written as 0 (a leading '-' means "relative").
  EXPECT_NE(text.find("\n0 0\n"), std::string::npos) << text;
  EXPECT_EQ(f.totals, 1000u + 2000u + 0u + 0u + 1u);
  EXPECT_EQ(f.self_sum, f.totals);
  EXPECT_EQ(std::stoull(f.header["summary"]), f.totals);

  REQUIRE_ANNOTATE();
  ToolRun tree = Annotate("--tree=caller --threshold=100 --auto=no", path);
  ASSERT_EQ(tree.status, 0) << tree.err;
  EXPECT_EQ(tree.err.find("WARNING"), std::string::npos) << tree.err;
  std::map<std::string, TreeFunc> t = CallerTree(tree.out);
  // The two __init__ stay apart; the caller-only "run" calls the first.
  EXPECT_EQ(t["m.py:__init__:10"].self, 1000u) << tree.out;
  EXPECT_EQ(t["m.py:__init__:20"].self, 2000u) << tree.out;
  EXPECT_EQ(t["m.py:__init__:10"].caller_calls, (std::map<std::string, uint64_t>{{"m.py:run:30", 2}}));
  EXPECT_EQ(t["m.py:__init__:10"].caller_cost, (std::map<std::string, uint64_t>{{"m.py:run:30", 4000}}));
  EXPECT_EQ(t["(9) odd.py:\\x20spaced:1"].self, 1u) << tree.out;
}

// A newline is written "\x0a"; a name that held the four characters
// "\x0a" itself was written the same, and the two read back as one. A
// backslash is escaped too now ("\x5c").
TEST(CallgrindSink, ABackslashIsEscapedSoNamesStayApart) {
  std::string dir = pyh::TempDir() + "/bs";
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("callgrind", dir.c_str(), &ops, &ctx, err, sizeof err), 0) << err;
  statsprof_function_profile funcs[] = {
      {"a\nb", "dir\\f.py", 1, 1, 1, 1e-6, 0, 1e-6, 0, 0, nullptr},
      {"a\\x0ab", "dir\\f.py", 1, 1, 1, 1e-6, 0, 1e-6, 0, 0, nullptr},
  };
  statsprof_stats_profile rec = {};
  rec.nfunc_profiles = 2;
  rec.func_profiles = funcs;
  rec.seq = 1;
  rec.pid = 7;
  ASSERT_EQ(ops->emit(ctx, &rec), 0);
  ops->close(ctx);
  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  std::string text = pyh::ReadFile(dir + "/" + files[0]);
  EXPECT_NE(text.find("fl=(1) dir\\x5cf.py\n"), std::string::npos) << text;
  EXPECT_NE(text.find(") a\\x0ab:1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(") a\\x5cx0ab:1\n"), std::string::npos) << text;
}

// A record whose file could not be put in place (every name taken) was
// logged naming the temporary file, deleted by then; it names the
// record's own file now.
TEST(CallgrindSink, AFailedPublishNamesTheRecordsFile) {
  std::string dir = pyh::TempDir() + "/taken";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  std::string base = dir + "/callgrind.out.statsprof.1." + std::to_string(getpid());
  for (int k = 1; k < 1000; k++) {  // base, base.2, ... base.999: every name publish tries
    FILE *f = fopen((k == 1 ? base : base + "." + std::to_string(k)).c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }
  void *ns = pyh::Exec("def f(): pass\n");
  pyh::LogLines log;
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("writer=sync;interval=1h;sink=callgrind:" + dir).c_str(), &p), 0)
      << statsprof_errmsg(nullptr);
  statsprof_set_log(p, pyh::LogLines::Fn, &log);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_destroy(p);
  EXPECT_TRUE(log.Has("cannot publish (rename into place) '" + base + "': File exists")) << log.All();
  EXPECT_EQ(ListDir(dir).size(), 999u);  // and no temporary file left
  pyh::Release(ns);
}

TEST(CallgrindSink, EmptyRecordWritesNoFile) {
  std::string dir = pyh::TempDir();
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("callgrind", dir.c_str(), &ops, &ctx, err, sizeof err), 0) << err;
  statsprof_stats_profile rec = {};
  rec.seq = 1;
  rec.pid = 7;
  EXPECT_EQ(ops->emit(ctx, &rec), 0);
  ops->close(ctx);
  EXPECT_TRUE(ListDir(dir).empty()) << "nor the write probe";
}

TEST(CallgrindSink, SameNameTwiceKeepsBothFiles) {
  // Two profilers in one process share pid and seq.
  std::string dir = pyh::TempDir();
  pyh::OneFunctionRecord one;
  one.rec.seq = 3;
  for (int i = 0; i < 2; i++) ASSERT_EQ(pyh::EmitOnce("callgrind", dir, one.rec), "");
  EXPECT_EQ(ListDir(dir), (std::vector<std::string>{"callgrind.out.statsprof.3.7", "callgrind.out.statsprof.3.7.2"}));
}

TEST(CallgrindSink, UnwritableDirectoryFailsAtCreateNamingThePath) {
  // A directory below a regular file cannot exist, even for root.
  std::string file = pyh::TempDir() + "/plain-file";
  std::ofstream(file) << "x";
  std::string dir = file + "/profiles";
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(("sink=callgrind:" + dir).c_str(), &p), STATSPROF_ESINK);
  EXPECT_EQ(p, nullptr);
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("'" + dir + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Not a directory"), std::string::npos) << msg;

  if (geteuid() != 0) {
    std::string ro = pyh::TempDir() + "/ro";
    ASSERT_EQ(mkdir(ro.c_str(), 0500), 0);
    EXPECT_EQ(statsprof_create(("sink=callgrind:" + ro).c_str(), &p), STATSPROF_ESINK);
    msg = statsprof_errmsg(nullptr);
    EXPECT_NE(msg.find("'" + ro + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
    chmod(ro.c_str(), 0700);
  }

  EXPECT_EQ(statsprof_create("sink=callgrind", &p), STATSPROF_ECONFIG);  // a bad value, not a failing sink
  msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("sink=callgrind:DIR"), std::string::npos) << msg;
}

}  // namespace
