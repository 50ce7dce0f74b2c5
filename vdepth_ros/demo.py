"""The README's first command: the bundled default model on the bundled sample clip, end to end.

    python -m vdepth_ros.demo --out out/demo

1. `vdepth-video` on the clip -> `OUT/video/`: per-frame depth PNGs (16-bit mm) and `.npz`, `preview.mp4`
   (image | depth, colour bar) and `preview.png` (its middle frame; the README's `docs/img/preview.png`).
2. The clip as a ROS 2 bag (Image + CameraInfo) -> `OUT/input_bag/`, then `vdepth-bag` on it (the live
   node's pipeline, causal) -> `OUT/depth_bag/` with depth, disparity, points and camera_info.
3. `vdepth-flicker` on the two bags: how steady the published depth is (no ground truth needed).

The sample's sidecar JSON (same name, `.json`), if present, gives intrinsics and a depth range; else a
60-degree pinhole and the params' `near`/`far` are assumed (and said so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdepth_ros.blas import limit_blas_threads_for_tool
from vdepth_ros.errors import VdepthError
from vdepth_ros.offline.errors import OfflineError, OutputExistsError
from vdepth_ros.offline.runner import cli_errors, load_node_params, setup_logging, sigterm_as_interrupt
from vdepth_ros.paths import expand_home

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vdepth_ros.runtime.engine import DepthEngine

log = logging.getLogger(__name__)
PROG = "vdepth_ros.demo"
MARKER = ".vdepth-demo"
SUMMARY = "summary.json"


def _not_a_summary(path: Path) -> str | None:
    """What an existing summary.json is instead of the demo's own (its `outputs`), or None."""
    try:
        summary = json.loads(path.read_text())
        if isinstance(summary, dict) and "outputs" in summary:
            return None
    except (OSError, ValueError, TypeError):
        pass
    return "not the demo's summary"


SAMPLE_NAMES = ("sample.mp4", "sample.mov", "sample.avi", "sample.mkv")


