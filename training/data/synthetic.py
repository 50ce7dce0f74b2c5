"""Procedural RGB-D video: rooms, corridors and yards ray-cast with Embree (trimesh + embreex).

Every clip is a pure function of its seed and style: a scene (box room, corridor or open yard
with buildings), textured with procedural materials (checker, tiles, bricks, wood, stripes,
noise; the "rich" `Style` adds dead-leaves and 1/f tiles, denser clutter and close views), lit by
an ambient term, a directional light and a shadow-casting point light, watched by a smooth
handheld-like 6-DoF camera; a few objects may move. Output per frame: RGB, exact z-depth in
metres (0 where the ray escapes to the sky), the intrinsics and the camera-to-world pose.

Conventions: world is z-up, metres. Cameras are OpenCV-style (x right, y down, z forward);
pose = camera-to-world 4x4; a pixel (u, v) is sampled at its centre, the ray through
((u - cx) / fx, (v - cy) / fy, 1), so Embree's hit distance along that ray is the z-depth.

Example:
    >>> clip = render_clip(seed=3, frames=8, height=120, width=160)
    >>> clip.rgb.shape, clip.depth.shape, clip.poses.shape
    ((8, 120, 160, 3), (8, 120, 160), (8, 4, 4))
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

SceneKind = Literal["room", "corridor", "yard"]
TEXTURES = ("solid", "checker", "stripes", "tiles", "bricks", "wood", "noise")
IMAGE_TEXTURES = ("leaves", "fractal")  # baked into a periodic tile (`Material.image`)
_MISS = -1
_TILE = 96  # side of a baked texture tile, pixels per pattern period


@dataclass(frozen=True)
class Style:
    """The knobs of one scene/material distribution.

    "basic" is the distribution v1 and v2 of the default model were trained on; its clips are
    unchanged per seed. "rich" moves towards real indoor video: dead-leaves and 1/f ("fractal")
    textures (the image statistics that transfer best among procedural sources, Baradad et al.,
    "Learning to See by Looking at Noise", NeurIPS 2021), darker and more saturated colours,
    denser clutter on every surface and on the floor, chairs, more wall pictures, dimmer ambient
    light, and cameras that look at nearby things rather than mostly into the open.
    """

    name: str = "basic"
    textures: tuple[str, ...] = TEXTURES
    floor_textures: tuple[str, ...] = ("tiles", "wood", "checker", "noise", "solid", "stripes")
    wall_textures: tuple[str, ...] = ("solid", "solid", "noise", "bricks", "stripes", "tiles")
    ceiling_textures: tuple[str, ...] = ("solid", "tiles", "noise")
    saturation: tuple[float, float] = (0.0, 0.7)
    value: tuple[float, float] = (0.3, 0.95)
    saturation_b: tuple[float, float] = (0.0, 0.8)
    value_b: tuple[float, float] = (0.1, 0.9)
    clutter: tuple[int, int] = (0, 5)  # objects per surface, integers(lo, hi)
    room_furniture: tuple[int, int] = (6, 18)
    panels: tuple[int, int] = (0, 5)  # doors/windows/pictures on the walls
    furniture_kinds: tuple[str, ...] = ("box", "table", "shelf", "cylinder", "sphere", "box")
    floor_clutter: tuple[int, int] = (0, 0)  # small-object groups standing on the floor
    ambient: tuple[float, float] = (0.15, 0.45)
    open_view_p: float = 0.8  # probability of the most open heading (else any heading with room)
    min_free: float = 1.2  # metres of free view a non-open heading needs
    target_view_p: float = 0.0  # probability of aiming at a nearby object (desk, shelf, clutter)
    pitch: tuple[float, float] = (-0.6, 0.15)
    # ambient occlusion of the ambient term (0 = off, the flat ambient of "basic" and "rich"):
    # real rooms are lit mostly by bounced light, which darkens corners, contact regions and the
    # space under furniture, a shading cue that follows geometry. Fraction of ambient removed at
    # full occlusion; rays per pixel; occluders farther than `occlusion_radius` metres do not count.
    occlusion: float = 0.0
    occlusion_rays: int = 8
    occlusion_radius: float = 0.8


STYLES = {
    "basic": Style(),
    "rich": Style(
        name="rich",
        textures=TEXTURES + IMAGE_TEXTURES * 3,
        floor_textures=("tiles", "wood", "checker", "noise", "solid", "fractal", "leaves", "wood"),
        wall_textures=("solid", "solid", "fractal", "noise", "bricks", "tiles", "solid"),
        ceiling_textures=("solid", "tiles", "fractal"),
        saturation=(0.0, 1.0),
        value=(0.04, 0.95),
        saturation_b=(0.0, 1.0),
        value_b=(0.02, 0.9),
        clutter=(2, 11),
        room_furniture=(10, 24),
        panels=(1, 8),
        furniture_kinds=("box", "table", "shelf", "cylinder", "sphere", "chair", "table", "chair", "shelf"),
        floor_clutter=(1, 5),
        ambient=(0.06, 0.4),
        open_view_p=0.5,
        target_view_p=0.6,
        min_free=0.7,
        pitch=(-0.75, 0.15),
    ),
}
# "rich_ao_muted": the scenes, cameras and material patterns of "rich" seed for seed (the same rng
# draws), shaded with ambient occlusion and coloured from a less saturated palette, as most surfaces
# of real rooms are (white/grey walls, wood, fabric); only the RGB differs from "rich".
STYLES["rich_ao_muted"] = replace(
    STYLES["rich"], name="rich_ao_muted", occlusion=0.85, saturation=(0.0, 0.55), saturation_b=(0.0, 0.65)
)


# ---------------------------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------------------------
@dataclass
class Material:
    """A procedural texture evaluated on world coordinates (tri-planar) times a base colour.

    Attributes:
        texture: one of `TEXTURES`.
        color_a, color_b: linear RGB in [0, 1], the two colours the pattern mixes.
        scale: pattern period in metres.
        angle: in-plane rotation of the pattern (radians).
        noise: amplitude of multiplicative low-frequency noise (dirt, shading variation).
        specular: Blinn-Phong specular weight; `shininess` its exponent.
        waves: (K, 4) random (kx, ky, phase, weight) rows for the sinusoid-sum noise.
        image: (S, S, 3) periodic colour tile for the image textures ("leaves", "fractal"),
            one tile per pattern period; None for the analytic patterns.
    """

    texture: str = "solid"
    color_a: tuple[float, float, float] = (0.7, 0.7, 0.7)
    color_b: tuple[float, float, float] = (0.3, 0.3, 0.3)
    scale: float = 0.5
    angle: float = 0.0
    noise: float = 0.1
    specular: float = 0.0
    shininess: float = 16.0
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    image: np.ndarray | None = None


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


@dataclass
class SyntheticClip:
    """One rendered clip.

    Attributes:
        rgb: (T, H, W, 3) uint8 sRGB.
        depth: (T, H, W) float32 z-depth in metres; 0 where invalid (sky).
        intrinsics: (3, 3) float64 pinhole matrix for (H, W).
        poses: (T, 4, 4) float64 camera-to-world, OpenCV camera axes.
        seed: the seed it was rendered from; `kind` the scene generator used.
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    poses: np.ndarray
    seed: int
    kind: str

    @property
    def valid(self) -> np.ndarray:
        return self.depth > 0


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------
def box_mesh(lo: Sequence[float], hi: Sequence[float], yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Closed box between corners `lo` and `hi`, rotated by `yaw` about its vertical axis."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    if yaw:
        c = (lo + hi) / 2
        rot = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        corners = (corners - c) @ rot.T + c
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )  # fmt: skip
    return corners.astype(np.float32), faces


