"""`DepthPipeline`'s windows: the schedule from the model's input spec and the config
(`_scheduler`), and one window run: `engine.infer` (metric models: depth -> disparity; DVD's channels),
stitched (`stream.Stitcher`), a fallen-back alignment logged (rate-limited), the metric scale updated
from the window's output frames.

A mixin of `DepthPipeline` (`pipeline.py`, which sets the attributes these steps read: `config`,
`_engine`, `stitcher`, `scheduler`, `scale_source`, `stats`, `_records`, `_output_size`, ...).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vdepth_ros.errors import ConfigError
from vdepth_ros.pipeline_input import HELD_AS_STATE
from vdepth_ros.pipeline_types import fit_input, scale_input, sparse_span
from vdepth_ros.resize import upsample
from vdepth_ros.stream.align import INVERTED, AffineFit
from vdepth_ros.stream.depth import disparity_from_depth
from vdepth_ros.stream.stitch import StitchedFrame, mean_channels
from vdepth_ros.stream.windows import Window, WindowScheduler, anchor_keyframes, pad_for_rule

if TYPE_CHECKING:
    from vdepth_ros.config import PipelineConfig
    from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger("vdepth_ros.pipeline")  # the pipeline's lines, under its one logger name

#: `DepthPipeline.fallback` while the windows' alignment falls back: one text (the reason, with its numbers,
#: is in the logged line) so that a status names one cause while it lasts.
ALIGNMENT_FALLBACK = (
    "the windows' alignment falls back (a covered lens, a blank wall, a scene without texture?): the depth is "
    "not fitted to the stream's scale"
)

#: `DepthPipeline.fallback` while windows come out inverted against the stream (`stream.align.INVERTED`): dropped
INVERTED_OUTPUT = (
    "the model's output increases with depth against the stream's (a depth model? its input spec needs output_kind "
    "'depth'): those windows are NaN"
)

#: appended to a line about a fit that came out inverted (`stream.align.INVERTED`)
_INVERTED_FIX = (
    ": is it a depth model? The stream expects disparity (larger = nearer); a model that outputs depth needs "
    "output_kind 'depth' in its input spec (the .json beside model.onnx or model.engine)"
)


def _scheduler(config: PipelineConfig, spec: InputSpec, alignment: str) -> WindowScheduler:
    """Window schedule from the model's input spec, overridden by non-zero config values."""
    keyframes = tuple(config.keyframes) or (tuple(spec.keyframes) if spec.keyframes else None)
    window = config.window or int(spec.window)
    if alignment == "keyframe" and not keyframes:
        raise ConfigError("alignment 'keyframe' needs keyframes (config.keyframes or the model's spec)")
    if alignment == "graph" and not keyframes and config.anchor_slots:
        # A chain family gets VDA's context slots in place of two overlap frames (same cost), so
        # every window shares the anchor frame with window 0: the graph has loops, not a chain.
        _check_window_fits(config, spec, window, config.overlap or int(spec.overlap), None)
        keyframes = anchor_keyframes(window, config.overlap or int(spec.overlap))
    # "graph" shares the keyframe schedule when the model has one: the offline solve runs on the
    # same windows, and the slot-0 anchor frame gives every window an edge to window 0.
    keyframe_schedule = alignment == "keyframe" or (alignment == "graph" and bool(keyframes))
    overlap = config.overlap or (len(keyframes) if keyframe_schedule else int(spec.overlap))
    _check_window_fits(config, spec, window, overlap, keyframes if keyframe_schedule else None)
    if not spec.dynamic_frames and window > spec.frames:
        raise ConfigError(f"window {window} exceeds the engine's fixed {spec.frames} frames")
    if spec.max_frames is not None and window > spec.max_frames:
        raise ConfigError(
            f"window {window} exceeds the model's longest window of {spec.max_frames} frames{spec.window_limit_fix()}"
        )
    first = None
    if config.low_latency_start:  # about half a window, still a valid length for the model
        first = (window + overlap + 1) // 2
        first = min(window, first + pad_for_rule(first, spec.frames_rule))
    return WindowScheduler(
        window,
        overlap,
        schedule="keyframe" if keyframe_schedule else "chain",
        keyframes=keyframes,
        frames_rule=spec.frames_rule,
        first_window=first,
    )


