"""AI: A* path-finding on the tile grid (heapq) and path-following agents.

A failed search raises PathNotFound several calls down (astar -> check_goal /
expand budget) and is caught by PathAgent.replan.
"""

import heapq
import math

from world import DIAGONAL_COST


class PathNotFound(Exception):
    def __init__(self, start, goal, reason):
        super().__init__("no path %r -> %r (%s)" % (start, goal, reason))
        self.start = start
        self.goal = goal
        self.reason = reason


def octile(a, b):
    dx = abs(a[0] - b[0])
    dy = abs(a[1] - b[1])
    return (dx + dy) + (DIAGONAL_COST - 2.0) * min(dx, dy)


def check_goal(tilemap, start, goal):
    if tilemap.is_blocked(*goal):
        raise PathNotFound(start, goal, "goal blocked")
    if tilemap.is_blocked(*start):
        raise PathNotFound(start, goal, "start blocked")


def reconstruct(came_from, node):
    path = [node]
    while node in came_from:
        node = came_from[node]
        path.append(node)
    path.reverse()
    return path


def astar(tilemap, start, goal, max_expansions=400):
    """Classic A* with a binary heap. Raises PathNotFound on failure."""
    check_goal(tilemap, start, goal)
    if start == goal:
        return [start]
    counter = 0  # tie-breaker keeps heap ordering deterministic
    open_heap = [(octile(start, goal), 0.0, counter, start)]
    g_score = {start: 0.0}
    came_from = {}
    closed = set()
    expansions = 0
    while open_heap:
        _, g, _, current = heapq.heappop(open_heap)
        if current == goal:
            return reconstruct(came_from, current)
        if current in closed:
            continue
        closed.add(current)
        expansions += 1
        if expansions > max_expansions:
            raise PathNotFound(start, goal, "search budget exhausted")
        cx, cy = current
        for nx, ny, cost in tilemap.neighbours(cx, cy):
            nxt = (nx, ny)
            if nxt in closed:
                continue
            ng = g + cost
            if ng < g_score.get(nxt, math.inf):
                g_score[nxt] = ng
                came_from[nxt] = current
                counter += 1
                heapq.heappush(open_heap, (ng + octile(nxt, goal), ng, counter, nxt))
    raise PathNotFound(start, goal, "unreachable")


def smooth_path(tilemap, path):
    """String-pulling: drop waypoints that are in direct line of sight."""
    if len(path) <= 2:
        return path
    out = [path[0]]
    anchor = path[0]
    for i in range(2, len(path)):
        ax, ay = anchor
        px, py = path[i]
        if not tilemap.line_of_sight(ax + 0.5, ay + 0.5, px + 0.5, py + 0.5):
            anchor = path[i - 1]
            out.append(anchor)
    out.append(path[-1])
    return out


def find_path(tilemap, start, goal, max_expansions=400):
    raw = astar(tilemap, start, goal, max_expansions)
    return smooth_path(tilemap, raw)


def tile_of(x, y):
    return (math.floor(x), math.floor(y))


class PathAgent:
    """Follows a path towards a target, re-planning every `replan_interval` frames."""

    def __init__(self, owner, replan_interval=40, phase=0, max_expansions=400):
        self.owner = owner
        self.replan_interval = replan_interval
        self.counter = phase % replan_interval
        self.max_expansions = max_expansions
        self.path = []
        self.waypoint = 0
        self.plans = 0
        self.failures = 0
        self.last_failure = None

    def replan(self, tilemap, tx, ty, stats):
        start = tile_of(self.owner.x, self.owner.y)
        goal = tile_of(tx, ty)
        self.plans += 1
        stats["paths"] = stats.get("paths", 0) + 1
        try:
            self.path = find_path(tilemap, start, goal, self.max_expansions)
            self.waypoint = 1 if len(self.path) > 1 else 0
        except PathNotFound as exc:
            self.failures += 1
            self.last_failure = exc.reason
            stats["path_fail"] = stats.get("path_fail", 0) + 1
            self.path = []
            self.waypoint = 0
        self.counter = 0

    def current_waypoint(self):
        if self.waypoint < len(self.path):
            wx, wy = self.path[self.waypoint]
            return wx + 0.5, wy + 0.5
        return None

    def advance(self):
        wp = self.current_waypoint()
        if wp is None:
            return None
        dx = wp[0] - self.owner.x
        dy = wp[1] - self.owner.y
        if dx * dx + dy * dy < 0.09:
            self.waypoint += 1
            wp = self.current_waypoint()
        return wp

    def wants_replan(self):
        return self.counter >= self.replan_interval or (not self.path and self.counter >= 10)

    def update(self, dt, planner, tx, ty):
        """Returns the point to steer towards (or None if no plan).  Re-planning
        goes through the shared planner, which caps searches per frame."""
        self.counter += 1
        if self.wants_replan():
            planner.request(self, tx, ty)
        return self.advance()


class PathPlanner:
    """Caps the number of A* searches per frame; agents over budget retry next frame."""

    def __init__(self, tilemap, max_per_frame=3):
        self.tilemap = tilemap
        self.max_per_frame = max_per_frame
        self.remaining = max_per_frame
        self.deferred = 0
        self.stats = {"paths": 0, "path_fail": 0}

    def begin_frame(self):
        self.remaining = self.max_per_frame

    def request(self, agent, tx, ty):
        if self.remaining <= 0:
            self.deferred += 1
            return False
        self.remaining -= 1
        agent.replan(self.tilemap, tx, ty, self.stats)
        return True


class DistanceField:
    """Dijkstra distance map around a source tile, limited to a radius.
    Rebuilt periodically; wanderers follow its gradient when they get close."""

    def __init__(self, tilemap, radius=10.0, interval=12):
        self.tilemap = tilemap
        self.radius = radius
        self.interval = interval
        self.counter = 0
        self.dist = {}
        self.source = None
        self.builds = 0

    def build(self, source):
        tilemap = self.tilemap
        dist = {source: 0.0}
        heap = [(0.0, source)]
        radius = self.radius
        while heap:
            d, node = heapq.heappop(heap)
            if d > dist.get(node, math.inf) or d > radius:
                continue
            for nx, ny, cost in tilemap.neighbours(node[0], node[1]):
                nd = d + cost
                key = (nx, ny)
                if nd < dist.get(key, math.inf):
                    dist[key] = nd
                    heapq.heappush(heap, (nd, key))
        self.dist = dist
        self.source = source
        self.builds += 1

    def update(self, x, y):
        self.counter += 1
        if self.counter >= self.interval or self.source is None:
            self.counter = 0
            self.build(tile_of(x, y))

    def value_at(self, x, y):
        return self.dist.get(tile_of(x, y))

    def downhill(self, x, y):
        """Centre of the neighbouring tile with the smallest distance, or None."""
        tx, ty = tile_of(x, y)
        here = self.dist.get((tx, ty))
        if here is None:
            return None
        best = min(((self.dist.get((nx, ny), math.inf), nx, ny)
                    for nx, ny, _ in self.tilemap.neighbours(tx, ty)), default=None)
        if best is None or best[0] >= here:
            return None
        return best[1] + 0.5, best[2] + 0.5


def flee_direction(x, y, threats):
    """Average direction away from threats, weighted by inverse distance."""
    fx = 0.0
    fy = 0.0
    for t in threats:
        dx = x - t.x
        dy = y - t.y
        d2 = dx * dx + dy * dy + 1e-6
        fx += dx / d2
        fy += dy / d2
    n = math.hypot(fx, fy)
    if n < 1e-9:
        return 0.0, 0.0
    return fx / n, fy / n
