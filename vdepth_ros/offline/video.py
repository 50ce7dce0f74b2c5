"""`vdepth-video`: depth for a video file or an image folder, written as per-frame files and a preview.

    vdepth-video INPUT -o OUTDIR [--format png,npz] [--mode offline|causal] [--depth-range NEAR FAR]
                 [--ply (--intrinsics FX FY CX CY | --camera-info FILE [--rectify] | --assume-hfov DEG)]
                 [--params config/depth.yaml]

Without a metric scale source the model's relative disparity is written (not depth; the tool says so);
`--depth-range NEAR FAR` gives a scale from the scene's depth range. The pipeline and its parameters are
the live node's (`config/depth.yaml`). OUTDIR is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdepth_ros.camera_info import camera_from_info
from vdepth_ros.errors import InputError, VdepthError
from vdepth_ros.inputs.calibration import calibration_problem
from vdepth_ros.node_params import ros_param_values
from vdepth_ros.offline.atomic import AtomicOutput, foreign_entries
from vdepth_ros.offline.errors import OfflineError
from vdepth_ros.offline.runner import (
    MODES,
    RunSummary,
    StopAtCtrlC,
    Stopwatch,
    add_run_options,
    apply_blas_threads,
    build_pipeline,
    cli_errors,
    exit_status,
    load_node_params,
    pipeline_config,
    run_pipeline,
    setup_logging,
    sigterm_as_interrupt,
    stdout_for_results,
    stopped_output,
    with_progress,
    write_failed_reason,
)
from vdepth_ros.offline.video_source import VideoFrameSource
from vdepth_ros.offline.videoio import (
    FORMATS,
    FRAME_FILE,
    FRAME_FOLDERS,
    OUTPUT_FILES,
    VideoOutputWriter,
    default_intrinsics,
)
from vdepth_ros.paths import expand_home
from vdepth_ros.rectify import (
    CALIBRATION_FORMATS,
    Rectifier,
    has_distortion,
    load_camera_info,
    pinhole_info,
    pinhole_input,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from vdepth_ros.pipeline import FrameInput
    from vdepth_ros.runtime.engine import DepthEngine
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)
PROG = "vdepth-video"
ASSUMED_WARNING = (
    "intrinsics are ASSUMED (horizontal FOV {hfov:g} deg, principal point at the centre): the point "
    "clouds' geometry is distorted by however much the real camera differs; pass --intrinsics "
    "FX FY CX CY for metric clouds"
)


def depth_range_params(params: dict[str, Any], near: float, far: float) -> dict[str, Any]:
    """Params selecting the pipeline's depth-range scale source (`near`..`far` metres)."""
    if not 0 < near < far:
        raise OfflineError(f"--depth-range needs 0 < NEAR < FAR, got {near} {far}")
    out = dict(params)
    out.update(scale_source="range", near=float(near), far=float(far))
    return out


