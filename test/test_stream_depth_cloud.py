"""Disparity -> depth, camera scaling, organized clouds, metric scale sources."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.stream.cloud import CameraModel, PointCloudBuilder
from vdepth_ros.stream.depth import depth_from_disparity, disparity_from_depth
from vdepth_ros.stream.scale import RangeScale, SparseScale, make_scale_source


def test_depth_from_disparity_formula_and_rep118_values():
    d = np.array([[0.5, 2.0, np.nan, -1.0, 1e-9, -0.2, -0.23]], np.float32)
    z = depth_from_disparity(d, 2.0, 0.5, min_depth=0.2, max_depth=10.0)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[0, :2], [1 / 1.5, 1 / 4.5], rtol=1e-6)
    assert np.isnan(z[0, 2])  # no estimate
    assert z[0, 3] == np.inf  # s*d+t < 0: beyond infinity -> +Inf, not a clipped 10 m
    assert z[0, 4] == pytest.approx(1 / 0.5, rel=1e-6)
    assert z[0, 5] == np.inf  # q = 0.1 - float32 rounding < 1/10
    assert depth_from_disparity(np.array([0.125]), min_depth=0.25, max_depth=8.0)[0] == 8.0  # the limit is valid
    assert depth_from_disparity(np.array([4.0]), min_depth=0.25, max_depth=8.0)[0] == 0.25
    assert z[0, 6] == np.inf  # q = 0.04 < 1/10: beyond the far limit
    assert depth_from_disparity(np.array([100.0]), min_depth=0.2, max_depth=10.0)[0] == -np.inf
    assert depth_from_disparity(np.array([4.9]), min_depth=0.2, max_depth=10.0)[0] == pytest.approx(1 / 4.9)
    finite = z[np.isfinite(z)]
    assert ((finite >= 0.2) & (finite <= 10.0)).all()
    with pytest.raises(ConfigError, match="min_depth"):
        depth_from_disparity(d, min_depth=5.0, max_depth=1.0)


def test_disparity_from_depth_roundtrip_and_invalid():
    z = np.array([0.5, 2.0, 0.0, np.nan, -1.0, np.inf], np.float32)
    inv = disparity_from_depth(z)
    np.testing.assert_allclose(inv[:2], [2.0, 0.5])
    assert np.isnan(inv[2:]).all()


def test_camera_from_k_and_p():
    k = [500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1]
    p = [500.0, 0, 320.0, 0.0, 0, 510.0, 240.0, 0, 0, 0, 1, 0]
    assert CameraModel.from_matrix(k, 640, 480) == CameraModel(500, 510, 320, 240, 640, 480)
    assert CameraModel.from_matrix(p, 640, 480) == CameraModel(500, 510, 320, 240, 640, 480)
    with pytest.raises(InputError, match="9"):
        CameraModel.from_matrix([1, 2, 3], 4, 4)


def test_camera_scaled_pixel_centre():
    cam = CameraModel(500.0, 510.0, 320.0, 240.0, 640, 480)
    half = cam.scaled(320, 240)
    assert (half.fx, half.fy) == (250.0, 255.0)
    assert (half.cx, half.cy) == (159.75, 119.75)  # (c + 0.5) / 2 - 0.5
    assert (half.width, half.height) == (320, 240)
    assert cam.scaled(640, 480) is cam
    # a point keeps its ray under the resize: pixel centre u=100 -> u'=(100.5)/2-0.5
    u = 100.0
    assert (u - cam.cx) / cam.fx == pytest.approx(((u + 0.5) / 2 - 0.5 - half.cx) / half.fx)
    with pytest.raises(ConfigError):
        CameraModel(0, 1, 0, 0, 4, 4)


def test_cloud_matches_hand_computed_pinhole():
    cam = CameraModel(fx=100.0, fy=80.0, cx=2.0, cy=1.5, width=5, height=4)
    depth = np.arange(1, 21, dtype=np.float32).reshape(4, 5) / 4
    depth[2, 3] = np.nan
    pts, cols = PointCloudBuilder().build(depth, cam)
    assert pts.shape == (4, 5, 3) and pts.dtype == np.float32 and cols is None
    for v in range(4):
        for u in range(5):
            z = depth[v, u]
            expect = [(u - 2.0) * z / 100.0, (v - 1.5) * z / 80.0, z]
            if np.isnan(z):
                assert np.isnan(pts[v, u]).all()
            else:
                np.testing.assert_allclose(pts[v, u], expect, rtol=1e-6)


def test_cloud_points_are_nan_for_every_non_finite_depth():
    cam = CameraModel(fx=100.0, fy=80.0, cx=2.0, cy=1.5, width=5, height=4)
    depth = np.full((4, 5), 2.0, np.float32)
    depth[0, 0], depth[1, 2], depth[3, 4], depth[2, 2] = np.inf, -np.inf, np.nan, np.inf  # (2, 2): u - cx = 0
    pts, _ = PointCloudBuilder().build(depth, cam)
    bad = ~np.isfinite(depth)
    assert np.isnan(pts[bad]).all()
    assert np.isfinite(pts[~bad]).all()


def test_cloud_stride_colors_and_ray_cache():
    cam = CameraModel(50.0, 50.0, 3.5, 2.5, 8, 6)
    depth = np.full((6, 8), 2.0, np.float32)
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    builder = PointCloudBuilder(stride=3)
    pts, cols = builder.build(depth, cam, rgb)
    assert pts.shape == (2, 3, 3) and cols.shape == (2, 3, 3)
    np.testing.assert_array_equal(cols, rgb[::3, ::3])
    np.testing.assert_allclose(pts[1, 2], [(6 - 3.5) * 2 / 50, (3 - 2.5) * 2 / 50, 2.0], rtol=1e-6)
    assert builder.rays(cam) is builder.rays(cam)  # cached per (camera, stride)
    x, y = builder.rays(cam)
    assert x.shape == (1, 3) and y.shape == (2, 1)
    with pytest.raises(InputError):
        builder.build(np.ones((5, 8), np.float32), cam)
    with pytest.raises(ConfigError, match="cloud_stride"):
        PointCloudBuilder(0)


def test_sparse_scale_recovers_metric_scale_with_outliers():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 5.0, (4, 30, 40)).astype(np.float32)
    rel = (1.0 / depth - 0.05) / 3.0  # canonical disparity = (1/z - t) / s with s=3, t=0.05
    sparse = []
    for k in range(4):
        z = np.full((30, 40), np.nan, np.float32)
        mask = rng.random((30, 40)) < 0.1
        z[mask] = depth[k][mask] * (1 + 0.01 * rng.standard_normal(mask.sum()))
        bad = mask & (rng.random((30, 40)) < 0.2)
        z[bad] = rng.uniform(0.1, 20, bad.sum())  # LiDAR ghosts
        sparse.append(z)
    src = SparseScale(min_points=20)
    fit = src.update(rel, sparse)
    assert fit.scale == pytest.approx(3.0, rel=0.03) and fit.shift == pytest.approx(0.05, abs=0.01)
    # a window without enough points keeps the previous scale
    assert src.update(rel, [None] * 4) is fit
    assert make_scale_source("sparse").update(rel[:1], [np.zeros((30, 40), np.float32)]) is None


def test_range_scale_maps_percentiles_to_near_far_once():
    d = np.linspace(0.0, 1.0, 1000).reshape(1, 10, 100)
    src = RangeScale(near=0.5, far=10.0)
    fit = src.update(d, [None])
    lo, hi = np.percentile(d, [2, 98])
    assert fit.scale * hi + fit.shift == pytest.approx(1 / 0.5)
    assert fit.scale * lo + fit.shift == pytest.approx(1 / 10.0)
    assert src.update(d * 5, [None]) is fit  # fixed for the whole stream
    with pytest.raises(ConfigError, match="near"):
        RangeScale(near=2.0, far=1.0)
    with pytest.raises(ConfigError, match="scale_source"):
        make_scale_source("lidar")


def _nearest_the_centres(z: np.ndarray, w: int, h: int) -> dict[int, float]:
    """cell -> the valid sample of `z` nearest its centre on a (h, w) grid, by brute force."""
    vy, vx = np.nonzero(np.isfinite(z) & (z > 0))
    fy, fx = (vy + 0.5) * h / z.shape[0], (vx + 0.5) * w / z.shape[1]
    cells = np.floor(fy).astype(int) * w + np.floor(fx).astype(int)
    off = (fy % 1 - 0.5) ** 2 + (fx % 1 - 0.5) ** 2
    best: dict[int, tuple[float, float]] = {}
    for c, d, v in zip(cells, off, z[vy, vx], strict=True):
        if c not in best or d < best[c][0] - 1e-9:
            best[c] = (d, v)
    return {c: v for c, (_, v) in best.items()}


def _assert_cells(out: np.ndarray, expect: dict[int, float]) -> None:
    assert np.isfinite(out).sum() == len(expect)
    for c, v in expect.items():
        assert out.flat[c] == v, c


def test_resample_sparse_depth_keeps_every_sample_and_the_one_nearest_the_cell_centre():
    from vdepth_ros.stream.scale import resample_sparse_depth

    rng = np.random.default_rng(0)
    H, W, h, w = 480, 640, 160, 224
    z = np.full((H, W), np.nan, np.float32)
    ys, xs = rng.integers(0, H, 500), rng.integers(0, W, 500)
    vals = rng.uniform(0.5, 8.0, 500).astype(np.float32)
    z[ys, xs] = vals
    z[0, 0], z[0, 1] = 0.0, -1.0  # invalid values are not samples
    out = resample_sparse_depth(z, w, h)
    assert out.shape == (h, w) and out.dtype == np.float32
    # every valid sample reaches the cell that holds its pixel's centre (the convention of cv2.resize and of the
    # intrinsics' scaling), and that cell holds the sample nearest its centre
    valid = np.isfinite(z) & (z > 0)
    expect = _nearest_the_centres(z, w, h)
    assert len(expect) > 0.9 * valid.sum()
    _assert_cells(out, expect)
    # the same for a dense image with holes (a depth camera's: its own, faster, path) of a smooth surface (a dense
    # image's samples that disagree with their neighbours are wild: below)
    dense = np.tile(np.linspace(2.0, 5.0, 160, dtype=np.float32), (120, 1))
    dense[rng.random(dense.shape) < 0.3] = np.nan
    _assert_cells(resample_sparse_depth(dense, 56, 40), _nearest_the_centres(dense, 56, 40))
    # a dense depth camera's image (10x10 pixels a cell) with 20 % wild pixels (flying pixels, multipath): each cell
    # keeps the depth at its centre (the nearest per cell, a z-buffer, made nearly every cell a wild one nearer than
    # the surface), and a wild one there, out of line with its neighbours, leaves its cell empty (test_stream_scale)
    dense = np.full((H, W), 2.0, np.float32)
    wild = rng.random((H, W)) < 0.2
    dense[wild] = rng.uniform(0.2, 10.0, int(wild.sum()))
    cells = resample_sparse_depth(dense, W // 10, H // 10)
    kept = np.isfinite(cells)
    assert 0.7 < kept.mean() < 0.9 and np.mean(np.abs(cells[kept] - 2.0) > 0.2) < 0.01
    # a nearest-neighbour resize would have kept only a fraction of them
    import cv2

    assert np.isfinite(cv2.resize(z, (w, h), interpolation=cv2.INTER_NEAREST)).sum() < 0.4 * valid.sum()
    # 4 -> 3: pixel 1 spans output [0.75, 1.5), its centre 1.125 is in cell 1 (its left edge would say cell 0)
    one = np.full((4, 4), np.nan, np.float32)
    one[1, 1] = 2.0
    assert np.argwhere(np.isfinite(resample_sparse_depth(one, 3, 3))).tolist() == [[1, 1]]
    # same size: only invalid values become NaN
    same = resample_sparse_depth(z, W, H)
    assert np.isnan(same[0, 0]) and np.isnan(same[0, 1])
    np.testing.assert_array_equal(same[valid], z[valid])
