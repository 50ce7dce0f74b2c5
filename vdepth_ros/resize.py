"""Resizing between the camera image, the model's working resolution and the output (no ROS, no torch).

Four decisions, each with named methods so that a family's reference mode can select its authors'
exact operations and users get the best ones by default:

* `working_size`: the (H, W) a model runs at for an input image. Engines that run any multiple of
  the family's stride get a keep-aspect size (`lower_bound_size`, Video Depth Anything's rule);
  fixed-shape exports get the exported shape closest in aspect (`closest_aspect`).
* `resize_frame`: camera RGB -> working resolution. "area" (uint8 `cv2.INTER_AREA`, the default:
  no aliasing when shrinking) or "bicubic" (VDA's `infer_video_depth`: float32 `/ 255` then
  `cv2.INTER_CUBIC`, values not clipped).
* `upsample`: working-resolution disparity -> output resolution. "edge_snap" (bilinear, except
  where the 2x2 working pixels span a depth discontinuity: there the output takes the one of the
  four depths closest to the bilinear value, so no depth floats between foreground and
  background; ~1 ms at 640x480), "edge_aware" (bilinear, except across depth edges, where a joint
  bilateral weight on the RGB keeps each output pixel on its own side of the edge; ~15 ms at
  640x480), "bilinear" (`cv2.INTER_LINEAR`, pixel-centre aligned, registered to the image),
  "bilinear_align_corners" (VDA: `F.interpolate(..., align_corners=True)`, which maps the corner
  pixels' centres onto each other and so shifts the interior by up to half a working pixel
  against an image resized pixel-centre aligned), "nearest".
* `registered_size`: the output resolution for "input" (the camera's, or smaller under a maximum
  width) and "model" (about the working resolution's pixel count) with the input's aspect ratio:
  exactly when an integer size has it (e.g. 256x192 for 640x480), else rounded per axis (the
  intrinsics are then scaled per axis, so the geometry stays exact).

OpenCV has no joint bilateral upsampling in its core wheel (`cv2.ximgproc` is opencv-contrib), so the
edge-aware step is written here in numpy, restricted to the pixels next to depth edges; neither has
a snap-to-neighbour mode, so edge_snap is cv2's bilinear plus a numpy gather at the discontinuities.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import cv2
import numpy as np

from vdepth_ros.errors import ConfigError

RESIZE_METHODS: tuple[str, ...] = ("area", "bicubic")
UPSAMPLE_METHODS: tuple[str, ...] = ("edge_snap", "edge_aware", "bilinear", "bilinear_align_corners", "nearest")
ResizeMethod = Literal["area", "bicubic"]
UpsampleMethod = Literal["edge_snap", "edge_aware", "bilinear", "bilinear_align_corners", "nearest"]

#: edge_snap: a 2x2 block of working pixels spans a depth discontinuity when its four disparities
#: differ by more than this fraction of the largest (a depth ratio above 1 / (1 - SNAP_RATIO)) and
#: one of them has a second difference that large too (a slanted plane has none: it stays bilinear).
SNAP_RATIO = 0.05

#: edge_aware: a 2x2 block of working pixels is at an edge when a second difference of the
#: disparity there exceeds this fraction of the frame's 2nd-98th percentile disparity range
#: (chosen on the renders of the dev set, benchmarks/upsample_dev.py "oracle").
EDGE_SPREAD = 0.02
#: edge_aware: Gaussian range weight on the luma difference (0..255) to each working pixel.
EDGE_SIGMA = 8.0
#: edge_aware: added to the range weight (so the weights never all vanish).
RANGE_FLOOR = 1e-3
#: edge_aware: above this fraction of edge blocks the frame is noise, not edges: plain bilinear
#: (bounds the cost; real depth maps flag a few percent).
MAX_EDGE_FRACTION = 0.25


# -- sizes ----------------------------------------------------------------------------------------
def _constrain(x: float, multiple: int, min_val: int) -> int:
    """VDA's `Resize.constrain_to_multiple_of` for "lower_bound": nearest multiple (numpy's
    half-to-even rounding, as theirs), raised to the next one when below `min_val`."""
    y = int(np.round(x / multiple) * multiple)
    if y < min_val:
        y = int(math.ceil(x / multiple) * multiple)
    return y


def lower_bound_size(height: int, width: int, short_side: int, multiple: int = 1) -> tuple[int, int]:
    """Keep-aspect (H, W) whose shorter side is at least `short_side`, each side a multiple of
    `multiple` (VDA's `Resize(keep_aspect_ratio=True, resize_method="lower_bound")` with
    width = height = `short_side`)."""
    if height <= 0 or width <= 0 or short_side <= 0 or multiple <= 0:
        raise ConfigError(f"sizes must be positive, got {height}x{width}, short side {short_side}, x{multiple}")
    scale = max(short_side / height, short_side / width)
    return _constrain(scale * height, multiple, short_side), _constrain(scale * width, multiple, short_side)


def vda_working_size(height: int, width: int, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """`infer_video_depth`'s working size: inputs wider than 1.78:1 get a smaller `input_size`
    (their memory rule), then `lower_bound_size`."""
    ratio = max(height, width) / min(height, width)
    if ratio > 1.78:
        input_size = round(int(input_size * 1.777 / ratio) / 14) * 14
    return lower_bound_size(height, width, input_size, multiple)


def closest_aspect(
    height: int, width: int, candidates: list[tuple[int, int]], pixels: int | None = None
) -> tuple[int, int]:
    """The candidate (H, W) closest to the input's aspect ratio (log ratio); ties go to the one
    closest to `pixels` (default: the first candidate's pixel count)."""
    if not candidates:
        raise ConfigError("no working resolutions to choose from")
    aspect = width / height
    ref = pixels or candidates[0][0] * candidates[0][1]
    return min(
        candidates,
        key=lambda c: (round(abs(math.log(c[1] / c[0] / aspect)), 9), abs(math.log(c[0] * c[1] / ref))),
    )


def working_size(
    height: int,
    width: int,
    *,
    fixed: list[tuple[int, int]] | None,
    default: tuple[int, int],
    multiple: int,
    short_side: int = 0,
) -> tuple[int, int]:
    """The working (H, W) for a `height x width` input.

    Args:
        fixed: the shapes a fixed-shape engine runs (None: any multiple of `multiple`).
        default: the engine's default working resolution (its pixel budget sets the short side).
        multiple: the family's stride.
        short_side: shorter working side for engines that run any size (0: the default's shorter side).
    """
    if fixed is not None:
        return closest_aspect(height, width, fixed, default[0] * default[1])
    return lower_bound_size(height, width, short_side or min(default), multiple)


def registered_size(
    height: int, width: int, *, pixels: int | None = None, max_width: int = 0, tolerance: float = 0.1
) -> tuple[int, int]:
    """Output (h, w) with the input's aspect ratio.

    Args:
        height, width: the input image.
        pixels: target pixel count ("model" output); None: the input size ("input" output).
        max_width: cap on the output width (0: none).
        tolerance: how far (relative) the exact-aspect size may be from the target scale.
    """
    scale = 1.0 if pixels is None else min(1.0, math.sqrt(pixels / (height * width)))
    if max_width and width * scale > max_width:
        scale = max_width / width
    if scale >= 1.0:  # never more pixels than the input has
        return height, width
    g = math.gcd(height, width)
    ah, aw = height // g, width // g
    k = max(1, round(scale * g))
    if max_width:
        k = min(k, max_width // aw)
    if k >= 1 and k * ah >= 8 and abs(k / (scale * g) - 1.0) <= tolerance:
        return k * ah, k * aw
    w = max(1, round(width * scale))
    return max(1, round(height * scale)), min(w, max_width) if max_width else w


# -- frames ---------------------------------------------------------------------------------------
def resize_frame(
    rgb: np.ndarray, height: int, width: int, method: str = "area", value_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB -> working resolution.

    Returns uint8 for "area"; float32 in `value_range` for "bicubic" (the engine takes either).
    """
    if method == "area":
        if rgb.shape[:2] == (height, width):
            return rgb
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if method == "bicubic":
        x = rgb.astype(np.float32) / 255.0  # VDA: frame.astype(np.float32) / 255.0, then INTER_CUBIC
        lo, hi = value_range
        if (lo, hi) != (0.0, 1.0):
            x = x * np.float32(hi - lo) + np.float32(lo)
        if rgb.shape[:2] == (height, width):
            return x
        return cv2.resize(x, (width, height), interpolation=cv2.INTER_CUBIC)
    raise ConfigError(f"resize_method must be one of {RESIZE_METHODS}, got {method!r}")


# -- upsampling -----------------------------------------------------------------------------------
def _axis(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source index (left tap) and weight of the right tap for each output index on one axis."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.clip((dst + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.minimum(np.floor(src).astype(np.intp), max(n_in - 2, 0))
    return i0, (src - i0).astype(np.float32) if n_in > 1 else np.zeros(n_out, np.float32)


def _separable_linear(values: np.ndarray, height: int, width: int, align_corners: bool) -> np.ndarray:
    """Bilinear resize as two gathers and blends (float32, exact weights, any scale)."""
    h, w = values.shape
    y0, wy = _axis(h, height, align_corners)
    x0, wx = _axis(w, width, align_corners)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    rows = values[y0] * (1.0 - wy)[:, None] + values[y1] * wy[:, None]
    return (rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx).astype(np.float32, copy=False)


def _nearest(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest pixel centre (cv2.INTER_NEAREST floors `dst * scale` instead, a half-pixel shift)."""
    h, w = values.shape
    ys = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.intp), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.intp), w - 1)
    return values[ys[:, None], xs[None, :]]


