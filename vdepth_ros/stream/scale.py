"""Where the metric scale comes from: metric inverse depth = `scale * disparity + shift`.

* `SparseScale`: a sparse metric depth input (LiDAR / RGB-D points rendered into the image, NaN
  or 0 where absent), fitted robustly per window in disparity space (`1/z ≈ s d + t`).
* `RangeScale`: a fixed near/far range: the robust 2nd/98th percentiles of the first window's
  aligned disparity map to `1/far` and `1/near`; kept for the whole stream (consistent output).
* `MetricScale`: the model outputs metric depth (its disparity is `1/depth`): identity.
* `NoScale`: relative output only (no depth, no cloud).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.align import AffineFit, FitOptions, fit_pairs, sample_valid

ScaleKind = Literal["none", "sparse", "range", "metric"]


class ScaleSource:
    """Base: `update()` once per stitched window, `current` is the affine in use (or None)."""

    kind: ScaleKind = "none"

    def __init__(self) -> None:
        self.current: AffineFit | None = None

    def reset(self) -> None:
        self.current = None

    def update(self, disparity: np.ndarray, sparse_depth: list[np.ndarray | None]) -> AffineFit | None:
        """Refit from one window.

        Args:
            disparity: `(T, H, W)` aligned disparity of the window's output frames.
            sparse_depth: T entries, `(H, W)` metres (NaN/0 invalid) or None.

        Returns:
            The affine now in use (None: no scale yet).
        """
        return self.current


class NoScale(ScaleSource):
    kind: ScaleKind = "none"


class MetricScale(ScaleSource):
    kind: ScaleKind = "metric"

    def __init__(self) -> None:
        super().__init__()
        self.current = AffineFit()

    def reset(self) -> None:
        self.current = AffineFit()


class RangeScale(ScaleSource):
    """Fixed near/far mapping decided on the first window (see module docstring)."""

    kind: ScaleKind = "range"

    def __init__(self, near: float, far: float, percentiles: tuple[float, float] = (2.0, 98.0)) -> None:
        super().__init__()
        if not 0 < near < far:
            raise ConfigError(f"need 0 < near < far for scale_source 'range', got near={near}, far={far}")
        self.near, self.far, self.percentiles = float(near), float(far), percentiles

    def update(self, disparity: np.ndarray, sparse_depth: list[np.ndarray | None]) -> AffineFit | None:
        if self.current is not None:
            return self.current
        d = np.asarray(disparity)
        finite = d[np.isfinite(d)]
        if finite.size < 2:
            return None
        lo, hi = np.percentile(finite.astype(np.float64), self.percentiles)
        if hi - lo <= 1e-12 * max(abs(hi), 1.0):
            self.current = AffineFit(scale=0.0, shift=1.0 / self.far, degenerate=True, reason="flat disparity")
            return self.current
        s = (1.0 / self.near - 1.0 / self.far) / (hi - lo)
        self.current = AffineFit(scale=float(s), shift=float(1.0 / self.far - s * lo), n_points=int(finite.size))
        return self.current


class SparseScale(ScaleSource):
    """Robust per-window fit of `1/z` on the aligned disparity at pixels with sparse depth.

    A window with fewer than `min_points` sparse points, or a degenerate fit, keeps the previous
    affine (None until the first good fit).
    """

    kind: ScaleKind = "sparse"

    def __init__(self, min_points: int = 50, options: FitOptions | None = None) -> None:
        super().__init__()
        # OLS on the metric side: the sparse sensor is the reference, errors do not compound here.
        self.options = options or FitOptions(method="ols", robust="tukey", min_points=max(2, int(min_points)))
        self.last_fit: AffineFit | None = None
        #: (near, far) of the samples of the fit in use (`_coverage`), or None
        self.coverage: tuple[float, float] | None = None
        #: of the fit in use, the fraction of its window's pixels whose depth it extrapolates (`_extrapolated`)
        self.extrapolated: float | None = None

    def reset(self) -> None:
        super().reset()
        self.coverage = self.extrapolated = None

    def update(self, disparity: np.ndarray, sparse_depth: list[np.ndarray | None]) -> AffineFit | None:
        cs, rs = [], []
        for d, z in zip(disparity, sparse_depth, strict=True):
            if z is None:
                continue
            z = np.asarray(z, dtype=np.float32)
            if z.shape != d.shape:
                raise ConfigError(f"sparse depth is {z.shape}, disparity is {d.shape}")
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(np.isfinite(z) & (z > 0), 1.0 / z, np.nan).astype(np.float32)
            c, r = sample_valid(d, inv, None, 0)
            cs.append(c)
            rs.append(r)
        if not cs:
            return self.current
        c, r = np.concatenate(cs), np.concatenate(rs)
        fit = fit_pairs(c, r, self.options)
        self.last_fit = fit
        if not fit.degenerate and fit.scale > 0:
            self.current = fit
            self.coverage = _coverage(r)
            self.extrapolated = _extrapolated(c, disparity)
        return self.current


def _coverage(inverse_depth: np.ndarray) -> tuple[float, float]:
    """(near, far) of a sparse fit: the depth [m] of its samples' 98th and 2nd percentiles of inverse depth. Depth
    beyond `far` is extrapolated from nearer samples (a short-range depth camera in a large room: off by tens of
    percent there, `test/test_ros_metric.py`)."""
    lo, hi = np.percentile(inverse_depth, (2.0, 98.0))
    return float(1.0 / hi), float(1.0 / lo)


def _extrapolated(sample_disparity: np.ndarray, disparity: np.ndarray, bins: int = 32) -> float:
    """The share of the window's pixels whose (relative) disparity the samples do not represent: the total variation
    distance between the histograms of the frame's and of the samples' disparity (a sensor that sees the whole scene
    samples the frame's disparities evenly, holes and wild depths at random pixels too: ~0; one reaching 0.8 m of a
    2.8 m scene has no sample at most far pixels). Their metric depth is extrapolated from the fit. Measured in the
    model's disparity, before the fit: after it, a fit over a short span squeezes the far pixels back into the
    samples' range in metres. The samples' 2nd-98th percentiles would not do either: the model's blurred edges put
    some samples at nearly every disparity."""
    c = sample_disparity[:: max(1, sample_disparity.size // 65536)]
    d = np.ravel(disparity)
    d = d[:: max(1, d.size // 65536)]
    d = d[np.isfinite(d)]
    if not c.size or not d.size:
        return 0.0
    edges = np.linspace(*np.percentile(d, (1.0, 99.0)), bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    frame = np.histogram(d, edges)[0] / d.size
    samples = np.histogram(c, edges)[0] / c.size
    return 0.5 * float(np.abs(frame - samples).sum())


def resample_sparse_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """A sparse depth map `(H, W)` (metres, NaN/0 invalid) on a `(height, width)` grid without losing
    or smearing samples: every valid sample lands in the cell that holds its pixel's centre, and a cell that
    receives several keeps the one nearest the cell's centre (a nearest-neighbour resize where it has a
    sample, so a dense depth camera's image gives each cell the depth there, unbiased). Cells without a
    sample are NaN. A nearest-neighbour resize would keep only the samples that happen to sit on the
    sampled pixels: ~1 in 6 when 640x480 goes to 224x160, so most LiDAR points would be lost. The nearest
    *depth* per cell (a z-buffer) was biased: of a dense camera's ~10 to 100 pixels per cell it took the
    nearest, so its flying pixels, multipath outliers and the near side of every edge decided the cell, and
    the metric scale fitted on them came out too near (12 %, 16 % with 20 % outliers: `test/test_ros_metric.py`)."""
    z = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(z) & (z > 0)
    if z.shape == (height, width):
        out = np.full(z.size, np.nan, np.float32)
        index = np.flatnonzero(valid)
        kept = index[_agrees_with_neighbours(z, valid, index)]
        out[kept] = z.ravel()[kept]
        return out.reshape(height, width)
    # each row's and column's cell, and its offset from that cell's centre in cells
    (cy, oy), (cx, ox) = _cells(z.shape[0], height), _cells(z.shape[1], width)
    none = np.iinfo(np.int64).max
    if height <= z.shape[0] and width <= z.shape[1] and 4 * np.count_nonzero(valid) > z.size:
        # a dense image on fewer cells (the model's grid): every cell holds a block of whole rows and columns, so
        # the min is two reductions over the image, not a scatter of each of its samples (several times faster)
        key = _packed(oy[:, None] ** 2 + ox[None, :] ** 2, np.arange(z.size, dtype=np.int64).reshape(z.shape))
        key[~valid] = none
        rows, cols = np.flatnonzero(np.diff(cy, prepend=-1)), np.flatnonzero(np.diff(cx, prepend=-1))
        best = np.minimum.reduceat(np.minimum.reduceat(key, cols, axis=1), rows, axis=0).ravel()
    else:  # sparse samples (a LiDAR's), or more cells than pixels: each sample to its cell
        ys, xs = np.nonzero(valid)
        best = np.full(height * width, none, np.int64)
        np.minimum.at(best, cy[ys] * width + cx[xs], _packed(oy[ys] ** 2 + ox[xs] ** 2, ys * z.shape[1] + xs))
    out = np.full(height * width, np.nan, np.float32)
    has = np.flatnonzero(best != none)
    index = best[has] & 0xFFFFFFFF
    agree = _agrees_with_neighbours(z, valid, index)
    out[has[agree]] = z.ravel()[index[agree]]
    return out.reshape(height, width)


#: a sample is wild when fewer than half of its 8 neighbours with a depth are within this share of its depth ...
WILD_SAMPLE = 0.1
#: ... and at least this many of them have a depth (a dense depth image; a LiDAR's or a tracker's points, alone among
#: holes, are all kept)
WILD_NEIGHBOURS = 3


def _agrees_with_neighbours(z: np.ndarray, valid: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Of the samples at flat `index` of a depth image, those to keep: all but the wild ones of a dense image, a
    sample within `WILD_SAMPLE` of fewer than half of its neighbours (a flying pixel, multipath, sunlight: depths
    anywhere in the sensor's range at single pixels). They bunch at small inverse depth, where the fit's residuals
    of `1/z` are small, and 40 % of them pulled /depth to 1.25-1.38 of the sensor's; a fit robust to them in log
    residuals made the sparse and pose rows of the accuracy table worse (docs/node.md). A surface's own noise (a
    few % for a depth camera) and most of a depth edge's pixels pass; so does every sample of a sparse input (GT
    points, a tracker's, a LiDAR's), which has no neighbours. Whole-image shifts, not a gather of each sample's
    3x3: a 640x480 image in a few ms."""
    if not index.size:
        return np.ones(0, bool)
    h, w = z.shape
    padded = np.zeros((h + 2, w + 2), np.float32)  # 0: no depth
    padded[1:-1, 1:-1] = np.where(valid, z, 0)
    centre, tolerance = padded[1:-1, 1:-1], WILD_SAMPLE * padded[1:-1, 1:-1]
    neighbours = np.zeros((h, w), np.uint8)
    agreeing = np.zeros((h, w), np.uint8)
    for dy, dx in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
        other = padded[dy : dy + h, dx : dx + w]
        neighbours += other > 0
        agreeing += (other > 0) & (np.abs(other - centre) <= tolerance)
    n, a = neighbours.ravel()[index], agreeing.ravel()[index]
    return (n < WILD_NEIGHBOURS) | (2 * a >= n)


def _packed(off2: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(squared offset from the cell's centre, in [0, 0.5], quantized; pixel index) packed in one int64, so that
    the min of a cell's keys is its sample nearest the centre (the first in the image of those as near)."""
    return (np.minimum(off2 * 2**31, 2**30 - 1).astype(np.int64) << 32) | index


def _cells(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For `n` pixels on `cells` cells: each pixel's cell (the one holding its centre, in integers) and its
    centre's offset from that cell's centre, in cells."""
    k = 2 * np.arange(n, dtype=np.int64) + 1
    cell = k * cells // (2 * n)
    return cell, k * (cells / (2 * n)) - cell - 0.5


def make_scale_source(kind: str, *, near: float = 0.5, far: float = 10.0, sparse_min_points: int = 50) -> ScaleSource:
    """Build a scale source by name ("none" | "sparse" | "range" | "metric")."""
    if kind == "none":
        return NoScale()
    if kind == "metric":
        return MetricScale()
    if kind == "range":
        return RangeScale(near, far)
    if kind == "sparse":
        return SparseScale(sparse_min_points)
    raise ConfigError(f"scale_source must be none|sparse|range|metric, got {kind!r}")
