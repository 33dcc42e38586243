// frames_test.cc — frame markers: frame statistics in records, spike
// records for frames over budget holding only what that frame touched.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <unistd.h>

#include <chrono>
#include <vector>

#include "collect_sink.h"
#include "lib_internal.h"
#include "pyharness.h"

namespace {

// A game whose frames 5 and 12 hitch: hitch() busy-waits 400 ms, far over
// the 250 ms budget, while a normal frame takes well under a millisecond.
// (With a 60 ms budget, a normal frame preempted that long on a loaded CI
// machine under TSan became a third spike.)
const char kGame[] = R"(
import time
def hitch():
    end = time.perf_counter() + 0.4
    x = 0
    while time.perf_counter() < end:
        for i in range(20000): x += i
def step(): return sum(range(50))
def only_in_frame_3(): pass
def frame(n):
    step(); step()
    if n == 3: only_in_frame_3()
    if n in (5, 12): hitch()
)";

struct Game {
  void *ns;
  PyObject *frame;
  Game() : ns(pyh::Exec(kGame, "game.py")) { frame = PyDict_GetItemString((PyObject *)ns, "frame"); }
  ~Game() { pyh::Release(ns); }
  void Run(statsprof *p, int frames) {
    statsprof_frame_mark(p);  // frame 1 starts
    for (int n = 1; n <= frames; n++) {
      PyObject *arg = PyLong_FromLong(n);
      Py_XDECREF(PyObject_CallOneArg(frame, arg));
      Py_DECREF(arg);
      statsprof_frame_mark(p);
    }
  }
};

TEST(Frames, ExactlyTheHitchingFramesAreSpikesWithTheHitchOnTop) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;budget=250ms;interval=1h", &sink);
  g.Run(p, 20);
  statsprof_flush(p);
  auto spikes = sink.OfKind(STATSPROF_RECORD_SPIKE);
  ASSERT_EQ(spikes.size(), 2u);
  EXPECT_EQ(spikes[0].frame, 5u);
  EXPECT_EQ(spikes[1].frame, 12u);
  for (auto &s : spikes) {
    EXPECT_EQ(s.mode, STATSPROF_DELTA);  // a spike is the frame's delta
    EXPECT_EQ(s.thread_id, 0u);
    EXPECT_EQ(s.top_by_tottime(), "hitch");
    EXPECT_GE(s.frame_time_s, 0.4);
    // Only what that frame touched, counted for that frame alone.
    EXPECT_EQ(s.calls("step"), 2u);
    EXPECT_EQ(s.calls("frame"), 1u);
    EXPECT_EQ(s.calls("hitch"), 1u);
    EXPECT_EQ(s.calls("only_in_frame_3"), 0u);
  }
  statsprof_destroy(p);
}

TEST(Frames, RecordsCarryFrameStatistics) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;interval=1h", &sink);  // no budget: no spikes
  g.Run(p, 20);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 1u);
  EXPECT_EQ(deltas[0].frames, 20u);
  EXPECT_GE(deltas[0].max_frame_s, 0.4);
  EXPECT_EQ(deltas[0].calls("step"), 40u);
  EXPECT_TRUE(sink.OfKind(STATSPROF_RECORD_SPIKE).empty());
  // The next interval starts with no frames.
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[1].frames, 0u);
  statsprof_destroy(p);
}

// Production mode: between windows no thread has the hook, yet every frame
// over budget made a spike record, empty, that used up max_spikes_per_min
// (a reviewer saw 7 of the first 10 spikes empty). Spikes now come only
// from frames inside a window.
TEST(Frames, NoSpikesBetweenProductionModeWindows) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;interval=1h;window=10ms;every=1h;budget=1ms", &sink);
  usleep(20000);
  statsprof_tick(p);  // the window start opened closes: the next opens in an hour
  ASSERT_FALSE(p->duty.in_window);
  statsprof_frame_mark(p);
  for (int i = 0; i < 5; i++) {
    usleep(3000);  // over budget
    statsprof_tick(p);
    statsprof_frame_mark(p);
  }
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  EXPECT_EQ(sink.OfKind(STATSPROF_RECORD_SPIKE).size(), 0u);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 1u);
  EXPECT_EQ(deltas[0].frames, 5u) << "frame times are kept between windows too";
  statsprof_destroy(p);
}

