"""The video-depth evaluation protocol of DepthCrafter / Video Depth Anything / DVD / GemDepth.

1. Valid pixels: `min_depth < gt < max_depth` (caps: 10 m indoor, 80 m KITTI) and finite.
2. The prediction (relative disparity) is clipped to >= 1e-3, then ONE least-squares scale and
   shift per sequence is fitted in disparity space over all valid pixels of all frames:
   `[pred, 1] @ [s, t] ~= 1 / gt`.
3. `aligned = max(s * pred + t, 1e-3)`, `depth = clip(1 / aligned, 1e-3, max_depth)`.
4. AbsRel and delta1 in depth space, averaged over the valid pixels of each frame, then over
   frames (frames without valid pixels are skipped).
5. TAE (Depth Any Video; VDA `benchmark/eval/eval_tae.py`) on the aligned depth with the GT camera:
   `vdepth_ros.consistency.temporal_alignment_error` (it sits below `offline/` and `eval/`, which
   both use it).

Our diagnostic, not the papers': the nearness gain (`nearness_gain`), the least-squares slope of
the per-frame log median aligned depth on the per-frame log median GT depth. 1 = the prediction
follows how near the scene gets as the camera moves; 0 = it keeps one overall scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vdepth_ros.consistency import temporal_alignment_error

PRED_FLOOR = 1e-3


@dataclass
class DepthMetrics:
    """Metrics of one sequence under the per-sequence affine protocol.

    Attributes:
        abs_rel: mean |d - gt| / gt (per frame, then over frames).
        delta1: fraction with max(d / gt, gt / d) < 1.25 (per frame, then over frames).
        tae: temporal alignment error x100 (None when poses/intrinsics are missing).
        scale, shift: the fitted disparity affine.
        frames: frames with at least one valid pixel.
        nearness_gain: `nearness_gain` of the aligned depth (None when not computed or undefined).
    """

    abs_rel: float
    delta1: float
    tae: float | None
    scale: float
    shift: float
    frames: int
    nearness_gain: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def valid_mask(gt_depth: np.ndarray, max_depth: float, min_depth: float = 1e-3) -> np.ndarray:
    """`(T, H, W)` bool: finite GT depth strictly inside (min_depth, max_depth)."""
    gt = np.asarray(gt_depth)
    return np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)


def fit_disparity_affine(pred: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """One least-squares (scale, shift) with `scale * max(pred, 1e-3) + shift ~= 1 / gt` on `valid`.

    Accumulates the 2x2 normal equations in float64 over frames, so long sequences need no
    stacked copy. A constant prediction (singular system) gets the minimum-norm solution, like
    `np.linalg.lstsq` in the reference code.
    """
    pred = np.asarray(pred)
    ata = np.zeros((2, 2))
    atb = np.zeros(2)
    for k in range(pred.shape[0]):
        m = valid[k]
        if not m.any():
            continue
        p = np.maximum(pred[k][m].astype(np.float64), PRED_FLOOR)
        g = 1.0 / gt_depth[k][m].astype(np.float64)
        n = float(p.size)
        sp, spp = p.sum(), (p * p).sum()
        ata += np.array([[spp, sp], [sp, n]])
        atb += np.array([(p * g).sum(), g.sum()])
    if ata[1, 1] == 0:
        raise ValueError("no valid ground-truth pixel in the sequence")
    sol = np.linalg.pinv(ata, rcond=1e-12) @ atb
    return float(sol[0]), float(sol[1])


def aligned_depth(pred: np.ndarray, scale: float, shift: float, max_depth: float) -> np.ndarray:
    """Relative disparity -> depth in metres with the fitted affine, clipped as the protocol does."""
    disp = np.maximum(scale * np.maximum(np.asarray(pred, np.float64), PRED_FLOOR) + shift, PRED_FLOOR)
    return np.clip(1.0 / disp, PRED_FLOOR, max_depth).astype(np.float32)


def frame_metrics(depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray) -> tuple[float, float] | None:
    """(AbsRel, delta1) of one frame over `valid`, or None when no pixel is valid."""
    if not valid.any():
        return None
    d, g = depth[valid].astype(np.float64), gt_depth[valid].astype(np.float64)
    abs_rel = float(np.mean(np.abs(d - g) / g))
    delta1 = float(np.mean(np.maximum(d / g, g / d) < 1.25))
    return abs_rel, delta1


def nearness_gain(depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, min_spread: float = 0.05) -> float | None:
    """Least-squares slope of log median `depth` on log median `gt_depth`, one point per frame.

    Medians over each frame's `valid` pixels; frames without any are skipped. None when fewer than
    two frames remain or the GT medians vary by less than `min_spread` in log (a camera that does
    not approach or leave the scene says nothing about the gain).
    """
    x, y = [], []
    for k in range(len(depth)):
        if valid[k].any():
            x.append(np.log(np.median(gt_depth[k][valid[k]])))
            y.append(np.log(max(float(np.median(depth[k][valid[k]])), PRED_FLOOR)))
    if len(x) < 2:
        return None
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if xa.max() - xa.min() < min_spread:
        return None
    xc = xa - xa.mean()
    return float(xc @ (ya - ya.mean()) / (xc @ xc))


def _scoring_inputs(
    pred: np.ndarray, gt_depth: np.ndarray, max_depth: float, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 prediction with NaN/inf at the floor, and the pixels that are scored."""
    pred = np.nan_to_num(np.asarray(pred, np.float32), nan=PRED_FLOOR, posinf=PRED_FLOOR, neginf=PRED_FLOOR)
    if pred.shape != gt_depth.shape:
        raise ValueError(f"prediction {pred.shape} and GT {gt_depth.shape} differ: resize to GT first")
    valid = valid_mask(gt_depth, max_depth)
    if mask is not None:
        valid &= mask
    return pred, valid


