"""Entry module of the demo game, driven by a C host in a fixed-timestep loop.

Host API:
    init(seed=1)          build the world (deterministic for a given seed)
    frame(dt)             advance one fixed-timestep frame (dt = 1/60)
    summary()             one-line human-readable summary
    hitch_frames          set of 1-based frame numbers on which frame() calls
                          load_level_chunk() (~30-50 ms of CPU work)
    set_hitch_frames(fs)  replace hitch_frames

Pure Python standard library; deterministic (random.Random(seed), no clocks).
"""

import math
import random

import ai
import entities
import particles
import physics
import render
import world

MAP_W = 72
MAP_H = 52
VIEW_W = 60
VIEW_H = 34
TARGET_CHASERS = 30
TARGET_WANDERERS = 26
TARGET_SCOUTS = 8
TARGET_TURRETS = 8
TARGET_PICKUPS = 14
PARTICLE_CAPACITY = 800

hitch_frames: set[int] = set()

_game = None


def set_hitch_frames(frames) -> None:
    """Replace the set of frame numbers (1-based) that trigger load_level_chunk()."""
    global hitch_frames
    hitch_frames = set(int(f) for f in frames)


class Director:
    """Keeps the population topped up: spawns enemies and pickups away from the player."""

    def __init__(self, rng):
        self.rng = rng
        self.timer = 0.0
        self.spawned = 0

    def spawn_point(self, game, min_dist=8.0):
        tilemap = game.tilemap
        player = game.player
        for _ in range(20):
            tx, ty = tilemap.random_floor(self.rng)
            x = tx + 0.5
            y = ty + 0.5
            if (x - player.x) ** 2 + (y - player.y) ** 2 >= min_dist * min_dist:
                return x, y
        return x, y

    def make(self, kind, game):
        x, y = self.spawn_point(game)
        eid = game.new_id()
        if kind == "chaser":
            return entities.Chaser(eid, x, y)
        if kind == "wanderer":
            return entities.Wanderer(eid, x, y, self.rng.random() * math.tau)
        if kind == "scout":
            return entities.Scout(eid, x, y)
        if kind == "turret":
            return entities.Turret(eid, x, y)
        return entities.Pickup(eid, x, y, value=self.rng.choice((5, 10, 10, 25)))

    def update(self, dt, game):
        self.timer -= dt
        if self.timer > 0.0:
            return
        self.timer = 0.5
        counts = game.class_counts()
        wanted = (("chaser", entities.Chaser, TARGET_CHASERS),
                  ("wanderer", entities.Wanderer, TARGET_WANDERERS),
                  ("scout", entities.Scout, TARGET_SCOUTS),
                  ("turret", entities.Turret, TARGET_TURRETS),
                  ("pickup", entities.Pickup, TARGET_PICKUPS))
        for kind, cls, target in wanted:
            if counts.get(cls.__name__, 0) < target:
                game.spawn(self.make(kind, game))
                self.spawned += 1


