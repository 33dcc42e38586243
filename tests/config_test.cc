// config_test.cc — the config string, error codes and messages, the version,
// and host sinks registered by name.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>
#include <cstring>
#include <string>

#include "child.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

// Expects statsprof_create(config) to fail with `code` and a message that
// contains every one of `needles`; the handle must come back NULL.
void ExpectCreateFails(const char *config, int code, std::initializer_list<const char *> needles) {
  statsprof *p = reinterpret_cast<statsprof *>(0x1);  // must be overwritten
  int rc = statsprof_create(config, &p);
  EXPECT_EQ(rc, code) << "config: " << config << " -> " << statsprof_err_name(rc) << ": "
                      << statsprof_errmsg(nullptr);
  EXPECT_EQ(p, nullptr) << config;
  std::string msg = statsprof_errmsg(nullptr);
  for (const char *n : needles)
    EXPECT_NE(msg.find(n), std::string::npos) << "config: " << config << "\nmessage: " << msg
                                               << "\nshould contain: " << n;
  if (rc == 0) statsprof_destroy(p);
}

void ExpectConfigError(const char *config, std::initializer_list<const char *> needles) {
  ExpectCreateFails(config, STATSPROF_ECONFIG, needles);
}

// Creates and destroys; fails the test with the message if create fails.
void ExpectValid(const char *config) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << "config: " << (config ? config : "(null)") << ": "
                                             << statsprof_errmsg(nullptr);
  EXPECT_NE(p, nullptr);
  if (p) {
    EXPECT_STREQ(statsprof_errmsg(p), "");
  }
  statsprof_destroy(p);
}

// Runs `fn` with the working directory set to a fresh temporary directory,
// which it returns; the default sink writes statsprof.jsonl into the cwd.
template <typename F>
std::string InTempCwd(F fn) {
  std::string dir = pyh::TempDir();
  char old[4096];
  EXPECT_NE(getcwd(old, sizeof old), nullptr);
  EXPECT_EQ(chdir(dir.c_str()), 0);
  fn();
  EXPECT_EQ(chdir(old), 0);
  return dir;
}

// ---- bad input: one test per kind ------------------------------------

TEST(Config, UnknownKeyIsRejectedAndNamed) {
  ExpectConfigError("sink=none;colour=blue", {"unknown key 'colour'", "interval", "max_functions"});
}

TEST(Config, ItemWithoutEqualsIsRejected) {
  ExpectConfigError("sink=none; interval", {"'interval' is not key=value"});
}

TEST(Config, EmptyValueIsRejected) {
  ExpectConfigError("sink=none;clock=", {"'clock'", "empty value"});
  ExpectConfigError("sink=none;interval=   ", {"'interval'", "empty value"});
}

TEST(Config, MessageGivesTheOffsetOfTheBadItem) {
  // "sink=none;" is 10 characters: the bad item starts at offset 10.
  ExpectConfigError("sink=none;clock=gpu", {"offset 10"});
}

TEST(Config, BadDurationsAreRejected) {
  ExpectConfigError("sink=none;interval=1 parsec", {"bad interval '1 parsec'", "unknown unit ' parsec'"});
  ExpectConfigError("sink=none;interval=-1s", {"bad interval '-1s'", "not a plain decimal number"});
  ExpectConfigError("sink=none;interval=ms", {"bad interval 'ms'", "not a plain decimal number"});
  ExpectConfigError("sink=none;interval=5", {"bad interval '5'", "needs a unit (ns, us, ms, s, m or h)"});
  ExpectConfigError("sink=none;interval=5sec", {"bad interval '5sec'", "unknown unit 'sec'"});
  ExpectConfigError("sink=none;interval=nans", {"bad interval 'nans'"});
  ExpectConfigError("sink=none;interval=infs", {"bad interval 'infs'"});
  ExpectConfigError("sink=none;interval=1e30h", {"bad interval '1e30h'", "exponents are not allowed"});
}

// Issue 11, item 10: strtod took these (hex, exponents), and values that
// round to zero or overflow were accepted silently. Each must name the text
// and its offset.
TEST(Config, NumbersArePlainDecimal) {
  ExpectConfigError("sink=none;interval=0x10s", {"bad interval '0x10s'", "hexadecimal", "(at offset 10)"});
  ExpectConfigError("sink=none;interval=1e3s", {"bad interval '1e3s'", "exponents", "(at offset 10)"});
  ExpectConfigError("sink=none;duty=0x0.1", {"bad duty '0x0.1'", "hexadecimal", "(at offset 10)"});
  ExpectConfigError("sink=none;duty=5E-2", {"bad duty '5E-2'", "exponents"});
  ExpectConfigError("sink=none;interval=+1s", {"bad interval '+1s'", "not a plain decimal number"});
  ExpectConfigError("sink=none;queue=0x10", {"bad queue '0x10'", "hexadecimal"});
  ExpectConfigError("sink=none;queue=1e2", {"bad queue '1e2'", "exponents"});
  ExpectConfigError("sink=none;queue=1.5", {"bad queue '1.5'", "not a whole number"});
  ExpectConfigError("sink=none;max_spikes_per_min= 3 4", {"bad max_spikes_per_min '3 4'"});
  ExpectConfigError("sink=none;window=.", {"bad window '.'", "not a plain decimal number"});
  ExpectValid("sink=none;interval=.5s;duty=0.05;window=10ms");
  ExpectValid("sink=none;interval=2.5s;duty=5%;budget=16.6ms");
}

