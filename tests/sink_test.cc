// sink_test.cc — the JSONL sink and formatter (read back with Python's json
// and pstats), escaping, failing and unwritable sinks, whole writes through
// a full pipe interrupted by signals, and the stderr table.
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <cstdio>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "child.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

int CountLines(const std::string &s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// Expects RunPy(code) to succeed; the Python assertion text otherwise.
#define EXPECT_PY(code, ...)                               \
  do {                                                     \
    std::string err_ = pyh::RunPy(code, ##__VA_ARGS__);     \
    EXPECT_EQ(err_, "") << "Python check failed";           \
  } while (0)

// ---- the JSONL file, read back --------------------------------------------

const char kProgram[] = R"(
def leaf(x=0): return x
def mid(x): return leaf(x) + leaf(x)
def r(n): return 0 if n == 0 else r(n - 1)
def main():
    for i in range(4): mid(i)
    for i in range(3): r(3)
)";

// Checks every record of a JSONL file; `path` and `pid` are bound by RunPy.
const char kCheckRecords[] = R"PY(
import dataclasses, datetime, json, math, os, pstats, socket

def no_constants(c):
    raise ValueError("not JSON: " + c)

data = open(path, "rb").read()
assert data.endswith(b"\n"), data[-80:]
lines = data.split(b"\n")[:-1]
assert len(lines) == 3, len(lines)
recs = [json.loads(l.decode("utf-8"), parse_constant=no_constants) for l in lines]
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
close = lambda a, b: math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-12)
fields = [f.name for f in dataclasses.fields(pstats.FunctionProfile)]

for i, rec in enumerate(recs):
    required = {"ts", "ts_ns", "start_ns", "interval_s", "seq", "pid", "host", "kind",
                "dropped", "sink_errors", "overflow_functions", "total_tt", "func_profiles"}
    optional = {"thread_id", "thread_name", "frame_stats", "frame", "frame_time_s"}
    assert required <= set(rec) <= required | optional, sorted(rec)
    assert rec["sink_errors"] == 0
    assert type(rec["ts_ns"]) is int and type(rec["start_ns"]) is int
    assert rec["ts"].endswith("Z"), rec["ts"]
    dt = datetime.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
    assert dt.utcoffset() == datetime.timedelta(0)
    assert (dt - epoch) // datetime.timedelta(microseconds=1) == rec["ts_ns"] // 1000, (rec["ts"], rec["ts_ns"])
    assert rec["start_ns"] <= rec["ts_ns"]
    assert close(rec["interval_s"], (rec["ts_ns"] - rec["start_ns"]) / 1e9), rec["interval_s"]
    assert rec["seq"] == i + 1, rec["seq"]
    assert rec["pid"] == int(pid) == os.getpid(), rec["pid"]
    assert rec["host"] == socket.gethostname(), rec["host"]
    assert rec["kind"] == "delta", rec["kind"]
    assert rec["dropped"] == 0 and rec["overflow_functions"] == 0
    if i:
        assert rec["start_ns"] == recs[i - 1]["ts_ns"]
    fps = rec["func_profiles"]
    assert close(rec["total_tt"], sum(f["tottime"] for f in fps.values())), rec["total_tt"]
    for key, f in fps.items():
        assert key == "%s:%d(%s)" % (f["file_name"], f["line_number"], f["function_name"]), key
        nc, _, pc = f["ncalls"].partition("/")
        total, prim = int(nc), int(pc or nc)
        assert (str(total) if total == prim else "%d/%d" % (total, prim)) == f["ncalls"]
        assert f["primitive_calls"] == prim
        assert 0 <= f["tottime"] <= f["cumtime"] + 1e-12, f
        assert close(f["percall_tottime"], f["tottime"] / total), f
        assert close(f["percall_cumtime"], f["cumtime"] / prim), f
        for ck, c in f["callers"].items():
            assert set(c) == {"ncalls", "primitive_calls", "tottime", "cumtime"}, c
            assert type(c["ncalls"]) is int and c["primitive_calls"] <= c["ncalls"]
    sp = pstats.StatsProfile(rec["total_tt"], {
        k: pstats.FunctionProfile(**{f: v[f] for f in fields}) for k, v in fps.items()})
    assert len(sp.func_profiles) == len(fps)

F = "sink.py"
leaf, mid, r, main = F + ":2(leaf)", F + ":3(mid)", F + ":4(r)", F + ":5(main)"
for rec in recs[:2]:
    fps = rec["func_profiles"]
    assert set(fps) == {leaf, mid, r, main}, sorted(fps)
    assert fps[main]["ncalls"] == "1" and fps[main]["callers"] == {}
    assert fps[mid]["ncalls"] == "4"
    assert fps[leaf]["ncalls"] == "8"
    assert fps[r]["ncalls"] == "12/3", fps[r]["ncalls"]
    assert fps[r]["file_name"] == F and fps[r]["line_number"] == 4 and fps[r]["function_name"] == "r"
    assert set(fps[leaf]["callers"]) == {mid}
    assert fps[leaf]["callers"][mid]["ncalls"] == 8
    rc = fps[r]["callers"]
    assert set(rc) == {main, r}, sorted(rc)
    assert (rc[main]["ncalls"], rc[main]["primitive_calls"]) == (3, 3)
    assert (rc[r]["ncalls"], rc[r]["primitive_calls"]) == (9, 3)
    sp = pstats.StatsProfile(rec["total_tt"], {
        k: pstats.FunctionProfile(**{f: v[f] for f in fields}) for k, v in fps.items()})
    assert sp.func_profiles[r].ncalls == "12/3"
third = recs[2]["func_profiles"]
assert set(third) == {leaf}, sorted(third)
assert third[leaf]["ncalls"] == "1" and third[leaf]["callers"] == {}
)PY";