def quad_mesh(
    origin: Sequence[float], edge_u: Sequence[float], edge_v: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Planar rectangle `origin + a*edge_u + b*edge_v`, a, b in [0, 1] (two triangles)."""
    o, u, v = (np.asarray(x, np.float64) for x in (origin, edge_u, edge_v))
    verts = np.stack([o, o + u, o + u + v, o + v]).astype(np.float32)
    return verts, np.array([[0, 1, 2], [0, 2, 3]])


def sphere_mesh(center: Sequence[float], radius: float, subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return (m.vertices + np.asarray(center)).astype(np.float32), np.asarray(m.faces)


def cylinder_mesh(
    center: Sequence[float], radius: float, height: float, sections: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Vertical cylinder standing on z = center[2]."""
    import trimesh

    m = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    v = m.vertices + np.array([center[0], center[1], center[2] + height / 2])
    return v.astype(np.float32), np.asarray(m.faces)


def look_at(position: Sequence[float], target: Sequence[float], roll: float = 0.0) -> np.ndarray:
    """Camera-to-world pose (OpenCV axes) at `position` looking at `target`, z-up world."""
    p, t = np.asarray(position, np.float64), np.asarray(target, np.float64)
    z = t - p
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0])
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        x, y = c * x + s * y, -s * x + c * y
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, p
    return pose


def intrinsics_for(height: int, width: int, hfov_deg: float) -> np.ndarray:
    """Pinhole matrix with principal point at the image centre (pixel-centre convention)."""
    fx = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]], np.float64)


