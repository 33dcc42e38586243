"""World: procedural tile map, value noise, uniform spatial grid and quadtree.

Everything here is deterministic given the seed: no global random state, no
time, and no iteration over sets of objects (whose order depends on memory
addresses).
"""

import math
import random

FLOOR = 0
WALL = 1
WATER = 2  # passable, but slows movement and costs more for path-finding

TILE_CHARS = {FLOOR: ".", WALL: "#", WATER: "~"}

DIAGONAL_COST = 1.4142135623730951
NEIGHBOUR_OFFSETS = (
    (1, 0, 1.0), (-1, 0, 1.0), (0, 1, 1.0), (0, -1, 1.0),
    (1, 1, DIAGONAL_COST), (1, -1, DIAGONAL_COST),
    (-1, 1, DIAGONAL_COST), (-1, -1, DIAGONAL_COST),
)


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------

def smoothstep(t):
    return t * t * (3.0 - 2.0 * t)


def lerp(a, b, t):
    return a + (b - a) * t


class ValueNoise:
    """Tileable 2D value noise with fractal (fBm) sampling."""

    def __init__(self, seed, size=64):
        rng = random.Random(seed)
        self.size = size
        self.values = [rng.random() for _ in range(size * size)]

    def lattice(self, ix, iy):
        s = self.size
        return self.values[(iy % s) * s + (ix % s)]

    def sample(self, x, y):
        ix = math.floor(x)
        iy = math.floor(y)
        sx = smoothstep(x - ix)
        sy = smoothstep(y - iy)
        top = lerp(self.lattice(ix, iy), self.lattice(ix + 1, iy), sx)
        bottom = lerp(self.lattice(ix, iy + 1), self.lattice(ix + 1, iy + 1), sx)
        return lerp(top, bottom, sy)

    def fractal(self, x, y, octaves=4, lacunarity=2.0, gain=0.5):
        total = 0.0
        amp = 1.0
        freq = 1.0
        norm = 0.0
        for _ in range(octaves):
            total += self.sample(x * freq, y * freq) * amp
            norm += amp
            amp *= gain
            freq *= lacunarity
        return total / norm


# ---------------------------------------------------------------------------
# Tile map
# ---------------------------------------------------------------------------

class TileMap:
    def __init__(self, width, height):
        self.width = width
        self.height = height
        self.tiles = [FLOOR] * (width * height)

    def in_bounds(self, tx, ty):
        return 0 <= tx < self.width and 0 <= ty < self.height

    def get(self, tx, ty):
        if 0 <= tx < self.width and 0 <= ty < self.height:
            return self.tiles[ty * self.width + tx]
        return WALL

    def set(self, tx, ty, value):
        self.tiles[ty * self.width + tx] = value

    def is_blocked(self, tx, ty):
        return self.get(tx, ty) == WALL

    def is_blocked_at(self, x, y):
        return self.get(math.floor(x), math.floor(y)) == WALL

    def move_cost(self, tx, ty):
        return 3.0 if self.get(tx, ty) == WATER else 1.0

    def neighbours(self, tx, ty):
        """Yield (nx, ny, cost) for passable neighbours (no corner cutting)."""
        for dx, dy, base in NEIGHBOUR_OFFSETS:
            nx = tx + dx
            ny = ty + dy
            if self.is_blocked(nx, ny):
                continue
            if dx and dy and (self.is_blocked(tx + dx, ty) or self.is_blocked(tx, ty + dy)):
                continue
            yield nx, ny, base * self.move_cost(nx, ny)

    def count_walls_around(self, tx, ty):
        count = 0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dx or dy) and self.get(tx + dx, ty + dy) == WALL:
                    count += 1
        return count

    def line_of_sight(self, x0, y0, x1, y1):
        dx = x1 - x0
        dy = y1 - y0
        steps = max(1, int(math.hypot(dx, dy) * 2.0))
        for i in range(1, steps + 1):
            t = i / steps
            if self.is_blocked_at(x0 + dx * t, y0 + dy * t):
                return False
        return True

    def random_floor(self, rng):
        while True:
            tx = rng.randrange(1, self.width - 1)
            ty = rng.randrange(1, self.height - 1)
            if self.get(tx, ty) == FLOOR:
                return tx, ty

    def row_string(self, ty, tx0, tx1):
        return "".join([TILE_CHARS[self.get(tx, ty)] for tx in range(tx0, tx1)])

    def wall_fraction(self):
        return self.tiles.count(WALL) / len(self.tiles)