def _frame_means(
    depth: np.ndarray,
    gt_depth: np.ndarray,
    valid: np.ndarray,
    *,
    tae: float | None,
    scale: float,
    shift: float,
    gain: float | None = None,
) -> DepthMetrics:
    """`DepthMetrics` of aligned `depth`: AbsRel and δ1 per frame with valid GT, then over frames."""
    per = [m for k in range(len(depth)) if (m := frame_metrics(depth[k], gt_depth[k], valid[k])) is not None]
    return DepthMetrics(
        abs_rel=float(np.mean([m[0] for m in per])),
        delta1=float(np.mean([m[1] for m in per])),
        tae=tae,
        scale=scale,
        shift=shift,
        frames=len(per),
        nearness_gain=gain,
    )


def evaluate_sequence(
    pred: np.ndarray,
    gt_depth: np.ndarray,
    max_depth: float,
    *,
    intrinsics: np.ndarray | None = None,
    poses: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> DepthMetrics:
    """The full protocol on one sequence.

    Args:
        pred: `(T, H, W)` relative disparity at GT resolution (NaN = no prediction -> floor).
        gt_depth: `(T, H, W)` metres, 0 / non-finite invalid.
        max_depth: depth cap (10 indoor, 80 KITTI).
        intrinsics, poses: GT camera for TAE (`(3, 3)` or `(T, 3, 3)`, `(T, 4, 4)` camera-to-world).
        mask: optional extra `(T, H, W)` validity (e.g. a crop).

    Returns:
        `DepthMetrics`.
    """
    pred, valid = _scoring_inputs(pred, gt_depth, max_depth, mask)
    s, t = fit_disparity_affine(pred, gt_depth, valid)
    depth = aligned_depth(pred, s, t, max_depth)
    tae = None
    if intrinsics is not None and poses is not None:
        tae = temporal_alignment_error(depth, intrinsics, poses)
    gain = nearness_gain(depth, gt_depth, valid)
    return _frame_means(depth, gt_depth, valid, tae=tae, scale=s, shift=t, gain=gain)


def evaluate_per_frame_fit(
    pred: np.ndarray, gt_depth: np.ndarray, max_depth: float, *, mask: np.ndarray | None = None
) -> DepthMetrics:
    """Diagnostic, not the papers' protocol: AbsRel and δ1 with one (scale, shift) fitted per frame.

    The gap between this and `evaluate_sequence` is the error that comes only from the scale and
    shift of the prediction drifting across frames (a perfectly consistent video prediction loses
    nothing to the per-sequence fit). TAE is not defined under per-frame fits (None).
    """
    pred, valid = _scoring_inputs(pred, gt_depth, max_depth, mask)
    depth = np.full(pred.shape, max_depth, np.float32)  # frames without valid GT are not scored
    for k in range(len(pred)):
        if valid[k].any():  # the fit refuses a frame without valid GT
            s, t = fit_disparity_affine(pred[k : k + 1], gt_depth[k : k + 1], valid[k : k + 1])
            depth[k] = aligned_depth(pred[k], s, t, max_depth)
    return _frame_means(depth, gt_depth, valid, tae=None, scale=float("nan"), shift=float("nan"))


def evaluate_metric(
    inv_depth: np.ndarray, gt_depth: np.ndarray, max_depth: float, *, mask: np.ndarray | None = None
) -> DepthMetrics:
    """Diagnostic for metric output (not the papers' protocol): AbsRel and δ1 of `1 / inv_depth` as
    it is, without any fit to the GT, i.e. how metric a metric output really is."""
    pred, valid = _scoring_inputs(inv_depth, gt_depth, max_depth, mask)
    return _frame_means(aligned_depth(pred, 1.0, 0.0, max_depth), gt_depth, valid, tae=None, scale=1.0, shift=0.0)


#: Depth Pro's boundary thresholds: neighbouring depths differing by a ratio of 1.05 .. 1.25.
BOUNDARY_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(1.05, 1.25, 10))