def process_video(
    input_path: str | Path,
    output_dir: str | Path,
    *,
    params: dict[str, Any] | None = None,
    params_file: str | Path | None = None,
    mode: str = "offline",
    formats: tuple[str, ...] = ("png",),
    preview: bool = True,
    preview_still: int | None = 0,
    ply: bool = False,
    intrinsics: tuple[float, float, float, float] | None = None,
    assume_hfov: float | None = None,
    camera_info: str | Path | None = None,
    rectify: bool = False,
    depth_range: tuple[float, float] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    engine: DepthEngine | None = None,
    model: str | None = None,
    backend: str | None = None,
    progress: bool = False,
) -> RunSummary:
    """Run the pipeline over a video/image folder and write per-frame files into `output_dir`.

    Args:
        input_path: video file or image folder; never modified.
        output_dir: new output folder (an existing non-empty one only with `overwrite`).
        params, params_file: node parameters (default: the bundled `config/depth.yaml`).
        mode: "offline" (global fit, default) or "causal" (what the live node does).
        formats: per-frame files, subset of ("png", "npy", "npz").
        preview: write `preview.mp4` (mp4v: the input image and the depth side by side, colour bar).
        preview_still: input frame index written as `preview.png` too (None: none).
        ply: write `clouds/*.ply` (needs depth and intrinsics).
        intrinsics: `(fx, fy, cx, cy)` at the input resolution.
        camera_info: a calibration YAML (`rectify.load_camera_info`: camera_calibration's format,
            lens distortion included), instead of `intrinsics`.
        rectify: undistort each frame with `camera_info` first (the node's `rectify`).
        assume_hfov: assume a pinhole with this horizontal FOV (degrees) when `intrinsics` is None;
            a warning says the geometry is distorted.
        depth_range: `(near, far)` metres: the scale source; None: disparity only.
        fps: frame rate of the preview; given, stamps are `index / fps` (default: a video's own frame
            times, which variable-frame-rate clips need, and its average rate; 30 for folders).
        max_frames: process at most this many frames.
        overwrite: replace an existing output folder once the new one is complete.
        engine, model, backend: as for `vdepth_ros.offline.bag.process_bag`.
        progress: show a tqdm bar.

    Returns:
        The run summary; `outputs` lists the files written.
    """
    # 1. Check the mode; the node's parameters with the scale source a video can have.
    if mode not in MODES:
        raise OfflineError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_numbers(fps=fps, max_frames=max_frames, assume_hfov=assume_hfov)
    input_path, output_dir = Path(input_path), Path(output_dir)
    params = _video_params(load_node_params(params_file, model=model) if params is None else params, depth_range)
    # the model resolved and checked as the node does at start-up, before the output or the input is opened
    config = pipeline_config(params, model=model, backend=backend, check_model=engine is None)
    summary = RunSummary(mode=mode)
    clock = Stopwatch()
    # 2. Open the input and the output folder (built under a temporary name, renamed when complete).
    output = AtomicOutput(output_dir, overwrite=overwrite, inputs=[input_path], replaceable=not_a_video_output)
    with (
        output as tmp,
        VideoFrameSource(
            input_path, fps=fps, max_frames=max_frames, image_bit_depth=ros_param_values(params)["image_bit_depth"]
        ) as source,
    ):
        # 3. The camera: a calibration file, given or assumed intrinsics, or none.
        cam = _video_camera(source, input_path, intrinsics, assume_hfov, camera_info, rectify, ply, summary)
        source.camera = cam.camera
        # 4. Run the pipeline and write one result per frame.
        pipeline = build_pipeline(config, engine=engine)
        summary.model = pipeline.model_identity()
        with VideoOutputWriter(
            tmp,
            formats=formats,
            fps=source.fps,
            preview=preview,
            ply=ply,
            still_index=preview_still,
            # room for preview.mp4's index (~30 bytes a frame), frames.csv and meta.json after a write that did not fit
            room=output.scratch / "room",
            room_bytes=(4 << 20) + 64 * (source.frame_count or 0),
        ) as out:
            frames = with_progress(source.frames(), source.frame_count, PROG, progress)
            if cam.info is not None:
                frames = _with_camera_info(frames, cam.info, Rectifier() if rectify else None)
            # Ctrl-C ends the input here: the frames read are finished; so does a write that does not fit (the
            # files end with the frames before it)
            with StopAtCtrlC(PROG) as stop:
                full = lambda: write_failed_reason(out.full)  # noqa: E731
                outputs = run_pipeline(pipeline, stop.frames(frames, full), mode, spill_dir=output.scratch)  # type: ignore[arg-type]
                if mode == "offline":
                    outputs = with_progress(outputs, source.frame_count, f"{PROG} (writing)", progress)
                for frame in outputs:
                    if config.publish == "both" and frame.status != "final":
                        continue  # files hold one result per frame: with "both", the final one
                    if mode == "offline" and stop.end_output(full()):
                        break
                    if out.write(frame):
                        summary.add(frame)
                if out.full is not None and stop.reason is None:  # after the input was read to its end
                    stop.end_output(full())
            stopped = stopped_output(stop, output, summary, source.frame_count)
            # 5. Counts, notes and the run's meta file.
            summary.frames_in = source.frames_read + source.dropped
            summary.dropped = source.dropped
            summary.notes += source.drop_notes(read_to_end=not stop.cut) + _disparity_notes(out.kind, ply=ply)
            out.write_meta(
                {
                    "input": str(input_path),
                    "mode": mode,
                    "fps": source.fps,
                    "input_size": list(source.size) if source.size else None,  # (width, height)
                    "input_intrinsics": list(cam.intrinsics) if cam.intrinsics else None,  # at input_size
                    "intrinsics_assumed": cam.assumed,
                    "camera_info": str(camera_info) if camera_info else None,
                    "rectified": bool(rectify),
                    "depth_range": list(depth_range) if depth_range else None,
                    "model": summary.model,
                    "interrupted": stopped,  # how far a run Ctrl-C stopped got, else None
                }
            )
            kind, clouds = out.kind, out.clouds
        summary.clouds = clouds
    summary.seconds = clock.elapsed
    # 6. Name the outputs.
    summary.outputs.update(_output_names(output_dir, str(kind), formats, preview, preview_still, clouds))
    return summary


