// rows_test.cc — the rows layout of the JSONL sink (layout=rows): exact
// lines for hand-built records, escaping, a record with no functions, the
// sink option, rotation keeping a record's lines together, and the lines of
// a real run read back with Python's json.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>

#include "pyharness.h"

namespace {

std::string Rows(const statsprof_stats_profile &rec) {
  char *out = nullptr;
  size_t len = 0;
  EXPECT_EQ(statsprof_format_jsonl_rows(&rec, &out, &len), 0);
  std::string s(out ? out : "", len);
  statsprof_free(out);
  EXPECT_EQ(s.size(), strlen(s.c_str())) << "embedded NUL";
  return s;
}

// The machine's name as the formatter writes it (a JSON string).
std::string HostJson() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) strcpy(name, "unknown");
  for (const char *c = name; *c; c++) EXPECT_TRUE(*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20) << name;
  return std::string("\"") + name + "\"";
}

// ---- exact lines --------------------------------------------------------------

TEST(FormatJsonlRows, ThreadRecordInProductionModeGivesExactLines) {
  statsprof_caller_profile callers[] = {
      {"main", "game.py", 3, 5, 4, 0.5, 1.5},
      {"<built-in method builtins.sorted>", "~", 0, 2, 2, 0.25, 0.75},
  };
  statsprof_function_profile funcs[] = {
      {"update", "/srv/game/ai.py", 42, 12, 3, 1.25, 1.25 / 12, 2.5, 2.5 / 3, 2, callers},
      {"<built-in method builtins.len>", "~", 0, 500, 500, 0.03125, 0, 0.03125, 0, 0, nullptr},
  };
  statsprof_stats_profile rec{};
  rec.total_tt = 1.28125;
  rec.nfunc_profiles = 2;
  rec.func_profiles = funcs;
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_THREAD;
  rec.start_ns = 1795617000123456789LL;
  rec.end_ns = 1795617001000000001LL;
  rec.seq = 7;
  rec.pid = 4242;
  rec.dropped = 1;
  rec.sink_errors = 2;
  rec.overflow_functions = 3;
  rec.thread_id = 140001;
  rec.thread_name = "worker-1";
  rec.frame_stats = {60, 0.016, 0.015, 0.02, 0.03, 0.04};
  rec.observed_s = 0.5;
  rec.duty = 0.25;
  rec.overhead_est = 0.0625;
  rec.span_s = 2.75;
  std::string id = "{\"ts\":1795617001.000000001,\"start\":1795617000.123456789,\"interval_s\":0.876543212,"
                   "\"ts_ns\":1795617001000000001,\"start_ns\":1795617000123456789,\"seq\":7,\"pid\":4242,"
                   "\"host\":" + HostJson() + ",\"kind\":\"thread\",\"thread_id\":140001,\"thread_name\":\"worker-1\","
                   "\"duty\":0.25";
  std::string want =
      id + ",\"row\":\"record\",\"rows\":5,\"frames\":60,\"frame_mean_s\":0.016,\"frame_p50_s\":0.015,"
           "\"frame_p95_s\":0.02,\"frame_p99_s\":0.03,\"frame_max_s\":0.04,\"observed_s\":0.5,\"span_s\":2.75,"
           "\"overhead_est\":0.0625,\"dropped\":1,\"sink_errors\":2,\"overflow_functions\":3,\"total_tt\":1.28125}\n" +
      id + ",\"row\":\"function\",\"key\":\"/srv/game/ai.py:42(update)\",\"file\":\"/srv/game/ai.py\",\"line\":42,"
           "\"function\":\"update\",\"ncalls\":12,\"primitive_calls\":3,\"tottime\":1.25,\"cumtime\":2.5}\n" +
      id + ",\"row\":\"caller\",\"key\":\"/srv/game/ai.py:42(update)\",\"caller_key\":\"game.py:3(main)\","
           "\"ncalls\":5,\"primitive_calls\":4,\"tottime\":0.5,\"cumtime\":1.5}\n" +
      id + ",\"row\":\"caller\",\"key\":\"/srv/game/ai.py:42(update)\","
           "\"caller_key\":\"~:0(<built-in method builtins.sorted>)\",\"ncalls\":2,\"primitive_calls\":2,"
           "\"tottime\":0.25,\"cumtime\":0.75}\n" +
      id + ",\"row\":\"function\",\"key\":\"~:0(<built-in method builtins.len>)\",\"file\":\"~\",\"line\":0,"
           "\"function\":\"<built-in method builtins.len>\",\"ncalls\":500,\"primitive_calls\":500,"
           "\"tottime\":0.03125,\"cumtime\":0.03125}\n";
  EXPECT_EQ(Rows(rec), want);
}