# ---------------------------------------------------------------------------------------------
# Random scene generation
# ---------------------------------------------------------------------------------------------
def _hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> tuple[float, float, float]:
    h = rng.uniform(0, 1)
    sat, val = rng.uniform(*s), rng.uniform(*v)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(float(c) for c in rgb)  # type: ignore[return-value]


def _dead_leaves_tile(rng: np.random.Generator, a, b, size: int = _TILE) -> np.ndarray:
    """Periodic dead-leaves tile: occluding discs and rectangles with power-law sizes (density
    ~ r^-3, the scale-invariant model of Lee, Mumford & Huang 2001) in colours around `a`, `b`."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = a
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([np.asarray(a, np.float32), np.asarray(b, np.float32)])
    rmin, rmax = 1.5, size * 0.35
    for _ in range(int(rng.integers(150, 400))):
        # inverse-CDF sample of p(r) ~ r^-3 on [rmin, rmax]
        u = rng.uniform()
        r = (rmin**-2 - u * (rmin**-2 - rmax**-2)) ** -0.5
        cx, cy = rng.uniform(0, size, 2)
        # wrap-around distances keep the tile periodic
        dx = np.abs(xx - cx)
        dx = np.minimum(dx, size - dx)
        dy = np.abs(yy - cy)
        dy = np.minimum(dy, size - dy)
        mask = dx**2 + dy**2 < r**2 if rng.uniform() < 0.5 else (dx < r) & (dy < r * rng.uniform(0.3, 1.0))
        col = base[int(rng.integers(2))] * rng.uniform(0.55, 1.3) + rng.normal(0, 0.06, 3)
        img[mask] = np.clip(col, 0, 1)
    return img


def _fractal_tile(rng: np.random.Generator, a, b, size: int = _TILE) -> np.ndarray:
    """Periodic 1/f^alpha noise (alpha 1.2-2.4, the range of natural images) mapped between two
    colours, with an optional third colour at the extremes."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** -rng.uniform(1.2, 2.4)
    amp[0, 0] = 0.0
    spec = amp * np.exp(2j * np.pi * rng.uniform(0, 1, amp.shape))
    n = np.fft.irfft2(spec, s=(size, size))
    n = (n - n.mean()) / (n.std() + 1e-9)
    m = np.clip(0.5 + rng.uniform(0.15, 0.4) * n, 0, 1)[..., None].astype(np.float32)
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    img = a * (1 - m) + b * m
    if rng.uniform() < 0.4:
        c = np.asarray(_hsv(rng, (0.0, 1.0), (0.05, 0.95)), np.float32)
        img = np.where(m > rng.uniform(0.7, 0.9), c, img)
    return img.astype(np.float32)


def random_material(
    rng: np.random.Generator,
    textures: Sequence[str] = TEXTURES,
    scale=(0.05, 0.8),
    style: Style = STYLES["basic"],
) -> Material:
    """A random material of `style`'s colour distribution (the generator's material distribution)."""
    tex = str(rng.choice(list(textures)))
    a = _hsv(rng, style.saturation, style.value)
    if rng.uniform() < 0.5:  # same hue, different value: most real surfaces
        k = rng.uniform(0.3, 0.8)
        b = tuple(float(c * k) for c in a)
    else:
        b = _hsv(rng, style.saturation_b, style.value_b)
    k = int(rng.integers(3, 7))
    waves = np.stack(
        [rng.normal(0, 1, k) / rng.uniform(0.1, 1.5), rng.normal(0, 1, k) / rng.uniform(0.1, 1.5),
         rng.uniform(0, 2 * np.pi, k), rng.uniform(0.3, 1.0, k)], axis=1
    ).astype(np.float32)  # fmt: skip
    mat = Material(
        texture=tex,
        color_a=a,  # type: ignore[arg-type]
        color_b=b,  # type: ignore[arg-type]
        scale=float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))),
        angle=float(rng.uniform(0, np.pi)),
        noise=float(rng.uniform(0.0, 0.35)),
        specular=float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.4)])),
        shininess=float(rng.uniform(8, 64)),
        waves=waves,
    )
    if tex == "leaves":
        mat.image = _dead_leaves_tile(rng, a, b)
        mat.scale *= 3.0  # a tile holds many "leaves": its period is longer than a stripe's
    elif tex == "fractal":
        mat.image = _fractal_tile(rng, a, b)
        mat.scale *= 3.0
    return mat


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
    rng: np.random.Generator, objs: list[SceneObject], obstacles: list, lo, hi, n: int, style: Style
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


def _add_movers(rng: np.random.Generator, objs: list[SceneObject], lo, hi, n: int, style: Style) -> None:
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


