// pstats_sink_test.cc — sink=pstats:DIR writes cProfile.dump_stats files:
// each one loads with pstats.Stats and holds exactly the record it came from,
// and the counts match cProfile's on the same code.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "lib_internal.h"
#include "pyharness.h"

// While set, renameat2 fails with EINVAL for RENAME_NOREPLACE, as on NFS
// and FUSE file systems (this definition replaces libc's in the binary).
static std::atomic<bool> g_no_rename_noreplace{false};
extern "C" int renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags) noexcept {
  if (g_no_rename_noreplace && (flags & RENAME_NOREPLACE)) {
    errno = EINVAL;
    return -1;
  }
  return (int)syscall(SYS_renameat2, from_dir, from, to_dir, to, flags);
}

namespace {

// One function as pstats keeps it, with exact times.
struct Row {
  uint64_t nc = 0, cc = 0;
  double tt = 0, ct = 0;
  std::map<std::string, std::tuple<uint64_t, uint64_t, double, double>> callers;  // nc, cc, tt, ct
  bool operator==(const Row &o) const {
    return nc == o.nc && cc == o.cc && tt == o.tt && ct == o.ct && callers == o.callers;
  }
};
using Rows = std::map<std::string, Row>;

std::string Key(const std::string &file, long line, const std::string &name) {
  return file + ":" + std::to_string(line) + "(" + name + ")";
}

Rows FromRecord(const statsprof_stats_profile *rec) {
  Rows rows;
  for (size_t i = 0; i < rec->nfunc_profiles; i++) {
    const statsprof_function_profile &f = rec->func_profiles[i];
    Row &r = rows[Key(f.file_name, f.line_number, f.function_name)];
    r.nc = f.ncalls;
    r.cc = f.primitive_calls;
    r.tt = f.tottime;
    r.ct = f.cumtime;
    for (size_t j = 0; j < f.ncallers; j++) {
      const statsprof_caller_profile &c = f.callers[j];
      r.callers[Key(c.file_name, c.line_number, c.function_name)] = {c.ncalls, c.primitive_calls,
                                                                      c.tottime, c.cumtime};
    }
  }
  return rows;
}

pyh::CountMap Counts(const Rows &rows) {
  pyh::CountMap m;
  for (const auto &[k, r] : rows) {
    pyh::Counts &c = m[k];
    c.nc = r.nc;
    c.cc = r.cc;
    for (const auto &[ck, cv] : r.callers) c.callers[ck] = {std::get<0>(cv), std::get<1>(cv)};
  }
  return m;
}

// A host sink that keeps a copy of every record, to compare files against.
struct Capture {
  std::vector<Rows> records;
  struct Header {
    uint64_t seq;
    int64_t end_ns;
  };
  std::vector<Header> headers;
};

int CaptureEmit(void *ctx, const statsprof_stats_profile *rec) {
  auto *c = static_cast<Capture *>(ctx);
  c->records.push_back(FromRecord(rec));
  c->headers.push_back({rec->seq, rec->end_ns});
  return 0;
}

const statsprof_sink_ops kCaptureOps = {
    .version = STATSPROF_SINK_VERSION,
    .name = "capture",
    .emit = CaptureEmit,
    .flush = nullptr,
    .close = nullptr};

// Loads a file with pstats.Stats, checking the value types cProfile writes.
const char kLoader[] = R"PY(
import io, pstats
def load(path):
    st = pstats.Stats(path)
    out = []
    for key, value in st.stats.items():
        assert type(key) is tuple and len(key) == 3, key
        f, l, n = key
        assert type(f) is str and type(l) is int and type(n) is str, key
        assert type(value) is tuple and len(value) == 5, value
        cc, nc, tt, ct, callers = value
        assert type(cc) is int and type(nc) is int, value
        assert type(tt) is float and type(ct) is float, value
        assert type(callers) is dict, value
        cl = []
        for ckey, cv in callers.items():
            assert type(cv) is tuple and len(cv) == 4, cv
            assert [type(v) for v in cv] == [int, int, float, float], cv
            cl.append((ckey[0], ckey[1], ckey[2]) + cv)
        out.append((f, l, n, nc, cc, tt, ct, cl))
    # The report works on it too.
    s = io.StringIO()
    pstats.Stats(path, stream=s).sort_stats('cumulative').print_stats()
    pstats.Stats(path, stream=s).print_callers()
    return out
)PY";