def boundary_f1(
    depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, thresholds: tuple[float, ...] = BOUNDARY_THRESHOLDS
) -> float | None:
    """Scale-invariant depth-boundary F1 of one frame (Depth Pro, Bochkovskii et al. 2024, arXiv
    2410.02073, Sec. 4: "occluding contours" from neighbouring-pixel depth ratios).

    For each threshold t, a pixel and its neighbour (four directions) form a contour when the
    neighbour is more than t times farther; precision P and recall R of the predicted contours
    against the GT's (counts pooled over the directions: a frame whose edges all face one way is
    not penalised for the other three), F1 = 2PR / (P + R), and the F1s are averaged with weights
    proportional to t. Only pairs of two `valid` pixels count (Depth Pro's synthetic GT is dense;
    ours has holes). Ratios make it invariant to a depth scale.

    Returns:
        The F1 in [0, 1], or None when the GT has no contour at the smallest threshold.
    """
    d = np.where(valid, np.asarray(depth, np.float64), np.nan)
    g = np.where(valid, np.asarray(gt_depth, np.float64), np.nan)
    pairs = [
        (d[:, 1:], d[:, :-1], g[:, 1:], g[:, :-1]),  # right neighbour farther
        (d[:, :-1], d[:, 1:], g[:, :-1], g[:, 1:]),  # left
        (d[1:, :], d[:-1, :], g[1:, :], g[:-1, :]),  # below
        (d[:-1, :], d[1:, :], g[:-1, :], g[1:, :]),  # above
    ]
    f1s = []
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = [(a / b, c / e) for a, b, c, e in pairs]  # NaN (an invalid pixel) is never > t
        for t in thresholds:
            hits = n_pred = n_gt = 0
            for rp, rg in ratios:
                cp, cg = rp > t, rg > t
                hits += np.count_nonzero(cp & cg)
                n_pred += np.count_nonzero(cp)
                n_gt += np.count_nonzero(cg)
            if t == thresholds[0] and n_gt == 0:
                return None
            p, r = hits / max(n_pred, 1), hits / max(n_gt, 1)
            f1s.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    w = np.asarray(thresholds, np.float64)
    return float(np.sum(np.asarray(f1s) * w) / w.sum())


def constant_prediction(shape: tuple[int, ...]) -> np.ndarray:
    """Trivial baseline: the same disparity everywhere (after the fit: the mean GT disparity)."""
    return np.ones(shape, np.float32)


def row_ramp_prediction(shape: tuple[int, ...]) -> np.ndarray:
    """Trivial baseline: disparity growing linearly from the top image row to the bottom one
    (a ground plane seen by a level camera)."""
    t, h, w = shape
    ramp = (np.arange(h, dtype=np.float32) + 0.5) / h
    return np.broadcast_to(ramp[None, :, None], (t, h, w)).copy()


__all__ = [
    "BOUNDARY_THRESHOLDS",
    "DepthMetrics",
    "aligned_depth",
    "boundary_f1",
    "constant_prediction",
    "evaluate_per_frame_fit",
    "evaluate_sequence",
    "fit_disparity_affine",
    "frame_metrics",
    "nearness_gain",
    "row_ramp_prediction",
    "valid_mask",
]