def _check_numbers(*, fps: float | None, max_frames: int | None, assume_hfov: float | None) -> None:
    """Refuse numeric options that cannot mean anything (they used to give an empty output, a
    misleading writer error or a silent default)."""
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise OfflineError(f"--fps must be a positive frame rate, got {fps:g}")
    if max_frames is not None and max_frames < 1:
        raise OfflineError(f"--max-frames must be at least 1, got {max_frames}")
    if assume_hfov is not None and not 0 < assume_hfov < 180:
        raise OfflineError(f"--assume-hfov must be a horizontal field of view in (0, 180) degrees, got {assume_hfov:g}")


def _video_params(params: dict[str, Any], depth_range: tuple[float, float] | None) -> dict[str, Any]:
    """`params` with `depth_range` as the scale source; without one, disparity instead of the
    node's range default."""
    if depth_range is not None:
        return depth_range_params(params, *depth_range)
    if params.get("scale_source", "range") == "range":
        # A video file carries no depth range: without --depth-range, write disparity and say so
        # rather than metres from the node's assumed default range.
        return {**params, "scale_source": "none"}
    return params


@dataclasses.dataclass
class _VideoCamera:
    """The camera of a video run: a fixed `CameraModel` (from intrinsics), or a calibration `info`
    attached to every frame, or neither."""

    camera: CameraModel | None = None
    info: Any = None
    intrinsics: tuple[float, float, float, float] | None = None
    assumed: bool = False