TEST(FormatJsonlRows, SpikeLinesCarryTheFrameAndAThreadWithoutNameHasNoNameField) {
  statsprof_function_profile f = {"load_chunk", "w.py", 9, 1, 1, 0.03, 0.03, 0.04, 0.04, 0, nullptr};
  statsprof_stats_profile rec{};
  rec.total_tt = 0.03;
  rec.nfunc_profiles = 1;
  rec.func_profiles = &f;
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_SPIKE;
  rec.start_ns = 2000000000LL;
  rec.end_ns = 2045000000LL;
  rec.seq = 3;
  rec.pid = 1;
  rec.frame = 120;
  rec.frame_time_s = 0.045;
  rec.thread_id = 9;  // a thread without a name: no null in a database column
  std::string id = "{\"ts\":2.045000000,\"start\":2.000000000,\"interval_s\":0.045000000,\"ts_ns\":2045000000,"
                   "\"start_ns\":2000000000,\"seq\":3,\"pid\":1,\"host\":" + HostJson() +
                   ",\"kind\":\"spike\",\"thread_id\":9,\"frame\":120";
  std::string want = id + ",\"row\":\"record\",\"rows\":2,\"frame_time_s\":0.045,\"dropped\":0,\"sink_errors\":0,"
                          "\"overflow_functions\":0,\"total_tt\":0.03}\n" +
                     id + ",\"row\":\"function\",\"key\":\"w.py:9(load_chunk)\",\"file\":\"w.py\",\"line\":9,"
                          "\"function\":\"load_chunk\",\"ncalls\":1,\"primitive_calls\":1,\"tottime\":0.03,"
                          "\"cumtime\":0.04}\n";
  EXPECT_EQ(Rows(rec), want);
}

TEST(FormatJsonlRows, RecordWithNoFunctionsIsOneLineWithItsIntervalFramesAndCounters) {
  statsprof_stats_profile rec{};
  rec.mode = STATSPROF_DELTA;
  rec.kind = STATSPROF_RECORD_DELTA;
  rec.start_ns = 1000000000LL;
  rec.end_ns = 1500000000LL;
  rec.seq = 2;
  rec.pid = 77;
  rec.dropped = 4;
  rec.threads_omitted = 6;
  rec.spikes_suppressed = 5;
  rec.frame_stats = {30, 0.0166, 0.016, 0.017, 0.018, 0.019};
  std::string want = "{\"ts\":1.500000000,\"start\":1.000000000,\"interval_s\":0.500000000,\"ts_ns\":1500000000,"
                     "\"start_ns\":1000000000,\"seq\":2,\"pid\":77,\"host\":" + HostJson() +
                     ",\"kind\":\"delta\",\"row\":\"record\",\"rows\":1,\"frames\":30,\"frame_mean_s\":0.0166,"
                     "\"frame_p50_s\":0.016,\"frame_p95_s\":0.017,\"frame_p99_s\":0.018,\"frame_max_s\":0.019,"
                     "\"dropped\":4,\"sink_errors\":0,\"overflow_functions\":0,\"total_tt\":0,\"threads_omitted\":6,"
                     "\"spikes_suppressed\":5}\n";
  EXPECT_EQ(Rows(rec), want);
}