Rows LoadPstats(const std::string &path) {
  static void *ns = pyh::Exec(kLoader, "<pstats_loader>");
  Rows rows;
  PyObject *fn = PyDict_GetItemString((PyObject *)ns, "load");
  PyObject *r = PyObject_CallFunction(fn, "s", path.c_str());
  if (!r) {
    ADD_FAILURE() << "pstats.Stats(" << path << ") failed: " << pyh::TakeError();
    return rows;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(r); i++) {
    PyObject *t = PyList_GET_ITEM(r, i);
    Row &row = rows[Key(PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, 0)), PyLong_AsLong(PyTuple_GET_ITEM(t, 1)),
                        PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, 2)))];
    row.nc = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(t, 3));
    row.cc = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(t, 4));
    row.tt = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 5));
    row.ct = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 6));
    PyObject *cl = PyTuple_GET_ITEM(t, 7);
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(cl); j++) {
      PyObject *c = PyList_GET_ITEM(cl, j);
      row.callers[Key(PyUnicode_AsUTF8(PyTuple_GET_ITEM(c, 0)), PyLong_AsLong(PyTuple_GET_ITEM(c, 1)),
                      PyUnicode_AsUTF8(PyTuple_GET_ITEM(c, 2)))] = {
          PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(c, 3)), PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(c, 4)),
          PyFloat_AsDouble(PyTuple_GET_ITEM(c, 5)), PyFloat_AsDouble(PyTuple_GET_ITEM(c, 6))};
    }
  }
  Py_DECREF(r);
  EXPECT_FALSE(PyErr_Occurred()) << pyh::TakeError();
  return rows;
}

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

std::string Describe(const Rows &want, const Rows &got) {
  std::string out;
  for (const auto &[k, w] : want) {
    auto it = got.find(k);
    if (it == got.end()) out += "missing " + k + "\n";
    else if (!(it->second == w)) out += "differs " + k + "\n";
  }
  for (const auto &[k, g] : got)
    if (!want.count(k)) out += "extra " + k + "\n";
  return out;
}

std::string UtcStamp(int64_t ns) {
  time_t secs = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// Profiles ns[fn]() into `dir` with a capture sink beside the pstats one.
void ProfileInto(const std::string &dir, void *ns, const char *fn, Capture *cap) {
  statsprof *p = nullptr;
  std::string config = "sink=pstats:" + dir;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_add_sink(p, &kCaptureOps, cap), 0);
  ASSERT_EQ(statsprof_start(p), 0) << statsprof_errmsg(p);
  if (!pyh::Call(ns, fn)) PyErr_Clear();
  EXPECT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);
  statsprof_destroy(p);
}

const char kProgram[] = R"(
import collections, functools
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
def even(n): return True if n == 0 else odd(n - 1)
def odd(n): return False if n == 0 else even(n - 1)
def boom(): raise ValueError("x")
def gen(n):
    for i in range(n): yield i
def main():
    d = collections.deque()
    for i in range(20):
        d.append(fib(i % 7))
        even(i)
    try: boom()
    except ValueError: pass
    part = functools.partial(max, 3)
    return sum(gen(10)) + part(4) + len(sorted(d, key=lambda v: -v))
def second():
    for i in range(5): fib(5)
)";

