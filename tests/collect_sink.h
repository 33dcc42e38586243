// collect_sink.h — a host sink for tests: keeps what it receives, can be
// made slow or failing.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "statsprof.h"

struct CollectedRecord {
  statsprof_snapshot_mode mode;
  statsprof_record_kind kind;
  uint64_t seq, dropped, sink_errors, spikes_suppressed, frame, thread_id, frames;
  double frame_time_s, max_frame_s;
  std::string thread_name;
  double observed_s, duty, interval_s;
  // function name -> (ncalls, tottime, cumtime)
  std::vector<std::tuple<std::string, uint64_t, double, double>> funcs;
  std::string top_by_tottime() const {
    std::string best;
    double t = -1;
    for (auto &[n, c, tt, ct] : funcs)
      if (tt > t) t = tt, best = n;
    return best;
  }
  uint64_t calls(const std::string &name) const {
    for (auto &[n, c, tt, ct] : funcs)
      if (n == name) return c;
    return 0;
  }
};

struct CollectSink {
  std::mutex mu;
  std::vector<CollectedRecord> records;
  int delay_ms = 0;
  int fail = 0;  // return this from emit when nonzero
  int flushes = 0, closes = 0;

  static int Emit(void *ctx, const statsprof_stats_profile *r) {
    auto *s = static_cast<CollectSink *>(ctx);
    if (s->delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(s->delay_ms));
    CollectedRecord c{r->mode, r->kind, r->seq, r->dropped, r->sink_errors, r->spikes_suppressed, r->frame, r->thread_id,
                      r->frame_stats.frames, r->frame_time_s, r->frame_stats.max_s,
                      r->thread_name ? r->thread_name : "", r->observed_s, r->duty,
                      (double)(r->end_ns - r->start_ns) * 1e-9, {}};
    for (size_t i = 0; i < r->nfunc_profiles; i++) {
      const auto &f = r->func_profiles[i];
      c.funcs.emplace_back(f.function_name, f.ncalls, f.tottime, f.cumtime);
    }
    std::lock_guard<std::mutex> l(s->mu);
    s->records.push_back(std::move(c));
    return s->fail;
  }
  static int Flush(void *ctx) {
    auto *s = static_cast<CollectSink *>(ctx);
    std::lock_guard<std::mutex> l(s->mu);
    s->flushes++;
    return 0;
  }
  static void Close(void *ctx) {
    auto *s = static_cast<CollectSink *>(ctx);
    std::lock_guard<std::mutex> l(s->mu);
    s->closes++;
  }
  static const statsprof_sink_ops *Ops() {
    static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "collect", Emit, Flush, Close};
    return &ops;
  }
  std::vector<CollectedRecord> Take() {
    std::lock_guard<std::mutex> l(mu);
    return records;
  }
  std::vector<CollectedRecord> OfKind(statsprof_record_kind k) {
    std::vector<CollectedRecord> out;
    for (auto &r : Take())
      if (r.kind == k) out.push_back(r);
    return out;
  }
};

// A profiler made from config with `sink` added, started.
inline statsprof *StartCollecting(const char *config, CollectSink *sink) {
  statsprof *p = nullptr;
  EXPECT_EQ(statsprof_create(config, &p), 0) << statsprof_errmsg(nullptr);
  EXPECT_EQ(statsprof_add_sink(p, CollectSink::Ops(), sink), 0);
  EXPECT_EQ(statsprof_start(p), 0);
  return p;
}

// A host sink whose emit waits until `open` (or `delay_us` per record):
// a stuck or slow sink. It records the seqs it got and whether close ran
// off the thread that made it (on the sink's own thread).
struct GateSink {
  std::atomic<bool> open{false};
  int delay_us = -1;  // -1: wait for open; else sleep this long
  std::atomic<int> emits{0}, closes{0};
  std::atomic<bool> closed_off_main{false};
  pthread_t main_thread = pthread_self();
  std::mutex mu;
  std::vector<uint64_t> seqs;

  static int Emit(void *ctx, const statsprof_stats_profile *rec) {
    auto *s = static_cast<GateSink *>(ctx);
    s->emits++;
    if (s->delay_us >= 0) usleep((useconds_t)s->delay_us);
    else
      while (!s->open) usleep(1000);
    std::lock_guard<std::mutex> g(s->mu);
    s->seqs.push_back(rec->seq);
    return 0;
  }
  static void Close(void *ctx) {
    auto *s = static_cast<GateSink *>(ctx);
    s->closed_off_main = !pthread_equal(pthread_self(), s->main_thread);
    s->closes++;
  }
  static const statsprof_sink_ops *Ops() {
    static const statsprof_sink_ops ops = {STATSPROF_SINK_VERSION, "stuck", Emit, nullptr, Close, nullptr};
    return &ops;
  }
};
