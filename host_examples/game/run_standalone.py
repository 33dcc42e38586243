"""Run the game without the C host: init + N frames, then print the summary
and the average wall-clock milliseconds per frame.

    /usr/bin/python3 host_examples/game/run_standalone.py 300
    python3 -m cProfile -s cumtime host_examples/game/run_standalone.py 300

Optional: argv[2] = seed (default 1), argv[3] = comma-separated hitch frames.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import game  # noqa: E402

DT = 1.0 / 60.0


def main(argv):
    frames = int(argv[1]) if len(argv) > 1 else 600
    seed = int(argv[2]) if len(argv) > 2 else 1
    if len(argv) > 3 and argv[3]:
        game.set_hitch_frames(int(f) for f in argv[3].split(","))
    game.init(seed)
    t0 = time.perf_counter()
    for _ in range(frames):
        game.frame(DT)
    elapsed = time.perf_counter() - t0
    print(game.summary())
    print("frames=%d total=%.1f ms avg=%.3f ms/frame" % (
        frames, elapsed * 1000.0, elapsed * 1000.0 / max(1, frames)))


if __name__ == "__main__":
    main(sys.argv)
