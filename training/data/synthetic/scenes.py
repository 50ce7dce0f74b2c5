"""Random scenes of the synthetic renders: rooms (furniture, clutter, wall panels), corridors and
yards with buildings, a few moving objects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from vdepth_training.data.synthetic.materials import (
    IMAGE_TEXTURES,
    STYLES,
    Material,
    Style,
    random_hsv,
    random_material,
)
from vdepth_training.data.synthetic.meshes import box_mesh, cylinder_mesh, quad_mesh, sphere_mesh

SceneKind = Literal["room", "corridor", "yard"]


@dataclass
class SceneObject:
    """A triangle mesh with a material, optionally moving with constant velocity and spin.

    Attributes:
        vertices: (V, 3) float32 world coordinates at time 0.
        faces: (F, 3) int triangle indices.
        material: its `Material`.
        kind: "mesh", "sphere" (smooth normal from `center`, `radius`) or "cylinder"
            (smooth side normal around the vertical axis through `center`).
        center: reference point (sphere centre, cylinder axis point, spin pivot).
        radius: sphere/cylinder radius.
        velocity: (3,) metres per frame; zero for static objects.
        spin: radians per frame about the vertical axis through `center`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    material: Material
    kind: Literal["mesh", "sphere", "cylinder"] = "mesh"
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spin: float = 0.0

    @property
    def dynamic(self) -> bool:
        return bool(np.any(np.asarray(self.velocity) != 0) or self.spin != 0)

    def at(self, frame: float) -> tuple[np.ndarray, np.ndarray]:
        """Triangles `(F, 3, 3)` float32 and the object's centre at time `frame`."""
        c = np.asarray(self.center, np.float64)
        v = self.vertices.astype(np.float64)
        if self.spin:
            a = self.spin * frame
            rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            v = (v - c) @ rot.T + c
        shift = np.asarray(self.velocity, np.float64) * frame
        return (v + shift)[self.faces].astype(np.float32), c + shift


@dataclass
class Scene:
    """Objects, lights and sky of one clip.

    Attributes:
        objects: the meshes; object i is geometry i of the Embree scene.
        ambient: ambient light level.
        sun_dir: unit vector towards the directional light; `sun` its intensity.
        lamp_pos: point light position; `lamp` its intensity (inverse-square, shadowed).
        sky_top, sky_bottom: sky colours for rays that hit nothing.
        bounds: (min xyz, max xyz) box the camera must stay inside.
        obstacles: (N, 2, 3) axis-aligned boxes the camera must stay out of.
        kind: which generator built it; `style` the name of its `Style`.
        targets: (N, 3) base points of furniture and clutter a camera may aim at.
    """

    objects: list[SceneObject]
    ambient: float = 0.3
    sun_dir: tuple[float, float, float] = (0.3, 0.2, 0.93)
    sun: float = 0.4
    lamp_pos: tuple[float, float, float] = (0.0, 0.0, 2.5)
    lamp: float = 3.0
    sky_top: tuple[float, float, float] = (0.45, 0.6, 0.9)
    sky_bottom: tuple[float, float, float] = (0.85, 0.85, 0.9)
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]] = ((-1, -1, 0.5), (1, 1, 2.0))
    obstacles: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))
    kind: str = "room"
    style: str = "basic"
    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


def _clutter(
    rng: np.random.Generator, objs: list[SceneObject], top: Sequence[float], spread: float, style: Style
) -> None:
    """A few small boxes, cans and balls standing on a surface at height `top[2]`."""
    for _ in range(int(rng.integers(*style.clutter))):
        x, y = top[0] + rng.uniform(-spread, spread), top[1] + rng.uniform(-spread, spread)
        mat = random_material(rng, style.textures, style=style)
        k = rng.uniform()
        if k < 0.4:
            s = rng.uniform(0.04, 0.2, 3)
            v, f = box_mesh(
                (x - s[0], y - s[1], top[2]), (x + s[0], y + s[1], top[2] + 2 * s[2]), rng.uniform(0, np.pi)
            )
            objs.append(SceneObject(v, f, mat, center=(x, y, top[2])))
        elif k < 0.75:
            r, h = rng.uniform(0.03, 0.12), rng.uniform(0.08, 0.4)
            v, f = cylinder_mesh((x, y, top[2]), r, h, sections=20)
            objs.append(SceneObject(v, f, mat, kind="cylinder", center=(x, y, top[2]), radius=r))
        else:
            r = rng.uniform(0.04, 0.15)
            v, f = sphere_mesh((x, y, top[2] + r), r, subdivisions=2)
            objs.append(SceneObject(v, f, mat, kind="sphere", center=(x, y, top[2] + r), radius=r))