TEST(JsonlSink, RecordsReadBackFieldByFieldWithPythonJson) {
  std::string dir = pyh::TempDir();
  std::string path = dir + "/sub/dir/prof.jsonl";
  std::string config = "sink=jsonl:" + path + ";interval=1h;builtins=off";
  void *ns = pyh::Exec(kProgram, "sink.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  struct stat st;
  ASSERT_EQ(stat((dir + "/sub/dir").c_str(), &st), 0);  // parents are created at create
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
  pyh::Call(ns, "leaf");
  EXPECT_EQ(statsprof_sink_errors(p), 0u);
  statsprof_destroy(p);  // the third record goes out at stop
  std::string text = pyh::ReadFile(path);
  EXPECT_EQ(CountLines(text), 3);
  EXPECT_PY(kCheckRecords, {{"path", path}, {"pid", std::to_string(getpid())}});
  pyh::Release(ns);
}

std::vector<std::string> DirEntries(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = opendir(dir.c_str())) {
    while (struct dirent *e = readdir(d))
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A relative PATH or DIR was looked up again at every record, against the
// current directory of that moment: a host that chdir()s (a daemon's
// chdir("/")) split its records across two trees, or lost them. The old
// code wrote the second record of each sink under d2. Now a relative name
// is resolved once, at create.
TEST(Sinks, ARelativePathStaysWhereItWasAtCreate) {
  std::string d1 = pyh::TempDir() + "/d1", d2 = pyh::TempDir() + "/d2";
  ASSERT_EQ(mkdir(d1.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(d2.c_str(), 0700), 0);
  char old[4096];
  ASSERT_NE(getcwd(old, sizeof old), nullptr);
  void *ns = pyh::Exec(kProgram, "sink.py");
  ASSERT_EQ(chdir(d1.c_str()), 0);
  statsprof *p = nullptr;
  int rc = statsprof_create("writer=sync;interval=1h;sink=jsonl:out/prof.jsonl;sink=pstats:prof;sink=callgrind:cg", &p);
  std::string err = statsprof_errmsg(nullptr);
  if (rc == 0) rc = statsprof_start(p);
  for (int i = 0; i < 2 && rc == 0; i++) {
    pyh::Call(ns, "main");
    rc = statsprof_emit_now(p);
    if (i == 0) {
      ASSERT_EQ(chdir(d2.c_str()), 0);
    }
  }
  if (p) statsprof_destroy(p);
  ASSERT_EQ(chdir(old), 0);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(CountLines(pyh::ReadFile(d1 + "/out/prof.jsonl")), 2);
  EXPECT_EQ(DirEntries(d1 + "/prof").size(), 2u);
  EXPECT_EQ(DirEntries(d1 + "/cg").size(), 2u);
  EXPECT_EQ(DirEntries(d2), std::vector<std::string>{});
  pyh::Release(ns);
}

// Where the current directory cannot be named (it was removed), a relative
// name cannot be resolved: create fails, naming the path and getcwd's error.
TEST(Sinks, ARelativePathWithoutACurrentDirectoryFailsAtCreate) {
  std::string gone = pyh::TempDir() + "/gone";
  ASSERT_EQ(mkdir(gone.c_str(), 0700), 0);
  char old[4096];
  ASSERT_NE(getcwd(old, sizeof old), nullptr);
  ASSERT_EQ(chdir(gone.c_str()), 0);
  ASSERT_EQ(rmdir(gone.c_str()), 0);
  std::vector<std::pair<int, std::string>> got;
  for (const char *config : {"sink=jsonl:prof.jsonl", "sink=pstats:prof", "sink=callgrind:cg"}) {
    statsprof *p = nullptr;
    int rc = statsprof_create(config, &p);
    got.emplace_back(rc, statsprof_errmsg(nullptr));
    if (p) statsprof_destroy(p);
  }
  ASSERT_EQ(chdir(old), 0);
  for (auto &[rc, msg] : got) {
    EXPECT_EQ(rc, STATSPROF_ESINK) << msg;
    EXPECT_NE(msg.find("is relative, and the current directory is unknown (getcwd: No such file or directory)"),
              std::string::npos)
        << msg;
  }
  EXPECT_NE(got[0].second.find("'prof.jsonl'"), std::string::npos) << got[0].second;
  EXPECT_NE(got[2].second.find("'cg'"), std::string::npos) << got[2].second;
}

TEST(JsonlSink, AppendsToAnExistingFile) {
  std::string path = pyh::TempDir() + "/prof.jsonl";
  FILE *f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("{\"earlier\":1}\n", f);
  fclose(f);
  std::string config = "sink=jsonl:" + path;
  statsprof *p;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_destroy(p);
  std::string text = pyh::ReadFile(path);
  EXPECT_EQ(text.rfind("{\"earlier\":1}\n{\"ts\":", 0), 0u) << text;
  EXPECT_EQ(CountLines(text), 2);
}

// File names and function names that need escaping, shared by the program
// and the check below.
const char kWeirdNames[] = R"PY(
NAMES = ['q"uote.py', 'back\\slash\\.py', 'new\nline.py', 'tab\there.py', 'ctl\x01\x08\x0c\r\x1f\x7f.py',
         'résumé_😀.py', 'sep\u2028\u2029.py', '/abs/dir/plain.py', 'slash/in "both" \\ .py']
)PY";

const char kWeirdProgram[] = R"PY(
FUNCS = []
for i, n in enumerate(NAMES):
    g = {}
    exec(compile("def fn_é_%d():\n    pass\n" % i, n, "exec"), g)
    FUNCS.append(g["fn_é_%d" % i])
g = {}
exec(compile("def undecodable():\n    pass\n", "bad\udcffname.py", "exec"), g)
FUNCS.append(g["undecodable"])
def run():
    for f in FUNCS: f()
)PY";

const char kWeirdCheck[] = R"PY(
import json
data = open(path, "rb").read()
assert data.count(b"\n") == 1, data          # newlines inside strings are escaped
rec = json.loads(data.decode("utf-8"))      # strict UTF-8
fps = rec["func_profiles"]
for i, n in enumerate(NAMES):
    name = "fn_é_%d" % i
    key = "%s:1(%s)" % (n, name)
    assert key in fps, (key, sorted(fps))
    f = fps[key]
    assert f["file_name"] == n, (f["file_name"], n)
    assert f["function_name"] == name
    assert f["ncalls"] == "1"
    assert list(f["callers"]) == ["weird.py:13(run)"], f["callers"]
# An undecodable file name arrives backslash-escaped, still one valid string.
assert "bad\\udcffname.py:1(undecodable)" in fps, sorted(fps)
assert len(fps) == len(NAMES) + 2, sorted(fps)
)PY";