class Game:
    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)
        self.tilemap, self.noise = world.generate_map(MAP_W, MAP_H, seed)
        self.next_id = 1
        self.entities = []
        self.pending = []
        self.frame_no = 0
        self.time = 0.0
        self.score = 0
        self.kills = 0
        self.deaths = 0
        self.pickups_taken = 0
        self.chunks_loaded = 0
        self.chunk_biomes = {}
        self.planner = ai.PathPlanner(self.tilemap, max_per_frame=2)
        self.stats = self.planner.stats
        self.player_field = ai.DistanceField(self.tilemap, radius=9.0, interval=10)
        self.physics = physics.PhysicsWorld(self.tilemap, cell_size=2.0)
        self.particles = particles.ParticleSystem(PARTICLE_CAPACITY, random.Random(seed + 1))
        self.renderer = render.Renderer(VIEW_W, VIEW_H, MAP_W, MAP_H, random.Random(seed + 2))
        self.director = Director(random.Random(seed + 3))
        self.contact_handlers = {
            ("enemy", "projectile"): self.on_projectile_hit,
            ("player", "projectile"): self.on_projectile_hit,
            ("enemy", "player"): self.on_enemy_touch,
            ("pickup", "player"): self.on_pickup,
        }
        px, py = self.tilemap.random_floor(self.rng)
        self.spawn_x = px + 0.5
        self.spawn_y = py + 0.5
        self.player = entities.Player(self.new_id(), self.spawn_x, self.spawn_y)
        self.entities.append(self.player)
        self.particles.add_emitter(particles.Emitter(
            self.player.x, self.player.y, rate=30.0, speed=0.8, life=0.5,
            color=entities.COLOR_PLAYER, follow=self.player))
        for _ in range(TARGET_CHASERS):
            self.entities.append(self.director.make("chaser", self))
        for _ in range(TARGET_WANDERERS):
            self.entities.append(self.director.make("wanderer", self))
        for _ in range(TARGET_SCOUTS):
            self.entities.append(self.director.make("scout", self))
        for _ in range(TARGET_TURRETS):
            self.entities.append(self.director.make("turret", self))
        for _ in range(TARGET_PICKUPS):
            self.entities.append(self.director.make("pickup", self))

    # -- bookkeeping ----------------------------------------------------------

    def new_id(self):
        eid = self.next_id
        self.next_id += 1
        return eid

    def spawn(self, ent):
        self.pending.append(ent)
        return ent

    def enemies(self):
        for e in self.entities:
            if e.alive and e.kind == "enemy":
                yield e

    def entities_of_kind(self, kind):
        return [e for e in self.entities if e.alive and e.kind == kind]

    def kind_counts(self):
        counts = {}
        for e in self.entities:
            if e.alive:
                counts[e.kind] = counts.get(e.kind, 0) + 1
        return counts

    def class_counts(self):
        counts = {}
        for e in self.entities:
            if e.alive:
                name = type(e).__name__
                counts[name] = counts.get(name, 0) + 1
        return counts

    # -- events ---------------------------------------------------------------

    def on_entity_died(self, ent):
        if ent is self.player:
            self.respawn_player()
            return
        if ent.kind == "enemy":
            self.kills += 1
            self.score += ent.score_value
            self.particles.burst(ent.x, ent.y, 14, 4.0, 0.6, entities.COLOR_ENEMY, gravity=3.0)
            self.renderer.camera.shake = 0.6

    def respawn_player(self):
        p = self.player
        self.deaths += 1
        self.score = max(0, self.score - 50)
        self.particles.burst(p.x, p.y, 24, 5.0, 0.8, entities.COLOR_PLAYER)
        p.x = self.spawn_x
        p.y = self.spawn_y
        p.vx = p.vy = 0.0
        p.hp = 100
        p.alive = True
        p.invulnerable = 2.0

    def on_projectile_hit(self, target, proj, nx, ny, depth):
        if not proj.alive or proj.owner_kind == target.kind:
            return
        if target.kind == "player" and target.invulnerable > 0.0:
            return
        proj.alive = False
        target.vx += proj.vx * 0.1
        target.vy += proj.vy * 0.1
        self.particles.burst(proj.x, proj.y, 5, 3.0, 0.25, entities.COLOR_SPARK)
        target.take_damage(proj.damage, self)

    def on_enemy_touch(self, enemy, player, nx, ny, depth):
        if player.invulnerable > 0.0 or enemy.contact_damage <= 0:
            return
        player.invulnerable = 0.5
        player.take_damage(enemy.contact_damage, self)

    def on_pickup(self, pickup, player, nx, ny, depth):
        if not pickup.alive:
            return
        pickup.alive = False
        self.pickups_taken += 1
        self.score += pickup.value
        self.particles.add_emitter(particles.Emitter(
            pickup.x, pickup.y, rate=60.0, speed=2.0, life=0.4,
            color=entities.COLOR_PICKUP, duration=0.25, gravity=-2.0))

    def resolve_contacts(self, contacts):
        handlers = self.contact_handlers
        for a, b, nx, ny, depth in contacts:
            if a.kind <= b.kind:
                handler = handlers.get((a.kind, b.kind))
                if handler is not None:
                    handler(a, b, nx, ny, depth)
            else:
                handler = handlers.get((b.kind, a.kind))
                if handler is not None:
                    handler(b, a, -nx, -ny, depth)

    # -- frame ----------------------------------------------------------------

    def update_entities(self, dt):
        for e in self.entities:
            if e.alive:
                e.update(dt, self)

    def flush(self):
        if self.pending:
            self.entities.extend(self.pending)
            self.pending = []
        if not all(e.alive for e in self.entities):
            self.entities = [e for e in self.entities if e.alive]

    def step(self, dt):
        self.frame_no += 1
        self.time += dt
        self.planner.begin_frame()
        self.player_field.update(self.player.x, self.player.y)
        self.update_entities(dt)
        contacts = self.physics.update(dt, self.entities)
        self.resolve_contacts(contacts)
        self.particles.update(dt)
        self.director.update(dt, self)
        self.flush()
        self.renderer.render(self, dt)

    def load_chunk(self):
        chunk = world.generate_chunk(self.noise, self.chunks_loaded)
        self.chunks_loaded += 1
        for biome, n in chunk.biome_histogram().items():
            self.chunk_biomes[biome] = self.chunk_biomes.get(biome, 0) + n
        return chunk

    def summary(self):
        counts = self.class_counts()
        return ("frame=%d t=%.2fs entities=%d (%s) particles=%d score=%d kills=%d "
                "deaths=%d pickups=%d paths=%d path_fail=%d chunks=%d player=(%.2f,%.2f)" % (
                    self.frame_no, self.time, len(self.entities),
                    ",".join("%s:%d" % (k, counts[k]) for k in sorted(counts)),
                    len(self.particles), self.score, self.kills, self.deaths,
                    self.pickups_taken, self.stats["paths"], self.stats["path_fail"],
                    self.chunks_loaded, self.player.x, self.player.y))


# -- host API ------------------------------------------------------------------

def init(seed: int = 1) -> None:
    """Build the world. Deterministic for a given seed."""
    global _game
    _game = Game(int(seed))


def load_level_chunk() -> "world.Chunk":
    """Deliberate hitch: generate a procedural terrain chunk (~30-50 ms of CPU)."""
    if _game is None:
        return world.generate_chunk(world.ValueNoise(0), 0)
    return _game.load_chunk()


def frame(dt: float) -> None:
    """Advance one fixed-timestep frame."""
    if _game is None:
        init()
    _game.step(dt)
    if _game.frame_no in hitch_frames:
        load_level_chunk()


def summary() -> str:
    if _game is None:
        return "not initialised"
    return _game.summary()