def _chair(
    rng: np.random.Generator, objs: list[SceneObject], cx: float, cy: float, floor: float, mat: Material
) -> float:
    """Seat, four legs and a backrest; returns the seat's half-size (for the obstacle box)."""
    s, h, t = rng.uniform(0.2, 0.28), rng.uniform(0.42, 0.5), rng.uniform(0.03, 0.06)
    yaw, leg = rng.uniform(0, 2 * np.pi), rng.uniform(0.015, 0.03)
    c, sn = math.cos(yaw), math.sin(yaw)

    def at(lx: float, ly: float) -> tuple[float, float]:
        return cx + c * lx - sn * ly, cy + sn * lx + c * ly

    v, f = box_mesh((cx - s, cy - s, floor + h - t), (cx + s, cy + s, floor + h), yaw)
    objs.append(SceneObject(v, f, mat, center=(cx, cy, floor)))
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        px, py = at(dx * (s - leg), dy * (s - leg))
        v, f = box_mesh((px - leg, py - leg, floor), (px + leg, py + leg, floor + h - t), yaw)
        objs.append(SceneObject(v, f, mat, center=(px, py, floor)))
    bx, by = at(-s + t / 2, 0.0)
    back = rng.uniform(0.35, 0.5)
    v, f = box_mesh((bx - t / 2, by - s, floor + h), (bx + t / 2, by + s, floor + h + back), yaw)
    objs.append(SceneObject(v, f, mat, center=(bx, by, floor)))
    return s