def _check_window_fits(
    config: PipelineConfig, spec: InputSpec, window: int, overlap: int, keyframes: tuple[int, ...] | None
) -> None:
    """Refuse a window its overlap or keyframe slots do not fit, naming where they came from (a `window` set
    alone keeps the model's overlap and keyframes: `window: 4` on the bundled model was refused as "overlap
    must be in [0, window=4), got 4", an overlap the user never set) and values that fit.

    Raises:
        ConfigError: "window 4 does not hold the keyframes [0, 3, 6, 7] (the model's ...): ...".
    """
    model = f"the model's window is {spec.window}"
    if keyframes and max(keyframes) >= window and len(keyframes) == overlap:
        whose = "" if config.keyframes else " (the model's: keyframes is not set)"
        count = min(len(keyframes), window - 1)
        fixes = []
        if count >= 2:
            fixes.append(f"keyframes that fit it, e.g. {list(anchor_keyframes(window, count))} (overlap {count})")
        fixes.append(f"a window above {max(keyframes)} ({model})")
        raise ConfigError(
            f"window {window} does not hold the keyframes {list(keyframes)}{whose}: every slot must be below the "
            f"window (the overlap is their count); set {', or '.join(fixes)}"
        )
    if overlap >= window:
        whose = "" if config.overlap else " (the model's: overlap is 0)"
        if keyframes and not config.overlap:
            whose = f" (the count of the keyframes {list(keyframes)})"
        fixes = [f"overlap {'1' if window == 2 else f'1 to {window - 1}'} (0 is the model's)"] if window > 1 else []
        fixes.append(f"a window above {overlap} ({model})")
        raise ConfigError(
            f"window {window} must be longer than its overlap {overlap}{whose}: set {', or '.join(fixes)}"
        )