TEST(FormatJsonlRows, TimesBeforeTheEpochAndNonFiniteNumbersStayValidJson) {
  statsprof_function_profile f = {"f", "x.py", 1, 1, 1, NAN, 0, INFINITY, 0, 0, nullptr};
  statsprof_stats_profile rec{};
  rec.nfunc_profiles = 1;
  rec.func_profiles = &f;
  rec.start_ns = INT64_MIN;
  rec.end_ns = -1500000000LL;
  rec.total_tt = -INFINITY;
  std::string out = Rows(rec);
  EXPECT_NE(out.find("{\"ts\":-1.500000000,\"start\":-9223372036.854775808,"), std::string::npos) << out;
  EXPECT_EQ(pyh::RunPy(R"PY(
import json, math
def no_constants(c):
    raise ValueError("not JSON: " + c)
lines = text.split("\n")
assert lines.pop() == ""
rows = [json.loads(l, parse_constant=no_constants) for l in lines]
assert [r["row"] for r in rows] == ["record", "function"], rows
assert rows[0]["ts_ns"] == -1500000000 and rows[0]["start_ns"] == -2**63
assert all(math.isfinite(r[k]) for r in rows for k in ("interval_s", "total_tt", "tottime", "cumtime") if k in r)
)PY",
            {{"text", out}}),
            "");
}

TEST(FormatJsonlRows, NullArgumentsAreEinval) {
  statsprof_stats_profile rec{};
  char *out = nullptr;
  size_t len = 0;
  for (auto format : {statsprof_format_jsonl_rows, statsprof_format_jsonl}) {
    EXPECT_EQ(format(nullptr, &out, &len), STATSPROF_EINVAL);
    EXPECT_EQ(format(&rec, nullptr, &len), STATSPROF_EINVAL);
    EXPECT_EQ(format(&rec, &out, nullptr), STATSPROF_EINVAL);
  }
  EXPECT_EQ(out, nullptr);
}

// ---- escaping -------------------------------------------------------------------

TEST(FormatJsonlRows, NamesNeedingEscapesStayOnTheirLineAndRoundTrip) {
  const char *files[] = {"q\"uote.py", "back\\slash.py", "new\nline.py", "ctl\x01\x1f\x7f.py", "r\xc3\xa9sum\xc3\xa9.py",
                         "bad\xff\xfe.py"};
  statsprof_caller_profile caller = {"call\ner\"", "c\\d.py", 2, 1, 1, 0, 0};
  statsprof_function_profile funcs[6];
  for (int i = 0; i < 6; i++)
    funcs[i] = {"fn\t\"x\"\n", files[i], i + 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 1, &caller};
  statsprof_stats_profile rec{};
  rec.nfunc_profiles = 6;
  rec.func_profiles = funcs;
  rec.thread_id = 5;
  rec.thread_name = "th\"read\n";
  std::string out = Rows(rec);
  EXPECT_EQ(pyh::RunPy(R"PY(
import json
raw = text.encode("utf-8", "surrogateescape")
lines = raw.split(b"\n")
assert lines.pop() == b""
assert len(lines) == 13, len(lines)       # 1 record + 6 functions + 6 callers: newlines are escaped
rows = [json.loads(l.decode("utf-8")) for l in lines]   # strict UTF-8
assert rows[0]["row"] == "record" and rows[0]["rows"] == 13
files = ['q"uote.py', "back\\slash.py", "new\nline.py", "ctl\x01\x1f\x7f.py", "résumé.py", "bad\ufffd\ufffd.py"]
funcs = [r for r in rows if r["row"] == "function"]
assert [f["file"] for f in funcs] == files, [f["file"] for f in funcs]
for i, f in enumerate(funcs):
    assert f["function"] == 'fn\t"x"\n' and f["line"] == i + 1
    assert f["key"] == "%s:%d(%s)" % (files[i], i + 1, 'fn\t"x"\n'), f["key"]
callers = [r for r in rows if r["row"] == "caller"]
assert [c["key"] for c in callers] == [f["key"] for f in funcs]
assert {c["caller_key"] for c in callers} == {'c\\d.py:2(call\ner")'}
assert {r["thread_name"] for r in rows} == {'th"read\n'}
)PY",
            {{"text", out}}),
            "");
}

