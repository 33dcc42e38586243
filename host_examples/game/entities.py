"""Entities: a small class hierarchy, each subclass with its own `update` method."""

import math

import ai
import particles

COLOR_PLAYER = (80, 200, 255)
COLOR_ENEMY = (230, 60, 60)
COLOR_SPARK = (255, 220, 120)
COLOR_SMOKE = (120, 120, 120)
COLOR_PICKUP = (120, 255, 120)


def clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def normalize(dx, dy):
    d = math.sqrt(dx * dx + dy * dy)
    if d < 1e-9:
        return 0.0, 0.0, 0.0
    return dx / d, dy / d, d


class Entity:
    kind = "entity"
    glyph = "?"
    layer = 1
    solid = True
    static = False
    mass = 1.0

    def __init__(self, eid, x, y, radius=0.4):
        self.id = eid
        self.x = x
        self.y = y
        self.vx = 0.0
        self.vy = 0.0
        self.radius = radius
        self.alive = True
        self.hp = 1
        self.max_speed = 4.0
        self.friction = 4.0
        self.age = 0.0

    def __repr__(self):
        return "<%s #%d at %.1f,%.1f>" % (self.kind, self.id, self.x, self.y)

    def aabb(self):
        r = self.radius
        return (self.x - r, self.y - r, self.x + r, self.y + r)

    def distance_sq_to(self, other):
        dx = other.x - self.x
        dy = other.y - self.y
        return dx * dx + dy * dy

    def steer_towards(self, tx, ty, speed, blend, dt):
        nx, ny, _ = normalize(tx - self.x, ty - self.y)
        k = min(1.0, blend * dt)
        self.vx += (nx * speed - self.vx) * k
        self.vy += (ny * speed - self.vy) * k

    def take_damage(self, amount, game):
        if not self.alive:
            return
        self.hp -= amount
        if self.hp <= 0:
            self.die(game)

    def die(self, game):
        self.alive = False
        game.on_entity_died(self)

    def update(self, dt, game):
        self.age += dt


class Player(Entity):
    kind = "player"
    glyph = "@"
    layer = 3
    mass = 2.0

    def __init__(self, eid, x, y):
        super().__init__(eid, x, y, radius=0.35)
        self.hp = 100
        self.max_speed = 5.0
        self.fire_cooldown = 0.0
        self.invulnerable = 0.0
        self.agent = ai.PathAgent(self, replan_interval=45, phase=0, max_expansions=600)
        self.goal_id = None
        self.shots = 0

    def choose_goal(self, game):
        pickups = game.entities_of_kind("pickup")
        if not pickups:
            return None
        return min(pickups, key=lambda p: (self.distance_sq_to(p), p.id))

    def nearest_enemy(self, game, max_range=9.0):
        best = None
        best_d = max_range * max_range
        for e in game.enemies():
            d = self.distance_sq_to(e)
            if d < best_d:
                best = e
                best_d = d
        return best

    def fire_at(self, target, game):
        nx, ny, _ = normalize(target.x - self.x, target.y - self.y)
        game.spawn(Projectile(game.new_id(), self.x + nx * 0.5, self.y + ny * 0.5,
                              nx * 12.0, ny * 12.0, owner_kind="player", damage=1))
        self.fire_cooldown = 0.18
        self.shots += 1

    def update(self, dt, game):
        Entity.update(self, dt, game)
        self.fire_cooldown -= dt
        self.invulnerable = max(0.0, self.invulnerable - dt)
        goal = self.choose_goal(game)
        if goal is not None:
            if goal.id != self.goal_id:
                self.goal_id = goal.id
                self.agent.counter = self.agent.replan_interval  # force replan
            wp = self.agent.update(dt, game.planner, goal.x, goal.y)
            if wp is not None:
                self.steer_towards(wp[0], wp[1], self.max_speed, 8.0, dt)
        threats = [e for e in game.enemies() if self.distance_sq_to(e) < 4.0]
        if threats:
            fx, fy = ai.flee_direction(self.x, self.y, threats)
            self.vx += fx * 6.0 * dt
            self.vy += fy * 6.0 * dt
        if self.fire_cooldown <= 0.0:
            target = self.nearest_enemy(game)
            if target is not None and game.tilemap.line_of_sight(self.x, self.y, target.x, target.y):
                self.fire_at(target, game)


