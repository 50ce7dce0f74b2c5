"""`DepthPipeline`: frames in, temporally consistent depth frames out (no ROS).

One object shared by the live node, `vdepth-bag`, `vdepth-video` and `vdepth-eval`:

1. resize each RGB frame to the engine's working resolution (cv2 INTER_AREA);
2. schedule windows (`stream.WindowScheduler`) per the model's input spec, overridable by config;
3. run `engine.infer` on each window (metric models: depth -> disparity);
4. stitch (`stream.Stitcher`: align on the overlap, crossfade, provisional/final);
5. metric scale (`stream.ScaleSource`), `stream.depth_from_disparity`, organized cloud.

Latency (causal): a frame is output when its window is complete, i.e. after the first window
(W frames, or about half with `low_latency_start`) at start-up and then every stride `W - O`
frames, plus one `infer` call. Frames in the last `O` (keyframe schedule: the last
`I = interp` frames) of a window are revised by the next window's crossfade: with
`publish="provisional"` they are output once, early, marked "provisional"; with "final" they are
held back one more stride; with "both" they are output twice. The output is deterministic for
a deterministic engine, so a bag processed causally equals the live node frame for frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.stream.align import AffineFit, FitOptions
from vdepth_ros.stream.cloud import CameraModel, PointCloudBuilder
from vdepth_ros.stream.depth import depth_from_disparity, disparity_from_depth
from vdepth_ros.stream.scale import make_scale_source, resample_sparse_depth
from vdepth_ros.stream.stitch import GlobalAligner, StitchedFrame, Stitcher
from vdepth_ros.stream.windows import Window, WindowScheduler, pad_for_rule

if TYPE_CHECKING:
    from vdepth_ros.runtime.engine import DepthEngine
    from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger(__name__)

__all__ = ["CameraModel", "DepthFrame", "DepthPipeline", "FitInfo", "FrameInput", "PipelineConfig", "PipelineStats"]


@dataclass
class FrameInput:
    """One camera frame.

    Attributes:
        rgb: `(H, W, 3)` uint8 RGB, any resolution.
        stamp_ns: timestamp in nanoseconds (passed through).
        camera: intrinsics at the rgb's resolution; None -> no cloud.
        sparse_depth: `(H, W)` float32 metres at the rgb's resolution, NaN/0 invalid, or None.
        meta: opaque to the pipeline (ROS header, bag timestamp...), passed through.
    """

    rgb: np.ndarray
    stamp_ns: int
    camera: CameraModel | None = None
    sparse_depth: np.ndarray | None = None
    meta: Any = None


@dataclass(frozen=True)
class FitInfo:
    """How a frame's values were obtained.

    Attributes:
        scale, shift: the window alignment (window disparity -> stream canonical disparity).
        residual: robust residual sigma of that fit (canonical disparity units).
        inlier_fraction: fraction of fit pixels kept by the robust weights.
        degenerate: the fit fell back to (1, 0), or with graph alignment to the previous window's
            affine (too few points, flat, uncorrelated); see `reason`.
        scale_source: "none" | "sparse" | "range" | "metric".
        window: index of the newest window that contributed to this frame.
        metric_scale, metric_shift: canonical disparity -> metric inverse depth (1/m), or None.
        reason: why the fit is degenerate ("" otherwise).
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


