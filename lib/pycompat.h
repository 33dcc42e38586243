/* pycompat.h — the CPython C-API differences between 3.11 and 3.15, in one
 * place, so the rest of the library is written against the newest public
 * names. Included from internal.h; not installed.
 *
 * The pattern is pythoncapi-compat's: where a newer interpreter has a public
 * (or PyUnstable_) name for something 3.11 spells privately, the code uses the
 * new name and this file maps it back on old versions. What has no public
 * equivalent gets a statsprof__ name here and is listed, with the reason, in
 * README.md ("Supported Python versions"). */
#ifndef STATSPROF_PYCOMPAT_H
#define STATSPROF_PYCOMPAT_H

#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000
#error "statsprof needs CPython 3.11 or newer"
#endif

/* A free-threaded CPython (PEP 703: 3.13t and later) runs Python threads in
 * parallel, and calls sys.monitoring callbacks from them at once. A
 * profiler's tables are shared by its threads and updated without atomics,
 * because under the GIL one event runs at a time: built there, statsprof
 * would corrupt its counts and then its memory. */
#ifdef Py_GIL_DISABLED
#error "statsprof needs a CPython built with the GIL; this one is free-threaded (Py_GIL_DISABLED)"
#endif

/* ---- co_extra: PyUnstable_ names from 3.12 ------------------------------
 * 3.12 renamed the _Py functions to PyUnstable_ and kept the old names as
 * static inline wrappers that warn (deprecated) from 3.12. Same functions. */
#if PY_VERSION_HEX < 0x030C0000
#define PyUnstable_Eval_RequestCodeExtraIndex _PyEval_RequestCodeExtraIndex
#define PyUnstable_Code_GetExtra _PyCode_GetExtra
#define PyUnstable_Code_SetExtra _PyCode_SetExtra
#endif

/* ---- the pending exception, saved around our own C-API calls -----------
 * 3.12 replaced PyErr_Fetch/PyErr_Restore (soft-deprecated there) with
 * PyErr_GetRaisedException/PyErr_SetRaisedException, which move the
 * exception as one object. 3.11 keeps the triple: emulating the new pair
 * there (pythoncapi-compat's way) would normalize the exception, which can
 * run Python code inside the profile hook. */
typedef struct statsprof__pending {
#if PY_VERSION_HEX >= 0x030C0000
  PyObject *exc;
#else
  PyObject *type, *value, *tb;
#endif
} statsprof__pending;

/* Takes the pending exception, if any, leaving none set. */
static inline statsprof__pending statsprof__pending_take(void) {
  statsprof__pending e;
#if PY_VERSION_HEX >= 0x030C0000
  e.exc = PyErr_GetRaisedException();
#else
  PyErr_Fetch(&e.type, &e.value, &e.tb);
#endif
  return e;
}

static inline int statsprof__pending_is_set(statsprof__pending e) {
#if PY_VERSION_HEX >= 0x030C0000
  return e.exc != NULL;
#else
  return e.type != NULL;
#endif
}

/* Sets it pending again (steals the references), replacing any other. */
static inline void statsprof__pending_restore(statsprof__pending e) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(e.exc);
#else
  PyErr_Restore(e.type, e.value, e.tb);
#endif
}

/* ---- Py_IsFinalizing: public from 3.13 ----------------------------------
 * 3.13 made _Py_IsFinalizing public as Py_IsFinalizing and removed the old
 * name, so code written with the old one no longer links. */
#if PY_VERSION_HEX < 0x030D0000
static inline int Py_IsFinalizing(void) { return _Py_IsFinalizing(); }
/* Likewise _PyThreadState_UncheckedGet, public from 3.13 under this name. */
static inline PyThreadState *PyThreadState_GetUnchecked(void) { return _PyThreadState_UncheckedGet(); }
#endif

/* ---- the profile function of another thread -----------------------------
 * Private, no public equivalent: PyEval_SetProfile sets only the calling
 * thread's function, and PyEval_SetProfileAllThreads (3.12+) gives every
 * thread the same argument, where each of ours gets its own per-thread
 * object. 3.13 moved the declaration to the internal headers, but libpython
 * still exports the function (sys.setprofile and threading use it), with the
 * same signature on 3.11 to 3.15: declare it there. Returns 0, or -1 with an
 * exception set when an audit hook refuses. */
#if PY_VERSION_HEX >= 0x030D0000
PyAPI_FUNC(int) _PyEval_SetProfile(PyThreadState *tstate, Py_tracefunc func, PyObject *arg);
#endif
static inline int statsprof__set_profile(PyThreadState *ts, Py_tracefunc func, PyObject *arg) {
  return _PyEval_SetProfile(ts, func, arg);
}

/* ---- attribute lookup on a type's MRO, without descriptors --------------
 * What _PyType_Lookup does (cProfile uses it to label a C method as
 * "<method 'append' of 'list' objects>"), from documented parts: tp_mro
 * and each base's dict (PyType_GetDict from 3.12, where static builtin
 * types keep their dict outside tp_dict). Returns a new reference or NULL,
 * never with an exception set. Slow path only: no method cache. */
static inline PyObject *statsprof__type_lookup(PyTypeObject *type, PyObject *name) {
  PyObject *mro = type->tp_mro;
  if (!mro || !PyTuple_Check(mro)) return NULL;
  PyObject *found = NULL;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && !found; i++) {
    PyObject *base = PyTuple_GET_ITEM(mro, i);
    if (!PyType_Check(base)) continue;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *dict = PyType_GetDict((PyTypeObject *)base);
#else
    PyObject *dict = Py_XNewRef(((PyTypeObject *)base)->tp_dict);
#endif
    if (dict && PyDict_Check(dict)) found = Py_XNewRef(PyDict_GetItemWithError(dict, name));
    Py_XDECREF(dict);
  }
  if (!found) PyErr_Clear();
  return found;
}

#endif