TEST(JsonlSink, NamesNeedingEscapesRoundTripExactly) {
  std::string path = pyh::TempDir() + "/weird.jsonl";
  std::string config = "sink=jsonl:" + path + ";builtins=off";
  void *ns = pyh::Exec(std::string(kWeirdNames) + kWeirdProgram, "weird.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "run")) << pyh::TakeError();
  statsprof_destroy(p);
  EXPECT_PY(std::string(kWeirdNames) + kWeirdCheck, {{"path", path}});
  pyh::Release(ns);
}

// ---- statsprof_format_jsonl on hand-built records ---------------------------

std::string Format(const statsprof_stats_profile &rec) {
  char *out = nullptr;
  size_t len = 0;
  EXPECT_EQ(statsprof_format_jsonl(&rec, &out, &len), 0);
  std::string s(out ? out : "", len);
  statsprof_free(out);
  EXPECT_EQ(s.size(), strlen(s.c_str())) << "embedded NUL";
  return s;
}

TEST(FormatJsonl, HandBuiltRecordIsValidJsonWithEveryField) {
  std::string long_name(3000, 'x');
  statsprof_caller_profile callers[] = {
      {"caller\"q", "c.py", 3, 5, 4, 0.5, 1.5},
      {"<built-in method builtins.sorted>", "~", 0, 2, 2, 0.25, 0.75},
  };
  statsprof_function_profile funcs[] = {
      {"ok_name", "a.py", 10, 12, 3, 1.25, 1.25 / 12, 2.5, 2.5 / 3, 2, callers},
      {"bad\xff\xfex", "trunc\xe2\x82", 7, 0, 0, NAN, -1, INFINITY, -1, 0, nullptr},
      {long_name.c_str(), "long.py", 1, 1, 1, 0, 0, 0, 0, 0, nullptr},
  };
  statsprof_stats_profile rec{};
  rec.total_tt = NAN;
  rec.nfunc_profiles = 3;
  rec.func_profiles = funcs;
  rec.mode = STATSPROF_CUMULATIVE;
  rec.start_ns = 1700000000123456789LL;
  rec.end_ns = 1700000001987654321LL;
  rec.seq = 42;
  rec.pid = 4242;
  rec.dropped = 7;
  rec.overflow_functions = 3;
  std::string line = Format(rec);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(CountLines(line), 1);
  EXPECT_PY(R"PY(
import json, math
def no_constants(c):
    raise ValueError("not JSON: " + c)
raw = line.encode("utf-8", "surrogateescape")
rec = json.loads(raw.decode("utf-8"), parse_constant=no_constants)
assert rec["ts"] == "2023-11-14T22:13:21.987654Z", rec["ts"]
assert rec["ts_ns"] == 1700000001987654321 and rec["start_ns"] == 1700000000123456789
assert math.isclose(rec["interval_s"], 1.864197532, rel_tol=1e-8), rec["interval_s"]
assert (rec["seq"], rec["pid"], rec["dropped"], rec["overflow_functions"]) == (42, 4242, 7, 3)
assert rec["kind"] == "cumulative"
assert math.isfinite(rec["total_tt"])
fps = rec["func_profiles"]
assert len(fps) == 3, sorted(fps)
ok = fps["a.py:10(ok_name)"]
assert ok["ncalls"] == "12/3" and ok["primitive_calls"] == 3
assert (ok["tottime"], ok["cumtime"]) == (1.25, 2.5)
assert math.isclose(ok["percall_tottime"], 1.25 / 12, rel_tol=1e-8)
assert math.isclose(ok["percall_cumtime"], 2.5 / 3, rel_tol=1e-8)
assert ok["callers"] == {
    'c.py:3(caller"q)': {"ncalls": 5, "primitive_calls": 4, "tottime": 0.5, "cumtime": 1.5},
    "~:0(<built-in method builtins.sorted>)": {"ncalls": 2, "primitive_calls": 2, "tottime": 0.25,
                                               "cumtime": 0.75},
}, ok["callers"]
bad = [v for k, v in fps.items() if v["line_number"] == 7]
assert len(bad) == 1
bad = bad[0]
assert bad["function_name"] == "bad\ufffd\ufffdx", ascii(bad["function_name"])
fn = bad["file_name"]
assert fn.startswith("trunc") and len(fn) > 5 and set(fn[5:]) == {"\ufffd"}, ascii(fn)
assert bad["ncalls"] == "0" and bad["callers"] == {}
assert math.isfinite(bad["tottime"]) and math.isfinite(bad["cumtime"])
assert bad["percall_tottime"] == -1 and bad["percall_cumtime"] == -1
assert "long.py:1(" + "x" * 3000 + ")" in fps
)PY",
            {{"line", line}});
}

TEST(FormatJsonl, KindIsTheRecordKindsName) {
  const std::pair<int, const char *> kinds[] = {{STATSPROF_RECORD_CUMULATIVE, "cumulative"},
                                                {STATSPROF_RECORD_DELTA, "delta"},
                                                {STATSPROF_RECORD_SPIKE, "spike"},
                                                {STATSPROF_RECORD_THREAD, "thread"},
                                                {4, "unknown"}};
  for (auto [kind, name] : kinds) {
    statsprof_stats_profile rec{};
    rec.kind = static_cast<statsprof_record_kind>(kind);
    std::string line = Format(rec);
    EXPECT_NE(line.find(std::string(",\"kind\":\"") + name + "\","), std::string::npos) << kind << ": " << line;
  }
}

TEST(FormatJsonl, SuppressedSpikesAndOmittedThreadsAreCountedWhenThereAreAny) {
  statsprof_stats_profile rec{};
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_DELTA;
  rec.threads_omitted = 17;
  rec.spikes_suppressed = 3;
  std::string line = Format(rec);
  EXPECT_NE(line.find(",\"overflow_functions\":0,\"threads_omitted\":17,\"spikes_suppressed\":3,"), std::string::npos)
      << line;
}

TEST(FormatJsonl, EmptyRecordHasEmptyFuncProfiles) {
  statsprof_stats_profile rec{};
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_DELTA;
  rec.start_ns = rec.end_ns = 1000000000;
  std::string line = Format(rec);
  EXPECT_PY(R"PY(
import json
rec = json.loads(line)
assert rec["func_profiles"] == {} and rec["kind"] == "delta" and rec["total_tt"] == 0
assert "spikes_suppressed" not in rec and "threads_omitted" not in rec, sorted(rec)
assert rec["ts"] == "1970-01-01T00:00:01.000000Z", rec["ts"]
assert rec["interval_s"] == 0
)PY",
            {{"line", line}});
}

