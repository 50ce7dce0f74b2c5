"""The data `DepthPipeline` takes and returns: `FrameInput` in, `DepthFrame` (with its `FitInfo`)
out, `PipelineStats`; and `_Record`, what the pipeline keeps of a frame between its window and
its output. Import them from `vdepth_ros.pipeline`, which re-exports them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from vdepth_ros.stream.cloud import CameraModel
from vdepth_ros.stream.stitch import StitchedFrame

#: Seconds between two logged lines of one repeated condition of the pipeline (`PeriodicLog`).
LOG_PERIOD_S = 5.0


class PeriodicLog:
    """When the pipeline logs a condition that can repeat at every frame: each kind at most once per
    `period` seconds, the next one with how many were not logged since (all are counted in
    `PipelineStats`). A camera with its lens cap on gave a line per window; one whose resolution
    alternated gave two per frame (the reset, the new stream's sizes), in vdepth-bag's output too."""

    def __init__(self, period: float = LOG_PERIOD_S) -> None:
        self.period = period
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (when one was logged, how many not since)

    def admit(self, kind: str) -> str | None:
        """None: not now (counted); else the text to append to the line logged now ("" or the count)."""
        now = time.monotonic()
        last, unlogged = self._last.get(kind, (-np.inf, 0))
        if now - last < self.period:
            self._last[kind] = (last, unlogged + 1)
            return None
        self._last[kind] = (now, 0)
        return f" ({unlogged} more since the last report)" if unlogged else ""


@dataclass
class FrameInput:
    """One camera frame.

    Attributes:
        rgb: `(H, W, 3)` uint8 RGB, any resolution.
        stamp_ns: timestamp in nanoseconds (passed through).
        camera: intrinsics at the rgb's resolution; None -> no cloud.
        sparse_depth: `(H, W)` float32 metres at the rgb's resolution, NaN/0 invalid, or None.
        meta: opaque to the pipeline (ROS header, bag timestamp...), passed through.
        valid: `(H, W)` bool, the pixels that show the scene (False: outside the lens's view of an
            undistorted image, `rectify.RectifiedView.valid`): the outputs there are NaN, no
            estimate, and carry no cloud point. None: every pixel.
    """

    rgb: np.ndarray
    stamp_ns: int
    camera: CameraModel | None = None
    sparse_depth: np.ndarray | None = None
    meta: Any = None
    valid: np.ndarray | None = None


#: `DepthPipeline.sparse_span` (the node's WARN and status) and a `vdepth-bag` summary's note while the metric fit in
#: use extrapolates the depth of more than `MAX_EXTRAPOLATED` of its window's pixels (`SparseScale.extrapolated`): one
#: text, the numbers are in the logged line and the note.
SPARSE_SPAN = (
    "the metric scale rests on depth samples spanning only part of the scene's depth (a sensor of short range or "
    "narrow view?): /depth beyond them is extrapolated and can be off by tens of percent"
)
#: the share of a window's pixels whose disparity its samples do not represent (`SparseScale.extrapolated`) above
#: which `SPARSE_SPAN` holds: 0 with a depth camera that sees the whole scene (wild pixels or not), 21 % with one
#: reaching 0.8 m of 2.8 m (/depth 0.82 of the truth there), as deployed (`test/test_ros_metric.py`); 36 % in
#: `test/test_stream_scale.py`'s scene
MAX_EXTRAPOLATED = 0.15


def sparse_span(extrapolated: float | None) -> str | None:
    """`SPARSE_SPAN` while a metric fit extrapolates the depth of more than `MAX_EXTRAPOLATED` of its window's pixels
    (`SparseScale.extrapolated`, `FitInfo.metric_extrapolated`), else None: the one rule of the node and the tools."""
    return SPARSE_SPAN if extrapolated is not None and extrapolated > MAX_EXTRAPOLATED else None


@dataclass(frozen=True)
class FitInfo:
    """How a frame's values were obtained.

    Attributes:
        scale, shift: the window alignment (window disparity -> stream canonical disparity).
        residual: how far the aligned window is from the stream it continues, on the frames it
            blends into: robust sigma of the difference relative to the disparity there (0.02 =
            2 %; 0 for a stream's first window). The same measure in every alignment mode and
            offline (`stream.stitch.WindowHealth`).
        inlier_fraction: fraction of the fit's pixels kept by its robust weights (graph alignment
            and offline: the mean over the window's pairwise fits).
        scale_change: the window's scale over the previous window's (1 = the model's raw scale
            did not change; a jump flags a model or alignment problem).
        degenerate: the fit failed (too few points, flat, uncorrelated) and the window kept the previous
            window's affine; see `reason`.
        scale_source: "none" | "sparse" | "range" | "metric".
        window: index of the newest window that contributed to this frame.
        metric_scale, metric_shift: canonical disparity -> metric inverse depth (1/m), or None.
        reason: why the fit is degenerate ("" otherwise).
        metric_samples_near, metric_samples_far: with a sparse scale, the depth [m] of the 98th and 2nd
            percentiles of inverse depth of the sensor samples its fit in use was made on, or None: depth
            beyond that span is extrapolated from them (a short-range sensor in a larger scene).
        metric_extrapolated: with a sparse scale, the share (0 to 1) of its window's pixels at relative depths
            the samples of the fit in use do not sample (`SparseScale.extrapolated`), or None: above
            `MAX_EXTRAPOLATED` the node warns and vdepth-bag notes `SPARSE_SPAN` (`sparse_span`).
    """

    scale: float
    shift: float
    residual: float
    inlier_fraction: float
    degenerate: bool
    scale_source: str
    window: int = -1
    metric_scale: float | None = None
    metric_shift: float | None = None
    reason: str = ""
    scale_change: float = 1.0
    metric_samples_near: float | None = None
    metric_samples_far: float | None = None
    metric_extrapolated: float | None = None


@dataclass
class DepthFrame:
    """One output frame (see `docs/architecture.md`). Arrays are read-only views.

    Attributes:
        index: 0-based frame index since the last reset (a scene cut does not restart it).
        stamp_ns, meta: from the FrameInput.
        status: "provisional" (a later window may revise it) or "final".
        disparity: `(h, w)` float32 aligned relative disparity, NaN invalid; `(h, w)` is the output
            resolution (`output_resolution`), registered to the input image.
        depth: `(h, w)` float32 metres, REP 118 (NaN no estimate, +Inf beyond the far limit, -Inf
            below the near limit); None without a scale.
        camera: intrinsics at `(h, w)` (the input's camera when `(h, w)` is the input size), or None.
        points: `(h', w', 3)` float32 organized xyz in metres (optical frame), NaN where the depth
            is not finite, or None.
        colors: `(h', w', 3)` uint8 RGB matching `points`, or None.
        fit: alignment and scale of this frame.
        rgb: `(h, w, 3)` uint8 input image at the output resolution (previews, overlays).
    """

    index: int
    stamp_ns: int
    meta: Any
    status: Literal["provisional", "final"]
    disparity: np.ndarray
    depth: np.ndarray | None
    camera: CameraModel | None
    points: np.ndarray | None
    colors: np.ndarray | None
    fit: FitInfo
    rgb: np.ndarray | None = None


@dataclass
class PipelineStats:
    """Counters for diagnostics (cumulative over resets)."""

    frames_in: int = 0
    frames_out: int = 0
    #: frames pushed and never output, dropped by a `reset` (an engine error, a restart); with `frames_out` and
    #: `held` they account for every frame pushed (the node's stop summary: `DepthNode.frame_fates`)
    frames_discarded: int = 0
    windows: int = 0
    degenerate_fits: int = 0
    anchor_refreshes: int = 0
    #: model output values set to NaN: non-finite, or in a frame of one constant value (`WindowSteps._usable`)
    invalid_output_pixels: int = 0
    resets: int = 0
    scene_cuts: int = 0
    last_reset_reason: str = ""
    infer_seconds: float = 0.0
    post_seconds: float = 0.0
    last_fit: FitInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Record:
    stamp_ns: int
    meta: Any
    camera: CameraModel | None
    input_size: tuple[int, int]  # (H, W)
    rgb: np.ndarray | None  # working resolution (uint8, or float32 in the value range: resize_method)
    rgb_out: np.ndarray | None  # output resolution uint8 (the input image itself by default)
    sparse: np.ndarray | None  # working resolution float32 metres
    valid_out: np.ndarray | None = None  # output resolution bool: pixels that show the scene (None: all)
    valid_fit: np.ndarray | None = None  # the same at the stitching resolution (what the scale is fitted on)


def valid_at(valid: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """`FrameInput.valid` at `height x width` (the output, or the stitching resolution): a pixel
    there shows the scene when most of the input pixels it averages do (INTER_AREA, as the RGB is
    resized). None stays None."""
    if valid is None or np.shape(valid) == (height, width):
        return valid
    share = cv2.resize(np.asarray(valid, dtype=np.float32), (width, height), interpolation=cv2.INTER_AREA)
    return share >= 0.5


def scale_input(stitched: list[StitchedFrame], records: list[_Record]) -> np.ndarray:
    """The disparities a window's metric scale is fitted on: the stitched frames, NaN where their
    input shows no scene (`FrameInput.valid`: a rectified image's lens border, whose made-up values
    would set the range mode's percentiles), at whatever resolution they were stitched. Causal and
    offline alike."""
    out = np.stack([s.disparity for s in stitched])
    for i, rec in enumerate(records):
        mask = valid_at(rec.valid_fit, *out.shape[1:])
        if mask is not None:
            out[i][~mask] = np.nan
    return out


def fit_input(window_output: np.ndarray, records: list[_Record]) -> np.ndarray | None:
    """A window's output `(n[, C], H, W)` as its alignment fits see it: a copy with NaN where its
    frames show no scene (`FrameInput.valid`: a rectified image's lens border, where the model's
    made-up values follow no window's affine); None when every pixel shows the scene. The masks
    follow the window to its resolution (causal reference mode stitches at the output size, the
    offline solve at the working size), so no path fits on the border. Causal and offline alike
    (`Stitcher.add(fit_on=...)`, `CausalGraphAligner.add`)."""
    shape = window_output.shape[-2:]
    masks = [valid_at(rec.valid_fit, *shape) for rec in records]
    if all(m is None or m.all() for m in masks):
        return None
    out = np.array(window_output, dtype=np.float32, copy=True)
    for i, m in enumerate(masks):
        if m is not None:
            out[i][..., ~m] = np.nan
    return out
