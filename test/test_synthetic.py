"""The synthetic RGB-D video generator: exact depth against analytic geometry, determinism, format."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("embreex")

from vdepth_training.data.synthetic import (
    Material,
    Renderer,
    Scene,
    SceneObject,
    box_mesh,
    intrinsics_for,
    look_at,
    quad_mesh,
    render_clip,
    sphere_mesh,
    to_sequence,
    write_synthetic_dataset,
)


def _scene(*objs: SceneObject) -> Scene:
    return Scene(objects=list(objs), ambient=0.5, sun=0.5, lamp=0.0)


def test_floor_plane_depth_matches_ray_plane_intersection() -> None:
    floor = SceneObject(*quad_mesh((-50, -50, 0), (100, 0, 0), (0, 100, 0)), Material())
    h, w = 60, 80
    K = intrinsics_for(h, w, 70.0)
    pose = look_at((0.3, -0.2, 1.4), (8.0, 3.0, 0.6), roll=0.1)  # tilted, rolled, looking down
    _, depth = Renderer(_scene(floor)).render(pose, K, h, w)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d_world = d_cam @ pose[:3, :3].T
    t = -pose[2, 3] / d_world[..., 2]  # ray parameter at z = 0 equals z-depth (camera z component is 1)
    hit_xy = pose[:2, 3] + t[..., None] * d_world[..., :2]
    on_plane = (d_world[..., 2] < 0) & np.all(np.abs(hit_xy) < 49.9, axis=-1)
    near_edge = (d_world[..., 2] < 0) & np.any(np.abs(np.abs(hit_xy) - 50) < 0.5, axis=-1)
    expect = np.where(on_plane, t, 0.0)
    hit = expect > 0
    assert hit.mean() > 0.5
    assert (~hit).any()
    np.testing.assert_allclose(depth[hit], expect[hit], rtol=1e-4)
    assert np.all(depth[~hit & ~near_edge] == 0)


def test_box_front_face_depth_and_silhouette() -> None:
    # A 1x1x1 box whose front face is the plane x = 2; camera at the origin looking along +x.
    box = SceneObject(*box_mesh((2.0, -0.5, -0.5), (3.0, 0.5, 0.5)), Material())
    h, w = 64, 64
    K = intrinsics_for(h, w, 60.0)
    pose = look_at((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    _, depth = Renderer(_scene(box)).render(pose, K, h, w)
    # Pixels whose ray hits the face: |x_cam|, |y_cam| <= 0.5 at z = 2.
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    xs, ys = (u - K[0, 2]) / K[0, 0] * 2.0, (v - K[1, 2]) / K[1, 1] * 2.0
    inside = (np.abs(xs) < 0.49) & (np.abs(ys) < 0.49)
    outside = (np.abs(xs) > 0.51) | (np.abs(ys) > 0.51)
    np.testing.assert_allclose(depth[inside], 2.0, atol=1e-5)
    assert np.all(depth[outside] == 0)


def test_sphere_depth_at_centre_pixel_and_moving_object() -> None:
    sph = SceneObject(
        *sphere_mesh((0, 0, 0), 0.5), Material(), kind="sphere", center=(0, 0, 0), radius=0.5, velocity=(0.0, 0.1, 0.0)
    )
    h, w = 31, 31
    K = intrinsics_for(h, w, 40.0)
    pose = look_at((-3.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    ren = Renderer(_scene(sph))
    _, d0 = ren.render(pose, K, h, w, frame=0)
    assert d0[15, 15] == pytest.approx(2.5, abs=2e-3)  # icosphere (subdiv 3) vs true sphere
    _, d5 = ren.render(pose, K, h, w, frame=5)  # moved 0.5 m along +y: world +y is image left
    assert d5[15, 15] > 2.5 or d5[15, 15] == 0
    cols0 = np.nonzero(d0.max(axis=0) > 0)[0]
    cols5 = np.nonzero(d5.max(axis=0) > 0)[0]
    assert cols5.mean() < cols0.mean() - 2


def test_render_clip_is_deterministic_per_seed() -> None:
    a = render_clip(7, frames=3, height=36, width=48)
    b = render_clip(7, frames=3, height=36, width=48)
    c = render_clip(8, frames=3, height=36, width=48)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert not np.array_equal(a.rgb, c.rgb)
    assert a.rgb.dtype == np.uint8
    assert a.depth.dtype == np.float32
    # a smooth camera path: consecutive positions a few cm apart at most
    step = np.linalg.norm(np.diff(a.poses[:, :3, 3], axis=0), axis=1)
    assert np.all(step < 0.1)
    # poses are rigid transforms
    for p in a.poses:
        np.testing.assert_allclose(p[:3, :3] @ p[:3, :3].T, np.eye(3), atol=1e-9)


def test_depth_is_consistent_with_poses_across_frames() -> None:
    """Re-project frame 0 into frame 1 with the returned K and poses: static geometry agrees."""
    clip = render_clip(11, frames=2, height=60, width=80, kind="room")
    K, (p0, p1) = clip.intrinsics, clip.poses
    d0 = clip.depth[0].astype(np.float64)
    v, u = np.mgrid[0:60, 0:80].astype(np.float64)
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * d0, (v - K[1, 2]) / K[1, 1] * d0, d0], -1).reshape(-1, 3)
    rel = np.linalg.inv(p1) @ p0
    q = pts @ rel[:3, :3].T + rel[:3, 3]
    uu = np.round(q[:, 0] / q[:, 2] * K[0, 0] + K[0, 2]).astype(int)
    vv = np.round(q[:, 1] / q[:, 2] * K[1, 1] + K[1, 2]).astype(int)
    ok = (d0.reshape(-1) > 0) & (uu >= 0) & (uu < 80) & (vv >= 0) & (vv < 60)
    err = np.abs(clip.depth[1][vv[ok], uu[ok]] - q[ok, 2]) / q[ok, 2]
    assert np.median(err) < 0.01  # rounding to the pixel grid and occlusion edges aside


def test_sequence_format_roundtrip(tmp_path) -> None:
    from vdepth_training.data.sequence import SequenceReader

    [d] = write_synthetic_dataset(tmp_path, [3], frames=2, height=24, width=32)
    seq = SequenceReader(d).read()
    clip = render_clip(3, frames=2, height=24, width=32)
    ref = to_sequence(clip)
    np.testing.assert_array_equal(seq.rgb, ref.rgb)
    np.testing.assert_allclose(seq.target, clip.depth)
    np.testing.assert_allclose(seq.poses, clip.poses)
    assert seq.intrinsics.shape == (2, 3, 3)
    assert seq.target_kind == "depth"


# -- the "rich" style --------------------------------------------------------------------------
def test_image_texture_tiles_are_periodic_and_in_range() -> None:
    from vdepth_training.data.synthetic.materials import _dead_leaves_tile, _fractal_tile, _sample_tile

    rng = np.random.default_rng(0)
    u, v = rng.uniform(-3, 3, 500), rng.uniform(-3, 3, 500)
    for make in (_dead_leaves_tile, _fractal_tile):
        tile = make(np.random.default_rng(1), (0.8, 0.3, 0.2), (0.1, 0.2, 0.6))
        assert tile.shape == (96, 96, 3) and tile.dtype == np.float32
        assert tile.min() >= 0.0 and tile.max() <= 1.0
        assert tile.std() > 0.05  # a pattern, not a flat colour
        # one pattern period is one tile: shifting by whole periods changes nothing
        np.testing.assert_allclose(_sample_tile(tile, u, v), _sample_tile(tile, u + 2.0, v - 1.0), atol=1e-5)
        # and the tile wraps smoothly: a lookup exactly on the seam is the mean of both edges
        seam = _sample_tile(tile, np.array([0.0]), np.array([0.5 / 96]))
        np.testing.assert_allclose(seam[0], (tile[0, 0] + tile[0, -1]) / 2, atol=1e-5)


def test_rich_style_is_deterministic_and_leaves_basic_clips_alone() -> None:
    a = render_clip(5, frames=2, height=36, width=48, style="rich")
    b = render_clip(5, frames=2, height=36, width=48, style="rich")
    basic = render_clip(5, frames=2, height=36, width=48)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(a.rgb, basic.rgb)
    # the style is an argument, not state: rendering "rich" first does not change "basic"
    np.testing.assert_array_equal(basic.rgb, render_clip(5, frames=2, height=36, width=48).rgb)


def test_rich_rooms_are_more_cluttered_and_use_image_textures() -> None:
    from vdepth_training.data.synthetic import random_scene

    n_basic, n_rich, image_mats = 0, 0, 0
    for seed in range(8):
        n_basic += len(random_scene(np.random.default_rng(seed), "room").objects)
        rich = random_scene(np.random.default_rng(seed), "room", "rich")
        n_rich += len(rich.objects)
        image_mats += sum(o.material.image is not None for o in rich.objects)
        assert rich.style == "rich" and len(rich.targets) > 0
    assert n_rich > 1.5 * n_basic
    assert image_mats > 8


def test_aim_at_target_points_the_camera_at_a_nearby_object() -> None:
    from vdepth_training.data.synthetic.trajectories import _aim_at_target

    target = np.array([2.0, 1.0, 0.8])
    scene = Scene(objects=[], targets=np.stack([target, [40.0, 0.0, 0.0]]), style="rich")
    pos = np.array([0.5, 0.2, 1.5])
    for seed in range(5):
        yaw, pitch = _aim_at_target(np.random.default_rng(seed), scene, pos)
        d = target - pos
        assert abs(yaw - np.arctan2(d[1], d[0])) <= 0.25 + 1e-9  # jitter of +-0.25 rad
        assert pitch < 0  # the object is below the eye: look down
    far_only = Scene(objects=[], targets=np.array([[40.0, 0.0, 0.0]]), style="rich")
    assert _aim_at_target(np.random.default_rng(0), far_only, pos) == (None, None)


def test_image_textured_surface_renders_its_pattern() -> None:
    from vdepth_training.data.synthetic import random_material

    rng = np.random.default_rng(3)
    mats = [random_material(rng, ("leaves",)), random_material(rng, ("fractal",))]
    h, w = 48, 64
    K = intrinsics_for(h, w, 60.0)
    pose = look_at((0.0, -2.0, 1.0), (0.0, 0.0, 1.0))
    for mat in mats:
        mat.noise, mat.scale = 0.0, 1.0
        wall = SceneObject(*quad_mesh((-5, 0, -5), (10, 0, 0), (0, 0, 10)), mat)
        rgb, depth = Renderer(_scene(wall)).render(pose, K, h, w)
        assert np.allclose(depth, 2.0, atol=1e-4)
        # the facing wall is evenly lit, so colour variation across it comes from the texture
        assert rgb.reshape(-1, 3).std(axis=0).max() > 0.02


def test_unknown_style_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown synthetic style 'photo'.*basic.*rich"):
        render_clip(0, frames=1, height=12, width=16, style="photo")


def test_rich_ao_muted_is_rich_geometry_with_occlusion_shading() -> None:
    rich = render_clip(7, frames=2, height=36, width=48, style="rich")
    ao = render_clip(7, frames=2, height=36, width=48, style="rich_ao_muted")
    # the same scene, path and intrinsics seed for seed: only the RGB differs
    np.testing.assert_array_equal(ao.depth, rich.depth)
    np.testing.assert_array_equal(ao.poses, rich.poses)
    assert not np.array_equal(ao.rgb, rich.rgb)
    np.testing.assert_array_equal(ao.rgb, render_clip(7, frames=2, height=36, width=48, style="rich_ao_muted").rgb)


def test_ambient_occlusion_darkens_the_floor_next_to_a_box_only_when_enabled() -> None:
    floor = SceneObject(*quad_mesh((-5, -5, 0), (10, 0, 0), (0, 10, 0)), Material())
    box = SceneObject(*box_mesh((-0.5, 0.5, 0.0), (0.5, 1.5, 1.0)), Material())
    h, w = 48, 64
    K = intrinsics_for(h, w, 70.0)
    pose = look_at((0.0, -2.5, 2.0), (0.0, 0.0, 0.0))

    # floor points seen at two pixels: right in front of the box's base, and 1 m farther from it
    def pixel(x: float, y: float) -> tuple[int, int]:
        pc = np.linalg.inv(pose) @ np.array([x, y, 0.0, 1.0])
        uv = K @ (pc[:3] / pc[2])
        return int(np.rint(uv[1])), int(np.rint(uv[0]))

    near, far = pixel(0.0, 0.42), pixel(0.0, -0.6)
    lum = {}
    for style in ("rich", "rich_ao_muted"):
        scene = Scene(objects=[floor, box], ambient=0.5, sun=0.0, lamp=0.0, style=style)
        rgb, depth = Renderer(scene).render(pose, K, h, w)
        assert depth[near] > 0 and depth[far] > 0
        lum[style] = (rgb[near].mean(), rgb[far].mean())
    assert lum["rich"][0] == pytest.approx(lum["rich"][1], rel=1e-5)  # flat ambient: no cue
    assert lum["rich_ao_muted"][0] < 0.85 * lum["rich_ao_muted"][1]  # occluded by the box's side
    assert lum["rich_ao_muted"][1] == pytest.approx(lum["rich"][1], rel=0.05)  # open floor: ~unoccluded


def test_box_mesh_is_the_rotated_box_between_its_corners() -> None:
    """`box_mesh` (trimesh.creation.box) is the closed box between `lo` and `hi` turned by `yaw`
    about its vertical axis: the corner set, the volume and outward faces are those of the box.
    Renders differ from the former hand-written mesh only by float rounding (depth within 7e-6 m
    on 60x80 test clips: the corners are computed as centre +- half extent)."""
    import math

    import trimesh
    from vdepth_training.data.synthetic import box_mesh

    lo, hi, yaw = np.array([0.5, -1.0, 0.0]), np.array([1.7, -0.2, 0.9]), 0.6
    verts, faces = box_mesh(lo, hi, yaw)
    c = (lo + hi) / 2
    rot = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    want = (corners - c) @ rot.T + c
    assert verts.dtype == np.float32 and faces.shape == (12, 3)
    dist = np.linalg.norm(verts[:, None].astype(np.float64) - want[None], axis=-1)
    assert dist.min(axis=1).max() < 1e-6 and dist.min(axis=0).max() < 1e-6  # the same 8 corners
    mesh = trimesh.Trimesh(verts.astype(np.float64), faces, process=False)
    assert mesh.is_watertight and mesh.volume == pytest.approx(float(np.prod(hi - lo)), rel=1e-6)  # outward