TEST(PstatsSink, EachRecordIsAFileThatLoadsAsExactlyThatRecord) {
  std::string dir = pyh::TempDir() + "/records";
  void *ns = pyh::Exec(kProgram, "program.py");
  Capture cap;
  statsprof *p = nullptr;
  std::string config = "sink=pstats:" + dir;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_add_sink(p, &kCaptureOps, &cap), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
  ASSERT_TRUE(pyh::Call(ns, "second"));
  ASSERT_EQ(statsprof_stop(p), 0) << statsprof_errmsg(p);  // emits the second record
  statsprof_destroy(p);

  ASSERT_EQ(cap.records.size(), 2u);
  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 2u) << "temporary files must not stay behind";
  const std::string pid = std::to_string(getpid());
  for (size_t i = 0; i < 2; i++) {
    const Capture::Header &h = cap.headers[i];
    char seq[16];
    snprintf(seq, sizeof seq, "%06llu", (unsigned long long)h.seq);
    EXPECT_EQ(files[i], std::string("statsprof-") + seq + "-" + UtcStamp(h.end_ns) + "-" + pid + ".prof");
    EXPECT_TRUE(std::regex_match(files[i], std::regex(R"(statsprof-\d{6}-\d{8}T\d{6}Z-\d+\.prof)")));
    Rows got = LoadPstats(dir + "/" + files[i]);
    EXPECT_FALSE(got.empty());
    EXPECT_EQ(Describe(cap.records[i], got), "") << files[i];
  }
  EXPECT_EQ(cap.headers[0].seq, 1u);
  EXPECT_EQ(cap.headers[1].seq, 2u);
  // The second record is only what happened after the first.
  Rows second = LoadPstats(dir + "/" + files[1]);
  EXPECT_EQ(second.at("program.py:3(fib)").nc, 5u * 15u);
  EXPECT_EQ(second.at("program.py:3(fib)").cc, 5u);
  EXPECT_EQ(second.count("program.py:9(main)"), 0u);
  pyh::Release(ns);
}

TEST(PstatsSink, CountsAndCallersMatchCProfile) {
  void *ns = pyh::Exec(kProgram, "program.py");
  pyh::CountMap want = pyh::CProfileRun(ns, "main");
  std::string dir = pyh::TempDir();
  Capture cap;
  ProfileInto(dir, ns, "main", &cap);
  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  Rows got = LoadPstats(dir + "/" + files[0]);
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(pyh::Diff(want, Counts(got)), "");
  // Spot checks of the orders: a function is (cc, nc), a caller (nc, cc).
  const Row &fib = got.at("program.py:3(fib)");
  EXPECT_EQ(fib.cc, 20u);
  EXPECT_GT(fib.nc, fib.cc);
  auto from_main = fib.callers.at("program.py:9(main)");
  EXPECT_EQ(std::get<0>(from_main), 20u);
  EXPECT_EQ(std::get<1>(from_main), 20u);
  EXPECT_EQ(std::get<0>(fib.callers.at("program.py:3(fib)")), fib.nc - 20);
  ASSERT_EQ(cap.records.size(), 1u);
  EXPECT_EQ(Describe(cap.records[0], got), "");
  pyh::Release(ns);
}

// pyh::Exec passes the file name through Py_CompileString, which decodes it
// with the locale's encoding (ASCII under Bazel): compile with a str instead.
void *ExecUtf8(const char *code, const std::string &file) {
  PyObject *ns = PyDict_New();
  PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
  PyObject *name = PyUnicode_FromString(file.c_str());
  PyObject *co = name ? Py_CompileStringObject(code, name, Py_file_input, nullptr, -1) : nullptr;
  PyObject *r = co ? PyEval_EvalCode(co, ns, ns) : nullptr;
  if (!r) ADD_FAILURE() << "Python code failed: " << pyh::TakeError();
  Py_XDECREF(r);
  Py_XDECREF(co);
  Py_XDECREF(name);
  return ns;
}

TEST(PstatsSink, NonAsciiAndLongFileNamesRoundTrip) {
  const std::string names[] = {
      "dïr/ünïcødé_файл_😀.py",
      std::string(255 - 3, 'a') + ".py",          // the longest short string
      std::string(256 - 3, 'b') + ".py",          // one more: a long ASCII string
      "/deep/" + std::string(400, 'c') + "/é.py",  // long and not ASCII
  };
  for (const std::string &file : names) {
    SCOPED_TRACE(file);
    void *ns = ExecUtf8("def ĥello(n): return n * 2\n"
                        "def main():\n"
                        "    for i in range(3): ĥello(i)\n",
                        file);
    std::string dir = pyh::TempDir();
    Capture cap;
    ProfileInto(dir, ns, "main", &cap);
    std::vector<std::string> files = ListDir(dir);
    ASSERT_EQ(files.size(), 1u);
    Rows got = LoadPstats(dir + "/" + files[0]);
    ASSERT_EQ(got.count(Key(file, 1, "ĥello")), 1u) << Describe({}, got);
    const Row &h = got.at(Key(file, 1, "ĥello"));
    EXPECT_EQ(h.nc, 3u);
    EXPECT_EQ(std::get<0>(h.callers.at(Key(file, 2, "main"))), 3u);
    EXPECT_EQ(Describe(cap.records[0], got), "");
    pyh::Release(ns);
  }
}