class Enemy(Entity):
    kind = "enemy"
    glyph = "e"
    layer = 2
    score_value = 10
    contact_damage = 5

    def __init__(self, eid, x, y, radius=0.4, hp=3):
        super().__init__(eid, x, y, radius)
        self.hp = hp
        self.flash = 0.0

    def take_damage(self, amount, game):
        self.flash = 0.1
        Entity.take_damage(self, amount, game)

    def update(self, dt, game):
        Entity.update(self, dt, game)
        if self.flash > 0.0:
            self.flash -= dt


class Chaser(Enemy):
    glyph = "c"

    def __init__(self, eid, x, y):
        super().__init__(eid, x, y, radius=0.4, hp=3)
        self.max_speed = 3.2
        self.agent = ai.PathAgent(self, replan_interval=40, phase=eid * 7, max_expansions=350)
        self.dust = None

    def kick_dust(self, game):
        if self.dust is None:
            self.dust = game.particles.add_emitter(particles.Emitter(
                self.x, self.y, rate=8.0, speed=0.4, life=0.6, color=COLOR_SMOKE,
                follow=self, size=0.5))
        speed2 = self.vx * self.vx + self.vy * self.vy
        self.dust.rate = 2.0 + min(12.0, speed2 * 1.2)

    def update(self, dt, game):
        Enemy.update(self, dt, game)
        self.kick_dust(game)
        player = game.player
        if self.distance_sq_to(player) < 2.25 and game.tilemap.line_of_sight(
                self.x, self.y, player.x, player.y):
            self.steer_towards(player.x, player.y, self.max_speed, 6.0, dt)
            return
        wp = self.agent.update(dt, game.planner, player.x, player.y)
        if wp is not None:
            self.steer_towards(wp[0], wp[1], self.max_speed, 5.0, dt)
        else:
            # no plan (search failed): shamble straight at the player
            self.steer_towards(player.x, player.y, self.max_speed * 0.4, 2.0, dt)


class Wanderer(Enemy):
    glyph = "w"
    score_value = 5

    def __init__(self, eid, x, y, heading):
        super().__init__(eid, x, y, radius=0.35, hp=2)
        self.max_speed = 2.5
        self.heading = heading
        self.turn_timer = 0.0

    def pick_heading(self, game):
        self.heading += (game.rng.random() - 0.5) * 2.5
        self.turn_timer = 0.5 + game.rng.random() * 1.5

    def blocked_ahead(self, game):
        ax = self.x + math.cos(self.heading) * 0.8
        ay = self.y + math.sin(self.heading) * 0.8
        return game.tilemap.is_blocked_at(ax, ay)

    def update(self, dt, game):
        Enemy.update(self, dt, game)
        self.turn_timer -= dt
        if self.turn_timer <= 0.0:
            self.pick_heading(game)
        if self.age > 0.5:
            hunt = game.player_field.downhill(self.x, self.y)
            if hunt is not None:
                # close to the player: follow the distance field downhill
                self.heading = math.atan2(hunt[1] - self.y, hunt[0] - self.x)
        if self.blocked_ahead(game):
            self.heading += math.pi * 0.5 + game.rng.random()
        fx, fy = self.flock(game)
        tx = self.x + math.cos(self.heading) + fx
        ty = self.y + math.sin(self.heading) + fy
        self.steer_towards(tx, ty, self.max_speed, 3.0, dt)

    def flock(self, game, radius=3.0):
        """Boids-style separation + cohesion with nearby wanderers."""
        mates = [o for o in game.physics.neighbours_of(self, radius)
                 if isinstance(o, Wanderer)]
        if not mates:
            return 0.0, 0.0
        cx = sum(o.x for o in mates) / len(mates)
        cy = sum(o.y for o in mates) / len(mates)
        sx = 0.0
        sy = 0.0
        for o in mates:
            nx, ny, d = normalize(self.x - o.x, self.y - o.y)
            if d < 1.2:
                sx += nx * (1.2 - d)
                sy += ny * (1.2 - d)
        return (cx - self.x) * 0.15 + sx * 1.5, (cy - self.y) * 0.15 + sy * 1.5


