"""Particles: a fixed-size particle pool, emitters, and lots of small per-particle calls."""

import math


class Particle:
    __slots__ = ("x", "y", "vx", "vy", "life", "max_life", "size", "color", "base_color", "gravity")

    def __init__(self):
        self.x = 0.0
        self.y = 0.0
        self.vx = 0.0
        self.vy = 0.0
        self.life = 0.0
        self.max_life = 1.0
        self.size = 1.0
        self.color = (255, 255, 255)
        self.base_color = (255, 255, 255)
        self.gravity = 0.0


class ParticlePool:
    def __init__(self, capacity):
        self.capacity = capacity
        self.free = [Particle() for _ in range(capacity)]
        self.active = []
        self.dropped = 0
        self.spawned = 0

    def acquire(self):
        if not self.free:
            self.dropped += 1
            return None
        p = self.free.pop()
        self.active.append(p)
        self.spawned += 1
        return p

    def collect(self):
        """Return dead particles to the free list (keeps active order stable)."""
        alive = []
        free = self.free
        for p in self.active:
            if p.life > 0.0:
                alive.append(p)
            else:
                free.append(p)
        self.active = alive

    def __len__(self):
        return len(self.active)


def lerp_color(a, b, t):
    return (int(a[0] + (b[0] - a[0]) * t),
            int(a[1] + (b[1] - a[1]) * t),
            int(a[2] + (b[2] - a[2]) * t))


FADE_TO = (20, 20, 30)


def init_particle(p, x, y, angle, speed, life, color, size, gravity):
    p.x = x
    p.y = y
    p.vx = math.cos(angle) * speed
    p.vy = math.sin(angle) * speed
    p.life = life
    p.max_life = life
    p.color = color
    p.base_color = color
    p.size = size
    p.gravity = gravity


def integrate_particle(p, dt):
    p.vy += p.gravity * dt
    p.x += p.vx * dt
    p.y += p.vy * dt
    p.life -= dt


def apply_drag(p, k, dt):
    f = 1.0 - k * dt
    p.vx *= f
    p.vy *= f


def fade_particle(p):
    t = 1.0 - p.life / p.max_life
    p.color = lerp_color(p.base_color, FADE_TO, t)
    p.size = max(0.1, p.size * 0.99)


class Emitter:
    """Continuous emitter, optionally following an entity, optionally time-limited."""

    def __init__(self, x, y, rate, speed, life, color, spread=math.pi * 2.0,
                 direction=0.0, duration=None, follow=None, gravity=0.0, size=1.0):
        self.x = x
        self.y = y
        self.rate = rate
        self.speed = speed
        self.life = life
        self.color = color
        self.spread = spread
        self.direction = direction
        self.duration = duration
        self.follow = follow
        self.gravity = gravity
        self.size = size
        self.accum = 0.0
        self.alive = True

    def track(self):
        f = self.follow
        if f is not None:
            if not f.alive:
                self.alive = False
                return
            self.x = f.x
            self.y = f.y

    def update(self, dt, system):
        self.track()
        if not self.alive:
            return
        if self.duration is not None:
            self.duration -= dt
            if self.duration <= 0.0:
                self.alive = False
                return
        self.accum += self.rate * dt
        n = int(self.accum)
        if n:
            self.accum -= n
            system.emit(self, n)


class ParticleSystem:
    def __init__(self, capacity, rng, drag=1.5):
        self.pool = ParticlePool(capacity)
        self.rng = rng
        self.drag = drag
        self.emitters = []

    def add_emitter(self, emitter):
        self.emitters.append(emitter)
        return emitter

    def emit(self, emitter, count):
        rng = self.rng
        for _ in range(count):
            p = self.pool.acquire()
            if p is None:
                return
            angle = emitter.direction + (rng.random() - 0.5) * emitter.spread
            speed = emitter.speed * (0.5 + rng.random())
            init_particle(p, emitter.x, emitter.y, angle, speed,
                          emitter.life * (0.7 + 0.6 * rng.random()),
                          emitter.color, emitter.size, emitter.gravity)

    def burst(self, x, y, count, speed, life, color, gravity=0.0):
        rng = self.rng
        for i in range(count):
            p = self.pool.acquire()
            if p is None:
                return
            angle = (i / count) * math.pi * 2.0 + rng.random() * 0.3
            init_particle(p, x, y, angle, speed * (0.6 + 0.8 * rng.random()),
                          life * (0.8 + 0.4 * rng.random()), color, 1.5, gravity)

    def update(self, dt):
        for e in self.emitters:
            e.update(dt, self)
        if any(not e.alive for e in self.emitters):
            self.emitters = [e for e in self.emitters if e.alive]
        drag = self.drag
        for p in self.pool.active:
            integrate_particle(p, dt)
            apply_drag(p, drag, dt)
            if p.life > 0.0:
                fade_particle(p)
        self.pool.collect()

    def iter_visible(self, x0, y0, x1, y1):
        for p in self.pool.active:
            if x0 <= p.x <= x1 and y0 <= p.y <= y1:
                yield p

    def __len__(self):
        return len(self.pool.active)
