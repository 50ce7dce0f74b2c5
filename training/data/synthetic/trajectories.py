"""Camera paths of the synthetic renders: a smooth handheld-like 6-DoF trajectory that stays
inside the scene, out of obstacles, and looks at something."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from vdepth_training.data.synthetic.materials import STYLES
from vdepth_training.data.synthetic.meshes import embree_scene
from vdepth_training.data.synthetic.scenes import Scene


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


def _open_yaw(rng: np.random.Generator, scene: Scene, position: np.ndarray, candidates: int = 12) -> float:
    """A heading that mostly looks into the open (median free distance of a few probe rays)."""
    static = [o.at(0)[0] for o in scene.objects if not o.dynamic]
    if not static:
        return float(rng.uniform(0, 2 * np.pi))
    emb = embree_scene(static)
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