def _second_difference(values: np.ndarray) -> np.ndarray:
    """`|d2/dx2|` and `|d2/dy2|`, the larger of the two per pixel (0 on the border; NaN next to NaN)."""
    curv = np.zeros(values.shape, np.float32)
    with np.errstate(invalid="ignore"):
        curv[:, 1:-1] = np.abs(values[:, :-2] - 2 * values[:, 1:-1] + values[:, 2:])
        curv[1:-1, :] = np.maximum(curv[1:-1, :], np.abs(values[:-2, :] - 2 * values[1:-1, :] + values[2:, :]))
    return curv


def _block_extremes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 2x2 block `(h-1, w-1)`: the largest and the smallest of its four values."""
    a, b, c, d = values[:-1, :-1], values[:-1, 1:], values[1:, :-1], values[1:, 1:]
    return np.maximum(np.maximum(a, b), np.maximum(c, d)), np.minimum(np.minimum(a, b), np.minimum(c, d))


def _discontinuities(values: np.ndarray, ratio: float) -> np.ndarray:
    """`(h-1, w-1)` bool: 2x2 blocks of working pixels that span a depth discontinuity.

    Relative to the block's own disparity, so the test is a depth ratio (as depth-boundary F1
    defines contours) and needs no frame statistics; the second difference keeps planes out (a
    slanted floor near the horizon has large relative steps but no bend). NaN blocks: False."""
    hi, lo = _block_extremes(values)
    with np.errstate(invalid="ignore"):
        limit = np.float32(ratio) * np.abs(hi)
        steps = hi - lo > limit
    if not steps.any():  # a smooth frame: no second differences needed
        return steps
    curv = _second_difference(values)
    bend = np.maximum(np.maximum(curv[:-1, :-1], curv[:-1, 1:]), np.maximum(curv[1:, :-1], curv[1:, 1:]))
    with np.errstate(invalid="ignore"):
        return steps & (bend > limit)


def edge_snap_upsample(values: np.ndarray, height: int, width: int, *, ratio: float = SNAP_RATIO) -> np.ndarray:
    """Upsample `values` `(h, w)` to `(height, width)`: bilinear, snapped at depth discontinuities.

    Every output pixel is the bilinear value (`cv2.INTER_LINEAR`, pixel-centre aligned) unless the
    2x2 working pixels it interpolates from span a discontinuity (`_discontinuities`); there it
    takes the one of those four values nearest its bilinear value, i.e. the side of the edge it
    is mostly on. So no output depth lies between foreground and background (no flying points
    in the cloud), and smooth surfaces are exactly bilinear. One gather per snapped pixel: a few
    percent of the image, ~1 ms at 640x480 (benchmarks/upsample_dev.py).

    Args:
        values: `(h, w)` float disparity.
        ratio: `SNAP_RATIO`.
    """
    values = np.asarray(values, dtype=np.float32)
    out = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    h, w = values.shape
    if h < 2 or w < 2:
        return out
    blocks = _discontinuities(values, ratio)
    if not blocks.any():
        return out
    flat, base = _snap_pixels(blocks, height, width)
    src = values.ravel()
    bilinear = out.ravel()[flat]
    # the nearest of the four taps, one tap at a time (small temporaries)
    best = src[base]
    error = np.abs(best - bilinear)
    for offset in (1, w, w + 1):
        tap = src[base + offset]
        tap_error = np.abs(tap - bilinear)
        closer = tap_error < error
        np.copyto(best, tap, where=closer)
        np.minimum(error, tap_error, out=error)
    out.ravel()[flat] = best
    return out


def _snap_pixels(blocks: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the output pixels interpolated from a flagged 2x2 block, and of each one's
    top-left working pixel: every flagged block expanded to the rectangle of output pixels it
    covers (a few per block), so the cost follows the edges, not the image size."""
    h, w = blocks.shape[0] + 1, blocks.shape[1] + 1
    row_start, row_count, col_start, col_count = _block_spans(h, w, height, width)
    by, bx = (i.astype(np.int32) for i in np.nonzero(blocks))
    rows, cols = row_count[by], col_count[bx]
    count = rows * cols
    # int32 throughout: per-pixel temporaries stay small enough for the allocator to reuse
    block = np.repeat(np.arange(by.size, dtype=np.int32), count)
    local = np.arange(block.size, dtype=np.int32) - np.repeat(np.cumsum(count, dtype=np.int32) - count, count)
    y = row_start[by[block]] + local // cols[block]  # `local` is the pixel's rank within its block
    x = col_start[bx[block]] + local % cols[block]
    return y * np.int32(width) + x, by[block] * np.int32(w) + bx[block]


