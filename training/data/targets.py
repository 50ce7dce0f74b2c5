"""Target normalisations from the papers: depth/disparity -> the [0, 1] disparity each recipe regresses.

All functions take a clip `target` (T, H, W) float32 with its `valid` (T, H, W) bool mask and
return `(disparity01, valid)` with invalid pixels set to 0. Larger value = nearer.

| name              | paper                        | normalisation                                           |
|-------------------|------------------------------|---------------------------------------------------------|
| `minmax_sequence` | DepthCrafter Supp. A.1, 003  | one min/max over all valid pixels of all frames          |
| `quantile_clip`   | DVD (`trunc_disparity`)      | clip-level 2 % / 98 % quantiles, clipped to [0, 1]       |
| `per_frame`       | GemDepth App. A.1/A.2        | per-frame min/max, depth capped at the sky value (400 m) |
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Normalization = Literal["minmax_sequence", "quantile_clip", "per_frame", "none"]
NORMALIZATIONS: tuple[str, ...] = ("minmax_sequence", "quantile_clip", "per_frame", "none")

EPS = 1e-6


def to_disparity(
    target: np.ndarray,
    valid: np.ndarray,
    kind: str,
    *,
    max_depth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth -> disparity (1/depth), or pass disparity through.

    Args:
        target: (T, H, W) depth or disparity.
        valid: (T, H, W) bool.
        kind: "depth" or "disparity".
        max_depth: depth values above it are capped to it before inversion (GemDepth's sky cap of
            400 m; DVD clamps TartanAir at 50 m). Capped pixels stay valid.

    Returns:
        (disparity (T, H, W) float32, valid (T, H, W) bool); invalid pixels are 0.
    """
    valid = valid & np.isfinite(target) & (target > 0)
    t = np.where(valid, target, 1.0).astype(np.float32)
    if kind == "depth":
        if max_depth is not None:
            t = np.minimum(t, np.float32(max_depth))
        disp = 1.0 / t
    elif kind == "disparity":
        disp = t
    else:
        raise ValueError(f"target kind must be 'depth' or 'disparity', got {kind!r}")
    return np.where(valid, disp, 0.0).astype(np.float32), valid


def _affine01(disp: np.ndarray, valid: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    out = (disp - lo) / np.maximum(np.asarray(hi) - np.asarray(lo), EPS)
    return np.where(valid, out, 0.0).astype(np.float32)


def minmax_sequence(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """DepthCrafter/one-step target: (d - min) / (max - min) with one min/max over the whole clip.

    A constant clip (max == min) maps to 0.
    """
    if not valid.any():
        return np.zeros_like(disp)
    vals = disp[valid]
    return _affine01(disp, valid, vals.min(), vals.max())


def quantile_clip(disp: np.ndarray, valid: np.ndarray, low: float = 0.02, high: float = 0.98) -> np.ndarray:
    """DVD target: (d - q_low) / (q_high - q_low + 1e-5) over all frames jointly, clipped to [0, 1]."""
    if not valid.any():
        return np.zeros_like(disp)
    q_lo, q_hi = np.quantile(disp[valid], [low, high])
    out = (disp - q_lo) / (q_hi - q_lo + 1e-5)
    return np.where(valid, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)


def per_frame(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """GemDepth target: each frame's disparity min-max normalised to [0, 1] on its valid pixels."""
    out = np.zeros_like(disp, dtype=np.float32)
    for i in range(disp.shape[0]):
        if valid[i].any():
            out[i] = minmax_sequence(disp[i : i + 1], valid[i : i + 1])[0]
    return out


def normalize_target(
    target: np.ndarray,
    valid: np.ndarray,
    kind: str,
    normalization: Normalization,
    *,
    max_depth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth/disparity clip -> the recipe's normalised disparity.

    Args:
        target: (T, H, W) depth or disparity.
        valid: (T, H, W) bool.
        kind: "depth" or "disparity".
        normalization: one of `NORMALIZATIONS` ("none" returns raw disparity).
        max_depth: depth cap before inversion (sky = 400 for GemDepth, 50 for DVD TartanAir).

    Returns:
        (normalised disparity (T, H, W) float32 in [0, 1], valid (T, H, W) bool).
    """
    disp, valid = to_disparity(target, valid, kind, max_depth=max_depth)
    if normalization == "minmax_sequence":
        return minmax_sequence(disp, valid), valid
    if normalization == "quantile_clip":
        return quantile_clip(disp, valid), valid
    if normalization == "per_frame":
        return per_frame(disp, valid), valid
    if normalization == "none":
        return disp, valid
    raise ValueError(f"unknown normalization {normalization!r}; known: {NORMALIZATIONS}")


__all__ = [
    "NORMALIZATIONS",
    "Normalization",
    "minmax_sequence",
    "normalize_target",
    "per_frame",
    "quantile_clip",
    "to_disparity",
]
