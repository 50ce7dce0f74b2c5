"""Disparity <-> metric depth.

Alignment happens in disparity (the models' native space); conversion to metres happens once,
at the end: `depth = 1 / max(s * d + t, eps)`, clipped to `[min_depth, max_depth]`; invalid
(NaN) disparity gives NaN depth (REP 118: 32FC1 metres, NaN invalid).
"""

from __future__ import annotations

import numpy as np

from vdepth_ros.errors import ConfigError


def check_depth_range(min_depth: float, max_depth: float) -> None:
    """Raise ConfigError unless `0 < min_depth < max_depth`."""
    if not 0 < min_depth < max_depth:
        raise ConfigError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")


def depth_from_disparity(
    disparity: np.ndarray,
    scale: float = 1.0,
    shift: float = 0.0,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 1e3,
    eps: float = 1e-6,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Metric depth from relative disparity.

    Args:
        disparity: `(..., H, W)` disparity (any float dtype), NaN = invalid.
        scale, shift: metric inverse depth = `scale * disparity + shift` (1/m).
        min_depth, max_depth: output clip in metres.
        eps: floor of the inverse depth before inversion (1/m); non-positive -> max_depth.
        out: optional float32 output buffer of the same shape.

    Returns:
        float32 depth in metres, NaN where the disparity is NaN.
    """
    check_depth_range(min_depth, max_depth)
    out = np.multiply(disparity, np.float32(scale), out=out, dtype=np.float32)
    if shift:
        out += np.float32(shift)
    # Clipping the inverse depth to [max(eps, 1/max_depth), 1/min_depth] before inverting equals
    # clipping the depth afterwards, with one pass less (this runs on every pixel of every frame).
    np.maximum(out, np.float32(max(eps, 1.0 / max_depth)), out=out)  # NaN propagates
    np.minimum(out, np.float32(1.0 / min_depth), out=out)
    np.reciprocal(out, out=out)
    return out


def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
    """`1 / depth` as float32; non-finite or non-positive depth -> NaN."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.reciprocal(d)
    inv[~(np.isfinite(d) & (d > 0))] = np.nan
    return inv
