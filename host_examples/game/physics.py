"""Physics: integration, tile collision, uniform-grid broadphase, circle narrowphase."""

import math

from world import UniformGrid, WALL, WATER


def aabb_overlap(a, b):
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def circle_vs_circle(a, b):
    """Returns (nx, ny, depth) pointing from a to b, or None."""
    dx = b.x - a.x
    dy = b.y - a.y
    r = a.radius + b.radius
    d2 = dx * dx + dy * dy
    if d2 >= r * r:
        return None
    d = math.sqrt(d2)
    if d < 1e-9:
        return (1.0, 0.0, r)
    return (dx / d, dy / d, r - d)


def circle_vs_box(cx, cy, r, bx0, by0, bx1, by1):
    """Push-out vector for a circle overlapping an axis-aligned box, or None."""
    px = min(max(cx, bx0), bx1)
    py = min(max(cy, by0), by1)
    dx = cx - px
    dy = cy - py
    d2 = dx * dx + dy * dy
    if d2 >= r * r:
        return None
    if d2 < 1e-12:
        # centre inside the box: push out along the shallowest axis
        left = cx - bx0
        right = bx1 - cx
        up = cy - by0
        down = by1 - cy
        m = min(left, right, up, down)
        if m == left:
            return (-1.0, 0.0, left + r)
        if m == right:
            return (1.0, 0.0, right + r)
        if m == up:
            return (0.0, -1.0, up + r)
        return (0.0, 1.0, down + r)
    d = math.sqrt(d2)
    return (dx / d, dy / d, r - d)


def clamp_speed(e):
    s2 = e.vx * e.vx + e.vy * e.vy
    m = e.max_speed
    if s2 > m * m:
        k = m / math.sqrt(s2)
        e.vx *= k
        e.vy *= k


def terrain_drag(e, tilemap):
    if tilemap.get(math.floor(e.x), math.floor(e.y)) == WATER:
        return e.friction + 6.0
    return e.friction


def integrate(e, dt, tilemap):
    drag = terrain_drag(e, tilemap)
    if drag:
        f = max(0.0, 1.0 - drag * dt * 0.25)
        e.vx *= f
        e.vy *= f
    clamp_speed(e)
    e.x += e.vx * dt
    e.y += e.vy * dt


def wall_boxes_near(e, tilemap):
    """Generator over the wall tiles overlapping an entity's bounding box."""
    x0, y0, x1, y1 = e.aabb()
    for ty in range(math.floor(y0), math.floor(y1) + 1):
        for tx in range(math.floor(x0), math.floor(x1) + 1):
            if tilemap.get(tx, ty) == WALL:
                yield tx, ty


def resolve_tiles(e, tilemap):
    hits = 0
    for tx, ty in wall_boxes_near(e, tilemap):
        push = circle_vs_box(e.x, e.y, e.radius, tx, ty, tx + 1.0, ty + 1.0)
        if push is None:
            continue
        nx, ny, depth = push
        e.x += nx * depth
        e.y += ny * depth
        vn = e.vx * nx + e.vy * ny
        if vn < 0.0:
            e.vx -= vn * nx
            e.vy -= vn * ny
        hits += 1
    return hits


def separate(a, b, nx, ny, depth):
    inv_a = 0.0 if a.static else 1.0 / a.mass
    inv_b = 0.0 if b.static else 1.0 / b.mass
    total = inv_a + inv_b
    if total <= 0.0:
        return
    ka = depth * inv_a / total
    kb = depth * inv_b / total
    a.x -= nx * ka
    a.y -= ny * ka
    b.x += nx * kb
    b.y += ny * kb


def blocks_each_other(a, b):
    return a.solid and b.solid and a.kind != "projectile" and b.kind != "projectile"


class PhysicsWorld:
    def __init__(self, tilemap, cell_size=2.0):
        self.tilemap = tilemap
        self.grid = UniformGrid(cell_size)
        self.tile_hits = 0
        self.pair_tests = 0
        self.contacts_total = 0

    def rebuild_grid(self, entities):
        grid = self.grid
        grid.clear()
        for e in entities:
            if e.alive:
                grid.insert(e)

    def broadphase(self, entities):
        pairs = []
        seen = set()
        grid = self.grid
        for e in entities:
            if not e.alive:
                continue
            box = e.aabb()
            for bucket in grid.buckets_near(*box):
                for o in bucket:
                    if o.id <= e.id or not o.alive:
                        continue
                    key = (e.id, o.id)
                    if key in seen:
                        continue
                    seen.add(key)
                    self.pair_tests += 1
                    if aabb_overlap(box, o.aabb()):
                        pairs.append((e, o))
        return pairs

    def neighbours_of(self, e, radius):
        """Yield other live entities whose centre lies within `radius` of e
        (uses the grid built during the previous physics step)."""
        r2 = radius * radius
        ex = e.x
        ey = e.y
        seen = set()
        for bucket in self.grid.buckets_near(ex - radius, ey - radius, ex + radius, ey + radius):
            for o in bucket:
                if o is e or not o.alive or o.id in seen:
                    continue
                seen.add(o.id)
                dx = o.x - ex
                dy = o.y - ey
                if dx * dx + dy * dy <= r2:
                    yield o

    def narrowphase(self, pairs):
        contacts = []
        for a, b in pairs:
            hit = circle_vs_circle(a, b)
            if hit is None:
                continue
            nx, ny, depth = hit
            if blocks_each_other(a, b):
                separate(a, b, nx, ny, depth)
            contacts.append((a, b, nx, ny, depth))
        self.contacts_total += len(contacts)
        return contacts

    def update(self, dt, entities):
        tilemap = self.tilemap
        for e in entities:
            if not e.alive or e.static:
                continue
            integrate(e, dt, tilemap)
            if e.kind != "projectile":
                self.tile_hits += resolve_tiles(e, tilemap)
        self.rebuild_grid(entities)
        return self.narrowphase(self.broadphase(entities))