def find_sample() -> Path | None:
    """The bundled sample clip: `VDEPTH_SAMPLE`, else `sample.*` (a video or image folder) next to the
    default model, under `samples/` or `data/sample*` of the share dir."""
    from vdepth_ros.paths import default_model_dir, share_dir

    env = os.environ.get("VDEPTH_SAMPLE")
    if env:
        return Path(env)
    roots = [default_model_dir(), share_dir() / "samples", share_dir() / "data", share_dir() / "models" / "default"]
    for root in roots:
        for name in (*SAMPLE_NAMES, "sample"):
            cand = root / name
            if cand.is_file() or (cand.is_dir() and any(cand.iterdir())):
                return cand
        if root.is_dir() and root.name in ("samples",):
            vids = sorted(p for p in root.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv"))
            if vids:
                return vids[0]
    return None


def check_default_model(model: str | None) -> Path:
    """The model folder/file to use (`--model`, else the bundled default), resolved and checked as the
    node does at start-up (`runtime.checks`); raise naming what is missing or unusable."""
    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.runtime.checks import check_model_files
    from vdepth_ros.runtime.registry import resolve_model

    try:
        path = Path(resolve_model(model or "default"))
        if not path.exists() or (
            path.is_dir() and not (path / "config.json").is_file() and not any(path.glob("*.onnx"))
        ):
            raise OfflineError(
                f"the default model is missing: {path} has no config.json or model.onnx "
                f"(it is provided in models/default/ by the default-model work; set VDEPTH_DEFAULT_MODEL "
                f"or pass --model DIR)"
            )
        check_model_files(path)
    except ModelLoadError as err:
        raise OfflineError(str(err)) from None
    return path


def load_sidecar(sample: Path) -> dict[str, Any]:
    """Intrinsics (`fx, fy, cx, cy` or `K`) and depth range (`near`, `far`) from `<sample>.json`, if any."""
    for cand in (sample.with_suffix(".json"), sample / "meta.json", sample.parent / "sample.json"):
        if cand.is_file():
            try:
                return dict(json.loads(cand.read_text()))
            except (ValueError, TypeError):
                log.warning("ignoring unreadable sample metadata %s", cand)
    return {}


def _intrinsics(meta: dict[str, Any]) -> tuple[float, float, float, float] | None:
    if all(k in meta for k in ("fx", "fy", "cx", "cy")):
        return float(meta["fx"]), float(meta["fy"]), float(meta["cx"]), float(meta["cy"])
    k = meta.get("K") or meta.get("k") or meta.get("intrinsics")
    if isinstance(k, list) and len(k) in (4, 9):
        flat = [float(v) for v in (k if len(k) == 4 else (k[0], k[4], k[2], k[5]))]
        return flat[0], flat[1], flat[2], flat[3]
    if isinstance(k, list) and len(k) == 3 and all(isinstance(r, list) for r in k):
        return float(k[0][0]), float(k[1][1]), float(k[0][2]), float(k[1][2])
    return None


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make `out` the demo's folder: reuse a previous demo's (marker file), refuse anything else; with
    `overwrite` another folder too, but never replace a file or folder of the user's in it (before any work)."""
    from vdepth_ros.offline.atomic import check_output_path
    from vdepth_ros.offline.bag_outputs import not_a_bag
    from vdepth_ros.offline.video import not_a_video_output

    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file() and not overwrite:
        raise OutputExistsError(f"{out} exists and was not written by the demo; pass --overwrite or another --out")
    rules = {"video": not_a_video_output, "input_bag": not_a_bag, "depth_bag": not_a_bag, SUMMARY: _not_a_summary}
    for name, rule in rules.items():  # what the demo replaces on a re-run
        check_output_path(out / name, overwrite=True, replaceable=rule)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m vdepth_ros.demo; its subfolders are replaced on re-runs\n")


def run_demo(
    out: str | Path,
    *,
    sample: str | Path | None = None,
    model: str | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    engine: DepthEngine | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the demo; returns the summaries of both steps and the paths written.

    Args:
        out: output folder (a previous demo's is reused; anything else needs `overwrite`).
        sample: clip (video or image folder); default: `find_sample()`.
        model: model folder/file; default: the bundled default model.
        max_frames: limit the clip length (quick runs).
        overwrite: allow writing into a non-demo `out`.
        engine: a ready engine instead of the model (tests).
        progress: progress bars.

    Raises:
        OfflineError: the default model or the sample clip is missing (the message says which).
    """
    from vdepth_ros.offline.atomic import AtomicOutput
    from vdepth_ros.offline.bag import process_bag
    from vdepth_ros.offline.flicker import measure_flicker
    from vdepth_ros.offline.synth import write_image_bag
    from vdepth_ros.offline.video import process_video
    from vdepth_ros.offline.video_source import VideoFrameSource

    # 0. The model and the clip (one error naming everything missing); the clip's camera and depth range.
    out = Path(out)
    model_path, sample_path = _demo_inputs(engine, model, sample)
    prepare_out(out, overwrite)
    setup = _demo_setup(sample_path, max_frames)
    model_arg = str(model_path) if model_path else None

    replace = True  # out is the demo's folder (prepare_out): its previous results are replaced once new ones exist
    print(f"[1/4] vdepth-video {sample_path} -> {out / 'video'}", flush=True)
    video = process_video(
        sample_path,
        out / "video",
        params=setup.params,
        mode="offline",
        formats=("png", "npz"),
        preview=True,
        preview_still=(setup.count or 1) // 2,  # the README's preview frame (docs/img/preview.png)
        ply=False,
        intrinsics=setup.intrinsics,
        depth_range=setup.depth_range,
        max_frames=max_frames,
        engine=engine,
        model=model_arg,
        overwrite=replace,
        progress=progress,
    )
    _stop_if_interrupted(video, 1)
    print(f"[2/4] writing the clip as a ROS 2 bag -> {out / 'input_bag'}", flush=True)
    with (
        VideoFrameSource(sample_path, max_frames=max_frames) as src,
        AtomicOutput(out / "input_bag", overwrite=replace, inputs=[sample_path]) as tmp,
    ):
        rgbs = (f.rgb for f in src.frames())
        n = write_image_bag(tmp, rgbs, storage="mcap", fps=setup.fps, intrinsics=setup.intrinsics)
    print(f"[3/4] vdepth-bag {out / 'input_bag'} -> {out / 'depth_bag'} (causal, as the live node)", flush=True)
    bag = process_bag(
        out / "input_bag",
        out / "depth_bag",
        params=setup.params,
        mode="causal",
        storage="mcap",
        engine=engine,
        model=model_arg,
        overwrite=replace,
        progress=progress,
    )
    _stop_if_interrupted(bag, 3)
    print(f"[4/4] vdepth-flicker {out / 'depth_bag'} {out / 'input_bag'} --depth-topic /depth", flush=True)
    (flicker,) = measure_flicker([out / "depth_bag", out / "input_bag"], "/image", ["/depth"])
    result = {
        "sample": str(sample_path),
        "model": model_arg or "(injected engine)",
        "frames_in_bag": n,
        "video": video.to_dict(),
        "bag": bag.to_dict(),
        "flicker": flicker.to_dict(),
        "notes": setup.notes,
        "outputs": {
            "depth_png": str(out / "video" / "depth"),
            "preview": str(out / "video" / "preview.mp4"),
            "preview_still": str(out / "video" / "preview.png"),
            "input_bag": str(out / "input_bag"),
            "output_bag": str(out / "depth_bag"),
        },
    }
    (out / SUMMARY).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _stop_if_interrupted(summary: Any, step: int) -> None:
    """Ctrl-C ended a step's input early (its output keeps the frames done): the demo stops there."""
    if summary.interrupted is not None:
        from vdepth_ros.offline.errors import InterruptedRun

        raise InterruptedRun(f"at step {step} of 4 {summary.interrupted}; the demo stopped there")


def _demo_inputs(engine: DepthEngine | None, model: str | None, sample: str | Path | None) -> tuple[Path | None, Path]:
    """(the model folder, None with an injected engine; the sample clip), or one `OfflineError`
    naming everything that is missing."""
    missing = []
    model_path: Path | None = None
    if engine is None:
        try:
            model_path = check_default_model(model)
        except OfflineError as err:
            missing.append(str(err))
    sample_path = Path(sample) if sample else find_sample()
    if sample_path is None or not sample_path.exists():
        where = sample_path or "no sample.mp4 / sample/ next to the default model"
        missing.append(
            f"the sample clip is missing ({where}; it is bundled with the default model; "
            f"pass --input CLIP to use your own)"
        )
    if missing or sample_path is None:
        raise OfflineError("cannot run the demo: " + "; ".join(missing))
    return model_path, sample_path


@dataclass
class _DemoSetup:
    """The node's params with the clip's depth range as the scale source, and the clip's camera."""

    params: dict[str, Any]
    intrinsics: tuple[float, float, float, float]
    depth_range: tuple[float, float]
    fps: float
    count: int | None
    notes: list[str]


def _demo_setup(sample_path: Path, max_frames: int | None) -> _DemoSetup:
    """The clip's intrinsics and depth range from its sidecar JSON, else assumed (and noted)."""
    from vdepth_ros.offline.video_source import VideoFrameSource
    from vdepth_ros.offline.videoio import default_intrinsics

    params = load_node_params()
    meta = load_sidecar(sample_path)
    with VideoFrameSource(sample_path, max_frames=max_frames) as src:
        size, fps, count = src.size, src.fps, src.frame_count
    if size is None:
        raise OfflineError(f"cannot read the frame size of {sample_path}")
    intrinsics = _intrinsics(meta)
    notes = []
    if intrinsics is None:
        intrinsics = default_intrinsics(*size)
        notes.append("the sample has no intrinsics: a 60-degree pinhole is assumed (clouds are approximate)")
    near = float(meta.get("near", params.get("near", 0.3)))
    far = float(meta.get("far", params.get("far", 10.0)))
    if "near" not in meta:
        notes.append(f"no depth range in the sample metadata: near/far {near:g}/{far:g} m from the params")
    params = {**params, "scale_source": "range", "near": near, "far": far}
    return _DemoSetup(params, intrinsics, (near, far), fps, count, notes)


def _residual(value: Any) -> str:
    """A fit residual (relative) as a percentage, or as given when there is none (None, "n/a")."""
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else str(value)


def format_result(result: dict[str, Any]) -> str:
    """The demo's summary lines (video, bag, flicker, notes, output paths) from `run_demo`'s result."""
    v, b, fl = result["video"], result["bag"], result["flicker"]
    lines = [
        f"demo: {result['sample']} with model {result['model']}",
        f"  video: {v['frames_out']} frames, {v['fps']} frames/s, scale {v['scale_sources']}, "
        f"fit residual median {_residual(v['fit_residual_median'])}",
        f"  bag:   {b['frames_in']} frames in, {b['frames_out']} out, {b['dropped']} dropped, {b['fps']} frames/s, "
        f"{b['clouds']} clouds",
        f"  flicker of /depth (flow warping error, lower is steadier): {fl['flow_warping_error']:.4f} over "
        f"{fl['pairs']} pairs of consecutive frames",
        *(f"  note: {n}" for n in result["notes"] + v["notes"] + b["notes"]),
        "outputs:",
        *(f"  {k}: {p}" for k, p in result["outputs"].items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`python -m vdepth_ros.demo`)."""
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--input", type=Path, help="clip to use instead of the bundled sample (video or image folder)")
    p.add_argument("--model", help="model folder/file instead of the bundled default model")
    p.add_argument("--max-frames", type=int, help="use only the first N frames")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a folder the demo did not create")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    expand_home(args)
    setup_logging(args.verbose)
    from importlib.util import find_spec

    from vdepth_ros.offline.entry import BAG_EXTRA_HINT

    if find_spec("rosbags") is None:  # steps 2-4 write and read bags; fail before step 1, not after it
        print(
            f"{PROG}: the demo writes and reads ROS 2 bags, and 'rosbags' is not installed; {BAG_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2
    limit_blas_threads_for_tool()  # numpy's spinning OpenBLAS pool slows stitching: vdepth_ros/blas.py
    try:
        with sigterm_as_interrupt():
            result = run_demo(
                args.out,
                sample=args.input,
                model=args.model,
                max_frames=args.max_frames,
                overwrite=args.overwrite,
                progress=sys.stderr.isatty(),
            )
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as exc:
        return cli_errors(PROG, exc)
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