class Scout(Enemy):
    """Patrols between random map points; targets that turn out to be walls or
    out of search range make the path-finder raise PathNotFound (caught in
    ai.PathAgent.replan), after which the scout picks another point."""

    glyph = "s"
    score_value = 15

    def __init__(self, eid, x, y):
        super().__init__(eid, x, y, radius=0.3, hp=2)
        self.max_speed = 3.8
        self.agent = ai.PathAgent(self, replan_interval=90, phase=eid * 3, max_expansions=300)
        self.target = None
        self.seen_failures = 0

    def pick_target(self, game):
        tm = game.tilemap
        self.target = (game.rng.randrange(1, tm.width - 1) + 0.5,
                       game.rng.randrange(1, tm.height - 1) + 0.5)
        self.agent.counter = self.agent.replan_interval  # force a replan next update

    def update(self, dt, game):
        Enemy.update(self, dt, game)
        if self.target is None or self.agent.failures != self.seen_failures:
            self.seen_failures = self.agent.failures
            self.pick_target(game)
        tx, ty = self.target
        wp = self.agent.update(dt, game.planner, tx, ty)
        if wp is None:
            if self.agent.path and (tx - self.x) ** 2 + (ty - self.y) ** 2 < 1.0:
                self.pick_target(game)
            return
        self.steer_towards(wp[0], wp[1], self.max_speed, 5.0, dt)


class Turret(Enemy):
    glyph = "T"
    score_value = 25
    mass = 1000.0
    static = True
    contact_damage = 0

    def __init__(self, eid, x, y):
        super().__init__(eid, x, y, radius=0.45, hp=6)
        self.cooldown = 1.0 + (eid % 5) * 0.2
        self.range = 8.0
        self.smoke = None

    def update(self, dt, game):
        Enemy.update(self, dt, game)
        self.vx = 0.0
        self.vy = 0.0
        if self.smoke is None:
            self.smoke = game.particles.add_emitter(particles.Emitter(
                self.x, self.y, rate=10.0, speed=0.6, life=0.9, color=COLOR_SMOKE,
                direction=-math.pi / 2, spread=0.8, follow=self, gravity=-0.5))
        self.cooldown -= dt
        if self.cooldown > 0.0:
            return
        player = game.player
        if self.distance_sq_to(player) < self.range * self.range and \
                game.tilemap.line_of_sight(self.x, self.y, player.x, player.y):
            nx, ny, _ = normalize(player.x - self.x, player.y - self.y)
            game.spawn(Projectile(game.new_id(), self.x + nx * 0.6, self.y + ny * 0.6,
                                  nx * 7.0, ny * 7.0, owner_kind="enemy", damage=8))
            self.cooldown = 1.5
        else:
            self.cooldown = 0.3


class Projectile(Entity):
    kind = "projectile"
    glyph = "*"
    layer = 4
    mass = 0.1

    def __init__(self, eid, x, y, vx, vy, owner_kind, damage):
        super().__init__(eid, x, y, radius=0.15)
        self.vx = vx
        self.vy = vy
        self.owner_kind = owner_kind
        self.damage = damage
        self.ttl = 1.5
        self.friction = 0.0
        self.max_speed = 20.0
        self.trail = None

    def hit_wall(self, game):
        self.alive = False
        game.particles.burst(self.x, self.y, 6, 2.5, 0.3, COLOR_SPARK)

    def update(self, dt, game):
        Entity.update(self, dt, game)
        if self.trail is None:
            color = COLOR_SPARK if self.owner_kind == "player" else COLOR_ENEMY
            self.trail = game.particles.add_emitter(particles.Emitter(
                self.x, self.y, rate=40.0, speed=0.5, life=0.3, color=color,
                follow=self, size=0.6))
        self.ttl -= dt
        if self.ttl <= 0.0:
            self.alive = False
        elif game.tilemap.is_blocked_at(self.x + self.vx * dt, self.y + self.vy * dt):
            self.hit_wall(game)


class Pickup(Entity):
    kind = "pickup"
    glyph = "$"
    layer = 0
    solid = False
    static = True

    def __init__(self, eid, x, y, value):
        super().__init__(eid, x, y, radius=0.3)
        self.value = value
        self.base_y = y
        self.phase = (eid % 11) * 0.57

    def update(self, dt, game):
        Entity.update(self, dt, game)
        self.y = self.base_y + math.sin(self.age * 4.0 + self.phase) * 0.05
