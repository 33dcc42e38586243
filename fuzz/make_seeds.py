#!/usr/bin/python3
"""Writes the seed corpus of fuzz/ (checked in; rerun after changing the
input layout of a fuzz target): fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- config: text, as a host would pass it --------------------------------
CONFIGS = {
    "empty": "",
    "readme_example": "interval=1s;clock=wall;sink=jsonl:out/prof.jsonl;sink=stderr",
    "every_key": "interval=500ms;clock=cpu;builtins=off;max_functions=10;writer=sync;"
                 "on_full=block;queue=4;trigger=timer;compensate=off;budget=16.6ms;"
                 "max_spikes_per_min=5;per_thread=on;sink=none",
    "production": "duty=5%;window=50ms;sink=none",
    "max_overhead": "max_overhead=2%;every=1s",
    "spaces": "  interval = 2m ; clock= cpu ;; ",
    "all_sinks": "sink=jsonl:a.jsonl;sink=stderr:10;sink=pstats:dir;sink=callgrind:dir;sink=my-host_sink",
    "bad_duration": "interval=1.5.3s",
    "bad_sink_arg": "sink=a:;x=1",
    "bad_queue": "queue=65537",
    "not_key_value": "interval",
    "exponent": "interval=1e3s",
    "duplicate": "clock=wall;clock=cpu",
    "units": "budget=10us;interval=2h",
    "unknown_key": "Interval=1s",
}
for name, text in CONFIGS.items():
    write("config", name, text)


# ---- jsonl: the byte layout read by jsonl_fuzzer.c ------------------------
def u8(v):
    return struct.pack("<B", v)


def count(v):
    return u8(v) if v < 0xc0 else u8(0xff) + struct.pack("<Q", v)


def i64(v):
    return struct.pack("<q", v)


def dbl(v=None, special=None):
    # special: 0 nan, 1 inf, 2 -inf, 3 -0.0, 4 denormal, 5 1e300
    if special is not None:
        return u8(special)
    return u8(9) + struct.pack("<d", v)


def s(text):
    b = text if isinstance(text, bytes) else text.encode()
    return u8(len(b)) + b


def record(funcs, kind=1, seq=1, pid=1234, start=1795617000000000000, end=1795617001000000000,
           thread=None, frames=0, frame=0, total=None):
    out = u8(kind) + count(seq) + i64(pid) + i64(start) + i64(end)
    out += count(0) + count(0) + count(0)
    if thread:
        out += count(thread[0]) + u8(1) + s(thread[1])
    else:
        out += count(0) + u8(0)
    out += count(frames) + dbl(0.016) + dbl(0.015) + dbl(0.02) + dbl(0.03) + dbl(0.05)
    out += count(frame) + dbl(0.25)
    out += dbl(total if total is not None else sum(f[5] for f in funcs))
    out += u8(len(funcs))
    for name, file, line, nc, cc, tt, ct, callers in funcs:
        out += s(name) + s(file) + i64(line) + count(nc) + count(cc)
        out += dbl(tt) + dbl(tt / nc if nc else -1) + dbl(ct) + dbl(ct / cc if cc else -1)
        out += u8(len(callers))
        for cname, cfile, cline, cnc, ccc, ctt, cct in callers:
            out += s(cname) + s(cfile) + i64(cline) + count(cnc) + count(ccc) + dbl(ctt) + dbl(cct)
    return out


write("jsonl", "empty_record", record([]))
write("jsonl", "call_tree", record([
    ("main", "program.py", 7, 1, 1, 1e-5, 2e-5, []),
    ("a", "program.py", 3, 3, 3, 3e-6, 5e-6, [("main", "program.py", 7, 3, 3, 3e-6, 5e-6)]),
    ("rec", "program.py", 5, 5, 1, 2e-6, 2e-6, [("main", "program.py", 7, 1, 1, 1e-6, 2e-6),
                                                 ("rec", "program.py", 5, 4, 0, 1e-6, 1e-6)]),
    ("<built-in method builtins.len>", "~", 0, 1, 1, 1e-7, 1e-7, [("main", "program.py", 7, 1, 1, 1e-7, 1e-7)]),
]))
write("jsonl", "thread_spike", record([
    ("work", "w.py", 1, 1, 1, 0.2, 0.2, []),
], kind=2, thread=(140000000000000, "worker-7"), frames=3, frame=42))
write("jsonl", "hostile_names", record([
    (b"q\"uote\\back\nline\ttab\x01\x1f\x7f", b"bad\xff\xfe\xc0\xaf.py", -1, 2, 1, 0.5, 1.0, []),
    ("ĥello😀", "dïr/файл.py", 2**31 - 1, 2**40, 2**33, 1.0, 2.0,
     [(b"\xed\xa0\x80surrogate", b"\xf4\x90\x80\x80", 3, 1, 1, 0.1, 0.1)]),
]))
# Extreme but representable: end - start is exactly INT64_MAX.
bad_doubles = (u8(1) + count(1) + i64(-1) + i64(-2**62) + i64(2**62 - 1) + count(2**64 - 1) * 3
               + count(0) + u8(0) + count(1) + dbl(special=0) + dbl(special=1) + dbl(special=2)
               + dbl(special=3) + dbl(special=4) + count(0) + dbl(special=5) + dbl(special=0)
               + u8(1) + s("nan") + s("n.py") + i64(1) + count(1) + count(1)
               + dbl(special=0) + dbl(special=1) + dbl(special=2) + dbl(special=3) + u8(0))
write("jsonl", "odd_numbers", bad_doubles)
