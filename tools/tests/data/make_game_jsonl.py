#!/usr/bin/python3
"""Write game.jsonl: one minute of a simulated game, 1 s delta records.

Deterministic; the checked-in game.jsonl is this script's output (the
report/convert tests check that).  Run:
    /usr/bin/python3 tools/tests/data/make_game_jsonl.py > tools/tests/data/game.jsonl

The numbers come from a call tree per second (below); every time is a
whole number of units U = 1/1024 s, so all sums are exact in binary
floating point.  Function stats and caller edges are derived from the tree
the way cProfile does: ncalls counts every call, primitive calls exclude
calls made while the function was already active, cumtime counts only
primitive calls, an edge carries the callee's calls/time from that caller.

Timeline (60 records, record i covers [B+i s, B+(i+1) s], B = 1795617000 s
= 2026-11-25T14:30:00Z, pid 4242, host "gamebox"):
  seconds 0-4   loading: load_level -> load_texture -> io.open, 20 fps
  seconds 5-59  60 fps: frame -> update -> step -> collide -> len,
                update -> find_path (recursive) -> evaluate, render -> draw
                -> draw_sprite -> list.append, poll
  seconds 30-39 AI burst: find_path/evaluate ten times busier
  second 45     gc.collect called from frame (also a "spike" record)
"""

import json
import sys

B = 1795617000 * 10**9
S = 10**9
U = 1.0 / 1024

GAME = "/srv/game/game.py"
FRAME = (GAME, 10, "frame")
UPDATE = (GAME, 30, "update")
RENDER = (GAME, 50, "render")
LOAD = (GAME, 80, "load_level")
STEP = ("/srv/game/physics.py", 15, "step")
COLLIDE = ("/srv/game/physics.py", 60, "collide")
FIND = ("/srv/game/ai.py", 42, "find_path")
EVAL = ("/srv/game/ai.py", 90, "evaluate")
DRAW = ("/srv/game/render.py", 7, "draw")
SPRITE = ("/srv/game/render.py", 30, "draw_sprite")
TEXTURE = ("/srv/game/assets.py", 12, "load_texture")
POLL = ("/srv/game/net.py", 25, "poll")
LEN = ("~", 0, "<built-in method builtins.len>")
APPEND = ("~", 0, "<method 'append' of 'list' objects>")
OPEN = ("~", 0, "<built-in method io.open>")
GC = ("~", 0, "<built-in method gc.collect>")


def key(func):
    return "%s:%d(%s)" % func


class Node:
    """calls of ``func`` at one place in the call tree; self time in U."""

    def __init__(self, func, calls, self_u, children=()):
        self.func, self.calls, self.self_u = func, calls, self_u
        self.children = [c for c in children if c.calls]

    def incl_u(self):
        return self.self_u + sum(c.incl_u() for c in self.children)


def tree(sec):
    """Root nodes for second ``sec``."""
    loading = sec < 5
    burst = 30 <= sec < 40
    fps = 20 if loading else 60
    h = 1 if loading else 2  # loading frames do half the work
    sprite_u = (60 + 4 * (sec % 5)) * h
    collide_u = (50 + 2 * ((sec * 7) % 11)) * h
    k = 10 if burst else 1
    find = Node(FIND, 2 * k, 8 * k, [
        Node(FIND, 6 * k, 8 * k, [
            Node(EVAL, 24 * k, 10 * k, [Node(LEN, 48 * k, 2 * k)])]),
        Node(EVAL, 8 * k, 4 * k),
        Node(APPEND, 8 * k, 1 * k)])
    frame = Node(FRAME, fps, 8 * h, [
        Node(UPDATE, fps, 20 * h, [
            Node(STEP, fps, 30 * h, [
                Node(COLLIDE, 10 * fps, collide_u, [Node(LEN, 20 * fps, 4 * h)])]),
            find if not loading else Node(FIND, 0, 0)]),
        Node(RENDER, fps, 8 * h, [
            Node(DRAW, fps, 24 * h, [
                Node(SPRITE, 40 * fps, sprite_u, [Node(APPEND, 40 * fps, 4 * h)])])]),
        Node(POLL, fps, 2 * h),
        Node(GC, 1 if sec == 45 else 0, 200)])
    roots = [frame]
    if loading:
        roots.append(Node(LOAD, 2, 32, [
            Node(TEXTURE, 20, 128, [Node(OPEN, 20, 64)])]))
    return roots


def stats(roots):
    """funcs: func -> [nc, pc, tt_u, ct_u]; edges: (caller, callee) -> same."""
    funcs, edges = {}, {}

    def walk(node, parent, active_funcs, active_edges):
        f = funcs.setdefault(node.func, [0, 0, 0, 0])
        prim = node.func not in active_funcs
        incl = node.incl_u()
        f[0] += node.calls
        f[2] += node.self_u
        if prim:
            f[1] += node.calls
            f[3] += incl
        if parent is not None:
            edge = (parent.func, node.func)
            e = edges.setdefault(edge, [0, 0, 0, 0])
            e[0] += node.calls
            e[2] += node.self_u
            if edge not in active_edges:
                e[1] += node.calls
                e[3] += incl
            active_edges = active_edges | {edge}
        for c in node.children:
            walk(c, node, active_funcs | {node.func}, active_edges)

    for r in roots:
        walk(r, None, frozenset(), frozenset())
    return funcs, edges


def record(sec):
    funcs, edges = stats(tree(sec))
    fps = {}
    for func, (nc, pc, tt, ct) in funcs.items():
        callers = {}
        for (caller, callee), (enc, epc, ett, ect) in edges.items():
            if callee == func:
                callers[key(caller)] = {"ncalls": enc, "primitive_calls": epc,
                                        "tottime": ett * U, "cumtime": ect * U}
        fps[key(func)] = {
            "ncalls": str(nc) if nc == pc else "%d/%d" % (nc, pc),
            "tottime": tt * U, "percall_tottime": tt * U / nc,
            "cumtime": ct * U, "percall_cumtime": ct * U / pc,
            "file_name": func[0], "line_number": func[1],
            "function_name": func[2], "primitive_calls": pc,
            "callers": callers}
    end = B + (sec + 1) * S
    return {
        "ts": "2026-11-25T14:%02d:%02d.000000Z" % (30 + (sec + 1) // 60,
                                                   (sec + 1) % 60),
        "ts_ns": end, "start_ns": end - S, "interval_s": 1.0, "seq": sec,
        "pid": 4242, "host": "gamebox", "kind": "delta", "dropped": 0,
        "sink_errors": 0, "overflow_functions": 0,
        "total_tt": sum(v[2] for v in funcs.values()) * U,
        "func_profiles": fps}


def main(out=sys.stdout):
    for sec in range(60):
        rec = record(sec)
        out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        if sec == 45:
            spike = dict(rec, kind="spike", frame=2700, frame_time_s=0.25,
                         seq=1000)
            spike["func_profiles"] = {key(GC): rec["func_profiles"][key(GC)]}
            spike["total_tt"] = rec["func_profiles"][key(GC)]["tottime"]
            out.write(json.dumps(spike, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