class WindowSteps:
    """One window: `_run_window` (infer, stitch, scale) and its parts (module docstring)."""

    def _infer(self, window: Window, rgbs: list[np.ndarray]) -> np.ndarray:
        frames = np.stack(rgbs + [rgbs[-1]] * window.pad)
        t0 = time.perf_counter()
        engine = self._engine
        # frame indices: the engine reuses overlap work, or steps a causal model's stream once per new frame (a
        # stream-step graph has no split graphs: without them each window was a new stream of its 2 frames)
        if getattr(engine, "supports_reuse", False) or getattr(engine, "streams", False):
            out = engine.infer(frames, frame_ids=list(window.slots) + [window.slots[-1]] * window.pad)
        else:
            out = engine.infer(frames)
        self.stats.infer_seconds += time.perf_counter() - t0
        self.stats.windows += 1
        out = np.asarray(out, dtype=np.float32)[: len(window.slots)]
        return self._usable(window.index, disparity_from_depth(out) if self.metric_model else out)

    def _infer_channels(self, window: Window, rgbs: list[np.ndarray]) -> np.ndarray | None:
        """`(n, C, H, W)` from `engine.infer_channels`, or None (the engine has the mean only)."""
        t0 = time.perf_counter()
        out = self._engine.infer_channels(np.stack(rgbs + [rgbs[-1]] * window.pad))
        if out is None:
            return None
        self.stats.infer_seconds += time.perf_counter() - t0
        self.stats.windows += 1
        return self._usable(window.index, np.asarray(out, dtype=np.float32)[: len(window.slots)])

    def _usable(self, index: int, out: np.ndarray) -> np.ndarray:
        """The window's output `(n[, C], H, W)` with what carries no depth set to NaN (no estimate), logged as
        `PeriodicLog` admits: non-finite values (fp16 overflow in an fp16 engine gives +-Inf, which passed
        into /depth as -Inf and into the blends as NaN) and frames whose finite values are all one number (a
        collapsed prediction on a black or covered frame, published as a flat wall). A NaN frame is no
        reference for a fit: where another window blends it, its reading is output, and a window that shares only
        NaN frames with the stream keeps the previous window's affine (`Stitcher`)."""
        values = out.reshape(len(out), -1)
        hi, lo = values.max(axis=1), values.min(axis=1)  # NaN and Inf propagate: all finite when these are
        finite = None
        if not (np.isfinite(hi).all() and np.isfinite(lo).all()):  # each frame's range over its finite values
            finite = np.isfinite(out)
            values = np.where(finite, out, np.nan).reshape(len(out), -1)
            hi, lo = np.fmax.reduce(values, axis=1), np.fmin.reduce(values, axis=1)  # NaN: a frame without any
        flat = np.flatnonzero(hi - lo <= 1e-6 * np.maximum(np.abs(hi), np.abs(lo)))  # relative: any units
        causes = []  # (a node's status holds them as a condition: one text per cause, no numbers)
        if finite is not None:
            causes.append(
                "NaN or Inf values (an fp16 engine overflowing? export or build it in fp32, e.g. without --fp16)"
            )
        if flat.size:
            causes.append(
                "frames of one constant value (a collapsed prediction: a black, covered or overexposed frame?)"
            )
        self.no_depth = f"the model's output carries no depth: {' and '.join(causes)}; NaN there" if causes else None
        if not causes:
            return out
        bad = np.zeros(out.shape, bool) if finite is None else ~finite
        bad[flat] = True
        if not out.flags.writeable:
            out = out.copy()
        out[bad] = np.nan
        self.stats.invalid_output_pixels += int(np.count_nonzero(bad))
        more = self._periodic_log.admit("invalid model output")
        if more is not None:
            share = 0.0 if finite is None else float(np.count_nonzero(~finite)) / finite.size
            log.warning(
                "window %d: %s (%.1f%% of the values non-finite, %d of %d frames constant)%s",
                index, self.no_depth, 100 * share, flat.size, len(out), more,
                extra={HELD_AS_STATE: True},  # (`no_depth`, a condition on a node's status)
            )  # fmt: skip
        return out

    def _run_window(self, window: Window) -> list[StitchedFrame]:
        rgbs = [self._records[f].rgb for f in window.slots]
        disp = self._infer_channels(window, rgbs) if self._channels else None
        if disp is None:
            disp = self._infer(window, rgbs)
        if self._stitch_output:
            disp = self._upsample_window(window, disp)
        before = (self.stitcher.degenerate_fits, self.stitcher.anchor_refreshes)
        fit_on = fit_input(disp, [self._records[f] for f in window.slots])
        stitched = self.stitcher.add(window, disp, inplace=True, fit_on=fit_on)  # the engine's output is ours
        self.stats.degenerate_fits += self.stitcher.degenerate_fits - before[0]
        self.stats.anchor_refreshes += self.stitcher.anchor_refreshes - before[1]
        self._note_fit(window.index, self.stitcher.last_fit)
        if self.stitcher.anchor is not None and self.stitcher.anchor != self.scheduler.anchor:
            self.scheduler.set_anchor(self.stitcher.anchor)
        return self._finish(stitched, window)

    def _note_fit(self, index: int, fit: AffineFit) -> None:
        """The affine window `index` was stitched with, causal or offline (`run_offline`'s pass 2): one rule for
        both. A window whose alignment fell back (a covered lens, a blank wall: every window of it; an inverted
        one: a depth model?) sets `fallback` while it lasts and is logged as `PeriodicLog` admits (all are
        counted in `stats.degenerate_fits`)."""
        fell_back = fit.degenerate and index > 0
        # while the windows keep falling back (a lens covered for minutes): a node names it for as long
        self.fallback = None if not fell_back else INVERTED_OUTPUT if INVERTED in fit.reason else ALIGNMENT_FALLBACK
        if not fell_back:
            return
        more = self._periodic_log.admit("inverted output" if INVERTED in fit.reason else "alignment fallback")
        if more is None:
            return
        if INVERTED in fit.reason:  # the stitcher dropped the window (`Stitcher.add`)
            log.warning(
                "window %d: the model's output is increasing with depth against the stream's, its frames are NaN (no "
                "estimate): %s%s%s", index, fit.reason, _INVERTED_FIX, more,
                extra={HELD_AS_STATE: True},
            )  # fmt: skip
            return
        log.warning(
            "window %d: alignment fell back to (%.3g, %.3g): %s%s",
            index, fit.scale, fit.shift, fit.reason, more,
            extra={HELD_AS_STATE: True},  # (`fallback`, a condition on a node's status)
        )  # fmt: skip

    def _upsample_window(self, window: Window, disp: np.ndarray) -> np.ndarray:
        assert self._output_size is not None
        oh, ow = self._output_size
        method = self.config.upsample_method
        guides = [self._records[f].rgb_out for f in window.slots]
        return np.stack([upsample(d, oh, ow, method, guide=g) for d, g in zip(disp, guides, strict=True)])

    def _sparse_at(self, index: int, shape: tuple[int, ...]) -> np.ndarray | None:
        sparse = self._records[index].sparse
        if sparse is None or sparse.shape == shape:
            return sparse
        # stitched at the output size (reference mode): nearest keeps the points and their holes
        return cv2.resize(sparse, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)

    def _finish(self, stitched: list[StitchedFrame], window: Window | None = None) -> list[StitchedFrame]:
        """Update the metric scale from this window's output frames."""
        stitched = mean_channels(stitched)
        if window is not None and stitched:
            here = [s for s in stitched if s.window == window.index]
            if here:
                self._update_scale(
                    window.index,
                    scale_input(here, [self._records[s.index] for s in here]),
                    [self._sparse_at(s.index, s.disparity.shape) for s in here],
                )
        return stitched

    def _update_scale(self, index: int, disparity: np.ndarray, sparse: list[np.ndarray | None]) -> None:
        """Refit the scale on window `index`'s new frames and check what the metric fit rests on: the one step of
        the causal stream (node, `vdepth-bag`) and of `run_offline`'s second pass, so both warn alike."""
        self.scale_source.update(disparity, sparse)
        metric_fit = getattr(self.scale_source, "last_fit", None)
        if metric_fit is not None and metric_fit.reason.startswith(INVERTED):
            # the metric fit is refused (SparseScale keeps its previous one); only the sensor can tell from the start
            more = self._periodic_log.admit("inverted metric fit")
            if more is not None:
                log.error(
                    "window %d: the model's output is increasing with depth against the sparse depth: %s%s; the "
                    "metric scale is not updated%s", index, metric_fit.reason, _INVERTED_FIX, more,
                )  # fmt: skip
        self._check_sparse_span(index)

    def _check_sparse_span(self, index: int) -> None:
        """`sparse_span` while the metric fit in use extrapolates much of its window's depth, logged as
        `PeriodicLog` admits: the samples' span in metres (/diagnostics' "fit metric_samples_near/far") could not
        tell, for the fit squeezes the far pixels into it; their share is measured in the model's disparity."""
        extrapolated = getattr(self.scale_source, "extrapolated", None)
        self.sparse_span = sparse_span(extrapolated)
        if self.sparse_span is None:
            return
        more = self._periodic_log.admit("sparse span")
        if more is None:
            return
        near, far = self.scale_source.coverage or (float("nan"), float("nan"))
        log.warning(
            "window %d: the metric scale is fitted on depth samples from %.2f to %.2f m, and %.0f%% of the frame "
            "lies at relative depths they do not sample (in the model's disparity): its metric depth is extrapolated "
            "and can be off by tens of percent (a depth sensor reaching 0.8 m in a 2.8 m scene gave /depth 18%% too "
            "near); give sparse_depth a sensor that sees the whole scene (a longer-range depth camera, a LiDAR), or "
            "trust /depth only between those depths%s",
            index, near, far, 100 * extrapolated, more,
            extra={HELD_AS_STATE: True},  # (`sparse_span`, a condition on a node's status)
        )  # fmt: skip