@dataclass
class DepthFrame:
    """One output frame (see `docs/architecture.md`). Arrays are read-only views.

    Attributes:
        index: 0-based frame index since the last reset.
        stamp_ns, meta: from the FrameInput.
        status: "provisional" (a later window may revise it) or "final".
        disparity: `(h, w)` float32 aligned relative disparity, NaN invalid.
        depth: `(h, w)` float32 metres, NaN invalid; None without a scale.
        camera: intrinsics at `(h, w)`, or None.
        points: `(h', w', 3)` float32 organized xyz in metres (optical frame), NaN invalid, or None.
        colors: `(h', w', 3)` uint8 RGB matching `points`, or None.
        fit: alignment and scale of this frame.
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


@dataclass
class PipelineStats:
    """Counters for diagnostics (cumulative over resets)."""

    frames_in: int = 0
    frames_out: int = 0
    windows: int = 0
    degenerate_fits: int = 0
    anchor_refreshes: int = 0
    resets: int = 0
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
    rgb: np.ndarray | None  # working resolution uint8
    rgb_in: np.ndarray | None  # input resolution (only for output_resolution="input" with colors)
    sparse: np.ndarray | None  # working resolution float32 metres


def _resize(img: np.ndarray, width: int, height: int, interp: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (width, height), interpolation=interp)


def _scheduler(config: PipelineConfig, spec: InputSpec, alignment: str) -> WindowScheduler:
    """Window schedule from the model's input spec, overridden by non-zero config values."""
    keyframes = tuple(config.keyframes) or (tuple(spec.keyframes) if spec.keyframes else None)
    window = config.window or int(spec.window)
    if alignment == "keyframe" and not keyframes:
        raise ConfigError("alignment 'keyframe' needs keyframes (config.keyframes or the model's spec)")
    # "graph" shares the keyframe schedule when the model has one: the offline solve runs on the
    # same windows, and the slot-0 anchor frame gives every window an edge to window 0.
    keyframe_schedule = alignment == "keyframe" or (alignment == "graph" and bool(keyframes))
    overlap = config.overlap or (len(keyframes) if keyframe_schedule else int(spec.overlap))
    if not spec.dynamic_frames and window > spec.frames:
        raise ConfigError(f"window {window} exceeds the engine's fixed {spec.frames} frames")
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


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


