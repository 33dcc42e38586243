/* clock.c — the hook's clock and the wall/CPU clocks.
 *
 * The hook reads the TSC when it is invariant (constant rate, not stopped in
 * sleep states): a few ns against ~20 ns for clock_gettime. Its rate is
 * calibrated once against CLOCK_MONOTONIC. Elsewhere ticks are nanoseconds.
 */
#include <pthread.h>
#include <time.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int statsprof__clock_use_tsc = 0;
double statsprof__clock_sec_per_tick = 1e-9;

int64_t statsprof__wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t statsprof__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t statsprof__thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

uint64_t statsprof__ns_to_ticks(int64_t ns) {
  double ticks = (double)ns * 1e-9 / statsprof__clock_sec_per_tick;
  return ticks >= 0x1p63 ? UINT64_MAX / 2 : ticks > 0 ? (uint64_t)ticks : 0;
}

static int tsc_is_invariant(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007) return 0;
  __get_cpuid(0x80000007, &a, &b, &c, &d);
  return (d >> 8) & 1;
#else
  return 0;
#endif
}

static void calibrate(void) {
  if (getenv("STATSPROF_NO_TSC") || !tsc_is_invariant()) return;
  statsprof__clock_use_tsc = 1;
  /* 20 ms is enough for 1e-5 relative error with ns-resolution clocks. */
  int64_t m0 = statsprof__mono_ns();
  uint64_t t0 = statsprof__ticks();
  int64_t m1;
  do m1 = statsprof__mono_ns(); while (m1 - m0 < 20000000);
  uint64_t t1 = statsprof__ticks();
  if (t1 <= t0) {
    statsprof__clock_use_tsc = 0;
    return;
  }
  statsprof__clock_sec_per_tick = (double)(m1 - m0) * 1e-9 / (double)(t1 - t0);
}

void statsprof__clock_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, calibrate);
}
