"""The two-view scale study's building blocks: depth ratios from two-view geometry, and the
per-frame scale solve (the study itself reads the evaluation data; see training/README.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from vdepth_training.study_two_view_scale import pair_log_depth_ratios, solve_frame_log_scales


def test_two_view_depth_ratios_match_the_rendered_depth() -> None:
    pytest.importorskip("embreex")
    from vdepth_training.data.synthetic import render_clip

    clip = render_clip(1003, frames=9, height=192, width=256, style="rich")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.rgb]
    checked = 0
    for i, j in ((0, 4), (2, 8)):
        r = pair_log_depth_ratios(gray[i], gray[j], clip.intrinsics)
        assert r is not None and len(r.log_ratio) >= 30

        def z(frame: int, pts: np.ndarray) -> np.ndarray:
            x, y = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
            return clip.depth[frame][y, x]

        zi, zj = z(i, r.pts_i), z(j, r.pts_j)
        ok = (zi > 0) & (zj > 0)
        truth = np.log(zj[ok] / zi[ok])
        # per point the ratio is exact up to tracking noise; the pair's median to within 1 %
        assert abs(np.median(r.log_ratio[ok]) - np.median(truth)) < 0.01
        assert np.median(np.abs(r.log_ratio[ok] - truth)) < 0.03
        checked += 1
    assert checked == 2


def test_two_view_ratios_need_texture() -> None:
    flat = np.full((96, 128), 128, np.uint8)
    assert pair_log_depth_ratios(flat, flat, np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])) is None


def test_frame_scale_solve_recovers_scales_from_pair_differences() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 0.2, 30)
    truth -= truth.mean()
    # frame 10 has no gap-1 pair to 11; gap-3 pairs still connect every frame
    cons = [(i, i + g, truth[i + g] - truth[i], 1.0) for g in (1, 3) for i in range(30 - g) if (g, i) != (1, 10)]
    got = solve_frame_log_scales(cons, 30, smoothness=1e-4)
    np.testing.assert_allclose(got, truth, atol=1e-3)
    # with the weak pull of neighbours together, the same constraints give a smoother answer
    smooth = solve_frame_log_scales(cons, 30, smoothness=10.0)
    assert np.abs(np.diff(smooth)).sum() < np.abs(np.diff(truth)).sum()