def _video_camera(
    source: VideoFrameSource,
    input_path: Path,
    intrinsics: tuple[float, float, float, float] | None,
    assume_hfov: float | None,
    camera_info: str | Path | None,
    rectify: bool,
    ply: bool,
    summary: RunSummary,
) -> _VideoCamera:
    """The camera from the options (one of intrinsics, an assumed FOV, a calibration file), checked
    against the clip (`_check_camera`); warnings (distortion left in, assumed FOV) go to the log and
    `summary`'s notes."""
    if sum(x is not None for x in (intrinsics, assume_hfov, camera_info)) > 1:
        raise OfflineError("give one of --intrinsics, --assume-hfov and --camera-info")
    if rectify and camera_info is None:
        raise OfflineError("--rectify needs --camera-info (the lens distortion to undo)")
    if camera_info is not None:
        info = load_camera_info(camera_info)
        _check_camera(
            info, source.size, str(camera_info), "a calibration of this camera (at any resolution of the clip's shape)"
        )
        if rectify and source.size is not None:
            try:  # an unsupported lens model or coefficient count: now, naming the file, not at frame 0
                Rectifier().view(info, *source.size)
            except InputError as err:
                raise OfflineError(f"{camera_info}: {err}") from None
        if has_distortion(info) and not rectify:
            msg = f"{camera_info} has lens distortion: pass --rectify unless the video is already undistorted"
            log.warning(msg)
            summary.notes.append(msg)
        camera = camera_from_info(info)  # the frames' pinhole camera (P, else K), at the clip's size
        if camera is not None and source.size is not None:
            camera = camera.scaled(*source.size)
        intrinsics = None if camera is None else (camera.fx, camera.fy, camera.cx, camera.cy)
        return _VideoCamera(info=info, intrinsics=intrinsics)
    if intrinsics is None and assume_hfov is None:
        if ply:
            raise OfflineError("--ply needs --intrinsics FX FY CX CY, --camera-info FILE or --assume-hfov DEG")
        return _VideoCamera()
    if source.size is None:
        raise OfflineError(f"{input_path}: unknown frame size; cannot attach intrinsics")
    w, h = source.size
    assumed = intrinsics is None
    if intrinsics is None:
        hfov = float(assume_hfov or 60.0)
        intrinsics = default_intrinsics(w, h, hfov)
        msg = ASSUMED_WARNING.format(hfov=hfov)
        log.warning(msg)
        summary.notes.append(msg)
    info = pinhole_info(*intrinsics, w, h)
    _check_camera(info, source.size, "--intrinsics", f"FX FY CX CY in pixels of the clip's {w}x{h} frames")
    return _VideoCamera(camera=camera_from_info(info), intrinsics=intrinsics, assumed=assumed)


def _check_camera(info: Any, size: tuple[int, int] | None, what: str, fix: str) -> None:
    """Refuse a camera that cannot be the clip's, as the node refuses such a camera_info
    (`calibration_problem`: positive focal lengths, principal point inside the image, the clip's
    aspect ratio), and an uncalibrated (all-zero) one: scaled onto the clip without a word, it
    would bend or stretch every cloud, or give none.

    Args:
        size: the clip's `(width, height)`, None when unknown.
        what, fix: the option named in the error and what it must be.
    """
    problem = calibration_problem(info, None if size is None else (size[1], size[0]))
    if problem is not None:
        raise OfflineError(f"{what}: {problem}; give {fix}")


def _disparity_notes(kind: str, *, ply: bool) -> list[str]:
    """What the user must know when no scale source made metric depth."""
    if kind != "disparity":
        return []
    notes = []
    if ply:
        notes.append("no scale source: point clouds need metric depth; no .ply written (use --depth-range NEAR FAR)")
    notes.append("no scale source: wrote relative DISPARITY, not metric depth (use --depth-range NEAR FAR for depth)")
    return notes


def _output_names(
    output_dir: Path, kind: str, formats: tuple[str, ...], preview: bool, preview_still: int | None, clouds: int
) -> dict[str, str]:
    """The summary's list of what was written where."""
    names = {"output folder": str(output_dir), "per-frame files": f"{output_dir / kind}/ ({', '.join(formats)})"}
    if preview:
        names["preview"] = str(output_dir / "preview.mp4")
        if preview_still is not None:
            names["preview still"] = str(output_dir / "preview.png")
    if clouds:
        names["clouds"] = str(output_dir / "clouds")
    return names


def _with_camera_info(frames: Iterable[FrameInput], info: Any, rectifier: Rectifier | None) -> Iterator[FrameInput]:
    """Frames with the calibration's camera (scaled to the frame), undistorted with `rectifier`."""
    for f in frames:
        rgb, camera, view = pinhole_input(f.rgb, info, rectifier)
        yield dataclasses.replace(f, rgb=rgb, camera=camera, valid=None if view is None else view.valid)