// ---- the sink ---------------------------------------------------------------------

const char kProgram[] = R"(
def leaf(x=0): return x
def mid(x): return leaf(x) + leaf(x)
def r(n): return 0 if n == 0 else r(n - 1)
def main():
    for i in range(4): mid(i)
    for i in range(3): r(3)
)";

TEST(JsonlRowsSink, WritesTheSameRecordsAsTheRecordLayout) {
  std::string dir = pyh::TempDir();
  std::string config = "interval=1h;builtins=off;sink=jsonl:" + dir + "/rec.jsonl;sink=jsonl:" + dir +
                       "/rows.jsonl,layout=rows;sink=jsonl:" + dir + "/explicit.jsonl,layout=record";
  void *ns = pyh::Exec(kProgram, "rows.py");
  statsprof *p;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0);
  ASSERT_EQ(statsprof_emit_now(p), 0);  // nothing ran: a record with no functions
  pyh::Call(ns, "leaf");
  EXPECT_EQ(statsprof_stop(p), 0);
  EXPECT_EQ(statsprof_sink_errors(p), 0u);
  statsprof_destroy(p);
  EXPECT_EQ(pyh::ReadFile(dir + "/rec.jsonl"), pyh::ReadFile(dir + "/explicit.jsonl"));
  // Each rows-layout record, put back together, equals its record-layout
  // line (percall values are not in rows: recomputed, so only close).
  EXPECT_EQ(pyh::RunPy(R"PY(
import json, math
recs = [json.loads(l) for l in open(dir + "/rec.jsonl")]
rows = [json.loads(l) for l in open(dir + "/rows.jsonl")]
assert len(recs) == 3, len(recs)
F = "rows.py"
leaf, mid, r, main = F + ":2(leaf)", F + ":3(mid)", F + ":4(r)", F + ":5(main)"
i = 0
for rec in recs:
    head = rows[i]
    assert head["row"] == "record", head
    group = rows[i:i + head["rows"]]
    i += head["rows"]
    for row in group:
        for k in ("ts_ns", "start_ns", "interval_s", "seq", "pid", "host", "kind"):
            assert row[k] == rec[k], (k, row, rec)
        # the decimal seconds are the ns exactly
        assert row["ts"] == float("%d.%09d" % divmod(rec["ts_ns"], 10**9)), row["ts"]
        assert row["start"] == float("%d.%09d" % divmod(rec["start_ns"], 10**9)), row["start"]
    for k in ("dropped", "sink_errors", "overflow_functions", "total_tt"):
        assert head[k] == rec[k], k
    funcs = [g for g in group if g["row"] == "function"]
    assert [f["key"] for f in funcs] == list(rec["func_profiles"]), [f["key"] for f in funcs]
    for f in funcs:
        fp = rec["func_profiles"][f["key"]]
        total, _, prim = fp["ncalls"].partition("/")
        assert (f["ncalls"], f["primitive_calls"]) == (int(total), int(prim or total)), (f, fp)
        assert (f["file"], f["line"], f["function"]) == (fp["file_name"], fp["line_number"], fp["function_name"])
        assert (f["tottime"], f["cumtime"]) == (fp["tottime"], fp["cumtime"])
        edges = {g["caller_key"]: g for g in group if g["row"] == "caller" and g["key"] == f["key"]}
        assert set(edges) == set(fp["callers"]), (edges, fp["callers"])
        for ck, c in fp["callers"].items():
            assert {k: edges[ck][k] for k in c} == c, (edges[ck], c)
assert i == len(rows), (i, len(rows))
first = [g for g in rows if g["seq"] == 1 and g["row"] == "function"]
assert {g["key"]: g["ncalls"] for g in first} == {main: 1, mid: 4, leaf: 8, r: 12}
assert [g["primitive_calls"] for g in first if g["key"] == r] == [3]
empty = [g for g in rows if g["seq"] == 2]
assert len(empty) == 1 and empty[0]["row"] == "record" and empty[0]["rows"] == 1, empty
last = [g for g in rows if g["seq"] == 3]
assert [g["row"] for g in last] == ["record", "function"] and last[1]["key"] == leaf
)PY",
            {{"dir", dir}}),
            "");
  pyh::Release(ns);
}