class DepthPipeline:
    """The depth pipeline (see module docstring).

    Args:
        config: pipeline parameters.
        engine: a `DepthEngine`; None -> `vdepth_ros.runtime.create_engine(config.model, ...)`.
    """

    def __init__(self, config: PipelineConfig, engine: DepthEngine | None = None) -> None:
        self.config = config
        if engine is None:
            from vdepth_ros.runtime import create_engine

            engine = create_engine(
                config.resolved_model(), backend=config.backend, precision=config.precision, **config.engine_options()
            )
        self.engine = engine
        spec = engine.input_spec
        self.height, self.width = int(spec.height), int(spec.width)
        if spec.multiple_of > 1 and (self.height % spec.multiple_of or self.width % spec.multiple_of):
            raise ConfigError(
                f"engine working resolution {self.height}x{self.width} is not a multiple of {spec.multiple_of}"
            )
        self.metric_model = spec.output_kind == "depth"
        self.alignment = spec.alignment if config.alignment == "auto" else config.alignment
        if self.metric_model and config.alignment == "auto":
            self.alignment = "none"  # metric depth needs no alignment, only the crossfade
        self.scheduler = _scheduler(config, spec, self.alignment)
        self.window, self.overlap = self.scheduler.window, self.scheduler.overlap
        options = FitOptions(
            method=config.fit_method,  # type: ignore[arg-type]
            robust=config.robust,  # type: ignore[arg-type]
            scale_clip=config.scale_clip,
            max_points=config.fit_max_points,
        )
        self.fit_options = options
        self.stitcher = Stitcher(
            self.alignment,  # type: ignore[arg-type]
            options,
            anchor_refresh=config.anchor_refresh,
            anchor_min_inliers=config.anchor_min_inliers,
            graph_lag=config.graph_lag,
        )
        if config.anchor_refresh and self.alignment != "keyframe":
            log.warning("anchor_refresh applies to keyframe alignment only; ignored with %r", self.alignment)
        if config.scale_source == "metric" and not self.metric_model:
            raise ConfigError("scale_source 'metric' needs a metric model (input spec output_kind 'depth')")
        # A metric model already outputs metres: the default assumed range (and "none") would only
        # throw its scale away, so both mean pass-through; "sparse" still refines it.
        kind = (
            "metric"
            if self.metric_model and config.scale_source in ("none", "range", "metric")
            else config.scale_source
        )
        self.scale_source = make_scale_source(
            kind, near=config.near, far=config.far, sparse_min_points=config.sparse_min_points
        )
        self.cloud = PointCloudBuilder(config.cloud_stride) if config.cloud_stride > 0 else None
        self.stats = PipelineStats()
        self._clear()

    @classmethod
    def from_dict(cls, params: dict[str, Any], engine: DepthEngine | None = None) -> DepthPipeline:
        """From node parameters / a `load_params` dict; keys that are not pipeline fields are ignored."""
        config, unknown = PipelineConfig.from_params(params)
        if unknown:
            log.debug("parameters not used by the pipeline: %s", sorted(unknown))
        return cls(config, engine)

    @property
    def schedule(self) -> dict[str, Any]:
        """Window schedule in use, and the causal lag in frames (without compute time)."""
        s = self.scheduler
        return {
            "alignment": self.alignment,
            "schedule": s.schedule,
            "window": s.window,
            "overlap": s.overlap,
            "stride": s.stride,
            "keyframes": list(s.keyframes),
            "first_window": s.first_window,
            "frames_rule": s.frames_rule,
            "startup_frames": s.first_window,
            "lag_frames": s.stride,
            "provisional_frames": s.interp if s.schedule == "keyframe" else s.overlap,
        }

    # -- state ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        if hasattr(self.engine, "reset_stream"):
            self.engine.reset_stream()  # frame indices restart: the engine's per-frame cache is stale
        self.scheduler.reset()
        self.stitcher.reset()
        self.scale_source.reset()
        self._records: dict[int, _Record] = {}
        self._last_emitted = -1
        self._input_size: tuple[int, int] | None = None

    def reset(self, reason: str) -> None:
        """Drop all state (frames not yet output are discarded); indices restart at 0."""
        log.info("depth pipeline reset: %s", reason)
        self.stats.resets += 1
        self.stats.last_reset_reason = reason
        self._clear()

    # -- causal API ----------------------------------------------------------------------------
    def push(self, frame: FrameInput) -> list[DepthFrame]:
        """Add one frame; returns the frames that became available (possibly none).

        A change of input resolution ends the current stream (`flush`) and starts a new one.
        If the engine raises, the stream is reset (its pending frames are lost) and the error
        propagates, so the next push starts a consistent new stream.
        """
        rgb = self._check(frame)
        out: list[DepthFrame] = []
        if self._input_size is not None and rgb.shape[:2] != self._input_size:
            out = self.flush()
            self.reset(f"input resolution changed to {rgb.shape[1]}x{rgb.shape[0]}")
        self._input_size = rgb.shape[:2]
        index = self.scheduler.add_frame()
        self._records[index] = self._record(frame, rgb)
        self.stats.frames_in += 1
        try:
            while (window := self.scheduler.next_window()) is not None:
                out += self._select(self._run_window(window))
        except Exception as err:
            self.reset(f"window failed: {type(err).__name__}: {err}")
            raise
        self._release()
        return out

    def flush(self) -> list[DepthFrame]:
        """End of stream: run the last (partial) window, settle all provisional frames as final.

        The pipeline is then ready for a new stream (indices restart at 0).
        """
        out: list[DepthFrame] = []
        while (window := self.scheduler.next_window(final=True)) is not None:
            out += self._select(self._run_window(window))
        out += self._select(self._finish(self.stitcher.finish()))
        self._clear()
        return out

    def _check(self, frame: FrameInput) -> np.ndarray:
        rgb = np.asarray(frame.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"FrameInput.rgb must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if frame.sparse_depth is not None and np.shape(frame.sparse_depth) != rgb.shape[:2]:
            raise InputError(f"sparse_depth is {np.shape(frame.sparse_depth)}, rgb is {rgb.shape[:2]}")
        if frame.camera is not None and (frame.camera.width, frame.camera.height) != (rgb.shape[1], rgb.shape[0]):
            raise InputError(
                f"camera is {frame.camera.width}x{frame.camera.height}, rgb is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return rgb

    def _record(self, frame: FrameInput, rgb: np.ndarray) -> _Record:
        work = _resize(rgb, self.width, self.height, cv2.INTER_AREA)
        sparse = None
        if frame.sparse_depth is not None:
            sparse = resample_sparse_depth(frame.sparse_depth, self.width, self.height)
        keep_in = self.config.output_resolution == "input" and self.config.cloud_colors
        return _Record(frame.stamp_ns, frame.meta, frame.camera, rgb.shape[:2], work, rgb if keep_in else None, sparse)

    def _release(self) -> None:
        keep = self.scheduler.needed_frames() | self.stitcher.pending
        for i in [i for i in self._records if i not in keep and i <= self._last_emitted]:
            del self._records[i]

    # -- one window ----------------------------------------------------------------------------
    def _infer(self, window: Window, rgbs: list[np.ndarray]) -> np.ndarray:
        frames = np.stack(rgbs + [rgbs[-1]] * window.pad)
        t0 = time.perf_counter()
        if getattr(self.engine, "supports_reuse", False):  # frame indices: the engine reuses overlap work
            out = self.engine.infer(frames, frame_ids=list(window.slots) + [window.slots[-1]] * window.pad)
        else:
            out = self.engine.infer(frames)
        self.stats.infer_seconds += time.perf_counter() - t0
        self.stats.windows += 1
        out = np.asarray(out, dtype=np.float32)[: len(window.slots)]
        return disparity_from_depth(out) if self.metric_model else out

    def _run_window(self, window: Window) -> list[StitchedFrame]:
        disp = self._infer(window, [self._records[f].rgb for f in window.slots])
        before = (self.stitcher.degenerate_fits, self.stitcher.anchor_refreshes)
        stitched = self.stitcher.add(window, disp, inplace=True)  # the engine's output is ours
        self.stats.degenerate_fits += self.stitcher.degenerate_fits - before[0]
        self.stats.anchor_refreshes += self.stitcher.anchor_refreshes - before[1]
        if self.stitcher.last_fit.degenerate and window.index > 0:
            fit = self.stitcher.last_fit
            log.warning(
                "window %d: alignment fell back to (%.3g, %.3g): %s", window.index, fit.scale, fit.shift, fit.reason
            )
        if self.stitcher.anchor is not None and self.stitcher.anchor != self.scheduler.anchor:
            self.scheduler.set_anchor(self.stitcher.anchor)
        return self._finish(stitched, window)

    def _finish(self, stitched: list[StitchedFrame], window: Window | None = None) -> list[StitchedFrame]:
        """Update the metric scale from this window's output frames."""
        if window is not None and stitched:
            here = [s for s in stitched if s.window == window.index]
            if here:
                self.scale_source.update(
                    np.stack([s.disparity for s in here]), [self._records[s.index].sparse for s in here]
                )
        return stitched

    # -- output --------------------------------------------------------------------------------
    def _select(self, stitched: list[StitchedFrame]) -> list[DepthFrame]:
        policy = self.config.publish
        out = []
        for sf in stitched:
            if policy == "provisional":
                emit = sf.index > self._last_emitted
            elif policy == "final":
                emit = sf.status == "final"
            else:
                emit = True
            if emit:
                out.append(self._depth_frame(sf))
            self._last_emitted = max(self._last_emitted, sf.index) if emit else self._last_emitted
        return out

    def _depth_frame(self, sf: StitchedFrame, record: _Record | None = None) -> DepthFrame:
        t0 = time.perf_counter()
        rec = record if record is not None else self._records[sf.index]
        disp, rgb, camera = sf.disparity, rec.rgb, rec.camera
        if self.config.output_resolution == "input" and rec.input_size != disp.shape:
            h, w = rec.input_size
            disp = cv2.resize(disp, (w, h), interpolation=cv2.INTER_LINEAR)
            rgb = rec.rgb_in
        elif camera is not None:
            camera = camera.scaled(self.width, self.height)
        metric = self.scale_source.current
        depth = points = colors = None
        if metric is not None:
            depth = depth_from_disparity(
                disp, metric.scale, metric.shift, min_depth=self.config.min_depth, max_depth=self.config.max_depth
            )
            if camera is not None and self.cloud is not None:
                points, colors = self.cloud.build(depth, camera, rgb if self.config.cloud_colors else None)
        fit = self._fit_info(sf.fit, sf.window, metric)
        self.stats.frames_out += 1
        self.stats.last_fit = fit
        self.stats.post_seconds += time.perf_counter() - t0
        return DepthFrame(
            index=sf.index,
            stamp_ns=rec.stamp_ns,
            meta=rec.meta,
            status=sf.status,
            disparity=_readonly(disp),
            depth=_readonly(depth),
            camera=camera,
            points=_readonly(points),
            colors=_readonly(colors),
            fit=fit,
        )

    def _fit_info(self, fit: AffineFit, window: int, metric: AffineFit | None) -> FitInfo:
        return FitInfo(
            scale=fit.scale,
            shift=fit.shift,
            residual=fit.residual,
            inlier_fraction=fit.inlier_fraction,
            degenerate=fit.degenerate,
            scale_source=self.scale_source.kind,
            window=window,
            metric_scale=None if metric is None else metric.scale,
            metric_shift=None if metric is None else metric.shift,
            reason=fit.reason,
        )

    # -- offline -------------------------------------------------------------------------------
    def run_offline(self, frames: Iterable[FrameInput], spill_dir: str | Path | None = None) -> Iterator[DepthFrame]:
        """Non-causal processing of a whole sequence: all windows, one global solve, then output.

        Pass 1 runs every window (same schedule and model calls as causal mode) and records
        pairwise fits between windows that share frames; window disparities, working-resolution
        images and sparse depth spill to temporary files, so memory is bounded by the window
        size. Then `solve_global_affine` finds every window's (s, t) at once (anchored on window
        0) and pass 2 applies them with the same crossfade as causal mode. Every frame is output
        once, "final". `anchor_refresh` does not apply here (the papers' frame-0 anchor is kept).

        Args:
            frames: the sequence (consumed once).
            spill_dir: folder for the temporary files (default: the system temp dir).
        """
        self._clear()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="vdepth-offline-", dir=spill_dir) as tmp,
                contextlib.ExitStack() as stack,
            ):
                spill = _Spill(Path(tmp), self.height, self.width)
                stack.callback(spill.close_files)
                stack.callback(spill.close_reads)
                records: list[_Record] = []
                windows: list[Window] = []
                aligner = GlobalAligner(self.fit_options)
                sched = self.scheduler

                def run(window: Window) -> None:
                    disp = self._infer(window, [buffer[f] for f in window.slots])
                    spill.put_window(disp)
                    aligner.add(window, disp)
                    windows.append(window)

                buffer: dict[int, np.ndarray] = {}
                for frame in frames:
                    rgb = self._check(frame)
                    if records and rgb.shape[:2] != records[0].input_size:
                        raise InputError("run_offline needs one input resolution for the whole sequence")
                    index = sched.add_frame()
                    rec = self._record(frame, rgb)
                    buffer[index] = rec.rgb
                    spill.put_frame(index, rec)
                    rec.rgb = rec.rgb_in = rec.sparse = None
                    records.append(rec)
                    self.stats.frames_in += 1
                    while (w := sched.next_window()) is not None:
                        run(w)
                    need = sched.needed_frames()
                    for i in [i for i in buffer if i not in need]:
                        del buffer[i]
                while (w := sched.next_window(final=True)) is not None:
                    run(w)
                buffer.clear()
                fits = aligner.solve(anchor=0)
                self.stats.degenerate_fits += sum(f.degenerate for f in fits) + sum(
                    e.fit.degenerate for e in aligner.edges
                )
                spill.close_writes()

                stitcher = Stitcher(self.alignment, self.fit_options)  # type: ignore[arg-type]
                for window, fit in zip(windows, fits, strict=True):
                    stitched = stitcher.add(window, spill.window(window.index), affine=fit)
                    here = [s for s in stitched if s.window == window.index]
                    if here:
                        self.scale_source.update(
                            np.stack([s.disparity for s in here]), [spill.sparse(s.index) for s in here]
                        )
                    for sf in stitched:
                        if sf.status == "final":
                            yield self._depth_frame(sf, spill.record(sf.index, records[sf.index]))
                for sf in stitcher.finish():
                    yield self._depth_frame(sf, spill.record(sf.index, records[sf.index]))
        finally:
            self._clear()  # also when the consumer stops early: the causal API stays usable


