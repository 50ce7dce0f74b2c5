"""Sparse metric depth from tracked points and known camera poses (`vdepth_ros.triangulate`)."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.errors import InputError
from vdepth_ros.triangulate import PoseTriangulator, TriangulationOptions, pose_matrix, quaternion_from_matrix

synthetic = pytest.importorskip("vdepth_training.data.synthetic", reason="renders need the train extra")


@pytest.fixture(scope="module")
def clip():
    # a rendered room with exact z-depth, intrinsics and camera-to-world poses (OpenCV axes)
    return synthetic.render_clip(3, frames=30, height=180, width=240, kind="room", style="rich")


def _run(clip, poses, K=None, options=None):
    tri = PoseTriangulator(options)
    return tri, [tri.push(clip.rgb[t], poses[t], clip.intrinsics if K is None else K) for t in range(len(poses))]


def test_triangulated_points_match_the_rendered_depth(clip) -> None:
    _, maps = _run(clip, clip.poses)
    assert all(np.isnan(m).all() for m in maps[:2])  # one or two views: nothing to triangulate yet
    z = np.concatenate([m[np.isfinite(m)] for m in maps])
    gt = np.concatenate([clip.depth[t][np.isfinite(m)] for t, m in enumerate(maps)])
    rel = np.abs(z - gt) / gt
    assert z.size > 500 and np.median(rel) < 0.05  # metric: no scale was fitted anywhere
    assert sum(np.isfinite(m).sum() > 20 for m in maps[10:]) >= 15  # points keep coming as the camera moves


def test_depth_follows_the_scale_of_the_poses(clip) -> None:
    """Poses in another unit give depths in that unit: the output is as metric as the odometry."""
    _, maps = _run(clip, clip.poses)
    doubled = clip.poses.copy()
    doubled[:, :3, 3] *= 2.0
    _, maps2 = _run(clip, doubled)
    for a, b in zip(maps, maps2, strict=True):
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
        np.testing.assert_allclose(b[np.isfinite(b)], 2.0 * a[np.isfinite(a)], rtol=1e-4)


def test_no_points_without_parallax(clip) -> None:
    """A camera that only rotates (as these poses claim) cannot measure depth: nothing is output."""
    still = clip.poses.copy()
    still[:, :3, 3] = still[0, :3, 3]
    _, maps = _run(clip, still)
    assert all(np.isnan(m).all() for m in maps)


def test_state_is_bounded_and_resets_with_the_camera(clip) -> None:
    opts = TriangulationOptions(max_points=80)
    tri, _ = _run(clip, clip.poses, options=opts)
    assert 0 < tri.num_tracks <= 80
    assert tri._uv.shape[1] == opts.history
    K2 = clip.intrinsics.copy()
    K2[0, 0] *= 1.1  # another camera (or zoom): old tracks are dropped, not mixed in
    out = tri.push(clip.rgb[0], clip.poses[0], K2)
    assert np.isnan(out).all() and tri.num_tracks <= 80
    assert np.isfinite(tri._uv[:, :-1]).sum() == 0  # no history survives
    tri.push(clip.rgb[1][::2, ::2], clip.poses[1], K2)  # another resolution: the same
    assert np.isfinite(tri._uv[:, :-1]).sum() == 0


def test_bad_inputs_are_refused(clip) -> None:
    tri = PoseTriangulator()
    with pytest.raises(InputError, match="4x4"):
        tri.push(clip.rgb[0], np.eye(3), clip.intrinsics)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match="4x4"):
        tri.push(clip.rgb[0], bad, clip.intrinsics)
    with pytest.raises(InputError, match="focal"):
        tri.push(clip.rgb[0], np.eye(4), np.zeros((3, 3)))
    with pytest.raises(InputError, match="min_views"):
        PoseTriangulator(TriangulationOptions(min_views=1))
    # a frame without a pose or intrinsics breaks the chain of views: the tracks restart
    tri, _ = _run(clip, clip.poses[:6])
    assert tri.num_tracks > 0
    with pytest.raises(InputError, match="no camera pose"):
        tri.push(clip.rgb[6], None, clip.intrinsics)
    assert tri.num_tracks == 0
    tri, _ = _run(clip, clip.poses[:6])
    with pytest.raises(InputError, match="no intrinsics"):
        tri.push(clip.rgb[6], clip.poses[6], None)
    assert tri.num_tracks == 0


def test_pose_messages_round_trip_and_bad_quaternions_are_refused(clip) -> None:
    for m in clip.poses[::5]:
        q = quaternion_from_matrix(m[:3, :3])
        np.testing.assert_allclose(pose_matrix(m[:3, 3], q), m, atol=1e-12)
    half_turn = np.diag([1.0, -1.0, -1.0])  # trace -1: the branch without the w component
    np.testing.assert_allclose(pose_matrix([0, 0, 0], quaternion_from_matrix(half_turn))[:3, :3], half_turn, atol=1e-12)
    with pytest.raises(InputError, match="unit quaternion"):
        pose_matrix([0, 0, 0], [0, 0, 0, 0])  # a default-constructed message
    with pytest.raises(InputError, match="finite"):
        pose_matrix([0, 0], [0, 0, 0, 1])


def test_interpolated_pose_is_halfway_in_position_and_angle() -> None:
    from vdepth_ros.triangulate import interpolate_pose

    a = np.eye(4)
    b = np.eye(4)
    b[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # 90 degrees about z
    b[:3, 3] = [2.0, 0.0, -1.0]
    mid = interpolate_pose(a, b, 0.5)
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(mid[:3, :3], [[c, -c, 0], [c, c, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, -0.5])
    np.testing.assert_allclose(interpolate_pose(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(a, b, 1.0), b, atol=1e-12)


def test_pose_buffer_interpolates_inside_and_takes_the_nearest_outside() -> None:
    from vdepth_ros.triangulate import PoseBuffer

    def at_x(x: float) -> np.ndarray:
        m = np.eye(4)
        m[0, 3] = x
        return m

    buf = PoseBuffer(slop_ns=10, max_gap_ns=100, capacity=4)
    assert buf.at(0) is None and not buf.covers(0)
    for t in (200, 100, 300):  # any arrival order
        buf.add(t, at_x(t / 100))
    assert buf.at(150)[0, 3] == pytest.approx(1.5)  # between two poses: interpolated
    assert buf.at(300)[0, 3] == 3.0 and buf.covers(300) and not buf.covers(301)
    assert buf.at(305)[0, 3] == 3.0 and buf.at(311) is None  # outside the span: the nearest, within the slop
    buf.add(600, at_x(6.0))
    assert buf.at(450) is None  # the poses around it are 300 ns apart, more than max_gap: no guess
    assert buf.at(595)[0, 3] == 6.0
    buf.add(700, at_x(7.0))
    assert len(buf) == 4 and buf.at(100) is None  # the oldest was dropped


def test_pose_buffer_takes_a_long_recordings_poses_in_linear_time() -> None:
    """`vdepth-flicker --pose-topic` holds every pose of the recording in one `PoseBuffer`: each `add` copied the
    whole list into an array to search it (np.searchsorted), so 20000 poses took 9 s and an hour of 200 Hz
    odometry hours. 100000 (8 minutes of it) took minutes; now well under a second."""
    import time

    from vdepth_ros.triangulate import PoseBuffer

    n = 100_000
    buf = PoseBuffer(slop_ns=10_000_000, capacity=n)
    start = time.perf_counter()
    for k in range(n):
        buf.add(k * 5_000_000, np.eye(4))
    for k in range(0, n, 100):
        assert buf.at(k * 5_000_000) is not None
    assert time.perf_counter() - start < 10.0
    assert len(buf) == n