def _room_shell(rng: np.random.Generator, lo, hi, objs: list[SceneObject], style: Style) -> None:
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
        sky_top=_hsv(rng, (0.2, 0.6), (0.6, 1.0)),
        sky_bottom=_hsv(rng, (0.0, 0.2), (0.8, 1.0)),
        bounds=bounds,  # type: ignore[arg-type]
        obstacles=np.asarray(obstacles, np.float64).reshape(-1, 2, 3),
        kind=kind,
        style=st.name,
        targets=np.asarray(targets, np.float64).reshape(-1, 3),
    )


def _open_yaw(rng: np.random.Generator, scene: Scene, position: np.ndarray, candidates: int = 12) -> float:
    """A heading that mostly looks into the open (median free distance of a few probe rays)."""
    static = [o.at(0)[0] for o in scene.objects if not o.dynamic]
    if not static:
        return float(rng.uniform(0, 2 * np.pi))
    emb = _embree_scene(static)
    yaws = rng.uniform(0, 2 * np.pi, candidates)
    ang = np.linspace(-0.5, 0.5, 5)
    dirs = np.array(
        [[math.cos(y + a), math.sin(y + a), e] for y in yaws for a in ang for e in (-0.3, 0.0, 0.2)], np.float32
    )
    org = np.broadcast_to(position.astype(np.float32), dirs.shape).copy()
    dist = np.minimum(emb.run(org, dirs, output=1)["tfar"], 50.0).reshape(candidates, -1)
    free = np.median(dist, axis=1)
    st = STYLES[scene.style]
    if rng.uniform() < st.open_view_p:
        return float(yaws[int(np.argmax(free))])
    ok = np.nonzero(free > st.min_free)[0]
    return float(yaws[int(rng.choice(ok))] if len(ok) else yaws[int(np.argmax(free))])


def _aim_at_target(rng: np.random.Generator, scene: Scene, position: np.ndarray) -> tuple[float | None, float | None]:
    """Heading and pitch towards a random furniture/clutter point 0.5-3.5 m away (handheld video
    mostly watches nearby things); (None, None) when there is none."""
    d = scene.targets - position
    horiz = np.hypot(d[:, 0], d[:, 1])
    ok = np.nonzero((horiz > 0.5) & (horiz < 3.5))[0]
    if len(ok) == 0:
        return None, None
    j = int(rng.choice(ok))
    aim_z = d[j, 2] + rng.uniform(0.0, 0.3)  # targets are base points: aim a little above
    yaw = math.atan2(d[j, 1], d[j, 0]) + rng.uniform(-0.25, 0.25)
    return yaw, float(np.clip(math.atan2(aim_z, horiz[j]), -0.95, 0.3))