TEST(Config, NonZeroValuesThatRoundToZeroAreRejected) {
  ExpectConfigError("sink=none;interval=1e-300s", {"bad interval '1e-300s'", "(at offset 10)"});
  ExpectConfigError("sink=none;budget=0.1ns", {"bad budget '0.1ns'", "rounds to zero", "(at offset 10)"});
  ExpectConfigError("sink=none;interval=0.0000000001s", {"bad interval '0.0000000001s'", "rounds to zero"});
  ExpectConfigError("sink=none;duty=0.0000000001", {"bad duty '0.0000000001'", "rounds to zero"});
  ExpectConfigError("sink=none;window=0ms", {"bad window '0ms'", "too small"});
  // Zero itself, with or without a unit, stays valid where 0 is allowed.
  ExpectValid("sink=none;interval=0");
  ExpectValid("sink=none;interval=0.000s;budget=0");
  ExpectValid("sink=none;budget=0.5ns");  // rounds to 1 ns, not to zero
}

TEST(Config, OverflowIsRejected) {
  // 18014398509481985 KiB is 2^64 + 1024 bytes: this wrapped to 1 KiB, and
  // rotation at 1 KiB then deleted records.
  ExpectConfigError("sink=jsonl:/tmp/statsprof-never.jsonl,max_bytes=18014398509481985k",
                    {"bad option 'max_bytes=18014398509481985k'", "too large", "(at offset 38)"});
  ExpectConfigError("sink=none;interval=99999999999999999999s", {"bad interval '99999999999999999999s'", "too large"});
  ExpectConfigError("sink=none;interval=2562048h", {"bad interval '2562048h'", "too large"});  // > 2^63 ns
  ExpectConfigError("sink=none;queue=18446744073709551617", {"bad queue '18446744073709551617'", "too large"});
  ExpectConfigError("sink=none;stop_timeout=25h", {"bad stop_timeout '25h'", "too large"});
  ExpectValid("sink=none;interval=2562047h");
}

// An interval up to 2^63 - 1 ns is taken as given, with trigger=timer too
// (whose thread then sleeps a day at a time: timer_test); one more is too
// large.
TEST(Config, TheLongestIntervalIsAccepted) {
  statsprof__config c;
  char err[256] = "";
  ASSERT_EQ(statsprof__config_parse("sink=none;trigger=timer;interval=9223372036854775807ns", &c, err, sizeof err), 0)
      << err;
  EXPECT_EQ(c.interval_ns, INT64_MAX);
  EXPECT_EQ(c.trigger_timer, 1);
  statsprof__config_free(&c);
  ExpectValid("sink=none;trigger=timer;interval=9223372036854775807ns");
  ExpectConfigError("sink=none;trigger=timer;interval=9223372036854775808ns",
                    {"bad interval '9223372036854775808ns'", "too large"});
}

TEST(Config, EveryDurationUnitIsAccepted) {
  for (const char *d : {"0s", "250ns", "10us", "1.5ms", "2s", "0.5m", "1h"}) {
    std::string c = std::string("sink=none;interval=") + d;
    ExpectValid(c.c_str());
  }
}

// As Go's time.ParseDuration: a bare "0" needs no unit.
TEST(Config, BareZeroIntervalIsAccepted) { ExpectValid("sink=none;interval=0"); }

TEST(Config, BadClockIsRejected) {
  ExpectConfigError("sink=none;clock=gpu", {"bad clock 'gpu'", "wall", "cpu"});
  ExpectConfigError("sink=none;clock=WALL", {"bad clock 'WALL'"});
}

TEST(Config, BadBoolIsRejected) {
  ExpectConfigError("sink=none;builtins=maybe", {"'maybe'", "builtins"});
  ExpectConfigError("sink=none;builtins=2", {"'2'", "builtins"});
}