// Frame marks while stopped kept every frame's time until the next record,
// which a stopped profiler never makes: 20 million marks grew the process
// by 156 MB, and the stopped period's frames landed in the next record.
TEST(Frames, MarksWhileStoppedKeepNothing) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;interval=1h", &sink);
  g.Run(p, 3);
  ASSERT_EQ(statsprof_stop(p), 0);
  for (int i = 0; i < 100000; i++) statsprof_frame_mark(p);
  EXPECT_EQ(p->frames.ntimes, 0u);
  ASSERT_EQ(statsprof_start(p), 0);
  for (int i = 0; i < 2; i++) statsprof_frame_mark(p);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[0].frames, 3u);
  EXPECT_EQ(deltas[1].frames, 2u);
  statsprof_destroy(p);
}

// A host that records only at stop (a huge interval) and marks frames for
// days: the times kept for the percentiles grew 8 bytes a frame. Past
// STATSPROF__FRAME_TIMES they are a uniform sample; count, mean and max
// stay exact. Frame i lasts (i % 100) + 1 us: mean about 50.5 us, p50 50 us,
// p99 99 us; the sample's percentiles are within a few us of those (a
// fixed random sequence: the same every run).
TEST(Frames, FrameTimesPastTheLimitAreASampleWithExactCountMeanAndMax) {
  statsprof__frames f;
  statsprof__frames_init(&f, 0, 10);
  int64_t now = 0;
  statsprof__frames_begin(&f, now);
  const int n = 4 * STATSPROF__FRAME_TIMES;
  uint64_t total_ns = 0;
  for (int i = 0; i < n; i++) {
    now += ((i % 100) + 1) * 1000;
    total_ns += ((i % 100) + 1) * 1000;
    uint64_t ns;
    ASSERT_EQ(statsprof__frames_end(&f, now, 1, 1, &ns), 0);
    statsprof__frames_begin(&f, now);
  }
  EXPECT_EQ(f.ntimes, (size_t)STATSPROF__FRAME_TIMES);
  EXPECT_LE(f.captimes, (size_t)STATSPROF__FRAME_TIMES);
  statsprof_frame_stats st;
  statsprof__frame_stats_take(&f, &st);
  EXPECT_EQ(st.frames, (uint64_t)n);
  EXPECT_NEAR(st.mean_s, (double)total_ns / n * 1e-9, 1e-15);
  EXPECT_EQ(st.max_s, 100e-6);
  EXPECT_NEAR(st.p50_s, 50e-6, 3e-6);
  EXPECT_NEAR(st.p99_s, 99e-6, 2e-6);
  statsprof__frames_free(&f);
}

TEST(Frames, SpikesAreRateLimited) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;budget=250ms;max_spikes_per_min=1;interval=1h", &sink);
  g.Run(p, 20);
  statsprof_flush(p);
  auto spikes = sink.OfKind(STATSPROF_RECORD_SPIKE);
  ASSERT_EQ(spikes.size(), 1u);
  EXPECT_EQ(spikes[0].frame, 5u);
  EXPECT_EQ(spikes[0].spikes_suppressed, 0u);
  // Frame 12's spike was held back: the next record says so.
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_flush(p);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 1u);
  EXPECT_EQ(deltas[0].spikes_suppressed, 1u);
  statsprof_destroy(p);
}