// Earlier versions said "free with free()": with the default allocator
// (realloc/free) that still frees the buffer (ASan checks it under
// dev/sanitize).
TEST(FormatJsonl, BufferFromTheDefaultAllocatorMayStillBeFreedWithFree) {
  statsprof_stats_profile rec{};
  char *out = nullptr;
  size_t len = 0;
  ASSERT_EQ(statsprof_format_jsonl(&rec, &out, &len), 0);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out[len - 1], '\n');
  free(out);
}

TEST(FormatJsonl, NullArgumentsAreEinval) {
  statsprof_stats_profile rec{};
  char *out = nullptr;
  size_t len = 0;
  EXPECT_EQ(statsprof_format_jsonl(nullptr, &out, &len), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_format_jsonl(&rec, nullptr, &len), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_format_jsonl(&rec, &out, nullptr), STATSPROF_EINVAL);
}

// BUG (lib/error.c statsprof__buf_json_string): the UTF-8 check only counts
// continuation bytes, so UTF-16 surrogates encoded in UTF-8 (ED A0 80),
// overlong 3/4-byte forms (E0 80 AF, F0 80 80 AF) and code points above
// U+10FFFF (F4 90 80 80) are copied through and the line is not valid UTF-8:
// a strict reader (Python's bytes.decode("utf-8"), json.loads on bytes)
// rejects it. The comment promises U+FFFD for invalid bytes.
TEST(FormatJsonl, InvalidUtf8SequencesAreReplaced) {
  const char *bad[] = {"sur\xed\xa0\x80" "rogate", "over\xe0\x80\xaf" "long3", "over\xf0\x80\x80\xaf" "long4",
                       "big\xf4\x90\x80\x80" "cp", "over\xc0\xaf" "long2"};
  for (const char *name : bad) {
    statsprof_function_profile f = {name, "x.py", 1, 1, 1, 0, 0, 0, 0, 0, nullptr};
    statsprof_stats_profile rec{};
    rec.nfunc_profiles = 1;
    rec.func_profiles = &f;
    std::string line = Format(rec);
    EXPECT_PY(R"PY(
import json
rec = json.loads(line.encode("utf-8", "surrogateescape").decode("utf-8"))
(f,) = rec["func_profiles"].values()
assert "\ufffd" in f["function_name"], ascii(f["function_name"])
)PY",
              {{"line", line}});
  }
}

// ---- sinks that cannot be opened or fail -----------------------------------

void ExpectJsonlOpenFails(const std::string &path) {
  std::string config = "sink=jsonl:" + path;
  statsprof *p = reinterpret_cast<statsprof *>(0x1);
  int rc = statsprof_create(config.c_str(), &p);
  EXPECT_EQ(rc, STATSPROF_ESINK) << path << ": " << statsprof_errmsg(nullptr);
  EXPECT_EQ(p, nullptr);
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;
}

TEST(JsonlSink, UnwritablePathFailsAtCreateNamingThePath) {
  std::string dir = pyh::TempDir();
  std::string file = dir + "/regular";
  FILE *f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  ExpectJsonlOpenFails(file + "/prof.jsonl");
  ExpectJsonlOpenFails(file + "/deeper/prof.jsonl");
  ExpectJsonlOpenFails(dir);  // a directory, not a file
  ExpectJsonlOpenFails("/proc/nonexistent/x");
  std::string msg = statsprof_errmsg(nullptr);
  EXPECT_NE(msg.find("sink jsonl:/proc/nonexistent/x"), std::string::npos) << msg;
}

// A host sink that fails every emit, under its own name.
const statsprof_sink_ops *FlakyOps() {
  static statsprof_sink_ops ops = [] {
    statsprof_sink_ops o = *pyh::RecordingSinkOps();
    o.name = "flaky";
    return o;
  }();
  return &ops;
}

using pyh::CaptureStderr;
using pyh::LogLines;

// Sink failures are counted and logged, never returned to the host (the
// sinks may run on their own threads); records carry the count so far.
void ExpectFailingSinkIsCountedAndTheOthersGetEveryRecord(const char *config) {
  void *ns = pyh::Exec("def f(): pass\n");
  pyh::RecordingSink flaky, good;
  flaky.fail = STATSPROF_EIO;
  LogLines log;
  statsprof *p;
  ASSERT_EQ(statsprof_create(config, &p), 0);
  statsprof_set_log(p, LogLines::Fn, &log);
  ASSERT_EQ(statsprof_add_sink(p, FlakyOps(), &flaky), 0);
  ASSERT_EQ(pyh::AddRecordingSink(p, &good), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f");
  EXPECT_EQ(statsprof_tick(p), 1);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 1u);
  EXPECT_TRUE(log.Has("sink flaky failed to write record 1")) << (log.lines.empty() ? "" : log.lines[0]);
  pyh::Call(ns, "f");
  pyh::Call(ns, "f");
  EXPECT_EQ(statsprof_tick(p), 1);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_emit_now(p), 0);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 3u);
  pyh::Call(ns, "f");
  EXPECT_EQ(statsprof_stop(p), 0);  // the last record fails too, quietly
  EXPECT_EQ(statsprof_sink_errors(p), 4u);
  ASSERT_EQ(good.records.size(), 4u);
  EXPECT_EQ(good.records[0].calls_by_name["f"], 1u);
  EXPECT_EQ(good.records[1].calls_by_name["f"], 2u);
  EXPECT_TRUE(good.records[2].counts.empty());
  EXPECT_EQ(good.records[3].calls_by_name["f"], 1u);
  for (size_t i = 0; i < 4; i++) EXPECT_EQ(good.records[i].sink_errors, i) << "record " << i;
  EXPECT_EQ(flaky.emits, 4);
  // Counting went on regardless.
  pyh::Snap c = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(pyh::Find(c.get(), "f")->ncalls, 4u);
  statsprof_destroy(p);
  EXPECT_EQ(flaky.closes, 1);  // closed once, also after failed emits
  EXPECT_EQ(good.closes, 1);
  pyh::Release(ns);
}

