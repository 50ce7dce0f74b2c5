"""The evaluation's runs of one `EvalSequence`: the offline and causal pipelines and the engine on
single frames, each returning `(T, h, w)` disparity on the GT grid (the protocol's input).

`vdepth-eval` (`cli.py`) scores them; benchmarks reuse them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vdepth_ros.errors import ConfigError
from vdepth_ros.eval.datasets import EvalSequence
from vdepth_ros.resize import resize_frame
from vdepth_ros.stream.depth import disparity_from_depth

log = logging.getLogger("vdepth.eval")


def _to_gt_grid(disp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Output disparity (NaN invalid) -> GT grid (h, w), bilinear; NaN -> 0 (floored later)."""
    d = np.nan_to_num(np.asarray(disp, np.float32), nan=0.0)
    h, w = size
    if d.shape != (h, w):
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    return d


def _frames(seq: EvalSequence, sparse_points: int = 0, pose_points: bool = False) -> Iterator[Any]:
    from vdepth_ros.pipeline import FrameInput
    from vdepth_ros.triangulate import PoseTriangulator

    step = round(1e9 / seq.fps)
    if pose_points and seq.poses is None:
        raise ConfigError(f"{seq.name} has no camera poses to triangulate with")
    tri = PoseTriangulator() if pose_points else None
    for i in range(seq.num_frames):
        if tri is not None:
            sparse = tri.push(seq.rgb[i], seq.poses[i], seq.rgb_intrinsics)
        else:
            sparse = sparse_gt_samples(seq, i, sparse_points) if sparse_points > 0 else None
        yield FrameInput(rgb=seq.rgb[i], stamp_ns=i * step, sparse_depth=sparse)


def sparse_gt_samples(seq: EvalSequence, index: int, points: int) -> np.ndarray:
    """A simulated sparse depth sensor: `points` GT depths of frame `index` at random valid GT pixels
    (seeded by the frame index, so every run draws the same ones), as an `(H, W)` float32 map at
    the RGB's resolution with NaN elsewhere (the `FrameInput.sparse_depth` format)."""
    gt = seq.depth[index]
    h, w = gt.shape
    H, W = seq.rgb.shape[1:3]
    ok = np.isfinite(gt) & (gt > 0) & (gt < seq.max_depth)
    if seq.mask is not None:
        ok &= np.asarray(seq.mask, bool)
    ys, xs = np.nonzero(ok)
    out = np.full((H, W), np.nan, np.float32)
    if ys.size == 0:
        return out
    pick = np.random.default_rng(index).choice(ys.size, size=min(points, ys.size), replace=False)
    # GT pixel centres -> RGB pixels (the GT grid may be a subsampled copy of the RGB's)
    u = np.clip(np.rint((xs[pick] + 0.5) * W / w - 0.5).astype(int), 0, W - 1)
    v = np.clip(np.rint((ys[pick] + 0.5) * H / h - 0.5).astype(int), 0, H - 1)
    out[v, u] = gt[ys[pick], xs[pick]]
    return out


#: what the evaluation fixes whatever the params file says: relative output, no cloud, and the working
#: resolution's output resized bilinearly (the protocol's resize) straight to the camera's grid
EVAL_OVERRIDES: dict[str, Any] = {
    "scale_source": "none",
    "cloud_stride": 0,
    "output_resolution": "input",
    "upsample_method": "bilinear",
}