TEST(Config, BadMaxFunctionsIsRejected) {
  ExpectConfigError("sink=none;max_functions=0", {"bad max_functions '0'"});
  ExpectConfigError("sink=none;max_functions=-3", {"bad max_functions '-3'"});
  ExpectConfigError("sink=none;max_functions=abc", {"bad max_functions 'abc'"});
  ExpectConfigError("sink=none;max_functions=12abc", {"bad max_functions '12abc'"});
  ExpectConfigError("sink=none;max_functions=100000001", {"bad max_functions '100000001'"});
  ExpectConfigError("sink=none;max_functions=99999999999999999999999",
                    {"bad max_functions '99999999999999999999999'"});
  ExpectValid("sink=none;max_functions=1");
  ExpectValid("sink=none;max_functions=100000000");
}

TEST(Config, DuplicateKeyIsRejected) {
  ExpectConfigError("sink=none;clock=wall;clock=cpu", {"duplicate key 'clock'"});
  ExpectConfigError("sink=none;interval=1s; interval = 2s", {"duplicate key 'interval'"});
}

TEST(Config, BadSinkNameIsRejected) {
  ExpectConfigError("sink=a/b", {"bad sink name in 'a/b'"});
  ExpectConfigError("sink=my sink", {"bad sink name in 'my sink'"});
  ExpectConfigError("sink=:x.jsonl", {"':x.jsonl' has no name"});
}

TEST(Config, UnknownSinkIsRejectedListingTheKnownOnes) {
  ExpectConfigError("sink=kafka:topic", {"unknown sink 'kafka'", "none", "jsonl", "stderr"});
}

// Issue 11, item 11: malformed sink arguments were STATSPROF_ESINK; they
// are bad values, so STATSPROF_ECONFIG with an offset, as README promises.
TEST(Config, JsonlSinkWithoutPathIsRejected) {
  ExpectConfigError("sink=jsonl", {"sink jsonl", "needs a file path", "(at offset 0)"});
  ExpectConfigError("sink=stderr;sink=jsonl:,keep=3", {"sink jsonl", "needs a file path", "(at offset 12)"});
}

TEST(Config, MalformedSinkArgumentsAreConfigErrorsPointingAtTheBadPart) {
  ExpectConfigError("sink=jsonl:X,max_bytes=10", {"bad option 'max_bytes=10'", "too small", "(at offset 13)"});
  ExpectConfigError("sink=jsonl:X,max_bytes=1.5", {"bad option 'max_bytes=1.5'"});
  ExpectConfigError("sink=jsonl:X,keep=2,keep=3", {"option 'keep' given twice", "(at offset 20)"});
  ExpectConfigError("sink=jsonl:X,colour=blue", {"bad option 'colour=blue'", "unknown option",
                                                 "max_bytes=SIZE, keep=N", "(at offset 13)"});
  ExpectConfigError("sink=jsonl:X,keep", {"bad option 'keep'", "not NAME=VALUE"});
  ExpectConfigError("sink=stderr:abc", {"sink stderr:abc", "bad row count 'abc'", "(at offset 12)"});
  ExpectConfigError("sink=stderr:5,top=3", {"bad option 'top=3'", "(options: none)", "(at offset 14)"});
  ExpectConfigError("sink=pstats", {"sink pstats", "needs a directory (sink=pstats:DIR)"});
  ExpectConfigError("sink=callgrind", {"sink callgrind", "needs a directory (sink=callgrind:DIR)"});
}

TEST(Config, AVeryLongPathKeepsTheReasonInTheMessage) {
  std::string path = "/tmp/" + std::string(5000, 'a') + "/x.jsonl";
  ExpectCreateFails(("sink=jsonl:" + path).c_str(), STATSPROF_ESINK,
                    {"sink jsonl:/tmp/aaaa", "...", "a/x.jsonl", "File name too long", "(at offset 0)"});
  EXPECT_LT(strlen(statsprof_errmsg(nullptr)), 500u);
}

// README: white space around keys and values is ignored. Around a sink's
// ':' and its options it was kept: "jsonl: DIR/a.jsonl" wrote into a
// directory named " ".
TEST(Config, WhiteSpaceAroundSinkArgumentsIsIgnored) {
  std::string dir = pyh::TempDir();
  std::string config = "sink = jsonl : " + dir + "/a.jsonl , keep = 3 , max_bytes = 10k ; sink=stderr : 5 ";
  ExpectValid(config.c_str());
  struct stat st;
  EXPECT_EQ(stat((dir + "/a.jsonl").c_str(), &st), 0) << dir;
  EXPECT_NE(stat((dir + "/ ").c_str(), &st), 0);
  ExpectConfigError("sink=jsonl:X, keep = x", {"bad option 'keep = x'", "(at offset 14)"});
}

