/* alloc.h — every allocation of the library, and its growable arrays.
 *
 * All memory goes through the process-wide allocator the host may set with
 * statsprof_set_allocator (default: realloc/free); nothing in lib/ calls
 * malloc, calloc, realloc, free or strdup itself (alloc_test checks), so a
 * host's allocator sees everything, and a test can fail any allocation.
 * CPython's objects (the per-thread states are Python objects) stay
 * CPython's; their stacks are ours. */
#ifndef STATSPROF_ALLOC_H
#define STATSPROF_ALLOC_H

#include <stddef.h>

/* NULL on failure; n == 0 is taken as 1, so NULL always means failure. */
void *statsprof__malloc(size_t n);
/* Zeroed; NULL on failure or when n * size overflows. */
void *statsprof__calloc(size_t n, size_t size);
/* As realloc, but NULL p only: a failure leaves p as it was. */
void *statsprof__realloc(void *p, size_t n);
void statsprof__free(void *p); /* accepts NULL */
char *statsprof__strdup(const char *s);
char *statsprof__strndup(const char *s, size_t n); /* at most n bytes, NUL-terminated */

/*
 * Growable arrays: one helper for every array that grows (the function
 * table, baselines, frame marks, stacks, text buffers). `arr` is a T*
 * lvalue, `cap` its capacity in elements (an unsigned lvalue of any width:
 * uint32_t or size_t). Makes room for at least `need` elements, doubling
 * from `min` (or from cap), and returns 0; on allocation failure, or when
 * the capacity would not fit cap's type, returns -1 with arr and cap as
 * they were. New elements are not initialized. Cheap when there is room:
 * one compare, inline. A macro: cap and need are evaluated twice.
 */
#define STATSPROF__ARRAY_RESERVE(arr, cap, need, min)                                                          \
  ((size_t)(need) <= (size_t)(cap)                                                                        \
       ? 0                                                                                                \
       : statsprof__array_grow(&(arr), &(cap), sizeof(cap), sizeof *(arr), (size_t)(need), (size_t)(min)))
int statsprof__array_grow(void *arrp, void *capp, size_t capsize, size_t elem, size_t need, size_t min);

/* Live blocks allocated through the current allocator (tests, and
 * statsprof_set_allocator's refusal while any exists). */
long statsprof__alloc_live(void);

#endif
