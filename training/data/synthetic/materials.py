"""Materials of the synthetic renders: scene/material distributions (`Style`), procedural
textures (analytic patterns, dead-leaves and 1/f tiles) and their tri-planar evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

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


def random_hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> tuple[float, float, float]:
    """A random colour: uniform hue, saturation and value in the given ranges, as linear RGB."""
    h = rng.uniform(0, 1)
    sat, val = rng.uniform(*s), rng.uniform(*v)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(float(c) for c in rgb)  # type: ignore[return-value]


def _dead_leaves_tile(
    rng: np.random.Generator, a: Sequence[float], b: Sequence[float], size: int = _TILE
) -> np.ndarray:
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


def _fractal_tile(rng: np.random.Generator, a: Sequence[float], b: Sequence[float], size: int = _TILE) -> np.ndarray:
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
        c = np.asarray(random_hsv(rng, (0.0, 1.0), (0.05, 0.95)), np.float32)
        img = np.where(m > rng.uniform(0.7, 0.9), c, img)
    return img.astype(np.float32)


def random_material(
    rng: np.random.Generator,
    textures: Sequence[str] = TEXTURES,
    scale: tuple[float, float] = (0.05, 0.8),
    style: Style = STYLES["basic"],
) -> Material:
    """A random material of `style`'s colour distribution (the generator's material distribution)."""
    tex = str(rng.choice(list(textures)))
    a = random_hsv(rng, style.saturation, style.value)
    if rng.uniform() < 0.5:  # same hue, different value: most real surfaces
        k = rng.uniform(0.3, 0.8)
        b = tuple(float(c * k) for c in a)
    else:
        b = random_hsv(rng, style.saturation_b, style.value_b)
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