// Two sinks of one kind writing one file (or directory) interleave their
// lines or replace each other's files; the tools then count every record
// twice.
TEST(Config, TwoSinksWritingOnePlaceAreRejected) {
  ExpectConfigError("sink=jsonl:/tmp/x.jsonl;sink=jsonl: /tmp/x.jsonl ,keep=3",
                    {"sink jsonl writes to '/tmp/x.jsonl' as the sink at offset 0 does", "(at offset 24)"});
  ExpectConfigError("sink=stderr;sink=pstats:/tmp/d/;sink=pstats:/tmp/d",
                    {"sink pstats writes to '/tmp/d' as the sink at offset 12 does", "(at offset 32)"});
  ExpectConfigError("sink=callgrind:/tmp/d;sink=callgrind:/tmp/d//",
                    {"sink callgrind writes to '/tmp/d'", "(at offset 22)"});
  std::string dir = pyh::TempDir();
  ExpectValid(("sink=jsonl:" + dir + "/a.jsonl;sink=jsonl:" + dir + "/b.jsonl;sink=stderr;sink=stderr").c_str());
}

// The same check compared the text only: one file spelled two ways (./,
// "..", "//", absolute and relative, through a symbolic link) was taken
// for two, and both sinks wrote it.
TEST(Config, TwoSinksWritingOnePlaceAreRejectedHoweverItIsSpelled) {
  std::string dir = pyh::TempDir();
  ASSERT_EQ(mkdir((dir + "/out").c_str(), 0700), 0);
  ASSERT_EQ(symlink((dir + "/out").c_str(), (dir + "/link").c_str()), 0);
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  ExpectConfigError("sink=jsonl:out/a.jsonl;sink=jsonl:./out/a.jsonl",
                    {"sink jsonl writes to './out/a.jsonl' as the sink at offset 0 does", "(at offset 23)"});
  ExpectConfigError(("sink=jsonl:out/a.jsonl;sink=jsonl:" + dir + "/out/a.jsonl").c_str(),
                    {"sink jsonl writes to '", "as the sink at offset 0 does", "(at offset 23)"});
  ExpectConfigError("sink=jsonl:out/a.jsonl;sink=jsonl:link/a.jsonl", {"sink jsonl writes to 'link/a.jsonl'"});
  ExpectConfigError("sink=jsonl:out//x/../a.jsonl;sink=jsonl:out/a.jsonl", {"sink jsonl writes to 'out/a.jsonl'"});
  ExpectConfigError("sink=pstats:out;sink=pstats:link/", {"sink pstats writes to 'link'"});
  ExpectConfigError("sink=callgrind:new/d;sink=callgrind:./new/./d", {"sink callgrind writes to './new/./d'"});
  ExpectValid("sink=jsonl:out/a.jsonl;sink=jsonl:link/b.jsonl;sink=pstats:out;sink=pstats:out/p");
  ASSERT_EQ(chdir(cwd), 0);
}

TEST(Config, SinkWithEmptyArgumentIsRejected) {
  ExpectConfigError("sink=jsonl:", {"'jsonl:'", "empty argument"});
}

TEST(Config, SinkNoneCannotBeCombined) {
  ExpectConfigError("sink=none;sink=stderr", {"sink=none cannot be combined", "(at offset 0)"});
  ExpectConfigError("sink=stderr;sink=none", {"sink=none cannot be combined", "(at offset 12)"});
  ExpectConfigError("clock=cpu;sink=none:x", {"sink=none takes no argument (got 'none:x')", "(at offset 10)"});
}

TEST(Config, SeventeenSinksAreTooMany) {
  std::string c16, c17;
  for (int i = 0; i < 16; i++) c16 += "sink=stderr;";
  c17 = c16 + "sink=stderr:7";
  ExpectValid(c16.c_str());
  ExpectConfigError(c17.c_str(), {"too many sinks", "stderr:7"});
}

TEST(Config, StderrSinkRowCountMustBeAPositiveNumber) {
  ExpectConfigError("sink=stderr:0", {"sink stderr:0", "bad row count '0'"});
  ExpectConfigError("sink=stderr:abc", {"bad row count 'abc'"});
  ExpectConfigError("sink=stderr:-5", {"bad row count '-5'"});
  ExpectConfigError("sink=stderr:100001", {"bad row count '100001'"});
  ExpectConfigError("sink=stderr:5x", {"bad row count '5x'"});
  ExpectConfigError("sink=stderr:0x10", {"bad row count '0x10'", "hexadecimal"});
  ExpectValid("sink=stderr:1");
  ExpectValid("sink=stderr:100000");
}