def _formats(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"formats must be a comma list of {', '.join(FORMATS)}, got {text!r}")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", type=Path, help="video file (.mp4, .mov, ...) or folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument(
        "--format",
        type=_formats,
        default=("png",),
        help="per-frame files, comma list of png (16-bit mm; 0 no estimate, 1 too close, 65535 too far), "
        "npy, npz (float32, NaN/+-Inf) (default png)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="offline",
        help="offline = each window re-aligned with two later windows (default); causal = what the live node does",
    )
    p.add_argument(
        "--depth-range",
        type=float,
        nargs=2,
        metavar=("NEAR", "FAR"),
        help="metric scale from the scene's depth range in metres (without it: disparity)",
    )
    p.add_argument("--ply", action="store_true", help="also write clouds/*.ply (needs depth and intrinsics)")
    p.add_argument(
        "--intrinsics",
        type=float,
        nargs=4,
        metavar=("FX", "FY", "CX", "CY"),
        help="pinhole intrinsics at the input resolution",
    )
    p.add_argument(
        "--camera-info",
        type=Path,
        metavar="FILE",
        help=f"camera calibration file: {CALIBRATION_FORMATS}",
    )
    p.add_argument(
        "--rectify",
        action="store_true",
        help="undistort the frames with --camera-info first (for video straight from a lens with distortion)",
    )
    p.add_argument(
        "--assume-hfov",
        type=float,
        metavar="DEG",
        help="assume intrinsics from a horizontal FOV (distorts geometry; warned)",
    )
    p.add_argument(
        "--fps",
        type=float,
        help="frame rate of the preview, and stamps = index / FPS (default: a video's own frame times and "
        "average rate; 30 for image folders)",
    )
    p.add_argument("--max-frames", type=int, help="process at most this many frames")
    p.add_argument(
        "--no-preview", action="store_true", help="do not write preview.mp4 (image | depth, colour bar with units)"
    )
    add_run_options(p, "OUTDIR")
    return p


#: keys of the meta.json vdepth-video writes (`VideoWriter.write_meta`) that tell it from a file of that
#: common name of the user's (a dataset's, a camera app's)
_META_KEYS = frozenset({"kind", "png_scale", "png_codes", "formats", "frames"})


def not_a_video_output(path: Path) -> str | None:
    """What an existing output path is instead of an earlier vdepth-video output (a folder with the
    meta.json it writes), or None."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return "not a vdepth-video output (no meta.json)"
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or not meta.keys() >= _META_KEYS:
        return "not a vdepth-video output (its meta.json is not one vdepth-video wrote)"
    foreign = foreign_entries(path, _video_entry)
    return None if foreign is None else f"vdepth-video's output with files it did not write in it ({foreign})"


def _video_entry(parts: tuple[str, ...]) -> bool:
    """Whether `parts` (under an output folder) is what vdepth-video writes there."""
    if len(parts) == 1:
        return parts[0] in OUTPUT_FILES or parts[0] in FRAME_FOLDERS
    return len(parts) == 2 and parts[0] in FRAME_FOLDERS and FRAME_FILE.fullmatch(parts[1]) is not None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`vdepth-video`)."""
    args = build_parser().parse_args(argv)
    expand_home(args)
    setup_logging(args.verbose)
    try:
        params = load_node_params(args.params, model=args.model)
        apply_blas_threads(params)  # the node's `blas_threads`, as the node and vdepth-bag apply it
        with stdout_for_results(), sigterm_as_interrupt():  # stdout: the summary alone
            summary = process_video(
                args.input,
                args.output,
                params=params,
                mode=args.mode,
                formats=args.format,
                preview=not args.no_preview,
                ply=args.ply,
                intrinsics=tuple(args.intrinsics) if args.intrinsics else None,
                camera_info=args.camera_info,
                rectify=args.rectify,
                assume_hfov=args.assume_hfov,
                depth_range=tuple(args.depth_range) if args.depth_range else None,
                fps=args.fps,
                max_frames=args.max_frames,
                overwrite=args.overwrite,
                model=args.model,
                backend=args.backend,
                progress=not args.no_progress and sys.stderr.isatty(),
            )
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as exc:
        return cli_errors(PROG, exc)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return exit_status(PROG, summary)


if __name__ == "__main__":
    sys.exit(main())