// A record made by hand: counts beyond 32 bits, odd floats, bad UTF-8.
TEST(PstatsSink, WideCountsExactFloatsAndInvalidUtf8AreEncodedFaithfully) {
  std::string dir = pyh::TempDir() + "/hand";
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("pstats", dir.c_str(), &ops, &ctx, err, sizeof err), 0) << err;

  statsprof_caller_profile callers[] = {
      {"caller", "c.py", 7, 4294967301ull, 2147483648ull, 0.1, 1e300},
      {"huge", "c.py", 9, UINT64_MAX, 0, -0.0, 5e-324},
  };
  statsprof_function_profile funcs[] = {
      {"f", "a.py", 1, 2147483647ull, 2147483648ull, 1.5, 0, 2.25, 0, 2, callers},
      {"g", "bad\xff\xfe.py", -1, 1ull << 62, 1, 1.0 / 3, 0, 2.0 / 3, 0, 0, nullptr},
  };
  statsprof_stats_profile rec = {};
  rec.nfunc_profiles = 2;
  rec.func_profiles = funcs;
  rec.seq = 1234567;
  rec.pid = 42;
  rec.end_ns = 1795617001000000000;  // 2026-11-25T14:30:01Z
  ASSERT_EQ(ops->emit(ctx, &rec), 0);
  ops->close(ctx);

  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], "statsprof-1234567-20261125T143001Z-42.prof");
  Rows got = LoadPstats(dir + "/" + files[0]);
  ASSERT_EQ(got.size(), 2u);
  const Row &f = got.at("a.py:1(f)");
  EXPECT_EQ(f.nc, 2147483647ull);
  EXPECT_EQ(f.cc, 2147483648ull);
  EXPECT_EQ(f.tt, 1.5);
  EXPECT_EQ(f.ct, 2.25);
  EXPECT_EQ(f.callers.at("c.py:7(caller)"), std::make_tuple(4294967301ull, 2147483648ull, 0.1, 1e300));
  auto huge = f.callers.at("c.py:9(huge)");
  EXPECT_EQ(std::get<0>(huge), UINT64_MAX);
  EXPECT_EQ(std::get<1>(huge), 0u);
  EXPECT_TRUE(std::signbit(std::get<2>(huge)));
  EXPECT_EQ(std::get<3>(huge), 5e-324);
  // Invalid bytes are written as backslash escapes, like the hook's labels.
  const Row &g = got.at("bad\\xff\\xfe.py:-1(g)");
  EXPECT_EQ(g.nc, 1ull << 62);
  EXPECT_EQ(g.cc, 1u);
  EXPECT_EQ(g.tt, 1.0 / 3);
  EXPECT_EQ(g.ct, 2.0 / 3);
}

// pstats.Stats cannot load an empty stats dict, so an idle interval writes
// nothing (its seq is simply missing from DIR).
TEST(PstatsSink, EmptyRecordWritesNoFile) {
  std::string dir = pyh::TempDir();
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("pstats", dir.c_str(), &ops, &ctx, err, sizeof err), 0) << err;
  statsprof_stats_profile rec = {};
  rec.seq = 1;
  rec.pid = 7;
  EXPECT_EQ(ops->emit(ctx, &rec), 0);
  ops->close(ctx);
  EXPECT_TRUE(ListDir(dir).empty());
}

TEST(PstatsSink, SameNameTwiceKeepsBothFiles) {
  // Two profilers in one process share pid and seq; within one second their
  // names would collide, and neither file may be lost. Also where
  // renameat2 has no RENAME_NOREPLACE: the old code fell back to a plain
  // rename there, and the second file replaced the first.
  for (bool noreplace : {true, false}) {
    std::string dir = pyh::TempDir() + (noreplace ? "/noreplace" : "/link");
    pyh::OneFunctionRecord one;
    g_no_rename_noreplace = !noreplace;
    for (int i = 0; i < 2; i++) EXPECT_EQ(pyh::EmitOnce("pstats", dir, one.rec), "");
    g_no_rename_noreplace = false;
    std::vector<std::string> files = ListDir(dir);
    ASSERT_EQ(files.size(), 2u) << dir;
    EXPECT_EQ(files[0], "statsprof-000001-19700101T000000Z-7-2.prof");
    EXPECT_EQ(files[1], "statsprof-000001-19700101T000000Z-7.prof");
    for (const std::string &name : files) EXPECT_EQ(LoadPstats(dir + "/" + name).size(), 1u);
  }
}

