"""A fake renderer: culls with a quadtree, builds and sorts a draw list, and
rasterises it into an ASCII frame buffer plus a HUD line.  Nothing is displayed."""

import math

from world import Quadtree

PARTICLE_GLYPHS = ".,:;+*"
SHADE_GLYPHS = " .:-=+*#%@"
AMBIENT = 0.15


class Camera:
    def __init__(self, view_w, view_h, world_w, world_h):
        self.view_w = view_w
        self.view_h = view_h
        self.world_w = world_w
        self.world_h = world_h
        self.x = 0.0
        self.y = 0.0
        self.shake = 0.0

    def follow(self, target, dt, rng):
        k = min(1.0, 4.0 * dt)
        self.x += (target.x - self.view_w * 0.5 - self.x) * k
        self.y += (target.y - self.view_h * 0.5 - self.y) * k
        if self.shake > 0.0:
            self.x += (rng.random() - 0.5) * self.shake
            self.y += (rng.random() - 0.5) * self.shake
            self.shake = max(0.0, self.shake - dt * 2.0)
        self.x = min(max(self.x, 0.0), self.world_w - self.view_w)
        self.y = min(max(self.y, 0.0), self.world_h - self.view_h)

    def rect(self):
        return (self.x, self.y, self.x + self.view_w, self.y + self.view_h)

    def to_screen(self, x, y):
        return int(x - self.x), int(y - self.y)


def sprite_command(e, cam):
    sx, sy = cam.to_screen(e.x, e.y)
    return (e.layer, sy, sx, e.glyph, e.id)


def particle_command(p, cam):
    sx, sy = cam.to_screen(p.x, p.y)
    brightness = (p.color[0] + p.color[1] + p.color[2]) / 765.0
    glyph = PARTICLE_GLYPHS[min(len(PARTICLE_GLYPHS) - 1, int(brightness * len(PARTICLE_GLYPHS)))]
    return (1, sy, sx, glyph, -1)


def light_at(x, y, lights):
    """Sum of inverse-square-ish falloff from each light, clamped to 1."""
    total = AMBIENT
    for lx, ly, intensity, radius in lights:
        dx = x - lx
        dy = y - ly
        d = math.sqrt(dx * dx + dy * dy)
        if d < radius:
            total += intensity * (1.0 - d / radius) ** 2
    return min(1.0, total)


def shade_glyph(level):
    return SHADE_GLYPHS[min(len(SHADE_GLYPHS) - 1, int(level * len(SHADE_GLYPHS)))]


def health_bar(hp, max_hp, width=10):
    filled = max(0, min(width, int(math.ceil(width * hp / max_hp))))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Renderer:
    def __init__(self, view_w, view_h, world_w, world_h, rng):
        self.camera = Camera(view_w, view_h, world_w, world_h)
        self.rng = rng
        self.view_w = view_w
        self.view_h = view_h
        self.world_w = world_w
        self.world_h = world_h
        self.frames = 0
        self.chars_drawn = 0
        self.last_draw_count = 0
        self.last_frame = ""
        self.last_hud = ""
        self.quadtree_nodes = 0
        self.lit_cells = 0
        self.last_light = []

    def build_quadtree(self, entities):
        qt = Quadtree(0.0, 0.0, float(self.world_w), float(self.world_h))
        for e in entities:
            if e.alive:
                qt.insert(e, e.x, e.y)
        self.quadtree_nodes = qt.node_count()
        return qt

    def draw_list(self, game):
        cam = self.camera
        x0, y0, x1, y1 = cam.rect()
        qt = self.build_quadtree(game.entities)
        visible = qt.query(x0 - 1.0, y0 - 1.0, x1 + 1.0, y1 + 1.0, [])
        cmds = [sprite_command(e, cam) for e in visible]
        cmds.extend(particle_command(p, cam) for p in game.particles.iter_visible(x0, y0, x1, y1))
        cmds.sort(key=lambda c: (c[0], c[1], c[2], c[4]))
        return cmds

    def tile_rows(self, tilemap):
        tx0 = int(self.camera.x)
        ty0 = int(self.camera.y)
        return [list(tilemap.row_string(ty, tx0, tx0 + self.view_w))
                for ty in range(ty0, ty0 + self.view_h)]

    def rasterise(self, rows, cmds):
        w = self.view_w
        h = self.view_h
        for _, sy, sx, glyph, _ in cmds:
            if 0 <= sx < w and 0 <= sy < h:
                rows[sy][sx] = glyph
        return "\n".join("".join(r) for r in rows)

    def collect_lights(self, game):
        lights = [(game.player.x, game.player.y, 1.0, 7.0)]
        for e in game.entities:
            if not e.alive:
                continue
            if e.kind == "projectile":
                lights.append((e.x, e.y, 0.5, 2.5))
            elif e.glyph == "T":
                lights.append((e.x, e.y, 0.35, 3.5))
        return lights

    def light_map(self, game, step=2):
        """Half-resolution light map of the view, as rows of shade glyphs."""
        cam = self.camera
        lights = self.collect_lights(game)
        x0, y0, x1, y1 = cam.rect()
        near = [l for l in lights
                if x0 - l[3] <= l[0] <= x1 + l[3] and y0 - l[3] <= l[1] <= y1 + l[3]]
        rows = []
        for sy in range(0, self.view_h, step):
            wy = cam.y + sy + 0.5
            rows.append("".join([shade_glyph(light_at(cam.x + sx + 0.5, wy, near))
                                 for sx in range(0, self.view_w, step)]))
        self.lit_cells = sum(len(r) - r.count(" ") for r in rows)
        return rows

    def hud(self, game):
        p = game.player
        counts = game.kind_counts()
        parts = [
            "F%05d" % game.frame_no,
            "HP" + health_bar(max(0, p.hp), 100),
            "score=%d" % game.score,
            " ".join("%s:%d" % (k, counts[k]) for k in sorted(counts)),
            "fx=%d" % len(game.particles),
        ]
        return " | ".join(parts)

    def render(self, game, dt):
        self.camera.follow(game.player, dt, self.rng)
        cmds = self.draw_list(game)
        rows = self.tile_rows(game.tilemap)
        self.last_frame = self.rasterise(rows, cmds)
        self.last_light = self.light_map(game)
        self.last_hud = self.hud(game)
        self.last_draw_count = len(cmds)
        self.chars_drawn += len(self.last_frame) + len(self.last_hud)
        self.frames += 1
