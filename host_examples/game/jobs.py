"""Background jobs that the C host's worker threads run (game_host --workers N).

Host API:
    worker_job(worker_id, n)  bake job number n (0-based) of worker worker_id:
                              a path-cost map of a small generated terrain
                              chunk; returns its checksum (an int)

Not imported by game.py: the frame loop's behaviour does not depend on it.
Pure Python standard library; deterministic for (worker_id, n), no clocks.
"""

import heapq
import random

CHUNK = 64  # tiles per side of a baked chunk


def generate_chunk(rng, size=CHUNK):
    """A size x size grid of move costs: 1 floor, 3 rough ground, 0 wall."""
    grid = []
    for _ in range(size):
        row = []
        for _ in range(size):
            r = rng.random()
            row.append(0 if r < 0.18 else 3 if r < 0.40 else 1)
        grid.append(row)
    grid[0][0] = 1
    return grid


def bake_cost_map(grid):
    """Dijkstra from the chunk's corner: the cost to reach every tile (-1: unreachable)."""
    size = len(grid)
    dist = [[-1] * size for _ in range(size)]
    dist[0][0] = 0
    heap = [(0, 0, 0)]
    while heap:
        d, x, y = heapq.heappop(heap)
        if d > dist[y][x]:
            continue
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if 0 <= nx < size and 0 <= ny < size and grid[ny][nx]:
                nd = d + grid[ny][nx]
                if dist[ny][nx] < 0 or nd < dist[ny][nx]:
                    dist[ny][nx] = nd
                    heapq.heappush(heap, (nd, nx, ny))
    return dist


def worker_job(worker_id, n):
    """One background job: generate chunk n of worker worker_id and bake its cost map."""
    rng = random.Random(worker_id * 1_000_003 + n)
    dist = bake_cost_map(generate_chunk(rng))
    return sum(d for row in dist for d in row if d > 0) & 0xFFFFFFFF