def classify_height(v):
    if v > 0.62:
        return WALL
    if v < 0.33:
        return WATER
    return FLOOR


def smooth_pass(tilemap):
    """One cellular-automaton pass: walls grow where crowded, erode where lonely."""
    new_tiles = list(tilemap.tiles)
    w = tilemap.width
    for ty in range(1, tilemap.height - 1):
        for tx in range(1, w - 1):
            n = tilemap.count_walls_around(tx, ty)
            cur = tilemap.tiles[ty * w + tx]
            if n >= 5:
                new_tiles[ty * w + tx] = WALL
            elif n <= 2 and cur == WALL:
                new_tiles[ty * w + tx] = FLOOR
    tilemap.tiles = new_tiles


def flood_fill_region(tilemap, start, labels, label):
    """Iterative flood fill (4-connected) over passable tiles; returns size."""
    stack = [start]
    size = 0
    w = tilemap.width
    while stack:
        tx, ty = stack.pop()
        idx = ty * w + tx
        if labels[idx] != 0 or tilemap.tiles[idx] == WALL:
            continue
        labels[idx] = label
        size += 1
        for nx, ny in ((tx + 1, ty), (tx - 1, ty), (tx, ty + 1), (tx, ty - 1)):
            if tilemap.in_bounds(nx, ny):
                stack.append((nx, ny))
    return size


def keep_largest_region(tilemap):
    labels = [0] * len(tilemap.tiles)
    sizes = {}
    label = 0
    w = tilemap.width
    for ty in range(tilemap.height):
        for tx in range(w):
            idx = ty * w + tx
            if labels[idx] == 0 and tilemap.tiles[idx] != WALL:
                label += 1
                sizes[label] = flood_fill_region(tilemap, (tx, ty), labels, label)
    if not sizes:
        return 0
    best = max(sizes, key=lambda k: (sizes[k], -k))
    for idx, lab in enumerate(labels):
        if lab != best and tilemap.tiles[idx] != WALL:
            tilemap.tiles[idx] = WALL
    return sizes[best]


def generate_map(width, height, seed):
    noise = ValueNoise(seed * 7919 + 17)
    tilemap = TileMap(width, height)
    for ty in range(height):
        for tx in range(width):
            if tx == 0 or ty == 0 or tx == width - 1 or ty == height - 1:
                tilemap.set(tx, ty, WALL)
            else:
                tilemap.set(tx, ty, classify_height(noise.fractal(tx * 0.18, ty * 0.18, 3)))
    for _ in range(2):
        smooth_pass(tilemap)
    keep_largest_region(tilemap)
    return tilemap, noise


# ---------------------------------------------------------------------------
# Level chunk streaming (the deliberate "hitch")
# ---------------------------------------------------------------------------

class Chunk:
    def __init__(self, index, size, heights, biomes):
        self.index = index
        self.size = size
        self.heights = heights
        self.biomes = biomes

    def biome_histogram(self):
        hist = {}
        for row in self.biomes:
            for b in row:
                hist[b] = hist.get(b, 0) + 1
        return hist


def erode(heights, iterations):
    """Simple thermal erosion: move material down steep slopes."""
    size = len(heights)
    for _ in range(iterations):
        for y in range(1, size - 1):
            row = heights[y]
            for x in range(1, size - 1):
                h = row[x]
                lowest = min(row[x - 1], row[x + 1], heights[y - 1][x], heights[y + 1][x])
                diff = h - lowest
                if diff > 0.02:
                    row[x] = h - diff * 0.25
    return heights


def classify_biome(h, moisture):
    if h < 0.3:
        return "ocean"
    if h < 0.36:
        return "beach"
    if h > 0.7:
        return "snow" if moisture > 0.5 else "rock"
    if moisture > 0.6:
        return "forest"
    if moisture < 0.35:
        return "desert"
    return "grass"


