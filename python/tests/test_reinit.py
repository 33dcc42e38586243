"""statsprof's log delivery in a host that finalizes the interpreter and
initializes it again (python/tests/reinit_host.c): in every interpreter the
package's delivery thread hands the sink failures to logging and to
log=callable; profiles closed, left to Py_FinalizeEx, or kept alive by the
host across it (their messages after the finalization go to stderr) crash
nothing and hang nothing, and every Py_FinalizeEx returns 0.

    reinit_test HOST   (BUILD passes the host's runfiles path)"""

import os
import subprocess
import sys
import unittest

import statsprof

ROUNDS = 8  # each mode twice (reinit_host.c)
MODES = ("closed", "left", "leaked", "unhooked")


class ReinitTest(unittest.TestCase):

    def test_messages_are_delivered_in_every_interpreter_and_after_finalization_go_to_stderr(self):
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(statsprof.__file__)))
        env = dict(os.environ, PYTHONPATH=pkg_root)
        env.pop("PYTHONHOME", None)
        r = subprocess.run([HOST, str(ROUNDS)], env=env, capture_output=True, text=True,
                           timeout=280)  # a hang guard: a round takes well under a second
        tail = r.stderr[-4000:]
        self.assertEqual(r.returncode, 0, "exit status %d; stdout:\n%s\nstderr (end):\n%s"
                         % (r.returncode, r.stdout, tail))
        want = []
        for i in range(ROUNDS):
            want += ["round %d delivered" % i, "round %d finalized (%s)" % (i, MODES[i % 4])]
        self.assertEqual(r.stdout.splitlines(), want + ["done"], tail)
        # What reached stderr is statsprof's messages after finalization,
        # nothing else (no traceback, no unraisable exception, no fatal error).
        others = [line for line in r.stderr.splitlines() if not line.startswith("statsprof: ")]
        self.assertEqual(others, [], tail)


if __name__ == "__main__":
    HOST = os.path.abspath(sys.argv.pop(1))
    unittest.main()
