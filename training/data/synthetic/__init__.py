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

Modules, by job: `materials` (styles, textures), `meshes` (geometry and the Embree scene), `scenes`
(random rooms, corridors, yards), `trajectories` (camera paths), `renderer` (ray casting,
`render_clip`), `writer` (sequence format, demo clip); `python -m vdepth_training.data.synthetic`
renders a dataset.
"""

from vdepth_training.data.synthetic.materials import (
    IMAGE_TEXTURES,
    STYLES,
    TEXTURES,
    Material,
    Style,
    random_material,
    shade_texture,
)
from vdepth_training.data.synthetic.meshes import box_mesh, cylinder_mesh, quad_mesh, sphere_mesh
from vdepth_training.data.synthetic.renderer import Renderer, SyntheticClip, intrinsics_for, render_clip
from vdepth_training.data.synthetic.scenes import Scene, SceneKind, SceneObject, random_scene
from vdepth_training.data.synthetic.trajectories import look_at, random_trajectory
from vdepth_training.data.synthetic.writer import (
    render_dataset,
    to_sequence,
    write_sample_video,
    write_synthetic_dataset,
)

__all__ = [
    "IMAGE_TEXTURES",
    "STYLES",
    "TEXTURES",
    "Material",
    "Renderer",
    "Scene",
    "SceneKind",
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
    "render_dataset",
    "shade_texture",
    "sphere_mesh",
    "to_sequence",
    "write_sample_video",
    "write_synthetic_dataset",
]