@functools.lru_cache(maxsize=4)
def _block_spans(h: int, w: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """For each row (column) of 2x2 blocks, the first output row (column) interpolated from it and
    how many there are (as `cv2.INTER_LINEAR`, pixel-centre aligned; the taps are monotonic)."""
    spans = []
    for n_in, n_out in ((h, height), (w, width)):
        first = _axis(n_in, n_out, False)[0]
        start = np.searchsorted(first, np.arange(n_in - 1))
        spans += [start.astype(np.int32), np.bincount(first, minlength=n_in - 1).astype(np.int32)]
    return tuple(spans)


def _edge_blocks(values: np.ndarray, spread: float) -> np.ndarray:
    """`(h-1, w-1)` bool: 2x2 blocks of working pixels next to a depth edge.

    The test is on second differences, not on the spread: a plane's disparity is affine in the
    pixel coordinates, so a slanted floor has none and keeps plain bilinear (no texture copied
    into it), while a step of size S gives second differences of S beside it. A block is an edge
    when one of its four pixels has a second difference (along x or y) above `spread` x the
    frame's 2nd-98th percentile disparity range and its four values differ by more than that too
    (elsewhere the joint weights would change nothing but the cost)."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return np.zeros((values.shape[0] - 1, values.shape[1] - 1), bool)
    sample = finite[:: max(1, finite.size // 4096)]
    p2, p98 = np.percentile(sample, [2.0, 98.0])
    limit = spread * max(float(p98 - p2), 1e-12)
    curv = _second_difference(values)
    hi, lo = _block_extremes(values)
    with np.errstate(invalid="ignore"):
        big = curv > limit
        across = hi - lo
    # both: curved (not a plane) and the block's four values differ (its pixels would blend surfaces)
    return (big[:-1, :-1] | big[:-1, 1:] | big[1:, :-1] | big[1:, 1:]) & (across > limit)


def edge_aware_upsample(
    values: np.ndarray,
    guide: np.ndarray,
    *,
    spread: float = EDGE_SPREAD,
    sigma: float = EDGE_SIGMA,
) -> np.ndarray:
    """Upsample `values` `(h, w)` to the guide's `(H, W)` without mixing depths across edges.

    Bilinear everywhere (pixel-centre aligned); where the 2x2 working pixels an output pixel is
    interpolated from lie at a depth edge (`_edge_blocks`), their bilinear weights are multiplied by
    a Gaussian on the luma difference between the output pixel and each working pixel (joint
    bilateral upsampling, Kopf et al. 2007, on the 2x2 support). An output pixel that looks like
    the foreground takes the foreground's disparity instead of a blend that floats between
    surfaces. Values stay within their four neighbours' range.

    Args:
        values: `(h, w)` float disparity.
        guide: `(H, W, 3)` uint8 RGB at the output resolution, registered to the input image.
        spread, sigma: `EDGE_SPREAD`, `EDGE_SIGMA`.

    More than `MAX_EDGE_FRACTION` edge blocks: bilinear (noise, not edges; bounds the cost).
    """
    height, width = guide.shape[:2]
    h, w = values.shape
    values = np.asarray(values, dtype=np.float32)
    out = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    if h < 2 or w < 2:
        return out
    y0, wy = _axis(h, height, False)
    x0, wx = _axis(w, width, False)
    edges = _edge_blocks(values, spread)
    if not edges.any() or edges.mean() > MAX_EDGE_FRACTION:
        return out
    flat = np.flatnonzero(edges[y0][:, x0])  # output pixels interpolated from an edge block
    ys, xs = np.divmod(flat, width)
    small = cv2.cvtColor(cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    pix = cv2.cvtColor(np.ascontiguousarray(guide), cv2.COLOR_RGB2GRAY).ravel()[flat].astype(np.float32)
    fy, fx = wy[ys], wx[xs]
    base = (y0[ys] * w + x0[xs]).astype(np.int32)  # flat index of each pixel's top-left working pixel
    taps = np.stack([base, base + 1, base + w, base + w + 1])  # (4, n): the 2x2 support
    bilinear = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    diff = pix[None, :] - small.ravel()[taps].astype(np.float32)
    # + RANGE_FLOOR: when the pixel resembles none of the four, the weights fall back to bilinear
    weight = bilinear * (np.exp(np.float32(-0.5 / (sigma * sigma)) * diff * diff) + np.float32(RANGE_FLOOR))
    out.ravel()[flat] = (weight * values.ravel()[taps]).sum(axis=0) / weight.sum(axis=0)
    return out


def upsample(
    values: np.ndarray, height: int, width: int, method: str = "edge_aware", guide: np.ndarray | None = None
) -> np.ndarray:
    """Working-resolution `(h, w)` values -> `(height, width)` float32 with the named method.

    `guide` (`(height, width, 3)` uint8 RGB) is needed by "edge_aware" (without it: "bilinear").
    """
    values = np.asarray(values, dtype=np.float32)
    if method not in UPSAMPLE_METHODS:
        raise ConfigError(f"upsample_method must be one of {UPSAMPLE_METHODS}, got {method!r}")
    if values.shape == (height, width):
        return values
    if method == "edge_snap":
        return edge_snap_upsample(values, height, width)
    if method == "edge_aware" and guide is not None:
        if guide.shape[:2] != (height, width):
            raise ConfigError(f"edge_aware guide is {guide.shape[:2]}, output is {(height, width)}")
        return edge_aware_upsample(values, guide)
    if method == "bilinear_align_corners":
        return _separable_linear(values, height, width, align_corners=True)
    if method == "nearest":
        return _nearest(values, height, width)
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
