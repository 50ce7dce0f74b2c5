"""One colour-map rule for every preview: the node's `~/depth_colormap` and `vdepth-video`'s video."""

from __future__ import annotations

import cv2
import numpy as np


def colorize(values: np.ndarray, vmin: float, vmax: float, *, near_is_high: bool) -> np.ndarray:
    """`(H, W, 3)` uint8 BGR INFERNO image of `values` in `[vmin, vmax]`; near is bright, NaN black.

    Args:
        values: depth (metres, near = small) or disparity (near = large).
        vmin, vmax: value range mapped onto the colour map (clipped outside).
        near_is_high: True for disparity.
    """
    span = vmax - vmin if vmax > vmin else 1.0
    norm = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0)
    if not near_is_high:
        norm = 1.0 - norm
    bgr = cv2.applyColorMap((255 * norm).astype(np.uint8), cv2.COLORMAP_INFERNO)
    bgr[~np.isfinite(values)] = 0
    return bgr
