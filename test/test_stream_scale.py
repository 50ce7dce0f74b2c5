"""`SparseScale`, the metric scale fitted on a depth sensor's samples, against the sensor's own depth: the scene of
`test/deployed_peers.py` (16-pixel blocks, depth 0.5 / (0.1 + luminance), 0.5 to 2.8 m) as a model sees it (its
disparity an affine of the truth's, blurred), with the sensor's holes and wild pixels. Deployed: test_ros_metric.py."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.pipeline_types import MAX_EXTRAPOLATED
from vdepth_ros.stream.scale import SparseScale, resample_sparse_depth

W, H, WORK_W, WORK_H = 640, 480, 224, 160


def window(first: int, wild: float, reach: float, rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray]:
    """4 frames: the model's disparity (T, h, w), the sensor's depth on the model's grid, the true depth."""
    import cv2

    blocks = np.random.default_rng(0).integers(20, 236, (H // 16 + 1, W // 16 + 1, 3), dtype=np.uint8)
    base = blocks.repeat(16, 0).repeat(16, 1)[:H, :W]
    disparity, sparse, truth = [], [], []
    for k in range(first, first + 4):
        lum = (np.roll(base, 4 * k, axis=1).astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
        z = 0.5 / (0.1 + lum)
        truth.append(cv2.resize(z, (WORK_W, WORK_H), interpolation=cv2.INTER_NEAREST))
        z[rng.random(z.shape) < 0.1] = np.nan  # no return
        z[z > reach] = np.nan
        wild_pixels = rng.random(z.shape) < wild
        z[wild_pixels] = rng.uniform(0.2, 10.0, int(wild_pixels.sum()))
        model = cv2.GaussianBlur(cv2.resize(0.1 + lum, (WORK_W, WORK_H), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
        disparity.append(0.7 * model + 0.05)
        sparse.append(resample_sparse_depth(z, WORK_W, WORK_H))
    return np.stack(disparity), sparse, np.stack(truth)


def depth_over_truth(wild: float, reach: float = np.inf) -> tuple[float, SparseScale]:
    """The median over 6 windows' frames of the metric depth over the true depth, and the fitted source."""
    rng, scale = np.random.default_rng(1), SparseScale(20)
    ratios = []
    for w in range(6):
        disparity, sparse, truth = window(4 * w, wild, reach, rng)
        fit = scale.update(disparity, sparse)
        ratios += [np.nanmedian(1 / (fit.scale * d + fit.shift) / t) for d, t in zip(disparity, truth, strict=True)]
    return float(np.median(ratios)), scale


@pytest.mark.parametrize("wild", [0.0, 0.2, 0.4, 0.5])
def test_the_metric_scale_holds_with_half_the_samples_wild(wild: float) -> None:
    """Wild samples (depths uniform in 0.2-10 m: sunlight, glass, multipath) bunch at small inverse depth, where each
    sample's absolute residual is small. The robust fit held with a fifth of them but not with 40 % (/depth 1.39 of
    the truth) or half (1.59). A dense depth image's wild samples are told by their neighbours now (each agrees with
    fewer than half of them), and left out before the fit."""
    ratio, _ = depth_over_truth(wild)
    print(f"wild {wild:.0%}: /depth over the truth {ratio:.3f}")  # docs/node.md
    assert abs(ratio - 1) < 0.03, ratio


def test_a_sparse_input_keeps_every_sample() -> None:
    """Points alone among holes (GT points, a tracker's, a LiDAR's) have no neighbours to be told wild by: every one
    reaches the model's grid, whatever its depth (as before the wild-sample rule: the accuracy table's sparse and
    pose rows rest on such points)."""
    rng = np.random.default_rng(2)
    z = np.full((H, W), np.nan, np.float32)
    ys, xs = rng.integers(0, H // 3, 500) * 3, rng.integers(0, W // 3, 500) * 3  # never two in one cell
    z[ys, xs] = rng.uniform(0.2, 10.0, 500)
    for shape in ((W, H), (W // 3, H // 3), (2 * W, 2 * H)):
        kept = resample_sparse_depth(z, *shape)
        assert np.count_nonzero(np.isfinite(kept)) == np.count_nonzero(np.isfinite(z)), shape
        assert np.allclose(np.sort(kept[np.isfinite(kept)]), np.sort(z[np.isfinite(z)])), shape


@pytest.mark.parametrize(
    ("wild", "reach", "extrapolates"), [(0.0, np.inf, False), (0.4, np.inf, False), (0.0, 0.8, True)]
)
def test_a_fit_on_samples_of_part_of_the_scene_is_told_apart(wild: float, reach: float, extrapolates: bool) -> None:
    """A depth sensor reaching 0.8 m in a 2.8 m scene: the fit rests on the near samples and /depth beyond them is
    extrapolated (0.85 of the truth here). The samples' span in metres, or the share of /depth beyond it, could
    not tell: the fit squeezes the far pixels into the samples' range. In the model's disparity it can."""
    ratio, scale = depth_over_truth(wild, reach)
    assert scale.extrapolated is not None
    print(f"wild {wild:.0%}, reach {reach} m: extrapolated {scale.extrapolated:.1%}, /depth over truth {ratio:.3f}")
    assert (scale.extrapolated > MAX_EXTRAPOLATED) == extrapolates, (scale.extrapolated, ratio)