TEST(Sinks, FailingSinkIsCountedAndTheOthersGetEveryRecord) {
  ExpectFailingSinkIsCountedAndTheOthersGetEveryRecord("sink=none;interval=0s");
}

TEST(Sinks, FailingSinkIsCountedAndTheOthersGetEveryRecordWithSyncWriter) {
  ExpectFailingSinkIsCountedAndTheOthersGetEveryRecord("sink=none;interval=0s;writer=sync");
}

TEST(JsonlSink, DevFullCountsFailuresAndTheHostKeepsRunning) {
  struct stat st;
  if (stat("/dev/full", &st) != 0) GTEST_SKIP() << "no /dev/full here";
  void *ns = pyh::Exec("def f(): pass\ndef main():\n  for i in range(5): f()\n");
  pyh::RecordingSink good;
  LogLines log;
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=jsonl:/dev/full;interval=0s", &p), 0) << statsprof_errmsg(nullptr);
  statsprof_set_log(p, LogLines::Fn, &log);
  ASSERT_EQ(pyh::AddRecordingSink(p, &good), 0);
  ASSERT_EQ(statsprof_start(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  EXPECT_EQ(statsprof_tick(p), 1);
  ASSERT_EQ(statsprof_flush(p), 0);
  ASSERT_TRUE(pyh::Call(ns, "main"));
  EXPECT_EQ(statsprof_tick(p), 1);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 2u);
  EXPECT_TRUE(log.Has("sink jsonl failed")) << (log.lines.empty() ? "" : log.lines[0]);
  ASSERT_EQ(good.records.size(), 2u);
  EXPECT_EQ(good.records[1].calls_by_name["f"], 5u);
  EXPECT_EQ(good.records[1].sink_errors, 1u);
  pyh::Snap c = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(pyh::Find(c.get(), "f")->ncalls, 10u);
  statsprof_destroy(p);
  pyh::Release(ns);
}

// Issue 11, item 9: with two jsonl sinks, one on /dev/full, the log said
// only "sink jsonl failed to write record 1: input/output error" — which
// file, and why? It names the file and the OS error now.
TEST(JsonlSink, AFailingFileIsNamedWithItsOsErrorInTheLog) {
  struct stat st;
  ASSERT_EQ(stat("/dev/full", &st), 0) << "the test needs /dev/full";
  void *ns = pyh::Exec("def f(): pass\n");
  std::string good = pyh::TempDir() + "/good.jsonl";
  LogLines log;
  statsprof *p;
  ASSERT_EQ(statsprof_create(("sink=jsonl:/dev/full;sink=jsonl:" + good + ";interval=1h").c_str(), &p), 0)
      << statsprof_errmsg(nullptr);
  statsprof_set_log(p, LogLines::Fn, &log);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "f");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  ASSERT_EQ(statsprof_flush(p), 0);
  EXPECT_TRUE(log.Has("sink jsonl failed to write record 1: cannot write to '/dev/full': No space left on "
                      "device (1 failures so far)"))
      << (log.lines.empty() ? "(nothing logged)" : log.lines[0]);
  EXPECT_EQ(statsprof_sink_errors(p), 1u);
  statsprof_destroy(p);
  EXPECT_EQ(CountLines(pyh::ReadFile(good)), 1);
  pyh::Release(ns);
}