TEST(Config, WriterAndFrameKeysRejectBadValues) {
  ExpectConfigError("sink=none;writer=async", {"bad writer 'async'"});
  ExpectConfigError("sink=none;on_full=wait", {"bad on_full 'wait'"});
  ExpectConfigError("sink=none;queue=0", {"bad queue '0'"});
  ExpectConfigError("sink=none;queue=65537", {"bad queue '65537'"});
  ExpectConfigError("sink=none;trigger=cron", {"bad trigger 'cron'"});
  ExpectConfigError("sink=none;compensate=maybe", {"'maybe'", "compensate"});
  ExpectConfigError("sink=none;per_thread=2", {"'2'", "per_thread"});
  ExpectConfigError("sink=none;budget=fast", {"bad budget 'fast'"});
  ExpectConfigError("sink=none;stop_timeout=soon", {"bad stop_timeout 'soon'"});
  ExpectConfigError("sink=none;max_spikes_per_min=-1", {"bad max_spikes_per_min '-1'"});
  ExpectValid("sink=none;writer=sync;on_full=block;queue=1;trigger=tick;compensate=off;per_thread=on;"
              "budget=16.6ms;max_spikes_per_min=0;stop_timeout=250ms");
  ExpectValid("sink=none;stop_timeout=0");
}

TEST(Config, TheUnknownKeyMessageListsEveryKey) {
  ExpectConfigError("sink=none;colour=blue",
                    {"known keys: interval, clock, builtins, source, max_functions, sink, writer, on_full, queue, "
                     "trigger, compensate, budget, max_spikes_per_min, per_thread, duty, window, every, "
                     "max_overhead, stop_timeout (at offset 10)"});
}

// The event source: sys.monitoring exists from 3.12 on; the
// frame-evaluation source on every version, only with builtins=off
// (source_evalframe_test.cc has whether it runs on this patch level).
TEST(Config, SourceIsAutoMonitoringSetprofileOrEvalframe) {
  ExpectValid("source=auto;sink=none");
  ExpectValid("source=setprofile;sink=none");
  ExpectConfigError("source=hooks;sink=none", {"hooks", "auto, monitoring, setprofile or evalframe", "offset 0"});
#if PY_VERSION_HEX >= 0x030C0000
  ExpectValid("source=monitoring;sink=none");
#else
  ExpectConfigError("source=monitoring;sink=none", {"source=monitoring needs Python 3.12 or newer"});
#endif
  ExpectValid("source=evalframe;builtins=off;sink=none");
  ExpectConfigError("source=evalframe;sink=none",
                    {"source=evalframe counts Python functions only: it needs builtins=off"});
}

// A source ruled out by the interpreter or by builtins has an offset, as
// every config message does: the source= item's, or builtins=on's when
// that came later (keys together blame the one given last).
TEST(Config, ARejectedSourceNamesItsOffset) {
  auto expect_message = [](const char *config, const std::string &want) {
    statsprof *p = nullptr;
    EXPECT_EQ(statsprof_create(config, &p), STATSPROF_ECONFIG) << config;
    EXPECT_EQ(statsprof_errmsg(nullptr), want) << config;
    statsprof_destroy(p);
  };
#if PY_VERSION_HEX < 0x030C0000
  expect_message("sink=none; source=monitoring",
                 std::string("config: source=monitoring needs Python 3.12 or newer (sys.monitoring); this is ") +
                     PY_VERSION + " (at offset 11)");
#endif
  expect_message("sink=none;source=evalframe",
                 "config: source=evalframe counts Python functions only: it needs builtins=off (at offset 10)");
  expect_message("source=evalframe;sink=none;builtins=on",
                 "config: source=evalframe counts Python functions only: it needs builtins=off (at offset 27)");
}

TEST(Config, CreateWithNullOutIsEinval) {
  EXPECT_EQ(statsprof_create("sink=none", nullptr), STATSPROF_EINVAL);
  EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("out is NULL"), std::string::npos);
}

// ---- valid configs ------------------------------------------------------

TEST(Config, WhitespaceAndEmptyItemsAreIgnored) {
  ExpectValid("  interval = 250ms ;\tclock = cpu ;builtins = off;; max_functions = 10 ; sink = none ;");
  ExpectValid("sink=none;");
  ExpectValid(";;sink=none;;");
  ExpectValid("builtins=on;sink=none");
  ExpectValid("builtins=yes;sink=none");
  ExpectValid("builtins=false;sink=none");
  ExpectValid("builtins=0;sink=none");
}

TEST(Config, ParsedValuesTakeEffect) {
  // builtins=off and max_functions=2 are visible in what gets counted.
  void *ns = pyh::Exec("def a(): return len('x')\ndef b(): pass\ndef c(): pass\n"
                       "def main():\n  a(); b(); c(); c()\n");
  statsprof *p;
  ASSERT_EQ(statsprof_create(" builtins = off ; max_functions = 2 ; sink = none ; ", &p), 0)
      << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_stop(p), 0);
  pyh::Snap s = pyh::Snapshot(p, STATSPROF_CUMULATIVE);
  EXPECT_EQ(pyh::Find(s.get(), "<built-in method builtins.len>"), nullptr);  // builtins=off
  EXPECT_NE(pyh::Find(s.get(), "main"), nullptr);
  EXPECT_NE(pyh::Find(s.get(), "a"), nullptr);
  EXPECT_EQ(pyh::Find(s.get(), "b"), nullptr);  // folded: the table holds 2
  EXPECT_EQ(s->overflow_functions, 2u);         // b and c
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(Config, NullAndEmptyConfigUseTheDefaultJsonlSinkInTheCwd) {
  for (const char *config : {static_cast<const char *>(nullptr), ""}) {
    std::string dir = InTempCwd([&] { ExpectValid(config); });
    struct stat st;
    EXPECT_EQ(stat((dir + "/statsprof.jsonl").c_str(), &st), 0)
        << "default sink file missing for config " << (config ? "\"\"" : "NULL");
  }
}