def generate_chunk(noise, index, size=78, octaves=6, erosion_iterations=4):
    """Procedurally generate an off-screen terrain chunk. Pure CPU work."""
    ox = index * size
    heights = [[noise.fractal((ox + x) * 0.04, y * 0.04, octaves) for x in range(size)]
               for y in range(size)]
    moisture = [[noise.sample((ox + x) * 0.09 + 31.7, y * 0.09 + 11.3) for x in range(size)]
                for y in range(size)]
    erode(heights, erosion_iterations)
    biomes = [[classify_biome(heights[y][x], moisture[y][x]) for x in range(size)]
              for y in range(size)]
    return Chunk(index, size, heights, biomes)


# ---------------------------------------------------------------------------
# Spatial structures
# ---------------------------------------------------------------------------

class UniformGrid:
    """Uniform-grid broadphase: entities are bucketed by the cells their AABB covers."""

    def __init__(self, cell_size):
        self.cell_size = cell_size
        self.inv = 1.0 / cell_size
        self.cells = {}

    def clear(self):
        self.cells.clear()

    def cell_range(self, x0, y0, x1, y1):
        inv = self.inv
        return int(x0 * inv), int(y0 * inv), int(x1 * inv), int(y1 * inv)

    def insert(self, ent):
        cx0, cy0, cx1, cy1 = self.cell_range(*ent.aabb())
        cells = self.cells
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                bucket = cells.get((cx, cy))
                if bucket is None:
                    cells[(cx, cy)] = [ent]
                else:
                    bucket.append(ent)

    def buckets_near(self, x0, y0, x1, y1):
        """Yield the non-empty buckets overlapping a rectangle."""
        cx0, cy0, cx1, cy1 = self.cell_range(x0, y0, x1, y1)
        cells = self.cells
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                bucket = cells.get((cx, cy))
                if bucket:
                    yield bucket

    def occupancy(self):
        return max((len(b) for b in self.cells.values()), default=0)


class Quadtree:
    """Point quadtree, rebuilt each frame for view culling (recursive insert/query)."""

    MAX_ITEMS = 6
    MAX_DEPTH = 6

    def __init__(self, x0, y0, x1, y1, depth=0):
        self.x0 = x0
        self.y0 = y0
        self.x1 = x1
        self.y1 = y1
        self.depth = depth
        self.items = []
        self.children = None

    def insert(self, item, x, y):
        if self.children is not None:
            self.child_for(x, y).insert(item, x, y)
            return
        self.items.append((x, y, item))
        if len(self.items) > self.MAX_ITEMS and self.depth < self.MAX_DEPTH:
            self.split()

    def child_for(self, x, y):
        mx = (self.x0 + self.x1) * 0.5
        my = (self.y0 + self.y1) * 0.5
        return self.children[(1 if x >= mx else 0) + (2 if y >= my else 0)]

    def split(self):
        mx = (self.x0 + self.x1) * 0.5
        my = (self.y0 + self.y1) * 0.5
        d = self.depth + 1
        self.children = [
            Quadtree(self.x0, self.y0, mx, my, d),
            Quadtree(mx, self.y0, self.x1, my, d),
            Quadtree(self.x0, my, mx, self.y1, d),
            Quadtree(mx, my, self.x1, self.y1, d),
        ]
        items = self.items
        self.items = []
        for x, y, item in items:
            self.child_for(x, y).insert(item, x, y)

    def intersects(self, x0, y0, x1, y1):
        return not (x1 < self.x0 or x0 > self.x1 or y1 < self.y0 or y0 > self.y1)

    def query(self, x0, y0, x1, y1, out):
        if not self.intersects(x0, y0, x1, y1):
            return out
        for x, y, item in self.items:
            if x0 <= x <= x1 and y0 <= y <= y1:
                out.append(item)
        if self.children is not None:
            for child in self.children:
                child.query(x0, y0, x1, y1, out)
        return out

    def node_count(self):
        if self.children is None:
            return 1
        return 1 + sum(child.node_count() for child in self.children)