def _add_furniture(
    rng: np.random.Generator,
    objs: list[SceneObject],
    obstacles: list,
    lo: Sequence[float],
    hi: Sequence[float],
    n: int,
    style: Style,
) -> None:
    """Boxes, tables, shelves, cylinders, spheres (and, in "rich", chairs) on the floor of the box `lo`..`hi`."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    floor = lo[2]
    for _ in range(n):
        kind = rng.choice(list(style.furniture_kinds))
        sx, sy = rng.uniform(0.3, 1.6, 2)
        sx, sy = min(sx, hi[0] - lo[0] - 0.01), min(sy, hi[1] - lo[1] - 0.01)  # narrow corridors
        cx, cy = rng.uniform(lo[0] + sx / 2, hi[0] - sx / 2), rng.uniform(lo[1] + sy / 2, hi[1] - sy / 2)
        mat = random_material(rng, style.textures, style=style)
        if kind == "box":
            h = rng.uniform(0.3, 1.8)
            v, f = box_mesh(
                (cx - sx / 2, cy - sy / 2, floor), (cx + sx / 2, cy + sy / 2, floor + h), rng.uniform(0, np.pi)
            )
            objs.append(SceneObject(v, f, mat, center=(cx, cy, floor)))
            r = max(sx, sy) * 0.71
            obstacles.append(((cx - r, cy - r, floor), (cx + r, cy + r, floor + h)))
            if rng.uniform() < 0.4:  # something on top
                s = rng.uniform(0.1, 0.3)
                v, f = sphere_mesh((cx, cy, floor + h + s), s)
                objs.append(
                    SceneObject(
                        v,
                        f,
                        random_material(rng, style.textures, style=style),
                        kind="sphere",
                        center=(cx, cy, floor + h + s),
                        radius=s,
                    )
                )
        elif kind == "table":
            h, t = rng.uniform(0.45, 1.0), rng.uniform(0.03, 0.08)
            yaw = rng.uniform(0, np.pi)
            v, f = box_mesh((cx - sx / 2, cy - sy / 2, floor + h - t), (cx + sx / 2, cy + sy / 2, floor + h), yaw)
            objs.append(SceneObject(v, f, mat, center=(cx, cy, floor)))
            leg = rng.uniform(0.03, 0.07)
            c, s = math.cos(yaw), math.sin(yaw)
            for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                lx, ly = dx * (sx / 2 - leg), dy * (sy / 2 - leg)
                px, py = cx + c * lx - s * ly, cy + s * lx + c * ly
                v, f = box_mesh((px - leg, py - leg, floor), (px + leg, py + leg, floor + h - t), yaw)
                objs.append(SceneObject(v, f, mat, center=(px, py, floor)))
            r = max(sx, sy) * 0.71
            obstacles.append(((cx - r, cy - r, floor), (cx + r, cy + r, floor + h)))
            _clutter(rng, objs, (cx, cy, floor + h), min(sx, sy) * 0.35, style)
        elif kind == "shelf":  # tall cabinet against a wall
            h, d = rng.uniform(1.0, 2.2), rng.uniform(0.3, 0.6)
            wall = int(rng.integers(4))
            if wall < 2:
                x0 = lo[0] if wall == 0 else hi[0] - d
                a, b = (x0, cy - sy / 2, floor), (x0 + d, cy + sy / 2, floor + h)
            else:
                y0 = lo[1] if wall == 2 else hi[1] - d
                a, b = (cx - sx / 2, y0, floor), (cx + sx / 2, y0 + d, floor + h)
            v, f = box_mesh(a, b)
            objs.append(SceneObject(v, f, mat, center=tuple(np.add(a, b) / 2)))
            obstacles.append((a, b))
            if h < 1.3:  # a counter: clutter on top
                top = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, floor + h)
                _clutter(rng, objs, top, min(b[0] - a[0], b[1] - a[1]) * 0.35, style)
        elif kind == "cylinder":
            r, h = rng.uniform(0.08, 0.5), rng.uniform(0.3, 2.5)
            v, f = cylinder_mesh((cx, cy, floor), r, h)
            objs.append(SceneObject(v, f, mat, kind="cylinder", center=(cx, cy, floor), radius=r))
            obstacles.append(((cx - r, cy - r, floor), (cx + r, cy + r, floor + h)))
        elif kind == "chair":
            r = _chair(rng, objs, cx, cy, floor, mat) * 1.5
            obstacles.append(((cx - r, cy - r, floor), (cx + r, cy + r, floor + 1.0)))
        else:
            r = rng.uniform(0.15, 0.6)
            v, f = sphere_mesh((cx, cy, floor + r), r)
            objs.append(SceneObject(v, f, mat, kind="sphere", center=(cx, cy, floor + r), radius=r))
            obstacles.append(((cx - r, cy - r, floor), (cx + r, cy + r, floor + 2 * r)))


def _add_movers(
    rng: np.random.Generator, objs: list[SceneObject], lo: Sequence[float], hi: Sequence[float], n: int, style: Style
) -> None:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    for _ in range(n):
        speed = rng.uniform(0.005, 0.03)
        ang = rng.uniform(0, 2 * np.pi)
        vel = (speed * math.cos(ang), speed * math.sin(ang), 0.0)
        cx, cy = rng.uniform(lo[0] + 0.5, hi[0] - 0.5), rng.uniform(lo[1] + 0.5, hi[1] - 0.5)
        mat = random_material(rng, style.textures, style=style)
        if rng.uniform() < 0.5:
            r = rng.uniform(0.15, 0.4)
            z = lo[2] + rng.uniform(r, 1.5)
            v, f = sphere_mesh((cx, cy, z), r)
            objs.append(SceneObject(v, f, mat, kind="sphere", center=(cx, cy, z), radius=r, velocity=vel))
        else:
            s = rng.uniform(0.2, 0.6, 3)
            v, f = box_mesh((cx - s[0], cy - s[1], lo[2]), (cx + s[0], cy + s[1], lo[2] + 2 * s[2]))
            objs.append(
                SceneObject(v, f, mat, center=(cx, cy, lo[2]), velocity=vel, spin=float(rng.uniform(-0.03, 0.03)))
            )


def _room_shell(
    rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float], objs: list[SceneObject], style: Style
) -> None:
    """Floor, ceiling and four walls of the box, each with its own material; doors/windows/rugs."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    floor_mat = random_material(rng, style.floor_textures, (0.2, 1.2), style)
    wall_tex = style.wall_textures
    shared_wall = random_material(rng, wall_tex, (0.1, 1.5), style)
    quads = [
        ((x0, y0, z0), (x1 - x0, 0, 0), (0, y1 - y0, 0), floor_mat),
        (
            (x0, y0, z1),
            (0, y1 - y0, 0),
            (x1 - x0, 0, 0),
            random_material(rng, style.ceiling_textures, (0.3, 1.5), style),
        ),
    ]
    for o, u in (((x0, y0, z0), (x1 - x0, 0, 0)), ((x1, y0, z0), (0, y1 - y0, 0)),
                 ((x1, y1, z0), (x0 - x1, 0, 0)), ((x0, y1, z0), (0, y0 - y1, 0))):  # fmt: skip
        mat = shared_wall if rng.uniform() < 0.7 else random_material(rng, wall_tex, (0.1, 1.5), style)
        quads.append((o, u, (0, 0, z1 - z0), mat))
    for o, u, v, m in quads:
        verts, faces = quad_mesh(o, u, v)
        objs.append(SceneObject(verts, faces, m))
    # flat panels on walls (doors, windows, pictures) and rugs on the floor
    for _ in range(int(rng.integers(*style.panels))):
        wall = int(rng.integers(4))
        w, h = rng.uniform(0.4, 1.5), rng.uniform(0.4, 2.0)
        zb = z0 + rng.uniform(0.0, max(0.01, (z1 - z0) - h))
        eps = 0.01
        if wall < 2:
            x = x0 + eps if wall == 0 else x1 - eps
            yb = rng.uniform(y0, max(y0 + 0.01, y1 - w))
            verts, faces = quad_mesh((x, yb, zb), (0, w, 0), (0, 0, h))
        else:
            y = y0 + eps if wall == 2 else y1 - eps
            xb = rng.uniform(x0, max(x0 + 0.01, x1 - w))
            verts, faces = quad_mesh((xb, y, zb), (w, 0, 0), (0, 0, h))
        objs.append(SceneObject(verts, faces, random_material(rng, style.textures, style=style)))
    for _ in range(int(rng.integers(0, 3))):
        w, d = rng.uniform(0.8, 3.0, 2)
        xb, yb = rng.uniform(x0, max(x0 + 0.01, x1 - w)), rng.uniform(y0, max(y0 + 0.01, y1 - d))
        verts, faces = quad_mesh((xb, yb, z0 + 0.005), (w, 0, 0), (0, d, 0))
        rug_tex = ("stripes", "checker", "noise", "solid") + IMAGE_TEXTURES * (style.name != "basic")
        objs.append(SceneObject(verts, faces, random_material(rng, rug_tex, style=style)))