// max_spikes_per_min holds for every 60 s, the first minute included: a
// token bucket that started full and refilled continuously let 79 spikes
// out in 20 s with a limit of 60. Frames over budget every 10 s of an
// injected monotonic clock, for 5 minutes, limit 3: spikes at 0, 10, 20 s,
// then none until 60 s, when the first leaves the window, and so on.
TEST(Frames, NoMinuteHoldsMoreThanMaxSpikesPerMin) {
  statsprof__frames f;
  statsprof__frames_init(&f, 1, 3);
  const int64_t s = 1000000000;
  statsprof__frames_begin(&f, 0);
  std::vector<int64_t> spikes;
  uint64_t suppressed = 0;
  for (int64_t now = 10 * s; now <= 300 * s; now += 10 * s) {
    uint64_t ns;
    int rc = statsprof__frames_end(&f, now, 1, 1, &ns);
    ASSERT_GE(rc, 0);
    EXPECT_EQ(ns, (uint64_t)(10 * s));
    if (rc) spikes.push_back(now);
    else suppressed++;
    statsprof__frames_begin(&f, now);
  }
  for (size_t i = 0; i + 3 < spikes.size(); i++)
    EXPECT_GE(spikes[i + 3] - spikes[i], 60 * s) << "4 spikes within a minute, from " << spikes[i] / s << " s";
  std::vector<int64_t> want;
  for (int64_t m = 0; m < 5; m++)
    for (int64_t k = 1; k <= 3; k++) want.push_back((60 * m + 10 * k) * s);
  EXPECT_EQ(spikes, want);
  EXPECT_EQ(f.spikes_suppressed, suppressed);
  EXPECT_EQ(suppressed, 30u - want.size());
  statsprof__frames_free(&f);
}

// The frames before a reset are not in the next record's statistics,
// whose interval starts at the reset (they were).
TEST(Frames, ResetForgetsTheFramesBeforeIt) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;writer=sync;interval=1h", &sink);
  g.Run(p, 4);
  ASSERT_EQ(statsprof_reset(p), 0);
  ASSERT_EQ(statsprof_emit_now(p), 0);
  statsprof_frame_mark(p);  // the frame under way at the reset ends
  ASSERT_EQ(statsprof_emit_now(p), 0);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[0].frames, 0u);
  EXPECT_EQ(deltas[1].frames, 1u);
  statsprof_destroy(p);
}

// A spike has the seq of the delta that covers its frame, as README says
// (it had the previous delta's: 0 for the first spike, and the pstats and
// callgrind files of a spike named the delta before its own).
TEST(Frames, ASpikeHasTheSeqOfTheDeltaThatCoversIt) {
  Game g;
  CollectSink sink;
  statsprof *p = StartCollecting("sink=none;writer=sync;budget=250ms;interval=1h", &sink);
  g.Run(p, 6);  // frame 5 hitches
  ASSERT_EQ(statsprof_emit_now(p), 0);
  g.Run(p, 6);  // frame 5 of the second run (12 in all) too
  ASSERT_EQ(statsprof_emit_now(p), 0);
  auto spikes = sink.OfKind(STATSPROF_RECORD_SPIKE);
  auto deltas = sink.OfKind(STATSPROF_RECORD_DELTA);
  ASSERT_EQ(spikes.size(), 2u);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[0].seq, 1u);
  EXPECT_EQ(spikes[0].seq, deltas[0].seq);
  EXPECT_EQ(spikes[1].seq, deltas[1].seq);
  statsprof_destroy(p);
}