class _Spill:
    """Append-only temp files for offline mode, read back window by window with `os.pread`."""

    def __init__(self, folder: Path, height: int, width: int) -> None:
        self.folder, self.h, self.w = folder, height, width
        self._rgb = open(folder / "rgb.u8", "wb")  # noqa: SIM115 - closed in close_writes
        self._rgb_in = open(folder / "rgb_in.u8", "wb")  # noqa: SIM115
        self._disp = open(folder / "disp.f32", "wb")  # noqa: SIM115
        self._sparse = open(folder / "sparse.f32", "wb")  # noqa: SIM115
        self._win_offsets: list[tuple[int, int]] = []  # (first frame slot, n frames) per window
        self._n_disp = 0
        self._sparse_slot: dict[int, int] = {}
        self._rgb_in_offset: dict[int, tuple[int, tuple[int, int]]] = {}
        self._rgb_in_bytes = 0

    def put_frame(self, index: int, rec: _Record) -> None:
        assert rec.rgb is not None
        self._rgb.write(np.ascontiguousarray(rec.rgb).tobytes())
        if rec.sparse is not None:
            self._sparse_slot[index] = len(self._sparse_slot)
            self._sparse.write(np.ascontiguousarray(rec.sparse, dtype=np.float32).tobytes())
        if rec.rgb_in is not None:
            data = np.ascontiguousarray(rec.rgb_in).tobytes()
            self._rgb_in_offset[index] = (self._rgb_in_bytes, rec.rgb_in.shape[:2])
            self._rgb_in.write(data)
            self._rgb_in_bytes += len(data)

    def put_window(self, disp: np.ndarray) -> None:
        self._win_offsets.append((self._n_disp, disp.shape[0]))
        self._disp.write(np.ascontiguousarray(disp, dtype=np.float32).tobytes())
        self._n_disp += disp.shape[0]

    def close_files(self) -> None:
        for f in (self._rgb, self._rgb_in, self._disp, self._sparse):
            f.close()

    def close_writes(self) -> None:
        self.close_files()
        # Read back with pread into fresh buffers, not np.memmap: pages a memmap has touched stay
        # mapped (and counted in RSS) until it is closed, so RSS would grow with the sequence.
        self._fds = {
            name: os.open(self.folder / name, os.O_RDONLY) for name in ("rgb.u8", "rgb_in.u8", "disp.f32", "sparse.f32")
        }

    def close_reads(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)
        self._fds = {}

    def _read(self, name: str, offset: int, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        while got < nbytes:  # pread may return short reads
            chunk = os.pread(self._fds[name], nbytes - got, offset + got)
            if not chunk:
                raise OSError(f"offline spill file {name} is truncated")
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def window(self, k: int) -> np.ndarray:
        start, n = self._win_offsets[k]
        frame = self.h * self.w * 4
        return self._read("disp.f32", start * frame, np.float32, (n, self.h, self.w))

    def sparse(self, index: int) -> np.ndarray | None:
        slot = self._sparse_slot.get(index)
        if slot is None:
            return None
        return self._read("sparse.f32", slot * self.h * self.w * 4, np.float32, (self.h, self.w))

    def record(self, index: int, rec: _Record) -> _Record:
        rgb_in = None
        if index in self._rgb_in_offset:
            off, (h, w) = self._rgb_in_offset[index]
            rgb_in = self._read("rgb_in.u8", off, np.uint8, (h, w, 3))
        rgb = self._read("rgb.u8", index * self.h * self.w * 3, np.uint8, (self.h, self.w, 3))
        return _Record(rec.stamp_ns, rec.meta, rec.camera, rec.input_size, rgb, rgb_in, None)