def random_scene(rng: np.random.Generator, kind: SceneKind | None = None, style: str = "basic") -> Scene:
    """Sample a scene of style `style` (a key of `STYLES`): a room (most), a corridor, or an open
    yard with buildings and sky."""
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; known: {sorted(STYLES)}")
    st = STYLES[style]
    if kind is None:
        kind = str(rng.choice(["room", "room", "room", "corridor", "yard"]))  # type: ignore[assignment]
    objs: list[SceneObject] = []
    obstacles: list = []
    lamp = (0.0, 0.0, 2.5)
    if kind in ("room", "corridor"):
        if kind == "room":
            sx, sy = rng.uniform(3.0, 8.0), rng.uniform(3.0, 9.0)
        else:
            sx, sy = rng.uniform(1.6, 2.8), rng.uniform(8.0, 20.0)
        sz = rng.uniform(2.3, 3.5)
        lo, hi = (-sx / 2, -sy / 2, 0.0), (sx / 2, sy / 2, sz)
        _room_shell(rng, lo, hi, objs, st)
        n_shell = len(objs)
        n = int(rng.integers(*st.room_furniture)) if kind == "room" else int(rng.integers(2, 8))
        inner = (lo[0] + 0.1, lo[1] + 0.1, 0.0), (hi[0] - 0.1, hi[1] - 0.1, sz)
        _add_furniture(rng, objs, obstacles, *inner, n, st)
        _add_movers(rng, objs, *inner, int(rng.choice([0, 0, 1, 2])), st)
        for _ in range(int(rng.integers(*st.floor_clutter)) if st.floor_clutter[1] > 0 else 0):
            x, y = rng.uniform(inner[0][0] + 0.3, inner[1][0] - 0.3), rng.uniform(inner[0][1] + 0.3, inner[1][1] - 0.3)
            _clutter(rng, objs, (x, y, 0.0), 0.4, st)
        targets = [o.center for o in objs[n_shell:] if not o.dynamic]
        lamp = (rng.uniform(lo[0] * 0.7, hi[0] * 0.7), rng.uniform(lo[1] * 0.7, hi[1] * 0.7), sz - 0.2)
        bounds = ((lo[0] + 0.4, lo[1] + 0.4, 0.9), (hi[0] - 0.4, hi[1] - 0.4, min(sz - 0.3, 1.9)))
        sun = rng.uniform(0.0, 0.4)
        lamp_i = rng.uniform(1.5, 6.0) * (sz / 2.8) ** 2
    else:
        g = 60.0
        verts, faces = quad_mesh((-g, -g, 0.0), (2 * g, 0, 0), (0, 2 * g, 0))
        objs.append(
            SceneObject(verts, faces, random_material(rng, ("tiles", "noise", "checker", "stripes"), (0.3, 2.0), st))
        )
        for _ in range(int(rng.integers(6, 16))):  # buildings around the yard
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(8.0, 35.0)
            cx, cy = dist * math.cos(ang), dist * math.sin(ang)
            w, d, h = rng.uniform(3, 12), rng.uniform(3, 12), rng.uniform(3, 25)
            v, f = box_mesh((cx - w / 2, cy - d / 2, 0), (cx + w / 2, cy + d / 2, h), rng.uniform(0, np.pi))
            objs.append(
                SceneObject(
                    v, f, random_material(rng, ("bricks", "tiles", "stripes", "solid", "noise"), (0.3, 3.0), st)
                )
            )
        _add_furniture(rng, objs, obstacles, (-6, -6, 0), (6, 6, 3), int(rng.integers(4, 12)), st)
        _add_movers(rng, objs, (-5, -5, 0), (5, 5, 3), int(rng.choice([0, 1, 2])), st)
        bounds = ((-4.0, -4.0, 1.0), (4.0, 4.0, 2.0))
        sun, lamp_i = rng.uniform(0.6, 1.0), 0.0
        targets = []
    el, az = rng.uniform(0.3, 1.3), rng.uniform(0, 2 * np.pi)
    sun_dir = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
    return Scene(
        objects=objs,
        ambient=float(rng.uniform(*st.ambient)),
        sun_dir=sun_dir,
        sun=float(sun),
        lamp_pos=tuple(float(x) for x in lamp),  # type: ignore[arg-type]
        lamp=float(lamp_i),
        sky_top=random_hsv(rng, (0.2, 0.6), (0.6, 1.0)),
        sky_bottom=random_hsv(rng, (0.0, 0.2), (0.8, 1.0)),
        bounds=bounds,  # type: ignore[arg-type]
        obstacles=np.asarray(obstacles, np.float64).reshape(-1, 2, 3),
        kind=kind,
        style=st.name,
        targets=np.asarray(targets, np.float64).reshape(-1, 3),
    )
