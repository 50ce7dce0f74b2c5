"""The evaluation protocol: per-sequence disparity affine, depth metrics, TAE, trivial baselines."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.consistency import temporal_alignment_error
from vdepth_ros.eval.metrics import (
    aligned_depth,
    constant_prediction,
    evaluate_per_frame_fit,
    evaluate_sequence,
    fit_disparity_affine,
    nearness_gain,
    row_ramp_prediction,
    valid_mask,
)


def _plane_video(t: int = 6, h: int = 24, w: int = 32, depth0: float = 3.0, dz: float = 0.05):
    """A fronto-parallel wall at `depth0`, the camera moving towards it by `dz` per frame."""
    K = np.array([[30.0, 0, (w - 1) / 2], [0, 30.0, (h - 1) / 2], [0, 0, 1]])
    poses = np.tile(np.eye(4), (t, 1, 1))
    poses[:, 2, 3] = dz * np.arange(t)  # camera-to-world: moving along +z
    depth = np.stack([np.full((h, w), depth0 - dz * k, np.float32) for k in range(t)])
    return depth, K, poses


def test_affine_fit_recovers_scale_and_shift_and_metrics_are_perfect() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.8, 6.0, (4, 10, 12)).astype(np.float32)
    gt[0, :2] = 0  # invalid pixels are ignored
    pred = ((1 / np.maximum(gt, 1e-3)) - 0.05) / 2.5  # affine of the true disparity
    s, t = fit_disparity_affine(pred, gt, valid_mask(gt, 10.0))
    assert s == pytest.approx(2.5, rel=1e-6)
    assert t == pytest.approx(0.05, abs=1e-6)
    m = evaluate_sequence(pred, gt, 10.0)
    assert m.abs_rel < 1e-5
    assert m.delta1 == 1.0
    assert m.frames == 4


def test_one_affine_per_sequence_exposes_flicker() -> None:
    """Per-frame scale changes (flicker) cannot be absorbed by one per-sequence fit."""
    rng = np.random.default_rng(1)
    gt = rng.uniform(1.0, 4.0, (6, 8, 8)).astype(np.float32)
    good = 1 / gt
    flicker = good * rng.uniform(0.6, 1.6, (6, 1, 1))
    assert evaluate_sequence(good, gt, 10.0).abs_rel < 1e-5
    assert evaluate_sequence(flicker, gt, 10.0).abs_rel > 0.05


def test_per_frame_fit_isolates_drift_across_frames() -> None:
    """A per-frame affine absorbs per-frame scale/shift drift exactly, but not wrong structure."""
    rng = np.random.default_rng(2)
    gt = rng.uniform(1.0, 4.0, (6, 8, 8)).astype(np.float32)
    drift = (1 / gt) * rng.uniform(0.6, 1.6, (6, 1, 1)) + rng.uniform(-0.1, 0.1, (6, 1, 1))
    assert evaluate_sequence(drift, gt, 10.0).abs_rel > 0.05
    m = evaluate_per_frame_fit(drift, gt, 10.0)
    assert m.abs_rel < 1e-4 and m.delta1 == 1.0 and m.frames == 6 and m.tae is None
    noisy = (1 / gt) * rng.uniform(0.5, 1.5, gt.shape)  # per-pixel errors: no affine helps
    assert evaluate_per_frame_fit(noisy, gt, 10.0).abs_rel > 0.05
    mask = np.zeros(gt.shape, bool)
    mask[:, :4] = True  # only the masked pixels count
    bad = drift.copy()
    bad[:, 4:] = 7.0
    assert evaluate_per_frame_fit(bad, gt, 10.0, mask=mask).abs_rel < 1e-4
    assert evaluate_per_frame_fit(bad, gt, 10.0).abs_rel > 0.05


def test_nearness_gain_tells_following_from_keeping_one_scale() -> None:
    """1 when the prediction gets nearer with the scene, about 0 when it keeps one overall scale."""
    rng = np.random.default_rng(3)
    base = rng.uniform(1.0, 2.0, (8, 8)).astype(np.float32)
    approach = np.linspace(1.0, 0.5, 10, dtype=np.float32)[:, None, None]  # camera halves the distance
    gt = base[None] * approach
    assert evaluate_sequence(1 / gt, gt, 10.0).nearness_gain == pytest.approx(1.0, abs=1e-6)
    still = np.broadcast_to(1 / base, gt.shape)  # right structure, never nearer
    m = evaluate_sequence(still, gt, 10.0)
    assert m.nearness_gain == pytest.approx(0.0, abs=1e-6) and m.abs_rel > 0.1
    half = (1 / gt) ** 0.5  # follows half the change in log depth
    assert nearness_gain(1 / half, gt, valid_mask(gt, 10.0)) == pytest.approx(0.5, abs=1e-6)
    # undefined without a change of nearness, or with a single frame
    flat = np.broadcast_to(base, gt.shape)
    assert nearness_gain(flat, flat, valid_mask(flat, 10.0)) is None
    assert nearness_gain(gt[:1], gt[:1], valid_mask(gt[:1], 10.0)) is None
    # frames without valid pixels are skipped, not read as a jump
    valid = valid_mask(gt, 10.0)
    valid[4] = False
    wild = gt.copy()
    wild[4] = 100.0
    assert nearness_gain(wild, gt, valid) == pytest.approx(1.0, abs=1e-6)


def test_depth_is_clipped_like_the_reference() -> None:
    d = aligned_depth(np.array([0.0, 1e-6, 1.0]), 1.0, 0.0, 10.0)
    np.testing.assert_allclose(d, [10.0, 10.0, 1.0])  # 1/1e-3 = 1000 m -> capped at max_depth


def test_constant_baseline_equals_mean_disparity_fit() -> None:
    gt = np.array([[[1.0, 2.0], [4.0, 4.0]]], np.float32)
    m = evaluate_sequence(constant_prediction(gt.shape), gt, 10.0)
    mean_disp = np.mean(1 / gt)
    expect = np.mean(np.abs(1 / mean_disp - gt) / gt)
    assert m.abs_rel == pytest.approx(expect, rel=1e-6)


def test_row_ramp_is_exact_for_a_disparity_linear_in_rows() -> None:
    t, h, w = 2, 12, 5
    ramp = row_ramp_prediction((t, h, w))
    assert np.all(np.diff(ramp[0, :, 0]) > 0)  # nearer (larger disparity) at the bottom
    gt = 1 / (0.1 + 0.8 * ramp)
    assert evaluate_sequence(ramp, gt, 10.0).abs_rel < 1e-5


def test_tae_is_zero_for_consistent_depth_and_grows_with_flicker() -> None:
    depth, K, poses = _plane_video()
    assert temporal_alignment_error(depth, K, poses) < 1e-4
    wobbly = depth * np.array([1.0, 1.1, 0.95, 1.08, 0.9, 1.0], np.float32)[:, None, None]
    tae = temporal_alignment_error(wobbly, K, poses)
    assert 3.0 < tae < 15.0  # percent: ~5-10 % relative jumps between neighbours
    # wrong poses (camera assumed static) also show up as inconsistency
    assert temporal_alignment_error(depth, K, np.tile(np.eye(4), (6, 1, 1))) > 1.0


def test_tae_uses_poses_in_both_directions_with_rotation() -> None:
    """A box room seen by a rotating camera: exact depth re-projects onto itself."""
    pytest.importorskip("embreex")
    from vdepth_training.data.synthetic import render_clip

    clip = render_clip(5, frames=4, height=48, width=64, kind="room")
    tae = temporal_alignment_error(clip.depth, clip.intrinsics, clip.poses)
    assert tae < 2.5  # nearest-pixel splatting at 48x64 and occlusion edges only
    noisy = clip.depth * np.random.default_rng(0).uniform(0.85, 1.15, (4, 1, 1)).astype(np.float32)
    assert temporal_alignment_error(noisy, clip.intrinsics, clip.poses) > tae + 3


def test_evaluate_sequence_checks_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        evaluate_sequence(np.ones((2, 4, 4)), np.ones((2, 5, 4)), 10.0)


def test_metric_scores_need_no_fit_and_see_a_wrong_scale() -> None:
    from vdepth_ros.eval.metrics import evaluate_metric

    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 5.0, (3, 8, 10)).astype(np.float32)
    exact = evaluate_metric(1.0 / gt, gt, 10.0)
    assert exact.abs_rel == pytest.approx(0.0, abs=1e-6) and exact.delta1 == 1.0
    half = evaluate_metric(2.0 / gt, gt, 10.0)  # depth half the truth: the protocol's fit would hide it
    assert half.abs_rel == pytest.approx(0.5, abs=1e-6) and half.delta1 == 0.0
    assert evaluate_sequence(2.0 / gt, gt, 10.0).abs_rel == pytest.approx(0.0, abs=1e-4)


def test_boundary_f1_finds_sharp_edges_and_is_scale_invariant():
    from vdepth_ros.eval.metrics import boundary_f1

    gt = np.ones((20, 30), np.float32)
    gt[:, 15:] = 3.0
    valid = np.ones_like(gt, bool)
    assert boundary_f1(gt, gt, valid) == pytest.approx(1.0)
    assert boundary_f1(2.5 * gt, gt, valid) == pytest.approx(1.0)  # a depth scale does not matter
    ramp = np.tile(np.r_[np.ones(12), np.geomspace(1.0, 3.0, 28)[10:28:3], np.full(12, 3.0)][:30], (20, 1))
    assert boundary_f1(ramp.astype(np.float32), gt, valid) < 0.5  # a smeared edge: few ratios above 1.05..1.25
    shifted = np.roll(gt, 1, axis=1)
    shifted[:, 0] = 1.0
    assert boundary_f1(shifted, gt, valid) == pytest.approx(0.0)  # contours must coincide
    assert boundary_f1(gt, np.ones_like(gt), valid) is None  # no GT contour: undefined
    holes = valid.copy()
    holes[:, 14:16] = False  # the GT edge falls into a hole: no valid pair across it
    assert boundary_f1(gt, gt, holes) is None
