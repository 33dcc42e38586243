"""The Python workload ini_host runs (host_examples/ini_host.c).

Host API:
    setup(seed)   build the inputs (deterministic for a seed)
    step(i)       one unit of work, i = 0, 1, 2, ...; returns an int checksum

A mix of the usual suspects: text processing, a sieve, a small matrix
product and a JSON round trip. Pure Python standard library, no clocks.
"""

import json
import random

WORDS = ("profile", "sample", "record", "interval", "thread", "frame", "budget",
         "sink", "delta", "spike", "python", "host", "embed", "config", "tick")

_text = ""
_matrix = []


def setup(seed=1):
    global _text, _matrix
    rng = random.Random(seed)
    _text = " ".join(rng.choice(WORDS) for _ in range(600))
    _matrix = [[rng.randint(-9, 9) for _ in range(14)] for _ in range(14)]


def word_counts(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def primes_below(n):
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, n, i)))
    return [i for i in range(n) if sieve[i]]


def matmul(a, b):
    cols = list(zip(*b))
    return [[sum(x * y for x, y in zip(row, col)) for col in cols] for row in a]


def json_round_trip(counts):
    return json.loads(json.dumps(counts, sort_keys=True))


def step(i):
    counts = json_round_trip(word_counts(_text))
    primes = primes_below(2000 + (i % 7) * 100)
    m = matmul(_matrix, _matrix) if i % 4 == 0 else _matrix
    return (sum(counts.values()) + len(primes) + m[i % 14][(i * 3) % 14]) & 0xFFFFFFFF
