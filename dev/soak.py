#!/usr/bin/python3
"""Soak test: a long-running host that generates new code every frame.

Runs a frame loop for --minutes (default 10) under statsprof with
snapshots every 100 ms to a JSON-lines file and max_functions capping the
table, creating a brand-new function (exec of fresh source) and a lambda
every frame. Samples RSS every 10 s and reports whether it stays flat:
code objects the profiler sees are not kept alive (co_extra holds only an
index), and functions beyond the cap fold into one overflow entry.

    PYTHONPATH=bazel-bin/python dev/soak.py --minutes 10 --out out/soak
"""
import argparse
import gc
import os
import sys
import time


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--out", default="out/soak")
    ap.add_argument("--max-functions", type=int, default=5000)
    args = ap.parse_args()
    import statsprof

    os.makedirs(args.out, exist_ok=True)
    jsonl = os.path.join(args.out, "soak.jsonl")
    config = ("interval=100ms;max_functions=%d;sink=jsonl:%s,max_bytes=50M,keep=2"
              % (args.max_functions, jsonl))
    prof = statsprof.Profile(config=config)
    samples = []
    end = time.monotonic() + args.minutes * 60
    frame = 0
    next_sample = time.monotonic()
    prof.enable()
    try:
        while time.monotonic() < end:
            frame += 1
            ns = {}
            exec(compile("def gen_%d(x):\n    return x * %d\n" % (frame, frame),
                         "generated_%d.py" % frame, "exec"), ns)
            f = ns["gen_%d" % frame]
            sorted(range(50), key=lambda v, k=frame: (v * k) % 7)
            for i in range(20):
                f(i)
            prof.tick()
            if time.monotonic() >= next_sample:
                gc.collect()
                samples.append((time.monotonic(), frame, rss_kib()))
                next_sample += 10
            time.sleep(0.001)
    finally:
        prof.disable()
    start_rss = samples[min(3, len(samples) - 1)][2]  # after warm-up
    last_rss = samples[-1][2]
    with open(os.path.join(args.out, "rss.csv"), "w") as f:
        f.write("seconds,frames,rss_kib\n")
        for t, n, r in samples:
            f.write("%.1f,%d,%d\n" % (t - samples[0][0], n, r))
    print("frames %d, functions generated %d, records in %s" % (frame, frame, jsonl))
    print("RSS after warm-up %d KiB, at end %d KiB, growth %+d KiB over %.1f min"
          % (start_rss, last_rss, last_rss - start_rss, args.minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
