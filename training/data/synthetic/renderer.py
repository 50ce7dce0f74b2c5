"""Ray-casting renderer of the synthetic scenes (Embree through embreex): RGB with ambient,
sun and shadowed lamp light, exact z-depth, and `render_clip`, a clip as a pure function of its seed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from vdepth_training.data.synthetic.materials import STYLES, Style, shade_texture
from vdepth_training.data.synthetic.meshes import embree_scene
from vdepth_training.data.synthetic.scenes import Scene, SceneKind, random_scene
from vdepth_training.data.synthetic.trajectories import random_trajectory

_MISS = -1


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


def intrinsics_for(height: int, width: int, hfov_deg: float) -> np.ndarray:
    """Pinhole matrix with principal point at the image centre (pixel-centre convention)."""
    fx = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]], np.float64)


class Renderer:
    """Ray-casts a `Scene`: static geometry is built once, moving objects once per frame."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.static_ids = [i for i, o in enumerate(scene.objects) if not o.dynamic]
        self.dynamic_ids = [i for i, o in enumerate(scene.objects) if o.dynamic]
        self._static = embree_scene([scene.objects[i].at(0)[0] for i in self.static_ids]) if self.static_ids else None

    def _cast(self, dyn: Any, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    def _ambient_visibility(self, dyn: Any, p: np.ndarray, n: np.ndarray, style: Style) -> np.ndarray:
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
        # 1. moving objects at this frame
        dyn_tris, dyn_centers = [], {}
        for i in self.dynamic_ids:
            tri, c = sc.objects[i].at(frame)
            dyn_tris.append(tri)
            dyn_centers[i] = c
        dyn = embree_scene(dyn_tris) if dyn_tris else None
        # 2. primary rays through the pixel centres: z-depth
        vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
        cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
        dirs = (cam @ pose[:3, :3].T).astype(np.float32)
        origins = np.broadcast_to(pose[:3, 3].astype(np.float32), dirs.shape).copy()
        dist, oid, ng = self._cast(dyn, origins, dirs)
        hit = oid >= 0
        depth = np.where(hit, dist, 0.0).astype(np.float32).reshape(height, width)
        if not shade:
            return np.zeros((height, width, 3), np.float32), depth
        # 3. sky: vertical gradient by ray elevation
        rgb = np.zeros((height * width, 3), np.float32)
        dn = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        el = np.clip(dn[:, 2], 0, 1)[:, None]
        sky = np.asarray(sc.sky_bottom, np.float32) * (1 - el) + np.asarray(sc.sky_top, np.float32) * el
        rgb[~hit] = sky[~hit]
        # 4. surfaces: normals, albedo, light
        if hit.any():
            idx = np.nonzero(hit)[0]
            p = origins[idx] + dirs[idx] * dist[idx, None]
            n = self._shading_normals(p, ng[idx], oid[idx], dn[idx], dyn_centers)
            rgb[idx] = self._shade(dyn, p, n, oid[idx], dn[idx])
        return rgb.reshape(height, width, 3), depth

    def _shading_normals(
        self, p: np.ndarray, ng: np.ndarray, oid: np.ndarray, view: np.ndarray, centers: dict
    ) -> np.ndarray:
        """Unit normals facing the camera: geometric ones, smooth for spheres and cylinder sides."""
        n = ng / (np.linalg.norm(ng, axis=1, keepdims=True) + 1e-12)
        for i in np.unique(oid):
            obj = self.scene.objects[i]
            if obj.kind == "mesh":
                continue
            sel = oid == i
            c = centers.get(int(i), np.asarray(obj.center))
            if obj.kind == "sphere":
                nn = p[sel] - c
            else:
                nn = p[sel] - c
                nn[:, 2] = 0
                side = np.abs(n[sel, 2]) < 0.5
                nn = np.where(side[:, None], nn, n[sel])
            n[sel] = nn / (np.linalg.norm(nn, axis=1, keepdims=True) + 1e-12)
        return np.where((np.sum(n * view, axis=1) > 0)[:, None], -n, n)

    def _shade(self, dyn: Any, p: np.ndarray, n: np.ndarray, oid: np.ndarray, view: np.ndarray) -> np.ndarray:
        """Colour `(N, 3)` of surface points: albedo x (ambient + shadowed sun + shadowed lamp) + specular."""
        sc = self.scene
        albedo = np.zeros((len(p), 3), np.float32)
        spec_w = np.zeros(len(p), np.float32)
        shin = np.ones(len(p), np.float32)
        for i in np.unique(oid):
            sel = oid == i
            mat = sc.objects[i].material
            albedo[sel] = shade_texture(mat, p[sel], n[sel])
            spec_w[sel], shin[sel] = mat.specular, mat.shininess
        light = np.full(len(p), sc.ambient, np.float32)
        style = STYLES.get(sc.style, STYLES["basic"])
        if style.occlusion > 0:
            vis = self._ambient_visibility(dyn, p, n, style)
            light *= 1.0 - style.occlusion * (1.0 - vis)
        spec = np.zeros(len(p), np.float32)
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
                ndl[lit] *= (dd >= 1.0).astype(np.float32)
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
            h = ldir - view
            h /= np.linalg.norm(h, axis=1, keepdims=True) + 1e-12
            spec = spec_w * np.clip(np.sum(n * h, axis=1), 0, None) ** shin * (ndl > 0)
        return albedo * light[:, None] + spec[:, None]


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