TEST(Config, DefaultSinkReceivesRecords) {
  void *ns = pyh::Exec("def f(): pass\n");
  std::string dir = InTempCwd([&] {
    statsprof *p;
    ASSERT_EQ(statsprof_create("", &p), 0) << statsprof_errmsg(nullptr);
    ASSERT_EQ(statsprof_start(p), 0);
    pyh::Call(ns, "f");
    ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
    statsprof_destroy(p);
  });
  std::string text = pyh::ReadFile(dir + "/statsprof.jsonl");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_NE(text.find("(f)\":{\"ncalls\":\"1\""), std::string::npos) << text;
  pyh::Release(ns);
}

// ---- errors and version ---------------------------------------------

TEST(Errors, EveryCodeHasItsNameAndText) {
#define XX(name, code, text)                                       \
  EXPECT_STREQ(statsprof_strerror(code), text);                    \
  EXPECT_STREQ(statsprof_err_name(code), "STATSPROF_" #name);      \
  EXPECT_EQ(static_cast<int>(STATSPROF_##name), code);
  STATSPROF_ERRNO_MAP(XX)
#undef XX
  EXPECT_STREQ(statsprof_strerror(STATSPROF_ENOMEM), "out of memory");
  EXPECT_STREQ(statsprof_err_name(STATSPROF_ESINK), "STATSPROF_ESINK");
}

TEST(Errors, UnknownCodesGetAGenericTextNeverNull) {
  for (int code : {1, -9, -100, 12345, INT32_MIN}) {
    ASSERT_NE(statsprof_strerror(code), nullptr);
    ASSERT_NE(statsprof_err_name(code), nullptr);
    EXPECT_STREQ(statsprof_strerror(code), "unknown error");
    EXPECT_STREQ(statsprof_err_name(code), "STATSPROF_UNKNOWN");
  }
}

// Issue 11, item 11: the thread's create message outlived a later success.
TEST(Errors, ASuccessfulCreateClearsTheThreadsMessage) {
  ExpectConfigError("sink=none;clock=gpu", {"bad clock 'gpu'"});
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  EXPECT_STREQ(statsprof_errmsg(nullptr), "");
  statsprof_destroy(p);
  EXPECT_EQ(statsprof_register_sink("a/b", nullptr), STATSPROF_EINVAL);
  EXPECT_STRNE(statsprof_errmsg(nullptr), "");
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  EXPECT_STREQ(statsprof_errmsg(nullptr), "");
  statsprof_destroy(p);
}

TEST(Errors, ErrmsgIsNeverNull) {
  EXPECT_NE(statsprof_errmsg(nullptr), nullptr);
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=none", &p), 0);
  EXPECT_STREQ(statsprof_errmsg(p), "");
  statsprof_destroy(p);
}

TEST(Version, RuntimeMatchesHeader) {
  EXPECT_EQ(statsprof_version(), static_cast<unsigned>(STATSPROF_VERSION_HEX));
  EXPECT_EQ(STATSPROF_VERSION_HEX, (STATSPROF_VERSION_MAJOR << 16) | (STATSPROF_VERSION_MINOR << 8) |
                                       STATSPROF_VERSION_PATCH);
  EXPECT_EQ(std::string(STATSPROF_VERSION_STRING),
            std::to_string(STATSPROF_VERSION_MAJOR) + "." + std::to_string(STATSPROF_VERSION_MINOR) + "." +
                std::to_string(STATSPROF_VERSION_PATCH));
}

// ---- host sinks registered by name -----------------------------------

// What the registered open function saw, and the sink it handed out.
struct Opened {
  int opens = 0;
  std::string last_arg;
  bool last_arg_null = false;
  pyh::RecordingSink sink;
};
Opened g_opened;

int OpenRecording(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen) {
  g_opened.opens++;
  g_opened.last_arg_null = arg == nullptr;
  g_opened.last_arg = arg ? arg : "";
  *ops = pyh::RecordingSinkOps();
  *ctx = &g_opened.sink;
  return 0;
}

int OpenRefusing(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen) {
  snprintf(err, errlen, "queue '%s' is not reachable", arg ? arg : "");
  return 1;
}

// Claims success but hands out no ops: the library must not use them.
int OpenNoOps(const char *arg, const statsprof_sink_ops **ops, void **ctx, char *err, size_t errlen) {
  return 0;
}

TEST(RegisterSink, RegisteredSinkIsUsedFromConfigWithItsArgument) {
  g_opened = Opened();
  ASSERT_EQ(statsprof_register_sink("my_sink-1", OpenRecording), 0) << statsprof_errmsg(nullptr);
  void *ns = pyh::Exec("def work(): pass\ndef main():\n  for i in range(3): work()\n");
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=my_sink-1:topic=a:b c", &p), 0) << statsprof_errmsg(nullptr);
  EXPECT_EQ(g_opened.opens, 1);
  EXPECT_FALSE(g_opened.last_arg_null);
  EXPECT_EQ(g_opened.last_arg, "topic=a:b c");  // everything after the first ':'
  ASSERT_EQ(statsprof_start(p), 0);
  pyh::Call(ns, "main");
  ASSERT_EQ(statsprof_emit_now(p), 0) << statsprof_errmsg(p);
  ASSERT_EQ(statsprof_flush(p), 0);  // emit runs on the sink's writer thread
  ASSERT_EQ(g_opened.sink.records.size(), 1u);
  EXPECT_EQ(g_opened.sink.records[0].calls_by_name["work"], 3u);
  EXPECT_EQ(g_opened.sink.records[0].calls_by_name["main"], 1u);
  statsprof_destroy(p);
  EXPECT_EQ(g_opened.sink.closes, 1);
  EXPECT_EQ(g_opened.sink.records.size(), 1u);  // nothing new happened before destroy

  // Without ':' the argument is NULL.
  ASSERT_EQ(statsprof_create("sink=my_sink-1", &p), 0) << statsprof_errmsg(nullptr);
  EXPECT_TRUE(g_opened.last_arg_null);
  statsprof_destroy(p);
  pyh::Release(ns);
}

TEST(RegisterSink, RegisteredNamesAppearInTheUnknownSinkMessage) {
  ASSERT_EQ(statsprof_register_sink("listed_sink", OpenRecording), 0);
  ExpectConfigError("sink=nosuch", {"unknown sink 'nosuch'", "listed_sink", "jsonl"});
}

// The header's results: names of up to 31 characters; a full registry (32
// names, the 4 built-in ones included) is STATSPROF_ESTATE, a limit, not
// the STATSPROF_ENOMEM it was (no allocation failed), and replacing a name
// still works then. In a child: the registry is process-wide.
TEST(RegisterSink, TheRegistryHoldsThirtyTwoNamesBuiltInsIncluded) {
  std::string problems = child::Run([] {
    child::Problems pr;
    pr.Check(statsprof_register_sink(std::string(31, 'n').c_str(), OpenRecording) == 0, "a 31-character name");
    pr.Check(statsprof_register_sink(std::string(32, 'n').c_str(), OpenRecording) == STATSPROF_EINVAL,
             "a 32-character name");
    int added = 1, rc = 0;
    while (added < 40 && (rc = statsprof_register_sink(("full_" + std::to_string(added)).c_str(), OpenRecording)) == 0)
      added++;
    pr.Check(rc == STATSPROF_ESTATE, std::string("a full registry: ") + statsprof_err_name(rc));
    pr.Check(std::string(statsprof_errmsg(nullptr)) ==
                 "statsprof_register_sink: cannot add 'full_" + std::to_string(added) +
                     "': the registry is full (32 names, the built-in ones included); a registered name can still "
                     "be replaced",
             std::string("message: ") + statsprof_errmsg(nullptr));
    pr.Check(statsprof_register_sink("full_1", OpenRecording) == 0, "replacing a name in a full registry");
    pr.Check(statsprof_register_sink(std::string(31, 'n').c_str(), OpenRecording) == 0, "replacing the first name");
    return pr.text;
  });
  EXPECT_EQ(problems, "");
}

TEST(RegisterSink, BadNamesAreRejected) {
  for (const char *name : {"", "has space", "a/b", "a:b", "semi;colon", "dot.ted", "é",
                           "a_name_that_is_far_too_long_for_the_registry_table"}) {
    EXPECT_EQ(statsprof_register_sink(name, OpenRecording), STATSPROF_EINVAL) << "'" << name << "'";
    EXPECT_NE(std::string(statsprof_errmsg(nullptr)).find("statsprof_register_sink"), std::string::npos);
  }
  EXPECT_EQ(statsprof_register_sink(nullptr, OpenRecording), STATSPROF_EINVAL);
  EXPECT_EQ(statsprof_register_sink("fine_name", nullptr), STATSPROF_EINVAL);
  // A name refused only for its NULL open function stays unknown.
  ExpectConfigError("sink=fine_name", {"unknown sink 'fine_name'"});
}

TEST(RegisterSink, RegisteringAgainReplaces) {
  g_opened = Opened();
  ASSERT_EQ(statsprof_register_sink("swappable", OpenRefusing), 0);
  ExpectCreateFails("sink=swappable:q1", STATSPROF_ESINK, {"sink swappable:q1", "queue 'q1' is not reachable"});
  ASSERT_EQ(statsprof_register_sink("swappable", OpenRecording), 0);
  statsprof *p;
  ASSERT_EQ(statsprof_create("sink=swappable:q2", &p), 0) << statsprof_errmsg(nullptr);
  EXPECT_EQ(g_opened.last_arg, "q2");
  statsprof_destroy(p);
}

TEST(RegisterSink, OpenReturningNoOpsFails) {
  ASSERT_EQ(statsprof_register_sink("no_ops", OpenNoOps), 0);
  ExpectCreateFails("sink=no_ops", STATSPROF_ESINK, {"sink no_ops", "failed to open"});
}

TEST(RegisterSink, SinksOpenedBeforeAFailingOneAreClosed) {
  g_opened = Opened();
  ASSERT_EQ(statsprof_register_sink("rec_then_fail", OpenRecording), 0);
  ASSERT_EQ(statsprof_register_sink("refuser", OpenRefusing), 0);
  ExpectCreateFails("sink=rec_then_fail;sink=refuser:x", STATSPROF_ESINK, {"queue 'x' is not reachable"});
  EXPECT_EQ(g_opened.opens, 1);
  EXPECT_EQ(g_opened.sink.closes, 1);  // no leak of the sink that did open
  EXPECT_EQ(g_opened.sink.emits, 0);
}

// README's table of config keys says what lib/config.c's key table says:
// the same keys in the same order, every word a WORDS key takes, a COUNT
// key's bounds, and the kind of every other value. A key added, renamed
// or re-bounded in one place and not the other fails here.
TEST(Config, ReadmeTableOfKeysMatchesTheKeyTable) {
  const char *root = getenv("STATSPROF_SOURCE_DIR");
  std::string path = std::string(root ? root : ".") + "/README.md";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path << ": " << strerror(errno) << " (Bazel: //:README.md in data; ctest: STATSPROF_SOURCE_DIR)";
  std::vector<std::string> names;
  std::map<std::string, std::string> values;  // key -> its row's values column
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line == "| key | values | default | meaning |") {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.empty() || line[0] != '|') break;
    if (line.rfind("| ---", 0) == 0) continue;
    // | `name` | values | default | meaning |
    size_t a = line.find('`'), b = line.find('`', a + 1), c = line.find('|', b), d = line.find('|', c + 1);
    ASSERT_TRUE(a != std::string::npos && b != std::string::npos && c != std::string::npos && d != std::string::npos)
        << "README row: " << line;
    std::string name = line.substr(a + 1, b - a - 1);
    names.push_back(name);
    values[name] = line.substr(c + 1, d - c - 1);
  }
  std::vector<std::string> want;
  for (int i = 0; statsprof__config_key(i, nullptr); i++) want.push_back(statsprof__config_key(i, nullptr));
  ASSERT_EQ(names, want) << "README's table of config keys (" << path << ") against lib/config.c's CONFIG_KEYS";

  for (int i = 0; i < (int)want.size(); i++) {
    statsprof__value_spec spec;
    std::string name = statsprof__config_key(i, &spec), v = values[name];
    if (spec.words) {
      // Every word, quoted; a row may take another row's words ("(as `builtins`)").
      std::string words = v;
      size_t as = v.find("(as `");
      if (as != std::string::npos) words += values[v.substr(as + 5, v.find('`', as + 5) - as - 5)];
      for (const statsprof__word *w = spec.words; w->word; w++)
        EXPECT_NE(words.find("`" + std::string(w->word) + "`"), std::string::npos)
            << "README's row for " << name << " lacks the word " << w->word << ": " << v;
    } else if (spec.units == statsprof__count_units) {
      std::string bounds = std::to_string(spec.min) + " to " + std::to_string(spec.max);
      EXPECT_NE(v.find(bounds), std::string::npos) << "README's row for " << name << " lacks '" << bounds << "': " << v;
    } else if (spec.units == statsprof__duration_units) {
      EXPECT_NE(v.find("DURATION"), std::string::npos) << "README's row for " << name << ": " << v;
    } else if (spec.units) {
      EXPECT_NE(v.find("percentage"), std::string::npos) << "README's row for " << name << ": " << v;
    } else {
      EXPECT_NE(v.find("NAME or NAME:ARG"), std::string::npos) << "README's row for " << name << ": " << v;
    }
  }
}

}  // namespace
