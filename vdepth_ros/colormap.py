"""One colour rule and one preview layout for every preview: the node's `~/depth_colormap`,
`vdepth-video`'s `preview.mp4` and the demo.

Colours: INFERNO, near = bright (yellow), far = dark (purple); values beyond the colour range take
its end colours, so REP 118's +Inf (beyond the far limit) shows as the far colour and -Inf as the
near colour; no estimate (NaN) is black, a colour the scale itself never uses.

`preview_image` lays out the input image and the colourised depth side by side at the input's
aspect ratio, with a colour bar below that names the units ("m", or relative disparity when there
is no metric scale), the values at its ends and the near/far convention.
"""

from __future__ import annotations

import cv2
import numpy as np

#: colour-map indices used for valid values: INFERNO's first entries are nearly black, and black
#: is reserved for "no estimate".
_FIRST_INDEX = 40


def colorize(values: np.ndarray, vmin: float, vmax: float, *, near_is_high: bool) -> np.ndarray:
    """`(H, W, 3)` uint8 BGR INFERNO image of `values` in `[vmin, vmax]`; near is bright, NaN black.

    Args:
        values: depth (metres, near = small) or disparity (near = large); +-Inf take the end colours.
        vmin, vmax: value range mapped onto the colour map (clipped outside).
        near_is_high: True for disparity.
    """
    span = vmax - vmin if vmax > vmin else 1.0
    with np.errstate(invalid="ignore"):
        norm = np.clip((np.nan_to_num(values, nan=vmin, posinf=vmax, neginf=vmin) - vmin) / span, 0.0, 1.0)
    if not near_is_high:
        norm = 1.0 - norm
    index = (_FIRST_INDEX + (255 - _FIRST_INDEX) * norm).astype(np.uint8)
    bgr = cv2.applyColorMap(index, cv2.COLORMAP_INFERNO)
    bgr[np.isnan(values)] = 0
    return bgr


def auto_range(values: np.ndarray) -> tuple[float, float]:
    """2nd-98th percentile of the finite values (a fallback range when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [2.0, 98.0])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def units_label(metric: bool, scale_source: str = "") -> str:
    """What the preview's values are: metres (noting an assumed range) or relative disparity."""
    if not metric:
        return "relative disparity (no metric scale)"
    return "depth [m], from the assumed near/far range" if scale_source == "range" else "depth [m]"


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, align: str = "left") -> None:
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = org[0] - (tw if align == "right" else tw // 2 if align == "centre" else 0)
    x = int(min(max(x, 1), img.shape[1] - tw - 1))
    cv2.putText(img, text, (x, org[1]), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def colour_bar(width: int, vmin: float, vmax: float, *, metric: bool, label: str) -> np.ndarray:
    """`(h, width, 3)` BGR strip: the units line, the near/far legend, then the colour scale from
    near (left) to far (right) with its end values (metres) or "near"/"far" (relative)."""
    legend = "bright = near, dark = far, black = no estimate"
    scale = float(np.clip(width / 1100.0, 0.3, 0.7))
    while (
        scale > 0.25
        and max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for t in (label, legend)) > width - 8
    ):
        scale *= 0.9
    line = int(24 * scale) + 6
    bar_h = max(5, int(16 * scale))
    strip = np.zeros((3 * line + bar_h + 10, width, 3), np.uint8)
    _text(strip, label, (4, line), scale)
    _text(strip, legend, (4, 2 * line), scale)
    top = 2 * line + 6
    ramp = np.linspace(1.0, 0.0, width - 8, dtype=np.float32)  # near (bright) on the left
    idx = (_FIRST_INDEX + (255 - _FIRST_INDEX) * ramp).astype(np.uint8)[None, :].repeat(bar_h, 0)
    strip[top : top + bar_h, 4 : width - 4] = cv2.applyColorMap(idx, cv2.COLORMAP_INFERNO)
    near, far = (f"{_fmt(vmin)} m", f"{_fmt(vmax)} m") if metric else ("near", "far")
    y = top + bar_h + line - 2
    _text(strip, near, (4, y), scale)
    _text(strip, far, (width - 4, y), scale, align="right")
    if metric:
        _text(strip, f"{_fmt(0.5 * (vmin + vmax))} m", (width // 2, y), scale, align="centre")
    return strip


def preview_image(
    values: np.ndarray,
    rgb: np.ndarray | None,
    vmin: float,
    vmax: float,
    *,
    metric: bool,
    label: str | None = None,
) -> np.ndarray:
    """BGR preview: the input image and the colourised values side by side, a colour bar below.

    Args:
        values: `(h, w)` depth in metres (`metric`) or relative disparity, registered to `rgb`.
        rgb: `(h, w, 3)` uint8 RGB at the same resolution (None: a black panel; the layout stays).
        vmin, vmax: the colour range (metres; disparity: its low (far) and high (near) values).
        metric: True for depth, False for relative disparity (near = high values).
        label: units line (default `units_label(metric)`).
    """
    h, w = values.shape
    depth = colorize(values, vmin, vmax, near_is_high=not metric)
    left = np.zeros_like(depth) if rgb is None else np.ascontiguousarray(rgb[..., ::-1])
    if left.shape[:2] != (h, w):
        left = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA)
    bar = colour_bar(2 * w, vmin, vmax, metric=metric, label=label or units_label(metric))
    return np.concatenate([np.concatenate([left, depth], axis=1), bar], axis=0)