def random_trajectory(rng: np.random.Generator, scene: Scene, frames: int, tries: int = 50) -> np.ndarray:
    """Smooth handheld-like camera-to-world poses `(frames, 4, 4)` inside `scene.bounds`.

    Position and viewing direction are sums of a few low-frequency sinusoids with random
    phases (smooth to all orders) plus a linear drift; candidate paths that leave the bounds
    or enter an obstacle box are rejected.
    """
    lo, hi = (np.asarray(b, float) for b in scene.bounds)
    t = np.arange(frames, dtype=np.float64)
    for _ in range(tries):
        start = rng.uniform(lo, hi)
        speed = rng.uniform(0.003, 0.03)  # metres per frame (handheld at 30 Hz: 0.1-0.9 m/s)
        d = rng.normal(size=3) * (1, 1, 0.2)
        drift = d / (np.linalg.norm(d) + 1e-9) * speed
        wob = sum(
            rng.normal(0, 0.02, 3)[None] * np.sin(2 * np.pi * t[:, None] / rng.uniform(20, 120) + rng.uniform(0, 6.3))
            for _ in range(3)
        )
        pos = start + t[:, None] * drift + wob
        if np.any(pos < lo) or np.any(pos > hi):
            continue
        obs = scene.obstacles
        if len(obs):
            inside = np.all((pos[:, None] > obs[None, :, 0] - 0.3) & (pos[:, None] < obs[None, :, 1] + 0.3), axis=2)
            if inside.any():
                continue
        st = STYLES[scene.style]
        yaw0, aim_pitch = None, None
        if st.target_view_p > 0 and rng.uniform() < st.target_view_p:
            yaw0, aim_pitch = _aim_at_target(rng, scene, pos[frames // 2])
        if yaw0 is None:
            yaw0 = _open_yaw(rng, scene, pos[frames // 2])
        yaw = (
            yaw0
            + rng.uniform(-0.02, 0.02) * t
            + 0.15 * np.sin(2 * np.pi * t / rng.uniform(40, 160) + rng.uniform(0, 6.3))
        )
        pitch0 = rng.uniform(*st.pitch)  # drawn in this order so "basic" clips stay as they were
        pitch = (pitch0 if aim_pitch is None else aim_pitch) + 0.08 * np.sin(
            2 * np.pi * t / rng.uniform(40, 160) + rng.uniform(0, 6.3)
        )
        roll = rng.uniform(-0.12, 0.12) + 0.03 * np.sin(2 * np.pi * t / rng.uniform(30, 100) + rng.uniform(0, 6.3))
        poses = np.empty((frames, 4, 4))
        for i in range(frames):
            fwd = np.array(
                [math.cos(pitch[i]) * math.cos(yaw[i]), math.cos(pitch[i]) * math.sin(yaw[i]), math.sin(pitch[i])]
            )
            poses[i] = look_at(pos[i], pos[i] + fwd, roll[i])
        return poses
    # Fallback: stand still in the middle of the bounds.
    mid = (lo + hi) / 2
    return np.stack([look_at(mid, mid + np.array([1.0, 0.0, -0.2]))] * frames)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _embree_scene(triangles: list[np.ndarray]):
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    scene = rtcore_scene.EmbreeScene()
    for tri in triangles:
        TriangleMesh(scene, np.ascontiguousarray(tri, np.float32))
    return scene


def _sin_noise(u: np.ndarray, v: np.ndarray, waves: np.ndarray, freq: float) -> np.ndarray:
    """Smooth pseudo-noise in [-1, 1] from a few random sinusoids (cheap, deterministic)."""
    if len(waves) == 0:
        return np.zeros_like(u)
    acc = np.zeros_like(u)
    for kx, ky, ph, w in waves:
        acc += w * np.sin(freq * (kx * u + ky * v) + ph)
    return acc / float(np.sum(np.abs(waves[:, 3])))


def _sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup `(N, 3)` of a periodic tile at pattern coordinates (one period = one tile)."""
    size = tile.shape[0]
    x = (u - np.floor(u)) * size - 0.5
    y = (v - np.floor(v)) * size - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64) % size, y0.astype(np.int64) % size
    x1, y1 = (x0 + 1) % size, (y0 + 1) % size
    top = tile[y0, x0] * (1 - fx) + tile[y0, x1] * fx
    bottom = tile[y1, x0] * (1 - fx) + tile[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def shade_texture(mat: Material, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Albedo `(N, 3)` of material `mat` at world points `p` with unit normals `n` (tri-planar)."""
    axis = np.argmax(np.abs(n), axis=1)
    u = np.where(axis == 0, p[:, 1], p[:, 0])
    v = np.where(axis == 2, p[:, 1], p[:, 2])
    ca, sa = math.cos(mat.angle), math.sin(mat.angle)
    u, v = (ca * u - sa * v) / mat.scale, (sa * u + ca * v) / mat.scale
    tex = mat.texture
    if mat.image is not None:
        col = _sample_tile(mat.image, u, v)
        if mat.noise:
            col = col * (1 + mat.noise * _sin_noise(u * mat.scale, v * mat.scale, mat.waves, 3.0))[:, None]
        return col.astype(np.float32)
    if tex == "checker":
        m = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    elif tex == "stripes":
        m = (0.5 + 0.5 * np.sin(2 * np.pi * u)) ** 2
    elif tex == "tiles":
        fu, fv = u - np.floor(u), v - np.floor(v)
        grout = (np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) < 0.04).astype(np.float32)
        m = 0.15 * ((np.floor(u) * 7 + np.floor(v) * 13) % 3) / 2 + grout
    elif tex == "bricks":
        vv = v * 2.0
        row = np.floor(vv)
        uu = u + 0.5 * (row % 2)
        fu, fv = uu - np.floor(uu), vv - row
        m = ((np.minimum(fu, 1 - fu) < 0.03) | (np.minimum(fv, 1 - fv) < 0.06)).astype(np.float32)
        m = m + 0.2 * ((np.floor(uu) * 5 + row * 3) % 4) / 3
    elif tex == "wood":
        r = np.sqrt(u**2 + (0.2 * v) ** 2) * 6 + 2 * _sin_noise(u, v, mat.waves, 1.0)
        m = (0.5 + 0.5 * np.sin(r)) ** 3
    elif tex == "noise":
        m = 0.5 + 0.5 * _sin_noise(u, v, mat.waves, 2 * np.pi)
    else:
        m = np.zeros_like(u)
    m = np.clip(m, 0, 1)[:, None]
    a, b = np.asarray(mat.color_a, np.float32), np.asarray(mat.color_b, np.float32)
    col = a * (1 - m) + b * m
    if mat.noise:
        col = col * (1 + mat.noise * _sin_noise(u * mat.scale, v * mat.scale, mat.waves, 3.0))[:, None]
    return col.astype(np.float32)


class Renderer:
    """Ray-casts a `Scene`: static geometry is built once, moving objects once per frame."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.static_ids = [i for i, o in enumerate(scene.objects) if not o.dynamic]
        self.dynamic_ids = [i for i, o in enumerate(scene.objects) if o.dynamic]
        self._static = _embree_scene([scene.objects[i].at(0)[0] for i in self.static_ids]) if self.static_ids else None

    def _cast(self, dyn, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest hit over static + dynamic: (distance, object id (-1 miss), geometric normal)."""
        n = len(origins)
        dist = np.full(n, np.inf, np.float32)
        oid = np.full(n, _MISS, np.int64)
        ng = np.zeros((n, 3), np.float32)
        for emb, ids in ((self._static, self.static_ids), (dyn, self.dynamic_ids)):
            if emb is None:
                continue
            r = emb.run(origins, dirs, output=1)
            hit = (r["geomID"] >= 0) & (r["tfar"] < dist)
            dist[hit] = r["tfar"][hit]
            oid[hit] = np.asarray(ids)[r["geomID"][hit]]
            ng[hit] = r["Ng"][hit]
        return dist, oid, ng

    def _ambient_visibility(self, dyn, p: np.ndarray, n: np.ndarray, style: Style) -> np.ndarray:
        """Unoccluded fraction `(N,)` of the cosine-weighted hemisphere above each point, with
        occluders weighted by (1 - distance / radius). The ray directions are a fixed stratified
        set rotated about the normal by an angle hashed from the point's world position, so the
        pattern sticks to surfaces instead of flickering from frame to frame."""
        m = style.occlusion_rays
        k = np.arange(m, dtype=np.float64)
        r = np.sqrt((k + 0.5) / m)  # cosine-weighted: radius sqrt(u), uniform azimuth
        phi0 = 2.0 * np.pi * k * 0.618033988749895
        # tangent frame per point
        a = np.where(np.abs(n[:, 2:3]) < 0.9, np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
        t1 = np.cross(n, a)
        t1 /= np.linalg.norm(t1, axis=1, keepdims=True) + 1e-12
        t2 = np.cross(n, t1)
        h = np.sin(p[:, 0] * 12.9898 + p[:, 1] * 78.233 + p[:, 2] * 37.719) * 43758.5453
        rot = 2.0 * np.pi * (h - np.floor(h))
        phi = phi0[None, :] + rot[:, None]  # (N, m)
        x, y, z = r * np.cos(phi), r * np.sin(phi), np.sqrt(np.maximum(1.0 - r * r, 0.0))[None, :].repeat(len(p), 0)
        dirs = x[..., None] * t1[:, None] + y[..., None] * t2[:, None] + z[..., None] * n[:, None]
        origins = np.repeat((p + n * 2e-3)[:, None], m, axis=1)
        dist, _, _ = self._cast(dyn, origins.reshape(-1, 3).astype(np.float32), dirs.reshape(-1, 3).astype(np.float32))
        occ = np.clip(1.0 - dist / style.occlusion_radius, 0.0, 1.0).reshape(len(p), m)
        return (1.0 - occ.mean(axis=1)).astype(np.float32)

    def render(
        self, pose: np.ndarray, K: np.ndarray, height: int, width: int, frame: float = 0.0, shade: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB `(H, W, 3)` float32 linear-ish in [0, 1] (None-free) and z-depth `(H, W)` (0 = miss)."""
        sc = self.scene
        dyn_tris, dyn_centers = [], {}
        for i in self.dynamic_ids:
            tri, c = sc.objects[i].at(frame)
            dyn_tris.append(tri)
            dyn_centers[i] = c
        dyn = _embree_scene(dyn_tris) if dyn_tris else None

        vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
        cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
        dirs = (cam @ pose[:3, :3].T).astype(np.float32)
        origins = np.broadcast_to(pose[:3, 3].astype(np.float32), dirs.shape).copy()
        dist, oid, ng = self._cast(dyn, origins, dirs)
        hit = oid >= 0
        depth = np.where(hit, dist, 0.0).astype(np.float32).reshape(height, width)
        if not shade:
            return np.zeros((height, width, 3), np.float32), depth

        rgb = np.zeros((height * width, 3), np.float32)
        # sky: vertical gradient by ray elevation
        dn = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        el = np.clip(dn[:, 2], 0, 1)[:, None]
        sky = np.asarray(sc.sky_bottom, np.float32) * (1 - el) + np.asarray(sc.sky_top, np.float32) * el
        rgb[~hit] = sky[~hit]
        if hit.any():
            idx = np.nonzero(hit)[0]
            p = origins[idx] + dirs[idx] * dist[idx, None]
            n = ng[idx]
            n = n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)
            # smooth normals for spheres and cylinder sides
            for i in np.unique(oid[idx]):
                obj = sc.objects[i]
                if obj.kind == "mesh":
                    continue
                sel = oid[idx] == i
                c = dyn_centers.get(int(i), np.asarray(obj.center))
                if obj.kind == "sphere":
                    nn = p[sel] - c
                else:
                    nn = p[sel] - c
                    nn[:, 2] = 0
                    side = np.abs(n[sel, 2]) < 0.5
                    nn = np.where(side[:, None], nn, n[sel])
                n[sel] = nn / (np.linalg.norm(nn, axis=1, keepdims=True) + 1e-12)
            n = np.where((np.sum(n * dn[idx], axis=1) > 0)[:, None], -n, n)  # face the camera
            albedo = np.zeros((len(idx), 3), np.float32)
            spec_w = np.zeros(len(idx), np.float32)
            shin = np.ones(len(idx), np.float32)
            for i in np.unique(oid[idx]):
                sel = oid[idx] == i
                mat = sc.objects[i].material
                albedo[sel] = shade_texture(mat, p[sel], n[sel])
                spec_w[sel], shin[sel] = mat.specular, mat.shininess
            light = np.full(len(idx), sc.ambient, np.float32)
            style = STYLES.get(sc.style, STYLES["basic"])
            if style.occlusion > 0:
                vis = self._ambient_visibility(dyn, p, n, style)
                light *= 1.0 - style.occlusion * (1.0 - vis)
            spec = np.zeros(len(idx), np.float32)
            # ambient "occlusion" by distance to the camera is not physical; instead a soft
            # up-facing bias makes floors brighter than ceilings, as with ceiling lamps
            light *= 0.85 + 0.15 * n[:, 2]
            if sc.sun > 0:
                s = np.asarray(sc.sun_dir, np.float32)
                ndl = np.clip(n @ s, 0, None)
                lit = ndl > 0
                if lit.any():
                    o = p[lit] + n[lit] * 1e-3
                    d = np.broadcast_to(s * 100.0, o.shape).astype(np.float32).copy()
                    dd, _, _ = self._cast(dyn, o.astype(np.float32), d)
                    vis = (dd >= 1.0).astype(np.float32)
                    ndl[lit] *= vis
                light += sc.sun * ndl
            if sc.lamp > 0:
                lp = np.asarray(sc.lamp_pos, np.float32)
                to = lp - p
                r2 = np.sum(to**2, axis=1)
                ldir = to / np.sqrt(r2)[:, None]
                ndl = np.clip(np.sum(n * ldir, axis=1), 0, None)
                lit = ndl > 0
                if lit.any():
                    o = (p[lit] + n[lit] * 1e-3).astype(np.float32)
                    dd, _, _ = self._cast(dyn, o, to[lit].astype(np.float32))
                    ndl[lit] *= (dd >= 0.999).astype(np.float32)
                light += sc.lamp * ndl / np.maximum(r2, 0.3)
                h = ldir - dn[idx]
                h /= np.linalg.norm(h, axis=1, keepdims=True) + 1e-12
                spec = spec_w * np.clip(np.sum(n * h, axis=1), 0, None) ** shin * (ndl > 0)
            rgb[idx] = albedo * light[:, None] + spec[:, None]
        return rgb.reshape(height, width, 3), depth


def _tonemap(rgb: np.ndarray, exposure: float) -> np.ndarray:
    x = 1.0 - np.exp(-np.maximum(rgb, 0) * exposure)  # soft highlight roll-off
    return (np.clip(x, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def render_clip(
    seed: int,
    frames: int = 24,
    height: int = 168,
    width: int = 224,
    kind: SceneKind | None = None,
    hfov_deg: tuple[float, float] = (50.0, 75.0),
    style: str = "basic",
) -> SyntheticClip:
    """Render the clip of `seed`: deterministic (same seed, same arrays, on any machine with numpy).

    Args:
        seed: selects scene, materials, lights, camera path and intrinsics.
        frames, height, width: clip size.
        kind: force a scene kind, else sampled ("room" 60 %, "corridor" 20 %, "yard" 20 %).
        hfov_deg: range of the horizontal field of view.
        style: name of the scene/material distribution in `STYLES` ("basic", "rich" or "rich_ao_muted").

    Returns:
        The `SyntheticClip` (uint8 RGB, float32 z-depth, intrinsics, camera-to-world poses).
    """
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, kind, style)
    poses = random_trajectory(rng, scene, frames)
    K = intrinsics_for(height, width, float(rng.uniform(*hfov_deg)))
    exposure = float(rng.uniform(1.2, 2.5))
    ren = Renderer(scene)
    rgb = np.empty((frames, height, width, 3), np.uint8)
    depth = np.empty((frames, height, width), np.float32)
    for i in range(frames):
        col, depth[i] = ren.render(poses[i], K, height, width, frame=float(i))
        rgb[i] = _tonemap(col, exposure)
    return SyntheticClip(rgb=rgb, depth=depth, intrinsics=K, poses=poses, seed=seed, kind=scene.kind)


def to_sequence(clip: SyntheticClip):
    """The clip as a training `Sequence` (metric depth target, sky invalid, K and poses per frame)."""
    from vdepth_training.data.sequence import Sequence

    t = clip.rgb.shape[0]
    return Sequence(
        rgb=clip.rgb,
        target=clip.depth,
        valid=clip.valid,
        target_kind="depth",
        intrinsics=np.repeat(clip.intrinsics[None], t, axis=0),
        poses=clip.poses,
        metric=True,
        name=f"synthetic/{clip.kind}/{clip.seed:06d}",
        source="synthetic",
    )


def write_synthetic_dataset(
    root: str | Path,
    seeds: Sequence[int],
    frames: int = 24,
    height: int = 168,
    width: int = 224,
    skip_existing: bool = True,
    style: str = "basic",
) -> list[Path]:
    """Render `seeds` into `root/<seed>/` in the training sequence format; returns the folders.

    Existing complete folders are kept (`skip_existing`), so an interrupted run resumes.
    """
    from vdepth_training.data.sequence import META_NAME, write_sequence

    out = []
    for seed in seeds:
        d = Path(root) / f"{int(seed):06d}"
        if not (skip_existing and (d / META_NAME).is_file()):
            tmp = d.with_name(d.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            write_sequence(tmp, to_sequence(render_clip(int(seed), frames, height, width, style=style)))
            if d.exists():
                shutil.rmtree(d)
            tmp.rename(d)
        out.append(d)
    return out


__all__ = [
    "IMAGE_TEXTURES",
    "STYLES",
    "TEXTURES",
    "Material",
    "Renderer",
    "Scene",
    "SceneObject",
    "Style",
    "SyntheticClip",
    "box_mesh",
    "cylinder_mesh",
    "intrinsics_for",
    "look_at",
    "quad_mesh",
    "random_material",
    "random_scene",
    "random_trajectory",
    "render_clip",
    "shade_texture",
    "sphere_mesh",
    "to_sequence",
    "write_sample_video",
    "write_synthetic_dataset",
]


def write_sample_video(
    path: str | Path, seed: int = 90004, frames: int = 90, height: int = 240, width: int = 320, fps: float = 30.0
) -> Path:
    """The demo's bundled clip: one rendered room as an MP4 plus `<name>.json` (the demo's sidecar:
    fx, fy, cx, cy, width, height, near, far, fps) and `<name>_camera.yaml` (fx fy cx cy width height)."""
    import json

    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = render_clip(seed, frames, height, width, kind="room")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open an mp4v writer for {path}")
    for img in clip.rgb:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    K = clip.intrinsics
    cam = {
        "fx": float(K[0, 0]),
        "fy": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "width": width,
        "height": height,
    }
    valid = clip.depth[clip.depth > 0]
    meta = {
        **cam,
        "near": round(float(np.percentile(valid, 1)), 2),
        "far": round(float(np.percentile(valid, 99)), 2),
        "fps": fps,
        "source": f"vdepth_training.data.synthetic.render_clip(seed={seed}, kind='room')",
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    path.with_name(path.stem + "_camera.yaml").write_text("".join(f"{k}: {v}\n" for k, v in cam.items()))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m vdepth_training.data.synthetic --out DIR --seeds 0:1000 [--frames 24 --size 192 256]`."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--out", default=None, help="dataset folder (required unless --sample)")
    ap.add_argument("--seeds", default="0:100", help="start:stop (half-open)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    ap.add_argument("--style", default="basic", choices=sorted(STYLES), help="scene/material distribution")
    ap.add_argument("--sample", default=None, help="write the demo sample clip (MP4 + sidecars) here instead")
    args = ap.parse_args(argv)
    if args.sample:
        print(write_sample_video(args.sample))
        return
    if not args.out:
        ap.error("--out is required (or --sample)")
    a, b = (int(x) for x in args.seeds.split(":"))
    for s in range(a, b):
        write_synthetic_dataset(args.out, [s], args.frames, *args.size, style=args.style)
        if (s - a) % 50 == 0:
            print(f"seed {s} done", flush=True)


if __name__ == "__main__":
    main()