def make_pipeline(engine: Any, params: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> Any:
    """A `DepthPipeline` from the node's parameters, relative output, no cloud.

    Args:
        engine: the engine under evaluation.
        params: overrides on top of everything (e.g. `scale_source: sparse` for the sparse row).
        base: the node's flat parameters (`vdepth-eval --params`); default: the bundled
            `config/depth.yaml`, as the node, `vdepth-bag` and `vdepth-video` use.
    """
    from vdepth_ros.offline.runner import load_node_params
    from vdepth_ros.pipeline import DepthPipeline

    merged = dict(load_node_params() if base is None else base)
    merged.update(EVAL_OVERRIDES)
    merged.update(params or {})
    return DepthPipeline.from_dict(merged, engine=engine)


class NoMetricFitError(RuntimeError):
    """A metric row's sequence never got a metric fit (e.g. a camera that barely moves gives no
    triangulated points); the row is reported without it."""


def run_offline(
    engine: Any, seq: EvalSequence, params: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid from `DepthPipeline.run_offline` (`make_pipeline` args)."""
    pipe = make_pipeline(engine, params, base)
    out = np.zeros(seq.depth.shape, np.float32)
    seen = np.zeros(seq.num_frames, bool)
    for f in pipe.run_offline(_frames(seq)):
        out[f.index] = _to_gt_grid(f.disparity, seq.gt_size)
        seen[f.index] = True
    if not seen.all():
        raise RuntimeError(f"run_offline returned {seen.sum()} of {seq.num_frames} frames")
    return out


def run_stream(
    engine: Any,
    seq: EvalSequence,
    params: dict[str, Any] | None = None,
    sparse_points: int = 0,
    base: dict[str, Any] | None = None,
    pose_points: bool = False,
) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid from the causal pipeline: the first output of each frame.

    With `sparse_points` > 0 the pipeline runs with `scale_source: sparse`, fed that many GT depths
    per frame (`sparse_gt_samples`), and the result is its metric output as inverse depth.

    With `pose_points` the sparse depths are instead triangulated from the images with the GT camera
    poses (`triangulate.PoseTriangulator`, as robot odometry would feed the node). Until the
    camera has moved enough for a first metric fit the pipeline outputs no depth; those first frames
    are scored with the first fit that follows (the only use of a later frame)."""
    metric = sparse_points > 0 or pose_points
    if metric:
        params = {**(params or {}), "scale_source": "sparse"}
    pipe = make_pipeline(engine, params, base)
    out = np.zeros(seq.depth.shape, np.float32)
    seen = np.zeros(seq.num_frames, bool)
    frames = []
    for fi in _frames(seq, sparse_points, pose_points):
        frames += pipe.push(fi)
    frames += pipe.flush()
    first_fit = next(((f.fit.metric_scale, f.fit.metric_shift) for f in frames if f.depth is not None), None)
    for f in frames:
        if not seen[f.index]:
            if metric:
                if f.depth is not None:
                    inv = np.nan_to_num(disparity_from_depth(f.depth), nan=0.0)
                elif pose_points and first_fit is not None:
                    inv = np.maximum(np.nan_to_num(first_fit[0] * f.disparity + first_fit[1], nan=0.0), 0.0)
                else:
                    raise NoMetricFitError(f"{seq.name}: no metric fit in any window (too few sparse points)")
                out[f.index] = _to_gt_grid(inv, seq.gt_size)
            else:
                out[f.index] = _to_gt_grid(f.disparity, seq.gt_size)
            seen[f.index] = True
    if not seen.all():
        raise RuntimeError(f"causal pipeline returned {seen.sum()} of {seq.num_frames} frames")
    return out


def run_per_frame(engine: Any, seq: EvalSequence) -> np.ndarray:
    """`(T, h, w)` disparity on the GT grid, the engine run on one frame at a time (no stitching)."""
    spec = engine.input_spec
    out = np.zeros(seq.depth.shape, np.float32)
    for i in range(seq.num_frames):
        rgb = resize_frame(seq.rgb[i], spec.height, spec.width)  # the pipeline's "area" resize
        out[i] = _to_gt_grid(engine.infer(rgb[None])[0], seq.gt_size)
    return out


def _single_frame_engine(model_dir: Path, engine: Any) -> Any:
    """The same weights with a one-frame window (torch, exact T = 1) when the folder has them; else
    `engine` itself (which pads a single frame by repetition)."""
    if not (Path(model_dir) / "config.json").is_file():
        return engine
    from vdepth_ros.runtime import create_engine
    from vdepth_ros.runtime.shapes import deliberate_shape

    spec = engine.input_spec
    try:
        with deliberate_shape():  # T = 1 on purpose: no "trained on clips of N" warning the user cannot act on
            return create_engine(str(model_dir), backend="torch", frames=1, height=spec.height, width=spec.width)
    except Exception as err:  # e.g. torch missing: fall back to padding
        log.warning("no T=1 torch engine (%s); per-frame runs pad one frame to the window", err)
        return engine


def measure_engine_fps(engine: Any, repeats: int = 3) -> dict[str, float]:
    """Amortised frames/s of full windows: (window - overlap) new frames per `infer` call (median)."""
    spec = engine.input_spec
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (spec.frames, spec.height, spec.width, 3), dtype=np.uint8)
    engine.infer(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.infer(x)
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    new = max(1, int(spec.window) - int(spec.overlap))
    return {"window_s": sec, "frames_per_window": float(spec.frames), "new_frames": float(new), "fps": new / sec}
