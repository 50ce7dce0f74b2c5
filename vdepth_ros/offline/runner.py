"""What `vdepth-bag` and `vdepth-video` share: building the pipeline from the node's YAML, driving it
causally or offline over a frame stream, the progress bar and the final summary."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from vdepth_ros.inputs.decode import SettingWords
from vdepth_ros.offline.errors import InterruptedRun, OfflineError
from vdepth_ros.pipeline_types import sparse_span

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from vdepth_ros.config import PipelineConfig
    from vdepth_ros.inputs.resets import PauseRule, StreamResets
    from vdepth_ros.offline.atomic import AtomicOutput
    from vdepth_ros.pipeline import DepthFrame, DepthPipeline, FrameInput
    from vdepth_ros.runtime.engine import DepthEngine

log = logging.getLogger(__name__)

Mode = Literal["causal", "offline"]
#: `RunSummary.scale_sources` suffix of the frames whose scale source had no fit yet (no depth written)
NO_FIT_YET = " without a fit yet (disparity only)"
T = TypeVar("T")
MODES: tuple[str, ...] = ("causal", "offline")


def default_params_path() -> Path:
    """`config/depth.yaml`: the node's parameter file, also the offline tools' defaults."""
    from vdepth_ros.paths import config_dir

    return config_dir() / "depth.yaml"


def load_node_params(
    path: str | Path | None = None, node_name: str = "depth_node", model: str | None = None
) -> dict[str, Any]:
    """The node's parameters as a flat dict, from `path` or the bundled `config/depth.yaml`, as the
    node `node_name` (`/ns/depth_node` for a node in a namespace) gets them (rcl's rules).

    A parameter the node does not have (a typo such as `windw: 8`) is warned about as the node
    warns at start-up, with the closest name. The file's `model` is resolved as the node resolves it
    (`runtime.registry.resolve_model`: a relative path from the file's folder, a release name to its
    cache folder); `model` (a tool's `--model`) replaces it instead, from the current folder.

    Raises:
        ConfigError: the file cannot be read, or one of the node's ROS-side values is one the node
            would stop on (`node_params.ros_param_values`; the pipeline's are `pipeline_config`'s).
        ModelLoadError: the file's model is not found (the message names the path tried).
    """
    from vdepth_ros.config import load_params
    from vdepth_ros.node_params import is_node_parameter, ros_param_values, unknown_parameters_warning
    from vdepth_ros.runtime.registry import resolve_model

    path = Path(path) if path else default_params_path()
    params = dict(load_params(path, node_name))
    ros_param_values(params)
    unknown = unknown_parameters_warning(params, is_node_parameter, where="this file's section")
    if unknown:
        log.warning("%s: %s", path, unknown)
    if model:
        params["model"] = str(model)
    elif isinstance(params.get("model"), str):
        params["model"] = resolve_model(params["model"], params_file=path)
    return params


def apply_blas_threads(params: dict[str, Any]) -> dict[str, int]:
    """The node's `blas_threads` from the tool's parameters, applied as the node applies it
    (`vdepth_ros/blas.py`: 0 leaves the pool as it is, `OPENBLAS_NUM_THREADS` wins); every tool that
    reads a params file calls this right after `load_node_params`. Returns the previous counts."""
    from vdepth_ros.blas import limit_blas_threads_for_tool
    from vdepth_ros.node_params import ros_param_values

    return limit_blas_threads_for_tool(ros_param_values(params)["blas_threads"])


def pipeline_config(
    params: dict[str, Any], *, model: str | None = None, backend: str | None = None, check_model: bool = False
) -> PipelineConfig:
    """The `PipelineConfig` from the node's flat params (ROS-only keys are ignored), with CLI overrides.

    Args:
        check_model: resolve the model and check its files as the node does at start-up
            (`runtime.checks.checked_model`), so a bad one stops the tool with the node's words before
            any work; the config then holds the model's absolute path.
    """
    from vdepth_ros.config import PipelineConfig

    params = dict(params)
    if model:
        params["model"] = str(model)
    if backend:
        params["backend"] = backend
    config, _ros_only = PipelineConfig.from_params(params)
    if check_model:
        from vdepth_ros.runtime.checks import checked_model

        config.model = checked_model(config.model)
    return config


def build_pipeline(config: PipelineConfig, *, engine: DepthEngine | None = None) -> DepthPipeline:
    """The same `DepthPipeline` the node builds; `engine` injects a ready engine (tests, benchmarks)."""
    from vdepth_ros.pipeline import DepthPipeline

    return DepthPipeline(config, engine=engine)


def run_pipeline(
    pipeline: DepthPipeline,
    frames: Iterable[FrameInput],
    mode: Mode,
    resets: StreamResets | None = None,
    signature: Callable[[FrameInput], tuple | None] | None = None,
    spill_dir: Path | None = None,
    pauses: PauseRule | None = None,
) -> Iterator[DepthFrame]:
    """Drive `pipeline` over `frames`.

    `causal` is exactly what the live node does: `push` per frame, `flush` at the end and, with
    `resets`, flush + reset where the node restarts the stream (`signature(frame)` gives the
    camera_info signature), and with `pauses` (fed the stamps) the window the node runs over the
    frames it holds when the camera pauses (`DepthPipeline.early_window`; before a gap restart too:
    the node runs it during the pause). `offline` is `run_offline` (global scale/shift solve, windows spilled to
    disk in `spill_dir`, the output's `AtomicOutput.scratch`, memory bounded by the window), run on
    each part between the places where causal mode restarts: a gap or a time jump is not stitched over.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    parts = _StreamParts(frames, resets, signature)
    while True:
        if mode == "causal":
            for frame in parts.part():
                if pauses is not None:
                    if pauses.paused_before(frame.stamp_ns):
                        yield from pipeline.early_window()
                    pauses.note(frame.stamp_ns)
                yield from pipeline.push(frame)
            if pauses is not None and parts.reason is not None and parts.reason.startswith("gap"):
                yield from pipeline.early_window()
            yield from pipeline.flush()
        else:
            yield from pipeline.run_offline(parts.part(), spill_dir)
        if parts.reason is None:
            return
        log.warning("restarting the depth stream: %s", parts.reason)
        pipeline.reset(parts.reason)


class _StreamParts:
    """`frames` cut where `resets` restarts the stream (not on a resolution change: the pipeline
    handles that itself); `part()` yields the next part, then `reason` says why it ended (None: the
    frames ended)."""

    def __init__(
        self,
        frames: Iterable[FrameInput],
        resets: StreamResets | None,
        signature: Callable[[FrameInput], tuple | None] | None,
    ) -> None:
        self._frames = iter(frames)
        self._resets, self._signature = resets, signature
        self._first: FrameInput | None = None  # the frame that starts the next part
        self.reason: str | None = None

    def part(self) -> Iterator[FrameInput]:
        self.reason = None
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        for frame in self._frames:
            reason = self._restart(frame)
            if reason:
                self._first, self.reason = frame, reason
                return
            yield frame

    def _restart(self, frame: FrameInput) -> str | None:
        if self._resets is None:
            return None
        info = self._signature(frame) if self._signature else None
        reason = self._resets.update(frame.rgb.shape[:2], frame.stamp_ns, info)
        return reason if reason and not reason.startswith("resolution") else None


def with_progress(frames: Iterable[T], total: int | None, desc: str, enabled: bool) -> Iterator[T]:
    """Pass `frames` through, showing a tqdm bar (frames/s and ETA) on stderr when `enabled`.

    Offline mode reads every frame before it writes any, so the tools show a second bar for writing.
    """
    from tqdm import tqdm

    with tqdm(
        total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True, file=sys.stderr, smoothing=0.1
    ) as bar:
        for frame in frames:
            yield frame
            bar.update(1)


@dataclass
class RunSummary:
    """What one offline run did, for the final summary line(s) and `--json`."""

    mode: str
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    provisional: int = 0
    clouds: int = 0
    clouds_skipped: int = 0
    seconds: float = 0.0
    residuals: list[float] = field(default_factory=list)
    scale_sources: Counter[str] = field(default_factory=Counter)
    degenerate_fits: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: which model ran (`DepthPipeline.model_identity`)
    model: dict[str, str] = field(default_factory=dict)
    #: how far a run that Ctrl-C stopped got (`StopAtCtrlC`: its output holds the input up to there)
    interrupted: str | None = None
    #: why it was stopped, when not by a signal (the output's disk nearly full: `disk_room_check`)
    stopped_by: str | None = None
    #: the input messages left out, per topic and kind of cause (`skipped.SkippedMessages.to_list`)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    #: frames whose metric fit extrapolates much of the depth (`pipeline_types.sparse_span`: the node's WARN),
    #: the most of a frame so extrapolated, and the samples' (near, far) [m] of the last such frame
    sparse_span_frames: int = 0
    sparse_span_worst: float = 0.0
    sparse_span_samples: tuple[float, float] | None = None

    def add(self, frame: DepthFrame) -> None:
        """Count one emitted frame."""
        self.frames_out += 1
        if frame.status != "final":
            self.provisional += 1
        if frame.points is not None:
            self.clouds += 1
        fit = frame.fit
        res = getattr(fit, "residual", None)
        if res is not None and math.isfinite(float(res)):
            self.residuals.append(float(res))
        kind = str(getattr(fit, "scale_source", None) or "none")
        if frame.depth is None and kind != "none":  # a sparse source before its first good fit: disparity only
            kind += NO_FIT_YET
        self.scale_sources[kind] += 1
        if getattr(fit, "degenerate", False):
            self.degenerate_fits += 1
        if sparse_span(getattr(fit, "metric_extrapolated", None)) is not None:
            self.sparse_span_frames += 1
            self.sparse_span_worst = max(self.sparse_span_worst, float(fit.metric_extrapolated))
            self.sparse_span_samples = (float(fit.metric_samples_near), float(fit.metric_samples_far))

    @property
    def fps(self) -> float:
        return self.frames_in / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        res = np.asarray(self.residuals, np.float64)
        return {
            "mode": self.mode,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "provisional": self.provisional,
            "clouds": self.clouds,
            "clouds_skipped": self.clouds_skipped,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2) if self.seconds > 0 else None,
            "fit_residual_median": float(np.median(res)) if res.size else None,
            "fit_residual_p95": float(np.percentile(res, 95)) if res.size else None,
            "fit_residual_max": float(res.max()) if res.size else None,
            "degenerate_fits": self.degenerate_fits,
            "scale_sources": dict(self.scale_sources),
            "outputs": self.outputs,
            "notes": self.notes,
            "model": self.model,
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "skipped_messages": self.skipped,
        }

    def format(self) -> str:
        d = self.to_dict()
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        lines = [
            f"mode {self.mode}: {self.frames_in} frames in, {self.frames_out} out, {self.dropped} dropped"
            + (f", {self.provisional} provisional" if self.provisional else "")
            + f" in {self.seconds:.1f} s ({fmt(d['fps'])} frames/s)",
            f"fit residual median {fmt(d['fit_residual_median'])}, p95 {fmt(d['fit_residual_p95'])}, "
            f"max {fmt(d['fit_residual_max'])}; degenerate fits {self.degenerate_fits}",
            "scale source: " + (", ".join(f"{k} ({v} frames)" for k, v in self.scale_sources.most_common()) or "n/a"),
        ]
        if self.clouds or self.clouds_skipped:
            lines.append(f"point clouds: {self.clouds} written, {self.clouds_skipped} skipped (no camera model)")
        if self.model:
            from vdepth_ros.pipeline import identity_line

            lines.append(f"model: {identity_line(self.model)}")
        lines += [f"{k}: {v}" for k, v in self.outputs.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class Stopwatch:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `kill` cleans up partial outputs like Ctrl-C does."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopAtCtrlC:
    """Ctrl-C (SIGINT) or SIGTERM while a tool runs over its input ends the input there, as if the
    recording ended: the frames read so far are finished (the window held is run) and written, and
    the output is completed as usual, so it is a readable result of the input up to that point,
    not a run thrown away; a second one aborts at once (KeyboardInterrupt: no output is kept).

    The signal only sets a flag, checked between input frames (`frames`), so no writer is cut in
    the middle of a message. Outside the main thread (no signal handlers there) Ctrl-C aborts.

    Example:
        >>> with StopAtCtrlC("vdepth-bag") as stop:  # doctest: +SKIP
        ...     for frame in run(stop.frames(source)):
        ...         write(frame)
        >>> stop.cut  # the input was ended early  # doctest: +SKIP
    """

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.requested = False  # a signal came
        self.cut = False  # the input was ended by it before its end
        self.read = 0  # frames taken from the input
        self.exhausted = False  # the input was read to its end (offline mode: before it writes)
        self.reason: str | None = None  # why the input was ended, when not by a signal (`frames`' `check`)
        self.output_cut = False  # the output was ended before all the frames read were written (`end_output`)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopAtCtrlC:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc: object) -> bool:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        return False

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"signal {signum}")
        self.requested = True
        if self.exhausted:  # nothing left to cut: say the whole input is being finished, not "stopping"
            sys.stderr.write(
                f"\n{self.prog}: the input was read to its end before Ctrl-C: finishing the output of all of it "
                "(Ctrl-C again to abort, keeping no output)\n"
            )
            return
        sys.stderr.write(
            f"\n{self.prog}: stopping: the frames read so far are finished and written "
            "(Ctrl-C again to abort, keeping no output)\n"
        )

    def end_output(self, reason: str | None) -> bool:
        """End the output here, before all the frames read are written, when there is a `reason` (a disk about to
        fill in offline mode, which writes once the whole input is read: `disk_room_check`); whether it did."""
        if reason is not None:
            log.warning("%s: ending the output here: %s", self.prog, reason)
            self.reason, self.cut, self.output_cut = reason, True, True
        return reason is not None

    def frames(self, frames: Iterable[T], check: Callable[[], str | None] | None = None) -> Iterator[T]:
        """`frames` until a stop is requested, or `check` (asked before each frame) gives a reason to end the input
        there as a signal would (the output's disk about to fill: `disk_room_check`)."""
        it = iter(frames)
        try:
            while not self.requested:
                self.reason = check() if check is not None else None
                if self.reason is not None:
                    log.warning("%s: ending the input here: %s", self.prog, self.reason)
                    self.requested = True
                    break
                try:
                    frame = next(it)
                except StopIteration:
                    self.exhausted = True
                    return
                self.read += 1
                yield frame
            self.cut = True
        finally:
            close = getattr(it, "close", None)
            if close is not None:  # release the input (its reader, the progress bar) now
                close()


def stopped_output(
    stop: StopAtCtrlC, output: AtomicOutput, summary: RunSummary, total: int | None, rest: str | None = None
) -> str | None:
    """Where `stop` cut the input: how far the run got, recorded in `summary` (None: not cut); `rest` says how to
    process only the rest of the input (default: run again for the whole input).

    Called before the output is committed. Raises `InterruptedRun` (the output is not kept) when no
    frame was written, or when the output would replace an earlier one (--overwrite): a complete
    earlier result is not traded for a part of a new one.
    """
    if not stop.cut:
        return None
    got = f"after {stop.read}{f' of {total}' if total else ''} input frames"
    if stop.output_cut:
        got = f"after writing {summary.frames_out} of the {stop.read} input frames"
    if stop.reason is not None:
        got += f" ({stop.reason})"
        summary.stopped_by = stop.reason
    if summary.frames_out == 0 or output.replaces:
        kept = (
            f", before any frame was written; nothing was written to {output.final}"
            if summary.frames_out == 0
            else f"; the earlier output {output.final} is kept (the new one was not complete)"
        )
        if stop.reason is None:
            raise InterruptedRun(f"{got}{kept}")
        raise OfflineError(f"stopped {got}{kept}")  # (a disk that stopped it: an error, exit status 2, not Ctrl-C)
    summary.interrupted = f"{got}; {output.final} holds the {summary.frames_out} frames written from them, complete"
    if rest is not None:
        summary.interrupted += f"; {rest}"
    summary.notes.append(f"interrupted {summary.interrupted}" + ("" if rest else "; run again for the whole input"))
    return summary.interrupted


def stamp_ns(text: str) -> int:
    """A stamp in seconds, as `--start` takes it (`1700000000.123456789`), in nanoseconds, exactly (no float)."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or not (frac.isdigit() or frac == "") or len(frac) > 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a stamp in seconds such as 1700000000.123456789")
    return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def stamp_text(ns: int) -> str:
    """`stamp_ns`'s inverse: `1700000000.123456789`."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def exit_status(prog: str, summary: RunSummary) -> int:
    """A finished run's exit status: 0, or with one line on stderr when it was stopped early, 130 (Ctrl-C, SIGTERM)
    or 2 (the output's disk full: the output holds the input up to there, but the run did not do what was asked)."""
    if summary.interrupted is None:
        return 0
    print(f"{prog}: {'stopped' if summary.stopped_by else 'interrupted'} {summary.interrupted}", file=sys.stderr)
    return 2 if summary.stopped_by else 130


#: What a bag output needs on its disk beyond its frames' messages: rosbags' MCAP chunk held in memory (written at
#: 1 MiB), the summary and metadata.yaml written on closing, sqlite's page cache (2 MiB by default)
_CLOSING_ROOM = 4 << 20


def disk_room_check(folder: Path, written: Callable[[], tuple[int, int]], held: int) -> Callable[[], str | None]:
    """For `StopAtCtrlC.frames`: a reason to end the input before the output's disk is full, or its file reaches the
    largest file allowed there (`atomic.file_size_limit`: `ulimit -f`, FAT32's 4 GiB) (None: room left), so that the
    output holds the input up to there, complete and readable, as after Ctrl-C (a disk that filled while writing lost
    the whole run: one error, nothing kept). `written()`: the bytes and frames written so far, into one file; room is
    kept for the `held` frames the pipeline may still write (a window) at their mean size, and for closing
    (`_CLOSING_ROOM`). Only the tool's own writes are foreseen: another program filling the disk is
    `write_failed_reason`'s."""
    from vdepth_ros.offline.atomic import FILE_SIZE_FIX, file_size_limit

    file_limit = file_size_limit(folder)

    def check() -> str | None:
        nbytes, frames = written()
        held_bytes = nbytes // frames * (held + 1) if frames else 0
        need = _CLOSING_ROOM + held_bytes
        # the file: the frames, theirs to come, its own records (1/16 of them, and 64 KiB: the MCAP summary)
        if file_limit is not None and nbytes + nbytes // 16 + held_bytes + (64 << 10) > file_limit:
            return (
                f"the output file nears the largest file allowed there ({file_limit / 1e6:.1f} MB: `ulimit -f`, or "
                f"FAT32's 4 GiB); {FILE_SIZE_FIX}"
            )
        free = shutil.disk_usage(folder).free
        if free >= need:
            return None
        return (
            f"the output's disk is nearly full: {free / 1e6:.1f} MB left, {need / 1e6:.1f} MB needed to write the "
            "frames held and close the output; free space on it or choose an output on a disk with room"
        )

    return check


def write_failed_reason(err: OSError | None) -> str | None:
    """Why an output's write did not fit (`atomic.DISK_FULL_ERRNOS`), naming the fix, for `StopAtCtrlC` to end the
    run there as Ctrl-C does; None for no error."""
    from vdepth_ros.offline.atomic import write_failure

    if err is None:
        return None
    why = f"writing the output failed: {write_failure(err)}"
    if err.errno == errno.EFBIG:
        return why
    return f"{why} (its disk or quota is full); free space on it or choose an output on a disk with room"


def add_run_options(parser: argparse.ArgumentParser, output: str) -> None:
    """The options `vdepth-bag` and `vdepth-video` share, last in their `--help`: the node's
    parameters and model, and how the run reports; `output` names the output in `--overwrite`'s help."""
    parser.add_argument("--params", type=Path, help="node parameter YAML (default: the bundled config/depth.yaml)")
    parser.add_argument(
        "--model", help="model folder/file or pulled release name, e.g. vda-small (default: the params' model)"
    )
    parser.add_argument("--backend", help="runtime backend (default: the params' backend)")
    parser.add_argument("--overwrite", action="store_true", help=f"replace {output} if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true")


#: How `add_image_reading_options`' user sets the node's image reading parameters: the fixes the decoding names, and
#: a refused value, name the flag typed, not a parameter of a params file the tool does not read.
IMAGE_READING_FLAGS = SettingWords({"image_encoding": "--image-encoding", "image_bit_depth": "--image-bit-depth"})


def add_image_reading_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--image-encoding` and `--image-bit-depth`: the node's `image_encoding` and `image_bit_depth` for a tool
    that reads a bag's colour images without a params file (`vdepth-flicker`, the training's rosbag conversion);
    read back, checked as the node checks them, by `image_reading_options`."""
    parser.add_argument(
        "--image-encoding",
        default="auto",
        help="read each raw colour image's bytes as this encoding, as the node's image_encoding parameter does (an IR "
        "camera's 16UC1: mono16; OpenCV's 8UC3: bgr8; default auto: as each image names it)",
    )
    parser.add_argument(
        "--image-bit-depth",
        type=int,
        default=0,
        help="significant bits of 16-bit colour images, as the node's image_bit_depth parameter (default 0 = auto)",
    )


def image_reading_options(args: argparse.Namespace) -> dict[str, Any]:
    """`{"image_encoding": ..., "image_bit_depth": ..., "setting_words": IMAGE_READING_FLAGS}` of
    `add_image_reading_options`' options.

    Raises:
        ConfigError: a value the node refuses, in its words with the flag for the parameter
            (`--image-encoding '16UC1' is not one of auto, ...`).
    """
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.node_params import ros_param_values

    given = {"image_encoding": args.image_encoding, "image_bit_depth": args.image_bit_depth}
    try:
        values = ros_param_values(given)
    except ConfigError as err:  # "image_bit_depth=4: ..." -> "--image-bit-depth 4: ..."
        message = str(err)
        for name, flag in IMAGE_READING_FLAGS.flags.items():
            if message.startswith(f"{name}="):
                message = f"{flag} {message[len(name) + 1 :]}"
        raise ConfigError(message) from None
    return {**{name: values[name] for name in given}, "setting_words": IMAGE_READING_FLAGS}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _flush_c_stdio() -> None:
    """Flush C stdio's buffers (a native library's printf waits there until exit, when fd 1 is stdout again)."""
    with contextlib.suppress(Exception):  # no libc (not Linux/macOS): nothing buffered there to move
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextmanager
def stdout_for_results() -> Iterator[None]:
    """Within the block, whatever is written to stdout goes to stderr: Python's prints (ONNX Runtime's
    "EP Error ... Falling back to ..." lines are prints) and native writes to file descriptor 1 (ONNX
    Runtime, TensorRT, torch, OpenCV), C stdio's buffered output included. The CLIs run their work in
    this block and print their own result after it, so their stdout (`--json`, a table) is only that."""
    # the stdout objects: also those a library holds on to (a logging handler made on sys.stdout), whose
    # buffered text must reach fd 1 while it is stderr
    streams = {id(s): s for s in (sys.stdout, sys.__stdout__, sys.stderr) if s is not None}.values()

    def flush() -> None:
        for stream in streams:
            with contextlib.suppress(Exception):  # closed: nothing to flush
                stream.flush()
        _flush_c_stdio()

    flush()
    saved: int | None = None
    with contextlib.suppress(OSError):  # fd 1 or 2 closed: nothing to keep apart
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def cli_errors(prog: str, exc: BaseException) -> int:
    """Print an error for the CLIs and return the exit status (2 for our errors, 130 for Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        from vdepth_ros.offline.errors import interrupted_line

        print(interrupted_line(prog, exc), file=sys.stderr)
        return 130
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2
