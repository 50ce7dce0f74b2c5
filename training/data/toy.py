"""Procedural toy RGB-D clips for `--tiny` runs and tests (no files, no renderer, deterministic).

A slanted ground/back wall plus a box sliding in front of it; the colour is a function of depth
and a fixed texture, so depth is learnable from RGB in a few steps. Not training data for real
models (the default model uses `synthetic.py`, the Embree renderer).
"""

from __future__ import annotations

import numpy as np
from vdepth_training.data.dataset import InMemorySequence
from vdepth_training.data.layouts import pinhole
from vdepth_training.data.sequence import Sequence


def toy_sequence(frames: int = 8, height: int = 32, width: int = 48, seed: int = 0) -> Sequence:
    """One clip: (T, H, W) depth in metres in about [1, 6], valid everywhere, static camera."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    tilt = rng.uniform(0.5, 1.5)
    base = 6.0 - 4.0 * tilt * (v / max(height - 1, 1)) ** 1.5  # far at the top, near at the bottom
    base = np.clip(base, 1.0, 6.0)
    texture = rng.uniform(0.0, 1.0, size=(height, width, 3)).astype(np.float32)
    colour = rng.uniform(0.3, 1.0, size=3).astype(np.float32)
    bh, bw = max(2, height // 3), max(2, width // 4)
    y0 = int(rng.integers(0, height - bh))
    x_start, speed = rng.uniform(0, width - bw), rng.uniform(-1.5, 1.5)
    box_depth = rng.uniform(1.0, 2.5)
    depth = np.empty((frames, height, width), np.float32)
    rgb = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        d = base.copy()
        x0 = int(np.clip(x_start + speed * t, 0, width - bw))
        d[y0 : y0 + bh, x0 : x0 + bw] = box_depth
        depth[t] = d
        shade = (1.0 / d)[..., None]  # near = bright
        img = 0.6 * shade * colour + 0.25 * texture + 0.1 * (u / width)[..., None]
        rgb[t] = np.clip(img * 255, 0, 255).astype(np.uint8)
    k = pinhole(width * 0.8, width * 0.8, (width - 1) / 2, (height - 1) / 2)
    return Sequence(
        rgb=rgb,
        target=depth,
        valid=np.ones_like(depth, dtype=bool),
        intrinsics=np.tile(k, (frames, 1, 1)),
        poses=np.tile(np.eye(4), (frames, 1, 1)),
        name=f"toy/{seed}",
        source="toy",
    )


def load_toy(root: str | None = None, count: int = 2, frames: int = 8, height: int = 32, width: int = 48,
             seed: int = 0) -> list[InMemorySequence]:  # fmt: skip
    """`count` toy sequences as sources (the `layout: toy` entry of a tiny config; `root` unused)."""
    del root
    return [InMemorySequence(toy_sequence(frames, height, width, seed + i)) for i in range(count)]


__all__ = ["load_toy", "toy_sequence"]
