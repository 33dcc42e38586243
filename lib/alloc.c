/* alloc.c — the one place that calls the host's allocator (or realloc and
 * free); see alloc.h and statsprof_set_allocator in statsprof.h.
 *
 * The allocator is process-wide because what it allocates is: records and
 * their label strings outlive the profiler that made them and are freed on
 * whichever thread drops the last reference (a sink's writer thread, a host
 * thread), and thread names belong to the OS thread, not to a profiler. It
 * may change only while nothing it allocated is alive (g_live), so no block
 * is ever freed by an allocator that did not make it. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "statsprof.h"

/* Read on every allocation from any thread; set only while g_live is 0 and
 * (the header's contract) no other statsprof call runs. */
static _Atomic(statsprof_alloc_fn) g_fn;
static _Atomic(void *) g_ud;
static atomic_long g_live;

static void *call(void *ptr, size_t size) {
  statsprof_alloc_fn fn = atomic_load_explicit(&g_fn, memory_order_acquire);
  if (fn) return fn(atomic_load_explicit(&g_ud, memory_order_relaxed), ptr, size);
  if (size) return realloc(ptr, size);
  free(ptr);
  return NULL;
}

int statsprof_set_allocator(statsprof_alloc_fn fn, void *ud) {
  if (atomic_load(&g_live) != 0) return STATSPROF_ESTATE;
  atomic_store_explicit(&g_ud, ud, memory_order_relaxed);
  atomic_store_explicit(&g_fn, fn, memory_order_release);
  return 0;
}

void statsprof_free(void *ptr) { statsprof__free(ptr); }

long statsprof__alloc_live(void) { return atomic_load(&g_live); }

void *statsprof__malloc(size_t n) {
  void *p = call(NULL, n ? n : 1);
  if (p) atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed);
  return p;
}

void *statsprof__calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  void *p = statsprof__malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *statsprof__realloc(void *p, size_t n) {
  if (!p) return statsprof__malloc(n);
  return call(p, n ? n : 1);
}

void statsprof__free(void *p) {
  if (!p) return;
  call(p, 0);
  atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
}

char *statsprof__strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = statsprof__malloc(len + 1);
  if (!d) return NULL;
  memcpy(d, s, len);
  d[len] = 0;
  return d;
}

char *statsprof__strdup(const char *s) { return statsprof__strndup(s, SIZE_MAX); }

int statsprof__array_grow(void *arrp, void *capp, size_t capsize, size_t elem, size_t need, size_t min) {
  size_t cap;
  if (capsize == sizeof(uint32_t)) {
    uint32_t c;
    memcpy(&c, capp, sizeof c);
    cap = c;
  } else {
    memcpy(&cap, capp, sizeof cap);
  }
  size_t max = capsize == sizeof(uint32_t) ? UINT32_MAX : SIZE_MAX;
  if (need <= cap) return 0;
  if (need > max || need > SIZE_MAX / elem) return -1;
  size_t ncap = cap ? cap : (min ? min : 1);
  while (ncap < need) ncap = ncap > max / 2 ? max : ncap * 2;
  if (ncap > SIZE_MAX / elem) ncap = need;
  void *arr;
  memcpy(&arr, arrp, sizeof arr);
  void *n = statsprof__realloc(arr, ncap * elem);
  if (!n) return -1;
  memcpy(arrp, &n, sizeof n);
  if (capsize == sizeof(uint32_t)) {
    uint32_t c = (uint32_t)ncap;
    memcpy(capp, &c, sizeof c);
  } else {
    memcpy(capp, &ncap, sizeof ncap);
  }
  return 0;
}
