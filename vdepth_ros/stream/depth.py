"""Disparity <-> metric depth, with REP 118's values for what is not a measurement.

Alignment happens in disparity (the models' native space); conversion to metres happens once, at
the end, from the metric inverse depth `q = s * d + t` (1/m):

* NaN disparity -> NaN ("no estimate");
* `q < 1 / max_depth` (including `q <= 0`: the affine maps the pixel beyond infinity) -> +Inf
  ("beyond the far limit": nothing to report closer than `max_depth`);
* `q > 1 / min_depth` -> -Inf ("closer than the near limit");
* otherwise `1 / q`.

So every finite output lies in `[min_depth, max_depth]` and no clipped value passes for a
measurement (REP 118: 32FC1 metres; NaN no return, +Inf too far, -Inf too close).
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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Metric depth from relative disparity (module docstring: the REP 118 values).

    Args:
        disparity: `(..., H, W)` disparity (any float dtype), NaN = invalid.
        scale, shift: metric inverse depth = `scale * disparity + shift` (1/m).
        min_depth, max_depth: the near and far limits in metres.
        out: optional float32 output buffer of the same shape.

    Returns:
        float32 depth in metres in `[min_depth, max_depth]`, NaN (no estimate), +Inf (beyond
        `max_depth`), -Inf (closer than `min_depth`).
    """
    check_depth_range(min_depth, max_depth)
    out = np.multiply(disparity, np.float32(scale), out=out, dtype=np.float32)
    if shift:
        out += np.float32(shift)
    far = out < np.float32(1.0 / max_depth)  # NaN compares False: stays NaN
    near = out > np.float32(1.0 / min_depth)
    with np.errstate(divide="ignore"):
        np.reciprocal(out, out=out)
    out[far] = np.inf
    out[near] = -np.inf
    return out


def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
    """`1 / depth` as float32; non-finite or non-positive depth -> NaN."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.reciprocal(d)
    inv[~(np.isfinite(d) & (d > 0))] = np.nan
    return inv
