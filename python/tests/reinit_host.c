/* reinit_host.c — a host that embeds CPython, imports the statsprof
 * package, has its messages delivered, and finalizes and initializes the
 * interpreter again, ROUNDS times (python/tests/test_reinit.py runs it).
 *
 *   reinit_host ROUNDS    (PYTHONPATH: the directory holding statsprof/)
 *
 * Each round: Py_InitializeEx, then ROUND_SCRIPT (the round's number and
 * what to leave behind set first): two profiles whose sink fails
 * (jsonl:/dev/full), one logging to logging.getLogger("statsprof"), one to
 * log=list.append, their timers emitting; the main thread waits, running
 * no call on them, until the package's delivery thread (not the main
 * thread) handed each list a sink failure, then prints "round N
 * delivered". What the round leaves as Py_FinalizeEx runs:
 *   closed  both profiles closed;
 *   left    both enabled, with records queued for the failing sinks, in
 *           __main__: Py_FinalizeEx deletes them;
 *   leaked  the same, and this program holds a reference to each, so they
 *           outlive the interpreter, their sink threads still failing (and
 *           logging, now to fd 2) as it finalizes and the next one runs;
 *   unhooked  as left, the package's atexit callback taken out of atexit
 *           (atexit.unregister): the delivery thread is not stopped before
 *           Py_FinalizeEx; its Py_AtExit function marks the queues dead.
 * Then Py_FinalizeEx, which must return 0, and "round N finalized". Exit
 * status 0 after the last round ("done"); 3 for a Python error in a round
 * (its traceback on stderr), 4 when Py_FinalizeEx fails. */
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const MODES[] = {"closed", "left", "leaked", "unhooked"};

static const char ROUND_SCRIPT[] =
    "import logging, threading, time\n"
    "import statsprof\n"
    "main = threading.main_thread()\n"
    "def on_thread():  # delivered by the package's thread, not by a call of ours\n"
    "    return threading.current_thread().ident != main.ident\n"
    "by_logging, by_callable = [], []\n"
    "class Collect(logging.Handler):\n"
    "    def emit(self, record):\n"
    "        by_logging.append((record.name, record.levelno, record.getMessage(), on_thread()))\n"
    "logger = logging.getLogger('statsprof')\n"
    "logger.addHandler(Collect())\n"
    "logger.propagate = False  # no lastResort, no root handler: the list only\n"
    "def to_list(message):\n"
    "    by_callable.append(('log=', logging.WARNING, message, on_thread()))\n"
    "CONFIG = 'trigger=timer;interval=10ms;queue=4096;sink=jsonl:/dev/full'\n"
    "p = statsprof.Profile(config=CONFIG)\n"
    "q = statsprof.Profile(config=CONFIG, log=to_list)\n"
    "p.enable()\n"
    "q.enable()\n"
    "def work(n):\n"
    "    return sum(i * i for i in range(n))\n"
    "work(10000)\n"
    "def wait_for(got, name):\n"
    "    deadline = time.monotonic() + 120  # a hang guard, not a time limit of the test\n"
    "    while not any(t for *_, t in got):\n"
    "        if time.monotonic() > deadline:\n"
    "            raise AssertionError('round %d: nothing from the delivery thread to %s in 120 s: %r'\n"
    "                                 % (ROUND, name, got[:5]))\n"
    "        time.sleep(0.01)  # no call on the profiles: only the delivery thread delivers\n"
    "    name_, level, text, _ = next(r for r in got if r[3])\n"
    "    want = \"sink jsonl failed to write record \"\n"
    "    if not (level == logging.WARNING and text.startswith(want)\n"
    "            and \"cannot write to '/dev/full': No space left on device\" in text):\n"
    "        raise AssertionError('round %d: %s got %r' % (ROUND, name, (name_, level, text)))\n"
    "wait_for(by_logging, 'logging')\n"
    "wait_for(by_callable, 'log=')\n"
    "print('round %d delivered' % ROUND, flush=True)\n"
    "if MODE == 'unhooked':  # Py_FinalizeEx without the package's atexit callback\n"
    "    import atexit\n"
    "    atexit.unregister(statsprof._statsprof._finalizing)  # == the one registered\n"
    "if MODE == 'closed':\n"
    "    p.close()\n"
    "    q.close()\n"
    "else:  # records for the sink threads to fail on as the interpreter finalizes\n"
    "    for _ in range(2000):\n"
    "        p.emit_now()\n"
    "        q.emit_now()\n";

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  for (int round = 0; round < rounds; round++) {
    const char *mode = MODES[round % 4];
    Py_InitializeEx(0);
    char head[128];
    snprintf(head, sizeof head, "ROUND = %d\nMODE = '%s'\n", round, mode);
    if (PyRun_SimpleString(head) != 0 || PyRun_SimpleString(ROUND_SCRIPT) != 0) {
      fprintf(stderr, "reinit_host: round %d (%s) failed\n", round, mode);
      return 3;
    }
    if (strcmp(mode, "leaked") == 0) { /* never released */
      PyObject *globals = PyModule_GetDict(PyImport_AddModule("__main__")); /* borrowed */
      PyObject *p = PyDict_GetItemString(globals, "p"), *q = PyDict_GetItemString(globals, "q");
      if (!p || !q) {
        fprintf(stderr, "reinit_host: round %d: no profiles to keep\n", round);
        return 3;
      }
      Py_INCREF(p);
      Py_INCREF(q);
    }
    if (Py_FinalizeEx() != 0) {
      fprintf(stderr, "reinit_host: round %d (%s): Py_FinalizeEx failed\n", round, mode);
      return 4;
    }
    printf("round %d finalized (%s)\n", round, mode);
    fflush(stdout);
  }
  printf("done\n");
  fflush(stdout);
  return 0;
}