// With fd 2 closed, the sink's file took number 2 and was then taken for
// stderr: log lines and the stderr sink's table went into it, between its
// JSON lines. A FIFO shows it (a regular file's first descriptor is
// replaced by a read-write one, which happens to move it). A sink's
// descriptors are 3 or above now, and fd 2 stays closed (log lines are
// lost, not written into a file that is not stderr).
TEST(JsonlSink, WithFd2ClosedTheFileIsNeverTakenForStderr) {
  void *ns = pyh::Exec("def f(): pass\n");
  std::string dir = pyh::TempDir(), fifo = dir + "/fifo", copy = dir + "/read.jsonl";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string problems = child::Run([&] {
    child::Problems pr;
    int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    if (reader < 0) return std::string("no reader");
    close(2);
    statsprof *p = nullptr;
    if (statsprof_create(("writer=sync;interval=1h;sink=jsonl:" + fifo + ";sink=stderr").c_str(), &p) != 0)
      return "create: " + std::string(statsprof_errmsg(nullptr));
    pr.Check(statsprof_start(p) == 0, "start");
    for (int i = 0; i < 2; i++) {
      pyh::Call(ns, "f");
      pr.Check(statsprof_emit_now(p) == 0, "emit_now");
      statsprof_log_stderr("a log line, for stderr only", 1000);
    }
    statsprof_destroy(p);
    pr.Check(fcntl(2, F_GETFD) == -1, "something was left open at fd 2");
    // What the FIFO got, into a file the parent reads.
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = read(reader, buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
    FILE *out = fopen(copy.c_str(), "w");
    pr.Check(out && fwrite(got.data(), 1, got.size(), out) == got.size() && fclose(out) == 0, "copy");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::JsonlFile f = pyh::ReadJsonl(copy);
  EXPECT_EQ(f.error, "");
  EXPECT_EQ(f.lines, 2);
  EXPECT_EQ(f.bad, 0) << pyh::ReadFile(copy);
  EXPECT_EQ(f.tail, 0) << pyh::ReadFile(copy);
  pyh::Release(ns);
}

// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action killed
// the host (writer=sync: on the host's own thread). The write now fails
// with EFBIG and the sink's failure names the file and the OS error. In a
// child: the old code killed it.
TEST(JsonlSink, AFileSizeLimitFailsTheRecordInsteadOfKillingTheHost) {
  void *ns = pyh::Exec("def f(): pass\n");
  std::string path = pyh::TempDir() + "/limited.jsonl";
  std::string problems = child::Run([&] {
    child::Problems pr;
    LogLines log;
    statsprof *p = nullptr;
    if (statsprof_create(("writer=sync;interval=1h;sink=jsonl:" + path).c_str(), &p) != 0)
      return "create: " + std::string(statsprof_errmsg(nullptr));
    statsprof_set_log(p, LogLines::Fn, &log);
    struct rlimit rl = {64, RLIM_INFINITY};  // less than one record
    pr.Check(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit");
    pr.Check(statsprof_start(p) == 0, "start");
    for (int i = 0; i < 2; i++) {
      pyh::Call(ns, "f");
      pr.Check(statsprof_emit_now(p) == 0, "emit_now");
    }
    pr.Check(statsprof_sink_errors(p) == 2, "sink errors: " + std::to_string(statsprof_sink_errors(p)));
    pr.Check(log.Has("cannot write to '" + path + "': File too large"), "not logged:\n" + log.All());
    statsprof_destroy(p);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  EXPECT_EQ(pyh::ReadFile(path), "");  // the cut record was truncated away
  pyh::Release(ns);
}

// ---- whole writes through a full pipe (sinks/files.c) ------------------------

std::atomic<int> g_signals{0};
void CountSignal(int) { g_signals.fetch_add(1); }

// What statsprof__write_fd did with a pipe that was full while signals came.
struct InterruptedWrite {
  size_t done = 0;
  int err = -1;
  std::string sent, got;
  int signals = 0;
};

// Writes four pipes' worth through statsprof__write_fd(how) on this thread.
// A helper waits until the pipe is full (the writer can only be waiting for
// room then), sends this thread kSignals SIGUSR1s — a handler without
// SA_RESTART, so each one ends the poll with EINTR — one at a time, each
// only once the one before was handled, and only then starts reading. Only
// signals end the wait early: the budget, a minute, is never reached.
InterruptedWrite WriteThroughSignals(int how, bool nonblocking) {
  constexpr int kSignals = 20;
  InterruptedWrite r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return r;
  if (nonblocking) fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  int cap = fcntl(fds[1], F_GETPIPE_SZ);
  for (int i = 0; (int)r.sent.size() < 4 * cap; i++) r.sent += "record " + std::to_string(i) + " of a long write\n";
  r.sent.resize(4 * (size_t)cap);  // whole pages: the pipe fills to exactly cap
  struct sigaction sa = {}, old = {};
  sa.sa_handler = CountSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART
  sigaction(SIGUSR1, &sa, &old);
  g_signals = 0;
  std::atomic<bool> returned{false};
  pthread_t writer = pthread_self();
  std::thread helper([&] {
    int queued = 0;
    while (!returned && (ioctl(fds[0], FIONREAD, &queued) != 0 || queued < cap)) sched_yield();
    for (int i = 0; i < kSignals && !returned; i++) {
      int before = g_signals;
      pthread_kill(writer, SIGUSR1);
      while (g_signals == before && !returned) sched_yield();
    }
    r.signals = g_signals;
    char buf[65536];
    for (ssize_t n; r.got.size() < r.sent.size() && (n = read(fds[0], buf, sizeof buf)) > 0;)
      r.got.append(buf, (size_t)n);
  });
  r.done = statsprof__write_fd(fds[1], how, r.sent.data(), r.sent.size(), 60000);
  r.err = errno;
  returned = true;
  close(fds[1]);  // the reader sees the end even if the write stopped short
  helper.join();
  close(fds[0]);
  sigaction(SIGUSR1, &old, nullptr);
  return r;
}

// A signal is not a stall: a write waiting for room in a full pipe and
// interrupted by signals (EINTR from poll) waits on with what is left of
// its budget and writes everything once the reader reads. Without the
// EINTR retry in wait_writable, the first signal ended the write with
// ETIMEDOUT and the record was cut.
TEST(WriteFd, SignalsWhileAPipeIsFullDoNotCutTheWrite) {
  struct Mode {
    const char *name;
    int how;
    bool nonblocking;
  };
  for (Mode m : {Mode{"non-blocking pipe, write", STATSPROF__OUT_WRITE, true},
                 Mode{"blocking pipe, poll then write", STATSPROF__OUT_POLL, false}}) {
    InterruptedWrite r = WriteThroughSignals(m.how, m.nonblocking);
    ASSERT_FALSE(r.sent.empty()) << m.name << ": no pipe";
    EXPECT_EQ(r.signals, 20) << m.name << ": signals handled while the pipe was full";
    EXPECT_EQ(r.done, r.sent.size()) << m.name << ": " << strerror(r.err);
    EXPECT_EQ(r.err, 0) << m.name << ": " << strerror(r.err);
    EXPECT_TRUE(r.got == r.sent) << m.name << ": read " << r.got.size() << " of " << r.sent.size() << " bytes";
  }
}

// A write(2) that returns 0 (no error, nothing taken; some devices and
// FUSE file systems do) looped for ever: no progress, and the stall budget
// never spent. Now it counts as no room: a few zeros among progress only
// delay the write; zeros without end spend the budget (ETIMEDOUT). In a
// child: the old loop hung it. statsprof__zero_writes stands in for such a
// device.
TEST(WriteFd, WritesThatTakeNothingSpendTheStallBudget) {
  std::string problems = child::Run([] {
    child::Problems pr;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK) != 0) return std::string("pipe");
    const char data[] = "a record\n";
    for (int how : {STATSPROF__OUT_WRITE, STATSPROF__OUT_POLL}) {
      std::string mode = how == STATSPROF__OUT_WRITE ? "write: " : "poll: ";
      statsprof__zero_writes(3);
      errno = 0;
      size_t done = statsprof__write_fd(fds[1], how, data, sizeof data - 1, 1000);
      pr.Check(done == sizeof data - 1 && errno == 0, mode + "3 zeros, then " + std::to_string(done) + " bytes, " +
                                                          strerror(errno));
      statsprof__zero_writes(INT_MAX);
      done = statsprof__write_fd(fds[1], how, data, sizeof data - 1, 50);
      int err = errno;
      statsprof__zero_writes(0);
      pr.Check(done == 0 && err == ETIMEDOUT, mode + "only zeros: " + std::to_string(done) + " bytes, " + strerror(err));
    }
    char buf[64];
    pr.Check(read(fds[0], buf, sizeof buf) == 2 * (ssize_t)(sizeof data - 1), "the pipe has both records");
    return pr.text;
  }, 30);
  EXPECT_EQ(problems, "");
}

// OUT_POLL is for a blocking pipe or terminal on fd 2 that could not be
// opened again non-blocking. It wrote up to PIPE_BUF bytes whenever poll()
// said writable, which blocks a terminal with less room than that: here a
// pseudo-terminal whose reader took 1 KiB of its full buffer and then
// nothing. The old code hung in write(2) (in a child: the test reports it
// HUNG); now a terminal gets small chunks, each after a poll, and the
// write stops at the stall limit.
TEST(WriteFd, ABlockingTerminalWithLittleRoomDoesNotBlockTheWrite) {
  std::string problems = child::Run([] {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return std::string("no pseudo-terminal");
    int tty = open(ptsname(master), O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (tty < 0) return std::string("cannot open the terminal");
    struct termios t;
    tcgetattr(tty, &t);
    cfmakeraw(&t);
    tcsetattr(tty, TCSANOW, &t);
    char c = 'x';
    while (write(tty, &c, 1) == 1) continue;  // full
    char buf[1024];
    if (read(master, buf, sizeof buf) <= 0) return std::string("read");  // the reader takes a little, then stops
    fcntl(tty, F_SETFL, fcntl(tty, F_GETFL) & ~O_NONBLOCK);
    std::string table(16384, 'x');
    size_t done = statsprof__write_fd(tty, STATSPROF__OUT_POLL, table.data(), table.size(), 200);
    int err = errno;
    if (done == table.size() || err != ETIMEDOUT)
      return "wrote " + std::to_string(done) + " bytes, " + strerror(err) + ": the terminal had room after all?";
    return std::string();
  }, 30);
  EXPECT_EQ(problems, "");
}

// A blocking pipe nobody reads, filled by another writer meanwhile: room
// seen by poll() may be gone by the write, and the old code's write of
// PIPE_BUF bytes then blocked for ever. A pipe's write is RWF_NOWAIT now
// (never blocks), or sized to the free space where the kernel lacks that.
// Rounds of the race, in a child whose hang the test reports; the old code
// lost it and hung.
TEST(WriteFd, ABlockingPipeFilledByAnotherWriterDoesNotBlockTheWrite) {
  std::string problems = child::Run([] {
    signal(SIGPIPE, SIG_IGN);  // the filler's write ends with EPIPE when a round closes the pipe
    std::string chunk(PIPE_BUF, 'r');
    for (int round = 0; round < 1000; round++) {
      int fds[2];
      if (pipe(fds) != 0) return std::string("pipe");
      fcntl(fds[1], F_SETPIPE_SZ, 8192);
      std::atomic<bool> filling{false};
      std::thread filler([&] {
        filling = true;
        char b = 'f';
        while (write(fds[1], &b, 1) > 0) continue;  // byte by byte, until the round ends
      });
      while (!filling) sched_yield();
      // Page-sized writes until the pipe is full: one of them races the filler for the last free page.
      while (statsprof__write_fd(fds[1], STATSPROF__OUT_POLL, chunk.data(), chunk.size(), 0) == chunk.size())
        continue;
      close(fds[0]);  // the filler, blocked on the full pipe, gets EPIPE
      filler.join();
      close(fds[1]);
    }
    return std::string();
  }, 60);
  EXPECT_EQ(problems, "");
}

// fd 2 was looked at only when it became another file: a pipe that was
// non-blocking then was written directly for good, even after the host
// made it blocking again, and a full one blocked the write for ever (the
// old code hung this child). Its O_NONBLOCK is looked at at each refresh.
TEST(StderrOut, APipeMadeBlockingAfterTheFirstRefreshIsNotWrittenAsNonBlocking) {
  std::string problems = child::Run([] {
    int fds[2];
    if (pipe(fds) != 0 || dup2(fds[1], 2) != 2) return std::string("no pipe on fd 2");
    close(fds[1]);
    fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK);
    statsprof__stderr_out out = {};
    out.fd = -1;
    statsprof__stderr_refresh(&out);
    const char line[] = "statsprof: a line\n";
    if (statsprof__write_fd(out.fd, out.how, line, sizeof line - 1, 100) != sizeof line - 1)
      return std::string("the first line");
    std::string filler(65536, 'x');
    while (write(2, filler.data(), filler.size()) > 0) continue;  // full
    fcntl(2, F_SETFL, fcntl(2, F_GETFL) & ~O_NONBLOCK);             // the host's stderr is blocking again
    statsprof__stderr_refresh(&out);
    errno = 0;
    size_t done = statsprof__write_fd(out.fd, out.how, line, sizeof line - 1, 100);
    int err = errno;
    statsprof__stderr_close(&out);
    if (done != 0 || err != ETIMEDOUT) return "wrote " + std::to_string(done) + ", " + strerror(err);
    return std::string();
  }, 30);
  EXPECT_EQ(problems, "");
}

// ---- the stderr sink ---------------------------------------------------------

// The table's data rows: lines that end in "file:line(name)" of `file`.
std::vector<std::string> Rows(const std::string &text, const std::string &file) {
  std::vector<std::string> rows;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.find(" " + file + ":") != std::string::npos) rows.push_back(l);
  return rows;
}

const char kStderrProgram[] = R"(
def hot_function(): return sum(range(50))
def warm_function(): hot_function()
def cold_function(): pass
def main():
    for i in range(7): hot_function()
    for i in range(3): warm_function()
    cold_function()
)";

TEST(StderrSink, WritesATableWithTheTopFunctions) {
  void *ns = pyh::Exec(kStderrProgram, "table.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=stderr;builtins=off;interval=1h", &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  std::string text = CaptureStderr([&] {
    EXPECT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
    EXPECT_EQ(statsprof_flush(p), 0);  // the sink writes on its own thread
  });
  statsprof_destroy(p);
  EXPECT_EQ(text.rfind("statsprof #1 (delta): ", 0), 0u) << text;
  EXPECT_NE(text.find(", 15 calls, total_tt "), std::string::npos) << text;  // 1 + 10 + 3 + 1
  EXPECT_NE(text.find("ncalls   tottime   percall   cumtime   percall filename:lineno(function)"),
            std::string::npos)
      << text;
  std::vector<std::string> rows = Rows(text, "table.py");
  ASSERT_EQ(rows.size(), 4u) << text;
  std::map<std::string, std::string> ncalls;
  double prev_cum = 1e300;
  for (const std::string &row : rows) {
    std::istringstream in(row);
    std::string nc, where;
    double tt, ptt, ct, pct;
    in >> nc >> tt >> ptt >> ct >> pct >> where;
    ASSERT_FALSE(in.fail()) << row;
    ncalls[where] = nc;
    EXPECT_LE(ct, prev_cum) << "rows are not sorted by cumtime:\n" << text;
    prev_cum = ct;
  }
  EXPECT_EQ(ncalls["table.py:2(hot_function)"], "10");
  EXPECT_EQ(ncalls["table.py:3(warm_function)"], "3");
  EXPECT_EQ(ncalls["table.py:4(cold_function)"], "1");
  EXPECT_EQ(ncalls["table.py:5(main)"], "1");
  pyh::Release(ns);
}

// sink=stderr writes a pipe or terminal on fd 2 through a non-blocking
// descriptor of its own. A forked child that closed what it inherited and
// opened a file of its own under that number (a daemon does) had the
// profile written into that file, and the file closed when fd 2 changed.
// The child forgets the parent's descriptor and opens its own.
int OwnStderrFd() {
  struct stat two;
  if (fstat(2, &two) != 0) return -1;
  for (int fd = 3; fd < 1024; fd++) {
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_ACCMODE) == O_WRONLY && (fl & O_NONBLOCK) && fstat(fd, &st) == 0 &&
        st.st_dev == two.st_dev && st.st_ino == two.st_ino)
      return fd;
  }
  return -1;
}

TEST(StderrSink, AForkedChildNeverWritesThroughTheParentsDescriptor) {
  void *ns = pyh::Exec(kStderrProgram, "table.py");
  std::string dir = pyh::TempDir();
  std::string problems = child::Run([&] {
    child::Problems pr;
    int pfd[2];
    if (pipe(pfd) != 0 || dup2(pfd[1], 2) < 0) return std::string("no pipe on fd 2");
    close(pfd[1]);
    std::string got;
    std::thread reader([&] {
      char buf[4096];
      for (ssize_t n; (n = read(pfd[0], buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
    });
    statsprof *p = nullptr;
    if (statsprof_create("sink=stderr;builtins=off;interval=1h", &p) != 0) return std::string("create failed");
    pr.Check(statsprof_start(p) == 0, "start");
    pyh::Call(ns, "main");
    pr.Check(statsprof_emit_now(p) == 0 && statsprof_flush(p) == 0, "emit");
    int own = OwnStderrFd();
    pr.Check(own >= 0, "the sink has no descriptor of its own for the pipe");
    std::string path = dir + "/daemon.log";
    std::string in_child = child::Run([&] {
               child::Problems cpr;
               int f = open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
               if (f < 0 || dup2(f, own) < 0) return std::string("no file under the sink's number");
               close(f);
               pyh::Call(ns, "main");
               cpr.Check(statsprof_emit_now(p) == 0 && statsprof_flush(p) == 0, "emit in the child");
               struct stat st;
               cpr.Check(fstat(own, &st) == 0, "the child's file was closed");
               cpr.Check(st.st_size == 0, "the child's file got " + std::to_string(st.st_size) + " bytes of profile");
               statsprof_destroy(p);
               return cpr.text;
             });
    // Under TSan the child exits 66 (child.h): what it wrote is checked here.
    pr.Check(child::OkUnderTsan(in_child), "in the forked child: " + in_child);
    struct stat st = {};
    pr.Check(stat(path.c_str(), &st) == 0 && st.st_size == 0,
             "the child's file holds " + std::to_string(st.st_size) + " bytes of profile");
    statsprof_destroy(p);
    close(2);
    reader.join();
    // Both processes' tables went to the pipe: the parent's, then the child's.
    size_t first = got.find("statsprof #1 (delta)"), second = got.find("statsprof #1 (delta)", first + 1);
    pr.Check(first != std::string::npos && second != std::string::npos, "not two tables on the pipe:\n" + got);
    return pr.text;
  });
  EXPECT_EQ(problems, "");
  pyh::Release(ns);
}

TEST(StderrSink, RowCountArgumentLimitsTheTable) {
  void *ns = pyh::Exec(kStderrProgram, "table.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=stderr:2;builtins=off;interval=1h", &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  std::string text = CaptureStderr([&] {
    EXPECT_EQ(statsprof_emit_now(p), 0);
    EXPECT_EQ(statsprof_flush(p), 0);
  });
  statsprof_destroy(p);
  EXPECT_EQ(Rows(text, "table.py").size(), 2u) << text;
  EXPECT_NE(text.find("main"), std::string::npos) << text;  // the largest cumtime comes first
  pyh::Release(ns);
}

// The table's first line says what the record is, in the words of
// statsprof_record_kind_name, with the thread and the frame.
TEST(StderrSink, FirstLineNamesTheRecordsKindThreadAndFrame) {
  const statsprof_sink_ops *ops = nullptr;
  void *ctx = nullptr;
  char err[256] = "";
  ASSERT_EQ(pyh::OpenSink("stderr", nullptr, &ops, &ctx, err, sizeof err), 0) << err;
  struct Case {
    int kind;
    uint64_t thread_id, frame;
    const char *want;
  } cases[] = {
      {STATSPROF_RECORD_DELTA, 0, 0, "statsprof #3 (delta): "},
      {STATSPROF_RECORD_THREAD, 42, 0, "statsprof #3 (thread 42 worker-1): "},
      {STATSPROF_RECORD_CUMULATIVE, 42, 0, "statsprof #3 (cumulative, thread 42 worker-1): "},
      {STATSPROF_RECORD_SPIKE, 0, 7, "statsprof #3 (spike, frame 7): "},
      {9, 0, 0, "statsprof #3 (unknown): "},
  };
  for (const Case &c : cases) {
    statsprof_stats_profile rec{};
    rec.kind = static_cast<statsprof_record_kind>(c.kind);
    rec.seq = 3;
    rec.thread_id = c.thread_id;
    rec.thread_name = c.thread_id ? "worker-1" : nullptr;
    rec.frame = c.frame;
    std::string text = CaptureStderr([&] { EXPECT_EQ(ops->emit(ctx, &rec), 0); });
    EXPECT_EQ(text.rfind(c.want, 0), 0u) << text;
  }
  ops->close(ctx);
}

}  // namespace