// A writer=sync sink runs on the marking thread, inside frame_mark's spike
// record, so a mark made from there (a sink written in Python that marks
// frames) comes inside that call. It ends a frame of its own, which began
// at the outer mark; the frame after it began there too, so the time
// between the two marks was counted twice (and made that frame a spike).
// Neither gets a spike record: the touches of the one are cleared by the
// outer mark, the other's made before that are lost.
struct MarkFromSpike {
  statsprof *p = nullptr;
  int nested_rc = -100;
  uint64_t frames = 0, suppressed = 0;
  double mean_s = 0;
  std::vector<uint64_t> spikes;
  static int Emit(void *ctx, const statsprof_stats_profile *r) {
    auto *s = static_cast<MarkFromSpike *>(ctx);
    if (r->kind == STATSPROF_RECORD_SPIKE) {
      s->spikes.push_back(r->frame);
      if (s->spikes.size() == 1) {
        usleep(300000);
        s->nested_rc = statsprof_frame_mark(s->p);  // ends frame 2
      }
    } else if (r->kind == STATSPROF_RECORD_DELTA) {
      s->frames += r->frame_stats.frames;
      s->mean_s = r->frame_stats.mean_s;
      s->suppressed = r->spikes_suppressed;
    }
    return 0;
  }
};
const statsprof_sink_ops kMarkFromSpikeOps = {STATSPROF_SINK_VERSION, "marker", MarkFromSpike::Emit, nullptr,
                                               nullptr, nullptr};

TEST(Frames, AMarkFromASpikesSyncSinkEndsAFrameOfItsOwn) {
  MarkFromSpike sink;
  ASSERT_EQ(statsprof_create("sink=none;writer=sync;budget=250ms;interval=1h", &sink.p), 0);
  ASSERT_EQ(statsprof_add_sink(sink.p, &kMarkFromSpikeOps, &sink), 0);
  ASSERT_EQ(statsprof_start(sink.p), 0);
  auto t0 = std::chrono::steady_clock::now();  // CLOCK_MONOTONIC, as frame times
  statsprof_frame_mark(sink.p);                // frame 1 begins
  usleep(300000);
  EXPECT_EQ(statsprof_frame_mark(sink.p), 1);  // frame 1 is a spike; its sink ends frame 2
  EXPECT_EQ(sink.nested_rc, 0);
  usleep(300000);
  EXPECT_EQ(statsprof_frame_mark(sink.p), 0);  // ends frame 3, over budget too
  double between_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(statsprof_emit_now(sink.p), 0);
  EXPECT_EQ(sink.frames, 3u);
  // Each frame slept 300 ms, and all three fit between the first and the
  // last mark: none counted twice (1e-6: the mean's rounding).
  EXPECT_GE(sink.mean_s * 3, 0.9);
  EXPECT_LE(sink.mean_s * 3, between_s + 1e-6);
  EXPECT_EQ(sink.spikes, std::vector<uint64_t>{1});
  EXPECT_EQ(sink.suppressed, 2u);  // frames 2 and 3
  statsprof_destroy(sink.p);
}

TEST(Frames, SpikeRecordsAreJsonWithFrameFields) {
  Game g;
  std::string dir = pyh::TempDir();
  std::string config = "budget=250ms;interval=1h;sink=jsonl:" + dir + "/f.jsonl";
  statsprof *p = nullptr;
  ASSERT_EQ(statsprof_create(config.c_str(), &p), 0) << statsprof_errmsg(nullptr);
  ASSERT_EQ(statsprof_start(p), 0);
  g.Run(p, 6);
  statsprof_destroy(p);
  void *ns = pyh::Exec("import json\nrecs = [json.loads(l) for l in open(" + std::string("'") + dir +
                       "/f.jsonl')]\nspikes = [r for r in recs if r['kind'] == 'spike']\n"
                       "delta = [r for r in recs if r['kind'] == 'delta']\n"
                       "ok = (len(spikes) == 1 and spikes[0]['frame'] == 5 and spikes[0]['frame_time_s'] >= 0.4"
                       " and delta[-1]['frame_stats']['frames'] == 6"
                       " and delta[-1]['frame_stats']['max'] >= 0.4)\n");
  PyObject *ok = PyDict_GetItemString((PyObject *)ns, "ok");
  EXPECT_EQ(ok, Py_True);
  pyh::Release(ns);
}

}  // namespace
