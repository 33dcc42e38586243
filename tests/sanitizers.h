// sanitizers.h — which sanitizer this test binary was built with
// (dev/sanitize: GCC through Bazel, which defines __SANITIZE_ADDRESS__ /
// __SANITIZE_THREAD__; clang answers __has_feature instead). Tests use it
// to bound slower runs differently and to accept what a sanitizer itself
// does to a process, never to skip a check.
#pragma once

namespace sanitizers {

#if defined(__has_feature)
#define STATSPROF_TEST_HAS_FEATURE(x) __has_feature(x)
#else
#define STATSPROF_TEST_HAS_FEATURE(x) 0
#endif

#if defined(__SANITIZE_ADDRESS__) || STATSPROF_TEST_HAS_FEATURE(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

#if defined(__SANITIZE_THREAD__) || STATSPROF_TEST_HAS_FEATURE(thread_sanitizer)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif

#undef STATSPROF_TEST_HAS_FEATURE

// Either: code runs 2-5x slower and reports a bad access where it happens.
constexpr bool kAny = kAsan || kTsan;

}  // namespace sanitizers
