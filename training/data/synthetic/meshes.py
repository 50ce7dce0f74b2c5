"""Triangle meshes of the synthetic scenes (boxes, quads, spheres, cylinders) and the Embree
scene that ray-casts them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def box_mesh(lo: Sequence[float], hi: Sequence[float], yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Closed box between corners `lo` and `hi`, rotated by `yaw` about its vertical axis
    (`trimesh.creation.box` with the centre and yaw as its transform)."""
    import trimesh

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    transform = trimesh.transformations.rotation_matrix(yaw, (0.0, 0.0, 1.0))
    transform[:3, 3] = (lo + hi) / 2
    m = trimesh.creation.box(extents=hi - lo, transform=transform)
    return np.asarray(m.vertices, np.float32), np.asarray(m.faces)


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


def embree_scene(triangles: list[np.ndarray]) -> Any:
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    scene = rtcore_scene.EmbreeScene()
    for tri in triangles:
        TriangleMesh(scene, np.ascontiguousarray(tri, np.float32))
    return scene
