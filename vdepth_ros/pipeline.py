"""`DepthPipeline`: frames in, temporally consistent depth frames out (no ROS).

One object shared by the live node, `vdepth-bag`, `vdepth-video` and `vdepth-eval`:

1. per stream, choose the working resolution from the first frame (`resize.working_size`: the
   camera's aspect ratio, kept as far as the engine's shapes allow) and resize each RGB frame to
   it (`resize_method`);
2. schedule windows (`stream.WindowScheduler`) per the model's input spec, overridable by config;
3. run `engine.infer` on each window (metric models: depth -> disparity);
4. stitch (`stream.Stitcher`: align on the overlap, crossfade, provisional/final);
5. upsample the disparity to the output resolution (`output_resolution`, default the camera's:
   registered pixel for pixel, camera_info unchanged; `upsample_method`), metric scale
   (`stream.ScaleSource`), `stream.depth_from_disparity` (REP 118: NaN no estimate, +Inf beyond
   the far limit, -Inf below the near limit), organized cloud.

Negative aligned disparity: the stream's canonical frame is its first window's, whose 0 is not
infinity, so content farther than anything that window saw lands below 0. Metric scale, depth and
points are computed from those values as they are (`depth_from_disparity` maps metric inverse depth
<= 0 to +Inf), and only the relative `disparity` output is clamped at 0 afterwards (consumers
and the papers' protocol expect disparity >= 0). DVD and VDA clamp inside the stitching, before
the crossfade; `inference: reference` does the same (`Stitcher(clamp_negative=True)`). Measured
effect (metric AbsRel with a sparse scale, development set): `benchmarks/negative_disparity.py`,
docs/alignment.md "Far content below the canonical zero".

Latency (causal): a frame is output when its window is complete, i.e. after the first window
(W frames, or about half with `low_latency_start`) at start-up and then every stride `W - O`
frames, plus one `infer` call. Frames in the last `O` (keyframe schedule: the last
`I = interp` frames) of a window are revised by the next window's crossfade: with
`publish="provisional"` they are output once, early, marked "provisional"; with "final" they are
held back one more stride; with "both" they are output twice. The output is deterministic for
a deterministic engine, so a bag processed causally equals the live node frame for frame.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError
from vdepth_ros.pipeline_input import InputSteps
from vdepth_ros.pipeline_offline import run_offline
from vdepth_ros.pipeline_output import OutputSteps
from vdepth_ros.pipeline_types import DepthFrame, FitInfo, FrameInput, PeriodicLog, PipelineStats, _Record
from vdepth_ros.pipeline_windows import WindowSteps, _scheduler
from vdepth_ros.runtime.provenance import model_identity
from vdepth_ros.runtime.reference_inference import reference_inference
from vdepth_ros.runtime.shapes import TRAINED_SIZE_KEY
from vdepth_ros.stream.align import FitOptions
from vdepth_ros.stream.cloud import CameraModel, PointCloudBuilder
from vdepth_ros.stream.cuts import SceneCutDetector
from vdepth_ros.stream.scale import make_scale_source
from vdepth_ros.stream.stitch import Stitcher
from vdepth_ros.stream.windows import Window

if TYPE_CHECKING:
    from vdepth_ros.runtime.engine import DepthEngine

log = logging.getLogger(__name__)

__all__ = [
    "CameraModel",
    "DepthFrame",
    "DepthPipeline",
    "FitInfo",
    "FrameInput",
    "PipelineConfig",
    "PipelineStats",
    "identity_line",
]


def identity_line(identity: dict[str, str]) -> str:
    """`DepthPipeline.model_identity` as one log/summary line."""
    return (
        f"{identity['model family']} ({identity['model output']}) from {identity['model']} "
        f"(release: {identity['model release']}); runs "
        f"{identity['model file']} on {identity['backend']}, {identity['precision']}; windows of {identity['windows']}"
    )


def _keeps_output_on_failure(step: Callable[..., list[DepthFrame]]) -> Callable[..., list[DepthFrame]]:
    """A step that outputs frames (`push`, `early_window`, `flush`): the frames it had output when it raised
    (a window's first frames before a later one's output failed, the old stream's at a new resolution or
    scene cut before the new frame failed) are kept for the caller (`take_output_before_failure`) rather than
    lost with the exception: `stats.frames_out` counts them, so a caller that drops them loses frames unseen."""

    @functools.wraps(step)
    def run(self: DepthPipeline, *args: Any) -> list[DepthFrame]:
        if self._output_so_far is not None:  # a step inside another (`push` flushes at a new resolution)
            return step(self, *args)
        self._output_so_far, self._output_before_failure = [], []
        try:
            return step(self, *args)
        except BaseException:
            self._output_before_failure = self._output_so_far
            raise
        finally:
            self._output_so_far = None

    return run


class DepthPipeline(InputSteps, WindowSteps, OutputSteps):
    """The depth pipeline (see module docstring).

    Args:
        config: pipeline parameters.
        engine: a `DepthEngine`; None -> `vdepth_ros.runtime.create_engine(config.model, ...)`, once
            `runtime.checks.checked_model` has resolved the model and checked its files (a bad one raises
            `ModelLoadError` naming the file and why, in the words the node stops with).
    """

    def __init__(self, config: PipelineConfig, engine: DepthEngine | None = None) -> None:
        self.config = config
        self._model_source: str | None = None  # the model it loaded itself (`model_identity`)
        if engine is None:
            from vdepth_ros.runtime import create_engine
            from vdepth_ros.runtime.checks import checked_model

            # resolved and every model file checked, as the node and the tools do before loading
            self._model_source = checked_model(config.model)
            engine = create_engine(
                self._model_source, backend=config.backend, precision=config.precision, **config.engine_options()
            )
        self.engine = engine  # as given (a pool's handle stays this object); `_engine` runs the stream
        self._engine = engine
        spec = engine.input_spec
        # `inference` resolved for the engine's family: the authors' settings in "reference" mode
        config = self.config = config.for_family(spec.family)
        self.reference = reference_inference(spec.family) if config.inference == "reference" else None
        # VDA's order: each window upsampled to the output size, then fitted, clamped and blended
        # there (the fit over upsampled pixels is not the fit over working pixels)
        self._stitch_output = self.reference is not None and self.reference.get("stitch_resolution") == "output"
        # `image_rotation`: the frames are turned upright on the way in (`_check`, `_record`): every size below
        # (input, working, output) is upright, and the outputs are turned back (`_depth_frame`)
        self._turns = config.image_rotation // 90 % 4
        self._stretch_noted: set[tuple[int, int, int, int]] = set()  # (camera H, W, working H, W) warned about
        self.stretched: str | None = None  # what the model sees of the current stream's frames, if stretched
        self.fallback: str | None = None  # that the last window's alignment fell back, if it did (`HELD_STATES`)
        self.no_depth: str | None = None  # what of the last window's model output carried no depth, if any (the same)
        self.sparse_span: str | None = None  # that the metric fit in use extrapolates much of the depth (ditto)
        self.height, self.width = int(spec.height), int(spec.width)  # working resolution (per stream)
        self._default_size = (self.height, self.width)
        if spec.multiple_of > 1 and (self.height % spec.multiple_of or self.width % spec.multiple_of):
            raise ConfigError(
                f"engine working resolution {self.height}x{self.width} is not a multiple of {spec.multiple_of}"
            )
        if config.working_short_side and engine.resolutions() is not None:
            raise ConfigError(
                f"working_short_side {config.working_short_side} needs an engine that runs any resolution "
                f"(torch); this {engine.backend} engine runs the exported shapes {engine.resolutions()}"
            )
        trained = spec.extra.get(TRAINED_SIZE_KEY)
        if trained and config.working_short_side and config.working_short_side != min(trained):
            log.warning(
                "working_short_side %d: this model was trained at %dx%d (short side %d, its default); it runs at the "
                "size given", config.working_short_side, *trained, min(trained),
            )  # fmt: skip
        self.metric_model = spec.output_kind == "depth"
        self.alignment = spec.alignment if config.alignment == "auto" else config.alignment
        if self.metric_model and config.alignment == "auto":
            self.alignment = "none"  # metric depth needs no alignment, only the crossfade
        self.scheduler = _scheduler(config, spec, self.alignment)
        # DVD's three decoded channels, fitted and blended together and averaged after (causal mode)
        self._channels = (
            self.reference is not None
            and self.reference.get("channels", 1) > 1
            and self.alignment in ("chain_ls", "keyframe", "none")  # not the graph solver's
        )
        self.window, self.overlap = self.scheduler.window, self.scheduler.overlap
        options = FitOptions(
            method=config.fit_method,  # type: ignore[arg-type]
            robust=config.robust,  # type: ignore[arg-type]
            scale_clip=config.scale_clip,
            max_points=config.fit_max_points,
            pixels=config.fit_pixels,  # type: ignore[arg-type]
            # the authors solve the normal equations whatever the correlation, and clip the
            # scale without refitting the shift (DVD)
            **({"min_correlation": 0.0, "clip_keeps_shift": True} if self.reference is not None else {}),
        )
        self.fit_options = options
        self.stitcher = Stitcher(
            self.alignment,  # type: ignore[arg-type]
            options,
            clamp_negative=self.reference is not None,  # module docstring: negative disparity
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
        far = min(config.max_depth, config.far) if self.scale_source.kind == "range" else config.max_depth
        self.depth_limits = (config.min_depth, far)  # REP 118: -Inf below, +Inf beyond
        self.cloud = PointCloudBuilder(config.cloud_stride) if config.cloud_stride > 0 else None
        threshold = config.scene_cut_threshold
        self.cuts = SceneCutDetector(threshold) if threshold > 0 else None
        self.stats = PipelineStats()
        self._periodic_log = PeriodicLog()  # lines that can repeat at every frame or window
        self._output_so_far: list[DepthFrame] | None = None  # during a step (`_keeps_output_on_failure`)
        self._output_before_failure: list[DepthFrame] = []
        self._clear()

    @classmethod
    def from_dict(cls, params: dict[str, Any], engine: DepthEngine | None = None) -> DepthPipeline:
        """From node parameters / a `load_params` dict; keys that are not pipeline fields are ignored, and
        a key that is no parameter of the node either (a typo) is named in one WARNING with the closest."""
        from vdepth_ros.node_params import is_node_parameter, unknown_parameters_warning

        config, unknown = PipelineConfig.from_params(params)
        if unknown:
            log.debug("parameters not used by the pipeline: %s", sorted(unknown))
        # a typo (`max_ouput_width`) would be ignored without a word: named with the closest, as the node does
        strange = unknown_parameters_warning(unknown, is_node_parameter, where="the dict given to DepthPipeline")
        if strange:
            log.warning(strange)
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

    def model_identity(self, model: str | Path | None = None) -> dict[str, str]:
        """Which model runs (`runtime.provenance.model_identity`: family, path, release, file, backend,
        precision) and the windows it runs on: what tells two robots' runs apart.

        Args:
            model: the folder or file the engine was built from; default: the one this pipeline
                loaded itself (None for an engine given in code).
        """
        s = self.schedule
        keyframes = f", keyframes {s['keyframes']}" if s["schedule"] == "keyframe" else ""
        windows = (
            f"{s['window']} frames, overlap {s['overlap']}{keyframes}, at {self.height}x{self.width}, "
            f"alignment {s['alignment']}"
            # a causal model's 2-frame windows are a stream's: no window of frames runs, only each new frame's step
            + (
                "; a stream: each new frame inferred once, attending to the earlier ones"
                if getattr(self.engine, "streams", False)
                else ""
            )
        )
        return {**model_identity(model if model is not None else self._model_source, self.engine), "windows": windows}

    # -- state ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._restart_stream()
        self._index_base = 0  # DepthFrame.index of local frame 0: a scene cut keeps counting
        self._input_size: tuple[int, int] | None = None
        self._output_size: tuple[int, int] | None = None
        if self.cuts is not None:
            self.cuts.reset()

    def _restart_stream(self) -> None:
        """New alignment, windows and scale from the next frame on (a reset or a scene cut)."""
        self._reset_engine_stream()
        self.scheduler.reset()
        self.stitcher.reset()
        self.scale_source.reset()
        self._records: dict[int, _Record] = {}
        self._last_emitted = -1

    def _reset_engine_stream(self) -> None:
        """Frame indices restart: the engine's per-frame cache (exact reuse) is stale."""
        for engine in {id(e): e for e in (self.engine, getattr(self, "_engine", self.engine))}.values():
            if hasattr(engine, "reset_stream"):  # engines outside the package may lack it
                engine.reset_stream()

    def _scene_cut(self, rec: _Record) -> bool:
        """True when the frame of `rec` starts a new scene after frames of this stream."""
        if self.cuts is None:
            return False
        # uint8 images only: a bicubic working image is float in the engine's value range
        image = rec.rgb if rec.rgb is not None and rec.rgb.dtype == np.uint8 else rec.rgb_out
        return image is not None and self.cuts.update(image) and self.scheduler.n_frames > 0

    def reset(self, reason: str) -> int:
        """Drop all state (frames not yet output are discarded); indices restart at 0. Returns how many
        frames were discarded (`held`; counted in `stats.frames_discarded`)."""
        discarded = self.held
        self.stats.frames_discarded += discarded
        self.stats.resets += 1
        more = self._periodic_log.admit("reset")  # a camera alternating resolutions resets at every frame
        if more is not None:
            log.info("depth pipeline reset: %s%s", reason, more)
        self.stats.last_reset_reason = reason
        self._clear()
        return discarded

    # -- causal API ----------------------------------------------------------------------------
    @_keeps_output_on_failure
    def push(self, frame: FrameInput) -> list[DepthFrame]:
        """Add one frame; returns the frames that became available (possibly none).

        A change of input resolution ends the current stream (`flush`) and starts a new one.
        If the engine raises, the stream is reset (its pending frames are lost) and the error
        propagates, so the next push starts a consistent new stream; the frames output before the
        failure are the caller's to take (`take_output_before_failure`).
        """
        rgb = self._check(frame)
        out: list[DepthFrame] = []
        if self._input_size is not None and rgb.shape[:2] != self._input_size:
            out = self.flush()
            self.reset(f"input resolution changed to {rgb.shape[1]}x{rgb.shape[0]}")
        if self._input_size is None:
            self._start_stream(rgb.shape[:2], frame.camera)
        record = self._record(frame, rgb)
        if self._scene_cut(record):
            out += self._cut()
        index = self.scheduler.add_frame()
        self._records[index] = record
        self.stats.frames_in += 1
        return out + self._run_windows(iter(self.scheduler.next_window, None))

    @_keeps_output_on_failure
    def early_window(self) -> list[DepthFrame]:
        """A camera that paused: run a window over the frames held for the next one now (shaped as
        the end of a stream's window, `WindowScheduler.early_window`), without ending the stream;
        returns the frames that became available (none when no frame is waiting for a window).
        The stream goes on with the next `push` as after any window. As in `push`, an engine error
        resets the stream and propagates."""
        window = self.scheduler.early_window()
        return [] if window is None else self._run_windows([window])

    def _run_windows(self, windows: Iterable[Window]) -> list[DepthFrame]:
        """Run the scheduled `windows` (`push`, `early_window`) and release what no window needs any
        more. An engine error resets the stream (its pending frames are lost) and propagates, so the
        next push starts a consistent new stream."""
        out: list[DepthFrame] = []
        try:
            for window in windows:
                out += self._select(self._run_window(window))
        except Exception as err:
            self.reset(f"window failed: {type(err).__name__}: {err}")
            raise
        self._release()
        return out

    def take_output_before_failure(self) -> list[DepthFrame]:
        """The frames the last `push`, `early_window` or `flush` had output when it raised (in order; none after
        one that returned), once: counted as output, they are published like any (the node does)."""
        frames, self._output_before_failure = self._output_before_failure, []
        return frames

    @property
    def held(self) -> int:
        """Frames pushed whose output the `publish` policy still holds back: frames waiting for a
        window, and with "final" or "both" the provisional frames the next window will revise (a
        `flush` outputs them all)."""
        waiting = self.scheduler.n_frames - 1 - self._last_emitted
        if self.config.publish == "both":
            waiting += len(self.stitcher.pending)
        return max(0, waiting)

    @_keeps_output_on_failure
    def flush(self) -> list[DepthFrame]:
        """End of stream: run the last (partial) window, settle all provisional frames as final.

        The pipeline is then ready for a new stream (indices restart at 0).
        """
        out = self._end_stream()
        self._clear()
        return out

    def _end_stream(self) -> list[DepthFrame]:
        out: list[DepthFrame] = []
        while (window := self.scheduler.next_window(final=True)) is not None:
            out += self._select(self._run_window(window))
        return out + self._select(self._finish(self.stitcher.finish()))

    def _cut(self) -> list[DepthFrame]:
        """Scene cut before the next frame: finish the stream so far, restart alignment after it.

        Unlike `reset`, frame indices keep counting and nothing is dropped: the frames before the
        cut are output by a last (partial) window, as at the end of a stream.
        """
        score = self.cuts.last_score if self.cuts is not None else 0.0
        base = self._index_base + self.scheduler.n_frames
        log.info("scene cut before frame %d (score %.2f): alignment restarts", base, score)
        out = self._end_stream()
        self._restart_stream()
        self._index_base = base
        self.stats.scene_cuts += 1
        return out

    def _release(self) -> None:
        keep = self.scheduler.needed_frames() | self.stitcher.pending
        for i in [i for i in self._records if i not in keep and i <= self._last_emitted]:
            del self._records[i]

    # -- offline -------------------------------------------------------------------------------
    def run_offline(self, frames: Iterable[FrameInput], spill_dir: str | Path | None = None) -> Iterator[DepthFrame]:
        """Non-causal processing of a whole sequence: all windows, a fixed-lag smoother, then output.

        Pass 1 runs every window (same schedule and model calls as causal mode) and records
        pairwise fits between windows that share frames (`CausalGraphAligner`, the edges of graph
        alignment, all kept); window disparities, working-resolution
        images and sparse depth spill to temporary files, so memory is bounded by the window
        size. Every window's (s, t) is the graph estimate once two more windows have been seen
        (`CausalGraphAligner.smoothed`, anchored on window 0) and pass 2 applies them with a
        crossfade that blends both windows on every overlap frame (`OFFLINE_CROSSFADE`; causal
        mode: the papers' `linspace(0, 1, n)`). A scene cut (as in
        causal mode) starts a new segment with its own windows and solve. Every frame is output
        once, "final". `anchor_refresh` does not apply here (the papers' frame-0 anchor is kept).

        Args:
            frames: the sequence (consumed once).
            spill_dir: folder for the temporary files (default: the system temp dir).
        """
        yield from run_offline(self, frames, spill_dir)