TEST(JsonlRowsSink, BadLayoutIsAConfigErrorNamingIt) {
  struct {
    const char *config, *message;
  } cases[] = {
      {"sink=jsonl:/tmp/x.jsonl,layout=columns",
       "config: sink jsonl:/tmp/x.jsonl,layout=columns: bad option 'layout=columns': not a known value; expected "
       "layout=record or rows (at offset 24)"},
      {"sink=jsonl:/tmp/x.jsonl,layout=", "bad option 'layout=': not a known value; expected layout=record or rows"},
      {"sink=jsonl:/tmp/x.jsonl,layout",
       "bad option 'layout': not NAME=VALUE (options: max_bytes=SIZE, keep=N, layout=record|rows)"},
      {"sink=jsonl:/tmp/x.jsonl,layout=rows,layout=record", "option 'layout' given twice (at offset 36)"},
  };
  for (const auto &c : cases) {
    statsprof *p = reinterpret_cast<statsprof *>(0x1);
    EXPECT_EQ(statsprof_create(c.config, &p), STATSPROF_ECONFIG) << c.config;
    EXPECT_EQ(p, nullptr);
    std::string msg = statsprof_errmsg(nullptr);
    EXPECT_NE(msg.find(c.message), std::string::npos) << msg;
  }
}

TEST(JsonlRowsSink, RotationKeepsEachRecordsLinesTogetherInOneFile) {
  std::string dir = pyh::TempDir(), path = dir + "/r.jsonl";
  std::string config = "writer=sync;builtins=off;sink=jsonl:" + path + ",layout=rows,max_bytes=4k,keep=3";
  void *ns = pyh::Exec("def f(): pass\ndef g(): f()\ndef main():\n  for i in range(3): g()\n", "rot.py");
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 40; i++) {
    pyh::Call(ns, "main");
    ASSERT_EQ(statsprof_emit_now(p), 0);
  }
  statsprof_destroy(p);
  EXPECT_EQ(statsprof_sink_errors(nullptr), 0u);
  struct stat st;
  EXPECT_NE(stat((path + ".4").c_str(), &st), 0) << "keep=3 kept a fourth file";
  // Every file holds whole records (a record line, then exactly its lines),
  // stays under max_bytes, and the files hold consecutive records, newest in
  // PATH.
  EXPECT_EQ(pyh::RunPy(R"PY(
import json, os
seqs = []
for name in (path + ".3", path + ".2", path + ".1", path):
    data = open(name, "rb").read()
    assert 0 < len(data) <= 4096, (name, len(data))
    assert data.endswith(b"\n")
    rows = [json.loads(l) for l in data.split(b"\n")[:-1]]
    i = 0
    while i < len(rows):
        head = rows[i]
        assert head["row"] == "record", (name, i, head)
        group = rows[i:i + head["rows"]]
        assert len(group) == head["rows"] == 6, (name, head)   # record, f, g, main, 2 callers
        assert {g["seq"] for g in group} == {head["seq"]}
        seqs.append(head["seq"])
        i += head["rows"]
assert seqs == list(range(seqs[0], 41)), seqs
)PY",
            {{"path", path}}),
            "");
  pyh::Release(ns);
}

}  // namespace
