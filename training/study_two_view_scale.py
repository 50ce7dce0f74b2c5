"""Does the camera's own motion tell how the default model's scale drifts? A development-set study.

Most of the default model's error on real video is its scale changing across frames (`vdepth-eval
--per-frame-fit`). Two-view geometry measures how much nearer or farther the scene got between two
frames without any learned prior, so this study asks whether that signal can correct the model::

    python -m vdepth_training.study_two_view_scale [--model DIR] [--frames 120]

It reads the HoloLens sequence of `../shared/evaldata` only (the development set; 7-Scenes is the
acceptance set and is not studied). For frame pairs (k, k + g), g in `GAPS`: KLT tracks with a
forward-backward check, the essential matrix from the dataset's intrinsics (RANSAC), the pose,
and triangulated points, which give the log depth ratio of each tracked point between the two
frames. The same ratio is read from the GT and from the model's offline output aligned with the
protocol's one sequence affine. Printed as JSON:

- `pairs`: per gap, the mean |geometry - GT| and |model - GT| of each pair's median log ratio, and
  their correlations with the GT's;
- `corrected`: sequence AbsRel/δ1 after one depth scale per frame solved from the pairs' ratios
  (least squares over all pairs, weak smoothness between neighbours), with the geometric ratios
  and, as an oracle, with the GT's ratios at the same points;
- `oracles`: one depth scale per frame from all GT pixels, and one scale + shift per 4 frames
  fitted to the GT at the tracked points only (what a sparse depth sensor would give).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vdepth_ros.paths import expand_home

GAPS: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
_LK = {"winSize": (31, 31), "maxLevel": 5}


@dataclass
class PairRatios:
    """Tracked points of frames i and j (pixels, `(N, 2)`) and their two-view log depth ratio
    log(z_j / z_i) (`(N,)`), in the units of one triangulation (so the ratio is scale-free)."""

    pts_i: np.ndarray
    pts_j: np.ndarray
    log_ratio: np.ndarray


def pair_log_depth_ratios(
    gray_i: np.ndarray, gray_j: np.ndarray, K: np.ndarray, max_points: int = 1000, min_points: int = 15
) -> PairRatios | None:
    """Two-view depth ratios of the points tracked from `gray_i` to `gray_j`, or None when too few
    points survive tracking, RANSAC and the positive-depth check."""
    p0 = cv2.goodFeaturesToTrack(gray_i, max_points, 0.01, 7)
    if p0 is None or len(p0) < min_points:
        return None
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(gray_i, gray_j, p0, None, **_LK)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray_j, gray_i, p1, None, **_LK)
    ok = (ok1[:, 0] == 1) & (ok2[:, 0] == 1) & (np.linalg.norm(back - p0, axis=2)[:, 0] < 1.0)
    a, b = p0[ok, 0].astype(np.float64), p1[ok, 0].astype(np.float64)
    if len(a) < min_points:
        return None
    E, inliers = cv2.findEssentialMat(a, b, K, cv2.RANSAC, 0.999, 1.0)
    if E is None or E.shape != (3, 3):
        return None
    _, R, t, mask = cv2.recoverPose(E, a, b, K, mask=inliers.copy())
    keep = mask[:, 0] > 0
    a, b = a[keep], b[keep]
    if len(a) < min_points:
        return None
    X = cv2.triangulatePoints(K @ np.hstack([np.eye(3), np.zeros((3, 1))]), K @ np.hstack([R, t]), a.T, b.T)
    X = (X[:3] / X[3]).T
    z_i, z_j = X[:, 2], (X @ R.T + t[:, 0])[:, 2]
    front = (z_i > 0) & (z_j > 0)
    if front.sum() < min_points:
        return None
    return PairRatios(a[front], b[front], np.log(z_j[front] / z_i[front]))


def solve_frame_log_scales(
    constraints: list[tuple[int, int, float, float]], num_frames: int, smoothness: float = 0.3
) -> np.ndarray:
    """Per-frame log scales l (mean 0) from (i, j, c, weight) meaning l_j - l_i = c, by weighted
    least squares with a weak pull of neighbours together (frames no pair reaches stay connected)."""
    rows, rhs, weights = [], [], []
    for i, j, c, wgt in constraints:
        r = np.zeros(num_frames)
        r[j], r[i] = 1.0, -1.0
        rows.append(r)
        rhs.append(c)
        weights.append(wgt)
    for k in range(1, num_frames):
        r = np.zeros(num_frames)
        r[k], r[k - 1] = 1.0, -1.0
        rows.append(r)
        rhs.append(0.0)
        weights.append(smoothness)
    rows.append(np.ones(num_frames))
    rhs.append(0.0)
    weights.append(1.0)
    w = np.asarray(weights)
    return np.linalg.lstsq(np.asarray(rows) * w[:, None], np.asarray(rhs) * w, rcond=None)[0]


def _sample(img: np.ndarray, pts: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    x = np.clip(np.rint(pts[:, 0] * scale_xy[0]).astype(int), 0, img.shape[1] - 1)
    y = np.clip(np.rint(pts[:, 1] * scale_xy[1]).astype(int), 0, img.shape[0] - 1)
    return img[y, x]


def study(model: str | None, evaldata: str, frames: int) -> dict:
    from vdepth_ros.eval import runs
    from vdepth_ros.eval.datasets import load_dataset
    from vdepth_ros.eval.metrics import aligned_depth, evaluate_sequence, fit_disparity_affine, valid_mask
    from vdepth_ros.runtime import create_engine
    from vdepth_ros.runtime.checks import checked_model

    seq = load_dataset("hololens", evaldata, frames=frames)[0]
    engine = create_engine(checked_model(model or "default"), backend="onnxruntime", threads=2)
    pred = runs.run_offline(engine, seq)
    gt, valid = seq.depth, valid_mask(seq.depth, seq.max_depth)
    T, h, w = gt.shape
    sxy = (w / seq.rgb.shape[2], h / seq.rgb.shape[1])
    K = seq.rgb_intrinsics.astype(np.float64)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in seq.rgb]

    def score(depth: np.ndarray) -> dict[str, float]:
        """The evaluation protocol (`vdepth-eval`) on a depth prediction."""
        m = evaluate_sequence(1.0 / np.maximum(depth, 1e-3), gt, seq.max_depth)
        return {"abs_rel": round(m.abs_rel, 4), "delta1": round(m.delta1, 4)}

    s, b = fit_disparity_affine(pred, gt, valid)
    depth = aligned_depth(pred, s, b, seq.max_depth)
    # (i, j) -> (two-view ratios, GT log ratios, model log ratios) at the points with GT
    pairs: dict[tuple[int, int], tuple[PairRatios, np.ndarray, np.ndarray]] = {}
    for g in GAPS:
        for i in range(T - g):
            r = pair_log_depth_ratios(gray[i], gray[i + g], K)
            if r is None:
                continue
            gi, gj = _sample(gt[i], r.pts_i, sxy), _sample(gt[i + g], r.pts_j, sxy)
            ok = (gi > 0) & (gj > 0) & (gi < seq.max_depth) & (gj < seq.max_depth)
            if ok.sum() < 10:
                continue
            log_gt = np.log(gj[ok] / gi[ok])
            log_model = np.log(_sample(depth[i + g], r.pts_j[ok], sxy) / _sample(depth[i], r.pts_i[ok], sxy))
            pairs[(i, i + g)] = (PairRatios(r.pts_i[ok], r.pts_j[ok], r.log_ratio[ok]), log_gt, log_model)

    out: dict = {"dataset": seq.name, "frames": T, "model_offline": score(depth), "pairs": {}, "corrected": {}}
    for g in GAPS:
        rows = [
            (np.median(p.log_ratio), np.median(lg), np.median(lm))
            for (i, j), (p, lg, lm) in pairs.items()
            if j - i == g
        ]
        if len(rows) < 3:
            continue
        geo, ref, mod = (np.asarray(c) for c in zip(*rows, strict=True))
        out["pairs"][str(g)] = {
            "pairs": len(rows),
            "mean_abs_err_geometry": round(float(np.abs(geo - ref).mean()), 4),
            "mean_abs_err_model": round(float(np.abs(mod - ref).mean()), 4),
            "corr_geometry_gt": round(float(np.corrcoef(geo, ref)[0, 1]), 3),
            "corr_model_gt": round(float(np.corrcoef(mod, ref)[0, 1]), 3),
        }
    for name, use_gt in (("geometry_ratios", False), ("gt_ratios_at_tracks", True)):
        cons = [
            (i, j, float(np.median((lg if use_gt else p.log_ratio) - lm)), float(np.sqrt(len(lm))))
            for (i, j), (p, lg, lm) in pairs.items()
        ]
        scales = solve_frame_log_scales(cons, T)
        out["corrected"][name] = score(depth * np.exp(scales)[:, None, None])
    per_frame = np.array(
        [np.median(np.log(gt[k][valid[k]] / depth[k][valid[k]])) if valid[k].any() else 0.0 for k in range(T)]
    )
    fits: dict[int, np.ndarray] = {}
    for s0 in range(0, T, 4):
        d_, g_ = [], []
        for (i, j), (p, _, _) in pairs.items():
            for k, pts in ((i, p.pts_i), (j, p.pts_j)):
                if s0 <= k < s0 + 4:
                    gk = _sample(gt[k], pts, sxy)
                    m = gk > 0
                    d_.append(_sample(pred[k], pts[m], sxy))
                    g_.append(1.0 / gk[m])
        if d_ and sum(map(len, d_)) >= 30:
            d, gv = np.concatenate(d_).astype(np.float64), np.concatenate(g_)
            fits[s0] = np.linalg.lstsq(np.stack([d, np.ones_like(d)], 1), gv, rcond=None)[0]
    sparse = np.array(pred, np.float64)
    starts = np.array(sorted(fits))
    for s0 in range(0, T, 4):  # a window without enough tracked points takes its nearest fitted neighbour's
        a, c = fits[int(starts[np.argmin(np.abs(starts - s0))])]
        sparse[s0 : s0 + 4] = a * pred[s0 : s0 + 4] + c
    out["oracles"] = {
        "one_depth_scale_per_frame_from_all_gt": score(depth * np.exp(per_frame)[:, None, None]),
        "scale_shift_per_4_frames_from_gt_at_tracks": score(1.0 / np.maximum(sparse, 1e-6)),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default=None, help="model folder or pulled release name (default: the bundled default model)"
    )
    ap.add_argument("--evaldata", default=None, help="evaldata root (default: as vdepth-eval)")
    ap.add_argument("--frames", type=int, default=120)
    args = ap.parse_args(argv)
    expand_home(args)
    from vdepth_ros.paths import evaldata_dir

    root = Path(args.evaldata) if args.evaldata else evaldata_dir()
    if root is None or not root.is_dir():
        ap.error("evaluation data not found: pass --evaldata or set VDEPTH_EVALDATA")
    from vdepth_ros.offline.runner import stdout_for_results

    with stdout_for_results():  # stdout: the JSON alone, whatever the runtime prints
        result = study(args.model, str(root), args.frames)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