// A per-thread or spike record carries its merged record's seq, time and
// pid. The old code named them as that record's second and third files
// ("-2.prof", "-3.prof"), so nothing told them apart and a glob of the
// merged records took them in too (pstats.Stats counted them twice). Their
// names now say what they are, before the seq, as the callgrind sink's do.
TEST(PstatsSink, ThreadAndSpikeRecordsAreNamedForWhatTheyAre) {
  std::string dir = pyh::TempDir();
  pyh::OneFunctionRecord one;
  statsprof_stats_profile &rec = one.rec;
  rec.kind = STATSPROF_RECORD_DELTA;
  EXPECT_EQ(pyh::EmitOnce("pstats", dir, rec), "");
  rec.kind = STATSPROF_RECORD_THREAD;
  rec.thread_id = 5;
  EXPECT_EQ(pyh::EmitOnce("pstats", dir, rec), "");
  rec.kind = STATSPROF_RECORD_SPIKE;
  rec.frame = 9;
  EXPECT_EQ(pyh::EmitOnce("pstats", dir, rec), "");
  EXPECT_EQ(ListDir(dir), (std::vector<std::string>{"statsprof-000001-19700101T000000Z-7.prof",
                                                    "statsprof-spike9-000001-19700101T000000Z-7.prof",
                                                    "statsprof-thread5-000001-19700101T000000Z-7.prof"}));
}

TEST(PstatsSink, CreatesMissingDirectoriesAtCreate) {
  std::string dir = pyh::TempDir() + "/a/b/c";
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=pstats:" + dir + "/").c_str(), &p), 0) << statsprof_errmsg(nullptr);
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(ListDir(dir).empty()) << "the write probe must not stay behind";
  statsprof_destroy(p);
}

TEST(PstatsSink, DirectoryRemovedAfterCreateIsMadeAgain) {
  std::string dir = pyh::TempDir() + "/gone";
  void *ns = pyh::Exec("def f(): return 1\n", "gone.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(("sink=pstats:" + dir).c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(rmdir(dir.c_str()), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_stop(p), 0);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 0u);
  statsprof_destroy(p);
  std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(LoadPstats(dir + "/" + files[0]).at("gone.py:1(f)").nc, 1u);
  pyh::Release(ns);
}

TEST(PstatsSink, UnwritableDirectoryFailsAtCreateNamingThePath) {
  // A directory below a regular file cannot exist, even for root.
  std::string file = pyh::TempDir() + "/plain-file";
  std::ofstream(file) << "x";
  std::string dir = file + "/profiles";
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(("sink=pstats:" + dir).c_str(), &p), STATSPROF_ESINK);
  EXPECT_EQ(p, nullptr);
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("'" + dir + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Not a directory"), std::string::npos) << msg;

  // The path itself is a file.
  EXPECT_EQ(statsprof_create(("sink=pstats:" + file).c_str(), &p), STATSPROF_ESINK);
  msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("'" + file + "'"), std::string::npos) << msg;

  // Without write permission (only meaningful when not root).
  if (geteuid() != 0) {
    std::string ro = pyh::TempDir() + "/ro";
    ASSERT_EQ(mkdir(ro.c_str(), 0500), 0);
    EXPECT_EQ(statsprof_create(("sink=pstats:" + ro).c_str(), &p), STATSPROF_ESINK);
    msg = statsprof_errmsg(nullptr);
    EXPECT_NE(msg.find("'" + ro + "'"), std::string::npos) << msg;
    chmod(ro.c_str(), 0700);
  }

  EXPECT_EQ(statsprof_create("sink=pstats", &p), STATSPROF_ECONFIG);  // a bad value, not a failing sink
  msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("sink=pstats:DIR"), std::string::npos) << msg;
}

}  // namespace
